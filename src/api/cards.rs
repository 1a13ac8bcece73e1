//! Cards over HTTP, through the same service `tender activate`, `void`, `block`, `unblock` and
//! `card show` use. Cards are named by serial; no route takes or shows a code.
//!
//! `POST /v1/activations` and `POST /v1/voids` (point-of-sale keys) act for the key's retailer,
//! never one the body names, and are idempotent on the POS natural key (store, terminal, POS
//! transaction, serials): 201 for a new sale or void, 200 with the first answer for a retry.
//! A store-bound key acts only for its store (403 `api.forbidden_store`).
//!
//! Tenant isolation: to a point-of-sale key, a card issued to another retailer is answered
//! exactly as a card that does not exist (404 `card.not_found`), whether read, sold or voided.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::batches::{BatchValue, scope};
use super::error::ApiError;
use super::json::Body;
use crate::app::App;
use crate::domain::{Actor, CardAction, CardState, Money, Serial, StoreCode, TransferId};
use crate::service::cards::{
    ActivateForm, ActivationView, CardError, CardResult, CardView, PosForm, PosResult, VoidForm,
};
use crate::store::Store;
use crate::store::pos::{CardEventRow, CardStatus};

/// A value named at activation: a decimal string and its currency, which must be the card's.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ValueBody {
    /// A decimal string, such as "50.00"; never a JSON number.
    #[schema(example = "50.00", pattern = r"^[0-9]{1,15}(\.[0-9]{1,4})?$")]
    amount: String,
    /// ISO 4217, such as USD.
    #[schema(example = "USD", pattern = "^[A-Z]{3}$")]
    currency: String,
}

/// An activation's body: one card by `serial`, or a range of one batch up to `to_serial`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActivationBody {
    /// The card's serial, or the first of a range: 12 digits, or three groups of 4 separated
    /// by spaces or hyphens.
    #[schema(
        example = "000000000013",
        pattern = r"^([0-9]{12}|[0-9]{4}[ -][0-9]{4}[ -][0-9]{4})$"
    )]
    serial: String,
    /// The last serial of a range of one batch, at most 1,000 cards (`RANGE_CARDS_MAX`).
    #[serde(default)]
    #[schema(pattern = r"^([0-9]{12}|[0-9]{4}[ -][0-9]{4}[ -][0-9]{4})$")]
    to_serial: Option<String>,
    /// The value: required for a variable-value card (within its batch's range); for a
    /// fixed-value card absent, or the card's own value.
    #[serde(default)]
    value: Option<ValueBody>,
    /// The state of the purchaser's address, ISO 3166-2 (`US-NY`), where the till captured
    /// it: which state is owed the funds first if the card expires unredeemed.
    #[serde(default)]
    #[schema(example = "US-NY", pattern = r"^[A-Za-z]{2}-[A-Za-z0-9]{1,3}$")]
    purchaser_state: Option<String>,
    /// The store's id, as added with `tender store add`: 1 to 64 of A-Z a-z 0-9 . _ : -
    /// (`POS_ID_MAX_CHARS`).
    #[schema(example = "S-0042", pattern = r"^[A-Za-z0-9._:-]{1,64}$")]
    store: String,
    /// The till or terminal, in the same alphabet.
    #[schema(example = "T3", pattern = r"^[A-Za-z0-9._:-]{1,64}$")]
    terminal: String,
    /// The POS system's transaction id, in the same alphabet: with the store, terminal and
    /// serials, the request's natural key.
    #[schema(example = "88231", pattern = r"^[A-Za-z0-9._:-]{1,64}$")]
    pos_txn: String,
    /// When the sale happened at the till, RFC 3339, for a store-and-forward sale sent late: at
    /// most 5 minutes ahead and 7 days old. Absent: now.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    pos_time: Option<DateTime<Utc>>,
}

