//! Entry points for `cargo fuzz` (see `fuzz/`): every parser that untrusted request
//! bytes reach before any database lookup. None of them may panic, whatever the bytes.
//! The unit tests below replay the committed seed corpus plus bounded random
//! mutations of it on every `cargo test`, so the targets stay exercised without the
//! nightly toolchain the fuzzer itself wants.

use std::sync::OnceLock;

use axum::http::{HeaderMap, HeaderValue, header};
use serde::de::DeserializeOwned;

use crate::config::{SigningAlgorithm, routemap};
use crate::crypto::jwt::{KeyRing, SigningKey, TokenRules, generate};
use crate::crypto::tokens;
use crate::domain::{authn, credentials, validate};
use crate::http::{self, admin, auth, client_ip, extract, me};

/// One ES256 and one HS256 key, made once per process.
fn ring() -> &'static KeyRing {
    static RING: OnceLock<KeyRing> = OnceLock::new();
    RING.get_or_init(|| {
        crate::crypto::jwt::install_provider();
        let rules = TokenRules {
            issuer: "https://fuzz.invalid".into(),
            audience: Some("fuzz".into()),
            leeway_secs: 0,
        };
        let es = generate(SigningAlgorithm::Es256).expect("ES256 key");
        let es = SigningKey::asymmetric(es.kid, es.algorithm, &es.private_der, es.public_jwk, None, &rules)
            .expect("ES256 signer");
        let hs = SigningKey::symmetric("fuzzing-secret-of-32-characters!", SigningAlgorithm::Hs256, &rules);
        KeyRing::new(vec![hs, es]).expect("key ring")
    })
}

/// Headers carrying a credential, and the credential itself as every kind parses it.
pub fn credential(data: &[u8]) {
    if let Ok(value) = HeaderValue::from_bytes(data) {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, value.clone());
        let _ = http::presented_credential(&headers);
        headers.insert("x-api-key", value.clone());
        let _ = http::presented_credential(&headers);
        headers.insert("x-forwarded-for", value.clone());
        headers.insert("forwarded", value);
        for header in [
            client_ip::ForwardingHeader::XForwardedFor,
            client_ip::ForwardingHeader::Forwarded,
        ] {
            let all = client_ip::TrustedProxies {
                nets: vec!["0.0.0.0/0".parse().expect("net"), "::/0".parse().expect("net")],
                header,
            };
            let _ = client_ip::resolve([127, 0, 0, 1].into(), &headers, &all);
        }
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = KeyRing::kid_of(text);
    let _ = ring().verify(text);
    let _ = credentials::parse_api_key(text);
    let _ = tokens::looks_like_token(text);
    let _ = text.strip_prefix(authn::TEMPORARY_PREFIX).map(tokens::looks_like_token);
    if let Ok(map) = routemap::RouteMap::parse("GET /api/{id}/* api:read; * /admin/** admin") {
        let (method, path) = text.split_once(' ').unwrap_or(("GET", text));
        let _ = map.permission_for(method, path);
    }
}

fn body<T: DeserializeOwned>(data: &[u8]) -> Option<T> {
    serde_json::from_slice(data).ok()
}

/// A JSON request body through the same checks the extractor and the domain apply.
pub fn json_body(data: &[u8]) {
    if extract::check_json_shape(data).is_err() {
        return;
    }
    if let Some(r) = body::<auth::RegisterRequest>(data) {
        let (username, email) = (validate::fold(&r.username), validate::fold(&r.email));
        let _ = validate::username(&username);
        let _ = validate::email(&email);
        let _ = r.full_name.as_deref().map(validate::full_name);
        let policy = validate::PasswordPolicy {
            min_length: 8,
            max_length: 128,
            min_score: 2,
        };
        // zxcvbn is costly on long input; the service bounds length before it runs.
        if r.password.len() <= 256 {
            let _ = policy.check("password", &r.password, &username, &email);
        }
    }
    if let Some(r) = body::<auth::LoginRequest>(data) {
        let _ = r.username.or(r.email).map(|l| validate::fold(&l));
    }
    let _ = body::<auth::RefreshRequest>(data).map(|r| tokens::looks_like_token(&r.refresh_token));
    let _ = body::<me::UpdateMeRequest>(data);
    let _ = body::<me::ChangePasswordRequest>(data);
    let _ = body::<admin::CreateUserRequest>(data);
    let _ = body::<admin::UpdateUserRequest>(data);
    if let Some(r) = body::<admin::CreateRoleRequest>(data) {
        let _ = crate::domain::rbac::check_name("name", &r.name);
        let _ = validate::text("description", &r.description, validate::DESCRIPTION_MAX);
    }
    let _ = body::<admin::CheckRequest>(data);
    let _ = body::<crate::http::credentials::CreateApiKeyRequest>(data);
    let _ = body::<crate::http::credentials::CreateTemporaryTokenRequest>(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus(target: &str) -> Vec<Vec<u8>> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus")
            .join(target);
        let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|f| std::fs::read(f.expect("entry").path()).expect("seed"))
            .collect();
        seeds.sort();
        assert!(seeds.len() >= 5, "seed corpus for {target} is missing");
        seeds
    }

    /// A small deterministic generator, so a failure names a reproducible case.
    struct Mutator(u64);

    impl Mutator {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }

        fn mutate(&mut self, seed: &[u8], others: &[Vec<u8>]) -> Vec<u8> {
            let mut out = seed.to_vec();
            for _ in 0..1 + self.below(4) {
                let at = self.below(out.len() + 1);
                match self.below(6) {
                    0 if !out.is_empty() => {
                        let i = at.min(out.len() - 1);
                        out[i] = self.next() as u8;
                    }
                    1 => {
                        let alphabet = b"\"{}[]:,.\\_0\x00\xff";
                        out.insert(at, alphabet[self.below(alphabet.len())]);
                    }
                    2 if !out.is_empty() => {
                        out.remove(at.min(out.len() - 1));
                    }
                    3 => {
                        let other = &others[self.below(others.len())];
                        let from = self.below(other.len());
                        let to = from + self.below(other.len() - from + 1);
                        out.splice(at..at, other[from..to].iter().copied());
                    }
                    4 => out.truncate(at),
                    _ => {
                        let byte = out.get(at.saturating_sub(1)).copied().unwrap_or(b'[');
                        let times = self.below(64);
                        out.splice(at..at, std::iter::repeat_n(byte, times));
                    }
                }
            }
            out
        }
    }

    fn replay(target: &str, run: fn(&[u8]), mutations: usize) {
        let seeds = corpus(target);
        for seed in &seeds {
            run(seed);
        }
        let mut m = Mutator(0x9e37_79b9_7f4a_7c15);
        for _ in 0..mutations {
            let seed = &seeds[m.below(seeds.len())];
            let input = m.mutate(seed, &seeds);
            run(&input);
        }
    }

    #[test]
    fn credential_parsers_survive_the_corpus_and_its_mutations() {
        replay("credential", credential, 20_000);
    }

    #[test]
    fn json_bodies_survive_the_corpus_and_its_mutations() {
        replay("json_body", json_body, 20_000);
    }
}
