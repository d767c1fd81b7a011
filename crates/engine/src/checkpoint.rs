//! What every task shares: where it is in the log, and how it commits a checkpoint.
//!
//! A task resumes from [`AnalyticsStore::claim`], never from `load_checkpoint`: the claim
//! makes it the pipeline's owner and fences every older one (a zombie of a previous
//! process), which then fails `Fenced` at its next commit. The task commits as that owner,
//! its [`Checkpointer`] carrying the claim's generation.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use tributary_core::StreamName;
use tributary_core::Timestamp;
use tributary_core::ports::{
    AnalyticsStore, Checkpoint, Claim, Log, PartitionOffset, RawBatch, StateDelta,
};
use tributary_core::results::ResultWrite;

use crate::EngineError;

/// The next offset to read per source partition, and what the last checkpoint covered.
#[derive(Debug)]
pub(crate) struct Positions {
    next: BTreeMap<(StreamName, u32), u64>,
    committed: BTreeMap<(StreamName, u32), u64>,
    /// The only partition of each stream read, for a pipeline's shard.
    shard: Option<u32>,
}

impl Positions {
    /// Every partition of `streams` (only partition `shard` of each, when given), at the
    /// offsets of `checkpoint` (0 where it has none).
    pub(crate) async fn restore(
        log: &dyn Log,
        streams: &[StreamName],
        shard: Option<u32>,
        checkpoint: Option<&Checkpoint>,
    ) -> Result<Self, EngineError> {
        let saved: BTreeMap<(StreamName, u32), u64> = checkpoint
            .map(|cp| {
                cp.offsets
                    .iter()
                    .map(|o| ((o.stream.clone(), o.partition), o.next_offset))
                    .collect()
            })
            .unwrap_or_default();
        let mut next = BTreeMap::new();
        for stream in streams {
            for partition in 0..log.partitions(stream).await? {
                if shard.is_some_and(|shard| shard != partition) {
                    continue;
                }
                let key = (stream.clone(), partition);
                let offset = saved.get(&key).copied().unwrap_or(0);
                next.insert(key, offset);
            }
        }
        Ok(Self {
            committed: next.clone(),
            next,
            shard,
        })
    }

    /// Reader start positions.
    pub(crate) fn offsets(&self) -> Vec<PartitionOffset> {
        self.next
            .iter()
            .map(|((stream, partition), &next_offset)| PartitionOffset {
                stream: stream.clone(),
                partition: *partition,
                next_offset,
            })
            .collect()
    }

    /// Every source partition, as (stream, partition).
    pub(crate) fn partitions(&self) -> impl Iterator<Item = (&StreamName, u32)> {
        self.next
            .keys()
            .map(|(stream, partition)| (stream, *partition))
    }

    /// Records that the records of `batch` have been processed.
    pub(crate) fn advance(&mut self, batch: &RawBatch) {
        // Records of one partition come in offset order: only the last of each counts.
        let mut last: Vec<(u32, u32, u64)> = Vec::new();
        for record in batch.records() {
            match last
                .iter_mut()
                .find(|(s, p, _)| *s == record.stream && *p == record.partition)
            {
                Some(entry) => entry.2 = record.offset,
                None => last.push((record.stream, record.partition, record.offset)),
            }
        }
        for (stream, partition, offset) in last {
            let stream = batch.stream_at(stream).clone();
            self.next.insert((stream, partition), offset + 1);
        }
    }

    /// Whether records were processed since the last checkpoint.
    pub(crate) fn moved(&self) -> bool {
        self.next != self.committed
    }

    /// The source streams, each once.
    fn streams(&self) -> BTreeSet<&StreamName> {
        self.next.keys().map(|(stream, _)| stream).collect()
    }

    /// How many records are left to read: the sum over the partitions of `ends` (per
    /// stream, the end offset of each partition, [`Log::end_offsets`]) of the end minus the
    /// next offset to read. A partition unknown here (added to the stream since the task
    /// started) is read from 0 once the task restarts, so all of it counts; one whose end
    /// is below the next offset (its topic was recreated) counts 0 until records of the new
    /// topic are read. A shard counts its own partition only.
    pub(crate) fn lag(&self, ends: &BTreeMap<StreamName, Vec<u64>>) -> u64 {
        ends.iter()
            .flat_map(|(stream, partitions)| {
                (0_u32..)
                    .zip(partitions)
                    .filter(|(partition, _)| self.shard.is_none_or(|s| s == *partition))
                    .map(move |(partition, &end)| {
                        let next = self.next.get(&(stream.clone(), partition));
                        end.saturating_sub(next.copied().unwrap_or(0))
                    })
            })
            .sum()
    }
}

