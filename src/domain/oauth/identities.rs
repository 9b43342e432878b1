//! The link between accounts and upstream identities: which account an identity signs
//! in to (linked before, linked now by a verified email, or created), the identities
//! an account lists and unlinks, and the upstream tokens kept for it, sealed under the
//! master key and refreshed at the provider when asked for.
//!
//! Kept apart from the flows because every rule about whose account a provider's
//! word opens lives here, and apart from the provider client, which only says what
//! the provider asserts.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::provider::{ProviderMeta, UpstreamTokens, UpstreamUser, issuer_key, upstream, upstream_tokens};
use crate::config::{ProviderKind, ProviderSettings};
use crate::domain::{Actor, AuditEvent, ClientContext, Portcullis, validate};
use crate::error::{AppError, AppResult};
use crate::store::{IdentityRow, NewUser, UserRow};

/// The sealing context of kept upstream tokens: a sealed one opens only as such.
pub(crate) const SEAL_CONTEXT: &str = "portcullis:oauth_token";

/// An identity of the caller, as listed (never its tokens).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IdentityOut {
    /// The configured provider it last signed in through.
    pub provider: String,
    /// With `subject`, what the identity is: the issuer that vouches for it.
    pub issuer: Option<String>,
    pub subject: String,
    pub email: Option<String>,
    pub linked_at: DateTime<Utc>,
    pub last_login_at: DateTime<Utc>,
}

/// A fresh upstream access token for integrations.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UpstreamTokenOut {
    pub provider: String,
    pub access_token: String,
    pub expires_at: Option<DateTime<Utc>>,
}

impl Portcullis {
    fn seal_upstream(&self, token: Option<&str>) -> AppResult<Option<Vec<u8>>> {
        token
            .map(|t| {
                self.keys()
                    .master()?
                    .seal(t.as_bytes(), SEAL_CONTEXT)
                    .map_err(AppError::Internal)
            })
            .transpose()
    }

    fn open_upstream(&self, sealed: &[u8]) -> AppResult<String> {
        let plain = self
            .keys()
            .master()?
            .open(sealed, SEAL_CONTEXT)
            .map_err(AppError::Internal)?;
        String::from_utf8(plain).map_err(AppError::internal)
    }

    /// A username for a new account: the provider's preferred username, else the
    /// email's local part, else the provider and subject; made valid and unique.
    async fn derive_username(&self, provider: &str, who: &UpstreamUser) -> AppResult<String> {
        let raw = who
            .preferred_username
            .clone()
            .or_else(|| who.email.as_ref().and_then(|e| e.split('@').next().map(str::to_string)))
            .unwrap_or_else(|| format!("{provider}_{}", who.subject));
        let mut base: String = validate::fold(&raw)
            .to_lowercase()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .take(40)
            .collect();
        if base.len() < 3 || validate::username(&base).is_err() {
            base = format!("{provider}_user");
        }
        for n in 0..50u32 {
            let candidate = if n == 0 {
                base.clone()
            } else {
                format!("{base}{}", n + 1)
            };
            if validate::username(&candidate).is_ok() && self.store().user_by_login(&candidate).await?.is_none() {
                return Ok(candidate);
            }
        }
        Ok(format!("{base}_{}", &Uuid::new_v4().simple().to_string()[..8]))
    }

    /// Identities linked before issuers were recorded get the issuer configured under
    /// their provider's name (at start; one of a provider no longer configured keeps
    /// none, and no sign-in finds it, until that name is configured again).
    pub(crate) async fn fill_identity_issuers(&self) -> AppResult<()> {
        for p in &self.config().oauth.providers {
            let filled = self
                .store()
                .fill_identity_issuers(&p.name, issuer_key(&p.issuer))
                .await?;
            if filled > 0 {
                tracing::info!(provider = %p.name, filled, "upstream identities given their provider's issuer");
            }
        }
        Ok(())
    }

    /// The row of an upstream identity as it signs in now (its user not yet known).
    fn identity_row(
        &self,
        p: &ProviderSettings,
        who: &UpstreamUser,
        tokens: &UpstreamTokens,
        now: DateTime<Utc>,
    ) -> AppResult<IdentityRow> {
        Ok(IdentityRow {
            provider: p.name.clone(),
            subject: who.subject.clone(),
            user_id: Uuid::nil(),
            email: who.email.clone(),
            issuer: Some(who.issuer.clone()),
            created_at: now,
            last_login_at: now,
            access_token: self.seal_upstream(tokens.access_token.as_deref())?,
            refresh_token: self.seal_upstream(tokens.refresh_token.as_deref())?,
            token_expires_at: tokens.expires_at,
        })
    }

