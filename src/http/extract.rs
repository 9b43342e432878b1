//! Body extractors whose rejections are problem+json answers, and request context.

use std::net::SocketAddr;

use axum::extract::rejection::{FormRejection, JsonRejection, QueryRejection};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::domain::ClientContext;
use crate::error::{AppError, FieldError};

/// JSON body; malformed JSON is 400, wrong types or missing fields 422 naming the
/// field, a wrong content type 415, an oversized body 413. Unknown fields are ignored,
/// as FastAPI does, so existing clients keep working.
pub struct ValidJson<T>(pub T);

/// The part of a serde message a client can act on, without axum's preamble.
fn clean(text: &str) -> String {
    text.trim_start_matches("Failed to deserialize the JSON body into the target type: ")
        .trim_start_matches("Failed to parse the request body as JSON: ")
        .trim_start_matches("Failed to deserialize form body: ")
        .to_string()
}

/// Turns a serde data error into a field error where the field can be named.
fn data_error(text: &str) -> AppError {
    let msg = clean(text);
    if let Some(rest) = msg.strip_prefix("missing field `")
        && let Some((field, _)) = rest.split_once('`')
    {
        return AppError::validation(field, "is required");
    }
    // serde_path_to_error prefixes the path: "username: invalid type: ..."
    if let Some((path, detail)) = msg.split_once(": ")
        && !path.contains(' ')
        && !path.is_empty()
    {
        let detail = detail.split(" at line ").next().unwrap_or(detail);
        return AppError::Validation(vec![FieldError {
            field: path.to_string(),
            message: detail.to_string(),
        }]);
    }
    AppError::Validation(vec![FieldError {
        field: "body".into(),
        message: msg.split(" at line ").next().unwrap_or(&msg).to_string(),
    }])
}

pub fn json_rejection(rej: JsonRejection, limit: usize) -> AppError {
    match rej {
        JsonRejection::JsonDataError(e) => data_error(&e.body_text()),
        JsonRejection::JsonSyntaxError(e) => AppError::BadRequest(format!("malformed JSON: {}", clean(&e.body_text()))),
        JsonRejection::MissingJsonContentType(_) => {
            AppError::UnsupportedMediaType("expected Content-Type: application/json".into())
        }
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            AppError::PayloadTooLarge(limit)
        }
        other => AppError::BadRequest(clean(&other.body_text())),
    }
}

impl<S, T> FromRequest<S> for ValidJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync + AsRef<crate::app::Limits>,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AppError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(rej) => Err(json_rejection(rej, state.as_ref().max_body_bytes)),
        }
    }
}

/// Query parameters; a value of the wrong type is a 422 naming the parameter.
pub struct ValidQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ValidQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Self(v)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => {
                let text = e.body_text();
                let msg = text.trim_start_matches("Failed to deserialize query string: ");
                Err(AppError::Validation(vec![FieldError {
                    field: "query".into(),
                    message: msg.to_string(),
                }]))
            }
            Err(other) => Err(AppError::BadRequest(other.body_text())),
        }
    }
}

/// An `application/x-www-form-urlencoded` body, rejected with the raw rejection so the
/// OAuth token endpoint can answer in its own error format.
pub struct UrlForm<T>(pub T);

impl<S, T> FromRequest<S> for UrlForm<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = FormRejection;

    async fn from_request(req: Request, state: &S) -> Result<Self, FormRejection> {
        axum::Form::<T>::from_request(req, state)
            .await
            .map(|axum::Form(v)| Self(v))
    }
}

/// Client address and user agent for the session record. The address is the socket
/// peer; trusted-proxy handling belongs to the hardening work.
impl<S: Send + Sync> FromRequestParts<S> for ClientContext {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string());
        let user_agent = parts
            .headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(512).collect());
        Ok(ClientContext { ip, user_agent })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_errors_name_fields() {
        match data_error(
            "Failed to deserialize the JSON body into the target type: missing field `password` at line 1 column 20",
        ) {
            AppError::Validation(e) => assert_eq!(e[0].field, "password"),
            other => panic!("{other:?}"),
        }
        match data_error(
            "Failed to deserialize the JSON body into the target type: username: invalid type: integer `5`, expected a string at line 1 column 14",
        ) {
            AppError::Validation(e) => {
                assert_eq!(e[0].field, "username");
                assert!(e[0].message.starts_with("invalid type"));
            }
            other => panic!("{other:?}"),
        }
    }
}
