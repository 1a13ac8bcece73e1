//! Expiry figures: `cargo bench --bench expiry -- [cards] [sqlite|postgres|all] [chunk]`.
//!
//! Each backend gets one scratch database (SQLite as tender runs it, `synchronous=FULL`, in a
//! temporary data dir; PostgreSQL: TENDER_TEST_PG_URL, default
//! postgres://postgres@127.0.0.1:5432/postgres, a database created and dropped here), made by
//! `app::init` as `tender init` makes it, with one retailer (5 % commission) added through the
//! service and two of its stores, in GB-ENG and in US-TX.
//!
//! 1. Setup, untimed: `cards` (default 1,000,000) active 25.00 cards loaded in bulk with SQL
//!    (PostgreSQL `COPY … FROM STDIN` through sqlx `copy_in_raw`; SQLite one transaction of
//!    multi-row INSERTs), every row as tender's own activation writes it: batches of 10,000
//!    cards (every tenth in the US, in USD, the rest in GB, in GBP) under the database's active
//!    lookup key, random 32-byte digests; POS range activations of 1 to 199 cards (a seeded
//!    draw), each one `pos_request`, one `activation` transfer and its entries (the retailer's
//!    receivable and the commission debited, each `card:{serial}` credited, its `serial`
//!    column set), and one `card_activation` per card. US cards name a purchaser in US-NY (their
//!    funds go to `escheat_payable:US-NY`); GB cards go to `breakage`. The sales take the
//!    batches in turn, as stores sell them side by side, and each sale's funds expired a second
//!    after the one before, all in the past: at 1,000,000 cards a chunk of 2,000 in expiry order
//!    holds about twenty ranges from twenty batches, both currencies, so two transfers. Then
//!    ANALYZE (PostgreSQL: VACUUM ANALYZE) or `PRAGMA optimize`, and `ledger check` over the
//!    loaded books.
//! 2. Expiry: `services().expiry().run(now, chunk, actor)` (chunk default 2,000, as
//!    jobs/expire.toml sets it) over every card, end to end, in a process of its own (this
//!    binary run again) so that its peak memory is its own: VmHWM from /proc/self/status just
//!    before it exits (and the kernel's maximum resident set size through /usr/bin/time -v
//!    where there is one). Cards per second, transfers, and the cards found expired afterwards.
//!    The statements of each chunk (one transaction) are counted and timed in the child from
//!    sqlx's events (see `support/count.rs`), to show where the time goes. `ledger check`
//!    afterwards.
//! 3. The raw ceiling, in the same run on the same rows: every card set back to active
//!    (untimed; PostgreSQL then VACUUM ANALYZE and CHECKPOINT, SQLite a WAL checkpoint, as
//!    before step 2), then `UPDATE card SET state = 4 WHERE serial BETWEEN $1 AND $2` over
//!    1,000 contiguous serials at a time, each its own transaction (PostgreSQL: autocommit, as
//!    `../shared/bench/ceilings` measures `pg_update_rows_s`; SQLite: `BEGIN IMMEDIATE` each,
//!    `synchronous=FULL`), over all the rows: rows per second. Expired cards per second ÷ raw
//!    rows per second is the ratio. With CEIL_PG_UPDATE_ROWS_S in the environment (from
//!    `../shared/bench/ceilings`), the ratio to that too.
//! 4. Peak memory again over `cards / 10` cards in a fresh database: flat means about the same.
//!
//! The run ends with a table of the figures and the load average at its start and end.
//! Database errors logged by tender and units of work run again are counted and printed. With
//! TENDER_BENCH_EXPIRY_KEEP set, the databases (and the data dirs holding their keys) are kept
//! for a look afterwards (EXPLAIN and the like), and their names printed.

use std::ffi::OsStr;
use std::path::Path;
use std::time::Instant;

use chrono::{DateTime, TimeDelta, Utc};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use tender::app::{self, App};
use tender::clock::{Clock, SystemClock};
use tender::domain::{Actor, CardState, Serial};
use tender::service::cards::StoreForm;
use tender::store::{DbPool, PgStore, SqliteStore, Store};
use tracing_subscriber::layer::SubscriberExt;

#[path = "support/child.rs"]
mod child;
// Its latency percentiles and PostgreSQL log counting are not used here.
#[allow(dead_code)]
#[path = "support/count.rs"]
mod count;
#[path = "support/scratch.rs"]
mod scratch;
mod support;

