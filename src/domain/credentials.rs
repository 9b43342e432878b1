//! API keys and temporary tokens: issuing, checking, introspecting, revoking.
//!
//! An API key (`pcx_<id>_<secret>`) names its record by id, so a check is one lookup
//! and a constant-time digest comparison; it acts with the intersection of its own
//! permissions and its owner's current ones. Verified keys are cached; an entry is
//! valid only while the key, its owner and the role definitions are unchanged, which
//! the revocation feed reports (per-key removal, per-user and global epochs).
//! A temporary token (`pct_<secret>`) is narrow and short-lived, may be limited to a
//! number of uses, and is counted in the database on every use.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, Utc};
use quick_cache::sync::Cache;
use serde::Serialize;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::authn::{API_KEY_PREFIX, Credential, Principal, TEMPORARY_PREFIX, TokenKind};
use super::{Actor, AuditEvent, ClientContext, Portcullis};
use crate::crypto::tokens;
use crate::error::{AppError, AppResult};
use crate::store::{ApiKeyRow, RevocationRow, TemporaryTokenRow, UserGrants, UserRow};

const KEY_ID_LEN: usize = 16;

/// A verified key, valid while the epochs it was built under still hold.
struct CachedKey {
    secret_hash: [u8; 32],
    expires_at: Option<DateTime<Utc>>,
    principal: Arc<Principal>,
    owner_epoch: u64,
    global_epoch: u64,
    /// When the key's row was read: past `CredentialCache::recheck`, it is read again.
    loaded_at: std::time::Instant,
}

/// Verified API keys, user profiles, and what invalidates them, plus last-use times
/// waiting to be written in a batch.
pub struct CredentialCache {
    keys: Cache<String, Arc<CachedKey>>,
    /// Profiles for `GET /auth/me`, each with the user epoch it was read under.
    profiles: Cache<Uuid, Arc<(UserRow, u64)>>,
    /// Roles and permissions per user (for minting tokens), with both epochs.
    grants: Cache<Uuid, Arc<(UserGrants, u64, u64)>>,
    user_epochs: RwLock<HashMap<Uuid, u64>>,
    global_epoch: AtomicU64,
    /// Bumped by every key removal, so that a load racing a revocation does not cache
    /// the row it read before the revocation committed (see `cache_key`).
    key_generation: AtomicU64,
    /// Longest a cached key is trusted without reading its row again.
    recheck: std::time::Duration,
    last_used: Mutex<HashMap<String, DateTime<Utc>>>,
}

impl CredentialCache {
    pub fn new(capacity: usize, recheck: std::time::Duration) -> Self {
        Self {
            keys: Cache::new(capacity.max(16)),
            profiles: Cache::new(capacity.max(16)),
            grants: Cache::new(capacity.max(16)),
            user_epochs: RwLock::new(HashMap::new()),
            global_epoch: AtomicU64::new(0),
            key_generation: AtomicU64::new(0),
            recheck,
            last_used: Mutex::new(HashMap::new()),
        }
    }

    fn epochs(&self, owner: &Uuid) -> (u64, u64) {
        let user = self
            .user_epochs
            .read()
            .map(|m| m.get(owner).copied().unwrap_or(0))
            .unwrap_or(u64::MAX);
        (user, self.global_epoch.load(Ordering::Acquire))
    }

    pub fn forget_key(&self, id: &str) {
        self.key_generation.fetch_add(1, Ordering::SeqCst);
        self.keys.remove(id);
    }

    /// Read before a key's row: a revocation applied after this is caught by
    /// `cache_key`, one applied before it committed before the row was read.
    fn key_generation(&self) -> u64 {
        self.key_generation.load(Ordering::SeqCst)
    }

    /// A cached key, unless its owner, the role definitions or the time since its row
    /// was read say it must be rebuilt.
    fn cached_key(&self, id: &str) -> Option<Arc<CachedKey>> {
        self.keys.get(id).filter(|e| {
            self.epochs(&e.principal.user_id) == (e.owner_epoch, e.global_epoch) && e.loaded_at.elapsed() < self.recheck
        })
    }

    /// Caches a key built from a row read after `generation` was taken, unless some
    /// key was forgotten meanwhile: the row may predate that revocation. Inserted
    /// first and checked after, so a removal racing the insert cannot be lost.
    fn cache_key(&self, id: String, entry: Arc<CachedKey>, generation: u64) {
        self.keys.insert(id.clone(), entry);
        if self.key_generation() != generation {
            self.keys.remove(&id);
        }
    }

