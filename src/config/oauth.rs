//! Upstream identity providers: the built-in `google`, `microsoft` and `okta`, and any
//! number of generic OpenID Connect providers (`OAUTH_OIDC_<NAME>_ISSUER`, ...).
//!
//! A provider is configured when its client id is set. Each built-in provider's
//! issuer (the base of its discovery document) and every endpoint can be overridden,
//! so tests and private deployments can point them anywhere.

use std::time::Duration;

use super::sources::Switch;
use super::{ConfigError, Sources, split_list};

/// The settings every provider takes, after its `OAUTH_<NAME>_` prefix.
const PROVIDER_KEYS: [&str; 10] = [
    "CLIENT_ID",
    "CLIENT_SECRET",
    "ISSUER",
    "SCOPES",
    "AUTHORIZATION_ENDPOINT",
    "TOKEN_ENDPOINT",
    "USERINFO_ENDPOINT",
    "JWKS_URI",
    "INTROSPECTION_ENDPOINT",
    "TOKENINFO_ENDPOINT",
];

/// The group's settings that are not per provider.
const KEYS: &[&str] = &[
    "OAUTH_MICROSOFT_TENANT",
    "OAUTH_OKTA_DOMAIN",
    "OAUTH_OKTA_ALLOWED_DOMAINS",
    "OAUTH_REDIRECT_URIS",
    "OAUTH_ALLOW_SIGNUP",
    "OAUTH_LINK_VERIFIED_EMAIL",
    "OAUTH_HTTP_TIMEOUT_MS",
    "OAUTH_TOKEN_COOKIE",
];

/// The group's known setting names, including those of any generic provider `key`
/// could belong to: its NAME is the operator's, and may itself contain `_`, so every
/// split of `key` after `OAUTH_OIDC_` counts.
pub(super) fn keys(key: &str) -> Vec<String> {
    let generic = key.strip_prefix("OAUTH_OIDC_").map(|rest| {
        let splits = rest.match_indices('_').map(|(i, _)| &rest[..i]);
        splits.chain([rest]).map(|name| format!("OAUTH_OIDC_{name}"))
    });
    let prefixes = ["OAUTH_GOOGLE", "OAUTH_MICROSOFT", "OAUTH_OKTA"]
        .map(String::from)
        .into_iter()
        .chain(generic.into_iter().flatten());
    let per_provider = prefixes.flat_map(|p| PROVIDER_KEYS.map(|k| format!("{p}_{k}")));
    KEYS.iter().map(|k| k.to_string()).chain(per_provider).collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderKind {
    Google,
    Microsoft,
    Okta,
    Generic,
}

/// Endpoints that replace what discovery says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointOverrides {
    pub authorization: Option<String>,
    pub token: Option<String>,
    pub userinfo: Option<String>,
    pub jwks_uri: Option<String>,
    /// RFC 7662 token introspection, which says whom an access token was issued to.
    pub introspection: Option<String>,
    /// Google's tokeninfo, its stand-in for introspection.
    pub tokeninfo: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderSettings {
    /// As in routes: `google`, `microsoft`, `okta`, or a generic provider's lower-case NAME.
    pub name: String,
    pub kind: ProviderKind,
    /// Where `/.well-known/openid-configuration` lives, and what ID tokens' `iss` is
    /// (Microsoft's multi-tenant `{tenantid}` placeholder is filled from `tid`).
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    pub scopes: Vec<String>,
    pub endpoints: EndpointOverrides,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthSettings {
    pub providers: Vec<ProviderSettings>,
    /// App URLs the redirect flow may return to (exact match).
    pub redirect_uris: Vec<String>,
    /// First sign-in with a provider creates an account.
    pub allow_signup: bool,
    /// An existing account is linked by email when the provider says it is verified.
    pub link_verified_email: bool,
    /// Okta domains (issuer `https://<domain>`) or full issuer URLs (a custom
    /// authorization server) a token exchange may name per request (`okta_domain`).
    pub okta_domains: Vec<String>,
    /// Bound on every call to a provider.
    pub http_timeout: Duration,
    /// Set: the redirect flow hands tokens over in this HttpOnly cookie instead of
    /// the URL fragment.
    pub cookie_name: Option<String>,
}

impl OAuthSettings {
    pub fn provider(&self, name: &str) -> Option<&ProviderSettings> {
        self.providers.iter().find(|p| p.name == name)
    }
}

/// An https URL; plain http only to this machine (client secrets and tokens travel
/// on these connections).
fn https_url(var: &str, value: &str) -> Result<String, ConfigError> {
    let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"]
        .iter()
        .any(|p| {
            value
                .strip_prefix(p)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '/']))
        });
    if value.starts_with("https://") || loopback {
        Ok(value.trim_end_matches('/').to_string())
    } else {
        Err(ConfigError::new(
            var,
            format!("expected an https URL (http only for 127.0.0.1 or localhost), got {value:?}"),
        ))
    }
}

