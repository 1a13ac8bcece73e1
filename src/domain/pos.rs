//! The point of sale: a retailer's stores, their terminals and transactions, and the POS
//! requests that activate and void cards.

use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use super::jurisdiction::Jurisdiction;
use super::retailer::RetailerId;
use super::serial::Serial;
use crate::error::{Classify, Kind};

/// The longest store code, terminal id or POS transaction id: room for a UUID with a prefix,
/// short enough to index and to print on a receipt.
pub const POS_ID_MAX_CHARS: usize = 64;
/// Most cards one activation may name: a case of boxes. A range is one transaction, so this
/// bounds how long it holds its locks (and its statements' bound parameters).
pub const RANGE_CARDS_MAX: u64 = 1_000;
/// How far ahead of tender's clock a POS time may be: terminals' clocks drift.
pub const POS_CLOCK_AHEAD_MAX: TimeDelta = TimeDelta::minutes(5);
/// How old a POS time may be: the longest a store-and-forward terminal may hold a sale before it
/// reaches tender.
pub const POS_OFFLINE_MAX: TimeDelta = TimeDelta::days(7);

/// Why a POS value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PosError {
    /// A store code, terminal id or POS transaction id that is empty, too long or has
    /// characters outside its set.
    #[error("a {0} is 1 to {POS_ID_MAX_CHARS} letters, digits or . _ : -")]
    BadId(&'static str),
    /// A range whose last serial is before its first.
    #[error("a serial range runs from its first serial up to its last")]
    RangeInverted,
    /// A range of more cards than one request may hold.
    #[error("one request activates at most {RANGE_CARDS_MAX} cards; this range holds {0}")]
    RangeTooLarge(u64),
    /// A POS time ahead of tender's clock by more than the drift allowed.
    #[error("the POS time is in the future")]
    PosTimeAhead,
    /// A POS time older than a store-and-forward terminal may hold a sale.
    #[error("the POS time is more than 7 days old; the sale must be entered again")]
    PosTimeStale,
}

impl Classify for PosError {
    fn code(&self) -> &'static str {
        match self {
            PosError::BadId(_) => "pos.bad_id",
            PosError::RangeInverted => "pos.range_inverted",
            PosError::RangeTooLarge(_) => "pos.range_too_large",
            PosError::PosTimeAhead => "pos.time_ahead",
            PosError::PosTimeStale => "pos.time_stale",
        }
    }

    fn kind(&self) -> Kind {
        Kind::Invalid
    }
}

fn pos_id(text: &str, what: &'static str) -> Result<String, PosError> {
    let ok = (1..=POS_ID_MAX_CHARS).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".:_-".contains(&b));
    ok.then(|| text.to_string()).ok_or(PosError::BadId(what))
}

macro_rules! pos_id_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Parses 1 to [`POS_ID_MAX_CHARS`] characters of `A-Z a-z 0-9 . _ : -`.
            pub fn parse(text: &str) -> Result<$name, PosError> {
                pos_id(text, $what).map($name)
            }

            /// The text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

pos_id_type!(
    /// A retailer's own id for one of its stores (`S0042`).
    StoreCode,
    "store id"
);
pos_id_type!(
    /// A till or terminal within a store.
    TerminalId,
    "terminal id"
);
pos_id_type!(
    /// The point-of-sale system's id for one transaction.
    PosTxnId,
    "POS transaction id"
);

/// A retailer's store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetailStore {
    /// The retailer.
    pub retailer_id: RetailerId,
    /// The retailer's id for it.
    pub code: StoreCode,
    /// Where it is, for expiry law.
    pub jurisdiction: Jurisdiction,
    /// When it was added.
    pub created_at: DateTime<Utc>,
}

/// A contiguous run of serials, first to last, within [`RANGE_CARDS_MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SerialRange {
    /// The first serial.
    pub first: Serial,
    /// The last serial; the same as the first for one card.
    pub last: Serial,
}

impl SerialRange {
    /// The range `first..=last` (one card when `last` is `None`).
    pub fn new(first: Serial, last: Option<Serial>) -> Result<SerialRange, PosError> {
        let last = last.unwrap_or(first);
        if last < first {
            return Err(PosError::RangeInverted);
        }
        let cards = last.sequence() - first.sequence() + 1;
        if cards > RANGE_CARDS_MAX {
            return Err(PosError::RangeTooLarge(cards));
        }
        Ok(SerialRange { first, last })
    }

    /// How many cards it holds.
    pub fn cards(&self) -> u64 {
        self.last.sequence() - self.first.sequence() + 1
    }

    /// Whether it is a single card.
    pub fn is_single(&self) -> bool {
        self.first == self.last
    }

    /// Its serials, in order.
    pub fn serials(&self) -> impl Iterator<Item = Serial> + use<> {
        (self.first.sequence()..=self.last.sequence())
            .map(|seq| Serial::from_sequence(seq).expect("a range lies between two serials"))
    }
}

impl fmt::Display for SerialRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_single() {
            self.first.fmt(f)
        } else {
            write!(f, "{} to {}", self.first, self.last)
        }
    }
}

/// Checks a POS time against tender's clock `now`: at most [`POS_CLOCK_AHEAD_MAX`] ahead and
/// [`POS_OFFLINE_MAX`] behind.
pub fn check_pos_time(pos_time: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), PosError> {
    if pos_time > now + POS_CLOCK_AHEAD_MAX {
        return Err(PosError::PosTimeAhead);
    }
    if pos_time < now - POS_OFFLINE_MAX {
        return Err(PosError::PosTimeStale);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serial(seq: u64) -> Serial {
        Serial::from_sequence(seq).unwrap()
    }

    #[test]
    fn pos_ids_keep_to_their_set_and_length() {
        assert!(StoreCode::parse("S-0042").is_ok());
        assert!(PosTxnId::parse(&"x".repeat(64)).is_ok());
        for bad in ["", "a b", "ä", &"x".repeat(65)] {
            assert_eq!(TerminalId::parse(bad).unwrap_err().code(), "pos.bad_id");
        }
    }

    #[test]
    fn a_range_runs_forward_and_holds_at_most_the_limit() {
        let range = SerialRange::new(serial(10), Some(serial(1_009))).unwrap();
        assert_eq!(range.cards(), 1_000);
        assert_eq!(range.serials().count(), 1_000);
        assert!(SerialRange::new(serial(10), None).unwrap().is_single());
        assert_eq!(
            SerialRange::new(serial(10), Some(serial(1_010)))
                .unwrap_err()
                .code(),
            "pos.range_too_large"
        );
        assert_eq!(
            SerialRange::new(serial(10), Some(serial(9)))
                .unwrap_err()
                .code(),
            "pos.range_inverted"
        );
    }

    #[test]
    fn a_pos_time_may_lag_a_week_and_lead_five_minutes() {
        let now: DateTime<Utc> = "2026-12-03T12:00:00Z".parse().unwrap();
        assert!(check_pos_time(now - TimeDelta::days(6), now).is_ok());
        assert!(check_pos_time(now + TimeDelta::minutes(4), now).is_ok());
        assert_eq!(
            check_pos_time(now + TimeDelta::minutes(6), now)
                .unwrap_err()
                .code(),
            "pos.time_ahead"
        );
        assert_eq!(
            check_pos_time(now - TimeDelta::days(8), now)
                .unwrap_err()
                .code(),
            "pos.time_stale"
        );
    }
}
