//! The client registry: applications that sign in with Portcullis, their secrets, and
//! how a client proves who it is at the token, introspection and revocation endpoints.
//!
//! A secret is 32 random bytes shown once; only its SHA-256 is kept (it is not a
//! password: a fast hash is enough for a value nobody can guess, and it keeps the token
//! endpoint cheap). Rotating keeps the old secret valid for a grace period, so the
//! application can be redeployed with the new one without an outage.

use std::time::Duration;

use chrono::{DateTime, Utc};
use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use url::Url;
use uuid::Uuid;

use super::{GRANT_AUTHORIZATION_CODE, GRANT_CLIENT_CREDENTIALS, GRANT_REFRESH_TOKEN, GRANT_TYPES, scopes};
use crate::crypto::tokens;
use crate::domain::privilege::{Rank, require_rank};
use crate::domain::{Actor, Portcullis};
use crate::error::{AppError, AppResult, OAuthFailure};
use crate::store::{ClientRow, EndTokens};

/// Prefix of a client secret, so a leaked one is recognisable (secret scanners).
pub const CLIENT_SECRET_PREFIX: &str = "pcsec_";
/// How long the secret before a rotation keeps working, unless the caller says.
pub const DEFAULT_ROTATION_GRACE: Duration = Duration::from_secs(24 * 3600);
/// The longest an old secret may keep working after a rotation (30 days).
pub const MAX_ROTATION_GRACE: Duration = Duration::from_secs(30 * 24 * 3600);
/// `client_assertion_type` of `private_key_jwt` (RFC 7523 2.2).
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// How far ahead an assertion may expire: it is made for one request.
const MAX_ASSERTION_LIFETIME_SECS: i64 = 600;
/// Clock skew allowed between the client and Portcullis.
const ASSERTION_LEEWAY_SECS: u64 = 60;
const MAX_ASSERTION_LEN: usize = 8 * 1024;
const MAX_JTI_LEN: usize = 200;
const MAX_JWKS_KEYS: usize = 10;
const MAX_JWKS_LEN: usize = 32 * 1024;
const MAX_URIS: usize = 20;
const MAX_URI_LEN: usize = 2000;
const MAX_NAME_LEN: usize = 200;
/// The longest token lifetime a client may set for itself (a year).
const MAX_TTL_SECS: u64 = 365 * 24 * 3600;

/// Whether a client can keep a secret (a server) or not (a browser app, a CLI, a
/// mobile app: PKCE then stands in for the secret).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ClientKind {
    Confidential,
    Public,
}

impl ClientKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Confidential => "confidential",
            Self::Public => "public",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "confidential" => Some(Self::Confidential),
            "public" => Some(Self::Public),
            _ => None,
        }
    }
}

/// How a client authenticates at the token endpoint (the registered method; the
/// secret methods accept each other, as most libraries pick one on their own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TokenAuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
    PrivateKeyJwt,
    None,
}

impl TokenAuthMethod {
    pub const ALL: [Self; 4] = [
        Self::ClientSecretBasic,
        Self::ClientSecretPost,
        Self::PrivateKeyJwt,
        Self::None,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
            Self::PrivateKeyJwt => "private_key_jwt",
            Self::None => "none",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }

    fn uses_secret(self) -> bool {
        matches!(self, Self::ClientSecretBasic | Self::ClientSecretPost)
    }
}

/// A registered client, as the domain and the admin API see it (no secret hashes).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Client {
    pub client_id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ClientKind,
    pub token_endpoint_auth_method: TokenAuthMethod,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub scopes: Vec<String>,
    /// Skips the consent page (an application of the operator's own).
    pub first_party: bool,
    pub backchannel_logout_uri: Option<String>,
    /// The client's public keys (JWKS) for `private_key_jwt`.
    #[schema(value_type = Option<Object>)]
    pub jwks: Option<serde_json::Value>,
    /// Seconds; absent: the service's defaults.
    pub access_token_ttl: Option<u64>,
    pub refresh_token_ttl: Option<u64>,
    /// Roles held as a service account (`client_credentials`).
    pub roles: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Whether a secret is set (never the secret).
    pub has_secret: bool,
    /// Until when the secret before the last rotation is still accepted.
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    /// The id its service-account tokens carry as `uid` and `sid`.
    #[serde(skip)]
    pub uid: Uuid,
    #[serde(skip)]
    secret_hash: Option<Vec<u8>>,
    #[serde(skip)]
    previous_secret_hash: Option<Vec<u8>>,
}

