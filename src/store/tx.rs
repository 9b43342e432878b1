//! How a transaction begins, and the one way it ends.
//!
//! Every transaction body runs inside [`within`], which commits when the body returns
//! `Ok` and rolls back, explicitly and awaited, when it returns `Err`: a `?` or an
//! early `return` in a body can never leave a transaction to be dropped half-done.
//! sqlx rolls a dropped transaction back only lazily, and the connection may first
//! serve another query (the revocation feed, say) inside the abandoned transaction;
//! on SQLite, with its single connection, that query is everybody's.
//!
//! What runs inside several transactions (an audit record, an invalidation event,
//! ending sessions…) is an async function generic over the connection `C` the body
//! holds, written once for both backends. Its `where` clause names what it binds and
//! reads (`for<'q> Uuid: Encode<'q, DB> + Type<DB>`, …): Rust offers no way to bundle
//! such bounds under one name that callers would not have to repeat.

use sqlx::{Database, Pool, Sqlite, Transaction};

/// What the two backends do differently when a transaction begins.
pub(crate) trait Backend: Database {
    /// Whether [`Backend::begin_write`] takes the whole database's write lock, so that
    /// writers are already serialized (SQLite) and need no lock of their own.
    const BEGIN_WRITE_LOCKS: bool;

    /// Begins a transaction that will write. SQLite takes its write lock up front
    /// (`BEGIN IMMEDIATE`), so two writers queue on the busy timeout instead of one
    /// failing when it upgrades a read lock; PostgreSQL locks rows as it goes.
    fn begin_write(pool: &Pool<Self>) -> impl Future<Output = sqlx::Result<Transaction<'static, Self>>> + Send;
}

impl Backend for Sqlite {
    const BEGIN_WRITE_LOCKS: bool = true;

    fn begin_write(pool: &Pool<Self>) -> impl Future<Output = sqlx::Result<Transaction<'static, Self>>> + Send {
        pool.begin_with("BEGIN IMMEDIATE")
    }
}

impl Backend for sqlx::Postgres {
    const BEGIN_WRITE_LOCKS: bool = false;

    fn begin_write(pool: &Pool<Self>) -> impl Future<Output = sqlx::Result<Transaction<'static, Self>>> + Send {
        pool.begin()
    }
}

/// Begins a transaction that will write (see [`Backend::begin_write`]).
pub(crate) fn begin_write<DB: Backend>(
    pool: &Pool<DB>,
) -> impl Future<Output = sqlx::Result<Transaction<'static, DB>>> + Send {
    DB::begin_write(pool)
}

/// Runs `body` on the open transaction `tx`, then commits it when `body` returned
/// `Ok`, or rolls it back when `body` returned `Err` (and returns that error, unless
/// the rollback itself fails).
pub(crate) async fn within<DB, T, E>(
    mut tx: Transaction<'_, DB>,
    body: impl AsyncFnOnce(&mut DB::Connection) -> Result<T, E>,
) -> Result<T, E>
where
    DB: Database,
    E: From<sqlx::Error>,
{
    match body(&mut tx).await {
        Ok(value) => {
            tx.commit().await?;
            Ok(value)
        }
        Err(e) => {
            tx.rollback().await?;
            Err(e)
        }
    }
}
