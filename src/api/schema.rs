//! The OpenAPI schemas of the domain's values as they travel in JSON. They live here, beside
//! the document, so the domain does not depend on the document's generator; each says what
//! its type's `Serialize` writes, and the contract check holds them to it.

use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::{KnownFormat, RefOr, SchemaFormat};
use utoipa::{PartialSchema, ToSchema};

use crate::domain::{
    AccountId, BatchState, CardAction, CardState, HeldFor, Money, RowOutcome, Serial, TradeInState,
    TransferId, TransferKind,
};

/// A string schema with `pattern` and a description.
fn string(pattern: &str, description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(SchemaType::new(Type::String))
        .pattern(Some(pattern))
        .description(Some(description))
}

/// An integer id's schema.
fn id(description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(SchemaType::new(Type::Integer))
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(1))
        .description(Some(description))
        .into()
}

/// The pattern of a decimal amount as tender writes it: optional sign, digits, and the
/// currency's decimals.
pub const AMOUNT_PATTERN: &str = r"^-?[0-9]+(\.[0-9]+)?$";

/// The pattern of an ISO 4217 currency code.
pub const CURRENCY_PATTERN: &str = "^[A-Z]{3}$";

impl PartialSchema for Money {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .property(
                "amount",
                string(
                    AMOUNT_PATTERN,
                    "A decimal string, such as \"25.00\"; never a JSON number",
                ),
            )
            .required("amount")
            .property(
                "currency",
                string(CURRENCY_PATTERN, "ISO 4217, such as USD"),
            )
            .required("currency")
            .additional_properties(Some(
                utoipa::openapi::schema::AdditionalProperties::FreeForm(false),
            ))
            .description(Some("An exact amount of money"))
            .into()
    }
}
impl ToSchema for Money {}

impl PartialSchema for AccountId {
    fn schema() -> RefOr<Schema> {
        id("A customer account's id")
    }
}
impl ToSchema for AccountId {}

impl PartialSchema for TransferId {
    fn schema() -> RefOr<Schema> {
        id("A ledger transfer's id")
    }
}
impl ToSchema for TransferId {}

impl PartialSchema for Serial {
    fn schema() -> RefOr<Schema> {
        string(
            "^[0-9]{12}$",
            "A card's public serial: 11 digits and a check digit, printed on the card",
        )
        .into()
    }
}
impl ToSchema for Serial {}

impl PartialSchema for CardState {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::new(Type::String))
            .enum_values(Some(["issued", "active", "redeemed", "voided", "expired"]))
            .description(Some("Where a card is in its life"))
            .into()
    }
}
impl ToSchema for CardState {}

/// A string schema with exactly these values.
fn one_of(values: &[&str], description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(SchemaType::new(Type::String))
        .enum_values(Some(values.iter().copied()))
        .description(Some(description))
        .into()
}

impl PartialSchema for BatchState {
    fn schema() -> RefOr<Schema> {
        let states = [
            BatchState::Requested,
            BatchState::Generating,
            BatchState::Completed,
            BatchState::Failed,
        ];
        let names: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
        one_of(&names, "Where a batch is in its life")
    }
}
impl ToSchema for BatchState {}

impl PartialSchema for CardAction {
    fn schema() -> RefOr<Schema> {
        let actions = [
            CardAction::Activated,
            CardAction::Voided,
            CardAction::Redeemed,
            CardAction::Blocked,
            CardAction::Unblocked,
            CardAction::Exposed,
            CardAction::ExposureCleared,
        ];
        let names: Vec<&str> = actions.iter().map(|a| a.as_str()).collect();
        one_of(&names, "A change a card's history records")
    }
}
impl ToSchema for CardAction {}
impl PartialSchema for TransferKind {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::new(Type::String))
            .enum_values(Some([
                "spend",
                "refund",
                "adjustment",
                "activation",
                "void",
                "redemption",
                "trade_in",
                "clawback",
            ]))
            .description(Some("What a ledger transfer was for"))
            .into()
    }
}
impl ToSchema for TransferKind {}

impl PartialSchema for TradeInState {
    fn schema() -> RefOr<Schema> {
        let names: Vec<&str> = TradeInState::ALL.iter().map(|s| s.as_str()).collect();
        one_of(
            &names,
            "Where a trade-in valuation is on its way to the account",
        )
    }
}
impl ToSchema for TradeInState {}

impl PartialSchema for HeldFor {
    fn schema() -> RefOr<Schema> {
        let names: Vec<&str> = [
            HeldFor::DailyAmount,
            HeldFor::PriceBand,
            HeldFor::AccountFrozen,
        ]
        .iter()
        .map(|h| h.as_str())
        .collect();
        one_of(&names, "Why a trade-in credit waits for finance")
    }
}
impl ToSchema for HeldFor {}

impl PartialSchema for RowOutcome {
    fn schema() -> RefOr<Schema> {
        let names: Vec<&str> = [
            RowOutcome::Accepted,
            RowOutcome::Unchanged,
            RowOutcome::Revalued,
            RowOutcome::Rejected,
        ]
        .iter()
        .map(|o| o.as_str())
        .collect();
        one_of(&names, "What one valuation row did")
    }
}
impl ToSchema for RowOutcome {}
