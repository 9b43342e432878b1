//! Authorization codes in flight (kept as their SHA-256 only) and what a person
//! consented to give an application.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Store, on_pool};
use crate::error::AppResult;

row_struct! {
    /// An authorization code as stored (`domain::oidc::authorize` decides what it means).
    #[derive(Debug, Clone)]
    pub struct CodeRow {
        pub code_hash: Vec<u8>,
        pub client_id: String,
        pub user_id: Uuid,
        pub browser_session_id: Uuid,
        pub redirect_uri: String,
        pub scope: String,
        pub nonce: Option<String>,
        pub code_challenge: String,
        pub auth_time: DateTime<Utc>,
        pub amr: String,
        pub created_at: DateTime<Utc>,
        pub expires_at: DateTime<Utc>,
        pub used_at: Option<DateTime<Utc>>,
        pub session_id: Option<Uuid>,
    }
}

macro_rules! code_columns {
    () => {
        "code_hash, client_id, user_id, browser_session_id, redirect_uri, scope, nonce, code_challenge, auth_time, \
         amr, created_at, expires_at, used_at, session_id"
    };
}
const INSERT_CODE: &str = concat!(
    "INSERT INTO oidc_codes (",
    code_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, NULL, NULL)"
);
/// Marks an unused, unexpired code of `client_id` used: the one statement that lets a
/// code be redeemed, so two redemptions at once cannot both succeed.
const CONSUME_CODE: &str = concat!(
    "UPDATE oidc_codes SET used_at = $2 WHERE code_hash = $1 AND used_at IS NULL AND expires_at > $2 \
     AND client_id = $3 RETURNING ",
    code_columns!()
);
const SELECT_CODE: &str = concat!("SELECT ", code_columns!(), " FROM oidc_codes WHERE code_hash = $1");
/// Names the session of a code's redemption, unless something was named first: a
/// redemption names the session it started, a replay a marker (whichever comes first
/// wins, so a replay during a redemption still ends its session).
const CLAIM_CODE_SESSION: &str = "UPDATE oidc_codes SET session_id = $2 WHERE code_hash = $1 AND session_id IS NULL";
const PURGE_CODES: &str = "DELETE FROM oidc_codes WHERE expires_at < $1";

impl Store {
    /// Stores a new code (its `used_at` and `session_id` empty).
    pub async fn insert_code(&self, c: &CodeRow) -> AppResult<()> {
        on_pool!(self, pool => sqlx::query(INSERT_CODE)
            .bind(&c.code_hash).bind(&c.client_id).bind(c.user_id).bind(c.browser_session_id)
            .bind(&c.redirect_uri).bind(&c.scope).bind(&c.nonce).bind(&c.code_challenge)
            .bind(c.auth_time).bind(&c.amr).bind(c.created_at).bind(c.expires_at)
            .execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Uses the code once: the row when it was unused, unexpired and `client_id`'s,
    /// else None (then `code` tells why).
    pub async fn consume_code(&self, hash: &[u8], client_id: &str, now: DateTime<Utc>) -> AppResult<Option<CodeRow>> {
        Ok(on_pool!(self, pool => sqlx::query_as::<_, CodeRow>(CONSUME_CODE)
            .bind(hash).bind(now).bind(client_id).fetch_optional(pool).await)?)
    }

    pub async fn code(&self, hash: &[u8]) -> AppResult<Option<CodeRow>> {
        Ok(on_pool!(self, pool => sqlx::query_as::<_, CodeRow>(SELECT_CODE).bind(hash).fetch_optional(pool).await)?)
    }

    /// Names `session_id` as the code's session (see `CLAIM_CODE_SESSION`); false when
    /// one was named before.
    pub async fn claim_code_session(&self, hash: &[u8], session_id: Uuid) -> AppResult<bool> {
        let n = on_pool!(self, pool => sqlx::query(CLAIM_CODE_SESSION).bind(hash).bind(session_id).execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(n > 0)
    }

    /// Deletes codes that expired before `before`; how many.
    pub async fn purge_codes(&self, before: DateTime<Utc>) -> AppResult<u64> {
        Ok(
            on_pool!(self, pool => sqlx::query(PURGE_CODES).bind(before).execute(pool).await.map(|r| r.rows_affected()))?,
        )
    }
}