/// A void's body: one card, voided under the void's own POS transaction.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VoidBody {
    /// The card's serial.
    #[schema(
        example = "000000000013",
        pattern = r"^([0-9]{12}|[0-9]{4}[ -][0-9]{4}[ -][0-9]{4})$"
    )]
    serial: String,
    /// The store's id: the one that sold the card's retailer's card.
    #[schema(example = "S-0042", pattern = r"^[A-Za-z0-9._:-]{1,64}$")]
    store: String,
    /// The till or terminal.
    #[schema(example = "T3", pattern = r"^[A-Za-z0-9._:-]{1,64}$")]
    terminal: String,
    /// The POS system's transaction id for the void.
    #[schema(example = "88240", pattern = r"^[A-Za-z0-9._:-]{1,64}$")]
    pos_txn: String,
    /// When the void happened at the till, RFC 3339. Absent: now.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    pos_time: Option<DateTime<Utc>>,
}

/// A block's or unblock's body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FlagBody {
    /// A reason code: 1 to 32 lower-case letters, digits, - and _ (`NAME_MAX_CHARS`).
    #[schema(example = "lost_in_transit", pattern = r"^[a-z0-9_-]{1,32}$")]
    reason: String,
}

/// What became of one card of a POS request.
#[derive(Serialize, ToSchema)]
pub struct CardOutcome {
    /// The card.
    serial: Serial,
    /// `activated`, `voided`, or the stable code the card was refused with.
    #[schema(example = "activated")]
    outcome: String,
    /// Why it was refused, in a sentence; null when it was not.
    message: Option<String>,
    /// The value it carries now; null when it was refused.
    value: Option<Money>,
    /// When its funds expire; null for never, or when it was refused.
    #[schema(value_type = Option<String>, format = DateTime)]
    funds_expire_at: Option<DateTime<Utc>>,
    /// Why a person should look at the sale (`exposed_before_sale`); null when nothing calls
    /// for it.
    review: Option<String>,
}

impl From<CardResult> for CardOutcome {
    fn from(card: CardResult) -> CardOutcome {
        CardOutcome {
            serial: card.serial,
            outcome: card.outcome,
            message: card.message,
            value: card.value,
            funds_expire_at: card.funds_expire_at,
            review: card.review,
        }
    }
}

/// What an activation or a void did, card by card.
#[derive(Serialize, ToSchema)]
pub struct PosReply {
    /// The POS request as recorded; null when nothing was written (every card refused).
    #[schema(minimum = 1)]
    pos_request_id: Option<i64>,
    /// The transfer that moved the value; null when nothing was written.
    transfer_id: Option<TransferId>,
    /// One outcome per card, in serial order.
    cards: Vec<CardOutcome>,
    /// Whether this answers a retry: the first answer, and nothing new written.
    replayed: bool,
}

impl From<PosResult> for PosReply {
    fn from(result: PosResult) -> PosReply {
        PosReply {
            pos_request_id: result.request_id,
            transfer_id: result.transfer_id,
            cards: result.cards.into_iter().map(CardOutcome::from).collect(),
            replayed: result.replayed,
        }
    }
}

/// A card's state and flags, as a block or unblock left them.
#[derive(Serialize, ToSchema)]
pub struct CardFlags {
    /// The card.
    serial: Serial,
    /// Its state.
    state: CardState,
    /// The block's reason code while blocked; null otherwise.
    blocked: Option<String>,
    /// When its code was first tried before it was sold, while marked exposed; null otherwise.
    #[schema(value_type = Option<String>, format = DateTime)]
    exposed_at: Option<DateTime<Utc>>,
}

impl From<CardStatus> for CardFlags {
    fn from(status: CardStatus) -> CardFlags {
        CardFlags {
            serial: status.serial,
            state: status.state,
            blocked: status.blocked_reason,
            exposed_at: status.exposed_ms.and_then(DateTime::from_timestamp_millis),
        }
    }
}

