//! The seal key: an Ed25519 key pair, apart from the audit and lookup rings. Only the sealing
//! process holds the private half (from `TENDER_SEAL_KEY` or `seal.key`); anyone may hold the
//! public half (`seal.pub`, or the witness file's header) and check every seal with it. So a
//! verifier can no longer forge what it verifies, which the symmetric audit key allowed.

use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::{KeyError, SecretKey, create_private_dir, harden_process, read_secret_file, sync_dir};

/// The environment variable that may hold the seal key's 64 hex digits (its Ed25519 seed).
pub const SEAL_KEY_ENV: &str = "TENDER_SEAL_KEY";
/// The seal key's file in the key directory.
pub const SEAL_KEY_FILE: &str = "seal.key";
/// The public key's file, written beside the seal key for the verifiers.
pub const SEAL_PUBLIC_KEY_FILE: &str = "seal.pub";

const PURPOSE: &str = "seal";
/// The first word of a public key's text, so a file of another kind is never taken for one.
const PUBLIC_KEY_TAG: &str = "tender-seal-public-key-v1";
const FINGERPRINT_CONTEXT: &[u8] = b"tender-seal-key-fingerprint-v1";

/// The private seal key. Its `Debug` shows only the public half's fingerprint; the seed is
/// wiped when it drops.
pub struct SealKey(SigningKey);

impl SealKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> SealKey {
        SealKey(SigningKey::from_bytes(SecretKey::generate().expose()))
    }

    /// The public half.
    pub fn public(&self) -> SealPublicKey {
        SealPublicKey(self.0.verifying_key())
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }

    /// Loads the key from [`SEAL_KEY_ENV`] if set, otherwise from [`SEAL_KEY_FILE`] in `key_dir`
    /// (which only its owner may read).
    pub fn load(key_dir: &Path) -> Result<SealKey, KeyError> {
        harden_process();
        if let Ok(text) = std::env::var(SEAL_KEY_ENV) {
            return SealKey::parse(&Zeroizing::new(text), SEAL_KEY_ENV);
        }
        let path = key_dir.join(SEAL_KEY_FILE);
        let text = read_secret_file(&path, PURPOSE, SEAL_KEY_ENV)?;
        SealKey::parse(&text, &path.display().to_string())
    }

    /// Creates a fresh seal key in `key_dir` (mode 0600) and its public key beside it; refuses
    /// when a seal key file exists, so a key that signed seals is never lost.
    pub fn create_files(key_dir: &Path) -> Result<SealKey, KeyError> {
        harden_process();
        let path = key_dir.join(SEAL_KEY_FILE);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| KeyError::Io { path, source }
        };
        create_private_dir(key_dir).map_err(io(key_dir))?;
        let key = SealKey::generate();
        let text = Zeroizing::new(format!(
            "# tender seal key (Ed25519 seed): only the sealing host holds this file\n{}\n",
            hex::encode(key.0.to_bytes())
        ));
        let written = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut file| {
                file.write_all(text.as_bytes())?;
                file.sync_all()
            });
        match written {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(KeyError::Exists(path));
            }
            Err(e) => return Err(io(&path)(e)),
        }
        let public_path = key_dir.join(SEAL_PUBLIC_KEY_FILE);
        key.public()
            .write_file(&public_path)
            .map_err(io(&public_path))?;
        sync_dir(key_dir).map_err(io(key_dir))?;
        Ok(key)
    }

    fn parse(text: &str, source_name: &str) -> Result<SealKey, KeyError> {
        let malformed = |reason| KeyError::Malformed {
            purpose: PURPOSE,
            source_name: source_name.to_string(),
            entry: 1,
            reason,
        };
        let mut entries = text
            .lines()
            .map(|line| line.split('#').next().unwrap_or("").trim())
            .filter(|line| !line.is_empty());
        let seed = entries
            .next()
            .and_then(SecretKey::from_hex)
            .ok_or_else(|| malformed("the seal key is not 64 hexadecimal digits"))?;
        if entries.next().is_some() {
            return Err(malformed("a seal key file holds exactly one key"));
        }
        Ok(SealKey(SigningKey::from_bytes(seed.expose())))
    }
}

