//! Browser sessions of the hosted pages. A page sign-in goes through the very same
//! operations as the JSON API (`login`, `verify_mfa`), which start an ordinary session;
//! its refresh token, never shown to anyone, is then exchanged for an opaque cookie.
//! The session row is the one the API lists and revokes, so logout-all, a password
//! change, disabling the user or an administrator's revocation end the browser session
//! too, on every instance (each page request reads the row).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::{Actor, AuditEvent, ClientContext, Portcullis, TokenPair};
use crate::crypto::tokens;
use crate::error::{AppError, AppResult};

/// A signed-in browser, as the pages see it.
#[derive(Debug, Clone)]
pub struct BrowserSession {
    pub session_id: Uuid,
    pub user_id: Uuid,
    pub username: String,
    pub email: String,
    /// The form token every state-changing form of this session carries.
    pub csrf_token: String,
}

impl BrowserSession {
    /// Whether a form's token is this session's (in constant time).
    pub fn csrf_matches(&self, presented: &str) -> bool {
        bool::from(self.csrf_token.as_bytes().ct_eq(presented.as_bytes()))
    }
}

/// The form token of the session a cookie names: derived from the cookie one way, so
/// it names nothing by itself and a page can embed it.
fn csrf_token_for(cookie: &str) -> String {
    URL_SAFE_NO_PAD.encode(tokens::digest(&format!("portcullis-csrf:{cookie}")))
}

impl Portcullis {
    /// Turns the session a login just started into a browser session and returns the
    /// cookie's value. The pair's refresh token is spent here (it never left the
    /// server); the session ends after `PAGE_SESSION_MAX_LIFETIME_HOURS` at the latest.
    pub async fn open_browser_session(&self, pair: &TokenPair) -> AppResult<String> {
        let cookie = tokens::random_token();
        let now = Utc::now();
        let lifetime =
            chrono::Duration::from_std(self.config().pages.session_max_lifetime).map_err(AppError::internal)?;
        self.store()
            .open_browser_session(
                &tokens::digest(&pair.refresh_token),
                &tokens::digest(&cookie),
                now,
                now + lifetime,
            )
            .await?
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("the new session's refresh token was not found")))?;
        Ok(cookie)
    }

    /// The live browser session a cookie names, if any: not ended by any route, within
    /// its lifetime, used within the idle timeout, of an active user.
    pub async fn browser_session(&self, cookie: &str) -> AppResult<Option<BrowserSession>> {
        if !tokens::looks_like_token(cookie) {
            return Ok(None);
        }
        let pages = &self.config().pages;
        let now = Utc::now();
        let idle = chrono::Duration::from_std(pages.session_idle).map_err(AppError::internal)?;
        let hash = tokens::digest(cookie);
        let Some(row) = self.store().browser_session(&hash, now, now - idle).await? else {
            return Ok(None);
        };
        // The idle clock is written at most about once a minute per session.
        if now - row.last_seen_at > (idle / 8).min(chrono::Duration::seconds(60)) {
            self.store().touch_browser_session(&hash, row.session_id, now).await?;
        }
        Ok(Some(BrowserSession {
            session_id: row.session_id,
            user_id: row.user_id,
            username: row.username,
            email: row.email,
            csrf_token: csrf_token_for(cookie),
        }))
    }

    /// Signs a browser out: its session ends like any other (`LOGOUT`).
    pub async fn end_browser_session(&self, session: &BrowserSession, ctx: &ClientContext) -> AppResult<()> {
        let by = Actor::user(session.user_id, &session.username, ctx);
        match self.end_session(session.user_id, session.session_id, &by).await {
            Ok(()) | Err(AppError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Signs a user out everywhere (`/auth/logout-all` and the page's button): every
    /// session, browser or token, ends.
    pub async fn logout_everywhere(&self, user_id: Uuid, username: &str, ctx: &ClientContext) -> AppResult<usize> {
        let event = AuditEvent::new("LOGOUT_ALL").actor(user_id, username).client(ctx);
        self.end_user_sessions(user_id, None, "logout_all", event).await
    }
}
