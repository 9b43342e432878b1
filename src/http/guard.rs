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

use std::sync::Arc;

use axum::extract::{MatchedPath, Request};
use axum::response::{IntoResponse, Response};
use tower::{Layer, Service};

use super::extract::client_context;
use super::{Access, Caller, presented_credential};
use crate::domain::audit::RequestRecord;
use crate::domain::{Portcullis, Principal};
use crate::error::AppError;

/// Enforces one [`Access`] rule before the wrapped service runs.
#[derive(Clone)]
pub struct RequireAccess {
    service: Portcullis,
    access: Access,
    step_up: bool,
}

impl RequireAccess {
    pub fn new(service: &Portcullis, access: Access) -> Self {
        Self {
            service: service.clone(),
            access,
            step_up: false,
        }
    }

    /// Also demand a recent second factor (see `Portcullis::check_recent_mfa`).
    pub fn with_step_up(mut self) -> Self {
        self.step_up = true;
        self
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
            step_up: self.step_up,
        }
    }
}

#[derive(Clone)]
pub struct RequireAccessService<S> {
    inner: S,
    service: Portcullis,
    access: Access,
    step_up: bool,
}

/// Authenticates the request's bearer token and checks `access`; on success the
/// caller is attached to the request for the [`Caller`] extractor.
pub async fn authorize(service: &Portcullis, access: &Access, req: &mut Request) -> Result<(), AppError> {
    authenticate(service, access, req)
        .await?
        .map_or(Ok(()), |caller| access.check(&caller))
}

/// `access`, then step-up when asked for.
fn check(service: &Portcullis, access: &Access, step_up: bool, caller: &Principal) -> Result<(), AppError> {
    access.check(caller)?;
    if step_up {
        service.check_recent_mfa(caller)?;
    }
    Ok(())
}

/// The caller, attached to the request, when the route is not public; 401 without
/// a valid credential.
async fn authenticate(
    service: &Portcullis,
    access: &Access,
    req: &mut Request,
) -> Result<Option<Arc<Principal>>, AppError> {
    if *access == Access::Public {
        return Ok(None);
    }
    let principal = match presented_credential(req.headers())? {
        Some(token) => service.authenticate_for(token, access).await?,
        None => return Err(AppError::MissingCredentials),
    };
    req.extensions_mut().insert(Caller(principal.clone()));
    Ok(Some(principal))
}

/// What the audit trail needs of a request, taken before the handler consumes it.
fn request_record(caller: &Principal, req: &Request) -> RequestRecord {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| req.uri().path().to_owned());
    let path = req.uri().path().to_owned();
    RequestRecord {
        user_id: caller.user_id,
        username: caller.username.clone(),
        method: req.method().as_str().to_owned(),
        resource: resource_of(&route, &path),
        route: format!("{} {route}", req.method()),
        path,
        status: 0,
        duration_ms: 0,
        client: client_context(req.extensions(), req.headers()),
        at: chrono::Utc::now(),
    }
}

/// The resource a route acts on: the segment before its last `{parameter}` names the
/// type, the concrete value there the id (`/admin/users/{id}/roles` -> users, <id>).
fn resource_of(route: &str, path: &str) -> Option<(String, String)> {
    let template: Vec<&str> = route.split('/').collect();
    let concrete: Vec<&str> = path.split('/').collect();
    let at = template.iter().rposition(|seg| seg.starts_with('{'))?;
    let kind = template.get(at.checked_sub(1)?)?;
    let id = concrete.get(at)?;
    Some((kind.to_string(), id.chars().take(200).collect()))
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
        let step_up = self.step_up;
        Box::pin(async move {
            if access == Access::SignedIn {
                return Ok(match crate::ui::signed_in(&service, &mut req).await {
                    Ok(None) => inner.call(req).await.into_response(),
                    Ok(Some(to_sign_in)) => to_sign_in,
                    Err(e) => e.into_response(),
                });
            }
            let started = std::time::Instant::now();
            let caller = match authenticate(&service, &access, &mut req).await {
                Ok(caller) => caller,
                Err(e) => return Ok(e.into_response()),
            };
            // Every authenticated request is audited, refused (403) ones included.
            let record = caller
                .as_ref()
                .filter(|_| service.audits_requests())
                .map(|c| request_record(c, &req));
            let response = match caller.as_ref().map(|c| check(&service, &access, step_up, c)) {
                Some(Err(e)) => e.into_response(),
                _ => inner.call(req).await.into_response(),
            };
            if let Some(mut record) = record {
                record.status = response.status().as_u16();
                record.duration_ms = started.elapsed().as_millis() as u64;
                service.audit_request(record);
            }
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::resource_of;

    #[test]
    fn resources_come_from_the_last_parameter() {
        assert_eq!(
            resource_of("/admin/users/{id}/roles", "/admin/users/42/roles"),
            Some(("users".into(), "42".into()))
        );
        assert_eq!(
            resource_of("/api/v1/admin/roles/{name}", "/api/v1/admin/roles/analyst"),
            Some(("roles".into(), "analyst".into()))
        );
        assert_eq!(resource_of("/auth/me", "/auth/me"), None);
    }
}
