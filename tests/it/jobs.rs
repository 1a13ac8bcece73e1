//! Jobs reach the job runner through the outbox: written with the change that causes them,
//! relayed once however many relays run, and run by the runtime until drained.

use tender::domain::{BatchState, PageRows};
use tender::jobs::{Catalog, RunMode, status};
use tender::store::{DbPool, Store};

use crate::helpers::{TestApp, actor, both_backends, usd_form};

fn catalog() -> Catalog {
    Catalog::load(None).unwrap()
}

async fn queued_jobs<S: Store>(env: &TestApp<S>) -> usize {
    status::recent(&env.store().db_pool(), PageRows::MAX)
        .await
        .unwrap()
        .len()
}

async fn a_batch_request_writes_its_job_to_the_outbox_and_the_relay_queues_it_once<S: Store>(
    env: TestApp<S>,
) {
    let batch = env.request(10).await;
    // Recorded with the batch, in its transaction; nothing is in the job runner yet.
    assert_eq!(
        env.count("SELECT count(*) FROM outbox WHERE relayed_at IS NULL")
            .await,
        1
    );
    assert_eq!(queued_jobs(&env).await, 0);
    let relay = catalog()
        .runtime(&env.app, std::sync::Arc::new(|_| {}))
        .relay();
    assert_eq!(relay.relay_once().await.unwrap(), 1);
    assert_eq!(relay.relay_once().await.unwrap(), 0);
    assert_eq!(relay.pending().await.unwrap(), 0);
    let jobs = status::recent(&env.store().db_pool(), PageRows::MAX)
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].queue, "tender.generate-batch.v1");
    // A row relayed again (a relay that died between its push and its mark) is queued once.
    env.exec("UPDATE outbox SET relayed_at = NULL, claimed_until_ms = NULL")
        .await;
    assert_eq!(relay.relay_once().await.unwrap(), 1);
    assert_eq!(queued_jobs(&env).await, 1);
    // The runtime then runs it to completion and drains.
    catalog()
        .runtime(&env.app, std::sync::Arc::new(|_| {}))
        .run(RunMode::Drain)
        .await
        .unwrap();
    let done = env.app.services().batches().show(batch.id).await.unwrap();
    assert_eq!((done.state, done.generated), (BatchState::Completed, 10));
}
both_backends!(
    outbox_relay,
    a_batch_request_writes_its_job_to_the_outbox_and_the_relay_queues_it_once
);

async fn concurrent_relays_push_each_row_once<S: Store>(env: TestApp<S>) {
    let batches = 30;
    for _ in 0..batches {
        env.request(1).await;
    }
    let runtime = catalog().runtime(&env.app, std::sync::Arc::new(|_| {}));
    let relays: Vec<_> = (0..4).map(|_| runtime.relay()).collect();
    let passes = relays.iter().map(|relay| async move {
        let mut relayed = 0;
        loop {
            match relay.relay_once().await.unwrap() {
                0 => return relayed,
                n => relayed += n,
            }
        }
    });
    let relayed: usize = futures::future::join_all(passes).await.into_iter().sum();
    assert_eq!(relayed, batches);
    assert_eq!(queued_jobs(&env).await, batches);
    let keys = match env.store().db_pool() {
        DbPool::Sqlite(_) => "SELECT count(DISTINCT idempotency_key) FROM Jobs",
        DbPool::Postgres(_) => "SELECT count(DISTINCT idempotency_key) FROM apalis.jobs",
    };
    assert_eq!(env.count(keys).await, 30);
}
both_backends!(relay_concurrency, concurrent_relays_push_each_row_once);

async fn a_request_that_fails_writes_no_job<S: Store>(env: TestApp<S>) {
    env.request(1).await;
    let form = tender::service::batches::BatchForm {
        retailer: "Nobody".into(),
        ..usd_form(5)
    };
    env.app
        .services()
        .batches()
        .request(&form, &actor())
        .await
        .unwrap_err();
    assert_eq!(env.count("SELECT count(*) FROM outbox").await, 1);
}
both_backends!(outbox_atomic, a_request_that_fails_writes_no_job);
