//! The command line: operator commands on the configured database (both backends),
//! and login/token/whoami/logout against a real running server.

use serde_json::Value;

use crate::support::*;

fn cli(db: &TestDb) -> std::process::Command {
    binary_on(db)
}

/// `user create` for `username` (email `<username>@example.com`), the password on
/// standard input, with `extra` arguments.
fn user_create(username: &str, extra: &[&str]) -> Vec<String> {
    let email = format!("{username}@example.com");
    [
        "user",
        "create",
        "--username",
        username,
        "--email",
        &email,
        "--password-stdin",
    ]
    .iter()
    .chain(extra)
    .map(|a| a.to_string())
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_commands_manage_users_and_roles() {
    for backend in backends().await {
        let db = TestDb::new(backend).await;
        let run = |args: &[&str], stdin: &str| run_binary(cli(&db).args(args), stdin);

        let (code, out, err) = run_binary(
            cli(&db).args(user_create("alice", &["--role", "analyst", "--json"])),
            &format!("{PASSWORD}\n"),
        );
        assert_eq!(code, 0, "{err}");
        let created: Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(created["username"], "alice");
        let (code, _, err) = run(
            &[
                "user",
                "create",
                "--username",
                "bob",
                "--email",
                "bob@example.com",
                "--password",
                "password1",
            ],
            "",
        );
        assert_eq!(code, 4, "weak password refused: {err}");
        assert!(err.contains("password"));
        let (code, _, _) = run(
            &[
                "user",
                "create",
                "--username",
                "alice",
                "--email",
                "other@example.com",
                "--password",
                PASSWORD,
            ],
            "",
        );
        assert_eq!(code, 4, "duplicate");

        let (code, out, _) = run(&["--json", "user", "list"], "");
        assert_eq!(code, 0);
        let list: Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(list["total"], 1);
        let (code, out, _) = run(&["user", "list"], "");
        assert_eq!(code, 0);
        assert!(out.contains("alice") && out.contains("1 of 1 users"));

        assert_eq!(run(&["role", "create", "support", "--permission", "no:such"], "").0, 4);
        assert_eq!(
            run(
                &[
                    "role",
                    "create",
                    "support",
                    "--description",
                    "Desk",
                    "--permission",
                    "projects:read"
                ],
                ""
            )
            .0,
            0
        );
        assert_eq!(run(&["role", "grant", "support", "reports:read"], "").0, 0);
        let (_, out, _) = run(&["--json", "role", "list"], "");
        let roles: Value = serde_json::from_str(out.trim()).unwrap();
        let support = roles
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "support")
            .unwrap();
        assert_eq!(
            support["permissions"],
            serde_json::json!(["projects:read", "reports:read"])
        );
        assert_eq!(run(&["role", "revoke", "support", "reports:read"], "").0, 0);
        assert_eq!(run(&["role", "revoke", "support", "reports:read"], "").0, 3);
        assert_eq!(run(&["role", "grant", "nosuchrole", "reports:read"], "").0, 3);

        assert_eq!(run(&["user", "grant-role", "alice", "support"], "").0, 0);
        assert_eq!(run(&["user", "revoke-role", "alice", "support"], "").0, 0);
        assert_eq!(run(&["user", "revoke-role", "alice", "support"], "").0, 3);
        assert_eq!(run(&["user", "grant-role", "ghost", "support"], "").0, 3);
        assert_eq!(
            run(&["user", "set-password", "alice"], "another fine pass phrase\n").0,
            0
        );
        assert_eq!(run(&["user", "set-password", "alice"], "weak\n").0, 4);
        assert_eq!(run(&["user", "disable", "alice"], "").0, 0);
        assert_eq!(run(&["user", "enable", "alice"], "").0, 0);
        assert_eq!(run(&["user", "disable", "ghost"], "").0, 3);

        // What the commands did is what the service sees.
        let s = TestServer::on(&db, &[]).await;
        let t = s.login_as("alice", "another fine pass phrase").await;
        assert_eq!(jwt_part(&t.access, 1)["roles"], serde_json::json!(["analyst"]));
        s.stop().await;
    }
}

