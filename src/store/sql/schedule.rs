//! Scheduled job runs. A period is claimed by inserting its row (the unique key on job and
//! period decides between runners), and every later change is one statement guarded by the
//! runner's name and the run's status.

use super::Db;
use crate::store::schedule::{AdoptedDefinition, JobRunRow, NewRun, RunEnd, ScheduleRepo};
use crate::store::{SqlTx, StoreResult};

/// The columns [`JobRunRow`] reads, in its order.
macro_rules! run_columns {
    () => {
        "run_id, job, period_ms, as_of_ms, definition_sha, status, attempts, runner, \
         lease_until_ms, retry_ms, started_ms, finished_ms, totals, error"
    };
}

type RunTuple = (
    i64,
    String,
    i64,
    i64,
    String,
    String,
    i32,
    String,
    i64,
    Option<i64>,
    i64,
    Option<i64>,
    Option<String>,
    Option<String>,
);

fn run_row(t: RunTuple) -> JobRunRow {
    JobRunRow {
        run_id: t.0,
        job: t.1,
        period_ms: t.2,
        as_of_ms: t.3,
        definition_sha: t.4,
        status: t.5,
        attempts: t.6,
        runner: t.7,
        lease_until_ms: t.8,
        retry_ms: t.9,
        started_ms: t.10,
        finished_ms: t.11,
        totals: t.12,
        error: t.13,
    }
}

impl ScheduleRepo for SqlTx<Db> {
    async fn job_definition(&mut self, job: &str) -> StoreResult<Option<AdoptedDefinition>> {
        Ok(sqlx::query_as::<Db, (String, i64, String)>(
            "SELECT definition_sha, adopted_ms, adopted_by FROM job_definition WHERE job = $1",
        )
        .bind(job)
        .fetch_optional(&mut *self.tx)
        .await?
        .map(|(sha, adopted_ms, adopted_by)| AdoptedDefinition {
            sha,
            adopted_ms,
            adopted_by,
        }))
    }

