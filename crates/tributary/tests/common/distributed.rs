//! Configs for the distributed mode: the real Kafka, PostgreSQL, FerretDB (MongoDB
//! protocol) and Redis, whose addresses come from the environment (`scripts/services.sh
//! up` prints them). Each config gets its own topics, database and key prefix.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde_json::Value;
use sqlx::Connection;

use super::TOPOLOGY;

/// The value of the environment variable `var`, which `scripts/services.sh up` exports.
pub fn service(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: start the services with `eval \"$(scripts/services.sh up)\"`")
    })
}

/// A config written by [`distributed_config`].
#[derive(Debug)]
pub struct Distributed {
    /// The config file.
    pub path: PathBuf,
    /// The prefix of its topics: stream `s` is in topic `{topic_prefix}s`.
    pub topic_prefix: String,
}

/// Writes a config for fresh, isolated resources on the real services, with [`TOPOLOGY`].
pub async fn distributed_config(dir: &Path) -> Distributed {
    let run = uuid::Uuid::now_v7().simple().to_string();
    let postgres = service("TRIBUTARY_POSTGRES_URL");
    let mut admin = sqlx::PgConnection::connect(&postgres)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {postgres} is unreachable: {e}"));
    let database = format!("e2e_{run}");
    sqlx::query(&format!("CREATE DATABASE {database}"))
        .execute(&mut admin)
        .await
        .unwrap();
    let base = postgres.rsplit_once('/').unwrap().0;
    let topic_prefix = format!("e2e-{run}.");
    let config = format!(
        r#"
[log]
type = "kafka"
brokers = "{brokers}"
topic_prefix = "{topic_prefix}"

[analytics]
type = "postgres"
url = "{base}/{database}"

[documents]
type = "mongodb"
url = "{mongo}"
database = "e2e_{run}"

[cache]
type = "redis"
url = "{redis}"
key_prefix = "e2e-{run}:"
{TOPOLOGY}"#,
        brokers = service("TRIBUTARY_KAFKA_BROKERS"),
        mongo = service("TRIBUTARY_MONGODB_URL"),
        redis = service("TRIBUTARY_REDIS_URL"),
    );
    let path = dir.join("tributary.toml");
    std::fs::write(&path, config).unwrap();
    Distributed { path, topic_prefix }
}

/// The id of every event in `topic` (of `partitions` partitions) on the Kafka cluster at
/// `brokers`, once per record, read from the beginning to the end.
pub async fn ids_in_topic(brokers: &str, topic: &str, partitions: u32) -> Vec<String> {
    events_in_topic(brokers, topic, partitions)
        .await
        .iter()
        .map(|event| event["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Every event in `topic` (of `partitions` partitions) on the Kafka cluster at `brokers`,
/// once per record, in partition order, read from the beginning to the end.
pub async fn events_in_topic(brokers: &str, topic: &str, partitions: u32) -> Vec<Value> {
    let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", "e2e-topic-reader")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let partitions = i32::try_from(partitions).unwrap();
        let mut assignment = TopicPartitionList::new();
        let mut ends = Vec::new();
        for partition in 0..partitions {
            let (_, end) = consumer
                .fetch_watermarks(&topic, partition, Duration::from_secs(10))
                .unwrap();
            ends.push(end);
            assignment
                .add_partition_offset(&topic, partition, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&assignment).unwrap();
        let mut next = vec![0; ends.len()];
        let mut events = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        while next.iter().zip(&ends).any(|(n, end)| n < end) {
            assert!(
                Instant::now() < deadline,
                "{topic}: read {next:?} of {ends:?}"
            );
            let Some(message) = consumer.poll(Duration::from_millis(500)) else {
                continue;
            };
            let message = message.unwrap();
            events.push(serde_json::from_slice(message.payload().unwrap()).unwrap());
            next[usize::try_from(message.partition()).unwrap()] = message.offset() + 1;
        }
        events
    })
    .await
    .unwrap()
}
