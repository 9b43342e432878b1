//! Refresh rotation, reuse detection, concurrency, logout and sessions, including
//! several instances sharing one PostgreSQL database.

use std::time::Duration;

use serde_json::{Value, json};

use portcullis::store::{AuditFields, RotateOutcome, RotationJob};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_rotates_and_reuse_revokes_the_family() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        let first = s.user("rotate").await;
        let res = s.refresh(&first.refresh).await;
        assert_eq!(res.status, 200);
        let second = res.tokens();
        assert_ne!(second.refresh, first.refresh);
        assert_ne!(second.access, first.access);
        assert_eq!(
            jwt_part(&second.access, 1)["sid"],
            jwt_part(&first.access, 1)["sid"],
            "same session"
        );
        let third = s.refresh(&second.refresh).await.tokens();

        // Replaying a rotated token: refused, and the whole family dies with it.
        let p = expect_problem(s.refresh(&first.refresh).await, 401);
        assert!(p["detail"].as_str().unwrap().contains("refresh token"));
        expect_problem(s.refresh(&third.refresh).await, 401);
        expect_invalid_token(s.get_auth("/auth/me", &third.access).await);
        // Other sessions of the same user are untouched.
        let other = s.login_as("rotate", PASSWORD).await;
        assert_eq!(s.refresh(&other.refresh).await.status, 200);

        for bad in ["", "short", &"x".repeat(43), &"y".repeat(5000)] {
            expect_problem(s.refresh(bad).await, 401);
        }
        expect_problem(s.post_json("/auth/refresh", &json!({})).await, 422);
        s.stop().await;
    }
}

