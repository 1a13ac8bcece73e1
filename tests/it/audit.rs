//! The audit trail as a verifier without any writing key sees it: every record proven by its
//! hash chain up to the newest seal, seals proven by the seal public key, and a witness outside
//! the database that catches deleted seals, a wiped trail and an older copy restored. Each
//! tampering is caught and the first bad record or seal named; what cannot be proven is
//! reported as not checked, never as intact.

use std::path::PathBuf;
use std::process::Command;

use chrono::Duration;
use tender::app::App;
use tender::audit::{AuditEvent, AuditRecord, AuditSigner, Problem, Seal, VerifyReport};
use tender::codegen::CodeGenerator;
use tender::config::{SealAgeMax, Settings};
use tender::domain::{Actor, PageRows};
use tender::keys::{KeyId, KeyNeeds, KeyPurpose, KeyRing, SealKey, SealPublicKey};
use tender::service::trail::{TrailError, VerifyRequest};
use tender::store::{AuditRepo, Store, Tx};

use crate::helpers::{TestApp, actor, both_backends};

/// The sealing host: its seal key and its witness file.
struct Sealer {
    key: SealKey,
    witness: PathBuf,
}

impl Sealer {
    fn new<S: Store>(env: &TestApp<S>) -> Sealer {
        Sealer {
            key: SealKey::create_files(&env.db.settings().key_dir()).unwrap(),
            witness: env.db.path().join("witness/audit.witness"),
        }
    }

    fn public(&self) -> SealPublicKey {
        self.key.public()
    }

    async fn seal<S: Store>(&self, app: &App<S>) -> Seal {
        app.services()
            .trail()
            .seal(&self.key, &self.witness)
            .await
            .unwrap()
            .seal
    }
}

/// Finance's view: the app opened on a host with no audit key at all.
async fn public_only<S: Store>(env: &TestApp<S>) -> App<S> {
    let settings = Settings {
        key_dir: Some(env.db.path().join("no-keys-here")),
        ..env.db.settings()
    };
    App::open(
        &settings,
        std::sync::Arc::new(env.clock.clone()),
        KeyNeeds::AUDIT_IF_PRESENT,
    )
    .await
    .unwrap()
}

async fn verify<S: Store>(
    app: &App<S>,
    public_key: Option<SealPublicKey>,
    witness: &[&PathBuf],
) -> VerifyReport {
    app.services()
        .trail()
        .verify(&VerifyRequest {
            public_key,
            witness_files: witness.iter().map(|p| (*p).clone()).collect(),
            seal_age_max: SealAgeMax::default().get(),
        })
        .await
        .unwrap()
}

/// The problem the public-key holder's verification names, with the witness.
async fn problem<S: Store>(env: &TestApp<S>, sealer: &Sealer) -> Problem {
    let report = verify(&public_only(env).await, None, &[&sealer.witness]).await;
    report.problem.expect("the tampering went unnoticed")
}

/// A batch requested and generated: a handful of records on the batch's chain. Returns that
/// chain and its last sequence number.
async fn batch_trail<S: Store>(env: &TestApp<S>) -> (u32, i64) {
    let batch = env.request(40).await;
    env.generate(batch.id, &mut CodeGenerator::from_os_rng(), 10)
        .await;
    let chain = tender::audit::chain_of(&format!("batch:{}", batch.id));
    let last = env
        .count(&format!(
            "SELECT max(seq) FROM audit_record WHERE chain = {chain}"
        ))
        .await;
    assert!(last >= 5, "the batch wrote {last} records");
    (chain, last)
}

/// A sealing host, a batch's records (its chain and last sequence number), and a seal over them.
async fn sealed_trail<S: Store>(env: &TestApp<S>) -> (Sealer, u32, i64) {
    let sealer = Sealer::new(env);
    let (chain, last) = batch_trail(env).await;
    sealer.seal(&env.app).await;
    (sealer, chain, last)
}

async fn records_of<S: Store>(env: &TestApp<S>, chain: u32) -> Vec<AuditRecord> {
    let mut tx = env.store().read().await.unwrap();
    tx.chain_page(chain, 0, PageRows::MAX).await.unwrap()
}

