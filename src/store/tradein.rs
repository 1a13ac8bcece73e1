//! The trade-in repository: uploads and their staged rows, valuations, their postings, the
//! per-day credit counters and finance's price bands.

use std::future::Future;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::StoreResult;
use crate::domain::{
    AccountId, Grade, HeldFor, Money, PageRows, RowCounts, RowOutcome, TradeInState, TransferId,
};
use crate::keys::KeyId;

/// Where an upload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileState {
    /// An API body still arriving.
    Receiving,
    /// Whole and stored, waiting to be read.
    Received,
    /// Every row read, checked and staged; being applied.
    Staged,
    /// Every row has its result.
    Imported,
    /// Refused as a whole; nothing of it was applied.
    Refused,
}

impl FileState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            FileState::Receiving => "receiving",
            FileState::Received => "received",
            FileState::Staged => "staged",
            FileState::Imported => "imported",
            FileState::Refused => "refused",
        }
    }

    /// The state a stored name means.
    pub fn parse(text: &str) -> Option<FileState> {
        [
            FileState::Receiving,
            FileState::Received,
            FileState::Staged,
            FileState::Imported,
            FileState::Refused,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// An upload as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileRow {
    /// Its id.
    pub file_id: i64,
    /// The hex SHA-256 of its bytes, once known.
    pub sha256: Option<String>,
    /// The file's name as given, where one was.
    pub file_name: Option<String>,
    /// Who sent it.
    pub submitted_by: String,
    /// Where it is.
    pub state: FileState,
    /// Its size.
    pub bytes: i64,
    /// Its header, in its own order, once read.
    pub header: Option<Vec<String>>,
    /// Its rows' results so far.
    pub rows: RowCounts,
    /// Why it was refused as a whole: a stable code and a sentence.
    pub error: Option<(String, String)>,
    /// When it arrived.
    pub received_at: DateTime<Utc>,
    /// When every row had its result, or it was refused.
    pub finished_at: Option<DateTime<Utc>>,
}

/// A row of an upload, as staged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedRow {
    /// The line it starts on.
    pub line: i64,
    /// Its cells in the header's order (JSON), the device cell blank.
    pub cells: String,
    /// The device cell.
    pub device: String,
    /// The account, where the account cell parsed.
    pub account_id: Option<i64>,
    /// The warehouse and trade-in id, where both parsed.
    pub key: Option<(String, String)>,
    /// The device's digest, where the device parsed.
    pub device_digest: Option<[u8; 32]>,
    /// The refusal (code, reason), for a row that did not parse.
    pub refused: Option<(&'static str, String)>,
}

/// A staged row with its result, as a report reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowResult {
    /// The line it starts on.
    pub line: i64,
    /// Its cells (JSON), the device cell blank.
    pub cells: String,
    /// The device cell; `None` once the account's personal data is erased.
    pub device: Option<String>,
    /// The trade-in id, where it parsed.
    pub trade_in_ref: Option<String>,
    /// What it did; `None` while not yet applied.
    pub outcome: Option<RowOutcome>,
    /// Its refusal's code.
    pub code: Option<String>,
    /// Its refusal's reason.
    pub reason: Option<String>,
}

/// A valuation as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TradeInRow {
    /// tender's id for it.
    pub id: i64,
    /// The warehouse.
    pub warehouse_id: String,
    /// The warehouse's trade-in id.
    pub trade_in_ref: String,
    /// The account credited.
    pub account_id: AccountId,
    /// The assessed value in force.
    pub value: Money,
    /// What has been posted to the account, net.
    pub credited_minor: i64,
    /// What a claw-back could not take back.
    pub owed_minor: i64,
    /// The grade.
    pub grade: Grade,
    /// When the warehouse assessed it.
    pub assessed_at: DateTime<Utc>,
    /// The lookup key its device digest is made under.
    #[serde(skip)]
    pub device_key_id: KeyId,
    /// The device digest.
    #[serde(skip)]
    pub device_digest: [u8; 32],
    /// The model; `None` once erased.
    pub device_model: Option<String>,
    /// The serial or IMEI; `None` once erased.
    pub device_id: Option<String>,
    /// Where it is.
    pub state: TradeInState,
    /// Why it waits, while held.
    pub held_for: Option<HeldFor>,
    /// Finance's reason, when rejected.
    pub reason: Option<String>,
    /// Who sent its latest valuation.
    pub submitted_by: String,
    /// Who approved or rejected it.
    pub decided_by: Option<String>,
    /// The upload its latest valuation came in.
    pub file_id: Option<i64>,
    /// How many valuations it has had.
    pub revision: i32,
    /// When it was first recorded.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// A valuation to record: new, or a revaluation of `TradeInRow::id`.
