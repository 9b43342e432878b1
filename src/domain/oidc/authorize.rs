//! The authorization endpoint (OAuth 2.1 code flow with PKCE, OpenID Connect Core 3.1):
//! checking an authorization request, deciding what comes next (an error page, an
//! error sent back to the application, signing in, the consent page, or a code),
//! remembering consent, and redeeming a code at the token endpoint.
//!
//! Where an answer goes is decided before anything else: an unknown client, or a
//! redirect URI the client did not register, is an error *page* (`Err(AppError)`),
//! never a redirect, so nobody can use Portcullis to send a browser somewhere else.
//! Every later problem goes back to the application (`Reply`), with `state` and `iss`
//! (RFC 9207).
//!
//! ## Signing in again (`prompt=login`, `max_age`) without a loop
//!
//! Both ask for proof newer than the browser session holds, so the browser is sent to
//! the sign-in page, whose `return_to` is this same authorization request plus a marker
//! `reauth_at=<unix seconds>` (the moment we sent it). When the request comes back, the
//! marker is honoured when it is recent ([`REAUTH_WINDOW_SECS`]) and the session's
//! `verified_at` (its last sign-in or step-up) is not older than it: the person proved
//! themselves after we asked, so neither `prompt=login` nor `max_age` (even `max_age=0`,
//! which any age fails by the time the browser is back) sends them round again.
//! Without the marker, or with a stale one, or with a session that was not renewed,
//! the request asks again. The marker is `<unix seconds>.<MAC>`, the MAC binding the
//! moment to the request's client and PKCE challenge under a key derived from the
//! master key: someone at the browser cannot forge one to skip the sign-in an
//! application asked for. Kept in the URL rather than server-side, nothing is stored
//! for a request that is never finished.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::{AppGrant, Client, GRANT_AUTHORIZATION_CODE, OAuthFailure, TokenResponse, scopes};
use crate::crypto::tokens;
use crate::domain::{AuditEvent, BrowserSession, ClientContext, Portcullis};
use crate::error::{AppError, AppResult};
use crate::store::CodeRow;

/// How long a code may wait for its redemption.
pub const CODE_TTL_SECS: i64 = 60;
/// How long after sending a browser to sign in again its `reauth_at` marker counts.
pub const REAUTH_WINDOW_SECS: i64 = 600;
/// The marker parameter (see the module's documentation).
pub const REAUTH_PARAM: &str = "reauth_at";
const MAX_STATE: usize = 1024;
const MAX_NONCE: usize = 512;
const MAX_LOGIN_HINT: usize = 256;

/// An authorization request's parameters, as sent (query or, for the consent
/// decision, the form that carries them back).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct AuthorizeParams {
    pub response_type: Option<String>,
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub prompt: Option<String>,
    pub max_age: Option<String>,
    pub login_hint: Option<String>,
    pub ui_locales: Option<String>,
    pub response_mode: Option<String>,
    /// Our own marker for a sign-in we asked for (module documentation).
    pub reauth_at: Option<String>,
}

impl AuthorizeParams {
    /// The parameters worth carrying through the consent form, as (name, value).
    pub fn pairs(&self) -> Vec<(&'static str, &str)> {
        [
            ("response_type", &self.response_type),
            ("client_id", &self.client_id),
            ("redirect_uri", &self.redirect_uri),
            ("scope", &self.scope),
            ("state", &self.state),
            ("nonce", &self.nonce),
            ("code_challenge", &self.code_challenge),
            ("code_challenge_method", &self.code_challenge_method),
            ("ui_locales", &self.ui_locales),
            ("response_mode", &self.response_mode),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
        .collect()
    }
}

/// How the answer reaches the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseMode {
    /// A redirect with the parameters in the query.
    Query,
    /// A page whose form POSTs the parameters to the redirect URI.
    FormPost,
}

