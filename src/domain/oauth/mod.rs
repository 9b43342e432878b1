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
//! - `redirect`: the redirect flow (its `state`, kept server-side), begun by an app
//!   through the API, by the sign-in page's buttons, or by a signed-in person linking
//!   another provider, and finished by the one callback each its own way.
//! - here: the token exchange, and the glue both flows share (which configured
//!   provider a request means, the common end of a sign-in).

mod identities;
mod redirect;

/// What upstream tokens are sealed under (for the master key's check).
pub(crate) use identities::SEAL_CONTEXT as UPSTREAM_SEAL_CONTEXT;
pub mod provider;

use serde_json::Value;

use super::login::LoginOutcome;
use super::{Actor, ClientContext, Portcullis};
use crate::config::{ProviderKind, ProviderSettings};
use crate::error::{AppError, AppResult};
pub use identities::{IdentityOut, UpstreamTokenOut};
pub use provider::{OAuthClients, ProviderMeta, UpstreamTokens, UpstreamUser, pkce_challenge};
use provider::{upstream_user, with_userinfo};
pub use redirect::{FlowPurpose, RedirectFlow};

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

impl Portcullis {
    /// The provider client, shared by every request (its caches with it).
    pub(super) fn oauth(&self) -> &OAuthClients {
        &self.inner().oauth
    }

    /// The configured provider `name` (with a per-request Okta domain, when allowed).
    pub(super) fn provider(&self, name: &str, okta_domain: Option<&str>) -> AppResult<ProviderSettings> {
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
    pub(super) async fn id_token_user(
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
    pub(super) async fn upstream_login(
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
