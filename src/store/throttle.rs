//! Failed-login counts per login name, for lockout.

use chrono::{DateTime, Utc};

use super::tx::within;
use super::{Store, on_pool};
use crate::error::AppResult;

row_struct! {
    #[derive(Debug, Clone)]
    pub struct ThrottleRow {
        pub failures: i32,
        pub locked_until: Option<DateTime<Utc>>,
    }
}

/// What a login attempt may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// Locked until then; nothing was counted.
    Locked(DateTime<Utc>),
    /// Counted as a failure in advance; a success clears it.
    Counted,
}

/// Counts an attempt unless a lock is running. Failures older than the window are
/// forgotten: the count starts again at one.
const COUNT_ATTEMPT: &str = "INSERT INTO login_throttle (key, failures, locked_until, last_failure_at) VALUES ($1, 1, NULL, $2) \
     ON CONFLICT (key) DO UPDATE SET \
       failures = CASE WHEN login_throttle.locked_until > $2 THEN login_throttle.failures \
                       WHEN login_throttle.last_failure_at < $3 THEN 1 \
                       ELSE login_throttle.failures + 1 END, \
       last_failure_at = CASE WHEN login_throttle.locked_until > $2 THEN login_throttle.last_failure_at ELSE $2 END \
     RETURNING failures, locked_until";
const LOCK: &str = "UPDATE login_throttle SET locked_until = $2 WHERE key = $1";
const LOCKED_UNTIL: &str = "SELECT locked_until FROM login_throttle WHERE key = $1 AND locked_until > $2";
const CLEAR: &str = "DELETE FROM login_throttle WHERE key = $1";
const PURGE: &str =
    "DELETE FROM login_throttle WHERE last_failure_at < $1 AND (locked_until IS NULL OR locked_until < $2)";

impl Store {
    /// Refuses while `key` is locked; otherwise counts the attempt as a failure before
    /// the password is checked, and sets the lock when `lock_for` says the new count
    /// locks. Counting first means parallel attempts cannot all slip in under the
    /// threshold: the upsert serializes them on the row, in one transaction.
    pub async fn begin_login_attempt(
        &self,
        key: &str,
        now: DateTime<Utc>,
        window_start: DateTime<Utc>,
        lock_for: impl Fn(u32) -> Option<chrono::Duration>,
    ) -> AppResult<Attempt> {
        on_pool!(self, pool => within(pool.begin().await?, async |tx| {
            let row = sqlx::query_as::<_, ThrottleRow>(COUNT_ATTEMPT)
                .bind(key)
                .bind(now)
                .bind(window_start)
                .fetch_one(&mut *tx)
                .await?;
            let outcome = match row.locked_until {
                Some(until) if until > now => Attempt::Locked(until),
                _ => {
                    if let Some(lock) = lock_for(row.failures.max(0) as u32) {
                        sqlx::query(LOCK).bind(key).bind(now + lock).execute(&mut *tx).await?;
                    }
                    Attempt::Counted
                }
            };
            Ok(outcome)
        }).await)
    }

    /// Until when `key` is locked, if a lock is running (nothing is counted).
    pub async fn throttle_locked_until(&self, key: &str, now: DateTime<Utc>) -> AppResult<Option<DateTime<Utc>>> {
        Ok(
            on_pool!(self, pool => sqlx::query_scalar::<_, Option<DateTime<Utc>>>(LOCKED_UNTIL)
            .bind(key).bind(now).fetch_optional(pool).await)?
            .flatten(),
        )
    }

    /// Forgets the counts (and locks) of `keys`.
    pub async fn clear_login_failures(&self, keys: &[String]) -> AppResult<()> {
        on_pool!(self, pool => {
            for key in keys {
                sqlx::query(CLEAR).bind(key).execute(pool).await?;
            }
        });
        Ok(())
    }

    /// Forgets counters with no failure since `quiet_since` and no lock still running.
    pub async fn purge_login_throttle(&self, quiet_since: DateTime<Utc>, now: DateTime<Utc>) -> AppResult<u64> {
        Ok(
            on_pool!(self, pool => sqlx::query(PURGE).bind(quiet_since).bind(now).execute(pool).await.map(|r| r.rows_affected()))?,
        )
    }
}
