//! Secret keys: the code lookup key and the audit key, each a ring of versioned 32-byte keys.
//!
//! Keys come from an environment variable or from a key file that `tender init` creates with mode
//! 0600; never from command-line arguments. The database records, per purpose and key id, a
//! fingerprint of the key (never the key) and whether it is pending, active or retired: new
//! digests and tags use the active id the database names, older ids stay in the ring so that
//! records written under them still verify and codes issued under them are found.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Once, RwLock};

use hmac::{Hmac, Mac};
use rand_core::{OsRng, TryRngCore};
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::{Classify, Kind};

mod seal;
pub use seal::{SEAL_KEY_ENV, SEAL_KEY_FILE, SEAL_PUBLIC_KEY_FILE, SealKey, SealPublicKey};

/// Length of every key in bytes: the output length of SHA-256, as RFC 2104 recommends.
pub const KEY_LEN: usize = 32;

/// Highest key id: ids are `SMALLINT` in every PostgreSQL column that holds one (one width
/// everywhere), so a ring may not name a larger one.
pub const KEY_ID_MAX: u16 = 32_767;

/// The label a key's fingerprint is computed over; the fingerprint identifies a key without
/// revealing it.
const FINGERPRINT_CONTEXT: &[u8] = b"tender-key-fingerprint-v1";

/// Identifies one version of a key within its ring; stored beside every digest and audit tag.
/// From 1 to [`KEY_ID_MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct KeyId(u16);

impl KeyId {
    /// A key id, if it is from 1 to [`KEY_ID_MAX`].
    pub fn new(id: u16) -> Option<KeyId> {
        (1..=KEY_ID_MAX).contains(&id).then_some(KeyId(id))
    }

    /// A stored key id, as the database's `SMALLINT` holds it.
    pub fn from_stored(id: i64) -> Option<KeyId> {
        u16::try_from(id).ok().and_then(KeyId::new)
    }

    /// The id as stored.
    pub fn stored(self) -> i16 {
        i16::try_from(self.0).expect("key ids are at most KEY_ID_MAX")
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

    pub(crate) fn from_hex(hex_text: &str) -> Option<SecretKey> {
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
    /// Both purposes, the audit key first (registering keys records audit events).
    pub const ALL: [KeyPurpose; 2] = [KeyPurpose::Audit, KeyPurpose::Lookup];

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

    /// The purpose's name, as the database and messages spell it.
    pub fn name(self) -> &'static str {
        match self {
            KeyPurpose::Lookup => "lookup",
            KeyPurpose::Audit => "audit",
        }
    }

    /// The purpose a stored name spells.
    pub fn parse(name: &str) -> Option<KeyPurpose> {
        match name {
            "lookup" => Some(KeyPurpose::Lookup),
            "audit" => Some(KeyPurpose::Audit),
            _ => None,
        }
    }
}

impl fmt::Display for KeyPurpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a key is in its life, as the database records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyState {
    /// Added, its file being copied to every host; nothing uses it yet.
    Pending,
    /// New digests or tags use it. One per purpose.
    Active,
    /// Once active: what it digested or tagged still needs it.
    Retired,
}

impl KeyState {
    /// The state's name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Pending => "pending",
            KeyState::Active => "active",
            KeyState::Retired => "retired",
        }
    }

    /// The state a stored name spells.
    pub fn parse(name: &str) -> Option<KeyState> {
        match name {
            "pending" => Some(KeyState::Pending),
            "active" => Some(KeyState::Active),
            "retired" => Some(KeyState::Retired),
            _ => None,
        }
    }
}

