//! Cards at the point of sale: stores, activation of a card or a box, void, block and unblock,
//! exposure, and the support desk's view of a card.
//!
//! A POS request is idempotent on its natural key (retailer, store, terminal, POS transaction,
//! serials), kept forever: the key is recorded in the transaction's first write, so a
//! concurrent copy waits for the first to end and then answers as it did; the same key with a
//! different request is refused. A request that changes nothing (every card refused) writes
//! nothing, so trying it again later is judged afresh.
//!
//! Every change of a card is one guarded update whose condition names the state it must be in,
//! committed with its transfer, its history line and its audit record; a change that races
//! another (a void and a block) finds the card moved and is refused with the reason.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Services;
use super::keys::KeyUseError;
use crate::audit::events::{self, ActivationAudit};
use crate::domain::{
    Actor, Batch, CardAction, CardSale, CardState, CardValue, Currency, Jurisdiction,
    JurisdictionError, LedgerValueError, Money, MoneyError, Name, PageRows, PosError, PosTxnId,
    Posting, Region, RetailStore, Retailer, RetailerError, RetailerId, RetailerName, Serial,
    SerialError, SerialRange, StoreCode, TerminalId, TransferId, check_pos_time,
};
use crate::error::{Classify, Kind};
use crate::store::pos::{ActivationRow, CardEventRow, CardStatus, PosOperation, PosRequestRow};
use crate::store::{
    AuditRepo, LedgerRepo, PosRepo, RetailerRepo, Store, StoreError, StoreResult, Tx,
};

/// Most lines of a card's history the support view shows.
pub const CARD_HISTORY_ROWS: u32 = 200;

