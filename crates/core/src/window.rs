//! The window operator: event-time windows, watermarks and per-key counts, as pure state.
//!
//! The engine feeds it records and the current processing time; it answers which windows
//! changed and which closed. Its whole state is a serializable [`WindowState`], which the
//! engine stores in each checkpoint together with the offsets it covers, so that a restored
//! operator continues exactly where the checkpoint left it.
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
    /// Stable hashes of the (stream, id) of the events counted, for de-duplication.
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
}

impl WindowOperator {
    /// An operator for `spec`, resuming from `state` (or empty), at processing time
    /// `now_ms`, reading the source partitions `sources` (stream, partition).
    ///
    /// Every source partition holds the watermark back from the start, even before its
    /// first event, until it has been silent for the idle timeout: a pipeline started on a
    /// backlog must not close windows that a partition it has not read yet still fills.
    #[must_use]
    pub fn new<'a>(
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
        }
    }

    /// The durable state, for a checkpoint.
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

    /// Whether anything changed since the last [`WindowOperator::take_changes`].
    #[must_use]
    pub fn has_changes(&self) -> bool {
        !self.dirty.is_empty() || !self.closed.is_empty()
    }

    /// The results to commit with the next checkpoint: windows closed since the last call
    /// (final) and open windows that changed (provisional, `closed: false`).
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
        let mut op = WindowOperator::new(&spec(), WindowState::default(), sources(1), 0);
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
        let mut op = WindowOperator::new(&spec(), WindowState::default(), sources(2), 0);
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
        let mut op = WindowOperator::new(&spec(), WindowState::default(), sources(2), 0);
        op.process(0, &event("a", 100_000, "x"), 0);
        op.process(1, &event("b", 10_000, "x"), 0);
        assert_eq!(op.advance(1_000).millis(), 5_000);
        // Partition 1 goes idle after 10 s of processing time: partition 0 alone counts.
        op.process(0, &event("c", 101_000, "x"), 10_500);
        assert_eq!(op.advance(10_500).millis(), 96_000);
    }

    #[test]
    fn a_restored_operator_continues_identically() {
        let mut op = WindowOperator::new(&spec(), WindowState::default(), sources(1), 0);
        op.process(0, &event("a", 1_000, "x"), 0);
        op.advance(0);
        let saved = serde_json::to_value(op.state()).unwrap();
        let restored: WindowState = serde_json::from_value(saved).unwrap();
        let mut op2 = WindowOperator::new(&spec(), restored, sources(1), 0);
        assert_eq!(
            op2.process(0, &event("a", 1_000, "x"), 0),
            Outcome::Duplicate
        );
        assert_eq!(op2.process(0, &event("b", 1_000, "x"), 0), Outcome::Counted);
    }

    proptest! {
        /// Whatever the order of arrival within the out-of-orderness bound, and whatever
        /// duplicates, the final counts equal a direct count of the distinct events.
        #[test]
        fn counts_are_exact_within_the_bound(
            mut tss in prop::collection::vec(0i64..600_000, 1..200),
            dup_every in 2usize..7,
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
            let mut op = WindowOperator::new(&spec(), WindowState::default(), sources(1), 0);
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
