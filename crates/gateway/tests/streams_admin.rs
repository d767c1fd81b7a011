//! Streams as objects through the admin API, on the embedded adapters (redb log, SQLite
//! stream store): create, describe, list, change and delete; the checks of each; and a
//! stream's JSON Schema applied at ingestion, with the violation's path in the 422 and in
//! the dead letter. (`tributary`'s `streams_api` test runs the same routes on Kafka and
//! PostgreSQL.)

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, StatusCode, header};
use serde_json::{Value, json};
use tributary_connectors::streams::{EmbeddedTopics, SqlStreamStore};
use tributary_core::ports::Log as _;
use tributary_gateway::StreamCatalog;
use tributary_gateway::catalog::CatalogStore;

use common::{Harness, authed, body_json, dead_letters, harness, problem, stream};

async fn send(h: &Harness, method: Method, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
    let request = authed(method, uri);
    let request = match body {
        Some(body) => request
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string())),
        None => request.body(Body::empty()),
    };
    let response = h.send(request.unwrap()).await;
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (status, body)
}

fn sensor_schema() -> Value {
    json!({
        "type": "object",
        "required": ["temperature"],
        "properties": {
            "temperature": {"type": "number"},
            "room": {"type": "string", "maxLength": 20}
        }
    })
}

#[tokio::test]
async fn streams_are_created_described_listed_changed_and_deleted() {
    let h = harness().await;
    let created = h
        .send(
            authed(Method::POST, "/v1/streams")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(
                    json!({"name": "sensors", "partitions": 2, "description": "Température ☀",
                           "schema": sensor_schema()})
                    .to_string(),
                ))
                .unwrap(),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(created.headers()[header::LOCATION], "/v1/streams/sensors");
    let body = body_json(created).await;
    assert_eq!(body["name"], "sensors");
    assert_eq!(body["partitions"], 2);
    assert_eq!(body["origin"], "api");
    assert_eq!(body["description"], "Température ☀");
    assert_eq!(body["schema"], sensor_schema());
    assert_eq!(body["replication_factor"], Value::Null);
    assert!(body["created_at"].is_string(), "{body}");
    // The log has it with its partitions.
    assert_eq!(h.log.partitions(&stream("sensors")).await.unwrap(), 2);

    let (status, described) = send(&h, Method::GET, "/v1/streams/sensors", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(described, body);
    let (_, listed) = send(&h, Method::GET, "/v1/streams", None).await;
    let names: Vec<&str> = listed["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["orders", "sensors", "t"]);

    // A merge patch: the description cleared, the schema replaced; the rest kept.
    let (status, changed) = send(
        &h,
        Method::PATCH,
        "/v1/streams/sensors",
        Some(json!({"description": null, "schema": {"type": "object", "maxProperties": 1}})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["description"], Value::Null);
    assert_eq!(changed["schema"]["maxProperties"], 1);
    assert_eq!(changed["partitions"], 2);
    assert_eq!(changed["created_at"], body["created_at"]);

    let (status, _) = send(&h, Method::DELETE, "/v1/streams/sensors", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = send(&h, Method::GET, "/v1/streams/sensors", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let gone = h
        .post(
            "/v1/streams/sensors/events",
            "application/json",
            r#"{"payload": {"temperature": 1}}"#,
        )
        .await;
    problem(gone, StatusCode::NOT_FOUND).await;
    let (status, _) = send(&h, Method::DELETE, "/v1/streams/sensors", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn definitions_are_checked() {
    let h = harness().await;
    let create = |body: Value| {
        let h = &h;
        async move { send(h, Method::POST, "/v1/streams", Some(body)).await }
    };
    for (body, status, type_suffix, says) in [
        (
            json!({"name": "t"}),
            StatusCode::CONFLICT,
            "stream-conflict",
            "exists",
        ),
        (
            json!({"name": "Bad Name"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-stream",
            "name",
        ),
        (
            json!({"name": "zero", "partitions": 0}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-stream",
            "partitions",
        ),
        (
            json!({"name": "huge", "partitions": 100_000}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-stream",
            "partitions",
        ),
        (
            json!({"name": "bad-schema", "schema": {"type": "invalid_type"}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-stream",
            "schema",
        ),
        (
            json!({"name": "remote", "schema": {"$ref": "https://example.com/s.json"}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-stream",
            "schema",
        ),
        // The embedded log keeps every record and one copy of each.
        (
            json!({"name": "kept", "retention_ms": 1000}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-stream",
            "retention_ms",
        ),
        (
            json!({"name": "copies", "replication_factor": 3}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-stream",
            "replication_factor",
        ),
        (
            json!({"name": "extra", "colour": "red"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
            "colour",
        ),
    ] {
        let (got, problem) = create(body.clone()).await;
        assert_eq!(got, status, "{body}: {problem}");
        assert_eq!(
            problem["type"],
            format!("urn:tributary:problem:{type_suffix}"),
            "{body}: {problem}"
        );
        assert!(
            problem["detail"].as_str().unwrap().contains(says),
            "{body}: {problem}"
        );
    }
    // A key given twice is refused as at the ingestion edge.
    let response = h
        .send(
            authed(Method::POST, "/v1/streams")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(r#"{"name": "a", "name": "b"}"#))
                .unwrap(),
        )
        .await;
    let body = problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(body["key"], "name");
    // Nothing of the refused ones was created.
    let (_, listed) = send(&h, Method::GET, "/v1/streams", None).await;
    assert_eq!(listed["streams"].as_array().unwrap().len(), 2, "{listed}");
}

#[tokio::test]
async fn what_the_config_file_defines_and_pipelines_read_is_kept() {
    let h = harness().await;
    // `t` is the config file's, and pipeline clicks-per-minute reads it.
    let (status, body) = send(&h, Method::DELETE, "/v1/streams/t", None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        body["detail"].as_str().unwrap().contains("config file"),
        "{body}"
    );
    for patch in [json!({"partitions": 5}), json!({"description": "other"})] {
        let (status, body) = send(&h, Method::PATCH, "/v1/streams/t", Some(patch)).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
    }
    // Its schema can be set through the API, and applies at once.
    let (status, body) = send(
        &h,
        Method::PATCH,
        "/v1/streams/t",
        Some(json!({"schema": sensor_schema()})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["origin"], "config");
    let refused = h
        .post(
            "/v1/streams/t/events",
            "application/json",
            r#"{"payload": {"temperature": "warm"}}"#,
        )
        .await;
    problem(refused, StatusCode::UNPROCESSABLE_ENTITY).await;
    // Partitions of an API stream only grow, and the embedded log cannot add any.
    let (status, _) = send(
        &h,
        Method::POST,
        "/v1/streams",
        Some(json!({"name": "two", "partitions": 2})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    for partitions in [1, 4] {
        let (status, body) = send(
            &h,
            Method::PATCH,
            "/v1/streams/two",
            Some(json!({"partitions": partitions})),
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
    }
    // Only admins change streams; any reader describes them.
    use tributary_core::ports::Scope;
    use tributary_gateway::required_scope;
    for (method, path, scope) in [
        (Method::POST, "/v1/streams", Scope::Admin),
        (Method::PATCH, "/v1/streams/{stream}", Scope::Admin),
        (Method::DELETE, "/v1/streams/{stream}", Scope::Admin),
        (Method::GET, "/v1/streams/{stream}", Scope::Read),
        (Method::GET, "/v1/streams", Scope::Read),
        (Method::POST, "/v1/streams/{stream}/events", Scope::Ingest),
    ] {
        assert_eq!(required_scope(&method, path), scope, "{method} {path}");
    }
}

#[tokio::test]
async fn events_are_checked_against_their_streams_schema() {
    let h = harness().await;
    let (status, _) = send(
        &h,
        Method::POST,
        "/v1/streams",
        Some(json!({"name": "sensors", "partitions": 1, "schema": sensor_schema()})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let accepted = h
        .post(
            "/v1/streams/sensors/events",
            "application/x-ndjson",
            "{\"payload\": {\"temperature\": 21.5, \"room\": \"Küche 🍳\"}}\n",
        )
        .await;
    assert_eq!(accepted.status(), StatusCode::ACCEPTED);

    // All or nothing: the valid first event is not appended either.
    let body = "{\"id\": \"ok\", \"payload\": {\"temperature\": 20}}\n\
                {\"id\": \"bad\", \"payload\": {\"temperature\": \"abc\", \"room\": \"a very long room name indeed\"}}\n\
                {\"id\": \"missing\", \"payload\": {}}\n";
    let refused = h
        .post("/v1/streams/sensors/events", "application/x-ndjson", body)
        .await;
    let problem = problem(refused, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(problem["invalid_events"], 2, "{problem}");
    let errors = problem["errors"].as_array().unwrap();
    let listed: Vec<(i64, &str, &str)> = errors
        .iter()
        .map(|e| {
            (
                e["index"].as_i64().unwrap(),
                e["field"].as_str().unwrap(),
                e["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(listed.len(), 3, "{problem}");
    assert!(listed.iter().all(|(_, field, _)| *field == "payload"));
    assert!(
        listed.iter().any(|(i, _, r)| *i == 1
            && r.starts_with("/payload/temperature: \"abc\" is not of type \"number\"")),
        "{problem}"
    );
    assert!(
        listed
            .iter()
            .any(|(i, _, r)| *i == 1 && r.starts_with("/payload/room: ")),
        "{problem}"
    );
    assert!(
        listed
            .iter()
            .any(|(i, _, r)| *i == 2 && r.starts_with("/payload: ") && r.contains("temperature")),
        "{problem}"
    );
    let in_log = h.events_in_log("sensors", 1, 1).await;
    assert_eq!(in_log.len(), 1, "only the first request's event");
    // The refused request is kept with the reasons.
    let letters = dead_letters(&h).await;
    let letter = letters
        .iter()
        .find(|l| l.stream == "sensors")
        .expect("a dead letter of the refused request");
    assert!(
        letter.reason.contains("/payload/temperature"),
        "{}",
        letter.reason
    );

    // Cleared: any payload again.
    let (status, _) = send(
        &h,
        Method::PATCH,
        "/v1/streams/sensors",
        Some(json!({"schema": null})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let accepted = h
        .post("/v1/streams/sensors/events", "application/x-ndjson", body)
        .await;
    assert_eq!(accepted.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn another_node_sees_a_change_at_its_next_refresh() {
    let h = harness().await;
    // A second node's catalog over the same store and log.
    let other = StreamCatalog::load(CatalogStore {
        store: Arc::new(SqlStreamStore::new(&h.store)),
        topics: Arc::new(EmbeddedTopics::new(h.log.clone())),
    })
    .await
    .unwrap();
    assert!(other.get(&stream("late")).is_none());
    // A refresh that finds nothing new makes no new snapshot for followers.
    let mut changes = other.subscribe();
    other.refresh().await.unwrap();
    assert!(!changes.has_changed().unwrap());
    let (status, _) = send(
        &h,
        Method::POST,
        "/v1/streams",
        Some(json!({"name": "late", "schema": sensor_schema()})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(other.get(&stream("late")).is_none());
    other.refresh().await.unwrap();
    assert!(changes.has_changed().unwrap());
    assert!(changes.borrow_and_update().contains_key(&stream("late")));
    let entry = other.get(&stream("late")).unwrap();
    assert_eq!(entry.info.partitions, 3);
    let schema = entry.schema.as_ref().expect("its schema, compiled");
    assert!(!schema.check(&json!({"temperature": "x"})).is_empty());
    let (status, _) = send(&h, Method::DELETE, "/v1/streams/late", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    other.refresh().await.unwrap();
    assert!(other.get(&stream("late")).is_none());
}