    async fn adopt_definition(
        &mut self,
        job: &str,
        sha: &str,
        now_ms: i64,
        runner: &str,
    ) -> StoreResult<bool> {
        let done = sqlx::query::<Db>(
            "INSERT INTO job_definition (job, definition_sha, adopted_ms, adopted_by) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (job) DO UPDATE \
             SET definition_sha = excluded.definition_sha, adopted_ms = excluded.adopted_ms, \
             adopted_by = excluded.adopted_by \
             WHERE job_definition.definition_sha <> excluded.definition_sha",
        )
        .bind(job)
        .bind(sha)
        .bind(now_ms)
        .bind(runner)
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn insert_run(&mut self, new: &NewRun<'_>) -> StoreResult<Option<i64>> {
        Ok(sqlx::query_scalar::<Db, i64>(
            "INSERT INTO job_run (job, period_ms, as_of_ms, definition_sha, status, attempts, \
             runner, lease_until_ms, started_ms) \
             VALUES ($1, $2, $3, $4, 'running', 1, $5, $6, $7) \
             ON CONFLICT (job, period_ms) DO NOTHING RETURNING run_id",
        )
        .bind(new.job)
        .bind(new.period_ms)
        .bind(new.as_of_ms)
        .bind(new.definition_sha)
        .bind(new.runner)
        .bind(new.lease_until_ms)
        .bind(new.now_ms)
        .fetch_optional(&mut *self.tx)
        .await?)
    }

    async fn take_over_run(
        &mut self,
        new: &NewRun<'_>,
        max_attempts: i32,
    ) -> StoreResult<Option<JobRunRow>> {
        Ok(sqlx::query_as::<Db, RunTuple>(concat!(
            "UPDATE job_run SET status = 'running', attempts = attempts + 1, runner = $3, \
             definition_sha = $4, lease_until_ms = $5, started_ms = $6, retry_ms = NULL, \
             finished_ms = NULL, error = NULL \
             WHERE job = $1 AND period_ms = $2 \
             AND ((status = 'running' AND lease_until_ms < $6) \
              OR (status = 'failed' AND attempts < $7 AND retry_ms <= $6)) \
             RETURNING ",
            run_columns!()
        ))
        .bind(new.job)
        .bind(new.period_ms)
        .bind(new.runner)
        .bind(new.definition_sha)
        .bind(new.lease_until_ms)
        .bind(new.now_ms)
        .bind(max_attempts)
        .fetch_optional(&mut *self.tx)
        .await?
        .map(run_row))
    }

    async fn job_run(&mut self, job: &str, period_ms: i64) -> StoreResult<Option<JobRunRow>> {
        Ok(sqlx::query_as::<Db, RunTuple>(concat!(
            "SELECT ",
            run_columns!(),
            " FROM job_run WHERE job = $1 AND period_ms = $2"
        ))
        .bind(job)
        .bind(period_ms)
        .fetch_optional(&mut *self.tx)
        .await?
        .map(run_row))
    }

    async fn runs_to_take_over(
        &mut self,
        job: &str,
        now_ms: i64,
        max_attempts: i32,
        limit: i64,
    ) -> StoreResult<Vec<i64>> {
        Ok(sqlx::query_scalar::<Db, i64>(
            "SELECT period_ms FROM job_run WHERE job = $1 \
             AND ((status = 'running' AND lease_until_ms < $2) \
              OR (status = 'failed' AND attempts < $3 AND retry_ms <= $2)) \
             ORDER BY period_ms LIMIT $4",
        )
        .bind(job)
        .bind(now_ms)
        .bind(max_attempts)
        .bind(limit)
        .fetch_all(&mut *self.tx)
        .await?)
    }

    async fn unfinished_run_period(&mut self, job: &str) -> StoreResult<Option<i64>> {
        Ok(sqlx::query_scalar::<Db, Option<i64>>(
            "SELECT MIN(period_ms) FROM job_run WHERE job = $1 AND status <> 'succeeded'",
        )
        .bind(job)
        .fetch_one(&mut *self.tx)
        .await?)
    }

    async fn running_run_period(&mut self, job: &str) -> StoreResult<Option<i64>> {
        Ok(sqlx::query_scalar::<Db, Option<i64>>(
            "SELECT MIN(period_ms) FROM job_run WHERE job = $1 AND status = 'running'",
        )
        .bind(job)
        .fetch_one(&mut *self.tx)
        .await?)
    }

    async fn last_run_period(&mut self, job: &str) -> StoreResult<Option<i64>> {
        Ok(sqlx::query_scalar::<Db, Option<i64>>(
            "SELECT MAX(period_ms) FROM job_run WHERE job = $1",
        )
        .bind(job)
        .fetch_one(&mut *self.tx)
        .await?)
    }

    async fn renew_run(
        &mut self,
        run_id: i64,
        runner: &str,
        lease_until_ms: i64,
    ) -> StoreResult<bool> {
        let done = sqlx::query::<Db>(
            "UPDATE job_run SET lease_until_ms = $3 \
             WHERE run_id = $1 AND runner = $2 AND status = 'running'",
        )
        .bind(run_id)
        .bind(runner)
        .bind(lease_until_ms)
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn end_run(&mut self, run_id: i64, runner: &str, end: &RunEnd<'_>) -> StoreResult<bool> {
        let done = sqlx::query::<Db>(
            "UPDATE job_run SET status = $3, finished_ms = $4, totals = $5, error = $6, \
             retry_ms = $7 WHERE run_id = $1 AND runner = $2 AND status = 'running'",
        )
        .bind(run_id)
        .bind(runner)
        .bind(end.status)
        .bind(end.now_ms)
        .bind(end.totals)
        .bind(end.error)
        .bind(end.retry_ms)
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn job_runs(&mut self, job: Option<&str>, limit: i64) -> StoreResult<Vec<JobRunRow>> {
        Ok(sqlx::query_as::<Db, RunTuple>(concat!(
            "SELECT ",
            run_columns!(),
            " FROM job_run WHERE ($1 IS NULL OR job = $1) ORDER BY run_id DESC LIMIT $2"
        ))
        .bind(job)
        .bind(limit)
        .fetch_all(&mut *self.tx)
        .await?
        .into_iter()
        .map(run_row)
        .collect())
    }
}
