//! `/admin/*`: users, roles, permissions and assignments; and the caller's own
//! permission checks (`/auth/me/permissions`, `/auth/check`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::Caller;
use super::auth::UserOut;
use super::extract::{ValidJson, ValidQuery};
use super::me::{SessionOut, session_out};
use crate::domain::Actor;
use crate::domain::accounts::Registration;
use crate::domain::accounts::{UserChanges, UserQuery};
use crate::error::{AppError, AppResult};
use crate::http::state::AppState;
use crate::store::{PermissionRow, RoleRow, UserSort};

fn parse_id(id: &str) -> AppResult<Uuid> {
    Uuid::parse_str(id).map_err(|_| AppError::validation("id", "is not a user id"))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ListUsersParams {
    /// Substring of username, email or full name (case-insensitive).
    #[serde(default)]
    pub q: Option<String>,
    /// `username`, `email` or `created_at`; prefix `-` for descending.
    #[serde(default)]
    pub sort: Option<String>,
    /// 1-500, default 50.
    #[serde(default)]
    pub limit: Option<i64>,
    #[serde(default)]
    pub offset: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserPageOut {
    pub items: Vec<UserOut>,
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}

pub async fn list_users(
    State(state): State<AppState>,
    ValidQuery(p): ValidQuery<ListUsersParams>,
) -> AppResult<Json<UserPageOut>> {
    let limit = p.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(AppError::validation("limit", "must be between 1 and 500"));
    }
    let offset = p.offset.unwrap_or(0);
    if !(0..=1_000_000_000).contains(&offset) {
        return Err(AppError::validation("offset", "must be between 0 and 1000000000"));
    }
    let sort_raw = p.sort.unwrap_or_else(|| "created_at".into());
    let (descending, key) = match sort_raw.strip_prefix('-') {
        Some(k) => (true, k),
        None => (false, sort_raw.as_str()),
    };
    let sort = match key {
        "username" => UserSort::Username,
        "email" => UserSort::Email,
        "created_at" => UserSort::CreatedAt,
        _ => {
            return Err(AppError::validation(
                "sort",
                "must be username, email or created_at, optionally prefixed with -",
            ));
        }
    };
    let page = state
        .service
        .list_users(&UserQuery {
            q: p.q.unwrap_or_default(),
            sort,
            descending,
            limit,
            offset,
        })
        .await?;
    Ok(Json(UserPageOut {
        items: page.users.into_iter().map(UserOut::from).collect(),
        total: page.total,
        limit,
        offset,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateUserRequest {
    pub username: String,
    pub email: String,
    pub password: String,
    #[serde(default)]
    pub full_name: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub is_superuser: bool,
}

pub async fn create_user(
    State(state): State<AppState>,
    by: Actor,
    ValidJson(req): ValidJson<CreateUserRequest>,
) -> AppResult<(StatusCode, Json<UserDetailOut>)> {
    let user = state
        .service
        .create_user(
            Registration {
                username: req.username,
                email: req.email,
                full_name: req.full_name,
                password: Some(req.password),
                password_hash: None,
                superuser: req.is_superuser,
                roles: req.roles,
            },
            &by,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(detail(&state, user.id).await?)))
}

/// A user with their roles and effective permissions.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserDetailOut {
    #[serde(flatten)]
    pub user: UserOut,
    pub roles: Vec<String>,
    pub permissions: Vec<String>,
}

async fn detail(state: &AppState, id: Uuid) -> AppResult<UserDetailOut> {
    let user = state.service.user(id).await?;
    let grants = state.service.grants(user.id, user.is_superuser).await?;
    Ok(UserDetailOut {
        user: user.into(),
        roles: grants.roles,
        permissions: grants.permissions,
    })
}

pub async fn get_user(State(state): State<AppState>, Path(id): Path<String>) -> AppResult<Json<UserDetailOut>> {
    Ok(Json(detail(&state, parse_id(&id)?).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateUserRequest {
    #[serde(default)]
    pub email: Option<String>,
    /// Empty string clears it.
    #[serde(default)]
    pub full_name: Option<String>,
    #[serde(default)]
    pub is_superuser: Option<bool>,
}

pub async fn update_user(
    State(state): State<AppState>,
    by: Actor,
    Path(id): Path<String>,
    ValidJson(req): ValidJson<UpdateUserRequest>,
) -> AppResult<Json<UserDetailOut>> {
    let id = parse_id(&id)?;
    state
        .service
        .update_user(
            id,
            UserChanges {
                email: req.email,
                full_name: req.full_name,
                is_superuser: req.is_superuser,
            },
            &by,
        )
        .await?;
    Ok(Json(detail(&state, id).await?))
}

pub async fn delete_user(State(state): State<AppState>, by: Actor, Path(id): Path<String>) -> AppResult<StatusCode> {
    state.service.delete_user(parse_id(&id)?, &by).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn disable_user(
    State(state): State<AppState>,
    by: Actor,
    Path(id): Path<String>,
) -> AppResult<Json<UserOut>> {
    Ok(Json(
        state.service.set_user_active(parse_id(&id)?, false, &by).await?.into(),
    ))
}

pub async fn enable_user(State(state): State<AppState>, by: Actor, Path(id): Path<String>) -> AppResult<Json<UserOut>> {
    Ok(Json(
        state.service.set_user_active(parse_id(&id)?, true, &by).await?.into(),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct SetPasswordRequest {
    pub password: String,
}

pub async fn set_password(
    State(state): State<AppState>,
    by: Actor,
    Path(id): Path<String>,
    ValidJson(req): ValidJson<SetPasswordRequest>,
) -> AppResult<StatusCode> {
    let id = parse_id(&id)?;
    state.service.set_password(id, &req.password, &by).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn unlock_user(State(state): State<AppState>, by: Actor, Path(id): Path<String>) -> AppResult<StatusCode> {
    state.service.unlock_user(parse_id(&id)?, &by).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn user_sessions(State(state): State<AppState>, Path(id): Path<String>) -> AppResult<Json<Vec<SessionOut>>> {
    let id = parse_id(&id)?;
    state.service.user(id).await?;
    let sessions = state.service.sessions_of(id).await?;
    Ok(Json(sessions.into_iter().map(|s| session_out(s, None)).collect()))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RevokedOut {
    pub revoked: usize,
}

pub async fn revoke_user_sessions(
    State(state): State<AppState>,
    by: Actor,
    Path(id): Path<String>,
) -> AppResult<Json<RevokedOut>> {
    let revoked = state.service.revoke_user_sessions(parse_id(&id)?, &by).await?;
    Ok(Json(RevokedOut { revoked }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GrantsOut {
    pub roles: Vec<String>,
    pub permissions: Vec<String>,
}

pub async fn user_permissions(State(state): State<AppState>, Path(id): Path<String>) -> AppResult<Json<GrantsOut>> {
    let d = detail(&state, parse_id(&id)?).await?;
    Ok(Json(GrantsOut {
        roles: d.roles,
        permissions: d.permissions,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RoleRef {
    pub role: String,
}

pub async fn assign_role(
    State(state): State<AppState>,
    by: Actor,
    Path(id): Path<String>,
    ValidJson(req): ValidJson<RoleRef>,
) -> AppResult<StatusCode> {
    state.service.assign_role(parse_id(&id)?, &req.role, &by).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn remove_role(
    State(state): State<AppState>,
    by: Actor,
    Path((id, role)): Path<(String, String)>,
) -> AppResult<StatusCode> {
    state.service.remove_role(parse_id(&id)?, &role, &by).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RoleOut {
    pub name: String,
    pub description: String,
    pub permissions: Vec<String>,
    pub created_at: DateTime<Utc>,
}

impl From<RoleRow> for RoleOut {
    fn from(r: RoleRow) -> Self {
        Self {
            name: r.name,
            description: r.description,
            permissions: r.permissions,
            created_at: r.created_at,
        }
    }
}

pub async fn list_roles(State(state): State<AppState>) -> AppResult<Json<Vec<RoleOut>>> {
    Ok(Json(
        state.service.roles().await?.into_iter().map(RoleOut::from).collect(),
    ))
}

pub async fn get_role(State(state): State<AppState>, Path(name): Path<String>) -> AppResult<Json<RoleOut>> {
    Ok(Json(state.service.role(&name).await?.into()))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateRoleRequest {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub permissions: Vec<String>,
}

pub async fn create_role(
    State(state): State<AppState>,
    by: Actor,
    ValidJson(req): ValidJson<CreateRoleRequest>,
) -> AppResult<(StatusCode, Json<RoleOut>)> {
    let role = state
        .service
        .create_role(&req.name, &req.description, &req.permissions, &by)
        .await?;
    Ok((StatusCode::CREATED, Json(role.into())))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateRoleRequest {
    #[serde(default)]
    pub description: Option<String>,
    /// Replaces the role's permission set.
    #[serde(default)]
    pub permissions: Option<Vec<String>>,
}

pub async fn update_role(
    State(state): State<AppState>,
    by: Actor,
    Path(name): Path<String>,
    ValidJson(req): ValidJson<UpdateRoleRequest>,
) -> AppResult<Json<RoleOut>> {
    let role = state
        .service
        .update_role(&name, req.description.as_deref(), req.permissions.as_deref(), &by)
        .await?;
    Ok(Json(role.into()))
}

pub async fn delete_role(State(state): State<AppState>, by: Actor, Path(name): Path<String>) -> AppResult<StatusCode> {
    state.service.delete_role(&name, &by).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct PermissionRef {
    pub permission: String,
}

pub async fn grant_permission(
    State(state): State<AppState>,
    by: Actor,
    Path(name): Path<String>,
    ValidJson(req): ValidJson<PermissionRef>,
) -> AppResult<StatusCode> {
    state.service.grant_permission(&name, &req.permission, &by).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn revoke_permission(
    State(state): State<AppState>,
    by: Actor,
    Path((name, permission)): Path<(String, String)>,
) -> AppResult<StatusCode> {
    state.service.revoke_permission(&name, &permission, &by).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PermissionOut {
    pub name: String,
    pub description: String,
    pub created_at: DateTime<Utc>,
}

impl From<PermissionRow> for PermissionOut {
    fn from(p: PermissionRow) -> Self {
        Self {
            name: p.name,
            description: p.description,
            created_at: p.created_at,
        }
    }
}

pub async fn list_permissions(State(state): State<AppState>) -> AppResult<Json<Vec<PermissionOut>>> {
    Ok(Json(
        state
            .service
            .permissions()
            .await?
            .into_iter()
            .map(PermissionOut::from)
            .collect(),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreatePermissionRequest {
    pub name: String,
    #[serde(default)]
    pub description: String,
}

pub async fn create_permission(
    State(state): State<AppState>,
    by: Actor,
    ValidJson(req): ValidJson<CreatePermissionRequest>,
) -> AppResult<(StatusCode, Json<PermissionOut>)> {
    let p = state
        .service
        .create_permission(&req.name, &req.description, &by)
        .await?;
    Ok((StatusCode::CREATED, Json(p.into())))
}

pub async fn delete_permission(
    State(state): State<AppState>,
    by: Actor,
    Path(name): Path<String>,
) -> AppResult<StatusCode> {
    state.service.delete_permission(&name, &by).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What the caller's token grants.
pub async fn my_permissions(Caller(caller): Caller) -> Json<GrantsOut> {
    Json(GrantsOut {
        roles: caller.roles.clone(),
        permissions: caller.permissions.clone(),
    })
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CheckRequest {
    pub permission: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CheckOut {
    pub permission: String,
    pub allowed: bool,
}

/// May the caller's token do `permission`? (Superusers may do anything.)
pub async fn check(Caller(caller): Caller, ValidJson(req): ValidJson<CheckRequest>) -> Json<CheckOut> {
    Json(CheckOut {
        allowed: caller.has_permission(&req.permission),
        permission: req.permission,
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RotatedOut {
    /// The `kid` new tokens carry.
    pub kid: String,
}

pub async fn rotate_signing_key(State(state): State<AppState>, by: Actor) -> AppResult<Json<RotatedOut>> {
    Ok(Json(RotatedOut {
        kid: state.service.rotate_signing_key(&by).await?,
    }))
}
