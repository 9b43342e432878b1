//! The redirect flow (authorization code with PKCE; `state`, `nonce` and the verifier
//! kept server-side, the flow tied to the browser that began it by a cookie). Three
//! things begin one, and the provider sends every one back to the same callback URL
//! (the one registered with it), so the `state` row says what the flow is for:
//!
//! - an app, through the API (`GET /auth/oauth/{provider}/authorize`): back to the
//!   app's `redirect_uri` with tokens;
//! - the sign-in page's provider buttons: a browser session, then the page's
//!   `return_to`;
//! - a signed-in person on the identities page: the provider's identity is added to
//!   their account, nobody is signed in.
//!
//! The callback first takes the flow (`take_redirect_flow`: state spent once, same
//! browser), then the caller finishes it the way its purpose says.

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::provider::{upstream, upstream_tokens};
use super::{UpstreamTokens, UpstreamUser, pkce_challenge, url_query};
use crate::config::ProviderSettings;
use crate::crypto::tokens;
use crate::domain::login::LoginOutcome;
use crate::domain::{BrowserSession, ClientContext, Portcullis};
use crate::error::{AppError, AppResult};
use crate::store::{OAuthStateRow, StateRefusal};

/// How long a redirect flow's `state` waits for the provider to send the browser back.
const STATE_TTL_SECONDS: i64 = 600;

/// What a redirect flow is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowPurpose {
    /// An app's, through the API: back to its `redirect_uri` with tokens.
    App,
    /// The sign-in page's: a browser session, then its `return_to`.
    Page,
    /// Adding the provider's identity to this signed-in account.
    Link(Uuid),
}

impl FlowPurpose {
    fn stored(self) -> (&'static str, Option<Uuid>) {
        match self {
            Self::App => ("app", None),
            Self::Page => ("page", None),
            Self::Link(user) => ("link", Some(user)),
        }
    }

    fn from_stored(purpose: &str, user: Option<Uuid>) -> AppResult<Self> {
        match (purpose, user) {
            ("app", _) => Ok(Self::App),
            ("page", _) => Ok(Self::Page),
            ("link", Some(user)) => Ok(Self::Link(user)),
            _ => Err(AppError::internal(anyhow::anyhow!(
                "a redirect flow of unknown purpose {purpose:?}"
            ))),
        }
    }
}

/// A flow the callback has taken: its state is spent, and it came back to the browser
/// that began it.
#[derive(Debug)]
pub struct RedirectFlow {
    pub provider: String,
    pub purpose: FlowPurpose,
    /// An app's `redirect_uri` (one of OAUTH_REDIRECT_URIS), or for the pages the path
    /// to return to (checked by the page when it began the flow and again at the end).
    pub target: String,
    nonce: String,
    pkce_verifier: String,
}

impl Portcullis {
    /// `GET /auth/oauth/{provider}/authorize`: where to send the browser, and a value
    /// for a cookie in that browser (the callback must come back with it, so a
    /// callback link made by someone else signs no one in: login CSRF).
    pub async fn oauth_authorize_url(&self, provider: &str, redirect_uri: &str) -> AppResult<(String, String)> {
        if !self.config().oauth.redirect_uris.iter().any(|u| u == redirect_uri) {
            // The provider is named first when it is not configured at all.
            self.provider(provider, None)?;
            return Err(AppError::validation(
                "redirect_uri",
                "is not one of OAUTH_REDIRECT_URIS",
            ));
        }
        self.begin_redirect_flow(provider, FlowPurpose::App, redirect_uri).await
    }

    /// A provider button of the sign-in page: as `oauth_authorize_url`, ending in a
    /// browser session and `return_to` (a path the page has checked).
    pub async fn oauth_page_authorize_url(&self, provider: &str, return_to: &str) -> AppResult<(String, String)> {
        self.begin_redirect_flow(provider, FlowPurpose::Page, return_to).await
    }

    /// A signed-in person adds `provider` to their account (after the page's step-up):
    /// as `oauth_authorize_url`, ending in `oauth_flow_link` for this account.
    pub async fn oauth_link_authorize_url(
        &self,
        session: &BrowserSession,
        provider: &str,
    ) -> AppResult<(String, String)> {
        self.begin_redirect_flow(provider, FlowPurpose::Link(session.user_id), "")
            .await
    }

    async fn begin_redirect_flow(
        &self,
        provider: &str,
        purpose: FlowPurpose,
        target: &str,
    ) -> AppResult<(String, String)> {
        let p = self.provider(provider, None)?;
        let meta = self.oauth().metadata(&p).await?;
        let endpoint = meta
            .authorization_endpoint
            .as_deref()
            .ok_or_else(|| upstream("discovery", "no authorization_endpoint"))?;
        let state = tokens::random_token();
        let nonce = tokens::random_token();
        let verifier = tokens::random_token();
        let browser = tokens::random_token();
        let now = Utc::now();
        let (purpose, link_user_id) = purpose.stored();
        self.store()
            .insert_oauth_state(&OAuthStateRow {
                state_hash: tokens::digest(&state).to_vec(),
                provider: p.name.clone(),
                nonce: nonce.clone(),
                pkce_verifier: verifier.clone(),
                redirect_uri: target.to_string(),
                browser_hash: tokens::digest(&browser).to_vec(),
                created_at: now,
                expires_at: now + chrono::Duration::seconds(STATE_TTL_SECONDS),
                used_at: None,
                purpose: purpose.to_string(),
                link_user_id,
            })
            .await?;
        let callback = self.callback_url(&p.name);
        let scope = p.scopes.join(" ");
        let challenge = pkce_challenge(&verifier);
        let separator = if endpoint.contains('?') { '&' } else { '?' };
        let url = format!(
            "{endpoint}{separator}{}",
            url_query(&[
                ("response_type", "code"),
                ("client_id", &p.client_id),
                ("redirect_uri", &callback),
                ("scope", &scope),
                ("state", &state),
                ("nonce", &nonce),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ])
        );
        Ok((url, browser))
    }

