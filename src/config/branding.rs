//! How the hosted pages present the service: its name, a logo and a primary colour.
//! Checked once at start, so a bad value stops the service with a line naming it
//! rather than showing a broken page; the logo file is read here, once, and served
//! from memory under a name carrying its hash (`src/ui/branding.rs`).

use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::{ConfigError, Sources};

/// The names this group reads, aliases included: the TOML file may set only known ones.
pub(super) const KEYS: &[&str] = &["PAGES_PRODUCT_NAME", "PAGES_LOGO", "PAGES_PRIMARY_COLOR"];

/// A logo file larger than this is refused: it is held in memory and sent with every
/// first page view.
pub const LOGO_MAX_BYTES: usize = 512 * 1024;

/// The image types a logo file may be, by extension.
const LOGO_TYPES: &[(&str, &str)] = &[
    ("png", "image/png"),
    ("svg", "image/svg+xml"),
    ("jpg", "image/jpeg"),
    ("jpeg", "image/jpeg"),
    ("gif", "image/gif"),
    ("webp", "image/webp"),
    ("ico", "image/x-icon"),
];

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Branding {
    /// Shown in the header and page titles; None: the catalogue's "Portcullis".
    pub product_name: Option<String>,
    pub logo: Option<Logo>,
    /// `#rrggbb`, lower case.
    pub primary_color: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Logo {
    /// A file read at start: served as `/assets/<name>`.
    File {
        name: String,
        content_type: &'static str,
        bytes: Arc<[u8]>,
    },
    /// An image elsewhere, over HTTPS: the pages' CSP lets `img-src` reach `origin`.
    Url { url: String, origin: String },
}

pub(super) fn settings(s: &Sources) -> Result<Branding, ConfigError> {
    let product_name = match s.get(&["PAGES_PRODUCT_NAME"]) {
        None => None,
        Some((name, v)) if v.chars().count() > 60 || v.chars().any(char::is_control) => {
            return Err(ConfigError::new(
                name,
                "must be 1 to 60 characters without control characters",
            ));
        }
        Some((_, v)) => Some(v.to_string()),
    };
    let logo = match s.get(&["PAGES_LOGO"]) {
        None => None,
        Some((name, v)) => Some(logo(v).map_err(|m| ConfigError::new(name, m))?),
    };
    let primary_color = match s.get(&["PAGES_PRIMARY_COLOR"]) {
        None => None,
        Some((name, v)) => Some(hex_color(v).ok_or_else(|| {
            ConfigError::new(
                name,
                format!("expected a hex colour such as #1a56db or #15d, got {v:?}"),
            )
        })?),
    };
    Ok(Branding {
        product_name,
        logo,
        primary_color,
    })
}

/// `#rgb` or `#rrggbb` as `#rrggbb` in lower case; nothing else (no names, no
/// `rgb()`), so what reaches the stylesheet is only ever a colour.
fn hex_color(raw: &str) -> Option<String> {
    let hex = raw.strip_prefix('#')?;
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let full: String = match hex.len() {
        3 => hex.chars().flat_map(|c| [c, c]).collect(),
        6 => hex.to_string(),
        _ => return None,
    };
    Some(format!("#{}", full.to_ascii_lowercase()))
}

/// An `https://` URL (its origin goes into the CSP, so the host is held to the
/// characters a host name or address has), else a file to read now.
fn logo(raw: &str) -> Result<Logo, String> {
    if let Some(rest) = raw.strip_prefix("https://") {
        let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let host_ok = !host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
        if !host_ok || raw.chars().any(|c| c.is_whitespace() || c.is_control() || c == '"') {
            return Err(format!("{raw:?} is not a usable https URL"));
        }
        return Ok(Logo::Url {
            url: raw.to_string(),
            origin: format!("https://{}", host.to_ascii_lowercase()),
        });
    }
    if raw.contains("://") {
        return Err(format!("{raw:?}: a logo URL must be https://"));
    }
    let path = std::path::Path::new(raw);
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let Some(&(ext, content_type)) = LOGO_TYPES.iter().find(|(e, _)| *e == ext) else {
        let names: Vec<&str> = LOGO_TYPES.iter().map(|(e, _)| *e).collect();
        return Err(format!("{raw:?}: the file must be one of .{}", names.join(", .")));
    };
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {raw:?}: {e}"))?;
    if bytes.is_empty() || bytes.len() > LOGO_MAX_BYTES {
        return Err(format!(
            "{raw:?} is {} bytes; a logo must be 1 to {LOGO_MAX_BYTES} bytes",
            bytes.len()
        ));
    }
    Ok(Logo::File {
        name: hashed_name("logo", ext, &bytes),
        content_type,
        bytes: bytes.into(),
    })
}

/// `<stem>-<first 16 hex digits of the SHA-256 of body>.<ext>`: the name the pages serve
/// an embedded or configured file under, so it can be cached for good and a new body
/// is a new name (the stylesheet, the script, the brand colours, a logo).
pub fn hashed_name(stem: &str, ext: &str, body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("{stem}-{hex}.{ext}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_are_hex_only() {
        assert_eq!(hex_color("#1A56DB").as_deref(), Some("#1a56db"));
        assert_eq!(hex_color("#15d").as_deref(), Some("#1155dd"));
        for bad in ["1a56db", "#1a56d", "red", "#12345g", "#1a56db;}", "rgb(1,2,3)"] {
            assert_eq!(hex_color(bad), None, "{bad}");
        }
    }

    #[test]
    fn logos_are_https_urls_or_readable_image_files() {
        match logo("https://CDN.example.com/logo.svg").unwrap() {
            Logo::Url { origin, .. } => assert_eq!(origin, "https://cdn.example.com"),
            other => panic!("{other:?}"),
        }
        for bad in [
            "http://cdn.example.com/logo.png",
            "https://",
            "https://evil.example; script-src *",
            "javascript://x",
        ] {
            assert!(logo(bad).is_err(), "{bad}");
        }
        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("logo.PNG");
        std::fs::write(&png, b"\x89PNG not really").unwrap();
        match logo(png.to_str().unwrap()).unwrap() {
            Logo::File { name, content_type, .. } => {
                assert!(name.starts_with("logo-") && name.ends_with(".png"), "{name}");
                assert_eq!(content_type, "image/png");
            }
            other => panic!("{other:?}"),
        }
        let txt = dir.path().join("logo.txt");
        std::fs::write(&txt, b"x").unwrap();
        assert!(logo(txt.to_str().unwrap()).unwrap_err().contains(".png"));
        let missing = dir.path().join("missing.png");
        assert!(logo(missing.to_str().unwrap()).unwrap_err().contains("cannot read"));
        let big = dir.path().join("big.png");
        std::fs::write(&big, vec![0u8; LOGO_MAX_BYTES + 1]).unwrap();
        assert!(logo(big.to_str().unwrap()).unwrap_err().contains("bytes"));
    }
}
