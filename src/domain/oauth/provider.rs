//! The client of upstream OpenID Connect providers: discovery, signing keys (JWKS),
//! ID-token verification, the token endpoint, userinfo, and the confirmations that an
//! access token was issued to this service.
//!
//! It is kept apart from the sign-in flows because it is a plain client of providers
//! over HTTP: it knows nothing of accounts, sessions or the store, so the flows, the
//! linking of identities and tests of the OpenID provider side can all use it as it
//! is. What it answers are claims and tokens; what they mean for an account is decided
//! by the caller.
//!
//! Provider metadata comes from discovery, with configured overrides on top; JWKS are
//! cached and fetched again when a token names an unknown `kid`. Every call upstream
//! is bounded by `OAUTH_HTTP_TIMEOUT_MS` and follows no redirects.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::config::{OAuthSettings, ProviderKind, ProviderSettings};
use crate::crypto::jwt::at_hash;
use crate::domain::validate;
use crate::error::{AppError, AppResult};

/// How long discovery documents are trusted before being fetched again.
const METADATA_TTL: Duration = Duration::from_secs(3600);
/// JWKS are fetched again for an unknown kid, but not more often than this.
const JWKS_REFETCH_GAP: Duration = Duration::from_secs(1);
/// Clock skew allowed on upstream ID tokens.
const LEEWAY_SECONDS: u64 = 60;
/// Where Google says whom an access token was issued to (it has no RFC 7662
/// introspection).
const GOOGLE_TOKENINFO: &str = "https://oauth2.googleapis.com/tokeninfo";

/// The most of a provider's answer that is read: discovery documents, key sets and
/// token answers are a few KiB.
const MAX_UPSTREAM_BODY: usize = 1024 * 1024;

/// A provider's endpoints, from discovery and configuration.
#[derive(Debug, Clone)]
pub struct ProviderMeta {
    pub issuer: String,
    pub authorization_endpoint: Option<String>,
    pub token_endpoint: Option<String>,
    pub userinfo_endpoint: Option<String>,
    pub jwks_uri: Option<String>,
    pub introspection_endpoint: Option<String>,
}

/// Who the provider says the user is.
#[derive(Debug, Clone)]
pub struct UpstreamUser {
    /// With `subject`, the identity: the issuer that vouches for it (no trailing `/`).
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
    pub preferred_username: Option<String>,
}