/// Fires `n` refreshes of the same token at once, spread over `servers`.
async fn race(servers: &[&TestServer], token: &str, n: usize) -> (usize, usize) {
    let mut tasks = Vec::new();
    for i in 0..n {
        let s = servers[i % servers.len()];
        let (http, body) = (s.http.clone(), json!({"refresh_token": token}));
        tasks.push(tokio::spawn(async move {
            http.call(M::POST, "/auth/refresh", Anonymous, Json(body)).await.status
        }));
    }
    let mut ok = 0;
    let mut refused = 0;
    for t in tasks {
        match t.await.unwrap() {
            200 => ok += 1,
            401 => refused += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    (ok, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refresh_with_one_token_succeeds_exactly_once() {
    for backend in backends().await {
        let (s, db) = TestServer::start(backend).await;
        let second = TestServer::on(&db, &[]).await;
        for round in 0..5 {
            let t = s.user(&format!("racer{round}")).await;
            let servers: Vec<&TestServer> = if backend == Backend::Postgres {
                vec![&s, &second]
            } else {
                vec![&s]
            };
            let (ok, refused) = race(&servers, &t.refresh, 8).await;
            assert_eq!((ok, refused), (1, 7), "round {round} on {backend:?}");
        }
        second.stop().await;
        s.stop().await;
    }
}

/// Rotations arriving together are written in shared transactions; every one of
/// them must land, once, with its own audit record on an intact chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_rotations_of_many_sessions_all_land_once_each() {
    for backend in backends().await {
        let (s, db) = TestServer::start(backend).await;
        let mut tokens = Vec::new();
        for i in 0..12 {
            tokens.push(s.user(&format!("batch{i}")).await.refresh);
        }
        for round in 0..3 {
            let mut tasks = Vec::new();
            for token in tokens {
                let http = s.http.clone();
                tasks.push(tokio::spawn(async move {
                    let body = json!({"refresh_token": token});
                    let res = http.call(M::POST, "/auth/refresh", Anonymous, Json(body)).await;
                    assert_eq!(res.status, 200, "round {round}");
                    let body: Value = res.json();
                    body["refresh_token"].as_str().unwrap().to_string()
                }));
            }
            tokens = Vec::new();
            for t in tasks {
                tokens.push(t.await.unwrap());
            }
        }
        // Counted by a no-op update, which reports the rows it matched.
        let recorded = execute_sql(
            &db,
            "UPDATE audit_log SET action = action WHERE action = 'TOKEN_REFRESH'",
        )
        .await;
        assert_eq!(recorded, 36, "{backend:?}");
        s.stop().await;
        let (code, out, err) = run_binary(binary_on(&db).args(["audit", "verify"]), "");
        assert_eq!(code, 0, "{backend:?}: {out}{err}");
    }
}

/// A rotation for `token` on `chain`, with a fresh successor (returned beside it).
fn rotation(token: &str, chain: &str) -> (RotationJob, String) {
    use portcullis::crypto::tokens::{digest, random_token};
    let now = chrono::Utc::now();
    let record = |action: &str| {
        AuditFields {
            chain: chain.into(),
            kind: "event".into(),
            action: action.into(),
            metadata: "{}".into(),
            ..Default::default()
        }
        .stamped(now)
    };
    let successor = random_token();
    let job = RotationJob {
        presented_hash: digest(token).to_vec(),
        successor_hash: digest(&successor).to_vec(),
        now,
        expires_at: now + chrono::Duration::days(1),
        revocation_expires: now + chrono::Duration::days(1),
        audit: Some((record("TOKEN_REFRESH"), record("REFRESH_REUSE_DETECTED"))),
        client_id: None,
    };
    (job, successor)
}

fn outcome_name(o: &RotateOutcome) -> &'static str {
    match o {
        RotateOutcome::Rotated(_) => "rotated",
        RotateOutcome::Reused { .. } => "reused",
        RotateOutcome::Rejected => "rejected",
    }
}

/// Batches are written together where they can be (on PostgreSQL, a few statements
/// for the whole batch) and one by one where order matters; either way each
/// rotation's outcome, its writes and its audit record are those of writing the
/// rotations one at a time, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_rotations_ends_as_if_written_one_by_one() {
    for backend in backends().await {
        let (s, db) = TestServer::start(backend).await;
        let store = s.service.store();
        let chain = "batch-test";
        let mut users = Vec::new();
        for i in 0..6 {
            users.push(s.user(&format!("batcher{i}")).await);
        }
        // User 3's session has ended; user 5's first token is spent.
        let res = s
            .post_json("/auth/logout", &json!({"refresh_token": users[3].refresh}))
            .await;
        assert!((200..300).contains(&res.status), "{backend:?}");
        let u5_current = s.refresh(&users[5].refresh).await.tokens();

        // Distinct tokens, current or refused: written together.
        let presented = [
            users[0].refresh.clone(),
            "never-issued-never-issued-never-issued-0000".to_string(),
            users[1].refresh.clone(),
            users[3].refresh.clone(),
            users[2].refresh.clone(),
        ];
        let (jobs, successors): (Vec<_>, Vec<_>) = presented.iter().map(|t| rotation(t, chain)).unzip();
        let outcomes = store.rotate_refresh_batch(&jobs).await.unwrap();
        let names: Vec<_> = outcomes.iter().map(outcome_name).collect();
        assert_eq!(
            names,
            ["rotated", "rejected", "rotated", "rejected", "rotated"],
            "{backend:?}"
        );
        match &outcomes[2] {
            RotateOutcome::Rotated(r) => assert_eq!(r.username, "batcher1"),
            other => panic!("{other:?}"),
        }
        // The successors are live, the presented tokens spent: presenting one again
        // is a reuse and ends its session, successor included.
        let u1_next = s.refresh(&successors[2]).await.tokens();
        assert_eq!(
            jwt_part(&u1_next.access, 1)["sub"],
            jwt_part(&users[1].access, 1)["sub"]
        );
        expect_problem(s.refresh(&users[0].refresh).await, 401);
        expect_problem(s.refresh(&successors[0]).await, 401);
        expect_problem(s.refresh(&successors[3]).await, 401);

        // With auditing off (jobs without records): written together all the same.
        let plain = [s.user("plain0").await, s.user("plain1").await];
        let (mut unaudited, next): (Vec<_>, Vec<_>) = plain.iter().map(|t| rotation(&t.refresh, chain)).unzip();
        for job in &mut unaudited {
            job.audit = None;
        }
        let outcomes = store.rotate_refresh_batch(&unaudited).await.unwrap();
        let names: Vec<_> = outcomes.iter().map(outcome_name).collect();
        assert_eq!(names, ["rotated", "rotated"], "{backend:?}");
        assert_eq!(s.refresh(&next[1]).await.status, 200, "{backend:?}");
        expect_problem(s.refresh(&plain[0].refresh).await, 401);
        expect_problem(s.refresh(&next[0]).await, 401);

        // One token twice in a batch: the first rotates it, the second is a reuse.
        let (twice, _) = rotation(&successors[4], chain);
        let outcomes = store.rotate_refresh_batch(&[twice.clone(), twice]).await.unwrap();
        let names: Vec<_> = outcomes.iter().map(outcome_name).collect();
        assert_eq!(names, ["rotated", "reused"], "{backend:?}");

        // A spent token beside a current one: the reuse ends only its own session.
        let (jobs, successors): (Vec<_>, Vec<_>) = [&users[4].refresh, &users[5].refresh]
            .iter()
            .map(|t| rotation(t, chain))
            .unzip();
        let outcomes = store.rotate_refresh_batch(&jobs).await.unwrap();
        let names: Vec<_> = outcomes.iter().map(outcome_name).collect();
        assert_eq!(names, ["rotated", "reused"], "{backend:?}");
        expect_problem(s.refresh(&u5_current.refresh).await, 401);
        assert_eq!(s.refresh(&successors[0]).await.status, 200, "{backend:?}");

        s.stop().await;
        // Every rotation and reuse above left one record on the test chain, linked.
        let recorded = execute_sql(
            &db,
            "UPDATE audit_log SET action = action WHERE chain = 'batch-test' AND action IN ('TOKEN_REFRESH', 'REFRESH_REUSE_DETECTED')",
        )
        .await;
        assert_eq!(recorded, 3 + 2 + 2, "{backend:?}");
        let (code, out, err) = run_binary(binary_on(&db).args(["audit", "verify"]), "");
        assert_eq!(code, 0, "{backend:?}: {out}{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_logout_all_and_session_management() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        let a = s.user("leaver").await;
        let b = s.login_as("leaver", PASSWORD).await;
        let c = s.login_as("leaver", PASSWORD).await;

        // Logout ends that session only, and at once.
        let res = s.post_json("/auth/logout", &json!({"refresh_token": a.refresh})).await;
        assert_eq!(res.status, 204);
        expect_invalid_token(s.get_auth("/auth/me", &a.access).await);
        expect_problem(s.refresh(&a.refresh).await, 401);
        assert_eq!(s.get_auth("/auth/me", &b.access).await.status, 200);
        // Unknown or repeated logouts reveal nothing.
        assert_eq!(
            s.post_json("/auth/logout", &json!({"refresh_token": a.refresh}))
                .await
                .status,
            204
        );
        assert_eq!(
            s.post_json("/auth/logout", &json!({"refresh_token": "unknown"}))
                .await
                .status,
            204
        );

        // Sessions list: b and c, with b marked current for b's token.
        let list: Value = s.get_auth("/auth/sessions", &b.access).await.json();
        let list = list.as_array().unwrap();
        assert_eq!(list.len(), 2);
        let b_sid = jwt_part(&b.access, 1)["sid"].as_str().unwrap().to_string();
        let c_sid = jwt_part(&c.access, 1)["sid"].as_str().unwrap().to_string();
        assert!(list.iter().any(|x| x["id"] == b_sid.as_str() && x["current"] == true));
        assert!(
            list.iter()
                .any(|x| x["id"] == c_sid.as_str() && x["current"] == false && x["amr"] == json!(["pwd"]))
        );

        // Ending c from b.
        let end = |sid: &str, by: &Tokens| {
            let path = format!("/auth/sessions/{sid}");
            let (s, token) = (&s, by.access.clone());
            async move { s.call(M::DELETE, &path, Bearer(&token), Empty).await }
        };
        assert_eq!(end(&c_sid, &b).await.status, 204);
        expect_invalid_token(s.get_auth("/auth/me", &c.access).await);
        expect_problem(end(&c_sid, &b).await, 404);
        expect_problem(end("not-a-uuid", &b).await, 422);
        // Another user's session cannot be ended.
        let mallory = s.user("mallory").await;
        expect_problem(end(&b_sid, &mallory).await, 404);
        assert_eq!(s.get_auth("/auth/me", &b.access).await.status, 200);

        // Logout-all ends everything of the caller, and nothing of others.
        let d = s.login_as("leaver", PASSWORD).await;
        let res = s.call(M::POST, "/auth/logout-all", Bearer(&b.access), Empty).await;
        assert_eq!(res.status, 204);
        for t in [&b, &d] {
            expect_invalid_token(s.get_auth("/auth/me", &t.access).await);
            expect_problem(s.refresh(&t.refresh).await, 401);
        }
        assert_eq!(s.get_auth("/auth/me", &mallory.access).await.status, 200);
        s.stop().await;
    }
}

/// The OAuth 2 token endpoint, asked with `pairs`.
async fn form(s: &TestServer, pairs: &[(&str, &str)]) -> Reply {
    s.call(M::POST, "/auth/token", Anonymous, Form(pairs)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth2_token_endpoint_speaks_the_form_protocol() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        s.register("formuser").await;
        // What FastAPI's OAuth2PasswordBearer and Swagger's Authorize send.
        let res = form(
            &s,
            &[
                ("grant_type", "password"),
                ("username", "formuser"),
                ("password", PASSWORD),
                ("scope", ""),
            ],
        )
        .await;
        assert_eq!(res.status, 200);
        assert_eq!(res.headers["cache-control"], "no-store");
        let t = res.tokens();
        assert_eq!(t.body["token_type"], "bearer");
        let res = form(&s, &[("grant_type", "refresh_token"), ("refresh_token", &t.refresh)]).await;
        assert_eq!(res.status, 200);

        let err = |res: Reply, status: u16, code: &'static str| {
            assert_eq!(res.status, status);
            let body: Value = res.json();
            assert_eq!(body["error"], code, "{body}");
            assert!(body["error_description"].is_string());
        };
        err(
            form(
                &s,
                &[
                    ("grant_type", "password"),
                    ("username", "formuser"),
                    ("password", "bad"),
                ],
            )
            .await,
            400,
            "invalid_grant",
        );
        err(
            form(
                &s,
                &[("grant_type", "password"), ("username", "nobody"), ("password", "bad")],
            )
            .await,
            400,
            "invalid_grant",
        );
        err(
            form(&s, &[("grant_type", "refresh_token"), ("refresh_token", &t.refresh)]).await,
            400,
            "invalid_grant",
        );
        err(
            form(&s, &[("grant_type", "client_credentials")]).await,
            400,
            "unsupported_grant_type",
        );
        err(
            form(&s, &[("grant_type", "password"), ("username", "formuser")]).await,
            400,
            "invalid_request",
        );
        err(form(&s, &[]).await, 400, "invalid_request");
        err(form(&s, &[("username", "formuser")]).await, 400, "invalid_request");
        // FastAPI's OAuth2PasswordRequestForm leaves grant_type out: the password grant.
        let implied = form(&s, &[("username", "formuser"), ("password", PASSWORD)]).await;
        assert_eq!(implied.status, 200, "{}", implied.text);
        assert!(implied.json()["access_token"].as_str().is_some());
        let json_body = s.post_json("/auth/token", &json!({"grant_type": "password"})).await;
        err(json_body, 400, "invalid_request");
        s.stop().await;
    }
}

/// Several instances on one PostgreSQL database: a session started on one works on
/// the other, and ending it on one is honoured by the other within about a second,
/// although token checks never query the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_share_sessions_and_revocations() {
    let Some((a, db)) = postgres_only().await else {
        return;
    };
    let b = TestServer::on(&db, &[]).await;
    let t = a.user("roamer").await;
    assert_eq!(b.get_auth("/auth/me", &t.access).await.status, 200);
    let res = b.refresh(&t.refresh).await;
    assert_eq!(res.status, 200);
    let t2 = res.tokens();
    // Warm b's verified-token cache, then end the session on a.
    assert_eq!(b.get_auth("/auth/me", &t2.access).await.status, 200);
    assert_eq!(
        a.post_json("/auth/logout", &json!({"refresh_token": t2.refresh}))
            .await
            .status,
        204
    );
    within(
        Duration::from_millis(1500),
        "instance b still accepts an ended session",
        || async { b.get_auth("/auth/sessions", &t2.access).await.status == 401 },
    )
    .await;
    // The first instance to start bootstrapped the one admin; the second did not.
    assert_eq!(a.service.store().count_users().await.unwrap(), 2);
    b.stop().await;
    a.stop().await;
}

