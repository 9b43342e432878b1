//! `/auth/oauth/*` and `/auth/me/identities`: sign-in with upstream providers.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::ToSchema;

use super::Caller;
use super::extract::{ValidJson, ValidQuery};
use crate::domain::ClientContext;
use crate::domain::login::LoginOutcome;
use crate::domain::oauth::{FlowPurpose, IdentityOut, UpstreamTokenOut, url_query};
use crate::error::AppResult;
use crate::http::state::AppState;
use crate::ui::OAUTH_COOKIE;

#[derive(Debug, Deserialize, ToSchema)]
pub struct OAuthLoginRequest {
    /// `google`, `microsoft`, `okta` or a configured generic provider.
    pub provider: String,
    /// An ID token from the provider (verified locally), or
    #[serde(default)]
    pub id_token: Option<String>,
    /// an access token (confirmed as issued to this service by the provider's
    /// introspection, or Google's tokeninfo, then read at its userinfo endpoint).
    #[serde(default)]
    pub access_token: Option<String>,
    /// The nonce the app sent with its authorization request, when it used one.
    #[serde(default)]
    pub nonce: Option<String>,
    /// For `okta`: one of OAUTH_OKTA_ALLOWED_DOMAINS.
    #[serde(default)]
    pub okta_domain: Option<String>,
}

pub async fn token_login(
    State(state): State<AppState>,
    ctx: ClientContext,
    ValidJson(req): ValidJson<OAuthLoginRequest>,
) -> AppResult<Json<LoginOutcome>> {
    Ok(Json(
        state
            .service
            .oauth_token_login(
                &req.provider,
                req.id_token.as_deref(),
                req.access_token.as_deref(),
                req.nonce.as_deref(),
                req.okta_domain.as_deref(),
                &ctx,
            )
            .await?,
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct AuthorizeParams {
    /// Where to return the browser: one of OAUTH_REDIRECT_URIS.
    pub redirect_uri: String,
}

fn found(location: &str) -> Response {
    let mut res = StatusCode::FOUND.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

pub async fn authorize(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    ValidQuery(p): ValidQuery<AuthorizeParams>,
) -> AppResult<Response> {
    let (url, browser) = state.service.oauth_authorize_url(&provider, &p.redirect_uri).await?;
    let mut res = found(&url);
    if let Some(c) = cookie(OAUTH_COOKIE, &browser, 600, "/") {
        res.headers_mut().append(header::SET_COOKIE, c);
    }
    Ok(res)
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CallbackParams {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
}

fn cookie(name: &str, value: &str, max_age: u64, path: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{name}={value}; Max-Age={max_age}; Path={path}; HttpOnly; Secure; SameSite=Lax"
    ))
    .ok()
}

/// The provider sends every redirect flow back here: an app's is answered here, the
/// pages' (a provider button of the sign-in page, linking on the identities page) by
/// the pages (`ui::upstream`, `ui::identities`).
pub async fn callback(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    ctx: ClientContext,
    lang: crate::ui::Lang,
    headers: axum::http::HeaderMap,
    ValidQuery(p): ValidQuery<CallbackParams>,
) -> AppResult<Response> {
    let service = &state.service;
    let flow = service
        .take_redirect_flow(&provider, p.state.as_deref(), crate::ui::cookie(&headers, OAUTH_COOKIE))
        .await?;
    let (code, error) = (p.code.as_deref(), p.error.as_deref());
    let mut res = match flow.purpose {
        FlowPurpose::App => {
            let outcome = service.oauth_flow_login(&flow, code, error, &ctx).await?;
            app_callback(&state, &flow.target, outcome)
        }
        FlowPurpose::Page => {
            let page = crate::ui::upstream::finish_sign_in(service, lang, &headers, &flow, code, error, &ctx).await?;
            crate::ui::with_page_policy(service, page)
        }
        FlowPurpose::Link(_) => {
            let page = crate::ui::identities::finish_link(service, lang, &headers, &flow, code, error, &ctx).await?;
            crate::ui::with_page_policy(service, page)
        }
    };
    // The flow is over: its browser cookie goes.
    if let Some(c) = cookie(OAUTH_COOKIE, "", 0, "/") {
        res.headers_mut().append(header::SET_COOKIE, c);
    }
    Ok(res)
}

/// An app's flow: back to its `redirect_uri` with the tokens (in the fragment, or in
/// cookies with OAUTH_TOKEN_COOKIE), or what the sign-in still needs.
fn app_callback(state: &AppState, target: &str, outcome: LoginOutcome) -> Response {
    let cookie_name = state.service.config().oauth.cookie_name.clone();
    match outcome {
        LoginOutcome::Tokens(pair) => match cookie_name {
            Some(name) => {
                let mut res = found(target);
                let refresh_path = state.service.config().path("/auth");
                for c in [
                    cookie(&name, &pair.access_token, pair.expires_in, "/"),
                    cookie(
                        &format!("{name}_refresh"),
                        &pair.refresh_token,
                        state.service.config().tokens.refresh_token_ttl.as_secs(),
                        &refresh_path,
                    ),
                ]
                .into_iter()
                .flatten()
                {
                    res.headers_mut().append(header::SET_COOKIE, c);
                }
                res
            }
            None => found(&format!(
                "{target}#{}",
                url_query(&[
                    ("access_token", &pair.access_token),
                    ("refresh_token", &pair.refresh_token),
                    ("token_type", "bearer"),
                    ("expires_in", &pair.expires_in.to_string()),
                ])
            )),
        },
        LoginOutcome::MfaRequired(c) => found(&format!(
            "{target}#{}",
            url_query(&[("mfa_required", "true"), ("mfa_token", &c.mfa_token)])
        )),
        LoginOutcome::EnrollmentRequired(e) => found(&format!(
            "{target}#{}",
            url_query(&[("mfa_enrollment_required", "true"), ("access_token", &e.access_token)])
        )),
    }
}

pub async fn list_identities(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> AppResult<Json<Vec<IdentityOut>>> {
    Ok(Json(state.service.identities(caller.user_id).await?))
}

pub async fn unlink_identity(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ctx: ClientContext,
    Path(provider): Path<String>,
) -> AppResult<StatusCode> {
    let user = state.service.me(&caller).await?;
    state.service.unlink_identity(&user, &provider, &ctx).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn upstream_token(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(provider): Path<String>,
) -> AppResult<Json<UpstreamTokenOut>> {
    Ok(Json(
        state.service.upstream_access_token(caller.user_id, &provider).await?,
    ))
}
