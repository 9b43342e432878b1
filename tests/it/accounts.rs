//! Registration, login, profile and password rules, on both backends.

use portcullis::domain::Actor;
use std::time::Instant;

use serde_json::{Value, json};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_validates_and_rejects_duplicates() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        let res = s
            .post_json(
                "/auth/register",
                &json!({"username": "johndoe", "email": "john@example.com", "password": "securepassword123", "full_name": "John Doe"}),
            )
            .await;
        assert_eq!(res.status, 201);
        let user: Value = res.json();
        assert!(uuid::Uuid::parse_str(user["user_id"].as_str().unwrap()).is_ok());
        assert_eq!(user["username"], "johndoe");
        assert_eq!(user["email"], "john@example.com");
        assert_eq!(user["full_name"], "John Doe");
        assert!(user["created_at"].is_string());
        assert!(user.get("password_hash").is_none() && user.get("password").is_none());

        // Case-insensitive duplicates.
        let dup_name = s
            .post_json(
                "/auth/register",
                &json!({"username": "JohnDoe", "email": "other@example.com", "password": PASSWORD}),
            )
            .await;
        assert!(
            expect_problem(dup_name, 409)["detail"]
                .as_str()
                .unwrap()
                .contains("username")
        );
        let dup_mail = s
            .post_json(
                "/auth/register",
                &json!({"username": "other", "email": "JOHN@example.com", "password": PASSWORD}),
            )
            .await;
        assert!(
            expect_problem(dup_mail, 409)["detail"]
                .as_str()
                .unwrap()
                .contains("email")
        );

        // Invalid fields: 422 naming the field, nothing created.
        let cases = [
            (
                json!({"username": "a b", "email": "ab@example.com", "password": PASSWORD}),
                "username",
            ),
            (
                json!({"username": "аdmin", "email": "ab@example.com", "password": PASSWORD}),
                "username",
            ),
            (
                json!({"username": "' OR 1=1 --", "email": "ab@example.com", "password": PASSWORD}),
                "username",
            ),
            (
                json!({"username": "x".repeat(300), "email": "ab@example.com", "password": PASSWORD}),
                "username",
            ),
            (
                json!({"username": "abc", "email": "not-an-email", "password": PASSWORD}),
                "email",
            ),
            (
                json!({"username": "abc", "email": "ab@example.com", "password": "short"}),
                "password",
            ),
            (
                json!({"username": "abc", "email": "ab@example.com", "password": "password123"}),
                "password",
            ),
            (
                json!({"username": "abcdefgh", "email": "ab@example.com", "password": "zz-abcdefgh-99"}),
                "password",
            ),
            (
                json!({"username": "abc", "email": "ab@example.com", "password": "Zq9!".repeat(40)}),
                "password",
            ),
            (json!({"username": "abc", "email": "ab@example.com"}), "password"),
            (
                json!({"username": 5, "email": "ab@example.com", "password": PASSWORD}),
                "username",
            ),
            (
                json!({"username": "abc", "email": "ab@example.com", "password": PASSWORD, "full_name": "a\u{1}b"}),
                "full_name",
            ),
        ];
        for (body, field) in cases {
            let p = expect_problem(s.post_json("/auth/register", &body).await, 422);
            assert_eq!(p["errors"][0]["field"], field, "{body} -> {p}");
            assert!(p["detail"].as_str().unwrap().contains(field));
        }
        let weak = expect_problem(
            s.post_json(
                "/auth/register",
                &json!({"username": "abc", "email": "ab@example.com", "password": "password123"}),
            )
            .await,
            422,
        );
        assert!(weak["detail"].as_str().unwrap().contains("guess"), "{weak}");

        // Malformed JSON, wrong content type, oversized body.
        let raw = |content_type: &'static str, bytes: &'static [u8]| {
            s.call(M::POST, "/auth/register", Anonymous, Raw(content_type, bytes))
        };
        expect_problem(raw("application/json", b"{\"username\":").await, 400);
        expect_problem(raw("text/plain", b"username=x").await, 415);
        let huge = json!({"username": "big", "email": "big@example.com", "password": PASSWORD, "full_name": "x".repeat(70 * 1024)});
        expect_problem(s.post_json("/auth/register", &huge).await, 413);
        expect_problem(raw("application/json", &[0xff, 0xfe, 0x00]).await, 400);

        // Only the admin and johndoe exist.
        assert_eq!(s.service.store().count_users().await.unwrap(), 2);
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_by_username_or_email_and_uniform_failures() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        s.register("alice").await;
        let by_name = s.login_as("alice", PASSWORD).await;
        assert_eq!(by_name.body["token_type"], "bearer");
        assert_eq!(by_name.body["expires_in"], 900);
        assert_eq!(by_name.refresh.len(), 43);
        let by_email = s.login_as("ALICE@example.com", PASSWORD).await;
        assert_ne!(by_email.access, by_name.access);
        let by_email_field = s
            .post_json(
                "/auth/login",
                &json!({"email": "alice@example.com", "password": PASSWORD}),
            )
            .await;
        assert_eq!(by_email_field.status, 200);
        // Token responses must not be cached.
        assert_eq!(by_email_field.headers["cache-control"], "no-store");

        let wrong = expect_problem(s.login("alice", "wrong password!").await, 401);
        let unknown = expect_problem(s.login("nobody", "wrong password!").await, 401);
        assert_eq!(
            wrong, unknown,
            "unknown user and wrong password must be indistinguishable"
        );
        let missing = s.post_json("/auth/login", &json!({"password": "x"})).await;
        expect_problem(missing, 422);

        // Disabled users cannot log in or refresh, and their tokens stop working at once.
        let id = by_name.user_id();
        s.service.set_user_active(id, false, &Actor::system()).await.unwrap();
        assert_eq!(expect_problem(s.login("alice", PASSWORD).await, 401), wrong);
        expect_problem(s.refresh(&by_name.refresh).await, 401);
        expect_invalid_token(s.get_auth("/auth/me", &by_name.access).await);
        s.service.set_user_active(id, true, &Actor::system()).await.unwrap();
        s.login_as("alice", PASSWORD).await;
        s.stop().await;
    }
}