    /// The user's status or grants changed: their keys must be rebuilt.
    pub fn forget_user(&self, id: Uuid) {
        if let Ok(mut m) = self.user_epochs.write() {
            *m.entry(id).or_insert(0) += 1;
        }
    }

    /// Some role or permission changed: every key must be rebuilt.
    pub fn forget_all_users(&self) {
        self.global_epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// Applies invalidation events from the feed.
    pub fn apply(&self, rows: &[&RevocationRow]) {
        for row in rows {
            match row.kind.as_str() {
                "api_key" => self.forget_key(&row.subject),
                "user" => {
                    if let Ok(id) = Uuid::parse_str(&row.subject) {
                        self.forget_user(id);
                    }
                }
                "grants" => self.forget_all_users(),
                _ => {}
            }
        }
    }

    fn note_use(&self, id: &str, at: DateTime<Utc>) {
        if let Ok(mut m) = self.last_used.lock() {
            m.insert(id.to_string(), at);
        }
    }

    fn take_uses(&self) -> Vec<(String, DateTime<Utc>)> {
        self.last_used
            .lock()
            .map(|mut m| m.drain().collect())
            .unwrap_or_default()
    }
}

/// Splits `pcx_<id>_<secret>`; None unless both parts are well formed.
pub fn parse_api_key(key: &str) -> Option<(&str, &str)> {
    let (id, secret) = key.strip_prefix(API_KEY_PREFIX)?.split_once('_')?;
    (id.len() == KEY_ID_LEN && id.bytes().all(|b| b.is_ascii_hexdigit()) && tokens::looks_like_token(secret))
        .then_some((id, secret))
}

fn new_id() -> String {
    let mut bytes = [0u8; KEY_ID_LEN / 2];
    rand::fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new API key's name (trimmed) and expiry, checked: the name is 1-100 characters
/// without controls, the expiry in the future.
fn check_api_key_request(name: &str, expires_at: Option<DateTime<Utc>>) -> AppResult<&str> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(AppError::validation(
            "name",
            "must be 1-100 characters without control characters",
        ));
    }
    if expires_at.is_some_and(|e| e <= Utc::now()) {
        return Err(AppError::validation("expires_at", "must be in the future"));
    }
    Ok(name)
}

fn rejected(what: &str) -> AppError {
    AppError::InvalidToken(format!("{what} is invalid, expired or revoked"))
}

/// A credential owner as they are now.
struct Owner {
    username: String,
    permissions: HashSet<String>,
    superuser: bool,
}

impl Owner {
    /// A credential's stored permissions (a JSON array) narrowed to what the owner
    /// still holds: a key or token never outgrows its owner.
    fn scope(&self, stored: &str) -> Vec<String> {
        let own: Vec<String> = serde_json::from_str(stored).unwrap_or_default();
        own.into_iter()
            .filter(|p| self.superuser || self.permissions.contains(p))
            .collect()
    }
}

/// RFC 7662 introspection answer.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct Introspection {
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Space-separated permissions, as RFC 7662 spells scopes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// The API key or temporary token id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uses_left: Option<i64>,
}

impl Introspection {
    /// An application's token says its granted scopes as `scope` (not the
    /// permissions, which `permissions` still lists), and a service account's its
    /// client_id as `sub`, as the token itself does.
    fn for_application(mut self, p: &Principal) -> Self {
        if let Some(client_id) = &p.client_id {
            self.scope = Some(p.scope.clone().unwrap_or_default());
            if p.credential == Credential::Client(client_id.clone()) {
                self.sub = Some(client_id.clone());
            }
        }
        self
    }

    /// `sub` is spelled as access tokens spell it (see `Portcullis::subject_claims`).
    fn of(p: &Principal, token_type: &'static str, sub: String) -> Self {
        Self {
            active: true,
            token_type: Some(token_type),
            sub: Some(sub),
            username: Some(p.username.clone()),
            scope: Some(p.permissions.join(" ")),
            permissions: Some(p.permissions.clone()),
            roles: Some(p.roles.clone()),
            exp: p.expires_at,
            ..Self::default()
        }
    }
}

