//! The audit trail's rows. The store only persists records; which events a change produces,
//! and when, is the service's.

use chrono::{DateTime, Utc};

use super::Db;
use crate::audit::{AuditEvent, AuditRecord, AuditSigner, ChainHead, Seal};
use crate::domain::PageRows;
use crate::store::backend::locking;
use crate::store::rows::{AuditRecordRow, HeadRow, SealRow, all, bytes32};
use crate::store::{AuditRepo, SqlTx, StoreError, StoreResult};

impl AuditRepo for SqlTx<Db> {
    async fn append(
        &mut self,
        signer: &AuditSigner,
        event: &AuditEvent,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let chain = i32::try_from(event.chain()).map_err(|_| StoreError::corrupt("chain"))?;
        // The head row's lock (PostgreSQL) or the write lock (SQLite) serialises this chain.
        let (seq, prev_tag) = sqlx::query_as::<Db, (i64, Vec<u8>)>(locking!(
            "SELECT seq, tag FROM audit_chain_head WHERE chain = $1"
        ))
        .bind(chain)
        .fetch_one(&mut *self.tx)
        .await?;
        let record = signer.seal_record(event, seq + 1, at, &bytes32(prev_tag)?);
        sqlx::query::<Db>(
            "INSERT INTO audit_record \
             (chain, seq, recorded_at, actor, action, subject, details, key_id, tag) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(chain)
        .bind(record.seq)
        .bind(record.recorded_at)
        .bind(&record.actor)
        .bind(&record.action)
        .bind(&record.subject)
        .bind(&record.details)
        .bind(record.key_id.stored())
        .bind(&record.tag[..])
        .execute(&mut *self.tx)
        .await?;
        sqlx::query::<Db>("UPDATE audit_chain_head SET seq = $1, tag = $2 WHERE chain = $3")
            .bind(record.seq)
            .bind(&record.tag[..])
            .bind(chain)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn audit_page(
        &mut self,
        after: (u32, i64),
        rows: PageRows,
    ) -> StoreResult<Vec<AuditRecord>> {
        let chain = i32::try_from(after.0).map_err(|_| StoreError::corrupt("chain"))?;
        all(sqlx::query_as::<Db, AuditRecordRow>(
            "SELECT * FROM audit_record WHERE (chain, seq) > ($1, $2) \
             ORDER BY chain, seq LIMIT $3",
        )
        .bind(chain)
        .bind(after.1)
        .bind(i64::from(rows.get()))
        .fetch_all(&mut *self.tx)
        .await?)
    }

    async fn audit_heads(&mut self, lock: bool) -> StoreResult<Vec<ChainHead>> {
        let sql = if lock {
            locking!("SELECT chain, seq, tag FROM audit_chain_head ORDER BY chain")
        } else {
            "SELECT chain, seq, tag FROM audit_chain_head ORDER BY chain"
        };
        all(sqlx::query_as::<Db, HeadRow>(sql)
            .fetch_all(&mut *self.tx)
            .await?)
    }

    async fn audit_seals(&mut self) -> StoreResult<Vec<Seal>> {
        all(
            sqlx::query_as::<Db, SealRow>("SELECT * FROM audit_seal ORDER BY seal_id")
                .fetch_all(&mut *self.tx)
                .await?,
        )
    }

    async fn last_seal(&mut self) -> StoreResult<Option<Seal>> {
        sqlx::query_as::<Db, SealRow>("SELECT * FROM audit_seal ORDER BY seal_id DESC LIMIT 1")
            .fetch_optional(&mut *self.tx)
            .await?
            .map(Seal::try_from)
            .transpose()
    }

    async fn insert_seal(&mut self, seal: &Seal) -> StoreResult<()> {
        sqlx::query::<Db>(
            "INSERT INTO audit_seal (seal_id, sealed_at, heads, key_id, tag) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(seal.seal_id)
        .bind(seal.sealed_at)
        .bind(&seal.heads)
        .bind(seal.key_id.stored())
        .bind(&seal.tag[..])
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }
}
