//! The OpenID provider under load (`BENCH_ONLY=provider`): the token endpoint
//! (client_credentials; code exchange, with codes minted beforehand through the real
//! authorize flow of a signed-in browser), userinfo, introspection, and a whole code
//! flow (authorize with the browser's session, then the code at the token endpoint),
//! each against panva's `oidc-provider` (OpenID-certified; Node, its default in-memory
//! adapter, `tests/oidc-provider/complete.mjs`) started here in the same run, with its
//! throughput, server CPU a request and peak RSS.
//!
//! Portcullis runs the same scenarios through the same [`Target`] on a SQLite server of
//! its own (cheap hashing, as the pages' sign-in server: no scenario hashes a password,
//! so its peak RSS is the provider's and not argon2id's work areas); its clients are
//! registered through `POST /admin/clients` as an operator would, and its browser signs
//! in on the hosted page and allows once on the consent page. [`ratios`] prints
//! Portcullis ÷ oidc-provider for each scenario's throughput and for peak RSS.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use super::*;

/// The code-flow client of `complete.mjs` and its test-only secret.
const WEB: (&str, &str) = ("rp-web", "rp-web-secret-0123456789abcdef0123456789");
/// The client_credentials client of `complete.mjs`.
const SERVICE: (&str, &str) = ("rp-service", "rp-service-secret-0123456789abcdef01234");
/// Where the codes are sent; nothing listens, the redirect is read, not followed.
const REDIRECT_URI: &str = "http://127.0.0.1:9/callback";
/// A fixed PKCE pair (the challenge is BASE64URL(SHA-256(verifier))): every
/// authorization request carries the challenge, every exchange the verifier.
const VERIFIER: &str = "dBjftJeZ4CVP-mJ0tfWkHh6m9gCB6hwmNhApAyaOIjk";
const CHALLENGE: &str = "KskqF4dwcHhwNRCuCVUkg2K3HH0QCLqqsmZWvgKNq_I";

/// A provider under test: where its endpoints are, its clients, and a browser session
/// signed in there that has already consented for the code-flow client.
pub struct Target {
    pub label: &'static str,
    pub addr: SocketAddr,
    pub authorize: String,
    pub token: String,
    pub userinfo: String,
    pub introspect: String,
    pub web: (String, String),
    pub service: (String, String),
    pub scope: String,
    /// The browser's `Cookie` header.
    pub cookie: String,
}

impl Target {
    fn basic(client: &(String, String)) -> String {
        use base64::Engine;
        let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let pair = format!("{}:{}", encode(&client.0), encode(&client.1));
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
    }

    fn authorize_path(&self) -> String {
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.web.0)
            .append_pair("redirect_uri", REDIRECT_URI)
            .append_pair("scope", &self.scope)
            .append_pair("state", "bench-state")
            .append_pair("code_challenge", CHALLENGE)
            .append_pair("code_challenge_method", "S256")
            .finish();
        format!("{}?{query}", self.authorize)
    }

    fn form(&self, path: &str, auth: &str, form: &[(&str, &str)]) -> Request<Body> {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        Request::builder()
            .method("POST")
            .uri(path)
            .header("host", self.addr.to_string())
            .header("authorization", auth)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(body)))
            .unwrap()
    }

    fn exchange_request(&self, code: &str) -> Request<Body> {
        let auth = Self::basic(&self.web);
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", VERIFIER),
        ];
        self.form(&self.token, &auth, &form)
    }

    fn authorize_request(&self) -> Request<Body> {
        Request::builder()
            .uri(self.authorize_path())
            .header("host", self.addr.to_string())
            .header("cookie", &self.cookie)
            .body(Full::new(Bytes::new()))
            .unwrap()
    }
}

/// The code in a redirect to the client.
fn code_of(headers: &hyper::HeaderMap) -> Option<String> {
    let location = headers.get("location")?.to_str().ok()?;
    let url = reqwest::Url::parse(location).ok()?;
    url.query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
}

/// One iteration of a multi-request scenario on a connection: the connection back,
/// and whether it succeeded (`None`: no work left).
type Step = Arc<dyn Fn(Sender, usize) -> Pin<Box<dyn Future<Output = (Sender, Option<bool>)> + Send>> + Send + Sync>;

/// Runs `step` on `connections` connections until `seconds` pass or the work runs out;
/// each iteration's whole latency is one sample.
async fn drive_steps(name: String, addr: SocketAddr, connections: usize, seconds: f64, step: Step) -> Stats {
    let cpu = ServerCpu::now();
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..connections {
        let step = step.clone();
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(addr).await;
            let (mut lat, mut errors) = (Vec::new(), 0usize);
            while Instant::now() < deadline {
                let t = Instant::now();
                let (back, outcome) = step(sender, c).await;
                sender = back;
                match outcome {
                    None => break,
                    Some(true) => lat.push(t.elapsed().as_micros() as u32),
                    Some(false) => {
                        errors += 1;
                        sender = connect(addr).await;
                    }
                }
            }
            (lat, errors)
        }));
    }
    let (latencies, errors, elapsed) = gather(tasks, started).await;
    Stats::from(&name, latencies, errors, elapsed).with_cpu(cpu)
}

