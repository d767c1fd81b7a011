//! The operator's tests: golden files per window type (`golden/*.txt`), behaviour tests,
//! and a property test against a brute-force reference.
//!
//! A golden file has a header of `key = value` lines describing the pipeline, then `==`,
//! then the input, one step a line: `e ID TS_MS KEY JSON_PAYLOAD` (an event from partition
//! 0), `advance` (recompute the watermark), `checkpoint` (take a checkpoint and print what
//! it writes), `restore` (checkpoint, then continue with an operator restored from
//! everything written so far). Lines after `==>` are the expected output. Run with
//! `UPDATE_GOLDEN=1` to rewrite the expected part after a deliberate change.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::OnceLock;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::aggregate;
use crate::event::{Event, EventId, StreamName, Timestamp};
use crate::expr::{Expr, Scope};
use crate::pipeline::{AggregateSpec, KeySpec, PipelineSpec};
use crate::ports::{KeyedState, StateChunk};
use crate::results::ResultChange;
use crate::value::{ColumnType, Value};

fn stream() -> &'static StreamName {
    static STREAM: OnceLock<StreamName> = OnceLock::new();
    STREAM.get_or_init(|| StreamName::new("s").unwrap())
}

fn event(id: &str, ts: i64, key: &str, payload: serde_json::Value) -> Event {
    #![allow(clippy::needless_pass_by_value)] // Tests pass json!() literals.
    Event {
        id: EventId::new(id).unwrap(),
        stream: stream().clone(),
        ts: Timestamp::from_millis(ts),
        key: Some(key.into()),
        payload: payload.as_object().cloned().unwrap_or_default(),
    }
}

/// A plan: `window`, optional filter, key expressions and (name, call) aggregates.
fn plan(
    window: WindowSpec,
    filter: Option<&str>,
    keys: &[&str],
    aggregates: &[(&str, &str, Option<&str>, &[f64])],
    lateness_ms: u64,
) -> PipelineSpec {
    let scope = Scope::default();
    let mut spec = PipelineSpec::counting("p", vec![stream().clone()], window);
    spec.filter = filter.map(|f| Expr::compile(f, &scope).unwrap());
    spec.keys = keys
        .iter()
        .map(|k| {
            let expr = Expr::compile(k, &scope).unwrap();
            KeySpec {
                name: expr.column_name().unwrap(),
                ty: expr.ty().unwrap_or(ColumnType::Text),
                expr,
            }
        })
        .collect();
    spec.aggregates = aggregates
        .iter()
        .map(|&(name, function, argument, params)| {
            let params: Vec<Value<'_>> = params.iter().map(|&p| Value::Float(p)).collect();
            AggregateSpec {
                name: name.to_owned(),
                function: aggregate::function(function, argument.is_none(), &params).unwrap(),
                argument: argument.map(|a| Expr::compile(a, &scope).unwrap()),
            }
        })
        .collect();
    spec.allowed_lateness = Duration::from_millis(lateness_ms);
    spec.max_out_of_orderness = Duration::from_millis(5_000);
    spec.idle_timeout = Duration::from_secs(3600);
    spec
}

/// The stored state, as the engine keeps it in the store between checkpoints.
#[derive(Debug, Default, Clone)]
struct Stored {
    state: serde_json::Value,
    chunks: Vec<StateChunk>,
    keyed: BTreeMap<(i64, Vec<u8>), Vec<u8>>,
    rows: BTreeMap<(i64, String), String>,
}

impl Stored {
    /// Applies a checkpoint as a store would; returns its changes rendered.
    fn apply(&mut self, op: &mut WindowOperator) -> Vec<String> {
        let snapshot = op.take_checkpoint();
        let delta = snapshot.delta;
        self.chunks
            .retain(|c| !delta.drop_groups.contains(&c.group));
        self.keyed
            .retain(|(group, _), _| !delta.drop_groups.contains(group));
        for (group, key) in &delta.remove {
            self.keyed.remove(&(*group, key.clone()));
        }
        self.chunks.extend(delta.append);
        for KeyedState { group, key, bytes } in delta.put {
            self.keyed.insert((group, key), bytes);
        }
        self.state = snapshot.state;
        let mut lines = Vec::new();
        for change in snapshot.changes {
            match change {
                ResultChange::Upsert(row) => {
                    let values: Vec<String> = row.values.iter().map(render).collect();
                    let line = format!(
                        "[{}, {}) {:?} {} rev {}{}",
                        row.window_start.millis(),
                        row.window_end.millis(),
                        row.key,
                        values.join(" "),
                        row.revision,
                        if row.closed { " closed" } else { "" }
                    );
                    self.rows
                        .insert((row.window_start.millis(), row.key), values.join(" "));
                    lines.push(line);
                }
                ResultChange::Delete { window_start, key } => {
                    lines.push(format!("delete [{}, …) {key:?}", window_start.millis()));
                    self.rows.remove(&(window_start.millis(), key));
                }
            }
        }
        lines
    }

