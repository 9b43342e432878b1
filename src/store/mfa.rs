//! Second factors: TOTP secrets (sealed), recovery codes (hashed), and the
//! short-lived tickets between a password and its second factor.

use chrono::{DateTime, Utc};
use sqlx::{Database, Encode, Executor, IntoArguments, Type};
use uuid::Uuid;

use super::audit::append_in_tx;
use super::tx::within;
use super::{AuditFields, Store, on_pool};
use crate::error::AppResult;

row_struct! {
    #[derive(Debug, Clone)]
    pub struct TotpRow {
        pub user_id: Uuid,
        /// Sealed under the master key.
        pub secret: Vec<u8>,
        pub created_at: DateTime<Utc>,
        /// None while enrolment waits for its first code.
        pub confirmed_at: Option<DateTime<Utc>>,
        /// The last time step accepted; a code of this step or earlier is refused.
        pub last_step: i64,
    }
}

row_struct! {
    /// A ticket: an `mfa_token` (purpose `verify`) or an enrolment-only token (`enroll`).
    #[derive(Debug, Clone)]
    pub struct MfaTicketRow {
        pub token_hash: Vec<u8>,
        pub user_id: Uuid,
        pub purpose: String,
        /// The factors already proven, as JSON (`["pwd"]`).
        pub amr: String,
        pub failures: i32,
        pub created_at: DateTime<Utc>,
        pub expires_at: DateTime<Utc>,
        pub used_at: Option<DateTime<Utc>>,
    }
}

const SELECT_TOTP: &str =
    "SELECT user_id, secret, created_at, confirmed_at, last_step FROM mfa_totp WHERE user_id = $1";
// A confirmed factor is never overwritten by a new enrolment.
const START_TOTP: &str = "INSERT INTO mfa_totp (user_id, secret, created_at, confirmed_at, last_step) VALUES ($1, $2, $3, NULL, 0) ON CONFLICT (user_id) DO UPDATE SET secret = excluded.secret, created_at = excluded.created_at WHERE mfa_totp.confirmed_at IS NULL";
// The secret must still be the one the code was checked against.
const CONFIRM_TOTP: &str =
    "UPDATE mfa_totp SET confirmed_at = $2, last_step = $3 WHERE user_id = $1 AND confirmed_at IS NULL AND secret = $4";
const USE_STEP: &str =
    "UPDATE mfa_totp SET last_step = $2 WHERE user_id = $1 AND confirmed_at IS NOT NULL AND last_step < $2";
const CONFIRMED: &str = "SELECT COUNT(*) FROM mfa_totp WHERE user_id = $1 AND confirmed_at IS NOT NULL";
const DELETE_TOTP: &str = "DELETE FROM mfa_totp WHERE user_id = $1";
const DELETE_CODES: &str = "DELETE FROM mfa_recovery_codes WHERE user_id = $1";
/// Open MFA tickets of a user; they die with a password change or reset too.
pub(crate) const DELETE_USER_TICKETS: &str = "DELETE FROM mfa_tickets WHERE user_id = $1";
const INSERT_CODE: &str = "INSERT INTO mfa_recovery_codes (code_hash, user_id, created_at) VALUES ($1, $2, $3)";
const USE_CODE: &str =
    "UPDATE mfa_recovery_codes SET used_at = $3 WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL";
const CODES_LEFT: &str = "SELECT COUNT(*) FROM mfa_recovery_codes WHERE user_id = $1 AND used_at IS NULL";
const INSERT_TICKET: &str = "INSERT INTO mfa_tickets (token_hash, user_id, purpose, amr, failures, created_at, expires_at) VALUES ($1, $2, $3, $4, 0, $5, $6)";
const GET_TICKET: &str = "SELECT token_hash, user_id, purpose, amr, failures, created_at, expires_at, used_at FROM mfa_tickets WHERE token_hash = $1 AND purpose = $2";
const ATTEMPT_TICKET: &str = "UPDATE mfa_tickets SET failures = failures + 1 WHERE token_hash = $1 AND purpose = 'verify' AND used_at IS NULL AND expires_at > $2 AND failures < $3 RETURNING token_hash, user_id, purpose, amr, failures, created_at, expires_at, used_at";
const SPEND_TICKET: &str =
    "UPDATE mfa_tickets SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2";
