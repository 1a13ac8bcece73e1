//! What the benchmarks share: a scratch PostgreSQL database of their own, dropped afterwards.

use sqlx::Connection;

/// A database created for one benchmark run on the server TENDER_TEST_PG_URL names (default
/// postgres://postgres@127.0.0.1:5432/postgres).
pub struct ScratchPg {
    /// An admin connection to the server.
    pub admin: sqlx::PgConnection,
    /// The database's name.
    pub name: String,
    /// Its URL.
    pub url: String,
}

impl ScratchPg {
    /// Creates `tender_bench_<what>_<pid>` afresh.
    pub async fn create(what: &str) -> ScratchPg {
        let admin_url = std::env::var("TENDER_TEST_PG_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let name = format!("tender_bench_{what}_{}", std::process::id());
        let admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .expect("PostgreSQL is reachable");
        let url = format!("{}/{name}", admin_url.rsplit_once('/').unwrap().0);
        let mut scratch = ScratchPg { admin, name, url };
        scratch.drop_database().await;
        scratch
            .exec(&format!("CREATE DATABASE {}", scratch.name))
            .await;
        scratch
    }

    /// Runs one statement on the admin connection.
    pub async fn exec(&mut self, sql: &str) {
        sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&mut self.admin)
            .await
            .unwrap();
    }

    /// Drops the database, with any connection still on it.
    pub async fn drop_database(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        self.exec(&sql).await;
    }
}
