//! Where a Kafka reader starts when its offsets are no longer in the log, and how it
//! reports consumer errors, against the broker named by `TRIBUTARY_KAFKA_BROKERS` (each
//! test under its own topic prefix):
//! - records that expired (retention, here `DeleteRecords`) past a checkpointed offset are
//!   skipped, logged and counted in `tributary_log_records_lost_total{stream}`, once;
//! - offset 0 means "from the beginning": nothing is lost when the log starts later;
//! - an offset beyond the end (the topic was recreated) reads the new topic from its start;
//! - an error the consumer returns behind records fails the next poll, not silently.
//!
//! Run: `eval "$(scripts/services.sh env)"; cargo test -p tributary-connectors --test kafka_reader`

// Scenario helpers are not `#[test]` functions, so clippy's allow-unwrap-in-tests misses them.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::error::Error;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::json;
use tributary_connectors::kafka::{KafkaConfig, KafkaLog};
use tributary_core::event::{Event, EventId, StreamName, Timestamp};
use tributary_core::ports::{Log, LogReader, LogRecord, PartitionOffset, PortError};

/// How long a test waits for something it expects before failing.
const DEADLINE: Duration = Duration::from_secs(30);

/// The counter the reader increments by the records it found lost.
const LOST: &str = "tributary_log_records_lost_total";

/// The counters incremented in this test binary, by name and `stream` label.
#[derive(Debug, Default)]
struct Counters(Mutex<HashMap<(String, String), Arc<AtomicU64>>>);

impl Counters {
    /// The value of counter `name` for stream `stream` (0 if never incremented).
    fn get(&self, name: &str, stream: &StreamName) -> u64 {
        let key = (name.to_owned(), stream.to_string());
        self.0
            .lock()
            .unwrap()
            .get(&key)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

/// A recorder keeping every counter in [`Counters`] (gauges and histograms are ignored).
#[derive(Debug)]
struct CountingRecorder(Arc<Counters>);

impl Recorder for CountingRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let stream = key
            .labels()
            .find(|label| label.key() == "stream")
            .map(|label| label.value().to_owned())
            .unwrap_or_default();
        let counter = self
            .0
            .0
            .lock()
            .unwrap()
            .entry((key.name().to_owned(), stream))
            .or_default()
            .clone();
        Counter::from_arc(counter)
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

/// The counters of this process, recorded from the first call on.
fn counters() -> &'static Counters {
    static COUNTERS: OnceLock<Arc<Counters>> = OnceLock::new();
    COUNTERS.get_or_init(|| {
        let counters = Arc::new(Counters::default());
        metrics::set_global_recorder(CountingRecorder(counters.clone())).unwrap();
        counters
    })
}

/// A Kafka log with its topics under a prefix no other test or run uses, the admin client
/// the tests use to do what retention and operators do, and one stream of one partition.
struct Setup {
    log: KafkaLog,
    admin: AdminClient<DefaultClientContext>,
    stream: StreamName,
    topic: String,
}

impl Setup {
    async fn new(stream: &str) -> Self {
        let brokers = common::service_env("TRIBUTARY_KAFKA_BROKERS");
        let mut config = KafkaConfig::new(&brokers);
        config.topic_prefix = format!("tributary-test-{}.", uuid::Uuid::now_v7());
        let log = match KafkaLog::connect(&config).await {
            Ok(log) => log,
            Err(error) => {
                panic!("Kafka at TRIBUTARY_KAFKA_BROKERS={brokers} is unreachable: {error:?}")
            }
        };
        let admin = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .create()
            .unwrap();
        // Record the counters from now on, before any reader of this test opens.
        counters();
        let stream = StreamName::new(stream).unwrap();
        let topic = format!("{}{stream}", config.topic_prefix);
        assert_eq!(log.ensure_stream(&stream, 1).await.unwrap(), 1);
        Self {
            log,
            admin,
            stream,
            topic,
        }
    }

    /// Appends `count` events numbered from `first` (their id is `e{n}`).
    async fn append(&self, first: i64, count: i64) {
        let events: Vec<Event> = (first..first + count)
            .map(|n| Event {
                id: EventId::new(format!("e{n}")).unwrap(),
                stream: self.stream.clone(),
                ts: Timestamp::from_millis(1_700_000_000_000 + n),
                key: None,
                payload: json!({ "n": n }).as_object().unwrap().clone(),
            })
            .collect();
        self.log.append(&self.stream, &events).await.unwrap();
    }

    /// Deletes the records below `offset`, as retention does.
    async fn expire_below(&self, offset: i64) {
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(&self.topic, 0, Offset::Offset(offset))
            .unwrap();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let result = self.admin.delete_records(&list, &options).await.unwrap();
        let low = result.find_partition(&self.topic, 0).unwrap();
        assert_eq!(low.error(), Ok(()));
        assert_eq!(low.offset(), Offset::Offset(offset));
    }

