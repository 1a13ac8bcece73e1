//! The PostgreSQL store: several API servers and job runners share one database. Row locks
//! (`FOR UPDATE`, guarded `UPDATE`s) serialise what must be serial; cards arrive by `COPY`.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use chrono::Duration as Days;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{Acquire, PgPool, Postgres, Row, Transaction};

use super::rows::{
    batch_from_columns, commission_of, key_id_of, name_of, tag_of, unknown_retailer, value_columns,
};
use super::{
    AUDIT_PAGE_ROWS, ChunkCommit, JobPool, JobSummary, Store, StoreError, StoreResult, StoredCard,
};
use crate::audit::{AuditEvent, AuditRecord, AuditSigner, ChainHead, GENESIS_TAG, Seal, events};
use crate::codegen::CodeDigest;
use crate::domain::{
    Batch, BatchId, BatchRequest, NewRetailer, Retailer, RetailerId, RetailerName,
    SERIAL_SEQUENCE_MAX,
};
use crate::keys::KeyId;

/// Connections per process: enough for the API and a few job workers, small enough that several
/// processes stay well under PostgreSQL's default limit of 100.
pub const PG_POOL_CONNECTIONS: u32 = 8;
/// How long to wait for a free connection before failing.
pub const PG_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);
/// How many times a chunk's COPY is retried after digest collisions before giving up.
const COPY_ATTEMPTS: usize = 8;

