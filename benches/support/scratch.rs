//! What the benches that load a scratch database in bulk share (expiry, settlement; ledger its
//! settings and app): the backend, a scratch database for it and the app on it, and the rows of
//! a table loaded with SQL (PostgreSQL `COPY … FROM STDIN` through sqlx `copy_in_raw`; SQLite
//! one transaction of multi-row INSERTs). Included by path, so benches that load nothing do not
//! compile it.

use std::fmt::Write as _;
use std::path::Path;

use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;
use tender::app::App;
use tender::clock::SystemClock;
use tender::config::Settings;
use tender::domain::Actor;
use tender::keys::KeyNeeds;
use tender::store::{DbPool, Store};

use crate::support::ScratchPg;

/// Bound parameters per SQLite INSERT of the setup, under SQLite's 32,766.
const SQLITE_PARAMS: usize = 30_000;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// A database to measure in: its URL and the data dir that holds the keys.
pub struct Scratch {
    /// The database's URL.
    pub url: String,
    /// The data dir, holding the keys (and SQLite's database).
    pub dir: tempfile::TempDir,
    pg: Option<ScratchPg>,
}

impl Scratch {
    pub async fn create(backend: Backend, what: &str) -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        match backend {
            Backend::Sqlite => Scratch {
                url: format!("sqlite://{}", dir.path().join("tender.db").display()),
                dir,
                pg: None,
            },
            Backend::Postgres => {
                let pg = ScratchPg::create(what).await;
                Scratch {
                    url: pg.url.clone(),
                    dir,
                    pg: Some(pg),
                }
            }
        }
    }

    /// Drops the PostgreSQL database or the SQLite data dir, unless the environment variable
    /// `keep` (TENDER_BENCH_<BENCH>_KEEP) is set (to look into it afterwards: EXPLAIN and the
    /// like).
    pub async fn drop_database(self, keep: &str) {
        let keep = std::env::var_os(keep).is_some();
        match self.pg {
            Some(pg) if keep => println!(
                "postgres_database_kept {} (keys in {})",
                pg.name,
                self.dir.keep().display()
            ),
            Some(mut pg) => pg.drop_database().await,
            None if keep => println!("sqlite_data_dir_kept {}", self.dir.keep().display()),
            None => {}
        }
    }
}

pub fn settings(url: &str, dir: &Path) -> Settings {
    Settings {
        database_url: Some(url.to_string()),
        ..Settings::in_dir(dir)
    }
}

pub async fn open<S: Store>(url: &str, dir: &Path) -> App<S> {
    App::open(&settings(url, dir), SystemClock::shared(), KeyNeeds::ALL)
        .await
        .unwrap()
}

pub fn actor() -> Actor {
    Actor::cli("bench", None).unwrap()
}

/// Before each timed step: PostgreSQL VACUUM ANALYZE and CHECKPOINT; SQLite a WAL checkpoint.
pub async fn prepare_timed<S: Store>(app: &App<S>) {
    let pool = app.store().db_pool();
    match pool {
        DbPool::Postgres(_) => {
            exec(&pool, "VACUUM ANALYZE").await;
            exec(&pool, "CHECKPOINT").await;
        }
        DbPool::Sqlite(_) => {
            exec(&pool, "PRAGMA wal_checkpoint(TRUNCATE)").await;
        }
    }
}

/// A value of a loaded row.
pub enum Val {
    Int(i64),
    Text(String),
    Null,
    Blob([u8; 32]),
    At(DateTime<Utc>),
}

pub fn int(n: u64) -> Val {
    Val::Int(i64::try_from(n).unwrap())
}

pub fn text(s: impl Into<String>) -> Val {
    Val::Text(s.into())
}

/// One table to load: its name, columns and rows.
pub struct Table<'a> {
    /// The table's name.
    pub name: &'static str,
    /// Its columns, in the order of each row's values.
    pub columns: &'static [&'static str],
    /// Its rows.
    pub rows: Box<dyn Iterator<Item = Vec<Val>> + 'a>,
}

