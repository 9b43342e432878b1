//! What an application's tokens may do, on both backends over real HTTP: a
//! third-party application's token is held to its scopes (never the account's own
//! routes, never Portcullis's administration, never a superuser's blanket grant),
//! a first-party application's acts as the person's login; refreshing keeps the
//! moment the person signed in and drops scopes the client lost; deleting a client
//! ends the sessions people signed in to it with; and only an administrator makes an
//! application first-party or gives it the roles scope.

use portcullis::domain::Actor;
use portcullis::domain::oidc::ClientPatch;
use serde_json::json;

use crate::oidc_code_flow::{authorize_path, code_for, redeem, register_app, token, verified_id_token};
use crate::pages::page_sign_in;
use crate::support::*;

const SCOPES: &str = "openid profile roles offline_access";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_applications_token_is_held_to_its_scopes_and_its_registration() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        let scopes = ["openid", "profile", "roles", "offline_access"];
        let third = register_app(&s, "third", crate::oidc_code_flow::REDIRECT, false, &scopes).await;
        let own = register_app(&s, "own", crate::oidc_code_flow::REDIRECT, true, &scopes).await;
        // The bootstrapped administrator is a superuser.
        let cookie = page_sign_in(&s, "admin", ADMIN_PASSWORD).await;

        // A third-party application: the permissions by name, no superuser flag, and
        // none of the account's or the administration's routes.
        let code = code_for(&s, &cookie, &authorize_path("third", SCOPES, &[])).await;
        let first = redeem(&s, &third, &code).await;
        assert_eq!(first.status, 200, "{}", first.text);
        let body = first.json();
        let access = body["access_token"].as_str().unwrap().to_string();
        let claims = jwt_part(&access, 1);
        assert!(claims.get("superuser").is_none(), "{claims}");
        assert!(claims.get("first_party").is_none(), "{claims}");
        assert!(
            claims["permissions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p == "users:read"),
            "{claims}"
        );
        for (method, path) in [
            (M::GET, "/admin/users"),
            (M::GET, "/auth/me"),
            (M::GET, "/auth/sessions"),
            (M::POST, "/auth/mfa/totp/enroll"),
        ] {
            let body = if method == M::POST { Json(json!({})) } else { Empty };
            let res = s.call(method, path, Bearer(&access), body).await;
            assert_eq!(res.status, 403, "{path}: {}", res.text);
        }
        let info = s.call(M::GET, "/oauth2/userinfo", Bearer(&access), Empty).await;
        assert_eq!(info.status, 200, "{}", info.text);
        assert!(info.body["roles"].as_array().is_some(), "{}", info.text);

        // A first-party application's token acts as the person's login.
        let code = code_for(&s, &cookie, &authorize_path("own", SCOPES, &[])).await;
        let own_tokens = redeem(&s, &own, &code).await;
        assert_eq!(own_tokens.status, 200, "{}", own_tokens.text);
        let own_access = own_tokens.json()["access_token"].as_str().unwrap().to_string();
        assert_eq!(jwt_part(&own_access, 1)["first_party"], true);
        for path in ["/admin/users", "/auth/me"] {
            let res = s.get_auth(path, &own_access).await;
            assert_eq!(res.status, 200, "{path}: {}", res.text);
        }

        // Refreshing keeps auth_time at the sign-in, not at the code exchange.
        let id_claims = verified_id_token(&s, body["id_token"].as_str().unwrap(), "third").await;
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let refreshed = token(
            &s,
            &third,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", body["refresh_token"].as_str().unwrap()),
            ],
        )
        .await;
        assert_eq!(refreshed.status, 200, "{}", refreshed.text);
        let again = refreshed.json();
        let again_claims = verified_id_token(&s, again["id_token"].as_str().unwrap(), "third").await;
        assert_eq!(again_claims["auth_time"], id_claims["auth_time"], "{again_claims}");
        assert!(again_claims["iat"].as_i64() > id_claims["iat"].as_i64());

        // An administrator takes the roles scope away: the next refresh drops it.
        let patch = ClientPatch {
            scopes: Some(vec!["openid".into(), "profile".into(), "offline_access".into()]),
            ..Default::default()
        };
        s.service
            .update_client("third", patch, &Actor::system())
            .await
            .expect("update");
        let narrowed = token(
            &s,
            &third,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", again["refresh_token"].as_str().unwrap()),
            ],
        )
        .await;
        assert_eq!(narrowed.status, 200, "{}", narrowed.text);
        let narrowed = narrowed.json();
        assert_eq!(narrowed["scope"], "openid profile offline_access", "{narrowed}");
        let access = narrowed["access_token"].as_str().unwrap().to_string();
        assert_eq!(jwt_part(&access, 1)["permissions"], json!([]));

        // Deleting the client ends the sessions people signed in to it with.
        s.service
            .delete_client("third", &Actor::system())
            .await
            .expect("delete");
        let info = s.call(M::GET, "/oauth2/userinfo", Bearer(&access), Empty).await;
        assert_eq!(info.status, 401, "{}", info.text);
        let sessions: Vec<String> = s
            .get_auth("/auth/sessions", &own_access)
            .await
            .json()
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|x| x["client_id"].as_str().map(str::to_string))
            .collect();
        assert_eq!(
            sessions,
            vec!["own".to_string()],
            "only the first-party app's session is left"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_an_administrator_trusts_an_application() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        let bob = s.user("bob").await;
        let system = Actor::system();
        s.service
            .create_role("client_manager", "", &["clients:manage".to_string()], &system)
            .await
            .expect("role");
        s.service
            .assign_role(bob.user_id(), "client_manager", &system)
            .await
            .expect("assign");
        let bob = s.login_as("bob", PASSWORD).await;
        let client = |id: &str, first_party: bool, scopes: &[&str]| {
            json!({
                "client_id": id,
                "name": id,
                "redirect_uris": ["https://app.example/cb"],
                "first_party": first_party,
                "scopes": scopes,
            })
        };
        for body in [
            client("trusted", true, &["openid"]),
            client("roles", false, &["openid", "roles"]),
        ] {
            let res = s
                .call(M::POST, "/admin/clients", Bearer(&bob.access), Json(body.clone()))
                .await;
            let problem = expect_problem(res, 403);
            assert!(
                problem["detail"].as_str().unwrap().contains("administrator"),
                "{problem}"
            );
        }
        let res = s
            .call(
                M::POST,
                "/admin/clients",
                Bearer(&bob.access),
                Json(client("plain", false, &["openid", "email"])),
            )
            .await;
        assert_eq!(res.status, 201, "{}", res.text);
        // Nor by an update.
        let res = s
            .call(
                M::PATCH,
                "/admin/clients/plain",
                Bearer(&bob.access),
                Json(json!({"first_party": true})),
            )
            .await;
        expect_problem(res, 403);
        let admin = s.login_as("admin", ADMIN_PASSWORD).await;
        let res = s
            .call(
                M::PATCH,
                "/admin/clients/plain",
                Bearer(&admin.access),
                Json(json!({"first_party": true})),
            )
            .await;
        assert_eq!(res.status, 200, "{}", res.text);
    }
}

