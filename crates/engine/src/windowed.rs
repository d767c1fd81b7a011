//! The windowed pipeline task: filters, keys and aggregates events in event-time windows,
//! exactly once.
//!
//! At each start the task creates or migrates the pipeline's results table
//! (`AnalyticsStore::prepare_results`), restores its operator from the claim (failing for
//! good, with what to do, when the stored state was written by another definition of the
//! pipeline) and publishes the restored status, so that a quiet pipeline shows its status
//! after a restart too.
//!
//! An event no window takes any more is not counted: it is kept as a dead letter
//! ([`DeadLetter::late`], with its first window's start and the watermark it met), as are
//! the log records its reader skipped because they hold no event. Both are stored before
//! the checkpoint covering their offsets, and their ids are derived from what was refused,
//! so a replay after a crash keeps each one once. The late count of the pipeline's status
//! stays exact too: it is part of the checkpointed state.
//!
//! Each checkpoint writes the result rows that changed, the small state whole, and the
//! keyed entries and de-duplication chunks that changed
//! ([`WindowOperator::take_checkpoint`]). What a checkpoint takes from the operator is gone
//! from it, so any failure from there on ends the run: the task restarts from its last
//! committed checkpoint, never from an operator missing a delta.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;
use tributary_core::pipeline::{PipelineSpec, PipelineStatus};
use tributary_core::ports::{Checkpoint, Claim, RawBatch, ReferenceSource};
use tributary_core::record::Projection;
use tributary_core::results::{ResultChange, ResultSchema, ResultWrite};
use tributary_core::window::{Counters, Outcome, Snapshot, WindowOperator};
use tributary_core::{DeadLetter, Event, StreamName, Timestamp};

use crate::checkpoint::{Checkpointer, Positions};
use crate::lookups::Lookups;
use crate::task_loop::{self, Reading, Stage};
use crate::{EngineError, Ports, Task, records};

/// The checkpoint name of shard `partition` of `pipeline`: the task that reads that
/// partition of each of its sources. Its claim, checkpoint, state and watermark are its
/// own; its result rows go to the pipeline's table.
#[must_use]
pub fn shard_task(pipeline: &str, partition: u32) -> String {
    format!("{pipeline}#{partition}")
}

/// One pipeline, or one shard of it, run from its last checkpoint.
#[derive(Debug, Clone)]
pub struct WindowedTask {
    spec: PipelineSpec,
    ports: Ports,
    batch_size: usize,
    /// The partition this task reads, when the pipeline runs as shards.
    shard: Option<u32>,
    /// The task's checkpoint name: the pipeline's, or [`shard_task`].
    name: String,
    watermarks: Arc<Watermarks>,
    /// The source of each lookup's table, in the order of `spec.lookups`.
    references: Vec<Arc<dyn ReferenceSource>>,
    /// When the pipeline is repartitioned: the internal stream the task reads, and the
    /// source partitions whose events it holds (each holds the watermark).
    repartitioned: Option<(StreamName, Vec<(StreamName, u32)>)>,
}

impl WindowedTask {
    /// A task running all of `spec` over `ports`.
    #[must_use]
    pub fn new(spec: PipelineSpec, ports: Ports, batch_size: usize) -> Self {
        Self {
            name: spec.name.clone(),
            spec,
            ports,
            batch_size,
            shard: None,
            watermarks: Arc::default(),
            references: Vec::new(),
            repartitioned: None,
        }
    }

    /// The task of shard `partition` of `spec`, sharing `watermarks` with the pipeline's
    /// other shards in this process.
    #[must_use]
    pub fn shard(
        spec: PipelineSpec,
        ports: Ports,
        batch_size: usize,
        partition: u32,
        watermarks: Arc<Watermarks>,
    ) -> Self {
        Self {
            name: shard_task(&spec.name, partition),
            spec,
            ports,
            batch_size,
            shard: Some(partition),
            watermarks,
            references: Vec::new(),
            repartitioned: None,
        }
    }

