//! The archive task: keeps every raw event of the archived streams as a document.
//!
//! Documents are written before the offsets that cover them are checkpointed, and the
//! document store ignores an event it already holds (same stream and id), so a replay after
//! a crash rewrites nothing: each event is stored once.
//!
//! One batch is stored while the next one is read: the store of a batch runs as a task of
//! its own, and the next batch's store, and any checkpoint, waits for it first. So batches
//! are stored one at a time, in the order they were read (of two events with the same id,
//! the first one read is kept, as before), and a checkpoint covers only stored events.
//!
//! A run remembers the ids of the last [`RECENT_IDS`] events it stored, and stores an event
//! seen among them no more: a client's retry (the same event sent again) is read soon
//! after the first copy, and the store would only ignore it. That spares the store a
//! duplicate in the batch, which some handle slowly (FerretDB falls back to a transaction
//! per document for a whole batch holding one). A restored run starts with none.
//!
//! What cannot be archived is kept as a dead letter, also before the checkpoint: a raw event
//! the document store refuses on its own, and a log record that holds no event of its
//! stream (skipped by the reader, see
//! [`LogReader::take_rejected`](tributary_core::ports::LogReader::take_rejected)).

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tributary_core::dead_letter::error_chain;
use tributary_core::ports::{Checkpoint, PortError, RawBatch};
use tributary_core::{DeadLetter, Event, EventId, StreamName};

use crate::checkpoint::{Checkpointer, Positions, commit_offsets};
use crate::task_loop::{self, Reading, Stage};
use crate::{EngineError, Ports, Task, dead_letters, records};

/// The archive task's checkpoint name. Pipeline names start with a letter or digit, so it
/// cannot collide with one.
pub const ARCHIVE_TASK: &str = "_raw_events";

/// How many of the ids it stored last a run remembers (a few MiB at most).
const RECENT_IDS: usize = 16_384;

/// Copies raw events from the log to the document store.
#[derive(Debug, Clone)]
pub struct ArchiveTask {
    streams: Vec<StreamName>,
    /// The streams as they change, when they may.
    following: Option<watch::Receiver<Vec<StreamName>>>,
    ports: Ports,
    interval: Duration,
    batch_size: usize,
}

impl ArchiveTask {
    /// A task archiving `streams`, checkpointing every `interval`.
    #[must_use]
    pub fn new(
        streams: Vec<StreamName>,
        ports: Ports,
        interval: Duration,
        batch_size: usize,
    ) -> Self {
        Self {
            streams,
            following: None,
            ports,
            interval,
            batch_size,
        }
    }

    /// Archiving the streams `streams` holds, restarting over them at each change (after a
    /// last checkpoint): a stream new to the archive is read from its beginning.
    #[must_use]
    pub fn following(self, streams: watch::Receiver<Vec<StreamName>>) -> Self {
        Self {
            following: Some(streams),
            ..self
        }
    }
}

/// One run's stage: stores each batch's events, one batch at a time, while the task loop
/// reads the next.
#[derive(Debug)]
struct Archiver {
    ports: Ports,
    /// The store of the last batch, if not awaited yet: its result is the number of
    /// events stored.
    storing: Option<JoinHandle<Result<usize, EngineError>>>,
    /// The ids of the events this run stored last.
    recent: RecentIds,
}

/// The last ids stored, at most `capacity`, the oldest forgotten first.
#[derive(Debug)]
struct RecentIds {
    ids: HashSet<(StreamName, EventId)>,
    order: VecDeque<(StreamName, EventId)>,
    capacity: usize,
}

impl RecentIds {
    fn new(capacity: usize) -> Self {
        Self {
            ids: HashSet::new(),
            order: VecDeque::new(),
            capacity,
        }
    }

    /// Whether `event`'s id is new here; if so, it is remembered.
    fn remember(&mut self, event: &Event) -> bool {
        let id = (event.stream.clone(), event.id.clone());
        if self.ids.contains(&id) {
            return false;
        }
        if self.order.len() == self.capacity
            && let Some(oldest) = self.order.pop_front()
        {
            self.ids.remove(&oldest);
        }
        self.ids.insert(id.clone());
        self.order.push_back(id);
        true
    }
}

impl Archiver {
    /// Waits for the store of the last batch, if any, and counts its events.
    async fn stored(&mut self) -> Result<(), EngineError> {
        let Some(storing) = self.storing.take() else {
            return Ok(());
        };
        let stored = storing.await.map_err(|source| EngineError::Panicked {
            task: ARCHIVE_TASK.to_owned(),
            source,
        })??;
        metrics::counter!("tributary_archived_events_total").increment(stored as u64);
        Ok(())
    }
}

impl Drop for Archiver {
    /// A run that ends with an error drops its stage: a store still running would only
    /// write what the next run writes again.
    fn drop(&mut self) {
        if let Some(storing) = &self.storing {
            storing.abort();
        }
    }
}