    /// The identity linked before (by issuer and subject, whatever the provider's name).
    async fn linked_identity(&self, p: &ProviderSettings, who: &UpstreamUser) -> AppResult<Option<IdentityRow>> {
        let linked = self.store().identity(&who.issuer, &who.subject).await?;
        // Linked before 0011 under the issuer configured, where that is not the one
        // tokens name (a Microsoft multi-tenant provider's): it moves to the latter.
        let configured = issuer_key(&p.issuer);
        if linked.is_none()
            && configured != who.issuer
            && self
                .store()
                .rekey_identity(configured, &who.subject, &who.issuer)
                .await?
        {
            return self.store().identity(&who.issuer, &who.subject).await;
        }
        Ok(linked)
    }

    /// Adds an upstream identity to a signed-in account (its owner asked for it, on the
    /// identities page, after a step-up). Refused when the identity belongs to another
    /// account, or the account has another identity of that provider; linking one the
    /// account has already only records the sign-in.
    pub(super) async fn link_to_account(
        &self,
        user: &UserRow,
        p: &ProviderSettings,
        who: &UpstreamUser,
        tokens: &UpstreamTokens,
        ctx: &ClientContext,
    ) -> AppResult<()> {
        let now = Utc::now();
        let identity = self.identity_row(p, who, tokens, now)?;
        if let Some(linked) = self.linked_identity(p, who).await? {
            if linked.user_id != user.id {
                return Err(AppError::Conflict(format!(
                    "this {} account is already linked to another account here; sign in with it, or unlink it there first",
                    p.name
                )));
            }
            return self.store().identity_signed_in(&identity, now).await;
        }
        self.link_new_identity(user, identity, "signed_in", ctx).await
    }

    /// Links a new identity to `user`, recorded as `OAUTH_LINK` made `via` a verified
    /// email or a signed-in request.
    async fn link_new_identity(
        &self,
        user: &UserRow,
        identity: IdentityRow,
        via: &str,
        ctx: &ClientContext,
    ) -> AppResult<()> {
        let record = self.audit_record(
            Actor::user(user.id, &user.username, ctx)
                .event("OAUTH_LINK")
                .resource("user", user.id)
                .meta("provider", &identity.provider)
                .meta("via", via),
        );
        self.store()
            .link_identity(
                &IdentityRow {
                    user_id: user.id,
                    ..identity
                },
                record.as_ref(),
            )
            .await
    }

    /// The account an upstream identity signs in to: linked before (by issuer and
    /// subject, whatever the provider's name), linked now by verified email (when
    /// allowed), or created (when sign-up is allowed).
    pub(super) async fn resolve_account(
        &self,
        p: &ProviderSettings,
        who: &UpstreamUser,
        tokens: &UpstreamTokens,
        ctx: &ClientContext,
    ) -> AppResult<UserRow> {
        let provider = p.name.as_str();
        let now = Utc::now();
        let identity = self.identity_row(p, who, tokens, now)?;
        if let Some(linked) = self.linked_identity(p, who).await? {
            self.store().identity_signed_in(&identity, now).await?;
            return self.user(linked.user_id).await;
        }
        let settings = &self.config().oauth;
        // Only a plain ASCII address is looked up: PostgreSQL's lower() folds some
        // non-ASCII letters onto ASCII ones (U+0130 to `i` under C.UTF-8), so a
        // look-alike address at a domain an attacker owns would find the account of the
        // address it imitates.
        let existing = match who.email.as_deref().filter(|e| validate::email(e).is_ok()) {
            Some(email) => self.store().user_by_email(email).await?,
            None => None,
        };
        if let Some(user) = existing {
            // Both sides must have proven the address: the provider says so, and the
            // account got it from a provider that said so. A self-registered address
            // was never proven, and linking into it would hand the account to
            // whoever registered it.
            let proven = who.email_verified && self.store().email_verified(user.id).await?;
            if !(proven && settings.link_verified_email) {
                return Err(AppError::Conflict(format!(
                    "an account with this email already exists and is not linked to {provider}{}",
                    if who.email_verified {
                        ""
                    } else {
                        " (the provider does not assert the email is verified)"
                    }
                )));
            }
            self.link_new_identity(&user, identity, "verified_email", ctx).await?;
            return Ok(user);
        }
        if !settings.allow_signup {
            return Err(AppError::Forbidden(format!(
                "no account is linked to this {provider} identity, and sign-up is disabled"
            )));
        }
        let email = who
            .email
            .clone()
            .filter(|e| validate::email(e).is_ok())
            .ok_or_else(|| AppError::validation("email", "the provider gave no usable email address"))?;
        let username = self.derive_username(provider, who).await?;
        let record = self.audit_record(AuditEvent::new("REGISTER").client(ctx).meta("provider", provider));
        self.store()
            .insert_user(
                &NewUser {
                    username,
                    email,
                    full_name: who.name.clone().filter(|n| validate::full_name(n).is_ok()),
                    password_hash: None,
                    is_superuser: false,
                    roles: Vec::new(),
                    identity: Some(identity),
                    email_verified: who.email_verified,
                },
                now,
                record.as_ref(),
            )
            .await
    }

