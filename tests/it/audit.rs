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
        assert_eq!(res.status, 200, "{path}");
        let page: Value = res.json();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_events_are_recorded_once_with_actor_and_resource() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        let admin = s.login_as("admin", ADMIN_PASSWORD).await;
        let registered = s.register("alice").await;
        let alice_id = registered["user_id"].as_str().unwrap().to_string();

        // Failures first: none of them may leave a success behind.
        assert_eq!(s.login("alice", "wrong").await.status, 401);
        assert_eq!(s.login("nobody", "wrong").await.status, 401);
        let dup = s
            .post_json(
                "/auth/register",
                &json!({"username": "alice", "email": "other@example.com", "password": PASSWORD}),
            )
            .await;
        assert_eq!(dup.status, 409);

        let first = s.login_as("alice", PASSWORD).await;
        let session = jwt_part(&first.access, 1)["sid"].as_str().unwrap().to_string();
        let rotated = s.refresh(&first.refresh).await.tokens();
        assert_eq!(s.refresh(&first.refresh).await.status, 401, "reuse");
        let _ = rotated;
        let second = s.login_as("alice", PASSWORD).await;
        let change = |current: &str| {
            let body = json!({"current_password": current, "new_password": "another long passphrase 42"});
            s.call(M::POST, "/auth/me/password", Bearer(&second.access), Json(body))
        };
        assert_eq!(change("not it").await.status, 422);
        assert_eq!(change(PASSWORD).await.status, 204);
        let third = s.login_as("alice", "another long passphrase 42").await;
        let res = s
            .post_json("/auth/logout", &json!({"refresh_token": third.refresh}))
            .await;
        assert_eq!(res.status, 204);
        let fourth = s.login_as("alice", "another long passphrase 42").await;
        let res = s.call(M::POST, "/auth/logout-all", Bearer(&fourth.access), Empty).await;
        assert_eq!(res.status, 204);
        let bob = json!({"username": "bob", "email": "bob@example.com", "password": PASSWORD});
        let created = s.call(M::POST, "/admin/users", Bearer(&admin.access), Json(bob)).await;
        assert_eq!(created.status, 201);
        let bob_id = created.json()["user_id"].as_str().unwrap().to_string();

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
            ("LOGIN", 4),
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
            .filter(|r| r["action"] == "LOGIN")
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

        // The replaced services' clients filter logins by `LOGIN`; a record an earlier
        // version wrote as `LOGIN_SUCCESS` (here posted as a custom event) is found by
        // either name, and so are today's.
        let legacy = json!({"action": "LOGIN_SUCCESS", "resource_type": "session", "resource_id": "old"});
        let res = s
            .call(M::POST, "/audit/events", Bearer(&admin.access), Json(legacy))
            .await;
        assert_eq!(res.status, 201);
        let ids = |rows: Vec<Value>| -> Vec<i64> { rows.iter().map(|r| r["id"].as_i64().unwrap()).collect() };
        let by_new = ids(records(&s, &admin.access, "action=LOGIN").await);
        let by_old = ids(records(&s, &admin.access, "action=LOGIN_SUCCESS").await);
        assert_eq!(by_new, by_old);
        assert!(by_new.contains(&first_login["id"].as_i64().unwrap()));
        let legacy_rows = records(&s, &admin.access, "resource_id=old").await;
        assert!(by_new.contains(&legacy_rows[0]["id"].as_i64().unwrap()));
        let actions = s.get_auth("/audit/actions", &admin.access).await.json();
        let actions: Vec<String> = serde_json::from_value(actions["actions"].clone()).unwrap();
        let mut sorted = actions.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(actions, sorted, "sorted, each once");
        for a in ["LOGIN", "LOGIN_FAILURE", "LOGIN_SUCCESS", "REGISTER", "LOGOUT_ALL"] {
            assert!(actions.iter().any(|x| x == a), "{a} in {actions:?}");
        }

        // An administrator's creation names the administrator and the new user.
        let creations: Vec<&Value> = events
            .iter()
            .filter(|r| r["action"] == "USER_CREATE" && r["resource_id"] == bob_id.as_str())
            .collect();
        assert_eq!(creations.len(), 1);
        assert_eq!(creations[0]["user_id"], admin.user_id().to_string().as_str());

        // Authenticated requests are recorded off the request path, refused ones too.
        let probe = [("x-request-id", "audit-probe-1")];
        let res = s
            .http
            .call_with(M::GET, "/auth/me", Bearer(&admin.access), Empty, &probe)
            .await;
        assert_eq!(res.status, 200);
        let bob = s.login_as("bob", PASSWORD).await;
        assert_eq!(s.get_auth("/admin/users", &bob.access).await.status, 403);
        assert_eq!(
            s.get_auth(&format!("/admin/users/{alice_id}"), &admin.access)
                .await
                .status,
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
            let (s, token) = (&s, admin.access.as_str());
            async move {
                let event = json!({"action": "INVOICE_APPROVED", "resource_type": "invoice", "resource_id": format!("inv-{i}"), "metadata": {"i": i}});
                let res = s.call(M::POST, "/audit/events", Bearer(token), Json(event)).await;
                assert_eq!(res.status, 201);
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

        // Text that JSON must escape reads back unchanged, from an event and from
        // request records written in one batch, and the chains still verify.
        // (The HTTP API refuses control characters in resource ids; metadata keeps them
        // escaped.)
        let awkward = "quote \" backslash \\ ünïcödé 🦀 </script> \u{2028} {\"not\": [json";
        let control = "tab \t newline \n nul \0 bell \u{7}";
        s.service
            .log_event(
                AuditEvent::new("AWKWARD_TEXT")
                    .resource("thing", awkward)
                    .meta("text", awkward)
                    .meta("control", control),
            )
            .await
            .unwrap();
        let refused = s
            .service
            .log_event(AuditEvent::new("NUL_INSIDE").resource("thing", "a\0b"))
            .await;
        assert!(
            matches!(refused, Err(portcullis::error::AppError::Validation(_))),
            "{refused:?}"
        );
        // Never recorded, so not a name a filter may use.
        let p = expect_problem(s.get_auth("/audit/logs?action=NUL_INSIDE", &admin.access).await, 422);
        assert_eq!(p["errors"][0]["field"], "action", "{p}");
        let odd = records(&s, &admin.access, "action=AWKWARD_TEXT").await;
        assert_eq!(odd.len(), 1);
        assert_eq!(odd[0]["resource_id"], awkward);
        let meta: Value = serde_json::from_str(odd[0]["metadata"].as_str().unwrap()).unwrap();
        assert_eq!(meta["text"], awkward);
        assert_eq!(meta["control"], control);
        let agent = "agent \"quoted\" \\ back\tslash";
        for _ in 0..20 {
            let odd_agent = [("user-agent", agent)];
            let res = s
                .http
                .call_with(M::GET, "/auth/me", Bearer(&admin.access), Empty, &odd_agent)
                .await;
            assert_eq!(res.status, 200);
        }
        s.service.flush_audit_requests().await.unwrap();
        within(
            Duration::from_secs(10),
            "request records with the odd user agent",
            || async {
                records(&s, &admin.access, "action=GET%20/auth/me")
                    .await
                    .iter()
                    .filter(|r| r["user_agent"] == agent)
                    .count()
                    == 20
            },
        )
        .await;
        let report = s.service.verify_audit().await.unwrap();
        assert!(report.broken.is_none(), "{report:?}");
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
            .json();
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
            let page: Value = s.get_auth(&path, &admin.access).await.json();
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
        assert_eq!(res.status, 200);
        assert_eq!(res.headers["content-type"], "application/x-ndjson");
        let text = res.text;
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 25 + round);
        assert!(lines.windows(2).all(|w| w[0]["id"].as_i64() < w[1]["id"].as_i64()));

        // Bad input and missing permissions.
        for bad in ["limit=0", "limit=1001", "offset=-1", "since=yesterday", "status=abc"] {
            expect_problem(s.get_auth(&format!("/audit/logs?{bad}"), &admin.access).await, 422);
        }
        let bad_action = json!({"action": "lower case"});
        let res = s
            .call(M::POST, "/audit/events", Bearer(&admin.access), Json(bad_action))
            .await;
        expect_problem(res, 422);
        let user = s.user("reader").await;
        expect_problem(s.get_auth("/audit/logs", &user.access).await, 403);
        let forged = json!({"action": "FORGED"});
        let res = s
            .call(M::POST, "/audit/events", Bearer(&user.access), Json(forged))
            .await;
        expect_problem(res, 403);
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secrets_in_the_trail_and_tampering_is_detected() {
    for backend in backends().await {
        let (s, db) = TestServer::start(backend).await;
        let admin = s.login_as("admin", ADMIN_PASSWORD).await;
        let t = s.user("carol").await;
        let rotated = s.refresh(&t.refresh).await.tokens();
        let key = s
            .call(
                M::POST,
                "/auth/api-keys",
                Bearer(&rotated.access),
                Json(json!({"name": "ci"})),
            )
            .await
            .json();
        let api_key = key["key"].as_str().unwrap().to_string();
        assert_eq!(s.call(M::GET, "/auth/me", ApiKey(&api_key), Empty).await.status, 200);
        let _ = s.login("carol", "Typo-Secret-Password-77").await;
        let _ = s.login("PasswordInTheWrongField-99", "x").await;
        s.service.flush_audit_requests().await.unwrap();
        let dump = s.get_auth("/audit/logs/export", &admin.access).await.text;
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
            // The secret part: everything after `pcx_<id>_` (it may itself hold `_`).
            api_key
                .strip_prefix("pcx_")
                .and_then(|rest| rest.split_once('_'))
                .map(|(_, secret)| secret)
                .unwrap(),
        ] {
            assert!(!dump.contains(secret), "a secret is in the audit trail");
        }
        // A chain of three, so that one record can be cut from its middle below.
        let filler = portcullis::store::AuditFields {
            kind: "event".into(),
            action: "TEST_FILLER".into(),
            metadata: "{}".into(),
            ..Default::default()
        }
        .stamped(chrono::Utc::now());
        s.service
            .store()
            .append_audit("tamper-test", vec![filler.clone(), filler.clone(), filler])
            .await
            .unwrap();
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
        let deleted = execute_sql(
            &db,
            "DELETE FROM audit_log WHERE seq = 2 AND chain = \
             (SELECT chain FROM audit_log GROUP BY chain ORDER BY COUNT(*) DESC LIMIT 1)",
        )
        .await;
        assert_eq!(deleted, 1);
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
    assert_eq!(s.get_auth("/auth/me", &t.access).await.status, 200);
    s.service.flush_audit_requests().await.unwrap();
    s.stop().await;
    let (code, out, err) = run_binary(binary_on(&db).args(["--json", "audit", "tail"]), "");
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "", "nothing recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn administrative_changes_are_recorded_once_and_failures_not_at_all() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        let admin = s.login_as("admin", ADMIN_PASSWORD).await;
        let a = admin.access.as_str();
        let admin_id = admin.user_id().to_string();
        let carol_id = s.register("carol").await["user_id"].as_str().unwrap().to_string();
        let carol_path = format!("/admin/users/{carol_id}");
        let steps: Vec<(M, String, Option<Value>, u16)> = vec![
            (
                M::POST,
                "/admin/permissions".into(),
                Some(json!({"name": "reports:share"})),
                201,
            ),
            (
                M::POST,
                "/admin/permissions".into(),
                Some(json!({"name": "reports:share"})),
                409,
            ),
            (
                M::POST,
                "/admin/roles".into(),
                Some(json!({"name": "auditor", "permissions": ["audit:read"]})),
                201,
            ),
            (M::POST, "/admin/roles".into(), Some(json!({"name": "auditor"})), 409),
            (
                M::POST,
                "/admin/roles".into(),
                Some(json!({"name": "ghost", "permissions": ["no:such"]})),
                422,
            ),
            (
                M::PATCH,
                "/admin/roles/auditor".into(),
                Some(json!({"description": "reads the trail"})),
                200,
            ),
            (
                M::PATCH,
                "/admin/roles/nobody".into(),
                Some(json!({"description": "x"})),
                404,
            ),
            (
                M::POST,
                "/admin/roles/auditor/permissions".into(),
                Some(json!({"permission": "reports:share"})),
                204,
            ),
            // Granting a held permission changes nothing and records nothing.
            (
                M::POST,
                "/admin/roles/auditor/permissions".into(),
                Some(json!({"permission": "reports:share"})),
                204,
            ),
            (
                M::DELETE,
                "/admin/roles/auditor/permissions/reports:share".into(),
                None,
                204,
            ),
            (
                M::DELETE,
                "/admin/roles/auditor/permissions/reports:share".into(),
                None,
                404,
            ),
            (
                M::POST,
                format!("{carol_path}/roles"),
                Some(json!({"role": "auditor"})),
                204,
            ),
            (
                M::POST,
                format!("{carol_path}/roles"),
                Some(json!({"role": "auditor"})),
                204,
            ),
            (
                M::POST,
                format!("{carol_path}/roles"),
                Some(json!({"role": "nope"})),
                404,
            ),
            (M::DELETE, format!("{carol_path}/roles/auditor"), None, 204),
            (M::DELETE, format!("{carol_path}/roles/auditor"), None, 404),
            (M::PATCH, carol_path.clone(), Some(json!({"full_name": "Carol C"})), 200),
            (
                M::PATCH,
                carol_path.clone(),
                Some(json!({"email": "not an email"})),
                422,
            ),
            (M::POST, format!("{carol_path}/disable"), None, 200),
            (M::POST, format!("{carol_path}/disable"), None, 200),
            (M::POST, format!("{carol_path}/enable"), None, 200),
            (
                M::PUT,
                format!("{carol_path}/password"),
                Some(json!({"password": "a brand new passphrase 7"})),
                204,
            ),
            (
                M::PUT,
                format!("{carol_path}/password"),
                Some(json!({"password": "short"})),
                422,
            ),
            (M::POST, format!("{carol_path}/unlock"), None, 204),
            (M::POST, "/admin/keys/rotate".into(), None, 200),
            (M::DELETE, format!("/admin/users/{admin_id}"), None, 409),
            (M::DELETE, "/admin/roles/auditor".into(), None, 204),
            (M::DELETE, "/admin/roles/auditor".into(), None, 404),
            (M::DELETE, "/admin/permissions/reports:share".into(), None, 204),
        ];
        let mut kid = String::new();
        let dave = s.user("dave").await;
        let res = s.call(M::POST, "/admin/keys/rotate", Bearer(&dave.access), Empty).await;
        assert_eq!(res.status, 403, "rotation needs keys:manage");
        for (method, path, body, want) in steps {
            let res = s.call(method.clone(), &path, Bearer(a), body.map_or(Empty, Json)).await;
            assert_eq!(res.status, want, "{method} {path}: {}", res.body);
            if path == "/admin/keys/rotate" {
                kid = res.body["kid"].as_str().unwrap().to_string();
            }
        }

        assert!(s.published_kids().await.contains(&kid), "the new key is published");

        // The user's own changes name the user.
        let carol = s.login_as("carol", "a brand new passphrase 7").await;
        let c = carol.access.as_str();
        let res = s
            .call(M::PATCH, "/auth/me", Bearer(c), Json(json!({"full_name": "Carol"})))
            .await;
        assert_eq!(res.status, 200);
        let key = s
            .call(M::POST, "/auth/api-keys", Bearer(c), Json(json!({"name": "ci"})))
            .await;
        assert_eq!(key.status, 201);
        let key_id = key.body["id"].as_str().unwrap().to_string();
        let key_path = format!("/auth/api-keys/{key_id}");
        assert_eq!(s.call(M::DELETE, &key_path, Bearer(c), Empty).await.status, 204);
        assert_eq!(s.call(M::DELETE, &key_path, Bearer(c), Empty).await.status, 404);
        let temp = s
            .call(
                M::POST,
                "/auth/temporary-tokens",
                Bearer(c),
                Json(json!({"purpose": "export", "max_uses": 1})),
            )
            .await;
        assert_eq!(temp.status, 201);
        let temp = temp.body;
        let sid = jwt_part(c, 1)["sid"].as_str().unwrap().to_string();
        let session_path = format!("/auth/sessions/{sid}");
        assert_eq!(s.call(M::DELETE, &session_path, Bearer(c), Empty).await.status, 204);
        assert_eq!(s.call(M::DELETE, &carol_path, Bearer(a), Empty).await.status, 204);

        let events = records(&s, a, "kind=event").await;
        let by_admin: Vec<Value> = events
            .iter()
            // Beyond its own bootstrap and logins.
            .filter(|r| r["user_id"] == admin_id.as_str() && r["resource_id"] != admin_id.as_str())
            .filter(|r| !r["action"].as_str().unwrap().starts_with("LOGIN"))
            .cloned()
            .collect();
        let counts = count_by_action(&by_admin);
        let expected = [
            ("PERMISSION_CREATE", 1),
            ("ROLE_CREATE", 1),
            ("ROLE_UPDATE", 1),
            ("PERMISSION_GRANT", 1),
            ("PERMISSION_REVOKE", 1),
            ("ROLE_ASSIGN", 1),
            ("ROLE_REMOVE", 1),
            ("USER_UPDATE", 1),
            ("USER_DISABLE", 1),
            ("USER_ENABLE", 1),
            ("PASSWORD_RESET", 1),
            ("USER_UNLOCK", 1),
            ("SIGNING_KEY_ROTATE", 1),
            ("ROLE_DELETE", 1),
            ("PERMISSION_DELETE", 1),
            ("USER_DELETE", 1),
        ];
        for (action, n) in expected {
            assert_eq!(counts.get(action).copied().unwrap_or(0), n, "{action}: {counts:?}");
        }
        assert_eq!(counts.len(), expected.len(), "{counts:?}");
        let one = |action: &str| {
            let r = by_admin.iter().find(|r| r["action"] == action).unwrap().clone();
            assert_eq!(r["username"], "admin", "{action}");
            assert_eq!(r["ip"], "127.0.0.1", "{action}");
            let meta: Value = serde_json::from_str(r["metadata"].as_str().unwrap()).unwrap();
            (r["resource_type"].clone(), r["resource_id"].clone(), meta)
        };
        for (action, kind, id) in [
            ("ROLE_CREATE", "role", "auditor"),
            ("ROLE_UPDATE", "role", "auditor"),
            ("ROLE_DELETE", "role", "auditor"),
            ("PERMISSION_GRANT", "role", "auditor"),
            ("PERMISSION_CREATE", "permission", "reports:share"),
            ("ROLE_ASSIGN", "user", carol_id.as_str()),
            ("ROLE_REMOVE", "user", carol_id.as_str()),
            ("USER_UPDATE", "user", carol_id.as_str()),
            ("USER_DISABLE", "user", carol_id.as_str()),
            ("PASSWORD_RESET", "user", carol_id.as_str()),
            ("USER_DELETE", "user", carol_id.as_str()),
            ("SIGNING_KEY_ROTATE", "signing_key", kid.as_str()),
        ] {
            let (t, i, _) = one(action);
            assert_eq!((t.as_str(), i.as_str()), (Some(kind), Some(id)), "{action}");
        }
        assert_eq!(one("ROLE_ASSIGN").2["role"], "auditor");
        assert_eq!(one("PERMISSION_REVOKE").2["permission"], "reports:share");
        assert_eq!(one("USER_UPDATE").2["fields"], json!(["full_name"]));

        let by_carol: Vec<Value> = events
            .iter()
            .filter(|r| r["user_id"] == carol_id.as_str())
            .cloned()
            .collect();
        let counts = count_by_action(&by_carol);
        for (action, n) in [
            ("USER_UPDATE", 1),
            ("APIKEY_CREATE", 1),
            ("APIKEY_REVOKE", 1),
            ("TEMP_TOKEN_CREATE", 1),
            ("LOGOUT", 1),
        ] {
            assert_eq!(counts.get(action).copied().unwrap_or(0), n, "{action}: {counts:?}");
        }
        let find = |action: &str| by_carol.iter().find(|r| r["action"] == action).unwrap();
        assert_eq!(find("APIKEY_CREATE")["resource_id"], key_id.as_str());
        assert_eq!(find("APIKEY_REVOKE")["resource_id"], key_id.as_str());
        assert_eq!(find("TEMP_TOKEN_CREATE")["resource_id"], temp["id"]);
        assert_eq!(find("LOGOUT")["resource_id"], sid.as_str());
        assert_eq!(find("USER_UPDATE")["username"], "carol");

        // The CLI is the operator: no user, marked as such.
        let (code, _, err) = run_binary(
            binary_on(&_db).args(["role", "create", "cli-made", "--description", "from the shell"]),
            "",
        );
        assert_eq!(code, 0, "{err}");
        let cli = records(&s, a, "action=ROLE_CREATE&resource_id=cli-made").await;
        assert_eq!(cli.len(), 1);
        assert!(cli[0]["user_id"].is_null());
        assert!(cli[0]["metadata"].as_str().unwrap().contains("\"via\":\"system\""));
        s.stop().await;
    }
}

