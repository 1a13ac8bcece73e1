//! The tamper-evident audit trail.
//!
//! Every state change appends a record in the same database transaction as the change. Records
//! form [`CHAIN_COUNT`] independent chains (a record's chain is a hash of its subject), so
//! unrelated operations never wait on one chain head. Each record carries two proofs over one
//! unambiguous encoding of its fields:
//! - a tag, HMAC-SHA256 under the audit key, chained to the previous tag of its chain: only
//!   holders of the audit key can check it, and forge it;
//! - a hash, SHA-256 over the record, its tag and the previous hash of its chain: anyone can
//!   recompute it.
//!
//! A [`Seal`] signs, with the Ed25519 seal key, every chain's record count and newest hash and
//! the previous seal's hash. With the seal's public key alone, a verifier proves every record up
//! to the newest seal; a witness file outside the database (see [`witness`]) proves which seals
//! existed, so deleting the newest seals, wiping the trail or restoring an older copy shows.

pub mod events;
mod verify;
pub mod witness;

pub use verify::{
    AuditVerifier, ChainCursor, KeyWindows, Problem, Proofs, SealSummary, VerifyInputs,
    VerifyReport,
};

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::digest::Update;
use sha2::{Digest, Sha256};

use std::sync::Arc;

use crate::domain::Actor;
use crate::keys::{KeyId, KeyRing, SealKey, SealPublicKey};

/// How many independent chains the trail has. Fixed by the first migration: changing it would
/// move subjects between chains.
pub const CHAIN_COUNT: u32 = 16;
/// The tag and the hash that stand before the first record of every chain, and before the first
/// seal.
pub const GENESIS: [u8; 32] = [0; 32];

const RECORD_CONTEXT: &[u8] = b"tender-audit-record-v1";
const RECORD_HASH_CONTEXT: &[u8] = b"tender-audit-record-hash-v1";
const SEAL_HASH_CONTEXT: &[u8] = b"tender-audit-seal-v2";
const SEAL_SIGN_CONTEXT: &[u8] = b"tender-audit-seal-signature-v2";

/// A state change to record: who did what to which subject, with non-secret details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// Who caused it: an [`Actor`]'s full form (`cli:<user>[/<suffix>]`, `job:<name>` or
    /// `system`).
    pub actor: String,
    /// What happened, as a dotted verb: `batch.requested`.
    pub action: &'static str,
    /// What it happened to: `batch:7`, `retailer:2`.
    pub subject: String,
    /// Compact JSON of details. Never a code, a digest or a key.
    pub details: String,
}

impl AuditEvent {
    /// An event whose details are serialised from `details`.
    pub fn new(
        actor: &Actor,
        action: &'static str,
        subject: String,
        details: impl Serialize,
    ) -> Self {
        AuditEvent {
            actor: actor.to_string(),
            action,
            subject,
            details: serde_json::to_string(&details).expect("audit details serialise to JSON"),
        }
    }

    /// The chain this event's subject belongs to (FNV-1a, stable across versions and platforms).
    pub fn chain(&self) -> u32 {
        chain_of(&self.subject)
    }
}

/// The chain a subject's records go to.
pub fn chain_of(subject: &str) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in subject.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash % CHAIN_COUNT
}

/// A stored audit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// The chain it belongs to.
    pub chain: u32,
    /// Its position in the chain, from 1.
    pub seq: i64,
    /// When it was written, to the microsecond (what both databases store exactly).
    pub recorded_at: DateTime<Utc>,
    /// Who caused it.
    pub actor: String,
    /// What happened.
    pub action: String,
    /// What it happened to.
    pub subject: String,
    /// Compact JSON details.
    pub details: String,
    /// The audit key that tagged it.
    pub key_id: KeyId,
    /// HMAC-SHA256 over the record and the previous tag of its chain.
    pub tag: [u8; 32],
    /// SHA-256 over the record, its tag and the previous hash of its chain.
    pub hash: [u8; 32],
}

impl AuditRecord {
    /// The hash this record must carry when `prev_hash` is its predecessor's.
    pub fn expected_hash(&self, prev_hash: &[u8; 32]) -> [u8; 32] {
        let mut hash = Sha256::new();
        let mut encoder = Encoder(&mut hash);
        encoder.bytes(RECORD_HASH_CONTEXT);
        self.encode(&mut encoder);
        encoder.bytes(&self.tag);
        encoder.bytes(prev_hash);
        hash.finalize().into()
    }

