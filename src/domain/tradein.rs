//! Trade-in valuations: a warehouse's assessment of a device a customer traded in, which
//! becomes credit in the customer's account. A valuation arrives as text (a CSV row or a JSON
//! object) from a system tender does not control; [`Valuation::parse`] reads every field once
//! and names the first one it refuses, so past it nothing re-validates.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::ledger::AccountId;
use super::money::{Currency, Money, MoneyError};
use super::region::Region;
use super::retailer::is_hidden_or_control;
use crate::error::{Classify, Kind};

/// The longest trade-in id or warehouse id: room for a UUID with a prefix, as POS ids.
pub const TRADE_IN_ID_MAX_CHARS: usize = 64;
/// The longest device model, in characters: a catalogue name ("iPhone 15 Pro Max 256GB Natural
/// Titanium" is 40), not a description.
pub const DEVICE_MODEL_MAX_CHARS: usize = 100;
/// A device serial's length: manufacturers' serials run from 8 (older Samsung) to 12 (Apple)
/// and 17 (some laptops) characters; 4 to 32 leaves room without admitting prose.
pub const DEVICE_SERIAL_MIN_CHARS: usize = 4;
/// See [`DEVICE_SERIAL_MIN_CHARS`].
pub const DEVICE_SERIAL_MAX_CHARS: usize = 32;
/// An IMEI's digits: 14 and a Luhn check digit.
pub const IMEI_DIGITS: usize = 15;
/// The longest field read at all, in bytes: over it a field is refused before it is looked at.
pub const FIELD_MAX_BYTES: usize = 256;

/// Why a valuation's field was refused: each a row's result, never the file's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TradeInError {
    /// A field longer than [`FIELD_MAX_BYTES`].
    #[error("the field is longer than {FIELD_MAX_BYTES} bytes")]
    FieldTooLong,
    /// A field holding a control, formatting or unassigned character.
    #[error("the field holds a control or invisible character")]
    ControlCharacter,
    /// A required field left empty.
    #[error("the field is empty")]
    Empty,
    /// A trade-in id or warehouse id outside its alphabet or length.
    #[error("an id is 1 to {TRADE_IN_ID_MAX_CHARS} letters, digits or . _ : -")]
    BadId,
    /// Not a positive whole account id.
    #[error("an account id is a whole number from 1")]
    BadAccount,
    /// A model name too long.
    #[error("a device model is 1 to {DEVICE_MODEL_MAX_CHARS} characters")]
    BadModel,
    /// A device id that is neither an IMEI nor a device serial.
    #[error(
        "a device is an IMEI (15 digits) or a serial of {DEVICE_SERIAL_MIN_CHARS} to {DEVICE_SERIAL_MAX_CHARS} letters and digits"
    )]
    BadDevice,
    /// Fifteen digits whose last is not their Luhn check digit: a mistyped IMEI.
    #[error("the IMEI's check digit is wrong: a digit was mistyped")]
    BadImeiCheckDigit,
    /// A grade not in the list.
    #[error("a grade is one of like_new, good, fair, poor, faulty")]
    BadGrade,
    /// A value or currency refused by the money rules (symbol, separator, decimals).
    #[error("{0}")]
    BadValue(MoneyError),
    /// A negative value.
    #[error("a value is zero or more")]
    NegativeValue,
    /// A first valuation of nothing: there is no credit to post.
    #[error("a valuation of zero credits nothing; only a revaluation may be zero")]
    ZeroValue,
    /// Not an RFC 3339 (ISO 8601) time with its offset.
    #[error("a time is ISO 8601 with its offset, such as 2026-03-01T14:30:00Z")]
    BadTime,
    /// A region that is not an ISO 3166-1 alpha-2 country tender serves.
    #[error("a region is an ISO 3166-1 alpha-2 country code such as US")]
    BadRegion,
    /// A revaluation flag other than true or false.
    #[error("revaluation is true or false (or empty for false)")]
    BadFlag,
}

