//! Issuance on both backends: batches, collisions, bad input, printer files, audit tampering
//! and key rotation. Every test runs once on SQLite and once on PostgreSQL.

use std::collections::HashSet;

use crate::helpers::{TestApp, actor, both_backends, usd_form};
use tender::codegen::{CodeGenerator, CodeSource, ScriptedCodes};
use tender::domain::{BatchState, Code};
use tender::error::Classify;
use tender::keys::{KeyId, KeyPurpose};
use tender::service::batches::BatchForm;
use tender::service::printer_check::VerifyPrinterFileError;
use tender::store::Store;

fn printer_codes(env_file: &std::path::Path) -> Vec<(String, Code)> {
    let mut reader = csv::Reader::from_path(env_file).unwrap();
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            (r[0].to_string(), Code::parse(&r[1]).unwrap())
        })
        .collect()
}

async fn a_batch_of_n_yields_n_cards_with_n_distinct_digests<S: Store>(env: TestApp<S>) {
    let batch = env.request(2_345).await;
    assert_eq!(batch.state, BatchState::Requested);
    let done = env
        .generate(batch.id, &mut CodeGenerator::from_os_rng(), 1_000)
        .await;
    assert_eq!((done.state, done.generated), (BatchState::Completed, 2_345));
    assert_eq!(env.count("SELECT count(*) FROM card").await, 2_345);
    assert_eq!(
        env.count("SELECT count(DISTINCT digest) FROM card").await,
        2_345
    );
    let rows = printer_codes(&env.export_file(batch.id));
    assert_eq!(rows.len(), 2_345);
    let serials: HashSet<_> = rows.iter().map(|(s, _)| s.clone()).collect();
    assert_eq!(serials.len(), 2_345);
    let check = env
        .app
        .services()
        .printer_check()
        .verify(&env.export_file(batch.id), &actor())
        .await
        .unwrap();
    assert_eq!(check.rows, 2_345);
    // Generating again changes nothing: the job is idempotent.
    let again = env
        .generate(batch.id, &mut CodeGenerator::from_os_rng(), 1_000)
        .await;
    assert_eq!(again.export_mac, done.export_mac);
    assert_eq!(env.count("SELECT count(*) FROM card").await, 2_345);
    let report = env.verify().await;
    assert!(report.is_intact(), "{:?}", report.problem);
}
both_backends!(
    batch_of_n,
    a_batch_of_n_yields_n_cards_with_n_distinct_digests
);

async fn a_duplicate_digest_is_regenerated_and_counted<S: Store>(env: TestApp<S>) {
    let first = env.request(50).await;
    env.generate(first.id, &mut CodeGenerator::from_os_rng(), 20)
        .await;
    let taken = printer_codes(&env.export_file(first.id))[7].1.clone();
    // The second batch's source yields an issued code, then the same code again in its chunk.
    let second = env.request(50).await;
    let mut source = ScriptedCodes::new([taken.clone(), taken.clone()]);
    let done = env.generate(second.id, &mut source, 20).await;
    assert_eq!(done.generated, 50);
    assert!(done.collisions >= 2, "collisions: {}", done.collisions);
    assert_eq!(env.count("SELECT count(*) FROM card").await, 100);
    assert_eq!(
        env.count("SELECT count(DISTINCT digest) FROM card").await,
        100
    );
    let codes = printer_codes(&env.export_file(second.id));
    assert!(codes.iter().all(|(_, c)| c != &taken));
    env.app
        .services()
        .printer_check()
        .verify(&env.export_file(second.id), &actor())
        .await
        .unwrap();
}
both_backends!(
    duplicate_digest,
    a_duplicate_digest_is_regenerated_and_counted
);

