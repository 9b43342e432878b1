//! The hosted pages under load (`BENCH_ONLY=pages`): what a first visit to `/login`
//! transfers, and a whole browserless sign-in through the forms, as a browser makes it
//! (`GET /login` for the form's token and its cookie, `POST /login`, then the account
//! page the answer sends it to).
//!
//! The sign-ins run against a server of their own with cheap hashing (argon2id m=64
//! KiB, t=1, as the smoke run's), so the figure is the pages' own cost, not the
//! hash's; `POST /auth/login` on the same server, in turns with it, is what it is
//! compared with. (`POST /auth/login` at the default parameters is the main run's login
//! scenario.) `GET /login` itself runs with the token checks against `/health`.

use super::*;

/// What a first visit to `/login` may transfer in all: HTML, stylesheet, any other
/// asset the page names, and the answers' headers.
pub const FIRST_VISIT_BOUND: usize = 40 * 1024;

/// What a first visit to `/login` transferred, in bytes as they came over the wire.
pub struct FirstVisit {
    pub html: usize,
    /// Every asset the page references (today the stylesheet alone).
    pub assets: usize,
    pub headers: usize,
    /// The `Content-Encoding`s the server answered with ("none" without one).
    pub encodings: Vec<String>,
}

impl FirstVisit {
    pub fn total(&self) -> usize {
        self.html + self.assets + self.headers
    }

    pub fn summary(&self) -> String {
        format!(
            "{:.1} KB: HTML {} B + assets {} B + headers {} B; content encoding: {}",
            self.total() as f64 / 1024.0,
            self.html,
            self.assets,
            self.headers,
            self.encodings.join(", ")
        )
    }
}

/// The bytes of an answer's status line and headers, as HTTP/1.1 sends them.
fn header_bytes(headers: &hyper::HeaderMap) -> usize {
    "HTTP/1.1 200 OK\r\n\r\n".len()
        + headers
            .iter()
            .map(|(k, v)| k.as_str().len() + 2 + v.len() + 2)
            .sum::<usize>()
}

/// The same-origin URLs a page loads by itself: `<link href>` and any `src`.
fn referenced_assets(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for tag in html.split('<').skip(1) {
        let tag = tag.split('>').next().unwrap_or_default();
        let attr = if tag.starts_with("link ") { "href=\"" } else { "src=\"" };
        if let Some(at) = tag.find(attr) {
            let url = tag[at + attr.len()..].split('"').next().unwrap_or_default();
            if url.starts_with('/') && !url.starts_with("//") {
                out.push(url.to_string());
            }
        }
    }
    out
}

/// A first visit to `/login` with what a browser accepts, and each asset it names.
pub async fn first_visit(addr: SocketAddr) -> FirstVisit {
    const ACCEPT: &[(&str, &str)] = &[("accept-encoding", "gzip, deflate, br, zstd")];
    let mut sender = connect(addr).await;
    let mut encodings = Vec::new();
    let mut encoding = |h: &hyper::HeaderMap| {
        let e = h
            .get("content-encoding")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_string();
        if !encodings.contains(&e) {
            encodings.push(e);
        }
    };
    let (status, headers, html, _) = exchange(&mut sender, request("GET", "/login", ACCEPT, None)).await;
    assert_eq!(status, 200, "GET /login");
    encoding(&headers);
    let mut visit = FirstVisit {
        html: html.len(),
        assets: 0,
        headers: header_bytes(&headers),
        encodings: Vec::new(),
    };
    let page = String::from_utf8_lossy(&html).into_owned();
    let assets = referenced_assets(&page);
    assert!(!assets.is_empty(), "the sign-in page names its stylesheet");
    for url in assets {
        let (status, headers, body, _) = exchange(&mut sender, request("GET", &url, ACCEPT, None)).await;
        assert_eq!(status, 200, "GET {url}");
        encoding(&headers);
        visit.assets += body.len();
        visit.headers += header_bytes(&headers);
    }
    visit.encodings = encodings;
    visit
}

