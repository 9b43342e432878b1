//! The gateway check (`/auth/verify`): which permission a proxied request needs, and
//! what happens to a request no rule covers.

use super::routemap::RouteMap;
use super::{ConfigError, Sources};

/// The names this group reads, aliases included: the TOML file may set only known ones.
pub(super) const KEYS: &[&str] = &["VERIFY_ROUTES", "VERIFY_DEFAULT"];

/// The group's fields of [`super::Config`], documented there.
pub(super) struct Gateway {
    pub verify_routes: RouteMap,
    pub verify_default_allow: bool,
}

pub(super) fn settings(s: &Sources) -> Result<Gateway, ConfigError> {
    Ok(Gateway {
        verify_routes: RouteMap::parse(&s.string(&["VERIFY_ROUTES"], ""))
            .map_err(|e| ConfigError::new("VERIFY_ROUTES", e))?,
        verify_default_allow: s.choice("VERIFY_DEFAULT", "allow", &[("allow", true), ("deny", false)])?,
    })
}
