//! The secret gift card code.

use std::fmt;
use std::str::FromStr;

use zeroize::{Zeroize, ZeroizeOnDrop};

use super::digits::{self, DigitsError};

use crate::error::{Classify, Kind};

/// The secret code of a gift card: exactly 16 ASCII digits.
///
/// Whoever knows the code can spend the card, so this type never shows it:
/// [`Display`](fmt::Display) and [`Debug`] reveal only the last four digits,
/// it has no `Serialize` implementation, and [`Code::expose_secret`] is the
/// only way to read the whole code back as text.
///
/// Equality compares all 16 bytes without stopping at the first difference,
/// so that the time taken does not hint at how much of a guess was right.
///
/// Every copy is wiped when dropped ([`ZeroizeOnDrop`]), so a chunk's codes
/// do not linger in freed memory.
#[derive(Clone, Eq)]
pub struct Code([u8; Code::LEN]);

impl Code {
    /// The number of digits in a code.
    pub const LEN: usize = 16;

    /// First digits that a generated code must not start with, as ASCII
    /// bytes.
    ///
    /// Payment card numbers start with these digits (3 for American Express
    /// and Diners, 4 for Visa, 5 for Mastercard, 6 for Discover and
    /// Maestro), so a gift card code that starts with one of them could be
    /// taken for a card number by a point of sale, a logger or a data loss
    /// scanner.
    pub const FORBIDDEN_FIRST_DIGITS: [u8; 4] = [b'3', b'4', b'5', b'6'];

    /// Parses a code typed or scanned by a person.
    ///
    /// Accepted, after optional ASCII whitespace at both ends is trimmed:
    /// - 16 contiguous digits: `1234567890123456`;
    /// - four groups of 4 digits separated by single spaces:
    ///   `1234 5678 9012 3456`;
    /// - four groups of 4 digits separated by single hyphens:
    ///   `1234-5678-9012-3456`.
    ///
    /// Spaces and hyphens are never mixed in one code. Only the ASCII digits
    /// `0`–`9` count as digits. Codes starting with one of
    /// [`Code::FORBIDDEN_FIRST_DIGITS`] are accepted: that rule binds the
    /// generator, and refusing them here would only tell a guesser which
    /// codes do not exist.
    ///
    /// # Errors
    ///
    /// Returns the first problem found, checking each character in order,
    /// then the number of digits, then the grouping; see [`CodeError`].
    /// Positions are 1-based and counted in characters of `input` as given.
    ///
    /// ```
    /// use tender::domain::{Code, CodeError};
    ///
    /// let code = Code::parse(" 7651-4185-6924-7118 ").unwrap();
    /// assert_eq!(code.to_string(), "••••••••••••7118");
    /// assert_eq!(Code::parse("7651 4185 6924 711"), Err(CodeError::WrongLength { digits: 15 }));
    /// ```
    pub fn parse(input: &str) -> Result<Self, CodeError> {
        digits::parse_grouped(input)
            .map(Self)
            .map_err(CodeError::from)
    }

    /// Builds a code from 16 bytes, for the code generator.
    ///
    /// Returns `None` unless every byte is an ASCII digit.
    #[must_use]
    pub fn from_digits(bytes: [u8; Self::LEN]) -> Option<Self> {
        bytes.iter().all(u8::is_ascii_digit).then_some(Self(bytes))
    }

    /// The canonical form: the 16 ASCII digits without separators.
    ///
    /// This is the input to the HMAC that stores the code, so the same card
    /// typed in any accepted form hashes the same way.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; Self::LEN] {
        &self.0
    }

    /// The whole code as text, for writing the file sent to the card
    /// printer.
    ///
    /// This is the only way to see the full code as text; every formatted
    /// form of a [`Code`] hides all but the last four digits.
    #[must_use]
    pub fn expose_secret(&self) -> &str {
        std::str::from_utf8(&self.0).expect("a code holds only ASCII digits")
    }

    /// Whether the code starts with one of
    /// [`Code::FORBIDDEN_FIRST_DIGITS`], which the generator must avoid.
    #[must_use]
    pub fn has_forbidden_first_digit(&self) -> bool {
        Self::FORBIDDEN_FIRST_DIGITS.contains(&self.0[0])
    }

    /// The last four digits, which are safe to show a person.
    fn last_four(&self) -> &str {
        &self.expose_secret()[Self::LEN - 4..]
    }
}

