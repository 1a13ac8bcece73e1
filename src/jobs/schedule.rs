//! The scheduler: runs each cron-triggered job ("duty") once per period however many runners
//! share the database, catches up on periods missed while none was up, and finishes runs a
//! killed runner left.
//!
//! apalis' cron runs every tick in every process and keeps no history, so duties do not go
//! through apalis: each runner claims a period in the database (`Schedules::claim`), holds it
//! under a lease it renews while the duty works, and records the outcome. Duties are
//! idempotent and resumable, so a run taken over after a kill applies its effects once.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::definitions::JobPolicy;
use crate::domain::{CATCH_UP_PERIODS_MAX, CatchUp, Schedule};
use crate::error::Classify;
use crate::service::Services;
use crate::service::schedules::{Claim, Claimant, Ticket};
use crate::store::{Store, StoreError};

/// The shortest wait between two passes, so a clock that stands still (a test's) never spins.
const PASS_WAIT_MIN: Duration = Duration::from_millis(50);

/// A scheduled job: what it does as of an instant, and what it did.
pub trait Duty: Clone + Send + Sync + 'static {
    /// Why a run failed.
    type Error: Classify + std::error::Error + Send + Sync + 'static;

    /// Its definition: the policy (with its cron trigger) and the file's hex SHA-256.
    fn definition(&self) -> (&JobPolicy, &str);

    /// Does the work as of `as_of`; its totals, for the run record.
    fn run(
        &self,
        as_of: DateTime<Utc>,
    ) -> impl Future<Output = Result<serde_json::Value, Self::Error>> + Send;
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pass {
    /// Runs this runner started.
    pub ran: usize,
    /// Of those, runs that succeeded.
    pub succeeded: usize,
    /// Whether another definition is in force, so this runner claims nothing.
    pub refused: bool,
}

/// One duty's scheduler, for one runner.
pub struct Scheduler<S, D> {
    services: Services<S>,
    duty: D,
    schedule: Schedule,
    catch_up: CatchUp,
    claimant: Claimant,
    heartbeat: Duration,
    poll: Duration,
    timeout: Duration,
    backoff: (Duration, Duration),
}

impl<S: Store, D: Duty> Scheduler<S, D> {
    /// The scheduler of `duty` as runner `runner`; `None` when its trigger is not a schedule.
    pub fn new(services: Services<S>, duty: D, runner: &str) -> Option<Self> {
        let (policy, sha) = duty.definition();
        let (schedule, catch_up) = policy.schedule()?;
        let heartbeat = Duration::from_secs(policy.worker.heartbeat_secs);
        let claimant = Claimant {
            job: policy.name.clone(),
            definition_sha: sha.to_string(),
            runner: runner.to_string(),
            lease: heartbeat * policy.worker.missed_heartbeats,
            max_attempts: policy.run.max_attempts,
        };
        let (poll, timeout) = (
            Duration::from_millis(policy.worker.poll_interval_ms),
            policy.run.timeout(),
        );
        let backoff = (
            Duration::from_millis(policy.run.backoff_min_ms),
            Duration::from_millis(policy.run.backoff_max_ms),
        );
        Some(Scheduler {
            services,
            duty,
            schedule,
            catch_up,
            claimant,
            heartbeat,
            poll,
            timeout,
            backoff,
        })
    }

    /// The job's name.
    pub fn job(&self) -> &str {
        &self.claimant.job
    }

    /// Makes this runner's definition the one in force: a start adopts what it read.
    pub async fn adopt(&self) -> Result<(), StoreError> {
        if let Some(before) = self.services.schedules().adopt(&self.claimant).await? {
            tracing::warn!(
                job = self.job(),
                was = &before.sha[..12],
                now = &self.claimant.definition_sha[..12],
                "this start changed the job's definition; runners still on the old one stop claiming until restarted"
            );
        }
        Ok(())
    }

    /// One pass: runs left by a dead runner or due for a retry, then the periods due now
    /// (every missed one, oldest first, for `catch_up = "each"`; the newest, as of now, for
    /// `"latest"`).
    pub async fn pass(&self) -> Result<Pass, StoreError> {
        let schedules = self.services.schedules();
        let mut pass = Pass::default();
        for period in schedules.to_take_over(&self.claimant).await? {
            if !self.claim_and_run(period, period, &mut pass).await? {
                return Ok(pass);
            }
        }
        let now = self.services.clock().now();
        let progress = schedules.progress(self.job()).await?;
        let due = match self.catch_up {
            // A period not yet done holds back the ones after it: each runs in order. Asking
            // for it again logs why it waits when it failed on every attempt.
            CatchUp::Each if let Some(held) = progress.unfinished => {
                self.claim_and_run(held, held, &mut pass).await?;
                return Ok(pass);
            }
            CatchUp::Each => {
                let after = match (progress.last, self.schedule.latest(now)) {
                    (Some(last), _) => last,
                    // Never run: start with the newest period, not with history.
                    (None, Some(newest)) => newest - TimeDelta::milliseconds(1),
                    (None, None) => return Ok(pass),
                };
                self.schedule.periods(after, now, CATCH_UP_PERIODS_MAX)
            }
            // One run at a time per job: a newer period waits while a runner works on one.
            CatchUp::Latest if progress.running.is_some() => Vec::new(),
            CatchUp::Latest => self
                .schedule
                .latest(now)
                .filter(|newest| progress.last.is_none_or(|last| *newest > last))
                .into_iter()
                .collect(),
        };
        for period in due {
            let as_of = match self.catch_up {
                CatchUp::Each => period,
                CatchUp::Latest => now,
            };
            if !self.claim_and_run(period, as_of, &mut pass).await? {
                break;
            }
        }
        Ok(pass)
    }

