//! Verifiers written for the replaced services keep working (issue 27): `sub` may be
//! the username, `aud` may be left out, and tokens the old service minted with its
//! HS256 secret and no `kid` may stay valid during the switch.

use serde_json::{Value, json};

use crate::support::*;

pub const OLD_SECRET: &str = "the-replaced-services-secret-key-0123456789";

/// A token as the replaced services minted them: HS256, no `kid`, `claims` only.
pub fn old_service_token(secret: &str, claims: &Value) -> String {
    portcullis::crypto::jwt::install_provider();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn in_minutes(n: i64) -> i64 {
    chrono::Utc::now().timestamp() + 60 * n
}

/// The gateway's view: status and the user id it is told.
async fn verify(s: &TestServer, token: &str) -> (u16, Option<String>) {
    let res = s.call(M::GET, "/auth/verify", Bearer(token), Empty).await;
    (res.status, res.header("x-auth-user-id").map(str::to_string))
}

async fn introspect(s: &TestServer, caller: &str, token: &str) -> Value {
    s.call(M::POST, "/auth/introspect", Bearer(caller), Form(&[("token", token)]))
        .await
        .json()
}

/// `JWT_SUBJECT=username`: `sub` is the username and `uid` the id, and everything that
/// reads a token back (`/auth/me`, forward auth, introspection, refresh, revocation)
/// works; tokens minted before the switch keep working after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn username_subjects_work_wherever_a_token_is_read_back() {
    for backend in backends().await {
        let (before, db) = TestServer::start(backend).await;
        let earlier = before.user("alice").await;
        before.stop().await;
        let s = TestServer::on(&db, &[("JWT_SUBJECT", "username")]).await;
        let id = earlier.user_id().to_string();
        assert_eq!(jwt_part(&earlier.access, 1)["sub"], id.as_str());
        assert_eq!(
            s.get_auth("/auth/me", &earlier.access).await.json()["user_id"],
            id.as_str()
        );

        let t = s.login_as("alice", PASSWORD).await;
        let claims = jwt_part(&t.access, 1);
        assert_eq!(claims["sub"], "alice", "{backend:?}: {claims}");
        assert_eq!(claims["uid"], id.as_str());
        assert_eq!(s.get_auth("/auth/me", &t.access).await.json()["user_id"], id.as_str());
        assert_eq!(verify(&s, &t.access).await, (200, Some(id.clone())));
        let admin = s.login_as("admin", ADMIN_PASSWORD).await;
        let info = introspect(&s, &admin.access, &t.access).await;
        assert_eq!(
            (&info["active"], &info["sub"]),
            (&json!(true), &json!("alice")),
            "{info}"
        );

        let refreshed = s.refresh(&t.refresh).await.tokens();
        assert_eq!(jwt_part(&refreshed.access, 1)["sub"], "alice");
        assert_eq!(verify(&s, &refreshed.access).await.0, 200);
        // Revocation by presenting the token, and by user, reach username tokens.
        let res = s
            .call(
                M::POST,
                "/auth/revoke",
                Anonymous,
                Form(&[("token", refreshed.access.as_str())]),
            )
            .await;
        assert_eq!(res.status, 200, "{}", res.text);
        expect_invalid_token(s.get_auth("/auth/me", &refreshed.access).await);
        let other = s.login_as("alice", PASSWORD).await;
        assert_eq!(
            s.call(M::POST, "/auth/logout-all", Bearer(&other.access), Empty)
                .await
                .status
                / 100,
            2
        );
        expect_invalid_token(s.get_auth("/auth/me", &other.access).await);
        expect_invalid_token(s.get_auth("/auth/me", &earlier.access).await);
        s.stop().await;
    }
}

/// `JWT_AUDIENCE=none`: tokens carry no `aud` (libraries that refuse an audience they
/// did not ask for accept them), and a token that carries one is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_audience_leaves_aud_out_and_refuses_tokens_with_one() {
    for backend in backends().await {
        let settings = [
            ("JWT_AUDIENCE", "none"),
            ("JWT_ALGORITHM", "HS256"),
            ("JWT_SECRET_KEY", OLD_SECRET),
        ];
        let (s, _db) = TestServer::start_with(backend, &settings).await;
        let t = s.user("bob").await;
        let claims = jwt_part(&t.access, 1);
        assert!(claims.get("aud").is_none(), "{backend:?}: {claims}");
        assert_eq!(s.get_auth("/auth/me", &t.access).await.status, 200);
        let admin = s.login_as("admin", ADMIN_PASSWORD).await;
        let info = introspect(&s, &admin.access, &t.access).await;
        assert_eq!(info["active"], true);
        assert!(info.get("aud").is_none(), "{info}");
        // The same claims under our own key, once with an audience: refused.
        let kid = jwt_part(&t.access, 0)["kid"].as_str().unwrap().to_string();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some(kid);
        let key = jsonwebtoken::EncodingKey::from_secret(OLD_SECRET.as_bytes());
        let mut with_aud = claims.clone();
        with_aud["aud"] = json!("portcullis");
        with_aud["jti"] = json!("another");
        let token = jsonwebtoken::encode(&header, &with_aud, &key).unwrap();
        let p = expect_invalid_token(s.get_auth("/auth/me", &token).await);
        assert!(p.to_string().contains("audience"), "{p}");
        let mut re_signed = claims.clone();
        re_signed["jti"] = json!("yet another");
        let token = jsonwebtoken::encode(&header, &re_signed, &key).unwrap();
        assert_eq!(s.get_auth("/auth/me", &token).await.status, 200);
        s.stop().await;
    }
}

