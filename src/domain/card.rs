//! A card's life after issue: its states, the changes its history records, and the transfers
//! that move value onto it at a sale and off it at a void.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::ledger::{LedgerAccount, Leg, Posting, TransferKind};
use super::money::Currency;
use super::retailer::RetailerId;
use super::serial::Serial;

/// Where a card is in its life. Blocked and exposed are flags beside it, not states: a card
/// unblocked is back where it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CardState {
    /// Printed and on a shelf: worth nothing until a store sells it.
    Issued,
    /// Sold: it carries its value until it is redeemed, voided or expires.
    Active,
    /// Its value moved to an account.
    Redeemed,
    /// Taken back by the store before it was redeemed; never sold again.
    Voided,
    /// Its funds-expiry passed with value left.
    Expired,
}

impl CardState {
    /// Every state, in stored order.
    pub const ALL: [CardState; 5] = [
        CardState::Issued,
        CardState::Active,
        CardState::Redeemed,
        CardState::Voided,
        CardState::Expired,
    ];

    /// The stored number.
    pub fn code(self) -> i16 {
        match self {
            CardState::Issued => 0,
            CardState::Active => 1,
            CardState::Redeemed => 2,
            CardState::Voided => 3,
            CardState::Expired => 4,
        }
    }

    /// The state a stored number means.
    pub fn from_code(code: i16) -> Option<CardState> {
        CardState::ALL.into_iter().find(|s| s.code() == code)
    }

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            CardState::Issued => "issued",
            CardState::Active => "active",
            CardState::Redeemed => "redeemed",
            CardState::Voided => "voided",
            CardState::Expired => "expired",
        }
    }
}

/// A change a card's history records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CardAction {
    /// A store sold it.
    Activated,
    /// The store took it back.
    Voided,
    /// Its value moved to a customer account.
    Redeemed,
    /// Frozen for fraud or loss, with a reason code.
    Blocked,
    /// The freeze lifted.
    Unblocked,
    /// Someone tried its code before it was sold, or support learned the code was seen.
    Exposed,
    /// The exposure was looked into and cleared.
    ExposureCleared,
}

impl CardAction {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            CardAction::Activated => "activated",
            CardAction::Voided => "voided",
            CardAction::Redeemed => "redeemed",
            CardAction::Blocked => "blocked",
            CardAction::Unblocked => "unblocked",
            CardAction::Exposed => "exposed",
            CardAction::ExposureCleared => "exposure_cleared",
        }
    }

    /// The action a stored name means.
    pub fn parse(text: &str) -> Option<CardAction> {
        [
            CardAction::Activated,
            CardAction::Voided,
            CardAction::Redeemed,
            CardAction::Blocked,
            CardAction::Unblocked,
            CardAction::Exposed,
            CardAction::ExposureCleared,
        ]
        .into_iter()
        .find(|a| a.as_str() == text)
    }
}

/// One card of a sale: its face value and the commission its retailer keeps on it, both in
/// minor units (the commission at most the value, as `CommissionRate::of` computes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CardSale {
    /// The card.
    pub serial: Serial,
    /// What it carries.
    pub value_minor: i64,
    /// What the retailer keeps.
    pub commission_minor: i64,
}

impl Posting {
    /// The sale of `cards` by `retailer`: each card credited its value; the retailer's
    /// receivable debited the values net of commission and the commission account the
    /// commissions. A zero total (no commission, or all of it) posts no leg.
    pub fn activation(
        retailer: RetailerId,
        currency: Currency,
        cards: &[CardSale],
        reference: String,
        effective_at: DateTime<Utc>,
    ) -> Posting {
        let commission: i64 = cards.iter().map(|s| s.commission_minor).sum();
        let net: i64 = cards
            .iter()
            .map(|s| s.value_minor - s.commission_minor)
            .sum();
        let debits = [
            (LedgerAccount::Receivable(retailer), net),
            (LedgerAccount::Commission, commission),
        ]
        .into_iter()
        .filter(|(_, amount)| *amount != 0)
        .map(|(account, amount)| Leg {
            account,
            amount_minor: -amount,
        });
        let credits = cards.iter().map(|sale| Leg {
            account: LedgerAccount::Card(sale.serial),
            amount_minor: sale.value_minor,
        });
        Posting {
            kind: TransferKind::Activation,
            currency,
            reference: Some(reference),
            effective_at,
            legs: debits.chain(credits).collect(),
        }
    }

