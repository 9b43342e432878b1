//! Per-account lockout after consecutive failed logins (password now, MFA later).
//!
//! The count lives in the database so every instance sees the same lock. Names no
//! account has are counted and locked the same way, under a digest of the name, so a
//! 429 says nothing about whether an account exists.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};

use super::Portcullis;
use crate::crypto::tokens;
use crate::error::{AppError, AppResult};
use crate::store::UserRow;
use crate::store::throttle::{name_key, user_key};

/// Failures older than this no longer count toward a lock.
const FAILURE_MEMORY: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// The lock a login attempt is counted against: the account's when the name (or
/// email) belongs to one, else the folded name's.
pub(crate) fn throttle_key(user: Option<&UserRow>, folded_login: &str) -> String {
    match user {
        Some(u) => user_key(u.id),
        None => name_key(&URL_SAFE_NO_PAD.encode(tokens::digest(&folded_login.to_ascii_lowercase()))),
    }
}

/// Seconds until `until`, at least one (a `Retry-After` of 0 invites a busy loop).
fn seconds_until(until: DateTime<Utc>, now: DateTime<Utc>) -> u64 {
    let ms = (until - now).num_milliseconds().max(0) as u64;
    ms.div_ceil(1000).max(1)
}

/// The answer while locked: the same for accounts and unknown names.
fn locked(until: DateTime<Utc>, now: DateTime<Utc>) -> AppError {
    metrics::counter!("portcullis_rate_limited_total", "scope" => "account").increment(1);
    AppError::TooManyRequests {
        retry_after: seconds_until(until, now),
    }
}

impl Portcullis {
    fn lockout_enabled(&self) -> bool {
        self.config().lockout.threshold > 0
    }

    /// 429 with the time left while `key` is locked. Otherwise tells whether failures
    /// are on record, so a success knows whether there is anything to clear.
    pub(crate) async fn ensure_not_locked(&self, key: &str, now: DateTime<Utc>) -> AppResult<bool> {
        if !self.lockout_enabled() {
            return Ok(false);
        }
        match self.store().login_throttle(key).await? {
            Some(row) => match row.locked_until {
                Some(until) if until > now => Err(locked(until, now)),
                _ => Ok(row.failures > 0),
            },
            None => Ok(false),
        }
    }

    /// Counts a failed attempt, locking `key` once the policy says so.
    pub(crate) async fn note_failed_login(&self, key: &str, now: DateTime<Utc>) -> AppResult<()> {
        if !self.lockout_enabled() {
            return Ok(());
        }
        let policy = self.config().lockout;
        let row = self
            .store()
            .record_login_failure(key, now, now - FAILURE_MEMORY, |failures| {
                policy
                    .lock_for(failures)
                    .and_then(|d| chrono::Duration::from_std(d).ok())
            })
            .await?;
        if row.locked_until.is_some_and(|u| u > now) {
            metrics::counter!("portcullis_lockouts_total").increment(1);
        }
        Ok(())
    }

    /// A success forgets earlier failures.
    pub(crate) async fn clear_failed_logins(&self, key: &str) -> AppResult<()> {
        self.store().clear_login_failures(key).await
    }

    /// Drops counters that have been quiet for a day and hold no running lock.
    pub(crate) async fn purge_login_throttle(&self, now: DateTime<Utc>) -> AppResult<u64> {
        self.store().purge_login_throttle(now - FAILURE_MEMORY, now).await
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
    fn unknown_names_are_keyed_by_digest_case_insensitively() {
        let a = throttle_key(None, "Ghost@Example.com");
        assert_eq!(a, throttle_key(None, "ghost@example.com"));
        assert!(a.starts_with("n:") && !a.contains("ghost"));
    }
}
