//! Currencies and exact amounts of money.
//!
//! Amounts are integers of the currency's minor unit (cents for USD, yen for
//! JPY, fils for KWD). Nothing here uses floating point, and nothing ever
//! rounds: an amount that does not fit the currency exactly is refused.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

use crate::error::{Classify, Kind};

/// A currency this service can hold, identified by its ISO 4217 alphabetic
/// code.
///
/// The supported currencies and their minor-unit exponents (the number of
/// decimal places, per ISO 4217):
///
/// | exponent | currencies |
/// | --- | --- |
/// | 2 | USD EUR GBP CAD AUD CHF SEK NOK DKK PLN CZK MXN BRL INR CNY HKD SGD NZD ZAR |
/// | 0 | JPY KRW CLP ISK VND |
/// | 3 | KWD BHD OMR JOD TND |
///
/// It serializes as its code (`"USD"`) and deserializes through
/// [`Currency::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Currency {
    /// United States dollar, 2 decimals.
    Usd,
    /// Euro, 2 decimals.
    Eur,
    /// Pound sterling, 2 decimals.
    Gbp,
    /// Canadian dollar, 2 decimals.
    Cad,
    /// Australian dollar, 2 decimals.
    Aud,
    /// Swiss franc, 2 decimals.
    Chf,
    /// Swedish krona, 2 decimals.
    Sek,
    /// Norwegian krone, 2 decimals.
    Nok,
    /// Danish krone, 2 decimals.
    Dkk,
    /// Polish złoty, 2 decimals.
    Pln,
    /// Czech koruna, 2 decimals.
    Czk,
    /// Mexican peso, 2 decimals.
    Mxn,
    /// Brazilian real, 2 decimals.
    Brl,
    /// Indian rupee, 2 decimals.
    Inr,
    /// Chinese yuan renminbi, 2 decimals.
    Cny,
    /// Hong Kong dollar, 2 decimals.
    Hkd,
    /// Singapore dollar, 2 decimals.
    Sgd,
    /// New Zealand dollar, 2 decimals.
    Nzd,
    /// South African rand, 2 decimals.
    Zar,
    /// Japanese yen, 0 decimals.
    Jpy,
    /// South Korean won, 0 decimals.
    Krw,
    /// Chilean peso, 0 decimals.
    Clp,
    /// Icelandic króna, 0 decimals.
    Isk,
    /// Vietnamese đồng, 0 decimals.
    Vnd,
    /// Kuwaiti dinar, 3 decimals.
    Kwd,
    /// Bahraini dinar, 3 decimals.
    Bhd,
    /// Omani rial, 3 decimals.
    Omr,
    /// Jordanian dinar, 3 decimals.
    Jod,
    /// Tunisian dinar, 3 decimals.
    Tnd,
}

impl Currency {
    /// Every supported currency, in the order of the table above.
    pub const ALL: [Self; 29] = [
        Self::Usd,
        Self::Eur,
        Self::Gbp,
        Self::Cad,
        Self::Aud,
        Self::Chf,
        Self::Sek,
        Self::Nok,
        Self::Dkk,
        Self::Pln,
        Self::Czk,
        Self::Mxn,
        Self::Brl,
        Self::Inr,
        Self::Cny,
        Self::Hkd,
        Self::Sgd,
        Self::Nzd,
        Self::Zar,
        Self::Jpy,
        Self::Krw,
        Self::Clp,
        Self::Isk,
        Self::Vnd,
        Self::Kwd,
        Self::Bhd,
        Self::Omr,
        Self::Jod,
        Self::Tnd,
    ];

    /// Parses an ISO 4217 alphabetic code.
    ///
    /// ASCII whitespace at both ends is trimmed and ASCII letters match in
    /// either case, so `"usd"` and `" USD "` both give [`Currency::Usd`].
    ///
    /// # Errors
    ///
    /// [`MoneyError::UnknownCurrency`] for anything that is not the code of
    /// a supported currency.
    pub fn parse(input: &str) -> Result<Self, MoneyError> {
        let wanted = input.trim_ascii().as_bytes();
        Self::ALL
            .into_iter()
            .find(|currency| currency.code().as_bytes().eq_ignore_ascii_case(wanted))
            .ok_or(MoneyError::UnknownCurrency)
    }

