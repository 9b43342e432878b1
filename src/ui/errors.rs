//! Error answers on the pages: a person whose form was refused (403), who followed a
//! dead link (404), used a page the wrong way (405), was rate limited (429) or met a
//! fault (500) gets a page in their language, with the pages' CSP, instead of the
//! problem+json the API answers. Applied once, by `ui::page_layer` (and for paths no
//! route matches, `ui::fallback_layer`), to whatever answer a handler, extractor, guard
//! or limiter gave: `AppError` keeps one mapping to HTTP, this only dresses it.
//! Clients that ask for JSON (`Accept: application/json`) keep the problem.

use askama::Template;
use axum::body::{Body, to_bytes};
use axum::http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::pages::{Chrome, render};
use super::{Lang, Messages};
use crate::config::Config;

/// The longest problem body read back for its `detail`.
const PROBLEM_MAX_BYTES: usize = 16 * 1024;

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    c: Chrome,
    heading: &'static str,
    message: String,
    /// The problem's `detail` (written for clients, never a secret), for a 4xx.
    detail: Option<String>,
}

/// The client asked for JSON rather than a page.
pub fn wants_json(headers: &HeaderMap) -> bool {
    let accept = headers.get(ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or_default();
    accept.contains("json") && !accept.contains("text/html")
}

/// The client asked for a page (a browser's navigation says `text/html`).
pub fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"))
}

/// `res` as a page when it is an error that is not one already; else unchanged. Its
/// status and headers (`Retry-After`, `Allow`...) stay.
pub async fn as_page(config: &Config, lang: Lang, res: Response) -> Response {
    let status = res.status();
    let content_type = res
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if !(status.is_client_error() || status.is_server_error()) || content_type.starts_with("text/html") {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    let detail = if content_type == "application/problem+json" && status.is_client_error() {
        problem_detail(body).await
    } else {
        None
    };
    let retry_after = parts
        .headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let (heading, message) = words(lang, status, retry_after);
    let page = ErrorPage {
        c: Chrome::for_config(config, lang),
        heading,
        message,
        detail,
    };
    let rendered = render(status, &page);
    parts.headers.remove(CONTENT_TYPE);
    parts.headers.remove(CONTENT_LENGTH);
    let (new_parts, body) = rendered.into_parts();
    parts.headers.extend(new_parts.headers);
    Response::from_parts(parts, body)
}

async fn problem_detail(body: Body) -> Option<String> {
    let bytes = to_bytes(body, PROBLEM_MAX_BYTES).await.ok()?;
    let problem: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    problem["detail"].as_str().map(str::to_string)
}

/// The heading and the sentence for a status, in `lang`.
fn words(lang: Lang, status: StatusCode, retry_after: Option<u64>) -> (&'static str, String) {
    let (heading, message) = match status.as_u16() {
        403 => (lang.get("error_forbidden_title"), lang.get("error_forbidden")),
        404 => (lang.get("error_not_found_title"), lang.get("error_not_found")),
        405 => (lang.get("error_method_title"), lang.get("error_method")),
        429 => {
            let wait = lang.too_many(retry_after.unwrap_or(60));
            return (lang.get("error_too_many_title"), wait);
        }
        500.. => (lang.get("error_internal_title"), lang.get("error_internal")),
        _ => (lang.get("error_bad_request_title"), lang.get("error_bad_request")),
    };
    (heading, message.to_string())
}

pub const EN: Messages = &[
    ("error_bad_request_title", "This request could not be handled"),
    (
        "error_bad_request",
        "The request was not valid. Please go back and try again.",
    ),
    ("error_forbidden_title", "Not allowed"),
    (
        "error_forbidden",
        "This request was refused. If you sent a form, reload its page and try again.",
    ),
    ("error_not_found_title", "Page not found"),
    ("error_not_found", "There is no page at this address."),
    ("error_method_title", "Not possible here"),
    ("error_method", "This page cannot be used this way."),
    ("error_too_many_title", "Too many requests"),
    ("error_internal_title", "Something went wrong"),
    (
        "error_internal",
        "An error on our side stopped this request. Please try again later.",
    ),
    ("error_home", "Go to the start page"),
];

pub const DE: Messages = &[
    (
        "error_bad_request_title",
        "Diese Anfrage konnte nicht bearbeitet werden",
    ),
    (
        "error_bad_request",
        "Die Anfrage war ungültig. Bitte gehen Sie zurück und versuchen Sie es erneut.",
    ),
    ("error_forbidden_title", "Nicht erlaubt"),
    (
        "error_forbidden",
        "Diese Anfrage wurde abgelehnt. Wenn Sie ein Formular gesendet haben, laden Sie seine Seite neu und versuchen Sie es erneut.",
    ),
    ("error_not_found_title", "Seite nicht gefunden"),
    ("error_not_found", "Unter dieser Adresse gibt es keine Seite."),
    ("error_method_title", "Hier nicht möglich"),
    ("error_method", "Diese Seite kann so nicht verwendet werden."),
    ("error_too_many_title", "Zu viele Anfragen"),
    ("error_internal_title", "Etwas ist schiefgelaufen"),
    (
        "error_internal",
        "Ein Fehler auf unserer Seite hat diese Anfrage gestoppt. Bitte versuchen Sie es später erneut.",
    ),
    ("error_home", "Zur Startseite"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn browsers_get_pages_and_json_clients_json() {
        let h = |accept: &'static str| {
            let mut m = HeaderMap::new();
            m.insert(ACCEPT, HeaderValue::from_static(accept));
            m
        };
        let browser = h("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8");
        assert!(wants_html(&browser) && !wants_json(&browser));
        assert!(wants_json(&h("application/json")) && !wants_html(&h("application/json")));
        assert!(wants_json(&h("application/problem+json")));
        assert!(!wants_json(&HeaderMap::new()) && !wants_html(&HeaderMap::new()));
    }

    /// A fault is a page that says so, without its cause; a 4xx keeps its reason.
    #[tokio::test]
    async fn faults_and_refusals_become_pages() {
        use axum::response::IntoResponse;

        use crate::error::AppError;
        let config = Config::from_sources(&crate::config::Sources::default()).unwrap();
        let body = async |res: Response| {
            let bytes = to_bytes(res.into_body(), 1 << 20).await.unwrap();
            String::from_utf8(bytes.to_vec()).unwrap()
        };
        let fault = AppError::internal(anyhow::anyhow!("disk on fire")).into_response();
        let page = as_page(&config, Lang::named("de").unwrap(), fault).await;
        assert_eq!(page.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(page.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
        let text = body(page).await;
        assert!(
            text.contains("Etwas ist schiefgelaufen") && !text.contains("disk on fire"),
            "{text}"
        );
        let limited = AppError::TooManyRequests { retry_after: 125 }.into_response();
        let page = as_page(&config, Lang::english(), limited).await;
        assert_eq!(page.headers()[RETRY_AFTER], "125");
        assert!(body(page).await.contains("try again in 3 minutes"));
        let refused = AppError::Forbidden("the form's CSRF token is missing".into()).into_response();
        let text = body(as_page(&config, Lang::english(), refused).await).await;
        assert!(
            text.contains("Not allowed") && text.contains("CSRF token is missing"),
            "{text}"
        );
    }
}
