//! Sign-in with upstream OpenID Connect providers: the token exchange (an app hands
//! over a provider's ID token or access token) and the redirect flow (authorization
//! code with PKCE, `state` and `nonce` kept server-side), both ending in the same
//! account resolution and the same login outcome as a password (MFA included).
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
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256, Sha384, Sha512};
use uuid::Uuid;

use super::login::LoginOutcome;
use super::{Actor, AuditEvent, ClientContext, Portcullis, validate};
use crate::config::{OAuthSettings, ProviderKind, ProviderSettings};
use crate::crypto::tokens;
use crate::error::{AppError, AppResult};
use crate::store::{IdentityRow, NewUser, OAuthStateRow, StateRefusal, UserRow};

const SEAL_CONTEXT: &str = "portcullis:oauth_token";
const STATE_TTL_SECONDS: i64 = 600;
/// How long discovery documents are trusted before being fetched again.
const METADATA_TTL: Duration = Duration::from_secs(3600);
/// JWKS are fetched again for an unknown kid, but not more often than this.
const JWKS_REFETCH_GAP: Duration = Duration::from_secs(1);
/// Clock skew allowed on upstream ID tokens.
const LEEWAY_SECONDS: u64 = 60;
/// Where Google says whom an access token was issued to (it has no RFC 7662
/// introspection).
const GOOGLE_TOKENINFO: &str = "https://oauth2.googleapis.com/tokeninfo";

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

/// The HTTP client and caches for every provider.
pub struct OAuthClients {
    http: reqwest::Client,
    metadata: Mutex<HashMap<String, (Instant, Arc<ProviderMeta>)>>,
    jwks: Mutex<HashMap<String, (Instant, Arc<Value>)>>,
}

impl OAuthClients {
    pub(crate) fn new(settings: &OAuthSettings) -> anyhow::Result<Self> {
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
}

/// A provider's error or silence, as the client sees it (never its raw body).
fn upstream(what: &str, e: impl std::fmt::Display) -> AppError {
    AppError::BadGateway(format!("the identity provider failed to answer {what}: {e}"))
}

fn rejected(why: &str) -> AppError {
    AppError::InvalidCredentials(format!("the provider's token was not accepted: {why}"))
}

/// OpenID Connect's `at_hash` of `access_token` for an ID token signed with `alg`:
/// the left half of the token's hash under the signature's hash function, base64url
/// (Core 3.1.3.6; SHA-512 for Ed25519).
fn at_hash(alg: Algorithm, access_token: &str) -> String {
    let digest = match alg {
        Algorithm::RS384 | Algorithm::ES384 | Algorithm::PS384 => Sha384::digest(access_token).to_vec(),
        Algorithm::RS512 | Algorithm::PS512 | Algorithm::EdDSA => Sha512::digest(access_token).to_vec(),
        _ => Sha256::digest(access_token).to_vec(),
    };
    URL_SAFE_NO_PAD.encode(&digest[..digest.len() / 2])
}

/// An ID token's or userinfo's `email_verified`, which some providers send as a string.
fn truthy(v: &Value) -> bool {
    v.as_bool().unwrap_or_else(|| v.as_str() == Some("true"))
}

/// The most of a provider's answer that is read: discovery documents, key sets and
/// token answers are a few KiB.
const MAX_UPSTREAM_BODY: usize = 1024 * 1024;

/// A provider's JSON answer, read up to `MAX_UPSTREAM_BODY`; anything not JSON is
/// Null, and a broken connection or an oversized answer a 502.
async fn read_json(mut res: reqwest::Response, what: &str) -> AppResult<Value> {
    let mut body = Vec::new();
    while let Some(chunk) = res.chunk().await.map_err(|e| upstream(what, e.without_url()))? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_UPSTREAM_BODY {
            return Err(upstream(what, "the answer is too large"));
        }
    }
    Ok(serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn upstream_user(claims: &Value) -> AppResult<UpstreamUser> {
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
        subject,
        email: text("email").map(|e| validate::fold(&e)),
        email_verified: claims.get("email_verified").is_some_and(truthy),
        name: text("name"),
        preferred_username: text("preferred_username"),
    })
}

