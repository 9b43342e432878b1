//! The API keys page, the linked sign-ins page and the sign-in page's provider buttons
//! in real headless Chromium: signing in with a provider's button (through the fake
//! provider of `oidc_provider.rs` and back), linking and unlinking a provider, and
//! creating an API key on the page (the copy button's script allowed by the CSP) that
//! then works at `/auth/verify`, until revoked. Screenshots at both widths.

use std::sync::Mutex;
use std::time::Duration;

use chromiumoxide::Page;
use chromiumoxide::cdp::browser_protocol::emulation::SetFocusEmulationEnabledParams;

use crate::browser::{WAIT, click_and_wait, fresh_page, goto, screenshots, sign_in_form, submit, text_of, url_of};
use crate::oidc_provider::{FakeProvider, Person};
use crate::pages_keys_ids::{pairs, provider_settings};
use crate::support::*;

/// A server a browser can be sent back to by a provider: its public URL is its real
/// address.
async fn reachable_server(backend: Backend, mut settings: Vec<(String, String)>) -> (TestServer, TestDb) {
    settings.push(("PORTCULLIS_BIND".into(), free_address().to_string()));
    TestServer::start_with(backend, &pairs(&settings)).await
}

/// Every request went to our origin or to one of `providers` (Chromium's own `data:`
/// images, such as the date field's calendar icon, fetch nothing).
fn only_ours_and(s: &TestServer, requests: &Mutex<Vec<String>>, providers: &[&FakeProvider]) {
    for url in requests.lock().unwrap().iter() {
        let allowed = url.starts_with(&format!("{}/", s.http.base))
            || url == "about:blank"
            || url.starts_with("data:")
            || providers.iter().any(|p| url.starts_with(&format!("{}/", p.base)));
        assert!(allowed, "request to {url}");
    }
}

