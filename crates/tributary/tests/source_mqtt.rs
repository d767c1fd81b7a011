//! The MQTT source (`[[sources]] kind = "mqtt"`) end to end: JSON payloads published at
//! QoS 1 to the real Mosquitto (started by `scripts/services.sh`) are read by
//! `tributary run` into a stream (on the real Kafka), the invalid ones kept as dead letters
//! with their topic. Killed with SIGKILL while messages are between the broker and the log,
//! and restarted, the broker delivers what was not acknowledged again to the persistent
//! session: every message ends up in the stream, once per id.

#![allow(clippy::unwrap_used)] // Test helpers outside #[test] functions unwrap too.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use common::distributed::{distributed_config, events_in_topic, service};
use common::{Node, PARTITIONS, STREAM, T0};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use serde_json::json;
use sha2::{Digest, Sha256};

/// The messages of the first phase; every 11th of them is invalid.
const FIRST: u32 = 200;
/// The messages published while the node runs, before it is killed (all valid).
const SECOND: u32 = 6000;

/// What was published: the ids the stream must hold, and the invalid payloads.
#[derive(Debug, Default)]
struct Published {
    valid_ids: BTreeSet<String>,
    invalid: BTreeSet<String>,
}

/// The broker's host and port, from `TRIBUTARY_MQTT_URL` (`mqtt://host:port`).
fn broker() -> (String, u16) {
    let url = service("TRIBUTARY_MQTT_URL");
    let (host, port) = url
        .strip_prefix("mqtt://")
        .and_then(|rest| rest.rsplit_once(':'))
        .unwrap_or_else(|| panic!("TRIBUTARY_MQTT_URL is not mqtt://host:port: {url}"));
    (host.to_owned(), port.parse().unwrap())
}

/// A client of the broker as `client_id` (it connects when its event loop is polled).
fn connect(client_id: &str, clean_session: bool) -> (AsyncClient, rumqttc::EventLoop) {
    let (host, port) = broker();
    let mut options = MqttOptions::new(client_id, host, port);
    options.set_clean_session(clean_session);
    AsyncClient::new(options, 1000)
}

/// Polls `events` until `done` says so; panics on a connection error or after 60 s.
async fn drive(events: &mut rumqttc::EventLoop, mut done: impl FnMut(&Event) -> bool) {
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let event = events
                .poll()
                .await
                .unwrap_or_else(|e| panic!("MQTT broker {:?}: {e}", broker()));
            if done(&event) {
                return;
            }
        }
    })
    .await
    .expect("the MQTT broker answers within 60 s");
}

/// Creates the source's persistent session (subscribed at QoS 1), so the broker keeps
/// what is published before the node first connects.
async fn create_session(client_id: &str, filter: &str) {
    let (client, mut events) = connect(client_id, false);
    client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    drive(&mut events, |e| {
        matches!(e, Event::Incoming(Packet::SubAck(_)))
    })
    .await;
    client.disconnect().await.unwrap();
    drive(&mut events, |e| {
        matches!(e, Event::Outgoing(Outgoing::Disconnect))
    })
    .await;
}

/// Removes the source's session from the broker (a clean session under its client id).
async fn remove_session(client_id: &str) {
    let (client, mut events) = connect(client_id, true);
    drive(&mut events, |e| {
        matches!(e, Event::Incoming(Packet::ConnAck(_)))
    })
    .await;
    client.disconnect().await.unwrap();
    drive(&mut events, |e| {
        matches!(e, Event::Outgoing(Outgoing::Disconnect))
    })
    .await;
}

