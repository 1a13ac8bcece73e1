//! Rows as both backends decode them: each column at PostgreSQL's width (SMALLINT as i16,
//! INTEGER as i32, BIGINT as i64), which SQLite's integers also decode to, with a range check.
//! Mapping to domain values happens here once; a value the domain refuses is `Corrupt`.

use chrono::{DateTime, Utc};

use super::{StoreError, StoreResult, StoredCard};
use crate::audit::{AuditRecord, ChainHead, Seal, decode_heads};
use crate::codegen::CodeDigest;
use crate::domain::{
    Account, AccountId, ApiClient, ApiKeyName, ApiRole, Batch, BatchId, BatchState, CardAction,
    CardState, CardValue, CommissionRate, Currency, HistoryLine, Jurisdiction, Money, Region,
    RetailStore, Retailer, RetailerId, RetailerName, RowCounts, RowOutcome, Serial, SerialRange,
    StoreCode, TradeInNote, TradeInState, TransferId, TransferKind,
};
use crate::keys::KeyId;
use crate::store::api_keys::StoredApiClient;
use crate::store::idempotency::{IdemRecord, StoredAnswer};
use crate::store::ledger::{AdjustmentRow, AdjustmentState, OrderRow, RefundRow};
use crate::store::pos::{ActivationRow, CardEventRow, CardStatus, PosRequestRow};
use crate::store::redeem::{AttemptRow, CardMatch, RedemptionRow};
use crate::store::tradein::{FileRow, FileState, RowResult, TradeInRow};

fn corrupt(what: &str) -> StoreError {
    StoreError::corrupt(what)
}

/// A stored tag or digest.
pub(super) fn bytes32(bytes: Vec<u8>) -> StoreResult<[u8; 32]> {
    bytes
        .try_into()
        .map_err(|_| corrupt("a stored tag or digest is not 32 bytes"))
}

fn key_id(id: i16) -> StoreResult<KeyId> {
    KeyId::from_stored(i64::from(id)).ok_or_else(|| corrupt("a stored key id is out of range"))
}

/// A stored count or sequence number, which is never negative.
pub(super) fn count(n: i64, what: &str) -> StoreResult<u64> {
    u64::try_from(n).map_err(|_| corrupt(what))
}

/// A count or sequence number as the database stores it. Domain limits keep every one far
/// below `i64::MAX`; a value beyond it is refused rather than wrapped.
pub(super) fn int(n: u64) -> StoreResult<i64> {
    i64::try_from(n).map_err(|_| corrupt("a count beyond the database's integer range"))
}

/// The three value columns of a batch: fixed value, or the variable range.
pub(super) fn value_columns(value: &CardValue) -> (Option<i64>, Option<i64>, Option<i64>) {
    match value {
        CardValue::Fixed { value } => (Some(value.minor()), None, None),
        CardValue::Variable { min, max } => (None, Some(min.minor()), Some(max.minor())),
    }
}

/// A `retailer` row.
#[derive(sqlx::FromRow)]
pub(super) struct RetailerRow {
    retailer_id: i64,
    name: String,
    commission_bp: i32,
    created_at: DateTime<Utc>,
}

impl TryFrom<RetailerRow> for Retailer {
    type Error = StoreError;

    fn try_from(r: RetailerRow) -> StoreResult<Retailer> {
        Ok(Retailer {
            id: RetailerId(r.retailer_id),
            name: RetailerName::parse(&r.name).map_err(|_| corrupt("retailer name"))?,
            commission_bp: u16::try_from(r.commission_bp)
                .ok()
                .and_then(|bp| CommissionRate::from_basis_points(bp).ok())
                .ok_or_else(|| corrupt("retailer commission"))?,
            created_at: r.created_at,
        })
    }
}

/// A `batch` row.
#[derive(sqlx::FromRow)]
pub(super) struct BatchRow {
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
    lookup_key_id: i16,
    state: String,
    generated_count: i64,
    collisions: i64,
    export_bytes: i64,
    export_mac: Option<String>,
    export_location: Option<String>,
    failure: Option<String>,
    requested_by: String,
    requested_at: DateTime<Utc>,
    completed_at: Option<DateTime<Utc>>,
}

impl TryFrom<BatchRow> for Batch {
    type Error = StoreError;

