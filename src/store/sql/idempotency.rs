//! Idempotency records. Each change is one statement guarded by the claim's token, so two
//! requests racing for one key never both win.

use super::Db;
use crate::store::idempotency::{IdemRecord, IdempotencyRepo, NewIdemClaim, StoredAnswer};
use crate::store::rows::IdemRecordRow;
use crate::store::{SqlTx, StoreResult};

/// The state of a record whose request still runs.
const IN_FLIGHT: &str = "in_flight";
/// The state of a record holding its answer.
const DONE: &str = "done";

impl IdempotencyRepo for SqlTx<Db> {
    async fn insert_idem_claim(&mut self, new: &NewIdemClaim<'_>) -> StoreResult<bool> {
        let done = sqlx::query::<Db>(
            "INSERT INTO idempotency_record (client_key_id, idem_key, mac_key_id, fingerprint, \
             state, claim_token, created_ms, started_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7) ON CONFLICT DO NOTHING",
        )
        .bind(new.client_key_id)
        .bind(new.idem_key)
        .bind(new.mac_key_id.stored())
        .bind(&new.fingerprint.0[..])
        .bind(IN_FLIGHT)
        .bind(new.claim_token)
        .bind(new.now_ms)
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn idem_record(
        &mut self,
        client_key_id: &str,
        idem_key: &str,
    ) -> StoreResult<Option<IdemRecord>> {
        sqlx::query_as::<Db, IdemRecordRow>(
            "SELECT mac_key_id, fingerprint, state, claim_token, status, body, created_ms, \
             started_ms FROM idempotency_record WHERE client_key_id = $1 AND idem_key = $2",
        )
        .bind(client_key_id)
        .bind(idem_key)
        .fetch_optional(&mut *self.tx)
        .await?
        .map(IdemRecord::try_from)
        .transpose()
    }

    async fn take_over_idem_claim(
        &mut self,
        client_key_id: &str,
        idem_key: &str,
        old_token: &str,
        new_token: &str,
        now_ms: i64,
    ) -> StoreResult<bool> {
        let done = sqlx::query::<Db>(
            "UPDATE idempotency_record SET claim_token = $4, started_ms = $5 \
             WHERE client_key_id = $1 AND idem_key = $2 AND claim_token = $3 AND state = $6",
        )
        .bind(client_key_id)
        .bind(idem_key)
        .bind(old_token)
        .bind(new_token)
        .bind(now_ms)
        .bind(IN_FLIGHT)
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn complete_idem_claim(
        &mut self,
        client_key_id: &str,
        idem_key: &str,
        token: &str,
        answer: &StoredAnswer,
    ) -> StoreResult<bool> {
        let done = sqlx::query::<Db>(
            "UPDATE idempotency_record SET state = $4, status = $5, body = $6 \
             WHERE client_key_id = $1 AND idem_key = $2 AND claim_token = $3 AND state = $7",
        )
        .bind(client_key_id)
        .bind(idem_key)
        .bind(token)
        .bind(DONE)
        .bind(i32::from(answer.status))
        .bind(&answer.body)
        .bind(IN_FLIGHT)
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn release_idem_claim(
        &mut self,
        client_key_id: &str,
        idem_key: &str,
        token: &str,
    ) -> StoreResult<bool> {
        let done = sqlx::query::<Db>(
            "DELETE FROM idempotency_record \
             WHERE client_key_id = $1 AND idem_key = $2 AND claim_token = $3 AND state = $4",
        )
        .bind(client_key_id)
        .bind(idem_key)
        .bind(token)
        .bind(IN_FLIGHT)
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn purge_idem_records(&mut self, before_ms: i64, rows: u32) -> StoreResult<u64> {
        let done = sqlx::query::<Db>(
            "DELETE FROM idempotency_record WHERE record_id IN (SELECT record_id \
             FROM idempotency_record WHERE created_ms < $1 ORDER BY created_ms LIMIT $2)",
        )
        .bind(before_ms)
        .bind(i64::from(rows))
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected())
    }
}
