//! The ledger's values: customer accounts, the chart of accounts, amounts a transfer may move,
//! the references callers give (order, refund and adjustment ids), and transfers that can only be
//! built balanced.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::jurisdiction::Jurisdiction;
use super::money::{Currency, Money, MoneyError};
use super::region::Region;
use super::retailer::RetailerId;
use super::serial::Serial;
use crate::error::{Classify, Kind};

/// The largest amount one transfer moves, in major units of a 2-decimal currency: ten times a
/// card's ceiling. A typo guard (an extra zero, a pasted order total), not a compliance limit.
pub const TRANSFER_MAX_MAJOR_EXPONENT_2: i64 = 50_000;
/// The same for 0-decimal currencies (JPY, KRW…).
pub const TRANSFER_MAX_MAJOR_EXPONENT_0: i64 = 5_000_000;
/// The same for 3-decimal currencies (KWD, BHD…).
pub const TRANSFER_MAX_MAJOR_EXPONENT_3: i64 = 15_000;
/// The longest order, refund or external id: long enough for a UUID with a prefix, short
/// enough to index and to show in a history line.
pub const REFERENCE_MAX_CHARS: usize = 64;
/// The longest spending service name or reason code: a short word an operator types.
pub const NAME_MAX_CHARS: usize = 32;

/// The largest amount one transfer may move in `currency`.
pub fn max_transfer(currency: Currency) -> Money {
    let major = match currency.minor_units() {
        0 => TRANSFER_MAX_MAJOR_EXPONENT_0,
        3 => TRANSFER_MAX_MAJOR_EXPONENT_3,
        _ => TRANSFER_MAX_MAJOR_EXPONENT_2,
    };
    Money::from_minor(major * 10i64.pow(currency.minor_units()), currency)
}

/// Why a ledger value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerValueError {
    /// The amount is not an exact amount of the currency.
    #[error(transparent)]
    Money(#[from] MoneyError),
    /// The amount is zero (or, where a credit or debit is asked for, negative).
    #[error("the amount must be more than zero")]
    NotPositive,
    /// The amount is above the per-transfer ceiling.
    #[error("one transfer moves at most {0}")]
    TooLarge(Money),
    /// An account id is not a positive number.
    #[error("an account id is a positive whole number")]
    BadAccountId,
    /// A reference is empty, too long or has characters outside its set.
    #[error(
        "an order, refund or external id is 1 to {REFERENCE_MAX_CHARS} letters, digits or . _ : -"
    )]
    BadReference,
    /// A service name or reason code is empty, too long or has characters outside its set.
    #[error(
        "a service name or reason code is 1 to {NAME_MAX_CHARS} lower-case letters, digits or - _"
    )]
    BadName,
}

impl Classify for LedgerValueError {
    fn code(&self) -> &'static str {
        match self {
            LedgerValueError::Money(e) => e.code(),
            LedgerValueError::NotPositive => "amount.not_positive",
            LedgerValueError::TooLarge(_) => "amount.too_large",
            LedgerValueError::BadAccountId => "account.bad_id",
            LedgerValueError::BadReference => "ledger.bad_reference",
            LedgerValueError::BadName => "ledger.bad_name",
        }
    }

    fn kind(&self) -> Kind {
        Kind::Invalid
    }
}

/// A positive amount no larger than [`max_transfer`]: what a spend, refund or credit moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Amount(Money);

impl Amount {
    /// Parses `text` (digits, at most one point, no sign, no exponent, no separators) as an
    /// amount of `currency`.
    pub fn parse(text: &str, currency: Currency) -> Result<Amount, LedgerValueError> {
        Amount::new(Money::parse(text, currency)?)
    }

    /// `money` as an amount, if positive and within the ceiling.
    pub fn new(money: Money) -> Result<Amount, LedgerValueError> {
        if !money.is_positive() {
            return Err(LedgerValueError::NotPositive);
        }
        let max = max_transfer(money.currency());
        if money.minor() > max.minor() {
            return Err(LedgerValueError::TooLarge(max));
        }
        Ok(Amount(money))
    }

    /// The money.
    pub fn money(self) -> Money {
        self.0
    }

    /// In minor units.
    pub fn minor(self) -> i64 {
        self.0.minor()
    }

