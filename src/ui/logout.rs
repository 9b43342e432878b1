//! RP-initiated logout (`GET /oauth2/logout`, the discovery document's
//! `end_session_endpoint`) and its confirmation (`POST /oauth2/logout`). The rules
//! are `domain::oidc::logout`'s: a valid `id_token_hint` naming this browser signs it
//! out at once; without one the person is asked first (so a link on another site
//! cannot sign them out); the browser is sent back only to a post-logout URI
//! registered for the application, with `state`, and otherwise shown that it is
//! signed out. Signing out ends the browser session, the application sessions it
//! authorized, and notifies the applications over the back channel.

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::pages::{Chrome, CsrfForm, check_csrf, render, set_cookie};
use super::{Lang, Messages, SESSION_COOKIE, current_session};
use crate::domain::oidc::logout::{LogoutPlan, LogoutRequest};
use crate::domain::{BrowserSession, ClientContext, Portcullis};
use crate::error::AppResult;

#[derive(Template)]
#[template(path = "logout.html")]
struct ConfirmPage<'a> {
    c: Chrome,
    session: &'a BrowserSession,
    /// The application asking, by name.
    app: Option<String>,
    client_id: String,
    post_logout_redirect_uri: String,
    state: String,
}

/// Where the browser goes once signed out: the application's registered URI (with
/// `state`), else the sign-in page saying it is signed out.
fn afterwards(service: &Portcullis, plan: &LogoutPlan, signed_out: bool) -> Response {
    let to = plan
        .redirect
        .clone()
        .unwrap_or_else(|| format!("{}?signed_out=1", service.config().path("/login")));
    let redirect = Redirect::to(&to);
    if signed_out {
        ([set_cookie(SESSION_COOKIE, "", Some(0))], redirect).into_response()
    } else {
        redirect.into_response()
    }
}

/// `GET /oauth2/logout`.
pub async fn start(
    State(service): State<Portcullis>,
    lang: Lang,
    ctx: ClientContext,
    headers: HeaderMap,
    Query(req): Query<LogoutRequest>,
) -> AppResult<Response> {
    let plan = service.plan_logout(&req).await?;
    let Some(session) = current_session(&service, &headers).await? else {
        // Signed out already: nothing to end here.
        return Ok(afterwards(&service, &plan, false));
    };
    if !plan.needs_confirmation(&session) {
        service.end_browser_session(&session, &ctx).await?;
        return Ok(afterwards(&service, &plan, true));
    }
    let page = ConfirmPage {
        c: Chrome::new(&service, lang),
        session: &session,
        app: plan.client.as_ref().map(|c| c.name.clone()),
        client_id: plan.client.as_ref().map(|c| c.client_id.clone()).unwrap_or_default(),
        post_logout_redirect_uri: plan
            .redirect
            .as_ref()
            .and(req.post_logout_redirect_uri.clone())
            .unwrap_or_default(),
        state: req.state.unwrap_or_default(),
    };
    let mut res = render(StatusCode::OK, &page);
    // Its form's answer redirects to the application: browsers hold a form's
    // redirects to `form-action` too.
    if let Some(to) = &plan.redirect {
        res.headers_mut().insert(
            axum::http::header::CONTENT_SECURITY_POLICY,
            super::page_csp_posting_to(service.config(), to),
        );
    }
    Ok(res)
}

#[derive(Debug, Deserialize)]
pub struct ConfirmForm {
    #[serde(flatten)]
    csrf: CsrfForm,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    post_logout_redirect_uri: String,
    #[serde(default)]
    state: String,
}

/// `POST /oauth2/logout`: the person confirmed.
pub async fn confirm(
    State(service): State<Portcullis>,
    ctx: ClientContext,
    headers: HeaderMap,
    Form(form): Form<ConfirmForm>,
) -> AppResult<Response> {
    let some = |v: String| Some(v).filter(|v| !v.is_empty());
    let req = LogoutRequest {
        client_id: some(form.client_id),
        post_logout_redirect_uri: some(form.post_logout_redirect_uri),
        state: some(form.state),
        ..LogoutRequest::default()
    };
    let plan = service.plan_logout(&req).await?;
    let Some(session) = current_session(&service, &headers).await? else {
        return Ok(afterwards(&service, &plan, false));
    };
    check_csrf(&session, &form.csrf)?;
    service.end_browser_session(&session, &ctx).await?;
    Ok(afterwards(&service, &plan, true))
}

pub const EN: Messages = &[
    ("logout_title", "Sign out"),
    ("logout_question", "Do you want to sign out?"),
    ("logout_app_asks", "This app asks you to sign out:"),
    (
        "logout_explained",
        "You will be signed out of this browser and of the apps you signed in to with it.",
    ),
    ("logout_confirm", "Sign out"),
    ("logout_cancel", "Stay signed in"),
];

pub const DE: Messages = &[
    ("logout_title", "Abmelden"),
    ("logout_question", "Möchten Sie sich abmelden?"),
    ("logout_app_asks", "Diese App bittet Sie, sich abzumelden:"),
    (
        "logout_explained",
        "Sie werden in diesem Browser und bei den Apps abgemeldet, bei denen Sie sich damit angemeldet haben.",
    ),
    ("logout_confirm", "Abmelden"),
    ("logout_cancel", "Angemeldet bleiben"),
];
