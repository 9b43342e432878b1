//! The documentation's gateway examples (`doc-test` blocks), run as written against the real gateway in front of
//! a recording backend and a real Portcullis: a viewer reaches none of the admin routes
//! through any path form in `credentials::DISGUISED_ADMIN_PATHS`.

use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::credentials::DISGUISED_ADMIN_PATHS;
use crate::support::*;

/// A backend that answers 200 to everything and records each request line.
async fn recording_backend() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16384];
                let n = conn.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                log.lock()
                    .unwrap()
                    .push(head.lines().next().unwrap_or_default().to_string());
                let _ = conn
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close\r\n\r\nbackend")
                    .await;
            });
        }
    });
    (addr, seen)
}

/// A process this test started, ended (by its own id) when the test ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the gateway and waits until it accepts connections. The port comes from
/// `free_port`, which another test may take before the gateway binds it: a gateway that
/// exits before listening is started again on a new port (three tries), and one that
/// neither listens nor exits within 30 s (a loaded machine) fails the test.
async fn started(start: Start, bin: &Path, dir: &Path, portcullis: &str, upstream: &str) -> (Child, String) {
    for _ in 0..3 {
        let listen = format!("127.0.0.1:{}", free_port());
        let mut gateway = start(bin, dir, portcullis, upstream, &listen);
        for _ in 0..1200 {
            if tokio::net::TcpStream::connect(&listen).await.is_ok() {
                return (gateway, listen);
            }
            if gateway.0.try_wait().ok().flatten().is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        if gateway.0.try_wait().ok().flatten().is_none() {
            panic!("{} did not listen on {listen} within 30 s", bin.display());
        }
    }
    panic!("{} exited before listening, three times", bin.display());
}

/// Every disguised admin path, under the gateway's `/api/` prefix.
fn disguised_api_paths() -> Vec<String> {
    DISGUISED_ADMIN_PATHS
        .iter()
        .filter(|p| p.starts_with('/'))
        .map(|p| format!("/api{p}"))
        .collect()
}

/// Starts a gateway from its documented block: given the temporary directory, the
/// Portcullis address, the backend's and the address to listen on.
type Start = fn(&Path, &Path, &str, &str, &str) -> Child;

fn nginx(bin: &Path, dir: &Path, portcullis: &str, upstream: &str, listen: &str) -> Child {
    let snippet = doc_block("nginx").replace("127.0.0.1:8000", portcullis);
    let d = dir.display();
    let conf = format!(
        "daemon off; master_process off; user root; pid {d}/nginx.pid; error_log {d}/error.log;\n\
         events {{}}\n\
         http {{\n access_log off;\n client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
         upstream backend {{ server {upstream}; }}\n\
         server {{\n listen {listen};\n{snippet}\n }}\n}}\n"
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    Child(
        std::process::Command::new(bin)
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-e")
            .arg(dir.join("error.log"))
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn caddy(bin: &Path, dir: &Path, portcullis: &str, upstream: &str, listen: &str) -> Child {
    let block = doc_block("caddy")
        .replace("127.0.0.1:8000", portcullis)
        .replace("127.0.0.1:9000", upstream)
        // A bare port: plain HTTP (a host would have Caddy serve HTTPS).
        .replace(":8080", &listen[listen.rfind(':').unwrap()..]);
    // No admin endpoint (tests run side by side), nothing written outside `dir`.
    std::fs::write(dir.join("Caddyfile"), format!("{{\n\tadmin off\n}}\n{block}\n")).unwrap();
    Child(
        std::process::Command::new(bin)
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(dir.join("Caddyfile"))
            .env("XDG_DATA_HOME", dir)
            .env("XDG_CONFIG_HOME", dir)
            .env("HOME", dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// The gateway `name`, started by `start` from its documented block in front of a recording
/// backend and a real Portcullis with the documented route map (its TOML file), on both backends: what
/// the example is for works, and the viewer reaches no admin route by any path form.
async fn guards_admin_routes(name: &str, start: Start) {
    let Some(bin) = tool(name) else { return };
    let routes = doc_block("verify-routes");
    for backend in backends().await {
        let (s, _db) = TestServer::start_with_toml(backend, &[], &routes).await;
        let viewer = s.user_with_role("looker", "viewer").await;
        let admin = s.login_as("admin", ADMIN_PASSWORD).await;
        let (upstream, seen) = recording_backend().await;
        let portcullis = s
            .http
            .base
            .strip_prefix("http://")
            .unwrap()
            .trim_end_matches('/')
            .to_string();
        let dir = tempfile::tempdir().unwrap();
        let (_gateway, listen) = started(start, &bin, dir.path(), &portcullis, &upstream).await;
        let what = format!("{name} {backend:?}");
        assert_eq!(
            raw_request(&listen, "GET", "/api/projects/7", &viewer.access).await,
            200,
            "{what}"
        );
        assert_eq!(
            raw_request(&listen, "HEAD", "/api/projects/7", &viewer.access).await,
            200,
            "{what}"
        );
        assert_eq!(
            raw_request(&listen, "GET", "/api/admin/users", &admin.access).await,
            200,
            "{what}"
        );
        // An administrator may override GET with POST (they hold both permissions).
        assert_eq!(
            raw_request_with(
                &listen,
                "GET",
                "/api/projects",
                &admin.access,
                &[("X-HTTP-Method-Override", "POST")]
            )
            .await,
            200,
            "{what}"
        );
        assert_eq!(seen.lock().unwrap().len(), 4, "{what}: {:?}", seen.lock().unwrap());
        // A viewer may GET /api/projects, but not have a backend that honours method
        // overrides serve it as the POST only `projects:create` may make.
        for header in ["X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"] {
            for value in ["POST", "post", "PUT"] {
                let status =
                    raw_request_with(&listen, "GET", "/api/projects", &viewer.access, &[(header, value)]).await;
                assert_eq!(status, 403, "{what} GET /api/projects with {header}: {value}");
            }
        }
        for target in ["/api/projects?_method=POST", "/api/projects?a=1&%5Fmethod=post"] {
            let status = raw_request(&listen, "GET", target, &viewer.access).await;
            assert_eq!(status, 403, "{what} GET {target}");
        }
        let mut refused = vec![
            "/api/admin/users".to_string(),
            "/api/unmapped".to_string(),
            "/api//admin/users".to_string(),
            "/api/%61dmin/users".to_string(),
        ];
        refused.extend(disguised_api_paths());
        for path in &refused {
            for method in ["GET", "HEAD", "OPTIONS", "DELETE"] {
                let status = raw_request(&listen, method, path, &viewer.access).await;
                assert!([400, 403, 404].contains(&status), "{what} {method} {path}: {status}");
            }
        }
        assert_eq!(
            seen.lock().unwrap().len(),
            4,
            "{what}: the backend was reached: {:?}",
            seen.lock().unwrap()
        );
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_nginx_example_guards_admin_routes_against_every_path_form() {
    guards_admin_routes("nginx", nginx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_caddy_example_guards_admin_routes_against_every_path_form() {
    guards_admin_routes("caddy", caddy).await;
}