use child::{Memory, load_average, mib, run_self, status_kib};
use count::{COUNTS, Counter};
use scratch::{
    Backend, Scratch, Table, Val, actor, exec, int, load_tables, lookup_key, next_id, open,
    prepare_timed, scalar, settings, text,
};

/// Cards per batch; the last may hold fewer.
const BATCH_CARDS: u64 = 10_000;
/// Every batch whose index is this modulo 10 is a US batch.
const US_BATCH: u64 = 1;
/// The most cards one sale (POS range activation) takes; each takes 1 to this many.
const SALE_MAX: u32 = 199;
/// Each card's face value, in minor units.
const VALUE_MINOR: i64 = 2_500;
/// Rows per raw UPDATE, as `pg_update_rows_s` of the ceilings measures it.
const RAW_ROWS: u64 = 1_000;
/// The retailer and its stores.
const RETAILER: &str = "Bench";
const GB_STORE: &str = "GB-1";
const US_STORE: &str = "US-1";
/// The child's environment: backend, database URL, data dir (the keys) and chunk.
const CHILD_BACKEND: &str = "TENDER_BENCH_EXPIRY_CHILD_BACKEND";
const CHILD_URL: &str = "TENDER_BENCH_EXPIRY_CHILD_URL";
const CHILD_DIR: &str = "TENDER_BENCH_EXPIRY_CHILD_DIR";
const CHILD_CHUNK: &str = "TENDER_BENCH_EXPIRY_CHILD_CHUNK";

#[tokio::main]
async fn main() {
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Counter))
        .expect("no other subscriber");
    if let Ok(backend) = std::env::var(CHILD_BACKEND) {
        child(&backend).await;
        return;
    }
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it, and
    // then a small smoke run keeps the code exercised in a few seconds.
    let measuring = std::env::args().any(|a| a == "--bench");
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let cards: u64 = args
        .first()
        .and_then(|a| a.parse().ok())
        .unwrap_or(if measuring { 1_000_000 } else { 5_000 });
    let which = args.get(1).cloned().unwrap_or_else(|| "all".into());
    let chunk: usize = args
        .get(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(if measuring { 2_000 } else { 1_000 });
    println!("load_average_at_start {}", load_average());
    let mut figures = Vec::new();
    for backend in [Backend::Sqlite, Backend::Postgres] {
        if which == "all" || which == backend.name() {
            let command = format!(
                "cargo bench --bench expiry -- {cards} {} {chunk}",
                backend.name()
            );
            figures.push(measure(backend, cards, chunk, &command).await);
        }
    }
    table(&figures);
    println!(
        "load_average_at_end {} (1, 5 and 15 minutes: other work on the machine shares its 2 cores)",
        load_average()
    );
    let now = COUNTS.snapshot();
    println!(
        "database_errors {} reruns {} (in all, logged by tender in this process; the children print their own)",
        now.db_errors, now.reruns
    );
    for error in COUNTS.errors.lock().unwrap().iter() {
        println!("database_error_seen {error}");
    }
}

/// What one backend's run measured.
struct Figures {
    backend: Backend,
    cards: u64,
    chunk: usize,
    run: ChildReport,
    expired: i64,
    check_before: Check,
    check_after: Check,
    raw_s: f64,
    small: Option<(u64, ChildReport)>,
}

/// One `ledger check`: seconds and what it found.
struct Check {
    seconds: f64,
    passed: bool,
    what: String,
}

