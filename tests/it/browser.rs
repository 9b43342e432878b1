//! The hosted pages in real headless Chromium (Debian's `chromium`), driven over the
//! DevTools protocol (chromiumoxide): sign-in with a password and with a TOTP code,
//! failures and lockout in words, signing out, a cross-site form refused, every
//! `return_to` trick kept on our origin, and no request leaving our origin.
//! Screenshots of each page at 375 and 1280 px go to `target/ui-screenshots/`, and
//! axe-core checks each page at both widths, light and dark (`assert_accessible`);
//! `PORTCULLIS_UPDATE_SCREENSHOTS=1` refreshes the ones in `docs/screenshots/`.
//!
//! One browser serves the whole test binary (each test its own browser context, so
//! cookies are not shared). Without Chromium the tests print why and pass, unless `CI`
//! or `PORTCULLIS_TEST_REQUIRE_BROWSER` is set: then they fail.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use chromiumoxide::Page;
use chromiumoxide::browser::{Browser, BrowserConfig};
use chromiumoxide::cdp::browser_protocol::emulation::{MediaFeature, SetDeviceMetricsOverrideParams};
use chromiumoxide::cdp::browser_protocol::network::EventRequestWillBeSent;
use chromiumoxide::cdp::browser_protocol::target::{CreateBrowserContextParams, CreateTargetParams};
use chromiumoxide::cdp::js_protocol::runtime::EvaluateParams;
use chromiumoxide::page::ScreenshotParams;
use futures_util::StreamExt;
use portcullis::crypto::totp;

use crate::pages::RETURN_TO_TRICKS;
use crate::support::*;

/// Every wait on the browser is bounded by this.
pub(crate) const WAIT: Duration = Duration::from_secs(20);

fn chromium_path() -> Option<std::path::PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| {
            std::env::var_os("PATH")
                .into_iter()
                .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
                .map(move |dir| dir.join(name))
        })
        .find(|p| p.is_file())
}

/// The shared browser's process id and profile directory, for `close_browser`.
static LAUNCHED: OnceLock<(u32, std::path::PathBuf)> = OnceLock::new();

/// At exit (the test harness never drops statics): ends the shared browser, whose
/// other processes follow it, and removes its profile, so no Chromium outlives the
/// test binary.
extern "C" fn close_browser() {
    if let Some((pid, dir)) = LAUNCHED.get() {
        // SAFETY: kill(2) on the child this process started.
        unsafe { libc::kill(*pid as libc::pid_t, libc::SIGTERM) };
        std::thread::sleep(Duration::from_millis(300));
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// The shared browser, launched on a thread of its own with its own runtime (each
/// test has its own runtime, which ends with the test).
pub(crate) fn browser() -> Option<&'static Browser> {
    static BROWSER: OnceLock<Option<Browser>> = OnceLock::new();
    BROWSER
        .get_or_init(|| {
            let required =
                std::env::var_os("CI").is_some() || std::env::var_os("PORTCULLIS_TEST_REQUIRE_BROWSER").is_some();
            let Some(path) = chromium_path() else {
                assert!(
                    !required,
                    "Chromium is not installed and CI or PORTCULLIS_TEST_REQUIRE_BROWSER requires it"
                );
                eprintln!("warning: Chromium not found (apt-get install chromium); skipping the browser tests");
                return None;
            };
            let dir = std::env::temp_dir().join(format!("portcullis-chromium-{}", std::process::id()));
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let config = BrowserConfig::builder()
                        .chrome_executable(path)
                        .no_sandbox()
                        .user_data_dir(&dir)
                        .args([
                            "disable-gpu",
                            "disable-quic",
                            "disable-component-update",
                            "disable-sync",
                            "no-first-run",
                            "disable-background-networking",
                        ])
                        .launch_timeout(WAIT)
                        .request_timeout(WAIT)
                        .build()
                        .unwrap();
                    let (mut browser, mut handler) = Browser::launch(config).await.expect("launch Chromium");
                    if let Some(pid) = browser.get_mut_child().and_then(|c| c.as_mut_inner().id()) {
                        let _ = LAUNCHED.set((pid, dir));
                        // SAFETY: registers a plain function to run at exit.
                        unsafe { libc::atexit(close_browser) };
                    }
                    tx.send(browser).unwrap();
                    while handler.next().await.is_some() {}
                });
            });
            Some(rx.recv_timeout(WAIT).expect("Chromium started"))
        })
        .as_ref()
}

