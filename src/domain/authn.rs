//! Checking credentials: the hot path, and the one home of the credential kinds.
//!
//! Every token Portcullis hands out says what it is by its prefix (see [`TokenKind`]);
//! [`Portcullis::authenticate_for`] is the single place that turns a presented token
//! into a caller for an access rule, the enrolment-only token's rule included.
//! Three kinds are accepted wherever authentication is required: access tokens
//! (JWTs), API keys (`pcx_<id>_<secret>`) and temporary tokens (`pct_<secret>`).
//! A JWT seen before is answered from a bounded cache keyed by the whole token
//! (entries die at the token's `exp`), so the common case costs a hash lookup and a
//! revocation check instead of a signature verification; an API key is answered from
//! a cache of verified keys that the revocation feed invalidates. Neither touches the
//! database once warm. Temporary tokens count their uses atomically in the database,
//! so they always do.

use std::sync::Arc;

use chrono::Utc;
use quick_cache::sync::Cache;
use uuid::Uuid;

use super::Portcullis;
use crate::config::JwtSubject;
use crate::crypto::jwt::{AccessClaims, KeyRing, TokenError};
use crate::crypto::tokens::digest;
use crate::error::{AppError, AppResult};

/// Longest token considered at all; real ones are well under 2 KiB.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Prefix of API keys: `pcx_<id>_<secret>`.
pub const API_KEY_PREFIX: &str = "pcx_";
/// Prefix of temporary tokens: `pct_<secret>`.
pub const TEMPORARY_PREFIX: &str = "pct_";
/// Prefix of the `mfa_token` a password login returns when a second factor is due.
pub const MFA_TOKEN_PREFIX: &str = "pcm_";
/// Prefix of the token that can reach only the enrolment routes.
pub const ENROLLMENT_TOKEN_PREFIX: &str = "pce_";

/// What a presented token is, by its prefix. Access tokens (JWTs) and refresh tokens
/// have none; which of those a token is, only its verification can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    ApiKey,
    Temporary,
    MfaChallenge,
    Enrollment,
    Unprefixed,
}

impl TokenKind {
    pub fn of(token: &str) -> Self {
        [
            (API_KEY_PREFIX, Self::ApiKey),
            (TEMPORARY_PREFIX, Self::Temporary),
            (MFA_TOKEN_PREFIX, Self::MfaChallenge),
            (ENROLLMENT_TOKEN_PREFIX, Self::Enrollment),
        ]
        .into_iter()
        .find(|(prefix, _)| token.starts_with(prefix))
        .map_or(Self::Unprefixed, |(_, kind)| kind)
    }
}

/// Who may call a route (or any other guarded operation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without credentials.
    Public,
    /// Any valid access token.
    Authenticated,
    /// A login session's access token, not an API key or temporary token: the
    /// account's own settings, sessions and credentials, which a narrow credential made
    /// for a script or a link must not reach.
    Person,
    /// A valid access token carrying this permission.
    Permission(&'static str),
    /// A valid access token carrying this role.
    Role(&'static str),
    /// Any valid access token, or the enrolment-only token of a user who must enrol
    /// in MFA: the MFA enrolment routes.
    Enrolling,
    /// A hosted page for a signed-in browser (the session cookie); without one the
    /// browser is sent to the sign-in page. Tokens do not reach these pages.
    SignedIn,
}

impl Access {
    /// Whether an authenticated caller passes; Public and Authenticated always do.
    /// An enrolment-only caller exists only where `authenticate_for` admitted one, i.e.
    /// under `Enrolling`.
    pub fn check(&self, caller: &Principal) -> Result<(), AppError> {
        match self {
            Access::Public | Access::Authenticated | Access::Enrolling => Ok(()),
            // Pages are reached by the session cookie, which the guard checks before
            // any token: a token (whoever holds it) never passes this rule.
            Access::SignedIn => Err(AppError::Forbidden("this page is for a signed-in browser".into())),
            // An application's token (issued through the OpenID provider) is the
            // person's only as far as its scopes go: never the account itself, and
            // never Portcullis's own administration (a gateway's route map, which
            // checks permissions itself, may still admit it).
            Access::Person if caller.credential == Credential::Jwt && !caller.is_delegated() => Ok(()),
            Access::Permission(_) | Access::Role(_) if caller.is_delegated() => Err(AppError::Forbidden(
                "an application's token does not administer Portcullis".into(),
            )),
            Access::Person => Err(AppError::Forbidden(
                "this is done from a login session, not with an API key or temporary token".into(),
            )),
            Access::Permission(p) if caller.has_permission(p) => Ok(()),
            Access::Permission(p) => Err(AppError::Forbidden(format!("missing permission {p}"))),
            Access::Role(r) if caller.has_role(r) => Ok(()),
            Access::Role(r) => Err(AppError::Forbidden(format!("missing role {r}"))),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Access::Public => "public".into(),
            Access::Authenticated => "authenticated".into(),
            Access::Person => "a login session (not an API key or temporary token)".into(),
            Access::Permission(p) => format!("permission {p}"),
            Access::Role(r) => format!("role {r}"),
            Access::Enrolling => "authenticated, or a token for MFA enrolment only".into(),
            Access::SignedIn => "a signed-in browser session (else a redirect to the sign-in page)".into(),
        }
    }
}

/// Which kind of credential authenticated a caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    Jwt,
    /// With the key's id.
    ApiKey(String),
    /// With the token's id.
    Temporary(String),
    /// A token of a user who must enrol in MFA: good for the enrolment routes only.
    MfaEnrollment,
    /// A service account's access token (client_credentials), with the client's id.
    Client(String),
}