/// The provider's own tokens, kept for integrations.
#[derive(Debug, Clone, Default)]
pub struct UpstreamTokens {
    pub access_token: Option<String>,
    pub refresh_token: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A provider's error or silence, as the client sees it (never its raw body).
pub(crate) fn upstream(what: &str, e: impl std::fmt::Display) -> AppError {
    AppError::BadGateway(format!("the identity provider failed to answer {what}: {e}"))
}

fn rejected(why: &str) -> AppError {
    AppError::InvalidCredentials(format!("the provider's token was not accepted: {why}"))
}

/// An ID token's or userinfo's `email_verified`, which some providers send as a string.
fn truthy(v: &Value) -> bool {
    v.as_bool().unwrap_or_else(|| v.as_str() == Some("true"))
}

/// Sends `req` to a provider: the status and the JSON answer, read up to
/// `MAX_UPSTREAM_BODY`; anything not JSON is Null, and a broken connection or an
/// oversized answer a 502. Every call upstream goes through here, so each gets the
/// same bound and the same errors.
async fn send(req: reqwest::RequestBuilder, what: &str) -> AppResult<(u16, Value)> {
    let mut res = req.send().await.map_err(|e| upstream(what, e.without_url()))?;
    let status = res.status().as_u16();
    let mut body = Vec::new();
    while let Some(chunk) = res.chunk().await.map_err(|e| upstream(what, e.without_url()))? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_UPSTREAM_BODY {
            return Err(upstream(what, "the answer is too large"));
        }
    }
    Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

/// The string at `key` in a provider's JSON object, when there is one.
fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

/// An issuer as an identity's key: issuers that differ by a trailing `/` are one.
pub fn issuer_key(issuer: &str) -> &str {
    issuer.trim_end_matches('/')
}

/// Who an ID token's claims or a userinfo answer from `issuer` say the user is.
pub fn upstream_user(claims: &Value, issuer: &str) -> AppResult<UpstreamUser> {
    // Text from the provider goes into the database: no control characters.
    let text = |k: &str| {
        claims
            .get(k)
            .and_then(Value::as_str)
            .filter(|v| !v.chars().any(char::is_control))
            .map(str::to_string)
    };
    let subject = text("sub")
        .filter(|s| !s.is_empty() && s.len() <= 255)
        .ok_or_else(|| rejected("it names no usable subject"))?;
    Ok(UpstreamUser {
        issuer: issuer_key(issuer).to_string(),
        subject,
        email: text("email").map(|e| validate::fold(&e)),
        email_verified: claims.get("email_verified").is_some_and(truthy),
        name: text("name"),
        preferred_username: text("preferred_username"),
    })
}

/// Completes who an ID token says the user is with the provider's UserInfo answer
/// (OpenID Connect Core 5.4: a provider may release the claims a scope asks for only
/// there). UserInfo's `sub` must be the ID token's (Core 5.3.2), or the answer is about
/// someone else. The email comes with the word of the source it comes from: verified
/// when UserInfo says so, or when it is the address the ID token asserted verified.
pub fn with_userinfo(who: UpstreamUser, info: &Value) -> AppResult<UpstreamUser> {
    let more = upstream_user(info, &who.issuer)?;
    if more.subject != who.subject {
        return Err(rejected(
            "the provider's UserInfo is about another subject than its ID token",
        ));
    }
    let (email, email_verified) = match more.email {
        Some(email) => {
            let vouched = who.email_verified && who.email.as_deref() == Some(email.as_str());
            (Some(email), more.email_verified || vouched)
        }
        None => (who.email, who.email_verified),
    };
    Ok(UpstreamUser {
        email,
        email_verified,
        name: more.name.or(who.name),
        preferred_username: more.preferred_username.or(who.preferred_username),
        ..who
    })
}

/// The provider's tokens in a token endpoint's answer.
pub fn upstream_tokens(body: &Value) -> UpstreamTokens {
    UpstreamTokens {
        access_token: text(body, "access_token"),
        refresh_token: text(body, "refresh_token"),
        expires_at: body
            .get("expires_in")
            .and_then(Value::as_i64)
            .map(|s| Utc::now() + chrono::Duration::seconds(s.clamp(0, 10 * 365 * 86_400))),
    }
}

/// The verification key for `kid` in a JWKS document.
fn key_in(jwks: &Value, kid: Option<&str>, alg: Algorithm) -> Option<DecodingKey> {
    let keys = jwks.get("keys")?.as_array()?;
    keys.iter()
        .filter(|k| kid.is_none() || text(k, "kid").as_deref() == kid)
        .filter(|k| text(k, "use").is_none_or(|u| u == "sig"))
        .find_map(|k| match (text(k, "kty")?.as_str(), alg) {
            ("RSA", Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 | Algorithm::PS256) => {
                DecodingKey::from_rsa_components(&text(k, "n")?, &text(k, "e")?).ok()
            }
            ("EC", Algorithm::ES256 | Algorithm::ES384) => {
                DecodingKey::from_ec_components(&text(k, "x")?, &text(k, "y")?).ok()
            }
            ("OKP", Algorithm::EdDSA) => DecodingKey::from_ed_components(&text(k, "x")?).ok(),
            _ => None,
        })
}

/// PKCE S256: the challenge of a verifier.
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// The client of every configured provider: one HTTP client, and the discovery
/// documents and key sets fetched with it (cached per issuer and per JWKS URL, so a
/// sign-in costs no round trip to fetch them). It takes a provider's settings and
/// answers what the provider asserts; it never looks at accounts, so it is usable on
/// its own.
pub struct OAuthClients {
    http: reqwest::Client,
    metadata: Mutex<HashMap<String, (Instant, Arc<ProviderMeta>)>>,
    jwks: Mutex<HashMap<String, (Instant, Arc<Value>)>>,
}

impl OAuthClients {
    /// One HTTP client for every provider: bounded by `OAUTH_HTTP_TIMEOUT_MS`, and
    /// following no redirects (a provider's answer comes from where it was asked).
    pub fn new(settings: &OAuthSettings) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(settings.http_timeout)
            .connect_timeout(settings.http_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("portcullis")
            .build()?;
        Ok(Self {
            http,
            metadata: Mutex::default(),
            jwks: Mutex::default(),
        })
    }

    async fn get_json(&self, url: &str, what: &str, bearer: Option<&str>) -> AppResult<(u16, Value)> {
        self.call_json(reqwest::Method::GET, url, what, bearer).await
    }

    /// A provider's JSON answer; a token goes only in the Authorization header, never in
    /// the URL, where proxies and the provider's access logs would keep it.
    async fn call_json(
        &self,
        method: reqwest::Method,
        url: &str,
        what: &str,
        bearer: Option<&str>,
    ) -> AppResult<(u16, Value)> {
        let mut req = self.http.request(method, url);
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        send(req, what).await
    }

