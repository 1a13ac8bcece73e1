//! The SQLite store: one file, WAL, foreign keys on, a busy timeout, and every write under
//! `BEGIN IMMEDIATE` so concurrent writers queue at the start instead of failing at commit.

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::Duration as Days;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool, Transaction};

use super::rows::{
    batch_from_columns, commission_of, key_id_of, name_of, tag_of, unknown_retailer, value_columns,
};
use super::{
    AUDIT_PAGE_ROWS, ChunkCommit, JobPool, JobSummary, Store, StoreError, StoreResult, StoredCard,
};
use crate::audit::{AuditEvent, AuditRecord, AuditSigner, ChainHead, Seal, events};
use crate::codegen::CodeDigest;
use crate::domain::{
    Batch, BatchId, BatchRequest, NewRetailer, Retailer, RetailerId, RetailerName,
    SERIAL_SEQUENCE_MAX,
};
use crate::keys::KeyId;

/// How long a statement waits for another writer before failing.
pub const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections in the pool: SQLite has one writer, so more only helps concurrent readers.
pub const SQLITE_POOL_CONNECTIONS: u32 = 4;
/// Page cache per connection, in KiB: index pages of the card table stay hot during bulk loads.
pub const SQLITE_CACHE_KIB: i64 = 4 * 1024;
/// Cards per multi-row INSERT statement (two bound parameters each, far below SQLite's limit).
const CARDS_PER_STATEMENT: usize = 2_000;
/// Digests per `IN (…)` lookup, below SQLite's limit of 32,766 bound parameters.
const DIGESTS_PER_LOOKUP: usize = 10_000;

/// tender's storage in a SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// Tags the audit records each transaction appends.
    signer: Arc<AuditSigner>,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url` (`sqlite://path`).
    pub async fn connect(url: &str, signer: Arc<AuditSigner>) -> StoreResult<SqliteStore> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(SQLITE_BUSY_TIMEOUT)
            .pragma("cache_size", format!("-{SQLITE_CACHE_KIB}"));
        let pool = SqlitePoolOptions::new()
            .max_connections(SQLITE_POOL_CONNECTIONS)
            .connect_with(options)
            .await?;
        Ok(SqliteStore { pool, signer })
    }

    /// The pool, for benchmarks and tests that inspect the file.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    async fn begin(&self) -> StoreResult<Transaction<'static, Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// Appends `event` to its chain inside `tx`.
    async fn append(
        &self,
        tx: &mut Transaction<'_, Sqlite>,
        event: &AuditEvent,
    ) -> StoreResult<()> {
        let chain = event.chain();
        let head = sqlx::query("SELECT seq, tag FROM audit_chain_head WHERE chain = ?")
            .bind(chain as i64)
            .fetch_one(&mut **tx)
            .await?;
        let prev_tag = tag_of(head.try_get("tag")?)?;
        let seq: i64 = head.try_get::<i64, _>("seq")? + 1;
        let record = self
            .signer
            .seal_record(event, seq, AuditSigner::now(), &prev_tag);
        sqlx::query(
            "INSERT INTO audit_record (chain, seq, recorded_at, actor, action, subject, details, key_id, tag) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(chain as i64)
        .bind(seq)
        .bind(record.recorded_at)
        .bind(&record.actor)
        .bind(&record.action)
        .bind(&record.subject)
        .bind(&record.details)
        .bind(i64::from(record.key_id.get()))
        .bind(&record.tag[..])
        .execute(&mut **tx)
        .await?;
        sqlx::query("UPDATE audit_chain_head SET seq = ?, tag = ? WHERE chain = ?")
            .bind(seq)
            .bind(&record.tag[..])
            .bind(chain as i64)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    async fn batch_in(&self, tx: &mut Transaction<'_, Sqlite>, id: BatchId) -> StoreResult<Batch> {
        let row = sqlx::query("SELECT * FROM batch WHERE batch_id = ?")
            .bind(id.0)
            .fetch_optional(&mut **tx)
            .await?
            .ok_or(StoreError::UnknownBatch(id))?;
        batch_from_row(&row)
    }

    /// Inserts cards `range` of the chunk; returns the indexes whose digest was already taken.
    async fn insert_cards(
        tx: &mut Transaction<'_, Sqlite>,
        chunk: &ChunkCommit<'_>,
        indexes: &[usize],
    ) -> StoreResult<Vec<usize>> {
        // In digest order, each page of the digest index is visited once per chunk instead of
        // at random: far fewer page reads and spills with a small page cache.
        let mut sorted = indexes.to_vec();
        sorted.sort_unstable_by_key(|&i| chunk.digests[i].0);
        let mut taken = Vec::new();
        for part in sorted.chunks(CARDS_PER_STATEMENT) {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO card (serial, batch_id, lookup_key_id, state, digest) ",
            );
            insert.push_values(part, |mut row, &i| {
                row.push_bind((chunk.first_sequence + i as u64) as i64)
                    .push_unseparated(format_args!(
                        ", {}, {}, 0, ",
                        chunk.batch_id.0,
                        chunk.key_id.get()
                    ))
                    .push_bind_unseparated(&chunk.digests[i].0[..]);
            });
            insert.push(" ON CONFLICT (digest) DO NOTHING");
            let inserted = insert.build().execute(&mut **tx).await?.rows_affected();
            // The rare short count: find which serials of this statement are missing.
            if inserted != part.len() as u64 {
                let serial = |i: usize| (chunk.first_sequence + i as u64) as i64;
                let low = part.iter().map(|&i| serial(i)).min().unwrap_or_default();
                let high = part.iter().map(|&i| serial(i)).max().unwrap_or_default();
                let stored: HashSet<i64> =
                    sqlx::query_scalar("SELECT serial FROM card WHERE serial BETWEEN ? AND ?")
                        .bind(low)
                        .bind(high)
                        .fetch_all(&mut **tx)
                        .await?
                        .into_iter()
                        .collect();
                taken.extend(
                    part.iter()
                        .copied()
                        .filter(|&i| !stored.contains(&serial(i))),
                );
            }
        }
        Ok(taken)
    }
}

