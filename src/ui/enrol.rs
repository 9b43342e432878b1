//! Signing in to an account whose role demands two-factor authentication it has not
//! set up (`MFA_REQUIRED_ROLES`): after the password, the person enrols right here
//! (QR code and key, confirmed with a code), sees the recovery codes once, and is
//! signed in. The password step's enrolment-only token (`pce_...`, 15 minutes) is kept
//! in the `__Host-` cookie `ENROL_COOKIE`, never in a URL; the operations are the
//! API's (`enroll_totp` and `confirm_totp` under that token), and
//! `finish_enrollment` starts the session.

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{AppendHeaders, IntoResponse, Redirect, Response};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;

use super::login::{LoginQuery, landing};
use super::pages::{Chrome, render, set_cookie};
use super::return_to::safe_return_to;
use super::two_factor::{RecoveryCodesPage, failure};
use super::{ENROL_COOKIE, Lang, SESSION_COOKIE, cookie};
use crate::domain::mfa::TotpEnrollment;
use crate::domain::{ClientContext, Portcullis};
use crate::error::{AppError, AppResult};

#[derive(Template)]
#[template(path = "enrol.html")]
struct EnrolPage<'a> {
    c: Chrome,
    message: Option<String>,
    /// None: the sign-in has expired (the page links to the sign-in page).
    setup: Option<TotpEnrollment>,
    return_to: &'a str,
}

/// The enrolment the cookie's token has pending, started now if there is none; None
/// when the token is missing, expired or spent.
async fn pending(service: &Portcullis, headers: &HeaderMap, ctx: &ClientContext) -> AppResult<Option<TotpEnrollment>> {
    let Some(token) = cookie(headers, ENROL_COOKIE).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let caller = match service.authenticate_enrollment(token).await {
        Ok(caller) => caller,
        Err(AppError::InvalidToken(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    match service.pending_totp(&caller).await? {
        Some(setup) => Ok(Some(setup)),
        None => service.enroll_totp(&caller, None, ctx).await.map(Some),
    }
}

async fn show(
    service: &Portcullis,
    lang: Lang,
    headers: &HeaderMap,
    ctx: &ClientContext,
    return_to: &str,
    failed: Option<(StatusCode, String)>,
) -> AppResult<Response> {
    let setup = pending(service, headers, ctx).await?;
    let (status, message) = match (&setup, failed) {
        (None, _) => (StatusCode::UNAUTHORIZED, Some(lang.get("code_expired").to_string())),
        (Some(_), Some((status, message))) => (status, Some(message)),
        (Some(_), None) => (StatusCode::OK, None),
    };
    let page = EnrolPage {
        c: Chrome::new(service, lang),
        message,
        setup,
        return_to,
    };
    Ok(render(status, &page))
}

/// `GET /login/enrol`: the QR code and key, and the code field; the sign-in page when
/// the browser holds no enrolment token.
pub async fn enrol_page(
    State(service): State<Portcullis>,
    lang: Lang,
    ctx: ClientContext,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> AppResult<Response> {
    let return_to = safe_return_to(&q.return_to).unwrap_or("");
    // Without a live enrolment token there is nothing to show: to the sign-in page.
    if cookie(&headers, ENROL_COOKIE).is_none_or(str::is_empty) {
        let to = format!(
            "{}?return_to={}",
            service.config().path("/login"),
            utf8_percent_encode(return_to, NON_ALPHANUMERIC)
        );
        return Ok(Redirect::to(&to).into_response());
    }
    show(&service, lang, &headers, &ctx, return_to, None).await
}

#[derive(Debug, Deserialize)]
pub struct EnrolForm {
    #[serde(default)]
    code: String,
    #[serde(default)]
    return_to: String,
}

/// `POST /login/enrol`: the code confirms the enrolment; the answer shows the recovery
/// codes once and opens the browser session.
pub async fn enrol_submit(
    State(service): State<Portcullis>,
    lang: Lang,
    ctx: ClientContext,
    headers: HeaderMap,
    Form(form): Form<EnrolForm>,
) -> AppResult<Response> {
    let return_to = safe_return_to(&form.return_to).unwrap_or("");
    let Some(token) = cookie(&headers, ENROL_COOKIE).filter(|t| !t.is_empty()) else {
        return show(&service, lang, &headers, &ctx, return_to, None).await;
    };
    match service.finish_enrollment(token, &form.code, &ctx).await {
        Ok((codes, pair)) => {
            let value = service
                .open_browser_session(&pair, cookie(&headers, SESSION_COOKIE), &ctx)
                .await?;
            let page = RecoveryCodesPage::new(Chrome::new(&service, lang), codes, landing(&service, return_to));
            let cookies = AppendHeaders([
                set_cookie(SESSION_COOKIE, &value, None),
                set_cookie(ENROL_COOKIE, "", Some(0)),
            ]);
            Ok((cookies, render(StatusCode::OK, &page)).into_response())
        }
        Err(AppError::InvalidToken(_)) => show(&service, lang, &headers, &ctx, return_to, None).await,
        Err(e) => match failure(lang, &e) {
            Some(failed) => show(&service, lang, &headers, &ctx, return_to, Some(failed)).await,
            None => Err(e),
        },
    }
}
