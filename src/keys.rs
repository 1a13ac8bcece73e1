//! Secret keys: the code lookup key and the audit key, each a ring of versioned 32-byte keys.
//!
//! Keys come from an environment variable or from a key file that `tender init` creates with mode
//! 0600; never from command-line arguments. New records use the newest key id; older ids stay in
//! the ring so that records written under them still verify and codes issued under them are found.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand_core::{OsRng, TryRngCore};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::{Classify, Kind};

/// Length of every key in bytes: the output length of SHA-256, as RFC 2104 recommends.
pub const KEY_LEN: usize = 32;

/// Identifies one version of a key within its ring; stored beside every digest and audit tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(u16);

impl KeyId {
    /// Wraps a stored key id.
    pub fn new(id: u16) -> KeyId {
        KeyId(id)
    }

    /// The numeric id, as stored.
    pub fn get(self) -> u16 {
        self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// 32 secret bytes. `Debug` never shows them and they are wiped from memory on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretKey([u8; KEY_LEN]);

impl SecretKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> SecretKey {
        let mut bytes = [0u8; KEY_LEN];
        OsRng
            .try_fill_bytes(&mut bytes)
            .expect("the operating system's random source failed");
        SecretKey(bytes)
    }

    /// The key bytes, for keying a MAC.
    pub fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    fn from_hex(hex_text: &str) -> Option<SecretKey> {
        let mut bytes = [0u8; KEY_LEN];
        hex::decode_to_slice(hex_text, &mut bytes).ok()?;
        Some(SecretKey(bytes))
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey([redacted])")
    }
}

/// What a key ring is for. Each purpose has its own keys: one must never stand in for the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPurpose {
    /// Keys the HMAC-SHA256 digests by which codes are found.
    Lookup,
    /// Keys the HMAC-SHA256 tags of the audit trail.
    Audit,
}

impl KeyPurpose {
    /// The environment variable that may hold this ring, as `id:hex[,id:hex…]`.
    pub fn env_var(self) -> &'static str {
        match self {
            KeyPurpose::Lookup => "TENDER_LOOKUP_KEYS",
            KeyPurpose::Audit => "TENDER_AUDIT_KEYS",
        }
    }

    /// The key file's name inside the key directory.
    pub fn file_name(self) -> &'static str {
        match self {
            KeyPurpose::Lookup => "lookup.keys",
            KeyPurpose::Audit => "audit.keys",
        }
    }

    fn name(self) -> &'static str {
        match self {
            KeyPurpose::Lookup => "lookup",
            KeyPurpose::Audit => "audit",
        }
    }
}

/// Why keys could not be loaded or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Neither the environment variable nor the key file exists.
    #[error("no {purpose} key: set {env_var} or run `tender init` to create {file}")]
    Missing {
        /// Which ring.
        purpose: &'static str,
        /// The environment variable that was checked.
        env_var: &'static str,
        /// The key file that was checked.
        file: PathBuf,
    },
    /// The ring's text is not a list of `id hex` entries.
    #[error("the {purpose} key ring in {source_name} is malformed at entry {entry}: {reason}")]
    Malformed {
        /// Which ring.
        purpose: &'static str,
        /// Where it came from (a variable name or a path); never the key text.
        source_name: String,
        /// One-based entry number.
        entry: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Group or other users may read the key file.
    #[error("key file {0} may be read by other users; run `chmod 600` on it")]
    Permissions(PathBuf),
    /// The ring is held in an environment variable, so there is no file here to rotate.
    #[error("the {purpose} keys come from {env_var}; rotate them where that variable is set")]
    HeldInEnvironment {
        /// Which ring.
        purpose: &'static str,
        /// The variable that holds it.
        env_var: &'static str,
    },
    /// Reading or writing the key file failed.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

impl Classify for KeyError {
    fn code(&self) -> &'static str {
        match self {
            KeyError::Missing { .. } => "keys.missing",
            KeyError::Malformed { .. } => "keys.malformed",
            KeyError::Permissions(_) => "keys.permissions",
            KeyError::HeldInEnvironment { .. } => "keys.held_in_environment",
            KeyError::Io { .. } => "keys.io",
        }
    }

    fn kind(&self) -> Kind {
        Kind::Internal
    }
}

/// All versions of one purpose's key; the newest signs new records.
#[derive(Debug, Clone)]
pub struct KeyRing {
    purpose: KeyPurpose,
    keys: BTreeMap<KeyId, SecretKey>,
}