    /// Discovery plus overrides, cached per issuer.
    pub async fn metadata(&self, p: &ProviderSettings) -> AppResult<Arc<ProviderMeta>> {
        if let Some((at, meta)) = self.metadata.lock().ok().and_then(|m| m.get(&p.issuer).cloned())
            && at.elapsed() < METADATA_TTL
        {
            return Ok(meta);
        }
        let o = &p.endpoints;
        let complete = o.authorization.is_some() && o.token.is_some() && o.jwks_uri.is_some();
        let discovered = if complete {
            Value::Null
        } else {
            let url = format!("{}/.well-known/openid-configuration", p.issuer);
            match self.get_json(&url, "discovery", None).await? {
                (200, doc) => doc,
                (status, _) => return Err(upstream("discovery", format!("status {status}"))),
            }
        };
        let found = |k: &str| text(&discovered, k);
        let meta = Arc::new(ProviderMeta {
            issuer: found("issuer").unwrap_or_else(|| p.issuer.clone()),
            authorization_endpoint: o.authorization.clone().or_else(|| found("authorization_endpoint")),
            token_endpoint: o.token.clone().or_else(|| found("token_endpoint")),
            userinfo_endpoint: o.userinfo.clone().or_else(|| found("userinfo_endpoint")),
            jwks_uri: o.jwks_uri.clone().or_else(|| found("jwks_uri")),
            introspection_endpoint: o.introspection.clone().or_else(|| found("introspection_endpoint")),
        });
        if let Ok(mut cache) = self.metadata.lock() {
            cache.insert(p.issuer.clone(), (Instant::now(), meta.clone()));
        }
        Ok(meta)
    }

    async fn jwks(&self, uri: &str, refresh: bool) -> AppResult<Arc<Value>> {
        let cached = self.jwks.lock().ok().and_then(|m| m.get(uri).cloned());
        // Keys are trusted for an hour at most (a provider may retire one), and
        // fetched again for an unknown kid, but not more than once a second.
        if let Some((at, keys)) = &cached
            && at.elapsed() < METADATA_TTL
            && (!refresh || at.elapsed() < JWKS_REFETCH_GAP)
        {
            return Ok(keys.clone());
        }
        let keys = match self.get_json(uri, "for its signing keys", None).await? {
            (200, doc) if doc.get("keys").is_some_and(Value::is_array) => Arc::new(doc),
            (status, _) => return Err(upstream("for its signing keys", format!("status {status}"))),
        };
        if let Ok(mut cache) = self.jwks.lock() {
            cache.insert(uri.to_string(), (Instant::now(), keys.clone()));
        }
        Ok(keys)
    }

