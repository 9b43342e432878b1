//! Lockout after consecutive failed logins (password now, MFA later).
//!
//! Counts are kept per login name (a username or an email, folded and lower-cased),
//! whether or not an account has that name, under a SHA-256 of the name: a password
//! typed into the username field is never stored, and a 429 answers exactly the same
//! for real and unknown names. Keying by the account instead would let anyone learn
//! that an email belongs to a locked username. The price: an account's username and
//! email count separately. Counts live in the database so every instance sees them.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};

use super::Portcullis;
use crate::config::LockoutPolicy;
use crate::crypto::tokens;
use crate::error::{AppError, AppResult};
use crate::store::{Attempt, UserRow};

/// Failures older than this no longer count toward a lock (see `failure_memory`).
const FAILURE_MEMORY: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// The count a login name is kept under.
pub(crate) fn login_key(folded_login: &str) -> String {
    format!(
        "n:{}",
        URL_SAFE_NO_PAD.encode(tokens::digest(&folded_login.to_ascii_lowercase()))
    )
}

/// Every count an account can be locked under: its username and its email.
pub(crate) fn keys_of(user: &UserRow) -> Vec<String> {
    vec![login_key(&user.username), login_key(&user.email)]
}

/// How long failures are remembered: a day, or twice the longest lock if that is
/// longer, so a lock cannot outlive the count that makes the next one longer.
fn failure_memory(policy: &LockoutPolicy) -> chrono::TimeDelta {
    chrono::Duration::from_std(policy.max * 2)
        .unwrap_or(FAILURE_MEMORY)
        .max(FAILURE_MEMORY)
}

/// Seconds until `until`, at least one (a `Retry-After` of 0 invites a busy loop).
fn seconds_until(until: DateTime<Utc>, now: DateTime<Utc>) -> u64 {
    let ms = (until - now).num_milliseconds().max(0) as u64;
    ms.div_ceil(1000).max(1)
}

impl Portcullis {
    /// Before checking a password for `login`: 429 with the time left while the name
    /// is locked; otherwise the attempt is counted as a failure in advance (so
    /// parallel attempts cannot all get in under the threshold) and a success must
    /// call [`Self::login_succeeded`].
    pub(crate) async fn begin_login_attempt(&self, login: &str) -> AppResult<()> {
        let policy = self.config().lockout;
        if policy.threshold == 0 {
            return Ok(());
        }
        let now = Utc::now();
        let attempt = self
            .store()
            .begin_login_attempt(&login_key(login), now, now - failure_memory(&policy), |failures| {
                let lock = policy.lock_for(failures)?;
                metrics::counter!("portcullis_lockouts_total").increment(1);
                chrono::Duration::from_std(lock).ok()
            })
            .await?;
        match attempt {
            Attempt::Counted => Ok(()),
            Attempt::Locked(until) => {
                metrics::counter!("portcullis_rate_limited_total", "scope" => "account").increment(1);
                Err(AppError::TooManyRequests {
                    retry_after: seconds_until(until, now),
                })
            }
        }
    }

    /// A success forgets the failures counted for `login`.
    pub(crate) async fn login_succeeded(&self, login: &str) -> AppResult<()> {
        if self.config().lockout.threshold == 0 {
            return Ok(());
        }
        self.store().clear_login_failures(&[login_key(login)]).await
    }

    /// Clears every lock on a user's names (admin unlock, new password, deletion).
    pub(crate) async fn clear_lockout(&self, user: &UserRow) -> AppResult<()> {
        self.store().clear_login_failures(&keys_of(user)).await
    }

    /// Drops counters that have been quiet for a day and hold no running lock.
    pub(crate) async fn purge_login_throttle(&self, now: DateTime<Utc>) -> AppResult<u64> {
        let memory = failure_memory(&self.config().lockout);
        self.store().purge_login_throttle(now - memory, now).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_and_is_never_zero() {
        let now = Utc::now();
        assert_eq!(seconds_until(now + chrono::Duration::milliseconds(1500), now), 2);
        assert_eq!(seconds_until(now + chrono::Duration::seconds(60), now), 60);
        assert_eq!(seconds_until(now - chrono::Duration::seconds(5), now), 1);
    }

    #[test]
    fn names_are_keyed_by_digest_case_insensitively() {
        let a = login_key("Ghost@Example.com");
        assert_eq!(a, login_key("ghost@example.com"));
        assert!(a.starts_with("n:") && !a.contains("ghost"));
    }
}
