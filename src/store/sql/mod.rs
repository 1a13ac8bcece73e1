//! The shared SQL: every statement and repository step written once, with `$N` placeholders.
//!
//! This module is mounted twice, by `store/sqlite.rs` and `store/postgres.rs`, each over its
//! own concrete `Db`: one source, compiled once per backend with concrete types, so no bound
//! lists and no macros wrap the bodies. Where a statement cannot be portable, it calls the
//! backend's item of [`crate::store::Backend`]. Shared SQL never holds PostgreSQL- or
//! SQLite-only syntax (`::` casts, `ANY(`, `now()`, `?` placeholders, `INSERT OR …`); a test
//! scans these files for it.

mod api_keys;
mod audit;
mod batch;
mod card;
mod expiry;
mod idempotency;
mod keys;
mod ledger;
mod outbox;
mod pos;
mod redeem;
mod retailer;
mod schedule;
mod settlement;
mod tradein;
mod web;

use std::sync::Arc;

use super::Db;
use crate::store::{
    Backend, DbPool, JobCounts, PoolUse, SqlStore, SqlTx, Store, StoreError, StoreResult, Tx,
};

impl Store for SqlStore<Db> {
    type Tx = SqlTx<Db>;

    const OUTBOX_CLAIM_LOCKS_ROWS: bool = <Db as Backend>::OUTBOX_CLAIM_LOCKS_ROWS;
    const ONE_WRITER: bool = <Db as Backend>::WRITER_QUEUE.is_some();

    async fn connect(url: &str) -> StoreResult<Self> {
        Ok(SqlStore {
            pool: <Db as Backend>::connect(url).await?,
            writers: Default::default(),
            unit_deadline: crate::store::UNIT_OF_WORK_DEADLINE,
        })
    }

    async fn migrate(&self) -> StoreResult<()> {
        for migrator in <Db as Backend>::migrators() {
            migrator.run(&self.pool).await?;
        }
        Ok(())
    }

    async fn check_schema(&self) -> StoreResult<()> {
        let [ours, _] = <Db as Backend>::migrators();
        let wanted: Vec<i64> = ours.iter().map(|m| m.version).collect();
        let applied = match sqlx::query_scalar::<Db, i64>(<Db as Backend>::APPLIED_MIGRATIONS)
            .fetch_all(&self.pool)
            .await
        {
            Ok(applied) => applied,
            // No history table: nothing was ever migrated here.
            Err(sqlx::Error::Database(_)) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        if applied == wanted {
            Ok(())
        } else if applied.iter().all(|v| wanted.contains(v)) {
            Err(StoreError::SchemaBehind)
        } else {
            Err(StoreError::SchemaAhead)
        }
    }

    async fn begin(&self) -> StoreResult<SqlTx<Db>> {
        self.begin_as(<Db as Backend>::BEGIN_WRITE).await
    }

    async fn begin_unflushed(&self) -> StoreResult<SqlTx<Db>> {
        self.begin_as(<Db as Backend>::BEGIN_UNFLUSHED).await
    }

    async fn read(&self) -> StoreResult<SqlTx<Db>> {
        Ok(SqlTx {
            tx: self.pool.begin_with(<Db as Backend>::BEGIN_READ).await?,
            turn: None,
            deadline: None,
        })
    }

    fn db_pool(&self) -> DbPool {
        <Db as Backend>::db_pool(&self.pool)
    }

    fn pool_use(&self) -> PoolUse {
        // `size` counts the idle too; read after it, `idle` can only be the smaller.
        let open = self.pool.size();
        let idle = u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX);
        PoolUse {
            in_use: open.saturating_sub(idle),
            idle: idle.min(open),
            max: self.pool.options().get_max_connections(),
        }
    }

    async fn job_counts(&self) -> StoreResult<JobCounts> {
        let outbox = sqlx::query_as::<Db, (String, i64)>(
            "SELECT job, count(*) FROM outbox WHERE relayed_at IS NULL GROUP BY job ORDER BY job",
        )
        .fetch_all(&self.pool)
        .await?;
        let tasks = sqlx::query_as::<Db, (String, String, i64)>(<Db as Backend>::TASK_COUNTS)
            .fetch_all(&self.pool)
            .await?;
        Ok(JobCounts { outbox, tasks })
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

impl SqlStore<Db> {
    /// The same store, rolling back write transactions that outlast `deadline` instead of
    /// [`crate::store::UNIT_OF_WORK_DEADLINE`]: for tests of the deadline itself.
    pub fn with_unit_deadline(mut self, deadline: std::time::Duration) -> Self {
        self.unit_deadline = deadline;
        self
    }

    /// A write transaction opened by `begin`, after this process's earlier writers on a
    /// backend with one writer at a time.
    async fn begin_as(&self, begin: &'static str) -> StoreResult<SqlTx<Db>> {
        // From the moment it is asked for: a service may read the clock before it begins.
        let deadline = tokio::time::Instant::now() + self.unit_deadline;
        let turn = match <Db as Backend>::WRITER_QUEUE {
            Some(wait) => Some(
                tokio::time::timeout(wait, Arc::clone(&self.writers).lock_owned())
                    .await
                    .map_err(|_| StoreError::from(sqlx::Error::PoolTimedOut))?,
            ),
            None => None,
        };
        Ok(SqlTx {
            tx: self.pool.begin_with(begin).await?,
            turn,
            deadline: Some(deadline),
        })
    }
}

impl Tx for SqlTx<Db> {
    async fn commit(self) -> StoreResult<()> {
        let SqlTx { tx, turn, deadline } = self;
        if deadline.is_some_and(|d| tokio::time::Instant::now() > d) {
            tracing::warn!("a unit of work outlasted its deadline and was rolled back");
            // Dropping the transaction rolls it back.
            return Err(StoreError::Deadline);
        }
        let committed = tx.commit().await.map_err(StoreError::from);
        // The next writer's turn only once the database's write lock is free.
        drop(turn);
        committed
    }
}