/// tender's storage in a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    /// Tags the audit records each transaction appends.
    signer: Arc<AuditSigner>,
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://…`).
    pub async fn connect(url: &str, signer: Arc<AuditSigner>) -> StoreResult<PgStore> {
        let options: PgConnectOptions = url.parse()?;
        let pool = PgPoolOptions::new()
            .max_connections(PG_POOL_CONNECTIONS)
            .acquire_timeout(PG_ACQUIRE_TIMEOUT)
            .connect_with(options.application_name("tender"))
            .await?;
        Ok(PgStore { pool, signer })
    }

    /// The pool, for benchmarks and tests.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Appends `event` to its chain inside `tx`; the head row lock serialises appends per chain.
    async fn append(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        event: &AuditEvent,
    ) -> StoreResult<()> {
        let chain = event.chain() as i32;
        let head = sqlx::query("SELECT seq, tag FROM audit_chain_head WHERE chain = $1 FOR UPDATE")
            .bind(chain)
            .fetch_one(&mut **tx)
            .await?;
        let prev_tag = tag_of(head.try_get("tag")?)?;
        let seq: i64 = head.try_get::<i64, _>("seq")? + 1;
        let record = self
            .signer
            .seal_record(event, seq, AuditSigner::now(), &prev_tag);
        sqlx::query(
            "INSERT INTO audit_record (chain, seq, recorded_at, actor, action, subject, details, key_id, tag) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(chain)
        .bind(seq)
        .bind(record.recorded_at)
        .bind(&record.actor)
        .bind(&record.action)
        .bind(&record.subject)
        .bind(&record.details)
        .bind(i32::from(record.key_id.get()))
        .bind(&record.tag[..])
        .execute(&mut **tx)
        .await?;
        sqlx::query("UPDATE audit_chain_head SET seq = $1, tag = $2 WHERE chain = $3")
            .bind(seq)
            .bind(&record.tag[..])
            .bind(chain)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    async fn batch_in(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        id: BatchId,
    ) -> StoreResult<Batch> {
        let row = sqlx::query("SELECT * FROM batch WHERE batch_id = $1")
            .bind(id.0)
            .fetch_optional(&mut **tx)
            .await?
            .ok_or(StoreError::UnknownBatch(id))?;
        batch_from_row(&row)
    }

    /// COPYs the chunk's cards inside a savepoint; `false` if a digest was already taken (the
    /// savepoint is then rolled back and nothing of the chunk is stored).
    async fn copy_cards(
        tx: &mut Transaction<'_, Postgres>,
        chunk: &ChunkCommit<'_>,
    ) -> StoreResult<bool> {
        // In digest order, the digest index takes the chunk as a sweep, not random inserts.
        let mut order: Vec<usize> = (0..chunk.digests.len()).collect();
        order.sort_unstable_by_key(|&i| chunk.digests[i].0);
        let mut data = String::with_capacity(chunk.digests.len() * 96);
        for i in order {
            let digest = &chunk.digests[i];
            let _ = writeln!(
                data,
                "{},{},{},0,\\x{}",
                chunk.first_sequence + i as u64,
                chunk.batch_id.0,
                chunk.key_id.get(),
                hex::encode(digest.0)
            );
        }
        let mut savepoint = tx.begin().await?;
        let copied = async {
            let mut copy = savepoint
                .copy_in_raw(
                    "COPY card (serial, batch_id, lookup_key_id, state, digest) FROM STDIN WITH (FORMAT csv)",
                )
                .await?;
            copy.send(data.as_bytes()).await?;
            copy.finish().await
        }
        .await;
        match copied {
            Ok(_) => {
                savepoint.commit().await?;
                Ok(true)
            }
            Err(sqlx::Error::Database(db)) if db.constraint() == Some("card_digest_unique") => {
                savepoint.rollback().await?;
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Indexes of the chunk whose digest is already stored or repeats within the chunk.
    async fn taken_digests(
        tx: &mut Transaction<'_, Postgres>,
        digests: &[CodeDigest],
    ) -> StoreResult<Vec<usize>> {
        let stored = stored_digests(&mut **tx, digests).await?;
        let mut seen = HashSet::with_capacity(digests.len());
        Ok(digests
            .iter()
            .enumerate()
            .filter(|(_, d)| stored.contains(*d) || !seen.insert(d.0))
            .map(|(i, _)| i)
            .collect())
    }
}

/// Which of `digests` a stored card carries.
async fn stored_digests<'c>(
    executor: impl sqlx::PgExecutor<'c>,
    digests: &[CodeDigest],
) -> StoreResult<HashSet<CodeDigest>> {
    let all: Vec<&[u8]> = digests.iter().map(|d| &d.0[..]).collect();
    sqlx::query_scalar("SELECT digest FROM card WHERE digest = ANY($1)")
        .bind(&all)
        .fetch_all(executor)
        .await?
        .into_iter()
        .map(|bytes: Vec<u8>| tag_of(bytes).map(CodeDigest))
        .collect()
}

impl Store for PgStore {
    fn job_pool(&self) -> JobPool {
        JobPool::Postgres(self.pool.clone())
    }

    async fn migrate(&self) -> StoreResult<()> {
        sqlx::migrate!("migrations/postgres")
            .run(&self.pool)
            .await?;
        // apalis keeps its tables and migration history in its own `apalis` schema.
        apalis_postgres::PostgresStorage::<()>::migrations()
            .run(&self.pool)
            .await?;
        Ok(())
    }

    async fn add_retailer(&self, new: &NewRetailer, actor: &str) -> StoreResult<Retailer> {
        let mut tx = self.pool.begin().await?;
        let created_at = AuditSigner::now();
        let inserted = sqlx::query(
            "INSERT INTO retailer (name, commission_bp, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO NOTHING RETURNING retailer_id",
        )
        .bind(new.name.as_str())
        .bind(i32::from(new.commission.basis_points()))
        .bind(created_at)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = inserted else {
            return Err(StoreError::DuplicateRetailer(new.name.to_string()));
        };
        let retailer = Retailer {
            id: RetailerId(row.try_get("retailer_id")?),
            name: new.name.clone(),
            commission_bp: new.commission,
            created_at,
        };
        self.append(&mut tx, &events::retailer_added(actor, &retailer))
            .await?;
        tx.commit().await?;
        Ok(retailer)
    }

    async fn retailer_by_name(&self, name: &RetailerName) -> StoreResult<Option<Retailer>> {
        sqlx::query("SELECT * FROM retailer WHERE name = $1")
            .bind(name.as_str())
            .fetch_optional(&self.pool)
            .await?
            .map(|row| retailer_from_row(&row))
            .transpose()
    }

    async fn retailers(&self) -> StoreResult<Vec<Retailer>> {
        sqlx::query("SELECT * FROM retailer ORDER BY retailer_id")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(retailer_from_row)
            .collect()
    }

    async fn create_batch(
        &self,
        request: &BatchRequest,
        lookup_key_id: KeyId,
        actor: &str,
    ) -> StoreResult<Batch> {
        let mut tx = self.pool.begin().await?;
        let count = request.count as i64;
        let first: i64 = sqlx::query_scalar(
            "UPDATE serial_counter SET next_sequence = next_sequence + $1 RETURNING next_sequence - $1",
        )
        .bind(count)
        .fetch_one(&mut *tx)
        .await?;
        if (first + count - 1) as u64 > SERIAL_SEQUENCE_MAX {
            return Err(StoreError::SerialsExhausted);
        }
        let requested_at = AuditSigner::now();
        let expires_at = request
            .expires_in_days
            .map(|days| requested_at + Days::days(i64::from(days)));
        let (value, min, max) = value_columns(&request.value);
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO batch (retailer_id, card_count, currency, value_minor, min_minor, max_minor, \
             region, expires_at, first_sequence, lookup_key_id, state, requested_by, requested_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'requested', $11, $12) RETURNING batch_id",
        )
        .bind(request.retailer_id.0)
        .bind(count)
        .bind(request.value.currency().code())
        .bind(value)
        .bind(min)
        .bind(max)
        .bind(request.region.as_str())
        .bind(expires_at)
        .bind(first)
        .bind(i64::from(lookup_key_id.get()))
        .bind(actor)
        .bind(requested_at)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| unknown_retailer(e, request.retailer_id))?;
        let batch = self.batch_in(&mut tx, BatchId(id)).await?;
        self.append(&mut tx, &events::batch_requested(actor, &batch))
            .await?;
        tx.commit().await?;
        Ok(batch)
    }

    async fn batch(&self, id: BatchId) -> StoreResult<Option<Batch>> {
        sqlx::query("SELECT * FROM batch WHERE batch_id = $1")
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?
            .map(|row| batch_from_row(&row))
            .transpose()
    }

    async fn batches(&self, limit: i64) -> StoreResult<Vec<Batch>> {
        sqlx::query("SELECT * FROM batch ORDER BY batch_id DESC LIMIT $1")
            .bind(limit)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(batch_from_row)
            .collect()
    }

    async fn batches_awaiting_enqueue(&self) -> StoreResult<Vec<BatchId>> {
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT batch_id FROM batch WHERE enqueued_at IS NULL ORDER BY batch_id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(ids.into_iter().map(BatchId).collect())
    }

    async fn mark_enqueued(&self, id: BatchId) -> StoreResult<()> {
        sqlx::query(
            "UPDATE batch SET enqueued_at = $1 WHERE batch_id = $2 AND enqueued_at IS NULL",
        )
        .bind(AuditSigner::now())
        .bind(id.0)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn claim_generation(&self, id: BatchId, token: &str) -> StoreResult<Batch> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE batch SET generation_token = $1, \
             state = CASE state WHEN 'requested' THEN 'generating' ELSE state END \
             WHERE batch_id = $2",
        )
        .bind(token)
        .bind(id.0)
        .execute(&mut *tx)
        .await?;
        let batch = self.batch_in(&mut tx, id).await?;
        tx.commit().await?;
        Ok(batch)
    }

    async fn commit_chunk(&self, chunk: ChunkCommit<'_>) -> StoreResult<u64> {
        let count = chunk.digests.len() as u64;
        let mut tx = self.pool.begin().await?;
        // The guard takes the batch row's lock: a second run of the same batch waits here, then
        // finds the progress moved on and stops.
        let claimed = sqlx::query(
            "UPDATE batch SET generated_count = generated_count + $1 \
             WHERE batch_id = $2 AND generation_token = $3 AND generated_count = $4 AND state = 'generating'",
        )
        .bind(count as i64)
        .bind(chunk.batch_id.0)
        .bind(chunk.token)
        .bind(chunk.first_index as i64)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if claimed != 1 {
            return Err(StoreError::LostLease(chunk.batch_id));
        }
        let mut collisions = chunk.redrawn;
        let mut attempts = 0;
        while !Self::copy_cards(&mut tx, &chunk).await? {
            attempts += 1;
            if attempts == COPY_ATTEMPTS {
                return Err(StoreError::Corrupt(format!(
                    "batch {}: digests kept colliding after {COPY_ATTEMPTS} attempts",
                    chunk.batch_id
                )));
            }
            loop {
                let taken = Self::taken_digests(&mut tx, chunk.digests).await?;
                if taken.is_empty() {
                    break;
                }
                for i in taken {
                    chunk.digests[i] = chunk.cards.regenerate(i);
                    collisions += 1;
                }
            }
        }
        let export_bytes = chunk.cards.write_export()?;
        sqlx::query(
            "UPDATE batch SET collisions = collisions + $1, export_bytes = $2 WHERE batch_id = $3",
        )
        .bind(collisions as i64)
        .bind(export_bytes as i64)
        .bind(chunk.batch_id.0)
        .execute(&mut *tx)
        .await?;
        let event = events::chunk_generated(
            chunk.actor,
            chunk.batch_id,
            chunk.first_index,
            count,
            collisions,
            export_bytes,
        );
        self.append(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(collisions)
    }

    async fn complete_batch(
        &self,
        id: BatchId,
        token: &str,
        export_sha256: &str,
        export_file_name: &str,
        actor: &str,
    ) -> StoreResult<Batch> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE batch SET state = 'completed', export_sha256 = $1, completed_at = $2 \
             WHERE batch_id = $3 AND generation_token = $4 AND generated_count = card_count \
             AND state = 'generating'",
        )
        .bind(export_sha256)
        .bind(AuditSigner::now())
        .bind(id.0)
        .bind(token)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if done != 1 {
            return Err(StoreError::LostLease(id));
        }
        let batch = self.batch_in(&mut tx, id).await?;
        self.append(&mut tx, &events::batch_completed(actor, &batch))
            .await?;
        self.append(
            &mut tx,
            &events::export_written(actor, &batch, export_file_name),
        )
        .await?;
        tx.commit().await?;
        Ok(batch)
    }

    async fn existing_digests(&self, digests: &[CodeDigest]) -> StoreResult<HashSet<CodeDigest>> {
        stored_digests(&self.pool, digests).await
    }

    async fn cards_in_range(&self, first: u64, last: u64) -> StoreResult<Vec<StoredCard>> {
        sqlx::query(
            "SELECT serial, batch_id, lookup_key_id, digest FROM card \
             WHERE serial BETWEEN $1 AND $2 ORDER BY serial",
        )
        .bind(first as i64)
        .bind(last as i64)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| {
            Ok(StoredCard {
                sequence: row.try_get::<i64, _>("serial")? as u64,
                batch_id: BatchId(row.try_get("batch_id")?),
                key_id: key_id_of(i64::from(row.try_get::<i16, _>("lookup_key_id")?))?,
                digest: CodeDigest(tag_of(row.try_get("digest")?)?),
            })
        })
        .collect()
    }

    async fn record(&self, event: AuditEvent) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        self.append(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn audit_page(&self, after: (u32, i64)) -> StoreResult<Vec<AuditRecord>> {
        sqlx::query(
            "SELECT * FROM audit_record WHERE (chain, seq) > ($1, $2) ORDER BY chain, seq LIMIT $3",
        )
        .bind(after.0 as i32)
        .bind(after.1)
        .bind(AUDIT_PAGE_ROWS)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| {
            Ok(AuditRecord {
                chain: row.try_get::<i32, _>("chain")? as u32,
                seq: row.try_get("seq")?,
                recorded_at: row.try_get("recorded_at")?,
                actor: row.try_get("actor")?,
                action: row.try_get("action")?,
                subject: row.try_get("subject")?,
                details: row.try_get("details")?,
                key_id: key_id_of(i64::from(row.try_get::<i32, _>("key_id")?))?,
                tag: tag_of(row.try_get("tag")?)?,
            })
        })
        .collect()
    }

    async fn audit_heads(&self) -> StoreResult<Vec<ChainHead>> {
        heads_from_rows(
            &sqlx::query("SELECT chain, seq, tag FROM audit_chain_head ORDER BY chain")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    async fn audit_seals(&self) -> StoreResult<Vec<Seal>> {
        sqlx::query("SELECT * FROM audit_seal ORDER BY seal_id")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(seal_from_row)
            .collect()
    }

    async fn seal_audit(&self) -> StoreResult<Seal> {
        let mut tx = self.pool.begin().await?;
        // Locking every head row makes the seal a consistent cut: no chain moves while it is taken.
        let heads = heads_from_rows(
            &sqlx::query("SELECT chain, seq, tag FROM audit_chain_head ORDER BY chain FOR UPDATE")
                .fetch_all(&mut *tx)
                .await?,
        )?;
        let last = sqlx::query("SELECT * FROM audit_seal ORDER BY seal_id DESC LIMIT 1")
            .fetch_optional(&mut *tx)
            .await?
            .map(|row| seal_from_row(&row))
            .transpose()?;
        let (seal_id, prev_tag) = last.map_or((1, GENESIS_TAG), |s| (s.seal_id + 1, s.tag));
        let seal = self
            .signer
            .seal_heads(seal_id, AuditSigner::now(), &heads, &prev_tag);
        sqlx::query("INSERT INTO audit_seal (seal_id, sealed_at, heads, key_id, tag) VALUES ($1, $2, $3, $4, $5)")
            .bind(seal.seal_id)
            .bind(seal.sealed_at)
            .bind(&seal.heads)
            .bind(i32::from(seal.key_id.get()))
            .bind(&seal.tag[..])
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(seal)
    }

    async fn jobs(&self, limit: i64) -> StoreResult<Vec<JobSummary>> {
        sqlx::query(
            "SELECT id, job_type, status, attempts, max_attempts, last_result::text AS last_result \
             FROM apalis.jobs ORDER BY run_at DESC, id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| {
            Ok(JobSummary {
                id: row.try_get("id")?,
                queue: row.try_get("job_type")?,
                status: row.try_get("status")?,
                attempts: i64::from(row.try_get::<i32, _>("attempts")?),
                max_attempts: i64::from(row.try_get::<i32, _>("max_attempts")?),
                last_result: row.try_get("last_result")?,
            })
        })
        .collect()
    }

    async fn unfinished_jobs(&self, queues: &[String]) -> StoreResult<i64> {
        Ok(sqlx::query_scalar(
            "SELECT count(*) FROM apalis.jobs WHERE job_type = ANY($1) AND \
             ((status = 'Pending' AND run_at <= now()) \
              OR status IN ('Queued', 'Running') \
              OR (status = 'Failed' AND attempts < max_attempts))",
        )
        .bind(queues)
        .fetch_one(&self.pool)
        .await?)
    }
}

