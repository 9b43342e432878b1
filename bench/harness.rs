//! The Portcullis benchmark: `cargo bench --bench harness`.
//!
//! Builds (through cargo) the release binary, starts it on 127.0.0.1 with a fresh
//! SQLite database (and, when `DATABASE_URL` names a PostgreSQL server, a fresh
//! database there too), seeds users, drives each scenario with a small HTTP/1.1 load
//! generator on keep-alive connections for a bounded time, stops the server by PID
//! and prints one table with derived ratios. It then rewrites the generated part of
//! `BENCHMARKS.md` and `bench/chart.svg`.
//!
//! `BENCH_SMOKE=1 cargo test --bench harness` runs every scenario for a fraction of a
//! second with cheap hashing, writes nothing, and fails on any error: CI's guard
//! against the harness rotting. `BENCH_SECONDS` sets the length of a scenario.

mod pages;
mod provider;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery staple";
/// Access tokens the distinct-token scenario goes round (the server's verified-token
/// cache holds 10,000).
const DISTINCT_TOKENS: usize = 15_000;

struct Settings {
    smoke: bool,
    seconds: f64,
    connections: usize,
    /// `BENCH_ONLY`: the scenario groups to run (health, me, verify, refresh,
    /// distinct, login, flood, register, audit-off, startup, audit-append, pages,
    /// provider);
    /// None runs them all.
    only: Option<Vec<String>>,
}

impl Settings {
    fn wants(&self, group: &str) -> bool {
        self.only.as_ref().is_none_or(|o| o.iter().any(|g| g == group))
    }
}

/// One scenario's outcome.
#[derive(Clone)]
struct Stats {
    name: String,
    requests: usize,
    errors: usize,
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// Server CPU time (all threads, user + system) per request in the window; `None`
    /// where two loads share the window. Steadier than req/s on a noisy machine: it
    /// does not depend on how much CPU the load generator and neighbours took.
    cpu_us: Option<f64>,
}

impl Stats {
    fn from(name: &str, mut latencies_us: Vec<u32>, errors: usize, seconds: f64) -> Self {
        latencies_us.sort_unstable();
        let pick = |q: f64| {
            if latencies_us.is_empty() {
                0.0
            } else {
                latencies_us[((latencies_us.len() as f64 - 1.0) * q) as usize] as f64 / 1000.0
            }
        };
        Self {
            name: name.to_string(),
            requests: latencies_us.len(),
            errors,
            seconds,
            p50_ms: pick(0.50),
            p99_ms: pick(0.99),
            max_ms: latencies_us.last().map(|v| *v as f64 / 1000.0).unwrap_or(0.0),
            cpu_us: None,
        }
    }

    /// Attributes `cpu` (server CPU spent since the window opened) to these requests.
    fn with_cpu(self, cpu: ServerCpu) -> Self {
        self.with_cpu_seconds(cpu.elapsed())
    }

    /// Attributes `spent` seconds of server CPU to these requests.
    fn with_cpu_seconds(mut self, spent: f64) -> Self {
        self.cpu_us = (self.requests > 0 && spent > 0.0).then(|| spent * 1e6 / self.requests as f64);
        self
    }

    fn rps(&self) -> f64 {
        self.requests as f64 / self.seconds
    }
}

/// The running server's PID, for reading its CPU time; 0 when none runs.
static SERVER_PID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Server CPU seconds (user + system, every thread) at a window's start.
#[derive(Clone, Copy)]
struct ServerCpu(f64);

impl ServerCpu {
    fn now() -> Self {
        Self(server_cpu_seconds())
    }

    fn elapsed(self) -> f64 {
        server_cpu_seconds() - self.0
    }
}

/// utime + stime of the server process from /proc, in seconds (10 ms ticks).
fn server_cpu_seconds() -> f64 {
    let pid = SERVER_PID.load(std::sync::atomic::Ordering::SeqCst);
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // Fields after the parenthesised name; utime and stime are the 14th and 15th.
            let rest = &stat[stat.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / 100.0)
        })
        .unwrap_or(0.0)
}

/// A running server process.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(db_url: &str, dir: &Path, smoke: bool, extra: &[(&str, &str)]) -> (Self, Duration) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcullis"));
        for (k, _) in std::env::vars() {
            if k.starts_with("PORTCULLIS_")
                || k.starts_with("JWT_")
                || k.starts_with("PASSWORD_")
                || k == "DATABASE_URL"
            {
                cmd.env_remove(k);
            }
        }
        cmd.current_dir(dir)
            .env("DATABASE_URL", db_url)
            .env("PORTCULLIS_BIND", addr.to_string())
            .env("PORTCULLIS_MASTER_KEY", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
            .env("RUST_LOG", "warn")
            // One client address drives the whole load: the per-IP limit would
            // measure itself. Lockout stays on (every benchmark login is correct).
            .env("RATE_LIMIT_PER_IP_PER_MINUTE", "0")
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("server.log")).unwrap());
        if smoke {
            let p = hash_params(true);
            cmd.env("PASSWORD_HASH_MEMORY_KIB", p.memory_kib.to_string())
                .env("PASSWORD_HASH_ITERATIONS", p.iterations.to_string());
        }
        cmd.envs(extra.iter().copied());
        let started = Instant::now();
        let child = cmd.spawn().expect("start portcullis");
        SERVER_PID.store(child.id(), std::sync::atomic::Ordering::SeqCst);
        let server = Self { child, addr };
        // Poll /health until it answers (bounded).
        loop {
            if let Ok(mut s) = std::net::TcpStream::connect(addr) {
                use std::io::{Read, Write};
                let _ = s.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
                let mut buf = [0u8; 12];
                if s.read_exact(&mut buf).is_ok() && &buf[9..12] == b"200" {
                    break;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "server did not become ready"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        let ready = started.elapsed();
        (server, ready)
    }

    fn status_kib(&self, field: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with(field))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or(0)
    }

    /// Stops the server by PID (SIGTERM) and waits for it.
    fn stop(self) {
        // Drop does it.
    }
}

/// A panicking scenario must not leave its server running.
impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

