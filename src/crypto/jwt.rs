//! JWT signing keys, the JWKS they publish, and signing/verification with the
//! algorithm pinned by the key.
//!
//! A token is verified only with the key its `kid` names and only with that key's
//! algorithm, so `alg: none`, HS256-signed-with-the-public-key and every other
//! algorithm-confusion trick fail before any signature math. Headers such as `jku`
//! and `x5u` are never followed.

use std::collections::HashMap;
use std::sync::Arc;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::SigningAlgorithm;

/// Selects aws-lc-rs as jsonwebtoken's backend for this process (it panics on first
/// use when none is chosen). Safe to call more than once.
pub fn install_provider() {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
}

/// Claims of a Portcullis access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessClaims {
    pub iss: String,
    /// The user id, or the username when `JWT_SUBJECT=username` (then `uid` holds the id).
    pub sub: String,
    /// Absent when `JWT_AUDIENCE=none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// The user id when `sub` is not it: what Portcullis reads back, so a token stays
    /// bound to its account across a rename.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    pub sid: String,
    pub preferred_username: String,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub permissions: Vec<String>,
    #[serde(default)]
    pub amr: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    /// Present (true) only for superusers, who hold every permission, including
    /// ones created after this token was issued.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub superuser: bool,
    /// The application the token was issued to (RFC 9068), when not Portcullis's own
    /// login; for a service account (client_credentials) it equals `sub`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The scopes granted to that application, space-separated (RFC 9068).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// That application is the operator's own (its registration says so, which
    /// takes an administrator): its tokens act for the person as a login's do.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub first_party: bool,
}

/// OpenID Connect's `at_hash` of `access_token` for an ID token signed with `alg`:
/// the left half of the token's hash under the signature's hash function, base64url
/// (Core 3.1.3.6; SHA-512 for Ed25519).
pub fn at_hash(alg: Algorithm, access_token: &str) -> String {
    use sha2::Digest;
    let digest = match alg {
        Algorithm::RS384 | Algorithm::ES384 | Algorithm::PS384 => sha2::Sha384::digest(access_token).to_vec(),
        Algorithm::RS512 | Algorithm::PS512 | Algorithm::EdDSA => sha2::Sha512::digest(access_token).to_vec(),
        _ => sha2::Sha256::digest(access_token).to_vec(),
    };
    URL_SAFE_NO_PAD.encode(&digest[..digest.len() / 2])
}

/// Why a token was refused; the text is safe to show the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is malformed")]
    Malformed,
    #[error("token type is not accepted")]
    WrongType,
    #[error("token has no key id")]
    MissingKid,
    #[error("token was signed with an unknown key")]
    UnknownKid,
    #[error("token algorithm does not match its key")]
    WrongAlgorithm,
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token issuer is not accepted")]
    WrongIssuer,
    #[error("token audience is not accepted")]
    WrongAudience,
    #[error("token claims are invalid")]
    InvalidClaims,
    #[error("token subject is not an active account")]
    UnknownSubject,
    #[error("token lives longer than accepted")]
    TooLongLived,
    #[error("token was issued before the account's sessions ended")]
    IssuedBeforeSessionsEnded,
}

/// A private key parsed once, when the key is loaded. jsonwebtoken's `encode` parses
/// (and for EC, re-validates) the private key on every call, which the benchmark's
/// profile showed costing three quarters as much as the ES256 signature itself.
enum Signer {
    Ecdsa(signature::EcdsaKeyPair),
    Ed25519(signature::Ed25519KeyPair),
    Rsa(signature::RsaKeyPair),
    /// Boxed: the key schedule is over a kilobyte, the others are pointers.
    Hmac(Box<aws_lc_rs::hmac::Key>),
}

impl Signer {
    fn sign(&self, message: &[u8]) -> anyhow::Result<Vec<u8>> {
        let failed = |_| anyhow::anyhow!("signing failed");
        Ok(match self {
            Self::Ecdsa(pair) => pair
                .sign(&SystemRandom::new(), message)
                .map_err(failed)?
                .as_ref()
                .to_vec(),
            Self::Ed25519(pair) => pair.sign(message).as_ref().to_vec(),
            Self::Rsa(pair) => {
                let mut sig = vec![0u8; pair.public_modulus_len()];
                pair.sign(&signature::RSA_PKCS1_SHA256, &SystemRandom::new(), message, &mut sig)
                    .map_err(failed)?;
                sig
            }
            Self::Hmac(key) => aws_lc_rs::hmac::sign(key, message).as_ref().to_vec(),
        })
    }
}

