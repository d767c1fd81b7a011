//! Groups: how the processes running the engine share a pipeline's tasks.
//!
//! Each pipeline (and the raw-event archive) is one group of the log
//! ([`Log::join`]: a Kafka consumer group, with the cooperative-sticky assignor; on the
//! embedded log, the process alone). The group hands out the partitions of some streams,
//! and each partition stands for one task ([`Unit`]): partition *p* of the pipeline's first
//! source is shard *p* (or the repartition task of source partition *p*), partition *p* of
//! its internal stream is shard *p* of a repartitioned pipeline. [`GroupTask`] runs, in
//! this process, the tasks of the partitions the group gave it:
//!
//! - **Assigned:** each task starts, claims its checkpoint in the analytics store (fencing
//!   any older owner, which may not know yet that it lost the task) and restores from it.
//! - **Revoked:** each task stops after a last checkpoint, then the group is told the
//!   partitions are released, so the new owner restores from that checkpoint. Tasks not
//!   involved keep running (cooperative rebalancing moves only what changes hands).
//! - **Lost** (this process missed its session timeout, so the group already gave the
//!   tasks away): the tasks stop the same way; their last commit either comes before the
//!   new owner's claim (which then reads it) or is fenced by it. Both are exact.
//! - **Fenced** (a task's commit found a newer owner): the task stops without restarting,
//!   and the group's revocation follows. It starts again only if the group assigns its
//!   partition again. A sole member (the embedded log) has no peers to be fenced by: there,
//!   as before groups, a fenced task stops the engine (a reset, or another processor
//!   outside the group, took over).
//!
//! The librdkafka pitfalls and how each is met:
//! - *A rebalance during a commit:* the revocation waits for the task to end, and a task
//!   ends only between commits (its stop signal is looked at between batches), so the
//!   commit in flight finishes first and the last checkpoint follows it.
//! - *A partition revoked while a checkpoint is in flight:* the same wait; a task that
//!   does not stop within [`RELEASE_TIMEOUT`] (a store that hangs) is aborted and the
//!   partition released anyway: whatever it commits later is fenced by the new owner.
//! - *A fenced claim:* a claim never fails by fencing (it bumps the generation); a commit
//!   fenced after it stops the task for good, as above.
//! - *Assignments before the revocation of the same partition is released:* the
//!   revocation is handled to its end before the next change is read.
//!
//! Metrics: `tributary_tasks_owned{group}` (the tasks running here),
//! `tributary_task_owned{task}` (1 where the task runs, 0 where it was released),
//! `tributary_rebalances_total{group, change}` (`assigned`, `revoked`, `lost`) and
//! `tributary_rebalance_duration_seconds{group}` (the time a revocation took to stop and
//! checkpoint its tasks and release them).

use std::collections::HashMap;
use std::time::Duration;

