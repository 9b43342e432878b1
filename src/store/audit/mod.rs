//! The audit trail: hash-chained records, appended inside the transaction of the
//! change they describe (`append_in_tx`) or in batches (request records), read back
//! with filters, and walked for verification.

use chrono::{DateTime, SubsecRound, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{Database, Encode, Executor, FromRow, IntoArguments, QueryBuilder, Type};

mod sqlite_append;

use super::placeholders;
use super::tx::{begin_write, within};
use super::{Store, on_pool};
use crate::error::AppResult;

row_struct! {
    /// What a record says; the part the link hash covers (with its chain position).
    #[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
    pub struct AuditFields {
        pub chain: String,
        pub at: DateTime<Utc>,
        /// `event` (a security event) or `request` (an authenticated API request).
        pub kind: String,
        pub action: String,
        pub user_id: Option<String>,
        pub username: Option<String>,
        pub resource_type: Option<String>,
        pub resource_id: Option<String>,
        pub ip: Option<String>,
        pub user_agent: Option<String>,
        pub method: Option<String>,
        pub path: Option<String>,
        pub status: Option<i32>,
        pub duration_ms: Option<i32>,
        pub request_id: Option<String>,
        /// A JSON object, as text.
        pub metadata: String,
    }
}

impl AuditFields {
    /// Timestamps are kept to the microsecond, as PostgreSQL stores them, so the hash
    /// computed on write is the one recomputed on read.
    pub fn stamped(mut self, at: DateTime<Utc>) -> Self {
        self.at = at.trunc_subsecs(6);
        self
    }

    /// This record with its actor filled in, when the caller could not know it (the
    /// owner of a presented refresh token, a user registering themselves).
    pub fn for_user(&self, user_id: uuid::Uuid, username: Option<&str>) -> Self {
        let mut r = self.clone();
        if r.user_id.is_none() {
            r.user_id = Some(user_id.to_string());
            r.username = username.map(str::to_string);
        }
        r
    }

    /// This record, about a resource only the store knows at write time.
    pub fn on(mut self, resource_type: &str, resource_id: impl ToString) -> Self {
        self.resource_type = Some(resource_type.to_string());
        self.resource_id = Some(resource_id.to_string());
        self
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditRow {
    pub id: i64,
    pub seq: i64,
    #[serde(flatten)]
    pub fields: AuditFields,
    pub prev_hash: String,
    pub hash: String,
}

impl<'r, R: sqlx::Row> sqlx::FromRow<'r, R> for AuditRow
where
    &'static str: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    AuditFields: sqlx::FromRow<'r, R>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            seq: row.try_get("seq")?,
            fields: AuditFields::from_row(row)?,
            prev_hash: row.try_get("prev_hash")?,
            hash: row.try_get("hash")?,
        })
    }
}

row_struct! {
    #[derive(Debug, Clone)]
    pub struct AuditChainRow {
        pub chain: String,
        pub seq: i64,
        pub head: String,
        pub base_seq: i64,
        pub base_hash: String,
        /// The first position whose link is keyed (`AuditKey::link`); records before
        /// it were written before migration 0012 and are linked by `link_hash`.
        pub keyed_from: i64,
        /// `AuditKey::anchor` of the chain's name, base and `keyed_from`.
        pub anchor: String,
        /// `AuditKey::head` of the chain's name, `seq` and `head`.
        pub head_mac: String,
    }
}

/// The canonical text of a record at `seq` linked to its predecessor's hash `prev`:
/// the compact JSON array of the link and every field.
///
/// The array is written element by element into one buffer (no `Value` tree: this
/// runs for every audited request), byte for byte what `serde_json::json!` printed.
fn link_text(prev: &str, seq: i64, f: &AuditFields) -> Vec<u8> {
    let mut buf = Vec::with_capacity(512);
    put(&mut buf, prev);
    put(&mut buf, &f.chain);
    put(&mut buf, &seq);
    put(&mut buf, &f.at.timestamp_micros());
    put(&mut buf, &f.kind);
    put(&mut buf, &f.action);
    for text in [
        &f.user_id,
        &f.username,
        &f.resource_type,
        &f.resource_id,
        &f.ip,
        &f.user_agent,
        &f.method,
        &f.path,
    ] {
        put(&mut buf, text);
    }
    put(&mut buf, &f.status);
    put(&mut buf, &f.duration_ms);
    put(&mut buf, &f.request_id);
    put(&mut buf, &f.metadata);
    buf.push(b']');
    buf
}

/// Appends `value` to the JSON array being written in `buf`.
fn put<T: Serialize + ?Sized>(buf: &mut Vec<u8>, value: &T) {
    buf.push(if buf.is_empty() { b'[' } else { b',' });
    // Writing strings and numbers into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *buf, value);
}

/// Lower-case hex.
fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(2 * bytes.len());
    for b in bytes {
        hex.push(HEX[usize::from(b >> 4)] as char);
        hex.push(HEX[usize::from(b & 15)] as char);
    }
    hex
}

/// The unkeyed link of records written before chains were keyed (migration 0012):
/// SHA-256 of `link_text`, in lower-case hex. Anyone who can write the database can
/// recompute it, so such a record proves only that nothing was changed by someone who
/// did not also recompute the chain after it.
pub fn link_hash(prev: &str, seq: i64, f: &AuditFields) -> String {
    hex(&Sha256::digest(link_text(prev, seq, f)))
}

/// The key audit chains are linked and anchored with: HMAC-SHA-256 under a key the
/// service derives from the master key (`crypto::secretbox::MasterKey::derive`), so a
/// database writer without the master key can neither recompute a link nor move a
/// chain's base, nor drop a chain from the registry.
#[derive(Clone)]
pub struct AuditKey(std::sync::Arc<aws_lc_rs::hmac::Key>);

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey(..)")
    }
}

