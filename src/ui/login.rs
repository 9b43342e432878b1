//! Signing in: the password step, the code step, and `GET /`.

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{AppendHeaders, IntoResponse, Redirect, Response};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;

use super::pages::{Chrome, render, render_with_login_token, set_cookie};
use super::providers::{ProviderButton, provider_buttons};
use super::return_to::safe_return_to;
use super::{
    ENROL_COOKIE, Lang, MFA_COOKIE, SESSION_COOKIE, cookie, current_session, login_form_token, login_form_token_matches,
};
use crate::domain::login::LoginOutcome;
use crate::domain::mfa::SecondFactor;
use crate::domain::{ClientContext, Portcullis, TokenPair};
use crate::error::{AppError, AppResult};

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    c: Chrome,
    message: Option<String>,
    notice: Option<&'static str>,
    login: &'a str,
    return_to: &'a str,
    /// The sign-in form's token (see `ui::LOGIN_COOKIE`).
    login_token: &'a str,
    /// One button per configured upstream provider.
    providers: Vec<ProviderButton>,
    /// Self-registration is on: the page links to `/register`.
    registration_open: bool,
}

#[derive(Template)]
#[template(path = "code.html")]
struct CodePage<'a> {
    c: Chrome,
    message: Option<String>,
    return_to: &'a str,
}

/// The default landing page, or a checked `return_to`.
pub(super) fn landing(service: &Portcullis, return_to: &str) -> String {
    safe_return_to(return_to)
        .map(str::to_string)
        .unwrap_or_else(|| service.config().path("/account"))
}

/// `GET /`: the account page when signed in, else the sign-in page.
pub async fn index(State(service): State<Portcullis>, headers: HeaderMap) -> AppResult<Redirect> {
    let to = if current_session(&service, &headers).await?.is_some() {
        "/account"
    } else {
        "/login"
    };
    Ok(Redirect::to(&service.config().path(to)))
}

#[derive(Debug, Default, Deserialize)]
pub struct LoginQuery {
    #[serde(default)]
    pub(super) return_to: String,
    #[serde(default)]
    signed_out: Option<String>,
    /// `login`: show the form even to a signed-in browser (an application asked for a
    /// fresh sign-in, `prompt=login` or `max_age`).
    #[serde(default)]
    prompt: Option<String>,
    /// Pre-fills the username (an application's `login_hint`).
    #[serde(default)]
    login_hint: Option<String>,
}

impl LoginQuery {
    /// As asked for: not yet checked.
    pub(super) fn return_to(&self) -> &str {
        &self.return_to
    }
}

