//! Sessions (one per login) and their families of rotating refresh tokens.
//!
//! Every state change that ends a session also writes a row to `revocations` in the
//! same transaction, so no instance can miss it and no ended session lacks its record.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sqlx::{Database, Encode, Executor, FromRow, IntoArguments, Type};
use uuid::Uuid;

use super::audit::{
    AuditArrays, AuditKey, RECORD_VALUES, append_audit_arrays_postgres, append_in_tx, audit_columns, bind_audit_record,
    link_records, need_key, take_positions,
};
use super::placeholders;
use super::tx::{begin_write, within};
use super::{AuditFields, Store, on_pool};
use crate::error::AppResult;

row_struct! {
    #[derive(Debug, Clone)]
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
        /// A browser session of the pages (reached by a cookie), not a token login's.
        pub browser: bool,
        /// The application whose tokens the session holds, and its name (None:
        /// Portcullis's own login).
        pub client_id: Option<String>,
        pub client_name: Option<String>,
    }
}

#[derive(Debug, Clone)]
pub struct NewSession {
    pub id: Uuid,
    pub user_id: Uuid,
    /// JSON array of authentication methods, e.g. `["pwd"]`.
    pub amr: String,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    /// The application the session's tokens are issued to; None: Portcullis's own.
    pub client_id: Option<String>,
    /// The scopes granted to that application, space-separated.
    pub scope: Option<String>,
    /// The browser session that authorized the application (its ID tokens' `sid`).
    pub browser_session_id: Option<Uuid>,
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
    /// The application the session belongs to, its scopes, and the browser session
    /// that authorized it (see `NewSession`).
    pub client_id: Option<String>,
    pub scope: Option<String>,
    pub browser_session_id: Option<Uuid>,
}