async fn bad_batch_requests_are_refused_and_write_nothing<S: Store>(env: TestApp<S>) {
    env.request(1).await;
    let records_before = env.count("SELECT count(*) FROM audit_record").await;
    let cases: Vec<(BatchForm, &str)> = vec![
        (
            BatchForm {
                count: 0,
                ..usd_form(0)
            },
            "batch.bad_count",
        ),
        (usd_form(10_000_001), "batch.bad_count"),
        (
            BatchForm {
                value: Some("-5.00".into()),
                ..usd_form(5)
            },
            "batch.bad_value",
        ),
        (
            BatchForm {
                value: Some("25.001".into()),
                ..usd_form(5)
            },
            "money.too_precise",
        ),
        (
            BatchForm {
                value: Some("2x".into()),
                ..usd_form(5)
            },
            "money.malformed",
        ),
        (
            BatchForm {
                currency: "XYZ".into(),
                ..usd_form(5)
            },
            "money.unknown_currency",
        ),
        (
            BatchForm {
                region: "ZZ".into(),
                ..usd_form(5)
            },
            "region.unknown",
        ),
        (
            BatchForm {
                retailer: "Nobody".into(),
                ..usd_form(5)
            },
            "store.unknown_retailer",
        ),
        (
            BatchForm {
                expires_in_days: Some(0),
                ..usd_form(5)
            },
            "batch.bad_expiry",
        ),
        (
            BatchForm {
                min: Some("10.00".into()),
                ..usd_form(5)
            },
            "batch.value_choice",
        ),
        (
            BatchForm {
                value: None,
                min: Some("50.00".into()),
                max: Some("10.00".into()),
                ..usd_form(5)
            },
            "batch.inverted_range",
        ),
    ];
    for (form, code) in cases {
        let error = env
            .app
            .services()
            .batches()
            .request(&form, &actor())
            .await
            .unwrap_err();
        assert_eq!(error.code(), code, "{error}");
        assert!(!error.to_string().is_empty());
    }
    assert_eq!(env.count("SELECT count(*) FROM batch").await, 1);
    assert_eq!(
        env.count("SELECT count(*) FROM audit_record").await,
        records_before
    );
    let duplicate = env
        .app
        .services()
        .retailers()
        .add("Acme", "1", &actor())
        .await
        .unwrap_err();
    assert_eq!(duplicate.code(), "store.duplicate_retailer");
}
both_backends!(bad_input, bad_batch_requests_are_refused_and_write_nothing);

async fn a_variable_value_batch_records_its_range<S: Store>(env: TestApp<S>) {
    env.request(1).await;
    let form = BatchForm {
        value: None,
        min: Some("10.00".into()),
        max: Some("500.00".into()),
        ..usd_form(3)
    };
    let batch = env
        .app
        .services()
        .batches()
        .request(&form, &actor())
        .await
        .unwrap();
    assert_eq!(batch.value.to_string(), "10.00 to 500.00 USD");
    let done = env
        .generate(batch.id, &mut CodeGenerator::from_os_rng(), 10)
        .await;
    let text = std::fs::read_to_string(env.export_file(done.id)).unwrap();
    assert!(text.lines().nth(1).unwrap().contains(",10.00-500.00,USD,"));
}
both_backends!(variable_value, a_variable_value_batch_records_its_range);

async fn a_tampered_printer_file_is_caught_without_printing_codes<S: Store>(env: TestApp<S>) {
    let batch = env.request(30).await;
    env.generate(batch.id, &mut CodeGenerator::from_os_rng(), 30)
        .await;
    let path = env.export_file(batch.id);
    let original = std::fs::read_to_string(&path).unwrap();
    let line = original.lines().nth(5).unwrap().to_string();
    let code = line.split(',').nth(1).unwrap().to_string();
    let mut changed = code.clone().into_bytes();
    changed[15] = if changed[15] == b'9' {
        b'0'
    } else {
        changed[15] + 1
    };
    let changed = String::from_utf8(changed).unwrap();
    let cases = [
        original.replacen(&code, &changed, 1),
        original.replacen(&code, &format!("{}AB{}", &code[..6], &code[8..]), 1),
        original.replacen(&format!("{line}\n"), "", 1),
    ];
    for text in cases {
        let tampered = env.db.path().join("tampered.csv");
        std::fs::write(&tampered, &text).unwrap();
        let error = env
            .app
            .services()
            .printer_check()
            .verify(&tampered, &actor())
            .await
            .unwrap_err();
        assert!(
            matches!(error, VerifyPrinterFileError::Mismatch { .. }),
            "{error}"
        );
        let message = error.to_string();
        assert!(
            !message.contains(&code) && !message.contains(&changed),
            "{message}"
        );
    }
}
both_backends!(
    tampered_export,
    a_tampered_printer_file_is_caught_without_printing_codes
);

