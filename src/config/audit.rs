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

#[derive(Debug, Clone)]
pub struct AuditSettings {
    pub enabled: bool,
    /// How long audit records are kept; None keeps them forever.
    pub retention: Option<Duration>,
    /// Request records that may wait to be written; beyond this they are dropped.
    pub buffer: usize,
}

pub(super) fn settings(s: &Sources) -> Result<AuditSettings, ConfigError> {
    let retention_days = s.number(&["AUDIT_RETENTION_DAYS"], 365u64, 0, 36_500)?;
    Ok(AuditSettings {
        enabled: s.flag(&["ENABLE_AUDIT_LOGGING", "AUDIT_ENABLED"], true)?,
        // 0 days keeps records forever.
        retention: (retention_days > 0).then(|| Duration::from_secs(86_400 * retention_days)),
        buffer: s.number(&["AUDIT_BUFFER"], 10_000usize, 1, 10_000_000)?,
    })
}
