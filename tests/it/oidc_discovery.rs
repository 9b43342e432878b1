//! The provider's discovery document (docs/oidc.md "Discovery"): served at
//! `<issuer>/.well-known/openid-configuration` and `.../oauth-authorization-server`,
//! naming only endpoints that answer, under the base path when there is one.

use reqwest::Method as M;
use serde_json::{Value, json};

use crate::support::*;

/// The path of an endpoint URL the document names, relative to the server's base.
fn route_of(url: &str, issuer: &str) -> String {
    url.strip_prefix(issuer)
        .unwrap_or_else(|| panic!("{url} is not under the issuer {issuer}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_is_complete_and_every_endpoint_it_names_answers() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        let issuer = s.service.config().tokens.jwt_issuer.clone();
        let oidc = s.get("/.well-known/openid-configuration").await;
        assert_eq!(oidc.status, 200, "{}", oidc.text);
        let rfc8414 = s.get("/.well-known/oauth-authorization-server").await;
        assert_eq!(rfc8414.status, 200);
        let doc: Value = oidc.json();
        assert_eq!(doc, rfc8414.json(), "one document, two names");
        assert_eq!(doc["issuer"], issuer.as_str());

        // Always there: what this build serves without the other flows.
        for key in ["token_endpoint", "jwks_uri"] {
            assert!(doc[key].is_string(), "{key} missing: {doc}");
        }
        assert!(
            doc["token_endpoint"].as_str().unwrap().ends_with("/oauth2/token"),
            "the provider's token endpoint, not the password grant's: {doc}"
        );
        let mut named = 0;
        for (key, value) in doc.as_object().unwrap() {
            if !(key.ends_with("_endpoint") || key == "jwks_uri") {
                continue;
            }
            named += 1;
            let path = route_of(value.as_str().unwrap(), &issuer);
            let mut res = s.get(&path).await;
            if res.status == 405 {
                res = s.call(M::POST, &path, Anonymous, Form(&[])).await;
            }
            assert!(
                res.status != 404 && res.status != 405,
                "{key} {path} does not answer: {} {}",
                res.status,
                res.text
            );
        }
        assert!(named >= 2);

        assert_eq!(doc["response_types_supported"], json!(["code"]));
        assert_eq!(doc["response_modes_supported"], json!(["query", "form_post"]));
        assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(doc["subject_types_supported"], json!(["public"]));
        assert_eq!(
            doc["grant_types_supported"],
            json!(portcullis::domain::oidc::GRANT_TYPES)
        );
        assert!(
            !doc["grant_types_supported"]
                .as_array()
                .unwrap()
                .contains(&json!("password")),
            "the legacy password grant is not the provider's"
        );
        assert_eq!(doc["scopes_supported"], json!(portcullis::domain::oidc::scopes::SCOPES));
        assert_eq!(
            doc["token_endpoint_auth_methods_supported"],
            json!(["client_secret_basic", "client_secret_post", "private_key_jwt", "none"])
        );
        assert!(doc["token_endpoint_auth_signing_alg_values_supported"].is_array());
        assert_eq!(doc["id_token_signing_alg_values_supported"], json!(["ES256"]));
        for claim in [
            "sub",
            "iss",
            "aud",
            "sid",
            "auth_time",
            "nonce",
            "email",
            "name",
            "roles",
        ] {
            assert!(
                doc["claims_supported"].as_array().unwrap().contains(&json!(claim)),
                "{claim}: {doc}"
            );
        }
        for (flag, value) in [
            ("authorization_response_iss_parameter_supported", true),
            ("backchannel_logout_supported", true),
            ("backchannel_logout_session_supported", true),
            ("frontchannel_logout_supported", false),
            ("request_parameter_supported", false),
            ("request_uri_parameter_supported", false),
            ("claims_parameter_supported", false),
        ] {
            assert_eq!(doc[flag], json!(value), "{flag}");
        }
        assert_eq!(doc["prompt_values_supported"], json!(["none", "login", "consent"]));
        assert_eq!(doc["ui_locales_supported"], json!(["en", "de"]));
        assert!(doc.get("registration_endpoint").is_none());
        s.stop().await;
    }
}

/// With a base path, the issuer ends in it and discovery is served under it (a client
/// appends `/.well-known/openid-configuration` to the issuer), not at the root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_base_path_the_issuer_and_discovery_live_under_it() {
    let addr = free_address();
    let public = format!("http://{addr}");
    let (s, _db) = TestServer::start_with(
        Backend::Sqlite,
        &[
            ("PORTCULLIS_BIND", &addr.to_string()),
            ("PORTCULLIS_PUBLIC_URL", &public),
            ("PORTCULLIS_BASE_PATH", "/id"),
        ],
    )
    .await;
    let issuer = format!("{public}/id");
    let doc: Value = Http::new(issuer.clone())
        .call(M::GET, "/.well-known/openid-configuration", Anonymous, Empty)
        .await
        .json();
    assert_eq!(doc["issuer"], issuer.as_str());
    assert_eq!(doc["token_endpoint"], format!("{issuer}/oauth2/token"));
    // The absolute URLs it names are the ones that answer.
    let jwks = s
        .http
        .client
        .get(doc["jwks_uri"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(jwks.status(), 200);
    let root = Http::new(public.clone());
    for path in [
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
    ] {
        assert_eq!(root.call(M::GET, path, Anonymous, Empty).await.status, 404, "{path}");
    }
    // Tokens carry the same issuer the document names.
    let t = s.user("based").await;
    assert_eq!(jwt_part(&t.access, 1)["iss"], issuer.as_str());
    s.stop().await;
}
