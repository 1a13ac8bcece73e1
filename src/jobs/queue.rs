//! Pushing a task into the job runner's queue, on either backend.

use apalis::prelude::{BoxDynError, TaskBuilder, TaskId, TaskSink, TaskSinkError};
use apalis_postgres::PostgresStorage;
use apalis_sqlite::SqliteStorage;

use super::definitions::WorkerPolicy;
use crate::error::{Classify, Kind};
use crate::store::DbPool;

/// Why a task could not be queued.
#[derive(Debug, thiserror::Error)]
#[error("the job queue refused a job; the log has the cause")]
pub struct QueueError(#[source] BoxDynError);

impl QueueError {
    fn new(error: impl Into<BoxDynError>) -> QueueError {
        let error = error.into();
        tracing::warn!(%error, "the job queue refused a job");
        QueueError(error)
    }
}

impl Classify for QueueError {
    fn code(&self) -> &'static str {
        "jobs.queue"
    }

    fn kind(&self) -> Kind {
        Kind::Transient
    }
}

/// Where a job's tasks go: its queue and how many runs each may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The queue.
    pub queue: String,
    /// Runs allowed per task.
    pub max_attempts: u32,
}

/// Queues `payload` on `route` under `key`. A key already used is a job already queued: both
/// backends then keep the first and the push counts as done.
pub(super) async fn push(
    pool: &DbPool,
    route: &Route,
    payload: serde_json::Value,
    key: String,
) -> Result<(), QueueError> {
    let task = TaskBuilder::new(payload)
        .task_id(TaskId::from_ulid(ulid::Ulid::generate()))
        .idempotency_key(key)
        .max_attempts(route.max_attempts as usize)
        .build();
    match pool {
        // SQLite drops a duplicate key silently.
        DbPool::Sqlite(pool) => sqlite_storage(pool, &route.queue, None)
            .push_task(task)
            .await
            .map_err(QueueError::new),
        DbPool::Postgres(pool) => {
            match postgres_storage(pool, &route.queue, None)
                .push_task(task)
                .await
            {
                Ok(()) => Ok(()),
                // PostgreSQL refuses a duplicate key: the job is already queued, as wanted.
                Err(TaskSinkError::PushError(apalis_postgres::Error::Database(
                    sqlx::Error::Database(db),
                ))) if db.is_unique_violation() => Ok(()),
                Err(e) => Err(QueueError::new(e)),
            }
        }
    }
}

/// apalis' SQLite storage for one queue; `worker` sets the heartbeat a worker keeps.
pub(super) fn sqlite_storage<T>(
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

/// apalis' PostgreSQL storage for one queue; `worker` sets the heartbeat a worker keeps.
pub(super) fn postgres_storage<T>(
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
