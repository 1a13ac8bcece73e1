//! Nightly settlement: each business day closed once, to the cent.
//!
//! Day D holds the entries *recorded* from its midnight to the next in the business time zone
//! (tender's clock, never a terminal's). It closes only a grace period after its cut-off: every
//! unit of work is rolled back if it outlasts [`UNIT_OF_WORK_DEADLINE`], so by then nothing that
//! read the clock before the cut-off can still commit. An entry recorded in D that took effect
//! on an earlier day (an offline sale, a backdated trade-in) shows as an adjustment line for its
//! own date; a closed day is never rewritten.
//!
//! A run reads one snapshot and proves, per currency, that yesterday's closing plus the day's
//! movements equals the card and customer balances at the cut-off (the balances now, less what
//! was recorded since), and per retailer that the statement agrees with its receivable's
//! entries. A difference fails the run and names the accounts. The reports are then stored with
//! the day, signed, written to the report directory, and the audit trail is sealed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::Services;
use super::keys::KeyUseError;
use super::trail::TrailError;
use crate::audit::events;
use crate::domain::{
    AccountId, Actor, Amount, BusinessDate, Currency, LedgerAccount, Posting, Reference,
    RetailerId, RetailerName, Serial, TransferKind,
};
use crate::error::{Classify, Kind};
use crate::formats::settlement_csv::Report;
use crate::keys::{SealKey, SealPublicKey};
use crate::store::settlement::{
    CurrencySum, LiabilityRow, MovementRow, PaymentRow, ReceivableRow, SettlementFileRow,
    SettlementRow,
};
use crate::store::{
    AuditRepo, LedgerRepo, RetailerRepo, SettlementRepo, Store, StoreError, Tx,
    UNIT_OF_WORK_DEADLINE,
};

/// The most two hosts' clocks may disagree (NTP keeps them within milliseconds; this is the
/// bound operators must hold them to).
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(60);
/// How long after a day's cut-off it may close: longer than any unit of work can last (its
/// deadline, counted from before the writer queue), plus the clock skew between hosts.
pub const SETTLEMENT_GRACE: Duration = Duration::from_secs(300);
const _: () = assert!(
    SETTLEMENT_GRACE.as_secs() > UNIT_OF_WORK_DEADLINE.as_secs() + MAX_CLOCK_SKEW.as_secs()
);
/// The most accounts a failed reconciliation names: enough to start from, short enough to read.
const DRIFT_NAMED_MAX: i64 = 5;
/// How many closed days back a receivable's ageing reads: past 90 days every amount is in the
/// oldest bucket, so a little more than that is enough.
const AGEING_DAYS_READ: i64 = 120;
/// The manifest's name.
pub const MANIFEST: &str = "manifest.json";
/// The manifest signature's name.
pub const SIGNATURE: &str = "manifest.sig";

/// Why a settlement step was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    /// The day's cut-off plus the grace has not passed yet.
    #[error("{date} cannot close before {ready}: its cut-off plus the grace period")]
    TooEarly {
        /// The day.
        date: BusinessDate,
        /// When it can.
        ready: DateTime<Utc>,
    },
    /// An earlier day is closed but the day before this one is not.
    #[error("{date} cannot close before {missing}, the day before it, is closed")]
    Gap {
        /// The day asked for.
        date: BusinessDate,
        /// The day that must close first.
        missing: BusinessDate,
    },
    /// The books do not reconcile.
    #[error("{date} does not reconcile: {detail}")]
    Unbalanced {
        /// The day.
        date: BusinessDate,
        /// Which account and by how much.
        detail: String,
    },
    /// A rerun of a closed day produced different bytes: something rewrote its history.
    #[error("{date} is closed, and a rerun now gives a different {file}: its history changed")]
    Changed {
        /// The day.
        date: BusinessDate,
        /// The first file that differs.
        file: String,
    },
    /// The day is not closed.
    #[error("{0} is not settled")]
    NotSettled(BusinessDate),
    /// The day has no such file.
    #[error("{date} has no report named {name:?}")]
    NoFile {
        /// The day.
        date: BusinessDate,
        /// The name asked for.
        name: String,
    },
    /// The retailer does not exist.
    #[error("no retailer is named {0:?}")]
    UnknownRetailer(String),
    /// A payment's field was refused: the field's own code and sentence.
    #[error("{message}")]
    Input {
        /// The field's error code.
        code: &'static str,
        /// Its sentence.
        message: String,
    },
    /// The payment reference is taken by a different payment.
    #[error("payment {reference:?} of {retailer} was recorded with a different amount or currency")]
    PaymentConflict {
        /// The retailer.
        retailer: String,
        /// The reference.
        reference: String,
    },
    /// Writing or reading the report directory failed.
    #[error("the report file {path} could not be {action}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Written or read.
        action: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// The audit key is missing or stale.
    #[error(transparent)]
    Keys(#[from] KeyUseError),
    /// Sealing the trail failed.
    #[error(transparent)]
    Trail(Box<TrailError>),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<TrailError> for SettleError {
    fn from(error: TrailError) -> Self {
        SettleError::Trail(Box::new(error))
    }
}

impl Classify for SettleError {
    fn code(&self) -> &'static str {
        match self {
            SettleError::TooEarly { .. } => "settle.too_early",
            SettleError::Gap { .. } => "settle.gap",
            SettleError::Unbalanced { .. } => "settle.unbalanced",
            SettleError::Changed { .. } => "settle.changed",
            SettleError::NotSettled(_) => "settle.not_settled",
            SettleError::NoFile { .. } => "settle.no_file",
            SettleError::UnknownRetailer(_) => "settle.unknown_retailer",
            SettleError::Input { code, .. } => code,
            SettleError::PaymentConflict { .. } => "settle.payment_conflict",
            SettleError::Io { .. } => "settle.io",
            SettleError::Keys(e) => e.code(),
            SettleError::Trail(e) => e.code(),
            SettleError::Store(e) => e.code(),
        }
    }

    fn kind(&self) -> Kind {
        match self {
            SettleError::TooEarly { .. } | SettleError::Gap { .. } => Kind::Conflict,
            SettleError::PaymentConflict { .. } => Kind::Conflict,
            SettleError::NotSettled(_) | SettleError::NoFile { .. } => Kind::NotFound,
            SettleError::UnknownRetailer(_) => Kind::NotFound,
            SettleError::Input { .. } => Kind::Invalid,
            SettleError::Unbalanced { .. } | SettleError::Changed { .. } => Kind::Internal,
            SettleError::Io { .. } => Kind::Internal,
            SettleError::Keys(e) => e.kind(),
            SettleError::Trail(e) => e.kind(),
            SettleError::Store(e) => e.kind(),
        }
    }
}

