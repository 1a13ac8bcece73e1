//! The security review's triggers, each reproduced and each failing safe: keys that belong to
//! another deployment, a worker whose ring went stale, printer files someone else steers or
//! that live elsewhere, an unkeyed hash of a one-card file, and commits that must survive a
//! power loss.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tender::app::{self, App};
use tender::codegen::CodeGenerator;
use tender::config::Settings;
use tender::domain::{Batch, BatchId, BatchState};
use tender::error::{Classify, Kind};
use tender::formats::printer_file;
use tender::keys::{KeyId, KeyNeeds, KeyPurpose, KeyRing};
use tender::service::generation::GenerateError;
use tender::store::{DbPool, Store};

use crate::helpers::{TestApp, actor, both_backends, usd_form};

/// Settings like the test's, with keys in `key_dir`.
fn with_keys(env_settings: Settings, key_dir: PathBuf) -> Settings {
    Settings {
        key_dir: Some(key_dir),
        ..env_settings
    }
}

/// One generation attempt by `app`, as the job makes it.
async fn attempt<S: Store>(
    app: &App<S>,
    id: BatchId,
    chunk: usize,
) -> Result<Batch, GenerateError> {
    app.services()
        .generation()
        .generate(
            id,
            &mut CodeGenerator::from_os_rng(),
            chunk,
            &actor(),
            &|_| {},
        )
        .await
}

async fn open<S: Store>(env: &TestApp<S>, settings: &Settings) -> Result<App<S>, String> {
    let clock = std::sync::Arc::new(env.clock.clone());
    App::<S>::open(settings, clock, KeyNeeds::ALL)
        .await
        .map_err(|e| e.code().to_string())
}

fn copy_keys(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for purpose in [KeyPurpose::Lookup, KeyPurpose::Audit] {
        std::fs::copy(from.join(purpose.file_name()), to.join(purpose.file_name())).unwrap();
    }
}

async fn a_second_hosts_keys_are_refused_and_init_creates_nothing<S: Store>(env: TestApp<S>) {
    // Host B ran `tender init` with its own fresh keys against host A's database.
    let other = env.db.path().join("host-b-keys");
    for purpose in [KeyPurpose::Lookup, KeyPurpose::Audit] {
        KeyRing::create_file_if_missing(purpose, &other).unwrap();
    }
    let settings = with_keys(env.db.settings(), other.clone());
    assert_eq!(open(&env, &settings).await.err().unwrap(), "keys.different");
    let clock = std::sync::Arc::new(env.clock.clone());
    let refused = app::init(&settings, clock.clone(), &actor())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), "keys.different");
    // A host with no key files at all gets none made for it: it must copy them.
    let empty = env.db.path().join("host-c-keys");
    let refused = app::init(
        &with_keys(env.db.settings(), empty.clone()),
        clock,
        &actor(),
    )
    .await
    .unwrap_err();
    assert_eq!(refused.code(), "keys.not_in_ring");
    assert!(!empty.join("lookup.keys").exists() && !empty.join("audit.keys").exists());
    // Nothing was recorded for the other keys.
    assert_eq!(env.count("SELECT count(*) FROM key_version").await, 2);
    // With a copy of host A's files, host C starts.
    copy_keys(&env.db.settings().key_dir(), &empty);
    assert!(
        open(&env, &with_keys(env.db.settings(), empty))
            .await
            .is_ok()
    );
}
both_backends!(
    second_host_keys,
    a_second_hosts_keys_are_refused_and_init_creates_nothing
);

async fn a_worker_whose_ring_went_stale_fails_transiently_then_loads_it_again<S: Store>(
    env: TestApp<S>,
) {
    let a_keys = env.db.settings().key_dir();
    let b_keys = env.db.path().join("host-b-keys");
    copy_keys(&a_keys, &b_keys);
    let host_b = env
        .reopen(&with_keys(env.db.settings(), b_keys.clone()))
        .await;
    env.app
        .services()
        .retailers()
        .add("Acme", "2.5", &actor())
        .await
        .unwrap();
    // Host A rotates the lookup key and activates it before B has the file.
    let admin = env.app.services().keys();
    let id = admin
        .add(KeyPurpose::Lookup, &a_keys, &actor())
        .await
        .unwrap();
    admin
        .activate(KeyPurpose::Lookup, id, &actor())
        .await
        .unwrap();
    let batch = host_b
        .services()
        .batches()
        .request(&usd_form(10), &actor())
        .await
        .unwrap();
    assert_eq!(batch.lookup_key_id, id.get());
    let stale = attempt(&host_b, batch.id, 10).await.unwrap_err();
    assert_eq!(stale.code(), "keys.stale_ring");
    assert_eq!(stale.kind(), Kind::Transient, "a retry may find the file");
    assert_eq!(env.count("SELECT count(*) FROM card").await, 0);
    // The file reaches host B; its next attempt loads the ring again and goes on.
    std::fs::copy(a_keys.join("lookup.keys"), b_keys.join("lookup.keys")).unwrap();
    let done = attempt(&host_b, batch.id, 10).await.unwrap();
    assert_eq!(done.state, BatchState::Completed);
    assert_eq!(
        env.count("SELECT count(*) FROM card WHERE lookup_key_id = 2")
            .await,
        10
    );
}
both_backends!(
    stale_ring,
    a_worker_whose_ring_went_stale_fails_transiently_then_loads_it_again
);