/// `JWT_ACCEPT_UNKEYED=true`: a token the old service minted (HS256 with its secret,
/// no `kid`, `sub` and `exp`) is accepted for the account its `sub` names, with that
/// account's current roles; without the setting, or expired, or without `exp`, or for
/// an unknown or disabled account, or signed with another secret, it is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unkeyed_tokens_of_the_old_service_are_accepted_only_when_asked() {
    for backend in backends().await {
        let (plain, db) =
            TestServer::start_with(backend, &[("JWT_ALGORITHM", "HS256"), ("JWT_SECRET_KEY", OLD_SECRET)]).await;
        let carol = plain.user("carol").await;
        let id = carol.user_id().to_string();
        let by_name = old_service_token(OLD_SECRET, &json!({"sub": "carol", "exp": in_minutes(30)}));
        expect_invalid_token(plain.get_auth("/auth/me", &by_name).await);
        plain.stop().await;

        // Tokens by username (as the old service wrote them); new tokens are ES256 now.
        let s = TestServer::on(
            &db,
            &[
                ("JWT_SECRET_KEY", OLD_SECRET),
                ("JWT_ACCEPT_UNKEYED", "true"),
                ("JWT_SUBJECT", "username"),
            ],
        )
        .await;
        let me = s.get_auth("/auth/me", &by_name).await;
        assert_eq!(me.status, 200, "{backend:?}: {}", me.text);
        assert_eq!(me.json()["user_id"], id.as_str());
        assert_eq!(verify(&s, &by_name).await, (200, Some(id.clone())));
        let admin = s.login_as("admin", ADMIN_PASSWORD).await;
        let info = introspect(&s, &admin.access, &by_name).await;
        assert_eq!(
            (&info["active"], &info["sub"]),
            (&json!(true), &json!("carol")),
            "{info}"
        );
        assert!(
            info.get("iss").is_none() && info.get("aud").is_none(),
            "the token had neither: {info}"
        );
        // What it grants is the account's, as of now.
        let needs_role = s.call(M::GET, "/admin/users", Bearer(&by_name), Empty).await;
        assert_eq!(needs_role.status, 403, "{}", needs_role.text);
        let refused = [
            ("expired", json!({"sub": "carol", "exp": in_minutes(-5)})),
            ("no exp", json!({"sub": "carol"})),
            ("no sub", json!({"exp": in_minutes(30)})),
            ("unknown account", json!({"sub": "nobody", "exp": in_minutes(30)})),
            (
                "an e-mail, not a username",
                json!({"sub": "carol@example.com", "exp": in_minutes(30)}),
            ),
            ("a user id, not a username", json!({"sub": id, "exp": in_minutes(30)})),
            (
                "another issuer",
                json!({"sub": "carol", "exp": in_minutes(30), "iss": "https://old.example"}),
            ),
            (
                "another audience",
                json!({"sub": "carol", "exp": in_minutes(30), "aud": "elsewhere"}),
            ),
        ];
        for (why, claims) in &refused {
            let res = s.get_auth("/auth/me", &old_service_token(OLD_SECRET, claims)).await;
            assert_eq!(res.status, 401, "{why}: {}", res.text);
        }
        let forged = old_service_token(
            "some-other-secret-0123456789abcdef",
            &json!({"sub": "carol", "exp": in_minutes(30)}),
        );
        expect_invalid_token(s.get_auth("/auth/me", &forged).await);
        // Portcullis's own tokens still work beside them.
        assert_eq!(s.get_auth("/auth/me", &admin.access).await.status, 200);
        let res = s
            .call(
                M::POST,
                &format!("/admin/users/{id}/disable"),
                Bearer(&admin.access),
                Empty,
            )
            .await;
        assert_eq!(res.status, 200, "{}", res.text);
        expect_invalid_token(s.get_auth("/auth/me", &by_name).await);
        s.stop().await;

        // By user id (`JWT_SUBJECT=id`, the default), on an HS256 service.
        let s = TestServer::on(
            &db,
            &[
                ("JWT_ALGORITHM", "HS256"),
                ("JWT_SECRET_KEY", OLD_SECRET),
                ("JWT_ACCEPT_UNKEYED", "true"),
            ],
        )
        .await;
        s.register("dave").await;
        let dave = s.login_as("dave", PASSWORD).await.user_id().to_string();
        let by_id = old_service_token(OLD_SECRET, &json!({"sub": dave, "exp": in_minutes(30)}));
        assert_eq!(s.get_auth("/auth/me", &by_id).await.json()["user_id"], dave.as_str());
        let by_name = old_service_token(OLD_SECRET, &json!({"sub": "dave", "exp": in_minutes(30)}));
        expect_invalid_token(s.get_auth("/auth/me", &by_name).await);
        s.stop().await;
    }
}

