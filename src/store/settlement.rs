//! Settlement's repository: the aggregates a business day is closed from (all by the instant
//! entries were recorded), the closed days with their files and closings, and retailers'
//! payments. What the numbers mean, and whether they reconcile, is the service's.

use std::future::Future;

use super::StoreResult;
use crate::domain::{Currency, LedgerAccount, TransferKind};

/// The book an entry is grouped under (`entry.book`): `{currency}:{kind}:{account}`, the account
/// being `card`, `customer` or a system account's name (which may itself hold a `:`).
pub(crate) fn book(currency: Currency, kind: TransferKind, account: &LedgerAccount) -> String {
    let account = match account {
        LedgerAccount::Card(_) => "card".to_string(),
        LedgerAccount::Customer(_) => "customer".to_string(),
        other => other.key(),
    };
    format!("{}:{}:{account}", currency.code(), kind.as_str())
}

/// A book's currency, kind and account, as [`book`] wrote them.
pub(crate) fn split_book(book: &str) -> Option<(&str, &str, &str)> {
    let mut parts = book.splitn(3, ':');
    Some((parts.next()?, parts.next()?, parts.next()?))
}

/// The day's entries summed per currency, transfer kind and account. `account` is a system
/// account's name, or `card` / `customer` for the liability accounts, which are too many to
/// list one by one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovementRow {
    /// The transfers' currency.
    pub currency: String,
    /// The transfers' kind, as stored.
    pub kind: String,
    /// `card`, `customer`, or a system account's name.
    pub account: String,
    /// Sum of the debits, positive.
    pub debits: i64,
    /// Sum of the credits.
    pub credits: i64,
    /// How many legs.
    pub legs: i64,
}

/// One late transfer's effect on the liability accounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LateRow {
    /// When it took effect, Unix ms.
    pub effective_ms: i64,
    /// Its currency.
    pub currency: String,
    /// Its kind, as stored.
    pub kind: String,
    /// The sum of its card and customer legs.
    pub liability_minor: i64,
}

/// A per-currency amount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrencySum {
    /// The currency.
    pub currency: String,
    /// The amount, minor units.
    pub minor: i64,
}

/// A retailer's amount in one currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetailerSum {
    /// The retailer.
    pub retailer_id: i64,
    /// The currency.
    pub currency: String,
    /// The amount, minor units.
    pub minor: i64,
}

/// A retailer's sales or voids in one currency over a day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SalesRow {
    /// The retailer.
    pub retailer_id: i64,
    /// The currency.
    pub currency: String,
    /// Cards.
    pub cards: i64,
    /// Their face value.
    pub gross_minor: i64,
    /// The commission on them.
    pub commission_minor: i64,
}

/// A payment a retailer made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRow {
    /// The retailer.
    pub retailer_id: i64,
    /// The retailer's reference.
    pub reference: String,
    /// The amount, minor units.
    pub amount_minor: i64,
    /// The currency.
    pub currency: String,
    /// Its transfer.
    pub transfer_id: i64,
}

/// A closed business day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettlementRow {
    /// YYYY-MM-DD.
    pub business_date: String,
    /// The business time zone it was closed in.
    pub time_zone: String,
    /// Its start, Unix ms.
    pub start_ms: i64,
    /// Its cut-off, Unix ms.
    pub cutoff_ms: i64,
    /// The manifest's bytes.
    pub manifest: Vec<u8>,
    /// Its Ed25519 signature.
    pub signature: Vec<u8>,
    /// The audit seal taken after it closed.
    pub seal_id: Option<i64>,
    /// Who settled it.
    pub settled_by: String,
    /// When, RFC 3339.
    pub settled_at: String,
}

/// One report file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettlementFileRow {
    /// Its name.
    pub name: String,
    /// Its bytes.
    pub content: Vec<u8>,
    /// Their hex SHA-256.
    pub sha256: String,
}

/// The liability in one currency at a closed day's cut-off, with the memo lines beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiabilityRow {
    /// The currency.
    pub currency: String,
    /// Card and customer balances at the cut-off.
    pub closing_minor: i64,
    /// Trade-in valuations still to credit, as the run found them.
    pub pending_minor: i64,
    /// Claw-backs customers still owe, as the run found them.
    pub owed_minor: i64,
}

/// A retailer's receivable at a closed day's cut-off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivableRow {
    /// The retailer.
    pub retailer_id: i64,
    /// The currency.
    pub currency: String,
    /// What the day added (sales net of commission, less voids).
    pub net_due_minor: i64,
    /// What it owed at the cut-off.
    pub closing_minor: i64,
}

/// A liability account whose balance differs from its entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriftRow {
    /// The customer account's id, or the card's serial sequence.
    pub id: i64,
    /// The currency.
    pub currency: String,
    /// What its balance row or state says, minus what its entries sum to.
    pub difference_minor: i64,
}

/// Settlement steps.
pub trait SettlementRepo {
    /// The entries of transfers recorded in `[start_ms, end_ms)`, summed (see [`MovementRow`]).
    fn day_movements(
        &mut self,
        start_ms: i64,
        end_ms: i64,
    ) -> impl Future<Output = StoreResult<Vec<MovementRow>>> + Send;

    /// Each transfer recorded in `[start_ms, end_ms)` that took effect before `start_ms` and
    /// moved liability, with its liability legs summed.
    fn late_transfers(
        &mut self,
        start_ms: i64,
        end_ms: i64,
    ) -> impl Future<Output = StoreResult<Vec<LateRow>>> + Send;

    /// The liability legs (card and customer) recorded in `[from_ms, until_ms)`, per currency:
    /// from `i64::MIN`, the ledger's own liability at `until_ms`.
    fn liability_between(
        &mut self,
        from_ms: i64,
        until_ms: i64,
    ) -> impl Future<Output = StoreResult<Vec<CurrencySum>>> + Send;

