//! [`PostgresStore`]: the [`AnalyticsStore`] on PostgreSQL.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgExecutor, PgPool, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::types::chrono::{DateTime, Utc};
use sqlx::{Postgres, Row};
use tributary_core::Timestamp;
use tributary_core::ports::{
    AnalyticsStore, Checkpoint, Claim, PartitionOffset, PortError, ResultQuery, StateChunk,
    StateDelta,
};
use tributary_core::window::WindowResult;

use super::config::PostgresConfig;
use super::error::{DIALECT, SYSTEM, migrate_error, sqlx_error};
use crate::sql::{OutOfRange, chunks_query, delta_statements, results_query};

/// How long [`PostgresStore::connect`] waits for a first connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The earliest time a `timestamptz` holds (4714-11-24 BC, 00:00 UTC), in epoch millis.
/// The latest time chrono holds comes before PostgreSQL's latest, so chrono bounds that end.
const PG_MIN_MILLIS: i64 = -210_866_803_200_000;

/// The schema, embedded at build time from `migrations/postgres/`.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Upserts a batch of results, one row per element of the arrays.
const UPSERT_RESULTS: &str = "\
INSERT INTO window_results (pipeline, window_start, window_end, key, count, closed, updated_at)
SELECT r.pipeline, r.window_start, r.window_end, r.key, r.count, r.closed, now()
FROM UNNEST($1::text[], $2::timestamptz[], $3::timestamptz[], $4::text[], $5::bigint[], $6::bool[])
    AS r (pipeline, window_start, window_end, key, count, closed)
ON CONFLICT (pipeline, window_start, key) DO UPDATE
SET window_end = EXCLUDED.window_end,
    count = EXCLUDED.count,
    closed = EXCLUDED.closed,
    updated_at = EXCLUDED.updated_at";

/// Bumps the pipeline's generation (1 at its first claim); the row stays locked until the
/// transaction ends.
const BUMP_GENERATION: &str = "\
INSERT INTO pipeline_owners (pipeline, generation, claimed_at)
VALUES ($1, 1, now())
ON CONFLICT (pipeline) DO UPDATE
SET generation = pipeline_owners.generation + 1,
    claimed_at = EXCLUDED.claimed_at
RETURNING generation";

/// Writes the checkpoint row, under the lock of the pipeline's owner row.
const UPSERT_CHECKPOINT: &str = "\
INSERT INTO checkpoints (pipeline, epoch, offsets, state, watermark, committed_at)
VALUES ($1, $2, $3, $4, $5, now())
ON CONFLICT (pipeline) DO UPDATE
SET epoch = EXCLUDED.epoch,
    offsets = EXCLUDED.offsets,
    state = EXCLUDED.state,
    watermark = EXCLUDED.watermark,
    committed_at = EXCLUDED.committed_at";

/// What this store refuses before asking PostgreSQL, beyond [`crate::sql`]'s checks.
#[derive(Debug, thiserror::Error)]
enum Invalid {
    /// A time outside what `timestamptz` and chrono both hold.
    #[error("time {0} ({millis} ms) is outside the range PostgreSQL can store", millis = .0.millis())]
    TimeOutOfRange(Timestamp),
}

/// Window results and checkpoints in PostgreSQL. Cheap to clone: clones share the pool.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects, waiting at most about ten seconds for a first connection, and brings the
    /// schema up to date.
    ///
    /// # Errors
    /// [`PortError::Refused`] for a malformed URL or failed authentication,
    /// [`PortError::Unavailable`] when the server does not answer in time,
    /// [`PortError::Corrupt`] when the database's applied migrations differ from ours.
    pub async fn connect(config: &PostgresConfig) -> Result<Self, PortError> {
        let options = PgConnectOptions::from_str(&config.url)
            .map_err(sqlx_error)?
            .application_name("tributary");
        let connecting = PgPoolOptions::new()
            .max_connections(config.max_connections.max(1))
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_with(options);
        let pool = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|elapsed| PortError::unavailable(SYSTEM, elapsed))?
            .map_err(sqlx_error)?;
        MIGRATOR.run(&pool).await.map_err(migrate_error)?;
        tracing::info!(
            max_connections = config.max_connections,
            "postgres analytics store ready"
        );
        Ok(Self { pool })
    }

    /// The connection pool, for stores that share the database.
    #[must_use]
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Closes every connection; calls made afterwards fail with `Unavailable`.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// `ts` as a `timestamptz` value, when PostgreSQL can hold it.
fn pg_time(ts: Timestamp) -> Result<DateTime<Utc>, OutOfRange> {
    if ts.millis() < PG_MIN_MILLIS {
        Err(OutOfRange::Before)
    } else {
        ts.to_datetime().ok_or(OutOfRange::After)
    }
}