/// A user filter finds the user's records whether they are already indexed by user
/// (SQLite fills that index in runs behind the writer) or not yet, in order, across
/// pages and with other filters; retention leaves nothing of a purged record behind.
#[tokio::test]
async fn user_filter_reads_indexed_and_unindexed_records_alike() {
    use portcullis::config::DatabaseTarget;
    use portcullis::store::{AUDIT_BY_USER_RUN, AuditByUserRuns, AuditFields, AuditFilter, AuditKey, Store};

    for backend in backends().await {
        let db = TestDb::new(backend).await;
        let target = match db.url.strip_prefix("sqlite://") {
            Some(path) => DatabaseTarget::Sqlite(path.into()),
            None => DatabaseTarget::Postgres(db.url.clone()),
        };
        let store = Store::connect(&target, 2)
            .await
            .unwrap()
            .with_audit_key(AuditKey::from_bytes(&[7; 32]));
        store.migrate().await.unwrap();
        let old = chrono::Utc::now() - chrono::Duration::days(30);
        let record = |user: Option<&str>, action: &str, at| {
            AuditFields {
                chain: "test".into(),
                kind: "request".into(),
                action: action.into(),
                user_id: user.map(str::to_string),
                metadata: "{}".into(),
                ..AuditFields::default()
            }
            .stamped(at)
        };
        let users = [Some("alice"), Some("bob"), None];
        let batch = |n: usize, at| -> Vec<AuditFields> {
            (0..n)
                .map(|i| record(users[i % 3], if i % 2 == 0 { "GET /a" } else { "GET /b" }, at))
                .collect()
        };
        let alice = |filter: AuditFilter| AuditFilter {
            user_id: Some("alice".into()),
            ..filter
        };
        // Every way of reading alice's records must agree with reading them all.
        let check = |store: &Store, stage: &'static str| {
            let store = store.clone();
            async move {
                let all = store
                    .audit_records(&AuditFilter::default(), false, 1000, 0)
                    .await
                    .unwrap();
                let mine: Vec<i64> = all
                    .iter()
                    .filter(|r| r.fields.user_id.as_deref() == Some("alice"))
                    .map(|r| r.id)
                    .collect();
                let ids = |rows: Vec<portcullis::store::AuditRow>| rows.into_iter().map(|r| r.id).collect::<Vec<_>>();
                let newest = ids(store
                    .audit_records(&alice(AuditFilter::default()), false, 1000, 0)
                    .await
                    .unwrap());
                assert_eq!(newest, mine, "{stage}: newest first");
                let oldest = ids(store
                    .audit_records(&alice(AuditFilter::default()), true, 1000, 0)
                    .await
                    .unwrap());
                assert_eq!(
                    oldest,
                    mine.iter().rev().copied().collect::<Vec<_>>(),
                    "{stage}: oldest first"
                );
                let ascending: Vec<i64> = mine.iter().rev().copied().collect();
                for (limit, offset) in [(3, 0), (3, 2), (4, 5), (2, 3), (10, 9)] {
                    for (older_first, all) in [(false, &mine), (true, &ascending)] {
                        let page = ids(store
                            .audit_records(&alice(AuditFilter::default()), older_first, limit, offset)
                            .await
                            .unwrap());
                        let want: Vec<i64> = all.iter().skip(offset as usize).take(limit as usize).copied().collect();
                        assert_eq!(
                            page, want,
                            "{stage}: limit {limit} offset {offset} oldest first {older_first}"
                        );
                    }
                }
                let cursor = mine[mine.len() / 2];
                // A cursor reads on from one record: back from it newest first (paging),
                // on from it oldest first (export and tail).
                for (older_first, all) in [(false, &mine), (true, &ascending)] {
                    let cursor_filter = if older_first {
                        AuditFilter {
                            after_id: Some(cursor),
                            ..AuditFilter::default()
                        }
                    } else {
                        AuditFilter {
                            before_id: Some(cursor),
                            ..AuditFilter::default()
                        }
                    };
                    let read = ids(store
                        .audit_records(&alice(cursor_filter), older_first, 1000, 0)
                        .await
                        .unwrap());
                    let want: Vec<i64> = all
                        .iter()
                        .filter(|id| if older_first { **id > cursor } else { **id < cursor })
                        .copied()
                        .collect();
                    assert_eq!(read, want, "{stage}: cursor, oldest first {older_first}");
                }
                let with_action = store
                    .audit_records(
                        &alice(AuditFilter {
                            actions: vec!["GET /a".into()],
                            ..AuditFilter::default()
                        }),
                        false,
                        1000,
                        0,
                    )
                    .await
                    .unwrap();
                let want: Vec<i64> = all
                    .iter()
                    .filter(|r| r.fields.user_id.as_deref() == Some("alice") && r.fields.action == "GET /a")
                    .map(|r| r.id)
                    .collect();
                assert!(!want.is_empty(), "{stage}");
                assert_eq!(ids(with_action), want, "{stage}: with an action");
                mine.len()
            }
        };

        // Each batch ends on one of alice's records, so the mark lands on one: a filter
        // that took the mark's own record from both parts, or from neither, would show.
        store.append_audit("test", batch(13, old)).await.unwrap();
        assert_eq!(check(&store, "nothing indexed").await, 5);
        let sqlite = matches!(backend, Backend::Sqlite);
        assert_eq!(store.index_audit_by_user(1).await.unwrap(), if sqlite { 9 } else { 0 });
        // Below the run length nothing moves; what follows is read unindexed.
        store.append_audit("test", batch(10, chrono::Utc::now())).await.unwrap();
        assert_eq!(store.index_audit_by_user(100).await.unwrap(), 0);
        assert_eq!(check(&store, "part indexed").await, 9);

        // Retention removes the old records and, on SQLite, their index entries.
        let purged = store
            .purge_audit(chrono::Utc::now() - chrono::Duration::days(1), |_| None)
            .await
            .unwrap();
        assert_eq!(purged, 13);
        assert_eq!(check(&store, "after the purge").await, 4);
        assert_eq!(store.index_audit_by_user(1).await.unwrap(), if sqlite { 7 } else { 0 });
        assert_eq!(check(&store, "all indexed").await, 4);
        if sqlite {
            let dangling = execute_sql(
                &db,
                "DELETE FROM audit_by_user WHERE record NOT IN (SELECT id FROM audit_log)",
            )
            .await;
            assert_eq!(dangling, 0);
        }

        // Retention that purges a whole chain, records past the mark too: nothing of it
        // is left to index. Old records behind kept ones stay (a base moves past expired
        // records only), and are indexed from the mark on like the records that follow
        // (ids are never reused).
        store.append_audit("test", batch(2, old)).await.unwrap();
        store.append_audit("test-old", batch(4, old)).await.unwrap();
        let purged = store
            .purge_audit(chrono::Utc::now() - chrono::Duration::days(1), |_| None)
            .await
            .unwrap();
        assert_eq!(purged, 4, "only the chain whose every record expired");
        assert_eq!(store.index_audit_by_user(1).await.unwrap(), if sqlite { 2 } else { 0 });
        store.append_audit("test", batch(4, chrono::Utc::now())).await.unwrap();
        assert_eq!(store.index_audit_by_user(1).await.unwrap(), if sqlite { 3 } else { 0 });
        assert_eq!(check(&store, "after purging a whole chain").await, 7);

        // The writer's policy: batches are counted, and a run is indexed once
        // AUDIT_BY_USER_RUN records have gathered, not before.
        let mut runs = AuditByUserRuns::default();
        let batches = AUDIT_BY_USER_RUN as usize / 256;
        for n in 1..=batches {
            store
                .append_audit("test", batch(256, chrono::Utc::now()))
                .await
                .unwrap();
            let indexed = runs.appended(&store, 256).await.unwrap();
            // 171 of every 256 records have a user (the third has none).
            let want = if sqlite && n == batches {
                171 * batches as u64
            } else {
                0
            };
            assert_eq!(indexed, want, "after batch {n}");
        }
        assert_eq!(store.index_audit_by_user(1).await.unwrap(), 0, "nothing left behind");
    }
}