async fn two_key_additions_at_once_lose_neither<S: Store>(env: TestApp<S>) {
    let key_dir = env.db.settings().key_dir();
    let admin = env.app.services().keys();
    let actor = actor();
    let (a, b) = tokio::join!(
        admin.add(KeyPurpose::Audit, &key_dir, &actor),
        admin.add(KeyPurpose::Audit, &key_dir, &actor)
    );
    let mut ids = [a.unwrap().get(), b.unwrap().get()];
    ids.sort();
    assert_eq!(ids, [2, 3]);
    let ring = KeyRing::load(KeyPurpose::Audit, &key_dir).unwrap();
    let recorded = env
        .count("SELECT count(*) FROM key_version WHERE purpose = 'audit' AND state = 'pending'")
        .await;
    assert_eq!(recorded, 2);
    for id in [1, 2, 3] {
        assert!(ring.get(KeyId::new(id).unwrap()).is_some(), "key {id}");
    }
}
both_backends!(
    concurrent_key_additions,
    two_key_additions_at_once_lose_neither
);

/// Puts a completed 20-card batch, generated in chunks of 10, back to the state a crash after
/// its first commit leaves: 10 cards stored, the file holding more than the committed bytes.
async fn crash_after_first_chunk<S: Store>(env: &TestApp<S>, batch: &Batch) {
    let text = std::fs::read(env.export_file(batch.id)).unwrap();
    let committed: usize = text
        .split_inclusive(|&b| b == b'\n')
        .take(11)
        .map(<[u8]>::len)
        .sum();
    env.exec(&format!(
        "UPDATE batch SET state = 'generating', generated_count = 10, export_bytes = {committed}, \
         export_mac = NULL, completed_at = NULL WHERE batch_id = {}",
        batch.id
    ))
    .await;
    env.exec(&format!(
        "DELETE FROM card WHERE serial >= {}",
        batch.serial_at(10).sequence()
    ))
    .await;
}

async fn generated_in_two_chunks<S: Store>(env: &TestApp<S>) -> Batch {
    let batch = env.request(20).await;
    env.generate(batch.id, &mut CodeGenerator::from_os_rng(), 10)
        .await;
    crash_after_first_chunk(env, &batch).await;
    batch
}

async fn a_batch_resumed_in_another_export_directory_fails_until_restarted<S: Store>(
    env: TestApp<S>,
) {
    let batch = generated_in_two_chunks(&env).await;
    let file = env.export_file(batch.id);
    let length = std::fs::metadata(&file).unwrap().len();
    let other_dir = env.db.path().join("other-exports");
    let elsewhere = env
        .reopen(&Settings {
            export_dir: Some(other_dir.clone()),
            ..env.db.settings()
        })
        .await;
    for _ in 0..2 {
        let failed = attempt(&elsewhere, batch.id, 10).await.unwrap_err();
        assert_eq!(failed.code(), "batch.failed");
        assert_ne!(failed.kind(), Kind::Transient, "the job is not retried");
    }
    let shown = elsewhere.services().batches().show(batch.id).await.unwrap();
    assert_eq!(shown.state, BatchState::Failed);
    assert!(shown.failure.unwrap().contains("tender batch restart"));
    assert_eq!(
        std::fs::metadata(&file).unwrap().len(),
        length,
        "no late cut"
    );
    // The operator restarts it: its stored cards go, and the run here generates it anew.
    elsewhere
        .services()
        .batches()
        .restart(batch.id, &actor())
        .await
        .unwrap();
    assert_eq!(env.count("SELECT count(*) FROM card").await, 0);
    let done = attempt(&elsewhere, batch.id, 10).await.unwrap();
    assert_eq!((done.state, done.generated), (BatchState::Completed, 20));
    elsewhere
        .services()
        .printer_check()
        .verify(&other_dir.join(printer_file::file_name(batch.id)), &actor())
        .await
        .unwrap();
    let report = env.verify().await;
    assert!(report.is_intact(), "{:?}", report.problem);
}
both_backends!(
    other_export_dir,
    a_batch_resumed_in_another_export_directory_fails_until_restarted
);

