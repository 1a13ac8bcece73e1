//! Batch requests and reads. A request reserves its serial range, records the batch, queues
//! its generation job through the outbox and appends its audit record, all in one transaction.

use chrono::TimeDelta;

use super::generation::GenerateBatch;
use super::keys::KeyUseError;
use super::{JobPayload, Services};
use crate::audit::events;
use crate::domain::{
    Actor, Batch, BatchError, BatchId, BatchRequest, CardValue, Currency, Money, MoneyError,
    PageRows, Region, RegionError, RetailerError, RetailerId, RetailerName, SERIAL_SEQUENCE_MAX,
};
use crate::error::{Classify, Kind};
use crate::keys::KeyPurpose;
use crate::store::Tx;
use crate::store::{
    AuditRepo, BatchRepo, CardRepo, KeyRepo, NewBatch, OutboxRepo, RetailerRepo, Store, StoreError,
};

/// A batch request as typed by an operator: every field still text, parsed here once.
#[derive(Debug, Clone, Default)]
pub struct BatchForm {
    /// Retailer name.
    pub retailer: String,
    /// Number of cards.
    pub count: u64,
    /// Fixed value, such as `25.00`.
    pub value: Option<String>,
    /// Lowest value of a variable-value batch.
    pub min: Option<String>,
    /// Highest value of a variable-value batch.
    pub max: Option<String>,
    /// ISO 4217 code.
    pub currency: String,
    /// ISO 3166-1 alpha-2 storefront country.
    pub region: String,
    /// Days until expiry; `None` for no expiry.
    pub expires_in_days: Option<u32>,
}

impl BatchForm {
    /// Parses the form into a request; nothing is read or written.
    pub fn parse(&self) -> Result<BatchRequest, RequestBatchError> {
        let retailer = RetailerName::parse(&self.retailer)?;
        let currency = Currency::parse(&self.currency)?;
        let value = match (&self.value, &self.min, &self.max) {
            (Some(value), None, None) => CardValue::fixed(Money::parse(value, currency)?)?,
            (None, Some(min), Some(max)) => {
                CardValue::variable(Money::parse(min, currency)?, Money::parse(max, currency)?)?
            }
            _ => return Err(RequestBatchError::ValueChoice),
        };
        let region = Region::parse(&self.region)?;
        Ok(BatchRequest::new(
            retailer,
            self.count,
            value,
            region,
            self.expires_in_days,
        )?)
    }
}

