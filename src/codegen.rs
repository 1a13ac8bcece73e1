//! Code generation and lookup digests.
//!
//! Codes are drawn from ChaCha20 seeded by the operating system, as 16 uniformly random digits
//! (no check digit: it would make guessing ten times easier). A code whose first digit is 3, 4, 5
//! or 6 is drawn again, so no code can pass for a payment card number. Codes are found by their
//! HMAC-SHA256 digest under the newest lookup key; the code itself is never stored.

use std::collections::VecDeque;
use std::fmt;

use hmac::{Hmac, Mac};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::domain::Code;
use crate::keys::{KeyId, KeyRing};

/// 10^16: the number of 16-digit strings.
const CODE_SPACE: u64 = 10_000_000_000_000_000;
/// The largest multiple of 10^16 that fits in a u64; draws at or above it are rejected, so the
/// remainder is exactly uniform (no modulo bias). About 3.7 draws in 10,000 are rejected.
const UNBIASED_LIMIT: u64 = (u64::MAX / CODE_SPACE) * CODE_SPACE;
/// Domain separation: digests of codes can never collide with MACs computed for another purpose.
const DIGEST_CONTEXT: &[u8] = b"tender-code-v1\0";

/// Anything that yields codes for a batch: the CSPRNG in production.
pub trait CodeSource: Send + Sync {
    /// The next candidate code.
    fn next_code(&mut self) -> Code;
}

/// ChaCha20 seeded from the operating system.
pub struct CodeGenerator {
    rng: ChaCha20Rng,
}

impl CodeGenerator {
    /// A generator seeded from the operating system's random source.
    pub fn from_os_rng() -> CodeGenerator {
        CodeGenerator {
            rng: ChaCha20Rng::from_os_rng(),
        }
    }

    /// One uniform draw from the allowed code space.
    fn draw(&mut self) -> u64 {
        loop {
            let x = self.rng.next_u64();
            if x >= UNBIASED_LIMIT {
                continue;
            }
            let value = x % CODE_SPACE;
            // Rejecting whole draws (not remapping the digit) keeps every allowed code equally likely.
            if matches!(value / (CODE_SPACE / 10), 3..=6) {
                continue;
            }
            return value;
        }
    }
}

impl fmt::Debug for CodeGenerator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CodeGenerator([redacted])")
    }
}

impl CodeSource for CodeGenerator {
    fn next_code(&mut self) -> Code {
        let mut value = self.draw();
        let mut digits = [b'0'; 16];
        for digit in digits.iter_mut().rev() {
            *digit = b'0' + (value % 10) as u8;
            value /= 10;
        }
        Code::from_digits(digits).expect("formatted digits are ASCII digits")
    }
}

/// Yields the given codes first, then random ones: lets tests force a collision.
pub struct ScriptedCodes {
    scripted: VecDeque<Code>,
    then: CodeGenerator,
}

impl ScriptedCodes {
    /// Yields `codes` in order, then falls back to the CSPRNG.
    pub fn new(codes: impl IntoIterator<Item = Code>) -> ScriptedCodes {
        ScriptedCodes {
            scripted: codes.into_iter().collect(),
            then: CodeGenerator::from_os_rng(),
        }
    }
}

impl CodeSource for ScriptedCodes {
    fn next_code(&mut self) -> Code {
        self.scripted
            .pop_front()
            .unwrap_or_else(|| self.then.next_code())
    }
}

/// The keyed HMAC-SHA256 digest by which a code is found. `Debug` does not show it: a digest is
/// as sensitive as the key that made it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CodeDigest(pub [u8; 32]);

impl fmt::Debug for CodeDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CodeDigest([redacted])")
    }
}