/// Why a card at the point of sale was refused. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum CardError {
    /// A serial was refused.
    #[error(transparent)]
    Serial(#[from] SerialError),
    /// A store code, terminal, POS transaction, range or POS time was refused.
    #[error(transparent)]
    Pos(#[from] PosError),
    /// A jurisdiction was refused.
    #[error(transparent)]
    Jurisdiction(#[from] JurisdictionError),
    /// A retailer name was refused.
    #[error(transparent)]
    RetailerName(#[from] RetailerError),
    /// A value was refused.
    #[error(transparent)]
    Money(#[from] MoneyError),
    /// A reason code was refused.
    #[error(transparent)]
    Reason(#[from] LedgerValueError),
    /// No retailer has this name.
    #[error("no retailer is named {0}")]
    UnknownRetailer(RetailerName),
    /// The retailer has no store with this id.
    #[error("retailer {retailer} has no store {store}; add it with `tender store add`")]
    UnknownStore {
        /// The retailer.
        retailer: RetailerName,
        /// The store asked for.
        store: StoreCode,
    },
    /// The retailer already has a store with this id.
    #[error("retailer {retailer} already has a store {store}")]
    StoreExists {
        /// The retailer.
        retailer: RetailerName,
        /// The store.
        store: StoreCode,
    },
    /// No card was issued with this serial.
    #[error("no card has serial {0}")]
    NotFound(Serial),
    /// The card was issued to another retailer.
    #[error("card {0} was issued to another retailer; only that retailer may sell or void it")]
    ForeignRetailer(Serial),
    /// The range runs past the end of its first card's batch.
    #[error("the range runs past the end of card {0}'s batch; activate each batch's cards apart")]
    RangeSpansBatches(Serial),
    /// The card is for another storefront than the store's country.
    #[error("card {serial} is for the {card} storefront; this store is in {store}")]
    WrongRegion {
        /// The card.
        serial: Serial,
        /// Its storefront.
        card: Region,
        /// The store's country.
        store: Region,
    },
    /// A variable-value card was sold without a value.
    #[error("card {serial} takes a value from {min} to {max}; give one")]
    ValueRequired {
        /// The card.
        serial: Serial,
        /// The lowest value.
        min: Money,
        /// The highest value.
        max: Money,
    },
    /// A value outside the batch's range.
    #[error("card {serial} takes a value from {min} to {max}")]
    ValueOutOfRange {
        /// The card.
        serial: Serial,
        /// The lowest value.
        min: Money,
        /// The highest value.
        max: Money,
    },
    /// A value named in another currency than the card's.
    #[error("card {serial} is sold in {currency}")]
    WrongCurrency {
        /// The card.
        serial: Serial,
        /// The card's currency.
        currency: Currency,
    },
    /// A value other than a fixed-value card's.
    #[error("card {serial} carries a fixed value of {value}")]
    ValueFixed {
        /// The card.
        serial: Serial,
        /// Its value.
        value: Money,
    },
    /// The card is already active.
    #[error("card {0} is already active")]
    AlreadyActive(Serial),
    /// A void of a card that was never sold.
    #[error("card {0} was never sold, so there is nothing to void")]
    NotActive(Serial),
    /// The card's value already moved to an account.
    #[error("card {0} was already redeemed")]
    AlreadyRedeemed(Serial),
    /// The card was voided; it is never sold again.
    #[error("card {0} was voided and cannot be sold or used again")]
    Voided(Serial),
    /// The card's funds expired.
    #[error("card {0} has expired")]
    Expired(Serial),
    /// The card is blocked.
    #[error("card {0} is blocked; support must unblock it first")]
    Blocked(Serial),
    /// The card is already blocked.
    #[error("card {0} is already blocked")]
    AlreadyBlocked(Serial),
    /// The card is not blocked.
    #[error("card {0} is not blocked")]
    NotBlocked(Serial),
    /// The card's code was tried before it was sold: it may have been read off the shelf.
    #[error(
        "card {0}'s code was tried before the card was sold: take it off the shelf and hand it to the store manager"
    )]
    Exposed(Serial),
    /// The card is already marked exposed.
    #[error("card {0} is already marked exposed")]
    AlreadyExposed(Serial),
    /// The card is not marked exposed.
    #[error("card {0} is not marked exposed")]
    NotExposed(Serial),
    /// The POS transaction was used before for a different request on these serials.
    #[error("this POS transaction was already used for these serials with a different {field}")]
    RequestConflict {
        /// The first field that differs.
        field: &'static str,
    },
    /// The audit key could not be had.
    #[error(transparent)]
    Keys(#[from] KeyUseError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl CardError {
    /// The card a refusal is about, where it is about one.
    pub fn serial(&self) -> Option<Serial> {
        match self {
            CardError::NotFound(s)
            | CardError::ForeignRetailer(s)
            | CardError::RangeSpansBatches(s)
            | CardError::AlreadyActive(s)
            | CardError::NotActive(s)
            | CardError::AlreadyRedeemed(s)
            | CardError::Voided(s)
            | CardError::Expired(s)
            | CardError::Blocked(s)
            | CardError::AlreadyBlocked(s)
            | CardError::NotBlocked(s)
            | CardError::Exposed(s)
            | CardError::AlreadyExposed(s)
            | CardError::NotExposed(s) => Some(*s),
            CardError::WrongRegion { serial, .. }
            | CardError::ValueRequired { serial, .. }
            | CardError::ValueOutOfRange { serial, .. }
            | CardError::ValueFixed { serial, .. }
            | CardError::WrongCurrency { serial, .. } => Some(*serial),
            _ => None,
        }
    }
}

impl Classify for CardError {
    fn code(&self) -> &'static str {
        match self {
            CardError::Serial(e) => e.code(),
            CardError::Pos(e) => e.code(),
            CardError::Jurisdiction(e) => e.code(),
            CardError::RetailerName(e) => e.code(),
            CardError::Money(e) => e.code(),
            CardError::Reason(e) => e.code(),
            CardError::UnknownRetailer(_) => "store.unknown_retailer",
            CardError::UnknownStore { .. } => "pos.unknown_store",
            CardError::StoreExists { .. } => "pos.store_exists",
            CardError::NotFound(_) => "card.not_found",
            CardError::ForeignRetailer(_) => "card.foreign_retailer",
            CardError::RangeSpansBatches(_) => "activation.range_spans_batches",
            CardError::WrongRegion { .. } => "card.wrong_region",
            CardError::ValueRequired { .. } => "activation.value_required",
            CardError::ValueOutOfRange { .. } => "activation.value_out_of_range",
            CardError::ValueFixed { .. } => "activation.value_fixed",
            CardError::WrongCurrency { .. } => "activation.wrong_currency",
            CardError::AlreadyActive(_) => "card.already_active",
            CardError::NotActive(_) => "card.not_active",
            CardError::AlreadyRedeemed(_) => "card.already_redeemed",
            CardError::Voided(_) => "card.voided",
            CardError::Expired(_) => "card.expired",
            CardError::Blocked(_) => "card.blocked",
            CardError::AlreadyBlocked(_) => "card.already_blocked",
            CardError::NotBlocked(_) => "card.not_blocked",
            CardError::Exposed(_) => "card.exposed",
            CardError::AlreadyExposed(_) => "card.already_exposed",
            CardError::NotExposed(_) => "card.not_exposed",
            CardError::RequestConflict { .. } => "pos.request_conflict",
            CardError::Keys(e) => e.code(),
            CardError::Store(e) => e.code(),
        }
    }

    fn kind(&self) -> Kind {
        match self {
            CardError::Serial(_)
            | CardError::Pos(_)
            | CardError::Jurisdiction(_)
            | CardError::RetailerName(_)
            | CardError::Money(_)
            | CardError::Reason(_)
            | CardError::RangeSpansBatches(_)
            | CardError::ValueRequired { .. }
            | CardError::ValueOutOfRange { .. }
            | CardError::ValueFixed { .. }
            | CardError::WrongCurrency { .. } => Kind::Invalid,
            CardError::UnknownRetailer(_)
            | CardError::UnknownStore { .. }
            | CardError::NotFound(_) => Kind::NotFound,
            CardError::Keys(e) => e.kind(),
            CardError::Store(e) => e.kind(),
            _ => Kind::Conflict,
        }
    }
}

/// A store to add, as a caller gives it.
#[derive(Debug, Clone, Default)]
pub struct StoreForm {
    /// The retailer's name.
    pub retailer: String,
    /// The retailer's id for the store.
    pub store: String,
    /// ISO 3166-2, such as `US-CA`.
    pub jurisdiction: String,
}

/// Where a POS request comes from, as a caller gives it.
#[derive(Debug, Clone, Default)]
pub struct PosForm {
    /// The retailer's name.
    pub retailer: String,
    /// The store's id.
    pub store: String,
    /// The terminal.
    pub terminal: String,
    /// The POS transaction id.
    pub pos_txn: String,
    /// When the sale happened at the till, if the POS says (a store-and-forward sale).
    pub pos_time: Option<DateTime<Utc>>,
}

/// An activation, as a caller gives it.
#[derive(Debug, Clone, Default)]
pub struct ActivateForm {
    /// Where it comes from.
    pub pos: PosForm,
    /// The card, or the first of a range.
    pub serial: String,
    /// The last card of a range.
    pub to_serial: Option<String>,
    /// The value, for a variable-value card (or the fixed value, repeated).
    pub value: Option<String>,
    /// The state of the purchaser's address (ISO 3166-2, such as `US-NY`) where the till
    /// captured it: the first rule for which state is owed the funds if the card expires.
    pub purchaser_state: Option<String>,
}

/// An activation's sale terms, parsed: the value and currency given, and the purchaser's
/// address state.
struct Sold<'a> {
    value: Option<&'a str>,
    currency: Option<Currency>,
    purchaser_state: Option<Jurisdiction>,
}

impl<'a> Sold<'a> {
    fn parse(form: &'a ActivateForm, currency: Option<&str>) -> Result<Sold<'a>, CardError> {
        Ok(Sold {
            value: form.value.as_deref(),
            currency: currency.map(Currency::parse).transpose()?,
            purchaser_state: form
                .purchaser_state
                .as_deref()
                .map(Jurisdiction::parse)
                .transpose()?,
        })
    }
}

/// A void, as a caller gives it.
#[derive(Debug, Clone, Default)]
pub struct VoidForm {
    /// Where it comes from.
    pub pos: PosForm,
    /// The card.
    pub serial: String,
}

/// What became of one card of a POS request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardResult {
    /// The card.
    pub serial: Serial,
    /// `activated`, `voided`, or the code of the reason it was refused.
    pub outcome: String,
    /// Why it was refused, in a sentence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The value it carries now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Money>,
    /// When its funds expire (`None`: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub funds_expire_at: Option<DateTime<Utc>>,
    /// Why a person should look at the sale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<String>,
}

impl CardResult {
    fn refused(error: &CardError) -> CardResult {
        CardResult {
            serial: error.serial().expect("a card's refusal names the card"),
            outcome: error.code().to_string(),
            message: Some(error.to_string()),
            value: None,
            funds_expire_at: None,
            review: None,
        }
    }
}

/// What a POS request did, card by card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PosResult {
    /// The request, as recorded; `None` when nothing was written (every card refused).
    pub request_id: Option<i64>,
    /// The transfer that moved the value.
    pub transfer_id: Option<TransferId>,
    /// One result per card, in serial order.
    pub cards: Vec<CardResult>,
    /// Whether this answers a retry: the first answer, and nothing new written.
    #[serde(skip_deserializing)]
    pub replayed: bool,
}

/// The support desk's view of a card: everything but its code.
#[derive(Debug, Clone, Serialize)]
pub struct CardView {
    /// The card.
    pub serial: Serial,
    /// Its state.
    pub state: CardState,
    /// The block's reason code, while blocked.
    pub blocked: Option<String>,
    /// When its code was first tried before it was sold, while exposed.
    pub exposed_at: Option<DateTime<Utc>>,
    /// Its batch.
    pub batch: Batch,
    /// The retailer it was issued to.
    pub retailer: Retailer,
    /// Its sale, once sold.
    pub activation: Option<ActivationView>,
    /// Its history, oldest first.
    pub history: Vec<CardEventRow>,
}

/// A card's sale as the support view shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ActivationView {
    /// The store.
    pub store: String,
    /// The store's jurisdiction.
    pub jurisdiction: String,
    /// The purchaser's address state, where the till captured it.
    pub purchaser_state: Option<String>,
    /// The terminal.
    pub terminal: String,
    /// The POS transaction.
    pub pos_txn: String,
    /// When it was sold.
    pub activated_at: DateTime<Utc>,
    /// Its face value.
    pub value: Money,
    /// The retailer's commission.
    pub commission: Money,
    /// When its funds expire; `None` for never.
    pub funds_expire_at: Option<DateTime<Utc>>,
    /// The activation's transfer.
    pub transfer_id: TransferId,
    /// Why a person should look at it.
    pub review: Option<String>,
    /// The void's POS transaction, once voided.
    pub void_pos_txn: Option<String>,
    /// The void's transfer.
    pub void_transfer_id: Option<TransferId>,
}

