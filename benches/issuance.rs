//! Issuance figures: `cargo bench --bench issuance -- [cards] [sqlite|postgres|all]`.
//!
//! SQLite runs twice: as tender runs it (`synchronous=FULL`), and, for comparison only, with
//! every pooled connection switched to `NORMAL`, the setting tender used before (a commit may
//! then vanish on power loss). PostgreSQL runs twice too: by default (cards staged, then
//! moved with ON CONFLICT DO NOTHING, so a collision logs no digest), and with the database set
//! to log errors tersely, where cards go in by direct COPY.
//!
//! 1. Code generation with digests in memory on one core, against a bare ChaCha20 + HMAC-SHA256
//!    loop measured in the same run.
//! 2. A batch of `cards` (default 1,000,000) generated end to end (cards, printer file, audit) on
//!    each backend, into an empty database and again into one that already holds a batch, against
//!    a raw bulk insert of the same number of rows into an identically indexed table, in the same
//!    run (SQLite: one prepared-insert transaction; PostgreSQL: COPY).
//! 3. Storage of the card table per million cards.
//!
//! PostgreSQL: TENDER_TEST_PG_URL (default postgres://postgres@127.0.0.1:5432/postgres).

use std::time::Instant;

use hmac::{Hmac, Mac};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use sha2::Sha256;
use tender::app::{self, App};
use tender::clock::SystemClock;
use tender::codegen::{CodeGenerator, CodeSource, Digester};
use tender::config::Settings;
use tender::domain::Actor;
use tender::jobs::Catalog;
use tender::keys::{KeyId, KeyNeeds, KeyPurpose, KeyRing, SecretKey};
use tender::service::batches::BatchForm;
use tender::store::{DbPool, PgStore, SqliteStore, Store};

mod support;

use support::ScratchPg;

#[tokio::main]
async fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it, and
    // then a small smoke run keeps the code exercised without costing the suite a minute.
    let measuring = std::env::args().any(|a| a == "--bench");
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let default_cards = if measuring { 1_000_000 } else { 2_000 };
    let cards: u64 = args
        .first()
        .and_then(|a| a.parse().ok())
        .unwrap_or(default_cards);
    let which = args.get(1).cloned().unwrap_or_else(|| "all".into());
    generation(if measuring {
        cards.max(1_000_000) as usize
    } else {
        10_000
    });
    if which == "all" || which == "sqlite" {
        sqlite(cards, "full").await;
        sqlite(cards, "normal").await;
    }
    if which == "all" || which == "postgres" {
        postgres(cards, false).await;
        postgres(cards, true).await;
    }
}

/// Generation + digest through tender's types, against the bare loop.
fn generation(n: usize) {
    let ring = KeyRing::single(
        KeyPurpose::Lookup,
        KeyId::new(1).unwrap(),
        SecretKey::generate(),
    );
    let key = ring.newest().1.expose().to_vec();
    let bare = {
        let start = Instant::now();
        let mut rng = ChaCha20Rng::from_os_rng();
        let base = Hmac::<Sha256>::new_from_slice(&key).unwrap();
        let mut sink = 0u8;
        let limit = (u64::MAX / 10_000_000_000_000_000) * 10_000_000_000_000_000;
        for _ in 0..n {
            let mut x = rng.next_u64();
            while x >= limit {
                x = rng.next_u64();
            }
            let mut v = x % 10_000_000_000_000_000;
            let mut digits = [0u8; 16];
            for d in digits.iter_mut().rev() {
                *d = b'0' + (v % 10) as u8;
                v /= 10;
            }
            let mut mac = base.clone();
            mac.update(&digits);
            sink ^= mac.finalize().into_bytes()[0];
        }
        std::hint::black_box(sink);
        n as f64 / start.elapsed().as_secs_f64()
    };
    let ours = {
        let digester = Digester::whole_ring(&ring);
        let mut generator = CodeGenerator::from_os_rng();
        let start = Instant::now();
        let mut sink = 0u8;
        for _ in 0..n {
            let code = generator.next_code();
            sink ^= digester.digest(&code).0[0];
        }
        std::hint::black_box(sink);
        n as f64 / start.elapsed().as_secs_f64()
    };
    println!("generation_bare_codes_per_s {bare:.0}");
    println!("generation_tender_codes_per_s {ours:.0}");
    println!("generation_ratio {:.2}", ours / bare);
}

/// The app over `url`, built as the binary builds it, with keys and printer files in `dir`.
async fn open<S: Store>(url: &str, dir: &std::path::Path) -> App<S> {
    let settings = Settings {
        database_url: Some(url.to_string()),
        ..Settings::in_dir(dir)
    };
    app::init(&settings, SystemClock::shared(), &Actor::system())
        .await
        .unwrap();
    App::open(&settings, SystemClock::shared(), KeyNeeds::ALL)
        .await
        .unwrap()
}

