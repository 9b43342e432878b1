//! Roles, permissions, the admin API, last-admin protection, and the guard as a
//! library API, on both backends.

use axum::Router;
use axum::routing::{get, post};
use portcullis::domain::Actor;
use portcullis::http::{Caller, require_authenticated, require_permission, require_role};
use serde_json::{Value, json};

use crate::support::*;

async fn admin(s: &TestServer) -> Tokens {
    s.login_as("admin", ADMIN_PASSWORD).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_roles_permissions_and_401_vs_403() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        let a = admin(&s).await;
        let roles: Value = s.get_auth("/admin/roles", &a.access).await.json();
        let names: Vec<&str> = roles
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["admin", "analyst", "viewer"]);
        let analyst = roles
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "analyst")
            .unwrap();
        for p in ["projects:create", "runs:create", "reports:read"] {
            assert!(analyst["permissions"].as_array().unwrap().contains(&json!(p)), "{p}");
        }
        assert!(
            !analyst["permissions"]
                .as_array()
                .unwrap()
                .contains(&json!("users:manage"))
        );
        let viewer: Value = s.get_auth("/admin/roles/viewer", &a.access).await.json();
        assert!(
            viewer["permissions"]
                .as_array()
                .unwrap()
                .iter()
                .all(|p| p.as_str().unwrap().ends_with(":read"))
        );
        let perms: Value = s.get_auth("/admin/permissions", &a.access).await.json();
        assert_eq!(
            perms.as_array().unwrap().len(),
            21,
            "18 shipped plus tokens:introspect, audit:write and clients:manage"
        );

        // A plain user: 403 naming the permission; anonymous: 401.
        let u = s.user("plain").await;
        let p = expect_problem(s.get_auth("/admin/users", &u.access).await, 403);
        assert!(p["detail"].as_str().unwrap().contains("users:read"), "{p}");
        expect_problem(s.get("/admin/users").await, 401);

        // A role change reaches the next refresh, not the current token.
        let res = s
            .call(
                M::POST,
                &format!("/admin/users/{}/roles", u.user_id()),
                Bearer(&a.access),
                Json(json!({"role": "analyst"})),
            )
            .await;
        assert_eq!(res.status, 204);
        let check = |token: String, perm: &'static str| {
            let s = &s;
            async move {
                let res = s
                    .call(
                        M::POST,
                        "/auth/check",
                        Bearer(&token),
                        Json(json!({"permission": perm})),
                    )
                    .await;
                res.json()["allowed"].as_bool().unwrap()
            }
        };
        assert!(!check(u.access.clone(), "projects:create").await);
        let refreshed = s.refresh(&u.refresh).await.tokens();
        assert!(check(refreshed.access.clone(), "projects:create").await);
        assert!(!check(refreshed.access.clone(), "users:manage").await);
        let mine: Value = s.get_auth("/auth/me/permissions", &refreshed.access).await.json();
        assert_eq!(mine["roles"], json!(["analyst"]));
        let effective: Value = s
            .get_auth(&format!("/admin/users/{}/permissions", u.user_id()), &a.access)
            .await
            .json();
        assert_eq!(effective["permissions"], mine["permissions"]);
        // Ending the user's sessions takes effect at once.
        let res = s
            .call(
                M::POST,
                &format!("/admin/users/{}/sessions/revoke", u.user_id()),
                Bearer(&a.access),
                Empty,
            )
            .await;
        assert_eq!(res.json()["revoked"], 1);
        expect_invalid_token(s.get_auth("/auth/me", &refreshed.access).await);
        s.stop().await;
    }
}

