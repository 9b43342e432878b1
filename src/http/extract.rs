//! Body extractors whose rejections are problem+json answers, and request context.

use axum::extract::rejection::{BytesRejection, FormRejection, JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::client_ip::ClientIp;
use crate::domain::{Actor, ClientContext};
use crate::error::{AppError, FieldError, INVALID};

/// JSON body; malformed JSON is 400, wrong types or missing fields 422 naming the
/// field, a wrong content type 415, an oversized body 413. Unknown fields are ignored,
/// as FastAPI does, so existing clients keep working.
pub struct ValidJson<T>(pub T);

/// The part of a serde message a client can act on, without axum's preamble.
fn clean(text: &str) -> String {
    text.trim_start_matches("Failed to deserialize the JSON body into the target type: ")
        .trim_start_matches("Failed to parse the request body as JSON: ")
        .trim_start_matches("Failed to deserialize form body: ")
        .trim_start_matches("Failed to deserialize query string: ")
        .to_string()
}

/// Turns a serde data error into a field error where the field can be named; `whole`
/// names what was being read otherwise (`body`, `query`).
fn data_error(text: &str, whole: &str) -> AppError {
    let msg = clean(text);
    if let Some(rest) = msg.strip_prefix("missing field `")
        && let Some((field, _)) = rest.split_once('`')
    {
        return AppError::validation_coded(field, crate::domain::validate::REQUIRED, "is required");
    }
    // serde_path_to_error prefixes the path: "username: invalid type: ..."
    if let Some((path, detail)) = msg.split_once(": ")
        && !path.contains(' ')
        && !path.is_empty()
    {
        let detail = detail.split(" at line ").next().unwrap_or(detail);
        return AppError::Validation(vec![FieldError::new(path, INVALID, detail)]);
    }
    AppError::Validation(vec![FieldError::new(
        whole,
        INVALID,
        msg.split(" at line ").next().unwrap_or(&msg),
    )])
}

/// A request body that could not be read: larger than `limit` (413), not arrived
/// within the body timeout (408), or otherwise broken off (400).
fn body_error(e: &BytesRejection, limit: usize) -> AppError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return AppError::PayloadTooLarge(limit);
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cause {
        if err.is::<tower_http::timeout::TimeoutError>() {
            return AppError::RequestTimeout("the request body did not arrive within the body timeout".into());
        }
        cause = err.source();
    }
    AppError::BadRequest(clean(&e.body_text()))
}

pub fn json_rejection(rej: JsonRejection, limit: usize) -> AppError {
    match rej {
        JsonRejection::JsonDataError(e) => data_error(&e.body_text(), "body"),
        JsonRejection::JsonSyntaxError(e) => AppError::BadRequest(format!("malformed JSON: {}", clean(&e.body_text()))),
        JsonRejection::MissingJsonContentType(_) => {
            AppError::UnsupportedMediaType("expected Content-Type: application/json".into())
        }
        JsonRejection::BytesRejection(e) => body_error(&e, limit),
        other => AppError::BadRequest(clean(&other.body_text())),
    }
}

impl<S, T> FromRequest<S> for ValidJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync + AsRef<super::state::Limits>,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AppError> {
        let limit = state.as_ref().max_body_bytes;
        if !is_json(req.headers()) {
            return Err(AppError::UnsupportedMediaType(
                "expected Content-Type: application/json".into(),
            ));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| body_error(&e, limit))?;
        check_json_shape(&bytes)?;
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(rej) => Err(json_rejection(rej, limit)),
        }
    }
}

