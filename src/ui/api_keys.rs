//! The API keys page: the account's keys (never their secrets), creating one with a
//! subset of the person's own permissions (`create_api_key`, as `POST /auth/api-keys`,
//! which refuses any permission they lack; sensitive, so CSRF and step-up), the new
//! key shown this once, and revoking one (`revoke_api_key`, as
//! `DELETE /auth/api-keys/{id}`).
//!
//! The new key is the answer to the form's POST, never put in a URL or a redirect, and
//! the page is `no-store`. A copy button comes with the script (`assets/app.js`); the
//! key is selectable text without it.

use std::collections::BTreeSet;

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use serde::Deserialize;

use super::assets::script_name;
use super::pages::{Chrome, CsrfForm, check_csrf, render, when};
use super::step_up::{StepUpField, StepUpForm};
use super::{Lang, Messages};
use crate::domain::authn::API_KEY_PREFIX;
use crate::domain::{Actor, BrowserSession, ClientContext, Portcullis};
use crate::error::{AppError, AppResult};

/// A key as the page lists it.
struct KeyItem {
    id: String,
    /// What the key starts with (`pcx_<id>`), to recognise it by.
    prefix: String,
    name: String,
    permissions: String,
    created: String,
    expires: Option<String>,
    last_used: Option<String>,
    revoked: Option<String>,
}

/// One of the person's permissions, offered for a new key.
struct Offered {
    name: String,
    /// Its checkbox's id.
    field: String,
    checked: bool,
}

/// What the create form held (kept when it is shown again).
#[derive(Default)]
struct Draft {
    name: String,
    expires: String,
    permissions: BTreeSet<String>,
}

#[derive(Template)]
#[template(path = "api_keys.html")]
struct ApiKeysPage<'a> {
    c: Chrome,
    session: &'a BrowserSession,
    script: String,
    message: Option<String>,
    notice: Option<&'static str>,
    /// The key just created: shown this once.
    new_key: Option<String>,
    keys: Vec<KeyItem>,
    offered: Vec<Offered>,
    draft: Draft,
    step_up: Option<StepUpField>,
}

/// The page; `status` and `message` say what failed, `new_key` what was just made.
async fn page(
    service: &Portcullis,
    lang: Lang,
    session: &BrowserSession,
    status: StatusCode,
    message: Option<String>,
    new_key: Option<String>,
    draft: Draft,
) -> AppResult<Response> {
    let principal = service.browser_principal(session).await?;
    let own: BTreeSet<&String> = principal.permissions.iter().collect();
    let offered = own
        .into_iter()
        .enumerate()
        .map(|(n, p)| Offered {
            checked: draft.permissions.contains(p),
            name: p.clone(),
            field: format!("permission-{n}"),
        })
        .collect();
    let keys = service
        .api_keys_of(session.user_id)
        .await?
        .into_iter()
        .map(|k| KeyItem {
            prefix: format!("{API_KEY_PREFIX}{}", k.id),
            permissions: serde_json::from_str::<Vec<String>>(&k.permissions)
                .unwrap_or_default()
                .join(", "),
            created: when(k.created_at),
            expires: k.expires_at.map(when),
            last_used: k.last_used_at.map(when),
            revoked: k.revoked_at.map(when),
            id: k.id,
            name: k.name,
        })
        .collect();
    let page = ApiKeysPage {
        script: format!("{}/assets/{}", service.config().server.base_path, script_name()),
        c: Chrome::new(service, lang),
        session,
        notice: new_key.is_some().then(|| lang.get("key_created")),
        message,
        new_key,
        keys,
        offered,
        draft,
        step_up: super::step_up::field(service, session).await?,
    };
    Ok(render(status, &page))
}

/// `GET /account/api-keys`.
pub async fn api_keys(
    State(service): State<Portcullis>,
    lang: Lang,
    Extension(session): Extension<BrowserSession>,
) -> AppResult<Response> {
    page(&service, lang, &session, StatusCode::OK, None, None, Draft::default()).await
}

/// The create form. Its checkboxes repeat the name `permission`, so it is read as
/// pairs.
struct CreateForm {
    csrf: CsrfForm,
    step_up: StepUpForm,
    draft: Draft,
}

