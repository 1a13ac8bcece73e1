//! The public card number printed and barcoded on a card.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

use super::digits::{self, DigitsError};

use crate::error::{Classify, Kind};

/// The largest sequence number a [`Serial`] can carry: 11 digits.
pub const SERIAL_SEQUENCE_MAX: u64 = 99_999_999_999;

/// The number of digits of a serial, check digit included.
const SERIAL_DIGITS: usize = 12;

/// The public number of a gift card, printed and barcoded on the card and
/// typed or scanned at the point of sale.
///
/// It is an 11-digit sequence number (`1..=`[`SERIAL_SEQUENCE_MAX`])
/// followed by one Damm check digit, always shown as 12 digits with leading
/// zeros: sequence 12345 is `000000123459`. Unlike a
/// [`Code`](super::Code) a serial is not secret: it identifies a card but
/// cannot spend it.
///
/// The check digit catches every single mistyped digit and every swap of
/// two adjacent digits before a lookup is made.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Serial(u64);

impl Serial {
    /// Builds the serial for a sequence number, appending its check digit.
    ///
    /// # Errors
    ///
    /// [`SerialError::OutOfRange`] unless `1 <= seq <=`
    /// [`SERIAL_SEQUENCE_MAX`].
    pub fn from_sequence(seq: u64) -> Result<Self, SerialError> {
        if !(1..=SERIAL_SEQUENCE_MAX).contains(&seq) {
            return Err(SerialError::OutOfRange);
        }
        Ok(Self(seq * 10 + u64::from(damm_check_digit(seq))))
    }

    /// Parses a serial typed or scanned by a person.
    ///
    /// Accepted, after optional ASCII whitespace at both ends is trimmed:
    /// 12 contiguous ASCII digits (`000000123459`), or three groups of 4
    /// digits separated by single spaces (`0000 0012 3459`) or by single
    /// hyphens (`0000-0012-3459`), never a mix of both. The last digit must
    /// be the Damm check digit of the first eleven.
    ///
    /// # Errors
    ///
    /// Returns the first problem found, checking each character in order,
    /// then the number of digits, the grouping, the check digit and finally
    /// the range; see [`SerialError`]. Positions are 1-based and counted in
    /// characters of `input` as given.
    pub fn parse(input: &str) -> Result<Self, SerialError> {
        let digits = digits::parse_grouped::<SERIAL_DIGITS>(input)?;
        if damm_interim(digits.iter().map(|d| d - b'0')) != 0 {
            return Err(SerialError::CheckDigitMismatch);
        }
        let value = digits
            .iter()
            .fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'));
        if value / 10 == 0 {
            return Err(SerialError::OutOfRange);
        }
        Ok(Self(value))
    }

    /// The sequence number: the serial without its check digit.
    #[must_use]
    pub fn sequence(&self) -> u64 {
        self.0 / 10
    }

    /// The Damm check digit, `0..=9`.
    #[must_use]
    pub fn check_digit(&self) -> u8 {
        (self.0 % 10) as u8
    }

    /// The serial masked but for its last 4 digits (`••••••••3459`), as a customer's history
    /// shows the card a redemption came from: enough to tell cards apart, not to name one.
    #[must_use]
    pub fn masked(&self) -> String {
        let text = self.to_string();
        let shown = &text[SERIAL_DIGITS - 4..];
        format!("{}{shown}", "•".repeat(SERIAL_DIGITS - 4))
    }
}

impl FromStr for Serial {
    type Err = SerialError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:0width$}", self.0, width = SERIAL_DIGITS)
    }
}

impl fmt::Debug for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Serial")
            .field(&format_args!("{self}"))
            .finish()
    }
}

impl Serialize for Serial {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Serial {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(de::Error::custom)
    }
}

