//! The account pages in real headless Chromium: changing the profile, changing the
//! password (then the old one is refused, the new one works, and the other sessions
//! are over), and ending an app's session on the session list (then its access
//! token is refused by `GET /auth/me`). Screenshots of each page at 375 and 1280 px.

use chromiumoxide::Page;

use crate::browser::{
    click_and_wait, fresh_page, goto, only_our_origin, origin, screenshots, sign_in_form, submit, text_of, url_of,
};
use crate::support::*;

/// Empties a prefilled field, as a person selecting its text and deleting it would.
async fn clear(page: &Page, selector: &str) {
    page.evaluate(format!("document.querySelector('{selector}').value = ''"))
        .await
        .unwrap();
}

/// A browser signed in as `username`, on its account page.
async fn signed_in_page(
    s: &TestServer,
    username: &str,
    password: &str,
) -> Option<(Page, std::sync::Arc<std::sync::Mutex<Vec<String>>>)> {
    let (page, requests) = fresh_page().await?;
    goto(&page, &format!("{}/login", origin(s))).await;
    sign_in_form(&page, username, password).await;
    assert_eq!(
        url_of(&page).await,
        format!("{}/account", origin(s)),
        "{}",
        text_of(&page).await
    );
    Some((page, requests))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_the_profile_in_chromium() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        s.register("xena").await;
        s.register("yuri").await;
        let Some((page, requests)) = signed_in_page(&s, "xena", PASSWORD).await else {
            return;
        };
        let base = origin(&s);
        screenshots(&page, &format!("account-profile-{backend:?}")).await;

        // Someone else's address: the form again, saying so beside the field.
        clear(&page, "#email").await;
        submit(&page, &[("#email", "yuri@example.com")]).await;
        let html = text_of(&page).await;
        assert!(
            html.contains("Another account already uses this e-mail address."),
            "{html}"
        );
        screenshots(&page, &format!("account-profile-taken-{backend:?}")).await;

        clear(&page, "#email").await;
        clear(&page, "#full_name").await;
        for (selector, text) in [("#full_name", "Xena Warrior"), ("#email", "xena.w@example.com")] {
            let field = page.find_element(selector).await.unwrap();
            field.click().await.unwrap();
            field.type_str(text).await.unwrap();
        }
        click_and_wait(&page, "#save-profile").await;
        assert_eq!(url_of(&page).await, format!("{base}/account?done=saved"));
        let html = text_of(&page).await;
        assert!(html.contains("Your profile was saved."), "{html}");
        let api = s.login_as("xena", PASSWORD).await;
        let me = s.get_auth("/auth/me", &api.access).await.json();
        assert_eq!(me["full_name"], "Xena Warrior");
        assert_eq!(me["email"], "xena.w@example.com");
        only_our_origin(&s, &requests);
        page.close().await.unwrap();
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_the_password_in_chromium() {
    const NEW: &str = "an entirely new and long passphrase";
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        s.register("zoe").await;
        let app = s.login_as("zoe", PASSWORD).await;
        let Some((other, _)) = signed_in_page(&s, "zoe", PASSWORD).await else {
            return;
        };
        let Some((page, requests)) = signed_in_page(&s, "zoe", PASSWORD).await else {
            return;
        };
        let base = origin(&s);
        click_and_wait(&page, "a[href$='/account/password']").await;
        assert_eq!(url_of(&page).await, format!("{base}/account/password"));
        assert!(text_of(&page).await.contains("aria-current=\"page\">Password<"));
        screenshots(&page, &format!("account-password-{backend:?}")).await;

        // A weak one: zxcvbn's advice, and nothing changed.
        let weak = "password1234";
        submit(
            &page,
            &[
                ("#current_password", PASSWORD),
                ("#new_password", weak),
                ("#confirm_password", weak),
            ],
        )
        .await;
        let html = text_of(&page).await;
        assert!(
            html.contains("The new password cannot be used (is too easy to guess"),
            "{html}"
        );
        screenshots(&page, &format!("account-password-weak-{backend:?}")).await;

        submit(
            &page,
            &[
                ("#current_password", PASSWORD),
                ("#new_password", NEW),
                ("#confirm_password", NEW),
            ],
        )
        .await;
        assert_eq!(url_of(&page).await, format!("{base}/account/password?done=changed"));
        assert!(text_of(&page).await.contains("Your password was changed."));
        // This browser is still signed in; the other browser and the app are not.
        goto(&page, &format!("{base}/account")).await;
        assert_eq!(url_of(&page).await, format!("{base}/account"));
        goto(&other, &format!("{base}/account")).await;
        assert!(
            url_of(&other).await.starts_with(&format!("{base}/login")),
            "the other browser is signed out"
        );
        assert_eq!(s.get_auth("/auth/me", &app.access).await.status, 401);
        assert_eq!(s.refresh(&app.refresh).await.status, 401);
        // The old password is refused, the new one works, here and in the API.
        assert_eq!(s.login("zoe", PASSWORD).await.status, 401);
        assert_eq!(s.login("zoe", NEW).await.status, 200);
        sign_in_form(&other, "zoe", PASSWORD).await;
        assert!(text_of(&other).await.contains("Invalid username or password."));
        sign_in_form(&other, "", NEW).await;
        assert_eq!(
            url_of(&other).await,
            format!("{base}/account"),
            "{}",
            text_of(&other).await
        );
        only_our_origin(&s, &requests);
        page.close().await.unwrap();
        other.close().await.unwrap();
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_an_apps_session_on_the_session_list_in_chromium() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        s.register("abel").await;
        let app = s.login_as("abel", PASSWORD).await;
        let sessions = s.get_auth("/auth/sessions", &app.access).await.json();
        let app_session = sessions[0]["id"].as_str().unwrap().to_string();
        let Some((page, requests)) = signed_in_page(&s, "abel", PASSWORD).await else {
            return;
        };
        let base = origin(&s);
        click_and_wait(&page, "a[href$='/account/sessions']").await;
        assert_eq!(url_of(&page).await, format!("{base}/account/sessions"));
        let html = text_of(&page).await;
        assert!(
            html.contains("This browser") && html.contains("App or API (tokens)"),
            "{html}"
        );
        assert!(html.contains("HeadlessChrome"), "this browser's user agent: {html}");
        screenshots(&page, &format!("account-sessions-{backend:?}")).await;

        assert_eq!(s.get_auth("/auth/me", &app.access).await.status, 200);
        click_and_wait(&page, &format!("#end-{app_session}")).await;
        assert_eq!(url_of(&page).await, format!("{base}/account/sessions?done=ended"));
        let html = text_of(&page).await;
        assert!(html.contains("The session was signed out."), "{html}");
        assert!(html.contains("You are signed in nowhere else."), "{html}");
        assert_eq!(s.get_auth("/auth/me", &app.access).await.status, 401, "{backend:?}");
        screenshots(&page, &format!("account-sessions-ended-{backend:?}")).await;
        only_our_origin(&s, &requests);
        page.close().await.unwrap();
        s.stop().await;
    }
}
