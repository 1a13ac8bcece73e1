//! Ledger figures:
//! `cargo bench --bench ledger -- [seconds] [sqlite|postgres|all] [transfers] [callers]`.
//!
//! Each backend gets one scratch database (SQLite as tender runs it, `synchronous=FULL`;
//! PostgreSQL: TENDER_TEST_PG_URL, default postgres://postgres@127.0.0.1:5432/postgres, a
//! database created and dropped here), holding 10,000 accounts, each funded by one adjustment.
//!
//! 1. `ledger check` over `transfers` (default 1,000,000) transfers: the 10,000 fundings and
//!    spends of 1.00 spread evenly over the accounts, loaded in bulk by SQL with consistent
//!    balances, balances-after and orders (spends one at a time would take an hour). Timed in
//!    process (`services().ledger().check()`), then run as a separate `tender ledger check`
//!    process under `/usr/bin/time -v` for its peak memory (maximum resident set size).
//! 2. Spends per second through `services().ledger().spend`, `callers` (default 8) concurrent
//!    callers (tokio tasks sharing one App) for `seconds` (default 15) after a 1-second warm-up,
//!    each spend with its own order id: spread over the 10,000 accounts, then all on one hot account. With
//!    CEIL_PG_TPCB_TPS and CEIL_SQLITE_REDEEM_FULL_TPS in the environment (from
//!    `../shared/bench/ceilings`), also the ratio to pgbench's tpcb-like (8 clients) and to the
//!    ceilings' redemption loop at `synchronous=FULL`. `ledger check` must pass afterwards.
//! 3. SQL statements per spend, counted over 100 sequential spends on a fresh connection pool:
//!    on PostgreSQL from the server's own statement log (`log_statement = 'all'` set on the
//!    scratch database only; pg_stat_statements when it is preloaded is not assumed), and the
//!    round trips through a counting TCP relay between tender and the server; on both backends
//!    by counting sqlx's per-statement events in process.
//!
//! Database errors logged by tender (deadlocks, busy, serialization failures) and units of work
//! run again are counted throughout and printed beside each run.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::{Connection, Executor};
use tender::app::{self, App};
use tender::clock::{Clock, SystemClock};
use tender::domain::Actor;
use tender::error::Classify;
use tender::service::ledger::SpendForm;
use tender::store::{DbPool, PgStore, SqliteStore, Store};
use tracing_subscriber::layer::SubscriberExt;

/// Concurrent callers of the spend runs, unless the fourth argument says otherwise.
const CALLERS: usize = 8;
/// Every account's funding adjustment, in cents: 40,000.00.
const FUND_MINOR: i64 = 4_000_000;
/// Each bulk-loaded spend, in cents.
const BULK_SPEND_MINOR: i64 = 100;
/// Each measured spend: small, so the hot account never runs dry.
const SPEND_AMOUNT: &str = "0.01";
/// The spending service.
const SERVICE: &str = "app-store";

#[path = "support/count.rs"]
mod count;
// Only its settings and app are used here: the books are loaded by this bench's own SQL.
#[allow(dead_code)]
#[path = "support/scratch.rs"]
mod scratch;
mod support;

use count::{COUNTS, Counter};
use scratch::{open, settings};
use support::ScratchPg;

