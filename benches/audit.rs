//! Audit figures: `cargo bench --bench audit -- [records] [sqlite|postgres|all]`.
//!
//! 1. The cost of the record hash: a record tagged and hashed (what every append computes now)
//!    against tagged only, on one core; and, for scale, one append committed in a transaction of
//!    its own on each backend.
//! 2. `audit verify` over a trail of `records` (default 1,000,000) on each backend: with the
//!    audit key (hash chains, tags, seal signature, witness) and with the seal public key alone
//!    (no tags), against a bare read of the same records in the same order, in the same run.
//!    The first seal over the whole trail (which walks every record first) is timed too.
//!
//! The trail is loaded in bulk (records made by tender's signer, inserted in one transaction),
//! as appends one at a time would take an hour. PostgreSQL: TENDER_TEST_PG_URL (default
//! postgres://postgres@127.0.0.1:5432/postgres).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use tender::app::{self, App};
use tender::audit::{AuditEvent, AuditRecord, AuditSigner, CHAIN_COUNT, ChainHead, GENESIS};
use tender::clock::{Clock, SystemClock};
use tender::config::Settings;
use tender::domain::{Actor, PageRows};
use tender::keys::{KeyId, KeyNeeds, KeyPurpose, KeyRing, SealKey};
use tender::service::trail::VerifyRequest;
use tender::store::{AuditRepo, DbPool, PgStore, SqliteStore, Store, Tx};

mod support;

use support::ScratchPg;

#[tokio::main]
async fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs a small smoke run.
    let measuring = std::env::args().any(|a| a == "--bench");
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let records: u64 = args
        .first()
        .and_then(|a| a.parse().ok())
        .unwrap_or(if measuring { 1_000_000 } else { 2_000 });
    let which = args.get(1).cloned().unwrap_or_else(|| "all".into());
    hash_cost(if measuring { 1_000_000 } else { 10_000 });
    if which == "all" || which == "sqlite" {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("tender.db").display());
        trail::<SqliteStore>("sqlite", &url, dir.path(), records, measuring).await;
    }
    if which == "all" || which == "postgres" {
        let mut pg = ScratchPg::create("audit").await;
        let dir = tempfile::tempdir().unwrap();
        trail::<PgStore>("postgres", &pg.url, dir.path(), records, measuring).await;
        pg.drop_database().await;
    }
}

fn signer() -> AuditSigner {
    let id = KeyId::new(1).unwrap();
    let ring = KeyRing::single(KeyPurpose::Audit, id, tender::keys::SecretKey::generate());
    AuditSigner::new(Arc::new(ring), id).unwrap()
}

fn event(i: u64) -> AuditEvent {
    AuditEvent::new(
        &Actor::job("generate-batch"),
        "batch.chunk_generated",
        format!("batch:{}", i % 5_000),
        serde_json::json!({
            "first_index": i * 50_000,
            "count": 50_000,
            "collisions": 0,
            "export_bytes": 2_150_000,
        }),
    )
}

/// Tag + hash against tag alone, per record, on one core.
fn hash_cost(n: u64) {
    let signer = signer();
    let at = SystemClock.now();
    let mut head = ChainHead {
        chain: 0,
        seq: 0,
        tag: GENESIS,
        hash: GENESIS,
        key_id: Some(signer.key_id()),
    };
    let events: Vec<AuditEvent> = (0..n).map(event).collect();
    let start = Instant::now();
    for event in &events {
        let record = signer.seal_record(event, &head, at);
        head.seq = record.seq;
        head.tag = record.tag;
        head.hash = record.hash;
    }
    let both = start.elapsed().as_secs_f64();
    let records: Vec<AuditRecord> = events
        .iter()
        .map(|e| signer.seal_record(e, &head, at))
        .collect();
    let start = Instant::now();
    let mut sink = 0u8;
    for record in &records {
        sink ^= record.expected_hash(&head.hash)[0];
    }
    std::hint::black_box(sink);
    let hash = start.elapsed().as_secs_f64();
    let ns = |s: f64| s * 1e9 / n as f64;
    println!("record_tag_and_hash_ns {:.0}", ns(both));
    println!("record_hash_ns {:.0}", ns(hash));
    println!("record_hash_share_of_cpu {:.2}", hash / both);
}

