//! The `Log` port's conformance suite: every scenario is written once, against
//! `&dyn Backend`, and runs against the embedded log (`embedded::*`, redb in a temporary
//! file) and against Kafka (`kafka::*`, the broker named by `TRIBUTARY_KAFKA_BROKERS`, with a
//! unique topic prefix per test).
//!
//! Run: `eval "$(scripts/services.sh env)"; cargo test -p tributary-connectors --test log_conformance`

// Scenario helpers are not `#[test]` functions, so clippy's allow-unwrap-in-tests misses them.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::json;
use tributary_connectors::kafka::{KafkaConfig, KafkaLog};
use tributary_connectors::redb::{RedbLog, RedbLogConfig};
use tributary_core::dead_letter::{DeadLetter, Origin};
use tributary_core::event::{Event, EventId, StreamName, Timestamp};
use tributary_core::partition::partition_for;
use tributary_core::ports::{EncodedBatch, Log, LogReader, LogRecord, PartitionOffset, PortError};
use tributary_core::repartition::{progress_records, route_keys, wrap, wrap_into};

/// A log adapter under test, with the data of one test.
#[async_trait]
trait Backend: Send + Sync {
    /// A new instance of the log over this test's data. For the embedded log, every earlier
    /// instance must have been dropped (redb locks its file).
    async fn open(&self) -> Arc<dyn Log>;
}

/// The embedded log in a fresh temporary directory.
struct Embedded {
    _dir: tempfile::TempDir,
    config: RedbLogConfig,
}

impl Embedded {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = RedbLogConfig {
            path: dir.path().join("nested").join("log.redb"),
        };
        Self { _dir: dir, config }
    }
}

#[async_trait]
impl Backend for Embedded {
    async fn open(&self) -> Arc<dyn Log> {
        let config = self.config.clone();
        let log = tokio::task::spawn_blocking(move || RedbLog::open(&config))
            .await
            .unwrap();
        Arc::new(log.unwrap())
    }
}

/// Kafka, with topics under a prefix no other test or run uses.
struct Kafka {
    config: KafkaConfig,
}

impl Kafka {
    fn new() -> Self {
        let brokers = common::service_env("TRIBUTARY_KAFKA_BROKERS");
        let mut config = KafkaConfig::new(brokers);
        config.topic_prefix = format!("tributary-test-{}.", uuid::Uuid::now_v7());
        Self { config }
    }
}

#[async_trait]
impl Backend for Kafka {
    async fn open(&self) -> Arc<dyn Log> {
        match KafkaLog::connect(&self.config).await {
            Ok(log) => Arc::new(log),
            Err(error) => panic!(
                "Kafka at TRIBUTARY_KAFKA_BROKERS={} is unreachable: {error:?}",
                self.config.brokers
            ),
        }
    }
}

fn stream(name: &str) -> StreamName {
    StreamName::new(name).unwrap()
}

fn event(stream: &StreamName, id: &str, key: Option<&str>, n: i64) -> Event {
    Event {
        id: EventId::new(id).unwrap(),
        stream: stream.clone(),
        ts: Timestamp::from_millis(1_700_000_000_000 + n),
        key: key.map(str::to_owned),
        payload: json!({ "n": n, "text": "héllo" })
            .as_object()
            .unwrap()
            .clone(),
    }
}

fn from_start(stream: &StreamName, partitions: u32) -> Vec<PartitionOffset> {
    (0..partitions)
        .map(|partition| PartitionOffset {
            stream: stream.clone(),
            partition,
            next_offset: 0,
        })
        .collect()
}

/// A record of partition 0 a reader must skip and hand out as a dead letter: its offset,
/// its value (as text) and a part of the reason.
type Rejected<'a> = (u64, &'a str, &'a str);