/// One presented refresh token to rotate (see `Store::rotate_refresh_batch`).
#[derive(Debug, Clone)]
pub struct RotationJob {
    pub presented_hash: Vec<u8>,
    pub successor_hash: Vec<u8>,
    pub now: DateTime<Utc>,
    /// The successor's (and the session's) new expiry.
    pub expires_at: DateTime<Utc>,
    /// How long a revocation record of a reused family is kept.
    pub revocation_expires: DateTime<Utc>,
    /// The records for a rotation and for a detected reuse.
    pub audit: Option<(AuditFields, AuditFields)>,
    /// The application presenting the token (None: Portcullis's own refresh). A token
    /// of another application's session is refused and left as it was: it is not
    /// this caller's to spend (RFC 6749 6).
    pub client_id: Option<String>,
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

const INSERT_SESSION: &str = "INSERT INTO sessions (id, user_id, amr, user_agent, ip, created_at, last_refreshed_at, expires_at, client_id, scope, browser_session_id) VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8, $9, $10)";
const INSERT_REFRESH: &str =
    "INSERT INTO refresh_tokens (token_hash, session_id, issued_at, expires_at) VALUES ($1, $2, $3, $4)";
const FIND_REFRESH: &str = "SELECT session_id FROM refresh_tokens WHERE token_hash = $1";
/// A session's columns, `s` joined to its browser session `b` when it has one.
macro_rules! session_columns {
    () => {
        "s.id, s.user_id, s.amr, s.user_agent, s.ip, s.created_at, s.last_refreshed_at, s.expires_at, s.revoked_at, \
         s.revoked_reason, b.session_id IS NOT NULL AS browser, s.client_id, c.name AS client_name \
         FROM sessions s LEFT JOIN browser_sessions b ON b.session_id = s.id LEFT JOIN oidc_clients c ON c.id = s.client_id"
    };
}
const SELECT_SESSION: &str = concat!("SELECT ", session_columns!(), " WHERE s.id = $1");
const REVOKE_SESSION: &str =
    "UPDATE sessions SET revoked_at = $2, revoked_reason = $3 WHERE id = $1 AND revoked_at IS NULL RETURNING user_id";
const REVOKE_USER_SESSION: &str = "UPDATE sessions SET revoked_at = $3, revoked_reason = $4 WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL RETURNING user_id";
const REVOKE_USER_SESSIONS: &str = "UPDATE sessions SET revoked_at = $3, revoked_reason = $4 WHERE user_id = $1 AND revoked_at IS NULL AND ($2 IS NULL OR id <> $2) RETURNING id";
const MARK_SESSIONS_ENDED: &str = "UPDATE users SET sessions_ended_at = $2 WHERE id = $1";
const INSERT_REVOCATION: &str =
    "INSERT INTO revocations (kind, subject, created_at, expires_at) VALUES ('session', $1, $2, $3)";
/// `$2` now, `$3` the idle cutoff: a browser session unused since then has ended (the
/// rule `SELECT_BROWSER` applies to its cookie), whether or not anyone revoked it.
const LIST_ACTIVE: &str = concat!(
    "SELECT ",
    session_columns!(),
    " WHERE s.user_id = $1 AND s.revoked_at IS NULL AND s.expires_at > $2 \
     AND (b.session_id IS NULL OR b.last_seen_at > $3) ORDER BY s.created_at DESC"
);

row_struct! {
    /// What a rotation needs to know of a presented refresh token, read in one go.
    #[derive(Debug)]
    struct RotationLookup {
        session_id: Uuid,
        used: bool,
        expires_at: DateTime<Utc>,
        user_id: Uuid,
        amr: String,
        created_at: DateTime<Utc>,
        revoked_at: Option<DateTime<Utc>>,
        username: String,
        is_superuser: bool,
        is_active: bool,
        client_id: Option<String>,
        scope: Option<String>,
        browser_session_id: Option<Uuid>,
        /// The audit chain's position and head, when the chain has a row yet.
        chain_seq: Option<i64>,
        chain_head: Option<String>,
    }
}

impl From<RotationLookup> for RotatedSession {
    fn from(t: RotationLookup) -> Self {
        RotatedSession {
            session_id: t.session_id,
            user_id: t.user_id,
            username: t.username,
            is_superuser: t.is_superuser,
            amr: t.amr,
            created_at: t.created_at,
            client_id: t.client_id,
            scope: t.scope,
            browser_session_id: t.browser_session_id,
        }
    }
}

/// `$1` the presented token's hash, `$2` the audit chain. Runs under `BEGIN
/// IMMEDIATE`, so nothing changes between this read and the write.
const ROTATION_LOOKUP_SQLITE: &str = "SELECT r.session_id, r.used_at IS NOT NULL AS used, r.expires_at, s.user_id, s.amr, s.created_at, s.revoked_at, \
     u.username, u.is_superuser, u.is_active, s.client_id, s.scope, s.browser_session_id, c.seq AS chain_seq, c.head AS chain_head \
     FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id JOIN users u ON u.id = s.user_id \
     LEFT JOIN audit_chains c ON c.chain = $2 WHERE r.token_hash = $1";
/// As above, locking the token's row (a concurrent rotation of the same token waits,
/// then sees it used) and the chain's head (the next position is ours).
const ROTATION_LOOKUP_POSTGRES: &str = "SELECT r.session_id, r.used_at IS NOT NULL AS used, r.expires_at, s.user_id, s.amr, s.created_at, s.revoked_at, \
     u.username, u.is_superuser, u.is_active, s.client_id, s.scope, s.browser_session_id, c.seq AS chain_seq, c.head AS chain_head \
     FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id JOIN users u ON u.id = s.user_id \
     LEFT JOIN LATERAL (SELECT seq, head FROM audit_chains WHERE chain = $2 FOR UPDATE) c ON true \
     WHERE r.token_hash = $1 FOR UPDATE OF r";
/// The rotation's writes: `$1` now, `$2` the spent token, `$3` its successor, `$4` the
/// session, `$5` the new expiry; audited, also the record (`$6`-`$24`, in `INSERT`'s
/// order) and the chain's new head (the record's hash `$24`, and its MAC `$25`). SQLite runs several statements in one call;
/// PostgreSQL runs them as one statement of data-modifying CTEs.
const ROTATION_WRITE_SQLITE: &str = "UPDATE refresh_tokens SET used_at = $1 WHERE token_hash = $2; \
     INSERT INTO refresh_tokens (token_hash, session_id, issued_at, expires_at) VALUES ($3, $4, $1, $5); \
     UPDATE sessions SET last_refreshed_at = $1, expires_at = $5 WHERE id = $4";
const ROTATION_WRITE_AUDITED_SQLITE: &str = concat!(
    "UPDATE refresh_tokens SET used_at = $1 WHERE token_hash = $2; \
     INSERT INTO refresh_tokens (token_hash, session_id, issued_at, expires_at) VALUES ($3, $4, $1, $5); \
     UPDATE sessions SET last_refreshed_at = $1, expires_at = $5 WHERE id = $4; \
     UPDATE audit_chains SET seq = $7, head = $24, head_mac = $25 WHERE chain = $6; \
     INSERT INTO audit_log (",
    audit_columns!(),
    ") VALUES ($6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24)"
);
const ROTATION_WRITE_POSTGRES: &str = "WITH spent AS (UPDATE refresh_tokens SET used_at = $1 WHERE token_hash = $2), \
     successor AS (INSERT INTO refresh_tokens (token_hash, session_id, issued_at, expires_at) VALUES ($3, $4, $1, $5)) \
     UPDATE sessions SET last_refreshed_at = $1, expires_at = $5 WHERE id = $4";
const ROTATION_WRITE_AUDITED_POSTGRES: &str = concat!(
    "WITH spent AS (UPDATE refresh_tokens SET used_at = $1 WHERE token_hash = $2), \
     successor AS (INSERT INTO refresh_tokens (token_hash, session_id, issued_at, expires_at) VALUES ($3, $4, $1, $5)), \
     touched AS (UPDATE sessions SET last_refreshed_at = $1, expires_at = $5 WHERE id = $4), \
     head AS (UPDATE audit_chains SET seq = $7, head = $24, head_mac = $25 WHERE chain = $6) \
     INSERT INTO audit_log (",
    audit_columns!(),
    ") VALUES ($6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24)"
);

/// Rotation transactions on PostgreSQL plan every join as index lookups. The batch
/// statements join arrays of unknown length (estimated at 10 rows) to tables that were
/// small when their plans were cached and grow by a row per rotation; left to itself
/// the planner hashes the arrays and scans the whole table, once per batch, and
/// nothing replans before autovacuum's next ANALYZE.
const ROTATION_BEGIN_POSTGRES: &str =
    "BEGIN; SET LOCAL enable_seqscan = off; SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off";

/// `$1` every presented token's hash, in batch order (`i` counts from 1), `$2` the
/// audit chain. Rows are locked in token order, so two batches holding some of the
/// same tokens (one token presented twice at once) wait for each other instead of
/// deadlocking; the chain's head is locked and read on the same trip.
const ROTATION_BATCH_LOOKUP_POSTGRES: &str = "SELECT p.i, r.session_id, r.used_at IS NOT NULL AS used, r.expires_at, s.user_id, s.amr, s.created_at, \
     s.revoked_at, u.username, u.is_superuser, u.is_active, s.client_id, s.scope, s.browser_session_id, c.seq AS chain_seq, c.head AS chain_head \
     FROM unnest($1::bytea[]) WITH ORDINALITY AS p(token_hash, i) \
     JOIN refresh_tokens r ON r.token_hash = p.token_hash JOIN sessions s ON s.id = r.session_id JOIN users u ON u.id = s.user_id \
     LEFT JOIN LATERAL (SELECT seq, head FROM audit_chains WHERE chain = $2 FOR UPDATE) c ON true \
     ORDER BY p.token_hash FOR UPDATE OF r";
/// The writes of many rotations, one array element each, from the arrays at the
/// given parameters: now, the spent token, its successor, the session, the new expiry.
/// Ends in a CTE, so a statement goes on with `SELECT` or more CTEs.
macro_rules! rotation_batch_writes_postgres {
    ($now:literal, $spent:literal, $successor:literal, $session:literal, $expires:literal) => {
        concat!(
            "WITH j AS (SELECT * FROM unnest(",
            $now,
            "::timestamptz[], ",
            $spent,
            "::bytea[], ",
            $successor,
            "::bytea[], ",
            $session,
            "::uuid[], ",
            $expires,
            "::timestamptz[]) AS j(now, spent, successor, session_id, expires_at)), \
             spent AS (UPDATE refresh_tokens r SET used_at = j.now FROM j WHERE r.token_hash = j.spent), \
             successor AS (INSERT INTO refresh_tokens (token_hash, session_id, issued_at, expires_at) SELECT successor, session_id, now, expires_at FROM j), \
             touched AS (UPDATE sessions s SET last_refreshed_at = j.now, expires_at = j.expires_at FROM j WHERE s.id = j.session_id)"
        )
    };
}
const ROTATION_BATCH_WRITE_POSTGRES: &str = concat!(
    rotation_batch_writes_postgres!("$1", "$2", "$3", "$4", "$5"),
    " SELECT 1"
);
/// As above with the arrays at `$24`-`$28`, and the rotations' records as
/// `AuditArrays` (`$1`-`$19`) appended to chain `$21`, which ends at position `$22`
/// with head `$20` (its MAC `$23`).
const ROTATION_BATCH_WRITE_AUDITED_POSTGRES: &str = concat!(
    rotation_batch_writes_postgres!("$24", "$25", "$26", "$27", "$28"),
    ", ",
    append_audit_arrays_postgres!()
);

/// The values every rotation write binds first: now, the spent token, its successor,
/// the session and the new expiry (one value each, or one array each in a batch).
const ROTATION_VALUES: usize = 5;
// An audited write binds a record after them as `bind_audit_record` does, then the
// head's MAC; a batch binds `AuditArrays` and the chain's head, name, position and
// head MAC before them.
const _: () = {
    assert!(placeholders::highest(ROTATION_WRITE_SQLITE) == ROTATION_VALUES);
    assert!(placeholders::highest(ROTATION_WRITE_POSTGRES) == ROTATION_VALUES);
    assert!(placeholders::highest(ROTATION_WRITE_AUDITED_SQLITE) == ROTATION_VALUES + RECORD_VALUES + 1);
    assert!(placeholders::highest(ROTATION_WRITE_AUDITED_POSTGRES) == ROTATION_VALUES + RECORD_VALUES + 1);
    assert!(placeholders::highest(ROTATION_BATCH_WRITE_POSTGRES) == ROTATION_VALUES);
    assert!(placeholders::highest(ROTATION_BATCH_WRITE_AUDITED_POSTGRES) == RECORD_VALUES + 4 + ROTATION_VALUES);
};

/// A row of the batch lookup (PostgreSQL only).
struct BatchLookup {
    /// The job's position in the batch, from 1.
    i: i64,
    found: RotationLookup,
}

impl sqlx::FromRow<'_, sqlx::postgres::PgRow> for BatchLookup {
    fn from_row(row: &sqlx::postgres::PgRow) -> Result<Self, sqlx::Error> {
        use sqlx::Row;
        Ok(Self {
            i: row.try_get("i")?,
            found: RotationLookup::from_row(row)?,
        })
    }
}

