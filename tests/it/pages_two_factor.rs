//! The two-factor pages over plain HTTP, as a browser sends their forms, on both
//! backends: enrolment on `/account/two-factor` with codes computed from the key the
//! page shows, the recovery codes shown once (and as a download), signing in with a
//! code and with a recovery code, new recovery codes, turning the factor off (the
//! password and a code, as the API asks), and the sign-in of an account that must
//! enrol.
//! `browser_two_factor.rs` drives the same pages in Chromium.

use percent_encoding::percent_decode_str;
use portcullis::crypto::totp;

use crate::pages::{SAME_ORIGIN, csrf_of, get_page, page_sign_in, post_form, set_cookie};
use crate::support::*;

pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The text of the element with `id` (up to its closing tag).
fn text_by_id<'a>(html: &'a str, id: &str) -> Option<&'a str> {
    let at = html.find(&format!("id=\"{id}\""))?;
    let start = at + html[at..].find('>')? + 1;
    let end = start + html[start..].find('<')?;
    Some(html[start..end].trim())
}

/// The TOTP key a page shows, decoded.
pub(crate) fn secret_of(html: &str) -> Vec<u8> {
    let text = text_by_id(html, "secret").expect("the page shows the key");
    totp::from_base32(text).expect("a base32 key")
}

/// The recovery codes a page lists.
pub(crate) fn codes_of(html: &str) -> Vec<String> {
    let list = html
        .split_once("id=\"recovery-codes\"")
        .expect("a list of recovery codes")
        .1
        .split_once("</ol>")
        .unwrap()
        .0;
    list.split("<code>")
        .skip(1)
        .map(|c| c.split('<').next().unwrap().to_string())
        .collect()
}

/// A GET or form POST with these cookies (`name=value; ...`).
async fn with_cookies(s: &TestServer, method: M, path: &str, form: &[(&str, &str)], jar: &str) -> Reply {
    let mut headers = SAME_ORIGIN.to_vec();
    headers.push(("cookie", jar));
    let body = if method == M::GET { Empty } else { Form(form) };
    s.http.call_with(method, path, Anonymous, body, &headers).await
}

/// Signs in through the pages with the password and then `code`; the session cookie.
pub(crate) async fn sign_in_with_code(
    s: &TestServer,
    login: &str,
    password: &str,
    code: &str,
) -> Result<String, Reply> {
    let res = post_form(
        s,
        "/login",
        &[("login", login), ("password", password)],
        None,
        SAME_ORIGIN,
    )
    .await;
    assert_eq!(res.status, 303, "{}", res.text);
    assert_eq!(res.header("location"), Some("/login/code?return_to="));
    let (ticket, _) = set_cookie(&res, "__Host-portcullis-mfa").expect("the challenge cookie");
    let jar = format!("__Host-portcullis-mfa={ticket}");
    let res = with_cookies(s, M::POST, "/login/code", &[("code", code)], &jar).await;
    if res.status != 303 {
        return Err(res);
    }
    // The challenge is spent: its cookie goes, and it opens nothing again.
    let (cleared, header) = set_cookie(&res, "__Host-portcullis-mfa").expect("the challenge cookie is cleared");
    assert!(cleared.is_empty() && header.contains("Max-Age=0"), "{header}");
    let again = with_cookies(s, M::POST, "/login/code", &[("code", code)], &jar).await;
    assert_eq!(again.status, 401, "a spent challenge: {}", again.text);
    Ok(set_cookie(&res, "__Host-portcullis").expect("the session cookie").0)
}

