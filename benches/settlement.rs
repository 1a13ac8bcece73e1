//! Settlement figures: `cargo bench --bench settlement -- [entries] [sqlite|postgres|all]`.
//!
//! Each backend gets one scratch database (SQLite as tender runs it, `synchronous=FULL`, in a
//! temporary data dir; PostgreSQL: TENDER_TEST_PG_URL, default
//! postgres://postgres@127.0.0.1:5432/postgres, a database created and dropped here), made by
//! `app::init` as `tender init` makes it, with one retailer (5 % commission) and its store
//! GB-1 (GB-ENG) added through the service, and a seal key (`SealKey::create_files`) in its
//! key dir. The business time zone is the default, UTC.
//!
//! 1. Setup, untimed: one business day, [`DAY`], holding `entries` entries (default
//!    10,000,000; the last sale may take it a few dozen over), all in GBP, every row as
//!    tender's own services write the tables settlement reads, loaded in bulk with SQL
//!    (PostgreSQL `COPY … FROM STDIN` through sqlx `copy_in_raw`; SQLite one transaction of
//!    multi-row INSERTs per table). Sales (POS range activations) of 1 to 10 cards of 25.00
//!    (a seeded draw): one `pos_request`, one `activation` transfer (the receivable debited
//!    net of commission, `commission` debited, each `card:{serial}` credited, its `serial`
//!    set) and a `card_activation` per card. Two cards in three (serial not a multiple of 3)
//!    are then redeemed, each right after its sale: a `redemption` transfer (the card debited,
//!    `customer:{id}` credited, its `account_id` and `balance_after` set; the card's state
//!    redeemed), followed by three `spend`s of 5.00 from that account to `spent:app-store`.
//!    The redemptions go round the customer accounts (a quarter as many accounts as
//!    redemptions), whose `balance_minor` is what their entries sum to; the rest of the cards
//!    stay active. So the mix is about 20 % activation legs, 20 % redemption legs and 60 %
//!    spend legs, about 37 entries a sale. The transfers' `recorded_ms` (and `effective_ms`:
//!    nothing late) spread evenly over the day, in transfer order. Left out, as settlement
//!    reads none of them: `redemption`, `spend_order`, `card_event` and audit rows. Then
//!    PostgreSQL VACUUM ANALYZE and CHECKPOINT, SQLite `PRAGMA optimize` and a WAL checkpoint.
//! 2. The ceiling, in the same run on the same rows: the database holds the day's entries and
//!    nothing else (checked: the day's transfers join exactly every `entry` row), so the bare
//!    GROUP BY over the same rows is `SELECT leg, COUNT(*), SUM(amount_minor) FROM entry GROUP
//!    BY leg`: one sequential read of every entry, grouped by a small integer into a dozen
//!    groups, summed; no join, no index, no expression. That is the fastest way to group
//!    those rows (grouping by `ledger_account` would make a group per card and account and be
//!    several times slower, flattering the ratio). Rows per second.
//! 3. The aggregation queries, timed alone: every `SettlementRepo` call settlement's `facts`
//!    step makes for a day whose previous day is not closed (`day_movements`,
//!    `late_transfers`, `liability_between` before the day and after it, `customer_balances`,
//!    `active_card_value`, `pending_valuations`, `owed_clawbacks`, `receivables_between`
//!    before the day, `day_sales`, `day_voids`, `day_payments`, `day_trade_ins`, and
//!    the previous day's look-ups), in one read transaction (`Store::read`), each timed;
//!    their sum gives the aggregation's rows per second (the day's entries ÷ the seconds).
//!    The ratio is that ÷ the bare GROUP BY's rows per second (goal at least 0.5);
//!    `day_movements` alone is given too. Steps 2 and 3 run [`ROUNDS`] times in turn, and the
//!    best of each counts (the first round warms the caches).
//! 4. The whole run: `services().settlement().settle(DAY, key, witness, report_dir, actor)`
//!    with the system clock (the day is long past its cut-off and grace), in a process of its
//!    own (this binary run again) so that its peak memory is its own: VmHWM from
//!    /proc/self/status just before it exits (and the kernel's maximum resident set size
//!    through /usr/bin/time -v where there is one), goal under 64 MiB and flat. Its
//!    statements are counted and timed from sqlx's events (see `support/count.rs`), to show
//!    where the time goes. It must reconcile: the roll-forward it prints is checked against
//!    the loaded totals.
//!
//! The run ends with a table of the figures and the load average at its start and end. With
//! TENDER_BENCH_SETTLEMENT_KEEP set, the databases (and the data dirs holding their keys) are
//! kept for a look afterwards (EXPLAIN and the like), and their names printed.

