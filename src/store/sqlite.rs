//! SQLite, the embedded default: one file, WAL, foreign keys on, a busy timeout, and every
//! write under `BEGIN IMMEDIATE`, so concurrent writers queue at the start instead of failing
//! at commit. Only what differs from PostgreSQL is here; the shared SQL is mounted below.

use std::collections::HashSet;
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Pool, QueryBuilder, Sqlite, SqliteConnection};

use super::backend::task_counts;
use super::rows::bytes32;
use super::{Backend, CardChunk, DbPool, OutboxClaim, OutboxRow, StoreResult};
use crate::codegen::CodeDigest;

/// The backend the shared SQL is compiled for in this module.
type Db = Sqlite;

// The same source is mounted for each backend on purpose: that is how it is written once.
#[allow(clippy::duplicate_mod)]
#[path = "sql/mod.rs"]
mod sql;

/// How long a statement waits for another writer before failing.
pub const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections in the pool: SQLite has one writer, so more only helps concurrent readers.
pub const SQLITE_POOL_CONNECTIONS: u32 = 4;
/// Page cache per connection, in KiB: index pages of the card table stay hot during bulk loads.
pub const SQLITE_CACHE_KIB: i64 = 4 * 1024;
/// Cards per multi-row INSERT statement (two bound parameters each, far below SQLite's limit).
const CARDS_PER_STATEMENT: usize = 2_000;
/// Digests per `IN (…)` lookup, below SQLite's limit of 32,766 bound parameters.
const DIGESTS_PER_LOOKUP: usize = 10_000;

/// Whether an extended result code means "busy, try again": SQLITE_BUSY (5) and its
/// RECOVERY (261), SNAPSHOT (517) and TIMEOUT (773) forms, SQLITE_LOCKED (6) and
/// LOCKED_SHAREDCACHE (262).
pub(super) fn is_transient_code(code: &str) -> bool {
    matches!(code, "5" | "261" | "517" | "773" | "6" | "262")
}

impl Backend for Sqlite {
    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";
    const BEGIN_UNFLUSHED: &'static str = "BEGIN IMMEDIATE";
    const BEGIN_READ: &'static str = "BEGIN";
    const WRITER_QUEUE: Option<Duration> = Some(SQLITE_BUSY_TIMEOUT);
    const ROW_LOCKS: bool = false;
    const OUTBOX_CLAIM_LOCKS_ROWS: bool = false;
    const APPLIED_MIGRATIONS: &'static str =
        "SELECT version FROM _tender_migrations WHERE success ORDER BY version";
    const TASK_COUNTS: &'static str = task_counts!("Jobs");

    async fn connect(url: &str) -> StoreResult<Pool<Sqlite>> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit is on disk before it returns. With NORMAL, WAL commits since the
            // last checkpoint can vanish on power loss, after their printer file was delivered.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(SQLITE_BUSY_TIMEOUT)
            .pragma("cache_size", format!("-{SQLITE_CACHE_KIB}"));
        Ok(SqlitePoolOptions::new()
            .max_connections(SQLITE_POOL_CONNECTIONS)
            // A file's connection cannot go stale; the ping would cost a trip to its worker
            // thread on every transaction.
            .test_before_acquire(false)
            .connect_with(options)
            .await?)
    }

    fn migrators() -> [Migrator; 2] {
        let mut ours = sqlx::migrate!("migrations/sqlite");
        // apalis keeps its own history in `_sqlx_migrations`; ours must not share it.
        ours.dangerous_set_table_name("_tender_migrations");
        [ours, apalis_sqlite::SqliteStorage::<()>::migrations()]
    }

    fn db_pool(pool: &Pool<Sqlite>) -> DbPool {
        DbPool::Sqlite(pool.clone())
    }

    async fn insert_cards(
        conn: &mut SqliteConnection,
        chunk: &CardChunk<'_>,
        indexes: &[usize],
    ) -> StoreResult<Vec<usize>> {
        // In digest order, each page of the digest index is visited once per chunk instead of
        // at random: far fewer page reads and spills with a small page cache.
        let mut sorted = indexes.to_vec();
        sorted.sort_unstable_by_key(|&i| (chunk.digests[i].0, i));
        let serial = |i: usize| {
            i64::try_from(chunk.first_sequence + i as u64).expect("serials have at most 11 digits")
        };
        let mut taken = Vec::new();
        for part in sorted.chunks(CARDS_PER_STATEMENT) {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO card (serial, batch_id, lookup_key_id, state, digest) ",
            );
            insert.push_values(part, |mut row, &i| {
                row.push_bind(serial(i))
                    .push_unseparated(format_args!(
                        ", {}, {}, 0, ",
                        chunk.batch_id.0,
                        chunk.key_id.get()
                    ))
                    .push_bind_unseparated(&chunk.digests[i].0[..]);
            });
            insert.push(" ON CONFLICT (digest) DO NOTHING");
            let inserted = insert.build().execute(&mut *conn).await?.rows_affected();
            // The rare short count: find which serials of this statement are missing.
            if inserted != part.len() as u64 {
                let low = part.iter().map(|&i| serial(i)).min().unwrap_or_default();
                let high = part.iter().map(|&i| serial(i)).max().unwrap_or_default();
                let stored: HashSet<i64> = sqlx::query_scalar::<Sqlite, i64>(
                    "SELECT serial FROM card WHERE serial BETWEEN $1 AND $2",
                )
                .bind(low)
                .bind(high)
                .fetch_all(&mut *conn)
                .await?
                .into_iter()
                .collect();
                taken.extend(
                    part.iter()
                        .copied()
                        .filter(|&i| !stored.contains(&serial(i))),
                );
            }
        }
        Ok(taken)
    }

    async fn stored_digests(
        conn: &mut SqliteConnection,
        digests: &[CodeDigest],
    ) -> StoreResult<HashSet<CodeDigest>> {
        let mut found = HashSet::new();
        for part in digests.chunks(DIGESTS_PER_LOOKUP) {
            let mut query =
                QueryBuilder::<Sqlite>::new("SELECT digest FROM card WHERE digest IN (");
            let mut list = query.separated(", ");
            for digest in part {
                list.push_bind(&digest.0[..]);
            }
            query.push(")");
            let rows: Vec<Vec<u8>> = query.build_query_scalar().fetch_all(&mut *conn).await?;
            for bytes in rows {
                found.insert(CodeDigest(bytes32(bytes)?));
            }
        }
        Ok(found)
    }

    async fn claim_outbox(
        conn: &mut SqliteConnection,
        claim: &OutboxClaim<'_>,
    ) -> StoreResult<Vec<OutboxRow>> {
        // Leases are Unix milliseconds compared as integers: SQLite stores timestamps as text
        // of varying precision, which does not sort as time does.
        let mut rows = sqlx::query_as::<Sqlite, OutboxRow>(
            "UPDATE outbox SET claim_token = $1, claimed_until_ms = $2 \
             WHERE outbox_id IN (SELECT outbox_id FROM outbox WHERE relayed_at IS NULL \
             AND (claimed_until_ms IS NULL OR claimed_until_ms < $3) \
             ORDER BY outbox_id LIMIT $4) \
             RETURNING outbox_id, job, payload",
        )
        .bind(claim.token)
        .bind(claim.until_ms)
        .bind(claim.now_ms)
        .bind(i64::from(claim.rows))
        .fetch_all(&mut *conn)
        .await?;
        // RETURNING gives rows in no set order.
        rows.sort_by_key(|row| row.outbox_id);
        Ok(rows)
    }
}
