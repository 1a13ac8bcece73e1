//! Trade-in import figures:
//! `cargo bench --bench tradein -- [rows] [sqlite|postgres|all|none] [post seconds] [memory rows]`.
//!
//! Each backend gets one scratch database (SQLite as tender runs it, `synchronous=FULL`, in a
//! temporary data dir; PostgreSQL: TENDER_TEST_PG_URL, default
//! postgres://postgres@127.0.0.1:5432/postgres, a database created and dropped here), made by
//! `app::init` as `tender init` makes it, with 1,000 US/USD accounts and a daily amount of
//! 100,000,000 (the most the setting takes), so that no credit is held. A CSV file of `rows`
//! (default 100,000) valuations is written to a temporary dir: unique trade-in ids, unique
//! valid devices (IMEIs with their Luhn check digit and 12-character serials, in turns), the
//! accounts in turn, ten warehouses, values from 50.00 to 499.99, every optional column.
//!
//! 1. Where the time goes, first (it warms the database up too): statements per imported row
//!    and per posted valuation, and the time sqlx measured for each, over a 2,000-row file of
//!    its own; on PostgreSQL also from the server's statement log and a counting relay.
//! 2. Import: `services().trade_ins().import` of the file, end to end (read, stage, repeats
//!    found in SQL, applied a page per transaction, ended): rows per second. On SQLite the
//!    import runs in its own process (this binary run again) so that its peak memory is its
//!    own: VmHWM read from /proc/self/status just before it exits (and, where /usr/bin/time
//!    is, the maximum resident set size the kernel reports for the child).
//! 3. Posting: `post_queued` (one worker, as the post-trade-ins job runs it) over what the
//!    import queued, for `post seconds` (default 15; 0 posts every valuation): valuations per
//!    second, counted as the valuations of the file in state `posted` when the time is up (the
//!    transaction in flight is dropped). With CEIL_PG_TPCB_TPS and CEIL_SQLITE_REDEEM_FULL_TPS
//!    in the environment (from `../shared/bench/ceilings`), also the ratio to them, the
//!    ceilings benches/redeem.rs gives its redemptions against. `ledger check` must pass.
//! 4. The raw-load ceiling, in the same run: the same rows (device digests made beforehand)
//!    into a copy of `trade_in` (its columns, checks, keys, indexes and foreign keys):
//!    PostgreSQL `COPY … FROM STDIN` (sqlx `copy_in_raw`, CSV), SQLite one transaction of
//!    1,000-row INSERTs. Import rows/s ÷ raw rows/s is the ratio (goal ≥ 0.5). The same again
//!    without the foreign keys, a second ratio.
//! 5. With `memory rows` (such as 1000000), the SQLite import's peak memory over a file of
//!    that many rows, in a fresh data dir, beside the figure of 2: flat means about the same.
//!
//! Database errors logged by tender and units of work run again are counted and printed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use rand_core::{OsRng, TryRngCore};
use sha2::Sha256;
use sqlx::QueryBuilder;
use tender::app::{self, App};
use tender::clock::{Clock, SystemClock};
use tender::config::{Settings, TradeInDailyAmount};
use tender::domain::Actor;
use tender::keys::KeyNeeds;
use tender::service::ledger::AccountForm;
use tender::store::{DbPool, PgStore, SqliteStore, Store};
use tracing_subscriber::layer::SubscriberExt;

// Its load average is not printed here.
#[allow(dead_code)]
#[path = "support/child.rs"]
mod child;
// Its latency percentiles are not used here: the figures are rates over whole files.
#[allow(dead_code)]
#[path = "support/count.rs"]
mod count;
mod support;

use child::{Memory, mib, run_self, status_kib};
use count::{COUNTS, Counter};
use support::ScratchPg;