/// Tokens without `kid` end with the account's sessions: logout-all (even made with
/// such a token, when no session is live), a password change and an administrator's
/// revocation each refuse those issued before (and those without `iat`, whose issue
/// time is unknown); one issued afterwards works. One whose `exp` is further away
/// than `JWT_UNKEYED_MAX_LIFETIME_MINUTES` is refused, and a `sub` with a control
/// character is refused as an invalid token (PostgreSQL answered 500 before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unkeyed_tokens_end_with_the_accounts_sessions_and_live_bounded() {
    for backend in backends().await {
        let (s, _db) = TestServer::start_with(
            backend,
            &[
                ("JWT_SECRET_KEY", OLD_SECRET),
                ("JWT_ACCEPT_UNKEYED", "true"),
                ("JWT_SUBJECT", "username"),
                ("JWT_UNKEYED_MAX_LIFETIME_MINUTES", "120"),
            ],
        )
        .await;
        let now = chrono::Utc::now().timestamp();
        let old = |sub: &str, claims: Value| {
            let mut c = claims;
            c["sub"] = json!(sub);
            old_service_token(OLD_SECRET, &c)
        };
        let server = &s;
        let me = |t: String| async move { server.get_auth("/auth/me", &t).await.status };
        // Issued now; `iat` counts seconds, so one issued in the second of an ending
        // counts as before it: wait for the next second after each.
        let later = || async {
            tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
            old(
                "gina",
                json!({"exp": in_minutes(30), "iat": chrono::Utc::now().timestamp()}),
            )
        };

        // Lifetime bound and subject hygiene, before any lookup.
        s.register("gina").await;
        assert_eq!(me(old("gina", json!({"exp": in_minutes(110)}))).await, 200);
        for (why, claims) in [
            ("five years to live", json!({"exp": in_minutes(5 * 365 * 24 * 60)})),
            ("three hours to live", json!({"exp": in_minutes(180)})),
            (
                "issued in the future",
                json!({"exp": in_minutes(30), "iat": now + 3600}),
            ),
        ] {
            let res = s.get_auth("/auth/me", &old("gina", claims)).await;
            assert_eq!(res.status, 401, "{backend:?}: {why}: {}", res.text);
        }
        for sub in ["gi\u{0}na", "gina\n", "\u{7f}"] {
            let res = s.get_auth("/auth/me", &old(sub, json!({"exp": in_minutes(30)}))).await;
            assert_eq!(res.status, 401, "{backend:?}: {sub:?}: {}", res.text);
            expect_invalid_token(res);
        }

        // logout-all with the old token itself: gina has no session at all.
        let issued = json!({"exp": in_minutes(30), "iat": now - 60});
        let with_iat = old("gina", issued.clone());
        let without_iat = old("gina", json!({"exp": in_minutes(30)}));
        assert_eq!(me(with_iat.clone()).await, 200);
        assert_eq!(me(without_iat.clone()).await, 200);
        let res = s.call(M::POST, "/auth/logout-all", Bearer(&with_iat), Empty).await;
        assert!(res.status < 300, "{}", res.text);
        assert_eq!(me(with_iat.clone()).await, 401, "{backend:?}: issued before logout-all");
        assert_eq!(me(without_iat).await, 401, "{backend:?}: no iat, after logout-all");
        assert_eq!(me(later().await).await, 200, "{backend:?}: issued after logout-all");

        // Her own password change (from a session of hers).
        let session = s.login_as("gina", PASSWORD).await;
        let fresh = later().await;
        assert_eq!(me(fresh.clone()).await, 200);
        let body = json!({"current_password": PASSWORD, "new_password": "a much better passphrase 42"});
        let res = s
            .call(M::POST, "/auth/me/password", Bearer(&session.access), Json(body))
            .await;
        assert!(res.status < 300, "{}", res.text);
        assert_eq!(me(fresh).await, 401, "{backend:?}: issued before the password change");

        // An administrator's revocation of every session of hers.
        let fresh = later().await;
        assert_eq!(me(fresh.clone()).await, 200);
        let admin = s.login_as("admin", ADMIN_PASSWORD).await;
        let id = session.user_id();
        let res = s
            .call(
                M::POST,
                &format!("/admin/users/{id}/sessions/revoke"),
                Bearer(&admin.access),
                Empty,
            )
            .await;
        assert_eq!(res.status, 200, "{}", res.text);
        assert_eq!(me(fresh).await, 401, "{backend:?}: issued before the revocation");
        assert_eq!(me(later().await).await, 200);
        s.stop().await;
    }
}
