//! Settlement. A day's sums read the entries recorded in it by their own `recorded_ms` (indexed)
//! and `book`; what needs the transfer (late ones, sales, voids) starts from the transfers
//! recorded in the day. A liability leg is one that names a card or a customer account.

use super::Db;
use crate::store::settlement::split_book;
use crate::store::settlement::{
    CurrencySum, DriftRow, LateRow, LiabilityRow, MovementRow, PaymentRow, ReceivableRow,
    RetailerSum, SalesRow, SettlementFileRow, SettlementRepo, SettlementRow, TradeInDayRow,
};
use crate::store::{SqlTx, StoreError, StoreResult};

/// The legs of the card and customer accounts.
macro_rules! liability_leg {
    () => {
        "(e.serial IS NOT NULL OR e.account_id IS NOT NULL)"
    };
}

/// Per-currency sums from `(currency, sum)` rows.
fn sums(rows: Vec<(String, i64)>) -> Vec<CurrencySum> {
    rows.into_iter()
        .map(|(currency, minor)| CurrencySum { currency, minor })
        .collect()
}

fn retailer_sums(rows: Vec<(i64, String, i64)>) -> Vec<RetailerSum> {
    rows.into_iter()
        .map(|(retailer_id, currency, minor)| RetailerSum {
            retailer_id,
            currency,
            minor,
        })
        .collect()
}

fn sales(rows: Vec<(i64, String, i64, i64, i64)>) -> Vec<SalesRow> {
    rows.into_iter()
        .map(
            |(retailer_id, currency, cards, gross_minor, commission_minor)| SalesRow {
                retailer_id,
                currency,
                cards,
                gross_minor,
                commission_minor,
            },
        )
        .collect()
}

fn drift(rows: Vec<(i64, String, i64)>) -> Vec<DriftRow> {
    rows.into_iter()
        .map(|(id, currency, difference_minor)| DriftRow {
            id,
            currency,
            difference_minor,
        })
        .collect()
}

type SettlementTuple = (
    String,
    String,
    i64,
    i64,
    Vec<u8>,
    Vec<u8>,
    Option<i64>,
    String,
    String,
);

impl SettlementRepo for SqlTx<Db> {
    async fn day_movements(&mut self, start_ms: i64, end_ms: i64) -> StoreResult<Vec<MovementRow>> {
        // One indexed range of `entry`, grouped by one key (see the migration's `book`).
        let rows = sqlx::query_as::<Db, (String, i64, i64, i64)>(
            "SELECT book, \
             CAST(SUM(CASE WHEN amount_minor < 0 THEN -amount_minor ELSE 0 END) AS BIGINT), \
             CAST(SUM(CASE WHEN amount_minor > 0 THEN amount_minor ELSE 0 END) AS BIGINT), \
             COUNT(*) FROM entry WHERE recorded_ms >= $1 AND recorded_ms < $2 GROUP BY book",
        )
        .bind(start_ms)
        .bind(end_ms)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.into_iter()
            .map(|(book, debits, credits, legs)| {
                let (currency, kind, account) =
                    split_book(&book).ok_or_else(|| StoreError::corrupt("an entry's book"))?;
                Ok(MovementRow {
                    currency: currency.to_string(),
                    kind: kind.to_string(),
                    account: account.to_string(),
                    debits,
                    credits,
                    legs,
                })
            })
            .collect()
    }

