//! API keys, temporary tokens, forward auth, introspection and revocation, on both
//! backends, and revocation reaching another instance within a second.

use portcullis::domain::Actor;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

impl TestServer {
    async fn create_key(&self, t: &Tokens, body: Value) -> Reply {
        self.call(M::POST, "/auth/api-keys", Bearer(&t.access), Json(body))
            .await
    }

    /// A temporary token `t`'s owner creates with `body`: the answer's JSON.
    async fn create_temporary(&self, t: &Tokens, body: Value) -> Value {
        self.call(M::POST, "/auth/temporary-tokens", Bearer(&t.access), Json(body))
            .await
            .json()
    }

    /// The gateway check of `credential`, presented as a bearer token, optionally for
    /// a named permission.
    async fn verify(&self, credential: &str, permission: Option<&str>) -> Reply {
        let named: Vec<(&str, &str)> = permission.map(|p| ("x-required-permission", p)).into_iter().collect();
        self.verify_with(credential, &named).await
    }

    /// The gateway check of `credential`, with what the gateway forwards in `headers`.
    async fn verify_with(&self, credential: &str, headers: &[(&str, &str)]) -> Reply {
        self.http
            .call_with(M::GET, "/auth/verify", Bearer(credential), Empty, headers)
            .await
    }

    /// RFC 7662: what the holder of `caller` learns of `token`.
    async fn introspect(&self, caller: &str, token: &str) -> Reply {
        let form = [("token", token), ("token_type_hint", "access_token")];
        self.call(M::POST, "/auth/introspect", Bearer(caller), Form(&form))
            .await
    }

    /// RFC 7009: `token` revoked by presenting it.
    async fn revoke(&self, token: &str) -> Reply {
        self.call(M::POST, "/auth/revoke", Anonymous, Form(&[("token", token)]))
            .await
    }