/// `application/x-www-form-urlencoded` of `fields`.
fn form(fields: &[(&str, &str)]) -> Bytes {
    let enc = |v: &str| -> String {
        v.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
                b' ' => "+".to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    let text: Vec<String> = fields.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect();
    Bytes::from(text.join("&"))
}

/// The value a `Set-Cookie` of the answer gives `name`.
fn cookie_set(headers: &hyper::HeaderMap, name: &str) -> Option<String> {
    headers.get_all("set-cookie").iter().find_map(|v| {
        let rest = v.to_str().ok()?.strip_prefix(name)?.strip_prefix('=')?;
        Some(rest.split(';').next()?.to_string())
    })
}

/// One sign-in through the page forms, as a browser makes it; whether it arrived at the
/// account page.
async fn sign_in(sender: &mut Sender, user: &str) -> bool {
    sign_in_session(sender, user).await.is_some()
}

/// [`sign_in`]'s session cookie (`__Host-portcullis`), when it arrived at the account
/// page: the browser of the provider scenarios (bench/provider.rs).
pub async fn sign_in_session(sender: &mut Sender, user: &str) -> Option<String> {
    let (status, headers, html, _) = exchange(sender, request("GET", "/login", &[], None)).await;
    let html = String::from_utf8_lossy(&html);
    let token = html
        .split("name=\"login_token\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next());
    let (Some(token), Some(cookie), 200) = (token, cookie_set(&headers, "__Host-portcullis-login"), status) else {
        return None;
    };
    let post = Request::builder()
        .method("POST")
        .uri("/login")
        .header("host", "127.0.0.1")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("sec-fetch-site", "same-origin")
        .header("cookie", format!("__Host-portcullis-login={cookie}"))
        .body(Full::new(form(&[
            ("return_to", ""),
            ("login_token", token),
            ("login", user),
            ("password", PASSWORD),
        ])))
        .unwrap();
    let (status, headers, _, _) = exchange(sender, post).await;
    let to_account = headers
        .get("location")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|l| l.ends_with("/account"));
    let session = cookie_set(&headers, "__Host-portcullis").filter(|_| status == 303 && to_account)?;
    let jar = format!("__Host-portcullis={session}");
    let (status, _, page, _) = exchange(sender, request("GET", "/account", &[("cookie", &jar)], None)).await;
    (status == 200 && String::from_utf8_lossy(&page).contains(&format!("{user}@bench.example.com"))).then_some(session)
}

/// `connections` browsers signing in for `seconds`, each sign-in one sample.
async fn drive_sign_ins(
    addr: SocketAddr,
    users: Arc<Vec<String>>,
    connections: usize,
    seconds: f64,
) -> (Vec<u32>, usize, f64) {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..connections {
        let users = users.clone();
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(addr).await;
            let (mut lat, mut errors) = (Vec::with_capacity(1024), 0usize);
            while Instant::now() < deadline {
                let t = Instant::now();
                if sign_in(&mut sender, &users[c % users.len()]).await {
                    lat.push(t.elapsed().as_micros() as u32);
                } else {
                    errors += 1;
                    sender = connect(addr).await;
                }
            }
            (lat, errors)
        }));
    }
    gather(tasks, started).await
}

/// The page sign-in and `POST /auth/login` on a server with cheap hashing, in three
/// turns each (sign-in, API, sign-in, ...), as `interleaved` does for single requests.
pub async fn sign_in_scenarios(addr: SocketAddr, connections: usize, seconds: f64) -> Vec<Stats> {
    let users = Arc::new(seed_users(addr, "page", connections.min(64)).await);
    let rounds = 3;
    let turn = seconds / f64::from(rounds);
    let (mut page, mut api) = ((Vec::new(), 0, 0.0, 0.0), (Vec::new(), 0, 0.0, 0.0));
    for _ in 0..rounds {
        let cpu = ServerCpu::now();
        let (lat, errors, elapsed) = drive_sign_ins(addr, users.clone(), connections, turn).await;
        page = (
            [page.0, lat].concat(),
            page.1 + errors,
            page.2 + elapsed,
            page.3 + cpu.elapsed(),
        );
        let cpu = ServerCpu::now();
        let u = users.clone();
        let make: MakeRequest = Arc::new(move |c, _| {
            request(
                "POST",
                "/auth/login",
                &[],
                Some(json!({"username": u[c % u.len()], "password": PASSWORD})),
            )
        });
        let (lat, errors, elapsed) = drive(addr, connections, turn, 200, make).await;
        api = (
            [api.0, lat].concat(),
            api.1 + errors,
            api.2 + elapsed,
            api.3 + cpu.elapsed(),
        );
    }
    vec![
        Stats::from(SIGN_IN_ROW, page.0, page.1, page.2).with_cpu_seconds(page.3),
        Stats::from(API_LOGIN_ROW, api.0, api.1, api.2).with_cpu_seconds(api.3),
    ]
}

pub const SIGN_IN_ROW: &str = "page sign-in: GET /login, POST /login, GET /account [sqlite, cheap hashing]";
pub const API_LOGIN_ROW: &str = "POST /auth/login [sqlite, cheap hashing]";