async fn js_text(page: &Page, script: &str) -> String {
    page.evaluate(script)
        .await
        .unwrap()
        .into_value::<String>()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_with_a_provider_button_then_link_and_unlink_in_chromium() {
    for backend in backends().await {
        let Some((page, requests)) = fresh_page().await else {
            return;
        };
        let acme = FakeProvider::start(None).await;
        let beta = FakeProvider::start(None).await;
        let mut settings = provider_settings("acme", &acme);
        settings.extend(provider_settings("beta", &beta));
        let (s, _db) = reachable_server(backend, settings).await;
        let base = s.http.base.clone();

        // The sign-in page's button: to the provider and back, signed up and in.
        acme.sign_in_as(Person::new("quinn-acme", "quinn@example.com"));
        goto(&page, &format!("{base}/account/identities")).await;
        assert!(url_of(&page).await.starts_with(&format!("{base}/login?return_to=")));
        screenshots(&page, &format!("login-providers-{backend:?}")).await;
        click_and_wait(&page, "#provider-acme").await;
        assert_eq!(
            url_of(&page).await,
            format!("{base}/account/identities"),
            "{}",
            text_of(&page).await
        );
        let html = text_of(&page).await;
        assert!(
            html.contains("quinn@example.com") && html.contains("id=\"link-beta\""),
            "{html}"
        );
        screenshots(&page, &format!("identities-{backend:?}")).await;

        // The only way in cannot be unlinked.
        click_and_wait(&page, "#unlink-acme").await;
        let html = text_of(&page).await;
        assert!(html.contains("acme is your only way to sign in"), "{html}");
        screenshots(&page, &format!("identities-last-{backend:?}")).await;

        // Link beta while signed in: off to beta and back, linked.
        beta.sign_in_as(Person::new("quinn-beta", "quinn.beta@example.com"));
        click_and_wait(&page, "#link-beta").await;
        assert_eq!(url_of(&page).await, format!("{base}/account/identities?linked=beta"));
        let html = text_of(&page).await;
        assert!(html.contains("beta is now linked to your account."), "{html}");
        assert!(html.contains("quinn.beta@example.com"), "{html}");

        // Now acme may go; then beta is the last.
        click_and_wait(&page, "#unlink-acme").await;
        assert_eq!(url_of(&page).await, format!("{base}/account/identities?unlinked=acme"));
        let html = text_of(&page).await;
        assert!(
            !html.contains("id=\"unlink-acme\"") && html.contains("id=\"link-acme\""),
            "{html}"
        );
        click_and_wait(&page, "#unlink-beta").await;
        assert!(text_of(&page).await.contains("beta is your only way to sign in"));

        // Signed out, beta's button signs the same person in again.
        goto(&page, &format!("{base}/account")).await;
        click_and_wait(&page, "#sign-out").await;
        click_and_wait(&page, "#provider-beta").await;
        assert_eq!(url_of(&page).await, format!("{base}/account"));
        assert!(text_of(&page).await.contains("quinn@example.com"));
        only_ours_and(&s, &requests, &[&acme, &beta]);
        page.close().await.unwrap();
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_an_api_key_on_the_page_copy_it_use_it_and_revoke_it_in_chromium() {
    for backend in backends().await {
        let Some((page, requests)) = fresh_page().await else {
            return;
        };
        let (s, _db) = TestServer::start(backend).await;
        s.user_with_role("rita", "analyst").await;
        let base = s.http.base.clone();
        goto(&page, &format!("{base}/login?return_to=%2Faccount%2Fapi-keys")).await;
        sign_in_form(&page, "rita", PASSWORD).await;
        assert_eq!(url_of(&page).await, format!("{base}/account/api-keys"));
        screenshots(&page, &format!("api-keys-empty-{backend:?}")).await;

        // Name it, tick one of her own permissions, create.
        page.find_element("input[value='projects:read']")
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        submit(&page, &[("#key-name", "deploy bot")]).await;
        let key = js_text(&page, "document.getElementById('new-key').textContent").await;
        assert!(key.starts_with("pcx_"), "{}", text_of(&page).await);
        screenshots(&page, &format!("api-keys-created-{backend:?}")).await;

        // The copy button: shown by the script (which the CSP let run), and it copies.
        page.execute(SetFocusEmulationEnabledParams::new(true)).await.unwrap();
        let shown = page
            .evaluate("!document.getElementById('copy-key').hidden")
            .await
            .unwrap()
            .into_value::<bool>()
            .unwrap();
        assert!(shown, "the script ran and showed the copy button");
        page.find_element("#copy-key").await.unwrap().click().await.unwrap();
        let deadline = tokio::time::Instant::now() + WAIT;
        while js_text(&page, "document.getElementById('copy-key').textContent").await != "Copied" {
            assert!(tokio::time::Instant::now() < deadline, "the key was not copied");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        // The key works at /auth/verify, with just what it was given.
        let res = s
            .call(M::GET, "/auth/verify?permission=projects:read", ApiKey(&key), Empty)
            .await;
        assert_eq!(res.status, 200, "{}", res.text);
        let res = s
            .call(M::GET, "/auth/verify?permission=projects:create", ApiKey(&key), Empty)
            .await;
        assert_eq!(res.status, 403);

        // Listed without its secret; revoked with its button, then refused.
        goto(&page, &format!("{base}/account/api-keys")).await;
        let html = text_of(&page).await;
        assert!(html.contains("deploy bot") && !html.contains(&key), "{html}");
        screenshots(&page, &format!("api-keys-list-{backend:?}")).await;
        let id = key[4..].split('_').next().unwrap().to_string();
        click_and_wait(&page, &format!("#revoke-{id}")).await;
        assert_eq!(url_of(&page).await, format!("{base}/account/api-keys"));
        assert!(text_of(&page).await.contains("Revoked"));
        let res = s.call(M::GET, "/auth/verify", ApiKey(&key), Empty).await;
        assert_eq!(res.status, 401);
        only_ours_and(&s, &requests, &[]);
        page.close().await.unwrap();
        s.stop().await;
    }
}
