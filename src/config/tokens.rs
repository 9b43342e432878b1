//! Tokens: how they are signed and for whom, how long they live, and how each
//! instance keeps its view of keys and revocations fresh.

use std::time::Duration;

use super::sources::Switch;
use super::{ConfigError, Sources};

/// The names this group reads, aliases included: the TOML file may set only known ones.
pub(super) const KEYS: &[&str] = &[
    "JWT_ALGORITHM",
    "ALGORITHM",
    "JWT_SECRET_KEY",
    "SECRET_KEY",
    "JWT_SECRET",
    "JWT_ISSUER",
    "JWT_AUDIENCE",
    "JWT_SUBJECT",
    "JWT_ACCEPT_UNKEYED",
    "JWT_UNKEYED_MAX_LIFETIME_MINUTES",
    "ACCESS_TOKEN_EXPIRE_MINUTES",
    "JWT_EXPIRATION",
    "REFRESH_TOKEN_EXPIRE_DAYS",
    "JWT_LEEWAY_SECONDS",
    "TEMPORARY_TOKEN_MAX_TTL_SECONDS",
    "PORTCULLIS_KEY_RELOAD_SECONDS",
    "TOKEN_CACHE_CAPACITY",
    "PORTCULLIS_SYNC_INTERVAL_MS",
    "API_KEY_RECHECK_SECONDS",
    "SESSION_MAX_LIFETIME_DAYS",
    "SESSION_MAX_LIFETIME_MFA_DAYS",
];

/// JWT signing algorithm family chosen for new keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningAlgorithm {
    Es256,
    Rs256,
    EdDsa,
    Hs256,
    Hs384,
    Hs512,
}

impl SigningAlgorithm {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.trim().to_ascii_uppercase().as_str() {
            "ES256" => Self::Es256,
            "RS256" => Self::Rs256,
            "EDDSA" | "ED25519" => Self::EdDsa,
            "HS256" => Self::Hs256,
            "HS384" => Self::Hs384,
            "HS512" => Self::Hs512,
            _ => return None,
        })
    }

    pub fn is_symmetric(self) -> bool {
        matches!(self, Self::Hs256 | Self::Hs384 | Self::Hs512)
    }

    pub fn jwt(self) -> jsonwebtoken::Algorithm {
        use jsonwebtoken::Algorithm as A;
        match self {
            Self::Es256 => A::ES256,
            Self::Rs256 => A::RS256,
            Self::EdDsa => A::EdDSA,
            Self::Hs256 => A::HS256,
            Self::Hs384 => A::HS384,
            Self::Hs512 => A::HS512,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::Rs256 => "RS256",
            Self::EdDsa => "EdDSA",
            Self::Hs256 => "HS256",
            Self::Hs384 => "HS384",
            Self::Hs512 => "HS512",
        }
    }
}

/// What an access token's `sub` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtSubject {
    /// The user id (a UUID): stable for the account's life.
    Id,
    /// The username, as some replaced services did. The token then also carries the
    /// user id in `uid`, which is what Portcullis itself reads back.
    Username,
}

#[derive(Debug, Clone)]
pub struct TokenSettings {
    pub jwt_algorithm: SigningAlgorithm,
    pub jwt_secret: Option<String>,
    pub jwt_issuer: String,
    /// None (`JWT_AUDIENCE=none`): tokens carry no `aud`, and one that does is refused.
    pub jwt_audience: Option<String>,
    pub jwt_subject: JwtSubject,
    /// Accept tokens without `kid` signed HS256 with `jwt_secret` (those the replaced
    /// service minted), checked as `crypto::jwt::KeyRing::verify_unkeyed` says.
    pub accept_unkeyed: bool,
    /// Longest a token without `kid` may still have to live (`exp` - now): one minted
    /// to last for years is refused.
    pub unkeyed_max_lifetime: Duration,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    /// Clock skew tolerated on exp/nbf.
    pub jwt_leeway: Duration,
    /// Longest lifetime a temporary token may be given.
    pub temporary_token_max_ttl: Duration,
    /// How often each instance reloads signing keys (it also reloads on an unknown kid).
    pub key_reload_interval: Duration,
    pub token_cache_capacity: usize,
    /// How often each instance pulls revocations written by other instances.
    pub sync_interval: Duration,
    /// Longest an instance trusts a verified API key from its cache before reading the
    /// key's row again (a missed feed event must not mean "until restart").
    pub api_key_recheck: Duration,
    /// Absolute lifetime of a session (ASVS V3.3): past it, refreshing fails however
    /// recently the session was refreshed, and the user signs in again.
    pub session_max_lifetime: Duration,
    /// The same for sessions of users whose roles require MFA (never longer).
    pub session_max_lifetime_mfa: Duration,
}

