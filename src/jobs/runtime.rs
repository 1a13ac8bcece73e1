//! The job runtime: apalis workers over tender's own database, the outbox relay and the
//! schedules, until a signal or until no job is left (`--drain`). It knows no job: each job
//! comes in through [`Runtime::with_job`] as a [`Job`].

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use apalis::layers::retry::HasherRng;
use apalis::layers::retry::backoff::{ExponentialBackoff, ExponentialBackoffMaker, MakeBackoff};
use apalis::prelude::*;

use super::Job;
use super::definitions::RunPolicy;
use super::queue::{Route, postgres_storage, sqlite_storage};
use super::relay::Relay;
use super::schedule::{Duty, Scheduler, Ticking};
use super::status;
use crate::clock::SharedClock;
use crate::error::{Classify, Kind};
use crate::service::{JobPayload, Services};
use crate::store::{DbPool, Store, StoreError};

/// How long workers may take to finish jobs in flight after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(60);
/// How often `--drain` checks whether any job is left.
const DRAIN_POLL: Duration = Duration::from_millis(250);
/// How many worker failures in a row the monitor restarts before giving up on a worker.
const WORKER_RESTARTS_MAX: usize = 5;

/// Until when the runtime runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// Until ctrl-c or SIGTERM; jobs in flight finish first.
    UntilSignal,
    /// Until the outbox is empty and no job is ready or running, then exit.
    Drain,
}

/// Why the runtime stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// Reading the outbox or the job tables failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A worker kept failing and was given up.
    #[error("a job worker kept failing and was stopped; see the log for its errors")]
    WorkerDied,
    /// The monitor failed.
    #[error("the job runner failed; the log has the cause")]
    Monitor,
    /// `--drain` stopped with jobs left (only after a signal).
    #[error("stopped with {0} jobs still to run")]
    Unfinished(i64),
}

impl Classify for RuntimeError {
    fn code(&self) -> &'static str {
        match self {
            RuntimeError::Store(e) => e.code(),
            RuntimeError::WorkerDied => "jobs.worker_died",
            RuntimeError::Monitor => "jobs.monitor",
            RuntimeError::Unfinished(_) => "jobs.unfinished",
        }
    }

    fn kind(&self) -> Kind {
        match self {
            RuntimeError::Store(e) => e.kind(),
            RuntimeError::WorkerDied | RuntimeError::Monitor => Kind::Internal,
            RuntimeError::Unfinished(_) => Kind::Transient,
        }
    }
}

/// Workers for the jobs added, the relay, and the schedules.
pub struct Runtime<S> {
    store: S,
    clock: SharedClock,
    monitor: Monitor,
    gave_up: Arc<AtomicBool>,
    queues: Vec<String>,
    routes: HashMap<&'static str, Route>,
    schedules: Vec<Arc<dyn Ticking>>,
}

impl<S: Store> Runtime<S> {
    /// A runtime over `store` with no job yet.
    pub fn new(store: S, clock: SharedClock) -> Self {
        let gave_up = Arc::new(AtomicBool::new(false));
        Runtime {
            store,
            clock,
            monitor: monitor(gave_up.clone()),
            gave_up,
            queues: Vec::new(),
            routes: HashMap::new(),
            schedules: Vec::new(),
        }
    }

    /// Runs `job`'s workers as its policy says: its queue, concurrency, retries with backoff,
    /// timeout and heartbeat.
    pub fn with_job<J: Job>(mut self, job: J) -> Self {
        let policy = job.policy().clone();
        let route = Route {
            queue: policy.queue.clone(),
            max_attempts: policy.run.max_attempts,
        };
        self.queues.push(policy.queue.clone());
        self.routes.insert(J::Args::JOB, route);
        let (queue, worker, run) = (policy.queue, policy.worker, policy.run);
        let poll = Duration::from_millis(worker.poll_interval_ms);
        // One macro, because the two backends' worker types differ and apalis' builder bounds
        // make a generic function far longer than the few lines it would save.
        macro_rules! worker {
            ($backend:expr) => {
                WorkerBuilder::new(worker_name(&queue))
                    .backend($backend)
                    .data(job.clone())
                    // Concurrency must wrap retry: the other order deadlocks a retried job.
                    .concurrency(run.concurrency)
                    .retry(retry_policy(&run))
                    .build(handle::<J>)
            };
        }
        self.monitor = match self.store.db_pool() {
            DbPool::Sqlite(pool) => self.monitor.register(move |_| {
                worker!(
                    sqlite_storage::<J::Args>(&pool, &queue, Some(&worker))
                        .poll_with_interval(poll)
                )
            }),
            DbPool::Postgres(pool) => self.monitor.register(move |_| {
                // NOTIFY wakes workers at once; the interval catches delayed jobs and retries.
                let strategy = Strategy::new()
                    .stream(apalis_postgres::Pubsub::new(pool.clone(), queue.clone()))
                    .interval(poll);
                worker!(
                    postgres_storage::<J::Args>(&pool, &queue, Some(&worker))
                        .poll_with_strategy(strategy)
                )
            }),
        };
        self
    }

    /// Runs `duty` on its schedule in this runner: each period claimed in the database, so
    /// it runs once across every runner sharing it. A duty whose trigger is not a schedule is
    /// refused at load, so it never gets here.
    pub fn with_duty<D: Duty>(mut self, services: Services<S>, duty: D) -> Self {
        let runner = worker_name(&duty.definition().0.name);
        match Scheduler::new(services, duty, &runner) {
            Some(scheduler) => self.schedules.push(Arc::new(scheduler)),
            None => tracing::error!(runner, "a duty without a schedule was not started"),
        }
        self
    }

