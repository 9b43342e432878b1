//! The rule for role and permission names.
//!
//! It lives here, below the domain, because settings name permissions too (the
//! gateway route map): the domain checks names an administrator creates with the same
//! predicate, so a route map can never require a permission no one could create.

/// What [`is_valid_grant_name`] accepts, worded for the person who broke it.
pub const GRANT_NAME_RULE: &str = "must be 1-100 lower-case ASCII letters, digits or _ . : -, starting with a letter";

/// Role and permission names: lower-case ASCII letters, digits and `_ . : -`,
/// starting with a letter (`projects:create`, `billing_access`, `analyst`). Plain
/// ASCII keeps them safe in tokens, logs and URLs without escaping.
pub fn is_valid_grant_name(name: &str) -> bool {
    name.len() <= 100
        && name.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.:-".contains(&b))
}

/// The name in `known` nearest to `name`, when it is close enough to be what was meant
/// (a typo): beyond a third of the characters wrong, a suggestion is more noise than
/// help. For messages that refuse a name ("did you mean ...?").
pub fn nearest<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    known
        .into_iter()
        .map(|k| (strsim::damerau_levenshtein(name, k), k))
        .min()
        .filter(|(distance, _)| distance * 3 <= name.len())
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::is_valid_grant_name;

    #[test]
    fn grant_names() {
        for ok in [
            "projects:create",
            "billing_access",
            "analyst",
            "a.b-c",
            &"a".repeat(100),
        ] {
            assert!(is_valid_grant_name(ok), "{ok}");
        }
        for bad in ["", "Admin", "1role", ":x", "has space", "x'--", "é", &"a".repeat(101)] {
            assert!(!is_valid_grant_name(bad), "{bad}");
        }
    }
}
