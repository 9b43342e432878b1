//! The hosted pages: sign-in and the account page, server-rendered from templates
//! compiled into the binary (askama, escaping by default), with embedded CSS and one
//! small embedded script that only adds to a page (`assets`). Each page is a route of
//! `http::routes`'s table (marked `.page()`), with its access rule; handlers call the
//! same domain operations as the JSON API.
//!
//! Applied once, by layer, to every page (`page_layer`): the strict Content-Security-
//! Policy, and for a POST the cross-site check (`Sec-Fetch-Site`, else `Origin`). The
//! forms of a signed-in page also carry the session's CSRF token, checked by the
//! handler's `CsrfForm` extractor.

pub mod account;
pub mod api_keys;
pub mod apps;
mod assets;
pub mod authorize;
mod branding;
pub mod device;
pub mod enrol;
mod errors;
mod field_errors;
mod i18n;
pub mod identities;
pub mod login;
pub mod logout;
pub mod pages;
pub mod profile;
mod providers;
pub mod register;
mod return_to;
pub mod sessions;
pub mod step_up;
pub mod two_factor;
pub mod upstream;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{CONTENT_SECURITY_POLICY, COOKIE, HOST, ORIGIN};
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

use crate::config::Config;
use crate::domain::{BrowserSession, Portcullis};
use crate::error::{AppError, AppResult};
pub use assets::asset;
use i18n::picked_in_query;
pub use i18n::{Lang, LangLink};

/// A part of a language's message catalogue (see `i18n`): (key, text), placeholders
/// `{n}`. Page modules keep their own strings beside their handlers.
pub type Messages = &'static [(&'static str, &'static str)];

/// The browser session's cookie. `__Host-`: Secure, Path=/, no Domain, so no other
/// host or path can set or shadow it. Browsers treat `http://127.0.0.1` and
/// `localhost` as secure, so it works in local development too.
pub const SESSION_COOKIE: &str = "__Host-portcullis";
/// The pending second step of a sign-in (the MFA challenge), for five minutes.
pub const MFA_COOKIE: &str = "__Host-portcullis-mfa";
/// The enrolment-only token of a sign-in whose account must set up two-factor
/// authentication first (`enrol`), for fifteen minutes.
pub const ENROL_COOKIE: &str = "__Host-portcullis-enrol";
/// The sign-in form's token (login CSRF): the form carries the value this cookie holds.
/// Another site can neither read nor set a `__Host-` cookie, so a sign-in form it posts
/// cannot match, even from a browser that sends no `Sec-Fetch-Site` and `Origin: null`.
pub const LOGIN_COOKIE: &str = "__Host-portcullis-login";
/// Ties a redirect flow with an upstream provider to the browser that began it (the
/// API's and the pages' flows alike): its callback must come back with it.
pub const OAUTH_COOKIE: &str = "__Host-portcullis-oauth";

/// The sign-in form's token: the one the browser's cookie already holds, else a new
/// one (the caller sets the cookie when `.1` is true).
pub fn login_form_token(headers: &HeaderMap) -> (String, bool) {
    match cookie(headers, LOGIN_COOKIE).filter(|v| crate::crypto::tokens::looks_like_token(v)) {
        Some(value) => (value.to_string(), false),
        None => (crate::crypto::tokens::random_token(), true),
    }
}

/// Whether a posted sign-in form carries the token its browser's cookie holds.
pub fn login_form_token_matches(headers: &HeaderMap, presented: &str) -> bool {
    use subtle::ConstantTimeEq;
    cookie(headers, LOGIN_COOKIE)
        .filter(|v| !v.is_empty())
        .is_some_and(|v| bool::from(v.as_bytes().ct_eq(presented.as_bytes())))
}

/// What every page needs: the header values computed once at start-up, the settings
/// its error pages are drawn with, and which paths are the API's (`fallback_layer`).
pub struct PagePolicy {
    csp: HeaderValue,
    config: Config,
    /// The first segment of every API path (`auth`, `admin`, `health`...).
    api_segments: Vec<String>,
}