/// Why a batch request was refused.
#[derive(Debug, thiserror::Error)]
pub enum RequestBatchError {
    /// An amount or currency was refused.
    #[error(transparent)]
    Money(#[from] MoneyError),
    /// The region was refused.
    #[error(transparent)]
    Region(#[from] RegionError),
    /// The retailer's name was refused.
    #[error(transparent)]
    Retailer(#[from] RetailerError),
    /// The request broke a batch limit.
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// Neither a fixed value nor a complete range was given, or both were.
    #[error("give either a fixed value, or both a minimum and a maximum")]
    ValueChoice,
    /// No retailer has this name.
    #[error("no retailer is named {0}")]
    UnknownRetailer(RetailerName),
    /// Every serial number is taken.
    #[error("the serial number space is exhausted")]
    SerialsExhausted,
    /// The keys could not be had.
    #[error(transparent)]
    Keys(#[from] KeyUseError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Classify for RequestBatchError {
    fn code(&self) -> &'static str {
        match self {
            RequestBatchError::Money(e) => e.code(),
            RequestBatchError::Region(e) => e.code(),
            RequestBatchError::Retailer(e) => e.code(),
            RequestBatchError::Batch(e) => e.code(),
            RequestBatchError::ValueChoice => "batch.value_choice",
            RequestBatchError::UnknownRetailer(_) => "store.unknown_retailer",
            RequestBatchError::SerialsExhausted => "store.serials_exhausted",
            RequestBatchError::Keys(e) => e.code(),
            RequestBatchError::Store(e) => e.code(),
        }
    }

    fn kind(&self) -> Kind {
        match self {
            RequestBatchError::Money(_)
            | RequestBatchError::Region(_)
            | RequestBatchError::Retailer(_)
            | RequestBatchError::Batch(_)
            | RequestBatchError::ValueChoice => Kind::Invalid,
            RequestBatchError::UnknownRetailer(_) => Kind::NotFound,
            RequestBatchError::SerialsExhausted => Kind::Conflict,
            RequestBatchError::Keys(e) => e.kind(),
            RequestBatchError::Store(e) => e.kind(),
        }
    }
}

/// Why a batch could not be restarted.
#[derive(Debug, thiserror::Error)]
pub enum RestartBatchError {
    /// No batch has this id.
    #[error("batch {0} does not exist")]
    NotFound(BatchId),
    /// Only a failed batch is restarted.
    #[error("batch {0} has not failed; only a failed batch can be restarted")]
    NotFailed(BatchId),
    /// The audit key could not be had.
    #[error(transparent)]
    Keys(#[from] KeyUseError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Classify for RestartBatchError {
    fn code(&self) -> &'static str {
        match self {
            RestartBatchError::NotFound(_) => "batch.not_found",
            RestartBatchError::NotFailed(_) => "batch.not_failed",
            RestartBatchError::Keys(e) => e.code(),
            RestartBatchError::Store(e) => e.code(),
        }
    }

    fn kind(&self) -> Kind {
        match self {
            RestartBatchError::NotFound(_) => Kind::NotFound,
            RestartBatchError::NotFailed(_) => Kind::Conflict,
            RestartBatchError::Keys(e) => e.kind(),
            RestartBatchError::Store(e) => e.kind(),
        }
    }
}

/// Why a batch cannot be shown.
#[derive(Debug, thiserror::Error)]
pub enum ShowBatchError {
    /// The id is not a positive integer.
    #[error("a batch id is a positive integer")]
    BadId,
    /// No batch has this id.
    #[error("batch {0} does not exist")]
    NotFound(BatchId),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Classify for ShowBatchError {
    fn code(&self) -> &'static str {
        match self {
            ShowBatchError::BadId => "batch.bad_id",
            ShowBatchError::NotFound(_) => "batch.not_found",
            ShowBatchError::Store(e) => e.code(),
        }
    }

    fn kind(&self) -> Kind {
        match self {
            ShowBatchError::BadId => Kind::Invalid,
            ShowBatchError::NotFound(_) => Kind::NotFound,
            ShowBatchError::Store(e) => e.kind(),
        }
    }
}

/// Batch use cases.
#[derive(Debug)]
pub struct Batches<'a, S>(pub(super) &'a Services<S>);

impl<S: Store> Batches<'_, S> {
    /// Records a batch request and queues its generation. The job reaches the job runner
    /// through the outbox, so a request is never recorded without its job, nor the reverse.
    pub async fn request(
        &self,
        form: &BatchForm,
        actor: &Actor,
    ) -> Result<Batch, RequestBatchError> {
        let request = form.parse()?;
        rerun!(self.request_once(&request, actor))
    }

    async fn request_once(
        &self,
        request: &BatchRequest,
        actor: &Actor,
    ) -> Result<Batch, RequestBatchError> {
        let services = self.0;
        let mut tx = services.store.begin().await?;
        let retailer = tx
            .retailer_by_name(&request.retailer)
            .await?
            .ok_or_else(|| RequestBatchError::UnknownRetailer(request.retailer.clone()))?;
        let first_sequence = tx.reserve_serials(request.count).await?;
        if first_sequence + request.count - 1 > SERIAL_SEQUENCE_MAX {
            return Err(RequestBatchError::SerialsExhausted);
        }
        let at = services.clock.now();
        // The key the database names active now; the batch's codes are digested under it even
        // if another key is activated before they are generated.
        let lookup_key_id = tx
            .active_key(KeyPurpose::Lookup)
            .await?
            .ok_or(KeyUseError::NoActiveKey(KeyPurpose::Lookup))?;
        let id = tx
            .insert_batch(&NewBatch {
                retailer_id: retailer.id,
                count: request.count,
                value: &request.value,
                region: &request.region,
                expires_at: request
                    .expires_in_days
                    .map(|days| at + TimeDelta::days(i64::from(days))),
                first_sequence,
                lookup_key_id,
                requested_by: actor,
                requested_at: at,
            })
            .await?;
        let batch = tx
            .batch(id)
            .await?
            .ok_or_else(|| StoreError::corrupt("a batch vanished inside its own transaction"))?;
        tx.insert_outbox(&GenerateBatch { batch_id: id.0 }.outbox(), at)
            .await?;
        let signer = services.signer(&mut tx).await?;
        tx.append(&signer, &events::batch_requested(actor, &batch), at)
            .await?;
        tx.commit().await?;
        Ok(batch)
    }

    /// Puts a failed batch back to requested: deletes the cards it had stored (their codes
    /// exist only in a printer file that can no longer be finished, which the operator must
    /// destroy) and queues its generation again.
    pub async fn restart(&self, id: BatchId, actor: &Actor) -> Result<Batch, RestartBatchError> {
        rerun!(self.restart_once(id, actor))
    }

    async fn restart_once(&self, id: BatchId, actor: &Actor) -> Result<Batch, RestartBatchError> {
        let services = self.0;
        let mut tx = services.store.begin().await?;
        let batch = tx.batch(id).await?.ok_or(RestartBatchError::NotFound(id))?;
        if !tx.reset_batch(id).await? {
            return Err(RestartBatchError::NotFailed(id));
        }
        let last = batch.serial_at(batch.count - 1).sequence();
        let deleted = tx.delete_cards(batch.first_serial.sequence(), last).await?;
        let at = services.clock.now();
        tx.insert_outbox(&GenerateBatch { batch_id: id.0 }.outbox(), at)
            .await?;
        let signer = services.signer(&mut tx).await?;
        tx.append(&signer, &events::batch_restarted(actor, id, deleted), at)
            .await?;
        let batch = tx
            .batch(id)
            .await?
            .ok_or_else(|| StoreError::corrupt("a batch vanished inside its own transaction"))?;
        tx.commit().await?;
        Ok(batch)
    }

    /// Batches, newest first, at most `rows`.
    pub async fn list(&self, rows: PageRows) -> Result<Vec<Batch>, StoreError> {
        self.0.store.read().await?.batches(rows).await
    }

    /// One batch and its progress.
    pub async fn show(&self, id: BatchId) -> Result<Batch, ShowBatchError> {
        self.0
            .store
            .read()
            .await?
            .batch(id)
            .await?
            .ok_or(ShowBatchError::NotFound(id))
    }

    /// One batch, by its id as a caller gives it, as a caller scoped to `retailer` (a
    /// point-of-sale key) may see it: another retailer's batch is
    /// [`ShowBatchError::NotFound`], exactly as one that does not exist. `None`: any batch.
    pub async fn show_for(
        &self,
        id: &str,
        retailer: Option<RetailerId>,
    ) -> Result<Batch, ShowBatchError> {
        let id = id
            .trim()
            .parse()
            .ok()
            .filter(|id: &i64| *id > 0)
            .map(BatchId)
            .ok_or(ShowBatchError::BadId)?;
        let batch = self.show(id).await?;
        if retailer.is_some_and(|retailer| retailer != batch.retailer_id) {
            return Err(ShowBatchError::NotFound(id));
        }
        Ok(batch)
    }
}