    /// The caller's linked identities.
    pub async fn identities(&self, user_id: Uuid) -> AppResult<Vec<IdentityOut>> {
        Ok(self
            .store()
            .identities_of(user_id)
            .await?
            .into_iter()
            .map(|i| IdentityOut {
                provider: i.provider,
                issuer: i.issuer,
                subject: i.subject,
                email: i.email,
                linked_at: i.created_at,
                last_login_at: i.last_login_at,
            })
            .collect())
    }

    /// Unlinks one of the caller's identities; never their last way to sign in.
    pub async fn unlink_identity(&self, user: &UserRow, provider: &str, ctx: &ClientContext) -> AppResult<()> {
        let record = self.audit_record(
            Actor::user(user.id, &user.username, ctx)
                .event("OAUTH_UNLINK")
                .resource("user", user.id)
                .meta("provider", provider),
        );
        if !self.store().unlink_identity(user.id, provider, record.as_ref()).await? {
            return Err(AppError::NotFound(format!("no {provider} identity is linked")));
        }
        Ok(())
    }

    /// A current upstream access token of the caller's identity, refreshed upstream
    /// when it has expired.
    pub async fn upstream_access_token(&self, user_id: Uuid, provider: &str) -> AppResult<UpstreamTokenOut> {
        let identity = self
            .store()
            .identity_of(user_id, provider)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("no {provider} identity is linked")))?;
        // An unknown expiry counts as expired when there is a refresh token to use.
        let fresh = match identity.token_expires_at {
            Some(e) => e > Utc::now() + chrono::Duration::seconds(30),
            None => identity.refresh_token.is_none(),
        };
        if let (Some(sealed), true) = (&identity.access_token, fresh) {
            return Ok(UpstreamTokenOut {
                provider: identity.provider,
                access_token: self.open_upstream(sealed)?,
                expires_at: identity.token_expires_at,
            });
        }
        let sealed_refresh = identity.refresh_token.as_ref().ok_or_else(|| {
            AppError::Conflict(
                "the provider's token has expired and it gave no refresh token: sign in with it again".into(),
            )
        })?;
        let refresh = self.open_upstream(sealed_refresh)?;
        let issuer = identity
            .issuer
            .as_deref()
            .ok_or_else(|| AppError::Conflict("this identity's issuer is unknown: sign in with it again".into()))?;
        // Refreshed where it signed in: an Okta organisation named per request, say
        // (still only while that organisation is allowed).
        let configured = self.provider(provider, None)?;
        let p = if configured.kind == ProviderKind::Okta && issuer != issuer_key(&configured.issuer) {
            self.provider(provider, Some(issuer))?
        } else {
            configured
        };
        let meta = self.oauth().metadata(&p).await?;
        // Never to another issuer: a provider name pointed elsewhere since.
        if !serves(&p, &meta, issuer) {
            return Err(AppError::Conflict(format!(
                "{provider} now names another issuer than this identity's: sign in with it again"
            )));
        }
        let body = self
            .oauth()
            .token_request(
                &p,
                &meta,
                &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
            )
            .await
            .map_err(|e| match e {
                // The provider's refusal is not this session's failure.
                AppError::InvalidCredentials(m) => AppError::BadGateway(m),
                other => other,
            })?;
        let tokens = upstream_tokens(&body);
        let access = tokens
            .access_token
            .clone()
            .ok_or_else(|| upstream("the refresh", "no access_token"))?;
        let sealed_access = self.seal_upstream(Some(&access))?.unwrap_or_default();
        self.store()
            .set_identity_tokens(
                issuer,
                &identity.subject,
                &sealed_access,
                self.seal_upstream(tokens.refresh_token.as_deref())?.as_deref(),
                tokens.expires_at,
            )
            .await?;
        Ok(UpstreamTokenOut {
            provider: identity.provider,
            access_token: access,
            expires_at: tokens.expires_at,
        })
    }
}

/// Whether the provider `p` (its endpoints `meta`) is the issuer `issuer` of an
/// identity: the issuer configured or discovered, or a tenant of a multi-tenant one
/// (`{tenantid}` standing for one path segment).
fn serves(p: &ProviderSettings, meta: &ProviderMeta, issuer: &str) -> bool {
    let tenant_of = |template: &str| {
        template.split_once("{tenantid}").is_some_and(|(before, after)| {
            issuer
                .strip_prefix(before)
                .and_then(|rest| rest.strip_suffix(issuer_key(after)))
                .is_some_and(|tid| !tid.is_empty() && !tid.contains('/'))
        })
    };
    [p.issuer.as_str(), meta.issuer.as_str()]
        .iter()
        .any(|i| issuer_key(i) == issuer || tenant_of(i))
}
