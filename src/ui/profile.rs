//! The account's own details: the profile (`/account`: full name and e-mail, through
//! `Portcullis::update_me` like `PATCH /auth/me`) and the password (`/account/password`,
//! through `Portcullis::change_password` like `POST /auth/me/password`, which ends the
//! user's other sessions and keeps this browser's). Also the strings of the account
//! navigation every account page includes (`account_nav.html`).

use askama::Template;
use axum::extract::{Query, State};
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use serde::Deserialize;

use super::pages::{Chrome, CsrfForm, check_csrf, render};
use super::{Lang, Messages};
use crate::domain::{BrowserSession, ClientContext, Portcullis};
use crate::error::{AppError, AppResult, FieldError};

/// What a page says after a change went through (`?done=`), as a catalogue key.
#[derive(Debug, Default, Deserialize)]
pub struct DoneQuery {
    #[serde(default)]
    done: Option<String>,
}

/// The notice for `?done=<what>`, when `what` is one `known` lists.
pub(super) fn notice(lang: Lang, q: &DoneQuery, known: &[(&str, &'static str)]) -> Option<&'static str> {
    let done = q.done.as_deref()?;
    known
        .iter()
        .find(|(what, _)| *what == done)
        .map(|(_, key)| lang.get(key))
}

/// A form that failed: the message for each field the domain refused (the reason, in
/// the page's language, after the field's own words, e.g. zxcvbn's advice), and a
/// message for the whole form.
#[derive(Debug, Default)]
struct Problems {
    form: Option<String>,
    fields: Vec<(String, String)>,
}

impl Problems {
    fn form(message: impl Into<String>) -> Self {
        Self {
            form: Some(message.into()),
            fields: Vec::new(),
        }
    }

    /// The domain's field errors, each in our catalogue's words for its field (the key
    /// `<prefix><field>`), followed by the reason in `lang` (which rule, zxcvbn's advice)
    /// unless the field is `terse` (the detail would add nothing).
    fn fields(lang: Lang, prefix: &str, errors: &[FieldError], terse: &[&str]) -> Self {
        let fields = errors
            .iter()
            .map(|e| {
                let message = match lang.get(&format!("{prefix}{}", e.field)) {
                    // A field we have no words for: the reason alone.
                    "?" => super::field_errors::reason(lang, e),
                    ours if terse.contains(&e.field.as_str()) => ours.to_string(),
                    ours => format!("{ours} ({})", super::field_errors::reason(lang, e)),
                };
                (e.field.clone(), message)
            })
            .collect();
        Self { form: None, fields }
    }

    /// The message for `field`, if it was refused.
    fn of(&self, field: &str) -> Option<&str> {
        self.fields.iter().find(|(f, _)| f == field).map(|(_, m)| m.as_str())
    }
}

#[derive(Template)]
#[template(path = "account.html")]
struct ProfilePage<'a> {
    c: Chrome,
    section: &'static str,
    session: &'a BrowserSession,
    full_name: &'a str,
    email: &'a str,
    notice: Option<&'static str>,
    problems: Problems,
}

impl ProfilePage<'_> {
    fn full_name_error(&self) -> Option<&str> {
        self.problems.of("full_name")
    }

    fn email_error(&self) -> Option<&str> {
        self.problems.of("email")
    }
}

/// `GET /account`: who is signed in, the profile form, and signing out.
pub async fn page(
    State(service): State<Portcullis>,
    lang: Lang,
    Extension(session): Extension<BrowserSession>,
    Query(q): Query<DoneQuery>,
) -> AppResult<Response> {
    let me = service.me(&service.browser_principal(&session).await?).await?;
    let page = ProfilePage {
        c: Chrome::new(&service, lang),
        section: "profile",
        session: &session,
        full_name: me.full_name.as_deref().unwrap_or(""),
        email: &me.email,
        notice: notice(lang, &q, &[("saved", "profile_saved")]),
        problems: Problems::default(),
    };
    Ok(render(StatusCode::OK, &page))
}

#[derive(Debug, Deserialize)]
pub struct ProfileForm {
    #[serde(flatten)]
    csrf: CsrfForm,
    #[serde(default)]
    full_name: String,
    #[serde(default)]
    email: String,
}

/// `POST /account`: saves the full name (empty clears it) and the e-mail, as
/// `PATCH /auth/me`. A refused value shows the form again with what was typed.
pub async fn submit(
    State(service): State<Portcullis>,
    lang: Lang,
    ctx: ClientContext,
    Extension(session): Extension<BrowserSession>,
    Form(form): Form<ProfileForm>,
) -> AppResult<Response> {
    check_csrf(&session, &form.csrf)?;
    let caller = service.browser_principal(&session).await?;
    let result = service
        .update_me(
            &caller,
            Some(form.full_name.trim().to_string()),
            Some(form.email.trim().to_string()),
            &ctx,
        )
        .await;
    let (status, problems) = match result {
        Ok(_) => return Ok(Redirect::to(&service.config().path("/account?done=saved")).into_response()),
        Err(AppError::Validation(errors)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Problems::fields(lang, "profile_bad_", &errors, &[]),
        ),
        Err(AppError::Conflict(_)) => (
            StatusCode::CONFLICT,
            Problems {
                form: None,
                fields: vec![("email".into(), lang.get("profile_email_taken").into())],
            },
        ),
        Err(e) => return Err(e),
    };
    let page = ProfilePage {
        c: Chrome::new(&service, lang),
        section: "profile",
        session: &session,
        full_name: &form.full_name,
        email: &form.email,
        notice: None,
        problems,
    };
    Ok(render(status, &page))
}

#[derive(Template)]
#[template(path = "password.html")]
struct PasswordPage<'a> {
    c: Chrome,
    section: &'static str,
    session: &'a BrowserSession,
    notice: Option<&'static str>,
    problems: Problems,
}

