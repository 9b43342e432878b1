//! Logout for applications: RP-initiated logout (OpenID Connect RP-Initiated Logout
//! 1.0, the `end_session_endpoint` at `/oauth2/logout`) and back-channel logout
//! (OpenID Connect Back-Channel Logout 1.0).
//!
//! Ending a browser session ends every application session it authorized
//! (`sessions.browser_session_id`), and each application it signed in to that
//! registered a `backchannel_logout_uri` is sent a signed logout token from a
//! background task (a few tries, a short timeout), never holding up the person.

use std::time::Duration;

use chrono::Utc;
use serde::{Deserialize, Serialize};
use url::Url;
use uuid::Uuid;

use super::Client;
use crate::domain::audit::AuditEvent;
use crate::domain::{BrowserSession, Portcullis};
use crate::error::{AppError, AppResult};
use crate::store::Ending;

/// The event a logout token carries (Back-Channel Logout 2.4).
pub const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// The `typ` header of a logout token (Back-Channel Logout 2.4).
pub const LOGOUT_TOKEN_TYPE: &str = "logout+jwt";
/// How long a logout token is good for.
const LOGOUT_TOKEN_TTL_SECS: i64 = 120;
/// Tries per application, and how long each may take.
const BACKCHANNEL_TRIES: u32 = 3;
const BACKCHANNEL_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_PARAM_LEN: usize = 4096;

/// The parameters of a logout request (RP-Initiated Logout 2).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct LogoutRequest {
    pub id_token_hint: Option<String>,
    pub client_id: Option<String>,
    pub post_logout_redirect_uri: Option<String>,
    pub state: Option<String>,
    pub ui_locales: Option<String>,
}

/// What a logout request asks for, checked.
#[derive(Debug, Clone, Default)]
pub struct LogoutPlan {
    /// The application asking, when it said (by the hint's `aud` or `client_id`).
    pub client: Option<Client>,
    /// The person and browser session a valid `id_token_hint` named.
    pub hint_sub: Option<String>,
    pub hint_sid: Option<String>,
    /// Where to send the browser afterwards: a registered post-logout URI of the
    /// client, with `state`; None: show the "you are signed out" page.
    pub redirect: Option<String>,
}

impl LogoutPlan {
    /// Whether the request proves it comes from an application this browser signed in
    /// to (a valid ID token naming this browser session, or at least its person); if
    /// not, the person is asked first, so a link elsewhere cannot sign them out.
    pub fn needs_confirmation(&self, session: &BrowserSession) -> bool {
        let same_session = self.hint_sid.as_deref() == Some(session.session_id.to_string().as_str());
        let same_person = self.hint_sub.as_deref() == Some(session.user_id.to_string().as_str());
        !(same_session || (self.hint_sid.is_none() && same_person))
    }
}

/// The claims of an ID token used as `id_token_hint` that logout needs.
#[derive(Debug, Deserialize)]
struct HintClaims {
    iss: String,
    aud: Audience,
    sub: String,
    #[serde(default)]
    sid: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn first(&self) -> Option<&str> {
        match self {
            Self::One(a) => Some(a),
            Self::Many(v) => v.first().map(String::as_str),
        }
    }
}

/// A logout token (Back-Channel Logout 2.4): no `nonce`, an `events` member.
#[derive(Debug, Serialize)]
struct LogoutTokenClaims {
    iss: String,
    aud: String,
    iat: i64,
    exp: i64,
    jti: String,
    sub: String,
    sid: String,
    events: serde_json::Value,
}

fn bad(text: &str) -> AppError {
    AppError::BadRequest(text.into())
}

/// `uri` with `state` added to its query.
fn with_state(uri: &str, state: Option<&str>) -> AppResult<String> {
    let mut url = Url::parse(uri).map_err(|_| bad("post_logout_redirect_uri is not a URL"))?;
    if let Some(state) = state {
        url.query_pairs_mut().append_pair("state", state);
    }
    Ok(url.into())
}

