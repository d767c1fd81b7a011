//! The window operator: event-time windows, watermarks and per-key counts, as pure state.
//!
//! The engine feeds it records and the current processing time; it answers which windows
//! changed and which closed. Its state has two parts, both stored in each checkpoint
//! together with the offsets they cover, so that a restored operator continues exactly
//! where the checkpoint left it:
//! - a small serializable [`WindowState`]: counts, watermarks, late and duplicate counters,
//!   written whole at each checkpoint;
//! - the de-duplication hashes, which grow with every event counted: written incrementally,
//!   as [`StateChunk`]s of the window's group (its start, in epoch milliseconds) holding the
//!   hashes counted since the last checkpoint as little-endian `u64`s, at most
//!   [`HASHES_PER_CHUNK`] each ([`WindowOperator::take_state_delta`]); a closed window's
//!   chunks are dropped by group.
//!
//! Semantics, as in Flink with bounded out-of-orderness:
//! - Each source partition's watermark is its largest event time minus the allowed
//!   out-of-orderness. The pipeline's watermark is the minimum over active partitions
//!   (a partition silent for the idle timeout is skipped) and never goes back.
//! - A window `[start, end)` closes once the watermark reaches `end`; its result is then
//!   final. An event whose window has closed is late: it is not counted, and the operator
//!   counts it in [`WindowState::late_events`].
//! - Events are de-duplicated by (stream, id) while their window is open, so a client
//!   retrying a request never counts an event twice.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::event::{Event, StreamName, Timestamp};
use crate::partition::stable_hash64;
use crate::pipeline::{PipelineSpec, WindowSpec, millis};
use crate::ports::{StateChunk, StateDelta};

/// Most hashes in one [`StateChunk`] (512 KiB of bytes), so that no stored chunk is huge.
pub const HASHES_PER_CHUNK: usize = 65_536;

/// The bytes of one hash in a [`StateChunk`].
const HASH_BYTES: usize = size_of::<u64>();

/// One window's result for one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowResult {
    /// The pipeline that computed it.
    pub pipeline: String,
    /// Window start (inclusive).
    pub window_start: Timestamp,
    /// Window end (exclusive).
    pub window_end: Timestamp,
    /// The grouping key (`""` for events without a key).
    pub key: String,
    /// Events counted.
    pub count: u64,
    /// Whether the watermark has passed the window's end: the result is final.
    pub closed: bool,
}

/// What happened to one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Outcome {
    /// Counted in its window.
    Counted,
    /// Already counted: same stream and id.
    Duplicate,
    /// Its window had closed.
    Late,
}

impl Outcome {
    /// The metric label of this outcome.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::Counted => "counted",
            Self::Duplicate => "duplicate",
            Self::Late => "late",
        }
    }
}

/// One open window.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct OpenWindow {
    /// Count per key.
    counts: BTreeMap<String, u64>,
    /// Stable hashes of the (stream, id) of the events counted, for de-duplication. Stored
    /// as state chunks, not in the state's JSON; read from it when present, as states
    /// written before chunks existed hold them.
    #[serde(default, skip_serializing)]
    seen: BTreeSet<u64>,
}

/// The operator's durable state, stored in checkpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowState {
    /// Largest event time seen per source partition (`"stream/partition"`).
    max_ts: BTreeMap<String, i64>,
    /// The pipeline's watermark, in epoch milliseconds.
    watermark: Option<i64>,
    /// Open windows by start.
    open: BTreeMap<i64, OpenWindow>,
    /// Events dropped because their window had closed.
    pub late_events: u64,
    /// Events ignored because they were already counted.
    pub duplicates: u64,
}

/// A stored state chunk that is not a whole number of hashes: the store's data is damaged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("state chunk of window {group} holds {len} bytes, not a whole number of 8-byte hashes")]
pub struct ChunkError {
    /// The chunk's group: its window's start.
    pub group: i64,
    /// The chunk's length in bytes.
    pub len: usize,
}

/// The name of a source partition in the state: `"stream/partition"`.
fn source_name(stream: &StreamName, partition: u32) -> String {
    format!("{stream}/{partition}")
}

