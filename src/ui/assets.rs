//! The pages' stylesheet, compiled in and served under a name carrying its hash, so
//! it can be cached for good (`immutable`) and a new build is a new name.

use std::sync::LazyLock;

use axum::extract::{Path, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::domain::Portcullis;
use crate::error::AppError;

const CSS: &str = include_str!("assets/app.css");

/// `app-<first 16 hex digits of the SHA-256>.css`.
static CSS_NAME: LazyLock<String> = LazyLock::new(|| {
    let digest = Sha256::digest(CSS.as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("app-{hex}.css")
});

/// The stylesheet's path under `/assets/`.
pub fn css_name() -> &'static str {
    &CSS_NAME
}

/// `GET /assets/{file}`: the stylesheet, or the operator's branding (`branding`).
pub async fn asset(State(service): State<Portcullis>, Path(file): Path<String>) -> Response {
    if file != *CSS_NAME {
        return super::branding::asset(service.config(), &file)
            .unwrap_or_else(|| AppError::NotFound("no such asset".into()).into_response());
    }
    (
        [
            (CONTENT_TYPE, "text/css; charset=utf-8"),
            (CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        CSS,
    )
        .into_response()
}
