//! Scheduled job runs: which definition of a job is in force, the claim on each period, the
//! lease a runner holds while it works, and the record of every run.
//!
//! A period is claimed in the database, not by trusting one host's clock: the first runner to
//! insert the period's row runs it; the others see it taken. A runner renews its lease while
//! it works; a run whose lease ran out (its runner was killed) or that failed and may be tried
//! again is taken over by the next runner that asks, as of the same instant, so its effects
//! are those of one run.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Services;
use crate::domain::PageRows;
use crate::store::schedule::{AdoptedDefinition, JobRunRow, NewRun, RunEnd};
use crate::store::{ScheduleRepo, Store, StoreError, StoreResult, Tx};

/// The longest error text a run record keeps: one sentence and its cause, not a log.
pub const RUN_ERROR_MAX_CHARS: usize = 500;
/// The most runs that wait to be taken over one pass looks at.
const TAKE_OVER_PASS_MAX: i64 = 16;

/// What a runner claims with: the job, the definition it runs, its name, its lease, and how
/// many attempts the definition allows.
#[derive(Debug, Clone)]
pub struct Claimant {
    /// The job.
    pub job: String,
    /// The hex SHA-256 of this runner's definition of it.
    pub definition_sha: String,
    /// This runner's name, unique per process.
    pub runner: String,
    /// How long a claim holds unless renewed.
    pub lease: Duration,
    /// Attempts allowed per period.
    pub max_attempts: u32,
}

/// A run this runner now holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    /// The run.
    pub run_id: i64,
    /// The period.
    pub period: DateTime<Utc>,
    /// The instant it acts as of.
    pub as_of: DateTime<Utc>,
    /// This attempt's number, from 1.
    pub attempt: i32,
}

/// What a claim on a period found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This runner holds the run: run it.
    Run(Ticket),
    /// The period's run succeeded.
    Done,
    /// Another runner holds it, or it failed and waits for its retry time.
    Busy,
    /// It failed on every attempt its definition allows.
    GaveUp {
        /// Attempts made.
        attempts: i32,
        /// The last error.
        error: Option<String>,
    },
    /// Another definition of the job is in force: this runner may not claim.
    Refused(AdoptedDefinition),
}

/// How far a job's periods have got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// The newest period that has a run.
    pub last: Option<DateTime<Utc>>,
    /// The oldest period whose run has not succeeded.
    pub unfinished: Option<DateTime<Utc>>,
    /// The oldest period whose run is running.
    pub running: Option<DateTime<Utc>>,
}

/// A run, as `tender jobs runs` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobRun {
    /// The run.
    pub run_id: i64,
    /// The job.
    pub job: String,
    /// The period.
    pub period: DateTime<Utc>,
    /// The instant it acts as of.
    pub as_of: DateTime<Utc>,
    /// `running`, `succeeded` or `failed`.
    pub status: String,
    /// Attempts made.
    pub attempts: i32,
    /// The runner that holds or last held it.
    pub runner: String,
    /// The first 12 hex digits of the definition that ran it last.
    pub definition: String,
    /// When the current or last attempt started.
    pub started_at: DateTime<Utc>,
    /// How long the last attempt took, once it ended.
    pub duration_ms: Option<i64>,
    /// What it did.
    pub totals: Option<serde_json::Value>,
    /// Why it failed.
    pub error: Option<String>,
}

fn instant(ms: i64) -> StoreResult<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| StoreError::corrupt("a job run's time"))
}

impl TryFrom<JobRunRow> for JobRun {
    type Error = StoreError;

    fn try_from(row: JobRunRow) -> StoreResult<JobRun> {
        Ok(JobRun {
            run_id: row.run_id,
            period: instant(row.period_ms)?,
            as_of: instant(row.as_of_ms)?,
            started_at: instant(row.started_ms)?,
            duration_ms: row.finished_ms.map(|end| end - row.started_ms),
            totals: row
                .totals
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .map_err(|_| StoreError::corrupt("a job run's totals"))?,
            definition: row.definition_sha.chars().take(12).collect(),
            job: row.job,
            status: row.status,
            attempts: row.attempts,
            runner: row.runner,
            error: row.error,
        })
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Scheduled job runs.
pub struct Schedules<'a, S>(pub(super) &'a Services<S>);

impl<S: Store> Schedules<'_, S> {
    /// Makes `who`'s definition the one in force (a start adopts the definition it read);
    /// the definition it replaced, if it changed.
    pub async fn adopt(&self, who: &Claimant) -> Result<Option<AdoptedDefinition>, StoreError> {
        rerun!(async {
            let mut tx = self.0.store.begin().await?;
            let before = tx.job_definition(&who.job).await?;
            let now_ms = self.0.clock.now().timestamp_millis();
            let changed = tx
                .adopt_definition(&who.job, &who.definition_sha, now_ms, &who.runner)
                .await?;
            tx.commit().await?;
            Ok::<_, StoreError>(before.filter(|_| changed))
        })
    }

    /// Claims the run of `period` for `who`, acting as of `as_of`: a new run, or one another
    /// runner left (its lease ran out) or that failed and may be tried again, which keeps the
    /// instant it was first claimed as of.
    pub async fn claim(
        &self,
        who: &Claimant,
        period: DateTime<Utc>,
        as_of: DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        rerun!(self.claim_once(who, period, as_of))
    }