impl Credential {
    /// As reported to gateways in `X-Auth-Credential`.
    pub fn kind(&self) -> &'static str {
        match self {
            Credential::Jwt => "jwt",
            Credential::ApiKey(_) => "api_key",
            Credential::Temporary(_) => "temporary",
            Credential::MfaEnrollment => "mfa_enrollment",
            Credential::Client(_) => "client",
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: Uuid,
    pub username: String,
    /// The session of a JWT; API keys and temporary tokens have none.
    pub session_id: Option<Uuid>,
    pub roles: Vec<String>,
    pub permissions: Vec<String>,
    pub amr: Vec<String>,
    pub is_superuser: bool,
    pub credential: Credential,
    /// Unix seconds, when the credential expires on its own.
    pub expires_at: Option<i64>,
    /// What else a verified JWT said, for introspection and step-up.
    pub token: Option<TokenFacts>,
    /// The application a JWT was issued to (its `client_id` claim), when not
    /// Portcullis's own login.
    pub client_id: Option<String>,
    /// That application is the operator's own: the token acts for the person as a
    /// login's does (see `is_delegated`).
    pub first_party: bool,
    /// The scopes granted to that application (its `scope` claim), space-separated.
    pub scope: Option<String>,
}

/// The claims of a verified access token that the principal does not already hold.
/// `iss` and `aud` are left out: verification requires them to equal the
/// configured ones, so every cached principal would repeat the same two strings.
#[derive(Debug, Clone)]
pub struct TokenFacts {
    pub jti: String,
    pub iat: i64,
    pub auth_time: Option<i64>,
}

impl Principal {
    /// Superusers hold every permission, even one created after their token.
    pub fn has_permission(&self, permission: &str) -> bool {
        self.is_superuser || self.permissions.iter().any(|p| p == permission)
    }

    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// A person's token held by a third-party application (issued through the OpenID
    /// provider), as opposed to the person's own login, a first-party application's
    /// (the CLI's device sign-in, say) or a service account's token.
    pub fn is_delegated(&self) -> bool {
        self.credential == Credential::Jwt && self.client_id.is_some() && !self.first_party
    }

