//! The audit trail: security events, recorded in the transaction of the change they
//! describe, and authenticated API requests, recorded off the request path.
//!
//! Records are hash-chained (see `store::audit`). Each instance appends to chains of
//! its own, several of them so that concurrent writers of one instance do not all
//! queue on one chain head. Request records go through a bounded buffer that the
//! background task drains; when it is full, records are dropped and counted
//! (`portcullis_audit_requests_dropped_total`) rather than slowing requests. Security
//! events are never dropped: they commit with their change or not at all.

use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::{ClientContext, Portcullis, validate};
use crate::error::{AppError, AppResult};
use crate::store::{AuditByUserRuns, AuditChains, AuditFields, AuditFilter, AuditRow, NO_AUDIT_KEY, link_hash};

/// Chains per instance.
const CHAINS: usize = 8;
/// Request records written per batch.
const BATCH: usize = 256;
/// How many times the writer yields to the runtime before taking a batch that is not
/// full. On SQLite a record costs far less in a full batch (each commit rewrites every
/// page it touched: 28 µs of CPU a record in batches of 16, 9 µs in batches of 256,
/// one user); in the benchmark these yields took the average batch from 103-188 to
/// 197-240 records. A fixed wait did as well but dropped records once under load.
const FILL_YIELDS: usize = 4;

/// The ranges an audit query keeps to, each failure naming its query parameter: dates
/// a record can have, an HTTP status, a positive cursor. Checked before the first
/// read, so an export is refused with a 422 rather than cut off.
pub fn check_audit_filter(filter: &AuditFilter) -> AppResult<()> {
    validate::all([
        validate::query_instant("since", filter.since),
        validate::query_instant("until", filter.until),
        validate::query_number("status", filter.status.map(i64::from), 100..=599),
        validate::query_number("cursor", filter.before_id, 1..=i64::MAX),
        validate::query_number("after_id", filter.after_id, 0..=i64::MAX),
    ])
}