/// Codes minted by the signed-in browser for `seconds` on every connection.
async fn mint_codes(t: &Arc<Target>, connections: usize, seconds: f64) -> Vec<String> {
    let codes: Arc<Mutex<Vec<String>>> = Arc::default();
    let (target, sink) = (t.clone(), codes.clone());
    let step: Step = Arc::new(move |mut sender, _| {
        let (t, sink) = (target.clone(), sink.clone());
        Box::pin(async move {
            let (status, headers, _, _) = exchange(&mut sender, t.authorize_request()).await;
            let code = code_of(&headers).filter(|_| (300..400).contains(&status));
            let ok = code.is_some();
            sink.lock().unwrap().extend(code);
            (sender, Some(ok))
        })
    });
    let minted = drive_steps("minting codes".into(), t.addr, connections, seconds, step).await;
    assert_eq!(
        minted.errors, 0,
        "[{}] the authorize endpoint did not redirect with a code",
        t.label
    );
    std::mem::take(&mut *codes.lock().unwrap())
}

/// Every provider scenario against `t`.
pub async fn scenarios(t: Target, connections: usize, seconds: f64) -> Vec<Stats> {
    let t = Arc::new(t);
    let tag = |n: &str| format!("{n} [{}]", t.label);
    let mut rows = Vec::new();

    // An access token (and the browser's consent) from one code flow.
    let mut sender = connect(t.addr).await;
    let (status, headers, body, _) = exchange(&mut sender, t.authorize_request()).await;
    let code = code_of(&headers).unwrap_or_else(|| panic!("[{}] authorize: {status} {body:?}", t.label));
    let (status, body, _) = send(&mut sender, t.exchange_request(&code)).await;
    let tokens: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    assert_eq!(status, 200, "[{}] code exchange: {tokens}", t.label);
    let bearer = format!("Bearer {}", tokens["access_token"].as_str().unwrap());
    let access = tokens["access_token"].as_str().unwrap().to_string();

    let (service, web) = (Target::basic(&t.service), Target::basic(&t.web));
    let mut singles: Vec<(String, u16, MakeRequest)> = Vec::new();
    let p = t.clone();
    singles.push((
        tag("POST token (client_credentials)"),
        200,
        Arc::new(move |_, _| p.form(&p.token, &service, &[("grant_type", "client_credentials")])),
    ));
    let p = t.clone();
    singles.push((
        tag("GET userinfo"),
        200,
        Arc::new(move |_, _| {
            Request::builder()
                .uri(&p.userinfo)
                .header("host", p.addr.to_string())
                .header("authorization", &bearer)
                .body(Full::new(Bytes::new()))
                .unwrap()
        }),
    ));
    let p = t.clone();
    singles.push((
        tag("POST introspect (access token)"),
        200,
        Arc::new(move |_, _| p.form(&p.introspect, &web, &[("token", &access)])),
    ));
    rows.extend(interleaved(t.addr, connections, seconds, 3, singles, || {}).await);

    // Code exchange: each code once, until they run out.
    let codes = Arc::new(Mutex::new(mint_codes(&t, connections, seconds).await));
    let minted = codes.lock().unwrap().len();
    let p = t.clone();
    let step: Step = Arc::new(move |mut sender, _| {
        let (p, codes) = (p.clone(), codes.clone());
        Box::pin(async move {
            let Some(code) = codes.lock().unwrap().pop() else {
                return (sender, None);
            };
            let (status, _, _) = send(&mut sender, p.exchange_request(&code)).await;
            (sender, Some(status == 200))
        })
    });
    let exchanged = drive_steps(tag("POST token (code exchange)"), t.addr, connections, seconds, step).await;
    assert!(
        exchanged.requests + exchanged.errors >= minted || exchanged.seconds >= seconds,
        "[{}] the code exchange stopped early",
        t.label
    );
    rows.push(exchanged);

    // The whole code flow: authorize with the session, then the token endpoint.
    let p = t.clone();
    let step: Step = Arc::new(move |mut sender, _| {
        let p = p.clone();
        Box::pin(async move {
            let (status, headers, _, _) = exchange(&mut sender, p.authorize_request()).await;
            let Some(code) = code_of(&headers).filter(|_| (300..400).contains(&status)) else {
                return (sender, Some(false));
            };
            let (status, _, _) = send(&mut sender, p.exchange_request(&code)).await;
            (sender, Some(status == 200))
        })
    });
    rows.push(drive_steps(tag("code flow (authorize + token)"), t.addr, connections, seconds, step).await);
    rows
}

