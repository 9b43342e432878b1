//! Connections: a slow or idle client cannot hold the server's connections, and a
//! drain on shutdown has a deadline. Raw TCP, since an HTTP client would finish (or
//! give up on) what these tests leave half-sent.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::support::*;

fn address(s: &TestServer) -> SocketAddr {
    let rest = s.http.base.trim_start_matches("http://");
    rest.split('/').next().unwrap().parse().unwrap()
}

/// A connection to `to` from the loopback address `from` (127.0.0.x are all local).
async fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    socket.connect(to).await.unwrap()
}

/// Reads until the server closes the connection, for at most `bound`; what was read,
/// or `None` if it was still open.
async fn read_to_close(conn: &mut TcpStream, bound: Duration) -> Option<String> {
    let mut all = Vec::new();
    let read = tokio::time::timeout(bound, async {
        let mut buf = [0u8; 4096];
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok().map(|()| String::from_utf8_lossy(&all).into_owned())
}

/// One complete request on `conn` and its answer's status line (keep-alive).
async fn health_on(conn: &mut TcpStream) -> String {
    get_on(conn, "/health").await
}

/// `GET path` on `conn` and its answer's status line (keep-alive).
async fn get_on(conn: &mut TcpStream, path: &str) -> String {
    conn.write_all(format!("GET {path} HTTP/1.1\r\nhost: t\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    let done = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let n = conn.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before answering");
            all.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&all);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                if body.len() >= length {
                    return head.lines().next().unwrap().to_string();
                }
            }
        }
    })
    .await;
    done.expect("/health answered")
}

/// 200 half-sent requests from one address: those past the per-address cap are closed
/// at once, the rest when the header-read timeout runs out, and meanwhile /health
/// answers another client at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_requests_from_one_client_cannot_hold_the_server() {
    for backend in backends().await {
        let settings = [
            ("PORTCULLIS_MAX_CONNECTIONS_PER_IP", "20"),
            ("PORTCULLIS_HEADER_READ_TIMEOUT_SECONDS", "2"),
        ];
        let (s, _db) = TestServer::start_with(backend, &settings).await;
        let addr = address(&s);
        let mut slow = Vec::new();
        for _ in 0..200 {
            let mut c = connect_from([127, 0, 0, 1], addr).await;
            c.write_all(b"GET /health HTTP/1.1\r\nhost: t\r\nx-slow: ")
                .await
                .unwrap();
            slow.push(c);
        }
        // Another client is served at once.
        let mut other = connect_from([127, 0, 0, 2], addr).await;
        assert!(health_on(&mut other).await.contains(" 200 "));

        // Past the cap: closed without waiting for anything.
        for (i, c) in slow.iter_mut().enumerate().skip(20) {
            assert!(
                read_to_close(c, Duration::from_secs(5)).await.is_some(),
                "connection {i}, past the per-address cap, is still open"
            );
        }
        // Within the cap: closed by the header-read timeout.
        for (i, c) in slow.iter_mut().take(20).enumerate() {
            assert!(
                read_to_close(c, Duration::from_secs(10)).await.is_some(),
                "half-sent request {i} still open"
            );
        }
        // Their slots are free again.
        let mut again = connect_from([127, 0, 0, 1], addr).await;
        assert!(health_on(&mut again).await.contains(" 200 "));
        s.stop().await;
    }
}

/// A kept-alive connection serves several requests, then is closed once idle for
/// the idle timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed() {
    for backend in backends().await {
        let (s, _db) = TestServer::start_with(backend, &[("PORTCULLIS_IDLE_TIMEOUT_SECONDS", "1")]).await;
        let mut conn = connect_from([127, 0, 0, 1], address(&s)).await;
        assert!(health_on(&mut conn).await.contains(" 200 "));
        assert!(
            health_on(&mut conn).await.contains(" 200 "),
            "kept alive between requests"
        );
        let rest = read_to_close(&mut conn, Duration::from_secs(10)).await;
        assert_eq!(rest.as_deref(), Some(""), "an idle connection is closed");
        s.stop().await;
    }
}

/// A connection on which a login request was sent with only part of its body.
async fn half_sent_login(s: &TestServer) -> TcpStream {
    let mut conn = connect_from([127, 0, 0, 1], address(s)).await;
    conn.write_all(
        b"POST /auth/login HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"user",
    )
    .await
    .unwrap();
    conn
}