    /// Claims `period` and runs it if this runner got it; whether the pass may go on to
    /// later periods.
    async fn claim_and_run(
        &self,
        period: DateTime<Utc>,
        as_of: DateTime<Utc>,
        pass: &mut Pass,
    ) -> Result<bool, StoreError> {
        let in_order = self.catch_up == CatchUp::Each;
        match self
            .services
            .schedules()
            .claim(&self.claimant, period, as_of)
            .await?
        {
            Claim::Run(ticket) => {
                pass.ran += 1;
                let succeeded = self.attempt(&ticket).await?;
                pass.succeeded += usize::from(succeeded);
                Ok(succeeded || !in_order)
            }
            Claim::Done => Ok(true),
            Claim::Busy => Ok(!in_order),
            Claim::GaveUp { attempts, error } => {
                tracing::error!(
                    job = self.job(),
                    period = %self.schedule.local(period),
                    attempts,
                    error = error.as_deref().unwrap_or(""),
                    "a scheduled run failed on every attempt its definition allows; later periods wait for it"
                );
                Ok(!in_order)
            }
            Claim::Refused(in_force) => {
                tracing::warn!(
                    job = self.job(),
                    ours = &self.claimant.definition_sha[..12],
                    in_force = &in_force.sha[..12],
                    adopted_by = %in_force.adopted_by,
                    "not claiming: another definition of this job is in force (a runner started since with a changed jobs directory); restart this runner with the same definitions"
                );
                pass.refused = true;
                Ok(false)
            }
        }
    }

    /// Runs the duty for `ticket` under its timeout while renewing the lease, and records the
    /// outcome; whether it succeeded. A lost lease (another runner took the run over) stops it
    /// without a record: the new holder's stands.
    async fn attempt(&self, ticket: &Ticket) -> Result<bool, StoreError> {
        let schedules = self.services.schedules();
        let period = self.schedule.local(ticket.period);
        tracing::info!(job = self.job(), %period, attempt = ticket.attempt, as_of = %ticket.as_of, "scheduled run started");
        let work = tokio::time::timeout(self.timeout, self.duty.run(ticket.as_of));
        let renewing = async {
            loop {
                tokio::time::sleep(self.heartbeat).await;
                match schedules.renew(&self.claimant, ticket).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(error) => {
                        tracing::warn!(job = self.job(), %error, "could not renew a run's lease")
                    }
                }
            }
        };
        let outcome = tokio::select! {
            outcome = work => outcome,
            () = renewing => {
                tracing::warn!(job = self.job(), %period, "another runner took this run over; stopped");
                return Ok(false);
            }
        };
        let failure = match outcome {
            Ok(Ok(totals)) => {
                if !schedules.succeed(&self.claimant, ticket, &totals).await? {
                    tracing::warn!(job = self.job(), %period, "finished after another runner took this run over; its record stands");
                    return Ok(false);
                }
                tracing::info!(job = self.job(), %period, %totals, "scheduled run succeeded");
                return Ok(true);
            }
            Ok(Err(error)) => format!("{}: {error}", error.code()),
            Err(_) => format!("timed out after {} s", self.timeout.as_secs()),
        };
        tracing::warn!(job = self.job(), %period, attempt = ticket.attempt, error = %failure, "scheduled run failed");
        let retry_after = self
            .backoff
            .0
            .saturating_mul(2u32.saturating_pow(ticket.attempt.saturating_sub(1) as u32))
            .min(self.backoff.1);
        schedules
            .fail(&self.claimant, ticket, &failure, retry_after)
            .await?;
        Ok(false)
    }

    /// Adopts the definition, then passes at each period and every poll interval (to take
    /// over runs a dead runner left) until dropped.
    pub async fn run_forever(&self) {
        while let Err(error) = self.adopt().await {
            tracing::warn!(job = self.job(), %error, "could not record the job's definition; trying again");
            tokio::time::sleep(self.poll).await;
        }
        loop {
            if let Err(error) = self.pass().await {
                tracing::warn!(job = self.job(), %error, "a scheduler pass failed; trying again");
            }
            let now = self.services.clock().now();
            let until_next = self
                .schedule
                .next(now)
                .and_then(|next| (next - now).to_std().ok())
                .unwrap_or(self.poll);
            tokio::time::sleep(until_next.min(self.poll).max(PASS_WAIT_MIN)).await;
        }
    }
}

/// A scheduler the runtime holds without knowing its duty.
pub(super) trait Ticking: Send + Sync {
    /// Adopts and passes once (`tender work --drain`).
    fn once(self: Arc<Self>) -> Pin<Box<dyn Future<Output = ()> + Send>>;
    /// Runs until dropped.
    fn forever(self: Arc<Self>) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

impl<S: Store, D: Duty> Ticking for Scheduler<S, D> {
    fn once(self: Arc<Self>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            let passed = async {
                self.adopt().await?;
                self.pass().await
            };
            if let Err(error) = passed.await {
                tracing::warn!(job = self.job(), %error, "a scheduler pass failed");
            }
        })
    }

    fn forever(self: Arc<Self>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move { self.run_forever().await })
    }
}

/// Loads a scheduled job's definition from `source` and checks that its trigger is a
/// schedule.
pub fn scheduled_definition<P: serde::de::DeserializeOwned>(
    source: &super::definitions::DefinitionSource,
    dir: Option<&std::path::Path>,
) -> Result<super::definitions::JobDefinition<P>, super::definitions::DefinitionError> {
    let definition: super::definitions::JobDefinition<P> = source.load(dir)?;
    if definition.policy.schedule().is_none() {
        return Err(source.invalid(format!(
            "{} runs on a schedule; its trigger must be kind = \"cron\" with schedule, timezone and catch_up",
            definition.policy.name
        )));
    }
    Ok(definition)
}