/// Stores `events`. A batch the store refuses is retried event by event, and an event it
/// refuses on its own is kept as a dead letter with the store's reason
/// ([`DeadLetter::archive`]) and counted (`tributary_archive_refused_events_total`), so one
/// bad record cannot stall the archive. Ingestion already refuses payloads no store can
/// hold, so this only meets records other producers wrote to the log.
async fn store(ports: &Ports, events: &[Event]) -> Result<(), EngineError> {
    match ports.documents.put_events(events).await {
        Err(PortError::Refused { .. }) if events.len() > 1 => {
            for event in events {
                Box::pin(store(ports, std::slice::from_ref(event))).await?;
            }
            Ok(())
        }
        Err(err @ PortError::Refused { .. }) => {
            let Some(event) = events.first() else {
                return Ok(());
            };
            metrics::counter!("tributary_archive_refused_events_total").increment(1);
            tracing::warn!(
                stream = %event.stream,
                id = %event.id,
                error = &err as &dyn std::error::Error,
                "raw event refused by the document store; kept as a dead letter"
            );
            let letter = DeadLetter::archive(event, error_chain(&err));
            dead_letters::keep(ports.documents.as_ref(), &[letter]).await
        }
        other => Ok(other?),
    }
}

impl Stage for Archiver {
    /// Decodes the batch whole, waits for the store of the batch before, then starts
    /// storing these events and returns: the task loop reads the next batch meanwhile.
    async fn process(
        &mut self,
        batch: &RawBatch,
        refused: &mut Vec<DeadLetter>,
    ) -> Result<(), EngineError> {
        let events: Vec<Event> = records::decode_all(batch, refused)
            .into_iter()
            .map(|r| r.event)
            .collect();
        if events.is_empty() {
            return Ok(());
        }
        // The batch before is stored (or this run ends with its error, forgetting the ids
        // remembered here): an id remembered is stored.
        self.stored().await?;
        let read = events.len();
        let new: Vec<Event> = events
            .into_iter()
            .filter(|event| self.recent.remember(event))
            .collect();
        if read > new.len() {
            tracing::debug!(
                task = ARCHIVE_TASK,
                skipped = read - new.len(),
                "events stored earlier by this run skipped"
            );
        }
        let ports = self.ports.clone();
        self.storing = Some(tokio::spawn(async move {
            store(&ports, &new).await.map(|()| read)
        }));
        Ok(())
    }

    /// Whether a batch is being stored: a checkpoint waits for it.
    fn has_changes(&self) -> bool {
        self.storing.is_some()
    }

    /// Checkpoints the positions reached, once every batch read is stored: the archive has
    /// no state, watermark or results.
    async fn checkpoint(
        &mut self,
        checkpointer: &mut Checkpointer,
        positions: &mut Positions,
    ) -> Result<Checkpoint, EngineError> {
        self.stored().await?;
        commit_offsets(checkpointer, self.ports.analytics.as_ref(), positions).await
    }
}

impl Task for ArchiveTask {
    fn name(&self) -> &str {
        ARCHIVE_TASK
    }

    async fn run_once(&mut self, shutdown: &CancellationToken) -> Result<(), EngineError> {
        loop {
            // Stopped when the streams change, as at a shutdown: a last checkpoint.
            let run = shutdown.child_token();
            let watcher = self.following.as_mut().map(|following| {
                let streams = following.borrow_and_update().clone();
                let mut changes = following.clone();
                let stop = run.clone();
                let watcher = tokio::spawn(async move {
                    if changes.changed().await.is_ok() {
                        stop.cancel();
                    }
                });
                (streams, watcher)
            });
            if let Some((streams, _)) = &watcher {
                self.streams.clone_from(streams);
            }
            let outcome = self.run_over_streams(&run).await;
            if let Some((_, watcher)) = watcher {
                watcher.abort();
            }
            outcome?;
            if shutdown.is_cancelled() || self.following.is_none() {
                return Ok(());
            }
            tracing::info!(
                task = ARCHIVE_TASK,
                "the archived streams changed: the archive restarts over them"
            );
        }
    }
}

impl ArchiveTask {
    /// One run over the current streams, until `shutdown`.
    async fn run_over_streams(&self, shutdown: &CancellationToken) -> Result<(), EngineError> {
        let ports = self.ports.clone();
        let streams = self.streams.clone();
        let reading = Reading {
            task: ARCHIVE_TASK,
            streams: &streams,
            shard: None,
            batch_size: self.batch_size,
            interval: self.interval,
        };
        task_loop::run(&ports, reading, shutdown, |_, _| async {
            Ok(Archiver {
                ports: ports.clone(),
                storing: None,
                recent: RecentIds::new(RECENT_IDS),
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use tributary_core::Timestamp;

    use super::*;

    fn event(stream: &str, id: &str) -> Event {
        Event {
            id: EventId::new(id).unwrap(),
            stream: StreamName::new(stream).unwrap(),
            ts: Timestamp::from_millis(1),
            key: None,
            payload: serde_json::Map::new(),
        }
    }

    #[test]
    fn an_id_is_new_once_per_stream_until_forgotten() {
        let mut recent = RecentIds::new(2);
        assert!(recent.remember(&event("a", "1")));
        assert!(!recent.remember(&event("a", "1")));
        assert!(recent.remember(&event("b", "1")), "another stream's id");
        // A third id forgets the oldest one.
        assert!(recent.remember(&event("a", "2")));
        assert!(recent.remember(&event("a", "1")));
        assert!(!recent.remember(&event("a", "2")));
        assert_eq!(recent.ids.len(), 2);
        assert_eq!(recent.order.len(), 2);
    }
}
