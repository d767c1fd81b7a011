//! The engine over the embedded adapters with a lookup table in a CSV file (the Yahoo
//! Streaming Benchmark's join: ad id → campaign id): views counted per campaign exactly,
//! a changed file seen by the events processed after the next refresh, and a pipeline
//! whose file is missing at start waiting for it.

#![allow(clippy::unwrap_used)] // Test helpers outside #[test] functions unwrap too.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tributary_connectors::file::FileReference;
use tributary_core::lookup::LookupSource;
use tributary_core::pipeline::{PipelineSpec, PipelineStatus, WindowSpec};
use tributary_core::plan::{self, Definition, KeyDefinition, LookupDefinition};
use tributary_core::value::Value;
use tributary_core::{Event, EventId, StreamName, Timestamp};
use tributary_engine::{Engine, EngineConfig, Ports, References};

const T0: i64 = 1_767_225_600_000;
const WINDOW: i64 = 10_000;
const PIPELINE: &str = "views_per_campaign";
/// Ads `a0`..`a11`: `a10` has no campaign, `a11` is not in the table.
const ADS: usize = 12;

fn stream() -> StreamName {
    StreamName::new("ad_events").unwrap()
}

/// The pipeline, its table read from `file` and reloaded every second.
fn spec(file: &Path) -> PipelineSpec {
    plan::plan(&Definition {
        name: PIPELINE.to_owned(),
        sources: vec![stream().to_string()],
        lookups: vec![LookupDefinition {
            name: "ads".to_owned(),
            on: "payload.ad_id".to_owned(),
            key: "ad_id".to_owned(),
            file: Some(file.to_owned()),
            postgres: None,
            refresh: Duration::from_secs(1),
        }],
        filter: Some("payload.event_type = 'view' AND ads.campaign_id IS NOT NULL".to_owned()),
        key: Some(vec![KeyDefinition::from("ads.campaign_id")]),
        window: WindowSpec::Tumbling { size_ms: WINDOW },
        aggregates: None,
        allowed_lateness: Duration::ZERO,
        max_out_of_orderness: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(3600),
        finalize_idle_after: None,
        checkpoint_interval: Duration::from_millis(20),
    })
    .unwrap()
}

/// The campaign of ad `i` in the table's `version`; `None` for `a10` (an empty cell).
fn campaign(version: usize, ad: usize) -> Option<String> {
    (ad < 10).then(|| format!("c{}", (ad + version) % 3))
}

/// Writes the table's `version` to `file`, whole at once (as a deployment replaces it).
fn write_table(file: &Path, version: usize) {
    let mut csv = String::from("ad_id,campaign_id\n");
    for ad in 0..ADS - 1 {
        csv.push_str(&format!(
            "a{ad},{}\n",
            campaign(version, ad).unwrap_or_default()
        ));
    }
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, csv).unwrap();
    std::fs::rename(&tmp, file).unwrap();
}

/// `n` events of the window starting at `start`, keyed by ad id as the benchmark's are;
/// every other one a view.
fn events(start: i64, n: usize) -> Vec<Event> {
    (0..n)
        .map(|i| {
            let ad = format!("a{}", i % ADS);
            let ts = start + i64::try_from(i).unwrap() % WINDOW;
            let mut payload = serde_json::Map::new();
            payload.insert("ad_id".into(), ad.clone().into());
            let kind = if i % 2 == 0 { "view" } else { "click" };
            payload.insert("event_type".into(), kind.into());
            Event {
                id: EventId::new(format!("e{start}-{i}")).unwrap(),
                stream: stream(),
                ts: Timestamp::from_millis(ts),
                key: Some(ad),
                payload,
            }
        })
        .collect()
}

/// One event per key `a`..`f` at `ts`, which every partition gets one of: it moves the
/// watermark past the windows before `ts`.
fn flush(ts: i64) -> Vec<Event> {
    ["a", "b", "c", "d", "e", "f"]
        .iter()
        .map(|k| Event {
            id: EventId::new(format!("flush-{ts}-{k}")).unwrap(),
            stream: stream(),
            ts: Timestamp::from_millis(ts),
            key: Some((*k).to_owned()),
            payload: serde_json::Map::new(),
        })
        .collect()
}

/// Appends `events`, then [`flush`] at `flush_at`.
async fn send(ports: &Ports, events: &[Event], flush_at: i64) {
    ports.log.append(&stream(), events).await.unwrap();
    ports.log.append(&stream(), &flush(flush_at)).await.unwrap();
}

/// The views per campaign of `events`, by window start, with the table's `version`.
fn truth(events: &[Event], version: usize) -> BTreeMap<(i64, String), u64> {
    let mut counts = BTreeMap::new();
    for (i, e) in events.iter().enumerate() {
        let ad: usize = e.key.as_ref().unwrap()[1..].parse().unwrap();
        if let (0, Some(campaign)) = (i % 2, campaign(version, ad)) {
            let start = e.ts.millis().div_euclid(WINDOW) * WINDOW;
            *counts.entry((start, campaign)).or_insert(0) += 1;
        }
    }
    counts
}

