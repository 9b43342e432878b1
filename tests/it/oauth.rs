//! Sign-in with upstream providers against the fake provider: the token exchange and
//! the redirect flow for a generic provider and each built-in one, every way an ID
//! token or a state can be wrong, a provider that is down or slow, linking rules,
//! unlinking, and the kept upstream tokens; on both backends.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::oidc_provider::{CLIENT_ID, CLIENT_SECRET, FakeProvider, Mode, Person};
use crate::support::*;

const APP: &str = "https://app.example.com/signed-in";

fn provider_settings(prefix: &str, p: &FakeProvider) -> Vec<(String, String)> {
    vec![
        (format!("{prefix}_ISSUER"), p.issuer()),
        (format!("{prefix}_CLIENT_ID"), CLIENT_ID.into()),
        (format!("{prefix}_CLIENT_SECRET"), CLIENT_SECRET.into()),
    ]
}

async fn exchange(s: &TestServer, body: Value) -> (u16, Value) {
    let res = s.post_json("/auth/oauth/login", &body).await;
    (res.status, res.body)
}

/// Exchanges `request` and expects a refusal with `status` whose problem says `why`.
async fn refused(s: &TestServer, request: Value, status: u16, why: &str) {
    let (code, body) = exchange(s, request.clone()).await;
    assert_eq!(code, status, "{request} -> {body}");
    assert!(body["detail"].as_str().unwrap().contains(why), "{request} -> {body}");
}

/// Follows the redirect flow like a browser would, up to the callback; returns the
/// callback's answer.
async fn redirect_flow(s: &TestServer, provider: &str) -> Reply {
    let (state, code, browser) = authorize(s, provider).await;
    callback(s, provider, &format!("code={code}&state={state}"), Some(&browser)).await
}

/// Authorize at Portcullis and at the provider: the state and code the provider
/// hands back, and the browser cookie Portcullis set.
async fn authorize(s: &TestServer, provider: &str) -> (String, String, String) {
    let res = s
        .get(&format!("/auth/oauth/{provider}/authorize?redirect_uri={APP}"))
        .await;
    assert_eq!(res.status, 302);
    let set_cookie = res.headers["set-cookie"].to_str().unwrap().to_string();
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("Secure"),
        "{set_cookie}"
    );
    let browser = set_cookie.split(';').next().unwrap().to_string();
    let to_provider = res.headers["location"].to_str().unwrap().to_string();
    assert!(
        to_provider.contains("code_challenge_method=S256") && to_provider.contains("nonce="),
        "{to_provider}"
    );
    // The provider is another server: by hand, with the same client (redirects off).
    let res = s.http.client.get(&to_provider).send().await.unwrap();
    assert_eq!(res.status(), 303, "the provider sends the browser back");
    let back = url_params(res.headers()["location"].to_str().unwrap());
    (back["state"].clone(), back["code"].clone(), browser)
}

/// The provider's redirect back, from a browser holding `cookie` (`name=value`).
async fn callback(s: &TestServer, provider: &str, query: &str, cookie: Option<&str>) -> Reply {
    let cookie: Vec<(&str, &str)> = cookie.map(|c| ("cookie", c)).into_iter().collect();
    let path = format!("/auth/oauth/{provider}/callback?{query}");
    s.http.call_with(M::GET, &path, Anonymous, Empty, &cookie).await
}

fn url_params(url: &str) -> std::collections::HashMap<String, String> {
    let tail = url.split_once(['?', '#']).map(|(_, t)| t).unwrap_or_default();
    tail.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), percent_decode(v)))
        .collect()
}