/// A revocation lasts until the revoked tokens expire by their own `exp`: tokens
/// issued under an hour's lifetime, the lifetime then lowered to ten seconds (a
/// restart), and the sessions ended (the usual incident response). Five minutes on,
/// by this instance's clock, the revocation is still held and the tokens, which are
/// still within their hour, are refused. (Before, the revocation lasted the lifetime
/// configured at revocation time, here 100 s, and the tokens came back.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lowering_the_lifetime_then_revoking_keeps_old_tokens_out() {
    for backend in backends().await {
        let (long, db) = TestServer::start_with(backend, &[("JWT_EXPIRATION", "3600")]).await;
        let t = long.user("incident").await;
        let exp = jwt_part(&t.access, 1)["exp"].as_i64().unwrap();
        assert!(exp > chrono::Utc::now().timestamp() + 3000, "{backend:?}");
        long.stop().await;

        let short = TestServer::on(&db, &[("JWT_EXPIRATION", "10")]).await;
        assert_eq!(short.get_auth("/auth/me", &t.access).await.status, 200, "{backend:?}");
        let res = short.call(M::POST, "/auth/logout-all", Bearer(&t.access), Empty).await;
        assert_eq!(res.status, 204, "{backend:?}");
        expect_invalid_token(short.get_auth("/auth/me", &t.access).await);
        short.service.skew_clock(chrono::Duration::minutes(5));
        short.service.purge_expired().await.unwrap();
        expect_invalid_token(short.get_auth("/auth/me", &t.access).await);
        // So does an instance started now, from the feed.
        let fresh = TestServer::on(&db, &[("JWT_EXPIRATION", "10")]).await;
        fresh.service.skew_clock(chrono::Duration::minutes(5));
        fresh.service.purge_expired().await.unwrap();
        expect_invalid_token(fresh.get_auth("/auth/me", &t.access).await);
        fresh.stop().await;
        short.stop().await;
    }
}

