//! Verification of the whole trail: the seal chain, the witness, then every chain from its
//! first record. Seals and records are fed one at a time in order, so memory stays flat however
//! long the trail is (the witness's entries excepted). No chain head row is read: the verifier
//! trusts only the records, the seals it can check, and the witness.

use std::collections::HashMap;
use std::fmt;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::witness::Witness;
use super::{AuditRecord, AuditSigner, CHAIN_COUNT, GENESIS, Seal, SealedHead};
use crate::keys::{KeyId, SealPublicKey};

/// The first thing found wrong with the trail. Each names the first bad record or seal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Problem {
    /// A sequence number is skipped.
    RecordMissing {
        /// Chain with the gap.
        chain: u32,
        /// The sequence number that should come next.
        expected_seq: i64,
        /// The one found instead.
        found_seq: i64,
    },
    /// The record's stored hash is not the hash of its contents after its predecessor's.
    HashMismatch {
        /// Chain of the bad record.
        chain: u32,
        /// Its sequence number.
        seq: i64,
    },
    /// The record's tag does not match its contents and predecessor.
    TagMismatch {
        /// Chain of the bad record.
        chain: u32,
        /// Its sequence number.
        seq: i64,
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
    /// The record is tagged under an audit key outside that key's time in office: a retired
    /// key after the rotation that retired it, or a key before its activation.
    KeyOutOfOffice {
        /// Chain of the record.
        chain: u32,
        /// Its sequence number.
        seq: i64,
        /// The key it is tagged under.
        key_id: u16,
    },
    /// An audit key activation record's details cannot be read.
    ActivationUnreadable {
        /// Chain of the record.
        chain: u32,
        /// Its sequence number.
        seq: i64,
    },
    /// A seal is missing from the seal chain.
    SealMissing {
        /// The seal id expected next.
        expected: i64,
        /// The one found.
        found: i64,
    },
    /// A seal's stored hash is not the hash of its contents after the previous seal's, or its
    /// heads cannot be read.
    SealHashMismatch {
        /// The bad seal.
        seal_id: i64,
    },
    /// A seal names another seal key than the one given to the verifier.
    SealOtherKey {
        /// The bad seal.
        seal_id: i64,
    },
    /// A seal's signature is not the seal key's.
    SealForged {
        /// The bad seal.
        seal_id: i64,
    },
    /// A seal records fewer records, or other ones, for a chain than the seal before it.
    SealRegressed {
        /// The bad seal.
        seal_id: i64,
        /// The chain that went back.
        chain: u32,
    },
    /// The database's seal differs from the witnessed one.
    WitnessedSealDiffers {
        /// The seal.
        seal_id: i64,
    },
    /// A witnessed seal is not in the database.
    WitnessedSealMissing {
        /// The first witnessed seal the database lacks.
        seal_id: i64,
        /// The newest seal the database holds (0 for none).
        newest_in_database: i64,
    },
    /// The witness holds no seal.
    WitnessEmpty,
    /// The newest witnessed seal is older than allowed.
    SealStale {
        /// The newest witnessed seal.
        seal_id: i64,
        /// When it was made.
        sealed_at: DateTime<Utc>,
        /// The age allowed, in seconds.
        age_max_seconds: i64,
    },
    /// A sealed record differs from what the newest seal recorded.
    SealedRecordDiffers {
        /// The seal.
        seal_id: i64,
        /// The chain.
        chain: u32,
        /// The sealed sequence number.
        seq: i64,
    },
    /// Sealed records are gone from a chain's end.
    SealedRecordsMissing {
        /// The seal.
        seal_id: i64,
        /// The chain.
        chain: u32,
        /// How many records the seal recorded.
        sealed_seq: i64,
        /// The last record found (0 for none).
        last_seq: i64,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::RecordMissing {
                chain,
                expected_seq,
                found_seq,
            } => write!(
                f,
                "chain {chain} skips from record {} to record {found_seq}: record {expected_seq} was deleted",
                expected_seq - 1
            ),
            Problem::HashMismatch { chain, seq } => write!(
                f,
                "record {seq} of chain {chain} does not match its hash: it was modified, inserted, reordered or forged"
            ),
            Problem::TagMismatch { chain, seq } => write!(
                f,
                "record {seq} of chain {chain} does not match its tag: it was modified, forged, or moved from elsewhere"
            ),
            Problem::UnknownKey { chain, seq, key_id } => write!(
                f,
                "record {seq} of chain {chain} is tagged under audit key {key_id}, which the key ring does not hold"
            ),
            Problem::KeyOutOfOffice { chain, seq, key_id } => write!(
                f,
                "record {seq} of chain {chain} is tagged under audit key {key_id} outside its time in office (after the rotation that retired it, or before its activation)"
            ),
            Problem::ActivationUnreadable { chain, seq } => write!(
                f,
                "record {seq} of chain {chain} activates an audit key but its details cannot be read"
            ),
            Problem::SealMissing { expected, found } => write!(
                f,
                "seal {expected} is missing (found seal {found} in its place)"
            ),
            Problem::SealHashMismatch { seal_id } => write!(
                f,
                "seal {seal_id} does not match its hash: it was modified, or a seal before it was"
            ),
            Problem::SealOtherKey { seal_id } => write!(
                f,
                "seal {seal_id} names another seal key than the given public key: the seal key was swapped in the database, or the public key is another deployment's"
            ),
            Problem::SealForged { seal_id } => write!(
                f,
                "seal {seal_id} is not signed by the seal key: it was forged"
            ),
            Problem::SealRegressed { seal_id, chain } => write!(
                f,
                "seal {seal_id} records fewer or other records for chain {chain} than the seal before it"
            ),
            Problem::WitnessedSealDiffers { seal_id } => write!(
                f,
                "seal {seal_id} in the database differs from the witnessed seal {seal_id}: it was replaced"
            ),
            Problem::WitnessedSealMissing {
                seal_id,
                newest_in_database,
            } => write!(
                f,
                "the witness holds seal {seal_id} but the database's newest seal is {newest_in_database}: seals were deleted, the trail wiped, or the database restored from an older copy"
            ),
            Problem::WitnessEmpty => write!(f, "the witness holds no seal yet"),
            Problem::SealStale {
                seal_id,
                sealed_at,
                age_max_seconds,
            } => write!(
                f,
                "the newest witnessed seal, {seal_id}, was made at {sealed_at}, longer ago than the {age_max_seconds} s allowed: sealing has stopped or the witness is stale"
            ),
            Problem::SealedRecordDiffers {
                seal_id,
                chain,
                seq,
            } => write!(
                f,
                "record {seq} of chain {chain} differs from the one seal {seal_id} recorded: the chain was rewritten"
            ),
            Problem::SealedRecordsMissing {
                seal_id,
                chain,
                sealed_seq,
                last_seq,
            } => write!(
                f,
                "seal {seal_id} recorded {sealed_seq} records in chain {chain} but it ends at record {last_seq}: record {} and after were deleted",
                last_seq + 1
            ),
        }
    }
}

