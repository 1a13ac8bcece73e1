//! Persistence, and nothing else: no business rule, no audit vocabulary, no clock.
//!
//! A service opens a transaction with [`Store::begin`] (a write) or [`Store::read`] (a
//! consistent snapshot), calls repository steps on it, one trait per aggregate
//! ([`RetailerRepo`], [`BatchRepo`], [`CardRepo`], [`AuditRepo`], [`OutboxRepo`],
//! [`KeyRepo`], [`LedgerRepo`], [`PosRepo`], [`RedeemRepo`], [`ApiKeyRepo`], [`IdempotencyRepo`],
//! [`TradeInRepo`], [`ScheduleRepo`], [`ExpiryRepo`], [`SettlementRepo`], [`WebRepo`]), and
//! commits.
//!
//! Every SQL statement is written once, in `store/sql/`, with `$N` placeholders, and compiled
//! for each backend with that backend's concrete types (`sqlite.rs` and `postgres.rs` each
//! mount the same `sql` module over their own `Db`). What truly differs between SQLite and
//! PostgreSQL is listed once, in the [`Backend`] trait.

pub mod api_keys;
mod backend;
pub mod expiry;
pub mod idempotency;
pub mod ledger;
pub mod pos;
mod postgres;
pub mod redeem;
mod rows;
pub mod schedule;
pub mod settlement;
mod sqlite;
pub mod tradein;
pub mod web;

pub use api_keys::ApiKeyRepo;
pub use backend::Backend;
pub use expiry::ExpiryRepo;
pub use idempotency::IdempotencyRepo;
pub use ledger::LedgerRepo;
pub use pos::PosRepo;
pub use redeem::RedeemRepo;
pub use schedule::ScheduleRepo;
pub use settlement::SettlementRepo;
pub use sqlite::SQLITE_POOL_CONNECTIONS;
pub use tradein::TradeInRepo;
pub use web::WebRepo;

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::{Pool, Transaction};

use crate::audit::{AuditEvent, AuditRecord, AuditSigner, ChainHead, Seal};
use crate::codegen::CodeDigest;
use crate::domain::{
    Actor, Batch, BatchId, BatchState, CardValue, NewRetailer, PageRows, Region, Retailer,
    RetailerId, RetailerName,
};
use crate::error::{Classify, Kind};
use crate::keys::{KeyId, KeyPurpose, RecordedKey};

/// tender's storage in a SQLite file.
pub type SqliteStore = SqlStore<sqlx::Sqlite>;
/// tender's storage in a PostgreSQL database.
pub type PgStore = SqlStore<sqlx::Postgres>;