impl Portcullis {
    /// The caller's profile, from the cache when nothing about the user changed since
    /// it was read (the common case costs no database round-trip).
    pub async fn me_cached(&self, caller: &Principal) -> AppResult<UserRow> {
        // An application learns about the person only what its scopes allow.
        if caller.is_delegated() {
            return Err(AppError::Forbidden(
                "an application's token reads the person at /oauth2/userinfo, as its scopes allow".into(),
            ));
        }
        if let Credential::Client(id) = &caller.credential {
            return Err(AppError::Forbidden(format!(
                "{id:.100} is a service account (client_credentials): it has no user account"
            )));
        }
        let cache = &self.inner().credentials;
        let (epoch, _) = cache.epochs(&caller.user_id);
        let user = match cache.profiles.get(&caller.user_id) {
            Some(entry) if entry.1 == epoch => entry.0.clone(),
            _ => {
                let user = self.store().user_by_id(caller.user_id).await?;
                if let Some(u) = &user {
                    cache.profiles.insert(caller.user_id, Arc::new((u.clone(), epoch)));
                }
                user.ok_or_else(|| AppError::InvalidToken("account is no longer active".into()))?
            }
        };
        if !user.is_active {
            return Err(AppError::InvalidToken("account is no longer active".into()));
        }
        Ok(user)
    }

    /// A user's roles and permissions, from the cache while neither the user nor any
    /// role or permission changed since they were read.
    pub async fn grants(&self, user_id: Uuid, is_superuser: bool) -> AppResult<UserGrants> {
        let cache = &self.inner().credentials;
        let epochs = cache.epochs(&user_id);
        if let Some(entry) = cache.grants.get(&user_id)
            && (entry.1, entry.2) == epochs
        {
            return Ok(entry.0.clone());
        }
        let grants = self.store().grants(user_id, is_superuser).await?;
        cache
            .grants
            .insert(user_id, Arc::new((grants.clone(), epochs.0, epochs.1)));
        Ok(grants)
    }

    /// The owner's effective permissions now, or None when they are gone or disabled.
    async fn owner(&self, user_id: Uuid) -> AppResult<Option<Owner>> {
        let Some(user) = self.store().user_by_id(user_id).await? else {
            return Ok(None);
        };
        if !user.is_active {
            return Ok(None);
        }
        let grants = self.grants(user.id, user.is_superuser).await?;
        Ok(Some(Owner {
            username: user.username,
            permissions: grants.permissions.into_iter().collect(),
            superuser: user.is_superuser,
        }))
    }

    /// New credentials may carry only permissions the caller holds, and only a
    /// session (a person who logged in) may mint them.
    async fn check_grantable(&self, caller: &Principal, permissions: &[String]) -> AppResult<()> {
        if caller.credential != Credential::Jwt {
            return Err(AppError::Forbidden(
                "API keys and temporary tokens cannot create credentials".into(),
            ));
        }
        self.check_known_held(permissions, |p| caller.has_permission(p), "you do not hold it")
            .await
    }

    /// Every one of `permissions` exists and `holds` it (else `why_not` says who lacks it).
    async fn check_known_held(
        &self,
        permissions: &[String],
        holds: impl Fn(&str) -> bool,
        why_not: &str,
    ) -> AppResult<()> {
        let known: HashSet<String> = self
            .store()
            .list_permissions()
            .await?
            .into_iter()
            .map(|p| p.name)
            .collect();
        for p in permissions {
            if !known.contains(p) {
                return Err(AppError::validation("permissions", format!("unknown permission {p}")));
            }
            if !holds(p) {
                return Err(AppError::Forbidden(format!("you cannot grant {p}: {why_not}")));
            }
        }
        Ok(())
    }

    /// Issues an API key; the returned string is the only time the secret exists.
    pub async fn create_api_key(
        &self,
        caller: &Principal,
        name: &str,
        permissions: Vec<String>,
        expires_at: Option<DateTime<Utc>>,
        ctx: &ClientContext,
    ) -> AppResult<(ApiKeyRow, String)> {
        let name = check_api_key_request(name, expires_at)?;
        self.check_grantable(caller, &permissions).await?;
        let by = Actor::user(caller.user_id, &caller.username, ctx);
        self.issue_api_key(caller.user_id, name, permissions, expires_at, by.event("APIKEY_CREATE"))
            .await
    }

