//! The ledger's rows. Balances move only by conditional updates, so a balance never goes
//! negative whatever runs beside; which transfers a change posts is the service's.

use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;

use super::Db;
use crate::domain::{
    Account, AccountId, CardState, HistoryLine, Money, NewAccount, PageRows, Posting, TransferId,
    TransferKind,
};
use crate::store::ledger::{
    ALL_CARDS, AdjustmentRow, AdjustmentState, Discrepancy, LedgerRepo, OrderRow, RefundRow,
    SystemBalance,
};
use crate::store::rows::{
    AccountRow, AdjustmentDbRow, HistoryRow, OrderDbRow, RefundDbRow, all, int, serial,
};
use crate::store::settlement::book;
use crate::store::{SqlTx, StoreError, StoreResult};

/// The most legs a transfer's entry insert has for its statement to stay prepared: every
/// two-leg and three-leg transfer, and a few cards at a till.
const PREPARED_LEGS_MAX: usize = 8;

impl LedgerRepo for SqlTx<Db> {
    async fn insert_account(
        &mut self,
        new: &NewAccount,
        at: DateTime<Utc>,
    ) -> StoreResult<Option<AccountId>> {
        let id = sqlx::query_scalar::<Db, i64>(
            "INSERT INTO account (region, currency, external_id, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING account_id",
        )
        .bind(new.region.as_str())
        .bind(new.currency.code())
        .bind(new.external_id.as_ref().map(|x| x.as_str()))
        .bind(at)
        .fetch_optional(&mut *self.tx)
        .await?;
        Ok(id.map(AccountId))
    }

    async fn account(&mut self, id: AccountId) -> StoreResult<Option<Account>> {
        sqlx::query_as::<Db, AccountRow>("SELECT * FROM account WHERE account_id = $1")
            .bind(id.0)
            .fetch_optional(&mut *self.tx)
            .await?
            .map(Account::try_from)
            .transpose()
    }