/// Why a storage step failed. Never carries driver text in its message: the cause is logged
/// where the error is born and kept as its source.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A stored row holds a value the domain refuses.
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    /// The database is busy, or the connection failed before anything was decided.
    #[error("the database is busy or unreachable; try again")]
    Busy(#[source] sqlx::Error),
    /// The database refused or failed the statement.
    #[error("the database failed; the log has the cause")]
    Database(#[source] sqlx::Error),
    /// Migrating the schema failed.
    #[error("the database schema could not be migrated; the log has the cause")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// The database lacks migrations this tender needs.
    #[error("the database schema is older than this tender; run `tender init` to migrate it")]
    SchemaBehind,
    /// The database was migrated by a newer tender.
    #[error("the database schema is newer than this tender; run a newer tender")]
    SchemaAhead,
    /// A row the transaction relies on changed since it was read (an audit key rotation
    /// committed meanwhile): running the transaction again succeeds.
    #[error("{0} changed while this transaction ran; try again")]
    Moved(&'static str),
    /// The unit of work outlasted [`UNIT_OF_WORK_DEADLINE`] and was rolled back.
    #[error("the work took longer than its deadline and was rolled back; try again")]
    Deadline,
}

impl StoreError {
    /// A stored row that the domain refuses.
    pub(crate) fn corrupt(what: &str) -> StoreError {
        StoreError::Corrupt(what.to_string())
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        let transient = match &error {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) => true,
            sqlx::Error::Database(db) => db.code().is_some_and(|code| {
                sqlite::is_transient_code(&code) || postgres::is_transient_code(&code)
            }),
            _ => false,
        };
        tracing::warn!(%error, transient, "database error");
        if transient {
            StoreError::Busy(error)
        } else {
            StoreError::Database(error)
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        tracing::error!(%error, "migration failed");
        StoreError::Migrate(error)
    }
}

impl Classify for StoreError {
    fn code(&self) -> &'static str {
        match self {
            StoreError::Corrupt(_) => "store.corrupt",
            StoreError::Busy(_) => "store.busy",
            StoreError::Database(_) => "store.database",
            StoreError::Migrate(_) => "store.migrate",
            StoreError::SchemaBehind => "store.schema_behind",
            StoreError::SchemaAhead => "store.schema_ahead",
            StoreError::Moved(_) => "store.moved",
            StoreError::Deadline => "store.deadline",
        }
    }

    fn kind(&self) -> Kind {
        match self {
            StoreError::Busy(_) | StoreError::Moved(_) | StoreError::Deadline => Kind::Transient,
            StoreError::SchemaBehind | StoreError::SchemaAhead => Kind::Conflict,
            StoreError::Corrupt(_) | StoreError::Database(_) | StoreError::Migrate(_) => {
                Kind::Internal
            }
        }
    }
}

/// Shorthand for storage results.
pub type StoreResult<T> = Result<T, StoreError>;

/// The database behind a store, for the parts of tender that speak their own SQL to it: the
/// job runner (apalis keeps its tables in the same database) and the tests.
#[derive(Debug, Clone)]
pub enum DbPool {
    /// The SQLite file.
    Sqlite(sqlx::SqlitePool),
    /// The PostgreSQL database.
    Postgres(sqlx::PgPool),
}

/// tender's storage over one database pool. One type for both backends; the shared SQL is
/// implemented for `SqlStore<Sqlite>` and `SqlStore<Postgres>`.
#[derive(Debug)]
pub struct SqlStore<DB: sqlx::Database> {
    pool: Pool<DB>,
    /// Where this process's writers wait their turn, first come first served, on a backend
    /// with one writer at a time ([`Backend::WRITER_QUEUE`]).
    writers: Arc<tokio::sync::Mutex<()>>,
    /// How long a write transaction may last, from the moment it is asked for to its commit.
    unit_deadline: std::time::Duration,
}

/// How long a unit of work (one write transaction, from asking for it to its commit) may
/// last: one that takes longer is rolled back at its commit instead of committing. Whatever a
/// service recorded as "now" inside it is therefore never more than this old when it becomes
/// visible, which is what lets settlement close a day a grace period after its cut-off
/// (`service::settlement::SETTLEMENT_GRACE` is longer than this, the writer queue and the
/// hosts' clock skew together). On PostgreSQL the statement and idle-in-transaction timeouts
/// of each write transaction back it up (PostgreSQL 15 has no transaction timeout).
pub const UNIT_OF_WORK_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

// By hand: a derive would demand `DB: Clone`, which sqlx's database markers are not.
impl<DB: sqlx::Database> Clone for SqlStore<DB> {
    fn clone(&self) -> Self {
        SqlStore {
            pool: self.pool.clone(),
            writers: Arc::clone(&self.writers),
            unit_deadline: self.unit_deadline,
        }
    }
}

/// An open transaction on a [`SqlStore`]. Dropping it without [`Tx::commit`] rolls it back.
#[derive(Debug)]
pub struct SqlTx<DB: sqlx::Database> {
    tx: Transaction<'static, DB>,
    /// A write transaction's turn (SQLite), given up after the commit or when dropped.
    turn: Option<tokio::sync::OwnedMutexGuard<()>>,
    /// After this, a write transaction rolls back instead of committing
    /// ([`UNIT_OF_WORK_DEADLINE`]); none for a read.
    deadline: Option<tokio::time::Instant>,
}

/// A database tender stores in: connect, migrate, open transactions.
pub trait Store: Clone + Send + Sync + 'static {
    /// One transaction, with every repository's steps.
    type Tx: Tx
        + RetailerRepo
        + BatchRepo
        + CardRepo
        + AuditRepo
        + OutboxRepo
        + KeyRepo
        + LedgerRepo
        + PosRepo
        + RedeemRepo
        + ApiKeyRepo
        + IdempotencyRepo
        + TradeInRepo
        + ScheduleRepo
        + ExpiryRepo
        + SettlementRepo
        + WebRepo
        + Send;

    /// Whether [`OutboxRepo::claim_outbox`] holds row locks until the transaction ends
    /// (PostgreSQL), rather than stamping a lease that must be committed first (SQLite).
    const OUTBOX_CLAIM_LOCKS_ROWS: bool;

    /// Whether the database has one writer at a time (SQLite): a write transaction excludes
    /// every other, so work that elsewhere commits in two steps to keep row locks short can
    /// commit in one.
    const ONE_WRITER: bool;

    /// Connects to the database at `url`.
    fn connect(url: &str) -> impl Future<Output = StoreResult<Self>> + Send;

    /// Creates or updates tender's tables and the job runner's. Only `tender init` migrates.
    fn migrate(&self) -> impl Future<Output = StoreResult<()>> + Send;

    /// Refuses a database whose schema is not exactly the one this tender's migrations make,
    /// saying what to run; every command but `init` checks it instead of migrating.
    fn check_schema(&self) -> impl Future<Output = StoreResult<()>> + Send;

    /// Opens a write transaction. On SQLite it takes the write lock at once, so writers queue
    /// here instead of failing at their first write.
    fn begin(&self) -> impl Future<Output = StoreResult<Self::Tx>> + Send;

    /// Opens a write transaction whose commit does not wait for the disk, for bookkeeping that
    /// a crash of the database server may lose without harm (see
    /// [`Backend::BEGIN_UNFLUSHED`]).
    fn begin_unflushed(&self) -> impl Future<Output = StoreResult<Self::Tx>> + Send;

    /// Opens a read-only transaction over one consistent snapshot.
    fn read(&self) -> impl Future<Output = StoreResult<Self::Tx>> + Send;

    /// The pool, for the job runner and tests.
    fn db_pool(&self) -> DbPool;

    /// How many of the pool's connections are in use, idle, and allowed, as of now: read at
    /// every metrics scrape, without touching the database.
    fn pool_use(&self) -> PoolUse;

    /// The work waiting for or held by the job runner, as of now: outbox rows not yet relayed
    /// by job, and the runner's tasks not done by queue and status. Read at every metrics
    /// scrape, outside any transaction.
    fn job_counts(&self) -> impl Future<Output = StoreResult<JobCounts>> + Send;

    /// Closes every connection; waits for those in use to come back.
    fn close(&self) -> impl Future<Output = ()> + Send;
}