/// A seal as the report names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SealSummary {
    /// Its id.
    pub seal_id: i64,
    /// When it was made.
    pub sealed_at: DateTime<Utc>,
}

/// Which proofs a verification ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Proofs {
    /// Every record's hash, chained from the first: always.
    pub hash_chains: bool,
    /// Every record's tag under the audit key: only where the audit key is present.
    pub record_tags: bool,
    /// Every seal's signature under the seal public key: only where the public key is given.
    pub seal_signatures: bool,
    /// How many witness files were checked.
    pub witness_files: usize,
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
    /// Records the newest seal covers: provably intact where its signature was checked.
    pub sealed_records: u64,
    /// The newest seal in the database.
    pub newest_seal: Option<SealSummary>,
    /// The newest witnessed seal.
    pub newest_witnessed: Option<SealSummary>,
    /// When the verification ran, by the clock seal ages are judged by.
    pub checked_at: DateTime<Utc>,
    /// Which proofs ran.
    pub proofs: Proofs,
    /// The first problem; `None` if the trail passed every proof that ran.
    pub problem: Option<Problem>,
}

impl VerifyReport {
    /// Whether the trail passed every proof that ran.
    pub fn is_intact(&self) -> bool {
        self.problem.is_none()
    }

    /// Records after the newest seal: checked for consistency, but their deletion from a
    /// chain's end cannot be detected.
    pub fn unsealed_records(&self) -> u64 {
        self.records.saturating_sub(self.sealed_records)
    }
}