    /// The customer balances as their balance rows hold them now, per currency.
    fn customer_balances(&mut self) -> impl Future<Output = StoreResult<Vec<CurrencySum>>> + Send;

    /// The value active cards carry now, per currency, as their states and sales say.
    fn active_card_value(&mut self) -> impl Future<Output = StoreResult<Vec<CurrencySum>>> + Send;

    /// Each retailer's receivable legs recorded in `[from_ms, until_ms)`, per currency, summed
    /// (negative: owed to tender).
    fn receivables_between(
        &mut self,
        from_ms: i64,
        until_ms: i64,
    ) -> impl Future<Output = StoreResult<Vec<RetailerSum>>> + Send;

    /// Sales whose activation was recorded in `[start_ms, end_ms)`, per retailer and currency.
    fn day_sales(
        &mut self,
        start_ms: i64,
        end_ms: i64,
    ) -> impl Future<Output = StoreResult<Vec<SalesRow>>> + Send;

    /// Sales whose void was recorded in `[start_ms, end_ms)`, per retailer and currency.
    fn day_voids(
        &mut self,
        start_ms: i64,
        end_ms: i64,
    ) -> impl Future<Output = StoreResult<Vec<SalesRow>>> + Send;

    /// Payments recorded in `[start_ms, end_ms)`, by retailer and reference.
    fn day_payments(
        &mut self,
        start_ms: i64,
        end_ms: i64,
    ) -> impl Future<Output = StoreResult<Vec<PaymentRow>>> + Send;

    /// Trade-in valuations not yet credited in full (queued or held), per currency: what
    /// they would still credit.
    fn pending_valuations(&mut self) -> impl Future<Output = StoreResult<Vec<CurrencySum>>> + Send;

    /// What claw-backs could not take back and customers still owe, per currency.
    fn owed_clawbacks(&mut self) -> impl Future<Output = StoreResult<Vec<CurrencySum>>> + Send;

    /// Trade-in credits and claw-backs recorded in `[start_ms, end_ms)`, per warehouse, device
    /// model and currency: (warehouse, model, currency, postings, credited, clawed back).
    fn day_trade_ins(
        &mut self,
        start_ms: i64,
        end_ms: i64,
    ) -> impl Future<Output = StoreResult<Vec<TradeInDayRow>>> + Send;

    /// Up to `limit` customer accounts whose balance row disagrees with the sum of their
    /// entries, for a failed reconciliation to name.
    fn customer_drift(
        &mut self,
        limit: i64,
    ) -> impl Future<Output = StoreResult<Vec<DriftRow>>> + Send;

    /// Up to `limit` sold cards whose state (an active card carries its value, any other
    /// nothing) disagrees with the sum of their entries.
    fn card_drift(&mut self, limit: i64)
    -> impl Future<Output = StoreResult<Vec<DriftRow>>> + Send;

    /// The closed day `date`, if it is closed.
    fn settlement(
        &mut self,
        date: &str,
    ) -> impl Future<Output = StoreResult<Option<SettlementRow>>> + Send;

    /// The latest closed day before `date`.
    fn settled_before(
        &mut self,
        date: &str,
    ) -> impl Future<Output = StoreResult<Option<String>>> + Send;

    /// A closed day's files, by name.
    fn settlement_files(
        &mut self,
        date: &str,
    ) -> impl Future<Output = StoreResult<Vec<SettlementFileRow>>> + Send;

    /// A closed day's liability closings, by currency.
    fn settled_liability(
        &mut self,
        date: &str,
    ) -> impl Future<Output = StoreResult<Vec<LiabilityRow>>> + Send;

    /// A closed day's receivables, by retailer and currency.
    fn settled_receivables(
        &mut self,
        date: &str,
    ) -> impl Future<Output = StoreResult<Vec<ReceivableRow>>> + Send;

    /// A retailer's net due per closed day before `date`, newest first, at most `limit`.
    fn net_due_history(
        &mut self,
        retailer_id: i64,
        currency: &str,
        date: &str,
        limit: i64,
    ) -> impl Future<Output = StoreResult<Vec<(String, i64)>>> + Send;

    /// Records a closed day; `false` (and nothing written) when it was closed already.
    fn insert_settlement(
        &mut self,
        row: &SettlementRow,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Stores a closed day's file.
    fn insert_settlement_file(
        &mut self,
        date: &str,
        file: &SettlementFileRow,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Stores a closed day's liability closing in one currency.
    fn insert_settled_liability(
        &mut self,
        date: &str,
        row: &LiabilityRow,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Stores a retailer's receivable at a closed day's cut-off.
    fn insert_settled_receivable(
        &mut self,
        date: &str,
        row: &ReceivableRow,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Names the audit seal taken after the day closed.
    fn set_settlement_seal(
        &mut self,
        date: &str,
        seal_id: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// The payment a retailer made under `reference`.
    fn payment(
        &mut self,
        retailer_id: i64,
        reference: &str,
    ) -> impl Future<Output = StoreResult<Option<PaymentRow>>> + Send;

    /// Records a payment; `false` (and nothing written) when its reference is taken.
    fn insert_payment(
        &mut self,
        row: &PaymentRow,
        recorded_by: &str,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
}

/// A day's trade-in postings for one warehouse, device model and currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TradeInDayRow {
    /// The warehouse.
    pub warehouse_id: String,
    /// The device model as the warehouse sent it (None once erased).
    pub device_model: Option<String>,
    /// The currency.
    pub currency: String,
    /// Postings.
    pub postings: i64,
    /// Credited.
    pub credited_minor: i64,
    /// Clawed back.
    pub clawed_back_minor: i64,
}