/// Moves the start of `username`'s sessions `days` into the past, behind the
/// service's back (the format is the one sqlx writes on SQLite; PostgreSQL reads it).
async fn age_sessions(db: &TestDb, username: &str, days: i64, amr: &str) {
    let created =
        (chrono::Utc::now() - chrono::Duration::days(days)).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false);
    let sql = format!(
        "UPDATE sessions SET created_at = '{created}', amr = '{amr}' \
         WHERE user_id IN (SELECT id FROM users WHERE username = '{username}')"
    );
    assert!(execute_sql(db, Box::leak(sql.into_boxed_str())).await >= 1);
}

/// ASVS V3.3: refreshing renews tokens, not the session; past its absolute lifetime
/// (30 days, 7 for users whose roles require MFA) the refresh fails like an expired
/// token and the user signs in again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_have_an_absolute_lifetime() {
    for backend in backends().await {
        let (s, db) = TestServer::start_with(backend, &[("MFA_REQUIRED_ROLES", "admin")]).await;
        let pwd = r#"["pwd"]"#;

        // An ordinary user: 29 days in, refreshing still works; at 31 it does not.
        let ada = s.user("ada").await;
        age_sessions(&db, "ada", 29, pwd).await;
        let renewed = s.refresh(&ada.refresh).await.tokens();
        age_sessions(&db, "ada", 31, pwd).await;
        let p = expect_problem(s.refresh(&renewed.refresh).await, 401);
        assert!(p["detail"].as_str().unwrap().contains("refresh token"), "{p}");
        // The session has ended: its access token too.
        expect_invalid_token(s.get_auth("/auth/me", &renewed.access).await);
        // Signing in again starts a new session, which refreshes.
        let again = s.login_as("ada", PASSWORD).await;
        assert_eq!(s.refresh(&again.refresh).await.status, 200);

        // The MFA lifetime does not apply to an ordinary user.
        let eve = s.user("eve").await;
        age_sessions(&db, "eve", 8, pwd).await;
        assert_eq!(s.refresh(&eve.refresh).await.status, 200);

        // A user whose role requires MFA (signed in with a second factor): 7 days.
        let otp = r#"["pwd","otp"]"#;
        let ben = s.user("ben").await;
        s.service
            .assign_role(ben.user_id(), "admin", &portcullis::domain::Actor::system())
            .await
            .unwrap();
        age_sessions(&db, "ben", 6, otp).await;
        let renewed = s.refresh(&ben.refresh).await;
        assert_eq!(renewed.status, 200, "{}", renewed.text);
        let renewed = renewed.tokens();
        age_sessions(&db, "ben", 8, otp).await;
        expect_problem(s.refresh(&renewed.refresh).await, 401);
        expect_invalid_token(s.get_auth("/auth/me", &renewed.access).await);
        s.stop().await;
    }
}

