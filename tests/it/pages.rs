//! The hosted pages over plain HTTP, as a browser would send their forms: the browser
//! session is a session the API ends, the cookie's attributes, the CSRF token and the
//! cross-site check, sign-in failures and lockout in words, `return_to`, the assets and
//! the base path. `browser.rs` drives the same pages in real Chromium.

use crate::support::*;

/// Headers a browser sends with a form posted from one of our own pages.
pub const SAME_ORIGIN: &[(&str, &str)] = &[("sec-fetch-site", "same-origin")];

/// The value a `Set-Cookie` of the answer gives `name`, and the whole header.
pub fn set_cookie(reply: &Reply, name: &str) -> Option<(String, String)> {
    reply
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            let value = v.strip_prefix(name)?.strip_prefix('=')?;
            Some((value.split(';').next()?.to_string(), v.to_string()))
        })
}

/// Signs in through the page's form; the session cookie's value.
pub async fn page_sign_in(s: &TestServer, login: &str, password: &str) -> String {
    let res = post_form(
        s,
        "/login",
        &[("login", login), ("password", password)],
        None,
        SAME_ORIGIN,
    )
    .await;
    assert_eq!(res.status, 303, "{}", res.text);
    set_cookie(&res, "__Host-portcullis").expect("session cookie").0
}

/// A form POST with the session cookie (if any) and `headers`. A sign-in form
/// (`/login`) gets what the sign-in page gives a browser first: its token, in the
/// form and in the `__Host-portcullis-login` cookie.
pub async fn post_form(
    s: &TestServer,
    path: &str,
    form: &[(&str, &str)],
    cookie: Option<&str>,
    headers: &[(&str, &str)],
) -> Reply {
    let mut cookies: Vec<String> = cookie.map(|c| format!("__Host-portcullis={c}")).into_iter().collect();
    let mut fields = form.to_vec();
    let token;
    if path == "/login" {
        token = login_token(s).await;
        cookies.push(format!("__Host-portcullis-login={token}"));
        fields.push(("login_token", &token));
    }
    let jar = cookies.join("; ");
    let mut all: Vec<(&str, &str)> = headers.to_vec();
    if !jar.is_empty() {
        all.push(("cookie", &jar));
    }
    s.http.call_with(M::POST, path, Anonymous, Form(&fields), &all).await
}

/// The sign-in form's token as the sign-in page sets it: the cookie's value, which
/// the page's form carries too.
pub async fn login_token(s: &TestServer) -> String {
    let page = get_page(s, "/login", None).await;
    let (token, _) = set_cookie(&page, "__Host-portcullis-login").expect("the sign-in page sets its form token");
    assert!(
        page.text.contains(&format!("name=\"login_token\" value=\"{token}\"")),
        "the form carries the cookie's token"
    );
    token
}

pub async fn get_page(s: &TestServer, path: &str, cookie: Option<&str>) -> Reply {
    let jar = cookie.map(|c| format!("__Host-portcullis={c}"));
    let headers: Vec<(&str, &str)> = jar.iter().map(|j| ("cookie", j.as_str())).collect();
    s.http.call_with(M::GET, path, Anonymous, Empty, &headers).await
}

