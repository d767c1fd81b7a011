//! Keeping what a task refused: late events, log records that hold no event, raw events
//! the document store refused; and deleting them once they are older than the retention.
//!
//! Contract: a task stores the dead letters of a batch before it checkpoints offsets past
//! them, so a crash in between only replays refusals whose ids are already stored (storing
//! them again changes nothing). Each write of a dead letter is counted in
//! `tributary_dead_letters_total{origin}`.
//!
//! With a retention set, [`RetentionTask`] deletes the dead letters refused longer ago
//! than the retention, at start and then every [`PRUNE_INTERVAL`], and counts them in
//! `tributary_dead_letters_pruned_total`. It holds no checkpoint: after an error it starts
//! again with a prune.

use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tributary_core::ports::{DocumentStore, PortError};
use tributary_core::{DeadLetter, Timestamp};

use crate::{EngineError, Task};

/// How often [`RetentionTask`] prunes the dead letters, unless the engine is told otherwise
/// ([`Engine::with_prune_interval`](crate::Engine::with_prune_interval)).
pub const PRUNE_INTERVAL: Duration = Duration::from_secs(10 * 60);

/// The retention task's name, in logs and metrics. Pipeline names start with a letter or
/// digit, so it cannot collide with one.
const RETENTION_TASK: &str = "_dead_letter_retention";

/// Stores `letters` (nothing when there are none) and counts them.
///
/// A batch the document store refuses on its own ([`PortError::Refused`]) is retried
/// letter by letter; a letter refused on its own is logged at error level with everything it
/// holds but its raw data, and counted in `tributary_dead_letters_refused_total{origin}`:
/// what it refers to stays in the log, and one letter cannot stall a task.
///
/// # Errors
/// Any other error of the document store: the task restarts from its last checkpoint and
/// meets the same refusals again.
pub(crate) async fn keep(
    documents: &dyn DocumentStore,
    letters: &[DeadLetter],
) -> Result<(), EngineError> {
    if letters.is_empty() {
        return Ok(());
    }
    match documents.put_dead_letters(letters).await {
        Ok(()) => {
            for letter in letters {
                metrics::counter!("tributary_dead_letters_total", "origin" => letter.origin.kind())
                    .increment(1);
            }
            Ok(())
        }
        Err(PortError::Refused { .. }) if letters.len() > 1 => {
            for letter in letters {
                Box::pin(keep(documents, std::slice::from_ref(letter))).await?;
            }
            Ok(())
        }
        Err(err @ PortError::Refused { .. }) => {
            for letter in letters {
                metrics::counter!("tributary_dead_letters_refused_total", "origin" => letter.origin.kind())
                    .increment(1);
                tracing::error!(
                    id = %letter.id,
                    stream = %letter.stream,
                    origin = letter.origin.kind(),
                    reason = %letter.reason,
                    error = &err as &dyn Error,
                    "dead letter refused by the document store; what it refers to stays in the log"
                );
            }
            Ok(())
        }
        Err(err) => Err(err.into()),
    }
}

/// Deletes the dead letters older than `retention`, at start and then every `interval`.
#[derive(Debug)]
pub(crate) struct RetentionTask {
    documents: Arc<dyn DocumentStore>,
    retention: Duration,
    interval: Duration,
}

impl RetentionTask {
    /// A task keeping the dead letters of `documents` for `retention`, pruning every
    /// `interval`.
    pub(crate) fn new(
        documents: Arc<dyn DocumentStore>,
        retention: Duration,
        interval: Duration,
    ) -> Self {
        Self {
            documents,
            retention,
            interval,
        }
    }

    /// Deletes the dead letters refused more than the retention ago, logs and counts them.
    async fn prune(&self) -> Result<(), EngineError> {
        let before =
            Timestamp::now().saturating_add(-tributary_core::pipeline::millis(self.retention));
        let pruned = self.documents.prune_dead_letters(before).await?;
        if pruned > 0 {
            metrics::counter!("tributary_dead_letters_pruned_total").increment(pruned);
            tracing::info!(
                pruned,
                before = %before,
                "dead letters older than the retention deleted"
            );
        }
        Ok(())
    }
}

impl Task for RetentionTask {
    fn name(&self) -> &str {
        RETENTION_TASK
    }

    /// Prunes, then again every interval, until `shutdown`, which also abandons a prune
    /// under way (each is one statement, whole or not at all).
    async fn run_once(&mut self, shutdown: &CancellationToken) -> Result<(), EngineError> {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                pruned = self.prune() => pruned?,
            }
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(self.interval) => {}
            }
        }
    }
}
