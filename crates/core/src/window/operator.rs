//! The window operator: one running result per (window, key), in event time, as pure state.
//!
//! The engine feeds it records and the current processing time; at each checkpoint it
//! takes the result rows that changed and the state that changed
//! ([`WindowOperator::take_checkpoint`]), which it commits with the source offsets in one
//! transaction, so that a restored operator continues exactly where the checkpoint left it.
//!
//! Semantics, as in Flink with bounded out-of-orderness:
//! - Each source partition's watermark is its largest event time minus the allowed
//!   out-of-orderness. The pipeline's watermark is the minimum over active partitions (a
//!   partition silent for the idle timeout is skipped) and never goes back. With
//!   [`PipelineSpec::finalize_idle_after`], once no event arrived for that long, the
//!   watermark moves past every open window.
//! - An event the filter rejects is counted as filtered and nothing else.
//! - An event whose (stream, id) was already counted is a duplicate, as long as the hashes
//!   of its time bucket are kept: until the watermark passes the end of the last window it
//!   could join, plus the allowed lateness, plus one more window length (so a client retry
//!   arriving just after its window closed is a duplicate, not a late event).
//! - Otherwise the event is added to each of its windows ([`WindowAssigner::assign`]) that
//!   still accepts updates: a window accepts until the watermark reaches its end plus the
//!   allowed lateness. For sessions, the event's window first merges with the overlapping
//!   sessions of its key, and the merged session must still accept. An event no window
//!   takes is late.
//! - A window closes when the watermark reaches its end: its rows are emitted with
//!   `closed = true`. An event within the allowed lateness updates a closed row, emitted
//!   again with the next revision. Past its lateness the window's state is dropped.
//! - A session merge deletes the rows of the sessions it replaced (when they were
//!   written) in the same checkpoint that writes the merged one.

use std::collections::{BTreeMap, BTreeSet};

use foldhash::{HashMap, HashMapExt, HashSet};

use crate::aggregate::Accumulator;
use crate::event::{Event, StreamName, Timestamp};
use crate::expr::{EventRef, Row};
use crate::partition::stable_hash64;
use crate::pipeline::{PipelineSpec, millis};
use crate::ports::{KeyedState, StateChunk, StateDelta};
use crate::results::{ResultChange, ResultRow};
use crate::value::Value;

use super::state::{self, LegacyState, OperatorState};
use super::{Window, WindowAssigner, WindowSpec};

/// Most hashes in one [`StateChunk`] (512 KiB of bytes), so that no stored chunk is huge.
pub const HASHES_PER_CHUNK: usize = 65_536;

/// The bytes of one hash in a [`StateChunk`].
const HASH_BYTES: usize = size_of::<u64>();

/// What happened to one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Outcome {
    /// Added to its windows.
    Counted,
    /// Already counted: same stream and id.
    Duplicate,
    /// Every window it belongs to had stopped accepting updates.
    Late,
    /// The pipeline's filter left it out.
    Filtered,
}

impl Outcome {
    /// Every outcome, in `repr` order.
    pub const ALL: [Self; 4] = [Self::Counted, Self::Duplicate, Self::Late, Self::Filtered];

    /// The metric label of this outcome.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::Counted => "counted",
            Self::Duplicate => "duplicate",
            Self::Late => "late",
            Self::Filtered => "filtered",
        }
    }
}

/// Why stored state cannot be resumed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The state was written by another definition of the pipeline.
    #[error(
        "pipeline {pipeline}: its stored state was written by another definition \
         ({stored}); it is now {current}. Give the changed pipeline a new name, or start it \
         over with `tributary reset --config FILE --pipeline {pipeline}` (this deletes its \
         results)"
    )]
    Definition {
        /// The pipeline.
        pipeline: String,
        /// The definition that wrote the state.
        stored: String,
        /// The definition now.
        current: String,
    },
    /// A state format this build does not know.
    #[error("pipeline {pipeline}: its stored state has format {found}, this build reads {known}")]
    Format {
        /// The pipeline.
        pipeline: String,
        /// The stored format.
        found: u32,
        /// The format this build reads.
        known: u32,
    },
    /// Stored state that does not decode.
    #[error("pipeline {pipeline}: stored state is damaged: {reason}")]
    Corrupt {
        /// The pipeline.
        pipeline: String,
        /// What is wrong.
        reason: String,
    },
}