    /// The ISO 4217 alphabetic code, in upper case: `"USD"`.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::Usd => "USD",
            Self::Eur => "EUR",
            Self::Gbp => "GBP",
            Self::Cad => "CAD",
            Self::Aud => "AUD",
            Self::Chf => "CHF",
            Self::Sek => "SEK",
            Self::Nok => "NOK",
            Self::Dkk => "DKK",
            Self::Pln => "PLN",
            Self::Czk => "CZK",
            Self::Mxn => "MXN",
            Self::Brl => "BRL",
            Self::Inr => "INR",
            Self::Cny => "CNY",
            Self::Hkd => "HKD",
            Self::Sgd => "SGD",
            Self::Nzd => "NZD",
            Self::Zar => "ZAR",
            Self::Jpy => "JPY",
            Self::Krw => "KRW",
            Self::Clp => "CLP",
            Self::Isk => "ISK",
            Self::Vnd => "VND",
            Self::Kwd => "KWD",
            Self::Bhd => "BHD",
            Self::Omr => "OMR",
            Self::Jod => "JOD",
            Self::Tnd => "TND",
        }
    }

    /// The ISO 4217 minor-unit exponent: how many decimal places an amount
    /// may have (2 for USD, 0 for JPY, 3 for KWD).
    #[must_use]
    pub fn minor_units(&self) -> u32 {
        match self {
            Self::Jpy | Self::Krw | Self::Clp | Self::Isk | Self::Vnd => 0,
            Self::Kwd | Self::Bhd | Self::Omr | Self::Jod | Self::Tnd => 3,
            _ => 2,
        }
    }
}

impl FromStr for Currency {
    type Err = MoneyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(de::Error::custom)
    }
}

/// An exact amount of money: an integer number of minor units of one
/// currency.
///
/// `Money` has no ordering and no arithmetic operators: amounts of different
/// currencies cannot be compared or added, so [`Money::checked_add`] and
/// [`Money::checked_sub`] say so with an error instead.
///
/// It serializes as `{"amount": "25.00", "currency": "USD"}`, with the
/// amount as a string so that no JSON reader turns it into a float, and
/// deserializes through [`Money::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "MoneyRepr", into = "MoneyRepr")]
pub struct Money {
    minor: i64,
    currency: Currency,
}

impl Money {
    /// An amount given in minor units: `from_minor(2500, Currency::Usd)` is
    /// 25.00 USD.
    #[must_use]
    pub fn from_minor(minor: i64, currency: Currency) -> Self {
        Self { minor, currency }
    }

    /// Zero in `currency`.
    #[must_use]
    pub fn zero(currency: Currency) -> Self {
        Self::from_minor(0, currency)
    }

    /// Converts a decimal amount, exactly.
    ///
    /// Trailing zeros do not count as precision: `25.000` USD is accepted as
    /// 25.00 USD, while `25.001` USD is refused rather than rounded.
    ///
    /// # Errors
    ///
    /// - [`MoneyError::TooPrecise`] when the amount has more significant
    ///   decimal places than the currency's minor unit;
    /// - [`MoneyError::OutOfRange`] when the number of minor units does not
    ///   fit an `i64`.
    pub fn from_decimal(amount: Decimal, currency: Currency) -> Result<Self, MoneyError> {
        let amount = amount.normalize();
        let exponent = currency.minor_units();
        if amount.scale() > exponent {
            return Err(MoneyError::TooPrecise {
                currency,
                max_decimals: exponent,
            });
        }
        amount
            .mantissa()
            .checked_mul(10i128.pow(exponent - amount.scale()))
            .and_then(|minor| i64::try_from(minor).ok())
            .map(|minor| Self::from_minor(minor, currency))
            .ok_or(MoneyError::OutOfRange)
    }

