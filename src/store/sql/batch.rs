//! Batches and the serial counter. Every state change is a guarded `UPDATE`: the guard is the
//! claim (token, progress, state) the caller holds, and a miss comes back as `false`.

use chrono::{DateTime, Utc};

use super::Db;
use crate::domain::{Batch, BatchId, BatchState, PageRows};
use crate::store::rows::{BatchRow, all, int, value_columns};
use crate::store::{BatchRepo, NewBatch, SqlTx, StoreResult};

impl BatchRepo for SqlTx<Db> {
    async fn reserve_serials(&mut self, count: u64) -> StoreResult<u64> {
        let first = sqlx::query_scalar::<Db, i64>(
            "UPDATE serial_counter SET next_sequence = next_sequence + $1 \
             RETURNING next_sequence - $1",
        )
        .bind(int(count)?)
        .fetch_one(&mut *self.tx)
        .await?;
        crate::store::rows::count(first, "serial counter")
    }

    async fn insert_batch(&mut self, new: &NewBatch<'_>) -> StoreResult<BatchId> {
        let (value, min, max) = value_columns(new.value);
        let id = sqlx::query_scalar::<Db, i64>(
            "INSERT INTO batch (retailer_id, card_count, currency, value_minor, min_minor, \
             max_minor, region, expires_at, first_sequence, lookup_key_id, state, requested_by, \
             requested_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'requested', $11, $12) \
             RETURNING batch_id",
        )
        .bind(new.retailer_id.0)
        .bind(int(new.count)?)
        .bind(new.value.currency().code())
        .bind(value)
        .bind(min)
        .bind(max)
        .bind(new.region.as_str())
        .bind(new.expires_at)
        .bind(int(new.first_sequence)?)
        .bind(new.lookup_key_id.stored())
        .bind(new.requested_by.as_str())
        .bind(new.requested_at)
        .fetch_one(&mut *self.tx)
        .await?;
        Ok(BatchId(id))
    }

    async fn batch(&mut self, id: BatchId) -> StoreResult<Option<Batch>> {
        sqlx::query_as::<Db, BatchRow>("SELECT * FROM batch WHERE batch_id = $1")
            .bind(id.0)
            .fetch_optional(&mut *self.tx)
            .await?
            .map(Batch::try_from)
            .transpose()
    }

    async fn batches(&mut self, rows: PageRows) -> StoreResult<Vec<Batch>> {
        all(
            sqlx::query_as::<Db, BatchRow>("SELECT * FROM batch ORDER BY batch_id DESC LIMIT $1")
                .bind(i64::from(rows.get()))
                .fetch_all(&mut *self.tx)
                .await?,
        )
    }

    async fn claim_batch(
        &mut self,
        id: BatchId,
        token: &str,
        state: BatchState,
    ) -> StoreResult<bool> {
        let claimed = sqlx::query::<Db>(
            "UPDATE batch SET generation_token = $1, state = $2 \
             WHERE batch_id = $3 AND state IN ('requested', 'generating')",
        )
        .bind(token)
        .bind(state.as_str())
        .bind(id.0)
        .execute(&mut *self.tx)
        .await?
        .rows_affected();
        Ok(claimed == 1)
    }

    async fn advance_batch(
        &mut self,
        id: BatchId,
        token: &str,
        from: u64,
        count: u64,
    ) -> StoreResult<bool> {
        let advanced = sqlx::query::<Db>(
            "UPDATE batch SET generated_count = generated_count + $1 \
             WHERE batch_id = $2 AND generation_token = $3 AND generated_count = $4 \
             AND state = 'generating'",
        )
        .bind(int(count)?)
        .bind(id.0)
        .bind(token)
        .bind(int(from)?)
        .execute(&mut *self.tx)
        .await?
        .rows_affected();
        Ok(advanced == 1)
    }

    async fn record_chunk(
        &mut self,
        id: BatchId,
        collisions: u64,
        export_bytes: u64,
    ) -> StoreResult<()> {
        sqlx::query::<Db>(
            "UPDATE batch SET collisions = collisions + $1, export_bytes = $2 WHERE batch_id = $3",
        )
        .bind(int(collisions)?)
        .bind(int(export_bytes)?)
        .bind(id.0)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn complete_batch(
        &mut self,
        id: BatchId,
        token: &str,
        export_mac: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let done = sqlx::query::<Db>(
            "UPDATE batch SET state = 'completed', export_mac = $1, completed_at = $2 \
             WHERE batch_id = $3 AND generation_token = $4 AND generated_count = card_count \
             AND state = 'generating'",
        )
        .bind(export_mac)
        .bind(at)
        .bind(id.0)
        .bind(token)
        .execute(&mut *self.tx)
        .await?
        .rows_affected();
        Ok(done == 1)
    }

    async fn set_export_location(&mut self, id: BatchId, location: &str) -> StoreResult<()> {
        sqlx::query::<Db>("UPDATE batch SET export_location = $1 WHERE batch_id = $2")
            .bind(location)
            .bind(id.0)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn fail_batch(&mut self, id: BatchId, token: &str, reason: &str) -> StoreResult<bool> {
        let failed = sqlx::query::<Db>(
            "UPDATE batch SET state = 'failed', failure = $1, generation_token = NULL \
             WHERE batch_id = $2 AND generation_token = $3 AND state = 'generating'",
        )
        .bind(reason)
        .bind(id.0)
        .bind(token)
        .execute(&mut *self.tx)
        .await?
        .rows_affected();
        Ok(failed == 1)
    }

    async fn reset_batch(&mut self, id: BatchId) -> StoreResult<bool> {
        let reset = sqlx::query::<Db>(
            "UPDATE batch SET state = 'requested', generated_count = 0, collisions = 0, \
             export_bytes = 0, export_mac = NULL, export_location = NULL, failure = NULL, \
             generation_token = NULL WHERE batch_id = $1 AND state = 'failed'",
        )
        .bind(id.0)
        .execute(&mut *self.tx)
        .await?
        .rows_affected();
        Ok(reset == 1)
    }
}
