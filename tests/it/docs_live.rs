//! The documentation's examples that need more than one test server, run as written:
//! the PostgreSQL `serve` line of docs/operations.md starts a real server on a fresh
//! PostgreSQL database; the Rust excerpt of docs/roles.md is a piece of
//! `examples/guarded_service.rs`, which runs against a live Portcullis here; the token
//! exchange of docs/social-login.md signs in with tokens of test providers.

use std::time::Duration;

use crate::docs::{answers_then, run_bash};
use crate::oidc_provider::{CLIENT_ID, CLIENT_SECRET, FakeProvider, Person};
use crate::support::*;

/// bash, configured like `configured` (its environment and removals) with the real
/// binary's directory first on PATH, so a documented `portcullis ...` line runs it.
pub fn bash_with_binary(configured: &std::process::Command) -> Option<std::process::Command> {
    let mut cmd = std::process::Command::new(tool("bash")?);
    for (key, value) in configured.get_envs() {
        match value {
            Some(value) => cmd.env(key, value),
            None => cmd.env_remove(key),
        };
    }
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_portcullis"))
        .parent()
        .expect("the binary's directory");
    let path = std::env::join_paths(
        std::iter::once(bin_dir.to_path_buf())
            .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )
    .expect("a PATH");
    cmd.env("PATH", path);
    Some(cmd)
}

/// "Deployment" in docs/operations.md: the block's `serve` line, with its database
/// URL pointed at a fresh test database and its address at a free port (and `exec`, so
/// the test's stop ends the server), starts Portcullis on PostgreSQL: it migrates,
/// bootstraps the admin there, answers ready, and names the public URL as issuer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_serve_example_starts_a_server_on_postgresql() {
    let block = doc_block("postgres-serve");
    if !backends().await.contains(&Backend::Postgres) || tool("openssl").is_none() {
        return;
    }
    let db = TestDb::new(Backend::Postgres).await;
    for written in [
        "postgres://user:pass@db.internal:5432/portcullis",
        "portcullis serve --bind 0.0.0.0:8000",
    ] {
        assert!(
            block.contains(written),
            "the block no longer says {written:?}:\n{block}"
        );
    }
    // BinaryServer appends `serve --bind ADDR`: to bash they are $0, $1 and $2.
    let script = block
        .replace("postgres://user:pass@db.internal:5432/portcullis", &db.url)
        .replace(
            "portcullis serve --bind 0.0.0.0:8000",
            "exec portcullis serve --bind \"$2\"",
        );
    let Some(mut cmd) = bash_with_binary(&binary()) else {
        return;
    };
    cmd.args(["-eu", "-o", "pipefail", "-c", &script]);
    let server = BinaryServer::start(cmd).await;
    let ready = server.http.call(M::GET, "/ready", Anonymous, Empty).await;
    assert_eq!(ready.status, 200, "{}", server.log());
    let discovery = server
        .http
        .call(M::GET, "/.well-known/openid-configuration", Anonymous, Empty)
        .await
        .json();
    assert_eq!(discovery["issuer"], "https://auth.example.com", "{discovery}");
    let pool = sqlx::PgPool::connect(&db.url).await.expect("the test database");
    let admins: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE username = 'admin' AND is_superuser")
        .fetch_one(&pool)
        .await
        .expect("the users table, migrated on PostgreSQL");
    assert_eq!(admins, 1, "the admin is bootstrapped in PostgreSQL:\n{}", server.log());
    pool.close().await;
}