/// One line of a currency's roll-forward.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RollLine {
    /// `opening`, a movement (`activations`, …), `late:{date}:{movement}`, `closing`,
    /// `balances_at_cutoff`, `difference`, or a `memo:` line outside the identity.
    pub line: String,
    /// Signed minor units: what the line adds to the liability.
    pub minor: i64,
}

/// One currency's roll-forward.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RollForward {
    /// The currency.
    pub currency: Currency,
    /// Its lines, in report order.
    pub lines: Vec<RollLine>,
}

impl RollForward {
    /// The line named `name`, in minor units.
    pub fn line(&self, name: &str) -> Option<i64> {
        self.lines.iter().find(|l| l.line == name).map(|l| l.minor)
    }
}

/// One retailer's statement in one currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Statement {
    /// The retailer.
    pub retailer_id: i64,
    /// Its name.
    pub retailer: String,
    /// The currency.
    pub currency: Currency,
    /// What it owed at the day's start.
    pub opening: i64,
    /// Cards it activated.
    pub activated_cards: i64,
    /// Their face value.
    pub activated_gross: i64,
    /// The commission it keeps on them.
    pub commission: i64,
    /// Cards it voided.
    pub voided_cards: i64,
    /// Their face value.
    pub voided_gross: i64,
    /// The commission given back with them.
    pub voided_commission: i64,
    /// What the day added: sales net of commission, less voids net of commission.
    pub net_due: i64,
    /// What it paid.
    pub payments: i64,
    /// What it owed at the cut-off.
    pub closing: i64,
    /// The closing by age of the days that made it up (payments pay the oldest first): 0 to
    /// 30 days, 31 to 60, 61 to 90, over 90.
    pub ageing: [i64; 4],
}

/// A closed day.
#[derive(Debug, Clone, Serialize)]
pub struct Settled {
    /// The day.
    pub date: BusinessDate,
    /// Whether this run closed it (`false`: it was closed, and the rerun gave the same bytes).
    pub closed_now: bool,
    /// Per currency.
    pub roll_forward: Vec<RollForward>,
    /// Per retailer and currency.
    pub statements: Vec<Statement>,
    /// The files, with their sizes and SHA-256.
    pub files: Vec<ManifestFile>,
    /// The audit seal taken after the day closed.
    pub seal_id: Option<i64>,
    /// Where the files were written.
    pub dir: PathBuf,
}

/// A report file as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ManifestFile {
    /// Its name.
    pub name: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// Its hex SHA-256.
    pub sha256: String,
}

/// The manifest: what the day's files are, signed as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
struct Manifest {
    business_date: String,
    time_zone: String,
    start: String,
    cutoff: String,
    files: Vec<ManifestFile>,
}

/// What `settle verify` found for one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileCheck {
    /// The file.
    pub name: String,
    /// `ok`, `missing`, `differs` (from the manifest) or `not_in_manifest`.
    pub status: &'static str,
}

/// What `settle verify` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verification {
    /// The day.
    pub date: BusinessDate,
    /// Whether the stored manifest's signature is the seal key's.
    pub signature_ok: bool,
    /// Whether the manifest in the directory is the stored one, byte for byte.
    pub manifest_ok: bool,
    /// Each file's check.
    pub files: Vec<FileCheck>,
}

impl Verification {
    /// Whether everything checked out.
    pub fn ok(&self) -> bool {
        self.signature_ok && self.manifest_ok && self.files.iter().all(|f| f.status == "ok")
    }
}

/// A payment a retailer made, as finance enters it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentForm {
    /// The retailer.
    pub retailer: RetailerName,
    /// The amount, in its currency.
    pub amount: Amount,
    /// The retailer's reference for it (its idempotency key).
    pub reference: Reference,
}

impl PaymentForm {
    /// Parses the fields as finance types them.
    pub fn parse(
        retailer: &str,
        amount: &str,
        currency: &str,
        reference: &str,
    ) -> Result<PaymentForm, SettleError> {
        fn input(e: impl Classify + std::fmt::Display) -> SettleError {
            SettleError::Input {
                code: e.code(),
                message: e.to_string(),
            }
        }
        let currency = Currency::parse(currency).map_err(input)?;
        Ok(PaymentForm {
            retailer: RetailerName::parse(retailer).map_err(input)?,
            amount: Amount::parse(amount, currency).map_err(input)?,
            reference: Reference::parse(reference).map_err(input)?,
        })
    }
}

/// A recorded payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PaymentRecorded {
    /// Its transfer.
    pub transfer_id: i64,
    /// Whether it was recorded before (the same reference, amount and currency).
    pub replayed: bool,
}

/// The movement line a transfer kind's liability legs count under.
fn movement(kind: TransferKind) -> &'static str {
    match kind {
        TransferKind::Activation => "activations",
        TransferKind::TradeIn => "trade_in_credits",
        TransferKind::Adjustment => "adjustments",
        TransferKind::Void => "voids",
        TransferKind::Spend => "spends",
        TransferKind::Refund => "refunds",
        TransferKind::Breakage => "breakage",
        TransferKind::Escheat => "escheat",
        TransferKind::Clawback => "clawbacks",
        TransferKind::Redemption => "redemptions",
        TransferKind::Payment => "payments",
    }
}

/// The movement lines, in report order.
const MOVEMENTS: [&str; 11] = [
    "activations",
    "trade_in_credits",
    "adjustments",
    "voids",
    "spends",
    "refunds",
    "breakage",
    "escheat",
    "clawbacks",
    "redemptions",
    "payments",
];