/// Accounts the rows credit, in turn.
const ACCOUNTS: usize = 1_000;
/// Warehouses the rows come from, in turn.
const WAREHOUSES: u64 = 10;
/// Warehouses of the counted file, in turn: few rows each, so that its credits stay under the
/// default daily amount of the app `count_postgres` opens.
const COUNTED_WAREHOUSES: u64 = 400;
/// The daily amount: the setting's most, so nothing waits for finance.
const DAILY_AMOUNT: &str = "100000000";
/// Where the counted file's ids and devices start, past any main or memory file's.
const COUNTED_FIRST: u64 = 10_000_000;
/// Rows per raw INSERT on SQLite: 16 parameters each, under SQLite's 32,766.
const RAW_ROWS_PER_STATEMENT: usize = 1_000;
/// The child's environment: the data dir and the file to import.
const CHILD_DIR: &str = "TENDER_BENCH_TRADEIN_CHILD_DIR";
const CHILD_FILE: &str = "TENDER_BENCH_TRADEIN_CHILD_FILE";
const MODELS: [&str; 5] = [
    "iPhone 13 128GB",
    "iPhone 15 Pro 256GB",
    "Galaxy S23 128GB",
    "Pixel 8 128GB",
    "iPad Air 64GB",
];
const GRADES: [&str; 5] = ["like_new", "good", "fair", "poor", "faulty"];
const HEADER: &str = "trade_in_id,account_id,warehouse_id,device_model,device_id,grade,value,\
                      currency,assessed_at,revaluation,region";

#[tokio::main]
async fn main() {
    if let (Ok(dir), Ok(file)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_FILE)) {
        child(Path::new(&dir), Path::new(&file)).await;
        return;
    }
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Counter))
        .expect("no other subscriber");
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it, and
    // then a small smoke run keeps the code exercised in a few seconds.
    let measuring = std::env::args().any(|a| a == "--bench");
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let rows: u64 = args
        .first()
        .and_then(|a| a.parse().ok())
        .unwrap_or(if measuring { 100_000 } else { 300 });
    let which = args.get(1).cloned().unwrap_or_else(|| "all".into());
    let post_seconds: f64 = args
        .get(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(if measuring { 15.0 } else { 0.0 });
    let plan = Plan {
        rows,
        counted_rows: if measuring { 2_000 } else { 40 },
        post_budget: (post_seconds > 0.0).then(|| Duration::from_secs_f64(post_seconds)),
        memory_rows: args.get(3).and_then(|a| a.parse().ok()).unwrap_or(0),
    };
    let command =
        |backend: &str| format!("cargo bench --bench tradein -- {rows} {backend} {post_seconds}");
    let files = tempfile::tempdir().unwrap();
    let mut sqlite_peak = None;
    if which == "all" || which == "sqlite" {
        sqlite_peak = Some(sqlite(&plan, files.path(), &command("sqlite")).await);
    }
    if which == "all" || which == "postgres" {
        postgres(&plan, files.path(), &command("postgres")).await;
    }
    if plan.memory_rows > 0 {
        memory(
            plan.memory_rows,
            files.path(),
            sqlite_peak.map(|p| (rows, p)),
        )
        .await;
    } else {
        println!(
            "sqlite_import_peak_memory_large unmeasured (give the file's rows: cargo bench --bench tradein -- 0 none 0 1000000)"
        );
    }
    let errors = COUNTS.errors.lock().unwrap();
    let now = COUNTS.snapshot();
    println!(
        "database_errors {} reruns {} (in all, logged by tender)",
        now.db_errors, now.reruns
    );
    for error in errors.iter() {
        println!("database_error_seen {error}");
    }
}

/// What one run does.
struct Plan {
    /// Rows of the main file.
    rows: u64,
    /// Rows of the file whose statements are counted.
    counted_rows: u64,
    /// How long the main posting runs; `None`: until every valuation is posted.
    post_budget: Option<Duration>,
    /// Rows of the file whose import's peak memory is measured; 0: none.
    memory_rows: u64,
}

/// One generated row: its CSV fields and what the raw load stores.
struct GenRow {
    trade_in_ref: String,
    account_id: i64,
    warehouse_id: String,
    model: &'static str,
    device: String,
    grade: &'static str,
    value_minor: i64,
    assessed_at: String,
}

