//! The tamper-evident audit trail.
//!
//! Every state change appends a record in the same database transaction as the change. Records
//! form [`CHAIN_COUNT`] independent chains (a record's chain is a hash of its subject), so
//! unrelated operations never wait on one chain head. Each record's tag is HMAC-SHA256 under the
//! audit key over an unambiguous encoding of the record and the previous tag of its chain. A seal
//! records every chain's head, so truncation back past a seal is detected too.

pub mod events;
mod verify;

pub use verify::{AuditVerifier, Problem, VerifyReport};

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

use std::sync::Arc;

use crate::keys::{KeyId, KeyRing};

/// How many independent chains the trail has. Fixed by the first migration: changing it would
/// move subjects between chains.
pub const CHAIN_COUNT: u32 = 16;
/// The tag that stands before the first record of every chain.
pub const GENESIS_TAG: [u8; 32] = [0; 32];

const RECORD_CONTEXT: &[u8] = b"tender-audit-record-v1";
const SEAL_CONTEXT: &[u8] = b"tender-audit-seal-v1";

/// A state change to record: who did what to which subject, with non-secret details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// Who caused it: `cli:<user>`, `job:<name>` or `system`.
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
        actor: &str,
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
}

/// The last record of a chain: its sequence number and tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ChainHead {
    /// Which chain.
    pub chain: u32,
    /// The last sequence number (0 for an empty chain).
    pub seq: i64,
    /// The last tag ([`GENESIS_TAG`] for an empty chain).
    #[serde(with = "hex_bytes")]
    pub tag: [u8; 32],
}

/// A stored seal: every chain's head at one moment, tagged and chained to the previous seal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seal {
    /// Position in the seal chain, from 1.
    pub seal_id: i64,
    /// When it was made.
    pub sealed_at: DateTime<Utc>,
    /// The heads, encoded by [`encode_heads`].
    pub heads: String,
    /// The audit key that tagged it.
    pub key_id: KeyId,
    /// HMAC-SHA256 over the seal and the previous seal's tag.
    pub tag: [u8; 32],
}

/// Signs records and seals under one audit key (the one the database names active), and checks
/// them under any key of the ring.
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

    /// The key new records and seals are tagged under.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// Tags a new record that follows `prev_tag` in its chain, under the signer's key.
    pub fn seal_record(
        &self,
        event: &AuditEvent,
        seq: i64,
        recorded_at: DateTime<Utc>,
        prev_tag: &[u8; 32],
    ) -> AuditRecord {
        let key_id = self.key_id;
        let mut record = AuditRecord {
            chain: event.chain(),
            seq,
            recorded_at,
            actor: event.actor.clone(),
            action: event.action.to_string(),
            subject: event.subject.clone(),
            details: event.details.clone(),
            key_id,
            tag: [0; 32],
        };
        record.tag = self
            .record_mac(&record, prev_tag)
            .expect("the signing key is in the ring")
            .finalize()
            .into_bytes()
            .into();
        record
    }

    /// Whether `record` carries the right tag after `prev_tag` (constant-time comparison).
    /// `None` when the ring does not hold the record's key.
    pub fn check_record(&self, record: &AuditRecord, prev_tag: &[u8; 32]) -> Option<bool> {
        let mac = self.record_mac(record, prev_tag)?;
        Some(mac.verify_slice(&record.tag).is_ok())
    }

    /// Tags a seal of `heads` that follows the seal tagged `prev_tag`.
    pub fn seal_heads(
        &self,
        seal_id: i64,
        sealed_at: DateTime<Utc>,
        heads: &[ChainHead],
        prev_tag: &[u8; 32],
    ) -> Seal {
        let key_id = self.key_id;
        let mut seal = Seal {
            seal_id,
            sealed_at,
            heads: encode_heads(heads),
            key_id,
            tag: [0; 32],
        };
        seal.tag = self
            .seal_mac(&seal, prev_tag)
            .expect("the signing key is in the ring")
            .finalize()
            .into_bytes()
            .into();
        seal
    }

    /// Whether `seal` carries the right tag after `prev_tag`; `None` for an unknown key.
    pub fn check_seal(&self, seal: &Seal, prev_tag: &[u8; 32]) -> Option<bool> {
        let mac = self.seal_mac(seal, prev_tag)?;
        Some(mac.verify_slice(&seal.tag).is_ok())
    }

    fn record_mac(&self, record: &AuditRecord, prev_tag: &[u8; 32]) -> Option<Hmac<Sha256>> {
        let mut mac = self.keyed(record.key_id)?;
        let mut encoder = Encoder(&mut mac);
        encoder.bytes(RECORD_CONTEXT);
        encoder.bytes(&record.chain.to_be_bytes());
        encoder.bytes(&record.seq.to_be_bytes());
        encoder.bytes(&record.recorded_at.timestamp_micros().to_be_bytes());
        encoder.bytes(record.actor.as_bytes());
        encoder.bytes(record.action.as_bytes());
        encoder.bytes(record.subject.as_bytes());
        encoder.bytes(record.details.as_bytes());
        encoder.bytes(&record.key_id.get().to_be_bytes());
        encoder.bytes(prev_tag);
        Some(mac)
    }

    fn seal_mac(&self, seal: &Seal, prev_tag: &[u8; 32]) -> Option<Hmac<Sha256>> {
        let mut mac = self.keyed(seal.key_id)?;
        let mut encoder = Encoder(&mut mac);
        encoder.bytes(SEAL_CONTEXT);
        encoder.bytes(&seal.seal_id.to_be_bytes());
        encoder.bytes(&seal.sealed_at.timestamp_micros().to_be_bytes());
        encoder.bytes(seal.heads.as_bytes());
        encoder.bytes(&seal.key_id.get().to_be_bytes());
        encoder.bytes(prev_tag);
        Some(mac)
    }

    fn keyed(&self, key_id: KeyId) -> Option<Hmac<Sha256>> {
        let key = self.ring.get(key_id)?;
        Some(Hmac::<Sha256>::new_from_slice(key.expose()).expect("HMAC takes keys of any length"))
    }
}

