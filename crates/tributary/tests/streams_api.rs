//! Streams as objects on the real services, through the real binary: a stream created
//! through the admin API of one node gets its Kafka topic (partitions, `retention.ms`), is
//! known by a second node (an ingest node) within the catalog's refresh, checks events
//! against its JSON Schema there, is archived by the first node's processor without a
//! restart, grows its partitions, and is deleted with its topic. A second tenant creates a
//! stream of the same name: its own, with a topic of its own (the name and the tenant's
//! tag), whose events only it lists. (Kafka, PostgreSQL, FerretDB and Redis from
//! `scripts/services.sh`.)

#![allow(clippy::unwrap_used)] // Test helpers outside #[test] functions unwrap too.

mod common;

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use tributary_core::StreamName;
use tributary_gateway::catalog::stream_id;

use common::distributed::{distributed_config, events_in_topic, service};
use common::{KEY, Node};

/// The tenant that shares a stream's name with the default tenant.
const BETA: &str = "beta";

async fn call(node: &Node, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    node.call(method, path, KEY, body).await
}

/// An admin key of `tenant`, issued as the operator does: `tributary keys create`.
fn issue_key(config: &std::path::Path, tenant: &str) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tributary"))
        .args(common::args(
            "keys",
            config,
            &["create", "--tenant", tenant, "--scope", "admin"],
        ))
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// Waits until `bearer` lists exactly the events `expected` (ids) in `stream`, each shown
/// under that name.
async fn wait_for_listed(node: &Node, bearer: &str, stream: &str, expected: &[&str]) {
    let path = format!("/v1/streams/{stream}/events");
    node.eventually(async || {
        let (status, page) = node.call(Method::GET, &path, bearer, None).await;
        let events = page["events"].as_array().cloned().unwrap_or_default();
        let mut ids: Vec<&str> = events.iter().filter_map(|e| e["id"].as_str()).collect();
        ids.sort_unstable();
        let named = events.iter().all(|e| e["stream"] == stream);
        if status == StatusCode::OK && ids == expected && named {
            Ok(())
        } else {
            Err(format!("{status}: {page}"))
        }
    })
    .await;
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

/// Waits until `topic` no longer exists.
async fn wait_for_deleted(node: &Node, admin: &AdminClient<DefaultClientContext>, topic: &str) {
    node.eventually(async || match describe(admin, topic).await {
        None => Ok(()),
        Some(found) => Err(format!("{topic} still exists: {found:?}")),
    })
    .await;
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
    wait_for_listed(&one, KEY, "metrics", &["m-2", "m-4"]).await;

    // Another tenant's `metrics`: created (no conflict), without the default tenant's
    // schema, in a topic named by its identity; its events may name it `metrics`.
    let beta = issue_key(&config.path, BETA);
    let (status, created) = one
        .call(
            Method::POST,
            "/v1/streams",
            &beta,
            Some(json!({"name": "metrics", "partitions": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["name"], "metrics");
    let beta_id = stream_id(BETA, &StreamName::new("metrics").unwrap()).unwrap();
    assert!(beta_id.as_str().starts_with("metrics__"), "{beta_id}");
    let beta_topic = format!("{}{beta_id}", config.topic_prefix);
    assert_eq!(describe(&admin, &beta_topic).await.map(|(p, _)| p), Some(1));
    let (status, accepted) = one
        .call(
            Method::POST,
            "/v1/streams/metrics/events",
            &beta,
            Some(json!({"id": "b-1", "stream": "metrics", "payload": {"cpu": "n/a"}})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let in_topic = events_in_topic(&brokers, &beta_topic, 1).await;
    let found: Vec<(&Value, &Value)> = in_topic.iter().map(|e| (&e["id"], &e["stream"])).collect();
    assert_eq!(found, [(&json!("b-1"), &json!(beta_id))]);
    assert_eq!(events_in_topic(&brokers, &topic, 2).await.len(), 2);
    wait_for_listed(&one, &beta, "metrics", &["b-1"]).await;
    wait_for_listed(&one, KEY, "metrics", &["m-2", "m-4"]).await;

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
    wait_for_deleted(&one, &admin, &topic).await;
    // The other tenant's `metrics` is its own: still there, until it deletes it.
    assert!(describe(&admin, &beta_topic).await.is_some());
    let (status, shown) = one
        .call(Method::GET, "/v1/streams/metrics", &beta, None)
        .await;
    assert_eq!(
        (status, &shown["name"]),
        (StatusCode::OK, &json!("metrics"))
    );
    let (status, _) = one
        .call(Method::DELETE, "/v1/streams/metrics", &beta, None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    wait_for_deleted(&one, &admin, &beta_topic).await;
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