/// Characters a record may hold but must never reach a terminal raw: C0 and C1
/// controls (ESC starts a terminal escape sequence) and the bidirectional controls that
/// reorder what is shown (U+061C, U+200E-U+200F, U+202A-U+202E, U+2066-U+2069).
pub fn unsafe_for_terminal(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` for a terminal: every character [`unsafe_for_terminal`] as `\u{..}`, and a
/// backslash doubled, so what is shown cannot be confused with an escape.
pub fn escape_for_terminal(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(|c| unsafe_for_terminal(c) || c == '\\') {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if unsafe_for_terminal(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// JSON as serde_json writes it, but with every character [`unsafe_for_terminal`]
/// escaped (`\u202e`), not just the C0 controls JSON requires: the same value for a
/// parser, harmless on a terminal (`curl`, `audit tail --json`, an export piped to
/// `less`).
struct TerminalSafe;

impl serde_json::ser::Formatter for TerminalSafe {
    fn write_string_fragment<W: ?Sized + std::io::Write>(&mut self, w: &mut W, fragment: &str) -> std::io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if unsafe_for_terminal(c) {
                w.write_all(&fragment.as_bytes()[start..i])?;
                write!(w, "\\u{:04x}", c as u32)?;
                start = i + c.len_utf8();
            }
        }
        w.write_all(&fragment.as_bytes()[start..])
    }
}

/// Writes `value` as terminal-safe JSON (see [`TerminalSafe`]).
pub fn write_terminal_safe_json<W: std::io::Write, T: Serialize + ?Sized>(w: W, value: &T) -> serde_json::Result<()> {
    value.serialize(&mut serde_json::Serializer::with_formatter(w, TerminalSafe))
}

pub struct AuditTrail {
    enabled: bool,
    /// This instance's prefix of its chains' names.
    instance: String,
    chains: Vec<String>,
    next: AtomicUsize,
    requests: flume::Sender<AuditFields>,
    pending: flume::Receiver<AuditFields>,
}

impl AuditTrail {
    pub(crate) fn new(enabled: bool, buffer: usize) -> Self {
        let instance = Uuid::new_v4().simple().to_string();
        let (requests, pending) = flume::bounded(buffer.max(1));
        Self {
            enabled,
            chains: (0..CHAINS).map(|i| format!("{}-{i}", &instance[..12])).collect(),
            instance: instance[..12].to_string(),
            next: AtomicUsize::new(0),
            requests,
            pending,
        }
    }

    /// A chain of this instance for one writer alone (named `<instance>-<name>`), so
    /// that writer never waits on another for the chain's head.
    pub(crate) fn own_chain(&self, name: &str) -> String {
        format!("{}-{name}", self.instance)
    }

    fn chain(&self) -> String {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.chains.len();
        self.chains[i].clone()
    }
}

/// A security event, before it is stamped and chained.
#[derive(Debug, Clone, Default)]
pub struct AuditEvent {
    pub action: String,
    /// (user id, username) of whoever did it, when known.
    pub actor: Option<(Uuid, Option<String>)>,
    /// (type, id) of what it was done to.
    pub resource: Option<(String, String)>,
    pub client: Option<ClientContext>,
    /// Extra facts; never a password, token, key or secret.
    pub metadata: serde_json::Value,
}

impl AuditEvent {
    pub fn new(action: &str) -> Self {
        Self {
            action: action.to_string(),
            metadata: serde_json::Value::Object(Default::default()),
            ..Self::default()
        }
    }

    pub fn actor(mut self, id: Uuid, username: &str) -> Self {
        self.actor = Some((id, Some(username.to_string())));
        self
    }

    /// The actor when only the id is at hand.
    pub fn actor_id(mut self, id: Option<Uuid>) -> Self {
        self.actor = id.map(|id| (id, None));
        self
    }

    pub fn resource(mut self, kind: &str, id: impl ToString) -> Self {
        self.resource = Some((kind.to_string(), id.to_string()));
        self
    }

    pub fn client(mut self, ctx: &ClientContext) -> Self {
        self.client = Some(ctx.clone());
        self
    }

    pub fn meta(mut self, key: &str, value: impl Serialize) -> Self {
        if let (serde_json::Value::Object(map), Ok(v)) = (&mut self.metadata, serde_json::to_value(value)) {
            map.insert(key.to_string(), v);
        }
        self
    }
}

/// Who makes an administrative change: a signed-in user (with the request's client
/// context) or the operator at the CLI or an embedding service (no user).
#[derive(Debug, Clone, Default)]
pub struct Actor {
    pub user: Option<(Uuid, String)>,
    pub client: Option<ClientContext>,
    /// What the actor holds, for the privilege rule (`domain::privilege`).
    pub authority: Authority,
}

/// What an actor may hand out and whom it may act on (see `domain::privilege`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Authority {
    /// The operator (CLI, a service embedding the library): bound by no privilege rule.
    #[default]
    Operator,
    /// A signed-in caller, with what the credential of this request grants.
    Holder {
        superuser: bool,
        /// Holds the `admin` role.
        administrator: bool,
        permissions: Vec<String>,
    },
}

impl Actor {
    /// The operator: `portcullis admin ...` or a service calling the library.
    pub fn system() -> Self {
        Self::default()
    }

    /// A user acting on their own account: holds nothing for the privilege rule.
    pub fn user(id: Uuid, username: &str, client: &ClientContext) -> Self {
        Self {
            user: Some((id, username.to_string())),
            client: Some(client.clone()),
            authority: Authority::Holder {
                superuser: false,
                administrator: false,
                permissions: Vec::new(),
            },
        }
    }

    /// The caller of a guarded route, holding what its credential grants (an API
    /// key's or temporary token's scope, a token's roles and permissions).
    pub fn principal(caller: &super::Principal, client: &ClientContext) -> Self {
        Self {
            authority: Authority::Holder {
                superuser: caller.is_superuser,
                administrator: caller.has_role(super::privilege::ADMIN_ROLE),
                permissions: caller.permissions.clone(),
            },
            ..Self::user(caller.user_id, &caller.username, client)
        }
    }

    pub fn id(&self) -> Option<Uuid> {
        self.user.as_ref().map(|(id, _)| *id)
    }

    /// An event this actor did.
    pub fn event(&self, action: &str) -> AuditEvent {
        let mut event = AuditEvent::new(action);
        event.actor = self.user.clone().map(|(id, name)| (id, Some(name)));
        event.client = self.client.clone();
        if self.user.is_none() {
            event = event.meta("via", "system");
        }
        event
    }
}

/// An authenticated API request, as the guard saw it.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    pub user_id: Uuid,
    pub username: String,
    pub method: String,
    /// The route template, e.g. `GET /admin/users/{id}` is the action.
    pub route: String,
    pub path: String,
    pub resource: Option<(String, String)>,
    pub status: u16,
    pub duration_ms: u64,
    pub client: ClientContext,
    pub at: DateTime<Utc>,
}

/// The first break `portcullis audit verify` found, or how much it checked.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub chains: usize,
    pub records: u64,
    /// None when every chain is intact.
    pub broken: Option<BrokenLink>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BrokenLink {
    /// Which check failed.
    pub check: BrokenCheck,
    /// The chain ('' when the set of chains is what failed).
    pub chain: String,
    pub seq: i64,
    pub reason: String,
}

/// The check of `verify_audit` that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BrokenCheck {
    /// The chains present are not the set the registry holds: a whole chain (its
    /// records and its head) was removed, or one was added, without the master key.
    ChainRemoved,
    /// A chain's base (or the position its keyed links start from) is not the one its
    /// anchor holds: records were cut from its front, other than by a purge.
    FrontCut,
    /// A record's fields, link or hash do not match: it was rewritten.
    RecordRewritten,
    /// A record is missing from the middle of a chain.
    RecordMissing,
    /// A chain's newest records were removed: it ends before its head, or its head
    /// was moved back without the key.
    TailCut,
}

impl BrokenCheck {
    /// The check's name, as `audit verify` prints it.
    pub fn name(self) -> &'static str {
        match self {
            Self::ChainRemoved => "chain removed",
            Self::FrontCut => "front cut",
            Self::RecordRewritten => "record rewritten",
            Self::RecordMissing => "record missing",
            Self::TailCut => "tail cut",
        }
    }
}

/// The security events Portcullis itself records (README: Audit trail). A filter may
/// name them in any case; the other actions it may name are those recorded so far
/// (services' custom events, `METHOD /route` of requests).
pub const ACTIONS: &[&str] = &[
    "APIKEY_CREATE",
    "APIKEY_REVOKE",
    "APP_CODE_REPLAYED",
    "APP_SIGN_IN",
    "AUDIT_PURGED",
    "CLIENT_CREATE",
    "CLIENT_DELETE",
    "CLIENT_SECRET_ROTATE",
    "CLIENT_TOKEN",
    "CLIENT_UPDATE",
    "CONSENT_GRANT",
    "CONSENT_REVOKE",
    "DEVICE_APPROVE",
    "DEVICE_DENY",
    "LOGIN",
    "LOGIN_FAILURE",
    "LOGOUT",
    "LOGOUT_ALL",
    "MFA_CHALLENGE",
    "MFA_DISABLE",
    "MFA_ENABLE",
    "MFA_ENROLL",
    "MFA_ENROLLMENT_REQUIRED",
    "MFA_FAILURE",
    "MFA_RECOVERY_CODES_REGENERATE",
    "MFA_RECOVERY_CODE_USED",
    "MFA_RESET",
    "OAUTH_LINK",
    "OAUTH_LOGIN",
    "OAUTH_UNLINK",
    "PASSWORD_CHANGE",
    "PASSWORD_RESET",
    "PERMISSION_CREATE",
    "PERMISSION_DELETE",
    "PERMISSION_GRANT",
    "PERMISSION_REVOKE",
    "REFRESH_REUSE_DETECTED",
    "REGISTER",
    "ROLE_ASSIGN",
    "ROLE_CREATE",
    "ROLE_DELETE",
    "ROLE_REMOVE",
    "ROLE_UPDATE",
    "SESSIONS_REVOKE",
    "SESSION_EXPIRED",
    "SIGNING_KEY_ROTATE",
    "STEP_UP",
    "STEP_UP_FAILURE",
    "TEMP_TOKEN_CREATE",
    "TOKEN_REFRESH",
    "USER_CREATE",
    "USER_DELETE",
    "USER_DISABLE",
    "USER_ENABLE",
    "USER_UNLOCK",
    "USER_UPDATE",
];

/// Actions recorded under another name before: (the name now, the former name). The
/// services Portcullis replaces call a successful login `LOGIN`, and their clients
/// filter by it; earlier Portcullis versions recorded `LOGIN_SUCCESS`. A filter naming
/// either finds both.
const FORMER_NAMES: &[(&str, &str)] = &[("LOGIN", "LOGIN_SUCCESS")];

/// A filter [`Portcullis::resolve_audit_filter`] checked and resolved; only it makes
/// one, so a forward read never runs on an unchecked filter.
#[derive(Debug, Clone)]
pub struct ResolvedAuditFilter(AuditFilter);

impl ResolvedAuditFilter {
    /// Reads on after record `id` (the next page).
    pub fn after(&mut self, id: i64) {
        self.0.after_id = Some(id);
    }
}

/// `filter` with every action it names widened to that action's other name.
fn with_former_names(filter: &AuditFilter) -> std::borrow::Cow<'_, AuditFilter> {
    let mut actions = filter.actions.clone();
    for (now, former) in FORMER_NAMES {
        for (named, other) in [(now, former), (former, now)] {
            if filter.actions.iter().any(|a| a == named) && !actions.iter().any(|a| a == other) {
                actions.push(other.to_string());
            }
        }
    }
    if actions.len() == filter.actions.len() {
        return std::borrow::Cow::Borrowed(filter);
    }
    std::borrow::Cow::Owned(AuditFilter {
        actions,
        ..filter.clone()
    })
}

impl Portcullis {
    fn trail(&self) -> &AuditTrail {
        &self.inner().audit
    }

    /// Stamps and chains `event`; None when auditing is off. Store writes take the
    /// result and append it inside their own transaction.
    pub(crate) fn audit_record(&self, event: AuditEvent) -> Option<AuditFields> {
        let trail = self.trail();
        if !trail.enabled {
            return None;
        }
        let client = event.client.unwrap_or_default();
        Some(
            AuditFields {
                chain: trail.chain(),
                kind: "event".into(),
                action: event.action,
                user_id: event.actor.as_ref().map(|(id, _)| id.to_string()),
                username: event.actor.and_then(|(_, name)| name),
                resource_type: event.resource.as_ref().map(|(t, _)| t.clone()),
                resource_id: event.resource.map(|(_, id)| id),
                ip: client.ip,
                user_agent: client.user_agent,
                request_id: client.request_id,
                metadata: event.metadata.to_string(),
                ..AuditFields::default()
            }
            .stamped(Utc::now()),
        )
    }

    /// Records an event that changes nothing else (a failed login, or a custom event
    /// of a service embedding Portcullis).
    ///
    /// A NUL character in the action or resource is refused (422) on every backend:
    /// PostgreSQL's text cannot hold it. (The HTTP API refuses every control
    /// character there; metadata is JSON text, in which NUL is escaped.)
    pub async fn log_event(&self, event: AuditEvent) -> AppResult<()> {
        let resource = event.resource.as_ref();
        for (field, text) in [
            ("action", Some(&event.action)),
            ("resource_type", resource.map(|(kind, _)| kind)),
            ("resource_id", resource.map(|(_, id)| id)),
        ] {
            if text.is_some_and(|t| t.contains('\0')) {
                return Err(AppError::validation(field, "must not contain NUL"));
            }
        }
        match self.audit_record(event) {
            Some(record) => self.store().append_audit(&record.chain.clone(), vec![record]).await,
            None => Ok(()),
        }
    }

    /// Whether requests are audited: when not, callers need not build their records.
    pub fn audits_requests(&self) -> bool {
        self.trail().enabled
    }

    /// Queues an authenticated request's record; never waits. A full buffer drops it
    /// and counts the drop.
    pub fn audit_request(&self, r: RequestRecord) {
        let trail = self.trail();
        if !trail.enabled {
            return;
        }
        let fields = AuditFields {
            // The chain is chosen when the batch is written.
            kind: "request".into(),
            action: r.route,
            user_id: Some(r.user_id.to_string()),
            username: Some(r.username),
            resource_type: r.resource.as_ref().map(|(t, _)| t.clone()),
            resource_id: r.resource.map(|(_, id)| id),
            ip: r.client.ip,
            user_agent: r.client.user_agent,
            method: Some(r.method),
            path: Some(r.path),
            status: Some(i32::from(r.status)),
            duration_ms: Some(r.duration_ms.min(i32::MAX as u64) as i32),
            request_id: r.client.request_id,
            metadata: "{}".into(),
            ..AuditFields::default()
        }
        .stamped(r.at);
        if trail.requests.try_send(fields).is_err() {
            metrics::counter!("portcullis_audit_requests_dropped_total").increment(1);
        }
    }

    /// Writes request records as they arrive until `stop` changes: each batch is
    /// whatever queued while the previous one was written and while the writer yielded
    /// (up to `BATCH`), so the buffer stays nearly empty and memory flat under load.
    /// Stops only between batches, so none is cut off half-written;
    /// `flush_audit_requests` writes the rest.
    pub async fn write_audit_requests(&self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let pending = &self.trail().pending;
        let mut runs = AuditByUserRuns::default();
        loop {
            let first = tokio::select! {
                next = pending.recv_async() => match next {
                    Ok(record) => record,
                    Err(_) => return,
                },
                _ = stop.changed() => return,
            };
            // Let requests that are ready run first and queue their records: bigger
            // batches, and no timer that could hold the writer back under load.
            for _ in 0..FILL_YIELDS {
                if pending.len() + 1 >= BATCH {
                    break;
                }
                tokio::task::yield_now().await;
            }
            let batch: Vec<AuditFields> = super::with_queued(first, pending, BATCH).collect();
            let n = batch.len();
            if let Err(e) = self.store().append_audit(&self.trail().chain(), batch).await {
                metrics::counter!("portcullis_audit_requests_dropped_total").increment(n as u64);
                tracing::warn!(error = %e, records = n, "writing audit records failed; they are dropped");
                continue;
            }
            if let Err(e) = runs.appended(self.store(), n).await {
                tracing::warn!(error = %e, "indexing audit records by user failed; the next run retries");
            }
        }
    }

    /// Writes queued request records, in batches; returns how many.
    pub async fn flush_audit_requests(&self) -> AppResult<usize> {
        let mut written = 0;
        loop {
            let batch: Vec<AuditFields> = self.trail().pending.try_iter().take(BATCH).collect();
            if batch.is_empty() {
                return Ok(written);
            }
            written += batch.len();
            self.store().append_audit(&self.trail().chain(), batch).await?;
        }
    }

    /// Records matching `filter`, newest first; `limit` 1-1000. Its actions are read
    /// as [`Portcullis::audit_filter_actions`] says.
    pub async fn audit_log(&self, filter: &AuditFilter, limit: i64, offset: i64) -> AppResult<Vec<AuditRow>> {
        validate::all([
            validate::query_number("limit", Some(limit), 1..=1000),
            validate::query_number("offset", Some(offset), 0..=validate::OFFSET_MAX),
        ])?;
        let filter = self.resolve_audit_filter(filter).await?;
        self.store().audit_records(&filter.0, false, limit, offset).await
    }

    /// `filter` checked ([`check_audit_filter`]) and its actions resolved
    /// ([`Portcullis::audit_filter_actions`], widened to their former names): done once
    /// before a paging loop, so a bad filter is refused before an export starts and
    /// no page repeats the work.
    pub async fn resolve_audit_filter(&self, filter: &AuditFilter) -> AppResult<ResolvedAuditFilter> {
        check_audit_filter(filter)?;
        let filter = self.audit_filter_actions(filter).await?;
        Ok(ResolvedAuditFilter(with_former_names(&filter).into_owned()))
    }

    /// `filter` with each action it names spelled as recorded: Portcullis's own events
    /// (and their former names) in any case (`login` is `LOGIN`), then the actions
    /// recorded so far, exactly or else in any case. A name that is neither matches
    /// nothing, which would read as "no such records": a 422 naming it (and the nearest
    /// known name, when one is close).
    pub async fn audit_filter_actions(&self, filter: &AuditFilter) -> AppResult<AuditFilter> {
        let own = ACTIONS.iter().chain(FORMER_NAMES.iter().map(|(_, former)| former));
        let own_name = |name: &str| own.clone().find(|k| k.eq_ignore_ascii_case(name));
        // Read only when a name is not one of our own.
        let recorded = match filter.actions.iter().all(|name| own_name(name).is_some()) {
            true => Vec::new(),
            false => self.store().audit_actions().await?,
        };
        let mut actions = Vec::with_capacity(filter.actions.len());
        for name in &filter.actions {
            if let Some(known) = own_name(name) {
                actions.push(known.to_string());
                continue;
            }
            if recorded.iter().any(|r| r == name) {
                actions.push(name.clone());
                continue;
            }
            let folded: Vec<&String> = recorded.iter().filter(|r| r.eq_ignore_ascii_case(name)).collect();
            if !folded.is_empty() {
                actions.extend(folded.into_iter().cloned());
                continue;
            }
            let hint = crate::config::names::nearest(
                &name.to_ascii_uppercase(),
                own.clone().copied().chain(recorded.iter().map(String::as_str)),
            )
            .map(|n| format!(" (did you mean {n}?)"))
            .unwrap_or_default();
            return Err(AppError::validation(
                "action",
                format!("{name:?} is neither an action Portcullis records nor one recorded so far{hint}"),
            ));
        }
        Ok(AuditFilter {
            actions,
            ..filter.clone()
        })
    }

    /// Records matching `filter`, oldest first (export and tail read forward by id).
    pub async fn audit_log_forward(&self, filter: &ResolvedAuditFilter, limit: i64) -> AppResult<Vec<AuditRow>> {
        self.store().audit_records(&filter.0, true, limit, 0).await
    }

    /// Every action recorded so far, in alphabetical order.
    pub async fn audit_actions(&self) -> AppResult<Vec<String>> {
        self.store().audit_actions().await
    }

    /// Checks the whole trail, and reports the first check that fails (see
    /// [`BrokenCheck`]): the set of chains against the registry; each chain's base
    /// against its anchor and its head against the head's MAC; then every record from the base to the head as read first
    /// (so records written meanwhile do not look like a broken chain): its position,
    /// its link to the previous record, and its hash, keyed from the chain's
    /// `keyed_from` on (before that, the unkeyed links of records written before
    /// chains were keyed); and the last record against the head.
    pub async fn verify_audit(&self) -> AppResult<VerifyReport> {
        let store = self.store();
        let key = store
            .audit_key()
            .ok_or_else(|| crate::error::AppError::internal(anyhow::anyhow!(NO_AUDIT_KEY)))?;
        let AuditChains { registry, chains } = store.audit_chains().await?;
        let mut records = 0u64;
        let report = |records, check, chain: &str, seq, reason: &str| VerifyReport {
            chains: chains.len(),
            records,
            broken: Some(BrokenLink {
                check,
                chain: chain.to_string(),
                seq,
                reason: reason.to_string(),
            }),
        };
        if registry != key.registry(chains.iter().map(|c| c.chain.as_str())) {
            return Ok(report(
                0,
                BrokenCheck::ChainRemoved,
                "",
                0,
                "the chains present are not those the registry holds: a whole chain was removed (or one added) without the master key",
            ));
        }
        for chain in &chains {
            if chain.anchor != key.anchor(&chain.chain, chain.base_seq, &chain.base_hash, chain.keyed_from) {
                return Ok(report(
                    records,
                    BrokenCheck::FrontCut,
                    &chain.chain,
                    chain.base_seq + 1,
                    "the chain's base does not match its anchor: records were cut from its front without the master key",
                ));
            }
            let (mut seq, mut hash) = (chain.base_seq, chain.base_hash.clone());
            // Up to the head read above: records appended since are checked next time.
            'chain: while seq < chain.seq {
                let rows = store.audit_chain_rows(&chain.chain, seq, 1000).await?;
                if rows.is_empty() {
                    break;
                }
                for row in rows {
                    if row.seq > chain.seq {
                        break 'chain;
                    }
                    let expected = |prev: &str| {
                        if row.seq >= chain.keyed_from {
                            key.link(prev, row.seq, &row.fields)
                        } else {
                            link_hash(prev, row.seq, &row.fields)
                        }
                    };
                    let fault = if row.seq != seq + 1 {
                        Some((BrokenCheck::RecordMissing, format!("record {} is missing", seq + 1)))
                    } else if row.prev_hash != hash {
                        Some((
                            BrokenCheck::RecordRewritten,
                            "link to the previous record does not match".to_string(),
                        ))
                    } else if expected(&hash) != row.hash {
                        Some((BrokenCheck::RecordRewritten, "record was altered".to_string()))
                    } else {
                        None
                    };
                    if let Some((check, reason)) = fault {
                        return Ok(report(records, check, &chain.chain, seq + 1, &reason));
                    }
                    seq = row.seq;
                    hash = row.hash;
                    records += 1;
                }
            }
            if chain.head_mac != key.head(&chain.chain, chain.seq, &chain.head) {
                return Ok(report(
                    records,
                    BrokenCheck::TailCut,
                    &chain.chain,
                    chain.seq,
                    "the chain's head does not match its MAC: the head was moved without the master key (its newest records cut)",
                ));
            }
            if seq != chain.seq || hash != chain.head {
                return Ok(report(
                    records,
                    BrokenCheck::TailCut,
                    &chain.chain,
                    seq + 1,
                    "records after this point were removed",
                ));
            }
        }
        Ok(VerifyReport {
            chains: chains.len(),
            records,
            broken: None,
        })
    }

    /// Drops records past the retention period (`AUDIT_RETENTION_DAYS`, 0 keeps all),
    /// and records each chain's purge (`AUDIT_PURGED`) in the purge's transaction, on
    /// the purged chain itself, right after the gap it explains.
    pub(crate) async fn purge_audit(&self, now: DateTime<Utc>) -> AppResult<u64> {
        match self.config().audit.retention {
            Some(keep) => {
                let keep = chrono::Duration::from_std(keep).unwrap_or(chrono::TimeDelta::MAX);
                let before = now.checked_sub_signed(keep).unwrap_or(DateTime::<Utc>::MIN_UTC);
                self.store()
                    .purge_audit(before, |p| {
                        self.audit_record(
                            AuditEvent::new("AUDIT_PURGED")
                                .resource("audit_chain", &p.chain)
                                .meta("via", "system")
                                .meta("records", p.records)
                                .meta("from_seq", p.from_seq)
                                .meta("through_seq", p.through_seq)
                                .meta("through_at", p.through_at)
                                .meta("retention_before", p.before),
                        )
                        .map(|mut record| {
                            record.chain = p.chain.clone();
                            record
                        })
                    })
                    .await
            }
            None => Ok(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ACTIONS` is what a filter may name before anything was recorded: every action
    /// the code records by name must be in it (a scan of the sources, like the metrics'
    /// check in `recorder.rs`).
    #[test]
    fn every_action_recorded_by_name_is_listed() {
        fn sources(dir: &std::path::Path, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    sources(&path, out);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    out.push(std::fs::read_to_string(&path).unwrap());
                }
            }
        }
        let mut texts = Vec::new();
        sources(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut texts,
        );
        let mut seen = 0;
        for text in &texts {
            for opener in [".event(\"", "AuditEvent::new(\""] {
                for piece in text.split(opener).skip(1) {
                    let action = piece.split('"').next().unwrap_or_default();
                    if !action.is_empty() && action.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') {
                        seen += 1;
                        assert!(ACTIONS.contains(&action), "{action} is recorded but not in ACTIONS");
                    }
                }
            }
        }
        assert!(seen > 20, "the scan found only {seen} recorded actions");
    }

    #[test]
    fn terminal_output_carries_no_raw_controls() {
        let hostile = "a\u{1b}[2J\u{202e}b\u{9b}c\u{2066}\\d\u{7f}é";
        let shown = escape_for_terminal(hostile);
        assert!(!shown.chars().any(unsafe_for_terminal), "{shown}");
        assert_eq!(shown, "a\\u{1b}[2J\\u{202e}b\\u{9b}c\\u{2066}\\\\d\\u{7f}é");
        assert_eq!(escape_for_terminal("plain"), "plain");

        let mut out = Vec::new();
        write_terminal_safe_json(&mut out, &serde_json::json!({"k": hostile})).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(!text.chars().any(unsafe_for_terminal), "{text}");
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["k"], hostile, "the same value for a parser");
    }
}
