//! API keys, temporary tokens, and the checks gateways and resource servers call:
//! `/auth/verify` (forward auth), `/auth/introspect` (RFC 7662), `/auth/revoke`
//! (RFC 7009).

use axum::Json;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::Caller;
use super::auth::OAuthError;
use super::extract::{UrlForm, ValidJson, ValidQuery};
use crate::config::routemap::is_method_override_header;
use crate::domain::credentials::Introspection;
use crate::domain::{Actor, ClientContext, Principal};
use crate::error::{AppError, AppResult};
use crate::http::state::AppState;
use crate::store::ApiKeyRow;

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateApiKeyRequest {
    pub name: String,
    /// A subset of the caller's permissions.
    #[serde(default)]
    pub permissions: Vec<String>,
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

/// An API key as listed: never its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyOut {
    pub id: String,
    pub user_id: Uuid,
    pub name: String,
    pub permissions: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<ApiKeyRow> for ApiKeyOut {
    fn from(k: ApiKeyRow) -> Self {
        Self {
            permissions: serde_json::from_str(&k.permissions).unwrap_or_default(),
            id: k.id,
            user_id: k.user_id,
            name: k.name,
            created_at: k.created_at,
            expires_at: k.expires_at,
            last_used_at: k.last_used_at,
            revoked_at: k.revoked_at,
        }
    }
}

/// A new API key: `key` is shown this once and never again.
#[derive(Debug, Serialize, ToSchema)]
pub struct NewApiKeyOut {
    #[serde(flatten)]
    pub info: ApiKeyOut,
    pub key: String,
}

pub async fn create_api_key(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ctx: ClientContext,
    ValidJson(req): ValidJson<CreateApiKeyRequest>,
) -> AppResult<(StatusCode, Json<NewApiKeyOut>)> {
    let (row, key) = state
        .service
        .create_api_key(&caller, &req.name, req.permissions, req.expires_at, &ctx)
        .await?;
    Ok((StatusCode::CREATED, Json(NewApiKeyOut { info: row.into(), key })))
}

pub async fn list_my_api_keys(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> AppResult<Json<Vec<ApiKeyOut>>> {
    Ok(Json(
        state
            .service
            .api_keys_of(caller.user_id)
            .await?
            .into_iter()
            .map(ApiKeyOut::from)
            .collect(),
    ))
}

pub async fn get_my_api_key(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> AppResult<Json<ApiKeyOut>> {
    Ok(Json(state.service.api_key(&id, Some(caller.user_id)).await?.into()))
}

pub async fn revoke_my_api_key(
    State(state): State<AppState>,
    Caller(caller): Caller,
    by: Actor,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    state.service.revoke_api_key(&id, Some(caller.user_id), &by).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct PageParams {
    #[serde(default)]
    pub limit: Option<i64>,
    #[serde(default)]
    pub offset: Option<i64>,
}

pub async fn list_all_api_keys(
    State(state): State<AppState>,
    ValidQuery(p): ValidQuery<PageParams>,
) -> AppResult<Json<Vec<ApiKeyOut>>> {
    let limit = p.limit.unwrap_or(100);
    let offset = p.offset.unwrap_or(0);
    Ok(Json(
        state
            .service
            .all_api_keys(limit, offset)
            .await?
            .into_iter()
            .map(ApiKeyOut::from)
            .collect(),
    ))
}

pub async fn revoke_any_api_key(
    State(state): State<AppState>,
    by: Actor,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    state.service.revoke_api_key(&id, None, &by).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateTemporaryTokenRequest {
    /// A subset of the caller's permissions.
    #[serde(default)]
    pub permissions: Vec<String>,
    /// Lifetime, at most TEMPORARY_TOKEN_MAX_TTL_SECONDS (default one hour).
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
    /// E.g. 1 for a single-use token; unlimited when absent.
    #[serde(default)]
    pub max_uses: Option<u32>,
    pub purpose: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TemporaryTokenOut {
    pub id: String,
    /// Shown this once.
    pub token: String,
    pub permissions: Vec<String>,
    pub purpose: String,
    pub max_uses: Option<i32>,
    pub expires_at: DateTime<Utc>,
}

pub async fn create_temporary_token(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ctx: ClientContext,
    ValidJson(req): ValidJson<CreateTemporaryTokenRequest>,
) -> AppResult<(StatusCode, Json<TemporaryTokenOut>)> {
    let (row, token) = state
        .service
        .create_temporary_token(
            &caller,
            req.permissions,
            req.ttl_seconds,
            req.max_uses,
            &req.purpose,
            &ctx,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(TemporaryTokenOut {
            id: row.id,
            token,
            permissions: serde_json::from_str(&row.permissions).unwrap_or_default(),
            purpose: row.purpose,
            max_uses: row.max_uses,
            expires_at: row.expires_at,
        }),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct VerifyParams {
    /// A permission the caller must hold (also `X-Required-Permission`).
    #[serde(default)]
    pub permission: Option<String>,
}

// Borrowed from the caller: this answers every request a gateway forwards, so it
// copies nothing it does not have to. (Not a doc comment: those become the schema's
// description in the OpenAPI document.)
/// Who the gateway may let through.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyOut<'a> {
    pub user_id: Uuid,
    pub username: &'a str,
    pub credential: &'static str,
    pub roles: &'a [String],
    pub permissions: &'a [String],
}

/// A header's value; None when absent, empty or not text.
fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
}

/// The request a gateway asks about: Traefik sends `X-Forwarded-Method`/`-Uri`, nginx
/// the `X-Original-*` its configuration sets. Each passes the client's own headers
/// through, so a client can add the family its gateway does not set; when both are
/// present they must agree, or the check fails.
fn original_request(headers: &HeaderMap) -> AppResult<Option<(&str, &str)>> {
    let one = |forwarded: &str, original: &str, same: fn(&str, &str) -> bool| match (
        header(headers, forwarded),
        header(headers, original),
    ) {
        (Some(a), Some(b)) if !same(a, b) => Err(AppError::Forbidden(format!(
            "{forwarded} and {original} name different requests"
        ))),
        (a, b) => Ok(a.or(b)),
    };
    let method = one("x-forwarded-method", "x-original-method", |a, b| {
        a.eq_ignore_ascii_case(b)
    })?;
    let uri = one("x-forwarded-uri", "x-original-uri", |a, b| a == b)?;
    Ok(uri.map(|u| (method.unwrap_or("GET"), u)))
}

/// The values of the method-override headers the original request carried (gateways
/// pass the client's headers on to the check), in any spelling a backend reads as
/// one; one that is not text is refused.
fn method_overrides(headers: &HeaderMap) -> AppResult<Vec<&str>> {
    headers
        .iter()
        .filter(|(name, _)| is_method_override_header(name.as_str()))
        .map(|(name, value)| {
            value
                .to_str()
                .map_err(|_| AppError::Forbidden(format!("the {name} header is not text")))
        })
        .collect()
}

/// Decides a forward-auth request. The route map judges the original method and path
/// as the backend will read them (refusing what backends read differently), under the
/// request's own method and each method override it carries (`overrides`, and
/// `_method` in its query), and names the permissions: every one is required.
/// `VERIFY_DEFAULT=deny` refuses what no rule (nor the gateway's `?permission=`)
/// covers. A permission the request names itself (`X-Required-Permission`,
/// `?permission=`) is required as well, never instead: a client can add that header to
/// what its gateway forwards.
fn decide(
    state: &AppState,
    caller: &Principal,
    named: Option<&str>,
    from_gateway: Option<&str>,
    original: Option<(&str, &str)>,
    overrides: &[&str],
) -> AppResult<Response> {
    let config = state.service.config();
    let unmatched_allowed = config.gateway.default_allow || from_gateway.is_some();
    let mut mapped = Vec::new();
    match original {
        Some((method, uri)) => {
            let served = config
                .gateway
                .routes
                .judge_served(method, overrides, uri)
                .map_err(AppError::Forbidden)?;
            for judged in served {
                match judged.permission {
                    Some(p) => mapped.push(p),
                    None if unmatched_allowed => {}
                    None => {
                        let (method, path) = (judged.method, judged.path);
                        return Err(AppError::Forbidden(format!("no route rule allows {method} {path}")));
                    }
                }
            }
        }
        None if unmatched_allowed => {}
        None => {
            return Err(AppError::Forbidden(
                "no route rule applies: the gateway sent neither X-Forwarded-Uri nor X-Original-URI".into(),
            ));
        }
    };
    for p in [named, from_gateway].into_iter().flatten().chain(mapped) {
        if !caller.has_permission(p) {
            return Err(AppError::Forbidden(format!("missing permission {p}")));
        }
    }
    let join =
        |items: &[String]| HeaderValue::from_str(&items.join(",")).unwrap_or_else(|_| HeaderValue::from_static(""));
    let mut res = Json(VerifyOut {
        user_id: caller.user_id,
        username: &caller.username,
        credential: caller.credential.kind(),
        roles: &caller.roles,
        permissions: &caller.permissions,
    })
    .into_response();
    let h = res.headers_mut();
    let mut id = Uuid::encode_buffer();
    h.insert(
        "x-auth-user-id",
        HeaderValue::from_str(caller.user_id.hyphenated().encode_lower(&mut id))
            .unwrap_or_else(|_| HeaderValue::from_static("")),
    );
    h.insert(
        "x-auth-username",
        HeaderValue::from_str(&caller.username).unwrap_or_else(|_| HeaderValue::from_static("")),
    );
    h.insert("x-auth-roles", join(&caller.roles));
    h.insert("x-auth-permissions", join(&caller.permissions));
    h.insert("x-auth-credential", HeaderValue::from_static(caller.credential.kind()));
    Ok(res)
}

/// Forward auth for nginx `auth_request` and Traefik ForwardAuth: the original
/// request arrives in `X-Original-*` / `X-Forwarded-*` headers.
pub async fn verify(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ValidQuery(q): ValidQuery<VerifyParams>,
    // The request itself rather than a copy of its headers (axum's `HeaderMap`
    // extractor clones them).
    req: Request,
) -> AppResult<Response> {
    let headers = req.headers();
    let original = original_request(headers)?;
    decide(
        &state,
        &caller,
        header(headers, "x-required-permission"),
        q.permission.as_deref(),
        original,
        &method_overrides(headers)?,
    )
}

/// Forward auth for Envoy's HTTP ext_authz with `path_prefix: /auth/verify`: the
/// original method and path arrive as this request's own.
pub async fn verify_prefixed(
    State(state): State<AppState>,
    Caller(caller): Caller,
    // As `verify`: the request itself, not copies of its method and headers. The path
    // is read as sent (the route's own parameter comes percent-decoded, and decoding
    // twice is not what the backend does).
    req: Request,
) -> AppResult<Response> {
    let named = header(req.headers(), "x-required-permission");
    // With its query: a `_method` there is a method override.
    let sent = req.uri().path_and_query().map_or(req.uri().path(), |pq| pq.as_str());
    let path = sent.split_once("/auth/verify").map_or(sent, |(_, rest)| rest);
    let overrides = method_overrides(req.headers())?;
    decide(
        &state,
        &caller,
        named,
        None,
        Some((req.method().as_str(), path)),
        &overrides,
    )
}

/// RFC 7662 / RFC 7009 request body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct TokenForm {
    pub token: Option<String>,
    /// Accepted and not needed: the kind is told by the token itself.
    pub token_type_hint: Option<String>,
}

fn token_from(form: Result<UrlForm<TokenForm>, FormRejection>) -> Result<String, OAuthError> {
    let UrlForm(form) = form.map_err(|rej| OAuthError::invalid_request(rej.body_text()))?;
    let _ = form.token_type_hint;
    form.token
        .filter(|t| !t.is_empty() && t.len() <= crate::domain::authn::MAX_TOKEN_LEN)
        .ok_or_else(|| OAuthError::invalid_request("token is required"))
}

pub async fn introspect(
    State(state): State<AppState>,
    form: Result<UrlForm<TokenForm>, FormRejection>,
) -> Result<Json<Introspection>, OAuthError> {
    let token = token_from(form)?;
    Ok(Json(state.service.introspect(&token).await?))
}

pub async fn revoke(
    State(state): State<AppState>,
    ctx: ClientContext,
    form: Result<UrlForm<TokenForm>, FormRejection>,
) -> Result<StatusCode, OAuthError> {
    let token = token_from(form)?;
    state.service.revoke_credential(&token, &ctx).await?;
    Ok(StatusCode::OK)
}