    /// Its currency.
    pub fn currency(self) -> Currency {
        self.0.currency()
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A signed, non-zero amount within the ceiling either way: a support adjustment (a credit
/// when positive, a debit when negative).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Adjustment(Money);

impl Adjustment {
    /// Parses `text`, with an optional leading `-` (or `+`), as an amount of `currency`. One
    /// sign at most: `+-5.00` is refused, never read as a debit.
    pub fn parse(text: &str, currency: Currency) -> Result<Adjustment, LedgerValueError> {
        let text = match text.strip_prefix('+') {
            Some(rest) if rest.starts_with('-') => return Err(MoneyError::Malformed.into()),
            Some(rest) => rest,
            None => text,
        };
        Adjustment::new(Money::parse(text, currency)?)
    }

    /// `money` as an adjustment, if non-zero and within the ceiling either way.
    pub fn new(money: Money) -> Result<Adjustment, LedgerValueError> {
        let size = money
            .minor()
            .checked_abs()
            .ok_or(LedgerValueError::TooLarge(max_transfer(money.currency())))?;
        Amount::new(Money::from_minor(size, money.currency()))?;
        Ok(Adjustment(money))
    }

    /// The signed money.
    pub fn money(self) -> Money {
        self.0
    }

    /// Its size, as an amount.
    pub fn size(self) -> Amount {
        Amount(Money::from_minor(self.0.minor().abs(), self.0.currency()))
    }

    /// Whether it credits the account.
    pub fn is_credit(self) -> bool {
        self.0.is_positive()
    }
}

/// A customer account's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct AccountId(pub i64);

impl AccountId {
    /// Parses a positive id.
    pub fn parse(text: &str) -> Result<AccountId, LedgerValueError> {
        text.trim()
            .parse()
            .ok()
            .filter(|id: &i64| *id > 0)
            .map(AccountId)
            .ok_or(LedgerValueError::BadAccountId)
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A transfer's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TransferId(pub i64);

impl fmt::Display for TransferId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A caller's id for something: an order, a refund, a customer in the store's records.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Reference(String);

impl Reference {
    /// Parses 1 to [`REFERENCE_MAX_CHARS`] characters of `A-Z a-z 0-9 . _ : -`.
    pub fn parse(text: &str) -> Result<Reference, LedgerValueError> {
        let ok = (1..=REFERENCE_MAX_CHARS).contains(&text.len())
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".:_-".contains(&b));
        ok.then(|| Reference(text.to_string()))
            .ok_or(LedgerValueError::BadReference)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A short operator word: a spending service (`app-store`) or a reason code (`goodwill`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Name(String);

impl Name {
    /// Parses 1 to [`NAME_MAX_CHARS`] characters of `a-z 0-9 - _`.
    pub fn parse(text: &str) -> Result<Name, LedgerValueError> {
        let ok = (1..=NAME_MAX_CHARS).contains(&text.len())
            && text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_".contains(&b));
        ok.then(|| Name(text.to_string()))
            .ok_or(LedgerValueError::BadName)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An account of the chart, per currency. Customer accounts hold a guarded balance row; the
/// system accounts are entries only, their balances aggregates (settlement, `ledger check`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LedgerAccount {
    /// A customer's stored value.
    Customer(AccountId),
    /// What a spending service was paid: `spent:{service}`.
    Spent(Name),
    /// The support desk's corrections and goodwill: `adjustment`.
    Adjustment,
    /// The value an active card carries: `card:{serial}`. Like a customer's balance, a
    /// liability; its legs name the serial.
    Card(Serial),
    /// What a retailer owes for the cards it sold, net of its commission:
    /// `receivable:{retailer id}`.
    Receivable(RetailerId),
    /// The commission retailers keep on the cards they sell: `commission`.
    Commission,
    /// The trade-in programme's funding: debited by each trade-in credit, credited by each
    /// claw-back: `trade_in`.
    TradeIn,
    /// The funds of expired cards that no unclaimed-property law claims: the issuer's
    /// breakage income, `breakage`.
    Breakage,
    /// The funds of expired cards owed to a state under its unclaimed-property law, a
    /// liability until remitted: `escheat_payable:{state}`, the state ISO 3166-2.
    EscheatPayable(Jurisdiction),
    /// The money retailers paid in: debited by each payment a retailer made against its
    /// receivable, `bank`.
    Bank,
}

impl LedgerAccount {
    /// The account as entries name it.
    pub fn key(&self) -> String {
        match self {
            LedgerAccount::Customer(id) => format!("customer:{id}"),
            LedgerAccount::Spent(service) => format!("spent:{service}"),
            LedgerAccount::Adjustment => "adjustment".to_string(),
            LedgerAccount::Card(serial) => format!("card:{serial}"),
            LedgerAccount::Receivable(retailer) => format!("receivable:{retailer}"),
            LedgerAccount::Commission => "commission".to_string(),
            LedgerAccount::TradeIn => "trade_in".to_string(),
            LedgerAccount::Breakage => "breakage".to_string(),
            LedgerAccount::EscheatPayable(state) => format!("escheat_payable:{state}"),
            LedgerAccount::Bank => "bank".to_string(),
        }
    }

    /// The card, where it is one.
    pub fn card(&self) -> Option<Serial> {
        match self {
            LedgerAccount::Card(serial) => Some(*serial),
            _ => None,
        }
    }

    /// The customer account, where it is one.
    pub fn customer(&self) -> Option<AccountId> {
        match self {
            LedgerAccount::Customer(id) => Some(*id),
            _ => None,
        }
    }
}

/// What a transfer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferKind {
    /// A customer paid a spending service for an order.
    Spend,
    /// A spending service gave part or all of an order back.
    Refund,
    /// The support desk credited or debited an account.
    Adjustment,
    /// A store sold cards: each card credited its value, the retailer's receivable and the
    /// commission debited.
    Activation,
    /// A store took back an unredeemed card: its activation reversed.
    Void,
    /// A customer redeemed a card: its whole value moved from the card to the account.
    Redemption,
    /// A warehouse's valuation of a traded-in device credited the account.
    TradeIn,
    /// A lower revaluation took back what it could of an earlier trade-in credit.
    Clawback,
    /// Expired cards' funds moved to breakage.
    Breakage,
    /// Expired cards' funds moved to a state's escheat payable.
    Escheat,
    /// A retailer paid what it owed: the bank debited, its receivable credited.
    Payment,
}

impl TransferKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            TransferKind::Spend => "spend",
            TransferKind::Refund => "refund",
            TransferKind::Adjustment => "adjustment",
            TransferKind::Activation => "activation",
            TransferKind::Void => "void",
            TransferKind::Redemption => "redemption",
            TransferKind::TradeIn => "trade_in",
            TransferKind::Clawback => "clawback",
            TransferKind::Breakage => "breakage",
            TransferKind::Escheat => "escheat",
            TransferKind::Payment => "payment",
        }
    }

    /// The kind a stored name means.
    pub fn parse(text: &str) -> Option<TransferKind> {
        [
            TransferKind::Spend,
            TransferKind::Refund,
            TransferKind::Adjustment,
            TransferKind::Activation,
            TransferKind::Void,
            TransferKind::Redemption,
            TransferKind::TradeIn,
            TransferKind::Clawback,
            TransferKind::Breakage,
            TransferKind::Escheat,
            TransferKind::Payment,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == text)
    }
}

/// One leg of a transfer: `amount` credits `account` when positive, debits it when negative.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leg {
    /// The account.
    pub account: LedgerAccount,
    /// Signed minor units.
    pub amount_minor: i64,
}

/// A transfer about to be posted. Its constructors ([`Posting::transfer`] here, the card
/// postings in `card.rs`) only build legs that sum to zero, so every transfer balances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posting {
    /// What it is for.
    pub kind: TransferKind,
    /// The currency of every leg.
    pub currency: Currency,
    /// The caller's reference (an order id, a refund id, an adjustment id).
    pub reference: Option<String>,
    /// When it happened in the world.
    pub effective_at: DateTime<Utc>,
    /// The legs: debits first, then credits; none is zero.
    pub legs: Vec<Leg>,
}

impl Posting {
    /// Moves `amount` from `from` (debited) to `to` (credited).
    pub fn transfer(
        kind: TransferKind,
        from: LedgerAccount,
        to: LedgerAccount,
        amount: Amount,
        reference: Option<String>,
        effective_at: DateTime<Utc>,
    ) -> Posting {
        Posting {
            kind,
            currency: amount.currency(),
            reference,
            effective_at,
            legs: vec![
                Leg {
                    account: from,
                    amount_minor: -amount.minor(),
                },
                Leg {
                    account: to,
                    amount_minor: amount.minor(),
                },
            ],
        }
    }
}

/// A customer account as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Account {
    /// Its id.
    pub id: AccountId,
    /// The storefront country.
    pub region: Region,
    /// Its one currency.
    pub currency: Currency,
    /// What it holds.
    pub balance: Money,
    /// Why it is frozen; `None` when it is not.
    pub frozen_reason: Option<String>,
    /// The store's customer reference, until erased.
    pub external_id: Option<String>,
    /// When its personal data was erased.
    pub erased_at: Option<DateTime<Utc>>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// A new customer account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAccount {
    /// The storefront country.
    pub region: Region,
    /// Its one currency.
    pub currency: Currency,
    /// The store's customer reference, if any.
    pub external_id: Option<Reference>,
}

/// One line of an account's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryLine {
    /// The transfer: also the cursor to page on from.
    pub transfer_id: TransferId,
    /// What it was.
    pub kind: TransferKind,
    /// What it did to the account: positive in, negative out.
    pub amount: Money,
    /// The balance after it.
    pub balance_after: Money,
    /// The caller's reference.
    pub reference: Option<String>,
    /// When it happened in the world.
    pub effective_at: DateTime<Utc>,
    /// When tender recorded it.
    pub recorded_at: DateTime<Utc>,
    /// For a trade-in credit or claw-back: the device, and what the claw-back left owed.
    pub trade_in: Option<TradeInNote>,
    /// For a redemption: the card redeemed.
    pub card: Option<super::Serial>,
    /// For a purchase or a refund: the service the order was placed at.
    pub service: Option<String>,
    /// For a purchase or a refund: the order's id.
    pub order: Option<String>,
}

