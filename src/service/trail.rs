//! The audit trail: verify it from one consistent snapshot with whatever proofs this process
//! can run, seal it under the seal key (witnessed outside the database), and hash the records
//! written before records carried hashes.

use std::path::{Path, PathBuf};

use chrono::Duration;

use super::Services;
use crate::audit::witness::{Witness, WitnessError, WitnessWriter};
use crate::audit::{
    AuditSigner, AuditVerifier, CHAIN_COUNT, ChainCursor, GENESIS, Problem, Seal, VerifyInputs,
    VerifyReport,
};
use crate::domain::PageRows;
use crate::error::{Classify, Kind};
use crate::keys::{SealKey, SealPublicKey};
use crate::store::{AuditRepo, Store, StoreError, Tx};

/// Why the trail could not be verified or sealed (a trail that fails verification is a
/// [`VerifyReport`] with a problem, not an error).
#[derive(Debug, thiserror::Error)]
pub enum TrailError {
    /// The given public key and the witness's header name different seal keys.
    #[error("the seal public key given and the one the witness names differ")]
    KeysDisagree,
    /// The newest seal is not signed by this process's seal key.
    #[error(
        "the newest seal is not signed by this host's seal key: another key seals this trail, or the seal was forged"
    )]
    OtherSealKey,
    /// The records since the newest seal do not hold together: sealing them would bless them.
    #[error("refusing to seal a broken trail: {0}")]
    Broken(Problem),
    /// A chain's head row disagrees with its records.
    #[error(
        "refusing to seal: chain {chain}'s head row names record {head_seq} but the chain ends at record {last_seq}"
    )]
    HeadDisagrees {
        /// The chain.
        chain: u32,
        /// What the head row says.
        head_seq: i64,
        /// What the records say.
        last_seq: i64,
    },
    /// The seal was stored, but appending it to the witness failed.
    #[error("seal {seal_id} is stored but not witnessed: {source}")]
    Unwitnessed {
        /// The seal.
        seal_id: i64,
        /// Why the witness failed.
        source: WitnessError,
    },
    /// The witness file could not be read or opened.
    #[error(transparent)]
    Witness(#[from] WitnessError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Classify for TrailError {
    fn code(&self) -> &'static str {
        match self {
            TrailError::KeysDisagree => "audit.keys_disagree",
            TrailError::OtherSealKey => "audit.other_seal_key",
            TrailError::Broken(_) | TrailError::HeadDisagrees { .. } => "audit.broken",
            TrailError::Unwitnessed { .. } => "audit.unwitnessed",
            TrailError::Witness(e) => e.code(),
            TrailError::Store(e) => e.code(),
        }
    }

    fn kind(&self) -> Kind {
        match self {
            TrailError::KeysDisagree => Kind::Invalid,
            TrailError::OtherSealKey | TrailError::Broken(_) | TrailError::HeadDisagrees { .. } => {
                Kind::Conflict
            }
            TrailError::Unwitnessed { source, .. } => source.kind(),
            TrailError::Witness(e) => e.kind(),
            TrailError::Store(e) => e.kind(),
        }
    }
}

/// What a verification is given besides the database.
#[derive(Debug, Clone)]
pub struct VerifyRequest {
    /// The seal public key, from a file; else the witness's header names it.
    pub public_key: Option<SealPublicKey>,
    /// The witness files.
    pub witness_files: Vec<PathBuf>,
    /// The oldest the newest witnessed seal may be.
    pub seal_age_max: Duration,
}

/// A seal made and witnessed.
#[derive(Debug, Clone)]
pub struct Sealed {
    /// The seal.
    pub seal: Seal,
    /// The witness it was appended to.
    pub witness: PathBuf,
    /// Records it covers that no earlier seal did.
    pub new_records: u64,
}

/// Audit trail use cases.
#[derive(Debug)]
pub struct Trail<'a, S>(pub(super) &'a Services<S>);