impl AuditKey {
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        Self(std::sync::Arc::new(aws_lc_rs::hmac::Key::new(
            aws_lc_rs::hmac::HMAC_SHA256,
            bytes,
        )))
    }

    fn mac(&self, text: &[u8]) -> String {
        hex(aws_lc_rs::hmac::sign(&self.0, text).as_ref())
    }

    /// The keyed link of a record at `seq` after a record whose hash is `prev`.
    pub fn link(&self, prev: &str, seq: i64, f: &AuditFields) -> String {
        self.mac(&link_text(prev, seq, f))
    }

    /// A chain's anchor: where it starts (its base, moved only by a purge) and from
    /// which position its links are keyed. Each MAC input is a JSON array whose length
    /// differs from the others' (a link's has 18 elements), so none can pass for another.
    pub fn anchor(&self, chain: &str, base_seq: i64, base_hash: &str, keyed_from: i64) -> String {
        let mut buf = Vec::with_capacity(128);
        put(&mut buf, "anchor");
        put(&mut buf, chain);
        put(&mut buf, &base_seq);
        put(&mut buf, base_hash);
        put(&mut buf, &keyed_from);
        buf.push(b']');
        self.mac(&buf)
    }

    /// A chain's head: its last position and that record's hash, MACed on every
    /// append (in the statement that moves the head), so that cutting a chain's newest
    /// records and moving its head back onto a record still there takes the key, or the
    /// MAC the head had then.
    pub fn head(&self, chain: &str, seq: i64, head: &str) -> String {
        let mut buf = Vec::with_capacity(128);
        put(&mut buf, "head");
        put(&mut buf, chain);
        put(&mut buf, &seq);
        put(&mut buf, head);
        buf.push(b']');
        self.mac(&buf)
    }

    /// A chain's share of the registry: the registry holds the XOR of every chain's
    /// share, so adding a chain touches one row and no other chain, and removing one
    /// (rows and head) changes what the remaining chains add up to.
    fn registry_share(&self, chain: &str) -> [u8; 32] {
        let mut buf = Vec::with_capacity(64);
        put(&mut buf, "chain");
        put(&mut buf, chain);
        buf.push(b']');
        let mut share = [0u8; 32];
        share.copy_from_slice(aws_lc_rs::hmac::sign(&self.0, &buf).as_ref());
        share
    }

    /// The registry of exactly `chains`.
    pub fn registry<'a>(&self, chains: impl IntoIterator<Item = &'a str>) -> String {
        let mut sum = [0u8; 32];
        for chain in chains {
            xor(&mut sum, &self.registry_share(chain));
        }
        hex(&sum)
    }

    /// `registry` with `chain` added.
    fn registry_with(&self, registry: &str, chain: &str) -> String {
        let mut sum = unhex(registry).unwrap_or([0u8; 32]);
        xor(&mut sum, &self.registry_share(chain));
        hex(&sum)
    }
}

fn xor(sum: &mut [u8; 32], share: &[u8; 32]) {
    for (s, b) in sum.iter_mut().zip(share) {
        *s ^= b;
    }
}

/// 32 bytes from 64 hex digits; None for anything else (an empty, pending registry).
fn unhex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The stored columns of a record, in the order every insert binds them.
macro_rules! audit_columns {
    () => {
        "chain, seq, at, kind, action, user_id, username, resource_type, resource_id, ip, user_agent, method, path, status, duration_ms, request_id, metadata, prev_hash, hash"
    };
}
pub(crate) use audit_columns;

/// The tail of a PostgreSQL statement appending `AuditArrays` (`$1`-`$19`) to chain
/// `$21` and moving it to position `$22` and head `$20` (`$23` its MAC); see
/// `APPEND_ARRAYS_POSTGRES`.
macro_rules! append_audit_arrays_postgres {
    () => {
        concat!(
            "moved_head AS (UPDATE audit_chains SET seq = $22, head = $20, head_mac = $23 WHERE chain = $21) INSERT INTO audit_log (",
            $crate::store::audit::audit_columns!(),
            ") SELECT * FROM unnest($1::text[], $2::bigint[], $3::timestamptz[], $4::text[], $5::text[], $6::text[], \
             $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::int4[], \
             $15::int4[], $16::text[], $17::text[], $18::text[], $19::text[])"
        )
    };
}
pub(crate) use append_audit_arrays_postgres;

/// Takes the next `$2` positions of a chain (creating it on first use), returning the
/// last of them and the head before; the row lock it takes orders writers of a chain.
pub(crate) const BUMP_CHAIN: &str = "INSERT INTO audit_chains (chain, seq, head) VALUES ($1, $2, '') \
     ON CONFLICT (chain) DO UPDATE SET seq = audit_chains.seq + $2 RETURNING seq, head";
/// Moves a chain's head to `$2`, with its MAC `$3` (`AuditKey::head`).
pub(crate) const SET_HEAD: &str = "UPDATE audit_chains SET head = $2, head_mac = $3 WHERE chain = $1";
pub(crate) const INSERT: &str = concat!(
    "INSERT INTO audit_log (",
    audit_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)"
);
/// The values stored for a record, in `audit_columns!` order: the 16 fields of
/// `AuditFields`, the record's position on its chain, its predecessor's hash and its
/// own. `INSERT` is checked against it below; the binder through SQLite's C API binds
/// an array of exactly this length, and a unit test counts what the sqlx binders bind.
/// (`AuditArrays::from` takes the fields apart exhaustively: a new field does not
/// compile until it has an array, which the count then asks for everywhere.)
pub(crate) const RECORD_VALUES: usize = 19;
const _: () = assert!(
    matches!(placeholders::in_order(INSERT), Some(RECORD_VALUES)),
    "audit::INSERT must have the placeholders $1..$19, in order"
);
/// PostgreSQL: `AuditArrays` (`$1`-`$19`) appended to chain `$21`, which ends at
/// position `$22` with head `$20` (its MAC `$23`).
const APPEND_ARRAYS_POSTGRES: &str = concat!("WITH ", append_audit_arrays_postgres!());
const COLUMNS: &str = concat!("id, ", audit_columns!());
/// Every chain with the registry, read in one statement so that both come from one
/// snapshot (a chain registered meanwhile is in both or in neither); with no chain, one
/// row of NULLs carrying the registry.
const CHAINS: &str = "SELECT r.chains AS registry, c.chain, c.seq, c.head, c.base_seq, c.base_hash, c.keyed_from, c.anchor, c.head_mac \
     FROM audit_registry r LEFT JOIN audit_chains c ON 1 = 1 ORDER BY c.chain";
