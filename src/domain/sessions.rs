//! Sessions: starting one, refresh-token rotation, logout, listing and ending them.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::{Actor, AuditEvent, Portcullis};
use crate::config::JwtSubject;
use crate::crypto::jwt::AccessClaims;
use crate::crypto::tokens;
use crate::error::{AppError, AppResult};
use crate::store::{NewSession, RotateOutcome, RotatedSession, RotationJob, SessionRow, Store, UserRow};

const REFRESH_FAILED: &str = "refresh token is invalid, expired or revoked";

/// Where a request came from, recorded on the session it starts.
#[derive(Debug, Clone, Default)]
pub struct ClientContext {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// The request's `X-Request-Id`, for the audit trail.
    pub request_id: Option<String>,
}

/// Whom an access token is for.
pub(crate) struct Subject<'a> {
    pub id: Uuid,
    pub username: &'a str,
    pub superuser: bool,
}

/// An access token issued to an application (through the OpenID provider) rather
/// than to Portcullis's own login: it names the client and the granted scopes, and
/// carries the person's roles and permissions only when the `roles` scope was granted.
pub(crate) struct AppAudience<'a> {
    pub client_id: &'a str,
    pub scope: &'a str,
    pub with_grants: bool,
    /// The client's own access token lifetime, when it sets one.
    pub ttl: Option<u64>,
}

/// What a successful login or refresh returns.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    /// Always `bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

impl Portcullis {
    /// Starts a session for an already authenticated user (password, later social
    /// login or MFA) and returns its first token pair.
    pub async fn start_session(&self, user: &UserRow, amr: &[&str], ctx: &ClientContext) -> AppResult<TokenPair> {
        let amr: Vec<String> = amr.iter().map(|s| s.to_string()).collect();
        let record = AuditEvent::new("LOGIN").meta("amr", &amr);
        let (session_id, refresh, now) = self.open_session(user, &amr, None, record, ctx).await?;
        let subject = Subject {
            id: user.id,
            username: &user.username,
            superuser: user.is_superuser,
        };
        let (access, expires_in) = self
            .mint_access_token(&subject, session_id, amr, now, now, None)
            .await?;
        Ok(self.pair(access, refresh, expires_in))
    }

    /// Stores a new session of `user` (for an application when `app` says which, its
    /// scopes and authorizing browser session) with its first refresh token, recording
    /// `event`: the session's id, the refresh token, and the moment.
    pub(crate) async fn open_session(
        &self,
        user: &UserRow,
        amr: &[String],
        app: Option<(&str, &str, Uuid, Option<u64>)>,
        event: AuditEvent,
        ctx: &ClientContext,
    ) -> AppResult<(Uuid, String, DateTime<Utc>)> {
        let inner = self.inner();
        let now = Utc::now();
        let session = NewSession {
            id: Uuid::new_v4(),
            user_id: user.id,
            amr: serde_json::to_string(amr).map_err(AppError::internal)?,
            user_agent: ctx.user_agent.as_ref().map(|s| s.chars().take(512).collect()),
            ip: ctx.ip.clone(),
            client_id: app.map(|(client, ..)| client.to_string()),
            scope: app.map(|(_, scope, ..)| scope.to_string()),
            browser_session_id: app.map(|(_, _, browser, _)| browser),
        };
        let refresh = tokens::random_token();
        let expires = now + self.refresh_ttl(app.and_then(|(.., ttl)| ttl))?;
        let record = self.audit_record(
            event
                .actor(user.id, &user.username)
                .resource("session", session.id)
                .client(ctx),
        );
        inner
            .store
            .create_session(&session, &tokens::digest(&refresh), now, expires, record.as_ref())
            .await?;
        Ok((session.id, refresh, now))
    }

    /// How long a refresh token lives: the configured lifetime, or an application's
    /// shorter one.
    fn refresh_ttl(&self, client_ttl: Option<u64>) -> AppResult<chrono::Duration> {
        let configured = self.config().tokens.refresh_token_ttl;
        let ttl = client_ttl.map_or(configured, |t| configured.min(std::time::Duration::from_secs(t)));
        chrono::Duration::from_std(ttl).map_err(AppError::internal)
    }

