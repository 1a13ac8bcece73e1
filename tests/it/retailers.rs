//! Retailers through the service, on both backends: names that hide or reorder text are refused,
//! a name that looks like a taken one is taken, and a batch finds its retailer by any spelling
//! that looks the same.

use crate::helpers::{TestApp, actor, both_backends, usd_form};
use tender::error::Classify;
use tender::service::batches::BatchForm;
use tender::store::Store;

async fn names_with_a_bidi_override_or_a_zero_width_character_are_refused<S: Store>(
    env: TestApp<S>,
) {
    let retailers = env.app.services().retailers();
    for name in ["Acme\u{202E}gnp.exe", "Ac\u{200B}me"] {
        let refused = retailers.add(name, "2.5", &actor()).await.unwrap_err();
        assert_eq!(refused.code(), "retailer.bad_name", "{name:?}");
    }
    assert_eq!(env.count("SELECT count(*) FROM retailer").await, 0);
    assert_eq!(
        env.count("SELECT count(*) FROM audit_record WHERE action LIKE 'retailer.%'")
            .await,
        0
    );
}
both_backends!(
    hidden_characters,
    names_with_a_bidi_override_or_a_zero_width_character_are_refused
);

async fn a_name_that_looks_like_a_taken_one_is_taken<S: Store>(env: TestApp<S>) {
    let retailers = env.app.services().retailers();
    retailers.add("Acme", "2.5", &actor()).await.unwrap();
    // Upper case, fullwidth, Cyrillic А, Cyrillic е, and "rn" for "m".
    for alike in [
        "ACME",
        "\u{FF21}\u{FF43}\u{FF4D}\u{FF45}",
        "\u{410}cme",
        "Acm\u{435}",
        "Acrne",
    ] {
        let taken = retailers.add(alike, "1", &actor()).await.unwrap_err();
        assert_eq!(taken.code(), "store.duplicate_retailer", "{alike}");
    }
    retailers.add("Bolt", "1", &actor()).await.unwrap();
    assert_eq!(env.count("SELECT count(*) FROM retailer").await, 2);
}
both_backends!(look_alikes, a_name_that_looks_like_a_taken_one_is_taken);

async fn nfc_and_nfd_spellings_are_one_retailer<S: Store>(env: TestApp<S>) {
    let retailers = env.app.services().retailers();
    let added = retailers
        .add("Cafe\u{301} Books", "2.5", &actor())
        .await
        .unwrap();
    assert_eq!(added.name.as_str(), "Caf\u{e9} Books");
    let taken = retailers
        .add("Caf\u{e9} Books", "2.5", &actor())
        .await
        .unwrap_err();
    assert_eq!(taken.code(), "store.duplicate_retailer");
    let stored = env
        .count("SELECT count(*) FROM retailer WHERE name = 'Caf\u{e9} Books'")
        .await;
    assert_eq!(stored, 1);
}
both_backends!(normal_forms, nfc_and_nfd_spellings_are_one_retailer);

async fn a_batch_finds_its_retailer_by_any_spelling_that_looks_the_same<S: Store>(env: TestApp<S>) {
    let added = env
        .app
        .services()
        .retailers()
        .add("Acme", "2.5", &actor())
        .await
        .unwrap();
    for spelling in ["acme", " ACME ", "\u{410}cme"] {
        let form = BatchForm {
            retailer: spelling.into(),
            ..usd_form(1)
        };
        let batch = env
            .app
            .services()
            .batches()
            .request(&form, &actor())
            .await
            .unwrap();
        assert_eq!(batch.retailer_id, added.id, "{spelling}");
    }
}
both_backends!(
    found_by_key,
    a_batch_finds_its_retailer_by_any_spelling_that_looks_the_same
);