async fn measure(backend: Backend, cards: u64, chunk: usize, command: &str) -> Figures {
    let name = backend.name();
    let scratch = Scratch::create(backend, "expiry").await;
    let (url, dir) = (scratch.url.clone(), scratch.dir.path().to_path_buf());
    let (check_before, run, expired, check_after, raw_s) = match backend {
        Backend::Sqlite => main_run::<SqliteStore>(backend, &url, &dir, cards, chunk).await,
        Backend::Postgres => main_run::<PgStore>(backend, &url, &dir, cards, chunk).await,
    };
    scratch.drop_database("TENDER_BENCH_EXPIRY_KEEP").await;
    let seconds = run.seconds;
    let ours = cards as f64 / seconds;
    let raw = cards as f64 / raw_s;
    println!(
        "{name}_expiry_cards_per_s {ours:.0} ({} cards in {seconds:.2} s, {} transfers, {} transactions of up to {chunk} cards, Expiry::run end to end) [{command}]",
        run.cards, run.transfers, run.transactions
    );
    println!(
        "{name}_expired_after {expired} of {cards} cards in state expired (code {})",
        CardState::Expired.code()
    );
    println!(
        "{name}_raw_update_rows_per_s {raw:.0} ({cards} rows in {raw_s:.2} s: UPDATE card SET state = 4 WHERE serial BETWEEN, {RAW_ROWS} rows a transaction{}) [{command}]",
        if backend == Backend::Sqlite {
            ", BEGIN IMMEDIATE, synchronous=FULL"
        } else {
            ", autocommit"
        }
    );
    println!(
        "{name}_expiry_ratio_to_raw_update {:.3} [{command}]",
        ours / raw
    );
    if backend == Backend::Postgres
        && let Some(c) = std::env::var("CEIL_PG_UPDATE_ROWS_S")
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
    {
        println!(
            "postgres_expiry_ratio_to_pg_update_rows_s {:.3} (ceiling {c:.0} rows/s on a bare 5-column table; the raw update here {:.3} of it)",
            ours / c,
            raw / c
        );
    }
    run.print(name, cards, command);
    // Peak memory over a tenth of the cards, in a fresh database.
    let small_cards = cards / 10;
    let small = if small_cards >= 1 {
        let scratch = Scratch::create(backend, "expiry_small").await;
        let (url, dir) = (scratch.url.clone(), scratch.dir.path().to_path_buf());
        let report = match backend {
            Backend::Sqlite => {
                small_run::<SqliteStore>(backend, &url, &dir, small_cards, chunk).await
            }
            Backend::Postgres => {
                small_run::<PgStore>(backend, &url, &dir, small_cards, chunk).await
            }
        };
        scratch.drop_database("TENDER_BENCH_EXPIRY_KEEP").await;
        report.print(&format!("{name}_small"), small_cards, command);
        let (peak, small_peak) = (mib(run.memory.hwm_kib), mib(report.memory.hwm_kib));
        println!(
            "{name}_expiry_peak_memory_goal {peak:.1} MiB for {cards} cards (goal < 64 MiB: {}); {small_peak:.1} MiB for {small_cards}: {:.0}× the cards take {:.2}× the memory",
            if peak < 64.0 { "met" } else { "NOT met" },
            cards as f64 / small_cards as f64,
            peak / small_peak
        );
        Some((small_cards, report))
    } else {
        None
    };
    Figures {
        backend,
        cards,
        chunk,
        run,
        expired,
        check_before,
        check_after,
        raw_s,
        small,
    }
}

/// Steps 1 to 3 on one database: the check before, the child's run, the cards expired after,
/// the check after and the raw update's seconds.
async fn main_run<S: Store>(
    backend: Backend,
    url: &str,
    dir: &Path,
    cards: u64,
    chunk: usize,
) -> (Check, ChildReport, i64, Check, f64) {
    let name = backend.name();
    let app: App<S> = setup(backend, url, dir, cards).await;
    let check_before = check(name, "before", &app).await;
    prepare_timed(&app).await;
    app.store().close().await;
    let run = run_child(backend, url, dir, chunk);
    let app: App<S> = open(url, dir).await;
    let pool = app.store().db_pool();
    let expired = scalar(
        &pool,
        &format!(
            "SELECT COUNT(*) FROM card WHERE state = {}",
            CardState::Expired.code()
        ),
    )
    .await;
    let check_after = check(name, "after", &app).await;
    // The raw update over the same rows: back to active first, untimed.
    let start = Instant::now();
    exec(
        &pool,
        &format!(
            "UPDATE card SET state = {} WHERE state = {}",
            CardState::Active.code(),
            CardState::Expired.code()
        ),
    )
    .await;
    prepare_timed(&app).await;
    println!(
        "{name}_raw_reset_s {:.1} (every card back to active, then as before the run)",
        start.elapsed().as_secs_f64()
    );
    let raw_s = raw_update(&pool, cards).await;
    let after_raw = scalar(
        &pool,
        &format!(
            "SELECT COUNT(*) FROM card WHERE state = {}",
            CardState::Expired.code()
        ),
    )
    .await;
    assert_eq!(
        after_raw,
        i64::try_from(cards).unwrap(),
        "the raw update set every row"
    );
    app.store().close().await;
    (check_before, run, expired, check_after, raw_s)
}

/// Step 4: a fresh database of `cards` cards, expired in a child for its peak memory.
async fn small_run<S: Store>(
    backend: Backend,
    url: &str,
    dir: &Path,
    cards: u64,
    chunk: usize,
) -> ChildReport {
    let app: App<S> = setup(backend, url, dir, cards).await;
    prepare_timed(&app).await;
    app.store().close().await;
    let report = run_child(backend, url, dir, chunk);
    assert_eq!(report.cards, cards, "every card expired in the child");
    report
}