/// The example embedding the crate, started as its own process on the same SQLite
/// database as a test server: tokens that server issues pass its guards by permission
/// and role, others get 403, and no token 401. The excerpt in docs/roles.md is its
/// text, line for line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guarded_service_example_guards_its_routes() {
    let source = include_str!("../../examples/guarded_service.rs");
    let mut rest = source;
    for line in doc_block("guarded-service")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        let at = rest.find(line).unwrap_or_else(|| {
            panic!("docs/roles.md's excerpt has {line:?}, which the example does not (in that order)")
        });
        rest = &rest[at + line.len()..];
    }
    // `cargo test` builds the examples beside the test binaries' directory.
    let example = std::env::current_exe()
        .expect("the test binary")
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("examples/guarded_service"))
        .filter(|p| p.is_file())
        .expect("examples/guarded_service, which `cargo test` builds (`--test it` alone does not)");
    let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).expect("mtime");
    assert!(
        modified(&example)
            >= modified(std::path::Path::new(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/examples/guarded_service.rs"
            ))),
        "examples/guarded_service is older than its source: run `cargo test` (or `cargo build --examples`)"
    );
    let (s, db) = TestServer::start(Backend::Sqlite).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = std::process::Command::new(example);
    for (key, _) in std::env::vars() {
        if key.starts_with("PORTCULLIS_") || key.starts_with("JWT_") || key == "DATABASE_URL" {
            cmd.env_remove(key);
        }
    }
    for (key, value) in base_settings(&db) {
        cmd.env(key, value);
    }
    let mut child = KillOnDrop(
        cmd.env("GUARDED_SERVICE_BIND", format!("127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the example"),
    );
    let guarded = Http::new(format!("http://127.0.0.1:{port}"));
    let admin = s.login_as("admin", ADMIN_PASSWORD).await;
    within(Duration::from_secs(60), "the example listens", || {
        let guarded = guarded.clone();
        async move { reqwest::Client::new().get(guarded.url("/whoami")).send().await.is_ok() }
    })
    .await;
    assert!(
        child.0.try_wait().expect("the example's status").is_none(),
        "the example exited"
    );
    let created = guarded.call(M::POST, "/projects", Bearer(&admin.access), Empty).await;
    assert_eq!(
        (created.status, created.text.as_str()),
        (200, "project created by admin\n")
    );
    let admin_page = guarded.call(M::GET, "/admin", Bearer(&admin.access), Empty).await;
    assert_eq!(admin_page.status, 200, "{}", admin_page.text);
    let viewer = s.user("viewer_vic").await;
    let refused = guarded.call(M::POST, "/projects", Bearer(&viewer.access), Empty).await;
    assert_eq!(refused.status, 403, "{}", refused.text);
    let not_admin = guarded.call(M::GET, "/admin", Bearer(&viewer.access), Empty).await;
    assert_eq!(not_admin.status, 403, "{}", not_admin.text);
    let anonymous = guarded.call(M::POST, "/projects", Anonymous, Empty).await;
    assert_eq!(anonymous.status, 401, "{}", anonymous.text);
    s.stop().await;
}

/// Ends a child process when the test ends, however it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The token exchange of docs/social-login.md, with the test providers' tokens for
/// its placeholders: Google's ID token (carrying the nonce the block sends) and an
/// access token of an allowed Okta organisation (the block's `acme.okta.com`, here the
/// second test provider's issuer, which its introspection confirms as ours) each sign
/// in, with `amr: ["fed"]`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_exchange_examples_run_as_written() {
    let block = doc_block("social-token-exchange");
    let (google, okta, acme) = (
        FakeProvider::start(None).await,
        FakeProvider::start(None).await,
        FakeProvider::start(None).await,
    );
    let mut settings = vec![("OAUTH_OKTA_ALLOWED_DOMAINS".to_string(), acme.issuer())];
    for (prefix, p) in [("OAUTH_GOOGLE", &google), ("OAUTH_OKTA", &okta)] {
        settings.push((format!("{prefix}_ISSUER"), p.issuer()));
        settings.push((format!("{prefix}_CLIENT_ID"), CLIENT_ID.into()));
        settings.push((format!("{prefix}_CLIENT_SECRET"), CLIENT_SECRET.into()));
    }
    let extra: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (s, _db) = TestServer::start_with(Backend::Sqlite, &extra).await;
    let id_token = google.id_token(
        &Person::new("google-sub", "gail@example.com"),
        Some("the nonce you sent"),
        false,
        |_| {},
    );
    let access_token = acme.access_token_for(&Person::new("okta-sub", "otto@example.com"));
    let acme_issuer = acme.issuer();
    let placeholders = [
        ("eyJhbGciOiJSUzI1NiIs...", id_token.as_str()),
        ("eyJraWQiOi...", access_token.as_str()),
        ("acme.okta.com", acme_issuer.as_str()),
    ];
    let mut script = block.clone();
    for (placeholder, value) in placeholders {
        assert!(block.contains(placeholder), "the block no longer says {placeholder:?}");
        script = script.replace(placeholder, value);
    }
    let Some(out) = run_bash(&format!(
        "B={}\n{script}\necho '#end'\n",
        s.http.base.trim_end_matches('/')
    )) else {
        return;
    };
    let (answers, _) = answers_then(&out, "#end", &out);
    assert_eq!(answers.len(), 2, "{out}");
    for (answer, who) in answers.iter().zip(["gail", "otto"]) {
        let access = answer["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("{who}: {answer}"));
        let claims = jwt_part(access, 1);
        assert_eq!(claims["amr"], serde_json::json!(["fed"]), "{who}: {claims}");
        let me = s.get_auth("/auth/me", access).await.json();
        assert!(me["email"].as_str().is_some_and(|e| e.starts_with(who)), "{me}");
    }
    s.stop().await;
}