/// `ts` as a `timestamptz` value, or refused.
fn pg_time_or_refuse(ts: Timestamp) -> Result<DateTime<Utc>, PortError> {
    pg_time(ts).map_err(|_| PortError::refused(SYSTEM, Invalid::TimeOutOfRange(ts)))
}

/// Reads a `timestamptz` column as a time.
fn pg_column_time(row: &PgRow, column: &str) -> Result<Timestamp, sqlx::Error> {
    let time: DateTime<Utc> = row.try_get(column)?;
    Ok(Timestamp::from_millis(time.timestamp_millis()))
}

/// Results as column arrays for `UNNEST`, the last of duplicates (same pipeline, window
/// start and key) winning, since one statement cannot update a row twice.
#[derive(Debug, Default)]
struct ResultColumns {
    pipelines: Vec<String>,
    starts: Vec<DateTime<Utc>>,
    ends: Vec<DateTime<Utc>>,
    keys: Vec<String>,
    counts: Vec<i64>,
    closed: Vec<bool>,
}

impl ResultColumns {
    fn new(results: &[WindowResult]) -> Result<Self, PortError> {
        let mut columns = Self::default();
        let mut index: HashMap<(&str, Timestamp, &str), usize> = HashMap::new();
        for result in results {
            let start = pg_time_or_refuse(result.window_start)?;
            let end = pg_time_or_refuse(result.window_end)?;
            let count = DIALECT.integer("count", result.count)?;
            let row = (
                result.pipeline.as_str(),
                result.window_start,
                result.key.as_str(),
            );
            if let Some(&i) = index.get(&row) {
                columns.ends[i] = end;
                columns.counts[i] = count;
                columns.closed[i] = result.closed;
                continue;
            }
            index.insert(row, columns.pipelines.len());
            columns.pipelines.push(result.pipeline.clone());
            columns.starts.push(start);
            columns.ends.push(end);
            columns.keys.push(result.key.clone());
            columns.counts.push(count);
            columns.closed.push(result.closed);
        }
        Ok(columns)
    }

    fn len(&self) -> usize {
        self.pipelines.len()
    }

    fn is_empty(&self) -> bool {
        self.pipelines.is_empty()
    }
}

/// The pipeline's last checkpoint, read through `executor`.
async fn read_checkpoint<'e>(
    executor: impl PgExecutor<'e>,
    pipeline: &str,
) -> Result<Option<Checkpoint>, PortError> {
    let row = sqlx::query(
        "SELECT epoch, offsets, state, watermark FROM checkpoints \
         WHERE pipeline = $1 AND epoch > 0",
    )
    .bind(pipeline)
    .fetch_optional(executor)
    .await
    .map_err(sqlx_error)?;
    let Some(row) = row else { return Ok(None) };
    let epoch: i64 = row.try_get("epoch").map_err(sqlx_error)?;
    let Json(offsets): Json<Vec<PartitionOffset>> = row.try_get("offsets").map_err(sqlx_error)?;
    let Json(state): Json<serde_json::Value> = row.try_get("state").map_err(sqlx_error)?;
    let watermark: i64 = row.try_get("watermark").map_err(sqlx_error)?;
    Ok(Some(Checkpoint {
        pipeline: pipeline.to_owned(),
        epoch: DIALECT.unsigned(epoch)?,
        offsets,
        state,
        watermark: Timestamp::from_millis(watermark),
    }))
}

/// The pipeline's state chunks, read through `executor`.
async fn read_chunks<'e>(
    executor: impl PgExecutor<'e>,
    pipeline: &str,
) -> Result<Vec<StateChunk>, PortError> {
    let rows = chunks_query::<Postgres>(pipeline)
        .build()
        .fetch_all(executor)
        .await
        .map_err(sqlx_error)?;
    rows.iter().map(|row| DIALECT.chunk_from_row(row)).collect()
}

