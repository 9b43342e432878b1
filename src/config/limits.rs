//! Brakes on password guessing: per-account lockout after failed logins, and
//! per-client-IP rate limits on the routes that take passwords or mint tokens.

use std::time::Duration;

use super::{ConfigError, Sources};

/// The names this group reads, aliases included: the TOML file may set only known ones.
pub(super) const KEYS: &[&str] = &[
    "LOGIN_LOCKOUT_THRESHOLD",
    "LOGIN_LOCKOUT_SECONDS",
    "LOGIN_LOCKOUT_MAX_SECONDS",
    "RATE_LIMIT_PER_IP_PER_MINUTE",
    "RATE_LIMIT_BURST",
    "RATE_LIMIT_ROUTES",
];

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

pub(super) fn lockout(s: &Sources) -> Result<LockoutPolicy, ConfigError> {
    let base = Duration::from_secs(s.number(&["LOGIN_LOCKOUT_SECONDS"], 60u64, 1, 86_400)?);
    Ok(LockoutPolicy {
        threshold: s.number_or_off(&["LOGIN_LOCKOUT_THRESHOLD"], 5u32, 0, 1000)?,
        base,
        max: Duration::from_secs(s.number(
            &["LOGIN_LOCKOUT_MAX_SECONDS"],
            3600u64.max(base.as_secs()),
            base.as_secs(),
            30 * 86_400,
        )?),
    })
}

pub(super) fn rate_limit(s: &Sources) -> Result<RateLimitSettings, ConfigError> {
    let per_minute = s.number_or_off(&["RATE_LIMIT_PER_IP_PER_MINUTE"], 300u32, 0, 1_000_000)?;
    Ok(RateLimitSettings {
        per_minute,
        burst: s.number(&["RATE_LIMIT_BURST"], per_minute.clamp(1, 60), 1, 1_000_000)?,
        routes: s.list(&["RATE_LIMIT_ROUTES"])?,
    })
}
