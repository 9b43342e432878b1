//! Creating an account from the sign-in page (`/register`), offered only while
//! self-registration is on (`REGISTRATION_ENABLED`). The page calls the very operation
//! `POST /auth/register` does (`Portcullis::register_and_sign_in`), so the same field
//! rules, password policy and switch apply; it explains the policy up front and, on a
//! weak password, shows what the policy's strength estimate (zxcvbn) said about it.
//! Like the sign-in form it carries the login-CSRF token (`ui::LOGIN_COOKIE`): it signs
//! the browser in, so another site must not be able to post it.

use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::pages::{Chrome, render, render_with_login_token};
use super::{Lang, Messages, current_session, login_form_token, login_form_token_matches};
use crate::domain::accounts::Registration;
use crate::domain::{ClientContext, Portcullis};
use crate::error::{AppError, AppResult, FieldError};

#[derive(Template)]
#[template(path = "register.html")]
struct RegisterPage<'a> {
    c: Chrome,
    /// What was wrong, one line each.
    errors: Vec<String>,
    username: &'a str,
    email: &'a str,
    full_name: &'a str,
    /// The policy in words (min and max length, not the name, not guessable).
    policy: String,
    login_token: &'a str,
}

/// The policy sentence, with this service's lengths.
fn policy(service: &Portcullis, lang: Lang) -> String {
    let p = &service.config().passwords;
    lang.get("register_policy")
        .replace("{min}", &p.min_length.to_string())
        .replace("{max}", &p.max_length.to_string())
}

/// `GET /register`: the form, or 404 while self-registration is off (the page does
/// not exist then; the sign-in page does not link to it).
pub async fn register_page(State(service): State<Portcullis>, lang: Lang, headers: HeaderMap) -> AppResult<Response> {
    if !service.registration_open() {
        return Err(AppError::NotFound(
            "self-registration is switched off on this service".into(),
        ));
    }
    if current_session(&service, &headers).await?.is_some() {
        return Ok(Redirect::to(&service.config().path("/account")).into_response());
    }
    let (token, new) = login_form_token(&headers);
    let page = RegisterPage {
        c: Chrome::new(&service, lang),
        errors: Vec::new(),
        username: "",
        email: "",
        full_name: "",
        policy: policy(&service, lang),
        login_token: &token,
    };
    Ok(render_with_login_token(StatusCode::OK, &page, &token, new))
}

#[derive(Debug, Deserialize)]
pub struct RegisterForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    full_name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password_repeat: String,
    #[serde(default)]
    login_token: String,
}

/// `POST /register`: creates the account and signs it in (to the account page), or
/// shows the form again with what was wrong. When the account must first enrol a
/// second factor, it goes to the sign-in page instead, which says so.
pub async fn register_submit(
    State(service): State<Portcullis>,
    lang: Lang,
    ctx: ClientContext,
    headers: HeaderMap,
    Form(form): Form<RegisterForm>,
) -> AppResult<Response> {
    // Before anything is checked: a form another site posted signs no one in.
    if !login_form_token_matches(&headers, &form.login_token) {
        return Err(AppError::Forbidden(
            "this form did not come from our registration page: reload it and try again".into(),
        ));
    }
    let again = |status, errors: Vec<String>| {
        let page = RegisterPage {
            c: Chrome::new(&service, lang),
            errors,
            username: &form.username,
            email: &form.email,
            full_name: &form.full_name,
            policy: policy(&service, lang),
            login_token: &form.login_token,
        };
        render(status, &page)
    };
    if form.password != form.password_repeat {
        let errors = vec![lang.get("register_mismatch").to_string()];
        return Ok(again(StatusCode::UNPROCESSABLE_ENTITY, errors));
    }
    let registration = Registration {
        username: form.username.trim().to_string(),
        email: form.email.trim().to_string(),
        full_name: Some(form.full_name.trim().to_string()).filter(|n| !n.is_empty()),
        password: Some(form.password.clone()),
        password_hash: None,
        superuser: false,
        roles: Vec::new(),
    };
    match service.register_and_sign_in(registration, &ctx).await {
        // Signed in, or (a role that demands it) on to set up two-factor first.
        Ok(outcome) => super::login::after_first_factor(&service, outcome, &headers, &ctx, "").await,
        Err(AppError::Validation(errors)) => {
            let lines = errors.iter().map(|e| field_error(lang, e)).collect();
            Ok(again(StatusCode::UNPROCESSABLE_ENTITY, lines))
        }
        Err(AppError::Conflict(_)) => Ok(again(StatusCode::CONFLICT, vec![lang.get("register_taken").into()])),
        Err(e) => Err(e),
    }
}

/// A field's failure for the page: the field's label in `lang`, then the reason in
/// `lang` (for a weak password, zxcvbn's warning and suggestion too).
fn field_error(lang: Lang, e: &FieldError) -> String {
    let label = match e.field.as_str() {
        "username" => lang.get("username"),
        "email" => lang.get("email"),
        "full_name" => lang.get("full_name_label"),
        "password" => lang.get("password_label"),
        _ => return super::field_errors::reason(lang, e),
    };
    format!("{label}: {}", super::field_errors::reason(lang, e))
}

pub const EN: Messages = &[
    ("register_title", "Create an account"),
    ("register_link", "Create an account"),
    ("register_prompt", "No account yet?"),
    ("have_account", "Already have an account?"),
    ("full_name_label", "Full name (optional)"),
    ("password_repeat_label", "Password again"),
    (
        "register_policy",
        "At least {min} and at most {max} characters, not containing your username or e-mail, and not easy to guess: several unrelated words work well.",
    ),
    ("register_submit", "Create account"),
    ("register_mismatch", "The two passwords differ."),
    (
        "register_taken",
        "This username or e-mail address is already registered.",
    ),
];

pub const DE: Messages = &[
    ("register_title", "Konto anlegen"),
    ("register_link", "Konto anlegen"),
    ("register_prompt", "Noch kein Konto?"),
    ("have_account", "Sie haben schon ein Konto?"),
    ("full_name_label", "Vollständiger Name (optional)"),
    ("password_repeat_label", "Passwort wiederholen"),
    (
        "register_policy",
        "Mindestens {min} und höchstens {max} Zeichen, ohne Ihren Benutzernamen oder Ihre E-Mail-Adresse, und nicht leicht zu erraten: mehrere zusammenhanglose Wörter eignen sich gut.",
    ),
    ("register_submit", "Konto anlegen"),
    ("register_mismatch", "Die beiden Passwörter stimmen nicht überein."),
    (
        "register_taken",
        "Dieser Benutzername oder diese E-Mail-Adresse ist bereits registriert.",
    ),
];