/// `ledger check`, timed.
async fn check<S: Store>(backend: &str, when: &str, app: &App<S>) -> Check {
    let start = Instant::now();
    let report = app.services().ledger().check().await.unwrap();
    let seconds = start.elapsed().as_secs_f64();
    let passed = report.discrepancy.is_none();
    let what = format!(
        "{} transfers, {} entries, {}",
        report.transfers,
        report.entries,
        match &report.discrepancy {
            None => "no discrepancy".to_string(),
            Some(d) => format!("DISCREPANCY {d:?}"),
        }
    );
    println!(
        "{backend}_ledger_check_{when} {} in {seconds:.2} s ({what})",
        if passed { "passed" } else { "FAILED" }
    );
    for balance in &report.system_balances {
        println!(
            "{backend}_system_balance_{when} {} {} {}",
            balance.ledger_account, balance.currency, balance.balance_minor
        );
    }
    Check {
        seconds,
        passed,
        what,
    }
}

// ---- Setup ----

/// One batch of the layout.
struct BatchPlan {
    first: u64,
    count: u64,
    us: bool,
}

/// One sale: a POS range activation of `count` cards from `first`, the `order`-th sold (its
/// funds expire in that order).
struct Sale {
    first: u64,
    count: u64,
    batch: usize,
    order: i64,
}

/// What the loaded database holds.
struct Layout {
    cards: u64,
    retailer_id: i64,
    commission_minor: i64,
    key_id: i64,
    /// The first id of each table's new rows.
    batch_id0: i64,
    request_id0: i64,
    transfer_id0: i64,
    batches: Vec<BatchPlan>,
    /// In serial order.
    sales: Vec<Sale>,
    /// The first sale's funds-expiry, in Unix milliseconds; each next sale a second later.
    first_expiry_ms: i64,
}

/// Activated this long before its funds expire.
const ACTIVE_DAYS: i64 = 3 * 365;

impl Layout {
    fn new(cards: u64, rng: &mut ChaCha20Rng) -> Layout {
        let mut batches = Vec::new();
        let mut first = 1;
        while first <= cards {
            let count = BATCH_CARDS.min(cards - first + 1);
            batches.push(BatchPlan {
                first,
                count,
                us: batches.len() as u64 % 10 == US_BATCH,
            });
            first += count;
        }
        // Each batch cut into sales of 1 to SALE_MAX cards.
        let mut per_batch: Vec<Vec<(u64, u64)>> = batches
            .iter()
            .map(|b| {
                let mut ranges = Vec::new();
                let mut at = b.first;
                let end = b.first + b.count;
                while at < end {
                    let n = u64::from(rng.next_u32() % SALE_MAX + 1).min(end - at);
                    ranges.push((at, n));
                    at += n;
                }
                ranges.reverse();
                ranges
            })
            .collect();
        // The batches sold side by side: one sale from each in turn.
        let mut sales = Vec::new();
        let mut order = 0;
        loop {
            let mut any = false;
            for (batch, ranges) in per_batch.iter_mut().enumerate() {
                if let Some((first, count)) = ranges.pop() {
                    sales.push(Sale {
                        first,
                        count,
                        batch,
                        order,
                    });
                    order += 1;
                    any = true;
                }
            }
            if !any {
                break;
            }
        }
        sales.sort_by_key(|s| s.first);
        let now_ms = SystemClock.now().timestamp_millis();
        // The last sale's funds expired a day ago.
        let first_expiry_ms = now_ms - 86_400_000 - order * 1_000;
        Layout {
            cards,
            retailer_id: 0,
            commission_minor: 0,
            key_id: 0,
            batch_id0: 0,
            request_id0: 0,
            transfer_id0: 0,
            batches,
            sales,
            first_expiry_ms,
        }
    }

    fn expiry_ms(&self, sale: &Sale) -> i64 {
        self.first_expiry_ms + sale.order * 1_000
    }

    fn expiry_at(&self, sale: &Sale) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.expiry_ms(sale)).unwrap()
    }

    fn activated_at(&self, sale: &Sale) -> DateTime<Utc> {
        self.expiry_at(sale) - TimeDelta::days(ACTIVE_DAYS)
    }

    fn us(&self, sale: &Sale) -> bool {
        self.batches[sale.batch].us
    }

    fn currency(&self, sale: &Sale) -> &'static str {
        if self.us(sale) { "USD" } else { "GBP" }
    }

    fn request_id(&self, sale: &Sale) -> i64 {
        self.request_id0 + sale.order
    }

    fn transfer_id(&self, sale: &Sale) -> i64 {
        self.transfer_id0 + sale.order
    }
}

