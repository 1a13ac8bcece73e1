//! `RetailerRepo`.

use tender::domain::{CommissionRate, NewRetailer, RetailerName};
use tender::store::{RetailerRepo, Store, Tx};

use super::rows;
use super::{acme, at};
use crate::helpers::{TestApp, both_backends};

async fn a_taken_name_inserts_nothing_and_reads_back_by_name<S: Store>(env: TestApp<S>) {
    let mut tx = env.store().begin().await.unwrap();
    let id = tx.insert_retailer(&acme(), at()).await.unwrap().unwrap();
    assert_eq!(tx.insert_retailer(&acme(), at()).await.unwrap(), None);
    let other = NewRetailer {
        name: RetailerName::parse("Bolt").unwrap(),
        commission: CommissionRate::parse_percent("0").unwrap(),
    };
    let second = tx.insert_retailer(&other, at()).await.unwrap().unwrap();
    assert!(second.0 > id.0);
    tx.commit().await.unwrap();
    let mut read = env.store().read().await.unwrap();
    let found = read.retailer_by_name(&acme().name).await.unwrap().unwrap();
    assert_eq!(
        (
            found.id,
            found.commission_bp.basis_points(),
            found.created_at
        ),
        (id, 250, at())
    );
    let missing = RetailerName::parse("Nobody").unwrap();
    assert!(read.retailer_by_name(&missing).await.unwrap().is_none());
    let names: Vec<String> = read
        .retailers(rows(10))
        .await
        .unwrap()
        .iter()
        .map(|r| r.name.to_string())
        .collect();
    assert_eq!(names, ["Acme", "Bolt"]);
    assert_eq!(read.retailers(rows(1)).await.unwrap().len(), 1);
}
both_backends!(
    retailer_names,
    a_taken_name_inserts_nothing_and_reads_back_by_name
);

async fn an_uncommitted_transaction_leaves_nothing<S: Store>(env: TestApp<S>) {
    let mut tx = env.store().begin().await.unwrap();
    tx.insert_retailer(&acme(), at()).await.unwrap().unwrap();
    drop(tx);
    let mut read = env.store().read().await.unwrap();
    assert!(read.retailers(rows(10)).await.unwrap().is_empty());
}
both_backends!(retailer_rollback, an_uncommitted_transaction_leaves_nothing);

async fn a_name_with_a_taken_key_inserts_nothing_and_the_key_finds_it<S: Store>(env: TestApp<S>) {
    let mut tx = env.store().begin().await.unwrap();
    let id = tx.insert_retailer(&acme(), at()).await.unwrap().unwrap();
    let shouting = NewRetailer {
        name: RetailerName::parse("ACME").unwrap(),
        commission: CommissionRate::parse_percent("1").unwrap(),
    };
    assert_eq!(tx.insert_retailer(&shouting, at()).await.unwrap(), None);
    tx.commit().await.unwrap();
    let mut read = env.store().read().await.unwrap();
    let lower = RetailerName::parse("acme").unwrap();
    let found = read.retailer_by_name(&lower).await.unwrap().unwrap();
    assert_eq!((found.id, found.name.as_str()), (id, "Acme"));
}
both_backends!(
    retailer_keys,
    a_name_with_a_taken_key_inserts_nothing_and_the_key_finds_it
);

async fn a_row_keyed_before_the_key_existed_is_found_and_kept_by_its_exact_name<S: Store>(
    env: TestApp<S>,
) {
    let mut tx = env.store().begin().await.unwrap();
    let id = tx.insert_retailer(&acme(), at()).await.unwrap().unwrap();
    tx.commit().await.unwrap();
    // The stand-in key migration 0003 gives rows it finds.
    assert_eq!(
        env.exec("UPDATE retailer SET name_key = lower(name)").await,
        1
    );
    let mut tx = env.store().begin().await.unwrap();
    assert_eq!(tx.insert_retailer(&acme(), at()).await.unwrap(), None);
    let found = tx.retailer_by_name(&acme().name).await.unwrap().unwrap();
    assert_eq!(found.id, id);
}
both_backends!(
    retailer_stand_in_keys,
    a_row_keyed_before_the_key_existed_is_found_and_kept_by_its_exact_name
);
