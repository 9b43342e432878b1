//! Where a sign-in may send the browser afterwards: only a path on this origin.

use percent_encoding::percent_decode_str;

/// The longest return address kept: an application's authorization request, with
/// its PKCE challenge, nonce, state and scopes, fits well within it.
const MAX_LEN: usize = 4096;

/// `raw` when it is a same-origin relative path, else None. Refused: anything not
/// starting with one `/` (schemes, `//host`), a backslash in the path (`/\host`,
/// which browsers read as `//host`), control characters and whitespace (browsers drop
/// tabs and newlines, so `/\t/host` is `//host`), and all of these again in the path
/// after percent-decoding, repeatedly, in case a later hop decodes once more. The
/// query cannot change where the browser goes, so only its raw form is checked: an
/// encoded space (`scope=openid%20profile`) or backslash in it is fine.
pub fn safe_return_to(raw: &str) -> Option<&str> {
    if raw.len() > MAX_LEN || raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return None;
    }
    let path = raw.split(['?', '#']).next().unwrap_or_default();
    let mut text = path.to_string();
    for _ in 0..4 {
        if !is_local_path(&text) {
            return None;
        }
        let decoded = percent_decode_str(&text).decode_utf8().ok()?.into_owned();
        if decoded == text {
            return Some(raw);
        }
        text = decoded;
    }
    None
}

fn is_local_path(p: &str) -> bool {
    p.starts_with('/')
        && !p.starts_with("//")
        && !p.contains('\\')
        && !p.chars().any(|c| c.is_control() || c.is_whitespace())
}

#[cfg(test)]
mod tests {
    use super::safe_return_to;

    #[test]
    fn only_local_paths_pass() {
        for ok in [
            "/account",
            "/account?tab=sessions",
            "/api/v1/account",
            "/x%3Fy",
            // An application's request as AppAuth or Spring encode it.
            "/oauth2/authorize?scope=openid%20profile&state=a%5Cb%20c",
        ] {
            assert_eq!(safe_return_to(ok), Some(ok), "{ok}");
        }
        for bad in [
            "//evil.example",
            "https://evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "%2F%2Fevil.example",
            "/%2Fevil.example",
            "/%5Cevil.example",
            "/%252Fevil.example",
            "/\t/evil.example",
            "/%09/evil.example",
            "/%2F%2Fevil.example?scope=openid%20profile",
            "/account?tab=a b",
            "/account?tab=a\tb",
            "javascript:alert(1)",
            "evil.example",
            "",
            " /account",
        ] {
            assert_eq!(safe_return_to(bad), None, "{bad:?}");
        }
    }
}