impl fmt::Debug for SealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealKey({})", self.public().short())
    }
}

/// The public half of a seal key: what verifiers hold.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SealPublicKey(VerifyingKey);

impl SealPublicKey {
    /// SHA-256 of the key under a context: what the database stores of it.
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut hash = Sha256::new();
        hash.update(FINGERPRINT_CONTEXT);
        hash.update(self.0.as_bytes());
        hash.finalize().into()
    }

    /// The first 8 bytes of the fingerprint, hex: enough to compare by eye.
    pub fn short(&self) -> String {
        hex::encode(&self.fingerprint()[..8])
    }

    /// Whether `signature` is this key's over `message` (strict: no malleable encodings).
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        self.0
            .verify_strict(message, &Signature::from_bytes(signature))
            .is_ok()
    }

    /// The key as one line of text: a tag word, then 64 hex digits.
    pub fn to_line(&self) -> String {
        format!("{PUBLIC_KEY_TAG} {}", hex::encode(self.0.as_bytes()))
    }

    /// Parses [`SealPublicKey::to_line`]'s form; `None` for anything else.
    pub fn parse_line(line: &str) -> Option<SealPublicKey> {
        let hex_text = line
            .trim()
            .strip_prefix(PUBLIC_KEY_TAG)?
            .strip_prefix(' ')?;
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_text.trim(), &mut bytes).ok()?;
        VerifyingKey::from_bytes(&bytes).ok().map(SealPublicKey)
    }

    /// Reads a public key file (one line, as [`SealPublicKey::to_line`] writes it).
    pub fn read_file(path: &Path) -> Result<SealPublicKey, KeyError> {
        let text = fs::read_to_string(path).map_err(|source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        SealPublicKey::parse_line(&text).ok_or_else(|| KeyError::Malformed {
            purpose: PURPOSE,
            source_name: path.display().to_string(),
            entry: 1,
            reason: "expected `tender-seal-public-key-v1` and 64 hexadecimal digits",
        })
    }

    fn write_file(&self, path: &Path) -> std::io::Result<()> {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        writeln!(file, "{}", self.to_line())?;
        // Public: readable by the verifiers whatever the process umask.
        file.set_permissions(fs::Permissions::from_mode(0o644))?;
        file.sync_all()
    }
}

impl fmt::Debug for SealPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealPublicKey({})", self.short())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_under_its_own_key_and_message() {
        let (key, other) = (SealKey::generate(), SealKey::generate());
        let signature = key.sign(b"seal 1");
        assert!(key.public().verify(b"seal 1", &signature));
        assert!(!key.public().verify(b"seal 2", &signature));
        assert!(!other.public().verify(b"seal 1", &signature));
    }

    #[test]
    fn the_public_key_round_trips_through_its_line() {
        let public = SealKey::generate().public();
        assert_eq!(SealPublicKey::parse_line(&public.to_line()), Some(public));
        assert_eq!(SealPublicKey::parse_line(&public.to_line()[1..]), None);
    }

    #[test]
    fn the_key_file_is_created_once_and_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let key = SealKey::create_files(dir.path()).unwrap();
        let loaded = SealKey::load(dir.path()).unwrap();
        assert_eq!(loaded.public(), key.public());
        let public = SealPublicKey::read_file(&dir.path().join(SEAL_PUBLIC_KEY_FILE)).unwrap();
        assert_eq!(public, key.public());
        assert!(matches!(
            SealKey::create_files(dir.path()),
            Err(KeyError::Exists(_))
        ));
        assert!(!format!("{key:?}").contains(&hex::encode(key.0.to_bytes())));
    }
}