/// Stores `record` over the one at its place, as a database writer would.
async fn overwrite<S: Store>(env: &TestApp<S>, record: &AuditRecord) {
    env.exec(&format!(
        "UPDATE audit_record SET details = '{}', actor = '{}', key_id = {}, tag = {}, hash = {} \
         WHERE chain = {} AND seq = {}",
        record.details,
        record.actor,
        record.key_id,
        env.blob(&record.tag),
        env.blob(&record.hash),
        record.chain,
        record.seq
    ))
    .await;
}

async fn everything_up_to_the_newest_seal_is_proven_with_the_public_key_alone<S: Store>(
    env: TestApp<S>,
) {
    let sealer = Sealer::new(&env);
    batch_trail(&env).await;
    let seal = sealer.seal(&env.app).await;
    let finance = public_only(&env).await;
    // The witness's header names the public key; a key file gives the same proofs.
    for report in [
        verify(&finance, None, &[&sealer.witness]).await,
        verify(&finance, Some(sealer.public()), &[&sealer.witness]).await,
    ] {
        assert!(report.is_intact(), "{:?}", report.problem);
        assert!(report.proofs.hash_chains && report.proofs.seal_signatures);
        assert!(!report.proofs.record_tags, "finance holds no audit key");
        assert_eq!(report.proofs.witness_files, 1);
        assert_eq!(report.newest_seal.unwrap().seal_id, seal.seal_id);
        assert_eq!(report.sealed_records, report.records);
        assert_eq!(report.unsealed_records(), 0);
    }
    // With neither, the seals are not proven, and the report says so.
    let unproven = verify(&finance, None, &[]).await;
    assert!(!unproven.proofs.seal_signatures && unproven.proofs.witness_files == 0);
    // The writer's host also checks every tag.
    let full = verify(&env.app, Some(sealer.public()), &[&sealer.witness]).await;
    assert!(full.is_intact() && full.proofs.record_tags);
    // Records after the newest seal are counted as not provable.
    env.request(5).await;
    let later = verify(&finance, None, &[&sealer.witness]).await;
    assert!(later.is_intact());
    assert!(later.unsealed_records() > 0);
}
both_backends!(
    public_key_proof,
    everything_up_to_the_newest_seal_is_proven_with_the_public_key_alone
);

async fn a_modified_record_is_named_by_its_hash_even_when_rehashed<S: Store>(env: TestApp<S>) {
    let (sealer, chain, last) = sealed_trail(&env).await;
    let records = records_of(&env, chain).await;
    env.exec(&format!(
        "UPDATE audit_record SET details = replace(details, '10', '11') WHERE chain = {chain} AND seq = 3"
    ))
    .await;
    assert_eq!(
        problem(&env, &sealer).await,
        Problem::HashMismatch { chain, seq: 3 }
    );
    // Anyone can compute hashes: rewrite record 3 and every hash after it. The seal, signed
    // over the old newest hash, still names the chain.
    let mut prev = records[1].hash;
    for record in &records[2..] {
        let mut changed = record.clone();
        changed.details = changed.details.replace("10", "11");
        changed.hash = changed.expected_hash(&prev);
        prev = changed.hash;
        overwrite(&env, &changed).await;
    }
    assert_eq!(
        problem(&env, &sealer).await,
        Problem::SealedRecordDiffers {
            seal_id: 1,
            chain,
            seq: last
        }
    );
    // The writer's host names the record itself by its tag.
    let report = env.verify().await;
    assert_eq!(report.problem, Some(Problem::TagMismatch { chain, seq: 3 }));
}
both_backends!(
    audit_modified,
    a_modified_record_is_named_by_its_hash_even_when_rehashed
);

async fn a_deleted_record_is_named<S: Store>(env: TestApp<S>) {
    let (sealer, chain, _) = sealed_trail(&env).await;
    env.exec(&format!(
        "DELETE FROM audit_record WHERE chain = {chain} AND seq = 2"
    ))
    .await;
    let problem = problem(&env, &sealer).await;
    assert_eq!(
        problem,
        Problem::RecordMissing {
            chain,
            expected_seq: 2,
            found_seq: 3
        }
    );
    assert!(problem.to_string().contains("record 2 was deleted"));
}
both_backends!(audit_deleted, a_deleted_record_is_named);

