//! `AuditRepo`: appends chain per chain (tags and hashes), heads follow, pages come in (chain,
//! seq) order, a rotated key is refused to appenders holding the old one.

use tender::audit::{AuditEvent, AuditSigner, CHAIN_COUNT, ChainCursor, GENESIS, Seal, chain_of};
use tender::keys::{KeyId, KeyPurpose, KeyRing, SealKey};
use tender::store::{AuditRepo, Store, Tx};

use super::at;
use super::rows;
use crate::helpers::{TestApp, actor, both_backends};

fn signer<S: Store>(env: &TestApp<S>) -> AuditSigner {
    let ring = KeyRing::load(KeyPurpose::Audit, &env.db.settings().key_dir()).unwrap();
    AuditSigner::new(std::sync::Arc::new(ring), KeyId::new(1).unwrap()).unwrap()
}

async fn appends_chain_their_tags_and_move_the_heads<S: Store>(env: TestApp<S>) {
    let signer = signer(&env);
    // `init` recorded its keys already; those records stay where they are.
    let mut read = env.store().read().await.unwrap();
    let before = read.audit_page((0, 0), rows(100)).await.unwrap().len();
    drop(read);
    let subjects = ["batch:1", "batch:1", "retailer:9", "batch:1"];
    let mut tx = env.store().begin().await.unwrap();
    for (i, subject) in subjects.iter().enumerate() {
        let event = AuditEvent::new(&actor(), "thing.happened", subject.to_string(), i);
        tx.append(&signer, &event, at()).await.unwrap();
    }
    tx.commit().await.unwrap();
    let mut read = env.store().read().await.unwrap();
    let records = read.audit_page((0, 0), rows(100)).await.unwrap();
    assert_eq!(records.len(), before + 4);
    let mut ordered = records.clone();
    ordered.sort_by_key(|r| (r.chain, r.seq));
    assert_eq!(records, ordered, "pages come in (chain, seq) order");
    let chain = chain_of("batch:1");
    let batch: Vec<_> = records.iter().filter(|r| r.subject == "batch:1").collect();
    assert_eq!(batch.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(signer.check_record(batch[0], &GENESIS), Some(true));
    assert_eq!(signer.check_record(batch[1], &batch[0].tag), Some(true));
    assert_eq!(batch[0].expected_hash(&GENESIS), batch[0].hash);
    assert_eq!(batch[1].expected_hash(&batch[0].hash), batch[1].hash);
    assert_eq!(batch[2].details, "3");
    let heads = read.audit_heads(false).await.unwrap();
    assert_eq!(heads.len(), 16);
    let head = heads.iter().find(|h| h.chain == chain).unwrap();
    assert_eq!(
        (head.seq, head.tag, head.hash),
        (3, batch[2].tag, batch[2].hash)
    );
    assert_eq!(head.key_id, Some(signer.key_id()));
    let chain_only = read.chain_page(chain, 1, rows(10)).await.unwrap();
    assert_eq!(chain_only, [batch[1].clone(), batch[2].clone()]);
    // Paging resumes after the last record seen.
    let rest = read
        .audit_page((records[0].chain, records[0].seq), rows(2))
        .await
        .unwrap();
    assert_eq!(rest, records[1..3]);
}
both_backends!(audit_append, appends_chain_their_tags_and_move_the_heads);

async fn seals_are_stored_in_order<S: Store>(env: TestApp<S>) {
    let key = SealKey::generate();
    let heads: Vec<_> = (0..CHAIN_COUNT)
        .map(|chain| ChainCursor::genesis(chain).sealed())
        .collect();
    let mut tx = env.store().begin().await.unwrap();
    assert!(tx.last_seal().await.unwrap().is_none());
    let first = Seal::sign(&key, 1, at(), heads.clone(), &GENESIS);
    tx.insert_seal(&first).await.unwrap();
    let second = Seal::sign(&key, 2, at(), heads, &first.hash);
    tx.insert_seal(&second).await.unwrap();
    tx.commit().await.unwrap();
    let mut read = env.store().read().await.unwrap();
    let all = read.seal_page(0, rows(10)).await.unwrap();
    assert_eq!(all, [first.clone(), second.clone()]);
    assert_eq!(
        read.seal_page(1, rows(10)).await.unwrap(),
        std::slice::from_ref(&second)
    );
    assert_eq!(read.last_seal().await.unwrap(), Some(second));
}
both_backends!(audit_seals, seals_are_stored_in_order);

/// An appender that chose its key before a rotation committed is told to run again, never
/// allowed to tag under the retired key.
async fn an_append_under_a_key_the_heads_no_longer_name_is_refused<S: Store>(env: TestApp<S>) {
    let signer = signer(&env);
    let mut tx = env.store().begin().await.unwrap();
    tx.set_chain_key(KeyId::new(2).unwrap()).await.unwrap();
    let event = AuditEvent::new(&actor(), "thing.happened", "batch:1".into(), 0);
    let refused = tx.append(&signer, &event, at()).await.unwrap_err();
    assert_eq!(tender::error::Classify::code(&refused), "store.moved");
    assert_eq!(
        tender::error::Classify::kind(&refused),
        tender::error::Kind::Transient
    );
}
both_backends!(
    audit_append_moved,
    an_append_under_a_key_the_heads_no_longer_name_is_refused
);