/// What a new client is registered with; absent fields take the defaults a web
/// application needs (confidential, `client_secret_basic`, code and refresh grants,
/// the standard scopes).
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientSpec {
    /// The client_id; generated when absent. Letters, digits, `-`, `_`, `.`.
    pub client_id: Option<String>,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: Option<ClientKind>,
    pub token_endpoint_auth_method: Option<TokenAuthMethod>,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    pub grant_types: Option<Vec<String>>,
    pub scopes: Option<Vec<String>>,
    #[serde(default)]
    pub first_party: bool,
    pub backchannel_logout_uri: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub jwks: Option<serde_json::Value>,
    pub access_token_ttl: Option<u64>,
    pub refresh_token_ttl: Option<u64>,
    #[serde(default)]
    pub roles: Vec<String>,
}

/// A change to a client: each present field replaces the old value. For the optional
/// values, `null` clears and absence keeps (`Option<Option<_>>`).
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientPatch {
    pub name: Option<String>,
    pub token_endpoint_auth_method: Option<TokenAuthMethod>,
    pub redirect_uris: Option<Vec<String>>,
    pub post_logout_redirect_uris: Option<Vec<String>>,
    pub grant_types: Option<Vec<String>>,
    pub scopes: Option<Vec<String>>,
    pub first_party: Option<bool>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub backchannel_logout_uri: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Object>)]
    pub jwks: Option<Option<serde_json::Value>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u64>)]
    pub access_token_ttl: Option<Option<u64>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u64>)]
    pub refresh_token_ttl: Option<Option<u64>>,
    pub roles: Option<Vec<String>>,
}

/// `null` as `Some(None)`, absence (via `default`) as `None`.
fn double_option<'de, T: Deserialize<'de>, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// A client just created or whose secret was just rotated: the secret, shown once.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CreatedClient {
    #[serde(flatten)]
    pub client: Client,
    /// Shown only now; absent for public and `private_key_jwt` clients.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
}

/// What a request to the token, introspection or revocation endpoint presented to
/// identify its client (RFC 6749 2.3, RFC 7523 2.2).
#[derive(Debug, Clone, Default)]
pub struct ClientAuth {
    /// From `Authorization: Basic` (already form-decoded, RFC 6749 2.3.1).
    pub basic: Option<(String, String)>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub client_assertion_type: Option<String>,
    pub client_assertion: Option<String>,
}

impl ClientAuth {
    /// The client_id the request names, wherever it put it.
    pub fn named_client(&self) -> Option<&str> {
        self.basic
            .as_ref()
            .map(|(id, _)| id.as_str())
            .or(self.client_id.as_deref())
    }
}

fn failure(text: &str) -> AppError {
    AppError::OAuth(OAuthFailure::InvalidClient(text.into()))
}

impl Client {
    fn from_row(row: ClientRow, roles: Vec<String>) -> AppResult<Self> {
        let list = |s: &str| serde_json::from_str::<Vec<String>>(s).map_err(AppError::internal);
        Ok(Self {
            kind: ClientKind::parse(&row.kind)
                .ok_or_else(|| AppError::Internal(anyhow::anyhow!("unknown client kind")))?,
            token_endpoint_auth_method: TokenAuthMethod::parse(&row.auth_method)
                .ok_or_else(|| AppError::Internal(anyhow::anyhow!("unknown client auth method")))?,
            redirect_uris: list(&row.redirect_uris)?,
            post_logout_redirect_uris: list(&row.post_logout_redirect_uris)?,
            grant_types: list(&row.grant_types)?,
            scopes: list(&row.scopes)?,
            jwks: row
                .jwks
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .map_err(AppError::internal)?,
            access_token_ttl: row.access_token_ttl.map(|s| s.max(0) as u64),
            refresh_token_ttl: row.refresh_token_ttl.map(|s| s.max(0) as u64),
            has_secret: row.secret_hash.is_some(),
            client_id: row.id,
            uid: row.uid,
            name: row.name,
            first_party: row.first_party,
            backchannel_logout_uri: row.backchannel_logout_uri,
            roles,
            created_at: row.created_at,
            updated_at: row.updated_at,
            previous_secret_expires_at: row.previous_secret_expires_at,
            secret_hash: row.secret_hash,
            previous_secret_hash: row.previous_secret_hash,
        })
    }