async fn an_inserted_record_is_named<S: Store>(env: TestApp<S>) {
    let (sealer, chain, _) = sealed_trail(&env).await;
    // Make room at 3 (in two steps, around the primary key), then copy record 2 into it.
    env.exec(&format!(
        "UPDATE audit_record SET seq = seq + 1000 WHERE chain = {chain} AND seq >= 3"
    ))
    .await;
    env.exec(&format!(
        "UPDATE audit_record SET seq = seq - 999 WHERE chain = {chain} AND seq >= 1003"
    ))
    .await;
    env.exec(&format!(
        "INSERT INTO audit_record \
         (chain, seq, recorded_at, actor, action, subject, details, key_id, tag, hash) \
         SELECT chain, 3, recorded_at, actor, action, subject, details, key_id, tag, hash \
         FROM audit_record WHERE chain = {chain} AND seq = 2"
    ))
    .await;
    assert_eq!(
        problem(&env, &sealer).await,
        Problem::HashMismatch { chain, seq: 3 }
    );
}
both_backends!(audit_inserted, an_inserted_record_is_named);

async fn reordered_records_are_named<S: Store>(env: TestApp<S>) {
    let (sealer, chain, _) = sealed_trail(&env).await;
    for sql in [
        "UPDATE audit_record SET seq = 1000000 WHERE chain = {c} AND seq = 2",
        "UPDATE audit_record SET seq = 2 WHERE chain = {c} AND seq = 3",
        "UPDATE audit_record SET seq = 3 WHERE chain = {c} AND seq = 1000000",
    ] {
        env.exec(&sql.replace("{c}", &chain.to_string())).await;
    }
    assert_eq!(
        problem(&env, &sealer).await,
        Problem::HashMismatch { chain, seq: 2 }
    );
}
both_backends!(audit_reordered, reordered_records_are_named);

/// A record appended after the newest seal by someone without the audit key: its hash is right
/// (anyone can compute one), its tag cannot be.
async fn a_forged_record_is_named_by_its_tag_and_unprovable_without_it<S: Store>(env: TestApp<S>) {
    let (sealer, chain, last) = sealed_trail(&env).await;
    let records = records_of(&env, chain).await;
    let mut forged = records.last().unwrap().clone();
    forged.seq = last + 1;
    forged.actor = "cli:mallory".into();
    forged.action = "batch.completed".into();
    forged.tag = [7; 32];
    forged.hash = forged.expected_hash(&records.last().unwrap().hash);
    env.exec(&format!(
        "INSERT INTO audit_record \
         (chain, seq, recorded_at, actor, action, subject, details, key_id, tag, hash) \
         SELECT chain, {}, recorded_at, 'cli:mallory', 'batch.completed', subject, details, \
         key_id, {}, {} FROM audit_record WHERE chain = {chain} AND seq = {last}",
        last + 1,
        env.blob(&forged.tag),
        env.blob(&forged.hash)
    ))
    .await;
    let report = env.verify().await;
    assert_eq!(
        report.problem,
        Some(Problem::TagMismatch {
            chain,
            seq: last + 1
        })
    );
    // Without the audit key nothing after the newest seal can be proven: the report says which
    // proof did not run and how many records it leaves unproven, never that they are proven.
    let finance = verify(&public_only(&env).await, None, &[&sealer.witness]).await;
    assert!(finance.is_intact());
    assert!(!finance.proofs.record_tags);
    assert_eq!(finance.unsealed_records(), 1);
}
both_backends!(
    audit_forged,
    a_forged_record_is_named_by_its_tag_and_unprovable_without_it
);

async fn the_newest_records_deleted_are_caught_by_the_seal<S: Store>(env: TestApp<S>) {
    let (sealer, chain, last) = sealed_trail(&env).await;
    // Cut the chain's tail and make the head row agree: the head row is not evidence.
    env.exec(&format!(
        "DELETE FROM audit_record WHERE chain = {chain} AND seq > {}",
        last - 2
    ))
    .await;
    env.exec(&format!(
        "UPDATE audit_chain_head SET seq = {} WHERE chain = {chain}",
        last - 2
    ))
    .await;
    let problem = problem(&env, &sealer).await;
    assert_eq!(
        problem,
        Problem::SealedRecordsMissing {
            seal_id: 1,
            chain,
            sealed_seq: last,
            last_seq: last - 2
        }
    );
    assert!(
        problem
            .to_string()
            .contains(&format!("record {} and after were deleted", last - 1))
    );
}
both_backends!(
    audit_truncated,
    the_newest_records_deleted_are_caught_by_the_seal
);

