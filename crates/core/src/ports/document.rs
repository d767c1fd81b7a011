//! The document port: raw events kept as documents, readable back.

use std::fmt::Debug;

use async_trait::async_trait;

use super::PortError;
use crate::dead_letter::{DeadLetter, DeadLetterPage, StreamSelection};
use crate::event::{Event, EventId, StreamName, Timestamp};

/// A position in a stream's events, newest first: the last event of the previous page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventCursor {
    /// Its event time.
    pub ts: Timestamp,
    /// Its id.
    pub id: EventId,
}

/// A page request over a stream's events, newest first (by `ts`, then `id`, descending).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventPage {
    /// At most this many events.
    pub limit: usize,
    /// Only events strictly after this cursor in newest-first order.
    pub after: Option<EventCursor>,
}

/// Semi-structured documents: MongoDB, or SQLite when embedded.
///
/// Contract: [`DocumentStore::put_events`] is idempotent per (stream, id), and
/// [`DocumentStore::put_dead_letters`] per dead letter id: the first stored version is
/// kept, and storing it again changes nothing.
#[async_trait]
pub trait DocumentStore: Send + Sync + Debug {
    /// Checks that the backing system answers; used by `/readyz`.
    async fn ping(&self) -> Result<(), PortError>;

    /// Stores events whose (stream, id) is not stored yet.
    async fn put_events(&self, events: &[Event]) -> Result<(), PortError>;

    /// One page of a stream's events, newest first.
    async fn recent_events(
        &self,
        stream: &StreamName,
        page: &EventPage,
    ) -> Result<Vec<Event>, PortError>;

    /// One event by id.
    async fn get_event(
        &self,
        stream: &StreamName,
        id: &EventId,
    ) -> Result<Option<Event>, PortError>;

    /// Stores dead letters whose id is not stored yet.
    async fn put_dead_letters(&self, letters: &[DeadLetter]) -> Result<(), PortError>;

    /// One page of the dead letters, newest first.
    async fn recent_dead_letters(
        &self,
        page: &DeadLetterPage,
    ) -> Result<Vec<DeadLetter>, PortError> {
        self.recent_dead_letters_of(page, &StreamSelection::All)
            .await
    }

    /// One page of the dead letters of the selected `streams`, newest first: the store
    /// reads only those (a page holds `page.limit` of them when as many are stored after
    /// `page.after`), never other streams' letters.
    async fn recent_dead_letters_of(
        &self,
        page: &DeadLetterPage,
        streams: &StreamSelection,
    ) -> Result<Vec<DeadLetter>, PortError>;

    /// Deletes the dead letters refused before `before` (`at < before`), and returns how
    /// many it deleted: the retention of dead letters.
    async fn prune_dead_letters(&self, before: Timestamp) -> Result<u64, PortError>;
}