fn retailer_from_row(row: &PgRow) -> StoreResult<Retailer> {
    Ok(Retailer {
        id: RetailerId(row.try_get("retailer_id")?),
        name: name_of(row.try_get("name")?)?,
        commission_bp: commission_of(i64::from(row.try_get::<i32, _>("commission_bp")?))?,
        created_at: row.try_get("created_at")?,
    })
}

fn batch_from_row(row: &PgRow) -> StoreResult<Batch> {
    batch_from_columns(sqlx::FromRow::from_row(row)?)
}

fn heads_from_rows(rows: &[PgRow]) -> StoreResult<Vec<ChainHead>> {
    rows.iter()
        .map(|row| {
            Ok(ChainHead {
                chain: row.try_get::<i32, _>("chain")? as u32,
                seq: row.try_get("seq")?,
                tag: tag_of(row.try_get("tag")?)?,
            })
        })
        .collect()
}

fn seal_from_row(row: &PgRow) -> StoreResult<Seal> {
    Ok(Seal {
        seal_id: row.try_get("seal_id")?,
        sealed_at: row.try_get("sealed_at")?,
        heads: row.try_get("heads")?,
        key_id: key_id_of(i64::from(row.try_get::<i32, _>("key_id")?))?,
        tag: tag_of(row.try_get("tag")?)?,
    })
}
