//! Abuse resistance: account lockout, per-IP limits, trusted proxies, CORS and
//! security headers, hostile input; on both backends.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

/// Fires the logins all at once, returning their statuses.
async fn concurrent_logins(s: &TestServer, attempts: &[(&str, &str)]) -> Vec<u16> {
    let tasks: Vec<_> = attempts
        .iter()
        .map(|(user, password)| {
            let http = s.http.clone();
            let body = json!({"username": user, "password": password});
            tokio::spawn(async move { http.call(M::POST, "/auth/login", Anonymous, Json(body)).await.status })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    statuses
}

/// A 429 problem, returning its `Retry-After` in seconds.
fn expect_locked(res: Reply) -> u64 {
    let retry: u64 = res
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After on 429");
    let body = expect_problem(res, 429);
    assert_eq!(body["type"], "urn:portcullis:problem:rate-limited");
    retry
}

// Locks long enough that a loaded CI machine answers the next request inside them.
const LOCKOUT: [(&str, &str); 3] = [
    ("LOGIN_LOCKOUT_THRESHOLD", "3"),
    ("LOGIN_LOCKOUT_SECONDS", "3"),
    ("LOGIN_LOCKOUT_MAX_SECONDS", "6"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_lock_accounts_and_unknown_names_alike() {
    for backend in backends().await {
        let (s, db) = TestServer::start_with(backend, &LOCKOUT).await;
        s.register("victim").await;

        // Three failures under one name (case and width folded) lock it...
        for who in ["victim", "VICTIM", "ｖｉｃｔｉｍ"] {
            expect_problem(s.login(who, "wrong password").await, 401);
        }
        // ...so even the right password is refused, without saying why.
        let wait = expect_locked(s.login("victim", PASSWORD).await);
        assert!((1..=3).contains(&wait), "{wait}");
        // Counts are per login name, so the lock says nothing about which email
        // belongs to the account: the email has a count of its own.
        s.login_as("victim@example.com", PASSWORD).await;
        // The OAuth password grant is locked too, in its own error format.
        let res = s
            .call(
                M::POST,
                "/auth/token",
                Anonymous,
                Form(&[
                    ("grant_type", "password"),
                    ("username", "victim"),
                    ("password", PASSWORD),
                ]),
            )
            .await;
        assert_eq!(res.status, 429);
        assert!(res.headers.contains_key("retry-after"));
        assert_eq!(res.json()["error"], "slow_down");

        // An unknown name gets exactly the same treatment, and so do over-long
        // passwords (which are never hashed as given).
        for _ in 0..3 {
            expect_problem(s.login("ghost", "wrong password").await, 401);
        }
        assert!((1..=3).contains(&expect_locked(s.login("ghost", "anything").await)));
        s.register("longpass").await;
        for who in ["longpass", "ghost2"] {
            for _ in 0..3 {
                expect_problem(s.login(who, &"p".repeat(2000)).await, 401);
            }
            expect_locked(s.login(who, PASSWORD).await);
        }

        // Parallel guesses cannot slip in under the threshold: each is counted before
        // its password is checked.
        s.register("raced").await;
        let statuses = concurrent_logins(&s, &[("raced", "wrong guess"); 8]).await;
        assert_eq!(statuses.iter().filter(|&&c| c == 401).count(), 3, "{statuses:?}");
        assert_eq!(statuses.iter().filter(|&&c| c == 429).count(), 5, "{statuses:?}");

        // Another instance on the same database sees the lock.
        if backend == Backend::Postgres {
            let other = TestServer::on(&db, &LOCKOUT).await;
            expect_locked(other.login("victim", PASSWORD).await);
            other.stop().await;
        }

        // After the lock, one more failure locks again, for twice as long (capped at 6 s).
        tokio::time::sleep(Duration::from_millis(3100)).await;
        expect_problem(s.login("victim", "wrong again").await, 401);
        let doubled = expect_locked(s.login("victim", PASSWORD).await);
        assert!((4..=6).contains(&doubled), "{doubled}");
        tokio::time::sleep(Duration::from_millis(6100)).await;

        // A success resets the count: two failures are not yet a lock.
        s.login_as("victim", PASSWORD).await;
        for _ in 0..2 {
            expect_problem(s.login("victim", "wrong").await, 401);
        }
        s.login_as("victim", PASSWORD).await;

        // An administrator can unlock at once.
        for _ in 0..3 {
            expect_problem(s.login("victim", "wrong").await, 401);
        }
        expect_locked(s.login("victim", PASSWORD).await);
        let admin = s.login_as("admin", ADMIN_PASSWORD).await;
        let id = s.service.store().user_by_login("victim").await.unwrap().unwrap().id;
        let res = s
            .call(
                M::POST,
                &format!("/admin/users/{id}/unlock"),
                Bearer(&admin.access),
                Empty,
            )
            .await;
        assert_eq!(res.status, 204);
        s.login_as("victim", PASSWORD).await;
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_ip_limits_and_trusted_proxies() {
    for backend in backends().await {
        let limited = [
            ("RATE_LIMIT_PER_IP_PER_MINUTE", "60"),
            ("RATE_LIMIT_BURST", "3"),
            ("LOGIN_LOCKOUT_THRESHOLD", "0"),
        ];
        let (s, db) = TestServer::start_with(backend, &limited).await;
        let wrong = json!({"username": "nobody", "password": "wrong"});
        for _ in 0..3 {
            expect_problem(s.post_json("/auth/login", &wrong).await, 401);
        }
        assert!(expect_locked(s.post_json("/auth/login", &wrong).await) >= 1);
        // One bucket covers every limited route; unlimited routes are untouched.
        expect_locked(s.refresh("x").await);
        assert_eq!(s.get("/health").await.status, 200);
        // Without trusted proxies, a forged X-Forwarded-For buys nothing.
        let res = s
            .http
            .call_with(
                M::POST,
                "/auth/login",
                Anonymous,
                Json(wrong.clone()),
                &[("x-forwarded-for", "203.0.113.9")],
            )
            .await;
        expect_locked(res);
        let metrics = s.get("/metrics").await.text;
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("portcullis_rate_limited_total") && l.contains("scope=\"ip\"")),
            "{metrics}"
        );
        s.stop().await;

        // Behind a trusted proxy each forwarded client has its own bucket, and the
        // session records the forwarded address.
        let mut behind_proxy = limited.to_vec();
        behind_proxy.push(("TRUSTED_PROXIES", "127.0.0.0/8"));
        let s = TestServer::on(&db, &behind_proxy).await;
        s.register("proxied").await;
        let via = |ip: &'static str, body: Value| {
            let s = &s;
            async move {
                let forwarded = format!("198.51.100.66, {ip}");
                s.http
                    .call_with(
                        M::POST,
                        "/auth/login",
                        Anonymous,
                        Json(body),
                        &[("x-forwarded-for", &forwarded)],
                    )
                    .await
            }
        };
        for _ in 0..3 {
            expect_problem(via("203.0.113.1", wrong.clone()).await, 401);
        }
        expect_locked(via("203.0.113.1", wrong.clone()).await);
        let ok = via("203.0.113.2", json!({"username": "proxied", "password": PASSWORD})).await;
        assert_eq!(ok.status, 200);
        let tokens = ok.tokens();
        let sessions: Value = s.get_auth("/auth/sessions", &tokens.access).await.json();
        let ips: Vec<&str> = sessions
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|x| x["ip"].as_str())
            .collect();
        assert_eq!(ips, ["203.0.113.2"], "{sessions}");
        s.stop().await;
    }
}

/// `/auth/me` asked by a browser on the app's origin.
async fn me_from_the_app(s: &TestServer, tokens: &Tokens) -> Reply {
    let origin = [("origin", "https://app.example.com")];
    s.http
        .call_with(M::GET, "/auth/me", Bearer(&tokens.access), Empty, &origin)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_headers_cors_and_hsts() {
    for backend in backends().await {
        let (s, db) = TestServer::start(backend).await;
        let tokens = s.user("headers").await;
        let res = me_from_the_app(&s, &tokens).await;
        let h = &res.headers;
        assert_eq!(h["cache-control"], "no-store");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert!(!h.contains_key("access-control-allow-origin"), "CORS is off by default");
        assert!(!h.contains_key("strict-transport-security"), "HSTS is off by default");
        let res = s.login("headers", PASSWORD).await;
        assert_eq!(res.headers["cache-control"], "no-store");
        s.stop().await;

        let s = TestServer::on(
            &db,
            &[
                ("CORS_ALLOWED_ORIGINS", "https://app.example.com"),
                ("HSTS_MAX_AGE_SECONDS", "31536000"),
            ],
        )
        .await;
        let preflight = |origin: &'static str| {
            let s = &s;
            async move {
                let headers = [
                    ("origin", origin),
                    ("access-control-request-method", "GET"),
                    ("access-control-request-headers", "authorization"),
                ];
                s.http
                    .call_with(M::OPTIONS, "/auth/me", Anonymous, Empty, &headers)
                    .await
            }
        };
        let res = preflight("https://app.example.com").await;
        assert!((200..300).contains(&res.status), "{}", res.status);
        let h = &res.headers;
        assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
        assert!(
            h["access-control-allow-headers"]
                .to_str()
                .unwrap()
                .contains("authorization")
        );
        let res = preflight("https://evil.example").await;
        assert!(!res.headers.contains_key("access-control-allow-origin"));
        let res = me_from_the_app(&s, &tokens).await;
        assert_eq!(res.status, 200);
        assert_eq!(res.headers["access-control-allow-origin"], "https://app.example.com");
        assert_eq!(res.headers["strict-transport-security"], "max-age=31536000");
        s.stop().await;
    }
}

/// What the admin sees of the user table: a state change would show here.
async fn user_count(s: &TestServer, admin: &Tokens) -> u64 {
    let page: Value = s.get_auth("/admin/users?limit=1", &admin.access).await.json();
    page["total"].as_u64().expect("total")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_gets_a_clear_4xx_and_changes_nothing() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        let user = s.user("steady").await;
        let admin = s.login_as("admin", ADMIN_PASSWORD).await;
        let before = user_count(&s, &admin).await;
        let deep = format!("{}1{}", "[".repeat(5000), "]".repeat(5000));
        let long = "x".repeat(10_000);
        let reg = |username: &str, email: &str, password: &str, full_name: &str| json!({"username": username, "email": email, "password": password, "full_name": full_name});
        let raw_bodies: Vec<(&str, Vec<u8>, u16)> = vec![
            (
                "invalid UTF-8",
                b"{\"username\": \"\xff\xfe\", \"email\": \"a@b.co\", \"password\": \"x\"}".to_vec(),
                400,
            ),
            ("truncated JSON", b"{\"username\": ".to_vec(), 400),
            (
                "deep nesting",
                format!(r#"{{"username":"deepone","email":"d@example.com","password":"{PASSWORD}","extra":{deep}}}"#)
                    .into_bytes(),
                400,
            ),
            ("over the body limit", vec![b' '; 70 * 1024], 413),
        ];
        for (what, body, status) in raw_bodies {
            let res = s
                .call(M::POST, "/auth/register", Anonymous, Raw("application/json", &body))
                .await;
            let problem = expect_problem(res, status);
            assert!(!problem["detail"].as_str().unwrap().is_empty(), "{what}");
        }
        for body in [
            reg("nul\0user", "n@example.com", PASSWORD, ""),
            reg("nulmail", "n\0@example.com", PASSWORD, ""),
            reg("nulpass", "p@example.com", "correct horse\0battery", ""),
            reg("nulname", "q@example.com", PASSWORD, "Nul\0Name"),
        ] {
            let problem = expect_problem(s.post_json("/auth/register", &body).await, 400);
            assert!(problem["detail"].as_str().unwrap().contains("NUL"), "{problem}");
        }
        let json_bodies: Vec<(&str, Value, &str)> = vec![
            (
                "tab in full name",
                reg("tabname", "t@example.com", PASSWORD, "Tab\tName"),
                "full_name",
            ),
            (
                "escape in password",
                reg("escpass", "e@example.com", "correct horse\u{1b}battery", ""),
                "password",
            ),
            (
                "very long username",
                reg(&long, "l@example.com", PASSWORD, ""),
                "username",
            ),
            (
                "very long full name",
                reg("longname", "m@example.com", PASSWORD, &long),
                "full_name",
            ),
            (
                "SQL in username",
                reg("x' OR '1'='1", "s@example.com", PASSWORD, ""),
                "username",
            ),
            (
                "SQL in email",
                reg("sqlmail", "a'--@example.com';DROP TABLE users", PASSWORD, ""),
                "email",
            ),
            (
                "Cyrillic look-alike",
                reg("аdmin", "cy@example.com", PASSWORD, ""),
                "username",
            ),
            (
                "zero-width space",
                reg("ad\u{200b}min", "zw@example.com", PASSWORD, ""),
                "username",
            ),
            (
                "wrong type",
                json!({"username": 5, "email": "t@example.com", "password": PASSWORD}),
                "username",
            ),
        ];
        for (what, body, field) in json_bodies {
            let problem = expect_problem(s.post_json("/auth/register", &body).await, 422);
            assert_eq!(problem["errors"][0]["field"], field, "{what}: {problem}");
        }
        // Compatibility forms fold to the name they look like: "ａｄｍｉｎ" is admin.
        let problem = expect_problem(
            s.post_json("/auth/register", &reg("ａｄｍｉｎ", "fw@example.com", PASSWORD, ""))
                .await,
            409,
        );
        assert!(problem["detail"].as_str().unwrap().contains("username"), "{problem}");
        s.login_as("ａｄｍｉｎ", ADMIN_PASSWORD).await;

        // Hostile values where an existing account is touched.
        let authed: Vec<(M, &str, Value, u16)> = vec![
            (M::PATCH, "/auth/me", json!({"full_name": "a\0b"}), 400),
            (M::PATCH, "/auth/me", json!({"full_name": "a\u{7}b"}), 422),
            (M::PATCH, "/auth/me", json!({"email": "x\u{1}@example.com"}), 422),
            (M::POST, "/auth/api-keys", json!({"name": "k\u{8}ey"}), 422),
            (M::POST, "/auth/check", json!({"permission": long}), 200),
        ];
        for (method, path, body, status) in authed {
            let res = s.call(method, path, Bearer(&user.access), Json(body.clone())).await;
            assert_eq!(res.status, status, "{path} {body}");
        }
        let admin_bodies: Vec<(&str, Value, u16)> = vec![
            ("/admin/roles", json!({"name": "ro\0le"}), 400),
            ("/admin/roles", json!({"name": "x'; DROP TABLE roles; --"}), 422),
            ("/admin/roles", json!({"name": "fine", "description": "d\u{1}"}), 422),
            ("/admin/permissions", json!({"name": "p", "description": "d\u{2}"}), 422),
        ];
        for (path, body, status) in admin_bodies {
            let res = s.call(M::POST, path, Bearer(&admin.access), Json(body)).await;
            expect_problem(res, status);
        }
        // Login with hostile names is just a failed login; search with them finds nothing.
        for name in ["' OR 1=1 --", "\0", &long, "%", "ａｄｍｉｎ\0"] {
            let res = s.login(name, "whatever").await;
            assert!(matches!(res.status, 400 | 401 | 422), "{name:?}: {}", res.status);
        }
        let found: Value = s
            .get_auth("/admin/users?q=%25'%20OR%201%3D1%20--", &admin.access)
            .await
            .json();
        assert_eq!(found["total"], 0, "{found}");
        // NUL and friends in paths, queries and token fields reach no database as-is.
        for path in [
            "/admin/users?q=%00",
            "/admin/roles/a%00b",
            "/admin/permissions/a%00b",
            "/admin/users/%00",
            "/auth/verify?permission=%00",
            "/auth/api-keys/%00",
        ] {
            let res = s.get_auth(path, &admin.access).await;
            let status = res.status;
            assert!((200..500).contains(&status), "{path}: {status}");
        }
        for (path, body) in [
            ("/auth/refresh", json!({"refresh_token": "\0"})),
            ("/auth/logout", json!({"refresh_token": "a\0b"})),
        ] {
            let status = s.post_json(path, &body).await.status;
            assert!((200..500).contains(&status), "{path}: {status}");
        }
        for (path, token) in [("/auth/introspect", "pcx_\0_x"), ("/auth/revoke", "\0")] {
            let res = s
                .call(M::POST, path, Bearer(&admin.access), Form(&[("token", token)]))
                .await;
            let status = res.status;
            assert!((200..500).contains(&status), "{path}: {status}");
        }
        for query in ["limit=abc", "limit=-1", "offset=x", "sort=password_hash"] {
            let res = s.get_auth(&format!("/admin/users?{query}"), &admin.access).await;
            expect_problem(res, 422);
        }
        // Oversized headers are refused by the HTTP layer, not by a crash. (By hand:
        // the server may drop the connection instead of answering, which `call` takes
        // for a failed test.)
        let res = s
            .http
            .client
            .get(s.http.url("/auth/me"))
            .header("authorization", format!("Bearer {}", "A".repeat(200_000)))
            .send()
            .await;
        if let Ok(res) = res {
            assert!(res.status().is_client_error(), "{}", res.status());
        }
        assert_eq!(
            user_count(&s, &admin).await,
            before,
            "no hostile request created a user"
        );
        let me = s.get_auth("/auth/me", &user.access).await;
        assert_eq!(me.status, 200);
        s.stop().await;
    }
}

/// Login names no account can have (non-ASCII after folding, or neither a username
/// nor an email) get the uniform failure and reach neither the lockout count nor the
/// database: PostgreSQL's `lower('İ')` is `i`, so "İdris" used to find the account
/// "idris" under a count of its own, a way around its lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impossible_login_names_never_reach_the_lockout_count() {
    let lockout = [
        ("LOGIN_LOCKOUT_THRESHOLD", "3"),
        ("LOGIN_LOCKOUT_SECONDS", "600"),
        ("LOGIN_LOCKOUT_MAX_SECONDS", "600"),
    ];
    for backend in backends().await {
        let (s, _db) = TestServer::start_with(backend, &lockout).await;
        s.register("idris").await;
        for _ in 0..3 {
            expect_problem(s.login("idris", "wrong password").await, 401);
        }
        expect_locked(s.login("idris", PASSWORD).await);
        // No other spelling opens a count of its own (it would lock after three
        // failures) or finds the account (the right password would let it in).
        for name in [
            "İdris",
            "İDRIS",
            "idrİs",
            "ıdris",
            "idris\u{200b}",
            "idri\u{0307}s",
            "id ris",
        ] {
            for password in ["wrong password", "wrong password", "wrong password", PASSWORD] {
                let p = expect_problem(s.login(name, password).await, 401);
                assert_eq!(p["detail"], "invalid username or password", "{name}");
            }
        }
        s.stop().await;
    }
}

/// On PostgreSQL under a collation whose lower() is not ASCII's (Turkish lowers `I`
/// to `ı`), the account lookup folds as the lockout key does: "idris" finds "IDRIS".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_lookup_folds_by_ascii_rules_under_any_collation() {
    let Some((first, db)) = postgres_only().await else {
        return;
    };
    first.stop().await;
    execute_sql(
        &db,
        r#"ALTER TABLE users ALTER COLUMN username TYPE TEXT COLLATE "tr-TR-x-icu", ALTER COLUMN email TYPE TEXT COLLATE "tr-TR-x-icu""#,
    )
    .await;
    // A new instance: the first one's prepared statements knew the old column types.
    let s = TestServer::on(&db, &[]).await;
    let res = s
        .post_json(
            "/auth/register",
            &json!({"username": "IDRIS", "email": "IDRIS@EXAMPLE.COM", "password": PASSWORD}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.text);
    for name in ["idris", "IDRIS", "Idris", "idris@example.com", "Idris@Example.com"] {
        let res = s.login(name, PASSWORD).await;
        assert_eq!(res.status, 200, "{name}: {}", res.text);
    }
    // A name differing from it only in ASCII case is the same name.
    let res = s
        .post_json(
            "/auth/register",
            &json!({"username": "idris", "email": "other@example.com", "password": PASSWORD}),
        )
        .await;
    expect_problem(res, 409);
    s.stop().await;
}

/// Issue 26: in a database whose own collation lowers by Turkish rules, every
/// case-insensitive comparison of names agrees with the lockout key and the login
/// lookup (ASCII rules): the username-taken answer, the e-mail lookup, the search.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_name_comparison_folds_by_ascii_rules_in_a_turkish_database() {
    if !backends().await.contains(&Backend::Postgres) {
        eprintln!("warning: skipped, this test needs PostgreSQL");
        return;
    }
    // ICU's tr-TR: the machine may have no tr_TR libc locale, PostgreSQL has ICU.
    let db = TestDb::postgres_with("TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'tr-TR' LOCALE 'C.UTF-8'").await;
    let s = TestServer::on(&db, &[]).await;
    let res = s
        .post_json(
            "/auth/register",
            &json!({"username": "IVAN", "email": "IVAN@EXAMPLE.COM", "password": PASSWORD}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.text);
    // The database itself lowers `I` to `ı`.
    let lowered: String = sqlx::query_scalar("SELECT lower(username) FROM users WHERE username = 'IVAN'")
        .fetch_one(&sqlx::PgPool::connect(&db.url).await.unwrap())
        .await
        .unwrap();
    assert_eq!(lowered, "ıvan");
    s.login_as("ivan", PASSWORD).await;
    let p = expect_problem(
        s.post_json(
            "/auth/register",
            &json!({"username": "ivan", "email": "other@example.com", "password": PASSWORD}),
        )
        .await,
        409,
    );
    assert_eq!(p["detail"], "username is already registered", "{p}");
    let found = s.service.store().user_by_email("ivan@example.com").await.unwrap();
    assert_eq!(found.map(|u| u.username).as_deref(), Some("IVAN"));
    let admin = s.login_as("admin", ADMIN_PASSWORD).await;
    for q in ["ivan", "IV", "ivan@example"] {
        let page = s.get_auth(&format!("/admin/users?q={q}"), &admin.access).await.json();
        let names: Vec<&str> = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|u| u["username"].as_str())
            .collect();
        assert_eq!(names, ["IVAN"], "q={q}: {page}");
    }
    s.stop().await;
}

