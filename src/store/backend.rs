//! The list of what truly differs between SQLite and PostgreSQL. Everything else is written
//! once in `store/sql/`. Each item says why it cannot be shared; the compiler makes both
//! backends supply every item.

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use sqlx::Pool;
use sqlx::migrate::Migrator;

use super::{CardChunk, DbPool, OutboxClaim, OutboxRow, StoreResult};
use crate::codegen::CodeDigest;

/// One database tender can store in.
pub trait Backend: sqlx::Database + Sync {
    /// SQLite: `BEGIN IMMEDIATE`, so writers queue at BEGIN (under the busy timeout) and never
    /// fail mid-transaction upgrading a read lock. PostgreSQL: `BEGIN` (READ COMMITTED, with
    /// guarded writes and row locks where rows are read and then written).
    const BEGIN_WRITE: &'static str;
    /// A write transaction whose commit does not wait for the disk, for bookkeeping a crash may
    /// lose without harm. PostgreSQL: `synchronous_commit = off` for this transaction alone
    /// (sent with the BEGIN in one round trip); it is visible to others at once, and durable
    /// with the next flushed commit or within three WAL-writer cycles. SQLite has no such
    /// setting per transaction: the same as [`Backend::BEGIN_WRITE`].
    const BEGIN_UNFLUSHED: &'static str;
    /// A consistent snapshot for reads that span statements. SQLite's deferred `BEGIN` gives
    /// one in WAL mode; PostgreSQL needs REPEATABLE READ for it.
    const BEGIN_READ: &'static str;
    /// SQLite has one writer at a time, and a writer that finds the write lock taken waits in
    /// SQLite's busy handler, which sleeps (1 ms, growing to 100 ms) and tries again: under a
    /// steady stream of writers a sleeper keeps losing to writers that came after it, for
    /// seconds. So this process's writers queue first come first served before `BEGIN
    /// IMMEDIATE`, for at most this long (as long as the busy timeout), and only writers of
    /// other processes meet the busy handler. PostgreSQL: `None`; writers run together and
    /// row locks queue them.
    const WRITER_QUEUE: Option<Duration>;
    /// PostgreSQL locks rows read-then-written with `FOR UPDATE`; SQLite has no such clause,
    /// and its write lock already serialises writers. See [`locking!`].
    const ROW_LOCKS: bool;

    /// Connection options differ in kind: pragmas and a busy timeout for a file, a pool bound
    /// and application name for a server.
    fn connect(url: &str) -> impl Future<Output = StoreResult<Pool<Self>>> + Send;

    /// Each dialect has its own migration files, and apalis its own migrations per backend:
    /// tender's first, then apalis'.
    fn migrators() -> [Migrator; 2];

    /// The versions of tender's own migrations applied so far: each dialect keeps that history
    /// in its own table (see [`Backend::migrators`]).
    const APPLIED_MIGRATIONS: &'static str;

    /// The pool as the job runner sees it.
    fn db_pool(pool: &Pool<Self>) -> DbPool;

    /// The job runner's tasks not done, by queue and status. The statement is one, written
    /// in [`task_counts!`]; only the table's name differs, as apalis names it per backend
    /// (`Jobs` in SQLite's one schema, `apalis.jobs` in PostgreSQL's own schema).
    const TASK_COUNTS: &'static str;

    /// Bulk load. PostgreSQL: `COPY` straight into `card` where the server logs errors tersely,
    /// otherwise into an unindexed staging table and on with `INSERT … ON CONFLICT DO NOTHING`
    /// (a `COPY` failed by a taken digest logs the digest). SQLite: multi-row `INSERT … ON
    /// CONFLICT DO NOTHING`. Same contract as [`super::CardRepo::insert_cards`].
    fn insert_cards(
        conn: &mut Self::Connection,
        chunk: &CardChunk<'_>,
        indexes: &[usize],
    ) -> impl Future<Output = StoreResult<Vec<usize>>> + Send;

    /// Set lookup: PostgreSQL binds one array (`= ANY($1)`); SQLite has no arrays and takes
    /// `IN (…)` lists under its bound-parameter limit.
    fn stored_digests(
        conn: &mut Self::Connection,
        digests: &[CodeDigest],
    ) -> impl Future<Output = StoreResult<HashSet<CodeDigest>>> + Send;

    /// Relay claims: PostgreSQL locks rows with `FOR UPDATE SKIP LOCKED` and holds them across
    /// the push. On SQLite that lock is the whole database, and apalis writes through another
    /// connection, so the relay stamps a lease and commits before it pushes.
    const OUTBOX_CLAIM_LOCKS_ROWS: bool;

    /// See [`Backend::OUTBOX_CLAIM_LOCKS_ROWS`].
    fn claim_outbox(
        conn: &mut Self::Connection,
        claim: &OutboxClaim<'_>,
    ) -> impl Future<Output = StoreResult<Vec<OutboxRow>>> + Send;
}

/// A statement with ` FOR UPDATE` appended where the backend has row locks. Both arms are
/// literals, as sqlx's `&'static str` queries need.
macro_rules! locking {
    ($sql:literal) => {
        if <super::Db as $crate::store::Backend>::ROW_LOCKS {
            concat!($sql, " FOR UPDATE")
        } else {
            $sql
        }
    };
}
pub(super) use locking;

/// [`Backend::TASK_COUNTS`] over apalis' table `$table`. `Done` tasks are left out: they only
/// grow, so counting them would make every scrape slower, and they are no one's backlog.
macro_rules! task_counts {
    ($table:literal) => {
        concat!(
            "SELECT job_type, status, count(*) FROM ",
            $table,
            " WHERE status <> 'Done' GROUP BY job_type, status ORDER BY job_type, status"
        )
    };
}
pub(super) use task_counts;
