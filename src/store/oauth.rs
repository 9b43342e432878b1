//! Upstream identities linked to users, and redirect flows in progress.

use chrono::{DateTime, Utc};
use sqlx::{Database, Encode, Executor, IntoArguments, Type};
use uuid::Uuid;

use super::audit::append_in_tx;
use super::tx::within;
use super::{AuditFields, Store, conflict_on_unique, on_pool};
use crate::error::{AppError, AppResult};

row_struct! {
    #[derive(Debug, Clone)]
    pub struct IdentityRow {
        pub provider: String,
        pub subject: String,
        pub user_id: Uuid,
        pub email: Option<String>,
        /// With `subject`, the identity's key: the issuer that vouches for it (no
        /// trailing `/`). None only for a row linked before issuers were recorded whose
        /// provider is not configured (no sign-in finds it).
        pub issuer: Option<String>,
        pub created_at: DateTime<Utc>,
        pub last_login_at: DateTime<Utc>,
        /// Sealed under the master key.
        pub access_token: Option<Vec<u8>>,
        /// Sealed under the master key.
        pub refresh_token: Option<Vec<u8>>,
        pub token_expires_at: Option<DateTime<Utc>>,
    }
}

row_struct! {
    #[derive(Debug, Clone)]
    pub struct OAuthStateRow {
        pub state_hash: Vec<u8>,
        pub provider: String,
        pub nonce: String,
        pub pkce_verifier: String,
        pub redirect_uri: String,
        /// SHA-256 of the value in the starting browser's cookie.
        pub browser_hash: Vec<u8>,
        pub created_at: DateTime<Utc>,
        pub expires_at: DateTime<Utc>,
        pub used_at: Option<DateTime<Utc>>,
        /// `app`, `page` or `link` (see migration 0020).
        pub purpose: String,
        /// For `link`: the account the identity is added to.
        pub link_user_id: Option<Uuid>,
    }
}

/// Why a `state` was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateRefusal {
    Unknown,
    Reused,
    Expired,
}

const GET_IDENTITY: &str = "SELECT provider, subject, user_id, email, issuer, created_at, last_login_at, access_token, refresh_token, token_expires_at FROM oauth_identities WHERE issuer = $1 AND subject = $2";
const IDENTITIES_OF: &str = "SELECT provider, subject, user_id, email, issuer, created_at, last_login_at, access_token, refresh_token, token_expires_at FROM oauth_identities WHERE user_id = $1 ORDER BY provider";
const IDENTITY_OF: &str = "SELECT provider, subject, user_id, email, issuer, created_at, last_login_at, access_token, refresh_token, token_expires_at FROM oauth_identities WHERE user_id = $1 AND provider = $2";
const INSERT_IDENTITY: &str = "INSERT INTO oauth_identities (provider, subject, user_id, email, created_at, last_login_at, access_token, refresh_token, token_expires_at, issuer) VALUES ($1, $2, $3, $4, $5, $5, $6, $7, $8, $9)";
// Tokens are replaced only by new ones: a sign-in with an ID token alone keeps them.
const SIGNED_IN: &str = "UPDATE oauth_identities SET last_login_at = $3, email = $4, access_token = COALESCE($5, access_token), refresh_token = COALESCE($6, refresh_token), token_expires_at = CASE WHEN $5 IS NULL THEN token_expires_at ELSE $7 END WHERE issuer = $1 AND subject = $2";
// The name it signed in through, unless the user has another identity under that name.
const RENAMED: &str = "UPDATE oauth_identities SET provider = $3 WHERE issuer = $1 AND subject = $2 AND provider <> $3 AND NOT EXISTS (SELECT 1 FROM oauth_identities o WHERE o.user_id = oauth_identities.user_id AND o.provider = $3)";
// A row linked under a provider's configured issuer, re-keyed by the issuer its tokens
// name (a Microsoft multi-tenant provider's `{tenantid}` filled), unless that is taken.
const REKEY: &str = "UPDATE oauth_identities SET issuer = $3 WHERE issuer = $1 AND subject = $2 AND NOT EXISTS (SELECT 1 FROM oauth_identities o WHERE o.issuer = $3 AND o.subject = $2)";
// Rows linked before issuers were recorded get their provider's configured one.
const FILL_ISSUER: &str = "UPDATE oauth_identities SET issuer = $2 WHERE provider = $1 AND issuer IS NULL AND NOT EXISTS (SELECT 1 FROM oauth_identities o WHERE o.issuer = $2 AND o.subject = oauth_identities.subject)";
const SET_TOKENS: &str = "UPDATE oauth_identities SET access_token = $3, refresh_token = COALESCE($4, refresh_token), token_expires_at = $5 WHERE issuer = $1 AND subject = $2";
// Takes the user's row lock (PostgreSQL) or the write lock (SQLite) first, so two
// unlinks of one user run one after the other and the second counts what is left.
const LOCK_USER: &str = "UPDATE users SET updated_at = updated_at WHERE id = $1";
const COUNT_IDENTITIES: &str = "SELECT COUNT(*) FROM oauth_identities WHERE user_id = $1";
const HAS_PASSWORD: &str = "SELECT COUNT(*) FROM users WHERE id = $1 AND password_hash IS NOT NULL";
const DELETE_IDENTITY: &str = "DELETE FROM oauth_identities WHERE user_id = $1 AND provider = $2";
const INSERT_STATE: &str = "INSERT INTO oauth_states (state_hash, provider, nonce, pkce_verifier, redirect_uri, browser_hash, created_at, expires_at, purpose, link_user_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
const TAKE_STATE: &str = "UPDATE oauth_states SET used_at = $2 WHERE state_hash = $1 AND used_at IS NULL AND expires_at > $2 RETURNING state_hash, provider, nonce, pkce_verifier, redirect_uri, browser_hash, created_at, expires_at, used_at, purpose, link_user_id";
const PEEK_STATE: &str = "SELECT state_hash, provider, nonce, pkce_verifier, redirect_uri, browser_hash, created_at, expires_at, used_at, purpose, link_user_id FROM oauth_states WHERE state_hash = $1";
const PURGE_STATES: &str = "DELETE FROM oauth_states WHERE expires_at < $1";