    /// The relay this runtime runs, for callers that relay without running workers.
    pub fn relay(&self) -> Relay<S> {
        Relay::new(self.store.clone(), self.clock.clone(), self.routes.clone())
    }

    /// Runs the relay, the schedules and the workers until `mode` says to stop.
    pub async fn run(self, mode: RunMode) -> Result<(), RuntimeError> {
        match mode {
            RunMode::UntilSignal => self.run_until(shutdown_signal(), false).await,
            RunMode::Drain => self.run_until(shutdown_signal(), true).await,
        }
    }

    /// Runs until `stop` resolves (or, with `drain`, until the outbox is empty and no job is
    /// ready or running, whichever comes first); jobs in flight finish.
    pub async fn run_until(
        self,
        stop: impl Future<Output = std::io::Result<()>> + Send + 'static,
        drain: bool,
    ) -> Result<(), RuntimeError> {
        let relay = self.relay();
        let pool = self.store.db_pool();
        let relaying = tokio::spawn(relay.clone().run());
        let scheduling: Vec<_> = if drain {
            // Whatever is due now runs first; then the queues drain.
            for ticking in &self.schedules {
                ticking.clone().once().await;
            }
            Vec::new()
        } else {
            self.schedules
                .into_iter()
                .map(|ticking| tokio::spawn(ticking.forever()))
                .collect()
        };
        let result = if drain {
            let drained = drained(relay.clone(), pool.clone(), self.queues.clone(), stop);
            self.monitor.run_with_signal(drained).await
        } else {
            self.monitor.run_with_signal(stop).await
        };
        relaying.abort();
        scheduling.iter().for_each(|s| s.abort());
        if let Err(error) = result {
            tracing::error!(%error, "the job runner's monitor failed");
            return Err(RuntimeError::Monitor);
        }
        if self.gave_up.load(Ordering::SeqCst) {
            return Err(RuntimeError::WorkerDied);
        }
        if drain {
            let left = relay.pending().await? + status::unfinished(&pool, &self.queues).await?;
            if left > 0 {
                return Err(RuntimeError::Unfinished(left));
            }
        }
        Ok(())
    }
}

/// Runs one task of `J`: a transient failure is retried, anything else ends the task.
async fn handle<J: Job>(args: J::Args, attempt: Attempt, job: Data<J>) -> Result<(), BoxDynError> {
    let policy = job.policy();
    let name = policy.name.as_str();
    tracing::info!(job = name, attempt = attempt.current(), "job started");
    // The timeout lives here, not in apalis' timeout layer, which leaves timed-out jobs stranded.
    match tokio::time::timeout(policy.run.timeout(), job.run(args)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) if error.kind() == Kind::Transient => {
            tracing::warn!(job = name, code = error.code(), %error, "job failed; will retry");
            Err(error.into())
        }
        Ok(Err(error)) => {
            tracing::error!(job = name, code = error.code(), %error, "job failed for good");
            Err(AbortError::new(error).into())
        }
        Err(_) => {
            tracing::warn!(job = name, "job timed out; will retry");
            Err(format!("timed out after {} s", policy.run.timeout_secs).into())
        }
    }
}

fn retry_policy(run: &RunPolicy) -> BackoffRetryPolicy<ExponentialBackoff<HasherRng>> {
    RetryPolicy::retries(run.retries).with_backoff(
        ExponentialBackoffMaker::new(
            Duration::from_millis(run.backoff_min_ms),
            Duration::from_millis(run.backoff_max_ms),
            0.5,
            HasherRng::default(),
        )
        .expect("definitions validate min <= max")
        .make_backoff(),
    )
}

/// Unique per process and start: apalis refuses to reuse a recently seen worker name.
fn worker_name(queue: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!(
        "{queue}@{}-{}-{}",
        host.trim(),
        std::process::id(),
        ulid::Ulid::generate()
    )
}

fn monitor(gave_up: Arc<AtomicBool>) -> Monitor {
    Monitor::new()
        .should_restart(move |context, error| {
            let restart = context.restarts() < WORKER_RESTARTS_MAX;
            tracing::error!(worker = context.name(), %error, restarts = context.restarts(), restart, "job worker failed");
            if !restart {
                gave_up.store(true, Ordering::SeqCst);
            }
            restart
        })
        .shutdown_timeout(SHUTDOWN_GRACE)
}

async fn shutdown_signal() -> std::io::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result,
        _ = term.recv() => Ok(()),
    }
}

/// Resolves once the outbox is empty and no job is ready or running, twice in a row, or when
/// `stop` does.
async fn drained<S: Store>(
    relay: Relay<S>,
    pool: DbPool,
    queues: Vec<String>,
    stop: impl Future<Output = std::io::Result<()>>,
) -> std::io::Result<()> {
    let idle = async {
        let mut idle_polls = 0;
        loop {
            let left = async {
                Ok::<_, StoreError>(
                    relay.pending().await? + status::unfinished(&pool, &queues).await?,
                )
            }
            .await
            .map_err(std::io::Error::other)?;
            idle_polls = if left == 0 { idle_polls + 1 } else { 0 };
            if idle_polls >= 2 {
                return Ok(());
            }
            tokio::time::sleep(DRAIN_POLL).await;
        }
    };
    tokio::select! {
        result = idle => result,
        result = stop => result,
    }
}