/// Why an exposed card's offline sale waits for a person.
const REVIEW_EXPOSED: &str = "exposed_before_sale";

/// Point-of-sale use cases.
#[derive(Debug)]
pub struct Cards<'a, S>(pub(super) &'a Services<S>);

/// The retailer a POS request acts for: named by the caller (the CLI), or the one a
/// point-of-sale key is bound to (the API), which the request's body never names.
enum RetailerRef {
    Named(RetailerName),
    Id(RetailerId),
}

/// A parsed POS request's origin.
struct Origin {
    retailer: RetailerRef,
    store: StoreCode,
    terminal: TerminalId,
    pos_txn: PosTxnId,
    pos_time: Option<DateTime<Utc>>,
}

impl Origin {
    /// Checks a new request's POS time against tender's clock `now`.
    fn check_pos_time(&self, now: DateTime<Utc>) -> Result<(), CardError> {
        if let Some(pos_time) = self.pos_time {
            check_pos_time(pos_time, now)?;
        }
        Ok(())
    }
}

/// The retailer, store and batch a request names, checked against each other.
struct Sale {
    retailer: Retailer,
    store: RetailStore,
    batch: Batch,
}

impl<S: Store> Cards<'_, S> {
    /// Adds a retailer's store.
    pub async fn add_store(
        &self,
        form: &StoreForm,
        actor: &Actor,
    ) -> Result<RetailStore, CardError> {
        let retailer = RetailerName::parse(&form.retailer)?;
        let code = StoreCode::parse(&form.store)?;
        let jurisdiction = Jurisdiction::parse(&form.jurisdiction)?;
        rerun!(self.add_store_once(&retailer, &code, &jurisdiction, actor))
    }

    async fn add_store_once(
        &self,
        name: &RetailerName,
        code: &StoreCode,
        jurisdiction: &Jurisdiction,
        actor: &Actor,
    ) -> Result<RetailStore, CardError> {
        let services = self.0;
        let mut tx = services.store.begin().await?;
        let retailer = retailer_named(&mut tx, name).await?;
        let store = RetailStore {
            retailer_id: retailer.id,
            code: code.clone(),
            jurisdiction: jurisdiction.clone(),
            created_at: services.clock.now(),
        };
        if !tx.insert_store(&store).await? {
            return Err(CardError::StoreExists {
                retailer: name.clone(),
                store: code.clone(),
            });
        }
        let signer = services.signer(&mut tx).await?;
        tx.append(
            &signer,
            &events::store_added(actor, &store),
            store.created_at,
        )
        .await?;
        tx.commit().await?;
        Ok(store)
    }

    /// Stores of one retailer (by name) or of all, at most `rows`.
    pub async fn stores(
        &self,
        retailer: Option<&str>,
        rows: PageRows,
    ) -> Result<Vec<RetailStore>, CardError> {
        let name = retailer.map(RetailerName::parse).transpose()?;
        let mut tx = self.0.store.read().await?;
        let id = match &name {
            Some(name) => Some(retailer_named(&mut tx, name).await?.id),
            None => None,
        };
        Ok(tx.stores(id, rows).await?)
    }

    /// Activates one card, or a contiguous range of one batch. A single card that is refused
    /// is an error; a range answers card by card.
    pub async fn activate(
        &self,
        form: &ActivateForm,
        actor: &Actor,
    ) -> Result<PosResult, CardError> {
        let retailer = RetailerRef::Named(RetailerName::parse(&form.pos.retailer)?);
        let origin = self.origin(retailer, &form.pos)?;
        let first = Serial::parse(&form.serial)?;
        let last = form.to_serial.as_deref().map(Serial::parse).transpose()?;
        let range = SerialRange::new(first, last)?;
        let sold = Sold::parse(form, None)?;
        rerun!(self.activate_once(&origin, range, &sold, actor))
    }

    /// [`Cards::activate`] for a point-of-sale key of `retailer`: the retailer is the key's
    /// (the form's retailer name is not read), and a value given names its `currency`, which
    /// must be the card's. A card of another retailer is refused as
    /// [`CardError::ForeignRetailer`].
    pub async fn activate_for(
        &self,
        retailer: RetailerId,
        form: &ActivateForm,
        currency: Option<&str>,
        actor: &Actor,
    ) -> Result<PosResult, CardError> {
        let origin = self.origin(RetailerRef::Id(retailer), &form.pos)?;
        let first = Serial::parse(&form.serial)?;
        let last = form.to_serial.as_deref().map(Serial::parse).transpose()?;
        let range = SerialRange::new(first, last)?;
        let sold = Sold::parse(form, currency)?;
        rerun!(self.activate_once(&origin, range, &sold, actor))
    }

    async fn activate_once(
        &self,
        origin: &Origin,
        range: SerialRange,
        sold: &Sold<'_>,
        actor: &Actor,
    ) -> Result<PosResult, CardError> {
        let services = self.0;
        let mut tx = services.store.begin().await?;
        let at = services.clock.now();
        let sale = sale(&mut tx, origin, range).await?;
        if sale.batch.region != sale.store.jurisdiction.country() {
            return Err(CardError::WrongRegion {
                serial: range.first,
                card: sale.batch.region,
                store: sale.store.jurisdiction.country(),
            });
        }
        let value = card_value(&sale.batch, range.first, sold.value, sold.currency)?;
        let request = request_row(
            origin,
            &sale,
            range,
            PosOperation::Activate,
            Some(value),
            actor,
            at,
        );
        let Some(request_id) = tx.claim_request(&request).await? else {
            return replay(&mut tx, &request).await;
        };
        // A new request only: the claim rolls back with the refusal.
        origin.check_pos_time(at)?;
        let sold_at = origin.pos_time.unwrap_or(at);
        let funds_expire_at = sale
            .store
            .jurisdiction
            .funds_expiry(sale.batch.expires_at, sold_at);
        let moved = tx
            .transition_range(
                range,
                CardState::Issued,
                CardState::Active,
                sold_at.timestamp_millis(),
                funds_expire_at,
            )
            .await?;
        let mut results = Vec::with_capacity(range.cards() as usize);
        let refused = refusals(&mut tx, range, &moved, CardState::Issued).await?;
        if moved.is_empty() {
            // The claim rolls back with the rest, and a retry is judged anew.
            return nothing_changed(range, refused);
        }
        let sales: Vec<CardSale> = moved
            .iter()
            .map(|(serial, _)| CardSale {
                serial: *serial,
                value_minor: value.minor(),
                commission_minor: sale.retailer.commission_bp.of(value.minor()),
            })
            .collect();
        let currency = value.currency();
        let posting = Posting::activation(
            sale.retailer.id,
            currency,
            &sales,
            origin.pos_txn.to_string(),
            sold_at,
        );
        let transfer_id = tx
            .insert_transfer(&posting, &vec![None; posting.legs.len()], at)
            .await?;
        let mut activations = Vec::with_capacity(moved.len());
        let mut history = Vec::with_capacity(moved.len());
        for (card, (serial, exposed)) in sales.iter().zip(&moved) {
            let review = exposed.map(|_| REVIEW_EXPOSED.to_string());
            activations.push(ActivationRow {
                serial: *serial,
                request_id,
                value_minor: card.value_minor,
                commission_minor: card.commission_minor,
                currency: currency.code().to_string(),
                jurisdiction: sale.store.jurisdiction.to_string(),
                purchaser_state: sold.purchaser_state.as_ref().map(ToString::to_string),
                activated_at: sold_at,
                funds_expire_at,
                transfer_id,
                review: review.clone(),
                void_request_id: None,
                void_transfer_id: None,
            });
            history.push(CardEventRow {
                serial: *serial,
                action: CardAction::Activated,
                reason: review.clone(),
                request_id: Some(request_id),
                actor: actor.to_string(),
                at,
            });
            results.push(CardResult {
                serial: *serial,
                outcome: "activated".to_string(),
                message: None,
                value: Some(value),
                funds_expire_at,
                review,
            });
        }
        tx.insert_activations(&activations).await?;
        tx.insert_card_events(&history).await?;
        results.extend(refused.iter().map(CardResult::refused));
        results.sort_by_key(|r| r.serial);
        let result = PosResult {
            request_id: Some(request_id),
            transfer_id: Some(transfer_id),
            cards: results,
            replayed: false,
        };
        tx.set_request_result(request_id, &to_json(&result)).await?;
        let audit = ActivationAudit {
            request_id,
            retailer_id: sale.retailer.id.0,
            store: sale.store.code.as_str(),
            terminal: origin.terminal.as_str(),
            pos_txn: origin.pos_txn.as_str(),
            range,
            activated: runs(moved.iter().map(|(s, _)| *s)),
            value,
            transfer_id,
            review: moved
                .iter()
                .filter(|(_, exposed)| exposed.is_some())
                .map(|(s, _)| *s)
                .collect(),
        };
        let signer = services.signer(&mut tx).await?;
        tx.append(&signer, &events::cards_activated(actor, &audit), at)
            .await?;
        tx.commit().await?;
        Ok(result)
    }

    /// Voids an active card's sale for the retailer that sold it: the activation's transfer is
    /// reversed and the card is never sold again.
    pub async fn void(&self, form: &VoidForm, actor: &Actor) -> Result<PosResult, CardError> {
        let retailer = RetailerRef::Named(RetailerName::parse(&form.pos.retailer)?);
        self.void_as(retailer, form, actor).await
    }

    /// [`Cards::void`] for a point-of-sale key of `retailer`: the retailer is the key's (the
    /// form's retailer name is not read). A card of another retailer is refused as
    /// [`CardError::ForeignRetailer`].
    pub async fn void_for(
        &self,
        retailer: RetailerId,
        form: &VoidForm,
        actor: &Actor,
    ) -> Result<PosResult, CardError> {
        self.void_as(RetailerRef::Id(retailer), form, actor).await
    }

    async fn void_as(
        &self,
        retailer: RetailerRef,
        form: &VoidForm,
        actor: &Actor,
    ) -> Result<PosResult, CardError> {
        let origin = self.origin(retailer, &form.pos)?;
        let serial = Serial::parse(&form.serial)?;
        let range = SerialRange::new(serial, None)?;
        rerun!(self.void_once(&origin, range, actor))
    }

    async fn void_once(
        &self,
        origin: &Origin,
        range: SerialRange,
        actor: &Actor,
    ) -> Result<PosResult, CardError> {
        let services = self.0;
        let mut tx = services.store.begin().await?;
        let at = services.clock.now();
        let serial = range.first;
        let sale = sale(&mut tx, origin, range).await?;
        let request = request_row(origin, &sale, range, PosOperation::Void, None, actor, at);
        let Some(request_id) = tx.claim_request(&request).await? else {
            return replay(&mut tx, &request).await;
        };
        // A new request only: the claim rolls back with the refusal.
        origin.check_pos_time(at)?;
        if !tx
            .transition(serial, CardState::Active, CardState::Voided)
            .await?
        {
            let refused = refusals(&mut tx, range, &[], CardState::Active).await?;
            return nothing_changed(range, refused);
        }
        let activation = tx
            .activation(serial)
            .await?
            .ok_or_else(|| StoreError::corrupt("an active card without its activation"))?;
        let currency = Currency::parse(&activation.currency)
            .map_err(|_| StoreError::corrupt("activation currency"))?;
        let card = CardSale {
            serial,
            value_minor: activation.value_minor,
            commission_minor: activation.commission_minor,
        };
        let posting = Posting::void(
            sale.retailer.id,
            currency,
            &card,
            origin.pos_txn.to_string(),
            origin.pos_time.unwrap_or(at),
        );
        let transfer_id = tx
            .insert_transfer(&posting, &vec![None; posting.legs.len()], at)
            .await?;
        tx.record_void(serial, request_id, transfer_id).await?;
        tx.insert_card_events(&[CardEventRow {
            serial,
            action: CardAction::Voided,
            reason: None,
            request_id: Some(request_id),
            actor: actor.to_string(),
            at,
        }])
        .await?;
        let result = PosResult {
            request_id: Some(request_id),
            transfer_id: Some(transfer_id),
            cards: vec![CardResult {
                serial,
                outcome: "voided".to_string(),
                message: None,
                value: Some(Money::zero(currency)),
                funds_expire_at: None,
                review: None,
            }],
            replayed: false,
        };
        tx.set_request_result(request_id, &to_json(&result)).await?;
        let signer = services.signer(&mut tx).await?;
        let event = events::card_voided(actor, serial, request_id, transfer_id);
        tx.append(&signer, &event, at).await?;
        tx.commit().await?;
        Ok(result)
    }

    /// Blocks a card (issued or active) with a reason code: it cannot be sold, redeemed or
    /// voided until it is unblocked.
    pub async fn block(
        &self,
        serial: &str,
        reason: &str,
        actor: &Actor,
    ) -> Result<CardStatus, CardError> {
        self.flag(serial, reason, CardAction::Blocked, actor).await
    }

    /// Lifts a card's block, with a reason code.
    pub async fn unblock(
        &self,
        serial: &str,
        reason: &str,
        actor: &Actor,
    ) -> Result<CardStatus, CardError> {
        self.flag(serial, reason, CardAction::Unblocked, actor)
            .await
    }

    /// Marks a card exposed: its code was seen or tried before it was sold. A live sale of it is
    /// refused until the exposure is cleared.
    pub async fn expose(
        &self,
        serial: &str,
        reason: &str,
        actor: &Actor,
    ) -> Result<CardStatus, CardError> {
        self.flag(serial, reason, CardAction::Exposed, actor).await
    }

    /// Clears a card's exposure once it has been looked into.
    pub async fn clear_exposure(
        &self,
        serial: &str,
        reason: &str,
        actor: &Actor,
    ) -> Result<CardStatus, CardError> {
        self.flag(serial, reason, CardAction::ExposureCleared, actor)
            .await
    }

    async fn flag(
        &self,
        serial: &str,
        reason: &str,
        action: CardAction,
        actor: &Actor,
    ) -> Result<CardStatus, CardError> {
        let serial = Serial::parse(serial)?;
        let reason = Name::parse(reason)?;
        rerun!(self.flag_once(serial, &reason, action, actor))
    }

    async fn flag_once(
        &self,
        serial: Serial,
        reason: &Name,
        action: CardAction,
        actor: &Actor,
    ) -> Result<CardStatus, CardError> {
        let services = self.0;
        let mut tx = services.store.begin().await?;
        let at = services.clock.now();
        let done = match action {
            CardAction::Blocked => {
                tx.block_card(
                    serial,
                    reason.as_str(),
                    [CardState::Issued, CardState::Active],
                )
                .await?
            }
            CardAction::Unblocked => tx.unblock_card(serial).await?,
            CardAction::Exposed => tx.expose_card(serial, at.timestamp_millis()).await?,
            CardAction::ExposureCleared => tx.clear_exposure(serial).await?,
            CardAction::Activated | CardAction::Voided | CardAction::Redeemed => {
                unreachable!("sales, voids and redemptions have their own use cases")
            }
        };
        let status = card_status(&mut tx, serial).await?;
        if !done {
            return Err(match action {
                CardAction::Blocked if status.blocked_reason.is_some() => {
                    CardError::AlreadyBlocked(serial)
                }
                CardAction::Blocked => state_refusal(serial, status.state),
                CardAction::Unblocked => CardError::NotBlocked(serial),
                CardAction::Exposed => CardError::AlreadyExposed(serial),
                _ => CardError::NotExposed(serial),
            });
        }
        tx.insert_card_events(&[CardEventRow {
            serial,
            action,
            reason: Some(reason.to_string()),
            request_id: None,
            actor: actor.to_string(),
            at,
        }])
        .await?;
        let signer = services.signer(&mut tx).await?;
        let event = events::card_flagged(actor, serial, action, reason.as_str());
        tx.append(&signer, &event, at).await?;
        tx.commit().await?;
        Ok(status)
    }

    /// The support desk's view of a card: state, flags, batch, retailer, sale, funds-expiry and
    /// history. Never its code.
    pub async fn show(&self, serial: &str) -> Result<CardView, CardError> {
        self.show_for(serial, None).await
    }

    /// [`Cards::show`] as a caller scoped to `retailer` (a point-of-sale key) may see it: a card
    /// issued to another retailer is [`CardError::NotFound`], exactly as one that does not
    /// exist, so a key learns nothing of another tenant's cards. `None`: any card.
    pub async fn show_for(
        &self,
        serial: &str,
        retailer: Option<RetailerId>,
    ) -> Result<CardView, CardError> {
        let serial = Serial::parse(serial)?;
        let mut tx = self.0.store.read().await?;
        let status = card_status(&mut tx, serial).await?;
        let batch = tx
            .batch_of(serial)
            .await?
            .ok_or_else(|| StoreError::corrupt("a card outside every batch"))?;
        if retailer.is_some_and(|id| id != batch.retailer_id) {
            return Err(CardError::NotFound(serial));
        }
        let retailer = tx
            .retailer(batch.retailer_id)
            .await?
            .ok_or_else(|| StoreError::corrupt("a batch of no retailer"))?;
        let activation = match tx.activation(serial).await? {
            Some(row) => Some(activation_view(&mut tx, row).await?),
            None => None,
        };
        let rows = PageRows::new(u64::from(CARD_HISTORY_ROWS)).expect("within the page limit");
        let history = tx.card_events(serial, rows).await?;
        Ok(CardView {
            serial,
            state: status.state,
            blocked: status.blocked_reason,
            exposed_at: status.exposed_ms.and_then(DateTime::from_timestamp_millis),
            batch,
            retailer,
            activation,
            history,
        })
    }

    /// The request's origin, parsed. Its POS time is checked once the request is known to be
    /// new ([`Origin::check_pos_time`]): a retry is answered however old its POS time has grown.
    fn origin(&self, retailer: RetailerRef, form: &PosForm) -> Result<Origin, CardError> {
        Ok(Origin {
            retailer,
            store: StoreCode::parse(&form.store)?,
            terminal: TerminalId::parse(&form.terminal)?,
            pos_txn: PosTxnId::parse(&form.pos_txn)?,
            pos_time: form.pos_time,
        })
    }
}