    /// Parses an amount written in plain decimal notation, exactly.
    ///
    /// The text must be one or more ASCII digits, optionally preceded by a
    /// single `-`, optionally followed by `.` and one or more digits:
    /// `25`, `25.00`, `-3.5`, `0.125`. Nothing else is accepted: no `+`, no
    /// exponent (`1e3`), no thousands separators (`1,000`), no whitespace
    /// anywhere (callers trim if they want to), no bare `.5` or `5.`.
    ///
    /// The text is converted digit by digit rather than through
    /// [`Decimal`]'s own parser, which rounds inputs longer than 28 digits;
    /// the result is the same as [`Money::from_decimal`] on the exact value.
    ///
    /// # Errors
    ///
    /// - [`MoneyError::Malformed`] when the text breaks the rules above;
    /// - [`MoneyError::TooPrecise`] when it has more significant decimal
    ///   places than the currency allows;
    /// - [`MoneyError::OutOfRange`] when it does not fit an `i64` of minor
    ///   units.
    ///
    /// ```
    /// use tender::domain::{Currency, Money};
    ///
    /// assert_eq!(Money::parse("25.00", Currency::Usd).unwrap().minor(), 2_500);
    /// assert_eq!(Money::parse("1000", Currency::Jpy).unwrap().minor(), 1_000);
    /// assert!(Money::parse("25.001", Currency::Usd).is_err()); // refused, never rounded
    /// ```
    pub fn parse(amount: &str, currency: Currency) -> Result<Self, MoneyError> {
        let (negative, unsigned) = match amount.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, amount),
        };
        let (whole, fraction) = match unsigned.split_once('.') {
            Some((whole, fraction)) => (whole, Some(fraction)),
            None => (unsigned, None),
        };
        let is_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !is_digits(whole) || fraction.is_some_and(|f| !is_digits(f)) {
            return Err(MoneyError::Malformed);
        }

        let fraction = fraction.unwrap_or("").trim_end_matches('0');
        let exponent = currency.minor_units();
        let padding = usize::try_from(exponent)
            .ok()
            .and_then(|e| e.checked_sub(fraction.len()))
            .ok_or(MoneyError::TooPrecise {
                currency,
                max_decimals: exponent,
            })?;

        let digits = whole
            .bytes()
            .chain(fraction.bytes())
            .chain(std::iter::repeat_n(b'0', padding));
        let mut minor: i64 = 0;
        for digit in digits {
            let digit = i64::from(digit - b'0');
            // Accumulating towards the sign keeps i64::MIN reachable.
            minor = minor
                .checked_mul(10)
                .and_then(|m| {
                    if negative {
                        m.checked_sub(digit)
                    } else {
                        m.checked_add(digit)
                    }
                })
                .ok_or(MoneyError::OutOfRange)?;
        }
        Ok(Self::from_minor(minor, currency))
    }

    /// Parses an amount like [`Money::parse`] and requires it to be greater
    /// than zero, as for a card's face value or a top-up.
    ///
    /// # Errors
    ///
    /// Those of [`Money::parse`], and [`MoneyError::NotPositive`] for zero
    /// or a negative amount.
    pub fn parse_positive(amount: &str, currency: Currency) -> Result<Self, MoneyError> {
        Self::parse(amount, currency)?.require_positive()
    }

    /// Returns the amount unchanged if it is greater than zero.
    ///
    /// # Errors
    ///
    /// [`MoneyError::NotPositive`] for zero or a negative amount.
    pub fn require_positive(self) -> Result<Self, MoneyError> {
        if self.is_positive() {
            Ok(self)
        } else {
            Err(MoneyError::NotPositive)
        }
    }

    /// The amount as an exact decimal whose scale is the currency's
    /// exponent: 2500 USD cents give `25.00`.
    #[must_use]
    pub fn to_decimal(&self) -> Decimal {
        Decimal::new(self.minor, self.currency.minor_units())
    }

    /// The amount in minor units.
    #[must_use]
    pub fn minor(&self) -> i64 {
        self.minor
    }

    /// The currency of the amount.
    #[must_use]
    pub fn currency(&self) -> Currency {
        self.currency
    }

    /// Whether the amount is below zero.
    #[must_use]
    pub fn is_negative(&self) -> bool {
        self.minor < 0
    }

    /// Whether the amount is above zero.
    #[must_use]
    pub fn is_positive(&self) -> bool {
        self.minor > 0
    }

    /// Whether the amount is exactly zero.
    #[must_use]
    pub fn is_zero(&self) -> bool {
        self.minor == 0
    }

    /// `self + other`.
    ///
    /// # Errors
    ///
    /// [`MoneyError::CurrencyMismatch`] when the currencies differ,
    /// [`MoneyError::OutOfRange`] on overflow.
    pub fn checked_add(self, other: Self) -> Result<Self, MoneyError> {
        self.same_currency(other)?;
        self.minor
            .checked_add(other.minor)
            .map(|minor| Self::from_minor(minor, self.currency))
            .ok_or(MoneyError::OutOfRange)
    }

    /// `self - other`.
    ///
    /// # Errors
    ///
    /// [`MoneyError::CurrencyMismatch`] when the currencies differ,
    /// [`MoneyError::OutOfRange`] on overflow.
    pub fn checked_sub(self, other: Self) -> Result<Self, MoneyError> {
        self.same_currency(other)?;
        self.minor
            .checked_sub(other.minor)
            .map(|minor| Self::from_minor(minor, self.currency))
            .ok_or(MoneyError::OutOfRange)
    }

    fn same_currency(self, other: Self) -> Result<(), MoneyError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(MoneyError::CurrencyMismatch {
                left: self.currency,
                right: other.currency,
            })
        }
    }
}

