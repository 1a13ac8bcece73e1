//! The audit trail's rows. The store only persists records; which events a change produces,
//! and when, is the service's.

use chrono::{DateTime, Utc};

use super::Db;
use crate::audit::{AuditEvent, AuditRecord, AuditSigner, ChainHead, Seal, encode_heads};
use crate::domain::PageRows;
use crate::keys::KeyId;
use crate::store::backend::locking;
use crate::store::rows::{AuditRecordRow, HeadRow, SealRow, all};
use crate::store::{AuditRepo, SqlTx, StoreError, StoreResult};

fn chain_column(chain: u32) -> StoreResult<i32> {
    i32::try_from(chain).map_err(|_| StoreError::corrupt("chain"))
}

impl AuditRepo for SqlTx<Db> {
    async fn append(
        &mut self,
        signer: &AuditSigner,
        event: &AuditEvent,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let chain = chain_column(event.chain())?;
        // The head row's lock (PostgreSQL) or the write lock (SQLite) serialises this chain; a
        // rotation changes the head's key under the same lock, so the key read here is current.
        let head = ChainHead::try_from(
            sqlx::query_as::<Db, HeadRow>(locking!(
                "SELECT chain, seq, tag, hash, key_id FROM audit_chain_head WHERE chain = $1"
            ))
            .bind(chain)
            .fetch_one(&mut *self.tx)
            .await?,
        )?;
        if head.key_id != Some(signer.key_id()) {
            return Err(StoreError::Moved("the active audit key"));
        }
        let record = signer.seal_record(event, &head, at);
        sqlx::query::<Db>(
            "INSERT INTO audit_record \
             (chain, seq, recorded_at, actor, action, subject, details, key_id, tag, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
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
        .bind(&record.hash[..])
        .execute(&mut *self.tx)
        .await?;
        sqlx::query::<Db>(
            "UPDATE audit_chain_head SET seq = $1, tag = $2, hash = $3 WHERE chain = $4",
        )
        .bind(record.seq)
        .bind(&record.tag[..])
        .bind(&record.hash[..])
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
        all(sqlx::query_as::<Db, AuditRecordRow>(
            "SELECT * FROM audit_record WHERE (chain, seq) > ($1, $2) \
             ORDER BY chain, seq LIMIT $3",
        )
        .bind(chain_column(after.0)?)
        .bind(after.1)
        .bind(i64::from(rows.get()))
        .fetch_all(&mut *self.tx)
        .await?)
    }

    async fn chain_page(
        &mut self,
        chain: u32,
        after: i64,
        rows: PageRows,
    ) -> StoreResult<Vec<AuditRecord>> {
        all(sqlx::query_as::<Db, AuditRecordRow>(
            "SELECT * FROM audit_record WHERE chain = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(chain_column(chain)?)
        .bind(after)
        .bind(i64::from(rows.get()))
        .fetch_all(&mut *self.tx)
        .await?)
    }

    async fn audit_key_activations(&mut self) -> StoreResult<Vec<AuditRecord>> {
        // The action is a literal so both planners use the partial index.
        all(sqlx::query_as::<Db, AuditRecordRow>(
            "SELECT * FROM audit_record WHERE action = 'key.activated' \
             AND subject LIKE 'key:audit:%' ORDER BY chain, seq",
        )
        .fetch_all(&mut *self.tx)
        .await?)
    }

    async fn audit_heads(&mut self, lock: bool) -> StoreResult<Vec<ChainHead>> {
        let sql = if lock {
            locking!("SELECT chain, seq, tag, hash, key_id FROM audit_chain_head ORDER BY chain")
        } else {
            "SELECT chain, seq, tag, hash, key_id FROM audit_chain_head ORDER BY chain"
        };
        all(sqlx::query_as::<Db, HeadRow>(sql)
            .fetch_all(&mut *self.tx)
            .await?)
    }

    async fn set_chain_key(&mut self, key_id: KeyId) -> StoreResult<()> {
        sqlx::query::<Db>("UPDATE audit_chain_head SET key_id = $1")
            .bind(key_id.stored())
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn set_record_hash(&mut self, chain: u32, seq: i64, hash: &[u8; 32]) -> StoreResult<()> {
        let chain = chain_column(chain)?;
        sqlx::query::<Db>("UPDATE audit_record SET hash = $1 WHERE chain = $2 AND seq = $3")
            .bind(&hash[..])
            .bind(chain)
            .bind(seq)
            .execute(&mut *self.tx)
            .await?;
        sqlx::query::<Db>("UPDATE audit_chain_head SET hash = $1 WHERE chain = $2 AND seq = $3")
            .bind(&hash[..])
            .bind(chain)
            .bind(seq)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn seal_page(&mut self, after: i64, rows: PageRows) -> StoreResult<Vec<Seal>> {
        all(sqlx::query_as::<Db, SealRow>(
            "SELECT * FROM audit_seal WHERE seal_id > $1 ORDER BY seal_id LIMIT $2",
        )
        .bind(after)
        .bind(i64::from(rows.get()))
        .fetch_all(&mut *self.tx)
        .await?)
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
            "INSERT INTO audit_seal (seal_id, sealed_at, heads, key_fingerprint, hash, signature) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(seal.seal_id)
        .bind(seal.sealed_at)
        .bind(encode_heads(&seal.heads))
        .bind(&seal.key_fingerprint[..])
        .bind(&seal.hash[..])
        .bind(&seal.signature[..])
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }
}
