//! Identity logic, independent of HTTP: accounts, sessions, token checks.
//!
//! `Portcullis` is the service type. The HTTP layer is one client of it; the CLI and
//! services embedding the crate are others.

pub mod accounts;
pub mod audit;
pub mod authn;
pub mod browser;
pub mod credentials;
pub mod instances;
pub mod keys;
pub mod lockout;
pub mod login;
pub mod master;
pub mod mfa;
pub mod oauth;
pub mod oidc;
pub mod privilege;
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
use crate::store::{AuditKey, Store};

pub use audit::{Actor, AuditEvent, Authority};
pub use authn::{Credential, Principal, TokenCache, TokenFacts};
pub use browser::{BrowserSession, StepUpProof};
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
    pub feed: revocation::FeedCursor,
    /// Added to this instance's clock where it stamps revocations (see `skew_clock`).
    pub clock_skew_ms: std::sync::atomic::AtomicI64,
    /// Unix seconds: the latest moment an access token issued by any instance may
    /// expire, as last read from the store (see `raise_token_horizon`).
    pub token_horizon: std::sync::atomic::AtomicI64,
    pub token_cache: TokenCache,
    pub credentials: credentials::CredentialCache,
    pub policy: validate::PasswordPolicy,
    pub audit: audit::AuditTrail,
    pub oauth: oauth::OAuthClients,
    pub rotations: sessions::RotationQueue,
    /// This process's id among the instances serving from the database.
    pub instance: String,
    /// Signs the re-authentication marker of authorization requests (derived from
    /// the master key, so every instance agrees; random without one).
    pub marker_key: aws_lc_rs::hmac::Key,
}

pub use master::{MasterKeySource, load_master_key};

/// How often each instance raises the token horizon (two minutes ahead of the tokens
/// it may issue meanwhile).
pub const HORIZON_INTERVAL: Duration = Duration::from_secs(30);

/// `first` and whatever is already queued behind it, at most `max` in all: the batch a
/// writer task takes after waking for one item (request audit records, rotations).
pub(crate) fn with_queued<T>(first: T, queued: &flume::Receiver<T>, max: usize) -> impl Iterator<Item = T> + '_ {
    std::iter::once(first).chain(queued.try_iter().take(max.saturating_sub(1)))
}

/// What the audit key is derived from the master key for (`MasterKey::derive`).
const AUDIT_KEY_PURPOSE: &str = "portcullis audit chain v1";
/// What the authorization requests' marker key is derived for.
const MARKER_KEY_PURPOSE: &str = "portcullis authorization marker v1";

impl Portcullis {
    /// Opens the store (migrating it) and loads keys: everything `serve` needs.
    pub async fn open(config: Config) -> anyhow::Result<Self> {
        let store = Store::connect(&config.database.target, config.database.max_connections).await?;
        store.migrate().await?;
        Self::with_store(config, store).await
    }

    /// Opens the store (migrating it) for administration that touches nothing sealed
    /// (users, roles, API keys, the audit trail): the master key is loaded when one is
    /// given (`PORTCULLIS_MASTER_KEY`, or a key file that exists) and checked, but never
    /// generated. Without it the service cannot issue or verify tokens, seal or open
    /// secrets, nor append to or verify the audit trail, which is keyed with it (those
    /// operations fail); reading works.
    pub async fn open_for_administration(config: Config) -> anyhow::Result<Self> {
        let store = Store::connect(&config.database.target, config.database.max_connections).await?;
        store.migrate().await?;
        let master = master::given_master_key(&config, &store).await?.map(|(key, _)| key);
        Self::assemble(config, store, master).await
    }

    pub async fn with_store(config: Config, store: Store) -> anyhow::Result<Self> {
        let (master, source) = load_master_key(&config, &store).await?;
        if source == MasterKeySource::GeneratedFile {
            tracing::warn!(
                path = %config.bootstrap.master_key_file.display(),
                "generated a new master key file; back it up, or set PORTCULLIS_MASTER_KEY (it seals the signing keys)"
            );
        }
        Self::assemble(config, store, Some(master)).await
    }

