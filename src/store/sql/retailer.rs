//! Retailers.

use chrono::{DateTime, Utc};

use super::Db;
use crate::domain::{NewRetailer, PageRows, Retailer, RetailerId, RetailerName};
use crate::store::rows::{RetailerRow, all};
use crate::store::{RetailerRepo, SqlTx, StoreResult};

impl RetailerRepo for SqlTx<Db> {
    async fn insert_retailer(
        &mut self,
        new: &NewRetailer,
        at: DateTime<Utc>,
    ) -> StoreResult<Option<RetailerId>> {
        // No conflict target: a taken key is the rule, and a row keyed before migration 0003
        // (its key a stand-in) is still caught by the name's own UNIQUE.
        let id = sqlx::query_scalar::<Db, i64>(
            "INSERT INTO retailer (name, name_key, commission_bp, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING retailer_id",
        )
        .bind(new.name.as_str())
        .bind(new.name.key())
        .bind(i32::from(new.commission.basis_points()))
        .bind(at)
        .fetch_optional(&mut *self.tx)
        .await?;
        Ok(id.map(RetailerId))
    }

    async fn retailer_by_name(&mut self, name: &RetailerName) -> StoreResult<Option<Retailer>> {
        // By key, so `acme` finds "Acme"; rows keyed before migration 0003 hold a stand-in key,
        // so their exact name finds them too, after any row the key finds.
        sqlx::query_as::<Db, RetailerRow>(
            "SELECT * FROM retailer WHERE name_key = $1 OR name = $2 \
             ORDER BY name_key = $1 DESC, retailer_id LIMIT 1",
        )
        .bind(name.key())
        .bind(name.as_str())
        .fetch_optional(&mut *self.tx)
        .await?
        .map(Retailer::try_from)
        .transpose()
    }

    async fn retailer(&mut self, id: RetailerId) -> StoreResult<Option<Retailer>> {
        sqlx::query_as::<Db, RetailerRow>("SELECT * FROM retailer WHERE retailer_id = $1")
            .bind(id.0)
            .fetch_optional(&mut *self.tx)
            .await?
            .map(Retailer::try_from)
            .transpose()
    }

    async fn retailers(&mut self, rows: PageRows) -> StoreResult<Vec<Retailer>> {
        all(sqlx::query_as::<Db, RetailerRow>(
            "SELECT * FROM retailer ORDER BY retailer_id LIMIT $1",
        )
        .bind(i64::from(rows.get()))
        .fetch_all(&mut *self.tx)
        .await?)
    }
}
