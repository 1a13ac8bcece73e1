//! Expiry: active cards whose funds-expiry has passed, moved to expired, and what is due to
//! expire. Where their funds go is the service's.

use std::future::Future;

use super::StoreResult;
use crate::domain::Serial;

/// An expired card's sale, as its funds' destination needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiredCard {
    /// The card.
    pub serial: Serial,
    /// Its value, minor units.
    pub value_minor: i64,
    /// Its currency.
    pub currency: String,
    /// The selling store's jurisdiction.
    pub jurisdiction: String,
    /// The purchaser's address state, where the sale captured it.
    pub purchaser_state: Option<String>,
}

/// Active cards whose funds expire in a window, grouped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiryGroup {
    /// The batch.
    pub batch_id: i64,
    /// The selling store's jurisdiction.
    pub jurisdiction: String,
    /// The purchaser's address state, where captured.
    pub purchaser_state: Option<String>,
    /// The currency.
    pub currency: String,
    /// How many cards.
    pub cards: i64,
    /// Their value, minor units.
    pub value_minor: i64,
    /// The earliest funds-expiry among them, Unix ms.
    pub first_ms: i64,
}

/// Expiry steps.
pub trait ExpiryRepo {
    /// Moves up to `limit` active cards whose funds expire at or before `as_of_ms` to expired,
    /// earliest expiry first; the cards moved, in serial order.
    fn expire_due_cards(
        &mut self,
        as_of_ms: i64,
        limit: i64,
    ) -> impl Future<Output = StoreResult<Vec<Serial>>> + Send;

    /// The sales of `serials`, in serial order.
    fn expired_cards(
        &mut self,
        serials: &[Serial],
    ) -> impl Future<Output = StoreResult<Vec<ExpiredCard>>> + Send;

    /// Active cards whose funds expire after `after_ms` (where given) and at or before
    /// `until_ms`, grouped by batch, jurisdiction, purchaser state and currency.
    fn expiry_groups(
        &mut self,
        after_ms: Option<i64>,
        until_ms: i64,
    ) -> impl Future<Output = StoreResult<Vec<ExpiryGroup>>> + Send;
}
