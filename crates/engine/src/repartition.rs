//! The repartition task of a pipeline keyed otherwise than its events: it reads the
//! pipeline's sources and appends each event, wrapped, to the pipeline's internal stream
//! under the pipeline's key, so that every event of one key lands in one partition of it,
//! which one shard of the pipeline reads (`tributary_core::repartition`).
//!
//! The events of a batch are appended before the checkpoint that moves past them, so none
//! is lost; a crash in between appends them again, and the shards' de-duplication by
//! (stream, id) counts each once. The key may read lookups: the task loads the pipeline's
//! tables as the pipeline does. An event too large to wrap is kept as a dead letter.

use std::sync::Arc;

use std::collections::BTreeMap;
use tokio_util::sync::CancellationToken;
use tributary_core::expr::Row;
use tributary_core::pipeline::PipelineSpec;
use tributary_core::ports::{Checkpoint, EncodedBatch, RawBatch, ReferenceSource};
use tributary_core::record::Projection;
use tributary_core::window::Counters;

use tributary_core::Timestamp;
use tributary_core::repartition::{progress_records, route_keys, wrap_into};
use tributary_core::{DeadLetter, StreamName};

use crate::checkpoint::{Checkpointer, Positions, commit_state};
use crate::lookups::Lookups;
use crate::task_loop::{self, Reading, Stage};
use crate::windowed::{Part, ShardStatus, publish_part};
use crate::{EngineError, Ports, Task, records};

/// Repartitions `spec`'s sources (one partition of each, for a shard) into `internal`.
#[derive(Debug, Clone)]
pub struct RepartitionTask {
    spec: PipelineSpec,
    ports: Ports,
    batch_size: usize,
    internal: StreamName,
    shard: Option<u32>,
    name: String,
    references: Vec<Arc<dyn ReferenceSource>>,
}

impl RepartitionTask {
    /// The task writing `spec`'s events to `internal`, reading partition `shard` of each
    /// source (every partition when `None`), looking keys up in `references`.
    #[must_use]
    pub fn new(
        spec: PipelineSpec,
        ports: Ports,
        batch_size: usize,
        internal: StreamName,
        shard: Option<u32>,
        references: Vec<Arc<dyn ReferenceSource>>,
    ) -> Self {
        let name = match shard {
            Some(partition) => crate::windowed::shard_task(internal.as_str(), partition),
            None => internal.to_string(),
        };
        Self {
            spec,
            ports,
            batch_size,
            internal,
            shard,
            name,
            references,
        }
    }
}

impl RepartitionTask {
    /// The task's part of the pipeline's status.
    pub(crate) fn part(&self) -> Part {
        Part::Repartition(self.shard)
    }
}

impl Task for RepartitionTask {
    fn name(&self) -> &str {
        &self.name
    }

    async fn run_once(&mut self, shutdown: &CancellationToken) -> Result<(), EngineError> {
        let spec = self.spec.clone();
        let ports = self.ports.clone();
        let reading = Reading {
            task: &self.name,
            streams: &spec.sources,
            shard: self.shard,
            batch_size: self.batch_size,
            interval: spec.checkpoint_interval,
        };
        let internal = self.internal.clone();
        let references = &self.references;
        let part = self.part();
        let (spec, ports) = (&spec, &ports);
        task_loop::run(ports, reading, shutdown, |claim, _| {
            let filtered = claim
                .checkpoint
                .as_ref()
                .and_then(|cp| cp.state.get("filtered"))
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0);
            async move {
                let repartitioner = Repartitioner {
                    lookups: Lookups::load(
                        &spec.name,
                        &spec.lookups,
                        spec.lookup_columns(),
                        references,
                    )
                    .await?,
                    projection: spec.projection(),
                    spec: spec.clone(),
                    ports: ports.clone(),
                    routes: route_keys(ports.log.partitions(&internal).await?),
                    internal,
                    key: String::new(),
                    encoded: EncodedBatch::default(),
                    filtered,
                    counted: false,
                    part,
                };
                repartitioner.publish().await;
                Ok(repartitioner)
            }
        })
        .await
    }
}