#[tokio::main]
async fn main() {
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Counter))
        .expect("no other subscriber");
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it, and
    // then a small smoke run keeps the code exercised in a few seconds.
    let measuring = std::env::args().any(|a| a == "--bench");
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let seconds: f64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(15.0);
    let which = args.get(1).cloned().unwrap_or_else(|| "all".into());
    let plan = if measuring {
        let transfers: i64 = args
            .get(2)
            .and_then(|a| a.parse().ok())
            .unwrap_or(1_000_000);
        Plan {
            accounts: 10_000,
            spends_per_account: transfers / 10_000 - 1,
            warm: Budget::Time(Duration::from_secs(1)),
            run: Budget::Time(Duration::from_secs_f64(seconds)),
            counted: 100,
            callers: args.get(3).and_then(|a| a.parse().ok()).unwrap_or(CALLERS),
        }
    } else {
        Plan {
            accounts: 200,
            spends_per_account: 9,
            warm: Budget::Count(1),
            run: Budget::Count(5),
            counted: 10,
            callers: CALLERS,
        }
    };
    assert!(
        plan.spends_per_account >= 1,
        "at least 2 transfers an account"
    );
    if which == "all" || which == "sqlite" {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("tender.db").display());
        let ceiling = ceiling("CEIL_SQLITE_REDEEM_FULL_TPS");
        let app: Arc<App<SqliteStore>> = Arc::new(books("sqlite", &url, dir.path(), &plan).await);
        spends(
            "sqlite",
            &app,
            &plan,
            ceiling.map(|c| ("sqlite_redeem_full", c)),
        )
        .await;
        app.store().close().await;
        count_sqlite(&url, dir.path(), &plan).await;
    }
    if which == "all" || which == "postgres" {
        let mut pg = ScratchPg::create("ledger").await;
        let (name, url) = (pg.name.clone(), pg.url.clone());
        let dir = tempfile::tempdir().unwrap();
        let ceiling = ceiling("CEIL_PG_TPCB_TPS");
        let app: Arc<App<PgStore>> = Arc::new(books("postgres", &url, dir.path(), &plan).await);
        spends("postgres", &app, &plan, ceiling.map(|c| ("pg_tpcb", c))).await;
        app.store().close().await;
        count_postgres(&mut pg.admin, &name, &url, dir.path(), &plan).await;
        pg.drop_database().await;
    }
}

/// What one run does.
struct Plan {
    /// Customer accounts, each funded by one adjustment.
    accounts: i64,
    /// Bulk spends per account, so transfers = accounts × (1 + this).
    spends_per_account: i64,
    /// Each caller's untimed warm-up before a run.
    warm: Budget,
    /// Each caller's timed run.
    run: Budget,
    /// Sequential spends whose statements are counted.
    counted: u64,
    /// Concurrent callers of the spend runs.
    callers: usize,
}

impl Plan {
    fn transfers(&self) -> i64 {
        self.accounts * (1 + self.spends_per_account)
    }
}

/// How long each caller spends.
#[derive(Clone, Copy)]
enum Budget {
    Time(Duration),
    Count(u64),
}

fn ceiling(var: &str) -> Option<f64> {
    std::env::var(var).ok().and_then(|v| v.parse().ok())
}

/// Initialises the database, loads the books in bulk, and times `ledger check` over them, in
/// process and as its own process.
async fn books<S: Store>(backend: &str, url: &str, dir: &Path, plan: &Plan) -> App<S> {
    app::init(&settings(url, dir), SystemClock::shared(), &Actor::system())
        .await
        .unwrap();
    let app: App<S> = open(url, dir).await;
    let start = Instant::now();
    load(&app.store().db_pool(), url, plan).await;
    println!(
        "{backend}_bulk_load_s {:.1} ({} transfers, {} accounts)",
        start.elapsed().as_secs_f64(),
        plan.transfers(),
        plan.accounts
    );
    let start = Instant::now();
    let report = app.services().ledger().check().await.unwrap();
    let check = start.elapsed().as_secs_f64();
    assert!(
        report.discrepancy.is_none(),
        "the loaded books hold: {:?}",
        report.discrepancy
    );
    assert_eq!(report.transfers, plan.transfers());
    assert_eq!(report.entries, 2 * plan.transfers());
    println!(
        "{backend}_check_s {check:.2} ({} transfers, {} entries, {} accounts)",
        report.transfers, report.entries, report.accounts
    );
    match check_process(url, dir) {
        Some((seconds, kib)) => println!(
            "{backend}_check_process_s {seconds:.2} max_rss_mib {:.1}",
            kib as f64 / 1024.0
        ),
        None => println!("{backend}_check_process unmeasured (no /usr/bin/time)"),
    }
    app
}

/// Runs `tender ledger check` against the database under `/usr/bin/time -v`: its wall time
/// and maximum resident set size in KiB.
fn check_process(url: &str, dir: &Path) -> Option<(f64, u64)> {
    let time = Path::new("/usr/bin/time");
    if !time.exists() {
        return None;
    }
    let start = Instant::now();
    let out = Command::new(time)
        .arg("-v")
        .arg(env!("CARGO_BIN_EXE_tender"))
        .args(["ledger", "check"])
        .env("TENDER_DATABASE_URL", url)
        .env("TENDER_DATA_DIR", dir)
        .output()
        .expect("tender runs");
    let seconds = start.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.starts_with("ledger balanced"),
        "tender ledger check passes: {stdout}{stderr}"
    );
    let kib = stderr
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes): ")
        })
        .and_then(|v| v.parse().ok())
        .expect("time -v reports the maximum resident set size");
    Some((seconds, kib))
}