/// Shutting down drains for at most the shutdown timeout: a request whose body never
/// arrives does not keep the server from stopping.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_on_shutdown_has_a_deadline() {
    for backend in backends().await {
        let settings = [
            ("PORTCULLIS_SHUTDOWN_TIMEOUT_SECONDS", "1"),
            ("PORTCULLIS_BODY_TIMEOUT_SECONDS", "600"),
            ("PORTCULLIS_REQUEST_TIMEOUT_SECONDS", "600"),
        ];
        let (s, _db) = TestServer::start_with(backend, &settings).await;
        let mut conn = half_sent_login(&s).await;
        // The request reaches the handler (the body read is under way) before stopping.
        let mut probe = connect_from([127, 0, 0, 2], address(&s)).await;
        assert!(health_on(&mut probe).await.contains(" 200 "));
        drop(probe);
        let started = Instant::now();
        s.stop().await; // waits at most 10 s
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "the drain outlived its deadline: {:?}",
            started.elapsed()
        );
        assert!(read_to_close(&mut conn, Duration::from_secs(5)).await.is_some());
    }
}

/// A request not answered within the request timeout, or whose body does not arrive
/// within the body timeout, gets a 408 in problem+json, like every other error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_request_is_answered_with_a_problem() {
    let request = [
        ("PORTCULLIS_REQUEST_TIMEOUT_SECONDS", "1"),
        ("PORTCULLIS_BODY_TIMEOUT_SECONDS", "600"),
    ];
    let body = [
        ("PORTCULLIS_REQUEST_TIMEOUT_SECONDS", "600"),
        ("PORTCULLIS_BODY_TIMEOUT_SECONDS", "1"),
    ];
    for (backend, settings) in backends().await.into_iter().flat_map(|b| [(b, request), (b, body)]) {
        let (s, _db) = TestServer::start_with(backend, &settings).await;
        let mut conn = half_sent_login(&s).await;
        let started = Instant::now();
        let answer = read_to_close(&mut conn, Duration::from_secs(10))
            .await
            .expect("the connection is closed after the answer");
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
        assert!(head.starts_with("HTTP/1.1 408 "), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .lines()
                .any(|l| l == "content-type: application/problem+json"),
            "{head}"
        );
        let problem: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
        assert_eq!(problem["status"], 408, "{problem}");
        assert_eq!(problem["type"], "urn:portcullis:problem:request-timeout", "{problem}");
        assert_eq!(problem["title"], "Request Timeout", "{problem}");
        s.stop().await;
    }
}

/// The real binary under an open-file limit of 256 (soft and hard), configured for
/// the default 10,000 connections: it warns at start that it serves at most 256 - 10
/// (database pool) - 64 (files, logs, outgoing HTTP) = 182 at once, and 300 idle
/// connections from four addresses then wait in the backlog instead of using up
/// every descriptor: accept never fails, /health and /ready (the database) answer,
/// and the waiting connections are served once others close. Both backends. (Before, nothing read the limit: accept
/// failed with EMFILE once the descriptors ran out.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_cap_fits_the_open_file_limit() {
    use std::os::unix::process::CommandExt;
    for backend in backends().await {
        let db = TestDb::new(backend).await;
        let mut cmd = binary_on(&db);
        cmd.env("PORTCULLIS_IDLE_TIMEOUT_SECONDS", "600")
            .env("PORTCULLIS_HEADER_READ_TIMEOUT_SECONDS", "600")
            .env("DATABASE_MAX_CONNECTIONS", "10");
        // SAFETY: only setrlimit, which is async-signal-safe, runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                let lim = libc::rlimit {
                    rlim_cur: 256,
                    rlim_max: 256,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let s = BinaryServer::start(cmd).await;
        within(
            Duration::from_secs(5),
            "no warning naming the setting and the cap",
            || async {
                let log = s.log();
                log.contains("PORTCULLIS_MAX_CONNECTIONS is 10000") && log.contains("serving at most 182 at once")
            },
        )
        .await;
        let mut idle = Vec::new();
        for i in 0..300usize {
            idle.push(connect_from([127, 0, 0, 2 + (i % 4) as u8], s.addr).await);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        // The first connections were accepted and are served.
        assert!(health_on(&mut idle[0]).await.contains(" 200 "), "{backend:?}");
        assert!(get_on(&mut idle[0], "/ready").await.contains(" 200 "), "{backend:?}");
        // The last waits in the backlog until others close.
        idle.drain(1..150);
        let last = idle.last_mut().unwrap();
        assert!(get_on(last, "/ready").await.contains(" 200 "), "{backend:?}");
        let log = s.log();
        assert!(
            !log.contains("accepting a connection failed"),
            "{backend:?}: accept failed (out of descriptors?):\n{log}"
        );
    }
}