impl PagePolicy {
    /// `api_paths`: the route table's paths that are not pages.
    pub fn new<'a>(config: &Config, api_paths: impl IntoIterator<Item = &'a str>) -> Self {
        let mut api_segments: Vec<String> = api_paths.into_iter().map(|p| first_segment(p).to_string()).collect();
        api_segments.sort();
        api_segments.dedup();
        Self {
            csp: page_csp(config),
            config: config.clone(),
            api_segments,
        }
    }

    /// Whether a path no route matched would be a page's: under the base path, and
    /// not under any of the API's first segments.
    fn is_page_path(&self, path: &str) -> bool {
        path.strip_prefix(&self.config.server.base_path)
            .filter(|rest| rest.is_empty() || rest.starts_with('/'))
            .is_some_and(|rest| !self.api_segments.iter().any(|s| s == first_segment(rest)))
    }
}

/// The pages' Content-Security-Policy, from the settings: scripts and styles only our
/// own, images ours (and a logo's origin), forms posting to us and the upstream
/// providers, nothing framing us.
fn page_csp(config: &Config) -> HeaderValue {
    page_csp_with(config, None)
}

/// The pages' CSP for a page whose form posts to (or is answered with a redirect to)
/// an application's `redirect_uri` as well: the authorization endpoint's pages.
pub fn page_csp_posting_to(config: &Config, redirect_uri: &str) -> HeaderValue {
    // A custom scheme (a native app's `com.example.app:/cb`) has no origin: its scheme.
    let source = origin_of(redirect_uri).or_else(|| {
        let scheme = redirect_uri.split_once(':')?.0;
        scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
            .then(|| format!("{scheme}:"))
    });
    page_csp_with(config, source)
}

fn page_csp_with(config: &Config, extra_form_action: Option<String>) -> HeaderValue {
    // Forms may post to ourselves and to the upstream providers (their sign-in; a
    // form that links a provider is answered with a redirect to its authorization
    // endpoint, which form-action governs too).
    let mut form_action = vec!["'self'".to_string()];
    form_action.extend(extra_form_action);
    for p in &config.oauth.providers {
        let endpoint = p.endpoints.authorization.as_deref();
        for origin in [Some(p.issuer.as_str()), endpoint]
            .into_iter()
            .flatten()
            .filter_map(origin_of)
        {
            if !form_action.contains(&origin) {
                form_action.push(origin);
            }
        }
    }
    // A logo elsewhere (an https URL, see `branding`) is an image the pages load.
    let img_src = match branding::logo_origin(config) {
        Some(origin) => format!("'self' data: {origin}"),
        None => "'self' data:".to_string(),
    };
    let csp = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src {img_src}; form-action {}; base-uri 'none'; frame-ancestors 'none'; object-src 'none'",
        form_action.join(" ")
    );
    HeaderValue::from_str(&csp).unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"))
}

/// `auth` of `/auth/login`.
fn first_segment(path: &str) -> &str {
    path.trim_start_matches('/').split('/').next().unwrap_or_default()
}

/// A page answered by a route that is not a page's (the upstream providers' callback,
/// which the API shares) gets the pages' CSP all the same.
pub fn with_page_policy(service: &Portcullis, mut res: Response) -> Response {
    res.headers_mut()
        .entry(CONTENT_SECURITY_POLICY)
        .or_insert_with(|| page_csp(service.config()));
    res
}

/// `scheme://host[:port]` of a URL, if it has one.
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split(['/', '?', '#']).next()?;
    (!host.is_empty() && !host.contains(char::is_whitespace) && !host.contains(';'))
        .then(|| format!("{scheme}://{host}"))
}

/// Around every page (outside its rate limit, so a 429 is a page too): the cross-site
/// check for anything but GET/HEAD, then the answer as a page in the person's language
/// when it is an error (`errors`), the language the switcher picked remembered, and
/// the page's headers (the app's layer adds nosniff, no-referrer and
/// `Cache-Control: no-store`).
pub async fn page_layer(State(policy): State<Arc<PagePolicy>>, req: Request, next: Next) -> Response {
    let as_page = !errors::wants_json(req.headers());
    let lang = Lang::of_request(req.headers(), req.uri());
    let uri = req.uri().clone();
    if req.method() != Method::GET && req.method() != Method::HEAD && !same_origin(req.headers()) {
        let refused = AppError::Forbidden("cross-site form posts are refused".into()).into_response();
        return dress(&policy, lang, None, as_page, &uri, refused).await;
    }
    let picked = i18n::picked_in_query(&uri);
    let res = i18n::with_page_query(&uri, next.run(req)).await;
    dress(&policy, lang, picked, as_page, &uri, res).await
}