/// The end of a transaction.
pub trait Tx: Sized {
    /// Makes every step durable at once.
    fn commit(self) -> impl Future<Output = StoreResult<()>> + Send;
}

/// Retailers.
pub trait RetailerRepo {
    /// Inserts a retailer; `None` when its name, or one with the same key, is taken.
    fn insert_retailer(
        &mut self,
        new: &NewRetailer,
        at: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<Option<RetailerId>>> + Send;

    /// The retailer whose name has this name's key (`acme` finds "Acme").
    fn retailer_by_name(
        &mut self,
        name: &RetailerName,
    ) -> impl Future<Output = StoreResult<Option<Retailer>>> + Send;

    /// The retailer with this id.
    fn retailer(
        &mut self,
        id: RetailerId,
    ) -> impl Future<Output = StoreResult<Option<Retailer>>> + Send;

    /// Retailers by id, at most `rows`.
    fn retailers(
        &mut self,
        rows: PageRows,
    ) -> impl Future<Output = StoreResult<Vec<Retailer>>> + Send;
}

/// A batch as a service records it.
#[derive(Debug, Clone)]
pub struct NewBatch<'a> {
    /// The retailer the cards are for.
    pub retailer_id: RetailerId,
    /// Cards requested.
    pub count: u64,
    /// What each card is worth.
    pub value: &'a CardValue,
    /// Storefront country.
    pub region: &'a Region,
    /// When the cards expire.
    pub expires_at: Option<DateTime<Utc>>,
    /// Serial sequence number of the first card.
    pub first_sequence: u64,
    /// Lookup key the codes will be digested under.
    pub lookup_key_id: KeyId,
    /// Who asked for it.
    pub requested_by: &'a Actor,
    /// When.
    pub requested_at: DateTime<Utc>,
}

/// Batches and the serial counter.
pub trait BatchRepo {
    /// Reserves `count` consecutive serial sequence numbers; returns the first. The counter
    /// only grows, so ranges never overlap.
    fn reserve_serials(&mut self, count: u64) -> impl Future<Output = StoreResult<u64>> + Send;

    /// Records a requested batch.
    fn insert_batch(
        &mut self,
        new: &NewBatch<'_>,
    ) -> impl Future<Output = StoreResult<BatchId>> + Send;

    /// The batch with this id.
    fn batch(&mut self, id: BatchId) -> impl Future<Output = StoreResult<Option<Batch>>> + Send;

    /// Batches, newest first, at most `rows`.
    fn batches(&mut self, rows: PageRows) -> impl Future<Output = StoreResult<Vec<Batch>>> + Send;