/// Unknown users are checked against a dummy hash: with a hash that costs
/// milliseconds, both failures take about as long (generous bound; the statistical
/// version belongs to the hardening suite).
/// Statistical: pairs of attempts, interleaved and in alternating order, compared by
/// median with a generous band. The machine is noisy, so a round that misses is
/// retried; three misses in a row fail. Failures are still counted toward lockout
/// (with a threshold too high to trip), so both paths do the same writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_user_and_wrong_password_take_similar_time() {
    for backend in backends().await {
        let (s, _db) = TestServer::start_with(
            backend,
            &[
                ("PASSWORD_HASH_MEMORY_KIB", "8192"),
                ("PASSWORD_HASH_ITERATIONS", "2"),
                ("LOGIN_LOCKOUT_THRESHOLD", "1000"),
            ],
        )
        .await;
        s.register("timing").await;
        let median = |samples: &mut Vec<f64>| {
            samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
            samples[samples.len() / 2]
        };
        let attempt = |user: String| {
            let s = &s;
            async move {
                let t = Instant::now();
                let res = s.login(&user, "not the password").await;
                assert_eq!(res.status, 401);
                t.elapsed().as_secs_f64()
            }
        };
        let mut rounds = Vec::new();
        for _round in 0..3 {
            let (mut known, mut unknown) = (Vec::new(), Vec::new());
            for i in 0..15 {
                let ghost = format!("ghost{}", rounds.len() * 100 + i);
                if i % 2 == 0 {
                    known.push(attempt("timing".into()).await);
                    unknown.push(attempt(ghost).await);
                } else {
                    unknown.push(attempt(ghost).await);
                    known.push(attempt("timing".into()).await);
                }
            }
            let (k, u) = (median(&mut known), median(&mut unknown));
            rounds.push((k, u));
            if (0.67..1.5).contains(&(k / u)) {
                break;
            }
        }
        let &(k, u) = rounds.last().unwrap();
        assert!(
            (0.67..1.5).contains(&(k / u)),
            "{backend:?}: wrong password vs unknown user medians (s) per round: {rounds:?}"
        );
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profile_update_and_password_change() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        let a = s.user("bob").await;
        let other_session = s.login_as("bob", PASSWORD).await;
        s.register("carol").await;

        let me: Value = s.get_auth("/auth/me", &a.access).await.json();
        assert_eq!(me["username"], "bob");
        assert_eq!(me["roles"], json!([]));

        let update = |body: Value| s.call(M::PATCH, "/auth/me", Bearer(&a.access), Json(body));
        let res = update(json!({"full_name": "Bob B", "email": "bob@new.example.com"})).await;
        assert_eq!(res.status, 200);
        let updated: Value = res.json();
        assert_eq!(updated["full_name"], "Bob B");
        assert_eq!(updated["email"], "bob@new.example.com");
        expect_problem(update(json!({"email": "CAROL@example.com"})).await, 409);
        expect_problem(update(json!({"email": "nope"})).await, 422);
        let me: Value = s.get_auth("/auth/me", &a.access).await.json();
        assert_eq!(me["email"], "bob@new.example.com", "failed updates change nothing");

        let change = |current: &str, new: &str| {
            let body = json!({"current_password": current, "new_password": new});
            s.call(M::POST, "/auth/me/password", Bearer(&a.access), Json(body))
        };
        let p = expect_problem(change("wrong", "a much better passphrase 42").await, 422);
        assert_eq!(p["errors"][0]["field"], "current_password");
        let p = expect_problem(change(PASSWORD, "short").await, 422);
        assert_eq!(p["errors"][0]["field"], "new_password");
        assert_eq!(change(PASSWORD, "a much better passphrase 42").await.status, 204);

        // The other session ended at once; this one lives on.
        expect_invalid_token(s.get_auth("/auth/me", &other_session.access).await);
        expect_problem(s.refresh(&other_session.refresh).await, 401);
        assert_eq!(s.get_auth("/auth/me", &a.access).await.status, 200);
        assert_eq!(s.refresh(&a.refresh).await.status, 200);
        expect_problem(s.login("bob", PASSWORD).await, 401);
        s.login_as("bob", "a much better passphrase 42").await;
        s.stop().await;
    }
}