async fn retailer_named<T: RetailerRepo>(
    tx: &mut T,
    name: &RetailerName,
) -> Result<Retailer, CardError> {
    tx.retailer_by_name(name)
        .await?
        .ok_or_else(|| CardError::UnknownRetailer(name.clone()))
}

/// Reads the retailer, store and batch a request names and checks they belong together.
async fn sale<T: RetailerRepo + PosRepo>(
    tx: &mut T,
    origin: &Origin,
    range: SerialRange,
) -> Result<Sale, CardError> {
    let retailer = match &origin.retailer {
        RetailerRef::Named(name) => retailer_named(tx, name).await?,
        RetailerRef::Id(id) => tx
            .retailer(*id)
            .await?
            // A key's retailer is a foreign key of the key's row: it cannot be missing.
            .ok_or_else(|| StoreError::corrupt("a point-of-sale key of no retailer"))?,
    };
    let store =
        tx.store(retailer.id, &origin.store)
            .await?
            .ok_or_else(|| CardError::UnknownStore {
                retailer: retailer.name.clone(),
                store: origin.store.clone(),
            })?;
    let batch = tx
        .batch_of(range.first)
        .await?
        .ok_or(CardError::NotFound(range.first))?;
    if batch.retailer_id != retailer.id {
        return Err(CardError::ForeignRetailer(range.first));
    }
    if range.last.sequence() >= batch.first_serial.sequence() + batch.count {
        return Err(CardError::RangeSpansBatches(range.first));
    }
    Ok(Sale {
        retailer,
        store,
        batch,
    })
}

