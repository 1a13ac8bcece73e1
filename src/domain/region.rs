//! The storefront country of a card or account.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

use crate::error::{Classify, Kind};

/// A storefront country: an officially assigned ISO 3166-1 alpha-2 code such
/// as `US` or `DE`.
///
/// Only the 249 officially assigned codes are accepted. Reserved and
/// user-assigned codes (`XX`, `ZZ`, `EU`, `UK`, `XK`, …) are refused, so a
/// typo or a placeholder cannot become a storefront.
///
/// It serializes as its code (`"US"`) and deserializes through
/// [`Region::parse`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Region([u8; 2]);

impl Region {
    /// Parses an ISO 3166-1 alpha-2 code.
    ///
    /// ASCII whitespace at both ends is trimmed and lower case is accepted,
    /// so `"us"` and `" US "` both give `US`.
    ///
    /// # Errors
    ///
    /// - [`RegionError::Malformed`] unless the trimmed text is exactly two
    ///   ASCII letters;
    /// - [`RegionError::Unknown`] for two letters that are not an officially
    ///   assigned code.
    pub fn parse(input: &str) -> Result<Self, RegionError> {
        let letters: [u8; 2] = input
            .trim_ascii()
            .as_bytes()
            .try_into()
            .map_err(|_| RegionError::Malformed)?;
        if !letters.iter().all(u8::is_ascii_alphabetic) {
            return Err(RegionError::Malformed);
        }
        let code = letters.map(|b| b.to_ascii_uppercase());
        ASSIGNED
            .binary_search(&code)
            .map(|_| Self(code))
            .map_err(|_| RegionError::Unknown)
    }

    /// The two upper-case letters of the code: `"US"`.
    #[must_use]
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("a region holds only ASCII letters")
    }
}

impl FromStr for Region {
    type Err = RegionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Region").field(&self.as_str()).finish()
    }
}

impl Serialize for Region {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Region {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(de::Error::custom)
    }
}

/// Why a text is not a storefront country.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RegionError {
    /// The text is not exactly two ASCII letters.
    #[error("a country is written as a two-letter ISO 3166-1 code, such as US")]
    Malformed,
    /// Two letters that are not an officially assigned ISO 3166-1 code.
    #[error("the country code is not an officially assigned ISO 3166-1 code")]
    Unknown,
}

impl Classify for RegionError {
    fn code(&self) -> &'static str {
        match self {
            Self::Malformed => "region.malformed",
            Self::Unknown => "region.unknown",
        }
    }

    fn kind(&self) -> Kind {
        Kind::Invalid
    }
}

