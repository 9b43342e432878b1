//! Every route Portcullis serves, with who may call it. The router is built from this
//! table alone; adding a route means adding a line here, rule included.

use std::collections::HashSet;

use axum::http::Method;

use super::Access::{Authenticated, Enrolling, Permission, Person, Public, SignedIn};
use super::{Route, admin, apps, audit, auth, clients, credentials, me, meta, mfa, oauth, oidc};
use crate::config::{ConfigError, RateLimitSettings};
use crate::domain::TokenPair;
use crate::domain::login::LoginOutcome;
use crate::ui;

/// The paths under the per-IP rate limit: `RATE_LIMIT_ROUTES` when set (each must be a
/// declared path), else the routes the table marks.
pub fn rate_limited_paths(table: &[Route], settings: &RateLimitSettings) -> Result<HashSet<&'static str>, ConfigError> {
    match &settings.routes {
        None => Ok(table.iter().filter(|r| r.rate_limited).map(|r| r.path).collect()),
        Some(paths) => paths
            .iter()
            .map(|p| {
                table
                    .iter()
                    .find(|r| r.path == p)
                    .map(|r| r.path)
                    .ok_or_else(|| ConfigError {
                        var: "RATE_LIMIT_ROUTES".into(),
                        message: format!("{p:?} is not a route Portcullis serves (e.g. /auth/login)"),
                    })
            })
            .collect(),
    }
}

