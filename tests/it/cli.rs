//! The command line: operator commands on the configured database (both backends),
//! and login/token/whoami/logout against a real running server.

use serde_json::Value;

use crate::support::*;

fn cli(db: &TestDb) -> std::process::Command {
    binary_on(db)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_commands_manage_users_and_roles() {
    for backend in backends().await {
        let db = TestDb::new(backend).await;
        let run = |args: &[&str], stdin: &str| run_binary(cli(&db).args(args), stdin);

        let (code, out, err) = run(
            &[
                "--json",
                "user",
                "create",
                "--username",
                "alice",
                "--email",
                "alice@example.com",
                "--password-stdin",
                "--role",
                "analyst",
            ],
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