    fn try_from(c: BatchRow) -> StoreResult<Batch> {
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
        let first_sequence = count(c.first_sequence, "batch first serial")?;
        Ok(Batch {
            id: BatchId(c.batch_id),
            retailer_id: RetailerId(c.retailer_id),
            count: count(c.card_count, "batch card count")?,
            value,
            region: Region::parse(&c.region).map_err(|_| corrupt("batch region"))?,
            expires_at: c.expires_at,
            first_serial: Serial::from_sequence(first_sequence)
                .map_err(|_| corrupt("batch first serial"))?,
            lookup_key_id: key_id(c.lookup_key_id)?.get(),
            state: BatchState::parse(&c.state).ok_or_else(|| corrupt("batch state"))?,
            generated: count(c.generated_count, "batch progress")?,
            collisions: count(c.collisions, "batch collisions")?,
            export_bytes: count(c.export_bytes, "batch export length")?,
            export_mac: c.export_mac,
            export_location: c.export_location,
            failure: c.failure,
            requested_by: c.requested_by,
            requested_at: c.requested_at,
            completed_at: c.completed_at,
        })
    }
}

/// A `card` row, as verification reads it.
#[derive(sqlx::FromRow)]
pub(super) struct CardRow {
    serial: i64,
    batch_id: i64,
    lookup_key_id: i16,
    digest: Vec<u8>,
}

impl TryFrom<CardRow> for StoredCard {
    type Error = StoreError;

    fn try_from(r: CardRow) -> StoreResult<StoredCard> {
        Ok(StoredCard {
            sequence: count(r.serial, "card serial")?,
            batch_id: BatchId(r.batch_id),
            key_id: key_id(r.lookup_key_id)?,
            digest: CodeDigest(bytes32(r.digest)?),
        })
    }
}

/// An `audit_record` row.
#[derive(sqlx::FromRow)]
pub(super) struct AuditRecordRow {
    chain: i32,
    seq: i64,
    recorded_at: DateTime<Utc>,
    actor: String,
    action: String,
    subject: String,
    details: String,
    key_id: i16,
    tag: Vec<u8>,
    hash: Vec<u8>,
}

impl TryFrom<AuditRecordRow> for AuditRecord {
    type Error = StoreError;

    fn try_from(r: AuditRecordRow) -> StoreResult<AuditRecord> {
        Ok(AuditRecord {
            chain: u32::try_from(r.chain).map_err(|_| corrupt("audit chain"))?,
            seq: r.seq,
            recorded_at: r.recorded_at,
            actor: r.actor,
            action: r.action,
            subject: r.subject,
            details: r.details,
            key_id: key_id(r.key_id)?,
            tag: bytes32(r.tag)?,
            hash: bytes32(r.hash)?,
        })
    }
}

/// An `audit_chain_head` row.
#[derive(sqlx::FromRow)]
pub(super) struct HeadRow {
    chain: i32,
    seq: i64,
    tag: Vec<u8>,
    hash: Vec<u8>,
    key_id: Option<i16>,
}

impl TryFrom<HeadRow> for ChainHead {
    type Error = StoreError;

    fn try_from(r: HeadRow) -> StoreResult<ChainHead> {
        Ok(ChainHead {
            chain: u32::try_from(r.chain).map_err(|_| corrupt("audit chain"))?,
            seq: r.seq,
            tag: bytes32(r.tag)?,
            hash: bytes32(r.hash)?,
            key_id: r.key_id.map(key_id).transpose()?,
        })
    }
}

/// An `audit_seal` row.
#[derive(sqlx::FromRow)]
pub(super) struct SealRow {
    seal_id: i64,
    sealed_at: DateTime<Utc>,
    heads: String,
    key_fingerprint: Vec<u8>,
    hash: Vec<u8>,
    signature: Vec<u8>,
}

impl TryFrom<SealRow> for Seal {
    type Error = StoreError;

    fn try_from(r: SealRow) -> StoreResult<Seal> {
        Ok(Seal {
            seal_id: r.seal_id,
            sealed_at: r.sealed_at,
            // Unreadable heads stay empty: the seal then fails its hash, which names it.
            heads: decode_heads(&r.heads).unwrap_or_default(),
            key_fingerprint: bytes32(r.key_fingerprint)?,
            hash: bytes32(r.hash)?,
            signature: r
                .signature
                .try_into()
                .map_err(|_| corrupt("a stored seal signature is not 64 bytes"))?,
        })
    }
}

