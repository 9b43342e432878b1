//! Registration, the language switcher, error pages and branding in real Chromium
//! (see `browser.rs` for the shared browser and its helpers). Screenshots at 375 and
//! 1280 px go to `target/ui-screenshots/`.

use crate::browser::*;
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_through_the_page_and_switch_language_in_chromium() {
    for backend in backends().await {
        let Some((page, requests)) = fresh_page().await else {
            return;
        };
        let (s, _db) = TestServer::start(backend).await;
        let base = origin(&s);

        // From the sign-in page to the registration form.
        goto(&page, &format!("{base}/login")).await;
        click_and_wait(&page, "#register-link").await;
        assert_eq!(url_of(&page).await, format!("{base}/register"));
        screenshots(&page, &format!("register-{backend:?}")).await;

        // A guessable password: the policy's feedback, what was typed kept.
        submit(
            &page,
            &[
                ("#username", "nina"),
                ("#email", "nina@example.com"),
                ("#password", "password123"),
                ("#password_repeat", "password123"),
            ],
        )
        .await;
        let html = text_of(&page).await;
        assert!(html.contains("is too easy to guess"), "{html}");
        assert!(html.contains("value=\"nina\""), "{html}");
        screenshots(&page, &format!("register-weak-{backend:?}")).await;

        // A good one: signed in, on the account page.
        submit(&page, &[("#password", PASSWORD), ("#password_repeat", PASSWORD)]).await;
        assert_eq!(
            url_of(&page).await,
            format!("{base}/account"),
            "{}",
            text_of(&page).await
        );
        assert!(text_of(&page).await.contains("nina@example.com"));

        // The switcher: German, on this page and the next, without any script.
        click_and_wait(&page, "#lang-de").await;
        let html = text_of(&page).await;
        assert!(
            html.contains("<html lang=\"de\">") && html.contains("Ihr Konto"),
            "{html}"
        );
        screenshots(&page, &format!("account-de-{backend:?}")).await;
        click_and_wait(&page, "#sign-out").await;
        let html = text_of(&page).await;
        assert!(html.contains("Sie wurden abgemeldet."), "{html}");
        // An unknown page is a page too, in the language picked.
        goto(&page, &format!("{base}/nowhere")).await;
        let html = text_of(&page).await;
        assert!(html.contains("Seite nicht gefunden"), "{html}");
        screenshots(&page, &format!("not-found-de-{backend:?}")).await;
        click_and_wait(&page, "#lang-en").await;
        assert!(text_of(&page).await.contains("Page not found"));
        only_our_origin(&s, &requests);
        page.close().await.unwrap();
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_branded_sign_in_page_in_chromium() {
    let Some((page, requests)) = fresh_page().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let logo = dir.path().join("logo.svg");
    std::fs::write(
        &logo,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"64\" height=\"32\"><rect width=\"64\" height=\"32\" rx=\"6\" fill=\"#0f766e\"/></svg>",
    )
    .unwrap();
    let (s, _db) = TestServer::start_with(
        Backend::Sqlite,
        &[
            ("PAGES_PRODUCT_NAME", "Acme Sign-in"),
            ("PAGES_PRIMARY_COLOR", "#0f766e"),
            ("PAGES_LOGO", logo.to_str().unwrap()),
        ],
    )
    .await;
    let base = origin(&s);
    goto(&page, &format!("{base}/login")).await;
    // The colour reached the button through the generated stylesheet (no inline
    // style: the CSP would have blocked it), and the logo loaded.
    let button = page
        .evaluate("getComputedStyle(document.querySelector('button[type=submit]')).backgroundColor")
        .await
        .unwrap()
        .into_value::<String>()
        .unwrap();
    assert_eq!(button, "rgb(15, 118, 110)");
    let logo_width = page
        .evaluate("document.querySelector('img.logo').naturalWidth")
        .await
        .unwrap()
        .into_value::<u32>()
        .unwrap();
    assert_eq!(logo_width, 64, "the logo loaded");
    assert_eq!(
        page.evaluate("document.title")
            .await
            .unwrap()
            .into_value::<String>()
            .unwrap(),
        "Sign in · Acme Sign-in"
    );
    screenshots(&page, "login-branded").await;
    only_our_origin(&s, &requests);
    page.close().await.unwrap();
    s.stop().await;
}
