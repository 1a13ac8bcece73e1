//! `BatchRepo`: serial reservation and the guarded transitions of a generation run.

use tender::domain::{BatchState, CardValue, Currency, Money, Region};
use tender::keys::KeyId;
use tender::store::{BatchRepo, NewBatch, RetailerRepo, Store, Tx};

use super::rows;
use super::{acme, at};
use crate::helpers::{TestApp, actor, both_backends};

async fn insert<S: Store>(tx: &mut S::Tx, count: u64) -> tender::domain::BatchId {
    let retailer = match tx.retailer_by_name(&acme().name).await.unwrap() {
        Some(r) => r.id,
        None => tx.insert_retailer(&acme(), at()).await.unwrap().unwrap(),
    };
    let value = CardValue::fixed(Money::parse("25.00", Currency::Usd).unwrap()).unwrap();
    let first_sequence = tx.reserve_serials(count).await.unwrap();
    tx.insert_batch(&NewBatch {
        retailer_id: retailer,
        count,
        value: &value,
        region: &Region::parse("US").unwrap(),
        expires_at: None,
        first_sequence,
        lookup_key_id: KeyId::new(1).unwrap(),
        requested_by: &actor(),
        requested_at: at(),
    })
    .await
    .unwrap()
}

async fn serial_ranges_are_contiguous_and_never_overlap<S: Store>(env: TestApp<S>) {
    let mut tx = env.store().begin().await.unwrap();
    let a = tx.reserve_serials(10).await.unwrap();
    let b = tx.reserve_serials(5).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = env.store().begin().await.unwrap();
    let c = tx.reserve_serials(1).await.unwrap();
    drop(tx); // rolled back: the next reservation takes the same number
    let mut tx = env.store().begin().await.unwrap();
    let d = tx.reserve_serials(1).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!((a, b, c, d), (1, 11, 16, 16));
}
both_backends!(
    batch_serials,
    serial_ranges_are_contiguous_and_never_overlap
);

async fn only_the_claiming_run_moves_a_batch<S: Store>(env: TestApp<S>) {
    let mut tx = env.store().begin().await.unwrap();
    let id = insert::<S>(&mut tx, 100).await;
    let batch = tx.batch(id).await.unwrap().unwrap();
    assert_eq!(
        (batch.state, batch.generated, batch.count),
        (BatchState::Requested, 0, 100)
    );
    assert!(
        tx.claim_batch(id, "run-1", BatchState::Generating)
            .await
            .unwrap()
    );
    // A second claim takes the batch over; the first run's steps then miss.
    assert!(
        tx.claim_batch(id, "run-2", BatchState::Generating)
            .await
            .unwrap()
    );
    assert!(!tx.advance_batch(id, "run-1", 0, 60).await.unwrap());
    assert!(tx.advance_batch(id, "run-2", 0, 60).await.unwrap());
    // Progress is a guard too: the same chunk cannot be committed twice.
    assert!(!tx.advance_batch(id, "run-2", 0, 60).await.unwrap());
    tx.record_chunk(id, 3, 1_234).await.unwrap();
    assert!(
        !tx.complete_batch(id, "run-2", "ab", at()).await.unwrap(),
        "40 cards missing"
    );
    assert!(tx.advance_batch(id, "run-2", 60, 40).await.unwrap());
    assert!(!tx.complete_batch(id, "run-1", "ab", at()).await.unwrap());
    assert!(tx.complete_batch(id, "run-2", "ab", at()).await.unwrap());
    assert!(
        !tx.claim_batch(id, "run-3", BatchState::Generating)
            .await
            .unwrap(),
        "completed"
    );
    tx.commit().await.unwrap();
    let done = env
        .store()
        .read()
        .await
        .unwrap()
        .batch(id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.state, BatchState::Completed);
    assert_eq!(
        (done.generated, done.collisions, done.export_bytes),
        (100, 3, 1_234)
    );
    assert_eq!(done.export_mac.as_deref(), Some("ab"));
    assert_eq!(done.completed_at, Some(at()));
}
both_backends!(batch_claims, only_the_claiming_run_moves_a_batch);

async fn batches_list_newest_first<S: Store>(env: TestApp<S>) {
    let mut tx = env.store().begin().await.unwrap();
    let first = insert::<S>(&mut tx, 1).await;
    let second = insert::<S>(&mut tx, 2).await;
    tx.commit().await.unwrap();
    let mut read = env.store().read().await.unwrap();
    let ids: Vec<_> = read
        .batches(rows(10))
        .await
        .unwrap()
        .iter()
        .map(|b| b.id)
        .collect();
    assert_eq!(ids, [second, first]);
    assert_eq!(read.batches(rows(1)).await.unwrap().len(), 1);
    assert!(
        read.batch(tender::domain::BatchId(999))
            .await
            .unwrap()
            .is_none()
    );
}
both_backends!(batch_listing, batches_list_newest_first);
