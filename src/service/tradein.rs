//! Trade-in credit: warehouses' valuations of traded-in devices, taken in by rows (the API) or
//! by files (the CLI, the API's uploads), recorded once per trade-in id, and posted to the
//! customer's account by the posting job, with finance's approval above a warehouse's daily
//! amount or a model's price band.
//!
//! An upload streams: its rows are read on a blocking thread, checked one by one and staged
//! in bounded transactions, so memory stays flat however large the file; repeats inside the
//! file are then found in SQL, and the rows are applied a page per transaction, each row's
//! result recorded with it, so a crash resumes where it stopped and no row is half applied.
//! A file refused as a whole (an unreadable header, a ragged row, a byte that is not UTF-8)
//! applies nothing. Its SHA-256 is claimed once staged: the same bytes again are answered with
//! the first upload's result.
//!
//! A valuation is recorded once under its (warehouse, trade-in id): the same values again are
//! `unchanged`; other values are a `conflict` unless the row is marked a revaluation, which
//! queues the difference. Posting moves the difference between the value and what is already
//! credited, net of what is owed: up as a credit (first settling what is owed), down as a
//! claw-back that takes at most the balance and records the rest as owed. A posting takes its
//! valuation's row first (a row lock on PostgreSQL), so however many workers post, each
//! revision is posted once.

use std::io::Read;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::keys::KeyUseError;
use super::{JobPayload, Services};
use crate::audit::events;
use crate::domain::{
    AccountId, Actor, Amount, Currency, Device, FieldError, HeldFor, LedgerAccount,
    LedgerValueError, Money, MoneyError, Name, PageRows, Posting, RowCounts, RowOutcome, TradeInId,
    TradeInState, TransferId, TransferKind, Valuation, ValuationText, WarehouseId,
};
use crate::error::{Classify, Kind};
use crate::formats::tradein_csv::{self, FileError, Positions, Reader};
use crate::keys::{KeyId, KeyPurpose, KeyRing, KeyState, SecretKey};
use crate::store::tradein::{
    Band, FileRow, FileState, NewTradeIn, RowResult, Settled, StagedRow, TradeInRow,
};
use crate::store::{
    AuditRepo, KeyRepo, LedgerRepo, OutboxRepo, Store, StoreError, TradeInRepo, Tx,
};

/// The label the device digest's key is derived from a lookup key under: for this use alone.
pub const DEVICE_MAC_LABEL: &[u8] = b"tender trade-in device v1";
/// The most valuations one `POST /v1/trade-ins` carries: a warehouse's burst, small enough to
/// answer in one transaction. Larger sets go as a file.
pub const ROWS_PER_REQUEST_MAX: usize = 100;
/// The most of an API upload's body held in memory and stored as one piece.
const UPLOAD_PIECE_BYTES: usize = 1024 * 1024;
/// Rows handed from the reading thread at a time, and staged per statement batch.
const STAGE_BATCH_ROWS: usize = 1_000;
/// Staged rows per transaction: large enough to amortise the commit, small enough that the
/// SQLite write lock is not held for long.
const STAGE_ROWS_PER_TX: usize = 20_000;
/// Rows applied per transaction.
const APPLY_ROWS_PER_TX: u64 = 500;
/// Valuations posted per transaction.
const POST_PER_TX: usize = 100;
/// Queued valuations read per page by the posting job.
const POST_PAGE: u64 = 1_000;
/// How long uploads, their staged rows and rejects are kept: long enough for finance to answer
/// a warehouse's questions about a month-end file, short enough not to keep devices for ever.
pub const FILE_RETENTION_DAYS: i64 = 90;
/// Uploads deleted per purge transaction.
const PURGE_FILES_PER_TX: u64 = 100;
/// The code of a row whose trade-in an earlier row of the same file names.
pub const REPEATED_CODE: &str = "tradein.repeated_in_file";
/// The code of a row whose device an earlier row of the same file names.
pub const DEVICE_REPEATED_CODE: &str = "tradein.device_repeated_in_file";

/// Why one valuation was refused: the row's result, never the file's or the request's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowRefusal {
    /// A field was refused.
    #[error(transparent)]
    Field(#[from] FieldError),
    /// An earlier row of the same request names the same trade-in.
    #[error("the trade-in id repeats row {0} of this request")]
    Repeated(i64),
    /// An earlier row of the same request names the same device.
    #[error("the device repeats row {0} of this request")]
    DeviceRepeated(i64),
    /// No such account.
    #[error("there is no account {0}")]
    AccountNotFound(AccountId),
    /// The valuation is in another currency than the account holds.
    #[error("account {account} holds {held}; this valuation is in {given}")]
    CurrencyMismatch {
        /// The account.
        account: AccountId,
        /// Its currency.
        held: Currency,
        /// The valuation's.
        given: Currency,
    },
    /// The valuation was quoted in another storefront than the account's.
    #[error(
        "account {account} belongs to the {held} storefront; this trade-in was quoted in {given}"
    )]
    RegionMismatch {
        /// The account.
        account: AccountId,
        /// Its region.
        held: String,
        /// The valuation's.
        given: String,
    },
    /// The trade-in was recorded with other values, and the row is not a revaluation.
    #[error(
        "trade-in {0} was recorded before with another {1}; mark the row revaluation=true to change its value"
    )]
    Conflict(String, &'static str),
    /// A revaluation that changes what a revaluation may not.
    #[error("a revaluation of trade-in {0} may not change its {1}")]
    RevaluationConflict(String, &'static str),
    /// The device is recorded under another trade-in (one not rejected).
    #[error("this device is already recorded under trade-in {0}")]
    DeviceTaken(String),
    /// A revaluation of a trade-in never recorded.
    #[error("there is no earlier valuation of trade-in {0} to revalue")]
    NothingToRevalue(String),
    /// A revaluation of a trade-in finance rejected.
    #[error("trade-in {0} was rejected by finance; send it under a new trade-in id")]
    WasRejected(String),
    /// A value above what one transfer may move: it could never be credited, nor taken back.
    #[error("a valuation is at most {0}, the most one transfer moves")]
    TooLarge(Money),
}

impl Classify for RowRefusal {
    fn code(&self) -> &'static str {
        match self {
            RowRefusal::Field(e) => e.code(),
            RowRefusal::Repeated(_) => REPEATED_CODE,
            RowRefusal::DeviceRepeated(_) => DEVICE_REPEATED_CODE,
            RowRefusal::AccountNotFound(_) => "account.not_found",
            RowRefusal::CurrencyMismatch { .. } => "tradein.currency_mismatch",
            RowRefusal::RegionMismatch { .. } => "tradein.region_mismatch",
            RowRefusal::Conflict(..) => "tradein.conflict",
            RowRefusal::RevaluationConflict(..) => "tradein.revaluation_conflict",
            RowRefusal::DeviceTaken(_) => "tradein.device_taken",
            RowRefusal::NothingToRevalue(_) => "tradein.nothing_to_revalue",
            RowRefusal::WasRejected(_) => "tradein.was_rejected",
            RowRefusal::TooLarge(_) => "amount.too_large",
        }
    }

    fn kind(&self) -> Kind {
        match self {
            RowRefusal::Field(_) | RowRefusal::TooLarge(_) => Kind::Invalid,
            RowRefusal::AccountNotFound(_) => Kind::NotFound,
            _ => Kind::Conflict,
        }
    }
}

