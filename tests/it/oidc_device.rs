//! The device authorization grant (RFC 8628) over real HTTP on both backends: the
//! device authorization endpoint, the `/device` page approving and denying in a
//! signed-in browser, polling at `/oauth2/token` (pending, slow_down, expiry, denial,
//! tokens exactly once, only for the client that asked), the limit on guessing user
//! codes, and `portcullis login --device` end to end.

use serde_json::Value;

use crate::pages::{SAME_ORIGIN, csrf_of, get_page, page_sign_in, post_form};
use crate::support::*;

const GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
const CLI: &str = "portcullis-cli";

/// `POST /oauth2/device_authorization` as a public client.
async fn authorize_device(s: &TestServer, client_id: &str, scope: &str) -> Reply {
    let form = [("client_id", client_id), ("scope", scope)];
    s.call(M::POST, "/oauth2/device_authorization", Anonymous, Form(&form))
        .await
}

/// A new device authorization of the CLI's client: (device_code, user_code).
async fn start(s: &TestServer) -> (String, String) {
    let res = authorize_device(s, CLI, "openid profile roles offline_access").await;
    assert_eq!(res.status, 200, "{}", res.text);
    let body = res.json();
    (
        body["device_code"].as_str().unwrap().to_string(),
        body["user_code"].as_str().unwrap().to_string(),
    )
}

async fn poll(s: &TestServer, client_id: &str, device_code: &str) -> Reply {
    let form = [
        ("grant_type", GRANT),
        ("device_code", device_code),
        ("client_id", client_id),
    ];
    s.call(M::POST, "/oauth2/token", Anonymous, Form(&form)).await
}

/// The OAuth error code of a 4xx answer.
fn oauth_error(res: Reply, status: u16) -> String {
    assert_eq!(res.status, status, "{}", res.text);
    res.json()["error"].as_str().unwrap().to_string()
}

/// Forgets when every device code was last polled, so the next poll keeps the
/// interval without the test waiting five seconds.
async fn forget_polls(db: &TestDb) {
    execute_sql(db, "UPDATE oidc_device_codes SET last_polled_at = NULL").await;
}

/// The stored polling interval of the one device code in `db`.
async fn stored_interval(db: &TestDb) -> i64 {
    let sql = "SELECT MAX(interval_secs) FROM oidc_device_codes";
    if db.url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
        let n: i64 = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
        pool.close().await;
        n
    } else {
        let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
        let n: i32 = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
        pool.close().await;
        n.into()
    }
}

/// Posts the `/device` form (with the session's CSRF token) as a signed-in browser.
async fn device_form(s: &TestServer, cookie: &str, fields: &[(&str, &str)], headers: &[(&str, &str)]) -> Reply {
    let csrf = csrf_of(&get_page(s, "/device", Some(cookie)).await.text);
    let form = [fields, &[("csrf", csrf.as_str())]].concat();
    let all = [SAME_ORIGIN, headers].concat();
    post_form(s, "/device", &form, Some(cookie), &all).await
}