/// The value a card of `batch` is sold for: the batch's own, or one in its range.
fn card_value(
    batch: &Batch,
    serial: Serial,
    given: Option<&str>,
    named: Option<Currency>,
) -> Result<Money, CardError> {
    let currency = batch.value.currency();
    if named.is_some_and(|named| named != currency) {
        return Err(CardError::WrongCurrency { serial, currency });
    }
    let given = given.map(|v| Money::parse(v, currency)).transpose()?;
    match (batch.value, given) {
        (CardValue::Fixed { value }, None) => Ok(value),
        (CardValue::Fixed { value }, Some(given)) if given == value => Ok(value),
        (CardValue::Fixed { value }, Some(_)) => Err(CardError::ValueFixed { serial, value }),
        (CardValue::Variable { min, max }, None) => {
            Err(CardError::ValueRequired { serial, min, max })
        }
        (CardValue::Variable { min, max }, Some(given)) => {
            if given.minor() < min.minor() || given.minor() > max.minor() {
                return Err(CardError::ValueOutOfRange { serial, min, max });
            }
            Ok(given)
        }
    }
}

fn request_row(
    origin: &Origin,
    sale: &Sale,
    range: SerialRange,
    operation: PosOperation,
    value: Option<Money>,
    actor: &Actor,
    at: DateTime<Utc>,
) -> PosRequestRow {
    PosRequestRow {
        request_id: 0,
        retailer_id: sale.retailer.id,
        store_code: origin.store.to_string(),
        terminal: origin.terminal.to_string(),
        pos_txn: origin.pos_txn.to_string(),
        range,
        operation: operation.as_str().to_string(),
        value_minor: value.map(|v| v.minor()),
        pos_time_ms: origin.pos_time.map(|t| t.timestamp_millis()),
        result: String::new(),
        actor: actor.to_string(),
        recorded_at: at,
    }
}

