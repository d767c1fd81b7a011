//! The engine over the embedded adapters: exact counts and dead letters after the engine
//! is aborted mid-stream (no final checkpoint), events counted before a restart kept as
//! duplicates after it, and a running processor fenced by a new one that takes its
//! pipeline over.

#![allow(clippy::unwrap_used)] // Test helpers outside #[test] functions unwrap too.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tributary_core::dead_letter::{DeadLetter, DeadLetterCursor, DeadLetterPage, Origin};
use tributary_core::pipeline::{PipelineSpec, WindowSpec};
use tributary_core::ports::{Fence, PortError, ResultQuery};
use tributary_core::results::ResultRow;
use tributary_core::value::Value;
use tributary_core::window::OperatorState;
use tributary_core::{Event, EventId, StreamName, Timestamp};
use tributary_engine::{Engine, EngineConfig, EngineError, Ports};

const MINUTE: i64 = 60_000;
const T0: i64 = 1_767_225_600_000;

fn stream() -> StreamName {
    StreamName::new("s").unwrap()
}

fn spec() -> PipelineSpec {
    PipelineSpec {
        max_out_of_orderness: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(3600),
        checkpoint_interval: Duration::from_millis(20),
        ..PipelineSpec::counting(
            "counts",
            vec![stream()],
            WindowSpec::Tumbling { size_ms: MINUTE },
        )
    }
}

/// The checkpoint names of the pipeline's shards: one per partition of its stream.
fn shards() -> Vec<String> {
    (0..2)
        .map(|p| tributary_engine::shard_task("counts", p))
        .collect()
}

/// The shards' last checkpoints' states (those that have one).
async fn shard_states(ports: &Ports) -> Vec<OperatorState> {
    let mut states = Vec::new();
    for task in shards() {
        if let Some(cp) = ports.analytics.load_checkpoint(&task).await.unwrap() {
            states.push(serde_json::from_value(cp.state).unwrap());
        }
    }
    states
}

/// The state chunks of every shard, claiming each (fencing any running owner).
async fn shard_chunks(ports: &Ports) -> Vec<tributary_core::ports::StateChunk> {
    let mut chunks = Vec::new();
    for task in shards() {
        chunks.extend(ports.analytics.claim(&task).await.unwrap().chunks);
    }
    chunks
}

/// The count of a row of the counting pipeline.
fn count(row: &ResultRow) -> u64 {
    match row.values[0] {
        Value::Int(n) => u64::try_from(n).unwrap(),
        ref other => panic!("count is {other:?}"),
    }
}

fn event(id: String, ts: i64, key: String) -> Event {
    Event {
        id: EventId::new(id).unwrap(),
        stream: stream(),
        ts: Timestamp::from_millis(ts),
        key: Some(key),
        payload: serde_json::Map::new(),
    }
}

/// Events over about three minutes, out of order by up to 6 s.
fn events(range: std::ops::Range<usize>) -> Vec<Event> {
    range
        .map(|i| {
            let i64i = i64::try_from(i).unwrap();
            event(
                format!("e{i}"),
                T0 + i64i * 100 - (i64i % 7) * 1_000,
                format!("k{}", i % 4),
            )
        })
        .collect()
}

/// One far-future event per partition, to close every window of the test.
fn flush() -> Vec<Event> {
    ["a", "b", "c", "d", "e", "f"]
        .iter()
        .map(|k| event(format!("flush-{k}"), T0 + 30 * MINUTE, (*k).to_owned()))
        .collect()
}

async fn ports(dir: &std::path::Path) -> Ports {
    let ports = common::embedded_ports(dir).await;
    ports.log.ensure_stream(&stream(), 2).await.unwrap();
    ports
}

fn engine(ports: &Ports) -> Engine {
    engine_with_batch(ports, 7)
}

fn engine_with_batch(ports: &Ports, batch_size: usize) -> Engine {
    Engine::new(
        ports.clone(),
        EngineConfig {
            pipelines: vec![spec()],
            archived_streams: vec![stream()],
            archive_checkpoint_interval: Duration::from_millis(20),
            batch_size,
            dead_letter_retention: None,
        },
    )
}