impl fmt::Display for Money {
    /// The amount with exactly the currency's decimals, then the code:
    /// `25.00 USD`, `1000 JPY`, `1.500 KWD`, `-3.50 EUR`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.to_decimal(), self.currency)
    }
}

/// The wire form of [`Money`].
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MoneyRepr {
    amount: String,
    currency: Currency,
}

impl From<Money> for MoneyRepr {
    fn from(money: Money) -> Self {
        Self {
            amount: money.to_decimal().to_string(),
            currency: money.currency,
        }
    }
}

impl TryFrom<MoneyRepr> for Money {
    type Error = MoneyError;

    fn try_from(repr: MoneyRepr) -> Result<Self, Self::Error> {
        Self::parse(&repr.amount, repr.currency)
    }
}

/// Why an amount or currency was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// The text is not the ISO 4217 code of a supported currency.
    #[error("the currency is not one of the supported ISO 4217 codes")]
    UnknownCurrency,
    /// The amount text is not plain decimal notation.
    #[error(
        "an amount is written as digits with an optional leading '-' and an optional '.' followed by digits, such as 25.00"
    )]
    Malformed,
    /// The amount has more decimal places than the currency's minor unit;
    /// it is refused rather than rounded.
    #[error("{currency} amounts have at most {max_decimals} decimal places")]
    TooPrecise {
        /// The currency of the amount.
        currency: Currency,
        /// Its minor-unit exponent.
        max_decimals: u32,
    },
    /// The amount, in minor units, does not fit a signed 64-bit integer.
    #[error("the amount is too large to be held")]
    OutOfRange,
    /// Two amounts in different currencies were combined.
    #[error("amounts in {left} and {right} cannot be combined")]
    CurrencyMismatch {
        /// The currency of the left operand.
        left: Currency,
        /// The currency of the right operand.
        right: Currency,
    },
    /// The amount is zero or negative where only a positive one makes sense.
    #[error("the amount must be greater than zero")]
    NotPositive,
}

