//! The OpenID provider's client registry (issue 29): the `/admin/clients` API, client
//! authentication at the OAuth endpoints (secrets, `none`, `private_key_jwt`),
//! service accounts (`client_credentials`), introspection and revocation by clients,
//! and `portcullis client`; on both backends.

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use portcullis::config::SigningAlgorithm;
use serde_json::{Value, json};

use crate::support::*;

async fn admin(s: &TestServer) -> Tokens {
    s.login_as("admin", ADMIN_PASSWORD).await
}

fn basic(id: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    )
}

/// A form POST to an OAuth endpoint, with HTTP Basic client credentials when given.
async fn oauth(s: &TestServer, path: &str, basic_auth: Option<(&str, &str)>, form: &[(&str, &str)]) -> Reply {
    let header = basic_auth.map(|(id, secret)| basic(id, secret));
    let headers: Vec<(&str, &str)> = header.iter().map(|h| ("authorization", h.as_str())).collect();
    s.http.call_with(M::POST, path, Anonymous, Form(form), &headers).await
}

/// A client_credentials token request authenticated with HTTP Basic.
async fn cc_token(s: &TestServer, id: &str, secret: &str) -> Reply {
    oauth(
        s,
        "/oauth2/token",
        Some((id, secret)),
        &[("grant_type", "client_credentials")],
    )
    .await
}

/// Registers a client through the API; (the answer, its secret if any).
async fn register(s: &TestServer, admin: &str, spec: Value) -> (Value, Option<String>) {
    let res = s.call(M::POST, "/admin/clients", Bearer(admin), Json(spec)).await;
    assert_eq!(res.status, 201, "{}", res.text);
    assert_eq!(res.header("cache-control"), Some("no-store"));
    let body = res.json();
    let secret = body["client_secret"].as_str().map(str::to_string);
    (body, secret)
}

fn expect_oauth_error(res: Reply, status: u16, error: &str) -> Value {
    assert_eq!(res.status, status, "{}", res.text);
    let body = res.json();
    assert_eq!(body["error"], error, "{body}");
    body
}