async fn closed_counts(ports: &Ports) -> BTreeMap<(i64, String), u64> {
    let rows = ports
        .analytics
        .query_results(
            &spec().schema(),
            &ResultQuery {
                pipeline: "counts".into(),
                from: Some(Timestamp::from_millis(T0 - 10 * MINUTE)),
                to: Some(Timestamp::from_millis(T0 + 10 * MINUTE)),
                key: None,
                limit: 10_000,
            },
        )
        .await
        .unwrap();
    rows.into_iter()
        .filter(|r| r.closed)
        .map(|r| ((r.window_start.millis(), r.key.clone()), count(&r)))
        .collect()
}

/// Waits until the closed results equal `expected`, or fails after 30 s.
async fn wait_for_counts(ports: &Ports, expected: &BTreeMap<(i64, String), u64>) {
    common::eventually(async || {
        let got = closed_counts(ports).await;
        if &got == expected {
            return Ok(());
        }
        Err(format!("counts differ:\n got {got:?}\nwant {expected:?}"))
    })
    .await;
}

fn truth(events: &[Event]) -> BTreeMap<(i64, String), u64> {
    let mut counts = BTreeMap::new();
    for e in events {
        let start = e.ts.millis().div_euclid(MINUTE) * MINUTE;
        *counts.entry((start, e.key.clone().unwrap())).or_insert(0) += 1;
    }
    counts
}

