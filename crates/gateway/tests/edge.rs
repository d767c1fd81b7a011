//! The edge (`tributary_gateway::edge`), through the router: what one request may make the
//! node read, hold and write, request ids and trace context, CORS.

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write as _;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use serde_json::{Value, json};
use tributary_core::dead_letter::{DeadLetter, Origin};
use tributary_core::ports::DocumentStore;
use tributary_core::{Event, EventId, StreamName, Timestamp};
use tributary_gateway::edge::{MAX_HEADER_BYTES, MAX_URI_BYTES};
use tributary_gateway::{DEFAULT_MAX_BODY_BYTES, EdgeSettings};

use common::{Harness, PARTITIONS, authed, body_json, dead_letters, harness, harness_of, problem};

async fn harness_edge(settings: EdgeSettings) -> Harness {
    harness_of(DEFAULT_MAX_BODY_BYTES, None, settings).await
}

fn post_events(content_type: &str, encoding: Option<&str>, body: Body) -> Request<Body> {
    let mut request =
        authed(Method::POST, "/v1/streams/t/events").header(header::CONTENT_TYPE, content_type);
    if let Some(encoding) = encoding {
        request = request.header(header::CONTENT_ENCODING, encoding);
    }
    request.body(body).unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::bulk::compress(data, 3).unwrap()
}

/// A body that sends `first` and then nothing, forever.
fn stalled_body(first: &'static str) -> Body {
    let first = futures::stream::iter([Ok::<_, std::io::Error>(first.to_owned())]);
    Body::from_stream(futures::StreamExt::chain(first, futures::stream::pending()))
}

#[tokio::test]
async fn more_events_than_the_limit_are_413_and_nothing_is_written() {
    let h = harness_edge(EdgeSettings {
        max_events_per_request: 5,
        ..EdgeSettings::default()
    })
    .await;
    let batch = |n: usize| serde_json::to_string(&vec![json!({"payload": {}}); n]).unwrap();
    let response = h
        .post("/v1/streams/t/events", "application/json", batch(5))
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);

    let body = problem(
        h.post("/v1/streams/t/events", "application/json", batch(6))
            .await,
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;
    assert_eq!(body["type"], "urn:tributary:problem:too-many-events");
    assert_eq!(body["limit_events"], 5);
    let ndjson = "{\"payload\":{}}\n".repeat(6);
    let body = problem(
        h.post("/v1/streams/t/events", "application/x-ndjson", ndjson)
            .await,
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;
    assert_eq!(body["limit_events"], 5);

    assert_eq!(h.events_in_log("t", PARTITIONS, 5).await.len(), 5);
    let letters = dead_letters(&h).await;
    assert_eq!(letters.len(), 2);
    assert!(
        letters
            .iter()
            .all(|l| l.origin == Origin::Ingest { status: 413 } && !l.raw.is_empty())
    );
}

#[tokio::test]
async fn a_422_lists_at_most_100_errors_and_counts_them_all() {
    // 200,000 invalid items and one valid event: more than the default limit, a 413.
    let mut items = "1,".repeat(200_000);
    items.push_str(r#"{"payload":{}}"#);
    let response = harness()
        .await
        .send(post_events(
            "application/json",
            None,
            Body::from(format!("[{items}]")),
        ))
        .await;
    let body = problem(response, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert_eq!(body["limit_events"], 10_000);

    let h = harness_edge(EdgeSettings {
        max_events_per_request: 1_000_000,
        ..EdgeSettings::default()
    })
    .await;
    let request = post_events("application/json", None, Body::from(format!("[{items}]")));
    let response = h.send(request).await;
    let size_hint = response.headers().get(header::CONTENT_LENGTH).cloned();
    let body = problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    let errors = body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 100);
    assert_eq!(errors[99]["index"], 99);
    assert_eq!(body["error_count"], 200_000);
    assert_eq!(body["invalid_events"], 200_000);
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("the first 100 are listed"), "{detail}");
    let size = serde_json::to_vec(&body).unwrap().len();
    assert!(size < 16 * 1024, "a 422 of {size} bytes ({size_hint:?})");
    assert!(h.events_in_log("t", PARTITIONS, 0).await.is_empty());

    // Its dead letter's reason lists the same 100.
    let letters = dead_letters(&h).await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].reason.matches("; event ").count(), 100);
}

