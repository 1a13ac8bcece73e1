//! What a unit of work costs in statements, for the benches that count them (ledger, cards):
//! sqlx's per-statement events counted in process, tender's database errors and reruns, the
//! statements PostgreSQL logs (`log_statement = 'all'` on the scratch database only;
//! pg_stat_statements when it is preloaded is not assumed), and the round trips through a
//! counting TCP relay. Included by path, so benches that count nothing do not compile it.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tender::app::App;
use tender::clock::SystemClock;
use tender::config::Settings;
use tender::keys::KeyNeeds;
use tender::store::{PgStore, Store};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::field::{Field, Visit};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// What sqlx ran while counting, by the start of each statement's SQL.
#[derive(Default)]
pub struct Counted {
    /// How many times each statement ran.
    pub counts: BTreeMap<String, u64>,
    /// The seconds sqlx reports for each, summed: from sending it to reading its last row.
    pub secs: BTreeMap<String, f64>,
}

/// Runs `work` (units of it one after another on `app`) with sqlx's statement events counted
/// and timed. No unit of work may run twice, or the count would be of two attempts.
pub async fn counted<S: Store>(app: &App<S>, work: impl AsyncFnOnce(&App<S>)) -> Counted {
    let before = COUNTS.snapshot();
    COUNTS.statements.lock().unwrap().clear();
    COUNTS.statement_secs.lock().unwrap().clear();
    COUNTING.store(true, Ordering::SeqCst);
    work(app).await;
    COUNTING.store(false, Ordering::SeqCst);
    let after = COUNTS.snapshot();
    assert_eq!(after.reruns, before.reruns, "no unit of work ran twice");
    Counted {
        counts: std::mem::take(&mut *COUNTS.statements.lock().unwrap()),
        secs: std::mem::take(&mut *COUNTS.statement_secs.lock().unwrap()),
    }
}

/// The statements counted in process, per `noun` (`n` of them). sqlx reports each statement it
/// runs for tender and, on PostgreSQL, the COMMIT; not the BEGIN, nor (on SQLite) the COMMIT.
/// A new SQLite connection's setup (PRAGMA …) and a ROLLBACK sqlx owes from before are counted
/// apart.
pub fn print_in_process(backend: &str, noun: &str, counted: &Counted, n: u64) {
    let statements = &counted.counts;
    let per = n as f64;
    let apart = |sql: &str| {
        ["\"BEGIN", "\"COMMIT", "\"ROLLBACK", "\"PRAGMA"]
            .iter()
            .any(|p| sql.starts_with(p))
    };
    let ours: u64 = statements
        .iter()
        .filter(|(sql, _)| !apart(sql))
        .map(|(_, n)| n)
        .sum();
    if statements.is_empty() {
        println!("{backend}_statements_per_{noun}_in_process unmeasured (sqlx's events disabled)");
        return;
    }
    println!(
        "{backend}_statements_per_{noun}_in_process {:.2} (sqlx's statement events over {n} sequential {noun}s, BEGIN, COMMIT and connection setup apart)",
        ours as f64 / per,
    );
    for (sql, count) in statements.iter().filter(|(sql, _)| apart(sql)) {
        println!("{backend}_in_process_apart {count} {sql}");
    }
    // Each statement's count and the time sqlx measured for it, per unit of work: where the
    // time goes. On PostgreSQL the server's log names them too (`postgres_{noun}_statement`).
    let name = if backend == "sqlite" {
        format!("{backend}_{noun}_statement")
    } else {
        format!("{backend}_{noun}_statement_in_process")
    };
    for (sql, count) in statements.iter().filter(|(sql, _)| !apart(sql)) {
        let secs = counted.secs.get(sql).copied().unwrap_or_default();
        println!(
            "{name} {:.2} {:.3} ms {sql}",
            *count as f64 / per,
            secs * 1e3 / per
        );
    }
}

