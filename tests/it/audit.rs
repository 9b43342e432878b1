//! The audit trail: security events exactly once with actor and resource, request
//! records, filters and cursor paging, export, custom events, the secret scan and
//! tamper evidence; on both backends.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use portcullis::domain::AuditEvent;
use serde_json::{Value, json};

use crate::support::*;

/// Every record matching `query` (newest first), following the cursor.
async fn records(s: &TestServer, token: &str, query: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<i64> = None;
    loop {
        let mut path = format!("/audit/logs?limit=1000&{query}");
        if let Some(c) = cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let res = s.get_auth(&path, token).await;
        assert_eq!(res.status(), 200, "{path}");
        let page: Value = res.json().await.unwrap();
        out.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_i64() {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}

fn count_by_action(rows: &[Value]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for r in rows {
        *counts.entry(r["action"].as_str().unwrap().to_string()).or_default() += 1;
    }
    counts
}

fn sub(t: &Tokens) -> String {
    jwt_part(&t.access, 1)["sub"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_events_are_recorded_once_with_actor_and_resource() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        let admin = s.login_as("admin", ADMIN_PASSWORD).await;
        let registered = s.register("alice").await;
        let alice_id = registered["user_id"].as_str().unwrap().to_string();

        // Failures first: none of them may leave a success behind.
        let res = s
            .post_json("/auth/login", &json!({"username": "alice", "password": "wrong"}))
            .await;
        assert_eq!(res.status(), 401);
        let res = s
            .post_json("/auth/login", &json!({"username": "nobody", "password": "wrong"}))
            .await;
        assert_eq!(res.status(), 401);
        let dup = s
            .post_json(
                "/auth/register",
                &json!({"username": "alice", "email": "other@example.com", "password": PASSWORD}),
            )
            .await;
        assert_eq!(dup.status(), 409);

        let first = s.login_as("alice", PASSWORD).await;
        let session = jwt_part(&first.access, 1)["sid"].as_str().unwrap().to_string();
        let rotated = Tokens::from(s.refresh(&first.refresh).await.json::<Value>().await.unwrap());
        assert_eq!(s.refresh(&first.refresh).await.status(), 401, "reuse");
        let _ = rotated;
        let second = s.login_as("alice", PASSWORD).await;
        let wrong_change = s
            .client
            .post(s.url("/auth/me/password"))
            .bearer_auth(&second.access)
            .json(&json!({"current_password": "not it", "new_password": "another long passphrase 42"}))
            .send()
            .await
            .unwrap();
        assert_eq!(wrong_change.status(), 422);
        let change = s
            .client
            .post(s.url("/auth/me/password"))
            .bearer_auth(&second.access)
            .json(&json!({"current_password": PASSWORD, "new_password": "another long passphrase 42"}))
            .send()
            .await
            .unwrap();
        assert_eq!(change.status(), 204);
        let third = s.login_as("alice", "another long passphrase 42").await;
        let res = s
            .post_json("/auth/logout", &json!({"refresh_token": third.refresh}))
            .await;
        assert_eq!(res.status(), 204);
        let fourth = s.login_as("alice", "another long passphrase 42").await;
        let res = s
            .client
            .post(s.url("/auth/logout-all"))
            .bearer_auth(&fourth.access)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 204);
        let created = s
            .client
            .post(s.url("/admin/users"))
            .bearer_auth(&admin.access)
            .json(&json!({"username": "bob", "email": "bob@example.com", "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201);
        let bob_id = created.json::<Value>().await.unwrap()["user_id"]
            .as_str()
            .unwrap()
            .to_string();

        let events = records(&s, &admin.access, "kind=event").await;
        let alice: Vec<Value> = events
            .iter()
            .filter(|r| r["user_id"] == alice_id.as_str())
            .cloned()
            .collect();
        let counts = count_by_action(&alice);
        let expected = [
            ("REGISTER", 1),
            ("LOGIN_FAILURE", 1),
            ("LOGIN_SUCCESS", 4),
            ("TOKEN_REFRESH", 1),
            ("REFRESH_REUSE_DETECTED", 1),
            ("PASSWORD_CHANGE", 1),
            ("LOGOUT", 1),
            ("LOGOUT_ALL", 1),
        ];
        for (action, n) in expected {
            assert_eq!(counts.get(action).copied().unwrap_or(0), n, "{action}: {counts:?}");
        }
        assert_eq!(counts.len(), expected.len(), "{counts:?}");
        let one = |action: &str| alice.iter().find(|r| r["action"] == action).unwrap().clone();
        assert_eq!(one("REGISTER")["resource_type"], "user");
        assert_eq!(one("REGISTER")["resource_id"], alice_id.as_str());
        assert_eq!(one("LOGIN_FAILURE")["username"], "alice");
        let failure_meta: Value = serde_json::from_str(one("LOGIN_FAILURE")["metadata"].as_str().unwrap()).unwrap();
        assert_eq!(failure_meta["reason"], "bad_password");
        let first_login = alice
            .iter()
            .filter(|r| r["action"] == "LOGIN_SUCCESS")
            .min_by_key(|r| r["id"].as_i64())
            .unwrap();
        assert_eq!(first_login["resource_id"], session.as_str());
        assert_eq!(first_login["ip"], "127.0.0.1");
        assert_eq!(one("TOKEN_REFRESH")["resource_id"], session.as_str());
        assert_eq!(one("REFRESH_REUSE_DETECTED")["resource_id"], session.as_str());

        // The unknown name is a failure without a user, and without the name.
        let anonymous: Vec<&Value> = events
            .iter()
            .filter(|r| r["action"] == "LOGIN_FAILURE" && r["user_id"].is_null())
            .collect();
        assert_eq!(anonymous.len(), 1);
        assert!(!anonymous[0].to_string().contains("nobody"));

        // An administrator's creation names the administrator and the new user.
        let creations: Vec<&Value> = events
            .iter()
            .filter(|r| r["action"] == "USER_CREATE" && r["resource_id"] == bob_id.as_str())
            .collect();
        assert_eq!(creations.len(), 1);
        assert_eq!(creations[0]["user_id"], sub(&admin).as_str());

        // Authenticated requests are recorded off the request path, refused ones too.
        let res = s
            .client
            .get(s.url("/auth/me"))
            .bearer_auth(&admin.access)
            .header("x-request-id", "audit-probe-1")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let bob = s.login_as("bob", PASSWORD).await;
        assert_eq!(s.get_auth("/admin/users", &bob.access).await.status(), 403);
        assert_eq!(
            s.get_auth(&format!("/admin/users/{alice_id}"), &admin.access)
                .await
                .status(),
            200
        );
        within(Duration::from_secs(10), "request records are written", || async {
            let requests = records(&s, &admin.access, "kind=request").await;
            ["GET /auth/me", "GET /admin/users", "GET /admin/users/{id}"]
                .iter()
                .all(|a| requests.iter().any(|r| r["action"] == *a))
        })
        .await;
        let requests = records(&s, &admin.access, "kind=request").await;
        let probe = requests
            .iter()
            .find(|r| r["request_id"] == "audit-probe-1")
            .expect("probe");
        assert_eq!(probe["action"], "GET /auth/me");
        assert_eq!(probe["status"], 200);
        assert_eq!(probe["username"], "admin");
        assert!(probe["duration_ms"].as_i64().is_some());
        let refused = requests
            .iter()
            .find(|r| r["username"] == "bob" && r["action"] == "GET /admin/users")
            .expect("refused request");
        assert_eq!(refused["status"], 403);
        let detail = requests
            .iter()
            .find(|r| r["action"] == "GET /admin/users/{id}")
            .expect("user detail");
        assert_eq!(detail["resource_type"], "users");
        assert_eq!(detail["resource_id"], alice_id.as_str());
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_paging_cursor_export_and_custom_events() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        let admin = s.login_as("admin", ADMIN_PASSWORD).await;
        let post = |i: usize| {
            let (client, url, token) = (s.client.clone(), s.url("/audit/events"), admin.access.clone());
            async move {
                let res = client
                    .post(url)
                    .bearer_auth(token)
                    .json(&json!({"action": "INVOICE_APPROVED", "resource_type": "invoice", "resource_id": format!("inv-{i}"), "metadata": {"i": i}}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 201);
            }
        };
        for i in 0..25 {
            post(i).await;
        }
        s.service
            .log_event(AuditEvent::new("EMBEDDED_EVENT").resource("thing", 7).meta("ok", true))
            .await
            .unwrap();

        let mine = records(&s, &admin.access, "action=INVOICE_APPROVED").await;
        assert_eq!(mine.len(), 25);
        let both = records(&s, &admin.access, "action=INVOICE_APPROVED,EMBEDDED_EVENT").await;
        assert_eq!(both.len(), 26);
        let one = records(&s, &admin.access, "resource_type=invoice&resource_id=inv-3").await;
        assert_eq!(one.len(), 1);
        assert_eq!(one[0]["username"], "admin");
        let meta: Value = serde_json::from_str(one[0]["metadata"].as_str().unwrap()).unwrap();
        assert_eq!(meta["i"], 3);
        assert_eq!(
            records(&s, &admin.access, "username=admin&action=EMBEDDED_EVENT")
                .await
                .len(),
            0
        );
        assert_eq!(records(&s, &admin.access, "action=EMBEDDED_EVENT").await.len(), 1);
        let future = "2999-01-01T00:00:00Z";
        assert_eq!(records(&s, &admin.access, &format!("since={future}")).await.len(), 0);
        assert_eq!(
            records(&s, &admin.access, &format!("action=INVOICE_APPROVED&until={future}"))
                .await
                .len(),
            25
        );
        assert_eq!(
            records(&s, &admin.access, "ip=127.0.0.1&action=INVOICE_APPROVED")
                .await
                .len(),
            25
        );
        // Newest first, and offset paging.
        let ids: Vec<i64> = mine.iter().map(|r| r["id"].as_i64().unwrap()).collect();
        assert!(ids.windows(2).all(|w| w[0] > w[1]));
        let page: Value = s
            .get_auth("/audit/logs?action=INVOICE_APPROVED&limit=5&offset=5", &admin.access)
            .await
            .json()
            .await
            .unwrap();
        let paged: Vec<i64> = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_i64().unwrap())
            .collect();
        assert_eq!(paged, ids[5..10]);

        // Cursor paging stays stable while new records arrive.
        let mut seen = Vec::new();
        let mut cursor: Option<i64> = None;
        let mut round = 0;
        loop {
            let mut path = "/audit/logs?action=INVOICE_APPROVED&limit=4".to_string();
            if let Some(c) = cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let page: Value = s.get_auth(&path, &admin.access).await.json().await.unwrap();
            seen.extend(
                page["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r["id"].as_i64().unwrap()),
            );
            // New records land between the pages.
            post(100 + round).await;
            round += 1;
            match page["next_cursor"].as_i64() {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        let first_page_top = seen[0];
        let expected: BTreeSet<i64> = ids.iter().copied().filter(|&id| id <= first_page_top).collect();
        let got: BTreeSet<i64> = seen.iter().copied().collect();
        assert_eq!(got.len(), seen.len(), "no record twice");
        assert_eq!(got, expected, "no record skipped");

        // Export: NDJSON, oldest first, everything that matches.
        let res = s
            .get_auth("/audit/logs/export?action=INVOICE_APPROVED", &admin.access)
            .await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["content-type"], "application/x-ndjson");
        let text = res.text().await.unwrap();
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 25 + round);
        assert!(lines.windows(2).all(|w| w[0]["id"].as_i64() < w[1]["id"].as_i64()));

        // Bad input and missing permissions.
        for bad in ["limit=0", "limit=1001", "offset=-1", "since=yesterday", "status=abc"] {
            expect_problem(s.get_auth(&format!("/audit/logs?{bad}"), &admin.access).await, 422).await;
        }
        let bad_action = s
            .client
            .post(s.url("/audit/events"))
            .bearer_auth(&admin.access)
            .json(&json!({"action": "lower case"}))
            .send()
            .await
            .unwrap();
        expect_problem(bad_action, 422).await;
        let user = s.user("reader").await;
        expect_problem(s.get_auth("/audit/logs", &user.access).await, 403).await;
        let res = s
            .client
            .post(s.url("/audit/events"))
            .bearer_auth(&user.access)
            .json(&json!({"action": "FORGED"}))
            .send()
            .await
            .unwrap();
        expect_problem(res, 403).await;
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secrets_in_the_trail_and_tampering_is_detected() {
    for backend in backends().await {
        let (s, db) = TestServer::start(backend).await;
        let admin = s.login_as("admin", ADMIN_PASSWORD).await;
        let t = s.user("carol").await;
        let rotated = Tokens::from(s.refresh(&t.refresh).await.json::<Value>().await.unwrap());
        let key: Value = s
            .client
            .post(s.url("/auth/api-keys"))
            .bearer_auth(&rotated.access)
            .json(&json!({"name": "ci"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let api_key = key["key"].as_str().unwrap().to_string();
        assert_eq!(
            s.client
                .get(s.url("/auth/me"))
                .header("x-api-key", &api_key)
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
        let _ = s
            .post_json(
                "/auth/login",
                &json!({"username": "carol", "password": "Typo-Secret-Password-77"}),
            )
            .await;
        let _ = s
            .post_json(
                "/auth/login",
                &json!({"username": "PasswordInTheWrongField-99", "password": "x"}),
            )
            .await;
        s.service.flush_audit_requests().await.unwrap();
        let dump = s
            .get_auth("/audit/logs/export", &admin.access)
            .await
            .text()
            .await
            .unwrap();
        assert!(dump.lines().count() > 5, "{dump}");
        for secret in [
            PASSWORD,
            ADMIN_PASSWORD,
            "Typo-Secret-Password-77",
            "PasswordInTheWrongField-99",
            &t.access,
            &t.refresh,
            &rotated.access,
            &rotated.refresh,
            &admin.access,
            &api_key,
            api_key.rsplit('_').next().unwrap(),
        ] {
            assert!(!dump.contains(secret), "a secret is in the audit trail");
        }
        s.stop().await;

        let verify = || run_binary(binary_on(&db).args(["audit", "verify"]), "");
        let (code, out, err) = verify();
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains("intact"), "{out}");
        // Edit a record behind the service's back: verify names the chain and record.
        let edited = execute_sql(
            &db,
            "UPDATE audit_log SET username = 'mallory' WHERE id = (SELECT MIN(id) FROM audit_log WHERE username = 'carol')",
        )
        .await;
        assert_eq!(edited, 1);
        let (code, _, err) = verify();
        assert_eq!(code, 5, "{err}");
        assert!(err.contains("altered") && err.contains("broken at record"), "{err}");
        execute_sql(
            &db,
            "UPDATE audit_log SET username = 'carol' WHERE username = 'mallory'",
        )
        .await;
        assert_eq!(verify().0, 0);
        // Delete one from the middle of a chain, then the tail of another.
        execute_sql(
            &db,
            "DELETE FROM audit_log WHERE id = (SELECT id FROM audit_log WHERE seq = 2 ORDER BY id LIMIT 1)",
        )
        .await;
        let (code, _, err) = verify();
        assert_eq!(code, 5);
        assert!(err.contains("record 2 is missing"), "{err}");
        s_verify_tail_delete(&db).await;
    }
}

/// Deleting the newest records of a chain is caught by the chain head.
async fn s_verify_tail_delete(db: &TestDb) {
    execute_sql(db, "DELETE FROM audit_log").await;
    let (code, _, err) = run_binary(binary_on(db).args(["audit", "verify"]), "");
    assert_eq!(code, 5);
    assert!(err.contains("removed"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auditing_can_be_turned_off() {
    let (s, db) = TestServer::start_with(Backend::Sqlite, &[("ENABLE_AUDIT_LOGGING", "false")]).await;
    let t = s.user("quiet").await;
    assert_eq!(s.get_auth("/auth/me", &t.access).await.status(), 200);
    s.service.flush_audit_requests().await.unwrap();
    s.stop().await;
    let (code, out, err) = run_binary(binary_on(&db).args(["--json", "audit", "tail"]), "");
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "", "nothing recorded");
}