/// One key: what signs (when it is the current key) and what verifies.
pub struct SigningKey {
    pub kid: String,
    pub algorithm: SigningAlgorithm,
    signer: Signer,
    /// The token header this key signs under, already base64url-encoded.
    header: String,
    decoding: DecodingKey,
    validation: Validation,
    /// Public JWK, absent for symmetric keys (never published).
    pub public_jwk: Option<serde_json::Value>,
    pub retired_at: Option<DateTime<Utc>>,
}

/// Newly generated key material, to be sealed and stored.
pub struct GeneratedKey {
    pub kid: String,
    pub algorithm: SigningAlgorithm,
    /// DER the signer needs: PKCS#8 for EC and Ed25519, PKCS#1 for RSA.
    pub private_der: Vec<u8>,
    pub public_jwk: serde_json::Value,
}

/// The base64url JSON header of tokens `kid` signs with `algorithm`.
fn encoded_header(algorithm: SigningAlgorithm, kid: &str) -> String {
    let mut header = Header::new(algorithm.jwt());
    header.kid = Some(kid.to_string());
    header.typ = Some("JWT".into());
    // A header of three strings always serialises.
    b64(&serde_json::to_vec(&header).unwrap_or_default())
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A fresh key id: 96 random bits.
fn new_kid() -> String {
    let mut bytes = [0u8; 12];
    rand::fill(&mut bytes);
    b64(&bytes)
}

/// Generates an asymmetric key pair for `algorithm`.
pub fn generate(algorithm: SigningAlgorithm) -> anyhow::Result<GeneratedKey> {
    let kid = new_kid();
    let rng = SystemRandom::new();
    let (private_der, mut jwk) = match algorithm {
        SigningAlgorithm::Es256 => {
            let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
            let pkcs8 = signature::EcdsaKeyPair::generate_pkcs8(alg, &rng)
                .map_err(|_| anyhow::anyhow!("EC key generation failed"))?;
            let pair =
                signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref()).map_err(|e| anyhow::anyhow!("EC key: {e}"))?;
            let point = pair.public_key().as_ref();
            anyhow::ensure!(point.len() == 65 && point[0] == 4, "unexpected EC public key encoding");
            let jwk =
                serde_json::json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65])});
            (pkcs8.as_ref().to_vec(), jwk)
        }
        SigningAlgorithm::EdDsa => {
            let pkcs8 = signature::Ed25519KeyPair::generate_pkcs8(&rng)
                .map_err(|_| anyhow::anyhow!("Ed25519 key generation failed"))?;
            let pair = signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
                .map_err(|e| anyhow::anyhow!("Ed25519 key: {e}"))?;
            let jwk = serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref())});
            (pkcs8.as_ref().to_vec(), jwk)
        }
        SigningAlgorithm::Rs256 => {
            let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .map_err(|_| anyhow::anyhow!("RSA key generation failed"))?;
            let pkcs8 = pair.as_der().map_err(|_| anyhow::anyhow!("RSA key encoding failed"))?;
            let pkcs1 =
                pkcs1_from_pkcs8(pkcs8.as_ref()).ok_or_else(|| anyhow::anyhow!("unexpected RSA PKCS#8 layout"))?;
            let public = pair.public_key();
            let jwk = serde_json::json!({
                "kty": "RSA",
                "n": b64(public.modulus().big_endian_without_leading_zero()),
                "e": b64(public.exponent().big_endian_without_leading_zero()),
            });
            (pkcs1, jwk)
        }
        other => anyhow::bail!(
            "{} keys are configured from JWT_SECRET_KEY, not generated",
            other.name()
        ),
    };
    jwk["kid"] = kid.clone().into();
    jwk["alg"] = algorithm.name().into();
    jwk["use"] = "sig".into();
    Ok(GeneratedKey {
        kid,
        algorithm,
        private_der,
        public_jwk: jwk,
    })
}