use std::ffi::OsStr;
use std::path::Path;
use std::time::Instant;

use chrono::{DateTime, TimeDelta, Utc};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use tender::app::{self, App};
use tender::clock::SystemClock;
use tender::domain::{Actor, BusinessDate, CardState, Serial};
use tender::keys::SealKey;
use tender::service::cards::StoreForm;
use tender::store::{DbPool, PgStore, SettlementRepo, SqliteStore, Store, Tx};
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
    Backend, Scratch, Table, Val, actor, int, load_tables, lookup_key, next_id, open,
    prepare_timed, scalar, settings, text,
};

/// The business day settled: long past, so the system clock is past its cut-off and grace.
const DAY: &str = "2026-06-01";
/// The most cards one sale takes; each takes 1 to this many.
const SALE_MAX: u32 = 10;
/// Cards per batch; the last may hold fewer.
const BATCH_CARDS: u64 = 10_000;
/// Each card's face value, in minor units.
const VALUE_MINOR: i64 = 2_500;
/// Spends after each redemption, each of [`SPEND_MINOR`].
const SPENDS: u64 = 3;
const SPEND_MINOR: i64 = 500;
/// Redemptions per customer account.
const REDEMPTIONS_PER_ACCOUNT: u64 = 4;
/// Rounds of the ceiling and the aggregation, in turn; the best of each counts.
const ROUNDS: usize = 2;
/// The retailer and its store.
const RETAILER: &str = "Bench";
const STORE: &str = "GB-1";
/// The spending service.
const SERVICE: &str = "app-store";
/// The child's environment: backend, database URL and data dir (the keys).
const CHILD_BACKEND: &str = "TENDER_BENCH_SETTLEMENT_CHILD_BACKEND";
const CHILD_URL: &str = "TENDER_BENCH_SETTLEMENT_CHILD_URL";
const CHILD_DIR: &str = "TENDER_BENCH_SETTLEMENT_CHILD_DIR";