/// The issuer defaults to `default_issuer`: the public URL with the base path, the
/// address clients already know us by and where discovery is served
/// (`<issuer>/.well-known/openid-configuration`).
pub(super) fn settings(s: &Sources, default_issuer: &str) -> Result<TokenSettings, ConfigError> {
    let jwt_secret = s
        .get(&["JWT_SECRET_KEY", "SECRET_KEY", "JWT_SECRET"])
        .map(|(_, v)| v.to_string());
    let jwt_algorithm = match s.get(&["JWT_ALGORITHM", "ALGORITHM"]) {
        None => SigningAlgorithm::Es256,
        Some((name, raw)) => SigningAlgorithm::parse(raw).ok_or_else(|| {
            ConfigError::new(
                name,
                format!("expected one of ES256, RS256, EdDSA, HS256, HS384, HS512, got {raw:?}"),
            )
        })?,
    };
    if jwt_algorithm.is_symmetric() {
        match &jwt_secret {
            None => {
                return Err(ConfigError::new(
                    "JWT_SECRET_KEY",
                    format!("required when JWT_ALGORITHM is {}", jwt_algorithm.name()),
                ));
            }
            Some(secret) if secret.len() < 16 => {
                return Err(ConfigError::new(
                    "JWT_SECRET_KEY",
                    "too short: use at least 32 random characters",
                ));
            }
            Some(_) => {}
        }
    }

    let accept_unkeyed = s.flag(&["JWT_ACCEPT_UNKEYED"], false)?;
    if accept_unkeyed {
        if jwt_secret.is_none() {
            return Err(ConfigError::new(
                "JWT_ACCEPT_UNKEYED",
                "needs the replaced service's HS256 secret in JWT_SECRET_KEY (tokens without a kid are checked with it)",
            ));
        }
        if matches!(jwt_algorithm, SigningAlgorithm::Hs384 | SigningAlgorithm::Hs512) {
            return Err(ConfigError::new(
                "JWT_ACCEPT_UNKEYED",
                format!(
                    "tokens without a kid are checked with JWT_SECRET_KEY as an HS256 secret, but JWT_ALGORITHM makes it an {} one",
                    jwt_algorithm.name()
                ),
            ));
        }
    }
    // `none` leaves `aud` out; an empty value is refused by `Sources::refuse_empty`.
    let jwt_audience = match s.switch(&["JWT_AUDIENCE"]) {
        Switch::Default => Some("portcullis".to_string()),
        Switch::Off => None,
        Switch::Set(_, v) => Some(v.to_string()),
    };
    let jwt_subject = s.choice(
        "JWT_SUBJECT",
        "id",
        &[("id", JwtSubject::Id), ("username", JwtSubject::Username)],
    )?;

    // The replaced services' JWT_EXPIRATION counts seconds; ours counts minutes.
    let access_token_ttl = match s.get(&["ACCESS_TOKEN_EXPIRE_MINUTES"]) {
        Some(_) => Duration::from_secs(60 * s.number(&["ACCESS_TOKEN_EXPIRE_MINUTES"], 15u64, 1, 24 * 60)?),
        None => Duration::from_secs(s.number(&["JWT_EXPIRATION"], 15 * 60u64, 10, 24 * 3600)?),
    };

    let session_days = s.number(&["SESSION_MAX_LIFETIME_DAYS"], 30u64, 1, 3650)?;
    let session_mfa_days = s.number(
        &["SESSION_MAX_LIFETIME_MFA_DAYS"],
        7u64.min(session_days),
        1,
        session_days,
    )?;

    Ok(TokenSettings {
        jwt_algorithm,
        jwt_secret,
        jwt_issuer: s.string(&["JWT_ISSUER"], default_issuer),
        jwt_audience,
        jwt_subject,
        accept_unkeyed,
        unkeyed_max_lifetime: Duration::from_secs(
            60 * s.number(&["JWT_UNKEYED_MAX_LIFETIME_MINUTES"], 60u64, 1, 30 * 24 * 60)?,
        ),
        access_token_ttl,
        refresh_token_ttl: Duration::from_secs(86_400 * s.number(&["REFRESH_TOKEN_EXPIRE_DAYS"], 7u64, 1, 365)?),
        jwt_leeway: Duration::from_secs(s.number(&["JWT_LEEWAY_SECONDS"], 30u64, 0, 300)?),
        temporary_token_max_ttl: Duration::from_secs(s.number(
            &["TEMPORARY_TOKEN_MAX_TTL_SECONDS"],
            3600u64,
            1,
            30 * 86_400,
        )?),
        key_reload_interval: Duration::from_secs(s.number(&["PORTCULLIS_KEY_RELOAD_SECONDS"], 30u64, 1, 3600)?),
        token_cache_capacity: s.number_or_off(&["TOKEN_CACHE_CAPACITY"], 10_000usize, 0, 10_000_000)?,
        sync_interval: Duration::from_millis(s.number(&["PORTCULLIS_SYNC_INTERVAL_MS"], 250u64, 20, 60_000)?),
        api_key_recheck: Duration::from_secs(s.number(&["API_KEY_RECHECK_SECONDS"], 60u64, 1, 3600)?),
        session_max_lifetime: Duration::from_secs(86_400 * session_days),
        session_max_lifetime_mfa: Duration::from_secs(86_400 * session_mfa_days),
    })
}