/// Writes a batch of rotations on PostgreSQL with three statements in all (look up
/// and lock every token, take the chain positions, write everything) instead of two
/// per rotation: PostgreSQL's cost here is per statement, not per row.
///
/// Only the common case goes this way: distinct tokens, each either current (of
/// distinct sessions) or refused, with one audit chain. A batch that holds a spent
/// token (reuse ends a session), or one token twice, returns None and is written one
/// rotation at a time, in order, in the same transaction, so the outcome never
/// depends on which way it went.
async fn rotate_together_postgres(
    tx: &mut sqlx::PgConnection,
    key: Option<&AuditKey>,
    jobs: &[RotationJob],
) -> AppResult<Option<Vec<RotateOutcome>>> {
    if jobs.len() < 2 {
        return Ok(None);
    }
    let chain = jobs[0].audit.as_ref().map(|(rotated, _)| rotated.chain.as_str());
    let mut presented = HashSet::with_capacity(jobs.len());
    for job in jobs {
        let same_chain = job.audit.as_ref().map(|(rotated, _)| rotated.chain.as_str()) == chain;
        if !same_chain || !presented.insert(job.presented_hash.as_slice()) {
            return Ok(None);
        }
    }
    let hashes: Vec<&[u8]> = jobs.iter().map(|j| j.presented_hash.as_slice()).collect();
    let found: Vec<BatchLookup> = sqlx::query_as(ROTATION_BATCH_LOOKUP_POSTGRES)
        .bind(hashes)
        .bind(chain.unwrap_or(""))
        .fetch_all(&mut *tx)
        .await?;
    // Where the chain stands (every row carries it); None until its first record.
    let chain_at = found
        .first()
        .and_then(|row| row.found.chain_seq.zip(row.found.chain_head.clone()));
    let mut lookups: Vec<Option<RotationLookup>> = jobs.iter().map(|_| None).collect();
    for row in found {
        match usize::try_from(row.i - 1).ok().and_then(|i| lookups.get_mut(i)) {
            Some(slot) => *slot = Some(row.found),
            None => return Ok(None),
        }
    }
    let n = jobs.len();
    let mut sessions = HashSet::with_capacity(n);
    let mut rotates = vec![false; n];
    let (mut now, mut spent, mut successor, mut session, mut expires, mut records) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for ((job, found), rotates) in jobs.iter().zip(&lookups).zip(&mut rotates) {
        match found {
            Some(t) if t.client_id != job.client_id => {}
            Some(t) if t.used => return Ok(None),
            Some(t) if t.revoked_at.is_none() && t.is_active && t.expires_at > job.now => {
                if !sessions.insert(t.session_id) {
                    return Ok(None);
                }
                *rotates = true;
                now.push(job.now);
                spent.push(job.presented_hash.as_slice());
                successor.push(job.successor_hash.as_slice());
                session.push(t.session_id);
                expires.push(job.expires_at);
                if let Some((rotated, _)) = &job.audit {
                    records.push(
                        rotated
                            .for_user(t.user_id, Some(&t.username))
                            .on("session", t.session_id),
                    );
                }
            }
            // Unknown, expired, or of an ended session or a disabled user.
            _ => {}
        }
    }
    if !session.is_empty() {
        let write = match chain {
            Some(chain) => {
                let key = need_key(key)?;
                let (seq, prev) = match chain_at {
                    Some(at) => at,
                    // The chain's first records: create its row (and lock it).
                    None => take_positions(&mut *tx, key, chain, 0).await?,
                };
                let last = seq + records.len() as i64;
                let (linked, head) = link_records(key, chain, seq + 1, prev, records);
                let head_mac = key.head(chain, last, &head);
                AuditArrays::from(linked)
                    .bind(sqlx::query(ROTATION_BATCH_WRITE_AUDITED_POSTGRES))
                    .bind(head)
                    .bind(chain)
                    .bind(last)
                    .bind(head_mac)
            }
            None => sqlx::query(ROTATION_BATCH_WRITE_POSTGRES),
        };
        write
            .bind(now)
            .bind(spent)
            .bind(successor)
            .bind(session)
            .bind(expires)
            .execute(&mut *tx)
            .await?;
    }
    let outcomes = lookups
        .into_iter()
        .zip(rotates)
        .map(|(found, rotated)| match found {
            Some(t) if rotated => RotateOutcome::Rotated(t.into()),
            _ => RotateOutcome::Rejected,
        })
        .collect();
    Ok(Some(outcomes))
}

