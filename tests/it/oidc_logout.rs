//! Logout for applications (docs/oidc.md "Logout"): RP-initiated logout at
//! `/oauth2/logout` and back-channel logout tokens, received by a listener inside the
//! test and verified with the JWKS. App sessions are started by the domain operation
//! the code exchange uses (`issue_app_tokens`), from a real page sign-in. Both backends.

use std::time::Duration;

use axum::Router;
use axum::routing::post;
use chrono::Utc;
use portcullis::domain::oidc::{AppGrant, ClientSpec};
use portcullis::domain::{Actor, ClientContext};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::pages::{SAME_ORIGIN, csrf_of, get_page, page_sign_in, post_form};
use crate::support::*;

const BYE: &str = "https://app.example/bye";

/// A back-channel logout endpoint on an ephemeral port: its URL and what it receives
/// (the `logout_token` field of each POST).
async fn listener() -> (String, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel::<String>();
    let app = Router::new().route(
        "/bcl",
        post(
            move |axum::Form(form): axum::Form<std::collections::HashMap<String, String>>| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(form.get("logout_token").cloned().unwrap_or_default());
                    axum::http::StatusCode::OK
                }
            },
        ),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    (format!("http://{addr}/bcl"), rx)
}

async fn register_app(s: &TestServer, id: &str, backchannel: Option<String>) {
    let spec = ClientSpec {
        client_id: Some(id.into()),
        name: format!("App {id}"),
        redirect_uris: vec!["https://app.example/cb".into()],
        post_logout_redirect_uris: vec![BYE.into()],
        backchannel_logout_uri: backchannel,
        ..ClientSpec::default()
    };
    s.service.create_client(spec, &Actor::system()).await.expect("client");
}

/// Signs `who` in through the page and has the browser session authorize `client`,
/// as the code exchange does; (cookie, browser session id, the app's ID token, the
/// app's session id).
async fn signed_in_app(s: &TestServer, who: &str, client: &str) -> (String, uuid::Uuid, String, uuid::Uuid) {
    let cookie = page_sign_in(s, who, PASSWORD).await;
    let browser = s.service.browser_session(&cookie).await.unwrap().expect("session");
    let client = s.service.client(client).await.unwrap();
    let grant = AppGrant {
        user_id: browser.user_id,
        scopes: vec!["openid".into(), "offline_access".into()],
        browser_session_id: browser.session_id,
        auth_time: Utc::now(),
        amr: vec!["pwd".into()],
        nonce: Some("n-1".into()),
    };
    let (tokens, app_session) = s
        .service
        .issue_app_tokens(&client, &grant, &ClientContext::default())
        .await
        .expect("app tokens");
    (
        cookie,
        browser.session_id,
        tokens.id_token.expect("an ID token"),
        app_session,
    )
}

async fn live(s: &TestServer, user: uuid::Uuid, session: uuid::Uuid) -> bool {
    s.service
        .sessions_of(user)
        .await
        .unwrap()
        .iter()
        .any(|x| x.id == session)
}