    /// The callback URL Portcullis gives providers.
    pub fn callback_url(&self, provider: &str) -> String {
        self.config().url(&format!("/auth/oauth/{provider}/callback"))
    }

    /// `GET /auth/oauth/{provider}/callback`, first: spends the `state` (once, before
    /// it expires) and checks the flow came back to the browser that began it.
    pub async fn take_redirect_flow(
        &self,
        provider: &str,
        state: Option<&str>,
        browser: Option<&str>,
    ) -> AppResult<RedirectFlow> {
        let state = state
            .filter(|s| !s.is_empty() && s.len() <= 512)
            .ok_or_else(|| AppError::BadRequest("state is missing".into()))?;
        let row = match self
            .store()
            .take_oauth_state(&tokens::digest(state), Utc::now())
            .await?
        {
            Ok(row) => row,
            Err(StateRefusal::Unknown) => return Err(AppError::BadRequest("state is unknown".into())),
            Err(StateRefusal::Reused) => return Err(AppError::BadRequest("state was already used".into())),
            Err(StateRefusal::Expired) => return Err(AppError::BadRequest("state has expired; start again".into())),
        };
        if row.provider != provider {
            return Err(AppError::BadRequest("state belongs to another provider".into()));
        }
        let same_browser = browser.is_some_and(|b| {
            bool::from(subtle::ConstantTimeEq::ct_eq(
                &tokens::digest(b)[..],
                &row.browser_hash[..],
            ))
        });
        if !same_browser {
            return Err(AppError::BadRequest(
                "this sign-in was started in another browser (its cookie is missing)".into(),
            ));
        }
        Ok(RedirectFlow {
            purpose: FlowPurpose::from_stored(&row.purpose, row.link_user_id)?,
            provider: row.provider,
            target: row.redirect_uri,
            nonce: row.nonce,
            pkce_verifier: row.pkce_verifier,
        })
    }

    /// Finishes an app's or the sign-in page's flow: signs in the account of the
    /// upstream identity (MFA and the role policy as for a password).
    pub async fn oauth_flow_login(
        &self,
        flow: &RedirectFlow,
        code: Option<&str>,
        error: Option<&str>,
        ctx: &ClientContext,
    ) -> AppResult<LoginOutcome> {
        if matches!(flow.purpose, FlowPurpose::Link(_)) {
            return Err(AppError::BadRequest(
                "this flow links a provider; it signs no one in".into(),
            ));
        }
        let (p, who, tokens) = self.redirect_flow_identity(flow, code, error).await?;
        self.upstream_login(&p, who, tokens, ctx).await
    }

    /// Finishes a link flow: the identity is added to the account that began it, which
    /// must be the one this browser is still signed in to. Never an identity linked to
    /// another account. The provider's name.
    pub async fn oauth_flow_link(
        &self,
        flow: &RedirectFlow,
        code: Option<&str>,
        error: Option<&str>,
        session: &BrowserSession,
        ctx: &ClientContext,
    ) -> AppResult<String> {
        if flow.purpose != FlowPurpose::Link(session.user_id) {
            return Err(AppError::Forbidden(
                "this link was started by another account: sign in to it and start again".into(),
            ));
        }
        let (p, who, tokens) = self.redirect_flow_identity(flow, code, error).await?;
        let user = self.user(session.user_id).await?;
        self.link_to_account(&user, &p, &who, &tokens, ctx).await?;
        Ok(p.name)
    }

    /// Who the provider says came back: the code exchanged with the PKCE verifier, the
    /// ID token verified with the flow's nonce.
    async fn redirect_flow_identity(
        &self,
        flow: &RedirectFlow,
        code: Option<&str>,
        error: Option<&str>,
    ) -> AppResult<(ProviderSettings, UpstreamUser, UpstreamTokens)> {
        if let Some(e) = error {
            return Err(AppError::InvalidCredentials(format!(
                "the provider declined the sign-in ({})",
                e.chars().take(64).collect::<String>()
            )));
        }
        let code = code
            .filter(|c| !c.is_empty() && c.len() <= 4096)
            .ok_or_else(|| AppError::BadRequest("code is missing".into()))?;
        let p = self.provider(&flow.provider, None)?;
        let meta = self.oauth().metadata(&p).await?;
        let callback = self.callback_url(&p.name);
        let body = self
            .oauth()
            .token_request(
                &p,
                &meta,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", code),
                    ("redirect_uri", &callback),
                    ("code_verifier", &flow.pkce_verifier),
                ],
            )
            .await?;
        let id_token = body
            .get("id_token")
            .and_then(Value::as_str)
            .ok_or_else(|| upstream("the token request", "no id_token"))?;
        let (claims, _) = self
            .oauth()
            .verify_id_token(&p, &meta, id_token, Some(&flow.nonce))
            .await?;
        let tokens = upstream_tokens(&body);
        let who = self
            .id_token_user(&meta, &claims, tokens.access_token.as_deref())
            .await?;
        Ok((p, who, tokens))
    }

    pub(crate) async fn purge_oauth_states(&self, now: DateTime<Utc>) -> AppResult<u64> {
        self.store().purge_oauth_states(now).await
    }
}
