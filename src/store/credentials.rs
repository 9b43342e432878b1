//! API keys and temporary tokens, and the invalidation events other instances
//! follow (through the same `revocations` feed as ended sessions).

use chrono::{DateTime, Utc};
use sqlx::{Database, Encode, Executor, IntoArguments, Type};
use uuid::Uuid;

use super::audit::append_in_tx;
use super::tx::within;
use super::{AuditFields, Store, on_pool};
use crate::error::AppResult;

row_struct! {
    #[derive(Debug, Clone)]
    pub struct ApiKeyRow {
        pub id: String,
        pub user_id: Uuid,
        pub name: String,
        pub secret_hash: Vec<u8>,
        /// JSON array.
        pub permissions: String,
        pub created_at: DateTime<Utc>,
        pub expires_at: Option<DateTime<Utc>>,
        pub last_used_at: Option<DateTime<Utc>>,
        pub revoked_at: Option<DateTime<Utc>>,
    }
}

row_struct! {
    #[derive(Debug, Clone)]
    pub struct TemporaryTokenRow {
        pub id: String,
        pub token_hash: Vec<u8>,
        pub user_id: Uuid,
        /// JSON array.
        pub permissions: String,
        pub purpose: String,
        pub max_uses: Option<i32>,
        pub uses: i32,
        pub created_at: DateTime<Utc>,
        pub expires_at: DateTime<Utc>,
        pub revoked_at: Option<DateTime<Utc>>,
    }
}

/// How long an invalidation event stays in the feed: long enough for every instance
/// to have read it many times over.
fn event_expiry(now: DateTime<Utc>) -> DateTime<Utc> {
    now + chrono::Duration::hours(1)
}

/// Invalidation events: `api_key` (id), `user` (id: status or grants changed),
/// `grants` (`*`: some role or permission changed) and `signing_keys` (the new kid:
/// see `keys::KEYS_CHANGED`).
const INSERT_EVENT: &str = "INSERT INTO revocations (kind, subject, created_at, expires_at) VALUES ($1, $2, $3, $4)";

/// Records an invalidation event inside the transaction open on `conn`, so that other
/// instances hear of the change exactly when it commits.
pub(crate) async fn record_event<DB, C>(conn: &mut C, kind: &str, subject: &str, now: DateTime<Utc>) -> sqlx::Result<()>
where
    DB: Database,
    for<'c> &'c mut C: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'a> &'a str: Encode<'a, DB> + Type<DB>,
    for<'q> DateTime<Utc>: Encode<'q, DB> + Type<DB>,
{
    sqlx::query(INSERT_EVENT)
        .bind(kind)
        .bind(subject)
        .bind(now)
        .bind(event_expiry(now))
        .execute(conn)
        .await?;
    Ok(())
}

const INSERT_KEY: &str = "INSERT INTO api_keys (id, user_id, name, secret_hash, permissions, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)";
const GET_KEY: &str = "SELECT id, user_id, name, secret_hash, permissions, created_at, expires_at, last_used_at, revoked_at FROM api_keys WHERE id = $1";
const KEYS_OF: &str = "SELECT id, user_id, name, secret_hash, permissions, created_at, expires_at, last_used_at, revoked_at FROM api_keys WHERE user_id = $1 ORDER BY created_at DESC";
const ALL_KEYS: &str = "SELECT id, user_id, name, secret_hash, permissions, created_at, expires_at, last_used_at, revoked_at FROM api_keys ORDER BY created_at DESC LIMIT $1 OFFSET $2";
const REVOKE_KEY: &str = "UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL";
const REVOKE_OWN_KEY: &str =
    "UPDATE api_keys SET revoked_at = $3 WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL";
const TOUCH_KEY: &str =
    "UPDATE api_keys SET last_used_at = $2 WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2)";
const INSERT_TEMP: &str = "INSERT INTO temporary_tokens (id, token_hash, user_id, permissions, purpose, max_uses, uses, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $8)";
const USE_TEMP: &str = "UPDATE temporary_tokens SET uses = uses + 1 WHERE token_hash = $1 AND revoked_at IS NULL AND expires_at > $2 AND (max_uses IS NULL OR uses < max_uses) RETURNING id, token_hash, user_id, permissions, purpose, max_uses, uses, created_at, expires_at, revoked_at";
const PEEK_TEMP: &str = "SELECT id, token_hash, user_id, permissions, purpose, max_uses, uses, created_at, expires_at, revoked_at FROM temporary_tokens WHERE token_hash = $1";
const REVOKE_TEMP: &str = "UPDATE temporary_tokens SET revoked_at = $2 WHERE token_hash = $1 AND revoked_at IS NULL";