/// The CSRF token in a page's forms.
pub fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a CSRF field") + "name=\"csrf\" value=\"".len();
    html[at..].split('"').next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_session_is_a_session_the_api_lists_and_ends() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        s.register("alice").await;
        let cookie = page_sign_in(&s, "alice@example.com", PASSWORD).await;
        let res = post_form(
            &s,
            "/login",
            &[("login", "alice"), ("password", PASSWORD)],
            None,
            SAME_ORIGIN,
        )
        .await;
        let (_, header) = set_cookie(&res, "__Host-portcullis").unwrap();
        for attribute in ["Path=/", "Secure", "HttpOnly", "SameSite=Lax"] {
            assert!(header.split("; ").any(|a| a == attribute), "{attribute} in {header}");
        }
        assert!(!header.contains("Domain"), "{header}");

        let page = get_page(&s, "/account", Some(&cookie)).await;
        assert_eq!(page.status, 200, "{}", page.text);
        assert!(
            page.text.contains(">alice<") && page.text.contains("value=\"alice@example.com\""),
            "{}",
            page.text
        );
        assert_eq!(page.header("cache-control"), Some("no-store"));
        assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
        assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
        let csp = page.header("content-security-policy").unwrap();
        for directive in [
            "default-src 'none'",
            "style-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
            "form-action 'self'",
        ] {
            assert!(csp.contains(directive), "{directive} in {csp}");
        }
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        // Without a session: to the sign-in page, coming back afterwards.
        let anonymous = get_page(&s, "/account", None).await;
        assert_eq!(anonymous.status, 303);
        assert_eq!(anonymous.header("location"), Some("/login?return_to=%2Faccount"));
        assert_eq!(get_page(&s, "/account", Some("forged-cookie-value")).await.status, 303);
        assert_eq!(
            get_page(&s, "/", Some(&cookie)).await.header("location"),
            Some("/account")
        );
        assert_eq!(get_page(&s, "/", None).await.header("location"), Some("/login"));

        // The API sees the browser's session among the user's sessions, and ending
        // them all there ends the page's too.
        let api = s.login_as("alice", PASSWORD).await;
        let sessions = s.get_auth("/auth/sessions", &api.access).await;
        assert_eq!(sessions.status, 200, "{}", sessions.text);
        assert_eq!(sessions.body.as_array().unwrap().len(), 3, "{}", sessions.text);
        let res = s.call(M::POST, "/auth/logout-all", Bearer(&api.access), Empty).await;
        assert_eq!(res.status, 204);
        assert_eq!(get_page(&s, "/account", Some(&cookie)).await.status, 303);

        // An administrator disabling the user ends it too.
        let cookie = page_sign_in(&s, "alice", PASSWORD).await;
        assert_eq!(get_page(&s, "/account", Some(&cookie)).await.status, 200);
        let admin = s.login_as("admin", ADMIN_PASSWORD).await;
        let id = api.user_id();
        let res = s
            .call(
                M::POST,
                &format!("/admin/users/{id}/disable"),
                Bearer(&admin.access),
                Empty,
            )
            .await;
        assert!(res.status < 300, "{}", res.text);
        assert_eq!(get_page(&s, "/account", Some(&cookie)).await.status, 303);
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forms_without_the_token_or_from_another_site_change_nothing() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        s.register("bob").await;
        let cookie = page_sign_in(&s, "bob", PASSWORD).await;
        let csrf = csrf_of(&get_page(&s, "/account", Some(&cookie)).await.text);
        let still_signed_in = async || get_page(&s, "/account", Some(&cookie)).await.status == 200;

        let path = "/logout";
        for everywhere in [&[][..], &[("everywhere", "1")][..]] {
            // No token, a wrong token: refused.
            let res = post_form(&s, path, everywhere, Some(&cookie), SAME_ORIGIN).await;
            assert_eq!(res.status, 403, "{everywhere:?}: {}", res.text);
            let with_wrong = [everywhere, &[("csrf", "x")]].concat();
            let res = post_form(&s, path, &with_wrong, Some(&cookie), SAME_ORIGIN).await;
            assert_eq!(res.status, 403, "{everywhere:?}");
            // The right token, from another site or origin: refused.
            for headers in [
                &[("sec-fetch-site", "cross-site")][..],
                &[("sec-fetch-site", "same-site")][..],
                &[("origin", "http://evil.example")][..],
            ] {
                let with_token = [everywhere, &[("csrf", csrf.as_str())]].concat();
                let res = post_form(&s, path, &with_token, Some(&cookie), headers).await;
                assert_eq!(res.status, 403, "{everywhere:?} {headers:?}");
            }
            assert!(still_signed_in().await, "{everywhere:?}");
        }
        // A cross-site sign-in form (login CSRF) is refused as well.
        let res = post_form(
            &s,
            "/login",
            &[("login", "bob"), ("password", PASSWORD)],
            None,
            &[("sec-fetch-site", "cross-site")],
        )
        .await;
        assert_eq!(res.status, 403);
        assert!(set_cookie(&res, "__Host-portcullis").is_none());

        // With its token, from our own page: signed out, and the cookie is cleared.
        // Chromium sends `Origin: null` with no-referrer pages: the token decides.
        let res = post_form(
            &s,
            "/logout",
            &[("csrf", &csrf)],
            Some(&cookie),
            &[("sec-fetch-site", "same-origin"), ("origin", "null")],
        )
        .await;
        assert_eq!(res.status, 303, "{}", res.text);
        assert_eq!(res.header("location"), Some("/login?signed_out=1"));
        assert!(set_cookie(&res, "__Host-portcullis").unwrap().1.contains("Max-Age=0"));
        assert!(!still_signed_in().await);

        // "Everywhere" ends the user's token sessions too.
        let api = s.login_as("bob", PASSWORD).await;
        let cookie = page_sign_in(&s, "bob", PASSWORD).await;
        let csrf = csrf_of(&get_page(&s, "/account", Some(&cookie)).await.text);
        let form = [("csrf", csrf.as_str()), ("everywhere", "1")];
        let res = post_form(&s, "/logout", &form, Some(&cookie), SAME_ORIGIN).await;
        assert_eq!(res.status, 303, "{}", res.text);
        assert_eq!(get_page(&s, "/account", Some(&cookie)).await.status, 303);
        assert_eq!(s.refresh(&api.refresh).await.status, 401);
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_and_lockout_are_told_in_words_that_give_nothing_away() {
    let lockout = [
        ("LOGIN_LOCKOUT_THRESHOLD", "3"),
        ("LOGIN_LOCKOUT_SECONDS", "90"),
        ("LOGIN_LOCKOUT_MAX_SECONDS", "120"),
    ];
    for backend in backends().await {
        let (s, _db) = TestServer::start_with(backend, &lockout).await;
        s.register("carol").await;
        let attempt = async |login: &str, password: &str, lang: &str| {
            let mut headers = SAME_ORIGIN.to_vec();
            headers.push(("accept-language", lang));
            post_form(
                &s,
                "/login",
                &[("login", login), ("password", password)],
                None,
                &headers,
            )
            .await
        };
        let wrong = attempt("carol", "wrong password", "en").await;
        let unknown = attempt("nobody-here", "wrong password", "en").await;
        assert_eq!(wrong.status, 401);
        assert_eq!(unknown.status, 401);
        assert!(wrong.text.contains("Invalid username or password."), "{}", wrong.text);
        // The same page but for the name typed back into the field (and the form's
        // token, each test request being another browser).
        let token = |r: &Reply| {
            let (_, after) = r
                .text
                .split_once("name=\"login_token\" value=\"")
                .expect("the form's token");
            after.split('"').next().unwrap_or_default().to_string()
        };
        assert_eq!(
            wrong.text.replace("carol", "N").replace(&token(&wrong), "T"),
            unknown.text.replace("nobody-here", "N").replace(&token(&unknown), "T")
        );
        assert!(set_cookie(&wrong, "__Host-portcullis").is_none());
        let de = attempt("carol", "wrong password", "de-DE,de;q=0.9").await;
        assert!(
            de.text.contains("Benutzername oder Passwort ist falsch."),
            "{}",
            de.text
        );
        assert!(de.text.contains("<html lang=\"de\">"));
        attempt("carol", "wrong again", "en").await;
        // Then the name is locked: the right password is not even checked.
        let locked = attempt("carol", PASSWORD, "en").await;
        assert_eq!(locked.status, 429, "{}", locked.text);
        assert!(
            locked.text.contains("Too many attempts, try again in 2 minutes."),
            "{}",
            locked.text
        );
        assert!(locked.header("retry-after").is_some());
        assert!(set_cookie(&locked, "__Host-portcullis").is_none());
        let locked_de = attempt("carol", PASSWORD, "de").await;
        assert!(
            locked_de
                .text
                .contains("Zu viele Versuche, bitte in 2 Minuten erneut versuchen."),
            "{}",
            locked_de.text
        );
        s.stop().await;
    }
}