/// Where a chain stands: its last sequence number and hash. The sealer walks the records since
/// the previous seal with one, and so does the verifier from the first record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainCursor {
    /// The chain.
    pub chain: u32,
    /// The last sequence number seen.
    pub seq: i64,
    /// The last hash seen.
    pub hash: [u8; 32],
}

impl ChainCursor {
    /// Before the first record of `chain`.
    pub fn genesis(chain: u32) -> ChainCursor {
        ChainCursor {
            chain,
            seq: 0,
            hash: GENESIS,
        }
    }

    /// At a sealed head.
    pub fn at(head: &SealedHead) -> ChainCursor {
        ChainCursor {
            chain: head.chain,
            seq: head.seq,
            hash: head.hash,
        }
    }

    /// Moves past `record`, which must be the chain's next and carry the right hash.
    pub fn advance(&mut self, record: &AuditRecord) -> Result<(), Problem> {
        if record.seq != self.seq + 1 {
            return Err(Problem::RecordMissing {
                chain: record.chain,
                expected_seq: self.seq + 1,
                found_seq: record.seq,
            });
        }
        if record.expected_hash(&self.hash) != record.hash {
            return Err(Problem::HashMismatch {
                chain: record.chain,
                seq: record.seq,
            });
        }
        self.seq = record.seq;
        self.hash = record.hash;
        Ok(())
    }

    /// The head a seal records for this chain.
    pub fn sealed(&self) -> SealedHead {
        SealedHead {
            chain: self.chain,
            seq: self.seq,
            hash: self.hash,
        }
    }
}

/// Each audit key's time in office per chain, from the key activation records: a key tags the
/// records after the chain heads its activation recorded, up to the heads recorded by the
/// activation that retired it.
#[derive(Debug, Clone, Default)]
pub struct KeyWindows {
    windows: HashMap<KeyId, Term>,
}

/// One key's time in office: the chain heads its activation recorded, and those the
/// activation that retired it recorded.
#[derive(Debug, Clone, Default)]
struct Term {
    from: Option<Vec<i64>>,
    until: Option<Vec<i64>>,
}

/// The details of a `key.activated` record for the audit key.
#[derive(Debug, Deserialize)]
struct Activation {
    retired: Option<u16>,
    heads: Option<Vec<i64>>,
}

impl KeyWindows {
    /// The windows the audit key activation records describe. The records are proven later,
    /// with every other, in the record pass.
    pub fn from_activations(records: &[AuditRecord]) -> Result<KeyWindows, Problem> {
        let mut windows = KeyWindows::default();
        for record in records {
            let unreadable = || Problem::ActivationUnreadable {
                chain: record.chain,
                seq: record.seq,
            };
            let activated = record
                .subject
                .strip_prefix("key:audit:")
                .and_then(|id| id.parse().ok())
                .and_then(KeyId::new)
                .ok_or_else(unreadable)?;
            let details: Activation =
                serde_json::from_str(&record.details).map_err(|_| unreadable())?;
            // Activations recorded before the chain heads were (an older tender) bound nothing.
            let Some(heads) = details.heads else { continue };
            if heads.len() != CHAIN_COUNT as usize {
                return Err(unreadable());
            }
            windows.windows.entry(activated).or_default().from = Some(heads.clone());
            if let Some(retired) = details.retired.and_then(KeyId::new) {
                windows.windows.entry(retired).or_default().until = Some(heads);
            }
        }
        Ok(windows)
    }