/// Runs a remote command off the async workers (the server under test shares them).
async fn remote(creds: &std::path::Path, args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut c = binary();
    c.env("PORTCULLIS_CREDENTIALS_FILE", creds).args(args);
    let stdin = stdin.to_string();
    tokio::task::spawn_blocking(move || run_binary(&mut c, &stdin))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_commands_log_in_refresh_and_log_out() {
    let (s, _db) = TestServer::start(Backend::Sqlite).await;
    s.register("shell").await;
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("creds.json");
    let login = [
        "login",
        "--server",
        s.http.base.as_str(),
        "--username",
        "shell",
        "--password-stdin",
    ];
    let (code, _, err) = remote(&creds, &login, "wrong password\n").await;
    assert_eq!(code, 1);
    assert!(err.contains("invalid username or password"), "{err}");
    assert!(!creds.exists());

    let (code, _, err) = remote(&creds, &login, &format!("{PASSWORD}\n")).await;
    assert_eq!(code, 0, "{err}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&creds).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let (code, token, _) = remote(&creds, &["token"], "").await;
    assert_eq!(code, 0);
    let token = token.trim().to_string();
    assert_eq!(s.get_auth("/auth/me", &token).await.status, 200);
    let (_, again, _) = remote(&creds, &["token"], "").await;
    assert_eq!(again.trim(), token, "not refreshed while still fresh");
    let (code, who, _) = remote(&creds, &["whoami"], "").await;
    assert_eq!(code, 0);
    assert!(who.contains("shell <shell@example.com>"), "{who}");
    let (_, who, _) = remote(&creds, &["--json", "whoami"], "").await;
    assert_eq!(serde_json::from_str::<Value>(who.trim()).unwrap()["username"], "shell");

    // About to expire: `token` refreshes, spending the old refresh token.
    let mut stored: Value = serde_json::from_str(&std::fs::read_to_string(&creds).unwrap()).unwrap();
    let old_refresh = stored["refresh_token"].as_str().unwrap().to_string();
    stored["expires_at"] = Value::String(chrono::Utc::now().to_rfc3339());
    std::fs::write(&creds, stored.to_string()).unwrap();
    let (code, fresh, _) = remote(&creds, &["token"], "").await;
    assert_eq!(code, 0);
    assert_ne!(fresh.trim(), token);
    let stored: Value = serde_json::from_str(&std::fs::read_to_string(&creds).unwrap()).unwrap();
    let current_refresh = stored["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(current_refresh, old_refresh);

    let (code, _, _) = remote(&creds, &["logout"], "").await;
    assert_eq!(code, 0);
    assert!(!creds.exists());
    expect_problem(s.refresh(&current_refresh).await, 401);
    expect_invalid_token(s.get_auth("/auth/me", fresh.trim()).await);
    let (code, _, err) = remote(&creds, &["token"], "").await;
    assert_eq!(code, 1);
    assert!(err.contains("not logged in"));
    s.stop().await;
}

/// `login` writes the tokens through a file it creates itself: a file or a link an
/// attacker left beside the credentials (where the old code wrote `<name>.tmp`) is
/// neither reused (keeping its permissions) nor followed (writing the tokens elsewhere).
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_writes_credentials_through_a_fresh_private_file() {
    use std::os::unix::fs::{PermissionsExt, symlink};
    let (s, _db) = TestServer::start(Backend::Sqlite).await;
    s.register("careful").await;
    let dir = tempfile::tempdir().unwrap();
    let login = |creds: &std::path::Path| {
        let creds = creds.to_path_buf();
        let base = s.http.base.clone();
        async move {
            let args = [
                "login",
                "--server",
                base.as_str(),
                "--username",
                "careful",
                "--password-stdin",
            ];
            remote(&creds, &args, &format!("{PASSWORD}\n")).await
        }
    };

    // A world-readable file waiting at the old temporary path.
    let creds = dir.path().join("a.json");
    let planted = dir.path().join("a.tmp");
    std::fs::write(&planted, "").unwrap();
    std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, _, err) = login(&creds).await;
    assert_eq!(code, 0, "{err}");
    let meta = std::fs::symlink_metadata(&creds).unwrap();
    assert!(meta.file_type().is_file());
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o600,
        "the credentials are owner-only"
    );
    assert_eq!(
        std::fs::read_to_string(&planted).unwrap(),
        "",
        "the planted file is not reused"
    );

    // A link at the old temporary path, to a file the attacker can read.
    let creds = dir.path().join("b.json");
    let loot = dir.path().join("loot");
    std::fs::write(&loot, "").unwrap();
    std::fs::set_permissions(&loot, std::fs::Permissions::from_mode(0o644)).unwrap();
    symlink(&loot, dir.path().join("b.tmp")).unwrap();
    let (code, _, err) = login(&creds).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read_to_string(&loot).unwrap(),
        "",
        "the tokens were written through the link"
    );
    let meta = std::fs::symlink_metadata(&creds).unwrap();
    assert!(meta.file_type().is_file());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert!(std::fs::read_to_string(&creds).unwrap().contains("refresh_token"));

    // No temporary file is left behind (the planted ones stay).
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["a.json", "a.tmp", "b.json", "b.tmp", "loot"]);
    s.stop().await;
}

