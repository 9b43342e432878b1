//! The operator's branding on every page (`PAGES_PRODUCT_NAME`, `PAGES_LOGO`,
//! `PAGES_PRIMARY_COLOR`, checked in `config::branding`). The strict CSP allows no
//! inline style, so the colour reaches the pages as a small generated stylesheet,
//! served like `app.css` under a name carrying its hash (cached for good; a new colour
//! is a new name); a logo file is served the same way, from memory.

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};

use crate::config::{Config, Logo, hashed_name};

/// The generated stylesheet: the colour for buttons, links and focus rings, in light
/// and dark alike (it comes after `app.css`, whose dark scheme it overrides), and the
/// text on it in black or white, whichever contrasts more.
fn brand_css(color: &str) -> String {
    format!(":root{{--primary:{color};--on-primary:{}}}\n", on_color(color))
}

/// `#000` or `#fff` for text on `color` (`#rrggbb`), by WCAG contrast ratio.
fn on_color(color: &str) -> &'static str {
    let channel = |i: usize| {
        let v = f64::from(u8::from_str_radix(color.get(i..i + 2).unwrap_or("00"), 16).unwrap_or(0)) / 255.0;
        if v <= 0.04045 {
            v / 12.92
        } else {
            ((v + 0.055) / 1.055).powf(2.4)
        }
    };
    let luminance = 0.2126 * channel(1) + 0.7152 * channel(3) + 0.0722 * channel(5);
    // Contrast with black (L + 0.05) / 0.05 against white 1.05 / (L + 0.05).
    if (luminance + 0.05) / 0.05 >= 1.05 / (luminance + 0.05) {
        "#000"
    } else {
        "#fff"
    }
}

/// `brand-<hash>.css`.
fn css_name(css: &str) -> String {
    hashed_name("brand", "css", css.as_bytes())
}

/// The brand stylesheet's path, when a colour is set.
pub fn stylesheet(config: &Config) -> Option<String> {
    let color = config.pages.brand.primary_color.as_deref()?;
    Some(config.path(&format!("/assets/{}", css_name(&brand_css(color)))))
}

/// The logo's `src`, when one is set.
pub fn logo_src(config: &Config) -> Option<String> {
    match config.pages.brand.logo.as_ref()? {
        Logo::File { name, .. } => Some(config.path(&format!("/assets/{name}"))),
        Logo::Url { url, .. } => Some(url.clone()),
    }
}

/// The origin the CSP's `img-src` must allow for a logo elsewhere.
pub fn logo_origin(config: &Config) -> Option<&str> {
    match config.pages.brand.logo.as_ref()? {
        Logo::Url { origin, .. } => Some(origin),
        Logo::File { .. } => None,
    }
}

/// The product name the pages show, when the operator set one.
pub fn product_name(config: &Config) -> Option<&str> {
    config.pages.brand.product_name.as_deref()
}

/// `GET /assets/{file}` for the brand stylesheet or the logo file; None for any other
/// name.
pub fn asset(config: &Config, file: &str) -> Option<Response> {
    const FOREVER: &str = "public, max-age=31536000, immutable";
    let brand = &config.pages.brand;
    if let Some(color) = brand.primary_color.as_deref() {
        let css = brand_css(color);
        if file == css_name(&css) {
            return Some(
                (
                    [(CONTENT_TYPE, "text/css; charset=utf-8"), (CACHE_CONTROL, FOREVER)],
                    css,
                )
                    .into_response(),
            );
        }
    }
    match &brand.logo {
        Some(Logo::File {
            name,
            content_type,
            bytes,
        }) if name == file => Some(
            (
                [(CONTENT_TYPE, *content_type), (CACHE_CONTROL, FOREVER)],
                axum::body::Bytes::copy_from_slice(bytes),
            )
                .into_response(),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_on_the_primary_colour_contrasts() {
        assert_eq!(on_color("#ffffff"), "#000");
        assert_eq!(on_color("#ffd400"), "#000");
        assert_eq!(on_color("#1a56db"), "#fff");
        assert_eq!(on_color("#000000"), "#fff");
        assert_eq!(brand_css("#1a56db"), ":root{--primary:#1a56db;--on-primary:#fff}\n");
        assert_ne!(css_name(&brand_css("#1a56db")), css_name(&brand_css("#1a56dc")));
    }
}