impl CreateForm {
    fn from_pairs(pairs: Vec<(String, String)>) -> Self {
        let mut form = Self {
            csrf: CsrfForm { csrf: String::new() },
            step_up: StepUpForm::default(),
            draft: Draft::default(),
        };
        for (k, v) in pairs {
            match k.as_str() {
                "csrf" => form.csrf.csrf = v,
                "reauth" => form.step_up.reauth = v,
                "name" => form.draft.name = v,
                "expires" => form.draft.expires = v,
                "permission" => {
                    form.draft.permissions.insert(v);
                }
                _ => {}
            }
        }
        form
    }
}

/// A date field (`YYYY-MM-DD`, empty for never) as the end of that day in UTC; Err
/// when it is no date.
fn expiry(field: &str) -> Result<Option<DateTime<Utc>>, ()> {
    let field = field.trim();
    if field.is_empty() {
        return Ok(None);
    }
    let day = NaiveDate::parse_from_str(field, "%Y-%m-%d").map_err(|_| ())?;
    let end = NaiveTime::from_hms_opt(23, 59, 59).ok_or(())?;
    Ok(Some(day.and_time(end).and_utc()))
}

/// The catalogue key saying why `create_api_key` refused, or None for our own failure.
fn refusal(e: &AppError) -> Option<&'static str> {
    match e {
        AppError::Validation(fields) => Some(match fields.first().map(|f| f.field.as_str()) {
            Some("name") => "key_name_invalid",
            Some("expires_at") => "key_expiry_past",
            _ => "key_permission_unknown",
        }),
        AppError::Forbidden(_) => Some("key_permission_not_held"),
        _ => None,
    }
}

