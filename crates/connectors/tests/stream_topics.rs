//! The `StreamTopics` port on Kafka and on the embedded log: a stream's topic is created with
//! the partitions, replication factor and `retention.ms` asked for (read back through
//! Kafka's admin API), its retention altered, its partitions grown, and it is deleted.
//!
//! Needs `TRIBUTARY_KAFKA_BROKERS` (`eval "$(bash scripts/services.sh env)"`) and fails when
//! it is missing or the cluster is unreachable.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use tributary_connectors::kafka::{KafkaConfig, KafkaLog};
use tributary_connectors::redb::{RedbLog, RedbLogConfig};
use tributary_connectors::streams::{EmbeddedTopics, KafkaTopics};
use tributary_core::StreamName;
use tributary_core::ports::{Log, StreamTopics, TopicError, TopicSpec};

/// The topic's partition count and `retention.ms`, as the cluster describes them; `None`
/// when the topic does not exist.
async fn describe(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
) -> Option<(usize, String)> {
    let metadata = admin
        .inner()
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .unwrap();
    let found = metadata.topics().iter().find(|t| t.name() == topic)?;
    if found.error().is_some() || found.partitions().is_empty() {
        return None;
    }
    let partitions = found.partitions().len();
    let configs = admin
        .describe_configs([&ResourceSpecifier::Topic(topic)], &AdminOptions::new())
        .await
        .unwrap();
    let resource = configs.into_iter().next().unwrap().unwrap();
    let retention = resource.get("retention.ms").unwrap().value.clone().unwrap();
    Some((partitions, retention))
}

#[tokio::test]
async fn kafka_topics_are_created_altered_grown_and_deleted() {
    let brokers = common::service_env("TRIBUTARY_KAFKA_BROKERS");
    let mut config = KafkaConfig::new(&brokers);
    config.topic_prefix = format!("t{}.", uuid::Uuid::now_v7().simple());
    let log: Arc<dyn Log> = Arc::new(KafkaLog::connect(&config).await.unwrap());
    let topics = KafkaTopics::new(&config, log.clone()).unwrap();
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    let name = StreamName::new("orders").unwrap();
    let topic = format!("{}orders", config.topic_prefix);
    let mut spec = TopicSpec {
        name: name.clone(),
        partitions: 2,
        replication_factor: Some(1),
        retention_ms: Some(3_600_000),
    };
    assert_eq!(topics.create(&spec).await.unwrap(), 2);
    assert_eq!(describe(&admin, &topic).await, Some((2, "3600000".into())));
    // Creating again is idempotent.
    assert_eq!(topics.create(&spec).await.unwrap(), 2);

    spec.retention_ms = Some(7_200_000);
    spec.partitions = 4;
    topics.alter(&spec).await.unwrap();
    assert_eq!(describe(&admin, &topic).await, Some((4, "7200000".into())));
    assert_eq!(log.partitions(&name).await.unwrap(), 4);

    // More replicas than brokers: the brokers' reason, as the caller's fault.
    let refused = TopicSpec {
        name: StreamName::new("too-many-replicas").unwrap(),
        partitions: 1,
        replication_factor: Some(7),
        retention_ms: None,
    };
    assert!(matches!(
        topics.create(&refused).await,
        Err(TopicError::Invalid(_))
    ));

    topics.delete(&name).await.unwrap();
    let mut gone = false;
    for _ in 0..50 {
        if describe(&admin, &topic).await.is_none() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "topic {topic} still exists");
    // Deleting a missing topic is not an error.
    topics.delete(&name).await.unwrap();
}

#[tokio::test]
async fn embedded_streams_have_fixed_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn Log> = Arc::new(
        RedbLog::open(&RedbLogConfig {
            path: dir.path().join("log.redb"),
        })
        .unwrap(),
    );
    let topics = EmbeddedTopics::new(log.clone());
    assert!(!topics.capabilities().add_partitions);
    assert_eq!(topics.default_replication_factor(), None);
    let spec = TopicSpec {
        name: StreamName::new("s").unwrap(),
        partitions: 3,
        replication_factor: None,
        retention_ms: None,
    };
    assert_eq!(topics.create(&spec).await.unwrap(), 3);
    // An existing stream keeps its partitions: the actual count is returned.
    let again = TopicSpec {
        partitions: 5,
        ..spec.clone()
    };
    assert_eq!(topics.create(&again).await.unwrap(), 3);
    assert_eq!(log.partitions(&spec.name).await.unwrap(), 3);
}