/// One run's stage: wraps and appends each batch.
#[derive(Debug)]
struct Repartitioner {
    spec: PipelineSpec,
    ports: Ports,
    internal: StreamName,
    lookups: Lookups,
    key: String,
    /// The records appended for a batch, encoded (reused from batch to batch).
    encoded: EncodedBatch,
    /// A key routed to each partition of the internal stream, for progress records.
    routes: Vec<String>,
    /// The payload fields the pipeline reads: all that is decoded and shipped of each
    /// event.
    projection: Projection,
    /// Events the pipeline's filter dropped here, before the shuffle, since the pipeline
    /// started: part of this task's checkpoint, so exact through restarts.
    filtered: u64,
    /// Whether `filtered` moved since the last checkpoint.
    counted: bool,
    /// This task's part of the pipeline's status.
    part: Part,
}

impl Repartitioner {
    /// Shows this task's count of filtered events, as of its last checkpoint, in the
    /// pipeline's status (this task's part of it).
    async fn publish(&self) {
        let status = ShardStatus {
            epoch: 0,
            watermark: Timestamp::MIN,
            counters: Counters {
                filtered: self.filtered,
                ..Counters::default()
            },
        };
        publish_part(&self.ports, &self.spec.name, self.part, status, Vec::new()).await;
    }
}

impl Stage for Repartitioner {
    /// Filters and keys each event as the pipeline does (decoding only what it reads), and
    /// appends those the filter keeps, with only the fields the pipeline reads.
    async fn process(
        &mut self,
        batch: &RawBatch,
        refused: &mut Vec<DeadLetter>,
    ) -> Result<(), EngineError> {
        self.lookups.maybe_refresh();
        let tables = self.lookups.tables();
        let mut enricher = tables.enricher();
        let views = records::Views::decode(batch, &self.projection, refused);
        let wrapped = &mut self.encoded;
        wrapped.clear();
        let mut progress: BTreeMap<(u32, u32), Timestamp> = BTreeMap::new();
        let mut filtered = 0;
        for (record, event) in views.events() {
            // Filtered events move the watermark too.
            let reached = progress
                .entry((record.stream, record.partition))
                .or_insert(event.ts);
            *reached = (*reached).max(event.ts);
            // A filter that reads no lookup runs before them: most events it drops are
            // never looked up.
            let (early, late) = match &self.spec.filter {
                Some(filter) if !filter.reads_lookups() => (Some(filter), None),
                filter => (None, filter.as_ref()),
            };
            if early.is_some_and(|f| {
                !f.matches(&Row {
                    event,
                    lookups: &[],
                })
            }) {
                filtered += 1;
                continue;
            }
            let row = Row {
                event,
                lookups: enricher.rows(event),
            };
            if late.is_some_and(|f| !f.matches(&row)) {
                filtered += 1;
                continue;
            }
            self.spec.write_key(&row, &mut self.key);
            if let Err(too_large) =
                wrap_into(wrapped, event, record.partition, &self.key, &self.internal)
            {
                refused.push(DeadLetter::log_record(
                    event.stream,
                    record.partition,
                    record.offset,
                    too_large.to_string(),
                    batch.value(record).unwrap_or_default(),
                ));
            }
        }
        // After the batch's events, so that a shard reads them before the progress.
        for ((stream, partition), ts) in progress {
            let records = progress_records(
                &self.internal,
                &self.routes,
                batch.stream_at(stream),
                partition,
                ts,
            );
            for record in &records {
                wrapped.push_event(record);
            }
        }
        if filtered > 0 {
            self.filtered += filtered;
            self.counted = true;
        }
        if !wrapped.is_empty() {
            self.ports
                .log
                .append_encoded(&self.internal, &self.encoded)
                .await?;
        }
        Ok(())
    }

    fn has_changes(&self) -> bool {
        self.counted
    }

    async fn checkpoint(
        &mut self,
        checkpointer: &mut Checkpointer,
        positions: &mut Positions,
    ) -> Result<Checkpoint, EngineError> {
        let state = serde_json::json!({ "filtered": self.filtered });
        let checkpoint = commit_state(
            checkpointer,
            self.ports.analytics.as_ref(),
            positions,
            state,
        )
        .await?;
        self.counted = false;
        self.publish().await;
        Ok(checkpoint)
    }
}
