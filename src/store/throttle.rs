//! Consecutive failed logins per account or unknown login name, for lockout.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Store, on_pool};
use crate::error::AppResult;

/// The throttle key of an account.
pub fn user_key(id: Uuid) -> String {
    format!("u:{id}")
}

/// The throttle key of a login name no account has, from its digest.
pub fn name_key(digest: &str) -> String {
    format!("n:{digest}")
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ThrottleRow {
    pub failures: i32,
    pub locked_until: Option<DateTime<Utc>>,
}

const SELECT: &str = "SELECT failures, locked_until FROM login_throttle WHERE key = $1";
/// Failures older than the window are forgotten: the count starts again at one.
const RECORD_FAILURE: &str = "INSERT INTO login_throttle (key, failures, locked_until, last_failure_at) VALUES ($1, 1, NULL, $2) \
     ON CONFLICT (key) DO UPDATE SET failures = CASE WHEN login_throttle.last_failure_at < $3 THEN 1 ELSE login_throttle.failures + 1 END, last_failure_at = $2 \
     RETURNING failures, locked_until";
const LOCK: &str = "UPDATE login_throttle SET locked_until = $2 WHERE key = $1";
pub(super) const CLEAR: &str = "DELETE FROM login_throttle WHERE key = $1";
const PURGE: &str =
    "DELETE FROM login_throttle WHERE last_failure_at < $1 AND (locked_until IS NULL OR locked_until < $2)";

impl Store {
    pub async fn login_throttle(&self, key: &str) -> AppResult<Option<ThrottleRow>> {
        Ok(on_pool!(self, pool => sqlx::query_as::<_, ThrottleRow>(SELECT).bind(key).fetch_optional(pool).await)?)
    }

    /// Counts one more failure (forgetting those before `window_start`) and, when
    /// `lock_for` says the new count locks, sets the lock; in one transaction so
    /// concurrent failures on several instances each count once.
    pub async fn record_login_failure(
        &self,
        key: &str,
        now: DateTime<Utc>,
        window_start: DateTime<Utc>,
        lock_for: impl Fn(u32) -> Option<chrono::Duration>,
    ) -> AppResult<ThrottleRow> {
        Ok(on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let mut row = sqlx::query_as::<_, ThrottleRow>(RECORD_FAILURE)
                .bind(key)
                .bind(now)
                .bind(window_start)
                .fetch_one(&mut *tx)
                .await?;
            if let Some(lock) = lock_for(row.failures.max(0) as u32) {
                let until = now + lock;
                sqlx::query(LOCK).bind(key).bind(until).execute(&mut *tx).await?;
                row.locked_until = Some(until);
            }
            tx.commit().await?;
            row
        }))
    }

    pub async fn clear_login_failures(&self, key: &str) -> AppResult<()> {
        on_pool!(self, pool => sqlx::query(CLEAR).bind(key).execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    /// Forgets counters with no failure since `quiet_since` and no lock still running.
    pub async fn purge_login_throttle(&self, quiet_since: DateTime<Utc>, now: DateTime<Utc>) -> AppResult<u64> {
        Ok(
            on_pool!(self, pool => sqlx::query(PURGE).bind(quiet_since).bind(now).execute(pool).await.map(|r| r.rows_affected()))?,
        )
    }
}
