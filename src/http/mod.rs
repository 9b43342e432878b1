//! HTTP: the route table, the access guard, extractors and one module per resource.
//!
//! Every route is declared in `routes::table()` with its access rule, and the router is
//! built only from that table: a route cannot exist without a rule. The guard that
//! enforces the rule runs before the handler; handlers that need the caller take the
//! `Caller` extractor, which only reads what the guard put there.

pub mod admin;
pub mod apps;
pub mod audit;
pub mod auth;
pub mod client_ip;
pub mod clients;
pub mod credentials;
pub mod extract;
pub mod guard;
pub mod me;
pub mod meta;
pub mod mfa;
pub mod oauth;
pub mod oauth_error;
pub mod oidc;
pub mod openapi;
pub mod ratelimit;
pub mod request_metrics;
pub mod router;
pub mod routes;
pub mod state;

use std::sync::Arc;

use axum::handler::Handler;
use axum::http::{HeaderMap, Method, header};

use axum::routing::{MethodFilter, MethodRouter};
pub use guard::{require_authenticated, require_permission, require_role};
use utoipa::ToSchema;

use crate::domain::Principal;
pub use crate::domain::authn::Access;
use crate::error::AppError;
use crate::http::state::AppState;

/// How a route's request body is encoded, for the OpenAPI document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Json,
    Form,
}

/// One declared route: method, path (without base path), rule, handler and docs.
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    pub summary: &'static str,
    pub tag: &'static str,
    pub body: Option<(BodyKind, String)>,
    /// The query string's fields, from the handler's query type: (name, required,
    /// schema).
    pub query: Vec<(String, bool, serde_json::Value)>,
    /// (status, the JSON body's schema, or None for an empty or non-JSON body).
    pub responses: Vec<(u16, Option<serde_json::Value>)>,
    /// Schemas this route's docs refer to, by name.
    pub schemas: Vec<(String, serde_json::Value)>,
    /// Served by a mounted router (Swagger UI) rather than `handler`.
    pub mounted: bool,
    /// Under the per-IP limit by default (`RATE_LIMIT_ROUTES` can change the set).
    pub rate_limited: bool,
    /// Demands a recent second factor (RFC 9470 step-up) on top of `access`.
    pub step_up: bool,
    /// A hosted page (`src/ui`), not part of the API: left out of the OpenAPI
    /// document, served with the pages' headers (CSP) and, for a POST, the pages'
    /// cross-site check.
    pub page: bool,
    pub(crate) handler: Option<MethodRouter<AppState>>,
}