    /// Reads `internal`, the pipeline's internal stream (its shard's partition of it),
    /// whose records wrap the events of the source partitions `origins`
    /// ([`tributary_core::repartition`]).
    #[must_use]
    pub fn reading_internal(self, internal: StreamName, origins: Vec<(StreamName, u32)>) -> Self {
        Self {
            repartitioned: Some((internal, origins)),
            ..self
        }
    }

    /// The task's part of the pipeline's status.
    pub(crate) fn part(&self) -> Part {
        Part::Shard(self.shard)
    }

    /// Reads the tables of `spec`'s lookups from `references`, one per lookup, in order.
    #[must_use]
    pub fn with_references(self, references: Vec<Arc<dyn ReferenceSource>>) -> Self {
        Self { references, ..self }
    }
}

impl Task for WindowedTask {
    fn name(&self) -> &str {
        &self.name
    }

    async fn run_once(&mut self, shutdown: &CancellationToken) -> Result<(), EngineError> {
        let spec = self.spec.clone();
        let ports = self.ports.clone();
        let watermarks = Arc::clone(&self.watermarks);
        let shard = self.shard;
        let references = &self.references;
        let (streams, origins) = match &self.repartitioned {
            Some((internal, origins)) => (vec![internal.clone()], Some(origins.clone())),
            None => (spec.sources.clone(), None),
        };
        let reading = Reading {
            task: &self.name,
            streams: &streams,
            shard,
            batch_size: self.batch_size,
            interval: spec.checkpoint_interval,
        };
        task_loop::run(&ports, reading, shutdown, |claim, sources| {
            let unwrap = origins.is_some();
            let sources = origins.unwrap_or(sources);
            let open = Pipeline::open(&spec, &ports, claim, sources, shard, watermarks, references);
            async move {
                Ok(Pipeline {
                    unwrap,
                    ..open.await?
                })
            }
        })
        .await
    }
}

/// What one shard last published.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ShardStatus {
    pub(crate) epoch: u64,
    pub(crate) watermark: Timestamp,
    pub(crate) counters: Counters,
}

/// The watermarks of a pipeline's shards running in this process, for the
/// `tributary_pipeline_watermark_timestamp_seconds` gauge (the lowest of them). The
/// pipeline's status merges every part's, wherever it runs ([`PipelineStatus::load`]).
#[derive(Debug, Default)]
pub struct Watermarks(Mutex<BTreeMap<Option<u32>, Timestamp>>);

/// A task of a pipeline that shows in its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Part {
    /// The pipeline's task, or one of its shards.
    Shard(Option<u32>),
    /// A repartition task (which counts the events its filter drops).
    Repartition(Option<u32>),
}

impl Part {
    /// The part's name in the pipeline's status ([`PipelineStatus::part_key`]).
    pub(crate) fn name(&self) -> String {
        match self {
            Self::Shard(None) => "whole".to_owned(),
            Self::Shard(Some(p)) => format!("shard-{p}"),
            Self::Repartition(None) => "repartition".to_owned(),
            Self::Repartition(Some(p)) => format!("repartition-{p}"),
        }
    }
}

impl Watermarks {
    /// Records `watermark` for `shard` ([`Timestamp::MIN`]: none yet) and returns the
    /// lowest of the shards that have one, or [`Timestamp::MIN`].
    pub(crate) fn update(&self, shard: Option<u32>, watermark: Timestamp) -> Timestamp {
        let mut shards = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if watermark != Timestamp::MIN {
            shards.insert(shard, watermark);
        }
        shards.values().min().copied().unwrap_or(Timestamp::MIN)
    }
}