/// An answer for the application: what to send to its redirect URI, and how.
#[derive(Debug, Clone)]
pub struct Reply {
    pub redirect_uri: String,
    pub mode: ResponseMode,
    /// `code` or `error` (+ `error_description`), then `state` and `iss`.
    pub params: Vec<(&'static str, String)>,
}

/// What `prompt` asked for.
#[derive(Debug, Clone, Copy, Default)]
pub struct Prompt {
    pub none: bool,
    pub login: bool,
    pub consent: bool,
}

/// A checked authorization request.
#[derive(Debug, Clone)]
pub struct AuthRequest {
    pub client: Client,
    pub redirect_uri: String,
    pub mode: ResponseMode,
    pub state: Option<String>,
    pub scopes: Vec<String>,
    pub nonce: Option<String>,
    pub code_challenge: String,
    pub prompt: Prompt,
    pub max_age: Option<i64>,
    pub login_hint: Option<String>,
    pub ui_locales: Option<String>,
    /// The `reauth_at` marker, when one came back.
    reauth_at: Option<i64>,
    issuer: String,
}

/// Where the browser should go next.
#[derive(Debug)]
pub enum Next {
    /// To sign in (again, when there is a session: prompt=login or max_age), then
    /// back; the sign-in it leads to is fresh for the request.
    SignIn(Box<AuthRequest>),
    /// To the consent page for these scopes.
    Consent(Box<AuthRequest>),
    /// Back to the application.
    Answer(Reply),
}

/// The target an answer goes to, known once client and redirect URI are checked.
struct Target {
    redirect_uri: String,
    mode: ResponseMode,
    state: Option<String>,
    issuer: String,
}

impl Target {
    fn reply(&self, first: Vec<(&'static str, String)>) -> Reply {
        let mut params = first;
        if let Some(state) = &self.state {
            params.push(("state", state.clone()));
        }
        params.push(("iss", self.issuer.clone()));
        Reply {
            redirect_uri: self.redirect_uri.clone(),
            mode: self.mode,
            params,
        }
    }

    fn error(&self, code: &'static str, description: impl Into<String>) -> Reply {
        self.reply(vec![("error", code.into()), ("error_description", description.into())])
    }
}

impl AuthRequest {
    fn target(&self) -> Target {
        Target {
            redirect_uri: self.redirect_uri.clone(),
            mode: self.mode,
            state: self.state.clone(),
            issuer: self.issuer.clone(),
        }
    }