/// No access token outlives the token horizon its instance stored (revocations last
/// until that horizon, so a token expiring later could outlive its revocation). The
/// real binary runs with a wall clock libfaketime speeds up sixtyfold (a minute a
/// second; its timers keep real time), so within seconds the clock is past the two
/// minutes of margin the horizon stored at start has, long before the next raise,
/// as if raising it had been stalled for minutes. Logins meanwhile get tokens that
/// expire by the stored horizon (shortened, with `expires_in` saying so), then,
/// once it has passed, a 503 problem. (Before, minting ignored the horizon: tokens
/// expired a full lifetime on, past it.) Both backends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_never_outlive_the_stored_token_horizon() {
    let Some(faketime) = faketime_library() else {
        return;
    };
    for backend in backends().await {
        let db = TestDb::new(backend).await;
        let mut cmd = binary_with_clock(&db, &faketime, "+0 x60");
        cmd.env("JWT_EXPIRATION", "60");
        let b = BinaryServer::start(cmd).await;
        let login = json!({"username": "admin", "password": ADMIN_PASSWORD});
        let (mut shortened, mut refused) = (0, None);
        let started = std::time::Instant::now();
        while started.elapsed() < Duration::from_secs(20) {
            let res = b
                .http
                .call(M::POST, "/auth/login", Anonymous, Json(login.clone()))
                .await;
            if res.status == 503 {
                refused = Some(expect_problem(res, 503));
                break;
            }
            assert_eq!(res.status, 200, "{backend:?}: {}", res.text);
            let body: Value = res.json();
            let claims = jwt_part(body["access_token"].as_str().unwrap(), 1);
            let (iat, exp) = (claims["iat"].as_i64().unwrap(), claims["exp"].as_i64().unwrap());
            let horizon = stored_token_horizon(&db).await;
            assert!(
                exp <= horizon,
                "{backend:?}: a token expires at {exp}, past the stored horizon {horizon} (issued at {iat})"
            );
            assert_eq!(body["expires_in"].as_i64(), Some(exp - iat), "{backend:?}: {body}");
            if exp < iat + 60 {
                shortened += 1;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let refused = refused.unwrap_or_else(|| panic!("{backend:?}: logins went on past the stored horizon"));
        assert!(shortened > 0, "{backend:?}: no token was shortened to the horizon");
        assert!(refused["detail"].as_str().unwrap().contains("horizon"), "{refused}");
    }
}
