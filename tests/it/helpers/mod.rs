//! The test harness: a fresh database per test, on SQLite (a file in a temporary directory) or
//! on the real PostgreSQL server (a new database copied from one migrated template), and the
//! application built through the same composition root as the binary.
//!
//! A failed test's database is kept for inspection; its name or path is printed.

/// Headless Chromium through ChromeDriver, for end-to-end tests of pages.
pub mod browser;
pub mod http;

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::Connection;
use tender::app::{self, App};
use tender::audit::VerifyReport;
use tender::clock::{FixedClock, SharedClock};
use tender::codegen::CodeGenerator;
use tender::codegen::CodeSource;
use tender::config::{SealAgeMax, Settings};
use tender::domain::{Actor, Batch, BatchId, Serial};
use tender::keys::KeyNeeds;
use tender::service::batches::BatchForm;
use tender::service::cards::{ActivateForm, PosForm, StoreForm};
use tender::service::trail::VerifyRequest;
use tender::store::{DbPool, PgStore, Store};

/// The server the PostgreSQL tests use; override with TENDER_TEST_PG_URL.
pub fn pg_admin_url() -> String {
    std::env::var("TENDER_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

fn pg_url(name: &str) -> String {
    let admin = pg_admin_url();
    let base = admin
        .rsplit_once('/')
        .map_or(admin.as_str(), |(base, _)| base);
    format!("{base}/{name}")
}

async fn pg_admin() -> sqlx::PgConnection {
    let admin = pg_admin_url();
    sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot reach PostgreSQL at {admin} ({e}). Start it with \
             `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`, \
             or point TENDER_TEST_PG_URL at a server where this user may create databases"
            )
        })
}

async fn exec(conn: &mut sqlx::PgConnection, sql: String) {
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&mut *conn)
        .await
        .unwrap();
}

/// The migrated template every PostgreSQL test database is copied from. Its name carries a
/// hash of the migrations, so a run creates it once, later runs reuse it, and a changed
/// migration gets a new one; an advisory lock keeps parallel test processes from racing.
async fn pg_template() -> String {
    let mut hasher = Sha256::new();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for file in files {
        hasher.update(std::fs::read(file).unwrap());
    }
    let hash = hex::encode(&hasher.finalize()[..8]);
    let name = format!("tender_template_{hash}");
    let mut conn = pg_admin().await;
    exec(&mut conn, "SELECT pg_advisory_lock(7366)".into()).await;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut conn)
            .await
            .unwrap();
    if !exists {
        let building = format!("{name}_building");
        exec(&mut conn, format!("DROP DATABASE IF EXISTS {building}")).await;
        exec(&mut conn, format!("CREATE DATABASE {building}")).await;
        let store = PgStore::connect(&pg_url(&building)).await.unwrap();
        store.migrate().await.unwrap();
        store.close().await;
        exec(
            &mut conn,
            format!("ALTER DATABASE {building} RENAME TO {name}"),
        )
        .await;
    }
    exec(&mut conn, "SELECT pg_advisory_unlock(7366)".into()).await;
    name
}

/// A database that exists for one test, and a directory for its keys and printer files.
pub struct TestDb {
    pub url: String,
    pub dir: tempfile::TempDir,
    pg_name: Option<String>,
    /// Copies of the PostgreSQL database a test made, dropped with it.
    pg_copies: Vec<String>,
}

impl TestDb {
    /// A new SQLite file.
    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("tender.db").display());
        TestDb {
            url,
            dir,
            pg_name: None,
            pg_copies: Vec::new(),
        }
    }

    /// A new PostgreSQL database, already migrated.
    pub async fn postgres() -> TestDb {
        let template = pg_template().await;
        let name = format!(
            "tender_test_{}",
            ulid::Ulid::generate().to_string().to_lowercase()
        );
        let mut conn = pg_admin().await;
        exec(
            &mut conn,
            format!("CREATE DATABASE {name} TEMPLATE {template}"),
        )
        .await;
        TestDb {
            url: pg_url(&name),
            dir: tempfile::tempdir().unwrap(),
            pg_name: Some(name),
            pg_copies: Vec::new(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn export_dir(&self) -> PathBuf {
        self.dir.path().join("exports")
    }

    /// Settings that keep keys and printer files in the test's directory.
    pub fn settings(&self) -> Settings {
        Settings {
            database_url: Some(self.url.clone()),
            ..Settings::in_dir(self.dir.path())
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Keep what the failed test left, and say where it is.
            let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap()).keep();
            eprintln!(
                "kept the failed test's database {} and directory {}",
                self.pg_name.as_deref().unwrap_or(&self.url),
                dir.display()
            );
            return;
        }
        if let Some(name) = self.pg_name.take() {
            let mut names = std::mem::take(&mut self.pg_copies);
            names.push(name);
            // Drop runs outside any runtime: use a short-lived one on its own thread.
            let _ = std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(async {
                        if let Ok(mut conn) = sqlx::PgConnection::connect(&pg_admin_url()).await {
                            for name in names {
                                let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                                )))
                                .execute(&mut conn)
                                .await;
                            }
                        }
                    })
            })
            .join();
        }
    }
}