pub fn table() -> Vec<Route> {
    use Method as M;
    let mut table = vec![
        // The hosted pages (src/ui): not in the OpenAPI document.
        Route::new(M::GET, "/", Public, ui::login::index).page(),
        Route::new(M::GET, "/login", Public, ui::login::login_page).page(),
        Route::new(M::POST, "/login", Public, ui::login::login_submit)
            .rate_limited()
            .page(),
        Route::new(M::GET, "/login/code", Public, ui::login::code_page).page(),
        Route::new(M::POST, "/login/code", Public, ui::login::code_submit)
            .rate_limited()
            .page(),
        Route::new(M::GET, "/account", SignedIn, ui::profile::page).page(),
        Route::new(M::POST, "/account", SignedIn, ui::profile::submit).page(),
        Route::new(M::GET, "/account/password", SignedIn, ui::profile::password_page).page(),
        Route::new(M::POST, "/account/password", SignedIn, ui::profile::password_submit)
            .rate_limited()
            .page(),
        Route::new(M::GET, "/account/sessions", SignedIn, ui::sessions::page).page(),
        Route::new(M::POST, "/account/sessions/revoke", SignedIn, ui::sessions::revoke).page(),
        Route::new(M::POST, "/account/sessions/others", SignedIn, ui::sessions::end_others).page(),
        Route::new(M::GET, "/login/oauth/{provider}", Public, ui::upstream::start)
            .rate_limited()
            .page(),
        Route::new(M::GET, "/account/api-keys", SignedIn, ui::api_keys::api_keys).page(),
        Route::new(M::POST, "/account/api-keys", SignedIn, ui::api_keys::create).page(),
        Route::new(M::POST, "/account/api-keys/revoke", SignedIn, ui::api_keys::revoke).page(),
        Route::new(M::GET, "/account/apps", SignedIn, ui::apps::page).page(),
        Route::new(M::POST, "/account/apps/revoke", SignedIn, ui::apps::revoke).page(),
        Route::new(M::GET, "/account/identities", SignedIn, ui::identities::identities).page(),
        Route::new(M::POST, "/account/identities/link", SignedIn, ui::identities::link)
            .rate_limited()
            .page(),
        Route::new(M::POST, "/account/identities/unlink", SignedIn, ui::identities::unlink).page(),
        Route::new(M::GET, "/login/enrol", Public, ui::enrol::enrol_page).page(),
        Route::new(M::POST, "/login/enrol", Public, ui::enrol::enrol_submit)
            .rate_limited()
            .page(),
        Route::new(M::GET, "/account/two-factor", SignedIn, ui::two_factor::page).page(),
        Route::new(M::POST, "/account/two-factor/enrol", SignedIn, ui::two_factor::enrol)
            .rate_limited()
            .page(),
        Route::new(M::POST, "/account/two-factor/confirm", SignedIn, ui::two_factor::confirm)
            .rate_limited()
            .page(),
        Route::new(
            M::POST,
            "/account/two-factor/recovery-codes",
            SignedIn,
            ui::two_factor::regenerate,
        )
        .rate_limited()
        .page(),
        Route::new(M::POST, "/account/two-factor/disable", SignedIn, ui::two_factor::disable)
            .rate_limited()
            .page(),
        Route::new(M::GET, "/register", Public, ui::register::register_page).page(),
        Route::new(M::POST, "/register", Public, ui::register::register_submit)
            .rate_limited()
            .page(),
        Route::new(M::POST, "/logout", SignedIn, ui::account::logout).page(),
        Route::new(M::GET, "/oauth2/logout", Public, ui::logout::start).page(),
        Route::new(M::POST, "/oauth2/logout", Public, ui::logout::confirm).page(),
        Route::new(M::GET, "/assets/{file}", Public, ui::asset).page(),
        Route::new(M::GET, "/oauth2/authorize", Public, ui::authorize::authorize).page(),
        Route::new(M::POST, "/oauth2/authorize", SignedIn, ui::authorize::decide).page(),
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
        Route::new(
            M::GET,
            "/.well-known/oauth-authorization-server",
            Public,
            meta::openid_configuration,
        )
        .doc("discovery", "OAuth 2.0 authorization server metadata (RFC 8414)")
        .empty(200),
        Route::new(M::GET, "/.well-known/jwks.json", Public, meta::jwks)
            .doc("discovery", "Public signing keys (JWKS)")
            .empty(200),
        // The OpenID provider (docs/oidc.md).
        Route::new(M::POST, "/oauth2/token", Public, oidc::token)
            .rate_limited()
            .doc("oidc", "OAuth 2.1 token endpoint for registered clients")
            .returns::<crate::domain::oidc::TokenResponse>(200)
            .returns::<auth::OAuthErrorBody>(400)
            .returns::<auth::OAuthErrorBody>(401),
        Route::new(M::POST, "/oauth2/device_authorization", Public, oidc::device_authorization)
            .rate_limited()
            .doc("oidc", "Device authorization (RFC 8628): a device code and the user code to enter at /device")
            .returns::<crate::domain::oidc::DeviceAuthorization>(200)
            .returns::<auth::OAuthErrorBody>(400)
            .returns::<auth::OAuthErrorBody>(401),
        Route::new(M::GET, "/device", SignedIn, ui::device::page).page(),
        Route::new(M::POST, "/device", SignedIn, ui::device::submit)
            .rate_limited()
            .page(),
        Route::new(M::POST, "/oauth2/introspect", Public, oidc::introspect)
            .rate_limited()
            .doc("oidc", "RFC 7662 introspection for confidential clients (client-authenticated)")
            .form::<oidc::ClientTokenForm>()
            .returns::<crate::domain::credentials::Introspection>(200)
            .returns::<auth::OAuthErrorBody>(400)
            .returns::<auth::OAuthErrorBody>(401),
        Route::new(M::POST, "/oauth2/revoke", Public, oidc::revoke)
            .rate_limited()
            .doc("oidc", "RFC 7009 revocation of a token issued to the calling client")
            .form::<oidc::ClientTokenForm>()
            .empty(200)
            .returns::<auth::OAuthErrorBody>(400)
            .returns::<auth::OAuthErrorBody>(401),
        // The client registry (docs/oidc.md).
        Route::new(M::GET, "/admin/clients", Permission("clients:manage"), clients::list_clients)
            .doc("admin: clients", "Registered OpenID Connect clients (never their secrets)")
            .returns_list::<crate::domain::oidc::Client>(200),
        Route::new(M::POST, "/admin/clients", Permission("clients:manage"), clients::create_client)
            .step_up()
            .doc("admin: clients", "Register a client; its secret is answered this once")
            .json::<crate::domain::oidc::ClientSpec>()
            .returns::<crate::domain::oidc::CreatedClient>(201)
            .empty(409),
        Route::new(M::GET, "/admin/clients/{id}", Permission("clients:manage"), clients::get_client)
            .doc("admin: clients", "One client")
            .returns::<crate::domain::oidc::Client>(200)
            .empty(404),
        Route::new(M::PATCH, "/admin/clients/{id}", Permission("clients:manage"), clients::update_client)
            .step_up()
            .doc("admin: clients", "Change a client; taking roles away ends its service-account tokens")
            .json::<crate::domain::oidc::ClientPatch>()
            .returns::<crate::domain::oidc::Client>(200)
            .empty(404),
        Route::new(M::DELETE, "/admin/clients/{id}", Permission("clients:manage"), clients::delete_client)
            .step_up()
            .doc("admin: clients", "Remove a client, ending its tokens")
            .empty(204)
            .empty(404),
        Route::new(M::POST, "/admin/clients/{id}/secret", Permission("clients:manage"), clients::rotate_secret)
            .step_up()
            .doc("admin: clients", "New secret, answered this once; the old one works for grace_seconds")
            .json::<clients::RotateSecretRequest>()
            .returns::<crate::domain::oidc::CreatedClient>(200)
            .empty(404),
        Route::new(M::GET, "/oauth2/userinfo", Authenticated, oidc::userinfo)
            .doc("oidc", "OpenID Connect UserInfo: the claims of the access token's scopes")
            .returns::<crate::domain::oidc::UserClaims>(200)
            .empty(401)
            .returns::<auth::OAuthErrorBody>(403),
        Route::new(M::POST, "/oauth2/userinfo", Authenticated, oidc::userinfo)
            .doc("oidc", "OpenID Connect UserInfo (POST, RFC 6750 bearer)")
            .returns::<crate::domain::oidc::UserClaims>(200)
            .empty(401)
            .returns::<auth::OAuthErrorBody>(403),
        // Authentication.
        Route::new(M::POST, "/auth/register", Public, auth::register)
            .rate_limited()
            .doc("auth", "Create an account")
            .json::<auth::RegisterRequest>()
            .returns::<auth::UserOut>(201)
            .empty(409),
        Route::new(M::POST, "/auth/login", Public, auth::login)
            .rate_limited()
            .doc("auth", "Log in with username (or email) and password")
            .json::<auth::LoginRequest>()
            .returns::<LoginOutcome>(200)
            .empty(401),
        Route::new(M::POST, "/auth/token", Public, auth::token)
            .rate_limited()
            .doc(
                "auth",
                "OAuth2 token endpoint (grant_type password or refresh_token; username and password alone mean password); a due second factor is 403 mfa_required with the mfa_token",
            )
            .form::<auth::TokenRequest>()
            .returns::<LoginOutcome>(200)
            .returns::<auth::OAuthErrorBody>(400)
            .returns::<auth::OAuthErrorBody>(403),
        Route::new(M::POST, "/auth/refresh", Public, auth::refresh)
            .rate_limited()
            .doc("auth", "Rotate a refresh token for a new token pair")
            .json::<auth::RefreshRequest>()
            .returns::<TokenPair>(200)
            .empty(401),
        Route::new(M::POST, "/auth/logout", Public, auth::logout)
            .doc("auth", "End the session a refresh token belongs to")
            .json::<auth::RefreshRequest>()
            .empty(204),
        Route::new(M::POST, "/auth/logout-all", Person, auth::logout_all)
            .doc("auth", "End every session of the caller")
            .empty(204),
        // The caller's own account.
        Route::new(M::GET, "/auth/me", Authenticated, me::get_me)
            .doc("me", "The caller's account and grants")
            .returns::<me::MeOut>(200),
        Route::new(M::PATCH, "/auth/me", Person, me::patch_me)
            .doc("me", "Update full name or email")
            .json::<me::UpdateMeRequest>()
            .returns::<auth::UserOut>(200)
            .empty(409),
        Route::new(M::POST, "/auth/me/password", Person, me::change_password)
            .rate_limited()
            .doc("me", "Change password; ends the caller's other sessions")
            .json::<me::ChangePasswordRequest>()
            .empty(204),
        // Sign-in with upstream identity providers.
        Route::new(M::POST, "/auth/oauth/login", Public, oauth::token_login)
            .rate_limited()
            .doc(
                "oauth",
                "Exchange a provider's ID token or access token for Portcullis tokens",
            )
            .json::<oauth::OAuthLoginRequest>()
            .returns::<LoginOutcome>(200)
            .empty(400)
            .empty(401)
            .empty(409)
            .empty(502),
        Route::new(M::GET, "/auth/oauth/{provider}/authorize", Public, oauth::authorize)
            .rate_limited()
            .doc(
                "oauth",
                "Start the redirect flow: 302 to the provider (state, nonce, PKCE S256)",
            )
            .query::<oauth::AuthorizeParams>()
            .empty(302)
            .empty(400),
        Route::new(M::GET, "/auth/oauth/{provider}/callback", Public, oauth::callback)
            .rate_limited()
            .doc("oauth", "The provider returns here; 302 back to the app with tokens")
            .query::<oauth::CallbackParams>()
            .empty(302)
            .empty(400)
            .empty(401),
        Route::new(M::GET, "/auth/me/apps", Person, apps::list)
            .doc("oidc", "The applications the caller has allowed (consents)")
            .returns_list::<crate::domain::oidc::consent::Grant>(200),
        Route::new(M::DELETE, "/auth/me/apps/{client_id}", Person, apps::revoke)
            .doc(
                "oidc",
                "Revoke an application's grant: forget the consent and end its sessions",
            )
            .empty(204)
            .empty(404),
        Route::new(M::GET, "/auth/me/identities", Person, oauth::list_identities)
            .doc("oauth", "The caller's linked provider identities")
            .returns_list::<crate::domain::oauth::IdentityOut>(200),
        Route::new(
            M::DELETE,
            "/auth/me/identities/{provider}",
            Person,
            oauth::unlink_identity,
        )
        .doc("oauth", "Unlink a provider (never the last way to sign in)")
        .empty(204)
        .empty(409),
        Route::new(
            M::GET,
            "/auth/me/identities/{provider}/token",
            Person,
            oauth::upstream_token,
        )
        .doc(
            "oauth",
            "A current access token of the provider, refreshed upstream when expired",
        )
        .returns::<crate::domain::oauth::UpstreamTokenOut>(200),
        // Multi-factor authentication.
        Route::new(M::POST, "/auth/mfa/verify", Public, mfa::verify)
            .rate_limited()
            .doc(
                "mfa",
                "Second step of a login: mfa_token and a TOTP or recovery code -> tokens",
            )
            .json::<mfa::VerifyRequest>()
            .returns::<TokenPair>(200)
            .empty(401),
        Route::new(M::GET, "/auth/mfa", Enrolling, mfa::status)
            .doc("mfa", "The caller's second factors and recovery codes left")
            .returns::<crate::domain::mfa::MfaStatus>(200),
        Route::new(M::POST, "/auth/mfa/totp/enroll", Enrolling, mfa::enroll)
            .rate_limited()
            .doc("mfa", "Start TOTP enrolment: secret, otpauth URI and QR codes")
            .json::<mfa::EnrollRequest>()
            .returns::<crate::domain::mfa::TotpEnrollment>(200)
            .empty(409),
        Route::new(M::POST, "/auth/mfa/totp/confirm", Enrolling, mfa::confirm)
            .rate_limited()
            .doc(
                "mfa",
                "Confirm enrolment with a current code -> recovery codes, shown once",
            )
            .json::<mfa::ConfirmRequest>()
            .returns::<mfa::RecoveryCodesOut>(200)
            .empty(422),
        Route::new(M::DELETE, "/auth/mfa/totp", Authenticated, mfa::disable)
            .rate_limited()
            .doc("mfa", "Remove TOTP: needs the password and a code or recovery code")
            .json::<mfa::DisableRequest>()
            .empty(204),
        Route::new(
            M::POST,
            "/auth/mfa/recovery-codes",
            Authenticated,
            mfa::regenerate_recovery_codes,
        )
        .rate_limited()
        .doc(
            "mfa",
            "New recovery codes for a current code; the old ones stop working",
        )
        .json::<mfa::FactorFields>()
        .returns::<mfa::RecoveryCodesOut>(200)
        .empty(409),
        Route::new(M::GET, "/auth/sessions", Person, me::list_sessions)
            .doc("me", "The caller's active sessions")
            .returns_list::<me::SessionOut>(200),
        Route::new(M::DELETE, "/auth/sessions/{id}", Person, me::delete_session)
            .doc("me", "End one of the caller's sessions")
            .empty(204)
            .empty(404),
        Route::new(M::GET, "/auth/me/permissions", Authenticated, admin::my_permissions)
            .doc("authorization", "Roles and permissions the caller's token carries")
            .returns::<admin::GrantsOut>(200),
        Route::new(M::POST, "/auth/check", Authenticated, admin::check)
            .doc("authorization", "May the caller do this? {permission} -> {allowed}")
            .json::<admin::CheckRequest>()
            .returns::<admin::CheckOut>(200),
        // Credentials for services and scripts, and the checks gateways call.
        Route::new(M::POST, "/auth/api-keys", Person, credentials::create_api_key)
            .doc(
                "credentials",
                "Create an API key (shown once) with a subset of the caller's permissions",
            )
            .json::<credentials::CreateApiKeyRequest>()
            .returns::<credentials::NewApiKeyOut>(201),
        Route::new(M::GET, "/auth/api-keys", Person, credentials::list_my_api_keys)
            .doc("credentials", "The caller's API keys (never their secrets)")
            .returns_list::<credentials::ApiKeyOut>(200),
        Route::new(M::GET, "/auth/api-keys/{id}", Person, credentials::get_my_api_key)
            .doc("credentials", "One of the caller's API keys")
            .returns::<credentials::ApiKeyOut>(200)
            .empty(404),
        Route::new(M::DELETE, "/auth/api-keys/{id}", Person, credentials::revoke_my_api_key)
            .doc("credentials", "Revoke one of the caller's API keys")
            .empty(204)
            .empty(404),
        Route::new(
            M::POST,
            "/auth/temporary-tokens",
            Person,
            credentials::create_temporary_token,
        )
        .doc(
            "credentials",
            "Create a short-lived, optionally use-limited token (shown once)",
        )
        .json::<credentials::CreateTemporaryTokenRequest>()
        .returns::<credentials::TemporaryTokenOut>(201),
        Route::new(M::GET, "/auth/verify", Authenticated, credentials::verify)
            .doc(
                "gateway",
                "Forward auth: any credential; optional permission, route map on X-Forwarded-*/X-Original-*",
            )
            .query::<credentials::VerifyParams>()
            .returns::<credentials::VerifyOut<'static>>(200)
            .empty(403),
        Route::new(
            M::POST,
            "/auth/introspect",
            Permission("tokens:introspect"),
            credentials::introspect,
        )
        .doc(
            "gateway",
            "RFC 7662 introspection of an access token, API key or temporary token",
        )
        .form::<credentials::TokenForm>()
        .returns::<crate::domain::credentials::Introspection>(200),
        Route::new(M::POST, "/auth/revoke", Public, credentials::revoke)
            .doc(
                "gateway",
                "RFC 7009 revocation of a refresh token, access token, API key or temporary token",
            )
            .form::<credentials::TokenForm>()
            .empty(200),
        Route::new(
            M::GET,
            "/admin/api-keys",
            Permission("apikeys:manage"),
            credentials::list_all_api_keys,
        )
        .doc("admin: credentials", "Every user's API keys")
        .query::<credentials::PageParams>()
        .returns_list::<credentials::ApiKeyOut>(200),
        Route::new(
            M::DELETE,
            "/admin/api-keys/{id}",
            Permission("apikeys:manage"),
            credentials::revoke_any_api_key,
        )
        .doc("admin: credentials", "Revoke anyone's API key")
        .empty(204)
        .empty(404),
        // The audit trail.
        Route::new(M::GET, "/audit/logs", Permission("audit:read"), audit::list)
            .doc(
                "audit",
                "Audit records, newest first; filters, limit/offset and a cursor",
            )
            .query::<audit::AuditQuery>()
            .returns::<audit::AuditPageOut>(200),
        Route::new(M::GET, "/audit/logs/export", Permission("audit:read"), audit::export)
            .doc("audit", "Matching audit records as NDJSON, oldest first, streamed")
            .query::<audit::AuditQuery>()
            .empty(200),
        Route::new(M::GET, "/audit/actions", Permission("audit:read"), audit::actions)
            .doc("audit", "The actions recorded so far, for building filters")
            .returns::<audit::AuditActionsOut>(200),
        Route::new(M::POST, "/audit/events", Permission("audit:write"), audit::record)
            .doc("audit", "Record a custom audit event")
            .json::<audit::AuditEventRequest>()
            .empty(201),
        // Administration of users.
        Route::new(M::GET, "/admin/users", Permission("users:read"), admin::list_users)
            .doc("admin: users", "List or search users (q, sort, limit, offset)")
            .query::<admin::ListUsersParams>()
            .returns::<admin::UserPageOut>(200),
        Route::new(M::POST, "/admin/users", Permission("users:manage"), admin::create_user)
            .step_up()
            .doc("admin: users", "Create a user, optionally with roles")
            .json::<admin::CreateUserRequest>()
            .returns::<admin::UserDetailOut>(201)
            .empty(409),
        Route::new(M::GET, "/admin/users/{id}", Permission("users:read"), admin::get_user)
            .doc("admin: users", "A user with roles and effective permissions")
            .returns::<admin::UserDetailOut>(200)
            .empty(404),
        Route::new(
            M::PATCH,
            "/admin/users/{id}",
            Permission("users:manage"),
            admin::update_user,
        )
        .step_up()
        .doc("admin: users", "Change email, full name or superuser (superusers only)")
        .json::<admin::UpdateUserRequest>()
        .returns::<admin::UserDetailOut>(200)
        .empty(409),
        Route::new(
            M::DELETE,
            "/admin/users/{id}",
            Permission("users:manage"),
            admin::delete_user,
        )
        .step_up()
        .doc("admin: users", "Delete a user (not the last administrator)")
        .empty(204)
        .empty(409),
        Route::new(
            M::POST,
            "/admin/users/{id}/disable",
            Permission("users:manage"),
            admin::disable_user,
        )
        .doc(
            "admin: users",
            "Disable a user and end their sessions (not the last administrator)",
        )
        .returns::<auth::UserOut>(200)
        .empty(409),
        Route::new(
            M::POST,
            "/admin/users/{id}/enable",
            Permission("users:manage"),
            admin::enable_user,
        )
        .doc("admin: users", "Enable a user")
        .returns::<auth::UserOut>(200),
        Route::new(
            M::PUT,
            "/admin/users/{id}/password",
            Permission("users:manage"),
            admin::set_password,
        )
        .step_up()
        .doc("admin: users", "Set a user's password and end their sessions")
        .json::<admin::SetPasswordRequest>()
        .empty(204),
        Route::new(
            M::DELETE,
            "/admin/users/{id}/mfa",
            Permission("users:manage"),
            mfa::admin_reset,
        )
        .step_up()
        .doc("admin: users", "Remove a user's second factor and recovery codes")
        .empty(204)
        .empty(404),
        Route::new(
            M::POST,
            "/admin/keys/rotate",
            Permission("keys:manage"),
            admin::rotate_signing_key,
        )
        .step_up()
        .doc(
            "admin: keys",
            "Start signing with a new key; the old one verifies until its tokens expire",
        )
        .returns::<admin::RotatedOut>(200)
        .empty(409),
        Route::new(
            M::POST,
            "/admin/users/{id}/unlock",
            Permission("users:manage"),
            admin::unlock_user,
        )
        .doc("admin: users", "Clear a login lockout")
        .empty(204),
        Route::new(
            M::GET,
            "/admin/users/{id}/sessions",
            Permission("users:read"),
            admin::user_sessions,
        )
        .doc("admin: users", "A user's active sessions")
        .returns_list::<me::SessionOut>(200),
        Route::new(
            M::POST,
            "/admin/users/{id}/sessions/revoke",
            Permission("users:manage"),
            admin::revoke_user_sessions,
        )
        .doc("admin: users", "End every session of a user, at once")
        .returns::<admin::RevokedOut>(200),
        Route::new(
            M::GET,
            "/admin/users/{id}/permissions",
            Permission("users:read"),
            admin::user_permissions,
        )
        .doc("admin: users", "A user's roles and effective permissions")
        .returns::<admin::GrantsOut>(200),
        Route::new(
            M::POST,
            "/admin/users/{id}/roles",
            Permission("users:manage"),
            admin::assign_role,
        )
        .step_up()
        .doc("admin: users", "Assign a role")
        .json::<admin::RoleRef>()
        .empty(204)
        .empty(404),
        Route::new(
            M::DELETE,
            "/admin/users/{id}/roles/{role}",
            Permission("users:manage"),
            admin::remove_role,
        )
        .step_up()
        .doc("admin: users", "Remove a role (not from the last administrator)")
        .empty(204)
        .empty(409),
        // Administration of roles and permissions.
        Route::new(M::GET, "/admin/roles", Permission("users:read"), admin::list_roles)
            .doc("admin: roles", "Roles with their permissions")
            .returns_list::<admin::RoleOut>(200),
        Route::new(M::POST, "/admin/roles", Permission("roles:manage"), admin::create_role)
            .step_up()
            .doc("admin: roles", "Create a role")
            .json::<admin::CreateRoleRequest>()
            .returns::<admin::RoleOut>(201)
            .empty(409),
        Route::new(M::GET, "/admin/roles/{name}", Permission("users:read"), admin::get_role)
            .doc("admin: roles", "One role")
            .returns::<admin::RoleOut>(200)
            .empty(404),
        Route::new(
            M::PATCH,
            "/admin/roles/{name}",
            Permission("roles:manage"),
            admin::update_role,
        )
        .step_up()
        .doc("admin: roles", "Change description or replace permissions")
        .json::<admin::UpdateRoleRequest>()
        .returns::<admin::RoleOut>(200),
        Route::new(
            M::DELETE,
            "/admin/roles/{name}",
            Permission("roles:manage"),
            admin::delete_role,
        )
        .step_up()
        .doc(
            "admin: roles",
            "Delete a role (not while it would leave no administrator)",
        )
        .empty(204)
        .empty(409),
        Route::new(
            M::POST,
            "/admin/roles/{name}/permissions",
            Permission("roles:manage"),
            admin::grant_permission,
        )
        .step_up()
        .doc("admin: roles", "Grant a permission to a role")
        .json::<admin::PermissionRef>()
        .empty(204)
        .empty(404),
        Route::new(
            M::DELETE,
            "/admin/roles/{name}/permissions/{permission}",
            Permission("roles:manage"),
            admin::revoke_permission,
        )
        .step_up()
        .doc("admin: roles", "Revoke a permission from a role")
        .empty(204)
        .empty(404),
        Route::new(
            M::GET,
            "/admin/permissions",
            Permission("users:read"),
            admin::list_permissions,
        )
        .doc("admin: roles", "Every permission")
        .returns_list::<admin::PermissionOut>(200),
        Route::new(
            M::POST,
            "/admin/permissions",
            Permission("roles:manage"),
            admin::create_permission,
        )
        .step_up()
        .doc("admin: roles", "Create a permission")
        .json::<admin::CreatePermissionRequest>()
        .returns::<admin::PermissionOut>(201)
        .empty(409),
        Route::new(
            M::DELETE,
            "/admin/permissions/{name}",
            Permission("roles:manage"),
            admin::delete_permission,
        )
        .step_up()
        .doc("admin: roles", "Delete a permission, removing it from every role")
        .empty(204)
        .empty(404),
    ];
    // Envoy's ext_authz forwards the original method, so every method is declared.
    table.extend([M::GET, M::POST, M::PUT, M::PATCH, M::DELETE].map(|method| {
        Route::new(
            method,
            "/auth/verify/{*path}",
            Authenticated,
            credentials::verify_prefixed,
        )
        .doc("gateway", "Forward auth for Envoy ext_authz (path_prefix /auth/verify)")
        .returns::<credentials::VerifyOut<'static>>(200)
        .empty(403)
    }));
    table
}
