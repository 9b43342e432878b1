//! The applications a person has allowed (docs/oidc.md "Apps a person has allowed"):
//! consents remembered by `remember_consent` (what the consent page calls), listed
//! and revoked on the account page "Apps" and through `/auth/me/apps`. Both backends.

use portcullis::domain::Actor;
use portcullis::domain::oidc::ClientSpec;
use reqwest::Method as M;
use serde_json::{Value, json};

use crate::pages::{SAME_ORIGIN, csrf_of, get_page, page_sign_in, post_form};
use crate::support::*;

/// Registers an application named `name`; its client_id.
pub async fn app(s: &TestServer, id: &str, name: &str) -> String {
    let spec = ClientSpec {
        client_id: Some(id.into()),
        name: name.into(),
        redirect_uris: vec!["https://app.example/cb".into()],
        ..ClientSpec::default()
    };
    s.service
        .create_client(spec, &Actor::system())
        .await
        .expect("create client")
        .client
        .client_id
}

fn scopes(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

async fn audit_count(s: &TestServer, action: &str) -> usize {
    let admin = s.login_as("admin", ADMIN_PASSWORD).await;
    let logs: Value = s
        .get_auth(&format!("/audit/logs?action={action}"), &admin.access)
        .await
        .json();
    logs["items"].as_array().map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_apps_page_lists_what_was_allowed_and_takes_it_back() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        s.register("ann").await;
        let ann = s.login_as("ann", PASSWORD).await;
        let cookie = page_sign_in(&s, "ann", PASSWORD).await;
        let empty = get_page(&s, "/account/apps", Some(&cookie)).await;
        assert_eq!(empty.status, 200, "{}", empty.text);
        assert!(empty.text.contains("id=\"no-apps\""), "{}", empty.text);
        assert!(empty.text.contains("aria-current=\"page\">Apps</a>"));

        let grafana = app(&s, "grafana", "Grafana <ops>").await;
        let wiki = app(&s, "wiki", "Wiki").await;
        // Consent is remembered on top of what was allowed before.
        s.service
            .remember_consent(ann.user_id(), &grafana, &scopes(&["openid", "email"]))
            .await
            .unwrap();
        s.service
            .remember_consent(ann.user_id(), &grafana, &scopes(&["profile", "openid"]))
            .await
            .unwrap();
        assert_eq!(
            s.service.consented_scopes(ann.user_id(), &grafana).await.unwrap(),
            Some(scopes(&["openid", "profile", "email"]))
        );
        s.service
            .remember_consent(ann.user_id(), &wiki, &scopes(&["openid"]))
            .await
            .unwrap();
        // A scope the client may not ask for, or a client that does not exist: refused.
        assert!(
            s.service
                .remember_consent(ann.user_id(), &wiki, &scopes(&["roles"]))
                .await
                .is_err()
        );
        assert!(
            s.service
                .remember_consent(ann.user_id(), "nope", &scopes(&["openid"]))
                .await
                .is_err()
        );
        assert_eq!(audit_count(&s, "CONSENT_GRANT").await, 3);

        let page = get_page(&s, "/account/apps", Some(&cookie)).await;
        assert_eq!(page.status, 200);
        let html = &page.text;
        assert!(html.contains("Grafana &#60;ops&#62;"), "names are escaped: {html}");
        for words in [
            "Know who you are",
            "See your name and username",
            "See your e-mail address",
        ] {
            assert!(html.contains(words), "{words}: {html}");
        }
        assert!(!html.contains("See your roles"));
        assert!(html.contains("not yet"), "never used: {html}");
        assert!(html.find("Grafana").unwrap() < html.find("Wiki").unwrap());

        // German, too.
        let de = s
            .http
            .call_with(
                M::GET,
                "/account/apps",
                Anonymous,
                Empty,
                &[
                    ("cookie", &format!("__Host-portcullis={cookie}")),
                    ("accept-language", "de"),
                ],
            )
            .await;
        assert!(de.text.contains("Ihre E-Mail-Adresse sehen"), "{}", de.text);

        // A form without the session's CSRF token changes nothing.
        let forged = post_form(
            &s,
            "/account/apps/revoke",
            &[("csrf", "wrong"), ("client_id", &grafana)],
            Some(&cookie),
            SAME_ORIGIN,
        )
        .await;
        assert!((400..500).contains(&forged.status), "{}", forged.status);
        assert!(
            s.service
                .consented_scopes(ann.user_id(), &grafana)
                .await
                .unwrap()
                .is_some()
        );

        let csrf = csrf_of(html);
        let revoke = async || {
            post_form(
                &s,
                "/account/apps/revoke",
                &[("csrf", &csrf), ("client_id", &grafana)],
                Some(&cookie),
                SAME_ORIGIN,
            )
            .await
        };
        let res = revoke().await;
        assert_eq!(res.status, 303, "{}", res.text);
        assert!(res.header("location").unwrap().ends_with("/account/apps?done=revoked"));
        let after = get_page(&s, "/account/apps?done=revoked", Some(&cookie)).await;
        assert!(after.text.contains("access was removed"), "{}", after.text);
        assert!(!after.text.contains("Grafana"));
        assert!(after.text.contains("Wiki"));
        assert_eq!(s.service.consented_scopes(ann.user_id(), &grafana).await.unwrap(), None);
        assert_eq!(audit_count(&s, "CONSENT_REVOKE").await, 1);

        // Again (revoked in another tab meanwhile): a readable 404, nothing else changes.
        let again = revoke().await;
        assert_eq!(again.status, 404);
        assert!(again.text.contains("does not have access any more"), "{}", again.text);
        assert!(again.text.contains("Wiki"));
        // The browser's own session and the API session are untouched.
        assert_eq!(get_page(&s, "/account/apps", Some(&cookie)).await.status, 200);
        assert_eq!(s.get_auth("/auth/me", &ann.access).await.status, 200);
        // Signed out: the page sends the browser to sign in.
        assert_eq!(get_page(&s, "/account/apps", None).await.status, 303);
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_api_lists_and_revokes_only_the_callers_grants() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        let bob = s.user("bob").await;
        let cyd = s.user("cyd").await;
        let grafana = app(&s, "grafana", "Grafana").await;
        assert_eq!(s.get_auth("/auth/me/apps", &bob.access).await.json(), json!([]));
        for who in [&bob, &cyd] {
            s.service
                .remember_consent(who.user_id(), &grafana, &scopes(&["email", "openid"]))
                .await
                .unwrap();
        }
        let list = s.get_auth("/auth/me/apps", &bob.access).await;
        assert_eq!(list.status, 200, "{}", list.text);
        let list = list.json();
        assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
        assert_eq!(list[0]["client_id"], "grafana");
        assert_eq!(list[0]["name"], "Grafana");
        assert_eq!(list[0]["scopes"], json!(["openid", "email"]));
        assert!(list[0]["granted_at"].is_string());
        assert_eq!(list[0]["last_used"], Value::Null);

        // Unknown, malformed or never allowed: 404, and nothing is revoked.
        for path in ["/auth/me/apps/wiki", &format!("/auth/me/apps/{}", "x".repeat(300))] {
            expect_problem(s.call(M::DELETE, path, Bearer(&bob.access), Empty).await, 404);
        }
        expect_problem(
            s.call(M::DELETE, "/auth/me/apps/%00", Bearer(&bob.access), Empty).await,
            400,
        );
        expect_problem(s.call(M::DELETE, "/auth/me/apps/grafana", Anonymous, Empty).await, 401);

        let res = s
            .call(M::DELETE, "/auth/me/apps/grafana", Bearer(&bob.access), Empty)
            .await;
        assert_eq!(res.status, 204, "{}", res.text);
        assert_eq!(s.get_auth("/auth/me/apps", &bob.access).await.json(), json!([]));
        expect_problem(
            s.call(M::DELETE, "/auth/me/apps/grafana", Bearer(&bob.access), Empty)
                .await,
            404,
        );
        // Cyd's grant is cyd's; bob's own sign-in session is not an app's.
        assert_eq!(
            s.get_auth("/auth/me/apps", &cyd.access).await.json()[0]["client_id"],
            "grafana"
        );
        assert_eq!(s.get_auth("/auth/me", &bob.access).await.status, 200);
        s.stop().await;
    }
}