/// The declared rule of every permission-guarded route is what a caller without it
/// meets: 403 naming the permission; authenticated routes let any user through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_rules_match_behaviour_for_a_plain_user() {
    let (s, _db) = TestServer::start(Backend::Sqlite).await;
    s.register("nobody").await;
    for r in portcullis::http::routes::table() {
        // Fresh each time: some routes (logout-all, password change) end sessions.
        let u = s.login_as("nobody", PASSWORD).await;
        let path = concrete_path(r.path);
        let res = s
            .call(r.method.clone(), &path, Bearer(&u.access), Json(json!({})))
            .await;
        let status = res.status;
        match r.access {
            portcullis::http::Access::Permission(p) => {
                let body = expect_problem(res, 403);
                assert!(body["detail"].as_str().unwrap().contains(p), "{} {}", r.method, r.path);
            }
            portcullis::http::Access::Role(_) => assert_eq!(status, 403),
            // UserInfo is for tokens issued to an application with `openid`; a login's
            // own token is refused as RFC 6750 says (403 insufficient_scope).
            _ if r.path == "/oauth2/userinfo" => assert_eq!(status, 403, "{} {}", r.method, r.path),
            _ => assert!(
                status != 401 && status != 403 && status != 500,
                "{} {} -> {status}",
                r.method,
                r.path
            ),
        }
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_manages_users_with_paging_search_and_sorting() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        let a = admin(&s).await;
        for i in 0..12 {
            let res = s
                .call(M::POST, "/admin/users", Bearer(&a.access), Json(json!({"username": format!("member{i:02}"), "email": format!("m{i}@corp.example.com"), "password": PASSWORD, "roles": if i % 2 == 0 { json!(["viewer"]) } else { json!([]) }})))
                .await;
            assert_eq!(res.status, 201);
            let body: Value = res.json();
            assert_eq!(body["roles"], if i % 2 == 0 { json!(["viewer"]) } else { json!([]) });
        }
        let bad = s
            .call(
                M::POST,
                "/admin/users",
                Bearer(&a.access),
                Json(json!({"username": "r", "email": "r@example.com", "password": PASSWORD})),
            )
            .await;
        expect_problem(bad, 422);
        let unknown_role = s.call(M::POST, "/admin/users", Bearer(&a.access), Json(json!({"username": "rolly", "email": "rolly@example.com", "password": PASSWORD, "roles": ["wizard"]}))).await;
        expect_problem(unknown_role, 422);
        assert!(
            s.service.store().user_by_login("rolly").await.unwrap().is_none(),
            "nothing half-created"
        );

        let page: Value = s
            .get_auth("/admin/users?limit=5&offset=0&sort=username", &a.access)
            .await
            .json();
        assert_eq!(page["total"], 13);
        let names: Vec<&str> = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["username"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["admin", "member00", "member01", "member02", "member03"]);
        let page2: Value = s
            .get_auth("/admin/users?limit=5&offset=5&sort=username", &a.access)
            .await
            .json();
        assert_eq!(page2["items"][0]["username"], "member04");
        let desc: Value = s
            .get_auth("/admin/users?limit=2&sort=-username", &a.access)
            .await
            .json();
        assert_eq!(desc["items"][0]["username"], "member11");
        let found: Value = s.get_auth("/admin/users?q=M1", &a.access).await.json();
        assert_eq!(found["total"], 3, "m1@, m10@, m11@: {found}");
        let none: Value = s.get_auth("/admin/users?q=%25", &a.access).await.json();
        assert_eq!(none["total"], 0, "LIKE wildcards are literal");
        for q in ["limit=0", "limit=501", "offset=-1", "sort=password_hash", "limit=abc"] {
            expect_problem(s.get_auth(&format!("/admin/users?{q}"), &a.access).await, 422);
        }

        // Get, update, disable/enable, set password, delete.
        let target = s.service.store().user_by_login("member03").await.unwrap().unwrap().id;
        let path = format!("/admin/users/{target}");
        let got: Value = s.get_auth(&path, &a.access).await.json();
        assert_eq!(got["username"], "member03");
        let res = s
            .call(
                M::PATCH,
                &path,
                Bearer(&a.access),
                Json(json!({"email": "m03@new.example.com", "full_name": "Member Three"})),
            )
            .await;
        assert_eq!(res.json()["email"], "m03@new.example.com");
        let dup = s
            .call(
                M::PATCH,
                &path,
                Bearer(&a.access),
                Json(json!({"email": "m4@corp.example.com"})),
            )
            .await;
        expect_problem(dup, 409);
        let t = s.login_as("member03", PASSWORD).await;
        assert_eq!(
            s.call(M::POST, &format!("{path}/disable"), Bearer(&a.access), Empty)
                .await
                .status,
            200
        );
        expect_invalid_token(s.get_auth("/auth/me", &t.access).await);
        expect_problem(s.login("member03", PASSWORD).await, 401);
        assert_eq!(
            s.call(M::POST, &format!("{path}/enable"), Bearer(&a.access), Empty)
                .await
                .status,
            200
        );
        let t = s.login_as("member03", PASSWORD).await;
        let sessions: Value = s.get_auth(&format!("{path}/sessions"), &a.access).await.json();
        assert_eq!(sessions.as_array().unwrap().len(), 1);
        let res = s
            .call(
                M::PUT,
                &format!("{path}/password"),
                Bearer(&a.access),
                Json(json!({"password": "a brand new pass phrase 7"})),
            )
            .await;
        assert_eq!(res.status, 204);
        expect_invalid_token(s.get_auth("/auth/me", &t.access).await);
        s.login_as("member03", "a brand new pass phrase 7").await;
        assert_eq!(
            s.call(M::POST, &format!("{path}/unlock"), Bearer(&a.access), Empty)
                .await
                .status,
            204
        );
        assert_eq!(s.call(M::DELETE, &path, Bearer(&a.access), Empty).await.status, 204);
        expect_problem(s.get_auth(&path, &a.access).await, 404);
        expect_problem(s.call(M::DELETE, &path, Bearer(&a.access), Empty).await, 404);
        expect_problem(s.get_auth("/admin/users/not-a-uuid", &a.access).await, 422);
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_administrator_is_protected() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        let a = admin(&s).await;
        let root = a.user_id();
        for (method, path) in [
            (M::DELETE, format!("/admin/users/{root}")),
            (M::POST, format!("/admin/users/{root}/disable")),
        ] {
            let p = expect_problem(s.call(method, &path, Bearer(&a.access), Empty).await, 409);
            assert!(p["detail"].as_str().unwrap().contains("administrator"), "{p}");
        }
        // Still a superuser without the role, so removing the role is fine; then
        // dropping superuser too would leave nobody.
        let res = s
            .call(
                M::PATCH,
                &format!("/admin/users/{root}"),
                Bearer(&a.access),
                Json(json!({"is_superuser": false})),
            )
            .await;
        assert_eq!(res.status, 200, "admin role remains");
        expect_problem(
            s.call(
                M::DELETE,
                &format!("/admin/users/{root}/roles/admin"),
                Bearer(&a.access),
                Empty,
            )
            .await,
            409,
        );
        expect_problem(
            s.call(M::DELETE, "/admin/roles/admin", Bearer(&a.access), Empty).await,
            409,
        );
        assert_eq!(s.service.store().count_admins().await.unwrap(), 1);

        // Two admins disabled concurrently: exactly one succeeds.
        let mut ids = Vec::new();
        for name in ["second", "third"] {
            let res = s.call(M::POST, "/admin/users", Bearer(&a.access), Json(json!({"username": name, "email": format!("{name}@example.com"), "password": PASSWORD, "roles": ["admin"]}))).await;
            ids.push(res.json()["user_id"].as_str().unwrap().to_string());
        }
        assert_eq!(
            s.call(
                M::DELETE,
                &format!("/admin/users/{root}/roles/admin"),
                Bearer(&a.access),
                Empty
            )
            .await
            .status,
            204
        );
        // Root acts: its token still carries its old grants, and root is not one of the
        // two being disabled (a caller disabling itself would end its own session).
        let (p1, p2) = (
            format!("/admin/users/{}/disable", ids[0]),
            format!("/admin/users/{}/disable", ids[1]),
        );
        let (r1, r2) = tokio::join!(
            s.call(M::POST, &p1, Bearer(&a.access), Empty),
            s.call(M::POST, &p2, Bearer(&a.access), Empty)
        );
        let (s1, s2) = (r1.status, r2.status);
        let bodies = format!("{} / {}", r1.text, r2.text);
        let mut statuses = [s1, s2];
        statuses.sort();
        assert_eq!(statuses, [200, 409], "{backend:?}: {bodies}");
        assert_eq!(s.service.store().count_admins().await.unwrap(), 1);
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_roles_permissions_and_superusers() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        let a = admin(&s).await;
        let u = s.user("agent").await;
        let as_admin =
            |method: M, path: &'static str, body: Body<'static>| s.call(method, path, Bearer(&a.access), body);
        let perm = as_admin(
            M::POST,
            "/admin/permissions",
            Json(json!({"name": "call_management", "description": "Handle calls"})),
        )
        .await;
        assert_eq!(perm.status, 201);
        expect_problem(
            as_admin(M::POST, "/admin/permissions", Json(json!({"name": "call_management"}))).await,
            409,
        );
        expect_problem(
            as_admin(M::POST, "/admin/permissions", Json(json!({"name": "Bad Name"}))).await,
            422,
        );
        let role = as_admin(M::POST, "/admin/roles", Json(json!({"name": "support", "description": "Support desk", "permissions": ["call_management", "projects:read"]})))
            .await;
        assert_eq!(role.status, 201);
        expect_problem(
            as_admin(M::POST, "/admin/roles", Json(json!({"name": "support"}))).await,
            409,
        );
        let unknown = as_admin(
            M::POST,
            "/admin/roles",
            Json(json!({"name": "ghosts", "permissions": ["no:such"]})),
        )
        .await;
        expect_problem(unknown, 422);
        expect_problem(s.get_auth("/admin/roles/ghosts", &a.access).await, 404);

        s.call(
            M::POST,
            &format!("/admin/users/{}/roles", u.user_id()),
            Bearer(&a.access),
            Json(json!({"role": "support"})),
        )
        .await;
        let t = s.login_as("agent", PASSWORD).await;
        let perms = jwt_part(&t.access, 1)["permissions"].clone();
        assert_eq!(perms, json!(["call_management", "projects:read"]));
        // Grant and revoke single permissions; replace the set.
        assert_eq!(
            as_admin(
                M::POST,
                "/admin/roles/support/permissions",
                Json(json!({"permission": "billing_access"}))
            )
            .await
            .status,
            404
        );
        as_admin(M::POST, "/admin/permissions", Json(json!({"name": "billing_access"}))).await;
        assert_eq!(
            as_admin(
                M::POST,
                "/admin/roles/support/permissions",
                Json(json!({"permission": "billing_access"}))
            )
            .await
            .status,
            204
        );
        assert_eq!(
            as_admin(M::DELETE, "/admin/roles/support/permissions/projects:read", Empty)
                .await
                .status,
            204
        );
        let t = s.login_as("agent", PASSWORD).await;
        assert_eq!(
            jwt_part(&t.access, 1)["permissions"],
            json!(["billing_access", "call_management"])
        );
        let res = as_admin(
            M::PATCH,
            "/admin/roles/support",
            Json(json!({"permissions": ["call_management"], "description": "Calls only"})),
        )
        .await;
        assert_eq!(res.json()["permissions"], json!(["call_management"]));
        // Deleting a permission removes it from roles.
        assert_eq!(
            as_admin(M::DELETE, "/admin/permissions/call_management", Empty)
                .await
                .status,
            204
        );
        let role: Value = s.get_auth("/admin/roles/support", &a.access).await.json();
        assert_eq!(role["permissions"], json!([]));
        assert_eq!(as_admin(M::DELETE, "/admin/roles/support", Empty).await.status, 204);
        let me: Value = s
            .get_auth(&format!("/admin/users/{}", u.user_id()), &a.access)
            .await
            .json();
        assert_eq!(me["roles"], json!([]));

        // A superuser holds permissions created after their token was issued.
        as_admin(M::POST, "/admin/permissions", Json(json!({"name": "late_feature"}))).await;
        let res = as_admin(M::POST, "/auth/check", Json(json!({"permission": "late_feature"}))).await;
        assert_eq!(res.json()["allowed"], true);
        let res = s
            .call(
                M::POST,
                "/auth/check",
                Bearer(&t.access),
                Json(json!({"permission": "late_feature"})),
            )
            .await;
        assert_eq!(res.json()["allowed"], false);
        // Only superusers may mint superusers.
        let manager = as_admin(M::POST, "/admin/users", Json(json!({"username": "manager", "email": "manager@example.com", "password": PASSWORD, "roles": ["admin"]})))
            .await;
        assert_eq!(manager.status, 201);
        let m = s.login_as("manager", PASSWORD).await;
        let res = s.call(M::POST, "/admin/users", Bearer(&m.access), Json(json!({"username": "sneaky", "email": "sneaky@example.com", "password": PASSWORD, "is_superuser": true}))).await;
        expect_problem(res, 403);
        s.stop().await;
    }
}

