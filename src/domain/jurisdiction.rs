//! Where a store sells cards, and what the law there says about a card's funds expiring.

use std::fmt;

use chrono::{DateTime, Months, Utc};
use serde::{Serialize, Serializer};

use super::region::{Region, RegionError};
use crate::error::{Classify, Kind};

/// A first-level subdivision of a country, ISO 3166-2, such as `US-CA` or `CA-ON`: gift card
/// expiry and escheat law is made per state or province, not per country.
///
/// The country must be an assigned ISO 3166-1 code. For the countries whose subdivisions the
/// expiry table names (US, CA, AU) the subdivision must be one of theirs, so `US-CX` is refused;
/// elsewhere it is 1 to 3 letters or digits, as ISO 3166-2 writes them.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Jurisdiction {
    country: Region,
    subdivision: String,
}

/// Why a text is not a jurisdiction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JurisdictionError {
    /// Not `CC-SSS`.
    #[error(
        "a jurisdiction is an ISO 3166-2 code: a country, a hyphen and 1 to 3 letters or digits, such as US-CA"
    )]
    Malformed,
    /// The country part is not an assigned country code.
    #[error(transparent)]
    Country(#[from] RegionError),
    /// The subdivision is not one of the country's.
    #[error("{0} is not a state, province or territory of {1}")]
    UnknownSubdivision(String, Region),
}

impl Classify for JurisdictionError {
    fn code(&self) -> &'static str {
        match self {
            JurisdictionError::Malformed => "jurisdiction.malformed",
            JurisdictionError::Country(_) => "jurisdiction.unknown_country",
            JurisdictionError::UnknownSubdivision(..) => "jurisdiction.unknown_subdivision",
        }
    }

    fn kind(&self) -> Kind {
        Kind::Invalid
    }
}

/// US states, the District of Columbia and the outlying territories.
const US: &[&str] = &[
    "AK", "AL", "AR", "AS", "AZ", "CA", "CO", "CT", "DC", "DE", "FL", "GA", "GU", "HI", "IA", "ID",
    "IL", "IN", "KS", "KY", "LA", "MA", "MD", "ME", "MI", "MN", "MO", "MP", "MS", "MT", "NC", "ND",
    "NE", "NH", "NJ", "NM", "NV", "NY", "OH", "OK", "OR", "PA", "PR", "RI", "SC", "SD", "TN", "TX",
    "UM", "UT", "VA", "VI", "VT", "WA", "WI", "WV", "WY",
];
/// Canadian provinces and territories.
const CA: &[&str] = &[
    "AB", "BC", "MB", "NB", "NL", "NS", "NT", "NU", "ON", "PE", "QC", "SK", "YT",
];
/// Australian states and territories.
const AU: &[&str] = &["ACT", "NSW", "NT", "QLD", "SA", "TAS", "VIC", "WA"];

impl Jurisdiction {
    /// Parses `CC-SSS`, trimmed, in any ASCII case: ` us-ca ` is `US-CA`.
    pub fn parse(input: &str) -> Result<Jurisdiction, JurisdictionError> {
        let (country, subdivision) = input
            .trim_ascii()
            .split_once('-')
            .ok_or(JurisdictionError::Malformed)?;
        if country.len() != 2
            || !(1..=3).contains(&subdivision.len())
            || !subdivision.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(JurisdictionError::Malformed);
        }
        let country = Region::parse(country)?;
        let subdivision = subdivision.to_ascii_uppercase();
        let known = match country.as_str() {
            "US" => Some(US),
            "CA" => Some(CA),
            "AU" => Some(AU),
            _ => None,
        };
        if known.is_some_and(|list| !list.contains(&subdivision.as_str())) {
            return Err(JurisdictionError::UnknownSubdivision(subdivision, country));
        }
        Ok(Jurisdiction {
            country,
            subdivision,
        })
    }

    /// The country.
    pub fn country(&self) -> Region {
        self.country
    }

    /// What the law here says about a gift card's funds expiring: the subdivision's own rule
    /// where [`EXPIRY_LAW`] names one, else the country's, else none.
    pub fn expiry_rule(&self) -> ExpiryRule {
        let code = self.to_string();
        EXPIRY_LAW
            .iter()
            .find(|(place, _)| *place == code)
            .or_else(|| {
                EXPIRY_LAW
                    .iter()
                    .find(|(place, _)| *place == self.country.as_str())
            })
            .map_or(ExpiryRule::Unregulated, |(_, rule)| *rule)
    }

    /// When the funds of a card sold here at `activated` expire, given the expiry printed on it:
    /// the later of the printed expiry and `activated` plus the legal minimum; never where
    /// expiry is forbidden, and never when nothing is printed.
    pub fn funds_expiry(
        &self,
        printed: Option<DateTime<Utc>>,
        activated: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let printed = printed?;
        match self.expiry_rule() {
            ExpiryRule::Forbidden => None,
            ExpiryRule::Unregulated => Some(printed),
            ExpiryRule::MinimumYears(years) => {
                // Past chrono's range (year 262,143) nothing expires.
                let minimum = activated.checked_add_months(Months::new(12 * u32::from(years)))?;
                Some(printed.max(minimum))
            }
        }
    }
}

