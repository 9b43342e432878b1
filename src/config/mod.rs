//! Settings from the environment, a `.env` file and an optional TOML file.
//!
//! Every setting has one canonical environment name; the names the services Portcullis
//! replaces already use (`SECRET_KEY`, `JWT_SECRET`, `JWT_EXPIRATION`, ...) are accepted as
//! aliases so their deployments keep working. Values are gathered into a flat map first
//! (TOML keys are upper-cased and nested tables joined with `_`, so `[jwt] issuer = ".."`
//! is `JWT_ISSUER`), then parsed once; a bad value stops start-up with one line naming
//! the variable.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub mod names;
mod oauth;
pub mod routemap;
pub use oauth::{EndpointOverrides, OAuthSettings, ProviderKind, ProviderSettings};

/// A setting that could not be used, named as the operator wrote it.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {message}")]
pub struct ConfigError {
    pub var: String,
    pub message: String,
}

impl ConfigError {
    fn new(var: &str, message: impl Into<String>) -> Self {
        Self {
            var: var.to_string(),
            message: message.into(),
        }
    }
}

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

/// argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for HashParams {
    /// OWASP's first recommended argon2id configuration.
    fn default() -> Self {
        Self {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where the database lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseTarget {
    Sqlite(PathBuf),
    Postgres(String),
}

#[derive(Debug, Clone)]
pub struct Config {
    pub bind: SocketAddr,
    pub database: DatabaseTarget,
    pub database_max_connections: u32,
    /// Prefix for every route, e.g. `/api/v1`; empty for none.
    pub base_path: String,
    pub public_url: String,
    pub jwt_algorithm: SigningAlgorithm,
    pub jwt_secret: Option<String>,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    /// Clock skew tolerated on exp/nbf.
    pub jwt_leeway: Duration,
    pub password_min_length: usize,
    pub password_max_length: usize,
    /// Lowest acceptable zxcvbn score (0-4).
    pub password_min_score: u8,
    pub hash_params: HashParams,
    /// Password-hashing threads; more would only queue on the cores anyway.
    pub hash_concurrency: usize,
    /// Hashes that may wait for a thread; beyond this, logins get 503.
    pub hash_queue: usize,
    /// Base64 (or hex) 32-byte key for secrets at rest.
    pub master_key: Option<String>,
    pub master_key_file: PathBuf,
    pub admin_username: String,
    pub admin_email: String,
    pub admin_password: Option<String>,
    pub max_body_bytes: usize,
    pub token_cache_capacity: usize,
    /// How often each instance pulls revocations written by other instances.
    pub sync_interval: Duration,
    /// Which permission `/auth/verify` requires for a proxied method and path.
    pub verify_routes: routemap::RouteMap,
    /// Whether `/auth/verify` lets through a request no route-map entry matches.
    pub verify_default_allow: bool,
    /// Longest lifetime a temporary token may be given.
    pub temporary_token_max_ttl: Duration,
    /// How often each instance reloads signing keys (it also reloads on an unknown kid).
    pub key_reload_interval: Duration,
    pub log_format: LogFormat,
    pub lockout: LockoutPolicy,
    pub rate_limit: RateLimitSettings,
    /// Peers whose forwarding header is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The one forwarding header those proxies write.
    pub trusted_proxy_header: ForwardingHeader,
    pub cors: CorsSettings,
    /// `Strict-Transport-Security` value, when configured.
    pub hsts: Option<String>,
    pub audit_enabled: bool,
    /// How long audit records are kept; None keeps them forever.
    pub audit_retention: Option<Duration>,
    /// Request records that may wait to be written; beyond this they are dropped.
    pub audit_buffer: usize,
    pub mfa: MfaSettings,
    pub oauth: OAuthSettings,
}

/// Multi-factor policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MfaSettings {
    /// Holders of these roles (superusers count as holding `admin`) must enrol before
    /// their login yields anything but a token for enrolment.
    pub required_roles: Vec<String>,
    /// How recent a second factor sensitive admin routes demand; None turns step-up off.
    pub step_up_max_age: Option<Duration>,
    /// The issuer authenticator apps show next to the account.
    pub issuer: String,
}

/// Per-account lockout after consecutive failed logins: `threshold` failures lock the
/// account for `base`, each further failure doubles the lock up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// 0 turns lockout off.
    pub threshold: u32,
    pub base: Duration,
    pub max: Duration,
}

