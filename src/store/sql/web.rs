//! Sign-in links and browser sessions.

use super::Db;
use crate::domain::AccountId;
use crate::store::web::{LinkRow, NewLink, NewSession, SessionRow, WebRepo};
use crate::store::{SqlTx, StoreResult};

impl WebRepo for SqlTx<Db> {
    async fn insert_link(&mut self, new: &NewLink<'_>) -> StoreResult<()> {
        sqlx::query::<Db>(
            "INSERT INTO sign_in_link (link_id, account_id, minted_by, minted_ms, expires_ms) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(new.link_id)
        .bind(new.account_id.0)
        .bind(new.minted_by)
        .bind(new.minted_ms)
        .bind(new.expires_ms)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn use_link(&mut self, link_id: &str, now_ms: i64) -> StoreResult<bool> {
        let done = sqlx::query::<Db>(
            "UPDATE sign_in_link SET used_ms = $2 \
             WHERE link_id = $1 AND used_ms IS NULL AND expires_ms > $2",
        )
        .bind(link_id)
        .bind(now_ms)
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn link(&mut self, link_id: &str) -> StoreResult<Option<LinkRow>> {
        let row = sqlx::query_as::<Db, (i64, i64, Option<i64>)>(
            "SELECT account_id, expires_ms, used_ms FROM sign_in_link WHERE link_id = $1",
        )
        .bind(link_id)
        .fetch_optional(&mut *self.tx)
        .await?;
        Ok(row.map(|(account, expires_ms, used_ms)| LinkRow {
            account_id: AccountId(account),
            expires_ms,
            used_ms,
        }))
    }

    async fn insert_session(&mut self, new: &NewSession<'_>) -> StoreResult<()> {
        sqlx::query::<Db>(
            "INSERT INTO web_session (session_hash, account_id, link_id, created_ms, expires_ms) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&new.session_hash[..])
        .bind(new.account_id.0)
        .bind(new.link_id)
        .bind(new.created_ms)
        .bind(new.expires_ms)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn session(&mut self, hash: &[u8; 32]) -> StoreResult<Option<SessionRow>> {
        let row = sqlx::query_as::<Db, (i64, i64, Option<i64>, Option<String>)>(
            "SELECT account_id, expires_ms, ended_ms, notice FROM web_session \
             WHERE session_hash = $1",
        )
        .bind(&hash[..])
        .fetch_optional(&mut *self.tx)
        .await?;
        Ok(
            row.map(|(account, expires_ms, ended_ms, notice)| SessionRow {
                account_id: AccountId(account),
                expires_ms,
                ended_ms,
                notice,
            }),
        )
    }

    async fn end_session(&mut self, hash: &[u8; 32], now_ms: i64) -> StoreResult<bool> {
        let done = sqlx::query::<Db>(
            "UPDATE web_session SET ended_ms = $2, notice = NULL \
             WHERE session_hash = $1 AND ended_ms IS NULL",
        )
        .bind(&hash[..])
        .bind(now_ms)
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn set_notice(&mut self, hash: &[u8; 32], notice: Option<&str>) -> StoreResult<bool> {
        let done = sqlx::query::<Db>("UPDATE web_session SET notice = $2 WHERE session_hash = $1")
            .bind(&hash[..])
            .bind(notice)
            .execute(&mut *self.tx)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn purge_web(&mut self, before_ms: i64, rows: u32) -> StoreResult<u64> {
        let sessions = sqlx::query::<Db>(
            "DELETE FROM web_session WHERE session_hash IN (SELECT session_hash \
             FROM web_session WHERE expires_ms < $1 ORDER BY expires_ms LIMIT $2)",
        )
        .bind(before_ms)
        .bind(i64::from(rows))
        .execute(&mut *self.tx)
        .await?;
        let links = sqlx::query::<Db>(
            "DELETE FROM sign_in_link WHERE link_id IN (SELECT l.link_id FROM sign_in_link l \
             WHERE l.expires_ms < $1 \
             AND NOT EXISTS (SELECT 1 FROM web_session s WHERE s.link_id = l.link_id) \
             ORDER BY l.expires_ms LIMIT $2)",
        )
        .bind(before_ms)
        .bind(i64::from(rows))
        .execute(&mut *self.tx)
        .await?;
        Ok(sessions.rows_affected() + links.rows_affected())
    }
}