/// The tables of `layout`, in the order their foreign keys need.
fn tables(layout: &Layout, seed: u64) -> Vec<Table<'_>> {
    let requested_at = DateTime::from_timestamp_millis(layout.first_expiry_ms).unwrap()
        - TimeDelta::days(ACTIVE_DAYS + 30);
    let batch = Table {
        name: "batch",
        columns: &[
            "batch_id",
            "retailer_id",
            "card_count",
            "currency",
            "value_minor",
            "region",
            "first_sequence",
            "lookup_key_id",
            "state",
            "generated_count",
            "requested_by",
            "requested_at",
            "completed_at",
        ],
        rows: Box::new(layout.batches.iter().enumerate().map(move |(i, b)| {
            vec![
                Val::Int(layout.batch_id0 + i64::try_from(i).unwrap()),
                Val::Int(layout.retailer_id),
                int(b.count),
                text(if b.us { "USD" } else { "GBP" }),
                Val::Int(VALUE_MINOR),
                text(if b.us { "US" } else { "GB" }),
                int(b.first),
                Val::Int(layout.key_id),
                text("completed"),
                int(b.count),
                text("cli:bench"),
                Val::At(requested_at),
                Val::At(requested_at),
            ]
        })),
    };
    let pos_request = Table {
        name: "pos_request",
        columns: &[
            "request_id",
            "retailer_id",
            "store_code",
            "terminal",
            "pos_txn",
            "first_serial",
            "last_serial",
            "operation",
            "value_minor",
            "pos_time_ms",
            "result",
            "actor",
            "recorded_at",
        ],
        rows: Box::new(layout.sales.iter().map(move |s| {
            let at = layout.activated_at(s);
            vec![
                Val::Int(layout.request_id(s)),
                Val::Int(layout.retailer_id),
                text(if layout.us(s) { US_STORE } else { GB_STORE }),
                text("T-1"),
                text(format!("S{}", s.order)),
                int(s.first),
                int(s.first + s.count - 1),
                text("activate"),
                Val::Int(VALUE_MINOR),
                Val::Int(at.timestamp_millis()),
                text(format!(
                    "{{\"request_id\":{},\"cards\":{}}}",
                    layout.request_id(s),
                    s.count
                )),
                text("cli:bench"),
                Val::At(at),
            ]
        })),
    };
    let transfer = Table {
        name: "transfer",
        columns: &[
            "transfer_id",
            "kind",
            "currency",
            "reference",
            "effective_at",
            "recorded_at",
            "effective_ms",
            "recorded_ms",
        ],
        rows: Box::new(layout.sales.iter().map(move |s| {
            let at = layout.activated_at(s);
            vec![
                Val::Int(layout.transfer_id(s)),
                text("activation"),
                text(layout.currency(s)),
                text(format!("S{}", s.order)),
                Val::At(at),
                Val::At(at),
                Val::Int(at.timestamp_millis()),
                Val::Int(at.timestamp_millis()),
            ]
        })),
    };
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let card = Table {
        name: "card",
        columns: &[
            "serial",
            "batch_id",
            "lookup_key_id",
            "state",
            "digest",
            "funds_expire_ms",
        ],
        rows: Box::new(layout.sales.iter().flat_map(move |s| {
            let batch_id = layout.batch_id0 + i64::try_from(s.batch).unwrap();
            let expiry = layout.expiry_ms(s);
            let mut digests = Vec::with_capacity(usize::try_from(s.count).unwrap());
            for _ in 0..s.count {
                let mut digest = [0u8; 32];
                rng.fill_bytes(&mut digest);
                digests.push(digest);
            }
            (s.first..s.first + s.count)
                .zip(digests)
                .map(move |(serial, digest)| {
                    vec![
                        int(serial),
                        Val::Int(batch_id),
                        Val::Int(layout.key_id),
                        Val::Int(i64::from(CardState::Active.code())),
                        Val::Blob(digest),
                        Val::Int(expiry),
                    ]
                })
        })),
    };
    let card_activation = Table {
        name: "card_activation",
        columns: &[
            "serial",
            "request_id",
            "value_minor",
            "commission_minor",
            "currency",
            "jurisdiction",
            "purchaser_state",
            "activated_at",
            "funds_expire_at",
            "transfer_id",
        ],
        rows: Box::new(layout.sales.iter().flat_map(move |s| {
            (s.first..s.first + s.count).map(move |serial| {
                let us = layout.us(s);
                vec![
                    int(serial),
                    Val::Int(layout.request_id(s)),
                    Val::Int(VALUE_MINOR),
                    Val::Int(layout.commission_minor),
                    text(layout.currency(s)),
                    text(if us { "US-TX" } else { "GB-ENG" }),
                    if us { text("US-NY") } else { Val::Null },
                    Val::At(layout.activated_at(s)),
                    Val::At(layout.expiry_at(s)),
                    Val::Int(layout.transfer_id(s)),
                ]
            })
        })),
    };
    // Entries in transfer order; each sale's legs as Posting::activation builds them.
    let mut by_order: Vec<&Sale> = layout.sales.iter().collect();
    by_order.sort_by_key(|s| s.order);
    let entry = Table {
        name: "entry",
        columns: &[
            "transfer_id",
            "leg",
            "ledger_account",
            "serial",
            "amount_minor",
        ],
        rows: Box::new(by_order.into_iter().flat_map(move |s| {
            let transfer = layout.transfer_id(s);
            let count = i64::try_from(s.count).unwrap();
            let mut legs = vec![(
                format!("receivable:{}", layout.retailer_id),
                None,
                -(VALUE_MINOR - layout.commission_minor) * count,
            )];
            if layout.commission_minor != 0 {
                legs.push((
                    "commission".to_string(),
                    None,
                    -layout.commission_minor * count,
                ));
            }
            for serial in s.first..s.first + s.count {
                let card = Serial::from_sequence(serial).unwrap();
                legs.push((format!("card:{card}"), Some(serial), VALUE_MINOR));
            }
            legs.into_iter()
                .enumerate()
                .map(move |(leg, (account, serial, amount))| {
                    vec![
                        Val::Int(transfer),
                        Val::Int(i64::try_from(leg).unwrap()),
                        Val::Text(account),
                        serial.map_or(Val::Null, int),
                        Val::Int(amount),
                    ]
                })
        })),
    };
    vec![batch, pos_request, transfer, card, card_activation, entry]
}