/// Users brought over from passlib keep their passwords; the hash is upgraded on login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_passlib_hashes_log_in_and_are_rehashed() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        let bcrypt_hash = bcrypt::hash("legacy password 1", 4).unwrap();
        let two_a = bcrypt::hash_with_result("legacy password 2", 4)
            .unwrap()
            .format_for_version(bcrypt::Version::TwoA);
        for (name, hash, password) in [
            ("legacy1", bcrypt_hash, "legacy password 1"),
            ("legacy2", two_a, "legacy password 2"),
        ] {
            s.service
                .register(portcullis::domain::accounts::Registration {
                    username: name.into(),
                    email: format!("{name}@example.com"),
                    full_name: None,
                    password: None,
                    password_hash: Some(hash.clone()),
                    superuser: false,
                    roles: vec![],
                })
                .await
                .unwrap();
            expect_problem(s.login(name, "wrong").await, 401);
            s.login_as(name, password).await;
            let stored = s
                .service
                .store()
                .user_by_login(name)
                .await
                .unwrap()
                .unwrap()
                .password_hash
                .unwrap();
            assert!(stored.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "rehashed: {stored}");
            s.login_as(name, password).await;
        }
        s.stop().await;
    }
}

/// Issue 26: a stored passlib `bcrypt_sha256` hash is one whose cost the padding of
/// every password check must match; the store reports it beside plain bcrypt hashes,
/// and its user logs in (and is re-hashed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_bcrypt_sha256_hashes_set_the_padding_cost() {
    // passlib 1.9.5: bcrypt_sha256.using(rounds=5).hash("legacy password 3")
    const HASH: &str = "$bcrypt-sha256$v=2,t=2b,r=5$b5EV6854hYIBpsX4.bZTVO$qMLjRZ9SZSQl3L9gvsRLWgdshjNRFh6";
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        let costs = async || -> Vec<u32> {
            let stored = s.service.store().bcrypt_costs().await.unwrap();
            stored
                .iter()
                .filter_map(|c| portcullis::crypto::password::bcrypt_cost(c))
                .collect()
        };
        assert_eq!(costs().await, Vec::<u32>::new());
        s.service
            .register(portcullis::domain::accounts::Registration {
                username: "legacy3".into(),
                email: "legacy3@example.com".into(),
                full_name: None,
                password: None,
                password_hash: Some(HASH.into()),
                superuser: false,
                roles: vec![],
            })
            .await
            .unwrap();
        assert_eq!(costs().await, vec![5], "{backend:?}");
        expect_problem(s.login("legacy3", "legacy password 4").await, 401);
        s.login_as("legacy3", "legacy password 3").await;
        assert_eq!(costs().await, Vec::<u32>::new(), "re-hashed with argon2id");
        s.stop().await;
    }
}

/// A username may contain `@` only as the account's own email (clients that register
/// with the email as username keep working): no one can take someone's address as a
/// username, which broke that person's email login and showed the squatter's name
/// as that address to gateways. Emails are unique, so an email cannot equal another
/// account's username either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_username_cannot_be_another_accounts_email() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        s.register("alice").await;
        let register = async |username: &str, email: &str| {
            let body = json!({"username": username, "email": email, "password": PASSWORD});
            s.post_json("/auth/register", &body).await
        };
        for squat in ["alice@example.com", "ALICE@Example.COM", "ａｌｉｃｅ@example.com"] {
            let p = expect_problem(register(squat, "mallory@example.com").await, 422);
            assert!(p.to_string().contains("username"), "{p}");
        }
        // An address that is nobody's yet is refused too: it could become someone's.
        expect_problem(register("nobody@example.com", "mallory@example.com").await, 422);
        // Alice's email login still finds alice.
        let t = s.login_as("alice@example.com", PASSWORD).await;
        assert_eq!(jwt_part(&t.access, 1)["preferred_username"], "alice");

        // The email as username, as the replaced services' clients register.
        assert_eq!(register("Carol@Example.com", "carol@example.com").await.status, 201);
        s.login_as("carol@example.com", PASSWORD).await;
        // Her address (her username) is taken as anyone's email.
        expect_problem(register("dave", "CAROL@example.com").await, 409);
        // She cannot move her email away from her username (the old address would be
        // free for another account while naming her).
        let carol = s.login_as("Carol@Example.com", PASSWORD).await;
        let res = s
            .call(
                M::PATCH,
                "/auth/me",
                Bearer(&carol.access),
                Json(json!({"email": "carol.new@example.com"})),
            )
            .await;
        let p = expect_problem(res, 422);
        assert!(p.to_string().contains("email"), "{p}");
        // Administrators are held to the same rule.
        let admin = s.login_as("admin", ADMIN_PASSWORD).await;
        let body = json!({"username": "alice@example.com", "email": "m2@example.com", "password": PASSWORD});
        let res = s.call(M::POST, "/admin/users", Bearer(&admin.access), Json(body)).await;
        expect_problem(res, 422);
        s.stop().await;
    }
}