/// Row `i` of a file whose first id is `first`, crediting `accounts` in turn, from `warehouses`
/// warehouses in turn (named with `prefix`).
fn gen_row(i: u64, first: u64, accounts: &[i64], prefix: &str, warehouses: u64) -> GenRow {
    let n = first + i;
    let device = if n.is_multiple_of(2) {
        let body = format!("35{n:012}");
        let check = luhn_check_digit(body.as_bytes());
        format!("{body}{check}")
    } else {
        format!("C{n:011}")
    };
    let second = n % 86_400;
    GenRow {
        trade_in_ref: format!("TI-{n:09}"),
        account_id: accounts[(i % accounts.len() as u64) as usize],
        warehouse_id: format!("{prefix}-{}", i % warehouses),
        model: MODELS[(n % MODELS.len() as u64) as usize],
        device,
        grade: GRADES[(n / 7 % GRADES.len() as u64) as usize],
        value_minor: 5_000 + i64::try_from(n * 7_919 % 45_000).unwrap(),
        assessed_at: format!(
            "2026-03-01T{:02}:{:02}:{:02}Z",
            second / 3_600,
            second / 60 % 60,
            second % 60
        ),
    }
}

/// The digit that makes `body` (ASCII digits) pass the Luhn check once appended.
fn luhn_check_digit(body: &[u8]) -> u32 {
    let sum: u32 = body
        .iter()
        .rev()
        .enumerate()
        .map(|(k, b)| {
            let d = u32::from(b - b'0');
            if k % 2 == 0 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    (10 - sum % 10) % 10
}

/// Writes `rows` rows (see [`gen_row`]) to `path`, streaming.
fn write_file(path: &Path, rows: u64, first: u64, accounts: &[i64], prefix: &str, warehouses: u64) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(out, "{HEADER}").unwrap();
    for i in 0..rows {
        let r = gen_row(i, first, accounts, prefix, warehouses);
        writeln!(
            out,
            "{},{},{},{},{},{},{}.{:02},USD,{},,US",
            r.trade_in_ref,
            r.account_id,
            r.warehouse_id,
            r.model,
            r.device,
            r.grade,
            r.value_minor / 100,
            r.value_minor % 100,
            r.assessed_at
        )
        .unwrap();
    }
    out.into_inner().unwrap().sync_all().unwrap();
}

fn settings(url: &str, dir: &Path) -> Settings {
    Settings {
        database_url: Some(url.to_string()),
        tradein_daily_amount: TradeInDailyAmount::parse(DAILY_AMOUNT).unwrap(),
        ..Settings::in_dir(dir)
    }
}

async fn open<S: Store>(url: &str, dir: &Path) -> App<S> {
    App::open(&settings(url, dir), SystemClock::shared(), KeyNeeds::ALL)
        .await
        .unwrap()
}

fn actor() -> Actor {
    Actor::cli("bench", None).unwrap()
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("tender.db").display())
}

/// Initialises the database as `tender init` does and opens [`ACCOUNTS`] accounts: their ids.
async fn setup<S: Store>(url: &str, dir: &Path) -> (App<S>, Vec<i64>) {
    app::init(&settings(url, dir), SystemClock::shared(), &Actor::system())
        .await
        .unwrap();
    let app: App<S> = open(url, dir).await;
    let mut ids = Vec::with_capacity(ACCOUNTS);
    for _ in 0..ACCOUNTS {
        let form = AccountForm {
            region: "US".into(),
            currency: "USD".into(),
            external_id: None,
        };
        let account = app
            .services()
            .ledger()
            .create_account(&form, &actor())
            .await
            .unwrap();
        ids.push(account.id.0);
    }
    (app, ids)
}

/// Imports `path` through the service; the seconds it took and the upload's id.
async fn import<S: Store>(app: &App<S>, path: &Path, rows: u64) -> (f64, i64) {
    let source = std::fs::File::open(path).unwrap();
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let start = Instant::now();
    let report = app
        .services()
        .trade_ins()
        .import(source, name.as_deref(), &actor())
        .await
        .unwrap();
    let seconds = start.elapsed().as_secs_f64();
    let counts = report.file.rows;
    assert!(
        !report.repeated && counts.accepted == i64::try_from(rows).unwrap() && counts.rejected == 0,
        "every row is accepted: {counts:?} {:?}",
        report.file.error
    );
    (seconds, report.file.file_id)
}