impl Portcullis {
    /// Checks a logout request: a hint must be an ID token this service signed for
    /// this issuer (expired is fine) and agree with `client_id`; a redirect is kept
    /// only when registered for that client, compared exactly. Refused (400) when the
    /// hint is forged or names another client.
    pub async fn plan_logout(&self, req: &LogoutRequest) -> AppResult<LogoutPlan> {
        let too_long = [
            &req.id_token_hint,
            &req.client_id,
            &req.post_logout_redirect_uri,
            &req.state,
        ]
        .iter()
        .any(|p| p.as_ref().is_some_and(|v| v.len() > MAX_PARAM_LEN));
        if too_long {
            return Err(bad("a logout parameter is too long"));
        }
        let mut plan = LogoutPlan::default();
        let mut client_id = req.client_id.clone().filter(|c| !c.is_empty());
        if let Some(hint) = req.id_token_hint.as_deref().filter(|h| !h.is_empty()) {
            let claims: HintClaims = self
                .keys()
                .ring()
                .verify_signature(hint)
                .map_err(|_| bad("id_token_hint is not an ID token this service issued"))?;
            if claims.iss != self.config().tokens.jwt_issuer {
                return Err(bad("id_token_hint was issued by another issuer"));
            }
            let aud = claims.aud.first().ok_or_else(|| bad("id_token_hint has no audience"))?;
            if client_id.as_deref().is_some_and(|c| c != aud) {
                return Err(bad("client_id does not match the id_token_hint"));
            }
            client_id = Some(aud.to_string());
            plan.hint_sub = Some(claims.sub);
            plan.hint_sid = claims.sid;
        }
        if let Some(id) = &client_id {
            plan.client = Some(self.find_client(id).await?.ok_or_else(|| bad("unknown client_id"))?);
        }
        if let (Some(uri), Some(client)) = (req.post_logout_redirect_uri.as_deref(), &plan.client)
            && client.post_logout_uri_allowed(uri)
        {
            plan.redirect = Some(with_state(uri, req.state.as_deref())?);
        }
        Ok(plan)
    }

    /// After a browser session ended: ends every application session it authorized
    /// and sends each application it signed in to a back-channel logout token, in the
    /// background. Safe to call again (nothing left to end, tokens sent again).
    pub async fn browser_session_ended(&self, user_id: Uuid, browser_session_id: Uuid) -> AppResult<()> {
        let apps = self.store().app_sessions_of_browser(browser_session_id).await?;
        if apps.is_empty() {
            return Ok(());
        }
        let now = Utc::now();
        let record = self.audit_record(
            AuditEvent::new("LOGOUT")
                .actor_id(Some(user_id))
                .resource("session", browser_session_id)
                .meta("reason", "browser_logout"),
        );
        let end = Ending {
            now,
            until: self.revocation_horizon(now),
            reason: "browser_logout",
        };
        let ended = self
            .store()
            .end_app_sessions_of_browser(browser_session_id, end, record.as_ref())
            .await?;
        self.forget_sessions(&ended, now);
        let mut clients: Vec<&str> = apps.iter().map(|a| a.client_id.as_str()).collect();
        clients.sort_unstable();
        clients.dedup();
        for id in clients {
            let Some(client) = self.find_client(id).await? else {
                continue;
            };
            let Some(uri) = client.backchannel_logout_uri.clone() else {
                continue;
            };
            let token = self.logout_token(&client, user_id, browser_session_id)?;
            tokio::spawn(send_logout_token(client.client_id.clone(), uri, token));
        }
        Ok(())
    }

    fn logout_token(&self, client: &Client, user_id: Uuid, browser_session_id: Uuid) -> AppResult<String> {
        let iat = Utc::now().timestamp();
        let claims = LogoutTokenClaims {
            iss: self.config().tokens.jwt_issuer.clone(),
            aud: client.client_id.clone(),
            iat,
            exp: iat + LOGOUT_TOKEN_TTL_SECS,
            jti: Uuid::new_v4().to_string(),
            sub: user_id.to_string(),
            sid: browser_session_id.to_string(),
            events: serde_json::json!({ BACKCHANNEL_EVENT: {} }),
        };
        self.keys()
            .ring()
            .sign_typed(LOGOUT_TOKEN_TYPE, &claims)
            .map_err(AppError::Internal)
    }
}

/// POSTs `logout_token` to the application, trying again a few times after a failure
/// or an answer other than 2xx. The token is never logged.
async fn send_logout_token(client_id: String, uri: String, token: String) {
    let http = match reqwest::Client::builder()
        .timeout(BACKCHANNEL_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(http) => http,
        Err(e) => {
            tracing::warn!(client_id, error = %e, "back-channel logout: no HTTP client");
            return;
        }
    };
    for attempt in 1..=BACKCHANNEL_TRIES {
        let sent = http
            .post(&uri)
            .header("cache-control", "no-store")
            .form(&[("logout_token", token.as_str())])
            .send()
            .await;
        match sent {
            Ok(res) if res.status().is_success() => return,
            Ok(res) => tracing::warn!(
                client_id,
                attempt,
                status = res.status().as_u16(),
                "back-channel logout refused"
            ),
            Err(e) => tracing::warn!(client_id, attempt, error = %e.without_url(), "back-channel logout failed"),
        }
        if attempt < BACKCHANNEL_TRIES {
            tokio::time::sleep(Duration::from_millis(500 * 2u64.pow(attempt - 1))).await;
        }
    }
}
