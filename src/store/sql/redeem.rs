//! Redemptions, the guessing limits' windows and the attempt log. The card's move to redeemed
//! is one guarded `UPDATE` that also compares its funds-expiry with the clock; a window's slot
//! is one conditional upsert.

use sqlx::QueryBuilder;

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

impl RedeemRepo for SqlTx<Db> {
    async fn cards_by_digest(
        &mut self,
        digests: &[(KeyId, CodeDigest)],
    ) -> StoreResult<Vec<CardMatch>> {
        if digests.is_empty() {
            return Ok(Vec::new());
        }
        let mut select = QueryBuilder::<Db>::new(
            "SELECT serial, batch_id, lookup_key_id, digest, state, blocked_reason, \
             funds_expire_ms FROM card WHERE digest IN (",
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

    async fn take_slot(&mut self, window: &Window, limit: u32) -> StoreResult<Option<i64>> {
        // One statement: the row lock is taken before the condition is evaluated, so two
        // callers never both see the last free slot.
        let taken = sqlx::query_scalar::<Db, i64>(
            "INSERT INTO redeem_window (subject, span_ms, start_ms, used) VALUES ($1, $2, $3, 1) \
             ON CONFLICT (subject, span_ms, start_ms) DO UPDATE \
             SET used = redeem_window.used + 1 WHERE redeem_window.used < $4 RETURNING used",
        )
        .bind(&window.subject)
        .bind(window.span_ms)
        .bind(window.start_ms)
        .bind(i64::from(limit))
        .fetch_optional(&mut *self.tx)
        .await?;
        Ok(taken)
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

    async fn give_slot(&mut self, window: &Window) -> StoreResult<()> {
        sqlx::query::<Db>(
            "UPDATE redeem_window SET used = used - 1 \
             WHERE subject = $1 AND span_ms = $2 AND start_ms = $3 AND used > 0",
        )
        .bind(&window.subject)
        .bind(window.span_ms)
        .bind(window.start_ms)
        .execute(&mut *self.tx)
        .await?;
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
