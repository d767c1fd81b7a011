//! The windowed pipeline task: counts events per key in event-time windows, exactly once.
//!
//! An event whose window had already closed is not counted: it is kept as a dead letter
//! ([`DeadLetter::late`], with its window's start and the watermark it met), as are the log
//! records its reader skipped because they hold no event ([`LogReader::take_rejected`]).
//! Both are stored before the checkpoint covering their offsets, and their ids are derived
//! from what was refused, so a replay after a crash keeps each one once. The late count of
//! the pipeline's status stays exact too: it is part of the checkpointed state.
//!
//! Each checkpoint writes the operator's small state whole, and its de-duplication hashes
//! incrementally: the state chunks counted since the last checkpoint, and the groups of the
//! windows closed since ([`WindowOperator::take_state_delta`]). What a checkpoint takes from
//! the operator is gone from it, so any failure from there on ends the run: the task
//! restarts from its last committed checkpoint, never from an operator missing a delta.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tributary_core::pipeline::{PipelineSpec, PipelineStatus};
use tributary_core::ports::{Checkpoint, Claim, LogReader, StateDelta};
use tributary_core::window::{Outcome, WindowOperator, WindowResult, WindowState};
use tributary_core::{DeadLetter, Event, StreamName, Timestamp};

use crate::checkpoint::{Checkpointer, LagGauge, Positions};
use crate::{EngineError, Ports, Task, dead_letters};

/// How long a poll waits for records before the task looks at the clock again.
const POLL_TIMEOUT: Duration = Duration::from_millis(200);

/// One pipeline, run from its last checkpoint.
#[derive(Debug)]
pub struct WindowedTask {
    spec: PipelineSpec,
    ports: Ports,
    batch_size: usize,
}

impl WindowedTask {
    /// A task for `spec` over `ports`.
    #[must_use]
    pub fn new(spec: PipelineSpec, ports: Ports, batch_size: usize) -> Self {
        Self {
            spec,
            ports,
            batch_size,
        }
    }
}

impl Task for WindowedTask {
    fn name(&self) -> &str {
        &self.spec.name
    }

    async fn run_once(&mut self, shutdown: &CancellationToken) -> Result<(), EngineError> {
        let name = self.spec.name.clone();
        let claim = self.ports.analytics.claim(&name).await?;
        let mut checkpointer = Checkpointer::new(&name, &claim);
        let mut positions = Positions::restore(
            self.ports.log.as_ref(),
            &self.spec.sources,
            claim.checkpoint.as_ref(),
        )
        .await?;
        let sources = positions
            .partitions()
            .map(|(stream, partition)| (stream.clone(), partition))
            .collect();
        let mut reader = self.ports.log.reader(&name, &positions.offsets()).await?;
        let mut operator = restore(&self.spec, claim, sources).await?;
        tracing::info!(
            pipeline = %name,
            generation = checkpointer.generation(),
            epoch = checkpointer.epoch(),
            "pipeline restored from its last checkpoint"
        );

        let mut lag = LagGauge::new(&name);
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
            let now = now_ms();
            // Outcomes are tallied per batch: one metric update per outcome, not per event.
            let mut tally = [0_u64; 3];
            // The batch's refusals, stored before the next checkpoint covers their offsets.
            let mut refused = reader.take_rejected();
            for record in &records {
                let outcome = operator.process(record.partition, &record.event, now);
                positions.advance(record);
                tally[outcome as usize] += 1;
                if outcome == Outcome::Late {
                    refused.push(self.late(&record.event, operator.watermark()));
                }
            }
            dead_letters::keep(self.ports.documents.as_ref(), &refused).await?;
            for (outcome, n) in [Outcome::Counted, Outcome::Duplicate, Outcome::Late]
                .into_iter()
                .zip(tally)
                .filter(|(_, n)| *n > 0)
            {
                metrics::counter!("tributary_pipeline_events_total", "pipeline" => name.clone(), "outcome" => outcome.label())
                    .increment(n);
            }
            let watermark = operator.advance(now);
            if watermark != Timestamp::MIN {
                #[allow(clippy::cast_precision_loss)]
                metrics::gauge!("tributary_pipeline_watermark_ms", "pipeline" => name.clone())
                    .set(watermark.millis() as f64);
            }
            if checkpointer.due(self.spec.checkpoint_interval) {
                operator = self
                    .checkpoint(operator, &mut positions, &mut checkpointer, reader.as_mut())
                    .await?;
            }
        }
        self.checkpoint(operator, &mut positions, &mut checkpointer, reader.as_mut())
            .await?;
        tracing::info!(pipeline = %name, "pipeline stopped after a final checkpoint");
        Ok(())
    }
}

impl WindowedTask {
    /// The dead letter of `event`, refused as late at `watermark`.
    fn late(&self, event: &Event, watermark: Timestamp) -> DeadLetter {
        let window_start = Timestamp::from_millis(self.spec.window.start_of(event.ts.millis()));
        DeadLetter::late(&self.spec.name, event, window_start, watermark)
    }

