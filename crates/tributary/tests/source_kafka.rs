//! The Kafka source (`[[sources]] kind = "kafka"`) end to end: JSON values produced to an
//! external topic of the real Kafka are read by `tributary run` into a stream (on the real
//! Kafka too), the invalid ones kept as dead letters with their position, the source's
//! offsets committed; killed with SIGKILL while reading and restarted, nothing is missing.

#![allow(clippy::unwrap_used)] // Test helpers outside #[test] functions unwrap too.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use common::distributed::{distributed_config, ids_in_topic, service};
use common::{Node, PARTITIONS, STREAM, T0};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::{Value, json};

/// Partitions of the external topic.
const INPUT_PARTITIONS: i32 = 2;

/// What was produced: the ids the stream must hold, and the positions of the invalid values.
#[derive(Debug, Default)]
struct Produced {
    valid_ids: BTreeSet<String>,
    invalid: BTreeSet<(i32, i64)>,
}

async fn create_topic(brokers: &str, topic: &str) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let new = NewTopic::new(topic, INPUT_PARTITIONS, TopicReplication::Fixed(1));
    let results = admin
        .create_topics([&new], &AdminOptions::new())
        .await
        .unwrap_or_else(|e| panic!("Kafka at {brokers} is unreachable: {e}"));
    for result in results {
        result.unwrap();
    }
}

/// Produces values `from..to` to `topic`: every 7th without an id (it gets one derived from
/// its position), every 11th invalid (malformed JSON, or a `time` that is no epoch).
async fn produce(brokers: &str, topic: &str, range: std::ops::Range<u32>, produced: &mut Produced) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .create()
        .unwrap();
    let mut values = Vec::new();
    for i in range {
        let (value, id) = if i % 11 == 0 {
            let bad = if i % 2 == 0 {
                "{\"event_id\": \"broken".to_owned()
            } else {
                json!({"event_id": format!("ev-{i}"), "time": "yesterday"}).to_string()
            };
            (bad, None)
        } else if i % 7 == 0 {
            let v = json!({"time": T0 + i64::from(i), "user": format!("u{}", i % 5), "payload": {"n": i}});
            (v.to_string(), None)
        } else {
            let id = format!("ev-{i}");
            let v = json!({"event_id": id, "time": T0 + i64::from(i), "user": format!("u{}", i % 5), "payload": {"n": i}});
            (v.to_string(), Some(id))
        };
        values.push((i, value, id));
    }
    let sends = values.iter().map(|(i, value, _)| {
        let key = format!("k{i}");
        let producer = &producer;
        async move {
            let record = FutureRecord::to(topic).key(&key).payload(value);
            producer
                .send(record, Duration::from_secs(10))
                .await
                .unwrap_or_else(|(e, _)| panic!("cannot produce: {e}"))
        }
    });
    let deliveries = futures::future::join_all(sends).await;
    for ((i, _, id), delivery) in values.into_iter().zip(deliveries) {
        let position = (delivery.partition, delivery.offset);
        if i % 11 == 0 {
            produced.invalid.insert(position);
        } else {
            let id = id.unwrap_or_else(|| format!("kafka:{topic}:{}:{}", position.0, position.1));
            produced.valid_ids.insert(id);
        }
    }
}

/// Every dead letter, read page by page; fails on more than `n`.
async fn dead_letters(node: &Node, n: usize) -> Vec<Value> {
    let mut letters = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/dead-letters?limit=100&cursor={c}"),
            None => "/v1/dead-letters?limit=100".to_owned(),
        };
        let page = node.get(&path).await;
        letters.extend(page["dead_letters"].as_array().unwrap().iter().cloned());
        assert!(
            letters.len() <= n,
            "{} dead letters, at most {n} expected",
            letters.len()
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return letters,
        }
    }
}

/// Waits until exactly `n` dead letters are kept, and checks each is a refused record of
/// `topic` at one of the `invalid` positions.
async fn check_dead_letters(node: &Node, topic: &str, produced: &Produced) {
    let n = produced.invalid.len();
    let letters = node
        .eventually(async || {
            let letters = dead_letters(node, n).await;
            if letters.len() == n {
                Ok(letters)
            } else {
                Err(format!("{} dead letters, {n} expected", letters.len()))
            }
        })
        .await;
    let positions: BTreeSet<(i32, i64)> = letters
        .iter()
        .map(|l| {
            let origin = &l["origin"];
            assert_eq!(origin["kind"], "kafka", "{l}");
            assert_eq!(origin["topic"], topic, "{l}");
            assert_eq!(l["stream"], STREAM);
            assert!(!l["reason"].as_str().unwrap().is_empty());
            let partition = i32::try_from(origin["partition"].as_i64().unwrap()).unwrap();
            (partition, origin["offset"].as_i64().unwrap())
        })
        .collect();
    assert_eq!(positions, produced.invalid);
}

