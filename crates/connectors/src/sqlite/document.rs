//! The [`DocumentStore`] half of [`SqliteStore`].

use async_trait::async_trait;
use serde_json::{Map, Value};
use sqlx::query_builder::Separated;
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite};
use tributary_core::dead_letter::{DeadLetter, DeadLetterPage, Origin, StreamSelection};
use tributary_core::event::{Event, EventId, StreamName, Timestamp};
use tributary_core::ports::{AnalyticsStore, DocumentStore, EventPage, PortError};

use super::SqliteStore;
use super::error::{SYSTEM, sqlx_error};

/// Rows per multi-row insert: at most 7 bound values each (a dead letter), well below
/// SQLite's variable limit.
const ROWS_PER_STATEMENT: usize = 1000;

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

/// Decodes one `dead_letters` row.
fn dead_letter_from_row(row: &SqliteRow) -> Result<DeadLetter, PortError> {
    let origin: &str = row.try_get("origin").map_err(sqlx_error)?;
    Ok(DeadLetter {
        id: row.try_get("id").map_err(sqlx_error)?,
        at: Timestamp::from_millis(row.try_get("at").map_err(sqlx_error)?),
        stream: row.try_get("stream").map_err(sqlx_error)?,
        origin: serde_json::from_str::<Origin>(origin)
            .map_err(|e| PortError::corrupt(SYSTEM, e))?,
        reason: row.try_get("reason").map_err(sqlx_error)?,
        raw: row.try_get("raw").map_err(sqlx_error)?,
        truncated: row.try_get("truncated").map_err(sqlx_error)?,
    })
}

/// Ends `sql`, a SELECT whose WHERE clause is open, with one page newest first: only rows
/// strictly before `after` by (`time`, `id`), sorted by both descending, at most `limit`.
fn push_newest_first<'a>(
    sql: &mut QueryBuilder<'a, Sqlite>,
    time: &str,
    after: Option<(Timestamp, &'a str)>,
    limit: usize,
) {
    if let Some((at, id)) = after {
        sql.push(format_args!(" AND ({time}, id) < ("))
            .push_bind(at.millis())
            .push(", ")
            .push_bind(id)
            .push(")");
    }
    sql.push(format_args!(" ORDER BY {time} DESC, id DESC LIMIT "))
        .push_bind(i64::try_from(limit).unwrap_or(i64::MAX));
}

impl SqliteStore {
    /// Runs `insert` (`INSERT INTO table (columns) `) for every row in one transaction,
    /// [`ROWS_PER_STATEMENT`] rows a statement, each bound by `bind`, skipping rows whose
    /// primary key is stored already: the first stored version wins, within `rows` too
    /// (rows apply in order).
    async fn insert_new<'r, T>(
        &self,
        insert: &str,
        rows: &'r [T],
        mut bind: impl FnMut(Separated<'_, 'r, Sqlite, &'static str>, &'r T),
    ) -> Result<(), PortError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(sqlx_error)?;
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let mut sql = QueryBuilder::<Sqlite>::new(insert);
            sql.push_values(chunk, &mut bind);
            sql.push(" ON CONFLICT DO NOTHING");
            sql.build().execute(&mut *tx).await.map_err(sqlx_error)?;
        }
        tx.commit().await.map_err(sqlx_error)
    }

    /// Fetches the rows of `sql`, decoded by `decode`.
    async fn fetch<T>(
        &self,
        mut sql: QueryBuilder<'_, Sqlite>,
        decode: impl Fn(&SqliteRow) -> Result<T, PortError>,
    ) -> Result<Vec<T>, PortError> {
        let rows = sql
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(sqlx_error)?;
        rows.iter().map(decode).collect()
    }
}

#[async_trait]
impl DocumentStore for SqliteStore {
    async fn ping(&self) -> Result<(), PortError> {
        // The same check as the analytics half's: the one database answers.
        AnalyticsStore::ping(self).await
    }

    async fn put_events(&self, events: &[Event]) -> Result<(), PortError> {
        let rows = events
            .iter()
            .map(|e| serde_json::to_string(&e.payload).map(|payload| (e, payload)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| PortError::refused(SYSTEM, e))?;
        self.insert_new(
            "INSERT INTO events (stream, id, ts, key, payload) ",
            &rows,
            |mut row, (event, payload)| {
                row.push_bind(event.stream.as_str())
                    .push_bind(event.id.as_str())
                    .push_bind(event.ts.millis())
                    .push_bind(event.key.as_deref())
                    .push_bind(payload.as_str());
            },
        )
        .await?;
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
        let after = page.after.as_ref().map(|a| (a.ts, a.id.as_str()));
        push_newest_first(&mut sql, "ts", after, page.limit);
        self.fetch(sql, |row| event_from_row(stream, row)).await
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

    async fn put_dead_letters(&self, letters: &[DeadLetter]) -> Result<(), PortError> {
        let rows = letters
            .iter()
            .map(|l| serde_json::to_string(&l.origin).map(|origin| (l, origin)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| PortError::refused(SYSTEM, e))?;
        self.insert_new(
            "INSERT INTO dead_letters (id, at, stream, origin, reason, raw, truncated) ",
            &rows,
            |mut row, (letter, origin)| {
                row.push_bind(letter.id.as_str())
                    .push_bind(letter.at.millis())
                    .push_bind(letter.stream.as_str())
                    .push_bind(origin.as_str())
                    .push_bind(letter.reason.as_str())
                    .push_bind(letter.raw.as_str())
                    .push_bind(letter.truncated);
            },
        )
        .await?;
        tracing::debug!(letters = letters.len(), "dead letters stored");
        Ok(())
    }

    async fn recent_dead_letters_of(
        &self,
        page: &DeadLetterPage,
        streams: &StreamSelection,
    ) -> Result<Vec<DeadLetter>, PortError> {
        if page.limit == 0 || matches!(streams, StreamSelection::Only(s) if s.is_empty()) {
            return Ok(Vec::new());
        }
        // `WHERE true`: the conditions, when there are some, are pushed with AND.
        let mut sql = QueryBuilder::<Sqlite>::new(
            "SELECT id, at, stream, origin, reason, raw, truncated FROM dead_letters WHERE true",
        );
        let (negated, names) = match streams {
            StreamSelection::All => (false, &[][..]),
            StreamSelection::Only(names) => (false, names.as_slice()),
            StreamSelection::Except(names) => (true, names.as_slice()),
        };
        if !names.is_empty() {
            sql.push(if negated {
                " AND stream NOT IN ("
            } else {
                " AND stream IN ("
            });
            let mut list = sql.separated(", ");
            for name in names {
                list.push_bind(name.as_str());
            }
            list.push_unseparated(")");
        }
        let after = page.after.as_ref().map(|a| (a.at, a.id.as_str()));
        push_newest_first(&mut sql, "at", after, page.limit);
        self.fetch(sql, dead_letter_from_row).await
    }

    async fn prune_dead_letters(&self, before: Timestamp) -> Result<u64, PortError> {
        let pruned = sqlx::query("DELETE FROM dead_letters WHERE at < ?")
            .bind(before.millis())
            .execute(&self.pool)
            .await
            .map_err(sqlx_error)?
            .rows_affected();
        tracing::debug!(pruned, before = %before, "dead letters pruned");
        Ok(pruned)
    }
}
