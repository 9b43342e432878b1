//! Configuration that cannot silently weaken security, through the real binary: empty
//! values, settings naming roles and permissions, the TOML file in the working
//! directory, the SQLite files' modes, and instances that disagree on the issuer.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

/// A `serve` process, killed when dropped so that no process outlives a failed test.
struct Serving {
    child: Child,
    log: String,
}

impl Serving {
    /// Starts `cmd serve --bind 127.0.0.1:port` and waits until it is ready; Err with
    /// its exit code and log when it stops instead.
    fn start(cmd: &mut Command, bind: &str) -> Result<Self, (Option<i32>, String)> {
        let mut child = cmd
            .args(["serve", "--bind", bind])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn portcullis");
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let mut log = String::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let mut line = String::new();
            if stderr.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            log.push_str(&line);
            if line.contains("portcullis is ready") {
                // Keep draining, so that a full pipe never blocks the server.
                std::thread::spawn(move || {
                    let mut rest = String::new();
                    let _ = stderr.read_to_string(&mut rest);
                });
                return Ok(Self { child, log });
            }
        }
        let _ = Command::new("kill").args(["-KILL", &child.id().to_string()]).status();
        let status = child.wait().ok().and_then(|s| s.code());
        Err((status, log))
    }

    /// SIGTERM, and waits for the graceful exit.
    fn stop(mut self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
        let status = self.child.wait().unwrap();
        assert_eq!(status.code(), Some(0), "graceful exit");
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// An empty value used to be read as unset: the default (or nothing) came into force
/// without a word. Now it stops start-up with one line naming the setting.
#[test]
fn empty_values_stop_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    for (var, switchable) in [
        ("JWT_AUDIENCE", true),
        ("PORTCULLIS_ADMIN_PASSWORD", false),
        ("OAUTH_MICROSOFT_TENANT", false),
        ("MFA_REQUIRED_ROLES", true),
        ("TRUSTED_PROXIES", true),
        ("VERIFY_ROUTES", true),
    ] {
        let (code, err) = Serving::start(binary().current_dir(dir.path()).env(var, ""), "127.0.0.1:0")
            .err()
            .unwrap_or_else(|| panic!("{var}= was accepted"));
        assert_eq!(code, Some(1), "{var}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(&format!("{var}: is empty; unset it")), "{err}");
        assert_eq!(err.contains("`none`"), switchable, "{err}");
    }
    // The same from `.env`, which is where such blanks are usually left.
    std::fs::write(dir.path().join(".env"), "MFA_REQUIRED_ROLES=\n").unwrap();
    let out = binary().current_dir(dir.path()).arg("migrate").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("MFA_REQUIRED_ROLES: is empty"));
    assert!(!dir.path().join("portcullis.db").exists(), "nothing was created");
    // An empty PORTCULLIS_CONFIG names no file; it is not read as "none given".
    std::fs::write(dir.path().join(".env"), "").unwrap();
    let out = binary()
        .current_dir(dir.path())
        .env("PORTCULLIS_CONFIG", "")
        .arg("migrate")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("PORTCULLIS_CONFIG: is empty"));
}

/// A route map naming a permission that does not exist stops `serve`, naming the
/// nearest existing one; a permission the route map names cannot be deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_map_permissions_must_exist() {
    for backend in backends().await {
        let db = TestDb::new(backend).await;
        let (code, _, err) = run_binary(binary_on(&db).args(["permission", "create", "invoices:read"]), "");
        assert_eq!(code, 0, "{err}");
        let mut cmd = binary_on(&db);
        cmd.env("VERIFY_ROUTES", "GET /invoices/** invoices:raed")
            .env("PORTCULLIS_ADMIN_PASSWORD", ADMIN_PASSWORD);
        let (code, log) = Serving::start(&mut cmd, "127.0.0.1:0").err().expect("refused");
        assert_eq!(code, Some(1), "{log}");
        assert!(
            log.contains("VERIFY_ROUTES: no permission `invoices:raed` exists (did you mean `invoices:read`?)"),
            "{log}"
        );
        let mut cmd = binary_on(&db);
        cmd.env("VERIFY_ROUTES", "GET /invoices/** invoices:read")
            .env("PORTCULLIS_ADMIN_PASSWORD", ADMIN_PASSWORD);
        let serving = Serving::start(&mut cmd, "127.0.0.1:0").unwrap_or_else(|(_, log)| panic!("{log}"));
        serving.stop();
        let (_, out, _) = run_binary(binary_on(&db).args(["--json", "permission", "list"]), "");
        assert!(out.contains("\"invoices:read\""), "{out}");

        let routes = [("VERIFY_ROUTES", "GET /invoices/** invoices:read")];
        let s = TestServer::on(&db, &routes).await;
        let admin = s.login_as("admin", ADMIN_PASSWORD).await;
        let res = s
            .call(
                M::DELETE,
                "/admin/permissions/invoices:read",
                Bearer(&admin.access),
                Empty,
            )
            .await;
        let problem = expect_problem(res, 409);
        assert!(
            problem["detail"].as_str().unwrap().contains("VERIFY_ROUTES"),
            "{problem}"
        );
        // One the route map does not name still can be.
        let res = s
            .call(
                M::POST,
                "/admin/permissions",
                Bearer(&admin.access),
                Json(json!({"name": "invoices:write"})),
            )
            .await;
        assert_eq!(res.status, 201, "{}", res.text);
        let res = s
            .call(
                M::DELETE,
                "/admin/permissions/invoices:write",
                Bearer(&admin.access),
                Empty,
            )
            .await;
        assert_eq!(res.status, 204, "{}", res.text);
        s.stop().await;
    }
}