/// A role granting `users:read`, for a service account to reach a `Permission` route.
async fn reader_role(s: &TestServer, admin: &str) {
    let res = s
        .call(
            M::POST,
            "/admin/roles",
            Bearer(admin),
            Json(json!({"name": "directory-reader", "permissions": ["users:read"]})),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_clients_admin_api_registers_validates_and_shows_the_secret_once() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        let a = admin(&s).await.access;
        // Without clients:manage: refused.
        let user = s.user("mallory").await.access;
        assert_eq!(s.get("/admin/clients").await.status, 401);
        expect_problem(s.get_auth("/admin/clients", &user).await, 403);
        let res = s
            .call(M::POST, "/admin/clients", Bearer(&user), Json(json!({"name": "x"})))
            .await;
        expect_problem(res, 403);

        let (created, secret) = register(
            &s,
            &a,
            json!({"client_id": "web", "name": "Web app", "redirect_uris": ["https://app.example/cb"]}),
        )
        .await;
        let secret = secret.expect("a confidential client gets a secret");
        assert!(secret.starts_with("pcsec_"), "{secret}");
        assert_eq!(created["client_id"], "web");
        assert_eq!(created["type"], "confidential");
        assert_eq!(created["token_endpoint_auth_method"], "client_secret_basic");
        assert_eq!(created["grant_types"], json!(["authorization_code", "refresh_token"]));
        assert_eq!(created["has_secret"], true);
        // Shown once: reading the client never shows it again.
        let one = s.get_auth("/admin/clients/web", &a).await;
        assert_eq!(one.status, 200);
        assert!(
            !one.text.contains(&secret) && !one.text.contains("client_secret\""),
            "{}",
            one.text
        );
        let list = s.get_auth("/admin/clients", &a).await;
        assert!(!list.text.contains(&secret));
        // Beside the command line's own client, which every server registers.
        let mut ids: Vec<String> = list
            .body
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["client_id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        assert_eq!(ids, ["portcullis-cli", "web"], "{}", list.text);
        // A generated client_id when none is given; a public client has no secret.
        let (spa, spa_secret) = register(
            &s,
            &a,
            json!({"name": "SPA", "type": "public", "redirect_uris": ["https://spa.example/cb"]}),
        )
        .await;
        assert!(spa_secret.is_none() && spa["client_id"].as_str().unwrap().len() >= 16);
        assert_eq!(spa["token_endpoint_auth_method"], "none");

        // Bad input: a clear 422 naming the field, nothing written.
        for (spec, field) in [
            (
                json!({"name": "x", "redirect_uris": ["http://app.example/cb"]}),
                "redirect_uris",
            ),
            (
                json!({"name": "x", "redirect_uris": ["https://a.example/cb#f"]}),
                "redirect_uris",
            ),
            (json!({"name": "x", "grant_types": ["password"]}), "grant_types"),
            (
                json!({"name": "x", "grant_types": ["client_credentials"], "scopes": ["admin"]}),
                "scopes",
            ),
            (json!({"name": "", "grant_types": ["client_credentials"]}), "name"),
            (
                json!({"name": "x", "client_id": "a b", "grant_types": ["client_credentials"]}),
                "client_id",
            ),
            (
                json!({"name": "x", "type": "public", "grant_types": ["client_credentials"]}),
                "grant_types",
            ),
            (
                json!({"name": "x", "grant_types": ["client_credentials"], "roles": ["no-such-role"]}),
                "roles",
            ),
            (
                json!({"name": "x", "roles": ["viewer"], "redirect_uris": ["https://a.example/cb"]}),
                "roles",
            ),
            (
                json!({"name": "x", "grant_types": ["client_credentials"], "access_token_ttl": 0}),
                "access_token_ttl",
            ),
            (
                json!({"name": "x", "grant_types": ["client_credentials"], "token_endpoint_auth_method": "private_key_jwt"}),
                "jwks",
            ),
            (
                json!({"name": "x", "grant_types": ["client_credentials"], "token_endpoint_auth_method": "private_key_jwt",
                    "jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}}),
                "jwks",
            ),
            (
                json!({"name": "x", "grant_types": ["client_credentials"], "jwks": {"keys": "no"}}),
                "jwks",
            ),
            (
                json!({"name": "x", "grant_types": ["client_credentials"],
                       "jwks": {"keys": [{"kty": "EC", "crv": "P-256", "x": "!!", "y": "!!"}]}}),
                "jwks",
            ),
            (
                json!({"name": "x", "grant_types": ["client_credentials"], "colour": "red"}),
                "colour",
            ),
        ] {
            let res = s.call(M::POST, "/admin/clients", Bearer(&a), Json(spec.clone())).await;
            let body = expect_problem(res, 422);
            assert!(body.to_string().contains(field), "{spec} -> {body}");
        }
        let res = s
            .call(
                M::POST,
                "/admin/clients",
                Bearer(&a),
                Json(json!({"client_id": "web", "name": "again", "redirect_uris": ["https://a.example/cb"]})),
            )
            .await;
        expect_problem(res, 409);
        assert_eq!(
            s.get_auth("/admin/clients", &a).await.json().as_array().unwrap().len(),
            3,
            "web, the public one and the command line's own client"
        );

        // PATCH: a field changes, others stay; a bad one changes nothing.
        let res = s
            .call(
                M::PATCH,
                "/admin/clients/web",
                Bearer(&a),
                Json(json!({"name": "Web", "first_party": true})),
            )
            .await;
        assert_eq!(res.status, 200, "{}", res.text);
        let patched = res.json();
        assert_eq!(
            (patched["name"].as_str(), patched["first_party"].as_bool()),
            (Some("Web"), Some(true))
        );
        assert_eq!(patched["redirect_uris"], json!(["https://app.example/cb"]));
        let res = s
            .call(
                M::PATCH,
                "/admin/clients/web",
                Bearer(&a),
                Json(json!({"name": "Changed", "redirect_uris": []})),
            )
            .await;
        expect_problem(res, 422);
        assert_eq!(s.get_auth("/admin/clients/web", &a).await.json()["name"], "Web");
        let res = s
            .call(M::PATCH, "/admin/clients/nope", Bearer(&a), Json(json!({"name": "x"})))
            .await;
        expect_problem(res, 404);
        expect_problem(s.get_auth("/admin/clients/nope", &a).await, 404);
        // Rotating a public client's secret: it has none.
        let spa_id = spa["client_id"].as_str().unwrap();
        let res = s
            .call(M::POST, &format!("/admin/clients/{spa_id}/secret"), Bearer(&a), Empty)
            .await;
        expect_problem(res, 400);

        // Audited, without the secret.
        let audit = s.get_auth("/audit/logs?action=CLIENT_CREATE,CLIENT_UPDATE", &a).await;
        assert_eq!(audit.status, 200, "{}", audit.text);
        assert!(!audit.text.contains(&secret));
        let records = audit.json();
        let actions: Vec<&str> = records["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["action"].as_str().unwrap())
            .collect();
        assert_eq!(
            actions.iter().filter(|a| **a == "CLIENT_CREATE").count(),
            3,
            "web, the public one, and the command line's own client at start: {actions:?}"
        );
        assert!(actions.contains(&"CLIENT_UPDATE"));

        // DELETE: gone.
        let res = s.call(M::DELETE, "/admin/clients/web", Bearer(&a), Empty).await;
        assert_eq!(res.status, 204, "{}", res.text);
        expect_problem(s.get_auth("/admin/clients/web", &a).await, 404);
        let res = s.call(M::DELETE, "/admin/clients/web", Bearer(&a), Empty).await;
        expect_problem(res, 404);
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_clients_authenticate_and_service_accounts_reach_the_api() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        let a = admin(&s).await.access;
        reader_role(&s, &a).await;
        let (svc, secret) = register(
            &s,
            &a,
            json!({"client_id": "svc", "name": "Nightly export", "grant_types": ["client_credentials"],
                   "roles": ["directory-reader"], "access_token_ttl": 600}),
        )
        .await;
        let secret = secret.unwrap();

        // client_secret_basic.
        let res = cc_token(&s, "svc", &secret).await;
        assert_eq!(res.status, 200, "{}", res.text);
        assert_eq!(res.header("cache-control"), Some("no-store"));
        let body = res.json();
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["scope"], "profile email");
        assert!(
            body.get("refresh_token").is_none() && body.get("id_token").is_none(),
            "{body}"
        );
        assert!(body["expires_in"].as_u64().unwrap() <= 600);
        let token = body["access_token"].as_str().unwrap().to_string();
        let claims = jwt_part(&token, 1);
        assert_eq!(claims["sub"], "svc");
        assert_eq!(claims["client_id"], "svc");
        assert_eq!(claims["preferred_username"], "Nightly export");
        assert_eq!(claims["uid"], claims["sid"]);
        assert_eq!(claims["roles"], json!(["directory-reader"]));
        assert_eq!(claims["permissions"], json!(["users:read"]));
        assert_eq!(claims["scope"], "profile email");
        assert!(svc.get("uid").is_none(), "the uid is not part of the API: {svc}");
        // client_secret_post, and a narrower scope.
        let res = oauth(
            &s,
            "/oauth2/token",
            None,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "svc"),
                ("client_secret", &secret),
                ("scope", "email"),
            ],
        )
        .await;
        assert_eq!(res.status, 200, "{}", res.text);
        assert_eq!(res.json()["scope"], "email");

        // Failures: the same 401 invalid_client for a wrong secret and an unknown client.
        let wrong = expect_oauth_error(cc_token(&s, "svc", "pcsec_wrong").await, 401, "invalid_client");
        let unknown = expect_oauth_error(cc_token(&s, "ghost", &secret).await, 401, "invalid_client");
        assert_eq!(wrong, unknown);
        let res = oauth(&s, "/oauth2/token", None, &[("grant_type", "client_credentials")]).await;
        expect_oauth_error(res, 401, "invalid_client");
        let res = oauth(
            &s,
            "/oauth2/token",
            None,
            &[("grant_type", "client_credentials"), ("client_id", "svc")],
        )
        .await;
        expect_oauth_error(res, 401, "invalid_client");
        for scope in ["openid", "roles", "profile bogus"] {
            let res = oauth(
                &s,
                "/oauth2/token",
                Some(("svc", &secret)),
                &[("grant_type", "client_credentials"), ("scope", scope)],
            )
            .await;
            expect_oauth_error(res, 400, "invalid_scope");
        }
        let res = oauth(
            &s,
            "/oauth2/token",
            Some(("svc", &secret)),
            &[("grant_type", "password")],
        )
        .await;
        expect_oauth_error(res, 400, "unsupported_grant_type");
        let res = oauth(&s, "/oauth2/token", Some(("svc", &secret)), &[]).await;
        expect_oauth_error(res, 400, "invalid_request");
        // A public client authenticates by its id alone (`none`) but may not use the
        // grant; presenting a secret it does not have fails.
        register(
            &s,
            &a,
            json!({"client_id": "cli", "name": "CLI", "type": "public", "redirect_uris": ["http://127.0.0.1/cb"]}),
        )
        .await;
        let res = oauth(
            &s,
            "/oauth2/token",
            None,
            &[("grant_type", "client_credentials"), ("client_id", "cli")],
        )
        .await;
        expect_oauth_error(res, 400, "unauthorized_client");
        let res = cc_token(&s, "cli", "anything").await;
        expect_oauth_error(res, 401, "invalid_client");
        // A confidential client without the grant.
        let (_, web_secret) = register(
            &s,
            &a,
            json!({"client_id": "web", "name": "Web", "redirect_uris": ["https://app.example/cb"]}),
        )
        .await;
        expect_oauth_error(
            cc_token(&s, "web", &web_secret.unwrap()).await,
            400,
            "unauthorized_client",
        );

        // The token on the API: a Permission route by its permissions, never a Person
        // route, /auth/me a clear 403.
        let res = s.get_auth("/admin/users", &token).await;
        assert_eq!(res.status, 200, "{}", res.text);
        expect_problem(s.get_auth("/admin/clients", &token).await, 403);
        expect_problem(s.get_auth("/auth/sessions", &token).await, 403);
        expect_problem(s.get_auth("/auth/me", &token).await, 403);
        let verify = s.get_auth("/auth/verify?permission=users:read", &token).await;
        assert_eq!(verify.status, 200, "{}", verify.text);

        // Issuing is audited, without the secret or the token.
        let audit = s.get_auth("/audit/logs?action=CLIENT_TOKEN", &a).await;
        assert_eq!(audit.status, 200, "{}", audit.text);
        assert!(!audit.text.contains(&secret) && !audit.text.contains(&token));
        let items = audit.json()["items"].as_array().unwrap().clone();
        assert_eq!(items.len(), 2, "{items:?}");
        assert_eq!(items[0]["resource_id"], "svc");

        // Taking a role away ends its tokens; the next one carries what is left.
        let res = s
            .call(M::PATCH, "/admin/clients/svc", Bearer(&a), Json(json!({"roles": []})))
            .await;
        assert_eq!(res.status, 200, "{}", res.text);
        expect_invalid_token(s.get_auth("/admin/users", &token).await);
        let res = cc_token(&s, "svc", &secret).await;
        assert_eq!(res.status, 200, "{}", res.text);
        let bare = res.json()["access_token"].as_str().unwrap().to_string();
        assert_eq!(jwt_part(&bare, 1)["roles"], json!([]));
        expect_problem(s.get_auth("/admin/users", &bare).await, 403);
        let res = s
            .call(
                M::PATCH,
                "/admin/clients/svc",
                Bearer(&a),
                Json(json!({"roles": ["directory-reader"]})),
            )
            .await;
        assert_eq!(res.status, 200, "{}", res.text);
        // Adding a role ends nothing.
        expect_problem(s.get_auth("/admin/users", &bare).await, 403);

        // Rotation with the default grace: both secrets work, tokens live on.
        let token = cc_token(&s, "svc", &secret).await.json()["access_token"]
            .as_str()
            .unwrap()
            .to_string();
        let res = s.call(M::POST, "/admin/clients/svc/secret", Bearer(&a), Empty).await;
        assert_eq!(res.status, 200, "{}", res.text);
        assert_eq!(res.header("cache-control"), Some("no-store"));
        let rotated = res.json();
        let second = rotated["client_secret"].as_str().unwrap().to_string();
        assert_ne!(second, secret);
        assert!(rotated["previous_secret_expires_at"].is_string(), "{rotated}");
        assert_eq!(cc_token(&s, "svc", &secret).await.status, 200);
        assert_eq!(cc_token(&s, "svc", &second).await.status, 200);
        assert_eq!(s.get_auth("/admin/users", &token).await.status, 200);
        // Bad bodies: 422, and the secret is unchanged.
        for body in [
            json!({"grace_seconds": -1}),
            json!({"grace_seconds": 99_999_999}),
            json!({"grace": 1}),
        ] {
            let res = s
                .call(M::POST, "/admin/clients/svc/secret", Bearer(&a), Json(body))
                .await;
            expect_problem(res, 422);
        }
        assert_eq!(cc_token(&s, "svc", &second).await.status, 200);
        // With grace 0: the old secret and every token so far are refused at once;
        // the new secret's tokens work.
        let res = s
            .call(
                M::POST,
                "/admin/clients/svc/secret",
                Bearer(&a),
                Json(json!({"grace_seconds": 0})),
            )
            .await;
        assert_eq!(res.status, 200, "{}", res.text);
        let third = res.json()["client_secret"].as_str().unwrap().to_string();
        expect_oauth_error(cc_token(&s, "svc", &second).await, 401, "invalid_client");
        expect_oauth_error(cc_token(&s, "svc", &secret).await, 401, "invalid_client");
        expect_invalid_token(s.get_auth("/admin/users", &token).await);
        let res = cc_token(&s, "svc", &third).await;
        assert_eq!(res.status, 200, "{}", res.text);
        let fresh = res.json()["access_token"].as_str().unwrap().to_string();
        assert_eq!(s.get_auth("/admin/users", &fresh).await.status, 200);

        // Deleting the client: its tokens and its secret are refused.
        let res = s.call(M::DELETE, "/admin/clients/svc", Bearer(&a), Empty).await;
        assert_eq!(res.status, 204);
        expect_invalid_token(s.get_auth("/admin/users", &fresh).await);
        expect_oauth_error(cc_token(&s, "svc", &third).await, 401, "invalid_client");
        s.stop().await;
    }
}

/// A key of `alg` for the client's JWKS, and how to sign with it.
fn client_key(alg: SigningAlgorithm) -> (Value, EncodingKey, Algorithm) {
    let key = portcullis::crypto::jwt::generate(alg).unwrap();
    let (encoding, algorithm) = match alg {
        SigningAlgorithm::Rs256 => (EncodingKey::from_rsa_der(&key.private_der), Algorithm::RS256),
        SigningAlgorithm::Es256 => (EncodingKey::from_ec_der(&key.private_der), Algorithm::ES256),
        _ => (EncodingKey::from_ed_der(&key.private_der), Algorithm::EdDSA),
    };
    (key.public_jwk, encoding, algorithm)
}

fn assertion(key: &(Value, EncodingKey, Algorithm), claims: Value) -> String {
    let mut header = Header::new(key.2);
    header.kid = key.0["kid"].as_str().map(str::to_string);
    jsonwebtoken::encode(&header, &claims, &key.1).unwrap()
}

fn assertion_claims(client_id: &str, aud: &str) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({"iss": client_id, "sub": client_id, "aud": aud, "iat": now, "exp": now + 120,
           "jti": uuid::Uuid::new_v4().to_string()})
}

