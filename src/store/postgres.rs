//! PostgreSQL, for production: several API servers and job runners share one database. Row
//! locks (`FOR UPDATE`, guarded `UPDATE`s) serialise what must be serial, and cards arrive by
//! `COPY`. Only what differs from SQLite is here; the shared SQL is mounted below.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, Pool, Postgres};

use super::backend::task_counts;
use super::rows::bytes32;
use super::{Backend, CardChunk, DbPool, OutboxClaim, OutboxRow, StoreError, StoreResult};
use crate::codegen::CodeDigest;

/// The backend the shared SQL is compiled for in this module.
type Db = Postgres;

// The same source is mounted for each backend on purpose: that is how it is written once.
#[allow(clippy::duplicate_mod)]
#[path = "sql/mod.rs"]
mod sql;

/// Connections per process: enough for the API and a few job workers, small enough that several
/// processes stay well under PostgreSQL's default limit of 100.
pub const PG_POOL_CONNECTIONS: u32 = 8;
/// How long to wait for a free connection before failing.
pub const PG_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// How many times a chunk's direct COPY is retried after digest collisions before giving up.
const COPY_ATTEMPTS: usize = 8;

/// Whether a SQLSTATE means "run the transaction again": serialization failure (40001) and
/// deadlock (40P01). A deadlock also means some path locks rows in the wrong order.
pub(super) fn is_transient_code(code: &str) -> bool {
    matches!(code, "40001" | "40P01")
}

impl Backend for Postgres {
    // The timeouts back up the unit-of-work deadline (`UNIT_OF_WORK_DEADLINE`, 60 s), sent
    // with the BEGIN in one round trip; PostgreSQL 15 has no transaction timeout.
    const BEGIN_WRITE: &'static str = "BEGIN; SET LOCAL statement_timeout = '60s'; \
         SET LOCAL idle_in_transaction_session_timeout = '60s'";
    const BEGIN_UNFLUSHED: &'static str = "BEGIN; SET LOCAL synchronous_commit = off; \
         SET LOCAL statement_timeout = '60s'; SET LOCAL idle_in_transaction_session_timeout = '60s'";
    const BEGIN_READ: &'static str = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY";
    const WRITER_QUEUE: Option<Duration> = None;
    const ROW_LOCKS: bool = true;
    const OUTBOX_CLAIM_LOCKS_ROWS: bool = true;

    async fn connect(url: &str) -> StoreResult<Pool<Postgres>> {
        let options: PgConnectOptions = url.parse()?;
        Ok(PgPoolOptions::new()
            .max_connections(PG_POOL_CONNECTIONS)
            // No ping before each use: it is a round trip on every transaction, and a connection
            // that died fails its first statement anyway, as "busy", which runs the unit of
            // work again on another connection (sqlx drops a broken one).
            .test_before_acquire(false)
            .acquire_timeout(PG_ACQUIRE_TIMEOUT)
            .connect_with(options.application_name("tender"))
            .await?)
    }

    const APPLIED_MIGRATIONS: &'static str =
        "SELECT version FROM public._sqlx_migrations WHERE success ORDER BY version";
    const TASK_COUNTS: &'static str = task_counts!("apalis.jobs");

    fn migrators() -> [Migrator; 2] {
        // apalis keeps its tables and migration history in its own `apalis` schema.
        [
            sqlx::migrate!("migrations/postgres"),
            apalis_postgres::PostgresStorage::<()>::migrations(),
        ]
    }

    fn db_pool(pool: &Pool<Postgres>) -> DbPool {
        DbPool::Postgres(pool.clone())
    }

    async fn insert_cards(
        conn: &mut PgConnection,
        chunk: &CardChunk<'_>,
        indexes: &[usize],
    ) -> StoreResult<Vec<usize>> {
        if indexes.is_empty() {
            return Ok(Vec::new());
        }
        // A statement failed by a taken digest has the server log the digest, in the error's
        // DETAIL and CONTEXT, unless the server logs errors tersely (a superuser's
        // `ALTER ROLE … SET log_error_verbosity = terse`). Only then may a COPY fail.
        let verbosity: String = sqlx::query_scalar("SELECT current_setting('log_error_verbosity')")
            .fetch_one(&mut *conn)
            .await?;
        if verbosity.eq_ignore_ascii_case("terse") {
            copy_direct(conn, chunk, indexes).await
        } else {
            copy_staged(conn, chunk, indexes).await
        }
    }

    async fn stored_digests(
        conn: &mut PgConnection,
        digests: &[CodeDigest],
    ) -> StoreResult<HashSet<CodeDigest>> {
        let all: Vec<&[u8]> = digests.iter().map(|d| &d.0[..]).collect();
        sqlx::query_scalar::<Postgres, Vec<u8>>("SELECT digest FROM card WHERE digest = ANY($1)")
            .bind(&all)
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .map(|bytes| bytes32(bytes).map(CodeDigest))
            .collect()
    }

    async fn claim_outbox(
        conn: &mut PgConnection,
        claim: &OutboxClaim<'_>,
    ) -> StoreResult<Vec<OutboxRow>> {
        // The locks last until the relay's transaction ends, after the push.
        Ok(sqlx::query_as::<Postgres, OutboxRow>(
            "SELECT outbox_id, job, payload FROM outbox WHERE relayed_at IS NULL \
             ORDER BY outbox_id LIMIT $1 FOR UPDATE SKIP LOCKED",
        )
        .bind(i64::from(claim.rows))
        .fetch_all(&mut *conn)
        .await?)
    }
}

