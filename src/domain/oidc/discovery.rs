//! The provider's metadata: one document served both as OpenID Connect Discovery 1.0
//! (`/.well-known/openid-configuration`) and as OAuth 2.0 Authorization Server
//! Metadata (RFC 8414, `/.well-known/oauth-authorization-server`), both under the
//! issuer (the public URL with the base path).
//!
//! It says only what is true: an endpoint appears when this build serves it (the
//! caller says which paths are routed), and every list comes from the constant the
//! code itself uses (scopes, grant types, the key ring's algorithms).

use serde_json::{Map, Value, json};

use super::{GRANT_TYPES, TokenAuthMethod, scopes};
use crate::domain::Portcullis;

/// Each endpoint the document names, with the route that serves it.
pub const ENDPOINTS: [(&str, &str); 8] = [
    ("authorization_endpoint", "/oauth2/authorize"),
    ("token_endpoint", "/oauth2/token"),
    ("userinfo_endpoint", "/oauth2/userinfo"),
    ("jwks_uri", "/.well-known/jwks.json"),
    ("end_session_endpoint", "/oauth2/logout"),
    ("revocation_endpoint", "/oauth2/revoke"),
    ("introspection_endpoint", "/oauth2/introspect"),
    ("device_authorization_endpoint", "/oauth2/device_authorization"),
];

/// The claims of an ID token itself (OpenID Connect Core 2), besides those of scopes.
const ID_TOKEN_CLAIMS: [&str; 11] = [
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "nonce",
    "amr",
    "azp",
    "at_hash",
    "sid",
];

/// The algorithms a client may sign a `private_key_jwt` assertion with.
pub const CLIENT_ASSERTION_ALGS: [&str; 3] = ["ES256", "RS256", "EdDSA"];

/// What the provider answers for `prompt`.
pub const PROMPT_VALUES: [&str; 3] = ["none", "login", "consent"];

impl Portcullis {
    /// The provider metadata. `ui_locales` are the pages' languages; `served` says
    /// whether a route path is served (an endpoint not served is left out, so the
    /// document never names one that answers 404).
    pub fn discovery_document(&self, ui_locales: &[&str], served: impl Fn(&str) -> bool) -> Value {
        let config = self.config();
        let mut doc = Map::new();
        doc.insert("issuer".into(), json!(config.tokens.jwt_issuer));
        for (name, path) in ENDPOINTS {
            if served(path) {
                doc.insert(name.into(), json!(config.url(path)));
            }
        }
        let mut claims: Vec<&str> = ID_TOKEN_CLAIMS.to_vec();
        claims.extend(
            scopes::all_claims()
                .into_iter()
                .filter(|c| !ID_TOKEN_CLAIMS.contains(c)),
        );
        let auth_methods: Vec<&str> = TokenAuthMethod::ALL.iter().map(|m| m.as_str()).collect();
        let rest = json!({
            "scopes_supported": scopes::SCOPES,
            "claims_supported": claims,
            "response_types_supported": ["code"],
            "response_modes_supported": ["query", "form_post"],
            "grant_types_supported": GRANT_TYPES,
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": auth_methods,
            "token_endpoint_auth_signing_alg_values_supported": CLIENT_ASSERTION_ALGS,
            "revocation_endpoint_auth_methods_supported": auth_methods,
            "introspection_endpoint_auth_methods_supported": auth_methods,
            "id_token_signing_alg_values_supported": self.keys().ring().algorithms(),
            "subject_types_supported": ["public"],
            "authorization_response_iss_parameter_supported": true,
            "backchannel_logout_supported": true,
            "backchannel_logout_session_supported": true,
            "frontchannel_logout_supported": false,
            "request_parameter_supported": false,
            "request_uri_parameter_supported": false,
            "claims_parameter_supported": false,
            "prompt_values_supported": PROMPT_VALUES,
            "ui_locales_supported": ui_locales,
        });
        if let Value::Object(rest) = rest {
            doc.extend(rest);
        }
        Value::Object(doc)
    }
}