impl fmt::Display for Jurisdiction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.country, self.subdivision)
    }
}

impl fmt::Debug for Jurisdiction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Jurisdiction({self})")
    }
}

impl Serialize for Jurisdiction {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// What a jurisdiction's law says about the funds on a gift card expiring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "rule", content = "years", rename_all = "snake_case")]
pub enum ExpiryRule {
    /// Funds never expire, whatever is printed on the card.
    Forbidden,
    /// Funds may expire, no sooner than this many years after the sale.
    MinimumYears(u8),
    /// No rule in [`EXPIRY_LAW`]: the printed expiry stands.
    Unregulated,
}

/// The expiry law tender applies, by ISO 3166-2 subdivision or ISO 3166-1 country; a
/// subdivision's row wins over its country's. The defaults below follow each statute's general
/// rule for gift cards sold to consumers; exemptions (promotional cards, cards for one service)
/// are not modelled, and the table is data for counsel to review before a new market opens.
pub const EXPIRY_LAW: &[(&str, ExpiryRule)] = &[
    // United States: the CARD Act (Regulation E, 12 CFR 1005.20), at least five years after
    // the sale or the last load; stricter state law is not pre-empted.
    ("US", ExpiryRule::MinimumYears(5)),
    // California Civil Code §1749.5.
    ("US-CA", ExpiryRule::Forbidden),
    // Connecticut General Statutes §42-460a.
    ("US-CT", ExpiryRule::Forbidden),
    // Massachusetts General Laws c. 200A §5D: seven years.
    ("US-MA", ExpiryRule::MinimumYears(7)),
    // Minnesota Statutes §325G.53.
    ("US-MN", ExpiryRule::Forbidden),
    // New York General Business Law §396-i, as amended in 2022: nine years.
    ("US-NY", ExpiryRule::MinimumYears(9)),
    // Rhode Island General Laws §6-13-12.
    ("US-RI", ExpiryRule::Forbidden),
    // Washington RCW 19.240.020.
    ("US-WA", ExpiryRule::Forbidden),
    // Ontario, O. Reg. 17/05 as amended by O. Reg. 187/07 (since 2007-10-01).
    ("CA-ON", ExpiryRule::Forbidden),
    // British Columbia, Prepaid Purchase Cards Regulation (2008).
    ("CA-BC", ExpiryRule::Forbidden),
    // Quebec, Consumer Protection Act s. 187.3.
    ("CA-QC", ExpiryRule::Forbidden),
    // Australia, Competition and Consumer Amendment (Gift Cards) Act 2018: three years.
    ("AU", ExpiryRule::MinimumYears(3)),
    // Ireland, Consumer Protection (Gift Vouchers) Act 2019: five years.
    ("IE", ExpiryRule::MinimumYears(5)),
    // Germany, BGB §§195, 199: the three-year limitation of claims.
    ("DE", ExpiryRule::MinimumYears(3)),
];

/// The US states whose unclaimed-property law claims the funds left on a gift card whose funds
/// expired, each with its statute: the escheat destinations tender knows. Elsewhere in the US
/// the funds are exempt and become breakage. Like [`EXPIRY_LAW`], data for counsel to review; a
/// state is added only with its statute.
pub const ESCHEAT_LAW: &[(&str, &str)] = &[
    (
        "US-DE",
        "Delaware Code title 12 §1198(13): gift cards are property, presumed abandoned after five years or at expiry",
    ),
    (
        "US-NJ",
        "New Jersey Statutes §46:30B-42.1: stored-value cards",
    ),
    (
        "US-NY",
        "New York Abandoned Property Law §1315: gift certificates and cards",
    ),
];

impl Jurisdiction {
    /// Whether this state's unclaimed-property law claims an expired card's funds.
    pub fn escheats_gift_cards(&self) -> bool {
        let code = self.to_string();
        ESCHEAT_LAW.iter().any(|(state, _)| *state == code)
    }