/// A card's sale.
#[derive(Serialize, ToSchema)]
pub struct CardSaleReply {
    /// The store that sold it.
    store: String,
    /// The store's jurisdiction, ISO 3166-2.
    jurisdiction: String,
    /// The purchaser's address state (ISO 3166-2), where the till captured it; null otherwise.
    purchaser_state: Option<String>,
    /// The terminal.
    terminal: String,
    /// The POS transaction.
    pos_txn: String,
    /// When it was sold.
    #[schema(value_type = String, format = DateTime)]
    activated_at: DateTime<Utc>,
    /// Its face value.
    value: Money,
    /// The retailer's commission on it.
    commission: Money,
    /// When its funds expire; null for never.
    #[schema(value_type = Option<String>, format = DateTime)]
    funds_expire_at: Option<DateTime<Utc>>,
    /// The sale's transfer.
    transfer_id: TransferId,
    /// Why a person should look at the sale; null when nothing calls for it.
    review: Option<String>,
    /// The void's POS transaction, once voided; null otherwise.
    void_pos_txn: Option<String>,
    /// The void's transfer, once voided; null otherwise.
    void_transfer_id: Option<TransferId>,
}

impl From<ActivationView> for CardSaleReply {
    fn from(sale: ActivationView) -> CardSaleReply {
        CardSaleReply {
            store: sale.store,
            jurisdiction: sale.jurisdiction,
            purchaser_state: sale.purchaser_state,
            terminal: sale.terminal,
            pos_txn: sale.pos_txn,
            activated_at: sale.activated_at,
            value: sale.value,
            commission: sale.commission,
            funds_expire_at: sale.funds_expire_at,
            transfer_id: sale.transfer_id,
            review: sale.review,
            void_pos_txn: sale.void_pos_txn,
            void_transfer_id: sale.void_transfer_id,
        }
    }
}

/// One line of a card's history.
#[derive(Serialize, ToSchema)]
pub struct CardEvent {
    /// What happened.
    action: CardAction,
    /// The reason code given; null where none was.
    reason: Option<String>,
    /// The POS request behind it; null where none was.
    #[schema(minimum = 1)]
    pos_request_id: Option<i64>,
    /// Who did it, as the audit trail names them (`api:NAME`, `cli:USER`, …).
    actor: String,
    /// When.
    #[schema(value_type = String, format = DateTime)]
    at: DateTime<Utc>,
}

impl From<CardEventRow> for CardEvent {
    fn from(event: CardEventRow) -> CardEvent {
        CardEvent {
            action: event.action,
            reason: event.reason,
            pos_request_id: event.request_id,
            actor: event.actor,
            at: event.at,
        }
    }
}

/// A card as the support desk sees it: everything but its code.
#[derive(Serialize, ToSchema)]
pub struct CardReply {
    /// The card.
    serial: Serial,
    /// Its state.
    state: CardState,
    /// The block's reason code while blocked; null otherwise.
    blocked: Option<String>,
    /// When its code was first tried before it was sold, while marked exposed; null otherwise.
    #[schema(value_type = Option<String>, format = DateTime)]
    exposed_at: Option<DateTime<Utc>>,
    /// Its batch.
    #[schema(minimum = 1)]
    batch_id: i64,
    /// The retailer it was issued to.
    #[schema(minimum = 1)]
    retailer_id: i64,
    /// That retailer's name.
    retailer: String,
    /// The storefront country it is redeemed in, ISO 3166-1 alpha-2.
    #[schema(pattern = "^[A-Z]{2}$")]
    region: String,
    /// What its batch's cards are worth.
    batch_value: BatchValue,
    /// The expiry printed on it (its batch's); null for none.
    #[schema(value_type = Option<String>, format = DateTime)]
    expires_at: Option<DateTime<Utc>>,
    /// Its sale, once sold; null before.
    sale: Option<CardSaleReply>,
    /// Its history, oldest first: at most 200 lines (`CARD_HISTORY_ROWS`).
    history: Vec<CardEvent>,
}