/// What an account's history shows of a trade-in beside its transfer: the device as the
/// customer knows it (`None` once the account's personal data is erased), and for a claw-back
/// what the balance could not cover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TradeInNote {
    /// The device model.
    pub device_model: Option<String>,
    /// The last 4 characters of its serial or IMEI.
    pub device_last4: Option<String>,
    /// What a claw-back could not take back and the customer still owes; zero otherwise.
    pub owed: Money,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_amount_is_positive_exact_and_within_the_ceiling() {
        let usd = Currency::Usd;
        assert_eq!(Amount::parse("10.50", usd).unwrap().minor(), 1_050);
        assert_eq!(Amount::parse("50000", usd).unwrap().minor(), 5_000_000);
        for (text, code) in [
            ("0", "amount.not_positive"),
            ("0.00", "amount.not_positive"),
            ("-5.00", "amount.not_positive"),
            ("10.001", "money.too_precise"),
            ("50000.01", "amount.too_large"),
            ("1e3", "money.malformed"),
            ("1,000.00", "money.malformed"),
            ("$10", "money.malformed"),
            ("NaN", "money.malformed"),
            ("", "money.malformed"),
            ("99999999999999999999", "money.out_of_range"),
        ] {
            let error = Amount::parse(text, usd).unwrap_err();
            assert_eq!(error.code(), code, "{text}");
        }
        assert_eq!(
            Amount::parse("5000000", Currency::Jpy).unwrap().minor(),
            5_000_000
        );
        assert!(Amount::parse("1.5", Currency::Jpy).is_err());
    }

    #[test]
    fn an_adjustment_is_signed_and_bounded_both_ways() {
        let usd = Currency::Usd;
        assert!(Adjustment::parse("+5.00", usd).unwrap().is_credit());
        let debit = Adjustment::parse("-5.00", usd).unwrap();
        assert!(!debit.is_credit());
        assert_eq!(debit.size().minor(), 500);
        assert_eq!(
            Adjustment::parse("-50000.01", usd).unwrap_err().code(),
            "amount.too_large"
        );
        assert_eq!(
            Adjustment::parse("-0", usd).unwrap_err().code(),
            "amount.not_positive"
        );
        for twice in ["+-5.00", "-+5.00", "--5.00", "++5.00"] {
            assert_eq!(
                Adjustment::parse(twice, usd).unwrap_err().code(),
                "money.malformed",
                "{twice}"
            );
        }
    }

    #[test]
    fn every_posting_balances() {
        let amount = Amount::parse("3.00", Currency::Usd).unwrap();
        let posting = Posting::transfer(
            TransferKind::Spend,
            LedgerAccount::Customer(AccountId(1)),
            LedgerAccount::Spent(Name::parse("app-store").unwrap()),
            amount,
            None,
            DateTime::UNIX_EPOCH,
        );
        assert_eq!(posting.legs.iter().map(|l| l.amount_minor).sum::<i64>(), 0);
        assert_eq!(posting.legs[1].account.key(), "spent:app-store");
    }

    #[test]
    fn references_and_names_keep_to_their_sets() {
        assert!(Reference::parse("order-2026:17_a.b").is_ok());
        for bad in ["", "a b", "ä", "x\u{1b}", &"x".repeat(65)] {
            assert!(Reference::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Name::parse("app-store").is_ok());
        for bad in ["App-Store", "", "a:b", &"x".repeat(33)] {
            assert!(Name::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(AccountId::parse("17").unwrap(), AccountId(17));
        for bad in ["0", "-1", "x", ""] {
            assert!(AccountId::parse(bad).is_err(), "{bad:?}");
        }
    }
}