/// Everything one snapshot says about a day.
struct DayFacts {
    movements: Vec<MovementRow>,
    late: Vec<(BusinessDate, String, TransferKind, i64)>,
    opening: BTreeMap<String, i64>,
    at_cutoff: BTreeMap<String, i64>,
    memo: BTreeMap<String, (i64, i64)>,
    receivables: BTreeMap<(i64, String), Receivable>,
    retailer_names: BTreeMap<i64, String>,
    ageing_history: BTreeMap<(i64, String), Vec<(BusinessDate, i64)>>,
    payments: Vec<PaymentRow>,
    trade_ins: Vec<crate::store::settlement::TradeInDayRow>,
}

/// A retailer's day in one currency, before it is checked and aged.
#[derive(Default)]
struct Receivable {
    opening: i64,
    sales: (i64, i64, i64),
    voids: (i64, i64, i64),
    payments: i64,
    /// What the receivable's own entries say the day did to it (debits positive).
    ledger: i64,
}

/// Settlement use cases.
pub struct Settlement<'a, S>(pub(super) &'a Services<S>);

impl<S: Store> Settlement<'_, S> {
    /// The latest day whose cut-off plus the grace is at or before `as_of`: what a scheduled
    /// run as of `as_of` closes.
    pub fn closable_as_of(&self, as_of: DateTime<Utc>) -> Option<BusinessDate> {
        let grace = TimeDelta::from_std(SETTLEMENT_GRACE).expect("the grace fits");
        BusinessDate::of(as_of - grace, self.0.business_zone.get())?.previous()
    }

    /// Closes `date`: checks it reconciles, stores and signs its reports, writes them under
    /// `report_dir/{date}/`, and seals the audit trail under `key` (witnessed in `witness`).
    /// A closed day is recomputed and must give the same bytes; its files are written again.
    pub async fn settle(
        &self,
        date: BusinessDate,
        key: &SealKey,
        witness: &Path,
        report_dir: &Path,
        actor: &Actor,
    ) -> Result<Settled, SettleError> {
        let services = self.0;
        let zone = services.business_zone.get();
        let (start, cutoff) = (date.start(zone), date.cutoff(zone));
        let ready = cutoff + TimeDelta::from_std(SETTLEMENT_GRACE).expect("the grace fits");
        if services.clock.now() < ready {
            return Err(SettleError::TooEarly { date, ready });
        }
        let closed = {
            let mut tx = services.store.read().await?;
            let closed = tx.settlement(&date.to_string()).await?;
            if closed.is_none()
                && let Some(before) = tx.settled_before(&date.to_string()).await?
                && let Some(previous) = date.previous()
                && before != previous.to_string()
            {
                return Err(SettleError::Gap {
                    date,
                    missing: previous,
                });
            }
            tx.commit().await?;
            closed
        };
        if S::ONE_WRITER {
            // Take the write lock once: every writer that began before now has committed.
            services.store.begin().await?.commit().await?;
        }
        let checked = rerun!(self.facts(date, start, cutoff, closed.is_some()))
            .and_then(|facts| self.reconcile(date, &facts).map(|parts| (facts, parts)));
        if let Err(SettleError::Unbalanced { detail, .. }) = &checked {
            // Loudly: finance must look before the day can close.
            tracing::error!(%date, %detail, "the business day does not reconcile");
        }
        let (facts, (roll_forward, statements, liabilities, receivables)) = checked?;
        let reports = reports(date, &facts, &roll_forward, &statements)?;
        let files: Vec<SettlementFileRow> = reports
            .iter()
            .map(|report| {
                let content = report.to_bytes();
                SettlementFileRow {
                    name: report.name.to_string(),
                    sha256: hex::encode(Sha256::digest(&content)),
                    content,
                }
            })
            .collect();
        let manifest = Manifest {
            business_date: date.to_string(),
            time_zone: zone.name().to_string(),
            start: start.to_rfc3339(),
            cutoff: cutoff.to_rfc3339(),
            files: files
                .iter()
                .map(|f| ManifestFile {
                    name: f.name.clone(),
                    bytes: f.content.len() as u64,
                    sha256: f.sha256.clone(),
                })
                .collect(),
        };
        let mut manifest_bytes =
            serde_json::to_vec_pretty(&manifest).expect("a manifest serialises");
        manifest_bytes.push(b'\n');
        let signature = key.sign(&manifest_bytes);
        let mut closed_now = false;
        let row = match closed {
            Some(row) => row,
            None => {
                let row = SettlementRow {
                    business_date: date.to_string(),
                    time_zone: zone.name().to_string(),
                    start_ms: start.timestamp_millis(),
                    cutoff_ms: cutoff.timestamp_millis(),
                    manifest: manifest_bytes.clone(),
                    signature: signature.to_vec(),
                    seal_id: None,
                    settled_by: actor.to_string(),
                    settled_at: services.clock.now().to_rfc3339(),
                };
                closed_now =
                    rerun!(self.store_day(&row, &files, &liabilities, &receivables, actor))?;
                if closed_now {
                    row
                } else {
                    // Another runner closed it meanwhile: compare with theirs.
                    let mut tx = services.store.read().await?;
                    let row = tx.settlement(&date.to_string()).await?;
                    tx.commit().await?;
                    row.ok_or(SettleError::NotSettled(date))?
                }
            }
        };
        if !closed_now {
            let stored = self.stored_files(date).await?;
            // The store lists the files by name, not in manifest order: compare by name.
            for new in &files {
                if stored.iter().find(|old| old.name == new.name) != Some(new) {
                    return Err(SettleError::Changed {
                        date,
                        file: new.name.clone(),
                    });
                }
            }
            if stored.len() != files.len() || row.manifest != manifest_bytes {
                return Err(SettleError::Changed {
                    date,
                    file: MANIFEST.to_string(),
                });
            }
        }
        let seal_id = match row.seal_id {
            Some(id) => id,
            None => {
                let sealed = services.trail().seal(key, witness).await?;
                let mut tx = services.store.begin().await?;
                tx.set_settlement_seal(&date.to_string(), sealed.seal.seal_id)
                    .await?;
                tx.commit().await?;
                sealed.seal.seal_id
            }
        };
        let dir = report_dir.join(date.to_string());
        write_files(&dir, &files, &row)?;
        Ok(Settled {
            date,
            closed_now,
            roll_forward,
            statements,
            files: manifest.files,
            seal_id: Some(seal_id),
            dir,
        })
    }

    /// Reads the day from one snapshot.
    async fn facts(
        &self,
        date: BusinessDate,
        start: DateTime<Utc>,
        cutoff: DateTime<Utc>,
        rerun: bool,
    ) -> Result<DayFacts, SettleError> {
        let services = self.0;
        let zone = services.business_zone.get();
        let (start_ms, end_ms) = (start.timestamp_millis(), cutoff.timestamp_millis());
        let mut tx = services.store.read().await?;
        let movements = tx.day_movements(start_ms, end_ms).await?;
        let mut late = Vec::new();
        for row in tx.late_transfers(start_ms, end_ms).await? {
            let at = DateTime::from_timestamp_millis(row.effective_ms)
                .ok_or_else(|| StoreError::corrupt("a transfer's effective time"))?;
            let day = BusinessDate::of(at, zone)
                .ok_or_else(|| StoreError::corrupt("a transfer's effective date"))?;
            let kind = TransferKind::parse(&row.kind)
                .ok_or_else(|| StoreError::corrupt("a transfer's kind"))?;
            late.push((day, row.currency, kind, row.liability_minor));
        }
        // Yesterday's closing where yesterday is closed; otherwise the ledger's own sum of
        // every liability leg recorded before the day.
        let previous = date.previous().map(|d| d.to_string());
        let prior_liability = match &previous {
            Some(p) => tx.settled_liability(p).await?,
            None => Vec::new(),
        };
        let prior_receivables = match &previous {
            Some(p) => tx.settled_receivables(p).await?,
            None => Vec::new(),
        };
        let prior_closed = match &previous {
            Some(p) => tx.settlement(p).await?.is_some(),
            None => false,
        };
        let opening: BTreeMap<String, i64> = if prior_closed {
            prior_liability
                .iter()
                .map(|r| (r.currency.clone(), r.closing_minor))
                .collect()
        } else {
            to_map(tx.liability_between(i64::MIN, start_ms).await?)
        };
        // The balances at the cut-off: as their rows and card states hold them now, less
        // every liability leg recorded since.
        let mut at_cutoff = to_map(tx.customer_balances().await?);
        for sum in tx.active_card_value().await? {
            *at_cutoff.entry(sum.currency).or_default() += sum.minor;
        }
        for sum in tx.liability_between(end_ms, i64::MAX).await? {
            *at_cutoff.entry(sum.currency).or_default() -= sum.minor;
        }
        // A currency first used after the cut-off sums to nothing at it: it is not the day's,
        // or a rerun would report a currency the first run did not.
        at_cutoff.retain(|_, minor| *minor != 0);
        // Memo lines: a rerun reads what the first run found.
        let memo: BTreeMap<String, (i64, i64)> = if rerun {
            tx.settled_liability(&date.to_string())
                .await?
                .into_iter()
                .map(|r| (r.currency, (r.pending_minor, r.owed_minor)))
                .collect()
        } else {
            let mut memo: BTreeMap<String, (i64, i64)> = BTreeMap::new();
            for sum in tx.pending_valuations().await? {
                memo.entry(sum.currency).or_default().0 = sum.minor;
            }
            for sum in tx.owed_clawbacks().await? {
                memo.entry(sum.currency).or_default().1 = sum.minor;
            }
            memo
        };
        let mut receivables: BTreeMap<(i64, String), Receivable> = BTreeMap::new();
        if prior_closed {
            for row in prior_receivables {
                receivables
                    .entry((row.retailer_id, row.currency))
                    .or_default()
                    .opening = row.closing_minor;
            }
        } else {
            for sum in tx.receivables_between(i64::MIN, start_ms).await? {
                // Receivable legs debit (negative) what the retailer owes.
                receivables
                    .entry((sum.retailer_id, sum.currency))
                    .or_default()
                    .opening = -sum.minor;
            }
        }
        for row in tx.day_sales(start_ms, end_ms).await? {
            receivables
                .entry((row.retailer_id, row.currency))
                .or_default()
                .sales = (row.cards, row.gross_minor, row.commission_minor);
        }
        for row in tx.day_voids(start_ms, end_ms).await? {
            receivables
                .entry((row.retailer_id, row.currency))
                .or_default()
                .voids = (row.cards, row.gross_minor, row.commission_minor);
        }
        let payments = tx.day_payments(start_ms, end_ms).await?;
        for row in &payments {
            receivables
                .entry((row.retailer_id, row.currency.clone()))
                .or_default()
                .payments += row.amount_minor;
        }
        // What each receivable's own entries did in the day: its legs debit what is owed.
        for m in &movements {
            if let Some(id) = m.account.strip_prefix("receivable:") {
                let retailer_id = id
                    .parse::<i64>()
                    .map_err(|_| StoreError::corrupt("a receivable's account name"))?;
                receivables
                    .entry((retailer_id, m.currency.clone()))
                    .or_default()
                    .ledger += m.debits - m.credits;
            }
        }
        let mut retailer_names = BTreeMap::new();
        let mut ageing_history = BTreeMap::new();
        for (retailer_id, currency) in receivables.keys() {
            if !retailer_names.contains_key(retailer_id) {
                let name = tx
                    .retailer(RetailerId(*retailer_id))
                    .await?
                    .map_or_else(String::new, |r| r.name.as_str().to_string());
                retailer_names.insert(*retailer_id, name);
            }
            let mut history = Vec::new();
            for (day, net_due) in tx
                .net_due_history(*retailer_id, currency, &date.to_string(), AGEING_DAYS_READ)
                .await?
            {
                let day = BusinessDate::parse(&day)
                    .map_err(|_| StoreError::corrupt("a settlement's date"))?;
                history.push((day, net_due));
            }
            ageing_history.insert((*retailer_id, currency.clone()), history);
        }
        let trade_ins = tx.day_trade_ins(start_ms, end_ms).await?;
        let facts = DayFacts {
            movements,
            late,
            opening,
            at_cutoff,
            memo,
            receivables,
            retailer_names,
            ageing_history,
            payments,
            trade_ins,
        };
        // A difference is named from the same snapshot.
        if let Err(detail) = check_totals(&facts).and_then(|()| check_liability(&facts)) {
            let named = self.drift(&mut tx).await?;
            tx.commit().await?;
            return Err(SettleError::Unbalanced {
                date,
                detail: format!("{detail}{named}"),
            });
        }
        tx.commit().await?;
        Ok(facts)
    }

    /// The liability accounts whose balances disagree with their entries, as a sentence tail.
    async fn drift(&self, tx: &mut S::Tx) -> Result<String, SettleError> {
        let mut named = Vec::new();
        for row in tx.customer_drift(DRIFT_NAMED_MAX).await? {
            let account = LedgerAccount::Customer(AccountId(row.id)).key();
            named.push(format!(
                "{account} by {}",
                amount(row.difference_minor, &row.currency)?
            ));
        }
        for row in tx.card_drift(DRIFT_NAMED_MAX).await? {
            let serial = u64::try_from(row.id)
                .ok()
                .and_then(|s| Serial::from_sequence(s).ok())
                .ok_or_else(|| StoreError::corrupt("a card's serial"))?;
            let account = LedgerAccount::Card(serial).key();
            named.push(format!(
                "{account} by {}",
                amount(row.difference_minor, &row.currency)?
            ));
        }
        Ok(if named.is_empty() {
            "; every account's balance agrees with its entries, so entries recorded before the \
             day changed since the day before closed"
                .to_string()
        } else {
            format!("; balances differ from their entries: {}", named.join(", "))
        })
    }

    /// The roll-forward and statements, checked; and what the day stores for the next.
    #[allow(clippy::type_complexity)]
    fn reconcile(
        &self,
        date: BusinessDate,
        facts: &DayFacts,
    ) -> Result<
        (
            Vec<RollForward>,
            Vec<Statement>,
            Vec<LiabilityRow>,
            Vec<ReceivableRow>,
        ),
        SettleError,
    > {
        let unbalanced = |detail: String| SettleError::Unbalanced { date, detail };
        let currencies: BTreeSet<&String> = facts
            .opening
            .keys()
            .chain(facts.at_cutoff.keys())
            .chain(facts.movements.iter().map(|m| &m.currency))
            .chain(facts.memo.keys())
            .collect();
        let mut rolls = Vec::new();
        let mut liabilities = Vec::new();
        for code in currencies {
            let currency = parse_currency(code)?;
            let mut current: BTreeMap<&str, i64> = BTreeMap::new();
            let mut redeemed = 0;
            for m in facts
                .movements
                .iter()
                .filter(|m| &m.currency == code && (m.account == "card" || m.account == "customer"))
            {
                let kind = TransferKind::parse(&m.kind)
                    .ok_or_else(|| StoreError::corrupt("a transfer's kind"))?;
                if kind == TransferKind::Redemption && m.account == "customer" {
                    redeemed += m.credits - m.debits;
                }
                *current.entry(movement(kind)).or_default() += m.credits - m.debits;
            }
            // Late transfers show on their own lines, so they leave the day's own.
            let mut late: BTreeMap<(BusinessDate, &str), i64> = BTreeMap::new();
            for (day, c, kind, minor) in &facts.late {
                if c == code {
                    *late.entry((*day, movement(*kind))).or_default() += minor;
                    *current.entry(movement(*kind)).or_default() -= minor;
                }
            }
            let opening = facts.opening.get(code).copied().unwrap_or(0);
            let mut lines = vec![RollLine {
                line: "opening".into(),
                minor: opening,
            }];
            let mut closing = opening;
            for name in MOVEMENTS {
                let minor = current.get(name).copied().unwrap_or(0);
                // Redemptions and payments move nothing out of the liability; they show only
                // when they do (which the identity below then reports).
                if (name == "redemptions" || name == "payments") && minor == 0 {
                    continue;
                }
                closing += minor;
                lines.push(RollLine {
                    line: name.into(),
                    minor,
                });
            }
            for ((day, name), minor) in &late {
                closing += minor;
                lines.push(RollLine {
                    line: format!("late:{day}:{name}"),
                    minor: *minor,
                });
            }
            let at_cutoff = facts.at_cutoff.get(code).copied().unwrap_or(0);
            lines.push(RollLine {
                line: "closing".into(),
                minor: closing,
            });
            lines.push(RollLine {
                line: "balances_at_cutoff".into(),
                minor: at_cutoff,
            });
            lines.push(RollLine {
                line: "difference".into(),
                minor: at_cutoff - closing,
            });
            let (pending, owed) = facts.memo.get(code).copied().unwrap_or((0, 0));
            for (line, minor) in [
                ("memo:redeemed_into_accounts", redeemed),
                ("memo:pending_valuations", pending),
                ("memo:owed_clawbacks", owed),
            ] {
                lines.push(RollLine {
                    line: line.into(),
                    minor,
                });
            }
            // `facts` refused a day whose liability does not roll forward.
            debug_assert_eq!(at_cutoff, closing, "{currency}");
            liabilities.push(LiabilityRow {
                currency: code.clone(),
                closing_minor: closing,
                pending_minor: pending,
                owed_minor: owed,
            });
            rolls.push(RollForward { currency, lines });
        }
        let mut statements = Vec::new();
        let mut receivables = Vec::new();
        for ((retailer_id, code), r) in &facts.receivables {
            let currency = parse_currency(code)?;
            let net_due = (r.sales.1 - r.sales.2) - (r.voids.1 - r.voids.2);
            if net_due - r.payments != r.ledger {
                return Err(unbalanced(format!(
                    "{} moved by {} in its entries but its sales, voids and payments come to {}",
                    LedgerAccount::Receivable(RetailerId(*retailer_id)).key(),
                    amount(r.ledger, code)?,
                    amount(net_due - r.payments, code)?
                )));
            }
            let closing = r.opening + net_due - r.payments;
            // A retailer that owes nothing and did nothing has no statement that day.
            if r.opening == 0 && closing == 0 && r.sales.0 == 0 && r.voids.0 == 0 && r.payments == 0
            {
                continue;
            }
            let history = facts
                .ageing_history
                .get(&(*retailer_id, code.clone()))
                .map_or(&[][..], Vec::as_slice);
            statements.push(Statement {
                retailer_id: *retailer_id,
                retailer: facts
                    .retailer_names
                    .get(retailer_id)
                    .cloned()
                    .unwrap_or_default(),
                currency,
                opening: r.opening,
                activated_cards: r.sales.0,
                activated_gross: r.sales.1,
                commission: r.sales.2,
                voided_cards: r.voids.0,
                voided_gross: r.voids.1,
                voided_commission: r.voids.2,
                net_due,
                payments: r.payments,
                closing,
                ageing: ageing(date, closing, net_due, history),
            });
            receivables.push(ReceivableRow {
                retailer_id: *retailer_id,
                currency: code.clone(),
                net_due_minor: net_due,
                closing_minor: closing,
            });
        }
        Ok((rolls, statements, liabilities, receivables))
    }

    /// One transaction: the day, its files and closings, and its audit record. `false` when
    /// another run closed it first.
    async fn store_day(
        &self,
        row: &SettlementRow,
        files: &[SettlementFileRow],
        liabilities: &[LiabilityRow],
        receivables: &[ReceivableRow],
        actor: &Actor,
    ) -> Result<bool, SettleError> {
        let services = self.0;
        let mut tx = services.store.begin().await?;
        let at = services.clock.now();
        if !tx.insert_settlement(row).await? {
            return Ok(false);
        }
        for file in files {
            tx.insert_settlement_file(&row.business_date, file).await?;
        }
        for liability in liabilities {
            tx.insert_settled_liability(&row.business_date, liability)
                .await?;
        }
        for receivable in receivables {
            tx.insert_settled_receivable(&row.business_date, receivable)
                .await?;
        }
        let signer = services.signer(&mut tx).await?;
        let manifest_sha = hex::encode(Sha256::digest(&row.manifest));
        tx.append(
            &signer,
            &events::day_settled(actor, &row.business_date, &manifest_sha),
            at,
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn stored_files(
        &self,
        date: BusinessDate,
    ) -> Result<Vec<SettlementFileRow>, SettleError> {
        let mut tx = self.0.store.read().await?;
        let files = tx.settlement_files(&date.to_string()).await?;
        tx.commit().await?;
        Ok(files)
    }

    /// A closed day's files as stored, the manifest and its signature last: the same bytes on
    /// every host.
    pub async fn export(&self, date: BusinessDate) -> Result<Vec<(String, Vec<u8>)>, SettleError> {
        let mut tx = self.0.store.read().await?;
        let row = tx
            .settlement(&date.to_string())
            .await?
            .ok_or(SettleError::NotSettled(date))?;
        let files = tx.settlement_files(&date.to_string()).await?;
        tx.commit().await?;
        let mut out: Vec<(String, Vec<u8>)> =
            files.into_iter().map(|f| (f.name, f.content)).collect();
        out.push((MANIFEST.to_string(), row.manifest.clone()));
        out.push((SIGNATURE.to_string(), signature_file(&row)));
        Ok(out)
    }

    /// One of a closed day's files, as [`Settlement::export`] gives it.
    pub async fn file(&self, date: BusinessDate, name: &str) -> Result<Vec<u8>, SettleError> {
        self.export(date)
            .await?
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, bytes)| bytes)
            .ok_or_else(|| SettleError::NoFile {
                date,
                name: name.chars().take(64).collect(),
            })
    }

    /// Checks the files in `report_dir/{date}/` against the stored manifest, and the manifest's
    /// signature against `public`.
    pub async fn verify(
        &self,
        date: BusinessDate,
        public: &SealPublicKey,
        report_dir: &Path,
    ) -> Result<Verification, SettleError> {
        let mut tx = self.0.store.read().await?;
        let row = tx
            .settlement(&date.to_string())
            .await?
            .ok_or(SettleError::NotSettled(date))?;
        tx.commit().await?;
        let signature_ok = <[u8; 64]>::try_from(row.signature.as_slice())
            .is_ok_and(|sig| public.verify(&row.manifest, &sig));
        let manifest: Manifest = serde_json::from_slice(&row.manifest)
            .map_err(|_| StoreError::corrupt("a settlement manifest"))?;
        let dir = report_dir.join(date.to_string());
        let read = |name: &str| -> Result<Option<Vec<u8>>, SettleError> {
            let path = dir.join(name);
            match std::fs::read(&path) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(source) => Err(SettleError::Io {
                    path,
                    action: "read",
                    source,
                }),
            }
        };
        let manifest_ok = read(MANIFEST)?.is_some_and(|bytes| bytes == row.manifest);
        let mut files = Vec::new();
        for listed in &manifest.files {
            let status = match read(&listed.name)? {
                None => "missing",
                Some(bytes)
                    if bytes.len() as u64 == listed.bytes
                        && hex::encode(Sha256::digest(&bytes)) == listed.sha256 =>
                {
                    "ok"
                }
                Some(_) => "differs",
            };
            files.push(FileCheck {
                name: listed.name.clone(),
                status,
            });
        }
        // A file in the directory the manifest does not list was not issued by the run.
        if let Ok(entries) = std::fs::read_dir(&dir) {
            let mut extra: Vec<String> = entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| {
                    n != MANIFEST && n != SIGNATURE && !manifest.files.iter().any(|f| &f.name == n)
                })
                .collect();
            extra.sort();
            files.extend(extra.into_iter().map(|name| FileCheck {
                name,
                status: "not_in_manifest",
            }));
        }
        Ok(Verification {
            date,
            signature_ok,
            manifest_ok,
            files,
        })
    }

    /// Records a payment a retailer made against its receivable (the bank debited), once per
    /// reference: the same reference with the same amount answers as before.
    pub async fn record_payment(
        &self,
        form: &PaymentForm,
        actor: &Actor,
    ) -> Result<PaymentRecorded, SettleError> {
        rerun!(self.record_payment_once(form, actor))
    }

    async fn record_payment_once(
        &self,
        form: &PaymentForm,
        actor: &Actor,
    ) -> Result<PaymentRecorded, SettleError> {
        let services = self.0;
        let mut tx = services.store.begin().await?;
        let at = services.clock.now();
        let Some(retailer) = tx.retailer_by_name(&form.retailer).await? else {
            return Err(SettleError::UnknownRetailer(
                form.retailer.as_str().to_string(),
            ));
        };
        let retailer_id = retailer.id;
        let currency = form.amount.currency();
        if let Some(existing) = tx.payment(retailer_id.0, form.reference.as_str()).await? {
            return if existing.amount_minor == form.amount.minor()
                && existing.currency == currency.code()
            {
                Ok(PaymentRecorded {
                    transfer_id: existing.transfer_id,
                    replayed: true,
                })
            } else {
                Err(SettleError::PaymentConflict {
                    retailer: retailer.name.as_str().to_string(),
                    reference: form.reference.as_str().to_string(),
                })
            };
        }
        let posting = Posting::transfer(
            TransferKind::Payment,
            LedgerAccount::Bank,
            LedgerAccount::Receivable(retailer_id),
            form.amount,
            Some(form.reference.as_str().to_string()),
            at,
        );
        let transfer = tx.insert_transfer(&posting, &[None, None], at).await?;
        let row = PaymentRow {
            retailer_id: retailer_id.0,
            reference: form.reference.as_str().to_string(),
            amount_minor: form.amount.minor(),
            currency: currency.code().to_string(),
            transfer_id: transfer.0,
        };
        if !tx.insert_payment(&row, &actor.to_string()).await? {
            // A concurrent entry of the same reference won: the rerun answers as it did.
            return Err(StoreError::Moved("the payment reference").into());
        }
        let signer = services.signer(&mut tx).await?;
        tx.append(
            &signer,
            &events::payment_received(
                actor,
                retailer_id.0,
                form.reference.as_str(),
                crate::domain::Money::from_minor(form.amount.minor(), currency),
                transfer,
            ),
            at,
        )
        .await?;
        tx.commit().await?;
        Ok(PaymentRecorded {
            transfer_id: transfer.0,
            replayed: false,
        })
    }
}