/// Why a trade-in use case failed as a whole. Nothing of it was written.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// More valuations in one request than allowed.
    #[error("one request carries 1 to {ROWS_PER_REQUEST_MAX} valuations; send more as a file")]
    TooManyRows,
    /// No such upload.
    #[error("there is no trade-in file {0}")]
    FileNotFound(i64),
    /// No such valuation.
    #[error("there is no trade-in {0}")]
    NotFound(i64),
    /// The valuation is not waiting for finance.
    #[error("trade-in {0} is not waiting for approval")]
    NotHeld(i64),
    /// The valuation was rejected; it cannot be approved.
    #[error("trade-in {0} was rejected")]
    WasRejected(i64),
    /// The submitter tried to decide their own valuation.
    #[error("trade-in {0} must be decided by someone other than its submitter")]
    SelfApproval(i64),
    /// The account is frozen: nothing can be posted to it.
    #[error("account {0} is frozen; unfreeze it before approving")]
    AccountFrozen(AccountId),
    /// A band's amount or model was refused.
    #[error(transparent)]
    Invalid(#[from] LedgerValueError),
    /// A model or a currency was refused.
    #[error(transparent)]
    Field(#[from] FieldError),
    /// The file could not be read.
    #[error("the file could not be read: {0}")]
    Io(String),
    /// The lookup or audit key could not be had.
    #[error(transparent)]
    Keys(#[from] KeyUseError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<MoneyError> for IntakeError {
    fn from(error: MoneyError) -> Self {
        IntakeError::Invalid(error.into())
    }
}

impl Classify for IntakeError {
    fn code(&self) -> &'static str {
        match self {
            IntakeError::TooManyRows => "tradein.too_many_rows",
            IntakeError::FileNotFound(_) => "tradein.file_not_found",
            IntakeError::NotFound(_) => "tradein.not_found",
            IntakeError::NotHeld(_) => "tradein.not_held",
            IntakeError::WasRejected(_) => "tradein.was_rejected",
            IntakeError::SelfApproval(_) => "tradein.self_approval",
            IntakeError::AccountFrozen(_) => "account.frozen",
            IntakeError::Invalid(e) => e.code(),
            IntakeError::Field(e) => e.code(),
            IntakeError::Io(_) => "tradein.io",
            IntakeError::Keys(e) => e.code(),
            IntakeError::Store(e) => e.code(),
        }
    }

    fn kind(&self) -> Kind {
        match self {
            IntakeError::TooManyRows | IntakeError::Invalid(_) | IntakeError::Field(_) => {
                Kind::Invalid
            }
            IntakeError::FileNotFound(_) | IntakeError::NotFound(_) => Kind::NotFound,
            IntakeError::NotHeld(_)
            | IntakeError::WasRejected(_)
            | IntakeError::SelfApproval(_)
            | IntakeError::AccountFrozen(_) => Kind::Conflict,
            IntakeError::Io(_) => Kind::Internal,
            IntakeError::Keys(e) => e.kind(),
            IntakeError::Store(e) => e.kind(),
        }
    }
}

/// One valuation as an API caller sends it: every field text, as in a file's row.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ValuationForm {
    /// The warehouse's trade-in id.
    pub trade_in_id: String,
    /// The account to credit.
    pub account_id: String,
    /// The warehouse.
    pub warehouse_id: String,
    /// The device model.
    pub device_model: String,
    /// The device's serial or IMEI.
    pub device_id: String,
    /// The grade.
    pub grade: String,
    /// The assessed value, such as `215.00`.
    pub value: String,
    /// Its currency.
    pub currency: String,
    /// When it was assessed (ISO 8601 with an offset).
    pub assessed_at: String,
    /// Whether this revalues an earlier valuation (`true`, `false` or empty).
    #[serde(default)]
    pub revaluation: String,
    /// The storefront country it was quoted in, where known.
    #[serde(default)]
    pub region: String,
}

impl ValuationForm {
    fn text(&self) -> ValuationText<'_> {
        ValuationText {
            trade_in_id: &self.trade_in_id,
            account_id: &self.account_id,
            warehouse_id: &self.warehouse_id,
            device_model: &self.device_model,
            device_id: &self.device_id,
            grade: &self.grade,
            value: &self.value,
            currency: &self.currency,
            assessed_at: &self.assessed_at,
            revaluation: &self.revaluation,
            region: &self.region,
        }
    }
}

/// What one row did: its number (a file's line, a request's position from 1), the trade-in it
/// named, and its outcome, with the code and reason of a refusal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowReport {
    /// The file's line, or the request's row from 1.
    pub row: i64,
    /// The trade-in id, where it parsed.
    pub trade_in_id: Option<String>,
    /// What it did.
    pub outcome: RowOutcome,
    /// tender's id for the valuation it recorded or found.
    pub id: Option<i64>,
    /// A refusal's stable code.
    pub code: Option<String>,
    /// A refusal's reason.
    pub reason: Option<String>,
}

/// An upload's report: the upload, and for a repeat of earlier bytes, the upload it repeats
/// (whose report this is).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileReport {
    /// The upload the report is of.
    #[serde(flatten)]
    pub file: FileRow,
    /// Whether this answers a second upload of the same bytes.
    pub repeated: bool,
}

/// A refused row of an upload, as the rejects file writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// Its line.
    pub line: u64,
    /// `code: reason`.
    pub reason: String,
    /// Its cells as sent (the device blank once erased).
    pub cells: Vec<String>,
}

/// A page of an upload's refused rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectsPage {
    /// The upload's header, in its own order.
    pub header: Vec<String>,
    /// The refused rows.
    pub rows: Vec<Reject>,
    /// The line to page on after; `None` on the last page.
    pub next: Option<i64>,
}

/// What a posting run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PostRun {
    /// Valuations posted (a credit, a claw-back, or nothing left to move).
    pub posted: u64,
    /// Valuations now waiting for finance.
    pub held: u64,
}

/// What posting one valuation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Posted {
    /// The difference moved: `amount` credited (positive) or taken back (negative), with what
    /// is owed after it.
    Posted {
        /// The transfer, where money moved.
        transfer_id: Option<TransferId>,
        /// What moved to (positive) or from (negative) the account.
        amount: Money,
        /// What the customer owes back after it.
        owed: Money,
    },
    /// It waits for finance.
    Held {
        /// Why.
        held_for: HeldFor,
    },
}

/// An approval's answer: what it posted, or that it was approved before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Approved {
    /// What the approval posted; `None` for a repeat.
    pub posted: Option<Posted>,
    /// Whether the valuation was approved before (nothing new was written).
    pub replayed: bool,
}

/// The posting job's payload: post what is queued.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostTradeIns {
    /// The upload whose import queued it, where one did (for the log).
    pub file_id: Option<i64>,
}

impl JobPayload for PostTradeIns {
    const JOB: &'static str = "post-trade-ins";
}

/// The import job's payload: read an upload the API stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportTradeIns {
    /// The upload.
    pub file_id: i64,
}

impl JobPayload for ImportTradeIns {
    const JOB: &'static str = "import-trade-ins";
}

/// Digests devices under a key derived from each lookup key a device may have been digested
/// under, so a device recorded before a key rotation is still found.
struct DeviceDigester {
    /// The active lookup key's id and derived key: new digests are made under it.
    active: (KeyId, SecretKey),
    /// Every other recorded key's.
    others: Vec<(KeyId, SecretKey)>,
}