/// A fresh page in a fresh browser context (cookies of its own), recording the URL
/// of every request it makes.
pub(crate) async fn fresh_page() -> Option<(Page, Arc<Mutex<Vec<String>>>)> {
    let browser = browser()?;
    let context = browser
        .create_browser_context(CreateBrowserContextParams::default())
        .await
        .unwrap();
    let target = CreateTargetParams::builder()
        .url("about:blank")
        .browser_context_id(context)
        .build()
        .unwrap();
    let page = browser.new_page(target).await.unwrap();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let mut events = page.event_listener::<EventRequestWillBeSent>().await.unwrap();
    let seen = requests.clone();
    tokio::spawn(async move {
        while let Some(e) = events.next().await {
            seen.lock().unwrap().push(e.request.url.clone());
        }
    });
    Some((page, requests))
}

pub(crate) fn origin(s: &TestServer) -> String {
    s.http.base.clone()
}

pub(crate) async fn goto(page: &Page, url: &str) {
    tokio::time::timeout(WAIT, page.goto(url))
        .await
        .expect("navigation in time")
        .unwrap();
}

pub(crate) async fn url_of(page: &Page) -> String {
    page.url().await.unwrap().unwrap_or_default()
}

/// Types into the page's fields and submits its form with a click, as a person would.
pub(crate) async fn submit(page: &Page, fields: &[(&str, &str)]) {
    for (selector, text) in fields {
        let field = page.find_element(*selector).await.unwrap();
        field.click().await.unwrap();
        field.type_str(*text).await.unwrap();
    }
    click_and_wait(page, "button[type=submit]").await;
}

/// Fills in and submits the sign-in form.
pub(crate) async fn sign_in_form(page: &Page, login: &str, password: &str) {
    submit(page, &[("#login", login), ("#password", password)]).await;
}

/// Clicks and waits until a new document has loaded: the old one is marked first, so
/// a navigation that has not begun yet is not mistaken for one that has finished.
pub(crate) async fn click_and_wait(page: &Page, selector: &str) {
    page.evaluate("window.__old_document = true").await.unwrap();
    page.find_element(selector).await.unwrap().click().await.unwrap();
    arrived(page).await;
}

/// Waits (bounded) until the document marked by the caller has been replaced and the
/// new one has loaded.
pub(crate) async fn arrived(page: &Page) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let state = page
            .evaluate("window.__old_document === undefined && document.readyState === 'complete'")
            .await
            .ok()
            .and_then(|r| r.into_value::<bool>().ok());
        if state == Some(true) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "no new page within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) async fn text_of(page: &Page) -> String {
    page.content().await.unwrap()
}

/// Screenshots at a phone's and a desktop's width, each width checked by axe
/// (`assert_accessible`), so every page a browser test shows is checked at both.
pub(crate) async fn screenshots(page: &Page, name: &str) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    for width in [375, 1280] {
        page.execute(SetDeviceMetricsOverrideParams::new(width, 800, 1.0, width < 500))
            .await
            .unwrap();
        let png = page
            .screenshot(ScreenshotParams::builder().full_page(true).build())
            .await
            .unwrap();
        assert!(png.len() > 1000, "a screenshot of {name}");
        std::fs::write(dir.join(format!("{name}-{width}.png")), png).unwrap();
        assert_accessible(page, &format!("{name}-{width}")).await;
    }
}