/// Anchors a chain just created (by `BUMP_CHAIN`, at position 0 with no base), once.
const ANCHOR_NEW: &str =
    "UPDATE audit_chains SET anchor = $2 WHERE chain = $1 AND anchor = '' AND seq = $3 RETURNING chain";
/// Locks the registry row and reads it.
const LOCK_REGISTRY: &str = "UPDATE audit_registry SET chains = chains RETURNING chains";
const REGISTRY: &str = "SELECT chains FROM audit_registry";
const SET_REGISTRY: &str = "UPDATE audit_registry SET chains = $1";
const UNANCHORED: &str =
    "SELECT chain, seq, head, base_seq, base_hash, keyed_from, anchor FROM audit_chains ORDER BY chain";
const SET_ANCHOR: &str = "UPDATE audit_chains SET anchor = $2, head_mac = $3 WHERE chain = $1";
/// The distinct actions, by hopping along the (action, id) index from one action to
/// the next: one index probe per action rather than a scan of every record.
const ACTIONS: &str = "WITH RECURSIVE a(action) AS (\
    SELECT MIN(action) FROM audit_log \
    UNION ALL SELECT (SELECT MIN(action) FROM audit_log WHERE action > a.action) FROM a WHERE a.action IS NOT NULL\
    ) SELECT action FROM a WHERE action IS NOT NULL";
const CHAIN_ROWS: &str = concat!(
    "SELECT id, ",
    audit_columns!(),
    " FROM audit_log WHERE chain = $1 AND seq > $2 ORDER BY seq LIMIT $3"
);
/// The first record of a chain past its base `$3` that retention keeps (`$2` the
/// oldest instant kept): a purge stops before it, whatever follows it.
const FIRST_KEPT: &str = "SELECT seq FROM audit_log WHERE chain = $1 AND seq > $3 AND at >= $2 ORDER BY seq LIMIT 1";
/// The last record before position `$3` (the first kept one), if it is expired.
const LAST_EXPIRED: &str =
    "SELECT seq, hash, at FROM audit_log WHERE chain = $1 AND seq < $3 AND at < $2 ORDER BY seq DESC LIMIT 1";
/// Locks a chain's row and reads its base and scheme, for the purge that moves them.
const LOCK_CHAIN: &str = "UPDATE audit_chains SET seq = seq WHERE chain = $1 RETURNING base_seq, keyed_from";
const SET_BASE: &str = "UPDATE audit_chains SET base_seq = $2, base_hash = $3, anchor = $4 WHERE chain = $1";
const DELETE_THROUGH: &str = "DELETE FROM audit_log WHERE chain = $1 AND seq <= $2";

// SQLite finds a user's records through `audit_by_user`, filled in sorted runs behind
// the writer, instead of an index on `audit_log` that every commit of request records
// rewrote a page of per active user (migration 0008). Records past the mark are not in
// it yet: a user filter reads them from `audit_log` directly.

/// Records the writer lets accumulate past the mark before indexing them by user in one
/// run. CPU a request record appended in batches of 200 (`BENCH_ONLY=audit-append`,
/// three alternating pairs against the `(user_id, id)` index on `audit_log`): one user
/// 16-17 µs against 15, 64 users 17-18 against 17-21, 1,000 users 16.5-19 against
/// 22-26. Longer runs rewrite each user's page less often but leave more records for a
/// user filter to scan; runs of 4,096 did no better, unsorted runs worse.
pub const AUDIT_BY_USER_RUN: i64 = 8192;

/// Counts the request records a writer appended, and indexes them by user once a run
/// of `AUDIT_BY_USER_RUN` has gathered: counted rather than asked of the store after
/// every batch. Records written elsewhere (events) join the next run, or the upkeep's.
#[derive(Debug, Default)]
pub struct AuditByUserRuns {
    unindexed: i64,
}

impl AuditByUserRuns {
    /// After `appended` more records: runs the index when a run is due.
    pub async fn appended(&mut self, store: &Store, appended: usize) -> AppResult<u64> {
        self.unindexed += appended as i64;
        if self.unindexed < AUDIT_BY_USER_RUN {
            return Ok(0);
        }
        self.unindexed = 0;
        store.index_audit_by_user(AUDIT_BY_USER_RUN).await
    }
}
const SQLITE_BY_USER_TAIL: &str =
    "SELECT last_id, COALESCE((SELECT MAX(id) FROM audit_log), 0) FROM audit_by_user_mark";
const SQLITE_BY_USER_RUN: &str = "INSERT INTO audit_by_user (owner, record) \
     SELECT user_id, id FROM audit_log WHERE id > $1 AND id <= $2 AND user_id IS NOT NULL ORDER BY user_id, id";
const SQLITE_BY_USER_MARK: &str = "UPDATE audit_by_user_mark SET last_id = $1";
const SQLITE_BY_USER_PURGE: &str = "DELETE FROM audit_by_user WHERE (owner, record) IN \
     (SELECT user_id, id FROM audit_log WHERE chain = $1 AND seq <= $2 AND user_id IS NOT NULL)";
