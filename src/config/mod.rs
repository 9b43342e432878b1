//! Settings from the environment, a `.env` file and an optional TOML file.
//!
//! Every setting has one canonical environment name; the names the services Portcullis
//! replaces already use (`SECRET_KEY`, `JWT_SECRET`, `JWT_EXPIRATION`, ...) are accepted as
//! aliases so their deployments keep working. Values are gathered into a flat map first
//! ([`Sources`]), then parsed once, one constructor per group of settings (a file each
//! here); a bad value stops start-up with one line naming the variable. `Config` keeps
//! the groups' fields flat, so callers need not know the grouping.
//!
//! Nothing here depends on the rest of the crate: settings are parsed before anything
//! else exists, and every other layer may read them.

mod audit;
mod bootstrap;
mod branding;
mod database;
mod edge;
mod gateway;
mod limits;
mod mfa;
pub mod names;
mod oauth;
mod pages;
mod passwords;
mod registration;
pub mod routemap;
mod server;
mod sources;
mod tokens;

pub use audit::AuditSettings;
pub use bootstrap::BootstrapSettings;
pub use branding::{Branding, LOGO_MAX_BYTES, Logo, hashed_name};
pub use database::{DatabaseSettings, DatabaseTarget};
pub use edge::{CorsSettings, EdgeSettings, ForwardingHeader};
pub use gateway::GatewaySettings;
pub use limits::{LockoutPolicy, RateLimitSettings};
pub use mfa::MfaSettings;
pub use oauth::{EndpointOverrides, OAuthSettings, ProviderKind, ProviderSettings};
pub use pages::PageSettings;
pub use passwords::{HashParams, PasswordSettings};
pub use registration::RegistrationSettings;
pub use server::{ConnectionLimits, LogFormat, ServerSettings};
pub use sources::{DEFAULT_FILE, Sources};
pub use tokens::{JwtSubject, SigningAlgorithm, TokenSettings};

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

/// Every setting, by group; each group is parsed by its own file here.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub tokens: TokenSettings,
    pub passwords: PasswordSettings,
    pub bootstrap: BootstrapSettings,
    pub edge: EdgeSettings,
    pub audit: AuditSettings,
    pub gateway: GatewaySettings,
    pub lockout: LockoutPolicy,
    pub rate_limit: RateLimitSettings,
    pub mfa: MfaSettings,
    pub oauth: OAuthSettings,
    pub pages: PageSettings,
    pub registration: RegistrationSettings,
}

impl Config {
    /// Parses and checks every setting, group by group.
    pub fn from_sources(s: &Sources) -> Result<Self, ConfigError> {
        let parsed = Self::parse(s);
        // An empty value was read as unset above; it is named first, whatever else failed.
        s.refuse_empty()?;
        parsed
    }

    fn parse(s: &Sources) -> Result<Self, ConfigError> {
        let server = server::settings(s)?;
        let database = database::settings(s)?;
        Ok(Config {
            tokens: tokens::settings(s, &format!("{}{}", server.public_url, server.base_path))?,
            passwords: passwords::settings(s)?,
            bootstrap: bootstrap::settings(s, &database.target),
            edge: edge::settings(s)?,
            audit: audit::settings(s)?,
            gateway: gateway::settings(s)?,
            lockout: limits::lockout(s)?,
            rate_limit: limits::rate_limit(s)?,
            mfa: mfa::settings(s)?,
            oauth: oauth::settings(s)?,
            pages: pages::settings(s)?,
            registration: registration::settings(s)?,
            server,
            database,
        })
    }

    /// The path a route is served at, with the base path in front.
    pub fn path(&self, route: &str) -> String {
        format!("{}{}", self.server.base_path, route)
    }

    /// The absolute URL of a route, for discovery documents.
    pub fn url(&self, route: &str) -> String {
        format!("{}{}", self.server.public_url, self.path(route))
    }
}