#[derive(Debug, Clone)]
pub struct NewTradeIn<'a> {
    /// The warehouse.
    pub warehouse_id: &'a str,
    /// The warehouse's trade-in id.
    pub trade_in_ref: &'a str,
    /// The account.
    pub account_id: AccountId,
    /// The assessed value.
    pub value: Money,
    /// The grade.
    pub grade: Grade,
    /// When it was assessed.
    pub assessed_at: DateTime<Utc>,
    /// The lookup key the digest is made under.
    pub device_key_id: KeyId,
    /// The device digest.
    pub device_digest: [u8; 32],
    /// The model.
    pub device_model: &'a str,
    /// The serial or IMEI.
    pub device_id: &'a str,
    /// Who sent it.
    pub submitted_by: &'a str,
    /// The upload it came in.
    pub file_id: Option<i64>,
    /// Now.
    pub at: DateTime<Utc>,
}

/// How a valuation's posting left it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settled<'a> {
    /// Its new state.
    pub state: TradeInState,
    /// Why it waits, when held.
    pub held_for: Option<HeldFor>,
    /// What is now posted to the account, net.
    pub credited_minor: i64,
    /// What is now owed.
    pub owed_minor: i64,
    /// Who decided it, for an approval or a rejection.
    pub decided_by: Option<&'a str>,
    /// Finance's reason, for a rejection.
    pub reason: Option<&'a str>,
    /// Now.
    pub at: DateTime<Utc>,
}

/// A price band finance set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Band {
    /// The model's band key.
    pub model_key: String,
    /// The most a credit for the model may be before it waits for approval.
    pub max: Money,
}

