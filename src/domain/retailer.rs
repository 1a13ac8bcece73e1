//! Retailers: who sells and activates cards, and the commission settlement deducts for them.

use std::fmt;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
use unicode_security::skeleton;

use crate::error::{Classify, Kind};

/// Longest retailer name accepted, in characters after normalisation: a listing column, not prose.
pub const RETAILER_NAME_MAX_CHARS: usize = 100;

/// Longest retailer name input read, in bytes: room for [`RETAILER_NAME_MAX_CHARS`] characters of
/// up to four bytes each, padded with whitespace, while bounding the work normalisation does.
pub const RETAILER_NAME_INPUT_MAX_BYTES: usize = 1024;

/// Longest commission input read, in bytes: `100.00%` needs 7, and the rest leaves room for
/// padding zeros; anything longer is a mistake, refused before a digit is read.
pub const COMMISSION_INPUT_MAX_BYTES: usize = 64;

/// A retailer's database id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct RetailerId(pub i64);

impl fmt::Display for RetailerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Why retailer input was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetailerError {
    /// Empty after trimming, too long, or holding control, format or unassigned characters.
    #[error(
        "a retailer name has 1 to {RETAILER_NAME_MAX_CHARS} visible characters and no control or formatting characters"
    )]
    BadName,
    /// Not a percentage from 0 to 100 with at most two decimals.
    #[error("a commission is a percentage from 0 to 100 with at most two decimals, such as 2.5")]
    BadCommission,
}

impl Classify for RetailerError {
    fn code(&self) -> &'static str {
        match self {
            RetailerError::BadName => "retailer.bad_name",
            RetailerError::BadCommission => "retailer.bad_commission",
        }
    }

    fn kind(&self) -> Kind {
        Kind::Invalid
    }
}

/// A retailer's name: trimmed, in NFC, 1 to [`RETAILER_NAME_MAX_CHARS`] characters, with no
/// control, format (bidi overrides, zero-width characters), private-use or unassigned characters.
///
/// It carries its uniqueness key (see [`RetailerName::key`]): two names with one key look alike
/// in a listing, so only one of them may exist.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RetailerName {
    name: String,
    key: String,
}

impl RetailerName {
    /// Parses a name.
    pub fn parse(input: &str) -> Result<RetailerName, RetailerError> {
        if input.len() > RETAILER_NAME_INPUT_MAX_BYTES {
            return Err(RetailerError::BadName);
        }
        let trimmed = input.trim();
        if trimmed.chars().any(is_hidden_or_control) {
            return Err(RetailerError::BadName);
        }
        let name: String = trimmed.nfc().collect();
        let chars = name.chars().count();
        let key = name_key(&name);
        // A key can be empty where every character is one the skeleton ignores (Hangul fillers):
        // such a name shows as nothing.
        if chars == 0 || chars > RETAILER_NAME_MAX_CHARS || key.is_empty() {
            return Err(RetailerError::BadName);
        }
        Ok(RetailerName { name, key })
    }

    /// The name, in NFC.
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The uniqueness key: the UTS 39 confusable skeleton of the NFKC, lower-cased name, lower-cased
    /// again because prototypes can be capitals (`0` becomes `O`). "Acme", "ACME", "Ａｃｍｅ" and
    /// "Аcme" (Cyrillic А) share one key. It depends on the Unicode data of `unicode-security`,
    /// so keys stored under an older version may need recomputing when that crate changes.
    pub fn key(&self) -> &str {
        &self.key
    }
}

/// Characters that a terminal does not show as themselves, or that reorder or hide the text
/// around them: Cc (controls), Cf (bidi overrides and isolates, zero-width characters, soft
/// hyphen, BOM), Zl and Zp (line and paragraph separators), Co (private use) and Cn (unassigned,
/// whose look and confusables are unknown).
pub(crate) fn is_hidden_or_control(c: char) -> bool {
    use GeneralCategory as G;
    matches!(
        c.general_category(),
        G::Control
            | G::Format
            | G::LineSeparator
            | G::ParagraphSeparator
            | G::PrivateUse
            | G::Unassigned
            | G::Surrogate
    )
}

fn name_key(name: &str) -> String {
    let folded: String = name.nfkc().flat_map(char::to_lowercase).collect();
    skeleton(&folded).flat_map(char::to_lowercase).collect()
}

impl fmt::Display for RetailerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl Serialize for RetailerName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.name)
    }
}

