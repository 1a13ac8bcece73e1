//! `CardRepo`: the bulk load sets aside taken digests and stores the rest.

use tender::codegen::CodeDigest;
use tender::domain::BatchId;
use tender::keys::KeyId;
use tender::store::{CardChunk, CardRepo, Store, Tx};

use crate::helpers::{TestApp, both_backends};

fn digest(n: u8) -> CodeDigest {
    CodeDigest([n; 32])
}

async fn taken_digests_come_back_and_the_rest_is_stored<S: Store>(env: TestApp<S>) {
    let first: Vec<CodeDigest> = (1..=5).map(digest).collect();
    let mut tx = env.store().begin().await.unwrap();
    let chunk = CardChunk {
        batch_id: BatchId(1),
        first_sequence: 100,
        key_id: KeyId::new(1).unwrap(),
        digests: &first,
    };
    assert!(
        tx.insert_cards(&chunk, &[0, 1, 2, 3, 4])
            .await
            .unwrap()
            .is_empty()
    );
    // Index 1 repeats a stored digest; index 3 repeats index 2 of the same call.
    let second = vec![digest(6), digest(3), digest(7), digest(7), digest(8)];
    let chunk = CardChunk {
        batch_id: BatchId(2),
        first_sequence: 200,
        key_id: KeyId::new(1).unwrap(),
        digests: &second,
    };
    let mut taken = tx.insert_cards(&chunk, &[0, 1, 2, 3, 4]).await.unwrap();
    taken.sort_unstable();
    assert_eq!(taken, [1, 3]);
    // Only the indexes asked for are stored.
    let third = vec![digest(9), digest(10)];
    let chunk = CardChunk {
        batch_id: BatchId(3),
        first_sequence: 300,
        key_id: KeyId::new(2).unwrap(),
        digests: &third,
    };
    assert!(tx.insert_cards(&chunk, &[1]).await.unwrap().is_empty());
    tx.commit().await.unwrap();
    assert_eq!(env.count("SELECT count(*) FROM card").await, 9);
    let mut read = env.store().read().await.unwrap();
    let cards = read.cards_in_range(199, 301).await.unwrap();
    let serials: Vec<u64> = cards.iter().map(|c| c.sequence).collect();
    assert_eq!(serials, [200, 202, 204, 301]);
    assert_eq!(cards[3].key_id, KeyId::new(2).unwrap());
    assert!(cards[3].digest.ct_eq(&digest(10)));
    let found = read
        .existing_digests(&[digest(3), digest(9), digest(10)])
        .await
        .unwrap();
    assert_eq!(found.len(), 2);
    assert!(found.contains(&digest(3)) && found.contains(&digest(10)));
}
both_backends!(card_load, taken_digests_come_back_and_the_rest_is_stored);

async fn a_large_lookup_spans_several_statements<S: Store>(env: TestApp<S>) {
    let digests: Vec<CodeDigest> = (0..25_000u32)
        .map(|n| {
            let mut d = [0u8; 32];
            d[..4].copy_from_slice(&n.to_be_bytes());
            CodeDigest(d)
        })
        .collect();
    let indexes: Vec<usize> = (0..digests.len()).collect();
    let mut tx = env.store().begin().await.unwrap();
    let chunk = CardChunk {
        batch_id: BatchId(1),
        first_sequence: 1,
        key_id: KeyId::new(1).unwrap(),
        digests: &digests,
    };
    assert!(tx.insert_cards(&chunk, &indexes).await.unwrap().is_empty());
    assert_eq!(tx.existing_digests(&digests).await.unwrap().len(), 25_000);
    tx.commit().await.unwrap();
}
both_backends!(card_lookup, a_large_lookup_spans_several_statements);
