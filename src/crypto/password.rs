//! Password hashing: argon2id for new hashes; passlib's bcrypt and argon2 hashes verify
//! so imported users can log in and are re-hashed on success.
//!
//! Hashing is deliberately slow, so it runs on the fixed hashing pool (see
//! `hashpool`): a login storm queues there instead of occupying the async workers
//! that serve token checks, and each hashing thread reuses its argon2 work area.

use std::sync::{Arc, RwLock};

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use subtle::ConstantTimeEq;

use super::hashpool::HashPool;
use crate::config::HashParams;
use crate::error::{AppError, AppResult};

/// The outcome of checking a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub ok: bool,
    /// The stored hash is legacy or weaker than the configured parameters.
    pub needs_rehash: bool,
}

#[derive(Clone)]
pub struct PasswordHasher {
    params: HashParams,
    pool: HashPool,
    /// A real hash at current parameters, verified when the user does not exist so
    /// both answers cost the same.
    dummy_hash: Arc<str>,
    /// While imported bcrypt hashes are stored: a bcrypt dummy at the highest cost
    /// among them (see `expect_bcrypt`).
    bcrypt_dummy: Arc<RwLock<BcryptDummy>>,
}

/// A bcrypt hash of a dummy password, and its cost.
type BcryptDummy = Option<(u32, Arc<str>)>;

/// The bcrypt cost a hash is verified at: that of a bcrypt hash (`$2b$12$...`), or of
/// passlib's `bcrypt_sha256` (`$bcrypt-sha256$v=2,t=2b,r=12$...`: an HMAC, then
/// bcrypt at that cost). None for any other kind of hash (or prefix of one).
pub fn bcrypt_cost(hash: &str) -> Option<u32> {
    let cost = if let Some(rest) = hash.strip_prefix("$bcrypt-sha256$") {
        let settings = rest.split('$').next()?;
        let mut fields = settings.split(',').filter_map(|kv| kv.split_once('='));
        if !fields.clone().any(|kv| kv == ("v", "2")) {
            return None;
        }
        fields.find(|(k, _)| *k == "r")?.1.parse().ok()?
    } else {
        let rest = ["$2a$", "$2b$", "$2y$"].iter().find_map(|p| hash.strip_prefix(p))?;
        rest.get(..2)?.parse().ok()?
    };
    Some(cost).filter(|c| (4..=31).contains(c))
}

const OUTPUT_LEN: usize = 32;

fn argon2_params(p: HashParams) -> Result<Params, argon2::Error> {
    Params::new(p.memory_kib, p.iterations, p.parallelism, Some(OUTPUT_LEN))
}

/// Runs argon2 in `memory`, growing it to the size `params` need.
fn argon2_into(
    argon: &Argon2<'_>,
    params: &Params,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
    memory: &mut Vec<Block>,
) -> Result<(), argon2::Error> {
    let blocks = params.block_count();
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    argon.hash_password_into_with_memory(password, salt, out, &mut memory[..blocks])
}

/// Hashes with argon2id at `p` and a fresh salt, as a PHC string.
pub fn hash_blocking(password: &str, p: HashParams) -> anyhow::Result<String> {
    hash_with(password, p, &mut Vec::new())
}

/// As `hash_blocking`, in a caller-owned work area.
pub fn hash_with(password: &str, p: HashParams, memory: &mut Vec<Block>) -> anyhow::Result<String> {
    let params = argon2_params(p).map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let salt = Salt::generate();
    let mut out = [0u8; OUTPUT_LEN];
    argon2_into(&argon, &params, password.as_bytes(), &salt, &mut out, memory)
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
    let phc = PasswordHash {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| anyhow::anyhow!("argon2 params: {e}"))?,
        salt: Some(salt),
        hash: Some(Output::new(&out).map_err(|e| anyhow::anyhow!("argon2 output: {e}"))?),
    };
    Ok(phc.to_string())
}

/// Checks a password against any supported stored hash. Unparseable hashes simply
/// do not verify.
pub fn verify_blocking(password: &str, stored: &str, current: HashParams) -> Verified {
    verify_with(password, stored, current, &mut Vec::new())
}

/// As `verify_blocking`, in a caller-owned work area.
pub fn verify_with(password: &str, stored: &str, current: HashParams, memory: &mut Vec<Block>) -> Verified {
    if stored.starts_with("$argon2") {
        verify_argon2(password, stored, current, memory)
    } else if stored.starts_with("$2a$") || stored.starts_with("$2b$") || stored.starts_with("$2y$") {
        Verified {
            ok: bcrypt::verify(password, stored).unwrap_or(false),
            needs_rehash: true,
        }
    } else if let Some(rest) = stored.strip_prefix("$bcrypt-sha256$") {
        Verified {
            ok: verify_passlib_bcrypt_sha256(password, rest),
            needs_rehash: true,
        }
    } else {
        Verified {
            ok: false,
            needs_rehash: false,
        }
    }
}