/// The minutely upkeep indexes by user whatever the writer left past the mark, however
/// little: an idle instance would never gather the writer's run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upkeep_indexes_request_records_by_user() {
    use portcullis::store::AuditFilter;

    let (s, db) = TestServer::start(Backend::Sqlite).await;
    let t = s.user("carol").await;
    for _ in 0..3 {
        assert_eq!(s.get_auth("/auth/me", &t.access).await.status, 200);
    }
    s.service.flush_audit_requests().await.unwrap();
    let carol = AuditFilter {
        user_id: Some(t.user_id().to_string()),
        ..AuditFilter::default()
    };
    let store = s.service.store();
    let requests = |rows: &[portcullis::store::AuditRow]| rows.iter().filter(|r| r.fields.kind == "request").count();
    within(Duration::from_secs(5), "carol's request records written", || async {
        requests(&store.audit_records(&carol, false, 100, 0).await.unwrap()) == 3
    })
    .await;
    // 1 when records wait past the mark (the statement changes nothing either way).
    let past_mark = || {
        execute_sql(
            &db,
            "UPDATE audit_by_user_mark SET last_id = last_id \
             WHERE last_id < (SELECT MAX(id) FROM audit_log)",
        )
    };
    assert_eq!(past_mark().await, 1, "the writer has not indexed so few");
    s.service.purge_expired().await.unwrap();
    assert_eq!(past_mark().await, 0, "the upkeep indexed them");
    let mine = store.audit_records(&carol, false, 100, 0).await.unwrap();
    assert_eq!(requests(&mine), 3);
    let delete_carols = format!("DELETE FROM audit_by_user WHERE owner = '{}'", t.user_id());
    let entries = execute_sql(&db, Box::leak(delete_carols.into_boxed_str())).await;
    assert_eq!(
        entries as usize,
        mine.len(),
        "every one of carol's records is in the index"
    );
    s.stop().await;
}