/// Decodes every row of a listing.
pub(super) fn all<R, T>(rows: Vec<R>) -> StoreResult<Vec<T>>
where
    T: TryFrom<R, Error = StoreError>,
{
    rows.into_iter().map(T::try_from).collect()
}

/// An `account` row.
#[derive(sqlx::FromRow)]
pub(super) struct AccountRow {
    account_id: i64,
    region: String,
    currency: String,
    balance_minor: i64,
    frozen_reason: Option<String>,
    external_id: Option<String>,
    erased_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
}

fn currency(code: &str) -> StoreResult<Currency> {
    Currency::parse(code).map_err(|_| corrupt("a stored currency"))
}

impl TryFrom<AccountRow> for Account {
    type Error = StoreError;

    fn try_from(r: AccountRow) -> StoreResult<Account> {
        let currency = currency(&r.currency)?;
        Ok(Account {
            id: AccountId(r.account_id),
            region: Region::parse(&r.region).map_err(|_| corrupt("account region"))?,
            currency,
            balance: Money::from_minor(r.balance_minor, currency),
            frozen_reason: r.frozen_reason,
            external_id: r.external_id,
            erased_at: r.erased_at,
            created_at: r.created_at,
        })
    }
}

/// A customer entry joined with its transfer: one history line.
#[derive(sqlx::FromRow)]
pub(super) struct HistoryRow {
    transfer_id: i64,
    kind: String,
    currency: String,
    amount_minor: i64,
    balance_after: i64,
    reference: Option<String>,
    effective_at: DateTime<Utc>,
    recorded_at: DateTime<Utc>,
    /// Set for a trade-in's transfer: whether the valuation is there, and what it shows.
    trade_in_pk: Option<i64>,
    device_model: Option<String>,
    device_id: Option<String>,
    owed_minor: Option<i64>,
    /// Set for a redemption: its card's sequence.
    card_sequence: Option<i64>,
    /// Set for a spend or a refund: its order and where it was placed.
    service: Option<String>,
    order_ref: Option<String>,
}

impl TryFrom<HistoryRow> for HistoryLine {
    type Error = StoreError;

    fn try_from(r: HistoryRow) -> StoreResult<HistoryLine> {
        let currency = currency(&r.currency)?;
        Ok(HistoryLine {
            transfer_id: TransferId(r.transfer_id),
            kind: TransferKind::parse(&r.kind).ok_or_else(|| corrupt("transfer kind"))?,
            amount: Money::from_minor(r.amount_minor, currency),
            balance_after: Money::from_minor(r.balance_after, currency),
            reference: r.reference,
            effective_at: r.effective_at,
            recorded_at: r.recorded_at,
            trade_in: r.trade_in_pk.map(|_| TradeInNote {
                device_model: r.device_model,
                // Serials and IMEIs are ASCII and at least 4 long (the domain checked them).
                device_last4: r
                    .device_id
                    .map(|id| id[id.len().saturating_sub(4)..].to_string()),
                owed: Money::from_minor(r.owed_minor.unwrap_or(0), currency),
            }),
            card: r.card_sequence.map(serial).transpose()?,
            service: r.service,
            order: r.order_ref,
        })
    }
}

/// A `spend_order` row with its transfer's currency.
#[derive(sqlx::FromRow)]
pub(super) struct OrderDbRow {
    account_id: i64,
    order_ref: String,
    service: String,
    currency: String,
    amount_minor: i64,
    refundable_minor: i64,
    transfer_id: i64,
}

impl TryFrom<OrderDbRow> for OrderRow {
    type Error = StoreError;

    fn try_from(r: OrderDbRow) -> StoreResult<OrderRow> {
        Ok(OrderRow {
            account_id: AccountId(r.account_id),
            order_ref: r.order_ref,
            service: r.service,
            amount: Money::from_minor(r.amount_minor, currency(&r.currency)?),
            refundable_minor: r.refundable_minor,
            transfer_id: TransferId(r.transfer_id),
        })
    }
}

/// A `refund` row with its transfer's currency.
#[derive(sqlx::FromRow)]
pub(super) struct RefundDbRow {
    account_id: i64,
    refund_ref: String,
    order_ref: String,
    currency: String,
    amount_minor: i64,
    transfer_id: i64,
}

