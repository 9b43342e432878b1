//! Where the database lives and how many connections it gets.

use std::path::PathBuf;

use super::{ConfigError, Sources};

/// The names this group reads, aliases included: the TOML file may set only known ones.
pub(super) const KEYS: &[&str] = &["DATABASE_URL", "DATABASE_MAX_CONNECTIONS"];

/// Where the database lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseTarget {
    Sqlite(PathBuf),
    Postgres(String),
}

#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    pub target: DatabaseTarget,
    pub max_connections: u32,
}

pub(super) fn settings(s: &Sources) -> Result<DatabaseSettings, ConfigError> {
    Ok(DatabaseSettings {
        target: parse_database_url(&s.string(&["DATABASE_URL"], "sqlite://portcullis.db"))?,
        max_connections: s.number(&["DATABASE_MAX_CONNECTIONS"], 10u32, 1, 1000)?,
    })
}

/// Accepts `sqlite://file`, `sqlite:file`, `postgres://` and `postgresql://`, and the
/// SQLAlchemy-style `postgresql+psycopg2://` the replaced services wrote.
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
