//! Browser sessions of the hosted pages. A page sign-in goes through the very same
//! operations as the JSON API (`login`, `verify_mfa`), which start an ordinary session;
//! its refresh token, never shown to anyone, is then exchanged for an opaque cookie.
//! The session row is the one the API lists and revokes, so logout-all, a password
//! change, disabling the user or an administrator's revocation end the browser session
//! too, on every instance (each page request reads the row).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::mfa::SecondFactor;
use super::{Actor, AuditEvent, ClientContext, Credential, Portcullis, Principal, TokenFacts, TokenPair};
use crate::crypto::tokens;
use crate::error::{AppError, AppResult};
use crate::store::UserRow;

/// A signed-in browser, as the pages see it.
#[derive(Debug, Clone)]
pub struct BrowserSession {
    pub session_id: Uuid,
    pub user_id: Uuid,
    pub username: String,
    pub email: String,
    pub is_superuser: bool,
    /// How the person signed in (`pwd`, `otp`, `rc`, an upstream provider's name...).
    pub amr: Vec<String>,
    pub signed_in_at: DateTime<Utc>,
    /// When the person last proved themselves: signing in, or a step-up.
    pub verified_at: DateTime<Utc>,
    /// The form token every state-changing form of this session carries.
    pub csrf_token: String,
}