/// One run of a pipeline (or shard): its operator and where its results go.
#[derive(Debug)]
struct Pipeline {
    ports: Ports,
    schema: ResultSchema,
    shard: Option<u32>,
    watermarks: Arc<Watermarks>,
    /// Taken while a checkpoint encodes it on a blocking thread; always back afterwards.
    operator: Option<WindowOperator>,
    /// The tables its expressions look events up in.
    lookups: Lookups,
    /// The payload fields its expressions read: all it decodes of an event's payload.
    projection: Projection,
    /// Whether it reads an internal stream, whose records wrap the events.
    unwrap: bool,
    /// The pipeline's sources (the streams the events of an internal stream come from).
    sources: Vec<StreamName>,
}

impl Pipeline {
    /// Loads the lookup tables from `references`, prepares the results table, restores the
    /// operator from `claim` and publishes the restored status.
    async fn open(
        spec: &PipelineSpec,
        ports: &Ports,
        claim: Claim,
        sources: Vec<(StreamName, u32)>,
        shard: Option<u32>,
        watermarks: Arc<Watermarks>,
        references: &[Arc<dyn ReferenceSource>],
    ) -> Result<Self, EngineError> {
        let lookups =
            Lookups::load(&spec.name, &spec.lookups, spec.lookup_columns(), references).await?;
        let schema = spec.schema();
        ports.analytics.prepare_results(&schema).await?;
        let epoch = claim.checkpoint.as_ref().map_or(0, |cp| cp.epoch);
        let operator = restore(spec, claim, sources).await?;
        let pipeline = Self {
            ports: ports.clone(),
            schema,
            shard,
            watermarks,
            operator: Some(operator),
            lookups,
            projection: spec.projection(),
            unwrap: false,
            sources: spec.sources.clone(),
        };
        pipeline.publish(epoch, &[]).await;
        Ok(pipeline)
    }

    /// Records, for each window whose result just became final (committed, so visible
    /// through the API), the time from the earliest it could be final (its end plus the
    /// watermark's delay) to now, in `tributary_window_final_latency_seconds`. A sharded
    /// pipeline records it per shard: each shard's rows of the window.
    fn observe_latency(&self, finalized: &[Timestamp]) {
        let Some(operator) = &self.operator else {
            return;
        };
        let delay = tributary_core::pipeline::millis(operator.spec().max_out_of_orderness);
        let now = now_ms();
        let histogram = metrics::histogram!(
            "tributary_window_final_latency_seconds",
            "pipeline" => self.schema.pipeline.clone()
        );
        for end in finalized {
            let late_ms = now - end.millis().saturating_add(delay);
            #[allow(clippy::cast_precision_loss)]
            histogram.record(late_ms.max(0) as f64 / 1000.0);
        }
    }

    /// Processes the records of an internal stream (a repartitioned pipeline's shard), in
    /// their order: the events they wrap (decoded, as a source's, only as far as the
    /// pipeline reads them), and the progress records that move the watermarks.
    fn process_wrapped(
        &mut self,
        batch: &RawBatch,
        refused: &mut Vec<DeadLetter>,
    ) -> Result<(), EngineError> {
        self.lookups.maybe_refresh();
        // Every event of the batch is looked up in the same tables.
        let tables = self.lookups.tables();
        let mut enricher = tables.enricher();
        let now = now_ms();
        let Some(operator) = self.operator.as_mut() else {
            return Err(self.lost());
        };
        let sources = &self.sources;
        let records = records::Wrapped::decode(batch, &self.projection, sources, refused);
        let mut tally = [0_u64; Outcome::ALL.len()];
        for (record, item) in records.items(sources) {
            let (partition, event, key) = match item {
                records::Item::Progress(stream, partition, ts) => {
                    operator.observe_progress(stream, partition, ts, now);
                    continue;
                }
                records::Item::Event(partition, event, key) => (partition, event, key),
            };
            let rows = enricher.rows(event);
            let outcome = match key {
                Some(key) => operator.process_routed(partition, event, rows, key, now),
                None => operator.process_ref(partition, event, rows, now),
            };
            tally[outcome as usize] += 1;
            if outcome == Outcome::Late {
                // Rare: the dead letter keeps the whole event.
                let whole = records::decode_whole(records.batch(), record, refused)
                    .and_then(|wrapped| tributary_core::repartition::unwrap(wrapped).ok());
                if let Some((event, _)) = whole {
                    refused.push(late(operator, &event));
                }
            }
        }
        operator.advance(now);
        self.count(&tally);
        Ok(())
    }

