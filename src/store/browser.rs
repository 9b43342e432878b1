//! Browser sessions of the hosted pages: a cookie's hash pointing at a `sessions` row.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::tx::within;
use super::{Store, on_pool};
use crate::error::AppResult;

row_struct! {
    /// A live browser session and whose it is.
    #[derive(Debug, Clone)]
    pub struct BrowserSessionRow {
        pub session_id: Uuid,
        pub user_id: Uuid,
        pub username: String,
        pub email: String,
        pub is_superuser: bool,
        pub amr: String,
        pub created_at: DateTime<Utc>,
        pub last_seen_at: DateTime<Utc>,
        /// When the person last proved themselves: signing in, or a step-up.
        pub verified_at: DateTime<Utc>,
    }
}

/// Spends a refresh token no one has seen; its session goes on under the cookie.
const TAKE_REFRESH: &str = "DELETE FROM refresh_tokens WHERE token_hash = $1 AND used_at IS NULL RETURNING session_id";
const CAP_SESSION: &str = "UPDATE sessions SET expires_at = $2 WHERE id = $1 AND expires_at > $2";
const INSERT_BROWSER: &str = "INSERT INTO browser_sessions (cookie_hash, session_id, last_seen_at) VALUES ($1, $2, $3)";
const SELECT_BROWSER: &str = "SELECT s.id AS session_id, s.user_id, u.username, u.email, u.is_superuser, s.amr, s.created_at, \
     b.last_seen_at, COALESCE(b.verified_at, s.created_at) AS verified_at \
     FROM browser_sessions b JOIN sessions s ON s.id = b.session_id JOIN users u ON u.id = s.user_id \
     WHERE b.cookie_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > $2 AND b.last_seen_at > $3 AND u.is_active";
const TOUCH_BROWSER: &str = "UPDATE browser_sessions SET last_seen_at = $2 WHERE cookie_hash = $1";
const VERIFY_BROWSER: &str = "UPDATE browser_sessions SET verified_at = $2 WHERE session_id = $1";
const TOUCH_SESSION: &str = "UPDATE sessions SET last_refreshed_at = $2 WHERE id = $1";

impl Store {
    /// Moves a fresh session from its (never shown) refresh token to a browser cookie,
    /// ending no later than `expires_at`; None when the token is unknown or spent.
    pub async fn open_browser_session(
        &self,
        refresh_hash: &[u8],
        cookie_hash: &[u8],
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> AppResult<Option<Uuid>> {
        on_pool!(self, pool => within(pool.begin().await?, async |tx| {
            let session: Option<Uuid> = sqlx::query_scalar(TAKE_REFRESH).bind(refresh_hash).fetch_optional(&mut *tx).await?;
            if let Some(id) = session {
                sqlx::query(CAP_SESSION).bind(id).bind(expires_at).execute(&mut *tx).await?;
                sqlx::query(INSERT_BROWSER).bind(cookie_hash).bind(id).bind(now).execute(&mut *tx).await?;
            }
            Ok(session)
        }).await)
    }

    /// The live browser session a cookie hash names: not ended, not past its end, used
    /// after `idle_since`, of an active user.
    pub async fn browser_session(
        &self,
        cookie_hash: &[u8],
        now: DateTime<Utc>,
        idle_since: DateTime<Utc>,
    ) -> AppResult<Option<BrowserSessionRow>> {
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, BrowserSessionRow>(SELECT_BROWSER)
            .bind(cookie_hash)
            .bind(now)
            .bind(idle_since)
            .fetch_optional(pool)
            .await)?,
        )
    }

    /// Records that a browser session was used (its idle clock and its session's "last
    /// used").
    pub async fn touch_browser_session(
        &self,
        cookie_hash: &[u8],
        session_id: Uuid,
        now: DateTime<Utc>,
    ) -> AppResult<()> {
        on_pool!(self, pool => within(pool.begin().await?, async |tx| {
            sqlx::query(TOUCH_BROWSER).bind(cookie_hash).bind(now).execute(&mut *tx).await?;
            sqlx::query(TOUCH_SESSION).bind(session_id).bind(now).execute(&mut *tx).await?;
            Ok(())
        }).await)
    }

    /// Records that the person at a browser session proved themselves again (step-up).
    pub async fn verify_browser_session(&self, session_id: Uuid, now: DateTime<Utc>) -> AppResult<()> {
        on_pool!(self, pool => sqlx::query(VERIFY_BROWSER).bind(session_id).bind(now).execute(pool).await.map(drop))?;
        Ok(())
    }
}