/// What the database records of one key: its id, fingerprint and state. Never the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedKey {
    /// The key's id within its purpose.
    pub id: KeyId,
    /// HMAC-SHA256 of a fixed label under the key: [`KeyRing::fingerprint`].
    pub fingerprint: [u8; 32],
    /// Where it is in its life.
    pub state: KeyState,
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
    /// The database uses a key this host's ring lacks.
    #[error(
        "this host has no {purpose} key {id}, which the database uses; copy {file} from a host that has it"
    )]
    NotInRing {
        /// Which ring.
        purpose: &'static str,
        /// The missing key id.
        id: KeyId,
        /// The key file to copy.
        file: &'static str,
    },
    /// The ring's key under an id is not the key the database knows by that id.
    #[error(
        "{purpose} key {id} on this host is not the key this database knows as {id}: the key files belong to another deployment"
    )]
    Different {
        /// Which ring.
        purpose: &'static str,
        /// The key id whose fingerprints differ.
        id: KeyId,
    },
    /// The database records no key of this purpose yet.
    #[error("this database has no {purpose} key recorded; run `tender init`")]
    Unregistered {
        /// Which ring.
        purpose: &'static str,
    },
    /// Another process on this host is adding a key.
    #[error("another process is adding a {purpose} key on this host; try again")]
    Busy {
        /// Which ring.
        purpose: &'static str,
    },
    /// Every key id is taken.
    #[error("no {purpose} key id is left after {KEY_ID_MAX}")]
    IdsExhausted {
        /// Which ring.
        purpose: &'static str,
    },
    /// A key file that is only ever created once exists already.
    #[error("{0} exists already; tender never overwrites a key file")]
    Exists(PathBuf),
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
            KeyError::NotInRing { .. } => "keys.not_in_ring",
            KeyError::Different { .. } => "keys.different",
            KeyError::Unregistered { .. } => "keys.unregistered",
            KeyError::IdsExhausted { .. } => "keys.ids_exhausted",
            KeyError::Busy { .. } => "keys.busy",
            KeyError::Exists(_) => "keys.exists",
            KeyError::Io { .. } => "keys.io",
        }
    }

    fn kind(&self) -> Kind {
        match self {
            KeyError::HeldInEnvironment { .. }
            | KeyError::IdsExhausted { .. }
            | KeyError::Exists(_) => Kind::Conflict,
            KeyError::Busy { .. } => Kind::Transient,
            _ => Kind::Internal,
        }
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

    /// The key's fingerprint: HMAC-SHA256 under the key of a fixed label and the purpose, so
    /// the database can tell keys apart without holding them. `None` if the ring lacks `id`.
    pub fn fingerprint(&self, id: KeyId) -> Option<[u8; 32]> {
        let key = self.get(id)?;
        let mut mac =
            Hmac::<Sha256>::new_from_slice(key.expose()).expect("HMAC takes keys of any length");
        mac.update(FINGERPRINT_CONTEXT);
        mac.update(self.purpose.name().as_bytes());
        Some(mac.finalize().into_bytes().into())
    }

    /// A key derived from key `id` for one use alone (`label` names it), so no key serves two
    /// purposes. `None` if the ring lacks `id`.
    pub fn derive(&self, id: KeyId, label: &[u8]) -> Option<SecretKey> {
        let key = self.get(id)?;
        let mut mac =
            Hmac::<Sha256>::new_from_slice(key.expose()).expect("HMAC takes keys of any length");
        mac.update(label);
        Some(SecretKey(mac.finalize().into_bytes().into()))
    }

    /// Checks the ring against what the database records: every active or retired key must be
    /// in the ring, and every recorded key the ring holds must have the recorded fingerprint.
    /// Keys the database does not know (a rotation that never committed) are ignored; nothing
    /// uses them.
    pub fn check(&self, recorded: &[RecordedKey]) -> Result<(), KeyError> {
        let purpose = self.purpose.name();
        if recorded.is_empty() {
            return Err(KeyError::Unregistered { purpose });
        }
        for key in recorded {
            match self.fingerprint(key.id) {
                None if key.state == KeyState::Pending => {}
                None => {
                    return Err(KeyError::NotInRing {
                        purpose,
                        id: key.id,
                        file: self.purpose.file_name(),
                    });
                }
                Some(found) => {
                    if !bool::from(subtle::ConstantTimeEq::ct_eq(
                        &found[..],
                        &key.fingerprint[..],
                    )) {
                        return Err(KeyError::Different {
                            purpose,
                            id: key.id,
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether the ring holds every one of `ids`.
    pub fn holds(&self, ids: &[KeyId]) -> bool {
        ids.iter().all(|id| self.keys.contains_key(id))
    }

    /// Loads the ring from its environment variable if set, otherwise from its file in `key_dir`.
    pub fn load(purpose: KeyPurpose, key_dir: &Path) -> Result<KeyRing, KeyError> {
        harden_process();
        if let Ok(text) = std::env::var(purpose.env_var()) {
            let text = Zeroizing::new(text);
            let lines = Zeroizing::new(text.replace(',', "\n"));
            return KeyRing::parse(purpose, &lines, purpose.env_var());
        }
        let path = key_dir.join(purpose.file_name());
        let text = read_secret_file(&path, purpose.name(), purpose.env_var())?;
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
            let id =
                id.trim().parse().ok().and_then(KeyId::new).ok_or_else(|| {
                    malformed(entry, "the key id is not a number from 1 to 32767")
                })?;
            let key = SecretKey::from_hex(hex_text.trim())
                .ok_or_else(|| malformed(entry, "the key is not 64 hexadecimal digits"))?;
            if keys.insert(id, key).is_some() {
                return Err(malformed(entry, "the key id appears twice"));
            }
        }
        if keys.is_empty() {
            return Err(malformed(0, "the ring holds no key"));
        }
        Ok(KeyRing { purpose, keys })
    }

    /// Creates the key file with one fresh key (id 1) unless it exists. Returns whether it was
    /// created. A missing key directory is created with mode 0700; an existing one is left as
    /// it is (it may be a home directory).
    pub fn create_file_if_missing(purpose: KeyPurpose, key_dir: &Path) -> Result<bool, KeyError> {
        let path = key_dir.join(purpose.file_name());
        let io = |source| KeyError::Io {
            path: path.clone(),
            source,
        };
        create_private_dir(key_dir).map_err(io)?;
        let key = SecretKey::generate();
        let text = Zeroizing::new(format!("1 {}\n", hex::encode(key.expose())));
        match write_new_file(&path, &text) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(io(e)),
        }
        sync_dir(key_dir).map_err(io)?;
        Ok(true)
    }

    /// Adds key `id` (fresh from the operating system) to the key file, keeping the others;
    /// returns the ring as written. The caller holds [`KeyFileLock`], so two additions never
    /// overwrite each other.
    pub fn add_to_file(
        _lock: &KeyFileLock,
        purpose: KeyPurpose,
        key_dir: &Path,
        id: KeyId,
    ) -> Result<KeyRing, KeyError> {
        let path = key_dir.join(purpose.file_name());
        let mut ring = KeyRing::load_file_only(purpose, &path)?;
        ring.keys.insert(id, SecretKey::generate());
        let mut text = Zeroizing::new(String::new());
        for (id, key) in ring.iter() {
            text.push_str(&format!(
                "{id} {}\n",
                Zeroizing::new(hex::encode(key.expose())).as_str()
            ));
        }
        // Write beside and rename, so a crash never leaves a half-written ring; then sync the
        // directory so the rename itself survives a crash.
        let staging = path.with_extension("keys.new");
        let io = |source| KeyError::Io {
            path: path.clone(),
            source,
        };
        let _ = fs::remove_file(&staging);
        write_new_file(&staging, &text).map_err(io)?;
        fs::rename(&staging, &path).map_err(io)?;
        sync_dir(key_dir).map_err(io)?;
        Ok(ring)
    }

    /// The ring as its file holds it; refused while the environment holds this purpose's keys
    /// (a file edit would not be what the process uses).
    pub fn load_file_only(purpose: KeyPurpose, path: &Path) -> Result<KeyRing, KeyError> {
        let key_dir = path.parent().unwrap_or(Path::new("."));
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

/// An exclusive lock on a purpose's key file, held while it is rewritten.
#[derive(Debug)]
pub struct KeyFileLock(#[allow(dead_code)] fs::File);

impl KeyFileLock {
    /// Takes the lock on `key_dir`'s lock file for `purpose`; `None` while another holds it.
    pub fn try_acquire(
        purpose: KeyPurpose,
        key_dir: &Path,
    ) -> Result<Option<KeyFileLock>, KeyError> {
        let path = key_dir.join(format!("{}.lock", purpose.file_name()));
        let file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|source| KeyError::Io {
                path: path.clone(),
                source,
            })?;
        match file.try_lock() {
            Ok(()) => Ok(Some(KeyFileLock(file))),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(source)) => Err(KeyError::Io { path, source }),
        }
    }
}

/// Creates `dir` (and missing parents) with mode 0700 where it does not exist; an existing
/// directory's mode is never changed.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Makes a directory's entries (a new or renamed file) durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Once per process that loads a secret key: no core dump (it would hold the keys and any codes
/// in memory) and no ptrace attach by other processes of the same user.
pub fn harden_process() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let none = rustix::process::Rlimit {
            current: Some(0),
            maximum: Some(0),
        };
        if let Err(error) = rustix::process::setrlimit(rustix::process::Resource::Core, none) {
            tracing::warn!(%error, "could not disable core dumps");
        }
        if let Err(error) =
            rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        {
            tracing::warn!(%error, "could not mark the process not dumpable");
        }
    });
}

/// Reads a key file that only its owner may read; `Missing` names `env_var` as the other way
/// to supply the key.
fn read_secret_file(
    path: &Path,
    purpose: &'static str,
    env_var: &'static str,
) -> Result<Zeroizing<String>, KeyError> {
    let metadata = match fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(KeyError::Missing {
                purpose,
                env_var,
                file: path.to_path_buf(),
            });
        }
        Err(source) => {
            return Err(KeyError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    if metadata.permissions().mode() & 0o077 != 0 {
        return Err(KeyError::Permissions(path.to_path_buf()));
    }
    let mut text = Zeroizing::new(String::new());
    fs::File::open(path)
        .and_then(|mut file| file.read_to_string(&mut text))
        .map_err(|source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(text)
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

/// One purpose's ring as a process holds it: loaded once, and loaded again when the database
/// names a key the ring lacks (a key activated after this process started).
#[derive(Debug)]
pub struct Keychain {
    purpose: KeyPurpose,
    key_dir: PathBuf,
    ring: RwLock<Arc<KeyRing>>,
}

impl Keychain {
    /// Loads `purpose`'s ring from the environment or `key_dir`.
    pub fn load(purpose: KeyPurpose, key_dir: &Path) -> Result<Keychain, KeyError> {
        Ok(Keychain::new(KeyRing::load(purpose, key_dir)?, key_dir))
    }

    /// A keychain over a ring already loaded, reloading from `key_dir`.
    pub fn new(ring: KeyRing, key_dir: &Path) -> Keychain {
        Keychain {
            purpose: ring.purpose,
            key_dir: key_dir.to_path_buf(),
            ring: RwLock::new(Arc::new(ring)),
        }
    }

    /// Which purpose it serves.
    pub fn purpose(&self) -> KeyPurpose {
        self.purpose
    }

    /// The ring as loaded.
    pub fn ring(&self) -> Arc<KeyRing> {
        self.ring.read().expect("key ring lock").clone()
    }

    /// A ring holding every one of `ids`, loading the ring again once if the current one lacks
    /// any; `Err` names the first id still missing.
    pub fn ring_holding(&self, ids: &[KeyId]) -> Result<Arc<KeyRing>, KeyId> {
        let ring = self.ring();
        if ring.holds(ids) {
            return Ok(ring);
        }
        match KeyRing::load(self.purpose, &self.key_dir) {
            Ok(fresh) if fresh.holds(ids) => {
                let fresh = Arc::new(fresh);
                *self.ring.write().expect("key ring lock") = fresh.clone();
                tracing::info!(purpose = self.purpose.name(), "key ring loaded again");
                Ok(fresh)
            }
            Ok(fresh) => Err(first_missing(&fresh, ids)),
            Err(error) => {
                tracing::warn!(%error, "key ring could not be loaded again");
                Err(first_missing(&ring, ids))
            }
        }
    }
}

fn first_missing(ring: &KeyRing, ids: &[KeyId]) -> KeyId {
    *ids.iter()
        .find(|id| ring.get(**id).is_none())
        .expect("some id is missing")
}

/// Which key rings a command loads: each only where it needs it, so a read command holds no
/// secret at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeyNeeds {
    /// The lookup ring: code generation, printer-file checks, redemption.
    pub lookup: bool,
    /// The audit ring: anything that appends to the trail.
    pub audit: bool,
    /// The audit ring where this host has it: verification checks record tags with it, and
    /// runs its other proofs without it.
    pub audit_if_present: bool,
}

impl KeyNeeds {
    /// No key: listings and reads.
    pub const NONE: KeyNeeds = KeyNeeds {
        lookup: false,
        audit: false,
        audit_if_present: false,
    };
    /// The audit key only: changes that record an audit event.
    pub const AUDIT: KeyNeeds = KeyNeeds {
        audit: true,
        ..KeyNeeds::NONE
    };
    /// The audit key if present: verifying the trail.
    pub const AUDIT_IF_PRESENT: KeyNeeds = KeyNeeds {
        audit_if_present: true,
        ..KeyNeeds::NONE
    };
    /// Both keys: the job runner, printer-file checks.
    pub const ALL: KeyNeeds = KeyNeeds {
        lookup: true,
        audit: true,
        audit_if_present: false,
    };

    /// Whether `purpose` is needed.
    pub fn needs(self, purpose: KeyPurpose) -> bool {
        match purpose {
            KeyPurpose::Lookup => self.lookup,
            KeyPurpose::Audit => self.audit,
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
        assert!(ring.fingerprint(KeyId(1)).is_some());
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
    fn key_files_are_created_private_and_an_addition_keeps_old_ids() {
        let dir = tempfile::tempdir().unwrap();
        let key_dir = dir.path().join("keys");
        assert!(KeyRing::create_file_if_missing(KeyPurpose::Lookup, &key_dir).unwrap());
        assert!(!KeyRing::create_file_if_missing(KeyPurpose::Lookup, &key_dir).unwrap());
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let path = key_dir.join("lookup.keys");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&key_dir), 0o700);
        let before = KeyRing::load_file_only(KeyPurpose::Lookup, &path).unwrap();
        let lock = KeyFileLock::try_acquire(KeyPurpose::Lookup, &key_dir)
            .unwrap()
            .unwrap();
        assert!(
            KeyFileLock::try_acquire(KeyPurpose::Lookup, &key_dir)
                .unwrap()
                .is_none()
        );
        let after = KeyRing::add_to_file(&lock, KeyPurpose::Lookup, &key_dir, KeyId(2)).unwrap();
        assert_eq!(
            after.get(KeyId(1)).unwrap().expose(),
            before.get(KeyId(1)).unwrap().expose()
        );
        assert_eq!(after.newest().0, KeyId(2));
        let reread = KeyRing::load_file_only(KeyPurpose::Lookup, &path).unwrap();
        assert_eq!(reread.fingerprint(KeyId(2)), after.fingerprint(KeyId(2)));
    }

    #[test]
    fn an_existing_key_directory_keeps_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        KeyRing::create_file_if_missing(KeyPurpose::Audit, dir.path()).unwrap();
        assert_eq!(
            fs::metadata(dir.path()).unwrap().permissions().mode() & 0o777,
            0o755
        );
    }

    #[test]
    fn key_ids_are_one_to_32767() {
        for bad in ["0", "32768", "65535", "-1"] {
            let text = format!("{bad} {}", "01".repeat(32));
            let err = KeyRing::parse(KeyPurpose::Lookup, &text, "test").unwrap_err();
            assert_eq!(err.code(), "keys.malformed", "{bad}");
        }
        let text = format!("32767 {}", "01".repeat(32));
        assert!(KeyRing::parse(KeyPurpose::Lookup, &text, "test").is_ok());
    }

    #[test]
    fn a_ring_is_checked_against_the_recorded_fingerprints() {
        let ring = KeyRing::single(KeyPurpose::Lookup, KeyId(1), SecretKey::generate());
        let other = KeyRing::single(KeyPurpose::Lookup, KeyId(1), SecretKey::generate());
        let recorded = |ring: &KeyRing, id: u16, state| RecordedKey {
            id: KeyId(id),
            fingerprint: ring.fingerprint(KeyId(1)).unwrap(),
            state,
        };
        assert!(ring.check(&[recorded(&ring, 1, KeyState::Active)]).is_ok());
        let err = ring
            .check(&[recorded(&other, 1, KeyState::Active)])
            .unwrap_err();
        assert_eq!(err.code(), "keys.different");
        // A pending key this host has not received yet is no error; a retired one is.
        let both = [
            recorded(&ring, 1, KeyState::Active),
            recorded(&other, 2, KeyState::Pending),
        ];
        assert!(ring.check(&both).is_ok());
        let both = [
            recorded(&ring, 1, KeyState::Active),
            recorded(&other, 2, KeyState::Retired),
        ];
        assert_eq!(ring.check(&both).unwrap_err().code(), "keys.not_in_ring");
        assert_eq!(ring.check(&[]).unwrap_err().code(), "keys.unregistered");
    }

    #[test]
    fn fingerprints_differ_by_purpose_and_reveal_nothing_of_the_key() {
        let key = SecretKey::from_hex(&"ab".repeat(32)).unwrap();
        let lookup = KeyRing::single(KeyPurpose::Lookup, KeyId(1), key.clone());
        let audit = KeyRing::single(KeyPurpose::Audit, KeyId(1), key);
        let fp = lookup.fingerprint(KeyId(1)).unwrap();
        assert_ne!(fp, audit.fingerprint(KeyId(1)).unwrap());
        assert_ne!(&fp, lookup.get(KeyId(1)).unwrap().expose());
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
