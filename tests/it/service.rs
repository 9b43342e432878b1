//! The service as a whole: metadata routes, route declarations, base path, request
//! ids, metrics, and the real binary (start-up, bootstrap, config errors, CLI import,
//! graceful shutdown, no secrets in logs).

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use portcullis::http::Access;
use serde_json::{Value, json};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_routes_answer() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        let health: Value = s.get("/health").await.json();
        assert_eq!(health["status"], "ok");
        let ready = s.get("/ready").await;
        assert_eq!(ready.status, 200);
        let disco: Value = s.get("/.well-known/openid-configuration").await.json();
        assert!(disco["jwks_uri"].as_str().unwrap().ends_with("/.well-known/jwks.json"));
        assert!(disco["token_endpoint"].as_str().unwrap().ends_with("/oauth2/token"));
        assert_eq!(
            disco["grant_types_supported"],
            json!(portcullis::domain::oidc::GRANT_TYPES)
        );
        assert_eq!(disco["issuer"], s.service.config().tokens.jwt_issuer.as_str());
        // Swagger UI is bundled: its page and assets come from the binary.
        let docs = s.get("/docs/").await;
        assert_eq!(docs.status, 200);
        assert!(docs.text.contains("swagger"));
        let init = s.get("/docs/swagger-initializer.js").await.text;
        assert!(
            init.contains("/openapi.json") && init.contains("\"validatorUrl\": \"none\""),
            "{init}"
        );
        assert_eq!(s.get("/docs/swagger-ui-bundle.js").await.status, 200);

        // A login, a failed login, a refresh: all visible in metrics, without user data.
        let t = s.user("metered").await;
        s.refresh(&t.refresh).await;
        s.login("metered", "wrong").await;
        // A token's first check misses the verified-token cache, the next one hits.
        for _ in 0..2 {
            assert_eq!(s.get_auth("/auth/me", &t.access).await.status, 200);
        }
        // A method a client made up is counted, but not under a label of its own.
        let brew = M::from_bytes(b"BREWCOFFEE").unwrap();
        s.call(brew, "/health", Anonymous, Empty).await;
        let metrics = s.get("/metrics").await.text;
        for needle in [
            "portcullis_http_requests_total",
            "portcullis_http_request_duration_seconds_bucket",
            "route=\"/auth/login\"",
            "portcullis_logins_total{result=\"success\"}",
            "portcullis_logins_total{result=\"failure\"}",
            "portcullis_token_refreshes_total",
            "portcullis_db_pool_connections",
            "portcullis_token_cache_lookups_total{result=\"hit\"}",
            "portcullis_token_cache_lookups_total{result=\"miss\"}",
        ] {
            assert!(metrics.contains(needle), "metrics lack {needle}");
        }
        assert!(!metrics.contains("metered") && !metrics.contains(&t.refresh));
        assert!(metrics.contains("method=\"OTHER\"") && !metrics.contains("BREWCOFFEE"));
        s.stop().await;
    }
}

/// The served OpenAPI document.
async fn openapi(s: &TestServer) -> Value {
    s.get("/openapi.json").await.json()
}

/// What a client generator needs of the document: every `$ref` names a schema in
/// `components`, and every `{name}` in a path is declared as that operation's path
/// parameter (none left undeclared, none declared that the path lacks).
fn assert_self_contained(doc: &Value) {
    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r);
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    refs(doc, &mut found);
    assert!(found.len() > 50, "the document refers to its schemas");
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for r in found {
        let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("{r}"));
        assert!(schemas.contains_key(name), "{r} does not resolve");
    }
    for (path, item) in doc["paths"].as_object().unwrap() {
        let mut in_path: Vec<&str> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .collect();
        in_path.sort();
        for (method, op) in item.as_object().unwrap() {
            let mut declared: Vec<&str> = op["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .filter(|p| p["in"] == "path")
                        .map(|p| p["name"].as_str().unwrap())
                        .collect()
                })
                .unwrap_or_default();
            declared.sort();
            assert_eq!(declared, in_path, "{method} {path}");
        }
    }
}

