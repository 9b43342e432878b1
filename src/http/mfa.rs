//! `/auth/mfa/*`: TOTP enrolment and removal, recovery codes, the second step of a
//! login; and the administrator's reset.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Caller;
use super::extract::ValidJson;
use crate::domain::mfa::{MfaStatus, SecondFactor, TotpEnrollment};
use crate::domain::{Actor, ClientContext, TokenPair};
use crate::error::{AppError, AppResult};
use crate::http::state::AppState;

/// A second factor: exactly one of `code` (6 digits from the app) or `recovery_code`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct FactorFields {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub recovery_code: Option<String>,
}

impl FactorFields {
    fn factor(&self) -> AppResult<SecondFactor<'_>> {
        match (&self.code, &self.recovery_code) {
            (Some(c), None) => Ok(SecondFactor::Totp(c)),
            (None, Some(r)) => Ok(SecondFactor::RecoveryCode(r)),
            _ => Err(AppError::validation(
                "code",
                "give exactly one of code or recovery_code",
            )),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct EnrollRequest {
    /// Required with a session token when the account has a password.
    #[serde(default)]
    pub password: Option<String>,
}

pub async fn enroll(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ctx: ClientContext,
    ValidJson(req): ValidJson<EnrollRequest>,
) -> AppResult<Json<TotpEnrollment>> {
    Ok(Json(
        state
            .service
            .enroll_totp(&caller, req.password.as_deref(), &ctx)
            .await?,
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ConfirmRequest {
    pub code: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RecoveryCodesOut {
    /// Shown this once; each works once.
    pub recovery_codes: Vec<String>,
}

pub async fn confirm(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ctx: ClientContext,
    ValidJson(req): ValidJson<ConfirmRequest>,
) -> AppResult<Json<RecoveryCodesOut>> {
    Ok(Json(RecoveryCodesOut {
        recovery_codes: state.service.confirm_totp(&caller, &req.code, &ctx).await?,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct DisableRequest {
    pub password: String,
    #[serde(flatten)]
    pub factor: FactorFields,
}

pub async fn disable(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ctx: ClientContext,
    ValidJson(req): ValidJson<DisableRequest>,
) -> AppResult<StatusCode> {
    state
        .service
        .disable_totp(&caller, &req.password, req.factor.factor()?, &ctx)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn regenerate_recovery_codes(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ctx: ClientContext,
    ValidJson(req): ValidJson<FactorFields>,
) -> AppResult<Json<RecoveryCodesOut>> {
    Ok(Json(RecoveryCodesOut {
        recovery_codes: state
            .service
            .regenerate_recovery_codes(&caller, req.factor()?, &ctx)
            .await?,
    }))
}

pub async fn status(State(state): State<AppState>, Caller(caller): Caller) -> AppResult<Json<MfaStatus>> {
    Ok(Json(state.service.mfa_status(caller.user_id).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct VerifyRequest {
    pub mfa_token: String,
    #[serde(flatten)]
    pub factor: FactorFields,
}

pub async fn verify(
    State(state): State<AppState>,
    ctx: ClientContext,
    ValidJson(req): ValidJson<VerifyRequest>,
) -> AppResult<Json<TokenPair>> {
    Ok(Json(
        state
            .service
            .verify_mfa(&req.mfa_token, req.factor.factor()?, &ctx)
            .await?,
    ))
}

pub async fn admin_reset(State(state): State<AppState>, by: Actor, Path(id): Path<String>) -> AppResult<StatusCode> {
    let id = uuid::Uuid::parse_str(&id).map_err(|_| AppError::validation("id", "is not a user id"))?;
    state.service.reset_mfa(id, &by).await?;
    Ok(StatusCode::NO_CONTENT)
}