async fn a_printer_file_replaced_by_a_link_is_never_followed<S: Store>(env: TestApp<S>) {
    let victim = env.db.path().join("victim.txt");
    std::fs::write(&victim, "keep me").unwrap();
    // On resume: the file with the committed chunk became a link.
    let batch = generated_in_two_chunks(&env).await;
    let file = env.export_file(batch.id);
    std::fs::remove_file(&file).unwrap();
    std::os::unix::fs::symlink(&victim, &file).unwrap();
    let failed = attempt(&env.app, batch.id, 10).await.unwrap_err();
    assert_eq!(failed.code(), "batch.failed");
    assert!(failed.to_string().contains("symbolic link"), "{failed}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
    // For a new batch: a link or a file planted in its place is removed, never written through.
    let fresh = env.request(5).await;
    let planted = env.export_file(fresh.id);
    std::os::unix::fs::symlink(&victim, &planted).unwrap();
    env.generate(fresh.id, &mut CodeGenerator::from_os_rng(), 5)
        .await;
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
    let meta = std::fs::symlink_metadata(&planted).unwrap();
    assert!(meta.is_file());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
}
both_backends!(
    linked_printer_file,
    a_printer_file_replaced_by_a_link_is_never_followed
);

async fn an_export_directory_others_may_enter_is_refused<S: Store>(env: TestApp<S>) {
    let dir = env.db.export_dir();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let batch = env.request(5).await;
    let failed = attempt(&env.app, batch.id, 5).await.unwrap_err();
    assert_eq!(failed.code(), "batch.failed");
    assert!(failed.to_string().contains("chmod 700"), "{failed}");
    assert!(!env.export_file(batch.id).exists());
    // The operator fixes the directory and restarts the batch.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    env.app
        .services()
        .batches()
        .restart(batch.id, &actor())
        .await
        .unwrap();
    let done = attempt(&env.app, batch.id, 5).await.unwrap();
    assert_eq!(done.state, BatchState::Completed);
}
both_backends!(
    loose_export_dir,
    an_export_directory_others_may_enter_is_refused
);

async fn a_one_card_files_recorded_hash_is_keyed<S: Store>(env: TestApp<S>) {
    let batch = env.request(1).await;
    let done = env
        .generate(batch.id, &mut CodeGenerator::from_os_rng(), 1)
        .await;
    let file = env.export_file(batch.id);
    let plain = hex::encode(Sha256::digest(std::fs::read(&file).unwrap()));
    let mac = done.export_mac.clone().unwrap();
    assert_ne!(mac, plain);
    // Nothing anyone can read holds the unkeyed hash.
    let stored = env
        .count(&format!(
            "SELECT count(*) FROM audit_record WHERE details LIKE '%{plain}%'"
        ))
        .await;
    assert_eq!(stored, 0);
    // The MAC is under a key derived from the batch's lookup key for this use alone.
    let ring = KeyRing::load(KeyPurpose::Lookup, &env.db.settings().key_dir()).unwrap();
    let key = ring
        .derive(KeyId::new(1).unwrap(), printer_file::MAC_KEY_LABEL)
        .unwrap();
    assert_eq!(printer_file::mac_file(&file, key.expose()).unwrap(), mac);
    let check = env
        .app
        .services()
        .printer_check()
        .verify(&file, &actor())
        .await
        .unwrap();
    assert_eq!(check.mac, mac);
}
both_backends!(one_card_mac, a_one_card_files_recorded_hash_is_keyed);

async fn a_schema_behind_the_binary_is_refused_until_init<S: Store>(env: TestApp<S>) {
    let table = match env.store().db_pool() {
        DbPool::Sqlite(_) => "_tender_migrations",
        DbPool::Postgres(_) => "_sqlx_migrations",
    };
    env.exec(&format!(
        "DELETE FROM {table} WHERE version = (SELECT max(version) FROM {table})"
    ))
    .await;
    let refused = open(&env, &env.db.settings()).await.err().unwrap();
    assert_eq!(refused, "store.schema_behind");
}
both_backends!(
    schema_behind,
    a_schema_behind_the_binary_is_refused_until_init
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pooled_sqlite_connection_commits_with_synchronous_full() {
    let env = TestApp::<tender::store::SqliteStore>::new(crate::helpers::TestDb::sqlite()).await;
    let batch = env.request(50).await;
    env.generate(batch.id, &mut CodeGenerator::from_os_rng(), 10)
        .await;
    let DbPool::Sqlite(pool) = env.store().db_pool() else {
        unreachable!()
    };
    // Hold every connection at once, so each one the pool has is asked.
    let mut held = Vec::new();
    for _ in 0..tender::store::SQLITE_POOL_CONNECTIONS {
        held.push(pool.acquire().await.unwrap());
    }
    for conn in &mut held {
        let level: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&mut **conn)
            .await
            .unwrap();
        assert_eq!(level, 2, "FULL");
    }
}

#[tokio::test]
async fn the_postgres_url_decides_whether_tls_is_used() {
    let db = crate::helpers::TestDb::postgres().await;
    for (mode, tls) in [("disable", false), ("require", true)] {
        let url = format!("{}?sslmode={mode}", db.url);
        let store = tender::store::PgStore::connect(&url).await.unwrap();
        let DbPool::Postgres(pool) = store.db_pool() else {
            unreachable!()
        };
        let used: bool =
            sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(used, tls, "sslmode={mode}");
        store.close().await;
    }
}

/// The server log's lines about `database` that name the digest constraint or `needle`.
fn pg_log(database: &str, needle: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let dir = Path::new("/var/log/postgresql");
    for entry in std::fs::read_dir(dir).expect("the PostgreSQL server log is readable here") {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default();
        lines.extend(
            text.lines()
                .filter(|l| l.contains(database))
                .filter(|l| l.contains("card_digest_unique") || l.contains(needle))
                .map(str::to_string),
        );
    }
    lines
}

/// Generates a batch whose first code is one already issued; returns the taken card's digest
/// as hex, as the server would log it.
async fn collide(
    env: &TestApp<tender::store::PgStore>,
    app: &App<tender::store::PgStore>,
) -> String {
    let first = env.request(20).await;
    env.generate(first.id, &mut CodeGenerator::from_os_rng(), 20)
        .await;
    let text = std::fs::read_to_string(env.export_file(first.id)).unwrap();
    let row: Vec<&str> = text.lines().nth(3).unwrap().split(',').collect();
    let taken = tender::domain::Code::parse(row[1]).unwrap();
    let DbPool::Postgres(pool) = env.store().db_pool() else {
        unreachable!()
    };
    let digest: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT encode(digest, 'hex') FROM card WHERE serial = {}",
        tender::domain::Serial::parse(row[0]).unwrap().sequence()
    )))
    .fetch_one(&pool)
    .await
    .unwrap();
    let second = env.request(20).await;
    let mut source = tender::codegen::ScriptedCodes::new([taken]);
    let done = app
        .services()
        .generation()
        .generate(second.id, &mut source, 20, &actor(), &|_| {})
        .await
        .unwrap();
    assert_eq!(done.collisions, 1);
    digest
}

