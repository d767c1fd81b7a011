//! The analytics port: window results and pipeline checkpoints, committed together.

use std::fmt::Debug;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{PartitionOffset, PortError};
use crate::event::Timestamp;
use crate::window::WindowResult;

/// A pipeline's checkpoint: everything needed to resume it exactly where it stopped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The pipeline.
    pub pipeline: String,
    /// 1 for the first checkpoint, then +1 at each commit.
    pub epoch: u64,
    /// Where to resume reading, per source partition.
    pub offsets: Vec<PartitionOffset>,
    /// The operator's state (open windows, watermarks), as the operator serialized it.
    pub state: serde_json::Value,
    /// The pipeline's watermark when the checkpoint was taken.
    pub watermark: Timestamp,
}

/// A pipeline's ownership, taken by [`AnalyticsStore::claim`]: what its new owner resumes
/// from and commits with.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    /// The owner's generation: 1 at the pipeline's first claim, then +1 at each. Every
    /// [`AnalyticsStore::commit_checkpoint`] of this owner passes it.
    pub generation: u64,
    /// The pipeline's last committed checkpoint, if any: no older owner can commit after it.
    pub checkpoint: Option<Checkpoint>,
}

/// A query over a pipeline's window results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultQuery {
    /// The pipeline.
    pub pipeline: String,
    /// Only windows starting at or after this time.
    pub from: Option<Timestamp>,
    /// Only windows starting before this time.
    pub to: Option<Timestamp>,
    /// Only this key.
    pub key: Option<String>,
    /// At most this many rows, ordered by window start, then key.
    pub limit: usize,
}

/// Structured results with SQL behind them: PostgreSQL, or SQLite when embedded.
///
/// Contract (as Kafka fences a transactional producer at `InitProducerId`, a processor
/// fences the older owners of a pipeline when it takes the pipeline over, not when it
/// first commits):
/// - [`AnalyticsStore::claim`] bumps the pipeline's generation and reads its last
///   checkpoint in **one transaction**, serialized with every commit of the pipeline: the
///   checkpoint it returns is the last one any older generation can ever commit;
/// - [`AnalyticsStore::commit_checkpoint`] writes the results, the state and the offsets in
///   **one transaction**, and only if the stored generation is the committer's (a newer
///   claim fences every older owner, whatever its epoch) and the stored epoch is
///   `checkpoint.epoch - 1` (no checkpoint stored counts as epoch 0); otherwise it writes
///   nothing and fails with [`PortError::Fenced`]. Generation 0 and epoch 0 are refused.
///   Results are upserted by (pipeline, window start, key);
/// - [`AnalyticsStore::load_checkpoint`] only reads: for observers (the gateway, tools),
///   never to resume a pipeline.
#[async_trait]
pub trait AnalyticsStore: Send + Sync + Debug {
    /// Checks that the backing system answers; used by `/readyz`.
    async fn ping(&self) -> Result<(), PortError>;

    /// Takes the pipeline over: a new generation, and the last checkpoint to resume from.
    /// Every older owner is fenced from then on.
    async fn claim(&self, pipeline: &str) -> Result<Claim, PortError>;

    /// The pipeline's last committed checkpoint, if any. Read-only: takes no ownership.
    async fn load_checkpoint(&self, pipeline: &str) -> Result<Option<Checkpoint>, PortError>;

    /// Commits results, state and offsets atomically, as the owner of `generation` (from
    /// [`AnalyticsStore::claim`]), fenced by generation and by epoch.
    async fn commit_checkpoint(
        &self,
        generation: u64,
        checkpoint: &Checkpoint,
        results: &[WindowResult],
    ) -> Result<(), PortError>;

    /// Results matching `query`, ordered by window start, then key.
    async fn query_results(&self, query: &ResultQuery) -> Result<Vec<WindowResult>, PortError>;
}
