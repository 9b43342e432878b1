//! The access guard as a Tower layer: Portcullis's own router puts one on every
//! route from its table, and services embedding the crate put them on theirs:
//!
//! ```ignore
//! let app = Router::new()
//!     .route("/projects", post(create_project).layer(require_permission(&service, "projects:create")))
//!     .route("/admin", get(admin_page).layer(require_role(&service, "admin")));
//! ```
//!
//! A handler behind the guard takes the [`Caller`] extractor to learn who called.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use tower::{Layer, Service};

use super::{Access, Caller, presented_credential};
use crate::domain::Portcullis;
use crate::error::AppError;

/// Enforces one [`Access`] rule before the wrapped service runs.
#[derive(Clone)]
pub struct RequireAccess {
    service: Portcullis,
    access: Access,
}

impl RequireAccess {
    pub fn new(service: &Portcullis, access: Access) -> Self {
        Self {
            service: service.clone(),
            access,
        }
    }
}

/// Only callers whose token carries `permission` (or superusers) pass; others get 403,
/// anonymous callers 401.
pub fn require_permission(service: &Portcullis, permission: &'static str) -> RequireAccess {
    RequireAccess::new(service, Access::Permission(permission))
}

/// Only callers holding `role` pass.
pub fn require_role(service: &Portcullis, role: &'static str) -> RequireAccess {
    RequireAccess::new(service, Access::Role(role))
}

/// Any valid access token passes.
pub fn require_authenticated(service: &Portcullis) -> RequireAccess {
    RequireAccess::new(service, Access::Authenticated)
}

impl<S> Layer<S> for RequireAccess {
    type Service = RequireAccessService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireAccessService {
            inner,
            service: self.service.clone(),
            access: self.access.clone(),
        }
    }
}

#[derive(Clone)]
pub struct RequireAccessService<S> {
    inner: S,
    service: Portcullis,
    access: Access,
}

/// Authenticates the request's bearer token and checks `access`; on success the
/// caller is attached to the request for the [`Caller`] extractor.
pub async fn authorize(service: &Portcullis, access: &Access, req: &mut Request) -> Result<(), AppError> {
    if *access == Access::Public {
        return Ok(());
    }
    let principal = match presented_credential(req.headers())? {
        Some(token) => service.authenticate(token).await?,
        None => return Err(AppError::MissingCredentials),
    };
    access.check(&principal)?;
    req.extensions_mut().insert(Caller(principal));
    Ok(())
}

impl<S> Service<Request> for RequireAccessService<S>
where
    S: Service<Request, Error = Infallible> + Clone + Send + 'static,
    S::Response: IntoResponse,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        // The clone is not ready; swap it in and keep the one that is (tower's idiom).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let service = self.service.clone();
        let access = self.access.clone();
        Box::pin(async move {
            if let Err(e) = authorize(&service, &access, &mut req).await {
                return Ok(e.into_response());
            }
            Ok(inner.call(req).await.into_response())
        })
    }
}