    /// The pair answered for an access token that expires in `expires_in` seconds.
    fn pair(&self, access_token: String, refresh_token: String, expires_in: u64) -> TokenPair {
        TokenPair {
            access_token,
            refresh_token,
            token_type: "bearer",
            expires_in,
        }
    }

    /// An access token's `sub`, and its `uid` when `sub` is not the user id
    /// (`JWT_SUBJECT=username`). Introspection answers with the same `sub`.
    pub(crate) fn subject_claims(&self, id: Uuid, username: &str) -> (String, Option<String>) {
        match self.config().tokens.jwt_subject {
            JwtSubject::Id => (id.to_string(), None),
            JwtSubject::Username => (username.to_string(), Some(id.to_string())),
        }
    }

    /// Signs an access token carrying the user's current roles and permissions (for
    /// an application, only with its `roles` scope); the token and the seconds until
    /// its `exp` ([`Portcullis::access_token_exp_within`]).
    pub(crate) async fn mint_access_token(
        &self,
        user: &Subject<'_>,
        session_id: Uuid,
        amr: Vec<String>,
        auth_time: DateTime<Utc>,
        now: DateTime<Utc>,
        app: Option<&AppAudience<'_>>,
    ) -> AppResult<(String, u64)> {
        let inner = self.inner();
        let iat = now.timestamp();
        let exp = self.access_token_exp_within(iat, app.and_then(|a| a.ttl))?;
        let grants = match app {
            Some(a) if !a.with_grants => Default::default(),
            _ => self.grants(user.id, user.superuser).await?,
        };
        let (sub, uid) = self.subject_claims(user.id, user.username);
        let claims = AccessClaims {
            iss: inner.config.tokens.jwt_issuer.clone(),
            sub,
            aud: inner.config.tokens.jwt_audience.clone(),
            uid,
            exp,
            iat,
            nbf: iat,
            jti: Uuid::new_v4().to_string(),
            sid: session_id.to_string(),
            preferred_username: user.username.to_string(),
            roles: grants.roles,
            permissions: grants.permissions,
            amr,
            auth_time: Some(auth_time.timestamp()),
            superuser: user.superuser && app.is_none_or(|a| a.with_grants),
            client_id: app.map(|a| a.client_id.to_string()),
            scope: app.map(|a| a.scope.to_string()),
        };
        let token = inner.keys.ring().sign(&claims).map_err(AppError::Internal)?;
        Ok((token, exp.saturating_sub(iat).max(0) as u64))
    }

    /// Spends a refresh token for a new pair. Presenting a token that was already
    /// rotated ends its whole session (someone else holds a copy). The rotation
    /// itself is queued and written in a batch with those arriving meanwhile (see
    /// `RotationQueue`).
    pub async fn refresh(&self, refresh_token: &str, ctx: &ClientContext) -> AppResult<TokenPair> {
        let (session, successor, now) = self.rotate_refresh(refresh_token, None, ctx).await?;
        let amr: Vec<String> = serde_json::from_str(&session.amr).unwrap_or_default();
        let subject = Subject {
            id: session.user_id,
            username: &session.username,
            superuser: session.is_superuser,
        };
        let (access, expires_in) = self
            .mint_access_token(&subject, session.session_id, amr, session.created_at, now, None)
            .await?;
        Ok(self.pair(access, successor, expires_in))
    }

