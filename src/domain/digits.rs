//! Shared reader for the digit strings people type from a card: a fixed
//! number of ASCII digits, either contiguous or in groups of four.

/// Why a grouped digit string was refused; each caller maps this onto its
/// own public error type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DigitsError {
    /// Nothing but ASCII whitespace.
    Empty,
    /// A numeric character other than `0`–`9`, at this 1-based position.
    NonAsciiDigit { position: usize },
    /// Any other character that is neither a digit nor a separator.
    InvalidCharacter { position: usize },
    /// The number of ASCII digits found.
    WrongLength { digits: usize },
    /// Separators that do not split the digits into groups of four.
    BadGrouping,
}

/// The number of digits between two separators.
const GROUP_LEN: usize = 4;

/// Reads exactly `N` ASCII digits from `input`.
///
/// Accepted: optional ASCII whitespace at both ends, then either `N`
/// contiguous digits or `N / 4` groups of four digits separated by single
/// spaces or by single hyphens, never a mix of both.
///
/// Errors are checked in reading order for characters (the first offending
/// character wins), then the digit count, then the grouping, so a code with a
/// missing digit reports its length rather than a grouping problem. Positions
/// are 1-based and counted in characters of `input` as given, before
/// trimming.
pub(super) fn parse_grouped<const N: usize>(input: &str) -> Result<[u8; N], DigitsError> {
    let trimmed = input.trim_ascii();
    if trimmed.is_empty() {
        return Err(DigitsError::Empty);
    }
    // Only ASCII whitespace is trimmed, so bytes and characters agree here.
    let leading = input.len() - input.trim_ascii_start().len();

    let mut digits = [0u8; N];
    let mut count = 0;
    let mut separator = None;
    let mut group_len = 0;
    let mut well_grouped = true;

    for (index, c) in trimmed.chars().enumerate() {
        let position = leading + index + 1;
        match c {
            '0'..='9' => {
                if let Some(slot) = digits.get_mut(count) {
                    *slot = c as u8;
                }
                count += 1;
                group_len += 1;
            }
            // A leading hyphen reads as a minus sign, not as a separator.
            '-' if index == 0 => return Err(DigitsError::InvalidCharacter { position }),
            ' ' | '-' => {
                if group_len != GROUP_LEN || separator.is_some_and(|s| s != c) {
                    well_grouped = false;
                }
                separator = Some(c);
                group_len = 0;
            }
            c if c.is_numeric() => return Err(DigitsError::NonAsciiDigit { position }),
            _ => return Err(DigitsError::InvalidCharacter { position }),
        }
    }

    if count != N {
        return Err(DigitsError::WrongLength { digits: count });
    }
    if separator.is_some() && !(well_grouped && group_len == GROUP_LEN) {
        return Err(DigitsError::BadGrouping);
    }
    Ok(digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguous_and_grouped_forms_read_the_same_digits() {
        let expected = *b"12345678";
        assert_eq!(parse_grouped::<8>("12345678"), Ok(expected));
        assert_eq!(parse_grouped::<8>("1234 5678"), Ok(expected));
        assert_eq!(parse_grouped::<8>("1234-5678"), Ok(expected));
        assert_eq!(parse_grouped::<8>(" \t1234-5678\n"), Ok(expected));
    }

    #[test]
    fn positions_count_characters_of_the_untrimmed_input() {
        assert_eq!(
            parse_grouped::<8>("  12é45678"),
            Err(DigitsError::InvalidCharacter { position: 5 })
        );
        assert_eq!(
            parse_grouped::<8>("é1234567٨"),
            Err(DigitsError::InvalidCharacter { position: 1 })
        );
        assert_eq!(
            parse_grouped::<8>("1234567٨"),
            Err(DigitsError::NonAsciiDigit { position: 8 })
        );
    }

    #[test]
    fn a_trailing_separator_is_bad_grouping() {
        assert_eq!(
            parse_grouped::<8>("1234-5678-"),
            Err(DigitsError::BadGrouping)
        );
    }

    #[test]
    fn a_digit_count_error_wins_over_a_grouping_error() {
        assert_eq!(
            parse_grouped::<8>("12 345 67"),
            Err(DigitsError::WrongLength { digits: 7 })
        );
    }
}
