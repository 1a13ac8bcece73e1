//! The job runner's own tables, read for `tender jobs list` and `--drain` and purged nightly.
//! apalis names and shapes them differently per backend, so each query is written per backend
//! here.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::PageRows;
use crate::store::{DbPool, StoreResult};

/// One job of the job runner, as `tender jobs list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct JobSummary {
    /// Task id (a ULID).
    pub id: String,
    /// Queue name.
    pub queue: String,
    /// Pending, Queued, Running, Done, Failed or Killed.
    pub status: String,
    /// Runs so far.
    pub attempts: i64,
    /// Runs allowed.
    pub max_attempts: i64,
    /// The last result or error text.
    pub last_result: Option<String>,
}

#[derive(sqlx::FromRow)]
struct JobRow {
    id: String,
    job_type: String,
    status: String,
    attempts: i32,
    max_attempts: i32,
    last_result: Option<String>,
}

impl From<JobRow> for JobSummary {
    fn from(r: JobRow) -> Self {
        JobSummary {
            id: r.id,
            queue: r.job_type,
            status: r.status,
            attempts: i64::from(r.attempts),
            max_attempts: i64::from(r.max_attempts),
            last_result: r.last_result,
        }
    }
}

/// Jobs, newest first, at most `rows`.
pub async fn recent(pool: &DbPool, rows: PageRows) -> StoreResult<Vec<JobSummary>> {
    let rows = i64::from(rows.get());
    let jobs: Vec<JobRow> = match pool {
        DbPool::Sqlite(pool) => {
            sqlx::query_as(
                "SELECT id, job_type, status, attempts, max_attempts, last_result FROM Jobs \
                 ORDER BY run_at DESC, id DESC LIMIT $1",
            )
            .bind(rows)
            .fetch_all(pool)
            .await?
        }
        DbPool::Postgres(pool) => {
            sqlx::query_as(
                "SELECT id, job_type, status, attempts, max_attempts, \
                 last_result::text AS last_result \
                 FROM apalis.jobs ORDER BY run_at DESC, id DESC LIMIT $1",
            )
            .bind(rows)
            .fetch_all(pool)
            .await?
        }
    };
    Ok(jobs.into_iter().map(JobSummary::from).collect())
}

/// Jobs in these queues that are ready to run, running, or failed with runs left.
pub async fn unfinished(pool: &DbPool, queues: &[String]) -> StoreResult<i64> {
    let mut total = 0;
    for queue in queues {
        total += match pool {
            // SQLite keeps run_at as Unix seconds.
            DbPool::Sqlite(pool) => {
                sqlx::query_scalar::<_, i64>(
                    "SELECT count(*) FROM Jobs WHERE job_type = $1 AND \
                     ((status = 'Pending' AND run_at <= strftime('%s', 'now')) \
                      OR status IN ('Queued', 'Running') \
                      OR (status = 'Failed' AND attempts < max_attempts))",
                )
                .bind(queue)
                .fetch_one(pool)
                .await?
            }
            DbPool::Postgres(pool) => {
                sqlx::query_scalar::<_, i64>(
                    "SELECT count(*) FROM apalis.jobs WHERE job_type = $1 AND \
                     ((status = 'Pending' AND run_at <= now()) \
                      OR status IN ('Queued', 'Running') \
                      OR (status = 'Failed' AND attempts < max_attempts))",
                )
                .bind(queue)
                .fetch_one(pool)
                .await?
            }
        };
    }
    Ok(total)
}

/// Finished jobs one purge statement deletes: small enough that no statement holds the job
/// table for long while workers poll it.
pub const PURGE_BATCH_JOBS: i64 = 1_000;

/// Deletes finished jobs (done, killed, or failed with no run left) that finished before
/// `before`, [`PURGE_BATCH_JOBS`] per statement; how many. apalis' own cleanup cannot do it:
/// on SQLite its age test compares numbers with text and deletes every finished job, and on
/// PostgreSQL there is none.
pub async fn purge_finished(pool: &DbPool, before: DateTime<Utc>) -> StoreResult<u64> {
    let mut purged = 0;
    loop {
        let batch = match pool {
            // SQLite keeps done_at as Unix seconds.
            DbPool::Sqlite(pool) => sqlx::query(
                "DELETE FROM Jobs WHERE rowid IN (SELECT rowid FROM Jobs WHERE \
                 (status IN ('Done', 'Killed') OR (status = 'Failed' AND attempts >= max_attempts)) \
                 AND COALESCE(done_at, run_at) < $1 LIMIT $2)",
            )
            .bind(before.timestamp())
            .bind(PURGE_BATCH_JOBS)
            .execute(pool)
            .await?
            .rows_affected(),
            DbPool::Postgres(pool) => sqlx::query(
                "DELETE FROM apalis.jobs WHERE id IN (SELECT id FROM apalis.jobs WHERE \
                 (status IN ('Done', 'Killed') OR (status = 'Failed' AND attempts >= max_attempts)) \
                 AND COALESCE(done_at, run_at) < $1 LIMIT $2)",
            )
            .bind(before)
            .bind(PURGE_BATCH_JOBS)
            .execute(pool)
            .await?
            .rows_affected(),
        };
        purged += batch;
        if batch < PURGE_BATCH_JOBS as u64 {
            return Ok(purged);
        }
    }
}
