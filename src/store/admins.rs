//! The rule that the service keeps an administrator.
//!
//! Changes that could leave the service without one (demoting, disabling or deleting
//! one, deleting the admin role) run under one lock — SQLite's write lock, or a
//! PostgreSQL advisory lock — and re-count the administrators before committing, so
//! two concurrent demotions cannot both succeed.

use sqlx::{Executor, FromRow, IntoArguments, Pool};

use super::tx::{Backend, begin_write, within};
use super::{Store, on_pool};
use crate::error::{AppError, AppResult};

/// An administrator: an active user who is a superuser or holds the `admin` role.
const COUNT_ADMINS: &str = "SELECT COUNT(*) FROM users u WHERE u.is_active AND (u.is_superuser OR EXISTS (SELECT 1 FROM user_roles ur WHERE ur.user_id = u.id AND ur.role_name = 'admin'))";
/// PostgreSQL: orders the changes that could take the last administrator away.
const PG_ADMIN_LOCK: &str = "SELECT pg_advisory_xact_lock(7260314)";

/// Runs `body` in a write transaction on `pool` that holds the admin-change lock, and
/// commits only if an active administrator remains: otherwise the change is rolled
/// back and refused with 409 (`what`, then why). A database that had no
/// administrator to begin with (users created from the shell before the first
/// `serve`) is not held to the rule.
pub(super) async fn keeping_an_admin<DB, T>(
    pool: &Pool<DB>,
    what: &str,
    body: impl AsyncFnOnce(&mut DB::Connection) -> AppResult<T>,
) -> AppResult<T>
where
    DB: Backend,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'r> (i64,): FromRow<'r, DB::Row>,
{
    within(begin_write(pool).await?, async |tx| {
        if !DB::BEGIN_WRITE_LOCKS {
            sqlx::query(PG_ADMIN_LOCK).execute(&mut *tx).await?;
        }
        let before: i64 = sqlx::query_scalar(COUNT_ADMINS).fetch_one(&mut *tx).await?;
        let value = body(tx).await?;
        let admins: i64 = sqlx::query_scalar(COUNT_ADMINS).fetch_one(&mut *tx).await?;
        if admins == 0 && before > 0 {
            return Err(AppError::Conflict(format!(
                "{what}: it would leave no active administrator"
            )));
        }
        Ok(value)
    })
    .await
}

impl Store {
    pub async fn count_admins(&self) -> AppResult<i64> {
        Ok(on_pool!(self, pool => sqlx::query_scalar::<_, i64>(COUNT_ADMINS).fetch_one(pool).await)?)
    }
}