fn percent_decode(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&v[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

/// The tokens an app finds in the fragment of the final redirect.
fn tokens_in_fragment(res: &Reply) -> std::collections::HashMap<String, String> {
    assert_eq!(res.status, 302, "{}", res.text);
    let location = res.headers["location"].to_str().unwrap();
    assert!(location.starts_with(&format!("{APP}#")), "{location}");
    url_params(location)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generic_and_built_in_providers_sign_in_both_ways() {
    for backend in backends().await {
        let acme = FakeProvider::start(None).await;
        let google = FakeProvider::start(None).await;
        let microsoft = FakeProvider::start(Some("9188040d-6c67-4c5b-b112-36a304b66dad")).await;
        let okta = FakeProvider::start(None).await;
        let mut settings = provider_settings("OAUTH_OIDC_ACME", &acme);
        settings.extend(provider_settings("OAUTH_GOOGLE", &google));
        // Every endpoint given: no discovery at all for this one.
        for (suffix, path) in [
            ("AUTHORIZATION_ENDPOINT", "/authorize"),
            ("TOKEN_ENDPOINT", "/token"),
            ("USERINFO_ENDPOINT", "/userinfo"),
            ("JWKS_URI", "/jwks"),
            ("TOKENINFO_ENDPOINT", "/tokeninfo"),
        ] {
            settings.push((format!("OAUTH_GOOGLE_{suffix}"), format!("{}{path}", google.base)));
        }
        settings.extend(provider_settings("OAUTH_MICROSOFT", &microsoft));
        settings.extend(provider_settings("OAUTH_OKTA", &okta));
        // A second Okta organisation, allowed per request by its issuer URL.
        let okta2 = FakeProvider::start(None).await;
        settings.push(("OAUTH_OKTA_ALLOWED_DOMAINS".into(), okta2.issuer()));
        settings.push(("OAUTH_REDIRECT_URIS".into(), APP.into()));
        let extra: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let (s, _db) = TestServer::start_with(backend, &extra).await;

        let person = Person::new("okta2-sub", "okta2.user@example.com");
        let token = okta2.id_token(&person, None, false, |_| {});
        let (code, body) = exchange(
            &s,
            json!({"provider": "okta", "id_token": token, "okta_domain": okta2.issuer()}),
        )
        .await;
        assert_eq!(code, 200, "per-request Okta organisation: {body}");
        let token = okta2.id_token(&person, None, false, |_| {});
        let (code, _) = exchange(
            &s,
            json!({"provider": "okta", "id_token": token, "okta_domain": "evil.example.com"}),
        )
        .await;
        assert_eq!(code, 422, "only listed organisations");
        let token = okta2.id_token(&person, None, false, |_| {});
        let (code, _) = exchange(&s, json!({"provider": "okta", "id_token": token})).await;
        assert_eq!(code, 401, "not the configured organisation's token");

        for (name, p) in [
            ("acme", &acme),
            ("google", &google),
            ("microsoft", &microsoft),
            ("okta", &okta),
        ] {
            // Token exchange with an ID token: first sign-in creates the account.
            let person = Person::new(&format!("{name}-sub-1"), &format!("{name}.user@example.com"));
            let (code, body) = exchange(
                &s,
                json!({"provider": name, "id_token": p.id_token(&person, None, false, |_| {})}),
            )
            .await;
            assert_eq!(code, 200, "{name}: {body}");
            let access = body["access_token"].as_str().unwrap().to_string();
            let claims = jwt_part(&access, 1);
            assert_eq!(claims["amr"], json!(["fed"]), "{name}");
            let me: Value = s.get_auth("/auth/me", &access).await.json();
            assert_eq!(me["email"], format!("{name}.user@example.com"));
            assert_eq!(me["username"], format!("{name}.user"));

            // With an access token (introspection, or Google's tokeninfo, then
            // userinfo): the same account. Microsoft has no introspection, so it takes
            // ID tokens only, even for a token issued to us.
            let own = json!({"provider": name, "access_token": p.access_token_for(&person)});
            if name == "microsoft" {
                refused(&s, own, 400, "id_token").await;
            } else {
                let (code, body) = exchange(&s, own).await;
                assert_eq!(code, 200, "{name}: {body}");
                assert_eq!(
                    jwt_part(body["access_token"].as_str().unwrap(), 1)["sub"],
                    claims["sub"]
                );
                // The same person's access token from another app of the provider (which
                // userinfo would answer for, and whose audience names us too) signs no
                // one in.
                let foreign = p.access_token_for_client(&person, "another-app-of-the-provider");
                refused(
                    &s,
                    json!({"provider": name, "access_token": foreign}),
                    401,
                    "another application",
                )
                .await;
            }

            // An access token beside the ID token is kept as the upstream token, so it
            // must belong with it: the ID token's at_hash when it has one, else the
            // provider's word (Microsoft's cannot give one).
            let upstream = p.access_token_for(&person);
            let id = p.id_token(&person, None, false, |c| {
                c["at_hash"] = json!(FakeProvider::at_hash(&upstream))
            });
            let pair = |id: &str, access: &str| json!({"provider": name, "id_token": id, "access_token": access});
            let (code, body) = exchange(&s, pair(&id, &upstream)).await;
            assert_eq!(code, 200, "{name}: {body}");
            let ours = body["access_token"].as_str().unwrap().to_string();
            // The upstream token kept for this identity.
            let kept = || async {
                let got: Value = s
                    .get_auth(&format!("/auth/me/identities/{name}/token"), &ours)
                    .await
                    .json();
                got["access_token"].as_str().unwrap_or_default().to_string()
            };
            assert_eq!(kept().await, upstream, "{name}");
            let other = p.access_token_for(&person);
            refused(&s, pair(&id, &other), 401, "at_hash").await;
            assert_eq!(kept().await, upstream, "{name}: a refused pair keeps nothing");
            let bare = p.id_token(&person, None, false, |_| {});
            if name == "microsoft" {
                refused(&s, pair(&bare, &other), 400, "at_hash").await;
                assert_eq!(kept().await, upstream, "{name}: a refused pair keeps nothing");
            } else {
                let (code, body) = exchange(&s, pair(&bare, &other)).await;
                assert_eq!(code, 200, "{name}: {body}");
                assert_eq!(kept().await, other, "{name}");
                let foreign = p.access_token_for_client(&person, "another-app-of-the-provider");
                refused(&s, pair(&bare, &foreign), 401, "another application").await;
                assert_eq!(kept().await, other, "{name}: a refused pair keeps nothing");
            }

            // The redirect flow: the same account, tokens in the fragment.
            p.sign_in_as(person.clone());
            let res = redirect_flow(&s, name).await;
            let fragment = tokens_in_fragment(&res);
            assert_eq!(fragment["token_type"], "bearer");
            assert_eq!(jwt_part(&fragment["access_token"], 1)["sub"], claims["sub"], "{name}");
            assert!(fragment["refresh_token"].len() > 20);

            let identities: Value = s.get_auth("/auth/me/identities", &access).await.json();
            assert_eq!(identities.as_array().unwrap().len(), 1);
            assert_eq!(identities[0]["provider"], name);
            assert_eq!(identities[0]["subject"], person.sub.as_str());
        }

        // Google's tokeninfo: a token it does not know is a 401, Google down a 502.
        let (code, body) = exchange(&s, json!({"provider": "google", "access_token": "unknown-to-google"})).await;
        assert_eq!(code, 401, "{body}");
        let token = google.access_token_for(&Person::new("google-sub-1", "google.user@example.com"));
        google.set_mode(Mode::Down);
        let (code, body) = exchange(&s, json!({"provider": "google", "access_token": token})).await;
        assert_eq!(code, 502, "{body}");
        google.set_mode(Mode::Normal);

        // The provider rotates its key: the JWKS is fetched again for the new kid.
        acme.rotate_key();
        // (Unknown kids refetch the JWKS at most once a second.)
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let person = Person::new("acme-sub-1", "acme.user@example.com");
        let (code, body) = exchange(
            &s,
            json!({"provider": "acme", "id_token": acme.id_token(&person, None, false, |_| {})}),
        )
        .await;
        assert_eq!(code, 200, "after rotation: {body}");

        // A second person of the same name gets a de-duplicated username.
        let twin = Person::new("acme-sub-2", "ACME.user@other.example.com");
        let (code, body) = exchange(
            &s,
            json!({"provider": "acme", "id_token": acme.id_token(&twin, None, false, |_| {})}),
        )
        .await;
        assert_eq!(code, 200, "{body}");
        let me: Value = s
            .get_auth("/auth/me", body["access_token"].as_str().unwrap())
            .await
            .json();
        assert_eq!(me["username"], "acme.user2");

        // An unconfigured provider is named in a 400.
        let (code, body) = exchange(&s, json!({"provider": "github", "access_token": "x"})).await;
        assert_eq!(code, 400);
        assert!(body["detail"].as_str().unwrap().contains("github"));
        let res = s
            .get_auth(
                "/auth/oauth/github/authorize?redirect_uri=https://app.example.com/signed-in",
                "",
            )
            .await;
        assert_eq!(res.status, 400);
        // A redirect target off the allow-list is refused.
        let res = s
            .get_auth("/auth/oauth/acme/authorize?redirect_uri=https://evil.example.com/", "")
            .await;
        assert_eq!(res.status, 422);
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_states_and_providers_are_refused() {
    for backend in backends().await {
        let acme = FakeProvider::start(None).await;
        let mut settings = provider_settings("OAUTH_OIDC_ACME", &acme);
        settings.push(("OAUTH_REDIRECT_URIS".into(), APP.into()));
        settings.push(("OAUTH_HTTP_TIMEOUT_MS".into(), "500".into()));
        let extra: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let (s, db) = TestServer::start_with(backend, &extra).await;
        let person = Person::new("bad-1", "bad@example.com");
        let now = chrono::Utc::now().timestamp();

        // ID tokens: forged, for another client, expired, another issuer, wrong nonce.
        let cases: Vec<(&str, String, Option<&str>, &str)> = vec![
            ("forged", acme.id_token(&person, None, true, |_| {}), None, "signature"),
            (
                "audience",
                acme.id_token(&person, None, false, |c| c["aud"] = json!("someone-else")),
                None,
                "another client",
            ),
            (
                "expired",
                acme.id_token(&person, None, false, |c| c["exp"] = json!(now - 3600)),
                None,
                "expired",
            ),
            (
                "issuer",
                acme.id_token(&person, None, false, |c| c["iss"] = json!("https://evil.example.com")),
                None,
                "issuer",
            ),
            (
                "nonce",
                acme.id_token(&person, Some("n-1"), false, |_| {}),
                Some("n-2"),
                "nonce",
            ),
            ("garbage", "not.a.jwt".to_string(), None, "malformed"),
            (
                "shared audience",
                acme.id_token(&person, None, false, |c| {
                    c["aud"] = json!([CLIENT_ID, "another-client"]);
                    c["azp"] = json!("another-client");
                }),
                None,
                "azp",
            ),
            (
                "several audiences, no azp",
                acme.id_token(&person, None, false, |c| {
                    c["aud"] = json!([CLIENT_ID, "another-client"])
                }),
                None,
                "azp",
            ),
            (
                "not yet valid",
                acme.id_token(&person, None, false, |c| c["nbf"] = json!(now + 3600)),
                None,
                "not yet valid",
            ),
        ];
        for (case, token, nonce, says) in cases {
            let (code, body) = exchange(&s, json!({"provider": "acme", "id_token": token, "nonce": nonce})).await;
            assert_eq!(code, 401, "{case}: {body}");
            assert!(body["detail"].as_str().unwrap().contains(says), "{case}: {body}");
        }
        // Issued to this client among others, or to another of the provider's clients
        // for this one (a mobile app asking for its server): accepted.
        for (case, token) in [
            (
                "azp ours",
                acme.id_token(&person, None, false, |c| {
                    c["aud"] = json!([CLIENT_ID, "another-client"]);
                    c["azp"] = json!(CLIENT_ID);
                }),
            ),
            (
                "cross-client",
                acme.id_token(&person, None, false, |c| c["azp"] = json!("the-mobile-app")),
            ),
        ] {
            let (code, body) = exchange(&s, json!({"provider": "acme", "id_token": token})).await;
            assert_eq!(code, 200, "{case}: {body}");
        }
        let (code, _) = exchange(
            &s,
            json!({"provider": "acme", "access_token": "unknown-to-the-provider"}),
        )
        .await;
        assert_eq!(code, 401);
        // A token that cannot go in a header is the caller's mistake, not the provider's.
        let (code, body) = exchange(&s, json!({"provider": "acme", "access_token": "a\nb"})).await;
        assert_eq!(code, 422, "{body}");
        let (code, _) = exchange(&s, json!({"provider": "acme"})).await;
        assert_eq!(code, 422);

        // State: missing, unknown, reused, expired, from another browser, for another
        // provider; PKCE verifier mismatch; the provider's own refusal.
        assert_eq!(callback(&s, "acme", "code=x", None).await.status, 400);
        assert_eq!(callback(&s, "acme", "code=x&state=nonsense", None).await.status, 400);
        let (state, code, browser) = authorize(&s, "acme").await;
        let query = format!("code={code}&state={state}");
        let first = callback(&s, "acme", &query, Some(&browser)).await;
        assert_eq!(first.status, 302);
        let again = callback(&s, "acme", &query, Some(&browser)).await;
        assert_eq!(again.status, 400);
        assert!(again.text.contains("already used"));
        let (state, code, _) = authorize(&s, "acme").await;
        // A callback link made by someone else (login CSRF) lacks this browser's cookie.
        let foreign = callback(
            &s,
            "acme",
            &format!("code={code}&state={state}"),
            Some("__Host-portcullis-oauth=someone-elses"),
        )
        .await;
        assert_eq!(foreign.status, 400);
        assert!(foreign.text.contains("another browser"));
        let (state, code, browser) = authorize(&s, "acme").await;
        let other = callback(&s, "beta", &format!("code={code}&state={state}"), Some(&browser)).await;
        assert_eq!(other.status, 400, "state of another provider");
        let (state, _, browser) = authorize(&s, "acme").await;
        let declined = callback(
            &s,
            "acme",
            &format!("error=access_denied&state={state}"),
            Some(&browser),
        )
        .await;
        assert_eq!(declined.status, 401);
        let (state, code, browser) = authorize(&s, "acme").await;
        execute_sql(
            &db,
            "UPDATE oauth_states SET expires_at = '2000-01-01T00:00:00+00:00' WHERE used_at IS NULL",
        )
        .await;
        let late = callback(&s, "acme", &format!("code={code}&state={state}"), Some(&browser)).await;
        assert_eq!(late.status, 400);
        assert!(late.text.contains("expired"));
        let (state, code, browser) = authorize(&s, "acme").await;
        execute_sql(
            &db,
            "UPDATE oauth_states SET pkce_verifier = 'not-the-verifier' WHERE used_at IS NULL",
        )
        .await;
        let res = callback(&s, "acme", &format!("code={code}&state={state}"), Some(&browser)).await;
        assert_eq!(res.status, 401, "the provider refuses the wrong verifier");
        // A wrong nonce in the ID token the provider returns is refused too.
        acme.set_nonce_override(Some("not-the-nonce"));
        let res = redirect_flow(&s, "acme").await;
        assert_eq!(res.status, 401, "nonce mismatch in the callback");
        acme.set_nonce_override(None);

        // The provider down, or slower than the bound: 502, never a hang.
        acme.set_mode(Mode::Down);
        let token = acme.access_token_for(&person);
        let (code, body) = exchange(&s, json!({"provider": "acme", "access_token": token})).await;
        assert_eq!(code, 502, "{body}");
        acme.set_mode(Mode::Slow(Duration::from_secs(3)));
        let started = Instant::now();
        let (code, _) = exchange(&s, json!({"provider": "acme", "access_token": token})).await;
        assert_eq!(code, 502);
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "bounded by OAUTH_HTTP_TIMEOUT_MS"
        );
        acme.set_mode(Mode::Normal);
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linking_unlinking_and_upstream_tokens() {
    for backend in backends().await {
        let acme = FakeProvider::start(None).await;
        let beta = FakeProvider::start(None).await;
        let mut settings = provider_settings("OAUTH_OIDC_ACME", &acme);
        settings.extend(provider_settings("OAUTH_OIDC_BETA", &beta));
        settings.push(("OAUTH_REDIRECT_URIS".into(), APP.into()));
        let extra: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let (s, db) = TestServer::start_with(backend, &extra).await;
        let admin = s.login_as("admin", ADMIN_PASSWORD).await;

        // An existing account is not linked by an unverified email, nor (by default)
        // by a verified one.
        s.user("erin").await;
        let mut claimant = Person::new("erin-upstream", "Erin@Example.com");
        claimant.email_verified = false;
        let token = acme.id_token(&claimant, None, false, |_| {});
        let (code, body) = exchange(&s, json!({"provider": "acme", "id_token": token})).await;
        assert_eq!(code, 409, "{body}");
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .contains("not assert the email is verified")
        );
        claimant.email_verified = true;
        let token = acme.id_token(&claimant, None, false, |_| {});
        assert_eq!(
            exchange(&s, json!({"provider": "acme", "id_token": token})).await.0,
            409
        );
        s.stop().await;

        // Linking by email allowed: still never into a self-registered address (it
        // was never proven; whoever registered it would get the account).
        let mut extra2 = extra.clone();
        extra2.push(("OAUTH_LINK_VERIFIED_EMAIL", "true"));
        let s = TestServer::on(&db, &extra2).await;
        let token = acme.id_token(&claimant, None, false, |_| {});
        assert_eq!(
            exchange(&s, json!({"provider": "acme", "id_token": token})).await.0,
            409
        );
        // An account a provider made from a verified email is linked by another
        // provider asserting the same verified email (whatever its case).
        let henry = Person::new("henry-at-acme", "henry@example.com");
        let token = acme.id_token(&henry, None, false, |_| {});
        let (code, first) = exchange(&s, json!({"provider": "acme", "id_token": token})).await;
        assert_eq!(code, 200, "{first}");
        // A look-alike address never finds the account it imitates (PostgreSQL's
        // lower() folds U+0130 onto `i`): it is no usable address at all.
        let iris = Person::new("iris-at-acme", "iris@example.com");
        let token = acme.id_token(&iris, None, false, |_| {});
        assert_eq!(
            exchange(&s, json!({"provider": "acme", "id_token": token})).await.0,
            200
        );
        let mallory = Person::new("mallory-at-beta", "\u{130}ris@example.com");
        let token = beta.id_token(&mallory, None, false, |_| {});
        let (code, body) = exchange(&s, json!({"provider": "beta", "id_token": token})).await;
        assert_eq!(code, 422, "{body}");
        let henry_beta = Person::new("henry-at-beta", "HENRY@example.com");
        let token = beta.id_token(&henry_beta, None, false, |_| {});
        let (code, second) = exchange(&s, json!({"provider": "beta", "id_token": token})).await;
        assert_eq!(code, 200, "{second}");
        let henry_access = second["access_token"].as_str().unwrap().to_string();
        assert_eq!(
            jwt_part(&henry_access, 1)["sub"],
            jwt_part(first["access_token"].as_str().unwrap(), 1)["sub"]
        );
        let ids: Value = s.get_auth("/auth/me/identities", &henry_access).await.json();
        assert_eq!(ids.as_array().unwrap().len(), 2);
        // One of two identities may go; the last may not (no password either).
        let unlink = |provider: &'static str, token: String| {
            let s = &s;
            async move {
                let path = format!("/auth/me/identities/{provider}");
                s.call(M::DELETE, &path, Bearer(&token), Empty).await.status
            }
        };
        // Both at once: exactly one goes.
        let (a, b) = tokio::join!(
            unlink("beta", henry_access.clone()),
            unlink("acme", henry_access.clone())
        );
        let mut statuses = [a, b];
        statuses.sort();
        assert_eq!(statuses, [204, 409]);
        assert_eq!(
            unlink("acme", henry_access.clone()).await + unlink("beta", henry_access.clone()).await,
            409 + 404
        );
        // Not with an API key: a provider's identity belongs to a person's session.
        let key = s
            .call(
                M::POST,
                "/auth/api-keys",
                Bearer(&henry_access),
                Json(json!({"name": "k"})),
            )
            .await
            .json();
        let res = s
            .call(
                M::GET,
                "/auth/me/identities/acme/token",
                ApiKey(key["key"].as_str().unwrap()),
                Empty,
            )
            .await;
        assert_eq!(res.status, 403);

        // An account made by the provider has no password: its only identity stays.
        let frank = Person::new("frank-upstream", "frank@example.com");
        acme.sign_in_as(frank.clone());
        let res = redirect_flow(&s, "acme").await;
        let fragment = tokens_in_fragment(&res);
        let access = fragment["access_token"].clone();
        let res = s
            .call(M::DELETE, "/auth/me/identities/acme", Bearer(&access), Empty)
            .await;
        assert_eq!(res.status, 409);
        // Password login to it fails like any wrong password.
        let res = s.login("frank", "anything at all").await;
        assert_eq!(res.status, 401);

        // The provider's own token is kept sealed, and refreshed upstream once expired.
        let got: Value = s.get_auth("/auth/me/identities/acme/token", &access).await.json();
        let first = got["access_token"].as_str().unwrap().to_string();
        assert!(!first.is_empty());
        execute_sql(&db, "UPDATE oauth_identities SET token_expires_at = '2000-01-01T00:00:00+00:00' WHERE subject = 'frank-upstream'").await;
        let got: Value = s.get_auth("/auth/me/identities/acme/token", &access).await.json();
        let second = got["access_token"].as_str().unwrap().to_string();
        assert_ne!(first, second, "refreshed upstream");

        // A second factor applies to provider sign-ins as to passwords.
        crate::mfa::enrol(&s, &access).await;
        let (code, body) = exchange(
            &s,
            json!({"provider": "acme", "id_token": acme.id_token(&frank, None, false, |_| {})}),
        )
        .await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["mfa_required"], true, "{body}");
        assert!(body.get("access_token").is_none());

        // Okta domains per request only from the allow-list, and only for okta.
        let (code, _) = exchange(
            &s,
            json!({"provider": "acme", "access_token": "x", "okta_domain": "acme.okta.com"}),
        )
        .await;
        assert_eq!(code, 422);

        // Audited: link, unlink, logins.
        let events: Value = s
            .get_auth(
                "/audit/logs?action=OAUTH_LINK,OAUTH_UNLINK,OAUTH_LOGIN&limit=100",
                &admin.access,
            )
            .await
            .json();
        let actions: Vec<&str> = events["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["action"].as_str().unwrap())
            .collect();
        assert_eq!(actions.iter().filter(|a| **a == "OAUTH_LINK").count(), 1, "{actions:?}");
        assert_eq!(
            actions.iter().filter(|a| **a == "OAUTH_UNLINK").count(),
            1,
            "{actions:?}"
        );
        // Iris's, Henry's two, Frank's, and Frank's again (then asked for his second
        // factor).
        assert_eq!(
            actions.iter().filter(|a| **a == "OAUTH_LOGIN").count(),
            5,
            "{actions:?}"
        );
        let trail = s
            .get_auth("/audit/logs/export?since=2000-01-01T00:00:00Z", &admin.access)
            .await
            .text;
        assert!(
            !trail.contains(&first) && !trail.contains(&second),
            "no upstream token in the trail"
        );
        s.stop().await;

        // With OAUTH_TOKEN_COOKIE the tokens come back in HttpOnly cookies instead.
        let mut extra3 = extra.clone();
        extra3.push(("OAUTH_TOKEN_COOKIE", "pcx_session"));
        let s = TestServer::on(&db, &extra3).await;
        acme.sign_in_as(Person::new("grace-upstream", "grace@example.com"));
        let res = redirect_flow(&s, "acme").await;
        assert_eq!(res.status, 302);
        assert_eq!(res.headers["location"], APP, "no fragment");
        let cookies: Vec<&str> = res
            .headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap())
            .filter(|c| c.starts_with("pcx_session"))
            .collect();
        assert_eq!(cookies.len(), 2, "{cookies:?}");
        for c in &cookies {
            assert!(
                c.contains("HttpOnly") && c.contains("Secure") && c.contains("SameSite=Lax"),
                "{c}"
            );
        }
        let access = cookies[0]
            .strip_prefix("pcx_session=")
            .unwrap()
            .split(';')
            .next()
            .unwrap();
        assert_eq!(s.get_auth("/auth/me", access).await.status, 200);
        s.stop().await;
    }
}

/// What `/auth/me/identities/okta/token` answers the holder of `access`.
async fn okta_upstream_token(s: &TestServer, access: &str) -> (u16, Value) {
    let res = s.get_auth("/auth/me/identities/okta/token", access).await;
    (res.status, res.body)
}

/// A provider token is refreshed at the Okta organisation that issued it, even after
/// the configured organisation has moved, while that one stays allowed; once it is no
/// longer allowed, the refresh is refused rather than sent to another organisation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okta_tokens_refresh_where_they_were_issued() {
    for backend in backends().await {
        let first = FakeProvider::start(None).await;
        let second = FakeProvider::start(None).await;
        let settings = |configured: &FakeProvider, allowed: Option<&FakeProvider>| {
            let mut v = provider_settings("OAUTH_OKTA", configured);
            v.push(("OAUTH_REDIRECT_URIS".into(), APP.into()));
            if let Some(a) = allowed {
                v.push(("OAUTH_OKTA_ALLOWED_DOMAINS".into(), a.issuer()));
            }
            v
        };
        let expire = "UPDATE oauth_identities SET token_expires_at = '2000-01-01T00:00:00+00:00' \
                      WHERE subject = 'gina-at-okta'";

        let at_first = settings(&first, None);
        let extra: Vec<(&str, &str)> = at_first.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let (s, db) = TestServer::start_with(backend, &extra).await;
        first.sign_in_as(Person::new("gina-at-okta", "gina@example.com"));
        let access = tokens_in_fragment(&redirect_flow(&s, "okta").await)["access_token"].clone();
        let (status, issued) = okta_upstream_token(&s, &access).await;
        assert_eq!(status, 200, "{issued}");
        s.stop().await;

        // The organisation moves; the first stays allowed per request.
        let moved = settings(&second, Some(&first));
        let extra: Vec<(&str, &str)> = moved.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let s = TestServer::on(&db, &extra).await;
        execute_sql(&db, expire).await;
        let (status, refreshed) = okta_upstream_token(&s, &access).await;
        assert_eq!(status, 200, "refreshed at the first organisation: {refreshed}");
        assert_ne!(refreshed["access_token"], issued["access_token"]);
        s.stop().await;

        // The first organisation no longer allowed: refused, nothing sent elsewhere.
        let only_second = settings(&second, None);
        let extra: Vec<(&str, &str)> = only_second.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let s = TestServer::on(&db, &extra).await;
        execute_sql(&db, expire).await;
        let (status, body) = okta_upstream_token(&s, &access).await;
        assert_eq!(status, 422, "{body}");
        assert!(
            body["detail"].as_str().unwrap().contains("OAUTH_OKTA_ALLOWED_DOMAINS"),
            "{body}"
        );
        s.stop().await;
    }
}

/// The settings of providers `(NAME, provider)`, and the app the redirect flow returns to.
fn providers(named: &[(&str, &FakeProvider)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = named
        .iter()
        .flat_map(|(name, p)| provider_settings(&format!("OAUTH_OIDC_{name}"), p))
        .collect();
    v.push(("OAUTH_REDIRECT_URIS".into(), APP.into()));
    v
}

/// A server on `db` with `settings`.
async fn server_on(db: &TestDb, settings: &[(String, String)]) -> TestServer {
    let extra: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    TestServer::on(db, &extra).await
}

/// Signs `person` in through `provider` (an ID token of `issuer`): the user id of the
/// account it opens, and its access token.
async fn signed_in(s: &TestServer, provider: &str, issuer: &FakeProvider, person: &Person) -> (String, String) {
    let token = issuer.id_token(person, None, false, |_| {});
    let (code, body) = exchange(s, json!({"provider": provider, "id_token": token})).await;
    assert_eq!(code, 200, "{provider}: {body}");
    let access = body["access_token"].as_str().unwrap().to_string();
    (jwt_part(&access, 1)["sub"].as_str().unwrap().to_string(), access)
}

/// An upstream identity is its issuer's subject, whatever name the provider is
/// configured under: a renamed provider finds the same account, one subject at two
/// issuers is two people, and a name pointed at another issuer opens none of the old
/// issuer's accounts (nor gets its tokens refreshed there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identities_are_keyed_by_issuer_and_subject() {
    for backend in backends().await {
        let a = FakeProvider::start(None).await;
        let b = FakeProvider::start(None).await;
        let db = TestDb::new(backend).await;
        let ada = Person::new("shared-subject", "ada@example.com");
        let bob = Person::new("shared-subject", "bob@example.com");

        let s = server_on(&db, &providers(&[("ACME", &a)])).await;
        let (ada_id, _) = signed_in(&s, "acme", &a, &ada).await;
        s.stop().await;

        // Renamed: the same account (no second one, no "already exists" refusal).
        let s = server_on(&db, &providers(&[("RENAMED", &a), ("OTHER", &b)])).await;
        let (id, _) = signed_in(&s, "renamed", &a, &ada).await;
        assert_eq!(id, ada_id, "a renamed provider finds the account");
        // Through the redirect flow too, which keeps the provider's tokens.
        a.sign_in_as(ada.clone());
        let ada_access = tokens_in_fragment(&redirect_flow(&s, "renamed").await)["access_token"].clone();
        assert_eq!(jwt_part(&ada_access, 1)["sub"], ada_id.as_str());
        let ids = s.get_auth("/auth/me/identities", &ada_access).await.json();
        assert_eq!(ids.as_array().unwrap().len(), 1, "{ids}");
        assert_eq!(ids[0]["provider"], "renamed", "{ids}");
        assert_eq!(ids[0]["issuer"], a.issuer().as_str(), "{ids}");
        // The same subject at another issuer is someone else.
        let (bob_id, _) = signed_in(&s, "other", &b, &bob).await;
        assert_ne!(bob_id, ada_id, "one subject at two issuers is two identities");
        s.stop().await;

        // The name pointed at the other issuer: its subject is Bob's, not Ada's.
        let s = server_on(&db, &providers(&[("RENAMED", &b)])).await;
        let (id, _) = signed_in(&s, "renamed", &b, &bob).await;
        assert_eq!(id, bob_id, "a re-pointed name opens the new issuer's account");
        // Ada's kept tokens of the first issuer are not refreshed at the second.
        execute_sql(
            &db,
            "UPDATE oauth_identities SET token_expires_at = '2000-01-01T00:00:00+00:00' WHERE email = 'ada@example.com'",
        )
        .await;
        let res = s.get_auth("/auth/me/identities/renamed/token", &ada_access).await;
        assert_eq!(res.status, 409, "{}", res.text);
        assert!(res.text.contains("another issuer"), "{}", res.text);
        s.stop().await;
    }
}

/// Identities linked before issuers were recorded get the issuer configured under
/// their provider's name when the service starts; one whose provider is not
/// configured keeps none (and signs in to nothing) until it is configured again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identities_without_an_issuer_take_their_providers_at_start() {
    for backend in backends().await {
        let a = FakeProvider::start(None).await;
        let b = FakeProvider::start(None).await;
        let db = TestDb::new(backend).await;
        let carol = Person::new("carol-sub", "carol@example.com");
        let dave = Person::new("dave-sub", "dave@example.com");
        let s = server_on(&db, &providers(&[("ACME", &a), ("GONE", &b)])).await;
        let (carol_id, _) = signed_in(&s, "acme", &a, &carol).await;
        let (dave_id, dave_access) = signed_in(&s, "gone", &b, &dave).await;
        s.stop().await;
        execute_sql(&db, "UPDATE oauth_identities SET issuer = NULL").await;

        let s = server_on(&db, &providers(&[("ACME", &a)])).await;
        assert_eq!(signed_in(&s, "acme", &a, &carol).await.0, carol_id);
        let ids = s.get_auth("/auth/me/identities", &dave_access).await.json();
        assert_eq!(ids[0]["provider"], "gone", "{ids}");
        assert!(ids[0]["issuer"].is_null(), "not configured: no issuer: {ids}");
        s.stop().await;

        let s = server_on(&db, &providers(&[("ACME", &a), ("GONE", &b)])).await;
        assert_eq!(signed_in(&s, "gone", &b, &dave).await.0, dave_id);
        let ids = s.get_auth("/auth/me/identities", &dave_access).await.json();
        assert_eq!(ids[0]["issuer"], b.issuer().as_str(), "{ids}");
        s.stop().await;
    }
}

/// Migration 0011 re-keys the identities 0007 made: each keeps the issuer it recorded
/// (without a trailing `/`); of two names' identities of one issuer and subject the
/// one linked first keeps it and the other is left without (no sign-in finds it);
/// one without an issuer stays without. On both backends, from the real scripts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_0011_rekeys_identities_by_issuer() {
    for backend in backends().await {
        let db = TestDb::new(backend).await;
        let dir = format!(
            "{}/migrations/{}",
            env!("CARGO_MANIFEST_DIR"),
            if backend == Backend::Sqlite {
                "sqlite"
            } else {
                "postgres"
            }
        );
        let mut scripts: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "sql"))
            .collect();
        scripts.sort();
        let (before, from): (Vec<_>, Vec<_>) = scripts
            .into_iter()
            .partition(|p| p.file_name().unwrap().to_str().unwrap() < "0011");
        let (users, rows) = if backend == Backend::Sqlite {
            (
                "INSERT INTO users (id, username, email, created_at, updated_at) VALUES \
                 (x'00000000000000000000000000000001', 'u1', 'u1@example.com', '2020-01-01T00:00:00+00:00', '2020-01-01T00:00:00+00:00'), \
                 (x'00000000000000000000000000000002', 'u2', 'u2@example.com', '2020-01-01T00:00:00+00:00', '2020-01-01T00:00:00+00:00')",
                "INSERT INTO oauth_identities (provider, subject, user_id, issuer, created_at, last_login_at) VALUES \
                 ('acme', 's1', x'00000000000000000000000000000001', 'https://a.example/', '2020-01-01T00:00:00+00:00', '2020-01-01T00:00:00+00:00'), \
                 ('acme2', 's1', x'00000000000000000000000000000002', 'https://a.example', '2021-01-01T00:00:00+00:00', '2021-01-01T00:00:00+00:00'), \
                 ('beta', 's1', x'00000000000000000000000000000001', 'https://b.example', '2021-01-01T00:00:00+00:00', '2021-01-01T00:00:00+00:00'), \
                 ('gone', 's2', x'00000000000000000000000000000002', NULL, '2021-01-01T00:00:00+00:00', '2021-01-01T00:00:00+00:00')",
            )
        } else {
            (
                "INSERT INTO users (id, username, email, created_at, updated_at) VALUES \
                 ('00000000-0000-0000-0000-000000000001', 'u1', 'u1@example.com', '2020-01-01T00:00:00Z', '2020-01-01T00:00:00Z'), \
                 ('00000000-0000-0000-0000-000000000002', 'u2', 'u2@example.com', '2020-01-01T00:00:00Z', '2020-01-01T00:00:00Z')",
                "INSERT INTO oauth_identities (provider, subject, user_id, issuer, created_at, last_login_at) VALUES \
                 ('acme', 's1', '00000000-0000-0000-0000-000000000001', 'https://a.example/', '2020-01-01T00:00:00Z', '2020-01-01T00:00:00Z'), \
                 ('acme2', 's1', '00000000-0000-0000-0000-000000000002', 'https://a.example', '2021-01-01T00:00:00Z', '2021-01-01T00:00:00Z'), \
                 ('beta', 's1', '00000000-0000-0000-0000-000000000001', 'https://b.example', '2021-01-01T00:00:00Z', '2021-01-01T00:00:00Z'), \
                 ('gone', 's2', '00000000-0000-0000-0000-000000000002', NULL, '2021-01-01T00:00:00Z', '2021-01-01T00:00:00Z')",
            )
        };
        let run = |files: Vec<std::path::PathBuf>| files.into_iter().map(|f| std::fs::read_to_string(f).unwrap());
        let mut statements: Vec<String> = run(before).collect();
        statements.push(users.into());
        statements.push(rows.into());
        statements.extend(run(from));
        let query = "SELECT provider, COALESCE(issuer, '-') FROM oauth_identities ORDER BY provider";
        let found: Vec<(String, String)> = if backend == Backend::Sqlite {
            let pool = sqlx::SqlitePool::connect(&format!("{}?mode=rwc", db.url))
                .await
                .unwrap();
            for sql in &statements {
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.as_str()))
                    .execute(&pool)
                    .await
                    .unwrap();
            }
            sqlx::query_as(query).fetch_all(&pool).await.unwrap()
        } else {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            for sql in &statements {
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.as_str()))
                    .execute(&pool)
                    .await
                    .unwrap();
            }
            sqlx::query_as(query).fetch_all(&pool).await.unwrap()
        };
        let expected = [
            ("acme", "https://a.example"),
            ("acme2", "-"),
            ("beta", "https://b.example"),
            ("gone", "-"),
        ]
        .map(|(p, i)| (p.to_string(), i.to_string()));
        assert_eq!(found, expected, "{backend:?}");
    }
}

