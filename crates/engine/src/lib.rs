//! Tributary's engine: runs pipelines over the ports, with checkpoints and exactly-once
//! recovery.
//!
//! The engine starts, in [`Engine::run`], one task per pipeline ([`windowed`]), one
//! task that keeps raw events as documents ([`archive`]) and, when a dead-letter retention
//! is set, one that deletes the older dead letters every [`PRUNE_INTERVAL`]. A pipeline
//! task and the archive task each run the one loop of `task_loop`, *restore → read →
//! process → checkpoint*, with their own stage:
//!
//! 1. **Restore**: claim the task in the analytics store (`AnalyticsStore::claim`: take
//!    ownership, fencing any older owner, and load its last checkpoint — its operator
//!    state and the log offsets it covers) and open a log reader at those offsets.
//! 2. **Read and process** records in offset order, feeding the pure operator from
//!    `tributary-core` (with the rows a pipeline's lookups find for each event, in tables
//!    loaded at the restore and reloaded in the background: `lookups`).
//! 3. **Checkpoint** every `checkpoint_interval`: the results that changed, the operator
//!    state and the next offsets are committed in **one transaction** of the analytics
//!    store, fenced by generation and epoch. Only then is the cache updated.
//!
//! Any error drops the in-memory state and restarts the loop from step 1, so the output
//! is always the one of a run that never failed: no event is counted twice or lost.
//!
//! Nothing a task refuses is dropped silently: a late event (its window had closed), a log
//! record that holds no event of its stream, and a raw event the document store refused
//! are kept as dead letters (`tributary_core::dead_letter`) in the document store, written
//! in step 2 before the checkpoint that covers their offsets. Their ids are derived from
//! what was refused, so a replay after a crash stores each one once. Each write of a dead
//! letter is counted in `tributary_dead_letters_total{origin}` (a replay, or a second task
//! reading the same log record, counts it again but stores nothing more); one the document
//! store refuses on its own is logged at error level and counted in
//! `tributary_dead_letters_refused_total{origin}` (what it refers to stays in the log).

pub mod archive;
mod checkpoint;
mod dead_letters;
mod group;
mod lookups;
mod records;
pub mod repartition;
mod task_loop;
pub mod windowed;

pub use windowed::shard_task;

pub use dead_letters::PRUNE_INTERVAL;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::{JoinError, JoinSet};
use tokio_util::sync::CancellationToken;
use tributary_core::StreamName;
use tributary_core::pipeline::{PipelineSpec, PipelineStatus};
pub use tributary_core::ports::Ports;
use tributary_core::ports::{PortError, ReferenceSource, StreamPartition};

use crate::group::{GroupTask, Unit};

/// Why a task stopped or restarted.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A port call failed.
    #[error(transparent)]
    Port(#[from] PortError),
    /// A checkpoint's state (its JSON or its state chunks) could not be decoded, or the
    /// operator's state could not be encoded.
    #[error("checkpoint state of {task} cannot be decoded or encoded")]
    State {
        /// The task.
        task: String,
        /// The decoder's or encoder's error.
        #[source]
        source: tributary_core::ports::BoxError,
    },
    /// A task panicked: a bug, which restarting would only repeat.
    #[error("engine task {task} panicked")]
    Panicked {
        /// The task.
        task: String,
        /// The panic, as the runtime reports it.
        #[source]
        source: JoinError,
    },
    /// The engine was configured to read no record per poll.
    #[error("the engine's batch_size must be at least 1")]
    ZeroBatchSize,
    /// A pipeline has a lookup whose table no source was given for (see
    /// [`Engine::with_references`]).
    #[error("pipeline {pipeline}: no source was given for the table of its lookup {lookup}")]
    NoReference {
        /// The pipeline.
        pipeline: String,
        /// The lookup.
        lookup: String,
    },
    /// A pipeline keyed like the log reads streams of different partition counts, so its
    /// shards cannot be one partition of each.
    #[error(
        "pipeline {pipeline} reads streams with different partition counts ({partitions}); \
         give them the same number of partitions"
    )]
    PartitionsDiffer {
        /// The pipeline.
        pipeline: String,
        /// Each source and its partition count.
        partitions: String,
    },
}

