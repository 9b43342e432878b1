//! The audit trail: whether it is kept, for how long, and how many request records
//! may wait to be written.

use std::time::Duration;

use super::{ConfigError, Sources};

/// The names this group reads, aliases included: the TOML file may set only known ones.
pub(super) const KEYS: &[&str] = &[
    "ENABLE_AUDIT_LOGGING",
    "AUDIT_ENABLED",
    "AUDIT_RETENTION_DAYS",
    "AUDIT_BUFFER",
];

/// The group's fields of [`super::Config`], documented there.
pub(super) struct Audit {
    pub audit_enabled: bool,
    pub audit_retention: Option<Duration>,
    pub audit_buffer: usize,
}

pub(super) fn settings(s: &Sources) -> Result<Audit, ConfigError> {
    let retention_days = s.number(&["AUDIT_RETENTION_DAYS"], 365u64, 0, 36_500)?;
    Ok(Audit {
        audit_enabled: s.flag(&["ENABLE_AUDIT_LOGGING", "AUDIT_ENABLED"], true)?,
        // 0 days keeps records forever.
        audit_retention: (retention_days > 0).then(|| Duration::from_secs(86_400 * retention_days)),
        audit_buffer: s.number(&["AUDIT_BUFFER"], 10_000usize, 1, 10_000_000)?,
    })
}