    /// A user holding `role`, logged in.
    pub async fn user_with_role(&self, name: &str, role: &str) -> Tokens {
        self.register(name).await;
        let id = self.service.store().user_by_login(name).await.unwrap().unwrap().id;
        self.service.assign_role(id, role, &Actor::system()).await.unwrap();
        self.login_as(name, PASSWORD).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_are_scoped_revocable_and_stored_hashed() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        let owner = s.user_with_role("keyholder", "analyst").await;
        let res = s
            .create_key(
                &owner,
                json!({"name": "ci", "permissions": ["projects:read", "projects:create"]}),
            )
            .await;
        assert_eq!(res.status, 201);
        let created: Value = res.json();
        let key = created["key"].as_str().unwrap().to_string();
        let id = created["id"].as_str().unwrap().to_string();
        let (prefix, rest) = key.split_at(4);
        assert_eq!(prefix, "pcx_");
        let (kid, secret) = rest.split_once('_').unwrap();
        assert_eq!(kid, id);
        assert!(kid.len() == 16 && secret.len() == 43);
        let stored = s.service.store().api_key(&id).await.unwrap().unwrap();
        assert_eq!(
            stored.secret_hash,
            portcullis::crypto::tokens::digest(secret).to_vec(),
            "only the digest is kept"
        );

        // Refused requests create nothing.
        for (body, status) in [
            (json!({"name": "x", "permissions": ["users:manage"]}), 403),
            (json!({"name": "x", "permissions": ["no:such"]}), 422),
            (json!({"name": "", "permissions": []}), 422),
            (json!({"name": "x", "expires_at": "2001-01-01T00:00:00Z"}), 422),
            (json!({"permissions": []}), 422),
        ] {
            expect_problem(s.create_key(&owner, body).await, status);
        }
        let listed: Value = s.get_auth("/auth/api-keys", &owner.access).await.json();
        assert_eq!(listed.as_array().unwrap().len(), 1);
        assert!(!listed.to_string().contains(secret), "listing never shows the secret");

        // Both headers work; the key acts as its owner with its own permissions.
        let res = s.call(M::GET, "/auth/verify", ApiKey(&key), Empty).await;
        assert_eq!(res.status, 200);
        assert_eq!(res.headers["x-auth-credential"], "api_key");
        assert_eq!(res.headers["x-auth-username"], "keyholder");
        assert_eq!(res.headers["x-auth-permissions"], "projects:read,projects:create");
        assert_eq!(s.verify(&key, Some("projects:create")).await.status, 200);
        expect_problem(s.verify(&key, Some("runs:create")).await, 403);
        let me: Value = s.call(M::GET, "/auth/me", ApiKey(&key), Empty).await.json();
        assert_eq!(me["username"], "keyholder");
        assert!(me["session_id"].is_null());
        // Keys cannot mint credentials.
        let res = s
            .call(M::POST, "/auth/api-keys", ApiKey(&key), Json(json!({"name": "child"})))
            .await;
        expect_problem(res, 403);

        // Intersection with the owner's current permissions, effective at once.
        s.service
            .remove_role(owner.user_id(), "analyst", &Actor::system())
            .await
            .unwrap();
        expect_problem(s.verify(&key, Some("projects:read")).await, 403);
        s.service
            .assign_role(owner.user_id(), "viewer", &Actor::system())
            .await
            .unwrap();
        assert_eq!(s.verify(&key, Some("projects:read")).await.status, 200);
        expect_problem(s.verify(&key, Some("projects:create")).await, 403);
        s.service
            .grant_permission("viewer", "projects:create", &Actor::system())
            .await
            .unwrap();
        assert_eq!(
            s.verify(&key, Some("projects:create")).await.status,
            200,
            "role changes reach keys"
        );

        // A disabled owner disables their keys.
        s.service
            .set_user_active(owner.user_id(), false, &Actor::system())
            .await
            .unwrap();
        expect_invalid_token(s.verify(&key, None).await);
        s.service
            .set_user_active(owner.user_id(), true, &Actor::system())
            .await
            .unwrap();
        assert_eq!(s.verify(&key, None).await.status, 200);
        expect_invalid_token(s.get_auth("/auth/me", &owner.access).await);
        let owner = s.login_as("keyholder", PASSWORD).await;

        // last_used_at is written in batches.
        s.service.flush_key_usage().await.unwrap();
        let got: Value = s.get_auth(&format!("/auth/api-keys/{id}"), &owner.access).await.json();
        assert!(got["last_used_at"].is_string(), "{got}");

        // Others cannot see or revoke it; the owner and admins can revoke.
        let other = s.user("stranger").await;
        expect_problem(s.get_auth(&format!("/auth/api-keys/{id}"), &other.access).await, 404);
        let key_path = format!("/auth/api-keys/{id}");
        let by_other = s.call(M::DELETE, &key_path, Bearer(&other.access), Empty).await;
        expect_problem(by_other, 404);
        let delete = || s.call(M::DELETE, &key_path, Bearer(&owner.access), Empty);
        assert_eq!(delete().await.status, 204);
        expect_invalid_token(s.verify(&key, None).await);
        expect_problem(delete().await, 404);

        let second: Value = s.create_key(&owner, json!({"name": "second"})).await.json();
        let admin = s.login_as("admin", ADMIN_PASSWORD).await;
        let all: Value = s.get_auth("/admin/api-keys", &admin.access).await.json();
        assert_eq!(all.as_array().unwrap().len(), 2);
        expect_problem(s.get_auth("/admin/api-keys", &owner.access).await, 403);
        let res = s
            .call(
                M::DELETE,
                &format!("/admin/api-keys/{}", second["id"].as_str().unwrap()),
                Bearer(&admin.access),
                Empty,
            )
            .await;
        assert_eq!(res.status, 204);
        expect_invalid_token(s.verify(second["key"].as_str().unwrap(), None).await);

        // Expiry, and malformed keys.
        let expiring = (Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
        let short: Value = s
            .create_key(&owner, json!({"name": "short", "expires_at": expiring}))
            .await
            .json();
        let short_key = short["key"].as_str().unwrap().to_string();
        assert_eq!(s.verify(&short_key, None).await.status, 200);
        tokio::time::sleep(Duration::from_millis(2500)).await;
        expect_invalid_token(s.verify(&short_key, None).await);
        for bad in [
            "pcx_",
            "pcx_0123456789abcdef_short",
            &format!("pcx_{kid}_{}", "A".repeat(43)),
        ] {
            expect_invalid_token(s.verify(bad, None).await);
        }
        s.stop().await;
    }
}

use chrono::Utc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_tokens_expire_and_count_their_uses() {
    for backend in backends().await {
        let (s, db) = TestServer::start(backend).await;
        let other = TestServer::on(&db, &[("TEMPORARY_TOKEN_MAX_TTL_SECONDS", "600")]).await;
        let owner = s.user_with_role("linker", "viewer").await;
        let create = |body: Value| s.call(M::POST, "/auth/temporary-tokens", Bearer(&owner.access), Json(body));
        let res = create(json!({"permissions": ["reports:read"], "max_uses": 2, "purpose": "share a report"})).await;
        assert_eq!(res.status, 201);
        let t: Value = res.json();
        let token = t["token"].as_str().unwrap().to_string();
        assert!(token.starts_with("pct_") && token.len() == 47);
        assert_eq!(t["max_uses"], 2);
        let first = s.verify(&token, Some("reports:read")).await;
        assert_eq!(first.status, 200);
        assert_eq!(first.headers["x-auth-credential"], "temporary");
        expect_problem(s.verify(&token, Some("projects:read")).await, 403);
        expect_invalid_token(s.verify(&token, None).await);

        for (body, status) in [
            (json!({"permissions": ["users:manage"], "purpose": "x"}), 403),
            (json!({"permissions": [], "purpose": "x", "ttl_seconds": 7200}), 422),
            (json!({"permissions": [], "purpose": "x", "ttl_seconds": 0}), 422),
            (json!({"permissions": [], "purpose": "x", "max_uses": 0}), 422),
            (json!({"permissions": [], "purpose": ""}), 422),
        ] {
            expect_problem(create(body).await, status);
        }

        // Single use, fired concurrently at two instances: exactly one gets through.
        for _ in 0..3 {
            let single: Value = create(json!({"permissions": [], "max_uses": 1, "purpose": "once"}))
                .await
                .json();
            let token = single["token"].as_str().unwrap().to_string();
            let mut tasks = Vec::new();
            for i in 0..8 {
                let srv = if i % 2 == 0 { &s } else { &other };
                let (http, token) = (srv.http.clone(), token.clone());
                tasks.push(tokio::spawn(async move {
                    http.call(M::GET, "/auth/verify", Bearer(&token), Empty).await.status
                }));
            }
            let mut ok = 0;
            for task in tasks {
                if task.await.unwrap() == 200 {
                    ok += 1;
                }
            }
            assert_eq!(ok, 1, "{backend:?}");
        }

        let brief: Value = create(json!({"permissions": [], "ttl_seconds": 1, "purpose": "brief"}))
            .await
            .json();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        expect_invalid_token(s.verify(brief["token"].as_str().unwrap(), None).await);
        other.stop().await;
        s.stop().await;
    }
}

/// The check of a request `style`'s gateway forwards, the original method and
/// path in its headers.
async fn forwarded(s: &TestServer, cred: &str, method: &str, uri: &str, style: &str) -> Reply {
    let (mh, uh) = if style == "traefik" {
        ("x-forwarded-method", "x-forwarded-uri")
    } else {
        ("x-original-method", "x-original-uri")
    };
    s.verify_with(cred, &[(mh, method), (uh, uri)]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_applies_the_route_map_for_every_gateway_style() {
    let routes = [
        (
            "VERIFY_ROUTES",
            "GET /projects/** projects:read; POST /projects projects:create; * /admin/** users:manage",
        ),
        ("VERIFY_DEFAULT", "deny"),
    ];
    for backend in backends().await {
        let (s, _db) = TestServer::start_with(backend, &routes).await;
        let viewer = s.user_with_role("looker", "viewer").await;
        let analyst = s.user_with_role("maker", "analyst").await;
        let key: Value = s
            .create_key(&analyst, json!({"name": "gw", "permissions": ["projects:read"]}))
            .await
            .json();
        let key = key["key"].as_str().unwrap().to_string();
        for style in ["traefik", "nginx"] {
            let ok = forwarded(&s, &viewer.access, "GET", "/projects/42?expand=runs", style).await;
            assert_eq!(ok.status, 200, "{style}");
            assert_eq!(ok.headers["x-auth-roles"], "viewer");
            assert_eq!(ok.headers["x-auth-credential"], "jwt");
            assert_eq!(ok.headers["x-auth-user-id"], viewer.user_id().to_string().as_str());
            let body: Value = ok.json();
            assert_eq!(body["user_id"], viewer.user_id().to_string().as_str());
            assert_eq!(body["username"], "looker");
            assert_eq!(
                (&body["roles"], &body["credential"]),
                (&json!(["viewer"]), &json!("jwt"))
            );
            assert!(body["permissions"].as_array().is_some_and(|p| !p.is_empty()), "{body}");
            let p = expect_problem(forwarded(&s, &viewer.access, "POST", "/projects", style).await, 403);
            assert!(p["detail"].as_str().unwrap().contains("projects:create"));
            assert_eq!(
                forwarded(&s, &analyst.access, "POST", "/projects", style).await.status,
                200
            );
            expect_problem(
                forwarded(&s, &analyst.access, "DELETE", "/admin/users/1", style).await,
                403,
            );
            expect_problem(forwarded(&s, &analyst.access, "GET", "/unmapped", style).await, 403);
            assert_eq!(forwarded(&s, &key, "GET", "/projects", style).await.status, 200);
            expect_problem(forwarded(&s, &key, "POST", "/projects", style).await, 403);
        }
        // Envoy: the original method and path arrive under the prefix.
        let viewer_at = |method: M, path: &'static str| s.call(method, path, Bearer(&viewer.access), Empty);
        assert_eq!(viewer_at(M::GET, "/auth/verify/projects/7").await.status, 200);
        expect_problem(viewer_at(M::POST, "/auth/verify/projects").await, 403);
        let res = s
            .call(M::POST, "/auth/verify/projects", Bearer(&analyst.access), Empty)
            .await;
        assert_eq!(res.status, 200);
        // A permission the gateway names in the query needs no route rule; no credential
        // is 401.
        let res = s
            .call(
                M::GET,
                "/auth/verify?permission=runs:create",
                Bearer(&analyst.access),
                Empty,
            )
            .await;
        assert_eq!(res.status, 200);
        expect_problem(s.verify(&viewer.access, Some("runs:create")).await, 403);
        expect_problem(s.get("/auth/verify").await, 401);
        expect_invalid_token(s.verify("pct_notarealtokennotarealtokennotarealtokenxx", None).await);
        s.stop().await;
    }
}

/// What a client adds to the request its gateway forwards cannot pick the check: a
/// named permission only adds to the route map's, the two header families must agree,
/// an empty header hides nothing, and paths are matched as the backend decodes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_requests_cannot_choose_their_own_check() {
    let routes = "GET /projects/** projects:read; DELETE /projects/{id} projects:delete; * /admin/** users:manage";
    for default in ["allow", "deny"] {
        let settings = [("VERIFY_ROUTES", routes), ("VERIFY_DEFAULT", default)];
        let (s, _db) = TestServer::start_with(Backend::Sqlite, &settings).await;
        let viewer = s.user_with_role("looker", "viewer").await;
        // The baseline: the viewer may read projects, not delete them.
        let read = [("x-original-method", "GET"), ("x-original-uri", "/projects/7")];
        assert_eq!(s.verify_with(&viewer.access, &read).await.status, 200, "{default}");
        let delete = [("x-original-method", "DELETE"), ("x-original-uri", "/projects/7")];
        assert_eq!(s.verify_with(&viewer.access, &delete).await.status, 403, "{default}");
        // Naming a permission the viewer holds does not replace the map's.
        let named = [delete[0], delete[1], ("x-required-permission", "projects:read")];
        assert_eq!(
            s.verify_with(&viewer.access, &named).await.status,
            403,
            "{default}: named"
        );
        // Behind nginx (X-Original-*), the client's own X-Forwarded-* are refused.
        let mixed = [
            delete[0],
            delete[1],
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "/projects/7"),
        ];
        let p = expect_problem(s.verify_with(&viewer.access, &mixed).await, 403);
        assert!(p["detail"].as_str().unwrap().contains("different requests"), "{p}");
        // An empty header hides nothing.
        let hidden = [("x-forwarded-uri", ""), ("x-original-uri", "/admin/users")];
        assert_eq!(
            s.verify_with(&viewer.access, &hidden).await.status,
            403,
            "{default}: empty"
        );
        // Encoded, doubled or dotted paths are the paths the backend serves.
        for disguised in [
            "/%61dmin/users",
            "//admin/users",
            "/projects/../admin/users",
            "/projects/%2e%2e/admin",
        ] {
            let res = s.verify_with(&viewer.access, &[("x-original-uri", disguised)]).await;
            assert_eq!(res.status, 403, "{default}: {disguised}");
            let envoy = s
                .call(
                    M::GET,
                    &format!("/auth/verify{disguised}"),
                    Bearer(&viewer.access),
                    Empty,
                )
                .await;
            assert_eq!(envoy.status, 403, "{default}: envoy {disguised}");
        }
        let p = expect_problem(
            s.verify_with(&viewer.access, &[("x-original-uri", "/a/%ff")]).await,
            403,
        );
        assert!(p["detail"].as_str().unwrap().contains("does not decode"), "{p}");
        // No original request: allowed by default, refused under deny unless the
        // gateway names the permission in the query.
        let bare = s
            .verify_with(&viewer.access, &[("x-required-permission", "projects:read")])
            .await;
        assert_eq!(
            bare.status,
            if default == "allow" { 200 } else { 403 },
            "{default}: bare"
        );
        let res = s
            .call(
                M::GET,
                "/auth/verify?permission=projects:read",
                Bearer(&viewer.access),
                Empty,
            )
            .await;
        assert_eq!(res.status, 200, "{default}: the gateway's ?permission=");
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_and_revocation_cover_every_credential() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        let admin = s.login_as("admin", ADMIN_PASSWORD).await;
        let user = s.user_with_role("subject", "analyst").await;
        expect_problem(s.introspect(&user.access, &user.access).await, 403);
        // The answer is the token's own claims, also when it comes from the
        // verified-token cache (the second time).
        let claims = jwt_part(&user.access, 1);
        for _ in 0..2 {
            let info: Value = s.introspect(&admin.access, &user.access).await.json();
            assert_eq!(info["active"], true);
            assert_eq!(info["token_type"], "access_token");
            assert_eq!(info["sub"], user.user_id().to_string());
            assert_eq!(info["username"], "subject");
            assert!(info["scope"].as_str().unwrap().contains("projects:create"));
            for claim in ["iss", "aud", "jti", "iat", "exp", "sid"] {
                assert!(!info[claim].is_null(), "{claim}");
                assert_eq!(info[claim], claims[claim], "{claim}");
            }
        }
        let gone: Value = s.introspect(&admin.access, "garbage").await.json();
        assert_eq!(gone, json!({"active": false}));

        // A service's API key holding tokens:introspect may introspect.
        let svc: Value = s
            .create_key(
                &admin,
                json!({"name": "resource-server", "permissions": ["tokens:introspect"]}),
            )
            .await
            .json();
        let svc_key = svc["key"].as_str().unwrap().to_string();
        let key: Value = s
            .create_key(&user, json!({"name": "k", "permissions": ["projects:read"]}))
            .await
            .json();
        let key = key["key"].as_str().unwrap().to_string();
        let info: Value = s.introspect(&svc_key, &key).await.json();
        assert_eq!(info["active"], true);
        assert_eq!(info["token_type"], "api_key");
        assert_eq!(info["scope"], "projects:read");
        assert!(info["client_id"].is_string());

        let temp = s
            .create_temporary(
                &user,
                json!({"permissions": ["reports:read"], "max_uses": 1, "purpose": "introspect me"}),
            )
            .await;
        let temp = temp["token"].as_str().unwrap().to_string();
        for _ in 0..2 {
            let info: Value = s.introspect(&admin.access, &temp).await.json();
            assert_eq!(info["active"], true);
            assert_eq!(info["uses_left"], 1, "introspection does not spend uses");
            assert_eq!(info["purpose"], "introspect me");
        }

        // RFC 7009: each kind revoked by presenting it; unknown tokens are fine.
        for token in [key.as_str(), temp.as_str()] {
            assert_eq!(s.revoke(token).await.status, 200);
            let info: Value = s.introspect(&admin.access, token).await.json();
            assert_eq!(info["active"], false);
            expect_invalid_token(s.verify(token, None).await);
        }
        assert_eq!(s.revoke(&user.refresh).await.status, 200);
        expect_problem(s.refresh(&user.refresh).await, 401);
        expect_invalid_token(s.get_auth("/auth/me", &user.access).await);
        let info: Value = s.introspect(&admin.access, &user.access).await.json();
        assert_eq!(info["active"], false);
        let again = s.login_as("subject", PASSWORD).await;
        assert_eq!(
            s.revoke(&again.access).await.status,
            200,
            "an access token ends its session"
        );
        expect_invalid_token(s.get_auth("/auth/me", &again.access).await);
        assert_eq!(s.revoke("whatever-this-is").await.status, 200);
        let res = s
            .call(M::POST, "/auth/revoke", Anonymous, Form(&[("nothing", "here")]))
            .await;
        assert_eq!(res.status, 400);
        assert_eq!(res.json()["error"], "invalid_request");
        s.stop().await;
    }
}

/// Revocations reach another instance within about a second, although neither
/// instance queries the database to check a warm credential.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_reaches_other_instances_within_a_second() {
    let Some((a, db)) = postgres_only().await else {
        return;
    };
    let b = TestServer::on(&db, &[("PORTCULLIS_SYNC_INTERVAL_MS", "250")]).await;
    let owner = a.user_with_role("roaming", "analyst").await;
    let new_key = |name: &'static str| {
        let (a, owner) = (&a, &owner);
        async move {
            let v: Value = a
                .create_key(owner, json!({"name": name, "permissions": ["projects:read"]}))
                .await
                .json();
            v
        }
    };
    // Refused (401 or 403) by `srv` within the bound.
    let refused_within = |srv: &TestServer, credential: String, bound: Duration| {
        let http = srv.http.clone();
        async move {
            within(bound, "still accepted", || async {
                let status = http
                    .call(
                        M::GET,
                        "/auth/verify?permission=projects:read",
                        Bearer(&credential),
                        Empty,
                    )
                    .await
                    .status;
                status == 401 || status == 403
            })
            .await
        }
    };
    let bound = Duration::from_millis(1200);

    // A revoked key.
    let k1 = new_key("one").await;
    let key1 = k1["key"].as_str().unwrap().to_string();
    assert_eq!(
        b.verify(&key1, Some("projects:read")).await.status,
        200,
        "warm b's cache"
    );
    a.service
        .revoke_api_key(k1["id"].as_str().unwrap(), None, &Actor::system())
        .await
        .unwrap();
    refused_within(&b, key1, bound).await;

    // A role taken away from the owner: the key's scope shrinks everywhere.
    let k2 = new_key("two").await;
    let key2 = k2["key"].as_str().unwrap().to_string();
    assert_eq!(b.verify(&key2, Some("projects:read")).await.status, 200);
    a.service
        .remove_role(owner.user_id(), "analyst", &Actor::system())
        .await
        .unwrap();
    refused_within(&b, key2.clone(), bound).await;
    a.service
        .assign_role(owner.user_id(), "analyst", &Actor::system())
        .await
        .unwrap();

    // A disabled owner: keys and sessions refused everywhere.
    within(bound, "re-granted role not seen", || async {
        b.verify(&key2, Some("projects:read")).await.status == 200
    })
    .await;
    let session = a.login_as("roaming", PASSWORD).await;
    assert_eq!(b.verify(&session.access, Some("projects:read")).await.status, 200);
    a.service
        .set_user_active(owner.user_id(), false, &Actor::system())
        .await
        .unwrap();
    refused_within(&b, key2, bound).await;
    refused_within(&b, session.access.clone(), bound).await;
    b.stop().await;
    a.stop().await;
}