    /// Spends a refresh token of `client`'s sessions (None: Portcullis's own) for its
    /// successor: the session it continues, the successor, and the moment. Reuse,
    /// an outlived session and a role now demanding MFA end the session.
    pub(crate) async fn rotate_refresh(
        &self,
        refresh_token: &str,
        client: Option<(&str, Option<u64>)>,
        ctx: &ClientContext,
    ) -> AppResult<(RotatedSession, String, DateTime<Utc>)> {
        let rejected = || AppError::InvalidCredentials(REFRESH_FAILED.into());
        if !tokens::looks_like_token(refresh_token) {
            return Err(rejected());
        }
        let inner = self.inner();
        let now = Utc::now();
        let successor = tokens::random_token();
        let expires = now + self.refresh_ttl(client.and_then(|(_, ttl)| ttl))?;
        let records = self
            .audit_record(AuditEvent::new("TOKEN_REFRESH").client(ctx))
            .zip(self.audit_record(AuditEvent::new("REFRESH_REUSE_DETECTED").client(ctx)));
        let outcome = inner
            .rotations
            .rotate(RotationJob {
                presented_hash: tokens::digest(refresh_token).to_vec(),
                successor_hash: tokens::digest(&successor).to_vec(),
                now,
                expires_at: expires,
                revocation_expires: self.revocation_horizon(now),
                audit: records,
                client_id: client.map(|(id, _)| id.to_string()),
            })
            .await?;
        match outcome {
            RotateOutcome::Rotated(session) => {
                metrics::counter!("portcullis_token_refreshes_total").increment(1);
                if self.outlived(&session, now).await? {
                    self.end_outlived_session(&session, ctx).await?;
                    return Err(rejected());
                }
                let amr: Vec<String> = serde_json::from_str(&session.amr).unwrap_or_default();
                // A role that demands MFA, granted after this session began (or before
                // the policy), is not carried into new tokens without a second factor.
                if !amr.iter().any(|m| m == "otp" || m == "rc")
                    && self.mfa_required(session.user_id, session.is_superuser).await?
                {
                    let by = Actor::user(session.user_id, &session.username, ctx);
                    self.end_session(session.user_id, session.session_id, &by).await?;
                    return Err(AppError::MfaEnrollmentRequired);
                }
                Ok((session, successor, now))
            }
            RotateOutcome::Reused { session_id, user_id } => {
                metrics::counter!("portcullis_refresh_reuse_detected_total").increment(1);
                tracing::warn!(%user_id, %session_id, "refresh token reuse detected; session revoked");
                self.forget_sessions(&[session_id], now);
                Err(rejected())
            }
            RotateOutcome::Rejected => Err(rejected()),
        }
    }

    /// Whether a session has passed its absolute lifetime (ASVS V3.3): refreshing
    /// renews tokens, never the session itself. Sessions of users whose roles require
    /// MFA get the shorter lifetime; their roles are looked up only for a session old
    /// enough for it to matter.
    async fn outlived(&self, session: &RotatedSession, now: DateTime<Utc>) -> AppResult<bool> {
        let tokens = &self.config().tokens;
        let age = (now - session.created_at).to_std().unwrap_or_default();
        if age >= tokens.session_max_lifetime {
            return Ok(true);
        }
        Ok(age >= tokens.session_max_lifetime_mfa && self.mfa_required(session.user_id, session.is_superuser).await?)
    }

    /// Ends a session that outlived its absolute lifetime, recorded as expired.
    async fn end_outlived_session(&self, session: &RotatedSession, ctx: &ClientContext) -> AppResult<bool> {
        let event = Actor::user(session.user_id, &session.username, ctx)
            .event("SESSION_EXPIRED")
            .resource("session", session.session_id)
            .meta("reason", "max_lifetime");
        self.end_one_session(session.user_id, session.session_id, "max_lifetime", event)
            .await
    }

    /// Ends the session a refresh token belongs to. Unknown tokens are ignored, as
    /// RFC 7009 asks, so the answer reveals nothing.
    pub async fn logout(&self, refresh_token: &str, ctx: &ClientContext) -> AppResult<()> {
        if !tokens::looks_like_token(refresh_token) {
            return Ok(());
        }
        let now = Utc::now();
        let record = self.audit_record(AuditEvent::new("LOGOUT").client(ctx));
        if let Some((session_id, _)) = self
            .inner()
            .store
            .revoke_session_by_refresh(
                &tokens::digest(refresh_token),
                now,
                self.revocation_horizon(now),
                record.as_ref(),
            )
            .await?
        {
            self.forget_sessions(&[session_id], now);
        }
        Ok(())
    }

    /// Ends every session of a user except `keep`, recording `event`; returns how
    /// many ended.
    pub async fn end_user_sessions(
        &self,
        user_id: Uuid,
        keep: Option<Uuid>,
        reason: &str,
        event: AuditEvent,
    ) -> AppResult<usize> {
        let now = Utc::now();
        let record = self.audit_record(event.resource("user", user_id).meta("reason", reason));
        let ended = self
            .inner()
            .store
            .revoke_user_sessions(
                user_id,
                keep,
                reason,
                now,
                self.revocation_horizon(now),
                record.as_ref(),
            )
            .await?;
        self.forget_sessions(&ended, now);
        Ok(ended.len())
    }