impl Classify for MoneyError {
    fn code(&self) -> &'static str {
        match self {
            Self::UnknownCurrency => "money.unknown_currency",
            Self::Malformed => "money.malformed",
            Self::TooPrecise { .. } => "money.too_precise",
            Self::OutOfRange => "money.out_of_range",
            Self::CurrencyMismatch { .. } => "money.currency_mismatch",
            Self::NotPositive => "money.not_positive",
        }
    }

    fn kind(&self) -> Kind {
        Kind::Invalid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use Currency::{Eur, Jpy, Kwd, Usd};

    fn dec(text: &str) -> Decimal {
        text.parse().unwrap()
    }

    fn usd(amount: &str) -> Result<Money, MoneyError> {
        Money::parse(amount, Usd)
    }

    #[test]
    fn every_supported_currency_has_its_iso_exponent() {
        let expected = [
            ("USD", 2),
            ("EUR", 2),
            ("GBP", 2),
            ("CAD", 2),
            ("AUD", 2),
            ("CHF", 2),
            ("SEK", 2),
            ("NOK", 2),
            ("DKK", 2),
            ("PLN", 2),
            ("CZK", 2),
            ("MXN", 2),
            ("BRL", 2),
            ("INR", 2),
            ("CNY", 2),
            ("HKD", 2),
            ("SGD", 2),
            ("NZD", 2),
            ("ZAR", 2),
            ("JPY", 0),
            ("KRW", 0),
            ("CLP", 0),
            ("ISK", 0),
            ("VND", 0),
            ("KWD", 3),
            ("BHD", 3),
            ("OMR", 3),
            ("JOD", 3),
            ("TND", 3),
        ];
        assert_eq!(expected.len(), Currency::ALL.len());
        for ((code, exponent), currency) in expected.into_iter().zip(Currency::ALL) {
            assert_eq!(currency.code(), code);
            assert_eq!(currency.minor_units(), exponent, "{code}");
            assert_eq!(Currency::parse(code), Ok(currency));
            assert_eq!(currency.to_string(), code);
        }
    }

    #[test]
    fn currency_codes_are_trimmed_and_matched_in_any_ascii_case() {
        for input in ["usd", "Usd", " USD\t", "\nuSd "] {
            assert_eq!(Currency::parse(input), Ok(Usd), "{input:?}");
        }
        assert_eq!("kwd".parse::<Currency>(), Ok(Kwd));
    }

    #[test]
    fn unknown_or_malformed_currency_codes_are_refused() {
        for input in [
            "",
            "US",
            "USDD",
            "XXX",
            "BTC",
            "U S",
            "ＵＳＤ",
            "US1",
            "usd.",
            "U\u{131}SD",
        ] {
            assert_eq!(
                Currency::parse(input),
                Err(MoneyError::UnknownCurrency),
                "{input:?}"
            );
        }
    }

    #[test]
    fn currencies_serialize_as_their_code() {
        assert_eq!(serde_json::to_string(&Jpy).unwrap(), "\"JPY\"");
        assert_eq!(serde_json::from_str::<Currency>("\"jpy\"").unwrap(), Jpy);
        assert!(serde_json::from_str::<Currency>("\"XYZ\"").is_err());
    }

    #[test]
    fn usd_amounts_have_two_decimals() {
        assert_eq!(usd("25.00").unwrap().minor(), 2500);
        assert_eq!(usd("25").unwrap().minor(), 2500);
        assert_eq!(usd("25.5").unwrap().minor(), 2550);
        assert_eq!(usd("0.01").unwrap().minor(), 1);
        assert_eq!(usd("-3.50").unwrap().minor(), -350);
    }

    #[test]
    fn jpy_amounts_are_whole_yen() {
        assert_eq!(Money::parse("1000", Jpy).unwrap().minor(), 1000);
        assert_eq!(Money::parse("1000.00", Jpy).unwrap().minor(), 1000);
        assert_eq!(
            Money::parse("1000.5", Jpy),
            Err(MoneyError::TooPrecise {
                currency: Jpy,
                max_decimals: 0
            })
        );
    }

    #[test]
    fn kwd_amounts_have_three_decimals() {
        assert_eq!(Money::parse("1.5", Kwd).unwrap().minor(), 1500);
        assert_eq!(Money::parse("1.125", Kwd).unwrap().minor(), 1125);
        assert_eq!(
            Money::parse("1.1255", Kwd),
            Err(MoneyError::TooPrecise {
                currency: Kwd,
                max_decimals: 3
            })
        );
    }

    #[test]
    fn an_amount_with_more_decimals_than_the_currency_allows_is_refused_not_rounded() {
        let too_precise = Err(MoneyError::TooPrecise {
            currency: Usd,
            max_decimals: 2,
        });
        assert_eq!(usd("25.001"), too_precise);
        assert_eq!(usd("25.009"), too_precise);
        assert_eq!(usd("0.005"), too_precise);
        assert_eq!(usd("-0.001"), too_precise);
        assert_eq!(usd("0.0000000000000000000000000000001"), too_precise);
        assert_eq!(Money::from_decimal(dec("25.001"), Usd), too_precise);
        assert_eq!(Money::from_decimal(dec("0.005"), Usd), too_precise);
    }

    #[test]
    fn trailing_zeros_beyond_the_exponent_are_not_extra_precision() {
        assert_eq!(usd("25.000").unwrap().minor(), 2500);
        assert_eq!(
            usd("25.0000000000000000000000000000000000")
                .unwrap()
                .minor(),
            2500
        );
        assert_eq!(
            Money::from_decimal(dec("25.000"), Usd).unwrap().minor(),
            2500
        );
    }

    #[test]
    fn from_decimal_is_exact() {
        assert_eq!(Money::from_decimal(dec("25"), Usd).unwrap().minor(), 2500);
        assert_eq!(Money::from_decimal(dec("25.5"), Usd).unwrap().minor(), 2550);
        assert_eq!(Money::from_decimal(dec("-0.01"), Usd).unwrap().minor(), -1);
        assert_eq!(
            Money::from_decimal(dec("1.500"), Kwd).unwrap().minor(),
            1500
        );
        assert_eq!(Money::from_decimal(dec("1000"), Jpy).unwrap().minor(), 1000);
        assert_eq!(
            Money::from_decimal(dec("-0"), Usd).unwrap(),
            Money::zero(Usd)
        );
    }

    #[test]
    fn malformed_amount_text_is_refused() {
        for input in [
            "", ".", "-", "-.", "1e3", "1E3", "1,000", "1_000", " 5", "5 ", "5\n", "--5", "+5",
            "5-", ".5", "5.", "5..0", "5.0.0", "0x10", "١٢", "５", "NaN", "inf", "1 000", "-.5",
            "- 5",
        ] {
            assert_eq!(usd(input), Err(MoneyError::Malformed), "{input:?}");
        }
    }

    #[test]
    fn amounts_beyond_i64_minor_units_are_refused() {
        assert_eq!(usd("92233720368547758.07").unwrap().minor(), i64::MAX);
        assert_eq!(usd("-92233720368547758.08").unwrap().minor(), i64::MIN);
        assert_eq!(usd("92233720368547758.08"), Err(MoneyError::OutOfRange));
        assert_eq!(usd("-92233720368547758.09"), Err(MoneyError::OutOfRange));
        assert_eq!(
            usd("99999999999999999999999999999999999999"),
            Err(MoneyError::OutOfRange)
        );
        assert_eq!(
            Money::from_decimal(Decimal::MAX, Usd),
            Err(MoneyError::OutOfRange)
        );
        assert_eq!(
            Money::from_decimal(dec("92233720368547758.08"), Usd),
            Err(MoneyError::OutOfRange)
        );
    }

    #[test]
    fn leading_zeros_are_allowed() {
        assert_eq!(usd("007.50").unwrap().minor(), 750);
        assert_eq!(usd("-0").unwrap(), Money::zero(Usd));
    }

    #[test]
    fn to_decimal_has_the_currency_exponent_as_scale() {
        let amount = Money::from_minor(2500, Usd).to_decimal();
        assert_eq!(amount, dec("25"));
        assert_eq!(amount.scale(), 2);
        assert_eq!(Money::from_minor(1500, Kwd).to_decimal().scale(), 3);
        assert_eq!(Money::from_minor(1000, Jpy).to_decimal().scale(), 0);
    }

    #[test]
    fn decimal_round_trips_are_exact() {
        for minor in [i64::MIN, -1, 0, 1, 99, 100, 12_345, i64::MAX] {
            for currency in [Usd, Jpy, Kwd] {
                let money = Money::from_minor(minor, currency);
                assert_eq!(Money::from_decimal(money.to_decimal(), currency), Ok(money));
                let text = money.to_decimal().to_string();
                assert_eq!(Money::parse(&text, currency), Ok(money), "{text}");
            }
        }
    }

    #[test]
    fn display_shows_the_currency_exponent_and_code() {
        assert_eq!(Money::from_minor(2500, Usd).to_string(), "25.00 USD");
        assert_eq!(Money::from_minor(1000, Jpy).to_string(), "1000 JPY");
        assert_eq!(Money::from_minor(1500, Kwd).to_string(), "1.500 KWD");
        assert_eq!(Money::from_minor(-350, Eur).to_string(), "-3.50 EUR");
        assert_eq!(Money::from_minor(5, Usd).to_string(), "0.05 USD");
        assert_eq!(Money::zero(Kwd).to_string(), "0.000 KWD");
        assert_eq!(
            Money::from_minor(i64::MIN, Usd).to_string(),
            "-92233720368547758.08 USD"
        );
    }

    #[test]
    fn sign_predicates_agree_with_the_minor_units() {
        let negative = Money::from_minor(-1, Usd);
        let zero = Money::zero(Usd);
        let positive = Money::from_minor(1, Usd);
        assert!(negative.is_negative() && !negative.is_positive() && !negative.is_zero());
        assert!(!zero.is_negative() && !zero.is_positive() && zero.is_zero());
        assert!(!positive.is_negative() && positive.is_positive() && !positive.is_zero());
        assert_eq!(positive.currency(), Usd);
    }

    #[test]
    fn parse_positive_refuses_zero_and_negative_amounts() {
        assert_eq!(Money::parse_positive("0.01", Usd).unwrap().minor(), 1);
        for input in ["0", "0.00", "-0", "-0.01", "-25"] {
            assert_eq!(
                Money::parse_positive(input, Usd),
                Err(MoneyError::NotPositive),
                "{input:?}"
            );
        }
        assert_eq!(
            Money::parse_positive("1e3", Usd),
            Err(MoneyError::Malformed)
        );
        assert_eq!(
            Money::from_minor(-5, Jpy).require_positive(),
            Err(MoneyError::NotPositive)
        );
    }

    #[test]
    fn amounts_in_the_same_currency_add_and_subtract() {
        let a = Money::from_minor(2500, Usd);
        let b = Money::from_minor(1, Usd);
        assert_eq!(a.checked_add(b), Ok(Money::from_minor(2501, Usd)));
        assert_eq!(a.checked_sub(b), Ok(Money::from_minor(2499, Usd)));
        assert_eq!(b.checked_sub(a), Ok(Money::from_minor(-2499, Usd)));
    }

    #[test]
    fn amounts_in_different_currencies_cannot_be_combined() {
        let dollars = Money::from_minor(100, Usd);
        let euros = Money::from_minor(100, Eur);
        let mismatch = Err(MoneyError::CurrencyMismatch {
            left: Usd,
            right: Eur,
        });
        assert_eq!(dollars.checked_add(euros), mismatch);
        assert_eq!(dollars.checked_sub(euros), mismatch);
    }

    #[test]
    fn arithmetic_overflow_is_refused() {
        let max = Money::from_minor(i64::MAX, Usd);
        let min = Money::from_minor(i64::MIN, Usd);
        let one = Money::from_minor(1, Usd);
        assert_eq!(max.checked_add(one), Err(MoneyError::OutOfRange));
        assert_eq!(min.checked_sub(one), Err(MoneyError::OutOfRange));
    }

    #[test]
    fn money_serializes_with_a_string_amount() {
        let money = Money::from_minor(2550, Usd);
        let json = serde_json::to_string(&money).unwrap();
        assert_eq!(json, r#"{"amount":"25.50","currency":"USD"}"#);
        assert_eq!(serde_json::from_str::<Money>(&json).unwrap(), money);
    }

    #[test]
    fn deserializing_money_refuses_what_parse_refuses() {
        for json in [
            r#"{"amount":"25.001","currency":"USD"}"#,
            r#"{"amount":"1e3","currency":"USD"}"#,
            r#"{"amount":25.5,"currency":"USD"}"#,
            r#"{"amount":"25.50","currency":"XXX"}"#,
            r#"{"amount":"25.50","currency":"USD","extra":1}"#,
        ] {
            assert!(serde_json::from_str::<Money>(json).is_err(), "{json}");
        }
    }

    #[test]
    fn the_too_precise_message_names_the_currency_and_its_decimals() {
        assert_eq!(
            MoneyError::TooPrecise {
                currency: Usd,
                max_decimals: 2
            }
            .to_string(),
            "USD amounts have at most 2 decimal places"
        );
    }

    #[test]
    fn every_error_has_a_stable_machine_readable_code() {
        let cases = [
            (MoneyError::UnknownCurrency, "money.unknown_currency"),
            (MoneyError::Malformed, "money.malformed"),
            (
                MoneyError::TooPrecise {
                    currency: Usd,
                    max_decimals: 2,
                },
                "money.too_precise",
            ),
            (MoneyError::OutOfRange, "money.out_of_range"),
            (
                MoneyError::CurrencyMismatch {
                    left: Usd,
                    right: Eur,
                },
                "money.currency_mismatch",
            ),
            (MoneyError::NotPositive, "money.not_positive"),
        ];
        for (error, code) in cases {
            assert_eq!(error.code(), code);
        }
    }
}