/// Why a text or number is not a card serial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SerialError {
    /// The text is empty or only whitespace.
    #[error("a card serial is required, but none was given")]
    Empty,
    /// A character that is neither an ASCII digit nor an allowed separator.
    #[error(
        "a card serial contains only the digits 0-9, spaces and hyphens; the character at position {position} is not allowed"
    )]
    InvalidCharacter {
        /// 1-based character position in the text as given.
        position: usize,
    },
    /// The text holds a number of digits other than 12.
    #[error("a card serial has 12 digits; this one has {digits}")]
    WrongLength {
        /// How many ASCII digits the text holds.
        digits: usize,
    },
    /// Separators that do not split the serial into three groups of 4
    /// digits, are doubled, or mix spaces and hyphens.
    #[error(
        "a card serial is written as 12 digits in a row or as three groups of 4 digits separated by single spaces or single hyphens"
    )]
    BadGrouping,
    /// The last digit is not the check digit of the others: a digit was
    /// mistyped or two were swapped.
    #[error("this card serial's check digit does not match; a digit may be mistyped or swapped")]
    CheckDigitMismatch,
    /// The sequence number is 0 or above [`SERIAL_SEQUENCE_MAX`].
    #[error("a card serial's sequence number must be between 1 and 99999999999")]
    OutOfRange,
}

impl Classify for SerialError {
    fn code(&self) -> &'static str {
        match self {
            Self::Empty => "serial.empty",
            Self::InvalidCharacter { .. } => "serial.invalid_character",
            Self::WrongLength { .. } => "serial.wrong_length",
            Self::BadGrouping => "serial.bad_grouping",
            Self::CheckDigitMismatch => "serial.check_digit",
            Self::OutOfRange => "serial.out_of_range",
        }
    }

    fn kind(&self) -> Kind {
        Kind::Invalid
    }
}

impl From<DigitsError> for SerialError {
    fn from(error: DigitsError) -> Self {
        match error {
            DigitsError::Empty => Self::Empty,
            // Serials are scanned more than typed, so one variant for any
            // foreign character is enough here.
            DigitsError::NonAsciiDigit { position }
            | DigitsError::InvalidCharacter { position } => Self::InvalidCharacter { position },
            DigitsError::WrongLength { digits } => Self::WrongLength { digits },
            DigitsError::BadGrouping => Self::BadGrouping,
        }
    }
}

/// The weakly totally anti-symmetric quasigroup of order 10 from Damm's
/// thesis (2004), as used by every published Damm implementation.
const DAMM_TABLE: [[u8; 10]; 10] = [
    [0, 3, 1, 7, 5, 9, 8, 6, 4, 2],
    [7, 0, 9, 2, 1, 5, 4, 8, 6, 3],
    [4, 2, 0, 6, 8, 7, 1, 3, 5, 9],
    [1, 7, 5, 0, 9, 8, 3, 4, 2, 6],
    [6, 1, 2, 3, 0, 4, 5, 9, 7, 8],
    [3, 6, 7, 4, 2, 0, 9, 5, 8, 1],
    [5, 8, 6, 9, 7, 2, 0, 1, 3, 4],
    [8, 9, 4, 5, 3, 6, 2, 0, 1, 7],
    [9, 4, 3, 8, 6, 1, 7, 2, 0, 5],
    [2, 5, 8, 1, 4, 3, 6, 7, 9, 0],
];

/// Runs the Damm algorithm over decimal digits (each `0..=9`); a number
/// followed by its check digit yields 0.
fn damm_interim(digits: impl IntoIterator<Item = u8>) -> u8 {
    digits.into_iter().fold(0, |interim, digit| {
        DAMM_TABLE[usize::from(interim)][usize::from(digit)]
    })
}

