//! Test support: a real Portcullis server on an ephemeral port, over a fresh SQLite
//! file or a fresh PostgreSQL database, and an HTTP client that talks to it.

use std::sync::OnceLock;
use std::time::Duration;

use portcullis::Portcullis;
use portcullis::config::{Config, Sources};
use serde_json::{Value, json};

mod client;
mod docs;
pub use client::*;
pub use docs::*;

pub const ADMIN_PASSWORD: &str = "Gatekeeper-Test-Secret-9f3k";
pub const PASSWORD: &str = "correct horse battery staple";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL server tests create their databases on.
pub fn postgres_admin_url() -> String {
    std::env::var("PORTCULLIS_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

pub fn postgres_required() -> bool {
    std::env::var("CI").is_ok() || std::env::var("PORTCULLIS_TEST_REQUIRE_POSTGRES").is_ok()
}

/// Both backends, unless PostgreSQL is unreachable on a developer machine (CI, and
/// anyone setting PORTCULLIS_TEST_REQUIRE_POSTGRES, fails instead of skipping).
pub async fn backends() -> Vec<Backend> {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    let available = match AVAILABLE.get() {
        Some(a) => *a,
        None => {
            let ok = tokio::time::timeout(Duration::from_secs(5), sqlx::PgPool::connect(&postgres_admin_url()))
                .await
                .map(|r| r.is_ok())
                .unwrap_or(false);
            *AVAILABLE.get_or_init(|| ok)
        }
    };
    if available {
        vec![Backend::Sqlite, Backend::Postgres]
    } else if postgres_required() {
        panic!(
            "PostgreSQL is not reachable at {} and CI requires it",
            postgres_admin_url()
        );
    } else {
        eprintln!(
            "warning: PostgreSQL not reachable at {}; running SQLite only",
            postgres_admin_url()
        );
        vec![Backend::Sqlite]
    }
}

/// The prologue of a test that needs PostgreSQL itself (several instances on one
/// database): a server on a fresh PostgreSQL database, or `None` where [`backends`]
/// leaves PostgreSQL out, i.e. on a developer machine without it (CI fails there
/// instead).
pub async fn postgres_only() -> Option<(TestServer, TestDb)> {
    if !backends().await.contains(&Backend::Postgres) {
        eprintln!("warning: skipped, this test needs PostgreSQL");
        return None;
    }
    Some(TestServer::start(Backend::Postgres).await)
}

/// A database of its own for one test: a SQLite file in a temp dir, or a PostgreSQL
/// database named `pcx_test_<unix time>_<random>` that is dropped afterwards (and
/// swept up by later runs if a run was killed).
pub struct TestDb {
    pub url: String,
    pg_name: Option<String>,
    _dir: tempfile::TempDir,
}

impl TestDb {
    pub async fn new(backend: Backend) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        match backend {
            Backend::Sqlite => Self {
                url: format!("sqlite://{}", dir.path().join("portcullis.db").display()),
                pg_name: None,
                _dir: dir,
            },
            Backend::Postgres => Self::postgres_with("").await,
        }
    }

    /// A fresh PostgreSQL database created with `options` after `CREATE DATABASE name`
    /// (e.g. a template and a locale).
    pub async fn postgres_with(options: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let admin = sqlx::PgPool::connect(&postgres_admin_url())
            .await
            .expect("connect to PostgreSQL");
        sweep_stale_databases(&admin).await;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let name = format!(
            "pcx_test_{now}_{}",
            uuid::Uuid::new_v4().simple().to_string().get(..10).unwrap()
        );
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name} {options}")))
            .execute(&admin)
            .await
            .expect("create database");
        admin.close().await;
        let base = postgres_admin_url();
        let root = base.rsplit_once('/').map(|(r, _)| r.to_string()).unwrap_or(base);
        Self {
            url: format!("{root}/{name}"),
            pg_name: Some(name),
            _dir: dir,
        }
    }
}

/// Drops test databases left by runs that were killed more than an hour ago.
async fn sweep_stale_databases(admin: &sqlx::PgPool) {
    static SWEPT: OnceLock<()> = OnceLock::new();
    if SWEPT.set(()).is_err() {
        return;
    }
    let names: Vec<String> = sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'pcx_test_%'")
        .fetch_all(admin)
        .await
        .unwrap_or_default();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for name in names {
        let stamp: Option<u64> = name.split('_').nth(2).and_then(|s| s.parse().ok());
        if stamp.is_some_and(|t| t + 3600 < now) {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(admin)
            .await;
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(name) = self.pg_name.take() {
            // Drop runs outside any runtime we may block; use a thread of its own.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .ok()?;
                rt.block_on(async {
                    let admin = sqlx::PgPool::connect(&postgres_admin_url()).await.ok()?;
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&admin)
                    .await
                    .ok()?;
                    admin.close().await;
                    Some(())
                })
            })
            .join();
        }
    }
}

