//! A page route's errors as a page. Handlers, extractors and the guard answer with
//! `AppError`, whose RFC 9457 problem+json is right for the API but, shown to a person
//! in a browser, is raw JSON with no language or title (axe-core flags both). The page
//! layer hands every problem answer of a page route through `as_page`: the same status
//! and headers (`Retry-After`, cookies), the problem's `detail` in a page of the
//! layout's own. One place, so no page renders its errors twice.

use askama::Template;
use axum::body::{Body, to_bytes};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;

use super::Messages;
use super::pages::Chrome;

pub const EN: Messages = &[
    ("error_title", "Something went wrong"),
    ("error_refused_title", "Request refused"),
    ("error_not_found_title", "Not found"),
    ("error_start_over", "Start again"),
];

pub const DE: Messages = &[
    ("error_title", "Etwas ist schiefgegangen"),
    ("error_refused_title", "Anfrage abgelehnt"),
    ("error_not_found_title", "Nicht gefunden"),
    ("error_start_over", "Neu beginnen"),
];

/// A problem's body is a few hundred bytes; anything longer is not ours to show.
const MAX_PROBLEM_BYTES: usize = 16 * 1024;

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    c: Chrome,
    title_key: &'static str,
    /// The problem's `detail`: written by us for the client (never a secret, see
    /// `error.rs`), in English.
    detail: String,
}

/// `res` unchanged unless it is a problem+json answer; then the same answer as a page.
pub async fn as_page(res: Response, chrome: Chrome) -> Response {
    let is_problem = res
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if !is_problem {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    let detail = match to_bytes(body, MAX_PROBLEM_BYTES).await {
        Ok(bytes) => serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["detail"].as_str().map(str::to_string))
            .unwrap_or_default(),
        Err(_) => String::new(),
    };
    let page = ErrorPage {
        c: chrome,
        title_key: title_key(parts.status),
        detail,
    };
    let Ok(html) = page.render() else {
        // The template is compiled in; this cannot fail but must not panic.
        parts.status = StatusCode::INTERNAL_SERVER_ERROR;
        parts.headers.remove(CONTENT_LENGTH);
        return Response::from_parts(parts, Body::empty());
    };
    parts.headers.remove(CONTENT_LENGTH);
    parts
        .headers
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    Response::from_parts(parts, Body::from(html))
}

fn title_key(status: StatusCode) -> &'static str {
    match status {
        StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED | StatusCode::TOO_MANY_REQUESTS => "error_refused_title",
        StatusCode::NOT_FOUND => "error_not_found_title",
        _ => "error_title",
    }
}
