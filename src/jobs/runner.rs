//! The worker runtime: apalis workers over tender's own database, until a signal or until no
//! job is left (`--drain`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use apalis::layers::retry::HasherRng;
use apalis::layers::retry::backoff::{ExponentialBackoffMaker, MakeBackoff};
use apalis::prelude::*;

use super::{GenerateBatchJob, JobDefinitions, RunPolicy, postgres_storage, sqlite_storage};
use crate::codegen::CodeGenerator;
use crate::domain::{Batch, BatchId};
use crate::issuance::{Issuance, IssuanceError};
use crate::store::{JobPool, Store, StoreError};

/// How long workers may take to finish jobs in flight after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(60);
/// How often a long-running runner looks for batches whose job was never queued.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// How often `--drain` checks whether any job is left.
const DRAIN_POLL: Duration = Duration::from_millis(250);
/// How many worker failures in a row the monitor restarts before giving up on a worker.
const MAX_WORKER_RESTARTS: usize = 5;
/// The actor the generation job records in the audit trail.
const GENERATE_ACTOR: &str = "job:generate-batch";

/// Until when the runner runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// Until ctrl-c or SIGTERM; jobs in flight finish first.
    UntilSignal,
    /// Until no job is ready or running, then exit.
    Drain,
}

/// Why the runner stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// Preparing or sweeping failed.
    #[error(transparent)]
    Issuance(#[from] IssuanceError),
    /// Reading job state failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A worker kept failing and was given up.
    #[error("a job worker kept failing and was stopped; see the log for its errors")]
    WorkerDied,
    /// The monitor failed.
    #[error("the job runner failed: {0}")]
    Monitor(String),
    /// `--drain` stopped with jobs left (only after a signal).
    #[error("stopped with {0} jobs still to run")]
    Unfinished(i64),
}

impl RunnerError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            RunnerError::Issuance(e) => e.code(),
            RunnerError::Store(e) => e.code(),
            RunnerError::WorkerDied => "jobs.worker_died",
            RunnerError::Monitor(_) => "jobs.monitor",
            RunnerError::Unfinished(_) => "jobs.unfinished",
        }
    }
}

/// Shows a batch's progress (a progress bar on a terminal, nothing elsewhere).
pub type ProgressFn = Arc<dyn Fn(&Batch) + Send + Sync>;

/// What a job handler needs.
#[derive(Clone)]
struct JobContext<S> {
    issuance: Issuance<S>,
    definitions: Arc<JobDefinitions>,
    progress: ProgressFn,
}

/// Runs tender's workers.
pub struct Runner<S> {
    context: JobContext<S>,
}

impl<S: Store> Runner<S> {
    /// A runner for the given use cases and job definitions.
    pub fn new(issuance: Issuance<S>, definitions: JobDefinitions, progress: ProgressFn) -> Self {
        Runner {
            context: JobContext {
                issuance,
                definitions: Arc::new(definitions),
                progress,
            },
        }
    }

    /// Runs the workers until `mode` says to stop.
    pub async fn run(self, mode: RunMode) -> Result<(), RunnerError> {
        let issuance = self.context.issuance.clone();
        let store = issuance.store().clone();
        let swept = issuance.enqueue_stranded().await?;
        if swept > 0 {
            tracing::info!(batches = swept, "queued batches that had no generation job");
        }
        let gave_up = Arc::new(AtomicBool::new(false));
        let monitor = self.register(monitor(gave_up.clone()), store.job_pool());
        let queues = self.context.definitions.queues();
        let result = match mode {
            RunMode::Drain => {
                let store = store.clone();
                monitor
                    .run_with_signal(drained(store, queues.clone()))
                    .await
            }
            RunMode::UntilSignal => {
                let sweeper = tokio::spawn(sweep_forever(issuance));
                let result = monitor.run_with_signal(shutdown_signal()).await;
                sweeper.abort();
                result
            }
        };
        result.map_err(|e| RunnerError::Monitor(e.to_string()))?;
        if gave_up.load(Ordering::SeqCst) {
            return Err(RunnerError::WorkerDied);
        }
        if mode == RunMode::Drain {
            let left = store.unfinished_jobs(&queues).await?;
            if left > 0 {
                return Err(RunnerError::Unfinished(left));
            }
        }
        Ok(())
    }

