//! Persistence: one interface shaped by the domain, over SQLite or PostgreSQL.
//!
//! Both backends run the same SQL text wherever their dialects agree (SQLite accepts
//! `$n` placeholders, `RETURNING` and `ON CONFLICT`); the `on_pool!` macro expands a body
//! once per backend so each is type-checked against its own driver, and what runs
//! inside other transactions is written once, as functions generic over the
//! connection. Every transaction ends through `tx::within`. SQL lives only here and in
//! `migrations/`.

/// First, so that `row_struct!` is in scope in every module after it.
#[macro_use]
mod rows;

mod admins;
pub(crate) mod audit;
mod browser;
pub(crate) mod credentials;
mod instances;
mod keys;
pub(crate) mod mfa;
mod nodelay;
pub(crate) mod oauth;
mod oidc_clients;
mod oidc_codes;
mod oidc_devices;
mod oidc_grants;
mod placeholders;
pub(crate) mod rbac;
mod revocations;
pub(crate) mod sessions;
pub(crate) mod throttle;
mod tx;
mod users;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

use crate::config::DatabaseTarget;
use crate::error::{AppError, AppResult};

pub use audit::{
    AUDIT_BY_USER_RUN, AuditByUserRuns, AuditChainRow, AuditChains, AuditFields, AuditFilter, AuditKey, AuditRow,
    NO_AUDIT_KEY, PurgedChain, link_hash,
};
pub use browser::BrowserSessionRow;
pub use credentials::{ApiKeyRow, TemporaryTokenRow};
pub use instances::InstanceRow;
pub use keys::{KEYS_CHANGED, SealedSample, SigningKeyRow};
pub use mfa::{MfaTicketRow, TotpRow};
pub use oauth::{IdentityRow, OAuthStateRow, StateRefusal};
pub use oidc_clients::{ClientRow, EndTokens};
pub use oidc_codes::CodeRow;
pub use oidc_devices::{DeviceApproval, DeviceCodeRow};
pub use oidc_grants::{AppSessionRow, Ending, GrantRow};
pub use rbac::{PermissionRow, RoleRow, UserGrants};
pub use revocations::RevocationRow;
pub use sessions::{NewSession, RotateOutcome, RotatedSession, RotationJob, SessionRow};
pub use throttle::{Attempt, ThrottleRow};
pub use users::{NewUser, UserPage, UserRow, UserSort};

/// A database, and the key this process links audit records with (`None` until
/// [`Store::with_audit_key`]: such a store refuses to append audit records).
#[derive(Clone, Debug)]
pub enum Store {
    Sqlite(SqlitePool, Option<AuditKey>),
    Postgres(PgPool, Option<AuditKey>),
}

/// Runs `$body` with `$pool` bound to whichever backend `$store` holds: one `match`,
/// so that each arm is type-checked against its own driver. It adds no control flow;
/// a `?` in `$body` is the caller's own.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match $store {
            $crate::store::Store::Sqlite($pool, _) => $body,
            $crate::store::Store::Postgres($pool, _) => $body,
        }
    };
}
pub(crate) use on_pool;

impl Store {
    /// Opens the database, creating a SQLite file if it does not exist yet.
    pub async fn connect(target: &DatabaseTarget, max_connections: u32) -> anyhow::Result<Self> {
        match target {
            DatabaseTarget::Sqlite(path) => {
                create_private_file(path)?;
                let opts = SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(10));
                // One connection: SQLite serializes writers anyway, and writers queueing
                // in-process (FIFO) beat SQLite's sleeping busy handler by far under
                // load; hot-path reads are served from memory, not from here.
                let _ = max_connections;
                let pool = SqlitePoolOptions::new()
                    .max_connections(1)
                    .min_connections(1)
                    .connect_with(opts)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot open SQLite database {}: {e}", path.display()))?;
                Ok(Self::Sqlite(pool, None))
            }
            DatabaseTarget::Postgres(url) => {
                let opts = PgConnectOptions::from_str(url)?;
                let pool = PgPoolOptions::new()
                    .max_connections(max_connections)
                    .acquire_timeout(Duration::from_secs(5))
                    .after_connect(|_, _| {
                        Box::pin(async {
                            nodelay::disable_nagle_everywhere();
                            Ok(())
                        })
                    })
                    .connect_with(opts)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot connect to PostgreSQL: {e}"))?;
                Ok(Self::Postgres(pool, None))
            }
        }
    }

    pub async fn migrate(&self) -> anyhow::Result<()> {
        match self {
            Self::Sqlite(pool, _) => rows::sqlite_migrations().run(pool).await?,
            Self::Postgres(pool, _) => rows::postgres_migrations().run(pool).await?,
        }
        Ok(())
    }

    pub fn backend_name(&self) -> &'static str {
        match self {
            Self::Sqlite(..) => "sqlite",
            Self::Postgres(..) => "postgres",
        }
    }

    /// One trivial round-trip, for `/ready`.
    pub async fn ping(&self) -> AppResult<()> {
        on_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    /// (connections open, of which idle), for metrics.
    pub fn pool_usage(&self) -> (u32, usize) {
        on_pool!(self, pool => (pool.size(), pool.num_idle()))
    }

    pub async fn close(&self) {
        on_pool!(self, pool => pool.close().await)
    }
}

/// Creates the SQLite database file, readable by its owner only (0600, like the master
/// key file), unless it exists; SQLite gives the `-wal` and `-shm` files it creates
/// beside it the database file's mode. Its directory must exist: creating a misspelt
/// path's directories would quietly start an empty database somewhere else.
fn create_private_file(path: &std::path::Path) -> anyhow::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir.filter(|d| !d.is_dir()) {
        anyhow::bail!(
            "DATABASE_URL: the directory {} of the SQLite database does not exist; create it first",
            dir.display()
        );
    }
    match crate::crypto::private_file::create_owner_only(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(anyhow::anyhow!("cannot create SQLite database {}: {e}", path.display())),
    }
}

/// Maps a unique-constraint violation to 409 with `message`; anything else is internal.
pub(crate) fn conflict_on_unique(e: sqlx::Error, message: &str) -> AppError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => AppError::Conflict(message.to_string()),
        _ => AppError::from(e),
    }
}
