//! Hostile tokens beyond the forged table in `tokens`: foreign keys under our kid,
//! key-fetching headers, validly signed tokens with hostile contents, and tokens of
//! users who no longer exist. Each must get 401 (never 500), on both backends.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use jsonwebtoken::{Algorithm, EncodingKey};
use portcullis::config::SigningAlgorithm;
use portcullis::crypto::jwt::generate;
use serde_json::{Value, json};

use crate::support::*;

fn b64json(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

/// header.payload.signature over exactly these bytes (payload need not be JSON).
fn sign_raw(header: &Value, payload: &[u8], key: &EncodingKey, alg: Algorithm) -> String {
    let message = format!("{}.{}", b64json(header), URL_SAFE_NO_PAD.encode(payload));
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).unwrap();
    format!("{message}.{signature}")
}

/// A listener that only counts connections: a server that fetched a `jku`/`x5u` URL
/// would show up here.
async fn connection_counter() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            drop(socket);
        }
    });
    (url, count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_keys_and_key_urls_are_never_trusted() {
    let (jku, fetched) = connection_counter().await;
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        let t = s.user("target").await;
        let header = jwt_part(&t.access, 0);
        let our_kid = header["kid"].as_str().unwrap().to_string();
        let mut claims = jwt_part(&t.access, 1);
        let payload = serde_json::to_vec(&claims).unwrap();

        let rsa = generate(SigningAlgorithm::Rs256).unwrap();
        let rsa_key = EncodingKey::from_rsa_der(&rsa.private_der);
        let ec = generate(SigningAlgorithm::Es256).unwrap();
        let ec_key = EncodingKey::from_ec_der(&ec.private_der);
        claims["exp"] = json!(Utc::now().timestamp() + 10 * 365 * 86_400);
        let far_future = serde_json::to_vec(&claims).unwrap();

        let forged: Vec<(&str, String)> = vec![
            (
                "RS256 token against our ES256 key",
                sign_raw(
                    &json!({"alg": "RS256", "typ": "JWT", "kid": our_kid}),
                    &payload,
                    &rsa_key,
                    Algorithm::RS256,
                ),
            ),
            (
                "foreign ES256 key under our kid, exp far in the future",
                sign_raw(
                    &json!({"alg": "ES256", "typ": "JWT", "kid": our_kid}),
                    &far_future,
                    &ec_key,
                    Algorithm::ES256,
                ),
            ),
            (
                "foreign key published at jku",
                sign_raw(
                    &json!({"alg": "ES256", "typ": "JWT", "kid": ec.kid, "jku": jku}),
                    &payload,
                    &ec_key,
                    Algorithm::ES256,
                ),
            ),
            (
                "our kid, foreign key, jku and x5u",
                sign_raw(
                    &json!({"alg": "ES256", "typ": "JWT", "kid": our_kid, "jku": jku, "x5u": jku}),
                    &payload,
                    &ec_key,
                    Algorithm::ES256,
                ),
            ),
            (
                "embedded jwk",
                sign_raw(
                    &json!({"alg": "ES256", "typ": "JWT", "kid": ec.kid, "jwk": ec.public_jwk}),
                    &payload,
                    &ec_key,
                    Algorithm::ES256,
                ),
            ),
        ];
        for (name, token) in forged {
            let res = s.get_auth("/auth/me", &token).await;
            let status = res.status;
            let body = expect_invalid_token(res);
            assert_eq!(status, 401, "{name}: {body}");
        }
        assert_eq!(fetched.load(Ordering::SeqCst), 0, "a key URL was fetched");

        // A deleted user's token stops working at once.
        let admin = s.login_as("admin", ADMIN_PASSWORD).await;
        let id = t.user_id();
        assert_eq!(s.get_auth("/auth/me", &t.access).await.status, 200);
        let res = s
            .call(M::DELETE, &format!("/admin/users/{id}"), Bearer(&admin.access), Empty)
            .await;
        assert_eq!(res.status, 204);
        expect_invalid_token(s.get_auth("/auth/me", &t.access).await);
        expect_invalid_token(s.get_auth("/auth/verify", &t.access).await);
        s.stop().await;
    }
}

