//! What every broker source does with a batch it read: check each record, then store the
//! batch (dead letters first, then the events), retrying while a store is unavailable, and
//! only then acknowledge it to its broker (the source's business).

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tributary_core::dead_letter::error_chain;
use tributary_core::{DeadLetter, Event, StreamName};
use tributary_gateway::ingest::IngestService;
use tributary_gateway::sources::{Health, HealthReporter, SourceError};

/// The first wait before storing a batch again.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// The longest wait between two attempts at storing a batch.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// A batch's records, checked: the valid events and the dead letters of the others.
#[derive(Debug, Default)]
pub struct Checked {
    /// The valid events, in the batch's order.
    pub events: Vec<Event>,
    /// The refused records, with their reason and position.
    pub letters: Vec<DeadLetter>,
}

/// Where a source's batches go: its stream, through the ingest service, under its name.
#[derive(Debug)]
pub struct Sink<'a> {
    /// Validates, appends and keeps dead letters.
    pub ingest: &'a IngestService,
    /// The source's name (the metrics' label).
    pub source: &'a str,
    /// The stream the events go to.
    pub stream: &'a StreamName,
    /// The source's health: `paused` while a batch waits.
    pub health: &'a HealthReporter,
}

impl Sink<'_> {
    /// Keeps the batch's dead letters, then appends its events to the stream (counted as
    /// the source's), retrying with a doubling wait (from [`FIRST_BACKOFF`] to
    /// [`MAX_BACKOFF`], or the store's `Retry-After` when longer) while either store is
    /// unavailable; the source is `paused` (with the reason) meanwhile, and `running`
    /// again once the batch is stored.
    ///
    /// `Ok(true)` once both are stored, `Ok(false)` when cancelled first.
    ///
    /// # Errors
    /// The log refused the events for good (not an outage).
    pub async fn store(
        &self,
        checked: &Checked,
        cancel: &CancellationToken,
    ) -> Result<bool, SourceError> {
        let Self {
            ingest,
            source,
            stream,
            health,
        } = *self;
        let mut wait = FIRST_BACKOFF;
        let mut kept = false;
        let mut paused = false;
        loop {
            let failure = if kept {
                match ingest.append(source, stream, &checked.events).await {
                    Ok(()) => {
                        if paused {
                            tracing::info!(source, "source resumed: the batch is stored");
                            health.set(Health::Running);
                        }
                        return Ok(true);
                    }
                    Err(error) if error.is_retryable() => {
                        wait = error.retry_after().unwrap_or(wait).max(wait);
                        error_chain(&error)
                    }
                    Err(error) => return Err(Box::new(error)),
                }
            } else {
                match ingest.keep(source, &checked.letters).await {
                    Ok(()) => {
                        kept = true;
                        continue;
                    }
                    Err(error) => error.to_string(),
                }
            };
            tracing::warn!(
                source,
                error = failure,
                retry_in = ?wait,
                "source paused: cannot store the batch; retrying it"
            );
            health.set(Health::Paused(failure));
            paused = true;
            if sleep_or_cancel(wait, cancel).await {
                return Ok(false);
            }
            wait = (wait * 2).min(MAX_BACKOFF);
        }
    }
}

/// Sleeps `wait`; `true` when `cancel` came first.
pub async fn sleep_or_cancel(wait: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(wait) => false,
        () = cancel.cancelled() => true,
    }
}
