//! OAuth's own error format (RFC 6749 5.2): what the token, introspection, revocation
//! and device endpoints answer instead of problem+json, because OAuth clients
//! (FastAPI, Swagger UI, certified libraries) parse `error`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::AppError;

/// RFC 6749 section 5.2 error body.
#[derive(Debug, Serialize, ToSchema)]
pub struct OAuthErrorBody {
    pub error: &'static str,
    pub error_description: String,
    /// With `mfa_required` (the password was right, a second factor is due): the
    /// challenge for `POST /auth/mfa/verify`, as Auth0's clients expect it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mfa_token: Option<String>,
}

/// An error of the token endpoint, in OAuth's own format rather than problem+json,
/// because OAuth clients (FastAPI, Swagger UI, libraries) parse `error`.
pub struct OAuthError {
    status: StatusCode,
    body: OAuthErrorBody,
    /// Seconds for `Retry-After` on 429 and 503.
    retry_after: Option<u64>,
}

impl OAuthError {
    pub(crate) fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    /// 403 `mfa_required` with the challenge, the convention Auth0's clients know.
    pub(crate) fn mfa_required(mfa_token: String) -> Self {
        let mut e = Self::new(
            StatusCode::FORBIDDEN,
            "mfa_required",
            "a second factor is required: send the mfa_token with a code to /auth/mfa/verify",
        );
        e.body.mfa_token = Some(mfa_token);
        e
    }

    pub(crate) fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            body: OAuthErrorBody {
                error,
                error_description: description.into(),
                mfa_token: None,
            },
            retry_after: None,
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        // RFC 6749 5.2: a client that failed to authenticate is told how to (it may
        // have tried HTTP Basic, which then requires the challenge).
        let challenge = self.body.error == "invalid_client";
        let mut res = (self.status, Json(self.body)).into_response();
        if challenge {
            res.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Basic realm=\"portcullis\", charset=\"UTF-8\""),
            );
        }
        if let Some(seconds) = self.retry_after {
            res.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(seconds));
        }
        res
    }
}

impl From<AppError> for OAuthError {
    fn from(e: AppError) -> Self {
        match e {
            AppError::OAuth(f) => Self::new(f.status(), f.code(), f.to_string()),
            AppError::InvalidCredentials(d) => Self::new(StatusCode::BAD_REQUEST, "invalid_grant", d),
            AppError::Validation(_) | AppError::BadRequest(_) => {
                Self::new(StatusCode::BAD_REQUEST, "invalid_request", e.to_string())
            }
            AppError::TooManyRequests { retry_after } => Self {
                retry_after: Some(retry_after),
                ..Self::new(StatusCode::TOO_MANY_REQUESTS, "slow_down", e.to_string())
            },
            AppError::Unavailable { retry_after, .. } => Self {
                retry_after: Some(retry_after),
                ..Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    e.to_string(),
                )
            },
            other => {
                let status = other.status();
                // Internal causes are logged by the problem mapping; reuse it.
                let _ = other.into_response();
                Self::new(status, "server_error", "internal error")
            }
        }
    }
}