/// Settings every test server gets: cheap argon2, a fixed master key, a known admin
/// password, an ephemeral port, fast revocation sync.
pub fn base_settings(db: &TestDb) -> Vec<(String, String)> {
    [
        ("DATABASE_URL", db.url.as_str()),
        ("PORTCULLIS_BIND", "127.0.0.1:0"),
        ("PORTCULLIS_MASTER_KEY", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="),
        ("PORTCULLIS_ADMIN_PASSWORD", ADMIN_PASSWORD),
        ("PASSWORD_HASH_MEMORY_KIB", "64"),
        ("PASSWORD_HASH_ITERATIONS", "1"),
        ("PORTCULLIS_SYNC_INTERVAL_MS", "100"),
        ("DATABASE_MAX_CONNECTIONS", "5"),
        // Every test client is 127.0.0.1; the abuse tests turn the limit back on.
        ("RATE_LIMIT_PER_IP_PER_MINUTE", "0"),
        // The admin of most tests has no second factor; the MFA tests turn these on.
        ("MFA_REQUIRED_ROLES", "none"),
        ("MFA_STEP_UP_MAX_AGE_SECONDS", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// An address on 127.0.0.1 free a moment ago, for a server whose public URL must be
/// known before it starts (`PORTCULLIS_BIND` and `PORTCULLIS_PUBLIC_URL`).
pub fn free_address() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

pub struct TestServer {
    pub http: Http,
    pub service: Portcullis,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    /// A server on a database of its own.
    pub async fn start(backend: Backend) -> (Self, TestDb) {
        Self::start_with(backend, &[]).await
    }

    pub async fn start_with(backend: Backend, extra: &[(&str, &str)]) -> (Self, TestDb) {
        let db = TestDb::new(backend).await;
        let server = Self::on(&db, extra).await;
        (server, db)
    }

    /// Another instance on an existing database (for multi-instance tests).
    pub async fn on(db: &TestDb, extra: &[(&str, &str)]) -> Self {
        Self::on_with_toml(db, extra, "").await
    }

    /// A server on a database of its own, also configured by the TOML file `toml` (as
    /// `--config` reads it).
    pub async fn start_with_toml(backend: Backend, extra: &[(&str, &str)], toml: &str) -> (Self, TestDb) {
        let db = TestDb::new(backend).await;
        let server = Self::on_with_toml(&db, extra, toml).await;
        (server, db)
    }

    async fn on_with_toml(db: &TestDb, extra: &[(&str, &str)], toml: &str) -> Self {
        let mut sources = Sources::from_pairs(Vec::<(String, String)>::new());
        sources.merge_toml_str(toml).expect("test TOML");
        // The environment wins over the file, as in `Sources::from_environment`.
        for (k, v) in base_settings(db) {
            sources.set(&k, v);
        }
        for (k, v) in extra {
            sources.set(k, v.to_string());
        }
        let config = Config::from_sources(&sources).expect("test config");
        let base_path = config.server.base_path.clone();
        // 127.0.0.1:0 unless a test names a port (with a PORTCULLIS_PUBLIC_URL to match,
        // for a provider that must send a real browser back: `free_address`).
        let bind = config.server.bind;
        let service = Portcullis::open(config).await.expect("open service");
        service.bootstrap_admin().await.expect("bootstrap admin");
        let listener = tokio::net::TcpListener::bind(bind).await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(portcullis::app::serve(service.clone(), listener, async move {
            let _ = rx.await;
        }));
        Self {
            http: Http::new(format!("http://{addr}{base_path}")),
            service,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }

    /// See [`Http::call`].
    pub async fn call(&self, method: M, path: &str, credential: Credential<'_>, body: Body<'_>) -> Reply {
        self.http.call(method, path, credential, body).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Reply {
        self.call(M::POST, path, Anonymous, Json(body.clone())).await
    }

    pub async fn get_auth(&self, path: &str, token: &str) -> Reply {
        self.call(M::GET, path, Bearer(token), Empty).await
    }

    /// An unauthenticated GET.
    pub async fn get(&self, path: &str) -> Reply {
        self.call(M::GET, path, Anonymous, Empty).await
    }

    pub async fn register(&self, username: &str) -> Value {
        let res = self
            .post_json(
                "/auth/register",
                &json!({"username": username, "email": format!("{username}@example.com"), "password": PASSWORD}),
            )
            .await;
        assert_eq!(res.status, 201, "register {username}: {}", res.text);
        res.json()
    }

    /// A password login attempt, whatever its outcome.
    pub async fn login(&self, username: &str, password: &str) -> Reply {
        self.post_json("/auth/login", &json!({"username": username, "password": password}))
            .await
    }

    /// A password login that must succeed.
    pub async fn login_as(&self, username: &str, password: &str) -> Tokens {
        let res = self.login(username, password).await;
        assert_eq!(res.status, 200, "login {username}: {}", res.text);
        res.tokens()
    }

    /// Registers `username` and logs in.
    pub async fn user(&self, username: &str) -> Tokens {
        self.register(username).await;
        self.login_as(username, PASSWORD).await
    }

    pub async fn refresh(&self, refresh_token: &str) -> Reply {
        self.post_json("/auth/refresh", &json!({"refresh_token": refresh_token}))
            .await
    }
}

#[derive(Debug, Clone)]
pub struct Tokens {
    pub access: String,
    pub refresh: String,
    pub body: Value,
}

impl From<Value> for Tokens {
    fn from(body: Value) -> Self {
        Self {
            access: body["access_token"].as_str().expect("access_token").to_string(),
            refresh: body["refresh_token"].as_str().expect("refresh_token").to_string(),
            body,
        }
    }
}

impl Tokens {
    /// Whose tokens these are: the access token's `uid`, or else its `sub`
    /// (`JWT_SUBJECT=username` puts the username in `sub` and the id in `uid`).
    pub fn user_id(&self) -> uuid::Uuid {
        let claims = jwt_part(&self.access, 1);
        let id = claims.get("uid").unwrap_or(&claims["sub"]).as_str().expect("sub");
        uuid::Uuid::parse_str(id).expect("sub or uid is a user id")
    }
}

/// Decodes a JWT part (header 0, claims 1) without verifying it.
pub fn jwt_part(token: &str, index: usize) -> Value {
    use base64::Engine;
    let part = token.split('.').nth(index).expect("jwt part");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("json")
}

/// Asserts an RFC 9457 problem with `status`, returning it.
pub fn expect_problem(res: Reply, status: u16) -> Value {
    assert_eq!(res.status, status, "unexpected status: {}", res.text);
    assert_eq!(res.header("content-type"), Some("application/problem+json"));
    let body = res.json();
    assert_eq!(body["status"], status);
    assert!(
        body["type"].is_string() && body["title"].is_string() && body["detail"].is_string(),
        "{body}"
    );
    body
}

/// Asserts a 401 for a rejected bearer token, with RFC 6750's header.
pub fn expect_invalid_token(res: Reply) -> Value {
    let www = res.header("www-authenticate").map(str::to_string);
    let body = expect_problem(res, 401);
    assert_eq!(www.as_deref(), Some("Bearer error=\"invalid_token\""));
    body
}

/// The real `portcullis` binary, with no Portcullis settings inherited from the
/// environment and cheap hashing.
pub fn binary() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"));
    for (k, _) in std::env::vars() {
        if k.starts_with("PORTCULLIS_") || k.starts_with("JWT_") || k == "DATABASE_URL" || k == "SECRET_KEY" {
            c.env_remove(k);
        }
    }
    c.env("PASSWORD_HASH_MEMORY_KIB", "64")
        .env("PASSWORD_HASH_ITERATIONS", "1")
        .env("RUST_LOG", "info");
    c
}

/// The binary, configured for `db`.
pub fn binary_on(db: &TestDb) -> std::process::Command {
    let mut c = binary();
    c.env("DATABASE_URL", &db.url)
        .env("PORTCULLIS_MASTER_KEY", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=");
    c
}

/// Runs one SQL statement on the test database directly, behind the service's back.
pub async fn execute_sql(db: &TestDb, sql: &'static str) -> u64 {
    if db.url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(&db.url).await.expect("sqlite");
        let n = sqlx::query(sql).execute(&pool).await.expect("sql").rows_affected();
        pool.close().await;
        n
    } else {
        let pool = sqlx::PgPool::connect(&db.url).await.expect("postgres");
        let n = sqlx::query(sql).execute(&pool).await.expect("sql").rows_affected();
        pool.close().await;
        n
    }
}

/// Runs the binary with `stdin` as input; (exit code, stdout, stderr).
pub fn run_binary(cmd: &mut std::process::Command, stdin: &str) -> (i32, String, String) {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn portcullis");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A declared route path with its parameters filled in: a random UUID for `{id}`,
/// `x` for other names, a real asset for Swagger UI's wildcard.
pub fn concrete_path(path: &str) -> String {
    path.split('/')
        .map(|seg| match seg {
            "{*asset}" => "index.css".to_string(),
            "{id}" => uuid::Uuid::new_v4().to_string(),
            s if s.starts_with('{') => "x".to_string(),
            s => s.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

impl TestServer {
    /// The published JWKS.
    pub async fn jwks(&self) -> Value {
        self.get("/.well-known/jwks.json").await.json()
    }

    /// The key ids the JWKS publishes.
    pub async fn published_kids(&self) -> Vec<String> {
        let jwks = self.jwks().await;
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_string())
            .collect()
    }
}

/// Polls `check` every 25 ms until it holds, failing the test with `what` once `bound`
/// has passed; returns how long it took. For changes that reach other instances
/// through the revocation feed.
pub async fn within<F, Fut>(bound: std::time::Duration, what: &str, mut check: F) -> std::time::Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < bound, "{what} (after {:?})", start.elapsed());
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

/// The status `host` answers to `method target` with `bearer`, the request sent byte for
/// byte: an HTTP client would resolve dot segments and backslashes itself, and what is
/// tested is what a server does with them.
pub async fn raw_request(host: &str, method: &str, target: &str, bearer: &str) -> u16 {
    raw_request_with(host, method, target, bearer, &[]).await
}

/// [`raw_request`] with more header lines.
pub async fn raw_request_with(host: &str, method: &str, target: &str, bearer: &str, headers: &[(&str, &str)]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(host).await.unwrap();
    let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    let request = format!(
        "{method} {target} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {bearer}\r\n{extra}Connection: close\r\n\r\n"
    );
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    // A server that refuses a request may reset the connection after its answer: what
    // arrived before counts; nothing at all is 0.
    let _ = conn.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer)
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// The real binary serving on a port of its own (`cmd` configured, `serve --bind`
/// added), its log collected; killed when dropped, so no process outlives a test.
pub struct BinaryServer {
    pub http: Http,
    pub addr: std::net::SocketAddr,
    child: std::process::Child,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl BinaryServer {
    /// Starts `cmd` and waits until it logs that it is ready.
    pub async fn start(mut cmd: std::process::Command) -> Self {
        use std::io::BufRead;
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut child = cmd
            .args(["serve", "--bind", &addr.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn portcullis serve");
        let stderr = child.stderr.take().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (ready, started) = tokio::sync::oneshot::channel();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut ready = Some(ready);
                for line in std::io::BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    let is_ready = line.contains("portcullis is ready");
                    log.lock().unwrap().push_str(&(line + "\n"));
                    if is_ready && let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                }
            });
        }
        let server = Self {
            http: Http::new(format!("http://{addr}")),
            addr,
            child,
            log,
        };
        let up = tokio::time::timeout(Duration::from_secs(60), started).await;
        assert!(
            matches!(up, Ok(Ok(()))),
            "portcullis serve did not start:\n{}",
            server.log()
        );
        server
    }

    /// What it has logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for BinaryServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// libfaketime's multi-threaded library (Debian's `libfaketime`), named by
/// PORTCULLIS_TEST_FAKETIME (`.ci/run` installs it and sets it); `None`, with the
/// reason printed, on a developer machine without it; a failure under CI.
pub fn faketime_library() -> Option<String> {
    match std::env::var("PORTCULLIS_TEST_FAKETIME") {
        Ok(p) if !p.trim().is_empty() => {
            assert!(
                std::path::Path::new(&p).exists(),
                "PORTCULLIS_TEST_FAKETIME={p} does not exist"
            );
            Some(p)
        }
        _ if postgres_required() => {
            panic!("PORTCULLIS_TEST_FAKETIME is not set; .ci/run sets it after installing libfaketime")
        }
        _ => {
            eprintln!(
                "warning: skipped, PORTCULLIS_TEST_FAKETIME is not set (apt-get install faketime; \
                 export PORTCULLIS_TEST_FAKETIME=$(dpkg -L libfaketime | grep 'libfaketimeMT.so.1$'))"
            );
            None
        }
    }
}

/// The binary on `db`, configured as every test server is, its whole clock (not the
/// monotonic one, which its timers need) shifted by libfaketime (`library`) as
/// `faketime` says: `-30s` runs half a minute behind, `+0 x60` a minute a second.
pub fn binary_with_clock(db: &TestDb, library: &str, faketime: &str) -> std::process::Command {
    let mut c = binary_on(db);
    for (k, v) in base_settings(db) {
        c.env(k, v);
    }
    c.env("LD_PRELOAD", library)
        .env("FAKETIME", faketime)
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
    c
}

/// The token horizon stored in `db` (`token_horizon`), as Unix seconds.
pub async fn stored_token_horizon(db: &TestDb) -> i64 {
    let sql = "SELECT until FROM token_horizon WHERE id = 1";
    let until: chrono::DateTime<chrono::Utc> = if db.url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(&db.url).await.expect("sqlite");
        let v = sqlx::query_scalar(sql).fetch_one(&pool).await.expect("horizon");
        pool.close().await;
        v
    } else {
        let pool = sqlx::PgPool::connect(&db.url).await.expect("postgres");
        let v = sqlx::query_scalar(sql).fetch_one(&pool).await.expect("horizon");
        pool.close().await;
        v
    };
    until.timestamp()
}
