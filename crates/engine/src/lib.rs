//! Tributary's engine: runs pipelines over the ports, with checkpoints and exactly-once
//! recovery.
//!
//! The engine starts, in [`Engine::run`], one task per pipeline ([`windowed`]) and one
//! task that keeps raw events as documents ([`archive`]). Each task is a loop of
//! *restore → read → process → checkpoint*:
//!
//! 1. **Restore**: load the task's last checkpoint from the analytics store (its operator
//!    state and the log offsets it covers) and open a log reader at those offsets.
//! 2. **Read and process** records in offset order, feeding the pure operator from
//!    `tributary-core`.
//! 3. **Checkpoint** every `checkpoint_interval`: the results that changed, the operator
//!    state and the next offsets are committed in **one transaction** of the analytics
//!    store, fenced by epoch. Only then is the cache updated.
//!
//! Any error drops the in-memory state and restarts the loop from step 1, so the output
//! is always the one of a run that never failed: no event is counted twice or lost.

pub mod archive;
mod checkpoint;
pub mod windowed;

use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tributary_core::StreamName;
use tributary_core::pipeline::PipelineSpec;
use tributary_core::ports::PortError;
pub use tributary_core::ports::Ports;

/// Why a task stopped or restarted.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A port call failed.
    #[error(transparent)]
    Port(#[from] PortError),
    /// A checkpoint's state could not be decoded.
    #[error("checkpoint state of {task} cannot be decoded")]
    State {
        /// The task.
        task: String,
        /// The decoder's error.
        #[source]
        source: serde_json::Error,
    },
}

impl EngineError {
    /// Whether restarting the task from its last checkpoint can help.
    #[must_use]
    pub fn is_restartable(&self) -> bool {
        match self {
            Self::Port(PortError::Fenced { .. }) | Self::State { .. } => false,
            Self::Port(_) => true,
        }
    }
}

/// The engine's settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The pipelines to run.
    pub pipelines: Vec<PipelineSpec>,
    /// The streams whose raw events are kept as documents.
    pub archived_streams: Vec<StreamName>,
    /// How often the archive task checkpoints its offsets.
    pub archive_checkpoint_interval: Duration,
    /// Most records handled per poll.
    pub batch_size: usize,
}

/// Runs every task until `shutdown` is cancelled, then lets each commit a last
/// checkpoint. Returns the first error that could not be recovered from.
#[derive(Debug)]
pub struct Engine {
    ports: Ports,
    config: EngineConfig,
}

impl Engine {
    /// An engine over `ports`.
    #[must_use]
    pub fn new(ports: Ports, config: EngineConfig) -> Self {
        Self { ports, config }
    }

    /// Runs all tasks until `shutdown` is cancelled or one fails for good.
    ///
    /// # Errors
    /// The first error a task could not recover from by restarting (a fenced checkpoint:
    /// another processor took over the pipeline; or undecodable state).
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), EngineError> {
        let mut tasks = JoinSet::new();
        for spec in self.config.pipelines {
            let task =
                windowed::WindowedTask::new(spec, self.ports.clone(), self.config.batch_size);
            tasks.spawn(supervise(task, shutdown.clone()));
        }
        if !self.config.archived_streams.is_empty() {
            let task = archive::ArchiveTask::new(
                self.config.archived_streams,
                self.ports.clone(),
                self.config.archive_checkpoint_interval,
                self.config.batch_size,
            );
            tasks.spawn(supervise(task, shutdown.clone()));
        }
        let mut first_error = None;
        while let Some(joined) = tasks.join_next().await {
            let outcome = joined.unwrap_or_else(|panic| {
                tracing::error!(error = %panic, "engine task panicked");
                Ok(())
            });
            if let Err(err) = outcome {
                shutdown.cancel();
                first_error.get_or_insert(err);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// A restartable unit of work: one run from its last checkpoint until shutdown or error.
pub(crate) trait Task: Send + 'static {
    /// The task's name (its checkpoint key).
    fn name(&self) -> &str;
    /// Restores from the last checkpoint and runs until `shutdown` (then checkpoints) or
    /// an error (then returns it without committing anything more).
    fn run_once(
        &mut self,
        shutdown: &CancellationToken,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;
}

/// Restarts `task` from its last checkpoint after each restartable error, with backoff.
async fn supervise<T: Task>(mut task: T, shutdown: CancellationToken) -> Result<(), EngineError> {
    let mut backoff = Duration::from_millis(100);
    loop {
        match task.run_once(&shutdown).await {
            Ok(()) => return Ok(()),
            Err(err) if err.is_restartable() && !shutdown.is_cancelled() => {
                metrics::counter!("tributary_task_restarts_total", "task" => task.name().to_owned())
                    .increment(1);
                tracing::warn!(
                    task = task.name(),
                    error = &err as &dyn std::error::Error,
                    retry_in_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX),
                    "task failed; restarting from its last checkpoint"
                );
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(()),
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
            Err(err) if err.is_restartable() => return Ok(()),
            Err(err) => {
                tracing::error!(
                    task = task.name(),
                    error = &err as &dyn std::error::Error,
                    "task stopped"
                );
                return Err(err);
            }
        }
    }
}
