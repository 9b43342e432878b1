//! The scopes an application may ask for, and what each one grants.

/// Every scope Portcullis knows, in the order the consent page lists them.
pub const SCOPES: [&str; 5] = ["openid", "profile", "email", "roles", "offline_access"];

/// The scopes a client is allowed when its registration names none.
pub const DEFAULT_SCOPES: [&str; 4] = ["openid", "profile", "email", "offline_access"];

/// The claims a scope adds to the ID token and the UserInfo answer.
pub fn claims_of(scope: &str) -> &'static [&'static str] {
    match scope {
        "openid" => &["sub"],
        "profile" => &["name", "preferred_username", "updated_at"],
        "email" => &["email", "email_verified"],
        "roles" => &["roles", "permissions"],
        _ => &[],
    }
}

/// Every claim some scope can add, for discovery's `claims_supported`.
pub fn all_claims() -> Vec<&'static str> {
    let mut claims: Vec<&'static str> = SCOPES.iter().flat_map(|s| claims_of(s).iter().copied()).collect();
    claims.dedup();
    claims
}

/// A space-separated `scope` parameter as a list without repeats, in the order given.
pub fn parse(scope: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in scope.split(' ').filter(|s| !s.is_empty()) {
        if !out.iter().any(|o| o == s) {
            out.push(s.to_string());
        }
    }
    out
}

/// A list of scopes as the space-separated parameter.
pub fn join(scopes: &[String]) -> String {
    scopes.join(" ")
}

/// Whether `scope` is one Portcullis knows.
pub fn is_known(scope: &str) -> bool {
    SCOPES.contains(&scope)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_drops_repeats_and_empty_parts() {
        assert_eq!(parse("openid  email openid"), vec!["openid", "email"]);
        assert!(parse("").is_empty());
    }

    #[test]
    fn every_scope_but_offline_access_grants_claims() {
        for s in SCOPES {
            assert_eq!(claims_of(s).is_empty(), s == "offline_access", "{s}");
        }
        assert!(all_claims().contains(&"email_verified"));
    }
}