    /// Verifies an upstream ID token: signature by the provider's JWKS, issuer,
    /// audience (our client id), expiry, and the nonce when one is expected. Returns
    /// its claims (`iss` in its one form: Google's bare host as its URL) and the
    /// algorithm it was signed with (which `at_hash` follows).
    pub async fn verify_id_token(
        &self,
        p: &ProviderSettings,
        meta: &ProviderMeta,
        token: &str,
        nonce: Option<&str>,
    ) -> AppResult<(Value, Algorithm)> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| rejected("the ID token is malformed"))?;
        let alg = header.alg;
        if !matches!(
            alg,
            Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::ES256
                | Algorithm::ES384
                | Algorithm::EdDSA
        ) {
            return Err(rejected("the ID token's algorithm is not accepted"));
        }
        let jwks_uri = meta
            .jwks_uri
            .as_deref()
            .ok_or_else(|| upstream("discovery", "no jwks_uri"))?;
        let kid = header.kid.as_deref();
        let key = match key_in(&*self.jwks(jwks_uri, false).await?, kid, alg) {
            Some(k) => k,
            // A new key upstream: fetch the set again (not too often).
            None => key_in(&*self.jwks(jwks_uri, true).await?, kid, alg)
                .ok_or_else(|| rejected("no signing key of the provider matches the ID token"))?,
        };
        let mut v = Validation::new(alg);
        v.set_audience(&[p.client_id.as_str()]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.leeway = LEEWAY_SECONDS;
        v.validate_nbf = true;
        // The issuer is checked below: multi-tenant issuers carry a placeholder.
        v.validate_aud = true;
        let mut claims = jsonwebtoken::decode::<Value>(token, &key, &v)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind as K;
                rejected(match e.kind() {
                    K::ExpiredSignature => "the ID token has expired",
                    K::ImmatureSignature => "the ID token is not yet valid",
                    K::InvalidAudience => "the ID token is for another client",
                    K::InvalidSignature => "the ID token's signature does not verify",
                    _ => "the ID token is invalid",
                })
            })?
            .claims;
        let iss = claims.get("iss").and_then(Value::as_str).unwrap_or_default();
        // Microsoft's multi-tenant issuer names the tenant with a placeholder; the
        // signed `tid` fills it (a GUID, nothing else).
        let tid = claims
            .get("tid")
            .and_then(Value::as_str)
            .filter(|t| t.len() == 36 && t.chars().all(|c| c.is_ascii_hexdigit() || c == '-'));
        let expected = match (&p.kind, tid) {
            (ProviderKind::Microsoft, Some(tid)) => meta.issuer.replace("{tenantid}", tid),
            _ => meta.issuer.clone(),
        };
        // Google documents both forms of its issuer.
        let google_bare =
            p.kind == ProviderKind::Google && expected == "https://accounts.google.com" && iss == "accounts.google.com";
        if iss != expected && !google_bare {
            return Err(rejected("the ID token is from another issuer"));
        }
        if google_bare {
            claims["iss"] = Value::String(expected);
        }
        // Audience checks pass when this client is any one of several audiences; then
        // the token must have been issued to this client (`azp`, OIDC Core 3.1.3.7), or
        // another client listed beside it could replay its own users' tokens here. With
        // this client the only audience, `azp` may name another of the provider's
        // clients (Google's mobile apps asking for a token for their server).
        if claims.get("aud").and_then(Value::as_array).is_some_and(|a| a.len() > 1)
            && claims.get("azp").and_then(Value::as_str) != Some(p.client_id.as_str())
        {
            return Err(rejected(
                "the ID token names several audiences and was issued to another client (azp)",
            ));
        }
        if let Some(expected) = nonce
            && claims.get("nonce").and_then(Value::as_str) != Some(expected)
        {
            return Err(rejected("the ID token's nonce does not match this sign-in"));
        }
        Ok((claims, alg))
    }

    /// Confirms with the provider that `access_token` was issued to this service's
    /// client. Userinfo answers for any token the provider issued, so without this
    /// an app the user once signed in to with the same provider could replay the
    /// token it was given and sign in here as that user. Google is asked at
    /// tokeninfo; any other provider at its RFC 7662 introspection endpoint, and one
    /// without such an endpoint accepts ID tokens only.
    pub async fn confirm_issued_to_us(
        &self,
        p: &ProviderSettings,
        meta: &ProviderMeta,
        access_token: &str,
    ) -> AppResult<()> {
        let google = p.kind == ProviderKind::Google;
        let (what, (status, info)) = if google {
            // POSTed with the token as a bearer, as Google's own client libraries ask it.
            let url = p.endpoints.tokeninfo.as_deref().unwrap_or(GOOGLE_TOKENINFO);
            let answer = self
                .call_json(reqwest::Method::POST, url, "tokeninfo", Some(access_token))
                .await?;
            ("tokeninfo", answer)
        } else {
            let url = meta.introspection_endpoint.as_deref().ok_or_else(|| {
                AppError::BadRequest(
                    "this provider has no token introspection endpoint to confirm that an access token was \
                     issued to this service, so it takes one only beside an ID token whose at_hash vouches for \
                     it: send an id_token"
                        .into(),
                )
            })?;
            let form = [("token", access_token), ("token_type_hint", "access_token")];
            (
                "introspection",
                self.post_as_client(p, url, "introspection", &form).await?,
            )
        };
        match status {
            200 => {}
            // Google's answer for a token it does not know; for introspection such a
            // token is `active: false`, and a 400 or 401 means our client was refused.
            400 | 401 if google => return Err(rejected("the provider does not accept the access token")),
            status => return Err(upstream(what, format!("status {status}"))),
        }
        if !info.is_object() {
            return Err(upstream(what, "the answer is not a JSON object"));
        }
        // The field naming the client the token was issued to: RFC 7662's
        // `client_id`; Google's `azp` (its `aud` when `azp` is absent). Never the
        // audience of an introspection answer, which names the API the token is for
        // and may list this client beside the one holding the token.
        let holder = if !google {
            if info.get("active").and_then(Value::as_bool) != Some(true) {
                return Err(rejected("the provider says the access token is not active"));
            }
            "client_id"
        } else if info.get("azp").is_some() {
            "azp"
        } else {
            "aud"
        };
        if info.get(holder).and_then(Value::as_str) == Some(p.client_id.as_str()) {
            Ok(())
        } else {
            Err(rejected("the access token was issued to another application"))
        }
    }

    /// An access token handed over beside an ID token becomes the identity's kept
    /// upstream token (`/auth/me/identities/{provider}/token` hands it to services),
    /// so it must belong with that ID token: its hash must be the ID token's
    /// `at_hash` when the provider put one there; otherwise the provider must confirm
    /// it was issued to this service, as for an access token sent alone. (Not that it
    /// is the same person's: introspection's `sub` is not the ID token's `sub` at
    /// every provider; Okta's names the user's login.)
    pub async fn confirm_pair(
        &self,
        p: &ProviderSettings,
        meta: &ProviderMeta,
        (claims, alg): (&Value, Algorithm),
        access_token: &str,
    ) -> AppResult<()> {
        if let Some(expected) = claims.get("at_hash") {
            let matches = expected.as_str().is_some_and(|e| {
                use subtle::ConstantTimeEq;
                bool::from(e.as_bytes().ct_eq(at_hash(alg, access_token).as_bytes()))
            });
            return if matches {
                Ok(())
            } else {
                Err(rejected("the access token does not belong to the ID token (at_hash)"))
            };
        }
        self.confirm_issued_to_us(p, meta, access_token).await
    }

    /// A form POST authenticated as this service's client (`client_secret_post`).
    async fn post_as_client(
        &self,
        p: &ProviderSettings,
        url: &str,
        what: &str,
        form: &[(&str, &str)],
    ) -> AppResult<(u16, Value)> {
        let mut fields: Vec<(&str, &str)> = form.to_vec();
        fields.push(("client_id", &p.client_id));
        if let Some(secret) = &p.client_secret {
            fields.push(("client_secret", secret));
        }
        send(self.http.post(url).form(&fields), what).await
    }

    /// Asks the provider's userinfo endpoint who holds `access_token`.
    pub async fn userinfo(&self, meta: &ProviderMeta, access_token: &str) -> AppResult<Value> {
        let url = meta
            .userinfo_endpoint
            .as_deref()
            .ok_or_else(|| AppError::BadRequest("this provider has no userinfo endpoint: send an id_token".into()))?;
        match self.get_json(url, "userinfo", Some(access_token)).await? {
            (200, info) if info.is_object() => Ok(info),
            (401 | 403, _) => Err(rejected("the provider does not accept the access token")),
            (status, _) => Err(upstream("userinfo", format!("status {status}"))),
        }
    }

    /// Posts a form to the provider's token endpoint.
    pub async fn token_request(
        &self,
        p: &ProviderSettings,
        meta: &ProviderMeta,
        form: &[(&str, &str)],
    ) -> AppResult<Value> {
        let url = meta
            .token_endpoint
            .as_deref()
            .ok_or_else(|| upstream("discovery", "no token_endpoint"))?;
        let (status, body) = self.post_as_client(p, url, "the token request", form).await?;
        match status {
            200 => Ok(body),
            400 | 401 => Err(rejected(&format!(
                "the provider refused the exchange ({})",
                body.get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("no reason given")
                    .chars()
                    .take(64)
                    .collect::<String>()
            ))),
            other => Err(upstream("the token request", format!("status {other}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_is_unpadded_base64url_of_sha256() {
        // Computed independently (Python's hashlib and base64.urlsafe_b64encode).
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWlOEjXk"),
            "5-c_OToCF782GUMP9y6MmvmI58jyu9I3K2zrM_aphnI"
        );
    }

    #[test]
    fn at_hash_is_the_left_half_of_the_algorithms_hash() {
        let token = "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y";
        // OpenID Connect Core's example (`response_type=id_token token`); the SHA-384
        // and SHA-512 forms computed independently with Python's hashlib.
        assert_eq!(at_hash(Algorithm::RS256, token), "77QmUPtjPfzWtF2AnpK9RQ");
        assert_eq!(at_hash(Algorithm::ES256, token), "77QmUPtjPfzWtF2AnpK9RQ");
        assert_eq!(at_hash(Algorithm::ES384, token), "jtAeDp945y1dDqU3nkIVGNZP1HjH_MFs");
        assert_eq!(
            at_hash(Algorithm::RS512, token),
            "q7nS86GgvvFaZkzALLWqJYaJIKw2wCDAVfCAsm5CrBM"
        );
        assert_eq!(
            at_hash(Algorithm::EdDSA, token),
            "q7nS86GgvvFaZkzALLWqJYaJIKw2wCDAVfCAsm5CrBM"
        );
    }
}
