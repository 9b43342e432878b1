//! What stands between Portcullis and its clients: the reverse proxies whose
//! forwarding header is believed, and the headers that tell browsers which origins
//! may call it (CORS) and to use only HTTPS (HSTS).

use super::{ConfigError, Sources};

/// The names this group reads, aliases included: the TOML file may set only known ones.
pub(super) const KEYS: &[&str] = &[
    "TRUSTED_PROXIES",
    "TRUSTED_PROXY_HEADER",
    "CORS_ALLOWED_ORIGINS",
    "CORS_ORIGINS",
    "CORS_ALLOW_CREDENTIALS",
    "HSTS_MAX_AGE_SECONDS",
    "HSTS_INCLUDE_SUBDOMAINS",
];

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

#[derive(Debug, Clone)]
pub struct EdgeSettings {
    /// Peers whose forwarding header is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The one forwarding header those proxies write.
    pub trusted_proxy_header: ForwardingHeader,
    pub cors: CorsSettings,
    /// `Strict-Transport-Security` value, when configured.
    pub hsts: Option<String>,
}

pub(super) fn settings(s: &Sources) -> Result<EdgeSettings, ConfigError> {
    let trusted_proxies = s
        .list(&["TRUSTED_PROXIES"])?
        .unwrap_or_default()
        .iter()
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
    let trusted_proxy_header = s.choice(
        "TRUSTED_PROXY_HEADER",
        "x-forwarded-for",
        &[
            ("x-forwarded-for", ForwardingHeader::XForwardedFor),
            ("forwarded", ForwardingHeader::Forwarded),
        ],
    )?;
    Ok(EdgeSettings {
        trusted_proxies,
        trusted_proxy_header,
        cors: cors(s)?,
        hsts: hsts(s)?,
    })
}

fn cors(s: &Sources) -> Result<CorsSettings, ConfigError> {
    let cors = CorsSettings {
        origins: s
            .list(&["CORS_ALLOWED_ORIGINS", "CORS_ORIGINS"])?
            .unwrap_or_default()
            .iter()
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
    Ok(cors)
}

/// The `Strict-Transport-Security` value; none unless a max age is set.
fn hsts(s: &Sources) -> Result<Option<String>, ConfigError> {
    let max_age = s.number_or_off(&["HSTS_MAX_AGE_SECONDS"], 0u64, 0, 2 * 365 * 86_400)?;
    let subdomains = if s.flag(&["HSTS_INCLUDE_SUBDOMAINS"], false)? {
        "; includeSubDomains"
    } else {
        ""
    };
    Ok((max_age > 0).then(|| format!("max-age={max_age}{subdomains}")))
}