    async fn set_frozen(&mut self, id: AccountId, reason: Option<&str>) -> StoreResult<bool> {
        let done = sqlx::query::<Db>("UPDATE account SET frozen_reason = $1 WHERE account_id = $2")
            .bind(reason)
            .bind(id.0)
            .execute(&mut *self.tx)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn erase_account(&mut self, id: AccountId, at: DateTime<Utc>) -> StoreResult<bool> {
        let done = sqlx::query::<Db>(
            "UPDATE account SET external_id = NULL, erased_at = $1 WHERE account_id = $2",
        )
        .bind(at)
        .bind(id.0)
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn move_balance(&mut self, id: AccountId, delta: Money) -> StoreResult<Option<i64>> {
        // One statement: the row lock it takes is held to commit, and the condition is
        // evaluated on the row as it is once that lock is had.
        Ok(sqlx::query_scalar::<Db, i64>(
            "UPDATE account SET balance_minor = balance_minor + $1 \
             WHERE account_id = $2 AND currency = $3 AND frozen_reason IS NULL \
             AND balance_minor + $1 >= 0 RETURNING balance_minor",
        )
        .bind(delta.minor())
        .bind(id.0)
        .bind(delta.currency().code())
        .fetch_optional(&mut *self.tx)
        .await?)
    }

    async fn insert_transfer(
        &mut self,
        posting: &Posting,
        balances_after: &[Option<i64>],
        at: DateTime<Utc>,
    ) -> StoreResult<TransferId> {
        let id = sqlx::query_scalar::<Db, i64>(
            "INSERT INTO transfer \
             (kind, currency, reference, effective_at, recorded_at, effective_ms, recorded_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING transfer_id",
        )
        .bind(posting.kind.as_str())
        .bind(posting.currency.code())
        .bind(posting.reference.as_deref())
        .bind(posting.effective_at)
        .bind(at)
        .bind(posting.effective_at.timestamp_millis())
        .bind(at.timestamp_millis())
        .fetch_one(&mut *self.tx)
        .await?;
        debug_assert_eq!(posting.legs.len(), balances_after.len());
        let mut legs = Vec::with_capacity(posting.legs.len());
        for (n, (leg, after)) in posting.legs.iter().zip(balances_after).enumerate() {
            let card = leg.account.card().map(|s| int(s.sequence())).transpose()?;
            let n = i16::try_from(n).map_err(|_| StoreError::corrupt("a transfer's leg count"))?;
            legs.push((n, leg, card, *after));
        }
        let legs_count = legs.len();
        let recorded_ms = at.timestamp_millis();
        let mut insert = QueryBuilder::<Db>::new(
            "INSERT INTO entry (transfer_id, leg, ledger_account, account_id, serial, \
             amount_minor, balance_after, recorded_ms, book) ",
        );
        insert.push_values(legs, |mut row, (n, leg, card, after)| {
            row.push_bind(id)
                .push_bind(n)
                .push_bind(leg.account.key())
                .push_bind(leg.account.customer().map(|a| a.0))
                .push_bind(card)
                .push_bind(leg.amount_minor)
                .push_bind(after)
                .push_bind(recorded_ms)
                .push_bind(book(posting.currency, posting.kind, &leg.account));
        });
        // The text depends on the leg count. Small transfers (a spend, a redemption) repeat
        // their text and keep it prepared; a box's activation or an expiry chunk rarely does, and
        // caching each size would hold megabytes per connection, here and on the server.
        insert
            .build()
            .persistent(legs_count <= PREPARED_LEGS_MAX)
            .execute(&mut *self.tx)
            .await?;
        Ok(TransferId(id))
    }

    async fn balance_after(
        &mut self,
        transfer: TransferId,
        account: AccountId,
    ) -> StoreResult<Option<i64>> {
        Ok(sqlx::query_scalar::<Db, i64>(
            "SELECT balance_after FROM entry WHERE transfer_id = $1 AND account_id = $2",
        )
        .bind(transfer.0)
        .bind(account.0)
        .fetch_optional(&mut *self.tx)
        .await?)
    }

    async fn order(
        &mut self,
        account: AccountId,
        order_ref: &str,
    ) -> StoreResult<Option<OrderRow>> {
        sqlx::query_as::<Db, OrderDbRow>(
            "SELECT o.*, t.currency FROM spend_order o \
             JOIN transfer t ON t.transfer_id = o.transfer_id \
             WHERE o.account_id = $1 AND o.order_ref = $2",
        )
        .bind(account.0)
        .bind(order_ref)
        .fetch_optional(&mut *self.tx)
        .await?
        .map(OrderRow::try_from)
        .transpose()
    }

    async fn insert_order(&mut self, order: &OrderRow) -> StoreResult<bool> {
        let done = sqlx::query::<Db>(
            "INSERT INTO spend_order \
             (account_id, order_ref, service, amount_minor, refundable_minor, transfer_id) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(order.account_id.0)
        .bind(&order.order_ref)
        .bind(&order.service)
        .bind(order.amount.minor())
        .bind(order.refundable_minor)
        .bind(order.transfer_id.0)
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn take_refundable(
        &mut self,
        account: AccountId,
        order_ref: &str,
        amount_minor: i64,
    ) -> StoreResult<Option<i64>> {
        Ok(sqlx::query_scalar::<Db, i64>(
            "UPDATE spend_order SET refundable_minor = refundable_minor - $1 \
             WHERE account_id = $2 AND order_ref = $3 AND refundable_minor >= $1 \
             RETURNING refundable_minor",
        )
        .bind(amount_minor)
        .bind(account.0)
        .bind(order_ref)
        .fetch_optional(&mut *self.tx)
        .await?)
    }

    async fn refund(
        &mut self,
        account: AccountId,
        refund_ref: &str,
    ) -> StoreResult<Option<RefundRow>> {
        sqlx::query_as::<Db, RefundDbRow>(
            "SELECT r.*, t.currency FROM refund r \
             JOIN transfer t ON t.transfer_id = r.transfer_id \
             WHERE r.account_id = $1 AND r.refund_ref = $2",
        )
        .bind(account.0)
        .bind(refund_ref)
        .fetch_optional(&mut *self.tx)
        .await?
        .map(RefundRow::try_from)
        .transpose()
    }

    async fn insert_refund(&mut self, refund: &RefundRow) -> StoreResult<bool> {
        let done = sqlx::query::<Db>(
            "INSERT INTO refund (account_id, refund_ref, order_ref, amount_minor, transfer_id) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(refund.account_id.0)
        .bind(&refund.refund_ref)
        .bind(&refund.order_ref)
        .bind(refund.amount.minor())
        .bind(refund.transfer_id.0)
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn insert_adjustment(&mut self, adjustment: &AdjustmentRow) -> StoreResult<i64> {
        Ok(sqlx::query_scalar::<Db, i64>(
            "INSERT INTO adjustment \
             (account_id, amount_minor, currency, reason, state, requested_by, decided_by, \
              transfer_id, requested_at, decided_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING adjustment_id",
        )
        .bind(adjustment.account_id.0)
        .bind(adjustment.amount.minor())
        .bind(adjustment.amount.currency().code())
        .bind(&adjustment.reason)
        .bind(adjustment.state.as_str())
        .bind(&adjustment.requested_by)
        .bind(adjustment.decided_by.as_deref())
        .bind(adjustment.transfer_id.map(|t| t.0))
        .bind(adjustment.requested_at)
        .bind((adjustment.state != AdjustmentState::Pending).then_some(adjustment.requested_at))
        .fetch_one(&mut *self.tx)
        .await?)
    }

    async fn adjustment(&mut self, id: i64) -> StoreResult<Option<AdjustmentRow>> {
        sqlx::query_as::<Db, AdjustmentDbRow>("SELECT * FROM adjustment WHERE adjustment_id = $1")
            .bind(id)
            .fetch_optional(&mut *self.tx)
            .await?
            .map(AdjustmentRow::try_from)
            .transpose()
    }

    async fn decide_adjustment(
        &mut self,
        id: i64,
        state: AdjustmentState,
        by: &str,
        transfer: Option<TransferId>,
        at: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let done = sqlx::query::<Db>(
            "UPDATE adjustment SET state = $1, decided_by = $2, transfer_id = $3, decided_at = $4 \
             WHERE adjustment_id = $5 AND state = 'pending'",
        )
        .bind(state.as_str())
        .bind(by)
        .bind(transfer.map(|t| t.0))
        .bind(at)
        .bind(id)
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn history(
        &mut self,
        account: AccountId,
        before: Option<TransferId>,
        rows: PageRows,
    ) -> StoreResult<Vec<HistoryLine>> {
        all(sqlx::query_as::<Db, HistoryRow>(
            "SELECT e.transfer_id, t.kind, t.currency, e.amount_minor, e.balance_after, \
             t.reference, t.effective_at, t.recorded_at, p.trade_in_pk, ti.device_model, \
             ti.device_id, p.owed_minor, r.serial AS card_sequence, \
             COALESCE(so.service, ro.service) AS service, \
             COALESCE(so.order_ref, rf.order_ref) AS order_ref \
             FROM entry e JOIN transfer t ON t.transfer_id = e.transfer_id \
             LEFT JOIN trade_in_posting p ON p.transfer_id = e.transfer_id \
             LEFT JOIN trade_in ti ON ti.trade_in_pk = p.trade_in_pk \
             LEFT JOIN redemption r ON r.transfer_id = e.transfer_id \
             LEFT JOIN spend_order so ON so.transfer_id = e.transfer_id \
             LEFT JOIN refund rf ON rf.transfer_id = e.transfer_id \
             LEFT JOIN spend_order ro \
             ON ro.account_id = rf.account_id AND ro.order_ref = rf.order_ref \
             WHERE e.account_id = $1 AND e.transfer_id < $2 \
             ORDER BY e.transfer_id DESC LIMIT $3",
        )
        .bind(account.0)
        .bind(before.map_or(i64::MAX, |t| t.0))
        .bind(i64::from(rows.get()))
        .fetch_all(&mut *self.tx)
        .await?)
    }

    async fn first_discrepancy(&mut self) -> StoreResult<Option<Discrepancy>> {
        // Each query aggregates in the database and returns one row at most: memory stays
        // bounded however many transfers there are.
        let unbalanced = sqlx::query_as::<Db, (i64, i64, i64)>(
            "SELECT t.transfer_id, CAST(COALESCE(SUM(e.amount_minor), 0) AS BIGINT), \
             COUNT(e.transfer_id) \
             FROM transfer t LEFT JOIN entry e ON e.transfer_id = t.transfer_id \
             GROUP BY t.transfer_id \
             HAVING COALESCE(SUM(e.amount_minor), 0) <> 0 OR COUNT(e.transfer_id) < 2 \
             ORDER BY t.transfer_id LIMIT 1",
        )
        .fetch_optional(&mut *self.tx)
        .await?;
        if let Some((transfer_id, sum_minor, entries)) = unbalanced {
            return Ok(Some(Discrepancy::Unbalanced {
                transfer_id: TransferId(transfer_id),
                sum_minor,
                entries,
            }));
        }
        let mismatch = sqlx::query_as::<Db, (i64, i64)>(
            "SELECT e.transfer_id, e.account_id FROM entry e \
             JOIN transfer t ON t.transfer_id = e.transfer_id \
             JOIN account a ON a.account_id = e.account_id \
             WHERE a.currency <> t.currency ORDER BY e.transfer_id LIMIT 1",
        )
        .fetch_optional(&mut *self.tx)
        .await?;
        if let Some((transfer_id, account_id)) = mismatch {
            return Ok(Some(Discrepancy::CurrencyMismatch {
                transfer_id: TransferId(transfer_id),
                account_id: AccountId(account_id),
            }));
        }
        let drift = sqlx::query_as::<Db, (i64, i64, i64)>(
            "SELECT a.account_id, a.balance_minor, CAST(COALESCE(s.summed, 0) AS BIGINT) \
             FROM account a LEFT JOIN \
             (SELECT account_id, SUM(amount_minor) AS summed FROM entry \
              WHERE account_id IS NOT NULL GROUP BY account_id) s \
             ON s.account_id = a.account_id \
             WHERE a.balance_minor <> COALESCE(s.summed, 0) ORDER BY a.account_id LIMIT 1",
        )
        .fetch_optional(&mut *self.tx)
        .await?;
        if let Some((account_id, stored_minor, summed_minor)) = drift {
            return Ok(Some(Discrepancy::BalanceDrift {
                account_id: AccountId(account_id),
                stored_minor,
                summed_minor,
            }));
        }
        let history = sqlx::query_as::<Db, (i64, i64)>(
            "SELECT account_id, transfer_id FROM \
             (SELECT account_id, transfer_id, balance_after, SUM(amount_minor) OVER \
              (PARTITION BY account_id ORDER BY transfer_id ROWS UNBOUNDED PRECEDING) AS running \
              FROM entry WHERE account_id IS NOT NULL) w \
             WHERE running <> balance_after ORDER BY account_id, transfer_id LIMIT 1",
        )
        .fetch_optional(&mut *self.tx)
        .await?;
        if let Some((account_id, transfer_id)) = history {
            return Ok(Some(Discrepancy::HistoryDrift {
                account_id: AccountId(account_id),
                transfer_id: TransferId(transfer_id),
            }));
        }
        let refundable = sqlx::query_as::<Db, (i64, String)>(
            "SELECT o.account_id, o.order_ref FROM spend_order o LEFT JOIN \
             (SELECT account_id, order_ref, SUM(amount_minor) AS refunded FROM refund \
              GROUP BY account_id, order_ref) r \
             ON r.account_id = o.account_id AND r.order_ref = o.order_ref \
             WHERE o.refundable_minor <> o.amount_minor - COALESCE(r.refunded, 0) \
             ORDER BY o.account_id, o.order_ref LIMIT 1",
        )
        .fetch_optional(&mut *self.tx)
        .await?;
        if let Some((account_id, order_ref)) = refundable {
            return Ok(Some(Discrepancy::RefundableDrift {
                account_id: AccountId(account_id),
                order_ref,
            }));
        }
        // A sold card carries its face value while active and nothing in any other state; a
        // card is voided exactly when its activation names a void, redeemed exactly when it
        // has its redemption, and expired exactly when a breakage or escheat transfer took its
        // funds.
        let card = sqlx::query_as::<Db, (i64, i16, i64)>(
            "SELECT a.serial, c.state, CAST(COALESCE(e.summed, 0) AS BIGINT) \
             FROM card_activation a JOIN card c ON c.serial = a.serial LEFT JOIN \
             (SELECT serial, SUM(amount_minor) AS summed FROM entry \
              WHERE serial IS NOT NULL GROUP BY serial) e ON e.serial = a.serial \
             WHERE COALESCE(e.summed, 0) <> CASE WHEN c.state = $1 THEN a.value_minor ELSE 0 END \
             OR c.state = $2 OR (c.state = $3) <> (a.void_request_id IS NOT NULL) \
             OR (c.state = $4) <> EXISTS (SELECT 1 FROM redemption r WHERE r.serial = a.serial) \
             OR (c.state = $5) <> EXISTS (SELECT 1 FROM entry x \
              JOIN transfer t ON t.transfer_id = x.transfer_id \
              WHERE x.serial = a.serial AND t.kind IN ($6, $7)) \
             ORDER BY a.serial LIMIT 1",
        )
        .bind(CardState::Active.code())
        .bind(CardState::Issued.code())
        .bind(CardState::Voided.code())
        .bind(CardState::Redeemed.code())
        .bind(CardState::Expired.code())
        .bind(TransferKind::Breakage.as_str())
        .bind(TransferKind::Escheat.as_str())
        .fetch_optional(&mut *self.tx)
        .await?;
        if let Some((card, state, summed_minor)) = card {
            return Ok(Some(Discrepancy::CardDrift {
                serial: serial(card)?,
                state: CardState::from_code(state)
                    .ok_or_else(|| StoreError::corrupt("card state"))?,
                summed_minor,
            }));
        }
        // `state <> 0` (issued) written out, so both databases use the partial index on it.
        let orphan = sqlx::query_scalar::<Db, i64>(
            "SELECT serial FROM (SELECT c.serial FROM card c WHERE c.state <> 0 \
              AND NOT EXISTS (SELECT 1 FROM card_activation a WHERE a.serial = c.serial) \
             UNION ALL SELECT e.serial FROM entry e WHERE e.serial IS NOT NULL \
              AND NOT EXISTS (SELECT 1 FROM card_activation a WHERE a.serial = e.serial)) o \
             ORDER BY serial LIMIT 1",
        )
        .fetch_optional(&mut *self.tx)
        .await?;
        orphan
            .map(|card| {
                Ok(Discrepancy::CardWithoutActivation {
                    serial: serial(card)?,
                })
            })
            .transpose()
    }

    async fn system_balances(&mut self) -> StoreResult<Vec<SystemBalance>> {
        let rows = sqlx::query_as::<Db, (String, String, i64)>(
            "SELECT s.ledger_account, s.currency, CAST(SUM(s.amount_minor) AS BIGINT) \
             FROM (SELECT CASE WHEN e.serial IS NULL THEN e.ledger_account ELSE $1 END \
              AS ledger_account, t.currency, e.amount_minor \
              FROM entry e JOIN transfer t ON t.transfer_id = e.transfer_id \
              WHERE e.account_id IS NULL) s \
             GROUP BY s.ledger_account, s.currency ORDER BY s.ledger_account, s.currency",
        )
        .bind(ALL_CARDS)
        .fetch_all(&mut *self.tx)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(ledger_account, currency, balance_minor)| SystemBalance {
                ledger_account,
                currency,
                balance_minor,
            })
            .collect())
    }

    async fn ledger_counts(&mut self) -> StoreResult<(i64, i64, i64)> {
        Ok(sqlx::query_as::<Db, (i64, i64, i64)>(
            "SELECT (SELECT COUNT(*) FROM transfer), (SELECT COUNT(*) FROM entry), \
             (SELECT COUNT(*) FROM account)",
        )
        .fetch_one(&mut *self.tx)
        .await?)
    }
}
