//! Spans exported over OTLP to a real OpenTelemetry Collector (scripts/otelcol.sh: its
//! OTLP/HTTP receiver, and the file exporter writing every batch it receives as an OTLP
//! JSON line to `TRIBUTARY_OTLP_TRACES_FILE`). A node configured with `[tracing]
//! otlp_endpoint` takes a batch carrying a W3C `traceparent`, runs its pipelines to a
//! checkpoint, answers a results query and stops: the collector then holds its request's
//! span in the caller's trace (child of the caller's span, with the ids of the response's
//! `traceparent`), the ingest and log append spans under it, and the pipeline poll,
//! checkpoint and query spans, all of the configured service. Fails when the collector
//! does not answer.

#![allow(clippy::unwrap_used)] // Test helpers outside #[test] functions unwrap too.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{COUNTS, KEY, Node, STREAM, TOPOLOGY, embedded_config, eventually, workload};
use serde_json::{Value, json};

/// The caller's span, the parent of the request's.
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// A span's `field` (`name`, `traceId`, `spanId`, `parentSpanId`), as the collector wrote it.
fn field<'a>(span: &'a Value, field: &str) -> &'a str {
    span[field].as_str().unwrap_or_default()
}

#[tokio::test]
async fn spans_reach_the_collector_in_the_callers_trace() {
    let endpoint = std::env::var("TRIBUTARY_OTLP_ENDPOINT")
        .expect("TRIBUTARY_OTLP_ENDPOINT is set (eval \"$(scripts/services.sh env)\")");
    let traces = std::env::var("TRIBUTARY_OTLP_TRACES_FILE")
        .expect("TRIBUTARY_OTLP_TRACES_FILE is set (eval \"$(scripts/services.sh env)\")");
    collector_answers(&endpoint).await;

    let dir = tempfile::tempdir().unwrap();
    let service = format!("tributary-test-{}", uuid::Uuid::now_v7().simple());
    let config = embedded_config(
        dir.path(),
        &format!(
            "{TOPOLOGY}\n[tracing]\notlp_endpoint = \"{endpoint}\"\nservice_name = \"{service}\"\n"
        ),
    );
    let log = dir.path().join("tributary.log");
    // The batch exporter would wait 5 s between exports: the spans go when the node stops.
    let env = [("TRIBUTARY__HTTP__DRAIN_DELAY".to_owned(), "0s".to_owned())];
    let mut node = Node::start(&config, &env, &log).await;

    let trace_id = uuid::Uuid::now_v7().simple().to_string();
    let response = node
        .client
        .post(format!("{}/v1/streams/{STREAM}/events", node.base))
        .bearer_auth(KEY)
        .header("traceparent", format!("00-{trace_id}-{CALLER_SPAN}-01"))
        .json(&Value::Array(workload(50)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let echoed = response.headers()["traceparent"]
        .to_str()
        .unwrap()
        .to_owned();
    let request_span = echoed.split('-').nth(2).unwrap().to_owned();
    assert_eq!(echoed, format!("00-{trace_id}-{request_span}-01"));
    // Results are committed by a checkpoint, and read by a query.
    node.wait_for_any_result(COUNTS).await;
    node.terminate();
    assert!(node.wait_for_exit().await.success());

    let spans = eventually(&log, async || {
        let spans = exported(Path::new(&traces), &service);
        let names: Vec<&str> = spans.iter().map(|span| field(span, "name")).collect();
        let missing: Vec<&str> = [
            "http_request",
            "ingest",
            "log.append",
            "pipeline.poll",
            "checkpoint",
            "query",
        ]
        .into_iter()
        .filter(|name| !names.contains(name))
        .collect();
        if missing.is_empty() {
            Ok(spans)
        } else {
            Err(format!(
                "no span {missing:?} of {service} yet; got {names:?}"
            ))
        }
    })
    .await;

    let request = spans
        .iter()
        .find(|s| field(s, "name") == "http_request" && field(s, "traceId") == trace_id)
        .unwrap_or_else(|| panic!("no request span in trace {trace_id}: {spans:#?}"));
    assert_eq!(field(request, "spanId"), request_span, "{request:#}");
    assert_eq!(field(request, "parentSpanId"), CALLER_SPAN, "{request:#}");
    let in_trace: BTreeMap<&str, &Value> = spans
        .iter()
        .filter(|s| field(s, "traceId") == trace_id)
        .map(|s| (field(s, "name"), s))
        .collect();
    for child in ["ingest", "log.append"] {
        let span = in_trace
            .get(child)
            .unwrap_or_else(|| panic!("no {child} span in trace {trace_id}: {spans:#?}"));
        assert_eq!(field(span, "parentSpanId"), request_span, "{span:#}");
    }
    let checkpoint = spans
        .iter()
        .find(|s| field(s, "name") == "checkpoint")
        .unwrap();
    assert!(
        attribute(checkpoint, "task").is_some_and(|task| !task.is_empty()),
        "{checkpoint:#}"
    );
    let query = spans.iter().find(|s| field(s, "name") == "query").unwrap();
    assert_eq!(attribute(query, "pipeline").as_deref(), Some(COUNTS));
}

/// Fails unless the collector takes an (empty) OTLP/HTTP export.
async fn collector_answers(endpoint: &str) {
    let answer = reqwest::Client::new()
        .post(format!("{endpoint}/v1/traces"))
        .json(&json!({ "resourceSpans": [] }))
        .send()
        .await;
    match answer {
        Ok(response) if response.status().is_success() => {}
        other => panic!(
            "the OpenTelemetry Collector at {endpoint} does not take spans \
             (scripts/services.sh up starts it): {other:?}"
        ),
    }
}

/// The spans of `service` in the collector's file (OTLP JSON, one export per line).
fn exported(file: &Path, service: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let mut spans = Vec::new();
    for line in text.lines() {
        let export: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not an OTLP JSON line ({e}): {line}"));
        for resource in export["resourceSpans"].as_array().into_iter().flatten() {
            if attribute(&resource["resource"], "service.name").as_deref() != Some(service) {
                continue;
            }
            for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                spans.extend(scope["spans"].as_array().into_iter().flatten().cloned());
            }
        }
    }
    spans
}

/// A string attribute of a span or resource.
fn attribute(item: &Value, key: &str) -> Option<String> {
    item["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .and_then(|a| a["value"]["stringValue"].as_str())
        .map(str::to_owned)
}
