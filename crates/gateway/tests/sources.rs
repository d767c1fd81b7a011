//! Sources (`tributary_gateway::sources`) through the router: what they hand to the ingest
//! service reaches the log and the dead letters, and `/readyz` shows each one's health.

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tributary_core::dead_letter::Origin;
use tributary_core::{DeadLetter, StreamName};
use tributary_gateway::ingest::IngestService;
use tributary_gateway::sources::{Health, HealthReporter, Source, SourceError};

use common::{body_json, dead_letters, harness, problem};

/// Hands two records to the ingest service (one invalid, then one valid), then runs until stopped,
/// or fails when told to.
#[derive(Debug)]
struct Feed {
    name: &'static str,
    fail: bool,
}

#[async_trait]
impl Source for Feed {
    fn name(&self) -> &str {
        self.name
    }

    async fn run(
        &self,
        ingest: IngestService,
        _health: HealthReporter,
        cancel: CancellationToken,
    ) -> Result<(), SourceError> {
        if self.fail {
            return Err("the broker refused the subscription".into());
        }
        let stream = StreamName::new("t").unwrap();
        let check = ingest.checker(&stream);
        let good = json!({"id": "feed-1", "key": "ключ", "payload": {"ünï": "🚀"}});
        let event = check.check(good)?;
        let bad = json!({"id": "feed-2", "payload": 7});
        let reason = check.check(bad.clone()).unwrap_err();
        let letter = DeadLetter::file(
            &stream,
            ("feed.ndjson", "abc", 2),
            reason,
            bad.to_string().as_bytes(),
        );
        // The letter first: once the event is in the log, both are stored.
        ingest.keep(self.name, &[letter]).await?;
        ingest.append(self.name, &stream, &[event]).await?;
        cancel.cancelled().await;
        Ok(())
    }
}

#[tokio::test]
async fn sources_feed_the_log_and_dead_letters_and_show_in_readyz() {
    let h = harness().await;
    let sources = h.state.sources.clone();
    sources
        .register(Arc::new(Feed {
            name: "feed",
            fail: false,
        }))
        .unwrap();
    let ingest = IngestService::new(h.state.ports.clone(), h.state.max_ts_ahead);
    let mut tasks = sources.start(&ingest, &CancellationToken::new());

    let events = h.events_in_log("t", common::PARTITIONS, 1).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].id.as_str(), "feed-1");
    assert_eq!(events[0].key.as_deref(), Some("ключ"));
    let letters = dead_letters(&h).await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(
        letters[0].origin,
        Origin::File {
            path: "feed.ndjson".into(),
            line: 2
        }
    );
    assert!(letters[0].reason.starts_with("payload:"), "{letters:?}");

    let response = h
        .send(Request::get("/readyz").body(Body::empty()).unwrap())
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = body_json(response).await;
    assert_eq!(body["checks"]["sources"], "ok", "{body}");
    assert_eq!(body["sources"], json!({"feed": "running"}), "{body}");

    sources.stop();
    let (name, outcome) = tasks.join_next().await.unwrap().unwrap();
    assert_eq!(name, "feed");
    assert!(outcome.is_ok());
    assert_eq!(sources.health()["feed"], Health::Stopped);
}

#[tokio::test]
async fn a_failed_source_makes_the_node_not_ready() {
    let h = harness().await;
    let sources = h.state.sources.clone();
    sources
        .register(Arc::new(Feed {
            name: "broken",
            fail: true,
        }))
        .unwrap();
    let ingest = IngestService::new(h.state.ports.clone(), h.state.max_ts_ahead);
    let mut tasks = sources.start(&ingest, &CancellationToken::new());
    let (_, outcome) = tasks.join_next().await.unwrap().unwrap();
    assert!(outcome.is_err());

    let response = h
        .send(Request::get("/readyz").body(Body::empty()).unwrap())
        .await;
    let body = problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(body["checks"]["sources"], "unavailable", "{body}");
    assert_eq!(body["checks"]["log"], "ok", "{body}");
}