/// Feeds length-prefixed fields to a MAC, so no two different records encode alike.
struct Encoder<'a>(&'a mut Hmac<Sha256>);

impl Encoder<'_> {
    fn bytes(&mut self, field: &[u8]) {
        let len = u32::try_from(field.len()).expect("audit fields are far below 4 GiB");
        self.0.update(&len.to_be_bytes());
        self.0.update(field);
    }
}

/// Encodes chain heads as `chain:seq:hextag` joined by `;`, in chain order.
pub fn encode_heads(heads: &[ChainHead]) -> String {
    let mut sorted = heads.to_vec();
    sorted.sort_by_key(|head| head.chain);
    sorted
        .iter()
        .map(|head| format!("{}:{}:{}", head.chain, head.seq, hex::encode(head.tag)))
        .collect::<Vec<_>>()
        .join(";")
}

/// Decodes [`encode_heads`] output; `None` if it is not well formed.
pub fn decode_heads(text: &str) -> Option<Vec<ChainHead>> {
    if text.is_empty() {
        return Some(Vec::new());
    }
    text.split(';')
        .map(|part| {
            let mut fields = part.split(':');
            let chain = fields.next()?.parse().ok()?;
            let seq = fields.next()?.parse().ok()?;
            let mut tag = [0u8; 32];
            hex::decode_to_slice(fields.next()?, &mut tag).ok()?;
            fields
                .next()
                .is_none()
                .then_some(ChainHead { chain, seq, tag })
        })
        .collect()
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

    #[test]
    fn a_record_verifies_only_after_its_own_predecessor() {
        let signer = signer();
        let record = signer.seal_record(&event("{}"), 1, SystemClock.now(), &GENESIS_TAG);
        assert_eq!(signer.check_record(&record, &GENESIS_TAG), Some(true));
        assert_eq!(signer.check_record(&record, &[1; 32]), Some(false));
    }

    #[test]
    fn moving_bytes_between_fields_changes_the_tag() {
        let signer = signer();
        let at = SystemClock.now();
        let mut a = event("x");
        a.actor = "ab".into();
        let mut b = event("x");
        b.actor = "a".into();
        b.subject = format!("b{}", a.subject);
        let (ra, rb) = (
            signer.seal_record(&a, 1, at, &GENESIS_TAG),
            signer.seal_record(&b, 1, at, &GENESIS_TAG),
        );
        assert_ne!(ra.tag, rb.tag);
    }

    #[test]
    fn heads_round_trip_through_their_encoding() {
        let heads = vec![
            ChainHead {
                chain: 3,
                seq: 9,
                tag: [7; 32],
            },
            ChainHead {
                chain: 0,
                seq: 0,
                tag: GENESIS_TAG,
            },
        ];
        let decoded = decode_heads(&encode_heads(&heads)).unwrap();
        assert_eq!(decoded, vec![heads[1], heads[0]]);
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
