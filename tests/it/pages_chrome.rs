//! The hosted pages' front matter over plain HTTP: registration (on and off, page and
//! API alike; the policy explained, a weak password's feedback), error answers as
//! pages on page paths and problems on the API's, branding from the settings (and bad
//! values refused at start), and the language switcher. `browser_chrome.rs` drives
//! the same in Chromium.

use serde_json::json;

use crate::pages::{SAME_ORIGIN, get_page, set_cookie};
use crate::support::*;

/// What a browser's navigation asks for.
pub const BROWSER_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

/// A registration form posted as the `/register` page gives it to a browser: with the
/// form token the page set in its cookie. The answer and the token.
pub async fn post_register(s: &TestServer, fields: &[(&str, &str)], headers: &[(&str, &str)]) -> Reply {
    let page = get_page(s, "/register", None).await;
    assert_eq!(page.status, 200, "{}", page.text);
    let (token, _) = set_cookie(&page, "__Host-portcullis-login").expect("the page sets its form token");
    assert!(page.text.contains(&format!("name=\"login_token\" value=\"{token}\"")));
    let jar = format!("__Host-portcullis-login={token}");
    let mut all = headers.to_vec();
    all.push(("cookie", &jar));
    let mut form = fields.to_vec();
    form.push(("login_token", &token));
    s.http
        .call_with(M::POST, "/register", Anonymous, Form(&form), &all)
        .await
}

