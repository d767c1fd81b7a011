//! Streams as objects on the real services, through the real binary: a stream created
//! through the admin API of one node gets its Kafka topic (partitions, `retention.ms`), is
//! known by a second node (an ingest node) within the catalog's refresh, checks events
//! against its JSON Schema there, is archived by the first node's processor without a
//! restart, grows its partitions, and is deleted with its topic. (Kafka, PostgreSQL,
//! FerretDB and Redis from `scripts/services.sh`.)

#![allow(clippy::unwrap_used)] // Test helpers outside #[test] functions unwrap too.

mod common;

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use common::distributed::{distributed_config, events_in_topic, service};
use common::{KEY, Node};

async fn call(node: &Node, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    node.call(method, path, KEY, body).await
}

/// The topic's partition count and `retention.ms`; `None` when it does not exist.
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

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_created_on_one_node_is_served_by_another_with_its_schema() {
    let dir = tempfile::tempdir().unwrap();
    let config = distributed_config(dir.path()).await;
    let brokers = service("TRIBUTARY_KAFKA_BROKERS");
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    let one = Node::start(&config.path, &[], &dir.path().join("one.log")).await;
    let two = Node::start_roles(&config.path, "ingest", &[], &dir.path().join("two.log")).await;
    let topic = format!("{}metrics", config.topic_prefix);

    // More replicas than the one broker: the broker's refusal, and nothing created.
    let (status, problem) = call(
        &one,
        Method::POST,
        "/v1/streams",
        Some(json!({"name": "metrics", "replication_factor": 3})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("Kafka refused"),
        "{problem}"
    );
    let (status, _) = call(&one, Method::GET, "/v1/streams/metrics", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let schema = json!({
        "type": "object",
        "required": ["cpu"],
        "properties": {"cpu": {"type": "number", "minimum": 0, "maximum": 100}}
    });
    let (status, created) = call(
        &one,
        Method::POST,
        "/v1/streams",
        Some(
            json!({"name": "metrics", "partitions": 2, "retention_ms": 3_600_000,
                    "schema": schema, "description": "host metrics"}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["replication_factor"], 1);
    assert_eq!(
        describe(&admin, &topic).await,
        Some((2, "3600000".to_owned()))
    );

    // The other node serves it once its catalog refreshed (every 2 s), schema included.
    two.eventually(async || {
        let (status, body) = call(
            &two,
            Method::POST,
            "/v1/streams/metrics/events",
            Some(json!({"id": "m-1", "key": "host-a", "payload": {"cpu": 250}})),
        )
        .await;
        match status {
            StatusCode::UNPROCESSABLE_ENTITY => Ok(body),
            other => Err(format!("{other}: {body}")),
        }
    })
    .await;
    let (status, refused) = call(
        &two,
        Method::POST,
        "/v1/streams/metrics/events",
        Some(json!([{"id": "m-2", "payload": {"cpu": 12.5}},
                    {"id": "m-3", "payload": {"cpu": "high"}}])),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(refused["errors"][0]["index"], 1, "{refused}");
    assert_eq!(refused["errors"][0]["field"], "payload");
    assert!(
        refused["errors"][0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("/payload/cpu: "),
        "{refused}"
    );
    let (status, accepted) = call(
        &two,
        Method::POST,
        "/v1/streams/metrics/events",
        Some(
            json!([{"id": "m-2", "key": "host-a", "payload": {"cpu": 12.5}},
                    {"id": "m-4", "key": "hôte-b", "payload": {"cpu": 99}}]),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let mut ids: Vec<String> = events_in_topic(&brokers, &topic, 2)
        .await
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    assert_eq!(ids, ["m-2", "m-4"]);

    // The processor archives the new stream from its beginning, without a restart.
    one.eventually(async || {
        let (status, page) = call(&one, Method::GET, "/v1/streams/metrics/events", None).await;
        let mut ids: Vec<&str> = page["events"]
            .as_array()
            .map(|events| events.iter().filter_map(|e| e["id"].as_str()).collect())
            .unwrap_or_default();
        ids.sort_unstable();
        if status == StatusCode::OK && ids == ["m-2", "m-4"] {
            Ok(())
        } else {
            Err(format!("{status}: {page}"))
        }
    })
    .await;

    // Partitions grow and retention changes on the topic.
    let (status, changed) = call(
        &one,
        Method::PATCH,
        "/v1/streams/metrics",
        Some(json!({"partitions": 4, "retention_ms": 7_200_000})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["partitions"], 4);
    assert_eq!(
        describe(&admin, &topic).await,
        Some((4, "7200000".to_owned()))
    );
    let (status, _) = call(
        &one,
        Method::PATCH,
        "/v1/streams/metrics",
        Some(json!({"partitions": 3})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // Deleted with its topic; the other node stops serving it.
    let (status, _) = call(&one, Method::DELETE, "/v1/streams/metrics", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    one.eventually(async || match describe(&admin, &topic).await {
        None => Ok(()),
        Some(found) => Err(format!("{topic} still exists: {found:?}")),
    })
    .await;
    two.eventually(async || {
        let (status, body) = call(
            &two,
            Method::POST,
            "/v1/streams/metrics/events",
            Some(json!({"payload": {"cpu": 1}})),
        )
        .await;
        match status {
            StatusCode::NOT_FOUND => Ok(()),
            other => Err(format!("{other}: {body}")),
        }
    })
    .await;
}
