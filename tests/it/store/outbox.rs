//! `OutboxRepo`: rows wait until relayed; a claim keeps other relays off them.

use tender::store::{OutboxClaim, OutboxJob, OutboxRepo, Store, Tx};

use super::at;
use crate::helpers::{TestApp, both_backends};

fn claim(token: &str, now_ms: i64) -> OutboxClaim<'_> {
    OutboxClaim {
        token,
        now_ms,
        until_ms: now_ms + 60_000,
        rows: 10,
    }
}

async fn pending<S: Store>(env: &TestApp<S>) -> i64 {
    let mut read = env.store().read().await.unwrap();
    read.outbox_pending().await.unwrap()
}

async fn rows_wait_until_relayed_and_a_claim_keeps_others_off<S: Store>(env: TestApp<S>) {
    let mut tx = env.store().begin().await.unwrap();
    for n in 1..=3 {
        let job = OutboxJob {
            job: "generate-batch",
            payload: format!("{{\"batch_id\":{n}}}"),
        };
        tx.insert_outbox(&job, at()).await.unwrap();
    }
    tx.commit().await.unwrap();
    assert_eq!(pending(&env).await, 3);

    let mut first = env.store().begin().await.unwrap();
    let rows = first.claim_outbox(&claim("a", 1_000)).await.unwrap();
    assert_eq!(
        rows.iter().map(|r| r.payload.as_str()).collect::<Vec<_>>(),
        ["{\"batch_id\":1}", "{\"batch_id\":2}", "{\"batch_id\":3}"]
    );
    if S::OUTBOX_CLAIM_LOCKS_ROWS {
        // PostgreSQL: the rows stay locked while the first relay's transaction is open.
        let mut second = env.store().begin().await.unwrap();
        assert!(
            second
                .claim_outbox(&claim("b", 1_000))
                .await
                .unwrap()
                .is_empty()
        );
        drop(second);
    } else {
        // SQLite: the lease is committed, and holds until it runs out.
        first.commit().await.unwrap();
        first = env.store().begin().await.unwrap();
        assert!(
            first
                .claim_outbox(&claim("b", 2_000))
                .await
                .unwrap()
                .is_empty()
        );
        let again = first.claim_outbox(&claim("b", 61_001)).await.unwrap();
        assert_eq!(again.len(), 3, "an expired lease is claimed again");
    }
    first.mark_relayed(rows[0].outbox_id, at()).await.unwrap();
    first.commit().await.unwrap();
    assert_eq!(pending(&env).await, 2);
    let mut later = env.store().begin().await.unwrap();
    let left = later.claim_outbox(&claim("c", 500_000)).await.unwrap();
    assert_eq!(
        left.iter().map(|r| r.outbox_id).collect::<Vec<_>>(),
        [rows[1].outbox_id, rows[2].outbox_id]
    );
}
both_backends!(
    outbox_claims,
    rows_wait_until_relayed_and_a_claim_keeps_others_off
);