/// The service API mirrors what teams already call: assign_role, grant_permission,
/// user_permissions, has_permission.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_service_api() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        let u = s.user("api").await;
        let id = u.user_id();
        let svc = &s.service;
        assert!(!svc.has_permission(id, "projects:delete").await.unwrap());
        svc.assign_role(id, "analyst", &Actor::system()).await.unwrap();
        assert!(svc.has_permission(id, "projects:create").await.unwrap());
        assert!(!svc.has_permission(id, "projects:delete").await.unwrap());
        svc.grant_permission("analyst", "projects:delete", &Actor::system())
            .await
            .unwrap();
        assert!(svc.has_permission(id, "projects:delete").await.unwrap());
        assert!(
            svc.user_permissions(id)
                .await
                .unwrap()
                .contains(&"projects:delete".to_string())
        );
        assert!(svc.assign_role(id, "no-such-role", &Actor::system()).await.is_err());
        svc.set_user_active(id, false, &Actor::system()).await.unwrap();
        assert!(
            !svc.has_permission(id, "projects:create").await.unwrap(),
            "disabled users hold nothing"
        );
        s.stop().await;
    }
}

/// A service embedding Portcullis guards its own axum routes with the same checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guards_work_on_an_embedding_services_routes() {
    let (s, _db) = TestServer::start(Backend::Sqlite).await;
    let svc = s.service.clone();
    let app = Router::new()
        .route(
            "/projects",
            post(|Caller(c): Caller| async move { format!("created by {}", c.username) })
                .layer(require_permission(&svc, "projects:create")),
        )
        .route(
            "/admin-only",
            get(|| async { "hello admin" }).layer(require_role(&svc, "admin")),
        )
        .route(
            "/me",
            get(|Caller(c): Caller| async move { c.username.clone() }).layer(require_authenticated(&svc)),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let app = Http::new(base);
    let u = s.user("builder").await;
    let a = admin(&s).await;
    assert_eq!(app.call(M::POST, "/projects", Anonymous, Empty).await.status, 401);
    assert_eq!(
        app.call(M::POST, "/projects", Bearer(&u.access), Empty).await.status,
        403
    );
    let ok = app.call(M::POST, "/projects", Bearer(&a.access), Empty).await;
    assert_eq!(ok.text, "created by admin");
    assert_eq!(
        app.call(M::GET, "/admin-only", Bearer(&u.access), Empty).await.status,
        403
    );
    assert_eq!(
        app.call(M::GET, "/admin-only", Bearer(&a.access), Empty).await.status,
        200
    );
    assert_eq!(app.call(M::GET, "/me", Bearer(&u.access), Empty).await.text, "builder");
    s.stop().await;
}