/// Inside the transaction open on `conn`: links `i` to its user.
pub(crate) async fn insert_identity_in_tx<DB, C>(conn: &mut C, i: &IdentityRow) -> sqlx::Result<()>
where
    DB: Database,
    for<'c> &'c mut C: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> Option<String>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<Vec<u8>>: Encode<'q, DB> + Type<DB>,
    for<'q> Uuid: Encode<'q, DB> + Type<DB>,
    for<'q> DateTime<Utc>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<DateTime<Utc>>: Encode<'q, DB> + Type<DB>,
{
    sqlx::query(INSERT_IDENTITY)
        .bind(&i.provider)
        .bind(&i.subject)
        .bind(i.user_id)
        .bind(&i.email)
        .bind(i.created_at)
        .bind(&i.access_token)
        .bind(&i.refresh_token)
        .bind(i.token_expires_at)
        .bind(&i.issuer)
        .execute(conn)
        .await?;
    Ok(())
}

impl Store {
    /// The identity `subject` at `issuer`.
    pub async fn identity(&self, issuer: &str, subject: &str) -> AppResult<Option<IdentityRow>> {
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, IdentityRow>(GET_IDENTITY).bind(issuer).bind(subject).fetch_optional(pool).await)?,
        )
    }

    /// Moves the identity `subject` at `from` to `to`: false when there is none to
    /// move, or `to` already has one of that subject.
    pub async fn rekey_identity(&self, from: &str, subject: &str, to: &str) -> AppResult<bool> {
        Ok(
            on_pool!(self, pool => sqlx::query(REKEY).bind(from).bind(subject).bind(to).execute(pool).await.map(|r| r.rows_affected() > 0))?,
        )
    }

    /// Gives identities of `provider` that have no issuer the provider's `issuer`
    /// (where no identity of that issuer and subject exists yet); how many.
    pub async fn fill_identity_issuers(&self, provider: &str, issuer: &str) -> AppResult<u64> {
        Ok(
            on_pool!(self, pool => sqlx::query(FILL_ISSUER).bind(provider).bind(issuer).execute(pool).await.map(|r| r.rows_affected()))?,
        )
    }

    pub async fn identities_of(&self, user_id: Uuid) -> AppResult<Vec<IdentityRow>> {
        Ok(on_pool!(self, pool => sqlx::query_as::<_, IdentityRow>(IDENTITIES_OF).bind(user_id).fetch_all(pool).await)?)
    }

    pub async fn identity_of(&self, user_id: Uuid, provider: &str) -> AppResult<Option<IdentityRow>> {
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, IdentityRow>(IDENTITY_OF).bind(user_id).bind(provider).fetch_optional(pool).await)?,
        )
    }

    /// Links an identity to an existing user; 409 when the identity, or another of
    /// this provider for the user, is already linked.
    pub async fn link_identity(&self, identity: &IdentityRow, audit: Option<&AuditFields>) -> AppResult<()> {
        on_pool!(self, pool => within(pool.begin().await?, async |tx| {
            if let Err(e) = insert_identity_in_tx(tx, identity).await {
                return Err(conflict_on_unique(e, "this account is already linked to an identity of that provider"));
            }
            append_in_tx(tx, self.audit_key(), audit).await?;
            Ok(())
        }).await)
    }

    /// Records a sign-in: when, the email the provider now asserts, its fresh tokens,
    /// and the provider name it came through (kept when the user already has another
    /// identity under that name).
    pub async fn identity_signed_in(&self, identity: &IdentityRow, now: DateTime<Utc>) -> AppResult<()> {
        on_pool!(self, pool => within(pool.begin().await?, async |tx| {
            sqlx::query(SIGNED_IN)
                .bind(&identity.issuer)
                .bind(&identity.subject)
                .bind(now)
                .bind(&identity.email)
                .bind(&identity.access_token)
                .bind(&identity.refresh_token)
                .bind(identity.token_expires_at)
                .execute(&mut *tx)
                .await?;
            sqlx::query(RENAMED)
                .bind(&identity.issuer)
                .bind(&identity.subject)
                .bind(&identity.provider)
                .execute(&mut *tx)
                .await?;
            Ok(())
        }).await)
    }

    /// Keeps new upstream tokens for the identity `subject` at `issuer`.
    pub async fn set_identity_tokens(
        &self,
        issuer: &str,
        subject: &str,
        access: &[u8],
        refresh: Option<&[u8]>,
        expires_at: Option<DateTime<Utc>>,
    ) -> AppResult<()> {
        on_pool!(self, pool => sqlx::query(SET_TOKENS).bind(issuer).bind(subject).bind(access).bind(refresh).bind(expires_at).execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    /// Unlinks the user's identity of `provider`: false when there is none, 409 when
    /// it is their last way to sign in (no password, no other identity).
    pub async fn unlink_identity(&self, user_id: Uuid, provider: &str, audit: Option<&AuditFields>) -> AppResult<bool> {
        on_pool!(self, pool => within(pool.begin().await?, async |tx| {
            sqlx::query(LOCK_USER).bind(user_id).execute(&mut *tx).await?;
            let identities: i64 = sqlx::query_scalar(COUNT_IDENTITIES).bind(user_id).fetch_one(&mut *tx).await?;
            let password: i64 = sqlx::query_scalar(HAS_PASSWORD).bind(user_id).fetch_one(&mut *tx).await?;
            let removed = sqlx::query(DELETE_IDENTITY).bind(user_id).bind(provider).execute(&mut *tx).await?.rows_affected() > 0;
            if removed && identities <= 1 && password == 0 {
                return Err(AppError::Conflict("this is your last way to sign in to this account".into()));
            }
            append_in_tx(tx, self.audit_key(), audit.filter(|_| removed)).await?;
            Ok(removed)
        }).await)
    }

    pub async fn insert_oauth_state(&self, s: &OAuthStateRow) -> AppResult<()> {
        on_pool!(self, pool => sqlx::query(INSERT_STATE)
            .bind(&s.state_hash)
            .bind(&s.provider)
            .bind(&s.nonce)
            .bind(&s.pkce_verifier)
            .bind(&s.redirect_uri)
            .bind(&s.browser_hash)
            .bind(s.created_at)
            .bind(s.expires_at)
            .bind(&s.purpose)
            .bind(s.link_user_id)
            .execute(pool)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    /// Spends a state once; why not, when it cannot be spent.
    pub async fn take_oauth_state(
        &self,
        hash: &[u8],
        now: DateTime<Utc>,
    ) -> AppResult<Result<OAuthStateRow, StateRefusal>> {
        let taken: Option<OAuthStateRow> =
            on_pool!(self, pool => sqlx::query_as(TAKE_STATE).bind(hash).bind(now).fetch_optional(pool).await)?;
        if let Some(row) = taken {
            return Ok(Ok(row));
        }
        let seen: Option<OAuthStateRow> =
            on_pool!(self, pool => sqlx::query_as(PEEK_STATE).bind(hash).fetch_optional(pool).await)?;
        Ok(Err(match seen {
            None => StateRefusal::Unknown,
            Some(s) if s.used_at.is_some() => StateRefusal::Reused,
            Some(_) => StateRefusal::Expired,
        }))
    }

    pub async fn purge_oauth_states(&self, before: DateTime<Utc>) -> AppResult<u64> {
        Ok(
            on_pool!(self, pool => sqlx::query(PURGE_STATES).bind(before).execute(pool).await.map(|r| r.rows_affected()))?,
        )
    }
}
