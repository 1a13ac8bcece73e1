//! Trade-in uploads, staged rows, valuations, postings, day counters and price bands.

use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;

use super::Db;
use crate::domain::{
    AccountId, Currency, Money, PageRows, RowCounts, RowOutcome, TradeInState, TransferId,
};
use crate::keys::KeyId;
use crate::store::rows::{TradeInDbRow, TradeInFileDbRow, TradeInRowDbRow, all};
use crate::store::tradein::{
    Band, FileRow, FileState, NewTradeIn, RowResult, Settled, StagedRow, TradeInRepo, TradeInRow,
};
use crate::store::{SqlTx, StoreError, StoreResult};

/// Staged rows per INSERT: 9 parameters each, well under SQLite's 32,766 and PostgreSQL's
/// 65,535 parameters per statement.
const STAGED_ROWS_PER_STATEMENT: usize = 1_000;

/// A valuation's columns, as `TradeInDbRow` reads them (a macro, so statements stay static).
macro_rules! trade_in_columns {
    () => {
        "trade_in_pk, warehouse_id, trade_in_ref, account_id, currency, value_minor, \
         credited_minor, owed_minor, grade, assessed_at, device_key_id, device_digest, \
         device_model, device_id, state, held_for, reason, submitted_by, decided_by, file_id, \
         revision, created_at, updated_at"
    };
}

/// A staged row's columns, as `TradeInRowDbRow` reads them.
macro_rules! row_columns {
    () => {
        "line, cells, device, trade_in_ref, outcome, code, reason"
    };
}

impl TradeInRepo for SqlTx<Db> {
    async fn insert_trade_in_file(
        &mut self,
        file_name: Option<&str>,
        submitted_by: &str,
        state: FileState,
        at: DateTime<Utc>,
    ) -> StoreResult<i64> {
        Ok(sqlx::query_scalar::<Db, i64>(
            "INSERT INTO trade_in_file (file_name, submitted_by, state, received_at, received_ms) \
             VALUES ($1, $2, $3, $4, $5) RETURNING file_id",
        )
        .bind(file_name)
        .bind(submitted_by)
        .bind(state.as_str())
        .bind(at)
        .bind(at.timestamp_millis())
        .fetch_one(&mut *self.tx)
        .await?)
    }

    async fn claim_file_sha(
        &mut self,
        file_id: i64,
        sha256: &str,
        bytes: i64,
    ) -> StoreResult<Option<i64>> {
        let claimed = sqlx::query::<Db>(
            "INSERT INTO trade_in_file_sha (sha256, file_id) VALUES ($1, $2) \
             ON CONFLICT DO NOTHING",
        )
        .bind(sha256)
        .bind(file_id)
        .execute(&mut *self.tx)
        .await?
        .rows_affected()
            == 1;
        if !claimed {
            let first = sqlx::query_scalar::<Db, i64>(
                "SELECT file_id FROM trade_in_file_sha WHERE sha256 = $1",
            )
            .bind(sha256)
            .fetch_one(&mut *self.tx)
            .await?;
            return Ok(Some(first));
        }
        sqlx::query::<Db>("UPDATE trade_in_file SET sha256 = $1, bytes = $2 WHERE file_id = $3")
            .bind(sha256)
            .bind(bytes)
            .bind(file_id)
            .execute(&mut *self.tx)
            .await?;
        Ok(None)
    }

    async fn trade_in_file(&mut self, file_id: i64) -> StoreResult<Option<FileRow>> {
        sqlx::query_as::<Db, TradeInFileDbRow>("SELECT * FROM trade_in_file WHERE file_id = $1")
            .bind(file_id)
            .fetch_optional(&mut *self.tx)
            .await?
            .map(FileRow::try_from)
            .transpose()
    }