/// Verifies a logout token with the published JWKS; its claims.
async fn verify_logout_token(s: &TestServer, token: &str, client: &str) -> Value {
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("logout+jwt"));
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_value(s.jwks().await).unwrap();
    let jwk = jwks.find(header.kid.as_deref().unwrap()).expect("the kid is published");
    let mut v = jsonwebtoken::Validation::new(header.alg);
    v.set_audience(&[client]);
    v.set_issuer(&[s.service.config().tokens.jwt_issuer.as_str()]);
    v.set_required_spec_claims(&["iss", "aud", "iat", "exp"]);
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    jsonwebtoken::decode::<Value>(token, &key, &v)
        .expect("a valid logout token")
        .claims
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_with_an_id_token_hint_ends_the_sessions_and_notifies_the_app() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        let (url, mut received) = listener().await;
        register_app(&s, "notified", Some(url)).await;
        register_app(&s, "quiet", None).await;
        s.register("lena").await;
        let (cookie, browser, id_token, app_session) = signed_in_app(&s, "lena", "notified").await;
        let user = s.service.browser_session(&cookie).await.unwrap().unwrap().user_id;
        assert!(live(&s, user, app_session).await);

        let res = get_page(
            &s,
            &format!("/oauth2/logout?id_token_hint={id_token}&post_logout_redirect_uri={BYE}&state=st%26ate"),
            Some(&cookie),
        )
        .await;
        assert_eq!(res.status, 303, "{}", res.text);
        assert_eq!(res.header("location"), Some("https://app.example/bye?state=st%26ate"));
        assert!(
            res.header("set-cookie").unwrap().contains("Max-Age=0"),
            "the cookie is cleared"
        );
        assert_eq!(get_page(&s, "/account", Some(&cookie)).await.status, 303, "signed out");
        assert!(!live(&s, user, app_session).await, "the app's session ended with it");
        assert!(!live(&s, user, browser).await);

        let token = tokio::time::timeout(Duration::from_secs(10), received.recv())
            .await
            .expect("a logout token within seconds")
            .unwrap();
        let claims = verify_logout_token(&s, &token, "notified").await;
        assert_eq!(claims["sub"], user.to_string());
        assert_eq!(claims["sid"], browser.to_string());
        assert!(claims["jti"].is_string() && claims["iat"].is_i64());
        assert!(claims["events"]["http://schemas.openid.net/event/backchannel-logout"].is_object());
        assert!(claims.get("nonce").is_none());

        // The account pages' sign-out notifies the same way.
        let (cookie, browser, _, app_session) = signed_in_app(&s, "lena", "notified").await;
        let page = get_page(&s, "/account", Some(&cookie)).await;
        let res = post_form(
            &s,
            "/logout",
            &[("csrf", &csrf_of(&page.text))],
            Some(&cookie),
            SAME_ORIGIN,
        )
        .await;
        assert_eq!(res.status, 303, "{}", res.text);
        assert!(!live(&s, user, app_session).await);
        let token = tokio::time::timeout(Duration::from_secs(10), received.recv())
            .await
            .expect("a logout token after the page's sign-out")
            .unwrap();
        assert_eq!(
            verify_logout_token(&s, &token, "notified").await["sid"],
            browser.to_string()
        );
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_never_redirects_to_an_unregistered_uri_and_asks_without_a_hint() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        register_app(&s, "app", None).await;
        register_app(&s, "other", None).await;
        s.register("milo").await;
        let (cookie, _, id_token, _) = signed_in_app(&s, "milo", "app").await;

        // No hint: a page asks; the unregistered address appears nowhere.
        let evil = "https://evil.example/";
        let ask = get_page(
            &s,
            &format!("/oauth2/logout?client_id=app&post_logout_redirect_uri={evil}&state=s1"),
            Some(&cookie),
        )
        .await;
        assert_eq!(ask.status, 200, "{}", ask.text);
        assert!(ask.text.contains("id=\"logout-confirm\""));
        assert!(ask.text.contains("App app"));
        assert!(
            ask.text.contains("name=\"post_logout_redirect_uri\" value=\"\""),
            "the form does not carry it on: {}",
            ask.text
        );
        assert!(!ask.text.contains("href=\"https://evil"));
        assert_eq!(get_page(&s, "/account", Some(&cookie)).await.status, 200, "not yet");
        // Confirming with the unregistered address posted anyway: signed out, shown so.
        let res = post_form(
            &s,
            "/oauth2/logout",
            &[
                ("csrf", &csrf_of(&ask.text)),
                ("client_id", "app"),
                ("post_logout_redirect_uri", evil),
                ("state", "s1"),
            ],
            Some(&cookie),
            SAME_ORIGIN,
        )
        .await;
        assert_eq!(res.status, 303);
        let to = res.header("location").unwrap();
        assert!(to.ends_with("/login?signed_out=1"), "{to}");
        assert_eq!(get_page(&s, "/account", Some(&cookie)).await.status, 303);

        // A registered address gets the browser back, with state, after confirming.
        let (cookie, _, _, _) = signed_in_app(&s, "milo", "app").await;
        let ask = get_page(
            &s,
            &format!("/oauth2/logout?client_id=app&post_logout_redirect_uri={BYE}&state=s2"),
            Some(&cookie),
        )
        .await;
        let res = post_form(
            &s,
            "/oauth2/logout",
            &[
                ("csrf", &csrf_of(&ask.text)),
                ("client_id", "app"),
                ("post_logout_redirect_uri", BYE),
                ("state", "s2"),
            ],
            Some(&cookie),
            SAME_ORIGIN,
        )
        .await;
        assert_eq!(res.header("location"), Some("https://app.example/bye?state=s2"));
        // Without the session's CSRF token, nothing happens.
        let (cookie, _, _, _) = signed_in_app(&s, "milo", "app").await;
        let forged = post_form(
            &s,
            "/oauth2/logout",
            &[("csrf", "x"), ("client_id", "app")],
            Some(&cookie),
            SAME_ORIGIN,
        )
        .await;
        assert_eq!(forged.status, 403);
        assert_eq!(get_page(&s, "/account", Some(&cookie)).await.status, 200);

        // A forged hint, or one for another client than client_id: 400, still signed in.
        let mut forged_hint = id_token.clone();
        forged_hint.pop();
        forged_hint.push(if id_token.ends_with('A') { 'B' } else { 'A' });
        for query in [
            format!("id_token_hint={forged_hint}"),
            "id_token_hint=not.a.token".to_string(),
            format!("id_token_hint={id_token}&client_id=other"),
            "client_id=nope".to_string(),
        ] {
            let res = get_page(&s, &format!("/oauth2/logout?{query}"), Some(&cookie)).await;
            assert_eq!(res.status, 400, "{query}: {}", res.text);
        }
        assert_eq!(get_page(&s, "/account", Some(&cookie)).await.status, 200);
        // A registered address with a hint from an earlier session still gets the
        // state back; without a browser session nothing else happens.
        let res = get_page(
            &s,
            &format!("/oauth2/logout?id_token_hint={id_token}&post_logout_redirect_uri={BYE}&state=s3"),
            None,
        )
        .await;
        assert_eq!(res.header("location"), Some("https://app.example/bye?state=s3"));
        s.stop().await;
    }
}