    /// Issues an API key owned by `user_id`, made by `by` (the operator at the command
    /// line): the key may carry only permissions its owner holds now, and `by` must
    /// be allowed to act on the owner and hold what it hands out (`domain::privilege`).
    /// The returned string is the only time the secret exists.
    pub async fn create_api_key_for(
        &self,
        user_id: Uuid,
        name: &str,
        permissions: Vec<String>,
        expires_at: Option<DateTime<Utc>>,
        by: &Actor,
    ) -> AppResult<(ApiKeyRow, String)> {
        let name = check_api_key_request(name, expires_at)?;
        let owner = self.may_act_on(user_id, by).await?;
        if !owner.is_active {
            return Err(AppError::Conflict(format!(
                "{} is disabled: their API keys would not work",
                owner.username
            )));
        }
        let grants = self.grants(owner.id, owner.is_superuser).await?;
        let why_not = format!("{} does not hold it", owner.username);
        self.check_known_held(
            &permissions,
            |p| owner.is_superuser || grants.permissions.iter().any(|g| g == p),
            &why_not,
        )
        .await?;
        super::privilege::require_holding(by, &permissions, "grant")?;
        let event = by.event("APIKEY_CREATE").meta("owner", &owner.username);
        self.issue_api_key(owner.id, name, permissions, expires_at, event).await
    }

    /// Stores a new key of `owner` (checked by the caller) and records `event`.
    async fn issue_api_key(
        &self,
        owner: Uuid,
        name: &str,
        permissions: Vec<String>,
        expires_at: Option<DateTime<Utc>>,
        event: AuditEvent,
    ) -> AppResult<(ApiKeyRow, String)> {
        let id = new_id();
        let secret = tokens::random_token();
        let row = ApiKeyRow {
            id: id.clone(),
            user_id: owner,
            name: name.to_string(),
            secret_hash: tokens::digest(&secret).to_vec(),
            permissions: serde_json::to_string(&permissions).map_err(AppError::internal)?,
            created_at: Utc::now(),
            expires_at,
            last_used_at: None,
            revoked_at: None,
        };
        let record = self.audit_record(
            event
                .resource("api_key", &id)
                .meta("name", name)
                .meta("permissions", &permissions)
                .meta("expires_at", expires_at),
        );
        self.store().insert_api_key(&row, record.as_ref()).await?;
        Ok((row, format!("{API_KEY_PREFIX}{id}_{secret}")))
    }

    pub async fn api_keys_of(&self, user_id: Uuid) -> AppResult<Vec<ApiKeyRow>> {
        self.store().api_keys_of(user_id).await
    }

    pub async fn all_api_keys(&self, limit: i64, offset: i64) -> AppResult<Vec<ApiKeyRow>> {
        super::validate::all([
            super::validate::query_number("limit", Some(limit), 1..=1000),
            super::validate::query_number("offset", Some(offset), 0..=super::validate::OFFSET_MAX),
        ])?;
        self.store().all_api_keys(limit, offset).await
    }

    /// One key; with `owner`, only if it is theirs (404 otherwise).
    pub async fn api_key(&self, id: &str, owner: Option<Uuid>) -> AppResult<ApiKeyRow> {
        match self.store().api_key(id).await? {
            Some(k) if owner.is_none_or(|o| o == k.user_id) => Ok(k),
            _ => Err(AppError::NotFound("no such API key".into())),
        }
    }

    /// Revokes a key (only the owner's, when `owner` is given); every instance refuses
    /// it within the sync interval, this one at once.
    pub async fn revoke_api_key(&self, id: &str, owner: Option<Uuid>, by: &Actor) -> AppResult<()> {
        let record = self.audit_record(by.event("APIKEY_REVOKE").resource("api_key", id));
        if !self
            .store()
            .revoke_api_key(id, owner, self.revocation_clock(), record.as_ref())
            .await?
        {
            return Err(AppError::NotFound("no such active API key".into()));
        }
        self.inner().credentials.forget_key(id);
        Ok(())
    }