/// Loads the books in one transaction: account `a` (1 to `accounts`) funded by adjustment
/// transfer `a`, then spend `j` (from 0) of 1.00 from account `j % accounts + 1`, its
/// `j / accounts + 1`-th, as transfer `accounts + 1 + j` with order `bulk-j`. Every balance,
/// balance-after and refundable remainder follows, so `ledger check` finds nothing.
async fn load(pool: &DbPool, url: &str, plan: &Plan) {
    let (a, s) = (plan.accounts, plan.accounts * plan.spends_per_account);
    let (f, p) = (FUND_MINOR, BULK_SPEND_MINOR);
    let balance = f - plan.spends_per_account * p;
    let postgres = matches!(pool, DbPool::Postgres(_));
    // Identity columns take given values only when told to; the series is the server's own
    // on PostgreSQL and a recursive CTE on SQLite.
    let over = if postgres {
        "OVERRIDING SYSTEM VALUE"
    } else {
        ""
    };
    let series = |n: i64| {
        if postgres {
            (
                String::new(),
                format!("generate_series(0, {n} - 1) AS s(j)"),
            )
        } else {
            (
                format!(
                    "WITH RECURSIVE s(j) AS (SELECT 0 UNION ALL SELECT j + 1 FROM s WHERE j + 1 < {n}) "
                ),
                "s".to_string(),
            )
        }
    };
    let ((with_a, from_a), (with_s, from_s)) = (series(a), series(s));
    let legs = "CROSS JOIN (SELECT 0 AS leg UNION ALL SELECT 1) l";
    let statements = [
        format!(
            "{with_a}INSERT INTO account (account_id, region, currency, balance_minor, created_at) \
             {over} SELECT j + 1, 'US', 'USD', {balance}, $1 FROM {from_a}"
        ),
        format!(
            "{with_a}INSERT INTO transfer (transfer_id, kind, currency, reference, effective_at, \
             recorded_at, effective_ms, recorded_ms) {over} \
             SELECT j + 1, 'adjustment', 'USD', NULL, $1, $1, $2, $2 FROM {from_a}"
        ),
        format!(
            "{with_a}INSERT INTO entry (transfer_id, leg, ledger_account, account_id, amount_minor, \
             balance_after) \
             SELECT j + 1, leg, CASE leg WHEN 0 THEN 'adjustment' ELSE 'customer:' || (j + 1) END, \
             CASE leg WHEN 1 THEN j + 1 END, CASE leg WHEN 0 THEN -{f} ELSE {f} END, \
             CASE leg WHEN 1 THEN {f} END FROM {from_a} {legs} ORDER BY j, leg"
        ),
        format!(
            "{with_a}INSERT INTO adjustment (adjustment_id, account_id, amount_minor, currency, \
             reason, state, requested_by, decided_by, transfer_id, requested_at, decided_at) \
             {over} SELECT j + 1, j + 1, {f}, 'USD', 'goodwill', 'posted', 'cli:bench', \
             'cli:bench', j + 1, $1, $1 FROM {from_a}"
        ),
        format!(
            "{with_s}INSERT INTO transfer (transfer_id, kind, currency, reference, effective_at, \
             recorded_at, effective_ms, recorded_ms) {over} \
             SELECT {a} + 1 + j, 'spend', 'USD', 'bulk-' || j, $1, $1, $2, $2 FROM {from_s}"
        ),
        format!(
            "{with_s}INSERT INTO entry (transfer_id, leg, ledger_account, account_id, amount_minor, \
             balance_after) \
             SELECT {a} + 1 + j, leg, \
             CASE leg WHEN 0 THEN 'customer:' || (j % {a} + 1) ELSE 'spent:{SERVICE}' END, \
             CASE leg WHEN 0 THEN j % {a} + 1 END, CASE leg WHEN 0 THEN -{p} ELSE {p} END, \
             CASE leg WHEN 0 THEN {f} - (j / {a} + 1) * {p} END FROM {from_s} {legs} ORDER BY j, leg"
        ),
        format!(
            "{with_s}INSERT INTO spend_order (account_id, order_ref, service, amount_minor, \
             refundable_minor, transfer_id) \
             SELECT j % {a} + 1, 'bulk-' || j, '{SERVICE}', {p}, {p}, {a} + 1 + j FROM {from_s}"
        ),
    ];
    let at = SystemClock.now();
    let ms = at.timestamp_millis();
    match pool {
        DbPool::Sqlite(pool) => {
            let mut tx = pool.begin().await.unwrap();
            for sql in statements {
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(at)
                    .bind(ms)
                    .execute(&mut *tx)
                    .await
                    .unwrap();
            }
            tx.commit().await.unwrap();
            // As after any large write: the WAL folded into the database file.
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(pool)
                .await
                .unwrap();
        }
        DbPool::Postgres(_) => {
            // A connection of its own: the rows are consistent by construction, so a superuser
            // skips the foreign key triggers (2 per entry and order) for the load.
            let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
            let replica = conn
                .execute("SET session_replication_role = replica")
                .await
                .is_ok();
            let mut tx = conn.begin().await.unwrap();
            for sql in statements {
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(at)
                    .bind(ms)
                    .execute(&mut *tx)
                    .await
                    .unwrap();
            }
            for (table, column) in [
                ("account", "account_id"),
                ("transfer", "transfer_id"),
                ("adjustment", "adjustment_id"),
            ] {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT setval(pg_get_serial_sequence('{table}', '{column}'), \
                     (SELECT max({column}) FROM {table}))"
                )))
                .execute(&mut *tx)
                .await
                .unwrap();
            }
            tx.commit().await.unwrap();
            if replica {
                conn.execute("SET session_replication_role = origin")
                    .await
                    .unwrap();
            }
            // As autovacuum would leave it: statistics, visibility map and hint bits set.
            conn.execute("VACUUM ANALYZE").await.unwrap();
            conn.close().await.unwrap();
        }
    }
}