/// With `PORTCULLIS_UPDATE_SCREENSHOTS=1`, writes the page as it is now, 1280 px wide,
/// to `docs/screenshots/<file>.png`, the pictures README.md and docs/pages.md show;
/// otherwise does nothing, so a test run never changes a committed file by itself.
pub(crate) async fn screenshot_for_docs(page: &Page, file: &str) {
    if std::env::var_os("PORTCULLIS_UPDATE_SCREENSHOTS").is_none_or(|v| v == "0") {
        return;
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    page.execute(SetDeviceMetricsOverrideParams::new(1280, 640, 1.0, false))
        .await
        .unwrap();
    let png = page.screenshot(ScreenshotParams::builder().build()).await.unwrap();
    std::fs::write(dir.join(format!("{file}.png")), png).unwrap();
}

/// axe-core's `axe.min.js` (Deque's accessibility rules, npm `axe-core`, pinned in
/// `tests/axe/package-lock.json`): `PORTCULLIS_TEST_AXE` names it (`.ci/run` sets it
/// after `.ci/setup-node.sh`), else `tests/axe/node_modules` when installed. Without
/// it: `None` with a warning, or a failure when `CI` or
/// `PORTCULLIS_TEST_REQUIRE_BROWSER` is set, as for Chromium itself.
fn axe_script() -> Option<&'static str> {
    static AXE: OnceLock<Option<String>> = OnceLock::new();
    AXE.get_or_init(|| {
        let path = match std::env::var_os("PORTCULLIS_TEST_AXE") {
            Some(p) => std::path::PathBuf::from(p),
            None => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/axe/node_modules/axe-core/axe.min.js"),
        };
        match std::fs::read_to_string(&path) {
            Ok(script) => Some(script),
            Err(e) => {
                let required = std::env::var_os("CI").is_some()
                    || std::env::var_os("PORTCULLIS_TEST_REQUIRE_BROWSER").is_some();
                assert!(
                    !required,
                    "axe-core is not at {} ({e}); run .ci/setup-node.sh (CI or PORTCULLIS_TEST_REQUIRE_BROWSER requires it)",
                    path.display()
                );
                eprintln!(
                    "warning: axe-core not at {} ({e}); run .ci/setup-node.sh; skipping the accessibility checks",
                    path.display()
                );
                None
            }
        }
    })
    .as_deref()
}

/// Runs axe-core on the page as it is now, in the light and the dark colour scheme,
/// and fails listing every violation of impact serious or critical (rule, help, and
/// each node with axe's summary); milder ones are printed. The script goes in through
/// DevTools (`Runtime.evaluate`), which the page's CSP (no script at all) does not
/// govern: the pages stay exactly as served, and a `<script>` the page itself tried to
/// add would still be refused.
pub(crate) async fn assert_accessible(page: &Page, name: &str) {
    let Some(script) = axe_script() else {
        return;
    };
    let loaded = page
        .evaluate_expression("typeof window.axe === 'object'")
        .await
        .unwrap()
        .into_value::<bool>()
        .unwrap_or(false);
    if !loaded {
        page.evaluate_expression(EvaluateParams::builder().expression(script).build().unwrap())
            .await
            .expect("axe-core loads in the page through DevTools");
    }
    let mut serious = Vec::new();
    for scheme in ["light", "dark"] {
        page.emulate_media_features(vec![MediaFeature::new("prefers-color-scheme", scheme)])
            .await
            .unwrap();
        let found: Vec<serde_json::Value> = page
            .evaluate_expression(AXE_RUN)
            .await
            .unwrap_or_else(|e| panic!("axe.run on {name}: {e}"))
            .into_value()
            .unwrap();
        for v in found {
            let line = format!(
                "{name} ({scheme}): {} [{}] {}\n    {}",
                v["id"].as_str().unwrap_or_default(),
                v["impact"].as_str().unwrap_or_default(),
                v["help"].as_str().unwrap_or_default(),
                v["nodes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|n| n.as_str())
                    .collect::<Vec<_>>()
                    .join("\n    ")
            );
            match v["impact"].as_str() {
                Some("serious" | "critical") => serious.push(line),
                _ => eprintln!("axe (not failing): {line}"),
            }
        }
    }
    page.emulate_media_features(Vec::new()).await.unwrap();
    assert!(serious.is_empty(), "axe-core violations:\n{}", serious.join("\n"));
}

/// axe's run over the whole document, reduced to what a failure message needs.
const AXE_RUN: &str = r#"axe.run(document, { resultTypes: ['violations'] }).then(r => r.violations.map(v => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.map(n => n.target.join(' ') + ': ' + (n.failureSummary || '').replace(/\s+/g, ' '))
})))"#;

