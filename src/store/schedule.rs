//! Scheduled job runs: the definition in force per job, and one run per job and period. Who
//! may claim, take over or retry a run is the service's; each change here is one guarded
//! statement.

use std::future::Future;

use super::StoreResult;

/// A job's definition in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdoptedDefinition {
    /// Hex SHA-256 of the definition file.
    pub sha: String,
    /// When a runner adopted it, Unix ms.
    pub adopted_ms: i64,
    /// The runner that adopted it.
    pub adopted_by: String,
}

/// A run as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRunRow {
    /// Its id.
    pub run_id: i64,
    /// The job.
    pub job: String,
    /// The period's instant, Unix ms.
    pub period_ms: i64,
    /// The instant it acts as of, Unix ms.
    pub as_of_ms: i64,
    /// The hex SHA-256 of the definition that claimed it last.
    pub definition_sha: String,
    /// `running`, `succeeded` or `failed`.
    pub status: String,
    /// Attempts so far.
    pub attempts: i32,
    /// The runner that holds (or last held) it.
    pub runner: String,
    /// Until when the runner's claim holds, Unix ms.
    pub lease_until_ms: i64,
    /// When a failed run may be tried again, Unix ms.
    pub retry_ms: Option<i64>,
    /// When the current attempt started, Unix ms.
    pub started_ms: i64,
    /// When it ended, Unix ms.
    pub finished_ms: Option<i64>,
    /// What it did, JSON.
    pub totals: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
}

/// A first claim on a period.
#[derive(Debug, Clone, Copy)]
pub struct NewRun<'a> {
    /// The job.
    pub job: &'a str,
    /// The period's instant, Unix ms.
    pub period_ms: i64,
    /// The instant it acts as of, Unix ms.
    pub as_of_ms: i64,
    /// The claiming definition's hex SHA-256.
    pub definition_sha: &'a str,
    /// The claiming runner.
    pub runner: &'a str,
    /// Now, Unix ms.
    pub now_ms: i64,
    /// Until when the claim holds unless renewed, Unix ms.
    pub lease_until_ms: i64,
}

/// Scheduled job runs.
pub trait ScheduleRepo {
    /// The definition in force for `job`.
    fn job_definition(
        &mut self,
        job: &str,
    ) -> impl Future<Output = StoreResult<Option<AdoptedDefinition>>> + Send;

    /// Makes `sha` the definition in force for `job`; whether it changed.
    fn adopt_definition(
        &mut self,
        job: &str,
        sha: &str,
        now_ms: i64,
        runner: &str,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Inserts a running run; its id, or `None` (nothing written) when the period has one.
    fn insert_run(
        &mut self,
        new: &NewRun<'_>,
    ) -> impl Future<Output = StoreResult<Option<i64>>> + Send;

    /// Hands the period's run to `new.runner` for another attempt when it is running under an
    /// expired lease, or failed with fewer than `max_attempts` attempts and its retry time
    /// passed; the run as now stored, or `None` when it was not so.
    fn take_over_run(
        &mut self,
        new: &NewRun<'_>,
        max_attempts: i32,
    ) -> impl Future<Output = StoreResult<Option<JobRunRow>>> + Send;

    /// The run of `job` for the period at `period_ms`.
    fn job_run(
        &mut self,
        job: &str,
        period_ms: i64,
    ) -> impl Future<Output = StoreResult<Option<JobRunRow>>> + Send;

    /// The periods of `job`'s runs that another runner may take now (running under an expired
    /// lease, or failed, retryable and due), oldest first, at most `limit`.
    fn runs_to_take_over(
        &mut self,
        job: &str,
        now_ms: i64,
        max_attempts: i32,
        limit: i64,
    ) -> impl Future<Output = StoreResult<Vec<i64>>> + Send;

    /// The oldest period of `job` whose run has not succeeded (it runs, waits for a retry, or
    /// failed for good).
    fn unfinished_run_period(
        &mut self,
        job: &str,
    ) -> impl Future<Output = StoreResult<Option<i64>>> + Send;

    /// The oldest period of `job` whose run is running (under a lease, live or not).
    fn running_run_period(
        &mut self,
        job: &str,
    ) -> impl Future<Output = StoreResult<Option<i64>>> + Send;

    /// The newest period of `job` that has a run.
    fn last_run_period(
        &mut self,
        job: &str,
    ) -> impl Future<Output = StoreResult<Option<i64>>> + Send;

    /// Extends `runner`'s lease on a running run; whether it still held it.
    fn renew_run(
        &mut self,
        run_id: i64,
        runner: &str,
        lease_until_ms: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Ends `runner`'s running run: `succeeded` with `totals`, or `failed` with `error` and
    /// the time a retry may start. Whether it still held it.
    fn end_run(
        &mut self,
        run_id: i64,
        runner: &str,
        end: &RunEnd<'_>,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// The newest runs, of `job` or of every job, newest first.
    fn job_runs(
        &mut self,
        job: Option<&str>,
        limit: i64,
    ) -> impl Future<Output = StoreResult<Vec<JobRunRow>>> + Send;
}

/// How a run ended.
#[derive(Debug, Clone, Copy)]
pub struct RunEnd<'a> {
    /// `succeeded` or `failed`.
    pub status: &'a str,
    /// Now, Unix ms.
    pub now_ms: i64,
    /// What it did, JSON (a success).
    pub totals: Option<&'a str>,
    /// Why it failed.
    pub error: Option<&'a str>,
    /// When a failed run may be tried again.
    pub retry_ms: Option<i64>,
}
