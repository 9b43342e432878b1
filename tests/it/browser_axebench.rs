//! Accessibility of the hosted pages beyond what `browser.rs` visits, and a page
//! route's errors shown as a page rather than raw problem+json. Every page checked
//! here goes through `browser::screenshots`, which runs axe-core at both widths, light
//! and dark (`browser::assert_accessible`).

use chromiumoxide::cdp::browser_protocol::network::SetUserAgentOverrideParams;

use crate::browser::*;
use crate::pages::{SAME_ORIGIN, csrf_of, get_page, page_sign_in, post_form};
use crate::support::*;

/// A page route's error is a page: the status and the detail as before, in the
/// layout (language, title, stylesheet) and under the pages' CSP; the API keeps its
/// problem+json.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_errors_are_pages_in_the_browsers_language() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        s.register("hana").await;
        let cookie = page_sign_in(&s, "hana", PASSWORD).await;
        let csrf = csrf_of(&get_page(&s, "/account", Some(&cookie)).await.text);

        // Refused by the page layer (another site's form).
        let res = post_form(
            &s,
            "/logout",
            &[("csrf", &csrf)],
            Some(&cookie),
            &[("sec-fetch-site", "cross-site")],
        )
        .await;
        assert_eq!(res.status, 403, "{backend:?}");
        assert_eq!(res.header("content-type"), Some("text/html; charset=utf-8"));
        assert!(
            res.header("content-security-policy")
                .is_some_and(|c| c.starts_with("default-src 'none'")),
            "{backend:?}"
        );
        assert!(res.text.contains("<html lang=\"en\">"), "{}", res.text);
        assert!(
            res.text.contains("<title>Not allowed · Portcullis</title>"),
            "{}",
            res.text
        );
        assert!(res.text.contains("cross-site form posts are refused"), "{}", res.text);
        assert!(res.text.contains("/assets/app-"), "the layout's stylesheet");

        // Refused by the handler (no CSRF token), in German when the browser asks.
        let res = post_form(
            &s,
            "/logout",
            &[],
            Some(&cookie),
            &[("sec-fetch-site", "same-origin"), ("accept-language", "de")],
        )
        .await;
        assert_eq!(res.status, 403);
        assert!(res.text.contains("<html lang=\"de\">"), "{}", res.text);
        assert!(res.text.contains("Nicht erlaubt"), "{}", res.text);
        assert!(res.text.contains("CSRF token is missing or wrong"), "{}", res.text);
        assert!(!res.text.contains("\"detail\":"), "no JSON on a page: {}", res.text);

        // Still signed in; the JSON API still answers problem+json.
        assert_eq!(get_page(&s, "/account", Some(&cookie)).await.status, 200);
        let api = s
            .http
            .call_with(M::POST, "/auth/logout", Anonymous, Empty, SAME_ORIGIN)
            .await;
        assert!(api.status >= 400, "{}", api.text);
        assert_eq!(api.header("content-type"), Some("application/problem+json"));
        s.stop().await;
    }
}

/// The signed-out page, a German sign-in page with its error, and a refusal, each
/// checked by axe at both widths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_out_german_and_refused_pages_are_accessible_in_chromium() {
    let Some((page, requests)) = fresh_page().await else {
        return;
    };
    let (s, _db) = TestServer::start(Backend::Sqlite).await;
    s.register("ines").await;
    let base = origin(&s);

    goto(&page, &format!("{base}/login")).await;
    sign_in_form(&page, "ines", PASSWORD).await;
    click_and_wait(&page, "#sign-out").await;
    assert!(text_of(&page).await.contains("You have been signed out."));
    screenshots(&page, "login-signed-out").await;

    let agent: String = page
        .evaluate("navigator.userAgent")
        .await
        .unwrap()
        .into_value()
        .unwrap();
    page.set_user_agent(
        SetUserAgentOverrideParams::builder()
            .user_agent(agent)
            .accept_language("de-DE,de;q=0.9")
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    goto(&page, &format!("{base}/login")).await;
    assert!(text_of(&page).await.contains("<html lang=\"de\">"));
    screenshots(&page, "login-de").await;
    sign_in_form(&page, "ines", "not the password").await;
    let html = text_of(&page).await;
    assert!(html.contains("Benutzername oder Passwort ist falsch."), "{html}");
    screenshots(&page, "login-failed-de").await;

    // A page error in the browser: the refusal of a form without its token (the
    // sign-in page kept the name).
    submit(&page, &[("#password", PASSWORD)]).await;
    page.evaluate("document.querySelector('#sign-out').form.querySelector('[name=csrf]').remove()")
        .await
        .unwrap();
    click_and_wait(&page, "#sign-out").await;
    let html = text_of(&page).await;
    assert!(html.contains("Nicht erlaubt"), "{html}");
    screenshots(&page, "refused-de").await;
    // Its way out leads back to the account page.
    click_and_wait(&page, "main a").await;
    assert_eq!(url_of(&page).await, format!("{base}/account"));
    only_our_origin(&s, &requests);
    page.close().await.unwrap();
    s.stop().await;
}