impl<S: Store> Trail<'_, S> {
    /// Verifies the whole trail from one snapshot (appends made meanwhile neither show up
    /// half-read nor raise false alarms), with every proof this process can run: hash chains
    /// always, record tags where the audit key is loaded, seal signatures where a public key is
    /// given or the witness names one, the witness where given.
    pub async fn verify(&self, request: &VerifyRequest) -> Result<VerifyReport, TrailError> {
        let witness = Witness::read(&request.witness_files)?;
        let public_key = match (request.public_key, &witness) {
            (Some(given), Some(witness)) if given != witness.public_key => {
                return Err(TrailError::KeysDisagree);
            }
            (Some(given), _) => Some(given),
            (None, witness) => witness.as_ref().map(|w| w.public_key),
        };
        let signer = self.0.keys.audit.as_ref().map(|chain| {
            let ring = chain.ring();
            let newest = ring.newest().0;
            AuditSigner::new(ring, newest).expect("the ring holds its newest key")
        });
        let mut tx = self.0.store.read().await?;
        let activations = tx.audit_key_activations().await?;
        let mut verifier = AuditVerifier::new(
            VerifyInputs {
                tags: signer.as_ref(),
                public_key,
                witness: witness.as_ref(),
                seal_age_max: request.seal_age_max,
                now: self.0.clock.now(),
            },
            &activations,
        );
        let mut after = 0;
        loop {
            let page = tx.seal_page(after, PageRows::MAX).await?;
            let Some(last) = page.last() else { break };
            after = last.seal_id;
            for seal in page {
                verifier.push_seal(seal);
            }
        }
        verifier.seals_done();
        let mut after = (0, 0);
        loop {
            let page = tx.audit_page(after, PageRows::MAX).await?;
            let Some(last) = page.last() else { break };
            after = (last.chain, last.seq);
            for record in &page {
                verifier.push(record);
            }
        }
        tx.commit().await?;
        Ok(verifier.finish())
    }

    /// Seals every chain's current count and newest hash under `key`, after checking that the
    /// records since the previous seal hold together, then appends the seal to the witness at
    /// `witness` and syncs it. No chain moves while the seal is taken.
    pub async fn seal(&self, key: &SealKey, witness: &Path) -> Result<Sealed, TrailError> {
        // Held until the seal is witnessed: this host's witness lists its seals in order.
        let mut writer = WitnessWriter::open(witness, &key.public())?;
        let (seal, new_records) = rerun!(self.seal_once(key))?;
        writer
            .append(&seal)
            .map_err(|source| TrailError::Unwitnessed {
                seal_id: seal.seal_id,
                source,
            })?;
        Ok(Sealed {
            seal,
            witness: writer.path().to_path_buf(),
            new_records,
        })
    }

    async fn seal_once(&self, key: &SealKey) -> Result<(Seal, u64), TrailError> {
        let services = self.0;
        let mut tx = services.store.begin().await?;
        let heads = tx.audit_heads(true).await?;
        let prev = tx.last_seal().await?;
        if let Some(prev) = &prev
            && !prev.signed_by(&key.public())
        {
            return Err(TrailError::OtherSealKey);
        }
        let mut cursors: Vec<ChainCursor> = match &prev {
            Some(prev) => prev.heads.iter().map(ChainCursor::at).collect(),
            None => (0..CHAIN_COUNT).map(ChainCursor::genesis).collect(),
        };
        let mut new_records = 0;
        for (cursor, head) in cursors.iter_mut().zip(&heads) {
            loop {
                let page = tx
                    .chain_page(cursor.chain, cursor.seq, PageRows::MAX)
                    .await?;
                if page.is_empty() {
                    break;
                }
                for record in &page {
                    cursor.advance(record).map_err(TrailError::Broken)?;
                }
                new_records += page.len() as u64;
            }
            if cursor.seq != head.seq || cursor.hash != head.hash {
                return Err(TrailError::HeadDisagrees {
                    chain: head.chain,
                    head_seq: head.seq,
                    last_seq: cursor.seq,
                });
            }
        }
        let (seal_id, prev_hash) = prev.map_or((1, GENESIS), |s| (s.seal_id + 1, s.hash));
        let heads = cursors.iter().map(ChainCursor::sealed).collect();
        let seal = Seal::sign(key, seal_id, services.clock.now(), heads, &prev_hash);
        tx.insert_seal(&seal).await?;
        tx.commit().await?;
        Ok((seal, new_records))
    }

    /// Computes and stores the hash of every record written before records carried hashes
    /// (the migration that added them left zeros, in the records and the chain heads); `tender
    /// init` runs it. A chain whose head holds a hash is done already and not read. Returns
    /// how many records it hashed.
    pub async fn hash_unhashed(&self) -> Result<u64, StoreError> {
        let mut tx = self.0.store.begin().await?;
        let mut hashed = 0;
        let heads = tx.audit_heads(true).await?;
        for head in heads.iter().filter(|h| h.seq > 0 && h.hash == GENESIS) {
            let mut cursor = ChainCursor::genesis(head.chain);
            loop {
                let page = tx.chain_page(head.chain, cursor.seq, PageRows::MAX).await?;
                if page.is_empty() {
                    break;
                }
                for record in &page {
                    let hash = record.expected_hash(&cursor.hash);
                    if record.hash == GENESIS {
                        tx.set_record_hash(head.chain, record.seq, &hash).await?;
                        hashed += 1;
                    }
                    cursor.seq = record.seq;
                    cursor.hash = hash;
                }
            }
        }
        tx.commit().await?;
        Ok(hashed)
    }
}