/// An instance whose API key last-use write waits on a row lock (another transaction
/// holds the key's row) still pulls revocations: a session ended on another instance
/// is refused within the documented bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_arrive_while_a_last_use_write_waits_on_a_lock() {
    let Some((a, db)) = postgres_only().await else {
        return;
    };
    let b = TestServer::on(&db, &[]).await;
    let owner = a.user_with_role("locked", "analyst").await;
    let key: Value = a
        .create_key(&owner, json!({"name": "busy", "permissions": ["projects:read"]}))
        .await
        .json();
    let key_id = key["id"].as_str().unwrap().to_string();
    let session = a.login_as("locked", PASSWORD).await;

    // Another transaction holds the key's row; b then uses the key, so its next
    // last-use write (every 5 s) waits on that lock.
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let mut holder = pool.begin().await.unwrap();
    sqlx::query("SELECT id FROM api_keys WHERE id = $1 FOR UPDATE")
        .bind(&key_id)
        .fetch_all(&mut *holder)
        .await
        .unwrap();
    assert_eq!(b.verify(key["key"].as_str().unwrap(), None).await.status, 200);
    assert_eq!(b.get_auth("/auth/me", &session.access).await.status, 200, "warm b");
    let write_waits = || async {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND wait_event_type = 'Lock' AND query LIKE '%api_keys%last_used_at%'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        waiting > 0
    };
    within(
        Duration::from_secs(10),
        "b's last-use write never waited on the lock",
        write_waits,
    )
    .await;

    // Ended on a, refused by b within the bound, while b's write still waits.
    let res = a
        .post_json("/auth/logout", &json!({"refresh_token": session.refresh}))
        .await;
    assert_eq!(res.status, 204);
    within(
        Duration::from_millis(1200),
        "b still accepts the ended session",
        || async { b.get_auth("/auth/me", &session.access).await.status == 401 },
    )
    .await;
    assert!(write_waits().await, "refused while the write still waits");
    holder.rollback().await.unwrap();
    pool.close().await;
    b.stop().await;
    a.stop().await;
}