async fn the_newest_seal_deleted_with_the_records_after_the_one_before_is_caught_by_the_witness<
    S: Store,
>(
    env: TestApp<S>,
) {
    let sealer = Sealer::new(&env);
    batch_trail(&env).await;
    let first = sealer.seal(&env.app).await;
    batch_trail(&env).await;
    sealer.seal(&env.app).await;
    env.exec("DELETE FROM audit_seal WHERE seal_id = 2").await;
    for head in &first.heads {
        env.exec(&format!(
            "DELETE FROM audit_record WHERE chain = {} AND seq > {}",
            head.chain, head.seq
        ))
        .await;
    }
    // What the database says now is consistent: only the witness remembers seal 2.
    let finance = public_only(&env).await;
    assert!(
        verify(&finance, Some(sealer.public()), &[])
            .await
            .is_intact()
    );
    assert_eq!(
        problem(&env, &sealer).await,
        Problem::WitnessedSealMissing {
            seal_id: 2,
            newest_in_database: 1
        }
    );
}
both_backends!(
    audit_seal_deleted,
    the_newest_seal_deleted_with_the_records_after_the_one_before_is_caught_by_the_witness
);

async fn a_wiped_trail_is_caught_by_the_witness<S: Store>(env: TestApp<S>) {
    let sealer = Sealer::new(&env);
    batch_trail(&env).await;
    sealer.seal(&env.app).await;
    env.exec("DELETE FROM audit_record").await;
    env.exec("DELETE FROM audit_seal").await;
    env.exec(&format!(
        "UPDATE audit_chain_head SET seq = 0, tag = {z}, hash = {z}",
        z = env.blob(&[0; 32])
    ))
    .await;
    assert_eq!(
        problem(&env, &sealer).await,
        Problem::WitnessedSealMissing {
            seal_id: 1,
            newest_in_database: 0
        }
    );
}
both_backends!(audit_wiped, a_wiped_trail_is_caught_by_the_witness);

async fn a_database_restored_from_before_the_last_seal_is_caught_by_the_witness<S: Store>(
    mut env: TestApp<S>,
) {
    let sealer = Sealer::new(&env);
    batch_trail(&env).await;
    sealer.seal(&env.app).await;
    let backup = env.backup().await;
    batch_trail(&env).await;
    sealer.seal(&env.app).await;
    let restored = App::<S>::open(
        &Settings {
            key_dir: Some(env.db.path().join("no-keys-here")),
            ..backup
        },
        std::sync::Arc::new(env.clock.clone()),
        KeyNeeds::AUDIT_IF_PRESENT,
    )
    .await
    .unwrap();
    assert!(
        verify(&restored, Some(sealer.public()), &[])
            .await
            .is_intact(),
        "the copy is consistent in itself"
    );
    let report = verify(&restored, None, &[&sealer.witness]).await;
    assert_eq!(
        report.problem,
        Some(Problem::WitnessedSealMissing {
            seal_id: 2,
            newest_in_database: 1
        })
    );
}
both_backends!(
    audit_restored,
    a_database_restored_from_before_the_last_seal_is_caught_by_the_witness
);

async fn a_seal_forged_without_the_seal_key_is_named<S: Store>(env: TestApp<S>) {
    let sealer = Sealer::new(&env);
    let (chain, last) = batch_trail(&env).await;
    let mut seal = sealer.seal(&env.app).await;
    // Claim fewer records, rehash (anyone can), keep the signature (nobody else can make one).
    let index = chain as usize;
    seal.heads[index].seq = last - 1;
    seal.heads[index].hash = records_of(&env, chain).await[(last - 2) as usize].hash;
    seal.hash = seal.expected_hash(&[0; 32]);
    env.exec(&format!(
        "UPDATE audit_seal SET heads = '{}', hash = {} WHERE seal_id = 1",
        tender::audit::encode_heads(&seal.heads),
        env.blob(&seal.hash)
    ))
    .await;
    let finance = public_only(&env).await;
    let report = verify(&finance, Some(sealer.public()), &[]).await;
    assert_eq!(report.problem, Some(Problem::SealForged { seal_id: 1 }));
    // The witness remembers the seal's true hash as well.
    assert_eq!(
        problem(&env, &sealer).await,
        Problem::SealForged { seal_id: 1 }
    );
}
both_backends!(
    audit_seal_forged,
    a_seal_forged_without_the_seal_key_is_named
);