impl Store {
    pub async fn insert_api_key(&self, k: &ApiKeyRow, audit: Option<&AuditFields>) -> AppResult<()> {
        on_pool!(self, pool => within(pool.begin().await?, async |tx| {
            sqlx::query(INSERT_KEY)
                .bind(&k.id)
                .bind(k.user_id)
                .bind(&k.name)
                .bind(&k.secret_hash)
                .bind(&k.permissions)
                .bind(k.created_at)
                .bind(k.expires_at)
                .execute(&mut *tx)
                .await?;
            append_in_tx(tx, self.audit_key(), audit).await?;
            Ok(())
        }).await)
    }

    pub async fn api_key(&self, id: &str) -> AppResult<Option<ApiKeyRow>> {
        Ok(on_pool!(self, pool => sqlx::query_as::<_, ApiKeyRow>(GET_KEY).bind(id).fetch_optional(pool).await)?)
    }

    pub async fn api_keys_of(&self, user_id: Uuid) -> AppResult<Vec<ApiKeyRow>> {
        Ok(on_pool!(self, pool => sqlx::query_as::<_, ApiKeyRow>(KEYS_OF).bind(user_id).fetch_all(pool).await)?)
    }

    pub async fn all_api_keys(&self, limit: i64, offset: i64) -> AppResult<Vec<ApiKeyRow>> {
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, ApiKeyRow>(ALL_KEYS).bind(limit).bind(offset).fetch_all(pool).await)?,
        )
    }

    /// Revokes a key (only the owner's, when `owner` is given) and tells the other
    /// instances, in one transaction. False when there was no such live key.
    pub async fn revoke_api_key(
        &self,
        id: &str,
        owner: Option<Uuid>,
        now: DateTime<Utc>,
        audit: Option<&AuditFields>,
    ) -> AppResult<bool> {
        on_pool!(self, pool => within(pool.begin().await?, async |tx| {
            let changed = match owner {
                Some(user_id) => sqlx::query(REVOKE_OWN_KEY).bind(id).bind(user_id).bind(now).execute(&mut *tx).await?,
                None => sqlx::query(REVOKE_KEY).bind(id).bind(now).execute(&mut *tx).await?,
            }
            .rows_affected()
                > 0;
            if changed {
                record_event(tx, "api_key", id, now).await?;
                append_in_tx(tx, self.audit_key(), audit).await?;
            }
            Ok(changed)
        }).await)
    }

    /// Writes batched last-used times.
    pub async fn touch_api_keys(&self, used: &[(String, DateTime<Utc>)]) -> AppResult<()> {
        if used.is_empty() {
            return Ok(());
        }
        on_pool!(self, pool => within(pool.begin().await?, async |tx| {
            for (id, at) in used {
                sqlx::query(TOUCH_KEY).bind(id).bind(*at).execute(&mut *tx).await?;
            }
            Ok(())
        }).await)
    }

    pub async fn insert_temporary_token(&self, t: &TemporaryTokenRow, audit: Option<&AuditFields>) -> AppResult<()> {
        on_pool!(self, pool => within(pool.begin().await?, async |tx| {
            sqlx::query(INSERT_TEMP)
                .bind(&t.id)
                .bind(&t.token_hash)
                .bind(t.user_id)
                .bind(&t.permissions)
                .bind(&t.purpose)
                .bind(t.max_uses)
                .bind(t.created_at)
                .bind(t.expires_at)
                .execute(&mut *tx)
                .await?;
            append_in_tx(tx, self.audit_key(), audit).await?;
            Ok(())
        }).await)
    }

    /// Spends one use of a temporary token, atomically: of concurrent callers on any
    /// instance, no more succeed than uses remain. None when unknown, revoked,
    /// expired or used up.
    pub async fn use_temporary_token(&self, hash: &[u8], now: DateTime<Utc>) -> AppResult<Option<TemporaryTokenRow>> {
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, TemporaryTokenRow>(USE_TEMP).bind(hash).bind(now).fetch_optional(pool).await)?,
        )
    }

    /// Reads a temporary token without spending a use (introspection).
    pub async fn peek_temporary_token(&self, hash: &[u8]) -> AppResult<Option<TemporaryTokenRow>> {
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, TemporaryTokenRow>(PEEK_TEMP).bind(hash).fetch_optional(pool).await)?,
        )
    }

    pub async fn revoke_temporary_token(&self, hash: &[u8], now: DateTime<Utc>) -> AppResult<bool> {
        Ok(
            on_pool!(self, pool => sqlx::query(REVOKE_TEMP).bind(hash).bind(now).execute(pool).await?.rows_affected() > 0),
        )
    }
}
