//! API keys, temporary tokens, forward auth, introspection and revocation, on both
//! backends, and revocation reaching another instance within a second.

use portcullis::domain::Actor;
use std::time::Duration;

use reqwest::Method as M;
use serde_json::{Value, json};

use crate::support::*;

fn sub(t: &Tokens) -> uuid::Uuid {
    uuid::Uuid::parse_str(jwt_part(&t.access, 1)["sub"].as_str().unwrap()).unwrap()
}

impl TestServer {
    async fn with_key(&self, method: M, path: &str, key: &str) -> reqwest::Response {
        self.client
            .request(method, self.url(path))
            .header("x-api-key", key)
            .send()
            .await
            .unwrap()
    }

    async fn create_key(&self, t: &Tokens, body: Value) -> reqwest::Response {
        self.client
            .post(self.url("/auth/api-keys"))
            .bearer_auth(&t.access)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// A temporary token `t`'s owner creates with `body`: the answer's JSON.
    async fn create_temporary(&self, t: &Tokens, body: Value) -> Value {
        self.client
            .post(self.url("/auth/temporary-tokens"))
            .bearer_auth(&t.access)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn verify(&self, credential: &str, permission: Option<&str>) -> reqwest::Response {
        let mut req = self.client.get(self.url("/auth/verify")).bearer_auth(credential);
        if let Some(p) = permission {
            req = req.header("x-required-permission", p);
        }
        req.send().await.unwrap()
    }

    /// A user holding `role`, logged in.
    async fn user_with_role(&self, name: &str, role: &str) -> Tokens {
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
        assert_eq!(res.status(), 201);
        let created: Value = res.json().await.unwrap();
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
            expect_problem(s.create_key(&owner, body).await, status).await;
        }
        let listed: Value = s.get_auth("/auth/api-keys", &owner.access).await.json().await.unwrap();
        assert_eq!(listed.as_array().unwrap().len(), 1);
        assert!(!listed.to_string().contains(secret), "listing never shows the secret");

        // Both headers work; the key acts as its owner with its own permissions.
        let res = s.with_key(M::GET, "/auth/verify", &key).await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["x-auth-credential"], "api_key");
        assert_eq!(res.headers()["x-auth-username"], "keyholder");
        assert_eq!(res.headers()["x-auth-permissions"], "projects:read,projects:create");
        assert_eq!(s.verify(&key, Some("projects:create")).await.status(), 200);
        expect_problem(s.verify(&key, Some("runs:create")).await, 403).await;
        let me: Value = s.with_key(M::GET, "/auth/me", &key).await.json().await.unwrap();
        assert_eq!(me["username"], "keyholder");
        assert!(me["session_id"].is_null());
        // Keys cannot mint credentials.
        let res = s
            .client
            .post(s.url("/auth/api-keys"))
            .header("x-api-key", &key)
            .json(&json!({"name": "child"}))
            .send()
            .await
            .unwrap();
        expect_problem(res, 403).await;

        // Intersection with the owner's current permissions, effective at once.
        s.service
            .remove_role(sub(&owner), "analyst", &Actor::system())
            .await
            .unwrap();
        expect_problem(s.verify(&key, Some("projects:read")).await, 403).await;
        s.service
            .assign_role(sub(&owner), "viewer", &Actor::system())
            .await
            .unwrap();
        assert_eq!(s.verify(&key, Some("projects:read")).await.status(), 200);
        expect_problem(s.verify(&key, Some("projects:create")).await, 403).await;
        s.service
            .grant_permission("viewer", "projects:create", &Actor::system())
            .await
            .unwrap();
        assert_eq!(
            s.verify(&key, Some("projects:create")).await.status(),
            200,
            "role changes reach keys"
        );

        // A disabled owner disables their keys.
        s.service
            .set_user_active(sub(&owner), false, &Actor::system())
            .await
            .unwrap();
        expect_invalid_token(s.verify(&key, None).await).await;
        s.service
            .set_user_active(sub(&owner), true, &Actor::system())
            .await
            .unwrap();
        assert_eq!(s.verify(&key, None).await.status(), 200);
        expect_invalid_token(s.get_auth("/auth/me", &owner.access).await).await;
        let owner = s.login_as("keyholder", PASSWORD).await;

        // last_used_at is written in batches.
        s.service.flush_key_usage().await.unwrap();
        let got: Value = s
            .get_auth(&format!("/auth/api-keys/{id}"), &owner.access)
            .await
            .json()
            .await
            .unwrap();
        assert!(got["last_used_at"].is_string(), "{got}");

        // Others cannot see or revoke it; the owner and admins can revoke.
        let other = s.user("stranger").await;
        expect_problem(s.get_auth(&format!("/auth/api-keys/{id}"), &other.access).await, 404).await;
        let res = s
            .client
            .delete(s.url(&format!("/auth/api-keys/{id}")))
            .bearer_auth(&other.access)
            .send()
            .await
            .unwrap();
        expect_problem(res, 404).await;
        let res = s
            .client
            .delete(s.url(&format!("/auth/api-keys/{id}")))
            .bearer_auth(&owner.access)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 204);
        expect_invalid_token(s.verify(&key, None).await).await;
        let res = s
            .client
            .delete(s.url(&format!("/auth/api-keys/{id}")))
            .bearer_auth(&owner.access)
            .send()
            .await
            .unwrap();
        expect_problem(res, 404).await;