/// An API key or temporary token, however narrow, acts for its owner only where the
/// route allows such credentials: it never changes the account, its sessions or its
/// credentials (the routes declared `Person`), though it may read who it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn narrow_credentials_cannot_manage_the_account() {
    use portcullis::http::Access;
    let (s, _db) = TestServer::start(Backend::Sqlite).await;
    let owner = s.user_with_role("scripted", "viewer").await;
    let key: Value = s
        .create_key(&owner, json!({"name": "ci", "permissions": []}))
        .await
        .json();
    let temporary = s
        .create_temporary(&owner, json!({"permissions": [], "purpose": "a link"}))
        .await;
    let table = portcullis::http::routes::table();
    let person: Vec<String> = table
        .iter()
        .filter(|r| r.access == Access::Person)
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    for route in [
        "PATCH /auth/me",
        "POST /auth/me/password",
        "POST /auth/logout-all",
        "GET /auth/sessions",
        "DELETE /auth/sessions/{id}",
        "POST /auth/api-keys",
        "GET /auth/api-keys",
        "GET /auth/api-keys/{id}",
        "DELETE /auth/api-keys/{id}",
        "POST /auth/temporary-tokens",
        "GET /auth/me/identities",
    ] {
        assert!(
            person.contains(&route.to_string()),
            "{route} is not limited to login sessions"
        );
    }
    let credentials = [
        ("x-api-key", ApiKey(key["key"].as_str().unwrap())),
        ("authorization", Bearer(temporary["token"].as_str().unwrap())),
    ];
    for (header, credential) in credentials {
        let me = s.call(M::GET, "/auth/me", credential, Empty).await;
        assert_eq!(me.status, 200, "{header}");
        for r in table.iter().filter(|r| r.access == Access::Person) {
            let body = json!({"full_name": "Changed", "email": "changed@example.com"});
            let res = s
                .call(r.method.clone(), &concrete_path(r.path), credential, Json(body))
                .await;
            let p = expect_problem(res, 403);
            assert!(
                p["detail"].as_str().unwrap().contains("login session"),
                "{} {}: {p}",
                r.method,
                r.path
            );
        }
    }
    // Nothing changed: the owner's login session still works and kept its name.
    let me: Value = s.get_auth("/auth/me", &owner.access).await.json();
    assert_ne!(me["full_name"], "Changed");
    s.stop().await;
}