impl PartialEq for Code {
    fn eq(&self, other: &Self) -> bool {
        let difference = self
            .0
            .iter()
            .zip(&other.0)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(difference) == 0
    }
}

impl Zeroize for Code {
    /// Wipes the digits (a volatile write the compiler keeps), then leaves the
    /// code all zero digits, so even a wiped code holds only ASCII digits.
    fn zeroize(&mut self) {
        self.0.zeroize();
        self.0 = [b'0'; Self::LEN];
    }
}

impl Drop for Code {
    fn drop(&mut self) {
        self.zeroize();
    }
}

impl ZeroizeOnDrop for Code {}

impl FromStr for Code {
    type Err = CodeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "••••••••••••{}", self.last_four())
    }
}

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Code(…{})", self.last_four())
    }
}

/// Why a text is not a gift card code.
///
/// Messages never contain the text itself, which may be a real code; they
/// give only positions and counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    /// The text is empty or only whitespace.
    #[error("a gift card code is required, but none was given")]
    Empty,
    /// A numeric character other than `0`–`9`, such as an Arabic-Indic or
    /// fullwidth digit.
    #[error(
        "a gift card code uses only the digits 0-9; the character at position {position} is a digit from another script"
    )]
    NonAsciiDigit {
        /// 1-based character position in the text as given.
        position: usize,
    },
    /// A character that is neither a digit nor an allowed separator: a
    /// letter, a sign or other punctuation.
    #[error(
        "a gift card code contains only digits, spaces and hyphens; the character at position {position} is not allowed"
    )]
    InvalidCharacter {
        /// 1-based character position in the text as given.
        position: usize,
    },
    /// The text holds a number of digits other than 16.
    #[error("a gift card code has 16 digits; this one has {digits}")]
    WrongLength {
        /// How many ASCII digits the text holds.
        digits: usize,
    },
    /// Separators that do not split the code into four groups of 4 digits,
    /// are doubled, or mix spaces and hyphens.
    #[error(
        "a gift card code is written as 16 digits in a row or as four groups of 4 digits separated by single spaces or single hyphens"
    )]
    BadGrouping,
}

impl Classify for CodeError {
    fn code(&self) -> &'static str {
        match self {
            Self::Empty => "code.empty",
            Self::NonAsciiDigit { .. } => "code.non_ascii_digit",
            Self::InvalidCharacter { .. } => "code.invalid_character",
            Self::WrongLength { .. } => "code.wrong_length",
            Self::BadGrouping => "code.bad_grouping",
        }
    }

    fn kind(&self) -> Kind {
        Kind::Invalid
    }
}

