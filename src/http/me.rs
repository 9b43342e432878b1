//! `/auth/me` and the caller's own sessions.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::Caller;
use super::auth::UserOut;
use super::extract::ValidJson;
use crate::domain::{Actor, ClientContext};
use crate::error::{AppError, AppResult};
use crate::http::state::AppState;

/// The caller's account plus what their token grants.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeOut {
    #[serde(flatten)]
    pub user: UserOut,
    pub roles: Vec<String>,
    pub permissions: Vec<String>,
    /// Absent when the caller used an API key or temporary token.
    pub session_id: Option<Uuid>,
}

pub async fn get_me(State(state): State<AppState>, Caller(caller): Caller) -> AppResult<Json<MeOut>> {
    let user = state.service.me_cached(&caller).await?;
    Ok(Json(MeOut {
        user: user.into(),
        roles: caller.roles.clone(),
        permissions: caller.permissions.clone(),
        session_id: caller.session_id,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateMeRequest {
    /// Empty string clears it.
    #[serde(default)]
    pub full_name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
}

pub async fn patch_me(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ctx: ClientContext,
    ValidJson(req): ValidJson<UpdateMeRequest>,
) -> AppResult<Json<UserOut>> {
    Ok(Json(
        state
            .service
            .update_me(&caller, req.full_name, req.email, &ctx)
            .await?
            .into(),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ChangePasswordRequest {
    pub current_password: String,
    pub new_password: String,
}

pub async fn change_password(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ctx: ClientContext,
    ValidJson(req): ValidJson<ChangePasswordRequest>,
) -> AppResult<StatusCode> {
    state
        .service
        .change_password(&caller, &req.current_password, &req.new_password, &ctx)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionOut {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub last_refreshed_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    pub amr: Vec<String>,
    /// `browser` (a sign-in on the hosted pages, held as a cookie), `token` (a
    /// login that holds tokens) or `app` (an application's tokens, issued through the
    /// OpenID provider).
    pub kind: &'static str,
    /// With `app`: which application.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The session the request's own token belongs to.
    pub current: bool,
}

/// A session as shown to clients; `current` marks the one `current_session` names.
pub fn session_out(s: crate::store::SessionRow, current_session: Option<Uuid>) -> SessionOut {
    SessionOut {
        current: Some(s.id) == current_session,
        amr: serde_json::from_str(&s.amr).unwrap_or_default(),
        kind: match (s.browser, &s.client_id) {
            (true, _) => "browser",
            (false, Some(_)) => "app",
            (false, None) => "token",
        },
        client_id: s.client_id,
        id: s.id,
        created_at: s.created_at,
        last_refreshed_at: s.last_refreshed_at,
        expires_at: s.expires_at,
        user_agent: s.user_agent,
        ip: s.ip,
    }
}

pub async fn list_sessions(State(state): State<AppState>, Caller(caller): Caller) -> AppResult<Json<Vec<SessionOut>>> {
    let sessions = state.service.sessions_of(caller.user_id).await?;
    Ok(Json(
        sessions
            .into_iter()
            .map(|s| session_out(s, caller.session_id))
            .collect(),
    ))
}

pub async fn delete_session(
    State(state): State<AppState>,
    Caller(caller): Caller,
    by: Actor,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    let id = Uuid::parse_str(&id).map_err(|_| AppError::validation("id", "is not a session id"))?;
    state.service.end_session(caller.user_id, id, &by).await?;
    Ok(StatusCode::NO_CONTENT)
}
