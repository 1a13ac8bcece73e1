//! Issuance: retailers, batch requests, batch generation (the job's body) and printer file checks.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::audit::events;
use crate::codegen::{CodeDigest, CodeSource, Digester};
use crate::domain::{
    Batch, BatchError, BatchId, BatchRequest, BatchState, CardValue, Code, CodeError,
    CommissionRate, Currency, Money, MoneyError, NewRetailer, Region, RegionError, Retailer,
    RetailerError, RetailerName, Serial, SerialError,
};
use crate::export::{self, ExportError, PrinterFile};
use crate::jobs::{GenerateBatchJob, JobQueue, QueueError};
use crate::store::{ChunkCards, ChunkCommit, Store, StoreError};

/// Why an issuance operation failed.
#[derive(Debug, thiserror::Error)]
pub enum IssuanceError {
    /// A code was typed wrongly.
    #[error(transparent)]
    Code(#[from] CodeError),
    /// A serial was typed wrongly.
    #[error(transparent)]
    Serial(#[from] SerialError),
    /// An amount or currency was refused.
    #[error(transparent)]
    Money(#[from] MoneyError),
    /// A region was refused.
    #[error(transparent)]
    Region(#[from] RegionError),
    /// A retailer's name or commission was refused.
    #[error(transparent)]
    Retailer(#[from] RetailerError),
    /// A batch request broke a limit.
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// Neither a fixed value nor a complete range was given, or both were.
    #[error("give either a fixed value, or both a minimum and a maximum")]
    ValueChoice,
    /// The database refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The printer file could not be written.
    #[error(transparent)]
    Export(#[from] ExportError),
    /// The job queue refused the generation job.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The printer file does not match the database.
    #[error("printer file {file} does not match the database: {reason}")]
    ExportMismatch {
        /// The file checked.
        file: String,
        /// The first difference found (never a code).
        reason: String,
    },
}

impl IssuanceError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            IssuanceError::Code(e) => e.code(),
            IssuanceError::Serial(e) => e.code(),
            IssuanceError::Money(e) => e.code(),
            IssuanceError::Region(e) => e.code(),
            IssuanceError::Retailer(e) => e.code(),
            IssuanceError::Batch(e) => e.code(),
            IssuanceError::ValueChoice => "batch.value_choice",
            IssuanceError::Store(e) => e.code(),
            IssuanceError::Export(e) => e.code(),
            IssuanceError::Queue(e) => e.code(),
            IssuanceError::ExportMismatch { .. } => "export.mismatch",
        }
    }

    /// Whether trying again later may succeed (the job runner retries these).
    pub fn is_transient(&self) -> bool {
        match self {
            // LostLease: another run of the same batch holds it; if that run dies, a retry resumes.
            IssuanceError::Store(
                StoreError::Database(_) | StoreError::Export(_) | StoreError::LostLease(_),
            ) => true,
            IssuanceError::Export(ExportError::Busy(_) | ExportError::Io { .. }) => true,
            IssuanceError::Queue(_) => true,
            _ => false,
        }
    }
}

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

/// A batch request's outcome: the batch, and whether its job is queued yet.
#[derive(Debug, Clone, Serialize)]
pub struct Requested {
    /// The recorded batch.
    pub batch: Batch,
    /// `false` if queueing failed; the job runner queues it on its next start or sweep.
    pub enqueued: bool,
}

/// What `verify_export` found.
#[derive(Debug, Clone, Serialize)]
pub struct ExportCheck {
    /// The batch the file belongs to.
    pub batch_id: BatchId,
    /// Card rows checked, all matching.
    pub rows: u64,
    /// SHA-256 of the file.
    pub sha256: String,
}

/// Issuance use cases over a store.
#[derive(Debug, Clone)]
pub struct Issuance<S> {
    store: S,
    digester: Digester,
    export_dir: PathBuf,
    queue: JobQueue,
}

impl<S: Store> Issuance<S> {
    /// Use cases over `store`, digesting with `digester`, writing printer files to `export_dir`
    /// and queueing generation as `queue` says.
    pub fn new(store: S, digester: Digester, export_dir: PathBuf, queue: JobQueue) -> Self {
        Issuance {
            store,
            digester,
            export_dir,
            queue,
        }
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Adds a retailer.
    pub async fn add_retailer(
        &self,
        name: &str,
        commission_percent: &str,
        actor: &str,
    ) -> Result<Retailer, IssuanceError> {
        let new = NewRetailer {
            name: RetailerName::parse(name)?,
            commission: CommissionRate::parse_percent(commission_percent)?,
        };
        Ok(self.store.add_retailer(&new, actor).await?)
    }

    /// Parses a batch form into a request; nothing is written.
    pub async fn parse_batch(&self, form: &BatchForm) -> Result<BatchRequest, IssuanceError> {
        let name = RetailerName::parse(&form.retailer)?;
        let currency = Currency::parse(&form.currency)?;
        let value = match (&form.value, &form.min, &form.max) {
            (Some(value), None, None) => CardValue::fixed(Money::parse(value, currency)?)?,
            (None, Some(min), Some(max)) => {
                CardValue::variable(Money::parse(min, currency)?, Money::parse(max, currency)?)?
            }
            _ => return Err(IssuanceError::ValueChoice),
        };
        let region = Region::parse(&form.region)?;
        let retailer = self
            .store
            .retailer_by_name(&name)
            .await?
            .ok_or_else(|| StoreError::UnknownRetailer(name.to_string()))?;
        Ok(BatchRequest::new(
            retailer.id,
            form.count,
            value,
            region,
            form.expires_in_days,
        )?)
    }

    /// Records a batch request and queues its generation. If queueing fails the batch stays
    /// recorded, and the job runner queues it when it next sweeps.
    pub async fn request_batch(
        &self,
        form: &BatchForm,
        actor: &str,
    ) -> Result<Requested, IssuanceError> {
        let request = self.parse_batch(form).await?;
        let batch = self
            .store
            .create_batch(&request, self.digester.newest_key_id(), actor)
            .await?;
        let enqueued = match self.enqueue(batch.id).await {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(batch = %batch.id, %error, "batch recorded but not queued; the job runner will queue it");
                false
            }
        };
        Ok(Requested { batch, enqueued })
    }

    /// Queues generation of a batch (a duplicate is ignored) and notes it.
    pub async fn enqueue(&self, id: BatchId) -> Result<(), IssuanceError> {
        self.queue
            .push(&self.store.job_pool(), &GenerateBatchJob { batch_id: id.0 })
            .await?;
        self.store.mark_enqueued(id).await?;
        Ok(())
    }

    /// Queues every recorded batch whose job was never queued; returns how many.
    pub async fn enqueue_stranded(&self) -> Result<usize, IssuanceError> {
        let stranded = self.store.batches_awaiting_enqueue().await?;
        for id in &stranded {
            self.enqueue(*id).await?;
        }
        Ok(stranded.len())
    }

    /// Generates a batch: the generation job's body. Resumes where a killed run stopped, in
    /// chunks of `chunk_cards`, each committed with its progress; completes the batch when all
    /// cards are stored. Running it again on a completed batch changes nothing.
    pub async fn generate(
        &self,
        id: BatchId,
        source: &mut dyn CodeSource,
        chunk_cards: usize,
        actor: &str,
        progress: &(dyn Fn(&Batch) + Send + Sync),
    ) -> Result<Batch, IssuanceError> {
        let current = self
            .store
            .batch(id)
            .await?
            .ok_or(StoreError::UnknownBatch(id))?;
        if current.state == BatchState::Completed {
            return Ok(current);
        }
        let token = ulid::Ulid::generate().to_string();
        // Lock the file before claiming: a run still alive on this host keeps the lock, and this
        // run backs off instead of stealing its claim.
        let mut file = PrinterFile::lock(&self.export_dir, &current)?;
        let mut batch = self.store.claim_generation(id, &token).await?;
        file.cut_to(batch.export_bytes)?;
        let key_id = self.digester.newest_key_id();
        let mut index = batch.generated;
        progress(&batch);
        while index < batch.count {
            let n = (batch.count - index).min(chunk_cards as u64) as usize;
            let first = batch.serial_at(index);
            let mut codes: Vec<Code> = (0..n).map(|_| source.next_code()).collect();
            let redrawn = self
                .redraw_issued_under_older_keys(&mut codes, source)
                .await?;
            let mut cards = Chunk {
                codes,
                source: &mut *source,
                digester: &self.digester,
                file: &mut file,
                first,
            };
            let mut digests: Vec<CodeDigest> = cards
                .codes
                .iter()
                .map(|c| self.digester.digest(c))
                .collect();
            self.store
                .commit_chunk(ChunkCommit {
                    batch_id: id,
                    token: &token,
                    first_index: index,
                    first_sequence: first.sequence(),
                    key_id,
                    digests: &mut digests,
                    redrawn,
                    cards: &mut cards,
                    actor,
                })
                .await?;
            index += n as u64;
            batch.generated = index;
            progress(&batch);
        }
        let sha256 = export::sha256_file(file.path()).map_err(StoreError::Export)?;
        drop(file);
        let batch = self
            .store
            .complete_batch(id, &token, &sha256, &export::file_name(id), actor)
            .await?;
        Ok(batch)
    }

    /// After a lookup key rotation, the unique index sees only newest-key digests: a new code
    /// equal to one issued under an older key would slip past it. Such codes are drawn again
    /// here; returns how many. Nothing to do while the ring holds one key.
    async fn redraw_issued_under_older_keys(
        &self,
        codes: &mut [Code],
        source: &mut dyn CodeSource,
    ) -> Result<u64, IssuanceError> {
        if !self.digester.has_older_keys() {
            return Ok(0);
        }
        let mut redrawn = 0;
        let mut suspects: Vec<usize> = (0..codes.len()).collect();
        while !suspects.is_empty() {
            let older: Vec<(usize, CodeDigest)> = suspects
                .iter()
                .flat_map(|&i| self.digester.older_digests(&codes[i]).map(move |d| (i, d)))
                .collect();
            let digests: Vec<CodeDigest> = older.iter().map(|(_, d)| *d).collect();
            let issued = self.store.existing_digests(&digests).await?;
            let mut taken: Vec<usize> = older
                .iter()
                .filter(|(_, d)| issued.contains(d))
                .map(|(i, _)| *i)
                .collect();
            taken.dedup();
            for &i in &taken {
                codes[i] = source.next_code();
                redrawn += 1;
            }
            suspects = taken;
        }
        Ok(redrawn)
    }

    /// Checks a printer file against the database: every row's code must digest to the card
    /// stored under its serial, the rows must cover the batch exactly, and the file's hash must
    /// be the one recorded. Prints no code; records the check in the audit trail.
    pub async fn verify_export(
        &self,
        path: &Path,
        actor: &str,
    ) -> Result<ExportCheck, IssuanceError> {
        let file_label = path.display().to_string();
        let mismatch = |reason: String| IssuanceError::ExportMismatch {
            file: file_label.clone(),
            reason,
        };
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(false)
            .from_path(path)
            .map_err(|e| mismatch(format!("cannot read it as CSV ({})", csv_reason(&e))))?;
        let mut batch: Option<Batch> = None;
        let mut rows: u64 = 0;
        let mut pending: Vec<(u64, Serial, Code)> = Vec::new();
        for record in reader.records() {
            let record =
                record.map_err(|e| mismatch(format!("row {}: {}", rows + 1, csv_reason(&e))))?;
            let line = record.position().map_or(rows + 2, |p| p.line());
            let (Some(serial), Some(code)) = (record.get(0), record.get(1)) else {
                return Err(mismatch(format!("line {line} has too few fields")));
            };
            let serial =
                Serial::parse(serial).map_err(|e| mismatch(format!("line {line}: {e}")))?;
            let code = Code::parse(code).map_err(|e| mismatch(format!("line {line}: {e}")))?;
            if batch.is_none() {
                let card = self
                    .store
                    .cards_in_range(serial.sequence(), serial.sequence())
                    .await?;
                let batch_id = card.first().map(|c| c.batch_id).ok_or_else(|| {
                    mismatch(format!("line {line}: serial {serial} is not a stored card"))
                })?;
                batch = self.store.batch(batch_id).await?;
            }
            let batch = batch
                .as_ref()
                .ok_or_else(|| mismatch("its batch is gone".into()))?;
            if rows >= batch.count || serial != batch.serial_at(rows) {
                return Err(mismatch(format!(
                    "line {line}: serial {serial} is out of order, repeated or outside batch {}",
                    batch.id
                )));
            }
            pending.push((line, serial, code));
            rows += 1;
            if pending.len() == VERIFY_CHUNK_ROWS {
                self.check_rows(&pending).await.map_err(mismatch)?;
                pending.clear();
            }
        }
        self.check_rows(&pending).await.map_err(mismatch)?;
        let batch = batch.ok_or_else(|| mismatch("it holds no card rows".into()))?;
        if rows != batch.count {
            return Err(mismatch(format!(
                "it holds {rows} cards but batch {} has {}",
                batch.id, batch.count
            )));
        }
        let sha256 = export::sha256_file(path).map_err(StoreError::Export)?;
        if batch.export_sha256.as_deref() != Some(sha256.as_str()) {
            return Err(mismatch(format!(
                "its SHA-256 is not the one recorded when batch {} was completed",
                batch.id
            )));
        }
        self.store
            .record(events::export_verified(actor, batch.id, rows, &sha256))
            .await?;
        Ok(ExportCheck {
            batch_id: batch.id,
            rows,
            sha256,
        })
    }

    async fn check_rows(&self, rows: &[(u64, Serial, Code)]) -> Result<(), String> {
        let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
            return Ok(());
        };
        let stored = self
            .store
            .cards_in_range(first.1.sequence(), last.1.sequence())
            .await
            .map_err(|e| e.to_string())?;
        if stored.len() != rows.len() {
            return Err(format!(
                "serials {} to {} are not all stored",
                first.1, last.1
            ));
        }
        for ((line, serial, code), card) in rows.iter().zip(&stored) {
            let matches = self
                .digester
                .digest_under(card.key_id, code)
                .is_some_and(|digest| digest.ct_eq(&card.digest));
            if !matches {
                return Err(format!(
                    "line {line}: the code for serial {serial} is not the one issued"
                ));
            }
        }
        Ok(())
    }
}

/// Rows checked against the database per query when verifying a printer file.
const VERIFY_CHUNK_ROWS: usize = 10_000;

/// A csv error's reason without the offending field's text (it may hold a code).
fn csv_reason(error: &csv::Error) -> String {
    match error.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => {
            format!("a row has {len} fields where {expected_len} were expected")
        }
        csv::ErrorKind::Utf8 { .. } => "a row is not valid UTF-8".into(),
        csv::ErrorKind::Io(e) => e.to_string(),
        _ => "malformed CSV".into(),
    }
}

/// One chunk's plaintext codes, as the store's chunk commit sees them.
struct Chunk<'a> {
    codes: Vec<Code>,
    source: &'a mut dyn CodeSource,
    digester: &'a Digester,
    file: &'a mut PrinterFile,
    first: Serial,
}

impl ChunkCards for Chunk<'_> {
    // A redraw here is not checked against older keys again: it follows a collision already
    // (about 5e-5 per million cards), so a second coincidence is below 1e-20 per batch.
    fn regenerate(&mut self, i: usize) -> CodeDigest {
        self.codes[i] = self.source.next_code();
        self.digester.digest(&self.codes[i])
    }

    fn write_export(&mut self) -> std::io::Result<u64> {
        self.file.append(self.first, &self.codes)
    }
}