/// Each of these must leave the browser on our origin after signing in.
pub const RETURN_TO_TRICKS: &[&str] = &[
    "//evil.example",
    "https://evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "/%2Fevil.example",
    "%2F%2Fevil.example",
    "/%5Cevil.example",
    "/%252F%252Fevil.example",
    "/\t/evil.example",
    "/%09/evil.example",
    "javascript:alert(1)",
    "evil.example",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn return_to_is_honoured_only_for_paths_on_this_origin() {
    let (s, _db) = TestServer::start(Backend::Sqlite).await;
    s.register("dave").await;
    for trick in RETURN_TO_TRICKS {
        let form = [("login", "dave"), ("password", PASSWORD), ("return_to", trick)];
        let res = post_form(&s, "/login", &form, None, SAME_ORIGIN).await;
        assert_eq!(res.status, 303, "{trick:?}");
        assert_eq!(res.header("location"), Some("/account"), "{trick:?}");
    }
    let form = [
        ("login", "dave"),
        ("password", PASSWORD),
        ("return_to", "/account?tab=1"),
    ];
    let res = post_form(&s, "/login", &form, None, SAME_ORIGIN).await;
    assert_eq!(res.header("location"), Some("/account?tab=1"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stylesheet_is_cached_for_good_and_the_base_path_applies() {
    let (s, _db) = TestServer::start_with(Backend::Sqlite, &[("PORTCULLIS_BASE_PATH", "/id")]).await;
    let page = s.get("/login").await;
    assert_eq!(page.status, 200);
    assert!(page.text.contains("action=\"/id/login\""), "{}", page.text);
    assert!(page.text.contains("<label for=\"login\">") && page.text.contains("<label for=\"password\">"));
    assert!(
        !page.text.contains("<script") && !page.text.contains("style="),
        "no inline script or style"
    );
    let at = page.text.find("href=\"/id/assets/app-").unwrap() + "href=\"/id".len();
    let css = page.text[at..].split('"').next().unwrap().to_string();
    let res = s.get(&css).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("content-type"), Some("text/css; charset=utf-8"));
    assert_eq!(res.header("cache-control"), Some("public, max-age=31536000, immutable"));
    assert!(res.text.contains(":focus-visible"));
    assert_eq!(s.get("/assets/app-0000000000000000.css").await.status, 404);
    let root = s.http.base.trim_end_matches("/id").to_string();
    let res = Http::new(root).call(M::GET, "/id/", Anonymous, Empty).await;
    assert_eq!(res.header("location"), Some("/id/login"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_session_ends_when_idle_and_at_its_lifetime() {
    for backend in backends().await {
        let (s, db) = TestServer::start_with(
            backend,
            &[
                ("PAGE_SESSION_IDLE_MINUTES", "5"),
                ("PAGE_SESSION_MAX_LIFETIME_HOURS", "2"),
            ],
        )
        .await;
        s.register("heidi").await;
        let api = s.login_as("heidi", PASSWORD).await;
        let cookie = page_sign_in(&s, "heidi", PASSWORD).await;
        // Its end is the page lifetime, not the token sessions' 30 days.
        let sessions = s.get_auth("/auth/sessions", &api.access).await.json();
        let ends: Vec<chrono::DateTime<chrono::Utc>> = sessions
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["expires_at"].as_str().unwrap().parse().unwrap())
            .collect();
        let soon = chrono::Utc::now() + chrono::Duration::minutes(121);
        assert_eq!(ends.iter().filter(|e| **e <= soon).count(), 1, "{sessions}");
        assert_eq!(get_page(&s, "/account", Some(&cookie)).await.status, 200);
        // Unused for longer than the idle timeout: over.
        execute_sql(
            &db,
            "UPDATE browser_sessions SET last_seen_at = '2000-01-01T00:00:00+00:00'",
        )
        .await;
        assert_eq!(get_page(&s, "/account", Some(&cookie)).await.status, 303);
        s.stop().await;
    }
}

/// Login CSRF: a sign-in form is signed only by the token the sign-in page put in the
/// browser's `__Host-` cookie, which no other site can read or set. A browser that
/// sends no `Sec-Fetch-Site` and `Origin: null` (what no-referrer makes of a same-origin
/// post, and what a sandboxed frame on another site sends) passes the origin check, so
/// the token is what refuses a forged form; nothing is counted or started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_form_needs_the_token_its_page_gave_the_browser() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        s.register("erin").await;
        let token = login_token(&s).await;
        let other = login_token(&s).await;
        assert_ne!(token, other, "each browser gets its own");
        let legacy = [("origin", "null")];
        let attempts: [(Option<&str>, Option<&str>); 4] = [
            (None, None),
            (None, Some(token.as_str())),
            (Some(token.as_str()), None),
            (Some(token.as_str()), Some(other.as_str())),
        ];
        for (cookie, field) in attempts {
            let jar = cookie.map(|c| format!("__Host-portcullis-login={c}"));
            let mut headers: Vec<(&str, &str)> = legacy.to_vec();
            if let Some(jar) = &jar {
                headers.push(("cookie", jar));
            }
            let mut form = vec![("login", "erin"), ("password", PASSWORD)];
            if let Some(field) = field {
                form.push(("login_token", field));
            }
            let res = s
                .http
                .call_with(M::POST, "/login", Anonymous, Form(&form), &headers)
                .await;
            assert_eq!(res.status, 403, "{backend:?} {cookie:?} {field:?}: {}", res.text);
            assert!(
                set_cookie(&res, "__Host-portcullis").is_none(),
                "no session was started"
            );
        }
        // The page's own form, from that browser: signed in.
        let jar = format!("__Host-portcullis-login={token}");
        let headers = [("origin", "null"), ("cookie", jar.as_str())];
        let form = [
            ("login", "erin"),
            ("password", PASSWORD),
            ("login_token", token.as_str()),
        ];
        let res = s
            .http
            .call_with(M::POST, "/login", Anonymous, Form(&form), &headers)
            .await;
        assert_eq!(res.status, 303, "{backend:?}: {}", res.text);
        assert!(set_cookie(&res, "__Host-portcullis").is_some());
        // The sign-in page keeps a browser's token while it is well formed.
        let again = s
            .http
            .call_with(M::GET, "/login", Anonymous, Empty, &[("cookie", jar.as_str())])
            .await;
        assert!(set_cookie(&again, "__Host-portcullis-login").is_none());
        assert!(again.text.contains(&token));
        s.stop().await;
    }
}