/// With a shared secret the test can sign anything validly, so what is checked here
/// is the content, not the signature.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validly_signed_hostile_contents_are_refused() {
    let secret = "a-shared-secret-of-at-least-32-characters";
    let (jku, fetched) = connection_counter().await;
    for backend in backends().await {
        let (s, _db) = TestServer::start_with(backend, &[("JWT_SECRET_KEY", secret), ("JWT_ALGORITHM", "HS256")]).await;
        let t = s.user("hs-target").await;
        let key = EncodingKey::from_secret(secret.as_bytes());
        let header = jwt_part(&t.access, 0);
        let kid = header["kid"].as_str().unwrap().to_string();
        let claims = jwt_part(&t.access, 1);
        let hs = |header: Value, payload: &[u8]| sign_raw(&header, payload, &key, Algorithm::HS256);
        let std_header = json!({"alg": "HS256", "typ": "JWT", "kid": kid});
        let claims_text = serde_json::to_string(&claims).unwrap();
        let with = |f: &dyn Fn(&mut Value)| {
            let mut c = claims.clone();
            f(&mut c);
            serde_json::to_vec(&c).unwrap()
        };

        // Sanity: the test's own signing is right, and a key URL changes nothing.
        let resigned = hs(std_header.clone(), claims_text.as_bytes());
        assert_eq!(s.get_auth("/auth/me", &resigned).await.status, 200);
        let with_jku = hs(
            json!({"alg": "HS256", "typ": "JWT", "kid": kid, "jku": jku, "x5u": jku}),
            claims_text.as_bytes(),
        );
        assert_eq!(s.get_auth("/auth/me", &with_jku).await.status, 200);
        assert_eq!(fetched.load(Ordering::SeqCst), 0, "a key URL was fetched");

        let duplicated = {
            // The same claims, then `roles` again: a last-wins parser would see an admin.
            let trimmed = claims_text.trim_end_matches('}');
            format!(r#"{trimmed},"roles":["admin"]}}"#)
        };
        let cases: Vec<(&str, String)> = vec![
            (
                "nested JWT",
                hs(
                    json!({"alg": "HS256", "typ": "JWT", "cty": "JWT", "kid": kid}),
                    t.access.as_bytes(),
                ),
            ),
            ("duplicate claims", hs(std_header.clone(), duplicated.as_bytes())),
            (
                "wrong typ",
                hs(
                    json!({"alg": "HS256", "typ": "refresh+jwt", "kid": kid}),
                    claims_text.as_bytes(),
                ),
            ),
            ("claims not an object", hs(std_header.clone(), b"[1,2,3]")),
            ("claims not JSON", hs(std_header.clone(), b"\xff\xfe garbage")),
            (
                "exp missing",
                hs(
                    std_header.clone(),
                    &with(&|c| drop(c.as_object_mut().unwrap().remove("exp"))),
                ),
            ),
            (
                "exp as text",
                hs(std_header.clone(), &with(&|c| c["exp"] = json!("tomorrow"))),
            ),
            (
                "exp overflowing",
                hs(std_header.clone(), &with(&|c| c["exp"] = json!(1e300))),
            ),
            (
                "roles not a list",
                hs(std_header.clone(), &with(&|c| c["roles"] = json!("admin"))),
            ),
            (
                "huge claims",
                hs(std_header.clone(), &with(&|c| c["pad"] = json!("x".repeat(30_000)))),
            ),
            (
                "ES256 token against the shared secret",
                sign_raw(
                    &json!({"alg": "ES256", "typ": "JWT", "kid": kid}),
                    claims_text.as_bytes(),
                    &EncodingKey::from_ec_der(&generate(SigningAlgorithm::Es256).unwrap().private_der),
                    Algorithm::ES256,
                ),
            ),
            (
                "alg none",
                format!(
                    "{}.{}.",
                    b64json(&json!({"alg": "none", "typ": "JWT", "kid": kid})),
                    URL_SAFE_NO_PAD.encode(claims_text.as_bytes())
                ),
            ),
        ];
        for (name, token) in cases {
            let res = s.get_auth("/auth/me", &token).await;
            let status = res.status;
            let body = expect_invalid_token(res);
            assert_eq!(status, 401, "{name}: {body}");
        }
        s.stop().await;
    }
}