    /// Deletes the topic and creates it again, empty.
    async fn recreate(&self) {
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results = self
            .admin
            .delete_topics(&[&self.topic], &options)
            .await
            .unwrap();
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        let deadline = Instant::now() + DEADLINE;
        while !matches!(
            self.log.partitions(&self.stream).await,
            Err(PortError::UnknownStream(_))
        ) {
            assert!(
                Instant::now() < deadline,
                "topic {} not deleted",
                self.topic
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(self.log.ensure_stream(&self.stream, 1).await.unwrap(), 1);
    }

    /// A reader of partition 0 from `offset`.
    async fn reader(&self, group: &str, offset: u64) -> Box<dyn LogReader> {
        let start = PartitionOffset {
            stream: self.stream.clone(),
            partition: 0,
            next_offset: offset,
        };
        self.log.reader(group, &[start]).await.unwrap()
    }

    fn lost(&self) -> u64 {
        counters().get(LOST, &self.stream)
    }
}

/// The offsets and event numbers of `records`.
fn offsets_and_numbers(records: &[LogRecord]) -> Vec<(u64, i64)> {
    records
        .iter()
        .map(|r| (r.offset, r.event.payload["n"].as_i64().unwrap()))
        .collect()
}

/// Whether `error` is a reader's report that a partition's offset left the log.
fn offset_left_the_log(error: &PortError) -> bool {
    let mut source = error.source();
    while let Some(cause) = source {
        if cause.to_string().contains("no longer in the log") {
            return true;
        }
        source = cause.source();
    }
    false
}

/// A checkpointed offset below the log start: the records between are reported lost,
/// counted once however often the reader is reopened there, and reading goes on.
#[tokio::test]
async fn expired_records_are_counted_lost_and_skipped() {
    let setup = Setup::new("expired").await;
    setup.append(0, 10).await;
    setup.expire_below(6).await;
    let before = setup.lost();

    let mut reader = setup.reader("g", 2).await;
    let records = common::read_exactly(reader.as_mut(), 4).await;
    assert_eq!(
        offsets_and_numbers(&records),
        vec![(6, 6), (7, 7), (8, 8), (9, 9)]
    );
    assert_eq!(setup.lost() - before, 4, "records 2..6 are lost");
    drop(reader);

    // A task restarting from the same checkpoint finds the same records missing: they
    // were counted already.
    let mut reader = setup.reader("g", 2).await;
    assert_eq!(common::read_exactly(reader.as_mut(), 4).await, records);
    assert_eq!(setup.lost() - before, 4);

    // Another group lost them too.
    let mut reader = setup.reader("other", 4).await;
    assert_eq!(common::read_exactly(reader.as_mut(), 4).await, records);
    assert_eq!(setup.lost() - before, 6);
}

/// Offset 0 is "from the beginning": a pipeline without a checkpoint reads what the log
/// still holds, and nothing counts as lost.
#[tokio::test]
async fn reading_from_zero_after_retention_loses_nothing() {
    let setup = Setup::new("from-zero").await;
    setup.append(0, 10).await;
    setup.expire_below(6).await;

    let mut reader = setup.reader("g", 0).await;
    let records = common::read_exactly(reader.as_mut(), 4).await;
    assert_eq!(
        offsets_and_numbers(&records),
        vec![(6, 6), (7, 7), (8, 8), (9, 9)]
    );
    assert_eq!(setup.lost(), 0);
}

/// A checkpointed offset beyond the end (the topic was deleted and created again): the
/// new topic is read from its start, and nothing counts as lost.
#[tokio::test]
async fn offset_beyond_the_end_reads_the_recreated_topic() {
    let setup = Setup::new("recreated").await;
    setup.append(0, 5).await;
    setup.recreate().await;
    setup.append(100, 3).await;

    let mut reader = setup.reader("g", 5).await;
    let records = common::read_exactly(reader.as_mut(), 3).await;
    assert_eq!(
        offsets_and_numbers(&records),
        vec![(0, 100), (1, 101), (2, 102)]
    );
    assert_eq!(setup.lost(), 0);
}

/// The topic is recreated under a reader that has records waiting: the consumer's error
/// (its fetch offset is beyond the new topic's end, and `auto.offset.reset=error`) comes
/// after them, in the same batch. The poll returns the records, and the next poll fails
/// with the error (librdkafka reports it once and stops fetching the partition: dropping
/// it would stall the reader without a trace).
#[tokio::test]
async fn an_error_behind_records_fails_the_next_poll() {
    let setup = Setup::new("error-behind").await;
    setup.append(0, 5).await;
    let mut reader = setup.reader("g", 0).await;
    // A second reader, polled until its error shows, tells when the first one's is queued.
    let mut probe = setup.reader("probe", 0).await;
    assert_eq!(common::read_exactly(probe.as_mut(), 5).await.len(), 5);
    setup.recreate().await;
    let deadline = Instant::now() + DEADLINE;
    loop {
        assert!(Instant::now() < deadline, "the probe saw no error");
        match probe.poll(100, Duration::from_secs(1)).await {
            Ok(records) => assert!(records.is_empty(), "{records:?}"),
            Err(error) if offset_left_the_log(&error) => break,
            Err(_) => {}
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    let records = reader.poll(100, Duration::from_secs(1)).await.unwrap();
    assert_eq!(records.len(), 5, "{records:?}");
    let mut errors = Vec::new();
    loop {
        match reader.poll(100, Duration::from_millis(500)).await {
            Ok(records) if records.is_empty() => break,
            Ok(records) => panic!("{records:?}"),
            Err(error) => errors.push(error),
        }
    }
    assert!(errors.iter().any(offset_left_the_log), "{errors:?}");

    // Reopened at its checkpoint, as a restarting task does, the reader reads the new topic.
    setup.append(100, 2).await;
    let mut reader = setup.reader("g", 5).await;
    let records = common::read_exactly(reader.as_mut(), 2).await;
    assert_eq!(offsets_and_numbers(&records), vec![(0, 100), (1, 101)]);
}
