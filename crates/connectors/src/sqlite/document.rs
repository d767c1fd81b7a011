//! The [`DocumentStore`] half of [`SqliteStore`].

use async_trait::async_trait;
use serde_json::{Map, Value};
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite};
use tributary_core::event::{Event, EventId, StreamName, Timestamp};
use tributary_core::ports::{DocumentStore, EventPage, PortError};

use super::SqliteStore;
use super::error::{SYSTEM, sqlx_error};

/// Events per multi-row insert: 5 bound values each, well below SQLite's variable limit.
const EVENTS_PER_STATEMENT: usize = 1000;

/// A stored id that is not a valid [`EventId`].
#[derive(Debug, thiserror::Error)]
#[error("stored event id {id:?} is invalid: {reason}")]
struct InvalidStoredId {
    id: String,
    reason: &'static str,
}

/// Decodes one `events` row of `stream`.
fn event_from_row(stream: &StreamName, row: &SqliteRow) -> Result<Event, PortError> {
    let id: String = row.try_get("id").map_err(sqlx_error)?;
    let payload: &str = row.try_get("payload").map_err(sqlx_error)?;
    Ok(Event {
        id: EventId::new(id.clone())
            .map_err(|reason| PortError::corrupt(SYSTEM, InvalidStoredId { id, reason }))?,
        stream: stream.clone(),
        ts: Timestamp::from_millis(row.try_get("ts").map_err(sqlx_error)?),
        key: row.try_get("key").map_err(sqlx_error)?,
        payload: serde_json::from_str::<Map<String, Value>>(payload)
            .map_err(|e| PortError::corrupt(SYSTEM, e))?,
    })
}

#[async_trait]
impl DocumentStore for SqliteStore {
    async fn ping(&self) -> Result<(), PortError> {
        self.ping_db().await
    }

    async fn put_events(&self, events: &[Event]) -> Result<(), PortError> {
        if events.is_empty() {
            return Ok(());
        }
        let payloads = events
            .iter()
            .map(|e| serde_json::to_string(&e.payload))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| PortError::refused(SYSTEM, e))?;
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(sqlx_error)?;
        // Rows apply in order, so of duplicates within the batch the first one wins.
        for (chunk, payloads) in events
            .chunks(EVENTS_PER_STATEMENT)
            .zip(payloads.chunks(EVENTS_PER_STATEMENT))
        {
            let mut sql =
                QueryBuilder::<Sqlite>::new("INSERT INTO events (stream, id, ts, key, payload) ");
            sql.push_values(chunk.iter().zip(payloads), |mut row, (event, payload)| {
                row.push_bind(event.stream.as_str())
                    .push_bind(event.id.as_str())
                    .push_bind(event.ts.millis())
                    .push_bind(event.key.as_deref())
                    .push_bind(payload.as_str());
            });
            sql.push(" ON CONFLICT (stream, id) DO NOTHING");
            sql.build().execute(&mut *tx).await.map_err(sqlx_error)?;
        }
        tx.commit().await.map_err(sqlx_error)?;
        tracing::debug!(events = events.len(), "events stored");
        Ok(())
    }

    async fn recent_events(
        &self,
        stream: &StreamName,
        page: &EventPage,
    ) -> Result<Vec<Event>, PortError> {
        if page.limit == 0 {
            return Ok(Vec::new());
        }
        let mut sql =
            QueryBuilder::<Sqlite>::new("SELECT id, ts, key, payload FROM events WHERE stream = ");
        sql.push_bind(stream.as_str());
        if let Some(after) = &page.after {
            sql.push(" AND (ts, id) < (")
                .push_bind(after.ts.millis())
                .push(", ")
                .push_bind(after.id.as_str())
                .push(")");
        }
        sql.push(" ORDER BY ts DESC, id DESC LIMIT ")
            .push_bind(i64::try_from(page.limit).unwrap_or(i64::MAX));
        let rows = sql
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(sqlx_error)?;
        rows.iter().map(|row| event_from_row(stream, row)).collect()
    }

    async fn get_event(
        &self,
        stream: &StreamName,
        id: &EventId,
    ) -> Result<Option<Event>, PortError> {
        let row =
            sqlx::query("SELECT id, ts, key, payload FROM events WHERE stream = ? AND id = ?")
                .bind(stream.as_str())
                .bind(id.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(sqlx_error)?;
        row.map(|row| event_from_row(stream, &row)).transpose()
    }
}