    /// Counts a batch's outcomes: one metric update per outcome, not per event.
    fn count(&self, tally: &[u64; Outcome::ALL.len()]) {
        let pipeline = &self.schema.pipeline;
        for (outcome, &n) in Outcome::ALL.into_iter().zip(tally).filter(|(_, n)| **n > 0) {
            metrics::counter!("tributary_pipeline_events_total", "pipeline" => pipeline.clone(), "outcome" => outcome.label())
                .increment(n);
        }
    }

    fn lost(&self) -> EngineError {
        EngineError::State {
            task: self.schema.pipeline.clone(),
            source: "the window operator was lost by a failed checkpoint".into(),
        }
    }

    /// Writes the pipeline's status to the cache. Best effort: the cache is derived, so a
    /// failure is logged and the next checkpoint overwrites it.
    async fn publish(&self, epoch: u64, changes: &[ResultChange]) {
        let Some(operator) = &self.operator else {
            return;
        };
        let own = ShardStatus {
            epoch,
            watermark: operator.watermark(),
            counters: operator.counters(),
        };
        let watermark = self.watermarks.update(self.shard, own.watermark);
        if watermark != Timestamp::MIN {
            #[allow(clippy::cast_precision_loss)]
            metrics::gauge!("tributary_pipeline_watermark_timestamp_seconds", "pipeline" => self.schema.pipeline.clone())
                .set(watermark.millis() as f64 / 1000.0);
        }
        let latest = changes
            .iter()
            .filter_map(|change| match change {
                ResultChange::Upsert(row) => Some(row.to_json(&self.schema)),
                ResultChange::Delete { .. } => None,
            })
            .collect();
        publish_part(
            &self.ports,
            &self.schema.pipeline,
            Part::Shard(self.shard),
            own,
            latest,
        )
        .await;
    }
}

/// Writes the status of one `part` of `pipeline` to the cache, where readers merge the
/// parts' ([`PipelineStatus::load`]), wherever each runs. Best effort: the cache is
/// derived, so a failure is logged and the next checkpoint overwrites it.
pub(crate) async fn publish_part(
    ports: &Ports,
    pipeline: &str,
    part: Part,
    status: ShardStatus,
    latest: Vec<serde_json::Value>,
) {
    let status = PipelineStatus {
        pipeline: pipeline.to_owned(),
        epoch: status.epoch,
        watermark: (status.watermark != Timestamp::MIN).then_some(status.watermark),
        committed_at: Timestamp::now(),
        late_events: status.counters.late_events,
        duplicates: status.counters.duplicates,
        filtered: status.counters.filtered,
        latest,
    };
    let json = match serde_json::to_string(&status) {
        Ok(json) => json,
        Err(err) => {
            tracing::warn!(
                pipeline,
                error = &err as &dyn std::error::Error,
                "pipeline status not encoded"
            );
            return;
        }
    };
    let key = PipelineStatus::part_key(pipeline, &part.name());
    if let Err(err) = ports.cache.set(&key, &json, None).await {
        tracing::warn!(
            pipeline,
            error = &err as &dyn std::error::Error,
            "pipeline status not cached"
        );
    }
}