/// The scenarios' names, without their target's tag: the rows [`ratios`] pairs up.
const SCENARIOS: [&str; 5] = [
    "POST token (client_credentials)",
    "GET userinfo",
    "POST introspect (access token)",
    "POST token (code exchange)",
    "code flow (authorize + token)",
];
const PORTCULLIS: &str = "Portcullis";
const NODE: &str = "oidc-provider";

/// The bootstrap admin of the Portcullis provider server (bench-only).
const ADMIN_PASSWORD: &str = "Bench-Provider-Operator-0123456789";

/// The settings of the Portcullis server the provider scenarios run against, beside
/// cheap hashing: an admin to register the clients with, without a second factor.
pub const PORTCULLIS_ENV: [(&str, &str); 3] = [
    ("PORTCULLIS_ADMIN_PASSWORD", ADMIN_PASSWORD),
    ("MFA_REQUIRED_ROLES", "none"),
    ("MFA_STEP_UP_MAX_AGE_SECONDS", "0"),
];

/// Portcullis at `addr` as a [`Target`]: the code-flow and service clients registered
/// through the admin API, a browser signed in through the page that has allowed the
/// code-flow client on the consent page (so every later authorization redirects).
pub async fn portcullis_target(addr: SocketAddr) -> Target {
    let admin = login(addr, "admin", ADMIN_PASSWORD).await;
    let bearer = format!("Bearer {}", admin["access_token"].as_str().unwrap());
    let mut secrets = Vec::new();
    for spec in [
        json!({"client_id": WEB.0, "name": "Bench web app", "redirect_uris": [REDIRECT_URI]}),
        json!({"client_id": SERVICE.0, "name": "Bench service", "grant_types": ["client_credentials"], "scopes": ["profile"]}),
    ] {
        let (status, body) = json_call(
            addr,
            "POST",
            "/admin/clients",
            &[("authorization", &bearer)],
            Some(spec),
        )
        .await;
        assert_eq!(status, 201, "[{PORTCULLIS}] registering a client: {body}");
        secrets.push(body["client_secret"].as_str().unwrap().to_string());
    }
    let user = seed_users(addr, "provider", 1).await.remove(0);
    let mut sender = connect(addr).await;
    let session = pages::sign_in_session(&mut sender, &user)
        .await
        .unwrap_or_else(|| panic!("[{PORTCULLIS}] the page sign-in failed"));
    let t = Target {
        label: PORTCULLIS,
        addr,
        authorize: "/oauth2/authorize".into(),
        token: "/oauth2/token".into(),
        userinfo: "/oauth2/userinfo".into(),
        introspect: "/oauth2/introspect".into(),
        web: (WEB.0.into(), secrets[0].clone()),
        service: (SERVICE.0.into(), secrets[1].clone()),
        scope: "openid profile email".into(),
        cookie: format!("__Host-portcullis={session}"),
    };
    // The consent page's form: its hidden fields (nothing in them needs unescaping:
    // the bench's values are plain) and the allow button.
    let (status, _, page, _) = exchange(&mut sender, t.authorize_request()).await;
    let page = String::from_utf8_lossy(&page).into_owned();
    assert_eq!(status, 200, "[{PORTCULLIS}] the consent page: {page}");
    let mut fields: Vec<(String, String)> = page
        .split("<input type=\"hidden\" name=\"")
        .skip(1)
        .filter_map(|piece| {
            let (name, rest) = piece.split_once('"')?;
            let value = rest.split("value=\"").nth(1)?.split('"').next()?;
            Some((name.to_string(), value.to_string()))
        })
        .collect();
    fields.push(("decision".into(), "allow".into()));
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&fields)
        .finish();
    let allow = Request::builder()
        .method("POST")
        .uri(&t.authorize)
        .header("host", addr.to_string())
        .header("cookie", &t.cookie)
        .header("sec-fetch-site", "same-origin")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let (status, headers, body, _) = exchange(&mut sender, allow).await;
    assert!(
        status == 303 && code_of(&headers).is_some(),
        "[{PORTCULLIS}] allowing on the consent page: {status} {body:?}"
    );
    t
}

