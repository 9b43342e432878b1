//! What every page shares: the base layout's values, rendering, our cookies, and the
//! CSRF token of a signed-in page's forms. The pages themselves are `login`,
//! `account`, and their siblings.

use askama::Template;
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use super::Lang;
use super::assets::css_name;
use crate::domain::{BrowserSession, Portcullis};
use crate::error::{AppError, AppResult};

/// What the base layout needs.
pub struct Chrome {
    pub lang: Lang,
    pub base: String,
    pub css: String,
}

impl Chrome {
    pub fn new(service: &Portcullis, lang: Lang) -> Self {
        Self::with_base(lang, service.config().server.base_path.clone())
    }

    /// For the page layer, which has the configuration's base path but no service.
    pub fn with_base(lang: Lang, base: String) -> Self {
        let css = format!("{base}/assets/{}", css_name());
        Self { lang, base, css }
    }
}

pub fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => AppError::internal(anyhow::anyhow!("template: {e}")).into_response(),
    }
}

/// A cookie of ours: `__Host-` rules (Secure, Path=/, no Domain), HttpOnly, Lax.
pub fn set_cookie(name: &str, value: &str, max_age: Option<u64>) -> (axum::http::HeaderName, HeaderValue) {
    let age = max_age.map(|s| format!("; Max-Age={s}")).unwrap_or_default();
    let text = format!("{name}={value}; Path=/; Secure; HttpOnly; SameSite=Lax{age}");
    (
        SET_COOKIE,
        HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("")),
    )
}

/// A signed-in page's form: its CSRF token must be the session's.
#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

pub fn check_csrf(session: &BrowserSession, form: &CsrfForm) -> AppResult<()> {
    if session.csrf_matches(&form.csrf) {
        Ok(())
    } else {
        Err(AppError::Forbidden(
            "the form's CSRF token is missing or wrong; reload the page".into(),
        ))
    }
}

/// How the pages show a moment: to the minute, in UTC.
pub fn when(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}