/// Every date and number in a query is range-checked before anything runs: an instant
/// no audit record can have, or a number outside its range, is a 422 naming the
/// parameter, for the log and for the export (never a 500 or a cut-off stream).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_dates_and_numbers_out_of_range_are_422_naming_the_parameter() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        let admin = s.login_as("admin", ADMIN_PASSWORD).await;
        let bad: &[(&str, &str)] = &[
            ("since", "since=0001-01-01T00:00:00Z"),
            ("since", "since=1969-12-31T23:59:59Z"),
            ("until", "until=9999-12-31T23:59:59Z"),
            ("until", "until=3000-01-01T00:00:01Z"),
            ("since", "since=%2B262142-01-01T00:00:00Z"),
            ("until", "until=-0001-01-01T00:00:00Z"),
            ("since", "since=2026-13-01T00:00:00Z"),
            ("status", "status=-1"),
            ("status", "status=2147483647"),
            ("status", "status=99999999999"),
            ("cursor", "cursor=-5"),
            ("cursor", "cursor=0"),
            ("cursor", "cursor=99999999999999999999"),
            ("offset", "offset=-1"),
            ("offset", "offset=9223372036854775807"),
            ("limit", "limit=0"),
            ("limit", "limit=abc"),
        ];
        for (field, query) in bad {
            for route in ["/audit/logs", "/audit/logs/export"] {
                if route.ends_with("export") && ["offset", "limit"].contains(field) {
                    continue; // the export takes neither
                }
                let res = s.get_auth(&format!("{route}?{query}"), &admin.access).await;
                let body = expect_problem(res, 422);
                let fields: Vec<&str> = body["errors"]
                    .as_array()
                    .map(|e| e.iter().filter_map(|e| e["field"].as_str()).collect())
                    .unwrap_or_default();
                assert_eq!(fields, [*field], "{route}?{query}: {body}");
            }
        }
        // The edges themselves are fine, and the trail's records are found within them.
        let res = s
            .get_auth(
                "/audit/logs?since=1970-01-01T00:00:00Z&until=3000-01-01T00:00:00Z&status=200&cursor=9223372036854775807",
                &admin.access,
            )
            .await;
        assert_eq!(res.status, 200, "{}", res.text);
        let res = s
            .get_auth(
                "/audit/logs/export?since=1970-01-01T00:00:00Z&until=3000-01-01T00:00:00Z",
                &admin.access,
            )
            .await;
        assert_eq!(res.status, 200, "{}", res.text);
        assert!(
            res.text.lines().any(|l| l.contains("\"username\":\"admin\"")),
            "{}",
            res.text
        );

        // The other listings with numbers in their query.
        for (path, field) in [
            ("/admin/users?offset=-1", "offset"),
            ("/admin/users?limit=99999999999999999999", "limit"),
            ("/admin/api-keys?offset=-1", "offset"),
            ("/admin/api-keys?offset=9223372036854775807", "offset"),
            ("/admin/api-keys?limit=0", "limit"),
        ] {
            let body = expect_problem(s.get_auth(path, &admin.access).await, 422);
            assert_eq!(body["errors"][0]["field"], field, "{path}: {body}");
        }
        s.stop().await;
    }
}

