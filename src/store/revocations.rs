//! The feed of revocations each instance follows to refuse ended sessions without a
//! database round-trip per request.
//!
//! # Following the feed in commit order
//!
//! A row becomes visible when its transaction commits, which may be long after its
//! writer stamped it, and the writer's clock may be behind the follower's: so a
//! follower cannot poll by timestamp (a late or back-dated row falls behind a window
//! that has already moved on, and is never seen). It follows a *position* instead,
//! read from the database before each poll, and re-reads every row at or after the
//! position it read last time; the caller skips rows it has already applied:
//!
//! - PostgreSQL: each row carries the id of the transaction that wrote it (`txid`,
//!   filled in by the database). The position is the `xmin` of the current snapshot:
//!   every transaction with a lower id has ended, so its rows are all visible to the
//!   read that follows and none can appear later. A transaction still open (or not yet
//!   started) has an id at or above it, so its rows are read by a later poll whenever
//!   it commits, however long it is held open. No clock and no timeout is involved.
//!   (A plain sequence would not do: ids are taken at insert, not at commit, so a
//!   lower id can appear after a higher one, and a gap cannot be told from a rollback.)
//!   The cost: rows written while some transaction is open are re-read on each poll
//!   until it ends.
//! - SQLite: writers are serialized and a row's id is taken inside its writing
//!   transaction, so ids appear in commit order and the position is one past the
//!   highest id.

use chrono::{DateTime, Utc};

use super::{Store, on_pool};
use crate::error::AppResult;

row_struct! {
    #[derive(Debug, Clone)]
    pub struct RevocationRow {
        /// Unique per row; lets a follower skip rows it has already applied.
        pub id: i64,
        pub kind: String,
        pub subject: String,
        pub expires_at: DateTime<Utc>,
    }
}

const LIVE: &str = "SELECT id, kind, subject, expires_at FROM revocations WHERE expires_at > $1";
const POSITION_SQLITE: &str = "SELECT COALESCE(MAX(id), 0) + 1 FROM revocations";
const POSITION_POSTGRES: &str = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint";
const FROM_SQLITE: &str = "SELECT id, kind, subject, expires_at FROM revocations WHERE id >= $1";
const FROM_POSTGRES: &str =
    "SELECT id, kind, subject, expires_at FROM revocations WHERE txid >= $1::bigint::text::xid8";
const RAISE_HORIZON: &str = "INSERT INTO token_horizon (id, until) VALUES (1, $1) ON CONFLICT (id) DO UPDATE \
     SET until = CASE WHEN token_horizon.until < excluded.until THEN excluded.until ELSE token_horizon.until END \
     RETURNING until";
const PURGE: &str = "DELETE FROM revocations WHERE expires_at < $1";

impl Store {
    /// Every revocation that can still matter.
    pub async fn live_revocations(&self, now: DateTime<Utc>) -> AppResult<Vec<RevocationRow>> {
        Ok(on_pool!(self, pool => sqlx::query_as::<_, RevocationRow>(LIVE).bind(now).fetch_all(pool).await)?)
    }

    /// Where the feed stands: every row that can still appear is at or after this
    /// position (see the module documentation). Read it *before* reading the rows.
    pub async fn revocation_feed_position(&self) -> AppResult<i64> {
        Ok(match self {
            Store::Sqlite(pool, _) => sqlx::query_scalar(POSITION_SQLITE).fetch_one(pool).await?,
            Store::Postgres(pool, _) => sqlx::query_scalar(POSITION_POSTGRES).fetch_one(pool).await?,
        })
    }

    /// The rows at or after `position`, some of which the caller may have seen.
    pub async fn revocations_from(&self, position: i64) -> AppResult<Vec<RevocationRow>> {
        Ok(match self {
            Store::Sqlite(pool, _) => sqlx::query_as(FROM_SQLITE).bind(position).fetch_all(pool).await?,
            Store::Postgres(pool, _) => sqlx::query_as(FROM_POSTGRES).bind(position).fetch_all(pool).await?,
        })
    }

    /// Raises the latest moment any access token may expire to `until`, if later;
    /// returns the latest moment, as every instance has raised it.
    pub async fn raise_token_horizon(&self, until: DateTime<Utc>) -> AppResult<DateTime<Utc>> {
        Ok(on_pool!(self, pool => sqlx::query_scalar(RAISE_HORIZON).bind(until).fetch_one(pool).await)?)
    }

    pub async fn purge_revocations(&self, before: DateTime<Utc>) -> AppResult<u64> {
        Ok(on_pool!(self, pool => sqlx::query(PURGE).bind(before).execute(pool).await.map(|r| r.rows_affected()))?)
    }
}