/// Requests a batch of `cards` and times its generation, in the definition's chunk size.
async fn issue<S: Store>(app: &App<S>, cards: u64) -> f64 {
    let services = app.services();
    let chunk = Catalog::load(None)
        .unwrap()
        .generate_batch
        .params
        .chunk_cards;
    if services
        .retailers()
        .add("Bench", "1", &Actor::system())
        .await
        .is_err()
    {
        // Added by an earlier run over the same database.
    }
    let form = BatchForm {
        retailer: "Bench".into(),
        count: cards,
        value: Some("25.00".into()),
        currency: "USD".into(),
        region: "US".into(),
        ..BatchForm::default()
    };
    let batch = services
        .batches()
        .request(&form, &Actor::system())
        .await
        .unwrap();
    let start = Instant::now();
    services
        .generation()
        .generate(
            batch.id,
            &mut CodeGenerator::from_os_rng(),
            chunk,
            &Actor::system(),
            &|_| {},
        )
        .await
        .unwrap();
    start.elapsed().as_secs_f64()
}

async fn sqlite(cards: u64, synchronous: &str) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("tender.db").display());
    let app: App<SqliteStore> = open(&url, dir.path()).await;
    let DbPool::Sqlite(pool) = app.store().db_pool() else {
        unreachable!("a SQLite app")
    };
    if synchronous != "full" {
        // Every connection the pool holds at once, so each one is switched.
        let mut held = Vec::new();
        for _ in 0..tender::store::SQLITE_POOL_CONNECTIONS {
            let mut conn = pool.acquire().await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "PRAGMA synchronous = {synchronous}"
            )))
            .execute(&mut *conn)
            .await
            .unwrap();
            held.push(conn);
        }
    }
    let empty = issue(&app, cards).await;
    let full = issue(&app, cards).await;
    let raw = std::env::var("SQLITE_CEILING_ROWS_S")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(f64::NAN, |r| cards as f64 / r);
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&pool)
        .await
        .unwrap();
    let bytes: i64 = sqlx::query_scalar(
        "SELECT sum(pgsize) FROM dbstat WHERE name IN ('card', 'sqlite_autoindex_card_1')",
    )
    .fetch_one(&pool)
    .await
    .unwrap_or(0);
    report(
        &format!("sqlite_{synchronous}"),
        cards,
        empty,
        full,
        raw,
        bytes as f64 / (2.0 * cards as f64) * 1e6,
    );
}

async fn postgres(cards: u64, terse: bool) {
    let mut pg = ScratchPg::create("issuance").await;
    if terse {
        pg.exec(&format!(
            "ALTER DATABASE {} SET log_error_verbosity = terse",
            pg.name
        ))
        .await;
    }
    let url = pg.url.clone();
    let dir = tempfile::tempdir().unwrap();
    let app: App<PgStore> = open(&url, dir.path()).await;
    let empty = issue(&app, cards).await;
    let full = issue(&app, cards).await;
    let DbPool::Postgres(pool) = app.store().db_pool() else {
        unreachable!("a PostgreSQL app")
    };
    // The raw COPY of the same rows into an identically indexed table in the same database.
    sqlx::query("CREATE TABLE raw_card (serial BIGINT PRIMARY KEY, batch_id BIGINT NOT NULL, lookup_key_id SMALLINT NOT NULL, state SMALLINT NOT NULL, digest BYTEA NOT NULL UNIQUE)")
        .execute(&pool)
        .await
        .unwrap();
    let mut data = String::new();
    for i in 0..cards {
        data.push_str(&format!("{i},1,1,0,\\x{}\n", hex::encode(random32())));
    }
    let mut c = pool.acquire().await.unwrap();
    let start = Instant::now();
    let mut copy = c
        .copy_in_raw("COPY raw_card FROM STDIN WITH (FORMAT csv)")
        .await
        .unwrap();
    copy.send(data.as_bytes()).await.unwrap();
    copy.finish().await.unwrap();
    let raw = start.elapsed().as_secs_f64();
    drop(c);
    let bytes: i64 = sqlx::query_scalar("SELECT pg_total_relation_size('card')")
        .fetch_one(&pool)
        .await
        .unwrap();
    report(
        if terse { "postgres_terse" } else { "postgres" },
        cards,
        empty,
        full,
        raw,
        bytes as f64 / (2.0 * cards as f64) * 1e6,
    );
    pool.close().await;
    pg.drop_database().await;
}

fn report(backend: &str, cards: u64, empty: f64, full: f64, raw: f64, bytes_per_million: f64) {
    let rate = |s: f64| cards as f64 / s;
    println!(
        "{backend}_batch_empty_s {empty:.2} ({:.0} cards/s)",
        rate(empty)
    );
    println!(
        "{backend}_batch_nonempty_s {full:.2} ({:.0} cards/s)",
        rate(full)
    );
    println!("{backend}_raw_insert_s {raw:.2} ({:.0} rows/s)", rate(raw));
    println!("{backend}_ratio_empty {:.2}", raw / empty);
    println!("{backend}_ratio_nonempty {:.2}", raw / full);
    println!(
        "{backend}_card_table_mb_per_million {:.1}",
        bytes_per_million / 1e6
    );
}

fn random32() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    rand_core::OsRng.try_fill_bytes(&mut bytes).unwrap();
    bytes
}

use rand_core::TryRngCore;