    fn to_row(&self) -> AppResult<ClientRow> {
        let json = |v: &[String]| serde_json::to_string(v).map_err(AppError::internal);
        Ok(ClientRow {
            id: self.client_id.clone(),
            uid: self.uid,
            name: self.name.clone(),
            kind: self.kind.as_str().into(),
            auth_method: self.token_endpoint_auth_method.as_str().into(),
            redirect_uris: json(&self.redirect_uris)?,
            post_logout_redirect_uris: json(&self.post_logout_redirect_uris)?,
            grant_types: json(&self.grant_types)?,
            scopes: json(&self.scopes)?,
            first_party: self.first_party,
            backchannel_logout_uri: self.backchannel_logout_uri.clone(),
            jwks: self.jwks.as_ref().map(|j| j.to_string()),
            // At most MAX_TTL_SECS (checked), well inside i32.
            access_token_ttl: self.access_token_ttl.map(|s| s.min(MAX_TTL_SECS) as i32),
            refresh_token_ttl: self.refresh_token_ttl.map(|s| s.min(MAX_TTL_SECS) as i32),
            secret_hash: self.secret_hash.clone(),
            previous_secret_hash: self.previous_secret_hash.clone(),
            previous_secret_expires_at: self.previous_secret_expires_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }

    pub fn allows_grant(&self, grant: &str) -> bool {
        self.grant_types.iter().any(|g| g == grant)
    }

    pub fn allows_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    pub fn is_public(&self) -> bool {
        self.kind == ClientKind::Public
    }

    /// Whether `uri` is one of the client's redirect URIs: compared exactly, except
    /// that a registered loopback redirect (`http://127.0.0.1/...`, `http://[::1]/...`)
    /// matches on any port, as RFC 8252 7.3 asks for native apps, which cannot know
    /// their port in advance.
    pub fn redirect_uri_allowed(&self, uri: &str) -> bool {
        uri_allowed(&self.redirect_uris, uri)
    }

    /// Whether `uri` is a registered post-logout redirect URI (exact match).
    pub fn post_logout_uri_allowed(&self, uri: &str) -> bool {
        self.post_logout_redirect_uris.iter().any(|u| u == uri)
    }

    /// Whether `secret` is the client's secret, or the one before the last rotation
    /// within its grace period. Compared as digests in constant time.
    fn secret_matches(&self, secret: &str, now: DateTime<Utc>) -> bool {
        let presented = tokens::digest(secret);
        let is = |hash: &Option<Vec<u8>>| hash.as_deref().is_some_and(|h| bool::from(h.ct_eq(&presented[..])));
        is(&self.secret_hash)
            || (self.previous_secret_expires_at.is_some_and(|until| now < until) && is(&self.previous_secret_hash))
    }
}

fn uri_allowed(registered: &[String], uri: &str) -> bool {
    if registered.iter().any(|r| r == uri) {
        return true;
    }
    let Ok(presented) = Url::parse(uri) else {
        return false;
    };
    if presented.scheme() != "http" || !is_loopback_ip(&presented) {
        return false;
    }
    registered.iter().any(|r| {
        Url::parse(r).is_ok_and(|mut reg| {
            if reg.scheme() != "http" || !is_loopback_ip(&reg) {
                return false;
            }
            let mut p = presented.clone();
            let _ = reg.set_port(None);
            let _ = p.set_port(None);
            reg == p
        })
    })
}

/// A literal loopback address: RFC 8252 8.3 advises against `localhost`, which a
/// resolver or firewall may send elsewhere, so only IPs get the any-port rule.
fn is_loopback_ip(u: &Url) -> bool {
    match u.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        _ => false,
    }
}

/// Checks a redirect (or post-logout, or back-channel) URI: absolute, no fragment, no
/// credentials; `https`, or `http` only to a loopback address (or `localhost`, for
/// development), or a private-use scheme with a dot (`com.example.app:/cb`, RFC 8252
/// 7.1) for public clients.
fn check_uri(field: &str, uri: &str, allow_custom_scheme: bool) -> AppResult<()> {
    let bad = |why: &str| AppError::validation(field, format!("{uri:.80}: {why}"));
    if uri.len() > MAX_URI_LEN {
        return Err(bad("is too long"));
    }
    let url = Url::parse(uri).map_err(|_| bad("is not an absolute URL"))?;
    if url.fragment().is_some() {
        return Err(bad("must not have a fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("must not carry credentials"));
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback_ip(&url) || url.host_str() == Some("localhost") => Ok(()),
        "http" => Err(bad("must use https (http only to a loopback address)")),
        s if allow_custom_scheme && s.contains('.') => Ok(()),
        _ => Err(bad(
            "must use https, http to a loopback address, or a reverse-domain scheme",
        )),
    }
}

fn check_client_id(id: &str) -> AppResult<()> {
    let ok = !id.is_empty()
        && id.len() <= 100
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(AppError::validation(
            "client_id",
            "must be 1-100 letters, digits, '-', '_' or '.'",
        ))
    }
}

/// Checks a client as a whole, after creation defaults or a patch were applied: every
/// rule lives here, so creating and updating cannot disagree.
fn check(c: &mut Client) -> AppResult<()> {
    for list in [
        &mut c.redirect_uris,
        &mut c.post_logout_redirect_uris,
        &mut c.grant_types,
        &mut c.scopes,
        &mut c.roles,
    ] {
        let mut seen = std::collections::HashSet::new();
        list.retain(|v| seen.insert(v.clone()));
    }
    let name = c.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        return Err(AppError::validation(
            "name",
            "must be 1-200 characters without control characters",
        ));
    }
    for (field, list) in [
        ("redirect_uris", &c.redirect_uris),
        ("post_logout_redirect_uris", &c.post_logout_redirect_uris),
    ] {
        if list.len() > MAX_URIS {
            return Err(AppError::validation(field, format!("at most {MAX_URIS}")));
        }
        for uri in list {
            check_uri(field, uri, c.is_public())?;
        }
    }
    if let Some(uri) = &c.backchannel_logout_uri {
        check_uri("backchannel_logout_uri", uri, false)?;
    }
    if c.grant_types.is_empty() {
        return Err(AppError::validation("grant_types", "name at least one grant type"));
    }
    for g in &c.grant_types {
        if !GRANT_TYPES.contains(&g.as_str()) {
            return Err(AppError::validation(
                "grant_types",
                format!("unknown grant type {g:.80}; known: {}", GRANT_TYPES.join(", ")),
            ));
        }
    }
    if c.allows_grant(GRANT_AUTHORIZATION_CODE) && c.redirect_uris.is_empty() {
        return Err(AppError::validation(
            "redirect_uris",
            "the authorization_code grant needs at least one redirect URI",
        ));
    }
    if c.is_public() && c.allows_grant(GRANT_CLIENT_CREDENTIALS) {
        return Err(AppError::validation(
            "grant_types",
            "client_credentials is for confidential clients only",
        ));
    }
    if !c.roles.is_empty() && !c.allows_grant(GRANT_CLIENT_CREDENTIALS) {
        return Err(AppError::validation(
            "roles",
            "roles are held by service accounts: allow the client_credentials grant",
        ));
    }
    for s in &c.scopes {
        if !scopes::is_known(s) {
            return Err(AppError::validation(
                "scopes",
                format!("unknown scope {s:.80}; known: {}", scopes::SCOPES.join(", ")),
            ));
        }
    }
    match (c.kind, c.token_endpoint_auth_method) {
        (ClientKind::Public, TokenAuthMethod::None) => {}
        (ClientKind::Public, _) => {
            return Err(AppError::validation(
                "token_endpoint_auth_method",
                "a public client has no secret: use none",
            ));
        }
        (ClientKind::Confidential, TokenAuthMethod::None) => {
            return Err(AppError::validation(
                "token_endpoint_auth_method",
                "a confidential client authenticates: use client_secret_basic, client_secret_post or private_key_jwt",
            ));
        }
        (ClientKind::Confidential, _) => {}
    }
    if c.token_endpoint_auth_method == TokenAuthMethod::PrivateKeyJwt && c.jwks.is_none() {
        return Err(AppError::validation(
            "jwks",
            "private_key_jwt needs the client's public keys as a JWKS ({\"keys\": [...]})",
        ));
    }
    if let Some(jwks) = &c.jwks {
        check_jwks(jwks)?;
    }
    for (field, ttl) in [
        ("access_token_ttl", c.access_token_ttl),
        ("refresh_token_ttl", c.refresh_token_ttl),
    ] {
        if ttl.is_some_and(|t| t == 0 || t > MAX_TTL_SECS) {
            return Err(AppError::validation(field, format!("must be 1-{MAX_TTL_SECS} seconds")));
        }
    }
    Ok(())
}

/// An update that lost a race: the client changed (or went) since it was read.
fn changed_meanwhile(id: &str) -> AppError {
    AppError::Conflict(format!(
        "client {id:.100} changed meanwhile (or was deleted): read it again and retry"
    ))
}

/// Skipping the consent page (`first_party`) and handing out the person's roles and
/// permissions (the `roles` scope) are trust only an administrator may give an
/// application: a client manager who is not one could otherwise collect an
/// administrator's grants by registering an application and sending them a link.
fn may_trust(c: &Client, old: Option<&Client>, by: &Actor) -> AppResult<()> {
    let trusted = |c: &Client| (c.first_party, c.allows_scope("roles"));
    let now = trusted(c);
    let before = old.map_or((false, false), trusted);
    if (now.0 && !before.0) || (now.1 && !before.1) {
        require_rank(
            by,
            Rank::Administrator,
            "make an application first-party or give it the roles scope",
        )?;
    }
    Ok(())
}

/// What an assertion must say (RFC 7523 3); `aud`, `nbf` and `iat` are checked by
/// the verifier.
#[derive(Debug, Deserialize)]
struct AssertionClaims {
    iss: String,
    exp: i64,
    jti: String,
}

/// The keys of a registered JWKS usable for `private_key_jwt`, each with the one
/// algorithm it verifies: pinned by the key's type (an RSA key RS256, a P-256 key
/// ES256, an Ed25519 key EdDSA), never by the assertion's header. Symmetric keys,
/// other curves, encryption keys and keys naming another algorithm are left out.
fn registered_keys(jwks: Option<&serde_json::Value>) -> Vec<(Jwk, Algorithm)> {
    let Some(set) = jwks.and_then(|j| serde_json::from_value::<JwkSet>(j.clone()).ok()) else {
        return Vec::new();
    };
    set.keys
        .into_iter()
        .filter_map(|k| key_algorithm(&k).map(|alg| (k, alg)))
        .collect()
}

fn key_algorithm(jwk: &Jwk) -> Option<Algorithm> {
    let alg = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => Algorithm::EdDSA,
        _ => return None,
    };
    if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
        return None;
    }
    let named_matches = match jwk.common.key_algorithm {
        None => true,
        Some(named) => matches!(
            (named, alg),
            (KeyAlgorithm::RS256, Algorithm::RS256)
                | (KeyAlgorithm::ES256, Algorithm::ES256)
                | (KeyAlgorithm::EdDSA, Algorithm::EdDSA)
        ),
    };
    named_matches.then_some(alg)
}