/// When every test's clock starts.
pub fn epoch() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-01T09:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// An application on a fresh database, built as the binary builds it, on a fixed clock.
pub struct TestApp<S> {
    pub db: TestDb,
    pub clock: FixedClock,
    pub app: App<S>,
}

impl<S: Store> TestApp<S> {
    /// `tender init`, then the app opened over `db`.
    pub async fn new(db: TestDb) -> TestApp<S> {
        let clock = FixedClock::at(epoch());
        let shared: SharedClock = std::sync::Arc::new(clock.clone());
        app::init(&db.settings(), shared.clone(), &actor())
            .await
            .unwrap();
        let app = App::open(&db.settings(), shared, KeyNeeds::ALL)
            .await
            .unwrap();
        TestApp { db, clock, app }
    }

    /// The app again, opened with other settings (other keys, say) over the same database.
    pub async fn reopen(&self, settings: &Settings) -> App<S> {
        App::open(
            settings,
            std::sync::Arc::new(self.clock.clone()),
            KeyNeeds::ALL,
        )
        .await
        .unwrap()
    }

    pub fn store(&self) -> &S {
        self.app.store()
    }

    /// Verifies the trail with the proofs the app can run alone: hash chains, and record tags
    /// under its audit key.
    pub async fn verify(&self) -> VerifyReport {
        self.app
            .services()
            .trail()
            .verify(&VerifyRequest {
                public_key: None,
                witness_files: Vec::new(),
                seal_age_max: SealAgeMax::default().get(),
            })
            .await
            .unwrap()
    }

    /// A consistent copy of the database as it is now, as a backup would take it; returns
    /// settings that open the copy (with this test's keys). On PostgreSQL the app's
    /// connections are closed for the copy and opened again.
    pub async fn backup(&mut self) -> Settings {
        let settings = self.db.settings();
        match self.store().db_pool() {
            DbPool::Sqlite(_) => {
                let copy = self.db.path().join(format!(
                    "backup-{}.db",
                    ulid::Ulid::generate().to_string().to_lowercase()
                ));
                self.exec(&format!("VACUUM INTO '{}'", copy.display()))
                    .await;
                Settings {
                    database_url: Some(format!("sqlite://{}", copy.display())),
                    ..settings
                }
            }
            DbPool::Postgres(_) => {
                let source = self.db.pg_name.clone().unwrap();
                let copy = format!("{source}_b{}", self.db.pg_copies.len());
                self.store().close().await;
                exec(
                    &mut pg_admin().await,
                    format!("CREATE DATABASE {copy} TEMPLATE {source}"),
                )
                .await;
                self.db.pg_copies.push(copy.clone());
                self.app = self.reopen(&settings).await;
                Settings {
                    database_url: Some(pg_url(&copy)),
                    ..settings
                }
            }
        }
    }

    /// A byte string as a literal of this backend's SQL.
    pub fn blob(&self, bytes: &[u8]) -> String {
        match self.store().db_pool() {
            DbPool::Sqlite(_) => format!("X'{}'", hex::encode(bytes)),
            DbPool::Postgres(_) => format!("'\\x{}'::bytea", hex::encode(bytes)),
        }
    }

    /// Adds retailer "Acme" if it is missing and requests a batch of `count` 25.00 USD cards.
    pub async fn request(&self, count: u64) -> Batch {
        let services = self.app.services();
        if self.count("SELECT count(*) FROM retailer").await == 0 {
            services
                .retailers()
                .add("Acme", "2.5", &actor())
                .await
                .unwrap();
        }
        services
            .batches()
            .request(&usd_form(count), &actor())
            .await
            .unwrap()
    }

    /// Generates a batch in chunks of `chunk` from `source`.
    pub async fn generate(&self, id: BatchId, source: &mut dyn CodeSource, chunk: usize) -> Batch {
        self.app
            .services()
            .generation()
            .generate(id, source, chunk, &actor(), &|_| {})
            .await
            .unwrap()
    }