    /// Moves the claims' strings into the principal (it is cached for the token's
    /// life, so nothing is held twice).
    /// The account is `uid` when the token has one (`JWT_SUBJECT=username` puts the
    /// username in `sub`), else `sub`: tokens minted under either setting keep working
    /// after it changes, and a renamed account's tokens stay its own.
    fn from_claims(claims: AccessClaims) -> Result<Self, TokenError> {
        let account = claims.uid.as_deref().unwrap_or(&claims.sub);
        let user_id = Uuid::parse_str(account).map_err(|_| TokenError::InvalidClaims)?;
        let session_id = Uuid::parse_str(&claims.sid).map_err(|_| TokenError::InvalidClaims)?;
        // A service account's token is its own session: its `sid` is the account id
        // (`uid`), which no person's session ever is.
        let credential = match &claims.client_id {
            Some(client) if claims.uid.as_deref() == Some(claims.sid.as_str()) => Credential::Client(client.clone()),
            _ => Credential::Jwt,
        };
        Ok(Self {
            user_id,
            session_id: Some(session_id),
            client_id: claims.client_id,
            first_party: claims.first_party,
            scope: claims.scope,
            username: claims.preferred_username,
            roles: claims.roles,
            permissions: claims.permissions,
            amr: claims.amr,
            is_superuser: claims.superuser,
            credential,
            expires_at: Some(claims.exp),
            token: Some(TokenFacts {
                jti: claims.jti,
                iat: claims.iat,
                auth_time: claims.auth_time,
            }),
        })
    }
}

/// Verified tokens, bounded in entries, keyed by the SHA-256 of the whole token:
/// equal digests mean equal tokens (finding two tokens with one digest is as hard
/// as breaking SHA-256), and 32 bytes stand in for a token of 600 or more.
pub struct TokenCache {
    cache: Option<Cache<[u8; 32], Arc<Principal>>>,
}

impl TokenCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            cache: (capacity > 0).then(|| Cache::new(capacity)),
        }
    }

    /// The principal of an already verified token, counting hits and misses in
    /// `portcullis_token_cache_lookups_total{result}` (a gateway's hit rate decides
    /// how often it pays a signature check).
    fn get(&self, key: &[u8; 32]) -> Option<Arc<Principal>> {
        let found = self.cache.as_ref()?.get(key);
        let (hit, miss) = lookup_counters();
        if found.is_some() { hit } else { miss }.increment(1);
        found
    }

    fn insert(&self, key: [u8; 32], principal: Arc<Principal>) {
        if let Some(c) = &self.cache {
            c.insert(key, principal);
        }
    }

    fn remove(&self, key: &[u8; 32]) {
        if let Some(c) = &self.cache {
            c.remove(key);
        }
    }
}

/// The cache's hit and miss counters, looked up once: this runs on every token check.
fn lookup_counters() -> &'static (metrics::Counter, metrics::Counter) {
    static COUNTERS: std::sync::OnceLock<(metrics::Counter, metrics::Counter)> = std::sync::OnceLock::new();
    COUNTERS.get_or_init(|| {
        // The recorder must exist before the handles are taken, or they count nowhere.
        let _ = crate::recorder::metrics_handle();
        (
            metrics::counter!("portcullis_token_cache_lookups_total", "result" => "hit"),
            metrics::counter!("portcullis_token_cache_lookups_total", "result" => "miss"),
        )
    })
}

fn invalid(e: TokenError) -> AppError {
    AppError::InvalidToken(e.to_string())
}

impl Portcullis {
    /// Authenticates any credential for a route open to every authenticated caller.
    pub async fn authenticate(&self, credential: &str) -> AppResult<Arc<Principal>> {
        self.authenticate_for(credential, &Access::Authenticated).await
    }

    /// Authenticates a presented credential for `access`, by its kind: an API key or
    /// temporary token by its prefix, anything unprefixed as an access token. The
    /// enrolment-only token is decided here and nowhere else: under `Enrolling` it is
    /// the caller; elsewhere a live one is 403 (enrol first) and a dead one as invalid
    /// as any other bad token (401). `access` itself is checked by `Access::check`.
    pub async fn authenticate_for(&self, credential: &str, access: &Access) -> AppResult<Arc<Principal>> {
        match TokenKind::of(credential) {
            TokenKind::ApiKey => self.authenticate_api_key(credential).await,
            TokenKind::Temporary => self.authenticate_temporary_token(credential).await,
            TokenKind::Enrollment if *access == Access::Enrolling => self.authenticate_enrollment(credential).await,
            TokenKind::Enrollment => {
                self.authenticate_enrollment(credential).await?;
                Err(AppError::MfaEnrollmentRequired)
            }
            TokenKind::MfaChallenge | TokenKind::Unprefixed => self.authenticate_token(credential).await,
        }
    }