/// Enrols through the two-factor page of the session `cookie`; the key and the
/// recovery codes.
async fn enrol_on_the_page(s: &TestServer, cookie: &str) -> (Vec<u8>, Vec<String>) {
    let page = get_page(s, "/account/two-factor", Some(cookie)).await;
    let csrf = csrf_of(&page.text);
    let form = [("csrf", csrf.as_str()), ("password", PASSWORD)];
    let res = post_form(s, "/account/two-factor/enrol", &form, Some(cookie), SAME_ORIGIN).await;
    assert_eq!(res.status, 200, "{}", res.text);
    let secret = secret_of(&res.text);
    let code = totp::code_at(&secret, now()).unwrap();
    let form = [("csrf", csrf.as_str()), ("code", code.as_str())];
    let res = post_form(s, "/account/two-factor/confirm", &form, Some(cookie), SAME_ORIGIN).await;
    assert_eq!(res.status, 200, "{}", res.text);
    (secret, codes_of(&res.text))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrol_on_the_page_then_sign_in_with_a_code_or_a_recovery_code() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        s.register("alice").await;
        let cookie = page_sign_in(&s, "alice", PASSWORD).await;
        let page = get_page(&s, "/account/two-factor", Some(&cookie)).await;
        assert_eq!(page.status, 200, "{}", page.text);
        assert_eq!(text_by_id(&page.text, "tf-status"), Some("Off"), "{}", page.text);
        assert!(page.text.contains("href=\"/account\""), "a way back: {}", page.text);
        let csrf = csrf_of(&page.text);

        // Starting needs the password (as the API's enrolment), and the CSRF token.
        let res = post_form(
            &s,
            "/account/two-factor/enrol",
            &[("password", PASSWORD)],
            Some(&cookie),
            SAME_ORIGIN,
        )
        .await;
        assert_eq!(res.status, 403);
        let wrong = [("csrf", csrf.as_str()), ("password", "not the password")];
        let res = post_form(&s, "/account/two-factor/enrol", &wrong, Some(&cookie), SAME_ORIGIN).await;
        assert_eq!(res.status, 422, "{}", res.text);
        assert!(res.text.contains("That password is not correct."), "{}", res.text);
        assert!(!res.text.contains("id=\"secret\""));
        let form = [("csrf", csrf.as_str()), ("password", PASSWORD)];
        let res = post_form(&s, "/account/two-factor/enrol", &form, Some(&cookie), SAME_ORIGIN).await;
        assert_eq!(res.status, 200, "{}", res.text);

        // The answer to the password shows the QR code as an image and the key; a later
        // visit (from this or any other session) shows neither, only the code field.
        assert_eq!(
            text_by_id(&res.text, "tf-status"),
            Some("Set-up started, not confirmed yet")
        );
        assert!(
            res.text.contains("id=\"qr\" src=\"data:image/png;base64,"),
            "{}",
            res.text
        );
        let secret = secret_of(&res.text);
        let page = get_page(&s, "/account/two-factor", Some(&cookie)).await;
        assert!(
            !page.text.contains("id=\"secret\"") && !page.text.contains("id=\"qr\""),
            "{}",
            page.text
        );
        assert!(page.text.contains("id=\"code\""), "{}", page.text);
        let other = page_sign_in(&s, "alice", PASSWORD).await;
        let elsewhere = get_page(&s, "/account/two-factor", Some(&other)).await;
        assert!(!elsewhere.text.contains("id=\"secret\""), "{}", elsewhere.text);

        // A wrong code: said so, the same key still shown; nothing enabled.
        let code = totp::code_at(&secret, now()).unwrap();
        let bad = if code == "000000" { "111111" } else { "000000" };
        let res = post_form(
            &s,
            "/account/two-factor/confirm",
            &[("csrf", csrf.as_str()), ("code", bad)],
            Some(&cookie),
            SAME_ORIGIN,
        )
        .await;
        assert_eq!(res.status, 422, "{}", res.text);
        assert!(res.text.contains("That code is not valid."), "{}", res.text);
        assert!(!res.text.contains("id=\"secret\""), "{}", res.text);

        // The right one: ten recovery codes, in the page and as a text download.
        let form = [("csrf", csrf.as_str()), ("code", code.as_str())];
        let res = post_form(&s, "/account/two-factor/confirm", &form, Some(&cookie), SAME_ORIGIN).await;
        assert_eq!(res.status, 200, "{}", res.text);
        assert_eq!(res.header("cache-control"), Some("no-store"));
        let codes = codes_of(&res.text);
        assert_eq!(codes.len(), 10, "{}", res.text);
        let href = res
            .text
            .split_once("download=\"portcullis-recovery-codes.txt\" href=\"data:text/plain;charset=utf-8,")
            .expect("a download of the codes")
            .1
            .split('"')
            .next()
            .unwrap();
        let file = percent_decode_str(href).decode_utf8().unwrap();
        for c in &codes {
            assert!(file.contains(&format!("{c}\r\n")), "{c} in {file}");
        }

        // Shown once: the page afterwards says "on" and lists none of them; the
        // session that enrolled goes on.
        let page = get_page(&s, "/account/two-factor", Some(&cookie)).await;
        assert_eq!(page.status, 200);
        assert_eq!(text_by_id(&page.text, "tf-status"), Some("On"));
        assert_eq!(text_by_id(&page.text, "codes-left"), Some("10"));
        assert!(!page.text.contains("id=\"secret\""));
        assert!(codes.iter().all(|c| !page.text.contains(c.as_str())));

        // Signing in now takes a code (the step after the one confirmed)...
        let next = totp::code_at(&secret, now() + totp::STEP).unwrap();
        let cookie = sign_in_with_code(&s, "alice", PASSWORD, &next)
            .await
            .expect("signed in with a code");
        assert_eq!(get_page(&s, "/account", Some(&cookie)).await.status, 200);
        // ...or a recovery code, once.
        let cookie = sign_in_with_code(&s, "alice", PASSWORD, &codes[0])
            .await
            .expect("signed in with a recovery code");
        let page = get_page(&s, "/account/two-factor", Some(&cookie)).await;
        assert_eq!(text_by_id(&page.text, "codes-left"), Some("9"));
        let again = sign_in_with_code(&s, "alice", PASSWORD, &codes[0])
            .await
            .expect_err("a used recovery code");
        assert_eq!(again.status, 401);
        assert!(again.text.contains("That code is not valid."), "{}", again.text);
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_recovery_codes_and_turning_off_as_the_api_does() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        s.register("bob").await;
        let cookie = page_sign_in(&s, "bob", PASSWORD).await;
        let (secret, old_codes) = enrol_on_the_page(&s, &cookie).await;
        let cookie = sign_in_with_code(
            &s,
            "bob",
            PASSWORD,
            &totp::code_at(&secret, now() + totp::STEP).unwrap(),
        )
        .await
        .unwrap();
        let page = get_page(&s, "/account/two-factor", Some(&cookie)).await;
        let csrf = csrf_of(&page.text);

        // New recovery codes take a code or recovery code, as the API's do.
        let wrong = [("csrf", csrf.as_str()), ("code", "aaaa-bbbb-cccc-dddd")];
        let res = post_form(
            &s,
            "/account/two-factor/recovery-codes",
            &wrong,
            Some(&cookie),
            SAME_ORIGIN,
        )
        .await;
        assert_eq!(res.status, 422, "{}", res.text);
        assert!(res.text.contains("That code is not valid."));
        let form = [("csrf", csrf.as_str()), ("code", old_codes[0].as_str())];
        let res = post_form(
            &s,
            "/account/two-factor/recovery-codes",
            &form,
            Some(&cookie),
            SAME_ORIGIN,
        )
        .await;
        assert_eq!(res.status, 200, "{}", res.text);
        let new_codes = codes_of(&res.text);
        assert_eq!(new_codes.len(), 10);
        assert!(new_codes.iter().all(|c| !old_codes.contains(c)));
        let page = get_page(&s, "/account/two-factor", Some(&cookie)).await;
        assert_eq!(text_by_id(&page.text, "codes-left"), Some("10"));
        // The old set stops working.
        assert!(sign_in_with_code(&s, "bob", PASSWORD, &old_codes[1]).await.is_err());

        // Turning off: a form from another site or without the token changes nothing.
        let res = post_form(
            &s,
            "/account/two-factor/disable",
            &[("csrf", csrf.as_str())],
            Some(&cookie),
            &[("sec-fetch-site", "cross-site")],
        )
        .await;
        assert_eq!(res.status, 403);
        let res = post_form(&s, "/account/two-factor/disable", &[], Some(&cookie), SAME_ORIGIN).await;
        assert_eq!(res.status, 403);
        let page = get_page(&s, "/account/two-factor", Some(&cookie)).await;
        assert_eq!(text_by_id(&page.text, "tf-status"), Some("On"));
        // With it, and a sign-in seconds old: the session alone is still not enough
        // (as DELETE /auth/mfa/totp, the password and a code).
        let res = post_form(
            &s,
            "/account/two-factor/disable",
            &[("csrf", csrf.as_str())],
            Some(&cookie),
            SAME_ORIGIN,
        )
        .await;
        assert_eq!(res.status, 422, "{}", res.text);
        assert_eq!(text_by_id(&res.text, "tf-status"), Some("On"));
        let form = [
            ("csrf", csrf.as_str()),
            ("password", PASSWORD),
            ("code", new_codes[0].as_str()),
        ];
        let res = post_form(&s, "/account/two-factor/disable", &form, Some(&cookie), SAME_ORIGIN).await;
        assert_eq!(res.status, 303, "{}", res.text);
        assert_eq!(res.header("location"), Some("/account/two-factor?done=off"));
        let page = get_page(&s, "/account/two-factor?done=off", Some(&cookie)).await;
        assert!(page.text.contains("Two-factor authentication is off."));
        assert_eq!(text_by_id(&page.text, "tf-status"), Some("Off"));
        // A password alone signs in again.
        page_sign_in(&s, "bob", PASSWORD).await;
        s.stop().await;
    }
}

