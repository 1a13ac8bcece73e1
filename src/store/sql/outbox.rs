//! The outbox. How a relay claims rows is the backend's; the rest is shared.

use chrono::{DateTime, Utc};

use super::Db;
use crate::store::{Backend, OutboxClaim, OutboxJob, OutboxRepo, OutboxRow, SqlTx, StoreResult};

impl OutboxRepo for SqlTx<Db> {
    async fn insert_outbox(&mut self, job: &OutboxJob, at: DateTime<Utc>) -> StoreResult<i64> {
        Ok(sqlx::query_scalar::<Db, i64>(
            "INSERT INTO outbox (job, payload, created_at) VALUES ($1, $2, $3) \
             RETURNING outbox_id",
        )
        .bind(job.job)
        .bind(&job.payload)
        .bind(at)
        .fetch_one(&mut *self.tx)
        .await?)
    }

    async fn claim_outbox(&mut self, claim: &OutboxClaim<'_>) -> StoreResult<Vec<OutboxRow>> {
        <Db as Backend>::claim_outbox(&mut self.tx, claim).await
    }

    async fn mark_relayed(&mut self, outbox_id: i64, at: DateTime<Utc>) -> StoreResult<()> {
        sqlx::query::<Db>("UPDATE outbox SET relayed_at = $1 WHERE outbox_id = $2")
            .bind(at)
            .bind(outbox_id)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn outbox_pending(&mut self) -> StoreResult<i64> {
        Ok(
            sqlx::query_scalar::<Db, i64>("SELECT count(*) FROM outbox WHERE relayed_at IS NULL")
                .fetch_one(&mut *self.tx)
                .await?,
        )
    }
}