impl LockoutPolicy {
    /// How long the account stays locked after its `failures`-th consecutive failure.
    pub fn lock_for(&self, failures: u32) -> Option<Duration> {
        if self.threshold == 0 || failures < self.threshold {
            return None;
        }
        let doublings = (failures - self.threshold).min(32);
        let secs = self.base.as_secs().saturating_mul(1u64 << doublings);
        Some(Duration::from_secs(secs).min(self.max))
    }
}

/// Per-client-IP token buckets on the routes that take passwords or mint tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitSettings {
    /// Sustained requests per minute per IP; 0 turns the limit off.
    pub per_minute: u32,
    pub burst: u32,
    /// Paths (as in the route table) to limit instead of the table's defaults.
    pub routes: Option<Vec<String>>,
}

/// Which header trusted proxies record the client address in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ForwardingHeader {
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=...`.
    Forwarded,
}

/// Cross-origin access for browser apps; off unless origins are listed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CorsSettings {
    /// Exact origins (`https://app.example.com`); `*` alone allows any origin.
    pub origins: Vec<String>,
    pub allow_credentials: bool,
}

/// A flat, upper-cased view of every source, later sources winning.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    values: HashMap<String, String>,
}

impl Sources {
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: Into<String>,
    {
        let mut s = Self::default();
        for (k, v) in pairs {
            s.set(k.as_ref(), v.into());
        }
        s
    }

    pub fn set(&mut self, key: &str, value: String) {
        self.values.insert(key.to_ascii_uppercase(), value);
    }

    /// Reads the process environment, after loading `.env` from the working directory
    /// (without overriding variables already set) and the TOML file named by
    /// `PORTCULLIS_CONFIG` or `config_file`.
    pub fn from_environment(config_file: Option<&Path>) -> Result<Self, ConfigError> {
        let _ = dotenvy::dotenv();
        let mut s = Self::default();
        let file = config_file
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("PORTCULLIS_CONFIG").map(PathBuf::from));
        if let Some(path) = file {
            s.merge_toml_file(&path)?;
        }
        for (k, v) in std::env::vars() {
            s.set(&k, v);
        }
        Ok(s)
    }

    pub fn merge_toml_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new("PORTCULLIS_CONFIG", format!("cannot read {}: {e}", path.display())))?;
        self.merge_toml_str(&text)
            .map_err(|e| ConfigError::new("PORTCULLIS_CONFIG", format!("{}: {e}", path.display())))
    }

    pub fn merge_toml_str(&mut self, text: &str) -> Result<(), String> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.message().to_string())?;
        self.flatten("", &table);
        Ok(())
    }

    fn flatten(&mut self, prefix: &str, table: &toml::Table) {
        for (k, v) in table {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}_{k}")
            };
            match v {
                toml::Value::Table(t) => self.flatten(&key, t),
                toml::Value::String(s) => self.set(&key, s.clone()),
                toml::Value::Array(items) if items.iter().all(|i| i.is_table()) && !items.is_empty() => {
                    // e.g. [[verify.routes]] method/path/permission -> "GET /x perm; ..."
                    let entries: Vec<String> = items
                        .iter()
                        .filter_map(|i| i.as_table())
                        .map(|t| {
                            ["method", "path", "permission"]
                                .iter()
                                .map(|k| t.get(*k).and_then(|v| v.as_str()).unwrap_or("*"))
                                .collect::<Vec<_>>()
                                .join(" ")
                        })
                        .collect();
                    self.set(&key, entries.join("; "));
                }
                toml::Value::Array(items) => {
                    let joined: Vec<String> = items
                        .iter()
                        .map(|i| match i {
                            toml::Value::String(s) => s.clone(),
                            other => other.to_string(),
                        })
                        .collect();
                    self.set(&key, joined.join(","));
                }
                other => self.set(&key, other.to_string()),
            }
        }
    }

    /// The first non-empty value among `names`, with the name it was found under.
    fn get<'a>(&'a self, names: &[&'a str]) -> Option<(&'a str, &'a str)> {
        names.iter().find_map(|n| {
            self.values
                .get(*n)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
                .map(|v| (*n, v))
        })
    }

    fn string(&self, names: &[&str], default: &str) -> String {
        self.get(names)
            .map(|(_, v)| v.to_string())
            .unwrap_or_else(|| default.to_string())
    }

    fn flag(&self, names: &[&str], default: bool) -> Result<bool, ConfigError> {
        match self.get(names) {
            None => Ok(default),
            Some((name, raw)) => match raw.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => Err(ConfigError::new(name, format!("expected true or false, got {raw:?}"))),
            },
        }
    }

    fn number<T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy>(
        &self,
        names: &[&str],
        default: T,
        min: T,
        max: T,
    ) -> Result<T, ConfigError> {
        match self.get(names) {
            None => Ok(default),
            Some((name, raw)) => {
                let v: T = raw
                    .parse()
                    .map_err(|_| ConfigError::new(name, format!("expected a whole number, got {raw:?}")))?;
                if v < min || v > max {
                    return Err(ConfigError::new(
                        name,
                        format!("must be between {min} and {max}, got {v}"),
                    ));
                }
                Ok(v)
            }
        }
    }
}

