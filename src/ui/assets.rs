//! The pages' stylesheet and their one small script, compiled in and each served under
//! a name carrying its hash, so they can be cached for good (`immutable`) and a new
//! build is a new name. The script only adds to a page (a copy button); every page
//! works without it, and the CSP allows scripts from here alone (`script-src 'self'`,
//! nothing inline).

use std::sync::LazyLock;

use axum::extract::{Path, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};

use crate::config::hashed_name;
use crate::domain::Portcullis;
use crate::error::AppError;

/// An embedded file: its name with the hash, its type, its text.
struct Asset {
    name: String,
    content_type: &'static str,
    body: &'static str,
}

/// The asset served under its `hashed_name`.
fn hashed(stem: &str, ext: &str, body: &'static str, content_type: &'static str) -> Asset {
    Asset {
        name: hashed_name(stem, ext, body.as_bytes()),
        content_type,
        body,
    }
}

static CSS: LazyLock<Asset> =
    LazyLock::new(|| hashed("app", "css", include_str!("assets/app.css"), "text/css; charset=utf-8"));

static JS: LazyLock<Asset> = LazyLock::new(|| {
    hashed(
        "app",
        "js",
        include_str!("assets/app.js"),
        "text/javascript; charset=utf-8",
    )
});

/// The stylesheet's path under `/assets/`.
pub fn css_name() -> &'static str {
    &CSS.name
}

/// The script's path under `/assets/`.
pub fn script_name() -> &'static str {
    &JS.name
}

/// `GET /assets/{file}`: the stylesheet, the script, or the operator's branding
/// (`branding`).
pub async fn asset(State(service): State<Portcullis>, Path(file): Path<String>) -> Response {
    let Some(asset) = [&*CSS, &*JS].into_iter().find(|a| a.name == file) else {
        return super::branding::asset(service.config(), &file)
            .unwrap_or_else(|| AppError::NotFound("no such asset".into()).into_response());
    };
    (
        [
            (CONTENT_TYPE, asset.content_type),
            (CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        asset.body,
    )
        .into_response()
}
