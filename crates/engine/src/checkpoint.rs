//! What every task shares: where it is in the log, and how it commits a checkpoint.
//!
//! A task resumes from [`AnalyticsStore::claim`], never from `load_checkpoint`: the claim
//! makes it the pipeline's owner and fences every older one (a zombie of a previous
//! process), which then fails `Fenced` at its next commit. The task commits as that owner,
//! its [`Checkpointer`] carrying the claim's generation.

use std::collections::BTreeMap;
use std::time::Instant;

use tributary_core::StreamName;
use tributary_core::Timestamp;
use tributary_core::ports::{
    AnalyticsStore, Checkpoint, Claim, Log, LogRecord, PartitionOffset, StateDelta,
};
use tributary_core::window::WindowResult;

use crate::EngineError;

/// The next offset to read per source partition, and what the last checkpoint covered.
#[derive(Debug)]
pub(crate) struct Positions {
    next: BTreeMap<(StreamName, u32), u64>,
    committed: BTreeMap<(StreamName, u32), u64>,
}

impl Positions {
    /// Every partition of `streams`, at the offsets of `checkpoint` (0 where it has none).
    pub(crate) async fn restore(
        log: &dyn Log,
        streams: &[StreamName],
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
                let key = (stream.clone(), partition);
                let offset = saved.get(&key).copied().unwrap_or(0);
                next.insert(key, offset);
            }
        }
        Ok(Self {
            committed: next.clone(),
            next,
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

    /// Records that `record` has been processed.
    pub(crate) fn advance(&mut self, record: &LogRecord) {
        self.next.insert(
            (record.event.stream.clone(), record.partition),
            record.offset + 1,
        );
    }

    /// Whether records were processed since the last checkpoint.
    pub(crate) fn moved(&self) -> bool {
        self.next != self.committed
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
    pub(crate) fn due(&self, interval: std::time::Duration) -> bool {
        self.last.elapsed() >= interval
    }

    /// Commits `results`, `state`, the state chunks' `delta` and the positions in one
    /// transaction of `analytics`; `Fenced` once a newer claim took the task over.
    ///
    /// On any error the task must restart from its last checkpoint: `results` and `delta`
    /// were taken from its operator, which no longer holds them.
    pub(crate) async fn commit(
        &mut self,
        analytics: &dyn AnalyticsStore,
        positions: &mut Positions,
        state: serde_json::Value,
        watermark: Timestamp,
        results: &[WindowResult],
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
        tracing::debug!(task = %self.task, epoch = checkpoint.epoch, results = results.len(), chunks = delta.append.len(), "checkpoint committed");
        Ok(checkpoint)
    }
}