const SQLITE_PAST_MARK: &str = " AND id > (SELECT last_id FROM audit_by_user_mark)";

/// Binds an audit record at `seq`, linked from `prev` with `hash`, as the next
/// `RECORD_VALUES` parameters of `q`, in the column order of `INSERT` (the one place
/// that order is spelt out for single records: events in their transaction, rotations).
pub(crate) fn bind_audit_record<'q, DB>(
    q: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>,
    r: AuditFields,
    seq: i64,
    prev: String,
    hash: String,
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>
where
    DB: sqlx::Database,
    String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<String>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<i32>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    DateTime<Utc>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    q.bind(r.chain)
        .bind(seq)
        .bind(r.at)
        .bind(r.kind)
        .bind(r.action)
        .bind(r.user_id)
        .bind(r.username)
        .bind(r.resource_type)
        .bind(r.resource_id)
        .bind(r.ip)
        .bind(r.user_agent)
        .bind(r.method)
        .bind(r.path)
        .bind(r.status)
        .bind(r.duration_ms)
        .bind(r.request_id)
        .bind(r.metadata)
        .bind(prev)
        .bind(hash)
}

/// Why a store without the audit key cannot append to or verify the trail.
pub const NO_AUDIT_KEY: &str = "the audit trail is keyed with the master key, which was not given: \
     set PORTCULLIS_MASTER_KEY, or PORTCULLIS_MASTER_KEY_FILE to the file that holds it";

/// The store's audit key, or the error of a store opened without one.
pub(crate) fn need_key(key: Option<&AuditKey>) -> sqlx::Result<&AuditKey> {
    key.ok_or_else(|| sqlx::Error::Configuration(NO_AUDIT_KEY.into()))
}