impl CodeDigest {
    /// Compares two digests in constant time.
    pub fn ct_eq(&self, other: &CodeDigest) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

/// Computes lookup digests: under one current key (a batch's), and under the others that codes
/// may have been issued under. Keyed once, cloned per code.
#[derive(Clone)]
pub struct Digester {
    /// Pre-keyed MAC states with the context already absorbed.
    current: (KeyId, Hmac<Sha256>),
    others: Vec<(KeyId, Hmac<Sha256>)>,
}

impl fmt::Debug for Digester {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Digester")
            .field("current", &self.current.0)
            .field(
                "others",
                &self.others.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Digester {
    /// Digests under key `current` of `ring`, and under each of `others` (`current` among
    /// them is skipped). `None` if the ring lacks any of them.
    pub fn new(ring: &KeyRing, current: KeyId, others: &[KeyId]) -> Option<Digester> {
        let keyed = |id: KeyId| -> Option<(KeyId, Hmac<Sha256>)> {
            let mut mac = Hmac::<Sha256>::new_from_slice(ring.get(id)?.expose())
                .expect("HMAC takes keys of any length");
            mac.update(DIGEST_CONTEXT);
            Some((id, mac))
        };
        Some(Digester {
            current: keyed(current)?,
            others: others
                .iter()
                .filter(|&&id| id != current)
                .map(|&id| keyed(id))
                .collect::<Option<_>>()?,
        })
    }

    /// Digests under every key of `ring`, the newest current: for checking codes issued
    /// under any of them.
    pub fn whole_ring(ring: &KeyRing) -> Digester {
        let ids: Vec<KeyId> = ring.iter().map(|(id, _)| id).collect();
        Digester::new(ring, ring.newest().0, &ids).expect("every id comes from the ring")
    }

    /// The id of the key that new codes are digested under.
    pub fn key_id(&self) -> KeyId {
        self.current.0
    }

    /// The digest of `code` under the current key.
    pub fn digest(&self, code: &Code) -> CodeDigest {
        Self::digest_with(&self.current.1, code)
    }

    /// The digest of `code` under the key `id`, if this digester holds it.
    pub fn digest_under(&self, id: KeyId, code: &Code) -> Option<CodeDigest> {
        std::iter::once(&self.current)
            .chain(&self.others)
            .find(|(key_id, _)| *key_id == id)
            .map(|(_, mac)| Self::digest_with(mac, code))
    }

    /// Whether codes may have been issued under keys other than the current one (such codes
    /// must not be issued again under it).
    pub fn has_other_keys(&self) -> bool {
        !self.others.is_empty()
    }

    /// The digests of `code` under every key but the current one.
    pub fn other_digests<'a>(&'a self, code: &'a Code) -> impl Iterator<Item = CodeDigest> + 'a {
        self.others
            .iter()
            .map(move |(_, mac)| Self::digest_with(mac, code))
    }

    fn digest_with(mac: &Hmac<Sha256>, code: &Code) -> CodeDigest {
        let mut mac = mac.clone();
        mac.update(code.as_bytes());
        CodeDigest(mac.finalize().into_bytes().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{KeyPurpose, SecretKey};

    #[test]
    fn the_rejection_limit_is_the_largest_multiple_of_the_code_space() {
        assert_eq!(UNBIASED_LIMIT % CODE_SPACE, 0);
        assert!(UNBIASED_LIMIT.checked_add(CODE_SPACE).is_none());
    }

    #[test]
    fn digests_depend_on_the_key_and_the_code() {
        let code = Code::parse("1234 5678 9012 3456").unwrap();
        let other = Code::parse("1234 5678 9012 3457").unwrap();
        let ring = || {
            KeyRing::single(
                KeyPurpose::Lookup,
                KeyId::new(1).unwrap(),
                SecretKey::generate(),
            )
        };
        let a = Digester::whole_ring(&ring());
        let b = Digester::whole_ring(&ring());
        assert!(a.digest(&code).ct_eq(&a.digest(&code)));
        assert!(!a.digest(&code).ct_eq(&a.digest(&other)));
        assert!(!a.digest(&code).ct_eq(&b.digest(&code)));
        assert_eq!(format!("{:?}", a.digest(&code)), "CodeDigest([redacted])");
    }
}