/// A key `t`'s owner creates with `projects:read`: (id, key).
async fn reader_key(s: &TestServer, t: &Tokens, name: &str) -> (String, String) {
    let v: Value = s
        .create_key(t, json!({"name": name, "permissions": ["projects:read"]}))
        .await
        .json();
    (
        v["id"].as_str().unwrap().to_string(),
        v["key"].as_str().unwrap().to_string(),
    )
}

/// Waits until `srv` refuses `credential` (401 or 403), failing after `bound`.
async fn refused_within(srv: &TestServer, credential: &str, bound: Duration, what: &str) {
    within(bound, what, || async {
        let status = srv.verify(credential, Some("projects:read")).await.status;
        status == 401 || status == 403
    })
    .await;
}

/// The feed is followed in commit order, not by its writers' clocks: a second
/// instance, the real binary with its whole clock shifted by libfaketime (half a
/// minute behind, then half a minute ahead), revokes a key and disables a user through
/// the API, and the other instance, its caches warm, refuses both (and the user's
/// session) within the sync bound. (Before the feed followed commit order, rows were
/// polled by the writer's timestamp, and the other instance never saw those of a slow
/// clock.) Both backends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_by_an_instance_with_a_shifted_clock_reach_the_others() {
    let Some(faketime) = faketime_library() else {
        return;
    };
    for backend in backends().await {
        for (offset, seconds) in [("-30s", -30i64), ("+30s", 30)] {
            let what = format!("{backend:?}, clock {offset}");
            let (a, db) = TestServer::start(backend).await;
            let owner = a.user_with_role("shifted", "analyst").await;
            let (id, key) = reader_key(&a, &owner, "one").await;
            let (_, key2) = reader_key(&a, &owner, "two").await;
            let b = BinaryServer::start(binary_with_clock(&db, &faketime, offset)).await;
            // b's clock is the shifted one: its Date header says so.
            let res = b.http.call(M::GET, "/health", Anonymous, Empty).await;
            let date = chrono::DateTime::parse_from_rfc2822(res.header("date").expect("a Date header")).unwrap();
            let shift = date.timestamp() - chrono::Utc::now().timestamp();
            assert!((shift - seconds).abs() <= 3, "{what}: b's clock is {shift}s off");
            let login = json!({"username": "admin", "password": ADMIN_PASSWORD});
            let admin: Value = b.http.call(M::POST, "/auth/login", Anonymous, Json(login)).await.json();
            let admin = admin["access_token"]
                .as_str()
                .expect("an admin token from b")
                .to_string();
            for credential in [&key, &key2, &owner.access] {
                assert_eq!(
                    a.verify(credential, Some("projects:read")).await.status,
                    200,
                    "{what}: warm a"
                );
            }
            let bound = Duration::from_millis(1500);
            let res = b
                .http
                .call(M::DELETE, &format!("/admin/api-keys/{id}"), Bearer(&admin), Empty)
                .await;
            assert!(res.status < 300, "{what}: {}", res.text);
            refused_within(&a, &key, bound, &format!("{what}: a accepts a key revoked by b")).await;
            let res = b
                .http
                .call(
                    M::POST,
                    &format!("/admin/users/{}/disable", owner.user_id()),
                    Bearer(&admin),
                    Empty,
                )
                .await;
            assert!(res.status < 300, "{what}: {}", res.text);
            refused_within(
                &a,
                &key2,
                bound,
                &format!("{what}: a accepts a key of a user b disabled"),
            )
            .await;
            refused_within(
                &a,
                &owner.access,
                bound,
                &format!("{what}: a accepts a session of a user b disabled"),
            )
            .await;
            drop(b);
            a.stop().await;
        }
    }
}

