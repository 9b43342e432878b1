//! The hosted pages (`src/ui`): how long a browser session lives, and their branding
//! (`branding.rs`).

use std::time::Duration;

use super::{Branding, ConfigError, Sources};

/// The names this group reads, aliases included: the TOML file may set only known ones.
pub(super) const KEYS: &[&str] = &["PAGE_SESSION_IDLE_MINUTES", "PAGE_SESSION_MAX_LIFETIME_HOURS"];

/// Browser sessions of the sign-in and account pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageSettings {
    /// A browser session unused this long ends.
    pub session_idle: Duration,
    /// A browser session ends this long after sign-in, however busy.
    pub session_max_lifetime: Duration,
    /// Name, logo and colour the pages show.
    pub brand: Branding,
}

pub(super) fn settings(s: &Sources) -> Result<PageSettings, ConfigError> {
    let idle = s.number(&["PAGE_SESSION_IDLE_MINUTES"], 60u64, 1, 7 * 24 * 60)?;
    let max = s.number(&["PAGE_SESSION_MAX_LIFETIME_HOURS"], 12u64, 1, 90 * 24)?;
    if idle > max * 60 {
        return Err(ConfigError::new(
            "PAGE_SESSION_IDLE_MINUTES",
            format!("must not exceed PAGE_SESSION_MAX_LIFETIME_HOURS ({max} h)"),
        ));
    }
    Ok(PageSettings {
        session_idle: Duration::from_secs(60 * idle),
        session_max_lifetime: Duration::from_secs(3600 * max),
        brand: super::branding::settings(s)?,
    })
}
