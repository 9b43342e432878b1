//! The applications a person has allowed (`domain::oidc::consent`), for apps with a
//! front end of their own: `GET /auth/me/apps` and `DELETE /auth/me/apps/{client_id}`.
//! The account page "Apps" (`ui::apps`) does the same for the hosted pages.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::Caller;
use crate::domain::oidc::consent::Grant;
use crate::domain::{Actor, ClientContext};
use crate::error::AppResult;
use crate::http::state::AppState;

pub async fn list(State(state): State<AppState>, Caller(caller): Caller) -> AppResult<Json<Vec<Grant>>> {
    Ok(Json(state.service.list_grants(caller.user_id).await?))
}

/// Revokes the grant and ends every session the application holds for the caller.
pub async fn revoke(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ctx: ClientContext,
    Path(client_id): Path<String>,
) -> AppResult<StatusCode> {
    let by = Actor::principal(&caller, &ctx);
    state.service.revoke_grant(caller.user_id, &client_id, &by).await?;
    Ok(StatusCode::NO_CONTENT)
}
