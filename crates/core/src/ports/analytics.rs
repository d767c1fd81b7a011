//! The analytics port: window results, pipeline checkpoints and operator state, committed
//! together.

use std::fmt::Debug;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{PartitionOffset, PortError};
use crate::event::Timestamp;
use crate::results::{ResultRow, ResultSchema, ResultWrite};

/// A pipeline's checkpoint: everything needed to resume it exactly where it stopped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The pipeline.
    pub pipeline: String,
    /// 1 for the first checkpoint, then +1 at each commit.
    pub epoch: u64,
    /// Where to resume reading, per source partition.
    pub offsets: Vec<PartitionOffset>,
    /// The operator's state (open windows, watermarks), as the operator serialized it; what
    /// it keeps in [`StateChunk`]s is not in it.
    pub state: serde_json::Value,
    /// The pipeline's watermark when the checkpoint was taken.
    pub watermark: Timestamp,
}

/// An append-only piece of a pipeline's operator state, stored beside its checkpoint, so
/// that a checkpoint writes what changed since the last one instead of the whole state (as
/// Flink's incremental checkpoints do). The store keeps the bytes as they are; what they
/// mean is the operator's business.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateChunk {
    /// The group the chunk belongs to (for the window operator, a window's start): chunks
    /// are read back by group and dropped by group.
    pub group: i64,
    /// The chunk's content.
    pub bytes: Vec<u8>,
}

/// One entry of a pipeline's keyed operator state: replaced whole when it changes (for the
/// window operator, the accumulators of one window and key). As with chunks, the store keeps
/// the bytes as they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedState {
    /// The group the entry belongs to (for the window operator, a window's start).
    pub group: i64,
    /// The entry's key within its group.
    pub key: Vec<u8>,
    /// The entry's content.
    pub bytes: Vec<u8>,
}

/// How a commit changes a pipeline's stored state: first every chunk and keyed entry of
/// `drop_groups` is deleted, then the entries of `remove`, then the chunks of `append` are
/// added and the entries of `put` inserted or replaced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateDelta {
    /// Chunks to add, in order; a group may appear several times.
    pub append: Vec<StateChunk>,
    /// Groups whose stored chunks and keyed entries are deleted (before the rest).
    pub drop_groups: Vec<i64>,
    /// Keyed entries to insert or replace, by (group, key); of duplicates the last wins.
    pub put: Vec<KeyedState>,
    /// Keyed entries to delete, as (group, key).
    pub remove: Vec<(i64, Vec<u8>)>,
}

impl StateDelta {
    /// Whether the delta changes nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.append.is_empty()
            && self.drop_groups.is_empty()
            && self.put.is_empty()
            && self.remove.is_empty()
    }
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
    /// When that checkpoint was committed (the store's clock): how long the pipeline went
    /// without progress before this claim, when its last owner stopped or died.
    pub committed_at: Option<Timestamp>,
    /// The pipeline's stored state chunks, read in the same transaction: by group, then in
    /// the order they were committed (by epoch, then by position in their delta).
    pub chunks: Vec<StateChunk>,
    /// The pipeline's keyed state entries, read in the same transaction, by group, then key.
    pub keyed: Vec<KeyedState>,
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
///   checkpoint and its state chunks in **one transaction**, serialized with every commit
///   of the pipeline: the checkpoint it returns is the last one any older generation can
///   ever commit;
/// - [`AnalyticsStore::commit_checkpoint`] writes the results, the state, the offsets and
///   the [`StateDelta`] (dropped groups first, then appended chunks) in **one
///   transaction**, and only if the stored generation is the committer's (a newer
///   claim fences every older owner, whatever its epoch) and the stored epoch is
///   `checkpoint.epoch - 1` (no checkpoint stored counts as epoch 0); otherwise it writes
///   nothing and fails with [`PortError::Fenced`]. Generation 0 and epoch 0 are refused.
///   Results go to the pipeline's own table ([`ResultSchema::table`]), upserted or deleted
///   by (window start, key) in the order given;
/// - [`AnalyticsStore::prepare_results`] creates a pipeline's results table, or adds the
///   columns a stored one lacks; a stored column of another type is refused;
/// - [`AnalyticsStore::reset`] deletes a pipeline's checkpoint, state and results, and
///   fences its owners;
/// - [`AnalyticsStore::load_checkpoint`] only reads, and not the state chunks: for
///   observers (the gateway, tools), never to resume a pipeline.
#[async_trait]
pub trait AnalyticsStore: Send + Sync + Debug {
    /// Checks that the backing system answers; used by `/readyz`.
    async fn ping(&self) -> Result<(), PortError>;

    /// Takes the pipeline over: a new generation, and the last checkpoint and state chunks
    /// to resume from. Every older owner is fenced from then on.
    async fn claim(&self, pipeline: &str) -> Result<Claim, PortError>;

    /// The pipeline's last committed checkpoint, if any. Read-only: takes no ownership.
    async fn load_checkpoint(&self, pipeline: &str) -> Result<Option<Checkpoint>, PortError>;

    /// Commits results, state, offsets and the state chunks' `delta` atomically, as the
    /// owner of `generation` (from [`AnalyticsStore::claim`]), fenced by generation and by
    /// epoch.
    async fn commit_checkpoint(
        &self,
        generation: u64,
        checkpoint: &Checkpoint,
        results: Option<ResultWrite<'_>>,
        delta: &StateDelta,
    ) -> Result<(), PortError>;

    /// Creates the results table of `schema`, or adds the columns a stored one lacks.
    /// Idempotent; [`PortError::Refused`] when a stored column has another type.
    async fn prepare_results(&self, schema: &ResultSchema) -> Result<(), PortError>;

    /// Deletes the pipeline's checkpoint, state chunks, keyed state and results table, and
    /// bumps its generation so that a running owner is fenced: the pipeline starts over.
    async fn reset(&self, pipeline: &str) -> Result<(), PortError>;

    /// Rows of the pipeline of `schema` matching `query`, ordered by window start, then key;
    /// none (not an error) before its table exists.
    async fn query_results(
        &self,
        schema: &ResultSchema,
        query: &ResultQuery,
    ) -> Result<Vec<ResultRow>, PortError>;
}