/// Waits until the source's group committed the end of every partition of `topic`.
async fn wait_for_commits(node: &Node, brokers: &str, group: &str, topic: &str) {
    node.eventually(async || {
        let (committed, ends) = committed_and_ends(brokers, group, topic).await;
        if committed == ends {
            Ok(())
        } else {
            Err(format!("committed {committed:?}, ends {ends:?}"))
        }
    })
    .await;
}

/// Waits until the stream holds exactly the valid values produced (each id at least once).
async fn wait_for_stream(node: &Node, brokers: &str, topic: &str, produced: &Produced) {
    node.eventually(async || {
        let ids = stream_ids(brokers, topic, produced).await;
        if ids == produced.valid_ids {
            Ok(())
        } else {
            Err(format!(
                "{} of {} in the stream",
                ids.len(),
                produced.valid_ids.len()
            ))
        }
    })
    .await;
}

/// The distinct ids in the stream's topic; fails on one that was not produced.
async fn stream_ids(brokers: &str, topic: &str, produced: &Produced) -> BTreeSet<String> {
    let ids: BTreeSet<String> = ids_in_topic(brokers, topic, PARTITIONS)
        .await
        .into_iter()
        .collect();
    let foreign: Vec<_> = ids.difference(&produced.valid_ids).collect();
    assert!(foreign.is_empty(), "ids never produced: {foreign:?}");
    ids
}

/// The group's committed offset of each partition of `topic`, and the partitions' ends.
async fn committed_and_ends(brokers: &str, group: &str, topic: &str) -> (Vec<i64>, Vec<i64>) {
    let (brokers, group, topic) = (brokers.to_owned(), group.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let mut list = TopicPartitionList::new();
        let mut ends = Vec::new();
        for partition in 0..INPUT_PARTITIONS {
            list.add_partition(&topic, partition);
            let (_, end) = consumer
                .fetch_watermarks(&topic, partition, Duration::from_secs(10))
                .unwrap();
            ends.push(end);
        }
        let committed = consumer
            .committed_offsets(list, Duration::from_secs(10))
            .unwrap()
            .elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(o) => o,
                _ => -1,
            })
            .collect();
        (committed, ends)
    })
    .await
    .unwrap()
}

fn add_source(config: &Path, topic: &str, group: &str) {
    let mut text = std::fs::read_to_string(config).unwrap();
    text.push_str(&format!(
        r#"
[[sources]]
kind = "kafka"
name = "orders-in"
topics = ["{topic}"]
group_id = "{group}"
stream = "{STREAM}"
id_field = "event_id"
ts_field = "time"
ts_format = "epoch_ms"
key_field = "user"
batch_size = 40
"#
    ));
    std::fs::write(config, text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_source_reads_once_and_survives_kill9() {
    let brokers = service("TRIBUTARY_KAFKA_BROKERS");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("tributary.log");
    let config = distributed_config(dir.path()).await;
    let run = uuid::Uuid::now_v7().simple().to_string();
    let input = format!("e2e-source-{run}");
    let group = format!("e2e-source-group-{run}");
    let stream_topic = format!("{}{STREAM}", config.topic_prefix);
    create_topic(&brokers, &input).await;
    add_source(&config.path, &input, &group);

    let mut produced = Produced::default();
    produce(&brokers, &input, 0..300, &mut produced).await;
    let node = Node::start(&config.path, &[], &log).await;
    wait_for_stream(&node, &brokers, &stream_topic, &produced).await;
    check_dead_letters(&node, &input, &produced).await;
    wait_for_commits(&node, &brokers, &group, &input).await;
    let ready = node.get("/readyz").await;
    assert_eq!(ready["sources"]["orders-in"], "running", "{ready}");
    node.kill9();

    // Killed while reading: restarted, it goes on from its committed offsets.
    let (first_commits, _) = committed_and_ends(&brokers, &group, &input).await;
    produce(&brokers, &input, 300..6300, &mut produced).await;
    let node = Node::start(&config.path, &[], &log).await;
    let at_kill = node
        .eventually(async || {
            let (committed, ends) = committed_and_ends(&brokers, &group, &input).await;
            if committed != first_commits {
                Ok((committed, ends))
            } else {
                Err("nothing committed yet".to_owned())
            }
        })
        .await;
    node.kill9();
    eprintln!(
        "killed with committed offsets {:?} of {:?}",
        at_kill.0, at_kill.1
    );
    assert_ne!(
        at_kill.0, at_kill.1,
        "killed after the source had read everything"
    );

    let node = Node::start(&config.path, &[], &log).await;
    wait_for_stream(&node, &brokers, &stream_topic, &produced).await;
    check_dead_letters(&node, &input, &produced).await;
    wait_for_commits(&node, &brokers, &group, &input).await;
}