async fn ports(dir: &Path) -> Ports {
    let ports = common::embedded_ports(dir).await;
    ports.log.ensure_stream(&stream(), 2).await.unwrap();
    ports
}

/// The engine running `spec`, its tables read through the file adapter.
fn engine(ports: &Ports, spec: PipelineSpec) -> Engine {
    let mut references = References::new();
    for lookup in &spec.lookups {
        let LookupSource::File { path, format } = &lookup.source else {
            panic!("a file");
        };
        references.insert(
            (spec.name.clone(), lookup.name.clone()),
            Arc::new(FileReference::new(path.clone(), *format)),
        );
    }
    engine_with(ports, spec, references)
}

/// The engine running `spec`, its tables read from `references`.
fn engine_with(ports: &Ports, spec: PipelineSpec, references: References) -> Engine {
    Engine::new(
        ports.clone(),
        EngineConfig {
            pipelines: vec![spec],
            archived_streams: Vec::new(),
            archive_checkpoint_interval: Duration::from_secs(1),
            batch_size: 50,
            dead_letter_retention: None,
        },
    )
    .with_references(references)
}

/// Waits until the closed results equal `expected`, or fails after 30 s.
async fn wait_for_counts(
    ports: &Ports,
    spec: &PipelineSpec,
    expected: &BTreeMap<(i64, String), u64>,
) {
    common::eventually(async || {
        let rows = common::results(ports, &spec.schema()).await;
        let got: BTreeMap<(i64, String), u64> = rows
            .into_iter()
            .filter(|r| r.closed)
            .map(|r| {
                let Value::Int(n) = r.values[0] else {
                    panic!("count is {:?}", r.values[0]);
                };
                ((r.window_start.millis(), r.key), u64::try_from(n).unwrap())
            })
            .collect();
        if &got == expected {
            return Ok(());
        }
        Err(format!("counts differ:\n got {got:?}\nwant {expected:?}"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn views_are_counted_per_campaign_and_a_changed_table_is_seen_after_a_refresh() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ads.csv");
    write_table(&file, 0);
    let spec = spec(&file);
    let ports = ports(dir.path()).await;
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(engine(&ports, spec.clone()).run(shutdown.clone()));

    let first = events(T0, 600);
    send(&ports, &first, T0 + 6 * WINDOW).await;
    let mut expected = truth(&first, 0);
    assert_eq!(expected.len(), 3, "every campaign has views");
    wait_for_counts(&ports, &spec, &expected).await;
    // The filter runs before the shuffle; the status still counts what it dropped: the
    // clicks, the views of ads without a campaign and the flush events (no payload).
    let views: u64 = expected.values().sum();
    let read = (first.len() + flush(0).len()) as u64;
    wait_for_filtered(&ports, read - views).await;

    // The ads move to other campaigns; the next reload (every second) reads it.
    write_table(&file, 1);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let second = events(T0 + 12 * WINDOW, 600);
    send(&ports, &second, T0 + 18 * WINDOW).await;
    let moved = truth(&second, 1);
    assert_ne!(
        moved.values().collect::<Vec<_>>(),
        truth(&second, 0).values().collect::<Vec<_>>(),
        "the new table counts otherwise"
    );
    expected.extend(moved);
    wait_for_counts(&ports, &spec, &expected).await;
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

/// Waits until the pipeline's status counts `filtered` events dropped by its filter.
async fn wait_for_filtered(ports: &Ports, filtered: u64) {
    let mut seen = None;
    for _ in 0..200 {
        let status = PipelineStatus::load(ports.cache.as_ref(), PIPELINE)
            .await
            .unwrap();
        seen = status.map(|status| status.filtered);
        if seen == Some(filtered) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the status counts {seen:?} filtered events, not {filtered}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pipeline_whose_table_is_missing_restarts_until_it_appears() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ads.csv");
    let spec = spec(&file);
    let ports = ports(dir.path()).await;
    let all = events(T0, 100);
    send(&ports, &all, T0 + 6 * WINDOW).await;
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(engine(&ports, spec.clone()).run(shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !task.is_finished(),
        "a missing table restarts the task, not the engine"
    );
    write_table(&file, 0);
    wait_for_counts(&ports, &spec, &truth(&all, 0)).await;
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_lookup_without_a_source_stops_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let ports = ports(dir.path()).await;
    let spec = spec(&dir.path().join("ads.csv"));
    let engine = engine_with(&ports, spec, References::new());
    let err = engine.run(CancellationToken::new()).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "pipeline views_per_campaign: no source was given for the table of its lookup ads"
    );
}