/// Whether the day's entries balance per currency (every transfer sums to zero), before
/// anything is compared.
fn check_totals(facts: &DayFacts) -> Result<(), String> {
    let mut sums: BTreeMap<&str, i64> = BTreeMap::new();
    for m in &facts.movements {
        *sums.entry(&m.currency).or_default() += m.credits - m.debits;
    }
    match sums.into_iter().find(|(_, sum)| *sum != 0) {
        Some((currency, sum)) => Err(format!(
            "the day's {currency} entries do not sum to zero: they are off by {sum} minor units"
        )),
        None => Ok(()),
    }
}

/// Whether each currency's liability rolls forward: the opening plus every card and customer
/// leg of the day comes to the balances at the cut-off.
fn check_liability(facts: &DayFacts) -> Result<(), String> {
    let mut closing = facts.opening.clone();
    for m in &facts.movements {
        if m.account == "card" || m.account == "customer" {
            *closing.entry(m.currency.clone()).or_default() += m.credits - m.debits;
        }
    }
    let currencies: BTreeSet<&String> = closing.keys().chain(facts.at_cutoff.keys()).collect();
    for code in currencies {
        let rolled = closing.get(code).copied().unwrap_or(0);
        let at_cutoff = facts.at_cutoff.get(code).copied().unwrap_or(0);
        if rolled != at_cutoff {
            let show = |minor| amount(minor, code).unwrap_or_else(|_| format!("{minor} {code}"));
            return Err(format!(
                "the {code} liability rolls forward to {} but the balances at the cut-off sum to \
                 {}, a difference of {}",
                show(rolled),
                show(at_cutoff),
                show(at_cutoff - rolled)
            ));
        }
    }
    Ok(())
}

