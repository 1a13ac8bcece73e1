//! Redemptions, the guessing limits' windows and the attempt log. The card's move to redeemed
//! is one guarded `UPDATE` that also compares its funds-expiry with the clock; an attempt's
//! slots in all its windows are one conditional upsert.

use sqlx::QueryBuilder;
use sqlx::query_builder::Separated;

use super::Db;
use crate::codegen::CodeDigest;
use crate::domain::{AccountId, CardState, PageRows, Serial};
use crate::keys::KeyId;
use crate::store::redeem::{AttemptRow, CardMatch, RedeemRepo, RedemptionRow, Window};
use crate::store::rows::{AttemptDbRow, CardMatchRow, RedemptionDbRow, all, int};
use crate::store::{SqlTx, StoreResult};

fn seq(serial: Serial) -> StoreResult<i64> {
    int(serial.sequence())
}

/// One window as a row of a `VALUES` list, `(subject, span_ms, start_ms[, cap])`: taking and
/// giving back name windows alike, so both lock them in the same order.
fn window_row(rows: &mut Separated<'_, Db, &'static str>, window: &Window, cap: Option<i64>) {
    rows.push("(")
        .push_bind_unseparated(&window.subject)
        .push_unseparated(", ")
        .push_bind_unseparated(window.span_ms)
        .push_unseparated(", ")
        .push_bind_unseparated(window.start_ms);
    if let Some(cap) = cap {
        rows.push_unseparated(", ").push_bind_unseparated(cap);
    }
    rows.push_unseparated(")");
}

impl RedeemRepo for SqlTx<Db> {
    async fn cards_by_digest(
        &mut self,
        digests: &[(KeyId, CodeDigest)],
    ) -> StoreResult<Vec<CardMatch>> {
        if digests.is_empty() {
            return Ok(Vec::new());
        }
        let mut select = QueryBuilder::<Db>::new(
            "SELECT c.serial, c.batch_id, c.lookup_key_id, c.digest, c.state, c.blocked_reason, \
             c.funds_expire_ms, b.region, a.value_minor, a.currency, \
             r.account_id AS redeemed_into \
             FROM card c JOIN batch b ON b.batch_id = c.batch_id \
             LEFT JOIN card_activation a ON a.serial = c.serial \
             LEFT JOIN redemption r ON r.serial = c.serial WHERE c.digest IN (",
        );
        let mut list = select.separated(", ");
        for (_, digest) in digests {
            list.push_bind(digest.0.to_vec());
        }
        select.push(")");
        all(select
            .build_query_as::<CardMatchRow>()
            .fetch_all(&mut *self.tx)
            .await?)
    }