    pub(crate) async fn authenticate_api_key(&self, key: &str) -> AppResult<Arc<Principal>> {
        let (id, secret) = parse_api_key(key).ok_or_else(|| AppError::InvalidToken("malformed API key".into()))?;
        let cache = &self.inner().credentials;
        let presented = tokens::digest(secret);
        let now = Utc::now();
        let entry = match cache.cached_key(id) {
            Some(e) => e,
            None => {
                let generation = cache.key_generation();
                let row = self.store().api_key(id).await?.ok_or_else(|| rejected("API key"))?;
                // Read the epochs before the owner, so a change racing this load
                // makes the entry stale rather than lost.
                let (owner_epoch, global_epoch) = cache.epochs(&row.user_id);
                if row.revoked_at.is_some() {
                    return Err(rejected("API key"));
                }
                let owner = self.owner(row.user_id).await?.ok_or_else(|| rejected("API key"))?;
                let permissions = owner.scope(&row.permissions);
                let secret_hash: [u8; 32] = row.secret_hash.as_slice().try_into().map_err(|_| rejected("API key"))?;
                let entry = Arc::new(CachedKey {
                    secret_hash,
                    expires_at: row.expires_at,
                    principal: Arc::new(Principal {
                        user_id: row.user_id,
                        username: owner.username,
                        session_id: None,
                        roles: Vec::new(),
                        permissions,
                        amr: vec!["api_key".into()],
                        is_superuser: false,
                        credential: Credential::ApiKey(row.id.clone()),
                        expires_at: row.expires_at.map(|e| e.timestamp()),
                        token: None,
                        client_id: None,
                        first_party: false,
                        scope: None,
                    }),
                    owner_epoch,
                    global_epoch,
                    loaded_at: std::time::Instant::now(),
                });
                cache.cache_key(row.id, entry.clone(), generation);
                entry
            }
        };
        if !bool::from(entry.secret_hash.ct_eq(&presented)) || entry.expires_at.is_some_and(|e| e <= now) {
            return Err(rejected("API key"));
        }
        cache.note_use(id, now);
        Ok(entry.principal.clone())
    }

    /// Writes the batched last-used times of API keys.
    pub async fn flush_key_usage(&self) -> AppResult<()> {
        let used = self.inner().credentials.take_uses();
        self.store().touch_api_keys(&used).await
    }

    /// Issues a temporary token for at most the configured lifetime.
    pub async fn create_temporary_token(
        &self,
        caller: &Principal,
        permissions: Vec<String>,
        ttl_seconds: Option<u64>,
        max_uses: Option<u32>,
        purpose: &str,
        ctx: &ClientContext,
    ) -> AppResult<(TemporaryTokenRow, String)> {
        let max_ttl = self.config().tokens.temporary_token_max_ttl.as_secs();
        let ttl = ttl_seconds.unwrap_or(max_ttl.min(3600));
        if ttl == 0 || ttl > max_ttl {
            return Err(AppError::validation(
                "ttl_seconds",
                format!("must be between 1 and {max_ttl}"),
            ));
        }
        if max_uses == Some(0) || max_uses.is_some_and(|m| m > 1_000_000) {
            return Err(AppError::validation("max_uses", "must be between 1 and 1000000"));
        }
        let purpose = purpose.trim();
        if purpose.is_empty() || purpose.chars().count() > 200 || purpose.chars().any(char::is_control) {
            return Err(AppError::validation(
                "purpose",
                "must be 1-200 characters without control characters",
            ));
        }
        self.check_grantable(caller, &permissions).await?;
        let secret = tokens::random_token();
        let token = format!("{TEMPORARY_PREFIX}{secret}");
        let now = Utc::now();
        let row = TemporaryTokenRow {
            id: new_id(),
            token_hash: tokens::digest(&token).to_vec(),
            user_id: caller.user_id,
            permissions: serde_json::to_string(&permissions).map_err(AppError::internal)?,
            purpose: purpose.to_string(),
            max_uses: max_uses.map(|m| m as i32),
            uses: 0,
            created_at: now,
            expires_at: now + chrono::Duration::seconds(ttl as i64),
            revoked_at: None,
        };
        let record = self.audit_record(
            Actor::user(caller.user_id, &caller.username, ctx)
                .event("TEMP_TOKEN_CREATE")
                .resource("temporary_token", &row.id)
                .meta("purpose", purpose)
                .meta("permissions", &permissions)
                .meta("max_uses", max_uses)
                .meta("expires_at", row.expires_at),
        );
        self.store().insert_temporary_token(&row, record.as_ref()).await?;
        Ok((row, token))
    }