    fn register(&self, monitor: Monitor, pool: JobPool) -> Monitor {
        let definition = &self.context.definitions.generate_batch;
        let (queue, worker, run) = (
            definition.queue.clone(),
            definition.worker.clone(),
            definition.run.clone(),
        );
        let poll = Duration::from_millis(worker.poll_interval_ms);
        let context = self.context.clone();
        // One macro, because the two backends' worker types differ and apalis' builder bounds
        // make a generic function far longer than the few lines it would save.
        macro_rules! generate_batch_worker {
            ($backend:expr) => {
                WorkerBuilder::new(worker_name(&queue))
                    .backend($backend)
                    .data(context.clone())
                    // Concurrency must wrap retry: the other order deadlocks a retried job.
                    .concurrency(run.concurrency)
                    .retry(retry_policy(&run))
                    .build(generate_batch::<S>)
            };
        }
        match pool {
            JobPool::Sqlite(pool) => monitor.register(move |_| {
                generate_batch_worker!(
                    sqlite_storage::<GenerateBatchJob>(&pool, &queue, Some(&worker))
                        .poll_with_interval(poll)
                )
            }),
            JobPool::Postgres(pool) => monitor.register(move |_| {
                // NOTIFY wakes workers at once; the interval catches delayed jobs and retries.
                let strategy = Strategy::new()
                    .stream(apalis_postgres::Pubsub::new(pool.clone(), queue.clone()))
                    .interval(poll);
                generate_batch_worker!(
                    postgres_storage::<GenerateBatchJob>(&pool, &queue, Some(&worker))
                        .poll_with_strategy(strategy)
                )
            }),
        }
    }
}

/// The generation job: a transient failure is retried, a permanent one kills the job.
async fn generate_batch<S: Store>(
    job: GenerateBatchJob,
    attempt: Attempt,
    context: Data<JobContext<S>>,
) -> Result<(), BoxDynError> {
    let definition = &context.definitions.generate_batch;
    let id = BatchId(job.batch_id);
    tracing::info!(batch = %id, attempt = attempt.current(), "generating batch");
    let mut source = CodeGenerator::from_os_rng();
    // The timeout lives here, not in apalis' timeout layer, which leaves timed-out jobs stranded.
    let run = context.issuance.generate(
        id,
        &mut source,
        definition.params.chunk_cards,
        GENERATE_ACTOR,
        &*context.progress,
    );
    match tokio::time::timeout(definition.run.timeout(), run).await {
        Ok(Ok(batch)) => {
            tracing::info!(batch = %id, cards = batch.generated, collisions = batch.collisions, "batch completed");
            Ok(())
        }
        Ok(Err(error)) if error.is_transient() => {
            tracing::warn!(batch = %id, code = error.code(), %error, "batch generation failed; will retry");
            Err(error.into())
        }
        Ok(Err(error)) => {
            tracing::error!(batch = %id, code = error.code(), %error, "batch generation failed for good");
            Err(AbortError::new(error).into())
        }
        Err(_) => {
            tracing::warn!(batch = %id, "batch generation timed out; will resume");
            Err(format!("timed out after {} s", definition.run.timeout_secs).into())
        }
    }
}

fn retry_policy(
    run: &RunPolicy,
) -> BackoffRetryPolicy<apalis::layers::retry::backoff::ExponentialBackoff<HasherRng>> {
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
            let restart = context.restarts() < MAX_WORKER_RESTARTS;
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

/// Resolves once no job is ready or running twice in a row, or on a signal.
async fn drained<S: Store>(store: S, queues: Vec<String>) -> std::io::Result<()> {
    let idle = async {
        let mut idle_polls = 0;
        loop {
            let left = store
                .unfinished_jobs(&queues)
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
        result = shutdown_signal() => result,
    }
}

async fn sweep_forever<S: Store>(issuance: Issuance<S>) {
    loop {
        tokio::time::sleep(SWEEP_INTERVAL).await;
        if let Err(error) = issuance.enqueue_stranded().await {
            tracing::warn!(%error, "could not queue stranded batches");
        }
    }
}