/// Every GET without path parameters answers an administrator with what its
/// document declares: an array where it says array, an object where it says object,
/// and the fields it marks as required.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_match_the_documented_shapes() {
    let (s, _db) = TestServer::start(Backend::Sqlite).await;
    let admin = s.login_as("admin", ADMIN_PASSWORD).await;
    let doc = openapi(&s).await;
    let schemas = &doc["components"]["schemas"];
    let resolve = |schema: &Value| -> Value {
        match schema["$ref"].as_str() {
            Some(r) => schemas[r.trim_start_matches("#/components/schemas/")].clone(),
            None => schema.clone(),
        }
    };
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let Some(schema) = item["get"]["responses"]["200"]["content"]["application/json"].get("schema") else {
            continue;
        };
        // UserInfo answers only an application's token (tests/it/oidc_code_flow.rs).
        if path.contains('{') || path.ends_with("/oauth2/userinfo") {
            continue;
        }
        let res = s.get_auth(path, &admin.access).await;
        assert_eq!(res.status, 200, "GET {path}");
        let body: Value = res.json();
        let schema = resolve(schema);
        let (value, item_schema) = match schema["type"].as_str() {
            Some("array") => {
                let items = body
                    .as_array()
                    .unwrap_or_else(|| panic!("GET {path}: not an array: {body}"));
                match items.first() {
                    Some(first) => (first.clone(), resolve(&schema["items"])),
                    None => continue,
                }
            }
            _ => (body.clone(), schema),
        };
        if item_schema["type"] == "object" || item_schema.get("properties").is_some() {
            let object = value
                .as_object()
                .unwrap_or_else(|| panic!("GET {path}: not an object: {value}"));
            for field in item_schema["required"].as_array().into_iter().flatten() {
                let field = field.as_str().unwrap();
                assert!(object.contains_key(field), "GET {path}: no {field} in {value}");
            }
        }
        checked += 1;
    }
    assert!(checked >= 8, "only {checked} answers checked");
    s.stop().await;
}