/// Every setting name a group reads (aliases included), for refusing unknown keys in
/// the TOML file; `key` is the one being checked, since generic OIDC providers' names
/// are the operator's own.
fn known_keys(key: &str) -> Vec<String> {
    let fixed = [
        server::KEYS,
        database::KEYS,
        tokens::KEYS,
        passwords::KEYS,
        bootstrap::KEYS,
        limits::KEYS,
        edge::KEYS,
        audit::KEYS,
        mfa::KEYS,
        gateway::KEYS,
        pages::KEYS,
        branding::KEYS,
        registration::KEYS,
    ];
    let fixed = fixed.concat().into_iter().map(str::to_string);
    fixed.chain(oauth::keys(key)).collect()
}

/// Items of a comma-separated list, trimmed, empty ones dropped.
fn split_list(raw: &str) -> impl Iterator<Item = &str> {
    raw.split(',').map(str::trim).filter(|i| !i.is_empty())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_sources(&Sources::from_pairs(pairs.iter().copied()))
    }

    #[test]
    fn defaults_are_sane() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.server.bind.to_string(), "127.0.0.1:8000");
        assert_eq!(c.database.target, DatabaseTarget::Sqlite("portcullis.db".into()));
        assert_eq!(c.tokens.jwt_algorithm, SigningAlgorithm::Es256);
        assert_eq!(c.tokens.access_token_ttl, Duration::from_secs(900));
        assert_eq!(c.bootstrap.master_key_file, PathBuf::from("portcullis.db.key"));
        assert!(c.registration.enabled, "self-registration stays on by default");
        assert_eq!(c.pages.brand, Branding::default());
    }

    #[test]
    fn aliases_are_accepted() {
        let c = cfg(&[
            ("SECRET_KEY", "0123456789abcdef0123456789abcdef"),
            ("JWT_ALGORITHM", "HS256"),
            ("JWT_EXPIRATION", "3600"),
        ])
        .unwrap();
        assert_eq!(c.tokens.jwt_algorithm, SigningAlgorithm::Hs256);
        assert_eq!(c.tokens.access_token_ttl, Duration::from_secs(3600));
        let c = cfg(&[
            ("JWT_SECRET", "0123456789abcdef0123456789abcdef"),
            ("ALGORITHM", "hs512"),
        ])
        .unwrap();
        assert_eq!(c.tokens.jwt_algorithm, SigningAlgorithm::Hs512);
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
            ("REGISTRATION_ENABLED", "maybe"),
            ("PAGES_PRIMARY_COLOR", "blue"),
            ("PAGES_LOGO", "/nonexistent/logo.png"),
            ("PAGES_LOGO", "http://cdn.example.com/logo.png"),
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
        assert!(c.edge.trusted_proxies.is_empty() && c.edge.cors.origins.is_empty() && c.edge.hsts.is_none());
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
        assert_eq!(c.edge.trusted_proxies.len(), 3);
        assert_eq!(
            c.edge.cors.origins,
            ["https://app.example.com", "http://localhost:3000"]
        );
        assert_eq!(c.edge.hsts.as_deref(), Some("max-age=31536000; includeSubDomains"));
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
            c.database.target,
            DatabaseTarget::Postgres("postgres://u:p@localhost:5432/db".into())
        );
        assert_eq!(c.path("/auth/login"), "/api/v1/auth/login");
    }

    #[test]
    fn the_issuer_defaults_to_the_public_url_with_the_base_path() {
        let c = cfg(&[
            ("PORTCULLIS_PUBLIC_URL", "https://id.example/"),
            ("PORTCULLIS_BASE_PATH", "/id/"),
        ])
        .unwrap();
        assert_eq!(c.tokens.jwt_issuer, "https://id.example/id");
        assert_eq!(
            c.url("/.well-known/openid-configuration"),
            "https://id.example/id/.well-known/openid-configuration"
        );
        let c = cfg(&[("PORTCULLIS_PUBLIC_URL", "https://id.example")]).unwrap();
        assert_eq!(c.tokens.jwt_issuer, "https://id.example");
        let c = cfg(&[("PORTCULLIS_BASE_PATH", "/id"), ("JWT_ISSUER", "https://other.example")]).unwrap();
        assert_eq!(c.tokens.jwt_issuer, "https://other.example");
    }

    #[test]
    fn verify_routes_from_toml_tables() {
        let mut s = Sources::default();
        s.merge_toml_str("[[verify.routes]]\nmethod = \"GET\"\npath = \"/projects/**\"\npermission = \"projects:read\"\n[[verify.routes]]\nmethod = \"POST\"\npath = \"/projects\"\npermission = \"projects:create\"\n").unwrap();
        let c = Config::from_sources(&s).unwrap();
        assert_eq!(
            c.gateway.routes.permission_for("POST", "/projects"),
            Some("projects:create")
        );
        assert_eq!(
            c.gateway.routes.permission_for("GET", "/projects/1"),
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
        assert_eq!(c.tokens.jwt_issuer, "https://id.example");
        assert_eq!(c.tokens.jwt_audience.as_deref(), Some("b"));
        assert_eq!(c.passwords.min_length, 12);
    }

    /// The settings for verifiers written for the replaced services (issue 27).
    #[test]
    fn subject_audience_and_unkeyed_tokens() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.tokens.jwt_subject, JwtSubject::Id);
        assert_eq!(c.tokens.jwt_audience.as_deref(), Some("portcullis"));
        assert!(!c.tokens.accept_unkeyed);
        let c = cfg(&[("JWT_SUBJECT", "Username"), ("JWT_AUDIENCE", "NONE")]).unwrap();
        assert_eq!(c.tokens.jwt_subject, JwtSubject::Username);
        assert_eq!(c.tokens.jwt_audience, None);
        assert_eq!(cfg(&[("JWT_SUBJECT", "email")]).unwrap_err().var, "JWT_SUBJECT");
        // Empty is a mistake, not "off": `none` says that.
        for empty in ["", "  "] {
            let e = cfg(&[("JWT_AUDIENCE", empty)]).unwrap_err();
            assert_eq!(e.var, "JWT_AUDIENCE");
            assert!(e.to_string().contains("none"), "{e}");
        }
        let secret = "an-old-service-secret-of-32-chars";
        for ok in [
            vec![
                ("JWT_ACCEPT_UNKEYED", "true"),
                ("JWT_ALGORITHM", "HS256"),
                ("JWT_SECRET_KEY", secret),
            ],
            vec![("JWT_ACCEPT_UNKEYED", "true"), ("SECRET_KEY", secret)],
        ] {
            assert!(cfg(&ok).unwrap().tokens.accept_unkeyed, "{ok:?}");
        }
        for bad in [
            vec![("JWT_ACCEPT_UNKEYED", "true")],
            vec![
                ("JWT_ACCEPT_UNKEYED", "true"),
                ("JWT_ALGORITHM", "HS512"),
                ("JWT_SECRET_KEY", secret),
            ],
        ] {
            let e = cfg(&bad).unwrap_err();
            assert_eq!(e.var, "JWT_ACCEPT_UNKEYED", "{bad:?}");
            assert!(e.to_string().contains("HS256"), "{e}");
        }
    }

    /// An empty value used to read as unset: `MFA_REQUIRED_ROLES=` meant `admin`,
    /// `OAUTH_MICROSOFT_TENANT=` every tenant, `PORTCULLIS_ADMIN_PASSWORD=` a random one.
    #[test]
    fn empty_values_are_refused_naming_the_setting() {
        for (var, switchable) in [
            ("JWT_AUDIENCE", true),
            ("JWT_SECRET_KEY", false),
            ("PORTCULLIS_MASTER_KEY", false),
            ("PORTCULLIS_ADMIN_PASSWORD", false),
            ("OAUTH_MICROSOFT_TENANT", false),
            ("PORTCULLIS_BASE_PATH", false),
            ("MFA_REQUIRED_ROLES", true),
            ("MFA_STEP_UP_MAX_AGE_SECONDS", true),
            ("LOGIN_LOCKOUT_THRESHOLD", true),
            ("TRUSTED_PROXIES", true),
            ("CORS_ORIGINS", true),
            ("VERIFY_ROUTES", true),
            ("OAUTH_TOKEN_COOKIE", true),
        ] {
            for empty in ["", "  "] {
                let e = cfg(&[(var, empty)]).unwrap_err();
                assert_eq!(e.var, var);
                assert!(e.message.starts_with("is empty; unset it"), "{e}");
                assert_eq!(e.message.contains("`none`"), switchable, "{e}");
            }
        }
        // From the TOML file too, and named before any other error.
        let mut s = Sources::default();
        s.merge_toml_str("[jwt]\naudience = \"\"\nalgorithm = \"HS256\"\n")
            .unwrap();
        assert_eq!(Config::from_sources(&s).unwrap_err().var, "JWT_AUDIENCE");
        // A generic provider's settings are known keys as well.
        let e = cfg(&[
            ("OAUTH_OIDC_CORP_ISSUER", "https://sso.example.com"),
            ("OAUTH_OIDC_CORP_CLIENT_SECRET", ""),
        ])
        .unwrap_err();
        assert_eq!(e.var, "OAUTH_OIDC_CORP_CLIENT_SECRET");
        // The environment holds everything else too: only settings are checked.
        cfg(&[("COLOUR", ""), ("HOSTNAME", "")]).unwrap();
    }

    #[test]
    fn none_switches_off_what_can_be_switched_off() {
        let c = cfg(&[
            ("MFA_REQUIRED_ROLES", "none"),
            ("MFA_STEP_UP_MAX_AGE_SECONDS", "None"),
            ("LOGIN_LOCKOUT_THRESHOLD", "NONE"),
            ("RATE_LIMIT_PER_IP_PER_MINUTE", "none"),
            ("RATE_LIMIT_ROUTES", "none"),
            ("HSTS_MAX_AGE_SECONDS", "none"),
            ("TOKEN_CACHE_CAPACITY", "none"),
            ("TRUSTED_PROXIES", "none"),
            ("CORS_ALLOWED_ORIGINS", "none"),
            ("VERIFY_ROUTES", "none"),
            ("OAUTH_REDIRECT_URIS", "none"),
            ("OAUTH_OKTA_ALLOWED_DOMAINS", "none"),
            ("OAUTH_TOKEN_COOKIE", "none"),
        ])
        .unwrap();
        assert!(c.mfa.required_roles.is_empty() && c.mfa.step_up_max_age.is_none());
        assert_eq!((c.lockout.threshold, c.rate_limit.per_minute), (0, 0));
        assert_eq!(c.rate_limit.routes, Some(vec![]));
        assert!(c.edge.hsts.is_none() && c.edge.trusted_proxies.is_empty() && c.edge.cors.origins.is_empty());
        assert_eq!(c.tokens.token_cache_capacity, 0);
        assert!(c.gateway.routes.is_empty() && c.gateway.default_allow);
        assert!(c.oauth.redirect_uris.is_empty() && c.oauth.okta_domains.is_empty());
        assert_eq!(c.oauth.cookie_name, None);
        // Unset, the defaults are on.
        let c = cfg(&[]).unwrap();
        assert_eq!(c.mfa.required_roles, ["admin"]);
        assert_eq!((c.lockout.threshold, c.rate_limit.per_minute), (5, 300));
        assert_eq!(c.rate_limit.routes, None);
        // Where nothing can be switched off, `none` is no number.
        let e = cfg(&[("PASSWORD_MIN_LENGTH", "none")]).unwrap_err();
        assert_eq!(e.var, "PASSWORD_MIN_LENGTH");
    }

    /// A value that lists nothing would switch the thing off without saying `none`.
    #[test]
    fn lists_of_nothing_are_refused() {
        for (var, value) in [
            ("TRUSTED_PROXIES", ","),
            ("CORS_ALLOWED_ORIGINS", " , "),
            ("RATE_LIMIT_ROUTES", ","),
            ("MFA_REQUIRED_ROLES", ","),
            ("VERIFY_ROUTES", ";"),
        ] {
            let e = cfg(&[(var, value)]).unwrap_err();
            assert_eq!(e.var, var, "{value}");
            assert!(e.message.contains("`none`"), "{e}");
        }
    }

    /// docs/configuration.md lists the settings `none` switches off; hold it to the reads.
    #[test]
    fn the_readme_lists_every_setting_none_switches_off() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md")).unwrap();
        let (_, after) = readme
            .split_once("`none` (any case)")
            .expect("the list in docs/configuration.md");
        let list = after.split("\n\n").next().unwrap_or_default();
        let s = Sources::default();
        Config::from_sources(&s).unwrap();
        for name in s.switchable.borrow().iter() {
            assert!(
                list.contains(&format!("`{name}`")),
                "{name} is missing from the list in docs/configuration.md"
            );
        }
    }

    /// The known-key lists are written beside each group's reads; hold them together.
    #[test]
    fn every_setting_read_is_a_known_key() {
        let everything = [
            ("OAUTH_GOOGLE_CLIENT_ID", "g"),
            ("OAUTH_MICROSOFT_CLIENT_ID", "m"),
            ("OAUTH_OKTA_CLIENT_ID", "o"),
            ("OAUTH_OKTA_DOMAIN", "acme.okta.com"),
            ("OAUTH_OIDC_MY_IDP_ISSUER", "https://sso.example.com"),
            ("OAUTH_OIDC_MY_IDP_CLIENT_ID", "k"),
        ];
        for pairs in [&[][..], &everything[..]] {
            let s = Sources::from_pairs(pairs.iter().copied());
            Config::from_sources(&s).unwrap();
            let asked = s.asked.borrow();
            assert_eq!(asked.contains("OAUTH_OIDC_MY_IDP_SCOPES"), !pairs.is_empty());
            for name in asked.iter() {
                assert!(known_keys(name).contains(name), "{name} is read but not a known key");
            }
        }
    }

    #[test]
    fn every_known_key_is_accepted_in_the_toml_file() {
        let flat: String = known_keys("")
            .iter()
            .map(|k| format!("{} = \"x\"\n", k.to_ascii_lowercase()))
            .collect();
        Sources::default().merge_toml_str(&flat).unwrap();
        let mut s = Sources::default();
        s.merge_toml_str(
            "[jwt]\nissuer = \"https://id.example\"\n\
             [oauth.oidc.my_idp]\nissuer = \"https://sso.example.com\"\nclient_id = \"k\"\n\
             [[verify.routes]]\nmethod = \"GET\"\npath = \"/x\"\npermission = \"x:read\"\n",
        )
        .unwrap();
        let c = Config::from_sources(&s).unwrap();
        assert_eq!(c.tokens.jwt_issuer, "https://id.example");
        assert_eq!(c.oauth.provider("my_idp").unwrap().client_id, "k");
        assert_eq!(c.gateway.routes.permission_for("GET", "/x"), Some("x:read"));
    }

    #[test]
    fn unknown_toml_keys_are_named_with_the_nearest_known_one() {
        let refused = |text: &str| Sources::default().merge_toml_str(text).unwrap_err();
        assert_eq!(
            refused("acess_token_expire_minutes = 5\n"),
            "unknown setting `acess_token_expire_minutes`; did you mean `access_token_expire_minutes`?"
        );
        assert_eq!(
            refused("[jwt]\nisuer = \"https://id.example\"\n"),
            "unknown setting `jwt.isuer`; did you mean `jwt.issuer`?"
        );
        assert_eq!(
            refused("[oauth.oidc.corp]\nclient_idd = \"k\"\n"),
            "unknown setting `oauth.oidc.corp.client_idd`; did you mean `oauth.oidc.corp.client_id`?"
        );
        assert_eq!(
            refused("[password]\nminimum_length = 10\n"),
            "unknown setting `password.minimum_length`; did you mean `password.min_length`?"
        );
        // A misspelt field would otherwise widen the rule to any method.
        assert_eq!(
            refused("[[verify.routes]]\nmethd = \"GET\"\npath = \"/x\"\npermission = \"x:read\"\n"),
            "unknown setting `verify.routes.methd`; did you mean `verify.routes.method`?"
        );
        assert_eq!(refused("colour = \"red\"\n"), "unknown setting `colour`");
        // The environment holds everything else too: its unknown names are not refused.
        cfg(&[("COLOUR", "red"), ("ACESS_TOKEN_EXPIRE_MINUTES", "5")]).unwrap();
    }

    #[test]
    fn a_toml_file_with_an_unknown_key_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("portcullis.toml");
        std::fs::write(&path, "jwt_audiense = \"a\"\n").unwrap();
        let e = Sources::default().merge_toml_file(&path).unwrap_err();
        assert_eq!(e.var, "PORTCULLIS_CONFIG");
        assert_eq!(
            e.message,
            format!(
                "{}: unknown setting `jwt_audiense`; did you mean `jwt_audience`?",
                path.display()
            )
        );
    }
}