impl From<CardView> for CardReply {
    fn from(view: CardView) -> CardReply {
        CardReply {
            serial: view.serial,
            state: view.state,
            blocked: view.blocked,
            exposed_at: view.exposed_at,
            batch_id: view.batch.id.0,
            retailer_id: view.retailer.id.0,
            retailer: view.retailer.name.to_string(),
            region: view.batch.region.to_string(),
            batch_value: view.batch.value.into(),
            expires_at: view.batch.expires_at,
            sale: view.activation.map(CardSaleReply::from),
            history: view.history.into_iter().map(CardEvent::from).collect(),
        }
    }
}

/// Activates one card or a range of one batch for the key's retailer: 201 when something was
/// sold; 200 for a retry (the first answer) or a range none of whose cards could be sold (each
/// says why, nothing written).
#[utoipa::path(
    post,
    path = "/v1/activations",
    operation_id = "activate_cards",
    tag = "cards",
    request_body = ActivationBody,
    responses(
        (status = 201, description = "Sold: one outcome per card of the request", body = PosReply),
        (status = 200, description = "A retry, answered as the first time (replayed: true); or a range none of whose cards could be sold, each saying why and nothing written", body = PosReply),
    ),
)]
pub async fn activate<S: Store>(
    State(app): State<App<S>>,
    caller: Caller,
    body: Body<ActivationBody>,
) -> Result<(StatusCode, Json<PosReply>), ApiError> {
    let retailer = own_retailer(&caller)?;
    let Body(body) = body;
    check_store(&caller, &body.store)?;
    let (value, currency) = match body.value {
        Some(ValueBody { amount, currency }) => (Some(amount), Some(currency)),
        None => (None, None),
    };
    let form = ActivateForm {
        pos: pos_form(body.store, body.terminal, body.pos_txn, body.pos_time),
        serial: body.serial,
        to_serial: body.to_serial,
        value,
        purchaser_state: body.purchaser_state,
    };
    let actor = Actor::api(&caller.0.name);
    let result = app
        .services()
        .cards()
        .activate_for(retailer, &form, currency.as_deref(), &actor)
        .await
        .map_err(answer)?;
    Ok(reply(result))
}

/// Voids a sold card of the key's retailer: its sale is reversed. 201 when voided; 200 for a
/// retry, answered as the first time.
#[utoipa::path(
    post,
    path = "/v1/voids",
    operation_id = "void_card",
    tag = "cards",
    request_body = VoidBody,
    responses(
        (status = 201, description = "Voided", body = PosReply),
        (status = 200, description = "A retry, answered as the first time (replayed: true)", body = PosReply),
    ),
)]
pub async fn void<S: Store>(
    State(app): State<App<S>>,
    caller: Caller,
    body: Body<VoidBody>,
) -> Result<(StatusCode, Json<PosReply>), ApiError> {
    let retailer = own_retailer(&caller)?;
    let Body(body) = body;
    check_store(&caller, &body.store)?;
    let form = VoidForm {
        pos: pos_form(body.store, body.terminal, body.pos_txn, body.pos_time),
        serial: body.serial,
    };
    let actor = Actor::api(&caller.0.name);
    let result = app
        .services()
        .cards()
        .void_for(retailer, &form, &actor)
        .await
        .map_err(answer)?;
    Ok(reply(result))
}

/// One card: state, flags, batch, retailer, sale and history; never its code. A point-of-sale
/// key sees only its own retailer's cards.
#[utoipa::path(
    get,
    path = "/v1/cards/{serial}",
    operation_id = "show_card",
    tag = "cards",
    params(("serial" = String, Path, pattern = r"^([0-9]{12}|[0-9]{4}-[0-9]{4}-[0-9]{4})$", description = "The card's serial: 12 digits, or three groups of 4 separated by hyphens")),
    responses(
        (status = 200, description = "The card", body = CardReply),
        (status = 422, description = "The serial is malformed or its check digit is wrong", body = super::doc::ErrorBody),
    ),
)]
pub async fn show<S: Store>(
    State(app): State<App<S>>,
    caller: Caller,
    Path(serial): Path<String>,
) -> Result<Json<CardReply>, ApiError> {
    let view = app
        .services()
        .cards()
        .show_for(&serial, scope(&caller)?)
        .await
        .map_err(answer)?;
    Ok(Json(view.into()))
}