/// The window operator of one pipeline.
#[derive(Debug)]
pub struct WindowOperator {
    pipeline: String,
    window: WindowSpec,
    out_of_orderness_ms: i64,
    idle_timeout_ms: i64,
    state: WindowState,
    /// Processing time at which each partition last delivered an event.
    last_active: HashMap<String, i64>,
    /// Open windows changed since the last [`WindowOperator::take_changes`].
    dirty: BTreeSet<i64>,
    /// Windows closed since the last [`WindowOperator::take_changes`].
    closed: Vec<WindowResult>,
    /// Hashes counted per open window since the last [`WindowOperator::take_state_delta`]:
    /// the chunks to append.
    unsaved: BTreeMap<i64, Vec<u64>>,
    /// Groups whose chunks to drop at the next [`WindowOperator::take_state_delta`]:
    /// windows closed since the last one, and groups of stored chunks no open window owns.
    dropped: BTreeSet<i64>,
}

impl WindowOperator {
    /// A fresh operator for `spec`, at processing time `now_ms`, reading the source
    /// partitions `sources` (stream, partition).
    ///
    /// Every source partition holds the watermark back from the start, even before its
    /// first event, until it has been silent for the idle timeout: a pipeline started on a
    /// backlog must not close windows that a partition it has not read yet still fills.
    #[must_use]
    pub fn new<'a>(
        spec: &PipelineSpec,
        sources: impl IntoIterator<Item = (&'a StreamName, u32)>,
        now_ms: i64,
    ) -> Self {
        Self::with_state(spec, WindowState::default(), sources, now_ms)
    }

    /// An operator resuming from a checkpoint's `state` and the state `chunks` stored with
    /// it, otherwise as [`WindowOperator::new`].
    ///
    /// Each open window's de-duplication set is rebuilt from its chunks. Chunks whose group
    /// is no open window are ignored, and their group is dropped at the next checkpoint.
    /// Hashes a `state` holds itself (written before chunks existed) are kept, and written
    /// as chunks at the next checkpoint.
    ///
    /// # Errors
    /// [`ChunkError`] when a chunk of an open window is not a whole number of hashes.
    pub fn restore<'a>(
        spec: &PipelineSpec,
        state: WindowState,
        chunks: &[StateChunk],
        sources: impl IntoIterator<Item = (&'a StreamName, u32)>,
        now_ms: i64,
    ) -> Result<Self, ChunkError> {
        let mut operator = Self::with_state(spec, state, sources, now_ms);
        operator.unsaved = operator
            .state
            .open
            .iter()
            .filter(|(_, window)| !window.seen.is_empty())
            .map(|(&start, window)| (start, window.seen.iter().copied().collect()))
            .collect();
        for chunk in chunks {
            let Some(window) = operator.state.open.get_mut(&chunk.group) else {
                operator.dropped.insert(chunk.group);
                continue;
            };
            let hashes = chunk.bytes.chunks_exact(HASH_BYTES);
            if !hashes.remainder().is_empty() {
                return Err(ChunkError {
                    group: chunk.group,
                    len: chunk.bytes.len(),
                });
            }
            window.seen.extend(hashes.map(|bytes| {
                let mut hash = [0; HASH_BYTES];
                hash.copy_from_slice(bytes);
                u64::from_le_bytes(hash)
            }));
        }
        Ok(operator)
    }

    /// An operator over `state`, with nothing to checkpoint yet.
    fn with_state<'a>(
        spec: &PipelineSpec,
        state: WindowState,
        sources: impl IntoIterator<Item = (&'a StreamName, u32)>,
        now_ms: i64,
    ) -> Self {
        let last_active = sources
            .into_iter()
            .map(|(stream, partition)| source_name(stream, partition))
            .chain(state.max_ts.keys().cloned())
            .map(|source| (source, now_ms))
            .collect();
        Self {
            pipeline: spec.name.clone(),
            window: spec.window,
            out_of_orderness_ms: millis(spec.max_out_of_orderness),
            idle_timeout_ms: millis(spec.idle_timeout),
            state,
            last_active,
            dirty: BTreeSet::new(),
            closed: Vec::new(),
            unsaved: BTreeMap::new(),
            dropped: BTreeSet::new(),
        }
    }