/// What a browser must give to prove the person again before a sensitive action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepUpProof {
    /// The account has a second factor: a current code from it.
    Code,
    /// Otherwise the password.
    Password,
    /// An account with neither (made by signing in with a provider): only signing in
    /// again proves the person, so the action is refused until then.
    SignInAgain,
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
    ///
    /// `replacing` is the session cookie the browser already held, if any: a sign-in
    /// replaces that browser's session, so the one it named ends here (`LOGOUT`,
    /// reason `signed_in_again`) instead of staying alive unseen behind the new cookie.
    pub async fn open_browser_session(
        &self,
        pair: &TokenPair,
        replacing: Option<&str>,
        ctx: &ClientContext,
    ) -> AppResult<String> {
        let previous = match replacing {
            Some(old) => self.browser_session(old).await?,
            None => None,
        };
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
        if let Some(old) = previous {
            let event = Actor::user(old.user_id, &old.username, ctx)
                .event("LOGOUT")
                .resource("session", old.session_id)
                .meta("reason", "signed_in_again");
            if self
                .end_one_session(old.user_id, old.session_id, "signed_in_again", event)
                .await?
            {
                // The applications it signed in to end with it (and hear so): the
                // person at this browser may not be the same one.
                self.browser_session_ended(old.user_id, old.session_id).await?;
            }
        }
        Ok(cookie)
    }

    /// The moment before which an unused browser session has ended
    /// (`PAGE_SESSION_IDLE_MINUTES`): the one idle rule, for a cookie's lookup and for
    /// every list of sessions.
    pub(crate) fn browser_idle_since(&self, now: DateTime<Utc>) -> AppResult<DateTime<Utc>> {
        let idle = chrono::Duration::from_std(self.config().pages.session_idle).map_err(AppError::internal)?;
        Ok(now - idle)
    }

    /// The live browser session a cookie names, if any: not ended by any route, within
    /// its lifetime, used within the idle timeout, of an active user.
    pub async fn browser_session(&self, cookie: &str) -> AppResult<Option<BrowserSession>> {
        if !tokens::looks_like_token(cookie) {
            return Ok(None);
        }
        let now = Utc::now();
        let idle_since = self.browser_idle_since(now)?;
        let idle = now - idle_since;
        let hash = tokens::digest(cookie);
        let Some(row) = self.store().browser_session(&hash, now, idle_since).await? else {
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
            is_superuser: row.is_superuser,
            amr: serde_json::from_str(&row.amr).unwrap_or_default(),
            signed_in_at: row.created_at,
            verified_at: row.verified_at,
            csrf_token: csrf_token_for(cookie),
        }))
    }

    /// The caller a browser session stands for, for the domain operations that take
    /// one (as a login's access token would: same user, session, grants and amr; its
    /// `auth_time` is the last time the person proved themselves).
    pub async fn browser_principal(&self, session: &BrowserSession) -> AppResult<Principal> {
        let grants = self.grants(session.user_id, session.is_superuser).await?;
        Ok(Principal {
            user_id: session.user_id,
            username: session.username.clone(),
            session_id: Some(session.session_id),
            roles: grants.roles.into_iter().collect(),
            permissions: grants.permissions.into_iter().collect(),
            amr: session.amr.clone(),
            is_superuser: session.is_superuser,
            credential: Credential::Jwt,
            expires_at: None,
            token: Some(TokenFacts {
                jti: String::new(),
                iat: session.verified_at.timestamp(),
                auth_time: Some(session.verified_at.timestamp()),
            }),
            client_id: None,
            first_party: false,
            scope: None,
        })
    }

    /// What a sensitive page action from this browser must first be given, or None
    /// while the last proof is within the step-up window (`MFA_STEP_UP_MAX_AGE_SECONDS`;
    /// off: never asked).
    pub async fn browser_step_up(&self, session: &BrowserSession) -> AppResult<Option<StepUpProof>> {
        Ok(self.step_up_due(session).await?.map(|(proof, _)| proof))
    }

    /// `browser_step_up`, with the user row it read (the check needs it too).
    async fn step_up_due(&self, session: &BrowserSession) -> AppResult<Option<(StepUpProof, UserRow)>> {
        let Some(window) = self.config().mfa.step_up_max_age else {
            return Ok(None);
        };
        let age = Utc::now() - session.verified_at;
        if age.to_std().is_ok_and(|age| age <= window) {
            return Ok(None);
        }
        let user = self.user(session.user_id).await?;
        let has_code = self
            .store()
            .totp(session.user_id)
            .await?
            .is_some_and(|t| t.confirmed_at.is_some());
        let proof = if has_code {
            StepUpProof::Code
        } else if user.password_hash.is_some() {
            StepUpProof::Password
        } else {
            StepUpProof::SignInAgain
        };
        Ok(Some((proof, user)))
    }

    /// Proves the person at a browser again (the proof `browser_step_up` asks for): a
    /// current TOTP code or a recovery code when the account has a second factor, else
    /// the password. Counted like sign-in attempts (the same lockout); recorded as
    /// `STEP_UP` or `STEP_UP_FAILURE`. Nothing is asked while no step-up is due.
    pub async fn step_up_browser(&self, session: &BrowserSession, proof: &str, ctx: &ClientContext) -> AppResult<()> {
        let Some((kind, user)) = self.step_up_due(session).await? else {
            return Ok(());
        };
        if kind == StepUpProof::SignInAgain {
            // Nothing to check, so nothing counted against the account's sign-ins.
            return Err(AppError::Forbidden(
                "you signed in a while ago; sign out and sign in again to do this".into(),
            ));
        }
        let event = |action: &str| {
            Actor::user(user.id, &user.username, ctx)
                .event(action)
                .resource("user", user.id)
        };
        self.begin_login_attempt(&user.username).await?;
        let proved = match kind {
            StepUpProof::Code => self
                .check_second_factor(&user, SecondFactor::typed(proof))
                .await?
                .is_ok(),
            StepUpProof::SignInAgain => false,
            StepUpProof::Password => {
                let too_long = proof.chars().count() > self.config().passwords.max_length;
                let stored = user.password_hash.as_deref().filter(|_| !too_long);
                self.inner().hasher.verify(proof, stored).await?.ok
            }
        };
        if !proved {
            self.log_event(event("STEP_UP_FAILURE")).await?;
            return Err(AppError::InvalidCredentials(match kind {
                StepUpProof::Code => "that code is not valid".into(),
                StepUpProof::Password | StepUpProof::SignInAgain => "the password is not correct".into(),
            }));
        }
        self.login_succeeded(&user.username).await?;
        self.store()
            .verify_browser_session(session.session_id, Utc::now())
            .await?;
        self.log_event(event("STEP_UP")).await
    }

    /// Signs a browser out: its session ends like any other (`LOGOUT`), and so do the
    /// application sessions it authorized, with back-channel logout
    /// (`oidc::logout`).
    pub async fn end_browser_session(&self, session: &BrowserSession, ctx: &ClientContext) -> AppResult<()> {
        let by = Actor::user(session.user_id, &session.username, ctx);
        match self.end_session(session.user_id, session.session_id, &by).await {
            Ok(()) | Err(AppError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        self.browser_session_ended(session.user_id, session.session_id).await
    }

    /// Signs every other session of the user out, browser or token, keeping this
    /// browser's (`LOGOUT_ALL` with the reason `logout_others`); how many ended.
    pub async fn end_other_sessions(&self, session: &BrowserSession, ctx: &ClientContext) -> AppResult<usize> {
        let event = AuditEvent::new("LOGOUT_ALL")
            .actor(session.user_id, &session.username)
            .client(ctx);
        self.end_user_sessions(session.user_id, Some(session.session_id), "logout_others", event)
            .await
    }

    /// Signs a user out everywhere (`/auth/logout-all` and the page's button): every
    /// session, browser or token, ends.
    pub async fn logout_everywhere(&self, user_id: Uuid, username: &str, ctx: &ClientContext) -> AppResult<usize> {
        let event = AuditEvent::new("LOGOUT_ALL").actor(user_id, username).client(ctx);
        let browsers: Vec<Uuid> = self
            .sessions_of(user_id)
            .await?
            .into_iter()
            .filter(|s| s.browser)
            .map(|s| s.id)
            .collect();
        let ended = self.end_user_sessions(user_id, None, "logout_all", event).await?;
        for browser in browsers {
            self.browser_session_ended(user_id, browser).await?;
        }
        Ok(ended)
    }
}
