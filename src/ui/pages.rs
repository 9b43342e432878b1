//! What every page shares: the base layout's values, rendering, our cookies, and the
//! CSRF token of a signed-in page's forms. The pages themselves are `login`,
//! `account`, and their siblings.

use askama::Template;
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use super::assets::css_name;
use super::branding;
use super::{Lang, LangLink};
use crate::config::Config;
use crate::domain::{BrowserSession, Portcullis};
use crate::error::{AppError, AppResult};

/// What the base layout needs.
pub struct Chrome {
    pub lang: Lang,
    pub base: String,
    pub css: String,
    /// The operator's colour (`branding`), loaded after `css`.
    pub brand_css: Option<String>,
    /// The product name in the header and titles.
    pub product: String,
    pub logo: Option<String>,
    /// The language switcher.
    pub langs: Vec<LangLink>,
}

impl Chrome {
    pub fn new(service: &Portcullis, lang: Lang) -> Self {
        Self::for_config(service.config(), lang)
    }

    /// As `new`, where only the settings are at hand (the error pages).
    pub fn for_config(config: &Config, lang: Lang) -> Self {
        let base = config.server.base_path.clone();
        let css = format!("{base}/assets/{}", css_name());
        Self {
            brand_css: branding::stylesheet(config),
            product: branding::product_name(config)
                .unwrap_or_else(|| lang.get("product"))
                .to_string(),
            logo: branding::logo_src(config),
            langs: lang.switcher(),
            lang,
            base,
            css,
        }
    }
}

pub fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => AppError::internal(anyhow::anyhow!("template: {e}")).into_response(),
    }
}

/// A page whose form carries the sign-in form's token (sign-in, registration): with
/// the cookie holding it when the browser had none yet (`.1` of `ui::login_form_token`).
pub fn render_with_login_token(status: StatusCode, page: &impl Template, token: &str, new: bool) -> Response {
    let mut res = render(status, page);
    if new {
        let (name, value) = set_cookie(super::LOGIN_COOKIE, token, None);
        res.headers_mut().append(name, value);
    }
    res
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
