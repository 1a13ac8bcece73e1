//! The printer file: the one place a code ever exists in plaintext.
//!
//! A CSV (serial, code, value, currency, expires) written under the export directory with mode
//! 0600, chunk by chunk as generation proceeds. The database records how many of its bytes are
//! covered by committed cards, so a resumed run truncates back to that length and goes on.
//!
//! Nobody else may steer where the codes go: the directory must be tender's own (owned by this
//! user, mode 0700, not a link), the file is created new (never through a link, never one
//! someone placed there) and, when resumed, must be a private regular file of this user.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::domain::{Batch, BatchId, CardValue, Code, Serial};
use crate::error::{Classify, Kind};

/// The header row of every printer file.
pub const HEADER: &str = "serial,code,value,currency,expires\n";

/// The printer file's name for a batch.
pub fn file_name(batch_id: BatchId) -> String {
    format!("batch-{batch_id}.csv")
}

/// The label of the key a printer file's MAC is made under, derived from the batch's lookup key
/// for this use alone.
pub const MAC_KEY_LABEL: &[u8] = b"tender-printer-file-mac-v1";

/// The lock a generation run holds on a batch's printer file: a separate lock file, so the
/// printer file itself can be replaced without losing the lock.
#[derive(Debug)]
pub struct PrinterLock {
    _file: File,
    dir: PathBuf,
}

/// An open printer file, under its batch's [`PrinterLock`].
pub struct PrinterFile {
    file: File,
    path: PathBuf,
    len: u64,
    value: String,
    currency: &'static str,
    expires: String,
}

// By hand: nothing of the file's contents belongs in a debug line.
impl std::fmt::Debug for PrinterFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrinterFile")
            .field("path", &self.path)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// Why the printer file cannot be resumed or written.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Another process holds the file: that run is still generating this batch.
    #[error("printer file {0} is being written by another process")]
    Busy(PathBuf),
    /// The export directory or the file is not tender's alone.
    #[error("printer file {path}: {reason}")]
    Unsafe {
        /// The directory or file.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The file system cannot lock the file (some network file systems).
    #[error("printer file {path} cannot be locked on this file system: {source}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
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
            ExportError::Unsafe { .. } => "export.unsafe",
            ExportError::Lock { .. } => "export.lock",
            ExportError::Shrunk { .. } => "export.shrunk",
            ExportError::Io { .. } => "export.io",
        }
    }

    fn kind(&self) -> Kind {
        match self {
            // Busy: a run still alive on this host holds the file; if it dies, a retry resumes.
            ExportError::Busy(_) | ExportError::Io { .. } => Kind::Transient,
            ExportError::Unsafe { .. } | ExportError::Lock { .. } | ExportError::Shrunk { .. } => {
                Kind::Internal
            }
        }
    }
}

impl PrinterLock {
    /// Takes the exclusive lock on batch `id`'s printer file in `dir`, creating the directory
    /// (mode 0700) if it is missing and refusing one that is not tender's alone.
    pub fn acquire(dir: &Path, id: BatchId) -> Result<PrinterLock, ExportError> {
        private_dir(dir)?;
        let path = dir.join(format!("batch-{id}.lock"));
        let file = open_private(
            &path,
            OpenOptions::new().write(true).create(true).truncate(false),
        )?;
        // The lock lives as long as the file is open, and dies with a killed process.
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(ExportError::Busy(path)),
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(ExportError::Lock { path, source });
            }
        }
        Ok(PrinterLock {
            _file: file,
            dir: dir.to_path_buf(),
        })
    }
}