    async fn late_transfers(&mut self, start_ms: i64, end_ms: i64) -> StoreResult<Vec<LateRow>> {
        let rows = sqlx::query_as::<Db, (i64, String, String, i64)>(concat!(
            "SELECT t.effective_ms, t.currency, t.kind, CAST(SUM(e.amount_minor) AS BIGINT) \
             FROM transfer t JOIN entry e ON e.transfer_id = t.transfer_id \
             WHERE t.recorded_ms >= $1 AND t.recorded_ms < $2 AND t.effective_ms < $1 AND ",
            liability_leg!(),
            " GROUP BY t.transfer_id, t.effective_ms, t.currency, t.kind ORDER BY t.transfer_id"
        ))
        .bind(start_ms)
        .bind(end_ms)
        .fetch_all(&mut *self.tx)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(effective_ms, currency, kind, liability_minor)| LateRow {
                effective_ms,
                currency,
                kind,
                liability_minor,
            })
            .collect())
    }

    async fn liability_between(
        &mut self,
        from_ms: i64,
        until_ms: i64,
    ) -> StoreResult<Vec<CurrencySum>> {
        // A book starts with its three-letter currency.
        let rows = sqlx::query_as::<Db, (String, i64)>(concat!(
            "SELECT SUBSTR(e.book, 1, 3), CAST(SUM(e.amount_minor) AS BIGINT) FROM entry e \
             WHERE e.recorded_ms >= $1 AND e.recorded_ms < $2 AND ",
            liability_leg!(),
            " GROUP BY SUBSTR(e.book, 1, 3)"
        ))
        .bind(from_ms)
        .bind(until_ms)
        .fetch_all(&mut *self.tx)
        .await?;
        Ok(sums(rows))
    }

    async fn customer_balances(&mut self) -> StoreResult<Vec<CurrencySum>> {
        let rows = sqlx::query_as::<Db, (String, i64)>(
            "SELECT currency, CAST(SUM(balance_minor) AS BIGINT) FROM account GROUP BY currency",
        )
        .fetch_all(&mut *self.tx)
        .await?;
        Ok(sums(rows))
    }

    async fn active_card_value(&mut self) -> StoreResult<Vec<CurrencySum>> {
        let rows = sqlx::query_as::<Db, (String, i64)>(
            "SELECT a.currency, CAST(SUM(a.value_minor) AS BIGINT) \
             FROM card c JOIN card_activation a ON a.serial = c.serial \
             WHERE c.state = 1 GROUP BY a.currency",
        )
        .fetch_all(&mut *self.tx)
        .await?;
        Ok(sums(rows))
    }

    async fn receivables_between(
        &mut self,
        from_ms: i64,
        until_ms: i64,
    ) -> StoreResult<Vec<RetailerSum>> {
        // `receivable:` is 11 characters: the retailer's id starts at the 12th.
        let rows = sqlx::query_as::<Db, (i64, String, i64)>(
            "SELECT CAST(SUBSTR(e.ledger_account, 12) AS BIGINT), SUBSTR(e.book, 1, 3), \
             CAST(SUM(e.amount_minor) AS BIGINT) FROM entry e \
             WHERE e.recorded_ms >= $1 AND e.recorded_ms < $2 \
             AND e.serial IS NULL AND e.account_id IS NULL \
             AND e.ledger_account LIKE 'receivable:%' \
             GROUP BY e.ledger_account, SUBSTR(e.book, 1, 3)",
        )
        .bind(from_ms)
        .bind(until_ms)
        .fetch_all(&mut *self.tx)
        .await?;
        Ok(retailer_sums(rows))
    }

    async fn day_sales(&mut self, start_ms: i64, end_ms: i64) -> StoreResult<Vec<SalesRow>> {
        let rows = sqlx::query_as::<Db, (i64, String, i64, i64, i64)>(
            "SELECT p.retailer_id, a.currency, COUNT(*), CAST(SUM(a.value_minor) AS BIGINT), \
             CAST(SUM(a.commission_minor) AS BIGINT) \
             FROM transfer t JOIN card_activation a ON a.transfer_id = t.transfer_id \
             JOIN pos_request p ON p.request_id = a.request_id \
             WHERE t.recorded_ms >= $1 AND t.recorded_ms < $2 \
             GROUP BY p.retailer_id, a.currency",
        )
        .bind(start_ms)
        .bind(end_ms)
        .fetch_all(&mut *self.tx)
        .await?;
        Ok(sales(rows))
    }

    async fn day_voids(&mut self, start_ms: i64, end_ms: i64) -> StoreResult<Vec<SalesRow>> {
        let rows = sqlx::query_as::<Db, (i64, String, i64, i64, i64)>(
            "SELECT p.retailer_id, a.currency, COUNT(*), CAST(SUM(a.value_minor) AS BIGINT), \
             CAST(SUM(a.commission_minor) AS BIGINT) \
             FROM transfer t JOIN card_activation a ON a.void_transfer_id = t.transfer_id \
             JOIN pos_request p ON p.request_id = a.request_id \
             WHERE t.recorded_ms >= $1 AND t.recorded_ms < $2 \
             AND a.void_transfer_id IS NOT NULL \
             GROUP BY p.retailer_id, a.currency",
        )
        .bind(start_ms)
        .bind(end_ms)
        .fetch_all(&mut *self.tx)
        .await?;
        Ok(sales(rows))
    }

    async fn day_payments(&mut self, start_ms: i64, end_ms: i64) -> StoreResult<Vec<PaymentRow>> {
        let rows = sqlx::query_as::<Db, (i64, String, i64, String, i64)>(
            // Payments are few: from them to their transfers, not from the day's transfers.
            "SELECT r.retailer_id, r.reference, r.amount_minor, r.currency, r.transfer_id \
             FROM retailer_payment r CROSS JOIN transfer t \
             WHERE t.transfer_id = r.transfer_id AND t.recorded_ms >= $1 AND t.recorded_ms < $2 \
             ORDER BY r.retailer_id, r.transfer_id",
        )
        .bind(start_ms)
        .bind(end_ms)
        .fetch_all(&mut *self.tx)
        .await?;
        Ok(rows.into_iter().map(payment_row).collect())
    }

    async fn pending_valuations(&mut self) -> StoreResult<Vec<CurrencySum>> {
        let rows = sqlx::query_as::<Db, (String, i64)>(
            "SELECT currency, CAST(SUM(value_minor - credited_minor) AS BIGINT) FROM trade_in \
             WHERE state IN ('queued', 'held') GROUP BY currency",
        )
        .fetch_all(&mut *self.tx)
        .await?;
        Ok(sums(rows))
    }

    async fn owed_clawbacks(&mut self) -> StoreResult<Vec<CurrencySum>> {
        let rows = sqlx::query_as::<Db, (String, i64)>(
            "SELECT currency, CAST(SUM(owed_minor) AS BIGINT) FROM trade_in \
             WHERE owed_minor > 0 GROUP BY currency",
        )
        .fetch_all(&mut *self.tx)
        .await?;
        Ok(sums(rows))
    }

    async fn day_trade_ins(
        &mut self,
        start_ms: i64,
        end_ms: i64,
    ) -> StoreResult<Vec<TradeInDayRow>> {
        let rows = sqlx::query_as::<Db, (String, Option<String>, String, i64, i64, i64)>(
            "SELECT ti.warehouse_id, ti.device_model, t.currency, COUNT(*), \
             CAST(SUM(CASE WHEN e.amount_minor > 0 THEN e.amount_minor ELSE 0 END) AS BIGINT), \
             CAST(SUM(CASE WHEN e.amount_minor < 0 THEN -e.amount_minor ELSE 0 END) AS BIGINT) \
             FROM transfer t JOIN trade_in_posting tp ON tp.transfer_id = t.transfer_id \
             JOIN trade_in ti ON ti.trade_in_pk = tp.trade_in_pk \
             JOIN entry e ON e.transfer_id = t.transfer_id AND e.account_id IS NOT NULL \
             WHERE t.recorded_ms >= $1 AND t.recorded_ms < $2 \
             GROUP BY ti.warehouse_id, ti.device_model, t.currency",
        )
        .bind(start_ms)
        .bind(end_ms)
        .fetch_all(&mut *self.tx)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(warehouse_id, device_model, currency, postings, credited, clawed)| {
                    TradeInDayRow {
                        warehouse_id,
                        device_model,
                        currency,
                        postings,
                        credited_minor: credited,
                        clawed_back_minor: clawed,
                    }
                },
            )
            .collect())
    }

    async fn customer_drift(&mut self, limit: i64) -> StoreResult<Vec<DriftRow>> {
        let rows = sqlx::query_as::<Db, (i64, String, i64)>(
            "SELECT a.account_id, a.currency, CAST(a.balance_minor - COALESCE(s.total, 0) AS BIGINT) \
             FROM account a LEFT JOIN (SELECT account_id, SUM(amount_minor) AS total FROM entry \
             WHERE account_id IS NOT NULL GROUP BY account_id) s ON s.account_id = a.account_id \
             WHERE a.balance_minor <> COALESCE(s.total, 0) ORDER BY a.account_id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&mut *self.tx)
        .await?;
        Ok(drift(rows))
    }

    async fn card_drift(&mut self, limit: i64) -> StoreResult<Vec<DriftRow>> {
        let rows = sqlx::query_as::<Db, (i64, String, i64)>(
            "SELECT a.serial, a.currency, \
             CAST((CASE WHEN c.state = 1 THEN a.value_minor ELSE 0 END) - COALESCE(s.total, 0) \
             AS BIGINT) \
             FROM card_activation a JOIN card c ON c.serial = a.serial \
             LEFT JOIN (SELECT serial, SUM(amount_minor) AS total FROM entry \
             WHERE serial IS NOT NULL GROUP BY serial) s ON s.serial = a.serial \
             WHERE (CASE WHEN c.state = 1 THEN a.value_minor ELSE 0 END) <> COALESCE(s.total, 0) \
             ORDER BY a.serial LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&mut *self.tx)
        .await?;
        Ok(drift(rows))
    }

    async fn settlement(&mut self, date: &str) -> StoreResult<Option<SettlementRow>> {
        let row = sqlx::query_as::<Db, SettlementTuple>(
            "SELECT business_date, time_zone, start_ms, cutoff_ms, manifest, signature, seal_id, \
             settled_by, settled_at FROM settlement WHERE business_date = $1",
        )
        .bind(date)
        .fetch_optional(&mut *self.tx)
        .await?;
        Ok(row.map(
            |(
                business_date,
                time_zone,
                start_ms,
                cutoff_ms,
                manifest,
                signature,
                seal_id,
                settled_by,
                settled_at,
            )| SettlementRow {
                business_date,
                time_zone,
                start_ms,
                cutoff_ms,
                manifest,
                signature,
                seal_id,
                settled_by,
                settled_at,
            },
        ))
    }

    async fn settled_before(&mut self, date: &str) -> StoreResult<Option<String>> {
        Ok(sqlx::query_scalar::<Db, String>(
            "SELECT business_date FROM settlement WHERE business_date < $1 \
             ORDER BY business_date DESC LIMIT 1",
        )
        .bind(date)
        .fetch_optional(&mut *self.tx)
        .await?)
    }

    async fn settlement_files(&mut self, date: &str) -> StoreResult<Vec<SettlementFileRow>> {
        let rows = sqlx::query_as::<Db, (String, Vec<u8>, String)>(
            "SELECT name, content, sha256 FROM settlement_file WHERE business_date = $1 \
             ORDER BY name",
        )
        .bind(date)
        .fetch_all(&mut *self.tx)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(name, content, sha256)| SettlementFileRow {
                name,
                content,
                sha256,
            })
            .collect())
    }

    async fn settled_liability(&mut self, date: &str) -> StoreResult<Vec<LiabilityRow>> {
        let rows = sqlx::query_as::<Db, (String, i64, i64, i64)>(
            "SELECT currency, closing_minor, pending_minor, owed_minor FROM settlement_liability \
             WHERE business_date = $1 ORDER BY currency",
        )
        .bind(date)
        .fetch_all(&mut *self.tx)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(currency, closing_minor, pending_minor, owed_minor)| LiabilityRow {
                    currency,
                    closing_minor,
                    pending_minor,
                    owed_minor,
                },
            )
            .collect())
    }

    async fn settled_receivables(&mut self, date: &str) -> StoreResult<Vec<ReceivableRow>> {
        let rows = sqlx::query_as::<Db, (i64, String, i64, i64)>(
            "SELECT retailer_id, currency, net_due_minor, closing_minor FROM settlement_receivable \
             WHERE business_date = $1 ORDER BY retailer_id, currency",
        )
        .bind(date)
        .fetch_all(&mut *self.tx)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(retailer_id, currency, net_due_minor, closing_minor)| ReceivableRow {
                    retailer_id,
                    currency,
                    net_due_minor,
                    closing_minor,
                },
            )
            .collect())
    }

    async fn net_due_history(
        &mut self,
        retailer_id: i64,
        currency: &str,
        date: &str,
        limit: i64,
    ) -> StoreResult<Vec<(String, i64)>> {
        Ok(sqlx::query_as::<Db, (String, i64)>(
            "SELECT business_date, net_due_minor FROM settlement_receivable \
             WHERE retailer_id = $1 AND currency = $2 AND business_date < $3 \
             ORDER BY business_date DESC LIMIT $4",
        )
        .bind(retailer_id)
        .bind(currency)
        .bind(date)
        .bind(limit)
        .fetch_all(&mut *self.tx)
        .await?)
    }

    async fn insert_settlement(&mut self, row: &SettlementRow) -> StoreResult<bool> {
        let done = sqlx::query::<Db>(
            "INSERT INTO settlement (business_date, time_zone, start_ms, cutoff_ms, manifest, \
             signature, seal_id, settled_by, settled_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
        )
        .bind(&row.business_date)
        .bind(&row.time_zone)
        .bind(row.start_ms)
        .bind(row.cutoff_ms)
        .bind(&row.manifest)
        .bind(&row.signature)
        .bind(row.seal_id)
        .bind(&row.settled_by)
        .bind(&row.settled_at)
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn insert_settlement_file(
        &mut self,
        date: &str,
        file: &SettlementFileRow,
    ) -> StoreResult<()> {
        sqlx::query::<Db>(
            "INSERT INTO settlement_file (business_date, name, content, sha256) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(date)
        .bind(&file.name)
        .bind(&file.content)
        .bind(&file.sha256)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn insert_settled_liability(
        &mut self,
        date: &str,
        row: &LiabilityRow,
    ) -> StoreResult<()> {
        sqlx::query::<Db>(
            "INSERT INTO settlement_liability \
             (business_date, currency, closing_minor, pending_minor, owed_minor) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(date)
        .bind(&row.currency)
        .bind(row.closing_minor)
        .bind(row.pending_minor)
        .bind(row.owed_minor)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn insert_settled_receivable(
        &mut self,
        date: &str,
        row: &ReceivableRow,
    ) -> StoreResult<()> {
        sqlx::query::<Db>(
            "INSERT INTO settlement_receivable \
             (business_date, retailer_id, currency, net_due_minor, closing_minor) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(date)
        .bind(row.retailer_id)
        .bind(&row.currency)
        .bind(row.net_due_minor)
        .bind(row.closing_minor)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn set_settlement_seal(&mut self, date: &str, seal_id: i64) -> StoreResult<()> {
        sqlx::query::<Db>("UPDATE settlement SET seal_id = $1 WHERE business_date = $2")
            .bind(seal_id)
            .bind(date)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn payment(
        &mut self,
        retailer_id: i64,
        reference: &str,
    ) -> StoreResult<Option<PaymentRow>> {
        let row = sqlx::query_as::<Db, (i64, String, i64, String, i64)>(
            "SELECT retailer_id, reference, amount_minor, currency, transfer_id \
             FROM retailer_payment WHERE retailer_id = $1 AND reference = $2",
        )
        .bind(retailer_id)
        .bind(reference)
        .fetch_optional(&mut *self.tx)
        .await?;
        Ok(row.map(payment_row))
    }

    async fn insert_payment(&mut self, row: &PaymentRow, recorded_by: &str) -> StoreResult<bool> {
        let done = sqlx::query::<Db>(
            "INSERT INTO retailer_payment \
             (retailer_id, reference, amount_minor, currency, transfer_id, recorded_by) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(row.retailer_id)
        .bind(&row.reference)
        .bind(row.amount_minor)
        .bind(&row.currency)
        .bind(row.transfer_id)
        .bind(recorded_by)
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

fn payment_row(
    (retailer_id, reference, amount_minor, currency, transfer_id): (i64, String, i64, String, i64),
) -> PaymentRow {
    PaymentRow {
        retailer_id,
        reference,
        amount_minor,
        currency,
        transfer_id,
    }
}