/// Ends every live session of a user (but `keep`) inside the transaction open on
/// `conn`, recording their revocations and the moment on the user (`sessions_ended_at`:
/// what refuses the tokens that belong to no session, even when no session was live);
/// returns the ended ids.
pub(crate) async fn revoke_user_sessions_in_tx<DB, C>(
    conn: &mut C,
    user_id: Uuid,
    keep: Option<Uuid>,
    reason: &str,
    now: DateTime<Utc>,
    revocation_expires: DateTime<Utc>,
) -> sqlx::Result<Vec<Uuid>>
where
    DB: Database,
    for<'c> &'c mut C: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'r> (Uuid,): FromRow<'r, DB::Row>,
    for<'q> Uuid: Encode<'q, DB> + Type<DB>,
    for<'q> Option<Uuid>: Encode<'q, DB> + Type<DB>,
    for<'a> &'a str: Encode<'a, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> DateTime<Utc>: Encode<'q, DB> + Type<DB>,
{
    let ended: Vec<Uuid> = sqlx::query_scalar(REVOKE_USER_SESSIONS)
        .bind(user_id)
        .bind(keep)
        .bind(now)
        .bind(reason)
        .fetch_all(&mut *conn)
        .await?;
    for id in &ended {
        record_revocation(&mut *conn, *id, now, revocation_expires).await?;
    }
    sqlx::query(MARK_SESSIONS_ENDED)
        .bind(user_id)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    Ok(ended)
}