/// Checks that `letters` are the dead letters of exactly the `expected` records of
/// `stream`, in order.
fn check_rejected(letters: &[DeadLetter], stream: &StreamName, expected: &[Rejected<'_>]) {
    assert_eq!(letters.len(), expected.len(), "{letters:#?}");
    for (letter, &(offset, raw, reason)) in letters.iter().zip(expected) {
        assert_eq!(letter.id, format!("log:{stream}:0:{offset}"));
        assert_eq!(letter.stream, stream.as_str());
        assert_eq!(
            letter.origin,
            Origin::Log {
                partition: 0,
                offset
            }
        );
        assert_eq!(letter.raw, raw);
        assert!(!letter.truncated);
        assert!(
            letter.reason.contains(reason),
            "{:?} does not say {reason:?}",
            letter.reason
        );
    }
}

/// Checks that `reader` hands out exactly the `expected` records of `stream` as dead
/// letters, in order, once: a second call hands out nothing.
fn assert_rejected(reader: &mut dyn LogReader, stream: &StreamName, expected: &[Rejected<'_>]) {
    check_rejected(&reader.take_rejected(), stream, expected);
    assert_eq!(reader.take_rejected(), vec![]);
}

/// Reads partition 0 of `stream` from the first of the `expected` records on, where only
/// they are left: each poll returns no event, without waiting out its timeout, and their
/// dead letters come out.
async fn read_only_rejected(log: &dyn Log, stream: &StreamName, expected: &[Rejected<'_>]) {
    let timeout = Duration::from_secs(20);
    let start = PartitionOffset {
        stream: stream.clone(),
        partition: 0,
        next_offset: expected[0].0,
    };
    let mut reader = log.reader("rejected-only", &[start]).await.unwrap();
    let mut letters = Vec::new();
    while letters.len() < expected.len() {
        let started = Instant::now();
        let records = reader.poll(expected.len() - letters.len(), timeout).await;
        assert_eq!(records.unwrap(), vec![]);
        assert!(
            started.elapsed() < timeout / 2,
            "a poll reading skipped records waited {:?}",
            started.elapsed()
        );
        letters.extend(reader.take_rejected());
    }
    check_rejected(&letters, stream, expected);
}

/// Checks that `records`, read from offset 0 of every partition, are exactly `appended`,
/// each on its `partition_for` partition, in append order, with offsets 0, 1, 2, ...
fn assert_partitioned_in_order(records: &[LogRecord], appended: &[Event], partitions: u32) {
    let mut expected: BTreeMap<u32, Vec<&Event>> = BTreeMap::new();
    for event in appended {
        expected
            .entry(partition_for(event.partition_key(), partitions))
            .or_default()
            .push(event);
    }
    let mut actual: BTreeMap<u32, Vec<&LogRecord>> = BTreeMap::new();
    for record in records {
        actual.entry(record.partition).or_default().push(record);
    }
    assert_eq!(
        actual.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "records landed on other partitions than partition_for names"
    );
    for (partition, events) in &expected {
        let read = &actual[partition];
        let offsets: Vec<u64> = read.iter().map(|r| r.offset).collect();
        let want: Vec<u64> = (0..events.len() as u64).collect();
        assert_eq!(offsets, want, "offsets of partition {partition}");
        let read_events: Vec<&Event> = read.iter().map(|r| &r.event).collect();
        assert_eq!(&read_events, events, "events of partition {partition}");
    }
}

// ------------------------------------------------------------------------------ scenarios

async fn append_then_read_back_in_order(backend: &dyn Backend) {
    let log = backend.open().await;
    log.ping().await.unwrap();
    let orders = stream("orders");
    assert_eq!(log.ensure_stream(&orders, 3).await.unwrap(), 3);
    let events: Vec<Event> = (0..30)
        .map(|i| event(&orders, &format!("e{i}"), Some(&format!("k{}", i % 5)), i))
        .collect();
    for batch in events.chunks(10) {
        log.append(&orders, batch).await.unwrap();
    }
    let mut reader = log
        .reader("conformance", &from_start(&orders, 3))
        .await
        .unwrap();
    let records = common::read_exactly(reader.as_mut(), events.len()).await;
    assert_partitioned_in_order(&records, &events, 3);
}

/// One reader over two streams (a pipeline with two sources) reads each record as an
/// event of the stream it is in.
async fn one_reader_tells_two_streams_apart(backend: &dyn Backend) {
    let log = backend.open().await;
    let (views, buys) = (stream("views"), stream("buys"));
    let mut appended = BTreeSet::new();
    for name in [&views, &buys] {
        assert_eq!(log.ensure_stream(name, 2).await.unwrap(), 2);
        let events: Vec<Event> = (0..10)
            .map(|i| event(name, &format!("{name}-{i}"), Some(&format!("k{i}")), i))
            .collect();
        log.append(name, &events).await.unwrap();
        appended.extend(
            events
                .iter()
                .map(|e| (e.stream.to_string(), e.id.to_string())),
        );
    }
    let mut start = from_start(&views, 2);
    start.extend(from_start(&buys, 2));
    let mut reader = log.reader("conformance", &start).await.unwrap();
    let records = common::read_exactly(reader.as_mut(), appended.len()).await;
    let read: BTreeSet<(String, String)> = records
        .iter()
        .map(|r| (r.event.stream.to_string(), r.event.id.to_string()))
        .collect();
    assert_eq!(read, appended);
    assert!(reader.take_rejected().is_empty());
}

/// Events appended already encoded (a repartition task's records) read back as if
/// appended decoded: the same events, on `partition_for` their key, in order.
async fn encoded_appends_read_back_as_the_events(backend: &dyn Backend) {
    let log = backend.open().await;
    let internal = stream("rp-0123456789abcdef");
    assert_eq!(log.ensure_stream(&internal, 3).await.unwrap(), 3);
    let source = stream("clicks");
    let mut batch = EncodedBatch::default();
    let mut wrapped = Vec::new();
    for i in 0..40 {
        let event = event(&source, &format!("e\"{i}"), (i % 3 > 0).then_some("k"), i);
        let key = format!("campaign-{}", i % 7);
        wrap_into(&mut batch, &event, 2, &key, &internal).unwrap();
        wrapped.push(wrap(&event, 2, key, &internal).unwrap());
    }
    let routes = route_keys(3);
    let progress = progress_records(&internal, &routes, &source, 2, Timestamp::from_millis(9));
    for record in &progress {
        batch.push_event(record);
    }
    wrapped.extend(progress);
    log.append_encoded(&internal, &batch).await.unwrap();
    let mut reader = log
        .reader("conformance", &from_start(&internal, 3))
        .await
        .unwrap();
    let records = common::read_exactly(reader.as_mut(), wrapped.len()).await;
    assert_partitioned_in_order(&records, &wrapped, 3);
}

async fn unknown_stream_is_refused(backend: &dyn Backend) {
    let log = backend.open().await;
    let known = stream("known");
    let ghost = stream("ghost");
    log.ensure_stream(&known, 1).await.unwrap();

    let appended = log.append(&ghost, &[event(&ghost, "g1", None, 1)]).await;
    assert!(
        matches!(&appended, Err(PortError::UnknownStream(s)) if *s == ghost),
        "append to a stream never ensured: {appended:?}"
    );
    let counted = log.partitions(&ghost).await;
    assert!(
        matches!(&counted, Err(PortError::UnknownStream(s)) if *s == ghost),
        "partitions of a stream never ensured: {counted:?}"
    );
    let opened = log.reader("conformance", &from_start(&ghost, 1)).await;
    assert!(
        matches!(&opened, Err(PortError::UnknownStream(s)) if *s == ghost),
        "reader of a stream never ensured: {opened:?}"
    );
    let ends = log.end_offsets(&ghost).await;
    assert!(
        matches!(&ends, Err(PortError::UnknownStream(s)) if *s == ghost),
        "end offsets of a stream never ensured: {ends:?}"
    );
    // The refusal created nothing: the stream is still unknown.
    assert!(matches!(
        log.partitions(&ghost).await,
        Err(PortError::UnknownStream(_))
    ));
    assert_eq!(log.partitions(&known).await.unwrap(), 1);
}

async fn end_offsets_count_appended_records(backend: &dyn Backend) {
    let log = backend.open().await;
    let trades = stream("trades");
    log.ensure_stream(&trades, 3).await.unwrap();
    assert_eq!(log.end_offsets(&trades).await.unwrap(), vec![0, 0, 0]);

    let events: Vec<Event> = (0..25)
        .map(|i| event(&trades, &format!("t{i}"), Some(&format!("k{}", i % 7)), i))
        .collect();
    for batch in events.chunks(10) {
        log.append(&trades, batch).await.unwrap();
    }
    let mut per_partition = vec![0_u64; 3];
    for event in &events {
        per_partition[partition_for(event.partition_key(), 3) as usize] += 1;
    }
    assert!(
        per_partition.iter().filter(|&&n| n > 0).count() >= 2,
        "7 keys should spread over the partitions: {per_partition:?}"
    );
    assert_eq!(log.end_offsets(&trades).await.unwrap(), per_partition);

    // A reader that read everything stands at the ends.
    let mut reader = log
        .reader("conformance", &from_start(&trades, 3))
        .await
        .unwrap();
    let mut read_to = vec![0_u64; 3];
    for record in common::read_exactly(reader.as_mut(), events.len()).await {
        let next = &mut read_to[record.partition as usize];
        *next = (*next).max(record.offset + 1);
    }
    assert_eq!(read_to, per_partition);
}

async fn ensure_stream_is_idempotent_and_reports_partitions(backend: &dyn Backend) {
    let log = backend.open().await;
    let clicks = stream("clicks");
    assert_eq!(log.ensure_stream(&clicks, 4).await.unwrap(), 4);
    assert_eq!(log.ensure_stream(&clicks, 4).await.unwrap(), 4);
    assert_eq!(
        log.ensure_stream(&clicks, 2).await.unwrap(),
        4,
        "an existing stream keeps its partitions"
    );
    assert_eq!(log.partitions(&clicks).await.unwrap(), 4);

    let views = stream("views");
    assert_eq!(log.ensure_stream(&views, 1).await.unwrap(), 1);
    assert_eq!(log.partitions(&views).await.unwrap(), 1);
    assert_eq!(
        log.partitions(&clicks).await.unwrap(),
        4,
        "streams are independent"
    );
}

async fn keys_land_on_partition_for(backend: &dyn Backend) {
    let log = backend.open().await;
    let users = stream("users");
    log.ensure_stream(&users, 4).await.unwrap();
    let mut events: Vec<Event> = (0..20)
        .map(|i| event(&users, &format!("u{i}"), Some(&format!("user-{i}")), i))
        .collect();
    // Without a key, the id is the partition key.
    events.extend((20..24).map(|i| event(&users, &format!("anonymous-{i}"), None, i)));
    log.append(&users, &events).await.unwrap();

    let mut reader = log
        .reader("conformance", &from_start(&users, 4))
        .await
        .unwrap();
    let records = common::read_exactly(reader.as_mut(), events.len()).await;
    for record in &records {
        assert_eq!(
            record.partition,
            partition_for(record.event.partition_key(), 4),
            "event {} is on the wrong partition",
            record.event.id
        );
    }
    let used: BTreeSet<u32> = records.iter().map(|r| r.partition).collect();
    assert!(
        used.len() >= 3,
        "24 keys should spread over the partitions, used {used:?}"
    );
    assert_partitioned_in_order(&records, &events, 4);
}

async fn reader_starts_at_given_offsets(backend: &dyn Backend) {
    let log = backend.open().await;
    let payments = stream("payments");
    log.ensure_stream(&payments, 2).await.unwrap();
    let key = (0..100)
        .map(|i| format!("k{i}"))
        .find(|k| partition_for(k, 2) == 1)
        .unwrap();
    let events: Vec<Event> = (0..5)
        .map(|i| event(&payments, &format!("p{i}"), Some(&key), i))
        .collect();
    log.append(&payments, &events).await.unwrap();

    let start = [
        PartitionOffset {
            stream: payments.clone(),
            partition: 1,
            next_offset: 2,
        },
        PartitionOffset {
            stream: payments.clone(),
            partition: 0,
            next_offset: 0,
        },
    ];
    let mut reader = log.reader("conformance", &start).await.unwrap();
    let records = common::read_exactly(reader.as_mut(), 3).await;
    assert!(records.iter().all(|r| r.partition == 1));
    assert_eq!(
        records.iter().map(|r| r.offset).collect::<Vec<_>>(),
        vec![2, 3, 4]
    );
    let read: Vec<&Event> = records.iter().map(|r| &r.event).collect();
    assert_eq!(read, events[2..].iter().collect::<Vec<_>>());

    // A reader of only partition 0, which is empty, gets nothing.
    let mut empty = log
        .reader(
            "conformance",
            &[PartitionOffset {
                stream: payments.clone(),
                partition: 0,
                next_offset: 0,
            }],
        )
        .await
        .unwrap();
    assert!(
        empty
            .poll(10, Duration::from_millis(500))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn poll_waits_for_new_appends(backend: &dyn Backend) {
    let log = backend.open().await;
    let alerts = stream("alerts");
    log.ensure_stream(&alerts, 1).await.unwrap();
    let mut reader = log
        .reader("conformance", &from_start(&alerts, 1))
        .await
        .unwrap();

    let started = Instant::now();
    let poll = tokio::spawn(async move {
        let records = reader.poll(10, Duration::from_secs(20)).await.unwrap();
        (records, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !poll.is_finished(),
        "poll returned before anything was appended"
    );
    let appended = event(&alerts, "a1", Some("x"), 1);
    log.append(&alerts, std::slice::from_ref(&appended))
        .await
        .unwrap();

    let (records, elapsed) = poll.await.unwrap();
    assert_eq!(
        records.len(),
        1,
        "the poll should return the appended record"
    );
    assert_eq!(records[0].event, appended);
    assert_eq!(records[0].offset, 0);
    assert!(
        elapsed < Duration::from_secs(10),
        "the poll took {elapsed:?}, its timeout is 20 s"
    );
}

async fn poll_times_out_empty(backend: &dyn Backend) {
    let log = backend.open().await;
    let quiet = stream("quiet");
    log.ensure_stream(&quiet, 1).await.unwrap();
    let events = [event(&quiet, "q0", None, 0), event(&quiet, "q1", None, 1)];
    log.append(&quiet, &events).await.unwrap();

    // Positioned at the end: nothing to read.
    let start = [PartitionOffset {
        stream: quiet.clone(),
        partition: 0,
        next_offset: 2,
    }];
    let mut reader = log.reader("conformance", &start).await.unwrap();
    let started = Instant::now();
    let records = reader.poll(10, Duration::from_millis(700)).await.unwrap();
    let elapsed = started.elapsed();
    assert!(
        records.is_empty(),
        "nothing was appended after offset 2: {records:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(650),
        "returned after {elapsed:?}, before the timeout"
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "returned after {elapsed:?}, long after the timeout"
    );
}

async fn durable_across_reopen(backend: &dyn Backend) {
    let ledger = stream("ledger");
    let first: Vec<Event> = (0..6)
        .map(|i| {
            event(
                &ledger,
                &format!("l{i}"),
                Some(&format!("acct-{}", i % 3)),
                i,
            )
        })
        .collect();
    {
        let log = backend.open().await;
        log.ensure_stream(&ledger, 2).await.unwrap();
        log.append(&ledger, &first).await.unwrap();
    }

    let log = backend.open().await;
    assert_eq!(log.partitions(&ledger).await.unwrap(), 2);
    assert_eq!(log.ensure_stream(&ledger, 5).await.unwrap(), 2);
    let mut reader = log
        .reader("conformance", &from_start(&ledger, 2))
        .await
        .unwrap();
    let records = common::read_exactly(reader.as_mut(), first.len()).await;
    assert_partitioned_in_order(&records, &first, 2);

    // Appends after the reopen continue the offsets.
    let later = event(&ledger, "l6", Some("acct-0"), 6);
    log.append(&ledger, std::slice::from_ref(&later))
        .await
        .unwrap();
    let mut all = first.clone();
    all.push(later);
    let more = common::read_exactly(reader.as_mut(), 1).await;
    let records: Vec<LogRecord> = records.into_iter().chain(more).collect();
    assert_partitioned_in_order(&records, &all, 2);
}

async fn concurrent_appends_are_read_back_exactly_once(backend: &dyn Backend) {
    const WRITERS: usize = 8;
    const BATCHES: usize = 5;
    const BATCH: usize = 10;
    let log = backend.open().await;
    let metrics = stream("metrics");
    log.ensure_stream(&metrics, 3).await.unwrap();

    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let log = Arc::clone(&log);
        let metrics = metrics.clone();
        writers.push(tokio::spawn(async move {
            let key = format!("writer-{writer}");
            for batch in 0..BATCHES {
                let events: Vec<Event> = (0..BATCH)
                    .map(|i| {
                        let seq = batch * BATCH + i;
                        event(
                            &metrics,
                            &format!("w{writer}-{seq}"),
                            Some(&key),
                            seq as i64,
                        )
                    })
                    .collect();
                log.append(&metrics, &events).await.unwrap();
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }

    let total = WRITERS * BATCHES * BATCH;
    let mut reader = log
        .reader("conformance", &from_start(&metrics, 3))
        .await
        .unwrap();
    let records = common::read_exactly(reader.as_mut(), total).await;
    let ids: BTreeSet<&str> = records.iter().map(|r| r.event.id.as_str()).collect();
    assert_eq!(ids.len(), total, "every event exactly once");
    let mut next_offset: HashMap<u32, u64> = HashMap::new();
    let mut last_seq: HashMap<String, i64> = HashMap::new();
    for record in &records {
        let expected = next_offset.entry(record.partition).or_insert(0);
        assert_eq!(
            record.offset, *expected,
            "offsets of partition {} are dense",
            record.partition
        );
        *expected += 1;
        let key = record.event.key.clone().unwrap();
        assert_eq!(record.partition, partition_for(&key, 3));
        let seq = record.event.payload["n"].as_i64().unwrap();
        let previous = last_seq.insert(key.clone(), seq);
        assert_eq!(
            previous.map_or(0, |p| p + 1),
            seq,
            "events of {key} in append order"
        );
    }
}

async fn commit_does_not_override_given_offsets(backend: &dyn Backend) {
    let log = backend.open().await;
    let audit = stream("audit");
    log.ensure_stream(&audit, 1).await.unwrap();
    let events: Vec<Event> = (0..4)
        .map(|i| event(&audit, &format!("a{i}"), None, i))
        .collect();
    log.append(&audit, &events).await.unwrap();
    {
        let mut reader = log
            .reader("auditors", &from_start(&audit, 1))
            .await
            .unwrap();
        common::read_exactly(reader.as_mut(), 4).await;
        let done = [PartitionOffset {
            stream: audit.clone(),
            partition: 0,
            next_offset: 4,
        }];
        reader.commit(&done).await.unwrap();
        reader.commit(&[]).await.unwrap();
    }
    // The pipeline's checkpoint says 1: the group's committed offset must not win.
    let start = [PartitionOffset {
        stream: audit.clone(),
        partition: 0,
        next_offset: 1,
    }];
    let mut reader = log.reader("auditors", &start).await.unwrap();
    let records = common::read_exactly(reader.as_mut(), 3).await;
    assert_eq!(
        records.iter().map(|r| r.offset).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    let read: Vec<&Event> = records.iter().map(|r| &r.event).collect();
    assert_eq!(read, events[1..].iter().collect::<Vec<_>>());
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        /// The scenarios against the embedded log.
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(&super::Embedded::new()).await;
                }
            )*
        }

        /// The scenarios against Kafka.
        mod kafka {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(&super::Kafka::new()).await;
                }
            )*
        }
    };
}

conformance!(
    append_then_read_back_in_order,
    one_reader_tells_two_streams_apart,
    encoded_appends_read_back_as_the_events,
    unknown_stream_is_refused,
    end_offsets_count_appended_records,
    ensure_stream_is_idempotent_and_reports_partitions,
    keys_land_on_partition_for,
    reader_starts_at_given_offsets,
    poll_waits_for_new_appends,
    poll_times_out_empty,
    durable_across_reopen,
    concurrent_appends_are_read_back_exactly_once,
    commit_does_not_override_given_offsets,
);

// ---------------------------------------------------------------- adapter-specific checks

/// The embedded log stores group commits, for lag.
#[tokio::test]
async fn embedded_commit_is_recorded_for_lag() {
    let dir = tempfile::tempdir().unwrap();
    let config = RedbLogConfig {
        path: dir.path().join("log.redb"),
    };
    let log = tokio::task::spawn_blocking(move || RedbLog::open(&config))
        .await
        .unwrap()
        .unwrap();
    let s = stream("lagging");
    log.ensure_stream(&s, 2).await.unwrap();
    assert_eq!(log.committed_offset("g", &s, 1).await.unwrap(), None);
    let mut reader = log.reader("g", &from_start(&s, 2)).await.unwrap();
    reader
        .commit(&[PartitionOffset {
            stream: s.clone(),
            partition: 1,
            next_offset: 7,
        }])
        .await
        .unwrap();
    assert_eq!(log.committed_offset("g", &s, 1).await.unwrap(), Some(7));
    assert_eq!(log.committed_offset("other", &s, 1).await.unwrap(), None);
}

/// The embedded log refuses a second opening of its file instead of corrupting it.
#[tokio::test]
async fn embedded_file_is_locked_while_open() {
    let dir = tempfile::tempdir().unwrap();
    let config = RedbLogConfig {
        path: dir.path().join("log.redb"),
    };
    let first = RedbLog::open(&config).unwrap();
    let second = RedbLog::open(&config);
    assert!(
        matches!(second, Err(PortError::Unavailable { .. })),
        "{second:?}"
    );
    drop(first);
    RedbLog::open(&config).unwrap();
}

/// Connecting to a port where no broker listens fails as `Unavailable`, quickly.
#[tokio::test]
async fn kafka_connect_without_broker_is_unavailable() {
    common::assert_unavailable_within(
        KafkaLog::connect(&KafkaConfig::new("127.0.0.1:1")),
        Duration::from_secs(12),
    )
    .await;
}

/// Records the embedded log cannot decode, or that claim another stream, are skipped and
/// handed out once as dead letters, and reading goes on after them.
#[tokio::test]
async fn embedded_undecodable_records_are_skipped() {
    let backend = Embedded::new();
    let s = stream("mixed");
    let first = event(&s, "m0", None, 0);
    let foreign =
        String::from_utf8(event(&stream("other"), "o1", None, 1).to_json_bytes()).unwrap();
    {
        let log = backend.open().await;
        log.ensure_stream(&s, 1).await.unwrap();
        log.append(&s, std::slice::from_ref(&first)).await.unwrap();
    }
    {
        // Write garbage at offset 1 and an event of another stream at offset 2, behind the
        // adapter's back.
        let db = redb::Database::create(&backend.config.path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let definition = redb::TableDefinition::<u64, &[u8]>::new("log/mixed/0");
            let mut table = txn.open_table(definition).unwrap();
            table.insert(1, b"not an event".as_slice()).unwrap();
            table.insert(2, foreign.as_bytes()).unwrap();
        }
        txn.commit().unwrap();
    }
    let log = backend.open().await;
    let last = event(&s, "m3", None, 3);
    log.append(&s, std::slice::from_ref(&last)).await.unwrap();
    let mut reader = log.reader("conformance", &from_start(&s, 1)).await.unwrap();
    let records = common::read_exactly(reader.as_mut(), 2).await;
    assert_eq!(
        records.iter().map(|r| r.offset).collect::<Vec<_>>(),
        vec![0, 3]
    );
    assert_eq!(records[0].event, first);
    assert_eq!(records[1].event, last);
    let rejected = [
        (1, "not an event", "the record is not an event: expected"),
        (2, foreign.as_str(), "of stream other, not of mixed"),
    ];
    assert_rejected(reader.as_mut(), &s, &rejected);
    // Where only skipped records are left, a poll hands them out at once.
    read_only_rejected(log.as_ref(), &s, &rejected).await;
}

/// Records Kafka holds that are not events (written by another producer) are skipped and
/// handed out once as dead letters, and reading goes on after them.
#[tokio::test]
async fn kafka_undecodable_records_are_skipped() {
    use rdkafka::producer::{FutureProducer, FutureRecord};

    let backend = Kafka::new();
    let s = stream("mixed");
    let log = backend.open().await;
    log.ensure_stream(&s, 1).await.unwrap();
    let first = event(&s, "m0", None, 0);
    log.append(&s, std::slice::from_ref(&first)).await.unwrap();

    let foreign: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &backend.config.brokers)
        .create()
        .unwrap();
    let topic = format!("{}mixed", backend.config.topic_prefix);
    let garbage = FutureRecord::to(&topic)
        .partition(0)
        .key("x")
        .payload("not an event");
    foreign
        .send(garbage, Duration::from_secs(10))
        .await
        .unwrap();
    let tombstone = FutureRecord::<str, [u8]>::to(&topic).partition(0).key("x");
    foreign
        .send(tombstone, Duration::from_secs(10))
        .await
        .unwrap();

    let last = event(&s, "m3", None, 3);
    log.append(&s, std::slice::from_ref(&last)).await.unwrap();
    let mut reader = log.reader("conformance", &from_start(&s, 1)).await.unwrap();
    let records = common::read_exactly(reader.as_mut(), 2).await;
    assert_eq!(
        records.iter().map(|r| r.offset).collect::<Vec<_>>(),
        vec![0, 3]
    );
    assert_eq!(records[0].event, first);
    assert_eq!(records[1].event, last);
    let rejected = [
        (1, "not an event", "the record is not an event: expected"),
        (2, "", "the record has no value"),
    ];
    assert_rejected(reader.as_mut(), &s, &rejected);
    // Where only skipped records are left, a poll hands them out at once.
    read_only_rejected(log.as_ref(), &s, &rejected).await;
}

/// A record in a stream's topic that claims another stream (written by another producer)
/// is skipped like an undecodable one (and handed out as a dead letter of the topic's
/// stream), even when the reader reads that other stream too:
/// the stream of a record is its topic's, whose offsets readers advance.
#[tokio::test]
async fn kafka_records_claiming_another_stream_are_skipped() {
    use rdkafka::producer::{FutureProducer, FutureRecord};

    let backend = Kafka::new();
    let clicks = stream("clicks");
    let orders = stream("orders");
    let log = backend.open().await;
    log.ensure_stream(&clicks, 1).await.unwrap();
    log.ensure_stream(&orders, 1).await.unwrap();
    let first = event(&clicks, "c0", None, 0);
    log.append(&clicks, std::slice::from_ref(&first))
        .await
        .unwrap();

    let foreign: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &backend.config.brokers)
        .create()
        .unwrap();
    let topic = format!("{}clicks", backend.config.topic_prefix);
    let claimed = event(&orders, "o1", None, 1).to_json_bytes();
    let impostor = FutureRecord::to(&topic)
        .partition(0)
        .key("x")
        .payload(&claimed);
    foreign
        .send(impostor, Duration::from_secs(10))
        .await
        .unwrap();

    let last = event(&clicks, "c2", None, 2);
    log.append(&clicks, std::slice::from_ref(&last))
        .await
        .unwrap();
    let mut start = from_start(&clicks, 1);
    start.extend(from_start(&orders, 1));
    let mut reader = log.reader("conformance", &start).await.unwrap();
    let records = common::read_exactly(reader.as_mut(), 2).await;
    assert_eq!(
        records
            .iter()
            .map(|r| (r.event.stream.as_str(), r.offset))
            .collect::<Vec<_>>(),
        vec![("clicks", 0), ("clicks", 2)]
    );
    assert_eq!(records[0].event, first);
    assert_eq!(records[1].event, last);
    let claimed = String::from_utf8(claimed).unwrap();
    let reason = "event o1 of stream orders, not of clicks";
    assert_rejected(reader.as_mut(), &clicks, &[(1, &claimed, reason)]);
}

/// Kafka takes an event of the largest size ingestion accepts (1 000 000 bytes of JSON) with
/// the longest key, and the topics Tributary creates accept Kafka's default record batch
/// size whatever the broker's default.
#[tokio::test]
async fn kafka_takes_the_largest_event() {
    use rdkafka::admin::{AdminClient, AdminOptions, ConfigSource, ResourceSpecifier};
    use rdkafka::client::DefaultClientContext;
    use tributary_core::event::MAX_EVENT_BYTES;

    let backend = Kafka::new();
    let s = stream("large");
    let log = backend.open().await;
    log.ensure_stream(&s, 1).await.unwrap();
    let mut large = event(&s, "big", Some(&"k".repeat(256)), 0);
    large.payload.insert("pad".into(), json!(""));
    let padding = MAX_EVENT_BYTES - large.to_json_bytes().len();
    large
        .payload
        .insert("pad".into(), json!("p".repeat(padding)));
    assert_eq!(large.to_json_bytes().len(), MAX_EVENT_BYTES);
    log.append(&s, std::slice::from_ref(&large)).await.unwrap();
    let mut reader = log.reader("conformance", &from_start(&s, 1)).await.unwrap();
    let records = common::read_exactly(reader.as_mut(), 1).await;
    assert_eq!(records[0].event, large);

    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &backend.config.brokers)
        .create()
        .unwrap();
    let topic = format!("{}large", backend.config.topic_prefix);
    let described = admin
        .describe_configs([&ResourceSpecifier::Topic(&topic)], &AdminOptions::new())
        .await
        .unwrap();
    let config = described.into_iter().next().unwrap().unwrap();
    let limit = config.get("max.message.bytes").unwrap();
    assert_eq!(limit.value.as_deref(), Some("1048588"));
    assert_eq!(limit.source, ConfigSource::DynamicTopic, "set on the topic");
}