    /// The void of one card's sale: its activation's legs reversed.
    pub fn void(
        retailer: RetailerId,
        currency: Currency,
        sale: &CardSale,
        reference: String,
        effective_at: DateTime<Utc>,
    ) -> Posting {
        let mut posting = Posting::activation(
            retailer,
            currency,
            std::slice::from_ref(sale),
            reference,
            effective_at,
        );
        posting.kind = TransferKind::Void;
        posting.legs.reverse();
        for leg in &mut posting.legs {
            leg.amount_minor = -leg.amount_minor;
        }
        posting
    }

    /// The expiry of `cards` (each serial with the value it carries, all in `currency`): each
    /// card debited its value and `to` credited the total, as breakage or, when `to` is a
    /// state's escheat payable, as escheat.
    pub fn expiry(
        currency: Currency,
        cards: &[(Serial, i64)],
        to: LedgerAccount,
        effective_at: DateTime<Utc>,
    ) -> Posting {
        let kind = match to {
            LedgerAccount::EscheatPayable(_) => TransferKind::Escheat,
            _ => TransferKind::Breakage,
        };
        let total = cards.iter().map(|(_, value)| value).sum();
        let debits = cards.iter().map(|(serial, value)| Leg {
            account: LedgerAccount::Card(*serial),
            amount_minor: -value,
        });
        Posting {
            kind,
            currency,
            reference: None,
            effective_at,
            legs: debits
                .chain([Leg {
                    account: to,
                    amount_minor: total,
                }])
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sale(seq: u64, value_minor: i64, commission_minor: i64) -> CardSale {
        CardSale {
            serial: Serial::from_sequence(seq).unwrap(),
            value_minor,
            commission_minor,
        }
    }

    #[test]
    fn states_round_trip_through_their_stored_numbers() {
        for state in CardState::ALL {
            assert_eq!(CardState::from_code(state.code()), Some(state));
        }
        assert_eq!(CardState::from_code(9), None);
    }

    #[test]
    fn a_sale_balances_and_its_void_is_its_mirror() {
        let cards = [sale(1, 5_000, 125), sale(2, 5_000, 125)];
        let at = DateTime::UNIX_EPOCH;
        let posting = Posting::activation(RetailerId(3), Currency::Usd, &cards, "t1".into(), at);
        let legs: Vec<(String, i64)> = posting
            .legs
            .iter()
            .map(|l| (l.account.key(), l.amount_minor))
            .collect();
        assert_eq!(
            legs,
            [
                ("receivable:3".to_string(), -9_750),
                ("commission".to_string(), -250),
                ("card:000000000013".to_string(), 5_000),
                ("card:000000000021".to_string(), 5_000),
            ]
        );
        let void = Posting::void(RetailerId(3), Currency::Usd, &cards[0], "t2".into(), at);
        assert_eq!(void.kind, TransferKind::Void);
        assert_eq!(void.legs.iter().map(|l| l.amount_minor).sum::<i64>(), 0);
        assert_eq!(void.legs[0].account.card(), Some(cards[0].serial));
        assert_eq!(void.legs[0].amount_minor, -5_000);
    }

    #[test]
    fn a_zero_commission_posts_no_commission_leg() {
        let posting = Posting::activation(
            RetailerId(1),
            Currency::Usd,
            &[sale(1, 5_000, 0)],
            "t".into(),
            DateTime::UNIX_EPOCH,
        );
        assert_eq!(posting.legs.len(), 2);
    }
}