/// A revocation whose transaction commits late (held open by a lock while the other
/// instance polls on) is still seen once it commits. (Before, it was stamped at the
/// start of its transaction, and by its commit the other instance's window had moved
/// past that stamp for good.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_committed_late_reaches_the_others() {
    use sqlx::Connection;
    let Some((a, db)) = postgres_only().await else {
        return;
    };
    let owner = a.user_with_role("held", "analyst").await;
    let (id, key) = reader_key(&a, &owner, "one").await;
    let b = TestServer::on(&db, &[]).await;
    assert_eq!(b.verify(&key, Some("projects:read")).await.status, 200, "warm b");
    // b writes the key's last use within seconds; that write would wait for the
    // revoking transaction below and stall b's sync loop, so let it land first (and
    // use the key no more while the revocation is held open).
    let watcher = sqlx::PgPool::connect(&db.url).await.unwrap();
    within(Duration::from_secs(10), "b never wrote the key's last use", || {
        let watcher = watcher.clone();
        async move {
            let used: i64 = sqlx::query_scalar("SELECT count(*) FROM api_keys WHERE last_used_at IS NOT NULL")
                .fetch_one(&watcher)
                .await
                .unwrap();
            used > 0
        }
    })
    .await;
    // The revocation's audit record waits behind this lock, after the feed row is
    // written: its transaction stays open.
    let mut blocker = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut blocker).await.unwrap();
    sqlx::query("LOCK TABLE audit_chains IN EXCLUSIVE MODE")
        .execute(&mut blocker)
        .await
        .unwrap();
    let revoke = {
        let service = a.service.clone();
        tokio::spawn(async move { service.revoke_api_key(&id, None, &Actor::system()).await })
    };
    within(Duration::from_secs(10), "the revocation never reached the lock", || {
        let watcher = watcher.clone();
        async move {
            let held: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
                 WHERE c.relname = 'revocations' AND l.mode = 'RowExclusiveLock' AND l.granted \
                 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            )
            .fetch_one(&watcher)
            .await
            .unwrap();
            held > 0
        }
    })
    .await;
    // Hold it open while b polls on for a while (longer than the old 5 s overlap).
    tokio::time::sleep(Duration::from_secs(7)).await;
    sqlx::query("COMMIT").execute(&mut blocker).await.unwrap();
    revoke.await.unwrap().unwrap();
    refused_within(
        &b,
        &key,
        Duration::from_millis(1500),
        "b accepts a key whose revocation committed late",
    )
    .await;
    b.stop().await;
    a.stop().await;
}

