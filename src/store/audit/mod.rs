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
    }
}

/// The hash linking a record at `seq` to its predecessor's hash `prev`: SHA-256 of
/// the compact JSON array of the link and every field, in lower-case hex.
///
/// The array is written element by element into one buffer (no `Value` tree: this
/// runs for every audited request), byte for byte what `serde_json::json!` printed.
pub fn link_hash(prev: &str, seq: i64, f: &AuditFields) -> String {
    fn put<T: Serialize + ?Sized>(buf: &mut Vec<u8>, value: &T) {
        buf.push(if buf.is_empty() { b'[' } else { b',' });
        // Writing strings and numbers into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *buf, value);
    }
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
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(&buf);
    let mut hex = String::with_capacity(64);
    for b in digest.iter() {
        hex.push(HEX[usize::from(b >> 4)] as char);
        hex.push(HEX[usize::from(b & 15)] as char);
    }
    hex
}

/// The stored columns of a record, in the order every insert binds them.
macro_rules! audit_columns {
    () => {
        "chain, seq, at, kind, action, user_id, username, resource_type, resource_id, ip, user_agent, method, path, status, duration_ms, request_id, metadata, prev_hash, hash"
    };
}
pub(crate) use audit_columns;

/// The tail of a PostgreSQL statement appending `AuditArrays` (`$1`-`$19`) to chain
/// `$21` and moving it to position `$22` and head `$20`; see `APPEND_ARRAYS_POSTGRES`.
macro_rules! append_audit_arrays_postgres {
    () => {
        concat!(
            "moved_head AS (UPDATE audit_chains SET seq = $22, head = $20 WHERE chain = $21) INSERT INTO audit_log (",
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
pub(crate) const SET_HEAD: &str = "UPDATE audit_chains SET head = $2 WHERE chain = $1";
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
/// position `$22` with head `$20`.
const APPEND_ARRAYS_POSTGRES: &str = concat!("WITH ", append_audit_arrays_postgres!());
const COLUMNS: &str = concat!("id, ", audit_columns!());
const CHAINS: &str = "SELECT chain, seq, head, base_seq, base_hash FROM audit_chains ORDER BY chain";
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
const LAST_EXPIRED: &str = "SELECT seq, hash FROM audit_log WHERE chain = $1 AND at < $2 ORDER BY seq DESC LIMIT 1";
const SET_BASE: &str = "UPDATE audit_chains SET base_seq = $2, base_hash = $3 WHERE chain = $1";
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

/// Appends `record` (None when auditing is off) to its chain inside the transaction
/// open on `conn`, so the record commits or rolls back with the change it describes.
pub(crate) async fn append_in_tx<DB, C>(conn: &mut C, record: Option<&AuditFields>) -> sqlx::Result<()>
where
    DB: Database,
    for<'c> &'c mut C: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'r> (i64, String): FromRow<'r, DB::Row>,
    for<'a> &'a str: Encode<'a, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> Option<String>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<i32>: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> DateTime<Utc>: Encode<'q, DB> + Type<DB>,
{
    let Some(r) = record else { return Ok(()) };
    let (seq, prev): (i64, String) = sqlx::query_as(BUMP_CHAIN)
        .bind(r.chain.as_str())
        .bind(1i64)
        .fetch_one(&mut *conn)
        .await?;
    let hash = link_hash(&prev, seq, r);
    sqlx::query(SET_HEAD)
        .bind(r.chain.as_str())
        .bind(hash.as_str())
        .execute(&mut *conn)
        .await?;
    bind_audit_record(sqlx::query(INSERT), r.clone(), seq, prev, hash)
        .execute(&mut *conn)
        .await?;
    Ok(())
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

/// Places `records` on `chain` from position `first`, after a record whose hash is
/// `prev`; returns them with the chain's new head.
pub(crate) fn link_records(
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
            let hash = link_hash(&prev, seq, &record);
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
/// position `last` with hash `head`).
trait WriteLinked {
    async fn write_linked(&mut self, chain: &str, linked: Vec<Linked>, head: String, last: i64) -> AppResult<()>;
}

/// SQLite: the chain's head, then the records through SQLite's C API
/// (`sqlite_append`).
impl WriteLinked for sqlx::SqliteConnection {
    async fn write_linked(&mut self, chain: &str, linked: Vec<Linked>, head: String, _last: i64) -> AppResult<()> {
        sqlx::query(SET_HEAD)
            .bind(chain)
            .bind(&head)
            .execute(&mut *self)
            .await?;
        sqlite_append::insert_linked(self, &linked).await
    }
}

/// PostgreSQL: one statement for any number of records, the head moved in it.
impl WriteLinked for sqlx::PgConnection {
    async fn write_linked(&mut self, chain: &str, linked: Vec<Linked>, head: String, last: i64) -> AppResult<()> {
        AuditArrays::from(linked)
            .bind(sqlx::query(APPEND_ARRAYS_POSTGRES))
            .bind(head)
            .bind(chain)
            .bind(last)
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
        on_pool!(self, pool => within(pool.begin().await?, async |tx| {
            let (last, prev): (i64, String) = sqlx::query_as(BUMP_CHAIN)
                .bind(chain)
                .bind(count)
                .fetch_one(&mut *tx)
                .await?;
            let (linked, head) = link_records(chain, last - count + 1, prev, records);
            tx.write_linked(chain, linked, head, last).await
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
        if let (Store::Sqlite(pool), Some(owner)) = (self, &filter.user_id) {
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

    pub async fn audit_chains(&self) -> AppResult<Vec<AuditChainRow>> {
        Ok(on_pool!(self, pool => sqlx::query_as::<_, AuditChainRow>(CHAINS).fetch_all(pool).await)?)
    }

    /// Up to `limit` records of `chain` after position `after_seq`, in chain order.
    pub async fn audit_chain_rows(&self, chain: &str, after_seq: i64, limit: i64) -> AppResult<Vec<AuditRow>> {
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, AuditRow>(CHAIN_ROWS).bind(chain).bind(after_seq).bind(limit).fetch_all(pool).await)?,
        )
    }

    /// Deletes records older than `before`, chain by chain, moving each chain's base
    /// to the last deleted record so verification still starts from a known hash.
    pub async fn purge_audit(&self, before: DateTime<Utc>) -> AppResult<u64> {
        let sqlite = matches!(self, Store::Sqlite(_));
        let mut purged = 0;
        for chain in self.audit_chains().await? {
            purged += on_pool!(self, pool => within(pool.begin().await?, async |tx| -> AppResult<u64> {
                let last: Option<(i64, String)> = sqlx::query_as(LAST_EXPIRED).bind(&chain.chain).bind(before).fetch_optional(&mut *tx).await?;
                let n = match last {
                    Some((seq, hash)) => {
                        sqlx::query(SET_BASE).bind(&chain.chain).bind(seq).bind(&hash).execute(&mut *tx).await?;
                        if sqlite {
                            sqlx::query(SQLITE_BY_USER_PURGE).bind(&chain.chain).bind(seq).execute(&mut *tx).await?;
                        }
                        sqlx::query(DELETE_THROUGH).bind(&chain.chain).bind(seq).execute(&mut *tx).await?.rows_affected()
                    }
                    None => 0,
                };
                Ok(n)
            }).await)?;
        }
        Ok(purged)
    }

    /// SQLite: once at least `min_run` records (and at least one) are past the mark,
    /// adds them to `audit_by_user` in one run sorted by user and moves the mark;
    /// returns how many were added. PostgreSQL indexes `audit_log` by user directly.
    pub async fn index_audit_by_user(&self, min_run: i64) -> AppResult<u64> {
        let Store::Sqlite(pool) = self else { return Ok(0) };
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
        // As `write_linked` binds them: the arrays, then head, chain and position.
        let arrays = AuditArrays::from(linked)
            .bind(sqlx::query(APPEND_ARRAYS_POSTGRES))
            .bind(String::new())
            .bind(String::new())
            .bind(1i64);
        assert_eq!(bound(arrays), placeholders::highest(APPEND_ARRAYS_POSTGRES));
    }
}