/// Posts what is queued, every valuation: the seconds it took.
async fn post<S: Store>(app: &App<S>, rows: u64) -> f64 {
    let start = Instant::now();
    let run = app
        .services()
        .trade_ins()
        .post_queued(&actor())
        .await
        .unwrap();
    let seconds = start.elapsed().as_secs_f64();
    assert_eq!(
        (run.posted, run.held),
        (rows, 0),
        "every valuation is posted, none held"
    );
    seconds
}

/// Posts what upload `file_id` queued for `budget` (all of it when `None`): how many were
/// posted in how many seconds. When the time is up the posting is dropped with the
/// transaction in flight, and the app's pool is closed, so that nothing of it lingers.
async fn post_for<S: Store>(
    app: &App<S>,
    file_id: i64,
    rows: u64,
    budget: Option<Duration>,
) -> (u64, f64) {
    let start = Instant::now();
    let (trade_ins, actor) = (app.services().trade_ins(), actor());
    let posting = trade_ins.post_queued(&actor);
    let done = match budget {
        Some(budget) => tokio::time::timeout(budget, posting).await.ok(),
        None => Some(posting.await),
    };
    let seconds = start.elapsed().as_secs_f64();
    if let Some(run) = done {
        let run = run.unwrap();
        assert_eq!(
            (run.posted, run.held),
            (rows, 0),
            "every valuation is posted, none held"
        );
        return (run.posted, seconds);
    }
    app.store().close().await;
    let sql = "SELECT COUNT(*) FILTER (WHERE state = 'posted'), \
               COUNT(*) FILTER (WHERE state = 'held') FROM trade_in WHERE file_id = $1";
    let (posted, held): (i64, i64) = match app.store().db_pool() {
        DbPool::Sqlite(_) => {
            let url = app.settings().database_url();
            let mut c = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
                .await
                .unwrap();
            sqlx::query_as(sql)
                .bind(file_id)
                .fetch_one(&mut c)
                .await
                .unwrap()
        }
        DbPool::Postgres(_) => {
            let url = app.settings().database_url();
            let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
                .await
                .unwrap();
            sqlx::query_as(sql)
                .bind(file_id)
                .fetch_one(&mut c)
                .await
                .unwrap()
        }
    };
    assert_eq!(held, 0, "none held");
    (u64::try_from(posted).unwrap(), seconds)
}

/// `ledger check` over what the posting wrote.
async fn check<S: Store>(backend: &str, app: &App<S>) {
    let start = Instant::now();
    let report = app.services().ledger().check().await.unwrap();
    assert!(
        report.discrepancy.is_none(),
        "the books hold: {:?}",
        report.discrepancy
    );
    println!(
        "{backend}_check_after_s {:.2} ({} transfers, {} entries, no discrepancy)",
        start.elapsed().as_secs_f64(),
        report.transfers,
        report.entries
    );
}

