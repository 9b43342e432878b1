//! The authorization code flow over real HTTP on both backends: a person signs in on
//! the hosted page, consents, the application redeems the code with PKCE, verifies
//! the ID token against the JWKS, reads UserInfo and refreshes; and every attack the
//! issue names is refused (code replay revokes, another client, another redirect URI,
//! a wrong or missing verifier, plain PKCE, an unregistered redirect URI never
//! redirected to, prompt=none without a session, a declined consent, a reused refresh
//! token).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis::domain::Actor;
use portcullis::domain::oidc::{ClientKind, ClientSpec, CreatedClient, TokenAuthMethod};
use serde_json::Value;
use sha2::Digest;

use crate::pages::{SAME_ORIGIN, csrf_of, get_page, page_sign_in, post_form, set_cookie};
use crate::support::*;

pub const REDIRECT: &str = "https://app.example/cb";
pub const VERIFIER: &str = "a-verifier-of-enough-length-0123456789abcdefghij";

/// The S256 challenge of `verifier`.
pub fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()))
}

/// Registers an application (confidential unless `public`).
pub async fn register_app(
    s: &TestServer,
    id: &str,
    redirect: &str,
    first_party: bool,
    scopes: &[&str],
) -> CreatedClient {
    let spec = ClientSpec {
        client_id: Some(id.into()),
        name: format!("App {id}"),
        redirect_uris: vec![redirect.into()],
        scopes: Some(scopes.iter().map(|s| s.to_string()).collect()),
        first_party,
        ..Default::default()
    };
    s.service.create_client(spec, &Actor::system()).await.expect("client")
}

async fn public_app(s: &TestServer, id: &str) -> CreatedClient {
    let spec = ClientSpec {
        client_id: Some(id.into()),
        name: "Public app".into(),
        kind: Some(ClientKind::Public),
        token_endpoint_auth_method: Some(TokenAuthMethod::None),
        redirect_uris: vec![REDIRECT.into()],
        ..Default::default()
    };
    s.service
        .create_client(spec, &Actor::system())
        .await
        .expect("public client")
}