/// Blocks a card (issued or active) with a reason code: it cannot be sold, redeemed or voided
/// until it is unblocked.
#[utoipa::path(
    post,
    path = "/v1/cards/{serial}/block",
    operation_id = "block_card",
    tag = "cards",
    params(("serial" = String, Path, pattern = r"^([0-9]{12}|[0-9]{4}-[0-9]{4}-[0-9]{4})$", description = "The card's serial")),
    request_body = FlagBody,
    responses((status = 200, description = "Blocked", body = CardFlags)),
)]
pub async fn block<S: Store>(
    State(app): State<App<S>>,
    caller: Caller,
    Path(serial): Path<String>,
    body: Body<FlagBody>,
) -> Result<Json<CardFlags>, ApiError> {
    let Body(body) = body;
    let actor = Actor::api(&caller.0.name);
    let status = app
        .services()
        .cards()
        .block(&serial, &body.reason, &actor)
        .await?;
    Ok(Json(status.into()))
}

/// Lifts a card's block, with a reason code.
#[utoipa::path(
    post,
    path = "/v1/cards/{serial}/unblock",
    operation_id = "unblock_card",
    tag = "cards",
    params(("serial" = String, Path, pattern = r"^([0-9]{12}|[0-9]{4}-[0-9]{4}-[0-9]{4})$", description = "The card's serial")),
    request_body = FlagBody,
    responses((status = 200, description = "Unblocked", body = CardFlags)),
)]
pub async fn unblock<S: Store>(
    State(app): State<App<S>>,
    caller: Caller,
    Path(serial): Path<String>,
    body: Body<FlagBody>,
) -> Result<Json<CardFlags>, ApiError> {
    let Body(body) = body;
    let actor = Actor::api(&caller.0.name);
    let status = app
        .services()
        .cards()
        .unblock(&serial, &body.reason, &actor)
        .await?;
    Ok(Json(status.into()))
}

/// The POS origin of a request; the retailer is the key's, so the form's name stays empty.
fn pos_form(
    store: String,
    terminal: String,
    pos_txn: String,
    pos_time: Option<DateTime<Utc>>,
) -> PosForm {
    PosForm {
        retailer: String::new(),
        store,
        terminal,
        pos_txn,
        pos_time,
    }
}

/// The retailer a point-of-sale key acts for.
fn own_retailer(caller: &Caller) -> Result<crate::domain::RetailerId, ApiError> {
    scope(caller)?.ok_or_else(|| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "api.forbidden",
            "only a point-of-sale key acts for a retailer",
        )
    })
}

/// Refuses a store-bound key acting for another store: 403 `api.forbidden_store`. A store id
/// that does not parse is left to the service, which names what is wrong with it.
fn check_store(caller: &Caller, store: &str) -> Result<(), ApiError> {
    match (&caller.0.store, StoreCode::parse(store)) {
        (Some(bound), Ok(asked)) if *bound != asked => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "api.forbidden_store",
            format!("this key acts only for store {bound}"),
        )),
        _ => Ok(()),
    }
}

/// 201 when the request wrote something; 200 for a retry or a request that wrote nothing.
fn reply(result: PosResult) -> (StatusCode, Json<PosReply>) {
    let status = if result.replayed || result.request_id.is_none() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    (status, Json(result.into()))
}

/// A refusal as HTTP. A card of another retailer is answered as one that does not exist: the
/// same status, code and sentence, so a key learns nothing of another tenant's cards.
fn answer(error: CardError) -> ApiError {
    match error {
        CardError::ForeignRetailer(serial) => ApiError::from(CardError::NotFound(serial)),
        error => ApiError::from(error),
    }
}
