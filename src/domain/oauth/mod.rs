//! Sign-in with upstream OpenID Connect providers: the token exchange (an app hands
//! over a provider's ID token or access token) and the redirect flow (authorization
//! code with PKCE, `state` and `nonce` kept server-side), both ending in the same
//! account resolution and the same login outcome as a password (MFA included).
//!
//! Split by job, so each part can be read and reused alone:
//! - [`provider`]: the client of the upstream providers (discovery, JWKS, ID-token
//!   verification, token and userinfo calls, the confirmations of access tokens).
//!   It knows nothing of accounts, sessions or the store.
//! - `identities`: which account an upstream identity signs in to (linking, sign-up),
//!   and the identities and upstream tokens kept for it.
//! - here: the two flows, the `state` of the redirect flow, and the glue they share
//!   (which configured provider a request means, the common end of both flows).

mod identities;

/// What upstream tokens are sealed under (for the master key's check).
pub(crate) use identities::SEAL_CONTEXT as UPSTREAM_SEAL_CONTEXT;
pub mod provider;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::login::LoginOutcome;
use super::{Actor, ClientContext, Portcullis};
use crate::config::{ProviderKind, ProviderSettings};
use crate::crypto::tokens;
use crate::error::{AppError, AppResult};
use crate::store::{OAuthStateRow, StateRefusal};
pub use identities::{IdentityOut, UpstreamTokenOut};
pub use provider::{OAuthClients, ProviderMeta, UpstreamTokens, UpstreamUser, pkce_challenge};
use provider::{upstream, upstream_tokens, upstream_user, with_userinfo};

/// How long a redirect flow's `state` waits for the provider to send the browser back.
const STATE_TTL_SECONDS: i64 = 600;

/// The issuer of an Okta organisation named by domain (`acme.okta.com`) or by issuer URL.
fn okta_issuer(domain: &str) -> String {
    if domain.contains("://") {
        domain.trim_end_matches('/').to_string()
    } else {
        format!("https://{}", domain.to_ascii_lowercase())
    }
}