impl Classify for TradeInError {
    fn code(&self) -> &'static str {
        match self {
            TradeInError::FieldTooLong => "tradein.field_too_long",
            TradeInError::ControlCharacter => "tradein.control_character",
            TradeInError::Empty => "tradein.empty_field",
            TradeInError::BadId => "tradein.bad_id",
            TradeInError::BadAccount => "tradein.bad_account",
            TradeInError::BadModel => "tradein.bad_model",
            TradeInError::BadDevice => "tradein.bad_device",
            TradeInError::BadImeiCheckDigit => "tradein.bad_imei",
            TradeInError::BadGrade => "tradein.bad_grade",
            TradeInError::BadValue(error) => error.code(),
            TradeInError::NegativeValue => "tradein.negative_value",
            TradeInError::ZeroValue => "tradein.zero_value",
            TradeInError::BadTime => "tradein.bad_time",
            TradeInError::BadFlag => "tradein.bad_flag",
            TradeInError::BadRegion => "tradein.bad_region",
        }
    }

    fn kind(&self) -> Kind {
        Kind::Invalid
    }
}

/// A field refused, by name: `device: the IMEI's check digit is wrong`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {error}")]
pub struct FieldError {
    /// The field's name, as the CSV header and the JSON body spell it.
    pub field: &'static str,
    /// Why.
    pub error: TradeInError,
}

impl Classify for FieldError {
    fn code(&self) -> &'static str {
        self.error.code()
    }

    fn kind(&self) -> Kind {
        Kind::Invalid
    }
}

/// Checks what every field shares: a bounded length and no hidden characters.
fn plain(text: &str) -> Result<&str, TradeInError> {
    if text.len() > FIELD_MAX_BYTES {
        return Err(TradeInError::FieldTooLong);
    }
    if text.chars().any(is_hidden_or_control) {
        return Err(TradeInError::ControlCharacter);
    }
    if text.is_empty() {
        return Err(TradeInError::Empty);
    }
    Ok(text)
}

fn id(text: &str) -> Result<String, TradeInError> {
    let text = plain(text)?;
    let ok = text.len() <= TRADE_IN_ID_MAX_CHARS
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".:_-".contains(&b));
    ok.then(|| text.to_string()).ok_or(TradeInError::BadId)
}

/// The warehouse's own id for a trade-in: with the warehouse, the valuation's natural key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct TradeInId(String);

/// A warehouse's id, as its key and its files name it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct WarehouseId(String);

