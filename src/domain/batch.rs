//! Card batches: what retail operations request, and the limits a request must respect.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Currency, Money, Region, RetailerId, RetailerName, Serial};

use crate::error::{Classify, Kind};

/// Most cards one batch may hold: a printer run, and ten minutes of generation at most.
pub const MAX_CARDS_PER_BATCH: u64 = 10_000_000;
/// Longest expiry a batch may set, in days (ten years).
pub const MAX_EXPIRY_DAYS: u32 = 3_650;
/// Highest card value in major units for currencies with no minor unit (JPY, KRW…).
pub const MAX_CARD_VALUE_MAJOR_EXPONENT_0: i64 = 500_000;
/// Highest card value in major units for currencies with two decimals (USD, EUR…).
pub const MAX_CARD_VALUE_MAJOR_EXPONENT_2: i64 = 5_000;
/// Highest card value in major units for currencies with three decimals (KWD, BHD…).
pub const MAX_CARD_VALUE_MAJOR_EXPONENT_3: i64 = 1_500;

/// The highest value one card may carry in `currency`: a guard against a mistyped extra digit,
/// not a compliance limit (those are per jurisdiction and apply at load time).
pub fn max_card_value(currency: Currency) -> Money {
    let major = match currency.minor_units() {
        0 => MAX_CARD_VALUE_MAJOR_EXPONENT_0,
        3 => MAX_CARD_VALUE_MAJOR_EXPONENT_3,
        _ => MAX_CARD_VALUE_MAJOR_EXPONENT_2,
    };
    Money::from_minor(major * 10_i64.pow(currency.minor_units()), currency)
}

/// A batch's database id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct BatchId(pub i64);

impl fmt::Display for BatchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Why a batch request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Zero cards, or more than the limit.
    #[error("a batch holds 1 to {MAX_CARDS_PER_BATCH} cards; {0} were asked for")]
    BadCount(u64),
    /// A value that is zero, negative or above the ceiling.
    #[error("a card's value must be more than zero and at most {max}")]
    BadValue {
        /// The ceiling for the currency.
        max: Money,
    },
    /// A variable range whose minimum exceeds its maximum.
    #[error("the minimum value {min} is above the maximum {max}")]
    InvertedRange {
        /// The minimum asked for.
        min: Money,
        /// The maximum asked for.
        max: Money,
    },
    /// Expiry outside 1 to [`MAX_EXPIRY_DAYS`] days.
    #[error(
        "expiry is 1 to {MAX_EXPIRY_DAYS} days after the batch is requested; {0} was asked for"
    )]
    BadExpiry(u32),
}

impl Classify for BatchError {
    fn code(&self) -> &'static str {
        match self {
            BatchError::BadCount(_) => "batch.bad_count",
            BatchError::BadValue { .. } => "batch.bad_value",
            BatchError::InvertedRange { .. } => "batch.inverted_range",
            BatchError::BadExpiry(_) => "batch.bad_expiry",
        }
    }

    fn kind(&self) -> Kind {
        Kind::Invalid
    }
}

/// What each card of a batch is worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CardValue {
    /// Every card carries this value.
    Fixed {
        /// The value.
        value: Money,
    },
    /// The value is chosen at activation, within this range.
    Variable {
        /// Lowest value.
        min: Money,
        /// Highest value.
        max: Money,
    },
}

impl CardValue {
    /// A fixed value, checked against the currency's ceiling.
    pub fn fixed(value: Money) -> Result<CardValue, BatchError> {
        check_value(value)?;
        Ok(CardValue::Fixed { value })
    }

    /// A variable range, each end checked; the currencies must match.
    pub fn variable(min: Money, max: Money) -> Result<CardValue, BatchError> {
        check_value(min)?;
        check_value(max)?;
        if min.currency() != max.currency() || min.minor() > max.minor() {
            return Err(BatchError::InvertedRange { min, max });
        }
        Ok(CardValue::Variable { min, max })
    }

    /// The currency of the batch.
    pub fn currency(&self) -> Currency {
        match self {
            CardValue::Fixed { value } => value.currency(),
            CardValue::Variable { min, .. } => min.currency(),
        }
    }
}