fn ceiling(var: &str) -> Option<f64> {
    std::env::var(var).ok().and_then(|v| v.parse().ok())
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

/// The figures of one backend's run.
struct Figures {
    rows: u64,
    import_s: f64,
    posted: u64,
    post_s: f64,
    /// The raw load into the copy with its foreign keys, and into the one without.
    raw_s: f64,
    raw_no_fk_s: f64,
}

fn report(backend: &str, f: &Figures, raw_how: &str, command: &str, post_ceiling: (&str, &str)) {
    let rows = f.rows as f64;
    let import = rows / f.import_s;
    let post = f.posted as f64 / f.post_s;
    println!(
        "{backend}_import_rows_per_s {import:.0} ({} rows in {:.2} s, TradeIns::import end to end) [{command}]",
        f.rows, f.import_s
    );
    println!(
        "{backend}_post_valuations_per_s {post:.0} ({} of the {} valuations in {:.2} s, post_queued, one worker) [{command}]",
        f.posted, f.rows, f.post_s
    );
    let (var, name) = post_ceiling;
    match ceiling(var) {
        Some(c) => println!(
            "{backend}_post_ratio_to_{name} {:.3} ({c:.0} TPS; benches/redeem.rs gives its redemptions/s against the same ceiling) [{command}]",
            post / c
        ),
        None => println!(
            "{backend}_post_ratio_to_{name} unmeasured (no {var}; compare {backend}_spread_redemptions_per_s of cargo bench --bench redeem -- 15 {backend})"
        ),
    }
    for (what, seconds) in [("", f.raw_s), ("_no_fk", f.raw_no_fk_s)] {
        let raw = rows / seconds;
        let how = if what.is_empty() {
            "with its foreign keys"
        } else {
            "without its foreign keys"
        };
        println!(
            "{backend}_raw_load{what}_rows_per_s {raw:.0} ({} rows in {seconds:.2} s, {raw_how} {how}) [{command}]",
            f.rows
        );
        let ratio = import / raw;
        println!(
            "{backend}_import_ratio_to_raw_load{what} {ratio:.3} (goal ≥ 0.5: {}) [{command}]",
            verdict(ratio >= 0.5)
        );
    }
}

/// Prints the machine's own ceiling for a bulk load, when measured, beside ours.
fn machine_ceiling(backend: &str, var: &str, raw_s: f64, rows: u64) {
    if let Some(c) = ceiling(var) {
        println!(
            "{backend}_raw_load_ratio_to_{} {:.2} ({c:.0} rows/s; the ceilings' card-shaped rows)",
            var.trim_start_matches("CEIL_").to_lowercase(),
            rows as f64 / raw_s / c
        );
    }
}

// ---- SQLite ----

/// The SQLite run; returns the import's peak memory (VmHWM, KiB).
async fn sqlite(plan: &Plan, files: &Path, command: &str) -> u64 {
    let rows = plan.rows;
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let (app, accounts) = setup::<SqliteStore>(&url, dir.path()).await;
    // Where the time goes: statements per row and per valuation over a file of their own.
    let path = files.join("sqlite-counted.csv");
    let n = plan.counted_rows;
    write_file(
        &path,
        n,
        COUNTED_FIRST,
        &accounts,
        "WHC",
        COUNTED_WAREHOUSES,
    );
    let imported = count::counted(&app, async |app| {
        import(app, &path, n).await;
    })
    .await;
    count::print_in_process("sqlite", "imported_row", &imported, n);
    let posted = count::counted(&app, async |app| {
        post(app, n).await;
    })
    .await;
    count::print_in_process("sqlite", "posted_valuation", &posted, n);
    app.store().close().await;
    // The import, in a process of its own.
    let path = files.join("sqlite.csv");
    write_file(&path, rows, 0, &accounts, "WH", WAREHOUSES);
    let child = run_child(dir.path(), &path);
    assert_eq!(child.accepted, rows, "every row is accepted in the child");
    std::fs::remove_file(&path).unwrap();
    let app: App<SqliteStore> = open(&url, dir.path()).await;
    let (posted, post_s) = post_for(&app, child.file_id, rows, plan.post_budget).await;
    app.store().close().await;
    let app: App<SqliteStore> = open(&url, dir.path()).await;
    check("sqlite", &app).await;
    let DbPool::Sqlite(pool) = app.store().db_pool() else {
        unreachable!("a SQLite app")
    };
    let raw = raw_rows(rows, &accounts);
    let raw_s = sqlite_raw(&pool, "raw_trade_in", true, &raw, child.file_id).await;
    let raw_no_fk_s = sqlite_raw(&pool, "raw_trade_in_no_fk", false, &raw, child.file_id).await;
    let figures = Figures {
        rows,
        import_s: child.seconds,
        posted,
        post_s,
        raw_s,
        raw_no_fk_s,
    };
    report(
        "sqlite",
        &figures,
        "one transaction of 1,000-row INSERTs into a copy of trade_in",
        command,
        ("CEIL_SQLITE_REDEEM_FULL_TPS", "sqlite_redeem_full_tps"),
    );
    machine_ceiling("sqlite", "CEIL_SQLITE_INSERT_ROWS_S", raw_no_fk_s, rows);
    child.print("sqlite", rows, command);
    app.store().close().await;
    child.memory.hwm_kib
}

/// The `CREATE` statements of `trade_in` and its indexes, for a copy named `table`.
async fn sqlite_raw_schema(pool: &sqlx::SqlitePool, table: &str) -> Vec<String> {
    let statements: Vec<String> = sqlx::query_scalar(
        "SELECT sql FROM sqlite_master WHERE tbl_name = 'trade_in' AND sql IS NOT NULL \
         ORDER BY type DESC",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    statements
        .into_iter()
        .map(|sql| {
            let sql = sql
                .replacen("trade_in", table, 1)
                .replace(" ON trade_in ", &format!(" ON {table} "));
            assert!(sql.contains(table), "renamed: {sql}");
            sql
        })
        .collect()
}

/// One transaction of multi-row INSERTs of `raw` into a copy of `trade_in` named `table`,
/// its foreign keys checked or not: seconds.
async fn sqlite_raw(
    pool: &sqlx::SqlitePool,
    table: &str,
    foreign_keys: bool,
    raw: &[RawRow],
    file_id: i64,
) -> f64 {
    for sql in sqlite_raw_schema(pool, table).await {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(pool)
            .await
            .unwrap();
    }
    let mut c = pool.acquire().await.unwrap();
    // Outside a transaction, where the setting takes; the pool's connections have it on.
    let set = |on: bool| sqlx::AssertSqlSafe(format!("PRAGMA foreign_keys = {}", i32::from(on)));
    sqlx::query(set(foreign_keys))
        .execute(&mut *c)
        .await
        .unwrap();
    let at = SystemClock.now();
    let start = Instant::now();
    let mut tx = sqlx::Connection::begin(&mut *c).await.unwrap();
    for part in raw.chunks(RAW_ROWS_PER_STATEMENT) {
        let mut insert = QueryBuilder::<sqlx::Sqlite>::new(format!(
            "INSERT INTO {table} (warehouse_id, trade_in_ref, account_id, currency, \
             value_minor, grade, assessed_at, device_key_id, device_digest, device_model, \
             device_id, state, submitted_by, file_id, created_at, updated_at) "
        ));
        insert.push_values(part, |mut b, (r, digest, assessed)| {
            b.push_bind(r.warehouse_id.as_str())
                .push_bind(r.trade_in_ref.as_str())
                .push_bind(r.account_id)
                .push_bind("USD")
                .push_bind(r.value_minor)
                .push_bind(r.grade)
                .push_bind(*assessed)
                .push_bind(1i16)
                .push_bind(&digest[..])
                .push_bind(r.model)
                .push_bind(r.device.as_str())
                .push_bind("queued")
                .push_bind("cli:bench")
                .push_bind(file_id)
                .push_bind(at)
                .push_bind(at);
        });
        insert.build().execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();
    let seconds = start.elapsed().as_secs_f64();
    sqlx::query(set(true)).execute(&mut *c).await.unwrap();
    let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
        .fetch_one(&mut *c)
        .await
        .unwrap();
    assert_eq!(n, i64::try_from(raw.len()).unwrap());
    seconds
}

/// A main-file row with its device digest and its parsed time.
type RawRow = (GenRow, [u8; 32], chrono::DateTime<chrono::Utc>);

/// The main file's rows with their device digests (under a random key, as the import's are
/// under the lookup key) and parsed times, made before any clock starts.
fn raw_rows(rows: u64, accounts: &[i64]) -> Vec<RawRow> {
    let mut key = [0u8; 32];
    OsRng.try_fill_bytes(&mut key).unwrap();
    let base = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    (0..rows)
        .map(|i| {
            let r = gen_row(i, 0, accounts, "WH", WAREHOUSES);
            let mut mac = base.clone();
            mac.update(r.device.as_bytes());
            let digest: [u8; 32] = mac.finalize().into_bytes().into();
            let assessed = chrono::DateTime::parse_from_rfc3339(&r.assessed_at)
                .unwrap()
                .to_utc();
            (r, digest, assessed)
        })
        .collect()
}

// ---- PostgreSQL ----

async fn postgres(plan: &Plan, files: &Path, command: &str) {
    let rows = plan.rows;
    let mut pg = ScratchPg::create("tradein").await;
    let (name, url) = (pg.name.clone(), pg.url.clone());
    let dir = tempfile::tempdir().unwrap();
    let (app, accounts) = setup::<PgStore>(&url, dir.path()).await;
    app.store().close().await;
    // Where the time goes: statements per row and per valuation over a file of their own.
    let path = files.join("postgres-counted.csv");
    let n = plan.counted_rows;
    write_file(
        &path,
        n,
        COUNTED_FIRST,
        &accounts,
        "WHC",
        COUNTED_WAREHOUSES,
    );
    count::count_postgres(
        &mut pg.admin,
        &name,
        &url,
        dir.path(),
        "imported_row",
        n,
        async |app| {
            import(app, &path, n).await;
        },
    )
    .await;
    count::count_postgres(
        &mut pg.admin,
        &name,
        &url,
        dir.path(),
        "posted_valuation",
        n,
        async |app| {
            post(app, n).await;
        },
    )
    .await;
    // The import and the posting, on a fresh pool.
    let app: App<PgStore> = open(&url, dir.path()).await;
    let path = files.join("postgres.csv");
    write_file(&path, rows, 0, &accounts, "WH", WAREHOUSES);
    let (import_s, file_id) = import(&app, &path, rows).await;
    std::fs::remove_file(&path).unwrap();
    let (posted, post_s) = post_for(&app, file_id, rows, plan.post_budget).await;
    app.store().close().await;
    let app: App<PgStore> = open(&url, dir.path()).await;
    check("postgres", &app).await;
    let DbPool::Postgres(pool) = app.store().db_pool() else {
        unreachable!("a PostgreSQL app")
    };
    let raw = raw_rows(rows, &accounts);
    let raw_s = postgres_raw(&pool, "raw_trade_in", true, &raw, file_id).await;
    let raw_no_fk_s = postgres_raw(&pool, "raw_trade_in_no_fk", false, &raw, file_id).await;
    let figures = Figures {
        rows,
        import_s,
        posted,
        post_s,
        raw_s,
        raw_no_fk_s,
    };
    report(
        "postgres",
        &figures,
        "COPY FROM STDIN (copy_in_raw, CSV) into a copy of trade_in",
        command,
        ("CEIL_PG_TPCB_TPS", "pg_tpcb_tps"),
    );
    machine_ceiling("postgres", "CEIL_PG_COPY_ROWS_S", raw_no_fk_s, rows);
    app.store().close().await;
    pg.drop_database().await;
}

/// `COPY … FROM STDIN` of `raw` into a copy of `trade_in` named `table` (its columns,
/// defaults, checks, keys and indexes, with its foreign keys added or not): seconds.
async fn postgres_raw(
    pool: &sqlx::PgPool,
    table: &str,
    foreign_keys: bool,
    raw: &[RawRow],
    file_id: i64,
) -> f64 {
    let mut schema = vec![format!(
        "CREATE TABLE {table} (LIKE trade_in INCLUDING ALL)"
    )];
    if foreign_keys {
        schema.push(format!(
            "ALTER TABLE {table} ADD FOREIGN KEY (account_id) REFERENCES account (account_id)"
        ));
        schema.push(format!(
            "ALTER TABLE {table} ADD FOREIGN KEY (file_id) REFERENCES trade_in_file (file_id) \
             ON DELETE SET NULL"
        ));
    }
    for sql in schema {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(pool)
            .await
            .unwrap();
    }
    let at = SystemClock.now().to_rfc3339();
    let mut data = String::with_capacity(raw.len() * 220);
    for (r, digest, _) in raw {
        data.push_str(&format!(
            "{},{},{},USD,{},{},{},1,\\x{},{},{},queued,cli:bench,{file_id},{at},{at}\n",
            r.warehouse_id,
            r.trade_in_ref,
            r.account_id,
            r.value_minor,
            r.grade,
            r.assessed_at,
            hex::encode(digest),
            r.model,
            r.device
        ));
    }
    let mut c = pool.acquire().await.unwrap();
    let start = Instant::now();
    let mut copy = c
        .copy_in_raw(&format!(
            "COPY {table} (warehouse_id, trade_in_ref, account_id, currency, value_minor, \
             grade, assessed_at, device_key_id, device_digest, device_model, device_id, state, \
             submitted_by, file_id, created_at, updated_at) FROM STDIN WITH (FORMAT csv)"
        ))
        .await
        .unwrap();
    for part in data.as_bytes().chunks(1 << 20) {
        copy.send(part).await.unwrap();
    }
    let copied = copy.finish().await.unwrap();
    let seconds = start.elapsed().as_secs_f64();
    assert_eq!(copied, raw.len() as u64);
    seconds
}

// ---- Peak memory ----

/// What the importing child reported.
struct ChildReport {
    seconds: f64,
    accepted: u64,
    file_id: i64,
    /// Its memory.
    memory: Memory,
}

impl ChildReport {
    fn print(&self, backend: &str, rows: u64, command: &str) {
        println!(
            "{backend}_import_peak_memory_mib {:.1} for {rows} rows (VmHWM of the importing process just before exit; {}) [{command}]",
            mib(self.memory.hwm_kib),
            self.memory.detail()
        );
    }
}

/// This binary run again to import `file` into the SQLite data dir `dir`, under
/// /usr/bin/time -v where there is one.
fn run_child(dir: &Path, file: &Path) -> ChildReport {
    let child = run_self(
        [(CHILD_DIR, dir.as_os_str()), (CHILD_FILE, file.as_os_str())],
        "the importing child succeeds",
    );
    let field = |k: &str| child.field(k);
    ChildReport {
        seconds: field("seconds"),
        accepted: field("accepted") as u64,
        file_id: field("file_id") as i64,
        memory: Memory::of(&child),
    }
}

/// The child: opens the SQLite app in `dir`, imports `file`, and reports on one line.
async fn child(dir: &Path, file: &Path) {
    let url = sqlite_url(dir);
    let app: App<SqliteStore> = open(&url, dir).await;
    let open_kib = status_kib("VmHWM");
    let source = std::fs::File::open(file).unwrap();
    let start = Instant::now();
    let report = app
        .services()
        .trade_ins()
        .import(source, Some("bench.csv"), &actor())
        .await
        .unwrap();
    let seconds = start.elapsed().as_secs_f64();
    app.store().close().await;
    assert_eq!(report.file.rows.rejected, 0, "{:?}", report.file);
    println!(
        "child seconds={seconds} accepted={} file_id={} {}",
        report.file.rows.accepted,
        report.file.file_id,
        Memory::fields(open_kib)
    );
}

/// The SQLite import's peak memory over a file of `rows` rows, in a fresh data dir, beside the
/// main run's (`main`: its rows and VmHWM).
async fn memory(rows: u64, files: &Path, main: Option<(u64, u64)>) {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let (app, accounts) = setup::<SqliteStore>(&url, dir.path()).await;
    app.store().close().await;
    let path: PathBuf = files.join("memory.csv");
    let start = Instant::now();
    write_file(&path, rows, 0, &accounts, "WH", WAREHOUSES);
    let bytes = std::fs::metadata(&path).unwrap().len();
    println!(
        "sqlite_memory_file {rows} rows, {:.1} MiB, written in {:.1} s",
        bytes as f64 / 1048576.0,
        start.elapsed().as_secs_f64()
    );
    let child = run_child(dir.path(), &path);
    assert_eq!(child.accepted, rows, "every row is accepted in the child");
    let command = format!("cargo bench --bench tradein -- 0 none 0 {rows}");
    println!(
        "sqlite_import_large_rows_per_s {:.0} ({rows} rows in {:.1} s) [{command}]",
        rows as f64 / child.seconds,
        child.seconds
    );
    child.print("sqlite_large", rows, &command);
    let peak = mib(child.memory.hwm_kib);
    println!(
        "sqlite_import_peak_memory_goal {peak:.1} MiB for {rows} rows (goal < 64 MiB: {}){}",
        verdict(peak < 64.0),
        main.map(|(n, kib)| format!(
            "; {:.1} MiB for {n} rows: {:.2}× the rows take {:.2}× the memory",
            mib(kib),
            rows as f64 / n as f64,
            peak / mib(kib)
        ))
        .unwrap_or_default()
    );
    std::fs::remove_file(&path).unwrap();
}