type Body = Full<Bytes>;
type Sender = hyper::client::conn::http1::SendRequest<Body>;

async fn connect(addr: SocketAddr) -> Sender {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).ok();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    sender
}

fn request(method: &str, path: &str, headers: &[(&str, &str)], body: Option<Value>) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(path).header("host", "127.0.0.1");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    match body {
        Some(v) => b
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(v.to_string())))
            .unwrap(),
        None => b.body(Full::new(Bytes::new())).unwrap(),
    }
}

/// Sends one request; (status, body, latency in µs).
async fn send(sender: &mut Sender, req: Request<Body>) -> (u16, Bytes, u32) {
    let (status, _, body, us) = exchange(sender, req).await;
    (status, body, us)
}

/// Sends one request; (status, headers, body, latency in µs); status 0 when the
/// connection failed.
async fn exchange(sender: &mut Sender, req: Request<Body>) -> (u16, hyper::HeaderMap, Bytes, u32) {
    let t = Instant::now();
    if sender.ready().await.is_err() {
        return (0, hyper::HeaderMap::new(), Bytes::new(), 0);
    }
    match sender.send_request(req).await {
        Ok(res) => {
            let (parts, body) = res.into_parts();
            let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            (
                parts.status.as_u16(),
                parts.headers,
                body,
                t.elapsed().as_micros() as u32,
            )
        }
        Err(_) => (0, hyper::HeaderMap::new(), Bytes::new(), t.elapsed().as_micros() as u32),
    }
}

/// Makes request `i` of connection `c`.
type MakeRequest = Arc<dyn Fn(usize, u64) -> Request<Body> + Send + Sync>;

/// Runs `connections` keep-alive connections for `seconds`, each sending requests
/// made by `make(connection, i)`; a status other than `ok` is an error.
async fn load<F>(name: String, addr: SocketAddr, connections: usize, seconds: f64, ok: u16, make: F) -> Stats
where
    F: Fn(usize, u64) -> Request<Body> + Send + Sync + 'static,
{
    let cpu = ServerCpu::now();
    let (latencies, errors, elapsed) = drive(addr, connections, seconds, ok, Arc::new(make)).await;
    Stats::from(&name, latencies, errors, elapsed).with_cpu(cpu)
}

/// Runs each of `scenarios` (name, expected status, request) for `seconds` in all, in
/// `rounds` turns (a, b, c, a, b, c, ...), so that the ratios between them, which are
/// the figures judged, do not depend on which one ran while the machine's neighbours
/// were busier. `before_turn` runs before each turn, the server idle: where a
/// scenario is divided by a single-core cost, that cost is measured there, beside it
/// (a bound measured minutes away moved a ratio by a tenth).
async fn interleaved(
    addr: SocketAddr,
    connections: usize,
    seconds: f64,
    rounds: u32,
    scenarios: Vec<(String, u16, MakeRequest)>,
    mut before_turn: impl FnMut(),
) -> Vec<Stats> {
    let mut runs: Vec<(Vec<u32>, usize, f64, f64)> = vec![(Vec::new(), 0, 0.0, 0.0); scenarios.len()];
    for _ in 0..rounds {
        for ((_, ok, make), run) in scenarios.iter().zip(runs.iter_mut()) {
            before_turn();
            let cpu = ServerCpu::now();
            let (latencies, errors, elapsed) =
                drive(addr, connections, seconds / f64::from(rounds), *ok, make.clone()).await;
            run.0.extend(latencies);
            run.1 += errors;
            run.2 += elapsed;
            run.3 += cpu.elapsed();
        }
    }
    scenarios
        .iter()
        .zip(runs)
        .map(|((name, _, _), (latencies, errors, elapsed, cpu_s))| {
            Stats::from(name, latencies, errors, elapsed).with_cpu_seconds(cpu_s)
        })
        .collect()
}

/// One load window: the latencies of the requests answered with `ok`, the number of
/// errors, and the window's length in seconds.
async fn drive(
    addr: SocketAddr,
    connections: usize,
    seconds: f64,
    ok: u16,
    make: MakeRequest,
) -> (Vec<u32>, usize, f64) {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..connections {
        let make = make.clone();
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(addr).await;
            let (mut lat, mut errors, mut i) = (Vec::with_capacity(4096), 0usize, 0u64);
            while Instant::now() < deadline {
                let (status, _, us) = send(&mut sender, make(c, i)).await;
                i += 1;
                if status == ok {
                    lat.push(us);
                } else {
                    errors += 1;
                    if status == 0 {
                        sender = connect(addr).await;
                    }
                }
            }
            (lat, errors)
        }));
    }
    gather(tasks, started).await
}

/// The latencies and errors of a window's connections, and the window's length.
async fn gather(tasks: Vec<tokio::task::JoinHandle<(Vec<u32>, usize)>>, started: Instant) -> (Vec<u32>, usize, f64) {
    let (mut all, mut errors) = (Vec::new(), 0);
    for t in tasks {
        let (lat, e) = t.await.unwrap();
        all.extend(lat);
        errors += e;
    }
    (all, errors, started.elapsed().as_secs_f64())
}