/// A registered JWKS: a `{"keys": [...]}` document whose every key is one
/// `private_key_jwt` can verify with, at most `MAX_JWKS_KEYS` of them.
fn check_jwks(jwks: &serde_json::Value) -> AppResult<()> {
    let set: JwkSet = serde_json::from_value(jwks.clone())
        .map_err(|e| AppError::validation("jwks", format!("is not a JWKS ({{\"keys\": [...]}}): {e:.200}")))?;
    if set.keys.is_empty() || set.keys.len() > MAX_JWKS_KEYS {
        return Err(AppError::validation(
            "jwks",
            format!("must hold 1-{MAX_JWKS_KEYS} keys"),
        ));
    }
    let usable = |k: &Jwk| key_algorithm(k).is_some() && jsonwebtoken::DecodingKey::from_jwk(k).is_ok();
    if let Some(i) = set.keys.iter().position(|k| !usable(k)) {
        return Err(AppError::validation(
            "jwks",
            format!(
                "key {i} is not a signing key of a supported kind: RSA (RS256), EC P-256 (ES256) or OKP Ed25519 (EdDSA)"
            ),
        ));
    }
    if jwks.to_string().len() > MAX_JWKS_LEN {
        return Err(AppError::validation(
            "jwks",
            format!("must be at most {MAX_JWKS_LEN} bytes"),
        ));
    }
    Ok(())
}