impl TryFrom<RefundDbRow> for RefundRow {
    type Error = StoreError;

    fn try_from(r: RefundDbRow) -> StoreResult<RefundRow> {
        Ok(RefundRow {
            account_id: AccountId(r.account_id),
            refund_ref: r.refund_ref,
            order_ref: r.order_ref,
            amount: Money::from_minor(r.amount_minor, currency(&r.currency)?),
            transfer_id: TransferId(r.transfer_id),
        })
    }
}

/// An `adjustment` row.
#[derive(sqlx::FromRow)]
pub(super) struct AdjustmentDbRow {
    adjustment_id: i64,
    account_id: i64,
    amount_minor: i64,
    currency: String,
    reason: String,
    state: String,
    requested_by: String,
    decided_by: Option<String>,
    transfer_id: Option<i64>,
    requested_at: DateTime<Utc>,
}

impl TryFrom<AdjustmentDbRow> for AdjustmentRow {
    type Error = StoreError;

    fn try_from(r: AdjustmentDbRow) -> StoreResult<AdjustmentRow> {
        let state = [AdjustmentState::Pending, AdjustmentState::Posted]
            .into_iter()
            .find(|s| s.as_str() == r.state)
            .ok_or_else(|| corrupt("adjustment state"))?;
        Ok(AdjustmentRow {
            id: r.adjustment_id,
            account_id: AccountId(r.account_id),
            amount: Money::from_minor(r.amount_minor, currency(&r.currency)?),
            reason: r.reason,
            state,
            requested_by: r.requested_by,
            decided_by: r.decided_by,
            transfer_id: r.transfer_id.map(TransferId),
            requested_at: r.requested_at,
        })
    }
}

/// A serial as stored: its sequence number.
pub(super) fn serial(sequence: i64) -> StoreResult<Serial> {
    Serial::from_sequence(count(sequence, "card serial")?).map_err(|_| corrupt("card serial"))
}

/// A `retail_store` row.
#[derive(sqlx::FromRow)]
pub(super) struct StoreRow {
    retailer_id: i64,
    store_code: String,
    jurisdiction: String,
    created_at: DateTime<Utc>,
}

impl TryFrom<StoreRow> for RetailStore {
    type Error = StoreError;

    fn try_from(r: StoreRow) -> StoreResult<RetailStore> {
        Ok(RetailStore {
            retailer_id: RetailerId(r.retailer_id),
            code: StoreCode::parse(&r.store_code).map_err(|_| corrupt("store code"))?,
            jurisdiction: Jurisdiction::parse(&r.jurisdiction)
                .map_err(|_| corrupt("store jurisdiction"))?,
            created_at: r.created_at,
        })
    }
}

/// A card's state and flags.
#[derive(sqlx::FromRow)]
pub(super) struct CardStatusRow {
    serial: i64,
    batch_id: i64,
    state: i16,
    blocked_reason: Option<String>,
    exposed_ms: Option<i64>,
}

impl TryFrom<CardStatusRow> for CardStatus {
    type Error = StoreError;

    fn try_from(r: CardStatusRow) -> StoreResult<CardStatus> {
        Ok(CardStatus {
            serial: serial(r.serial)?,
            batch_id: r.batch_id,
            state: CardState::from_code(r.state).ok_or_else(|| corrupt("card state"))?,
            blocked_reason: r.blocked_reason,
            exposed_ms: r.exposed_ms,
        })
    }
}

/// A `pos_request` row.
#[derive(sqlx::FromRow)]
pub(super) struct PosRequestDbRow {
    request_id: i64,
    retailer_id: i64,
    store_code: String,
    terminal: String,
    pos_txn: String,
    first_serial: i64,
    last_serial: i64,
    operation: String,
    value_minor: Option<i64>,
    pos_time_ms: Option<i64>,
    result: String,
    actor: String,
    recorded_at: DateTime<Utc>,
}

impl TryFrom<PosRequestDbRow> for PosRequestRow {
    type Error = StoreError;