    /// An error answer to the application for this request.
    pub fn refuse(&self, code: &'static str, description: impl Into<String>) -> Reply {
        self.target().error(code, description)
    }
}

/// A PKCE challenge as S256 makes it: 43 characters of base64url.
fn is_s256_challenge(c: &str) -> bool {
    c.len() == 43 && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// RFC 7636 4.1: 43 to 128 unreserved characters.
fn is_verifier(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// Whether `verifier` is the one `challenge` was made from (S256), in constant time.
pub fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    is_verifier(verifier)
        && bool::from(
            URL_SAFE_NO_PAD
                .encode(tokens::digest(verifier))
                .as_bytes()
                .ct_eq(challenge.as_bytes()),
        )
}

fn parse_prompt(p: Option<&str>) -> Result<Prompt, String> {
    let mut prompt = Prompt::default();
    let values = scopes::parse(p.unwrap_or_default());
    for v in &values {
        match v.as_str() {
            "none" => prompt.none = true,
            "login" => prompt.login = true,
            "consent" => prompt.consent = true,
            other => return Err(format!("prompt {other:.40} is not supported")),
        }
    }
    if prompt.none && values.len() > 1 {
        return Err("prompt=none cannot be combined with other values".into());
    }
    Ok(prompt)
}

fn invalid_grant(text: &str) -> AppError {
    AppError::OAuth(OAuthFailure::InvalidGrant(text.into()))
}

fn present(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|s| !s.is_empty())
}

impl Portcullis {
    /// Checks an authorization request. `Err` is for an error page (unknown client,
    /// redirect URI not registered, or an internal failure); `Ok(Err(reply))` an error
    /// the application is told of.
    pub async fn authorization_request(&self, p: &AuthorizeParams) -> AppResult<Result<AuthRequest, Reply>> {
        let client_id = present(&p.client_id).ok_or_else(|| AppError::BadRequest("client_id is required".into()))?;
        let client = self
            .find_client(client_id)
            .await?
            .ok_or_else(|| AppError::BadRequest("there is no application with this client_id".into()))?;
        let redirect_uri = match present(&p.redirect_uri) {
            Some(uri) if client.redirect_uri_allowed(uri) => uri.to_string(),
            Some(_) => {
                return Err(AppError::BadRequest(
                    "the redirect_uri is not registered for this application".into(),
                ));
            }
            None if client.redirect_uris.len() == 1 => client.redirect_uris[0].clone(),
            None => {
                return Err(AppError::BadRequest(
                    "redirect_uri is required: this application registered several".into(),
                ));
            }
        };
        let mut target = Target {
            redirect_uri,
            mode: ResponseMode::Query,
            state: None,
            issuer: self.config().tokens.jwt_issuer.clone(),
        };
        let state = present(&p.state).map(str::to_string);
        if state.as_ref().is_some_and(|s| s.len() > MAX_STATE) {
            return Ok(Err(target.error("invalid_request", "state is too long")));
        }
        target.state = state;
        target.mode = match present(&p.response_mode) {
            None | Some("query") => ResponseMode::Query,
            Some("form_post") => ResponseMode::FormPost,
            Some(other) => {
                return Ok(Err(target.error(
                    "invalid_request",
                    format!("response_mode {other:.40} is not supported (query or form_post)"),
                )));
            }
        };
        match present(&p.response_type) {
            Some("code") => {}
            None => return Ok(Err(target.error("invalid_request", "response_type is required"))),
            Some(other) => {
                return Ok(Err(target.error(
                    "unsupported_response_type",
                    format!("response_type {other:.40} is not supported: only code"),
                )));
            }
        }
        if !client.allows_grant(GRANT_AUTHORIZATION_CODE) {
            return Ok(Err(target.error(
                "unauthorized_client",
                "this application may not use the authorization code flow",
            )));
        }
        let asked = scopes::parse(present(&p.scope).unwrap_or_default());
        if asked.is_empty() {
            return Ok(Err(
                target.error("invalid_scope", "scope is required (openid to sign in)")
            ));
        }
        if let Some(bad) = asked.iter().find(|s| !scopes::is_known(s) || !client.allows_scope(s)) {
            return Ok(Err(target.error(
                "invalid_scope",
                format!("scope {bad:.60} is unknown or not allowed for this application"),
            )));
        }
        match present(&p.code_challenge_method) {
            Some("S256") => {}
            None => {
                return Ok(Err(target.error(
                    "invalid_request",
                    "PKCE is required: code_challenge with code_challenge_method=S256",
                )));
            }
            Some(_) => {
                return Ok(Err(target.error(
                    "invalid_request",
                    "code_challenge_method must be S256 (plain is refused)",
                )));
            }
        }
        let Some(challenge) = present(&p.code_challenge).filter(|c| is_s256_challenge(c)) else {
            return Ok(Err(target.error(
                "invalid_request",
                "code_challenge is required: the base64url SHA-256 of the code_verifier",
            )));
        };
        let prompt = match parse_prompt(p.prompt.as_deref()) {
            Ok(prompt) => prompt,
            Err(text) => return Ok(Err(target.error("invalid_request", text))),
        };
        let max_age = match present(&p.max_age).map(|m| m.parse::<u32>()) {
            None => None,
            Some(Ok(m)) => Some(i64::from(m)),
            Some(Err(_)) => {
                return Ok(Err(
                    target.error("invalid_request", "max_age must be a number of seconds")
                ));
            }
        };
        let nonce = present(&p.nonce).map(str::to_string);
        if nonce.as_ref().is_some_and(|n| n.len() > MAX_NONCE) {
            return Ok(Err(target.error("invalid_request", "nonce is too long")));
        }
        let reauth_at = present(&p.reauth_at).and_then(|m| self.marker_time(m, &client.client_id, challenge));
        Ok(Ok(AuthRequest {
            redirect_uri: target.redirect_uri,
            mode: target.mode,
            state: target.state,
            issuer: target.issuer,
            client,
            scopes: asked,
            nonce,
            code_challenge: challenge.to_string(),
            prompt,
            max_age,
            login_hint: present(&p.login_hint)
                .filter(|h| h.len() <= MAX_LOGIN_HINT)
                .map(str::to_string),
            ui_locales: present(&p.ui_locales).map(str::to_string),
            reauth_at,
        }))
    }

    /// The re-authentication marker for a sign-in asked for at `at` by this request.
    pub fn reauth_marker(&self, at: i64, req: &AuthRequest) -> String {
        format!(
            "{at}.{}",
            self.marker_mac(at, &req.client.client_id, &req.code_challenge)
        )
    }

    fn marker_mac(&self, at: i64, client_id: &str, challenge: &str) -> String {
        let text = format!("{at}|{client_id}|{challenge}");
        let tag = aws_lc_rs::hmac::sign(&self.inner().marker_key, text.as_bytes());
        URL_SAFE_NO_PAD.encode(&tag.as_ref()[..16])
    }

    /// The moment a marker names, when its MAC is ours for this client and challenge.
    fn marker_time(&self, marker: &str, client_id: &str, challenge: &str) -> Option<i64> {
        let (at, mac) = marker.split_once('.')?;
        let at: i64 = at.parse().ok()?;
        let expected = self.marker_mac(at, client_id, challenge);
        bool::from(expected.as_bytes().ct_eq(mac.as_bytes())).then_some(at)
    }