/// The id the source derives for a payload without one.
fn derived_id(topic: &str, payload: &str) -> String {
    let digest: String = Sha256::digest(payload.as_bytes())[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("mqtt:{topic}:{digest}")
}

/// Publishes payloads `range` to `topic` at QoS 1 and returns once the broker acknowledged
/// each: every 7th without an id, every 11th below [`FIRST`] invalid (malformed JSON, or
/// a `time` that is no epoch).
async fn publish(topic: &str, range: std::ops::Range<u32>, published: &mut Published) {
    let run = uuid::Uuid::now_v7().simple().to_string();
    let (client, mut events) = connect(&format!("e2e-publisher-{run}"), true);
    let n = range.len();
    let sender = tokio::spawn({
        let topic = topic.to_owned();
        let client = client.clone();
        let payloads: Vec<String> = range.clone().map(payload).collect();
        async move {
            for p in payloads {
                client
                    .publish(&topic, QoS::AtLeastOnce, false, p)
                    .await
                    .unwrap();
            }
        }
    });
    let mut acked = 0;
    drive(&mut events, |e| {
        acked += usize::from(matches!(e, Event::Incoming(Packet::PubAck(_))));
        acked == n
    })
    .await;
    sender.await.unwrap();
    client.disconnect().await.unwrap();
    drive(&mut events, |e| {
        matches!(e, Event::Outgoing(Outgoing::Disconnect))
    })
    .await;
    for i in range {
        let p = payload(i);
        if i < FIRST && i % 11 == 0 {
            published.invalid.insert(p);
        } else if i % 7 == 0 {
            published.valid_ids.insert(derived_id(topic, &p));
        } else {
            published.valid_ids.insert(format!("ev-{i}"));
        }
    }
}

/// The payload of message `i` (see [`publish`]).
fn payload(i: u32) -> String {
    let time = T0 + i64::from(i);
    let user = format!("u{}", i % 5);
    if i < FIRST && i.is_multiple_of(11) {
        if i.is_multiple_of(2) {
            "{\"event_id\": \"broken".to_owned()
        } else {
            json!({"event_id": format!("ev-{i}"), "time": "yesterday"}).to_string()
        }
    } else if i.is_multiple_of(7) {
        json!({"time": time, "user": user, "payload": {"n": i}}).to_string()
    } else {
        json!({"event_id": format!("ev-{i}"), "time": time, "user": user, "payload": {"n": i}})
            .to_string()
    }
}

/// How many times each id is in the stream's topic.
async fn stream_ids(brokers: &str, topic: &str) -> BTreeMap<String, usize> {
    let mut ids = BTreeMap::new();
    for event in events_in_topic(brokers, topic, PARTITIONS).await {
        *ids.entry(event["id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    ids
}

/// Waits until the stream holds exactly the valid messages published (each id at least
/// once); fails on an id never published. Returns how many times each id is there.
async fn wait_for_stream(
    node: &Node,
    brokers: &str,
    topic: &str,
    published: &Published,
) -> BTreeMap<String, usize> {
    node.eventually(async || {
        let ids = stream_ids(brokers, topic).await;
        let distinct: BTreeSet<String> = ids.keys().cloned().collect();
        let foreign: Vec<_> = distinct.difference(&published.valid_ids).collect();
        assert!(foreign.is_empty(), "ids never published: {foreign:?}");
        if distinct == published.valid_ids {
            Ok(ids)
        } else {
            Err(format!(
                "{} of {} in the stream",
                distinct.len(),
                published.valid_ids.len()
            ))
        }
    })
    .await
}

/// The records in `topic`: the sum of its partitions' high watermarks.
async fn records_in(brokers: &str, topic: &str) -> i64 {
    let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .create()
            .unwrap();
        (0..i32::try_from(PARTITIONS).unwrap())
            .map(|p| {
                consumer
                    .fetch_watermarks(&topic, p, Duration::from_secs(10))
                    .unwrap()
                    .1
            })
            .sum()
    })
    .await
    .unwrap()
}

/// Checks the dead letters: one per invalid payload, with the topic as origin.
async fn check_dead_letters(node: &Node, topic: &str, published: &Published) {
    let letters = node.wait_for_dead_letters(published.invalid.len()).await;
    let raws: BTreeSet<String> = letters
        .iter()
        .map(|l| {
            assert_eq!(l["origin"], json!({"kind": "mqtt", "topic": topic}), "{l}");
            assert_eq!(l["stream"], STREAM);
            assert!(l["id"].as_str().unwrap().starts_with("mqtt:"), "{l}");
            assert!(!l["reason"].as_str().unwrap().is_empty());
            l["raw"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(raws, published.invalid);
}

fn add_source(config: &Path, url: &str, filter: &str, client_id: &str) {
    let mut text = std::fs::read_to_string(config).unwrap();
    text.push_str(&format!(
        r#"
[[sources]]
kind = "mqtt"
name = "sensors-in"
url = "{url}"
topics = ["{filter}"]
client_id = "{client_id}"
stream = "{STREAM}"
id_field = "event_id"
ts_field = "time"
ts_format = "epoch_ms"
key_field = "user"
batch_size = 20
"#
    ));
    std::fs::write(config, text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_source_redelivers_what_a_killed_node_did_not_store() {
    let brokers = service("TRIBUTARY_KAFKA_BROKERS");
    let url = service("TRIBUTARY_MQTT_URL");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("tributary.log");
    let config = distributed_config(dir.path()).await;
    let run = uuid::Uuid::now_v7().simple().to_string();
    let topic = format!("e2e/{run}/sensor-1");
    let client_id = format!("e2e-source-{run}");
    let stream_topic = format!("{}{STREAM}", config.topic_prefix);
    add_source(&config.path, &url, &format!("e2e/{run}/+"), &client_id);

    // Published before the node ever ran: kept by the broker for the session.
    create_session(&client_id, &format!("e2e/{run}/+")).await;
    let mut published = Published::default();
    publish(&topic, 0..FIRST, &mut published).await;
    let node = Node::start(&config.path, &[], &log).await;
    let first = wait_for_stream(&node, &brokers, &stream_topic, &published).await;
    check_dead_letters(&node, &topic, &published).await;
    let ready = node.get("/readyz").await;
    assert_eq!(ready["sources"]["sensors-in"], "running", "{ready}");
    let before: i64 = first.values().sum::<usize>().try_into().unwrap();

    // Published while the node runs; killed once the first of them are in the stream.
    publish(&topic, FIRST..FIRST + SECOND, &mut published).await;
    node.eventually(async || {
        let records = records_in(&brokers, &stream_topic).await;
        if records > before {
            Ok(())
        } else {
            Err(format!("{records} records, none new"))
        }
    })
    .await;
    node.kill9();
    let at_kill: BTreeSet<String> = stream_ids(&brokers, &stream_topic)
        .await
        .into_keys()
        .collect();
    let missing: BTreeSet<&String> = published.valid_ids.difference(&at_kill).collect();
    eprintln!(
        "killed with {} of {} ids in the stream",
        at_kill.len(),
        published.valid_ids.len()
    );
    assert!(
        !missing.is_empty(),
        "killed after the source had stored everything"
    );

    // Restarted: the broker delivers what was not acknowledged again.
    let node = Node::start(&config.path, &[], &log).await;
    let last = wait_for_stream(&node, &brokers, &stream_topic, &published).await;
    assert!(missing.iter().all(|id| last.contains_key(*id)));
    check_dead_letters(&node, &topic, &published).await;
    let duplicates: usize = last.values().map(|n| n - 1).sum();
    eprintln!(
        "{} messages were missing at the kill; {duplicates} duplicate records after the restart",
        missing.len()
    );
    node.terminate();
    remove_session(&client_id).await;
}
