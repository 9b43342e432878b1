//! The server process: where it listens, the address and path prefix it is known by
//! from outside, how large a request body may be, and how it logs.

use std::net::SocketAddr;
use std::time::Duration;

use super::{ConfigError, Sources};

/// The names this group reads, aliases included: the TOML file may set only known ones.
pub(super) const KEYS: &[&str] = &[
    "PORTCULLIS_BIND",
    "PORTCULLIS_BASE_PATH",
    "BASE_PATH",
    "PORTCULLIS_PUBLIC_URL",
    "PORTCULLIS_MAX_BODY_BYTES",
    "PORTCULLIS_LOG_FORMAT",
    "PORTCULLIS_HEADER_READ_TIMEOUT_SECONDS",
    "PORTCULLIS_REQUEST_TIMEOUT_SECONDS",
    "PORTCULLIS_BODY_TIMEOUT_SECONDS",
    "PORTCULLIS_IDLE_TIMEOUT_SECONDS",
    "PORTCULLIS_MAX_CONNECTIONS",
    "PORTCULLIS_MAX_CONNECTIONS_PER_IP",
    "PORTCULLIS_SHUTDOWN_TIMEOUT_SECONDS",
    "PORTCULLIS_ALLOW_ISSUER_MISMATCH",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub bind: SocketAddr,
    /// Prefix for every route, e.g. `/api/v1`; empty for none.
    pub base_path: String,
    pub public_url: String,
    pub max_body_bytes: usize,
    pub log_format: LogFormat,
    pub connections: ConnectionLimits,
    /// Start even when another live instance on the database signs as another issuer
    /// (the mismatch is logged as an error); otherwise start-up stops.
    pub allow_issuer_mismatch: bool,
}

impl ServerSettings {
    /// Whether the public URL (and so the default issuer) was derived from a wildcard
    /// bind address such as 0.0.0.0, which no client can reach the service by.
    pub fn public_url_is_wildcard(&self) -> bool {
        self.bind.ip().is_unspecified() && self.public_url == format!("http://{}", self.bind)
    }
}

/// What one client, or all together, may hold of the server's connections and time.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// A request's head (request line and headers) must arrive within this.
    pub header_read_timeout: Duration,
    /// A request must be answered within this (408 otherwise), body included.
    pub request_timeout: Duration,
    /// A request's body must arrive within this.
    pub body_timeout: Duration,
    /// A kept-alive connection with no request in progress is closed after this.
    pub idle_timeout: Duration,
    /// Connections open at once; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// Connections open at once from one client address (trusted proxies exempt);
    /// further ones are closed at once.
    pub max_connections_per_ip: usize,
    /// On SIGTERM, in-flight requests get this long to finish before connections close.
    pub shutdown_timeout: Duration,
}

pub(super) fn settings(s: &Sources) -> Result<ServerSettings, ConfigError> {
    let bind_raw = s.string(&["PORTCULLIS_BIND"], "127.0.0.1:8000");
    let bind: SocketAddr = bind_raw.parse().map_err(|_| {
        ConfigError::new(
            "PORTCULLIS_BIND",
            format!("expected an address like 127.0.0.1:8000, got {bind_raw:?}"),
        )
    })?;

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

    Ok(ServerSettings {
        bind,
        base_path,
        public_url,
        max_body_bytes: s.number(&["PORTCULLIS_MAX_BODY_BYTES"], 64 * 1024usize, 1024, 16 * 1024 * 1024)?,
        log_format: s.choice(
            "PORTCULLIS_LOG_FORMAT",
            "text",
            &[("text", LogFormat::Text), ("json", LogFormat::Json)],
        )?,
        connections: ConnectionLimits {
            header_read_timeout: secs(s, "PORTCULLIS_HEADER_READ_TIMEOUT_SECONDS", 10, 600)?,
            request_timeout: secs(s, "PORTCULLIS_REQUEST_TIMEOUT_SECONDS", 30, 3600)?,
            body_timeout: secs(s, "PORTCULLIS_BODY_TIMEOUT_SECONDS", 30, 3600)?,
            idle_timeout: secs(s, "PORTCULLIS_IDLE_TIMEOUT_SECONDS", 60, 3600)?,
            max_connections: s.number(&["PORTCULLIS_MAX_CONNECTIONS"], 10_000usize, 1, 1_000_000)?,
            max_connections_per_ip: s.number(&["PORTCULLIS_MAX_CONNECTIONS_PER_IP"], 256usize, 1, 1_000_000)?,
            shutdown_timeout: secs(s, "PORTCULLIS_SHUTDOWN_TIMEOUT_SECONDS", 20, 3600)?,
        },
        allow_issuer_mismatch: s.flag(&["PORTCULLIS_ALLOW_ISSUER_MISMATCH"], false)?,
    })
}

fn secs(s: &Sources, name: &str, default: u64, max: u64) -> Result<Duration, ConfigError> {
    Ok(Duration::from_secs(s.number(&[name], default, 1, max)?))
}