impl Config {
    /// Parses and checks every setting.
    pub fn from_sources(s: &Sources) -> Result<Self, ConfigError> {
        let bind_raw = s.string(&["PORTCULLIS_BIND"], "127.0.0.1:8000");
        let bind: SocketAddr = bind_raw.parse().map_err(|_| {
            ConfigError::new(
                "PORTCULLIS_BIND",
                format!("expected an address like 127.0.0.1:8000, got {bind_raw:?}"),
            )
        })?;

        let database = parse_database_url(&s.string(&["DATABASE_URL"], "sqlite://portcullis.db"))?;

        let base_path = s.string(&["PORTCULLIS_BASE_PATH", "BASE_PATH"], "");
        let base_path = base_path.trim_end_matches('/').to_string();
        if !base_path.is_empty()
            && (!base_path.starts_with('/')
                || !base_path[1..]
                    .split('/')
                    .all(|seg| !seg.is_empty() && seg.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))))
        {
            return Err(ConfigError::new(
                "PORTCULLIS_BASE_PATH",
                format!("expected a path like /api/v1, got {base_path:?}"),
            ));
        }

        let public_url = s
            .string(&["PORTCULLIS_PUBLIC_URL"], &format!("http://{bind}"))
            .trim_end_matches('/')
            .to_string();
        if !(public_url.starts_with("http://") || public_url.starts_with("https://")) {
            return Err(ConfigError::new(
                "PORTCULLIS_PUBLIC_URL",
                format!("expected an http(s) URL, got {public_url:?}"),
            ));
        }

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

        let access_token_ttl = match s.get(&["ACCESS_TOKEN_EXPIRE_MINUTES"]) {
            Some(_) => Duration::from_secs(60 * s.number(&["ACCESS_TOKEN_EXPIRE_MINUTES"], 15u64, 1, 24 * 60)?),
            None => Duration::from_secs(s.number(&["JWT_EXPIRATION"], 15 * 60u64, 10, 24 * 3600)?),
        };
        let refresh_token_ttl = Duration::from_secs(86_400 * s.number(&["REFRESH_TOKEN_EXPIRE_DAYS"], 7u64, 1, 365)?);

        let password_min_length = s.number(&["PASSWORD_MIN_LENGTH"], 8usize, 1, 128)?;
        let password_max_length = s.number(&["PASSWORD_MAX_LENGTH"], 128usize, password_min_length, 1024)?;

        let defaults = HashParams::default();
        let hash_params = HashParams {
            memory_kib: s.number(&["PASSWORD_HASH_MEMORY_KIB"], defaults.memory_kib, 8, 4 * 1024 * 1024)?,
            iterations: s.number(&["PASSWORD_HASH_ITERATIONS"], defaults.iterations, 1, 100)?,
            parallelism: s.number(&["PASSWORD_HASH_PARALLELISM"], defaults.parallelism, 1, 64)?,
        };
        if hash_params.memory_kib < 8 * hash_params.parallelism {
            return Err(ConfigError::new(
                "PASSWORD_HASH_MEMORY_KIB",
                "must be at least 8 KiB per lane (PASSWORD_HASH_PARALLELISM)",
            ));
        }
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);

        let log_format = match s
            .string(&["PORTCULLIS_LOG_FORMAT"], "text")
            .to_ascii_lowercase()
            .as_str()
        {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(ConfigError::new(
                    "PORTCULLIS_LOG_FORMAT",
                    format!("expected text or json, got {other:?}"),
                ));
            }
        };

        let master_key_file = match s.get(&["PORTCULLIS_MASTER_KEY_FILE"]) {
            Some((_, v)) => PathBuf::from(v),
            None => match &database {
                DatabaseTarget::Sqlite(path) => {
                    let mut p = path.clone().into_os_string();
                    p.push(".key");
                    PathBuf::from(p)
                }
                DatabaseTarget::Postgres(_) => PathBuf::from("portcullis.key"),
            },
        };

        let lockout_base = Duration::from_secs(s.number(&["LOGIN_LOCKOUT_SECONDS"], 60u64, 1, 86_400)?);
        let lockout = LockoutPolicy {
            threshold: s.number(&["LOGIN_LOCKOUT_THRESHOLD"], 5u32, 0, 1000)?,
            base: lockout_base,
            max: Duration::from_secs(s.number(
                &["LOGIN_LOCKOUT_MAX_SECONDS"],
                3600u64.max(lockout_base.as_secs()),
                lockout_base.as_secs(),
                30 * 86_400,
            )?),
        };
        let per_minute = s.number(&["RATE_LIMIT_PER_IP_PER_MINUTE"], 300u32, 0, 1_000_000)?;
        let rate_limit = RateLimitSettings {
            per_minute,
            burst: s.number(&["RATE_LIMIT_BURST"], per_minute.clamp(1, 60), 1, 1_000_000)?,
            routes: s
                .get(&["RATE_LIMIT_ROUTES"])
                .map(|(_, v)| split_list(v).map(str::to_string).collect()),
        };
        let trusted_proxies = split_list(&s.string(&["TRUSTED_PROXIES"], ""))
            .map(|item| {
                item.parse::<ipnet::IpNet>()
                    .or_else(|_| item.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        ConfigError::new(
                            "TRUSTED_PROXIES",
                            format!("expected addresses or CIDR ranges like 10.0.0.0/8, got {item:?}"),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let trusted_proxy_header = match s
            .string(&["TRUSTED_PROXY_HEADER"], "x-forwarded-for")
            .to_ascii_lowercase()
            .as_str()
        {
            "x-forwarded-for" => ForwardingHeader::XForwardedFor,
            "forwarded" => ForwardingHeader::Forwarded,
            other => {
                return Err(ConfigError::new(
                    "TRUSTED_PROXY_HEADER",
                    format!("expected x-forwarded-for or forwarded, got {other:?}"),
                ));
            }
        };
        let cors = CorsSettings {
            origins: split_list(&s.string(&["CORS_ALLOWED_ORIGINS", "CORS_ORIGINS"], ""))
                .map(|o| o.trim_end_matches('/').to_string())
                .collect(),
            allow_credentials: s.flag(&["CORS_ALLOW_CREDENTIALS"], false)?,
        };
        for origin in &cors.origins {
            let host = origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"));
            let valid = origin == "*"
                || host.is_some_and(|h| {
                    !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
                });
            if !valid {
                return Err(ConfigError::new(
                    "CORS_ALLOWED_ORIGINS",
                    format!("expected origins like https://app.example.com or *, got {origin:?}"),
                ));
            }
        }
        if cors.origins.iter().any(|o| o == "*") && (cors.origins.len() > 1 || cors.allow_credentials) {
            return Err(ConfigError::new(
                "CORS_ALLOWED_ORIGINS",
                "* must stand alone and cannot be combined with CORS_ALLOW_CREDENTIALS",
            ));
        }
        let hsts_max_age = s.number(&["HSTS_MAX_AGE_SECONDS"], 0u64, 0, 2 * 365 * 86_400)?;
        let hsts_subdomains = if s.flag(&["HSTS_INCLUDE_SUBDOMAINS"], false)? {
            "; includeSubDomains"
        } else {
            ""
        };
        let hsts = (hsts_max_age > 0).then(|| format!("max-age={hsts_max_age}{hsts_subdomains}"));

        let audit_retention_days = s.number(&["AUDIT_RETENTION_DAYS"], 365u64, 0, 36_500)?;
        let step_up = s.number(&["MFA_STEP_UP_MAX_AGE_SECONDS"], 900u64, 0, 86_400)?;
        let mfa = MfaSettings {
            // `none` turns the requirement off (an empty value means the default).
            required_roles: split_list(&s.string(&["MFA_REQUIRED_ROLES"], "admin"))
                .filter(|r| !r.eq_ignore_ascii_case("none"))
                .map(str::to_string)
                .collect(),
            step_up_max_age: (step_up > 0).then(|| Duration::from_secs(step_up)),
            issuer: s.string(&["MFA_TOTP_ISSUER"], "Portcullis"),
        };
        if mfa.issuer.is_empty() || mfa.issuer.len() > 100 || mfa.issuer.chars().any(char::is_control) {
            return Err(ConfigError {
                var: "MFA_TOTP_ISSUER".into(),
                message: "must be 1-100 characters without control characters".into(),
            });
        }

        Ok(Config {
            audit_enabled: s.flag(&["ENABLE_AUDIT_LOGGING", "AUDIT_ENABLED"], true)?,
            audit_retention: (audit_retention_days > 0).then(|| Duration::from_secs(86_400 * audit_retention_days)),
            audit_buffer: s.number(&["AUDIT_BUFFER"], 10_000usize, 1, 10_000_000)?,
            mfa,
            oauth: oauth::settings(s)?,
            bind,
            database,
            database_max_connections: s.number(&["DATABASE_MAX_CONNECTIONS"], 10u32, 1, 1000)?,
            base_path,
            jwt_issuer: s.string(&["JWT_ISSUER"], &public_url),
            public_url,
            jwt_algorithm,
            jwt_secret,
            jwt_audience: s.string(&["JWT_AUDIENCE"], "portcullis"),
            access_token_ttl,
            refresh_token_ttl,
            jwt_leeway: Duration::from_secs(s.number(&["JWT_LEEWAY_SECONDS"], 30u64, 0, 300)?),
            password_min_length,
            password_max_length,
            password_min_score: s.number(&["PASSWORD_MIN_SCORE"], 2u8, 0, 4)?,
            hash_params,
            hash_concurrency: s.number(&["PASSWORD_HASH_CONCURRENCY"], cores, 1, 256)?,
            hash_queue: s.number(&["PASSWORD_HASH_QUEUE"], 256usize, 1, 100_000)?,
            master_key: s.get(&["PORTCULLIS_MASTER_KEY"]).map(|(_, v)| v.to_string()),
            master_key_file,
            admin_username: s.string(&["PORTCULLIS_ADMIN_USERNAME"], "admin"),
            admin_email: s.string(&["PORTCULLIS_ADMIN_EMAIL"], "admin@portcullis.local"),
            admin_password: s.get(&["PORTCULLIS_ADMIN_PASSWORD"]).map(|(_, v)| v.to_string()),
            max_body_bytes: s.number(&["PORTCULLIS_MAX_BODY_BYTES"], 64 * 1024usize, 1024, 16 * 1024 * 1024)?,
            token_cache_capacity: s.number(&["TOKEN_CACHE_CAPACITY"], 10_000usize, 0, 10_000_000)?,
            sync_interval: Duration::from_millis(s.number(&["PORTCULLIS_SYNC_INTERVAL_MS"], 250u64, 20, 60_000)?),
            verify_routes: routemap::RouteMap::parse(&s.string(&["VERIFY_ROUTES"], ""))
                .map_err(|e| ConfigError::new("VERIFY_ROUTES", e))?,
            verify_default_allow: match s.string(&["VERIFY_DEFAULT"], "allow").to_ascii_lowercase().as_str() {
                "allow" => true,
                "deny" => false,
                other => {
                    return Err(ConfigError::new(
                        "VERIFY_DEFAULT",
                        format!("expected allow or deny, got {other:?}"),
                    ));
                }
            },
            temporary_token_max_ttl: Duration::from_secs(s.number(
                &["TEMPORARY_TOKEN_MAX_TTL_SECONDS"],
                3600u64,
                1,
                30 * 86_400,
            )?),
            key_reload_interval: Duration::from_secs(s.number(&["PORTCULLIS_KEY_RELOAD_SECONDS"], 30u64, 1, 3600)?),
            log_format,
            lockout,
            rate_limit,
            trusted_proxies,
            trusted_proxy_header,
            cors,
            hsts,
        })
    }

    /// The path a route is served at, with the base path in front.
    pub fn path(&self, route: &str) -> String {
        format!("{}{}", self.base_path, route)
    }

    /// The absolute URL of a route, for discovery documents.
    pub fn url(&self, route: &str) -> String {
        format!("{}{}", self.public_url, self.path(route))
    }
}

/// Accepts `sqlite://file`, `sqlite:file`, `postgres://` and `postgresql://`, and the
/// SQLAlchemy-style `postgresql+psycopg2://` the replaced services wrote.
/// Items of a comma-separated list, trimmed, empty ones dropped.
fn split_list(raw: &str) -> impl Iterator<Item = &str> {
    raw.split(',').map(str::trim).filter(|i| !i.is_empty())
}

fn parse_database_url(raw: &str) -> Result<DatabaseTarget, ConfigError> {
    let err = |m: &str| {
        ConfigError::new(
            "DATABASE_URL",
            format!("{m}, got a value starting {:?}", redact_url(raw)),
        )
    };
    if let Some(rest) = raw.strip_prefix("sqlite://").or_else(|| raw.strip_prefix("sqlite:")) {
        let path = rest.split('?').next().unwrap_or_default();
        if path.is_empty() || path == ":memory:" {
            return Err(err("expected sqlite://PATH to a file"));
        }
        return Ok(DatabaseTarget::Sqlite(PathBuf::from(path)));
    }
    let (scheme, rest) = raw
        .split_once("://")
        .ok_or_else(|| err("expected sqlite:// or postgres:// URL"))?;
    let base_scheme = scheme.split('+').next().unwrap_or_default();
    match base_scheme {
        "postgres" | "postgresql" => Ok(DatabaseTarget::Postgres(format!("postgres://{rest}"))),
        _ => Err(err("expected sqlite:// or postgres:// URL")),
    }
}

/// The scheme and host of a URL, never its password, for error messages.
fn redact_url(raw: &str) -> String {
    match raw.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.rsplit_once('@').map(|(_, h)| h).unwrap_or(rest);
            format!("{scheme}://{}", host.split(['/', '?']).next().unwrap_or_default())
        }
        None => raw.chars().take(10).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_sources(&Sources::from_pairs(pairs.iter().copied()))
    }

    #[test]
    fn defaults_are_sane() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.bind.to_string(), "127.0.0.1:8000");
        assert_eq!(c.database, DatabaseTarget::Sqlite("portcullis.db".into()));
        assert_eq!(c.jwt_algorithm, SigningAlgorithm::Es256);
        assert_eq!(c.access_token_ttl, Duration::from_secs(900));
        assert_eq!(c.master_key_file, PathBuf::from("portcullis.db.key"));
    }

    #[test]
    fn aliases_are_accepted() {
        let c = cfg(&[
            ("SECRET_KEY", "0123456789abcdef0123456789abcdef"),
            ("JWT_ALGORITHM", "HS256"),
            ("JWT_EXPIRATION", "3600"),
        ])
        .unwrap();
        assert_eq!(c.jwt_algorithm, SigningAlgorithm::Hs256);
        assert_eq!(c.access_token_ttl, Duration::from_secs(3600));
        let c = cfg(&[
            ("JWT_SECRET", "0123456789abcdef0123456789abcdef"),
            ("ALGORITHM", "hs512"),
        ])
        .unwrap();
        assert_eq!(c.jwt_algorithm, SigningAlgorithm::Hs512);
    }

    #[test]
    fn bad_values_name_the_variable() {
        let e = cfg(&[("ACCESS_TOKEN_EXPIRE_MINUTES", "soon")]).unwrap_err();
        assert_eq!(e.var, "ACCESS_TOKEN_EXPIRE_MINUTES");
        assert!(e.to_string().contains("soon"));
        let e = cfg(&[("JWT_ALGORITHM", "none")]).unwrap_err();
        assert_eq!(e.var, "JWT_ALGORITHM");
        let e = cfg(&[("JWT_ALGORITHM", "HS256")]).unwrap_err();
        assert_eq!(e.var, "JWT_SECRET_KEY");
        let e = cfg(&[("DATABASE_URL", "mysql://root:hunter2@db/x")]).unwrap_err();
        assert_eq!(e.var, "DATABASE_URL");
        assert!(!e.to_string().contains("hunter2"));
        let e = cfg(&[("PORTCULLIS_BASE_PATH", "api/v1")]).unwrap_err();
        assert_eq!(e.var, "PORTCULLIS_BASE_PATH");
        for (var, value) in [
            ("TRUSTED_PROXIES", "10.0.0.0/8, not-an-address"),
            ("CORS_ALLOWED_ORIGINS", "https://app.example.com/path"),
            ("CORS_ALLOWED_ORIGINS", "*, https://app.example.com"),
            ("CORS_ALLOWED_ORIGINS", "http://é.example"),
            ("CORS_ALLOWED_ORIGINS", "http://"),
            ("TRUSTED_PROXY_HEADER", "x-real-ip"),
            ("CORS_ALLOW_CREDENTIALS", "maybe"),
            ("LOGIN_LOCKOUT_THRESHOLD", "-1"),
        ] {
            let e = cfg(&[(var, value)]).unwrap_err();
            assert_eq!(e.var, var, "{value}");
        }
    }

    #[test]
    fn hardening_settings() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.lockout.threshold, 5);
        assert_eq!(c.rate_limit.per_minute, 300);
        assert!(c.trusted_proxies.is_empty() && c.cors.origins.is_empty() && c.hsts.is_none());
        let c = cfg(&[
            ("TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.7,::1"),
            (
                "CORS_ALLOWED_ORIGINS",
                "https://app.example.com/, http://localhost:3000",
            ),
            ("HSTS_MAX_AGE_SECONDS", "31536000"),
            ("HSTS_INCLUDE_SUBDOMAINS", "true"),
        ])
        .unwrap();
        assert_eq!(c.trusted_proxies.len(), 3);
        assert_eq!(c.cors.origins, ["https://app.example.com", "http://localhost:3000"]);
        assert_eq!(c.hsts.as_deref(), Some("max-age=31536000; includeSubDomains"));
        // 5 failures lock for a minute, each further one doubles it, up to an hour.
        let p = c.lockout;
        assert_eq!(p.lock_for(4), None);
        assert_eq!(p.lock_for(5), Some(Duration::from_secs(60)));
        assert_eq!(p.lock_for(6), Some(Duration::from_secs(120)));
        assert_eq!(p.lock_for(11), Some(Duration::from_secs(3600)));
        assert_eq!(p.lock_for(500), Some(Duration::from_secs(3600)));
        let off = cfg(&[("LOGIN_LOCKOUT_THRESHOLD", "0")]).unwrap().lockout;
        assert_eq!(off.lock_for(1000), None);
    }

    #[test]
    fn postgres_urls_and_base_path() {
        let c = cfg(&[
            ("DATABASE_URL", "postgresql+psycopg2://u:p@localhost:5432/db"),
            ("PORTCULLIS_BASE_PATH", "/api/v1/"),
        ])
        .unwrap();
        assert_eq!(
            c.database,
            DatabaseTarget::Postgres("postgres://u:p@localhost:5432/db".into())
        );
        assert_eq!(c.path("/auth/login"), "/api/v1/auth/login");
    }

    #[test]
    fn verify_routes_from_toml_tables() {
        let mut s = Sources::default();
        s.merge_toml_str("[[verify.routes]]\nmethod = \"GET\"\npath = \"/projects/**\"\npermission = \"projects:read\"\n[[verify.routes]]\nmethod = \"POST\"\npath = \"/projects\"\npermission = \"projects:create\"\n").unwrap();
        let c = Config::from_sources(&s).unwrap();
        assert_eq!(
            c.verify_routes.permission_for("POST", "/projects"),
            Some("projects:create")
        );
        assert_eq!(
            c.verify_routes.permission_for("GET", "/projects/1"),
            Some("projects:read")
        );
        let e = cfg(&[("VERIFY_ROUTES", "GET nowhere perm")]).unwrap_err();
        assert_eq!(e.var, "VERIFY_ROUTES");
    }

    #[test]
    fn toml_is_flattened_and_env_wins() {
        let mut s = Sources::default();
        s.merge_toml_str("password_min_length = 12\n[jwt]\nissuer = \"https://id.example\"\naudience = \"a\"\n")
            .unwrap();
        s.set("JWT_AUDIENCE", "b".into());
        let c = Config::from_sources(&s).unwrap();
        assert_eq!(c.jwt_issuer, "https://id.example");
        assert_eq!(c.jwt_audience, "b");
        assert_eq!(c.password_min_length, 12);
    }
}