/// The spend runs: spread, then hot; then `ledger check` must still pass.
async fn spends<S: Store>(
    backend: &str,
    app: &Arc<App<S>>,
    plan: &Plan,
    ceiling: Option<(&str, f64)>,
) {
    let mut spent = 0;
    for hot in [false, true] {
        let shape = if hot { "hot" } else { "spread" };
        run_spends(app, plan, hot, &format!("{shape}-warm"), plan.warm).await;
        let before = COUNTS.snapshot();
        let run = run_spends(app, plan, hot, shape, plan.run).await;
        let after = COUNTS.snapshot();
        let rate = run.done as f64 / run.seconds;
        let name = format!("{backend}_{shape}");
        println!(
            "{name}_spends_per_s {rate:.0} ({} spends in {:.2} s, {} callers)",
            run.done, run.seconds, plan.callers
        );
        if let Some((ceiling, value)) = ceiling {
            println!("{name}_ratio_to_{ceiling}_tps {:.2}", rate / value);
        }
        println!(
            "{name}_latency_ms p50 {:.2} p99 {:.2} p99.9 {:.2} max {:.2}",
            run.percentile(0.50),
            run.percentile(0.99),
            run.percentile(0.999),
            run.percentile(1.0)
        );
        println!(
            "{name}_failed_spends {} database_errors {} reruns {}",
            run.failed.values().sum::<u64>(),
            after.db_errors - before.db_errors,
            after.reruns - before.reruns
        );
        for (code, n) in &run.failed {
            println!("{name}_failed {code} {n}");
        }
        spent += run.done + run.warm_done;
    }
    let start = Instant::now();
    let report = app.services().ledger().check().await.unwrap();
    assert!(
        report.discrepancy.is_none(),
        "the books hold after the runs: {:?}",
        report.discrepancy
    );
    let transfers = plan.transfers() + i64::try_from(spent).unwrap();
    assert!(report.transfers >= transfers);
    println!(
        "{backend}_check_after_spends_s {:.2} ({} transfers, no discrepancy)",
        start.elapsed().as_secs_f64(),
        report.transfers
    );
    let errors = COUNTS.errors.lock().unwrap();
    for error in errors.iter() {
        println!("{backend}_database_error_seen {error}");
    }
}