    fn restore(&self, spec: &PipelineSpec) -> WindowOperator {
        let keyed: Vec<KeyedState> = self
            .keyed
            .iter()
            .map(|((group, key), bytes)| KeyedState {
                group: *group,
                key: key.clone(),
                bytes: bytes.clone(),
            })
            .collect();
        WindowOperator::restore(spec, &self.state, &self.chunks, &keyed, [(stream(), 0)], 0)
            .unwrap()
    }
}

fn render(value: &Value<'_>) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Float(f) => format!("{f:.3}"),
        other => other.to_string(),
    }
}

/// Runs a golden file's input; returns the rendered output.
fn run_golden(spec: &PipelineSpec, input: &str) -> String {
    let mut op = WindowOperator::new(spec, [(stream(), 0)], 0);
    let mut stored = Stored::default();
    let mut out = String::new();
    for line in input
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let mut parts = line.splitn(5, ' ');
        match parts.next() {
            Some("e") => {
                let id = parts.next().unwrap();
                let ts: i64 = parts.next().unwrap().parse().unwrap();
                let key = parts.next().unwrap();
                let payload = parts
                    .next()
                    .map_or(serde_json::json!({}), |p| serde_json::from_str(p).unwrap());
                let outcome = op.process(0, &event(id, ts, key, payload), 0);
                let _ = writeln!(out, "{line} -> {}", outcome.label());
            }
            Some("advance") => {
                let wm = op.advance(0);
                let _ = writeln!(out, "advance -> watermark {}", wm.millis());
            }
            Some(step @ ("checkpoint" | "restore")) => {
                let _ = writeln!(out, "{step}:");
                for change in stored.apply(&mut op) {
                    let _ = writeln!(out, "  {change}");
                }
                if step == "restore" {
                    op = stored.restore(spec);
                }
            }
            _ => panic!("bad golden line {line:?}"),
        }
    }
    let counters = op.counters();
    let _ = writeln!(
        out,
        "counters: late {} duplicates {} filtered {}",
        counters.late_events, counters.duplicates, counters.filtered
    );
    out
}

fn golden(name: &str, spec: &PipelineSpec) {
    let path = format!(
        "{}/src/window/golden/{name}.txt",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap();
    let (input, expected) = text.split_once("==>\n").unwrap_or((&text, ""));
    let got = run_golden(spec, input);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, format!("{input}==>\n{got}")).unwrap();
        return;
    }
    assert_eq!(
        got, expected,
        "golden file {path} (UPDATE_GOLDEN=1 rewrites it)"
    );
}

const MINUTE: i64 = 60_000;

#[test]
fn golden_tumbling() {
    let spec = plan(
        WindowSpec::Tumbling { size_ms: MINUTE },
        None,
        &["key"],
        &[("count", "count", None, &[])],
        0,
    );
    golden("tumbling", &spec);
}

#[test]
fn golden_hopping() {
    let spec = plan(
        WindowSpec::Hopping {
            size_ms: 3 * MINUTE,
            slide_ms: MINUTE,
        },
        Some("payload.status = 'paid'"),
        &["payload.country"],
        &[
            ("orders", "count", None, &[]),
            ("revenue", "sum", Some("payload.amount"), &[] as &[f64]),
            ("top", "max", Some("payload.amount"), &[]),
        ],
        120_000,
    );
    golden("hopping", &spec);
}

#[test]
fn golden_session() {
    let spec = plan(
        WindowSpec::Session { gap_ms: 10_000 },
        None,
        &["payload.user"],
        &[
            ("events", "count", None, &[]),
            ("avg_ms", "avg", Some("payload.ms"), &[]),
        ],
        0,
    );
    golden("session", &spec);
}