/// Splits `closing` by the age of the days that owe it, payments paying the oldest first: so
/// what is still owed is the newest net dues, today's first.
fn ageing(
    date: BusinessDate,
    closing: i64,
    net_due_today: i64,
    history: &[(BusinessDate, i64)],
) -> [i64; 4] {
    let mut buckets = [0; 4];
    let mut left = closing;
    let bucket = |day: BusinessDate| -> usize {
        match (date.date() - day.date()).num_days() {
            ..=30 => 0,
            31..=60 => 1,
            61..=90 => 2,
            _ => 3,
        }
    };
    let days = std::iter::once((date, net_due_today)).chain(history.iter().copied());
    let mut oldest = date;
    for (day, due) in days {
        if left <= 0 {
            break;
        }
        oldest = day;
        let take = due.clamp(0, left);
        buckets[bucket(day)] += take;
        left -= take;
    }
    if left > 0 {
        // Owed from before the oldest day read: at least a day older than it.
        let before = oldest.previous().unwrap_or(oldest);
        buckets[bucket(before)] += left;
    }
    buckets
}

fn to_map(sums: Vec<CurrencySum>) -> BTreeMap<String, i64> {
    sums.into_iter().map(|s| (s.currency, s.minor)).collect()
}

fn parse_currency(code: &str) -> Result<Currency, StoreError> {
    Currency::parse(code).map_err(|_| StoreError::corrupt("a transfer's currency"))
}