    /// Commits the changed results with the state, its delta and the offsets, then
    /// publishes the status; does nothing when no record was read and neither a result nor
    /// the state changed since the last one. Hands the operator back.
    async fn checkpoint(
        &self,
        operator: WindowOperator,
        positions: &mut Positions,
        checkpointer: &mut Checkpointer,
        reader: &mut dyn LogReader,
    ) -> Result<WindowOperator, EngineError> {
        if !operator.has_changes() && !positions.moved() {
            return Ok(operator);
        }
        let (operator, snapshot) = take_snapshot(&self.spec.name, operator).await?;
        let checkpoint = checkpointer
            .commit(
                self.ports.analytics.as_ref(),
                positions,
                snapshot.state,
                operator.watermark(),
                &snapshot.results,
                &snapshot.delta,
            )
            .await?;
        self.publish(&checkpoint, &operator, snapshot.results).await;
        if let Err(err) = reader.commit(&checkpoint.offsets).await {
            tracing::debug!(pipeline = %self.spec.name, error = &err as &dyn std::error::Error, "log offset report failed");
        }
        Ok(operator)
    }

    /// Writes the pipeline's status to the cache, after the commit. Best effort: the cache
    /// is derived, so a failure is logged and the next checkpoint overwrites it.
    async fn publish(
        &self,
        checkpoint: &Checkpoint,
        operator: &WindowOperator,
        latest: Vec<WindowResult>,
    ) {
        let status = PipelineStatus {
            pipeline: self.spec.name.clone(),
            epoch: checkpoint.epoch,
            watermark: (checkpoint.watermark != Timestamp::MIN).then_some(checkpoint.watermark),
            committed_at: Timestamp::now(),
            late_events: operator.state().late_events,
            duplicates: operator.state().duplicates,
            latest,
        };
        let json = match serde_json::to_string(&status) {
            Ok(json) => json,
            Err(err) => {
                tracing::warn!(pipeline = %self.spec.name, error = &err as &dyn std::error::Error, "pipeline status not encoded");
                return;
            }
        };
        let key = PipelineStatus::cache_key(&self.spec.name);
        if let Err(err) = self.ports.cache.set(&key, &json, None).await {
            tracing::warn!(pipeline = %self.spec.name, error = &err as &dyn std::error::Error, "pipeline status not cached");
        }
    }
}

/// The operator of `spec` resumed from `claim` (its checkpoint's state and its state
/// chunks), or a fresh one, reading `sources`. Rebuilt on a blocking thread: the chunks
/// hold every open window's de-duplication hashes, too many to decode between two awaits
/// on a runtime worker.
async fn restore(
    spec: &PipelineSpec,
    claim: Claim,
    sources: Vec<(StreamName, u32)>,
) -> Result<WindowOperator, EngineError> {
    let spec = spec.clone();
    let task = spec.name.clone();
    tokio::task::spawn_blocking(move || {
        let state: WindowState = match claim.checkpoint {
            Some(cp) => serde_json::from_value(cp.state).map_err(|source| EngineError::State {
                task: spec.name.clone(),
                source: source.into(),
            })?,
            None => WindowState::default(),
        };
        let sources = sources
            .iter()
            .map(|(stream, partition)| (stream, *partition));
        WindowOperator::restore(&spec, state, &claim.chunks, sources, now_ms()).map_err(|source| {
            EngineError::State {
                task: spec.name.clone(),
                source: source.into(),
            }
        })
    })
    .await
    .map_err(|source| EngineError::Panicked { task, source })?
}

/// What a checkpoint commits, taken from the operator.
#[derive(Debug)]
struct Snapshot {
    /// The results that changed.
    results: Vec<WindowResult>,
    /// The operator's state, as JSON.
    state: serde_json::Value,
    /// The state chunks to append and the groups to drop.
    delta: StateDelta,
}

/// Takes the operator's changed results and state delta and encodes its state, on a
/// blocking thread: a delta can hold many hashes (all of an open window's after a restore
/// from a state that held them), too many to copy between two awaits on a runtime worker.
/// The operator moves there and back; nothing else is copied.
async fn take_snapshot(
    task: &str,
    mut operator: WindowOperator,
) -> Result<(WindowOperator, Snapshot), EngineError> {
    let (operator, results, delta, encoded) = tokio::task::spawn_blocking(move || {
        let results = operator.take_changes();
        let delta = operator.take_state_delta();
        let encoded = serde_json::to_value(operator.state());
        (operator, results, delta, encoded)
    })
    .await
    .map_err(|source| EngineError::Panicked {
        task: task.to_owned(),
        source,
    })?;
    let state = encoded.map_err(|source| EngineError::State {
        task: task.to_owned(),
        source: source.into(),
    })?;
    Ok((
        operator,
        Snapshot {
            results,
            state,
            delta,
        },
    ))
}

/// Processing time, in epoch milliseconds.
fn now_ms() -> i64 {
    Timestamp::now().millis()
}
