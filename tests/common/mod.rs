//! Test harness: a fresh database per test, on SQLite (a file in a temporary directory) or on
//! the real PostgreSQL server (a new database, dropped afterwards).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sqlx::Connection;
use tender::audit::AuditSigner;
use tender::codegen::{CodeSource, Digester};
use tender::domain::{Batch, BatchId};
use tender::issuance::{BatchForm, Issuance};
use tender::jobs::{JobDefinitions, JobQueue};
use tender::keys::Keys;
use tender::store::{PgStore, SqliteStore, Store};

/// The server the PostgreSQL tests use; override with TENDER_TEST_PG_URL.
pub fn pg_admin_url() -> String {
    std::env::var("TENDER_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// A database that exists for one test.
pub struct TestDb {
    pub url: String,
    pub dir: tempfile::TempDir,
    pg_name: Option<String>,
}

impl TestDb {
    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("tender.db").display());
        TestDb {
            url,
            dir,
            pg_name: None,
        }
    }

    pub async fn postgres() -> TestDb {
        let admin = pg_admin_url();
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot reach PostgreSQL at {admin} ({e}). Start it with \
                 `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`, \
                 or point TENDER_TEST_PG_URL at a server where this user may create databases"
                )
            });
        let name = format!(
            "tender_test_{}",
            ulid::Ulid::generate().to_string().to_lowercase()
        );
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap();
        let base = admin
            .rsplit_once('/')
            .map_or(admin.as_str(), |(base, _)| base)
            .to_string();
        TestDb {
            url: format!("{base}/{name}"),
            dir: tempfile::tempdir().unwrap(),
            pg_name: Some(name),
        }
    }

    pub fn is_postgres(&self) -> bool {
        self.pg_name.is_some()
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn export_dir(&self) -> PathBuf {
        self.dir.path().join("exports")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(name) = self.pg_name.take() {
            let admin = pg_admin_url();
            // Drop runs outside any runtime: use a short-lived one on its own thread.
            let _ = std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(async {
                        if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                            )))
                            .execute(&mut conn)
                            .await;
                        }
                    })
            })
            .join();
        }
    }
}

/// Everything a library-level test needs.
pub struct Env<S> {
    pub db: TestDb,
    pub store: S,
    pub keys: Keys,
    pub signer: Arc<AuditSigner>,
    pub issuance: Issuance<S>,
}

pub async fn sqlite_env() -> Env<SqliteStore> {
    let db = TestDb::sqlite();
    let keys = Keys::ephemeral();
    let signer = Arc::new(AuditSigner::new(keys.audit.clone()));
    let store = SqliteStore::connect(&db.url, signer.clone()).await.unwrap();
    env(db, store, keys, signer).await
}

pub async fn pg_env() -> Env<PgStore> {
    let db = TestDb::postgres().await;
    let keys = Keys::ephemeral();
    let signer = Arc::new(AuditSigner::new(keys.audit.clone()));
    let store = PgStore::connect(&db.url, signer.clone()).await.unwrap();
    env(db, store, keys, signer).await
}

async fn env<S: Store>(db: TestDb, store: S, keys: Keys, signer: Arc<AuditSigner>) -> Env<S> {
    store.migrate().await.unwrap();
    let issuance = Issuance::new(
        store.clone(),
        Digester::new(&keys.lookup),
        db.export_dir(),
        JobQueue::generate_batch(&JobDefinitions::builtin()),
    );
    Env {
        db,
        store,
        keys,
        signer,
        issuance,
    }
}

impl<S: Store> Env<S> {
    /// Adds retailer "Acme" and requests a batch of `count` 25.00 USD cards.
    pub async fn request(&self, count: u64) -> Batch {
        if self.store.retailers().await.unwrap().is_empty() {
            self.issuance
                .add_retailer("Acme", "2.5", "test")
                .await
                .unwrap();
        }
        self.issuance
            .request_batch(&usd_form(count), "test")
            .await
            .unwrap()
            .batch
    }

    /// Generates a batch in chunks of `chunk` from `source`.
    pub async fn generate(&self, id: BatchId, source: &mut dyn CodeSource, chunk: usize) -> Batch {
        self.issuance
            .generate(id, source, chunk, "test", &|_| {})
            .await
            .unwrap()
    }

    pub fn export_file(&self, id: BatchId) -> PathBuf {
        self.db.export_dir().join(tender::export::file_name(id))
    }
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

/// Runs a test body against both backends, as `sqlite` and `postgres` test functions.
#[macro_export]
macro_rules! both_backends {
    // Each test gets its own database on each backend.
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$body(super::common::sqlite_env().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$body(super::common::pg_env().await).await;
            }
        }
    };
}

/// Raw SQL for tests that inspect or tamper with the database behind the store's back.
pub trait Raw {
    fn count(&self, sql: &str) -> impl std::future::Future<Output = i64> + Send;
    fn exec(&self, sql: &str) -> impl std::future::Future<Output = u64> + Send;
}

// Both stores expose their pool under the same name; the SQL is portable.
macro_rules! raw_for {
    ($store:ty) => {
        impl Raw for $store {
            async fn count(&self, sql: &str) -> i64 {
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
                    .fetch_one(self.pool())
                    .await
                    .unwrap()
            }
            async fn exec(&self, sql: &str) -> u64 {
                sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
                    .execute(self.pool())
                    .await
                    .unwrap()
                    .rows_affected()
            }
        }
    };
}
raw_for!(SqliteStore);
raw_for!(PgStore);