    pub(crate) async fn authenticate_temporary_token(&self, token: &str) -> AppResult<Arc<Principal>> {
        if !tokens::looks_like_token(&token[TEMPORARY_PREFIX.len()..]) {
            return Err(AppError::InvalidToken("malformed temporary token".into()));
        }
        let row = self
            .store()
            .use_temporary_token(&tokens::digest(token), Utc::now())
            .await?
            .ok_or_else(|| AppError::InvalidToken("temporary token is invalid, expired, revoked or used up".into()))?;
        let owner = self
            .owner(row.user_id)
            .await?
            .ok_or_else(|| rejected("temporary token"))?;
        Ok(Arc::new(Principal {
            user_id: row.user_id,
            session_id: None,
            roles: Vec::new(),
            permissions: owner.scope(&row.permissions),
            username: owner.username,
            amr: vec!["temporary".into()],
            is_superuser: false,
            credential: Credential::Temporary(row.id),
            expires_at: Some(row.expires_at.timestamp()),
            token: None,
            client_id: None,
            first_party: false,
            scope: None,
        }))
    }

    /// RFC 7662: whether a credential is active and what it grants. Inspecting a
    /// temporary token does not spend a use.
    pub async fn introspect(&self, token: &str) -> AppResult<Introspection> {
        let inactive = Introspection::default();
        let now = Utc::now();
        if let Some((id, secret)) = parse_api_key(token) {
            let Some(row) = self.store().api_key(id).await? else {
                return Ok(inactive);
            };
            let matches: bool = tokens::digest(secret)
                .as_slice()
                .ct_eq(row.secret_hash.as_slice())
                .into();
            if !matches || row.revoked_at.is_some() || row.expires_at.is_some_and(|e| e <= now) {
                return Ok(inactive);
            }
            return Ok(match self.authenticate_api_key(token).await {
                Ok(p) => Introspection {
                    client_id: Some(row.id),
                    iat: Some(row.created_at.timestamp()),
                    ..Introspection::of(&p, "api_key", self.subject_claims(p.user_id, &p.username).0)
                },
                Err(_) => inactive,
            });
        }
        if TokenKind::of(token) == TokenKind::Temporary {
            let Some(row) = self.store().peek_temporary_token(&tokens::digest(token)).await? else {
                return Ok(inactive);
            };
            let used_up = row.max_uses.is_some_and(|m| row.uses >= m);
            if row.revoked_at.is_some() || row.expires_at <= now || used_up {
                return Ok(inactive);
            }
            let Some(owner) = self.owner(row.user_id).await? else {
                return Ok(inactive);
            };
            let permissions = owner.scope(&row.permissions);
            return Ok(Introspection {
                active: true,
                token_type: Some("temporary_token"),
                sub: Some(self.subject_claims(row.user_id, &owner.username).0),
                username: Some(owner.username),
                scope: Some(permissions.join(" ")),
                permissions: Some(permissions),
                exp: Some(row.expires_at.timestamp()),
                iat: Some(row.created_at.timestamp()),
                client_id: Some(row.id),
                purpose: Some(row.purpose),
                uses_left: row.max_uses.map(|m| (m - row.uses) as i64),
                ..Introspection::default()
            });
        }
        Ok(match self.authenticate_token(token).await {
            Ok(p) => {
                let config = self.config();
                Introspection {
                    iat: p.token.as_ref().map(|t| t.iat),
                    // Verification required both to equal the configured values; a
                    // token of the replaced service (no `token` facts) may have neither.
                    iss: p.token.as_ref().map(|_| config.tokens.jwt_issuer.clone()),
                    aud: p.token.as_ref().and(config.tokens.jwt_audience.clone()),
                    jti: p.token.as_ref().map(|t| t.jti.clone()),
                    sid: p.session_id.map(|s| s.to_string()),
                    // An application's token (RFC 9068): whose app, which scopes.
                    client_id: p.client_id.clone(),
                    ..Introspection::of(&p, "access_token", self.subject_claims(p.user_id, &p.username).0)
                        .for_application(&p)
                }
            }
            Err(_) => inactive,
        })
    }