    /// The durable state but the de-duplication hashes, for a checkpoint: they go in
    /// [`WindowOperator::take_state_delta`].
    #[must_use]
    pub fn state(&self) -> &WindowState {
        &self.state
    }

    /// The current watermark ([`Timestamp::MIN`] before any).
    #[must_use]
    pub fn watermark(&self) -> Timestamp {
        self.state
            .watermark
            .map_or(Timestamp::MIN, Timestamp::from_millis)
    }

    /// Processes one event read from `partition` of its stream, at processing time `now_ms`.
    pub fn process(&mut self, partition: u32, event: &Event, now_ms: i64) -> Outcome {
        let source = source_name(&event.stream, partition);
        let ts = event.ts.millis();
        let max = self.state.max_ts.entry(source.clone()).or_insert(ts);
        *max = (*max).max(ts);
        self.last_active.insert(source, now_ms);

        let start = self.window.start_of(ts);
        if self
            .state
            .watermark
            .is_some_and(|wm| self.window.end_of(start) <= wm)
        {
            self.state.late_events += 1;
            return Outcome::Late;
        }
        let window = self.state.open.entry(start).or_default();
        let id_hash = stable_hash64(&[
            event.stream.as_str().as_bytes(),
            event.id.as_str().as_bytes(),
        ]);
        if !window.seen.insert(id_hash) {
            self.state.duplicates += 1;
            return Outcome::Duplicate;
        }
        *window
            .counts
            .entry(event.key.clone().unwrap_or_default())
            .or_default() += 1;
        self.unsaved.entry(start).or_default().push(id_hash);
        self.dirty.insert(start);
        Outcome::Counted
    }

    /// Recomputes the watermark at processing time `now_ms` and closes the windows it
    /// passed. Returns the new watermark.
    pub fn advance(&mut self, now_ms: i64) -> Timestamp {
        // The minimum over active partitions; one that is active but has no event yet
        // holds the watermark where it is.
        let mut active_min: Option<i64> = None;
        for (source, &seen) in &self.last_active {
            if now_ms.saturating_sub(seen) >= self.idle_timeout_ms {
                continue;
            }
            let Some(&max) = self.state.max_ts.get(source) else {
                active_min = None;
                break;
            };
            let candidate = max.saturating_sub(self.out_of_orderness_ms);
            active_min = Some(active_min.map_or(candidate, |min| min.min(candidate)));
        }
        if let Some(candidate) = active_min {
            if self.state.watermark.is_none_or(|wm| candidate > wm) {
                self.state.watermark = Some(candidate);
            }
        }
        if let Some(wm) = self.state.watermark {
            while let Some(entry) = self.state.open.first_entry() {
                let start = *entry.key();
                let end = self.window.end_of(start);
                if end > wm {
                    break;
                }
                let window = entry.remove();
                self.dirty.remove(&start);
                self.unsaved.remove(&start);
                self.dropped.insert(start);
                self.closed
                    .extend(window.counts.into_iter().map(|(key, count)| WindowResult {
                        pipeline: self.pipeline.clone(),
                        window_start: Timestamp::from_millis(start),
                        window_end: Timestamp::from_millis(end),
                        key,
                        count,
                        closed: true,
                    }));
            }
        }
        self.watermark()
    }

    /// Whether anything changed since the last [`WindowOperator::take_changes`] and
    /// [`WindowOperator::take_state_delta`].
    #[must_use]
    pub fn has_changes(&self) -> bool {
        !self.dirty.is_empty()
            || !self.closed.is_empty()
            || !self.unsaved.is_empty()
            || !self.dropped.is_empty()
    }