async fn open<S: Store>(settings: &Settings, needs: KeyNeeds) -> App<S> {
    App::open(settings, SystemClock::shared(), needs)
        .await
        .unwrap()
}

async fn trail<S: Store>(backend: &str, url: &str, dir: &Path, records: u64, measuring: bool) {
    let settings = Settings {
        database_url: Some(url.to_string()),
        ..Settings::in_dir(dir)
    };
    app::init(&settings, SystemClock::shared(), &Actor::system())
        .await
        .unwrap();
    let app: App<S> = open(&settings, KeyNeeds::ALL).await;
    // One append per transaction, as a state change commits it.
    let appends = if measuring { 2_000 } else { 50 };
    let ring = Arc::new(KeyRing::load(KeyPurpose::Audit, &settings.key_dir()).unwrap());
    let signer = AuditSigner::new(ring, KeyId::new(1).unwrap()).unwrap();
    let start = Instant::now();
    for i in 0..appends {
        let mut tx = app.store().begin().await.unwrap();
        tx.append(&signer, &event(i), SystemClock.now())
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    let append_us = start.elapsed().as_secs_f64() * 1e6 / appends as f64;
    println!("{backend}_append_tx_us {append_us:.0}");

    load(&app, &signer, records).await;
    let total = records + appends;
    let key = SealKey::create_files(&settings.key_dir()).unwrap();
    let witness = dir.join("audit.witness");
    let start = Instant::now();
    app.services().trail().seal(&key, &witness).await.unwrap();
    println!(
        "{backend}_first_seal_s {:.2}",
        start.elapsed().as_secs_f64()
    );

    // The bare read runs twice, the first time untimed, so every timed pass finds the same
    // cache.
    let mut bare = 0.0;
    for _ in 0..2 {
        let start = Instant::now();
        let mut tx = app.store().read().await.unwrap();
        let (mut after, mut read) = ((0, 0), 0u64);
        loop {
            let page = tx.audit_page(after, PageRows::MAX).await.unwrap();
            let Some(last) = page.last() else { break };
            after = (last.chain, last.seq);
            read += page.len() as u64;
        }
        tx.commit().await.unwrap();
        assert!(read >= total);
        bare = start.elapsed().as_secs_f64();
    }
    let request = VerifyRequest {
        public_key: None,
        witness_files: vec![witness],
        seal_age_max: Duration::hours(1),
    };
    let with_key = {
        let start = Instant::now();
        let report = app.services().trail().verify(&request).await.unwrap();
        assert!(report.is_intact() && report.proofs.record_tags);
        assert!(report.records >= total);
        start.elapsed().as_secs_f64()
    };
    let public = {
        let settings = Settings {
            key_dir: Some(dir.join("no-keys")),
            ..settings.clone()
        };
        let finance: App<S> = open(&settings, KeyNeeds::AUDIT_IF_PRESENT).await;
        let start = Instant::now();
        let report = finance.services().trail().verify(&request).await.unwrap();
        assert!(report.is_intact() && !report.proofs.record_tags);
        start.elapsed().as_secs_f64()
    };
    let rate = |s: f64| total as f64 / s;
    println!("{backend}_records {total}");
    println!(
        "{backend}_bare_read_s {bare:.2} ({:.0} records/s)",
        rate(bare)
    );
    println!(
        "{backend}_verify_with_audit_key_s {with_key:.2} ({:.0} records/s, {:.2} of the bare read)",
        rate(with_key),
        bare / with_key
    );
    println!(
        "{backend}_verify_public_key_only_s {public:.2} ({:.0} records/s, {:.2} of the bare read)",
        rate(public),
        bare / public
    );
}

/// Moves every chain head to the last record loaded, in the loading transaction.
macro_rules! move_heads {
    ($tx:ident, $heads:ident) => {
        for head in &$heads {
            sqlx::query(
                "UPDATE audit_chain_head SET seq = $1, tag = $2, hash = $3 WHERE chain = $4",
            )
            .bind(head.seq)
            .bind(&head.tag[..])
            .bind(&head.hash[..])
            .bind(i32::try_from(head.chain).unwrap())
            .execute(&mut *$tx)
            .await
            .unwrap();
        }
    };
}

/// Inserts `n` records made by `signer`, chained per chain after what the database holds, in one
/// transaction, and moves the chain heads to them.
async fn load<S: Store>(app: &App<S>, signer: &AuditSigner, n: u64) {
    let mut tx = app.store().begin().await.unwrap();
    let mut heads = tx.audit_heads(true).await.unwrap();
    tx.commit().await.unwrap();
    let at: DateTime<Utc> = SystemClock.now();
    let mut made = Vec::with_capacity(n as usize);
    for i in 0..n {
        let event = event(i);
        let head = &mut heads[event.chain() as usize];
        let record = signer.seal_record(&event, head, at);
        head.seq = record.seq;
        head.tag = record.tag;
        head.hash = record.hash;
        made.push(record);
    }
    match app.store().db_pool() {
        DbPool::Sqlite(pool) => {
            let mut tx = pool.begin().await.unwrap();
            // 10 parameters a row, under SQLite's 32,766.
            for rows in made.chunks(3_000) {
                let mut insert = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                    "INSERT INTO audit_record \
                     (chain, seq, recorded_at, actor, action, subject, details, key_id, tag, hash) ",
                );
                insert.push_values(rows, |mut row, r| {
                    row.push_bind(i32::try_from(r.chain).unwrap())
                        .push_bind(r.seq)
                        .push_bind(r.recorded_at)
                        .push_bind(&r.actor)
                        .push_bind(&r.action)
                        .push_bind(&r.subject)
                        .push_bind(&r.details)
                        .push_bind(r.key_id.stored())
                        .push_bind(&r.tag[..])
                        .push_bind(&r.hash[..]);
                });
                insert.build().execute(&mut *tx).await.unwrap();
            }
            move_heads!(tx, heads);
            tx.commit().await.unwrap();
        }
        DbPool::Postgres(pool) => {
            let mut tx = pool.begin().await.unwrap();
            let mut copy = tx
                .copy_in_raw(
                    "COPY audit_record \
                     (chain, seq, recorded_at, actor, action, subject, details, key_id, tag, hash) \
                     FROM STDIN WITH (FORMAT csv)",
                )
                .await
                .unwrap();
            let mut data = String::new();
            for (i, r) in made.iter().enumerate() {
                data.push_str(&format!(
                    "{},{},{},{},{},{},\"{}\",{},\\x{},\\x{}\n",
                    r.chain,
                    r.seq,
                    r.recorded_at.to_rfc3339(),
                    r.actor,
                    r.action,
                    r.subject,
                    r.details.replace('"', "\"\""),
                    r.key_id,
                    hex::encode(r.tag),
                    hex::encode(r.hash)
                ));
                if i % 50_000 == 49_999 {
                    copy.send(data.as_bytes()).await.unwrap();
                    data.clear();
                }
            }
            copy.send(data.as_bytes()).await.unwrap();
            copy.finish().await.unwrap();
            move_heads!(tx, heads);
            tx.commit().await.unwrap();
            sqlx::query("ANALYZE audit_record")
                .execute(&pool)
                .await
                .unwrap();
        }
    }
    assert_eq!(heads.len(), CHAIN_COUNT as usize);
}
