//! The gateway's router, called directly with `tower::ServiceExt::oneshot`, over the real
//! embedded adapters (redb log, SQLite store, in-process cache) in a temporary directory.

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};
use tributary_core::dead_letter::{DeadLetter, Origin};
use tributary_core::event::MAX_EVENT_BYTES;
use tributary_core::pipeline::PipelineStatus;
use tributary_core::ports::{Cache, DocumentStore};
use tributary_core::results::ResultRow;
use tributary_core::{Event, Timestamp};
use tributary_gateway::{DEFAULT_MAX_BODY_BYTES, EdgeSettings, Surfaces};

use common::{
    Harness, KEY, PARTITIONS, authed, body_json, body_text, dead_letters, event, harness,
    harness_of, harness_with, ids_of, pipeline, problem,
};

#[tokio::test]
async fn v1_routes_require_a_valid_bearer_key() {
    let h = harness().await;
    let cases = [
        None,
        Some("Bearer wrong-key".to_owned()),
        Some(format!("Basic {KEY}")),
        Some(format!("Bearer {KEY}x")),
    ];
    for authorization in cases {
        for (method, uri) in [
            (Method::GET, "/v1/streams"),
            (Method::POST, "/v1/streams/t/events"),
            (Method::GET, "/v1/pipelines/clicks-per-minute/results"),
        ] {
            let mut request = Request::builder().method(method).uri(uri);
            if let Some(value) = &authorization {
                request = request.header(header::AUTHORIZATION, value);
            }
            let request = request
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(r#"{"payload":{}}"#))
                .unwrap();
            let response = h.send(request).await;
            let challenge = response.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .to_owned();
            assert!(challenge.starts_with("Bearer"), "{challenge}");
            problem(response, StatusCode::UNAUTHORIZED).await;
        }
    }
    assert!(
        h.events_in_log("t", PARTITIONS, 0).await.is_empty(),
        "an unauthenticated post was appended"
    );

    let response = h.get("/v1/streams").await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = body_json(response).await;
    let listed: Vec<Value> = body["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| json!([s["name"], s["partitions"], s["description"], s["origin"]]))
        .collect();
    assert_eq!(
        listed,
        [
            json!(["orders", 1, null, "config"]),
            json!(["t", PARTITIONS, "test", "config"]),
        ]
    );
}

#[tokio::test]
async fn other_content_types_are_415() {
    let h = harness().await;
    for content_type in [
        "text/plain",
        "application/xml",
        "application/json; charset=latin1",
    ] {
        let response = h
            .post("/v1/streams/t/events", content_type, r#"{"payload":{}}"#)
            .await;
        let body = problem(response, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
        assert!(
            body["accepted"]
                .as_array()
                .unwrap()
                .contains(&json!("application/x-ndjson"))
        );
    }
    let request = authed(Method::POST, "/v1/streams/t/events")
        .body(Body::from(r#"{"payload":{}}"#))
        .unwrap();
    problem(h.send(request).await, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    assert!(h.events_in_log("t", PARTITIONS, 0).await.is_empty());
}

#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let h = harness_with(128, None).await;
    let big = json!({"payload": {"text": "x".repeat(200)}}).to_string();
    let body = problem(
        h.post("/v1/streams/t/events", "application/json", big)
            .await,
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;
    assert_eq!(body["limit_bytes"], 128);

    // Also when the body arrives in chunks, without a Content-Length.
    let chunks: Vec<Result<String, std::io::Error>> = (0..10)
        .map(|_| Ok(r#"{"payload":{"a":"aaaaaaaaaaaaaaaa"}}"#.to_owned() + "\n"))
        .collect();
    let stream_body = Body::from_stream(futures::stream::iter(chunks));
    let response = h
        .post("/v1/streams/t/events", "application/x-ndjson", stream_body)
        .await;
    problem(response, StatusCode::PAYLOAD_TOO_LARGE).await;

    // Both are kept, without the body that was not read, with the limit as reason.
    let letters = dead_letters(&h).await;
    assert_eq!(letters.len(), 2, "{letters:?}");
    for letter in &letters {
        assert_eq!(letter.origin, Origin::Ingest { status: 413 });
        assert_eq!((letter.stream.as_str(), letter.raw.as_str()), ("t", ""));
        assert!(letter.reason.contains("128 bytes"), "{letter:?}");
    }

    let small = r#"{"payload":{}}"#;
    assert_eq!(
        h.post("/v1/streams/t/events", "application/json", small)
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(h.events_in_log("t", PARTITIONS, 1).await.len(), 1);
}

#[tokio::test]
async fn malformed_ndjson_is_400_naming_the_line() {
    let h = harness().await;
    let body = "{\"payload\":{}}\n{\"payload\": {\"a\": }}\n{\"payload\":{}}\n";
    let response = h
        .post("/v1/streams/t/events", "application/x-ndjson", body)
        .await;
    let body400 = problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(body400["line"], 2, "{body400}");
    assert!(body400["column"].as_u64().unwrap() > 0);
    assert!(
        body400["detail"].as_str().unwrap().contains("line 2"),
        "{body400}"
    );

    for (content_type, body) in [
        ("application/json", "42"),
        ("application/json", "[]"),
        ("application/jsonl", "\n\n"),
        ("application/json", "{\"payload\":{}"),
    ] {
        let response = h.post("/v1/streams/t/events", content_type, body).await;
        problem(response, StatusCode::BAD_REQUEST).await;
    }
    assert!(h.events_in_log("t", PARTITIONS, 0).await.is_empty());
}

#[tokio::test]
async fn invalid_events_are_422_listing_every_error_and_nothing_is_written() {
    let h = harness().await;
    let body = json!([
        {"id": "ok-0", "payload": {}},
        {"id": 7, "ts": "yesterday", "payload": {}},
        {"id": "ok-2", "payload": {}},
        {"payload": [1, 2]},
        {"id": "ok-4", "payload": {}, "colour": "red"},
    ]);
    let response = h
        .post("/v1/streams/t/events", "application/json", body.to_string())
        .await;
    let body422 = problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    let errors: Vec<(u64, String)> = body422["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert!(e["reason"].as_str().is_some_and(|r| !r.is_empty()), "{e}");
            (
                e["index"].as_u64().unwrap(),
                e["field"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        errors,
        vec![
            (1, "id".into()),
            (1, "ts".into()),
            (3, "payload".into()),
            (4, String::new())
        ]
    );

    // Nothing of the rejected batch is in the log: a later valid batch is all there is.
    let ok = h
        .post(
            "/v1/streams/t/events",
            "application/json",
            r#"{"id":"later","payload":{}}"#,
        )
        .await;
    assert_eq!(ok.status(), StatusCode::ACCEPTED);
    assert_eq!(h.ids_in_log(1).await, vec!["later".to_owned()]);
}

#[tokio::test]
async fn event_times_more_than_an_hour_ahead_are_422() {
    let h = harness().await;
    let now = Timestamp::now().millis();
    let minute = 60_000;
    let body = json!([
        {"id": "soon", "ts": now + 50 * minute, "payload": {}},
        {"id": "wrong-clock", "ts": now + 70 * minute, "payload": {}},
    ]);
    let response = h
        .post("/v1/streams/t/events", "application/json", body.to_string())
        .await;
    let body422 = problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    let errors = body422["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{body422}");
    assert_eq!(
        (&errors[0]["index"], &errors[0]["field"]),
        (&json!(1), &json!("ts"))
    );

    let response = h
        .post(
            "/v1/streams/t/events",
            "application/json",
            body[0].to_string(),
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(h.ids_in_log(1).await, vec!["soon".to_owned()]);
}

#[tokio::test]
async fn unknown_or_invalid_streams_are_404() {
    let h = harness().await;
    for uri in [
        "/v1/streams/nope/events",
        "/v1/streams/Bad.Name/events",
        "/v1/streams/_x/events",
    ] {
        let response = h.post(uri, "application/json", r#"{"payload":{}}"#).await;
        let body = problem(response, StatusCode::NOT_FOUND).await;
        assert_eq!(body["type"], "urn:tributary:problem:unknown-stream");
        problem(h.get(uri).await, StatusCode::NOT_FOUND).await;
    }
    let body = problem(
        h.get("/v1/pipelines/nope/results").await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(body["type"], "urn:tributary:problem:unknown-pipeline");
}

#[tokio::test]
async fn valid_objects_arrays_and_ndjson_are_appended_before_202() {
    let h = harness().await;
    let mut expected = BTreeSet::new();

    let one = json!({"id": "obj-1", "ts": "2026-11-25T18:00:00Z", "key": "a", "payload": {"v": 1}});
    let response = h
        .post(
            "/v1/streams/t/events",
            "application/json; charset=utf-8",
            one.to_string(),
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let body = body_json(response).await;
    assert_eq!(body, json!({"accepted": 1, "ids": ["obj-1"]}));
    expected.insert("obj-1".to_owned());

    let many =
        json!([{"id": "arr-1", "payload": {}}, {"payload": {"v": 2}, "ts": 1_700_000_000_000_i64}]);
    let body = body_json(
        h.post("/v1/streams/t/events", "application/json", many.to_string())
            .await,
    )
    .await;
    assert_eq!(body["accepted"], 2);
    let ids = ids_of(&body);
    assert_eq!(ids[0], "arr-1");
    assert_eq!(ids[1].len(), 36, "a UUIDv7 is generated: {ids:?}");
    expected.extend(ids);

    let nd = "{\"id\":\"nd-1\",\"key\":\"b\",\"payload\":{}}\n\n{\"id\":\"nd-2\",\"payload\":{}}\n";
    for content_type in ["application/x-ndjson", "application/jsonl"] {
        let uri = if content_type == "application/jsonl" {
            "/v1/streams/orders/events"
        } else {
            "/v1/streams/t/events"
        };
        let body = body_json(h.post(uri, content_type, nd).await).await;
        assert_eq!(body, json!({"accepted": 2, "ids": ["nd-1", "nd-2"]}));
    }
    expected.extend(["nd-1".to_owned(), "nd-2".to_owned()]);

    let events = h.events_in_log("t", PARTITIONS, expected.len()).await;
    let found: BTreeSet<String> = events.iter().map(|e| e.id.to_string()).collect();
    assert_eq!(found, expected);
    assert_eq!(events.len(), expected.len());
    let first = events.iter().find(|e| e.id.as_str() == "obj-1").unwrap();
    assert_eq!(first.key.as_deref(), Some("a"));
    assert_eq!(
        first.ts,
        Timestamp::parse_rfc3339("2026-11-25T18:00:00Z").unwrap()
    );
    assert_eq!(first.payload["v"], 1);

    let orders = h.events_in_log("orders", 1, 2).await;
    assert_eq!(orders.len(), 2);
    assert!(orders.iter().all(|e| e.stream.as_str() == "orders"));
}

/// A final result of pipeline `clicks-per-minute`: `count` events of `key` in the minute
/// from `start`.
fn count_row(start: i64, key: &str, count: i64) -> ResultRow {
    common::count_row("clicks-per-minute", start, key, count)
}

/// Commits `rows` as the first checkpoint of pipeline `clicks-per-minute`, at `watermark`.
async fn commit_results(h: &Harness, rows: &[ResultRow], watermark: Timestamp) {
    common::commit_results(h, "clicks-per-minute", "t", rows, watermark).await;
}

#[tokio::test]
async fn results_are_answered_from_memory_for_their_ttl() {
    let settings = EdgeSettings {
        results_cache_ttl: Duration::from_millis(500),
        ..EdgeSettings::default()
    };
    let h = harness_of(DEFAULT_MAX_BODY_BYTES, None, settings).await;
    let uri = "/v1/pipelines/clicks-per-minute/results";
    let read = |uri: String| {
        let h = &h;
        async move {
            let response = h.get(&uri).await;
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
            body_json(response).await["results"]
                .as_array()
                .unwrap()
                .len()
        }
    };
    assert_eq!(read(uri.to_owned()).await, 0);
    let minute = 60_000;
    let row = |key: &str, count: i64| count_row(0, key, count);
    let started = std::time::Instant::now();
    commit_results(&h, &[row("a", 1)], Timestamp::from_millis(minute)).await;
    // The same query within the TTL: the answer read before the commit.
    if started.elapsed() < Duration::from_millis(400) {
        assert_eq!(read(uri.to_owned()).await, 0);
    }
    // Another query reads the store.
    assert_eq!(read(format!("{uri}?limit=5")).await, 1);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(read(uri.to_owned()).await, 1);

    // Without a TTL every query reads the store.
    let settings = EdgeSettings {
        results_cache_ttl: Duration::ZERO,
        ..EdgeSettings::default()
    };
    let h = harness_of(DEFAULT_MAX_BODY_BYTES, None, settings).await;
    let before = body_json(h.get(uri).await).await;
    assert_eq!(before["results"], json!([]));
    commit_results(&h, &[row("b", 2)], Timestamp::from_millis(minute)).await;
    let after = body_json(h.get(uri).await).await;
    assert_eq!(after["results"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn results_come_from_committed_checkpoints() {
    let h = harness().await;
    let minute = 60_000;
    let base = 1_700_000_040_000 - 1_700_000_040_000 % minute;
    let rows = [
        count_row(base, "a", 3),
        count_row(base, "b", 1),
        count_row(base + minute, "a", 5),
        count_row(base + 2 * minute, "a", 7),
    ];
    commit_results(&h, &rows, Timestamp::from_millis(base + 3 * minute)).await;
    let schema = pipeline("clicks-per-minute", "t").schema();
    // Rows as the API shows them, but `updated_at`, which the store sets.
    let shown = |body: &Value| -> Vec<Value> {
        let rows = body["results"].as_array().unwrap();
        rows.iter()
            .map(|row| {
                let mut row = row.clone();
                let at = row.as_object_mut().unwrap().remove("updated_at");
                assert!(at.is_some(), "{row}");
                row
            })
            .collect()
    };

    let response = h.get("/v1/pipelines/clicks-per-minute/results").await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = body_json(response).await;
    assert_eq!(body["pipeline"], "clicks-per-minute");
    let expected: Vec<_> = rows.iter().map(|r| r.to_json(&schema)).collect();
    assert_eq!(shown(&body), expected);
    assert_eq!(body["results"][0]["count"], 3);

    let from = Timestamp::from_millis(base + minute).to_string();
    let uri = format!(
        "/v1/pipelines/clicks-per-minute/results?from={from}&to={}&key=a",
        base + 2 * minute
    );
    let body = body_json(h.get(&uri).await).await;
    assert_eq!(shown(&body), vec![rows[2].to_json(&schema)]);

    let body = body_json(
        h.get("/v1/pipelines/clicks-per-minute/results?limit=2")
            .await,
    )
    .await;
    assert_eq!(body["results"].as_array().unwrap().len(), 2);

    let empty = body_json(h.get("/v1/pipelines/orders-per-minute/results").await).await;
    assert_eq!(
        empty,
        json!({"pipeline": "orders-per-minute", "results": []})
    );

    for bad in [
        "from=yesterday",
        "to=1e3",
        "limit=0",
        "limit=10001",
        "limit=x",
        &format!("from={}&to={base}", base + 1),
    ] {
        let uri = format!("/v1/pipelines/clicks-per-minute/results?{bad}");
        problem(h.get(&uri).await, StatusCode::BAD_REQUEST).await;
    }
}

#[tokio::test]
async fn pipelines_show_their_cached_status() {
    let h = harness().await;
    let status = PipelineStatus {
        pipeline: "clicks-per-minute".into(),
        epoch: 42,
        watermark: Some(Timestamp::from_millis(1_700_000_000_000)),
        committed_at: Timestamp::from_millis(1_700_000_001_000),
        late_events: 2,
        duplicates: 1,
        filtered: 0,
        latest: vec![],
    };
    h.cache
        .set(
            &PipelineStatus::cache_key("clicks-per-minute"),
            &serde_json::to_string(&status).unwrap(),
            None,
        )
        .await
        .unwrap();
    h.cache
        .set(
            &PipelineStatus::cache_key("orders-per-minute"),
            "not json",
            None,
        )
        .await
        .unwrap();

    let body = body_json(h.get("/v1/pipelines").await).await;
    assert_eq!(
        body["pipelines"][0],
        json!({
            "name": "clicks-per-minute",
            "sources": ["t"],
            "filter": null,
            "key": ["key"],
            "window": {"type": "tumbling", "size_ms": 60_000},
            "aggregates": {"count": "count(*)[*]"},
            "lookups": [],
            "allowed_lateness_ms": 0,
            "columns": {"count": "integer"},
            "aggregate": "count",
            "status": serde_json::to_value(&status).unwrap(),
        })
    );
    assert_eq!(body["pipelines"][0]["status"]["epoch"], 42);
    assert_eq!(body["pipelines"][1]["name"], "orders-per-minute");
    assert_eq!(
        body["pipelines"][1]["status"],
        Value::Null,
        "an undecodable status shows as null"
    );
}

#[tokio::test]
async fn events_are_paged_newest_first_with_a_cursor() {
    let h = harness().await;
    let events: Vec<Event> = (0..5)
        .map(|i| event("t", &format!("e{i}"), 1_000 + i))
        .collect();
    h.store.put_events(&events).await.unwrap();
    h.store
        .put_events(&[event("orders", "other", 5_000)])
        .await
        .unwrap();

    let mut seen = Vec::new();
    let mut uri = "/v1/streams/t/events?limit=2".to_owned();
    let mut pages = 0;
    loop {
        let response = h.get(&uri).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body = body_json(response).await;
        pages += 1;
        let page: Vec<Event> = serde_json::from_value(body["events"].clone()).unwrap();
        seen.extend(page);
        match body["next_cursor"].as_str() {
            Some(cursor) => uri = format!("/v1/streams/t/events?limit=2&cursor={cursor}"),
            None => break,
        }
        assert!(pages < 10, "the cursor does not advance");
    }
    assert_eq!(pages, 3);
    let expected: Vec<Event> = events.iter().rev().cloned().collect();
    assert_eq!(seen, expected);

    // An exact multiple of the limit ends with a null cursor, not an empty page.
    let body = body_json(h.get("/v1/streams/t/events?limit=5").await).await;
    assert_eq!(body["events"].as_array().unwrap().len(), 5);
    assert_eq!(body["next_cursor"], Value::Null);

    let body = body_json(h.get("/v1/streams/t/events").await).await;
    assert_eq!(body["events"][0]["id"], "e4");
    assert_eq!(body["events"][0]["ts"], "1970-01-01T00:00:01.004Z");

    for bad in [
        "limit=0",
        "limit=1001",
        "limit=-1",
        "limit=ten",
        "cursor=%21%21",
        "cursor=bm9wZQ",
    ] {
        problem(
            h.get(&format!("/v1/streams/t/events?{bad}")).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
    }
}

#[tokio::test]
async fn metrics_count_ingested_events() {
    let stream_name = format!("m{}", uuid::Uuid::now_v7().simple());
    let h = harness_with(DEFAULT_MAX_BODY_BYTES, Some(&stream_name)).await;
    let uri = format!("/v1/streams/{stream_name}/events");
    let body = json!([{"payload": {}}, {"payload": {}}, {"payload": {}}]).to_string();
    assert_eq!(
        h.post(&uri, "application/json", body).await.status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(
        h.post(&uri, "text/plain", "x").await.status(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );

    let response = h
        .send(Request::get("/metrics").body(Body::empty()).unwrap())
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = body_text(response).await;
    let line = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in:\n{text}"))
            .to_owned()
    };
    let events = line(&format!(
        "tributary_ingest_events_total{{stream=\"{stream_name}\"}}"
    ));
    assert!(events.ends_with(" 3"), "{events}");
    let accepted = line(&format!(
        "tributary_ingest_requests_total{{stream=\"{stream_name}\",status=\"202\"}}"
    ));
    assert!(accepted.ends_with(" 1"), "{accepted}");
    line(&format!(
        "tributary_ingest_requests_total{{stream=\"{stream_name}\",status=\"415\"}}"
    ));
    assert!(text.contains("tributary_ingest_duration_seconds"), "{text}");
    // The 415 was counted as a dead letter (the recorder is the process's, shared with
    // other tests: only its presence is checked here) and kept in this harness's store.
    line("tributary_dead_letters_total{origin=\"ingest\"}");
    let kept = body_json(h.get("/v1/dead-letters").await).await;
    let letters = kept["dead_letters"].as_array().unwrap();
    assert_eq!(letters.len(), 1, "{kept}");
    assert_eq!(letters[0]["stream"], json!(stream_name));
    assert_eq!(
        letters[0]["origin"],
        json!({"kind": "ingest", "status": 415})
    );
    assert_eq!(letters[0]["raw"], json!("x"));
}

#[tokio::test]
async fn openapi_documents_exactly_the_routes_served() {
    let h = harness().await;
    let response = h
        .send(Request::get("/openapi.json").body(Body::empty()).unwrap())
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let doc = body_json(response).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    assert_eq!(
        doc["components"]["securitySchemes"]["bearerAuth"]["scheme"],
        "bearer"
    );
    assert!(doc["components"]["schemas"]["Problem"].is_object());

    let routes = tributary_gateway::routes();
    let served: BTreeSet<(String, String)> = routes
        .iter()
        .map(|(m, p)| (m.as_str().to_lowercase(), (*p).to_owned()))
        .collect();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["get", "post", "put", "patch", "delete", "head", "options"] {
            if item.get(method).is_some() {
                documented.insert((method.to_owned(), path.clone()));
            }
        }
    }
    assert_eq!(documented, served);

    // Each listed route is really routed (the router's own 404 and 405 are not reached).
    for (method, path) in routes {
        let uri = path
            .replace("{stream}", "t")
            .replace("{name}", "clicks-per-minute");
        let response = h
            .send(authed(method.clone(), &uri).body(Body::empty()).unwrap())
            .await;
        assert_ne!(
            response.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        if response.status() == StatusCode::NOT_FOUND {
            let body = body_json(response).await;
            assert_ne!(
                body["type"], "urn:tributary:problem:route-not-found",
                "{method} {path}"
            );
        }
    }
}

#[tokio::test]
async fn health_and_readiness() {
    let h = harness().await;
    let response = h
        .send(Request::get("/healthz").body(Body::empty()).unwrap())
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body_json(response).await, json!({"status": "ok"}));

    let response = h
        .send(Request::get("/readyz").body(Body::empty()).unwrap())
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = body_json(response).await;
    assert_eq!(body["status"], "ready");
    assert_eq!(
        body["checks"],
        json!({"analytics": "ok", "cache": "ok", "documents": "ok", "log": "ok"})
    );
}

#[tokio::test]
async fn a_draining_node_is_not_ready_but_serves() {
    let h = harness().await;
    h.state.drain.start();
    let response = h
        .send(Request::get("/readyz").body(Body::empty()).unwrap())
        .await;
    assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    let body = problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(
        body["type"], "urn:tributary:problem:shutting-down",
        "{body}"
    );

    // Until the server closes its listener, every other route serves as before.
    let response = h
        .send(Request::get("/healthz").body(Body::empty()).unwrap())
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = h
        .post(
            "/v1/streams/t/events",
            "application/json",
            r#"{"payload": {}}"#,
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(h.get("/v1/streams").await.status(), StatusCode::OK);
    assert_eq!(h.state.drain.in_flight(), 0, "every request was answered");
}

#[tokio::test]
async fn a_closed_store_makes_readyz_and_queries_503() {
    let h = harness().await;
    h.store.close().await;
    let response = h
        .send(Request::get("/readyz").body(Body::empty()).unwrap())
        .await;
    assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    let body = problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(body["checks"]["analytics"], "unavailable", "{body}");
    assert_eq!(body["checks"]["documents"], "unavailable", "{body}");
    assert_eq!(body["checks"]["log"], "ok", "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("analytics") && detail.contains("documents") && !detail.contains("log"),
        "{detail}"
    );

    // The failure is logged once, server-side, with its cause; the client sees none of it.
    let captured = CapturedLog::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_ansi(false)
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    let response = h.get("/v1/streams/t/events").await;
    drop(guard);
    let log = captured.text();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("http_request")).collect();
    assert_eq!(lines.len(), 1, "{log}");
    for expected in [
        "ERROR",
        "http.request.method=GET",
        "url.path=/v1/streams/t/events",
        "http.response.status_code=503",
        "event.duration=",
        "error.type=\"dependency-unavailable\"",
        "sqlite is unavailable",
    ] {
        assert!(
            lines[0].contains(expected),
            "{expected:?} missing from {log}"
        );
    }
    assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    let body = problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(
        !body.to_string().contains("sqlite") && !body.to_string().contains("pool"),
        "internals leaked: {body}"
    );
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    let h = harness().await;
    let body = problem(h.get("/v2/nothing").await, StatusCode::NOT_FOUND).await;
    assert_eq!(body["type"], "urn:tributary:problem:route-not-found");
    assert_eq!(body["instance"], "/v2/nothing");

    let response = h
        .send(Request::delete("/healthz").body(Body::empty()).unwrap())
        .await;
    assert_eq!(response.headers()[header::ALLOW], "GET,HEAD");
    problem(response, StatusCode::METHOD_NOT_ALLOWED).await;

    let response = h
        .send(
            authed(Method::PUT, "/v1/streams/t/events")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    let allow = response.headers()[header::ALLOW]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    problem(response, StatusCode::METHOD_NOT_ALLOWED).await;
}

#[tokio::test]
async fn every_v1_path_needs_a_key_even_unknown_ones() {
    let h = harness().await;
    for (method, uri) in [
        (Method::GET, "/v1/nothing"),
        (Method::GET, "/v1"),
        (Method::POST, "/v1/streams/t/nothing"),
        (Method::PUT, "/v1/streams/t/events"),
        (Method::DELETE, "/v1/pipelines"),
    ] {
        for authorization in [None, Some("Bearer wrong-key")] {
            let mut request = Request::builder().method(method.clone()).uri(uri);
            if let Some(value) = authorization {
                request = request.header(header::AUTHORIZATION, value);
            }
            let response = h.send(request.body(Body::empty()).unwrap()).await;
            assert!(
                response.headers().contains_key(header::WWW_AUTHENTICATE),
                "{method} {uri}"
            );
            problem(response, StatusCode::UNAUTHORIZED).await;
        }
        let response = h
            .send(authed(method.clone(), uri).body(Body::empty()).unwrap())
            .await;
        let expected = if uri.contains("/nothing") || uri == "/v1" {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::METHOD_NOT_ALLOWED
        };
        problem(response, expected).await;
    }
    // Outside /v1, unknown paths need no key.
    let response = h
        .send(Request::get("/v2/nothing").body(Body::empty()).unwrap())
        .await;
    problem(response, StatusCode::NOT_FOUND).await;
}

/// Asserts that `method uri` answers the 404 of a route this node does not serve, and needs
/// a key to learn it.
async fn assert_not_served(h: &Harness, method: Method, uri: &str) {
    let response = h
        .send(
            authed(method.clone(), uri)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(r#"{"payload":{}}"#))
                .unwrap(),
        )
        .await;
    let body = problem(response, StatusCode::NOT_FOUND).await;
    assert_eq!(
        body["type"], "urn:tributary:problem:route-not-found",
        "{method} {uri}"
    );
    let anonymous = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .unwrap();
    problem(h.send(anonymous).await, StatusCode::UNAUTHORIZED).await;
}

/// Asserts that the open endpoints answer 200.
async fn assert_open_endpoints_served(h: &Harness) {
    for uri in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
        let response = h.send(Request::get(uri).body(Body::empty()).unwrap()).await;
        assert_eq!(response.status(), StatusCode::OK, "{uri}");
    }
}

#[tokio::test]
async fn an_ingest_only_router_serves_ingestion_and_health() {
    let h = harness().await.serving(Surfaces {
        ingest: true,
        query: false,
    });
    let response = h
        .post(
            "/v1/streams/t/events",
            "application/json",
            r#"{"id":"i1","payload":{}}"#,
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(h.events_in_log("t", PARTITIONS, 1).await.len(), 1);
    for uri in [
        "/v1/streams",
        "/v1/streams/t/events",
        "/v1/pipelines",
        "/v1/pipelines/clicks-per-minute/results",
        "/v1/dead-letters",
    ] {
        assert_not_served(&h, Method::GET, uri).await;
    }
    assert_open_endpoints_served(&h).await;
    let response = h
        .send(
            authed(Method::PUT, "/v1/streams/t/events")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    problem(response, StatusCode::METHOD_NOT_ALLOWED).await;
}

#[tokio::test]
async fn a_query_only_router_serves_queries_and_health() {
    let h = harness().await.serving(Surfaces {
        ingest: false,
        query: true,
    });
    assert_not_served(&h, Method::POST, "/v1/streams/t/events").await;
    assert!(
        h.events_in_log("t", PARTITIONS, 0).await.is_empty(),
        "a query-only node appended events"
    );
    for uri in [
        "/v1/streams",
        "/v1/streams/t/events",
        "/v1/pipelines",
        "/v1/pipelines/clicks-per-minute/results",
        "/v1/dead-letters",
    ] {
        assert_eq!(h.get(uri).await.status(), StatusCode::OK, "{uri}");
    }
    assert_open_endpoints_served(&h).await;
}

#[tokio::test]
async fn result_parameters_are_checked_like_event_fields() {
    let h = harness().await;
    let uri = |query: &str| format!("/v1/pipelines/clicks-per-minute/results?{query}");
    let ok_key = "k".repeat(256);
    assert_eq!(
        h.get(&uri(&format!("key={ok_key}"))).await.status(),
        StatusCode::OK
    );
    let max = Timestamp::MAX_VALID.millis();
    let min = Timestamp::MIN_VALID.millis();
    assert_eq!(
        h.get(&uri(&format!("from={min}&to={max}"))).await.status(),
        StatusCode::OK
    );
    for (query, parameter) in [
        ("key=a%00b".to_owned(), "key"),
        (format!("key={}", "k".repeat(257)), "key"),
        (format!("from={}", min - 1), "from"),
        (format!("to={}", max + 1), "to"),
        ("to=8210266876799000".to_owned(), "to"),
        ("from=9999-12-31T23:59:59-01:00".to_owned(), "from"),
    ] {
        let body = problem(h.get(&uri(&query)).await, StatusCode::BAD_REQUEST).await;
        assert_eq!(body["parameter"], parameter, "{query}: {body}");
    }
}

#[tokio::test]
async fn large_bodies_are_parsed_and_oversized_events_refused() {
    let h = harness().await;
    // Well over the inline-parsing threshold (16 KiB): parsed on the blocking pool.
    let events: Vec<Value> = (0..1000)
        .map(|i| json!({"id": format!("big-{i}"), "payload": {"text": "x".repeat(100)}}))
        .collect();
    let body = Value::Array(events).to_string();
    assert!(body.len() > 64 * 1024);
    let response = h
        .post("/v1/streams/t/events", "application/json", body)
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(body_json(response).await["accepted"], 1000);

    let body = json!([
        {"id": "small", "payload": {}},
        {"id": "huge", "payload": {"text": "x".repeat(MAX_EVENT_BYTES)}},
        {"id": "late", "ts": Timestamp::MAX_VALID.millis() + 1, "payload": {}},
    ])
    .to_string();
    let response = h
        .post("/v1/streams/t/events", "application/json", body)
        .await;
    let body422 = problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    let errors = body422["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{body422}");
    assert_eq!(
        (&errors[0]["index"], &errors[0]["field"]),
        (&json!(1), &json!(""))
    );
    assert!(
        errors[0]["reason"]
            .as_str()
            .unwrap()
            .contains(&MAX_EVENT_BYTES.to_string()),
        "{body422}"
    );
    assert_eq!(
        (&errors[1]["index"], &errors[1]["field"]),
        (&json!(2), &json!("ts"))
    );
    let logged = h.events_in_log("t", PARTITIONS, 1001).await;
    assert_eq!(logged.len(), 1000, "part of a refused request was appended");
}

/// Every dead letter, newest first, read through `GET /v1/dead-letters` page by page.
#[tokio::test]
async fn refused_requests_are_kept_as_dead_letters_and_nothing_is_appended() {
    let h = harness().await;
    let invalid = json!([
        {"id": "ok-0", "payload": {}},
        {"id": 7, "payload": {}},
        {"payload": [1, 2]},
    ])
    .to_string();
    let response = h
        .post("/v1/streams/t/events", "application/json", invalid.clone())
        .await;
    let body422 = problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    let malformed = "{\"payload\":{}}\n{\"payload\": }\n";
    let response = h
        .post(
            "/v1/streams/orders/events",
            "application/x-ndjson",
            malformed,
        )
        .await;
    let body400 = problem(response, StatusCode::BAD_REQUEST).await;
    let response = h.post("/v1/streams/t/events", "text/plain", "hello").await;
    problem(response, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;

    // Not kept: unauthenticated, for an unknown stream.
    let anonymous = Request::post("/v1/streams/t/events")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{not json"))
        .unwrap();
    problem(h.send(anonymous).await, StatusCode::UNAUTHORIZED).await;
    let response = h
        .post("/v1/streams/nope/events", "application/json", "{not json")
        .await;
    problem(response, StatusCode::NOT_FOUND).await;

    let letters = dead_letters(&h).await;
    let kept: Vec<(&str, &Origin, &str)> = letters
        .iter()
        .map(|l| (l.stream.as_str(), &l.origin, l.raw.as_str()))
        .collect();
    // Newest first.
    assert_eq!(
        kept,
        vec![
            ("t", &Origin::Ingest { status: 415 }, "hello"),
            ("orders", &Origin::Ingest { status: 400 }, malformed),
            ("t", &Origin::Ingest { status: 422 }, invalid.as_str()),
        ]
    );
    assert!(letters.iter().all(|l| !l.truncated));
    assert!(
        letters[2]
            .reason
            .starts_with(body422["detail"].as_str().unwrap())
    );
    for listed in body422["errors"].as_array().unwrap() {
        let (index, reason) = (&listed["index"], listed["reason"].as_str().unwrap());
        assert!(
            letters[2].reason.contains(&format!("event {index}"))
                && letters[2].reason.contains(reason),
            "{listed} missing from {:?}",
            letters[2].reason
        );
    }
    assert_eq!(letters[1].reason, body400["detail"].as_str().unwrap());
    assert!(letters[0].reason.contains("text/plain"), "{:?}", letters[0]);

    assert!(h.events_in_log("t", PARTITIONS, 0).await.is_empty());
    assert!(h.events_in_log("orders", 1, 0).await.is_empty());
}

#[tokio::test]
async fn a_dead_letter_that_cannot_be_stored_leaves_the_answer_unchanged() {
    let h = harness().await;
    h.store.close().await;
    let captured = CapturedLog::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_ansi(false)
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    let response = h
        .post(
            "/v1/streams/t/events",
            "application/json",
            r#"[{"payload": 1}]"#,
        )
        .await;
    drop(guard);
    problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    let log = captured.text();
    let line = log
        .lines()
        .find(|l| l.contains("dead letter not stored"))
        .unwrap_or_else(|| panic!("no error logged: {log}"));
    assert!(line.contains("ERROR") && line.contains("sqlite"), "{line}");
}

#[tokio::test]
async fn dead_letters_are_paged_newest_first_and_need_a_key() {
    let h = harness().await;
    let letters: Vec<DeadLetter> = (0..5)
        .map(|i| {
            DeadLetter::ingest(
                "t",
                400,
                format!("reason {i}"),
                format!("body {i}").as_bytes(),
            )
        })
        .collect();
    h.store.put_dead_letters(&letters).await.unwrap();
    let mut expected = letters.clone();
    expected.sort_by(|a, b| (b.at, &b.id).cmp(&(a.at, &a.id)));
    assert_eq!(dead_letters(&h).await, expected);

    let body = body_json(h.get("/v1/dead-letters").await).await;
    assert_eq!(body["dead_letters"].as_array().unwrap().len(), 5);
    assert_eq!(body["next_cursor"], Value::Null);
    let first = &body["dead_letters"][0];
    assert_eq!(first["origin"], json!({"kind": "ingest", "status": 400}));
    assert!(
        Timestamp::parse_rfc3339(first["at"].as_str().unwrap()).is_ok(),
        "{first}"
    );

    let anonymous = Request::get("/v1/dead-letters")
        .body(Body::empty())
        .unwrap();
    problem(h.send(anonymous).await, StatusCode::UNAUTHORIZED).await;
    for bad in [
        "limit=0",
        "limit=1001",
        "limit=ten",
        "cursor=%21%21",
        "cursor=bm9wZQ",
    ] {
        let body = problem(
            h.get(&format!("/v1/dead-letters?{bad}")).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert!(body["detail"].is_string(), "{bad}");
    }
}

/// A `tracing` writer into memory.
#[derive(Clone, Default)]
struct CapturedLog(Arc<std::sync::Mutex<Vec<u8>>>);

impl CapturedLog {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl std::io::Write for CapturedLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for CapturedLog {
    type Writer = Self;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