fn form_for<'a>(name: &'a str, email: &'a str, password: &'a str) -> Vec<(&'static str, &'a str)> {
    vec![
        ("username", name),
        ("email", email),
        ("password", password),
        ("password_repeat", password),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registering_on_the_page_signs_in_and_the_switch_governs_page_and_api() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        // On by default: the sign-in page offers it, the page explains the policy.
        let login = get_page(&s, "/login", None).await;
        assert!(login.text.contains("href=\"/register\""), "{}", login.text);
        let page = get_page(&s, "/register", None).await;
        assert_eq!(page.status, 200);
        assert!(
            page.text.contains("At least 8 and at most 128 characters"),
            "{}",
            page.text
        );
        assert!(page.text.contains("aria-describedby=\"password-policy\""));
        for field in ["username", "email", "full_name", "password", "password_repeat"] {
            assert!(page.text.contains(&format!("<label for=\"{field}\">")), "{field}");
        }
        let res = post_register(
            &s,
            &[
                form_for("ivy", "ivy@example.com", PASSWORD),
                vec![("full_name", "Ivy Example")],
            ]
            .concat(),
            SAME_ORIGIN,
        )
        .await;
        assert_eq!(res.status, 303, "{}", res.text);
        assert_eq!(res.header("location"), Some("/account"));
        let (cookie, _) = set_cookie(&res, "__Host-portcullis").expect("signed in");
        let account = get_page(&s, "/account", Some(&cookie)).await;
        assert!(
            account.text.contains(">ivy<") && account.text.contains("value=\"ivy@example.com\""),
            "{}",
            account.text
        );
        // The account is the API's like any other; its session is in the list.
        let api = s.login_as("ivy", PASSWORD).await;
        let me = s.get_auth("/auth/me", &api.access).await.json();
        assert_eq!(me["full_name"], "Ivy Example", "{me}");
        assert_eq!(
            s.get_auth("/auth/sessions", &api.access)
                .await
                .json()
                .as_array()
                .unwrap()
                .len(),
            2
        );
        // Signed in, the page sends the browser on.
        assert_eq!(get_page(&s, "/register", Some(&cookie)).await.status, 303);
        // A form without the page's token (login CSRF) creates nothing.
        let form = form_for("mallory", "mallory@example.com", PASSWORD);
        let res = s
            .http
            .call_with(M::POST, "/register", Anonymous, Form(&form), &[("origin", "null")])
            .await;
        assert_eq!(res.status, 403, "{}", res.text);
        assert_eq!(s.login("mallory", PASSWORD).await.status, 401);
        s.stop().await;

        // Off: neither the page nor the API registers anyone, and nothing links to it.
        let (s, _db) = TestServer::start_with(backend, &[("REGISTRATION_ENABLED", "false")]).await;
        let login = get_page(&s, "/login", None).await;
        assert!(!login.text.contains("/register"), "{}", login.text);
        let page = s
            .http
            .call_with(M::GET, "/register", Anonymous, Empty, &[("accept", BROWSER_ACCEPT)])
            .await;
        assert_eq!(page.status, 404);
        assert!(page.text.contains("Page not found"), "{}", page.text);
        let form = form_for("jack", "jack@example.com", PASSWORD);
        let res = s
            .http
            .call_with(M::POST, "/register", Anonymous, Form(&form), SAME_ORIGIN)
            .await;
        assert_eq!(res.status, 403, "{}", res.text);
        let api = s
            .post_json(
                "/auth/register",
                &json!({"username": "jack", "email": "jack@example.com", "password": PASSWORD}),
            )
            .await;
        let problem = expect_problem(api, 403);
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("self-registration is switched off")
        );
        assert_eq!(s.login("jack", PASSWORD).await.status, 401, "no account was made");
        // Administrators still create accounts.
        let admin = s.login_as("admin", ADMIN_PASSWORD).await;
        assert!(admin.access.len() > 10);
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_registration_says_why_and_keeps_what_was_typed() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        // A guessable password: the strength estimate's own feedback, 422, no account.
        let res = post_register(&s, &form_for("kim", "kim@example.com", "password123"), SAME_ORIGIN).await;
        assert_eq!(res.status, 422, "{}", res.text);
        assert!(res.text.contains("Password: is too easy to guess"), "{}", res.text);
        assert!(res.text.contains("common password"), "zxcvbn's warning: {}", res.text);
        assert!(res.text.contains("value=\"kim\"") && res.text.contains("value=\"kim@example.com\""));
        assert!(!res.text.contains("password123"), "the password is not echoed");
        assert!(set_cookie(&res, "__Host-portcullis").is_none());
        assert_eq!(s.login("kim", "password123").await.status, 401);
        // The same words the API gives (one rule).
        let api = s
            .post_json(
                "/auth/register",
                &json!({"username": "kim", "email": "kim@example.com", "password": "password123"}),
            )
            .await;
        let detail = expect_problem(api, 422)["errors"][0]["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            res.text.contains(&detail.replace('\'', "&#39;")),
            "{detail} in {}",
            res.text
        );
        // In German, the frame and the reasons are German (from the catalogue, by the
        // error's code), zxcvbn's advice included; the API still answers in English.
        let mut de = SAME_ORIGIN.to_vec();
        de.push(("accept-language", "de"));
        let res = post_register(&s, &form_for("kim", "kim@example.com", "short"), &de).await;
        assert_eq!(res.status, 422);
        assert!(
            res.text.contains("Passwort: muss mindestens 8 Zeichen lang sein"),
            "{}",
            res.text
        );
        assert!(!res.text.contains("must be at least"), "{}", res.text);
        assert!(res.text.contains("<html lang=\"de\">"));
        let res = post_register(&s, &form_for("kim", "kim@example.com", "password123"), &de).await;
        assert_eq!(res.status, 422);
        assert!(
            res.text.contains("Passwort: ist zu leicht zu erraten: "),
            "{}",
            res.text
        );
        assert!(res.text.contains("häufig"), "zxcvbn's warning in German: {}", res.text);
        assert!(
            res.text
                .contains("(Fügen Sie ein oder zwei Wörter hinzu. Ungewöhnliche Wörter sind besser.)"),
            "zxcvbn's suggestion in German: {}",
            res.text
        );
        for english in ["too easy", "common password", "Add another word"] {
            assert!(!res.text.contains(english), "{english}: {}", res.text);
        }
        let api_de = |password: &'static str| {
            let body = json!({"username": "kim", "email": "kim@example.com", "password": password});
            let headers = [("accept-language", "de")];
            let s = &s;
            async move {
                let res = s
                    .http
                    .call_with(M::POST, "/auth/register", Anonymous, Json(body), &headers)
                    .await;
                expect_problem(res, 422)
            }
        };
        let short = api_de("short").await;
        assert_eq!(
            short["errors"],
            json!([{"field": "password", "message": "must be at least 8 characters", "code": "password_too_short"}]),
            "{short}"
        );
        assert_eq!(short["detail"], "password: must be at least 8 characters");
        let weak = api_de("password123").await;
        assert_eq!(weak["errors"][0]["message"], json!(detail), "{weak}");
        assert_eq!(weak["errors"][0]["code"], "password_guessable", "{weak}");
        // Two passwords that differ; a bad e-mail and name together.
        let mut form = form_for("kim", "kim@example.com", PASSWORD);
        form[3] = ("password_repeat", "something else entirely");
        let res = post_register(&s, &form, SAME_ORIGIN).await;
        assert_eq!(res.status, 422);
        assert!(res.text.contains("The two passwords differ."), "{}", res.text);
        let res = post_register(&s, &form_for("k", "not-an-address", PASSWORD), SAME_ORIGIN).await;
        assert_eq!(res.status, 422);
        assert!(
            res.text.contains("Username: must be 3 to 64 characters"),
            "{}",
            res.text
        );
        assert!(
            res.text.contains("E-mail: is not a valid email address"),
            "{}",
            res.text
        );
        // A name that is taken.
        s.register("lee").await;
        let res = post_register(&s, &form_for("lee", "other@example.com", PASSWORD), SAME_ORIGIN).await;
        assert_eq!(res.status, 409);
        assert!(res.text.contains("already registered"), "{}", res.text);
        s.stop().await;
    }
}