impl Store for SqliteStore {
    fn job_pool(&self) -> JobPool {
        JobPool::Sqlite(self.pool.clone())
    }

    async fn migrate(&self) -> StoreResult<()> {
        let mut migrator = sqlx::migrate!("migrations/sqlite");
        // apalis keeps its own history in `_sqlx_migrations`; ours must not share it.
        migrator.dangerous_set_table_name("_tender_migrations");
        migrator.run(&self.pool).await?;
        apalis_sqlite::SqliteStorage::<()>::migrations()
            .run(&self.pool)
            .await?;
        Ok(())
    }

    async fn add_retailer(&self, new: &NewRetailer, actor: &str) -> StoreResult<Retailer> {
        let mut tx = self.begin().await?;
        let created_at = AuditSigner::now();
        let inserted = sqlx::query(
            "INSERT INTO retailer (name, commission_bp, created_at) VALUES (?, ?, ?) \
             ON CONFLICT (name) DO NOTHING RETURNING retailer_id",
        )
        .bind(new.name.as_str())
        .bind(i64::from(new.commission.basis_points()))
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
        sqlx::query("SELECT * FROM retailer WHERE name = ?")
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
        let mut tx = self.begin().await?;
        let count = request.count as i64;
        let first: i64 = sqlx::query_scalar(
            "UPDATE serial_counter SET next_sequence = next_sequence + ? RETURNING next_sequence - ?",
        )
        .bind(count)
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
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'requested', ?, ?) RETURNING batch_id",
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
        sqlx::query("SELECT * FROM batch WHERE batch_id = ?")
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?
            .map(|row| batch_from_row(&row))
            .transpose()
    }

    async fn batches(&self, limit: i64) -> StoreResult<Vec<Batch>> {
        sqlx::query("SELECT * FROM batch ORDER BY batch_id DESC LIMIT ?")
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
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE batch SET enqueued_at = ? WHERE batch_id = ? AND enqueued_at IS NULL")
            .bind(AuditSigner::now())
            .bind(id.0)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn claim_generation(&self, id: BatchId, token: &str) -> StoreResult<Batch> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE batch SET generation_token = ?, \
             state = CASE state WHEN 'requested' THEN 'generating' ELSE state END \
             WHERE batch_id = ?",
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
        let mut tx = self.begin().await?;
        let claimed = sqlx::query(
            "UPDATE batch SET generated_count = generated_count + ? \
             WHERE batch_id = ? AND generation_token = ? AND generated_count = ? AND state = 'generating'",
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
        let mut pending: Vec<usize> = (0..chunk.digests.len()).collect();
        while !pending.is_empty() {
            pending = Self::insert_cards(&mut tx, &chunk, &pending).await?;
            for &i in &pending {
                chunk.digests[i] = chunk.cards.regenerate(i);
                collisions += 1;
            }
        }
        let export_bytes = chunk.cards.write_export()?;
        sqlx::query(
            "UPDATE batch SET collisions = collisions + ?, export_bytes = ? WHERE batch_id = ?",
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
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE batch SET state = 'completed', export_sha256 = ?, completed_at = ? \
             WHERE batch_id = ? AND generation_token = ? AND generated_count = card_count \
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
        let mut found = HashSet::new();
        for part in digests.chunks(DIGESTS_PER_LOOKUP) {
            let mut query =
                QueryBuilder::<Sqlite>::new("SELECT digest FROM card WHERE digest IN (");
            let mut list = query.separated(", ");
            for digest in part {
                list.push_bind(&digest.0[..]);
            }
            query.push(")");
            let rows: Vec<Vec<u8>> = query.build_query_scalar().fetch_all(&self.pool).await?;
            for bytes in rows {
                found.insert(CodeDigest(tag_of(bytes)?));
            }
        }
        Ok(found)
    }

    async fn cards_in_range(&self, first: u64, last: u64) -> StoreResult<Vec<StoredCard>> {
        sqlx::query(
            "SELECT serial, batch_id, lookup_key_id, digest FROM card \
             WHERE serial BETWEEN ? AND ? ORDER BY serial",
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
                key_id: key_id_of(row.try_get("lookup_key_id")?)?,
                digest: CodeDigest(tag_of(row.try_get("digest")?)?),
            })
        })
        .collect()
    }

    async fn record(&self, event: AuditEvent) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        self.append(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn audit_page(&self, after: (u32, i64)) -> StoreResult<Vec<AuditRecord>> {
        sqlx::query(
            "SELECT * FROM audit_record WHERE (chain, seq) > (?, ?) ORDER BY chain, seq LIMIT ?",
        )
        .bind(after.0 as i64)
        .bind(after.1)
        .bind(AUDIT_PAGE_ROWS)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| {
            Ok(AuditRecord {
                chain: row.try_get::<i64, _>("chain")? as u32,
                seq: row.try_get("seq")?,
                recorded_at: row.try_get("recorded_at")?,
                actor: row.try_get("actor")?,
                action: row.try_get("action")?,
                subject: row.try_get("subject")?,
                details: row.try_get("details")?,
                key_id: key_id_of(row.try_get("key_id")?)?,
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
        let mut tx = self.begin().await?;
        let heads = heads_from_rows(
            &sqlx::query("SELECT chain, seq, tag FROM audit_chain_head ORDER BY chain")
                .fetch_all(&mut *tx)
                .await?,
        )?;
        let last = sqlx::query("SELECT * FROM audit_seal ORDER BY seal_id DESC LIMIT 1")
            .fetch_optional(&mut *tx)
            .await?
            .map(|row| seal_from_row(&row))
            .transpose()?;
        let (seal_id, prev_tag) =
            last.map_or((1, crate::audit::GENESIS_TAG), |s| (s.seal_id + 1, s.tag));
        let seal = self
            .signer
            .seal_heads(seal_id, AuditSigner::now(), &heads, &prev_tag);
        sqlx::query("INSERT INTO audit_seal (seal_id, sealed_at, heads, key_id, tag) VALUES (?, ?, ?, ?, ?)")
            .bind(seal.seal_id)
            .bind(seal.sealed_at)
            .bind(&seal.heads)
            .bind(i64::from(seal.key_id.get()))
            .bind(&seal.tag[..])
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(seal)
    }

    async fn jobs(&self, limit: i64) -> StoreResult<Vec<JobSummary>> {
        sqlx::query(
            "SELECT id, job_type, status, attempts, max_attempts, last_result FROM Jobs \
             ORDER BY run_at DESC, id DESC LIMIT ?",
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
                attempts: row.try_get("attempts")?,
                max_attempts: row.try_get("max_attempts")?,
                last_result: row.try_get("last_result")?,
            })
        })
        .collect()
    }

    async fn unfinished_jobs(&self, queues: &[String]) -> StoreResult<i64> {
        let mut total = 0;
        for queue in queues {
            total += sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM Jobs WHERE job_type = ? AND \
                 ((status = 'Pending' AND run_at <= strftime('%s', 'now')) \
                  OR status IN ('Queued', 'Running') \
                  OR (status = 'Failed' AND attempts < max_attempts))",
            )
            .bind(queue)
            .fetch_one(&self.pool)
            .await?;
        }
        Ok(total)
    }
}