impl PrinterFile {
    /// Opens the batch's printer file under `lock` for a run resuming at `committed` bytes.
    /// With nothing committed the file is created anew (whatever was left there is removed
    /// first); otherwise the existing file must be this user's private regular file holding
    /// at least `committed` bytes, and is cut back to them.
    pub fn open(
        lock: &PrinterLock,
        batch: &Batch,
        committed: u64,
    ) -> Result<PrinterFile, ExportError> {
        let path = lock.dir.join(file_name(batch.id));
        let io = |source| ExportError::Io {
            path: path.clone(),
            source,
        };
        let file = if committed == 0 {
            // Unlinking removes a link itself, never what it points to.
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(e)),
            }
            open_private(
                &path,
                OpenOptions::new().read(true).write(true).create_new(true),
            )?
        } else {
            match open_private(&path, OpenOptions::new().read(true).write(true)) {
                Err(ExportError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                    return Err(ExportError::Shrunk {
                        path,
                        found: 0,
                        committed,
                    });
                }
                opened => opened?,
            }
        };
        let (value, currency) = match batch.value {
            CardValue::Fixed { value } => (value.to_decimal().to_string(), value.currency()),
            CardValue::Variable { min, max } => (
                format!("{}-{}", min.to_decimal(), max.to_decimal()),
                min.currency(),
            ),
        };
        let mut printer = PrinterFile {
            file,
            len: 0,
            value,
            currency: currency.code(),
            expires: batch
                .expires_at
                .map(|at| at.format("%Y-%m-%d").to_string())
                .unwrap_or_default(),
            path,
        };
        printer.cut_to(committed)?;
        Ok(printer)
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
        // Sized up front so it never reallocates (a reallocation would free an unwiped copy of
        // the codes); wiped on drop, whichever way this returns.
        let row_len = 12 + 1 + 16 + 1 + self.value.len() + 1 + 3 + 1 + self.expires.len() + 1;
        let mut buffer = Zeroizing::new(Vec::with_capacity(HEADER.len() + row_len * codes.len()));
        if self.len == 0 {
            buffer.extend_from_slice(HEADER.as_bytes());
        }
        for (i, code) in codes.iter().enumerate() {
            let serial = Serial::from_sequence(first.sequence() + i as u64)
                .expect("serial ranges are reserved within bounds");
            writeln!(
                buffer,
                "{serial},{},{},{},{}",
                code.expose_secret(),
                self.value,
                self.currency,
                self.expires
            )?;
        }
        self.file.write_all(&buffer)?;
        self.file.sync_data()?;
        self.len += buffer.len() as u64;
        Ok(self.len)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// HMAC-SHA256 of a file under `key`, hex, streamed.
pub fn mac_file(path: &Path, key: &[u8]) -> io::Result<String> {
    let mut reader = BufReader::with_capacity(1 << 16, File::open(path)?);
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    let mut buf = Zeroizing::new([0u8; 1 << 16]);
    loop {
        let n = reader.read(&mut buf[..])?;
        if n == 0 {
            break;
        }
        mac.update(&buf[..n]);
    }
    Ok(hex::encode(mac.finalize().into_bytes()))
}

/// Where printer files go on this host: `host:directory`. Only a run at the same location can
/// resume a batch's file.
pub fn location(dir: &Path) -> io::Result<String> {
    let uname = rustix::system::uname();
    let host = uname.nodename().to_string_lossy();
    Ok(format!("{host}:{}", dir.canonicalize()?.display()))
}

/// Creates `dir` with mode 0700 if it is missing; refuses a link, another user's directory or
/// one that others may enter.
fn private_dir(dir: &Path) -> Result<(), ExportError> {
    let unsafe_dir = |reason| ExportError::Unsafe {
        path: dir.to_path_buf(),
        reason,
    };
    crate::keys::create_private_dir(dir).map_err(|source| ExportError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let meta = std::fs::symlink_metadata(dir).map_err(|source| ExportError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(unsafe_dir(
            "the export directory is a link or not a directory",
        ));
    }
    if meta.uid() != rustix::process::geteuid().as_raw() {
        return Err(unsafe_dir("the export directory belongs to another user"));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(unsafe_dir(
            "other users may enter the export directory; run `chmod 700` on it",
        ));
    }
    Ok(())
}

/// Opens `path` never through a symbolic link, then requires a regular file of this user that
/// no one else may read or write.
fn open_private(path: &Path, options: &mut OpenOptions) -> Result<File, ExportError> {
    let unsafe_file = |reason| ExportError::Unsafe {
        path: path.to_path_buf(),
        reason,
    };
    let file = match options
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(unsafe_file("it is a symbolic link"));
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(unsafe_file("it appeared while being created"));
        }
        Err(source) => {
            return Err(ExportError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let meta = file.metadata().map_err(|source| ExportError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.is_file() {
        return Err(unsafe_file("it is not a regular file"));
    }
    if meta.uid() != rustix::process::geteuid().as_raw() {
        return Err(unsafe_file("it belongs to another user"));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(unsafe_file("other users may read or write it"));
    }
    Ok(file)
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
