//! Redemption's repository: finding a card by its code's digests, the card's guarded move to
//! redeemed, its redemption record (also the caller's idempotency record), the guessing limits'
//! window counters and the attempt log. Which outcome a read means is the service's.

use std::future::Future;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::StoreResult;
use crate::codegen::CodeDigest;
use crate::domain::{AccountId, CardState, Currency, PageRows, Region, Serial, TransferId};
use crate::keys::KeyId;

/// A card found by a code's digest, with everything a redemption needs to judge it, read in one
/// statement so that every outcome costs the same reads. The digest is held only to compare it
/// in constant time; it is never shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardMatch {
    /// The card.
    pub serial: Serial,
    /// Its batch.
    pub batch_id: i64,
    /// The lookup key its digest is made under.
    pub key_id: KeyId,
    /// Its digest.
    pub digest: CodeDigest,
    /// Its state.
    pub state: CardState,
    /// The block's reason code, while blocked.
    pub blocked_reason: Option<String>,
    /// When its funds expire, Unix ms (`None`: never, or not sold).
    pub funds_expire_ms: Option<i64>,
    /// Its batch's storefront.
    pub region: Region,
    /// Its sale's value (minor units) and currency, once it was sold (kept after a void).
    pub sale: Option<(i64, Currency)>,
    /// The account it was redeemed into, once it was.
    pub redeemed_into: Option<AccountId>,
}

/// A card's redemption as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedemptionRow {
    /// The card.
    pub serial: Serial,
    /// The account credited.
    pub account_id: AccountId,
    /// Who asked (the authenticated caller).
    pub caller: String,
    /// The caller's idempotency key, if one was given.
    pub idem_key: Option<String>,
    /// The value moved, minor units.
    pub value_minor: i64,
    /// Its currency.
    pub currency: String,
    /// The transfer.
    pub transfer_id: TransferId,
    /// The actor, as the audit trail names it.
    pub actor: String,
    /// When.
    pub redeemed_at: DateTime<Utc>,
}

/// One fixed window of a guessing limit: `span_ms` long from `start_ms`, for one subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// `account:{id}` or `caller:{caller}`.
    pub subject: String,
    /// Its length, ms.
    pub span_ms: i64,
    /// Its start, Unix ms.
    pub start_ms: i64,
}

/// One refused redemption attempt, for the support desk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttemptRow {
    /// Its id.
    pub attempt_id: i64,
    /// The account the code was to be redeemed into.
    pub account_id: AccountId,
    /// Who asked.
    pub caller: String,
    /// The card the code matched, if it matched one.
    pub serial: Option<Serial>,
    /// The reason's code (`redeem.not_found`, …).
    pub outcome: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// Redemptions, guessing limits and the attempt log.
pub trait RedeemRepo {
    /// Cards whose digest is one of `digests` (each with the key it was made under), with their
    /// batch's storefront, their sale and their redemption.
    fn cards_by_digest(
        &mut self,
        digests: &[(KeyId, CodeDigest)],
    ) -> impl Future<Output = StoreResult<Vec<CardMatch>>> + Send;

    /// Moves an active, unblocked card whose funds have not expired at `now_ms` to redeemed,
    /// in one guarded update; whether it moved.
    fn redeem_card(
        &mut self,
        serial: Serial,
        now_ms: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Records a redemption; `false` (nothing written) when the card has one already or the
    /// caller's key is taken.
    fn insert_redemption(
        &mut self,
        row: &RedemptionRow,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// A card's redemption.
    fn redemption(
        &mut self,
        serial: Serial,
    ) -> impl Future<Output = StoreResult<Option<RedemptionRow>>> + Send;

    /// The redemption a caller recorded under an idempotency key.
    fn redemption_by_key(
        &mut self,
        caller: &str,
        key: &str,
    ) -> impl Future<Output = StoreResult<Option<RedemptionRow>>> + Send;

    /// Takes one slot in each window holding fewer attempts than its limit, in one conditional
    /// upsert; for each window, in order, the attempts it has taken so far, given back or not
    /// (1 for a subject's first in the window), or `None` where it was full (nothing taken).
    fn take_slots(
        &mut self,
        windows: &[(Window, u32)],
    ) -> impl Future<Output = StoreResult<Vec<Option<i64>>>> + Send;

    /// Deletes a subject's windows that ended at or before `ended_ms`.
    fn prune_windows(
        &mut self,
        subject: &str,
        ended_ms: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Gives a slot of each window back, in one statement.
    fn give_slots(&mut self, windows: &[Window]) -> impl Future<Output = StoreResult<()>> + Send;

    /// Logs a refused attempt.
    fn insert_attempt(&mut self, row: &AttemptRow) -> impl Future<Output = StoreResult<()>> + Send;

    /// Refused attempts on an account or a card, newest first, at most `rows`.
    fn attempts(
        &mut self,
        account: Option<AccountId>,
        serial: Option<Serial>,
        rows: PageRows,
    ) -> impl Future<Output = StoreResult<Vec<AttemptRow>>> + Send;
}
