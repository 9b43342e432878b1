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

fn user_id(t: &Tokens) -> String {
    jwt_part(&t.access, 1)["sub"].as_str().unwrap().to_string()
}

impl TestServer {
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut req = self.client.request(method, self.url(path)).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.expect("request")
    }
}

use reqwest::Method as M;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_roles_permissions_and_401_vs_403() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        let a = admin(&s).await;
        let roles: Value = s.get_auth("/admin/roles", &a.access).await.json().await.unwrap();
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
        let viewer: Value = s.get_auth("/admin/roles/viewer", &a.access).await.json().await.unwrap();
        assert!(
            viewer["permissions"]
                .as_array()
                .unwrap()
                .iter()
                .all(|p| p.as_str().unwrap().ends_with(":read"))
        );
        let perms: Value = s.get_auth("/admin/permissions", &a.access).await.json().await.unwrap();
        assert_eq!(
            perms.as_array().unwrap().len(),
            20,
            "18 shipped plus tokens:introspect and audit:write"
        );

        // A plain user: 403 naming the permission; anonymous: 401.
        let u = s.user("plain").await;
        let p = expect_problem(s.get_auth("/admin/users", &u.access).await, 403).await;
        assert!(p["detail"].as_str().unwrap().contains("users:read"), "{p}");
        expect_problem(s.client.get(s.url("/admin/users")).send().await.unwrap(), 401).await;

        // A role change reaches the next refresh, not the current token.
        let res = s
            .send(
                M::POST,
                &format!("/admin/users/{}/roles", user_id(&u)),
                &a.access,
                Some(json!({"role": "analyst"})),
            )
            .await;
        assert_eq!(res.status(), 204);
        let check = |token: String, perm: &'static str| {
            let s = &s;
            async move {
                let res = s
                    .send(M::POST, "/auth/check", &token, Some(json!({"permission": perm})))
                    .await;
                res.json::<Value>().await.unwrap()["allowed"].as_bool().unwrap()
            }
        };
        assert!(!check(u.access.clone(), "projects:create").await);
        let refreshed = Tokens::from(s.refresh(&u.refresh).await.json::<Value>().await.unwrap());
        assert!(check(refreshed.access.clone(), "projects:create").await);
        assert!(!check(refreshed.access.clone(), "users:manage").await);
        let mine: Value = s
            .get_auth("/auth/me/permissions", &refreshed.access)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(mine["roles"], json!(["analyst"]));
        let effective: Value = s
            .get_auth(&format!("/admin/users/{}/permissions", user_id(&u)), &a.access)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(effective["permissions"], mine["permissions"]);
        // Ending the user's sessions takes effect at once.
        let res = s
            .send(
                M::POST,
                &format!("/admin/users/{}/sessions/revoke", user_id(&u)),
                &a.access,
                None,
            )
            .await;
        assert_eq!(res.json::<Value>().await.unwrap()["revoked"], 1);
        expect_invalid_token(s.get_auth("/auth/me", &refreshed.access).await).await;
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
        let res = s.send(r.method.clone(), &path, &u.access, Some(json!({}))).await;
        let status = res.status().as_u16();
        match r.access {
            portcullis::http::Access::Permission(p) => {
                let body = expect_problem(res, 403).await;
                assert!(body["detail"].as_str().unwrap().contains(p), "{} {}", r.method, r.path);
            }
            portcullis::http::Access::Role(_) => assert_eq!(status, 403),
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
                .send(
                    M::POST,
                    "/admin/users",
                    &a.access,
                    Some(json!({"username": format!("member{i:02}"), "email": format!("m{i}@corp.example.com"), "password": PASSWORD, "roles": if i % 2 == 0 { json!(["viewer"]) } else { json!([]) }})),
                )
                .await;
            assert_eq!(res.status(), 201);
            let body: Value = res.json().await.unwrap();
            assert_eq!(body["roles"], if i % 2 == 0 { json!(["viewer"]) } else { json!([]) });
        }
        let bad = s
            .send(
                M::POST,
                "/admin/users",
                &a.access,
                Some(json!({"username": "r", "email": "r@example.com", "password": PASSWORD})),
            )
            .await;
        expect_problem(bad, 422).await;
        let unknown_role = s.send(M::POST, "/admin/users", &a.access, Some(json!({"username": "rolly", "email": "rolly@example.com", "password": PASSWORD, "roles": ["wizard"]}))).await;
        expect_problem(unknown_role, 422).await;
        assert!(
            s.service.store().user_by_login("rolly").await.unwrap().is_none(),
            "nothing half-created"
        );

        let page: Value = s
            .get_auth("/admin/users?limit=5&offset=0&sort=username", &a.access)
            .await
            .json()
            .await
            .unwrap();
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
            .json()
            .await
            .unwrap();
        assert_eq!(page2["items"][0]["username"], "member04");
        let desc: Value = s
            .get_auth("/admin/users?limit=2&sort=-username", &a.access)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(desc["items"][0]["username"], "member11");
        let found: Value = s.get_auth("/admin/users?q=M1", &a.access).await.json().await.unwrap();
        assert_eq!(found["total"], 3, "m1@, m10@, m11@: {found}");
        let none: Value = s.get_auth("/admin/users?q=%25", &a.access).await.json().await.unwrap();
        assert_eq!(none["total"], 0, "LIKE wildcards are literal");
        for q in ["limit=0", "limit=501", "offset=-1", "sort=password_hash", "limit=abc"] {
            expect_problem(s.get_auth(&format!("/admin/users?{q}"), &a.access).await, 422).await;
        }

        // Get, update, disable/enable, set password, delete.
        let target = s.service.store().user_by_login("member03").await.unwrap().unwrap().id;
        let path = format!("/admin/users/{target}");
        let got: Value = s.get_auth(&path, &a.access).await.json().await.unwrap();
        assert_eq!(got["username"], "member03");
        let res = s
            .send(
                M::PATCH,
                &path,
                &a.access,
                Some(json!({"email": "m03@new.example.com", "full_name": "Member Three"})),
            )
            .await;
        assert_eq!(res.json::<Value>().await.unwrap()["email"], "m03@new.example.com");
        let dup = s
            .send(
                M::PATCH,
                &path,
                &a.access,
                Some(json!({"email": "m4@corp.example.com"})),
            )
            .await;
        expect_problem(dup, 409).await;
        let t = s.login_as("member03", PASSWORD).await;
        assert_eq!(
            s.send(M::POST, &format!("{path}/disable"), &a.access, None)
                .await
                .status(),
            200
        );
        expect_invalid_token(s.get_auth("/auth/me", &t.access).await).await;
        expect_problem(
            s.post_json("/auth/login", &json!({"username": "member03", "password": PASSWORD}))
                .await,
            401,
        )
        .await;
        assert_eq!(
            s.send(M::POST, &format!("{path}/enable"), &a.access, None)
                .await
                .status(),
            200
        );
        let t = s.login_as("member03", PASSWORD).await;
        let sessions: Value = s
            .get_auth(&format!("{path}/sessions"), &a.access)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(sessions.as_array().unwrap().len(), 1);
        let res = s
            .send(
                M::PUT,
                &format!("{path}/password"),
                &a.access,
                Some(json!({"password": "a brand new pass phrase 7"})),
            )
            .await;
        assert_eq!(res.status(), 204);
        expect_invalid_token(s.get_auth("/auth/me", &t.access).await).await;
        s.login_as("member03", "a brand new pass phrase 7").await;
        assert_eq!(
            s.send(M::POST, &format!("{path}/unlock"), &a.access, None)
                .await
                .status(),
            204
        );
        assert_eq!(s.send(M::DELETE, &path, &a.access, None).await.status(), 204);
        expect_problem(s.get_auth(&path, &a.access).await, 404).await;
        expect_problem(s.send(M::DELETE, &path, &a.access, None).await, 404).await;
        expect_problem(s.get_auth("/admin/users/not-a-uuid", &a.access).await, 422).await;
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_administrator_is_protected() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        let a = admin(&s).await;
        let root = user_id(&a);
        for (method, path, body) in [
            (M::DELETE, format!("/admin/users/{root}"), None),
            (M::POST, format!("/admin/users/{root}/disable"), None),
        ] {
            let p = expect_problem(s.send(method, &path, &a.access, body).await, 409).await;
            assert!(p["detail"].as_str().unwrap().contains("administrator"), "{p}");
        }
        // Still a superuser without the role, so removing the role is fine; then
        // dropping superuser too would leave nobody.
        let res = s
            .send(
                M::PATCH,
                &format!("/admin/users/{root}"),
                &a.access,
                Some(json!({"is_superuser": false})),
            )
            .await;
        assert_eq!(res.status(), 200, "admin role remains");
        expect_problem(
            s.send(M::DELETE, &format!("/admin/users/{root}/roles/admin"), &a.access, None)
                .await,
            409,
        )
        .await;
        expect_problem(s.send(M::DELETE, "/admin/roles/admin", &a.access, None).await, 409).await;
        assert_eq!(s.service.store().count_admins().await.unwrap(), 1);

        // Two admins disabled concurrently: exactly one succeeds.
        let mut ids = Vec::new();
        for name in ["second", "third"] {
            let res = s.send(M::POST, "/admin/users", &a.access, Some(json!({"username": name, "email": format!("{name}@example.com"), "password": PASSWORD, "roles": ["admin"]}))).await;
            ids.push(
                res.json::<Value>().await.unwrap()["user_id"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
        }
        assert_eq!(
            s.send(M::DELETE, &format!("/admin/users/{root}/roles/admin"), &a.access, None)
                .await
                .status(),
            204
        );
        // Root acts: its token still carries its old grants, and root is not one of the
        // two being disabled (a caller disabling itself would end its own session).
        let (p1, p2) = (
            format!("/admin/users/{}/disable", ids[0]),
            format!("/admin/users/{}/disable", ids[1]),
        );
        let (r1, r2) = tokio::join!(
            s.send(M::POST, &p1, &a.access, None),
            s.send(M::POST, &p2, &a.access, None)
        );
        let (s1, s2) = (r1.status().as_u16(), r2.status().as_u16());
        let bodies = format!(
            "{} / {}",
            r1.text().await.unwrap_or_default(),
            r2.text().await.unwrap_or_default()
        );
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
        let perm = s
            .send(
                M::POST,
                "/admin/permissions",
                &a.access,
                Some(json!({"name": "call_management", "description": "Handle calls"})),
            )
            .await;
        assert_eq!(perm.status(), 201);
        expect_problem(
            s.send(
                M::POST,
                "/admin/permissions",
                &a.access,
                Some(json!({"name": "call_management"})),
            )
            .await,
            409,
        )
        .await;
        expect_problem(
            s.send(
                M::POST,
                "/admin/permissions",
                &a.access,
                Some(json!({"name": "Bad Name"})),
            )
            .await,
            422,
        )
        .await;
        let role = s
            .send(M::POST, "/admin/roles", &a.access, Some(json!({"name": "support", "description": "Support desk", "permissions": ["call_management", "projects:read"]})))
            .await;
        assert_eq!(role.status(), 201);
        expect_problem(
            s.send(M::POST, "/admin/roles", &a.access, Some(json!({"name": "support"})))
                .await,
            409,
        )
        .await;
        let unknown = s
            .send(
                M::POST,
                "/admin/roles",
                &a.access,
                Some(json!({"name": "ghosts", "permissions": ["no:such"]})),
            )
            .await;
        expect_problem(unknown, 422).await;
        expect_problem(s.get_auth("/admin/roles/ghosts", &a.access).await, 404).await;

        s.send(
            M::POST,
            &format!("/admin/users/{}/roles", user_id(&u)),
            &a.access,
            Some(json!({"role": "support"})),
        )
        .await;
        let t = s.login_as("agent", PASSWORD).await;
        let perms = jwt_part(&t.access, 1)["permissions"].clone();
        assert_eq!(perms, json!(["call_management", "projects:read"]));
        // Grant and revoke single permissions; replace the set.
        assert_eq!(
            s.send(
                M::POST,
                "/admin/roles/support/permissions",
                &a.access,
                Some(json!({"permission": "billing_access"}))
            )
            .await
            .status(),
            404
        );
        s.send(
            M::POST,
            "/admin/permissions",
            &a.access,
            Some(json!({"name": "billing_access"})),
        )
        .await;
        assert_eq!(
            s.send(
                M::POST,
                "/admin/roles/support/permissions",
                &a.access,
                Some(json!({"permission": "billing_access"}))
            )
            .await
            .status(),
            204
        );
        assert_eq!(
            s.send(
                M::DELETE,
                "/admin/roles/support/permissions/projects:read",
                &a.access,
                None
            )
            .await
            .status(),
            204
        );
        let t = s.login_as("agent", PASSWORD).await;
        assert_eq!(
            jwt_part(&t.access, 1)["permissions"],
            json!(["billing_access", "call_management"])
        );
        let res = s
            .send(
                M::PATCH,
                "/admin/roles/support",
                &a.access,
                Some(json!({"permissions": ["call_management"], "description": "Calls only"})),
            )
            .await;
        assert_eq!(
            res.json::<Value>().await.unwrap()["permissions"],
            json!(["call_management"])
        );
        // Deleting a permission removes it from roles.
        assert_eq!(
            s.send(M::DELETE, "/admin/permissions/call_management", &a.access, None)
                .await
                .status(),
            204
        );
        let role: Value = s
            .get_auth("/admin/roles/support", &a.access)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(role["permissions"], json!([]));
        assert_eq!(
            s.send(M::DELETE, "/admin/roles/support", &a.access, None)
                .await
                .status(),
            204
        );
        let me: Value = s
            .get_auth(&format!("/admin/users/{}", user_id(&u)), &a.access)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(me["roles"], json!([]));

        // A superuser holds permissions created after their token was issued.
        s.send(
            M::POST,
            "/admin/permissions",
            &a.access,
            Some(json!({"name": "late_feature"})),
        )
        .await;
        let res = s
            .send(
                M::POST,
                "/auth/check",
                &a.access,
                Some(json!({"permission": "late_feature"})),
            )
            .await;
        assert_eq!(res.json::<Value>().await.unwrap()["allowed"], true);
        let res = s
            .send(
                M::POST,
                "/auth/check",
                &t.access,
                Some(json!({"permission": "late_feature"})),
            )
            .await;
        assert_eq!(res.json::<Value>().await.unwrap()["allowed"], false);
        // Only superusers may mint superusers.
        let manager = s
            .send(M::POST, "/admin/users", &a.access, Some(json!({"username": "manager", "email": "manager@example.com", "password": PASSWORD, "roles": ["admin"]})))
            .await;
        assert_eq!(manager.status(), 201);
        let m = s.login_as("manager", PASSWORD).await;
        let res = s.send(M::POST, "/admin/users", &m.access, Some(json!({"username": "sneaky", "email": "sneaky@example.com", "password": PASSWORD, "is_superuser": true}))).await;
        expect_problem(res, 403).await;
        s.stop().await;
    }
}

/// The service API mirrors what teams already call: assign_role, grant_permission,
/// get_user_permissions, has_permission.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_service_api() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        let u = s.user("api").await;
        let id = uuid::Uuid::parse_str(&user_id(&u)).unwrap();
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
            svc.get_user_permissions(id)
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
    let client = reqwest::Client::new();
    let u = s.user("builder").await;
    let a = admin(&s).await;
    assert_eq!(
        client.post(format!("{base}/projects")).send().await.unwrap().status(),
        401
    );
    assert_eq!(
        client
            .post(format!("{base}/projects"))
            .bearer_auth(&u.access)
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    let ok = client
        .post(format!("{base}/projects"))
        .bearer_auth(&a.access)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.text().await.unwrap(), "created by admin");
    assert_eq!(
        client
            .get(format!("{base}/admin-only"))
            .bearer_auth(&u.access)
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        client
            .get(format!("{base}/admin-only"))
            .bearer_auth(&a.access)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        client
            .get(format!("{base}/me"))
            .bearer_auth(&u.access)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "builder"
    );
    s.stop().await;
}