    pub fn export_file(&self, id: BatchId) -> PathBuf {
        self.db
            .export_dir()
            .join(tender::formats::printer_file::file_name(id))
    }

    /// A number that raw SQL counts behind the services' back.
    pub async fn count(&self, sql: &str) -> i64 {
        let sql = sqlx::AssertSqlSafe(sql.to_string());
        match self.store().db_pool() {
            DbPool::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap(),
            DbPool::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap(),
        }
    }

    /// Raw SQL that tampers with the database behind the services' back.
    pub async fn exec(&self, sql: &str) -> u64 {
        let sql = sqlx::AssertSqlSafe(sql.to_string());
        match self.store().db_pool() {
            DbPool::Sqlite(pool) => sqlx::query(sql)
                .execute(&pool)
                .await
                .unwrap()
                .rows_affected(),
            DbPool::Postgres(pool) => sqlx::query(sql)
                .execute(&pool)
                .await
                .unwrap()
                .rows_affected(),
        }
    }
}

/// The actor the library-level tests record: a person named `test` at the command line.
pub fn actor() -> Actor {
    Actor::cli("test", None).unwrap()
}

pub fn usd_form(count: u64) -> BatchForm {
    BatchForm {
        retailer: "Acme".into(),
        count,
        value: Some("25.00".into()),
        currency: "USD".into(),
        region: "US".into(),
        expires_in_days: Some(365),
        ..BatchForm::default()
    }
}

/// Opens an account in `region` and `currency` with a zero balance; its id as callers give it.
pub async fn open_account<S: Store>(env: &TestApp<S>, region: &str, currency: &str) -> String {
    let form = tender::service::ledger::AccountForm {
        region: region.into(),
        currency: currency.into(),
        external_id: None,
    };
    let account = env
        .app
        .services()
        .ledger()
        .create_account(&form, &actor())
        .await
        .unwrap();
    account.id.to_string()
}

/// A batch requested with `form` and generated, codes from the OS's generator.
pub async fn generated<S: Store>(env: &TestApp<S>, form: &BatchForm) -> Batch {
    let batch = env
        .app
        .services()
        .batches()
        .request(form, &actor())
        .await
        .unwrap();
    env.generate(
        batch.id,
        &mut CodeGenerator::from_os_rng(),
        form.count as usize,
    )
    .await
}

/// A generated batch of `retailer`'s: `count` 25.00 cards in `currency` for `region`, printed
/// to expire `days` days after the request.
pub async fn shelf<S: Store>(
    env: &TestApp<S>,
    retailer: &str,
    region: &str,
    currency: &str,
    count: u64,
    days: u32,
) -> Batch {
    let form = BatchForm {
        retailer: retailer.into(),
        count,
        value: Some("25.00".into()),
        currency: currency.into(),
        region: region.into(),
        expires_in_days: Some(days),
        ..BatchForm::default()
    };
    generated(env, &form).await
}

/// The `n`th card of a batch, from 0.
pub fn card(batch: &Batch, n: u64) -> Serial {
    Serial::from_sequence(batch.first_serial.sequence() + n).unwrap()
}

/// Rows of a query of this backend's pool.
pub async fn query<S, T>(env: &TestApp<S>, sql: String) -> Vec<T>
where
    S: Store,
    T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
        + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
        + Send
        + Unpin,
{
    let sql = sqlx::AssertSqlSafe(sql);
    match env.store().db_pool() {
        DbPool::Sqlite(pool) => sqlx::query_as(sql).fetch_all(&pool).await.unwrap(),
        DbPool::Postgres(pool) => sqlx::query_as(sql).fetch_all(&pool).await.unwrap(),
    }
}

/// `ledger check` finds the books whole and the audit trail verifies.
pub async fn assert_whole<S: Store>(env: &TestApp<S>) {
    let report = env.app.services().ledger().check().await.unwrap();
    assert_eq!(report.discrepancy, None, "{report:?}");
    let report = env.verify().await;
    assert!(report.is_intact(), "{:?}", report.problem);
}

/// Runs an async test body, which takes a [`TestApp`], on SQLite and on PostgreSQL, as
/// `sqlite` and `postgres` test functions in module `$name`.
macro_rules! both_backends {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = $crate::helpers::TestDb::sqlite();
                super::$body($crate::helpers::TestApp::<tender::store::SqliteStore>::new(db).await)
                    .await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let db = $crate::helpers::TestDb::postgres().await;
                super::$body($crate::helpers::TestApp::<tender::store::PgStore>::new(db).await)
                    .await;
            }
        }
    };
}
pub(crate) use both_backends;

