//! The witness file: every seal, appended and synced by the process that made it, outside the
//! database. Someone who can write the database but not the witness cannot delete a witnessed
//! seal, wipe the trail, or restore an older copy of the database without `audit verify
//! --witness` noticing. Each sealing host keeps its own file; the verifier reads their union.
//!
//! The format is text, one line each: a header naming the seal public key, then
//! `seal <id> <sealed_at, RFC 3339 to the microsecond> <seal hash, hex>`.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};

use super::Seal;
use crate::error::{Classify, Kind};
use crate::keys::{SealPublicKey, create_private_dir, sync_dir};

/// The first word of a witness file.
const HEADER_TAG: &str = "tender-audit-witness-v1";
/// The longest line a witness holds (a seal line is about 110 bytes): a longer one is not ours.
const LINE_BYTES_MAX: usize = 256;
/// The largest witness file read: about two million seals, 19 years at one seal every five
/// minutes; the verifier holds every entry in memory.
pub const WITNESS_BYTES_MAX: u64 = 256 << 20;

/// One witnessed seal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WitnessEntry {
    /// The seal's id.
    pub seal_id: i64,
    /// When it was made.
    pub sealed_at: DateTime<Utc>,
    /// Its hash.
    pub hash: [u8; 32],
}

impl WitnessEntry {
    fn line(&self) -> String {
        format!(
            "seal {} {} {}",
            self.seal_id,
            self.sealed_at.to_rfc3339_opts(SecondsFormat::Micros, true),
            hex::encode(self.hash)
        )
    }

    fn parse(line: &str) -> Option<WitnessEntry> {
        let mut fields = line.split(' ');
        (fields.next()? == "seal").then_some(())?;
        let seal_id = fields.next()?.parse().ok().filter(|id: &i64| *id > 0)?;
        let sealed_at = DateTime::parse_from_rfc3339(fields.next()?)
            .ok()?
            .with_timezone(&Utc);
        let mut hash = [0u8; 32];
        hex::decode_to_slice(fields.next()?, &mut hash).ok()?;
        fields.next().is_none().then_some(WitnessEntry {
            seal_id,
            sealed_at,
            hash,
        })
    }
}

/// Why a witness file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    /// The file could not be opened, read, written or synced.
    #[error("witness file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A line is not a witness line.
    #[error("witness file {path} is malformed at line {line}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// One-based line number.
        line: usize,
    },
    /// The file is larger than [`WITNESS_BYTES_MAX`].
    #[error("witness file {0} is larger than {WITNESS_BYTES_MAX} bytes")]
    TooLarge(PathBuf),
    /// The file names another seal key than the one in use.
    #[error("witness file {0} belongs to another seal key")]
    OtherKey(PathBuf),
    /// Two witnesses record different seals under one id.
    #[error("the witness files disagree about seal {0}")]
    Disagree(i64),
}

impl Classify for WitnessError {
    fn code(&self) -> &'static str {
        match self {
            WitnessError::Io { .. } => "witness.io",
            WitnessError::Malformed { .. } => "witness.malformed",
            WitnessError::TooLarge(_) => "witness.too_large",
            WitnessError::OtherKey(_) => "witness.other_key",
            WitnessError::Disagree(_) => "witness.disagree",
        }
    }

    fn kind(&self) -> Kind {
        match self {
            WitnessError::Io { .. } => Kind::Internal,
            _ => Kind::Invalid,
        }
    }
}

/// The union of one or more witness files.
#[derive(Debug, Clone)]
pub struct Witness {
    /// The seal public key their headers name.
    pub public_key: SealPublicKey,
    /// Every witnessed seal, by id.
    pub entries: BTreeMap<i64, WitnessEntry>,
    /// How many files were read.
    pub files: usize,
}

impl Witness {
    /// Reads every file; their headers must name one key, and no two may disagree about a seal.
    /// `None` for no file.
    pub fn read(paths: &[PathBuf]) -> Result<Option<Witness>, WitnessError> {
        let mut union: Option<Witness> = None;
        for path in paths {
            let (public_key, entries) = read_file(path)?;
            let witness = union.get_or_insert_with(|| Witness {
                public_key,
                entries: BTreeMap::new(),
                files: 0,
            });
            if witness.public_key != public_key {
                return Err(WitnessError::OtherKey(path.clone()));
            }
            witness.files += 1;
            for entry in entries {
                if *witness.entries.entry(entry.seal_id).or_insert(entry) != entry {
                    return Err(WitnessError::Disagree(entry.seal_id));
                }
            }
        }
        Ok(union)
    }

    /// The newest witnessed seal.
    pub fn newest(&self) -> Option<&WitnessEntry> {
        self.entries.values().next_back()
    }
}

fn read_file(path: &Path) -> Result<(SealPublicKey, Vec<WitnessEntry>), WitnessError> {
    let io = |source| WitnessError::Io {
        path: path.to_path_buf(),
        source,
    };
    let malformed = |line| WitnessError::Malformed {
        path: path.to_path_buf(),
        line,
    };
    let file = fs::File::open(path).map_err(io)?;
    if file.metadata().map_err(io)?.len() > WITNESS_BYTES_MAX {
        return Err(WitnessError::TooLarge(path.to_path_buf()));
    }
    let mut lines = BufReader::new(file.take(WITNESS_BYTES_MAX)).lines();
    let header = lines.next().ok_or(malformed(1))?.map_err(io)?;
    let public_key = parse_header(&header).ok_or(malformed(1))?;
    let mut entries = Vec::new();
    for (index, line) in lines.enumerate() {
        let line = line.map_err(io)?;
        let entry = (line.len() <= LINE_BYTES_MAX)
            .then(|| WitnessEntry::parse(&line))
            .flatten()
            .ok_or(malformed(index + 2))?;
        entries.push(entry);
    }
    Ok((public_key, entries))
}