    /// Whether `record`'s key was in office at its place in its chain.
    pub fn allows(&self, record: &AuditRecord) -> bool {
        let Some(term) = self.windows.get(&record.key_id) else {
            return true;
        };
        let chain = record.chain as usize;
        let after_start = (term.from.as_ref()).is_none_or(|heads| record.seq > heads[chain]);
        let before_end = (term.until.as_ref()).is_none_or(|heads| record.seq <= heads[chain]);
        after_start && before_end
    }
}

/// What the verifier is given besides the trail.
#[derive(Debug, Clone)]
pub struct VerifyInputs<'a> {
    /// Checks record tags, where the audit key is present.
    pub tags: Option<&'a AuditSigner>,
    /// Checks seal signatures, where the public key is given.
    pub public_key: Option<SealPublicKey>,
    /// The witnessed seals, where a witness is given.
    pub witness: Option<&'a Witness>,
    /// The oldest the newest witnessed seal may be.
    pub seal_age_max: Duration,
    /// The time now.
    pub now: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy)]
struct ChainState {
    cursor: ChainCursor,
    tag: [u8; 32],
}

/// Checks seals, then records, fed in order.
#[derive(Debug)]
pub struct AuditVerifier<'a> {
    inputs: VerifyInputs<'a>,
    windows: KeyWindows,
    newest: Option<Seal>,
    chains: Vec<ChainState>,
    records: u64,
    seals: u64,
    problem: Option<Problem>,
}