    async fn redeem_card(&mut self, serial: Serial, now_ms: i64) -> StoreResult<bool> {
        let done = sqlx::query::<Db>(
            "UPDATE card SET state = $1 WHERE serial = $2 AND state = $3 \
             AND blocked_reason IS NULL AND (funds_expire_ms IS NULL OR funds_expire_ms > $4)",
        )
        .bind(CardState::Redeemed.code())
        .bind(seq(serial)?)
        .bind(CardState::Active.code())
        .bind(now_ms)
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn insert_redemption(&mut self, row: &RedemptionRow) -> StoreResult<bool> {
        let done = sqlx::query::<Db>(
            "INSERT INTO redemption (serial, account_id, caller, idem_key, value_minor, \
             currency, transfer_id, actor, redeemed_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
        )
        .bind(seq(row.serial)?)
        .bind(row.account_id.0)
        .bind(&row.caller)
        .bind(row.idem_key.as_deref())
        .bind(row.value_minor)
        .bind(&row.currency)
        .bind(row.transfer_id.0)
        .bind(&row.actor)
        .bind(row.redeemed_at)
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn redemption(&mut self, serial: Serial) -> StoreResult<Option<RedemptionRow>> {
        sqlx::query_as::<Db, RedemptionDbRow>("SELECT * FROM redemption WHERE serial = $1")
            .bind(seq(serial)?)
            .fetch_optional(&mut *self.tx)
            .await?
            .map(RedemptionRow::try_from)
            .transpose()
    }

    async fn redemption_by_key(
        &mut self,
        caller: &str,
        key: &str,
    ) -> StoreResult<Option<RedemptionRow>> {
        sqlx::query_as::<Db, RedemptionDbRow>(
            "SELECT * FROM redemption WHERE caller = $1 AND idem_key = $2",
        )
        .bind(caller)
        .bind(key)
        .fetch_optional(&mut *self.tx)
        .await?
        .map(RedemptionRow::try_from)
        .transpose()
    }

    async fn take_slots(&mut self, windows: &[(Window, u32)]) -> StoreResult<Vec<Option<i64>>> {
        // One statement: each row's lock is taken before its condition is evaluated, so two
        // callers never both see a window's last free slot. Rows are locked in the order given,
        // the same in every attempt, so two attempts never wait on each other in a circle.
        let mut upsert =
            QueryBuilder::<Db>::new("WITH wanted (subject, span_ms, start_ms, cap) AS (VALUES ");
        let mut rows = upsert.separated(", ");
        for (window, limit) in windows {
            window_row(&mut rows, window, Some(i64::from(*limit)));
        }
        // `WHERE true` tells SQLite's parser the ON CONFLICT belongs to the INSERT.
        upsert.push(
            ") INSERT INTO redeem_window (subject, span_ms, start_ms, used) \
             SELECT subject, span_ms, start_ms, 1 FROM wanted WHERE true \
             ON CONFLICT (subject, span_ms, start_ms) DO UPDATE \
             SET used = redeem_window.used + 1 \
             WHERE redeem_window.used - redeem_window.given < (SELECT cap FROM wanted \
             WHERE wanted.subject = excluded.subject AND wanted.span_ms = excluded.span_ms) \
             RETURNING subject, span_ms, used",
        );
        let taken: Vec<(String, i64, i64)> =
            upsert.build_query_as().fetch_all(&mut *self.tx).await?;
        Ok(windows
            .iter()
            .map(|(w, _)| {
                taken
                    .iter()
                    .find(|(subject, span, _)| *subject == w.subject && *span == w.span_ms)
                    .map(|(_, _, used)| *used)
            })
            .collect())
    }

    async fn prune_windows(&mut self, subject: &str, ended_ms: i64) -> StoreResult<()> {
        sqlx::query::<Db>(
            "DELETE FROM redeem_window WHERE subject = $1 AND start_ms + span_ms <= $2",
        )
        .bind(subject)
        .bind(ended_ms)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn give_slots(&mut self, windows: &[Window]) -> StoreResult<()> {
        if windows.is_empty() {
            return Ok(());
        }
        // An upsert, not an UPDATE: it locks the rows in the order given, as `take_slots` does,
        // where an UPDATE's order would be the planner's, and two attempts could each hold a
        // row the other waits for. A window pruned meanwhile (it ended) comes back empty, which
        // counts nothing and goes with the next prune.
        let mut upsert =
            QueryBuilder::<Db>::new("WITH returned (subject, span_ms, start_ms) AS (VALUES ");
        let mut rows = upsert.separated(", ");
        for window in windows {
            window_row(&mut rows, window, None);
        }
        upsert.push(
            ") INSERT INTO redeem_window (subject, span_ms, start_ms, used, given) \
             SELECT subject, span_ms, start_ms, 0, 0 FROM returned WHERE true \
             ON CONFLICT (subject, span_ms, start_ms) DO UPDATE \
             SET given = redeem_window.given + 1 WHERE redeem_window.given < redeem_window.used",
        );
        upsert.build().execute(&mut *self.tx).await?;
        Ok(())
    }

    async fn insert_attempt(&mut self, row: &AttemptRow) -> StoreResult<()> {
        sqlx::query::<Db>(
            "INSERT INTO redeem_attempt (account_id, caller, serial, outcome, at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(row.account_id.0)
        .bind(&row.caller)
        .bind(row.serial.map(seq).transpose()?)
        .bind(&row.outcome)
        .bind(row.at)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn attempts(
        &mut self,
        account: Option<AccountId>,
        serial: Option<Serial>,
        rows: PageRows,
    ) -> StoreResult<Vec<AttemptRow>> {
        // 0 matches no account and no card: ids and sequence numbers start at 1.
        all(sqlx::query_as::<Db, AttemptDbRow>(
            "SELECT * FROM redeem_attempt WHERE account_id = $1 OR serial = $2 \
             ORDER BY attempt_id DESC LIMIT $3",
        )
        .bind(account.map_or(0, |a| a.0))
        .bind(serial.map(seq).transpose()?.unwrap_or(0))
        .bind(i64::from(rows.get()))
        .fetch_all(&mut *self.tx)
        .await?)
    }
}
