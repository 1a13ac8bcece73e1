//! API clients.

use chrono::{DateTime, Utc};

use super::Db;
use crate::domain::{Actor, ApiClient, ApiKeyName, PageRows};
use crate::store::api_keys::{ApiKeyRepo, NewApiClient, StoredApiClient};
use crate::store::rows::{ApiClientRow, all};
use crate::store::{SqlTx, StoreResult};

impl ApiKeyRepo for SqlTx<Db> {
    async fn insert_api_client(&mut self, new: &NewApiClient<'_>) -> StoreResult<bool> {
        let done = sqlx::query::<Db>(
            "INSERT INTO api_client (name, role, retailer_id, store_code, key_id, mac_key_id, \
             secret_mac, created_at, created_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
        )
        .bind(new.name.as_str())
        .bind(new.role.as_str())
        .bind(new.retailer_id.map(|id| id.0))
        .bind(new.store.map(|store| store.as_str()))
        .bind(new.key_id)
        .bind(new.mac_key_id.stored())
        .bind(&new.secret_mac.0[..])
        .bind(new.at)
        .bind(new.actor.as_str())
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn api_client_by_name(&mut self, name: &ApiKeyName) -> StoreResult<Option<ApiClient>> {
        sqlx::query_as::<Db, ApiClientRow>("SELECT * FROM api_client WHERE name = $1")
            .bind(name.as_str())
            .fetch_optional(&mut *self.tx)
            .await?
            .map(ApiClient::try_from)
            .transpose()
    }

    async fn api_client_by_key_id(&mut self, key_id: &str) -> StoreResult<Option<StoredApiClient>> {
        sqlx::query_as::<Db, ApiClientRow>("SELECT * FROM api_client WHERE key_id = $1")
            .bind(key_id)
            .fetch_optional(&mut *self.tx)
            .await?
            .map(StoredApiClient::try_from)
            .transpose()
    }

    async fn api_clients(&mut self, rows: PageRows) -> StoreResult<Vec<ApiClient>> {
        all(
            sqlx::query_as::<Db, ApiClientRow>("SELECT * FROM api_client ORDER BY name LIMIT $1")
                .bind(i64::from(rows.get()))
                .fetch_all(&mut *self.tx)
                .await?,
        )
    }

    async fn revoke_api_client(
        &mut self,
        name: &ApiKeyName,
        at: DateTime<Utc>,
        actor: &Actor,
    ) -> StoreResult<Option<ApiClient>> {
        sqlx::query_as::<Db, ApiClientRow>(
            "UPDATE api_client SET revoked_at = $2, revoked_by = $3 \
             WHERE name = $1 AND revoked_at IS NULL RETURNING *",
        )
        .bind(name.as_str())
        .bind(at)
        .bind(actor.as_str())
        .fetch_optional(&mut *self.tx)
        .await?
        .map(ApiClient::try_from)
        .transpose()
    }
}
