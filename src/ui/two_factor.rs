//! The two-factor page (`/account/two-factor`): the factor's status, enrolment (QR
//! code and key, confirmed with a code), the recovery codes shown once, new recovery
//! codes, and turning the factor off. Every action is the JSON API's own domain
//! operation (`/auth/mfa/*`), called as the browser session's person:
//!
//! - starting enrolment asks for the password in its form, as `enroll_totp` asks any
//!   session for it (a stolen cookie alone must not put someone else's authenticator on
//!   the account); no step-up besides, which would ask for the same thing twice;
//! - new recovery codes take a current code or recovery code, as the API's do;
//! - turning the factor off asks for the password and a code, as the API does
//!   (`disable_totp`), however recent the sign-in.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;

use super::pages::{Chrome, CsrfForm, check_csrf, render};
use super::{Lang, Messages};
use crate::domain::mfa::{SecondFactor, TotpEnrollment};
use crate::domain::{BrowserSession, ClientContext, Portcullis};
use crate::error::{AppError, AppResult};

#[derive(Template)]
#[template(path = "two_factor.html")]
struct TwoFactorPage<'a> {
    c: Chrome,
    csrf: &'a str,
    message: Option<String>,
    notice: Option<&'static str>,
    /// The catalogue key of the status: `tf_off`, `tf_pending` or `tf_on`.
    status_key: &'static str,
    on: bool,
    required: bool,
    codes_left: i64,
    /// Set-up started, not confirmed: the page asks for a code.
    pending: bool,
    /// The new key and QR code, only in the answer to the form that started the set-up
    /// (with the password): a later visit, perhaps from another session of someone who
    /// knows the password, never sees it.
    setup: Option<TotpEnrollment>,
    /// Whether starting enrolment asks for the password (an account made by a
    /// provider sign-in has none).
    has_password: bool,
}

/// The recovery codes, shown once: in the page, and as a text file to download.
#[derive(Template)]
#[template(path = "recovery_codes.html")]
pub struct RecoveryCodesPage {
    pub c: Chrome,
    pub codes: Vec<String>,
    /// A `data:` URL of the codes as text: a download needs no script and no second
    /// request, so the codes exist nowhere but in this one answer.
    pub download: String,
    /// Where "Continue" goes.
    pub next: String,
}

impl RecoveryCodesPage {
    pub fn new(c: Chrome, codes: Vec<String>, next: String) -> Self {
        let mut text = format!("{}\r\n\r\n", c.lang.get("tf_codes_file"));
        for code in &codes {
            text.push_str(code);
            text.push_str("\r\n");
        }
        let download = format!(
            "data:text/plain;charset=utf-8,{}",
            utf8_percent_encode(&text, NON_ALPHANUMERIC)
        );
        Self {
            c,
            codes,
            download,
            next,
        }
    }
}

/// What a failed action says, and its status; None for an error the page does not
/// explain (it becomes the usual problem answer).
pub fn failure(lang: Lang, e: &AppError) -> Option<(StatusCode, String)> {
    match e {
        AppError::Validation(fields) if fields.iter().any(|f| f.field == "password") => {
            Some((StatusCode::UNPROCESSABLE_ENTITY, lang.get("tf_bad_password").into()))
        }
        AppError::Validation(_) => Some((StatusCode::UNPROCESSABLE_ENTITY, lang.get("tf_bad_code").into())),
        AppError::Conflict(_) | AppError::NotFound(_) => Some((StatusCode::CONFLICT, lang.get("tf_changed").into())),
        AppError::TooManyRequests { retry_after } => Some((StatusCode::TOO_MANY_REQUESTS, lang.too_many(*retry_after))),
        _ => None,
    }
}

/// The page as this session's person sees it now, with a message or notice.
async fn show(
    service: &Portcullis,
    lang: Lang,
    session: &BrowserSession,
    status: StatusCode,
    message: Option<String>,
    notice: Option<&'static str>,
) -> AppResult<Response> {
    show_with(service, lang, session, status, message, notice, None).await
}

