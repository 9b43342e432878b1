//! Access tokens: claims, algorithm pinning, forged and stale tokens, key rotation,
//! algorithm choice and HS256 compatibility.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use portcullis::crypto::jwt::AccessClaims;
use portcullis::domain::Actor;
use serde_json::{Value, json};

use crate::support::*;

fn claims_of(token: &str) -> AccessClaims {
    serde_json::from_value(jwt_part(token, 1)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_tokens_carry_the_documented_claims() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        let t = s.user("claims").await;
        let header = jwt_part(&t.access, 0);
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["typ"], "JWT");
        let kid = header["kid"].as_str().unwrap();
        let jwks = s.jwks().await;
        assert!(
            jwks["keys"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["kid"] == kid && k["kty"] == "EC" && k.get("d").is_none())
        );
        let c = jwt_part(&t.access, 1);
        for claim in [
            "iss",
            "sub",
            "aud",
            "exp",
            "iat",
            "nbf",
            "jti",
            "sid",
            "preferred_username",
            "roles",
            "permissions",
            "amr",
        ] {
            assert!(c.get(claim).is_some(), "missing {claim} in {c}");
        }
        assert_eq!(c["preferred_username"], "claims");
        assert_eq!(c["aud"], "portcullis");
        assert_eq!(c["amr"], json!(["pwd"]));
        assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 900);
        let me: Value = s.get_auth("/auth/me", &t.access).await.json();
        assert_eq!(me["user_id"], c["sub"]);
        assert_eq!(me["session_id"], c["sid"]);

        // The bootstrap admin carries the admin role and every permission.
        let admin = s.login_as("admin", ADMIN_PASSWORD).await;
        let ac = jwt_part(&admin.access, 1);
        assert_eq!(ac["roles"], json!(["admin"]));
        let perms: Vec<&str> = ac["permissions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
        for p in ["users:manage", "audit:read", "projects:create", "keys:manage"] {
            assert!(perms.contains(&p), "{p}");
        }
        s.stop().await;
    }
}