/// Minor units as a plain decimal in the currency's exponent (`-12.50`).
fn decimal(minor: i64, currency: Currency) -> String {
    crate::domain::Money::from_minor(minor, currency)
        .to_decimal()
        .to_string()
}

fn amount(minor: i64, code: &str) -> Result<String, StoreError> {
    Ok(crate::domain::Money::from_minor(minor, parse_currency(code)?).to_string())
}

/// The report files, in manifest order (a stored currency tender does not know is corrupt data,
/// never a row left out).
fn reports(
    date: BusinessDate,
    facts: &DayFacts,
    rolls: &[RollForward],
    statements: &[Statement],
) -> Result<Vec<Report>, StoreError> {
    let day = date.to_string();
    let mut roll = Report::new(
        "roll_forward.csv",
        &["business_date", "currency", "line", "amount"],
    );
    for r in rolls {
        for line in &r.lines {
            roll.push(vec![
                day.clone(),
                r.currency.code().to_string(),
                line.line.clone(),
                decimal(line.minor, r.currency),
            ]);
        }
    }
    let mut statement_file = Report::new(
        "retailer_statements.csv",
        &[
            "business_date",
            "retailer_id",
            "retailer",
            "currency",
            "opening",
            "activated_cards",
            "activated_gross",
            "commission",
            "voided_cards",
            "voided_gross",
            "voided_commission",
            "net_due",
            "payments",
            "closing",
            "due_0_30_days",
            "due_31_60_days",
            "due_61_90_days",
            "due_over_90_days",
        ],
    );
    for s in statements {
        let c = s.currency;
        let mut row = vec![
            day.clone(),
            s.retailer_id.to_string(),
            s.retailer.clone(),
            c.code().to_string(),
            decimal(s.opening, c),
            s.activated_cards.to_string(),
            decimal(s.activated_gross, c),
            decimal(s.commission, c),
            s.voided_cards.to_string(),
            decimal(s.voided_gross, c),
            decimal(s.voided_commission, c),
            decimal(s.net_due, c),
            decimal(s.payments, c),
            decimal(s.closing, c),
        ];
        row.extend(s.ageing.iter().map(|minor| decimal(*minor, c)));
        statement_file.push(row);
    }
    let mut journal = Report::new(
        "journal.csv",
        &[
            "business_date",
            "currency",
            "account",
            "legs",
            "debits",
            "credits",
            "net_credit",
        ],
    );
    let mut accounts: BTreeMap<(&str, &str), (i64, i64, i64)> = BTreeMap::new();
    for m in &facts.movements {
        let account = match m.account.as_str() {
            "card" => "card:*",
            "customer" => "customer:*",
            other => other,
        };
        let entry = accounts.entry((&m.currency, account)).or_default();
        entry.0 += m.legs;
        entry.1 += m.debits;
        entry.2 += m.credits;
    }
    for ((code, account), (legs, debits, credits)) in accounts {
        let c = parse_currency(code)?;
        journal.push(vec![
            day.clone(),
            code.to_string(),
            account.to_string(),
            legs.to_string(),
            decimal(debits, c),
            decimal(credits, c),
            decimal(credits - debits, c),
        ]);
    }
    let mut payments = Report::new(
        "payments.csv",
        &[
            "business_date",
            "retailer_id",
            "retailer",
            "reference",
            "currency",
            "amount",
            "transfer_id",
        ],
    );
    for p in &facts.payments {
        let c = parse_currency(&p.currency)?;
        payments.push(vec![
            day.clone(),
            p.retailer_id.to_string(),
            facts
                .retailer_names
                .get(&p.retailer_id)
                .cloned()
                .unwrap_or_default(),
            p.reference.clone(),
            p.currency.clone(),
            decimal(p.amount_minor, c),
            p.transfer_id.to_string(),
        ]);
    }
    let mut trade_ins = Report::new(
        "trade_ins.csv",
        &[
            "business_date",
            "warehouse",
            "device_model",
            "currency",
            "postings",
            "credited",
            "clawed_back",
        ],
    );
    let mut rows: Vec<_> = facts.trade_ins.iter().collect();
    rows.sort_by(|a, b| {
        (&a.warehouse_id, &a.device_model, &a.currency).cmp(&(
            &b.warehouse_id,
            &b.device_model,
            &b.currency,
        ))
    });
    for t in rows {
        let c = parse_currency(&t.currency)?;
        trade_ins.push(vec![
            day.clone(),
            t.warehouse_id.clone(),
            t.device_model.clone().unwrap_or_default(),
            t.currency.clone(),
            t.postings.to_string(),
            decimal(t.credited_minor, c),
            decimal(t.clawed_back_minor, c),
        ]);
    }
    Ok(vec![roll, statement_file, journal, payments, trade_ins])
}