    async fn set_file_state(
        &mut self,
        file_id: i64,
        state: FileState,
        header: Option<&str>,
    ) -> StoreResult<()> {
        sqlx::query::<Db>(
            "UPDATE trade_in_file SET state = $1, header = COALESCE($2, header) \
             WHERE file_id = $3",
        )
        .bind(state.as_str())
        .bind(header)
        .bind(file_id)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn finish_file(
        &mut self,
        file_id: i64,
        counts: &RowCounts,
        error: Option<(&str, &str)>,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let state = if error.is_some() {
            FileState::Refused
        } else {
            FileState::Imported
        };
        sqlx::query::<Db>(
            "UPDATE trade_in_file SET state = $1, rows_total = $2, rows_accepted = $3, \
             rows_unchanged = $4, rows_revalued = $5, rows_rejected = $6, error_code = $7, \
             error_message = $8, finished_at = $9 WHERE file_id = $10",
        )
        .bind(state.as_str())
        .bind(counts.total)
        .bind(counts.accepted)
        .bind(counts.unchanged)
        .bind(counts.revalued)
        .bind(counts.rejected)
        .bind(error.map(|e| e.0))
        .bind(error.map(|e| e.1))
        .bind(at)
        .bind(file_id)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn delete_trade_in_file(&mut self, file_id: i64) -> StoreResult<()> {
        for statement in [
            "DELETE FROM trade_in_upload WHERE file_id = $1",
            "DELETE FROM trade_in_row WHERE file_id = $1",
            "DELETE FROM trade_in_file_sha WHERE file_id = $1",
            "DELETE FROM trade_in_file WHERE file_id = $1",
        ] {
            sqlx::query::<Db>(statement)
                .bind(file_id)
                .execute(&mut *self.tx)
                .await?;
        }
        Ok(())
    }

    async fn insert_upload_piece(
        &mut self,
        file_id: i64,
        piece: i32,
        body: &[u8],
    ) -> StoreResult<()> {
        sqlx::query::<Db>("INSERT INTO trade_in_upload (file_id, piece, body) VALUES ($1, $2, $3)")
            .bind(file_id)
            .bind(piece)
            .bind(body)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn upload_piece(&mut self, file_id: i64, piece: i32) -> StoreResult<Option<Vec<u8>>> {
        Ok(sqlx::query_scalar::<Db, Vec<u8>>(
            "SELECT body FROM trade_in_upload WHERE file_id = $1 AND piece = $2",
        )
        .bind(file_id)
        .bind(piece)
        .fetch_optional(&mut *self.tx)
        .await?)
    }

    async fn delete_upload(&mut self, file_id: i64) -> StoreResult<()> {
        sqlx::query::<Db>("DELETE FROM trade_in_upload WHERE file_id = $1")
            .bind(file_id)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn delete_staged_rows(&mut self, file_id: i64) -> StoreResult<()> {
        sqlx::query::<Db>("DELETE FROM trade_in_row WHERE file_id = $1")
            .bind(file_id)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn insert_staged_rows(&mut self, file_id: i64, rows: &[StagedRow]) -> StoreResult<()> {
        for part in rows.chunks(STAGED_ROWS_PER_STATEMENT) {
            let mut insert = QueryBuilder::<Db>::new(
                "INSERT INTO trade_in_row (file_id, line, cells, device, account_id, \
                 warehouse_id, trade_in_ref, device_digest, outcome, code, reason) ",
            );
            insert.push_values(part, |mut row, staged| {
                let (warehouse, trade_in) = match &staged.key {
                    Some((w, t)) => (Some(w.as_str()), Some(t.as_str())),
                    None => (None, None),
                };
                row.push_bind(file_id)
                    .push_bind(staged.line)
                    .push_bind(staged.cells.as_str())
                    .push_bind(staged.device.as_str())
                    .push_bind(staged.account_id)
                    .push_bind(warehouse)
                    .push_bind(trade_in)
                    .push_bind(staged.device_digest.as_ref().map(|d| &d[..]))
                    .push_bind(
                        staged
                            .refused
                            .as_ref()
                            .map(|_| RowOutcome::Rejected.as_str()),
                    )
                    .push_bind(staged.refused.as_ref().map(|r| r.0))
                    .push_bind(staged.refused.as_ref().map(|r| r.1.as_str()));
            });
            insert.build().execute(&mut *self.tx).await?;
        }
        Ok(())
    }

    async fn refuse_repeated_rows(
        &mut self,
        file_id: i64,
        trade_in_code: &str,
        device_code: &str,
    ) -> StoreResult<u64> {
        // A row counts as earlier only while it is not refused for a field of its own (a
        // repeat of a repeat still names the first line): whether the subquery sees the rows
        // this statement already refused does not change its answer.
        let by_key = sqlx::query::<Db>(
            "UPDATE trade_in_row SET outcome = 'rejected', code = $2, \
             reason = 'the trade-in id repeats line ' || CAST((SELECT MIN(o.line) \
               FROM trade_in_row o WHERE o.file_id = $1 \
               AND o.warehouse_id = trade_in_row.warehouse_id \
               AND o.trade_in_ref = trade_in_row.trade_in_ref \
               AND o.line < trade_in_row.line \
               AND (o.outcome IS NULL OR o.code IN ($2, $3))) AS TEXT) \
             WHERE file_id = $1 AND outcome IS NULL AND EXISTS (SELECT 1 \
               FROM trade_in_row o WHERE o.file_id = $1 \
               AND o.warehouse_id = trade_in_row.warehouse_id \
               AND o.trade_in_ref = trade_in_row.trade_in_ref \
               AND o.line < trade_in_row.line \
               AND (o.outcome IS NULL OR o.code IN ($2, $3)))",
        )
        .bind(file_id)
        .bind(trade_in_code)
        .bind(device_code)
        .execute(&mut *self.tx)
        .await?
        .rows_affected();
        let by_device = sqlx::query::<Db>(
            "UPDATE trade_in_row SET outcome = 'rejected', code = $3, \
             reason = 'the device repeats line ' || CAST((SELECT MIN(o.line) \
               FROM trade_in_row o WHERE o.file_id = $1 \
               AND o.device_digest = trade_in_row.device_digest \
               AND o.line < trade_in_row.line \
               AND (o.outcome IS NULL OR o.code IN ($2, $3))) AS TEXT) \
             WHERE file_id = $1 AND outcome IS NULL AND EXISTS (SELECT 1 \
               FROM trade_in_row o WHERE o.file_id = $1 \
               AND o.device_digest = trade_in_row.device_digest \
               AND o.line < trade_in_row.line \
               AND (o.outcome IS NULL OR o.code IN ($2, $3)))",
        )
        .bind(file_id)
        .bind(trade_in_code)
        .bind(device_code)
        .execute(&mut *self.tx)
        .await?
        .rows_affected();
        Ok(by_key + by_device)
    }

    async fn unapplied_rows(
        &mut self,
        file_id: i64,
        after: i64,
        rows: PageRows,
    ) -> StoreResult<Vec<RowResult>> {
        all(sqlx::query_as::<Db, TradeInRowDbRow>(concat!(
            "SELECT ",
            row_columns!(),
            " FROM trade_in_row \
             WHERE file_id = $1 AND line > $2 AND outcome IS NULL ORDER BY line LIMIT $3"
        ))
        .bind(file_id)
        .bind(after)
        .bind(i64::from(rows.get()))
        .fetch_all(&mut *self.tx)
        .await?)
    }

    async fn set_row_outcome(
        &mut self,
        file_id: i64,
        line: i64,
        outcome: RowOutcome,
        refusal: Option<(&str, &str)>,
    ) -> StoreResult<()> {
        sqlx::query::<Db>(
            "UPDATE trade_in_row SET outcome = $1, code = $2, reason = $3 \
             WHERE file_id = $4 AND line = $5 AND outcome IS NULL",
        )
        .bind(outcome.as_str())
        .bind(refusal.map(|r| r.0))
        .bind(refusal.map(|r| r.1))
        .bind(file_id)
        .bind(line)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn row_counts(&mut self, file_id: i64) -> StoreResult<RowCounts> {
        let counted = sqlx::query_as::<Db, (Option<String>, i64)>(
            "SELECT outcome, COUNT(*) FROM trade_in_row WHERE file_id = $1 GROUP BY outcome",
        )
        .bind(file_id)
        .fetch_all(&mut *self.tx)
        .await?;
        let mut counts = RowCounts::default();
        for (outcome, n) in counted {
            counts.total += n;
            match outcome.as_deref().and_then(RowOutcome::parse) {
                Some(RowOutcome::Accepted) => counts.accepted = n,
                Some(RowOutcome::Unchanged) => counts.unchanged = n,
                Some(RowOutcome::Revalued) => counts.revalued = n,
                Some(RowOutcome::Rejected) => counts.rejected = n,
                None => {}
            }
        }
        Ok(counts)
    }

    async fn file_rows(
        &mut self,
        file_id: i64,
        after: i64,
        rows: PageRows,
        rejected_only: bool,
    ) -> StoreResult<Vec<RowResult>> {
        all(sqlx::query_as::<Db, TradeInRowDbRow>(concat!(
            "SELECT ",
            row_columns!(),
            " FROM trade_in_row WHERE file_id = $1 AND line > $2 \
             AND ($3 = 0 OR outcome = 'rejected') ORDER BY line LIMIT $4"
        ))
        .bind(file_id)
        .bind(after)
        .bind(i32::from(rejected_only))
        .bind(i64::from(rows.get()))
        .fetch_all(&mut *self.tx)
        .await?)
    }

    async fn trade_in_by_ref(
        &mut self,
        warehouse_id: &str,
        trade_in_ref: &str,
    ) -> StoreResult<Option<TradeInRow>> {
        sqlx::query_as::<Db, TradeInDbRow>(concat!(
            "SELECT ",
            trade_in_columns!(),
            " FROM trade_in WHERE warehouse_id = $1 AND trade_in_ref = $2"
        ))
        .bind(warehouse_id)
        .bind(trade_in_ref)
        .fetch_optional(&mut *self.tx)
        .await?
        .map(TradeInRow::try_from)
        .transpose()
    }

    async fn trade_in_by_device(
        &mut self,
        digests: &[(KeyId, [u8; 32])],
    ) -> StoreResult<Option<TradeInRow>> {
        // A ring holds a few keys: one probe of the unique index each.
        for (key, digest) in digests {
            let found = sqlx::query_as::<Db, TradeInDbRow>(concat!(
                "SELECT ",
                trade_in_columns!(),
                " FROM trade_in \
                 WHERE device_key_id = $1 AND device_digest = $2 AND state <> 'rejected'"
            ))
            .bind(key.stored())
            .bind(&digest[..])
            .fetch_optional(&mut *self.tx)
            .await?;
            if let Some(found) = found {
                return Ok(Some(TradeInRow::try_from(found)?));
            }
        }
        Ok(None)
    }

    async fn insert_trade_in(&mut self, new: &NewTradeIn<'_>) -> StoreResult<Option<i64>> {
        Ok(sqlx::query_scalar::<Db, i64>(
            "INSERT INTO trade_in (warehouse_id, trade_in_ref, account_id, currency, \
             value_minor, grade, assessed_at, device_key_id, device_digest, device_model, \
             device_id, state, submitted_by, file_id, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'queued', $12, $13, $14, $14) \
             ON CONFLICT DO NOTHING RETURNING trade_in_pk",
        )
        .bind(new.warehouse_id)
        .bind(new.trade_in_ref)
        .bind(new.account_id.0)
        .bind(new.value.currency().code())
        .bind(new.value.minor())
        .bind(new.grade.as_str())
        .bind(new.assessed_at)
        .bind(new.device_key_id.stored())
        .bind(&new.device_digest[..])
        .bind(new.device_model)
        .bind(new.device_id)
        .bind(new.submitted_by)
        .bind(new.file_id)
        .bind(new.at)
        .fetch_optional(&mut *self.tx)
        .await?)
    }

    async fn revalue_trade_in(
        &mut self,
        id: i64,
        revision: i32,
        new: &NewTradeIn<'_>,
    ) -> StoreResult<bool> {
        let done = sqlx::query::<Db>(
            "UPDATE trade_in SET value_minor = $1, grade = $2, assessed_at = $3, \
             device_model = $4, state = 'queued', held_for = NULL, submitted_by = $5, \
             decided_by = NULL, file_id = $6, revision = revision + 1, updated_at = $7 \
             WHERE trade_in_pk = $8 AND revision = $9",
        )
        .bind(new.value.minor())
        .bind(new.grade.as_str())
        .bind(new.assessed_at)
        .bind(new.device_model)
        .bind(new.submitted_by)
        .bind(new.file_id)
        .bind(new.at)
        .bind(id)
        .bind(revision)
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn trade_in(&mut self, id: i64) -> StoreResult<Option<TradeInRow>> {
        sqlx::query_as::<Db, TradeInDbRow>(concat!(
            "SELECT ",
            trade_in_columns!(),
            " FROM trade_in WHERE trade_in_pk = $1"
        ))
        .bind(id)
        .fetch_optional(&mut *self.tx)
        .await?
        .map(TradeInRow::try_from)
        .transpose()
    }

    async fn take_trade_in(
        &mut self,
        id: i64,
        state: TradeInState,
    ) -> StoreResult<Option<TradeInRow>> {
        // An update that changes nothing but takes the row's lock (PostgreSQL) and evaluates
        // the state on the row as it is once the lock is had.
        sqlx::query_as::<Db, TradeInDbRow>(concat!(
            "UPDATE trade_in SET revision = revision WHERE trade_in_pk = $1 AND state = $2 \
             RETURNING ",
            trade_in_columns!()
        ))
        .bind(id)
        .bind(state.as_str())
        .fetch_optional(&mut *self.tx)
        .await?
        .map(TradeInRow::try_from)
        .transpose()
    }

    async fn queued_trade_ins(&mut self, after: i64, rows: PageRows) -> StoreResult<Vec<i64>> {
        Ok(sqlx::query_scalar::<Db, i64>(
            "SELECT trade_in_pk FROM trade_in WHERE state = 'queued' AND trade_in_pk > $1 \
             ORDER BY trade_in_pk LIMIT $2",
        )
        .bind(after)
        .bind(i64::from(rows.get()))
        .fetch_all(&mut *self.tx)
        .await?)
    }

    async fn settle_trade_in(&mut self, id: i64, settled: &Settled<'_>) -> StoreResult<()> {
        sqlx::query::<Db>(
            "UPDATE trade_in SET state = $1, held_for = $2, credited_minor = $3, \
             owed_minor = $4, decided_by = COALESCE($5, decided_by), \
             reason = COALESCE($6, reason), updated_at = $7 WHERE trade_in_pk = $8",
        )
        .bind(settled.state.as_str())
        .bind(settled.held_for.map(|h| h.as_str()))
        .bind(settled.credited_minor)
        .bind(settled.owed_minor)
        .bind(settled.decided_by)
        .bind(settled.reason)
        .bind(settled.at)
        .bind(id)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn insert_trade_in_posting(
        &mut self,
        transfer: TransferId,
        id: i64,
        revision: i32,
        owed_minor: i64,
    ) -> StoreResult<()> {
        sqlx::query::<Db>(
            "INSERT INTO trade_in_posting (transfer_id, trade_in_pk, revision, owed_minor) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(transfer.0)
        .bind(id)
        .bind(revision)
        .bind(owed_minor)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn add_day_credit(
        &mut self,
        warehouse_id: &str,
        day: &str,
        currency: &str,
        minor: i64,
        limit_minor: Option<i64>,
    ) -> StoreResult<bool> {
        sqlx::query::<Db>(
            "INSERT INTO trade_in_day (warehouse_id, business_day, currency) \
             VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(warehouse_id)
        .bind(day)
        .bind(currency)
        .execute(&mut *self.tx)
        .await?;
        // One conditional update: the limit is checked on the row as it is once locked.
        let done = sqlx::query::<Db>(
            "UPDATE trade_in_day SET credited_minor = credited_minor + $1 \
             WHERE warehouse_id = $2 AND business_day = $3 AND currency = $4 \
             AND credited_minor + $1 <= $5",
        )
        .bind(minor)
        .bind(warehouse_id)
        .bind(day)
        .bind(currency)
        .bind(limit_minor.unwrap_or(i64::MAX - minor))
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn band(&mut self, model_key: &str, currency: &str) -> StoreResult<Option<i64>> {
        Ok(sqlx::query_scalar::<Db, i64>(
            "SELECT max_minor FROM trade_in_band WHERE model_key = $1 AND currency = $2",
        )
        .bind(model_key)
        .bind(currency)
        .fetch_optional(&mut *self.tx)
        .await?)
    }

    async fn set_band(&mut self, band: &Band) -> StoreResult<()> {
        sqlx::query::<Db>(
            "INSERT INTO trade_in_band (model_key, currency, max_minor) VALUES ($1, $2, $3) \
             ON CONFLICT (model_key, currency) DO UPDATE SET max_minor = excluded.max_minor",
        )
        .bind(band.model_key.as_str())
        .bind(band.max.currency().code())
        .bind(band.max.minor())
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn bands(&mut self) -> StoreResult<Vec<Band>> {
        sqlx::query_as::<Db, (String, String, i64)>(
            "SELECT model_key, currency, max_minor FROM trade_in_band \
             ORDER BY model_key, currency",
        )
        .fetch_all(&mut *self.tx)
        .await?
        .into_iter()
        .map(|(model_key, currency, max)| {
            let currency = Currency::parse(&currency)
                .map_err(|_| StoreError::corrupt("a price band's currency"))?;
            Ok(Band {
                model_key,
                max: Money::from_minor(max, currency),
            })
        })
        .collect()
    }

    async fn trade_ins(
        &mut self,
        state: Option<TradeInState>,
        before: Option<i64>,
        rows: PageRows,
    ) -> StoreResult<Vec<TradeInRow>> {
        all(sqlx::query_as::<Db, TradeInDbRow>(concat!(
            "SELECT ",
            trade_in_columns!(),
            " FROM trade_in WHERE ($1 IS NULL OR state = $1) \
             AND trade_in_pk < $2 ORDER BY trade_in_pk DESC LIMIT $3"
        ))
        .bind(state.map(|s| s.as_str()))
        .bind(before.unwrap_or(i64::MAX))
        .bind(i64::from(rows.get()))
        .fetch_all(&mut *self.tx)
        .await?)
    }

    async fn erase_trade_in_devices(&mut self, account: AccountId) -> StoreResult<u64> {
        let valuations = sqlx::query::<Db>(
            "UPDATE trade_in SET device_model = NULL, device_id = NULL WHERE account_id = $1",
        )
        .bind(account.0)
        .execute(&mut *self.tx)
        .await?
        .rows_affected();
        let rows = sqlx::query::<Db>("UPDATE trade_in_row SET device = NULL WHERE account_id = $1")
            .bind(account.0)
            .execute(&mut *self.tx)
            .await?
            .rows_affected();
        // A staged row's model is one of its cells, where its upload's header puts it: blank
        // it there (an account's rows are few).
        let staged = sqlx::query_as::<Db, (i64, i64, String, Option<String>)>(
            "SELECT r.file_id, r.line, r.cells, f.header FROM trade_in_row r \
             JOIN trade_in_file f ON f.file_id = r.file_id WHERE r.account_id = $1",
        )
        .bind(account.0)
        .fetch_all(&mut *self.tx)
        .await?;
        for (file_id, line, cells, header) in staged {
            let Some(header) = header else {
                continue;
            };
            let header: Vec<String> = serde_json::from_str(&header)
                .map_err(|_| StoreError::corrupt("an upload's header"))?;
            let mut cells: Vec<String> =
                serde_json::from_str(&cells).map_err(|_| StoreError::corrupt("a staged row"))?;
            let model = header.iter().position(|name| name == "device_model");
            let Some(cell) = model.and_then(|at| cells.get_mut(at)) else {
                continue;
            };
            cell.clear();
            sqlx::query::<Db>(
                "UPDATE trade_in_row SET cells = $1 WHERE file_id = $2 AND line = $3",
            )
            .bind(serde_json::to_string(&cells).expect("strings serialise"))
            .bind(file_id)
            .bind(line)
            .execute(&mut *self.tx)
            .await?;
        }
        Ok(valuations + rows)
    }

    async fn purge_trade_in_files(&mut self, before_ms: i64, rows: PageRows) -> StoreResult<u64> {
        let ids = sqlx::query_scalar::<Db, i64>(
            "SELECT file_id FROM trade_in_file WHERE received_ms < $1 \
             ORDER BY file_id LIMIT $2",
        )
        .bind(before_ms)
        .bind(i64::from(rows.get()))
        .fetch_all(&mut *self.tx)
        .await?;
        for &id in &ids {
            sqlx::query::<Db>("UPDATE trade_in SET file_id = NULL WHERE file_id = $1")
                .bind(id)
                .execute(&mut *self.tx)
                .await?;
            self.delete_trade_in_file(id).await?;
        }
        Ok(ids.len() as u64)
    }
}