/// Initialises the database as `tender init` does, adds the retailer and its stores through
/// the service, and loads `cards` active cards in bulk (see the file's comment).
async fn setup<S: Store>(backend: Backend, url: &str, dir: &Path, cards: u64) -> App<S> {
    let name = backend.name();
    app::init(&settings(url, dir), SystemClock::shared(), &Actor::system())
        .await
        .unwrap();
    let app: App<S> = open(url, dir).await;
    let services = app.services();
    let retailer = services
        .retailers()
        .add(RETAILER, "5", &actor())
        .await
        .unwrap();
    for (store, jurisdiction) in [(GB_STORE, "GB-ENG"), (US_STORE, "US-TX")] {
        let form = StoreForm {
            retailer: RETAILER.into(),
            store: store.into(),
            jurisdiction: jurisdiction.into(),
        };
        services.cards().add_store(&form, &actor()).await.unwrap();
    }
    let pool = app.store().db_pool();
    let start = Instant::now();
    let mut rng = ChaCha20Rng::seed_from_u64(cards);
    let mut layout = Layout::new(cards, &mut rng);
    layout.retailer_id = retailer.id.0;
    layout.commission_minor = retailer.commission_bp.of(VALUE_MINOR);
    layout.key_id = lookup_key(&pool).await;
    layout.batch_id0 = next_id(&pool, "batch", "batch_id").await;
    layout.request_id0 = next_id(&pool, "pos_request", "request_id").await;
    layout.transfer_id0 = next_id(&pool, "transfer", "transfer_id").await;
    let (rows, per_table) = load_tables(
        &pool,
        tables(&layout, cards ^ 0x5eed),
        layout.cards,
        &[
            ("batch", "batch_id"),
            ("pos_request", "request_id"),
            ("transfer", "transfer_id"),
        ],
    )
    .await;
    let stats = match &pool {
        DbPool::Sqlite(_) => format!(
            "; sqlite_stat1 rows after PRAGMA optimize: {}",
            scalar_or_zero(&pool, "SELECT COUNT(*) FROM sqlite_stat1").await
        ),
        DbPool::Postgres(_) => String::new(),
    };
    let us_cards: u64 = layout
        .batches
        .iter()
        .filter(|b| b.us)
        .map(|b| b.count)
        .sum();
    println!(
        "{name}_setup {cards} active cards ({us_cards} US/USD to escheat_payable:US-NY, the rest GB/GBP to breakage) in {} batches and {} sales; {rows} rows loaded in {:.1} s ({}){stats}",
        layout.batches.len(),
        layout.sales.len(),
        start.elapsed().as_secs_f64(),
        per_table.join(", ")
    );
    app
}