/// One transaction of multi-row INSERTs: rows loaded.
pub async fn sqlite_load(pool: &sqlx::SqlitePool, table: Table<'_>) -> u64 {
    let mut c = pool.acquire().await.unwrap();
    // Untimed setup: a large page cache, put back before the connection returns to the pool.
    let cache: i64 = sqlx::query_scalar("PRAGMA cache_size")
        .fetch_one(&mut *c)
        .await
        .unwrap();
    sqlx::query("PRAGMA cache_size = -262144")
        .execute(&mut *c)
        .await
        .unwrap();
    let per_statement = SQLITE_PARAMS / table.columns.len();
    let mut tx = sqlx::Connection::begin(&mut *c).await.unwrap();
    let mut rows = table.rows.peekable();
    let mut n = 0;
    while rows.peek().is_some() {
        let part: Vec<Vec<Val>> = rows.by_ref().take(per_statement).collect();
        n += part.len() as u64;
        let mut insert = QueryBuilder::<sqlx::Sqlite>::new(format!(
            "INSERT INTO {} ({}) ",
            table.name,
            table.columns.join(", ")
        ));
        insert.push_values(part, |mut b, row| {
            for v in row {
                match v {
                    Val::Int(i) => b.push_bind(i),
                    Val::Text(s) => b.push_bind(s),
                    Val::Null => b.push_bind(None::<i64>),
                    Val::Blob(d) => b.push_bind(d.to_vec()),
                    Val::At(t) => b.push_bind(t),
                };
            }
        });
        insert.build().execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA cache_size = {cache}")))
        .execute(&mut *c)
        .await
        .unwrap();
    n
}

/// `COPY … FROM STDIN` (CSV): rows loaded.
pub async fn postgres_load(pool: &sqlx::PgPool, table: Table<'_>) -> u64 {
    let mut c = pool.acquire().await.unwrap();
    let mut copy = c
        .copy_in_raw(&format!(
            "COPY {} ({}) FROM STDIN WITH (FORMAT csv)",
            table.name,
            table.columns.join(", ")
        ))
        .await
        .unwrap();
    let mut data = String::with_capacity(1 << 21);
    for row in table.rows {
        for (i, v) in row.into_iter().enumerate() {
            if i > 0 {
                data.push(',');
            }
            match v {
                Val::Int(n) => write!(data, "{n}").unwrap(),
                Val::Text(s) => write!(data, "\"{}\"", s.replace('"', "\"\"")).unwrap(),
                Val::Null => {}
                Val::Blob(d) => write!(data, "\\x{}", hex::encode(d)).unwrap(),
                Val::At(t) => data.push_str(&t.to_rfc3339()),
            }
        }
        data.push('\n');
        if data.len() >= 1 << 20 {
            copy.send(data.as_bytes()).await.unwrap();
            data.clear();
        }
    }
    if !data.is_empty() {
        copy.send(data.as_bytes()).await.unwrap();
    }
    copy.finish().await.unwrap()
}

pub async fn scalar(pool: &DbPool, sql: &str) -> i64 {
    let sql = sqlx::AssertSqlSafe(sql.to_string());
    match pool {
        DbPool::Sqlite(pool) => sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(pool)
            .await
            .unwrap(),
        DbPool::Postgres(pool) => sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(pool)
            .await
            .unwrap(),
    }
}

pub async fn exec(pool: &DbPool, sql: &str) {
    let sql = sqlx::AssertSqlSafe(sql.to_string());
    match pool {
        DbPool::Sqlite(pool) => {
            sqlx::query(sql).execute(pool).await.unwrap();
        }
        DbPool::Postgres(pool) => {
            sqlx::query(sql).execute(pool).await.unwrap();
        }
    }
}

/// The id of the database's active lookup key.
pub async fn lookup_key(pool: &DbPool) -> i64 {
    scalar(
        pool,
        "SELECT CAST(key_id AS BIGINT) FROM key_version WHERE purpose = 'lookup' AND state = 'active'",
    )
    .await
}

/// The id after the largest `column` of `table` (1 when it is empty).
pub async fn next_id(pool: &DbPool, table: &str, column: &str) -> i64 {
    scalar(
        pool,
        &format!("SELECT COALESCE(MAX({column}), 0) + 1 FROM {table}"),
    )
    .await
}

/// Loads `tables` in turn into a fresh database (checked: no serial reserved yet), then sets
/// the serial counter past `cards` serials and, on PostgreSQL, each of `sequences` (table,
/// column) to its table's largest id, then VACUUM ANALYZE (SQLite: `PRAGMA optimize`). The rows
/// loaded in all, and each table's `{name} {rows} in {seconds} s`.
pub async fn load_tables(
    pool: &DbPool,
    tables: Vec<Table<'_>>,
    cards: u64,
    sequences: &[(&str, &str)],
) -> (u64, Vec<String>) {
    let next = scalar(pool, "SELECT next_sequence FROM serial_counter").await;
    assert_eq!(next, 1, "a fresh database reserved no serial yet");
    let mut rows = 0;
    let mut per_table = Vec::new();
    for table in tables {
        let (name, started) = (table.name, std::time::Instant::now());
        let n = match pool {
            DbPool::Sqlite(pool) => sqlite_load(pool, table).await,
            DbPool::Postgres(pool) => postgres_load(pool, table).await,
        };
        rows += n;
        per_table.push(format!(
            "{name} {n} in {:.1} s",
            started.elapsed().as_secs_f64()
        ));
    }
    exec(
        pool,
        &format!("UPDATE serial_counter SET next_sequence = {}", cards + 1),
    )
    .await;
    match pool {
        DbPool::Postgres(_) => {
            for (table, column) in sequences {
                exec(
                    pool,
                    &format!(
                        "SELECT setval(pg_get_serial_sequence('{table}', '{column}'), \
                         (SELECT MAX({column}) FROM {table}))"
                    ),
                )
                .await;
            }
            exec(pool, "VACUUM ANALYZE").await;
        }
        DbPool::Sqlite(_) => exec(pool, "PRAGMA optimize").await,
    }
    (rows, per_table)
}
