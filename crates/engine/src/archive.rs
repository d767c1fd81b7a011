//! The archive task: keeps every raw event of the archived streams as a document.
//!
//! Documents are written before the offsets that cover them are checkpointed, and the
//! document store ignores an event it already holds (same stream and id), so a replay after
//! a crash rewrites nothing: each event is stored once.
//!
//! What cannot be archived is kept as a dead letter, also before the checkpoint: a raw event
//! the document store refuses on its own, and a log record that holds no event of its
//! stream (skipped by the reader, see
//! [`LogReader::take_rejected`](tributary_core::ports::LogReader::take_rejected)).

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tributary_core::dead_letter::error_chain;
use tributary_core::ports::{AnalyticsStore, PortError, StateDelta};
use tributary_core::{DeadLetter, Event, StreamName, Timestamp};

use crate::checkpoint::{Checkpointer, LagGauge, Positions};
use crate::{EngineError, Ports, Task, dead_letters};

/// The archive task's checkpoint name. Pipeline names start with a letter or digit, so it
/// cannot collide with one.
pub const ARCHIVE_TASK: &str = "_raw_events";

/// How long a poll waits for records.
const POLL_TIMEOUT: Duration = Duration::from_millis(200);

/// Copies raw events from the log to the document store.
#[derive(Debug)]
pub struct ArchiveTask {
    streams: Vec<StreamName>,
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
            ports,
            interval,
            batch_size,
        }
    }
}

impl ArchiveTask {
    /// Stores `events`. A batch the store refuses is retried event by event, and an event
    /// it refuses on its own is kept as a dead letter with the store's reason
    /// ([`DeadLetter::archive`]) and counted (`tributary_archive_refused_events_total`), so
    /// one bad record cannot stall the archive. Ingestion already refuses payloads no store
    /// can hold, so this only meets records other producers wrote to the log.
    async fn store(&self, events: &[Event]) -> Result<(), EngineError> {
        match self.ports.documents.put_events(events).await {
            Err(PortError::Refused { .. }) if events.len() > 1 => {
                for event in events {
                    Box::pin(self.store(std::slice::from_ref(event))).await?;
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
                dead_letters::keep(self.ports.documents.as_ref(), &[letter]).await
            }
            other => Ok(other?),
        }
    }
}

/// Checkpoints the positions reached: the archive has no state, state chunks, watermark or
/// results.
async fn commit_positions(
    checkpointer: &mut Checkpointer,
    analytics: &dyn AnalyticsStore,
    positions: &mut Positions,
) -> Result<(), EngineError> {
    checkpointer
        .commit(
            analytics,
            positions,
            serde_json::Value::Null,
            Timestamp::MIN,
            &[],
            &StateDelta::default(),
        )
        .await?;
    Ok(())
}

impl Task for ArchiveTask {
    fn name(&self) -> &str {
        ARCHIVE_TASK
    }

    async fn run_once(&mut self, shutdown: &CancellationToken) -> Result<(), EngineError> {
        let analytics = self.ports.analytics.as_ref();
        let claim = analytics.claim(ARCHIVE_TASK).await?;
        let mut positions = Positions::restore(
            self.ports.log.as_ref(),
            &self.streams,
            claim.checkpoint.as_ref(),
        )
        .await?;
        let mut reader = self
            .ports
            .log
            .reader(ARCHIVE_TASK, &positions.offsets())
            .await?;
        let mut checkpointer = Checkpointer::new(ARCHIVE_TASK, &claim);
        let mut lag = LagGauge::new(ARCHIVE_TASK);
        loop {
            // A log slow to give its end offsets must not hold a shutdown back.
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = lag.measure(self.ports.log.as_ref(), &positions) => {}
            }
            let records = tokio::select! {
                () = shutdown.cancelled() => break,
                polled = reader.poll(self.batch_size, POLL_TIMEOUT) => polled?,
            };
            // Stored before the next checkpoint covers their offsets (the pipelines read
            // the same records and keep the same dead letters: equal ids, stored once).
            dead_letters::keep(self.ports.documents.as_ref(), &reader.take_rejected()).await?;
            if !records.is_empty() {
                // Advanced before the events are stored, so that they can be moved out of
                // the records: on a failure the task restarts from its last checkpoint, and
                // no checkpoint is taken before they are stored.
                records.iter().for_each(|r| positions.advance(r));
                let events: Vec<Event> = records.into_iter().map(|r| r.event).collect();
                self.store(&events).await?;
                metrics::counter!("tributary_archived_events_total").increment(events.len() as u64);
            }
            if positions.moved() && checkpointer.due(self.interval) {
                commit_positions(&mut checkpointer, analytics, &mut positions).await?;
            }
        }
        if positions.moved() {
            commit_positions(&mut checkpointer, analytics, &mut positions).await?;
        }
        Ok(())
    }
}