/// The bare GROUP BY: the ceiling (see the file's comment).
const BARE_GROUP_BY: &str = "SELECT leg, COUNT(*), SUM(amount_minor) FROM entry GROUP BY leg";

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
    let entries: u64 = args
        .first()
        .and_then(|a| a.parse().ok())
        .unwrap_or(if measuring { 10_000_000 } else { 20_000 });
    let which = args.get(1).cloned().unwrap_or_else(|| "all".into());
    println!("load_average_at_start {}", load_average());
    let mut figures = Vec::new();
    for backend in [Backend::Sqlite, Backend::Postgres] {
        if which == "all" || which == backend.name() {
            let command = format!(
                "cargo bench --bench settlement -- {entries} {}",
                backend.name()
            );
            figures.push(measure(backend, entries, &command).await);
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

fn day() -> BusinessDate {
    BusinessDate::parse(DAY).unwrap()
}

/// The day's start and cut-off in Unix milliseconds (UTC, the default business time zone).
fn day_bounds() -> (i64, i64) {
    let zone = chrono_tz::UTC;
    (
        day().start(zone).timestamp_millis(),
        day().cutoff(zone).timestamp_millis(),
    )
}

/// What one backend's run measured.
struct Figures {
    backend: Backend,
    entries: u64,
    transfers: u64,
    cards: u64,
    load_s: f64,
    /// The best bare GROUP BY, seconds.
    bare_s: f64,
    /// The best round of the aggregation: each query's seconds.
    queries: Vec<(&'static str, f64)>,
    run: ChildReport,
}

impl Figures {
    fn aggregation_s(&self) -> f64 {
        self.queries.iter().map(|(_, s)| s).sum()
    }

    fn movements_s(&self) -> f64 {
        self.queries
            .iter()
            .find(|(q, _)| *q == "day_movements")
            .map_or(0.0, |(_, s)| *s)
    }
}

async fn measure(backend: Backend, entries: u64, command: &str) -> Figures {
    let name = backend.name();
    let scratch = Scratch::create(backend, "settlement").await;
    let (url, dir) = (scratch.url.clone(), scratch.dir.path().to_path_buf());
    let figures = match backend {
        Backend::Sqlite => main_run::<SqliteStore>(backend, &url, &dir, entries).await,
        Backend::Postgres => main_run::<PgStore>(backend, &url, &dir, entries).await,
    };
    scratch.drop_database("TENDER_BENCH_SETTLEMENT_KEEP").await;
    let n = figures.entries as f64;
    let bare = n / figures.bare_s;
    let ours = n / figures.aggregation_s();
    let movements = n / figures.movements_s();
    println!(
        "{name}_bare_group_by_rows_per_s {bare:.0} ({} rows in {:.3} s: {BARE_GROUP_BY}) [{command}]",
        figures.entries, figures.bare_s
    );
    println!(
        "{name}_aggregation_rows_per_s {ours:.0} ({} entries in {:.3} s: every SettlementRepo call of the facts step) [{command}]",
        figures.entries,
        figures.aggregation_s()
    );
    println!(
        "{name}_aggregation_ratio_to_bare_group_by {:.3} (goal >= 0.5: {}) [{command}]",
        ours / bare,
        if ours / bare >= 0.5 { "met" } else { "NOT met" }
    );
    println!(
        "{name}_day_movements_ratio_to_bare_group_by {:.3} ({movements:.0} rows/s, {:.3} s) [{command}]",
        movements / bare,
        figures.movements_s()
    );
    figures.run.print(name, figures.entries, command);
    figures
}

/// Steps 1 to 4 on one database.
async fn main_run<S: Store>(backend: Backend, url: &str, dir: &Path, entries: u64) -> Figures {
    let name = backend.name();
    let start = Instant::now();
    let (app, layout): (App<S>, Layout) = setup(backend, url, dir, entries).await;
    let load_s = start.elapsed().as_secs_f64();
    let pool = app.store().db_pool();
    // The same rows: the day's transfers join every entry, and the day holds them all.
    let (start_ms, end_ms) = day_bounds();
    let all = scalar(&pool, "SELECT COUNT(*) FROM entry").await;
    let of_day = scalar(
        &pool,
        &format!(
            "SELECT COUNT(*) FROM transfer t JOIN entry e ON e.transfer_id = t.transfer_id \
             WHERE t.recorded_ms >= {start_ms} AND t.recorded_ms < {end_ms}"
        ),
    )
    .await;
    assert_eq!(
        (all, of_day),
        (
            i64::try_from(layout.entries).unwrap(),
            i64::try_from(layout.entries).unwrap()
        ),
        "the day's entries are every entry"
    );
    prepare_timed(&app).await;
    let mut bare_s = f64::MAX;
    let mut best: Option<Vec<(&'static str, f64)>> = None;
    for round in 1..=ROUNDS {
        let t = Instant::now();
        let groups = groups(&pool, BARE_GROUP_BY).await;
        let s = t.elapsed().as_secs_f64();
        bare_s = bare_s.min(s);
        println!("{name}_round {round} bare_group_by {s:.3} s ({groups} groups)");
        let queries = aggregation(&app, start_ms, end_ms).await;
        let total: f64 = queries.iter().map(|(_, s)| s).sum();
        println!(
            "{name}_round {round} aggregation {total:.3} s ({})",
            queries
                .iter()
                .map(|(q, s)| format!("{q} {s:.3}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        if best
            .as_ref()
            .is_none_or(|b| total < b.iter().map(|(_, s)| s).sum::<f64>())
        {
            best = Some(queries);
        }
    }
    prepare_timed(&app).await;
    app.store().close().await;
    let run = run_child(backend, url, dir);
    assert_eq!(
        (run.activations, run.spends, run.closing),
        (
            i64::try_from(layout.cards).unwrap() * VALUE_MINOR,
            -i64::try_from(layout.redemptions * SPENDS).unwrap() * SPEND_MINOR,
            layout.closing()
        ),
        "the settled roll-forward agrees with what was loaded"
    );
    Figures {
        backend,
        entries: layout.entries,
        transfers: layout.transfers,
        cards: layout.cards,
        load_s,
        bare_s,
        queries: best.expect("a round ran"),
        run,
    }
}

/// Every `SettlementRepo` call of settlement's `facts` step for [`DAY`] (its previous day not
/// closed), in one read transaction, each timed.
async fn aggregation<S: Store>(
    app: &App<S>,
    start_ms: i64,
    end_ms: i64,
) -> Vec<(&'static str, f64)> {
    let previous = day().previous().unwrap().to_string();
    let mut tx = app.store().read().await.unwrap();
    let mut times = Vec::new();
    macro_rules! timed {
        ($name:literal, $call:expr) => {{
            let t = Instant::now();
            let out = $call.await.unwrap();
            times.push(($name, t.elapsed().as_secs_f64()));
            out
        }};
    }
    let movements = timed!("day_movements", tx.day_movements(start_ms, end_ms));
    assert!(!movements.is_empty(), "the day moved something");
    timed!("late_transfers", tx.late_transfers(start_ms, end_ms));
    timed!("settled_liability", tx.settled_liability(&previous));
    timed!("settled_receivables", tx.settled_receivables(&previous));
    timed!("settlement", tx.settlement(&previous));
    timed!("liability_before", tx.liability_between(i64::MIN, start_ms));
    timed!("customer_balances", tx.customer_balances());
    timed!("active_card_value", tx.active_card_value());
    timed!("liability_since", tx.liability_between(end_ms, i64::MAX));
    timed!("pending_valuations", tx.pending_valuations());
    timed!("owed_clawbacks", tx.owed_clawbacks());
    timed!(
        "receivables_before",
        tx.receivables_between(i64::MIN, start_ms)
    );
    timed!("day_sales", tx.day_sales(start_ms, end_ms));
    timed!("day_voids", tx.day_voids(start_ms, end_ms));
    timed!("day_payments", tx.day_payments(start_ms, end_ms));
    timed!("day_trade_ins", tx.day_trade_ins(start_ms, end_ms));
    tx.commit().await.unwrap();
    times
}

// ---- Setup ----

/// One sale: a POS range activation of `count` cards from `first`, its transfers from
/// `transfer` (offset) and its redemptions from `redemption` (index).
struct Sale {
    first: u64,
    count: u64,
    transfer: u64,
    redemption: u64,
}

/// Whether a card is redeemed in the day.
fn redeemed(serial: u64) -> bool {
    !serial.is_multiple_of(3)
}

/// What the loaded database holds.
struct Layout {
    sales: Vec<Sale>,
    cards: u64,
    transfers: u64,
    redemptions: u64,
    entries: u64,
    accounts: u64,
    retailer_id: i64,
    commission_minor: i64,
    key_id: i64,
    /// The first id of each table's new rows.
    batch_id0: i64,
    request_id0: i64,
    transfer_id0: i64,
    account_id0: i64,
    start_ms: i64,
    end_ms: i64,
}

/// One leg as loaded: account key, serial, customer account, amount, balance after.
type LegRow = (String, Option<u64>, Option<i64>, i64, Option<i64>);

/// One transfer as loaded: its offset, kind, reference and legs.
struct Xfer {
    offset: u64,
    kind: &'static str,
    reference: String,
    legs: Vec<LegRow>,
}

impl Layout {
    fn new(entries: u64, rng: &mut ChaCha20Rng) -> Layout {
        let mut sales = Vec::new();
        let (mut first, mut transfer, mut redemption, mut n) = (1, 0, 0, 0);
        while n < entries {
            let count = u64::from(rng.next_u32() % SALE_MAX + 1);
            let r = (first..first + count).filter(|s| redeemed(*s)).count() as u64;
            sales.push(Sale {
                first,
                count,
                transfer,
                redemption,
            });
            n += 2 + count + r * 2 * (1 + SPENDS);
            transfer += 1 + r * (1 + SPENDS);
            redemption += r;
            first += count;
        }
        let (start_ms, end_ms) = day_bounds();
        Layout {
            sales,
            cards: first - 1,
            transfers: transfer,
            redemptions: redemption,
            entries: n,
            accounts: (redemption / REDEMPTIONS_PER_ACCOUNT).max(1),
            retailer_id: 0,
            commission_minor: 0,
            key_id: 0,
            batch_id0: 0,
            request_id0: 0,
            transfer_id0: 0,
            account_id0: 0,
            start_ms,
            end_ms,
        }
    }

    /// A transfer's recorded (and effective) time: the day's transfers spread evenly over it.
    fn at_ms(&self, offset: u64) -> i64 {
        let span = i128::from(self.end_ms - self.start_ms - 1_000);
        let at = i128::from(offset) * span / i128::from(self.transfers.max(1));
        self.start_ms + i64::try_from(at).unwrap()
    }

    fn at(&self, offset: u64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.at_ms(offset)).unwrap()
    }

    fn account_of(&self, redemption: u64) -> u64 {
        redemption % self.accounts
    }

    /// A customer account's balance at the end: what each of its redemptions left.
    fn balance(&self, account: u64) -> i64 {
        let n = self.redemptions / self.accounts
            + u64::from(account < self.redemptions % self.accounts);
        i64::try_from(n).unwrap() * (VALUE_MINOR - SPEND_MINOR * i64::try_from(SPENDS).unwrap())
    }

    /// The liability at the cut-off: active cards and customer balances.
    fn closing(&self) -> i64 {
        let active = i64::try_from(self.cards - self.redemptions).unwrap();
        let customers: i64 = (0..self.accounts).map(|a| self.balance(a)).sum();
        active * VALUE_MINOR + customers
    }

    fn funds_expire_at(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.end_ms).unwrap() + TimeDelta::days(3 * 365)
    }

    /// Every transfer of the day in order, with its legs as the services post them.
    fn xfers(&self) -> impl Iterator<Item = Xfer> + '_ {
        let mut balances = vec![0i64; usize::try_from(self.accounts).unwrap()];
        let spent = format!("spent:{SERVICE}");
        self.sales.iter().enumerate().flat_map(move |(i, s)| {
            let mut out = Vec::new();
            let k = i64::try_from(s.count).unwrap();
            let mut legs = vec![
                (
                    format!("receivable:{}", self.retailer_id),
                    None,
                    None,
                    -(VALUE_MINOR - self.commission_minor) * k,
                    None,
                ),
                (
                    "commission".to_string(),
                    None,
                    None,
                    -self.commission_minor * k,
                    None,
                ),
            ];
            for serial in s.first..s.first + s.count {
                let card = Serial::from_sequence(serial).unwrap();
                legs.push((
                    format!("card:{card}"),
                    Some(serial),
                    None,
                    VALUE_MINOR,
                    None,
                ));
            }
            let mut offset = s.transfer;
            out.push(Xfer {
                offset,
                kind: "activation",
                reference: format!("S{i}"),
                legs,
            });
            let serials = (s.first..s.first + s.count).filter(|s| redeemed(*s));
            for (redemption, serial) in (s.redemption..).zip(serials) {
                let a = self.account_of(redemption);
                let id = self.account_id0 + i64::try_from(a).unwrap();
                let balance = &mut balances[usize::try_from(a).unwrap()];
                let card = Serial::from_sequence(serial).unwrap();
                *balance += VALUE_MINOR;
                offset += 1;
                out.push(Xfer {
                    offset,
                    kind: "redemption",
                    reference: format!("R{redemption}"),
                    legs: vec![
                        (
                            format!("card:{card}"),
                            Some(serial),
                            None,
                            -VALUE_MINOR,
                            None,
                        ),
                        (
                            format!("customer:{id}"),
                            None,
                            Some(id),
                            VALUE_MINOR,
                            Some(*balance),
                        ),
                    ],
                });
                for spend in 0..SPENDS {
                    *balance -= SPEND_MINOR;
                    offset += 1;
                    out.push(Xfer {
                        offset,
                        kind: "spend",
                        reference: format!("O{redemption}-{spend}"),
                        legs: vec![
                            (
                                format!("customer:{id}"),
                                None,
                                Some(id),
                                -SPEND_MINOR,
                                Some(*balance),
                            ),
                            (spent.clone(), None, None, SPEND_MINOR, None),
                        ],
                    });
                }
            }
            out
        })
    }
}

fn opt(v: Option<i64>) -> Val {
    v.map_or(Val::Null, Val::Int)
}

/// The tables of `layout`, in the order their foreign keys need.
fn tables(layout: &Layout, seed: u64) -> Vec<Table<'_>> {
    let before = DateTime::from_timestamp_millis(layout.start_ms).unwrap() - TimeDelta::days(30);
    let batches = layout.cards.div_ceil(BATCH_CARDS);
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
        rows: Box::new((0..batches).map(move |i| {
            let first = i * BATCH_CARDS + 1;
            let count = BATCH_CARDS.min(layout.cards - first + 1);
            vec![
                Val::Int(layout.batch_id0 + i64::try_from(i).unwrap()),
                Val::Int(layout.retailer_id),
                int(count),
                text("GBP"),
                Val::Int(VALUE_MINOR),
                text("GB"),
                int(first),
                Val::Int(layout.key_id),
                text("completed"),
                int(count),
                text("cli:bench"),
                Val::At(before),
                Val::At(before),
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
        rows: Box::new(layout.sales.iter().enumerate().map(move |(i, s)| {
            let request = layout.request_id0 + i64::try_from(i).unwrap();
            vec![
                Val::Int(request),
                Val::Int(layout.retailer_id),
                text(STORE),
                text("T-1"),
                text(format!("S{i}")),
                int(s.first),
                int(s.first + s.count - 1),
                text("activate"),
                Val::Int(VALUE_MINOR),
                Val::Int(layout.at_ms(s.transfer)),
                text(format!(
                    "{{\"request_id\":{request},\"cards\":{}}}",
                    s.count
                )),
                text("cli:bench"),
                Val::At(layout.at(s.transfer)),
            ]
        })),
    };
    let account = Table {
        name: "account",
        columns: &[
            "account_id",
            "region",
            "currency",
            "balance_minor",
            "created_at",
        ],
        rows: Box::new((0..layout.accounts).map(move |a| {
            vec![
                Val::Int(layout.account_id0 + i64::try_from(a).unwrap()),
                text("GB"),
                text("GBP"),
                Val::Int(layout.balance(a)),
                Val::At(before),
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
        rows: Box::new(layout.xfers().map(move |x| {
            let (at, ms) = (layout.at(x.offset), layout.at_ms(x.offset));
            vec![
                Val::Int(layout.transfer_id0 + i64::try_from(x.offset).unwrap()),
                text(x.kind),
                text("GBP"),
                Val::Text(x.reference),
                Val::At(at),
                Val::At(at),
                Val::Int(ms),
                Val::Int(ms),
            ]
        })),
    };
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let expire_ms = layout.funds_expire_at().timestamp_millis();
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
        rows: Box::new((1..=layout.cards).map(move |serial| {
            let mut digest = [0u8; 32];
            rng.fill_bytes(&mut digest);
            let state = if redeemed(serial) {
                CardState::Redeemed
            } else {
                CardState::Active
            };
            vec![
                int(serial),
                Val::Int(layout.batch_id0 + i64::try_from((serial - 1) / BATCH_CARDS).unwrap()),
                Val::Int(layout.key_id),
                Val::Int(i64::from(state.code())),
                Val::Blob(digest),
                Val::Int(expire_ms),
            ]
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
        rows: Box::new(layout.sales.iter().enumerate().flat_map(move |(i, s)| {
            (s.first..s.first + s.count).map(move |serial| {
                vec![
                    int(serial),
                    Val::Int(layout.request_id0 + i64::try_from(i).unwrap()),
                    Val::Int(VALUE_MINOR),
                    Val::Int(layout.commission_minor),
                    text("GBP"),
                    text("GB-ENG"),
                    Val::Null,
                    Val::At(layout.at(s.transfer)),
                    Val::At(layout.funds_expire_at()),
                    Val::Int(layout.transfer_id0 + i64::try_from(s.transfer).unwrap()),
                ]
            })
        })),
    };
    let entry = Table {
        name: "entry",
        columns: &[
            "transfer_id",
            "leg",
            "ledger_account",
            "account_id",
            "serial",
            "amount_minor",
            "balance_after",
            "recorded_ms",
            "book",
        ],
        rows: Box::new(layout.xfers().flat_map(move |x| {
            let transfer = layout.transfer_id0 + i64::try_from(x.offset).unwrap();
            let recorded_ms = layout.at(x.offset).timestamp_millis();
            let kind = x.kind;
            x.legs.into_iter().enumerate().map(
                move |(leg, (key, serial, account, amount, after))| {
                    // As insert_transfer writes it: `{currency}:{kind}:{account}`.
                    let class = if serial.is_some() {
                        "card".to_string()
                    } else if account.is_some() {
                        "customer".to_string()
                    } else {
                        key.clone()
                    };
                    vec![
                        Val::Int(transfer),
                        Val::Int(i64::try_from(leg).unwrap()),
                        Val::Text(key),
                        opt(account),
                        serial.map_or(Val::Null, int),
                        Val::Int(amount),
                        opt(after),
                        Val::Int(recorded_ms),
                        Val::Text(format!("GBP:{kind}:{class}")),
                    ]
                },
            )
        })),
    };
    vec![
        batch,
        pos_request,
        account,
        transfer,
        card,
        card_activation,
        entry,
    ]
}

/// Initialises the database as `tender init` does, adds the retailer, its store and a seal
/// key, and loads the day (see the file's comment).
async fn setup<S: Store>(
    backend: Backend,
    url: &str,
    dir: &Path,
    entries: u64,
) -> (App<S>, Layout) {
    let name = backend.name();
    let settings = settings(url, dir);
    app::init(&settings, SystemClock::shared(), &Actor::system())
        .await
        .unwrap();
    SealKey::create_files(&settings.key_dir()).unwrap();
    let app: App<S> = open(url, dir).await;
    let services = app.services();
    let retailer = services
        .retailers()
        .add(RETAILER, "5", &actor())
        .await
        .unwrap();
    let form = StoreForm {
        retailer: RETAILER.into(),
        store: STORE.into(),
        jurisdiction: "GB-ENG".into(),
    };
    services.cards().add_store(&form, &actor()).await.unwrap();
    let pool = app.store().db_pool();
    let start = Instant::now();
    let mut rng = ChaCha20Rng::seed_from_u64(entries);
    let mut layout = Layout::new(entries, &mut rng);
    layout.retailer_id = retailer.id.0;
    layout.commission_minor = retailer.commission_bp.of(VALUE_MINOR);
    layout.key_id = lookup_key(&pool).await;
    layout.batch_id0 = next_id(&pool, "batch", "batch_id").await;
    layout.request_id0 = next_id(&pool, "pos_request", "request_id").await;
    layout.transfer_id0 = next_id(&pool, "transfer", "transfer_id").await;
    layout.account_id0 = next_id(&pool, "account", "account_id").await;
    let (rows, per_table) = load_tables(
        &pool,
        tables(&layout, entries ^ 0x5eed),
        layout.cards,
        &[
            ("batch", "batch_id"),
            ("pos_request", "request_id"),
            ("transfer", "transfer_id"),
            ("account", "account_id"),
        ],
    )
    .await;
    println!(
        "{name}_setup {} entries in {} transfers ({} sales of {} cards, {} redeemed into {} accounts, {} spends) on {DAY}; {rows} rows loaded in {:.1} s ({})",
        layout.entries,
        layout.transfers,
        layout.sales.len(),
        layout.cards,
        layout.redemptions,
        layout.accounts,
        layout.redemptions * SPENDS,
        start.elapsed().as_secs_f64(),
        per_table.join(", ")
    );
    (app, layout)
}

/// Runs a grouping query and counts the groups it returned.
async fn groups(pool: &DbPool, sql: &str) -> usize {
    let sql = sqlx::AssertSqlSafe(sql.to_string());
    match pool {
        DbPool::Sqlite(pool) => sqlx::query(sql).fetch_all(pool).await.unwrap().len(),
        DbPool::Postgres(pool) => sqlx::query(sql).fetch_all(pool).await.unwrap().len(),
    }
}

// ---- The child: the settle run, in a process of its own ----

/// What the settling child reported.
struct ChildReport {
    seconds: f64,
    /// The roll-forward's activations, spends and closing lines.
    activations: i64,
    spends: i64,
    closing: i64,
    /// Statements sqlx ran for the run, and the share of its wall time inside them.
    statements: u64,
    statement_share: f64,
    /// Its memory.
    memory: Memory,
}

impl ChildReport {
    fn print(&self, label: &str, entries: u64, command: &str) {
        println!(
            "{label}_settle_s {:.2} for {entries} entries (Settlement::settle end to end: {} statements, {:.1} % of the time inside them) [{command}]",
            self.seconds,
            self.statements,
            self.statement_share * 100.0
        );
        println!(
            "{label}_settle_peak_memory_mib {:.1} for {entries} entries (goal < 64 MiB: {}; VmHWM of the settling process just before exit; {}) [{command}]",
            mib(self.memory.hwm_kib),
            if mib(self.memory.hwm_kib) < 64.0 {
                "met"
            } else {
                "NOT met"
            },
            self.memory.detail()
        );
    }
}

/// This binary run again to settle [`DAY`] on the database at `url`, under /usr/bin/time -v
/// where there is one. Its lines are printed as they came, but for the report line.
fn run_child(backend: Backend, url: &str, dir: &Path) -> ChildReport {
    let child = run_self(
        [
            (CHILD_BACKEND, OsStr::new(backend.name())),
            (CHILD_URL, OsStr::new(url)),
            (CHILD_DIR, dir.as_os_str()),
        ],
        "the settling child succeeds",
    );
    let field = |k: &str| child.field(k);
    ChildReport {
        seconds: field("seconds"),
        activations: field("activations") as i64,
        spends: field("spends") as i64,
        closing: field("closing") as i64,
        statements: field("statements") as u64,
        statement_share: field("statement_share"),
        memory: Memory::of(&child),
    }
}

async fn child(backend: &str) {
    let url = std::env::var(CHILD_URL).unwrap();
    let dir = std::env::var(CHILD_DIR).unwrap();
    match backend {
        "sqlite" => child_run::<SqliteStore>(backend, &url, Path::new(&dir)).await,
        _ => child_run::<PgStore>(backend, &url, Path::new(&dir)).await,
    }
}

/// The child: opens the app, settles [`DAY`] with its statements counted, and reports on one
/// line.
async fn child_run<S: Store>(backend: &str, url: &str, dir: &Path) {
    let app: App<S> = open(url, dir).await;
    let settings = app.settings().clone();
    let key = SealKey::load(&settings.key_dir()).unwrap();
    let open_kib = status_kib("VmHWM");
    let mut done = None;
    let counted = count::counted(&app, async |app| {
        let start = Instant::now();
        let settled = app
            .services()
            .settlement()
            .settle(
                day(),
                &key,
                &settings.witness_file(),
                &settings.report_dir(),
                &actor(),
            )
            .await
            .unwrap();
        done = Some((settled, start.elapsed().as_secs_f64()));
    })
    .await;
    app.store().close().await;
    let (settled, seconds) = done.expect("the run ended");
    assert!(settled.closed_now, "the run closed the day");
    let roll = &settled.roll_forward[0];
    for line in &roll.lines {
        println!(
            "{backend}_roll_forward {} {} {}",
            roll.currency.code(),
            line.line,
            line.minor
        );
    }
    let mut statements = 0;
    let mut statement_secs = 0.0;
    for (sql, n) in &counted.counts {
        let secs = counted.secs.get(sql).copied().unwrap_or_default();
        statement_secs += secs;
        statements += n;
        if secs >= 0.01 {
            println!(
                "{backend}_settle_statement {n} × {:.3} s ({:.1} % of the run) {sql}",
                secs,
                secs / seconds * 100.0
            );
        }
    }
    let line = |name: &str| roll.line(name).unwrap_or(0);
    println!(
        "child seconds={seconds} activations={} spends={} closing={} statements={statements} statement_share={} {}",
        line("activations"),
        line("spends"),
        line("closing"),
        statement_secs / seconds,
        Memory::fields(open_kib)
    );
    let now = COUNTS.snapshot();
    if now.db_errors > 0 || now.reruns > 0 {
        println!(
            "{backend}_settle_database_errors {} reruns {} (in the child)",
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
        "{:<9} {:>10} {:>9} {:>8} {:>7} {:>12} {:>12} {:>7} {:>12} {:>7} {:>9} {:>9}",
        "backend",
        "entries",
        "transfers",
        "cards",
        "load_s",
        "bare_rows/s",
        "agg_rows/s",
        "ratio",
        "moves_rows/s",
        "ratio",
        "settle_s",
        "peak_MiB"
    );
    for f in figures {
        let n = f.entries as f64;
        let bare = n / f.bare_s;
        let agg = n / f.aggregation_s();
        let moves = n / f.movements_s();
        println!(
            "{:<9} {:>10} {:>9} {:>8} {:>7.1} {:>12.0} {:>12.0} {:>7.3} {:>12.0} {:>7.3} {:>9.2} {:>9.1}",
            f.backend.name(),
            f.entries,
            f.transfers,
            f.cards,
            f.load_s,
            bare,
            agg,
            agg / bare,
            moves,
            moves / bare,
            f.run.seconds,
            mib(f.run.memory.hwm_kib),
        );
    }
    println!(
        "(ratio: rows/s ÷ the bare GROUP BY's, goal >= 0.5; the first is every aggregation query of the facts step, the second day_movements alone; peak_MiB: the settling process's VmHWM, goal < 64)"
    );
}
