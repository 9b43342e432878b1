//! Multi-factor policy: who must enrol, how recent a second factor sensitive routes
//! demand, and the name authenticator apps show.

use std::time::Duration;

use super::{ConfigError, Sources};

/// The names this group reads, aliases included: the TOML file may set only known ones.
pub(super) const KEYS: &[&str] = &["MFA_REQUIRED_ROLES", "MFA_STEP_UP_MAX_AGE_SECONDS", "MFA_TOTP_ISSUER"];

/// Multi-factor policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MfaSettings {
    /// Holders of these roles (superusers count as holding `admin`) must enrol before
    /// their login yields anything but a token for enrolment.
    pub required_roles: Vec<String>,
    /// How recent a second factor sensitive admin routes demand; None turns step-up off.
    pub step_up_max_age: Option<Duration>,
    /// The issuer authenticator apps show next to the account.
    pub issuer: String,
}

pub(super) fn settings(s: &Sources) -> Result<MfaSettings, ConfigError> {
    let step_up = s.number_or_off(&["MFA_STEP_UP_MAX_AGE_SECONDS"], 900u64, 0, 86_400)?;
    let mfa = MfaSettings {
        // `none` turns the requirement off.
        required_roles: s
            .list(&["MFA_REQUIRED_ROLES"])?
            .unwrap_or_else(|| vec!["admin".to_string()]),
        step_up_max_age: (step_up > 0).then(|| Duration::from_secs(step_up)),
        issuer: s.string(&["MFA_TOTP_ISSUER"], "Portcullis"),
    };
    if mfa.issuer.is_empty() || mfa.issuer.len() > 100 || mfa.issuer.chars().any(char::is_control) {
        return Err(ConfigError::new(
            "MFA_TOTP_ISSUER",
            "must be 1-100 characters without control characters",
        ));
    }
    Ok(mfa)
}
