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
use crate::domain::{ClientContext, Portcullis, Principal};
use crate::error::{AppError, AppResult};

#[derive(Template)]
#[template(path = "enrol.html")]
struct EnrolPage<'a> {
    c: Chrome,
    message: Option<String>,
    /// False: the sign-in has expired (the page links to the sign-in page).
    live: bool,
    /// The new key and QR code, when the page starts the set-up.
    setup: Option<TotpEnrollment>,
    return_to: &'a str,
}

/// Whom the cookie's enrolment-only token stands for; None when it is missing,
/// expired or spent.
async fn enrolling(service: &Portcullis, headers: &HeaderMap) -> AppResult<Option<std::sync::Arc<Principal>>> {
    let Some(token) = cookie(headers, ENROL_COOKIE).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    match service.authenticate_enrollment(token).await {
        Ok(caller) => Ok(Some(caller)),
        Err(AppError::InvalidToken(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The enrolment page. Shown afresh (`failed` None), it starts a new key and shows it:
/// a key started elsewhere is never shown again, so someone else who knows the
/// password cannot read the key this person is adding. After a wrong code it asks for
/// the code again without the key, which the person has already added.
async fn show(
    service: &Portcullis,
    lang: Lang,
    headers: &HeaderMap,
    ctx: &ClientContext,
    return_to: &str,
    failed: Option<(StatusCode, String)>,
) -> AppResult<Response> {
    let caller = enrolling(service, headers).await?;
    let setup = match (&caller, &failed) {
        (Some(caller), None) => Some(service.enroll_totp(caller, None, ctx).await?),
        _ => None,
    };
    let live = caller.is_some();
    let (status, message) = match (live, failed) {
        (false, _) => (StatusCode::UNAUTHORIZED, Some(lang.get("code_expired").to_string())),
        (true, Some((status, message))) => (status, Some(message)),
        (true, None) => (StatusCode::OK, None),
    };
    let page = EnrolPage {
        c: Chrome::new(service, lang),
        message,
        live,
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
