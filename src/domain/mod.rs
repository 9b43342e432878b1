//! Identity logic, independent of HTTP: accounts, sessions, token checks.
//!
//! `Portcullis` is the service type. The HTTP layer is one client of it; the CLI and
//! services embedding the crate are others.

pub mod accounts;
pub mod audit;
pub mod authn;
pub mod credentials;
pub mod keys;
pub mod lockout;
pub mod login;
pub mod mfa;
pub mod oauth;
pub mod rbac;
pub mod revocation;
pub mod sessions;
pub mod validate;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::crypto::password::PasswordHasher;
use crate::crypto::secretbox::MasterKey;
use crate::store::Store;

pub use audit::{Actor, AuditEvent};
pub use authn::{Credential, Principal, TokenCache};
pub use sessions::{ClientContext, TokenPair};

#[derive(Clone)]
pub struct Portcullis {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub config: Arc<Config>,
    pub store: Store,
    pub hasher: PasswordHasher,
    pub keys: keys::KeyManager,
    pub revocations: revocation::RevocationSet,
    pub applied: revocation::AppliedRows,
    pub token_cache: TokenCache,
    pub credentials: credentials::CredentialCache,
    pub policy: validate::PasswordPolicy,
    pub audit: audit::AuditTrail,
    pub oauth: oauth::OAuthClients,
    pub rotations: sessions::RotationQueue,
}

/// How the master key was obtained, so start-up can warn about a generated one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MasterKeySource {
    Config,
    ExistingFile,
    GeneratedFile,
}

/// `first` and whatever is already queued behind it, at most `max` in all: the batch a
/// writer task takes after waking for one item (request audit records, rotations).
pub(crate) fn with_queued<T>(first: T, queued: &flume::Receiver<T>, max: usize) -> impl Iterator<Item = T> + '_ {
    std::iter::once(first).chain(queued.try_iter().take(max.saturating_sub(1)))
}

/// Loads the master key from config, or from (or into) the key file.
pub fn load_master_key(config: &Config) -> anyhow::Result<(MasterKey, MasterKeySource)> {
    match &config.bootstrap.master_key {
        Some(value) => Ok((MasterKey::from_config_value(value)?, MasterKeySource::Config)),
        None => {
            let (key, created) = MasterKey::load_or_create_file(&config.bootstrap.master_key_file)?;
            Ok((
                key,
                if created {
                    MasterKeySource::GeneratedFile
                } else {
                    MasterKeySource::ExistingFile
                },
            ))
        }
    }
}

impl Portcullis {
    /// Opens the store (migrating it) and loads keys: everything `serve` needs.
    pub async fn open(config: Config) -> anyhow::Result<Self> {
        let store = Store::connect(&config.database.target, config.database.max_connections).await?;
        store.migrate().await?;
        Self::with_store(config, store).await
    }

    pub async fn with_store(config: Config, store: Store) -> anyhow::Result<Self> {
        crate::crypto::jwt::install_provider();
        let (master, source) = load_master_key(&config)?;
        if source == MasterKeySource::GeneratedFile {
            tracing::warn!(
                path = %config.bootstrap.master_key_file.display(),
                "generated a new master key file; back it up, or set PORTCULLIS_MASTER_KEY (it seals the signing keys)"
            );
        }
        let hasher = PasswordHasher::start(
            config.passwords.hash_params,
            config.passwords.hash_concurrency,
            config.passwords.hash_queue,
        )
        .await?;
        // Imported bcrypt hashes still stored set what every verification costs.
        let bcrypt_costs = store.bcrypt_costs().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        if let Some(cost) = bcrypt_costs.iter().filter_map(|c| c.parse::<u32>().ok()).max() {
            hasher.expect_bcrypt(cost).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        let keys = keys::KeyManager::load(&config, store.clone(), master).await?;
        let policy = validate::PasswordPolicy {
            min_length: config.passwords.min_length,
            max_length: config.passwords.max_length,
            min_score: config.passwords.min_score,
        };
        let audit = audit::AuditTrail::new(config.audit.enabled, config.audit.buffer);
        let oauth = oauth::OAuthClients::new(&config.oauth)?;
        let rotations = sessions::RotationQueue::start(store.clone(), audit.own_chain("r0"));
        let service = Self {
            inner: Arc::new(Inner {
                rotations,
                audit,
                oauth,
                token_cache: TokenCache::new(config.tokens.token_cache_capacity),
                credentials: credentials::CredentialCache::new(config.tokens.token_cache_capacity),
                config: Arc::new(config),
                store,
                hasher,
                keys,
                revocations: revocation::RevocationSet::default(),
                applied: revocation::AppliedRows::default(),
                policy,
            }),
        };
        service.load_revocations().await?;
        Ok(service)
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn keys(&self) -> &keys::KeyManager {
        &self.inner.keys
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    /// Until when a revocation must be remembered: by then every access token of the
    /// revoked session has expired.
    pub(crate) fn revocation_horizon(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let c = &self.inner.config;
        now + chrono::Duration::from_std(c.tokens.access_token_ttl + c.tokens.jwt_leeway + Duration::from_secs(60))
            .unwrap_or(chrono::Duration::hours(25))
    }

    async fn load_revocations(&self) -> anyhow::Result<()> {
        let rows = self
            .inner
            .store
            .live_revocations(Utc::now())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        self.apply_feed(&rows);
        Ok(())
    }

    /// Pulls revocations other instances wrote since `since` (callers overlap windows).
    pub async fn sync_revocations(&self, since: DateTime<Utc>) -> anyhow::Result<usize> {
        let rows = self
            .inner
            .store
            .revocations_since(since)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        self.apply_feed(&rows);
        Ok(rows.len())
    }

    /// Ended sessions, revoked keys, changed users and grants, from the feed.
    fn apply_feed(&self, rows: &[crate::store::RevocationRow]) {
        let fresh = self.inner.applied.fresh(rows);
        self.inner.revocations.apply(&fresh);
        self.inner.credentials.apply(&fresh);
    }

    /// The minutely upkeep: drops revocations, throttles, audit records, MFA tickets and
    /// OAuth states that no longer matter, and indexes new audit records by user.
    pub async fn purge_expired(&self) -> anyhow::Result<()> {
        let now = Utc::now();
        self.inner.revocations.purge(now);
        self.inner
            .store
            .purge_revocations(now)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        self.purge_login_throttle(now)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        self.purge_audit(now).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        self.purge_mfa_tickets(now).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        self.purge_oauth_states(now).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        // Every record not yet indexed by user, however few: the writer waits for a long
        // run, which an idle instance would never reach. Last, so that a failure here
        // (SQLite busy, say) holds back none of the purges.
        self.inner
            .store
            .index_audit_by_user(1)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(())
    }

    /// Marks sessions ended on this instance at once (the feed tells the others).
    pub(crate) fn forget_sessions(&self, ids: &[uuid::Uuid], now: DateTime<Utc>) {
        let until = self.revocation_horizon(now);
        for id in ids {
            self.inner.revocations.revoke_session(*id, until);
        }
    }
}
