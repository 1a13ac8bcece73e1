//! The outbox relay: hands jobs that services wrote to the outbox, in the transaction of the
//! change that caused them, to the job runner. It runs in every `tender work` process; claims
//! keep two relays from pushing one row at once, and each task's idempotency key is its outbox
//! id, so a row pushed twice (a relay that died between its push and its mark) is queued once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::queue::{self, QueueError, Route};
use crate::clock::SharedClock;
use crate::error::{Classify, Kind};
use crate::store::{OutboxClaim, OutboxRepo, OutboxRow, Store, StoreError, Tx};

/// Most rows one relay pass claims.
pub const RELAY_ROWS_MAX: u32 = 100;
/// How long a SQLite claim keeps other relays off its rows: far longer than a pass takes.
pub const RELAY_LEASE: Duration = Duration::from_secs(60);
/// How often an idle relay looks for new rows.
pub const RELAY_INTERVAL: Duration = Duration::from_millis(200);

/// Why a relay pass failed.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The outbox could not be read or marked.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The job runner's queue refused a job.
    #[error(transparent)]
    Queue(#[from] QueueError),
}

impl Classify for RelayError {
    fn code(&self) -> &'static str {
        match self {
            RelayError::Store(e) => e.code(),
            RelayError::Queue(e) => e.code(),
        }
    }

    fn kind(&self) -> Kind {
        match self {
            RelayError::Store(e) => e.kind(),
            RelayError::Queue(e) => e.kind(),
        }
    }
}

/// Relays outbox rows of the jobs it has routes for.
#[derive(Debug, Clone)]
pub struct Relay<S> {
    store: S,
    clock: SharedClock,
    routes: Arc<HashMap<&'static str, Route>>,
    token: String,
}

impl<S: Store> Relay<S> {
    /// A relay over `store`, routing each job name to its queue.
    pub fn new(store: S, clock: SharedClock, routes: HashMap<&'static str, Route>) -> Self {
        Relay {
            store,
            clock,
            routes: Arc::new(routes),
            token: ulid::Ulid::generate().to_string(),
        }
    }

    /// One pass: claims pending rows, pushes each, marks it relayed. Returns the rows relayed.
    pub async fn relay_once(&self) -> Result<usize, RelayError> {
        let now = self.clock.now();
        let claim = OutboxClaim {
            token: &self.token,
            now_ms: now.timestamp_millis(),
            until_ms: now.timestamp_millis() + RELAY_LEASE.as_millis() as i64,
            rows: RELAY_ROWS_MAX,
        };
        let mut tx = self.store.begin().await?;
        let rows = tx.claim_outbox(&claim).await?;
        if rows.is_empty() {
            return Ok(0);
        }
        // PostgreSQL: the row locks are the claim, held across the push. SQLite: the lease is
        // the claim, and must be committed before apalis writes through another connection.
        let held = if S::OUTBOX_CLAIM_LOCKS_ROWS {
            Some(tx)
        } else {
            tx.commit().await?;
            None
        };
        let mut pushed = Vec::with_capacity(rows.len());
        for row in &rows {
            if self.push(row).await? {
                pushed.push(row.outbox_id);
            }
        }
        let mut tx = match held {
            Some(tx) => tx,
            None => self.store.begin().await?,
        };
        let at = self.clock.now();
        for id in &pushed {
            tx.mark_relayed(*id, at).await?;
        }
        tx.commit().await?;
        Ok(pushed.len())
    }

    /// Pushes one row; `false` for a job this process has no route for (a newer version's),
    /// which stays in the outbox for a relay that knows it.
    async fn push(&self, row: &OutboxRow) -> Result<bool, RelayError> {
        let Some(route) = self.routes.get(row.job.as_str()) else {
            tracing::warn!(outbox_id = row.outbox_id, job = %row.job, "no route for this job; left in the outbox");
            return Ok(false);
        };
        let payload: serde_json::Value = serde_json::from_str(&row.payload).map_err(|_| {
            StoreError::Corrupt(format!("outbox row {} holds no JSON", row.outbox_id))
        })?;
        let pool = self.store.db_pool();
        queue::push(&pool, route, payload, format!("outbox:{}", row.outbox_id)).await?;
        tracing::debug!(outbox_id = row.outbox_id, job = %row.job, queue = %route.queue, "relayed");
        Ok(true)
    }

    /// Relays until the task is dropped, logging failed passes.
    pub async fn run(self) {
        loop {
            match self.relay_once().await {
                Ok(n) if n == RELAY_ROWS_MAX as usize => continue,
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(code = error.code(), %error, "outbox relay pass failed")
                }
            }
            tokio::time::sleep(RELAY_INTERVAL).await;
        }
    }

    /// Rows that wait to be relayed.
    pub async fn pending(&self) -> Result<i64, StoreError> {
        self.store.read().await?.outbox_pending().await
    }
}