async fn jwt_token(s: &TestServer, jwt: &str) -> Reply {
    oauth(
        s,
        "/oauth2/token",
        None,
        &[
            ("grant_type", "client_credentials"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", jwt),
        ],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_clients_private_key_jwt() {
    for backend in backends().await {
        let (s, _db) = TestServer::start_with(backend, &[("PORTCULLIS_PUBLIC_URL", "https://id.example")]).await;
        let a = admin(&s).await.access;
        let keys: Vec<_> = [
            SigningAlgorithm::Rs256,
            SigningAlgorithm::Es256,
            SigningAlgorithm::EdDsa,
        ]
        .into_iter()
        .map(client_key)
        .collect();
        let jwks = json!({"keys": keys.iter().map(|k| k.0.clone()).collect::<Vec<_>>()});
        let (created, secret) = register(
            &s,
            &a,
            json!({"client_id": "signer", "name": "Signer", "grant_types": ["client_credentials"],
                   "token_endpoint_auth_method": "private_key_jwt", "jwks": jwks}),
        )
        .await;
        assert!(secret.is_none() && created["has_secret"] == false, "{created}");
        let token_url = "https://id.example/oauth2/token";
        let issuer = s.service.config().tokens.jwt_issuer.clone();

        // Each kind of key, with the token endpoint or the issuer as audience.
        for (i, key) in keys.iter().enumerate() {
            let aud = if i == 1 { issuer.as_str() } else { token_url };
            let res = jwt_token(&s, &assertion(key, assertion_claims("signer", aud))).await;
            assert_eq!(res.status, 200, "{:?}: {}", key.2, res.text);
            assert_eq!(
                jwt_part(res.json()["access_token"].as_str().unwrap(), 1)["sub"],
                "signer"
            );
        }
        // With client_id in the form too, when it agrees.
        let jwt = assertion(&keys[0], assertion_claims("signer", token_url));
        let res = oauth(
            &s,
            "/oauth2/token",
            None,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "signer"),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", &jwt),
            ],
        )
        .await;
        assert_eq!(res.status, 200, "{}", res.text);
        // Replayed: refused.
        let body = expect_oauth_error(jwt_token(&s, &jwt).await, 401, "invalid_client");
        assert!(
            body["error_description"].as_str().unwrap().contains("used before"),
            "{body}"
        );

        // A key not registered, even under a registered kid.
        let mut stranger = client_key(SigningAlgorithm::Es256);
        stranger.0["kid"] = keys[1].0["kid"].clone();
        let res = jwt_token(&s, &assertion(&stranger, assertion_claims("signer", token_url))).await;
        expect_oauth_error(res, 401, "invalid_client");
        // Wrong audience, wrong issuer/subject, too long-lived, no jti, expired.
        let now = chrono::Utc::now().timestamp();
        let mut bad = Vec::new();
        bad.push(assertion_claims("signer", "https://elsewhere.example/token"));
        let mut c = assertion_claims("signer", token_url);
        c["sub"] = json!("someone");
        bad.push(c);
        let mut c = assertion_claims("signer", token_url);
        c["exp"] = json!(now + 3600);
        bad.push(c);
        let mut c = assertion_claims("signer", token_url);
        c.as_object_mut().unwrap().remove("jti");
        bad.push(c);
        let mut c = assertion_claims("signer", token_url);
        c["exp"] = json!(now - 600);
        bad.push(c);
        let mut c = assertion_claims("signer", token_url);
        c.as_object_mut().unwrap().remove("exp");
        bad.push(c);
        for claims in bad {
            let res = jwt_token(&s, &assertion(&keys[0], claims.clone())).await;
            expect_oauth_error(res, 401, "invalid_client");
        }
        // The wrong assertion type, a form client_id that disagrees, garbage.
        let good = assertion(&keys[2], assertion_claims("signer", token_url));
        let res = oauth(
            &s,
            "/oauth2/token",
            None,
            &[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", "jwt"),
                ("client_assertion", &good),
            ],
        )
        .await;
        expect_oauth_error(res, 401, "invalid_client");
        let res = oauth(
            &s,
            "/oauth2/token",
            None,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "other"),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", &good),
            ],
        )
        .await;
        expect_oauth_error(res, 401, "invalid_client");
        expect_oauth_error(jwt_token(&s, "not.a.jwt").await, 401, "invalid_client");
        // An assertion signed with HS256 over a public key's text: no key verifies it.
        let hs = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &assertion_claims("signer", token_url),
            &EncodingKey::from_secret(keys[0].0.to_string().as_bytes()),
        )
        .unwrap();
        expect_oauth_error(jwt_token(&s, &hs).await, 401, "invalid_client");
        // A secret client cannot authenticate with an assertion, nor the signer with a secret.
        let (_, svc_secret) = register(
            &s,
            &a,
            json!({"client_id": "svc", "name": "Svc", "grant_types": ["client_credentials"]}),
        )
        .await;
        let res = jwt_token(&s, &assertion(&keys[0], assertion_claims("svc", token_url))).await;
        expect_oauth_error(res, 401, "invalid_client");
        expect_oauth_error(
            cc_token(&s, "signer", &svc_secret.unwrap()).await,
            401,
            "invalid_client",
        );
        // The good one, unused so far, still works.
        assert_eq!(jwt_token(&s, &good).await.status, 200);
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_clients_introspect_and_revoke() {
    for backend in backends().await {
        let (s, db) = TestServer::start(backend).await;
        let a = admin(&s).await.access;
        let (_, rs_secret) = register(
            &s,
            &a,
            json!({"client_id": "rs", "name": "Resource server", "grant_types": ["client_credentials"]}),
        )
        .await;
        let rs_secret = rs_secret.unwrap();
        register(
            &s,
            &a,
            json!({"client_id": "app", "name": "App", "type": "public", "redirect_uris": ["https://app.example/cb"]}),
        )
        .await;
        let svc_token = cc_token(&s, "rs", &rs_secret).await.json()["access_token"]
            .as_str()
            .unwrap()
            .to_string();
        let carol = s.user("carol").await;

        // Introspection by a confidential client.
        let introspect = |token: String| {
            let s = &s;
            let secret = rs_secret.clone();
            async move { oauth(s, "/oauth2/introspect", Some(("rs", &secret)), &[("token", &token)]).await }
        };
        let res = introspect(svc_token.clone()).await;
        assert_eq!(res.status, 200, "{}", res.text);
        let body = res.json();
        assert_eq!(body["active"], true);
        assert_eq!(body["client_id"], "rs");
        assert_eq!(body["sub"], "rs");
        assert_eq!(body["scope"], "profile email");
        let body = introspect(carol.access.clone()).await.json();
        assert_eq!(body["active"], true);
        assert_eq!(body["username"], "carol");
        assert!(body.get("client_id").is_none(), "{body}");
        assert_eq!(introspect("garbage".into()).await.json(), json!({"active": false}));
        // Not for public clients, nor without credentials or a token.
        let res = oauth(
            &s,
            "/oauth2/introspect",
            None,
            &[("client_id", "app"), ("token", &carol.access)],
        )
        .await;
        expect_oauth_error(res, 400, "unauthorized_client");
        let res = oauth(&s, "/oauth2/introspect", None, &[("token", &carol.access)]).await;
        expect_oauth_error(res, 401, "invalid_client");
        let res = oauth(
            &s,
            "/oauth2/introspect",
            Some(("rs", "pcsec_wrong")),
            &[("token", &carol.access)],
        )
        .await;
        expect_oauth_error(res, 401, "invalid_client");
        let res = oauth(&s, "/oauth2/introspect", Some(("rs", &rs_secret)), &[]).await;
        expect_oauth_error(res, 400, "invalid_request");

        // Revocation: a token not issued to the client is left alone (RFC 7009 2.1).
        let res = oauth(
            &s,
            "/oauth2/revoke",
            Some(("rs", &rs_secret)),
            &[("token", &carol.refresh)],
        )
        .await;
        assert_eq!(res.status, 200, "{}", res.text);
        let res = oauth(
            &s,
            "/oauth2/revoke",
            None,
            &[("client_id", "app"), ("token", &carol.access)],
        )
        .await;
        assert_eq!(res.status, 200, "{}", res.text);
        assert_eq!(s.get_auth("/auth/me", &carol.access).await.status, 200);
        let carol = s.refresh(&carol.refresh).await.tokens();
        // Once carol's session is one started for `app`, `app` may end it; `rs` still not.
        execute_sql(
            &db,
            "UPDATE sessions SET client_id = 'app' WHERE user_id IN (SELECT id FROM users WHERE username = 'carol')",
        )
        .await;
        let res = oauth(
            &s,
            "/oauth2/revoke",
            Some(("rs", &rs_secret)),
            &[("token", &carol.refresh)],
        )
        .await;
        assert_eq!(res.status, 200);
        assert_eq!(s.get_auth("/auth/me", &carol.access).await.status, 200);
        let res = oauth(
            &s,
            "/oauth2/revoke",
            None,
            &[("client_id", "app"), ("token", &carol.refresh)],
        )
        .await;
        assert_eq!(res.status, 200, "{}", res.text);
        expect_invalid_token(s.get_auth("/auth/me", &carol.access).await);
        assert_eq!(s.refresh(&carol.refresh).await.status, 401);
        // Unknown tokens: the same empty answer; a bad client: 401.
        let res = oauth(
            &s,
            "/oauth2/revoke",
            None,
            &[("client_id", "app"), ("token", "nothing")],
        )
        .await;
        assert_eq!(res.status, 200);
        let res = oauth(
            &s,
            "/oauth2/revoke",
            None,
            &[("client_id", "ghost"), ("token", "nothing")],
        )
        .await;
        expect_oauth_error(res, 401, "invalid_client");
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_clients_cli_manages_clients() {
    for backend in backends().await {
        let db = TestDb::new(backend).await;
        let run = |args: Vec<String>| {
            let mut c = binary_on(&db);
            c.args(args);
            async move {
                tokio::task::spawn_blocking(move || run_binary(&mut c, ""))
                    .await
                    .unwrap()
            }
        };
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let dir = tempfile::tempdir().unwrap();
        let jwks_file = dir.path().join("jwks.json");
        let key = client_key(SigningAlgorithm::Es256);
        std::fs::write(&jwks_file, json!({"keys": [key.0.clone()]}).to_string()).unwrap();

        // create: the secret alone on standard output, this once.
        let (code, out, err) = run(args(&[
            "client",
            "create",
            "--name",
            "Nightly",
            "--client-id",
            "svc",
            "--grant",
            "client_credentials",
            "--scope",
            "profile",
            "--role",
            "viewer",
            "--access-token-ttl",
            "300",
        ]))
        .await;
        assert_eq!(code, 0, "{err}");
        let secret = out.trim().to_string();
        assert!(secret.starts_with("pcsec_") && !secret.contains('\n'), "{out}");
        assert!(!err.contains(&secret), "{err}");
        // --json: the whole client with its secret.
        let jwks_path = jwks_file.to_str().unwrap();
        let (code, out, err) = run(args(&[
            "--json",
            "client",
            "create",
            "--name",
            "Web",
            "--client-id",
            "web",
            "--redirect-uri",
            "https://app.example/cb",
            "--redirect-uri",
            "https://app.example/cb2",
            "--post-logout-redirect-uri",
            "https://app.example/bye",
            "--first-party",
            "--backchannel-logout-uri",
            "https://app.example/bc",
            "--refresh-token-ttl",
            "3600",
            "--auth-method",
            "private_key_jwt",
            "--jwks-file",
            jwks_path,
        ]))
        .await;
        assert_eq!(code, 0, "{err}");
        let web: Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(
            web["redirect_uris"],
            json!(["https://app.example/cb", "https://app.example/cb2"])
        );
        assert_eq!(web["first_party"], true);
        assert_eq!(web["token_endpoint_auth_method"], "private_key_jwt");
        assert_eq!(web["jwks"]["keys"][0]["kid"], key.0["kid"]);
        assert!(web.get("client_secret").is_none());
        let (code, out, _) = run(args(&[
            "client",
            "create",
            "--name",
            "SPA",
            "--public",
            "--redirect-uri",
            "https://spa.example/cb",
        ]))
        .await;
        assert_eq!(code, 0);
        assert!(out.contains("has no secret"), "{out}");
        // Refused: bad input (4), bad usage (2).
        let (code, _, err) = run(args(&[
            "client",
            "create",
            "--name",
            "X",
            "--redirect-uri",
            "http://x.example/cb",
        ]))
        .await;
        assert_eq!(code, 4, "{err}");
        assert!(err.contains("redirect_uris"), "{err}");
        let (code, _, _) = run(args(&["client", "create", "--name", "X", "--auth-method", "magic"])).await;
        assert_eq!(code, 2);

        // list, show: never a secret.
        let (code, out, err) = run(args(&["--json", "client", "list"])).await;
        assert_eq!(code, 0, "{err}");
        let list: Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(list.as_array().unwrap().len(), 3);
        assert!(!out.contains(&secret));
        let (code, out, _) = run(args(&["client", "list"])).await;
        assert_eq!(code, 0);
        assert!(
            out.contains("svc") && out.contains("web") && !out.contains(&secret),
            "{out}"
        );
        let (code, out, _) = run(args(&["client", "show", "svc"])).await;
        assert_eq!(code, 0);
        assert!(out.contains("viewer") && out.contains("300 s"), "{out}");
        assert_eq!(run(args(&["client", "show", "nope"])).await.0, 3);

        // The secret works against a server on the same database.
        let s = TestServer::on(&db, &[]).await;
        let res = cc_token(&s, "svc", &secret).await;
        assert_eq!(res.status, 200, "{}", res.text);
        let token = res.json()["access_token"].as_str().unwrap().to_string();
        assert_eq!(jwt_part(&token, 1)["roles"], json!(["viewer"]));

        // update: replaces what is given.
        let (code, out, err) = run(args(&[
            "--json",
            "client",
            "update",
            "web",
            "--name",
            "Web 2",
            "--clear-post-logout-redirect-uris",
            "--clear-backchannel-logout-uri",
            "--first-party",
            "false",
            "--default-refresh-token-ttl",
        ]))
        .await;
        assert_eq!(code, 0, "{err}");
        let web: Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(web["name"], "Web 2");
        assert_eq!(web["post_logout_redirect_uris"], json!([]));
        assert!(
            web["backchannel_logout_uri"].is_null() && web["refresh_token_ttl"].is_null(),
            "{web}"
        );
        assert_eq!(web["first_party"], false);
        assert_eq!(web["redirect_uris"].as_array().unwrap().len(), 2);
        // Taking svc's role away ends its token (on the server, through the feed).
        expect_problem(s.get_auth("/admin/users", &token).await, 403);
        let (code, _, err) = run(args(&["client", "update", "svc", "--clear-roles"])).await;
        assert_eq!(code, 0, "{err}");
        within(
            std::time::Duration::from_secs(5),
            "the revocation reaches the server",
            || async { s.get_auth("/admin/users", &token).await.status == 401 },
        )
        .await;

        // rotate-secret: the new secret once; with grace 0 the old one ends.
        let (code, out, err) = run(args(&["client", "rotate-secret", "svc", "--grace-seconds", "0"])).await;
        assert_eq!(code, 0, "{err}");
        let second = out.trim().to_string();
        assert!(second.starts_with("pcsec_") && second != secret);
        expect_oauth_error(cc_token(&s, "svc", &secret).await, 401, "invalid_client");
        assert_eq!(cc_token(&s, "svc", &second).await.status, 200);
        // A private_key_jwt client may get a secret (to switch to a secret method
        // later); while it keeps its method, the secret does not authenticate it.
        let (code, out, err) = run(args(&["client", "rotate-secret", "web"])).await;
        assert_eq!(code, 0, "{err}");
        assert!(out.trim().starts_with("pcsec_"), "{out}");

        // delete.
        let (code, out, err) = run(args(&["--json", "client", "delete", "svc"])).await;
        assert_eq!(code, 0, "{err}");
        assert_eq!(
            serde_json::from_str::<Value>(out.trim()).unwrap(),
            json!({"client_id": "svc", "deleted": true})
        );
        expect_oauth_error(cc_token(&s, "svc", &second).await, 401, "invalid_client");
        assert_eq!(run(args(&["client", "delete", "svc"])).await.0, 3);

        // Audited as the operator, without secrets.
        let a = admin(&s).await.access;
        let audit = s
            .get_auth(
                "/audit/logs?action=CLIENT_CREATE,CLIENT_UPDATE,CLIENT_SECRET_ROTATE,CLIENT_DELETE",
                &a,
            )
            .await;
        assert_eq!(audit.status, 200);
        assert!(!audit.text.contains(&secret) && !audit.text.contains(&second));
        // Seven here, the command line's own client at start, and web's secret.
        assert_eq!(audit.json()["items"].as_array().unwrap().len(), 9);
        s.stop().await;
    }
}
