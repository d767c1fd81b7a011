//! `GET /healthz`, `GET /readyz` and `GET /metrics`: open, unauthenticated endpoints for
//! orchestrators and scrapers.
//!
//! Contract:
//! - `/healthz` answers 200 `{"status": "ok"}` whenever the process serves requests.
//! - `/readyz` pings the log, the analytics store, the document store and the cache
//!   concurrently, each within [`PING_TIMEOUT`]: 200 `{"status": "ready", "checks": {...}}`
//!   when all answer, else a 503 problem whose `detail` names the failed dependencies and
//!   whose `checks` member gives each one's outcome (`ok`, `unavailable`, `timeout`). The
//!   causes go to the server log only. Once the node drains ([`crate::Drain`]), it answers
//!   a 503 problem (`shutting-down`) at once, without pinging anything.
//! - With sources registered ([`crate::sources`]), `/readyz` also gives each one's health
//!   (`starting`, `running`, `done`, `stopped`, `failed`) in a `sources` member of its 200
//!   body, and counts them as one check, `sources`, which fails when one has failed.
//! - `/metrics` renders the Prometheus registry, `text/plain; version=0.0.4`.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{Value, json};
use tributary_core::ports::PortError;

use crate::AppState;
use crate::error::{ApiError, CheckOutcome, error_chain};
use crate::sources::Health;

/// How long `/readyz` waits for each dependency.
pub(crate) const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /healthz`.
pub(crate) async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`.
pub(crate) async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    if state.drain.is_draining() {
        return Err(ApiError::ShuttingDown);
    }
    let (log, analytics, documents, cache) = tokio::join!(
        check(state.ports.log.ping()),
        check(state.ports.analytics.ping()),
        check(state.ports.documents.ping()),
        check(state.ports.cache.ping()),
    );
    let mut checks = BTreeMap::new();
    let mut causes = Vec::new();
    let sources = state.sources.health();
    let failed: Vec<String> = sources
        .iter()
        .filter_map(|(name, health)| match health {
            Health::Failed(why) => Some(format!("{name}: {why}")),
            _ => None,
        })
        .collect();
    let mut pings = vec![
        ("log", log),
        ("analytics", analytics),
        ("documents", documents),
        ("cache", cache),
    ];
    if !sources.is_empty() {
        let outcome = if failed.is_empty() {
            (CheckOutcome::Ok, None)
        } else {
            (CheckOutcome::Failed, Some(failed.join("; ")))
        };
        pings.push(("sources", outcome));
    }
    for (name, (outcome, cause)) in pings {
        checks.insert(name, outcome);
        if let Some(cause) = cause {
            causes.push(format!("{name}: {cause}"));
        }
    }
    if causes.is_empty() {
        let shown: BTreeMap<&str, &str> = checks.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut body = json!({ "status": "ready", "checks": shown });
        if !sources.is_empty() {
            let shown: BTreeMap<&str, &str> = sources
                .iter()
                .map(|(name, health)| (name.as_str(), health.as_str()))
                .collect();
            body["sources"] = json!(shown);
        }
        Ok(Json(body))
    } else {
        Err(ApiError::NotReady { checks, causes })
    }
}

/// Runs one ping within [`PING_TIMEOUT`]; the cause is for the server log.
async fn check(
    ping: impl Future<Output = Result<(), PortError>>,
) -> (CheckOutcome, Option<String>) {
    match tokio::time::timeout(PING_TIMEOUT, ping).await {
        Ok(Ok(())) => (CheckOutcome::Ok, None),
        Ok(Err(error)) => (CheckOutcome::Failed, Some(error_chain(&error))),
        Err(_) => (
            CheckOutcome::TimedOut,
            Some(format!("no answer within {} ms", PING_TIMEOUT.as_millis())),
        ),
    }
}

/// `GET /metrics`.
pub(crate) async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