/// The first answer to a request whose key is taken, if the request is the same.
async fn replay<T: PosRepo>(tx: &mut T, request: &PosRequestRow) -> Result<PosResult, CardError> {
    let first = tx
        .request_by_key(request)
        .await?
        // The claim missed, so the key was committed: gone now only if the row was deleted.
        .ok_or(StoreError::Moved("the POS request"))?;
    let field = if first.operation != request.operation {
        Some("operation")
    } else if first.value_minor != request.value_minor {
        Some("value")
    } else if first.pos_time_ms != request.pos_time_ms {
        Some("POS time")
    } else {
        None
    };
    if let Some(field) = field {
        return Err(CardError::RequestConflict { field });
    }
    let mut result: PosResult = serde_json::from_str(&first.result)
        .map_err(|_| StoreError::corrupt("a POS request's stored answer"))?;
    result.replayed = true;
    Ok(result)
}

/// Why each card of `range` that did not move from `from` was refused, in serial order.
async fn refusals<T: PosRepo>(
    tx: &mut T,
    range: SerialRange,
    moved: &[(Serial, Option<i64>)],
    from: CardState,
) -> StoreResult<Vec<CardError>> {
    if moved.len() as u64 == range.cards() {
        return Ok(Vec::new());
    }
    let statuses = tx.card_statuses(range).await?;
    let mut statuses = statuses.iter().peekable();
    let mut refused = Vec::new();
    for serial in range.serials() {
        let status = statuses
            .next_if(|s| s.serial <= serial)
            .filter(|s| s.serial == serial);
        if moved.iter().any(|(s, _)| *s == serial) {
            continue;
        }
        let error = match status {
            None => CardError::NotFound(serial),
            Some(status) if status.blocked_reason.is_some() => CardError::Blocked(serial),
            Some(status) if status.state == from && status.exposed_ms.is_some() => {
                CardError::Exposed(serial)
            }
            Some(status) if status.state == from => {
                return Err(StoreError::Moved("a card"));
            }
            Some(status) => state_refusal(serial, status.state),
        };
        refused.push(error);
    }
    Ok(refused)
}