/// PostgreSQL logs a failed statement's DETAIL, which for a unique violation is the digest: by
/// default a collision must not fail a statement. A deliberate violation is the control.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_collision_leaves_no_digest_in_the_postgres_log() {
    let env =
        TestApp::<tender::store::PgStore>::new(crate::helpers::TestDb::postgres().await).await;
    let database = env.db.url.rsplit('/').next().unwrap().to_string();
    let digest = collide(&env, &env.app).await;
    assert_eq!(pg_log(&database, &digest), Vec::<String>::new());
    let DbPool::Postgres(pool) = env.store().db_pool() else {
        unreachable!()
    };
    let failed = sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO card (serial, batch_id, lookup_key_id, state, digest) \
         VALUES (99999999, 1, 1, 0, decode('{digest}', 'hex'))"
    )))
    .execute(&pool)
    .await;
    assert!(failed.is_err());
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        pg_log(&database, &digest)
            .iter()
            .any(|l| l.contains(&digest)),
        "the control violation's digest is in the log"
    );
}

/// Where the server logs errors tersely (no DETAIL, no CONTEXT), cards go in by direct COPY,
/// which a collision fails and retries, and still no digest is logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_terse_error_logs_a_collision_fails_a_direct_copy_and_logs_no_digest() {
    let env =
        TestApp::<tender::store::PgStore>::new(crate::helpers::TestDb::postgres().await).await;
    let database = env.db.url.rsplit('/').next().unwrap().to_string();
    env.exec(&format!(
        "ALTER DATABASE {database} SET log_error_verbosity = terse"
    ))
    .await;
    let terse = env.reopen(&env.db.settings()).await;
    let digest = collide(&env, &terse).await;
    let lines = pg_log(&database, &digest);
    assert!(
        lines.iter().any(|l| l.contains("card_digest_unique")),
        "the direct COPY met the collision"
    );
    assert!(!lines.iter().any(|l| l.contains(&digest)), "{lines:?}");
}
