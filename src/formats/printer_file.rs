//! The printer file: the one place a code ever exists in plaintext.
//!
//! A CSV (serial, code, value, currency, expires) written under the export directory with mode
//! 0600, chunk by chunk as generation proceeds. The database records how many of its bytes are
//! covered by committed cards, so a resumed run truncates back to that length and goes on.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::domain::{Batch, BatchId, CardValue, Code, Serial};
use crate::error::{Classify, Kind};

/// The header row of every printer file.
pub const HEADER: &str = "serial,code,value,currency,expires\n";

/// The printer file's name for a batch.
pub fn file_name(batch_id: BatchId) -> String {
    format!("batch-{batch_id}.csv")
}

/// An open printer file, locked against any other writer on this host.
#[derive(Debug)]
pub struct PrinterFile {
    file: File,
    path: PathBuf,
    len: u64,
    value: String,
    currency: &'static str,
    expires: String,
    buffer: Vec<u8>,
}

/// Why the printer file cannot be resumed or written.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Another process holds the file: that run is still generating this batch.
    #[error("printer file {0} is being written by another process")]
    Busy(PathBuf),
    /// The file is shorter than what committed cards cover: it was truncated or replaced.
    #[error(
        "printer file {path} holds {found} bytes but {committed} are committed; it was truncated or replaced"
    )]
    Shrunk {
        /// The file.
        path: PathBuf,
        /// Its length.
        found: u64,
        /// The committed length.
        committed: u64,
    },
    /// Reading or writing failed.
    #[error("printer file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

impl Classify for ExportError {
    fn code(&self) -> &'static str {
        match self {
            ExportError::Busy(_) => "export.busy",
            ExportError::Shrunk { .. } => "export.shrunk",
            ExportError::Io { .. } => "export.io",
        }
    }

    fn kind(&self) -> Kind {
        match self {
            // Busy: a run still alive on this host holds the file; if it dies, a retry resumes.
            ExportError::Busy(_) | ExportError::Io { .. } => Kind::Transient,
            ExportError::Shrunk { .. } => Kind::Internal,
        }
    }
}

impl PrinterFile {
    /// Opens (creating with mode 0600) the batch's printer file in `dir` and takes an exclusive
    /// lock on it. Call [`PrinterFile::cut_to`] before appending.
    pub fn lock(dir: &Path, batch: &Batch) -> Result<PrinterFile, ExportError> {
        let path = dir.join(file_name(batch.id));
        let io = |source| ExportError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        // The lock lives as long as the file is open, and dies with a killed process.
        if file.try_lock().is_err() {
            return Err(ExportError::Busy(path));
        }
        let (value, currency) = match batch.value {
            CardValue::Fixed { value } => (value.to_decimal().to_string(), value.currency()),
            CardValue::Variable { min, max } => (
                format!("{}-{}", min.to_decimal(), max.to_decimal()),
                min.currency(),
            ),
        };
        Ok(PrinterFile {
            file,
            len: 0,
            value,
            currency: currency.code(),
            expires: batch
                .expires_at
                .map(|at| at.format("%Y-%m-%d").to_string())
                .unwrap_or_default(),
            buffer: Vec::new(),
            path,
        })
    }

    /// Cuts the file back to the `committed` bytes that stored cards cover, dropping whatever a
    /// killed run appended after its last commit.
    pub fn cut_to(&mut self, committed: u64) -> Result<(), ExportError> {
        let io = |source| ExportError::Io {
            path: self.path.clone(),
            source,
        };
        let found = self.file.metadata().map_err(io)?.len();
        if found < committed {
            return Err(ExportError::Shrunk {
                path: self.path.clone(),
                found,
                committed,
            });
        }
        self.file.set_len(committed).map_err(io)?;
        self.file.seek(SeekFrom::End(0)).map_err(io)?;
        self.len = committed;
        Ok(())
    }

    /// Appends one row per card (and the header, if the file is empty) and syncs the file to
    /// disk. Returns the file's new length.
    pub fn append(&mut self, first: Serial, codes: &[Code]) -> io::Result<u64> {
        self.buffer.clear();
        if self.len == 0 {
            self.buffer.extend_from_slice(HEADER.as_bytes());
        }
        for (i, code) in codes.iter().enumerate() {
            let serial = Serial::from_sequence(first.sequence() + i as u64)
                .expect("serial ranges are reserved within bounds");
            writeln!(
                self.buffer,
                "{serial},{},{},{},{}",
                code.expose_secret(),
                self.value,
                self.currency,
                self.expires
            )?;
        }
        self.file.write_all(&self.buffer)?;
        self.file.sync_data()?;
        self.len += self.buffer.len() as u64;
        // The buffer held plaintext codes: wipe it rather than leave them in freed memory.
        zeroize::Zeroize::zeroize(&mut self.buffer);
        Ok(self.len)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// SHA-256 of a file, hex, streamed.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut reader = BufReader::with_capacity(1 << 16, File::open(path)?);
    let mut hasher = Sha256::new();
    let mut buf = [0u8; 1 << 16];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// One card row of a printer file as read back: its line, serial and code.
#[derive(Debug)]
pub struct PrinterRow {
    /// The line in the file (the header is line 1).
    pub line: u64,
    /// The card's serial.
    pub serial: Serial,
    /// The card's code.
    pub code: Code,
}

/// Reads a printer file's card rows. Every refusal names a line, never the text on it (a
/// mistyped field may still be most of a code).
pub struct PrinterFileReader {
    records: csv::StringRecordsIntoIter<File>,
    rows: u64,
}

impl PrinterFileReader {
    /// Opens the file at `path`; `Err` holds the reason it cannot be read.
    pub fn open(path: &Path) -> Result<PrinterFileReader, String> {
        let reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(false)
            .from_path(path)
            .map_err(|e| format!("cannot read it as CSV ({})", csv_reason(&e)))?;
        Ok(PrinterFileReader {
            records: reader.into_records(),
            rows: 0,
        })
    }
}

impl Iterator for PrinterFileReader {
    type Item = Result<PrinterRow, String>;

    fn next(&mut self) -> Option<Self::Item> {
        let record = self.records.next()?;
        self.rows += 1;
        Some(
            record
                .map_err(|e| format!("row {}: {}", self.rows, csv_reason(&e)))
                .and_then(|record| {
                    let line = record.position().map_or(self.rows + 1, |p| p.line());
                    let (Some(serial), Some(code)) = (record.get(0), record.get(1)) else {
                        return Err(format!("line {line} has too few fields"));
                    };
                    Ok(PrinterRow {
                        line,
                        serial: Serial::parse(serial).map_err(|e| format!("line {line}: {e}"))?,
                        code: Code::parse(code).map_err(|e| format!("line {line}: {e}"))?,
                    })
                }),
        )
    }
}

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