/// The page's form is under the per-IP limit the API's registration is under.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_is_rate_limited_like_the_api() {
    let (s, _db) = TestServer::start_with(
        Backend::Sqlite,
        &[("RATE_LIMIT_PER_IP_PER_MINUTE", "1"), ("RATE_LIMIT_BURST", "3")],
    )
    .await;
    let form = form_for("max", "max@example.com", "password123");
    let mut headers = SAME_ORIGIN.to_vec();
    headers.push(("accept", BROWSER_ACCEPT));
    // One visit to the page (the limit counts by path), then its form again and again.
    let page = get_page(&s, "/register", None).await;
    let (token, _) = set_cookie(&page, "__Host-portcullis-login").unwrap();
    let jar = format!("__Host-portcullis-login={token}");
    headers.push(("cookie", &jar));
    let form = [form, vec![("login_token", token.as_str())]].concat();
    let mut answers = Vec::new();
    for _ in 0..4 {
        answers.push(
            s.http
                .call_with(M::POST, "/register", Anonymous, Form(&form), &headers)
                .await,
        );
    }
    let statuses: Vec<u16> = answers.iter().map(|r| r.status).collect();
    assert!(statuses.contains(&422), "the form was answered at first: {statuses:?}");
    let second = answers.pop().unwrap();
    assert_eq!(second.status, 429, "{statuses:?}: {}", second.text);
    assert!(second.header("retry-after").is_some());
    assert!(second.header("content-type").unwrap().starts_with("text/html"));
    assert!(second.text.contains("Too many requests"), "{}", second.text);
    assert!(
        second
            .header("content-security-policy")
            .unwrap()
            .contains("default-src 'none'")
    );
    // The API's own answer stays a problem.
    let api = s
        .post_json(
            "/auth/register",
            &json!({"username": "x", "email": "x@example.com", "password": PASSWORD}),
        )
        .await;
    expect_problem(api, 429);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_on_page_paths_are_pages_and_on_the_api_problems() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        let browser = |lang: &'static str| vec![("accept", BROWSER_ACCEPT), ("accept-language", lang)];
        let page_like = |res: &Reply, status: u16, words: &str| {
            assert_eq!(res.status, status, "{}", res.text);
            assert_eq!(res.header("content-type"), Some("text/html; charset=utf-8"));
            let csp = res.header("content-security-policy").expect("the pages' CSP");
            assert!(
                csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
                "{csp}"
            );
            assert!(res.text.contains(words), "{words} in {}", res.text);
            assert!(!res.text.contains("<script") && !res.text.contains("style="));
        };
        // 404 on a page path, in the visitor's language.
        let res = s
            .http
            .call_with(M::GET, "/no-such-page", Anonymous, Empty, &browser("de"))
            .await;
        page_like(&res, 404, "Seite nicht gefunden");
        assert!(res.text.contains("<html lang=\"de\">"));
        let res = s
            .http
            .call_with(
                M::GET,
                "/assets/app-0000000000000000.css",
                Anonymous,
                Empty,
                &browser("en"),
            )
            .await;
        page_like(&res, 404, "Page not found");
        // 405 on a page's path.
        let res = s
            .http
            .call_with(M::DELETE, "/login", Anonymous, Empty, &browser("en"))
            .await;
        page_like(&res, 405, "Not possible here");
        // 403: a cross-site form, and a form without its token.
        let mut cross = browser("en");
        cross.push(("sec-fetch-site", "cross-site"));
        let res = s
            .http
            .call_with(M::POST, "/logout", Anonymous, Form(&[("csrf", "x")]), &cross)
            .await;
        page_like(&res, 403, "Not allowed");
        assert!(
            res.text.contains("cross-site form posts are refused"),
            "the reason: {}",
            res.text
        );
        let form = [("login", "a"), ("password", "b")];
        let res = s
            .http
            .call_with(M::POST, "/login", Anonymous, Form(&form), &browser("en"))
            .await;
        page_like(&res, 403, "reload its page");
        // A body the form cannot read: a page too, never a 500.
        let res = s
            .http
            .call_with(
                M::POST,
                "/login",
                Anonymous,
                Raw("application/json", b"{}"),
                &browser("en"),
            )
            .await;
        page_like(&res, 415, "This request could not be handled");

        // The API's paths stay problems, whatever the client accepts.
        let res = s
            .http
            .call_with(M::GET, "/auth/nothing-here", Anonymous, Empty, &browser("en"))
            .await;
        expect_problem(res, 404);
        let res = s
            .http
            .call_with(M::DELETE, "/auth/login", Anonymous, Empty, &browser("en"))
            .await;
        expect_problem(res, 405);
        // And so do page paths for a client that asks for JSON, or does not ask for a page.
        let json = [("accept", "application/json"), ("sec-fetch-site", "cross-site")];
        let res = s
            .http
            .call_with(M::POST, "/logout", Anonymous, Form(&[("csrf", "x")]), &json)
            .await;
        expect_problem(res, 403);
        expect_problem(s.get("/no-such-page").await, 404);
        s.stop().await;
    }
}