/// A new random secret and its digest.
fn new_secret() -> (String, Vec<u8>) {
    let secret = format!("{CLIENT_SECRET_PREFIX}{}", tokens::random_token());
    let hash = tokens::digest(&secret).to_vec();
    (secret, hash)
}

impl Portcullis {
    /// Registers a client; a confidential client with a secret method gets a secret,
    /// returned only here.
    pub async fn create_client(&self, spec: ClientSpec, by: &Actor) -> AppResult<CreatedClient> {
        let now = Utc::now();
        let kind = spec.kind.unwrap_or(ClientKind::Confidential);
        let client_id = match spec.client_id {
            Some(id) => {
                check_client_id(&id)?;
                id
            }
            None => Uuid::new_v4().simple().to_string(),
        };
        let mut client = Client {
            client_id,
            uid: Uuid::new_v4(),
            name: spec.name.trim().to_string(),
            kind,
            token_endpoint_auth_method: spec.token_endpoint_auth_method.unwrap_or(match kind {
                ClientKind::Confidential => TokenAuthMethod::ClientSecretBasic,
                ClientKind::Public => TokenAuthMethod::None,
            }),
            redirect_uris: spec.redirect_uris,
            post_logout_redirect_uris: spec.post_logout_redirect_uris,
            grant_types: spec
                .grant_types
                .unwrap_or_else(|| vec![GRANT_AUTHORIZATION_CODE.into(), GRANT_REFRESH_TOKEN.into()]),
            scopes: spec
                .scopes
                .unwrap_or_else(|| scopes::DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect()),
            first_party: spec.first_party,
            backchannel_logout_uri: spec.backchannel_logout_uri,
            jwks: spec.jwks,
            access_token_ttl: spec.access_token_ttl,
            refresh_token_ttl: spec.refresh_token_ttl,
            roles: spec.roles,
            created_at: now,
            updated_at: now,
            has_secret: false,
            previous_secret_expires_at: None,
            secret_hash: None,
            previous_secret_hash: None,
        };
        check(&mut client)?;
        self.may_hold_roles(&client.roles, by).await?;
        may_trust(&client, None, by)?;
        let secret = client.token_endpoint_auth_method.uses_secret().then(new_secret);
        if let Some((_, hash)) = &secret {
            client.secret_hash = Some(hash.clone());
            client.has_secret = true;
        }
        let record = self.audit_record(
            by.event("CLIENT_CREATE")
                .resource("client", &client.client_id)
                .meta("grant_types", &client.grant_types)
                .meta("roles", &client.roles),
        );
        self.store()
            .create_client(&client.to_row()?, &client.roles, record.as_ref())
            .await?;
        Ok(CreatedClient {
            client,
            client_secret: secret.map(|(s, _)| s),
        })
    }

