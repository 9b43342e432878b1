//! Where a sign-in may send the browser afterwards: only a path on this origin.

use percent_encoding::percent_decode_str;

/// `raw` when it is a same-origin relative path, else None. Refused: anything not
/// starting with one `/` (schemes, `//host`), a backslash anywhere (`/\host`, which
/// browsers read as `//host`), control characters and whitespace (browsers drop tabs
/// and newlines, so `/\t/host` is `//host`), and all of these again after
/// percent-decoding, repeatedly, in case a later hop decodes once more.
pub fn safe_return_to(raw: &str) -> Option<&str> {
    if raw.len() > 2048 {
        return None;
    }
    let mut text = raw.to_string();
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
        for ok in ["/account", "/account?tab=sessions", "/api/v1/account", "/x%3Fy"] {
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
            "javascript:alert(1)",
            "evil.example",
            "",
            " /account",
        ] {
            assert_eq!(safe_return_to(bad), None, "{bad:?}");
        }
    }
}