    fn try_from(r: PosRequestDbRow) -> StoreResult<PosRequestRow> {
        Ok(PosRequestRow {
            request_id: r.request_id,
            retailer_id: RetailerId(r.retailer_id),
            store_code: r.store_code,
            terminal: r.terminal,
            pos_txn: r.pos_txn,
            range: SerialRange {
                first: serial(r.first_serial)?,
                last: serial(r.last_serial)?,
            },
            operation: r.operation,
            value_minor: r.value_minor,
            pos_time_ms: r.pos_time_ms,
            result: r.result,
            actor: r.actor,
            recorded_at: r.recorded_at,
        })
    }
}

/// A `card_activation` row.
#[derive(sqlx::FromRow)]
pub(super) struct ActivationDbRow {
    serial: i64,
    request_id: i64,
    value_minor: i64,
    commission_minor: i64,
    currency: String,
    jurisdiction: String,
    purchaser_state: Option<String>,
    activated_at: DateTime<Utc>,
    funds_expire_at: Option<DateTime<Utc>>,
    transfer_id: i64,
    review: Option<String>,
    void_request_id: Option<i64>,
    void_transfer_id: Option<i64>,
}

impl TryFrom<ActivationDbRow> for ActivationRow {
    type Error = StoreError;

    fn try_from(r: ActivationDbRow) -> StoreResult<ActivationRow> {
        Ok(ActivationRow {
            serial: serial(r.serial)?,
            request_id: r.request_id,
            value_minor: r.value_minor,
            commission_minor: r.commission_minor,
            currency: r.currency,
            jurisdiction: r.jurisdiction,
            purchaser_state: r.purchaser_state,
            activated_at: r.activated_at,
            funds_expire_at: r.funds_expire_at,
            transfer_id: TransferId(r.transfer_id),
            review: r.review,
            void_request_id: r.void_request_id,
            void_transfer_id: r.void_transfer_id.map(TransferId),
        })
    }
}

/// A `card_event` row.
#[derive(sqlx::FromRow)]
pub(super) struct CardEventDbRow {
    serial: i64,
    action: String,
    reason: Option<String>,
    request_id: Option<i64>,
    actor: String,
    at: DateTime<Utc>,
}

impl TryFrom<CardEventDbRow> for CardEventRow {
    type Error = StoreError;

    fn try_from(r: CardEventDbRow) -> StoreResult<CardEventRow> {
        Ok(CardEventRow {
            serial: serial(r.serial)?,
            action: CardAction::parse(&r.action).ok_or_else(|| corrupt("card event action"))?,
            reason: r.reason,
            request_id: r.request_id,
            actor: r.actor,
            at: r.at,
        })
    }
}

/// A card found by digest.
#[derive(sqlx::FromRow)]
pub(super) struct CardMatchRow {
    serial: i64,
    batch_id: i64,
    lookup_key_id: i16,
    digest: Vec<u8>,
    state: i16,
    blocked_reason: Option<String>,
    funds_expire_ms: Option<i64>,
    region: String,
    value_minor: Option<i64>,
    currency: Option<String>,
    redeemed_into: Option<i64>,
}

impl TryFrom<CardMatchRow> for CardMatch {
    type Error = StoreError;

    fn try_from(r: CardMatchRow) -> StoreResult<CardMatch> {
        Ok(CardMatch {
            serial: serial(r.serial)?,
            batch_id: r.batch_id,
            key_id: key_id(r.lookup_key_id)?,
            digest: CodeDigest(bytes32(r.digest)?),
            state: CardState::from_code(r.state).ok_or_else(|| corrupt("card state"))?,
            blocked_reason: r.blocked_reason,
            funds_expire_ms: r.funds_expire_ms,
            region: Region::parse(&r.region).map_err(|_| corrupt("batch region"))?,
            sale: match (r.value_minor, r.currency) {
                (Some(value), Some(currency)) => Some((
                    value,
                    Currency::parse(&currency).map_err(|_| corrupt("activation currency"))?,
                )),
                _ => None,
            },
            redeemed_into: r.redeemed_into.map(AccountId),
        })
    }
}

/// A `redemption` row.
#[derive(sqlx::FromRow)]
pub(super) struct RedemptionDbRow {
    serial: i64,
    account_id: i64,
    caller: String,
    idem_key: Option<String>,
    value_minor: i64,
    currency: String,
    transfer_id: i64,
    actor: String,
    redeemed_at: DateTime<Utc>,
}

impl TryFrom<RedemptionDbRow> for RedemptionRow {
    type Error = StoreError;