/// Reads one DER length at `pos`, returning (length, position after it).
fn der_len(der: &[u8], pos: usize) -> Option<(usize, usize)> {
    let first = *der.get(pos)?;
    if first < 0x80 {
        return Some((first as usize, pos + 1));
    }
    let n = (first & 0x7f) as usize;
    if n == 0 || n > 4 {
        return None;
    }
    let mut len = 0usize;
    for i in 0..n {
        len = (len << 8) | *der.get(pos + 1 + i)? as usize;
    }
    Some((len, pos + 1 + n))
}

/// The RSAPrivateKey inside a PKCS#8 PrivateKeyInfo:
/// SEQUENCE { INTEGER version, SEQUENCE algorithm, OCTET STRING privateKey, ... }.
fn pkcs1_from_pkcs8(der: &[u8]) -> Option<Vec<u8>> {
    let mut pos = 0;
    (*der.first()? == 0x30).then_some(())?;
    let (_, p) = der_len(der, pos + 1)?;
    pos = p;
    for expected_tag in [0x02u8, 0x30] {
        (*der.get(pos)? == expected_tag).then_some(())?;
        let (len, p) = der_len(der, pos + 1)?;
        pos = p + len;
    }
    (*der.get(pos)? == 0x04).then_some(())?;
    let (len, p) = der_len(der, pos + 1)?;
    der.get(p..p + len).map(<[u8]>::to_vec)
}

/// What a token must carry and hold besides its signature. Without a configured
/// audience a token carrying any `aud` is refused (it was meant for someone else).
fn validation(algorithm: Algorithm, rules: &TokenRules) -> Validation {
    let mut v = Validation::new(algorithm);
    v.set_issuer(&[&rules.issuer]);
    match &rules.audience {
        Some(audience) => {
            v.set_audience(&[audience]);
            v.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
        }
        None => v.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "sub"]),
    }
    v.validate_nbf = true;
    v.leeway = rules.leeway_secs;
    v
}

/// The claims read from a token without `kid` (minted by the replaced service).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct UnkeyedClaims {
    pub sub: String,
    pub exp: i64,
    /// Absent from what the replaced service wrote; such a token counts as issued
    /// before any moment the account's sessions ended (see `domain::authn`).
    #[serde(default)]
    pub iat: Option<i64>,
}

/// Longest `sub` of a token without `kid` looked up (an e-mail-sized username or a
/// user id fits well within it).
const MAX_UNKEYED_SUBJECT: usize = 320;

/// The replaced service's HS256 secret, for tokens without `kid`: only `sub` and
/// `exp` are required (that service wrote no more); `nbf`, `iat`, `iss` and `aud` are
/// checked when present (`iat` not in the future, `iss` ours, `aud` ours, or absent
/// when we have none). `exp` may be at most `max_lifetime` (plus leeway) away.
struct UnkeyedKey {
    decoding: DecodingKey,
    validation: Validation,
    max_lifetime_secs: i64,
}

impl UnkeyedKey {
    fn new(secret: &str, rules: &TokenRules, max_lifetime: std::time::Duration) -> Self {
        let mut validation = validation(Algorithm::HS256, rules);
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
            max_lifetime_secs: i64::try_from(max_lifetime.as_secs()).unwrap_or(i64::MAX),
        }
    }

    /// What the signature check leaves: the lifetime left, `iat`, and a `sub` fit to
    /// look up (no control characters, which a database may refuse outright).
    fn check(&self, claims: UnkeyedClaims) -> Result<UnkeyedClaims, TokenError> {
        let now = Utc::now().timestamp();
        let leeway = i64::try_from(self.validation.leeway).unwrap_or(0);
        if claims.exp.saturating_sub(now) > self.max_lifetime_secs.saturating_add(leeway) {
            return Err(TokenError::TooLongLived);
        }
        if claims.iat.is_some_and(|iat| iat > now.saturating_add(leeway)) {
            return Err(TokenError::NotYetValid);
        }
        if claims.sub.is_empty() || claims.sub.len() > MAX_UNKEYED_SUBJECT || claims.sub.chars().any(char::is_control) {
            return Err(TokenError::InvalidClaims);
        }
        Ok(claims)
    }
}