impl EngineError {
    /// Whether restarting the task from its last checkpoint can help: after any port error
    /// but a fenced checkpoint or undecodable stored data. A refusal restarts too, as in
    /// Flink: an operator may fix its cause (a grant, a topic) while the task waits.
    #[must_use]
    pub fn is_restartable(&self) -> bool {
        match self {
            Self::Port(PortError::Fenced { .. } | PortError::Corrupt { .. })
            | Self::State { .. }
            | Self::Panicked { .. }
            | Self::ZeroBatchSize
            | Self::PartitionsDiffer { .. }
            | Self::NoReference { .. } => false,
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
    /// Most records handled per poll; at least 1.
    pub batch_size: usize,
    /// How long dead letters are kept: older ones are deleted every [`PRUNE_INTERVAL`].
    /// `None` keeps them forever.
    pub dead_letter_retention: Option<Duration>,
}

/// Runs every task until `shutdown` is cancelled, then lets each commit a last
/// checkpoint. Returns the first error that could not be recovered from.
#[derive(Debug)]
pub struct Engine {
    ports: Ports,
    config: EngineConfig,
    prune_interval: Duration,
    references: References,
    /// The archived streams as they change, if they do (see
    /// [`Engine::with_archived_streams`]).
    archived: Option<tokio::sync::watch::Receiver<Vec<StreamName>>>,
}

/// The source of each lookup's table, by (pipeline, lookup name).
pub type References = HashMap<(String, String), Arc<dyn ReferenceSource>>;

impl Engine {
    /// An engine over `ports`.
    #[must_use]
    pub fn new(ports: Ports, config: EngineConfig) -> Self {
        Self {
            ports,
            config,
            prune_interval: PRUNE_INTERVAL,
            references: References::new(),
            archived: None,
        }
    }

    /// Archives the streams `archived` holds as they change (streams created or deleted
    /// while the engine runs), instead of [`EngineConfig::archived_streams`] alone: at
    /// each change the archive task commits a last checkpoint and restarts over the new
    /// streams (and their partitions), a new stream read from its beginning. The archive
    /// runs when the streams at the start are not empty.
    #[must_use]
    pub fn with_archived_streams(
        self,
        archived: tokio::sync::watch::Receiver<Vec<StreamName>>,
    ) -> Self {
        Self {
            archived: Some(archived),
            ..self
        }
    }

    /// Reads the tables of the pipelines' lookups from `references`, which must hold one
    /// source for each lookup of each pipeline.
    #[must_use]
    pub fn with_references(self, references: References) -> Self {
        Self { references, ..self }
    }

    /// Prunes dead letters every `interval` instead of every [`PRUNE_INTERVAL`] (for
    /// tests).
    #[must_use]
    pub fn with_prune_interval(self, interval: Duration) -> Self {
        Self {
            prune_interval: interval,
            ..self
        }
    }

    /// Runs all tasks until `shutdown` is cancelled or one fails for good, which cancels
    /// `shutdown` so that the others stop after a last checkpoint.
    ///
    /// # Errors
    /// The first error a task could not recover from by restarting (a fenced checkpoint:
    /// another processor took over the pipeline; undecodable state; a panic), or
    /// [`EngineError::ZeroBatchSize`] before starting any task.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), EngineError> {
        // A poll for no record returns at once: every task would spin.
        if self.config.batch_size == 0 {
            return Err(EngineError::ZeroBatchSize);
        }
        let mut tasks = Tasks::new(shutdown);
        for spec in self.config.pipelines {
            let references = references_of(&self.references, &spec)?;
            let layout = layout(&self.ports, &spec).await?;
            let units = Units {
                spec: &spec,
                ports: &self.ports,
                batch: self.config.batch_size,
                references: &references,
            };
            let (streams, units) = units.of(layout);
            publish_parts(&self.ports, &spec.name, units.values()).await;
            tasks.spawn(GroupTask::new(
                &spec.name,
                Arc::clone(&self.ports.log),
                streams,
                units,
            ));
        }
        if let Some(first) = self.config.archived_streams.first() {
            let mut archive = archive::ArchiveTask::new(
                self.config.archived_streams.clone(),
                self.ports.clone(),
                self.config.archive_checkpoint_interval,
                self.config.batch_size,
            );
            if let Some(archived) = self.archived {
                archive = archive.following(archived);
            }
            tasks.spawn(GroupTask::new(
                archive::ARCHIVE_TASK,
                Arc::clone(&self.ports.log),
                vec![first.clone()],
                HashMap::from([((first.clone(), 0), Unit::Archive(archive))]),
            ));
        }
        if let Some(retention) = self.config.dead_letter_retention {
            tasks.spawn(dead_letters::RetentionTask::new(
                self.ports.documents.clone(),
                retention,
                self.prune_interval,
            ));
        }
        tasks.join().await
    }
}

/// The sources of `spec`'s lookups, in order.
///
/// # Errors
/// [`EngineError::NoReference`] for a lookup without one.
fn references_of(
    references: &References,
    spec: &PipelineSpec,
) -> Result<Vec<Arc<dyn ReferenceSource>>, EngineError> {
    spec.lookups
        .iter()
        .map(|lookup| {
            references
                .get(&(spec.name.clone(), lookup.name.clone()))
                .cloned()
                .ok_or_else(|| EngineError::NoReference {
                    pipeline: spec.name.clone(),
                    lookup: lookup.name.clone(),
                })
        })
        .collect()
}

/// What the tasks of one pipeline are made of.
struct Units<'a> {
    spec: &'a PipelineSpec,
    ports: &'a Ports,
    batch: usize,
    references: &'a [Arc<dyn ReferenceSource>],
}