impl PasswordPage<'_> {
    fn current_error(&self) -> Option<&str> {
        self.problems.of("current_password")
    }

    fn new_error(&self) -> Option<&str> {
        self.problems.of("new_password")
    }

    fn confirm_error(&self) -> Option<&str> {
        self.problems.of("confirm_password")
    }
}

/// `GET /account/password`.
pub async fn password_page(
    State(service): State<Portcullis>,
    lang: Lang,
    Extension(session): Extension<BrowserSession>,
    Query(q): Query<DoneQuery>,
) -> Response {
    let page = PasswordPage {
        c: Chrome::new(&service, lang),
        section: "password",
        session: &session,
        notice: notice(lang, &q, &[("changed", "password_changed")]),
        problems: Problems::default(),
    };
    render(StatusCode::OK, &page)
}

#[derive(Debug, Deserialize)]
pub struct PasswordForm {
    #[serde(flatten)]
    csrf: CsrfForm,
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
    #[serde(default)]
    confirm_password: String,
}

/// `POST /account/password`: as `POST /auth/me/password` (the current password is
/// checked and counted like a sign-in; the new one must pass the policy), and the
/// user's other sessions, browser and token, end; this browser stays signed in.
pub async fn password_submit(
    State(service): State<Portcullis>,
    lang: Lang,
    ctx: ClientContext,
    Extension(session): Extension<BrowserSession>,
    Form(form): Form<PasswordForm>,
) -> AppResult<Response> {
    check_csrf(&session, &form.csrf)?;
    let again = |status, problems| {
        let page = PasswordPage {
            c: Chrome::new(&service, lang),
            section: "password",
            session: &session,
            notice: None,
            problems,
        };
        render(status, &page)
    };
    // A typing slip in the new password is caught before anything is checked.
    if form.new_password != form.confirm_password {
        let problems = Problems {
            form: None,
            fields: vec![("confirm_password".into(), lang.get("password_mismatch").into())],
        };
        return Ok(again(StatusCode::UNPROCESSABLE_ENTITY, problems));
    }
    let caller = service.browser_principal(&session).await?;
    match service
        .change_password(&caller, &form.current_password, &form.new_password, &ctx)
        .await
    {
        Ok(()) => Ok(Redirect::to(&service.config().path("/account/password?done=changed")).into_response()),
        Err(AppError::Validation(errors)) => Ok(again(
            StatusCode::UNPROCESSABLE_ENTITY,
            Problems::fields(lang, "password_bad_", &errors, &["current_password"]),
        )),
        Err(AppError::TooManyRequests { retry_after }) => {
            let mut page = again(
                StatusCode::TOO_MANY_REQUESTS,
                Problems::form(lang.too_many(retry_after)),
            );
            page.headers_mut().insert(RETRY_AFTER, HeaderValue::from(retry_after));
            Ok(page)
        }
        Err(e) => Err(e),
    }
}