/// `apikey create` for `user`, named "x", with `extra` arguments.
fn apikey_create(user: &str, extra: &[&str]) -> Vec<String> {
    ["apikey", "create", "--user", user, "--name", "x"]
        .iter()
        .chain(extra)
        .map(|a| a.to_string())
        .collect()
}

/// Runs an operator command on `db` off the async workers (a server under test may
/// share them).
async fn operator<S: AsRef<std::ffi::OsStr>>(
    db: &TestDb,
    args: impl IntoIterator<Item = S>,
    stdin: &str,
) -> (i32, String, String) {
    let mut c = binary_on(db);
    c.args(args);
    let stdin = stdin.to_string();
    tokio::task::spawn_blocking(move || run_binary(&mut c, &stdin))
        .await
        .unwrap()
}

/// Runs `cmd` and kills it if it has not exited within `bound`: a command expected to
/// refuse to start must not hang the test when it starts instead. The exit code (None
/// when killed) and standard error.
fn run_bounded(cmd: &mut std::process::Command, bound: std::time::Duration) -> (Option<i32>, String) {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn portcullis");
    let start = std::time::Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if start.elapsed() > bound {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    (code, err)
}

/// Issue 27: no command generates a master key over data sealed under another one; it
/// stops and says how to give the key, and a wrong key is refused. Commands that need
/// nothing sealed (user, role, apikey, audit) work without the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_command_generates_a_master_key_over_sealed_data() {
    const WRONG_KEY: &str = "ZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmY=";
    const RIGHT_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    for backend in backends().await {
        let db = TestDb::new(backend).await;
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("master.key");
        let keyless = |args: &[&str]| {
            let mut c = binary();
            c.env("DATABASE_URL", &db.url)
                .env("PORTCULLIS_MASTER_KEY_FILE", &key_file)
                .args(args);
            c
        };

        // A fresh database: user commands never generate a key. One that writes the
        // audit trail (keyed with the master key, issue 26) needs it given, and says so.
        let alice = user_create("alice", &[]);
        let alice: Vec<&str> = alice.iter().map(String::as_str).collect();
        let (code, _, err) = run_binary(&mut keyless(&alice), &format!("{PASSWORD}\n"));
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("PORTCULLIS_MASTER_KEY"), "{err}");
        assert!(!key_file.exists(), "a user command generated a master key");
        let (code, _, err) = run_binary(
            keyless(&alice).env("PORTCULLIS_MASTER_KEY", RIGHT_KEY),
            &format!("{PASSWORD}\n"),
        );
        assert_eq!(code, 0, "{err}");
        assert!(!key_file.exists(), "a user command generated a master key");

        // Data sealed under the test key.
        let (code, _, err) = run_binary(binary_on(&db).args(["keys", "rotate"]), "");
        assert_eq!(code, 0, "{err}");

        // Without the key, commands that need it stop, say how to give it, and
        // generate none.
        let (code, _, err) = run_binary(&mut keyless(&["keys", "rotate"]), "");
        assert_eq!(code, 1, "{err}");
        assert!(
            err.contains("PORTCULLIS_MASTER_KEY") && err.contains("PORTCULLIS_MASTER_KEY_FILE"),
            "the message says how to give the key: {err}"
        );
        assert!(err.contains("signing keys"), "{err}");
        assert!(!key_file.exists(), "keys rotate generated a master key");
        let (code, err) = run_bounded(
            &mut keyless(&["serve", "--bind", "127.0.0.1:0"]),
            std::time::Duration::from_secs(60),
        );
        assert_eq!(code, Some(1), "serve must refuse to start: {err}");
        assert!(err.contains("PORTCULLIS_MASTER_KEY"), "{err}");
        assert!(!key_file.exists(), "serve generated a master key");

        // Commands that need nothing sealed work without it; verifying the audit trail
        // needs the key it is keyed with.
        for args in [&["user", "list"][..], &["role", "list"], &["apikey", "list"]] {
            let (code, out, err) = run_binary(&mut keyless(args), "");
            assert_eq!(code, 0, "{args:?}: {err}");
            if args[0] == "user" {
                assert!(out.contains("alice"), "{out}");
            }
        }
        let (code, _, err) = run_binary(&mut keyless(&["audit", "verify"]), "");
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("PORTCULLIS_MASTER_KEY"), "{err}");
        let (code, out, err) = run_binary(binary_on(&db).args(["audit", "verify"]), "");
        assert_eq!(code, 0, "{out}{err}");
        assert!(!key_file.exists());

        // A wrong key, from the environment or from the key file, is refused.
        let (code, _, err) = run_binary(
            binary_on(&db)
                .env("PORTCULLIS_MASTER_KEY", WRONG_KEY)
                .args(["keys", "rotate"]),
            "",
        );
        assert_eq!(code, 1, "{err}");
        assert!(
            err.contains("wrong master key") && err.contains("PORTCULLIS_MASTER_KEY"),
            "{err}"
        );
        assert!(!err.contains(WRONG_KEY), "the key is never printed");
        std::fs::write(&key_file, format!("{WRONG_KEY}\n")).unwrap();
        let (code, _, err) = run_binary(&mut keyless(&["keys", "rotate"]), "");
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("wrong master key"), "{err}");
        assert!(err.contains(&key_file.display().to_string()), "names the file: {err}");
        assert_eq!(
            std::fs::read_to_string(&key_file).unwrap().trim(),
            WRONG_KEY,
            "the file is left as it was"
        );

        // The right key in the file works.
        std::fs::write(&key_file, format!("{RIGHT_KEY}\n")).unwrap();
        let (code, _, err) = run_binary(&mut keyless(&["keys", "rotate"]), "");
        assert_eq!(code, 0, "{err}");
    }
}