/// A count from a table that may be missing: 0 then.
async fn scalar_or_zero(pool: &DbPool, sql: &str) -> i64 {
    let sql = sqlx::AssertSqlSafe(sql.to_string());
    match pool {
        DbPool::Sqlite(pool) => sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(pool)
            .await
            .unwrap_or(0),
        DbPool::Postgres(pool) => sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(pool)
            .await
            .unwrap_or(0),
    }
}

// ---- The raw ceiling ----

/// `UPDATE card SET state = 4 WHERE serial BETWEEN $1 AND $2` over [`RAW_ROWS`] serials at a
/// time, each its own transaction, over serials 1 to `cards`: seconds.
async fn raw_update(pool: &DbPool, cards: u64) -> f64 {
    const SQL: &str = "UPDATE card SET state = $1 WHERE serial BETWEEN $2 AND $3";
    let expired = CardState::Expired.code();
    let mut updated = 0;
    let start = Instant::now();
    let mut low = 1;
    while low <= cards {
        let high = (low + RAW_ROWS - 1).min(cards);
        let (lo, hi) = (i64::try_from(low).unwrap(), i64::try_from(high).unwrap());
        updated += match pool {
            DbPool::Sqlite(pool) => {
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.unwrap();
                let done = sqlx::query(SQL)
                    .bind(expired)
                    .bind(lo)
                    .bind(hi)
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
                done.rows_affected()
            }
            DbPool::Postgres(pool) => sqlx::query(SQL)
                .bind(expired)
                .bind(lo)
                .bind(hi)
                .execute(pool)
                .await
                .unwrap()
                .rows_affected(),
        };
        low = high + 1;
    }
    let seconds = start.elapsed().as_secs_f64();
    assert_eq!(updated, cards, "every row updated once");
    seconds
}

// ---- The child: the expiry run, in a process of its own ----

/// What the expiring child reported.
struct ChildReport {
    seconds: f64,
    cards: u64,
    transfers: u64,
    /// Transactions: the chunks, the last one short or empty.
    transactions: u64,
    /// Statements per transaction (sqlx's events, BEGIN and COMMIT apart).
    statements_per_tx: f64,
    /// The share of the wall time sqlx measured in statements.
    statement_share: f64,
    /// Its memory.
    memory: Memory,
}

impl ChildReport {
    fn print(&self, label: &str, cards: u64, command: &str) {
        println!(
            "{label}_expiry_peak_memory_mib {:.1} for {cards} cards (VmHWM of the expiring process just before exit; {}) [{command}]",
            mib(self.memory.hwm_kib),
            self.memory.detail()
        );
    }
}

/// This binary run again to expire every card of the database at `url`, under /usr/bin/time -v
/// where there is one. Its lines are printed as they came, but for the report line.
fn run_child(backend: Backend, url: &str, dir: &Path, chunk: usize) -> ChildReport {
    let chunk = chunk.to_string();
    let child = run_self(
        [
            (CHILD_BACKEND, OsStr::new(backend.name())),
            (CHILD_URL, OsStr::new(url)),
            (CHILD_DIR, dir.as_os_str()),
            (CHILD_CHUNK, OsStr::new(&chunk)),
        ],
        "the expiring child succeeds",
    );
    let field = |k: &str| child.field(k);
    ChildReport {
        seconds: field("seconds"),
        cards: field("cards") as u64,
        transfers: field("transfers") as u64,
        transactions: field("transactions") as u64,
        statements_per_tx: field("statements_per_tx"),
        statement_share: field("statement_share"),
        memory: Memory::of(&child),
    }
}

async fn child(backend: &str) {
    let url = std::env::var(CHILD_URL).unwrap();
    let dir = std::env::var(CHILD_DIR).unwrap();
    let chunk: usize = std::env::var(CHILD_CHUNK).unwrap().parse().unwrap();
    match backend {
        "sqlite" => child_run::<SqliteStore>(backend, &url, Path::new(&dir), chunk).await,
        _ => child_run::<PgStore>(backend, &url, Path::new(&dir), chunk).await,
    }
}