/// A request encoded as most libraries encode it (`scope=openid%20profile`) takes a
/// browser without a session to the sign-in page, and back to the same request; and
/// signing in again at a browser ends the applications the old session signed in to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn percent_encoded_requests_sign_in_and_signing_in_again_ends_the_old_apps() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        s.register("alice").await;
        let app = register_app(
            &s,
            "notes",
            crate::oidc_code_flow::REDIRECT,
            true,
            &["openid", "profile"],
        )
        .await;
        let path = authorize_path("notes", "openid profile", &[]).replace("openid+profile", "openid%20profile");
        assert!(path.contains("scope=openid%20profile"), "{path}");
        let res = crate::pages::get_page(&s, &path, None).await;
        assert_eq!(res.status, 303, "{}", res.text);
        let location = res.header("location").unwrap().to_string();
        assert!(location.contains("/login?return_to="), "{location}");
        assert!(!location.contains("error="), "{location}");

        let cookie = page_sign_in(&s, "alice", PASSWORD).await;
        let code = code_for(&s, &cookie, &path).await;
        let tokens = redeem(&s, &app, &code).await;
        assert_eq!(tokens.status, 200, "{}", tokens.text);
        let access = tokens.json()["access_token"].as_str().unwrap().to_string();
        assert_eq!(
            s.call(M::GET, "/oauth2/userinfo", Bearer(&access), Empty).await.status,
            200
        );

        // A code approved by a browser session that has ended since is refused.
        let other = page_sign_in(&s, "alice", PASSWORD).await;
        let late = code_for(&s, &other, &path).await;
        let account = crate::pages::get_page(&s, "/account", Some(&other)).await;
        let csrf = crate::pages::csrf_of(&account.text);
        let out = crate::pages::post_form(
            &s,
            "/logout",
            &[("csrf", &csrf)],
            Some(&other),
            crate::pages::SAME_ORIGIN,
        )
        .await;
        assert_eq!(out.status, 303, "{}", out.text);
        let refused = redeem(&s, &app, &late).await;
        assert_eq!(refused.status, 400, "{}", refused.text);
        assert_eq!(refused.body["error"], "invalid_grant", "{}", refused.text);

        // Someone signs in again at this browser: the old session's apps end with it.
        let again = crate::pages::post_form(
            &s,
            "/login",
            &[("login", "alice"), ("password", PASSWORD)],
            Some(&cookie),
            crate::pages::SAME_ORIGIN,
        )
        .await;
        assert_eq!(again.status, 303, "{}", again.text);
        let info = s.call(M::GET, "/oauth2/userinfo", Bearer(&access), Empty).await;
        assert_eq!(info.status, 401, "{}", info.text);
    }
}

/// `prompt=login` sends a signed-in browser through the sign-in page; the marker it
/// comes back with is signed, so one written by hand (someone at the browser trying
/// to skip the sign-in the application asked for) is not honoured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_reauthentication_marker_does_not_skip_the_sign_in() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        s.register("alice").await;
        register_app(&s, "notes", crate::oidc_code_flow::REDIRECT, true, &["openid"]).await;
        // A moment before the sign-in: an unsigned marker naming it would be met.
        let before = (chrono::Utc::now().timestamp() - 5).to_string();
        let cookie = page_sign_in(&s, "alice", PASSWORD).await;
        for marker in [before.clone(), format!("{before}.AAAAAAAAAAAAAAAAAAAAAA")] {
            let path = authorize_path("notes", "openid", &[("prompt", "login"), ("reauth_at", &marker)]);
            let res = crate::pages::get_page(&s, &path, Some(&cookie)).await;
            assert_eq!(res.status, 303, "{}", res.text);
            let location = res.header("location").unwrap();
            assert!(location.contains("/login?return_to="), "{marker}: {location}");
            // The one Portcullis signs names this request and is honoured after a sign-in.
            assert!(location.contains("reauth%5Fat%3D"), "{location}");
        }
    }
}
