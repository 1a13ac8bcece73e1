//! Jobs: their definitions (the TOML files under `jobs/`), their payloads, the queue that takes
//! them, and the worker runtime (apalis) that runs them.
//!
//! apalis delivers a job at least once: a job may run again after a crash, a lost heartbeat or
//! a shutdown. Every handler is therefore idempotent through its own database transaction.

mod definition;
mod runner;

pub use definition::{
    DefinitionError, GenerateBatchParams, JobDefinition, JobDefinitions, MAX_CHUNK_CARDS,
    RunPolicy, Trigger, WorkerPolicy,
};
pub use runner::{ProgressFn, RunMode, Runner, RunnerError};

use apalis::prelude::{TaskBuilder, TaskId, TaskSink, TaskSinkError};
use apalis_postgres::PostgresStorage;
use apalis_sqlite::SqliteStorage;
use serde::{Deserialize, Serialize};

use crate::store::JobPool;

/// The generation job's payload: only the batch id; everything else is in the batch row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerateBatchJob {
    /// The batch to generate.
    pub batch_id: i64,
}

/// Why a job could not be queued.
#[derive(Debug, thiserror::Error)]
#[error("the job queue refused the job: {0}")]
pub struct QueueError(String);

impl QueueError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        "jobs.queue"
    }
}

/// Queues jobs as their definitions say.
#[derive(Debug, Clone)]
pub struct JobQueue {
    queue: String,
    max_attempts: u32,
}

impl JobQueue {
    /// A queue for the generation job.
    pub fn generate_batch(definitions: &JobDefinitions) -> JobQueue {
        let definition = &definitions.generate_batch;
        JobQueue {
            queue: definition.queue.clone(),
            max_attempts: definition.run.max_attempts,
        }
    }

    /// Queues generation of a batch. A batch has one job for good: pushing it again is a no-op.
    pub async fn push(&self, pool: &JobPool, job: &GenerateBatchJob) -> Result<(), QueueError> {
        let task = TaskBuilder::new(*job)
            .task_id(TaskId::from_ulid(ulid::Ulid::generate()))
            .idempotency_key(format!("generate-batch:{}", job.batch_id))
            .max_attempts(self.max_attempts as usize)
            .build();
        match pool {
            // SQLite drops a duplicate key silently.
            JobPool::Sqlite(pool) => sqlite_storage(pool, &self.queue, None)
                .push_task(task)
                .await
                .map_err(|e| QueueError(e.to_string())),
            JobPool::Postgres(pool) => match postgres_storage(pool, &self.queue, None)
                .push_task(task)
                .await
            {
                Ok(()) => Ok(()),
                // PostgreSQL refuses a duplicate key: the job is already queued, as wanted.
                Err(TaskSinkError::PushError(apalis_postgres::Error::Database(
                    sqlx::Error::Database(db),
                ))) if db.is_unique_violation() => Ok(()),
                Err(e) => Err(QueueError(e.to_string())),
            },
        }
    }
}

fn sqlite_storage<T>(
    pool: &sqlx::SqlitePool,
    queue: &str,
    worker: Option<&WorkerPolicy>,
) -> SqliteStorage<T> {
    let mut config = apalis_sqlite::Config::default().queue(queue).batch_size(1);
    if let Some(worker) = worker {
        config = config
            .heartbeat_interval(std::time::Duration::from_secs(worker.heartbeat_secs))
            .missed_heartbeats(worker.missed_heartbeats as usize);
    }
    SqliteStorage::new(pool).with_config(config)
}

fn postgres_storage<T>(
    pool: &sqlx::PgPool,
    queue: &str,
    worker: Option<&WorkerPolicy>,
) -> PostgresStorage<T> {
    let mut config = apalis_postgres::Config::default()
        .queue(queue)
        .batch_size(1);
    if let Some(worker) = worker {
        config = config
            .heartbeat_interval(std::time::Duration::from_secs(worker.heartbeat_secs))
            .missed_heartbeats(worker.missed_heartbeats as usize);
    }
    PostgresStorage::new(pool).with_config(config)
}