/// Nothing a record holds reaches a terminal raw: a custom event carrying ESC and a
/// right-to-left override (in its metadata and resource id) is stored as sent, but
/// `audit tail` (text and JSON), `audit export`, the API's list and its export show
/// both escaped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controls_and_bidi_overrides_never_reach_a_terminal_raw() {
    let raw = |c: char| {
        c.is_control() && c != '\n' || ('\u{202a}'..='\u{202e}').contains(&c) || ('\u{2066}'..='\u{2069}').contains(&c)
    };
    for backend in backends().await {
        let (s, db) = TestServer::start(backend).await;
        let admin = s.login_as("admin", ADMIN_PASSWORD).await;
        let note = "\u{1b}]0;pwned\u{7}\u{1b}[2J\u{202e}gnp.exe\u{9b}31m\u{2066}";
        let event = json!({
            "action": "INVOICE_APPROVED",
            "resource_type": "invoice",
            "resource_id": "inv-\u{202e}24\u{2069}",
            "metadata": {"note": note},
        });
        let res = s
            .call(M::POST, "/audit/events", Bearer(&admin.access), Json(event))
            .await;
        assert_eq!(res.status, 201, "{}", res.text);

        // The API: the same values for a parser, no raw character in the bytes.
        let res = s.get_auth("/audit/logs?action=INVOICE_APPROVED", &admin.access).await;
        assert_eq!(res.status, 200);
        assert!(!res.text.chars().any(raw), "{:?}", res.text);
        let item = &res.json()["items"][0];
        assert_eq!(item["resource_id"], "inv-\u{202e}24\u{2069}", "stored as recorded");
        let meta: Value = serde_json::from_str(item["metadata"].as_str().unwrap()).unwrap();
        assert_eq!(meta["note"], note, "stored as recorded");
        let res = s
            .get_auth("/audit/logs/export?action=INVOICE_APPROVED", &admin.access)
            .await;
        assert_eq!(res.status, 200);
        assert!(
            res.text.contains("\\u202e") && !res.text.chars().any(raw),
            "{:?}",
            res.text
        );

        // The command line, on the database.
        for args in [
            &["audit", "tail"][..],
            &["--json", "audit", "tail"],
            &["audit", "export", "--action", "INVOICE_APPROVED"],
        ] {
            let (code, out, err) = run_binary(binary_on(&db).args(args), "");
            assert_eq!(code, 0, "{args:?}: {err}");
            assert!(out.contains("INVOICE_APPROVED"), "{args:?}: {out}");
            assert!(!out.chars().any(raw), "{args:?}: {out:?}");
            assert!(out.contains("202e"), "{args:?}: the override is shown escaped: {out}");
        }
        let (_, out, _) = run_binary(binary_on(&db).args(["audit", "tail"]), "");
        assert!(out.contains("invoice/inv-\\u{202e}24\\u{2069}"), "{out}");
        s.stop().await;
    }
}