/// A provider that releases the email and profile only at UserInfo (OpenID Connect
/// Core 5.4): after the code exchange, and in a token exchange of an ID token without
/// them beside its access token, UserInfo completes the ID token; an unverified email
/// there still links to no account; UserInfo about another subject is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userinfo_completes_id_tokens_without_email() {
    for backend in backends().await {
        let acme = FakeProvider::start(None).await;
        let beta = FakeProvider::start(None).await;
        let mut settings = providers(&[("ACME", &acme), ("BETA", &beta)]);
        settings.push(("OAUTH_LINK_VERIFIED_EMAIL".into(), "true".into()));
        let db = TestDb::new(backend).await;
        let s = server_on(&db, &settings).await;
        acme.set_mode(Mode::UserInfoOnly);
        let no_email = acme.id_token(&Person::new("x", "x@example.com"), None, false, |_| {});
        assert!(
            jwt_part(&no_email, 1).get("email").is_none(),
            "the ID tokens carry no email"
        );

        // The redirect flow: the account gets UserInfo's email and name.
        let mut uma = Person::new("uma-sub", "uma@example.com");
        uma.name = "Uma Userinfo".into();
        acme.sign_in_as(uma.clone());
        let access = tokens_in_fragment(&redirect_flow(&s, "acme").await)["access_token"].clone();
        let me = s.get_auth("/auth/me", &access).await.json();
        assert_eq!(me["email"], "uma@example.com", "{me}");
        assert_eq!(me["full_name"], "Uma Userinfo", "{me}");

        // The token exchange: an ID token alone has no email to make an account with;
        // beside its access token, UserInfo gives it.
        let vera = Person::new("vera-sub", "vera@example.com");
        let id_token = acme.id_token(&vera, None, false, |_| {});
        refused(
            &s,
            json!({"provider": "acme", "id_token": id_token}),
            422,
            "no usable email",
        )
        .await;
        let upstream_access = acme.access_token_for(&vera);
        let (code, body) = exchange(
            &s,
            json!({"provider": "acme", "id_token": id_token, "access_token": upstream_access}),
        )
        .await;
        assert_eq!(code, 200, "{body}");
        let me = s
            .get_auth("/auth/me", body["access_token"].as_str().unwrap())
            .await
            .json();
        assert_eq!(me["email"], "vera@example.com", "{me}");

        // Another provider's subject with Uma's address, unverified at UserInfo: not
        // linked into her account (which a provider made from a verified address).
        beta.set_mode(Mode::UserInfoOnly);
        let mut claimant = Person::new("claimant-sub", "uma@example.com");
        claimant.email_verified = false;
        beta.sign_in_as(claimant.clone());
        let res = redirect_flow(&s, "beta").await;
        assert_eq!(res.status, 409, "{}", res.text);
        assert!(res.text.contains("not assert the email is verified"), "{}", res.text);
        // Verified, it is linked (OAUTH_LINK_VERIFIED_EMAIL).
        claimant.email_verified = true;
        beta.sign_in_as(claimant.clone());
        let linked = tokens_in_fragment(&redirect_flow(&s, "beta").await)["access_token"].clone();
        assert_eq!(jwt_part(&linked, 1)["sub"], jwt_part(&access, 1)["sub"]);

        // UserInfo about someone else than the ID token: refused both ways.
        acme.set_mode(Mode::UserInfoOfAnother);
        let wendy = Person::new("wendy-sub", "wendy@example.com");
        acme.sign_in_as(wendy.clone());
        let res = redirect_flow(&s, "acme").await;
        assert_eq!(res.status, 401, "{}", res.text);
        assert!(res.text.contains("another subject"), "{}", res.text);
        let id_token = acme.id_token(&wendy, None, false, |_| {});
        refused(
            &s,
            json!({"provider": "acme", "id_token": id_token, "access_token": acme.access_token_for(&wendy)}),
            401,
            "another subject",
        )
        .await;
        assert_eq!(
            s.login("wendy", "anything at all").await.status,
            401,
            "no account was made"
        );
        s.stop().await;
    }
}