/// A reference to the document's schema `name`.
pub(crate) fn schema_ref(name: &str) -> serde_json::Value {
    serde_json::json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// `T`'s name, and its schema with every schema it refers to (a field's type, an enum's
/// variants), so the document's references all resolve.
pub(crate) fn schema_of<T: ToSchema>() -> (String, Vec<(String, serde_json::Value)>) {
    // A schema that does not serialize becomes an empty (any) schema rather than null,
    // so the document stays valid.
    let value = |s| serde_json::to_value(s).unwrap_or_else(|_| serde_json::json!({}));
    let name = T::name().into_owned();
    let mut referred = Vec::new();
    T::schemas(&mut referred);
    let mut all = vec![(name.clone(), value(T::schema()))];
    all.extend(referred.into_iter().map(|(n, s)| (n, value(s))));
    (name, all)
}

impl Route {
    pub fn new<H, T>(method: Method, path: &'static str, access: Access, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone()).unwrap_or(MethodFilter::GET);
        Self {
            handler: Some(axum::routing::on(filter, handler)),
            mounted: false,
            ..Self::mounted(method, path, access)
        }
    }

    /// A route served by a router merged in as a whole (e.g. Swagger UI's assets).
    pub fn mounted(method: Method, path: &'static str, access: Access) -> Self {
        Self {
            method,
            path,
            access,
            summary: "",
            tag: "",
            body: None,
            responses: Vec::new(),
            schemas: Vec::new(),
            query: Vec::new(),
            mounted: true,
            rate_limited: false,
            step_up: false,
            page: false,
            handler: None,
        }
    }

    /// Puts the route under the per-IP rate limit unless `RATE_LIMIT_ROUTES` says
    /// otherwise: for routes that check passwords or mint credentials.
    pub fn rate_limited(mut self) -> Self {
        self.rate_limited = true;
        self.responses.push((429, None));
        self
    }

    /// A sensitive action: the caller must have used a TOTP code within
    /// `MFA_STEP_UP_MAX_AGE_SECONDS`, else 401 `insufficient_user_authentication`.
    pub fn step_up(mut self) -> Self {
        self.step_up = true;
        self.responses.push((401, None));
        self
    }

    /// Marks a hosted page (see `page`).
    pub fn page(mut self) -> Self {
        self.page = true;
        self
    }

    pub fn doc(mut self, tag: &'static str, summary: &'static str) -> Self {
        self.tag = tag;
        self.summary = summary;
        self
    }

    pub fn json<T: ToSchema>(mut self) -> Self {
        let (name, schemas) = schema_of::<T>();
        self.body = Some((BodyKind::Json, name));
        self.schemas.extend(schemas);
        self
    }

    pub fn form<T: ToSchema>(mut self) -> Self {
        let (name, schemas) = schema_of::<T>();
        self.body = Some((BodyKind::Form, name));
        self.schemas.extend(schemas);
        self
    }

    /// The query string the handler reads as `T` (a struct of named fields), so the
    /// document lists its parameters.
    pub fn query<T: ToSchema>(mut self) -> Self {
        let schema = serde_json::to_value(T::schema()).unwrap_or_default();
        let required: Vec<&str> = schema["required"]
            .as_array()
            .map(|r| r.iter().filter_map(serde_json::Value::as_str).collect())
            .unwrap_or_default();
        if let Some(fields) = schema["properties"].as_object() {
            for (name, field) in fields {
                self.query
                    .push((name.clone(), required.contains(&name.as_str()), field.clone()));
            }
        }
        self
    }

    pub fn returns<T: ToSchema>(mut self, status: u16) -> Self {
        let (name, schemas) = schema_of::<T>();
        self.responses.push((status, Some(schema_ref(&name))));
        self.schemas.extend(schemas);
        self
    }

    /// Answers with a JSON array of `T`.
    pub fn returns_list<T: ToSchema>(mut self, status: u16) -> Self {
        let (name, schemas) = schema_of::<T>();
        let list = serde_json::json!({ "type": "array", "items": schema_ref(&name) });
        self.responses.push((status, Some(list)));
        self.schemas.extend(schemas);
        self
    }

    pub fn empty(mut self, status: u16) -> Self {
        self.responses.push((status, None));
        self
    }
}

/// The caller, as authenticated by the guard.
#[derive(Debug, Clone)]
pub struct Caller(pub Arc<Principal>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Caller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, AppError> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or(AppError::MissingCredentials)
    }
}

/// The credential a request presents: `X-API-Key`, else the bearer token in
/// `Authorization`. A header that is present but not usable is an invalid
/// credential, not a missing one.
pub fn presented_credential(headers: &HeaderMap) -> Result<Option<&str>, AppError> {
    if let Some(key) = headers.get("x-api-key") {
        return key
            .to_str()
            .ok()
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(Some)
            .ok_or_else(|| AppError::InvalidToken("X-API-Key header is not a valid key".into()));
    }
    bearer_token(headers)
}

/// The bearer token in `Authorization`, if any.
pub fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, AppError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| AppError::InvalidToken("Authorization header is not valid text".into()))?;
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => {
            Ok(Some(token.trim()))
        }
        _ => Err(AppError::InvalidToken("expected Authorization: Bearer <token>".into())),
    }
}