#[async_trait]
impl AnalyticsStore for PostgresStore {
    async fn ping(&self) -> Result<(), PortError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(sqlx_error)?;
        Ok(())
    }

    async fn claim(&self, pipeline: &str) -> Result<Claim, PortError> {
        let mut tx = self.pool.begin().await.map_err(sqlx_error)?;
        // The bump locks the owner row until the commit below: an older owner's commit
        // either finished before it (and is read next) or waits, then finds it fenced.
        let generation: i64 = sqlx::query_scalar(BUMP_GENERATION)
            .bind(pipeline)
            .fetch_one(&mut *tx)
            .await
            .map_err(sqlx_error)?;
        let checkpoint = read_checkpoint(&mut *tx, pipeline).await?;
        let chunks = read_chunks(&mut *tx, pipeline).await?;
        tx.commit().await.map_err(sqlx_error)?;
        DIALECT.claimed(pipeline, generation, checkpoint, chunks)
    }

    async fn load_checkpoint(&self, pipeline: &str) -> Result<Option<Checkpoint>, PortError> {
        read_checkpoint(&self.pool, pipeline).await
    }

    async fn commit_checkpoint(
        &self,
        generation: u64,
        checkpoint: &Checkpoint,
        results: &[WindowResult],
        delta: &StateDelta,
    ) -> Result<(), PortError> {
        let pipeline = checkpoint.pipeline.as_str();
        let epoch = DIALECT.commit_epoch(generation, checkpoint.epoch)?;
        let columns = ResultColumns::new(results)?;

        let mut tx = self.pool.begin().await.map_err(sqlx_error)?;
        // Serializes with claims and the other commits of the pipeline: every writer of its
        // checkpoint row holds this lock, so the epoch read next cannot go stale.
        let owner: Option<i64> = sqlx::query_scalar(
            "SELECT generation FROM pipeline_owners WHERE pipeline = $1 FOR UPDATE",
        )
        .bind(pipeline)
        .fetch_optional(&mut *tx)
        .await
        .map_err(sqlx_error)?;
        let stored_epoch: Option<i64> =
            sqlx::query_scalar("SELECT epoch FROM checkpoints WHERE pipeline = $1")
                .bind(pipeline)
                .fetch_optional(&mut *tx)
                .await
                .map_err(sqlx_error)?;
        if let Err(fenced) = DIALECT.check_fences(generation, checkpoint, owner, stored_epoch) {
            tx.rollback().await.map_err(sqlx_error)?;
            return Err(fenced);
        }

        if !columns.is_empty() {
            sqlx::query(UPSERT_RESULTS)
                .bind(&columns.pipelines)
                .bind(&columns.starts)
                .bind(&columns.ends)
                .bind(&columns.keys)
                .bind(&columns.counts)
                .bind(&columns.closed)
                .execute(&mut *tx)
                .await
                .map_err(sqlx_error)?;
        }
        sqlx::query(UPSERT_CHECKPOINT)
            .bind(pipeline)
            .bind(epoch)
            .bind(Json(&checkpoint.offsets))
            .bind(Json(&checkpoint.state))
            .bind(checkpoint.watermark.millis())
            .execute(&mut *tx)
            .await
            .map_err(sqlx_error)?;
        for mut statement in delta_statements::<Postgres>(pipeline, epoch, delta) {
            statement
                .build()
                .execute(&mut *tx)
                .await
                .map_err(sqlx_error)?;
        }
        tx.commit().await.map_err(sqlx_error)?;
        tracing::debug!(
            pipeline,
            generation,
            epoch = checkpoint.epoch,
            chunks = delta.append.len(),
            dropped_groups = delta.drop_groups.len(),
            results = columns.len(),
            "checkpoint committed"
        );
        Ok(())
    }

    async fn query_results(&self, query: &ResultQuery) -> Result<Vec<WindowResult>, PortError> {
        let Some(mut sql) = results_query::<Postgres, _>(query, pg_time) else {
            return Ok(Vec::new());
        };
        let rows = sql
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(sqlx_error)?;
        rows.iter()
            .map(|row| DIALECT.result_from_row(row, pg_column_time))
            .collect()
    }
}