/// COPYs the cards at `indexes` into an unindexed staging table, then moves them with ON
/// CONFLICT DO NOTHING: a taken digest is skipped, never an error. About 1.5 times a direct
/// COPY. Returns the indexes whose digest was taken.
async fn copy_staged(
    conn: &mut PgConnection,
    chunk: &CardChunk<'_>,
    indexes: &[usize],
) -> StoreResult<Vec<usize>> {
    sqlx::query(
        "CREATE TEMP TABLE IF NOT EXISTS card_staging \
         (LIKE card INCLUDING DEFAULTS) ON COMMIT DELETE ROWS",
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query("TRUNCATE card_staging")
        .execute(&mut *conn)
        .await?;
    copy_csv(
        conn,
        "COPY card_staging (serial, batch_id, lookup_key_id, state, digest) \
         FROM STDIN WITH (FORMAT csv)",
        &csv_rows(chunk, indexes),
    )
    .await?;
    let inserted = sqlx::query(
        "INSERT INTO card (serial, batch_id, lookup_key_id, state, digest) \
         SELECT serial, batch_id, lookup_key_id, state, digest FROM card_staging \
         ORDER BY digest ON CONFLICT (digest) DO NOTHING",
    )
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if inserted == indexes.len() as u64 {
        return Ok(Vec::new());
    }
    // The rare short count: the serials that did not go in are the taken ones.
    let missing: Vec<i64> = sqlx::query_scalar(
        "SELECT s.serial FROM card_staging s \
         WHERE NOT EXISTS (SELECT 1 FROM card c WHERE c.serial = s.serial)",
    )
    .fetch_all(&mut *conn)
    .await?;
    missing
        .into_iter()
        .map(|serial| {
            u64::try_from(serial)
                .ok()
                .and_then(|s| s.checked_sub(chunk.first_sequence))
                .and_then(|i| usize::try_from(i).ok())
                .ok_or_else(|| StoreError::corrupt("a staged card's serial"))
        })
        .collect()
}

/// COPYs the cards at `indexes` straight into `card`, setting aside and copying again the
/// rest when a digest is taken. Only where errors are logged tersely (see `insert_cards`).
async fn copy_direct(
    conn: &mut PgConnection,
    chunk: &CardChunk<'_>,
    indexes: &[usize],
) -> StoreResult<Vec<usize>> {
    let mut pending = indexes.to_vec();
    let mut taken = Vec::new();
    for _ in 0..COPY_ATTEMPTS {
        if copy_cards(conn, chunk, &pending).await? {
            return Ok(taken);
        }
        // Some digest is taken (or repeats in the chunk): set those cards aside, copy the
        // rest again. Another transaction may take one in between, hence the loop.
        let now_taken = taken_digests(conn, chunk, &pending).await?;
        pending.retain(|i| !now_taken.contains(i));
        taken.extend(now_taken);
    }
    Err(StoreError::Corrupt(format!(
        "batch {}: digests kept colliding after {COPY_ATTEMPTS} attempts",
        chunk.batch_id
    )))
}

/// COPYs the cards at `indexes` inside a savepoint; `false` if a digest was already taken (the
/// savepoint is then rolled back and none of them is stored).
async fn copy_cards(
    conn: &mut PgConnection,
    chunk: &CardChunk<'_>,
    indexes: &[usize],
) -> StoreResult<bool> {
    if indexes.is_empty() {
        return Ok(true);
    }
    let data = csv_rows(chunk, indexes);
    let mut savepoint = conn.begin().await?;
    let copied = copy_csv(
        &mut savepoint,
        "COPY card (serial, batch_id, lookup_key_id, state, digest) FROM STDIN WITH (FORMAT csv)",
        &data,
    )
    .await;
    match copied {
        Ok(_) => {
            savepoint.commit().await?;
            Ok(true)
        }
        Err(sqlx::Error::Database(db)) if db.constraint() == Some("card_digest_unique") => {
            savepoint.rollback().await?;
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

/// Indexes among `indexes` whose digest is already stored, or repeats an earlier index's.
async fn taken_digests(
    conn: &mut PgConnection,
    chunk: &CardChunk<'_>,
    indexes: &[usize],
) -> StoreResult<Vec<usize>> {
    let digests: Vec<CodeDigest> = indexes.iter().map(|&i| chunk.digests[i]).collect();
    let stored = Postgres::stored_digests(conn, &digests).await?;
    let mut seen = HashSet::with_capacity(indexes.len());
    Ok(indexes
        .iter()
        .copied()
        .filter(|&i| stored.contains(&chunk.digests[i]) || !seen.insert(chunk.digests[i].0))
        .collect())
}

/// Runs one `COPY … FROM STDIN` statement with `data` as its input.
async fn copy_csv(
    conn: &mut PgConnection,
    statement: &'static str,
    data: &str,
) -> Result<u64, sqlx::Error> {
    let mut copy = conn.copy_in_raw(statement).await?;
    copy.send(data.as_bytes()).await?;
    copy.finish().await
}

/// The cards at `indexes` as COPY's CSV, in digest order: the digest index then takes the chunk
/// as one sweep instead of random inserts.
fn csv_rows(chunk: &CardChunk<'_>, indexes: &[usize]) -> String {
    let mut order = indexes.to_vec();
    order.sort_unstable_by_key(|&i| chunk.digests[i].0);
    let mut data = String::with_capacity(order.len() * 96);
    for i in order {
        let _ = writeln!(
            data,
            "{},{},{},0,\\x{}",
            chunk.first_sequence + i as u64,
            chunk.batch_id.0,
            chunk.key_id.get(),
            hex::encode(chunk.digests[i].0)
        );
    }
    data
}
