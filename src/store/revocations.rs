//! The feed of revocations each instance follows to refuse ended sessions without a
//! database round-trip per request.

use chrono::{DateTime, Utc};

use super::{Store, on_pool};
use crate::error::AppResult;

row_struct! {
    #[derive(Debug, Clone)]
    pub struct RevocationRow {
        /// Increasing per row; lets a follower skip rows it has already applied.
        pub id: i64,
        pub kind: String,
        pub subject: String,
        pub expires_at: DateTime<Utc>,
    }
}

const LIVE: &str = "SELECT id, kind, subject, expires_at FROM revocations WHERE expires_at > $1";
const SINCE: &str = "SELECT id, kind, subject, expires_at FROM revocations WHERE created_at >= $1";
const PURGE: &str = "DELETE FROM revocations WHERE expires_at < $1";

impl Store {
    /// Every revocation that can still matter.
    pub async fn live_revocations(&self, now: DateTime<Utc>) -> AppResult<Vec<RevocationRow>> {
        Ok(on_pool!(self, pool => sqlx::query_as::<_, RevocationRow>(LIVE).bind(now).fetch_all(pool).await)?)
    }

    /// Revocations written since `since`. Callers overlap their windows: a row is
    /// stamped by its writer before commit, so it may become visible a little late.
    pub async fn revocations_since(&self, since: DateTime<Utc>) -> AppResult<Vec<RevocationRow>> {
        Ok(on_pool!(self, pool => sqlx::query_as::<_, RevocationRow>(SINCE).bind(since).fetch_all(pool).await)?)
    }

    pub async fn purge_revocations(&self, before: DateTime<Utc>) -> AppResult<u64> {
        Ok(on_pool!(self, pool => sqlx::query(PURGE).bind(before).execute(pool).await.map(|r| r.rows_affected()))?)
    }
}