/// A small PNG (1x1), for the logo.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4, 0x89, 0x00, 0x00, 0x00, 0x0d, 0x49,
    0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xcf, 0xc0, 0xf0, 0x1f, 0x00, 0x05, 0x00, 0x01, 0xff, 0x89, 0x99, 0x3d,
    0x1d, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

/// The `href`/`src` value after `marker` in a page.
fn attribute_after(html: &str, marker: &str) -> String {
    let at = html.find(marker).unwrap_or_else(|| panic!("{marker} in {html}")) + marker.len();
    html[at..].split('"').next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn branding_from_the_settings_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let logo = dir.path().join("acme.png");
    std::fs::write(&logo, PNG).unwrap();
    let (s, _db) = TestServer::start_with(
        Backend::Sqlite,
        &[
            ("PAGES_PRODUCT_NAME", "Acme <ID>"),
            ("PAGES_PRIMARY_COLOR", "#FFD400"),
            ("PAGES_LOGO", logo.to_str().unwrap()),
        ],
    )
    .await;
    let page = s.get("/login").await;
    assert!(
        page.text.contains("<title>Sign in · Acme &#60;ID&#62;</title>") || page.text.contains("Acme &lt;ID&gt;"),
        "{}",
        page.text
    );
    assert!(!page.text.contains("Portcullis"), "{}", page.text);
    // The colour: a stylesheet of its own, after app.css, cached for good.
    let css = attribute_after(&page.text, "<link rel=\"stylesheet\" href=\"/assets/brand-");
    let res = s.get(&format!("/assets/brand-{css}")).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("content-type"), Some("text/css; charset=utf-8"));
    assert_eq!(res.header("cache-control"), Some("public, max-age=31536000, immutable"));
    assert!(
        res.text.contains("--primary:#ffd400") && res.text.contains("--on-primary:#000"),
        "{}",
        res.text
    );
    assert!(page.text.find("/assets/app-").unwrap() < page.text.find("/assets/brand-").unwrap());
    // The logo: served from memory under its hash.
    let src = attribute_after(&page.text, "<img class=\"logo\" src=\"");
    assert!(src.starts_with("/assets/logo-") && src.ends_with(".png"), "{src}");
    let res = s.http.client.get(s.http.url(&src)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "image/png");
    assert_eq!(res.headers()["cache-control"], "public, max-age=31536000, immutable");
    assert_eq!(res.bytes().await.unwrap().as_ref(), PNG);
    // The error pages wear it too.
    let res = s
        .http
        .call_with(M::GET, "/nowhere", Anonymous, Empty, &[("accept", BROWSER_ACCEPT)])
        .await;
    assert!(
        res.text.contains("/assets/brand-") && res.text.contains("Acme"),
        "{}",
        res.text
    );
    s.stop().await;

    // A logo elsewhere: over https only, and the CSP lets the pages load it.
    let (s, _db) = TestServer::start_with(
        Backend::Sqlite,
        &[("PAGES_LOGO", "https://cdn.example.com/brand/logo.svg")],
    )
    .await;
    let page = s.get("/login").await;
    assert!(
        page.text.contains("src=\"https://cdn.example.com/brand/logo.svg\""),
        "{}",
        page.text
    );
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.contains("img-src 'self' data: https://cdn.example.com;"), "{csp}");
    assert!(page.text.contains("Portcullis"), "the default name");
    assert!(!page.text.contains("/assets/brand-"), "no colour, no brand stylesheet");
    s.stop().await;
}