/// Issue 27: `apikey create|list|revoke` and `user delete|unlock|reset-mfa` act on the
/// database through the same operations as the API, audited as the operator; a new
/// key's secret is printed once and appears in no log or audit record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_commands_manage_api_keys_and_accounts() {
    for backend in backends().await {
        let db = TestDb::new(backend).await;
        let (code, _, err) = operator(
            &db,
            user_create("alice", &["--role", "analyst"]),
            &format!("{PASSWORD}\n"),
        )
        .await;
        assert_eq!(code, 0, "{err}");
        let s = TestServer::on(&db, &[("LOGIN_LOCKOUT_THRESHOLD", "2")]).await;

        // apikey create: the secret once on stdout, nowhere else.
        let (code, out, err) = operator(
            &db,
            &[
                "--json",
                "apikey",
                "create",
                "--user",
                "alice",
                "--name",
                "ci",
                "--permission",
                "reports:read",
            ],
            "",
        )
        .await;
        assert_eq!(code, 0, "{err}");
        let created: Value = serde_json::from_str(out.trim()).unwrap();
        let key = created["key"].as_str().unwrap().to_string();
        let id = created["id"].as_str().unwrap().to_string();
        let secret = key.rsplit('_').next().unwrap().to_string();
        assert_eq!(created["name"], "ci");
        assert_eq!(created["permissions"], serde_json::json!(["reports:read"]));
        assert!(!err.contains(&secret), "the secret reached the log: {err}");
        let me = s.call(M::GET, "/auth/me", ApiKey(&key), Empty).await;
        assert_eq!(me.status, 200, "{}", me.text);
        assert_eq!(me.json()["username"], "alice");
        // In text mode the key is the only line on standard output.
        let (code, out, err) = operator(&db, &["apikey", "create", "--user", "alice", "--name", "spare"], "").await;
        assert_eq!(code, 0, "{err}");
        let spare = out.trim().to_string();
        assert!(spare.starts_with("pcx_") && !spare.contains('\n'), "{out}");
        assert_eq!(s.call(M::GET, "/auth/me", ApiKey(&spare), Empty).await.status, 200);

        // Refused: what the owner does not hold, an unknown owner, a past expiry.
        let (code, _, err) = operator(&db, apikey_create("alice", &["--permission", "users:manage"]), "").await;
        assert_eq!(code, 4, "{err}");
        assert!(err.contains("alice does not hold it"), "{err}");
        let (code, _, _) = operator(&db, apikey_create("ghost", &[]), "").await;
        assert_eq!(code, 3);
        let past = apikey_create("alice", &["--expires-at", "2020-01-01T00:00:00Z"]);
        assert_eq!(operator(&db, past, "").await.0, 4);

        // apikey list: both keys, never a secret.
        let (code, out, err) = operator(&db, &["--json", "apikey", "list"], "").await;
        assert_eq!(code, 0, "{err}");
        let listed: Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
        assert!(listed.as_array().unwrap().iter().any(|k| k["id"] == id.as_str()));
        assert!(!out.contains(&secret) && !out.contains("secret_hash"), "{out}");
        let (_, out, _) = operator(&db, &["--json", "apikey", "list", "--user", "alice"], "").await;
        assert_eq!(
            serde_json::from_str::<Value>(out.trim())
                .unwrap()
                .as_array()
                .unwrap()
                .len(),
            2
        );
        let (_, out, _) = operator(&db, &["apikey", "list"], "").await;
        assert!(out.contains(&id) && out.contains("active"), "{out}");

        // Audited as the operator, without the secret.
        let (code, export, _) = operator(&db, &["audit", "export", "--action", "APIKEY_CREATE"], "").await;
        assert_eq!(code, 0);
        let records: Vec<Value> = export.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(records.len(), 2, "{export}");
        let metadata = match &records[0]["metadata"] {
            Value::String(text) => serde_json::from_str(text).unwrap(),
            other => other.clone(),
        };
        assert_eq!(metadata["via"], "system", "{export}");
        assert_eq!(metadata["owner"], "alice", "{export}");
        assert!(!export.contains(&secret));

        // apikey revoke: the running server refuses the key at once.
        let (code, _, err) = operator(&db, &["apikey", "revoke", &id], "").await;
        assert_eq!(code, 0, "{err}");
        within(
            std::time::Duration::from_secs(3),
            "the server refuses the revoked key",
            || async { s.call(M::GET, "/auth/me", ApiKey(&key), Empty).await.status == 401 },
        )
        .await;
        assert_eq!(operator(&db, &["apikey", "revoke", &id], "").await.0, 3);

        // user unlock lifts a lock that failed logins set.
        for _ in 0..2 {
            assert_eq!(s.login("alice", "not the password").await.status, 401);
        }
        assert_eq!(s.login("alice", PASSWORD).await.status, 429, "locked");
        let (code, out, err) = operator(&db, &["--json", "user", "unlock", "alice"], "").await;
        assert_eq!(code, 0, "{err}");
        assert_eq!(serde_json::from_str::<Value>(out.trim()).unwrap()["unlocked"], true);
        let t = s.login_as("alice", PASSWORD).await;

        // user reset-mfa removes an enrolled factor.
        crate::mfa::enrol(&s, &t.access).await;
        assert_eq!(s.login("alice", PASSWORD).await.json()["mfa_required"], true);
        let (code, _, err) = operator(&db, &["user", "reset-mfa", "alice"], "").await;
        assert_eq!(code, 0, "{err}");
        s.login_as("alice", PASSWORD).await;
        assert_eq!(
            operator(&db, &["user", "reset-mfa", "alice"], "").await.0,
            3,
            "nothing to reset"
        );

        // user delete: gone, with their keys; the last administrator stays.
        let (code, out, err) = operator(&db, &["--json", "user", "delete", "alice"], "").await;
        assert_eq!(code, 0, "{err}");
        assert_eq!(serde_json::from_str::<Value>(out.trim()).unwrap()["deleted"], true);
        assert_eq!(s.login("alice", PASSWORD).await.status, 401);
        within(
            std::time::Duration::from_secs(3),
            "the deleted user's key is refused",
            || async { s.call(M::GET, "/auth/me", ApiKey(&spare), Empty).await.status == 401 },
        )
        .await;
        assert_eq!(operator(&db, &["user", "delete", "alice"], "").await.0, 3);
        let root = user_create("root", &["--superuser"]);
        assert_eq!(operator(&db, root, &format!("{PASSWORD}\n")).await.0, 0);
        let (code, _, err) = operator(&db, &["user", "delete", "root"], "").await;
        assert_eq!(code, 4, "the last administrator: {err}");
        let (_, export, _) = operator(
            &db,
            &["audit", "export", "--action", "USER_UNLOCK,MFA_RESET,USER_DELETE"],
            "",
        )
        .await;
        assert_eq!(export.lines().count(), 3, "{export}");
        s.stop().await;
    }
}