/// How often a task measures its lag: one end-offsets lookup per source stream each time.
const LAG_INTERVAL: Duration = Duration::from_secs(5);

/// A task's `tributary_task_lag_records{task}` gauge: the records of its source partitions
/// it has not read yet ([`Positions::lag`]).
#[derive(Debug)]
pub(crate) struct LagGauge {
    task: String,
    gauge: metrics::Gauge,
    last: Option<Instant>,
}

impl LagGauge {
    pub(crate) fn new(task: &str) -> Self {
        Self {
            task: task.to_owned(),
            gauge: metrics::gauge!("tributary_task_lag_records", "task" => task.to_owned()),
            last: None,
        }
    }

    /// Sets the gauge from the log's end offsets and `positions`, at the first call and
    /// then at most every [`LAG_INTERVAL`]. Never fails the task: when the log does not
    /// answer, the error is logged at debug level and the gauge keeps its value.
    ///
    /// Measured whether or not the task checkpoints, so that the gauge falls to 0 once the
    /// task has caught up and goes up while it reads nothing. Cancel-safe: a measurement
    /// cut short leaves the gauge as it was.
    pub(crate) async fn measure(&mut self, log: &dyn Log, positions: &Positions) {
        if self.last.is_some_and(|last| last.elapsed() < LAG_INTERVAL) {
            return;
        }
        self.last = Some(Instant::now());
        let mut ends = BTreeMap::new();
        for stream in positions.streams() {
            match log.end_offsets(stream).await {
                Ok(offsets) => {
                    ends.insert(stream.clone(), offsets);
                }
                Err(err) => {
                    tracing::debug!(task = %self.task, stream = %stream, error = &err as &dyn std::error::Error, "lag not measured");
                    return;
                }
            }
        }
        let lag = positions.lag(&ends);
        #[allow(clippy::cast_precision_loss)]
        self.gauge.set(lag as f64);
    }
}

/// Commits a task's checkpoints, in epoch order, as the owner of one claim.
#[derive(Debug)]
pub(crate) struct Checkpointer {
    task: String,
    generation: u64,
    epoch: u64,
    last: Instant,
}

impl Checkpointer {
    /// Commits as the owner `claim` made, after its checkpoint (or from epoch 0).
    pub(crate) fn new(task: &str, claim: &Claim) -> Self {
        Self {
            task: task.to_owned(),
            generation: claim.generation,
            epoch: claim.checkpoint.as_ref().map_or(0, |cp| cp.epoch),
            last: Instant::now(),
        }
    }

    /// The claim's generation.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// The epoch of the last checkpoint, committed or restored.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Whether `interval` has passed since the last commit.
    pub(crate) fn due(&self, interval: Duration) -> bool {
        self.last.elapsed() >= interval
    }

    /// Commits `results`, `state`, the state chunks' `delta` and the positions in one
    /// transaction of `analytics`; `Fenced` once a newer claim took the task over.
    ///
    /// On any error the task must restart from its last checkpoint: `results` and `delta`
    /// were taken from its operator, which no longer holds them.
    #[tracing::instrument(level = "debug", name = "checkpoint", skip_all, fields(task = %self.task, epoch = self.epoch + 1))]
    pub(crate) async fn commit(
        &mut self,
        analytics: &dyn AnalyticsStore,
        positions: &mut Positions,
        state: serde_json::Value,
        watermark: Timestamp,
        results: Option<ResultWrite<'_>>,
        delta: &StateDelta,
    ) -> Result<Checkpoint, EngineError> {
        let started = Instant::now();
        let checkpoint = Checkpoint {
            pipeline: self.task.clone(),
            epoch: self.epoch + 1,
            offsets: positions.offsets(),
            state,
            watermark,
        };
        analytics
            .commit_checkpoint(self.generation, &checkpoint, results, delta)
            .await?;
        self.epoch = checkpoint.epoch;
        self.last = Instant::now();
        positions.committed.clone_from(&positions.next);
        metrics::histogram!("tributary_checkpoint_duration_seconds", "task" => self.task.clone())
            .record(started.elapsed().as_secs_f64());
        let now = Timestamp::now().millis();
        #[allow(clippy::cast_precision_loss)]
        {
            metrics::gauge!("tributary_task_last_checkpoint_timestamp_seconds", "task" => self.task.clone())
                .set(now as f64 / 1000.0);
            if watermark != Timestamp::MIN {
                metrics::gauge!("tributary_task_watermark_delay_seconds", "task" => self.task.clone())
                    .set((now - watermark.millis()).max(0) as f64 / 1000.0);
            }
        }
        tracing::debug!(task = %self.task, epoch = checkpoint.epoch, results = results.map_or(0, |r| r.changes.len()), chunks = delta.append.len(), "checkpoint committed");
        Ok(checkpoint)
    }
}

