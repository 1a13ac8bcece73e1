//! The domain layer as the rest of the crate sees it: through
//! `tender::domain` only.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use tender::domain::{
    Code, CodeError, Currency, Money, MoneyError, Region, RegionError, SERIAL_SEQUENCE_MAX, Serial,
    SerialError,
};
use tender::error::Classify;

/// A record shaped like the ones the storage and API layers build.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Card {
    serial: Serial,
    region: Region,
    balance: Money,
}

fn assert_error<E: std::error::Error + Send + Sync + 'static>(_: &E) {}

#[test]
fn a_card_record_round_trips_through_json_as_strings() {
    let card = Card {
        serial: Serial::from_sequence(42).unwrap(),
        region: Region::parse("se").unwrap(),
        balance: Money::parse("250.00", Currency::Sek).unwrap(),
    };
    let json = serde_json::to_value(&card).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "serial": card.serial.to_string(),
            "region": "SE",
            "balance": { "amount": "250.00", "currency": "SEK" },
        })
    );
    assert_eq!(serde_json::from_value::<Card>(json).unwrap(), card);
}

#[test]
fn a_code_typed_three_ways_is_one_code_and_never_printed_whole() {
    let typed = [
        "4921 0000 1111 2222",
        "4921-0000-1111-2222",
        "4921000011112222\n",
    ];
    let codes: Vec<Code> = typed.iter().map(|t| t.parse().unwrap()).collect();
    assert!(codes.windows(2).all(|pair| pair[0] == pair[1]));
    let code = &codes[0];
    assert_eq!(code.as_bytes(), b"4921000011112222");
    assert!(code.has_forbidden_first_digit());
    for shown in [code.to_string(), format!("{code:?}"), format!("{codes:?}")] {
        assert!(!shown.contains("49210000"), "{shown}");
        assert!(shown.contains("2222"), "{shown}");
    }
}

#[test]
fn every_error_is_a_std_error_usable_across_threads() {
    assert_error(&CodeError::Empty);
    assert_error(&SerialError::Empty);
    assert_error(&MoneyError::Malformed);
    assert_error(&RegionError::Malformed);
}

#[test]
fn error_codes_are_unique_and_namespaced_by_type() {
    let codes = [
        (
            "code",
            vec![
                CodeError::Empty.code(),
                CodeError::NonAsciiDigit { position: 1 }.code(),
                CodeError::InvalidCharacter { position: 1 }.code(),
                CodeError::WrongLength { digits: 1 }.code(),
                CodeError::BadGrouping.code(),
            ],
        ),
        (
            "serial",
            vec![
                SerialError::Empty.code(),
                SerialError::InvalidCharacter { position: 1 }.code(),
                SerialError::WrongLength { digits: 1 }.code(),
                SerialError::BadGrouping.code(),
                SerialError::CheckDigitMismatch.code(),
                SerialError::OutOfRange.code(),
            ],
        ),
        (
            "money",
            vec![
                MoneyError::UnknownCurrency.code(),
                MoneyError::Malformed.code(),
                MoneyError::TooPrecise {
                    currency: Currency::Usd,
                    max_decimals: 2,
                }
                .code(),
                MoneyError::OutOfRange.code(),
                MoneyError::CurrencyMismatch {
                    left: Currency::Usd,
                    right: Currency::Eur,
                }
                .code(),
                MoneyError::NotPositive.code(),
            ],
        ),
        (
            "region",
            vec![RegionError::Malformed.code(), RegionError::Unknown.code()],
        ),
    ];
    let mut seen = HashSet::new();
    for (namespace, type_codes) in codes {
        for code in type_codes {
            let (prefix, name) = code.split_once('.').unwrap();
            assert_eq!(prefix, namespace, "{code}");
            assert!(
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{code}"
            );
            assert!(seen.insert(code), "{code} is used twice");
        }
    }
}

#[test]
fn the_largest_sequence_still_prints_as_twelve_digits() {
    let serial = Serial::from_sequence(SERIAL_SEQUENCE_MAX).unwrap();
    assert_eq!(serial.to_string().len(), 12);
    assert_eq!(serial.to_string().parse::<Serial>(), Ok(serial));
}