#[test]
fn a_changed_definition_over_stored_state_is_refused_with_what_to_do() {
    let spec = plan(
        WindowSpec::Tumbling { size_ms: MINUTE },
        None,
        &["key"],
        &[("count", "count", None, &[])],
        0,
    );
    let mut op = WindowOperator::new(&spec, [(stream(), 0)], 0);
    op.process(0, &event("a", 1, "x", serde_json::json!({})), 0);
    let mut stored = Stored::default();
    stored.apply(&mut op);
    let changed = plan(
        WindowSpec::Tumbling { size_ms: MINUTE },
        None,
        &["key"],
        &[("total", "sum", Some("payload.amount"), &[])],
        0,
    );
    let err = WindowOperator::check_state(&changed, &stored.state).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, StateError::Definition { .. }), "{text}");
    assert!(
        text.contains("new name") && text.contains("tributary reset"),
        "{text}"
    );
    // Lateness and intervals may change over stored state.
    let mut later = spec.clone();
    later.allowed_lateness = Duration::from_secs(600);
    WindowOperator::check_state(&later, &stored.state).unwrap();
    let mut state = stored.state.clone();
    state["format"] = serde_json::json!(99);
    assert!(matches!(
        WindowOperator::check_state(&spec, &state),
        Err(StateError::Format { found: 99, .. })
    ));
}

/// A state as the count-only operator wrote it: counts per key in the JSON, hashes in
/// chunks grouped by window start.
#[test]
fn a_state_of_the_count_only_format_resumes_the_counting_pipeline_only() {
    let spec = PipelineSpec::counting(
        "p",
        vec![stream().clone()],
        WindowSpec::Tumbling { size_ms: MINUTE },
    );
    let legacy = serde_json::json!({
        "max_ts": {"s/0": 3000},
        "watermark": -2000,
        "open": {"0": {"counts": {"x": 2}}},
        "late_events": 4,
        "duplicates": 1
    });
    let hash = |id: &str| crate::partition::stable_hash64(&[b"s", id.as_bytes()]);
    let chunk = StateChunk {
        group: 0,
        bytes: [hash("a"), hash("b")]
            .iter()
            .flat_map(|h| h.to_le_bytes())
            .collect(),
    };
    let mut op = WindowOperator::restore(
        &spec,
        &legacy,
        std::slice::from_ref(&chunk),
        &[],
        [(stream(), 0)],
        0,
    )
    .unwrap();
    assert_eq!(op.counters().late_events, 4);
    assert_eq!(
        op.process(0, &event("a", 1_000, "x", serde_json::json!({})), 0),
        Outcome::Duplicate
    );
    assert_eq!(
        op.process(0, &event("c", 1_000, "x", serde_json::json!({})), 0),
        Outcome::Counted
    );
    let mut stored = Stored::default();
    let lines = stored.apply(&mut op);
    assert_eq!(lines, vec!["[0, 60000) \"x\" 3 rev 2".to_owned()]);
    // The next state is of the new format and restores the same operator.
    assert_eq!(stored.state["format"], 2);
    let mut again = stored.restore(&spec);
    assert_eq!(
        again.process(0, &event("c", 1_000, "x", serde_json::json!({})), 0),
        Outcome::Duplicate
    );
    let other = plan(
        WindowSpec::Hopping {
            size_ms: MINUTE,
            slide_ms: 30_000,
        },
        None,
        &["key"],
        &[("count", "count", None, &[])],
        0,
    );
    assert!(WindowOperator::check_state(&other, &legacy).is_err());
}

#[test]
fn a_retry_just_after_its_window_closed_is_a_duplicate_not_late() {
    let spec = plan(
        WindowSpec::Tumbling { size_ms: MINUTE },
        None,
        &["key"],
        &[("count", "count", None, &[])],
        0,
    );
    let mut op = WindowOperator::new(&spec, [(stream(), 0)], 0);
    let a = event("a", 1_000, "x", serde_json::json!({}));
    assert_eq!(op.process(0, &a, 0), Outcome::Counted);
    op.process(0, &event("b", 70_000, "x", serde_json::json!({})), 0);
    assert_eq!(op.advance(0).millis(), 65_000);
    assert_eq!(op.process(0, &a, 0), Outcome::Duplicate);
    assert_eq!(
        op.process(0, &event("new", 1_000, "x", serde_json::json!({})), 0),
        Outcome::Late
    );
}