/// Why a card in `state` cannot make a change that needs it in another.
fn state_refusal(serial: Serial, state: CardState) -> CardError {
    match state {
        CardState::Issued => CardError::NotActive(serial),
        CardState::Active => CardError::AlreadyActive(serial),
        CardState::Redeemed => CardError::AlreadyRedeemed(serial),
        CardState::Voided => CardError::Voided(serial),
        CardState::Expired => CardError::Expired(serial),
    }
}

/// A request that changed nothing: a single card's refusal is the error; a range answers
/// card by card.
fn nothing_changed(
    range: SerialRange,
    mut refused: Vec<CardError>,
) -> Result<PosResult, CardError> {
    if range.is_single()
        && let Some(error) = refused.pop()
    {
        return Err(error);
    }
    Ok(PosResult {
        request_id: None,
        transfer_id: None,
        cards: refused.iter().map(CardResult::refused).collect(),
        replayed: false,
    })
}

async fn card_status<T: PosRepo>(tx: &mut T, serial: Serial) -> Result<CardStatus, CardError> {
    let range = SerialRange {
        first: serial,
        last: serial,
    };
    tx.card_statuses(range)
        .await?
        .pop()
        .ok_or(CardError::NotFound(serial))
}

async fn activation_view<T: PosRepo>(
    tx: &mut T,
    row: ActivationRow,
) -> Result<ActivationView, CardError> {
    let request = tx
        .request(row.request_id)
        .await?
        .ok_or_else(|| StoreError::corrupt("an activation without its POS request"))?;
    let void_pos_txn = match row.void_request_id {
        Some(id) => tx.request(id).await?.map(|r| r.pos_txn),
        None => None,
    };
    let currency =
        Currency::parse(&row.currency).map_err(|_| StoreError::corrupt("activation currency"))?;
    Ok(ActivationView {
        store: request.store_code,
        jurisdiction: row.jurisdiction,
        purchaser_state: row.purchaser_state,
        terminal: request.terminal,
        pos_txn: request.pos_txn,
        activated_at: row.activated_at,
        value: Money::from_minor(row.value_minor, currency),
        commission: Money::from_minor(row.commission_minor, currency),
        funds_expire_at: row.funds_expire_at,
        transfer_id: row.transfer_id,
        review: row.review,
        void_pos_txn,
        void_transfer_id: row.void_transfer_id,
    })
}

/// Consecutive serials as `[first, last]` runs: a box activated whole is one run.
pub(crate) fn runs(serials: impl Iterator<Item = Serial>) -> Vec<[Serial; 2]> {
    let mut runs: Vec<[Serial; 2]> = Vec::new();
    for serial in serials {
        match runs.last_mut() {
            Some(run) if run[1].sequence() + 1 == serial.sequence() => run[1] = serial,
            _ => runs.push([serial, serial]),
        }
    }
    runs
}

fn to_json(result: &PosResult) -> String {
    serde_json::to_string(result).expect("a POS result serialises to JSON")
}