/// `POST /account/api-keys`: CSRF, step-up, then `create_api_key` as the person; the
/// page shows the new key once.
pub async fn create(
    State(service): State<Portcullis>,
    lang: Lang,
    ctx: ClientContext,
    Extension(session): Extension<BrowserSession>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> AppResult<Response> {
    let form = CreateForm::from_pairs(pairs);
    check_csrf(&session, &form.csrf)?;
    let again = |status, key: &str, draft| {
        let message = Some(lang.get(key).to_string());
        page(&service, lang, &session, status, message, None, draft)
    };
    match super::step_up::confirm(&service, &session, &form.step_up, &ctx).await {
        Ok(()) => {}
        Err(AppError::InvalidCredentials(_)) => {
            return again(StatusCode::UNAUTHORIZED, "step_up_failed", form.draft).await;
        }
        Err(e) => return Err(e),
    }
    let Ok(expires_at) = expiry(&form.draft.expires) else {
        return again(StatusCode::UNPROCESSABLE_ENTITY, "key_expiry_invalid", form.draft).await;
    };
    let principal = service.browser_principal(&session).await?;
    let permissions: Vec<String> = form.draft.permissions.iter().cloned().collect();
    match service
        .create_api_key(&principal, &form.draft.name, permissions, expires_at, &ctx)
        .await
    {
        Ok((_, key)) => {
            page(
                &service,
                lang,
                &session,
                StatusCode::CREATED,
                None,
                Some(key),
                Draft::default(),
            )
            .await
        }
        Err(e) => match refusal(&e) {
            Some(key) => again(e.status(), key, form.draft).await,
            None => Err(e),
        },
    }
}

#[derive(Debug, Deserialize)]
pub struct RevokeForm {
    #[serde(flatten)]
    csrf: CsrfForm,
    #[serde(default)]
    id: String,
}

/// `POST /account/api-keys/revoke`: one of the person's own keys (`revoke_api_key`
/// with them as the owner: another's key is not found).
pub async fn revoke(
    State(service): State<Portcullis>,
    lang: Lang,
    ctx: ClientContext,
    Extension(session): Extension<BrowserSession>,
    Form(form): Form<RevokeForm>,
) -> AppResult<Response> {
    check_csrf(&session, &form.csrf)?;
    let principal = service.browser_principal(&session).await?;
    let by = Actor::principal(&principal, &ctx);
    match service.revoke_api_key(&form.id, Some(session.user_id), &by).await {
        Ok(()) => Ok(Redirect::to(&service.config().path("/account/api-keys")).into_response()),
        Err(AppError::NotFound(_)) => {
            let message = Some(lang.get("key_not_found").to_string());
            page(
                &service,
                lang,
                &session,
                StatusCode::NOT_FOUND,
                message,
                None,
                Draft::default(),
            )
            .await
        }
        Err(e) => Err(e),
    }
}

pub const EN: Messages = &[
    ("api_keys_title", "API keys"),
    (
        "api_keys_intro",
        "Keys let your scripts and services act for you, with the permissions you give them.",
    ),
    ("api_keys_none", "You have no API keys."),
    ("key_prefix", "Starts with"),
    ("key_permissions", "Permissions"),
    ("key_no_permissions", "none"),
    ("key_created_at", "Created"),
    ("key_expires", "Expires"),
    ("key_never", "never"),
    ("key_last_used", "Last used"),
    ("key_not_used", "not yet"),
    ("key_revoked", "Revoked"),
    ("revoke", "Revoke"),
    ("new_key_title", "Create a key"),
    ("key_name", "Name"),
    ("key_expires_label", "Expires at the end of (UTC, empty for never)"),
    ("key_permissions_legend", "Permissions (from your own)"),
    ("key_no_own_permissions", "You hold no permissions to give a key."),
    ("create_key", "Create key"),
    (
        "key_created",
        "Your new key is shown below this once. Copy it now: it cannot be shown again.",
    ),
    ("new_key_label", "New API key"),
    ("copy", "Copy"),
    ("copied", "Copied"),
    ("key_name_invalid", "Give the key a name of 1 to 100 characters."),
    ("key_expiry_invalid", "The expiry date is not a date."),
    ("key_expiry_past", "The expiry date must be in the future."),
    ("key_permission_unknown", "One of the permissions does not exist."),
    (
        "key_permission_not_held",
        "A key can only carry permissions you hold yourself.",
    ),
    ("key_not_found", "That key does not exist or is already revoked."),
];

pub const DE: Messages = &[
    ("api_keys_title", "API-Schlüssel"),
    (
        "api_keys_intro",
        "Mit Schlüsseln handeln Ihre Skripte und Dienste in Ihrem Namen, mit den Berechtigungen, die Sie ihnen geben.",
    ),
    ("api_keys_none", "Sie haben keine API-Schlüssel."),
    ("key_prefix", "Beginnt mit"),
    ("key_permissions", "Berechtigungen"),
    ("key_no_permissions", "keine"),
    ("key_created_at", "Erstellt"),
    ("key_expires", "Läuft ab"),
    ("key_never", "nie"),
    ("key_last_used", "Zuletzt verwendet"),
    ("key_not_used", "noch nicht"),
    ("key_revoked", "Widerrufen"),
    ("revoke", "Widerrufen"),
    ("new_key_title", "Schlüssel erstellen"),
    ("key_name", "Name"),
    ("key_expires_label", "Läuft ab am Ende von (UTC, leer für nie)"),
    ("key_permissions_legend", "Berechtigungen (aus Ihren eigenen)"),
    (
        "key_no_own_permissions",
        "Sie haben keine Berechtigungen, die Sie einem Schlüssel geben könnten.",
    ),
    ("create_key", "Schlüssel erstellen"),
    (
        "key_created",
        "Ihr neuer Schlüssel wird unten nur dieses eine Mal angezeigt. Kopieren Sie ihn jetzt.",
    ),
    ("new_key_label", "Neuer API-Schlüssel"),
    ("copy", "Kopieren"),
    ("copied", "Kopiert"),
    (
        "key_name_invalid",
        "Geben Sie dem Schlüssel einen Namen mit 1 bis 100 Zeichen.",
    ),
    ("key_expiry_invalid", "Das Ablaufdatum ist kein Datum."),
    ("key_expiry_past", "Das Ablaufdatum muss in der Zukunft liegen."),
    ("key_permission_unknown", "Eine der Berechtigungen gibt es nicht."),
    (
        "key_permission_not_held",
        "Ein Schlüssel kann nur Berechtigungen tragen, die Sie selbst haben.",
    ),
    (
        "key_not_found",
        "Diesen Schlüssel gibt es nicht, oder er ist bereits widerrufen.",
    ),
];