    /// The client `id`, or 404.
    pub async fn client(&self, id: &str) -> AppResult<Client> {
        self.find_client(id)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("no client {id:.100}")))
    }

    /// The client `id`, if registered.
    pub async fn find_client(&self, id: &str) -> AppResult<Option<Client>> {
        if id.is_empty() || id.len() > 100 {
            return Ok(None);
        }
        let Some(row) = self.store().client(id).await? else {
            return Ok(None);
        };
        let roles = self.store().client_roles(id).await?;
        Client::from_row(row, roles).map(Some)
    }

    pub async fn clients(&self) -> AppResult<Vec<Client>> {
        let mut out = Vec::new();
        for row in self.store().clients().await? {
            let roles = self.store().client_roles(&row.id).await?;
            out.push(Client::from_row(row, roles)?);
        }
        Ok(out)
    }

    /// Applies `patch`; the result must pass the same checks as a new client. Taking
    /// roles away or changing how the client authenticates ends its service-account
    /// tokens.
    pub async fn update_client(&self, id: &str, patch: ClientPatch, by: &Actor) -> AppResult<Client> {
        let old = self.client(id).await?;
        let mut c = old.clone();
        if let Some(v) = patch.name {
            c.name = v.trim().to_string();
        }
        if let Some(v) = patch.token_endpoint_auth_method {
            c.token_endpoint_auth_method = v;
        }
        if let Some(v) = patch.redirect_uris {
            c.redirect_uris = v;
        }
        if let Some(v) = patch.post_logout_redirect_uris {
            c.post_logout_redirect_uris = v;
        }
        if let Some(v) = patch.grant_types {
            c.grant_types = v;
        }
        if let Some(v) = patch.scopes {
            c.scopes = v;
        }
        if let Some(v) = patch.first_party {
            c.first_party = v;
        }
        if let Some(v) = patch.backchannel_logout_uri {
            c.backchannel_logout_uri = v;
        }
        if let Some(v) = patch.jwks {
            c.jwks = v;
        }
        if let Some(v) = patch.access_token_ttl {
            c.access_token_ttl = v;
        }
        if let Some(v) = patch.refresh_token_ttl {
            c.refresh_token_ttl = v;
        }
        if let Some(v) = patch.roles.clone() {
            c.roles = v;
        }
        check(&mut c)?;
        let mut changed_roles = c.roles.clone();
        changed_roles.extend(old.roles.iter().cloned());
        self.may_hold_roles(&changed_roles, by).await?;
        may_trust(&c, Some(&old), by)?;
        // A method without a secret drops it; one that needs a secret keeps the old.
        if !c.token_endpoint_auth_method.uses_secret() {
            c.secret_hash = None;
            c.previous_secret_hash = None;
            c.previous_secret_expires_at = None;
            c.has_secret = false;
        } else if c.secret_hash.is_none() {
            return Err(AppError::validation(
                "token_endpoint_auth_method",
                "the client has no secret yet: rotate its secret to get one, then switch",
            ));
        }
        c.updated_at = Utc::now();
        let record = self.audit_record(by.event("CLIENT_UPDATE").resource("client", &c.client_id));
        let lost_roles = old.roles.iter().any(|r| !c.roles.contains(r));
        let end = (lost_roles || old.token_endpoint_auth_method != c.token_endpoint_auth_method)
            .then(|| self.end_tokens(old.uid, c.updated_at));
        if end.is_some() {
            // Its tokens so far carry the old uid, now revoked: new ones get a fresh one.
            c.uid = Uuid::new_v4();
        }
        if !self
            .store()
            .update_client(
                &c.to_row()?,
                old.updated_at,
                patch.roles.as_deref(),
                end,
                record.as_ref(),
            )
            .await?
        {
            return Err(changed_meanwhile(id));
        }
        if end.is_some() {
            self.forget_sessions(&[old.uid], c.updated_at);
        }
        Ok(c)
    }

    /// Gives the client a new secret, shown once; the old one keeps working for
    /// `grace` (zero: ends at once, with every service-account token).
    pub async fn rotate_client_secret(&self, id: &str, grace: Duration, by: &Actor) -> AppResult<CreatedClient> {
        if grace > MAX_ROTATION_GRACE {
            return Err(AppError::validation(
                "grace_seconds",
                format!("must be at most {} seconds", MAX_ROTATION_GRACE.as_secs()),
            ));
        }
        let mut c = self.client(id).await?;
        // Whoever gets the secret acts as the service account: only someone who
        // could give it its roles.
        self.may_hold_roles(&c.roles, by).await?;
        if c.is_public() {
            return Err(AppError::BadRequest(format!(
                "client {id:.100} is public: it has no secret"
            )));
        }
        let old_updated_at = c.updated_at;
        let now = Utc::now();
        let (secret, hash) = new_secret();
        let grace_ends =
            now + chrono::Duration::from_std(grace).map_err(|_| AppError::validation("grace", "is too long"))?;
        c.previous_secret_hash = c.secret_hash.take().filter(|_| !grace.is_zero());
        c.previous_secret_expires_at = c.previous_secret_hash.as_ref().map(|_| grace_ends);
        c.secret_hash = Some(hash);
        c.has_secret = true;
        c.updated_at = now;
        let record = self.audit_record(
            by.event("CLIENT_SECRET_ROTATE")
                .resource("client", &c.client_id)
                .meta("grace_seconds", grace.as_secs()),
        );
        let end = grace.is_zero().then(|| self.end_tokens(c.uid, now));
        let old_uid = c.uid;
        if end.is_some() {
            c.uid = Uuid::new_v4();
        }
        if !self
            .store()
            .update_client(&c.to_row()?, old_updated_at, None, end, record.as_ref())
            .await?
        {
            return Err(changed_meanwhile(id));
        }
        if end.is_some() {
            self.forget_sessions(&[old_uid], now);
        }
        Ok(CreatedClient {
            client: c,
            client_secret: Some(secret),
        })
    }

    /// Removes a client; its codes, consents and service-account tokens end with it,
    /// and so do the sessions its users signed in to it with (a client registered
    /// later under the same id must not inherit them).
    pub async fn delete_client(&self, id: &str, by: &Actor) -> AppResult<()> {
        let c = self.client(id).await?;
        self.may_hold_roles(&c.roles, by).await?;
        let record = self.audit_record(by.event("CLIENT_DELETE").resource("client", &c.client_id));
        let now = Utc::now();
        let Some(mut ended) = self
            .store()
            .delete_client(&c.to_row()?, self.end_tokens(c.uid, now), record.as_ref())
            .await?
        else {
            return Err(AppError::NotFound(format!("no client {id:.100}")));
        };
        ended.push(c.uid);
        self.forget_sessions(&ended, now);
        Ok(())
    }

    /// Ending a client's service-account tokens: they carry its uid as their session,
    /// which the revocation feed then refuses on every instance. A revocation is by id,
    /// not by time, so a client that lives on takes a new uid for its next tokens.
    fn end_tokens(&self, uid: Uuid, now: DateTime<Utc>) -> EndTokens {
        EndTokens {
            uid,
            now,
            until: self.revocation_horizon(now),
        }
    }

    /// Identifies the client of a token, introspection or revocation request by what
    /// it presented: a secret (HTTP Basic or the form; either is accepted for either
    /// secret method), a signed assertion (`private_key_jwt`), or for a public client
    /// only its id. Every failure is the same `invalid_client`, so the answer does not
    /// tell which clients exist.
    pub async fn authenticate_client(&self, auth: &ClientAuth) -> AppResult<Client> {
        let unknown = || failure("client authentication failed");
        if auth.basic.is_some() && (auth.client_secret.is_some() || auth.client_assertion.is_some()) {
            return Err(AppError::OAuth(OAuthFailure::InvalidRequest(
                "use one client authentication method per request".into(),
            )));
        }
        if let (Some((basic_id, _)), Some(form_id)) = (&auth.basic, &auth.client_id)
            && basic_id != form_id
        {
            return Err(unknown());
        }
        if auth.client_assertion.is_some() {
            return self.authenticate_client_assertion(auth).await;
        }
        let id = auth.named_client().ok_or_else(unknown)?;
        let client = self.find_client(id).await?.ok_or_else(unknown)?;
        let secret = auth
            .basic
            .as_ref()
            .map(|(_, s)| s.as_str())
            .or(auth.client_secret.as_deref());
        match (client.token_endpoint_auth_method, secret) {
            (TokenAuthMethod::None, None) => Ok(client),
            (m, Some(s)) if m.uses_secret() && client.secret_matches(s, Utc::now()) => Ok(client),
            _ => Err(unknown()),
        }
    }

    /// `private_key_jwt` (RFC 7523 2.2): a JWT the client signed with one of the keys
    /// of its registered JWKS, the algorithm pinned by the key (RS256, ES256, EdDSA),
    /// `iss` = `sub` = its client_id, `aud` naming the token endpoint or the issuer,
    /// expiring within ten minutes, and a `jti` never presented before: each assertion
    /// is remembered in the database until it expires, so no instance accepts it twice.
    async fn authenticate_client_assertion(&self, auth: &ClientAuth) -> AppResult<Client> {
        let unknown = || failure("client authentication failed");
        if auth.client_assertion_type.as_deref() != Some(ASSERTION_TYPE) {
            return Err(failure(&format!("client_assertion_type must be {ASSERTION_TYPE}")));
        }
        let assertion = auth.client_assertion.as_deref().unwrap_or_default();
        if assertion.len() > MAX_ASSERTION_LEN {
            return Err(failure("client_assertion is too long"));
        }
        // Whose it says it is, read before any verification only to find the keys.
        let named: AssertionClaims = jsonwebtoken::dangerous::insecure_decode_claims(assertion)
            .map_err(|_| failure("client_assertion is not a JWT with iss, sub, aud, exp and jti"))?;
        if auth.client_id.as_deref().is_some_and(|id| id != named.iss) {
            return Err(unknown());
        }
        let client = self.find_client(&named.iss).await?.ok_or_else(unknown)?;
        if client.token_endpoint_auth_method != TokenAuthMethod::PrivateKeyJwt {
            return Err(unknown());
        }
        let header = jsonwebtoken::decode_header(assertion).map_err(|_| unknown())?;
        let config = self.config();
        let audiences = [config.url("/oauth2/token"), config.tokens.jwt_issuer.clone()];
        let claims = registered_keys(client.jwks.as_ref())
            .into_iter()
            .filter(|(jwk, alg)| {
                *alg == header.alg
                    && header
                        .kid
                        .as_ref()
                        .is_none_or(|kid| jwk.common.key_id.as_ref() == Some(kid))
            })
            .find_map(|(jwk, alg)| {
                let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).ok()?;
                let mut v = jsonwebtoken::Validation::new(alg);
                v.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
                v.set_issuer(&[&client.client_id]);
                v.sub = Some(client.client_id.clone());
                v.set_audience(&audiences);
                v.leeway = ASSERTION_LEEWAY_SECS;
                v.validate_nbf = true;
                jsonwebtoken::decode::<AssertionClaims>(assertion, &key, &v)
                    .ok()
                    .map(|d| d.claims)
            })
            .ok_or_else(unknown)?;
        let now = Utc::now();
        if claims.exp > now.timestamp() + MAX_ASSERTION_LIFETIME_SECS {
            return Err(failure("client_assertion must expire within 10 minutes"));
        }
        if claims.jti.is_empty() || claims.jti.len() > MAX_JTI_LEN {
            return Err(failure("client_assertion needs a jti of 1-200 characters"));
        }
        let expires = DateTime::from_timestamp(claims.exp, 0).ok_or_else(unknown)?
            + chrono::Duration::seconds(ASSERTION_LEEWAY_SECS as i64);
        if !self
            .store()
            .use_client_assertion(&client.client_id, &claims.jti, expires, now)
            .await?
        {
            return Err(failure(
                "client_assertion was used before: sign a new one with a new jti",
            ));
        }
        Ok(client)
    }

    /// Whether `by` may give a service account these roles: only what they could give
    /// a person (the rules in `privilege`).
    async fn may_hold_roles(&self, roles: &[String], by: &Actor) -> AppResult<()> {
        for role in roles {
            self.may_give_role(role, by).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registered(uris: &[&str]) -> Vec<String> {
        uris.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn redirect_uris_match_exactly_except_loopback_ports() {
        let r = registered(&[
            "https://app.example/cb",
            "http://127.0.0.1/callback",
            "http://[::1]:8080/cb",
        ]);
        assert!(uri_allowed(&r, "https://app.example/cb"));
        assert!(!uri_allowed(&r, "https://app.example/cb/"));
        assert!(!uri_allowed(&r, "https://app.example/cb?x=1"));
        assert!(!uri_allowed(&r, "https://app.example:444/cb"));
        assert!(uri_allowed(&r, "http://127.0.0.1:53127/callback"));
        assert!(uri_allowed(&r, "http://[::1]:9999/cb"));
        assert!(!uri_allowed(&r, "http://127.0.0.1:53127/other"));
        assert!(!uri_allowed(&r, "http://localhost:53127/callback"));
        assert!(!uri_allowed(&r, "https://127.0.0.1:53127/callback"));
    }

    #[test]
    fn uris_must_be_safe() {
        assert!(check_uri("f", "https://app.example/cb", false).is_ok());
        assert!(check_uri("f", "http://127.0.0.1:8000/cb", false).is_ok());
        assert!(check_uri("f", "http://app.example/cb", false).is_err());
        assert!(check_uri("f", "https://app.example/cb#x", false).is_err());
        assert!(check_uri("f", "https://u:p@app.example/cb", false).is_err());
        assert!(check_uri("f", "/relative", false).is_err());
        assert!(check_uri("f", "com.example.app:/cb", true).is_ok());
        assert!(check_uri("f", "com.example.app:/cb", false).is_err());
        assert!(check_uri("f", "javascript:alert(1)", true).is_err());
    }

    #[test]
    fn client_ids_are_plain() {
        assert!(check_client_id("grafana-prod.1").is_ok());
        for bad in ["", "a b", "a/b", "ü", &"x".repeat(101)] {
            assert!(check_client_id(bad).is_err(), "{bad}");
        }
    }
}