    fn try_from(r: RedemptionDbRow) -> StoreResult<RedemptionRow> {
        Ok(RedemptionRow {
            serial: serial(r.serial)?,
            account_id: AccountId(r.account_id),
            caller: r.caller,
            idem_key: r.idem_key,
            value_minor: r.value_minor,
            currency: r.currency,
            transfer_id: TransferId(r.transfer_id),
            actor: r.actor,
            redeemed_at: r.redeemed_at,
        })
    }
}

/// A `redeem_attempt` row.
#[derive(sqlx::FromRow)]
pub(super) struct AttemptDbRow {
    attempt_id: i64,
    account_id: i64,
    caller: String,
    serial: Option<i64>,
    outcome: String,
    at: DateTime<Utc>,
}

impl TryFrom<AttemptDbRow> for AttemptRow {
    type Error = StoreError;

    fn try_from(r: AttemptDbRow) -> StoreResult<AttemptRow> {
        Ok(AttemptRow {
            attempt_id: r.attempt_id,
            account_id: AccountId(r.account_id),
            caller: r.caller,
            serial: r.serial.map(serial).transpose()?,
            outcome: r.outcome,
            at: r.at,
        })
    }
}

/// An `api_client` row.
#[derive(sqlx::FromRow)]
pub(super) struct ApiClientRow {
    name: String,
    role: String,
    retailer_id: Option<i64>,
    store_code: Option<String>,
    key_id: String,
    mac_key_id: i16,
    secret_mac: Vec<u8>,
    created_at: DateTime<Utc>,
    created_by: String,
    revoked_at: Option<DateTime<Utc>>,
    revoked_by: Option<String>,
}

impl TryFrom<ApiClientRow> for StoredApiClient {
    type Error = StoreError;

    fn try_from(r: ApiClientRow) -> StoreResult<StoredApiClient> {
        Ok(StoredApiClient {
            client: ApiClient {
                name: ApiKeyName::parse(&r.name).map_err(|_| corrupt("API key name"))?,
                role: ApiRole::parse(&r.role).map_err(|_| corrupt("API key role"))?,
                retailer_id: r.retailer_id.map(RetailerId),
                store: r
                    .store_code
                    .as_deref()
                    .map(StoreCode::parse)
                    .transpose()
                    .map_err(|_| corrupt("API key store"))?,
                key_id: r.key_id,
                created_at: r.created_at,
                created_by: r.created_by,
                revoked_at: r.revoked_at,
                revoked_by: r.revoked_by,
            },
            mac_key_id: key_id(r.mac_key_id)?,
            secret_mac: CodeDigest(bytes32(r.secret_mac)?),
        })
    }
}

impl TryFrom<ApiClientRow> for ApiClient {
    type Error = StoreError;

    fn try_from(r: ApiClientRow) -> StoreResult<ApiClient> {
        StoredApiClient::try_from(r).map(|stored| stored.client)
    }
}

/// An `idempotency_record` row, without its keys.
#[derive(sqlx::FromRow)]
pub(super) struct IdemRecordRow {
    mac_key_id: i16,
    fingerprint: Vec<u8>,
    state: String,
    claim_token: String,
    status: Option<i32>,
    body: Option<String>,
    created_ms: i64,
    started_ms: i64,
}

impl TryFrom<IdemRecordRow> for IdemRecord {
    type Error = StoreError;

    fn try_from(r: IdemRecordRow) -> StoreResult<IdemRecord> {
        let answer = match (r.state.as_str(), r.status, r.body) {
            ("in_flight", None, None) => None,
            ("done", Some(status), Some(body)) => Some(StoredAnswer {
                status: u16::try_from(status).map_err(|_| corrupt("a stored HTTP status"))?,
                body,
            }),
            _ => return Err(corrupt("an idempotency record's state")),
        };
        Ok(IdemRecord {
            mac_key_id: key_id(r.mac_key_id)?,
            fingerprint: CodeDigest(bytes32(r.fingerprint)?),
            claim_token: r.claim_token,
            answer,
            created_ms: r.created_ms,
            started_ms: r.started_ms,
        })
    }
}

