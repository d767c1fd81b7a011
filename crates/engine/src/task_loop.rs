//! The loop every checkpointing task runs: *restore → read → process → checkpoint*,
//! written once for the pipelines ([`crate::windowed`]) and the raw-event archive
//! ([`crate::archive`]).
//!
//! A [`Stage`] says what a task does with a batch of records and what its checkpoint
//! writes; [`run`] does the rest: it claims the task (fencing older owners), opens a reader
//! at the checkpoint's offsets, keeps what the reader and the stage refused as dead
//! letters before any checkpoint covers their offsets, checkpoints every interval and once
//! more at shutdown, and reports the committed offsets back to the log.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use tributary_core::ports::{Checkpoint, Claim, RawBatch};
use tributary_core::{DeadLetter, StreamName, Timestamp};

use crate::checkpoint::{Checkpointer, LagGauge, Positions};
use crate::{EngineError, Ports, dead_letters};

/// How long a poll waits for records before the task looks at the clock again.
const POLL_TIMEOUT: Duration = Duration::from_millis(200);

/// What a checkpointing task does between the reads and the commits of [`run`].
pub(crate) trait Stage: Send {
    /// Handles one batch of records as read from the log (already counted in the
    /// positions): each stage decodes what it needs of them (whole, with
    /// [`records::decode_all`], or less). Dead letters it pushes to `refused` (those of
    /// records that hold no event, too) are stored before the next checkpoint.
    fn process(
        &mut self,
        batch: &RawBatch,
        refused: &mut Vec<DeadLetter>,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;

    /// Whether a checkpoint now would write anything but offsets.
    fn has_changes(&self) -> bool;

    /// Commits a checkpoint of the stage's output and state with `positions`, through
    /// `checkpointer`. Any error ends the run: the task restarts from its last checkpoint.
    fn checkpoint(
        &mut self,
        checkpointer: &mut Checkpointer,
        positions: &mut Positions,
    ) -> impl Future<Output = Result<Checkpoint, EngineError>> + Send;
}

/// Where and how a task reads.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reading<'a> {
    /// The task's name: its checkpoint key and consumer group.
    pub(crate) task: &'a str,
    /// The streams it reads.
    pub(crate) streams: &'a [StreamName],
    /// Only this partition of each stream (a pipeline's shard); every partition when
    /// `None`.
    pub(crate) shard: Option<u32>,
    /// Most records per poll.
    pub(crate) batch_size: usize,
    /// How often it checkpoints.
    pub(crate) interval: Duration,
}

/// Runs one task from its last checkpoint until `shutdown` (then checkpoints once more)
/// or an error (then returns it, committing nothing more). `open` builds the stage from
/// the claim and the source partitions (stream, partition) it reads.
pub(crate) async fn run<S, F, Fut>(
    ports: &Ports,
    reading: Reading<'_>,
    shutdown: &CancellationToken,
    open: F,
) -> Result<(), EngineError>
where
    S: Stage,
    F: FnOnce(Claim, Vec<(StreamName, u32)>) -> Fut,
    Fut: Future<Output = Result<S, EngineError>>,
{
    let Reading {
        task,
        streams,
        shard,
        batch_size,
        interval,
    } = reading;
    let claim = ports.analytics.claim(task).await?;
    let committed_at = claim.committed_at;
    let mut checkpointer = Checkpointer::new(task, &claim);
    let mut positions = Positions::restore(
        ports.log.as_ref(),
        streams,
        shard,
        claim.checkpoint.as_ref(),
    )
    .await?;
    let mut reader = ports.log.reader(task, &positions.offsets()).await?;
    let sources = positions
        .partitions()
        .map(|(stream, partition)| (stream.clone(), partition))
        .collect();
    let mut stage = open(claim, sources).await?;
    // How long the task went without progress: since its last owner's last commit (a
    // release when it was moved, a crash otherwise).
    let unowned_ms = committed_at.map(|at| (Timestamp::now().millis() - at.millis()).max(0));
    if let Some(ms) = unowned_ms {
        #[allow(clippy::cast_precision_loss)]
        metrics::histogram!("tributary_task_unowned_seconds", "task" => task.to_owned())
            .record(ms as f64 / 1000.0);
    }
    tracing::info!(
        task,
        generation = checkpointer.generation(),
        epoch = checkpointer.epoch(),
        unowned_ms,
        "task restored from its last checkpoint"
    );
    let mut lag = LagGauge::new(task);
    let mut batch = RawBatch::default();
    loop {
        // A log slow to give its end offsets must not hold a shutdown back.
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = lag.measure(ports.log.as_ref(), &positions) => {}
        }
        batch.clear();
        tokio::select! {
            () = shutdown.cancelled() => break,
            polled = reader.poll_raw(batch_size, POLL_TIMEOUT, &mut batch) => polled?,
        }
        let mut refused = reader.take_rejected();
        // On a failure the task restarts from its last checkpoint, and no checkpoint is
        // taken before the batch is handled.
        positions.advance(&batch);
        let handled = async {
            stage.process(&batch, &mut refused).await?;
            dead_letters::keep(ports.documents.as_ref(), &refused).await
        };
        handled.instrument(poll_span(task, &batch)).await?;
        if checkpointer.due(interval) && (stage.has_changes() || positions.moved()) {
            commit(
                &mut stage,
                &mut checkpointer,
                &mut positions,
                reader.as_mut(),
            )
            .await?;
        }
    }
    // Always, even with nothing new: its time tells the next owner when this one let go.
    commit(
        &mut stage,
        &mut checkpointer,
        &mut positions,
        reader.as_mut(),
    )
    .await?;
    tracing::info!(task, "task stopped after a final checkpoint");
    Ok(())
}

/// The span of one batch a task handles (none for a poll that read nothing, which an idle
/// task makes every [`POLL_TIMEOUT`]): per batch, never per record.
fn poll_span(task: &str, batch: &RawBatch) -> tracing::Span {
    if batch.is_empty() {
        tracing::Span::none()
    } else {
        tracing::debug_span!("pipeline.poll", task, records = batch.len())
    }
}

/// Commits a checkpoint, then reports its offsets to the log (best effort: the offsets
/// that count are the checkpoint's).
async fn commit<S: Stage>(
    stage: &mut S,
    checkpointer: &mut Checkpointer,
    positions: &mut Positions,
    reader: &mut dyn tributary_core::ports::LogReader,
) -> Result<(), EngineError> {
    let checkpoint = stage.checkpoint(checkpointer, positions).await?;
    if let Err(err) = reader.commit(&checkpoint.offsets).await {
        tracing::debug!(task = %checkpoint.pipeline, error = &err as &dyn std::error::Error, "log offset report failed");
    }
    Ok(())
}