/// A database writer swaps in a key pair of their own: new fingerprint, every seal re-signed.
/// The verifier takes the public key from a file or the witness, never from the database.
async fn a_seal_key_swapped_in_the_database_is_named<S: Store>(env: TestApp<S>) {
    let sealer = Sealer::new(&env);
    batch_trail(&env).await;
    let seal = sealer.seal(&env.app).await;
    let mallory = SealKey::generate();
    let resigned = Seal::sign(
        &mallory,
        seal.seal_id,
        seal.sealed_at,
        seal.heads.clone(),
        &[0; 32],
    );
    env.exec(&format!(
        "UPDATE audit_seal SET key_fingerprint = {}, hash = {}, signature = {} WHERE seal_id = 1",
        env.blob(&resigned.key_fingerprint),
        env.blob(&resigned.hash),
        env.blob(&resigned.signature)
    ))
    .await;
    let finance = public_only(&env).await;
    let report = verify(&finance, Some(sealer.public()), &[]).await;
    assert_eq!(report.problem, Some(Problem::SealOtherKey { seal_id: 1 }));
    assert_eq!(
        problem(&env, &sealer).await,
        Problem::SealOtherKey { seal_id: 1 }
    );
    // The swapped key cannot seal on the sealing host either.
    let refused = env
        .app
        .services()
        .trail()
        .seal(&sealer.key, &sealer.witness)
        .await
        .unwrap_err();
    assert!(matches!(refused, TrailError::OtherSealKey), "{refused}");
}
both_backends!(
    audit_seal_key_swapped,
    a_seal_key_swapped_in_the_database_is_named
);

/// After an audit key rotation, the retired key tags nothing: a record tagged under it after
/// the rotation record is refused, with the audit key and with the public key alone.
async fn a_record_under_a_retired_audit_key_after_the_rotation_is_named<S: Store>(env: TestApp<S>) {
    let key_dir = env.db.settings().key_dir();
    let old_ring = std::sync::Arc::new(KeyRing::load(KeyPurpose::Audit, &key_dir).unwrap());
    let old = AuditSigner::new(old_ring, KeyId::new(1).unwrap()).unwrap();
    batch_trail(&env).await;
    let services = env.app.services();
    let new_id = services
        .keys()
        .add(KeyPurpose::Audit, &key_dir, &actor())
        .await
        .unwrap();
    services
        .keys()
        .activate(KeyPurpose::Audit, new_id, &actor())
        .await
        .unwrap();
    batch_trail(&env).await;
    let report = env.verify().await;
    assert!(report.is_intact(), "{:?}", report.problem);
    // Whoever kept key 1 writes a record with a correct tag and hash under it.
    let mallory = Actor::cli("mallory", None).unwrap();
    let event = AuditEvent::new(&mallory, "batch.completed", "batch:1".into(), 0);
    let mut tx = env.store().begin().await.unwrap();
    tx.set_chain_key(old.key_id()).await.unwrap();
    let at = tender::clock::Clock::now(&env.clock);
    tx.append(&old, &event, at).await.unwrap();
    tx.set_chain_key(new_id).await.unwrap();
    tx.commit().await.unwrap();
    let chain = event.chain();
    let seq = env
        .count(&format!(
            "SELECT max(seq) FROM audit_record WHERE chain = {chain}"
        ))
        .await;
    let expected = Problem::KeyOutOfOffice {
        chain,
        seq,
        key_id: 1,
    };
    assert_eq!(env.verify().await.problem, Some(expected.clone()));
    let finance = verify(&public_only(&env).await, None, &[]).await;
    assert_eq!(finance.problem, Some(expected));
}
both_backends!(
    audit_retired_key,
    a_record_under_a_retired_audit_key_after_the_rotation_is_named
);

async fn a_sealer_that_stopped_fails_verification_once_its_seal_is_too_old<S: Store>(
    env: TestApp<S>,
) {
    let sealer = Sealer::new(&env);
    batch_trail(&env).await;
    sealer.seal(&env.app).await;
    env.clock.advance(Duration::hours(26));
    let problem = problem(&env, &sealer).await;
    assert!(
        matches!(problem, Problem::SealStale { seal_id: 1, .. }),
        "{problem}"
    );
    let report = env
        .app
        .services()
        .trail()
        .verify(&VerifyRequest {
            public_key: None,
            witness_files: vec![sealer.witness.clone()],
            seal_age_max: SealAgeMax::parse("2d").unwrap().get(),
        })
        .await
        .unwrap();
    assert!(report.is_intact(), "{:?}", report.problem);
}
both_backends!(
    audit_stale,
    a_sealer_that_stopped_fails_verification_once_its_seal_is_too_old
);

