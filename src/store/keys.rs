//! JWT signing keys; private halves arrive here already sealed under the master key.
//! And a sample of everything sealed under it, for checking a master key before use.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::audit::append_in_tx;
use super::credentials::record_event;
use super::tx::within;
use super::{AuditFields, Store, on_pool};
use crate::error::AppResult;

row_struct! {
    #[derive(Debug, Clone)]
    pub struct SigningKeyRow {
        pub kid: String,
        pub algorithm: String,
        pub private_key: Vec<u8>,
        pub public_jwk: String,
        pub created_at: DateTime<Utc>,
        pub retired_at: Option<DateTime<Utc>>,
    }
}

const SELECT_KEYS: &str = "SELECT kid, algorithm, private_key, public_jwk, created_at, retired_at FROM signing_keys WHERE retired_at IS NULL OR retired_at > $1 ORDER BY created_at";
const INSERT_KEY: &str =
    "INSERT INTO signing_keys (kid, algorithm, private_key, public_jwk, created_at) VALUES ($1, $2, $3, $4, $5)";
const RETIRE_OTHERS: &str = "UPDATE signing_keys SET retired_at = $2 WHERE kid <> $1 AND retired_at IS NULL";
const COUNT_ACTIVE: &str = "SELECT COUNT(*) FROM signing_keys WHERE retired_at IS NULL";
const ONE_SIGNING_KEY: &str = "SELECT private_key FROM signing_keys ORDER BY created_at DESC LIMIT 1";
const ONE_TOTP_SECRET: &str = "SELECT user_id, secret FROM mfa_totp LIMIT 1";
const ONE_UPSTREAM_TOKEN: &str = "SELECT COALESCE(access_token, refresh_token) FROM oauth_identities \
     WHERE access_token IS NOT NULL OR refresh_token IS NOT NULL LIMIT 1";

/// The revocation feed's event for a new signing key (subject: its kid): followers
/// reload their keys on it.
pub const KEYS_CHANGED: &str = "signing_keys";

/// One value sealed under the master key, and what it was sealed for.
#[derive(Debug, Clone)]
pub enum SealedSample {
    /// A private signing key.
    SigningKey(Vec<u8>),
    /// A user's TOTP secret.
    TotpSecret(Uuid, Vec<u8>),
    /// An upstream provider's access or refresh token.
    UpstreamToken(Vec<u8>),
}

impl Store {
    /// Keys still signing, or retired after `retired_after` (their tokens may live on).
    pub async fn signing_keys(&self, retired_after: DateTime<Utc>) -> AppResult<Vec<SigningKeyRow>> {
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, SigningKeyRow>(SELECT_KEYS).bind(retired_after).fetch_all(pool).await)?,
        )
    }

    /// Adds a key that becomes the one new tokens are signed with; every other key is
    /// retired at `now` and kept only for verification. The feed tells every instance
    /// when it commits.
    pub async fn add_signing_key(&self, key: &SigningKeyRow, audit: Option<&AuditFields>) -> AppResult<()> {
        on_pool!(self, pool => within(pool.begin().await?, async |tx| {
            sqlx::query(INSERT_KEY)
                .bind(&key.kid)
                .bind(&key.algorithm)
                .bind(&key.private_key)
                .bind(&key.public_jwk)
                .bind(key.created_at)
                .execute(&mut *tx)
                .await?;
            sqlx::query(RETIRE_OTHERS).bind(&key.kid).bind(key.created_at).execute(&mut *tx).await?;
            record_event(tx, KEYS_CHANGED, &key.kid, key.created_at).await?;
            append_in_tx(tx, self.audit_key(), audit).await?;
            Ok(())
        }).await)
    }

    pub async fn active_signing_key_count(&self) -> AppResult<i64> {
        Ok(on_pool!(self, pool => sqlx::query_scalar::<_, i64>(COUNT_ACTIVE).fetch_one(pool).await)?)
    }

    /// One sealed value of each kind the database holds (none on a fresh database).
    pub async fn sealed_samples(&self) -> AppResult<Vec<SealedSample>> {
        let key: Option<Vec<u8>> =
            on_pool!(self, pool => sqlx::query_scalar(ONE_SIGNING_KEY).fetch_optional(pool).await)?;
        let totp: Option<(Uuid, Vec<u8>)> =
            on_pool!(self, pool => sqlx::query_as(ONE_TOTP_SECRET).fetch_optional(pool).await)?;
        let upstream: Option<Vec<u8>> =
            on_pool!(self, pool => sqlx::query_scalar(ONE_UPSTREAM_TOKEN).fetch_optional(pool).await)?;
        Ok(key
            .map(SealedSample::SigningKey)
            .into_iter()
            .chain(totp.map(|(user, secret)| SealedSample::TotpSecret(user, secret)))
            .chain(upstream.map(SealedSample::UpstreamToken))
            .collect())
    }
}