/// A `trade_in_file` row.
#[derive(sqlx::FromRow)]
pub(super) struct TradeInFileDbRow {
    file_id: i64,
    sha256: Option<String>,
    file_name: Option<String>,
    submitted_by: String,
    state: String,
    bytes: i64,
    header: Option<String>,
    rows_total: i64,
    rows_accepted: i64,
    rows_unchanged: i64,
    rows_revalued: i64,
    rows_rejected: i64,
    error_code: Option<String>,
    error_message: Option<String>,
    received_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
}

impl TryFrom<TradeInFileDbRow> for FileRow {
    type Error = StoreError;

    fn try_from(r: TradeInFileDbRow) -> StoreResult<FileRow> {
        let header = r
            .header
            .map(|h| serde_json::from_str(&h).map_err(|_| corrupt("an upload's header")))
            .transpose()?;
        Ok(FileRow {
            file_id: r.file_id,
            sha256: r.sha256,
            file_name: r.file_name,
            submitted_by: r.submitted_by,
            state: FileState::parse(&r.state).ok_or_else(|| corrupt("an upload's state"))?,
            bytes: r.bytes,
            header,
            rows: RowCounts {
                total: r.rows_total,
                accepted: r.rows_accepted,
                unchanged: r.rows_unchanged,
                revalued: r.rows_revalued,
                rejected: r.rows_rejected,
            },
            error: r.error_code.zip(r.error_message),
            received_at: r.received_at,
            finished_at: r.finished_at,
        })
    }
}

/// A `trade_in_row` row, as reports read it.
#[derive(sqlx::FromRow)]
pub(super) struct TradeInRowDbRow {
    line: i64,
    cells: String,
    device: Option<String>,
    trade_in_ref: Option<String>,
    outcome: Option<String>,
    code: Option<String>,
    reason: Option<String>,
}

impl TryFrom<TradeInRowDbRow> for RowResult {
    type Error = StoreError;

    fn try_from(r: TradeInRowDbRow) -> StoreResult<RowResult> {
        let outcome = r
            .outcome
            .map(|o| RowOutcome::parse(&o).ok_or_else(|| corrupt("a row's outcome")))
            .transpose()?;
        Ok(RowResult {
            line: r.line,
            cells: r.cells,
            device: r.device,
            trade_in_ref: r.trade_in_ref,
            outcome,
            code: r.code,
            reason: r.reason,
        })
    }
}

/// A `trade_in` row.
#[derive(sqlx::FromRow)]
pub(super) struct TradeInDbRow {
    trade_in_pk: i64,
    warehouse_id: String,
    trade_in_ref: String,
    account_id: i64,
    currency: String,
    value_minor: i64,
    credited_minor: i64,
    owed_minor: i64,
    grade: String,
    assessed_at: DateTime<Utc>,
    device_key_id: i16,
    device_digest: Vec<u8>,
    device_model: Option<String>,
    device_id: Option<String>,
    state: String,
    held_for: Option<String>,
    reason: Option<String>,
    submitted_by: String,
    decided_by: Option<String>,
    file_id: Option<i64>,
    revision: i32,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<TradeInDbRow> for TradeInRow {
    type Error = StoreError;

    fn try_from(r: TradeInDbRow) -> StoreResult<TradeInRow> {
        use crate::domain::{Grade, HeldFor};
        Ok(TradeInRow {
            id: r.trade_in_pk,
            warehouse_id: r.warehouse_id,
            trade_in_ref: r.trade_in_ref,
            account_id: AccountId(r.account_id),
            value: Money::from_minor(r.value_minor, currency(&r.currency)?),
            credited_minor: r.credited_minor,
            owed_minor: r.owed_minor,
            grade: Grade::parse(&r.grade).map_err(|_| corrupt("a trade-in's grade"))?,
            assessed_at: r.assessed_at,
            device_key_id: key_id(r.device_key_id)?,
            device_digest: bytes32(r.device_digest)?,
            device_model: r.device_model,
            device_id: r.device_id,
            state: TradeInState::parse(&r.state).ok_or_else(|| corrupt("a trade-in's state"))?,
            held_for: r
                .held_for
                .map(|h| HeldFor::parse(&h).ok_or_else(|| corrupt("a trade-in's hold")))
                .transpose()?,
            reason: r.reason,
            submitted_by: r.submitted_by,
            decided_by: r.decided_by,
            file_id: r.file_id,
            revision: r.revision,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}