/// The child: opens the app, expires every due card as of now with its statements counted,
/// and reports on one line.
async fn child_run<S: Store>(backend: &str, url: &str, dir: &Path, chunk: usize) {
    let app: App<S> = open(url, dir).await;
    let open_kib = status_kib("VmHWM");
    let mut done = None;
    let counted = count::counted(&app, async |app| {
        let start = Instant::now();
        let report = app
            .services()
            .expiry()
            .run(SystemClock.now(), chunk, &actor())
            .await
            .unwrap();
        done = Some((report, start.elapsed().as_secs_f64()));
    })
    .await;
    app.store().close().await;
    let (report, seconds) = done.expect("the run ended");
    // Chunks until one came back short: the last is short or empty.
    let transactions = report.cards / chunk as u64 + 1;
    for line in &report.lines {
        println!(
            "{backend}_expiry_line {} {} cards {} {}",
            line.currency.code(),
            line.destination,
            line.cards,
            line.amount
        );
    }
    let apart = |sql: &str| {
        ["\"BEGIN", "\"COMMIT", "\"ROLLBACK", "\"PRAGMA"]
            .iter()
            .any(|p| sql.starts_with(p))
    };
    let per = transactions as f64;
    let mut statements = 0;
    let mut statement_secs = 0.0;
    for (sql, n) in &counted.counts {
        let secs = counted.secs.get(sql).copied().unwrap_or_default();
        statement_secs += secs;
        if !apart(sql) {
            statements += n;
        }
        println!(
            "{backend}_expiry_statement {:.2} per chunk, {:.3} ms per chunk ({:.1} % of the run) {sql}",
            *n as f64 / per,
            secs * 1e3 / per,
            secs / seconds * 100.0
        );
    }
    println!(
        "child seconds={seconds} cards={} transfers={} transactions={transactions} statements_per_tx={} statement_share={} {}",
        report.cards,
        report.transfers,
        statements as f64 / per,
        statement_secs / seconds,
        Memory::fields(open_kib)
    );
    let now = COUNTS.snapshot();
    if now.db_errors > 0 || now.reruns > 0 {
        println!(
            "{backend}_expiry_database_errors {} reruns {} (in the child)",
            now.db_errors, now.reruns
        );
    }
}

// ---- The table ----

fn table(figures: &[Figures]) {
    if figures.is_empty() {
        return;
    }
    println!();
    println!(
        "{:<9} {:>9} {:>6} {:>9} {:>9} {:>6} {:>10} {:>10} {:>6} {:>11} {:>13} {:>9} {:>9}",
        "backend",
        "cards",
        "chunk",
        "expiry_s",
        "cards/s",
        "xfers",
        "raw_rows/s",
        "ratio",
        "stm/tx",
        "peak_MiB@N",
        "peak_MiB@N/10",
        "check_bef",
        "check_aft"
    );
    for f in figures {
        let ours = f.cards as f64 / f.run.seconds;
        let raw = f.cards as f64 / f.raw_s;
        let verdict = |c: &Check| {
            format!(
                "{}{:.0}s",
                if c.passed { "ok " } else { "FAIL " },
                c.seconds
            )
        };
        println!(
            "{:<9} {:>9} {:>6} {:>9.2} {:>9.0} {:>6} {:>10.0} {:>10.3} {:>6.1} {:>11.1} {:>13} {:>9} {:>9}",
            f.backend.name(),
            f.cards,
            f.chunk,
            f.run.seconds,
            ours,
            f.run.transfers,
            raw,
            ours / raw,
            f.run.statements_per_tx,
            mib(f.run.memory.hwm_kib),
            f.small.as_ref().map_or("-".to_string(), |(_, r)| format!(
                "{:.1}",
                mib(r.memory.hwm_kib)
            )),
            verdict(&f.check_before),
            verdict(&f.check_after),
        );
        assert!(
            f.run.cards == f.cards && f.expired == i64::try_from(f.cards).unwrap(),
            "every card expired: the run says {}, the table {}",
            f.run.cards,
            f.expired
        );
        if !f.check_after.passed {
            println!(
                "{}_ledger_check_after {}",
                f.backend.name(),
                f.check_after.what
            );
        }
    }
    for f in figures {
        println!(
            "{}_statement_time_share {:.1} % of the run's wall time inside statements (sqlx's measure: on SQLite neither BEGIN nor COMMIT, on PostgreSQL the COMMIT)",
            f.backend.name(),
            f.run.statement_share * 100.0
        );
    }
}