async fn rotated_keys_still_look_up_and_verify_older_records<S: Store>(env: TestApp<S>) {
    let old = env.request(20).await;
    env.generate(old.id, &mut CodeGenerator::from_os_rng(), 20)
        .await;
    // Rotate both keys in two steps; the running app loads its rings again when the database
    // names a key they lack.
    let key_dir = env.db.settings().key_dir();
    let services = env.app.services();
    for purpose in [KeyPurpose::Lookup, KeyPurpose::Audit] {
        let id = services
            .keys()
            .add(purpose, &key_dir, &actor())
            .await
            .unwrap();
        assert_eq!(id, KeyId::new(2).unwrap());
    }
    let pending = services
        .batches()
        .request(&usd_form(5), &actor())
        .await
        .unwrap();
    assert_eq!(pending.lookup_key_id, 1, "a pending key is used by nothing");
    for purpose in [KeyPurpose::Lookup, KeyPurpose::Audit] {
        let id = KeyId::new(2).unwrap();
        assert!(
            services
                .keys()
                .activate(purpose, id, &actor())
                .await
                .unwrap()
        );
        assert!(
            !services
                .keys()
                .activate(purpose, id, &actor())
                .await
                .unwrap()
        );
    }
    let new = services
        .batches()
        .request(&usd_form(20), &actor())
        .await
        .unwrap();
    assert_eq!(new.lookup_key_id, 2);
    // A code issued under key 1 has another digest under key 2: only the check against other
    // keys keeps it from being issued twice.
    let issued = printer_codes(&env.export_file(old.id))[3].1.clone();
    let mut source = ScriptedCodes::new([issued.clone()]);
    let done = services
        .generation()
        .generate(new.id, &mut source, 20, &actor(), &|_| {})
        .await
        .unwrap();
    assert_eq!(done.collisions, 1);
    let new_codes = printer_codes(&env.export_file(new.id));
    assert!(new_codes.iter().all(|(_, c)| c != &issued));
    assert_eq!(
        env.count(&format!(
            "SELECT count(*) FROM card WHERE batch_id = {} AND lookup_key_id = 2",
            new.id
        ))
        .await,
        20
    );
    // The batch requested while key 2 was pending is generated under key 1, as it records.
    env.generate(pending.id, &mut CodeGenerator::from_os_rng(), 5)
        .await;
    assert_eq!(
        env.count(&format!(
            "SELECT count(*) FROM card WHERE batch_id = {} AND lookup_key_id = 1",
            pending.id
        ))
        .await,
        5
    );
    for id in [old.id, new.id, pending.id] {
        services
            .printer_check()
            .verify(&env.export_file(id), &actor())
            .await
            .unwrap();
    }
    let report = env.verify().await;
    assert!(report.is_intact(), "{:?}", report.problem);
    assert!(
        env.count("SELECT count(*) FROM audit_record WHERE key_id = 2")
            .await
            > 0,
        "records after the activation are tagged under the new audit key"
    );
}
both_backends!(
    key_rotation,
    rotated_keys_still_look_up_and_verify_older_records
);

#[test]
fn scripted_sources_fall_back_to_random_codes() {
    let code = Code::parse("1111222233334444").unwrap();
    let mut source = ScriptedCodes::new([code.clone()]);
    assert_eq!(source.next_code(), code);
    assert_ne!(source.next_code(), code);
}