/// Issue 27: `keys rotate` at the command line reaches running instances through the
/// change feed, within their sync interval rather than the 30 s key reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_reaches_running_instances_at_once() {
    for backend in backends().await {
        let (s, db) = TestServer::start(backend).await;
        let before = s.published_kids().await;
        let (code, out, err) = operator(&db, &["--json", "keys", "rotate"], "").await;
        assert_eq!(code, 0, "{err}");
        let rotated: Value = serde_json::from_str(out.trim()).unwrap();
        let kid = rotated["kid"].as_str().unwrap().to_string();
        assert!(!before.contains(&kid));
        assert!(rotated["applies_within_ms"].as_u64().is_some(), "{rotated}");
        assert!(rotated["previous_keys_verify_until"].is_string(), "{rotated}");
        within(
            std::time::Duration::from_secs(3),
            "the server publishes the new key",
            || async { s.published_kids().await.contains(&kid) },
        )
        .await;
        let t = s.user("rotated").await;
        assert_eq!(
            jwt_part(&t.access, 0)["kid"],
            kid.as_str(),
            "new tokens are signed with it"
        );
        for old in &before {
            assert!(
                s.published_kids().await.contains(old),
                "the previous key still verifies"
            );
        }
        // The message says when it applies.
        let (code, out, _) = operator(&db, &["keys", "rotate"], "").await;
        assert_eq!(code, 0);
        assert!(out.contains("within") && out.contains(" ms"), "{out}");
        s.stop().await;
    }
}