/// `application/json` or any `+json` type, parameters allowed.
fn is_json(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Deepest nesting a request body may have. Every body Portcullis takes is two levels
/// deep at most; the parser would skip deeper unknown fields without harm, but a
/// client sending them is broken or probing, and is told so.
pub const MAX_JSON_DEPTH: usize = 32;

/// Refuses bodies nested deeper than [`MAX_JSON_DEPTH`] and strings holding a NUL
/// (`\u0000`), in one pass over the bytes before any parsing. No field takes a NUL,
/// and PostgreSQL text cannot hold one.
pub fn check_json_shape(body: &[u8]) -> Result<(), AppError> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (i, &b) in body.iter().enumerate() {
        if in_string {
            match b {
                b'u' if escaped && body[i + 1..].starts_with(b"0000") => {
                    return Err(AppError::BadRequest("NUL characters are not accepted".into()));
                }
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_JSON_DEPTH {
                    return Err(AppError::BadRequest(format!(
                        "JSON nested deeper than {MAX_JSON_DEPTH} levels"
                    )));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
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
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => Err(data_error(&e.body_text(), "query")),
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

/// True when percent-encoded text (a URI, a form body) encodes a NUL.
pub fn encodes_nul(text: &[u8]) -> bool {
    text.windows(3).any(|w| w == b"%00")
}

/// Client address (as resolved by `client_ip`, honouring `TRUSTED_PROXIES`) and user
/// agent, for the session record.
impl<S: Send + Sync> FromRequestParts<S> for ClientContext {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(client_context(&parts.extensions, &parts.headers))
    }
}

/// The signed-in caller as the actor of an administrative change. Only on guarded
/// routes: elsewhere there is no caller and the request is refused as unauthenticated.
impl<S: Send + Sync> FromRequestParts<S> for Actor {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, AppError> {
        let caller = parts
            .extensions
            .get::<super::Caller>()
            .ok_or(AppError::MissingCredentials)?;
        Ok(Actor::principal(
            &caller.0,
            &client_context(&parts.extensions, &parts.headers),
        ))
    }
}

/// The request's client context, for handlers (the extractor above) and for the
/// guard's audit records alike.
pub fn client_context(extensions: &axum::http::Extensions, headers: &axum::http::HeaderMap) -> ClientContext {
    let header = |name: &str, max: usize| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(max).collect::<String>())
    };
    ClientContext {
        ip: extensions.get::<ClientIp>().map(|c| c.0.to_string()),
        user_agent: header("user-agent", 512),
        request_id: header("x-request-id", 128),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_and_nul_are_found_outside_and_inside_strings() {
        let ok = format!("{}{}", "[".repeat(MAX_JSON_DEPTH), "]".repeat(MAX_JSON_DEPTH));
        assert!(check_json_shape(ok.as_bytes()).is_ok());
        let deep = format!("{}{}", "[".repeat(MAX_JSON_DEPTH + 1), "]".repeat(MAX_JSON_DEPTH + 1));
        assert!(check_json_shape(deep.as_bytes()).is_err());
        let quoted = format!(r#"{{"a": "{}\" [[["}}"#, "[".repeat(100));
        assert!(check_json_shape(quoted.as_bytes()).is_ok());
        assert!(check_json_shape(br#"{"a": "x\u0000"}"#).is_err());
        assert!(
            check_json_shape(br#"{"a": "x\\u0000"}"#).is_ok(),
            "an escaped backslash, then text"
        );
        assert!(encodes_nul(b"q=a%00b") && !encodes_nul(b"q=a%20b"));
    }

    #[test]
    fn data_errors_name_fields() {
        match data_error(
            "Failed to deserialize the JSON body into the target type: missing field `password` at line 1 column 20",
            "body",
        ) {
            AppError::Validation(e) => assert_eq!(e[0].field, "password"),
            other => panic!("{other:?}"),
        }
        match data_error(
            "Failed to deserialize the JSON body into the target type: username: invalid type: integer `5`, expected a string at line 1 column 14",
            "body",
        ) {
            AppError::Validation(e) => {
                assert_eq!(e[0].field, "username");
                assert!(e[0].message.starts_with("invalid type"));
            }
            other => panic!("{other:?}"),
        }
        match data_error(
            "Failed to deserialize query string: cursor: number too large to fit in target type",
            "query",
        ) {
            AppError::Validation(e) => assert_eq!(e[0].field, "cursor"),
            other => panic!("{other:?}"),
        }
    }
}