/// Ends one session inside the transaction open on `conn`, recording its revocation;
/// returns the owner's id when the session was live.
async fn revoke_session_in_tx<DB, C>(
    conn: &mut C,
    id: Uuid,
    reason: &str,
    now: DateTime<Utc>,
    revocation_expires: DateTime<Utc>,
) -> sqlx::Result<Option<Uuid>>
where
    DB: Database,
    for<'c> &'c mut C: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'r> (Uuid,): FromRow<'r, DB::Row>,
    for<'q> Uuid: Encode<'q, DB> + Type<DB>,
    for<'a> &'a str: Encode<'a, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> DateTime<Utc>: Encode<'q, DB> + Type<DB>,
{
    let owner: Option<Uuid> = sqlx::query_scalar(REVOKE_SESSION)
        .bind(id)
        .bind(now)
        .bind(reason)
        .fetch_optional(&mut *conn)
        .await?;
    if owner.is_some() {
        record_revocation(conn, id, now, revocation_expires).await?;
    }
    Ok(owner)
}

/// Writes the revocation of an ended session to the feed every instance follows.
pub(crate) async fn record_revocation<DB, C>(
    conn: &mut C,
    session_id: Uuid,
    now: DateTime<Utc>,
    revocation_expires: DateTime<Utc>,
) -> sqlx::Result<()>
where
    DB: Database,
    for<'c> &'c mut C: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> DateTime<Utc>: Encode<'q, DB> + Type<DB>,
{
    sqlx::query(INSERT_REVOCATION)
        .bind(session_id.to_string())
        .bind(now)
        .bind(revocation_expires)
        .execute(conn)
        .await?;
    Ok(())
}

