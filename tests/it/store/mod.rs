//! Contract suites, one per repository trait: what each step promises, run on both backends
//! through the `Store` seam, with no service in between.

mod audit;
mod batch;
mod card;
mod outbox;
mod retailer;

use chrono::{DateTime, Utc};
use tender::domain::{CommissionRate, NewRetailer, RetailerName};

fn acme() -> NewRetailer {
    NewRetailer {
        name: RetailerName::parse("Acme").unwrap(),
        commission: CommissionRate::parse_percent("2.5").unwrap(),
    }
}

fn at() -> DateTime<Utc> {
    crate::helpers::epoch()
}

fn rows(n: u64) -> tender::domain::PageRows {
    tender::domain::PageRows::new(n).unwrap()
}

/// SQLite has one writer: a process's writers take their turns in the order they came, rather
/// than in SQLite's busy handler, where a writer that has waited longest sleeps longest and
/// loses to later ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_writers_of_one_process_take_turns_in_arrival_order() {
    use tender::store::{SqliteStore, Store, Tx};
    let env = crate::helpers::TestApp::<SqliteStore>::new(crate::helpers::TestDb::sqlite()).await;
    let holder = env.store().begin().await.unwrap();
    let (turns, mut order) = tokio::sync::mpsc::unbounded_channel();
    let mut writers = Vec::new();
    for name in ["first", "second", "third"] {
        let (store, turns) = (env.store().clone(), turns.clone());
        writers.push(tokio::spawn(async move {
            let tx = store.begin().await.unwrap();
            turns.send(name).unwrap();
            tx.commit().await.unwrap();
        }));
        // Each is waiting, its busy-handler sleeps growing, before the next one comes.
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    }
    holder.commit().await.unwrap();
    for writer in writers {
        writer.await.unwrap();
    }
    drop(turns);
    let mut taken = Vec::new();
    while let Some(name) = order.recv().await {
        taken.push(name);
    }
    assert_eq!(taken, ["first", "second", "third"]);
}