    /// The fields both proofs cover, in one order.
    fn encode<D: Update>(&self, encoder: &mut Encoder<'_, D>) {
        encoder.bytes(&self.chain.to_be_bytes());
        encoder.bytes(&self.seq.to_be_bytes());
        encoder.bytes(&self.recorded_at.timestamp_micros().to_be_bytes());
        encoder.bytes(self.actor.as_bytes());
        encoder.bytes(self.action.as_bytes());
        encoder.bytes(self.subject.as_bytes());
        encoder.bytes(self.details.as_bytes());
        encoder.bytes(&self.key_id.get().to_be_bytes());
    }
}

/// A chain's head row: a cache for appenders (the next record's predecessor, and the audit key
/// it is tagged under), never evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainHead {
    /// Which chain.
    pub chain: u32,
    /// The last sequence number (0 for an empty chain).
    pub seq: i64,
    /// The last tag ([`GENESIS`] for an empty chain).
    pub tag: [u8; 32],
    /// The last hash ([`GENESIS`] for an empty chain).
    pub hash: [u8; 32],
    /// The audit key the chain's next record is tagged under; `None` before `tender init`.
    pub key_id: Option<KeyId>,
}

/// What a seal records of one chain: how many records it has, and the newest one's hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SealedHead {
    /// Which chain.
    pub chain: u32,
    /// Its record count, which is its newest sequence number.
    pub seq: i64,
    /// The newest record's hash ([`GENESIS`] for an empty chain).
    #[serde(with = "hex_bytes")]
    pub hash: [u8; 32],
}

/// A stored seal: every chain's count and newest hash at one moment, chained to the previous
/// seal by hash and signed under the seal key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seal {
    /// Position in the seal chain, from 1.
    pub seal_id: i64,
    /// When it was made, to the microsecond.
    pub sealed_at: DateTime<Utc>,
    /// One head per chain, in chain order.
    pub heads: Vec<SealedHead>,
    /// The fingerprint of the public key that signed it.
    pub key_fingerprint: [u8; 32],
    /// SHA-256 over the seal and the previous seal's hash.
    pub hash: [u8; 32],
    /// Ed25519 over the hash.
    pub signature: [u8; 64],
}

impl Seal {
    /// Makes and signs the seal after the one hashed `prev_hash`.
    pub fn sign(
        key: &SealKey,
        seal_id: i64,
        sealed_at: DateTime<Utc>,
        heads: Vec<SealedHead>,
        prev_hash: &[u8; 32],
    ) -> Seal {
        let mut seal = Seal {
            seal_id,
            sealed_at,
            heads,
            key_fingerprint: key.public().fingerprint(),
            hash: GENESIS,
            signature: [0; 64],
        };
        seal.hash = seal.expected_hash(prev_hash);
        seal.signature = key.sign(&seal.signed_message());
        seal
    }

    /// The hash this seal must carry when `prev_hash` is its predecessor's.
    pub fn expected_hash(&self, prev_hash: &[u8; 32]) -> [u8; 32] {
        let mut hash = Sha256::new();
        let mut encoder = Encoder(&mut hash);
        encoder.bytes(SEAL_HASH_CONTEXT);
        encoder.bytes(&self.seal_id.to_be_bytes());
        encoder.bytes(&self.sealed_at.timestamp_micros().to_be_bytes());
        encoder.bytes(encode_heads(&self.heads).as_bytes());
        encoder.bytes(&self.key_fingerprint);
        encoder.bytes(prev_hash);
        hash.finalize().into()
    }

    /// Whether `key` signed this seal's hash (and the seal names it).
    pub fn signed_by(&self, key: &SealPublicKey) -> bool {
        self.key_fingerprint == key.fingerprint()
            && key.verify(&self.signed_message(), &self.signature)
    }

    fn signed_message(&self) -> Vec<u8> {
        [SEAL_SIGN_CONTEXT, &self.hash[..]].concat()
    }

    /// The sealed head of `chain`.
    pub fn head(&self, chain: u32) -> Option<&SealedHead> {
        self.heads.iter().find(|head| head.chain == chain)
    }
}