/// A cached key is trusted for `API_KEY_RECHECK_SECONDS` at most: a revocation the
/// instance never heard of (written behind its back, no feed row) takes effect once
/// the bound has passed. (Before, a missed event meant "until restart".)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_key_is_read_again_within_the_recheck_bound() {
    for backend in backends().await {
        let (s, db) = TestServer::start_with(backend, &[("API_KEY_RECHECK_SECONDS", "1")]).await;
        let owner = s.user_with_role("cached", "analyst").await;
        let (_, key) = reader_key(&s, &owner, "one").await;
        assert_eq!(s.verify(&key, Some("projects:read")).await.status, 200, "{backend:?}");
        assert_eq!(execute_sql(&db, "UPDATE api_keys SET revoked_at = created_at").await, 1);
        refused_within(
            &s,
            &key,
            Duration::from_secs(3),
            "a key revoked behind the cache's back is trusted past the bound",
        )
        .await;
        s.stop().await;
    }
}

/// Request targets that some common backend (nginx, Express, Go, Python frameworks,
/// Java servlet containers, IIS/ASP.NET) reads as `/admin/...`, written to be judged by
/// a weaker rule (or none): each is refused, in every gateway style.
pub const DISGUISED_ADMIN_PATHS: &[&str] = &[
    "/projects/..;/admin/users",
    "/projects;x=1/../admin/users",
    "/projects/..%3B/admin/users",
    "/admin;/users",
    "/projects/..\\admin\\users",
    "/projects\\..\\admin\\users",
    "/projects/..%5Cadmin%5Cusers",
    "/projects/%5c..%5cadmin/users",
    "/projects/..%2Fadmin/users",
    "/projects%2F..%2Fadmin%2Fusers",
    "/projects/%2e%2e/admin/users",
    "/projects/.%2E/admin/users",
    "/projects/../admin/users",
    "/projects/./../admin/users",
    "/projects/%252e%252e/admin/users",
    "/projects/%252e%252e%252fadmin",
    "/projects/%c0%ae%c0%ae/admin/users",
    "/projects/%e0%80%ae%e0%80%ae/admin/users",
    "/projects/%c0%af../admin",
    "/projects/%00/../admin/users",
    "/projects/%EF%BC%8E%EF%BC%8E/admin/users",
    "/projects%EF%BC%8F..%EF%BC%8Fadmin",
    "/projects/..%EF%BC%BCadmin",
    "/projects/x%3F/../../admin/users",
    "/projects/x%23/../../admin/users",
    "/admin./users",
    "/admin%20/users",
    "/ADMIN/users",
    "/Admin/users",
    "/%41DMIN/users",
    "/adm%C4%B1n/users",
    "/%EF%BD%81dmin/users",
    "admin/users",
];

/// The status `s` answers to `method target`, sent byte for byte with `bearer`.
async fn raw_status(s: &TestServer, method: &str, target: &str, bearer: &str) -> u16 {
    let rest = s.http.base.strip_prefix("http://").unwrap();
    let (host, base_path) = rest
        .split_once('/')
        .map_or((rest, String::new()), |(h, p)| (h, format!("/{p}")));
    raw_request(host, method, &format!("{base_path}{target}"), bearer).await
}

/// The route map every forward-auth path test uses; the viewer holds only
/// `projects:read`.
const GUARDED: &str = "GET /projects/** projects:read; GET /runs/** projects:create; * /admin/** users:manage";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_auth_judges_the_request_the_backend_will_serve() {
    for backend in backends().await {
        // With a route map and no VERIFY_DEFAULT, unmatched is refused; `allow` keeps
        // the old default, and the path rules hold the same under it.
        for default in [None, Some("allow")] {
            let mut settings = vec![("VERIFY_ROUTES", GUARDED)];
            settings.extend(default.map(|d| ("VERIFY_DEFAULT", d)));
            let (s, _db) = TestServer::start_with(backend, &settings).await;
            let viewer = s.user_with_role("looker", "viewer").await;
            let admin = s.login_as("admin", ADMIN_PASSWORD).await;
            let what = format!("{backend:?} default {default:?}");
            for style in ["traefik", "nginx"] {
                let as_viewer =
                    |method: &'static str, uri: &'static str| forwarded(&s, &viewer.access, method, uri, style);
                assert_eq!(as_viewer("GET", "/projects/7").await.status, 200, "{what}");
                assert_eq!(as_viewer("HEAD", "/projects/7").await.status, 200, "{what}");
                assert_eq!(
                    forwarded(&s, &admin.access, "GET", "/admin/users", style).await.status,
                    200,
                    "{what}"
                );
                // HEAD inherits GET's rule; a method no rule names follows the default.
                expect_problem(as_viewer("HEAD", "/runs/1").await, 403);
                expect_problem(as_viewer("head", "/runs/1").await, 403);
                let unmatched = if default.is_some() { 200 } else { 403 };
                for (method, uri) in [("OPTIONS", "/runs/1"), ("PROPFIND", "/runs/1"), ("GET", "/unmapped")] {
                    assert_eq!(as_viewer(method, uri).await.status, unmatched, "{what} {method} {uri}");
                }
                expect_problem(as_viewer("G(T", "/projects/7").await, 403);
                for &disguised in DISGUISED_ADMIN_PATHS {
                    let p = expect_problem(as_viewer("GET", disguised).await, 403);
                    let detail = p["detail"].as_str().unwrap_or_default();
                    assert!(
                        !detail.contains("missing permission"),
                        "{what} {style} {disguised}: {detail}"
                    );
                }
            }
            // Envoy: the path arrives under the prefix, sent as written (a request the
            // server itself refuses as malformed, 400, is not let through either).
            for &disguised in DISGUISED_ADMIN_PATHS.iter().filter(|p| p.starts_with('/')) {
                let status = raw_status(&s, "GET", &format!("/auth/verify{disguised}"), &viewer.access).await;
                assert!([400, 403].contains(&status), "{what} envoy {disguised}: {status}");
            }
            assert_eq!(
                raw_status(&s, "GET", "/auth/verify/projects/7", &viewer.access).await,
                200
            );
            assert_eq!(
                raw_status(&s, "HEAD", "/auth/verify/runs/1", &viewer.access).await,
                403,
                "{what}"
            );
            s.stop().await;
        }
    }
}