/// A provider that puts the email in the ID token but the profile (`name`) only at
/// UserInfo: after the code exchange UserInfo completes the profile (before, it was
/// read only for a missing email, and the account was left without a name); with
/// UserInfo failing the sign-in still goes on (the email is in the ID token); UserInfo
/// about another subject is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userinfo_completes_the_profile_of_id_tokens_with_an_email() {
    for backend in backends().await {
        let acme = FakeProvider::start(None).await;
        let settings = providers(&[("ACME", &acme)]);
        let db = TestDb::new(backend).await;
        let s = server_on(&db, &settings).await;
        acme.set_mode(Mode::ProfileAtUserInfo);
        let mut pia = Person::new("pia-sub", "pia@example.com");
        pia.name = "Pia Profile".into();
        let id_token = jwt_part(&acme.id_token(&pia, None, false, |_| {}), 1);
        assert!(
            id_token.get("name").is_none() && id_token["email"] == "pia@example.com",
            "{id_token}"
        );
        acme.sign_in_as(pia.clone());
        let access = tokens_in_fragment(&redirect_flow(&s, "acme").await)["access_token"].clone();
        let me = s.get_auth("/auth/me", &access).await.json();
        assert_eq!(me["email"], "pia@example.com", "{backend:?}: {me}");
        assert_eq!(me["full_name"], "Pia Profile", "{backend:?}: {me}");

        // UserInfo down: the ID token's email is enough to sign in.
        acme.set_mode(Mode::ProfileAtUserInfoDown);
        let quinn = Person::new("quinn-sub", "quinn@example.com");
        acme.sign_in_as(quinn.clone());
        let res = redirect_flow(&s, "acme").await;
        let access = tokens_in_fragment(&res)["access_token"].clone();
        let me = s.get_auth("/auth/me", &access).await.json();
        assert_eq!(me["email"], "quinn@example.com", "{backend:?}: {me}");
        assert!(me["full_name"].is_null(), "{me}");

        // UserInfo about someone else than the ID token: refused.
        acme.set_mode(Mode::ProfileAtUserInfoOfAnother);
        acme.sign_in_as(Person::new("rita-sub", "rita@example.com"));
        let res = redirect_flow(&s, "acme").await;
        assert_eq!(res.status, 401, "{}", res.text);
        assert!(res.text.contains("another subject"), "{}", res.text);
        s.stop().await;
    }
}

