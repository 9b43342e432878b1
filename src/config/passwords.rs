//! Password policy and the cost of hashing: what a password must be, what argon2id
//! spends on each, and how many hashes may run or wait at once.

use super::{ConfigError, Sources};

/// The names this group reads, aliases included: the TOML file may set only known ones.
pub(super) const KEYS: &[&str] = &[
    "PASSWORD_MIN_LENGTH",
    "PASSWORD_MAX_LENGTH",
    "PASSWORD_MIN_SCORE",
    "PASSWORD_HASH_MEMORY_KIB",
    "PASSWORD_HASH_ITERATIONS",
    "PASSWORD_HASH_PARALLELISM",
    "PASSWORD_HASH_CONCURRENCY",
    "PASSWORD_HASH_QUEUE",
];

/// argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for HashParams {
    /// OWASP's first recommended argon2id configuration.
    fn default() -> Self {
        Self {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
        }
    }
}

#[derive(Debug, Clone)]
pub struct PasswordSettings {
    pub min_length: usize,
    pub max_length: usize,
    /// Lowest acceptable zxcvbn score (0-4).
    pub min_score: u8,
    pub hash_params: HashParams,
    /// Password-hashing threads; more would only queue on the cores anyway.
    pub hash_concurrency: usize,
    /// Hashes that may wait for a thread; beyond this, logins get 503.
    pub hash_queue: usize,
}

pub(super) fn settings(s: &Sources) -> Result<PasswordSettings, ConfigError> {
    let password_min_length = s.number(&["PASSWORD_MIN_LENGTH"], 8usize, 1, 128)?;
    let password_max_length = s.number(&["PASSWORD_MAX_LENGTH"], 128usize, password_min_length, 1024)?;

    let defaults = HashParams::default();
    let hash_params = HashParams {
        memory_kib: s.number(&["PASSWORD_HASH_MEMORY_KIB"], defaults.memory_kib, 8, 4 * 1024 * 1024)?,
        iterations: s.number(&["PASSWORD_HASH_ITERATIONS"], defaults.iterations, 1, 100)?,
        parallelism: s.number(&["PASSWORD_HASH_PARALLELISM"], defaults.parallelism, 1, 64)?,
    };
    if hash_params.memory_kib < 8 * hash_params.parallelism {
        return Err(ConfigError::new(
            "PASSWORD_HASH_MEMORY_KIB",
            "must be at least 8 KiB per lane (PASSWORD_HASH_PARALLELISM)",
        ));
    }
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);

    Ok(PasswordSettings {
        min_length: password_min_length,
        max_length: password_max_length,
        min_score: s.number(&["PASSWORD_MIN_SCORE"], 2u8, 0, 4)?,
        hash_params,
        hash_concurrency: s.number(&["PASSWORD_HASH_CONCURRENCY"], cores, 1, 256)?,
        hash_queue: s.number(&["PASSWORD_HASH_QUEUE"], 256usize, 1, 100_000)?,
    })
}