impl Units<'_> {
    /// The streams whose partitions the pipeline's group shares, and the task each
    /// partition stands for ([`group`]): partition *p* of the first source is shard *p*
    /// (or, when the pipeline repartitions, the repartition task of source partition *p*);
    /// partition *p* of the internal stream is shard *p* of a repartitioned pipeline.
    fn of(&self, layout: Layout) -> (Vec<StreamName>, HashMap<StreamPartition, Unit>) {
        let Some(first) = self.spec.sources.first().cloned() else {
            return (Vec::new(), HashMap::new());
        };
        let mut units = HashMap::new();
        match layout {
            Layout::Whole => {
                let task =
                    windowed::WindowedTask::new(self.spec.clone(), self.ports.clone(), self.batch)
                        .with_references(self.references.to_vec());
                units.insert((first.clone(), 0), Unit::Windowed(task));
                (vec![first], units)
            }
            Layout::Shards(partitions) => {
                let watermarks = Arc::default();
                for partition in 0..partitions {
                    let task = self.shard(partition, &watermarks);
                    units.insert((first.clone(), partition), Unit::Windowed(task));
                }
                (vec![first], units)
            }
            Layout::Repartitioned {
                internal,
                partitions,
                upstream,
                origins,
            } => {
                let watermarks = Arc::default();
                let upstream: Vec<Option<u32>> = match upstream {
                    Some(n) => (0..n).map(Some).collect(),
                    None => vec![None],
                };
                for shard in upstream {
                    let task = repartition::RepartitionTask::new(
                        self.spec.clone(),
                        self.ports.clone(),
                        self.batch,
                        internal.clone(),
                        shard,
                        self.references.to_vec(),
                    );
                    units.insert((first.clone(), shard.unwrap_or(0)), Unit::Repartition(task));
                }
                for partition in 0..partitions {
                    let task = self
                        .shard(partition, &watermarks)
                        .reading_internal(internal.clone(), origins.clone());
                    units.insert((internal.clone(), partition), Unit::Windowed(task));
                }
                (vec![first, internal], units)
            }
        }
    }

    /// The task of shard `partition`, sharing `watermarks` with the pipeline's other
    /// shards in this process.
    fn shard(
        &self,
        partition: u32,
        watermarks: &Arc<windowed::Watermarks>,
    ) -> windowed::WindowedTask {
        windowed::WindowedTask::shard(
            self.spec.clone(),
            self.ports.clone(),
            self.batch,
            partition,
            Arc::clone(watermarks),
        )
        .with_references(self.references.to_vec())
    }
}