/// Tags records under the audit ring's keys, and checks them.
#[derive(Debug, Clone)]
pub struct AuditSigner {
    ring: Arc<KeyRing>,
    key_id: KeyId,
}

impl AuditSigner {
    /// A signer that tags with key `key_id` of `ring`; `None` if the ring lacks it.
    pub fn new(ring: Arc<KeyRing>, key_id: KeyId) -> Option<AuditSigner> {
        ring.get(key_id)?;
        Some(AuditSigner { ring, key_id })
    }

    /// The key new records are tagged under.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// Makes the record that follows `prev` (its chain's head) in its chain: tagged under the
    /// signer's key, then hashed.
    pub fn seal_record(
        &self,
        event: &AuditEvent,
        prev: &ChainHead,
        recorded_at: DateTime<Utc>,
    ) -> AuditRecord {
        let mut record = AuditRecord {
            chain: event.chain(),
            seq: prev.seq + 1,
            recorded_at,
            actor: event.actor.clone(),
            action: event.action.to_string(),
            subject: event.subject.clone(),
            details: event.details.clone(),
            key_id: self.key_id,
            tag: GENESIS,
            hash: GENESIS,
        };
        record.tag = self
            .record_mac(&record, &prev.tag)
            .expect("the signing key is in the ring")
            .finalize()
            .into_bytes()
            .into();
        record.hash = record.expected_hash(&prev.hash);
        record
    }

    /// Whether `record` carries the right tag after `prev_tag` (constant-time comparison).
    /// `None` when the ring does not hold the record's key.
    pub fn check_record(&self, record: &AuditRecord, prev_tag: &[u8; 32]) -> Option<bool> {
        let mac = self.record_mac(record, prev_tag)?;
        Some(mac.verify_slice(&record.tag).is_ok())
    }

    fn record_mac(&self, record: &AuditRecord, prev_tag: &[u8; 32]) -> Option<Hmac<Sha256>> {
        let key = self.ring.get(record.key_id)?;
        let mut mac =
            Hmac::<Sha256>::new_from_slice(key.expose()).expect("HMAC takes keys of any length");
        let mut encoder = Encoder(&mut mac);
        encoder.bytes(RECORD_CONTEXT);
        record.encode(&mut encoder);
        encoder.bytes(prev_tag);
        Some(mac)
    }
}

/// Feeds length-prefixed fields to a hash or MAC, so no two different records encode alike.
struct Encoder<'a, D>(&'a mut D);

impl<D: Update> Encoder<'_, D> {
    fn bytes(&mut self, field: &[u8]) {
        let len = u32::try_from(field.len()).expect("audit fields are far below 4 GiB");
        self.0.update(&len.to_be_bytes());
        self.0.update(field);
    }
}

/// Encodes sealed heads as `chain:seq:hexhash` joined by `;`, in chain order.
pub fn encode_heads(heads: &[SealedHead]) -> String {
    let mut sorted = heads.to_vec();
    sorted.sort_by_key(|head| head.chain);
    sorted
        .iter()
        .map(|head| format!("{}:{}:{}", head.chain, head.seq, hex::encode(head.hash)))
        .collect::<Vec<_>>()
        .join(";")
}

/// Decodes [`encode_heads`] output; `None` unless it names every chain once, in order.
pub fn decode_heads(text: &str) -> Option<Vec<SealedHead>> {
    let heads = text
        .split(';')
        .map(|part| {
            let mut fields = part.split(':');
            let chain = fields.next()?.parse().ok()?;
            let seq = fields.next()?.parse().ok().filter(|seq: &i64| *seq >= 0)?;
            let mut hash = [0u8; 32];
            hex::decode_to_slice(fields.next()?, &mut hash).ok()?;
            fields
                .next()
                .is_none()
                .then_some(SealedHead { chain, seq, hash })
        })
        .collect::<Option<Vec<_>>>()?;
    let complete = heads.len() == CHAIN_COUNT as usize
        && heads
            .iter()
            .zip(0..)
            .all(|(head, chain)| head.chain == chain);
    complete.then_some(heads)
}

mod hex_bytes {
    pub fn serialize<S: serde::Serializer>(bytes: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, SystemClock};
    use crate::keys::{KeyPurpose, SecretKey};

