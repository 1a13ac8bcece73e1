//! Cards. The bulk load and the digest-set lookup are the backend's; the range read is shared.

use std::collections::HashSet;

use super::Db;
use crate::codegen::CodeDigest;
use crate::store::rows::{CardRow, all, int};
use crate::store::{Backend, CardChunk, CardRepo, SqlTx, StoreResult, StoredCard};

impl CardRepo for SqlTx<Db> {
    async fn insert_cards(
        &mut self,
        chunk: &CardChunk<'_>,
        indexes: &[usize],
    ) -> StoreResult<Vec<usize>> {
        <Db as Backend>::insert_cards(&mut self.tx, chunk, indexes).await
    }

    async fn existing_digests(
        &mut self,
        digests: &[CodeDigest],
    ) -> StoreResult<HashSet<CodeDigest>> {
        <Db as Backend>::stored_digests(&mut self.tx, digests).await
    }

    async fn cards_in_range(&mut self, first: u64, last: u64) -> StoreResult<Vec<StoredCard>> {
        all(sqlx::query_as::<Db, CardRow>(
            "SELECT serial, batch_id, lookup_key_id, digest FROM card \
             WHERE serial BETWEEN $1 AND $2 ORDER BY serial",
        )
        .bind(int(first)?)
        .bind(int(last)?)
        .fetch_all(&mut *self.tx)
        .await?)
    }

    async fn delete_cards(&mut self, first: u64, last: u64) -> StoreResult<u64> {
        Ok(
            sqlx::query::<Db>("DELETE FROM card WHERE serial BETWEEN $1 AND $2")
                .bind(int(first)?)
                .bind(int(last)?)
                .execute(&mut *self.tx)
                .await?
                .rows_affected(),
        )
    }
}