#[tokio::test]
async fn duplicate_keys_are_400_naming_the_key_and_nothing_is_written() {
    let h = harness().await;
    for (body, key) in [
        (r#"{"payload":{},"payload":{"x":1}}"#, "payload"),
        (
            r#"[{"payload":{}},{"id":"a","payload":{"amount":1,"amount":-1}}]"#,
            "amount",
        ),
    ] {
        let problem_body = problem(
            h.post("/v1/streams/t/events", "application/json", body)
                .await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert_eq!(problem_body["type"], "urn:tributary:problem:duplicate-key");
        assert_eq!(problem_body["key"], key, "{problem_body}");
        assert!(problem_body["line"].is_u64() && problem_body["column"].is_u64());
        assert!(
            problem_body["detail"].as_str().unwrap().contains(key),
            "{problem_body}"
        );
    }
    assert!(h.events_in_log("t", PARTITIONS, 0).await.is_empty());
}

#[tokio::test]
async fn gzip_and_zstd_bodies_are_decoded() {
    let h = harness().await;
    let json = serde_json::to_vec(&json!([
        {"id": "g1", "payload": {"n": 1}},
        {"id": "g2", "payload": {"n": 2}},
    ]))
    .unwrap();
    let ndjson = b"{\"id\":\"z1\",\"payload\":{}}\n{\"id\":\"z2\",\"payload\":{}}\n";
    for (content_type, encoding, body, ids) in [
        ("application/json", "gzip", gzip(&json), ["g1", "g2"]),
        ("application/x-ndjson", "zstd", zstd(ndjson), ["z1", "z2"]),
    ] {
        let response = h
            .send(post_events(content_type, Some(encoding), body.into()))
            .await;
        assert_eq!(response.status(), StatusCode::ACCEPTED, "{encoding}");
        assert_eq!(body_json(response).await["ids"], json!(ids));
    }
    assert_eq!(h.events_in_log("t", PARTITIONS, 4).await.len(), 4);
}

#[tokio::test]
async fn other_encodings_are_415_and_corrupt_ones_400() {
    let h = harness().await;
    let body = problem(
        h.send(post_events(
            "application/json",
            Some("br"),
            Body::from(r#"{"payload":{}}"#),
        ))
        .await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    )
    .await;
    assert_eq!(
        body["type"],
        "urn:tributary:problem:unsupported-content-encoding"
    );
    assert_eq!(
        body["accepted_encodings"],
        json!(["gzip", "zstd", "identity"])
    );

    let mut corrupt = gzip(br#"{"payload":{}}"#);
    corrupt[12] ^= 0xff;
    corrupt.truncate(corrupt.len() - 4);
    let body = problem(
        h.send(post_events(
            "application/json",
            Some("gzip"),
            corrupt.into(),
        ))
        .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(body["type"], "urn:tributary:problem:undecodable-body");
    let body = problem(
        h.send(post_events(
            "application/json",
            Some("zstd"),
            Body::from("not zstd at all"),
        ))
        .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(body["type"], "urn:tributary:problem:undecodable-body");

    // `identity` is no encoding at all.
    let response = h
        .send(post_events(
            "application/json",
            Some("identity"),
            Body::from(r#"{"payload":{}}"#),
        ))
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    // Each refusal is kept; the 415 with the body as sent.
    let letters: Vec<DeadLetter> = dead_letters(&h).await;
    let statuses: Vec<Origin> = letters.iter().map(|l| l.origin.clone()).collect();
    assert_eq!(statuses.len(), 3, "{statuses:?}");
    assert!(
        letters
            .iter()
            .any(|l| l.origin == Origin::Ingest { status: 415 } && l.raw == r#"{"payload":{}}"#)
    );
}

#[tokio::test]
async fn zip_bombs_are_413_without_decoding_them_whole() {
    const LIMIT: usize = 1024 * 1024;
    let h = harness_of(LIMIT, None, EdgeSettings::default()).await;
    // 256 MiB of spaces (valid JSON whitespace) before one event: a few hundred KiB as
    // gzip, a few KiB as zstd.
    let mut decoded = vec![b' '; 256 * 1024 * 1024];
    decoded.extend_from_slice(br#"{"payload":{}}"#);
    for (encoding, body) in [("gzip", gzip(&decoded)), ("zstd", zstd(&decoded))] {
        assert!(body.len() < LIMIT, "{encoding}: {} bytes", body.len());
        let started = Instant::now();
        let response = h
            .send(post_events("application/json", Some(encoding), body.into()))
            .await;
        let problem_body = problem(response, StatusCode::PAYLOAD_TOO_LARGE).await;
        assert_eq!(problem_body["limit_bytes"], LIMIT);
        // Decoding all of it would take seconds in a debug build.
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{encoding}: {:?}",
            started.elapsed()
        );
    }
    drop(decoded);
    // A compressed body larger than the limit as sent is refused too, also without a
    // Content-Length (read in chunks).
    let noise: Vec<u8> = (0..2 * LIMIT).map(|i| (i * 7919 % 251) as u8).collect();
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = gzip(&noise)
        .chunks(64 * 1024)
        .map(|c| Ok(c.to_vec()))
        .collect();
    let response = h
        .send(post_events(
            "application/json",
            Some("gzip"),
            Body::from_stream(futures::stream::iter(chunks)),
        ))
        .await;
    problem(response, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert!(h.events_in_log("t", PARTITIONS, 0).await.is_empty());
}

#[tokio::test]
async fn bodies_that_stall_are_408_and_close_the_connection() {
    let h = harness_edge(EdgeSettings {
        body_timeout: Duration::from_millis(300),
        ..EdgeSettings::default()
    })
    .await;
    let started = Instant::now();
    let response = h
        .send(post_events(
            "application/json",
            None,
            stalled_body(r#"[{"payload":{}},"#),
        ))
        .await;
    let elapsed = started.elapsed();
    assert_eq!(response.headers()[header::CONNECTION], "close");
    let body = problem(response, StatusCode::REQUEST_TIMEOUT).await;
    assert_eq!(body["type"], "urn:tributary:problem:body-timeout");
    assert_eq!(body["timeout_ms"], 300);
    assert!(
        (Duration::from_millis(300)..Duration::from_secs(3)).contains(&elapsed),
        "{elapsed:?}"
    );
    assert!(h.events_in_log("t", PARTITIONS, 0).await.is_empty());
}

#[tokio::test]
async fn bodies_wait_for_room_and_get_503_when_there_is_none() {
    // Room for exactly one body of the largest size.
    let h = harness_of(
        64 * 1024,
        None,
        EdgeSettings {
            body_timeout: Duration::from_millis(500),
            max_bytes_in_flight: 64 * 1024,
            ..EdgeSettings::default()
        },
    )
    .await;
    // A body without a length takes all the room while it trickles in (until it times
    // out); a second one waits for the room, first in line.
    let stall = || {
        let router = h.router.clone();
        tokio::spawn(async move {
            let request = post_events("application/json", None, stalled_body("["));
            tower::ServiceExt::oneshot(router, request).await.unwrap()
        })
    };
    let first = stall();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = stall();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let one_event = || {
        h.post(
            "/v1/streams/t/events",
            "application/json",
            r#"{"payload":{}}"#,
        )
    };
    // The room is taken for the whole wait: first by the first body, then by the second.
    let started = Instant::now();
    let response = one_event().await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    let body = problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(body["type"], "urn:tributary:problem:overloaded");
    for stalled in [first, second] {
        assert_eq!(stalled.await.unwrap().status(), StatusCode::REQUEST_TIMEOUT);
    }
    // The room is given back.
    assert_eq!(one_event().await.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn long_targets_and_large_headers_are_problems() {
    let h = harness().await;
    let long = format!("/v1/streams?x={}", "a".repeat(MAX_URI_BYTES));
    let body = problem(h.get(&long).await, StatusCode::URI_TOO_LONG).await;
    assert_eq!(body["limit_bytes"], MAX_URI_BYTES);

    let request = authed(Method::GET, "/v1/streams")
        .header("x-padding", "p".repeat(MAX_HEADER_BYTES))
        .body(Body::empty())
        .unwrap();
    let body = problem(
        h.send(request).await,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
    )
    .await;
    assert_eq!(body["limit_bytes"], MAX_HEADER_BYTES);

    // Just below both limits is served.
    let fits = format!("/v1/streams?x={}", "a".repeat(MAX_URI_BYTES - 20));
    assert_eq!(h.get(&fits).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn responses_carry_a_request_id_and_the_trace_context() {
    let h = harness().await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    for (uri, authorized, status) in [
        ("/v1/streams", true, StatusCode::OK),
        ("/v1/streams", false, StatusCode::UNAUTHORIZED),
        ("/v1/nothing", true, StatusCode::NOT_FOUND),
        ("/healthz", false, StatusCode::OK),
    ] {
        let mut request = Request::builder().uri(uri);
        if authorized {
            request = request.header(header::AUTHORIZATION, format!("Bearer {}", common::KEY));
        }
        // Without ids: new ones.
        let response = h.send(request.body(Body::empty()).unwrap()).await;
        assert_eq!(response.status(), status);
        let id = response.headers()["x-request-id"].to_str().unwrap();
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
        let parent = response.headers()["traceparent"].to_str().unwrap();
        assert_eq!(parent.len(), 55, "{parent}");
        assert!(parent.starts_with("00-") && !parent.contains(trace));

        // With the client's: kept.
        let mut request = Request::builder()
            .uri(uri)
            .header("x-request-id", "client-req-7")
            .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"));
        if authorized {
            request = request.header(header::AUTHORIZATION, format!("Bearer {}", common::KEY));
        }
        let response = h.send(request.body(Body::empty()).unwrap()).await;
        assert_eq!(response.headers()["x-request-id"], "client-req-7");
        let parent = response.headers()["traceparent"].to_str().unwrap();
        assert!(
            parent.starts_with(&format!("00-{trace}-"))
                && parent.ends_with("-01")
                && !parent.contains("00f067aa0ba902b7"),
            "{parent}"
        );
    }
}

#[tokio::test]
async fn cors_is_off_unless_origins_are_configured() {
    let preflight = |origin: &str| {
        Request::builder()
            .method(Method::OPTIONS)
            .uri("/v1/streams")
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "authorization")
            .body(Body::empty())
            .unwrap()
    };
    let off = harness().await;
    let response = off.send(preflight("https://app.example.com")).await;
    assert!(
        response
            .headers()
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .is_none()
    );
    problem(response, StatusCode::UNAUTHORIZED).await;

    let on = harness_edge(EdgeSettings {
        cors_allowed_origins: vec!["https://app.example.com".into()],
        cors_max_age: Duration::from_secs(600),
        ..EdgeSettings::default()
    })
    .await;
    let response = on.send(preflight("https://app.example.com")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers();
    assert_eq!(
        headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://app.example.com"
    );
    assert_eq!(headers[header::ACCESS_CONTROL_MAX_AGE], "600");
    let allowed = headers[header::ACCESS_CONTROL_ALLOW_HEADERS]
        .to_str()
        .unwrap();
    assert!(allowed.contains("authorization"), "{allowed}");
    let response = on.send(preflight("https://evil.example")).await;
    assert!(
        response
            .headers()
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .is_none()
    );

    let mut request = authed(Method::GET, "/v1/streams")
        .body(Body::empty())
        .unwrap();
    request.headers_mut().insert(
        header::ORIGIN,
        HeaderValue::from_static("https://app.example.com"),
    );
    let response = on.send(request).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://app.example.com"
    );
    let exposed = response.headers()[header::ACCESS_CONTROL_EXPOSE_HEADERS]
        .to_str()
        .unwrap();
    assert!(exposed.contains("x-request-id") && exposed.contains("traceparent"));
}

fn big_event(i: i64, bytes: usize) -> Event {
    Event {
        id: EventId::new(format!("e{i:03}")).unwrap(),
        stream: StreamName::new("t").unwrap(),
        ts: Timestamp::from_millis(1_000 + i),
        key: None,
        payload: json!({"text": "x".repeat(bytes)})
            .as_object()
            .unwrap()
            .clone(),
    }
}

#[tokio::test]
async fn pages_are_bounded_in_bytes_and_chain_by_cursor() {
    const BUDGET: usize = 256 * 1024;
    let h = harness_edge(EdgeSettings {
        max_page_bytes: BUDGET,
        ..EdgeSettings::default()
    })
    .await;
    // 40 events of ~50 KiB (2 MB) and one of 400 KiB, alone larger than a page.
    let mut events: Vec<Event> = (0..40).map(|i| big_event(i, 50 * 1024)).collect();
    events.push(big_event(40, 400 * 1024));
    h.store.put_events(&events).await.unwrap();

    let mut seen: Vec<String> = Vec::new();
    let mut uri = "/v1/streams/t/events?limit=1000".to_owned();
    let mut pages = 0;
    loop {
        let response = h.get(&uri).await;
        assert_eq!(response.status(), StatusCode::OK);
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        let page = body["events"].as_array().unwrap();
        assert!(!page.is_empty());
        assert!(
            page.len() == 1 || bytes.len() <= BUDGET + 100,
            "a page of {} bytes",
            bytes.len()
        );
        seen.extend(page.iter().map(|e| e["id"].as_str().unwrap().to_owned()));
        pages += 1;
        match body["next_cursor"].as_str() {
            Some(cursor) => uri = format!("/v1/streams/t/events?limit=1000&cursor={cursor}"),
            None => break,
        }
        assert!(pages < 100, "the cursor does not advance");
    }
    let expected: Vec<String> = events.iter().rev().map(|e| e.id.to_string()).collect();
    assert_eq!(seen, expected);
    // The large one alone, then four or five per page.
    assert!((9..=12).contains(&pages), "{pages} pages");

    // Dead letters too.
    let letters: Vec<DeadLetter> = (0..12)
        .map(|i| {
            DeadLetter::ingest(
                "t",
                422,
                format!("letter {i}"),
                "r".repeat(60 * 1024).as_bytes(),
            )
        })
        .collect();
    h.store.put_dead_letters(&letters).await.unwrap();
    let response = h.get("/v1/dead-letters?limit=1000").await;
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    assert!(bytes.len() <= BUDGET + 100, "{}", bytes.len());
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert!(body["dead_letters"].as_array().unwrap().len() < 12);
    assert!(body["next_cursor"].is_string());
    assert_eq!(dead_letters(&h).await.len(), 12);
}