/// Sealing checks the records since the previous seal first: it never signs a broken tail.
async fn a_seal_is_refused_over_a_broken_trail<S: Store>(env: TestApp<S>) {
    let sealer = Sealer::new(&env);
    batch_trail(&env).await;
    sealer.seal(&env.app).await;
    let (later, last) = batch_trail(&env).await;
    env.exec(&format!(
        "UPDATE audit_record SET actor = 'cli:mallory' WHERE chain = {later} AND seq = {last}"
    ))
    .await;
    let refused = env
        .app
        .services()
        .trail()
        .seal(&sealer.key, &sealer.witness)
        .await
        .unwrap_err();
    assert!(
        matches!(refused, TrailError::Broken(Problem::HashMismatch { seq, .. }) if seq == last),
        "{refused}"
    );
    assert_eq!(env.count("SELECT count(*) FROM audit_seal").await, 1);
}
both_backends!(audit_seal_refused, a_seal_is_refused_over_a_broken_trail);

/// Records written before records carried hashes get them at `tender init`, and then verify.
async fn init_hashes_records_from_before_hashes<S: Store>(env: TestApp<S>) {
    batch_trail(&env).await;
    let zero = env.blob(&[0; 32]);
    env.exec(&format!("UPDATE audit_record SET hash = {zero}"))
        .await;
    env.exec(&format!("UPDATE audit_chain_head SET hash = {zero}"))
        .await;
    assert!(!env.verify().await.is_intact());
    tender::app::init(
        &env.db.settings(),
        std::sync::Arc::new(env.clock.clone()),
        &actor(),
    )
    .await
    .unwrap();
    let report = env.verify().await;
    assert!(report.is_intact(), "{:?}", report.problem);
    // Appends go on from the computed heads.
    batch_trail(&env).await;
    assert!(env.verify().await.is_intact());
}
both_backends!(audit_hash_backfill, init_hashes_records_from_before_hashes);

/// Verification reads one snapshot: another process appending all along raises no false alarm.
async fn verification_while_another_process_appends_raises_no_false_alarm<S: Store>(
    env: TestApp<S>,
) {
    let sealer = Sealer::new(&env);
    batch_trail(&env).await;
    sealer.seal(&env.app).await;
    let before = env.count("SELECT count(*) FROM audit_record").await;
    let mut writer = Command::new(env!("CARGO_BIN_EXE_tender"))
        .env_remove("TENDER_LOOKUP_KEYS")
        .env_remove("TENDER_AUDIT_KEYS")
        .env("TENDER_DATA_DIR", env.db.path())
        .env("TENDER_DATABASE_URL", &env.db.url)
        .args(["retailer", "add", "--commission", "1", "--name"])
        .arg("Writer 0")
        .spawn()
        .unwrap();
    let finance = public_only(&env).await;
    let mut runs = 0;
    let mut added = 0;
    while added < 12 {
        let report = verify(&finance, None, &[&sealer.witness]).await;
        assert!(report.is_intact(), "false alarm: {:?}", report.problem);
        runs += 1;
        if writer.try_wait().unwrap().is_some() {
            added += 1;
            writer = Command::new(env!("CARGO_BIN_EXE_tender"))
                .env_remove("TENDER_LOOKUP_KEYS")
                .env_remove("TENDER_AUDIT_KEYS")
                .env("TENDER_DATA_DIR", env.db.path())
                .env("TENDER_DATABASE_URL", &env.db.url)
                .args(["retailer", "add", "--commission", "1", "--name"])
                .arg(format!("Writer {added}"))
                .spawn()
                .unwrap();
        }
    }
    assert!(writer.wait().unwrap().success());
    assert!(runs > added, "verifications ran while the writer appended");
    assert!(env.count("SELECT count(*) FROM audit_record").await >= before + 12);
    let report = verify(&finance, None, &[&sealer.witness]).await;
    assert!(report.is_intact(), "{:?}", report.problem);
}
both_backends!(
    audit_concurrent,
    verification_while_another_process_appends_raises_no_false_alarm
);