/// Uploads, valuations and their postings.
pub trait TradeInRepo {
    /// Records a new upload in `state` (receiving or received); returns its id.
    fn insert_trade_in_file(
        &mut self,
        file_name: Option<&str>,
        submitted_by: &str,
        state: FileState,
        at: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<i64>> + Send;

    /// Claims `sha256` for upload `file_id` and records its size; `Some(first)` (nothing
    /// changed) when upload `first` holds it already.
    fn claim_file_sha(
        &mut self,
        file_id: i64,
        sha256: &str,
        bytes: i64,
    ) -> impl Future<Output = StoreResult<Option<i64>>> + Send;

    /// One upload.
    fn trade_in_file(
        &mut self,
        file_id: i64,
    ) -> impl Future<Output = StoreResult<Option<FileRow>>> + Send;

    /// Moves an upload to `state`, with its header where read.
    fn set_file_state(
        &mut self,
        file_id: i64,
        state: FileState,
        header: Option<&str>,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Ends an upload: imported with its counts, or refused with its error (and no rows).
    fn finish_file(
        &mut self,
        file_id: i64,
        counts: &RowCounts,
        error: Option<(&str, &str)>,
        at: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Deletes an upload and everything of it (a duplicate of an earlier one).
    fn delete_trade_in_file(
        &mut self,
        file_id: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Stores piece `piece` of an API upload's body.
    fn insert_upload_piece(
        &mut self,
        file_id: i64,
        piece: i32,
        body: &[u8],
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Piece `piece` of an upload's body; `None` past its end.
    fn upload_piece(
        &mut self,
        file_id: i64,
        piece: i32,
    ) -> impl Future<Output = StoreResult<Option<Vec<u8>>>> + Send;

    /// Deletes an upload's body.
    fn delete_upload(&mut self, file_id: i64) -> impl Future<Output = StoreResult<()>> + Send;

    /// Deletes an upload's staged rows (to stage it again from the start).
    fn delete_staged_rows(&mut self, file_id: i64) -> impl Future<Output = StoreResult<()>> + Send;

    /// Stages rows of an upload.
    fn insert_staged_rows(
        &mut self,
        file_id: i64,
        rows: &[StagedRow],
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Refuses each row whose trade-in (warehouse and id) or device an earlier row of the same
    /// upload names, with `code` and a reason naming the earlier line; returns how many.
    fn refuse_repeated_rows(
        &mut self,
        file_id: i64,
        trade_in_code: &str,
        device_code: &str,
    ) -> impl Future<Output = StoreResult<u64>> + Send;

    /// Staged rows with no result yet, after line `after`, in line order, at most `rows`.
    fn unapplied_rows(
        &mut self,
        file_id: i64,
        after: i64,
        rows: PageRows,
    ) -> impl Future<Output = StoreResult<Vec<RowResult>>> + Send;

    /// Records a row's result, unless it has one (another import of the same upload wrote it).
    fn set_row_outcome(
        &mut self,
        file_id: i64,
        line: i64,
        outcome: RowOutcome,
        refusal: Option<(&str, &str)>,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// How many of an upload's rows ended each way.
    fn row_counts(&mut self, file_id: i64) -> impl Future<Output = StoreResult<RowCounts>> + Send;

    /// An upload's rows after line `after`, in line order, at most `rows`; only the refused
    /// ones when `rejected_only`.
    fn file_rows(
        &mut self,
        file_id: i64,
        after: i64,
        rows: PageRows,
        rejected_only: bool,
    ) -> impl Future<Output = StoreResult<Vec<RowResult>>> + Send;

    /// The valuation a warehouse's trade-in id names.
    fn trade_in_by_ref(
        &mut self,
        warehouse_id: &str,
        trade_in_ref: &str,
    ) -> impl Future<Output = StoreResult<Option<TradeInRow>>> + Send;

    /// The valuation, not rejected, whose device has one of `digests` (each under its lookup
    /// key).
    fn trade_in_by_device(
        &mut self,
        digests: &[(KeyId, [u8; 32])],
    ) -> impl Future<Output = StoreResult<Option<TradeInRow>>> + Send;

    /// Records a new, queued valuation; `None` when its trade-in id or device was recorded
    /// meanwhile.
    fn insert_trade_in(
        &mut self,
        new: &NewTradeIn<'_>,
    ) -> impl Future<Output = StoreResult<Option<i64>>> + Send;

    /// Records a revaluation of `id` from revision `revision` and queues it; `false` when
    /// another revaluation came first.
    fn revalue_trade_in(
        &mut self,
        id: i64,
        revision: i32,
        new: &NewTradeIn<'_>,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// One valuation.
    fn trade_in(&mut self, id: i64)
    -> impl Future<Output = StoreResult<Option<TradeInRow>>> + Send;

    /// Takes valuation `id` for a posting while it is in `state`: on PostgreSQL its row is
    /// locked until the transaction ends. `None` when it is in another state.
    fn take_trade_in(
        &mut self,
        id: i64,
        state: TradeInState,
    ) -> impl Future<Output = StoreResult<Option<TradeInRow>>> + Send;

    /// Queued valuations' ids after `after`, oldest first, at most `rows`.
    fn queued_trade_ins(
        &mut self,
        after: i64,
        rows: PageRows,
    ) -> impl Future<Output = StoreResult<Vec<i64>>> + Send;

    /// Records how a posting, an approval or a rejection left valuation `id`.
    fn settle_trade_in(
        &mut self,
        id: i64,
        settled: &Settled<'_>,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Records a transfer a valuation's revision posted, with what it left owed.
    fn insert_trade_in_posting(
        &mut self,
        transfer: TransferId,
        id: i64,
        revision: i32,
        owed_minor: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Adds `minor` to a warehouse's credits of `day` in `currency`, in one conditional update
    /// that refuses (`false`) to take them past `limit_minor`; no limit when `None`.
    fn add_day_credit(
        &mut self,
        warehouse_id: &str,
        day: &str,
        currency: &str,
        minor: i64,
        limit_minor: Option<i64>,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// The price band of a model key in `currency`, in minor units.
    fn band(
        &mut self,
        model_key: &str,
        currency: &str,
    ) -> impl Future<Output = StoreResult<Option<i64>>> + Send;

    /// Sets a price band.
    fn set_band(&mut self, band: &Band) -> impl Future<Output = StoreResult<()>> + Send;

    /// Every price band, by model and currency.
    fn bands(&mut self) -> impl Future<Output = StoreResult<Vec<Band>>> + Send;

    /// Valuations in `state` (any when `None`), newest first, before `before`, at most `rows`.
    fn trade_ins(
        &mut self,
        state: Option<TradeInState>,
        before: Option<i64>,
        rows: PageRows,
    ) -> impl Future<Output = StoreResult<Vec<TradeInRow>>> + Send;

    /// Blanks the device model, serial and IMEI of every valuation and staged row of an
    /// account; returns how many rows changed.
    fn erase_trade_in_devices(
        &mut self,
        account: AccountId,
    ) -> impl Future<Output = StoreResult<u64>> + Send;

    /// Deletes up to `rows` uploads (with their bodies, rows and rejects) received before
    /// `before_ms`; returns how many.
    fn purge_trade_in_files(
        &mut self,
        before_ms: i64,
        rows: PageRows,
    ) -> impl Future<Output = StoreResult<u64>> + Send;
}