fn provider(
    s: &Sources,
    prefix: &str,
    name: &str,
    kind: ProviderKind,
    default_issuer: Option<String>,
) -> Result<Option<ProviderSettings>, ConfigError> {
    let var = |suffix: &str| format!("{prefix}_{suffix}");
    let get = |suffix: &str| s.get(&[var(suffix).as_str()]).map(|(_, v)| v.to_string());
    let Some(client_id) = get("CLIENT_ID") else {
        return Ok(None);
    };
    let issuer = match get("ISSUER").or(default_issuer) {
        Some(i) => https_url(&var("ISSUER"), &i)?,
        None => {
            return Err(ConfigError::new(
                &var("ISSUER"),
                format!("{name}: the issuer URL is required"),
            ));
        }
    };
    let endpoint = |suffix: &str| -> Result<Option<String>, ConfigError> {
        get(suffix).map(|u| https_url(&var(suffix), &u)).transpose()
    };
    let scopes: Vec<String> = get("SCOPES")
        .map(|v| split_list(&v.replace(' ', ",")).map(str::to_string).collect())
        .unwrap_or_else(|| ["openid", "email", "profile"].map(String::from).to_vec());
    if !scopes.iter().any(|s| s == "openid") {
        return Err(ConfigError::new(&var("SCOPES"), "must include openid"));
    }
    Ok(Some(ProviderSettings {
        name: name.to_string(),
        kind,
        issuer,
        client_id,
        client_secret: get("CLIENT_SECRET"),
        scopes,
        endpoints: EndpointOverrides {
            authorization: endpoint("AUTHORIZATION_ENDPOINT")?,
            token: endpoint("TOKEN_ENDPOINT")?,
            userinfo: endpoint("USERINFO_ENDPOINT")?,
            jwks_uri: endpoint("JWKS_URI")?,
            introspection: endpoint("INTROSPECTION_ENDPOINT")?,
            tokeninfo: endpoint("TOKENINFO_ENDPOINT")?,
        },
    }))
}