    /// RFC 7009: revokes whatever credential is presented (possession is the proof).
    /// Unknown or invalid tokens are ignored, so the answer reveals nothing.
    pub async fn revoke_credential(&self, token: &str, ctx: &ClientContext) -> AppResult<()> {
        let now = Utc::now();
        if let Some((id, secret)) = parse_api_key(token) {
            if let Some(row) = self.store().api_key(id).await? {
                let matches: bool = tokens::digest(secret)
                    .as_slice()
                    .ct_eq(row.secret_hash.as_slice())
                    .into();
                // Holding the key proves ownership: the owner is the actor.
                let record = self.audit_record(
                    AuditEvent::new("APIKEY_REVOKE")
                        .actor_id(Some(row.user_id))
                        .client(ctx)
                        .resource("api_key", id)
                        .meta("via", "revocation_endpoint"),
                );
                if matches && self.store().revoke_api_key(id, None, now, record.as_ref()).await? {
                    self.inner().credentials.forget_key(id);
                }
            }
        } else if TokenKind::of(token) == TokenKind::Temporary {
            self.store().revoke_temporary_token(&tokens::digest(token), now).await?;
        } else if matches!(TokenKind::of(token), TokenKind::MfaChallenge | TokenKind::Enrollment) {
            // An MFA challenge or enrolment-only token: it simply stops working.
            self.store().delete_mfa_ticket(&tokens::digest(token)).await?;
        } else if tokens::looks_like_token(token) {
            self.logout(token, ctx).await?;
        } else if let Ok(p) = self.authenticate_token(token).await
            && let Some(sid) = p.session_id
        {
            let by = Actor::user(p.user_id, &p.username, ctx);
            self.end_session(p.user_id, sid, &by).await.or_else(|e| match e {
                AppError::NotFound(_) => Ok(()),
                other => Err(other),
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_key_format() {
        let secret = tokens::random_token();
        let key = format!("pcx_0123456789abcdef_{secret}");
        assert_eq!(parse_api_key(&key), Some(("0123456789abcdef", secret.as_str())));
        for bad in [
            "pcx_",
            "pcx_0123_abc",
            "pcx_0123456789abcdeg_x",
            "pat_0123456789abcdef_x",
            &format!("pcx_0123456789abcdef_{secret}!"),
        ] {
            assert!(parse_api_key(bad).is_none(), "{bad}");
        }
        assert_eq!(new_id().len(), KEY_ID_LEN);
    }

    #[test]
    fn epochs_invalidate() {
        let c = CredentialCache::new(16, std::time::Duration::from_secs(60));
        let u = Uuid::new_v4();
        let before = c.epochs(&u);
        c.forget_user(u);
        assert_ne!(c.epochs(&u), before);
        let mid = c.epochs(&u);
        c.forget_all_users();
        assert_ne!(c.epochs(&u), mid);
    }

    fn entry(user_id: Uuid) -> Arc<CachedKey> {
        Arc::new(CachedKey {
            secret_hash: [0; 32],
            expires_at: None,
            principal: Arc::new(Principal {
                user_id,
                username: "u".into(),
                session_id: None,
                roles: Vec::new(),
                permissions: Vec::new(),
                amr: Vec::new(),
                is_superuser: false,
                credential: Credential::ApiKey("k".into()),
                expires_at: None,
                token: None,
                client_id: None,
                first_party: false,
                scope: None,
            }),
            owner_epoch: 0,
            global_epoch: 0,
            loaded_at: std::time::Instant::now(),
        })
    }

    /// A key revoked between reading its row and caching it is not cached.
    #[test]
    fn a_load_racing_a_revocation_is_not_cached() {
        let cache = CredentialCache::new(16, std::time::Duration::from_secs(60));
        let generation = cache.key_generation();
        // ... the row is read, not yet revoked; the revocation commits and is applied:
        cache.forget_key("k");
        cache.cache_key("k".into(), entry(Uuid::new_v4()), generation);
        assert!(cache.cached_key("k").is_none());
        // Without a revocation in between, it is.
        let generation = cache.key_generation();
        cache.cache_key("k".into(), entry(Uuid::new_v4()), generation);
        assert!(cache.cached_key("k").is_some());
    }

    /// A cached key is trusted for `recheck` at most.
    #[test]
    fn a_cached_key_expires_after_the_recheck_bound() {
        let cache = CredentialCache::new(16, std::time::Duration::ZERO);
        let generation = cache.key_generation();
        cache.cache_key("k".into(), entry(Uuid::new_v4()), generation);
        assert!(cache.cached_key("k").is_none());
    }
}