fn verify_argon2(password: &str, stored: &str, current: HashParams, memory: &mut Vec<Block>) -> Verified {
    let fail = Verified {
        ok: false,
        needs_rehash: false,
    };
    let Ok(phc) = PasswordHash::new(stored) else {
        return fail;
    };
    let (Some(salt), Some(expected)) = (&phc.salt, &phc.hash) else {
        return fail;
    };
    let Ok(algorithm) = Algorithm::try_from(phc.algorithm.as_str()) else {
        return fail;
    };
    let version = phc
        .version
        .and_then(|v| Version::try_from(v).ok())
        .unwrap_or(Version::V0x13);
    let Ok(base) = Params::try_from(&phc) else { return fail };
    // Stored hashes may have any output length (passlib uses 16 or 32 bytes).
    let Ok(params) = Params::new(base.m_cost(), base.t_cost(), base.p_cost(), Some(expected.len())) else {
        return fail;
    };
    let argon = Argon2::new(algorithm, version, params.clone());
    let mut out = vec![0u8; expected.len()];
    if argon2_into(&argon, &params, password.as_bytes(), salt, &mut out, memory).is_err() {
        return fail;
    }
    let ok: bool = out.as_slice().ct_eq(expected.as_bytes()).into();
    let at_current = algorithm == Algorithm::Argon2id
        && version == Version::V0x13
        && params.m_cost() == current.memory_kib
        && params.t_cost() == current.iterations
        && params.p_cost() == current.parallelism
        && expected.len() == OUTPUT_LEN;
    Verified {
        ok,
        needs_rehash: !at_current,
    }
}

