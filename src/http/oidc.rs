//! The OpenID provider's OAuth endpoints: `/oauth2/token` (and, as they are added,
//! userinfo, introspection, revocation, device authorization and logout). They answer
//! errors in OAuth's JSON format (`OAuthError`), never problem+json.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use percent_encoding::percent_decode_str;
use serde::Deserialize;
use utoipa::ToSchema;

use super::Caller;
use super::extract::UrlForm;
use super::oauth_error::OAuthError;
use crate::domain::ClientContext;
use crate::domain::oidc::grants::require_grant;
use crate::domain::oidc::userinfo::NEEDS_OPENID;
use crate::domain::oidc::{
    Client, ClientAuth, GRANT_AUTHORIZATION_CODE, GRANT_CLIENT_CREDENTIALS, GRANT_DEVICE_CODE, GRANT_REFRESH_TOKEN,
    OAuthFailure, TokenResponse,
};
use crate::error::AppError;
use crate::http::state::AppState;

/// A token request (RFC 6749 4.1.3, 4.4.2, 6; RFC 8628 3.4), with the client's
/// credentials when it sends them in the body.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct TokenForm {
    pub grant_type: Option<String>,
    pub code: Option<String>,
    pub redirect_uri: Option<String>,
    pub code_verifier: Option<String>,
    pub refresh_token: Option<String>,
    pub scope: Option<String>,
    pub device_code: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub client_assertion_type: Option<String>,
    pub client_assertion: Option<String>,
}

/// The form of an OAuth endpoint, or `invalid_request` in OAuth's format.
pub fn oauth_form<T>(form: Result<UrlForm<T>, FormRejection>) -> Result<T, OAuthError> {
    form.map(|UrlForm(v)| v).map_err(|rej| {
        OAuthError::invalid_request(match rej {
            FormRejection::InvalidFormContentType(_) => {
                "expected Content-Type: application/x-www-form-urlencoded".to_string()
            }
            other => other.body_text(),
        })
    })
}

/// The client credentials of a request: HTTP Basic (whose parts are form-encoded,
/// RFC 6749 2.3.1) and whatever the form carries.
pub fn client_auth(
    headers: &HeaderMap,
    client_id: Option<String>,
    client_secret: Option<String>,
    client_assertion_type: Option<String>,
    client_assertion: Option<String>,
) -> Result<ClientAuth, OAuthError> {
    let basic = match headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        Some(v) if v.len() > 6 && v[..6].eq_ignore_ascii_case("basic ") => Some(basic_credentials(&v[6..])?),
        _ => None,
    };
    Ok(ClientAuth {
        basic,
        client_id,
        client_secret,
        client_assertion_type,
        client_assertion,
    })
}

fn basic_credentials(encoded: &str) -> Result<(String, String), OAuthError> {
    let bad = || {
        OAuthError::from(AppError::OAuth(OAuthFailure::InvalidClient(
            "malformed Basic credentials".into(),
        )))
    };
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| bad())?;
    let text = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = text.split_once(':').ok_or_else(bad)?;
    let form_decode = |s: &str| {
        percent_decode_str(&s.replace('+', " "))
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| bad())
    };
    Ok((form_decode(id)?, form_decode(secret)?))
}

/// Token answers are never cached (RFC 6749 5.1).
pub fn no_store(body: impl IntoResponse) -> Response {
    let mut res = body.into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    res
}

pub async fn token(
    State(state): State<AppState>,
    ctx: ClientContext,
    headers: HeaderMap,
    form: Result<UrlForm<TokenForm>, FormRejection>,
) -> Result<Response, OAuthError> {
    let f = oauth_form(form)?;
    let auth = client_auth(
        &headers,
        f.client_id.clone(),
        f.client_secret.clone(),
        f.client_assertion_type.clone(),
        f.client_assertion.clone(),
    )?;
    let service = &state.service;
    let client = service.authenticate_client(&auth).await?;
    let grant = f
        .grant_type
        .as_deref()
        .ok_or_else(|| OAuthError::invalid_request("grant_type is required"))?;
    let required = |field: &str, value: Option<&str>| {
        value
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .ok_or_else(|| OAuthError::invalid_request(format!("{field} is required")))
    };
    // Each grant's arm calls its domain operation with the authenticated client.
    let tokens: TokenResponse = match grant {
        GRANT_AUTHORIZATION_CODE => {
            require_grant(&client, GRANT_AUTHORIZATION_CODE)?;
            let code = required("code", f.code.as_deref())?;
            service
                .redeem_code(
                    &client,
                    &code,
                    f.redirect_uri.as_deref(),
                    f.code_verifier.as_deref(),
                    &ctx,
                )
                .await?
        }
        GRANT_REFRESH_TOKEN => {
            require_grant(&client, GRANT_REFRESH_TOKEN)?;
            let token = required("refresh_token", f.refresh_token.as_deref())?;
            service
                .refresh_app_tokens(&client, &token, f.scope.as_deref(), &ctx)
                .await?
        }
        GRANT_DEVICE_CODE => {
            let code = required("device_code", f.device_code.as_deref())?;
            service.poll_device_code(&client, &code, &ctx).await?
        }
        GRANT_CLIENT_CREDENTIALS => {
            service
                .client_credentials_grant(&client, f.scope.as_deref(), &ctx)
                .await?
        }
        other => {
            return Err(AppError::OAuth(OAuthFailure::UnsupportedGrantType(format!(
                "grant_type {other:.64} is not supported"
            )))
            .into());
        }
    };
    Ok(no_store(Json(tokens)))
}