/// What a key ring checks besides the signature.
#[derive(Debug, Clone)]
pub struct TokenRules {
    pub issuer: String,
    pub audience: Option<String>,
    pub leeway_secs: u64,
}

impl SigningKey {
    /// Rebuilds a stored asymmetric key from its signer DER and public JWK.
    pub fn asymmetric(
        kid: String,
        algorithm: SigningAlgorithm,
        private_der: &[u8],
        public_jwk: serde_json::Value,
        retired_at: Option<DateTime<Utc>>,
        rules: &TokenRules,
    ) -> anyhow::Result<Self> {
        let text = |k: &str| {
            public_jwk
                .get(k)
                .and_then(|v| v.as_str())
                .ok_or_else(|| anyhow::anyhow!("key {kid}: public JWK lacks {k}"))
        };
        let unreadable = |_| anyhow::anyhow!("key {kid}: the private key does not parse");
        let (signer, decoding) = match algorithm {
            SigningAlgorithm::Es256 => (
                Signer::Ecdsa(
                    signature::EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, private_der)
                        .map_err(unreadable)?,
                ),
                DecodingKey::from_ec_components(text("x")?, text("y")?)?,
            ),
            SigningAlgorithm::EdDsa => (
                Signer::Ed25519(signature::Ed25519KeyPair::from_pkcs8(private_der).map_err(unreadable)?),
                DecodingKey::from_ed_components(text("x")?)?,
            ),
            SigningAlgorithm::Rs256 => (
                Signer::Rsa(signature::RsaKeyPair::from_der(private_der).map_err(unreadable)?),
                DecodingKey::from_rsa_components(text("n")?, text("e")?)?,
            ),
            other => anyhow::bail!("key {kid}: {} is not an asymmetric algorithm", other.name()),
        };
        Ok(Self {
            validation: validation(algorithm.jwt(), rules),
            header: encoded_header(algorithm, &kid),
            kid,
            algorithm,
            signer,
            decoding,
            public_jwk: Some(public_jwk),
            retired_at,
        })
    }

    /// The shared-secret key used when `JWT_ALGORITHM` is HS*. Its kid is derived from
    /// the secret so every instance agrees on it, and reveals nothing usable about it.
    pub fn symmetric(secret: &str, algorithm: SigningAlgorithm, rules: &TokenRules) -> Self {
        use sha2::{Digest, Sha256};
        let kid = format!(
            "hs-{}",
            &b64(&Sha256::digest(
                [b"portcullis-kid:".as_slice(), secret.as_bytes()].concat()
            ))[..12]
        );
        let hmac = match algorithm {
            SigningAlgorithm::Hs384 => aws_lc_rs::hmac::HMAC_SHA384,
            SigningAlgorithm::Hs512 => aws_lc_rs::hmac::HMAC_SHA512,
            _ => aws_lc_rs::hmac::HMAC_SHA256,
        };
        Self {
            validation: validation(algorithm.jwt(), rules),
            header: encoded_header(algorithm, &kid),
            kid,
            algorithm,
            signer: Signer::Hmac(Box::new(aws_lc_rs::hmac::Key::new(hmac, secret.as_bytes()))),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            public_jwk: None,
            retired_at: None,
        }
    }
}

/// The keys one instance knows: the current signer and every key still verifying.
pub struct KeyRing {
    current: Arc<SigningKey>,
    by_kid: HashMap<String, Arc<SigningKey>>,
    jwks: bytes::Bytes,
    /// Set by `JWT_ACCEPT_UNKEYED`: what verifies tokens without `kid`.
    unkeyed: Option<UnkeyedKey>,
}