/// What a route answers an administrator is in its document, in the documented media
/// type: with an empty body, with a body of another media type, and with an unknown
/// name or a malformed id in its path (concrete_path makes up both).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_documented() {
    use portcullis::http::{BodyKind, openapi::template};
    let (s, _db) = TestServer::start(Backend::Sqlite).await;
    let admin = s.login_as("admin", ADMIN_PASSWORD).await;
    let doc = openapi(&s).await;
    let mut checked = 0;
    for r in portcullis::http::routes::table()
        .iter()
        .filter(|r| !r.mounted && !r.page)
    {
        // These end the administrator's own sessions.
        if r.path.starts_with("/auth/logout") {
            continue;
        }
        let documented = &doc["paths"][template(r.path)][r.method.as_str().to_ascii_lowercase()]["responses"];
        let path = concrete_path(r.path).replace("/x/", "/no-such-name/");
        let mut attempts = vec![match r.body {
            Some((BodyKind::Form, _)) => Form(&[("unknown", "field")]),
            _ => Json(json!({})),
        }];
        if r.body.is_some() {
            attempts.push(Raw("text/plain", b"not the media type"));
        }
        for attempt in attempts {
            let res = s.call(r.method.clone(), &path, Bearer(&admin.access), attempt).await;
            let status = res.status.to_string();
            let answer = &documented[&status];
            assert!(
                answer.is_object(),
                "{} {path} answered {status}, documented {documented}",
                r.method
            );
            if let Some(media) = answer["content"].as_object().and_then(|c| c.keys().next()) {
                let got = res.headers["content-type"].to_str().unwrap();
                assert!(
                    got.starts_with(media.as_str()),
                    "{} {path} {status}: {got}, documented {media}",
                    r.method
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 90, "{checked} answers checked");
    // A gateway check refused (here: an original path that does not decode).
    for (path, header) in [("/auth/verify", Some("/%ff")), ("/auth/verify/%ff", None)] {
        let original: Vec<(&str, &str)> = header.map(|uri| ("x-original-uri", uri)).into_iter().collect();
        let res = s
            .http
            .call_with(M::GET, path, Bearer(&admin.access), Empty, &original)
            .await;
        let status = res.status.to_string();
        let documented =
            &doc["paths"][template(if header.is_some() { path } else { "/auth/verify/{*path}" })]["get"]["responses"];
        assert!(
            documented[&status].is_object(),
            "GET {path} answered {status}, documented {documented}"
        );
    }
    s.stop().await;
}

/// Every route is declared with a rule, the OpenAPI document lists exactly the
/// declared routes, and every non-public route refuses anonymous callers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_is_declared_and_guarded() {
    let (s, _db) = TestServer::start(Backend::Sqlite).await;
    let table = portcullis::http::routes::table();
    let doc = openapi(&s).await;
    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    let mut declared: Vec<String> = table
        .iter()
        .filter(|r| !r.mounted && !r.page)
        .map(|r| format!("{} {}", r.method, portcullis::http::openapi::template(r.path)))
        .collect();
    documented.sort();
    declared.sort();
    assert_eq!(documented, declared);
    assert_self_contained(&doc);
    // Query strings are documented from the handlers' query types.
    let query = |path: &str| -> Vec<(String, bool)> {
        doc["paths"][path]["get"]["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == "query")
            .map(|p| (p["name"].as_str().unwrap().to_string(), p["required"] == true))
            .collect()
    };
    assert_eq!(
        query("/auth/oauth/{provider}/authorize"),
        [("redirect_uri".to_string(), true)]
    );
    let audit = query("/audit/logs");
    for name in ["user_id", "action", "since", "until", "limit", "cursor"] {
        assert!(audit.contains(&(name.to_string(), false)), "{name} in {audit:?}");
    }
    assert_eq!(audit, query("/audit/logs/export"));
    assert!(query("/admin/users").contains(&("q".to_string(), false)));
    assert_eq!(query("/auth/verify"), [("permission".to_string(), false)]);
    assert_eq!(
        doc["components"]["securitySchemes"]["oauth2"]["flows"]["password"]["tokenUrl"],
        "/auth/token"
    );

    let mut seen = std::collections::HashSet::new();
    for r in &table {
        assert!(
            seen.insert((r.method.clone(), r.path)),
            "declared twice: {} {}",
            r.method,
            r.path
        );
        let path = concrete_path(r.path);
        let res = s.call(r.method.clone(), &path, Anonymous, Json(json!({}))).await;
        let status = res.status;
        match r.access {
            Access::Public => assert_ne!(status, 401, "{} {} is public", r.method, r.path),
            // A page for signed-in browsers sends anyone else to the sign-in page.
            Access::SignedIn => {
                assert_eq!(
                    status, 303,
                    "{} {} must send anonymous browsers to sign in",
                    r.method, r.path
                );
                assert!(res.header("location").unwrap().starts_with("/login"));
            }
            _ => {
                assert_eq!(status, 401, "{} {} must refuse anonymous callers", r.method, r.path);
                assert_eq!(res.headers["www-authenticate"], "Bearer");
            }
        }
        assert_ne!(status, 500, "{} {}", r.method, r.path);
    }
    // No method is served on a declared path unless it is declared too.
    let methods = [M::GET, M::POST, M::PUT, M::PATCH, M::DELETE];
    for r in table.iter().filter(|r| !r.mounted) {
        let path = concrete_path(r.path);
        for m in &methods {
            if table.iter().any(|d| d.path == r.path && d.method == *m) {
                continue;
            }
            let res = s.call(m.clone(), &path, Anonymous, Empty).await;
            assert_eq!(res.status, 405, "{m} {} is served but not declared", r.path);
        }
    }
    // Unknown routes and methods: problem answers.
    expect_problem(s.get("/no/such/route").await, 404);
    expect_problem(s.call(M::DELETE, "/auth/login", Anonymous, Empty).await, 405);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base_path_prefixes_every_route() {
    let (s, _db) = TestServer::start_with(Backend::Sqlite, &[("PORTCULLIS_BASE_PATH", "/api/v1")]).await;
    assert!(s.http.base.ends_with("/api/v1"));
    let t = s.user("prefixed").await;
    assert_eq!(s.get_auth("/auth/me", &t.access).await.status, 200);
    let root = s.http.base.trim_end_matches("/api/v1").to_string();
    let res = Http::new(root)
        .call(
            M::POST,
            "/auth/login",
            Anonymous,
            Json(json!({"username": "prefixed", "password": PASSWORD})),
        )
        .await;
    expect_problem(res, 404);
    let doc = openapi(&s).await;
    assert!(doc["paths"].get("/api/v1/auth/login").is_some());
    assert_eq!(s.get("/docs/").await.status, 200);
    let disco: Value = s.get("/.well-known/openid-configuration").await.json();
    assert!(
        disco["token_endpoint"]
            .as_str()
            .unwrap()
            .ends_with("/api/v1/oauth2/token")
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_kept_or_generated() {
    let (s, _db) = TestServer::start(Backend::Sqlite).await;
    let res = s
        .http
        .call_with(M::GET, "/health", Anonymous, Empty, &[("x-request-id", "trace-me-123")])
        .await;
    assert_eq!(res.headers["x-request-id"], "trace-me-123");
    let res = s.get("/health").await;
    let id = |res: &Reply| uuid::Uuid::parse_str(res.header("x-request-id").unwrap()).unwrap();
    let first = id(&res);
    assert_eq!(first.get_version(), Some(uuid::Version::Random));
    let again = s.get("/health").await;
    assert_ne!(id(&again), first, "each request gets an id of its own");
    for h in ["x-content-type-options", "referrer-policy", "x-frame-options"] {
        assert!(res.headers.contains_key(h), "{h}");
    }
    s.stop().await;
}

#[test]
fn bad_configuration_stops_startup_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    for (var, value) in [
        ("JWT_ALGORITHM", "none"),
        ("ACCESS_TOKEN_EXPIRE_MINUTES", "soon"),
        ("DATABASE_URL", "mysql://u:hunter2@db/x"),
        ("PORTCULLIS_BIND", "nowhere"),
        // A typo would turn MFA off for administrators.
        ("MFA_REQUIRED_ROLES", "admins"),
    ] {
        let out = binary()
            .current_dir(dir.path())
            .env(var, value)
            // Settings checked against the database come after the store opens: a
            // given master key spares the generated key file's warning line.
            .env("PORTCULLIS_MASTER_KEY", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
            .arg("serve")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{var}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(var), "{err}");
        assert!(!err.contains("hunter2"));
        if var == "MFA_REQUIRED_ROLES" {
            assert!(err.contains("did you mean `admin`?"), "{err}");
        }
    }
}

/// The real binary: first start bootstraps the admin and prints its password once;
/// a passlib hash imported from the CLI logs in; SIGTERM drains an in-flight login and
/// exits 0; no password or token ever reaches the log.
#[test]
fn binary_serves_imports_and_shuts_down_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("p.db").display());
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = binary()
        .current_dir(dir.path())
        .env("DATABASE_URL", &db)
        // An expensive hash so a login is still running when SIGTERM arrives.
        .env("PASSWORD_HASH_MEMORY_KIB", "65536")
        .env("PASSWORD_HASH_ITERATIONS", "4")
        .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let guard = KillOnDrop(child.id());
    let mut log = String::new();
    let mut admin_password = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 {
            break;
        }
        log.push_str(&line);
        if let Some((_, pw)) = line.split_once("one-time password: ") {
            admin_password = Some(pw.trim().to_string());
        }
        if line.contains("portcullis is ready") {
            break;
        }
    }
    let admin_password = admin_password.unwrap_or_else(|| panic!("no admin password printed:\n{log}"));
    assert!(
        dir.path().join("p.db.key").exists(),
        "master key file generated beside the database"
    );
    let base = format!("http://127.0.0.1:{port}");
    // Import a passlib user from the shell while the service runs.
    let legacy = bcrypt::hash("imported pass phrase", 4).unwrap();
    let out = binary()
        .current_dir(dir.path())
        .env("DATABASE_URL", &db)
        .args([
            "user",
            "create",
            "--username",
            "imported",
            "--email",
            "imported@example.com",
            "--password-hash",
            &legacy,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = binary()
        .current_dir(dir.path())
        .env("DATABASE_URL", &db)
        .args(["user", "create", "--username", "x", "--email", "bad"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "invalid input");
    assert!(String::from_utf8_lossy(&out.stderr).contains("email"));

    let rt = tokio::runtime::Runtime::new().unwrap();
    let (tokens, slow_status) = rt.block_on(async {
        let http = Http::new(base);
        // Owns what it needs, so that a login can be spawned.
        let login = |u: &str, p: &str| {
            let (http, body) = (http.clone(), json!({"username": u, "password": p}));
            async move { http.call(M::POST, "/auth/login", Anonymous, Json(body)).await }
        };
        let admin: Value = login("admin", &admin_password).await.json();
        // By default administrators must enrol in MFA: the first login yields a token
        // for enrolment only.
        assert_eq!(admin["mfa_enrollment_required"], true, "{admin}");
        let imported = login("imported", "imported pass phrase").await;
        assert_eq!(imported.status, 200);
        let imported: Value = imported.json();
        // Start a login, then ask the server to stop while it is hashing.
        let slow = tokio::spawn(login("admin", &admin_password));
        tokio::time::sleep(Duration::from_millis(100)).await;
        send_sigterm(child.id());
        let slow_status = slow.await.map(|r| r.status).unwrap_or(0);
        (vec![admin, imported], slow_status)
    });
    let status = child.wait().unwrap();
    std::mem::forget(guard);
    assert_eq!(status.code(), Some(0), "graceful exit");
    assert_eq!(slow_status, 200, "in-flight request drained");
    stderr.read_to_string(&mut log).unwrap();
    assert!(log.contains("request_id="), "request ids in log lines");
    assert_eq!(
        log.matches(&admin_password).count(),
        1,
        "the admin password is printed exactly once"
    );
    for t in &tokens {
        for field in ["access_token", "refresh_token"] {
            if let Some(secret) = t[field].as_str() {
                assert!(!log.contains(secret), "{field} leaked into the log");
            }
        }
    }
    assert!(!log.contains("imported pass phrase"));
}

/// Kills the server if the test fails before stopping it, so no process outlives a run.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-KILL", &self.0.to_string()]).status();
    }
}

fn send_sigterm(pid: u32) {
    let ok = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

#[test]
fn dotenv_and_toml_configure_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    // A bad value in .env is read and named.
    std::fs::write(dir.path().join(".env"), "JWT_ALGORITHM=none\n").unwrap();
    let out = binary().current_dir(dir.path()).arg("migrate").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("JWT_ALGORITHM"));
    // A TOML file given with --config, nested tables flattened; the environment wins.
    std::fs::write(dir.path().join(".env"), "").unwrap();
    std::fs::write(
        dir.path().join("p.toml"),
        "database_url = \"sqlite://from-toml.db\"\n[password]\nmin_length = 1000\n",
    )
    .unwrap();
    let out = binary()
        .current_dir(dir.path())
        .args(["--config", "p.toml", "migrate"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("PASSWORD_MIN_LENGTH"));
    let out = binary()
        .current_dir(dir.path())
        .env("PASSWORD_MIN_LENGTH", "10")
        .args(["--config", "p.toml", "migrate"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(dir.path().join("from-toml.db").exists());
    // keys rotate works from the shell on that database.
    let out = binary()
        .current_dir(dir.path())
        .env("PASSWORD_MIN_LENGTH", "10")
        .args(["--config", "p.toml", "keys", "rotate"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("new signing key"));
}

/// A misspelt key in the TOML file stops start-up, naming the key and the one meant,
/// instead of leaving the default silently in force.
#[test]
fn unknown_toml_keys_stop_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".env"), "").unwrap();
    std::fs::write(dir.path().join("p.toml"), "[password]\nmin_lenght = 12\n").unwrap();
    let out = binary()
        .current_dir(dir.path())
        .args(["--config", "p.toml", "migrate"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("p.toml: unknown setting `password.min_lenght`; did you mean `password.min_length`?"),
        "{stderr}"
    );
    assert!(!dir.path().join("portcullis.db").exists());
}

/// Secrets at rest: the signing key is sealed under the master key (another key
/// cannot open it), and neither passwords nor refresh tokens are in the database file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_not_stored_in_clear() {
    let (s, db) = TestServer::start(Backend::Sqlite).await;
    let t = s.user("stored").await;
    let t2: Value = s.refresh(&t.refresh).await.json();
    let latest = t2["refresh_token"].as_str().unwrap().to_string();
    s.stop().await;
    let dir = db
        .url
        .trim_start_matches("sqlite://")
        .rsplit_once('/')
        .unwrap()
        .0
        .to_string();
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(!contains(PASSWORD.as_bytes()), "password in clear");
    assert!(
        !contains(t.refresh.as_bytes()) && !contains(latest.as_bytes()),
        "refresh token in clear"
    );
    assert!(
        contains(&portcullis::crypto::tokens::digest(&latest)),
        "the digest is what is stored"
    );
    assert!(contains(b"$argon2id$"));

    let mut settings = base_settings(&db);
    settings.retain(|(k, _)| k != "PORTCULLIS_MASTER_KEY");
    settings.push((
        "PORTCULLIS_MASTER_KEY".into(),
        "ZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmY=".into(),
    ));
    let config = portcullis::config::Config::from_sources(&portcullis::config::Sources::from_pairs(settings)).unwrap();
    let err = portcullis::Portcullis::open(config)
        .await
        .err()
        .expect("a wrong master key must not open the keys");
    assert!(format!("{err:#}").contains("wrong master key"), "{err:#}");
}

/// Checking a valid access token needs no database: it still works with the pool closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_checks_do_not_touch_the_database() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        let t = s.user("offline").await;
        let fresh = s.login_as("offline", PASSWORD).await;
        let key = s
            .call(
                M::POST,
                "/auth/api-keys",
                Bearer(&t.access),
                Json(json!({"name": "offline"})),
            )
            .await
            .json();
        let key = key["key"].as_str().unwrap().to_string();
        // Warm: the profile and the key are read once.
        assert_eq!(s.get_auth("/auth/me", &t.access).await.status, 200);
        assert_eq!(s.call(M::GET, "/auth/verify", ApiKey(&key), Empty).await.status, 200);
        s.service.store().close().await;
        // Over HTTP, with the database gone: token check, profile and key check still answer.
        assert_eq!(s.get_auth("/auth/me", &t.access).await.status, 200);
        assert_eq!(s.get_auth("/auth/verify", &fresh.access).await.status, 200);
        assert_eq!(s.call(M::GET, "/auth/verify", ApiKey(&key), Empty).await.status, 200);
        for token in [&t.access, &fresh.access] {
            let p = s
                .service
                .authenticate_token(token)
                .await
                .expect("verified without the database");
            assert_eq!(p.username, "offline");
        }
        assert!(s.service.authenticate_token("forged.token.here").await.is_err());
        s.stop().await;
    }
}