        let second: Value = s
            .create_key(&owner, json!({"name": "second"}))
            .await
            .json()
            .await
            .unwrap();
        let admin = s.login_as("admin", ADMIN_PASSWORD).await;
        let all: Value = s.get_auth("/admin/api-keys", &admin.access).await.json().await.unwrap();
        assert_eq!(all.as_array().unwrap().len(), 2);
        expect_problem(s.get_auth("/admin/api-keys", &owner.access).await, 403).await;
        let res = s
            .client
            .delete(s.url(&format!("/admin/api-keys/{}", second["id"].as_str().unwrap())))
            .bearer_auth(&admin.access)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 204);
        expect_invalid_token(s.verify(second["key"].as_str().unwrap(), None).await).await;

        // Expiry, and malformed keys.
        let expiring = (Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
        let short: Value = s
            .create_key(&owner, json!({"name": "short", "expires_at": expiring}))
            .await
            .json()
            .await
            .unwrap();
        let short_key = short["key"].as_str().unwrap().to_string();
        assert_eq!(s.verify(&short_key, None).await.status(), 200);
        tokio::time::sleep(Duration::from_millis(2500)).await;
        expect_invalid_token(s.verify(&short_key, None).await).await;
        for bad in [
            "pcx_",
            "pcx_0123456789abcdef_short",
            &format!("pcx_{kid}_{}", "A".repeat(43)),
        ] {
            expect_invalid_token(s.verify(bad, None).await).await;
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
        let create = |body: Value| {
            s.client
                .post(s.url("/auth/temporary-tokens"))
                .bearer_auth(&owner.access)
                .json(&body)
                .send()
        };
        let res = create(json!({"permissions": ["reports:read"], "max_uses": 2, "purpose": "share a report"}))
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        let t: Value = res.json().await.unwrap();
        let token = t["token"].as_str().unwrap().to_string();
        assert!(token.starts_with("pct_") && token.len() == 47);
        assert_eq!(t["max_uses"], 2);
        let first = s.verify(&token, Some("reports:read")).await;
        assert_eq!(first.status(), 200);
        assert_eq!(first.headers()["x-auth-credential"], "temporary");
        expect_problem(s.verify(&token, Some("projects:read")).await, 403).await;
        expect_invalid_token(s.verify(&token, None).await).await;

        for (body, status) in [
            (json!({"permissions": ["users:manage"], "purpose": "x"}), 403),
            (json!({"permissions": [], "purpose": "x", "ttl_seconds": 7200}), 422),
            (json!({"permissions": [], "purpose": "x", "ttl_seconds": 0}), 422),
            (json!({"permissions": [], "purpose": "x", "max_uses": 0}), 422),
            (json!({"permissions": [], "purpose": ""}), 422),
        ] {
            expect_problem(create(body).await.unwrap(), status).await;
        }

        // Single use, fired concurrently at two instances: exactly one gets through.
        for _ in 0..3 {
            let single: Value = create(json!({"permissions": [], "max_uses": 1, "purpose": "once"}))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let token = single["token"].as_str().unwrap().to_string();
            let mut tasks = Vec::new();
            for i in 0..8 {
                let srv = if i % 2 == 0 { &s } else { &other };
                let (client, url, token) = (srv.client.clone(), srv.url("/auth/verify"), token.clone());
                tasks.push(tokio::spawn(async move {
                    client
                        .get(url)
                        .bearer_auth(token)
                        .send()
                        .await
                        .unwrap()
                        .status()
                        .as_u16()
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
            .unwrap()
            .json()
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        expect_invalid_token(s.verify(brief["token"].as_str().unwrap(), None).await).await;
        other.stop().await;
        s.stop().await;
    }
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
            .json()
            .await
            .unwrap();
        let key = key["key"].as_str().unwrap().to_string();
        let forwarded = |cred: &str, method: &str, uri: &str, style: &str| {
            let (mh, uh) = if style == "traefik" {
                ("x-forwarded-method", "x-forwarded-uri")
            } else {
                ("x-original-method", "x-original-uri")
            };
            s.client
                .get(s.url("/auth/verify"))
                .bearer_auth(cred)
                .header(mh, method)
                .header(uh, uri)
                .send()
        };
        for style in ["traefik", "nginx"] {
            let ok = forwarded(&viewer.access, "GET", "/projects/42?expand=runs", style)
                .await
                .unwrap();
            assert_eq!(ok.status(), 200, "{style}");
            assert_eq!(ok.headers()["x-auth-roles"], "viewer");
            assert_eq!(ok.headers()["x-auth-credential"], "jwt");
            assert_eq!(ok.headers()["x-auth-user-id"], sub(&viewer).to_string().as_str());
            let body: Value = ok.json().await.unwrap();
            assert_eq!(body["user_id"], sub(&viewer).to_string().as_str());
            assert_eq!(body["username"], "looker");
            assert_eq!(
                (&body["roles"], &body["credential"]),
                (&json!(["viewer"]), &json!("jwt"))
            );
            assert!(body["permissions"].as_array().is_some_and(|p| !p.is_empty()), "{body}");
            let p = expect_problem(
                forwarded(&viewer.access, "POST", "/projects", style).await.unwrap(),
                403,
            )
            .await;
            assert!(p["detail"].as_str().unwrap().contains("projects:create"));
            assert_eq!(
                forwarded(&analyst.access, "POST", "/projects", style)
                    .await
                    .unwrap()
                    .status(),
                200
            );
            expect_problem(
                forwarded(&analyst.access, "DELETE", "/admin/users/1", style)
                    .await
                    .unwrap(),
                403,
            )
            .await;
            expect_problem(
                forwarded(&analyst.access, "GET", "/unmapped", style).await.unwrap(),
                403,
            )
            .await;
            assert_eq!(forwarded(&key, "GET", "/projects", style).await.unwrap().status(), 200);
            expect_problem(forwarded(&key, "POST", "/projects", style).await.unwrap(), 403).await;
        }
        // Envoy: the original method and path arrive under the prefix.
        let envoy = |cred: &str, method: M, path: &str| {
            s.client
                .request(method, s.url(&format!("/auth/verify{path}")))
                .bearer_auth(cred)
                .send()
        };
        assert_eq!(
            envoy(&viewer.access, M::GET, "/projects/7").await.unwrap().status(),
            200
        );
        expect_problem(envoy(&viewer.access, M::POST, "/projects").await.unwrap(), 403).await;
        assert_eq!(
            envoy(&analyst.access, M::POST, "/projects").await.unwrap().status(),
            200
        );
        // A permission the gateway names in the query needs no route rule; no credential
        // is 401.
        let res = s
            .client
            .get(s.url("/auth/verify?permission=runs:create"))
            .bearer_auth(&analyst.access)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        expect_problem(s.verify(&viewer.access, Some("runs:create")).await, 403).await;
        expect_problem(s.client.get(s.url("/auth/verify")).send().await.unwrap(), 401).await;
        expect_invalid_token(s.verify("pct_notarealtokennotarealtokennotarealtokenxx", None).await).await;
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
        let check = |headers: &[(&str, &str)]| {
            let mut req = s.client.get(s.url("/auth/verify")).bearer_auth(&viewer.access);
            for (name, value) in headers {
                req = req.header(*name, *value);
            }
            req.send()
        };
        let status = |res: reqwest::Response| res.status().as_u16();
        // The baseline: the viewer may read projects, not delete them.
        let read = [("x-original-method", "GET"), ("x-original-uri", "/projects/7")];
        assert_eq!(status(check(&read).await.unwrap()), 200, "{default}");
        let delete = [("x-original-method", "DELETE"), ("x-original-uri", "/projects/7")];
        assert_eq!(status(check(&delete).await.unwrap()), 403, "{default}");
        // Naming a permission the viewer holds does not replace the map's.
        let named = [delete[0], delete[1], ("x-required-permission", "projects:read")];
        assert_eq!(status(check(&named).await.unwrap()), 403, "{default}: named");
        // Behind nginx (X-Original-*), the client's own X-Forwarded-* are refused.
        let mixed = [
            delete[0],
            delete[1],
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "/projects/7"),
        ];
        let p = expect_problem(check(&mixed).await.unwrap(), 403).await;
        assert!(p["detail"].as_str().unwrap().contains("different requests"), "{p}");
        // An empty header hides nothing.
        let hidden = [("x-forwarded-uri", ""), ("x-original-uri", "/admin/users")];
        assert_eq!(status(check(&hidden).await.unwrap()), 403, "{default}: empty");
        // Encoded, doubled or dotted paths are the paths the backend serves.
        for disguised in [
            "/%61dmin/users",
            "//admin/users",
            "/projects/../admin/users",
            "/projects/%2e%2e/admin",
        ] {
            let res = check(&[("x-original-uri", disguised)]).await.unwrap();
            assert_eq!(status(res), 403, "{default}: {disguised}");
            let envoy = s
                .client
                .get(s.url(&format!("/auth/verify{disguised}")))
                .bearer_auth(&viewer.access)
                .send()
                .await
                .unwrap();
            assert_eq!(status(envoy), 403, "{default}: envoy {disguised}");
        }
        let p = expect_problem(check(&[("x-original-uri", "/a/%ff")]).await.unwrap(), 403).await;
        assert!(p["detail"].as_str().unwrap().contains("does not decode"), "{p}");
        // No original request: allowed by default, refused under deny unless the
        // gateway names the permission in the query.
        let bare = check(&[("x-required-permission", "projects:read")]).await.unwrap();
        assert_eq!(
            status(bare),
            if default == "allow" { 200 } else { 403 },
            "{default}: bare"
        );
        let res = s
            .client
            .get(s.url("/auth/verify?permission=projects:read"))
            .bearer_auth(&viewer.access)
            .send()
            .await
            .unwrap();
        assert_eq!(status(res), 200, "{default}: the gateway's ?permission=");
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_and_revocation_cover_every_credential() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        let admin = s.login_as("admin", ADMIN_PASSWORD).await;
        let user = s.user_with_role("subject", "analyst").await;
        let introspect = |caller: &str, token: &str| {
            s.client
                .post(s.url("/auth/introspect"))
                .bearer_auth(caller)
                .form(&[("token", token), ("token_type_hint", "access_token")])
                .send()
        };
        expect_problem(introspect(&user.access, &user.access).await.unwrap(), 403).await;
        // The answer is the token's own claims, also when it comes from the
        // verified-token cache (the second time).
        let claims = jwt_part(&user.access, 1);
        for _ in 0..2 {
            let info: Value = introspect(&admin.access, &user.access)
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(info["active"], true);
            assert_eq!(info["token_type"], "access_token");
            assert_eq!(info["sub"], sub(&user).to_string());
            assert_eq!(info["username"], "subject");
            assert!(info["scope"].as_str().unwrap().contains("projects:create"));
            for claim in ["iss", "aud", "jti", "iat", "exp", "sid"] {
                assert!(!info[claim].is_null(), "{claim}");
                assert_eq!(info[claim], claims[claim], "{claim}");
            }
        }
        let gone: Value = introspect(&admin.access, "garbage")
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(gone, json!({"active": false}));

        // A service's API key holding tokens:introspect may introspect.
        let svc: Value = s
            .create_key(
                &admin,
                json!({"name": "resource-server", "permissions": ["tokens:introspect"]}),
            )
            .await
            .json()
            .await
            .unwrap();
        let svc_key = svc["key"].as_str().unwrap().to_string();
        let key: Value = s
            .create_key(&user, json!({"name": "k", "permissions": ["projects:read"]}))
            .await
            .json()
            .await
            .unwrap();
        let key = key["key"].as_str().unwrap().to_string();
        let info: Value = introspect(&svc_key, &key).await.unwrap().json().await.unwrap();
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
            let info: Value = introspect(&admin.access, &temp).await.unwrap().json().await.unwrap();
            assert_eq!(info["active"], true);
            assert_eq!(info["uses_left"], 1, "introspection does not spend uses");
            assert_eq!(info["purpose"], "introspect me");
        }

        // RFC 7009: each kind revoked by presenting it; unknown tokens are fine.
        let revoke = |token: &str| s.client.post(s.url("/auth/revoke")).form(&[("token", token)]).send();
        for token in [key.as_str(), temp.as_str()] {
            assert_eq!(revoke(token).await.unwrap().status(), 200);
            let info: Value = introspect(&admin.access, token).await.unwrap().json().await.unwrap();
            assert_eq!(info["active"], false);
            expect_invalid_token(s.verify(token, None).await).await;
        }
        assert_eq!(revoke(&user.refresh).await.unwrap().status(), 200);
        expect_problem(s.refresh(&user.refresh).await, 401).await;
        expect_invalid_token(s.get_auth("/auth/me", &user.access).await).await;
        let info: Value = introspect(&admin.access, &user.access)
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(info["active"], false);
        let again = s.login_as("subject", PASSWORD).await;
        assert_eq!(
            revoke(&again.access).await.unwrap().status(),
            200,
            "an access token ends its session"
        );
        expect_invalid_token(s.get_auth("/auth/me", &again.access).await).await;
        assert_eq!(revoke("whatever-this-is").await.unwrap().status(), 200);
        let res = s
            .client
            .post(s.url("/auth/revoke"))
            .form(&[("nothing", "here")])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400);
        assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_request");
        s.stop().await;
    }
}

/// Revocations reach another instance within about a second, although neither
/// instance queries the database to check a warm credential.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_reaches_other_instances_within_a_second() {
    if !backends().await.contains(&Backend::Postgres) {
        return;
    }
    let (a, db) = TestServer::start(Backend::Postgres).await;
    let b = TestServer::on(&db, &[("PORTCULLIS_SYNC_INTERVAL_MS", "250")]).await;
    let owner = a.user_with_role("roaming", "analyst").await;
    let new_key = |name: &'static str| {
        let (a, owner) = (&a, &owner);
        async move {
            let v: Value = a
                .create_key(owner, json!({"name": name, "permissions": ["projects:read"]}))
                .await
                .json()
                .await
                .unwrap();
            v
        }
    };
    // Refused (401 or 403) by `srv` within the bound.
    let refused_within = |srv: &TestServer, credential: String, bound: Duration| {
        let (client, url) = (srv.client.clone(), srv.url("/auth/verify?permission=projects:read"));
        async move {
            within(bound, "still accepted", || async {
                let status = client
                    .get(&url)
                    .bearer_auth(&credential)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16();
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
        b.verify(&key1, Some("projects:read")).await.status(),
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
    assert_eq!(b.verify(&key2, Some("projects:read")).await.status(), 200);
    a.service
        .remove_role(sub(&owner), "analyst", &Actor::system())
        .await
        .unwrap();
    refused_within(&b, key2.clone(), bound).await;
    a.service
        .assign_role(sub(&owner), "analyst", &Actor::system())
        .await
        .unwrap();

    // A disabled owner: keys and sessions refused everywhere.
    within(bound, "re-granted role not seen", || async {
        b.verify(&key2, Some("projects:read")).await.status() == 200
    })
    .await;
    let session = a.login_as("roaming", PASSWORD).await;
    assert_eq!(b.verify(&session.access, Some("projects:read")).await.status(), 200);
    a.service
        .set_user_active(sub(&owner), false, &Actor::system())
        .await
        .unwrap();
    refused_within(&b, key2, bound).await;
    refused_within(&b, session.access.clone(), bound).await;
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
        .json()
        .await
        .unwrap();
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
        ("x-api-key", key["key"].as_str().unwrap().to_string()),
        (
            "authorization",
            format!("Bearer {}", temporary["token"].as_str().unwrap()),
        ),
    ];
    for (header, value) in &credentials {
        let me = s
            .client
            .get(s.url("/auth/me"))
            .header(*header, value)
            .send()
            .await
            .unwrap();
        assert_eq!(me.status(), 200, "{header}");
        for r in table.iter().filter(|r| r.access == Access::Person) {
            let res = s
                .client
                .request(r.method.clone(), s.url(&concrete_path(r.path)))
                .header(*header, value)
                .json(&json!({"full_name": "Changed", "email": "changed@example.com"}))
                .send()
                .await
                .unwrap();
            let p = expect_problem(res, 403).await;
            assert!(
                p["detail"].as_str().unwrap().contains("login session"),
                "{} {}: {p}",
                r.method,
                r.path
            );
        }
    }
    // Nothing changed: the owner's login session still works and kept its name.
    let me: Value = s.get_auth("/auth/me", &owner.access).await.json().await.unwrap();
    assert_ne!(me["full_name"], "Changed");
    s.stop().await;
}