fn header(public_key: &SealPublicKey) -> String {
    format!("{HEADER_TAG} {}", public_key.to_line())
}

fn parse_header(line: &str) -> Option<SealPublicKey> {
    SealPublicKey::parse_line(line.strip_prefix(HEADER_TAG)?.strip_prefix(' ')?)
}

/// A witness file open for appending, locked against the other sealing processes of this host
/// until it drops, so its lines stay in seal order.
#[derive(Debug)]
pub struct WitnessWriter {
    file: fs::File,
    path: PathBuf,
}

impl WitnessWriter {
    /// Opens (creating it, with its header, where missing) and locks the witness at `path`,
    /// waiting for another sealing process of this host. A file for another key is refused.
    pub fn open(path: &Path, public_key: &SealPublicKey) -> Result<WitnessWriter, WitnessError> {
        let io = |source| WitnessError::Io {
            path: path.to_path_buf(),
            source,
        };
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
        if let Some(dir) = dir {
            create_private_dir(dir).map_err(io)?;
        }
        let mut file = fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(io)?;
        file.lock().map_err(io)?;
        if file.metadata().map_err(io)?.len() == 0 {
            writeln!(file, "{}", header(public_key)).map_err(io)?;
            file.sync_all().map_err(io)?;
            if let Some(dir) = dir {
                sync_dir(dir).map_err(io)?;
            }
        } else {
            let mut first = String::new();
            BufReader::new(&file)
                .take(LINE_BYTES_MAX as u64)
                .read_line(&mut first)
                .map_err(io)?;
            match parse_header(first.trim_end()) {
                Some(key) if key == *public_key => {}
                Some(_) => return Err(WitnessError::OtherKey(path.to_path_buf())),
                None => {
                    return Err(WitnessError::Malformed {
                        path: path.to_path_buf(),
                        line: 1,
                    });
                }
            }
        }
        Ok(WitnessWriter {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Appends `seal` and syncs it to disk before returning.
    pub fn append(&mut self, seal: &Seal) -> Result<(), WitnessError> {
        let entry = WitnessEntry {
            seal_id: seal.seal_id,
            sealed_at: seal.sealed_at,
            hash: seal.hash,
        };
        writeln!(self.file, "{}", entry.line())
            .and_then(|()| self.file.sync_data())
            .map_err(|source| WitnessError::Io {
                path: self.path.clone(),
                source,
            })
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{CHAIN_COUNT, GENESIS, SealedHead};
    use crate::keys::SealKey;

    fn seal(key: &SealKey, id: i64, seq: i64) -> Seal {
        use crate::clock::{Clock, SystemClock};
        let heads = (0..CHAIN_COUNT)
            .map(|chain| SealedHead {
                chain,
                seq,
                hash: GENESIS,
            })
            .collect();
        Seal::sign(key, id, SystemClock.now(), heads, &GENESIS)
    }

    #[test]
    fn appended_seals_read_back_and_files_unite() {
        let dir = tempfile::tempdir().unwrap();
        let key = SealKey::generate();
        let (a, b) = (dir.path().join("a/w"), dir.path().join("b/w"));
        let (one, two) = (seal(&key, 1, 1), seal(&key, 2, 2));
        WitnessWriter::open(&a, &key.public())
            .unwrap()
            .append(&one)
            .unwrap();
        let mut writer = WitnessWriter::open(&b, &key.public()).unwrap();
        writer.append(&one).unwrap();
        writer.append(&two).unwrap();
        drop(writer);
        let witness = Witness::read(&[a, b]).unwrap().unwrap();
        assert_eq!(witness.files, 2);
        assert_eq!(witness.public_key, key.public());
        assert_eq!(witness.newest().unwrap().hash, two.hash);
        assert_eq!(witness.entries[&1].sealed_at, one.sealed_at);
    }

    #[test]
    fn a_witness_of_another_key_or_a_malformed_line_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w");
        let key = SealKey::generate();
        WitnessWriter::open(&path, &key.public()).unwrap();
        let other = SealKey::generate().public();
        assert!(matches!(
            WitnessWriter::open(&path, &other),
            Err(WitnessError::OtherKey(_))
        ));
        fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"seal one\n")
            .unwrap();
        assert!(matches!(
            Witness::read(std::slice::from_ref(&path)),
            Err(WitnessError::Malformed { line: 2, .. })
        ));
    }

    #[test]
    fn witnesses_that_disagree_about_a_seal_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = SealKey::generate();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        WitnessWriter::open(&a, &key.public())
            .unwrap()
            .append(&seal(&key, 1, 1))
            .unwrap();
        WitnessWriter::open(&b, &key.public())
            .unwrap()
            .append(&seal(&key, 1, 2))
            .unwrap();
        assert!(matches!(
            Witness::read(&[a, b]),
            Err(WitnessError::Disagree(1))
        ));
    }
}
