//! Service metadata: health, readiness, metrics, discovery, keys, API description.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{AppError, AppResult};
use crate::http::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
}

/// Liveness: answers without touching the database.
pub async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Readiness: the database answers.
pub async fn ready(State(state): State<AppState>) -> AppResult<Json<Health>> {
    state.service.store().ping().await.map_err(|_| AppError::Unavailable {
        message: "database is not reachable".into(),
        retry_after: 5,
    })?;
    Ok(Json(Health { status: "ready" }))
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    let (open, idle) = state.service.store().pool_usage();
    metrics::gauge!("portcullis_db_pool_connections", "state" => "open").set(open as f64);
    metrics::gauge!("portcullis_db_pool_connections", "state" => "idle").set(idle as f64);
    let body = state.metrics.render();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        body,
    )
        .into_response()
}

fn cacheable_json(body: impl IntoResponse) -> Response {
    let mut res = body.into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=60"));
    res
}

pub async fn jwks(State(state): State<AppState>) -> Response {
    cacheable_json(state.service.keys().ring().jwks())
}

/// The provider metadata (`domain::oidc::discovery`), served as OpenID Connect
/// Discovery and as RFC 8414 authorization server metadata alike.
pub async fn openid_configuration(State(state): State<AppState>) -> Response {
    let locales: Vec<&str> = crate::ui::Lang::all().map(|l| l.code).collect();
    cacheable_json(Json(
        state
            .service
            .discovery_document(&locales, |path| state.served.contains(path)),
    ))
}

pub async fn openapi(State(state): State<AppState>) -> Response {
    let mut res = state.openapi.clone().into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}