    /// Which state is owed the funds of an expired card sold here, under the US Supreme
    /// Court's priority rules (Texas v. New Jersey, 1965): the state of the purchaser's address
    /// where the sale captured it and that state claims such funds, else the issuer's state of
    /// incorporation if it does; `None` (the funds are breakage) when neither claims them or
    /// the card was sold outside the US, where no unclaimed-property law of a state applies.
    pub fn escheat_state(
        &self,
        purchaser: Option<&Jurisdiction>,
        issuer: &Jurisdiction,
    ) -> Option<Jurisdiction> {
        if self.country.as_str() != "US" {
            return None;
        }
        purchaser
            .filter(|state| state.country.as_str() == "US")
            .into_iter()
            .chain([issuer])
            .find(|state| state.escheats_gift_cards())
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn jurisdictions_are_iso_3166_2_with_known_subdivisions_where_the_table_needs_them() {
        assert_eq!(Jurisdiction::parse(" us-ca ").unwrap().to_string(), "US-CA");
        assert_eq!(Jurisdiction::parse("AU-NSW").unwrap().to_string(), "AU-NSW");
        assert_eq!(Jurisdiction::parse("FR-75").unwrap().to_string(), "FR-75");
        for (bad, code) in [
            ("US", "jurisdiction.malformed"),
            ("US-", "jurisdiction.malformed"),
            ("US-CALI", "jurisdiction.malformed"),
            ("USA-CA", "jurisdiction.malformed"),
            ("US-C A", "jurisdiction.malformed"),
            ("XX-CA", "jurisdiction.unknown_country"),
            ("US-CX", "jurisdiction.unknown_subdivision"),
            ("CA-XX", "jurisdiction.unknown_subdivision"),
        ] {
            assert_eq!(Jurisdiction::parse(bad).unwrap_err().code(), code, "{bad}");
        }
    }

    #[test]
    fn a_subdivision_rule_wins_over_its_country_and_unlisted_places_are_unregulated() {
        let rule = |code: &str| Jurisdiction::parse(code).unwrap().expiry_rule();
        assert_eq!(rule("US-TX"), ExpiryRule::MinimumYears(5));
        assert_eq!(rule("US-CA"), ExpiryRule::Forbidden);
        assert_eq!(rule("US-NY"), ExpiryRule::MinimumYears(9));
        assert_eq!(rule("CA-ON"), ExpiryRule::Forbidden);
        assert_eq!(rule("CA-AB"), ExpiryRule::Unregulated);
        assert_eq!(rule("GB-ENG"), ExpiryRule::Unregulated);
    }

    #[test]
    fn funds_expire_at_the_later_of_the_printed_date_and_the_legal_minimum() {
        let sold = at("2026-12-03T10:00:00Z");
        let printed = Some(at("2027-12-03T00:00:00Z"));
        let texas = Jurisdiction::parse("US-TX").unwrap();
        assert_eq!(
            texas.funds_expiry(printed, sold),
            Some(at("2031-12-03T10:00:00Z"))
        );
        let late = Some(at("2036-01-01T00:00:00Z"));
        assert_eq!(texas.funds_expiry(late, sold), late);
        assert_eq!(texas.funds_expiry(None, sold), None);
        let california = Jurisdiction::parse("US-CA").unwrap();
        assert_eq!(california.funds_expiry(printed, sold), None);
        let england = Jurisdiction::parse("GB-ENG").unwrap();
        assert_eq!(england.funds_expiry(printed, sold), printed);
    }

    #[test]
    fn expired_funds_go_to_the_purchasers_state_else_the_issuers_else_breakage() {
        let j = |code: &str| Jurisdiction::parse(code).unwrap();
        let (texas, delaware, new_york) = (j("US-TX"), j("US-DE"), j("US-NY"));
        // The purchaser's address state claims first.
        assert_eq!(
            texas.escheat_state(Some(&new_york), &delaware),
            Some(j("US-NY"))
        );
        // A purchaser state that does not claim gift cards falls to the issuer's state.
        assert_eq!(
            texas.escheat_state(Some(&j("US-TX")), &delaware),
            Some(j("US-DE"))
        );
        assert_eq!(texas.escheat_state(None, &delaware), Some(j("US-DE")));
        // Neither claims: breakage.
        assert_eq!(texas.escheat_state(None, &j("US-NV")), None);
        // A foreign address is not a state's: the issuer's state decides.
        assert_eq!(
            texas.escheat_state(Some(&j("CA-AB")), &delaware),
            Some(j("US-DE"))
        );
        // Sold outside the US: no state's unclaimed-property law applies.
        assert_eq!(j("GB-ENG").escheat_state(Some(&new_york), &delaware), None);
    }
}