    fn signer() -> AuditSigner {
        let id = KeyId::new(1).unwrap();
        let ring = KeyRing::single(KeyPurpose::Audit, id, SecretKey::generate());
        AuditSigner::new(Arc::new(ring), id).unwrap()
    }

    fn event(details: &str) -> AuditEvent {
        AuditEvent {
            actor: "cli:test".into(),
            action: "batch.requested",
            subject: "batch:1".into(),
            details: details.into(),
        }
    }

    fn genesis(chain: u32) -> ChainHead {
        ChainHead {
            chain,
            seq: 0,
            tag: GENESIS,
            hash: GENESIS,
            key_id: None,
        }
    }

    fn heads(seq: i64) -> Vec<SealedHead> {
        (0..CHAIN_COUNT)
            .map(|chain| SealedHead {
                chain,
                seq,
                hash: [seq as u8; 32],
            })
            .collect()
    }

    #[test]
    fn a_record_verifies_only_after_its_own_predecessor() {
        let signer = signer();
        let e = event("{}");
        let record = signer.seal_record(&e, &genesis(e.chain()), SystemClock.now());
        assert_eq!(signer.check_record(&record, &GENESIS), Some(true));
        assert_eq!(signer.check_record(&record, &[1; 32]), Some(false));
        assert_eq!(record.expected_hash(&GENESIS), record.hash);
        assert_ne!(record.expected_hash(&[1; 32]), record.hash);
    }

    #[test]
    fn the_hash_covers_every_field_and_the_tag() {
        let signer = signer();
        let e = event("{}");
        let record = signer.seal_record(&e, &genesis(e.chain()), SystemClock.now());
        let mut changed = record.clone();
        changed.details = "{\"x\":1}".into();
        assert_ne!(changed.expected_hash(&GENESIS), record.hash);
        let mut retagged = record.clone();
        retagged.tag[0] ^= 1;
        assert_ne!(retagged.expected_hash(&GENESIS), record.hash);
        let mut rekeyed = record;
        rekeyed.key_id = KeyId::new(2).unwrap();
        assert_ne!(rekeyed.expected_hash(&GENESIS), rekeyed.hash);
    }

    #[test]
    fn moving_bytes_between_fields_changes_the_tag_and_the_hash() {
        let signer = signer();
        let at = SystemClock.now();
        let mut a = event("x");
        a.actor = "ab".into();
        let mut b = event("x");
        b.actor = "a".into();
        b.subject = format!("b{}", a.subject);
        let (ra, rb) = (
            signer.seal_record(&a, &genesis(0), at),
            signer.seal_record(&b, &genesis(0), at),
        );
        assert_ne!(ra.tag, rb.tag);
        assert_ne!(ra.hash, rb.hash);
    }

    #[test]
    fn a_seal_is_signed_by_its_key_only_and_chained_to_its_predecessor() {
        let key = SealKey::generate();
        let first = Seal::sign(&key, 1, SystemClock.now(), heads(1), &GENESIS);
        let second = Seal::sign(&key, 2, SystemClock.now(), heads(2), &first.hash);
        assert!(first.signed_by(&key.public()) && second.signed_by(&key.public()));
        assert_eq!(second.expected_hash(&first.hash), second.hash);
        assert_ne!(second.expected_hash(&GENESIS), second.hash);
        assert!(!first.signed_by(&SealKey::generate().public()));
        let mut forged = second.clone();
        forged.heads[3].seq = 1;
        forged.hash = forged.expected_hash(&first.hash);
        assert!(!forged.signed_by(&key.public()));
    }

    #[test]
    fn heads_round_trip_through_their_encoding_and_must_name_every_chain() {
        let heads = heads(9);
        assert_eq!(decode_heads(&encode_heads(&heads)), Some(heads.clone()));
        assert_eq!(decode_heads(&encode_heads(&heads[1..])), None);
        assert_eq!(decode_heads(""), None);
    }

    #[test]
    fn subjects_spread_over_all_chains() {
        let mut seen = std::collections::HashSet::new();
        for n in 0..1000 {
            seen.insert(chain_of(&format!("batch:{n}")));
        }
        assert_eq!(seen.len(), CHAIN_COUNT as usize);
    }
}
