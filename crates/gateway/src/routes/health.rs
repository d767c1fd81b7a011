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
//!   (`starting`, `running`, `paused`, `done`, `stopped`, `failed`) in a `sources` member of
//!   its body (the 503 problem's too), and counts them as one check, `sources`, which fails
//!   when one has failed (a paused source waits for a dependency the other checks name).
//! - `/metrics` renders the Prometheus registry, `text/plain; version=0.0.4`.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;
use tributary_core::ports::PortError;
use utoipa::ToSchema;

use crate::AppState;
use crate::error::{ApiError, CheckOutcome, Checks, error_chain};
use crate::openapi::OpenErrors;
use crate::sources::Health;

/// How long `/readyz` waits for each dependency.
pub(crate) const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// The answer of `/healthz`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Health)]
pub(crate) struct Alive {
    status: AliveStatus,
}

/// Always `ok`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum AliveStatus {
    Ok,
}

/// The answer of `/readyz` when every check passed.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Readiness {
    status: ReadyStatus,
    checks: Checks,
    /// Each source's health, by name (absent without sources besides HTTP).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<BTreeMap<String, SourceHealth>>)]
    sources: Option<BTreeMap<String, &'static str>>,
}

/// Always `ready`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum ReadyStatus {
    Ready,
}

/// A source's health (see `crate::sources::Health`).
#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub(crate) enum SourceHealth {
    Starting,
    Running,
    Paused,
    Done,
    Stopped,
    Failed,
}

/// `GET /healthz`.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    operation_id = "healthz",
    summary = "Liveness: 200 whenever the process serves requests.",
    responses((status = 200, description = "The process is alive.", body = Alive), OpenErrors),
)]
pub(crate) async fn healthz() -> Json<Alive> {
    Json(Alive {
        status: AliveStatus::Ok,
    })
}

/// `GET /readyz`.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    operation_id = "readyz",
    summary = "Readiness: 200 when the log, the analytics store, the document store and the cache all answer within 2 s.",
    description = "Once the node drains (SIGTERM), a 503 of type `urn:tributary:problem:shutting-down` at once.",
    responses(
        (status = 200, description = "Every dependency answered.", body = Readiness),
        OpenErrors,
        (
            status = 503,
            description = "At least one dependency did not answer; `detail` names it and `checks` gives each outcome.",
            headers(("Retry-After" = u32, description = "Seconds to wait before retrying.")),
            body = crate::error::NotReadyProblem,
            content_type = "application/problem+json",
        ),
    ),
)]
pub(crate) async fn readyz(State(state): State<AppState>) -> Result<Json<Readiness>, ApiError> {
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
    let shown_sources = (!sources.is_empty()).then(|| {
        sources
            .iter()
            .map(|(name, health)| (name.clone(), health.as_str()))
            .collect()
    });
    if causes.is_empty() {
        let outcome = |name| checks.get(name).copied().unwrap_or(CheckOutcome::Ok);
        let body = Readiness {
            status: ReadyStatus::Ready,
            checks: Checks {
                log: outcome("log"),
                analytics: outcome("analytics"),
                documents: outcome("documents"),
                cache: outcome("cache"),
                sources: checks.get("sources").copied(),
            },
            sources: shown_sources,
        };
        Ok(Json(body))
    } else {
        Err(ApiError::NotReady {
            checks,
            sources: shown_sources,
            causes,
        })
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
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    operation_id = "metrics",
    summary = "Prometheus metrics in the text exposition format 0.0.4.",
    responses(
        (status = 200, description = "The metrics.", body = String, content_type = "text/plain; version=0.0.4"),
        OpenErrors,
    ),
)]
pub(crate) async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