/// PostgreSQL: the statements as the server logs them (`log_statement = 'all'` on the scratch
/// database `name`, read from the server's log file), the round trips through a counting relay,
/// and the statements counted in process, all over the same `n` sequential units of `work` on
/// a fresh App over `url` (keys in `dir`).
pub async fn count_postgres(
    admin: &mut sqlx::PgConnection,
    name: &str,
    url: &str,
    dir: &Path,
    noun: &str,
    n: u64,
    work: impl AsyncFnOnce(&App<PgStore>),
) {
    let (available, preloaded): (bool, bool) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_stat_statements'), \
         current_setting('shared_preload_libraries') LIKE '%pg_stat_statements%'",
    )
    .fetch_one(&mut *admin)
    .await
    .unwrap();
    println!(
        "postgres_pg_stat_statements available {available} preloaded {preloaded} (counted from the statement log instead, which needs no restart)"
    );
    let alter = |setting: &str| {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "ALTER DATABASE {name} {setting}"
        )))
    };
    alter("SET log_statement = 'all'")
        .execute(&mut *admin)
        .await
        .unwrap();
    let log = server_log();
    let relay = Relay::start(url).await;
    let app_url = relay.as_ref().map_or(url, |r| r.url.as_str());
    // A fresh pool: its sessions start after the setting, so each logs its statements.
    let settings = Settings {
        database_url: Some(app_url.to_string()),
        ..Settings::in_dir(dir)
    };
    let app: App<PgStore> = App::open(&settings, SystemClock::shared(), KeyNeeds::ALL)
        .await
        .unwrap();
    let offset = log
        .as_ref()
        .and_then(|p| std::fs::metadata(p).ok())
        .map(|m| m.len());
    let turns_before = relay.as_ref().map(|r| r.turns.load(Ordering::SeqCst));
    let statements = counted(&app, work).await;
    let turns = relay
        .as_ref()
        .zip(turns_before)
        .map(|(r, before)| r.turns.load(Ordering::SeqCst) - before);
    app.store().close().await;
    alter("RESET log_statement")
        .execute(&mut *admin)
        .await
        .unwrap();
    let per = n as f64;
    match log.zip(offset).and_then(|(p, o)| read_from(&p, o)) {
        Some(text) => {
            let (begins, commits, rollbacks, others) = logged_statements(&text, name);
            let total: u64 = others.values().sum();
            println!(
                "postgres_statements_per_{noun}_server_log {:.2} (the server's log_statement lines over {n} sequential {noun}s, BEGIN and COMMIT apart)",
                total as f64 / per,
            );
            println!(
                "postgres_begin_commit_per_{noun} {:.2} {:.2}",
                begins as f64 / per,
                commits as f64 / per
            );
            println!(
                "postgres_rollbacks {rollbacks} (in all; App::open leaves its read transaction to sqlx to roll back)"
            );
            for (sql, count) in &others {
                println!("postgres_{noun}_statement {:.2} {sql}", *count as f64 / per);
            }
        }
        None => println!(
            "postgres_statements_per_{noun}_server_log unmeasured (no readable server log; set TENDER_BENCH_PG_LOG)"
        ),
    }
    match turns {
        Some(turns) => println!(
            "postgres_round_trips_per_{noun} {:.2} (turns of the conversation through a counting TCP relay: BEGIN, statements, COMMIT, and what sqlx adds: a ping when a connection is taken from the pool and another when it is given back, each statement's first prepare on a connection)",
            turns as f64 / per
        ),
        None => println!("postgres_round_trips_per_{noun} unmeasured (not a TCP URL)"),
    }
    print_in_process("postgres", noun, &statements, n);
}

/// The server's log file: TENDER_BENCH_PG_LOG, or the newest of Debian's
/// `/var/log/postgresql/postgresql-*-main.log`.
fn server_log() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("TENDER_BENCH_PG_LOG") {
        return Some(PathBuf::from(path));
    }
    std::fs::read_dir("/var/log/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with("postgresql-") && name.ends_with("-main.log")
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .max()
        .map(|(_, path)| path)
}

fn read_from(path: &Path, offset: u64) -> Option<String> {
    let mut file = std::fs::File::open(path).ok()?;
    file.seek(SeekFrom::Start(offset)).ok()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// The statement lines the server logged for database `name`: BEGINs, COMMITs, ROLLBACKs, and
/// every other statement by its text (its first 72 characters).
fn logged_statements(text: &str, name: &str) -> (u64, u64, u64, BTreeMap<String, u64>) {
    let marker = format!("@{name} LOG:  ");
    let (mut begins, mut commits, mut rollbacks, mut others) = (0, 0, 0, BTreeMap::new());
    for line in text.lines() {
        let Some((_, logged)) = line.split_once(&marker) else {
            continue;
        };
        // Simple queries log as `statement: SQL`, extended ones as `execute NAME: SQL`.
        let sql = if let Some(sql) = logged.strip_prefix("statement: ") {
            sql
        } else if let Some(rest) = logged.strip_prefix("execute ") {
            rest.split_once(": ").map_or(rest, |(_, sql)| sql)
        } else {
            continue;
        };
        match sql.trim() {
            "BEGIN" => begins += 1,
            "COMMIT" => commits += 1,
            // Left by App::open's read (dropped, not committed): sqlx sends it when the
            // connection is next used, at the first spend.
            "ROLLBACK" => rollbacks += 1,
            sql => *others.entry(sql.chars().take(72).collect()).or_default() += 1,
        }
    }
    (begins, commits, rollbacks, others)
}

/// A TCP relay between tender and the server that counts the conversation's turns: each time
/// the client speaks after the server did is one round trip.
struct Relay {
    url: String,
    turns: Arc<AtomicU64>,
}

impl Relay {
    async fn start(url: &str) -> Option<Relay> {
        let options: sqlx::postgres::PgConnectOptions = url.parse().ok()?;
        let host = options.get_host();
        if host.starts_with('/') {
            return None;
        }
        let target = format!("{host}:{}", options.get_port());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.ok()?;
        let port = listener.local_addr().ok()?.port();
        let turns = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&turns);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(relay(client, target.clone(), Arc::clone(&counter)));
            }
        });
        let (scheme, rest) = url.split_once("://")?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let user = authority
            .rsplit_once('@')
            .map_or(String::new(), |(user, _)| format!("{user}@"));
        let local: SocketAddr = ([127, 0, 0, 1], port).into();
        Some(Relay {
            url: format!("{scheme}://{user}{local}/{path}"),
            turns,
        })
    }
}