/// Takes the next `count` positions of `chain` (creating it on first use), returning
/// the last of them and the head before; the row lock it takes orders writers of a
/// chain. A chain's first use also anchors it and adds it to the registry: two more
/// statements, once per chain (an instance opens its chains when it starts), never
/// on an append to a chain that exists.
pub(crate) async fn take_positions<DB, C>(
    conn: &mut C,
    key: &AuditKey,
    chain: &str,
    count: i64,
) -> sqlx::Result<(i64, String)>
where
    DB: Database,
    for<'c> &'c mut C: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'r> (i64, String): FromRow<'r, DB::Row>,
    for<'r> (String,): FromRow<'r, DB::Row>,
    for<'a> &'a str: Encode<'a, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
{
    let (last, prev): (i64, String) = sqlx::query_as(BUMP_CHAIN)
        .bind(chain)
        .bind(count)
        .fetch_one(&mut *conn)
        .await?;
    if last == count && prev.is_empty() {
        let anchored: Option<(String,)> = sqlx::query_as(ANCHOR_NEW)
            .bind(chain)
            .bind(key.anchor(chain, 0, "", 1))
            .bind(count)
            .fetch_optional(&mut *conn)
            .await?;
        // (A registry row someone deleted stays missing, for `audit verify` to report.)
        let registry: Option<(String,)> = match anchored {
            Some(_) => sqlx::query_as(LOCK_REGISTRY).fetch_optional(&mut *conn).await?,
            None => None,
        };
        if let Some((registry,)) = registry {
            sqlx::query(SET_REGISTRY)
                .bind(key.registry_with(&registry, chain))
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok((last, prev))
}

/// Appends `record` (None when auditing is off) to its chain inside the transaction
/// open on `conn`, so the record commits or rolls back with the change it describes.
pub(crate) async fn append_in_tx<DB, C>(
    conn: &mut C,
    key: Option<&AuditKey>,
    record: Option<&AuditFields>,
) -> sqlx::Result<()>
where
    DB: Database,
    for<'c> &'c mut C: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'r> (i64, String): FromRow<'r, DB::Row>,
    for<'r> (String,): FromRow<'r, DB::Row>,
    for<'a> &'a str: Encode<'a, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> Option<String>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<i32>: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> DateTime<Utc>: Encode<'q, DB> + Type<DB>,
{
    let Some(r) = record else { return Ok(()) };
    let key = need_key(key)?;
    let (seq, prev) = take_positions(&mut *conn, key, &r.chain, 1).await?;
    let hash = key.link(&prev, seq, r);
    sqlx::query(SET_HEAD)
        .bind(r.chain.as_str())
        .bind(hash.as_str())
        .bind(key.head(&r.chain, seq, &hash))
        .execute(&mut *conn)
        .await?;
    bind_audit_record(sqlx::query(INSERT), r.clone(), seq, prev, hash)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Every chain, and the registry: the XOR of each chain's `AuditKey::registry_share`
/// in hex ('' before the first start after migration 0012).
#[derive(Debug, Clone)]
pub struct AuditChains {
    pub registry: String,
    pub chains: Vec<AuditChainRow>,
}

row_struct! {
    /// A row of `CHAINS`: the registry, and a chain (all None when there is none).
    struct ChainsRow {
        registry: String,
        chain: Option<String>,
        seq: Option<i64>,
        head: Option<String>,
        base_seq: Option<i64>,
        base_hash: Option<String>,
        keyed_from: Option<i64>,
        anchor: Option<String>,
        head_mac: Option<String>,
    }
}

/// What one chain's purge removed: what its audit record says.
#[derive(Debug, Clone)]
pub struct PurgedChain {
    pub chain: String,
    pub records: u64,
    pub from_seq: i64,
    pub through_seq: i64,
    /// When the last purged record was written.
    pub through_at: DateTime<Utc>,
    /// The retention limit: every purged record is older.
    pub before: DateTime<Utc>,
}

/// Which records to read; empty fields do not filter.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub user_id: Option<String>,
    pub username: Option<String>,
    pub actions: Vec<String>,
    pub kind: Option<String>,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub status: Option<i32>,
    pub ip: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Newest-first paging: only records with a smaller id (a cursor).
    pub before_id: Option<i64>,
    /// Oldest-first reading (export, tail): only records with a larger id.
    pub after_id: Option<i64>,
}

/// Narrows a SELECT being built on `qb` to the records `f` asks for.
fn push_filter<DB>(qb: &mut QueryBuilder<DB>, f: &AuditFilter)
where
    DB: Database,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> i32: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> DateTime<Utc>: Encode<'q, DB> + Type<DB>,
{
    qb.push(" WHERE 1 = 1");
    for (column, value) in [
        ("user_id", &f.user_id),
        ("username", &f.username),
        ("kind", &f.kind),
        ("resource_type", &f.resource_type),
        ("resource_id", &f.resource_id),
        ("ip", &f.ip),
    ] {
        if let Some(v) = value {
            qb.push(format!(" AND {column} = ")).push_bind(v.clone());
        }
    }
    if !f.actions.is_empty() {
        qb.push(" AND action IN (");
        let mut list = qb.separated(", ");
        for a in &f.actions {
            list.push_bind(a.clone());
        }
        qb.push(")");
    }
    if let Some(s) = f.status {
        qb.push(" AND status = ").push_bind(s);
    }
    if let Some(t) = f.since {
        qb.push(" AND at >= ").push_bind(t);
    }
    if let Some(t) = f.until {
        qb.push(" AND at < ").push_bind(t);
    }
    if let Some(id) = f.before_id {
        qb.push(" AND id < ").push_bind(id);
    }
    if let Some(id) = f.after_id {
        qb.push(" AND id > ").push_bind(id);
    }
}

/// A record placed on its chain: its position, its predecessor's hash and its own.
pub(crate) struct Linked {
    pub seq: i64,
    pub record: AuditFields,
    pub prev: String,
    pub hash: String,
}

/// Places `records` on `chain` from position `first` (keyed links), after a record whose hash is
/// `prev`; returns them with the chain's new head.
pub(crate) fn link_records(
    key: &AuditKey,
    chain: &str,
    first: i64,
    mut prev: String,
    records: impl IntoIterator<Item = AuditFields>,
) -> (Vec<Linked>, String) {
    let linked = records
        .into_iter()
        .enumerate()
        .map(|(i, mut record)| {
            if record.chain != chain {
                record.chain = chain.to_string();
            }
            let seq = first + i as i64;
            let hash = key.link(&prev, seq, &record);
            let prev = std::mem::replace(&mut prev, hash.clone());
            Linked {
                seq,
                record,
                prev,
                hash,
            }
        })
        .collect();
    (linked, prev)
}

/// Records as one array per column, so that PostgreSQL inserts any number of them
/// with one statement through `unnest` (`APPEND_ARRAYS_POSTGRES`), one plan for every
/// batch size.
#[derive(Default)]
pub(crate) struct AuditArrays {
    chain: Vec<String>,
    seq: Vec<i64>,
    at: Vec<DateTime<Utc>>,
    kind: Vec<String>,
    action: Vec<String>,
    user_id: Vec<Option<String>>,
    username: Vec<Option<String>>,
    resource_type: Vec<Option<String>>,
    resource_id: Vec<Option<String>>,
    ip: Vec<Option<String>>,
    user_agent: Vec<Option<String>>,
    method: Vec<Option<String>>,
    path: Vec<Option<String>>,
    status: Vec<Option<i32>>,
    duration_ms: Vec<Option<i32>>,
    request_id: Vec<Option<String>>,
    metadata: Vec<String>,
    prev_hash: Vec<String>,
    hash: Vec<String>,
}

impl From<Vec<Linked>> for AuditArrays {
    fn from(linked: Vec<Linked>) -> Self {
        let mut a = AuditArrays::default();
        for Linked {
            seq,
            record,
            prev,
            hash,
        } in linked
        {
            // Spelt out in full, so that a new field cannot be left out of the arrays.
            let AuditFields {
                chain,
                at,
                kind,
                action,
                user_id,
                username,
                resource_type,
                resource_id,
                ip,
                user_agent,
                method,
                path,
                status,
                duration_ms,
                request_id,
                metadata,
            } = record;
            a.chain.push(chain);
            a.seq.push(seq);
            a.at.push(at);
            a.kind.push(kind);
            a.action.push(action);
            a.user_id.push(user_id);
            a.username.push(username);
            a.resource_type.push(resource_type);
            a.resource_id.push(resource_id);
            a.ip.push(ip);
            a.user_agent.push(user_agent);
            a.method.push(method);
            a.path.push(path);
            a.status.push(status);
            a.duration_ms.push(duration_ms);
            a.request_id.push(request_id);
            a.metadata.push(metadata);
            a.prev_hash.push(prev);
            a.hash.push(hash);
        }
        a
    }
}

impl AuditArrays {
    /// Binds the arrays as the next `RECORD_VALUES` parameters of `q`, in
    /// `audit_columns!` order.
    pub(crate) fn bind(
        self,
        q: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments> {
        q.bind(self.chain)
            .bind(self.seq)
            .bind(self.at)
            .bind(self.kind)
            .bind(self.action)
            .bind(self.user_id)
            .bind(self.username)
            .bind(self.resource_type)
            .bind(self.resource_id)
            .bind(self.ip)
            .bind(self.user_agent)
            .bind(self.method)
            .bind(self.path)
            .bind(self.status)
            .bind(self.duration_ms)
            .bind(self.request_id)
            .bind(self.metadata)
            .bind(self.prev_hash)
            .bind(self.hash)
    }
}

/// How each backend stores records already placed on their chain (which now ends at
/// position `last` with hash `head`, whose MAC is `head_mac`).
trait WriteLinked {
    async fn write_linked(
        &mut self,
        chain: &str,
        linked: Vec<Linked>,
        head: String,
        head_mac: String,
        last: i64,
    ) -> AppResult<()>;
}

/// SQLite: the chain's head, then the records through SQLite's C API
/// (`sqlite_append`).
impl WriteLinked for sqlx::SqliteConnection {
    async fn write_linked(
        &mut self,
        chain: &str,
        linked: Vec<Linked>,
        head: String,
        head_mac: String,
        _last: i64,
    ) -> AppResult<()> {
        sqlx::query(SET_HEAD)
            .bind(chain)
            .bind(&head)
            .bind(head_mac)
            .execute(&mut *self)
            .await?;
        sqlite_append::insert_linked(self, &linked).await
    }
}

/// PostgreSQL: one statement for any number of records, the head moved in it.
impl WriteLinked for sqlx::PgConnection {
    async fn write_linked(
        &mut self,
        chain: &str,
        linked: Vec<Linked>,
        head: String,
        head_mac: String,
        last: i64,
    ) -> AppResult<()> {
        AuditArrays::from(linked)
            .bind(sqlx::query(APPEND_ARRAYS_POSTGRES))
            .bind(head)
            .bind(chain)
            .bind(last)
            .bind(head_mac)
            .execute(&mut *self)
            .await?;
        Ok(())
    }
}

impl Store {
    /// Appends `records` to `chain` in one transaction (request batches, standalone
    /// events): one move of the chain head for the whole batch, one multi-row insert.
    pub async fn append_audit(&self, chain: &str, records: Vec<AuditFields>) -> AppResult<()> {
        if records.is_empty() {
            return Ok(());
        }
        let count = records.len() as i64;
        let key = need_key(self.audit_key())?;
        on_pool!(self, pool => within(pool.begin().await?, async |tx| {
            let (last, prev) = take_positions(&mut *tx, key, chain, count).await?;
            let (linked, head) = link_records(key, chain, last - count + 1, prev, records);
            let head_mac = key.head(chain, last, &head);
            tx.write_linked(chain, linked, head, head_mac, last).await
        }).await)
    }

    /// Records matching `filter`, newest first (or oldest first with `ascending`).
    pub async fn audit_records(
        &self,
        filter: &AuditFilter,
        ascending: bool,
        limit: i64,
        offset: i64,
    ) -> AppResult<Vec<AuditRow>> {
        if let (Store::Sqlite(pool, _), Some(owner)) = (self, &filter.user_id) {
            return sqlite_user_records(pool, owner, filter, ascending, limit, offset).await;
        }
        let order = if ascending {
            " ORDER BY id ASC"
        } else {
            " ORDER BY id DESC"
        };
        Ok(on_pool!(self, pool => {
            let mut qb = sqlx::QueryBuilder::new(format!("SELECT {COLUMNS} FROM audit_log"));
            push_filter(&mut qb, filter);
            qb.push(order).push(" LIMIT ").push_bind(limit).push(" OFFSET ").push_bind(offset);
            qb.build_query_as::<AuditRow>().fetch_all(pool).await?
        }))
    }

    /// Every action recorded so far, in order.
    pub async fn audit_actions(&self) -> AppResult<Vec<String>> {
        Ok(on_pool!(self, pool => sqlx::query_scalar::<_, String>(ACTIONS).fetch_all(pool).await)?)
    }

    /// Every chain, and the registry of them (read together).
    pub async fn audit_chains(&self) -> AppResult<AuditChains> {
        let rows = on_pool!(self, pool => sqlx::query_as::<_, ChainsRow>(CHAINS).fetch_all(pool).await)?;
        let registry = rows.first().map(|r| r.registry.clone()).unwrap_or_default();
        let chains = rows
            .into_iter()
            .filter_map(|r| {
                Some(AuditChainRow {
                    chain: r.chain?,
                    seq: r.seq?,
                    head: r.head?,
                    base_seq: r.base_seq?,
                    base_hash: r.base_hash?,
                    keyed_from: r.keyed_from?,
                    anchor: r.anchor?,
                    head_mac: r.head_mac?,
                })
            })
            .collect();
        Ok(AuditChains { registry, chains })
    }

    /// This store, linking and anchoring audit records with `key`.
    pub fn with_audit_key(self, key: AuditKey) -> Self {
        match self {
            Store::Sqlite(pool, _) => Store::Sqlite(pool, Some(key)),
            Store::Postgres(pool, _) => Store::Postgres(pool, Some(key)),
        }
    }

    pub fn audit_key(&self) -> Option<&AuditKey> {
        match self {
            Store::Sqlite(_, key) | Store::Postgres(_, key) => key.as_ref(),
        }
    }

    /// Once, on the first start after migration 0012 (the registry still empty, no
    /// chain anchored): anchors every chain written before, keyed from its next
    /// position, and fills the registry. Returns how many chains it anchored; None when
    /// there was nothing to do. A registry emptied later, beside anchored chains, is
    /// left for `audit verify` to report, never taken for an upgrade.
    pub async fn anchor_unkeyed_audit_chains(&self) -> AppResult<Option<usize>> {
        let key = need_key(self.audit_key())?;
        // Every start after the first finds the registry filled: a plain read says so
        // without taking the write lock (which a running SQLite server would feel).
        let filled: Option<(String,)> = on_pool!(self, pool => sqlx::query_as(REGISTRY).fetch_optional(pool).await)?;
        if filled.is_none_or(|(registry,)| !registry.is_empty()) {
            return Ok(None);
        }
        // Empty: decide again under the lock, since two instances may start at once.
        on_pool!(self, pool => within(pool.begin().await?, async |tx| -> AppResult<Option<usize>> {
            let registry: Option<(String,)> = sqlx::query_as(LOCK_REGISTRY).fetch_optional(&mut *tx).await?;
            if registry.is_none_or(|(registry,)| !registry.is_empty()) {
                return Ok(None);
            }
            let chains: Vec<(String, i64, String, i64, String, i64, String)> =
                sqlx::query_as(UNANCHORED).fetch_all(&mut *tx).await?;
            if chains.iter().any(|(.., anchor)| !anchor.is_empty()) {
                return Ok(None);
            }
            for (chain, seq, head, base_seq, base_hash, keyed_from, _) in &chains {
                sqlx::query(SET_ANCHOR)
                    .bind(chain)
                    .bind(key.anchor(chain, *base_seq, base_hash, *keyed_from))
                    .bind(key.head(chain, *seq, head))
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query(SET_REGISTRY)
                .bind(key.registry(chains.iter().map(|(chain, ..)| chain.as_str())))
                .execute(&mut *tx)
                .await?;
            Ok(Some(chains.len()))
        }).await)
    }

    /// Up to `limit` records of `chain` after position `after_seq`, in chain order.
    pub async fn audit_chain_rows(&self, chain: &str, after_seq: i64, limit: i64) -> AppResult<Vec<AuditRow>> {
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, AuditRow>(CHAIN_ROWS).bind(chain).bind(after_seq).bind(limit).fetch_all(pool).await)?,
        )
    }

    /// Deletes records older than `before`, chain by chain: each chain up to the last
    /// record before its first one retention keeps (records behind a kept one stay, so
    /// a base moves past expired records only). Moves each purged chain's base to the
    /// last deleted record, anchored under the key so that `audit verify` can tell this
    /// base move from a database writer's, and appends the record `audited` makes of
    /// the purge (None when auditing is off) in the same transaction.
    pub async fn purge_audit(
        &self,
        before: DateTime<Utc>,
        audited: impl Fn(&PurgedChain) -> Option<AuditFields>,
    ) -> AppResult<u64> {
        let sqlite = matches!(self, Store::Sqlite(..));
        let key = need_key(self.audit_key())?;
        let mut purged = 0;
        for chain in self.audit_chains().await?.chains {
            let chain = chain.chain;
            purged += on_pool!(self, pool => within(pool.begin().await?, async |tx| -> AppResult<u64> {
                let Some((base_seq, keyed_from)): Option<(i64, i64)> =
                    sqlx::query_as(LOCK_CHAIN).bind(&chain).fetch_optional(&mut *tx).await?
                else {
                    return Ok(0);
                };
                let first_kept: Option<(i64,)> = sqlx::query_as(FIRST_KEPT)
                    .bind(&chain)
                    .bind(before)
                    .bind(base_seq)
                    .fetch_optional(&mut *tx)
                    .await?;
                let stop = first_kept.map_or(i64::MAX, |(seq,)| seq);
                let last: Option<(i64, String, DateTime<Utc>)> = sqlx::query_as(LAST_EXPIRED)
                    .bind(&chain)
                    .bind(before)
                    .bind(stop)
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some((seq, hash, at)) = last else { return Ok(0) };
                sqlx::query(SET_BASE)
                    .bind(&chain)
                    .bind(seq)
                    .bind(&hash)
                    .bind(key.anchor(&chain, seq, &hash, keyed_from))
                    .execute(&mut *tx)
                    .await?;
                if sqlite {
                    sqlx::query(SQLITE_BY_USER_PURGE).bind(&chain).bind(seq).execute(&mut *tx).await?;
                }
                let n = sqlx::query(DELETE_THROUGH).bind(&chain).bind(seq).execute(&mut *tx).await?.rows_affected();
                let done = PurgedChain {
                    chain: chain.clone(),
                    records: n,
                    from_seq: base_seq + 1,
                    through_seq: seq,
                    through_at: at,
                    before,
                };
                append_in_tx(&mut *tx, Some(key), audited(&done).as_ref()).await?;
                Ok(n)
            }).await)?;
        }
        Ok(purged)
    }

    /// SQLite: once at least `min_run` records (and at least one) are past the mark,
    /// adds them to `audit_by_user` in one run sorted by user and moves the mark;
    /// returns how many were added. PostgreSQL indexes `audit_log` by user directly.
    pub async fn index_audit_by_user(&self, min_run: i64) -> AppResult<u64> {
        let Store::Sqlite(pool, _) = self else { return Ok(0) };
        within(begin_write(pool).await?, async |tx| {
            let (mark, last): (i64, i64) = sqlx::query_as(SQLITE_BY_USER_TAIL).fetch_one(&mut *tx).await?;
            if last - mark < min_run.max(1) {
                return Ok(0);
            }
            let added = sqlx::query(SQLITE_BY_USER_RUN)
                .bind(mark)
                .bind(last)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            sqlx::query(SQLITE_BY_USER_MARK).bind(last).execute(&mut *tx).await?;
            Ok(added)
        })
        .await
    }
}

/// SQLite, a user filter. The user's records indexed in `audit_by_user` all have
/// smaller ids than those past the mark, so a page is the first part's rows, then the
/// second's: each part is read with LIMIT and OFFSET in SQL (never more than a page in
/// memory, whatever the offset), both in one snapshot so that a run moving the mark in
/// between can neither hide nor repeat a record.
async fn sqlite_user_records(
    pool: &sqlx::SqlitePool,
    owner: &str,
    filter: &AuditFilter,
    ascending: bool,
    limit: i64,
    offset: i64,
) -> AppResult<Vec<AuditRow>> {
    let part = |indexed: bool, count: bool| {
        let select = if count {
            "SELECT COUNT(*)".to_string()
        } else {
            format!("SELECT {COLUMNS}")
        };
        let mut qb = sqlx::QueryBuilder::<sqlx::Sqlite>::new(if indexed {
            format!("{select} FROM audit_by_user CROSS JOIN audit_log ON audit_log.id = record")
        } else {
            format!("{select} FROM audit_log")
        });
        push_filter(&mut qb, filter);
        if indexed {
            qb.push(" AND owner = ").push_bind(owner.to_string());
        } else {
            qb.push(SQLITE_PAST_MARK);
        }
        if !count {
            let key = if indexed { "record" } else { "id" };
            qb.push(format!(" ORDER BY {key} {}", if ascending { "ASC" } else { "DESC" }));
        }
        qb
    };
    let page = |indexed: bool, limit: i64, offset: i64| {
        let mut qb = part(indexed, false);
        qb.push(" LIMIT ")
            .push_bind(limit)
            .push(" OFFSET ")
            .push_bind(offset.max(0));
        qb
    };
    // Oldest first, the indexed part comes first; newest first, the part past the mark.
    let first_indexed = ascending;
    within(pool.begin().await?, async |tx| {
        let mut rows = page(first_indexed, limit, offset)
            .build_query_as::<AuditRow>()
            .fetch_all(&mut *tx)
            .await?;
        let got = rows.len() as i64;
        if got < limit {
            // The first part ended inside this page (it held `offset + got` records),
            // or before it: then how many it held decides how far into the second to
            // start.
            let first_total = if got > 0 {
                offset + got
            } else {
                let (n,): (i64,) = part(first_indexed, true).build_query_as().fetch_one(&mut *tx).await?;
                n
            };
            rows.extend(
                page(!first_indexed, limit - got, offset - first_total)
                    .build_query_as::<AuditRow>()
                    .fetch_all(&mut *tx)
                    .await?,
            );
        }
        Ok(rows)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records written before the hash was computed without a `Value` tree must still
    /// verify: the canonical text is the same, byte for byte.
    #[test]
    fn link_hash_matches_the_json_array_it_always_hashed() {
        let f = AuditFields {
            chain: "abc-0".into(),
            kind: "request".into(),
            action: "GET /auth/me".into(),
            user_id: Some("u\"1\\".into()),
            username: Some("zoë\u{1}".into()),
            ip: Some("127.0.0.1".into()),
            status: Some(200),
            duration_ms: None,
            metadata: "{\"via\":\"system\"}".into(),
            ..AuditFields::default()
        }
        .stamped(Utc::now());
        let canonical = serde_json::json!([
            "prev",
            f.chain,
            7,
            f.at.timestamp_micros(),
            f.kind,
            f.action,
            f.user_id,
            f.username,
            f.resource_type,
            f.resource_id,
            f.ip,
            f.user_agent,
            f.method,
            f.path,
            f.status,
            f.duration_ms,
            f.request_id,
            f.metadata,
        ]);
        let expected: String = Sha256::digest(canonical.to_string().as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(link_hash("prev", 7, &f), expected);
        assert_ne!(link_hash("prev", 8, &f), expected);
    }

    /// A keyed link is not the unkeyed one and depends on the key; an anchor changes
    /// with each thing it covers; the registry is of the set, whatever the order.
    #[test]
    fn keyed_links_anchors_and_the_registry() {
        let f = AuditFields {
            chain: "c".into(),
            action: "LOGIN".into(),
            metadata: "{}".into(),
            ..AuditFields::default()
        };
        let key = AuditKey::from_bytes(&[1; 32]);
        let link = key.link("prev", 1, &f);
        assert_eq!(link.len(), 64);
        assert_ne!(link, link_hash("prev", 1, &f));
        assert_ne!(link, AuditKey::from_bytes(&[2; 32]).link("prev", 1, &f));
        assert_ne!(link, key.link("prev", 2, &f));
        let anchor = key.anchor("c", 0, "", 1);
        for other in [
            key.anchor("d", 0, "", 1),
            key.anchor("c", 1, "", 1),
            key.anchor("c", 0, "x", 1),
            key.anchor("c", 0, "", 2),
        ] {
            assert_ne!(anchor, other);
        }
        let both = key.registry(["a", "b"]);
        assert_eq!(both, key.registry(["b", "a"]));
        assert_eq!(both, key.registry_with(&key.registry(["a"]), "b"));
        assert_eq!(
            key.registry_with("", "a"),
            key.registry(["a"]),
            "'' before the first chain"
        );
        assert_ne!(both, key.registry(["a"]));
        assert_eq!(key.registry([]), "0".repeat(64));
    }

    /// How many values a query has bound so far.
    fn bound<DB: Database>(mut q: sqlx::query::Query<'_, DB, DB::Arguments>) -> usize
    where
        DB::Arguments: IntoArguments<DB>,
    {
        use sqlx::{Arguments, Execute};
        q.take_arguments().ok().flatten().map_or(0, |a| a.len())
    }

    /// The sqlx binders of a record bind one value per placeholder of the statements
    /// they feed, on both backends (the C API binder is checked when compiling).
    #[test]
    fn binders_bind_one_value_per_placeholder() {
        let record = AuditFields::default();
        let single = bind_audit_record(
            sqlx::query::<sqlx::Sqlite>(INSERT),
            record.clone(),
            1,
            "".into(),
            "".into(),
        );
        assert_eq!(bound(single), RECORD_VALUES);
        let single = bind_audit_record(
            sqlx::query::<sqlx::Postgres>(INSERT),
            record.clone(),
            1,
            "".into(),
            "".into(),
        );
        assert_eq!(bound(single), RECORD_VALUES);
        let linked = vec![Linked {
            seq: 1,
            record,
            prev: String::new(),
            hash: String::new(),
        }];
        // As `write_linked` binds them: the arrays, then head, chain, position and MAC.
        let arrays = AuditArrays::from(linked)
            .bind(sqlx::query(APPEND_ARRAYS_POSTGRES))
            .bind(String::new())
            .bind(String::new())
            .bind(1i64)
            .bind(String::new());
        assert_eq!(bound(arrays), placeholders::highest(APPEND_ARRAYS_POSTGRES));
    }
}