    /// A user's live sessions, browser and token alike, newest first. A browser
    /// session past its idle timeout has ended even though no one revoked it.
    pub async fn sessions_of(&self, user_id: Uuid) -> AppResult<Vec<SessionRow>> {
        let now = Utc::now();
        self.inner()
            .store
            .active_sessions(user_id, now, self.browser_idle_since(now)?)
            .await
    }

    /// Ends one of the user's own sessions; 404 when there is no such live session.
    /// Ends one of the user's sessions, recorded as a LOGOUT of it.
    pub async fn end_session(&self, user_id: Uuid, session_id: Uuid, by: &Actor) -> AppResult<()> {
        let mut event = by.event("LOGOUT").resource("session", session_id);
        if event.actor.is_none() {
            event = event.actor_id(Some(user_id));
        }
        if !self
            .end_one_session(user_id, session_id, "revoked_by_user", event)
            .await?
        {
            return Err(AppError::NotFound("no such active session".into()));
        }
        Ok(())
    }

    /// Ends one live session of a user, recording `event`; false when there was none.
    pub(super) async fn end_one_session(
        &self,
        user_id: Uuid,
        session_id: Uuid,
        reason: &str,
        event: AuditEvent,
    ) -> AppResult<bool> {
        let now = Utc::now();
        let record = self.audit_record(event);
        let ended = self
            .inner()
            .store
            .revoke_user_session(
                user_id,
                session_id,
                reason,
                now,
                self.revocation_horizon(now),
                record.as_ref(),
            )
            .await?;
        if ended {
            self.forget_sessions(&[session_id], now);
        }
        Ok(ended)
    }
}

/// Most rotations written in one transaction.
const ROTATION_BATCH: usize = 64;

type RotationReply = tokio::sync::oneshot::Sender<Result<RotateOutcome, ()>>;

/// Refresh rotations, written in batches by one writer task.
///
/// A rotation is a short transaction whose cost is mostly its commit (on SQLite,
/// writing the touched pages to the WAL) and its hand-offs to the database, and a
/// login-heavy service sees many at once. The writer takes every rotation queued
/// while its previous batch committed and writes them in one transaction, on an
/// audit chain of its own. One writer on either backend: batches then grow with the
/// load, and a batch costs PostgreSQL about the same few round trips whatever its
/// size (measured on PostgreSQL, BENCHMARKS.md: one writer 4,753 rotations/s at
/// 145 µs of server CPU each, two 4,321/s at 175 µs, three 4,353/s at 177 µs). It
/// runs as its own task, so a client that disconnects mid-rotation cannot cancel a
/// transaction half-way.
pub(crate) struct RotationQueue {
    jobs: flume::Sender<(RotationJob, RotationReply)>,
}

impl RotationQueue {
    /// Starts the writer task, appending its audit records to `chain`; it stops when
    /// the queue is dropped.
    pub(crate) fn start(store: Store, chain: String) -> Self {
        let (jobs, queued) = flume::bounded::<(RotationJob, RotationReply)>(4096);
        tokio::spawn(async move {
            while let Ok(first) = queued.recv_async().await {
                let (mut batch, mut replies) = (Vec::new(), Vec::new());
                for (mut job, reply) in super::with_queued(first, &queued, ROTATION_BATCH) {
                    if let Some((rotated, reused)) = &mut job.audit {
                        rotated.chain.clone_from(&chain);
                        reused.chain.clone_from(&chain);
                    }
                    batch.push(job);
                    replies.push(reply);
                }
                match store.rotate_refresh_batch(&batch).await {
                    Ok(outcomes) => {
                        for (reply, outcome) in replies.into_iter().zip(outcomes) {
                            let _ = reply.send(Ok(outcome));
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, rotations = batch.len(), "refresh rotation batch failed");
                        for reply in replies {
                            let _ = reply.send(Err(()));
                        }
                    }
                }
            }
        });
        Self { jobs }
    }

    /// Queues one rotation and waits for its batch to commit.
    async fn rotate(&self, job: RotationJob) -> AppResult<RotateOutcome> {
        let (reply, outcome) = tokio::sync::oneshot::channel();
        let stopped = || AppError::internal(anyhow::anyhow!("refresh rotation failed"));
        self.jobs.send_async((job, reply)).await.map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?.map_err(|()| stopped())
    }
}
