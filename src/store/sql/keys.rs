//! What the database records of each key: fingerprint and state, never the key.

use chrono::{DateTime, Utc};

use super::Db;
use crate::keys::{KeyId, KeyPurpose, KeyState, RecordedKey};
use crate::store::rows::bytes32;
use crate::store::{KeyRepo, SqlTx, StoreError, StoreResult};

impl KeyRepo for SqlTx<Db> {
    async fn recorded_keys(&mut self, purpose: KeyPurpose) -> StoreResult<Vec<RecordedKey>> {
        let rows = sqlx::query_as::<Db, (i16, Vec<u8>, String)>(
            "SELECT key_id, fingerprint, state FROM key_version WHERE purpose = $1 \
             ORDER BY key_id",
        )
        .bind(purpose.name())
        .fetch_all(&mut *self.tx)
        .await?;
        rows.into_iter()
            .map(|(id, fingerprint, state)| {
                Ok(RecordedKey {
                    id: KeyId::from_stored(i64::from(id))
                        .ok_or_else(|| StoreError::corrupt("a recorded key id"))?,
                    fingerprint: bytes32(fingerprint)?,
                    state: KeyState::parse(&state)
                        .ok_or_else(|| StoreError::corrupt("a recorded key state"))?,
                })
            })
            .collect()
    }

    async fn active_key(&mut self, purpose: KeyPurpose) -> StoreResult<Option<KeyId>> {
        let id = sqlx::query_scalar::<Db, i16>(
            "SELECT key_id FROM key_version WHERE purpose = $1 AND state = 'active'",
        )
        .bind(purpose.name())
        .fetch_optional(&mut *self.tx)
        .await?;
        id.map(|id| {
            KeyId::from_stored(i64::from(id))
                .ok_or_else(|| StoreError::corrupt("a recorded key id"))
        })
        .transpose()
    }

    async fn record_key(
        &mut self,
        purpose: KeyPurpose,
        key: &RecordedKey,
        at: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let activated_at = (key.state == KeyState::Active).then_some(at);
        let inserted = sqlx::query::<Db>(
            "INSERT INTO key_version (purpose, key_id, fingerprint, state, added_at, activated_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (purpose, key_id) DO NOTHING",
        )
        .bind(purpose.name())
        .bind(key.id.stored())
        .bind(&key.fingerprint[..])
        .bind(key.state.as_str())
        .bind(at)
        .bind(activated_at)
        .execute(&mut *self.tx)
        .await?
        .rows_affected();
        Ok(inserted == 1)
    }

    async fn activate_key(
        &mut self,
        purpose: KeyPurpose,
        id: KeyId,
        at: DateTime<Utc>,
    ) -> StoreResult<bool> {
        // Retire first: the unique index allows one active key per purpose at any moment.
        sqlx::query::<Db>(
            "UPDATE key_version SET state = 'retired' WHERE purpose = $1 AND state = 'active'",
        )
        .bind(purpose.name())
        .execute(&mut *self.tx)
        .await?;
        let activated = sqlx::query::<Db>(
            "UPDATE key_version SET state = 'active', activated_at = $1 \
             WHERE purpose = $2 AND key_id = $3 AND state = 'pending'",
        )
        .bind(at)
        .bind(purpose.name())
        .bind(id.stored())
        .execute(&mut *self.tx)
        .await?
        .rows_affected();
        Ok(activated == 1)
    }
}
