//! Verification of the whole trail: every chain from its first record, every seal, and the
//! agreement between them. Records are fed one at a time in (chain, seq) order, so memory stays
//! flat however long the trail is.

use std::collections::HashMap;
use std::fmt;

use serde::Serialize;

use super::{AuditRecord, AuditSigner, ChainHead, GENESIS_TAG, Seal, decode_heads};

/// The first thing found wrong with the trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Problem {
    /// The record's tag does not match its contents and predecessor.
    TagMismatch {
        /// Chain of the bad record.
        chain: u32,
        /// Its sequence number.
        seq: i64,
    },
    /// A sequence number is skipped.
    Missing {
        /// Chain with the gap.
        chain: u32,
        /// The sequence number that should come next.
        expected_seq: i64,
        /// The one found instead.
        found_seq: i64,
    },
    /// The record names an audit key the ring does not hold.
    UnknownKey {
        /// Chain of the record.
        chain: u32,
        /// Its sequence number.
        seq: i64,
        /// The unknown key id.
        key_id: u16,
    },
    /// The chain's last record is not the one its head row names.
    HeadMismatch {
        /// The chain.
        chain: u32,
        /// The head row's sequence number.
        head_seq: i64,
        /// The last record found.
        last_seq: i64,
    },
    /// A seal's tag does not match its contents and predecessor.
    SealTagMismatch {
        /// The bad seal.
        seal_id: i64,
    },
    /// A seal is missing from the seal chain, or cannot be read.
    SealMissing {
        /// The seal id expected next.
        expected: i64,
        /// The one found.
        found: i64,
    },
    /// A sealed record is gone or differs from what the seal recorded.
    SealBroken {
        /// The seal.
        seal_id: i64,
        /// The chain whose sealed head does not match.
        chain: u32,
        /// The sealed sequence number.
        seq: i64,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::TagMismatch { chain, seq } => write!(
                f,
                "record {seq} of chain {chain} does not match its tag: it was modified, forged, or moved from elsewhere"
            ),
            Problem::Missing {
                chain,
                expected_seq,
                found_seq,
            } => write!(
                f,
                "chain {chain} skips from record {} to record {found_seq}: record {expected_seq} was deleted",
                expected_seq - 1
            ),
            Problem::UnknownKey { chain, seq, key_id } => write!(
                f,
                "record {seq} of chain {chain} is tagged under audit key {key_id}, which the key ring does not hold"
            ),
            Problem::HeadMismatch {
                chain,
                head_seq,
                last_seq,
            } => write!(
                f,
                "chain {chain} ends at record {last_seq} but its head names record {head_seq}: records were removed from its end"
            ),
            Problem::SealTagMismatch { seal_id } => {
                write!(
                    f,
                    "seal {seal_id} does not match its tag: it was modified or forged"
                )
            }
            Problem::SealMissing { expected, found } => write!(
                f,
                "seal {expected} is missing or unreadable (found seal {found} in its place)"
            ),
            Problem::SealBroken {
                seal_id,
                chain,
                seq,
            } => write!(
                f,
                "seal {seal_id} recorded record {seq} as the head of chain {chain}, but that record is gone or differs: the chain was truncated or rewritten"
            ),
        }
    }
}

/// What verification found.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// Records checked.
    pub records: u64,
    /// Chains that hold at least one record.
    pub chains_used: u32,
    /// Seals checked.
    pub seals: u64,
    /// The first problem, in (chain, seq) order after the seals; `None` if the trail is intact.
    pub problem: Option<Problem>,
}

impl VerifyReport {
    /// Whether the trail verified.
    pub fn is_intact(&self) -> bool {
        self.problem.is_none()
    }
}

/// Checks records fed in (chain, seq) order against the signer, the seals and the chain heads.
pub struct AuditVerifier<'a> {
    signer: &'a AuditSigner,
    /// (chain, seq) → (seal id, tag) that some seal recorded as a head.
    sealed: HashMap<(u32, i64), (i64, [u8; 32])>,
    /// Per chain: last sequence number and tag seen.
    tails: HashMap<u32, (i64, [u8; 32])>,
    records: u64,
    seals: u64,
    problem: Option<Problem>,
}

