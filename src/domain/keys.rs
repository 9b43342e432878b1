//! The signing keys this instance uses, loaded from the store and kept current.
//!
//! Asymmetric keys are generated on first start and on `portcullis keys rotate`, sealed
//! under the master key. A rotated-out key keeps verifying (and stays in JWKS) until
//! every token it can have signed has expired; instances pick up new keys as soon as
//! the revocation feed reports a rotation (see `Portcullis::sync_revocations`), on a
//! timer, and whenever they meet an unknown `kid`, at most once a second.
//!
//! Opened without the master key (commands that touch nothing sealed), the manager
//! holds no usable key: nothing can be signed, sealed or opened.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::config::{Config, SigningAlgorithm};
use crate::crypto::jwt::{self, KeyRing, SigningKey, TokenRules};
use crate::crypto::secretbox::MasterKey;
use crate::error::AppResult;
use crate::store::{AuditFields, SigningKeyRow, Store};

pub(crate) const SEAL_CONTEXT: &str = "portcullis:signing_key";
const MIN_RELOAD_GAP: Duration = Duration::from_secs(1);

pub struct KeyManager {
    ring: RwLock<Arc<KeyRing>>,
    store: Store,
    master: Option<MasterKey>,
    rules: TokenRules,
    algorithm: SigningAlgorithm,
    secret: Option<String>,
    /// `JWT_ACCEPT_UNKEYED`: the secret that verifies tokens without `kid`.
    unkeyed_secret: Option<String>,
    /// `JWT_UNKEYED_MAX_LIFETIME_MINUTES`.
    unkeyed_max_lifetime: std::time::Duration,
    /// How long after retirement a key still verifies: token lifetime plus leeway plus
    /// one reload interval (an instance may sign with a key for that long after
    /// another instance retired it).
    grace: chrono::Duration,
    last_reload: Mutex<Instant>,
}

impl KeyManager {
    /// Loads the keys (generating the first one when there is none), or, without the
    /// master key, a ring no token can be verified with (a random secret no one knows).
    pub async fn load(config: &Config, store: Store, master: Option<MasterKey>) -> anyhow::Result<Self> {
        let rules = TokenRules {
            issuer: config.tokens.jwt_issuer.clone(),
            audience: config.tokens.jwt_audience.clone(),
            leeway_secs: config.tokens.jwt_leeway.as_secs(),
        };
        let grace = chrono::Duration::from_std(
            config.tokens.access_token_ttl + config.tokens.jwt_leeway + config.tokens.key_reload_interval,
        )?;
        let mut manager = Self {
            ring: RwLock::new(Arc::new(KeyRing::new(vec![SigningKey::symmetric(
                &crate::crypto::tokens::random_token(),
                SigningAlgorithm::Hs256,
                &rules,
            )])?)),
            store,
            master,
            rules,
            algorithm: config.tokens.jwt_algorithm,
            secret: config.tokens.jwt_secret.clone(),
            unkeyed_secret: config
                .tokens
                .jwt_secret
                .clone()
                .filter(|_| config.tokens.accept_unkeyed),
            unkeyed_max_lifetime: config.tokens.unkeyed_max_lifetime,
            grace,
            // Start "long ago" so a fresh instance may reload for an unknown kid at once.
            last_reload: Mutex::new(
                Instant::now()
                    .checked_sub(MIN_RELOAD_GAP * 2)
                    .unwrap_or_else(Instant::now),
            ),
        };
        if manager.master.is_none() {
            return Ok(manager);
        }
        if !manager.algorithm.is_symmetric() && manager.store.active_signing_key_count().await? == 0 {
            manager.rotate_with(manager.algorithm, None).await?;
        }
        let ring = manager.build_ring().await?;
        manager.ring = RwLock::new(Arc::new(ring));
        Ok(manager)
    }

    async fn build_ring(&self) -> anyhow::Result<KeyRing> {
        let ring = self.build_keyed_ring().await?;
        Ok(match &self.unkeyed_secret {
            Some(secret) => ring.accepting_unkeyed(secret, &self.rules, self.unkeyed_max_lifetime),
            None => ring,
        })
    }

