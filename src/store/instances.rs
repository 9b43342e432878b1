//! The instances serving from this database and the issuer each signs tokens as.

use chrono::{DateTime, Utc};

use super::tx::within;
use super::{Store, on_pool};
use crate::error::AppResult;

row_struct! {
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct InstanceRow {
        pub id: String,
        pub issuer: String,
        pub seen_at: DateTime<Utc>,
    }
}

/// PostgreSQL only (SQLite's first write already excludes other writers): holds off a
/// second instance's join until the first one's is committed, so that it sees it.
const LOCK_POSTGRES: &str = "LOCK TABLE instances IN SHARE ROW EXCLUSIVE MODE";
const FORGET_STALE: &str = "DELETE FROM instances WHERE seen_at < $1";
const INSERT: &str = "INSERT INTO instances (id, issuer, started_at, seen_at) VALUES ($1, $2, $3, $3)";
const OTHERS: &str = "SELECT id, issuer, seen_at FROM instances WHERE id <> $1 ORDER BY seen_at DESC";
const TOUCH: &str = "UPDATE instances SET seen_at = $2 WHERE id = $1";
const REMOVE: &str = "DELETE FROM instances WHERE id = $1";

impl Store {
    /// Records instance `id` as serving with `issuer`, forgetting instances not seen
    /// since `stale_before`, and returns the other instances still recorded. One
    /// transaction, taken one at a time: of two instances starting at once, the second
    /// sees the first.
    pub async fn join_instances(
        &self,
        id: &str,
        issuer: &str,
        now: DateTime<Utc>,
        stale_before: DateTime<Utc>,
    ) -> AppResult<Vec<InstanceRow>> {
        let lock = matches!(self, Store::Postgres(..)).then_some(LOCK_POSTGRES);
        on_pool!(self, pool => within(pool.begin().await?, async |tx| {
            if let Some(lock) = lock {
                sqlx::query(lock).execute(&mut *tx).await?;
            }
            sqlx::query(FORGET_STALE).bind(stale_before).execute(&mut *tx).await?;
            sqlx::query(INSERT).bind(id).bind(issuer).bind(now).execute(&mut *tx).await?;
            Ok(sqlx::query_as::<_, InstanceRow>(OTHERS).bind(id).fetch_all(&mut *tx).await?)
        }).await)
    }

    /// Marks instance `id` as still serving.
    pub async fn touch_instance(&self, id: &str, now: DateTime<Utc>) -> AppResult<()> {
        on_pool!(self, pool => sqlx::query(TOUCH).bind(id).bind(now).execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    /// Forgets instance `id` (it stopped, or refused to start).
    pub async fn leave_instances(&self, id: &str) -> AppResult<()> {
        on_pool!(self, pool => sqlx::query(REMOVE).bind(id).execute(pool).await.map(|_| ()))?;
        Ok(())
    }
}
