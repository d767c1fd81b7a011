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
//! What cannot be archived is kept as a dead letter, also before the checkpoint: a raw event
//! the document store refuses on its own, and a log record that holds no event of its
//! stream (skipped by the reader, see
//! [`LogReader::take_rejected`](tributary_core::ports::LogReader::take_rejected)).

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tributary_core::dead_letter::error_chain;
use tributary_core::ports::{Checkpoint, PortError, RawBatch};
use tributary_core::{DeadLetter, Event, StreamName};

use crate::checkpoint::{Checkpointer, Positions, commit_offsets};
use crate::task_loop::{self, Reading, Stage};
use crate::{EngineError, Ports, Task, dead_letters, records};

/// The archive task's checkpoint name. Pipeline names start with a letter or digit, so it
/// cannot collide with one.
pub const ARCHIVE_TASK: &str = "_raw_events";

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
        self.stored().await?;
        let ports = self.ports.clone();
        self.storing = Some(tokio::spawn(async move {
            store(&ports, &events).await.map(|()| events.len())
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
            })
        })
        .await
    }
}
