//! The account page "Apps" (`/account/apps`): the applications the person has allowed
//! to sign them in, what each may see in plain words, when it was allowed and last
//! used, and a button that takes the permission back (`Portcullis::revoke_grant`, as
//! `DELETE /auth/me/apps/{client_id}`), which also signs the app out.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use serde::Deserialize;

use super::pages::{Chrome, CsrfForm, check_csrf, render};
use super::profile::{DoneQuery, notice};
use super::sessions::Moment;
use super::{Lang, Messages};
use crate::domain::{Actor, BrowserSession, ClientContext, Portcullis};
use crate::error::{AppError, AppResult};

/// One application as the page shows it.
struct AppView {
    client_id: String,
    name: String,
    /// Catalogue keys of what each allowed scope lets it see or do.
    scopes: Vec<&'static str>,
    granted: Moment,
    last_used: Option<Moment>,
}

#[derive(Template)]
#[template(path = "apps.html")]
struct AppsPage<'a> {
    c: Chrome,
    section: &'static str,
    session: &'a BrowserSession,
    apps: Vec<AppView>,
    notice: Option<&'static str>,
    message: Option<&'static str>,
}

/// The catalogue key saying in plain words what `scope` gives an application.
fn scope_key(scope: &str) -> &'static str {
    match scope {
        "openid" => "apps_scope_openid",
        "profile" => "apps_scope_profile",
        "email" => "apps_scope_email",
        "roles" => "apps_scope_roles",
        "offline_access" => "apps_scope_offline_access",
        _ => "apps_scope_other",
    }
}

async fn render_page(
    service: &Portcullis,
    lang: Lang,
    session: &BrowserSession,
    status: StatusCode,
    notice: Option<&'static str>,
    message: Option<&'static str>,
) -> AppResult<Response> {
    let apps = service
        .list_grants(session.user_id)
        .await?
        .into_iter()
        .map(|g| AppView {
            scopes: g.scopes.iter().map(|s| scope_key(s)).collect(),
            client_id: g.client_id,
            name: g.name,
            granted: g.granted_at.into(),
            last_used: g.last_used.map(Moment::from),
        })
        .collect();
    let page = AppsPage {
        c: Chrome::new(service, lang),
        section: "apps",
        session,
        apps,
        notice,
        message,
    };
    Ok(render(status, &page))
}

/// `GET /account/apps`.
pub async fn page(
    State(service): State<Portcullis>,
    lang: Lang,
    Extension(session): Extension<BrowserSession>,
    Query(q): Query<DoneQuery>,
) -> AppResult<Response> {
    let done = notice(lang, &q, &[("revoked", "app_revoked")]);
    render_page(&service, lang, &session, StatusCode::OK, done, None).await
}

#[derive(Debug, Deserialize)]
pub struct RevokeForm {
    #[serde(flatten)]
    csrf: CsrfForm,
    #[serde(default)]
    client_id: String,
}

/// `POST /account/apps/revoke`: takes back what the person allowed the application
/// and ends its sessions.
pub async fn revoke(
    State(service): State<Portcullis>,
    lang: Lang,
    ctx: ClientContext,
    Extension(session): Extension<BrowserSession>,
    Form(form): Form<RevokeForm>,
) -> AppResult<Response> {
    check_csrf(&session, &form.csrf)?;
    let by = Actor::user(session.user_id, &session.username, &ctx);
    match service.revoke_grant(session.user_id, form.client_id.trim(), &by).await {
        Ok(_) => Ok(Redirect::to(&service.config().path("/account/apps?done=revoked")).into_response()),
        // Not allowed (any more): revoked elsewhere meanwhile, or never.
        Err(AppError::NotFound(_)) => {
            render_page(
                &service,
                lang,
                &session,
                StatusCode::NOT_FOUND,
                None,
                Some(lang.get("app_gone")),
            )
            .await
        }
        Err(e) => Err(e),
    }
}

pub const EN: Messages = &[
    ("nav_apps", "Apps"),
    ("apps_title", "Apps"),
    (
        "apps_intro",
        "Apps you have allowed to sign you in with this account, and what each may see.",
    ),
    ("apps_none", "You have not allowed any app yet."),
    ("app_may", "May"),
    ("app_granted", "Allowed"),
    ("app_last_used", "Last used"),
    ("app_never_used", "not yet"),
    ("app_revoke", "Remove access"),
    ("app_revoked", "The app's access was removed and it was signed out."),
    ("app_gone", "That app does not have access any more."),
    ("apps_scope_openid", "Know who you are"),
    ("apps_scope_profile", "See your name and username"),
    ("apps_scope_email", "See your e-mail address"),
    ("apps_scope_roles", "See your roles and permissions"),
    ("apps_scope_offline_access", "Stay signed in while you are away"),
    ("apps_scope_other", "Other access"),
];

pub const DE: Messages = &[
    ("nav_apps", "Apps"),
    ("apps_title", "Apps"),
    (
        "apps_intro",
        "Apps, denen Sie erlaubt haben, Sie mit diesem Konto anzumelden, und was jede sehen darf.",
    ),
    ("apps_none", "Sie haben noch keiner App Zugriff gegeben."),
    ("app_may", "Darf"),
    ("app_granted", "Erlaubt"),
    ("app_last_used", "Zuletzt verwendet"),
    ("app_never_used", "noch nicht"),
    ("app_revoke", "Zugriff entziehen"),
    (
        "app_revoked",
        "Der Zugriff der App wurde entzogen und sie wurde abgemeldet.",
    ),
    ("app_gone", "Diese App hat keinen Zugriff mehr."),
    ("apps_scope_openid", "Wissen, wer Sie sind"),
    ("apps_scope_profile", "Ihren Namen und Benutzernamen sehen"),
    ("apps_scope_email", "Ihre E-Mail-Adresse sehen"),
    ("apps_scope_roles", "Ihre Rollen und Berechtigungen sehen"),
    (
        "apps_scope_offline_access",
        "Angemeldet bleiben, während Sie abwesend sind",
    ),
    ("apps_scope_other", "Weiterer Zugriff"),
];