macro_rules! text_id {
    ($name:ident) => {
        impl $name {
            /// Parses 1 to [`TRADE_IN_ID_MAX_CHARS`] characters of `A-Z a-z 0-9 . _ : -`.
            pub fn parse(text: &str) -> Result<$name, TradeInError> {
                id(text).map($name)
            }

            /// The text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

text_id!(TradeInId);
text_id!(WarehouseId);

/// A device's model as the warehouse names it: free text, bounded, without hidden characters.
/// It may look like a spreadsheet formula; every report that writes it guards it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct DeviceModel(String);

impl DeviceModel {
    /// Parses 1 to [`DEVICE_MODEL_MAX_CHARS`] characters, none of them hidden.
    pub fn parse(text: &str) -> Result<DeviceModel, TradeInError> {
        let text = plain(text)?;
        if text.trim().is_empty() || text.chars().count() > DEVICE_MODEL_MAX_CHARS {
            return Err(TradeInError::BadModel);
        }
        Ok(DeviceModel(text.to_string()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key finance's price bands are set under: lower case, runs of spaces as one, so
    /// `iPhone  13` and `iphone 13` share a band.
    pub fn band_key(&self) -> String {
        self.0
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase()
    }
}

/// The device traded in: its IMEI (a phone or cellular tablet) or its manufacturer's serial.
/// One device is credited once, under whichever trade-in id first named it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(untagged)]
pub enum Device {
    /// 15 digits whose last is the Luhn check digit of the other 14.
    Imei(String),
    /// 4 to 32 letters and digits, upper-cased: serials are printed in capitals, and a lower-case
    /// copy of one must not pass for another device.
    Serial(String),
}

impl Device {
    /// Parses an IMEI (any 15 digits, which must then pass the Luhn check) or a serial.
    pub fn parse(text: &str) -> Result<Device, TradeInError> {
        let text = plain(text)?;
        if text.len() == IMEI_DIGITS && text.bytes().all(|b| b.is_ascii_digit()) {
            return if luhn_valid(text) {
                Ok(Device::Imei(text.to_string()))
            } else {
                Err(TradeInError::BadImeiCheckDigit)
            };
        }
        let ok = (DEVICE_SERIAL_MIN_CHARS..=DEVICE_SERIAL_MAX_CHARS).contains(&text.len())
            && text.bytes().all(|b| b.is_ascii_alphanumeric());
        ok.then(|| Device::Serial(text.to_ascii_uppercase()))
            .ok_or(TradeInError::BadDevice)
    }

    /// The IMEI or serial.
    pub fn as_str(&self) -> &str {
        match self {
            Device::Imei(text) | Device::Serial(text) => text,
        }
    }

    /// Its last 4 characters, all a history line shows of it.
    pub fn last4(&self) -> &str {
        let text = self.as_str();
        &text[text.len() - 4..]
    }
}

/// Whether `digits` (ASCII digits only) end in their Luhn check digit.
fn luhn_valid(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// The device's condition as the warehouse graded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Grade {
    /// No visible wear.
    LikeNew,
    /// Light wear.
    Good,
    /// Visible wear, fully working.
    Fair,
    /// Heavy wear or a cracked back, working.
    Poor,
    /// Not working: for parts or recycling.
    Faulty,
}

impl Grade {
    /// Every grade, in order.
    pub const ALL: [Grade; 5] = [
        Grade::LikeNew,
        Grade::Good,
        Grade::Fair,
        Grade::Poor,
        Grade::Faulty,
    ];

    /// Parses a grade's name exactly (`like_new`, …).
    pub fn parse(text: &str) -> Result<Grade, TradeInError> {
        let text = plain(text)?;
        Grade::ALL
            .into_iter()
            .find(|grade| grade.as_str() == text)
            .ok_or(TradeInError::BadGrade)
    }

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Grade::LikeNew => "like_new",
            Grade::Good => "good",
            Grade::Fair => "fair",
            Grade::Poor => "poor",
            Grade::Faulty => "faulty",
        }
    }
}

/// Where a valuation is on its way to the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TradeInState {
    /// Waiting for the posting job.
    Queued,
    /// Waiting for finance's approval; [`HeldFor`] says why.
    Held,
    /// Its value is in the account (or, after a lower revaluation, what could be taken back
    /// was, the rest owed).
    Posted,
    /// Refused by finance, with a reason: nothing is posted.
    Rejected,
}

impl TradeInState {
    /// Every state, in order.
    pub const ALL: [TradeInState; 4] = [
        TradeInState::Queued,
        TradeInState::Held,
        TradeInState::Posted,
        TradeInState::Rejected,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            TradeInState::Queued => "queued",
            TradeInState::Held => "held",
            TradeInState::Posted => "posted",
            TradeInState::Rejected => "rejected",
        }
    }

    /// The state a name means.
    pub fn parse(text: &str) -> Option<TradeInState> {
        TradeInState::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// Why a credit waits for finance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HeldFor {
    /// It would take the warehouse's credits for the business day over the daily amount.
    DailyAmount,
    /// Its value is above the price band finance set for the model.
    PriceBand,
    /// The account is frozen: approve it once the account is unfrozen.
    AccountFrozen,
}

impl HeldFor {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            HeldFor::DailyAmount => "daily_amount",
            HeldFor::PriceBand => "price_band",
            HeldFor::AccountFrozen => "account_frozen",
        }
    }

    /// The reason a name means.
    pub fn parse(text: &str) -> Option<HeldFor> {
        [
            HeldFor::DailyAmount,
            HeldFor::PriceBand,
            HeldFor::AccountFrozen,
        ]
        .into_iter()
        .find(|h| h.as_str() == text)
    }
}

/// What one row of an upload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RowOutcome {
    /// A new valuation, queued for posting.
    Accepted,
    /// The same trade-in with the same values as before: nothing to do.
    Unchanged,
    /// A revaluation of an earlier trade-in: the difference is queued for posting.
    Revalued,
    /// Refused; the row's code and reason say why, and nothing of it was applied.
    Rejected,
}