/// Commits a checkpoint of the positions reached only: for tasks whose output is written
/// before their checkpoint and that have no state, watermark or results (the archive, a
/// repartition task).
pub(crate) async fn commit_offsets(
    checkpointer: &mut Checkpointer,
    analytics: &dyn AnalyticsStore,
    positions: &mut Positions,
) -> Result<Checkpoint, EngineError> {
    commit_state(checkpointer, analytics, positions, serde_json::Value::Null).await
}

/// As [`commit_offsets`], with a task's small `state`.
pub(crate) async fn commit_state(
    checkpointer: &mut Checkpointer,
    analytics: &dyn AnalyticsStore,
    positions: &mut Positions,
    state: serde_json::Value,
) -> Result<Checkpoint, EngineError> {
    checkpointer
        .commit(
            analytics,
            positions,
            state,
            Timestamp::MIN,
            None,
            &StateDelta::default(),
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(name: &str) -> StreamName {
        StreamName::new(name).unwrap()
    }

    /// Positions at the given next offsets, as (stream, partition, next offset).
    fn positions(next: &[(&str, u32, u64)]) -> Positions {
        let next: BTreeMap<_, _> = next
            .iter()
            .map(|&(name, partition, offset)| ((stream(name), partition), offset))
            .collect();
        Positions {
            committed: next.clone(),
            next,
            shard: None,
        }
    }

    fn ends(ends: &[(&str, &[u64])]) -> BTreeMap<StreamName, Vec<u64>> {
        ends.iter()
            .map(|&(name, offsets)| (stream(name), offsets.to_vec()))
            .collect()
    }

    #[test]
    fn lag_sums_what_is_left_in_every_partition() {
        let at = positions(&[("a", 0, 3), ("a", 1, 0), ("b", 0, 10)]);
        assert_eq!(at.lag(&ends(&[("a", &[5, 4]), ("b", &[12])])), 2 + 4 + 2);
        assert_eq!(at.lag(&ends(&[("a", &[3, 0]), ("b", &[10])])), 0);
        // Nothing known of a stream: no lag counted for it.
        assert_eq!(at.lag(&ends(&[("b", &[11])])), 1);
    }

    #[test]
    fn lag_follows_the_records_read() {
        let mut at = positions(&[("a", 0, 0), ("a", 1, 0)]);
        let end = ends(&[("a", &[2, 1])]);
        assert_eq!(at.lag(&end), 3);
        let mut batch = RawBatch::default();
        let a = batch.stream_index(&stream("a"));
        batch.push(a, 0, 0, Some(b"{}"));
        batch.push(a, 0, 1, None);
        at.advance(&batch);
        assert_eq!(at.lag(&end), 1);
    }

    #[test]
    fn a_shard_counts_its_own_partition_only() {
        let mut at = positions(&[("a", 1, 2)]);
        at.shard = Some(1);
        assert_eq!(at.lag(&ends(&[("a", &[5, 4, 9])])), 2);
    }

    #[test]
    fn lag_counts_a_new_partition_whole_and_a_recreated_one_as_nothing() {
        let at = positions(&[("a", 0, 8)]);
        // Partition 1 was added since the task started; partition 0's end went back.
        assert_eq!(at.lag(&ends(&[("a", &[2, 5])])), 5);
    }
}
