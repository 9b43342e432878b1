//! Signing out. (The account pages themselves: `profile`, `sessions` and their
//! siblings, each including `account_nav.html`.)

use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use serde::Deserialize;

use super::SESSION_COOKIE;
use super::pages::{CsrfForm, check_csrf, set_cookie};
use crate::domain::{BrowserSession, ClientContext, Portcullis};
use crate::error::AppResult;

/// The sign-out form: one form, two buttons; `everywhere` is the second's.
#[derive(Debug, Deserialize)]
pub struct SignOutForm {
    #[serde(flatten)]
    csrf: CsrfForm,
    #[serde(default)]
    everywhere: Option<String>,
}

/// `POST /logout`: ends this browser's session, or with `everywhere` every session of
/// the user (browser and token alike, as `/auth/logout-all`).
pub async fn logout(
    State(service): State<Portcullis>,
    ctx: ClientContext,
    Extension(session): Extension<BrowserSession>,
    Form(form): Form<SignOutForm>,
) -> AppResult<Response> {
    check_csrf(&session, &form.csrf)?;
    if form.everywhere.is_some() {
        service
            .logout_everywhere(session.user_id, &session.username, &ctx)
            .await?;
    } else {
        service.end_browser_session(&session, &ctx).await?;
    }
    let to = format!("{}?signed_out=1", service.config().path("/login"));
    Ok(([set_cookie(SESSION_COOKIE, "", Some(0))], Redirect::to(&to)).into_response())
}