fn b64json(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_stale_tokens_are_refused() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        let t = s.user("victim").await;
        let good = claims_of(&t.access);
        let header = jwt_part(&t.access, 0);
        let kid = header["kid"].as_str().unwrap().to_string();
        let jwk_text = s.jwks().await["keys"][0].to_string();
        let ring = s.service.keys().ring();
        let now = Utc::now().timestamp();
        let with = |f: &dyn Fn(&mut AccessClaims)| {
            let mut c = good.clone();
            f(&mut c);
            ring.sign(&c).unwrap()
        };
        let parts: Vec<&str> = t.access.split('.').collect();
        let mut hs_header = Header::new(Algorithm::HS256);
        hs_header.kid = Some(kid.clone());
        let elevated = {
            let mut c = good.clone();
            c.roles = vec!["admin".into()];
            c
        };

        let forged: Vec<(&str, String)> = vec![
            (
                "alg none",
                format!(
                    "{}.{}.",
                    b64json(&json!({"alg": "none", "typ": "JWT", "kid": kid})),
                    parts[1]
                ),
            ),
            (
                "HS256 signed with the public key",
                jsonwebtoken::encode(&hs_header, &good, &EncodingKey::from_secret(jwk_text.as_bytes())).unwrap(),
            ),
            ("stripped signature", format!("{}.{}.", parts[0], parts[1])),
            (
                "tampered claims",
                format!(
                    "{}.{}.{}",
                    parts[0],
                    b64json(&serde_json::to_value(&elevated).unwrap()),
                    parts[2]
                ),
            ),
            (
                "unknown kid",
                format!(
                    "{}.{}.{}",
                    b64json(&json!({"alg": "ES256", "typ": "JWT", "kid": "no-such-key"})),
                    parts[1],
                    parts[2]
                ),
            ),
            (
                "kid path traversal",
                format!(
                    "{}.{}.{}",
                    b64json(&json!({"alg": "ES256", "kid": "../../etc/passwd"})),
                    parts[1],
                    parts[2]
                ),
            ),
            (
                "kid sql",
                format!(
                    "{}.{}.{}",
                    b64json(&json!({"alg": "ES256", "kid": "' OR '1'='1"})),
                    parts[1],
                    parts[2]
                ),
            ),
            (
                "no kid",
                format!(
                    "{}.{}.{}",
                    b64json(&json!({"alg": "ES256", "typ": "JWT"})),
                    parts[1],
                    parts[2]
                ),
            ),
            (
                "wrong typ",
                format!(
                    "{}.{}.{}",
                    b64json(&json!({"alg": "ES256", "typ": "refresh+jwt", "kid": kid})),
                    parts[1],
                    parts[2]
                ),
            ),
            (
                "expired",
                with(&|c| {
                    c.iat = now - 3600;
                    c.nbf = now - 3600;
                    c.exp = now - 600;
                }),
            ),
            ("not yet valid", with(&|c| c.nbf = now + 600)),
            ("wrong issuer", with(&|c| c.iss = "https://evil.example".into())),
            ("wrong audience", with(&|c| c.aud = Some("another-service".into()))),
            ("sub not a user id", with(&|c| c.sub = "admin".into())),
            ("garbage", "not.a.jwt".into()),
            ("huge", format!("{}.{}.{}", parts[0], "A".repeat(20_000), parts[2])),
        ];
        // The genuine token is in the verified-token cache now: none of the forgeries
        // built from it may be answered from there.
        assert_eq!(s.get_auth("/auth/me", &t.access).await.status, 200);
        for (name, token) in forged {
            let res = s.get_auth("/auth/me", &token).await;
            let status = res.status;
            let body = expect_invalid_token(res);
            assert_eq!(status, 401, "{name}: {body}");
        }
        // Not a bearer credential at all.
        let basic = [("authorization", "Basic dXNlcjpwYXNz")];
        let res = s.http.call_with(M::GET, "/auth/me", Anonymous, Empty, &basic).await;
        expect_invalid_token(res);
        let res = s.get("/auth/me").await;
        assert_eq!(res.headers["www-authenticate"], "Bearer");
        expect_problem(res, 401);
        // Within the leeway an almost-expired token is still fine, and the real one works.
        assert_eq!(s.get_auth("/auth/me", &with(&|c| c.exp = now - 5)).await.status, 200);
        assert_eq!(s.get_auth("/auth/me", &t.access).await.status, 200);
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_keeps_old_tokens_valid_and_publishes_both_keys() {
    for backend in backends().await {
        let (s, db) = TestServer::start(backend).await;
        let before = s.user("rotor").await;
        let old_kid = jwt_part(&before.access, 0)["kid"].as_str().unwrap().to_string();
        // A second instance on the same database, which learns the new key by itself.
        let other = TestServer::on(&db, &[]).await;
        let new_kid = s.service.rotate_signing_key(&Actor::system()).await.unwrap();
        assert_ne!(new_kid, old_kid);
        let jwks = s.jwks().await;
        let kids: Vec<&str> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap())
            .collect();
        assert!(
            kids.contains(&old_kid.as_str()) && kids.contains(&new_kid.as_str()),
            "{kids:?}"
        );
        assert_eq!(
            s.get_auth("/auth/me", &before.access).await.status,
            200,
            "old tokens verify during the grace period"
        );
        let after = s.login_as("rotor", PASSWORD).await;
        assert_eq!(jwt_part(&after.access, 0)["kid"], new_kid.as_str());
        assert_eq!(
            other.get_auth("/auth/me", &after.access).await.status,
            200,
            "unknown kid triggers a reload"
        );
        assert_eq!(other.get_auth("/auth/me", &before.access).await.status, 200);
        other.stop().await;
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs256_and_eddsa_are_selectable() {
    for (alg, kty) in [("RS256", "RSA"), ("EdDSA", "OKP")] {
        let (s, _db) = TestServer::start_with(Backend::Sqlite, &[("JWT_ALGORITHM", alg)]).await;
        let t = s.user("algo").await;
        assert_eq!(jwt_part(&t.access, 0)["alg"], alg);
        let jwks = s.jwks().await;
        assert_eq!(jwks["keys"][0]["kty"], kty);
        assert_eq!(s.get_auth("/auth/me", &t.access).await.status, 200);
        let disco: Value = s.get("/.well-known/openid-configuration").await.json();
        assert_eq!(disco["id_token_signing_alg_values_supported"], json!([alg]));
        s.stop().await;
    }
}

/// With JWT_SECRET_KEY and HS256, tokens are what the replaced services expect, and
/// verify with that secret (e.g. by python-jose in an existing service).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hs256_with_a_shared_secret() {
    let secret = "a-shared-secret-of-at-least-32-characters";
    let (s, db) = TestServer::start_with(
        Backend::Sqlite,
        &[("JWT_SECRET_KEY", secret), ("JWT_ALGORITHM", "HS256")],
    )
    .await;
    let t = s.user("legacy").await;
    assert_eq!(jwt_part(&t.access, 0)["alg"], "HS256");
    let mut v = jsonwebtoken::Validation::new(Algorithm::HS256);
    v.set_audience(&["portcullis"]);
    let decoded = jsonwebtoken::decode::<Value>(
        &t.access,
        &jsonwebtoken::DecodingKey::from_secret(secret.as_bytes()),
        &v,
    )
    .unwrap();
    assert_eq!(decoded.claims["preferred_username"], "legacy");
    let jwks = s.jwks().await;
    assert_eq!(jwks["keys"], json!([]), "shared secrets are never published");
    assert_eq!(s.get_auth("/auth/me", &t.access).await.status, 200);
    // A token signed with another secret, claiming the same kid, is refused.
    let mut h = Header::new(Algorithm::HS256);
    h.kid = jwt_part(&t.access, 0)["kid"].as_str().map(str::to_string);
    let forged = jsonwebtoken::encode(
        &h,
        &claims_of(&t.access),
        &EncodingKey::from_secret(b"some-other-secret-of-32-characters!!"),
    )
    .unwrap();
    expect_invalid_token(s.get_auth("/auth/me", &forged).await);
    s.stop().await;
    // A second instance with a different secret does not accept the first one's tokens.
    let other = TestServer::on(
        &db,
        &[
            ("JWT_SECRET_KEY", "a-different-secret-of-32-characters-x"),
            ("JWT_ALGORITHM", "HS256"),
        ],
    )
    .await;
    expect_invalid_token(other.get_auth("/auth/me", &t.access).await);
    other.stop().await;
}

/// A rotated-out key keeps verifying, and stays in the JWKS, until the tokens it
/// signed have expired; then it is gone from both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_out_keys_leave_the_jwks_once_their_tokens_expire() {
    let settings = [
        ("JWT_EXPIRATION", "10"),
        ("JWT_LEEWAY_SECONDS", "0"),
        ("PORTCULLIS_KEY_RELOAD_SECONDS", "1"),
    ];
    for backend in backends().await {
        let (s, _db) = TestServer::start_with(backend, &settings).await;
        let t = s.user("ephemeral").await;
        let old_kid = jwt_part(&t.access, 0)["kid"].as_str().unwrap().to_string();
        s.service.rotate_signing_key(&Actor::system()).await.unwrap();
        let rotated = std::time::Instant::now();
        assert_eq!(s.published_kids().await.len(), 2);
        assert_eq!(s.get_auth("/auth/me", &t.access).await.status, 200);
        loop {
            if !s.published_kids().await.contains(&old_kid) {
                break;
            }
            assert!(
                rotated.elapsed() < std::time::Duration::from_secs(30),
                "old key never left the JWKS"
            );
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
        // Grace = token lifetime (10 s) + leeway (0) + reload interval (1 s).
        assert!(
            rotated.elapsed() >= std::time::Duration::from_secs(9),
            "removed after {:?}",
            rotated.elapsed()
        );
        expect_invalid_token(s.get_auth("/auth/me", &t.access).await);
        let fresh = s.login_as("ephemeral", PASSWORD).await;
        assert_ne!(jwt_part(&fresh.access, 0)["kid"], old_kid.as_str());
        s.stop().await;
    }
}