/// A Microsoft multi-tenant identity is keyed by its tenant's issuer (the signed `tid`
/// filled into `{tenantid}`), refreshes at the configured provider, and one linked
/// before 0011 under the configured issuer moves to its tenant's on its next sign-in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_tenant_identities_are_keyed_by_their_tenants_issuer() {
    const TENANT: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";
    for backend in backends().await {
        let microsoft = FakeProvider::start(Some(TENANT)).await;
        let mut settings = provider_settings("OAUTH_MICROSOFT", &microsoft);
        settings.push(("OAUTH_REDIRECT_URIS".into(), APP.into()));
        let db = TestDb::new(backend).await;
        let s = server_on(&db, &settings).await;
        let tenant_issuer = format!("{}/{TENANT}/v2.0", microsoft.base);

        let mia = Person::new("mia-sub", "mia@example.com");
        microsoft.sign_in_as(mia.clone());
        let access = tokens_in_fragment(&redirect_flow(&s, "microsoft").await)["access_token"].clone();
        let ids = s.get_auth("/auth/me/identities", &access).await.json();
        assert_eq!(ids[0]["issuer"], tenant_issuer.as_str(), "{ids}");
        // Refreshed at the provider configured (its tenant's issuer is one it serves).
        execute_sql(
            &db,
            "UPDATE oauth_identities SET token_expires_at = '2000-01-01T00:00:00+00:00' WHERE subject = 'mia-sub'",
        )
        .await;
        let res = s.get_auth("/auth/me/identities/microsoft/token", &access).await;
        assert_eq!(res.status, 200, "{}", res.text);

        // As linked before 0011: under the issuer configured.
        let configured = microsoft.issuer();
        let sql = format!("UPDATE oauth_identities SET issuer = '{configured}' WHERE subject = 'mia-sub'");
        assert_eq!(execute_sql(&db, Box::leak(sql.into_boxed_str())).await, 1);
        let (id, _) = signed_in(&s, "microsoft", &microsoft, &mia).await;
        assert_eq!(id, jwt_part(&access, 1)["sub"].as_str().unwrap(), "the same account");
        let ids = s.get_auth("/auth/me/identities", &access).await.json();
        assert_eq!(ids.as_array().unwrap().len(), 1, "{ids}");
        assert_eq!(ids[0]["issuer"], tenant_issuer.as_str(), "moved to its tenant's: {ids}");
        s.stop().await;
    }
}