fn retailer_from_row(row: &SqliteRow) -> StoreResult<Retailer> {
    Ok(Retailer {
        id: RetailerId(row.try_get("retailer_id")?),
        name: name_of(row.try_get("name")?)?,
        commission_bp: commission_of(row.try_get("commission_bp")?)?,
        created_at: row.try_get("created_at")?,
    })
}

fn batch_from_row(row: &SqliteRow) -> StoreResult<Batch> {
    batch_from_columns(sqlx::FromRow::from_row(row)?)
}

fn heads_from_rows(rows: &[SqliteRow]) -> StoreResult<Vec<ChainHead>> {
    rows.iter()
        .map(|row| {
            Ok(ChainHead {
                chain: row.try_get::<i64, _>("chain")? as u32,
                seq: row.try_get("seq")?,
                tag: tag_of(row.try_get("tag")?)?,
            })
        })
        .collect()
}

fn seal_from_row(row: &SqliteRow) -> StoreResult<Seal> {
    Ok(Seal {
        seal_id: row.try_get("seal_id")?,
        sealed_at: row.try_get("sealed_at")?,
        heads: row.try_get("heads")?,
        key_id: key_id_of(row.try_get("key_id")?)?,
        tag: tag_of(row.try_get("tag")?)?,
    })
}
