//! The point of sale's repository: stores, POS requests, each card's state, flags, activation
//! and history. A card changes only by a guarded update whose condition names the state it
//! must be in; which change is allowed from where is the service's.

use std::future::Future;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::StoreResult;
use crate::domain::{
    Batch, CardAction, CardState, PageRows, RetailStore, RetailerId, Serial, SerialRange,
    StoreCode, TransferId,
};

/// A card's state and flags, as a transition reads them to explain a refusal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CardStatus {
    /// The card.
    pub serial: Serial,
    /// Its batch.
    pub batch_id: i64,
    /// Its state.
    pub state: CardState,
    /// The block's reason code, while blocked.
    pub blocked_reason: Option<String>,
    /// When its code was first tried before it was sold (Unix ms), while exposed.
    pub exposed_ms: Option<i64>,
}

/// What a POS request is: everything its natural key must agree on for a retry to replay it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PosOperation {
    /// Activate a card or a range.
    Activate,
    /// Void one card.
    Void,
}

impl PosOperation {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            PosOperation::Activate => "activate",
            PosOperation::Void => "void",
        }
    }
}

/// A POS request as stored: its natural key, what it asked, and its first answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PosRequestRow {
    /// Its id (0 until stored).
    pub request_id: i64,
    /// The retailer.
    pub retailer_id: RetailerId,
    /// The store.
    pub store_code: String,
    /// The terminal.
    pub terminal: String,
    /// The POS transaction.
    pub pos_txn: String,
    /// The serials.
    pub range: SerialRange,
    /// What it asked for.
    pub operation: String,
    /// The value asked for (an activation), in minor units.
    pub value_minor: Option<i64>,
    /// The POS time given, Unix ms.
    pub pos_time_ms: Option<i64>,
    /// The first answer, as JSON (empty until it is decided).
    pub result: String,
    /// Who asked.
    pub actor: String,
    /// When tender recorded it.
    pub recorded_at: DateTime<Utc>,
}

/// A card's activation as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActivationRow {
    /// The card.
    pub serial: Serial,
    /// The POS request that sold it.
    pub request_id: i64,
    /// Its face value, minor units.
    pub value_minor: i64,
    /// The retailer's commission on it, minor units.
    pub commission_minor: i64,
    /// The currency.
    pub currency: String,
    /// The store's jurisdiction, ISO 3166-2.
    pub jurisdiction: String,
    /// The state of the purchaser's address (ISO 3166-2), where the sale captured it.
    pub purchaser_state: Option<String>,
    /// When it was sold (the POS time where given).
    pub activated_at: DateTime<Utc>,
    /// When its funds expire; `None` for never.
    pub funds_expire_at: Option<DateTime<Utc>>,
    /// The activation's transfer.
    pub transfer_id: TransferId,
    /// Why a person should look at it.
    pub review: Option<String>,
    /// The void's POS request, once voided.
    pub void_request_id: Option<i64>,
    /// The void's transfer, once voided.
    pub void_transfer_id: Option<TransferId>,
}

/// One line of a card's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CardEventRow {
    /// The card.
    pub serial: Serial,
    /// What happened.
    pub action: CardAction,
    /// The reason code given, where one is.
    pub reason: Option<String>,
    /// The POS request behind it, where one is.
    pub request_id: Option<i64>,
    /// Who did it.
    pub actor: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// Stores, POS requests and card lifecycles.
pub trait PosRepo {
    /// Adds a store; `false` when the retailer already has one with this code.
    fn insert_store(
        &mut self,
        store: &RetailStore,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// A retailer's store.
    fn store(
        &mut self,
        retailer: RetailerId,
        code: &StoreCode,
    ) -> impl Future<Output = StoreResult<Option<RetailStore>>> + Send;

    /// Stores by retailer and code, of one retailer or all, at most `rows`.
    fn stores(
        &mut self,
        retailer: Option<RetailerId>,
        rows: PageRows,
    ) -> impl Future<Output = StoreResult<Vec<RetailStore>>> + Send;

    /// The batch whose serials hold `serial`.
    fn batch_of(
        &mut self,
        serial: Serial,
    ) -> impl Future<Output = StoreResult<Option<Batch>>> + Send;

    /// Records a POS request under its natural key, in the transaction's first write, so a
    /// concurrent copy waits for this one to end; `None` when the key is already recorded.
    fn claim_request(
        &mut self,
        request: &PosRequestRow,
    ) -> impl Future<Output = StoreResult<Option<i64>>> + Send;

    /// The request recorded under `request`'s natural key.
    fn request_by_key(
        &mut self,
        request: &PosRequestRow,
    ) -> impl Future<Output = StoreResult<Option<PosRequestRow>>> + Send;

    /// A request by id.
    fn request(
        &mut self,
        id: i64,
    ) -> impl Future<Output = StoreResult<Option<PosRequestRow>>> + Send;

    /// Stores a request's answer.
    fn set_request_result(
        &mut self,
        id: i64,
        result: &str,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Moves every unblocked card of `range` in state `from` to `to` with `funds_expire` as its
    /// funds-expiry, except those exposed at or before `exposed_after_ms`; returns each moved
    /// card with its exposure time.
    fn transition_range(
        &mut self,
        range: SerialRange,
        from: CardState,
        to: CardState,
        exposed_after_ms: i64,
        funds_expire: Option<DateTime<Utc>>,
    ) -> impl Future<Output = StoreResult<Vec<(Serial, Option<i64>)>>> + Send;

    /// Moves one unblocked card from `from` to `to`; whether it moved.
    fn transition(
        &mut self,
        serial: Serial,
        from: CardState,
        to: CardState,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// The state and flags of the cards of `range` that exist, in order.
    fn card_statuses(
        &mut self,
        range: SerialRange,
    ) -> impl Future<Output = StoreResult<Vec<CardStatus>>> + Send;

    /// Blocks an unblocked card in one of `states` with `reason`; whether it was blocked.
    fn block_card(
        &mut self,
        serial: Serial,
        reason: &str,
        states: [CardState; 2],
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Lifts a card's block; whether it was blocked.
    fn unblock_card(&mut self, serial: Serial) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Marks a card exposed at `at_ms`, unless it already is; whether it was marked.
    fn expose_card(
        &mut self,
        serial: Serial,
        at_ms: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Clears a card's exposure; whether it was exposed.
    fn clear_exposure(&mut self, serial: Serial) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Records activations, one row per card.
    fn insert_activations(
        &mut self,
        rows: &[ActivationRow],
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// A card's activation.
    fn activation(
        &mut self,
        serial: Serial,
    ) -> impl Future<Output = StoreResult<Option<ActivationRow>>> + Send;

    /// Records a card's void on its activation.
    fn record_void(
        &mut self,
        serial: Serial,
        request_id: i64,
        transfer: TransferId,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Appends lines to cards' histories.
    fn insert_card_events(
        &mut self,
        events: &[CardEventRow],
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// A card's history, oldest first, at most `rows` lines.
    fn card_events(
        &mut self,
        serial: Serial,
        rows: PageRows,
    ) -> impl Future<Output = StoreResult<Vec<CardEventRow>>> + Send;
}
