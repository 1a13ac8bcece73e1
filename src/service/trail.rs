//! The audit trail: verify every chain and seal in one consistent snapshot, and seal the
//! current heads.

use super::keys::KeyUseError;
use super::{Rerun, Services};
use crate::audit::{AuditVerifier, GENESIS_TAG, Seal, VerifyReport};
use crate::domain::PageRows;
use crate::store::{AuditRepo, Store, Tx};

/// Audit trail use cases.
#[derive(Debug)]
pub struct Trail<'a, S>(pub(super) &'a Services<S>);

impl<S: Store> Trail<'_, S> {
    /// Verifies the whole trail, streaming it page by page from one snapshot, so appends made
    /// meanwhile neither show up half-read nor raise false alarms.
    pub async fn verify(&self) -> Result<VerifyReport, KeyUseError> {
        let mut tx = self.0.store.read().await?;
        let signer = self.0.signer(&mut tx).await?;
        let seals = tx.audit_seals().await?;
        let mut verifier = AuditVerifier::new(&signer, &seals);
        let mut after = (0, 0);
        loop {
            let page = tx.audit_page(after, PageRows::MAX).await?;
            let Some(last) = page.last() else { break };
            after = (last.chain, last.seq);
            for record in &page {
                verifier.push(record);
            }
        }
        let heads = tx.audit_heads(false).await?;
        Ok(verifier.finish(&heads))
    }

    /// Seals every chain's current head; no chain moves while the seal is taken.
    pub async fn seal(&self) -> Result<Seal, KeyUseError> {
        let mut rerun = Rerun::new();
        loop {
            match self.seal_once().await {
                Err(e) if rerun.after(&e).await => {}
                done => return done,
            }
        }
    }

    async fn seal_once(&self) -> Result<Seal, KeyUseError> {
        let services = self.0;
        let mut tx = services.store.begin().await?;
        let heads = tx.audit_heads(true).await?;
        let (seal_id, prev_tag) = tx
            .last_seal()
            .await?
            .map_or((1, GENESIS_TAG), |s| (s.seal_id + 1, s.tag));
        let signer = services.signer(&mut tx).await?;
        let seal = signer.seal_heads(seal_id, services.clock.now(), &heads, &prev_tag);
        tx.insert_seal(&seal).await?;
        tx.commit().await?;
        Ok(seal)
    }
}
