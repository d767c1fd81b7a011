//! A pipeline plan, checked: what to read, how to window, what to compute.

use std::time::Duration;

use crate::event::StreamName;

/// What a pipeline computes per window and key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    /// The number of distinct events (by id) in the window.
    Count,
}

/// How events are grouped in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowSpec {
    /// Fixed-size, non-overlapping windows aligned on the epoch: `[k·size, (k+1)·size)`.
    Tumbling {
        /// Window length, in milliseconds (> 0).
        size_ms: i64,
    },
}

impl WindowSpec {
    /// Start of the window holding `ts_ms`.
    #[must_use]
    pub fn start_of(self, ts_ms: i64) -> i64 {
        match self {
            Self::Tumbling { size_ms } => ts_ms.div_euclid(size_ms) * size_ms,
        }
    }

    /// End (exclusive) of the window starting at `start_ms`.
    #[must_use]
    pub fn end_of(self, start_ms: i64) -> i64 {
        match self {
            Self::Tumbling { size_ms } => start_ms.saturating_add(size_ms),
        }
    }
}

/// A checked pipeline plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineSpec {
    /// The pipeline's name (same rules as a stream name); also its consumer group.
    pub name: String,
    /// The streams it reads.
    pub sources: Vec<StreamName>,
    /// Its windows.
    pub window: WindowSpec,
    /// What it computes per window and key.
    pub aggregate: Aggregate,
    /// How far behind the newest event of a partition an event may be and still count.
    pub max_out_of_orderness: Duration,
    /// A partition with no new event for this long (processing time) does not hold the
    /// watermark back.
    pub idle_timeout: Duration,
    /// How often results, state and offsets are committed.
    pub checkpoint_interval: Duration,
}

/// Milliseconds in a duration, saturating.
#[must_use]
pub fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A pipeline's live status, written to the cache by the engine after each committed
/// checkpoint and read by the gateway. Derived data: losing it loses nothing.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PipelineStatus {
    /// The pipeline.
    pub pipeline: String,
    /// Epoch of the last committed checkpoint.
    pub epoch: u64,
    /// The watermark at that checkpoint (`null` before any event).
    pub watermark: Option<crate::event::Timestamp>,
    /// Wall-clock time of the commit.
    pub committed_at: crate::event::Timestamp,
    /// Events dropped as late so far.
    pub late_events: u64,
    /// Duplicate events ignored so far.
    pub duplicates: u64,
    /// The results written by that checkpoint.
    pub latest: Vec<crate::window::WindowResult>,
}

impl PipelineStatus {
    /// The cache key under which a pipeline's status is kept.
    #[must_use]
    pub fn cache_key(pipeline: &str) -> String {
        format!("pipeline:{pipeline}:status")
    }
}
