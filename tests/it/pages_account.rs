//! The account pages over plain HTTP, as a browser would send their forms: the
//! profile, the password change, the session list, and the two defects of browser
//! sessions they brought to light (a second sign-in in one browser left the first
//! session alive; idle browser sessions were listed as active). Both backends.
//! `browser_account.rs` drives the same pages in real Chromium.

use serde_json::Value;

use crate::pages::{SAME_ORIGIN, csrf_of, get_page, page_sign_in, post_form, set_cookie};
use crate::support::*;

/// The ids of the sessions `GET /auth/sessions` lists for `access`.
async fn listed(s: &TestServer, access: &str) -> Vec<String> {
    let res = s.get_auth("/auth/sessions", access).await;
    assert_eq!(res.status, 200, "{}", res.text);
    res.json()
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap().to_string())
        .collect()
}

/// The id of the session the API marks `current` for `access`.
async fn current_id(s: &TestServer, access: &str) -> String {
    let list: Value = s.get_auth("/auth/sessions", access).await.json();
    list.as_array()
        .unwrap()
        .iter()
        .find(|x| x["current"] == true)
        .map(|x| x["id"].as_str().unwrap().to_string())
        .expect("a current session")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_again_in_the_same_browser_ends_its_old_session() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        s.register("olga").await;
        let api = s.login_as("olga", PASSWORD).await;
        let first = page_sign_in(&s, "olga", PASSWORD).await;
        assert_eq!(listed(&s, &api.access).await.len(), 2);
        // The same browser (it sends its session cookie) signs in again.
        let res = post_form(
            &s,
            "/login",
            &[("login", "olga"), ("password", PASSWORD)],
            Some(&first),
            SAME_ORIGIN,
        )
        .await;
        assert_eq!(res.status, 303, "{}", res.text);
        let second = set_cookie(&res, "__Host-portcullis").expect("a new session cookie").0;
        assert_ne!(first, second);
        assert_eq!(get_page(&s, "/account", Some(&first)).await.status, 303, "{backend:?}");
        assert_eq!(get_page(&s, "/account", Some(&second)).await.status, 200);
        assert_eq!(
            listed(&s, &api.access).await.len(),
            2,
            "{backend:?}: the old one is gone"
        );
        // Recorded as the old session's end, and why.
        let admin = s.login_as("admin", ADMIN_PASSWORD).await;
        let logs = s.get_auth("/audit/logs?action=LOGOUT", &admin.access).await.json();
        let items = logs["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{logs}");
        let metadata: Value = serde_json::from_str(items[0]["metadata"].as_str().unwrap()).unwrap();
        assert_eq!(metadata["reason"], "signed_in_again", "{logs}");
        assert_eq!(items[0]["username"], "olga", "{logs}");
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_browser_sessions_are_not_listed_as_active() {
    for backend in backends().await {
        let (s, db) = TestServer::start_with(backend, &[("PAGE_SESSION_IDLE_MINUTES", "5")]).await;
        s.register("pia").await;
        let api = s.login_as("pia", PASSWORD).await;
        let idle = page_sign_in(&s, "pia", PASSWORD).await;
        assert_eq!(listed(&s, &api.access).await.len(), 2);
        execute_sql(
            &db,
            "UPDATE browser_sessions SET last_seen_at = '2000-01-01T00:00:00+00:00'",
        )
        .await;
        assert_eq!(get_page(&s, "/account", Some(&idle)).await.status, 303);
        let ids = listed(&s, &api.access).await;
        assert_eq!(ids, vec![current_id(&s, &api.access).await], "{backend:?}");
        // Nor on the page of a fresh browser session: the API's and itself only.
        let fresh = page_sign_in(&s, "pia", PASSWORD).await;
        let page = get_page(&s, "/account/sessions", Some(&fresh)).await;
        assert_eq!(page.status, 200, "{}", page.text);
        assert_eq!(page.text.matches("class=\"session\"").count(), 2, "{}", page.text);
        assert_eq!(listed(&s, &api.access).await.len(), 2);
        s.stop().await;
    }
}

/// A token login that says which app it is (its user agent).
async fn app_login(s: &TestServer, username: &str, password: &str, agent: &str) -> Tokens {
    let body = Json(serde_json::json!({"username": username, "password": password}));
    let res = s
        .http
        .call_with(M::POST, "/auth/login", Anonymous, body, &[("user-agent", agent)])
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
    res.tokens()
}

/// Posts a form of a signed-in page, with the CSRF token `GET page` shows.
async fn post_page_form(s: &TestServer, page: &str, action: &str, cookie: &str, form: &[(&str, &str)]) -> Reply {
    let csrf = csrf_of(&get_page(s, page, Some(cookie)).await.text);
    let fields = [form, &[("csrf", csrf.as_str())]].concat();
    post_form(s, action, &fields, Some(cookie), SAME_ORIGIN).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_account_page_has_the_account_navigation() {
    let (s, _db) = TestServer::start_with(Backend::Sqlite, &[("PORTCULLIS_BASE_PATH", "/id")]).await;
    s.register("quinn").await;
    let cookie = page_sign_in(&s, "quinn", PASSWORD).await;
    for (path, current) in [
        ("/account", "/id/account"),
        ("/account/password", "/id/account/password"),
        ("/account/sessions", "/id/account/sessions"),
        ("/account/two-factor", "/id/account/two-factor"),
        ("/account/api-keys", "/id/account/api-keys"),
        ("/account/identities", "/id/account/identities"),
    ] {
        let page = get_page(&s, path, Some(&cookie)).await;
        assert_eq!(page.status, 200, "{path}: {}", page.text);
        assert!(
            page.text.contains("<nav class=\"account-nav\" aria-label=\"Account\">"),
            "{path}"
        );
        for link in [
            "/id/account\"",
            "/id/account/password\"",
            "/id/account/two-factor\"",
            "/id/account/sessions\"",
            "/id/account/api-keys\"",
            "/id/account/identities\"",
        ] {
            assert!(page.text.contains(&format!("href=\"{link}")), "{path} links {link}");
        }
        assert_eq!(page.text.matches("aria-current=\"page\"").count(), 1, "{path}");
        assert!(
            page.text.contains(&format!("href=\"{current}\" aria-current=\"page\"")),
            "{path}: {}",
            page.text
        );
        assert!(page.text.contains("<h1>"), "{path}");
        assert!(
            !page.text.contains("<script>") && !page.text.contains("style="),
            "{path}"
        );
        // Each signed-in page sends a stranger to sign in first.
        let res = get_page(&s, path, None).await;
        assert_eq!(res.status, 303, "{path}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_profile_page_changes_name_and_email_as_the_api_does() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        s.register("rita").await;
        s.register("sam").await;
        let api = s.login_as("rita", PASSWORD).await;
        let cookie = page_sign_in(&s, "rita", PASSWORD).await;
        let page = get_page(&s, "/account", Some(&cookie)).await;
        assert!(
            page.text.contains("<label for=\"full_name\">Full name</label>"),
            "{}",
            page.text
        );
        assert!(page.text.contains("value=\"rita@example.com\""), "{}", page.text);

        // Without the form's token: nothing changes.
        let res = post_form(
            &s,
            "/account",
            &[("full_name", "X"), ("email", "x@example.com")],
            Some(&cookie),
            SAME_ORIGIN,
        )
        .await;
        assert_eq!(res.status, 403);

        let form = [("full_name", "Rita Levi"), ("email", "Rita.Levi@Example.com")];
        let res = post_page_form(&s, "/account", "/account", &cookie, &form).await;
        assert_eq!(res.status, 303, "{backend:?}: {}", res.text);
        assert_eq!(res.header("location"), Some("/account?done=saved"));
        let me = s.get_auth("/auth/me", &api.access).await.json();
        assert_eq!(me["full_name"], "Rita Levi");
        assert_eq!(me["email"], "Rita.Levi@Example.com");
        let page = get_page(&s, "/account?done=saved", Some(&cookie)).await;
        assert!(page.text.contains("Your profile was saved."), "{}", page.text);
        assert!(page.text.contains("value=\"Rita Levi\""));

        // An invalid address: the form again, with what was typed and why; nothing saved.
        let form = [("full_name", "Rita L."), ("email", "not-an-address")];
        let res = post_page_form(&s, "/account", "/account", &cookie, &form).await;
        assert_eq!(res.status, 422, "{}", res.text);
        assert!(
            res.text
                .contains("This e-mail address cannot be used (is not a valid email address)"),
            "{}",
            res.text
        );
        assert!(
            res.text
                .contains("aria-invalid=\"true\" aria-describedby=\"email-error\"")
        );
        assert!(res.text.contains("value=\"not-an-address\"") && res.text.contains("value=\"Rita L.\""));
        // Someone else's address: 409, in words.
        let form = [("full_name", "Rita"), ("email", "SAM@example.com")];
        let res = post_page_form(&s, "/account", "/account", &cookie, &form).await;
        assert_eq!(res.status, 409, "{}", res.text);
        assert!(
            res.text.contains("Another account already uses this e-mail address."),
            "{}",
            res.text
        );
        let de = s
            .http
            .call_with(
                M::POST,
                "/account",
                Anonymous,
                Form(&[
                    ("full_name", "Rita"),
                    ("email", "sam@example.com"),
                    ("csrf", &csrf_of(&get_page(&s, "/account", Some(&cookie)).await.text)),
                ]),
                &[
                    ("sec-fetch-site", "same-origin"),
                    ("accept-language", "de"),
                    ("cookie", &format!("__Host-portcullis={cookie}")),
                ],
            )
            .await;
        assert_eq!(de.status, 409);
        assert!(
            de.text
                .contains("Ein anderes Konto verwendet diese E-Mail-Adresse bereits."),
            "{}",
            de.text
        );
        let me = s.get_auth("/auth/me", &api.access).await.json();
        assert_eq!(
            (me["full_name"].as_str(), me["email"].as_str()),
            (Some("Rita Levi"), Some("Rita.Levi@Example.com"))
        );
        // An empty name clears it, as in the API.
        let form = [("full_name", ""), ("email", "rita.levi@example.com")];
        assert_eq!(
            post_page_form(&s, "/account", "/account", &cookie, &form).await.status,
            303
        );
        assert!(s.get_auth("/auth/me", &api.access).await.json()["full_name"].is_null());
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_the_password_on_the_page_ends_every_other_session() {
    const NEW: &str = "a much longer passphrase, freshly chosen";
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        s.register("tara").await;
        let app = s.login_as("tara", PASSWORD).await;
        let other_browser = page_sign_in(&s, "tara", PASSWORD).await;
        let cookie = page_sign_in(&s, "tara", PASSWORD).await;
        let change = async |current: &str, new: &str, confirm: &str| {
            let form = [
                ("current_password", current),
                ("new_password", new),
                ("confirm_password", confirm),
            ];
            post_page_form(&s, "/account/password", "/account/password", &cookie, &form).await
        };

        let res = change(PASSWORD, NEW, "something else").await;
        assert_eq!(res.status, 422);
        assert!(
            res.text.contains("The two new passwords are not the same."),
            "{}",
            res.text
        );
        let res = change("not my password", NEW, NEW).await;
        assert_eq!(res.status, 422);
        assert!(res.text.contains("The current password is not correct"), "{}", res.text);
        assert!(!res.text.contains("not my password"), "no password is echoed");
        // A weak one: zxcvbn's advice on the page.
        let res = change(PASSWORD, "password1234", "password1234").await;
        assert_eq!(res.status, 422);
        assert!(
            res.text
                .contains("The new password cannot be used (is too easy to guess"),
            "{}",
            res.text
        );
        assert!(
            res.text
                .contains("aria-describedby=\"new_password-error password-hint\"")
        );
        // In German, the reasons are German too (the catalogue's, by the error's code).
        let german = format!("{cookie}; portcullis-lang=de");
        let change_de = async |new: &str| {
            let form = [
                ("current_password", PASSWORD),
                ("new_password", new),
                ("confirm_password", new),
            ];
            post_page_form(&s, "/account/password", "/account/password", &german, &form).await
        };
        let res = change_de("short").await;
        assert_eq!(res.status, 422);
        assert!(
            res.text
                .contains("Das neue Passwort kann nicht verwendet werden (muss mindestens 8 Zeichen lang sein)"),
            "{}",
            res.text
        );
        let res = change_de("password1234").await;
        assert_eq!(res.status, 422);
        assert!(res.text.contains("(ist zu leicht zu erraten: "), "{}", res.text);
        assert!(
            res.text.contains("Fügen Sie ein oder zwei Wörter hinzu."),
            "{}",
            res.text
        );
        assert!(!res.text.contains("too easy"), "{}", res.text);
        // Nothing changed so far.
        assert_eq!(s.refresh(&app.refresh).await.status, 200);
        assert_eq!(get_page(&s, "/account", Some(&other_browser)).await.status, 200);

        let res = change(PASSWORD, NEW, NEW).await;
        assert_eq!(res.status, 303, "{backend:?}: {}", res.text);
        assert_eq!(res.header("location"), Some("/account/password?done=changed"));
        // This browser stays; the other browser and the app's session are over.
        let page = get_page(&s, "/account/password?done=changed", Some(&cookie)).await;
        assert_eq!(page.status, 200);
        assert!(page.text.contains("Your password was changed."), "{}", page.text);
        assert_eq!(get_page(&s, "/account", Some(&other_browser)).await.status, 303);
        assert_eq!(s.get_auth("/auth/me", &app.access).await.status, 401);
        assert_eq!(s.refresh(&app.refresh).await.status, 401);
        assert_eq!(s.login("tara", PASSWORD).await.status, 401);
        let fresh = s.login_as("tara", NEW).await;
        assert_eq!(
            listed(&s, &fresh.access).await.len(),
            2,
            "this browser and the new login"
        );
        s.stop().await;
    }
}

/// The API's password change keeps the calling token's session and ends the rest,
/// browser sessions included: the same domain operation, the same promise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_password_change_keeps_its_own_session_and_ends_browsers() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        s.register("uma").await;
        let app = s.login_as("uma", PASSWORD).await;
        let cookie = page_sign_in(&s, "uma", PASSWORD).await;
        let body = serde_json::json!({"current_password": PASSWORD, "new_password": "another long passphrase here"});
        let res = s
            .call(M::POST, "/auth/me/password", Bearer(&app.access), Json(body))
            .await;
        assert_eq!(res.status, 204, "{}", res.text);
        assert_eq!(get_page(&s, "/account", Some(&cookie)).await.status, 303);
        assert_eq!(s.get_auth("/auth/me", &app.access).await.status, 200);
        assert_eq!(s.refresh(&app.refresh).await.status, 200);
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sessions_page_lists_and_ends_sessions_as_the_api_does() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        s.register("vera").await;
        s.register("walt").await;
        let app = app_login(&s, "vera", PASSWORD, "VeraApp/2.1").await;
        let spare = app_login(&s, "vera", PASSWORD, "VeraCli/0.3").await;
        let other_browser = page_sign_in(&s, "vera", PASSWORD).await;
        let cookie = page_sign_in(&s, "vera", PASSWORD).await;
        let app_session = current_id(&s, &app.access).await;
        let walt = s.login_as("walt", PASSWORD).await;
        let walts_session = current_id(&s, &walt.access).await;

        let page = get_page(&s, "/account/sessions", Some(&cookie)).await;
        assert_eq!(page.status, 200, "{}", page.text);
        assert_eq!(page.text.matches("class=\"session\"").count(), 4, "{}", page.text);
        assert_eq!(page.text.matches("<h2 id=\"session-").count(), 4);
        assert_eq!(page.text.matches(">Browser").count(), 2, "{}", page.text);
        assert_eq!(page.text.matches(">App or API (tokens)").count(), 2);
        assert_eq!(page.text.matches("This browser").count(), 1);
        assert!(page.text.contains("VeraApp/2.1") && page.text.contains("VeraCli/0.3"));
        assert!(page.text.contains(">127.0.0.1<"), "the IP: {}", page.text);
        assert!(page.text.contains("<time datetime=\""));
        // No button ends this browser's own session here (signing out does).
        assert_eq!(page.text.matches("name=\"session\"").count(), 3);
        // The API tells the kinds apart too.
        let kinds: Vec<String> = s
            .get_auth("/auth/sessions", &app.access)
            .await
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["kind"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(kinds.iter().filter(|k| *k == "browser").count(), 2, "{kinds:?}");
        assert_eq!(kinds.iter().filter(|k| *k == "token").count(), 2, "{kinds:?}");

        // Ending the app's session on the page: its access token is refused at once.
        assert_eq!(s.get_auth("/auth/me", &app.access).await.status, 200);
        let res = post_page_form(
            &s,
            "/account/sessions",
            "/account/sessions/revoke",
            &cookie,
            &[("session", &app_session)],
        )
        .await;
        assert_eq!(res.status, 303, "{backend:?}: {}", res.text);
        assert_eq!(res.header("location"), Some("/account/sessions?done=ended"));
        assert_eq!(s.get_auth("/auth/me", &app.access).await.status, 401, "{backend:?}");
        assert_eq!(s.refresh(&app.refresh).await.status, 401);
        let page = get_page(&s, "/account/sessions?done=ended", Some(&cookie)).await;
        assert!(page.text.contains("The session was signed out."));
        assert!(!page.text.contains("VeraApp/2.1"));

        // Someone else's session, an ended one, nonsense, no token: refused, nothing changes.
        for (id, status) in [
            (walts_session.as_str(), 404),
            (app_session.as_str(), 404),
            ("nonsense", 400),
        ] {
            let res = post_page_form(
                &s,
                "/account/sessions",
                "/account/sessions/revoke",
                &cookie,
                &[("session", id)],
            )
            .await;
            assert_eq!(res.status, status, "{id}: {}", res.text);
            assert!(
                res.text.contains("That session is not active any more."),
                "{}",
                res.text
            );
        }
        assert_eq!(s.get_auth("/auth/me", &walt.access).await.status, 200);
        let res = post_form(
            &s,
            "/account/sessions/revoke",
            &[("session", &walts_session)],
            Some(&cookie),
            SAME_ORIGIN,
        )
        .await;
        assert_eq!(res.status, 403);
        let res = post_form(&s, "/account/sessions/others", &[], Some(&cookie), SAME_ORIGIN).await;
        assert_eq!(res.status, 403);
        assert_eq!(get_page(&s, "/account", Some(&other_browser)).await.status, 200);

        // All the others: the other browser and the spare token session; this one stays.
        let res = post_page_form(&s, "/account/sessions", "/account/sessions/others", &cookie, &[]).await;
        assert_eq!(res.status, 303, "{}", res.text);
        assert_eq!(get_page(&s, "/account", Some(&other_browser)).await.status, 303);
        assert_eq!(s.get_auth("/auth/me", &spare.access).await.status, 401);
        let page = get_page(&s, "/account/sessions?done=others", Some(&cookie)).await;
        assert_eq!(page.status, 200);
        assert!(page.text.contains("All your other sessions were signed out."));
        assert!(page.text.contains("You are signed in nowhere else."));
        assert_eq!(page.text.matches("class=\"session\"").count(), 1);
        assert_eq!(
            s.get_auth("/auth/me", &walt.access).await.status,
            200,
            "other users untouched"
        );

        // Ending this browser's own (a form built by hand): signed out, cookie cleared.
        let fresh = s.login_as("vera", PASSWORD).await;
        let list = s.get_auth("/auth/sessions", &fresh.access).await.json();
        let own = list
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["kind"] == "browser")
            .map(|x| x["id"].as_str().unwrap().to_string())
            .unwrap();
        let res = post_page_form(
            &s,
            "/account/sessions",
            "/account/sessions/revoke",
            &cookie,
            &[("session", &own)],
        )
        .await;
        assert_eq!(res.status, 303, "{}", res.text);
        assert_eq!(res.header("location"), Some("/login?signed_out=1"));
        assert!(set_cookie(&res, "__Host-portcullis").unwrap().1.contains("Max-Age=0"));
        assert_eq!(get_page(&s, "/account", Some(&cookie)).await.status, 303);
        s.stop().await;
    }
}
