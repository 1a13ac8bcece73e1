//! Stores, POS requests and card lifecycles. Every change of a card is one guarded `UPDATE`
//! whose condition names the state it must be in; a miss comes back as `false` or as a card
//! missing from the returned list, and the service reads why.

use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;

use super::Db;
use crate::domain::{
    Batch, CardState, PageRows, RetailStore, RetailerId, Serial, SerialRange, StoreCode, TransferId,
};
use crate::store::pos::{ActivationRow, CardEventRow, CardStatus, PosRepo, PosRequestRow};
use crate::store::rows::{
    ActivationDbRow, BatchRow, CardEventDbRow, CardStatusRow, PosRequestDbRow, StoreRow, all, int,
    serial,
};
use crate::store::{SqlTx, StoreResult};

fn seq(serial: Serial) -> StoreResult<i64> {
    int(serial.sequence())
}

impl PosRepo for SqlTx<Db> {
    async fn insert_store(&mut self, store: &RetailStore) -> StoreResult<bool> {
        let done = sqlx::query::<Db>(
            "INSERT INTO retail_store (retailer_id, store_code, jurisdiction, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(store.retailer_id.0)
        .bind(store.code.as_str())
        .bind(store.jurisdiction.to_string())
        .bind(store.created_at)
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn store(
        &mut self,
        retailer: RetailerId,
        code: &StoreCode,
    ) -> StoreResult<Option<RetailStore>> {
        sqlx::query_as::<Db, StoreRow>(
            "SELECT * FROM retail_store WHERE retailer_id = $1 AND store_code = $2",
        )
        .bind(retailer.0)
        .bind(code.as_str())
        .fetch_optional(&mut *self.tx)
        .await?
        .map(RetailStore::try_from)
        .transpose()
    }

    async fn stores(
        &mut self,
        retailer: Option<RetailerId>,
        rows: PageRows,
    ) -> StoreResult<Vec<RetailStore>> {
        all(sqlx::query_as::<Db, StoreRow>(
            "SELECT * FROM retail_store WHERE $1 = 0 OR retailer_id = $1 \
             ORDER BY retailer_id, store_code LIMIT $2",
        )
        .bind(retailer.map_or(0, |r| r.0))
        .bind(i64::from(rows.get()))
        .fetch_all(&mut *self.tx)
        .await?)
    }

    async fn batch_of(&mut self, serial: Serial) -> StoreResult<Option<Batch>> {
        // Batches' serial ranges never overlap, so the one starting nearest before holds it
        // if any does: an index probe, not a scan of every batch.
        let batch = sqlx::query_as::<Db, BatchRow>(
            "SELECT * FROM batch WHERE first_sequence <= $1 \
             ORDER BY first_sequence DESC LIMIT 1",
        )
        .bind(seq(serial)?)
        .fetch_optional(&mut *self.tx)
        .await?
        .map(Batch::try_from)
        .transpose()?;
        Ok(batch.filter(|b| serial.sequence() < b.first_serial.sequence() + b.count))
    }

    async fn claim_request(&mut self, r: &PosRequestRow) -> StoreResult<Option<i64>> {
        Ok(sqlx::query_scalar::<Db, i64>(
            "INSERT INTO pos_request (retailer_id, store_code, terminal, pos_txn, first_serial, \
             last_serial, operation, value_minor, pos_time_ms, result, actor, recorded_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT DO NOTHING RETURNING request_id",
        )
        .bind(r.retailer_id.0)
        .bind(&r.store_code)
        .bind(&r.terminal)
        .bind(&r.pos_txn)
        .bind(seq(r.range.first)?)
        .bind(seq(r.range.last)?)
        .bind(&r.operation)
        .bind(r.value_minor)
        .bind(r.pos_time_ms)
        .bind(&r.result)
        .bind(&r.actor)
        .bind(r.recorded_at)
        .fetch_optional(&mut *self.tx)
        .await?)
    }

    async fn request_by_key(&mut self, r: &PosRequestRow) -> StoreResult<Option<PosRequestRow>> {
        sqlx::query_as::<Db, PosRequestDbRow>(
            "SELECT * FROM pos_request WHERE retailer_id = $1 AND store_code = $2 \
             AND terminal = $3 AND pos_txn = $4 AND first_serial = $5 AND last_serial = $6",
        )
        .bind(r.retailer_id.0)
        .bind(&r.store_code)
        .bind(&r.terminal)
        .bind(&r.pos_txn)
        .bind(seq(r.range.first)?)
        .bind(seq(r.range.last)?)
        .fetch_optional(&mut *self.tx)
        .await?
        .map(PosRequestRow::try_from)
        .transpose()
    }

    async fn request(&mut self, id: i64) -> StoreResult<Option<PosRequestRow>> {
        sqlx::query_as::<Db, PosRequestDbRow>("SELECT * FROM pos_request WHERE request_id = $1")
            .bind(id)
            .fetch_optional(&mut *self.tx)
            .await?
            .map(PosRequestRow::try_from)
            .transpose()
    }

    async fn set_request_result(&mut self, id: i64, result: &str) -> StoreResult<()> {
        sqlx::query::<Db>("UPDATE pos_request SET result = $1 WHERE request_id = $2")
            .bind(result)
            .bind(id)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn transition_range(
        &mut self,
        range: SerialRange,
        from: CardState,
        to: CardState,
        exposed_after_ms: i64,
        funds_expire: Option<DateTime<Utc>>,
    ) -> StoreResult<Vec<(Serial, Option<i64>)>> {
        let rows = sqlx::query_as::<Db, (i64, Option<i64>)>(
            "UPDATE card SET state = $1, funds_expire_ms = $6 \
             WHERE serial BETWEEN $2 AND $3 AND state = $4 \
             AND blocked_reason IS NULL AND (exposed_ms IS NULL OR exposed_ms > $5) \
             RETURNING serial, exposed_ms",
        )
        .bind(to.code())
        .bind(seq(range.first)?)
        .bind(seq(range.last)?)
        .bind(from.code())
        .bind(exposed_after_ms)
        .bind(funds_expire.map(|t| t.timestamp_millis()))
        .fetch_all(&mut *self.tx)
        .await?;
        let mut moved = rows
            .into_iter()
            .map(|(s, exposed)| Ok((serial(s)?, exposed)))
            .collect::<StoreResult<Vec<_>>>()?;
        // RETURNING promises no order.
        moved.sort_unstable();
        Ok(moved)
    }

    async fn transition(
        &mut self,
        serial: Serial,
        from: CardState,
        to: CardState,
    ) -> StoreResult<bool> {
        let done = sqlx::query::<Db>(
            "UPDATE card SET state = $1 WHERE serial = $2 AND state = $3 \
             AND blocked_reason IS NULL",
        )
        .bind(to.code())
        .bind(seq(serial)?)
        .bind(from.code())
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn card_statuses(&mut self, range: SerialRange) -> StoreResult<Vec<CardStatus>> {
        all(sqlx::query_as::<Db, CardStatusRow>(
            "SELECT serial, batch_id, state, blocked_reason, exposed_ms FROM card \
             WHERE serial BETWEEN $1 AND $2 ORDER BY serial",
        )
        .bind(seq(range.first)?)
        .bind(seq(range.last)?)
        .fetch_all(&mut *self.tx)
        .await?)
    }

    async fn block_card(
        &mut self,
        serial: Serial,
        reason: &str,
        states: [CardState; 2],
    ) -> StoreResult<bool> {
        let done = sqlx::query::<Db>(
            "UPDATE card SET blocked_reason = $1 WHERE serial = $2 \
             AND blocked_reason IS NULL AND state IN ($3, $4)",
        )
        .bind(reason)
        .bind(seq(serial)?)
        .bind(states[0].code())
        .bind(states[1].code())
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn unblock_card(&mut self, serial: Serial) -> StoreResult<bool> {
        let done = sqlx::query::<Db>(
            "UPDATE card SET blocked_reason = NULL \
             WHERE serial = $1 AND blocked_reason IS NOT NULL",
        )
        .bind(seq(serial)?)
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn expose_card(&mut self, serial: Serial, at_ms: i64) -> StoreResult<bool> {
        let done = sqlx::query::<Db>(
            "UPDATE card SET exposed_ms = $1 WHERE serial = $2 AND exposed_ms IS NULL",
        )
        .bind(at_ms)
        .bind(seq(serial)?)
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn clear_exposure(&mut self, serial: Serial) -> StoreResult<bool> {
        let done = sqlx::query::<Db>(
            "UPDATE card SET exposed_ms = NULL WHERE serial = $1 AND exposed_ms IS NOT NULL",
        )
        .bind(seq(serial)?)
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn insert_activations(&mut self, rows: &[ActivationRow]) -> StoreResult<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut insert = QueryBuilder::<Db>::new(
            "INSERT INTO card_activation (serial, request_id, value_minor, commission_minor, \
             currency, jurisdiction, purchaser_state, activated_at, funds_expire_at, transfer_id, \
             review) ",
        );
        let mut values = Vec::with_capacity(rows.len());
        for row in rows {
            values.push((seq(row.serial)?, row));
        }
        insert.push_values(values, |mut b, (serial, row)| {
            b.push_bind(serial)
                .push_bind(row.request_id)
                .push_bind(row.value_minor)
                .push_bind(row.commission_minor)
                .push_bind(row.currency.clone())
                .push_bind(row.jurisdiction.clone())
                .push_bind(row.purchaser_state.clone())
                .push_bind(row.activated_at)
                .push_bind(row.funds_expire_at)
                .push_bind(row.transfer_id.0)
                .push_bind(row.review.clone());
        });
        // Kept prepared for the few-card sales that repeat; see `insert_transfer`.
        insert
            .build()
            .persistent(rows.len() <= 8)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn activation(&mut self, serial: Serial) -> StoreResult<Option<ActivationRow>> {
        sqlx::query_as::<Db, ActivationDbRow>(
            "SELECT serial, request_id, value_minor, commission_minor, currency, jurisdiction, \
             purchaser_state, activated_at, funds_expire_at, transfer_id, review, void_request_id, \
             void_transfer_id FROM card_activation WHERE serial = $1",
        )
        .bind(seq(serial)?)
        .fetch_optional(&mut *self.tx)
        .await?
        .map(ActivationRow::try_from)
        .transpose()
    }

    async fn record_void(
        &mut self,
        serial: Serial,
        request_id: i64,
        transfer: TransferId,
    ) -> StoreResult<()> {
        sqlx::query::<Db>(
            "UPDATE card_activation SET void_request_id = $1, void_transfer_id = $2 \
             WHERE serial = $3",
        )
        .bind(request_id)
        .bind(transfer.0)
        .bind(seq(serial)?)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn insert_card_events(&mut self, events: &[CardEventRow]) -> StoreResult<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut insert = QueryBuilder::<Db>::new(
            "INSERT INTO card_event (serial, action, reason, request_id, actor, at) ",
        );
        let mut values = Vec::with_capacity(events.len());
        for event in events {
            values.push((seq(event.serial)?, event));
        }
        insert.push_values(values, |mut b, (serial, event)| {
            b.push_bind(serial)
                .push_bind(event.action.as_str())
                .push_bind(event.reason.clone())
                .push_bind(event.request_id)
                .push_bind(event.actor.clone())
                .push_bind(event.at);
        });
        insert
            .build()
            .persistent(events.len() <= 8)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn card_events(
        &mut self,
        serial: Serial,
        rows: PageRows,
    ) -> StoreResult<Vec<CardEventRow>> {
        all(sqlx::query_as::<Db, CardEventDbRow>(
            "SELECT serial, action, reason, request_id, actor, at FROM card_event \
             WHERE serial = $1 ORDER BY event_id LIMIT $2",
        )
        .bind(seq(serial)?)
        .bind(i64::from(rows.get()))
        .fetch_all(&mut *self.tx)
        .await?)
    }
}