/// Runs and aborts the engine over `dir` three times, at different moments: no final
/// checkpoint, the in-memory state is lost, the stores keep what was committed.
async fn abort_three_times(dir: &std::path::Path) {
    for pause in [30, 70, 110] {
        let ports = ports(dir).await;
        let task = tokio::spawn(engine(&ports).run(CancellationToken::new()));
        tokio::time::sleep(Duration::from_millis(pause)).await;
        task.abort();
        let _ = task.await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn counts_are_exact_after_aborts_mid_stream() {
    let dir = tempfile::tempdir().unwrap();
    let all = events(0..2_000);
    // One process owns the redb file at a time: each phase opens the stores anew.
    {
        let ports = ports(dir.path()).await;
        for batch in all.chunks(100) {
            ports.log.append(&stream(), batch).await.unwrap();
        }
    }
    abort_three_times(dir.path()).await;
    let ports = ports(dir.path()).await;
    // Duplicates of processed events, as a client retry would send them.
    ports.log.append(&stream(), &all[..300]).await.unwrap();
    ports.log.append(&stream(), &flush()).await.unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(engine(&ports).run(shutdown.clone()));
    wait_for_counts(&ports, &truth(&all)).await;
    // The archive is a task of its own and may still be behind the pipeline: every raw
    // event must arrive, once.
    wait_for_raw_events(&ports, all.len() + flush().len()).await;
    shutdown.cancel();
    task.await.unwrap().unwrap();
    assert_eq!(raw_events(&ports).await, all.len() + flush().len());
}

/// How many raw events the document store holds.
async fn raw_events(ports: &Ports) -> usize {
    common::raw_event_ids(ports, &stream()).await.len()
}

/// Waits until the document store holds `expected` raw events, or fails after 30 s. More
/// than `expected` fails at once: a duplicate never goes away.
async fn wait_for_raw_events(ports: &Ports, expected: usize) {
    common::eventually(async || {
        let seen = raw_events(ports).await;
        assert!(
            seen <= expected,
            "{seen} raw events stored, {expected} sent"
        );
        if seen == expected {
            return Ok(());
        }
        Err(format!(
            "only {seen} of {expected} raw events were archived"
        ))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn late_events_are_dead_lettered_once_after_aborts_mid_stream() {
    let dir = tempfile::tempdir().unwrap();
    let all = events(0..500);
    // Count everything and close every window of the test: from now on, an event of
    // those windows is late.
    {
        let ports = ports(dir.path()).await;
        ports.log.append(&stream(), &all).await.unwrap();
        ports.log.append(&stream(), &flush()).await.unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(engine(&ports).run(shutdown.clone()));
        wait_for_counts(&ports, &truth(&all)).await;
        shutdown.cancel();
        task.await.unwrap().unwrap();
        let late: Vec<Event> = events(0..300)
            .into_iter()
            .map(|e| event(format!("late-{}", e.id), e.ts.millis(), e.key.unwrap()))
            .collect();
        for batch in late.chunks(50) {
            ports.log.append(&stream(), batch).await.unwrap();
        }
    }
    abort_three_times(dir.path()).await;
    let ports = ports(dir.path()).await;
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(engine(&ports).run(shutdown.clone()));
    wait_for_late_events(&ports, 300).await;
    shutdown.cancel();
    task.await.unwrap().unwrap();

    // Stored before the checkpoint that counted them, each once.
    let letters = dead_letters(&ports).await;
    let mut ids: Vec<&str> = letters.iter().map(|l| l.id.as_str()).collect();
    ids.sort_unstable();
    let mut expected: Vec<String> = (0..300)
        .map(|i| format!("late:counts:s:late-e{i}"))
        .collect();
    expected.sort_unstable();
    assert_eq!(ids, expected);
    for letter in &letters {
        let raw = Event::from_json_bytes(letter.raw.as_bytes()).unwrap();
        let Origin::Late {
            pipeline,
            window_start,
            watermark,
        } = &letter.origin
        else {
            panic!("not late: {letter:?}");
        };
        assert_eq!(pipeline, "counts");
        assert_eq!(
            window_start.millis(),
            raw.ts.millis().div_euclid(MINUTE) * MINUTE
        );
        assert!(
            window_start.millis() + MINUTE <= watermark.millis(),
            "{letter:?}"
        );
        assert_eq!(letter.stream, "s");
    }
    // The late events changed no count.
    assert_eq!(closed_counts(&ports).await, truth(&all));
}

/// Events counted before a restart are duplicates after it: their window's
/// de-duplication set comes back from the state chunks (the state's JSON holds none), so
/// a client re-sending them changes no count.
#[tokio::test(flavor = "multi_thread")]
async fn events_counted_before_a_restart_stay_duplicates_after_it() {
    let dir = tempfile::tempdir().unwrap();
    // About 50 s of events, all in the window starting at T0: the watermark leaves it open.
    let all = events(60..560);
    {
        let ports = ports(dir.path()).await;
        ports.log.append(&stream(), &all).await.unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(engine(&ports).run(shutdown.clone()));
        wait_for_open_counts(&ports, &truth(&all)).await;
        shutdown.cancel();
        task.await.unwrap().unwrap();

        for task in shards() {
            let checkpoint = ports.analytics.load_checkpoint(&task).await.unwrap();
            let state = checkpoint.unwrap().state;
            assert!(!state.to_string().contains("seen"), "{state}");
        }
        let stored: usize = shard_chunks(&ports)
            .await
            .iter()
            .map(|chunk| chunk.bytes.len())
            .sum();
        assert_eq!(stored, all.len() * 8, "one 8-byte hash per event counted");
    }
    // A new process: its operator is restored from the checkpoint and the chunks.
    let ports = ports(dir.path()).await;
    ports.log.append(&stream(), &all).await.unwrap();
    ports.log.append(&stream(), &flush()).await.unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(engine(&ports).run(shutdown.clone()));
    wait_for_counts(&ports, &truth(&all)).await;
    shutdown.cancel();
    task.await.unwrap().unwrap();
    let states = shard_states(&ports).await;
    let duplicates: u64 = states.iter().map(|s| s.duplicates).sum();
    let late: u64 = states.iter().map(|s| s.late_events).sum();
    assert_eq!((duplicates, late), (500, 0));
    // The closed window's chunks were dropped: only the flush events' window has some.
    let chunks = shard_chunks(&ports).await;
    // (in one chunk or several, as the checkpoints happened to split them).
    let mut bytes_per_group: BTreeMap<i64, usize> = BTreeMap::new();
    for chunk in &chunks {
        *bytes_per_group.entry(chunk.group).or_default() += chunk.bytes.len();
    }
    assert_eq!(
        bytes_per_group,
        BTreeMap::from([(T0 + 30 * MINUTE, flush().len() * 8)])
    );
}

/// Waits until the open (provisional) results equal `expected`, or fails after 30 s.
async fn wait_for_open_counts(ports: &Ports, expected: &BTreeMap<(i64, String), u64>) {
    common::eventually(async || {
        let rows = ports
            .analytics
            .query_results(
                &spec().schema(),
                &ResultQuery {
                    pipeline: "counts".into(),
                    from: None,
                    to: None,
                    key: None,
                    limit: 10_000,
                },
            )
            .await
            .unwrap();
        assert!(rows.iter().all(|r| !r.closed), "a window closed: {rows:?}");
        let got: BTreeMap<(i64, String), u64> = rows
            .into_iter()
            .map(|r| ((r.window_start.millis(), r.key.clone()), count(&r)))
            .collect();
        if &got == expected {
            return Ok(());
        }
        Err(format!(
            "open counts differ:\n got {got:?}\nwant {expected:?}"
        ))
    })
    .await;
}

/// Waits until the pipeline's last checkpoint counts `expected` late events, or fails after
/// 30 s. More than `expected` fails at once.
async fn wait_for_late_events(ports: &Ports, expected: u64) {
    common::eventually(async || {
        let late: u64 = shard_states(ports)
            .await
            .iter()
            .map(|state| state.late_events)
            .sum();
        assert!(
            late <= expected,
            "{late} late events counted, {expected} sent"
        );
        if late == expected {
            return Ok(());
        }
        Err(format!(
            "only {late} of {expected} late events were counted"
        ))
    })
    .await;
}

/// Every dead letter, read page by page.
async fn dead_letters(ports: &Ports) -> Vec<DeadLetter> {
    let mut all = Vec::new();
    let mut page = DeadLetterPage {
        limit: 64,
        after: None,
    };
    loop {
        let batch = ports.documents.recent_dead_letters(&page).await.unwrap();
        let Some(last) = batch.last() else {
            return all;
        };
        page.after = Some(DeadLetterCursor {
            at: last.at,
            id: last.id.clone(),
        });
        all.extend(batch);
    }
}

/// A processor started while another runs the pipeline takes it over when it restores
/// (its claim): the running one, now a zombie, is fenced at its next commit and stops,
/// while the new one goes on, and every count stays exact.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_processor_takes_the_pipeline_over_and_fences_the_running_one() {
    let dir = tempfile::tempdir().unwrap();
    let ports = ports(dir.path()).await;
    let mut n = 500;
    ports.log.append(&stream(), &events(0..n)).await.unwrap();
    let running = tokio::spawn(engine(&ports).run(CancellationToken::new()));
    wait_for_a_checkpoint(&ports).await;

    let shutdown = CancellationToken::new();
    let new = tokio::spawn(engine(&ports).run(shutdown.clone()));
    // Events keep flowing, so the running processor commits again, and is fenced then.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !running.is_finished() {
        assert!(
            std::time::Instant::now() < deadline,
            "the running processor was never fenced"
        );
        if n < 1_500 {
            ports
                .log
                .append(&stream(), &events(n..n + 10))
                .await
                .unwrap();
            n += 10;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let err = running.await.unwrap().unwrap_err();
    assert!(
        matches!(
            err,
            EngineError::Port(PortError::Fenced {
                fence: Fence::Generation,
                ..
            })
        ),
        "{err:?}"
    );
    assert!(!new.is_finished(), "the new processor stopped too");

    ports
        .log
        .append(&stream(), &events(n..n + 200))
        .await
        .unwrap();
    n += 200;
    ports.log.append(&stream(), &flush()).await.unwrap();
    wait_for_counts(&ports, &truth(&events(0..n))).await;
    wait_for_raw_events(&ports, n + flush().len()).await;
    shutdown.cancel();
    new.await.unwrap().unwrap();
}

/// Waits until the pipeline has committed a checkpoint, or fails after 30 s.
async fn wait_for_a_checkpoint(ports: &Ports) {
    common::eventually(async || {
        if shard_states(ports).await.len() == shards().len() {
            Ok(())
        } else {
            Err("the pipeline's shards committed no checkpoint".to_owned())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backlog_is_counted_without_late_events() {
    // A pipeline started on ten minutes of events already in the log, read in large
    // batches: a partition read first must not close windows the other still fills.
    let dir = tempfile::tempdir().unwrap();
    let ports = ports(dir.path()).await;
    let all = events(0..6_000);
    for batch in all.chunks(500) {
        ports.log.append(&stream(), batch).await.unwrap();
    }
    ports.log.append(&stream(), &flush()).await.unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(engine_with_batch(&ports, 1_000).run(shutdown.clone()));
    wait_for_counts(&ports, &truth(&all)).await;
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

/// An engine configured to read no record per poll refuses to start instead of spinning.
#[tokio::test]
async fn a_zero_batch_size_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ports = ports(dir.path()).await;
    let outcome = tokio::time::timeout(
        Duration::from_secs(5),
        engine_with_batch(&ports, 0).run(CancellationToken::new()),
    )
    .await
    .expect("the engine returns at once");
    assert!(
        matches!(outcome, Err(EngineError::ZeroBatchSize)),
        "{outcome:?}"
    );
}