    async fn build_keyed_ring(&self) -> anyhow::Result<KeyRing> {
        if let (true, Some(secret)) = (self.algorithm.is_symmetric(), &self.secret) {
            return KeyRing::new(vec![SigningKey::symmetric(secret, self.algorithm, &self.rules)]);
        }
        let rows = self
            .store
            .signing_keys(Utc::now() - self.grace)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut keys = Vec::with_capacity(rows.len());
        for row in rows {
            let alg = SigningAlgorithm::parse(&row.algorithm)
                .ok_or_else(|| anyhow::anyhow!("key {}: unknown algorithm {}", row.kid, row.algorithm))?;
            let der = self
                .master()?
                .open(&row.private_key, SEAL_CONTEXT)
                .map_err(|e| anyhow::anyhow!("key {}: {e}", row.kid))?;
            let jwk: serde_json::Value = serde_json::from_str(&row.public_jwk)?;
            keys.push(SigningKey::asymmetric(
                row.kid,
                alg,
                &der,
                jwk,
                row.retired_at,
                &self.rules,
            )?);
        }
        KeyRing::new(keys)
    }

    pub fn ring(&self) -> Arc<KeyRing> {
        self.ring
            .read()
            .map(|r| r.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Reloads keys from the store now.
    pub async fn reload(&self) -> anyhow::Result<()> {
        let ring = Arc::new(self.build_ring().await?);
        if let Ok(mut slot) = self.ring.write() {
            *slot = ring;
        }
        Ok(())
    }

    /// Reloads when a token names a kid we do not know, unless we reloaded within the
    /// last second (so forged kids cannot turn into a database flood). True when the
    /// kid is known afterwards.
    pub async fn reload_for_unknown_kid(&self, kid: &str) -> bool {
        if self.algorithm.is_symmetric() || kid.len() > 64 {
            return false;
        }
        let due = self
            .last_reload
            .lock()
            .map(|mut t| {
                let due = t.elapsed() >= MIN_RELOAD_GAP;
                if due {
                    *t = Instant::now();
                }
                due
            })
            .unwrap_or(false);
        if due && let Err(e) = self.reload().await {
            tracing::warn!(error = %e, "reloading signing keys failed");
        }
        self.ring().knows(kid)
    }

    /// Generates and stores a new signing key with `algorithm`, retiring the others,
    /// and loads it. Returns its kid.
    /// `audit` is the rotation's record, completed here with the new kid.
    pub async fn rotate_with(&self, algorithm: SigningAlgorithm, audit: Option<AuditFields>) -> anyhow::Result<String> {
        let generated = jwt::generate(algorithm)?;
        let row = SigningKeyRow {
            kid: generated.kid.clone(),
            algorithm: algorithm.name().to_string(),
            private_key: self.master()?.seal(&generated.private_der, SEAL_CONTEXT)?,
            public_jwk: generated.public_jwk.to_string(),
            created_at: Utc::now(),
            retired_at: None,
        };
        self.store
            .add_signing_key(&row, audit.map(|a| a.on("signing_key", &generated.kid)).as_ref())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(generated.kid)
    }

    /// Rotates to a new key; use `Portcullis::rotate_signing_key`, which audits it.
    pub(crate) async fn rotate(&self, audit: Option<AuditFields>) -> AppResult<String> {
        let kid = self
            .rotate_with(self.algorithm, audit)
            .await
            .map_err(crate::error::AppError::Internal)?;
        self.reload().await.map_err(crate::error::AppError::Internal)?;
        Ok(kid)
    }

    /// The master key, for other secrets sealed at rest (TOTP, upstream tokens); an
    /// error when the service was opened without it.
    pub(crate) fn master(&self) -> AppResult<&MasterKey> {
        self.master.as_ref().ok_or_else(|| {
            crate::error::AppError::Internal(anyhow::anyhow!(
                "this command was started without the master key and cannot open sealed data"
            ))
        })
    }

    pub fn is_symmetric(&self) -> bool {
        self.algorithm.is_symmetric()
    }

    pub fn grace_after(&self, retired_at: DateTime<Utc>) -> DateTime<Utc> {
        retired_at + self.grace
    }
}

impl super::Portcullis {
    /// Rotates to a new signing key, recorded as SIGNING_KEY_ROTATE with the new kid.
    /// Tokens signed with the old key stay valid until they expire.
    pub async fn rotate_signing_key(&self, by: &super::Actor) -> AppResult<String> {
        if self.keys().is_symmetric() {
            return Err(crate::error::AppError::Conflict(
                "JWT_ALGORITHM is HS256: the key is JWT_SECRET; change it in configuration".into(),
            ));
        }
        let record = self.audit_record(by.event("SIGNING_KEY_ROTATE"));
        self.keys().rotate(record).await
    }
}