/// The Damm check digit of `seq`'s decimal digits. Leading zeros do not
/// change it, because the table maps interim 0 and digit 0 to 0.
fn damm_check_digit(seq: u64) -> u8 {
    let text = seq.to_string();
    damm_interim(text.bytes().map(|b| b - b'0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serial(seq: u64) -> Serial {
        Serial::from_sequence(seq).unwrap()
    }

    fn sample_serials() -> Vec<Serial> {
        [
            1,
            572,
            12_345,
            1_000_000,
            31_415_926_535,
            98_765_432_109,
            SERIAL_SEQUENCE_MAX,
        ]
        .into_iter()
        .map(serial)
        .collect()
    }

    #[test]
    fn the_check_digit_matches_the_published_damm_example() {
        // 572 → 4 is the worked example in Damm's algorithm descriptions.
        assert_eq!(serial(572).check_digit(), 4);
        assert_eq!(serial(572).to_string(), "000000005724");
    }

    #[test]
    fn the_damm_table_is_a_quasigroup_with_a_zero_diagonal() {
        for (i, row) in DAMM_TABLE.iter().enumerate() {
            assert_eq!(row[i], 0);
            let mut row_digits = *row;
            row_digits.sort_unstable();
            assert_eq!(row_digits, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
            let mut column: Vec<u8> = DAMM_TABLE.iter().map(|r| r[i]).collect();
            column.sort_unstable();
            assert_eq!(column, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        }
    }

    #[test]
    fn a_serial_is_shown_as_twelve_zero_padded_digits() {
        let s = serial(12_345);
        assert_eq!(s.to_string(), format!("{:011}{}", 12_345, s.check_digit()));
        assert_eq!(s.to_string(), "000000123459");
        assert_eq!(serial(SERIAL_SEQUENCE_MAX).to_string().len(), 12);
    }

    #[test]
    fn sequence_and_check_digit_round_trip_through_text() {
        for s in sample_serials() {
            let parsed = Serial::parse(&s.to_string()).unwrap();
            assert_eq!(parsed, s);
            assert_eq!(parsed.sequence(), s.sequence());
            assert_eq!(parsed.check_digit(), s.check_digit());
        }
        assert_eq!(serial(12_345).sequence(), 12_345);
    }

    #[test]
    fn every_sequence_in_a_range_round_trips() {
        for seq in (1..2_000).chain(SERIAL_SEQUENCE_MAX - 2_000..=SERIAL_SEQUENCE_MAX) {
            let s = serial(seq);
            assert_eq!(s.sequence(), seq);
            assert_eq!(s.to_string().parse::<Serial>(), Ok(s));
        }
    }

    #[test]
    fn sequence_zero_is_out_of_range() {
        assert_eq!(Serial::from_sequence(0), Err(SerialError::OutOfRange));
    }

    #[test]
    fn a_twelve_digit_sequence_is_out_of_range() {
        assert_eq!(
            Serial::from_sequence(SERIAL_SEQUENCE_MAX + 1),
            Err(SerialError::OutOfRange)
        );
        assert_eq!(
            Serial::from_sequence(u64::MAX),
            Err(SerialError::OutOfRange)
        );
    }

    #[test]
    fn all_zeros_passes_the_check_digit_but_is_out_of_range() {
        assert_eq!(Serial::parse("000000000000"), Err(SerialError::OutOfRange));
    }

    #[test]
    fn grouped_and_padded_serials_are_accepted() {
        let s = serial(12_345);
        let text = s.to_string();
        let spaced = format!("{} {} {}", &text[..4], &text[4..8], &text[8..]);
        let hyphenated = spaced.replace(' ', "-");
        for input in [spaced, hyphenated, format!(" \t{text}\n")] {
            assert_eq!(Serial::parse(&input), Ok(s), "{input:?}");
        }
    }

    #[test]
    fn every_single_digit_substitution_is_caught() {
        for s in sample_serials() {
            let text = s.to_string().into_bytes();
            for position in 0..text.len() {
                for digit in b'0'..=b'9' {
                    if digit == text[position] {
                        continue;
                    }
                    let mut typo = text.clone();
                    typo[position] = digit;
                    let typo = String::from_utf8(typo).unwrap();
                    assert_eq!(
                        Serial::parse(&typo),
                        Err(SerialError::CheckDigitMismatch),
                        "{typo} from {s}"
                    );
                }
            }
        }
    }

    #[test]
    fn every_adjacent_transposition_is_caught() {
        let mut checked = 0;
        for s in sample_serials() {
            let text = s.to_string().into_bytes();
            for position in 0..text.len() - 1 {
                if text[position] == text[position + 1] {
                    continue;
                }
                let mut swapped = text.clone();
                swapped.swap(position, position + 1);
                let swapped = String::from_utf8(swapped).unwrap();
                assert_eq!(
                    Serial::parse(&swapped),
                    Err(SerialError::CheckDigitMismatch),
                    "{swapped} from {s}"
                );
                checked += 1;
            }
        }
        assert!(checked > 20, "the sample must contain real transpositions");
    }

    #[test]
    fn every_adjacent_transposition_of_every_digit_pair_is_caught() {
        // Covers all 90 ordered pairs of distinct digits at every position,
        // not only the pairs that happen to occur in the sample serials.
        for position in 0..SERIAL_DIGITS - 2 {
            for a in 0..10u8 {
                for b in (0..10u8).filter(|&b| b != a) {
                    let mut digits = [1u8; SERIAL_DIGITS - 1];
                    digits[position] = a;
                    digits[position + 1] = b;
                    let check = damm_interim(digits);
                    digits.swap(position, position + 1);
                    assert_ne!(
                        damm_interim(digits.into_iter().chain([check])),
                        0,
                        "{a}{b} at {position}"
                    );
                }
            }
        }
    }

    #[test]
    fn an_empty_serial_is_refused_as_empty() {
        assert_eq!(Serial::parse(""), Err(SerialError::Empty));
        assert_eq!(Serial::parse(" \n"), Err(SerialError::Empty));
    }

    #[test]
    fn letters_signs_and_foreign_digits_are_refused_with_their_position() {
        assert_eq!(
            Serial::parse("00000012345A"),
            Err(SerialError::InvalidCharacter { position: 12 })
        );
        assert_eq!(
            Serial::parse("+000000123459"),
            Err(SerialError::InvalidCharacter { position: 1 })
        );
        assert_eq!(
            Serial::parse("-000000123459"),
            Err(SerialError::InvalidCharacter { position: 1 })
        );
        assert_eq!(
            Serial::parse("٠٠٠٠٠٠١٢٣٤٥٩"),
            Err(SerialError::InvalidCharacter { position: 1 })
        );
    }

    #[test]
    fn a_serial_with_eleven_or_thirteen_digits_is_refused_with_its_length() {
        assert_eq!(
            Serial::parse("00000012345"),
            Err(SerialError::WrongLength { digits: 11 })
        );
        assert_eq!(
            Serial::parse("0000000123459"),
            Err(SerialError::WrongLength { digits: 13 })
        );
    }

    #[test]
    fn misplaced_or_mixed_separators_are_refused_as_bad_grouping() {
        for input in [
            "000 000 123 459",
            "0000 0012-3459",
            "0000  0012 3459",
            "000000 123459",
        ] {
            assert_eq!(
                Serial::parse(input),
                Err(SerialError::BadGrouping),
                "{input:?}"
            );
        }
    }

    #[test]
    fn debug_shows_the_padded_digits() {
        assert_eq!(format!("{:?}", serial(572)), "Serial(000000005724)");
    }

    #[test]
    fn serials_serialize_as_their_twelve_digit_string() {
        let s = serial(12_345);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, format!("\"{s}\""));
        assert_eq!(serde_json::from_str::<Serial>(&json).unwrap(), s);
    }

    #[test]
    fn deserializing_checks_the_check_digit() {
        let s = serial(12_345).to_string();
        let wrong = format!("\"{}{}\"", &s[..11], (s.as_bytes()[11] - b'0' + 1) % 10);
        assert!(serde_json::from_str::<Serial>(&wrong).is_err());
        assert!(serde_json::from_str::<Serial>("123459").is_err());
    }

    #[test]
    fn every_error_has_a_stable_machine_readable_code() {
        let cases = [
            (SerialError::Empty, "serial.empty"),
            (
                SerialError::InvalidCharacter { position: 1 },
                "serial.invalid_character",
            ),
            (
                SerialError::WrongLength { digits: 3 },
                "serial.wrong_length",
            ),
            (SerialError::BadGrouping, "serial.bad_grouping"),
            (SerialError::CheckDigitMismatch, "serial.check_digit"),
            (SerialError::OutOfRange, "serial.out_of_range"),
        ];
        for (error, code) in cases {
            assert_eq!(error.code(), code);
        }
    }
}
