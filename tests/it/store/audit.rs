//! `AuditRepo`: appends chain per chain, heads follow, pages come in (chain, seq) order.

use tender::audit::{AuditEvent, AuditSigner, GENESIS_TAG, chain_of};
use tender::keys::{KeyId, KeyPurpose, KeyRing};
use tender::store::{AuditRepo, Store, Tx};

use super::at;
use super::rows;
use crate::helpers::{TestApp, both_backends};

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
        let event = AuditEvent::new("test", "thing.happened", subject.to_string(), i);
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
    assert_eq!(signer.check_record(batch[0], &GENESIS_TAG), Some(true));
    assert_eq!(signer.check_record(batch[1], &batch[0].tag), Some(true));
    assert_eq!(batch[2].details, "3");
    let heads = read.audit_heads(false).await.unwrap();
    assert_eq!(heads.len(), 16);
    let head = heads.iter().find(|h| h.chain == chain).unwrap();
    assert_eq!((head.seq, head.tag), (3, batch[2].tag));
    // Paging resumes after the last record seen.
    let rest = read
        .audit_page((records[0].chain, records[0].seq), rows(2))
        .await
        .unwrap();
    assert_eq!(rest, records[1..3]);
}
both_backends!(audit_append, appends_chain_their_tags_and_move_the_heads);

async fn seals_are_stored_in_order<S: Store>(env: TestApp<S>) {
    let signer = signer(&env);
    let mut tx = env.store().begin().await.unwrap();
    assert!(tx.last_seal().await.unwrap().is_none());
    let heads = tx.audit_heads(true).await.unwrap();
    let first = signer.seal_heads(1, at(), &heads, &GENESIS_TAG);
    tx.insert_seal(&first).await.unwrap();
    let second = signer.seal_heads(2, at(), &heads, &first.tag);
    tx.insert_seal(&second).await.unwrap();
    tx.commit().await.unwrap();
    let mut read = env.store().read().await.unwrap();
    assert_eq!(read.audit_seals().await.unwrap(), [first, second.clone()]);
    assert_eq!(read.last_seal().await.unwrap(), Some(second));
}
both_backends!(audit_seals, seals_are_stored_in_order);
