//! Checking a printer file against the database: every row's code must digest to the card
//! stored under its serial, the rows must cover the batch exactly, and the file's keyed MAC must
//! be the one recorded. Prints no code; records the check in the audit trail.

use std::path::Path;

use serde::Serialize;

use super::keys::KeyUseError;
use super::{Rerun, Services};
use crate::audit::events;
use crate::codegen::Digester;
use crate::domain::{Actor, Batch, BatchId};
use crate::error::{Classify, Kind};
use crate::formats::printer_file::{self, PrinterFileReader, PrinterRow};
use crate::keys::KeyId;
use crate::store::{AuditRepo, BatchRepo, CardRepo, Store, StoreError, Tx};

/// Rows checked against the database per query.
const CHECK_ROWS_PER_QUERY: usize = 10_000;

/// What a check found.
#[derive(Debug, Clone, Serialize)]
pub struct PrinterFileCheck {
    /// The batch the file belongs to.
    pub batch_id: BatchId,
    /// Card rows checked, all matching.
    pub rows: u64,
    /// HMAC-SHA256 of the file under the batch's printer-file key.
    pub mac: String,
}

/// Why a printer file check failed.
#[derive(Debug, thiserror::Error)]
pub enum VerifyPrinterFileError {
    /// The file does not match the database.
    #[error("printer file {file} does not match the database: {reason}")]
    Mismatch {
        /// The file checked.
        file: String,
        /// The first difference found (never a code).
        reason: String,
    },
    /// The keys could not be had.
    #[error(transparent)]
    Keys(#[from] KeyUseError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Classify for VerifyPrinterFileError {
    fn code(&self) -> &'static str {
        match self {
            VerifyPrinterFileError::Mismatch { .. } => "export.mismatch",
            VerifyPrinterFileError::Keys(e) => e.code(),
            VerifyPrinterFileError::Store(e) => e.code(),
        }
    }

    fn kind(&self) -> Kind {
        match self {
            VerifyPrinterFileError::Mismatch { .. } => Kind::Invalid,
            VerifyPrinterFileError::Keys(e) => e.kind(),
            VerifyPrinterFileError::Store(e) => e.kind(),
        }
    }
}

/// Printer file checks.
#[derive(Debug)]
pub struct PrinterCheck<'a, S>(pub(super) &'a Services<S>);

impl<S: Store> PrinterCheck<'_, S> {
    /// Checks the printer file at `path`, reading one consistent snapshot of the database.
    pub async fn verify(
        &self,
        path: &Path,
        actor: &Actor,
    ) -> Result<PrinterFileCheck, VerifyPrinterFileError> {
        let mismatch = |reason: String| VerifyPrinterFileError::Mismatch {
            file: path.display().to_string(),
            reason,
        };
        let ring = self.0.lookup_ring()?;
        let digester = Digester::whole_ring(&ring);
        let mut tx = self.0.store.read().await?;
        let mut batch: Option<Batch> = None;
        let mut rows: u64 = 0;
        let mut pending: Vec<PrinterRow> = Vec::new();
        for row in PrinterFileReader::open(path).map_err(mismatch)? {
            let row = row.map_err(mismatch)?;
            if batch.is_none() {
                let sequence = row.serial.sequence();
                let card = tx.cards_in_range(sequence, sequence).await?;
                let batch_id = card.first().map(|c| c.batch_id).ok_or_else(|| {
                    mismatch(format!(
                        "line {}: serial {} is not a stored card",
                        row.line, row.serial
                    ))
                })?;
                batch = tx.batch(batch_id).await?;
            }
            let batch = batch
                .as_ref()
                .ok_or_else(|| mismatch("its batch is gone".into()))?;
            if rows >= batch.count || row.serial != batch.serial_at(rows) {
                return Err(mismatch(format!(
                    "line {}: serial {} is out of order, repeated or outside batch {}",
                    row.line, row.serial, batch.id
                )));
            }
            pending.push(row);
            rows += 1;
            if pending.len() == CHECK_ROWS_PER_QUERY {
                self.check_rows(&mut tx, &digester, &pending)
                    .await?
                    .map_err(mismatch)?;
                pending.clear();
            }
        }
        self.check_rows(&mut tx, &digester, &pending)
            .await?
            .map_err(mismatch)?;
        drop(tx);
        let batch = batch.ok_or_else(|| mismatch("it holds no card rows".into()))?;
        if rows != batch.count {
            return Err(mismatch(format!(
                "it holds {rows} cards but batch {} has {}",
                batch.id, batch.count
            )));
        }
        let key = KeyId::new(batch.lookup_key_id)
            .and_then(|id| ring.derive(id, printer_file::MAC_KEY_LABEL))
            .ok_or_else(|| {
                mismatch(format!(
                    "this host lacks the lookup key of batch {}",
                    batch.id
                ))
            })?;
        let mac = printer_file::mac_file(path, key.expose())
            .map_err(|e| mismatch(format!("cannot read it ({e})")))?;
        let recorded = batch.export_mac.as_deref().unwrap_or_default();
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            recorded.as_bytes(),
            mac.as_bytes(),
        )) {
            return Err(mismatch(format!(
                "its MAC is not the one recorded when batch {} was completed",
                batch.id
            )));
        }
        let event = events::export_verified(actor, batch.id, rows, &mac);
        let mut rerun = Rerun::new();
        loop {
            let record = async {
                let mut tx = self.0.store.begin().await?;
                let signer = self.0.signer(&mut tx).await?;
                tx.append(&signer, &event, self.0.clock.now()).await?;
                tx.commit().await?;
                Ok::<(), VerifyPrinterFileError>(())
            };
            match record.await {
                Err(e) if rerun.after(&e).await => {}
                done => break done?,
            }
        }
        Ok(PrinterFileCheck {
            batch_id: batch.id,
            rows,
            mac,
        })
    }

    /// `Ok(Err(reason))` for the first row whose code is not the one issued.
    async fn check_rows(
        &self,
        tx: &mut S::Tx,
        digester: &Digester,
        rows: &[PrinterRow],
    ) -> Result<Result<(), String>, StoreError> {
        let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
            return Ok(Ok(()));
        };
        let stored = tx
            .cards_in_range(first.serial.sequence(), last.serial.sequence())
            .await?;
        if stored.len() != rows.len() {
            return Ok(Err(format!(
                "serials {} to {} are not all stored",
                first.serial, last.serial
            )));
        }
        for (row, card) in rows.iter().zip(&stored) {
            let matches = digester
                .digest_under(card.key_id, &row.code)
                .is_some_and(|digest| digest.ct_eq(&card.digest));
            if !matches {
                return Ok(Err(format!(
                    "line {}: the code for serial {} is not the one issued",
                    row.line, row.serial
                )));
            }
        }
        Ok(Ok(()))
    }
}