/// Removing an app's access on the account page ends the sessions it holds (here one
/// started as the code exchange starts it), and only those.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_an_apps_grant_ends_its_sessions() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        register_app(&s, "app", None).await;
        register_app(&s, "other", None).await;
        s.register("nina").await;
        let (cookie, browser, _, app_session) = signed_in_app(&s, "nina", "app").await;
        let (_, _, _, other_session) = signed_in_app(&s, "nina", "other").await;
        let user = s.service.browser_session(&cookie).await.unwrap().unwrap().user_id;
        s.service
            .remember_consent(user, "app", &["openid".to_string()])
            .await
            .unwrap();
        let apps: Value = s
            .get_auth("/auth/me/apps", &s.login_as("nina", PASSWORD).await.access)
            .await
            .json();
        assert!(apps[0]["last_used"].is_string(), "{apps}");
        let page = get_page(&s, "/account/apps", Some(&cookie)).await;
        let res = post_form(
            &s,
            "/account/apps/revoke",
            &[("csrf", &csrf_of(&page.text)), ("client_id", "app")],
            Some(&cookie),
            SAME_ORIGIN,
        )
        .await;
        assert_eq!(res.status, 303, "{}", res.text);
        assert!(!live(&s, user, app_session).await, "the app's session ended");
        assert!(live(&s, user, other_session).await, "another app's did not");
        assert!(live(&s, user, browser).await, "nor the browser's");
        s.stop().await;
    }
}