/// The highest commission, 100 %, in basis points.
const BASIS_POINTS_MAX: u16 = 10_000;

/// A commission rate in basis points (hundredths of a percent), 0 to 10,000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct CommissionRate(u16);

impl CommissionRate {
    /// Parses a percentage such as `2.5`, `10` or `10%`; more than two decimals is refused, not
    /// rounded. Digit by digit, so no input, however long or large, can overflow or round.
    pub fn parse_percent(input: &str) -> Result<CommissionRate, RetailerError> {
        if input.len() > COMMISSION_INPUT_MAX_BYTES {
            return Err(RetailerError::BadCommission);
        }
        let text = input.trim();
        let text = text.strip_suffix('%').unwrap_or(text);
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        let is_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        // Zeros after the second decimal change nothing; any other digit there would be rounded.
        let fraction = fraction.trim_end_matches('0');
        if whole.is_empty() || !is_digits(whole) || !is_digits(fraction) || fraction.len() > 2 {
            return Err(RetailerError::BadCommission);
        }
        let cents = fraction.bytes().chain(std::iter::repeat(b'0')).take(2);
        let mut basis_points: u32 = 0;
        for digit in whole.bytes().chain(cents) {
            basis_points = basis_points * 10 + u32::from(digit - b'0');
            // Stopping above the maximum keeps the sum far from u32::MAX.
            if basis_points > u32::from(BASIS_POINTS_MAX) {
                return Err(RetailerError::BadCommission);
            }
        }
        let basis_points = u16::try_from(basis_points).map_err(|_| RetailerError::BadCommission)?;
        CommissionRate::from_basis_points(basis_points)
    }

    /// From stored basis points.
    pub fn from_basis_points(bp: u16) -> Result<CommissionRate, RetailerError> {
        (bp <= BASIS_POINTS_MAX)
            .then_some(CommissionRate(bp))
            .ok_or(RetailerError::BadCommission)
    }

    /// The rate in basis points.
    pub fn basis_points(self) -> u16 {
        self.0
    }

    /// The rate as a percentage, exactly.
    pub fn percent(self) -> Decimal {
        Decimal::new(i64::from(self.0), 2)
    }

    /// The commission on a sale of `value_minor` minor units, rounded to the nearest minor
    /// unit, halves up: per card, so voiding one card gives back exactly what its sale took.
    pub fn of(self, value_minor: i64) -> i64 {
        let scaled = i128::from(value_minor) * i128::from(self.0);
        i64::try_from((scaled + 5_000) / 10_000).expect("a commission is at most the value")
    }
}

/// A retailer to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRetailer {
    /// Its unique name.
    pub name: RetailerName,
    /// Its commission.
    pub commission: CommissionRate,
}