const DELETE_TICKET: &str = "DELETE FROM mfa_tickets WHERE token_hash = $1";
const PURGE_TICKETS: &str = "DELETE FROM mfa_tickets WHERE expires_at < $1";

/// Inside the transaction open on `conn`: the user's recovery codes become `hashes`.
async fn replace_codes_in_tx<DB, C>(
    conn: &mut C,
    user_id: Uuid,
    hashes: &[[u8; 32]],
    now: DateTime<Utc>,
) -> sqlx::Result<()>
where
    DB: Database,
    for<'c> &'c mut C: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'q> Uuid: Encode<'q, DB> + Type<DB>,
    for<'a> &'a [u8]: Encode<'a, DB> + Type<DB>,
    for<'q> DateTime<Utc>: Encode<'q, DB> + Type<DB>,
{
    sqlx::query(DELETE_CODES).bind(user_id).execute(&mut *conn).await?;
    for hash in hashes {
        sqlx::query(INSERT_CODE)
            .bind(&hash[..])
            .bind(user_id)
            .bind(now)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

impl Store {
    pub async fn totp(&self, user_id: Uuid) -> AppResult<Option<TotpRow>> {
        Ok(on_pool!(self, pool => sqlx::query_as::<_, TotpRow>(SELECT_TOTP).bind(user_id).fetch_optional(pool).await)?)
    }

    /// Stores a pending factor, replacing a pending one. False when a confirmed factor
    /// exists (it must be removed first).
    pub async fn start_totp(
        &self,
        user_id: Uuid,
        sealed: &[u8],
        now: DateTime<Utc>,
        audit: Option<&AuditFields>,
    ) -> AppResult<bool> {
        on_pool!(self, pool => within(pool.begin().await?, async |tx| {
            let stored = sqlx::query(START_TOTP).bind(user_id).bind(sealed).bind(now).execute(&mut *tx).await?.rows_affected() > 0;
            append_in_tx(tx, self.audit_key(), audit.filter(|_| stored)).await?;
            Ok(stored)
        }).await)
    }

    /// Confirms the pending factor whose sealed secret is `sealed`, records `step` as
    /// used, and replaces the recovery codes. False when there was no such pending factor.
    pub async fn confirm_totp(
        &self,
        user_id: Uuid,
        sealed: &[u8],
        step: i64,
        code_hashes: &[[u8; 32]],
        now: DateTime<Utc>,
        audit: Option<&AuditFields>,
    ) -> AppResult<bool> {
        on_pool!(self, pool => within(pool.begin().await?, async |tx| {
            let confirmed = sqlx::query(CONFIRM_TOTP).bind(user_id).bind(now).bind(step).bind(sealed).execute(&mut *tx).await?.rows_affected() > 0;
            if confirmed {
                replace_codes_in_tx(tx, user_id, code_hashes, now).await?;
                // The enrolment-only token has done its job.
                sqlx::query(DELETE_USER_TICKETS).bind(user_id).execute(&mut *tx).await?;
                append_in_tx(tx, self.audit_key(), audit).await?;
            }
            Ok(confirmed)
        }).await)
    }

    /// Records `step` as used: false when it (or a later one) already was, so of two
    /// requests with the same code only one gets through.
    pub async fn use_totp_step(&self, user_id: Uuid, step: i64) -> AppResult<bool> {
        Ok(
            on_pool!(self, pool => sqlx::query(USE_STEP).bind(user_id).bind(step).execute(pool).await?.rows_affected() > 0),
        )
    }

    /// Replaces the recovery codes of a user with a confirmed factor; false without one.
    pub async fn replace_recovery_codes(
        &self,
        user_id: Uuid,
        code_hashes: &[[u8; 32]],
        now: DateTime<Utc>,
        audit: Option<&AuditFields>,
    ) -> AppResult<bool> {
        on_pool!(self, pool => within(pool.begin().await?, async |tx| {
            let enrolled: i64 = sqlx::query_scalar(CONFIRMED).bind(user_id).fetch_one(&mut *tx).await?;
            if enrolled > 0 {
                replace_codes_in_tx(tx, user_id, code_hashes, now).await?;
                append_in_tx(tx, self.audit_key(), audit).await?;
            }
            Ok(enrolled > 0)
        }).await)
    }

    /// Spends a recovery code; false when it is not one of the user's unused codes.
    pub async fn use_recovery_code(&self, user_id: Uuid, hash: &[u8], now: DateTime<Utc>) -> AppResult<bool> {
        Ok(
            on_pool!(self, pool => sqlx::query(USE_CODE).bind(user_id).bind(hash).bind(now).execute(pool).await?.rows_affected() > 0),
        )
    }

    pub async fn recovery_codes_left(&self, user_id: Uuid) -> AppResult<i64> {
        Ok(on_pool!(self, pool => sqlx::query_scalar::<_, i64>(CODES_LEFT).bind(user_id).fetch_one(pool).await)?)
    }

    /// Removes the user's factor, recovery codes and open tickets; false when there
    /// was no factor, pending or confirmed.
    pub async fn remove_mfa(&self, user_id: Uuid, audit: Option<&AuditFields>) -> AppResult<bool> {
        on_pool!(self, pool => within(pool.begin().await?, async |tx| {
            let removed = sqlx::query(DELETE_TOTP).bind(user_id).execute(&mut *tx).await?.rows_affected() > 0;
            sqlx::query(DELETE_CODES).bind(user_id).execute(&mut *tx).await?;
            sqlx::query(DELETE_USER_TICKETS).bind(user_id).execute(&mut *tx).await?;
            append_in_tx(tx, self.audit_key(), audit.filter(|_| removed)).await?;
            Ok(removed)
        }).await)
    }

    pub async fn insert_mfa_ticket(&self, t: &MfaTicketRow, audit: Option<&AuditFields>) -> AppResult<()> {
        on_pool!(self, pool => within(pool.begin().await?, async |tx| {
            sqlx::query(INSERT_TICKET)
                .bind(&t.token_hash)
                .bind(t.user_id)
                .bind(&t.purpose)
                .bind(&t.amr)
                .bind(t.created_at)
                .bind(t.expires_at)
                .execute(&mut *tx)
                .await?;
            append_in_tx(tx, self.audit_key(), audit).await?;
            Ok(())
        }).await)
    }

    pub async fn mfa_ticket(&self, hash: &[u8], purpose: &str) -> AppResult<Option<MfaTicketRow>> {
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, MfaTicketRow>(GET_TICKET).bind(hash).bind(purpose).fetch_optional(pool).await)?,
        )
    }

    /// Counts an attempt on an `mfa_token` ticket, atomically: None when it is
    /// unknown, spent, expired or already had `max_attempts`; else the ticket, with
    /// this attempt counted.
    pub async fn attempt_mfa_ticket(
        &self,
        hash: &[u8],
        now: DateTime<Utc>,
        max_attempts: i32,
    ) -> AppResult<Option<MfaTicketRow>> {
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, MfaTicketRow>(ATTEMPT_TICKET).bind(hash).bind(now).bind(max_attempts).fetch_optional(pool).await)?,
        )
    }

    /// Spends a ticket once: false when already spent or expired.
    pub async fn spend_mfa_ticket(&self, hash: &[u8], now: DateTime<Utc>) -> AppResult<bool> {
        Ok(
            on_pool!(self, pool => sqlx::query(SPEND_TICKET).bind(hash).bind(now).execute(pool).await?.rows_affected() > 0),
        )
    }

    pub async fn delete_mfa_ticket(&self, hash: &[u8]) -> AppResult<()> {
        on_pool!(self, pool => sqlx::query(DELETE_TICKET).bind(hash).execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    pub async fn purge_mfa_tickets(&self, before: DateTime<Utc>) -> AppResult<u64> {
        Ok(
            on_pool!(self, pool => sqlx::query(PURGE_TICKETS).bind(before).execute(pool).await.map(|r| r.rows_affected()))?,
        )
    }
}