/// Types `user_code` at `/device`, then approves or denies what it shows.
async fn decide(s: &TestServer, cookie: &str, user_code: &str, decision: &str) -> Reply {
    let shown = device_form(s, cookie, &[("user_code", user_code)], &[]).await;
    assert_eq!(shown.status, 200, "{}", shown.text);
    device_form(s, cookie, &[("user_code", user_code), ("decision", decision)], &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_approved_on_the_page_gets_its_tokens_once() {
    for backend in backends().await {
        let (s, db) = TestServer::start(backend).await;
        let res = authorize_device(&s, CLI, "openid profile roles offline_access").await;
        assert_eq!(res.status, 200, "{}", res.text);
        assert_eq!(res.header("cache-control"), Some("no-store"));
        let body = res.json();
        let user_code = body["user_code"].as_str().unwrap().to_string();
        let device_code = body["device_code"].as_str().unwrap().to_string();
        assert_eq!(user_code.len(), 9, "{user_code}");
        assert_eq!(&user_code[4..5], "-");
        assert!(
            user_code
                .replace('-', "")
                .bytes()
                .all(|b| b"BCDFGHJKLMNPQRSTVWXZ".contains(&b)),
            "{user_code}"
        );
        let uri = body["verification_uri"].as_str().unwrap();
        assert!(uri.ends_with("/device"), "{uri}");
        assert_eq!(
            body["verification_uri_complete"],
            format!("{uri}?user_code={user_code}")
        );
        assert_eq!(body["expires_in"], 600);
        assert_eq!(body["interval"], 5);

        assert_eq!(
            oauth_error(poll(&s, CLI, &device_code).await, 400),
            "authorization_pending"
        );

        // A browser not signed in is sent to sign in and back, keeping the code.
        let typed = user_code.to_lowercase().replace('-', " ");
        let path = format!("/device?user_code={}", typed.replace(' ', "%20"));
        let res = get_page(&s, &path, None).await;
        assert_eq!(res.status, 303);
        let to = res.header("location").unwrap();
        assert!(to.starts_with("/login?return_to=%2Fdevice%3Fuser%5Fcode%3D"), "{to}");

        s.register("alice").await;
        let cookie = page_sign_in(&s, "alice", PASSWORD).await;
        let page = get_page(&s, &path, Some(&cookie)).await;
        assert_eq!(page.status, 200);
        assert!(page.text.contains(&format!("value=\"{typed}\"")), "pre-filled");

        // Typed in lower case with a space instead of the dash: the same code.
        let shown = device_form(&s, &cookie, &[("user_code", &typed)], &[]).await;
        assert_eq!(shown.status, 200, "{}", shown.text);
        assert!(
            shown.text.contains("Portcullis command line asks to sign in as alice"),
            "{}",
            shown.text
        );
        assert!(shown.text.contains(&user_code));
        assert!(shown.text.contains("see your name and username"));
        assert!(shown.text.contains("act with your roles and permissions"));
        assert!(!shown.text.contains("see your e-mail address"), "not asked for");
        let done = device_form(&s, &cookie, &[("user_code", &typed), ("decision", "approve")], &[]).await;
        assert_eq!(done.status, 200, "{}", done.text);
        assert!(done.text.contains("id=\"device-approved\""));

        forget_polls(&db).await;
        let res = poll(&s, CLI, &device_code).await;
        assert_eq!(res.status, 200, "{}", res.text);
        assert_eq!(res.header("cache-control"), Some("no-store"));
        let tokens = res.json();
        assert_eq!(tokens["scope"], "openid profile roles offline_access");
        assert!(tokens["refresh_token"].is_string());
        let access = tokens["access_token"].as_str().unwrap();
        let claims = jwt_part(access, 1);
        assert_eq!(claims["client_id"], CLI);
        assert_eq!(claims["preferred_username"], "alice");
        assert_eq!(claims["amr"], serde_json::json!(["pwd"]));
        let id = jwt_part(tokens["id_token"].as_str().unwrap(), 1);
        assert_eq!(id["aud"], CLI);
        assert_eq!(id["preferred_username"], "alice");
        assert!(id["sid"].is_string());
        let me = s.get_auth("/auth/me", access).await;
        assert_eq!(me.status, 200, "{}", me.text);
        assert_eq!(me.json()["username"], "alice");

        // Exactly once: the next poll, and a second approval, find nothing.
        forget_polls(&db).await;
        assert_eq!(oauth_error(poll(&s, CLI, &device_code).await, 400), "invalid_grant");
        let again = device_form(&s, &cookie, &[("user_code", &user_code)], &[]).await;
        assert_eq!(again.status, 400);
        assert!(
            again
                .text
                .contains("That code is wrong, has expired or was already used.")
        );

        // The decision is audited, without the codes.
        let admin = s.login_as("admin", ADMIN_PASSWORD).await;
        let logs = s.get_auth("/audit/logs?action=DEVICE_APPROVE", &admin.access).await;
        assert_eq!(logs.status, 200, "{}", logs.text);
        assert!(logs.text.contains(CLI), "{}", logs.text);
        assert!(!logs.text.contains(&device_code) && !logs.text.contains(&user_code));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_too_fast_slows_down_and_denial_and_expiry_end_the_flow() {
    for backend in backends().await {
        let (s, db) = TestServer::start(backend).await;
        let (device_code, user_code) = start(&s).await;
        assert_eq!(
            oauth_error(poll(&s, CLI, &device_code).await, 400),
            "authorization_pending"
        );
        assert_eq!(oauth_error(poll(&s, CLI, &device_code).await, 400), "slow_down");
        assert_eq!(stored_interval(&db).await, 10, "the interval grows by 5 s");
        assert_eq!(oauth_error(poll(&s, CLI, &device_code).await, 400), "slow_down");
        assert_eq!(stored_interval(&db).await, 15);

        s.register("bob").await;
        let cookie = page_sign_in(&s, "bob", PASSWORD).await;
        let done = decide(&s, &cookie, &user_code, "deny").await;
        assert_eq!(done.status, 200, "{}", done.text);
        assert!(done.text.contains("id=\"device-denied\""));
        forget_polls(&db).await;
        assert_eq!(oauth_error(poll(&s, CLI, &device_code).await, 400), "access_denied");

        // Expiry: the code's ten minutes are over (moved back behind the service).
        let (device_code, user_code) = start(&s).await;
        execute_sql(&db, "UPDATE oidc_device_codes SET expires_at = created_at").await;
        assert_eq!(oauth_error(poll(&s, CLI, &device_code).await, 400), "expired_token");
        let late = device_form(&s, &cookie, &[("user_code", &user_code)], &[]).await;
        assert_eq!(late.status, 400);
        assert!(
            late.text
                .contains("That code is wrong, has expired or was already used.")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_codes_belong_to_their_client_and_bad_requests_are_oauth_errors() {
    use portcullis::domain::Actor;
    use portcullis::domain::oidc::{ClientKind, ClientSpec};
    for backend in backends().await {
        let (s, db) = TestServer::start(backend).await;
        let spec = |id: &str, grants: &[&str]| ClientSpec {
            client_id: Some(id.into()),
            name: id.into(),
            kind: Some(ClientKind::Public),
            grant_types: Some(grants.iter().map(|g| g.to_string()).collect()),
            scopes: Some(vec!["openid".into()]),
            ..Default::default()
        };
        s.service
            .create_client(spec("tv", &[GRANT]), &Actor::system())
            .await
            .unwrap();
        s.service
            .create_client(spec("no-device", &["refresh_token"]), &Actor::system())
            .await
            .unwrap();

        let (device_code, user_code) = start(&s).await;
        // Another client cannot redeem it, even once approved.
        s.register("carol").await;
        let cookie = page_sign_in(&s, "carol", PASSWORD).await;
        assert_eq!(decide(&s, &cookie, &user_code, "approve").await.status, 200);
        forget_polls(&db).await;
        assert_eq!(oauth_error(poll(&s, "tv", &device_code).await, 400), "invalid_grant");
        assert_eq!(poll(&s, CLI, &device_code).await.status, 200, "still the CLI's");

        // The client must exist, be allowed the grant and the scope.
        assert_eq!(
            oauth_error(authorize_device(&s, "nobody", "openid").await, 401),
            "invalid_client"
        );
        assert_eq!(
            oauth_error(authorize_device(&s, "no-device", "openid").await, 400),
            "unauthorized_client"
        );
        assert_eq!(
            oauth_error(poll(&s, "no-device", &device_code).await, 400),
            "unauthorized_client"
        );
        assert_eq!(
            oauth_error(authorize_device(&s, "tv", "openid email").await, 400),
            "invalid_scope"
        );
        let res = authorize_device(&s, "tv", "").await;
        assert_eq!(res.status, 200, "{}", res.text);
        let form = [("grant_type", GRANT), ("client_id", "tv")];
        let res = s.call(M::POST, "/oauth2/token", Anonymous, Form(&form)).await;
        assert_eq!(oauth_error(res, 400), "invalid_request");
        for bad in ["x", "not-a-device-code-but-43-characters-long-xx"] {
            assert_eq!(oauth_error(poll(&s, "tv", bad).await, 400), "invalid_grant", "{bad:?}");
        }
        let res = s
            .call(
                M::POST,
                "/oauth2/device_authorization",
                Anonymous,
                Json(serde_json::json!({"client_id": "tv"})),
            )
            .await;
        assert_eq!(oauth_error(res, 400), "invalid_request");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_user_codes_are_said_in_words_and_guessing_is_locked() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        let (_, user_code) = start(&s).await;
        s.register("dave").await;
        let cookie = page_sign_in(&s, "dave", PASSWORD).await;
        let wrong = device_form(&s, &cookie, &[("user_code", "BBBB-BBBB")], &[]).await;
        assert_eq!(wrong.status, 400);
        assert!(
            wrong
                .text
                .contains("That code is wrong, has expired or was already used.")
        );
        assert!(wrong.text.contains("value=\"BBBB-BBBB\""), "kept for correcting");
        let german = device_form(
            &s,
            &cookie,
            &[("user_code", "not a code")],
            &[("accept-language", "de")],
        )
        .await;
        assert_eq!(german.status, 400);
        assert!(german.text.contains("Dieser Code ist falsch"), "{}", german.text);
        let bad_csrf = post_form(
            &s,
            "/device",
            &[("user_code", &user_code), ("csrf", "x")],
            Some(&cookie),
            SAME_ORIGIN,
        )
        .await;
        assert_eq!(bad_csrf.status, 403);

        // Ten failures per account within an hour lock it for 15 minutes: then even
        // the right code is refused.
        let mut last = None;
        for _ in 2..10 {
            last = Some(
                device_form(&s, &cookie, &[("user_code", "CCCC-CCCC")], &[])
                    .await
                    .status,
            );
        }
        assert_eq!(last, Some(400), "ten failures are each only wrong");
        let locked = device_form(&s, &cookie, &[("user_code", "CCCC-CCCC")], &[]).await;
        assert_eq!(locked.status, 429, "{}", locked.text);
        assert!(locked.text.contains("Too many attempts"), "{}", locked.text);
        let right = device_form(&s, &cookie, &[("user_code", &user_code)], &[]).await;
        assert_eq!(right.status, 429);

        // Another account in another browser is not held up by dave's lock.
        s.register("erin").await;
        let other = page_sign_in(&s, "erin", PASSWORD).await;
        assert_eq!(
            device_form(&s, &other, &[("user_code", &user_code)], &[]).await.status,
            200
        );
    }
}

/// Runs a remote command off the async workers (the server under test shares them).
async fn remote(creds: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let mut c = binary();
    c.env("PORTCULLIS_CREDENTIALS_FILE", creds).args(args);
    tokio::task::spawn_blocking(move || run_binary(&mut c, ""))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portcullis_login_device_signs_the_cli_in_through_the_browser() {
    use std::io::BufRead;
    for backend in backends().await {
        // Discovery's URLs are the public URL's: the real address here.
        let addr = free_address();
        let url = format!("http://{addr}");
        let settings = [("PORTCULLIS_BIND", addr.to_string()), ("PORTCULLIS_PUBLIC_URL", url)];
        let pairs: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (s, _db) = TestServer::start_with(backend, &pairs).await;
        s.register("frank").await;
        let dir = tempfile::tempdir().unwrap();
        let creds = dir.path().join("creds.json");

        let mut cli = binary();
        cli.env("PORTCULLIS_CREDENTIALS_FILE", &creds)
            .args(["login", "--device", "--server", s.http.base.as_str()])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cli.spawn().expect("spawn portcullis login --device");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let reader = std::thread::spawn(move || {
            let mut tx = Some(tx);
            let mut all = String::new();
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(code) = line
                    .strip_prefix("To sign in, open ")
                    .and_then(|l| l.split("enter the code ").nth(1))
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(code.trim().to_string());
                }
                all.push_str(&line);
                all.push('\n');
            }
            all
        });
        let user_code = tokio::time::timeout(std::time::Duration::from_secs(30), rx)
            .await
            .expect("the CLI prints a code")
            .unwrap();

        let cookie = page_sign_in(&s, "frank", PASSWORD).await;
        assert_eq!(decide(&s, &cookie, &user_code, "approve").await.status, 200);
        let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
            .await
            .unwrap();
        let said = reader.join().unwrap();
        assert!(status.success(), "{said}");
        assert!(said.contains("(or open "), "{said}");
        assert!(said.contains("logged in to"), "{said}");

        let (code, out, err) = remote(&creds, &["whoami"]).await;
        assert_eq!(code, 0, "{err}");
        assert!(out.starts_with("frank <frank@example.com>"), "{out}");
        let stored: Value = serde_json::from_str(&std::fs::read_to_string(&creds).unwrap()).unwrap();
        assert_eq!(stored["client_id"], CLI);

        // `token` refreshes a device login's tokens at the token endpoint, as its client.
        let mut stale = stored.clone();
        stale["expires_at"] = Value::from("2000-01-01T00:00:00Z");
        std::fs::write(&creds, stale.to_string()).unwrap();
        let (code, out, err) = remote(&creds, &["token"]).await;
        assert_eq!(code, 0, "{err}");
        let fresh = out.trim();
        assert_ne!(fresh, stored["access_token"].as_str().unwrap());
        assert_eq!(jwt_part(fresh, 1)["client_id"], CLI);
        let (code, _, err) = remote(&creds, &["logout"]).await;
        assert_eq!(code, 0, "{err}");
        s.stop().await;
    }
}
