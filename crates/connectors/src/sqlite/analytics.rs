//! The [`AnalyticsStore`] half of [`SqliteStore`].

use async_trait::async_trait;
use sqlx::sqlite::{SqliteExecutor, SqliteRow};
use sqlx::{QueryBuilder, Row, Sqlite};
use tributary_core::Timestamp;
use tributary_core::ports::{
    AnalyticsStore, Checkpoint, Claim, PartitionOffset, PortError, ResultQuery, StateChunk,
    StateDelta,
};
use tributary_core::window::WindowResult;

use super::SqliteStore;
use super::error::{DIALECT, SYSTEM, sqlx_error};
use crate::sql::{chunks_query, delta_statements, results_query};

/// Results per multi-row upsert: 7 bound values each, well below SQLite's variable limit.
const RESULTS_PER_STATEMENT: usize = 1000;

/// Reads an INTEGER epoch-millisecond column as a time.
fn sqlite_column_time(row: &SqliteRow, column: &str) -> Result<Timestamp, sqlx::Error> {
    row.try_get(column).map(Timestamp::from_millis)
}

/// The pipeline's last checkpoint, read through `executor`.
async fn read_checkpoint<'e>(
    executor: impl SqliteExecutor<'e>,
    pipeline: &str,
) -> Result<Option<Checkpoint>, PortError> {
    let row = sqlx::query(
        "SELECT epoch, offsets, state, watermark FROM checkpoints \
         WHERE pipeline = ? AND epoch > 0",
    )
    .bind(pipeline)
    .fetch_optional(executor)
    .await
    .map_err(sqlx_error)?;
    let Some(row) = row else { return Ok(None) };
    let epoch: i64 = row.try_get("epoch").map_err(sqlx_error)?;
    let offsets: &str = row.try_get("offsets").map_err(sqlx_error)?;
    let state: &str = row.try_get("state").map_err(sqlx_error)?;
    Ok(Some(Checkpoint {
        pipeline: pipeline.to_owned(),
        epoch: DIALECT.unsigned(epoch)?,
        offsets: serde_json::from_str::<Vec<PartitionOffset>>(offsets)
            .map_err(|e| PortError::corrupt(SYSTEM, e))?,
        state: serde_json::from_str(state).map_err(|e| PortError::corrupt(SYSTEM, e))?,
        watermark: Timestamp::from_millis(row.try_get("watermark").map_err(sqlx_error)?),
    }))
}

/// The pipeline's state chunks, read through `executor`.
async fn read_chunks<'e>(
    executor: impl SqliteExecutor<'e>,
    pipeline: &str,
) -> Result<Vec<StateChunk>, PortError> {
    let rows = chunks_query::<Sqlite>(pipeline)
        .build()
        .fetch_all(executor)
        .await
        .map_err(sqlx_error)?;
    rows.iter().map(|row| DIALECT.chunk_from_row(row)).collect()
}

#[async_trait]
impl AnalyticsStore for SqliteStore {
    async fn ping(&self) -> Result<(), PortError> {
        self.ping_db().await
    }

    async fn claim(&self, pipeline: &str) -> Result<Claim, PortError> {
        // IMMEDIATE takes the write lock now: no commit runs between the bump and the read.
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(sqlx_error)?;
        let generation: i64 = sqlx::query_scalar(
            "INSERT INTO pipeline_owners (pipeline, generation, claimed_at) VALUES (?, 1, ?) \
             ON CONFLICT (pipeline) DO UPDATE SET generation = generation + 1, \
             claimed_at = excluded.claimed_at \
             RETURNING generation",
        )
        .bind(pipeline)
        .bind(Timestamp::now().millis())
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
        let counts = results
            .iter()
            .map(|r| DIALECT.integer("count", r.count))
            .collect::<Result<Vec<_>, _>>()?;
        let offsets = serde_json::to_string(&checkpoint.offsets)
            .map_err(|e| PortError::refused(SYSTEM, e))?;
        let state =
            serde_json::to_string(&checkpoint.state).map_err(|e| PortError::refused(SYSTEM, e))?;
        let now = Timestamp::now().millis();

        // IMMEDIATE takes the write lock now: the generation and epoch read below cannot go
        // stale, and a claim waits for this commit (or this commit for the claim).
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(sqlx_error)?;
        let owner: Option<i64> =
            sqlx::query_scalar("SELECT generation FROM pipeline_owners WHERE pipeline = ?")
                .bind(pipeline)
                .fetch_optional(&mut *tx)
                .await
                .map_err(sqlx_error)?;
        let stored_epoch: Option<i64> =
            sqlx::query_scalar("SELECT epoch FROM checkpoints WHERE pipeline = ?")
                .bind(pipeline)
                .fetch_optional(&mut *tx)
                .await
                .map_err(sqlx_error)?;
        if let Err(fenced) = DIALECT.check_fences(generation, checkpoint, owner, stored_epoch) {
            tx.rollback().await.map_err(sqlx_error)?;
            return Err(fenced);
        }

        // Rows apply in order, so of duplicates within the batch the last one wins.
        for (chunk, counts) in results
            .chunks(RESULTS_PER_STATEMENT)
            .zip(counts.chunks(RESULTS_PER_STATEMENT))
        {
            let mut sql = QueryBuilder::<Sqlite>::new(
                "INSERT INTO window_results \
                 (pipeline, window_start, window_end, key, count, closed, updated_at) ",
            );
            sql.push_values(chunk.iter().zip(counts), |mut row, (result, count)| {
                row.push_bind(result.pipeline.as_str())
                    .push_bind(result.window_start.millis())
                    .push_bind(result.window_end.millis())
                    .push_bind(result.key.as_str())
                    .push_bind(*count)
                    .push_bind(result.closed)
                    .push_bind(now);
            });
            sql.push(
                " ON CONFLICT (pipeline, window_start, key) DO UPDATE SET \
                 window_end = excluded.window_end, count = excluded.count, \
                 closed = excluded.closed, updated_at = excluded.updated_at",
            );
            sql.build().execute(&mut *tx).await.map_err(sqlx_error)?;
        }
        sqlx::query(
            "INSERT INTO checkpoints (pipeline, epoch, offsets, state, watermark, committed_at) \
             VALUES (?, ?, ?, ?, ?, ?) \
             ON CONFLICT (pipeline) DO UPDATE SET epoch = excluded.epoch, \
             offsets = excluded.offsets, state = excluded.state, \
             watermark = excluded.watermark, committed_at = excluded.committed_at",
        )
        .bind(pipeline)
        .bind(epoch)
        .bind(offsets)
        .bind(state)
        .bind(checkpoint.watermark.millis())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(sqlx_error)?;
        for mut statement in delta_statements::<Sqlite>(pipeline, epoch, delta) {
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
            results = results.len(),
            "checkpoint committed"
        );
        Ok(())
    }

    async fn query_results(&self, query: &ResultQuery) -> Result<Vec<WindowResult>, PortError> {
        let Some(mut sql) = results_query::<Sqlite, _>(query, |ts| Ok(ts.millis())) else {
            return Ok(Vec::new());
        };
        let rows = sql
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(sqlx_error)?;
        rows.iter()
            .map(|row| DIALECT.result_from_row(row, sqlite_column_time))
            .collect()
    }
}