/// passlib's `bcrypt_sha256` (v2): bcrypt over base64(HMAC-SHA256(key = salt, password)).
/// `rest` is `v=2,t=2b,r=12$<22-char salt>$<31-char digest>`.
fn verify_passlib_bcrypt_sha256(password: &str, rest: &str) -> bool {
    use base64::Engine;
    use hmac::{Hmac, KeyInit, Mac};
    let mut parts = rest.split('$');
    let (Some(settings), Some(salt), Some(digest)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let mut ident = "2b";
    let mut rounds = "12";
    let mut version = "";
    for kv in settings.split(',') {
        match kv.split_once('=') {
            Some(("v", v)) => version = v,
            Some(("t", t)) => ident = t,
            Some(("r", r)) => rounds = r,
            _ => return false,
        }
    }
    if version != "2" {
        return false;
    }
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(salt.as_bytes()) else {
        return false;
    };
    mac.update(password.as_bytes());
    let key = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let bcrypt_hash = format!("${ident}${rounds:0>2}${salt}{digest}");
    bcrypt::verify(key, &bcrypt_hash).unwrap_or(false)
}

impl PasswordHasher {
    /// Starts the hashing pool and computes the dummy hash on it.
    pub async fn start(params: HashParams, threads: usize, queue: usize) -> anyhow::Result<Self> {
        let pool = HashPool::start(threads, queue)?;
        let dummy = pool
            .run(move |memory| hash_with("portcullis-dummy-password-for-timing", params, memory))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))??;
        Ok(Self {
            params,
            pool,
            dummy_hash: dummy.into(),
            bcrypt_dummy: Arc::default(),
        })
    }

    pub fn params(&self) -> HashParams {
        self.params
    }

    pub async fn hash(&self, password: &str) -> AppResult<String> {
        let password = password.to_owned();
        let params = self.params;
        self.pool
            .run(move |memory| hash_with(&password, params, memory))
            .await?
            .map_err(AppError::Internal)
    }

    /// Notes that a bcrypt hash of `cost` is stored (an imported user who has not
    /// signed in since; passlib's `bcrypt_sha256` counts as bcrypt, see `bcrypt_cost`). From then on every verification runs both schemes: the
    /// stored hash, and a dummy of the scheme it is not (an argon2 dummy for a bcrypt
    /// user, a bcrypt dummy at the highest stored cost for anyone else, unknown users
    /// included). A bcrypt verification at cost 12 takes several times an argon2 one,
    /// so without this an imported user was told from an unknown one by time.
    pub async fn expect_bcrypt(&self, cost: u32) -> AppResult<()> {
        let known = |slot: &BcryptDummy| slot.as_ref().is_some_and(|(c, _)| *c >= cost);
        if known(&self.bcrypt_dummy.read().unwrap_or_else(|e| e.into_inner())) {
            return Ok(());
        }
        let dummy = self
            .pool
            .run(move |_| bcrypt::hash_with_result("portcullis-dummy-password-for-timing", cost))
            .await?
            .map_err(AppError::internal)?
            .format_for_version(bcrypt::Version::TwoB);
        let mut slot = self.bcrypt_dummy.write().unwrap_or_else(|e| e.into_inner());
        if !known(&slot) {
            *slot = Some((cost, dummy.into()));
        }
        Ok(())
    }

    /// What verifying against `stored` runs, in order: the stored hash (or the
    /// argon2 dummy when there is none), then the other scheme's dummy while bcrypt
    /// hashes are stored. Whoever the user, the same schemes at the same costs.
    fn checks(&self, stored: Option<&str>) -> Vec<Arc<str>> {
        let mut checks = vec![stored.map_or_else(|| self.dummy_hash.clone(), Arc::from)];
        if let Some((_, bcrypt_dummy)) = &*self.bcrypt_dummy.read().unwrap_or_else(|e| e.into_inner()) {
            let bcrypt_user = stored.and_then(bcrypt_cost).is_some();
            checks.push(if bcrypt_user {
                self.dummy_hash.clone()
            } else {
                bcrypt_dummy.clone()
            });
        }
        checks
    }

    /// Verifies against `stored`, or against a dummy hash when there is none (unknown
    /// user, or an account without a password) so the time taken tells nothing (see
    /// `checks`).
    pub async fn verify(&self, password: &str, stored: Option<&str>) -> AppResult<Verified> {
        let password = password.to_owned();
        let params = self.params;
        let checks = self.checks(stored);
        let outcomes = self
            .pool
            .run(move |memory| {
                checks
                    .iter()
                    .map(|hash| verify_with(&password, hash, params, memory))
                    .collect::<Vec<_>>()
            })
            .await?;
        Ok(match (stored, outcomes.first()) {
            (Some(_), Some(v)) => *v,
            _ => Verified {
                ok: false,
                needs_rehash: false,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHEAP: HashParams = HashParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    #[test]
    fn argon2id_round_trip() {
        let h = hash_blocking("correct horse", CHEAP).unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
        assert_eq!(
            verify_blocking("correct horse", &h, CHEAP),
            Verified {
                ok: true,
                needs_rehash: false
            }
        );
        assert!(!verify_blocking("wrong horse", &h, CHEAP).ok);
        let stronger = HashParams {
            memory_kib: 128,
            ..CHEAP
        };
        assert!(verify_blocking("correct horse", &h, stronger).needs_rehash);
    }

    #[test]
    fn passlib_hashes_verify() {
        // passlib.hash.bcrypt.hash("password", rounds=4)
        let bcrypt_hash = bcrypt::hash_with_result("password", 4)
            .unwrap()
            .format_for_version(bcrypt::Version::TwoB);
        let v = verify_blocking("password", &bcrypt_hash, CHEAP);
        assert!(v.ok && v.needs_rehash);
        assert!(!verify_blocking("Password", &bcrypt_hash, CHEAP).ok);
        let two_a = bcrypt_hash.replacen("$2b$", "$2a$", 1);
        assert!(verify_blocking("password", &two_a, CHEAP).ok);
        // passlib.hash.argon2.hash("password") with small costs: argon2id, 16-byte digest
        let argon = {
            let params = Params::new(64, 2, 2, Some(16)).unwrap();
            let a = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
            let salt = Salt::generate();
            let mut out = [0u8; 16];
            a.hash_password_into(b"password", &salt, &mut out).unwrap();
            PasswordHash {
                algorithm: argon2::ARGON2ID_IDENT,
                version: Some(19),
                params: ParamsString::try_from(&params).unwrap(),
                salt: Some(salt),
                hash: Some(Output::new(&out).unwrap()),
            }
            .to_string()
        };
        let v = verify_blocking("password", &argon, CHEAP);
        assert!(v.ok && v.needs_rehash);
    }

    /// The scheme and cost a hash is verified at.
    fn cost_of(hash: &str) -> String {
        match bcrypt_cost(hash) {
            Some(c) => format!("bcrypt {c}"),
            None => hash.split('$').take(4).collect::<Vec<_>>().join("$"),
        }
    }

    fn costs(hasher: &PasswordHasher, stored: Option<&str>) -> Vec<String> {
        let mut costs: Vec<String> = hasher.checks(stored).iter().map(|h| cost_of(h)).collect();
        costs.sort();
        costs
    }

    #[tokio::test]
    async fn unknown_users_cost_what_imported_bcrypt_users_cost() {
        let hasher = PasswordHasher::start(CHEAP, 1, 8).await.unwrap();
        let native = hash_blocking("password", CHEAP).unwrap();
        // Without imported hashes, an unknown user runs what a native one does.
        assert_eq!(costs(&hasher, None), costs(&hasher, Some(&native)));
        assert_eq!(costs(&hasher, None), vec!["$argon2id$v=19$m=64,t=1,p=1"]);

        let imported = bcrypt::hash_with_result("password", 5)
            .unwrap()
            .format_for_version(bcrypt::Version::TwoB);
        hasher.expect_bcrypt(4).await.unwrap();
        hasher.expect_bcrypt(5).await.unwrap();
        hasher.expect_bcrypt(4).await.unwrap();
        // With them, unknown, native and imported users run the same schemes at the
        // same costs: argon2 at current parameters and bcrypt at the stored cost.
        let expected = vec!["$argon2id$v=19$m=64,t=1,p=1".to_string(), "bcrypt 5".to_string()];
        for stored in [None, Some(native.as_str()), Some(imported.as_str())] {
            assert_eq!(costs(&hasher, stored), expected, "{stored:?}");
        }
        // ...and the answers are still the stored hash's.
        assert!(hasher.verify("password", Some(&imported)).await.unwrap().ok);
        assert!(hasher.verify("password", Some(&native)).await.unwrap().ok);
        assert!(!hasher.verify("wrong", Some(&imported)).await.unwrap().ok);
        assert!(!hasher.verify("password", None).await.unwrap().ok);
    }

    /// passlib 1.9.5: `bcrypt_sha256.using(rounds=5).hash("legacy password 3")`.
    const PASSLIB_BCRYPT_SHA256: &str =
        "$bcrypt-sha256$v=2,t=2b,r=5$b5EV6854hYIBpsX4.bZTVO$qMLjRZ9SZSQl3L9gvsRLWgdshjNRFh6";

    /// Issue 26: a bcrypt_sha256 user runs bcrypt at its cost, so while one is stored the
    /// padding runs bcrypt at that cost for everyone else, and argon2 for that user.
    #[tokio::test]
    async fn unknown_users_cost_what_imported_bcrypt_sha256_users_cost() {
        assert_eq!(bcrypt_cost(PASSLIB_BCRYPT_SHA256), Some(5));
        // What the store returns for it (see `Store::bcrypt_costs`) reads the same.
        assert_eq!(bcrypt_cost(&PASSLIB_BCRYPT_SHA256[..29]), Some(5));
        assert_eq!(bcrypt_cost("$bcrypt-sha256$v=2,t=2b,r=12$"), Some(12));
        for other in [
            "$bcrypt-sha256$2b,12$salt$digest",
            "$bcrypt-sha256$v=2,t=2b$x$y",
            "$bcrypt-sha256$v=2,r=99$",
        ] {
            assert_eq!(bcrypt_cost(other), None, "{other}");
        }
        let hasher = PasswordHasher::start(CHEAP, 1, 8).await.unwrap();
        let native = hash_blocking("password", CHEAP).unwrap();
        hasher
            .expect_bcrypt(bcrypt_cost(PASSLIB_BCRYPT_SHA256).unwrap())
            .await
            .unwrap();
        let expected = vec!["$argon2id$v=19$m=64,t=1,p=1".to_string(), "bcrypt 5".to_string()];
        for stored in [None, Some(native.as_str()), Some(PASSLIB_BCRYPT_SHA256)] {
            assert_eq!(costs(&hasher, stored), expected, "{stored:?}");
        }
        assert!(
            hasher
                .verify("legacy password 3", Some(PASSLIB_BCRYPT_SHA256))
                .await
                .unwrap()
                .ok
        );
        assert!(
            !hasher
                .verify("legacy password 4", Some(PASSLIB_BCRYPT_SHA256))
                .await
                .unwrap()
                .ok
        );
    }

    #[test]
    fn garbage_hashes_do_not_verify() {
        for h in [
            "",
            "plain",
            "$argon2id$garbage",
            "$2b$12$short",
            "$bcrypt-sha256$v=9,t=2b,r=12$x$y",
        ] {
            assert!(!verify_blocking("password", h, CHEAP).ok, "{h}");
        }
    }
}