/// `manifest.sig`: the seal key's public line, then the signature in hex.
fn signature_file(row: &SettlementRow) -> Vec<u8> {
    format!("ed25519-signature {}\n", hex::encode(&row.signature)).into_bytes()
}

/// Writes the files, the manifest and its signature into `dir`, each replaced whole.
fn write_files(
    dir: &Path,
    files: &[SettlementFileRow],
    row: &SettlementRow,
) -> Result<(), SettleError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SettleError::Io {
            path,
            action: "written",
            source,
        }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let all = files
        .iter()
        .map(|f| (f.name.as_str(), f.content.clone()))
        .chain([
            (MANIFEST, row.manifest.clone()),
            (SIGNATURE, signature_file(row)),
        ]);
    for (name, bytes) in all {
        let path = dir.join(name);
        let temporary = dir.join(format!(".{name}.partial"));
        std::fs::write(&temporary, &bytes).map_err(io(&temporary))?;
        std::fs::File::open(&temporary)
            .and_then(|f| f.sync_all())
            .map_err(io(&temporary))?;
        std::fs::rename(&temporary, &path).map_err(io(&path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(text: &str) -> BusinessDate {
        BusinessDate::parse(text).unwrap()
    }

    #[test]
    fn what_is_owed_ages_by_the_newest_dues_first() {
        let today = day("2026-12-31");
        let history = [
            (day("2026-12-20"), 100),
            (day("2026-11-15"), 200),
            (day("2026-09-01"), 300),
        ];
        // 50 today, then 100 (11 days), 200 (46 days), and 150 of the 300 (121 days).
        assert_eq!(ageing(today, 500, 50, &history), [150, 200, 0, 150]);
        // Paid down to less than today's dues: all current.
        assert_eq!(ageing(today, 30, 50, &history), [30, 0, 0, 0]);
        // Overpaid: nothing is owed, so nothing ages.
        assert_eq!(ageing(today, -10, 50, &history), [0, 0, 0, 0]);
        // Owed from before the history read: at least a day older than its oldest day.
        assert_eq!(ageing(today, 80, 50, &[]), [80, 0, 0, 0]);
    }

    #[test]
    fn a_scheduled_run_closes_the_latest_day_past_its_grace() {
        let at = |text: &str| text.parse::<DateTime<Utc>>().unwrap();
        let grace = TimeDelta::from_std(SETTLEMENT_GRACE).unwrap();
        let midnight = at("2026-12-05T00:00:00Z");
        let zone = chrono_tz::UTC;
        let closable = |as_of: DateTime<Utc>| {
            BusinessDate::of(as_of - grace, zone).and_then(BusinessDate::previous)
        };
        assert_eq!(closable(midnight + grace), Some(day("2026-12-04")));
        assert_eq!(
            closable(midnight + grace - TimeDelta::seconds(1)),
            Some(day("2026-12-03"))
        );
    }
}