/// What one spend run did.
struct Run {
    done: u64,
    warm_done: u64,
    seconds: f64,
    latencies_us: Vec<u64>,
    failed: BTreeMap<&'static str, u64>,
}

impl Run {
    /// A latency percentile in milliseconds.
    fn percentile(&self, q: f64) -> f64 {
        count::percentile_ms(&self.latencies_us, q)
    }
}

/// `plan.callers` tasks spending for `budget`, each with its own order ids (`tag-caller-i`).
async fn run_spends<S: Store>(
    app: &Arc<App<S>>,
    plan: &Plan,
    hot: bool,
    tag: &str,
    budget: Budget,
) -> Run {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for caller in 0..plan.callers {
        let app = Arc::clone(app);
        let tag = tag.to_string();
        let accounts = plan.accounts;
        tasks.push(tokio::spawn(async move {
            let actor = Actor::cli("bench", None).unwrap();
            // xorshift64, a different stream per caller.
            let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ ((caller as u64 + 1) << 17);
            let mut latencies = Vec::new();
            let mut failed: BTreeMap<&'static str, u64> = BTreeMap::new();
            for i in 0u64.. {
                let more = match budget {
                    Budget::Time(d) => start.elapsed() < d,
                    Budget::Count(n) => i < n,
                };
                if !more {
                    break;
                }
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let account = if hot {
                    1
                } else {
                    i64::try_from(x % u64::try_from(accounts).unwrap()).unwrap() + 1
                };
                let form = SpendForm {
                    account: account.to_string(),
                    amount: SPEND_AMOUNT.into(),
                    currency: "USD".into(),
                    order: format!("{tag}-{caller}-{i}"),
                    service: SERVICE.into(),
                    effective_at: None,
                };
                let began = Instant::now();
                match app.services().ledger().spend(&form, &actor).await {
                    Ok(posted) => {
                        assert!(!posted.replayed, "every order id is new");
                        latencies.push(u64::try_from(began.elapsed().as_micros()).unwrap());
                    }
                    Err(e) => *failed.entry(e.code()).or_default() += 1,
                }
            }
            (latencies, failed)
        }));
    }
    let mut run = Run {
        done: 0,
        warm_done: 0,
        seconds: 0.0,
        latencies_us: Vec::new(),
        failed: BTreeMap::new(),
    };
    for task in tasks {
        let (latencies, failed) = task.await.unwrap();
        run.latencies_us.extend(latencies);
        for (code, n) in failed {
            *run.failed.entry(code).or_default() += n;
        }
    }
    // The last spend to finish ends the run.
    run.seconds = start.elapsed().as_secs_f64();
    run.done = run.latencies_us.len() as u64;
    run.latencies_us.sort_unstable();
    run
}

/// `plan.counted` sequential spends on `app`, one caller, each with its own order id.
async fn spend_counted<S: Store>(app: &App<S>, plan: &Plan, tag: &str) {
    let actor = Actor::cli("bench", None).unwrap();
    let accounts = u64::try_from(plan.accounts).unwrap();
    for i in 0..plan.counted {
        let form = SpendForm {
            account: (i % accounts + 1).to_string(),
            amount: SPEND_AMOUNT.into(),
            currency: "USD".into(),
            order: format!("{tag}-{i}"),
            service: SERVICE.into(),
            effective_at: None,
        };
        let posted = app.services().ledger().spend(&form, &actor).await.unwrap();
        assert!(!posted.replayed);
    }
}

/// SQLite: the statements counted in process, on a fresh App.
async fn count_sqlite(url: &str, dir: &Path, plan: &Plan) {
    let app: App<SqliteStore> = open(url, dir).await;
    let statements = count::counted(&app, async |app| {
        spend_counted(app, plan, "sqlite-counted").await
    })
    .await;
    app.store().close().await;
    count::print_in_process("sqlite", "spend", &statements, plan.counted);
}

/// PostgreSQL: the server's statement log, the round trips and the in-process count over the
/// same sequential spends on a fresh App.
async fn count_postgres(
    admin: &mut sqlx::PgConnection,
    name: &str,
    url: &str,
    dir: &Path,
    plan: &Plan,
) {
    count::count_postgres(admin, name, url, dir, "spend", plan.counted, async |app| {
        spend_counted(app, plan, "postgres-counted").await
    })
    .await;
}