/// `show`, with the key and QR code of a set-up just started.
async fn show_with(
    service: &Portcullis,
    lang: Lang,
    session: &BrowserSession,
    status: StatusCode,
    message: Option<String>,
    notice: Option<&'static str>,
    setup: Option<TotpEnrollment>,
) -> AppResult<Response> {
    let mfa = service.mfa_status(session.user_id).await?;
    let on = mfa.totp == "enabled";
    let page = TwoFactorPage {
        c: Chrome::new(service, lang),
        csrf: &session.csrf_token,
        message,
        notice,
        status_key: match mfa.totp {
            "enabled" => "tf_on",
            "pending" => "tf_pending",
            _ => "tf_off",
        },
        on,
        required: mfa.required,
        codes_left: mfa.recovery_codes_left,
        pending: mfa.totp == "pending",
        setup,
        has_password: service.user(session.user_id).await?.password_hash.is_some(),
    };
    Ok(render(status, &page))
}

/// The page again after a failed action: its message, or the error itself.
async fn show_failure(service: &Portcullis, lang: Lang, session: &BrowserSession, e: AppError) -> AppResult<Response> {
    match failure(lang, &e) {
        Some((status, message)) => show(service, lang, session, status, Some(message), None).await,
        None => Err(e),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct DoneQuery {
    #[serde(default)]
    done: Option<String>,
}

/// `GET /account/two-factor`.
pub async fn page(
    State(service): State<Portcullis>,
    lang: Lang,
    Extension(session): Extension<BrowserSession>,
    Query(q): Query<DoneQuery>,
) -> AppResult<Response> {
    let notice = match q.done.as_deref() {
        Some("off") => Some(lang.get("tf_now_off")),
        _ => None,
    };
    show(&service, lang, &session, StatusCode::OK, None, notice).await
}

fn back_to_page(service: &Portcullis, done: Option<&str>) -> Response {
    let mut to = service.config().path("/account/two-factor");
    if let Some(done) = done {
        to = format!("{to}?done={done}");
    }
    Redirect::to(&to).into_response()
}

#[derive(Debug, Deserialize)]
pub struct EnrolForm {
    #[serde(flatten)]
    csrf: CsrfForm,
    #[serde(default)]
    password: String,
}

/// `POST /account/two-factor/enrol`: starts (or restarts) enrolment, as
/// `/auth/mfa/totp/enroll`; the page then shows the QR code and key.
pub async fn enrol(
    State(service): State<Portcullis>,
    lang: Lang,
    ctx: ClientContext,
    Extension(session): Extension<BrowserSession>,
    Form(form): Form<EnrolForm>,
) -> AppResult<Response> {
    check_csrf(&session, &form.csrf)?;
    let principal = service.browser_principal(&session).await?;
    match service.enroll_totp(&principal, Some(&form.password), &ctx).await {
        Ok(setup) => show_with(&service, lang, &session, StatusCode::OK, None, None, Some(setup)).await,
        Err(e) => show_failure(&service, lang, &session, e).await,
    }
}

#[derive(Debug, Deserialize)]
pub struct CodeForm {
    #[serde(flatten)]
    csrf: CsrfForm,
    #[serde(default)]
    code: String,
}

/// `POST /account/two-factor/confirm`: confirms enrolment with a current code, as
/// `/auth/mfa/totp/confirm`, and answers with the recovery codes (never shown again).
pub async fn confirm(
    State(service): State<Portcullis>,
    lang: Lang,
    ctx: ClientContext,
    Extension(session): Extension<BrowserSession>,
    Form(form): Form<CodeForm>,
) -> AppResult<Response> {
    check_csrf(&session, &form.csrf)?;
    let principal = service.browser_principal(&session).await?;
    let result = service.confirm_totp(&principal, &form.code, &ctx).await;
    codes_or_failure(&service, lang, &session, result).await
}

/// New recovery codes, shown this once; or the page again, saying what failed.
async fn codes_or_failure(
    service: &Portcullis,
    lang: Lang,
    session: &BrowserSession,
    result: AppResult<Vec<String>>,
) -> AppResult<Response> {
    match result {
        Ok(codes) => {
            let next = service.config().path("/account/two-factor");
            let page = RecoveryCodesPage::new(Chrome::new(service, lang), codes, next);
            Ok(render(StatusCode::OK, &page))
        }
        Err(e) => show_failure(service, lang, session, e).await,
    }
}

/// `POST /account/two-factor/recovery-codes`: new recovery codes for a current code or
/// recovery code, as `/auth/mfa/recovery-codes`; the old ones stop working.
pub async fn regenerate(
    State(service): State<Portcullis>,
    lang: Lang,
    ctx: ClientContext,
    Extension(session): Extension<BrowserSession>,
    Form(form): Form<CodeForm>,
) -> AppResult<Response> {
    check_csrf(&session, &form.csrf)?;
    let principal = service.browser_principal(&session).await?;
    let result = service
        .regenerate_recovery_codes(&principal, SecondFactor::typed(&form.code), &ctx)
        .await;
    codes_or_failure(&service, lang, &session, result).await
}

#[derive(Debug, Deserialize)]
pub struct DisableForm {
    #[serde(flatten)]
    csrf: CsrfForm,
    #[serde(default)]
    password: String,
    #[serde(default)]
    code: String,
}

/// `POST /account/two-factor/disable`: turns the factor off for the password (when
/// the account has one) and a current code or recovery code, as
/// `DELETE /auth/mfa/totp` asks: a session alone, however recent, never removes it.
pub async fn disable(
    State(service): State<Portcullis>,
    lang: Lang,
    ctx: ClientContext,
    Extension(session): Extension<BrowserSession>,
    Form(form): Form<DisableForm>,
) -> AppResult<Response> {
    check_csrf(&session, &form.csrf)?;
    let principal = service.browser_principal(&session).await?;
    match service
        .disable_totp(&principal, &form.password, SecondFactor::typed(&form.code), &ctx)
        .await
    {
        Ok(()) => Ok(back_to_page(&service, Some("off"))),
        Err(AppError::InvalidCredentials(_)) => {
            let message = Some(lang.get("tf_bad_code").to_string());
            show(&service, lang, &session, StatusCode::UNAUTHORIZED, message, None).await
        }
        Err(e) => show_failure(&service, lang, &session, e).await,
    }
}

pub const EN: Messages = &[
    ("tf_title", "Two-factor authentication"),
    (
        "tf_pending_hint",
        "Enter the code your authenticator app shows for the key you added. Lost the key? Start again for a new one.",
    ),
    ("tf_status", "Status"),
    ("tf_off", "Off"),
    ("tf_pending", "Set-up started, not confirmed yet"),
    ("tf_on", "On"),
    ("tf_required", "Your role requires two-factor authentication."),
    ("tf_codes_left", "Recovery codes left"),
    (
        "tf_intro",
        "Sign-ins then also ask for a code from an authenticator app on your phone.",
    ),
    ("tf_start", "Set up two-factor authentication"),
    ("tf_restart", "Start again with a new key"),
    (
        "tf_scan",
        "Scan this QR code with your authenticator app, or type the key into it by hand. Then enter the code it shows.",
    ),
    ("tf_qr_alt", "QR code for your authenticator app"),
    ("tf_secret", "Key"),
    ("tf_code", "Code from your authenticator app"),
    ("tf_confirm", "Confirm"),
    ("tf_codes_title", "Your recovery codes"),
    (
        "tf_codes_once",
        "Keep these codes somewhere safe: each one works once, in place of a code from your app. They are shown only now.",
    ),
    ("tf_codes_download", "Download as a text file"),
    ("tf_codes_file", "Portcullis recovery codes (each works once)"),
    ("tf_continue", "Continue"),
    ("tf_regenerate_title", "New recovery codes"),
    ("tf_regenerate_hint", "The recovery codes you have now stop working."),
    ("tf_regenerate", "Make new recovery codes"),
    ("tf_disable_title", "Turn off two-factor authentication"),
    ("tf_disable", "Turn off"),
    ("tf_now_off", "Two-factor authentication is off."),
    ("tf_bad_password", "That password is not correct."),
    (
        "tf_bad_code",
        "That code is not valid. Enter the code your app shows now.",
    ),
    ("tf_changed", "This changed meanwhile. Please look at the page again."),
    (
        "tf_enrol_intro",
        "Your account must use two-factor authentication. Set it up now to finish signing in.",
    ),
    ("tf_sign_in_again", "Sign in again"),
];

pub const DE: Messages = &[
    ("tf_title", "Zwei-Faktor-Authentifizierung"),
    (
        "tf_pending_hint",
        "Geben Sie den Code ein, den Ihre Authenticator-App für den hinzugefügten Schlüssel zeigt. Schlüssel verloren? Beginnen Sie neu, um einen neuen zu erhalten.",
    ),
    ("tf_status", "Status"),
    ("tf_off", "Aus"),
    ("tf_pending", "Einrichtung begonnen, noch nicht bestätigt"),
    ("tf_on", "An"),
    ("tf_required", "Ihre Rolle verlangt die Zwei-Faktor-Authentifizierung."),
    ("tf_codes_left", "Verbleibende Wiederherstellungscodes"),
    (
        "tf_intro",
        "Anmeldungen fragen dann auch nach einem Code aus einer Authenticator-App auf Ihrem Telefon.",
    ),
    ("tf_start", "Zwei-Faktor-Authentifizierung einrichten"),
    ("tf_restart", "Mit einem neuen Schlüssel neu beginnen"),
    (
        "tf_scan",
        "Scannen Sie diesen QR-Code mit Ihrer Authenticator-App oder geben Sie den Schlüssel von Hand ein. Geben Sie dann den angezeigten Code ein.",
    ),
    ("tf_qr_alt", "QR-Code für Ihre Authenticator-App"),
    ("tf_secret", "Schlüssel"),
    ("tf_code", "Code aus Ihrer Authenticator-App"),
    ("tf_confirm", "Bestätigen"),
    ("tf_codes_title", "Ihre Wiederherstellungscodes"),
    (
        "tf_codes_once",
        "Bewahren Sie diese Codes sicher auf: Jeder funktioniert einmal anstelle eines Codes aus Ihrer App. Sie werden nur jetzt angezeigt.",
    ),
    ("tf_codes_download", "Als Textdatei herunterladen"),
    (
        "tf_codes_file",
        "Portcullis-Wiederherstellungscodes (jeder funktioniert einmal)",
    ),
    ("tf_continue", "Weiter"),
    ("tf_regenerate_title", "Neue Wiederherstellungscodes"),
    (
        "tf_regenerate_hint",
        "Ihre bisherigen Wiederherstellungscodes funktionieren dann nicht mehr.",
    ),
    ("tf_regenerate", "Neue Wiederherstellungscodes erzeugen"),
    ("tf_disable_title", "Zwei-Faktor-Authentifizierung ausschalten"),
    ("tf_disable", "Ausschalten"),
    ("tf_now_off", "Die Zwei-Faktor-Authentifizierung ist aus."),
    ("tf_bad_password", "Dieses Passwort ist nicht richtig."),
    (
        "tf_bad_code",
        "Dieser Code ist ungültig. Geben Sie den Code ein, den Ihre App jetzt zeigt.",
    ),
    (
        "tf_changed",
        "Das hat sich inzwischen geändert. Bitte sehen Sie sich die Seite erneut an.",
    ),
    (
        "tf_enrol_intro",
        "Ihr Konto muss die Zwei-Faktor-Authentifizierung verwenden. Richten Sie sie jetzt ein, um die Anmeldung abzuschließen.",
    ),
    ("tf_sign_in_again", "Erneut anmelden"),
];