impl From<DigitsError> for CodeError {
    fn from(error: DigitsError) -> Self {
        match error {
            DigitsError::Empty => Self::Empty,
            DigitsError::NonAsciiDigit { position } => Self::NonAsciiDigit { position },
            DigitsError::InvalidCharacter { position } => Self::InvalidCharacter { position },
            DigitsError::WrongLength { digits } => Self::WrongLength { digits },
            DigitsError::BadGrouping => Self::BadGrouping,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: &str = "1234567890123456";

    fn parse(input: &str) -> Result<Code, CodeError> {
        Code::parse(input)
    }

    #[test]
    fn a_plain_sixteen_digit_code_is_accepted() {
        assert_eq!(parse(PLAIN).unwrap().expose_secret(), PLAIN);
    }

    #[test]
    fn a_code_in_four_space_separated_groups_is_accepted() {
        assert_eq!(parse("1234 5678 9012 3456").unwrap().expose_secret(), PLAIN);
    }

    #[test]
    fn a_code_in_four_hyphen_separated_groups_is_accepted() {
        assert_eq!(parse("1234-5678-9012-3456").unwrap().expose_secret(), PLAIN);
    }

    #[test]
    fn surrounding_spaces_tabs_and_newlines_are_ignored() {
        for input in [
            "  1234567890123456  ",
            "\t1234 5678 9012 3456\t",
            "1234-5678-9012-3456\n",
            "\r\n 1234567890123456 \r\n",
        ] {
            assert_eq!(parse(input).unwrap().expose_secret(), PLAIN, "{input:?}");
        }
    }

    #[test]
    fn every_accepted_form_gives_the_same_canonical_bytes() {
        let forms = [
            "1234567890123456",
            "1234 5678 9012 3456",
            " 1234-5678-9012-3456 ",
        ];
        for form in forms {
            assert_eq!(parse(form).unwrap().as_bytes(), b"1234567890123456");
        }
    }

    #[test]
    fn from_str_parses_like_parse() {
        let code: Code = "1234-5678-9012-3456".parse().unwrap();
        assert_eq!(code, parse(PLAIN).unwrap());
    }

    #[test]
    fn an_empty_code_is_refused_as_empty() {
        assert_eq!(parse(""), Err(CodeError::Empty));
    }

    #[test]
    fn a_whitespace_only_code_is_refused_as_empty() {
        assert_eq!(parse(" \t\r\n "), Err(CodeError::Empty));
    }

    #[test]
    fn arabic_indic_digits_are_refused_with_their_position() {
        assert_eq!(
            parse("٠١٢٣٤٥٦٧٨٩٠١٢٣٤٥"),
            Err(CodeError::NonAsciiDigit { position: 1 })
        );
        assert_eq!(
            parse("123456789012345٦"),
            Err(CodeError::NonAsciiDigit { position: 16 })
        );
    }

    #[test]
    fn fullwidth_digits_are_refused_with_their_position() {
        assert_eq!(
            parse("１２３４５６７８９０１２３４５６"),
            Err(CodeError::NonAsciiDigit { position: 1 })
        );
        assert_eq!(
            parse(" 1234 5678 9012 345６"),
            Err(CodeError::NonAsciiDigit { position: 20 })
        );
    }

    #[test]
    fn a_letter_is_refused_with_its_position() {
        assert_eq!(
            parse("1234567890l23456"),
            Err(CodeError::InvalidCharacter { position: 11 })
        );
        assert_eq!(
            parse("O234567890123456"),
            Err(CodeError::InvalidCharacter { position: 1 })
        );
    }

    #[test]
    fn a_plus_sign_is_refused_as_an_invalid_character() {
        assert_eq!(
            parse("+1234567890123456"),
            Err(CodeError::InvalidCharacter { position: 1 })
        );
    }

    #[test]
    fn a_leading_minus_sign_is_refused_as_an_invalid_character() {
        assert_eq!(
            parse(" -1234567890123456"),
            Err(CodeError::InvalidCharacter { position: 2 })
        );
    }

    #[test]
    fn other_punctuation_and_inner_whitespace_are_refused_as_invalid_characters() {
        assert_eq!(
            parse("1234.5678.9012.3456"),
            Err(CodeError::InvalidCharacter { position: 5 })
        );
        assert_eq!(
            parse("1234_5678_9012_3456"),
            Err(CodeError::InvalidCharacter { position: 5 })
        );
        assert_eq!(
            parse("1234\t5678\t9012\t3456"),
            Err(CodeError::InvalidCharacter { position: 5 })
        );
        assert_eq!(
            parse("1234\u{a0}5678\u{a0}9012\u{a0}3456"),
            Err(CodeError::InvalidCharacter { position: 5 })
        );
    }

    #[test]
    fn a_code_with_fifteen_digits_is_refused_with_its_length() {
        assert_eq!(
            parse("123456789012345"),
            Err(CodeError::WrongLength { digits: 15 })
        );
        assert_eq!(
            parse("1234 5678 9012 345"),
            Err(CodeError::WrongLength { digits: 15 })
        );
    }

    #[test]
    fn a_code_with_seventeen_digits_is_refused_with_its_length() {
        assert_eq!(
            parse("12345678901234567"),
            Err(CodeError::WrongLength { digits: 17 })
        );
        assert_eq!(
            parse("1234-5678-9012-34567"),
            Err(CodeError::WrongLength { digits: 17 })
        );
    }

    #[test]
    fn a_double_space_between_groups_is_refused_as_bad_grouping() {
        assert_eq!(parse("1234  5678 9012 3456"), Err(CodeError::BadGrouping));
    }

    #[test]
    fn a_double_hyphen_between_groups_is_refused_as_bad_grouping() {
        assert_eq!(parse("1234--5678-9012-3456"), Err(CodeError::BadGrouping));
    }

    #[test]
    fn mixed_spaces_and_hyphens_are_refused_as_bad_grouping() {
        assert_eq!(parse("1234 5678-9012 3456"), Err(CodeError::BadGrouping));
        assert_eq!(parse("1234-5678 9012-3456"), Err(CodeError::BadGrouping));
        assert_eq!(
            parse("1234 - 5678 - 9012 - 3456"),
            Err(CodeError::BadGrouping)
        );
    }

    #[test]
    fn groups_of_three_or_five_digits_are_refused_as_bad_grouping() {
        assert_eq!(parse("123 456 789 012 345 6"), Err(CodeError::BadGrouping));
        assert_eq!(parse("12345 67890 123456"), Err(CodeError::BadGrouping));
        assert_eq!(parse("12345678 90123456"), Err(CodeError::BadGrouping));
    }

    #[test]
    fn a_trailing_hyphen_is_refused_as_bad_grouping() {
        assert_eq!(parse("1234-5678-9012-3456-"), Err(CodeError::BadGrouping));
    }

    #[test]
    fn display_shows_only_the_last_four_digits() {
        let code = parse(PLAIN).unwrap();
        let shown = format!("{code}");
        assert_eq!(shown, "••••••••••••3456");
        assert!(!shown.contains(PLAIN));
        assert!(!shown.contains("123456789012"));
    }

    #[test]
    fn debug_shows_only_the_last_four_digits() {
        let code = parse(PLAIN).unwrap();
        for shown in [
            format!("{code:?}"),
            format!("{code:#?}"),
            format!("{:?}", Some(&code)),
        ] {
            assert!(!shown.contains(PLAIN), "{shown}");
            assert!(!shown.contains("123456789012"), "{shown}");
            assert!(shown.contains("…3456"), "{shown}");
        }
        assert_eq!(format!("{code:?}"), "Code(…3456)");
    }

    #[test]
    fn error_messages_never_contain_the_input() {
        let inputs = [
            "1234567890123456789",
            "12345678901234a6",
            "1234 5678-9012 3456",
            "１２３４５６７８９０１２３４５６",
        ];
        for input in inputs {
            let error = parse(input).unwrap_err();
            let message = error.to_string();
            let debug = format!("{error:?}");
            for text in [&message, &debug] {
                assert!(!text.contains("12345678"), "{text}");
                assert!(!text.contains("１２３４"), "{text}");
            }
        }
    }

    #[test]
    fn the_wrong_length_message_states_the_digit_count() {
        assert_eq!(
            CodeError::WrongLength { digits: 15 }.to_string(),
            "a gift card code has 16 digits; this one has 15"
        );
    }

    #[test]
    fn every_error_has_a_stable_machine_readable_code() {
        let cases = [
            (CodeError::Empty, "code.empty"),
            (
                CodeError::NonAsciiDigit { position: 1 },
                "code.non_ascii_digit",
            ),
            (
                CodeError::InvalidCharacter { position: 1 },
                "code.invalid_character",
            ),
            (CodeError::WrongLength { digits: 15 }, "code.wrong_length"),
            (CodeError::BadGrouping, "code.bad_grouping"),
        ];
        for (error, code) in cases {
            assert_eq!(error.code(), code);
        }
    }

    #[test]
    fn from_digits_accepts_only_ascii_digits() {
        assert_eq!(
            Code::from_digits(*b"1234567890123456").map(|c| c.expose_secret().to_owned()),
            Some(PLAIN.to_owned())
        );
        assert!(Code::from_digits(*b"123456789012345a").is_none());
        assert!(Code::from_digits(*b"1234 67890123456").is_none());
        assert!(Code::from_digits([0; 16]).is_none());
    }

    #[test]
    fn codes_starting_with_three_to_six_have_a_forbidden_first_digit() {
        for first in b'0'..=b'9' {
            let mut bytes = *b"0000000000000000";
            bytes[0] = first;
            let code = Code::from_digits(bytes).unwrap();
            let forbidden = matches!(first, b'3'..=b'6');
            assert_eq!(
                code.has_forbidden_first_digit(),
                forbidden,
                "{}",
                first as char
            );
        }
    }

    #[test]
    fn a_zeroized_code_holds_no_digit_of_the_secret() {
        let mut code = parse("7651418569247118").unwrap();
        code.zeroize();
        assert_eq!(code.expose_secret(), "0000000000000000");
    }

    #[test]
    fn codes_and_vectors_of_codes_are_wiped_on_drop() {
        // Drop runs `zeroize`, tested above; this stops compiling if the marker goes.
        fn wiped_on_drop<T: ZeroizeOnDrop>() {}
        wiped_on_drop::<Code>();
        wiped_on_drop::<Vec<Code>>();
    }

    #[test]
    fn codes_are_equal_only_when_every_digit_matches() {
        let a = parse(PLAIN).unwrap();
        let b = parse("1234567890123457").unwrap();
        let c = parse("0234567890123456").unwrap();
        assert_eq!(a, a.clone());
        assert_ne!(a, b);
        assert_ne!(a, c);
    }
}
