//! The one error type, mapped once to an RFC 9457 `application/problem+json` answer.
//!
//! Handlers and the domain return `AppError`; nothing else decides status codes. The
//! `detail` is written for the client and must never carry a secret; internal causes
//! are logged (without request data) and answered with a generic 500.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

pub type AppResult<T> = Result<T, AppError>;

/// The code of a field error with no finer reason: pages show its English message.
pub const INVALID: &str = "invalid";

/// One invalid field of a request body.
///
/// `message` is the English sentence API clients have always read; `code` names the
/// same reason in a stable, machine-readable way (`crate::domain::validate::CODES`
/// lists them), so the hosted pages can say it in the reader's language, with `args`
/// filled in and, for a guessable password, zxcvbn's `advice` as codes too. Made only
/// through `FieldError::new`, so no error is without a code.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
    /// The reason, e.g. `password_too_short`; `invalid` when no finer one exists.
    pub code: &'static str,
    /// The numbers the reason's text names (`{n}`, `{min}`, `{max}`), by name.
    #[serde(skip)]
    #[schema(ignore)]
    args: Vec<(&'static str, i64)>,
    /// zxcvbn's warning and suggestion for a guessable password, as codes
    /// (`crate::domain::validate::ADVICE_CODES`).
    #[serde(skip)]
    #[schema(ignore)]
    advice: Vec<&'static str>,
}

impl FieldError {
    /// The one way to make a field error: which field, why (a code), and the English
    /// words for the API.
    pub fn new(field: impl Into<String>, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
            code,
            args: Vec::new(),
            advice: Vec::new(),
        }
    }

    /// Names a number the reason's text shows.
    pub fn arg(mut self, name: &'static str, value: impl TryInto<i64>) -> Self {
        if let Ok(v) = value.try_into() {
            self.args.push((name, v));
        }
        self
    }

    /// Adds advice codes (zxcvbn's feedback).
    pub fn advice(mut self, codes: impl IntoIterator<Item = &'static str>) -> Self {
        self.advice.extend(codes);
        self
    }

    pub fn args(&self) -> &[(&'static str, i64)] {
        &self.args
    }

    pub fn advice_codes(&self) -> &[&'static str] {
        &self.advice
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{}", .0.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; "))]
    Validation(Vec<FieldError>),
    /// Wrong credentials at login; deliberately says nothing about which part was wrong.
    #[error("{0}")]
    InvalidCredentials(String),
    /// No credentials were presented where they are required.
    #[error("authentication required")]
    MissingCredentials,
    /// A bearer token was presented and rejected (RFC 6750 `invalid_token`).
    #[error("{0}")]
    InvalidToken(String),
    #[error("{0}")]
    Forbidden(String),
    /// The caller holds a role that requires MFA and has not enrolled: only the
    /// enrolment routes are open to them.
    #[error("multi-factor enrolment is required before anything else: enrol at /auth/mfa/totp/enroll")]
    MfaEnrollmentRequired,
    /// RFC 9470 step-up: a second factor within `max_age` seconds is required.
    #[error("this action needs a second factor used within the last {max_age} seconds: log in again with MFA")]
    StepUpRequired { max_age: u64 },
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    Conflict(String),
    /// An identity provider failed, timed out or answered nonsense.
    #[error("{0}")]
    BadGateway(String),
    /// The request was not answered within the request timeout, or its body did not
    /// arrive within the body timeout.
    #[error("{0}")]
    RequestTimeout(String),
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("too many requests; retry after {retry_after} s")]
    TooManyRequests { retry_after: u64 },
    #[error("{message}")]
    Unavailable { message: String, retry_after: u64 },
    /// An OAuth request failed in a way OAuth names (RFC 6749 5.2, RFC 8628 3.5);
    /// OAuth endpoints answer it in OAuth's JSON format, anything else as a problem.
    #[error("{0}")]
    OAuth(OAuthFailure),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

