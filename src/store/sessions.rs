//! Sessions (one per login) and their families of rotating refresh tokens.
//!
//! Every state change that ends a session also writes a row to `revocations` in the
//! same transaction, so no instance can miss it and no ended session lacks its record.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::audit::audit_tx;
use super::{AuditFields, Store, begin_write, on_pool};
use crate::error::AppResult;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub amr: String,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_refreshed_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoked_reason: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewSession {
    pub id: Uuid,
    pub user_id: Uuid,
    /// JSON array of authentication methods, e.g. `["pwd"]`.
    pub amr: String,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

/// The session a rotation continued, and who it belongs to.
#[derive(Debug, Clone)]
pub struct RotatedSession {
    pub session_id: Uuid,
    pub user_id: Uuid,
    pub username: String,
    pub is_superuser: bool,
    /// JSON array of authentication methods.
    pub amr: String,
    pub created_at: DateTime<Utc>,
}

/// What presenting a refresh token led to.
#[derive(Debug)]
pub enum RotateOutcome {
    /// The token was current; it is now used and its successor stored.
    Rotated(RotatedSession),
    /// The token had already been rotated: the whole family is now revoked.
    Reused { session_id: Uuid, user_id: Uuid },
    /// Unknown, expired, or of an ended session or disabled user. Nothing changed.
    Rejected,
}

const INSERT_SESSION: &str = "INSERT INTO sessions (id, user_id, amr, user_agent, ip, created_at, last_refreshed_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $6, $7)";
const INSERT_REFRESH: &str =
    "INSERT INTO refresh_tokens (token_hash, session_id, issued_at, expires_at) VALUES ($1, $2, $3, $4)";
const MARK_REFRESH_USED: &str =
    "UPDATE refresh_tokens SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL RETURNING session_id, expires_at";
const FIND_REFRESH: &str = "SELECT session_id FROM refresh_tokens WHERE token_hash = $1";
const SELECT_SESSION: &str = "SELECT id, user_id, amr, user_agent, ip, created_at, last_refreshed_at, expires_at, revoked_at, revoked_reason FROM sessions WHERE id = $1";
const TOUCH_SESSION: &str = "UPDATE sessions SET last_refreshed_at = $2, expires_at = $3 WHERE id = $1";
/// The session and the few facts about its user a rotation needs, in one round-trip.
const SESSION_SUBJECT: &str = "SELECT s.user_id, s.amr, s.created_at, s.revoked_at, u.username, u.is_superuser, u.is_active FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = $1";
pub(crate) const REVOKE_SESSION: &str =
    "UPDATE sessions SET revoked_at = $2, revoked_reason = $3 WHERE id = $1 AND revoked_at IS NULL RETURNING user_id";
const REVOKE_USER_SESSION: &str = "UPDATE sessions SET revoked_at = $3, revoked_reason = $4 WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL RETURNING user_id";
pub(crate) const REVOKE_USER_SESSIONS: &str = "UPDATE sessions SET revoked_at = $3, revoked_reason = $4 WHERE user_id = $1 AND revoked_at IS NULL AND ($2 IS NULL OR id <> $2) RETURNING id";
pub(crate) const INSERT_REVOCATION: &str =
    "INSERT INTO revocations (kind, subject, created_at, expires_at) VALUES ('session', $1, $2, $3)";
const LIST_ACTIVE: &str = "SELECT id, user_id, amr, user_agent, ip, created_at, last_refreshed_at, expires_at, revoked_at, revoked_reason FROM sessions WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2 ORDER BY created_at DESC";

/// Ends every live session of a user (but `keep`) inside an open transaction and
/// records their revocations; evaluates to the ended ids.
macro_rules! revoke_user_sessions_tx {
    ($tx:expr, $user_id:expr, $keep:expr, $reason:expr, $now:expr, $rev_expires:expr) => {{
        let ended: Vec<uuid::Uuid> = sqlx::query_scalar($crate::store::sessions::REVOKE_USER_SESSIONS)
            .bind($user_id)
            .bind($keep)
            .bind($now)
            .bind($reason)
            .fetch_all(&mut *$tx)
            .await?;
        for id in &ended {
            sqlx::query($crate::store::sessions::INSERT_REVOCATION)
                .bind(id.to_string())
                .bind($now)
                .bind($rev_expires)
                .execute(&mut *$tx)
                .await?;
        }
        ended
    }};
}
pub(crate) use revoke_user_sessions_tx;

/// Ends one session inside an open transaction, recording its revocation; evaluates to
/// the owner's id when the session was live.
macro_rules! revoke_session_tx {
    ($tx:expr, $id:expr, $reason:expr, $now:expr, $rev_expires:expr) => {{
        let owner: Option<uuid::Uuid> = sqlx::query_scalar($crate::store::sessions::REVOKE_SESSION)
            .bind($id)
            .bind($now)
            .bind($reason)
            .fetch_optional(&mut *$tx)
            .await?;
        if owner.is_some() {
            sqlx::query($crate::store::sessions::INSERT_REVOCATION)
                .bind($id.to_string())
                .bind($now)
                .bind($rev_expires)
                .execute(&mut *$tx)
                .await?;
        }
        owner
    }};
}

impl Store {
    /// Starts a session with its first refresh token.
    pub async fn create_session(
        &self,
        s: &NewSession,
        refresh_hash: &[u8],
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
        audit: Option<&AuditFields>,
    ) -> AppResult<()> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(INSERT_SESSION)
                .bind(s.id)
                .bind(s.user_id)
                .bind(&s.amr)
                .bind(&s.user_agent)
                .bind(&s.ip)
                .bind(now)
                .bind(expires_at)
                .execute(&mut *tx)
                .await?;
            sqlx::query(INSERT_REFRESH).bind(refresh_hash).bind(s.id).bind(now).bind(expires_at).execute(&mut *tx).await?;
            audit_tx!(tx, audit);
            tx.commit().await?;
        });
        Ok(())
    }

    /// Atomically spends a refresh token and stores its successor. Of two concurrent
    /// callers with the same token exactly one gets `Rotated`: the update that marks it
    /// used is conditional on it being unused, and the loser sees a reused token.
    /// `audit` holds the records for a rotation and for a detected reuse; the session
    /// and its owner are filled in here.
    pub async fn rotate_refresh(
        &self,
        presented_hash: &[u8],
        successor_hash: &[u8],
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
        revocation_expires: DateTime<Utc>,
        audit: Option<(&AuditFields, &AuditFields)>,
    ) -> AppResult<RotateOutcome> {
        macro_rules! body {
            ($tx:ident) => {{
                let spent: Option<(Uuid, DateTime<Utc>)> = sqlx::query_as(MARK_REFRESH_USED)
                    .bind(presented_hash)
                    .bind(now)
                    .fetch_optional(&mut *$tx)
                    .await?;
                match spent {
                    None => {
                        let family: Option<Uuid> = sqlx::query_scalar(FIND_REFRESH)
                            .bind(presented_hash)
                            .fetch_optional(&mut *$tx)
                            .await?;
                        match family {
                            None => {
                                $tx.rollback().await?;
                                RotateOutcome::Rejected
                            }
                            Some(session_id) => {
                                let owner = revoke_session_tx!(
                                    $tx,
                                    session_id,
                                    "refresh_token_reused",
                                    now,
                                    revocation_expires
                                );
                                let record = owner.zip(audit).map(|(user_id, (_, reused))| {
                                    reused.for_user(user_id, None).on("session", session_id)
                                });
                                audit_tx!($tx, record.as_ref());
                                $tx.commit().await?;
                                match owner {
                                    Some(user_id) => RotateOutcome::Reused { session_id, user_id },
                                    // Already ended: reuse of a dead family changes nothing.
                                    None => RotateOutcome::Rejected,
                                }
                            }
                        }
                    }
                    Some((session_id, token_expires)) => {
                        type Subject = (
                            Uuid,
                            String,
                            DateTime<Utc>,
                            Option<DateTime<Utc>>,
                            String,
                            bool,
                            bool,
                        );
                        let subject: Option<Subject> = sqlx::query_as(SESSION_SUBJECT)
                            .bind(session_id)
                            .fetch_optional(&mut *$tx)
                            .await?;
                        match subject {
                            Some((user_id, amr, created_at, None, username, is_superuser, true))
                                if token_expires > now =>
                            {
                                sqlx::query(INSERT_REFRESH)
                                    .bind(successor_hash)
                                    .bind(session_id)
                                    .bind(now)
                                    .bind(expires_at)
                                    .execute(&mut *$tx)
                                    .await?;
                                sqlx::query(TOUCH_SESSION)
                                    .bind(session_id)
                                    .bind(now)
                                    .bind(expires_at)
                                    .execute(&mut *$tx)
                                    .await?;
                                let record = audit.map(|(rotated, _)| {
                                    rotated
                                        .for_user(user_id, Some(&username))
                                        .on("session", session_id)
                                });
                                audit_tx!($tx, record.as_ref());
                                $tx.commit().await?;
                                RotateOutcome::Rotated(RotatedSession {
                                    session_id,
                                    user_id,
                                    username,
                                    is_superuser,
                                    amr,
                                    created_at,
                                })
                            }
                            // Undo the "used" mark, explicitly (see `abort!` in rbac.rs).
                            _ => {
                                $tx.rollback().await?;
                                RotateOutcome::Rejected
                            }
                        }
                    }
                }
            }};
        }
        Ok(match self {
            Store::Sqlite(pool) => {
                let mut tx = begin_write!(sqlite, pool);
                body!(tx)
            }
            Store::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                body!(tx)
            }
        })
    }

    /// Ends the session a refresh token belongs to (logout). Any token of the family
    /// will do: ending a session is never dangerous. Returns (session, owner) when a
    /// live session was ended.
    pub async fn revoke_session_by_refresh(
        &self,
        presented_hash: &[u8],
        now: DateTime<Utc>,
        revocation_expires: DateTime<Utc>,
        audit: Option<&AuditFields>,
    ) -> AppResult<Option<(Uuid, Uuid)>> {
        Ok(on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let family: Option<Uuid> = sqlx::query_scalar(FIND_REFRESH).bind(presented_hash).fetch_optional(&mut *tx).await?;
            let ended = match family {
                Some(session_id) => revoke_session_tx!(tx, session_id, "logout", now, revocation_expires).map(|u| (session_id, u)),
                None => None,
            };
            let record = ended.zip(audit).map(|((session_id, user_id), a)| a.for_user(user_id, None).on("session", session_id));
            audit_tx!(tx, record.as_ref());
            tx.commit().await?;
            ended
        }))
    }

    /// Ends one of a user's sessions; false when it is not theirs or already ended.
    pub async fn revoke_user_session(
        &self,
        user_id: Uuid,
        session_id: Uuid,
        reason: &str,
        now: DateTime<Utc>,
        revocation_expires: DateTime<Utc>,
        audit: Option<&AuditFields>,
    ) -> AppResult<bool> {
        Ok(on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let owner: Option<Uuid> = sqlx::query_scalar(REVOKE_USER_SESSION)
                .bind(session_id)
                .bind(user_id)
                .bind(now)
                .bind(reason)
                .fetch_optional(&mut *tx)
                .await?;
            if owner.is_some() {
                sqlx::query(INSERT_REVOCATION).bind(session_id.to_string()).bind(now).bind(revocation_expires).execute(&mut *tx).await?;
                audit_tx!(tx, audit);
            }
            tx.commit().await?;
            owner.is_some()
        }))
    }

    /// Ends every live session of a user except `keep`; returns the ended ids.
    pub async fn revoke_user_sessions(
        &self,
        user_id: Uuid,
        keep: Option<Uuid>,
        reason: &str,
        now: DateTime<Utc>,
        revocation_expires: DateTime<Utc>,
        audit: Option<&AuditFields>,
    ) -> AppResult<Vec<Uuid>> {
        Ok(on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let ended = revoke_user_sessions_tx!(tx, user_id, keep, reason, now, revocation_expires);
            audit_tx!(tx, audit);
            tx.commit().await?;
            ended
        }))
    }

    pub async fn active_sessions(&self, user_id: Uuid, now: DateTime<Utc>) -> AppResult<Vec<SessionRow>> {
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, SessionRow>(LIST_ACTIVE).bind(user_id).bind(now).fetch_all(pool).await)?,
        )
    }

    pub async fn session_by_id(&self, id: Uuid) -> AppResult<Option<SessionRow>> {
        Ok(on_pool!(self, pool => sqlx::query_as::<_, SessionRow>(SELECT_SESSION).bind(id).fetch_optional(pool).await)?)
    }
}