use tokio::task::{JoinError, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tributary_core::StreamName;
use tributary_core::ports::{GroupChange, Log, Membership, PortError, StreamPartition};

use crate::archive::ArchiveTask;
use crate::repartition::RepartitionTask;
use crate::windowed::{Part, WindowedTask};
use crate::{EngineError, Task, supervise};

/// How long a revoked task may take to stop before it is aborted and its partition
/// released anyway.
pub(crate) const RELEASE_TIMEOUT: Duration = Duration::from_secs(30);

/// A task a group's partition stands for.
#[derive(Debug, Clone)]
pub(crate) enum Unit {
    /// A pipeline, or one of its shards.
    Windowed(WindowedTask),
    /// A repartition task of a pipeline.
    Repartition(RepartitionTask),
    /// The raw-event archive.
    Archive(ArchiveTask),
}

impl Unit {
    /// The task's part of its pipeline's status (the archive has none).
    pub(crate) fn part(&self) -> Option<Part> {
        match self {
            Self::Windowed(task) => Some(task.part()),
            Self::Repartition(task) => Some(task.part()),
            Self::Archive(_) => None,
        }
    }
}

impl Task for Unit {
    fn name(&self) -> &str {
        match self {
            Self::Windowed(task) => task.name(),
            Self::Repartition(task) => task.name(),
            Self::Archive(task) => task.name(),
        }
    }

    async fn run_once(&mut self, shutdown: &CancellationToken) -> Result<(), EngineError> {
        match self {
            Self::Windowed(task) => task.run_once(shutdown).await,
            Self::Repartition(task) => task.run_once(shutdown).await,
            Self::Archive(task) => task.run_once(shutdown).await,
        }
    }
}

/// A group of the log and the task each of its partitions stands for.
#[derive(Debug)]
pub(crate) struct GroupTask {
    /// The group's name: the pipeline's (or the archive task's).
    group: String,
    /// The task's name, for its restarts: `group:{group}`.
    name: String,
    log: std::sync::Arc<dyn Log>,
    /// The streams whose partitions the group shares.
    streams: Vec<StreamName>,
    units: HashMap<StreamPartition, Unit>,
}

impl GroupTask {
    /// Group `name` over `log`, sharing the partitions of `streams`; `units` says which
    /// task each partition stands for (partitions without one are owned, and idle).
    pub(crate) fn new(
        name: &str,
        log: std::sync::Arc<dyn Log>,
        streams: Vec<StreamName>,
        units: HashMap<StreamPartition, Unit>,
    ) -> Self {
        Self {
            group: name.to_owned(),
            name: format!("group:{name}"),
            log,
            streams,
            units,
        }
    }
}

impl Task for GroupTask {
    fn name(&self) -> &str {
        &self.name
    }

    /// Joins the group and runs the tasks of the partitions it assigns until `shutdown`
    /// (then stops them, each after a last checkpoint, and leaves) or an error of the
    /// group (then stops them the same way and returns it: the group is joined again).
    async fn run_once(&mut self, shutdown: &CancellationToken) -> Result<(), EngineError> {
        let mut membership = self.log.join(&self.group, &self.streams).await?;
        let mut owned = Owned::new(&self.group, shutdown.child_token());
        let outcome = owned
            .follow(membership.as_mut(), &self.units, shutdown)
            .await;
        let stopped = owned.stop_all().await;
        // Leaving the group (after the last checkpoints) hands the tasks over at once; it
        // waits for the coordinator, so off the runtime's threads.
        let _ = tokio::task::spawn_blocking(move || drop(membership)).await;
        outcome.and(stopped)
    }
}

/// The tasks running here for one group.
struct Owned {
    group: String,
    /// Parent of every task's stop signal.
    stop: CancellationToken,
    running: HashMap<StreamPartition, Running>,
    set: JoinSet<Result<(), EngineError>>,
    gauge: metrics::Gauge,
    /// Whether the group has other members, whose fencing of a task here is expected.
    peers: bool,
}

/// One task running here.
struct Running {
    name: String,
    stop: CancellationToken,
    abort: tokio::task::AbortHandle,
}

impl Owned {
    fn new(group: &str, stop: CancellationToken) -> Self {
        let gauge = metrics::gauge!("tributary_tasks_owned", "group" => group.to_owned());
        gauge.set(0.0);
        Self {
            group: group.to_owned(),
            stop,
            running: HashMap::new(),
            set: JoinSet::new(),
            gauge,
            peers: false,
        }
    }

    /// Follows the group's changes until `shutdown` or an error.
    async fn follow(
        &mut self,
        membership: &mut dyn Membership,
        units: &HashMap<StreamPartition, Unit>,
        shutdown: &CancellationToken,
    ) -> Result<(), EngineError> {
        self.peers = membership.has_peers();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                change = membership.next() => match change? {
                    GroupChange::Assigned(partitions) => {
                        count(&self.group, "assigned");
                        for partition in partitions {
                            if let Some(unit) = units.get(&partition) {
                                self.start(partition, unit.clone());
                            }
                        }
                    }
                    GroupChange::Revoked { partitions, lost } => {
                        count(&self.group, if lost { "lost" } else { "revoked" });
                        let started = Instant::now();
                        self.stop(&partitions, lost).await?;
                        membership.released().await?;
                        metrics::histogram!("tributary_rebalance_duration_seconds", "group" => self.group.clone())
                            .record(started.elapsed().as_secs_f64());
                    }
                },
                Some(joined) = self.set.join_next_with_id(), if !self.set.is_empty() => {
                    self.ended(joined)?;
                }
            }
        }
    }

    /// Starts `unit`, the task of `partition`, unless it runs already.
    fn start(&mut self, partition: StreamPartition, unit: Unit) {
        if self.running.contains_key(&partition) {
            return;
        }
        let name = unit.name().to_owned();
        tracing::info!(group = %self.group, task = %name, stream = %partition.0, partition = partition.1, "task assigned to this process");
        metrics::gauge!("tributary_task_owned", "task" => name.clone()).set(1.0);
        let stop = self.stop.child_token();
        let abort = self.set.spawn(supervise(unit, stop.clone()));
        self.running
            .insert(partition, Running { name, stop, abort });
        self.gauge.set(self.running.len() as f64);
    }

    /// Stops the tasks of `partitions` (each after a last checkpoint) and waits for them,
    /// aborting those that take longer than [`RELEASE_TIMEOUT`].
    async fn stop(
        &mut self,
        partitions: &[StreamPartition],
        lost: bool,
    ) -> Result<(), EngineError> {
        for partition in partitions {
            if let Some(running) = self.running.get(partition) {
                tracing::info!(group = %self.group, task = %running.name, lost, "task revoked from this process; stopping it after a last checkpoint");
                running.stop.cancel();
            }
        }
        let deadline = Instant::now() + RELEASE_TIMEOUT;
        let mut first_error = Ok(());
        while partitions.iter().any(|p| self.running.contains_key(p)) {
            let joined = match tokio::time::timeout_at(deadline, self.set.join_next_with_id()).await
            {
                Ok(joined) => joined,
                Err(_) => {
                    // The aborted tasks end at once, and are taken off as they do.
                    for partition in partitions {
                        if let Some(running) = self.running.get(partition) {
                            tracing::warn!(group = %self.group, task = %running.name, "task did not stop in time; aborted, its partition released anyway");
                            running.abort.abort();
                        }
                    }
                    self.set.join_next_with_id().await
                }
            };
            let Some(joined) = joined else { break };
            if let Err(err) = self.ended(joined) {
                first_error = first_error.and(Err(err));
            }
        }
        first_error
    }

    /// Takes a task that ended off the running ones, and returns the error that must stop
    /// the engine, if any. A task fenced by a newer owner only stops when the group has
    /// peers (one of them took it over, and the group's revocation follows); an aborted
    /// task was given up on.
    fn ended(
        &mut self,
        joined: Result<(tokio::task::Id, Result<(), EngineError>), JoinError>,
    ) -> Result<(), EngineError> {
        let id = match &joined {
            Ok((id, _)) => *id,
            Err(source) => source.id(),
        };
        let Some(partition) = self
            .running
            .iter()
            .find_map(|(partition, running)| (running.abort.id() == id).then(|| partition.clone()))
        else {
            return Ok(());
        };
        let Some(running) = self.running.remove(&partition) else {
            return Ok(());
        };
        self.gauge.set(self.running.len() as f64);
        metrics::gauge!("tributary_task_owned", "task" => running.name.clone()).set(0.0);
        metrics::gauge!("tributary_task_lag_records", "task" => running.name.clone()).set(0.0);
        match joined {
            Ok((_, Ok(()))) => Ok(()),
            Err(source) if source.is_cancelled() => Ok(()),
            Err(source) => Err(EngineError::Panicked {
                task: running.name,
                source,
            }),
            Ok((_, Err(err @ EngineError::Port(PortError::Fenced { .. })))) => {
                tracing::warn!(group = %self.group, task = %running.name, "task taken over by another owner; it runs here again only if the group assigns it back");
                if self.peers { Ok(()) } else { Err(err) }
            }
            Ok((_, Err(err))) => Err(err),
        }
    }

    /// Stops every task, each after a last checkpoint, and waits for them.
    async fn stop_all(&mut self) -> Result<(), EngineError> {
        self.stop.cancel();
        let mut first_error = Ok(());
        while let Some(joined) = self.set.join_next_with_id().await {
            if let Err(err) = self.ended(joined) {
                first_error = first_error.and(Err(err));
            }
        }
        first_error
    }
}

/// Counts a change of `group`'s assignment.
fn count(group: &str, change: &'static str) {
    metrics::counter!("tributary_rebalances_total", "group" => group.to_owned(), "change" => change)
        .increment(1);
}