    /// Authenticates a bearer access token.
    pub async fn authenticate_token(&self, token: &str) -> AppResult<Arc<Principal>> {
        let inner = self.inner();
        let now = Utc::now().timestamp();
        let leeway = inner.config.tokens.jwt_leeway.as_secs() as i64;
        let revoked = |p: &Principal| {
            p.session_id
                .is_some_and(|sid| inner.revocations.is_session_revoked(&sid))
        };
        // Never cached, so refused before being hashed for the lookup.
        if token.len() > MAX_TOKEN_LEN {
            return Err(invalid(TokenError::Malformed));
        }
        let key = digest(token);
        if let Some(p) = inner.token_cache.get(&key) {
            if p.expires_at.is_some_and(|exp| now > exp + leeway) {
                inner.token_cache.remove(&key);
                return Err(invalid(TokenError::Expired));
            }
            if revoked(&p) {
                return Err(AppError::InvalidToken("session has ended".into()));
            }
            return Ok(p);
        }
        let ring = inner.keys.ring();
        let claims = match ring.verify(token) {
            Err(TokenError::MissingKid) if ring.accepts_unkeyed() => {
                return self.authenticate_unkeyed(&ring, token).await;
            }
            Err(TokenError::UnknownKid) => {
                let kid = KeyRing::kid_of(token).map_err(invalid)?;
                if !inner.keys.reload_for_unknown_kid(&kid).await {
                    return Err(invalid(TokenError::UnknownKid));
                }
                inner.keys.ring().verify(token).map_err(invalid)?
            }
            other => other.map_err(invalid)?,
        };
        let principal = Arc::new(Principal::from_claims(claims).map_err(invalid)?);
        if revoked(&principal) {
            return Err(AppError::InvalidToken("session has ended".into()));
        }
        inner.token_cache.insert(key, principal.clone());
        Ok(principal)
    }

    /// A token without `kid` minted by the replaced service (`JWT_ACCEPT_UNKEYED`):
    /// its `sub` names the account as `JWT_SUBJECT` says, and what it grants is read
    /// from the account on every use (it carries no roles, session or second factor),
    /// so it is never cached: a disabled or deleted account, or removed roles, take
    /// effect at once. An account whose roles require MFA cannot be reached with one.
    /// Ending all the account's sessions at once (logout-all, a password change or
    /// reset, an administrator's revocation) refuses every such token issued before
    /// (one without `iat` counts as issued before), as the store records that moment
    /// on the account even when no session was live.
    async fn authenticate_unkeyed(&self, ring: &KeyRing, token: &str) -> AppResult<Arc<Principal>> {
        let claims = ring.verify_unkeyed(token).map_err(invalid)?;
        let store = self.store();
        let user = match self.config().tokens.jwt_subject {
            JwtSubject::Id => match Uuid::parse_str(&claims.sub) {
                Ok(id) => store.user_by_id(id).await?,
                Err(_) => None,
            },
            // The login lookup also finds e-mails: only the username may match.
            JwtSubject::Username => store
                .user_by_login(&claims.sub)
                .await?
                .filter(|u| u.username.eq_ignore_ascii_case(&claims.sub)),
        };
        let user = user
            .filter(|u| u.is_active)
            .ok_or_else(|| invalid(TokenError::UnknownSubject))?;
        if let Some(ended) = user.sessions_ended_at
            && claims.iat.is_none_or(|iat| iat <= ended.timestamp())
        {
            return Err(invalid(TokenError::IssuedBeforeSessionsEnded));
        }
        if self.mfa_required(user.id, user.is_superuser).await? {
            return Err(AppError::InvalidToken(
                "this account requires a second factor: sign in again".into(),
            ));
        }
        let grants = self.grants(user.id, user.is_superuser).await?;
        Ok(Arc::new(Principal {
            user_id: user.id,
            username: user.username,
            session_id: None,
            roles: grants.roles,
            permissions: grants.permissions,
            amr: Vec::new(),
            is_superuser: user.is_superuser,
            credential: Credential::Jwt,
            expires_at: Some(claims.exp),
            token: None,
            client_id: None,
            first_party: false,
            scope: None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A page's rule admits no token, not even a superuser's: outside the guard (an
    /// embedding service calling `authorize`) it must not fail open.
    #[test]
    fn a_page_rule_admits_no_token() {
        for credential in [
            Credential::Jwt,
            Credential::ApiKey("k".into()),
            Credential::Temporary("t".into()),
        ] {
            let caller = Principal {
                user_id: Uuid::nil(),
                username: "root".into(),
                session_id: None,
                roles: vec!["admin".into()],
                permissions: vec![],
                amr: vec![],
                is_superuser: true,
                credential,
                expires_at: None,
                token: None,
                client_id: None,
                first_party: false,
                scope: None,
            };
            assert!(matches!(Access::SignedIn.check(&caller), Err(AppError::Forbidden(_))));
            assert!(Access::Authenticated.check(&caller).is_ok());
        }
    }
}
