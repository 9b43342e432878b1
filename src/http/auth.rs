//! `/auth/*`: registration, login, the OAuth2 token endpoint, refresh and logout.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::Caller;
use super::extract::{UrlForm, ValidJson};
use crate::domain::accounts::Registration;
use crate::domain::login::LoginOutcome;
use crate::domain::{ClientContext, TokenPair};
use crate::error::{AppError, AppResult};
pub use crate::http::oauth_error::{OAuthError, OAuthErrorBody};
use crate::http::state::AppState;
use crate::store::UserRow;

#[derive(Debug, Deserialize, ToSchema)]
pub struct RegisterRequest {
    pub username: String,
    pub email: String,
    pub password: String,
    #[serde(default)]
    pub full_name: Option<String>,
}

/// A user as shown to clients; never includes the password hash.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserOut {
    pub user_id: Uuid,
    pub username: String,
    pub email: String,
    pub full_name: Option<String>,
    pub is_active: bool,
    pub is_superuser: bool,
    pub created_at: DateTime<Utc>,
}

impl From<UserRow> for UserOut {
    fn from(u: UserRow) -> Self {
        Self {
            user_id: u.id,
            username: u.username,
            email: u.email,
            full_name: u.full_name,
            is_active: u.is_active,
            is_superuser: u.is_superuser,
            created_at: u.created_at,
        }
    }
}

pub async fn register(
    State(state): State<AppState>,
    ValidJson(req): ValidJson<RegisterRequest>,
) -> AppResult<(StatusCode, Json<UserOut>)> {
    let user = state
        .service
        .register(Registration {
            username: req.username,
            email: req.email,
            full_name: req.full_name,
            password: Some(req.password),
            password_hash: None,
            superuser: false,
            roles: Vec::new(),
        })
        .await?;
    Ok((StatusCode::CREATED, Json(user.into())))
}

/// `username` may also be an email; clients that send `email` instead are accepted.
#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginRequest {
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    pub password: String,
}

pub async fn login(
    State(state): State<AppState>,
    ctx: ClientContext,
    ValidJson(req): ValidJson<LoginRequest>,
) -> AppResult<Json<LoginOutcome>> {
    let login = req
        .username
        .or(req.email)
        .ok_or_else(|| AppError::validation("username", "is required"))?;
    Ok(Json(state.service.login(&login, &req.password, &ctx).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

pub async fn refresh(
    State(state): State<AppState>,
    ctx: ClientContext,
    ValidJson(req): ValidJson<RefreshRequest>,
) -> AppResult<Json<TokenPair>> {
    Ok(Json(state.service.refresh(&req.refresh_token, &ctx).await?))
}

pub async fn logout(
    State(state): State<AppState>,
    ctx: ClientContext,
    ValidJson(req): ValidJson<RefreshRequest>,
) -> AppResult<StatusCode> {
    state.service.logout(&req.refresh_token, &ctx).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn logout_all(
    State(state): State<AppState>,
    ctx: ClientContext,
    Caller(caller): Caller,
) -> AppResult<StatusCode> {
    state
        .service
        .logout_everywhere(caller.user_id, &caller.username, &ctx)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// RFC 6749 token request (`application/x-www-form-urlencoded`).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct TokenRequest {
    pub grant_type: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub refresh_token: Option<String>,
    /// Accepted and ignored: permissions come from roles.
    pub scope: Option<String>,
    pub client_id: Option<String>,
}

pub async fn token(
    State(state): State<AppState>,
    ctx: ClientContext,
    form: Result<UrlForm<TokenRequest>, FormRejection>,
) -> Result<Json<LoginOutcome>, OAuthError> {
    let UrlForm(req) = form.map_err(|rej| {
        OAuthError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            match rej {
                FormRejection::InvalidFormContentType(_) => {
                    "expected Content-Type: application/x-www-form-urlencoded".to_string()
                }
                other => other.body_text(),
            },
        )
    })?;
    let missing = |field: &str| {
        OAuthError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("{field} is required"),
        )
    };
    // FastAPI's OAuth2PasswordRequestForm makes grant_type optional, and the clients of
    // the services Portcullis replaces send only a username and a password.
    let grant = match req.grant_type.as_deref() {
        None if req.username.is_some() && req.password.is_some() => Some("password"),
        given => given,
    };
    match grant {
        Some("password") => {
            let username = req.username.ok_or_else(|| missing("username"))?;
            let password = req.password.ok_or_else(|| missing("password"))?;
            match state.service.login(&username, &password, &ctx).await? {
                // An OAuth client takes any 200 for success and would then send
                // `Bearer undefined`: a due second factor is an error here, carrying the
                // challenge (`/auth/login` answers it as a 200 with more detail).
                LoginOutcome::MfaRequired(c) => Err(OAuthError::mfa_required(c.mfa_token)),
                outcome => Ok(Json(outcome)),
            }
        }
        Some("refresh_token") => {
            let token = req.refresh_token.ok_or_else(|| missing("refresh_token"))?;
            Ok(Json(LoginOutcome::Tokens(state.service.refresh(&token, &ctx).await?)))
        }
        Some(other) => Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            format!(
                "grant_type {:?} is not supported; use password or refresh_token",
                other.chars().take(64).collect::<String>()
            ),
        )),
        None => Err(missing("grant_type")),
    }
}