// Tamper evidence against a database writer without the master key (issue 26): each
// attack below is made directly in the database, as such a writer would, after the
// service wrote a chain; `audit verify` must fail naming the check.

/// The name of the chain the attacks below are made on.
const TAMPERED: &str = "tamper-test";

/// A store on `db` for reading what the service wrote (no key: it only reads).
async fn reader(db: &TestDb) -> portcullis::store::Store {
    use portcullis::config::DatabaseTarget;
    let target = match db.url.strip_prefix("sqlite://") {
        Some(path) => DatabaseTarget::Sqlite(path.into()),
        None => DatabaseTarget::Postgres(db.url.clone()),
    };
    portcullis::store::Store::connect(&target, 1).await.unwrap()
}

/// A server on `backend` that wrote a few events and a chain of `TAMPERED` records
/// (ages in days, in chain order), then stopped; the trail verifies.
async fn written_trail(backend: Backend, extra: &[(&str, &str)], ages: &[i64]) -> (TestServer, TestDb) {
    let (s, db) = TestServer::start_with(backend, extra).await;
    let t = s.user("carol").await;
    assert_eq!(s.get_auth("/auth/me", &t.access).await.status, 200);
    s.service.flush_audit_requests().await.unwrap();
    let records = ages
        .iter()
        .enumerate()
        .map(|(i, age)| {
            portcullis::store::AuditFields {
                kind: "event".into(),
                action: "TEST_FILLER".into(),
                username: Some("carol".into()),
                metadata: json!({ "n": i }).to_string(),
                ..Default::default()
            }
            .stamped(chrono::Utc::now() - chrono::Duration::days(*age))
        })
        .collect();
    s.service.store().append_audit(TAMPERED, records).await.unwrap();
    (s, db)
}

fn verify(db: &TestDb) -> (i32, String) {
    let (code, out, err) = run_binary(binary_on(db).args(["audit", "verify"]), "");
    (code, format!("{out}{err}"))
}

/// Runs `sql` (built at run time) on `db`.
async fn execute(db: &TestDb, sql: String) -> u64 {
    execute_sql(db, Box::leak(sql.into_boxed_str())).await
}

