//! The README's gateway examples, run as written against the real gateway in front of
//! a recording backend and a real Portcullis: a viewer reaches none of the admin routes
//! through any path form in `credentials::DISGUISED_ADMIN_PATHS`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::credentials::DISGUISED_ADMIN_PATHS;
use crate::support::*;

/// The code block after `<!-- readme-test: {name} -->` in README.md.
fn readme_block(name: &str) -> String {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let marker = format!("<!-- readme-test: {name} -->");
    let after = &readme[readme.find(&marker).unwrap_or_else(|| panic!("README has no {marker}")) + marker.len()..];
    let body = &after[after.find("```").unwrap()..];
    let body = &body[body.find('\n').unwrap() + 1..];
    body[..body.find("\n```").unwrap()].to_string()
}

/// The README's route map (its TOML block) as a `VERIFY_ROUTES` value.
fn readme_routes() -> String {
    let table: toml::Table = readme_block("verify-routes").parse().unwrap();
    table["verify"]["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{} {} {}",
                r["method"].as_str().unwrap(),
                r["path"].as_str().unwrap(),
                r["permission"].as_str().unwrap()
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A tool on PATH or in /usr/sbin; None (and the test skipped) outside CI when absent.
fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            std::env::var_os("PORTCULLIS_TEST_REQUIRE_POSTGRES").is_none(),
            "{name} is required (.ci/run installs it)"
        );
        eprintln!("{name} not installed: skipping");
    }
    found
}

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

/// Waits until `addr` accepts connections (the gateway has started).
async fn until_listening(addr: &str) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("{addr} never listened");
}

/// Every disguised admin path, under the gateway's `/api/` prefix.
fn disguised_api_paths() -> Vec<String> {
    DISGUISED_ADMIN_PATHS
        .iter()
        .filter(|p| p.starts_with('/'))
        .map(|p| format!("/api{p}"))
        .collect()
}

/// Starts a gateway from its README block: given the temporary directory, the
/// Portcullis address, the backend's and the address to listen on.
type Start = fn(&Path, &Path, &str, &str, &str) -> Child;

fn nginx(bin: &Path, dir: &Path, portcullis: &str, upstream: &str, listen: &str) -> Child {
    let snippet = readme_block("nginx").replace("127.0.0.1:8000", portcullis);
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
    let block = readme_block("caddy")
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

/// The gateway `name`, started by `start` from its README block in front of a recording
/// backend and a real Portcullis with the README's route map, on both backends: what
/// the example is for works, and the viewer reaches no admin route by any path form.
async fn guards_admin_routes(name: &str, start: Start) {
    let Some(bin) = tool(name) else { return };
    let routes = readme_routes();
    for backend in backends().await {
        let (s, _db) = TestServer::start_with(backend, &[("VERIFY_ROUTES", routes.as_str())]).await;
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
        let listen = format!("127.0.0.1:{}", free_port());
        let _gateway = start(&bin, dir.path(), &portcullis, &upstream, &listen);
        until_listening(&listen).await;
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
        assert_eq!(seen.lock().unwrap().len(), 3, "{what}: {:?}", seen.lock().unwrap());
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
            3,
            "{what}: the backend was reached: {:?}",
            seen.lock().unwrap()
        );
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_nginx_example_guards_admin_routes_against_every_path_form() {
    guards_admin_routes("nginx", nginx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_caddy_example_guards_admin_routes_against_every_path_form() {
    guards_admin_routes("caddy", caddy).await;
}
