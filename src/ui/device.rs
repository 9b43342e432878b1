//! The device verification page (`/device`, RFC 8628 3.3): a signed-in person types
//! the user code a device shows (or arrives with it pre-filled from
//! `verification_uri_complete`), sees which application asks and what it will get,
//! and approves or denies (`Portcullis::device_request`, `decide_device`). A browser
//! that is not signed in is sent to sign in first and comes back with the code.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::{Extension, Form};
use serde::Deserialize;

use super::pages::{Chrome, CsrfForm, check_csrf, render};
use super::{Lang, Messages};
use crate::domain::oidc::DeviceRequest;
use crate::domain::{BrowserSession, ClientContext, Portcullis};
use crate::error::{AppError, AppResult};

/// The longest text kept from a typed code when it is shown again.
const MAX_TYPED: usize = 32;

#[derive(Template)]
#[template(path = "device.html")]
struct DevicePage<'a> {
    c: Chrome,
    session: &'a BrowserSession,
    message: Option<String>,
    /// The form to type a code in, pre-filled with this.
    enter: Option<String>,
    /// The request to approve or deny, and the sentence asking.
    confirm: Option<DeviceRequest>,
    ask: String,
    /// The decision just recorded: approved or denied.
    done: Option<bool>,
}

fn typed(code: &str) -> String {
    code.trim().chars().take(MAX_TYPED).collect()
}

impl<'a> DevicePage<'a> {
    /// The catalogue key that says what a scope gives, in plain words.
    fn scope_key(&self, scope: &str) -> &'static str {
        match scope {
            "openid" => "device_scope_openid",
            "profile" => "device_scope_profile",
            "email" => "device_scope_email",
            "roles" => "device_scope_roles",
            "offline_access" => "device_scope_offline_access",
            _ => "device_scope_other",
        }
    }

    fn new(service: &Portcullis, lang: Lang, session: &'a BrowserSession) -> Self {
        Self {
            c: Chrome::new(service, lang),
            session,
            message: None,
            enter: None,
            confirm: None,
            ask: String::new(),
            done: None,
        }
    }

    /// The code form again, saying why the code was not taken.
    fn refused(mut self, code: &str, error: AppError) -> AppResult<Response> {
        let lang = self.c.lang;
        let (status, message) = match error {
            AppError::NotFound(_) => (StatusCode::BAD_REQUEST, lang.get("device_code_unknown").to_string()),
            AppError::TooManyRequests { retry_after } => (StatusCode::TOO_MANY_REQUESTS, lang.too_many(retry_after)),
            other => return Err(other),
        };
        self.message = Some(message);
        self.enter = Some(typed(code));
        Ok(render(status, &self))
    }
}

#[derive(Debug, Deserialize)]
pub struct DeviceQuery {
    user_code: Option<String>,
}

/// `GET /device`: the code form, pre-filled by `?user_code=`.
pub async fn page(
    State(service): State<Portcullis>,
    lang: Lang,
    Extension(session): Extension<BrowserSession>,
    Query(q): Query<DeviceQuery>,
) -> AppResult<Response> {
    let mut page = DevicePage::new(&service, lang, &session);
    page.enter = Some(typed(q.user_code.as_deref().unwrap_or_default()));
    Ok(render(StatusCode::OK, &page))
}

#[derive(Debug, Deserialize)]
pub struct DeviceForm {
    #[serde(flatten)]
    csrf: CsrfForm,
    #[serde(default)]
    user_code: String,
    /// `approve` or `deny`; absent: show the request for a decision.
    decision: Option<String>,
}

/// `POST /device`: a typed code shows its request; a decision on it is recorded.
pub async fn submit(
    State(service): State<Portcullis>,
    lang: Lang,
    ctx: ClientContext,
    Extension(session): Extension<BrowserSession>,
    Form(form): Form<DeviceForm>,
) -> AppResult<Response> {
    check_csrf(&session, &form.csrf)?;
    let mut page = DevicePage::new(&service, lang, &session);
    let approve = match form.decision.as_deref() {
        None => {
            return match service.device_request(&form.user_code, &session, &ctx).await {
                Ok(request) => {
                    page.ask = lang
                        .get("device_asks")
                        .replace("{app}", &request.client_name)
                        .replace("{user}", &session.username);
                    page.confirm = Some(request);
                    Ok(render(StatusCode::OK, &page))
                }
                Err(e) => page.refused(&form.user_code, e),
            };
        }
        Some("approve") => true,
        Some("deny") => false,
        Some(_) => return Err(AppError::BadRequest("decision must be approve or deny".into())),
    };
    match service.decide_device(&form.user_code, approve, &session, &ctx).await {
        Ok(_) => {
            page.done = Some(approve);
            Ok(render(StatusCode::OK, &page))
        }
        Err(e) => page.refused(&form.user_code, e),
    }
}

pub const EN: Messages = &[
    ("device_title", "Connect a device"),
    (
        "device_intro",
        "Enter the code your device or command line shows to let it sign in as you.",
    ),
    ("device_code_label", "Code"),
    ("device_continue", "Continue"),
    (
        "device_code_unknown",
        "That code is wrong, has expired or was already used. Check the code on your device, or start again there.",
    ),
    ("device_asks", "{app} asks to sign in as {user}."),
    ("device_check_code", "Approve only if your device shows this code:"),
    ("device_gets", "It will be able to:"),
    ("device_scope_openid", "know who you are (your account id)"),
    ("device_scope_profile", "see your name and username"),
    ("device_scope_email", "see your e-mail address"),
    ("device_scope_roles", "act with your roles and permissions"),
    ("device_scope_offline_access", "stay signed in until you sign it out"),
    ("device_scope_other", "use another permission"),
    ("device_approve", "Approve"),
    ("device_deny", "Deny"),
    ("device_approved", "Approved. You can return to your device."),
    ("device_denied", "Denied. The device was not signed in."),
];

pub const DE: Messages = &[
    ("device_title", "Gerät verbinden"),
    (
        "device_intro",
        "Geben Sie den Code ein, den Ihr Gerät oder die Kommandozeile zeigt, damit es sich als Sie anmelden kann.",
    ),
    ("device_code_label", "Code"),
    ("device_continue", "Weiter"),
    (
        "device_code_unknown",
        "Dieser Code ist falsch, abgelaufen oder schon verwendet. Prüfen Sie den Code auf Ihrem Gerät oder beginnen Sie dort neu.",
    ),
    ("device_asks", "{app} möchte sich als {user} anmelden."),
    (
        "device_check_code",
        "Bestätigen Sie nur, wenn Ihr Gerät diesen Code zeigt:",
    ),
    ("device_gets", "Es kann dann:"),
    ("device_scope_openid", "wissen, wer Sie sind (Ihre Konto-ID)"),
    ("device_scope_profile", "Ihren Namen und Benutzernamen sehen"),
    ("device_scope_email", "Ihre E-Mail-Adresse sehen"),
    ("device_scope_roles", "mit Ihren Rollen und Berechtigungen handeln"),
    ("device_scope_offline_access", "angemeldet bleiben, bis Sie es abmelden"),
    ("device_scope_other", "eine weitere Berechtigung nutzen"),
    ("device_approve", "Bestätigen"),
    ("device_deny", "Ablehnen"),
    ("device_approved", "Bestätigt. Sie können zu Ihrem Gerät zurückkehren."),
    ("device_denied", "Abgelehnt. Das Gerät wurde nicht angemeldet."),
];