    /// The results to commit with the next checkpoint: windows closed since the last call
    /// (final) and open windows that changed (provisional, `closed: false`). A checkpoint
    /// takes them together with [`WindowOperator::take_state_delta`].
    pub fn take_changes(&mut self) -> Vec<WindowResult> {
        let mut results = std::mem::take(&mut self.closed);
        for start in std::mem::take(&mut self.dirty) {
            if let Some(window) = self.state.open.get(&start) {
                let end = self.window.end_of(start);
                results.extend(window.counts.iter().map(|(key, &count)| WindowResult {
                    pipeline: self.pipeline.clone(),
                    window_start: Timestamp::from_millis(start),
                    window_end: Timestamp::from_millis(end),
                    key: key.clone(),
                    count,
                    closed: false,
                }));
            }
        }
        results
    }

    /// The state chunks to commit with the next checkpoint: per open window, the hashes
    /// counted since the last call (or restored from a state that held them), by window
    /// start, in chunks of at most [`HASHES_PER_CHUNK`]; and the groups to drop: windows
    /// closed since the last call, and groups of restored chunks no open window owned.
    ///
    /// What it returns is no longer the operator's to write: a checkpoint that fails to
    /// commit it must drop the operator and restore from the last committed checkpoint.
    pub fn take_state_delta(&mut self) -> StateDelta {
        let append = std::mem::take(&mut self.unsaved)
            .into_iter()
            .flat_map(|(group, hashes)| {
                hashes
                    .chunks(HASHES_PER_CHUNK)
                    .map(|part| StateChunk {
                        group,
                        bytes: part.iter().flat_map(|hash| hash.to_le_bytes()).collect(),
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        StateDelta {
            append,
            drop_groups: std::mem::take(&mut self.dropped).into_iter().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;
    use crate::event::{EventId, StreamName};
    use crate::pipeline::Aggregate;

    const MINUTE: i64 = 60_000;

    fn spec() -> PipelineSpec {
        PipelineSpec {
            name: "p".into(),
            sources: vec![StreamName::new("s").unwrap()],
            window: WindowSpec::Tumbling { size_ms: MINUTE },
            aggregate: Aggregate::Count,
            max_out_of_orderness: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(10),
            checkpoint_interval: Duration::from_secs(1),
        }
    }

    fn event(id: &str, ts: i64, key: &str) -> Event {
        Event {
            id: EventId::new(id).unwrap(),
            stream: StreamName::new("s").unwrap(),
            ts: Timestamp::from_millis(ts),
            key: Some(key.into()),
            payload: serde_json::Map::new(),
        }
    }

    #[test]
    fn counts_per_window_and_key_and_closes_on_watermark() {
        let mut op = WindowOperator::new(&spec(), sources(1), 0);
        assert_eq!(op.process(0, &event("a", 1_000, "x"), 0), Outcome::Counted);
        assert_eq!(op.process(0, &event("b", 2_000, "x"), 0), Outcome::Counted);
        assert_eq!(op.process(0, &event("c", 3_000, "y"), 0), Outcome::Counted);
        assert_eq!(
            op.process(0, &event("a", 1_000, "x"), 0),
            Outcome::Duplicate
        );
        op.advance(0);
        let provisional = op.take_changes();
        assert_eq!(provisional.len(), 2);
        assert!(provisional.iter().all(|r| !r.closed));

        // 64 s: watermark 59 s, window [0, 60 s) still open; then 66 s closes it.
        op.process(0, &event("d", 64_000, "x"), 0);
        op.advance(0);
        assert_eq!(op.watermark().millis(), 59_000);
        op.process(0, &event("e", 66_000, "x"), 0);
        op.advance(0);
        let changes = op.take_changes();
        let closed: Vec<_> = changes.iter().filter(|r| r.closed).collect();
        assert_eq!(closed.len(), 2);
        assert_eq!((closed[0].key.as_str(), closed[0].count), ("x", 2));
        assert_eq!((closed[1].key.as_str(), closed[1].count), ("y", 1));

        assert_eq!(op.process(0, &event("f", 59_999, "x"), 0), Outcome::Late);
        assert_eq!(op.state().late_events, 1);
    }

    fn sources(n: u32) -> Vec<(&'static StreamName, u32)> {
        static STREAM: std::sync::OnceLock<StreamName> = std::sync::OnceLock::new();
        let stream = STREAM.get_or_init(|| StreamName::new("s").unwrap());
        (0..n).map(|p| (stream, p)).collect()
    }

    #[test]
    fn a_partition_not_read_yet_holds_the_watermark_until_idle() {
        let mut op = WindowOperator::new(&spec(), sources(2), 0);
        // A backlog read from partition 0 first: nothing may close before partition 1
        // has been read, or has been silent for the idle timeout.
        op.process(0, &event("a", 500_000, "x"), 0);
        assert_eq!(op.advance(1_000), Timestamp::MIN);
        assert_eq!(
            op.process(1, &event("b", 1_000, "x"), 2_000),
            Outcome::Counted
        );
        assert_eq!(op.advance(2_000).millis(), -4_000);
        // Partition 1 silent for 10 s: partition 0 alone moves the watermark.
        op.process(0, &event("c", 500_001, "x"), 12_500);
        assert_eq!(op.advance(12_500).millis(), 495_001);
    }

    #[test]
    fn the_slowest_active_partition_holds_the_watermark() {
        let mut op = WindowOperator::new(&spec(), sources(2), 0);
        op.process(0, &event("a", 100_000, "x"), 0);
        op.process(1, &event("b", 10_000, "x"), 0);
        assert_eq!(op.advance(1_000).millis(), 5_000);
        // Partition 1 goes idle after 10 s of processing time: partition 0 alone counts.
        op.process(0, &event("c", 101_000, "x"), 10_500);
        assert_eq!(op.advance(10_500).millis(), 96_000);
    }

    /// The stable hash of event `id` of stream `s`.
    fn hash(id: &str) -> u64 {
        stable_hash64(&[b"s", id.as_bytes()])
    }

    /// A chunk of `group` holding `hashes`.
    fn chunk(group: i64, hashes: &[u64]) -> StateChunk {
        StateChunk {
            group,
            bytes: hashes.iter().flat_map(|h| h.to_le_bytes()).collect(),
        }
    }

    /// Checkpoints `op` as the engine does, applying its delta to the stored `chunks`;
    /// returns the state's JSON.
    fn checkpoint(op: &mut WindowOperator, chunks: &mut Vec<StateChunk>) -> serde_json::Value {
        op.take_changes();
        let delta = op.take_state_delta();
        chunks.retain(|c| !delta.drop_groups.contains(&c.group));
        chunks.extend(delta.append);
        serde_json::to_value(op.state()).unwrap()
    }

    fn restore(json: &serde_json::Value, chunks: &[StateChunk]) -> WindowOperator {
        let state = serde_json::from_value(json.clone()).unwrap();
        WindowOperator::restore(&spec(), state, chunks, sources(1), 0).unwrap()
    }

    #[test]
    fn a_restored_operator_continues_identically() {
        let mut op = WindowOperator::new(&spec(), sources(1), 0);
        op.process(0, &event("a", 1_000, "x"), 0);
        op.process(0, &event("b", 61_000, "x"), 0);
        op.advance(0);
        let mut chunks = Vec::new();
        let saved = checkpoint(&mut op, &mut chunks);
        op.process(0, &event("c", 2_000, "y"), 0);
        let saved_after = checkpoint(&mut op, &mut chunks);
        assert_eq!(chunks.len(), 3);
        assert!(!saved.to_string().contains("seen"), "{saved}");

        let mut op2 = restore(&saved_after, &chunks);
        assert_eq!(op2.state(), op.state());
        assert!(!op2.has_changes());
        for id in ["a", "c"] {
            assert_eq!(
                op2.process(0, &event(id, 1_000, "x"), 0),
                Outcome::Duplicate
            );
        }
        assert_eq!(
            op2.process(0, &event("b", 61_000, "x"), 0),
            Outcome::Duplicate
        );
        assert_eq!(op2.process(0, &event("d", 1_000, "x"), 0), Outcome::Counted);
        assert_eq!(op2.state().duplicates, 3);
    }

    #[test]
    fn the_delta_holds_exactly_the_hashes_counted_since_the_last() {
        let mut op = WindowOperator::new(&spec(), sources(1), 0);
        assert_eq!(op.take_state_delta(), StateDelta::default());
        op.process(0, &event("a", 1_000, "x"), 0);
        op.process(0, &event("b", 61_000, "x"), 0);
        op.process(0, &event("c", 2_000, "y"), 0);
        op.process(0, &event("a", 3_000, "x"), 0);
        assert_eq!(
            op.take_state_delta(),
            StateDelta {
                append: vec![
                    chunk(0, &[hash("a"), hash("c")]),
                    chunk(MINUTE, &[hash("b")])
                ],
                drop_groups: vec![],
            }
        );
        assert_eq!(op.take_state_delta(), StateDelta::default());
        op.process(0, &event("b", 62_000, "x"), 0);
        op.process(0, &event("d", 62_000, "x"), 0);
        assert_eq!(
            op.take_state_delta(),
            StateDelta {
                append: vec![chunk(MINUTE, &[hash("d")])],
                drop_groups: vec![],
            }
        );
    }

    #[test]
    fn closed_windows_are_dropped_and_their_unsaved_hashes_never_written() {
        let mut op = WindowOperator::new(&spec(), sources(1), 0);
        op.process(0, &event("a", 1_000, "x"), 0);
        op.take_state_delta();
        op.process(0, &event("b", 2_000, "x"), 0);
        op.process(0, &event("c", 66_000, "x"), 0);
        op.process(0, &event("d", 126_000, "x"), 0);
        assert_eq!(op.advance(0).millis(), 121_000);
        assert_eq!(
            op.take_state_delta(),
            StateDelta {
                append: vec![chunk(2 * MINUTE, &[hash("d")])],
                drop_groups: vec![0, MINUTE],
            }
        );
    }

    #[test]
    fn chunks_no_open_window_owns_are_dropped_at_the_next_checkpoint() {
        let mut op = WindowOperator::new(&spec(), sources(1), 0);
        op.process(0, &event("a", 61_000, "x"), 0);
        let mut chunks = vec![chunk(0, &[hash("z")]), chunk(5 * MINUTE, &[])];
        let saved = checkpoint(&mut op, &mut chunks);
        let mut restored = restore(&saved, &chunks);
        assert_eq!(restored.state(), op.state());
        assert!(restored.has_changes());
        assert_eq!(
            restored.take_state_delta(),
            StateDelta {
                append: vec![],
                drop_groups: vec![0, 5 * MINUTE],
            }
        );
        // The orphan's hash was not taken for the open window's.
        assert_eq!(
            restored.process(0, &event("z", 1_000, "x"), 0),
            Outcome::Counted
        );
    }

    #[test]
    fn a_window_writes_bounded_chunks() {
        let mut op = WindowOperator::new(&spec(), sources(1), 0);
        for i in 0..=HASHES_PER_CHUNK {
            op.process(0, &event(&format!("e{i}"), 1_000, "x"), 0);
        }
        let delta = op.take_state_delta();
        let sizes: Vec<(i64, usize)> = delta
            .append
            .iter()
            .map(|c| (c.group, c.bytes.len() / HASH_BYTES))
            .collect();
        assert_eq!(sizes, vec![(0, HASHES_PER_CHUNK), (0, 1)]);
        let mut restored = restore(&serde_json::to_value(op.state()).unwrap(), &delta.append);
        assert_eq!(restored.state(), op.state());
        assert_eq!(
            restored.process(0, &event("e0", 1_000, "x"), 0),
            Outcome::Duplicate
        );
    }

    #[test]
    fn a_chunk_that_is_no_whole_number_of_hashes_is_refused() {
        let mut op = WindowOperator::new(&spec(), sources(1), 0);
        op.process(0, &event("a", 1_000, "x"), 0);
        let state = op.state().clone();
        let broken = StateChunk {
            group: 0,
            bytes: vec![1; 12],
        };
        let err = WindowOperator::restore(&spec(), state, &[broken], sources(1), 0).unwrap_err();
        assert_eq!(err, ChunkError { group: 0, len: 12 });
    }

    /// A state as Tributary wrote it before state chunks: the hashes of window 0's events
    /// "a" and "b" inside its open window.
    const STATE_WITH_HASHES: &str = r#"{
        "max_ts": {"s/0": 3000},
        "watermark": -2000,
        "open": {"0": {"counts": {"x": 2}, "seen": [9527784034593373471, 9527785134105001682]}},
        "late_events": 4,
        "duplicates": 1
    }"#;

    #[test]
    fn a_state_holding_its_hashes_restores_exactly_and_writes_them_as_chunks() {
        let old: serde_json::Value = serde_json::from_str(STATE_WITH_HASHES).unwrap();
        let mut op = restore(&old, &[]);
        assert!(op.has_changes());
        assert_eq!(op.watermark().millis(), -2_000);
        assert_eq!((op.state().late_events, op.state().duplicates), (4, 1));
        let mut chunks = Vec::new();
        let saved = checkpoint(&mut op, &mut chunks);
        assert_eq!(chunks, vec![chunk(0, &[hash("b"), hash("a")])]);
        assert!(!saved.to_string().contains("seen"), "{saved}");
        assert!(!op.has_changes());

        // Restored from the new state and its chunks, the operator is the same one.
        let mut again = restore(&saved, &chunks);
        assert_eq!(again.state(), op.state());
        for op in [&mut op, &mut again] {
            for id in ["a", "b"] {
                assert_eq!(op.process(0, &event(id, 1_000, "x"), 0), Outcome::Duplicate);
            }
            assert_eq!(op.process(0, &event("c", 1_000, "x"), 0), Outcome::Counted);
            op.advance(0);
            let counts: Vec<u64> = op.take_changes().iter().map(|r| r.count).collect();
            assert_eq!(counts, vec![3]);
        }
    }

    proptest! {
        /// Whatever the order of arrival within the out-of-orderness bound, whatever
        /// duplicates, and however often the operator is checkpointed and restored, the
        /// final counts equal a direct count of the distinct events.
        #[test]
        fn counts_are_exact_within_the_bound(
            mut tss in prop::collection::vec(0i64..600_000, 1..200),
            dup_every in 2usize..7,
            restore_every in 1usize..20,
        ) {
            tss.sort_unstable();
            // Shuffle locally: swap neighbours no more than 4 s apart (bound is 5 s).
            for i in 1..tss.len() {
                if i % 3 == 0 && tss[i] - tss[i - 1] < 4_000 {
                    tss.swap(i, i - 1);
                }
            }
            let events: Vec<Event> = tss.iter().enumerate()
                .map(|(i, &ts)| event(&format!("e{i}"), ts, if i % 2 == 0 { "a" } else { "b" }))
                .collect();
            let mut expected: BTreeMap<(i64, String), u64> = BTreeMap::new();
            for e in &events {
                *expected.entry((e.ts.millis().div_euclid(MINUTE) * MINUTE, e.key.clone().unwrap())).or_default() += 1;
            }
            let mut op = WindowOperator::new(&spec(), sources(1), 0);
            let mut chunks = Vec::new();
            let mut got: BTreeMap<(i64, String), u64> = BTreeMap::new();
            for (i, e) in events.iter().enumerate() {
                prop_assert_ne!(op.process(0, e, 0), Outcome::Late);
                if i % dup_every == 0 {
                    prop_assert_eq!(op.process(0, e, 0), Outcome::Duplicate);
                }
                op.advance(0);
                for r in op.take_changes() {
                    got.insert((r.window_start.millis(), r.key), r.count);
                }
                if i % restore_every == 0 {
                    let saved = checkpoint(&mut op, &mut chunks);
                    op = restore(&saved, &chunks);
                    // An event counted before the restore is not counted again.
                    prop_assert_ne!(op.process(0, &events[i / 2], 0), Outcome::Counted);
                }
            }
            op.process(0, &event("end", 10_000_000, "z"), 0);
            op.advance(0);
            for r in op.take_changes().into_iter().filter(|r| r.key != "z") {
                got.insert((r.window_start.millis(), r.key), r.count);
            }
            prop_assert_eq!(got, expected);
        }
    }
}