impl RowOutcome {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            RowOutcome::Accepted => "accepted",
            RowOutcome::Unchanged => "unchanged",
            RowOutcome::Revalued => "revalued",
            RowOutcome::Rejected => "rejected",
        }
    }

    /// The outcome a name means.
    pub fn parse(text: &str) -> Option<RowOutcome> {
        [
            RowOutcome::Accepted,
            RowOutcome::Unchanged,
            RowOutcome::Revalued,
            RowOutcome::Rejected,
        ]
        .into_iter()
        .find(|o| o.as_str() == text)
    }
}

/// How many rows of an upload ended each way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RowCounts {
    /// Rows read (the header not counted).
    pub total: i64,
    /// New valuations.
    pub accepted: i64,
    /// Repeats of what was already recorded.
    pub unchanged: i64,
    /// Revaluations.
    pub revalued: i64,
    /// Refused rows.
    pub rejected: i64,
}

/// A valuation's fields as text, as a CSV row or a JSON object carries them.
#[derive(Debug, Clone, Copy, Default)]
pub struct ValuationText<'a> {
    /// `trade_in_id`.
    pub trade_in_id: &'a str,
    /// `account_id`.
    pub account_id: &'a str,
    /// `warehouse_id`.
    pub warehouse_id: &'a str,
    /// `device_model`.
    pub device_model: &'a str,
    /// `device_id`: the IMEI or the serial.
    pub device_id: &'a str,
    /// `grade`.
    pub grade: &'a str,
    /// `value`: a decimal string in the currency's minor unit or coarser.
    pub value: &'a str,
    /// `currency`.
    pub currency: &'a str,
    /// `assessed_at`.
    pub assessed_at: &'a str,
    /// `revaluation`: `true`, `false` or empty.
    pub revaluation: &'a str,
    /// `region`: the storefront country, or empty.
    pub region: &'a str,
}

/// A valuation, every field parsed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Valuation {
    /// The warehouse's id for the trade-in.
    pub trade_in: TradeInId,
    /// The customer's account credited.
    pub account: AccountId,
    /// The warehouse that assessed it.
    pub warehouse: WarehouseId,
    /// The device's model.
    pub model: DeviceModel,
    /// The device.
    pub device: Device,
    /// Its grade.
    pub grade: Grade,
    /// What it is worth: zero or more, and more than zero unless a revaluation.
    pub value: Money,
    /// When the warehouse assessed it.
    pub assessed_at: DateTime<Utc>,
    /// Whether it replaces an earlier valuation of the same trade-in: the difference is posted.
    pub revaluation: bool,
    /// The storefront country it was quoted in, where the warehouse says.
    pub region: Option<Region>,
}