/// Portcullis ÷ oidc-provider: each scenario's throughput, then peak RSS (KiB).
pub fn ratios(rows: &[Stats], portcullis_kib: Option<u64>, node_kib: Option<u64>) -> Vec<(String, String)> {
    let rps = |label: &str, scenario: &str| {
        rows.iter()
            .find(|r| r.name == format!("{scenario} [{label}]"))
            .map(Stats::rps)
    };
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "–".to_string(),
    };
    let mut out: Vec<(String, String)> = SCENARIOS
        .iter()
        .map(|s| {
            (
                format!("provider: {s}, {PORTCULLIS} ÷ {NODE} req/s"),
                ratio(rps(PORTCULLIS, s), rps(NODE, s)),
            )
        })
        .collect();
    let mb = |k: Option<u64>| k.map_or("–".to_string(), |k| format!("{:.1} MB", k as f64 / 1024.0));
    out.push((
        format!("provider: peak RSS, {PORTCULLIS} (SQLite, cheap hashing) ÷ {NODE} (Node, in-memory adapter)"),
        format!(
            "{} ÷ {} = {}",
            mb(portcullis_kib),
            mb(node_kib),
            ratio(portcullis_kib.map(|k| k as f64), node_kib.map(|k| k as f64))
        ),
    ));
    out
}

/// Where panva's `oidc-provider` is installed (`PORTCULLIS_TEST_OIDC_PROVIDER`, else
/// `tests/oidc-provider`), or why it cannot run.
pub fn oidc_provider_dir() -> Result<PathBuf, String> {
    let dir = match std::env::var_os("PORTCULLIS_TEST_OIDC_PROVIDER") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oidc-provider"),
    };
    if dir.join("node_modules/oidc-provider/package.json").is_file() && dir.join("complete.mjs").is_file() {
        Ok(dir)
    } else {
        Err(format!(
            "oidc-provider and complete.mjs are not both in {} (run .ci/setup-node.sh)",
            dir.display()
        ))
    }
}

/// `oidc-provider` under Node, killed when dropped.
pub struct NodeProvider {
    child: Child,
    pub issuer: String,
}

impl NodeProvider {
    pub fn start(dir: &Path) -> Self {
        use std::io::BufRead;
        let mut child = Command::new("node")
            .arg("complete.mjs")
            .current_dir(dir)
            .env("OP_REDIRECT_URI", REDIRECT_URI)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node runs (it is installed with oidc-provider)");
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        while out.read_line(&mut line).unwrap_or(0) > 0 && !line.starts_with("issuer=") {
            line.clear();
        }
        let issuer = line
            .trim()
            .strip_prefix("issuer=")
            .expect("oidc-provider listens")
            .to_string();
        // Read on, so nothing it writes later meets a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        Self { child, issuer }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A `/proc/<pid>/status` field in KiB (`VmHWM:` is the peak RSS).
    pub fn status_kib(&self, field: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                let line = s.lines().find(|l| l.starts_with(field))?;
                line.split_whitespace().nth(1)?.parse().ok()
            })
            .unwrap_or(0)
    }

    /// The provider as a [`Target`], with a browser signed in through its
    /// development login form (any name) that has consented for `rp-web`.
    pub async fn target(&self) -> Target {
        let addr: SocketAddr = self.issuer.trim_start_matches("http://").parse().unwrap();
        let mut t = Target {
            label: NODE,
            addr,
            authorize: "/auth".into(),
            token: "/token".into(),
            userinfo: "/me".into(),
            introspect: "/token/introspection".into(),
            web: (WEB.0.into(), WEB.1.into()),
            service: (SERVICE.0.into(), SERVICE.1.into()),
            scope: "openid profile email".into(),
            cookie: String::new(),
        };
        t.cookie = dev_sign_in(&self.issuer, &format!("{}{}", self.issuer, t.authorize_path())).await;
        t
    }
}

impl Drop for NodeProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Walks `oidc-provider`'s development login and consent forms from an authorization
/// request until it redirects to the client; the browser's cookies then.
async fn dev_sign_in(issuer: &str, start: &str) -> String {
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut cookies: BTreeMap<String, String> = BTreeMap::new();
    let mut next = start.to_string();
    let mut form: Option<Vec<(&str, &str)>> = None;
    while next.starts_with(issuer) {
        let jar = cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let req = match form.take() {
            Some(f) => browser.post(&next).form(&f),
            None => browser.get(&next),
        };
        let res = req.header("cookie", jar).send().await.unwrap();
        for h in res.headers().get_all("set-cookie") {
            let pair = h.to_str().unwrap().split(';').next().unwrap_or_default();
            if let Some((k, v)) = pair.split_once('=') {
                cookies.insert(k.to_string(), v.to_string());
            }
        }
        if let Some(to) = res.headers().get("location") {
            next = reqwest::Url::parse(&next)
                .unwrap()
                .join(to.to_str().unwrap())
                .unwrap()
                .to_string();
            continue;
        }
        let page = res.text().await.unwrap();
        form = Some(if page.contains(r#"name="prompt" value="login""#) {
            vec![("prompt", "login"), ("login", "bench"), ("password", "any")]
        } else if page.contains(r#"name="prompt" value="consent""#) {
            vec![("prompt", "consent")]
        } else {
            panic!("oidc-provider showed a page with no known form at {next}: {page}")
        });
    }
    cookies
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}