/// `GET /login`.
pub async fn login_page(
    State(service): State<Portcullis>,
    lang: Lang,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> AppResult<Response> {
    let again = q.prompt.as_deref() == Some("login");
    if !again && current_session(&service, &headers).await?.is_some() {
        return Ok(Redirect::to(&landing(&service, &q.return_to)).into_response());
    }
    let return_to = safe_return_to(&q.return_to).unwrap_or("");
    let notice = q.signed_out.is_some().then(|| lang.get("signed_out"));
    let login = q.login_hint.as_deref().filter(|h| h.len() <= 256).unwrap_or("");
    Ok(sign_in_form(
        &service,
        lang,
        &headers,
        (StatusCode::OK, None, notice),
        login,
        return_to,
    ))
}

/// The sign-in page with `message`, answered with `status`: where a sign-in that
/// failed elsewhere (with an upstream provider) ends.
pub(super) fn sign_in_again(
    service: &Portcullis,
    lang: Lang,
    headers: &HeaderMap,
    status: StatusCode,
    message: String,
    return_to: &str,
) -> Response {
    sign_in_form(service, lang, headers, (status, Some(message), None), "", return_to)
}

/// The sign-in page (with its status, message and notice), the username field holding
/// `login`, with the form token its browser's cookie holds (or a new one, then set).
fn sign_in_form(
    service: &Portcullis,
    lang: Lang,
    headers: &HeaderMap,
    (status, message, notice): (StatusCode, Option<String>, Option<&'static str>),
    login: &str,
    return_to: &str,
) -> Response {
    let (token, new) = login_form_token(headers);
    let page = LoginPage {
        notice,
        c: Chrome::new(service, lang),
        message,
        login,
        return_to,
        login_token: &token,
        providers: provider_buttons(service, lang, return_to),
        registration_open: service.registration_open(),
    };
    render_with_login_token(status, &page, &token, new)
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    login: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    return_to: String,
    #[serde(default)]
    login_token: String,
}

/// The browser session a finished sign-in (or registration) opens (replacing the one this browser's
/// cookie named, if any), and the way on.
pub(super) async fn signed_in(
    service: &Portcullis,
    pair: &TokenPair,
    headers: &HeaderMap,
    ctx: &ClientContext,
    return_to: &str,
) -> AppResult<Response> {
    let value = service
        .open_browser_session(pair, cookie(headers, SESSION_COOKIE), ctx)
        .await?;
    let headers = AppendHeaders([
        set_cookie(SESSION_COOKIE, &value, None),
        set_cookie(MFA_COOKIE, "", Some(0)),
    ]);
    Ok((headers, Redirect::to(&landing(service, return_to))).into_response())
}

/// `POST /login`: the password step, through `Portcullis::login` like `/auth/login`.
pub async fn login_submit(
    State(service): State<Portcullis>,
    lang: Lang,
    ctx: ClientContext,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> AppResult<Response> {
    // Before anything is checked or counted: a form another site posted (login CSRF)
    // signs no one in.
    if !login_form_token_matches(&headers, &form.login_token) {
        return Err(AppError::Forbidden(
            "this sign-in form did not come from our sign-in page: reload it and try again".into(),
        ));
    }
    let return_to = safe_return_to(&form.return_to).unwrap_or("");
    let failed = |status, message: String| {
        let page = LoginPage {
            c: Chrome::new(&service, lang),
            message: Some(message),
            notice: None,
            login: &form.login,
            return_to,
            login_token: &form.login_token,
            providers: provider_buttons(&service, lang, return_to),
            registration_open: service.registration_open(),
        };
        render(status, &page)
    };
    match service.login(&form.login, &form.password, &ctx).await {
        Ok(outcome) => after_first_factor(&service, outcome, &headers, &ctx, return_to).await,
        Err(AppError::InvalidCredentials(_)) => Ok(failed(StatusCode::UNAUTHORIZED, lang.get("login_failed").into())),
        Err(AppError::TooManyRequests { retry_after }) => Ok(locked(
            failed(StatusCode::TOO_MANY_REQUESTS, lang.too_many(retry_after)),
            retry_after,
        )),
        Err(e) => Err(e),
    }
}

/// Where a first factor (a password, or an upstream provider) leads: signed in, on to
/// the code step, or on to enrolment when the account's role demands a second factor it
/// has not set up.
pub(super) async fn after_first_factor(
    service: &Portcullis,
    outcome: LoginOutcome,
    headers: &HeaderMap,
    ctx: &ClientContext,
    return_to: &str,
) -> AppResult<Response> {
    Ok(match outcome {
        LoginOutcome::Tokens(pair) => signed_in(service, &pair, headers, ctx, return_to).await?,
        LoginOutcome::MfaRequired(challenge) => next_step(
            service,
            "/login/code",
            return_to,
            MFA_COOKIE,
            &challenge.mfa_token,
            challenge.expires_in,
        ),
        LoginOutcome::EnrollmentRequired(enrolment) => next_step(
            service,
            "/login/enrol",
            return_to,
            ENROL_COOKIE,
            &enrolment.access_token,
            enrolment.expires_in,
        ),
    })
}

/// On to the sign-in's next step (`path`), its token in the cookie `name` for `ttl`
/// seconds (never in the URL).
fn next_step(service: &Portcullis, path: &str, return_to: &str, name: &str, token: &str, ttl: u64) -> Response {
    let to = format!(
        "{}?return_to={}",
        service.config().path(path),
        utf8_percent_encode(return_to, NON_ALPHANUMERIC)
    );
    ([set_cookie(name, token, Some(ttl))], Redirect::to(&to)).into_response()
}

/// A page that says "too many attempts", with the `Retry-After` the API gives too.
fn locked(mut page: Response, retry_after: u64) -> Response {
    page.headers_mut().insert(RETRY_AFTER, HeaderValue::from(retry_after));
    page
}

/// `GET /login/code`: the second step.
pub async fn code_page(State(service): State<Portcullis>, lang: Lang, Query(q): Query<LoginQuery>) -> Response {
    let page = CodePage {
        c: Chrome::new(&service, lang),
        message: None,
        return_to: safe_return_to(&q.return_to).unwrap_or(""),
    };
    render(StatusCode::OK, &page)
}

#[derive(Debug, Deserialize)]
pub struct CodeForm {
    #[serde(default)]
    code: String,
    #[serde(default)]
    return_to: String,
}

/// `POST /login/code`: a TOTP code (six digits) or a recovery code, through
/// `Portcullis::verify_mfa` like `/auth/mfa/verify`.
pub async fn code_submit(
    State(service): State<Portcullis>,
    lang: Lang,
    ctx: ClientContext,
    headers: HeaderMap,
    Form(form): Form<CodeForm>,
) -> AppResult<Response> {
    let return_to = safe_return_to(&form.return_to).unwrap_or("");
    let again = |status, message: String| {
        let page = CodePage {
            c: Chrome::new(&service, lang),
            message: Some(message),
            return_to,
        };
        render(status, &page)
    };
    let Some(ticket) = cookie(&headers, MFA_COOKIE).filter(|t| !t.is_empty()) else {
        return Ok(again(StatusCode::UNAUTHORIZED, lang.get("code_expired").into()));
    };
    match service.verify_mfa(ticket, SecondFactor::typed(&form.code), &ctx).await {
        Ok(pair) => signed_in(&service, &pair, &headers, &ctx, return_to).await,
        Err(AppError::InvalidCredentials(_)) => Ok(again(StatusCode::UNAUTHORIZED, lang.get("code_failed").into())),
        Err(AppError::TooManyRequests { retry_after }) => Ok(locked(
            again(StatusCode::TOO_MANY_REQUESTS, lang.too_many(retry_after)),
            retry_after,
        )),
        Err(e) => Err(e),
    }
}