impl<'a> AuditVerifier<'a> {
    /// Starts a verification; `activations` are the audit key activation records.
    pub fn new(inputs: VerifyInputs<'a>, activations: &[AuditRecord]) -> AuditVerifier<'a> {
        let (windows, problem) = match KeyWindows::from_activations(activations) {
            Ok(windows) => (windows, None),
            Err(problem) => (KeyWindows::default(), Some(problem)),
        };
        AuditVerifier {
            inputs,
            windows,
            newest: None,
            chains: (0..CHAIN_COUNT)
                .map(|chain| ChainState {
                    cursor: ChainCursor::genesis(chain),
                    tag: GENESIS,
                })
                .collect(),
            records: 0,
            seals: 0,
            problem,
        }
    }

    /// Checks the next seal. Seals must come in id order, before any record.
    pub fn push_seal(&mut self, seal: Seal) {
        if self.problem.is_some() {
            return;
        }
        self.problem = self.check_seal(&seal).err();
        self.seals += 1;
        self.newest = Some(seal);
    }

    fn check_seal(&self, seal: &Seal) -> Result<(), Problem> {
        let seal_id = seal.seal_id;
        let expected = self.newest.as_ref().map_or(1, |prev| prev.seal_id + 1);
        if seal_id != expected {
            return Err(Problem::SealMissing {
                expected,
                found: seal_id,
            });
        }
        let prev_hash = self.newest.as_ref().map_or(GENESIS, |prev| prev.hash);
        if seal.expected_hash(&prev_hash) != seal.hash {
            return Err(Problem::SealHashMismatch { seal_id });
        }
        if let Some(key) = &self.inputs.public_key {
            if seal.key_fingerprint != key.fingerprint() {
                return Err(Problem::SealOtherKey { seal_id });
            }
            if !seal.signed_by(key) {
                return Err(Problem::SealForged { seal_id });
            }
        }
        if let Some(prev) = &self.newest {
            for (head, before) in seal.heads.iter().zip(&prev.heads) {
                if head.seq < before.seq || (head.seq == before.seq && head.hash != before.hash) {
                    return Err(Problem::SealRegressed {
                        seal_id,
                        chain: head.chain,
                    });
                }
            }
        }
        if let Some(entry) = self
            .inputs
            .witness
            .and_then(|witness| witness.entries.get(&seal_id))
            && (entry.hash != seal.hash || entry.sealed_at != seal.sealed_at)
        {
            return Err(Problem::WitnessedSealDiffers { seal_id });
        }
        Ok(())
    }

    /// After the last seal: every witnessed seal must have been among them, and the newest
    /// witnessed seal young enough.
    pub fn seals_done(&mut self) {
        if self.problem.is_some() {
            return;
        }
        let Some(witness) = self.inputs.witness else {
            return;
        };
        let newest_in_database = self.newest.as_ref().map_or(0, |seal| seal.seal_id);
        self.problem = match witness.newest() {
            None => Some(Problem::WitnessEmpty),
            Some(entry) if entry.seal_id > newest_in_database => {
                let seal_id = *witness
                    .entries
                    .range(newest_in_database + 1..)
                    .next()
                    .expect("the newest is in range")
                    .0;
                Some(Problem::WitnessedSealMissing {
                    seal_id,
                    newest_in_database,
                })
            }
            Some(entry) if self.inputs.now - entry.sealed_at > self.inputs.seal_age_max => {
                Some(Problem::SealStale {
                    seal_id: entry.seal_id,
                    sealed_at: entry.sealed_at,
                    age_max_seconds: self.inputs.seal_age_max.num_seconds(),
                })
            }
            Some(_) => None,
        };
    }

    /// Checks the next record. Records must come in (chain, seq) order, after the seals.
    pub fn push(&mut self, record: &AuditRecord) {
        if self.problem.is_some() {
            return;
        }
        self.records += 1;
        self.problem = self.check_record(record).err();
    }

    fn check_record(&mut self, record: &AuditRecord) -> Result<(), Problem> {
        let (chain, seq) = (record.chain, record.seq);
        let state = self
            .chains
            .get_mut(chain as usize)
            .ok_or(Problem::HashMismatch { chain, seq })?;
        state.cursor.advance(record)?;
        if let Some(signer) = self.inputs.tags {
            match signer.check_record(record, &state.tag) {
                None => {
                    return Err(Problem::UnknownKey {
                        chain,
                        seq,
                        key_id: record.key_id.get(),
                    });
                }
                Some(false) => return Err(Problem::TagMismatch { chain, seq }),
                Some(true) => {}
            }
        }
        state.tag = record.tag;
        if !self.windows.allows(record) {
            return Err(Problem::KeyOutOfOffice {
                chain,
                seq,
                key_id: record.key_id.get(),
            });
        }
        if let Some(seal) = &self.newest
            && let Some(head) = seal.head(chain)
            && head.seq == seq
            && head.hash != record.hash
        {
            return Err(Problem::SealedRecordDiffers {
                seal_id: seal.seal_id,
                chain,
                seq,
            });
        }
        Ok(())
    }

    /// Finishes: every chain must reach at least what the newest seal recorded.
    pub fn finish(mut self) -> VerifyReport {
        if self.problem.is_none()
            && let Some(seal) = &self.newest
        {
            self.problem = seal.heads.iter().find_map(|head| {
                let last_seq = self.chains[head.chain as usize].cursor.seq;
                (last_seq < head.seq).then_some(Problem::SealedRecordsMissing {
                    seal_id: seal.seal_id,
                    chain: head.chain,
                    sealed_seq: head.seq,
                    last_seq,
                })
            });
        }
        let summary = |seal: &Seal| SealSummary {
            seal_id: seal.seal_id,
            sealed_at: seal.sealed_at,
        };
        VerifyReport {
            records: self.records,
            chains_used: self.chains.iter().filter(|s| s.cursor.seq > 0).count() as u32,
            seals: self.seals,
            sealed_records: self.newest.as_ref().map_or(0, |seal| {
                seal.heads.iter().map(|head| head.seq.unsigned_abs()).sum()
            }),
            newest_seal: self.newest.as_ref().map(summary),
            newest_witnessed: self.inputs.witness.and_then(Witness::newest).map(|entry| {
                SealSummary {
                    seal_id: entry.seal_id,
                    sealed_at: entry.sealed_at,
                }
            }),
            checked_at: self.inputs.now,
            proofs: Proofs {
                hash_chains: true,
                record_tags: self.inputs.tags.is_some(),
                seal_signatures: self.inputs.public_key.is_some(),
                witness_files: self.inputs.witness.map_or(0, |w| w.files),
            },
            problem: self.problem,
        }
    }
}