#[test]
fn a_routed_event_is_grouped_by_the_key_it_was_routed_by_and_not_filtered_again() {
    let spec = plan(
        WindowSpec::Tumbling { size_ms: MINUTE },
        Some("payload.x > 0"),
        &["payload.k"],
        &[("count", "count", None, &[])],
        0,
    );
    let mut op = WindowOperator::new(&spec, [(stream(), 0)], 0);
    let routed =
        |op: &mut WindowOperator, e: &Event, key: &str| op.process_routed(0, e.into(), &[], key, 0);
    // The repartition task filtered and keyed these: the shard keeps its verdict.
    let a = event("a", 1_000, "-", serde_json::json!({"x": -1, "k": "p"}));
    let b = event("b", 2_000, "-", serde_json::json!({"x": 1, "k": "q"}));
    assert_eq!(routed(&mut op, &a, "p"), Outcome::Counted);
    assert_eq!(routed(&mut op, &b, "p"), Outcome::Counted);
    assert_eq!(routed(&mut op, &b, "p"), Outcome::Duplicate);
    // Not routed: filtered and keyed here.
    let c = event("c", 3_000, "-", serde_json::json!({"x": -1, "k": "p"}));
    assert_eq!(op.process(0, &c, 0), Outcome::Filtered);
    op.advance(0);
    let mut stored = Stored::default();
    assert_eq!(stored.apply(&mut op), vec!["[0, 60000) \"p\" 2 rev 1"]);
}

#[test]
fn a_quiet_stream_finalizes_its_last_windows_after_the_delay() {
    let mut spec = plan(
        WindowSpec::Tumbling { size_ms: MINUTE },
        None,
        &["key"],
        &[("count", "count", None, &[])],
        0,
    );
    spec.finalize_idle_after = Some(Duration::from_secs(30));
    let mut op = WindowOperator::new(&spec, [(stream(), 0)], 0);
    op.process(0, &event("a", 1_000, "x", serde_json::json!({})), 0);
    op.advance(10_000);
    let mut stored = Stored::default();
    assert_eq!(stored.apply(&mut op), vec!["[0, 60000) \"x\" 1 rev 1"]);
    op.advance(40_000);
    assert_eq!(op.watermark().millis(), MINUTE);
    assert_eq!(
        stored.apply(&mut op),
        vec!["[0, 60000) \"x\" 1 rev 2 closed"]
    );
}