/// Turning two-factor off on the page asks what the API asks, whatever the step-up
/// window: the password and a current code or recovery code; each wrong pair changes
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turning_off_asks_for_the_password_and_a_code() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        s.register("carol").await;
        let cookie = page_sign_in(&s, "carol", PASSWORD).await;
        let (secret, codes) = enrol_on_the_page(&s, &cookie).await;
        let cookie = sign_in_with_code(
            &s,
            "carol",
            PASSWORD,
            &totp::code_at(&secret, now() + totp::STEP).unwrap(),
        )
        .await
        .unwrap();
        let page = get_page(&s, "/account/two-factor", Some(&cookie)).await;
        let csrf = csrf_of(&page.text);
        assert!(
            page.text.contains("id=\"disable-password\"") && page.text.contains("id=\"disable-code\""),
            "{}",
            page.text
        );
        for (password, code) in [
            ("", ""),
            (PASSWORD, "aaaa-bbbb-cccc-dddd"),
            ("not the password", codes[0].as_str()),
        ] {
            let form = [("csrf", csrf.as_str()), ("password", password), ("code", code)];
            let res = post_form(&s, "/account/two-factor/disable", &form, Some(&cookie), SAME_ORIGIN).await;
            assert!(
                (401..=422).contains(&res.status),
                "{password:?} {code:?}: {} {}",
                res.status,
                res.text
            );
            assert_eq!(text_by_id(&res.text, "tf-status"), Some("On"));
        }
        let form = [
            ("csrf", csrf.as_str()),
            ("password", PASSWORD),
            ("code", codes[1].as_str()),
        ];
        let res = post_form(&s, "/account/two-factor/disable", &form, Some(&cookie), SAME_ORIGIN).await;
        assert_eq!(res.status, 303, "{}", res.text);
        let page = get_page(&s, "/account/two-factor", Some(&cookie)).await;
        assert_eq!(text_by_id(&page.text, "tf-status"), Some("Off"));
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_that_must_enrol_does_so_when_signing_in() {
    for backend in backends().await {
        let (s, _db) = TestServer::start_with(backend, &[("MFA_REQUIRED_ROLES", "admin")]).await;
        let res = post_form(
            &s,
            "/login",
            &[
                ("login", "admin"),
                ("password", ADMIN_PASSWORD),
                ("return_to", "/account/two-factor"),
            ],
            None,
            SAME_ORIGIN,
        )
        .await;
        assert_eq!(res.status, 303, "{}", res.text);
        let location = res.header("location").unwrap().to_string();
        assert_eq!(location, "/login/enrol?return_to=%2Faccount%2Ftwo%2Dfactor");
        assert!(set_cookie(&res, "__Host-portcullis").is_none(), "not signed in yet");
        let (token, header) = set_cookie(&res, "__Host-portcullis-enrol").expect("the enrolment cookie");
        for attribute in ["Path=/", "Secure", "HttpOnly", "SameSite=Lax"] {
            assert!(header.split("; ").any(|a| a == attribute), "{attribute} in {header}");
        }
        assert!(token.starts_with("pce_") && !location.contains(&token));
        let jar = format!("__Host-portcullis-enrol={token}");

        // The QR code and key; a reload starts a new key (a key is shown once only, so
        // no one else who knows the password can read the one being added).
        let first = secret_of(&with_cookies(&s, M::GET, &location, &[], &jar).await.text);
        let page = with_cookies(&s, M::GET, &location, &[], &jar).await;
        assert_eq!(page.status, 200, "{}", page.text);
        assert!(page.text.contains("id=\"qr\" src=\"data:image/png;base64,"));
        assert!(page.text.contains("name=\"return_to\" value=\"/account/two-factor\""));
        let secret = secret_of(&page.text);
        assert_ne!(secret, first);
        // Without the cookie: to the sign-in page; with a forged or expired one, said so.
        let page = get_page(&s, "/login/enrol", None).await;
        assert_eq!(page.status, 303);
        assert_eq!(page.header("location"), Some("/login?return_to="));
        let forged = "__Host-portcullis-enrol=pce_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        let page = with_cookies(&s, M::GET, "/login/enrol", &[], forged).await;
        assert_eq!(page.status, 401);
        assert!(page.text.contains("Your sign-in has expired."), "{}", page.text);
        assert!(page.text.contains("href=\"/login\""));

        // A wrong code: said so, the same key.
        let code = totp::code_at(&secret, now()).unwrap();
        let bad = if code == "000000" { "111111" } else { "000000" };
        let form = [("code", bad), ("return_to", "/account/two-factor")];
        let res = with_cookies(&s, M::POST, "/login/enrol", &form, &jar).await;
        assert_eq!(res.status, 422, "{}", res.text);
        assert!(res.text.contains("That code is not valid."));
        assert!(
            !res.text.contains("id=\"secret\""),
            "the key is shown once: {}",
            res.text
        );
        assert!(set_cookie(&res, "__Host-portcullis").is_none());

        // The right one: the recovery codes once, and the session opens.
        let form = [("code", code.as_str()), ("return_to", "/account/two-factor")];
        let res = with_cookies(&s, M::POST, "/login/enrol", &form, &jar).await;
        assert_eq!(res.status, 200, "{}", res.text);
        assert_eq!(codes_of(&res.text).len(), 10);
        assert!(
            res.text.contains("id=\"continue\" href=\"/account/two-factor\""),
            "{}",
            res.text
        );
        let (cleared, header) = set_cookie(&res, "__Host-portcullis-enrol").unwrap();
        assert!(cleared.is_empty() && header.contains("Max-Age=0"));
        let (cookie, _) = set_cookie(&res, "__Host-portcullis").expect("the session cookie");
        let page = get_page(&s, "/account/two-factor", Some(&cookie)).await;
        assert_eq!(page.status, 200);
        assert_eq!(text_by_id(&page.text, "tf-status"), Some("On"));
        // The enrolment token is spent.
        let res = with_cookies(&s, M::POST, "/login/enrol", &form, &jar).await;
        assert_eq!(res.status, 401);
        assert!(set_cookie(&res, "__Host-portcullis").is_none());

        // The next sign-in asks for a code, as for anyone with a second factor.
        let next = totp::code_at(&secret, now() + totp::STEP).unwrap();
        sign_in_with_code(&s, "admin", ADMIN_PASSWORD, &next)
            .await
            .expect("signed in with a code");
        s.stop().await;
    }
}