/// RFC 3986's unreserved characters; everything else is percent-encoded.
const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `k=v&...` with every value percent-encoded: the authorization request's query, and
/// the fragment the redirect flow hands tokens back in.
pub fn url_query(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", percent_encoding::utf8_percent_encode(v, UNRESERVED)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Where the redirect flow sends the browser back, and what it carries.
#[derive(Debug)]
pub struct CallbackResult {
    pub redirect_uri: String,
    pub outcome: LoginOutcome,
}

impl Portcullis {
    /// The provider client, shared by every request (its caches with it).
    fn oauth(&self) -> &OAuthClients {
        &self.inner().oauth
    }

    /// The configured provider `name` (with a per-request Okta domain, when allowed).
    fn provider(&self, name: &str, okta_domain: Option<&str>) -> AppResult<ProviderSettings> {
        let settings = &self.config().oauth;
        let mut p = settings.provider(name).cloned().ok_or_else(|| {
            AppError::BadRequest(format!(
                "provider {:?} is not configured",
                name.chars().take(64).collect::<String>()
            ))
        })?;
        if let Some(domain) = okta_domain {
            if p.kind != ProviderKind::Okta {
                return Err(AppError::validation("okta_domain", "applies to provider okta only"));
            }
            // Only listed domains or issuers: never fetch from a place a request names.
            let wanted = okta_issuer(domain);
            if !settings.okta_domains.iter().any(|d| okta_issuer(d) == wanted) {
                return Err(AppError::validation(
                    "okta_domain",
                    "is not one of OAUTH_OKTA_ALLOWED_DOMAINS",
                ));
            }
            p.issuer = wanted;
        }
        Ok(p)
    }

    /// Who a verified ID token says signs in. A provider may release the email or
    /// the profile only at UserInfo (OpenID Connect Core 5.4): when the ID token lacks
    /// the email or the `name` and there is an access token (issued
    /// with it, or confirmed to belong with it), UserInfo completes it, and must be
    /// about the ID token's subject. Its failure is fatal only when the email must
    /// come from it; an email the ID token carries is the one used.
    async fn id_token_user(
        &self,
        meta: &ProviderMeta,
        claims: &Value,
        access_token: Option<&str>,
    ) -> AppResult<UpstreamUser> {
        // Verified: present, and the provider's.
        let issuer = claims.get("iss").and_then(Value::as_str).unwrap_or_default();
        let who = upstream_user(claims, issuer)?;
        let needs_email = who.email.is_none();
        // Not for `preferred_username` alone: Google never puts it in ID tokens, and
        // a new account's username falls back to the email's local part anyway.
        let needs_profile = who.name.is_none();
        let Some(access) = access_token.filter(|_| (needs_email || needs_profile) && meta.userinfo_endpoint.is_some())
        else {
            return Ok(who);
        };
        let info = match self.oauth().userinfo(meta, access).await {
            Ok(info) => info,
            Err(e) if needs_email => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "UserInfo failed; signing in with the ID token's claims");
                return Ok(who);
            }
        };
        let completed = with_userinfo(who.clone(), &info)?;
        Ok(match needs_email {
            true => completed,
            false => UpstreamUser {
                email: who.email,
                email_verified: who.email_verified,
                ..completed
            },
        })
    }

    /// Signs in the account of an upstream identity: MFA and the role policy apply as
    /// for a password.
    async fn upstream_login(
        &self,
        p: &ProviderSettings,
        who: UpstreamUser,
        tokens: UpstreamTokens,
        ctx: &ClientContext,
    ) -> AppResult<LoginOutcome> {
        let provider = p.name.as_str();
        let user = self.resolve_account(p, &who, &tokens, ctx).await?;
        if !user.is_active {
            return Err(AppError::InvalidCredentials("this account is disabled".into()));
        }
        self.log_event(
            Actor::user(user.id, &user.username, ctx)
                .event("OAUTH_LOGIN")
                .resource("user", user.id)
                .meta("provider", provider),
        )
        .await?;
        self.after_first_factor(&user, &["fed"], ctx).await
    }

    /// `POST /auth/oauth/login`: an app that did the provider login itself hands over
    /// an ID token (verified locally) or an access token (confirmed as ours, then
    /// read at userinfo).
    pub async fn oauth_token_login(
        &self,
        provider: &str,
        id_token: Option<&str>,
        access_token: Option<&str>,
        nonce: Option<&str>,
        okta_domain: Option<&str>,
        ctx: &ClientContext,
    ) -> AppResult<LoginOutcome> {
        // It goes to the provider in an Authorization header; one that cannot is the
        // caller's mistake, not the provider's failure.
        if let Some(t) = access_token
            && (t.is_empty() || t.len() > 8192 || !t.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(AppError::validation(
                "access_token",
                "is not a bearer token (visible ASCII, at most 8 KiB)",
            ));
        }
        let p = self.provider(provider, okta_domain)?;
        let meta = self.oauth().metadata(&p).await?;
        let (who, tokens) = match (id_token, access_token) {
            (Some(id), _) => {
                let (claims, alg) = self.oauth().verify_id_token(&p, &meta, id, nonce).await?;
                if let Some(access) = access_token {
                    self.oauth().confirm_pair(&p, &meta, (&claims, alg), access).await?;
                }
                (
                    self.id_token_user(&meta, &claims, access_token).await?,
                    UpstreamTokens {
                        access_token: access_token.map(str::to_string),
                        ..Default::default()
                    },
                )
            }
            (None, Some(access)) => (
                {
                    self.oauth().confirm_issued_to_us(&p, &meta, access).await?;
                    upstream_user(&self.oauth().userinfo(&meta, access).await?, &meta.issuer)?
                },
                UpstreamTokens {
                    access_token: Some(access.to_string()),
                    ..Default::default()
                },
            ),
            (None, None) => return Err(AppError::validation("id_token", "give an id_token or an access_token")),
        };
        self.upstream_login(&p, who, tokens, ctx).await
    }

    /// `GET /auth/oauth/{provider}/authorize`: where to send the browser, and a value
    /// for a cookie in that browser (the callback must come back with it, so a
    /// callback link made by someone else signs no one in: login CSRF).
    pub async fn oauth_authorize_url(&self, provider: &str, redirect_uri: &str) -> AppResult<(String, String)> {
        let p = self.provider(provider, None)?;
        if !self.config().oauth.redirect_uris.iter().any(|u| u == redirect_uri) {
            return Err(AppError::validation(
                "redirect_uri",
                "is not one of OAUTH_REDIRECT_URIS",
            ));
        }
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
        self.store()
            .insert_oauth_state(&OAuthStateRow {
                state_hash: tokens::digest(&state).to_vec(),
                provider: p.name.clone(),
                nonce: nonce.clone(),
                pkce_verifier: verifier.clone(),
                redirect_uri: redirect_uri.to_string(),
                browser_hash: tokens::digest(&browser).to_vec(),
                created_at: now,
                expires_at: now + chrono::Duration::seconds(STATE_TTL_SECONDS),
                used_at: None,
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

    /// `GET /auth/oauth/{provider}/callback`: checks the state, exchanges the code
    /// with the PKCE verifier, verifies the ID token and its nonce, and signs in.
    pub async fn oauth_callback(
        &self,
        provider: &str,
        code: Option<&str>,
        state: Option<&str>,
        error: Option<&str>,
        browser: Option<&str>,
        ctx: &ClientContext,
    ) -> AppResult<CallbackResult> {
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
        if let Some(e) = error {
            return Err(AppError::InvalidCredentials(format!(
                "the provider declined the sign-in ({})",
                e.chars().take(64).collect::<String>()
            )));
        }
        let code = code
            .filter(|c| !c.is_empty() && c.len() <= 4096)
            .ok_or_else(|| AppError::BadRequest("code is missing".into()))?;
        let p = self.provider(provider, None)?;
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
                    ("code_verifier", &row.pkce_verifier),
                ],
            )
            .await?;
        let id_token = body
            .get("id_token")
            .and_then(Value::as_str)
            .ok_or_else(|| upstream("the token request", "no id_token"))?;
        let (claims, _) = self
            .oauth()
            .verify_id_token(&p, &meta, id_token, Some(&row.nonce))
            .await?;
        let tokens = upstream_tokens(&body);
        let who = self
            .id_token_user(&meta, &claims, tokens.access_token.as_deref())
            .await?;
        let outcome = self.upstream_login(&p, who, tokens, ctx).await?;
        Ok(CallbackResult {
            redirect_uri: row.redirect_uri,
            outcome,
        })
    }

    pub(crate) async fn purge_oauth_states(&self, now: DateTime<Utc>) -> AppResult<u64> {
        self.store().purge_oauth_states(now).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_escaping() {
        assert_eq!(
            url_query(&[("a", "x y"), ("b", "http://h/p?q=1")]),
            "a=x%20y&b=http%3A%2F%2Fh%2Fp%3Fq%3D1"
        );
    }
}