/// The counters a pipeline reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Late events so far.
    pub late_events: u64,
    /// Duplicates so far.
    pub duplicates: u64,
    /// Events the filter left out so far.
    pub filtered: u64,
}

/// One source partition.
#[derive(Debug)]
struct Source {
    stream: StreamName,
    partition: u32,
    max_ts: Option<i64>,
    last_active: i64,
}

/// The running result of one window and key.
#[derive(Debug)]
struct Slot {
    end: i64,
    keys: Vec<Value<'static>>,
    accumulators: Vec<Box<dyn Accumulator>>,
    revision: u64,
    fired: bool,
    dirty: bool,
}

/// What a checkpoint takes from the operator.
#[derive(Debug)]
pub struct Snapshot {
    /// The result rows that changed, in the order to apply.
    pub changes: Vec<ResultChange>,
    /// The state chunks and keyed entries that changed.
    pub delta: StateDelta,
    /// The small state, as JSON.
    pub state: serde_json::Value,
    /// The ends of the windows whose results became final (the watermark passed them)
    /// since the last checkpoint, each once: what the latency from a window's end to its
    /// final result is measured on.
    pub finalized: Vec<Timestamp>,
}

/// The window operator of one pipeline (or one shard of it).
#[derive(Debug)]
pub struct WindowOperator {
    spec: PipelineSpec,
    out_of_orderness_ms: i64,
    idle_timeout_ms: i64,
    lateness_ms: i64,
    finalize_ms: Option<i64>,
    /// How long de-duplication hashes outlive the last window they could join.
    horizon_ms: i64,
    counters: Counters,
    watermark: Option<i64>,
    sources: Vec<Source>,
    /// Running results by window start, then key text.
    slots: BTreeMap<i64, HashMap<Box<str>, Slot>>,
    /// For sessions: the starts of each key's sessions.
    sessions: HashMap<Box<str>, BTreeSet<i64>>,
    /// De-duplication hashes by bucket start.
    seen: BTreeMap<i64, HashSet<u64>>,
    /// Hashes counted since the last checkpoint, by bucket: the chunks to append.
    unsaved: BTreeMap<i64, Vec<u64>>,
    /// Buckets whose chunks to drop at the next checkpoint.
    dropped: BTreeSet<i64>,
    /// Window starts holding a changed slot.
    dirty_starts: BTreeSet<i64>,
    /// Ends of the windows that became final since the last checkpoint.
    finalized: BTreeSet<i64>,
    /// Changes already decided: rows of purged slots, deletions of merged sessions.
    pending: Vec<ResultChange>,
    /// Keyed entries to delete at the next checkpoint, as (window start, key).
    removed: Vec<(i64, Box<str>)>,
    /// Whether the small state changed since the last checkpoint.
    state_changed: bool,
    /// Processing time of the last event.
    last_event_at: i64,
    key_text: String,
    windows: Vec<Window>,
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
        let window_ms = match spec.window {
            WindowSpec::Tumbling { size_ms } | WindowSpec::Hopping { size_ms, .. } => size_ms,
            WindowSpec::Session { gap_ms } => gap_ms,
        };
        Self {
            spec: spec.clone(),
            out_of_orderness_ms: millis(spec.max_out_of_orderness),
            idle_timeout_ms: millis(spec.idle_timeout),
            lateness_ms: millis(spec.allowed_lateness),
            finalize_ms: spec.finalize_idle_after.map(millis),
            horizon_ms: window_ms,
            counters: Counters::default(),
            watermark: None,
            sources: sources
                .into_iter()
                .map(|(stream, partition)| Source {
                    stream: stream.clone(),
                    partition,
                    max_ts: None,
                    last_active: now_ms,
                })
                .collect(),
            slots: BTreeMap::new(),
            sessions: HashMap::new(),
            seen: BTreeMap::new(),
            unsaved: BTreeMap::new(),
            dropped: BTreeSet::new(),
            dirty_starts: BTreeSet::new(),
            finalized: BTreeSet::new(),
            pending: Vec::new(),
            removed: Vec::new(),
            state_changed: false,
            last_event_at: now_ms,
            key_text: String::new(),
            windows: Vec::new(),
        }
    }

    /// An operator resuming from a checkpoint: its small `state` (JSON; `null` for none),
    /// the state `chunks` (de-duplication hashes) and `keyed` entries (one per window and
    /// key) stored with it; otherwise as [`WindowOperator::new`].
    ///
    /// # Errors
    /// [`StateError::Definition`] when the state was written by another definition of the
    /// pipeline, [`StateError::Format`] for a format this build does not read,
    /// [`StateError::Corrupt`] when stored state does not decode.
    pub fn restore<'a>(
        spec: &PipelineSpec,
        state: &serde_json::Value,
        chunks: &[StateChunk],
        keyed: &[KeyedState],
        sources: impl IntoIterator<Item = (&'a StreamName, u32)>,
        now_ms: i64,
    ) -> Result<Self, StateError> {
        let mut operator = Self::new(spec, sources, now_ms);
        let corrupt = |reason: String| StateError::Corrupt {
            pipeline: spec.name.clone(),
            reason,
        };
        let max_ts = match state {
            serde_json::Value::Null => BTreeMap::new(),
            serde_json::Value::Object(map) if !map.contains_key("format") => {
                Self::check_state(spec, state)?;
                let legacy: LegacyState =
                    serde_json::from_value(state.clone()).map_err(|e| corrupt(e.to_string()))?;
                operator.restore_legacy(&legacy)?;
                legacy.max_ts
            }
            _ => {
                Self::check_state(spec, state)?;
                let stored: OperatorState =
                    serde_json::from_value(state.clone()).map_err(|e| corrupt(e.to_string()))?;
                operator.watermark = stored.watermark;
                operator.counters = Counters {
                    late_events: stored.late_events,
                    duplicates: stored.duplicates,
                    filtered: stored.filtered,
                };
                for entry in keyed {
                    operator.restore_slot(entry).map_err(&corrupt)?;
                }
                stored.max_ts
            }
        };
        for (name, ts) in max_ts {
            operator.restore_max_ts(&name, ts, now_ms);
        }
        for chunk in chunks {
            let hashes = chunk.bytes.chunks_exact(HASH_BYTES);
            if !hashes.remainder().is_empty() {
                return Err(corrupt(format!(
                    "state chunk of bucket {} holds {} bytes, not a whole number of 8-byte hashes",
                    chunk.group,
                    chunk.bytes.len()
                )));
            }
            operator
                .seen
                .entry(chunk.group)
                .or_default()
                .extend(hashes.map(|bytes| {
                    let mut hash = [0; HASH_BYTES];
                    hash.copy_from_slice(bytes);
                    u64::from_le_bytes(hash)
                }));
        }
        Ok(operator)
    }

    /// Checks that a checkpoint's small `state` can be resumed by `spec`, without
    /// restoring it: at start, so that a changed definition is refused before anything
    /// runs.
    ///
    /// # Errors
    /// As [`WindowOperator::restore`], but for damaged chunks or entries.
    pub fn check_state(spec: &PipelineSpec, state: &serde_json::Value) -> Result<(), StateError> {
        let corrupt = |reason: String| StateError::Corrupt {
            pipeline: spec.name.clone(),
            reason,
        };
        match state {
            serde_json::Value::Null => Ok(()),
            serde_json::Value::Object(map) if !map.contains_key("format") => {
                if spec.is_legacy_count() {
                    Ok(())
                } else {
                    Err(legacy_mismatch(spec))
                }
            }
            _ => {
                let stored: OperatorState =
                    serde_json::from_value(state.clone()).map_err(|e| corrupt(e.to_string()))?;
                if stored.format != state::FORMAT {
                    return Err(StateError::Format {
                        pipeline: spec.name.clone(),
                        found: stored.format,
                        known: state::FORMAT,
                    });
                }
                if stored.fingerprint != spec.fingerprint() {
                    return Err(StateError::Definition {
                        pipeline: spec.name.clone(),
                        stored: stored.definition,
                        current: spec.definition(),
                    });
                }
                Ok(())
            }
        }
    }

    /// Takes over a state of format 1 (counts per event key in tumbling windows), which
    /// only the plan that wrote it can resume. Its windows become slots, saved as keyed
    /// entries at the next checkpoint, and hashes it held itself become chunks.
    fn restore_legacy(&mut self, legacy: &LegacyState) -> Result<(), StateError> {
        let WindowSpec::Tumbling { size_ms } = self.spec.window else {
            return Err(legacy_mismatch(&self.spec));
        };
        self.watermark = legacy.watermark;
        self.counters.late_events = legacy.late_events;
        self.counters.duplicates = legacy.duplicates;
        self.state_changed = true;
        for (&start, window) in &legacy.open {
            for (key, &count) in &window.counts {
                let mut accumulators = new_accumulators(&self.spec);
                for _ in 0..count {
                    accumulators[0].update(&Value::Bool(true));
                }
                let slot = Slot {
                    end: start.saturating_add(size_ms),
                    keys: vec![Value::Str(key.clone().into())],
                    accumulators,
                    // The row was written by the checkpoint that wrote this state.
                    revision: 1,
                    fired: false,
                    dirty: true,
                };
                self.slots
                    .entry(start)
                    .or_default()
                    .insert(key.as_str().into(), slot);
                self.dirty_starts.insert(start);
            }
            if !window.seen.is_empty() {
                self.seen
                    .entry(start)
                    .or_default()
                    .extend(window.seen.iter().copied());
                self.unsaved
                    .entry(start)
                    .or_default()
                    .extend(window.seen.iter().copied());
            }
        }
        Ok(())
    }

    /// Restores one keyed entry as a slot.
    fn restore_slot(&mut self, entry: &KeyedState) -> Result<(), String> {
        let record = state::decode_slot(&entry.bytes).map_err(|e| e.to_string())?;
        let key = std::str::from_utf8(&entry.key)
            .map_err(|_| "a keyed entry's key is not UTF-8".to_owned())?;
        if record.partials.len() != self.spec.aggregates.len() {
            return Err(format!(
                "a slot holds {} aggregates, the pipeline has {}",
                record.partials.len(),
                self.spec.aggregates.len()
            ));
        }
        let accumulators = self
            .spec
            .aggregates
            .iter()
            .zip(&record.partials)
            .map(|(aggregate, bytes)| aggregate.function.decode(bytes))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let slot = Slot {
            end: record.end,
            keys: record.keys,
            accumulators,
            revision: record.revision,
            fired: record.fired,
            dirty: false,
        };
        if self.spec.window.merges() {
            self.sessions
                .entry(key.into())
                .or_default()
                .insert(entry.group);
        }
        self.slots
            .entry(entry.group)
            .or_default()
            .insert(key.into(), slot);
        Ok(())
    }

    fn restore_max_ts(&mut self, name: &str, ts: i64, now_ms: i64) {
        let found = self
            .sources
            .iter_mut()
            .find(|s| name.split_once('/') == Some((s.stream.as_str(), &s.partition.to_string())));
        if let Some(source) = found {
            source.max_ts = Some(ts);
        } else if let Some((stream, partition)) = name.split_once('/') {
            // A partition the task no longer reads: it still holds the watermark until idle.
            if let (Ok(stream), Ok(partition)) = (StreamName::new(stream), partition.parse()) {
                self.sources.push(Source {
                    stream,
                    partition,
                    max_ts: Some(ts),
                    last_active: now_ms,
                });
            }
        }
    }

    /// The plan.
    #[must_use]
    pub fn spec(&self) -> &PipelineSpec {
        &self.spec
    }

    /// The counters.
    #[must_use]
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The current watermark ([`Timestamp::MIN`] before any).
    #[must_use]
    pub fn watermark(&self) -> Timestamp {
        self.watermark
            .map_or(Timestamp::MIN, Timestamp::from_millis)
    }

    /// Processes one event read from `partition` of its stream, at processing time `now_ms`.
    pub fn process(&mut self, partition: u32, event: &Event, now_ms: i64) -> Outcome {
        self.process_enriched(partition, event, &[], now_ms)
    }

    /// As [`WindowOperator::process`], with the reference rows looked up for the event (one
    /// per lookup of the plan).
    pub fn process_enriched(
        &mut self,
        partition: u32,
        event: &Event,
        lookups: &[Option<&serde_json::Map<String, serde_json::Value>>],
        now_ms: i64,
    ) -> Outcome {
        self.process_ref(partition, event.into(), lookups, now_ms)
    }

    /// As [`WindowOperator::process_enriched`], for an event as expressions read it: a
    /// whole one, or what was decoded of a record ([`crate::record::decode_view`]).
    pub fn process_ref(
        &mut self,
        partition: u32,
        event: EventRef<'_>,
        lookups: &[Option<&serde_json::Map<String, serde_json::Value>>],
        now_ms: i64,
    ) -> Outcome {
        self.process_keyed(partition, event, lookups, None, now_ms)
    }

    /// As [`WindowOperator::process_ref`], for an event a repartition task already
    /// filtered and keyed (a record of the pipeline's internal stream): its key text is
    /// `key` (from [`crate::repartition::routed_key_text`]), the one it was routed by, and
    /// the filter is not applied again. So a shard groups every event by the key that sent
    /// it there, even when a lookup table changed between the two.
    pub fn process_routed(
        &mut self,
        partition: u32,
        event: EventRef<'_>,
        lookups: &[Option<&serde_json::Map<String, serde_json::Value>>],
        key: &str,
        now_ms: i64,
    ) -> Outcome {
        self.process_keyed(partition, event, lookups, Some(key), now_ms)
    }

    /// Filters, de-duplicates, keys and adds one event; `routed` is its key text when a
    /// repartition task filtered and keyed it already.
    fn process_keyed(
        &mut self,
        partition: u32,
        event: EventRef<'_>,
        lookups: &[Option<&serde_json::Map<String, serde_json::Value>>],
        routed: Option<&str>,
        now_ms: i64,
    ) -> Outcome {
        let ts = event.ts.millis();
        self.observe(event.stream, partition, ts, now_ms);
        let row = Row { event, lookups };
        if let (Some(filter), None) = (&self.spec.filter, routed)
            && !filter.matches(&row)
        {
            self.counters.filtered += 1;
            self.state_changed = true;
            return Outcome::Filtered;
        }
        let hash = stable_hash64(&[event.stream.as_str().as_bytes(), event.id.as_bytes()]);
        let bucket_ms = self.spec.window.bucket_ms();
        let bucket = ts.div_euclid(bucket_ms) * bucket_ms;
        if self.seen.get(&bucket).is_some_and(|s| s.contains(&hash)) {
            self.counters.duplicates += 1;
            self.state_changed = true;
            return Outcome::Duplicate;
        }
        match routed {
            Some(key) => {
                self.key_text.clear();
                self.key_text.push_str(key);
            }
            None => self.spec.write_key(&row, &mut self.key_text),
        }
        let accepted = if self.spec.window.merges() {
            self.add_to_session(&row, ts)
        } else {
            self.add_to_windows(&row, ts)
        };
        if !accepted {
            self.counters.late_events += 1;
            self.state_changed = true;
            return Outcome::Late;
        }
        self.seen.entry(bucket).or_default().insert(hash);
        self.unsaved.entry(bucket).or_default().push(hash);
        Outcome::Counted
    }

    /// Notes that partition `partition` of `stream` was read up to event time `ts`, at
    /// processing time `now_ms`, without an event to process: a repartitioned pipeline's
    /// progress records ([`crate::repartition::progress_of`]).
    pub fn observe_progress(&mut self, stream: &StreamName, partition: u32, ts: i64, now_ms: i64) {
        self.observe(stream, partition, ts, now_ms);
    }

    /// Notes an event time read from a source partition.
    fn observe(&mut self, stream: &StreamName, partition: u32, ts: i64, now_ms: i64) {
        self.last_event_at = now_ms;
        let source = match self
            .sources
            .iter_mut()
            .position(|s| s.partition == partition && s.stream == *stream)
        {
            Some(i) => &mut self.sources[i],
            None => {
                self.sources.push(Source {
                    stream: stream.clone(),
                    partition,
                    max_ts: None,
                    last_active: now_ms,
                });
                let last = self.sources.len() - 1;
                &mut self.sources[last]
            }
        };
        source.last_active = now_ms;
        if source.max_ts.is_none_or(|max| ts > max) {
            source.max_ts = Some(ts);
            self.state_changed = true;
        }
    }

    /// Whether a window ending at `end` no longer accepts updates.
    fn expired(&self, end: i64) -> bool {
        self.watermark
            .is_some_and(|wm| end.saturating_add(self.lateness_ms) <= wm)
    }

    /// Adds the event to its (non-merging) windows that still accept; whether any did.
    fn add_to_windows(&mut self, row: &Row<'_>, ts: i64) -> bool {
        let mut windows = std::mem::take(&mut self.windows);
        windows.clear();
        self.spec.window.assign(ts, &mut windows);
        let mut accepted = false;
        for window in &windows {
            if self.expired(window.end) {
                continue;
            }
            accepted = true;
            // One lookup for the usual case, a slot that exists.
            let slots = self.slots.entry(window.start).or_default();
            match slots.get_mut(self.key_text.as_str()) {
                Some(slot) => update(slot, &self.spec, row),
                None => {
                    let mut slot = new_slot(&self.spec, window.end, row);
                    update(&mut slot, &self.spec, row);
                    slots.insert(self.key_text.as_str().into(), slot);
                }
            }
            self.dirty_starts.insert(window.start);
        }
        self.windows = windows;
        accepted
    }

    /// Adds the event to its key's session, merging the sessions its own window overlaps;
    /// whether the merged session still accepts.
    fn add_to_session(&mut self, row: &Row<'_>, ts: i64) -> bool {
        let mut merged = Window {
            start: ts,
            end: ts.saturating_add(self.spec.window.bucket_ms()),
        };
        // Sessions of one key never overlap: walk back from the last starting by the
        // event's window end, while they reach its start (touching windows merge).
        let mut overlapping = Vec::new();
        if let Some(starts) = self.sessions.get(self.key_text.as_str()) {
            for &start in starts.range(..=merged.end).rev() {
                let end = self.slots[&start][self.key_text.as_str()].end;
                if end < ts {
                    break;
                }
                overlapping.push(start);
                merged.start = merged.start.min(start);
                merged.end = merged.end.max(end);
            }
        }
        if self.expired(merged.end) {
            return false;
        }
        let key: Box<str> = self.key_text.as_str().into();
        let mut base = match overlapping.iter().position(|&s| s == merged.start) {
            Some(i) => {
                let start = overlapping.swap_remove(i);
                self.take_slot(start, &key)
            }
            None => None,
        }
        .unwrap_or_else(|| {
            let mut slot = new_slot(&self.spec, merged.end, row);
            slot.dirty = true;
            slot
        });
        for start in overlapping {
            let Some(old) = self.take_slot(start, &key) else {
                continue;
            };
            for (into, from) in base.accumulators.iter_mut().zip(&old.accumulators) {
                // Both come from this plan's functions: a mismatch cannot happen.
                let _ = into.merge(from.as_ref());
            }
            if old.revision > 0 {
                self.pending.push(ResultChange::Delete {
                    window_start: Timestamp::from_millis(start),
                    key: key.to_string(),
                });
                self.removed.push((start, key.clone()));
            }
        }
        base.end = merged.end;
        base.fired = self.watermark.is_some_and(|wm| merged.end <= wm) && base.fired;
        update(&mut base, &self.spec, row);
        self.sessions
            .entry(key.clone())
            .or_default()
            .insert(merged.start);
        self.slots
            .entry(merged.start)
            .or_default()
            .insert(key, base);
        self.dirty_starts.insert(merged.start);
        true
    }

    /// Removes the slot of (`start`, `key`) and its session index entry.
    fn take_slot(&mut self, start: i64, key: &str) -> Option<Slot> {
        let map = self.slots.get_mut(&start)?;
        let slot = map.remove(key)?;
        if map.is_empty() {
            self.slots.remove(&start);
        }
        if let Some(starts) = self.sessions.get_mut(key) {
            starts.remove(&start);
            if starts.is_empty() {
                self.sessions.remove(key);
            }
        }
        Some(slot)
    }

    /// Recomputes the watermark at processing time `now_ms`, closes the windows it passed,
    /// drops the state of those past their lateness and the hashes no window needs.
    /// Returns the new watermark.
    pub fn advance(&mut self, now_ms: i64) -> Timestamp {
        let before = self.watermark;
        // The minimum over active partitions; one that is active but has no event yet
        // holds the watermark where it is.
        let mut active_min: Option<i64> = None;
        let mut held = false;
        for source in &self.sources {
            if now_ms.saturating_sub(source.last_active) >= self.idle_timeout_ms {
                continue;
            }
            match source.max_ts {
                Some(ts) => {
                    let wm = ts.saturating_sub(self.out_of_orderness_ms);
                    active_min = Some(active_min.map_or(wm, |m| m.min(wm)));
                }
                None => held = true,
            }
        }
        if !held
            && let Some(candidate) = active_min
            && self.watermark.is_none_or(|wm| candidate > wm)
        {
            self.watermark = Some(candidate);
        }
        if let Some(quiet) = self.finalize_ms
            && now_ms.saturating_sub(self.last_event_at) >= quiet
        {
            let last_end = self
                .slots
                .values()
                .flat_map(HashMap::values)
                .map(|s| s.end)
                .max();
            if let Some(end) = last_end
                && self.watermark.is_none_or(|wm| end > wm)
            {
                self.watermark = Some(end);
            }
        }
        if self.watermark != before {
            self.state_changed = true;
            self.fire_and_purge();
        }
        self.watermark()
    }

    /// Marks the windows the watermark passed as closed, and drops what no event can
    /// update anymore.
    fn fire_and_purge(&mut self) {
        let Some(wm) = self.watermark else { return };
        // Every slot of a start ends at or after start + the shortest window.
        let shortest = match self.spec.window {
            WindowSpec::Tumbling { size_ms } | WindowSpec::Hopping { size_ms, .. } => size_ms,
            WindowSpec::Session { gap_ms } => gap_ms,
        };
        let mut purge = Vec::new();
        for (&start, slots) in self.slots.range_mut(..=wm.saturating_sub(shortest)) {
            for (key, slot) in slots.iter_mut() {
                if slot.end > wm {
                    continue;
                }
                if !slot.fired {
                    slot.fired = true;
                    slot.dirty = true;
                    self.dirty_starts.insert(start);
                    self.finalized.insert(slot.end);
                }
                if slot.end.saturating_add(self.lateness_ms) <= wm {
                    purge.push((start, key.clone()));
                }
            }
        }
        // Rows in a stable order, as `take_checkpoint` writes them: by start, then key.
        purge.sort_unstable();
        for (start, key) in purge {
            let Some(mut slot) = self.take_slot(start, &key) else {
                continue;
            };
            if slot.dirty {
                slot.revision += 1;
                self.pending
                    .push(ResultChange::Upsert(self.row(start, &key, &slot, wm)));
            }
            if slot.revision > 0 {
                self.removed.push((start, key));
            }
        }
        // De-duplication buckets no window can take an event of anymore, plus the horizon.
        let retain = self.spec.window.bucket_ms()
            + self.spec.window.reach_ms()
            + self.lateness_ms
            + self.horizon_ms;
        let oldest_open = if self.spec.window.merges() {
            self.slots.keys().next().copied()
        } else {
            None
        };
        let expired: Vec<i64> = self
            .seen
            .keys()
            .copied()
            .take_while(|&bucket| bucket.saturating_add(retain) <= wm)
            .filter(|&bucket| {
                oldest_open
                    .is_none_or(|open| bucket.saturating_add(self.spec.window.bucket_ms()) <= open)
            })
            .collect();
        for bucket in expired {
            self.seen.remove(&bucket);
            self.unsaved.remove(&bucket);
            self.dropped.insert(bucket);
        }
    }

    /// The row of a slot.
    fn row(&self, start: i64, key: &str, slot: &Slot, wm: i64) -> ResultRow {
        ResultRow {
            pipeline: self.spec.name.clone(),
            window_start: Timestamp::from_millis(start),
            window_end: Timestamp::from_millis(slot.end),
            key: key.to_owned(),
            keys: slot
                .keys
                .iter()
                .zip(&self.spec.keys)
                .map(|(value, spec)| spec.ty.coerce(value.clone()))
                .collect(),
            values: slot.accumulators.iter().map(|a| a.finish()).collect(),
            partials: slot
                .accumulators
                .iter()
                .map(|a| {
                    let mut bytes = Vec::new();
                    a.encode(&mut bytes);
                    bytes
                })
                .collect(),
            revision: slot.revision,
            closed: slot.end <= wm,
            updated_at: None,
        }
    }

    /// Whether a checkpoint now would write anything but offsets.
    #[must_use]
    pub fn has_changes(&self) -> bool {
        self.state_changed
            || !self.dirty_starts.is_empty()
            || !self.pending.is_empty()
            || !self.unsaved.is_empty()
            || !self.dropped.is_empty()
            || !self.removed.is_empty()
    }

    /// Takes what the next checkpoint writes: the rows that changed since the last one
    /// (their revision going up by one), the state delta and the small state. What it takes
    /// is gone from the operator: a checkpoint that fails to commit it must drop the
    /// operator and restore from the last committed checkpoint.
    pub fn take_checkpoint(&mut self) -> Snapshot {
        let wm = self.watermark.unwrap_or(i64::MIN);
        let mut changes = std::mem::take(&mut self.pending);
        let mut put = Vec::new();
        let dirty_starts = std::mem::take(&mut self.dirty_starts);
        let mut rows = Vec::new();
        for start in dirty_starts {
            let Some(slots) = self.slots.get_mut(&start) else {
                continue;
            };
            let mut keys: Vec<&Box<str>> = Vec::new();
            for (key, slot) in slots.iter_mut() {
                if slot.dirty {
                    slot.dirty = false;
                    slot.revision += 1;
                    keys.push(key);
                }
            }
            keys.sort_unstable();
            let keys: Vec<Box<str>> = keys.into_iter().cloned().collect();
            for key in keys {
                let slot = &self.slots[&start][&key];
                let row = self.row(start, &key, slot, wm);
                put.push(KeyedState {
                    group: start,
                    key: key.as_bytes().to_vec(),
                    bytes: state::encode_slot(
                        slot.end,
                        slot.revision,
                        slot.fired,
                        &slot.keys,
                        &row.partials,
                    ),
                });
                rows.push(row);
            }
        }
        changes.extend(rows.into_iter().map(ResultChange::Upsert));
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
        let delta = StateDelta {
            append,
            drop_groups: std::mem::take(&mut self.dropped).into_iter().collect(),
            put,
            remove: std::mem::take(&mut self.removed)
                .into_iter()
                .map(|(start, key)| (start, key.as_bytes().to_vec()))
                .collect(),
        };
        self.state_changed = false;
        Snapshot {
            changes,
            delta,
            state: serde_json::to_value(self.small_state()).unwrap_or_default(),
            finalized: std::mem::take(&mut self.finalized)
                .into_iter()
                .map(Timestamp::from_millis)
                .collect(),
        }
    }

    /// The small state, as stored in the checkpoint row.
    fn small_state(&self) -> OperatorState {
        OperatorState {
            format: state::FORMAT,
            fingerprint: self.spec.fingerprint(),
            definition: self.spec.definition(),
            max_ts: self
                .sources
                .iter()
                .filter_map(|s| Some((format!("{}/{}", s.stream, s.partition), s.max_ts?)))
                .collect(),
            watermark: self.watermark,
            late_events: self.counters.late_events,
            duplicates: self.counters.duplicates,
            filtered: self.counters.filtered,
        }
    }
}