impl KeyRing {
    /// A ring holding one key, for tests and benchmarks.
    pub fn single(purpose: KeyPurpose, id: KeyId, key: SecretKey) -> KeyRing {
        KeyRing {
            purpose,
            keys: BTreeMap::from([(id, key)]),
        }
    }

    /// The newest key and its id.
    pub fn newest(&self) -> (KeyId, &SecretKey) {
        let (id, key) = self
            .keys
            .last_key_value()
            .expect("a key ring is never empty");
        (*id, key)
    }

    /// The key with this id, if the ring still holds it.
    pub fn get(&self, id: KeyId) -> Option<&SecretKey> {
        self.keys.get(&id)
    }

    /// Every key, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = (KeyId, &SecretKey)> {
        self.keys.iter().map(|(id, key)| (*id, key))
    }

    /// Loads the ring from its environment variable if set, otherwise from its file in `key_dir`.
    pub fn load(purpose: KeyPurpose, key_dir: &Path) -> Result<KeyRing, KeyError> {
        if let Ok(text) = std::env::var(purpose.env_var()) {
            return KeyRing::parse(purpose, &text.replace(',', "\n"), purpose.env_var());
        }
        let path = key_dir.join(purpose.file_name());
        let metadata = match fs::metadata(&path) {
            Ok(metadata) => metadata,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(KeyError::Missing {
                    purpose: purpose.name(),
                    env_var: purpose.env_var(),
                    file: path,
                });
            }
            Err(source) => return Err(KeyError::Io { path, source }),
        };
        if metadata.permissions().mode() & 0o077 != 0 {
            return Err(KeyError::Permissions(path));
        }
        let text = fs::read_to_string(&path).map_err(|source| KeyError::Io {
            path: path.clone(),
            source,
        })?;
        KeyRing::parse(purpose, &text, &path.display().to_string())
    }

    /// Parses one `id hex` (or `id:hex`) entry per line; `#` starts a comment.
    fn parse(purpose: KeyPurpose, text: &str, source_name: &str) -> Result<KeyRing, KeyError> {
        let malformed = |entry, reason| KeyError::Malformed {
            purpose: purpose.name(),
            source_name: source_name.to_string(),
            entry,
            reason,
        };
        let mut keys = BTreeMap::new();
        let entries = text
            .lines()
            .map(|line| line.split('#').next().unwrap_or("").trim())
            .filter(|line| !line.is_empty());
        for (index, line) in entries.enumerate() {
            let entry = index + 1;
            let (id, hex_text) = line
                .split_once([' ', ':', '\t'])
                .ok_or_else(|| malformed(entry, "expected `id hex`"))?;
            let id: u16 = id
                .trim()
                .parse()
                .map_err(|_| malformed(entry, "the key id is not a number from 0 to 65535"))?;
            let key = SecretKey::from_hex(hex_text.trim())
                .ok_or_else(|| malformed(entry, "the key is not 64 hexadecimal digits"))?;
            if keys.insert(KeyId(id), key).is_some() {
                return Err(malformed(entry, "the key id appears twice"));
            }
        }
        if keys.is_empty() {
            return Err(malformed(0, "the ring holds no key"));
        }
        Ok(KeyRing { purpose, keys })
    }

    /// Creates the key file with one fresh key unless it exists. Returns whether it was created.
    pub fn create_file_if_missing(purpose: KeyPurpose, key_dir: &Path) -> Result<bool, KeyError> {
        let path = key_dir.join(purpose.file_name());
        if path.exists() {
            return Ok(false);
        }
        let io = |source| KeyError::Io {
            path: path.clone(),
            source,
        };
        fs::create_dir_all(key_dir).map_err(io)?;
        fs::set_permissions(key_dir, fs::Permissions::from_mode(0o700)).map_err(io)?;
        let key = SecretKey::generate();
        write_new_file(&path, &format!("1 {}\n", hex::encode(key.expose()))).map_err(io)?;
        Ok(true)
    }

    /// Adds a new newest key to the key file, keeping the older ones; returns the new id.
    pub fn rotate_file(purpose: KeyPurpose, key_dir: &Path) -> Result<KeyId, KeyError> {
        let path = key_dir.join(purpose.file_name());
        let ring = KeyRing::load_file_only(purpose, &path)?;
        let next = ring
            .newest()
            .0
            .0
            .checked_add(1)
            .ok_or(KeyError::Malformed {
                purpose: purpose.name(),
                source_name: path.display().to_string(),
                entry: ring.keys.len(),
                reason: "no key id is left after 65535",
            })?;
        let mut text = String::new();
        for (id, key) in ring.iter() {
            text.push_str(&format!("{id} {}\n", hex::encode(key.expose())));
        }
        text.push_str(&format!(
            "{next} {}\n",
            hex::encode(SecretKey::generate().expose())
        ));
        // Write beside and rename, so a crash never leaves a half-written ring.
        let staging = path.with_extension("keys.new");
        let io = |source| KeyError::Io {
            path: path.clone(),
            source,
        };
        let _ = fs::remove_file(&staging);
        write_new_file(&staging, &text).map_err(io)?;
        fs::rename(&staging, &path).map_err(io)?;
        Ok(KeyId(next))
    }

    fn load_file_only(purpose: KeyPurpose, path: &Path) -> Result<KeyRing, KeyError> {
        let key_dir = path.parent().unwrap_or(Path::new("."));
        // Rotation edits the file, so the environment must not shadow it here.
        if std::env::var_os(purpose.env_var()).is_some() {
            return Err(KeyError::HeldInEnvironment {
                purpose: purpose.name(),
                env_var: purpose.env_var(),
            });
        }
        KeyRing::load(purpose, key_dir)
    }

    /// Which purpose this ring serves.
    pub fn purpose(&self) -> KeyPurpose {
        self.purpose
    }
}