/// Method overrides in every spelling a backend reads as one (header names with `_`,
/// any case; PHP's `.method` for `_method`), from nginx, Traefik and Envoy alike: a
/// viewer's GET needs the permission of the method it asks the backend to serve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn method_overrides_are_judged_in_every_spelling() {
    /// The check of a GET of `uri` as nginx or Traefik (`style`) asks it, with `extra`.
    async fn get(s: &TestServer, token: &str, style: (&str, &str), uri: &str, extra: &[(&str, &str)]) -> Reply {
        let mut headers = vec![(style.0, "GET"), (style.1, uri)];
        headers.extend_from_slice(extra);
        s.verify_with(token, &headers).await
    }
    for backend in backends().await {
        let (s, _db) = TestServer::start_with(backend, &[("VERIFY_ROUTES", GUARDED)]).await;
        let viewer = s.user_with_role("looker", "viewer").await;
        let analyst = s.user_with_role("maker", "analyst").await;
        let (v, a) = (viewer.access.as_str(), analyst.access.as_str());
        for style in [
            ("x-original-method", "x-original-uri"),
            ("x-forwarded-method", "x-forwarded-uri"),
        ] {
            assert_eq!(
                get(&s, v, style, "/runs/1", &[]).await.status,
                403,
                "GET /runs needs projects:create"
            );
            assert_eq!(get(&s, v, style, "/projects/1", &[]).await.status, 200);
            for header in [
                "X-HTTP-Method-Override",
                "x_http_method_override",
                "X-Method-Override",
                "x-http-method",
            ] {
                for value in ["DELETE", "PATCH"] {
                    let res = get(&s, v, style, "/projects/1", &[(header, value)]).await;
                    let p = expect_problem(res, 403);
                    assert!(p["detail"].as_str().unwrap().contains(value), "{header}: {value}: {p}");
                }
            }
            for uri in [
                "/projects/1?_method=DELETE",
                "/projects/1?.method=DELETE",
                "/projects/1?%5Fmethod=delete",
            ] {
                expect_problem(get(&s, v, style, uri, &[]).await, 403);
            }
            // An override to a method the caller may use passes.
            let to_head = [("X-HTTP-Method-Override", "HEAD")];
            assert_eq!(get(&s, v, style, "/projects/1", &to_head).await.status, 200);
            // GET /runs needs projects:create, which the analyst holds and the viewer not.
            let to_get = [("X-HTTP-Method-Override", "GET")];
            assert_eq!(get(&s, a, style, "/runs/1", &to_get).await.status, 200);
        }
        // Envoy: the original request's own headers and query.
        let envoy = |target, headers| s.http.call_with(M::GET, target, Bearer(v), Empty, headers);
        assert_eq!(envoy("/auth/verify/projects/1", &[]).await.status, 200);
        let delete = [("X-HTTP-Method-Override", "DELETE")];
        expect_problem(envoy("/auth/verify/projects/1", &delete).await, 403);
        expect_problem(envoy("/auth/verify/projects/1?_method=DELETE", &[]).await, 403);
        s.stop().await;
    }
}

/// `VERIFY_CASE_INSENSITIVE`: case variants are judged by the rule they would match
/// on a backend that ignores case, so the holder of that rule passes and no one else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_insensitive_route_maps_guard_every_case_variant() {
    for backend in backends().await {
        let settings = [("VERIFY_ROUTES", GUARDED), ("VERIFY_CASE_INSENSITIVE", "true")];
        let (s, _db) = TestServer::start_with(backend, &settings).await;
        let viewer = s.user_with_role("looker", "viewer").await;
        let admin = s.login_as("admin", ADMIN_PASSWORD).await;
        for variant in [
            "/ADMIN/users",
            "/Admin/Users",
            "/%41DMIN/users",
            "/adm%C4%B1n/users",
            "/%EF%BD%81dmin/users",
        ] {
            let p = expect_problem(forwarded(&s, &viewer.access, "GET", variant, "nginx").await, 403);
            assert!(p["detail"].as_str().unwrap().contains("users:manage"), "{variant}: {p}");
            assert_eq!(
                forwarded(&s, &admin.access, "GET", variant, "nginx").await.status,
                200,
                "{backend:?} {variant}"
            );
        }
        assert_eq!(
            forwarded(&s, &viewer.access, "GET", "/PROJECTS/7", "nginx")
                .await
                .status,
            200
        );
        s.stop().await;
    }
}
