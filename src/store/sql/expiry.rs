//! Expiry. A card moves to expired in one guarded statement (`state = active` rechecked on the
//! row), so a card a concurrent redemption or a second run took is skipped, never expired twice.

use sqlx::QueryBuilder;

use super::Db;
use crate::domain::{CardState, Serial};
use crate::store::expiry::{ExpiredCard, ExpiryGroup, ExpiryRepo};
use crate::store::rows::{int, serial};
use crate::store::{SqlTx, StoreResult};

impl ExpiryRepo for SqlTx<Db> {
    async fn expire_due_cards(&mut self, as_of_ms: i64, limit: i64) -> StoreResult<Vec<Serial>> {
        // `state = 1` written out in the inner query so both databases use the partial index
        // on funds_expire_ms.
        let rows = sqlx::query_scalar::<Db, i64>(
            "UPDATE card SET state = $1 WHERE serial IN \
             (SELECT serial FROM card WHERE state = 1 AND funds_expire_ms <= $2 \
              ORDER BY funds_expire_ms, serial LIMIT $3) \
             AND state = $4 RETURNING serial",
        )
        .bind(CardState::Expired.code())
        .bind(as_of_ms)
        .bind(limit)
        .bind(CardState::Active.code())
        .fetch_all(&mut *self.tx)
        .await?;
        let mut moved = rows
            .into_iter()
            .map(serial)
            .collect::<StoreResult<Vec<_>>>()?;
        // RETURNING promises no order.
        moved.sort_unstable();
        Ok(moved)
    }

    async fn expired_cards(&mut self, serials: &[Serial]) -> StoreResult<Vec<ExpiredCard>> {
        if serials.is_empty() {
            return Ok(Vec::new());
        }
        let mut query = QueryBuilder::<Db>::new(
            "SELECT serial, value_minor, currency, jurisdiction, purchaser_state \
             FROM card_activation WHERE serial IN (",
        );
        let mut list = query.separated(", ");
        for s in serials {
            list.push_bind(int(s.sequence())?);
        }
        query.push(") ORDER BY serial");
        // Not kept prepared: its text changes with the chunk's size (see `insert_transfer`).
        query
            .build_query_as::<(i64, i64, String, String, Option<String>)>()
            .persistent(false)
            .fetch_all(&mut *self.tx)
            .await?
            .into_iter()
            .map(
                |(s, value_minor, currency, jurisdiction, purchaser_state)| {
                    Ok(ExpiredCard {
                        serial: serial(s)?,
                        value_minor,
                        currency,
                        jurisdiction,
                        purchaser_state,
                    })
                },
            )
            .collect()
    }

    async fn expiry_groups(
        &mut self,
        after_ms: Option<i64>,
        until_ms: i64,
    ) -> StoreResult<Vec<ExpiryGroup>> {
        let rows = sqlx::query_as::<Db, (i64, String, Option<String>, String, i64, i64, i64)>(
            "SELECT c.batch_id, a.jurisdiction, a.purchaser_state, a.currency, COUNT(*), \
             CAST(SUM(a.value_minor) AS BIGINT), MIN(c.funds_expire_ms) \
             FROM card c JOIN card_activation a ON a.serial = c.serial \
             WHERE c.state = 1 AND c.funds_expire_ms <= $1 \
             AND ($2 IS NULL OR c.funds_expire_ms > $2) \
             GROUP BY c.batch_id, a.jurisdiction, a.purchaser_state, a.currency \
             ORDER BY c.batch_id, a.jurisdiction, a.purchaser_state, a.currency",
        )
        .bind(until_ms)
        .bind(after_ms)
        .fetch_all(&mut *self.tx)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(
                    batch_id,
                    jurisdiction,
                    purchaser_state,
                    currency,
                    cards,
                    value_minor,
                    first_ms,
                )| {
                    ExpiryGroup {
                        batch_id,
                        jurisdiction,
                        purchaser_state,
                        currency,
                        cards,
                        value_minor,
                        first_ms,
                    }
                },
            )
            .collect())
    }
}
