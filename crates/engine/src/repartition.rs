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
use tributary_core::pipeline::PipelineSpec;
use tributary_core::ports::{Checkpoint, LogRecord, ReferenceSource};

use tributary_core::Timestamp;
use tributary_core::repartition::{partition_key, progress_records, route_keys, wrap};
use tributary_core::{DeadLetter, Event, StreamName};

use crate::checkpoint::{Checkpointer, Positions, commit_offsets};
use crate::lookups::Lookups;
use crate::task_loop::{self, Reading, Stage};
use crate::{EngineError, Ports, Task};

/// Repartitions `spec`'s sources (one partition of each, for a shard) into `internal`.
#[derive(Debug)]
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
        task_loop::run(&ports, reading, shutdown, |_, _| async {
            Ok(Repartitioner {
                lookups: Lookups::load(&spec.name, &spec.lookups, references).await?,
                spec: spec.clone(),
                ports: ports.clone(),
                routes: route_keys(ports.log.partitions(&internal).await?),
                internal,
                key: String::new(),
            })
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
    /// A key routed to each partition of the internal stream, for progress records.
    routes: Vec<String>,
}

impl Stage for Repartitioner {
    async fn process(
        &mut self,
        records: Vec<LogRecord>,
        refused: &mut Vec<DeadLetter>,
    ) -> Result<(), EngineError> {
        self.lookups.maybe_refresh();
        let tables = self.lookups.tables();
        let mut enricher = tables.enricher();
        let mut wrapped: Vec<Event> = Vec::with_capacity(records.len());
        let mut progress: BTreeMap<(&StreamName, u32), Timestamp> = BTreeMap::new();
        for record in &records {
            let reached = progress
                .entry((&record.event.stream, record.partition))
                .or_insert(record.event.ts);
            *reached = (*reached).max(record.event.ts);
            let lookups = enricher.rows(&record.event);
            let row = tributary_core::expr::Row::new(&record.event, lookups);
            self.spec.write_key(&row, &mut self.key);
            match wrap(
                &record.event,
                record.partition,
                partition_key(&self.key),
                &self.internal,
            ) {
                Ok(event) => wrapped.push(event),
                Err(too_large) => refused.push(DeadLetter::log_record(
                    &record.event.stream,
                    record.partition,
                    record.offset,
                    too_large.to_string(),
                    &record.event.to_json_bytes(),
                )),
            }
        }
        // After the batch's events, so that a shard reads them before the progress.
        for ((stream, partition), ts) in progress {
            wrapped.extend(progress_records(
                &self.internal,
                &self.routes,
                stream,
                partition,
                ts,
            ));
        }
        if !wrapped.is_empty() {
            self.ports.log.append(&self.internal, &wrapped).await?;
        }
        Ok(())
    }

    fn has_changes(&self) -> bool {
        false
    }

    async fn checkpoint(
        &mut self,
        checkpointer: &mut Checkpointer,
        positions: &mut Positions,
    ) -> Result<Checkpoint, EngineError> {
        commit_offsets(checkpointer, self.ports.analytics.as_ref(), positions).await
    }
}