async fn json_call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, Value) {
    let mut sender = connect(addr).await;
    let (status, bytes, _) = send(&mut sender, request(method, path, headers, body)).await;
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn login(addr: SocketAddr, user: &str, password: &str) -> Value {
    let (status, body) = json_call(
        addr,
        "POST",
        "/auth/login",
        &[],
        Some(json!({"username": user, "password": password})),
    )
    .await;
    assert_eq!(status, 200, "login {user}: {body}");
    body
}

/// Refresh rotation: each connection follows its own chain, feeding every new
/// refresh token back in. Returns the stats, every access token issued (for the
/// many-distinct-tokens scenario), and whether any refresh token was presented twice.
async fn refresh_chains(
    name: &str,
    addr: SocketAddr,
    users: &[String],
    connections: usize,
    seconds: f64,
) -> (Stats, Vec<String>, bool) {
    let presented: Arc<Mutex<HashSet<String>>> = Arc::default();
    let duplicate = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut starts = Vec::new();
    for c in 0..connections {
        starts.push(
            login(addr, &users[c % users.len()], PASSWORD).await["refresh_token"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    // The window starts after the logins: 64 argon2id logins take about as long as
    // a whole scenario, and would otherwise leave no time to refresh at all.
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let cpu = ServerCpu::now();
    let mut tasks = Vec::new();
    for mut token in starts {
        let (presented, duplicate) = (presented.clone(), duplicate.clone());
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(addr).await;
            let (mut lat, mut errors, mut access) = (Vec::new(), 0usize, Vec::new());
            while Instant::now() < deadline {
                if !presented.lock().unwrap().insert(token.clone()) {
                    duplicate.store(true, std::sync::atomic::Ordering::SeqCst);
                }
                let req = request("POST", "/auth/refresh", &[], Some(json!({"refresh_token": token})));
                let (status, body, us) = send(&mut sender, req).await;
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                match (status, v["refresh_token"].as_str()) {
                    (200, Some(next)) => {
                        lat.push(us);
                        token = next.to_string();
                        if let Some(a) = v["access_token"].as_str() {
                            access.push(a.to_string());
                        }
                    }
                    _ => {
                        // A lost rotation: the chain is dead.
                        errors += 1;
                        break;
                    }
                }
            }
            (lat, errors, access)
        }));
    }
    let (mut all, mut errors, mut access) = (Vec::new(), 0, Vec::new());
    for t in tasks {
        let (lat, e, a) = t.await.unwrap();
        all.extend(lat);
        errors += e;
        access.extend(a);
    }
    let stats = Stats::from(name, all, errors, started.elapsed().as_secs_f64()).with_cpu(cpu);
    (stats, access, duplicate.load(std::sync::atomic::Ordering::SeqCst))
}

async fn seed_users(addr: SocketAddr, prefix: &str, n: usize) -> Vec<String> {
    let names: Vec<String> = (0..n).map(|i| format!("{prefix}{i:04}")).collect();
    let mut tasks = Vec::new();
    for name in names.clone() {
        tasks.push(tokio::spawn(async move {
            let (status, body) = json_call(
                addr,
                "POST",
                "/auth/register",
                &[],
                Some(json!({"username": name, "email": format!("{name}@bench.example.com"), "password": PASSWORD})),
            )
            .await;
            assert_eq!(status, 201, "seed {name}: {body}");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    names
}

/// The server's hashing parameters: its defaults, or cheap ones for the smoke run.
fn hash_params(smoke: bool) -> portcullis::config::HashParams {
    if smoke {
        portcullis::config::HashParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        }
    } else {
        portcullis::config::HashParams::default()
    }
}

/// CPU time of the harness process, user and system.
fn process_cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// CPU a request record costs to append through the store to a fresh SQLite database,
/// in batches of 200 as the server's writer makes them under load, with `users` users'
/// records interleaved, and indexed by user as the writer does: median of three runs
/// of 50,000 records.
async fn audit_append_cpu_us(dir: &Path, users: usize, smoke: bool) -> f64 {
    use portcullis::config::DatabaseTarget;
    use portcullis::store::{AuditByUserRuns, AuditFields, AuditKey, Store};
    let batches = if smoke { 5 } else { 250 };
    let owners: Vec<String> = (0..users).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    let mut runs = Vec::new();
    for run in 0..3 {
        let path = dir.join(format!("append-{users}-{run}.db"));
        // Keyed as the service keys them: one HMAC a record is part of the cost.
        let store = Store::connect(&DatabaseTarget::Sqlite(path), 1)
            .await
            .unwrap()
            .with_audit_key(AuditKey::from_bytes(&[7; 32]));
        store.migrate().await.unwrap();
        let start = process_cpu_seconds();
        let mut runs_by_user = AuditByUserRuns::default();
        for b in 0..batches {
            let now = chrono::Utc::now();
            let batch = (0..200)
                .map(|i| {
                    AuditFields {
                        chain: "bench".into(),
                        kind: "request".into(),
                        action: "GET /auth/me".into(),
                        user_id: Some(owners[(b * 200 + i) % users].clone()),
                        username: Some("alice".into()),
                        resource_type: Some("me".into()),
                        ip: Some("127.0.0.1".into()),
                        user_agent: Some("portcullis-bench".into()),
                        method: Some("GET".into()),
                        path: Some("/auth/me".into()),
                        status: Some(200),
                        duration_ms: Some(0),
                        request_id: Some(uuid::Uuid::now_v7().to_string()),
                        metadata: "{}".into(),
                        ..AuditFields::default()
                    }
                    .stamped(now)
                })
                .collect();
            store.append_audit("bench", batch).await.unwrap();
            runs_by_user.appended(&store, 200).await.unwrap();
        }
        runs.push((process_cpu_seconds() - start) / (batches * 200) as f64 * 1e6);
        store.close().await;
    }
    median(runs)
}

/// Runs `work` while the server settles, then waits out the rest of the 4 s a server
/// needs to reach its idle memory (none in a smoke run).
fn idle_at_least<T>(smoke: bool, work: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = work();
    let settle = Duration::from_secs(if smoke { 0 } else { 4 });
    std::thread::sleep(settle.saturating_sub(start.elapsed()));
    out
}

/// Median time of `n` argon2id hashes on one core, with a reused work area as the
/// server does.
fn argon2_hash_seconds(smoke: bool, n: usize) -> f64 {
    let params = hash_params(smoke);
    let mut memory = Vec::new();
    median(
        (0..n)
            .map(|_| {
                let t = Instant::now();
                portcullis::crypto::password::hash_with(PASSWORD, params, &mut memory).unwrap();
                t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Hashes per second with every core hashing at once (memory bandwidth is shared,
/// so this is below cores ÷ single-core time).
fn argon2_parallel_rate(smoke: bool) -> f64 {
    let params = hash_params(smoke);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let window = Duration::from_secs_f64(if smoke { 0.2 } else { 2.0 });
    let t = Instant::now();
    let done: usize = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..cores)
            .map(|_| {
                scope.spawn(move || {
                    let mut memory = Vec::new();
                    let mut n = 0;
                    while t.elapsed() < window {
                        portcullis::crypto::password::hash_with(PASSWORD, params, &mut memory).unwrap();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    done as f64 / t.elapsed().as_secs_f64()
}

/// Median time of one ES256 signature verification, as the token check does it.
fn es256_verify_seconds() -> f64 {
    use portcullis::config::SigningAlgorithm;
    use portcullis::crypto::jwt::{AccessClaims, KeyRing, SigningKey, TokenRules, generate, install_provider};
    install_provider();
    let rules = TokenRules {
        issuer: "i".into(),
        audience: Some("a".into()),
        leeway_secs: 0,
    };
    let g = generate(SigningAlgorithm::Es256).unwrap();
    let key = SigningKey::asymmetric(
        g.kid,
        SigningAlgorithm::Es256,
        &g.private_der,
        g.public_jwk,
        None,
        &rules,
    )
    .unwrap();
    let ring = KeyRing::new(vec![key]).unwrap();
    let now = chrono::Utc::now().timestamp();
    let claims = AccessClaims {
        iss: "i".into(),
        sub: uuid::Uuid::new_v4().to_string(),
        aud: Some("a".into()),
        uid: None,
        exp: now + 600,
        iat: now,
        nbf: now,
        jti: "j".into(),
        sid: uuid::Uuid::new_v4().to_string(),
        preferred_username: "u".into(),
        roles: vec![],
        permissions: vec!["projects:read".into()],
        amr: vec!["pwd".into()],
        auth_time: Some(now),
        superuser: false,
        client_id: None,
        scope: None,
        first_party: false,
    };
    let token = ring.sign(&claims).unwrap();
    let n = 2000;
    let t = Instant::now();
    for _ in 0..n {
        ring.verify(&token).unwrap();
    }
    t.elapsed().as_secs_f64() / n as f64
}

struct Run {
    rows: Vec<Stats>,
    notes: Vec<String>,
    duplicate_rotation: bool,
    /// Median single-core argon2id hash time, measured between the login turns.
    hash_s: Option<f64>,
    /// Median ES256 verification time, measured between the distinct-token turns.
    verify_s: Option<f64>,
    /// Hashes a second with every core hashing, measured right after the login turns.
    parallel_rate: Option<f64>,
}

/// Every scenario against one server.
async fn scenarios(addr: SocketAddr, label: &str, s: &Settings, full: bool) -> Run {
    let secs = s.seconds;
    let conns = s.connections;
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    let users = seed_users(addr, &format!("u{label}"), conns.min(64)).await;
    let tokens = login(addr, &users[0], PASSWORD).await;
    let access = tokens["access_token"].as_str().unwrap().to_string();
    let bearer = format!("Bearer {access}");
    let tag = |n: &str| format!("{n} [{label}]");

    // The framework's ceiling and the token checks, interleaved (see `interleaved`).
    let mut checks: Vec<(String, u16, MakeRequest)> = Vec::new();
    if s.wants("health") {
        checks.push((
            tag("GET /health"),
            200,
            Arc::new(|_, _| request("GET", "/health", &[], None)),
        ));
    }
    if s.wants("me") {
        let b = bearer.clone();
        checks.push((
            tag("GET /auth/me (JWT)"),
            200,
            Arc::new(move |_, _| request("GET", "/auth/me", &[("authorization", &b)], None)),
        ));
    }
    if s.wants("pages") {
        // A first visit: no cookie, so each answer sets a new sign-in form token.
        checks.push((
            tag("GET /login"),
            200,
            Arc::new(|_, _| request("GET", "/login", &[], None)),
        ));
    }
    if full && s.wants("verify") {
        let b = bearer.clone();
        checks.push((
            tag("GET /auth/verify (JWT)"),
            200,
            Arc::new(move |_, _| request("GET", "/auth/verify", &[("authorization", &b)], None)),
        ));
        let (status, key) = json_call(
            addr,
            "POST",
            "/auth/api-keys",
            &[("authorization", &bearer)],
            Some(json!({"name": "bench"})),
        )
        .await;
        assert_eq!(status, 201, "{key}");
        let key = key["key"].as_str().unwrap().to_string();
        checks.push((
            tag("GET /auth/verify (API key)"),
            200,
            Arc::new(move |_, _| request("GET", "/auth/verify", &[("x-api-key", &key)], None)),
        ));
    }
    rows.extend(interleaved(addr, conns, secs, 3, checks, || {}).await);
    let (mut issued, mut duplicate) = (Vec::new(), false);
    let (mut hash_s, mut verify_s, mut parallel_rate) = (None, None, None);
    if s.wants("refresh") || (full && s.wants("distinct")) {
        let (refresh, access, twice) =
            refresh_chains(&tag("POST /auth/refresh (rotation)"), addr, &users, conns, secs).await;
        rows.push(refresh);
        (issued, duplicate) = (access, twice);
    }
    if full && s.wants("distinct") {
        // A fixed number of tokens, half again what the verified-token cache holds, so
        // that the share of misses depends on the cache and not on how many tokens the
        // refresh scenario happened to issue (8,852-16,512 in runs on one machine, 20-68 %
        // misses). Chains refreshed outside any measured window make up a shortfall.
        let wanted = if s.smoke { issued.len() } else { DISTINCT_TOKENS };
        while issued.len() < wanted {
            let (_, more, twice) = refresh_chains("minting tokens", addr, &users, conns, 1.0).await;
            assert!(!more.is_empty(), "refreshing issued no access token");
            issued.extend(more);
            duplicate |= twice;
        }
        issued.truncate(wanted);
        let distinct: Arc<Vec<String>> = Arc::new(issued.iter().map(|t| format!("Bearer {t}")).collect());
        assert!(!distinct.is_empty(), "the refresh scenario issued no access token");
        notes.push(format!(
            "{} distinct access tokens in rotation for the distinct-token scenario (verified-token cache: 10,000)",
            distinct.len()
        ));
        // One position shared by every connection: consecutive requests take
        // consecutive tokens, so a token comes back only after all the others, by which
        // time the cache has long evicted it. (Each connection walking its own stride
        // through the list let connections meet on tokens another had just verified:
        // 10-75 % misses depending on the list's length.)
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let d = distinct.clone();
        let misses = || metric_total(addr, "portcullis_token_cache_lookups_total{result=\"miss\"}");
        let lookups = || metric_total(addr, "portcullis_token_cache_lookups_total");
        let (misses_before, lookups_before) = (misses(), lookups());
        let mut verifications = Vec::new();
        let make: MakeRequest = Arc::new(move |_, _| {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % d.len();
            request("GET", "/auth/verify", &[("authorization", &d[i])], None)
        });
        let distinct = vec![(tag("GET /auth/verify (distinct JWTs)"), 200, make)];
        rows.extend(
            interleaved(addr, conns, secs, 3, distinct, || {
                verifications.push(es256_verify_seconds())
            })
            .await,
        );
        verify_s = Some(median(verifications));
        notes.push(format!(
            "verified-token cache misses during the distinct-token scenario: {:.1} % of lookups",
            100.0 * (misses() - misses_before) / (lookups() - lookups_before).max(1.0)
        ));
    }
    let u = Arc::new(users.clone());
    let lu = u.clone();
    if s.wants("login") {
        let mut hashes = Vec::new();
        let make: MakeRequest = Arc::new(move |c, _| {
            request(
                "POST",
                "/auth/login",
                &[],
                Some(json!({"username": lu[c % lu.len()], "password": PASSWORD})),
            )
        });
        let login = vec![(tag("POST /auth/login"), 200, make)];
        rows.extend(
            interleaved(addr, conns, secs, 3, login, || {
                hashes.push(argon2_hash_seconds(s.smoke, 3))
            })
            .await,
        );
        hash_s = Some(median(hashes));
        parallel_rate = full.then(|| argon2_parallel_rate(s.smoke));
    }
    if full && s.wants("flood") {
        // Token-check latency with and without a login flood (8 checking connections).
        let b = bearer.clone();
        rows.push(
            load(tag("GET /auth/me, 8 conns, quiet"), addr, 8, secs, 200, move |_, _| {
                request("GET", "/auth/me", &[("authorization", &b)], None)
            })
            .await,
        );
        let lu = u.clone();
        let flood = tokio::spawn(load(
            tag("POST /auth/login (flood)"),
            addr,
            conns.saturating_sub(8).max(1),
            secs,
            200,
            move |c, _| {
                request(
                    "POST",
                    "/auth/login",
                    &[],
                    Some(json!({"username": lu[c % lu.len()], "password": PASSWORD})),
                )
            },
        ));
        let b = bearer.clone();
        rows.push(
            load(
                tag("GET /auth/me, 8 conns, during login flood"),
                addr,
                8,
                secs,
                200,
                move |_, _| request("GET", "/auth/me", &[("authorization", &b)], None),
            )
            .await,
        );
        rows.push(flood.await.unwrap());
        // The two loads shared one window: neither owns the CPU it used.
        let n = rows.len();
        for r in &mut rows[n - 2..] {
            r.cpu_us = None;
        }
    }
    if full && s.wants("register") {
        let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let run = uuid::Uuid::new_v4().simple().to_string()[..6].to_string();
        rows.push(
            load(tag("POST /auth/register"), addr, conns, secs, 201, move |_, _| {
                let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let name = format!("r{run}{n}");
                request(
                    "POST",
                    "/auth/register",
                    &[],
                    Some(json!({"username": name, "email": format!("{name}@bench.example.com"), "password": PASSWORD})),
                )
            })
            .await,
        );
    }
    Run {
        rows,
        notes,
        duplicate_rotation: duplicate,
        hash_s,
        verify_s,
        parallel_rate,
    }
}

fn find<'a>(rows: &'a [Stats], prefix: &str) -> Option<&'a Stats> {
    rows.iter().find(|r| r.name.starts_with(prefix))
}

fn chart(rows: &[Stats]) -> String {
    let max_rps = rows.iter().map(Stats::rps).fold(1.0, f64::max);
    let max_p99 = rows.iter().map(|r| r.p99_ms).fold(0.1, f64::max);
    let (label_w, bar_w, row_h) = (330.0, 300.0, 22.0);
    let height = 60.0 + row_h * rows.len() as f64;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{label_w}\" y=\"20\" font-weight=\"bold\">throughput (req/s)</text>\n<text x=\"{x2}\" y=\"20\" font-weight=\"bold\">p99 latency (ms)</text>\n",
        w = label_w + 2.0 * bar_w + 120.0,
        x2 = label_w + bar_w + 60.0
    );
    for (i, r) in rows.iter().enumerate() {
        let y = 40.0 + row_h * i as f64;
        let w1 = bar_w * r.rps() / max_rps;
        let w2 = bar_w * r.p99_ms / max_p99;
        svg += &format!(
            "<text x=\"{tx}\" y=\"{ty}\" text-anchor=\"end\">{name}</text>\n<rect x=\"{label_w}\" y=\"{y}\" width=\"{w1:.1}\" height=\"16\" fill=\"#4a7bd0\"/>\n<text x=\"{l1:.1}\" y=\"{ty}\">{rps:.0}</text>\n<rect x=\"{x2}\" y=\"{y}\" width=\"{w2:.1}\" height=\"16\" fill=\"#d0804a\"/>\n<text x=\"{l2:.1}\" y=\"{ty}\">{p99:.2}</text>\n",
            tx = label_w - 8.0,
            ty = y + 12.0,
            name = r.name.replace('&', "&amp;").replace('<', "&lt;"),
            l1 = label_w + w1 + 4.0,
            rps = r.rps(),
            x2 = label_w + bar_w + 60.0,
            l2 = label_w + bar_w + 60.0 + w2 + 4.0,
            p99 = r.p99_ms,
        );
    }
    svg + "</svg>\n"
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map(|kib| format!("{:.0} GiB", kib as f64 / 1024.0 / 1024.0))
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    format!("{cores} cores ({cpu}), {mem} RAM; load generator on the same machine")
}

/// A counter's value from `/metrics` (0 when it was never incremented).
fn metric_total(addr: SocketAddr, name: &str) -> f64 {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return 0.0;
    };
    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum::<f64>()
        .max(0.0)
}

fn main() {
    let smoke = std::env::var("BENCH_SMOKE").is_ok_and(|v| v != "0");
    let settings = Settings {
        smoke,
        seconds: std::env::var("BENCH_SECONDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(if smoke { 0.15 } else { 3.0 }),
        connections: if smoke { 8 } else { 64 },
        only: std::env::var("BENCH_ONLY")
            .ok()
            .filter(|v| !v.trim().is_empty())
            .map(|v| v.split(',').map(|g| g.trim().to_string()).collect()),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}", dir.path().join("bench.db").display());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2) as f64;

    // What a request record costs the SQLite store as more users are active, without
    // the server and load generator around it: measured in this process while the
    // server idles before its RSS is read, so the run is no longer for it.
    let wants_audit_append = settings.wants("audit-append");
    let audit_append_for = |users: &[usize]| -> Vec<(usize, f64)> {
        if !wants_audit_append {
            return Vec::new();
        }
        let users = users
            .iter()
            .map(|&n| (n, rt.block_on(audit_append_cpu_us(dir.path(), n, smoke))));
        users.collect()
    };

    let (server, first_start) = Server::start(&sqlite, dir.path(), smoke, &[]);
    // Idle once settled: its hashing threads keep their work areas for 3 s after the
    // admin bootstrap.
    let mut audit_append = idle_at_least(smoke, || audit_append_for(&[1, 64]));
    let idle_kib = server.status_kib("VmRSS:");
    let addr = server.addr;
    let mut run = rt.block_on(scenarios(addr, "sqlite", &settings, true));
    // The single-core costs the ratios divide by, measured beside their scenarios;
    // on their own when `BENCH_ONLY` left those out.
    let hash_s = run.hash_s.unwrap_or_else(|| argon2_hash_seconds(smoke, 9));
    let verify_s = run.verify_s.unwrap_or_else(es256_verify_seconds);
    let parallel_rate = run.parallel_rate.unwrap_or_else(|| argon2_parallel_rate(smoke));
    let peak_kib = server.status_kib("VmHWM:");
    run.notes.push(format!(
        "audit records of requests dropped (buffer full) during the SQLite run: {}",
        metric_total(addr, "portcullis_audit_requests_dropped_total")
    ));
    server.stop();
    // Start-up to ready on the existing database.
    let mut starts: Vec<Duration> = (0..if settings.wants("startup") { 3 } else { 1 })
        .map(|_| {
            let (s, t) = Server::start(&sqlite, dir.path(), smoke, &[]);
            s.stop();
            t
        })
        .collect();
    starts.sort();
    let startup = starts[starts.len() / 2];
    // Idle again, on the existing database: the steady state of a restarted instance,
    // without the first start's migrations, key generation and admin bootstrap.
    let restart_idle_kib = {
        let (s, _) = Server::start(&sqlite, dir.path(), smoke, &[]);
        audit_append.extend(idle_at_least(smoke, || audit_append_for(&[1000])));
        s.status_kib("VmRSS:")
    };

    let mut rows = run.rows;
    // The cost of auditing every authenticated request: the same check, audit off.
    if settings.wants("audit-off") {
        let (quiet_server, _) = Server::start(&sqlite, dir.path(), smoke, &[("ENABLE_AUDIT_LOGGING", "false")]);
        let audit_off = rt.block_on(async {
            let users = seed_users(quiet_server.addr, "noaudit", 1).await;
            let tokens = login(quiet_server.addr, &users[0], PASSWORD).await;
            let bearer = format!("Bearer {}", tokens["access_token"].as_str().unwrap());
            load(
                "GET /auth/me (JWT), audit off [sqlite]".into(),
                quiet_server.addr,
                settings.connections,
                settings.seconds,
                200,
                move |_, _| request("GET", "/auth/me", &[("authorization", &bearer)], None),
            )
            .await
        });
        quiet_server.stop();
        rows.push(audit_off);
    }
    // The pages: a first visit's bytes, and sign-ins through the forms on a server of
    // their own with cheap hashing (see bench/pages.rs).
    let mut first_visit = None;
    if settings.wants("pages") {
        let db = format!("sqlite://{}", dir.path().join("pages.db").display());
        let cheap = hash_params(true);
        let (m, t) = (cheap.memory_kib.to_string(), cheap.iterations.to_string());
        let hashing = [
            ("PASSWORD_HASH_MEMORY_KIB", m.as_str()),
            ("PASSWORD_HASH_ITERATIONS", t.as_str()),
        ];
        let (pages_server, _) = Server::start(&db, dir.path(), smoke, &hashing);
        let (visit, sign_ins) = rt.block_on(async {
            let visit = pages::first_visit(pages_server.addr).await;
            let rows = pages::sign_in_scenarios(pages_server.addr, settings.connections, settings.seconds).await;
            (visit, rows)
        });
        pages_server.stop();
        rows.extend(sign_ins);
        first_visit = Some(visit);
    }
    // The OpenID provider's scenarios, against panva's oidc-provider in the same run
    // (bench/provider.rs); its CPU is read from its own process meanwhile.
    let mut provider_peak_kib = None;
    let mut portcullis_provider_peak_kib = None;
    if settings.wants("provider") {
        match provider::oidc_provider_dir() {
            Ok(dir) => {
                let node = provider::NodeProvider::start(&dir);
                let portcullis_pid = SERVER_PID.swap(node.pid(), std::sync::atomic::Ordering::SeqCst);
                rows.extend(rt.block_on(async {
                    let target = node.target().await;
                    provider::scenarios(target, settings.connections, settings.seconds).await
                }));
                SERVER_PID.store(portcullis_pid, std::sync::atomic::Ordering::SeqCst);
                provider_peak_kib = Some(node.status_kib("VmHWM:"));
            }
            Err(why) if std::env::var_os("CI").is_some() => panic!("{why}; CI requires it"),
            Err(why) => run.notes.push(format!("provider scenarios skipped: {why}")),
        }
        // The same scenarios against Portcullis, on a SQLite server of its own.
        let db = format!("sqlite://{}", dir.path().join("provider.db").display());
        let cheap = hash_params(true);
        let (m, t) = (cheap.memory_kib.to_string(), cheap.iterations.to_string());
        let mut env = provider::PORTCULLIS_ENV.to_vec();
        env.extend([
            ("PASSWORD_HASH_MEMORY_KIB", m.as_str()),
            ("PASSWORD_HASH_ITERATIONS", t.as_str()),
        ]);
        let before = SERVER_PID.load(std::sync::atomic::Ordering::SeqCst);
        let (server, _) = Server::start(&db, dir.path(), smoke, &env);
        rows.extend(rt.block_on(async {
            let target = provider::portcullis_target(server.addr).await;
            provider::scenarios(target, settings.connections, settings.seconds).await
        }));
        portcullis_provider_peak_kib = Some(server.status_kib("VmHWM:"));
        server.stop();
        SERVER_PID.store(before, std::sync::atomic::Ordering::SeqCst);
    }
    let mut notes = run.notes;
    let mut duplicate = run.duplicate_rotation;
    if let Ok(url) = std::env::var("DATABASE_URL")
        && (url.starts_with("postgres://") || url.starts_with("postgresql://"))
        && !smoke
    {
        let name = format!("pcx_bench_{}", uuid::Uuid::new_v4().simple());
        let pg = rt.block_on(async {
            let admin = sqlx::PgPool::connect(&url).await.expect("connect to DATABASE_URL");
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&admin)
                .await
                .unwrap();
            admin
        });
        let root = url.rsplit_once('/').map(|(r, _)| r.to_string()).unwrap_or(url.clone());
        let (server, _) = Server::start(&format!("{root}/{name}"), dir.path(), smoke, &[]);
        let r = rt.block_on(scenarios(server.addr, "postgres", &settings, false));
        server.stop();
        rows.extend(r.rows);
        notes.extend(r.notes);
        duplicate |= r.duplicate_rotation;
        rt.block_on(async {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&pg)
            .await;
        });
    }

    let mut out = String::new();
    out += "| scenario | req/s | p50 ms | p99 ms | max ms | errors | server CPU µs/req |\n|---|---:|---:|---:|---:|---:|---:|\n";
    for r in &rows {
        out += &format!(
            "| {} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {} |\n",
            r.name,
            r.rps(),
            r.p50_ms,
            r.p99_ms,
            r.max_ms,
            r.errors,
            r.cpu_us.map_or("–".to_string(), |c| format!("{c:.0}"))
        );
    }
    let health = find(&rows, "GET /health [sqlite]").map(Stats::rps);
    let me = find(&rows, "GET /auth/me (JWT) [sqlite]");
    let verify = find(&rows, "GET /auth/verify (JWT) [sqlite]");
    let key = find(&rows, "GET /auth/verify (API key) [sqlite]");
    let distinct = find(&rows, "GET /auth/verify (distinct JWTs) [sqlite]");
    let login = find(&rows, "POST /auth/login [sqlite]");
    let quiet = find(&rows, "GET /auth/me, 8 conns, quiet [sqlite]");
    let flood = find(&rows, "GET /auth/me, 8 conns, during login flood [sqlite]");
    let login_bound = cores / hash_s;
    let verify_bound = cores / verify_s;
    // A rate over another, when both were measured (a `BENCH_ONLY` run leaves some out).
    let ratio = |s: Option<&Stats>, d: Option<f64>| s.zip(d.filter(|d| *d > 0.0)).map(|(s, d)| s.rps() / d);
    let shown = |r: Option<f64>| r.map_or("–".to_string(), |r| format!("{r:.2}"));
    let mut derived = vec![
        (
            {
                let p = hash_params(smoke);
                format!(
                    "argon2id hash, one core (m={} KiB, t={}, p={})",
                    p.memory_kib, p.iterations, p.parallelism
                )
            },
            format!(
                "{:.1} ms → login bound {:.0}/s on {cores} cores",
                hash_s * 1000.0,
                login_bound
            ),
        ),
        (
            "ES256 verify, one core".to_string(),
            format!(
                "{:.1} µs → bound {:.0}/s on {cores} cores",
                verify_s * 1e6,
                verify_bound
            ),
        ),
        ("/auth/me ÷ /health".into(), shown(ratio(me, health))),
        (
            "/auth/me audit on ÷ audit off".into(),
            shown(ratio(
                me,
                find(&rows, "GET /auth/me (JWT), audit off [sqlite]").map(Stats::rps),
            )),
        ),
        (
            "server CPU per request: /auth/me audit on, audit off, /health".into(),
            [
                "GET /auth/me (JWT) [sqlite]",
                "GET /auth/me (JWT), audit off [sqlite]",
                "GET /health [sqlite]",
            ]
            .iter()
            .map(|n| {
                find(&rows, n)
                    .and_then(|r| r.cpu_us)
                    .map_or("–".to_string(), |c| format!("{c:.0} µs"))
            })
            .collect::<Vec<_>>()
            .join(", "),
        ),
        ("/auth/verify (JWT) ÷ /health".into(), shown(ratio(verify, health))),
        (
            "GET /login ÷ /health".into(),
            shown(ratio(find(&rows, "GET /login [sqlite]"), health)),
        ),
        (
            {
                let p = hash_params(true);
                format!(
                    "page sign-in ÷ POST /auth/login, both with argon2id m={} KiB, t={}",
                    p.memory_kib, p.iterations
                )
            },
            shown(ratio(
                find(&rows, pages::SIGN_IN_ROW),
                find(&rows, pages::API_LOGIN_ROW).map(Stats::rps),
            )),
        ),
        (
            "first visit to /login, bytes transferred".into(),
            first_visit.as_ref().map_or("–".to_string(), pages::FirstVisit::summary),
        ),
        ("/auth/verify (API key) ÷ /health".into(), shown(ratio(key, health))),
        (
            "distinct JWTs ÷ signature bound".into(),
            shown(ratio(distinct, Some(verify_bound))),
        ),
        ("login ÷ argon2 bound".into(), shown(ratio(login, Some(login_bound)))),
        (
            "argon2id with every core hashing at once (no server)".into(),
            format!(
                "{parallel_rate:.0}/s → login ÷ that: {}",
                shown(ratio(login, Some(parallel_rate)))
            ),
        ),
        (
            "token-check p99 in flood ÷ quiet".into(),
            shown(match (flood, quiet) {
                (Some(f), Some(q)) if q.p99_ms > 0.0 => Some(f.p99_ms / q.p99_ms),
                _ => None,
            }),
        ),
        (
            "RSS idle after first start / idle after restart / peak".into(),
            format!(
                "{:.1} MB / {:.1} MB / {:.1} MB",
                idle_kib as f64 / 1024.0,
                restart_idle_kib as f64 / 1024.0,
                peak_kib as f64 / 1024.0
            ),
        ),
        (
            "oidc-provider (Node, in-memory adapter): peak RSS".into(),
            provider_peak_kib.map_or("–".to_string(), |k| format!("{:.1} MB", k as f64 / 1024.0)),
        ),
        (
            "start-up to ready, existing SQLite (first start, with migration and key generation)".into(),
            format!(
                "{:.0} ms ({:.0} ms)",
                startup.as_secs_f64() * 1000.0,
                first_start.as_secs_f64() * 1000.0
            ),
        ),
        (
            "request audit records appended to SQLite in batches of 200, CPU a record".into(),
            if audit_append.is_empty() {
                "–".to_string()
            } else {
                audit_append
                    .iter()
                    .map(|(users, us)| format!("{us:.1} µs ({users} {})", if *users == 1 { "user" } else { "users" }))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        ),
        (
            "refresh tokens presented twice".into(),
            if duplicate {
                "some (a rotation was duplicated)".into()
            } else {
                "none".into()
            },
        ),
    ];
    if settings.wants("provider") {
        derived.extend(provider::ratios(&rows, portcullis_provider_peak_kib, provider_peak_kib));
    }
    for n in &notes {
        derived.push(("note".into(), n.clone()));
    }
    out += "\n| derived | value |\n|---|---|\n";
    for (k, v) in &derived {
        out += &format!("| {k} | {v} |\n");
    }
    let refresh_rates: Vec<(String, f64)> = rows
        .iter()
        .filter(|r| r.name.starts_with("POST /auth/refresh"))
        .map(|r| (r.name.clone(), r.rps()))
        .collect();
    let check = |ok: bool| if ok { "met" } else { "**missed**" };
    let targets = vec![
        (
            "token check ≥ 60 % of /health",
            check(ratio(me, health).is_some_and(|r| r >= 0.6) && ratio(verify, health).is_some_and(|r| r >= 0.6)),
        ),
        (
            "token check p99 < 5 ms at 64 connections",
            check(me.is_some_and(|m| m.p99_ms < 5.0) && verify.is_some_and(|v| v.p99_ms < 5.0)),
        ),
        (
            "distinct tokens ≥ 80 % of the signature bound",
            check(ratio(distinct, Some(verify_bound)).is_some_and(|r| r >= 0.8)),
        ),
        (
            "login ≥ 90 % of the argon2 bound",
            check(ratio(login, Some(login_bound)).is_some_and(|r| r >= 0.9)),
        ),
        (
            "token-check p99 < 10 ms during a login flood",
            check(flood.is_some_and(|f| f.p99_ms < 10.0)),
        ),
        (
            "refresh ≥ 3,000/s on every backend, no duplicated rotation",
            check(!duplicate && !refresh_rates.is_empty() && refresh_rates.iter().all(|(_, r)| *r >= 3000.0)),
        ),
        (
            "peak RSS < 50 MB, idle < 20 MB",
            check(peak_kib < 50 * 1024 && idle_kib.max(restart_idle_kib) < 20 * 1024),
        ),
        (
            "start-up < 200 ms on an existing SQLite database",
            check(startup < Duration::from_millis(200)),
        ),
        (
            "first visit to /login < 40 KB (HTML, stylesheet, headers)",
            check(
                first_visit
                    .as_ref()
                    .is_some_and(|v| v.total() < pages::FIRST_VISIT_BOUND),
            ),
        ),
    ];
    out += "\n| target | |\n|---|---|\n";
    for (t, v) in &targets {
        out += &format!("| {t} | {v} |\n");
    }
    println!("{out}");

    let errors: usize = rows.iter().map(|r| r.errors).sum();
    if settings.only.is_some() {
        println!("BENCH_ONLY run: BENCHMARKS.md and the chart are left as they were");
        return;
    }
    if smoke {
        assert_eq!(errors, 0, "smoke run had errors");
        assert!(rows.iter().all(|r| r.requests > 0), "a scenario made no request");
        assert!(!duplicate);
        if let Some(v) = &first_visit {
            assert!(
                v.total() < pages::FIRST_VISIT_BOUND,
                "a first visit to /login transfers {}",
                v.summary()
            );
        }
        println!("benchmark smoke: {} scenarios ran", rows.len());
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    std::fs::write(root.join("bench/chart.svg"), chart(&rows)).unwrap();
    let doc_path = root.join("BENCHMARKS.md");
    let doc = std::fs::read_to_string(&doc_path).unwrap_or_default();
    let generated = format!(
        "<!-- bench:start (generated by `cargo bench --bench harness`; edits here are overwritten) -->\nLast run: {} on {}, {} s per scenario, {} connections unless noted.\n\n{out}\n![throughput and p99 per scenario](bench/chart.svg)\n<!-- bench:end -->",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        machine(),
        settings.seconds,
        settings.connections
    );
    let updated = match (doc.find("<!-- bench:start"), doc.find("<!-- bench:end -->")) {
        (Some(a), Some(b)) => format!("{}{}{}", &doc[..a], generated, &doc[b + "<!-- bench:end -->".len()..]),
        _ => format!("{doc}\n{generated}\n"),
    };
    std::fs::write(&doc_path, updated).unwrap();
    println!("wrote BENCHMARKS.md and bench/chart.svg");
}