/// A device authorization request (RFC 8628 3.1), with the client's credentials when
/// it sends them in the body (a public client: only its `client_id`).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct DeviceAuthorizationForm {
    pub scope: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub client_assertion_type: Option<String>,
    pub client_assertion: Option<String>,
}

/// `POST /oauth2/device_authorization`: the client authenticates as at the token
/// endpoint; the answer holds the device code to poll with and the user code the
/// person types at `/device`.
pub async fn device_authorization(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<UrlForm<DeviceAuthorizationForm>, FormRejection>,
) -> Result<Response, OAuthError> {
    let f = oauth_form(form)?;
    let auth = client_auth(
        &headers,
        f.client_id,
        f.client_secret,
        f.client_assertion_type,
        f.client_assertion,
    )?;
    let service = &state.service;
    let client = service.authenticate_client(&auth).await?;
    let answer = service.start_device_authorization(&client, f.scope.as_deref()).await?;
    Ok(no_store(Json(answer)))
}

/// An introspection or revocation request (RFC 7662 2.1, RFC 7009 2.1), with the
/// client's credentials when it sends them in the body.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct ClientTokenForm {
    pub token: Option<String>,
    /// Accepted and not needed: the kind is told by the token itself.
    pub token_type_hint: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub client_assertion_type: Option<String>,
    pub client_assertion: Option<String>,
}

/// The authenticated client of an introspection or revocation request, and the token.
async fn client_and_token(
    state: &AppState,
    headers: &HeaderMap,
    form: Result<UrlForm<ClientTokenForm>, FormRejection>,
) -> Result<(Client, String), OAuthError> {
    let f = oauth_form(form)?;
    let auth = client_auth(
        headers,
        f.client_id,
        f.client_secret,
        f.client_assertion_type,
        f.client_assertion,
    )?;
    let client = state.service.authenticate_client(&auth).await?;
    let _ = f.token_type_hint;
    let token = f
        .token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
    Ok((client, token))
}

/// RFC 7662 for confidential clients: what a token is (`active: false` for anything
/// not live). An application's token says `client_id` and `scope`.
pub async fn introspect(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<UrlForm<ClientTokenForm>, FormRejection>,
) -> Result<Response, OAuthError> {
    let (client, token) = client_and_token(&state, &headers, form).await?;
    Ok(no_store(Json(
        state.service.introspect_for_client(&client, &token).await?,
    )))
}

/// RFC 7009: ends a token issued to the calling client; 200 whatever the token was.
pub async fn revoke(
    State(state): State<AppState>,
    ctx: ClientContext,
    headers: HeaderMap,
    form: Result<UrlForm<ClientTokenForm>, FormRejection>,
) -> Result<StatusCode, OAuthError> {
    let (client, token) = client_and_token(&state, &headers, form).await?;
    state.service.revoke_for_client(&client, &token, &ctx).await?;
    Ok(StatusCode::OK)
}

/// `GET` and `POST /oauth2/userinfo`: the claims the caller's token may read. Errors
/// as RFC 6750 3 has them: the guard answers a missing or bad token (401 with
/// `WWW-Authenticate: Bearer error="invalid_token"`); a token without `openid` (or not
/// issued to an application) is 403 `insufficient_scope`.
pub async fn userinfo(State(state): State<AppState>, Caller(caller): Caller) -> Response {
    let refused = |status: StatusCode, error: &'static str, text: String| {
        let challenge = format!("Bearer error=\"{error}\", error_description=\"{text}\", scope=\"openid\"");
        let mut res = OAuthError::new(status, error, text).into_response();
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            res.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        res
    };
    match state.service.userinfo(&caller).await {
        Ok(claims) => no_store(Json(claims)),
        Err(AppError::Forbidden(_)) => refused(StatusCode::FORBIDDEN, "insufficient_scope", NEEDS_OPENID.into()),
        Err(AppError::InvalidToken(text)) => refused(StatusCode::UNAUTHORIZED, "invalid_token", text),
        Err(e) => OAuthError::from(e).into_response(),
    }
}