    /// What follows an authorization request from a browser with `session` (if any):
    /// see the module's documentation for `prompt=login` and `max_age`.
    pub async fn authorize(&self, p: &AuthorizeParams, session: Option<&BrowserSession>) -> AppResult<Next> {
        let req = match self.authorization_request(p).await? {
            Ok(req) => req,
            Err(reply) => return Ok(Next::Answer(reply)),
        };
        let Some(session) = session else {
            if req.prompt.none {
                return Ok(Next::Answer(
                    req.refuse("login_required", "the person is not signed in"),
                ));
            }
            return Ok(Next::SignIn(Box::new(req)));
        };
        let now = Utc::now();
        let age = (now - session.verified_at).num_seconds();
        let wants_fresh = req.prompt.login || req.max_age.is_some_and(|max| age > max);
        let renewed = req.reauth_at.is_some_and(|at| {
            let since = now.timestamp() - at;
            (-5..=REAUTH_WINDOW_SECS).contains(&since) && session.verified_at.timestamp() >= at
        });
        if wants_fresh && !renewed {
            if req.prompt.none {
                return Ok(Next::Answer(
                    req.refuse("login_required", "the person must sign in again (max_age)"),
                ));
            }
            return Ok(Next::SignIn(Box::new(req)));
        }
        if req.prompt.consent || self.needs_consent(&req.client, session.user_id, &req.scopes).await? {
            if req.prompt.none {
                return Ok(Next::Answer(req.refuse(
                    "consent_required",
                    "the person has not allowed this application these scopes",
                )));
            }
            return Ok(Next::Consent(Box::new(req)));
        }
        Ok(Next::Answer(self.issue_code(&req, session).await?))
    }

    /// The person's answer on the consent page. The request is checked again from the
    /// parameters the form carried (nothing of it is trusted for having been shown).
    pub async fn decide_consent(&self, p: &AuthorizeParams, session: &BrowserSession, allow: bool) -> AppResult<Reply> {
        let req = match self.authorization_request(p).await? {
            Ok(req) => req,
            Err(reply) => return Ok(reply),
        };
        if !allow {
            return Ok(req.refuse("access_denied", "the person declined"));
        }
        if !req.client.first_party {
            // Added to what was allowed before (CONSENT_GRANT).
            self.remember_consent(session.user_id, &req.client.client_id, &req.scopes)
                .await?;
        }
        self.issue_code(&req, session).await
    }

    /// Whether the consent page must be shown: never for a first-party application,
    /// else unless the person already allowed every scope asked for.
    async fn needs_consent(&self, client: &Client, user_id: Uuid, asked: &[String]) -> AppResult<bool> {
        if client.first_party {
            return Ok(false);
        }
        let granted = self
            .consented_scopes(user_id, &client.client_id)
            .await?
            .unwrap_or_default();
        Ok(asked.iter().any(|s| !granted.contains(s)))
    }

    /// A new code for the request, for the person signed in with `session`, in the
    /// answer to the application. Only its hash is stored.
    async fn issue_code(&self, req: &AuthRequest, session: &BrowserSession) -> AppResult<Reply> {
        let code = tokens::random_token();
        let now = Utc::now();
        let row = CodeRow {
            code_hash: tokens::digest(&code).to_vec(),
            client_id: req.client.client_id.clone(),
            user_id: session.user_id,
            browser_session_id: session.session_id,
            redirect_uri: req.redirect_uri.clone(),
            scope: scopes::join(&req.scopes),
            nonce: req.nonce.clone(),
            code_challenge: req.code_challenge.clone(),
            auth_time: session.verified_at,
            amr: serde_json::to_string(&session.amr).map_err(AppError::internal)?,
            created_at: now,
            expires_at: now + Duration::seconds(CODE_TTL_SECS),
            used_at: None,
            session_id: None,
        };
        self.store().insert_code(&row).await?;
        Ok(req.target().reply(vec![("code", code)]))
    }