/// An input for the property test: an event time, a key, an amount, and whether it is
/// sent twice.
type Step = (i64, u8, i64, bool);

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the order of arrival within the out-of-orderness bound, whatever
    /// duplicates, and however often the operator is checkpointed and restored, the final
    /// results equal a direct computation over the distinct events: exactly for count,
    /// sum, min, max and avg; within the sketches' stated error for count_distinct and
    /// quantile.
    #[test]
    fn results_equal_a_brute_force_reference(
        steps in prop::collection::vec((0i64..400_000, 0u8..3, -50i64..500, any::<bool>()), 1..150),
        window_kind in 0u8..3,
        restore_every in 1usize..25,
    ) {
        let window = match window_kind {
            0 => WindowSpec::Tumbling { size_ms: MINUTE },
            1 => WindowSpec::Hopping { size_ms: 2 * MINUTE, slide_ms: 30_000 },
            _ => WindowSpec::Session { gap_ms: 20_000 },
        };
        let spec = plan(
            window,
            Some("payload.amount >= 0"),
            &["key"],
            &[
                ("n", "count", None, &[]),
                ("total", "sum", Some("payload.amount"), &[]),
                ("low", "min", Some("payload.amount"), &[]),
                ("high", "max", Some("payload.amount"), &[]),
                ("mean", "avg", Some("payload.amount"), &[]),
                ("kinds", "count_distinct", Some("payload.amount"), &[]),
                ("median", "quantile", Some("payload.amount"), &[0.5]),
            ],
            0,
        );
        // Arrival order: sorted, then neighbours up to 4 s apart swapped (bound is 5 s).
        let mut steps: Vec<Step> = steps;
        steps.sort_by_key(|s| s.0);
        for i in 1..steps.len() {
            if i % 3 == 0 && steps[i].0 - steps[i - 1].0 < 4_000 {
                steps.swap(i, i - 1);
            }
        }
        let events: Vec<Event> = steps
            .iter()
            .enumerate()
            .map(|(i, &(ts, key, amount, _))| {
                event(&format!("e{i}"), ts, &format!("k{key}"), serde_json::json!({"amount": amount}))
            })
            .collect();
        let mut op = WindowOperator::new(&spec, [(stream(), 0)], 0);
        let mut stored = Stored::default();
        for (i, e) in events.iter().enumerate() {
            prop_assert_ne!(op.process(0, e, 0), Outcome::Late);
            if steps[i].3 {
                prop_assert_ne!(op.process(0, e, 0), Outcome::Counted);
            }
            op.advance(0);
            if i % restore_every == 0 {
                stored.apply(&mut op);
                op = stored.restore(&spec);
                prop_assert_ne!(op.process(0, &events[i / 2], 0), Outcome::Counted);
            }
        }
        op.process(0, &event("end", 100_000_000, "zz", serde_json::json!({"amount": 0})), 0);
        op.advance(0);
        stored.apply(&mut op);

        // The reference: group the kept events into windows directly.
        let kept: Vec<(i64, String, i64)> = steps
            .iter()
            .map(|&(ts, key, amount, _)| (ts, format!("k{key}"), amount))
            .filter(|&(_, _, amount)| amount >= 0)
            .collect();
        let mut groups: BTreeMap<(i64, String), Vec<i64>> = BTreeMap::new();
        match window {
            WindowSpec::Session { gap_ms } => {
                let mut by_key: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
                for (ts, key, amount) in &kept {
                    by_key.entry(key.clone()).or_default().push((*ts, *amount));
                }
                for (key, mut list) in by_key {
                    list.sort_unstable();
                    let mut start = list[0].0;
                    let mut end = start + gap_ms;
                    let mut amounts = Vec::new();
                    for (ts, amount) in list {
                        if ts > end {
                            groups.insert((start, key.clone()), std::mem::take(&mut amounts));
                            start = ts;
                        }
                        end = end.max(ts + gap_ms);
                        amounts.push(amount);
                    }
                    groups.insert((start, key), amounts);
                }
            }
            _ => {
                for (ts, key, amount) in &kept {
                    let mut windows = Vec::new();
                    window.assign(*ts, &mut windows);
                    for w in windows {
                        groups.entry((w.start, key.clone())).or_default().push(*amount);
                    }
                }
            }
        }
        let got: BTreeMap<(i64, String), String> = stored
            .rows
            .iter()
            .filter(|((_, key), _)| key != "zz")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        prop_assert_eq!(
            got.keys().collect::<Vec<_>>(),
            groups.keys().collect::<Vec<_>>()
        );
        for (group, amounts) in &groups {
            let row: Vec<&str> = got[group].split(' ').collect();
            let n = amounts.len() as f64;
            let sum: i64 = amounts.iter().sum();
            prop_assert_eq!(row[0], amounts.len().to_string());
            prop_assert_eq!(row[1], format!("{:.3}", sum as f64));
            prop_assert_eq!(row[2], format!("{:.3}", *amounts.iter().min().unwrap() as f64));
            prop_assert_eq!(row[3], format!("{:.3}", *amounts.iter().max().unwrap() as f64));
            prop_assert_eq!(row[4], format!("{:.3}", sum as f64 / n));
            let distinct = amounts.iter().collect::<std::collections::BTreeSet<_>>().len() as f64;
            let kinds: f64 = row[5].parse().unwrap();
            prop_assert!((kinds - distinct).abs() <= (distinct * 0.05).max(1.0), "{kinds} vs {distinct}");
            let mut sorted = amounts.clone();
            sorted.sort_unstable();
            let rank = ((0.5 * n).ceil() as usize).max(1) - 1;
            let truth = sorted[rank] as f64;
            let median: f64 = row[6].parse().unwrap();
            prop_assert!((median - truth).abs() <= truth.abs() * 0.011 + 1e-9, "{median} vs {truth}");
        }
    }
}