impl DeviceDigester {
    fn new(ring: &KeyRing, active: KeyId, ids: &[KeyId]) -> DeviceDigester {
        let derive = |id| {
            (
                id,
                ring.derive(id, DEVICE_MAC_LABEL)
                    .expect("the ring holds every recorded key"),
            )
        };
        DeviceDigester {
            active: derive(active),
            others: ids
                .iter()
                .filter(|&&id| id != active)
                .map(|&id| derive(id))
                .collect(),
        }
    }

    fn mac(key: &SecretKey, device: &Device) -> [u8; 32] {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(key.expose()).expect("HMAC takes keys of any length");
        mac.update(device.as_str().as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The digest new records carry.
    fn digest(&self, device: &Device) -> (KeyId, [u8; 32]) {
        (self.active.0, Self::mac(&self.active.1, device))
    }

    /// The digest under each key, the active one first.
    fn all(&self, device: &Device) -> Vec<(KeyId, [u8; 32])> {
        std::iter::once(&self.active)
            .chain(&self.others)
            .map(|(id, key)| (*id, Self::mac(key, device)))
            .collect()
    }

    /// The digest under key `id`, to compare with a record made under it.
    fn under(&self, id: KeyId, device: &Device) -> Option<[u8; 32]> {
        std::iter::once(&self.active)
            .chain(&self.others)
            .find(|(key_id, _)| *key_id == id)
            .map(|(_, key)| Self::mac(key, device))
    }
}

/// How the reading thread ended.
enum ReadEnd {
    /// Every row was read.
    Whole {
        header: Vec<String>,
        sha256: String,
        bytes: u64,
    },
    /// The file is refused as a whole.
    Refused(FileError),
}

/// Hashes and counts what passes through.
struct Hashing<R> {
    inner: R,
    sha: Arc<std::sync::Mutex<(Sha256, u64)>>,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut sha = self.sha.lock().expect("only this thread holds it");
        sha.0.update(&buf[..n]);
        sha.1 += n as u64;
        Ok(n)
    }
}

/// Stages one row: the device cell kept apart, the keys where they parse, the refusal of a
/// row that does not.
fn stage_row(
    row: &tradein_csv::Row,
    positions: &Positions,
    digester: &DeviceDigester,
) -> StagedRow {
    let text = row.text();
    let mut cells = row.cells();
    let device = std::mem::take(&mut cells[positions.device()]);
    let key = WarehouseId::parse(text.warehouse_id)
        .ok()
        .zip(TradeInId::parse(text.trade_in_id).ok())
        .map(|(w, t)| (w.as_str().to_string(), t.as_str().to_string()));
    StagedRow {
        line: i64::try_from(row.line()).unwrap_or(i64::MAX),
        cells: serde_json::to_string(&cells).expect("strings serialise"),
        account_id: AccountId::parse(text.account_id).ok().map(|a| a.0),
        key,
        device_digest: Device::parse(text.device_id)
            .ok()
            .map(|d| digester.digest(&d).1),
        refused: Valuation::parse(&text)
            .err()
            .map(|e| (e.code(), e.to_string())),
        device,
    }
}

/// Reads `source` on this (blocking) thread, handing staged rows over `rows`.
fn read_rows(
    source: impl Read,
    digester: &DeviceDigester,
    rows: &tokio::sync::mpsc::Sender<Vec<StagedRow>>,
) -> ReadEnd {
    let sha = Arc::new(std::sync::Mutex::new((Sha256::new(), 0u64)));
    let hashing = Hashing {
        inner: source,
        sha: Arc::clone(&sha),
    };
    let mut reader = match Reader::new(hashing) {
        Ok(reader) => reader,
        Err(e) => return ReadEnd::Refused(e),
    };
    let positions = reader.positions();
    let mut batch = Vec::with_capacity(STAGE_BATCH_ROWS);
    loop {
        match reader.next_row() {
            Ok(Some(row)) => {
                batch.push(stage_row(&row, &positions, digester));
                if batch.len() == STAGE_BATCH_ROWS
                    && rows.blocking_send(std::mem::take(&mut batch)).is_err()
                {
                    // The receiver gave up (a storage failure): it reports why.
                    return ReadEnd::Refused(FileError::Io);
                }
            }
            Ok(None) => break,
            Err(e) => return ReadEnd::Refused(e),
        }
    }
    if !batch.is_empty() && rows.blocking_send(batch).is_err() {
        return ReadEnd::Refused(FileError::Io);
    }
    let header = reader.header().to_vec();
    drop(reader);
    let (sha, bytes) = std::mem::take(&mut *sha.lock().expect("the reader is gone"));
    ReadEnd::Whole {
        header,
        sha256: hex::encode(sha.finalize()),
        bytes,
    }
}

/// A stored row's cells with its device back in place.
fn row_cells(row: &RowResult, positions: Option<&Positions>) -> Result<Vec<String>, StoreError> {
    let mut cells: Vec<String> =
        serde_json::from_str(&row.cells).map_err(|_| StoreError::corrupt("a staged row"))?;
    if let Some(slot) = positions.and_then(|p| cells.get_mut(p.device())) {
        *slot = row.device.clone().unwrap_or_default();
    }
    Ok(cells)
}

/// Reads an upload's stored body on a blocking thread, one piece (one read transaction) at a
/// time, so the body is never whole in memory.
struct PieceReader<S> {
    store: S,
    handle: tokio::runtime::Handle,
    file_id: i64,
    next: i32,
    current: std::io::Cursor<Vec<u8>>,
}

impl<S: Store> Read for PieceReader<S> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let n = self.current.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            let (store, file_id, piece) = (&self.store, self.file_id, self.next);
            let body = self.handle.block_on(async {
                let mut tx = store.read().await?;
                tx.upload_piece(file_id, piece).await
            });
            match body.map_err(std::io::Error::other)? {
                Some(body) => {
                    self.current = std::io::Cursor::new(body);
                    self.next += 1;
                }
                None => return Ok(0),
            }
        }
    }
}

/// Major units of `currency` as minor units, truncated: a setting's amount.
fn minor_of(amount: rust_decimal::Decimal, currency: Currency) -> i64 {
    let scaled = amount * rust_decimal::Decimal::from(10i64.pow(currency.minor_units()));
    i64::try_from(scaled.trunc().mantissa()).unwrap_or(i64::MAX)
}

/// Trade-in use cases.
#[derive(Debug)]
pub struct TradeIns<'a, S>(pub(super) &'a Services<S>);