/// Around the router's answers for paths no route matches (404) and methods a path
/// does not take (405): on a page's path, to a browser (`Accept: text/html`), the
/// same dress as `page_layer`'s; anything else stays the API's problem+json.
pub async fn fallback_layer(State(policy): State<Arc<PagePolicy>>, req: Request, next: Next) -> Response {
    if !policy.is_page_path(req.uri().path()) || !errors::wants_html(req.headers()) {
        return next.run(req).await;
    }
    let lang = Lang::of_request(req.headers(), req.uri());
    let uri = req.uri().clone();
    let res = next.run(req).await;
    dress(&policy, lang, None, true, &uri, res).await
}

/// An answer on a page's path: an error as a page (unless JSON was asked for), the
/// picked language remembered, and the CSP.
async fn dress(
    policy: &PagePolicy,
    lang: Lang,
    picked: Option<Lang>,
    as_page: bool,
    uri: &axum::http::Uri,
    res: Response,
) -> Response {
    let mut res = if as_page {
        i18n::with_page_query(uri, errors::as_page(&policy.config, lang, res)).await
    } else {
        res
    };
    if let Some(picked) = picked {
        // A year: the choice is the person's, not the browser's language setting.
        let (name, value) = pages::set_cookie(i18n::LANG_COOKIE, picked.code, Some(365 * 24 * 3600));
        res.headers_mut().append(name, value);
    }
    res.headers_mut()
        .entry(CONTENT_SECURITY_POLICY)
        .or_insert_with(|| policy.csp.clone());
    res
}

/// Whether a POST comes from one of our own pages. Browsers send `Sec-Fetch-Site`:
/// only `same-origin` passes. Without it, an `Origin` must name the `Host` asked for;
/// `Origin: null` (Chromium's under `Referrer-Policy: no-referrer`) is not proof, so
/// then the form token alone decides. A request with neither header is not a
/// browser's, and cannot carry a victim's cookie across sites.
fn same_origin(headers: &HeaderMap) -> bool {
    let text = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    if let Some(site) = text("sec-fetch-site") {
        return site == "same-origin";
    }
    match (text(ORIGIN.as_str()), text(HOST.as_str())) {
        (None | Some("null"), _) => true,
        (Some(origin), Some(host)) => origin
            .split_once("://")
            .is_some_and(|(scheme, h)| (scheme == "http" || scheme == "https") && h.eq_ignore_ascii_case(host)),
        (Some(_), None) => false,
    }
}

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The live browser session the request's cookie names, if any.
pub async fn current_session(service: &Portcullis, headers: &HeaderMap) -> AppResult<Option<BrowserSession>> {
    match cookie(headers, SESSION_COOKIE) {
        Some(value) => service.browser_session(value).await,
        None => Ok(None),
    }
}

/// The rule `Access::SignedIn`, for the guard: a live browser session is attached to
/// the request (None), or the answer sends the browser to sign in (after which a GET
/// comes back here).
pub async fn signed_in(service: &Portcullis, req: &mut Request) -> AppResult<Option<Response>> {
    if let Some(session) = current_session(service, req.headers()).await? {
        req.extensions_mut().insert(session);
        return Ok(None);
    }
    let mut to = service.config().path("/login");
    if req.method() == Method::GET
        && let Some(pq) = req.uri().path_and_query()
    {
        to = format!("{to}?return_to={}", utf8_percent_encode(pq.as_str(), NON_ALPHANUMERIC));
    }
    Ok(Some(Redirect::to(&to).into_response()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posts_from_other_sites_are_refused() {
        let h = |pairs: &[(&'static str, &'static str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(*k, HeaderValue::from_static(v));
            }
            m
        };
        assert!(same_origin(&h(&[("sec-fetch-site", "same-origin")])));
        assert!(!same_origin(&h(&[("sec-fetch-site", "cross-site")])));
        assert!(!same_origin(&h(&[
            ("sec-fetch-site", "same-site"),
            ("origin", "http://a:1"),
            ("host", "a:1")
        ])));
        assert!(same_origin(&h(&[("origin", "http://a:1"), ("host", "a:1")])));
        assert!(!same_origin(&h(&[("origin", "http://evil.example"), ("host", "a:1")])));
        assert!(same_origin(&h(&[("origin", "null"), ("host", "a:1")])));
        assert_eq!(
            origin_of("https://accounts.google.com/x").as_deref(),
            Some("https://accounts.google.com")
        );
    }
}
