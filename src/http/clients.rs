//! `/admin/clients`: the registry of OpenID Connect clients (applications and service
//! accounts), for callers holding `clients:manage`. A client's secret is answered
//! once, by the create and rotate calls, and never again.

use std::time::Duration;

use axum::Json;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::ToSchema;

use super::extract::ValidJson;
use super::oidc::no_store;
use crate::domain::Actor;
use crate::domain::oidc::clients::DEFAULT_ROTATION_GRACE;
use crate::domain::oidc::{Client, ClientPatch, ClientSpec};
use crate::error::AppResult;
use crate::http::state::AppState;

pub async fn list_clients(State(state): State<AppState>) -> AppResult<Json<Vec<Client>>> {
    Ok(Json(state.service.clients().await?))
}

/// 201 with the client and, for a secret method, `client_secret` (this once).
pub async fn create_client(
    State(state): State<AppState>,
    by: Actor,
    ValidJson(spec): ValidJson<ClientSpec>,
) -> AppResult<Response> {
    let created = state.service.create_client(spec, &by).await?;
    Ok(no_store((StatusCode::CREATED, Json(created))))
}

pub async fn get_client(State(state): State<AppState>, Path(id): Path<String>) -> AppResult<Json<Client>> {
    Ok(Json(state.service.client(&id).await?))
}

pub async fn update_client(
    State(state): State<AppState>,
    by: Actor,
    Path(id): Path<String>,
    ValidJson(patch): ValidJson<ClientPatch>,
) -> AppResult<Json<Client>> {
    Ok(Json(state.service.update_client(&id, patch, &by).await?))
}

pub async fn delete_client(State(state): State<AppState>, by: Actor, Path(id): Path<String>) -> AppResult<StatusCode> {
    state.service.delete_client(&id, &by).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The optional body of a rotation.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecretRequest {
    /// How long the old secret keeps working, in seconds (default 86400; 0 ends it,
    /// and every service-account token, at once; at most 30 days).
    pub grace_seconds: Option<u64>,
}

/// 200 with the client and its new `client_secret` (this once). The body is optional.
pub async fn rotate_secret(
    State(state): State<AppState>,
    by: Actor,
    Path(id): Path<String>,
    req: Request,
) -> AppResult<Response> {
    let has_body = req.headers().contains_key(header::CONTENT_TYPE)
        || req
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    let body = if has_body {
        ValidJson::<RotateSecretRequest>::from_request(req, &state).await?.0
    } else {
        RotateSecretRequest::default()
    };
    let grace = body.grace_seconds.map_or(DEFAULT_ROTATION_GRACE, Duration::from_secs);
    let rotated = state.service.rotate_client_secret(&id, grace, &by).await?;
    Ok(no_store(Json(rotated)).into_response())
}