impl Stage for Pipeline {
    /// Decodes of each record only what the pipeline reads ([`decode_view`]), borrowing
    /// from the batch; a record the fast path does not decide is decoded whole.
    async fn process(
        &mut self,
        batch: &RawBatch,
        refused: &mut Vec<DeadLetter>,
    ) -> Result<(), EngineError> {
        if self.unwrap {
            return self.process_wrapped(batch, refused);
        }
        let views = records::Views::decode(batch, &self.projection, refused);
        self.lookups.maybe_refresh();
        let tables = self.lookups.tables();
        let mut enricher = tables.enricher();
        let now = now_ms();
        let Some(operator) = self.operator.as_mut() else {
            return Err(self.lost());
        };
        let mut tally = [0_u64; Outcome::ALL.len()];
        for (record, event) in views.events() {
            let rows = enricher.rows(event);
            let outcome = operator.process_ref(record.partition, event, rows, now);
            tally[outcome as usize] += 1;
            if outcome == Outcome::Late {
                // Rare: the dead letter keeps the whole event.
                if let Some(event) = records::decode_whole(batch, record, refused) {
                    refused.push(late(operator, &event));
                }
            }
        }
        operator.advance(now);
        self.count(&tally);
        Ok(())
    }

    fn has_changes(&self) -> bool {
        self.operator
            .as_ref()
            .is_some_and(WindowOperator::has_changes)
    }

    async fn checkpoint(
        &mut self,
        checkpointer: &mut Checkpointer,
        positions: &mut Positions,
    ) -> Result<Checkpoint, EngineError> {
        let Some(operator) = self.operator.take() else {
            return Err(self.lost());
        };
        let (operator, snapshot) = take_snapshot(&self.schema.pipeline, operator).await?;
        let watermark = operator.watermark();
        self.operator = Some(operator);
        let Snapshot {
            changes,
            delta,
            state,
            finalized,
        } = snapshot;
        let checkpoint = checkpointer
            .commit(
                self.ports.analytics.as_ref(),
                positions,
                state,
                watermark,
                Some(ResultWrite {
                    schema: &self.schema,
                    changes: &changes,
                }),
                &delta,
            )
            .await?;
        self.publish(checkpoint.epoch, &changes).await;
        self.observe_latency(&finalized);
        Ok(checkpoint)
    }
}

/// The dead letter of `event`, refused as late by `operator`.
fn late(operator: &WindowOperator, event: &Event) -> DeadLetter {
    let spec = operator.spec();
    let window_start = Timestamp::from_millis(spec.window.first_start(event.ts.millis()));
    DeadLetter::late(&spec.name, event, window_start, operator.watermark())
}

/// The operator of `spec` resumed from `claim` (its checkpoint's state, state chunks and
/// keyed entries), or a fresh one, reading `sources`. Rebuilt on a blocking thread: the
/// chunks hold every open window's de-duplication hashes, too many to decode between two
/// awaits on a runtime worker.
async fn restore(
    spec: &PipelineSpec,
    claim: Claim,
    sources: Vec<(StreamName, u32)>,
) -> Result<WindowOperator, EngineError> {
    let spec = spec.clone();
    let task = spec.name.clone();
    tokio::task::spawn_blocking(move || {
        let state = claim
            .checkpoint
            .map_or(serde_json::Value::Null, |cp| cp.state);
        let sources = sources
            .iter()
            .map(|(stream, partition)| (stream, *partition));
        WindowOperator::restore(
            &spec,
            &state,
            &claim.chunks,
            &claim.keyed,
            sources,
            now_ms(),
        )
        .map_err(|source| EngineError::State {
            task: spec.name.clone(),
            source: source.into(),
        })
    })
    .await
    .map_err(|source| EngineError::Panicked { task, source })?
}

/// Takes the operator's checkpoint (changed rows, state delta, small state) on a blocking
/// thread: a delta can hold many hashes and entries, too many to encode between two awaits
/// on a runtime worker. The operator moves there and back; nothing else is copied.
async fn take_snapshot(
    task: &str,
    mut operator: WindowOperator,
) -> Result<(WindowOperator, Snapshot), EngineError> {
    tokio::task::spawn_blocking(move || {
        let snapshot = operator.take_checkpoint();
        (operator, snapshot)
    })
    .await
    .map_err(|source| EngineError::Panicked {
        task: task.to_owned(),
        source,
    })
}

/// Processing time, in epoch milliseconds.
fn now_ms() -> i64 {
    Timestamp::now().millis()
}