/// Writes the names of `pipeline`'s parts (those of its `units`) to the cache, where
/// readers of its status find each part's own ([`PipelineStatus::load`]). Best effort, as
/// everything in the cache.
async fn publish_parts<'a>(ports: &Ports, pipeline: &str, units: impl Iterator<Item = &'a Unit>) {
    let mut parts: Vec<windowed::Part> = units.filter_map(Unit::part).collect();
    parts.sort();
    let names: Vec<String> = parts.iter().map(windowed::Part::name).collect();
    let key = PipelineStatus::parts_key(pipeline);
    let json = serde_json::Value::from(names).to_string();
    if let Err(err) = ports.cache.set(&key, &json, None).await {
        tracing::warn!(
            pipeline,
            error = &err as &dyn std::error::Error,
            "pipeline parts not cached"
        );
    }
}

/// How a pipeline's work is split into tasks.
#[derive(Debug)]
enum Layout {
    /// One task reads every partition: a pipeline whose whole-pipeline checkpoint predates
    /// shards resumes as it was.
    Whole,
    /// One task per partition number, reading that partition of each source: every result
    /// row can only come from one partition, since the pipeline is keyed by the events' key,
    /// by which the log partitions them.
    Shards(u32),
    /// Keyed otherwise: repartition tasks (one per partition of the sources when they have
    /// as many, else one) write every event to `internal` under the pipeline's key, and one
    /// shard per partition of `internal` computes the results.
    Repartitioned {
        /// The pipeline's internal stream.
        internal: StreamName,
        /// Its partitions.
        partitions: u32,
        /// The repartition shards, when the sources have the same partition count.
        upstream: Option<u32>,
        /// Every source partition, which the shards' watermarks follow.
        origins: Vec<(StreamName, u32)>,
    },
}