/// Why an OAuth request failed, as RFC 6749 section 5.2 (and RFC 8628 for the device
/// flow) names it. The text is safe to show the client: it never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthFailure {
    #[error("{0}")]
    InvalidRequest(String),
    /// The client could not be authenticated (401 at the token endpoint).
    #[error("{0}")]
    InvalidClient(String),
    #[error("{0}")]
    InvalidGrant(String),
    #[error("{0}")]
    UnauthorizedClient(String),
    #[error("{0}")]
    UnsupportedGrantType(String),
    #[error("{0}")]
    InvalidScope(String),
    #[error("the user has not yet approved the device")]
    AuthorizationPending,
    #[error("polling too fast: wait longer between requests")]
    SlowDown,
    #[error("the device code has expired")]
    ExpiredToken,
    #[error("{0}")]
    AccessDenied(String),
}

impl OAuthFailure {
    /// The `error` code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::InvalidClient(_) => "invalid_client",
            Self::InvalidGrant(_) => "invalid_grant",
            Self::UnauthorizedClient(_) => "unauthorized_client",
            Self::UnsupportedGrantType(_) => "unsupported_grant_type",
            Self::InvalidScope(_) => "invalid_scope",
            Self::AuthorizationPending => "authorization_pending",
            Self::SlowDown => "slow_down",
            Self::ExpiredToken => "expired_token",
            Self::AccessDenied(_) => "access_denied",
        }
    }

    /// The HTTP status OAuth gives it: 401 for a client that failed to authenticate,
    /// else 400 (RFC 6749 5.2; RFC 8628 3.5 answers its pending states with 400 too).
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidClient(_) => StatusCode::UNAUTHORIZED,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl AppError {
    /// A single field error whose reason has no finer code than `invalid` (pages show
    /// its English words); `validation_coded` names one.
    pub fn validation(field: &str, message: impl Into<String>) -> Self {
        Self::validation_coded(field, INVALID, message)
    }

    pub fn validation_coded(field: &str, code: &'static str, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, code, message)])
    }

    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        Self::Internal(e.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::InvalidCredentials(_) | Self::MissingCredentials | Self::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) | Self::MfaEnrollmentRequired => StatusCode::FORBIDDEN,
            Self::StepUpRequired { .. } => StatusCode::UNAUTHORIZED,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::BadGateway(_) => StatusCode::BAD_GATEWAY,
            Self::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::OAuth(f) => f.status(),
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The short name in the problem `type` URI.
    fn slug(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad-request",
            Self::Validation(_) => "validation-failed",
            Self::InvalidCredentials(_) => "invalid-credentials",
            Self::MissingCredentials => "authentication-required",
            Self::InvalidToken(_) => "invalid-token",
            Self::Forbidden(_) => "forbidden",
            Self::MfaEnrollmentRequired => "mfa-enrollment-required",
            Self::StepUpRequired { .. } => "insufficient-user-authentication",
            Self::NotFound(_) => "not-found",
            Self::MethodNotAllowed => "method-not-allowed",
            Self::Conflict(_) => "conflict",
            Self::BadGateway(_) => "upstream-failed",
            Self::RequestTimeout(_) => "request-timeout",
            Self::PayloadTooLarge(_) => "payload-too-large",
            Self::UnsupportedMediaType(_) => "unsupported-media-type",
            Self::TooManyRequests { .. } => "rate-limited",
            Self::Unavailable { .. } => "unavailable",
            Self::OAuth(_) => "oauth",
            Self::Internal(_) => "internal",
        }
    }
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        Self::Internal(e.into())
    }
}

/// The body of every error answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let Self::Internal(e) = &self {
            // The cause chain comes from our own code and drivers, never from request bodies.
            tracing::error!(error = %format!("{e:#}"), "internal error");
        }
        let problem = Problem {
            kind: format!("urn:portcullis:problem:{}", self.slug()),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: self.to_string(),
            errors: match &self {
                Self::Validation(errors) => Some(errors.clone()),
                _ => None,
            },
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut res = (status, body).into_response();
        let headers = res.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        match &self {
            Self::MissingCredentials => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Self::InvalidToken(_) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                );
            }
            Self::StepUpRequired { max_age } => {
                let challenge = format!(
                    "Bearer error=\"insufficient_user_authentication\", error_description=\"A recent second factor is required\", acr_values=\"mfa\", max_age={max_age}"
                );
                if let Ok(v) = HeaderValue::from_str(&challenge) {
                    headers.insert(header::WWW_AUTHENTICATE, v);
                }
            }
            Self::TooManyRequests { retry_after } | Self::Unavailable { retry_after, .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            _ => {}
        }
        res
    }
}
