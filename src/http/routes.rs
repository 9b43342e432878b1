//! Every route Portcullis serves, with who may call it. The router is built from this
//! table alone; adding a route means adding a line here, rule included.

use axum::http::Method;

use super::Access::{Authenticated, Public};
use super::{Route, auth, me, meta};
use crate::domain::TokenPair;

pub fn table() -> Vec<Route> {
    use Method as M;
    vec![
        // Service metadata.
        Route::new(M::GET, "/health", Public, meta::health)
            .doc("meta", "Liveness")
            .returns::<meta::Health>(200),
        Route::new(M::GET, "/ready", Public, meta::ready)
            .doc("meta", "Readiness: the database answers")
            .returns::<meta::Health>(200)
            .empty(503),
        Route::new(M::GET, "/metrics", Public, meta::metrics)
            .doc("meta", "Prometheus metrics")
            .empty(200),
        Route::new(M::GET, "/openapi.json", Public, meta::openapi)
            .doc("meta", "This OpenAPI document")
            .empty(200),
        Route::mounted(M::GET, "/docs", Public),
        Route::mounted(M::GET, "/docs/", Public),
        Route::mounted(M::GET, "/docs/{*asset}", Public),
        Route::new(
            M::GET,
            "/.well-known/openid-configuration",
            Public,
            meta::openid_configuration,
        )
        .doc("discovery", "OpenID Provider metadata")
        .empty(200),
        Route::new(M::GET, "/.well-known/jwks.json", Public, meta::jwks)
            .doc("discovery", "Public signing keys (JWKS)")
            .empty(200),
        // Authentication.
        Route::new(M::POST, "/auth/register", Public, auth::register)
            .doc("auth", "Create an account")
            .json::<auth::RegisterRequest>()
            .returns::<auth::UserOut>(201)
            .empty(409),
        Route::new(M::POST, "/auth/login", Public, auth::login)
            .doc("auth", "Log in with username (or email) and password")
            .json::<auth::LoginRequest>()
            .returns::<TokenPair>(200)
            .empty(401),
        Route::new(M::POST, "/auth/token", Public, auth::token)
            .doc("auth", "OAuth2 token endpoint (grant_type password or refresh_token)")
            .form::<auth::TokenRequest>()
            .returns::<TokenPair>(200)
            .returns::<auth::OAuthErrorBody>(400),
        Route::new(M::POST, "/auth/refresh", Public, auth::refresh)
            .doc("auth", "Rotate a refresh token for a new token pair")
            .json::<auth::RefreshRequest>()
            .returns::<TokenPair>(200)
            .empty(401),
        Route::new(M::POST, "/auth/logout", Public, auth::logout)
            .doc("auth", "End the session a refresh token belongs to")
            .json::<auth::RefreshRequest>()
            .empty(204),
        Route::new(M::POST, "/auth/logout-all", Authenticated, auth::logout_all)
            .doc("auth", "End every session of the caller")
            .empty(204),
        // The caller's own account.
        Route::new(M::GET, "/auth/me", Authenticated, me::get_me)
            .doc("me", "The caller's account and grants")
            .returns::<me::MeOut>(200),
        Route::new(M::PATCH, "/auth/me", Authenticated, me::patch_me)
            .doc("me", "Update full name or email")
            .json::<me::UpdateMeRequest>()
            .returns::<auth::UserOut>(200)
            .empty(409),
        Route::new(M::POST, "/auth/me/password", Authenticated, me::change_password)
            .doc("me", "Change password; ends the caller's other sessions")
            .json::<me::ChangePasswordRequest>()
            .empty(204),
        Route::new(M::GET, "/auth/sessions", Authenticated, me::list_sessions)
            .doc("me", "The caller's active sessions")
            .returns::<me::SessionOut>(200),
        Route::new(M::DELETE, "/auth/sessions/{id}", Authenticated, me::delete_session)
            .doc("me", "End one of the caller's sessions")
            .empty(204)
            .empty(404),
    ]
}
