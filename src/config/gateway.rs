//! The gateway check (`/auth/verify`): which permission a proxied request needs, and
//! what happens to a request no rule covers.

use super::routemap::RouteMap;
use super::sources::Switch;
use super::{ConfigError, Sources};

/// The names this group reads, aliases included: the TOML file may set only known ones.
pub(super) const KEYS: &[&str] = &["VERIFY_ROUTES", "VERIFY_DEFAULT", "VERIFY_CASE_INSENSITIVE"];

#[derive(Debug, Clone)]
pub struct GatewaySettings {
    /// Which permission `/auth/verify` requires for a proxied method and path.
    pub routes: RouteMap,
    /// Whether `/auth/verify` lets through a request no route-map entry matches: by
    /// default only while there is no route map (a map lists what is guarded, and a
    /// path it forgets must fail closed).
    pub default_allow: bool,
}

pub(super) fn settings(s: &Sources) -> Result<GatewaySettings, ConfigError> {
    let routes = match s.switch(&["VERIFY_ROUTES"]) {
        Switch::Default | Switch::Off => RouteMap::default(),
        Switch::Set(_, raw) => {
            let routes = RouteMap::parse(raw).map_err(|e| ConfigError::new("VERIFY_ROUTES", e))?;
            if routes.is_empty() {
                return Err(ConfigError::new(
                    "VERIFY_ROUTES",
                    format!("{raw:?} lists no route; write `none` for no route map"),
                ));
            }
            routes
        }
    }
    .case_insensitive(s.flag(&["VERIFY_CASE_INSENSITIVE"], false)?);
    let default = if routes.is_empty() { "allow" } else { "deny" };
    Ok(GatewaySettings {
        default_allow: s.choice("VERIFY_DEFAULT", default, &[("allow", true), ("deny", false)])?,
        routes,
    })
}