/// The verification key for `kid` in a JWKS document.
fn key_in(jwks: &Value, kid: Option<&str>, alg: Algorithm) -> Option<DecodingKey> {
    let keys = jwks.get("keys")?.as_array()?;
    let text = |k: &Value, f: &str| k.get(f).and_then(Value::as_str).map(str::to_string);
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

/// The issuer of an Okta organisation named by domain (`acme.okta.com`) or by issuer URL.
fn okta_issuer(domain: &str) -> String {
    if domain.contains("://") {
        domain.trim_end_matches('/').to_string()
    } else {
        format!("https://{}", domain.to_ascii_lowercase())
    }
}

/// PKCE S256: the challenge of a verifier.
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// `value` with `%`-escapes for a URL query or fragment.
fn escape(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn query(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", escape(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// An identity of the caller, as listed (never its tokens).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IdentityOut {
    pub provider: String,
    pub subject: String,
    pub email: Option<String>,
    pub linked_at: DateTime<Utc>,
    pub last_login_at: DateTime<Utc>,
}

/// A fresh upstream access token for integrations.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UpstreamTokenOut {
    pub provider: String,
    pub access_token: String,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Where the redirect flow sends the browser back, and what it carries.
#[derive(Debug)]
pub struct CallbackResult {
    pub redirect_uri: String,
    pub outcome: LoginOutcome,
}

impl Portcullis {
    fn oauth(&self) -> &OAuthClients {
        &self.inner().oauth
    }

    /// The configured provider `name` (with a per-request Okta domain, when allowed).
    fn provider(&self, name: &str, okta_domain: Option<&str>) -> AppResult<ProviderSettings> {
        let settings = &self.config().oauth;
        let mut p = settings.provider(name).cloned().ok_or_else(|| {
            AppError::BadRequest(format!(
                "provider {:?} is not configured",
                name.chars().take(64).collect::<String>()
            ))
        })?;
        if let Some(domain) = okta_domain {
            if p.kind != ProviderKind::Okta {
                return Err(AppError::validation("okta_domain", "applies to provider okta only"));
            }
            // Only listed domains or issuers: never fetch from a place a request names.
            let wanted = okta_issuer(domain);
            if !settings.okta_domains.iter().any(|d| okta_issuer(d) == wanted) {
                return Err(AppError::validation(
                    "okta_domain",
                    "is not one of OAUTH_OKTA_ALLOWED_DOMAINS",
                ));
            }
            p.issuer = wanted;
        }
        Ok(p)
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
        let mut req = self.oauth().http.request(method, url);
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        let res = req.send().await.map_err(|e| upstream(what, e.without_url()))?;
        let status = res.status().as_u16();
        Ok((status, read_json(res, what).await?))
    }

    /// Discovery plus overrides, cached per issuer.
    async fn metadata(&self, p: &ProviderSettings) -> AppResult<Arc<ProviderMeta>> {
        if let Some((at, meta)) = self
            .oauth()
            .metadata
            .lock()
            .ok()
            .and_then(|m| m.get(&p.issuer).cloned())
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
        let found = |k: &str| discovered.get(k).and_then(Value::as_str).map(str::to_string);
        let meta = Arc::new(ProviderMeta {
            issuer: found("issuer").unwrap_or_else(|| p.issuer.clone()),
            authorization_endpoint: o.authorization.clone().or_else(|| found("authorization_endpoint")),
            token_endpoint: o.token.clone().or_else(|| found("token_endpoint")),
            userinfo_endpoint: o.userinfo.clone().or_else(|| found("userinfo_endpoint")),
            jwks_uri: o.jwks_uri.clone().or_else(|| found("jwks_uri")),
            introspection_endpoint: o.introspection.clone().or_else(|| found("introspection_endpoint")),
        });
        if let Ok(mut cache) = self.oauth().metadata.lock() {
            cache.insert(p.issuer.clone(), (Instant::now(), meta.clone()));
        }
        Ok(meta)
    }

    async fn jwks(&self, uri: &str, refresh: bool) -> AppResult<Arc<Value>> {
        let cached = self.oauth().jwks.lock().ok().and_then(|m| m.get(uri).cloned());
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
        if let Ok(mut cache) = self.oauth().jwks.lock() {
            cache.insert(uri.to_string(), (Instant::now(), keys.clone()));
        }
        Ok(keys)
    }

    /// Verifies an upstream ID token: signature by the provider's JWKS, issuer,
    /// audience (our client id), expiry, and the nonce when one is expected. Returns
    /// its claims and the algorithm it was signed with (which `at_hash` follows).
    async fn verify_id_token(
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
        let claims = jsonwebtoken::decode::<Value>(token, &key, &v)
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
    async fn confirm_issued_to_us(
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
    async fn confirm_pair(
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
        let res = self
            .oauth()
            .http
            .post(url)
            .form(&fields)
            .send()
            .await
            .map_err(|e| upstream(what, e.without_url()))?;
        let status = res.status().as_u16();
        Ok((status, read_json(res, what).await?))
    }

    /// Asks the provider's userinfo endpoint who holds `access_token`.
    async fn userinfo(&self, meta: &ProviderMeta, access_token: &str) -> AppResult<Value> {
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

    fn seal_upstream(&self, token: Option<&str>) -> AppResult<Option<Vec<u8>>> {
        token
            .map(|t| {
                self.keys()
                    .master()
                    .seal(t.as_bytes(), SEAL_CONTEXT)
                    .map_err(AppError::Internal)
            })
            .transpose()
    }

    fn open_upstream(&self, sealed: &[u8]) -> AppResult<String> {
        let plain = self
            .keys()
            .master()
            .open(sealed, SEAL_CONTEXT)
            .map_err(AppError::Internal)?;
        String::from_utf8(plain).map_err(AppError::internal)
    }

    /// A username for a new account: the provider's preferred username, else the
    /// email's local part, else the provider and subject; made valid and unique.
    async fn derive_username(&self, provider: &str, who: &UpstreamUser) -> AppResult<String> {
        let raw = who
            .preferred_username
            .clone()
            .or_else(|| who.email.as_ref().and_then(|e| e.split('@').next().map(str::to_string)))
            .unwrap_or_else(|| format!("{provider}_{}", who.subject));
        let mut base: String = validate::fold(&raw)
            .to_lowercase()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .take(40)
            .collect();
        if base.len() < 3 || validate::username(&base).is_err() {
            base = format!("{provider}_user");
        }
        for n in 0..50u32 {
            let candidate = if n == 0 {
                base.clone()
            } else {
                format!("{base}{}", n + 1)
            };
            if validate::username(&candidate).is_ok() && self.store().user_by_login(&candidate).await?.is_none() {
                return Ok(candidate);
            }
        }
        Ok(format!("{base}_{}", &Uuid::new_v4().simple().to_string()[..8]))
    }

    /// The account an upstream identity signs in to: linked before, linked now by
    /// verified email (when allowed), or created (when sign-up is allowed).
    async fn resolve_account(
        &self,
        p: &ProviderSettings,
        who: &UpstreamUser,
        tokens: &UpstreamTokens,
        ctx: &ClientContext,
    ) -> AppResult<UserRow> {
        let (provider, issuer) = (p.name.as_str(), p.issuer.as_str());
        let now = Utc::now();
        let identity = IdentityRow {
            provider: provider.to_string(),
            subject: who.subject.clone(),
            user_id: Uuid::nil(),
            email: who.email.clone(),
            issuer: Some(issuer.to_string()),
            created_at: now,
            last_login_at: now,
            access_token: self.seal_upstream(tokens.access_token.as_deref())?,
            refresh_token: self.seal_upstream(tokens.refresh_token.as_deref())?,
            token_expires_at: tokens.expires_at,
        };
        if let Some(linked) = self.store().identity(provider, &who.subject).await? {
            self.store().identity_signed_in(&identity, now).await?;
            return self.user(linked.user_id).await;
        }
        let settings = &self.config().oauth;
        // Only a plain ASCII address is looked up: PostgreSQL's lower() folds some
        // non-ASCII letters onto ASCII ones (U+0130 to `i` under C.UTF-8), so a
        // look-alike address at a domain an attacker owns would find the account of the
        // address it imitates.
        let existing = match who.email.as_deref().filter(|e| validate::email(e).is_ok()) {
            Some(email) => self.store().user_by_email(email).await?,
            None => None,
        };
        if let Some(user) = existing {
            // Both sides must have proven the address: the provider says so, and the
            // account got it from a provider that said so. A self-registered address
            // was never proven, and linking into it would hand the account to
            // whoever registered it.
            let proven = who.email_verified && self.store().email_verified(user.id).await?;
            if !(proven && settings.link_verified_email) {
                return Err(AppError::Conflict(format!(
                    "an account with this email already exists and is not linked to {provider}{}",
                    if who.email_verified {
                        ""
                    } else {
                        " (the provider does not assert the email is verified)"
                    }
                )));
            }
            let record = self.audit_record(
                Actor::user(user.id, &user.username, ctx)
                    .event("OAUTH_LINK")
                    .resource("user", user.id)
                    .meta("provider", provider)
                    .meta("via", "verified_email"),
            );
            self.store()
                .link_identity(
                    &IdentityRow {
                        user_id: user.id,
                        ..identity
                    },
                    record.as_ref(),
                )
                .await?;
            return Ok(user);
        }
        if !settings.allow_signup {
            return Err(AppError::Forbidden(format!(
                "no account is linked to this {provider} identity, and sign-up is disabled"
            )));
        }
        let email = who
            .email
            .clone()
            .filter(|e| validate::email(e).is_ok())
            .ok_or_else(|| AppError::validation("email", "the provider gave no usable email address"))?;
        let username = self.derive_username(provider, who).await?;
        let record = self.audit_record(AuditEvent::new("REGISTER").client(ctx).meta("provider", provider));
        self.store()
            .insert_user(
                &NewUser {
                    username,
                    email,
                    full_name: who.name.clone().filter(|n| validate::full_name(n).is_ok()),
                    password_hash: None,
                    is_superuser: false,
                    roles: Vec::new(),
                    identity: Some(identity),
                    email_verified: who.email_verified,
                },
                now,
                record.as_ref(),
            )
            .await
    }

    /// Signs in the account of an upstream identity: MFA and the role policy apply as
    /// for a password.
    async fn upstream_login(
        &self,
        p: &ProviderSettings,
        who: UpstreamUser,
        tokens: UpstreamTokens,
        ctx: &ClientContext,
    ) -> AppResult<LoginOutcome> {
        let provider = p.name.as_str();
        let user = self.resolve_account(p, &who, &tokens, ctx).await?;
        if !user.is_active {
            return Err(AppError::InvalidCredentials("this account is disabled".into()));
        }
        self.log_event(
            Actor::user(user.id, &user.username, ctx)
                .event("OAUTH_LOGIN")
                .resource("user", user.id)
                .meta("provider", provider),
        )
        .await?;
        self.after_first_factor(&user, &["fed"], ctx).await
    }

    /// `POST /auth/oauth/login`: an app that did the provider login itself hands over
    /// an ID token (verified locally) or an access token (confirmed as ours, then
    /// read at userinfo).
    pub async fn oauth_token_login(
        &self,
        provider: &str,
        id_token: Option<&str>,
        access_token: Option<&str>,
        nonce: Option<&str>,
        okta_domain: Option<&str>,
        ctx: &ClientContext,
    ) -> AppResult<LoginOutcome> {
        // It goes to the provider in an Authorization header; one that cannot is the
        // caller's mistake, not the provider's failure.
        if let Some(t) = access_token
            && (t.is_empty() || t.len() > 8192 || !t.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(AppError::validation(
                "access_token",
                "is not a bearer token (visible ASCII, at most 8 KiB)",
            ));
        }
        let p = self.provider(provider, okta_domain)?;
        let meta = self.metadata(&p).await?;
        let (who, tokens) = match (id_token, access_token) {
            (Some(id), _) => {
                let (claims, alg) = self.verify_id_token(&p, &meta, id, nonce).await?;
                if let Some(access) = access_token {
                    self.confirm_pair(&p, &meta, (&claims, alg), access).await?;
                }
                (
                    upstream_user(&claims)?,
                    UpstreamTokens {
                        access_token: access_token.map(str::to_string),
                        ..Default::default()
                    },
                )
            }
            (None, Some(access)) => (
                {
                    self.confirm_issued_to_us(&p, &meta, access).await?;
                    upstream_user(&self.userinfo(&meta, access).await?)?
                },
                UpstreamTokens {
                    access_token: Some(access.to_string()),
                    ..Default::default()
                },
            ),
            (None, None) => return Err(AppError::validation("id_token", "give an id_token or an access_token")),
        };
        self.upstream_login(&p, who, tokens, ctx).await
    }

    /// `GET /auth/oauth/{provider}/authorize`: where to send the browser, and a value
    /// for a cookie in that browser (the callback must come back with it, so a
    /// callback link made by someone else signs no one in: login CSRF).
    pub async fn oauth_authorize_url(&self, provider: &str, redirect_uri: &str) -> AppResult<(String, String)> {
        let p = self.provider(provider, None)?;
        if !self.config().oauth.redirect_uris.iter().any(|u| u == redirect_uri) {
            return Err(AppError::validation(
                "redirect_uri",
                "is not one of OAUTH_REDIRECT_URIS",
            ));
        }
        let meta = self.metadata(&p).await?;
        let endpoint = meta
            .authorization_endpoint
            .as_deref()
            .ok_or_else(|| upstream("discovery", "no authorization_endpoint"))?;
        let state = tokens::random_token();
        let nonce = tokens::random_token();
        let verifier = tokens::random_token();
        let browser = tokens::random_token();
        let now = Utc::now();
        self.store()
            .insert_oauth_state(&OAuthStateRow {
                state_hash: tokens::digest(&state).to_vec(),
                provider: p.name.clone(),
                nonce: nonce.clone(),
                pkce_verifier: verifier.clone(),
                redirect_uri: redirect_uri.to_string(),
                browser_hash: tokens::digest(&browser).to_vec(),
                created_at: now,
                expires_at: now + chrono::Duration::seconds(STATE_TTL_SECONDS),
                used_at: None,
            })
            .await?;
        let callback = self.callback_url(&p.name);
        let scope = p.scopes.join(" ");
        let challenge = pkce_challenge(&verifier);
        let separator = if endpoint.contains('?') { '&' } else { '?' };
        let url = format!(
            "{endpoint}{separator}{}",
            query(&[
                ("response_type", "code"),
                ("client_id", &p.client_id),
                ("redirect_uri", &callback),
                ("scope", &scope),
                ("state", &state),
                ("nonce", &nonce),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ])
        );
        Ok((url, browser))
    }

    /// The callback URL Portcullis gives providers.
    pub fn callback_url(&self, provider: &str) -> String {
        self.config().url(&format!("/auth/oauth/{provider}/callback"))
    }

    /// Posts a form to the provider's token endpoint.
    async fn token_request(
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

    fn upstream_tokens(body: &Value) -> UpstreamTokens {
        let text = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
        UpstreamTokens {
            access_token: text("access_token"),
            refresh_token: text("refresh_token"),
            expires_at: body
                .get("expires_in")
                .and_then(Value::as_i64)
                .map(|s| Utc::now() + chrono::Duration::seconds(s.clamp(0, 10 * 365 * 86_400))),
        }
    }

    /// `GET /auth/oauth/{provider}/callback`: checks the state, exchanges the code
    /// with the PKCE verifier, verifies the ID token and its nonce, and signs in.
    pub async fn oauth_callback(
        &self,
        provider: &str,
        code: Option<&str>,
        state: Option<&str>,
        error: Option<&str>,
        browser: Option<&str>,
        ctx: &ClientContext,
    ) -> AppResult<CallbackResult> {
        let state = state
            .filter(|s| !s.is_empty() && s.len() <= 512)
            .ok_or_else(|| AppError::BadRequest("state is missing".into()))?;
        let row = match self
            .store()
            .take_oauth_state(&tokens::digest(state), Utc::now())
            .await?
        {
            Ok(row) => row,
            Err(StateRefusal::Unknown) => return Err(AppError::BadRequest("state is unknown".into())),
            Err(StateRefusal::Reused) => return Err(AppError::BadRequest("state was already used".into())),
            Err(StateRefusal::Expired) => return Err(AppError::BadRequest("state has expired; start again".into())),
        };
        if row.provider != provider {
            return Err(AppError::BadRequest("state belongs to another provider".into()));
        }
        let same_browser = browser.is_some_and(|b| {
            bool::from(subtle::ConstantTimeEq::ct_eq(
                &tokens::digest(b)[..],
                &row.browser_hash[..],
            ))
        });
        if !same_browser {
            return Err(AppError::BadRequest(
                "this sign-in was started in another browser (its cookie is missing)".into(),
            ));
        }
        if let Some(e) = error {
            return Err(AppError::InvalidCredentials(format!(
                "the provider declined the sign-in ({})",
                e.chars().take(64).collect::<String>()
            )));
        }
        let code = code
            .filter(|c| !c.is_empty() && c.len() <= 4096)
            .ok_or_else(|| AppError::BadRequest("code is missing".into()))?;
        let p = self.provider(provider, None)?;
        let meta = self.metadata(&p).await?;
        let callback = self.callback_url(&p.name);
        let body = self
            .token_request(
                &p,
                &meta,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", code),
                    ("redirect_uri", &callback),
                    ("code_verifier", &row.pkce_verifier),
                ],
            )
            .await?;
        let id_token = body
            .get("id_token")
            .and_then(Value::as_str)
            .ok_or_else(|| upstream("the token request", "no id_token"))?;
        let (claims, _) = self.verify_id_token(&p, &meta, id_token, Some(&row.nonce)).await?;
        let outcome = self
            .upstream_login(&p, upstream_user(&claims)?, Self::upstream_tokens(&body), ctx)
            .await?;
        Ok(CallbackResult {
            redirect_uri: row.redirect_uri,
            outcome,
        })
    }

    /// The caller's linked identities.
    pub async fn identities(&self, user_id: Uuid) -> AppResult<Vec<IdentityOut>> {
        Ok(self
            .store()
            .identities_of(user_id)
            .await?
            .into_iter()
            .map(|i| IdentityOut {
                provider: i.provider,
                subject: i.subject,
                email: i.email,
                linked_at: i.created_at,
                last_login_at: i.last_login_at,
            })
            .collect())
    }

    /// Unlinks one of the caller's identities; never their last way to sign in.
    pub async fn unlink_identity(&self, user: &UserRow, provider: &str, ctx: &ClientContext) -> AppResult<()> {
        let record = self.audit_record(
            Actor::user(user.id, &user.username, ctx)
                .event("OAUTH_UNLINK")
                .resource("user", user.id)
                .meta("provider", provider),
        );
        if !self.store().unlink_identity(user.id, provider, record.as_ref()).await? {
            return Err(AppError::NotFound(format!("no {provider} identity is linked")));
        }
        Ok(())
    }

    /// A current upstream access token of the caller's identity, refreshed upstream
    /// when it has expired.
    pub async fn upstream_access_token(&self, user_id: Uuid, provider: &str) -> AppResult<UpstreamTokenOut> {
        let identity = self
            .store()
            .identity_of(user_id, provider)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("no {provider} identity is linked")))?;
        // An unknown expiry counts as expired when there is a refresh token to use.
        let fresh = match identity.token_expires_at {
            Some(e) => e > Utc::now() + chrono::Duration::seconds(30),
            None => identity.refresh_token.is_none(),
        };
        if let (Some(sealed), true) = (&identity.access_token, fresh) {
            return Ok(UpstreamTokenOut {
                provider: identity.provider,
                access_token: self.open_upstream(sealed)?,
                expires_at: identity.token_expires_at,
            });
        }
        let sealed_refresh = identity.refresh_token.as_ref().ok_or_else(|| {
            AppError::Conflict(
                "the provider's token has expired and it gave no refresh token: sign in with it again".into(),
            )
        })?;
        let refresh = self.open_upstream(sealed_refresh)?;
        // Refreshed where it signed in: an Okta organisation named per request, say
        // (still only while that organisation is allowed).
        let configured = self.provider(provider, None)?;
        let p = match identity.issuer.as_deref() {
            Some(issuer) if configured.kind == ProviderKind::Okta && issuer != configured.issuer => {
                self.provider(provider, Some(issuer))?
            }
            _ => configured,
        };
        let meta = self.metadata(&p).await?;
        let body = self
            .token_request(
                &p,
                &meta,
                &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
            )
            .await
            .map_err(|e| match e {
                // The provider's refusal is not this session's failure.
                AppError::InvalidCredentials(m) => AppError::BadGateway(m),
                other => other,
            })?;
        let tokens = Self::upstream_tokens(&body);
        let access = tokens
            .access_token
            .clone()
            .ok_or_else(|| upstream("the refresh", "no access_token"))?;
        let sealed_access = self.seal_upstream(Some(&access))?.unwrap_or_default();
        self.store()
            .set_identity_tokens(
                provider,
                &identity.subject,
                &sealed_access,
                self.seal_upstream(tokens.refresh_token.as_deref())?.as_deref(),
                tokens.expires_at,
            )
            .await?;
        Ok(UpstreamTokenOut {
            provider: identity.provider,
            access_token: access,
            expires_at: tokens.expires_at,
        })
    }

    pub(crate) async fn purge_oauth_states(&self, now: DateTime<Utc>) -> AppResult<u64> {
        self.store().purge_oauth_states(now).await
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

    #[test]
    fn query_escaping() {
        assert_eq!(
            query(&[("a", "x y"), ("b", "http://h/p?q=1")]),
            "a=x%20y&b=http%3A%2F%2Fh%2Fp%3Fq%3D1"
        );
    }
}