/// The officially assigned ISO 3166-1 alpha-2 codes, sorted for binary
/// search.
const ASSIGNED: [[u8; 2]; 249] = [
    *b"AD", *b"AE", *b"AF", *b"AG", *b"AI", *b"AL", *b"AM", *b"AO", *b"AQ", *b"AR", *b"AS", *b"AT",
    *b"AU", *b"AW", *b"AX", *b"AZ", *b"BA", *b"BB", *b"BD", *b"BE", *b"BF", *b"BG", *b"BH", *b"BI",
    *b"BJ", *b"BL", *b"BM", *b"BN", *b"BO", *b"BQ", *b"BR", *b"BS", *b"BT", *b"BV", *b"BW", *b"BY",
    *b"BZ", *b"CA", *b"CC", *b"CD", *b"CF", *b"CG", *b"CH", *b"CI", *b"CK", *b"CL", *b"CM", *b"CN",
    *b"CO", *b"CR", *b"CU", *b"CV", *b"CW", *b"CX", *b"CY", *b"CZ", *b"DE", *b"DJ", *b"DK", *b"DM",
    *b"DO", *b"DZ", *b"EC", *b"EE", *b"EG", *b"EH", *b"ER", *b"ES", *b"ET", *b"FI", *b"FJ", *b"FK",
    *b"FM", *b"FO", *b"FR", *b"GA", *b"GB", *b"GD", *b"GE", *b"GF", *b"GG", *b"GH", *b"GI", *b"GL",
    *b"GM", *b"GN", *b"GP", *b"GQ", *b"GR", *b"GS", *b"GT", *b"GU", *b"GW", *b"GY", *b"HK", *b"HM",
    *b"HN", *b"HR", *b"HT", *b"HU", *b"ID", *b"IE", *b"IL", *b"IM", *b"IN", *b"IO", *b"IQ", *b"IR",
    *b"IS", *b"IT", *b"JE", *b"JM", *b"JO", *b"JP", *b"KE", *b"KG", *b"KH", *b"KI", *b"KM", *b"KN",
    *b"KP", *b"KR", *b"KW", *b"KY", *b"KZ", *b"LA", *b"LB", *b"LC", *b"LI", *b"LK", *b"LR", *b"LS",
    *b"LT", *b"LU", *b"LV", *b"LY", *b"MA", *b"MC", *b"MD", *b"ME", *b"MF", *b"MG", *b"MH", *b"MK",
    *b"ML", *b"MM", *b"MN", *b"MO", *b"MP", *b"MQ", *b"MR", *b"MS", *b"MT", *b"MU", *b"MV", *b"MW",
    *b"MX", *b"MY", *b"MZ", *b"NA", *b"NC", *b"NE", *b"NF", *b"NG", *b"NI", *b"NL", *b"NO", *b"NP",
    *b"NR", *b"NU", *b"NZ", *b"OM", *b"PA", *b"PE", *b"PF", *b"PG", *b"PH", *b"PK", *b"PL", *b"PM",
    *b"PN", *b"PR", *b"PS", *b"PT", *b"PW", *b"PY", *b"QA", *b"RE", *b"RO", *b"RS", *b"RU", *b"RW",
    *b"SA", *b"SB", *b"SC", *b"SD", *b"SE", *b"SG", *b"SH", *b"SI", *b"SJ", *b"SK", *b"SL", *b"SM",
    *b"SN", *b"SO", *b"SR", *b"SS", *b"ST", *b"SV", *b"SX", *b"SY", *b"SZ", *b"TC", *b"TD", *b"TF",
    *b"TG", *b"TH", *b"TJ", *b"TK", *b"TL", *b"TM", *b"TN", *b"TO", *b"TR", *b"TT", *b"TV", *b"TW",
    *b"TZ", *b"UA", *b"UG", *b"UM", *b"US", *b"UY", *b"UZ", *b"VA", *b"VC", *b"VE", *b"VG", *b"VI",
    *b"VN", *b"VU", *b"WF", *b"WS", *b"YE", *b"YT", *b"ZA", *b"ZM", *b"ZW",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_assigned_table_is_sorted_unique_upper_case_letters() {
        assert!(ASSIGNED.windows(2).all(|pair| pair[0] < pair[1]));
        assert!(ASSIGNED.iter().flatten().all(u8::is_ascii_uppercase));
    }

    #[test]
    fn every_assigned_code_parses_to_itself() {
        for code in ASSIGNED {
            let text = std::str::from_utf8(&code).unwrap();
            assert_eq!(Region::parse(text).unwrap().as_str(), text);
        }
    }

    #[test]
    fn an_upper_case_code_is_accepted() {
        assert_eq!(Region::parse("US").unwrap().as_str(), "US");
    }

    #[test]
    fn a_lower_or_mixed_case_code_is_normalized_to_upper_case() {
        assert_eq!(Region::parse("us").unwrap().as_str(), "US");
        assert_eq!(Region::parse("dE").unwrap().as_str(), "DE");
        assert_eq!("gb".parse::<Region>(), Region::parse("GB"));
    }

    #[test]
    fn surrounding_whitespace_is_trimmed() {
        assert_eq!(Region::parse(" JP\n").unwrap().as_str(), "JP");
    }

    #[test]
    fn unassigned_and_reserved_codes_are_refused_as_unknown() {
        for input in ["XX", "ZZ", "AA", "EU", "UK", "XK", "QM", "xx"] {
            assert_eq!(Region::parse(input), Err(RegionError::Unknown), "{input:?}");
        }
    }

    #[test]
    fn anything_but_two_ascii_letters_is_refused_as_malformed() {
        for input in [
            "", " ", "U", "USA", "U1", "1U", "U-", "U S", "ÜS", "ＵＳ", "us\u{0}",
        ] {
            assert_eq!(
                Region::parse(input),
                Err(RegionError::Malformed),
                "{input:?}"
            );
        }
    }

    #[test]
    fn display_and_debug_show_the_code() {
        let region = Region::parse("fr").unwrap();
        assert_eq!(region.to_string(), "FR");
        assert_eq!(format!("{region:?}"), "Region(\"FR\")");
    }

    #[test]
    fn regions_serialize_as_their_code() {
        let region = Region::parse("CA").unwrap();
        assert_eq!(serde_json::to_string(&region).unwrap(), "\"CA\"");
        assert_eq!(serde_json::from_str::<Region>("\"ca\"").unwrap(), region);
        assert!(serde_json::from_str::<Region>("\"XX\"").is_err());
    }

    #[test]
    fn every_error_has_a_stable_machine_readable_code() {
        assert_eq!(RegionError::Malformed.code(), "region.malformed");
        assert_eq!(RegionError::Unknown.code(), "region.unknown");
    }
}