pub const EN: Messages = &[
    ("account_nav", "Account"),
    ("nav_profile", "Account"),
    ("nav_password", "Password"),
    ("nav_two_factor", "Two-factor"),
    ("nav_sessions", "Sessions"),
    ("nav_api_keys", "API keys"),
    ("nav_identities", "Linked identities"),
    ("full_name", "Full name"),
    ("save", "Save"),
    ("profile_saved", "Your profile was saved."),
    ("profile_bad_email", "This e-mail address cannot be used"),
    ("profile_bad_full_name", "This name cannot be used"),
    (
        "profile_email_taken",
        "Another account already uses this e-mail address.",
    ),
    ("password_title", "Change password"),
    ("current_password", "Current password"),
    ("new_password", "New password"),
    ("confirm_password", "New password again"),
    ("change_password", "Change password"),
    (
        "password_hint",
        "Changing your password signs out all your other sessions, in browsers and apps.",
    ),
    (
        "password_changed",
        "Your password was changed. Your other sessions were signed out.",
    ),
    ("password_mismatch", "The two new passwords are not the same."),
    ("password_bad_current_password", "The current password is not correct"),
    ("password_bad_new_password", "The new password cannot be used"),
];

pub const DE: Messages = &[
    ("account_nav", "Konto"),
    ("nav_profile", "Konto"),
    ("nav_password", "Passwort"),
    ("nav_two_factor", "Zwei-Faktor"),
    ("nav_sessions", "Sitzungen"),
    ("nav_api_keys", "API-Schlüssel"),
    ("nav_identities", "Verknüpfte Identitäten"),
    ("full_name", "Vollständiger Name"),
    ("save", "Speichern"),
    ("profile_saved", "Ihr Profil wurde gespeichert."),
    ("profile_bad_email", "Diese E-Mail-Adresse kann nicht verwendet werden"),
    ("profile_bad_full_name", "Dieser Name kann nicht verwendet werden"),
    (
        "profile_email_taken",
        "Ein anderes Konto verwendet diese E-Mail-Adresse bereits.",
    ),
    ("password_title", "Passwort ändern"),
    ("current_password", "Aktuelles Passwort"),
    ("new_password", "Neues Passwort"),
    ("confirm_password", "Neues Passwort wiederholen"),
    ("change_password", "Passwort ändern"),
    (
        "password_hint",
        "Wenn Sie Ihr Passwort ändern, werden alle Ihre anderen Sitzungen in Browsern und Apps abgemeldet.",
    ),
    (
        "password_changed",
        "Ihr Passwort wurde geändert. Ihre anderen Sitzungen wurden abgemeldet.",
    ),
    (
        "password_mismatch",
        "Die beiden neuen Passwörter stimmen nicht überein.",
    ),
    (
        "password_bad_current_password",
        "Das aktuelle Passwort ist nicht korrekt",
    ),
    (
        "password_bad_new_password",
        "Das neue Passwort kann nicht verwendet werden",
    ),
];