impl Valuation {
    /// Parses every field, in the order the header lists them; the first refusal is the row's
    /// result, naming its field.
    pub fn parse(text: &ValuationText<'_>) -> Result<Valuation, FieldError> {
        let at = |field: &'static str| move |error: TradeInError| FieldError { field, error };
        let trade_in = TradeInId::parse(text.trade_in_id).map_err(at("trade_in_id"))?;
        let account = plain(text.account_id)
            .and_then(|t| AccountId::parse(t).map_err(|_| TradeInError::BadAccount))
            .and_then(|account| {
                // AccountId::parse trims; a row's field is taken exactly as written.
                (account.to_string() == text.account_id)
                    .then_some(account)
                    .ok_or(TradeInError::BadAccount)
            })
            .map_err(at("account_id"))?;
        let warehouse = WarehouseId::parse(text.warehouse_id).map_err(at("warehouse_id"))?;
        let model = DeviceModel::parse(text.device_model).map_err(at("device_model"))?;
        let device = Device::parse(text.device_id).map_err(at("device_id"))?;
        let grade = Grade::parse(text.grade).map_err(at("grade"))?;
        let currency = plain(text.currency)
            .and_then(|t| Currency::parse(t).map_err(TradeInError::BadValue))
            .map_err(at("currency"))?;
        let revaluation = match text.revaluation {
            "" | "false" => false,
            "true" => true,
            _ => return Err(at("revaluation")(TradeInError::BadFlag)),
        };
        let value = plain(text.value)
            .and_then(|t| Money::parse(t, currency).map_err(TradeInError::BadValue))
            .and_then(|value| {
                if value.minor() < 0 {
                    Err(TradeInError::NegativeValue)
                } else if value.is_zero() && !revaluation {
                    Err(TradeInError::ZeroValue)
                } else {
                    Ok(value)
                }
            })
            .map_err(at("value"))?;
        let assessed_at = plain(text.assessed_at)
            .and_then(|t| DateTime::parse_from_rfc3339(t).map_err(|_| TradeInError::BadTime))
            .map(|at| at.with_timezone(&Utc))
            .map_err(at("assessed_at"))?;
        let region = match text.region {
            "" => None,
            text => Some(Region::parse(text).map_err(|_| at("region")(TradeInError::BadRegion))?),
        };
        Ok(Valuation {
            trade_in,
            account,
            warehouse,
            model,
            device,
            grade,
            value,
            assessed_at,
            revaluation,
            region,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> ValuationText<'static> {
        ValuationText {
            trade_in_id: "TI-1001",
            account_id: "42",
            warehouse_id: "WH-east",
            device_model: "iPhone 13 128GB",
            device_id: "490154203237518",
            grade: "good",
            value: "215.00",
            currency: "USD",
            assessed_at: "2026-03-01T14:30:00Z",
            revaluation: "",
            region: "",
        }
    }

    fn refused(text: ValuationText<'_>) -> (&'static str, &'static str) {
        let error = Valuation::parse(&text).unwrap_err();
        (error.field, error.code())
    }

    #[test]
    fn a_clean_row_parses_into_every_field() {
        let valuation = Valuation::parse(&row()).unwrap();
        assert_eq!(valuation.trade_in.as_str(), "TI-1001");
        assert_eq!(valuation.account, AccountId::parse("42").unwrap());
        assert_eq!(valuation.device, Device::Imei("490154203237518".into()));
        assert_eq!(valuation.device.last4(), "7518");
        assert_eq!(valuation.grade, Grade::Good);
        assert_eq!(valuation.value.minor(), 21_500);
        assert_eq!(
            valuation.assessed_at.to_rfc3339(),
            "2026-03-01T14:30:00+00:00"
        );
        assert!(!valuation.revaluation);
    }

    #[test]
    fn an_imei_must_carry_its_luhn_check_digit() {
        // 490154203237518 is the standard example IMEI; change its last digit and it fails.
        for bad in ["490154203237519", "490154203237510"] {
            let text = ValuationText {
                device_id: bad,
                ..row()
            };
            assert_eq!(refused(text), ("device_id", "tradein.bad_imei"));
        }
        assert!(luhn_valid("79927398713"));
        assert!(!luhn_valid("79927398710"));
    }

    #[test]
    fn a_serial_is_letters_and_digits_and_compared_in_capitals() {
        let text = ValuationText {
            device_id: "c02xg0fdh7jy",
            ..row()
        };
        let valuation = Valuation::parse(&text).unwrap();
        assert_eq!(valuation.device, Device::Serial("C02XG0FDH7JY".into()));
        assert_eq!(valuation.device.last4(), "H7JY");
        for bad in ["abc", "C02X G0FD", "C02X-G0FD", &"A".repeat(33), "١٢٣٤٥٦"] {
            let text = ValuationText {
                device_id: bad,
                ..row()
            };
            assert_eq!(refused(text), ("device_id", "tradein.bad_device"), "{bad}");
        }
    }

    #[test]
    fn money_is_read_as_the_ledger_reads_it() {
        for (value, code) in [
            ("$215.00", "money.malformed"),
            ("1,215.00", "money.malformed"),
            ("215.001", "money.too_precise"),
            ("2.15e2", "money.malformed"),
            (" 215.00", "money.malformed"),
            ("-5.00", "tradein.negative_value"),
            ("0.00", "tradein.zero_value"),
        ] {
            let text = ValuationText { value, ..row() };
            assert_eq!(refused(text), ("value", code), "{value}");
        }
        let jpy = ValuationText {
            value: "215.5",
            currency: "JPY",
            ..row()
        };
        assert_eq!(refused(jpy), ("value", "money.too_precise"));
        let euro_sign = ValuationText {
            currency: "€",
            ..row()
        };
        assert_eq!(refused(euro_sign), ("currency", "money.unknown_currency"));
    }

    #[test]
    fn a_revaluation_may_bring_the_value_to_zero() {
        let text = ValuationText {
            value: "0.00",
            revaluation: "true",
            ..row()
        };
        let valuation = Valuation::parse(&text).unwrap();
        assert!(valuation.revaluation && valuation.value.is_zero());
        let text = ValuationText {
            revaluation: "yes",
            ..row()
        };
        assert_eq!(refused(text), ("revaluation", "tradein.bad_flag"));
    }

    #[test]
    fn times_are_iso_8601_with_an_offset() {
        let text = ValuationText {
            assessed_at: "2026-03-01T09:30:00-05:00",
            ..row()
        };
        assert_eq!(
            Valuation::parse(&text).unwrap().assessed_at.to_rfc3339(),
            "2026-03-01T14:30:00+00:00"
        );
        for bad in [
            "01/03/2026",
            "2026-03-01",
            "2026-03-01T14:30:00",
            "1 March 2026",
            "2026-02-30T10:00:00Z",
        ] {
            let text = ValuationText {
                assessed_at: bad,
                ..row()
            };
            assert_eq!(refused(text), ("assessed_at", "tradein.bad_time"), "{bad}");
        }
    }

    #[test]
    fn every_field_refuses_hidden_characters_empty_text_and_excess_length() {
        let long = "x".repeat(FIELD_MAX_BYTES + 1);
        for (text, field, code) in [
            (
                ValuationText {
                    device_model: "iPhone\u{0}13",
                    ..row()
                },
                "device_model",
                "tradein.control_character",
            ),
            (
                ValuationText {
                    device_model: "iPhone\u{202e}31",
                    ..row()
                },
                "device_model",
                "tradein.control_character",
            ),
            (
                ValuationText {
                    device_model: &long,
                    ..row()
                },
                "device_model",
                "tradein.field_too_long",
            ),
            (
                ValuationText {
                    trade_in_id: "",
                    ..row()
                },
                "trade_in_id",
                "tradein.empty_field",
            ),
            (
                ValuationText {
                    trade_in_id: "TI 1001",
                    ..row()
                },
                "trade_in_id",
                "tradein.bad_id",
            ),
            (
                ValuationText {
                    account_id: " 42",
                    ..row()
                },
                "account_id",
                "tradein.bad_account",
            ),
            (
                ValuationText {
                    account_id: "0",
                    ..row()
                },
                "account_id",
                "tradein.bad_account",
            ),
            (
                ValuationText {
                    grade: "Good",
                    ..row()
                },
                "grade",
                "tradein.bad_grade",
            ),
        ] {
            let error = Valuation::parse(&text).unwrap_err();
            assert_eq!((error.field, error.code()), (field, code), "{error}");
        }
    }

    #[test]
    fn a_model_may_look_like_a_formula_and_is_kept_as_written() {
        let text = ValuationText {
            device_model: "=HYPERLINK(\"x\")",
            ..row()
        };
        assert_eq!(
            Valuation::parse(&text).unwrap().model.as_str(),
            "=HYPERLINK(\"x\")"
        );
    }
}