pub(super) fn settings(s: &Sources) -> Result<OAuthSettings, ConfigError> {
    let mut providers = Vec::new();
    providers.extend(provider(
        s,
        "OAUTH_GOOGLE",
        "google",
        ProviderKind::Google,
        Some("https://accounts.google.com".into()),
    )?);
    let tenant = s.string(&["OAUTH_MICROSOFT_TENANT"], "common");
    if !tenant.chars().all(|c| c.is_ascii_alphanumeric() || "-.".contains(c)) {
        return Err(ConfigError::new(
            "OAUTH_MICROSOFT_TENANT",
            "expected a tenant id or name",
        ));
    }
    providers.extend(provider(
        s,
        "OAUTH_MICROSOFT",
        "microsoft",
        ProviderKind::Microsoft,
        Some(format!("https://login.microsoftonline.com/{tenant}/v2.0")),
    )?);
    let okta_domain = s.get(&["OAUTH_OKTA_DOMAIN"]).map(|(_, v)| v.to_string());
    providers.extend(provider(
        s,
        "OAUTH_OKTA",
        "okta",
        ProviderKind::Okta,
        okta_domain.as_ref().map(|d| format!("https://{d}")),
    )?);
    // Generic providers: every OAUTH_OIDC_<NAME>_ISSUER names one.
    let mut names: Vec<String> = s
        .names()
        .filter_map(|k| {
            k.strip_prefix("OAUTH_OIDC_")?
                .strip_suffix("_ISSUER")
                .map(str::to_string)
        })
        .collect();
    names.sort();
    for upper in names {
        let name = upper.to_ascii_lowercase();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(ConfigError::new(
                &format!("OAUTH_OIDC_{upper}_ISSUER"),
                "the provider name must be letters, digits or _",
            ));
        }
        if ["google", "microsoft", "okta"].contains(&name.as_str()) {
            return Err(ConfigError::new(
                &format!("OAUTH_OIDC_{upper}_ISSUER"),
                format!("{name} is a built-in provider; configure it with OAUTH_{upper}_*"),
            ));
        }
        match provider(s, &format!("OAUTH_OIDC_{upper}"), &name, ProviderKind::Generic, None)? {
            Some(p) => providers.push(p),
            None => {
                return Err(ConfigError::new(
                    &format!("OAUTH_OIDC_{upper}_CLIENT_ID"),
                    format!("provider {name} has an issuer but no client id"),
                ));
            }
        }
    }
    let redirect_uris = s
        .list(&["OAUTH_REDIRECT_URIS"])?
        .unwrap_or_default()
        .iter()
        .map(|u| https_url("OAUTH_REDIRECT_URIS", u))
        .collect::<Result<Vec<_>, _>>()?;
    let okta_domains: Vec<String> = s
        .list(&["OAUTH_OKTA_ALLOWED_DOMAINS"])?
        .unwrap_or_default()
        .into_iter()
        .chain(okta_domain)
        .map(|d| {
            if d.contains("://") {
                https_url("OAUTH_OKTA_ALLOWED_DOMAINS", &d)
            } else {
                Ok(d.to_ascii_lowercase())
            }
        })
        .collect::<Result<_, _>>()?;
    let cookie_name = match s.switch(&["OAUTH_TOKEN_COOKIE"]) {
        Switch::Set(_, v) => Some(v.to_string()),
        Switch::Default | Switch::Off => None,
    };
    if let Some(c) = &cookie_name
        && !c.chars().all(|ch| ch.is_ascii_alphanumeric() || "-_".contains(ch))
    {
        return Err(ConfigError::new(
            "OAUTH_TOKEN_COOKIE",
            "expected a cookie name (letters, digits, - and _)",
        ));
    }
    Ok(OAuthSettings {
        providers,
        redirect_uris,
        allow_signup: s.flag(&["OAUTH_ALLOW_SIGNUP"], true)?,
        link_verified_email: s.flag(&["OAUTH_LINK_VERIFIED_EMAIL"], false)?,
        okta_domains,
        http_timeout: Duration::from_millis(s.number(&["OAUTH_HTTP_TIMEOUT_MS"], 5_000u64, 100, 60_000)?),
        cookie_name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<OAuthSettings, ConfigError> {
        settings(&Sources::from_pairs(pairs.iter().copied()))
    }

    #[test]
    fn providers_from_settings() {
        let s = parse(&[
            ("OAUTH_GOOGLE_CLIENT_ID", "g"),
            ("OAUTH_MICROSOFT_CLIENT_ID", "m"),
            ("OAUTH_OKTA_CLIENT_ID", "o"),
            ("OAUTH_OKTA_DOMAIN", "Acme.okta.com"),
            ("OAUTH_OIDC_KEYCLOAK_ISSUER", "https://sso.example.com/realms/main/"),
            ("OAUTH_OIDC_KEYCLOAK_CLIENT_ID", "k"),
            ("OAUTH_OIDC_KEYCLOAK_SCOPES", "openid email"),
            (
                "OAUTH_REDIRECT_URIS",
                "https://app.example.com/done, http://localhost:3000/cb",
            ),
        ])
        .unwrap();
        let names: Vec<&str> = s.providers.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["google", "microsoft", "okta", "keycloak"]);
        assert_eq!(s.provider("google").unwrap().issuer, "https://accounts.google.com");
        assert_eq!(
            s.provider("microsoft").unwrap().issuer,
            "https://login.microsoftonline.com/common/v2.0"
        );
        assert_eq!(
            s.provider("keycloak").unwrap().issuer,
            "https://sso.example.com/realms/main"
        );
        assert_eq!(s.provider("keycloak").unwrap().scopes, ["openid", "email"]);
        assert_eq!(s.okta_domains, ["acme.okta.com"]);
        assert_eq!(s.redirect_uris.len(), 2);
        assert!(!s.link_verified_email && s.allow_signup);
        assert!(
            parse(&[]).unwrap().providers.is_empty(),
            "nothing configured, nothing on"
        );
    }

    #[test]
    fn bad_provider_settings_name_the_variable() {
        for (pairs, var) in [
            (
                vec![("OAUTH_OIDC_X_ISSUER", "https://x.example.com")],
                "OAUTH_OIDC_X_CLIENT_ID",
            ),
            (
                vec![
                    ("OAUTH_OIDC_GOOGLE_ISSUER", "https://x"),
                    ("OAUTH_OIDC_GOOGLE_CLIENT_ID", "c"),
                ],
                "OAUTH_OIDC_GOOGLE_ISSUER",
            ),
            (
                vec![
                    ("OAUTH_GOOGLE_CLIENT_ID", "g"),
                    ("OAUTH_GOOGLE_TOKEN_ENDPOINT", "http://evil.example.com/t"),
                ],
                "OAUTH_GOOGLE_TOKEN_ENDPOINT",
            ),
            (
                vec![("OAUTH_GOOGLE_CLIENT_ID", "g"), ("OAUTH_GOOGLE_SCOPES", "email")],
                "OAUTH_GOOGLE_SCOPES",
            ),
            (vec![("OAUTH_OKTA_CLIENT_ID", "o")], "OAUTH_OKTA_ISSUER"),
            (
                vec![("OAUTH_REDIRECT_URIS", "javascript:alert(1)")],
                "OAUTH_REDIRECT_URIS",
            ),
        ] {
            let err = parse(&pairs).unwrap_err();
            assert_eq!(err.var, var, "{pairs:?}");
        }
    }
}
