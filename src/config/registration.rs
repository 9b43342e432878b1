//! Self-registration: whether anyone may create an account for themselves, through
//! `POST /auth/register` and the `/register` page alike (the rule is the domain's,
//! `Portcullis::register`; this only holds the switch).

use super::{ConfigError, Sources};

/// The names this group reads, aliases included: the TOML file may set only known ones.
pub(super) const KEYS: &[&str] = &["REGISTRATION_ENABLED"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationSettings {
    /// Anyone may register (the default, as before the setting existed); when off,
    /// accounts come only from administrators, the CLI and upstream providers.
    pub enabled: bool,
}

pub(super) fn settings(s: &Sources) -> Result<RegistrationSettings, ConfigError> {
    Ok(RegistrationSettings {
        enabled: s.flag(&["REGISTRATION_ENABLED"], true)?,
    })
}