/// A stored retailer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Retailer {
    /// Database id.
    pub id: RetailerId,
    /// Unique name.
    pub name: RetailerName,
    /// Commission in basis points.
    pub commission_bp: CommissionRate,
    /// When it was added.
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commission_rounds_to_the_nearest_minor_unit_halves_up() {
        let rate = |bp| CommissionRate::from_basis_points(bp).unwrap();
        assert_eq!(rate(250).of(5_000), 125);
        assert_eq!(rate(250).of(1_010), 25);
        assert_eq!(rate(250).of(1_020), 26);
        assert_eq!(rate(0).of(5_000), 0);
        assert_eq!(rate(10_000).of(5_000), 5_000);
        assert_eq!(rate(1).of(50), 0);
    }

    #[test]
    fn commissions_parse_exactly_or_not_at_all() {
        assert_eq!(
            CommissionRate::parse_percent("2.5").unwrap().basis_points(),
            250
        );
        assert_eq!(
            CommissionRate::parse_percent("10%").unwrap().basis_points(),
            1000
        );
        assert_eq!(
            CommissionRate::parse_percent("0").unwrap().basis_points(),
            0
        );
        for bad in ["2.555", "-1", "100.01", "", "abc", "1e2", " "] {
            assert_eq!(
                CommissionRate::parse_percent(bad),
                Err(RetailerError::BadCommission),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_commission_too_large_for_a_decimal_is_refused_not_a_panic() {
        for huge in [
            "1000000000000000000000000000",
            "79228162514264337593543950336",
            "99999999999999999999999999999999999999999999999999999999999999",
        ] {
            assert_eq!(
                CommissionRate::parse_percent(huge),
                Err(RetailerError::BadCommission),
                "{huge}"
            );
        }
    }

    #[test]
    fn a_commission_with_a_third_significant_decimal_is_refused_not_rounded() {
        for precise in ["2.50000000000000000000000000001", "2.501", "0.009"] {
            assert_eq!(
                CommissionRate::parse_percent(precise),
                Err(RetailerError::BadCommission),
                "{precise}"
            );
        }
        assert_eq!(
            CommissionRate::parse_percent("2.50000000000000000000000000000")
                .unwrap()
                .basis_points(),
            250
        );
    }

    #[test]
    fn a_commission_longer_than_its_bound_is_refused_before_it_is_read() {
        assert_eq!(
            CommissionRate::parse_percent(&"9".repeat(5_000)),
            Err(RetailerError::BadCommission)
        );
        let padded = format!("1.{}", "0".repeat(COMMISSION_INPUT_MAX_BYTES));
        assert_eq!(
            CommissionRate::parse_percent(&padded),
            Err(RetailerError::BadCommission)
        );
        let longest = format!("1.{}", "0".repeat(COMMISSION_INPUT_MAX_BYTES - 2));
        assert_eq!(
            CommissionRate::parse_percent(&longest)
                .unwrap()
                .basis_points(),
            100
        );
    }

    #[test]
    fn commissions_from_zero_to_one_hundred_percent_parse_to_basis_points() {
        for (input, bp) in [
            ("100", 10_000),
            ("100.00%", 10_000),
            ("0.01", 1),
            ("007.5", 750),
            (" 12.34 ", 1234),
        ] {
            assert_eq!(
                CommissionRate::parse_percent(input).unwrap().basis_points(),
                bp,
                "{input}"
            );
        }
        for bad in ["100.001", "101", ".5", "1..2", "1.2.3", "%", "1%%", "+1"] {
            assert_eq!(
                CommissionRate::parse_percent(bad),
                Err(RetailerError::BadCommission),
                "{bad}"
            );
        }
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(RetailerName::parse("  Acme ").unwrap().as_str(), "Acme");
        assert!(RetailerName::parse("   ").is_err());
        assert!(RetailerName::parse("a\nb").is_err());
        assert!(RetailerName::parse(&"x".repeat(100)).is_ok());
        assert!(RetailerName::parse(&"x".repeat(101)).is_err());
        assert!(RetailerName::parse(&"x".repeat(RETAILER_NAME_INPUT_MAX_BYTES + 1)).is_err());
    }

    #[test]
    fn names_with_bidi_zero_width_or_other_invisible_characters_are_refused() {
        for bad in [
            "Acme\u{202E}gnp.exe",
            "\u{202A}Acme",
            "Acme\u{2066}x\u{2069}",
            "Ac\u{200B}me",
            "Ac\u{200C}me",
            "Ac\u{200D}me",
            "Ac\u{2060}me",
            "\u{FEFF}Acme",
            "Ac\u{AD}me",
            "Acme\u{2028}Bolt",
            "Acme\u{E000}",
            "Acme\u{1b}]0;owned\u{7}",
            "\u{3164}",
        ] {
            let refused = RetailerName::parse(bad).unwrap_err();
            assert_eq!(refused, RetailerError::BadName, "{bad:?}");
            assert_eq!(refused.code(), "retailer.bad_name");
        }
    }

    #[test]
    fn names_are_stored_in_nfc_so_nfd_spellings_are_the_same_name() {
        let composed = RetailerName::parse("Caf\u{e9}").unwrap();
        let decomposed = RetailerName::parse("Cafe\u{301}").unwrap();
        assert_eq!(decomposed.as_str(), "Caf\u{e9}");
        assert_eq!(composed, decomposed);
    }

    #[test]
    fn names_that_look_alike_share_a_key() {
        let key = |name: &str| RetailerName::parse(name).unwrap().key().to_string();
        for alike in [
            "ACME",
            "acme",
            "\u{FF21}\u{FF43}\u{FF4D}\u{FF45}",
            "\u{410}cme",
            "Acm\u{435}",
            "Acrne",
        ] {
            assert_eq!(key(alike), key("Acme"), "{alike}");
        }
        assert_eq!(key("B00KS"), key("Books"));
        assert_ne!(key("Acme"), key("Bolt"));
        assert_ne!(key("Acme Books"), key("AcmeBooks"));
    }
}
