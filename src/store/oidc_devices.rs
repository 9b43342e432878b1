//! Device authorizations in flight (RFC 8628): the device code (kept as its SHA-256),
//! the user code a person types at `/device`, and what the person decided.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::audit::append_in_tx;
use super::tx::within;
use super::{AuditFields, Store, on_pool};
use crate::error::AppResult;

row_struct! {
    /// One device authorization as stored; `status` is pending, approved, denied or
    /// used, and the person's fields are set once approved.
    #[derive(Debug, Clone)]
    pub struct DeviceCodeRow {
        pub device_code_hash: Vec<u8>,
        pub user_code: String,
        pub client_id: String,
        pub scope: String,
        pub created_at: DateTime<Utc>,
        pub expires_at: DateTime<Utc>,
        pub interval_secs: i32,
        pub last_polled_at: Option<DateTime<Utc>>,
        pub status: String,
        pub user_id: Option<Uuid>,
        pub browser_session_id: Option<Uuid>,
        pub auth_time: Option<DateTime<Utc>>,
        pub amr: Option<String>,
    }
}

/// Who approved a device: the person, their browser session, when they last proved
/// themselves there and how (`amr`, a JSON array).
#[derive(Debug, Clone)]
pub struct DeviceApproval {
    pub user_id: Uuid,
    pub browser_session_id: Uuid,
    pub auth_time: DateTime<Utc>,
    pub amr: String,
}

macro_rules! device_columns {
    () => {
        "device_code_hash, user_code, client_id, scope, created_at, expires_at, interval_secs, last_polled_at, \
         status, user_id, browser_session_id, auth_time, amr"
    };
}
const BY_HASH: &str = concat!(
    "SELECT ",
    device_columns!(),
    " FROM oidc_device_codes WHERE device_code_hash = $1"
);
const BY_USER_CODE: &str = concat!(
    "SELECT ",
    device_columns!(),
    " FROM oidc_device_codes WHERE user_code = $1"
);
const INSERT: &str = "INSERT INTO oidc_device_codes (device_code_hash, user_code, client_id, scope, created_at, \
     expires_at, interval_secs, status) VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending')";
/// Rows expired before `$1`: they answer nothing any more and would hold their user
/// codes.
const PURGE: &str = "DELETE FROM oidc_device_codes WHERE expires_at < $1";
const APPROVE: &str = "UPDATE oidc_device_codes SET status = 'approved', user_id = $3, browser_session_id = $4, \
     auth_time = $5, amr = $6 WHERE user_code = $1 AND status = 'pending' AND expires_at > $2";
const DENY: &str =
    "UPDATE oidc_device_codes SET status = 'denied' WHERE user_code = $1 AND status = 'pending' AND expires_at > $2";
/// A poll that kept the interval: counted only when the last one was at or before
/// `$3` (now less the interval read) and the interval is still the one read.
const POLL_ON_TIME: &str = "UPDATE oidc_device_codes SET last_polled_at = $2 WHERE device_code_hash = $1 \
     AND interval_secs = $4 AND (last_polled_at IS NULL OR last_polled_at <= $3)";
/// A poll too soon: the device must wait `$3` seconds more from now on.
const SLOW_DOWN: &str = "UPDATE oidc_device_codes SET last_polled_at = $2, interval_secs = interval_secs + $3 \
     WHERE device_code_hash = $1";
/// Redeeming an approval: only once, whoever polls at the same moment.
const MARK_USED: &str =
    "UPDATE oidc_device_codes SET status = 'used' WHERE device_code_hash = $1 AND status = 'approved'";

impl Store {
    /// Stores a new pending device authorization, first dropping those expired before
    /// `purge_before`; false when its user code is taken (the caller draws another).
    pub async fn insert_device_code(&self, row: &DeviceCodeRow, purge_before: DateTime<Utc>) -> AppResult<bool> {
        on_pool!(self, pool => {
            sqlx::query(PURGE).bind(purge_before).execute(pool).await?;
            let inserted = sqlx::query(INSERT)
                .bind(&row.device_code_hash).bind(&row.user_code).bind(&row.client_id).bind(&row.scope)
                .bind(row.created_at).bind(row.expires_at).bind(row.interval_secs)
                .execute(pool)
                .await;
            match inserted {
                Ok(_) => Ok(true),
                Err(sqlx::Error::Database(db)) if db.is_unique_violation() => Ok(false),
                Err(e) => Err(e.into()),
            }
        })
    }

    pub async fn device_code(&self, hash: &[u8]) -> AppResult<Option<DeviceCodeRow>> {
        Ok(on_pool!(self, pool => sqlx::query_as::<_, DeviceCodeRow>(BY_HASH).bind(hash).fetch_optional(pool).await)?)
    }

    /// The authorization whose (normalised) user code this is, whatever its state.
    pub async fn device_code_by_user_code(&self, user_code: &str) -> AppResult<Option<DeviceCodeRow>> {
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, DeviceCodeRow>(BY_USER_CODE).bind(user_code).fetch_optional(pool).await)?,
        )
    }

    /// Records the person's decision on a pending, unexpired authorization (approval
    /// with `Some`, denial with `None`) and its audit record; false, with nothing
    /// written, when it is no longer pending or has expired.
    pub async fn decide_device_code(
        &self,
        user_code: &str,
        now: DateTime<Utc>,
        approval: Option<&DeviceApproval>,
        audit: Option<&AuditFields>,
    ) -> AppResult<bool> {
        on_pool!(self, pool => within(pool.begin().await?, async |tx| {
            let n = match approval {
                Some(a) => sqlx::query(APPROVE)
                    .bind(user_code).bind(now).bind(a.user_id).bind(a.browser_session_id).bind(a.auth_time).bind(&a.amr)
                    .execute(&mut *tx).await?,
                None => sqlx::query(DENY).bind(user_code).bind(now).execute(&mut *tx).await?,
            }
            .rows_affected();
            if n == 1 {
                append_in_tx(tx, self.audit_key(), audit).await?;
            }
            Ok(n == 1)
        }).await)
    }

    /// Counts a poll of the device code: true when it kept the interval read with the
    /// row (`interval_secs`); otherwise the poll came too soon and the interval grows
    /// by `penalty_secs`.
    pub async fn poll_device_code(
        &self,
        hash: &[u8],
        now: DateTime<Utc>,
        interval_secs: i32,
        penalty_secs: i32,
    ) -> AppResult<bool> {
        let due = now - chrono::Duration::seconds(interval_secs.into());
        let on_time = on_pool!(self, pool => sqlx::query(POLL_ON_TIME)
            .bind(hash).bind(now).bind(due).bind(interval_secs)
            .execute(pool).await.map(|r| r.rows_affected()))?
            == 1;
        if !on_time {
            on_pool!(self, pool => sqlx::query(SLOW_DOWN).bind(hash).bind(now).bind(penalty_secs).execute(pool).await.map(|_| ()))?;
        }
        Ok(on_time)
    }

    /// Marks an approved authorization used; true for the one caller that did.
    pub async fn use_device_code(&self, hash: &[u8]) -> AppResult<bool> {
        let n =
            on_pool!(self, pool => sqlx::query(MARK_USED).bind(hash).execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }
}
