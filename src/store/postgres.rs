//! PostgreSQL, for production: several API servers and job runners share one database. Row
//! locks (`FOR UPDATE`, guarded `UPDATE`s) serialise what must be serial, and cards arrive by
//! `COPY`. Only what differs from SQLite is here; the shared SQL is mounted below.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, Pool, Postgres};

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

/// Whether a SQLSTATE means "run the transaction again": serialization failure (40001) and
/// deadlock (40P01). A deadlock also means some path locks rows in the wrong order.
pub(super) fn is_transient_code(code: &str) -> bool {
    matches!(code, "40001" | "40P01")
}

impl Backend for Postgres {
    const BEGIN_WRITE: &'static str = "BEGIN";
    const BEGIN_READ: &'static str = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY";
    const ROW_LOCKS: bool = true;
    const OUTBOX_CLAIM_LOCKS_ROWS: bool = true;

    async fn connect(url: &str) -> StoreResult<Pool<Postgres>> {
        let options: PgConnectOptions = url.parse()?;
        Ok(PgPoolOptions::new()
            .max_connections(PG_POOL_CONNECTIONS)
            .acquire_timeout(PG_ACQUIRE_TIMEOUT)
            .connect_with(options.application_name("tender"))
            .await?)
    }

    const APPLIED_MIGRATIONS: &'static str =
        "SELECT version FROM public._sqlx_migrations WHERE success ORDER BY version";

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
        // COPY into an unindexed staging table, then move the rows over with ON CONFLICT DO
        // NOTHING: a taken digest is skipped, never an error. A failed COPY would have the
        // server log the digest (in the error's DETAIL and CONTEXT).
        sqlx::query(
            "CREATE TEMP TABLE IF NOT EXISTS card_staging \
             (LIKE card INCLUDING DEFAULTS) ON COMMIT DELETE ROWS",
        )
        .execute(&mut *conn)
        .await?;
        sqlx::query("TRUNCATE card_staging")
            .execute(&mut *conn)
            .await?;
        // In digest order, the digest index takes the chunk as a sweep, not random inserts.
        let mut order = indexes.to_vec();
        order.sort_unstable_by_key(|&i| chunk.digests[i].0);
        let mut data = String::with_capacity(order.len() * 96);
        for &i in &order {
            let _ = writeln!(
                data,
                "{},{},{},0,\\x{}",
                chunk.first_sequence + i as u64,
                chunk.batch_id.0,
                chunk.key_id.get(),
                hex::encode(chunk.digests[i].0)
            );
        }
        let mut copy = conn
            .copy_in_raw(
                "COPY card_staging (serial, batch_id, lookup_key_id, state, digest) \
                 FROM STDIN WITH (FORMAT csv)",
            )
            .await?;
        copy.send(data.as_bytes()).await?;
        copy.finish().await?;
        let inserted = sqlx::query(
            "INSERT INTO card (serial, batch_id, lookup_key_id, state, digest) \
             SELECT serial, batch_id, lookup_key_id, state, digest FROM card_staging \
             ORDER BY digest ON CONFLICT (digest) DO NOTHING",
        )
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if inserted == order.len() as u64 {
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