/// `/metrics` has the per-IP 429 counter of every rate-limited route at 0 from start
/// (the routes come from the configuration), beside the per-account one; before the
/// first refusal only `scope="account"` was there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_routes_are_counted_from_zero() {
    // Routes no other test limits: the recorder is shared by every server of the process.
    let routes = ["/auth/introspect", "/auth/logout-all"];
    let (s, _db) = TestServer::start_with(
        Backend::Sqlite,
        &[
            ("RATE_LIMIT_PER_IP_PER_MINUTE", "60"),
            ("RATE_LIMIT_ROUTES", &routes.join(",")),
            ("PORTCULLIS_BASE_PATH", "/zero-limits"),
        ],
    )
    .await;
    let metrics = s.get("/metrics").await.text;
    for route in routes {
        let label = format!("route=\"/zero-limits{route}\"");
        let series: Vec<&str> = metrics
            .lines()
            .filter(|l| l.starts_with("portcullis_rate_limited_total{") && l.contains(&label))
            .collect();
        assert_eq!(series.len(), 1, "{route}: {metrics}");
        assert!(
            series[0].contains("scope=\"ip\"") && series[0].ends_with(" 0"),
            "{series:?}"
        );
    }
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("portcullis_rate_limited_total{") && l.contains("scope=\"account\"")),
        "{metrics}"
    );
    s.stop().await;
}