/// A child process killed and reaped when dropped, so a failing test leaves no `tender serve`
/// behind holding the test runner's output open.
pub struct Reaped(pub std::process::Child);

impl std::ops::Deref for Reaped {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A `tender` process on `env`'s database (its keys in the data dir) with stdin closed, and
/// without the settings a developer's shell may export (keys, actor, jobs dir, issuer state,
/// business time zone) that would change what a test sees.
pub fn tender_command<S: Store>(env: &TestApp<S>, args: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_tender"));
    command.args(args);
    for var in [
        "TENDER_LOOKUP_KEYS",
        "TENDER_AUDIT_KEYS",
        "TENDER_SEAL_KEY",
        "TENDER_KEY_DIR",
        "TENDER_ACTOR",
        "TENDER_JOBS_DIR",
        "TENDER_ISSUER_STATE",
        "TENDER_BUSINESS_TIME_ZONE",
    ] {
        command.env_remove(var);
    }
    command
        .env("TENDER_DATA_DIR", env.db.path())
        .env("TENDER_DATABASE_URL", &env.db.url)
        .stdin(std::process::Stdio::null());
    command
}

/// A `tender` process as [`tender_command`] makes it, with the job definitions in `jobs`,
/// logging at `info` to `log`; killed and reaped when dropped.
pub fn tender_process<S: Store>(
    env: &TestApp<S>,
    args: &[&str],
    jobs: &Path,
    log: &Path,
) -> Reaped {
    let log = std::fs::File::create(log).unwrap();
    Reaped(
        tender_command(env, args)
            .env("TENDER_JOBS_DIR", jobs)
            .env("TENDER_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

/// A `tender` command as [`tender_command`] makes it, its output captured and the process
/// killed if the test drops it.
pub fn tender_captured<S: Store>(env: &TestApp<S>, args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::from(tender_command(env, args));
    command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    command
}

/// A purchase of `spent` USD on order `A-1001` at `app-store` from `account`, and its partial
/// refund `R-1` of `refunded`, through `app`'s ledger.
pub async fn spend_and_refund<S: Store>(app: &App<S>, account: &str, spent: &str, refunded: &str) {
    let ledger = app.services().ledger();
    let spend = tender::service::ledger::SpendForm {
        account: account.to_string(),
        amount: spent.to_string(),
        currency: "USD".into(),
        order: "A-1001".into(),
        service: "app-store".into(),
        effective_at: None,
    };
    ledger.spend(&spend, &actor()).await.unwrap();
    let refund = tender::service::ledger::RefundForm {
        account: account.to_string(),
        order: "A-1001".into(),
        refund: "R-1".into(),
        amount: refunded.to_string(),
        currency: "USD".into(),
        effective_at: None,
    };
    ledger.refund(&refund, &actor()).await.unwrap();
}

/// Acme, its Texas store (`S1`), and `count` generated 25.00 USD cards for the US, the first `sold`
/// of them sold.
pub async fn cards_on_sale<S: Store>(env: &TestApp<S>, count: u64, sold: u64) -> Batch {
    let services = env.app.services();
    services
        .retailers()
        .add("Acme", "2.5", &actor())
        .await
        .unwrap();
    let batch = shelf(env, "Acme", "US", "USD", count, 365).await;
    let store = StoreForm {
        retailer: "Acme".into(),
        store: "S1".into(),
        jurisdiction: "US-TX".into(),
    };
    services.cards().add_store(&store, &actor()).await.unwrap();
    if sold > 0 {
        let form = ActivateForm {
            pos: PosForm {
                retailer: "Acme".into(),
                store: "S1".into(),
                terminal: "till-1".into(),
                pos_txn: "box-1".into(),
                pos_time: None,
            },
            serial: batch.first_serial.to_string(),
            to_serial: Some(card(&batch, sold - 1).to_string()),
            value: None,
            purchaser_state: None,
        };
        services.cards().activate(&form, &actor()).await.unwrap();
    }
    batch
}

/// The code the printer file holds for card `n` of `batch`, as printed.
pub fn code_of<S: Store>(env: &TestApp<S>, batch: &Batch, n: u64) -> String {
    printed_code(env, batch, card(batch, n))
}

/// The code the printer file holds for `serial` of `batch`, as printed (grouped).
pub fn printed_code<S: Store>(env: &TestApp<S>, batch: &Batch, serial: Serial) -> String {
    let mut reader = csv::Reader::from_path(env.export_file(batch.id)).unwrap();
    for record in reader.records() {
        let record = record.unwrap();
        if Serial::parse(&record[0]).unwrap() == serial {
            return record[1].to_string();
        }
    }
    panic!("{serial} is not in the printer file");
}