    /// Hands an unfinished batch to the generation run `token` in `state`; any earlier run's
    /// later writes will miss. `false` if the batch is missing or completed.
    fn claim_batch(
        &mut self,
        id: BatchId,
        token: &str,
        state: BatchState,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Moves the batch's progress from `from` to `from + count`, only while run `token` holds
    /// it and the batch is at `from` (on PostgreSQL this also locks the row until commit).
    /// `false` when the guard misses.
    fn advance_batch(
        &mut self,
        id: BatchId,
        token: &str,
        from: u64,
        count: u64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Adds to the batch's collision count and sets the printer file's committed length.
    fn record_chunk(
        &mut self,
        id: BatchId,
        collisions: u64,
        export_bytes: u64,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Completes the batch, only while run `token` holds it and every card is stored.
    /// `false` when the guard misses.
    fn complete_batch(
        &mut self,
        id: BatchId,
        token: &str,
        export_mac: &str,
        at: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Records where the batch's printer file is written.
    fn set_export_location(
        &mut self,
        id: BatchId,
        location: &str,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Fails the batch for good with `reason`, only while run `token` holds it. `false` when
    /// the guard misses.
    fn fail_batch(
        &mut self,
        id: BatchId,
        token: &str,
        reason: &str,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Puts a failed batch back to requested with no progress. `false` unless it was failed.
    fn reset_batch(&mut self, id: BatchId) -> impl Future<Output = StoreResult<bool>> + Send;
}

/// One chunk of a batch's new cards, as the card table stores them.
#[derive(Debug, Clone, Copy)]
pub struct CardChunk<'a> {
    /// The batch.
    pub batch_id: BatchId,
    /// Serial sequence number of card 0 of the chunk.
    pub first_sequence: u64,
    /// The lookup key the digests are made under.
    pub key_id: KeyId,
    /// One digest per card, in serial order.
    pub digests: &'a [CodeDigest],
}

/// A stored card as verification sees it: no code, and its digest only for comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCard {
    /// Serial sequence number.
    pub sequence: u64,
    /// Batch it belongs to.
    pub batch_id: BatchId,
    /// Lookup key id of its digest.
    pub key_id: KeyId,
    /// The digest, for constant-time comparison.
    pub digest: CodeDigest,
}

/// Cards.
pub trait CardRepo {
    /// Stores the cards of `chunk` at `indexes`, except those whose digest another card (or an
    /// earlier index of the same call) already carries; returns those indexes, nothing of them
    /// stored.
    fn insert_cards(
        &mut self,
        chunk: &CardChunk<'_>,
        indexes: &[usize],
    ) -> impl Future<Output = StoreResult<Vec<usize>>> + Send;

    /// Which of `digests` some stored card carries.
    fn existing_digests(
        &mut self,
        digests: &[CodeDigest],
    ) -> impl Future<Output = StoreResult<HashSet<CodeDigest>>> + Send;

    /// Cards whose serial sequence numbers fall in `first..=last`, in order.
    fn cards_in_range(
        &mut self,
        first: u64,
        last: u64,
    ) -> impl Future<Output = StoreResult<Vec<StoredCard>>> + Send;

    /// Deletes the cards whose serial sequence numbers fall in `first..=last`; returns how many.
    fn delete_cards(
        &mut self,
        first: u64,
        last: u64,
    ) -> impl Future<Output = StoreResult<u64>> + Send;
}

/// What the database records of each key: fingerprints and states, never keys.
pub trait KeyRepo {
    /// Every recorded key of `purpose`, by id.
    fn recorded_keys(
        &mut self,
        purpose: KeyPurpose,
    ) -> impl Future<Output = StoreResult<Vec<RecordedKey>>> + Send;

    /// The active key of `purpose`, if one is recorded.
    fn active_key(
        &mut self,
        purpose: KeyPurpose,
    ) -> impl Future<Output = StoreResult<Option<KeyId>>> + Send;

    /// Records a key; `false` when its id is already recorded for the purpose.
    fn record_key(
        &mut self,
        purpose: KeyPurpose,
        key: &RecordedKey,
        at: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Makes pending key `id` the active one and retires the one before. `false` (with nothing
    /// changed once the transaction is dropped) unless `id` was pending.
    fn activate_key(
        &mut self,
        purpose: KeyPurpose,
        id: KeyId,
        at: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
}

/// The audit trail's records, chain heads and seals.
pub trait AuditRepo {
    /// Appends `event` to its chain, recorded `at`, tagged under the audit key the chain's head
    /// names; [`StoreError::Moved`] if that is not `signer`'s key (a rotation committed since
    /// the signer was chosen). Appends to one chain are serialised (a row lock on PostgreSQL,
    /// the write lock on SQLite).
    fn append(
        &mut self,
        signer: &AuditSigner,
        event: &AuditEvent,
        at: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Records after `(chain, seq)` in (chain, seq) order, at most `rows`.
    fn audit_page(
        &mut self,
        after: (u32, i64),
        rows: PageRows,
    ) -> impl Future<Output = StoreResult<Vec<AuditRecord>>> + Send;

    /// Records of one chain after `seq`, in order, at most `rows`.
    fn chain_page(
        &mut self,
        chain: u32,
        after: i64,
        rows: PageRows,
    ) -> impl Future<Output = StoreResult<Vec<AuditRecord>>> + Send;

    /// Every `key.activated` record of the audit key, in (chain, seq) order.
    fn audit_key_activations(
        &mut self,
    ) -> impl Future<Output = StoreResult<Vec<AuditRecord>>> + Send;

    /// Every chain's head row, in chain order. With `lock`, no chain can move until the
    /// transaction ends.
    fn audit_heads(
        &mut self,
        lock: bool,
    ) -> impl Future<Output = StoreResult<Vec<ChainHead>>> + Send;

    /// Names `key_id` as the audit key every chain's next record is tagged under.
    fn set_chain_key(&mut self, key_id: KeyId) -> impl Future<Output = StoreResult<()>> + Send;

    /// Stores a record's hash and, where it is its chain's newest, the head's: for records
    /// written before records carried hashes.
    fn set_record_hash(
        &mut self,
        chain: u32,
        seq: i64,
        hash: &[u8; 32],
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Seals after `seal_id`, in order, at most `rows`.
    fn seal_page(
        &mut self,
        after: i64,
        rows: PageRows,
    ) -> impl Future<Output = StoreResult<Vec<Seal>>> + Send;

    /// The newest seal.
    fn last_seal(&mut self) -> impl Future<Output = StoreResult<Option<Seal>>> + Send;

    /// Stores a seal.
    fn insert_seal(&mut self, seal: &Seal) -> impl Future<Output = StoreResult<()>> + Send;
}

/// A job to queue, written in the transaction of the change that causes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxJob {
    /// The job's name, as in `jobs/<name>.toml`.
    pub job: &'static str,
    /// Its payload as JSON: ids only, never a secret.
    pub payload: String,
}

/// A queued job the relay has claimed.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OutboxRow {
    /// The outbox id: the job's idempotency key in the job runner.
    pub outbox_id: i64,
    /// The job's name.
    pub job: String,
    /// Its JSON payload.
    pub payload: String,
}

/// The pool's connections at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUse {
    /// Lent out to a transaction or a statement.
    pub in_use: u32,
    /// Open and waiting in the pool.
    pub idle: u32,
    /// The most the pool opens.
    pub max: u32,
}

/// The job runner's backlog at one moment, as stored: no status is interpreted here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobCounts {
    /// Outbox rows not yet relayed: `(job, rows)`, by job name.
    pub outbox: Vec<(String, i64)>,
    /// The runner's tasks in any status but `Done`: `(queue, status, tasks)`, with apalis'
    /// queue names (`tender.generate-batch.v1`) and statuses (`Pending`, `Running`, …).
    pub tasks: Vec<(String, String, i64)>,
}

/// A relay's claim on pending outbox rows.
#[derive(Debug, Clone, Copy)]
pub struct OutboxClaim<'a> {
    /// Identifies the claiming relay.
    pub token: &'a str,
    /// Now, in Unix milliseconds.
    pub now_ms: i64,
    /// Until when the claim holds, in Unix milliseconds (where claims are leases).
    pub until_ms: i64,
    /// Most rows to claim.
    pub rows: u32,
}

/// The outbox: jobs to hand to the job runner, exactly as committed.
pub trait OutboxRepo {
    /// Queues `job`; returns its outbox id.
    fn insert_outbox(
        &mut self,
        job: &OutboxJob,
        at: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<i64>> + Send;

    /// Claims up to `claim.rows` rows not yet relayed, oldest first, that no other relay
    /// holds. See [`Store::OUTBOX_CLAIM_LOCKS_ROWS`] for how long the claim lasts.
    fn claim_outbox(
        &mut self,
        claim: &OutboxClaim<'_>,
    ) -> impl Future<Output = StoreResult<Vec<OutboxRow>>> + Send;

    /// Marks a row as handed to the job runner.
    fn mark_relayed(
        &mut self,
        outbox_id: i64,
        at: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// How many rows wait to be relayed.
    fn outbox_pending(&mut self) -> impl Future<Output = StoreResult<i64>> + Send;
}