/// The error for a state of format 1 that `spec` cannot resume.
fn legacy_mismatch(spec: &PipelineSpec) -> StateError {
    StateError::Definition {
        pipeline: spec.name.clone(),
        stored: "count(*) per event key in tumbling windows (written by an earlier Tributary)"
            .to_owned(),
        current: spec.definition(),
    }
}

/// Adds the event of `row` to `slot`'s accumulators.
/// A fresh accumulator per aggregate of `spec`.
fn new_accumulators(spec: &PipelineSpec) -> Vec<Box<dyn Accumulator>> {
    spec.aggregates
        .iter()
        .map(|a| a.function.create())
        .collect()
}

/// A fresh slot of the window ending at `end`, for the key of the event in `row`.
fn new_slot(spec: &PipelineSpec, end: i64, row: &Row<'_>) -> Slot {
    Slot {
        end,
        keys: spec
            .keys
            .iter()
            .map(|k| k.expr.eval(row).into_owned())
            .collect(),
        accumulators: new_accumulators(spec),
        revision: 0,
        fired: false,
        dirty: true,
    }
}

fn update(slot: &mut Slot, spec: &PipelineSpec, row: &Row<'_>) {
    for (accumulator, aggregate) in slot.accumulators.iter_mut().zip(&spec.aggregates) {
        match &aggregate.argument {
            None => accumulator.update(&Value::Bool(true)),
            Some(argument) => accumulator.update(&argument.eval(row)),
        }
    }
    slot.dirty = true;
}
