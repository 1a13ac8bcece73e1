//! Row mapping both backends share: they store the same columns under the same names, and
//! differ only in how integers decode (SQLite gives i64 everywhere).

use chrono::{DateTime, Utc};

use super::{StoreError, StoreResult};
use crate::domain::{
    Batch, BatchId, BatchState, CardValue, CommissionRate, Currency, Money, Region, RetailerId,
    RetailerName, Serial,
};
use crate::keys::KeyId;

/// A foreign-key failure on a batch insert means the retailer does not exist.
pub(super) fn unknown_retailer(error: sqlx::Error, id: RetailerId) -> StoreError {
    match &error {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
            StoreError::UnknownRetailer(format!("with id {id}"))
        }
        _ => StoreError::Database(error),
    }
}

/// The three value columns of a batch: fixed value, or the variable range.
pub(super) fn value_columns(value: &CardValue) -> (Option<i64>, Option<i64>, Option<i64>) {
    match value {
        CardValue::Fixed { value } => (Some(value.minor()), None, None),
        CardValue::Variable { min, max } => (None, Some(min.minor()), Some(max.minor())),
    }
}

pub(super) fn tag_of(bytes: Vec<u8>) -> StoreResult<[u8; 32]> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt("a stored tag or digest is not 32 bytes".into()))
}

pub(super) fn key_id_of(id: i64) -> StoreResult<KeyId> {
    u16::try_from(id)
        .map(KeyId::new)
        .map_err(|_| StoreError::Corrupt(format!("key id {id} is out of range")))
}

pub(super) fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

/// A stored retailer name.
pub(super) fn name_of(name: String) -> StoreResult<RetailerName> {
    RetailerName::parse(&name).map_err(|_| corrupt("retailer name"))
}

/// A stored commission in basis points.
pub(super) fn commission_of(bp: i64) -> StoreResult<CommissionRate> {
    u16::try_from(bp)
        .ok()
        .and_then(|bp| CommissionRate::from_basis_points(bp).ok())
        .ok_or_else(|| corrupt("retailer commission"))
}

/// Maps a batch row of either backend: both store the same columns under the same names.
pub(super) fn batch_from_columns(c: BatchColumns) -> StoreResult<Batch> {
    let currency = Currency::parse(&c.currency).map_err(|_| corrupt("batch currency"))?;
    let value = match (c.value_minor, c.min_minor, c.max_minor) {
        (Some(v), None, None) => CardValue::Fixed {
            value: Money::from_minor(v, currency),
        },
        (None, Some(min), Some(max)) => CardValue::Variable {
            min: Money::from_minor(min, currency),
            max: Money::from_minor(max, currency),
        },
        _ => return Err(corrupt("batch value columns")),
    };
    Ok(Batch {
        id: BatchId(c.batch_id),
        retailer_id: RetailerId(c.retailer_id),
        count: c.card_count as u64,
        value,
        region: Region::parse(&c.region).map_err(|_| corrupt("batch region"))?,
        expires_at: c.expires_at,
        first_serial: Serial::from_sequence(c.first_sequence as u64)
            .map_err(|_| corrupt("batch first serial"))?,
        lookup_key_id: u16::try_from(c.lookup_key_id).map_err(|_| corrupt("batch key id"))?,
        state: BatchState::parse(&c.state).ok_or_else(|| corrupt("batch state"))?,
        generated: c.generated_count as u64,
        collisions: c.collisions as u64,
        export_bytes: c.export_bytes as u64,
        export_sha256: c.export_sha256,
        requested_by: c.requested_by,
        requested_at: c.requested_at,
        enqueued_at: c.enqueued_at,
        completed_at: c.completed_at,
    })
}

/// The columns of a `batch` row, as both backends decode them.
#[derive(sqlx::FromRow)]
pub(super) struct BatchColumns {
    batch_id: i64,
    retailer_id: i64,
    card_count: i64,
    currency: String,
    value_minor: Option<i64>,
    min_minor: Option<i64>,
    max_minor: Option<i64>,
    region: String,
    expires_at: Option<DateTime<Utc>>,
    first_sequence: i64,
    lookup_key_id: i64,
    state: String,
    generated_count: i64,
    collisions: i64,
    export_bytes: i64,
    export_sha256: Option<String>,
    requested_by: String,
    requested_at: DateTime<Utc>,
    enqueued_at: Option<DateTime<Utc>>,
    completed_at: Option<DateTime<Utc>>,
}