impl fmt::Display for CardValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CardValue::Fixed { value } => value.fmt(f),
            CardValue::Variable { min, max } => write!(f, "{} to {max}", min.to_decimal()),
        }
    }
}

fn check_value(value: Money) -> Result<(), BatchError> {
    let max = max_card_value(value.currency());
    if value.minor() <= 0 || value.minor() > max.minor() {
        return Err(BatchError::BadValue { max });
    }
    Ok(())
}

/// A validated request for a batch of cards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRequest {
    /// The retailer the cards are for.
    pub retailer: RetailerName,
    /// How many cards.
    pub count: u64,
    /// What each is worth.
    pub value: CardValue,
    /// The storefront country the cards may be redeemed in.
    pub region: Region,
    /// Days from the request until the cards expire; `None` for no expiry.
    pub expires_in_days: Option<u32>,
}

impl BatchRequest {
    /// Checks the count and expiry (values were checked when `value` was built).
    pub fn new(
        retailer: RetailerName,
        count: u64,
        value: CardValue,
        region: Region,
        expires_in_days: Option<u32>,
    ) -> Result<BatchRequest, BatchError> {
        if count == 0 || count > MAX_CARDS_PER_BATCH {
            return Err(BatchError::BadCount(count));
        }
        if let Some(days) = expires_in_days
            && !(1..=MAX_EXPIRY_DAYS).contains(&days)
        {
            return Err(BatchError::BadExpiry(days));
        }
        Ok(BatchRequest {
            retailer,
            count,
            value,
            region,
            expires_in_days,
        })
    }
}

/// Where a batch is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchState {
    /// Recorded; generation has not started.
    Requested,
    /// Generation is under way (or was interrupted and will resume).
    Generating,
    /// Every card is stored and the printer file is written.
    Completed,
    /// Generation cannot go on (its printer file is elsewhere or was damaged); the batch keeps
    /// the reason until an operator restarts it.
    Failed,
}

impl BatchState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            BatchState::Requested => "requested",
            BatchState::Generating => "generating",
            BatchState::Completed => "completed",
            BatchState::Failed => "failed",
        }
    }

    /// Parses a stored name.
    pub fn parse(text: &str) -> Option<BatchState> {
        match text {
            "requested" => Some(BatchState::Requested),
            "generating" => Some(BatchState::Generating),
            "completed" => Some(BatchState::Completed),
            "failed" => Some(BatchState::Failed),
            _ => None,
        }
    }
}

/// A stored batch and its progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Batch {
    /// Database id.
    pub id: BatchId,
    /// The retailer the cards are for.
    pub retailer_id: RetailerId,
    /// Cards requested.
    pub count: u64,
    /// What each card is worth.
    pub value: CardValue,
    /// Storefront country.
    pub region: Region,
    /// When the cards expire.
    pub expires_at: Option<DateTime<Utc>>,
    /// Serial of the first card; the batch's serials are contiguous from here.
    pub first_serial: Serial,
    /// The lookup key its digests are made under.
    pub lookup_key_id: u16,
    /// Where it is in its life.
    pub state: BatchState,
    /// Cards generated and stored so far.
    pub generated: u64,
    /// Codes drawn again because their digest was already taken.
    pub collisions: u64,
    /// Printer file bytes covered by stored cards.
    pub export_bytes: u64,
    /// HMAC-SHA256 of the finished printer file, hex, under a key derived from the batch's
    /// lookup key for this use alone (an unkeyed hash of a one-card file would reveal its code
    /// to a brute-force search).
    pub export_mac: Option<String>,
    /// Where the printer file is written (`host:directory`); only a run there may resume it.
    pub export_location: Option<String>,
    /// Why generation failed for good, for a failed batch.
    pub failure: Option<String>,
    /// Who asked for it: an [`Actor`](super::Actor)'s full form, as stored (rows older than the
    /// check may hold any text).
    pub requested_by: String,
    /// When it was asked for.
    pub requested_at: DateTime<Utc>,
    /// When it was completed.
    pub completed_at: Option<DateTime<Utc>>,
}

impl Batch {
    /// The serial of the card at `index` within the batch.
    pub fn serial_at(&self, index: u64) -> Serial {
        Serial::from_sequence(self.first_serial.sequence() + index)
            .expect("serial ranges are reserved within bounds")
    }
}