impl<S: Store> TradeIns<'_, S> {
    /// The device digester for this transaction's recorded lookup keys.
    async fn digester(&self, tx: &mut S::Tx) -> Result<DeviceDigester, IntakeError> {
        let purpose = KeyPurpose::Lookup;
        let active = tx
            .active_key(purpose)
            .await?
            .ok_or(KeyUseError::NoActiveKey(purpose))?;
        let ids: Vec<KeyId> = tx
            .recorded_keys(purpose)
            .await?
            .into_iter()
            .filter(|key| key.state != KeyState::Pending)
            .map(|key| key.id)
            .collect();
        let ring = self.0.lookup_ring_holding(&ids)?;
        Ok(DeviceDigester::new(&ring, active, &ids))
    }

    /// Imports a CSV file read from `source` (named `file_name` in reports): stages, checks and
    /// applies every row, queues the posting, and returns the report. The same bytes imported
    /// before are answered with the first import's report (`repeated`), and an import cut off
    /// by a crash is finished by the next import of the same file.
    pub async fn import(
        &self,
        source: impl Read + Send + 'static,
        file_name: Option<&str>,
        actor: &Actor,
    ) -> Result<FileReport, IntakeError> {
        let services = self.0;
        let file_id = {
            let mut tx = services.store.begin().await?;
            let id = tx
                .insert_trade_in_file(
                    file_name,
                    actor.principal(),
                    FileState::Received,
                    services.clock.now(),
                )
                .await?;
            tx.commit().await?;
            id
        };
        match self.stage(file_id, source, true, actor).await? {
            Some(first) => self.finish_import(first, actor).await.map(|mut report| {
                report.repeated = true;
                report
            }),
            None => self.finish_import(file_id, actor).await,
        }
    }

    /// Stores an API upload's body as it streams in, piece by piece, and queues its import;
    /// `pieces` yields the body's chunks, and ends it early with the caller's error (a limit). The same bytes
    /// uploaded before are answered with the first upload's report (`repeated`).
    pub async fn receive<E>(
        &self,
        mut pieces: impl futures::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
        actor: &Actor,
    ) -> Result<Result<FileReport, E>, IntakeError> {
        use futures::StreamExt;
        let services = self.0;
        let at = services.clock.now();
        let file_id = {
            let mut tx = services.store.begin().await?;
            let id = tx
                .insert_trade_in_file(None, actor.principal(), FileState::Receiving, at)
                .await?;
            tx.commit().await?;
            id
        };
        let mut sha = Sha256::new();
        let mut bytes = 0i64;
        let mut piece = 0i32;
        let mut buffer = Vec::with_capacity(UPLOAD_PIECE_BYTES);
        loop {
            let chunk = match pieces.next().await {
                Some(Ok(chunk)) => Some(chunk),
                Some(Err(e)) => {
                    // The caller's stream failed (a limit, a dropped connection): forget it.
                    self.discard(file_id).await?;
                    return Ok(Err(e));
                }
                None => None,
            };
            if let Some(chunk) = &chunk {
                sha.update(chunk);
                bytes += i64::try_from(chunk.len()).unwrap_or(i64::MAX);
                buffer.extend_from_slice(chunk);
            }
            // Stored a piece at a time, so the body is never whole in memory.
            if buffer.len() >= UPLOAD_PIECE_BYTES || (chunk.is_none() && !buffer.is_empty()) {
                let mut tx = services.store.begin().await?;
                tx.insert_upload_piece(file_id, piece, &buffer).await?;
                tx.commit().await?;
                buffer.clear();
                piece += 1;
            }
            if chunk.is_none() {
                break;
            }
        }
        let sha256 = hex::encode(sha.finalize());
        let mut tx = services.store.begin().await?;
        if let Some(first) = tx.claim_file_sha(file_id, &sha256, bytes).await? {
            tx.delete_trade_in_file(file_id).await?;
            let file = tx
                .trade_in_file(first)
                .await?
                .ok_or(IntakeError::FileNotFound(first))?;
            tx.commit().await?;
            return Ok(Ok(FileReport {
                file,
                repeated: true,
            }));
        }
        tx.set_file_state(file_id, FileState::Received, None)
            .await?;
        tx.insert_outbox(&ImportTradeIns { file_id }.outbox(), at)
            .await?;
        let file = tx
            .trade_in_file(file_id)
            .await?
            .ok_or(IntakeError::FileNotFound(file_id))?;
        tx.commit().await?;
        Ok(Ok(FileReport {
            file,
            repeated: false,
        }))
    }

    async fn discard(&self, file_id: i64) -> Result<(), IntakeError> {
        let mut tx = self.0.store.begin().await?;
        tx.delete_trade_in_file(file_id).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Imports an upload the API stored: the import job's body. Idempotent: an upload already
    /// imported is left as it is, one cut off mid-way is finished.
    pub async fn import_received(
        &self,
        file_id: i64,
        actor: &Actor,
    ) -> Result<FileReport, IntakeError> {
        let file = {
            let mut tx = self.0.store.read().await?;
            tx.trade_in_file(file_id)
                .await?
                .ok_or(IntakeError::FileNotFound(file_id))?
        };
        if file.state == FileState::Received {
            let pieces = self.upload_reader(file_id);
            self.stage(file_id, pieces, false, actor).await?;
        }
        self.finish_import(file_id, actor).await
    }

    /// A blocking reader over an upload's stored pieces, fetching one at a time.
    fn upload_reader(&self, file_id: i64) -> PieceReader<S> {
        PieceReader {
            store: self.0.store.clone(),
            handle: tokio::runtime::Handle::current(),
            file_id,
            next: 0,
            current: std::io::Cursor::new(Vec::new()),
        }
    }

    /// Stages upload `file_id` from `source`, from its first row (rows an earlier, cut-off
    /// attempt staged are deleted first). With `claim`, the bytes' SHA-256 is claimed once
    /// read: `Some(first)` when upload `first` holds it (this upload is then deleted).
    async fn stage(
        &self,
        file_id: i64,
        source: impl Read + Send + 'static,
        claim: bool,
        actor: &Actor,
    ) -> Result<Option<i64>, IntakeError> {
        let services = self.0;
        let digester = {
            let mut tx = services.store.begin().await?;
            tx.delete_staged_rows(file_id).await?;
            let digester = self.digester(&mut tx).await?;
            tx.commit().await?;
            Arc::new(digester)
        };
        let (send, mut receive) = tokio::sync::mpsc::channel(2);
        let reading = {
            let digester = Arc::clone(&digester);
            tokio::task::spawn_blocking(move || read_rows(source, &digester, &send))
        };
        let mut tx = services.store.begin().await?;
        let mut in_tx = 0;
        while let Some(rows) = receive.recv().await {
            tx.insert_staged_rows(file_id, &rows).await?;
            in_tx += rows.len();
            if in_tx >= STAGE_ROWS_PER_TX {
                tx.commit().await?;
                tx = services.store.begin().await?;
                in_tx = 0;
            }
        }
        let end = reading
            .await
            .map_err(|e| IntakeError::Io(format!("the reading thread failed: {e}")))?;
        match end {
            ReadEnd::Refused(error) => {
                drop(tx);
                self.refuse(file_id, &error, actor).await?;
                Ok(None)
            }
            ReadEnd::Whole {
                header,
                sha256,
                bytes,
            } => {
                if claim {
                    let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
                    if let Some(first) = tx.claim_file_sha(file_id, &sha256, bytes).await? {
                        drop(tx);
                        self.discard(file_id).await?;
                        return Ok(Some(first));
                    }
                }
                tx.refuse_repeated_rows(file_id, REPEATED_CODE, DEVICE_REPEATED_CODE)
                    .await?;
                let header = serde_json::to_string(&header).expect("strings serialise");
                tx.set_file_state(file_id, FileState::Staged, Some(&header))
                    .await?;
                tx.commit().await?;
                Ok(None)
            }
        }
    }

    /// Refuses an upload as a whole: its staged rows deleted, its error kept.
    async fn refuse(
        &self,
        file_id: i64,
        error: &FileError,
        actor: &Actor,
    ) -> Result<(), IntakeError> {
        let services = self.0;
        let mut tx = services.store.begin().await?;
        let at = services.clock.now();
        tx.delete_staged_rows(file_id).await?;
        tx.delete_upload(file_id).await?;
        let message = error.to_string();
        tx.finish_file(
            file_id,
            &RowCounts::default(),
            Some((error.code(), &message)),
            at,
        )
        .await?;
        let signer = services.signer(&mut tx).await?;
        let event = events::trade_in_file_done(
            actor,
            file_id,
            None,
            &RowCounts::default(),
            Some(error.code()),
        );
        tx.append(&signer, &event, at).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Applies a staged upload's rows a page per transaction, then ends it: counts, audit,
    /// the posting queued. An upload already ended is only reported.
    async fn finish_import(&self, file_id: i64, actor: &Actor) -> Result<FileReport, IntakeError> {
        let services = self.0;
        let file = {
            let mut tx = services.store.read().await?;
            tx.trade_in_file(file_id)
                .await?
                .ok_or(IntakeError::FileNotFound(file_id))?
        };
        if file.state == FileState::Staged {
            let positions = file
                .header
                .as_deref()
                .map(Positions::of)
                .transpose()
                .map_err(|_| StoreError::corrupt("a staged upload's header"))?
                .ok_or_else(|| StoreError::corrupt("a staged upload without a header"))?;
            let mut after = 0;
            while let Some(last) = rerun!(self.apply_page(file_id, after, &positions, actor))? {
                after = last;
            }
            rerun!(self.end_import(file_id, actor))?;
        }
        let mut tx = services.store.read().await?;
        let file = tx
            .trade_in_file(file_id)
            .await?
            .ok_or(IntakeError::FileNotFound(file_id))?;
        Ok(FileReport {
            file,
            repeated: false,
        })
    }

    /// Applies the next page of an upload's rows after line `after`; the last line it applied,
    /// if any. The cursor keeps each page's read from walking the rows applied before it.
    async fn apply_page(
        &self,
        file_id: i64,
        after: i64,
        positions: &Positions,
        actor: &Actor,
    ) -> Result<Option<i64>, IntakeError> {
        let services = self.0;
        let mut tx = services.store.begin().await?;
        let rows = tx
            .unapplied_rows(
                file_id,
                after,
                PageRows::new(APPLY_ROWS_PER_TX).expect("within the page limit"),
            )
            .await?;
        if rows.is_empty() {
            return Ok(None);
        }
        let digester = self.digester(&mut tx).await?;
        let signer = services.signer(&mut tx).await?;
        let at = services.clock.now();
        for row in &rows {
            let cells = row_cells(row, Some(positions))?;
            let applied = match Valuation::parse(&positions.text(&cells)) {
                Ok(valuation) => {
                    self.apply(&mut tx, &valuation, &digester, actor, Some(file_id), at)
                        .await?
                }
                Err(e) => Err(RowRefusal::Field(e)),
            };
            match applied {
                Ok((outcome, _, event)) => {
                    if let Some(event) = event {
                        tx.append(&signer, &event, at).await?;
                    }
                    tx.set_row_outcome(file_id, row.line, outcome, None).await?;
                }
                Err(refusal) => {
                    let reason = refusal.to_string();
                    tx.set_row_outcome(
                        file_id,
                        row.line,
                        RowOutcome::Rejected,
                        Some((refusal.code(), &reason)),
                    )
                    .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(rows.last().map(|r| r.line))
    }

    /// Ends an applied upload: its counts, its audit record, its body gone, the posting queued.
    async fn end_import(&self, file_id: i64, actor: &Actor) -> Result<(), IntakeError> {
        let services = self.0;
        let mut tx = services.store.begin().await?;
        let Some(file) = tx.trade_in_file(file_id).await? else {
            return Err(IntakeError::FileNotFound(file_id));
        };
        if file.state != FileState::Staged {
            return Ok(());
        }
        let at = services.clock.now();
        let counts = tx.row_counts(file_id).await?;
        tx.finish_file(file_id, &counts, None, at).await?;
        tx.delete_upload(file_id).await?;
        let signer = services.signer(&mut tx).await?;
        let event =
            events::trade_in_file_done(actor, file_id, file.sha256.as_deref(), &counts, None);
        tx.append(&signer, &event, at).await?;
        if counts.accepted + counts.revalued > 0 {
            let job = PostTradeIns {
                file_id: Some(file_id),
            };
            tx.insert_outbox(&job.outbox(), at).await?;
        }
        tx.commit().await.map_err(IntakeError::from)
    }

    /// Takes in up to [`ROWS_PER_REQUEST_MAX`] valuations at once (the API's rows): each gets
    /// its result; the good ones are recorded together and their posting queued.
    pub async fn submit(
        &self,
        forms: &[ValuationForm],
        actor: &Actor,
    ) -> Result<Vec<RowReport>, IntakeError> {
        if forms.is_empty() || forms.len() > ROWS_PER_REQUEST_MAX {
            return Err(IntakeError::TooManyRows);
        }
        rerun!(self.submit_once(forms, actor))
    }

    async fn submit_once(
        &self,
        forms: &[ValuationForm],
        actor: &Actor,
    ) -> Result<Vec<RowReport>, IntakeError> {
        let services = self.0;
        let mut tx = services.store.begin().await?;
        let at = services.clock.now();
        let digester = self.digester(&mut tx).await?;
        let signer = services.signer(&mut tx).await?;
        let mut keys = std::collections::HashMap::new();
        let mut devices = std::collections::HashMap::new();
        let mut reports = Vec::with_capacity(forms.len());
        let mut queued = false;
        for (row, form) in (1i64..).zip(forms) {
            let trade_in_id = TradeInId::parse(&form.trade_in_id)
                .ok()
                .map(|t| t.as_str().to_string());
            let applied = match Valuation::parse(&form.text()) {
                Err(e) => Err(RowRefusal::Field(e)),
                Ok(v) => {
                    let key = (v.warehouse.clone(), v.trade_in.clone());
                    let device = digester.digest(&v.device).1;
                    if let Some(&first) = keys.get(&key) {
                        Err(RowRefusal::Repeated(first))
                    } else if let Some(&first) = devices.get(&device) {
                        Err(RowRefusal::DeviceRepeated(first))
                    } else {
                        keys.insert(key, row);
                        devices.insert(device, row);
                        self.apply(&mut tx, &v, &digester, actor, None, at).await?
                    }
                }
            };
            reports.push(match applied {
                Ok((outcome, id, event)) => {
                    if let Some(event) = event {
                        tx.append(&signer, &event, at).await?;
                        queued = true;
                    }
                    RowReport {
                        row,
                        trade_in_id,
                        outcome,
                        id: Some(id),
                        code: None,
                        reason: None,
                    }
                }
                Err(refusal) => RowReport {
                    row,
                    trade_in_id,
                    outcome: RowOutcome::Rejected,
                    id: None,
                    code: Some(refusal.code().to_string()),
                    reason: Some(refusal.to_string()),
                },
            });
        }
        if queued {
            tx.insert_outbox(&PostTradeIns::default().outbox(), at)
                .await?;
        }
        tx.commit().await?;
        Ok(reports)
    }

    /// Applies one valuation inside `tx`: its outcome, the valuation's id and the audit event
    /// to append (for a new or revised valuation), or its refusal.
    async fn apply(
        &self,
        tx: &mut S::Tx,
        v: &Valuation,
        digester: &DeviceDigester,
        actor: &Actor,
        file_id: Option<i64>,
        at: DateTime<Utc>,
    ) -> Result<Result<(RowOutcome, i64, Option<crate::audit::AuditEvent>), RowRefusal>, IntakeError>
    {
        // Checked here, not left to the posting: a credit or claw-back over the ceiling would
        // fail its posting run every time, and every valuation queued beside it with it.
        let max = crate::domain::max_transfer(v.value.currency());
        if v.value.minor() > max.minor() {
            return Ok(Err(RowRefusal::TooLarge(max)));
        }
        let Some(account) = tx.account(v.account).await? else {
            return Ok(Err(RowRefusal::AccountNotFound(v.account)));
        };
        if account.currency != v.value.currency() {
            return Ok(Err(RowRefusal::CurrencyMismatch {
                account: v.account,
                held: account.currency,
                given: v.value.currency(),
            }));
        }
        if let Some(region) = &v.region
            && *region != account.region
        {
            return Ok(Err(RowRefusal::RegionMismatch {
                account: v.account,
                held: account.region.to_string(),
                given: region.to_string(),
            }));
        }
        let (device_key_id, device_digest) = digester.digest(&v.device);
        let new = NewTradeIn {
            warehouse_id: v.warehouse.as_str(),
            trade_in_ref: v.trade_in.as_str(),
            account_id: v.account,
            value: v.value,
            grade: v.grade,
            assessed_at: v.assessed_at,
            device_key_id,
            device_digest,
            device_model: v.model.as_str(),
            device_id: v.device.as_str(),
            submitted_by: actor.principal(),
            file_id,
            at,
        };
        // Under one lookup key the two unique indexes ask what the two lookups below ask (is
        // the trade-in recorded? is the device, not rejected?): insert first, look on conflict.
        if !v.revaluation
            && digester.others.is_empty()
            && let Some(id) = tx.insert_trade_in(&new).await?
        {
            let event = events::trade_in_valued(actor, id, v.account, v.value, 1, file_id);
            return Ok(Ok((RowOutcome::Accepted, id, Some(event))));
        }
        let trade_in = v.trade_in.to_string();
        let Some(earlier) = tx
            .trade_in_by_ref(v.warehouse.as_str(), v.trade_in.as_str())
            .await?
        else {
            if v.revaluation {
                return Ok(Err(RowRefusal::NothingToRevalue(trade_in)));
            }
            if let Some(other) = tx.trade_in_by_device(&digester.all(&v.device)).await? {
                return Ok(Err(RowRefusal::DeviceTaken(other.trade_in_ref)));
            }
            let Some(id) = tx.insert_trade_in(&new).await? else {
                // The same trade-in or device was recorded meanwhile: run again to answer as
                // that record says.
                return Err(StoreError::Moved("a trade-in").into());
            };
            let event = events::trade_in_valued(actor, id, v.account, v.value, 1, file_id);
            return Ok(Ok((RowOutcome::Accepted, id, Some(event))));
        };
        let same_device = digester
            .under(earlier.device_key_id, &v.device)
            .is_some_and(|d| d == earlier.device_digest);
        // What no valuation may change, then what only a revaluation may.
        let fixed = [
            ("account_id", earlier.account_id != v.account),
            ("currency", earlier.value.currency() != v.value.currency()),
            ("device_id", !same_device),
        ];
        let revisable = [
            ("value", earlier.value != v.value),
            ("grade", earlier.grade != v.grade),
            ("assessed_at", earlier.assessed_at != v.assessed_at),
            (
                "device_model",
                earlier
                    .device_model
                    .as_deref()
                    .is_some_and(|m| m != v.model.as_str()),
            ),
        ];
        let changed = fixed.iter().chain(&revisable).find(|(_, differs)| *differs);
        let Some(&(field, _)) = changed else {
            return Ok(Ok((RowOutcome::Unchanged, earlier.id, None)));
        };
        if !v.revaluation {
            return Ok(Err(RowRefusal::Conflict(trade_in, field)));
        }
        if let Some((field, _)) = fixed.iter().find(|(_, differs)| *differs) {
            return Ok(Err(RowRefusal::RevaluationConflict(trade_in, field)));
        }
        if earlier.state == TradeInState::Rejected {
            return Ok(Err(RowRefusal::WasRejected(trade_in)));
        }
        if !tx
            .revalue_trade_in(earlier.id, earlier.revision, &new)
            .await?
        {
            return Err(StoreError::Moved("a trade-in").into());
        }
        let event = events::trade_in_valued(
            actor,
            earlier.id,
            v.account,
            v.value,
            earlier.revision + 1,
            file_id,
        );
        Ok(Ok((RowOutcome::Revalued, earlier.id, Some(event))))
    }

    /// Posts every queued valuation, [`POST_PER_TX`] per transaction: the posting job's body.
    /// Several runs at once post each valuation once.
    pub async fn post_queued(&self, actor: &Actor) -> Result<PostRun, IntakeError> {
        let mut run = PostRun::default();
        let mut after = 0;
        loop {
            let ids = {
                let mut tx = self.0.store.read().await?;
                tx.queued_trade_ins(
                    after,
                    PageRows::new(POST_PAGE).expect("within the page limit"),
                )
                .await?
            };
            let Some(&last) = ids.last() else {
                return Ok(run);
            };
            for chunk in ids.chunks(POST_PER_TX) {
                let done = rerun!(self.post_chunk(chunk, actor))?;
                run.posted += done.posted;
                run.held += done.held;
            }
            after = last;
        }
    }

    async fn post_chunk(&self, ids: &[i64], actor: &Actor) -> Result<PostRun, IntakeError> {
        let services = self.0;
        let mut tx = services.store.begin().await?;
        let at = services.clock.now();
        let signer = services.signer(&mut tx).await?;
        let mut run = PostRun::default();
        for &id in ids {
            // Another worker posted it meanwhile, or finance moved it: not ours.
            let Some(row) = tx.take_trade_in(id, TradeInState::Queued).await? else {
                continue;
            };
            let (posted, events) = self.post(&mut tx, &row, None, actor, at).await?;
            for event in events {
                tx.append(&signer, &event, at).await?;
            }
            match posted {
                Posted::Posted { .. } => run.posted += 1,
                Posted::Held { .. } => run.held += 1,
            }
        }
        tx.commit().await?;
        Ok(run)
    }

    /// Posts the difference between a taken valuation's value and what it has credited, net
    /// of what is owed; holds a credit past the daily amount or the price band for finance
    /// unless `approver` approves it. Returns what it did and the audit events to append.
    async fn post(
        &self,
        tx: &mut S::Tx,
        row: &TradeInRow,
        approver: Option<&Actor>,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<(Posted, Vec<crate::audit::AuditEvent>), IntakeError> {
        let services = self.0;
        let currency = row.value.currency();
        let account = tx
            .account(row.account_id)
            .await?
            .ok_or_else(|| StoreError::corrupt("a trade-in's account"))?;
        let delta = row.value.minor() - (row.credited_minor - row.owed_minor);
        let settled = |state, held_for, credited_minor, owed_minor| Settled {
            state,
            held_for,
            credited_minor,
            owed_minor,
            decided_by: approver.map(Actor::principal),
            reason: None,
            at,
        };
        let hold = |held_for: HeldFor| {
            (
                Posted::Held { held_for },
                vec![events::trade_in_held(actor, row.id, held_for.as_str())],
            )
        };
        if delta != 0 && account.frozen_reason.is_some() {
            if approver.is_some() {
                return Err(IntakeError::AccountFrozen(row.account_id));
            }
            let keep = settled(
                TradeInState::Held,
                Some(HeldFor::AccountFrozen),
                row.credited_minor,
                row.owed_minor,
            );
            tx.settle_trade_in(row.id, &keep).await?;
            return Ok(hold(HeldFor::AccountFrozen));
        }
        let reference = Some(row.trade_in_ref.clone());
        let mut events = Vec::new();
        let (transfer_id, amount, credited, owed) = if delta > 0 {
            let settles = row.owed_minor.min(delta);
            let credit = delta - settles;
            let mut transfer_id = None;
            if credit > 0 {
                if approver.is_none() {
                    let model_key = row
                        .device_model
                        .as_deref()
                        .map(|m| crate::domain::DeviceModel::parse(m).map(|m| m.band_key()));
                    if let Some(Ok(key)) = model_key
                        && let Some(max) = tx.band(&key, currency.code()).await?
                        && row.value.minor() > max
                    {
                        let keep = settled(
                            TradeInState::Held,
                            Some(HeldFor::PriceBand),
                            row.credited_minor,
                            row.owed_minor,
                        );
                        tx.settle_trade_in(row.id, &keep).await?;
                        return Ok(hold(HeldFor::PriceBand));
                    }
                }
                let day = services.business_zone.day_of(at).to_string();
                let limit = approver
                    .is_none()
                    .then(|| minor_of(services.tradein_daily.get(), currency));
                if !tx
                    .add_day_credit(&row.warehouse_id, &day, currency.code(), credit, limit)
                    .await?
                {
                    let keep = settled(
                        TradeInState::Held,
                        Some(HeldFor::DailyAmount),
                        row.credited_minor,
                        row.owed_minor,
                    );
                    tx.settle_trade_in(row.id, &keep).await?;
                    return Ok(hold(HeldFor::DailyAmount));
                }
                let amount = Amount::new(Money::from_minor(credit, currency))?;
                let Some(balance_after) = tx.move_balance(row.account_id, amount.money()).await?
                else {
                    // Frozen since it was read: run again to hold it.
                    return Err(StoreError::Moved("an account").into());
                };
                let posting = Posting::transfer(
                    TransferKind::TradeIn,
                    LedgerAccount::TradeIn,
                    LedgerAccount::Customer(row.account_id),
                    amount,
                    reference,
                    row.assessed_at,
                );
                let id = tx
                    .insert_transfer(&posting, &[None, Some(balance_after)], at)
                    .await?;
                tx.insert_trade_in_posting(id, row.id, row.revision, 0)
                    .await?;
                events.push(events::transfer_posted(
                    actor,
                    TransferKind::TradeIn,
                    id,
                    row.account_id,
                    amount.money(),
                ));
                transfer_id = Some(id);
            }
            (
                transfer_id,
                credit,
                row.credited_minor + credit,
                row.owed_minor - settles,
            )
        } else if delta < 0 {
            let need = -delta;
            let take = account.balance.minor().min(need);
            let left = need - take;
            let mut transfer_id = None;
            if take > 0 {
                let amount = Amount::new(Money::from_minor(take, currency))?;
                let debit = Money::from_minor(-take, currency);
                let Some(balance_after) = tx.move_balance(row.account_id, debit).await? else {
                    // The balance moved since it was read: run again with what it is now.
                    return Err(StoreError::Moved("an account's balance").into());
                };
                let posting = Posting::transfer(
                    TransferKind::Clawback,
                    LedgerAccount::Customer(row.account_id),
                    LedgerAccount::TradeIn,
                    amount,
                    reference,
                    row.assessed_at,
                );
                let id = tx
                    .insert_transfer(&posting, &[Some(balance_after), None], at)
                    .await?;
                tx.insert_trade_in_posting(id, row.id, row.revision, left)
                    .await?;
                events.push(events::transfer_posted(
                    actor,
                    TransferKind::Clawback,
                    id,
                    row.account_id,
                    debit,
                ));
                transfer_id = Some(id);
            }
            (
                transfer_id,
                -take,
                row.credited_minor - take,
                row.owed_minor + left,
            )
        } else {
            (None, 0, row.credited_minor, row.owed_minor)
        };
        let done = settled(TradeInState::Posted, None, credited, owed);
        tx.settle_trade_in(row.id, &done).await?;
        Ok((
            Posted::Posted {
                transfer_id,
                amount: Money::from_minor(amount, currency),
                owed: Money::from_minor(owed, currency),
            },
            events,
        ))
    }

    /// Approves a held valuation and posts it past the daily amount and the price band. The
    /// approver must not be its submitter; approving one already approved is a no-op.
    pub async fn approve(&self, id: i64, actor: &Actor) -> Result<Approved, IntakeError> {
        rerun!(self.approve_once(id, actor))
    }

    async fn approve_once(&self, id: i64, actor: &Actor) -> Result<Approved, IntakeError> {
        let services = self.0;
        let mut tx = services.store.begin().await?;
        let at = services.clock.now();
        let Some(row) = tx.take_trade_in(id, TradeInState::Held).await? else {
            let row = tx.trade_in(id).await?.ok_or(IntakeError::NotFound(id))?;
            return match row.state {
                TradeInState::Posted if row.decided_by.is_some() => Ok(Approved {
                    posted: None,
                    replayed: true,
                }),
                TradeInState::Rejected => Err(IntakeError::WasRejected(id)),
                _ => Err(IntakeError::NotHeld(id)),
            };
        };
        if row.submitted_by == actor.principal() {
            return Err(IntakeError::SelfApproval(id));
        }
        let (posted, events) = self.post(&mut tx, &row, Some(actor), actor, at).await?;
        let signer = services.signer(&mut tx).await?;
        tx.append(
            &signer,
            &events::trade_in_decided(actor, id, true, None),
            at,
        )
        .await?;
        for event in events {
            tx.append(&signer, &event, at).await?;
        }
        tx.commit().await?;
        Ok(Approved {
            posted: Some(posted),
            replayed: false,
        })
    }

    /// Rejects a held valuation with a reason code: nothing is posted, and it cannot be
    /// revalued. The decider must not be its submitter.
    pub async fn reject(
        &self,
        id: i64,
        reason: &str,
        actor: &Actor,
    ) -> Result<TradeInRow, IntakeError> {
        let reason = Name::parse(reason)?;
        rerun!(self.reject_once(id, &reason, actor))
    }

    async fn reject_once(
        &self,
        id: i64,
        reason: &Name,
        actor: &Actor,
    ) -> Result<TradeInRow, IntakeError> {
        let services = self.0;
        let mut tx = services.store.begin().await?;
        let at = services.clock.now();
        let Some(row) = tx.take_trade_in(id, TradeInState::Held).await? else {
            let row = tx.trade_in(id).await?.ok_or(IntakeError::NotFound(id))?;
            return match row.state {
                TradeInState::Rejected => Err(IntakeError::WasRejected(id)),
                _ => Err(IntakeError::NotHeld(id)),
            };
        };
        if row.submitted_by == actor.principal() {
            return Err(IntakeError::SelfApproval(id));
        }
        let settled = Settled {
            state: TradeInState::Rejected,
            held_for: None,
            credited_minor: row.credited_minor,
            owed_minor: row.owed_minor,
            decided_by: Some(actor.principal()),
            reason: Some(reason.as_str()),
            at,
        };
        tx.settle_trade_in(id, &settled).await?;
        let signer = services.signer(&mut tx).await?;
        let event = events::trade_in_decided(actor, id, false, Some(reason.as_str()));
        tx.append(&signer, &event, at).await?;
        let row = tx.trade_in(id).await?.ok_or(IntakeError::NotFound(id))?;
        tx.commit().await?;
        Ok(row)
    }

    /// One valuation.
    pub async fn show(&self, id: i64) -> Result<TradeInRow, IntakeError> {
        let mut tx = self.0.store.read().await?;
        tx.trade_in(id).await?.ok_or(IntakeError::NotFound(id))
    }

    /// Valuations, newest first, in `state` where given, before id `before`.
    pub async fn list(
        &self,
        state: Option<TradeInState>,
        before: Option<i64>,
        rows: PageRows,
    ) -> Result<Vec<TradeInRow>, IntakeError> {
        let mut tx = self.0.store.read().await?;
        Ok(tx.trade_ins(state, before, rows).await?)
    }

    /// One upload's report.
    pub async fn file(&self, file_id: i64) -> Result<FileReport, IntakeError> {
        let mut tx = self.0.store.read().await?;
        let file = tx
            .trade_in_file(file_id)
            .await?
            .ok_or(IntakeError::FileNotFound(file_id))?;
        Ok(FileReport {
            file,
            repeated: false,
        })
    }

    /// One page of an upload's row results, after line `after`.
    pub async fn file_rows(
        &self,
        file_id: i64,
        after: i64,
        rows: PageRows,
    ) -> Result<Vec<RowReport>, IntakeError> {
        let mut tx = self.0.store.read().await?;
        let file = tx
            .trade_in_file(file_id)
            .await?
            .ok_or(IntakeError::FileNotFound(file_id))?;
        let positions = file.header.as_deref().and_then(|h| Positions::of(h).ok());
        let rows = tx.file_rows(file_id, after, rows, false).await?;
        rows.iter()
            .map(|row| {
                let cells = row_cells(row, positions.as_ref())?;
                let trade_in_id = positions
                    .as_ref()
                    .and_then(|p| TradeInId::parse(p.text(&cells).trade_in_id).ok())
                    .map(|t| t.as_str().to_string());
                Ok(RowReport {
                    row: row.line,
                    trade_in_id,
                    outcome: row.outcome.unwrap_or(RowOutcome::Rejected),
                    id: None,
                    code: row.code.clone(),
                    reason: row.reason.clone(),
                })
            })
            .collect()
    }

    /// One page of an upload's refused rows after line `after`, each as sent with its reason,
    /// and the upload's header.
    pub async fn rejects_page(
        &self,
        file_id: i64,
        after: i64,
        rows: PageRows,
    ) -> Result<RejectsPage, IntakeError> {
        let mut tx = self.0.store.read().await?;
        let file = tx
            .trade_in_file(file_id)
            .await?
            .ok_or(IntakeError::FileNotFound(file_id))?;
        let header = file.header.unwrap_or_default();
        let positions = Positions::of(&header).ok();
        let stored = tx.file_rows(file_id, after, rows, true).await?;
        let next = (stored.len() == rows.get() as usize)
            .then(|| stored.last().map(|r| r.line))
            .flatten();
        let rows = stored
            .iter()
            .map(|row| {
                let reason = match (&row.code, &row.reason) {
                    (Some(code), Some(reason)) => format!("{code}: {reason}"),
                    _ => String::new(),
                };
                Ok(Reject {
                    line: u64::try_from(row.line).unwrap_or_default(),
                    reason,
                    cells: row_cells(row, positions.as_ref())?,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(RejectsPage { header, rows, next })
    }

    /// Writes an upload's rejects file to `out`: its header with `line` and `reason` first,
    /// then each refused row as sent, every cell guarded against spreadsheet formulas. Returns
    /// how many rows it wrote.
    pub async fn write_rejects<W: std::io::Write>(
        &self,
        file_id: i64,
        out: W,
    ) -> Result<(W, u64), IntakeError> {
        let io = |e: std::io::Error| IntakeError::Io(e.to_string());
        let mut page = self.rejects_page(file_id, 0, PageRows::MAX).await?;
        let mut writer =
            tradein_csv::RejectsWriter::new(out, &page.header).map_err(|e| io(e.into()))?;
        let mut written = 0;
        loop {
            for reject in &page.rows {
                writer
                    .reject(
                        reject.line,
                        &reject.reason,
                        reject.cells.iter().map(String::as_str),
                    )
                    .map_err(|e| io(e.into()))?;
                written += 1;
            }
            let Some(after) = page.next else {
                break;
            };
            page = self.rejects_page(file_id, after, PageRows::MAX).await?;
        }
        Ok((writer.finish().map_err(io)?, written))
    }

    /// Sets the price band above which a model's credits in `currency` wait for finance.
    pub async fn set_band(
        &self,
        model: &str,
        max: &str,
        currency: &str,
        actor: &Actor,
    ) -> Result<Band, IntakeError> {
        let model = crate::domain::DeviceModel::parse(model).map_err(|error| FieldError {
            field: "device_model",
            error,
        })?;
        let max = Money::parse(max, Currency::parse(currency)?)?;
        if max.is_negative() {
            return Err(IntakeError::Invalid(LedgerValueError::NotPositive));
        }
        let band = Band {
            model_key: model.band_key(),
            max,
        };
        rerun!(self.set_band_once(&band, actor))?;
        Ok(band)
    }

    async fn set_band_once(&self, band: &Band, actor: &Actor) -> Result<(), IntakeError> {
        let services = self.0;
        let mut tx = services.store.begin().await?;
        let at = services.clock.now();
        tx.set_band(band).await?;
        let signer = services.signer(&mut tx).await?;
        tx.append(
            &signer,
            &events::trade_in_band_set(actor, &band.model_key, band.max),
            at,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every price band.
    pub async fn bands(&self) -> Result<Vec<Band>, IntakeError> {
        let mut tx = self.0.store.read().await?;
        Ok(tx.bands().await?)
    }

    /// Deletes uploads (with their bodies, staged rows and rejects) older than
    /// [`FILE_RETENTION_DAYS`]; returns how many.
    pub async fn purge_files(&self) -> Result<u64, IntakeError> {
        let before = self.0.clock.now() - chrono::TimeDelta::days(FILE_RETENTION_DAYS);
        let mut purged = 0;
        loop {
            let mut tx = self.0.store.begin().await?;
            let n = tx
                .purge_trade_in_files(
                    before.timestamp_millis(),
                    PageRows::new(PURGE_FILES_PER_TX).expect("within the page limit"),
                )
                .await?;
            tx.commit().await?;
            purged += n;
            if n < PURGE_FILES_PER_TX {
                return Ok(purged);
            }
        }
    }
}
