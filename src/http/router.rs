//! The router, built only from the route table: each route gets the guard that
//! enforces its access rule (and step-up, and the per-IP limit where the table or
//! `RATE_LIMIT_ROUTES` asks for it), so no route can exist without a rule. The
//! middleware every request passes through (request ids, tracing, security headers,
//! CORS) is put around it by `app`.

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::handler::Handler;
use axum::middleware;

use super::state::{AppState, Limits};
use super::{guard, openapi, ratelimit, request_metrics, routes};
use crate::config::{Config, ConfigError};
use crate::domain::Portcullis;
use crate::error::AppError;

async fn not_found() -> AppError {
    AppError::NotFound("no such route".into())
}

async fn method_not_allowed() -> AppError {
    AppError::MethodNotAllowed
}

/// Every declared route, Swagger UI and the fallbacks, with their state.
pub fn routes(service: Portcullis) -> Router {
    let config = service.config().clone();
    let table = routes::table();
    let openapi = serde_json::to_vec(&openapi::document(&table, &config)).unwrap_or_default();
    let state = AppState {
        service,
        metrics: crate::recorder::metrics_handle(),
        openapi: openapi.into(),
        limits: Limits {
            max_body_bytes: config.server.max_body_bytes,
        },
        served: std::sync::Arc::new(table.iter().map(|r| r.path).collect()),
    };

    // Checked at start-up (`check_settings`); an embedding caller that skipped it gets
    // the table's defaults rather than no limit.
    let limited = routes::rate_limited_paths(&table, &config.rate_limit).unwrap_or_else(|e| {
        tracing::error!(error = %e, "ignoring RATE_LIMIT_ROUTES");
        table.iter().filter(|r| r.rate_limited).map(|r| r.path).collect()
    });
    let limiter = ratelimit::IpRateLimiter::new(&config.rate_limit);
    let api_paths = table.iter().filter(|r| !r.page).map(|r| r.path);
    let pages = std::sync::Arc::new(crate::ui::PagePolicy::new(&config, api_paths));

    let mut app: Router<AppState> = Router::new();
    for route in table {
        let Some(handler) = route.handler else { continue };
        let mut guard = guard::RequireAccess::new(&state.service, route.access.clone());
        if route.step_up {
            guard = guard.with_step_up();
        }
        let mut guarded = handler.layer(guard);
        if let Some(limiter) = limiter.as_ref().filter(|_| limited.contains(route.path)) {
            guarded = guarded.layer(middleware::from_fn_with_state(limiter.clone(), ratelimit::limit));
            ratelimit::count_from_zero(&config.path(route.path));
        }
        // Outside the limit: a page's 429 is a page with the pages' CSP too.
        if route.page {
            guarded = guarded.layer(middleware::from_fn_with_state(pages.clone(), crate::ui::page_layer));
        }
        app = app.route(&config.path(route.path), guarded);
    }
    let swagger = utoipa_swagger_ui::SwaggerUi::new(config.path("/docs")).config(
        utoipa_swagger_ui::Config::new([config.path("/openapi.json")])
            .validator_url("none")
            .persist_authorization(true),
    );
    app.merge(swagger)
        // On a page's path, a browser gets these as pages (`ui::fallback_layer`).
        .fallback(not_found.layer(middleware::from_fn_with_state(pages.clone(), crate::ui::fallback_layer)))
        .method_not_allowed_fallback(
            method_not_allowed.layer(middleware::from_fn_with_state(pages, crate::ui::fallback_layer)),
        )
        .layer(middleware::from_fn(request_metrics::record))
        .layer(DefaultBodyLimit::max(config.server.max_body_bytes))
        .with_state(state)
}

/// Settings that can only be checked against the route table; start-up calls this so
/// a bad value stops the service with one line.
pub fn check_settings(config: &Config) -> Result<(), ConfigError> {
    routes::rate_limited_paths(&routes::table(), &config.rate_limit).map(|_| ())
}
