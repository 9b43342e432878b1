//! What a person allowed an application (consents), and the sessions applications
//! hold for a person: listed, revoked, and ended with the browser session that
//! authorized them.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::audit::append_in_tx;
use super::sessions::record_revocation;
use super::tx::within;
use super::{AuditFields, Store, on_pool};
use crate::error::AppResult;

row_struct! {
    /// One application a person allowed, with when it last used its tokens.
    #[derive(Debug, Clone)]
    pub struct GrantRow {
        pub client_id: String,
        pub name: String,
        /// Space-separated scopes.
        pub scope: String,
        pub granted_at: DateTime<Utc>,
        /// The newest use (sign-in or refresh) of a session of this client, if any.
        pub last_used: Option<DateTime<Utc>>,
    }
}

row_struct! {
    /// A session an application holds, ended with the browser session it came from.
    #[derive(Debug, Clone)]
    pub struct AppSessionRow {
        pub id: Uuid,
        pub user_id: Uuid,
        pub client_id: String,
    }
}

/// Ending sessions: when, until when the revocation feed keeps them, and why.
#[derive(Debug, Clone, Copy)]
pub struct Ending<'a> {
    pub now: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub reason: &'a str,
}

const SELECT_CONSENT: &str = "SELECT scope FROM oidc_consents WHERE user_id = $1 AND client_id = $2";
const UPSERT_CONSENT: &str = "INSERT INTO oidc_consents (user_id, client_id, scope, granted_at) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (user_id, client_id) DO UPDATE SET scope = excluded.scope, granted_at = excluded.granted_at";
const DELETE_CONSENT: &str = "DELETE FROM oidc_consents WHERE user_id = $1 AND client_id = $2";
const LIST_GRANTS: &str = "SELECT g.client_id, c.name, g.scope, g.granted_at, \
     (SELECT MAX(s.last_refreshed_at) FROM sessions s WHERE s.user_id = g.user_id AND s.client_id = g.client_id) \
     AS last_used \
     FROM oidc_consents g JOIN oidc_clients c ON c.id = g.client_id WHERE g.user_id = $1 ORDER BY c.name, g.client_id";
const END_CLIENT_SESSIONS: &str = "UPDATE sessions SET revoked_at = $3, revoked_reason = $4 \
     WHERE user_id = $1 AND client_id = $2 AND revoked_at IS NULL RETURNING id";
/// Every application the browser session signed in to, its sessions ended or not (an
/// application may keep its own session after its tokens expired).
const APP_SESSIONS_OF_BROWSER: &str = "SELECT DISTINCT id, user_id, client_id FROM sessions \
     WHERE browser_session_id = $1 AND client_id IS NOT NULL";
const END_BROWSER_APP_SESSIONS: &str = "UPDATE sessions SET revoked_at = $2, revoked_reason = $3 \
     WHERE browser_session_id = $1 AND revoked_at IS NULL RETURNING id";

impl Store {
    /// The scopes (space-separated) `user_id` allowed `client_id`, if any.
    pub async fn consent(&self, user_id: Uuid, client_id: &str) -> AppResult<Option<String>> {
        Ok(on_pool!(self, pool => sqlx::query_scalar::<_, String>(SELECT_CONSENT)
            .bind(user_id).bind(client_id).fetch_optional(pool).await)?)
    }

    /// Records (or replaces) what `user_id` allowed `client_id`.
    pub async fn put_consent(
        &self,
        user_id: Uuid,
        client_id: &str,
        scope: &str,
        now: DateTime<Utc>,
        audit: Option<&AuditFields>,
    ) -> AppResult<()> {
        on_pool!(self, pool => within(pool.begin().await?, async |tx| {
            sqlx::query(UPSERT_CONSENT)
                .bind(user_id).bind(client_id).bind(scope).bind(now)
                .execute(&mut *tx)
                .await?;
            append_in_tx(tx, self.audit_key(), audit).await?;
            Ok(())
        }).await)
    }

    /// The applications `user_id` allowed, by name.
    pub async fn grants_of(&self, user_id: Uuid) -> AppResult<Vec<GrantRow>> {
        Ok(on_pool!(self, pool => sqlx::query_as::<_, GrantRow>(LIST_GRANTS)
            .bind(user_id).fetch_all(pool).await)?)
    }

    /// Forgets what `user_id` allowed `client_id` and ends every session of that user
    /// with that client, recording their revocations, in one transaction. None when
    /// there was no such consent (nothing is changed then); else the ended sessions.
    pub async fn revoke_grant(
        &self,
        user_id: Uuid,
        client_id: &str,
        end: Ending<'_>,
        audit: Option<&AuditFields>,
    ) -> AppResult<Option<Vec<Uuid>>> {
        on_pool!(self, pool => within(pool.begin().await?, async |tx| {
            let deleted = sqlx::query(DELETE_CONSENT)
                .bind(user_id).bind(client_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if deleted == 0 {
                return Ok(None);
            }
            let ended: Vec<Uuid> = sqlx::query_scalar(END_CLIENT_SESSIONS)
                .bind(user_id).bind(client_id).bind(end.now).bind(end.reason)
                .fetch_all(&mut *tx)
                .await?;
            for id in &ended {
                record_revocation(&mut *tx, *id, end.now, end.until).await?;
            }
            append_in_tx(tx, self.audit_key(), audit).await?;
            Ok(Some(ended))
        }).await)
    }

    /// The application sessions a browser session authorized (live or not).
    pub async fn app_sessions_of_browser(&self, browser_session_id: Uuid) -> AppResult<Vec<AppSessionRow>> {
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, AppSessionRow>(APP_SESSIONS_OF_BROWSER)
            .bind(browser_session_id).fetch_all(pool).await)?,
        )
    }

    /// Ends every live session the browser session authorized, recording their
    /// revocations; the ended ids.
    pub async fn end_app_sessions_of_browser(
        &self,
        browser_session_id: Uuid,
        end: Ending<'_>,
        audit: Option<&AuditFields>,
    ) -> AppResult<Vec<Uuid>> {
        on_pool!(self, pool => within(pool.begin().await?, async |tx| {
            let ended: Vec<Uuid> = sqlx::query_scalar(END_BROWSER_APP_SESSIONS)
                .bind(browser_session_id).bind(end.now).bind(end.reason)
                .fetch_all(&mut *tx)
                .await?;
            for id in &ended {
                record_revocation(&mut *tx, *id, end.now, end.until).await?;
            }
            if !ended.is_empty() {
                append_in_tx(tx, self.audit_key(), audit).await?;
            }
            Ok(ended)
        }).await)
    }
}