    /// The authorization_code grant: the code, once, by the client it was issued to,
    /// with the same redirect URI and the PKCE verifier; then the application's
    /// tokens. A code presented again ends the session its first redemption started.
    pub async fn redeem_code(
        &self,
        client: &Client,
        code: &str,
        redirect_uri: Option<&str>,
        verifier: Option<&str>,
        ctx: &ClientContext,
    ) -> AppResult<TokenResponse> {
        if !tokens::looks_like_token(code) {
            return Err(invalid_grant("the code is invalid or expired"));
        }
        let hash = tokens::digest(code);
        let now = Utc::now();
        let Some(row) = self.store().consume_code(&hash, &client.client_id, now).await? else {
            return Err(match self.store().code(&hash).await? {
                Some(row) if row.used_at.is_some() => {
                    self.code_replayed(&row, ctx).await?;
                    invalid_grant("the code was already used; the tokens issued for it are revoked")
                }
                Some(row) if row.client_id != client.client_id => {
                    invalid_grant("the code was issued to another client")
                }
                _ => invalid_grant("the code is invalid or expired"),
            });
        };
        let uri_ok = match redirect_uri.filter(|u| !u.is_empty()) {
            Some(uri) => uri == row.redirect_uri,
            // Only where the request could leave it out too: one registered URI.
            None => client.redirect_uris.len() == 1 && client.redirect_uris[0] == row.redirect_uri,
        };
        if !uri_ok {
            return Err(invalid_grant("redirect_uri differs from the authorization request's"));
        }
        match verifier.filter(|v| !v.is_empty()) {
            None => return Err(invalid_grant("code_verifier is required (PKCE)")),
            Some(v) if !pkce_matches(v, &row.code_challenge) => {
                return Err(invalid_grant("code_verifier does not match the code_challenge"));
            }
            Some(_) => {}
        }
        let grant = AppGrant {
            user_id: row.user_id,
            scopes: scopes::parse(&row.scope),
            browser_session_id: row.browser_session_id,
            auth_time: row.auth_time,
            amr: serde_json::from_str(&row.amr).unwrap_or_default(),
            nonce: row.nonce.clone(),
        };
        let (tokens, session_id) = self.issue_app_tokens(client, &grant, ctx).await?;
        if !self.store().claim_code_session(&hash, session_id).await? {
            // Replayed while these tokens were being made: they never leave.
            self.end_code_session(&row, session_id, ctx).await?;
            return Err(invalid_grant(
                "the code was already used; the tokens issued for it are revoked",
            ));
        }
        Ok(tokens)
    }

    /// A used code came again: whoever has it is not (only) the application, so the
    /// session its redemption started ends (through the revocation feed, like any
    /// ended session). A redemption still under way finds the marker and ends its own.
    async fn code_replayed(&self, row: &CodeRow, ctx: &ClientContext) -> AppResult<()> {
        match row.session_id {
            Some(id) if !id.is_nil() => self.end_code_session(row, id, ctx).await,
            Some(_) => Ok(()),
            None => {
                if !self.store().claim_code_session(&row.code_hash, Uuid::nil()).await? {
                    // The redemption named its session just now.
                    if let Some(now) = self.store().code(&row.code_hash).await?
                        && let Some(id) = now.session_id.filter(|id| !id.is_nil())
                    {
                        return self.end_code_session(row, id, ctx).await;
                    }
                }
                Ok(())
            }
        }
    }

    async fn end_code_session(&self, row: &CodeRow, session_id: Uuid, ctx: &ClientContext) -> AppResult<()> {
        let event = AuditEvent::new("APP_CODE_REPLAYED")
            .actor_id(Some(row.user_id))
            .resource("session", session_id)
            .meta("client_id", &row.client_id)
            .meta("reason", "code_replayed")
            .client(ctx);
        self.end_one_session(row.user_id, session_id, "code_replayed", event)
            .await
            .map(|_| ())
    }

    /// Forgets codes that expired over an hour ago (kept that long so a late replay
    /// is still recognised and ends its tokens).
    pub async fn purge_codes(&self, now: DateTime<Utc>) -> AppResult<u64> {
        self.store().purge_codes(now - Duration::hours(1)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_matches_rfc_7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(is_s256_challenge(challenge));
        assert!(pkce_matches(verifier, challenge));
        assert!(!pkce_matches(challenge, challenge));
        assert!(!pkce_matches("short", challenge));
    }

    #[test]
    fn prompt_none_stands_alone() {
        assert!(parse_prompt(Some("none")).unwrap().none);
        let p = parse_prompt(Some("login consent")).unwrap();
        assert!(p.login && p.consent && !p.none);
        assert!(parse_prompt(Some("none login")).is_err());
        assert!(parse_prompt(Some("select_account")).is_err());
        assert!(!parse_prompt(None).unwrap().none);
    }
}