/// Bad branding stops the binary with one line naming the setting.
#[test]
fn bad_branding_and_registration_settings_stop_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
    for (var, value, says) in [
        ("PAGES_PRIMARY_COLOR", "blue", "hex colour"),
        ("PAGES_PRIMARY_COLOR", "#12345", "hex colour"),
        ("PAGES_LOGO", "http://cdn.example.com/logo.png", "https://"),
        ("PAGES_LOGO", "missing.png", "cannot read"),
        ("PAGES_LOGO", "notes.txt", ".png"),
        ("PAGES_PRODUCT_NAME", &"x".repeat(61), "60 characters"),
        ("REGISTRATION_ENABLED", "perhaps", "true or false"),
    ] {
        let out = binary()
            .current_dir(dir.path())
            .env(var, value)
            .arg("migrate")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{var}={value}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(
            err.contains(&format!("{var}: ")) && err.contains(says),
            "{var}={value}: {err}"
        );
    }
    assert!(!dir.path().join("portcullis.db").exists(), "nothing was created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_language_switcher_wins_and_is_remembered() {
    let (s, _db) = TestServer::start(Backend::Sqlite).await;
    let english = [("accept-language", "en-GB,en;q=0.9")];
    // Every page has the switcher; it keeps the page's other parameters.
    let page = s
        .http
        .call_with(M::GET, "/login?return_to=%2Faccount", Anonymous, Empty, &english)
        .await;
    assert!(page.text.contains("<html lang=\"en\">"));
    assert!(
        page.text
            .contains("href=\"?return_to=%2Faccount&#38;lang=de\" lang=\"de\" hreflang=\"de\">Deutsch</a>"),
        "{}",
        page.text
    );
    assert!(
        page.text
            .contains("<span class=\"lang\" lang=\"en\" aria-current=\"true\">English</span>")
    );
    assert!(set_cookie(&page, "portcullis-lang").is_none(), "nothing picked yet");
    // Picking German wins over Accept-Language, and is remembered.
    let picked = s
        .http
        .call_with(
            M::GET,
            "/login?return_to=%2Faccount&lang=de",
            Anonymous,
            Empty,
            &english,
        )
        .await;
    assert!(picked.text.contains("<html lang=\"de\">") && picked.text.contains("Anmelden"));
    assert!(
        picked.text.contains("name=\"return_to\" value=\"/account\""),
        "the page's state is kept"
    );
    let (value, header) = set_cookie(&picked, "portcullis-lang").expect("the choice is remembered");
    assert_eq!(value, "de");
    assert!(
        header.contains("Max-Age=31536000") && header.contains("Path=/"),
        "{header}"
    );
    let jar = "portcullis-lang=de";
    for path in ["/login", "/register", "/no-such-page"] {
        let res = s
            .http
            .call_with(
                M::GET,
                path,
                Anonymous,
                Empty,
                &[english[0], ("cookie", jar), ("accept", BROWSER_ACCEPT)],
            )
            .await;
        assert!(res.text.contains("<html lang=\"de\">"), "{path}: {}", res.text);
    }
    // And back; a language we do not have changes nothing.
    let back = s
        .http
        .call_with(M::GET, "/login?lang=en", Anonymous, Empty, &[("cookie", jar)])
        .await;
    assert!(back.text.contains("<html lang=\"en\">"));
    assert_eq!(set_cookie(&back, "portcullis-lang").unwrap().0, "en");
    let unknown = s
        .http
        .call_with(M::GET, "/login?lang=xx", Anonymous, Empty, &[("cookie", jar)])
        .await;
    assert!(unknown.text.contains("<html lang=\"de\">"));
    assert!(set_cookie(&unknown, "portcullis-lang").is_none());
    s.stop().await;
}