/// `portcullis.toml` in the working directory is read when no file is named, its
/// unknown keys refused; a named file wins; `serve` logs which file it read.
#[test]
fn portcullis_toml_in_the_working_directory_is_read() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".env"), "").unwrap();
    std::fs::write(dir.path().join("portcullis.toml"), "[password]\nmin_length = 1000\n").unwrap();
    let out = binary().current_dir(dir.path()).arg("migrate").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("PASSWORD_MIN_LENGTH"));

    std::fs::write(dir.path().join("portcullis.toml"), "[password]\nmin_lenght = 12\n").unwrap();
    let out = binary().current_dir(dir.path()).arg("migrate").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("portcullis.toml: unknown setting `password.min_lenght`; did you mean `password.min_length`?"),
        "{err}"
    );

    // A file named explicitly wins: the one in the working directory is not read.
    std::fs::write(dir.path().join("named.toml"), "database_url = \"sqlite://named.db\"\n").unwrap();
    for cmd in [
        binary().args(["--config", "named.toml", "migrate"]),
        binary().env("PORTCULLIS_CONFIG", "named.toml").arg("migrate"),
    ] {
        let out = cmd.current_dir(dir.path()).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    assert!(dir.path().join("named.db").exists());

    std::fs::write(
        dir.path().join("portcullis.toml"),
        "database_url = \"sqlite://local.db\"\nportcullis_master_key = \"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\"\n",
    )
    .unwrap();
    let serving =
        Serving::start(binary().current_dir(dir.path()), "127.0.0.1:0").unwrap_or_else(|(_, log)| panic!("{log}"));
    let file = std::fs::canonicalize(dir.path().join("portcullis.toml")).unwrap();
    let logged = [file, dir.path().join("portcullis.toml")]
        .iter()
        .any(|f| serving.log.contains(&format!("config_file={}", f.display())));
    assert!(logged, "{}", serving.log);
    assert!(dir.path().join("local.db").exists());
    serving.stop();
    let serving = Serving::start(
        binary().current_dir(dir.path()).args(["--config", "named.toml"]),
        "127.0.0.1:0",
    )
    .unwrap_or_else(|(_, log)| panic!("{log}"));
    assert!(serving.log.contains("named.toml"), "{}", serving.log);
    serving.stop();
    std::fs::remove_file(dir.path().join("portcullis.toml")).unwrap();
    let env = "PORTCULLIS_MASTER_KEY=MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n";
    std::fs::write(dir.path().join(".env"), env).unwrap();
    let serving =
        Serving::start(binary().current_dir(dir.path()), "127.0.0.1:0").unwrap_or_else(|(_, log)| panic!("{log}"));
    assert!(serving.log.contains("config_file=none"), "{}", serving.log);
    serving.stop();
}

/// The SQLite database and its `-wal`/`-shm` files are created 0600, like the key
/// file; a database path whose directory does not exist is refused, not created.
#[test]
fn sqlite_files_are_private_and_their_directory_must_exist() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".env"), "").unwrap();
    let missing = dir.path().join("no-such-dir");
    let out = binary()
        .current_dir(dir.path())
        .env("DATABASE_URL", format!("sqlite://{}/p.db", missing.display()))
        .arg("migrate")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&missing.display().to_string()) && err.contains("does not exist"),
        "{err}"
    );
    assert!(!missing.exists(), "the directory was not created");

    let db = dir.path().join("p.db");
    let serving = Serving::start(
        binary()
            .current_dir(dir.path())
            .env("DATABASE_URL", format!("sqlite://{}", db.display())),
        "127.0.0.1:0",
    )
    .unwrap_or_else(|(_, log)| panic!("{log}"));
    for suffix in ["", "-wal", "-shm"] {
        let path = dir.path().join(format!("p.db{suffix}"));
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
    assert_eq!(mode(&dir.path().join("p.db.key")), 0o600);
    serving.stop();
}

