//! The server process: where it listens, the address and path prefix it is known by
//! from outside, how large a request body may be, and how it logs.

use std::net::SocketAddr;

use super::{ConfigError, Sources};

/// The names this group reads, aliases included: the TOML file may set only known ones.
pub(super) const KEYS: &[&str] = &[
    "PORTCULLIS_BIND",
    "PORTCULLIS_BASE_PATH",
    "BASE_PATH",
    "PORTCULLIS_PUBLIC_URL",
    "PORTCULLIS_MAX_BODY_BYTES",
    "PORTCULLIS_LOG_FORMAT",
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
    })
}
