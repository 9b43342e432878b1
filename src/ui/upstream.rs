//! Signing in with an upstream provider from the sign-in page: its button starts the
//! redirect flow (`GET /login/oauth/{provider}`), and the provider's return to the one
//! callback (`http::oauth::callback`) ends here for the page's flows: a browser
//! session as after a password (`open_browser_session`), the code step when the
//! account has a second factor, and a checked `return_to`.

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};

use super::login::{LoginQuery, after_first_factor, sign_in_again};
use super::pages::set_cookie;
use super::providers::{Attempt, display_name, failure};
use super::return_to::safe_return_to;
use super::{Lang, OAUTH_COOKIE};
use crate::domain::oauth::RedirectFlow;
use crate::domain::{ClientContext, Portcullis};
use crate::error::{AppError, AppResult};

/// How long the browser keeps a flow's cookie: as long as the flow's `state` lives.
const FLOW_COOKIE_SECONDS: u64 = 600;

/// `GET /login/oauth/{provider}`: a provider button; off to the provider, with the
/// cookie that ties the flow to this browser. A browser already signed in goes where
/// `/login` would send it: a link on another site must not swap its session for the
/// account the provider maps to.
pub async fn start(
    State(service): State<Portcullis>,
    lang: Lang,
    headers: HeaderMap,
    Path(provider): Path<String>,
    Query(q): Query<LoginQuery>,
) -> AppResult<Response> {
    let return_to = safe_return_to(q.return_to()).unwrap_or("");
    if super::current_session(&service, &headers).await?.is_some() {
        return Ok(Redirect::to(&super::login::landing(&service, return_to)).into_response());
    }
    match service.oauth_page_authorize_url(&provider, return_to).await {
        Ok((url, browser)) => Ok(to_provider(&url, &browser)),
        Err(e) => failed(&service, lang, &headers, &provider, e, return_to),
    }
}

/// The answer that sends a browser to the provider, with the flow's cookie.
pub(super) fn to_provider(url: &str, browser: &str) -> Response {
    (
        [set_cookie(OAUTH_COOKIE, browser, Some(FLOW_COOKIE_SECONDS))],
        Redirect::to(url),
    )
        .into_response()
}

/// The end of the sign-in page's flow (the callback found it was one): signed in, on
/// to the code step, or back on the sign-in page with what went wrong.
pub async fn finish_sign_in(
    service: &Portcullis,
    lang: Lang,
    headers: &HeaderMap,
    flow: &RedirectFlow,
    code: Option<&str>,
    error: Option<&str>,
    ctx: &ClientContext,
) -> AppResult<Response> {
    let return_to = safe_return_to(&flow.target).unwrap_or("");
    match service.oauth_flow_login(flow, code, error, ctx).await {
        Ok(outcome) => after_first_factor(service, outcome, headers, ctx, return_to).await,
        Err(e) => failed(service, lang, headers, &flow.provider, e, return_to),
    }
}

/// The sign-in page again, saying why; our own failures stay errors.
fn failed(
    service: &Portcullis,
    lang: Lang,
    headers: &HeaderMap,
    provider: &str,
    e: AppError,
    return_to: &str,
) -> AppResult<Response> {
    let name = display_name(service, provider);
    match failure(lang, &name, Attempt::SignIn, &e) {
        Some((status, message)) => Ok(sign_in_again(service, lang, headers, status, message, return_to)),
        None => Err(e),
    }
}