impl<'a> AuditVerifier<'a> {
    /// Starts a verification; checks the seal chain at once.
    pub fn new(signer: &'a AuditSigner, seals: &[Seal]) -> AuditVerifier<'a> {
        let mut verifier = AuditVerifier {
            signer,
            sealed: HashMap::new(),
            tails: HashMap::new(),
            records: 0,
            seals: seals.len() as u64,
            problem: None,
        };
        let mut prev_tag = GENESIS_TAG;
        for (index, seal) in seals.iter().enumerate() {
            let expected = i64::try_from(index + 1).unwrap_or(i64::MAX);
            if seal.seal_id != expected {
                verifier.problem = Some(Problem::SealMissing {
                    expected,
                    found: seal.seal_id,
                });
                break;
            }
            if signer.check_seal(seal, &prev_tag) != Some(true) {
                verifier.problem = Some(Problem::SealTagMismatch {
                    seal_id: seal.seal_id,
                });
                break;
            }
            let Some(heads) = decode_heads(&seal.heads) else {
                verifier.problem = Some(Problem::SealTagMismatch {
                    seal_id: seal.seal_id,
                });
                break;
            };
            for head in heads.into_iter().filter(|head| head.seq > 0) {
                verifier
                    .sealed
                    .insert((head.chain, head.seq), (seal.seal_id, head.tag));
            }
            prev_tag = seal.tag;
        }
        verifier
    }

    /// Checks the next record. Records must come in (chain, seq) order.
    pub fn push(&mut self, record: &AuditRecord) {
        if self.problem.is_some() {
            return;
        }
        self.records += 1;
        let (last_seq, prev_tag) = self
            .tails
            .get(&record.chain)
            .copied()
            .unwrap_or((0, GENESIS_TAG));
        if record.seq != last_seq + 1 {
            self.problem = Some(Problem::Missing {
                chain: record.chain,
                expected_seq: last_seq + 1,
                found_seq: record.seq,
            });
            return;
        }
        match self.signer.check_record(record, &prev_tag) {
            None => {
                self.problem = Some(Problem::UnknownKey {
                    chain: record.chain,
                    seq: record.seq,
                    key_id: record.key_id.get(),
                });
                return;
            }
            Some(false) => {
                self.problem = Some(Problem::TagMismatch {
                    chain: record.chain,
                    seq: record.seq,
                });
                return;
            }
            Some(true) => {}
        }
        if let Some((seal_id, tag)) = self.sealed.remove(&(record.chain, record.seq))
            && tag != record.tag
        {
            self.problem = Some(Problem::SealBroken {
                seal_id,
                chain: record.chain,
                seq: record.seq,
            });
            return;
        }
        self.tails.insert(record.chain, (record.seq, record.tag));
    }

    /// Finishes: every chain must end where its head row says, and every sealed head must exist.
    pub fn finish(mut self, heads: &[ChainHead]) -> VerifyReport {
        if self.problem.is_none() {
            for head in heads {
                let (last_seq, last_tag) = self
                    .tails
                    .get(&head.chain)
                    .copied()
                    .unwrap_or((0, GENESIS_TAG));
                if last_seq != head.seq || last_tag != head.tag {
                    self.problem = Some(Problem::HeadMismatch {
                        chain: head.chain,
                        head_seq: head.seq,
                        last_seq,
                    });
                    break;
                }
            }
        }
        if self.problem.is_none()
            && let Some((&(chain, seq), &(seal_id, _))) = self
                .sealed
                .iter()
                .min_by_key(|(position, (seal, _))| (*seal, **position))
        {
            self.problem = Some(Problem::SealBroken {
                seal_id,
                chain,
                seq,
            });
        }
        VerifyReport {
            records: self.records,
            chains_used: self.tails.len() as u32,
            seals: self.seals,
            problem: self.problem,
        }
    }
}
