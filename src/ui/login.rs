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
use super::return_to::safe_return_to;
use super::{Lang, MFA_COOKIE, SESSION_COOKIE, cookie, current_session, login_form_token, login_form_token_matches};
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
fn landing(service: &Portcullis, return_to: &str) -> String {
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
    return_to: String,
    #[serde(default)]
    signed_out: Option<String>,
    /// Set by `/register` when the new account must sign in (and enrol) first.
    #[serde(default)]
    registered: Option<String>,
}

/// `GET /login`.
pub async fn login_page(
    State(service): State<Portcullis>,
    lang: Lang,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> AppResult<Response> {
    if current_session(&service, &headers).await?.is_some() {
        return Ok(Redirect::to(&landing(&service, &q.return_to)).into_response());
    }
    let return_to = safe_return_to(&q.return_to).unwrap_or("");
    let (token, new) = login_form_token(&headers);
    let page = LoginPage {
        notice: match (&q.signed_out, &q.registered) {
            (Some(_), _) => Some(lang.get("signed_out")),
            (None, Some(_)) => Some(lang.get("registered")),
            (None, None) => None,
        },
        c: Chrome::new(&service, lang),
        message: None,
        login: "",
        return_to,
        login_token: &token,
        registration_open: service.registration_open(),
    };
    Ok(render_with_login_token(&page, &token, new))
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

/// The browser session a finished sign-in (or registration) opens, and the way on.
pub(super) async fn signed_in(service: &Portcullis, pair: &TokenPair, return_to: &str) -> AppResult<Response> {
    let value = service.open_browser_session(pair).await?;
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
            registration_open: service.registration_open(),
        };
        render(status, &page)
    };
    match service.login(&form.login, &form.password, &ctx).await {
        Ok(LoginOutcome::Tokens(pair)) => signed_in(&service, &pair, return_to).await,
        Ok(LoginOutcome::MfaRequired(challenge)) => {
            let to = format!(
                "{}?return_to={}",
                service.config().path("/login/code"),
                utf8_percent_encode(return_to, NON_ALPHANUMERIC)
            );
            let ttl = challenge.expires_in;
            Ok((
                [set_cookie(MFA_COOKIE, &challenge.mfa_token, Some(ttl))],
                Redirect::to(&to),
            )
                .into_response())
        }
        Ok(LoginOutcome::EnrollmentRequired(_)) => {
            Ok(failed(StatusCode::FORBIDDEN, lang.get("enrol_required").to_string()))
        }
        Err(AppError::InvalidCredentials(_)) => Ok(failed(StatusCode::UNAUTHORIZED, lang.get("login_failed").into())),
        Err(AppError::TooManyRequests { retry_after }) => Ok(locked(
            failed(StatusCode::TOO_MANY_REQUESTS, lang.too_many(retry_after)),
            retry_after,
        )),
        Err(e) => Err(e),
    }
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
        Ok(pair) => signed_in(&service, &pair, return_to).await,
        Err(AppError::InvalidCredentials(_)) => Ok(again(StatusCode::UNAUTHORIZED, lang.get("code_failed").into())),
        Err(AppError::TooManyRequests { retry_after }) => Ok(locked(
            again(StatusCode::TOO_MANY_REQUESTS, lang.too_many(retry_after)),
            retry_after,
        )),
        Err(e) => Err(e),
    }
}
