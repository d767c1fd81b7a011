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
    /// 1 for the first checkpoint, then +1 at each commit. Fences out zombie writers.
    pub epoch: u64,
    /// Where to resume reading, per source partition.
    pub offsets: Vec<PartitionOffset>,
    /// The operator's state (open windows, watermarks), as the operator serialized it.
    pub state: serde_json::Value,
    /// The pipeline's watermark when the checkpoint was taken.
    pub watermark: Timestamp,
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
/// Contract: [`AnalyticsStore::commit_checkpoint`] writes the results, the state and the
/// offsets in **one transaction**, and only if the stored epoch is `checkpoint.epoch - 1`
/// (no checkpoint stored counts as epoch 0); otherwise it writes nothing and fails with
/// [`PortError::Fenced`]. Results are upserted by (pipeline, window start, key).
#[async_trait]
pub trait AnalyticsStore: Send + Sync + Debug {
    /// Checks that the backing system answers; used by `/readyz`.
    async fn ping(&self) -> Result<(), PortError>;

    /// The pipeline's last committed checkpoint, if any.
    async fn load_checkpoint(&self, pipeline: &str) -> Result<Option<Checkpoint>, PortError>;

    /// Commits results, state and offsets atomically, fenced by epoch.
    async fn commit_checkpoint(
        &self,
        checkpoint: &Checkpoint,
        results: &[WindowResult],
    ) -> Result<(), PortError>;

    /// Results matching `query`, ordered by window start, then key.
    async fn query_results(&self, query: &ResultQuery) -> Result<Vec<WindowResult>, PortError>;
}