    async fn claim_once(
        &self,
        who: &Claimant,
        period: DateTime<Utc>,
        as_of: DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        let mut tx = self.0.store.begin().await?;
        if let Some(in_force) = tx.job_definition(&who.job).await?
            && in_force.sha != who.definition_sha
        {
            return Ok(Claim::Refused(in_force));
        }
        let now_ms = self.0.clock.now().timestamp_millis();
        let new = NewRun {
            job: &who.job,
            period_ms: period.timestamp_millis(),
            as_of_ms: as_of.timestamp_millis(),
            definition_sha: &who.definition_sha,
            runner: &who.runner,
            now_ms,
            lease_until_ms: now_ms.saturating_add(millis(who.lease)),
        };
        let max_attempts = i32::try_from(who.max_attempts).unwrap_or(i32::MAX);
        let claim = if let Some(run_id) = tx.insert_run(&new).await? {
            Claim::Run(Ticket {
                run_id,
                period,
                as_of,
                attempt: 1,
            })
        } else if let Some(row) = tx.take_over_run(&new, max_attempts).await? {
            Claim::Run(Ticket {
                run_id: row.run_id,
                period,
                as_of: instant(row.as_of_ms)?,
                attempt: row.attempts,
            })
        } else {
            match tx.job_run(&who.job, new.period_ms).await? {
                Some(row) if row.status == "succeeded" => Claim::Done,
                Some(row) if row.status == "failed" && row.attempts >= max_attempts => {
                    Claim::GaveUp {
                        attempts: row.attempts,
                        error: row.error,
                    }
                }
                _ => Claim::Busy,
            }
        };
        tx.commit().await?;
        Ok(claim)
    }

    /// The periods of `who`'s job whose runs another runner may take now, oldest first.
    pub async fn to_take_over(&self, who: &Claimant) -> Result<Vec<DateTime<Utc>>, StoreError> {
        let now_ms = self.0.clock.now().timestamp_millis();
        let max_attempts = i32::try_from(who.max_attempts).unwrap_or(i32::MAX);
        let mut tx = self.0.store.read().await?;
        let periods = tx
            .runs_to_take_over(&who.job, now_ms, max_attempts, TAKE_OVER_PASS_MAX)
            .await?;
        tx.commit().await?;
        periods.into_iter().map(instant).collect()
    }

    /// The newest period of `job` that has a run, and the oldest whose run has not succeeded.
    pub async fn progress(&self, job: &str) -> Result<Progress, StoreError> {
        let mut tx = self.0.store.read().await?;
        let last = tx.last_run_period(job).await?;
        let unfinished = tx.unfinished_run_period(job).await?;
        let running = tx.running_run_period(job).await?;
        tx.commit().await?;
        Ok(Progress {
            last: last.map(instant).transpose()?,
            unfinished: unfinished.map(instant).transpose()?,
            running: running.map(instant).transpose()?,
        })
    }

    /// Extends `who`'s lease on `ticket`'s run; `false` when another runner has taken it.
    pub async fn renew(&self, who: &Claimant, ticket: &Ticket) -> Result<bool, StoreError> {
        rerun!(async {
            let mut tx = self.0.store.begin().await?;
            let until = self.0.clock.now().timestamp_millis() + millis(who.lease);
            let held = tx.renew_run(ticket.run_id, &who.runner, until).await?;
            tx.commit().await?;
            Ok::<_, StoreError>(held)
        })
    }

    /// Records `ticket`'s run as succeeded with `totals`; `false` when another runner had
    /// taken it (its record stands).
    pub async fn succeed(
        &self,
        who: &Claimant,
        ticket: &Ticket,
        totals: &serde_json::Value,
    ) -> Result<bool, StoreError> {
        let totals = totals.to_string();
        self.end(who, ticket, "succeeded", Some(&totals), None, None)
            .await
    }

    /// Records `ticket`'s attempt as failed with `error`, to be tried again after
    /// `retry_after` while attempts remain.
    pub async fn fail(
        &self,
        who: &Claimant,
        ticket: &Ticket,
        error: &str,
        retry_after: Duration,
    ) -> Result<bool, StoreError> {
        let error: String = error.chars().take(RUN_ERROR_MAX_CHARS).collect();
        let retry_ms = self.0.clock.now().timestamp_millis() + millis(retry_after);
        self.end(who, ticket, "failed", None, Some(&error), Some(retry_ms))
            .await
    }

    async fn end(
        &self,
        who: &Claimant,
        ticket: &Ticket,
        status: &str,
        totals: Option<&str>,
        error: Option<&str>,
        retry_ms: Option<i64>,
    ) -> Result<bool, StoreError> {
        rerun!(async {
            let mut tx = self.0.store.begin().await?;
            let end = RunEnd {
                status,
                now_ms: self.0.clock.now().timestamp_millis(),
                totals,
                error,
                retry_ms,
            };
            let held = tx.end_run(ticket.run_id, &who.runner, &end).await?;
            tx.commit().await?;
            Ok::<_, StoreError>(held)
        })
    }

    /// The newest runs, of `job` or of every job, newest first.
    pub async fn runs(&self, job: Option<&str>, rows: PageRows) -> Result<Vec<JobRun>, StoreError> {
        let mut tx = self.0.store.read().await?;
        let runs = tx.job_runs(job, rows.get() as i64).await?;
        tx.commit().await?;
        runs.into_iter().map(JobRun::try_from).collect()
    }
}