    async fn assemble(config: Config, store: Store, master: Option<MasterKey>) -> anyhow::Result<Self> {
        crate::crypto::jwt::install_provider();
        // The audit trail's links and anchors are keyed (see `store::audit::AuditKey`):
        // without the master key, the service can read the trail but neither append to
        // it nor verify it.
        let store = match &master {
            Some(master) => {
                let store = store.with_audit_key(AuditKey::from_bytes(&master.derive(AUDIT_KEY_PURPOSE)));
                match store.anchor_unkeyed_audit_chains().await {
                    Ok(Some(n)) if n > 0 => tracing::warn!(
                        chains = n,
                        "anchored audit chains written before chains were keyed; their records are linked unkeyed"
                    ),
                    Ok(_) => {}
                    Err(e) => anyhow::bail!("anchoring the audit chains failed: {e}"),
                }
                store
            }
            None => store,
        };
        let hasher = PasswordHasher::start(
            config.passwords.hash_params,
            config.passwords.hash_concurrency,
            config.passwords.hash_queue,
        )
        .await?;
        // Imported bcrypt (and bcrypt-sha256) hashes still stored set what every verification costs.
        let bcrypt_costs = store.bcrypt_costs().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        if let Some(cost) = bcrypt_costs
            .iter()
            .filter_map(|c| crate::crypto::password::bcrypt_cost(c))
            .max()
        {
            hasher.expect_bcrypt(cost).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        let marker_key = aws_lc_rs::hmac::Key::new(
            aws_lc_rs::hmac::HMAC_SHA256,
            &match &master {
                Some(master) => master.derive(MARKER_KEY_PURPOSE),
                None => {
                    let mut bytes = [0u8; 32];
                    rand::fill(&mut bytes);
                    bytes
                }
            },
        );
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
                marker_key,
                rotations,
                audit,
                oauth,
                token_cache: TokenCache::new(config.tokens.token_cache_capacity),
                credentials: credentials::CredentialCache::new(
                    config.tokens.token_cache_capacity,
                    config.tokens.api_key_recheck,
                ),
                config: Arc::new(config),
                store,
                hasher,
                keys,
                revocations: revocation::RevocationSet::default(),
                feed: revocation::FeedCursor::default(),
                clock_skew_ms: std::sync::atomic::AtomicI64::new(0),
                token_horizon: std::sync::atomic::AtomicI64::new(0),
                policy,
                instance: uuid::Uuid::new_v4().to_string(),
            }),
        };
        // Before the first token: revocations made anywhere from now on outlive it.
        service.raise_token_horizon().await?;
        service.load_revocations().await?;
        service
            .fill_identity_issuers()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
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
    /// revoked session has expired by its own `exp`, whatever lifetime it was issued
    /// with. Tokens issued now expire after the configured lifetime; tokens issued
    /// earlier, by this instance under another setting or by another instance, by the
    /// token horizon every instance raises (`raise_token_horizon`). Lowering the
    /// lifetime therefore shortens new revocations only once the tokens issued under
    /// the longer one have expired. Plus the leeway verifiers allow, and a minute.
    pub(crate) fn revocation_horizon(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let c = &self.inner.config;
        let issued_now =
            now + chrono::Duration::from_std(c.tokens.access_token_ttl).unwrap_or(chrono::Duration::hours(25));
        let horizon = self.inner.token_horizon.load(std::sync::atomic::Ordering::Relaxed);
        let issued_before = DateTime::from_timestamp(horizon, 0).unwrap_or(issued_now);
        issued_now.max(issued_before)
            + chrono::Duration::from_std(c.tokens.jwt_leeway + Duration::from_secs(60))
                .unwrap_or(chrono::Duration::hours(1))
    }

    /// The `exp` of an access token issued at `iat`: the configured lifetime on, but
    /// never past the token horizon this instance last stored (revocations made
    /// anywhere last until then, so a token expiring later could outlive one). The
    /// horizon is raised well ahead ([`Portcullis::raise_token_horizon`]); only if
    /// raising it has failed for minutes does this shorten tokens, and once it has
    /// passed, tokens are refused (503) until it is raised again. No database round
    /// trip: the horizon is held in memory.
    ///
    /// No later than `client_ttl` seconds on when an application's registration sets
    /// a lifetime: a client can shorten its tokens, never lengthen them past what
    /// revocation covers.
    pub(crate) fn access_token_exp_within(&self, iat: i64, client_ttl: Option<u64>) -> crate::error::AppResult<i64> {
        let configured = self.inner.config.tokens.access_token_ttl.as_secs() as i64;
        let ttl = client_ttl.map_or(configured, |t| configured.min(t.min(i64::MAX as u64) as i64));
        let horizon = self.inner.token_horizon.load(std::sync::atomic::Ordering::Relaxed);
        let exp = iat.saturating_add(ttl).min(horizon);
        if exp <= iat {
            return Err(crate::error::AppError::Unavailable {
                message: "tokens cannot be issued now: the token horizon could not be stored".into(),
                retry_after: HORIZON_INTERVAL.as_secs(),
            });
        }
        Ok(exp)
    }

    /// Raises the store's token horizon to cover every access token this instance may
    /// issue before the next call (at start, then every [`HORIZON_INTERVAL`] on a task
    /// of its own: two minutes past the configured lifetime), and learns the latest any
    /// instance has raised it to. Revocations made after that last at least as long;
    /// tokens are minted to expire by it ([`Portcullis::access_token_exp_within`]).
    pub async fn raise_token_horizon(&self) -> anyhow::Result<()> {
        let ttl = self.inner.config.tokens.access_token_ttl + Duration::from_secs(120);
        let until = Utc::now() + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::hours(25));
        let latest = self.inner.store.raise_token_horizon(until).await?;
        self.inner
            .token_horizon
            .fetch_max(latest.timestamp(), std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    async fn load_revocations(&self) -> anyhow::Result<()> {
        let store = &self.inner.store;
        // The position first: whatever commits after it is read by the first poll.
        let position = store.revocation_feed_position().await?;
        let rows = store.live_revocations(Utc::now()).await?;
        self.inner.feed.start(position, &rows);
        self.apply_rows(&rows.iter().collect::<Vec<_>>());
        Ok(())
    }

    /// Pulls the revocations committed since the last poll, by any instance, in
    /// commit order whatever the writers' clocks (see `store::revocations`), and
    /// reloads the signing keys when one was rotated.
    pub async fn sync_revocations(&self) -> anyhow::Result<usize> {
        let store = &self.inner.store;
        let next = store.revocation_feed_position().await?;
        let rows = store.revocations_from(self.inner.feed.position()).await?;
        let fresh = self.inner.feed.advance(next, &rows);
        self.apply_rows(&fresh);
        // A key rotated anywhere signs here from now on, not at the next timed reload.
        if fresh.iter().any(|r| r.kind == crate::store::KEYS_CHANGED) {
            self.keys().reload().await?;
        }
        Ok(fresh.len())
    }

    /// Ended sessions, revoked keys, changed users and grants, from the feed.
    fn apply_rows(&self, rows: &[&crate::store::RevocationRow]) {
        self.inner.revocations.apply(rows);
        self.inner.credentials.apply(rows);
    }

    /// This instance's clock where it stamps what it revokes and forgets revocations:
    /// the system clock, shifted by [`Portcullis::skew_clock`].
    pub(crate) fn revocation_clock(&self) -> DateTime<Utc> {
        let skew = self.inner.clock_skew_ms.load(std::sync::atomic::Ordering::Relaxed);
        Utc::now() + chrono::Duration::milliseconds(skew)
    }

    /// Shifts the clock this instance stamps and forgets revocations by, as if its
    /// host's clock were off by `by`: for the test that revocations outlive the tokens
    /// they cover (purged minutes on, without waiting minutes). Instances whose whole
    /// clock is off are tested with the real binary under libfaketime.
    #[doc(hidden)]
    pub fn skew_clock(&self, by: chrono::Duration) {
        self.inner
            .clock_skew_ms
            .store(by.num_milliseconds(), std::sync::atomic::Ordering::Relaxed);
    }

    /// The minutely upkeep: drops revocations, throttles,
    /// audit records, MFA tickets and OAuth states that no longer matter, and indexes
    /// new audit records by user.
    pub async fn purge_expired(&self) -> anyhow::Result<()> {
        let now = Utc::now();
        self.inner.revocations.purge(self.revocation_clock());
        // Feed rows are stamped by their writer's clock, which may be behind ours: keep
        // them an hour past their stamp, so a follower still reads them.
        self.inner
            .store
            .purge_revocations(now - chrono::Duration::hours(1))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        self.purge_login_throttle(now)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        self.purge_audit(now).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        self.purge_mfa_tickets(now).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        self.purge_oauth_states(now).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        self.purge_codes(now).await.map_err(|e| anyhow::anyhow!("{e}"))?;
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