/// The unkeyed link every record had before chains were keyed: SHA-256 of the JSON
/// array of the previous hash, the position and the fields (written out here from the
/// format, not taken from the crate).
fn unkeyed_link(prev: &str, seq: i64, f: &portcullis::store::AuditFields) -> String {
    use sha2::Digest;
    let text = json!([
        prev,
        f.chain,
        seq,
        f.at.timestamp_micros(),
        f.kind,
        f.action,
        f.user_id,
        f.username,
        f.resource_type,
        f.resource_id,
        f.ip,
        f.user_agent,
        f.method,
        f.path,
        f.status,
        f.duration_ms,
        f.request_id,
        f.metadata,
    ])
    .to_string();
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A record rewritten, with its hash, every later link and the chain's head
/// recomputed the way they were computed before (an unkeyed SHA-256): what a database
/// writer can do without the master key. Verify finds the rewritten record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_rewritten_with_its_chain_recomputed_is_detected() {
    for backend in backends().await {
        let (s, db) = written_trail(backend, &[], &[0, 0, 0, 0]).await;
        s.stop().await;
        assert_eq!(verify(&db).0, 0, "{}", verify(&db).1);

        let rows = reader(&db).await.audit_chain_rows(TAMPERED, 0, 100).await.unwrap();
        assert_eq!(rows.len(), 4);
        let mut prev = rows[0].hash.clone();
        for row in &rows[1..] {
            let mut fields = row.fields.clone();
            if row.seq == 2 {
                fields.username = Some("mallory".into());
            }
            let hash = unkeyed_link(&prev, row.seq, &fields);
            let edited = execute(
                &db,
                format!(
                    "UPDATE audit_log SET username = '{}', prev_hash = '{prev}', hash = '{hash}' \
                     WHERE chain = '{TAMPERED}' AND seq = {}",
                    fields.username.as_deref().unwrap_or_default(),
                    row.seq
                ),
            )
            .await;
            assert_eq!(edited, 1);
            prev = hash;
        }
        execute(
            &db,
            format!("UPDATE audit_chains SET head = '{prev}' WHERE chain = '{TAMPERED}'"),
        )
        .await;

        let (code, out) = verify(&db);
        assert_eq!(code, 5, "{out}");
        assert!(
            out.contains(&format!(
                "audit chain {TAMPERED} is broken at record 2 (record rewritten)"
            )),
            "{out}"
        );
    }
}

/// A whole chain deleted, its records and its head: the chains left are not the set
/// the registry holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_chain_removed_is_detected() {
    for backend in backends().await {
        let (s, db) = written_trail(backend, &[], &[0, 0, 0]).await;
        s.stop().await;
        assert_eq!(verify(&db).0, 0, "{}", verify(&db).1);

        let rows = execute(&db, format!("DELETE FROM audit_log WHERE chain = '{TAMPERED}'")).await;
        assert_eq!(rows, 3);
        let heads = execute(&db, format!("DELETE FROM audit_chains WHERE chain = '{TAMPERED}'")).await;
        assert_eq!(heads, 1);

        let (code, out) = verify(&db);
        assert_eq!(code, 5, "{out}");
        assert!(out.contains("(chain removed)"), "{out}");
        // Deleting the registry too does not help (nor stop the service opening).
        assert_eq!(execute_sql(&db, "DELETE FROM audit_registry").await, 1);
        let (code, out) = verify(&db);
        assert_eq!(code, 5, "{out}");
        assert!(out.contains("(chain removed)"), "{out}");
    }
}

/// The oldest records of a chain deleted and its base moved past them, as a purge
/// moves it: only the service, holding the key, can move a base.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_cut_from_the_front_of_a_chain_are_detected() {
    for backend in backends().await {
        let (s, db) = written_trail(backend, &[], &[0, 0, 0, 0]).await;
        s.stop().await;
        assert_eq!(verify(&db).0, 0, "{}", verify(&db).1);

        let rows = reader(&db).await.audit_chain_rows(TAMPERED, 0, 100).await.unwrap();
        let cut = &rows[1];
        assert_eq!(cut.seq, 2);
        execute(
            &db,
            format!(
                "UPDATE audit_chains SET base_seq = 2, base_hash = '{}' WHERE chain = '{TAMPERED}'",
                cut.hash
            ),
        )
        .await;
        let deleted = execute(
            &db,
            format!("DELETE FROM audit_log WHERE chain = '{TAMPERED}' AND seq <= 2"),
        )
        .await;
        assert_eq!(deleted, 2);

        let (code, out) = verify(&db);
        assert_eq!(code, 5, "{out}");
        assert!(
            out.contains(&format!("audit chain {TAMPERED} is broken at record 3 (front cut)")),
            "{out}"
        );
    }
}

/// The newest records of a chain deleted and its head moved back onto the last record
/// left, as if they had never been written: the head's MAC no longer matches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_cut_from_the_end_of_a_chain_are_detected() {
    for backend in backends().await {
        let (s, db) = written_trail(backend, &[], &[0, 0, 0, 0]).await;
        s.stop().await;
        assert_eq!(verify(&db).0, 0, "{}", verify(&db).1);

        let rows = reader(&db).await.audit_chain_rows(TAMPERED, 0, 100).await.unwrap();
        let last_kept = &rows[1];
        execute(
            &db,
            format!(
                "UPDATE audit_chains SET seq = 2, head = '{}' WHERE chain = '{TAMPERED}'",
                last_kept.hash
            ),
        )
        .await;
        let deleted = execute(
            &db,
            format!("DELETE FROM audit_log WHERE chain = '{TAMPERED}' AND seq > 2"),
        )
        .await;
        assert_eq!(deleted, 2);

        let (code, out) = verify(&db);
        assert_eq!(code, 5, "{out}");
        assert!(
            out.contains(&format!("audit chain {TAMPERED} is broken at record 2 (tail cut)")),
            "{out}"
        );
    }
}

