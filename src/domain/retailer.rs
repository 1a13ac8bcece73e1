//! Retailers: who sells and activates cards, and the commission settlement deducts for them.

use std::fmt;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;

use crate::error::{Classify, Kind};

/// Longest retailer name accepted, in characters.
pub const RETAILER_NAME_MAX_CHARS: usize = 100;

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
    /// Empty after trimming, too long, or holding control characters.
    #[error(
        "a retailer name has 1 to {RETAILER_NAME_MAX_CHARS} characters and no control characters"
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

/// A retailer's name: trimmed, 1 to [`RETAILER_NAME_MAX_CHARS`] characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct RetailerName(String);

impl RetailerName {
    /// Parses a name.
    pub fn parse(input: &str) -> Result<RetailerName, RetailerError> {
        let name = input.trim();
        let chars = name.chars().count();
        if chars == 0 || chars > RETAILER_NAME_MAX_CHARS || name.chars().any(char::is_control) {
            return Err(RetailerError::BadName);
        }
        Ok(RetailerName(name.to_string()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RetailerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A commission rate in basis points (hundredths of a percent), 0 to 10,000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct CommissionRate(u16);

impl CommissionRate {
    /// Parses a percentage such as `2.5` or `10`; more than two decimals is refused, not rounded.
    pub fn parse_percent(input: &str) -> Result<CommissionRate, RetailerError> {
        let text = input.trim().trim_end_matches('%');
        let valid = !text.is_empty()
            && text.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            && text.bytes().filter(|&b| b == b'.').count() <= 1;
        let percent: Decimal = valid
            .then(|| text.parse().ok())
            .flatten()
            .ok_or(RetailerError::BadCommission)?;
        let basis_points = (percent * Decimal::ONE_HUNDRED).normalize();
        if basis_points.scale() > 0 || basis_points > Decimal::from(10_000) {
            return Err(RetailerError::BadCommission);
        }
        Ok(CommissionRate(basis_points.mantissa() as u16))
    }

    /// From stored basis points.
    pub fn from_basis_points(bp: u16) -> Result<CommissionRate, RetailerError> {
        (bp <= 10_000)
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
    fn names_are_trimmed_and_bounded() {
        assert_eq!(RetailerName::parse("  Acme ").unwrap().as_str(), "Acme");
        assert!(RetailerName::parse("   ").is_err());
        assert!(RetailerName::parse("a\nb").is_err());
        assert!(RetailerName::parse(&"x".repeat(101)).is_err());
    }
}