fn write_new_file(path: &Path, text: &str) -> std::io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

/// Both key rings tender needs.
#[derive(Debug, Clone)]
pub struct Keys {
    /// Keys the code lookup digests.
    pub lookup: KeyRing,
    /// Keys the audit tags.
    pub audit: KeyRing,
}

impl Keys {
    /// Loads both rings (environment first, then files in `key_dir`).
    pub fn load(key_dir: &Path) -> Result<Keys, KeyError> {
        Ok(Keys {
            lookup: KeyRing::load(KeyPurpose::Lookup, key_dir)?,
            audit: KeyRing::load(KeyPurpose::Audit, key_dir)?,
        })
    }

    /// Fresh single-key rings that exist only in memory, for tests and benchmarks.
    pub fn ephemeral() -> Keys {
        Keys {
            lookup: KeyRing::single(KeyPurpose::Lookup, KeyId(1), SecretKey::generate()),
            audit: KeyRing::single(KeyPurpose::Audit, KeyId(1), SecretKey::generate()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_key_bytes() {
        let key = SecretKey::from_hex(&"ab".repeat(32)).unwrap();
        assert_eq!(format!("{key:?}"), "SecretKey([redacted])");
        let ring = KeyRing::single(KeyPurpose::Audit, KeyId(1), key);
        assert!(!format!("{ring:?}").contains("abab"));
    }

    #[test]
    fn a_ring_parses_ids_and_picks_the_highest_as_newest() {
        let text = format!("# comment\n1 {}\n2:{}\n", "01".repeat(32), "02".repeat(32));
        let ring = KeyRing::parse(KeyPurpose::Lookup, &text, "test").unwrap();
        assert_eq!(ring.newest().0, KeyId(2));
        assert_eq!(ring.get(KeyId(1)).unwrap().expose()[0], 1);
    }

    #[test]
    fn a_short_key_is_refused_without_echoing_it() {
        let err = KeyRing::parse(KeyPurpose::Lookup, "1 abcd", "test").unwrap_err();
        assert_eq!(err.code(), "keys.malformed");
        assert!(!err.to_string().contains("abcd"));
    }

    #[test]
    fn key_files_are_created_private_and_rotation_keeps_old_ids() {
        let dir = tempfile::tempdir().unwrap();
        assert!(KeyRing::create_file_if_missing(KeyPurpose::Lookup, dir.path()).unwrap());
        assert!(!KeyRing::create_file_if_missing(KeyPurpose::Lookup, dir.path()).unwrap());
        let path = dir.path().join("lookup.keys");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let before = KeyRing::load_file_only(KeyPurpose::Lookup, &path).unwrap();
        let new_id = KeyRing::rotate_file(KeyPurpose::Lookup, dir.path()).unwrap();
        assert_eq!(new_id, KeyId(2));
        let after = KeyRing::load_file_only(KeyPurpose::Lookup, &path).unwrap();
        assert_eq!(
            after.get(KeyId(1)).unwrap().expose(),
            before.get(KeyId(1)).unwrap().expose()
        );
        assert_eq!(after.newest().0, KeyId(2));
    }

    #[test]
    fn a_key_file_readable_by_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        KeyRing::create_file_if_missing(KeyPurpose::Audit, dir.path()).unwrap();
        let path = dir.path().join("audit.keys");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = KeyRing::load_file_only(KeyPurpose::Audit, &path).unwrap_err();
        assert_eq!(err.code(), "keys.permissions");
    }
}