impl KeyRing {
    /// `keys` in creation order; the newest unretired key signs.
    pub fn new(keys: Vec<SigningKey>) -> anyhow::Result<Self> {
        let keys: Vec<Arc<SigningKey>> = keys.into_iter().map(Arc::new).collect();
        let current = keys
            .iter()
            .rev()
            .find(|k| k.retired_at.is_none())
            .or_else(|| keys.last())
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no signing key"))?;
        let published: Vec<&serde_json::Value> = keys.iter().rev().filter_map(|k| k.public_jwk.as_ref()).collect();
        let jwks = serde_json::to_vec(&serde_json::json!({ "keys": published }))?.into();
        let by_kid = keys.iter().map(|k| (k.kid.clone(), k.clone())).collect();
        Ok(Self {
            current,
            by_kid,
            jwks,
            unkeyed: None,
        })
    }

    /// Also accepts tokens without `kid` signed HS256 with `secret` whose `exp` is at
    /// most `max_lifetime` away (see `verify_unkeyed`).
    pub fn accepting_unkeyed(mut self, secret: &str, rules: &TokenRules, max_lifetime: std::time::Duration) -> Self {
        self.unkeyed = Some(UnkeyedKey::new(secret, rules, max_lifetime));
        self
    }

    pub fn accepts_unkeyed(&self) -> bool {
        self.unkeyed.is_some()
    }

    pub fn current(&self) -> &SigningKey {
        &self.current
    }

    /// The JWKS document, serialized once per ring.
    pub fn jwks(&self) -> bytes::Bytes {
        self.jwks.clone()
    }

    pub fn knows(&self, kid: &str) -> bool {
        self.by_kid.contains_key(kid)
    }

    pub fn algorithms(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = self.by_kid.values().map(|k| k.algorithm.name()).collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// Signs `claims` with the current key: `header.claims.signature`, each part
    /// base64url without padding (RFC 7515 compact serialisation).
    pub fn sign<T: Serialize>(&self, claims: &T) -> anyhow::Result<String> {
        signed(&self.current, &self.current.header, claims)
    }

    /// The key id a token names, if its header parses and its type is acceptable.
    pub fn kid_of(token: &str) -> Result<String, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if let Some(typ) = &header.typ
            && !typ.eq_ignore_ascii_case("JWT")
            && !typ.eq_ignore_ascii_case("at+jwt")
        {
            return Err(TokenError::WrongType);
        }
        header.kid.ok_or(TokenError::MissingKid)
    }

    /// Verifies signature, algorithm, exp/nbf (with leeway), iss and aud.
    pub fn verify(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let kid = Self::kid_of(token)?;
        let key = self.by_kid.get(&kid).ok_or(TokenError::UnknownKid)?;
        decode(token, &key.decoding, &key.validation)
    }

    /// Verifies a token without `kid` against the replaced service's secret, HS256
    /// only (`alg` pinned as for keyed tokens), when `JWT_ACCEPT_UNKEYED` is on;
    /// otherwise such a token is refused as `MissingKid`.
    pub fn verify_unkeyed(&self, token: &str) -> Result<UnkeyedClaims, TokenError> {
        match (Self::kid_of(token), &self.unkeyed) {
            (Err(TokenError::MissingKid), Some(key)) => key.check(decode(token, &key.decoding, &key.validation)?),
            (Err(e), _) => Err(e),
            (Ok(_), _) => Err(TokenError::InvalidClaims),
        }
    }
}

/// Tokens other than access tokens, signed with the same keys: back-channel logout
/// tokens (their own `typ`), and reading back the provider's own ID tokens.
impl KeyRing {
    /// Signs `claims` with the current key under a header of type `typ`.
    pub fn sign_typed<T: Serialize>(&self, typ: &str, claims: &T) -> anyhow::Result<String> {
        let key = &self.current;
        let mut header = Header::new(key.algorithm.jwt());
        header.kid = Some(key.kid.clone());
        header.typ = Some(typ.into());
        signed(key, &b64(&serde_json::to_vec(&header)?), claims)
    }

    /// The claims of a token one of the ring's keys signed (its algorithm pinned),
    /// checking the signature only: the caller judges `iss`, `aud` and the times (an
    /// `id_token_hint` may have expired, and is still a proof of who it named).
    pub fn verify_signature<T: serde::de::DeserializeOwned>(&self, token: &str) -> Result<T, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        let kid = header.kid.ok_or(TokenError::MissingKid)?;
        let key = self.by_kid.get(&kid).ok_or(TokenError::UnknownKid)?;
        let mut v = Validation::new(key.algorithm.jwt());
        v.validate_exp = false;
        v.validate_nbf = false;
        v.validate_aud = false;
        v.set_required_spec_claims::<&str>(&[]);
        decode(token, &key.decoding, &v)
    }
}