/// Every URL the page requested was ours.
pub(crate) fn only_our_origin(s: &TestServer, requests: &Mutex<Vec<String>>) {
    let requests = requests.lock().unwrap();
    assert!(!requests.is_empty());
    for url in requests.iter() {
        assert!(
            url.starts_with(&format!("{}/", origin(s))) || url == "about:blank",
            "request to {url}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_with_a_password_and_sign_out_in_chromium() {
    for backend in backends().await {
        let Some((page, requests)) = fresh_page().await else {
            return;
        };
        let (s, _db) = TestServer::start(backend).await;
        s.register("erin").await;
        let base = origin(&s);

        // The account page sends a stranger to sign in, and back afterwards.
        goto(&page, &format!("{base}/account")).await;
        assert_eq!(url_of(&page).await, format!("{base}/login?return_to=%2Faccount"));
        screenshots(&page, &format!("login-{backend:?}")).await;
        if backend == Backend::Sqlite {
            screenshot_for_docs(&page, "sign-in").await;
        }

        // A wrong password: the uniform message, nothing about which part was wrong.
        sign_in_form(&page, "erin", "not the password").await;
        let html = text_of(&page).await;
        assert!(html.contains("Invalid username or password."), "{html}");
        screenshots(&page, &format!("login-failed-{backend:?}")).await;

        // The right one, typed again (the page keeps the name).
        submit(&page, &[("#password", PASSWORD)]).await;
        assert_eq!(url_of(&page).await, format!("{base}/account"));
        let html = text_of(&page).await;
        assert!(html.contains("erin@example.com"), "{html}");
        screenshots(&page, &format!("account-{backend:?}")).await;
        if backend == Backend::Sqlite {
            screenshot_for_docs(&page, "account").await;
        }

        // Sign out: the session is over, and the account page is out of reach.
        click_and_wait(&page, "#sign-out").await;
        assert_eq!(url_of(&page).await, format!("{base}/login?signed_out=1"));
        assert!(text_of(&page).await.contains("You have been signed out."));
        goto(&page, &format!("{base}/account")).await;
        assert!(url_of(&page).await.starts_with(&format!("{base}/login")));
        only_our_origin(&s, &requests);
        page.close().await.unwrap();
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_with_a_totp_code_in_chromium() {
    for backend in backends().await {
        let Some((page, requests)) = fresh_page().await else {
            return;
        };
        let (s, _db) = TestServer::start(backend).await;
        let t = s.user("frank").await;
        let (secret, _) = crate::mfa::enrol(&s, &t.access).await;
        let base = origin(&s);
        goto(&page, &format!("{base}/login")).await;
        sign_in_form(&page, "frank", PASSWORD).await;
        assert_eq!(url_of(&page).await, format!("{base}/login/code?return_to="));
        screenshots(&page, &format!("code-{backend:?}")).await;
        // The code step after the one enrolment used, so it is not a replay.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let code = totp::code_at(&secret, now + totp::STEP).unwrap();
        submit(&page, &[("#code", &code)]).await;
        assert_eq!(
            url_of(&page).await,
            format!("{base}/account"),
            "{}",
            text_of(&page).await
        );
        assert!(text_of(&page).await.contains("frank@example.com"));
        only_our_origin(&s, &requests);
        page.close().await.unwrap();
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockout_return_to_and_cross_site_forms_in_chromium() {
    let lockout = [
        ("LOGIN_LOCKOUT_THRESHOLD", "2"),
        ("LOGIN_LOCKOUT_SECONDS", "90"),
        ("LOGIN_LOCKOUT_MAX_SECONDS", "120"),
    ];
    let Some((page, requests)) = fresh_page().await else {
        return;
    };
    let (s, _db) = TestServer::start_with(Backend::Sqlite, &lockout).await;
    s.register("grace").await;
    let base = origin(&s);

    // Every return_to trick lands on our own account page.
    for trick in RETURN_TO_TRICKS {
        let encoded: String = url_encode(trick);
        goto(&page, &format!("{base}/login?return_to={encoded}")).await;
        sign_in_form(&page, "grace", PASSWORD).await;
        assert_eq!(url_of(&page).await, format!("{base}/account"), "{trick:?}");
        click_and_wait(&page, "#sign-out").await;
    }

    // A page of another origin on this host (the same site, so the Lax cookie goes
    // along) posts a form to "sign out everywhere": refused, nothing changes.
    goto(&page, &format!("{base}/login")).await;
    sign_in_form(&page, "grace", PASSWORD).await;
    let evil = evil_site(&format!("{base}/logout")).await;
    page.evaluate("window.__old_document = true").await.unwrap();
    goto(&page, &evil).await;
    // The evil page loads, then its form posts: wait for the answer to that post.
    let deadline = tokio::time::Instant::now() + WAIT;
    while !url_of(&page).await.starts_with(&base) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cross-site form was not posted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    arrived(&page).await;
    let html = text_of(&page).await;
    assert!(html.contains("cross-site form posts are refused"), "{html}");
    screenshots(&page, "refused-cross-site").await;
    goto(&page, &format!("{base}/account")).await;
    assert_eq!(url_of(&page).await, format!("{base}/account"), "still signed in");
    only_our_origin_except(&s, &requests, &evil);

    // Our own form without its CSRF token (removed through DevTools): refused too.
    page.evaluate("document.querySelector('#sign-out').form.querySelector('[name=csrf]').remove()")
        .await
        .unwrap();
    click_and_wait(&page, "#sign-out").await;
    let html = text_of(&page).await;
    assert!(html.contains("CSRF token is missing or wrong"), "{html}");
    screenshots(&page, "refused-csrf").await;
    goto(&page, &format!("{base}/account")).await;
    assert_eq!(url_of(&page).await, format!("{base}/account"), "still signed in");

    // Lockout, in words.
    click_and_wait(&page, "#sign-out").await;
    for _ in 0..2 {
        goto(&page, &format!("{base}/login")).await;
        sign_in_form(&page, "grace", "wrong").await;
    }
    goto(&page, &format!("{base}/login")).await;
    sign_in_form(&page, "grace", PASSWORD).await;
    let html = text_of(&page).await;
    assert!(html.contains("Too many attempts, try again in 2 minutes."), "{html}");
    screenshots(&page, "login-locked").await;
    page.close().await.unwrap();
    s.stop().await;
}

pub(crate) fn url_encode(text: &str) -> String {
    text.bytes().map(|b| format!("%{b:02X}")).collect()
}

pub(crate) fn only_our_origin_except(s: &TestServer, requests: &Mutex<Vec<String>>, evil: &str) {
    let evil_origin: String = evil.split('/').take(3).collect::<Vec<_>>().join("/");
    let ours: Vec<String> = requests
        .lock()
        .unwrap()
        .iter()
        .filter(|u| !u.starts_with(&evil_origin))
        .cloned()
        .collect();
    only_our_origin(s, &Mutex::new(ours));
}

/// A one-page site on another port of 127.0.0.1 whose page posts a form to `target`
/// as soon as it loads; its URL.
pub(crate) async fn evil_site(target: &str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let html = format!(
        "<!doctype html><html><body><form id=f method=post action=\"{target}\"><input name=csrf value=guess><input name=everywhere value=1></form>\
         <script>document.getElementById('f').submit()</script></body></html>"
    );
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut conn, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf).await;
            let reply = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{html}",
                html.len()
            );
            let _ = conn.write_all(reply.as_bytes()).await;
        }
    });
    format!("http://{addr}/")
}
