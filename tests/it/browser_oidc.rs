//! The authorization code flow in real Chromium: an application (a tiny callback
//! listener on a loopback port) sends the browser to Portcullis; the person signs in
//! with a password and a TOTP code, allows on the consent page (checked by axe), and
//! the browser arrives at the application with a code it redeems. Then a first-party
//! application: sign-in straight back to the application, through the redirect chain
//! a sign-in form starts (the pages' CSP must not stop it).

use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use portcullis::crypto::totp;

use crate::browser::{fresh_page, goto, screenshots, sign_in_form, submit, text_of, url_of};
use crate::oidc_code_flow::{VERIFIER, challenge, register_app, verified_id_token};
use crate::support::*;

type Seen = Arc<Mutex<Vec<std::collections::HashMap<String, String>>>>;

/// The application's callback: records each query it is sent and says so.
async fn callback(
    State(seen): State<Seen>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> &'static str {
    seen.lock().unwrap().push(q);
    "signed in to the test app"
}

/// Starts the application's callback listener; its redirect URI and what it saw.
async fn test_app() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/cb", axum::routing::get(callback))
        .with_state(seen.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/cb"), seen)
}

fn authorize_url(base: &str, client_id: &str, redirect: &str) -> String {
    let enc = |v: &str| url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
    format!(
        "{base}/oauth2/authorize?response_type=code&client_id={client_id}&redirect_uri={}&scope={}&state=s1&nonce=n1&code_challenge={}&code_challenge_method=S256",
        enc(redirect),
        enc("openid profile email"),
        challenge(VERIFIER)
    )
}

async fn redeem(s: &TestServer, client_id: &str, secret: &str, code: &str, redirect: &str) -> Reply {
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect),
        ("code_verifier", VERIFIER),
        ("client_id", client_id),
        ("client_secret", secret),
    ];
    s.call(M::POST, "/oauth2/token", Anonymous, Form(&form)).await
}

/// Waits (bounded) until the browser is at `prefix`.
async fn at(page: &chromiumoxide::Page, prefix: &str) -> String {
    let deadline = tokio::time::Instant::now() + crate::browser::WAIT;
    loop {
        let url = url_of(page).await;
        if url.starts_with(prefix) {
            return url;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never reached {prefix}; at {url}: {}",
            text_of(page).await
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Clicks `selector` and waits until the browser has come to `prefix` (through
/// however many pages in between).
async fn click_until(page: &chromiumoxide::Page, selector: &str, prefix: &str) {
    page.find_element(selector).await.unwrap().click().await.unwrap();
    at(page, prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_flow_with_totp_and_consent_in_chromium() {
    for backend in backends().await {
        let Some((page, _requests)) = fresh_page().await else {
            return;
        };
        let (s, _db) = TestServer::start(backend).await;
        let (redirect, seen) = test_app().await;
        let app = register_app(&s, "chromium-app", &redirect, false, &["openid", "profile", "email"]).await;
        let secret = app.client_secret.clone().unwrap();
        let t = s.user("heidi").await;
        let (totp_secret, _) = crate::mfa::enrol(&s, &t.access).await;
        let base = crate::browser::origin(&s);

        goto(&page, &authorize_url(&base, "chromium-app", &redirect)).await;
        assert!(url_of(&page).await.starts_with(&format!("{base}/login?return_to=")));
        sign_in_form(&page, "heidi", PASSWORD).await;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        submit(
            &page,
            &[("#code", &totp::code_at(&totp_secret, now + totp::STEP).unwrap())],
        )
        .await;
        let url = url_of(&page).await;
        assert!(
            url.starts_with(&format!("{base}/oauth2/authorize?")),
            "{url}: {}",
            text_of(&page).await
        );
        let html = text_of(&page).await;
        assert!(
            html.contains("App chromium-app") && html.contains("See your e-mail address"),
            "{html}"
        );
        screenshots(&page, &format!("consent-{backend:?}")).await;

        click_until(&page, "#consent-allow", &redirect).await;
        let q = seen.lock().unwrap().last().cloned().expect("the app was called back");
        assert_eq!(q["state"], "s1");
        assert_eq!(q["iss"], s.service.config().tokens.jwt_issuer);
        let tokens = redeem(&s, "chromium-app", &secret, &q["code"], &redirect).await;
        assert_eq!(tokens.status, 200, "{}", tokens.text);
        let claims = verified_id_token(&s, tokens.body["id_token"].as_str().unwrap(), "chromium-app").await;
        assert_eq!(claims["nonce"], "n1");
        assert!(claims["amr"].as_array().unwrap().iter().any(|m| m == "otp"), "{claims}");
        page.close().await.unwrap();

        // A first-party application: from the sign-in form straight to the app.
        let Some((page, _)) = fresh_page().await else {
            return;
        };
        let inhouse = register_app(&s, "inhouse", &redirect, true, &["openid", "profile", "email"]).await;
        s.register("ivan").await;
        goto(&page, &authorize_url(&base, "inhouse", &redirect)).await;
        for (selector, text) in [("#login", "ivan"), ("#password", PASSWORD)] {
            let field = page.find_element(selector).await.unwrap();
            field.click().await.unwrap();
            field.type_str(text).await.unwrap();
        }
        click_until(&page, "button[type=submit]", &redirect).await;
        let q = seen.lock().unwrap().last().cloned().unwrap();
        let secret = inhouse.client_secret.clone().unwrap();
        assert_eq!(redeem(&s, "inhouse", &secret, &q["code"], &redirect).await.status, 200);
        page.close().await.unwrap();
        s.stop().await;
    }
}