/// One backend's statements for rotating a token on its own (see `rotate_one_by_one`).
struct RotationStatements {
    lookup: &'static str,
    write: &'static str,
    write_audited: &'static str,
}

const ROTATION_SQLITE: RotationStatements = RotationStatements {
    lookup: ROTATION_LOOKUP_SQLITE,
    write: ROTATION_WRITE_SQLITE,
    write_audited: ROTATION_WRITE_AUDITED_SQLITE,
};

const ROTATION_POSTGRES: RotationStatements = RotationStatements {
    lookup: ROTATION_LOOKUP_POSTGRES,
    write: ROTATION_WRITE_POSTGRES,
    write_audited: ROTATION_WRITE_AUDITED_POSTGRES,
};

/// Rotates `jobs` in order, one at a time, inside the transaction open on `conn`, with
/// `sql`, the statements of `conn`'s backend: two round trips each, the lookup and one
/// write of everything (see `Store::rotate_refresh_batch`).
async fn rotate_one_by_one<DB, C>(
    conn: &mut C,
    key: Option<&AuditKey>,
    jobs: &[RotationJob],
    sql: &RotationStatements,
) -> sqlx::Result<Vec<RotateOutcome>>
where
    DB: Database,
    for<'c> &'c mut C: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'r> RotationLookup: FromRow<'r, DB::Row>,
    for<'r> (Uuid,): FromRow<'r, DB::Row>,
    for<'r> (i64, String): FromRow<'r, DB::Row>,
    for<'r> (String,): FromRow<'r, DB::Row>,
    for<'a> &'a str: Encode<'a, DB> + Type<DB>,
    for<'q> Vec<u8>: Encode<'q, DB> + Type<DB>,
    for<'q> Uuid: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> Option<String>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<i32>: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> DateTime<Utc>: Encode<'q, DB> + Type<DB>,
{
    let mut outcomes = Vec::with_capacity(jobs.len());
    for job in jobs {
        let now = job.now;
        let audit = job.audit.as_ref();
        let chain = audit.map(|(rotated, _)| rotated.chain.as_str()).unwrap_or("");
        let found: Option<RotationLookup> = sqlx::query_as(sql.lookup)
            .bind(&job.presented_hash)
            .bind(chain)
            .fetch_optional(&mut *conn)
            .await?;
        let outcome = match found {
            None => RotateOutcome::Rejected,
            // Another application's token (or an application's, presented to
            // Portcullis's own refresh): not this caller's to spend or to end.
            Some(t) if t.client_id != job.client_id => RotateOutcome::Rejected,
            Some(t) if t.used => {
                let owner = revoke_session_in_tx(
                    &mut *conn,
                    t.session_id,
                    "refresh_token_reused",
                    now,
                    job.revocation_expires,
                )
                .await?;
                let record = owner
                    .zip(audit)
                    .map(|(user_id, (_, reused))| reused.for_user(user_id, None).on("session", t.session_id));
                append_in_tx(&mut *conn, key, record.as_ref()).await?;
                match owner {
                    Some(user_id) => RotateOutcome::Reused {
                        session_id: t.session_id,
                        user_id,
                    },
                    // Already ended: reuse of a dead family changes nothing.
                    None => RotateOutcome::Rejected,
                }
            }
            Some(mut t) if t.revoked_at.is_none() && t.is_active && t.expires_at > now => {
                let write = sqlx::query(if audit.is_some() { sql.write_audited } else { sql.write })
                    .bind(now)
                    .bind(&job.presented_hash)
                    .bind(&job.successor_hash)
                    .bind(t.session_id)
                    .bind(job.expires_at);
                let write = match audit {
                    Some((rotated, _)) => {
                        let key = need_key(key)?;
                        // The chain's first record: create its row (and lock it).
                        let (seq, prev) = match (t.chain_seq, t.chain_head.take()) {
                            (Some(seq), Some(head)) => (seq, head),
                            _ => take_positions(&mut *conn, key, chain, 0).await?,
                        };
                        let record = rotated
                            .for_user(t.user_id, Some(&t.username))
                            .on("session", t.session_id);
                        let hash = key.link(&prev, seq + 1, &record);
                        let head_mac = key.head(chain, seq + 1, &hash);
                        bind_audit_record(write, record, seq + 1, prev, hash).bind(head_mac)
                    }
                    None => write,
                };
                write.execute(&mut *conn).await?;
                RotateOutcome::Rotated(t.into())
            }
            // Expired, or of an ended session or a disabled user: nothing changes.
            Some(_) => RotateOutcome::Rejected,
        };
        outcomes.push(outcome);
    }
    Ok(outcomes)
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
        on_pool!(self, pool => within(pool.begin().await?, async |tx| {
            sqlx::query(INSERT_SESSION)
                .bind(s.id)
                .bind(s.user_id)
                .bind(&s.amr)
                .bind(&s.user_agent)
                .bind(&s.ip)
                .bind(now)
                .bind(expires_at)
                .bind(&s.client_id)
                .bind(&s.scope)
                .bind(s.browser_session_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query(INSERT_REFRESH).bind(refresh_hash).bind(s.id).bind(now).bind(expires_at).execute(&mut *tx).await?;
            append_in_tx(tx, self.audit_key(), audit).await?;
            Ok(())
        }).await)
    }

    /// Atomically spends refresh tokens and stores their successors, all `jobs` in one
    /// transaction (a batch shares one commit: on SQLite the commit, not the
    /// statements, is most of a rotation's cost). Of two callers with the same token
    /// exactly one gets `Rotated`: SQLite's write lock (`BEGIN IMMEDIATE`) or
    /// PostgreSQL's row lock on the token orders them, and the second sees a reused
    /// token. The audit records of a job get the session and its owner filled in here.
    ///
    /// Each statement is a round trip (a thread hand-off on SQLite, a socket on
    /// PostgreSQL), so a rotation takes two: one read of the token, its session, its
    /// owner and the audit chain's head (locked), and one write of everything.
    pub async fn rotate_refresh_batch(&self, jobs: &[RotationJob]) -> AppResult<Vec<RotateOutcome>> {
        let key = self.audit_key();
        match self {
            Store::Sqlite(pool, _) => {
                within(begin_write(pool).await?, async |tx| {
                    Ok(rotate_one_by_one(tx, key, jobs, &ROTATION_SQLITE).await?)
                })
                .await
            }
            Store::Postgres(pool, _) => {
                within(
                    pool.begin_with(ROTATION_BEGIN_POSTGRES).await?,
                    async |tx| match rotate_together_postgres(tx, key, jobs).await? {
                        Some(together) => Ok(together),
                        None => Ok(rotate_one_by_one(tx, key, jobs, &ROTATION_POSTGRES).await?),
                    },
                )
                .await
            }
        }
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
        on_pool!(self, pool => within(pool.begin().await?, async |tx| {
            let family: Option<Uuid> = sqlx::query_scalar(FIND_REFRESH).bind(presented_hash).fetch_optional(&mut *tx).await?;
            let ended = match family {
                Some(session_id) => revoke_session_in_tx(tx, session_id, "logout", now, revocation_expires).await?.map(|u| (session_id, u)),
                None => None,
            };
            let record = ended.zip(audit).map(|((session_id, user_id), a)| a.for_user(user_id, None).on("session", session_id));
            append_in_tx(tx, self.audit_key(), record.as_ref()).await?;
            Ok(ended)
        }).await)
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
        on_pool!(self, pool => within(pool.begin().await?, async |tx| {
            let owner: Option<Uuid> = sqlx::query_scalar(REVOKE_USER_SESSION)
                .bind(session_id)
                .bind(user_id)
                .bind(now)
                .bind(reason)
                .fetch_optional(&mut *tx)
                .await?;
            if owner.is_some() {
                record_revocation(tx, session_id, now, revocation_expires).await?;
                append_in_tx(tx, self.audit_key(), audit).await?;
            }
            Ok(owner.is_some())
        }).await)
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
        on_pool!(self, pool => within(pool.begin().await?, async |tx| {
            let ended = revoke_user_sessions_in_tx(tx, user_id, keep, reason, now, revocation_expires).await?;
            append_in_tx(tx, self.audit_key(), audit).await?;
            Ok(ended)
        }).await)
    }

    /// A user's live sessions, newest first: not ended, not past their end, and for a
    /// browser session used after `browser_idle_since`.
    pub async fn active_sessions(
        &self,
        user_id: Uuid,
        now: DateTime<Utc>,
        browser_idle_since: DateTime<Utc>,
    ) -> AppResult<Vec<SessionRow>> {
        Ok(on_pool!(self, pool => sqlx::query_as::<_, SessionRow>(LIST_ACTIVE)
            .bind(user_id)
            .bind(now)
            .bind(browser_idle_since)
            .fetch_all(pool)
            .await)?)
    }

    pub async fn session_by_id(&self, id: Uuid) -> AppResult<Option<SessionRow>> {
        Ok(on_pool!(self, pool => sqlx::query_as::<_, SessionRow>(SELECT_SESSION).bind(id).fetch_optional(pool).await)?)
    }
}