async fn relay(client: tokio::net::TcpStream, target: String, turns: Arc<AtomicU64>) {
    let Ok(server) = tokio::net::TcpStream::connect(&target).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let server_spoke = Arc::new(AtomicBool::new(true));
    let spoke = Arc::clone(&server_spoke);
    let up = async move {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n @ 1..) = client_read.read(&mut buf).await {
            if spoke.swap(false, Ordering::SeqCst) {
                turns.fetch_add(1, Ordering::SeqCst);
            }
            if server_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = server_write.shutdown().await;
    };
    let down = async move {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n @ 1..) = server_read.read(&mut buf).await {
            // Set before the client can have the answer, so its next message counts.
            server_spoke.store(true, Ordering::SeqCst);
            if client_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = client_write.shutdown().await;
    };
    tokio::join!(up, down);
}

/// Whether sqlx's statement events are counted now (they cost a parse of the SQL each).
static COUNTING: AtomicBool = AtomicBool::new(false);

/// What the subscriber counted.
pub struct Counts {
    /// sqlx's statement events while [`COUNTING`], by the start of their SQL.
    statements: Mutex<BTreeMap<String, u64>>,
    /// The time sqlx reports for them (from sending to the last row read), by the same key.
    statement_secs: Mutex<BTreeMap<String, f64>>,
    /// tender's "database error" events (each failed statement: deadlock, busy, …).
    pub db_errors: AtomicU64,
    /// tender's "running it again" events (a transient failure's unit of work rerun).
    pub reruns: AtomicU64,
    /// The first few distinct database errors.
    pub errors: Mutex<Vec<String>>,
}

/// The counts, for the whole process: a tracing layer has no other way out.
pub static COUNTS: Counts = Counts {
    statements: Mutex::new(BTreeMap::new()),
    statement_secs: Mutex::new(BTreeMap::new()),
    db_errors: AtomicU64::new(0),
    reruns: AtomicU64::new(0),
    errors: Mutex::new(Vec::new()),
};

/// The error and rerun counts at one moment.
#[derive(Clone, Copy)]
pub struct Snapshot {
    /// Database errors so far.
    pub db_errors: u64,
    /// Units of work run again so far.
    pub reruns: u64,
}

impl Counts {
    /// The counts now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            db_errors: self.db_errors.load(Ordering::SeqCst),
            reruns: self.reruns.load(Ordering::SeqCst),
        }
    }
}

/// Counts sqlx's statement events and tender's own error and rerun events into [`COUNTS`];
/// prints nothing. Set as the global subscriber at the start of `main`.
pub struct Counter;

const SQLX_QUERY: &str = "sqlx::query";

impl<S: Subscriber> Layer<S> for Counter {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        let target = metadata.target();
        // Any kind, not only events: sqlx first asks through an `enabled!` hint callsite.
        if !metadata.is_span() && (target == SQLX_QUERY || target.starts_with("tender::")) {
            // Asked again at each event, so the statement count can be switched.
            Interest::sometimes()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, metadata: &Metadata<'_>, _: Context<'_, S>) -> bool {
        match metadata.target() {
            SQLX_QUERY => COUNTING.load(Ordering::Relaxed),
            target => target.starts_with("tender::"),
        }
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let target = event.metadata().target();
        if target == SQLX_QUERY {
            let mut fields = Fields::default();
            event.record(&mut fields);
            *COUNTS
                .statement_secs
                .lock()
                .unwrap()
                .entry(fields.summary.clone())
                .or_default() += fields.elapsed_secs;
            *COUNTS
                .statements
                .lock()
                .unwrap()
                .entry(fields.summary)
                .or_default() += 1;
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        match fields.message.as_str() {
            "database error" => {
                COUNTS.db_errors.fetch_add(1, Ordering::SeqCst);
                let mut errors = COUNTS.errors.lock().unwrap();
                if errors.len() < 5 && !errors.contains(&fields.error) {
                    errors.push(fields.error);
                }
            }
            "unit of work failed; running it again" => {
                COUNTS.reruns.fetch_add(1, Ordering::SeqCst);
            }
            _ => {}
        }
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    error: String,
    summary: String,
    elapsed_secs: f64,
}

impl Visit for Fields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        if field.name() == "elapsed_secs" {
            self.elapsed_secs = value;
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "error" => self.error = format!("{value:?}"),
            "summary" => self.summary = format!("{value:?}"),
            _ => {}
        }
    }
}

/// The `q` quantile (0 to 1) of latencies in microseconds, sorted ascending, in milliseconds;
/// NaN when there are none.
pub fn percentile_ms(sorted_us: &[u64], q: f64) -> f64 {
    let Some(last) = sorted_us.len().checked_sub(1) else {
        return f64::NAN;
    };
    let i = ((last as f64) * q).round() as usize;
    sorted_us[i.min(last)] as f64 / 1000.0
}