/// A purge past retention moves a chain's base only past records that expired (an old
/// record behind a kept one stays), records itself on that chain, and the trail still
/// verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_past_retention_verifies_and_is_in_the_trail() {
    for backend in backends().await {
        let (s, db) = written_trail(backend, &[("AUDIT_RETENTION_DAYS", "7")], &[30, 30, 30, 0, 0, 30]).await;
        s.service.purge_expired().await.unwrap();
        let rows = s.service.store().audit_chain_rows(TAMPERED, 0, 100).await.unwrap();
        let kept: Vec<(i64, &str)> = rows.iter().map(|r| (r.seq, r.fields.action.as_str())).collect();
        assert_eq!(
            kept,
            [
                (4, "TEST_FILLER"),
                (5, "TEST_FILLER"),
                (6, "TEST_FILLER"),
                (7, "AUDIT_PURGED")
            ],
            "only the three expired records in front are purged"
        );
        let purge = &rows[3].fields;
        let meta: Value = serde_json::from_str(&purge.metadata).unwrap();
        assert_eq!(purge.resource_type.as_deref(), Some("audit_chain"));
        assert_eq!(purge.resource_id.as_deref(), Some(TAMPERED));
        assert_eq!(meta["records"], 3, "{meta}");
        assert_eq!(
            (meta["from_seq"].as_i64(), meta["through_seq"].as_i64()),
            (Some(1), Some(3)),
            "{meta}"
        );
        assert!(meta["retention_before"].is_string(), "{meta}");
        let admin = s.login_as("admin", ADMIN_PASSWORD).await;
        let listed = records(&s, &admin.access, "action=AUDIT_PURGED").await;
        assert_eq!(listed.len(), 1, "{listed:?}");
        s.stop().await;

        let (code, out) = verify(&db);
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("intact"), "{out}");
    }
}

/// Records written before chains were keyed still verify after the upgrade: the
/// migration keeps their unkeyed links and the first start anchors their chains, keyed
/// from their next position. The upgrade is taken once: a registry emptied later, as if
/// to have the chains anchored afresh, is a removed chain to `audit verify`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unkeyed_records_from_before_the_upgrade_still_verify() {
    for backend in backends().await {
        let db = TestDb::new(backend).await;
        let (code, out, err) = run_binary(binary_on(&db).args(["migrate"]), "");
        assert_eq!(code, 0, "{out}{err}");
        // Back to the schema before migration 0012, holding a chain it wrote then.
        for sql in [
            "ALTER TABLE audit_chains DROP COLUMN keyed_from",
            "ALTER TABLE audit_chains DROP COLUMN anchor",
            "ALTER TABLE audit_chains DROP COLUMN head_mac",
            "DROP TABLE audit_registry",
            "DELETE FROM _sqlx_migrations WHERE version = 12",
        ] {
            execute_sql(&db, sql).await;
        }
        let mut prev = String::new();
        for seq in 1..=3i64 {
            let fields = portcullis::store::AuditFields {
                chain: "legacy-0".into(),
                kind: "event".into(),
                action: "LOGIN".into(),
                username: Some("carol".into()),
                metadata: "{}".into(),
                ..Default::default()
            }
            .stamped(chrono::Utc::now());
            let hash = unkeyed_link(&prev, seq, &fields);
            // The text both backends read back as this instant.
            let at = fields.at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false);
            execute(
                &db,
                format!(
                    "INSERT INTO audit_log (chain, seq, at, kind, action, username, metadata, prev_hash, hash) \
                     VALUES ('legacy-0', {seq}, '{at}', 'event', 'LOGIN', 'carol', '{{}}', '{prev}', '{hash}')"
                ),
            )
            .await;
            prev = hash;
        }
        execute(
            &db,
            format!("INSERT INTO audit_chains (chain, seq, head) VALUES ('legacy-0', 3, '{prev}')"),
        )
        .await;

        // The first start migrates and anchors; the trail verifies, old records too.
        let (code, out) = verify(&db);
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("intact: 3 records in 1 chains"), "{out}");
        let (code, out) = verify(&db);
        assert_eq!(code, 0, "and on every start after: {out}");

        execute_sql(&db, "UPDATE audit_registry SET chains = ''").await;
        let (code, out) = verify(&db);
        assert_eq!(code, 5, "{out}");
        assert!(out.contains("(chain removed)"), "{out}");
    }
}

/// Action names in a filter: Portcullis's own in any case (`action=login` finds the
/// LOGIN records), a recorded custom event by its name in any case, one of its own not
/// recorded yet matches nothing; a name neither known nor recorded is a 422 naming it
/// and the nearest known name, for the log and the export alike (each used to match
/// nothing, silently).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_filter_actions_fold_case_and_unknown_names_are_refused() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        let admin = s.login_as("admin", ADMIN_PASSWORD).await;
        let ids = |rows: Vec<Value>| -> Vec<i64> { rows.iter().map(|r| r["id"].as_i64().unwrap()).collect() };
        let upper = ids(records(&s, &admin.access, "action=LOGIN").await);
        assert!(!upper.is_empty(), "{backend:?}: the admin's login is recorded");
        assert_eq!(
            ids(records(&s, &admin.access, "action=login").await),
            upper,
            "{backend:?}"
        );
        assert_eq!(ids(records(&s, &admin.access, "action=Login_Success").await), upper);
        let registered = ids(records(&s, &admin.access, "action=LOGIN,REGISTER").await);
        assert_eq!(
            ids(records(&s, &admin.access, "action=login, register").await),
            registered
        );
        assert_eq!(records(&s, &admin.access, "action=mfa_reset").await.len(), 0);

        let event = json!({"action": "INVOICE_APPROVED", "resource_type": "invoice", "resource_id": "inv-1"});
        let res = s
            .call(M::POST, "/audit/events", Bearer(&admin.access), Json(event))
            .await;
        assert_eq!(res.status, 201, "{}", res.text);
        assert_eq!(records(&s, &admin.access, "action=INVOICE_APPROVED").await.len(), 1);
        assert_eq!(records(&s, &admin.access, "action=invoice_approved").await.len(), 1);

        for (path, named, nearest) in [
            ("/audit/logs?action=LOGNI", "LOGNI", Some("LOGIN")),
            (
                "/audit/logs?action=LOGIN,passwd_change",
                "passwd_change",
                Some("PASSWORD_CHANGE"),
            ),
            (
                "/audit/logs/export?action=invoice_aproved",
                "invoice_aproved",
                Some("INVOICE_APPROVED"),
            ),
            (
                "/audit/logs?action=INVOICE_REJECTED_BY_FINANCE",
                "INVOICE_REJECTED_BY_FINANCE",
                None,
            ),
        ] {
            let p = expect_problem(s.get_auth(path, &admin.access).await, 422);
            assert_eq!(p["errors"][0]["field"], "action", "{backend:?}: {path}: {p}");
            let message = p["errors"][0]["message"].as_str().unwrap();
            assert!(message.contains(named), "{path}: {message}");
            match nearest {
                Some(n) => assert!(message.contains(&format!("did you mean {n}?")), "{path}: {message}"),
                None => assert!(!message.contains("did you mean"), "{path}: {message}"),
            }
        }
        s.stop().await;
    }
}