/// `header.claims.signature` under `key`, each part base64url without padding (RFC
/// 7515 compact serialisation); `header` is already encoded.
fn signed<T: Serialize>(key: &SigningKey, header: &str, claims: &T) -> anyhow::Result<String> {
    let mut token = String::with_capacity(512);
    token.push_str(header);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(serde_json::to_vec(claims)?, &mut token);
    let signature = key.signer.sign(token.as_bytes())?;
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, &mut token);
    Ok(token)
}

fn decode<T: serde::de::DeserializeOwned>(
    token: &str,
    key: &DecodingKey,
    validation: &Validation,
) -> Result<T, TokenError> {
    jsonwebtoken::decode::<T>(token, key, validation)
        .map(|data| data.claims)
        .map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::InvalidSignature => TokenError::BadSignature,
                K::InvalidAlgorithm | K::InvalidAlgorithmName => TokenError::WrongAlgorithm,
                K::ExpiredSignature => TokenError::Expired,
                K::ImmatureSignature => TokenError::NotYetValid,
                K::InvalidIssuer => TokenError::WrongIssuer,
                K::InvalidAudience => TokenError::WrongAudience,
                K::MissingRequiredClaim(_) | K::Json(_) | K::InvalidClaimFormat(_) => TokenError::InvalidClaims,
                _ => TokenError::Malformed,
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> TokenRules {
        TokenRules {
            issuer: "https://id.test".into(),
            audience: Some("aud".into()),
            leeway_secs: 0,
        }
    }

    fn claims(exp_offset: i64) -> AccessClaims {
        let now = Utc::now().timestamp();
        AccessClaims {
            iss: "https://id.test".into(),
            sub: "u1".into(),
            aud: Some("aud".into()),
            uid: None,
            exp: now + exp_offset,
            iat: now,
            nbf: now,
            jti: "j".into(),
            sid: "s".into(),
            preferred_username: "alice".into(),
            roles: vec![],
            permissions: vec![],
            amr: vec!["pwd".into()],
            auth_time: None,
            superuser: false,
            client_id: None,
            scope: None,
            first_party: false,
        }
    }

    fn ring(alg: SigningAlgorithm) -> KeyRing {
        ring_with(alg, &rules())
    }

    fn ring_with(alg: SigningAlgorithm, rules: &TokenRules) -> KeyRing {
        let g = generate(alg).unwrap();
        let k = SigningKey::asymmetric(g.kid, alg, &g.private_der, g.public_jwk, None, rules).unwrap();
        KeyRing::new(vec![k]).unwrap()
    }

    #[test]
    fn every_asymmetric_algorithm_round_trips() {
        for alg in [
            SigningAlgorithm::Es256,
            SigningAlgorithm::EdDsa,
            SigningAlgorithm::Rs256,
        ] {
            let r = ring(alg);
            let t = r.sign(&claims(60)).unwrap();
            assert_eq!(r.verify(&t).unwrap().preferred_username, "alice", "{alg:?}");
            let jwks: serde_json::Value = serde_json::from_slice(&r.jwks()).unwrap();
            assert_eq!(jwks["keys"][0]["alg"], alg.name());
            assert!(jwks["keys"][0].get("d").is_none(), "private part must not be published");
        }
    }

    #[test]
    fn expired_foreign_and_tampered_tokens_fail() {
        let r = ring(SigningAlgorithm::Es256);
        assert_eq!(r.verify(&r.sign(&claims(-10)).unwrap()), Err(TokenError::Expired));
        let other = ring(SigningAlgorithm::Es256);
        assert_eq!(r.verify(&other.sign(&claims(60)).unwrap()), Err(TokenError::UnknownKid));
        let t = r.sign(&claims(60)).unwrap();
        let mut parts: Vec<&str> = t.split('.').collect();
        let forged = b64(br#"{"sub":"admin","iss":"https://id.test","aud":"aud","exp":9999999999,"iat":0,"nbf":0,"jti":"j","sid":"s","preferred_username":"admin"}"#);
        parts[1] = &forged;
        assert_eq!(r.verify(&parts.join(".")), Err(TokenError::BadSignature));
    }

    #[test]
    fn hs256_with_the_public_key_is_refused() {
        let r = ring(SigningAlgorithm::Es256);
        let kid = r.current().kid.clone();
        let jwk = r.current().public_jwk.clone().unwrap();
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some(kid);
        let t = jsonwebtoken::encode(
            &h,
            &claims(60),
            &jsonwebtoken::EncodingKey::from_secret(jwk.to_string().as_bytes()),
        )
        .unwrap();
        assert_eq!(r.verify(&t), Err(TokenError::WrongAlgorithm));
    }

    /// Tokens signed with the parsed keys are what jsonwebtoken itself would make:
    /// the same header and claims bytes, and a signature its own verifier accepts.
    #[test]
    fn signed_tokens_match_what_jsonwebtoken_makes_and_accepts() {
        let symmetric = |alg| {
            KeyRing::new(vec![SigningKey::symmetric(
                "a-shared-secret-of-some-length",
                alg,
                &rules(),
            )])
            .unwrap()
        };
        let rings = [
            (SigningAlgorithm::Es256, ring(SigningAlgorithm::Es256)),
            (SigningAlgorithm::EdDsa, ring(SigningAlgorithm::EdDsa)),
            (SigningAlgorithm::Rs256, ring(SigningAlgorithm::Rs256)),
            (SigningAlgorithm::Hs256, symmetric(SigningAlgorithm::Hs256)),
            (SigningAlgorithm::Hs384, symmetric(SigningAlgorithm::Hs384)),
            (SigningAlgorithm::Hs512, symmetric(SigningAlgorithm::Hs512)),
        ];
        let c = claims(60);
        for (alg, r) in rings {
            let key = r.current();
            let token = r.sign(&c).unwrap();
            let mut header = Header::new(alg.jwt());
            header.kid = Some(key.kid.clone());
            header.typ = Some("JWT".into());
            let expected = format!(
                "{}.{}.",
                b64(&serde_json::to_vec(&header).unwrap()),
                b64(&serde_json::to_vec(&c).unwrap())
            );
            assert!(token.starts_with(&expected), "{alg:?}: {token}");
            let data = jsonwebtoken::decode::<AccessClaims>(&token, &key.decoding, &key.validation).unwrap();
            assert_eq!(data.claims, c, "{alg:?}");
            assert_eq!(r.verify(&token).unwrap(), c, "{alg:?}");
        }
    }

    /// `JWT_AUDIENCE=none`: tokens carry no `aud`, and one that carries any is refused.
    #[test]
    fn without_an_audience_tokens_carry_none_and_one_with_an_audience_fails() {
        let rules = TokenRules {
            audience: None,
            ..rules()
        };
        let r = ring_with(SigningAlgorithm::Es256, &rules);
        let plain = AccessClaims {
            aud: None,
            ..claims(60)
        };
        let t = r.sign(&plain).unwrap();
        assert!(jwt_claims(&t).get("aud").is_none(), "{t}");
        assert_eq!(r.verify(&t).unwrap(), plain);
        assert_eq!(r.verify(&r.sign(&claims(60)).unwrap()), Err(TokenError::WrongAudience));
    }

    fn jwt_claims(token: &str) -> serde_json::Value {
        let part = token.split('.').nth(1).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    const OLD_SECRET: &str = "the-replaced-service-secret-key";

    fn unkeyed(alg: Algorithm, secret: &str, claims: serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::new(alg),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    /// Tokens without `kid` verify only with `accepting_unkeyed`, only HS256 with that
    /// secret, and must carry `sub` and `exp`; `iss`/`aud`/`iat` are checked when
    /// present; `exp` at most the longest accepted lifetime away; `sub` without
    /// control characters.
    #[test]
    fn unkeyed_tokens_need_the_setting_the_secret_sub_and_exp() {
        let exp = Utc::now().timestamp() + 60;
        let good = unkeyed(
            Algorithm::HS256,
            OLD_SECRET,
            serde_json::json!({"sub": "alice", "exp": exp}),
        );
        let plain = ring(SigningAlgorithm::Es256);
        assert_eq!(plain.verify(&good), Err(TokenError::MissingKid));
        assert_eq!(plain.verify_unkeyed(&good), Err(TokenError::MissingKid));
        let r =
            ring(SigningAlgorithm::Es256).accepting_unkeyed(OLD_SECRET, &rules(), std::time::Duration::from_secs(3600));
        assert_eq!(r.verify(&good), Err(TokenError::MissingKid));
        assert_eq!(
            r.verify_unkeyed(&good),
            Ok(UnkeyedClaims {
                sub: "alice".into(),
                exp,
                iat: None,
            })
        );
        let refused = [
            (
                unkeyed(
                    Algorithm::HS256,
                    "another-secret-entirely",
                    serde_json::json!({"sub": "alice", "exp": exp}),
                ),
                TokenError::BadSignature,
            ),
            (
                unkeyed(
                    Algorithm::HS512,
                    OLD_SECRET,
                    serde_json::json!({"sub": "alice", "exp": exp}),
                ),
                TokenError::WrongAlgorithm,
            ),
            (
                unkeyed(Algorithm::HS256, OLD_SECRET, serde_json::json!({"sub": "alice"})),
                TokenError::InvalidClaims,
            ),
            (
                unkeyed(Algorithm::HS256, OLD_SECRET, serde_json::json!({"exp": exp})),
                TokenError::InvalidClaims,
            ),
            (
                unkeyed(
                    Algorithm::HS256,
                    OLD_SECRET,
                    serde_json::json!({"sub": "alice", "exp": exp - 120}),
                ),
                TokenError::Expired,
            ),
            (
                unkeyed(
                    Algorithm::HS256,
                    OLD_SECRET,
                    serde_json::json!({"sub": "alice", "exp": exp, "iss": "elsewhere"}),
                ),
                TokenError::WrongIssuer,
            ),
            (
                unkeyed(
                    Algorithm::HS256,
                    OLD_SECRET,
                    serde_json::json!({"sub": "alice", "exp": exp, "aud": "other"}),
                ),
                TokenError::WrongAudience,
            ),
            (
                unkeyed(
                    Algorithm::HS256,
                    OLD_SECRET,
                    serde_json::json!({"sub": "alice", "exp": exp + 3600}),
                ),
                TokenError::TooLongLived,
            ),
            (
                unkeyed(
                    Algorithm::HS256,
                    OLD_SECRET,
                    serde_json::json!({"sub": "alice", "exp": exp, "iat": exp}),
                ),
                TokenError::NotYetValid,
            ),
            (
                unkeyed(
                    Algorithm::HS256,
                    OLD_SECRET,
                    serde_json::json!({"sub": "alice", "exp": exp, "iat": "yesterday"}),
                ),
                TokenError::InvalidClaims,
            ),
            (
                unkeyed(
                    Algorithm::HS256,
                    OLD_SECRET,
                    serde_json::json!({"sub": "ali\u{0}ce", "exp": exp}),
                ),
                TokenError::InvalidClaims,
            ),
            (
                unkeyed(Algorithm::HS256, OLD_SECRET, serde_json::json!({"sub": "", "exp": exp})),
                TokenError::InvalidClaims,
            ),
        ];
        for (token, expected) in refused {
            assert_eq!(r.verify_unkeyed(&token), Err(expected));
        }
        let ours = unkeyed(
            Algorithm::HS256,
            OLD_SECRET,
            serde_json::json!({"sub": "alice", "exp": exp, "iss": "https://id.test", "aud": "aud"}),
        );
        assert!(r.verify_unkeyed(&ours).is_ok());
    }

    #[test]
    fn pkcs1_extraction_rejects_garbage() {
        assert!(pkcs1_from_pkcs8(&[]).is_none());
        assert!(pkcs1_from_pkcs8(&[0x30, 0x03, 0x02, 0x01, 0x00]).is_none());
    }
}
