//! The gateway check (`/auth/verify`): which permission a proxied request needs, and
//! what happens to a request no rule covers.

use super::routemap::RouteMap;
use super::{ConfigError, Sources};

/// The names this group reads, aliases included: the TOML file may set only known ones.
pub(super) const KEYS: &[&str] = &["VERIFY_ROUTES", "VERIFY_DEFAULT"];

#[derive(Debug, Clone)]
pub struct GatewaySettings {
    /// Which permission `/auth/verify` requires for a proxied method and path.
    pub routes: RouteMap,
    /// Whether `/auth/verify` lets through a request no route-map entry matches.
    pub default_allow: bool,
}

pub(super) fn settings(s: &Sources) -> Result<GatewaySettings, ConfigError> {
    Ok(GatewaySettings {
        routes: RouteMap::parse(&s.string(&["VERIFY_ROUTES"], "")).map_err(|e| ConfigError::new("VERIFY_ROUTES", e))?,
        default_allow: s.choice("VERIFY_DEFAULT", "allow", &[("allow", true), ("deny", false)])?,
    })
}