/// Instances on one database that derive their issuers from different bind addresses
/// would refuse each other's tokens: the second refuses to start, naming both issuers,
/// unless told to start anyway; with the same public URL they start; a stopped
/// instance no longer counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_disagreeing_on_the_issuer_are_caught_at_start_up() {
    for backend in backends().await {
        let db = TestDb::new(backend).await;
        let dir = tempfile::tempdir().unwrap();
        let on = |extra: &[(&str, &str)]| {
            let mut c = binary_on(&db);
            c.current_dir(dir.path())
                .env("PORTCULLIS_ADMIN_PASSWORD", ADMIN_PASSWORD)
                .env("MFA_REQUIRED_ROLES", "none");
            for (k, v) in extra {
                c.env(k, v);
            }
            c
        };
        let (p1, p2, p3) = (free_port(), free_port(), free_port());
        let (issuer1, issuer2) = (format!("http://127.0.0.1:{p1}"), format!("http://127.0.0.1:{p2}"));
        let first = Serving::start(&mut on(&[]), &format!("127.0.0.1:{p1}")).unwrap_or_else(|(_, log)| panic!("{log}"));

        let (code, log) = Serving::start(&mut on(&[]), &format!("127.0.0.1:{p2}"))
            .err()
            .expect("the second instance refuses to start");
        assert_eq!(code, Some(1), "{backend:?}: {log}");
        assert!(log.contains(&issuer1) && log.contains(&issuer2), "{backend:?}: {log}");
        assert!(log.contains("PORTCULLIS_PUBLIC_URL"), "{log}");

        // Told to start anyway, it does, and says so as an error.
        let anyway = Serving::start(
            &mut on(&[("PORTCULLIS_ALLOW_ISSUER_MISMATCH", "true")]),
            &format!("127.0.0.1:{p2}"),
        )
        .unwrap_or_else(|(_, log)| panic!("{log}"));
        assert!(anyway.log.contains("ERROR"), "{}", anyway.log);
        assert!(
            anyway.log.contains(&issuer1) && anyway.log.contains(&issuer2),
            "{}",
            anyway.log
        );
        anyway.stop();

        // The same public URL: one issuer, and a token from one is taken by the other.
        let same = Serving::start(
            &mut on(&[("PORTCULLIS_PUBLIC_URL", issuer1.as_str())]),
            &format!("127.0.0.1:{p3}"),
        )
        .unwrap_or_else(|(_, log)| panic!("{log}"));
        let (one, three) = (Http::new(issuer1.clone()), Http::new(format!("http://127.0.0.1:{p3}")));
        let login = one
            .call(
                M::POST,
                "/auth/login",
                Anonymous,
                Json(json!({"username": "admin", "password": ADMIN_PASSWORD})),
            )
            .await;
        assert_eq!(login.status, 200, "{}", login.text);
        let access = login.tokens().access;
        assert_eq!(three.call(M::GET, "/auth/me", Bearer(&access), Empty).await.status, 200);
        same.stop();
        first.stop();

        // Stopped instances removed their records: any issuer may start now.
        let later = Serving::start(&mut on(&[]), &format!("127.0.0.1:{p2}")).unwrap_or_else(|(_, log)| panic!("{log}"));
        later.stop();
    }
}

/// A wildcard bind without a public URL makes an issuer no client can use: warned.
#[test]
fn a_wildcard_bind_without_a_public_url_warns() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".env"), "").unwrap();
    let bind = format!("0.0.0.0:{}", free_port());
    let warning = "PORTCULLIS_PUBLIC_URL is not set";
    let serving = Serving::start(binary().current_dir(dir.path()), &bind).unwrap_or_else(|(_, log)| panic!("{log}"));
    assert!(serving.log.contains(warning), "{}", serving.log);
    serving.stop();
    let serving = Serving::start(
        binary()
            .current_dir(dir.path())
            .env("PORTCULLIS_PUBLIC_URL", "https://auth.example.com"),
        &bind,
    )
    .unwrap_or_else(|(_, log)| panic!("{log}"));
    assert!(!serving.log.contains(warning), "{}", serving.log);
    serving.stop();
}