fn enc(v: &str) -> String {
    url::form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

/// `/oauth2/authorize?…` for `client_id` with PKCE (S256 of [`VERIFIER`]), `state`
/// and `nonce`, and `extra` (which may override any of them).
pub fn authorize_path(client_id: &str, scope: &str, extra: &[(&str, &str)]) -> String {
    let challenge = challenge(VERIFIER);
    let mut params: Vec<(&str, &str)> = vec![
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", REDIRECT),
        ("scope", scope),
        ("state", "st-123"),
        ("nonce", "n-456"),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ];
    for (k, v) in extra {
        params.retain(|(p, _)| p != k);
        if !v.is_empty() {
            params.push((k, v));
        }
    }
    let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={}", enc(v))).collect();
    format!("/oauth2/authorize?{}", query.join("&"))
}

/// The query parameters of a redirect's `Location`.
pub fn redirect_params(reply: &Reply) -> (String, std::collections::HashMap<String, String>) {
    let location = reply
        .header("location")
        .unwrap_or_else(|| panic!("no Location: {} {}", reply.status, reply.text));
    let url = url::Url::parse(location).expect("absolute Location");
    let base = format!("{}://{}{}", url.scheme(), url.host_str().unwrap_or(""), url.path());
    (base, url.query_pairs().into_owned().collect())
}

/// Allows (or denies) on the consent page the browser with `cookie` was shown.
pub async fn decide(s: &TestServer, cookie: &str, html: &str, decision: &str) -> Reply {
    let mut fields: Vec<(String, String)> = vec![("csrf".into(), csrf_of(html)), ("decision".into(), decision.into())];
    for piece in html.split("<input type=\"hidden\" name=\"").skip(1) {
        let name = piece.split('"').next().unwrap().to_string();
        let value = piece.split("value=\"").nth(1).unwrap().split('"').next().unwrap();
        if name != "csrf" {
            fields.push((name, html_unescape(value)));
        }
    }
    let borrowed: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    post_form(s, "/oauth2/authorize", &borrowed, Some(cookie), SAME_ORIGIN).await
}

fn html_unescape(v: &str) -> String {
    v.replace("&#x2f;", "/")
        .replace("&#47;", "/")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The code the browser with `cookie` is sent back with (through the consent page
/// when it is shown).
pub async fn code_for(s: &TestServer, cookie: &str, path: &str) -> String {
    let mut res = get_page(s, path, Some(cookie)).await;
    if res.status == 200 {
        assert!(res.text.contains("consent-allow"), "{}", res.text);
        res = decide(s, cookie, &res.text, "allow").await;
    }
    assert_eq!(res.status, 303, "{}", res.text);
    let (base, q) = redirect_params(&res);
    assert_eq!(base, REDIRECT);
    assert_eq!(q.get("state").map(String::as_str), Some("st-123"));
    q.get("code").unwrap_or_else(|| panic!("no code: {q:?}")).clone()
}

/// A token request with client_secret_post.
pub async fn token(s: &TestServer, client: &CreatedClient, form: &[(&str, &str)]) -> Reply {
    let mut fields = form.to_vec();
    fields.push(("client_id", &client.client.client_id));
    if let Some(secret) = &client.client_secret {
        fields.push(("client_secret", secret));
    }
    s.call(M::POST, "/oauth2/token", Anonymous, Form(&fields)).await
}

pub async fn redeem(s: &TestServer, client: &CreatedClient, code: &str) -> Reply {
    token(
        s,
        client,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ],
    )
    .await
}

fn expect_oauth_error(res: &Reply, status: u16, error: &str) {
    assert_eq!(res.status, status, "{}", res.text);
    assert_eq!(res.body["error"], error, "{}", res.text);
}

/// Verifies an ID token's signature against the JWKS and its issuer and audience.
pub async fn verified_id_token(s: &TestServer, id_token: &str, client_id: &str) -> Value {
    let header = jsonwebtoken::decode_header(id_token).expect("id token header");
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_value(s.jwks().await).expect("jwks");
    let jwk = jwks
        .find(header.kid.as_deref().expect("kid"))
        .expect("the signing key is published");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).expect("decoding key");
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_audience(&[client_id]);
    validation.set_issuer(&[&s.service.config().tokens.jwt_issuer]);
    jsonwebtoken::decode::<Value>(id_token, &key, &validation)
        .expect("a valid ID token")
        .claims
}

/// OpenID Connect Core 3.1.3.6: the left half of the access token's hash.
fn at_hash(alg: jsonwebtoken::Algorithm, access: &str) -> String {
    use jsonwebtoken::Algorithm::*;
    let digest = match alg {
        RS384 | ES384 | PS384 => sha2::Sha384::digest(access.as_bytes()).to_vec(),
        RS512 | PS512 | EdDSA => sha2::Sha512::digest(access.as_bytes()).to_vec(),
        _ => sha2::Sha256::digest(access.as_bytes()).to_vec(),
    };
    URL_SAFE_NO_PAD.encode(&digest[..digest.len() / 2])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_code_flow_signs_in_verifies_and_refreshes() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        s.register("alice").await;
        let app = register_app(
            &s,
            "notes",
            REDIRECT,
            false,
            &["openid", "profile", "email", "offline_access"],
        )
        .await;
        let cookie = page_sign_in(&s, "alice", PASSWORD).await;
        let issuer = s.service.config().tokens.jwt_issuer.clone();

        // First time: the consent page, in plain words, with the app's name.
        let path = authorize_path("notes", "openid profile email offline_access", &[]);
        let page = get_page(&s, &path, Some(&cookie)).await;
        assert_eq!(page.status, 200, "{}", page.text);
        assert!(
            page.text.contains("App notes") && page.text.contains("See your e-mail address"),
            "{}",
            page.text
        );
        let csp = page.header("content-security-policy").unwrap();
        assert!(csp.contains("form-action 'self' https://app.example"), "{csp}");
        let res = decide(&s, &cookie, &page.text, "allow").await;
        assert_eq!(res.status, 303, "{}", res.text);
        let (base, q) = redirect_params(&res);
        assert_eq!(base, REDIRECT);
        assert_eq!(q["state"], "st-123");
        assert_eq!(q["iss"], issuer, "RFC 9207: the issuer in the answer");
        let code = q["code"].clone();

        let tokens = redeem(&s, &app, &code).await;
        assert_eq!(tokens.status, 200, "{}", tokens.text);
        assert_eq!(tokens.header("cache-control"), Some("no-store"));
        let body = tokens.json();
        let access = body["access_token"].as_str().unwrap().to_string();
        let refresh = body["refresh_token"]
            .as_str()
            .expect("offline_access gives a refresh token")
            .to_string();
        let id_token = body["id_token"].as_str().expect("openid gives an ID token");
        let claims = verified_id_token(&s, id_token, "notes").await;
        let alg = jsonwebtoken::decode_header(id_token).unwrap().alg;
        assert_eq!(claims["iss"], issuer);
        assert_eq!(claims["aud"], "notes");
        assert_eq!(claims["azp"], "notes");
        assert_eq!(claims["nonce"], "n-456");
        assert_eq!(claims["at_hash"], at_hash(alg, &access));
        assert_eq!(claims["email"], "alice@example.com");
        assert_eq!(claims["preferred_username"], "alice");
        assert!(claims["sid"].is_string(), "{claims}");
        let now = chrono::Utc::now().timestamp();
        let auth_time = claims["auth_time"].as_i64().unwrap();
        assert!(auth_time <= now && auth_time > now - 120, "{claims}");
        assert_eq!(jwt_part(&access, 1)["client_id"], "notes");

        // UserInfo, GET and POST.
        for method in [M::GET, M::POST] {
            let info = s.call(method, "/oauth2/userinfo", Bearer(&access), Empty).await;
            assert_eq!(info.status, 200, "{}", info.text);
            let info = info.json();
            assert_eq!(info["sub"], claims["sub"]);
            assert_eq!(info["email"], "alice@example.com");
            assert_eq!(info["name"], "alice");
        }

        // Refresh: new tokens for the same scopes.
        let refreshed = token(
            &s,
            &app,
            &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
        )
        .await;
        assert_eq!(refreshed.status, 200, "{}", refreshed.text);
        assert!(refreshed.body["refresh_token"].is_string());

        // Consent is remembered: a subset skips the page.
        let again = get_page(&s, &authorize_path("notes", "openid email", &[]), Some(&cookie)).await;
        assert_eq!(again.status, 303, "{}", again.text);
        assert!(redirect_params(&again).1.contains_key("code"));

        // Without offline_access a third-party app gets no refresh token.
        let code = code_for(&s, &cookie, &authorize_path("notes", "openid", &[])).await;
        let body = redeem(&s, &app, &code).await.json();
        assert!(body.get("refresh_token").is_none(), "{body}");
        assert!(body["id_token"].is_string());
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_code_replay_revokes_and_codes_are_bound() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        s.register("bob").await;
        let app = register_app(&s, "first", REDIRECT, true, &["openid", "profile", "offline_access"]).await;
        let other = register_app(&s, "other", REDIRECT, true, &["openid"]).await;
        let cookie = page_sign_in(&s, "bob", PASSWORD).await;
        let path = authorize_path("first", "openid offline_access", &[]);

        // Replay: the second redemption is refused and ends what the first got.
        let code = code_for(&s, &cookie, &path).await;
        let first = redeem(&s, &app, &code).await;
        assert_eq!(first.status, 200, "{}", first.text);
        let access = first.body["access_token"].as_str().unwrap().to_string();
        let refresh = first.body["refresh_token"].as_str().unwrap().to_string();
        assert_eq!(s.get_auth("/auth/me", &access).await.status, 200);
        expect_oauth_error(&redeem(&s, &app, &code).await, 400, "invalid_grant");
        expect_invalid_token(s.get_auth("/auth/me", &access).await);
        let refused = token(
            &s,
            &app,
            &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
        )
        .await;
        expect_oauth_error(&refused, 400, "invalid_grant");

        // Another client cannot redeem it (and the right one still can).
        let code = code_for(&s, &cookie, &path).await;
        expect_oauth_error(&redeem(&s, &other, &code).await, 400, "invalid_grant");
        assert_eq!(redeem(&s, &app, &code).await.status, 200);

        // Another redirect URI, a wrong verifier, no verifier.
        for (field, value) in [
            ("redirect_uri", "https://app.example/other"),
            ("code_verifier", "another-verifier-of-enough-length-0123456789abcdef"),
            ("code_verifier", ""),
        ] {
            let code = code_for(&s, &cookie, &path).await;
            let mut form = vec![
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", REDIRECT),
                ("code_verifier", VERIFIER),
            ];
            form.retain(|(k, _)| *k != field);
            if !value.is_empty() {
                form.push((field, value));
            }
            let res = token(&s, &app, &form).await;
            expect_oauth_error(&res, 400, "invalid_grant");
            assert!(!res.text.contains(&code), "the code is never echoed");
        }

        // A made-up code.
        expect_oauth_error(&redeem(&s, &app, "x".repeat(43).as_str()).await, 400, "invalid_grant");

        // A client without the grant: unauthorized_client at the authorization endpoint.
        let spec = ClientSpec {
            client_id: Some("machine".into()),
            name: "Machine".into(),
            redirect_uris: vec![REDIRECT.into()],
            grant_types: Some(vec!["client_credentials".into()]),
            ..Default::default()
        };
        s.service.create_client(spec, &Actor::system()).await.unwrap();
        let res = get_page(&s, &authorize_path("machine", "openid", &[]), Some(&cookie)).await;
        assert_eq!(redirect_params(&res).1["error"], "unauthorized_client");
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_authorize_refuses_bad_requests_where_it_should() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        s.register("carol").await;
        register_app(&s, "web", REDIRECT, false, &["openid", "profile"]).await;
        let cookie = page_sign_in(&s, "carol", PASSWORD).await;
        let issuer = s.service.config().tokens.jwt_issuer.clone();

        // Never redirected to: an unregistered redirect URI, an unknown client.
        for path in [
            authorize_path("web", "openid", &[("redirect_uri", "https://evil.example/cb")]),
            authorize_path("nobody", "openid", &[]),
            authorize_path("", "openid", &[]),
        ] {
            for cookie in [None, Some(cookie.as_str())] {
                let res = get_page(&s, &path, cookie).await;
                assert_eq!(res.status, 400, "{path}: {}", res.text);
                assert!(res.header("location").is_none(), "{path}");
                assert!(res.header("content-type").unwrap().starts_with("text/html"));
                assert!(!res.text.contains("evil.example/cb?"), "{}", res.text);
            }
        }
        // In the visitor's language.
        let path = authorize_path("nobody", "openid", &[]);
        let de = s
            .http
            .call_with(M::GET, &path, Anonymous, Empty, &[("accept-language", "de")])
            .await;
        assert_eq!(de.status, 400);
        assert!(de.text.contains("lang=\"de\""), "{}", de.text);

        // Errors the application is told of, with state and iss.
        for (extra, error) in [
            (vec![("response_type", "token")], "unsupported_response_type"),
            (vec![("response_type", "")], "invalid_request"),
            (vec![("code_challenge_method", "plain")], "invalid_request"),
            (vec![("code_challenge_method", "")], "invalid_request"),
            (vec![("code_challenge", "")], "invalid_request"),
            (vec![("scope", "openid admin")], "invalid_scope"),
            (vec![("scope", "openid email")], "invalid_scope"),
            (vec![("prompt", "none login")], "invalid_request"),
            (vec![("max_age", "soon")], "invalid_request"),
            (vec![("response_mode", "fragment")], "invalid_request"),
        ] {
            let res = get_page(&s, &authorize_path("web", "openid", &extra), Some(&cookie)).await;
            assert_eq!(res.status, 303, "{extra:?}: {}", res.text);
            let (base, q) = redirect_params(&res);
            assert_eq!(base, REDIRECT);
            assert_eq!(q.get("error").map(String::as_str), Some(error), "{extra:?}: {q:?}");
            assert_eq!(q["state"], "st-123");
            assert_eq!(q["iss"], issuer);
            assert!(!q.contains_key("code"));
        }

        // prompt=none: without a session login_required; needing consent consent_required.
        let none = authorize_path("web", "openid", &[("prompt", "none")]);
        let res = get_page(&s, &none, None).await;
        assert_eq!(redirect_params(&res).1["error"], "login_required");
        let res = get_page(&s, &none, Some(&cookie)).await;
        assert_eq!(redirect_params(&res).1["error"], "consent_required");

        // Without a session: to the sign-in page and back here, the username pre-filled.
        let path = authorize_path("web", "openid", &[("login_hint", "carol")]);
        let res = get_page(&s, &path, None).await;
        assert_eq!(res.status, 303);
        let to = res.header("location").unwrap().to_string();
        assert!(to.contains("/login?return_to=%2Foauth2%2Fauthorize%3F"), "{to}");
        let login = get_page(&s, to.trim_start_matches(&s.http.url("")), None).await;
        assert!(login.text.contains("value=\"carol\""), "{}", login.text);

        // Declining: access_denied.
        let page = get_page(&s, &authorize_path("web", "openid profile", &[]), Some(&cookie)).await;
        assert_eq!(page.status, 200);
        let res = decide(&s, &cookie, &page.text, "deny").await;
        let q = redirect_params(&res).1;
        assert_eq!(q["error"], "access_denied");
        assert!(!q.contains_key("code"));
        // A forged decision (no CSRF token) is refused.
        let forged = post_form(
            &s,
            "/oauth2/authorize",
            &[("decision", "allow"), ("client_id", "web")],
            Some(&cookie),
            SAME_ORIGIN,
        )
        .await;
        assert_eq!(forged.status, 403, "{}", forged.text);
        // The form's parameters are checked again: a redirect URI swapped in is refused.
        let mut tampered = page.text.replace(&enc(REDIRECT), "x");
        tampered = tampered.replace(REDIRECT, "https://evil.example/cb");
        let res = decide(&s, &cookie, &tampered, "allow").await;
        assert_eq!(res.status, 400, "{}", res.text);
        assert!(res.header("location").is_none());

        // form_post: a page whose form posts code, state and iss to the redirect URI.
        let public = public_app(&s, "spa").await;
        let res = get_page(
            &s,
            &authorize_path("spa", "openid", &[("response_mode", "form_post")]),
            Some(&cookie),
        )
        .await;
        let res = if res.status == 200 && res.text.contains("consent-allow") {
            decide(&s, &cookie, &res.text, "allow").await
        } else {
            res
        };
        assert_eq!(res.status, 200, "{}", res.text);
        assert!(res.text.contains("action=\"https://app.example/cb\""), "{}", res.text);
        for field in ["code", "state", "iss"] {
            assert!(res.text.contains(&format!("name=\"{field}\"")), "{field}: {}", res.text);
        }
        let csp = res.header("content-security-policy").unwrap();
        assert!(csp.contains("form-action 'self' https://app.example"), "{csp}");
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{csp}"
        );
        // A public client redeems with PKCE alone.
        let code = res
            .text
            .split("name=\"code\" value=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let tokens = redeem(&s, &public, code).await;
        assert_eq!(tokens.status, 200, "{}", tokens.text);
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_prompt_login_and_max_age_sign_in_again_without_a_loop() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        s.register("dave").await;
        register_app(&s, "inhouse", REDIRECT, true, &["openid"]).await;
        let mut cookie = page_sign_in(&s, "dave", PASSWORD).await;
        for extra in [("prompt", "login"), ("max_age", "0")] {
            // A second passes: the marker is then newer than the session's last sign-in.
            tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
            let path = authorize_path("inhouse", "openid", &[extra]);
            let res = get_page(&s, &path, Some(&cookie)).await;
            assert_eq!(res.status, 303, "{}", res.text);
            let to = res.header("location").unwrap().to_string();
            assert!(to.contains("/login?") && to.contains("prompt=login"), "{to}");
            // The sign-in page shows its form although the browser has a session.
            let login_path = to.trim_start_matches(&s.http.url("")).to_string();
            let page = get_page(&s, &login_path, Some(&cookie)).await;
            assert_eq!(page.status, 200, "{}", page.text);
            let return_to = url::Url::parse(&format!("http://x{to}"))
                .unwrap()
                .query_pairs()
                .find(|(k, _)| k == "return_to")
                .unwrap()
                .1
                .into_owned();
            assert!(return_to.contains("reauth_at="), "{return_to}");
            // The old session coming back with the marker is sent round again...
            let stale = get_page(
                &s,
                return_to.trim_start_matches(s.service.config().server.base_path.as_str()),
                Some(&cookie),
            )
            .await;
            assert!(
                stale.header("location").unwrap().contains("/login?"),
                "{:?}",
                stale.header("location")
            );
            // ...a fresh sign-in ends with a code, not another round.
            let signed = post_form(
                &s,
                "/login",
                &[("login", "dave"), ("password", PASSWORD), ("return_to", &return_to)],
                Some(&cookie),
                SAME_ORIGIN,
            )
            .await;
            assert_eq!(signed.status, 303, "{}", signed.text);
            let fresh = set_cookie(&signed, "__Host-portcullis").unwrap().0;
            let back = signed.header("location").unwrap().to_string();
            let res = get_page(
                &s,
                back.trim_start_matches(s.service.config().server.base_path.as_str()),
                Some(&fresh),
            )
            .await;
            assert_eq!(res.status, 303, "{}", res.text);
            assert!(
                redirect_params(&res).1.contains_key("code"),
                "{:?}",
                res.header("location")
            );
            cookie = fresh;
        }
        // prompt=none with max_age exceeded: login_required, no page.
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let res = get_page(
            &s,
            &authorize_path("inhouse", "openid", &[("prompt", "none"), ("max_age", "0")]),
            Some(&cookie),
        )
        .await;
        assert_eq!(redirect_params(&res).1["error"], "login_required");
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_userinfo_refuses_tokens_without_openid() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        let own = s.user("erin").await;
        let res = s.get_auth("/oauth2/userinfo", &own.access).await;
        assert_eq!(res.status, 403, "{}", res.text);
        assert!(
            res.header("www-authenticate")
                .unwrap()
                .contains("error=\"insufficient_scope\"")
        );
        assert_eq!(res.json()["error"], "insufficient_scope");
        let res = s.get("/oauth2/userinfo").await;
        assert_eq!(res.status, 401);
        assert!(res.header("www-authenticate").unwrap().starts_with("Bearer"));
        expect_invalid_token(s.get_auth("/oauth2/userinfo", "not-a-token").await);

        // An application token without openid.
        let app = register_app(&s, "api-only", REDIRECT, true, &["openid", "profile"]).await;
        let cookie = page_sign_in(&s, "erin", PASSWORD).await;
        let code = code_for(&s, &cookie, &authorize_path("api-only", "profile", &[])).await;
        let body = redeem(&s, &app, &code).await.json();
        assert!(body.get("id_token").is_none(), "no openid, no ID token: {body}");
        let res = s
            .get_auth("/oauth2/userinfo", body["access_token"].as_str().unwrap())
            .await;
        assert_eq!(res.status, 403, "{}", res.text);

        // Reuse of a rotated refresh token ends the application's session.
        let app = register_app(&s, "offline", REDIRECT, false, &["openid", "offline_access"]).await;
        let code = code_for(&s, &cookie, &authorize_path("offline", "openid offline_access", &[])).await;
        let body = redeem(&s, &app, &code).await.json();
        let old = body["refresh_token"].as_str().unwrap().to_string();
        let next = token(&s, &app, &[("grant_type", "refresh_token"), ("refresh_token", &old)])
            .await
            .json();
        let reused = token(&s, &app, &[("grant_type", "refresh_token"), ("refresh_token", &old)]).await;
        expect_oauth_error(&reused, 400, "invalid_grant");
        let successor = next["refresh_token"].as_str().unwrap();
        let res = token(
            &s,
            &app,
            &[("grant_type", "refresh_token"), ("refresh_token", successor)],
        )
        .await;
        expect_oauth_error(&res, 400, "invalid_grant");
        expect_invalid_token(s.get_auth("/auth/me", next["access_token"].as_str().unwrap()).await);
        s.stop().await;
    }
}