/// How `spec` runs ([`Layout`]); creates the internal stream of a repartitioned pipeline,
/// with as many partitions as its largest source.
///
/// # Errors
/// [`EngineError::PartitionsDiffer`] when the sources of a pipeline keyed like the log do
/// not have the same number of partitions; a port error when the log or the store does
/// not answer.
async fn layout(ports: &Ports, spec: &PipelineSpec) -> Result<Layout, EngineError> {
    if ports.analytics.load_checkpoint(&spec.name).await?.is_some() {
        tracing::info!(pipeline = %spec.name, "pipeline resumes as one task: its checkpoint predates shards");
        return Ok(Layout::Whole);
    }
    let mut counts = Vec::with_capacity(spec.sources.len());
    for stream in &spec.sources {
        counts.push((stream.clone(), ports.log.partitions(stream).await?));
    }
    let equal = match counts.as_slice() {
        [] => return Ok(Layout::Whole),
        [(_, first), rest @ ..] => rest.iter().all(|(_, n)| n == first).then_some(*first),
    };
    if spec.keyed_like_the_log() {
        return equal
            .map(Layout::Shards)
            .ok_or_else(|| EngineError::PartitionsDiffer {
                pipeline: spec.name.clone(),
                partitions: counts
                    .iter()
                    .map(|(stream, n)| format!("{stream}: {n}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
    }
    let internal = tributary_core::repartition::internal_stream(spec).map_err(|source| {
        EngineError::State {
            task: spec.name.clone(),
            source: source.into(),
        }
    })?;
    let wanted = counts.iter().map(|(_, n)| *n).max().unwrap_or(1);
    let partitions = ports.log.ensure_stream(&internal, wanted).await?;
    let origins = counts
        .iter()
        .flat_map(|(stream, n)| (0..*n).map(move |p| (stream.clone(), p)))
        .collect();
    Ok(Layout::Repartitioned {
        internal,
        partitions,
        upstream: equal,
        origins,
    })
}

/// The engine's supervised tasks, with their names for reporting a panic.
struct Tasks {
    set: JoinSet<Result<(), EngineError>>,
    names: HashMap<tokio::task::Id, String>,
    shutdown: CancellationToken,
}

impl Tasks {
    fn new(shutdown: CancellationToken) -> Self {
        Self {
            set: JoinSet::new(),
            names: HashMap::new(),
            shutdown,
        }
    }

    /// Starts `task` under [`supervise`].
    fn spawn<T: Task>(&mut self, task: T) {
        let name = task.name().to_owned();
        let handle = self.set.spawn(supervise(task, self.shutdown.clone()));
        self.names.insert(handle.id(), name);
    }

    /// Waits for every task. The first one to fail for good, by an error or a panic,
    /// cancels `shutdown`, and its error is returned once all have stopped.
    async fn join(mut self) -> Result<(), EngineError> {
        let mut first_error = None;
        while let Some(joined) = self.set.join_next_with_id().await {
            let outcome = match joined {
                Ok((_, outcome)) => outcome,
                Err(source) => {
                    let task = self.names.remove(&source.id()).unwrap_or_default();
                    let err = EngineError::Panicked { task, source };
                    tracing::error!(
                        error = &err as &dyn std::error::Error,
                        "engine task panicked; stopping the engine"
                    );
                    Err(err)
                }
            };
            if let Err(err) = outcome {
                self.shutdown.cancel();
                first_error.get_or_insert(err);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// A restartable unit of work: one run from its last checkpoint until shutdown or error.
pub(crate) trait Task: Send + 'static {
    /// The task's name (its checkpoint key, if it checkpoints).
    fn name(&self) -> &str;
    /// Restores from the last checkpoint and runs until `shutdown` (then checkpoints) or
    /// an error (then returns it without committing anything more).
    fn run_once(
        &mut self,
        shutdown: &CancellationToken,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;
}

/// The wait before the first restart; it doubles at each failure in a row, up to
/// [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// The longest wait before a restart. A run that lasted longer than this was healthy: the
/// wait after its failure starts again from [`FIRST_BACKOFF`].
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Restarts `task` from its last checkpoint after each restartable error, with backoff.
async fn supervise<T: Task>(mut task: T, shutdown: CancellationToken) -> Result<(), EngineError> {
    let mut backoff = FIRST_BACKOFF;
    loop {
        let started = tokio::time::Instant::now();
        match task.run_once(&shutdown).await {
            Ok(()) => return Ok(()),
            Err(err) if err.is_restartable() && !shutdown.is_cancelled() => {
                if started.elapsed() > MAX_BACKOFF {
                    backoff = FIRST_BACKOFF;
                }
                metrics::counter!("tributary_task_restarts_total", "task" => task.name().to_owned())
                    .increment(1);
                log_restart(task.name(), &err, backoff);
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(()),
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Err(err) if err.is_restartable() => {
                // Shutting down: the next start resumes from the last checkpoint.
                tracing::warn!(
                    task = task.name(),
                    error = &err as &dyn std::error::Error,
                    "task failed while shutting down; its last checkpoint stands"
                );
                return Ok(());
            }
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

/// Logs a restart after `err`: a warning when waiting may fix it, an error when an
/// operator must (a refusal).
fn log_restart(task: &str, err: &EngineError, backoff: Duration) {
    let retry_in_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX);
    let error = err as &dyn std::error::Error;
    if matches!(err, EngineError::Port(e) if e.is_retryable()) {
        tracing::warn!(
            task,
            error,
            retry_in_ms,
            "task failed; restarting from its last checkpoint"
        );
    } else {
        tracing::error!(
            task,
            error,
            retry_in_ms,
            "task refused; restarting from its last checkpoint"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A task that panics at once.
    struct Panics;

    impl Task for Panics {
        fn name(&self) -> &'static str {
            "panics"
        }

        async fn run_once(&mut self, _: &CancellationToken) -> Result<(), EngineError> {
            panic!("a bug");
        }
    }

    /// A task that runs until shutdown.
    struct RunsUntilShutdown;

    impl Task for RunsUntilShutdown {
        fn name(&self) -> &'static str {
            "runs"
        }

        async fn run_once(&mut self, shutdown: &CancellationToken) -> Result<(), EngineError> {
            shutdown.cancelled().await;
            Ok(())
        }
    }

    /// A task whose runs follow a script: each runs for its duration, then fails with its
    /// error; once the script is used up, the task stops. It notes when each run starts.
    struct Fails {
        script: std::vec::IntoIter<(Duration, PortError)>,
        starts: Arc<Mutex<Vec<tokio::time::Instant>>>,
    }

    impl Fails {
        fn new(
            script: Vec<(Duration, PortError)>,
        ) -> (Self, Arc<Mutex<Vec<tokio::time::Instant>>>) {
            let starts = Arc::default();
            let task = Self {
                script: script.into_iter(),
                starts: Arc::clone(&starts),
            };
            (task, starts)
        }
    }

    impl Task for Fails {
        fn name(&self) -> &'static str {
            "fails"
        }

        async fn run_once(&mut self, _: &CancellationToken) -> Result<(), EngineError> {
            self.starts
                .lock()
                .unwrap()
                .push(tokio::time::Instant::now());
            let Some((runs_for, error)) = self.script.next() else {
                return Ok(());
            };
            tokio::time::sleep(runs_for).await;
            Err(EngineError::Port(error))
        }
    }

    fn unavailable() -> PortError {
        PortError::unavailable("test", "down")
    }

    #[tokio::test(start_paused = true)]
    async fn restarts_back_off_and_start_over_after_a_healthy_run() {
        let quick = Duration::ZERO;
        let long = Duration::from_secs(60);
        let (task, starts) = Fails::new(vec![
            (quick, unavailable()),
            (quick, unavailable()),
            (quick, PortError::refused("test", "no grant")),
            (long, unavailable()),
            (quick, unavailable()),
        ]);
        supervise(task, CancellationToken::new()).await.unwrap();
        let waits: Vec<u128> = starts
            .lock()
            .unwrap()
            .windows(2)
            .map(|pair| (pair[1] - pair[0]).as_millis())
            .collect();
        // 100, 200, 400 ms; then a 60 s run and the first wait again, then twice it.
        assert_eq!(waits, [100, 200, 400, 60_000 + 100, 200]);
    }

    #[tokio::test(start_paused = true)]
    async fn undecodable_stored_data_stops_the_task() {
        let (task, starts) = Fails::new(vec![(
            Duration::ZERO,
            PortError::corrupt("test", "bad state"),
        )]);
        let outcome = supervise(task, CancellationToken::new()).await;
        assert!(
            matches!(outcome, Err(EngineError::Port(PortError::Corrupt { .. }))),
            "{outcome:?}"
        );
        assert_eq!(starts.lock().unwrap().len(), 1, "not restarted");
    }

    #[tokio::test]
    async fn a_panic_stops_the_engine_with_an_error() {
        let shutdown = CancellationToken::new();
        let mut tasks = Tasks::new(shutdown.clone());
        tasks.spawn(RunsUntilShutdown);
        tasks.spawn(Panics);
        let outcome = tokio::time::timeout(Duration::from_secs(10), tasks.join())
            .await
            .expect("the other task stops once the panic cancels shutdown");
        assert!(
            matches!(&outcome, Err(EngineError::Panicked { task, source })
                if task == "panics" && source.is_panic()),
            "{outcome:?}"
        );
        assert!(shutdown.is_cancelled());
    }
}
