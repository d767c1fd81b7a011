//! Tributary's HTTP gateway: event ingestion, queries over streams and pipelines, health,
//! metrics and the OpenAPI document, as one [`axum::Router`] built by [`router`].
//!
//! Contract:
//! - Every `/v1` route requires `Authorization: Bearer <key>` with a key of
//!   [`AppState::auth`]; `/healthz`, `/readyz`, `/metrics` and `/openapi.json` are open.
//! - Ingestion (`POST /v1/streams/{stream}/events`) is all-or-nothing and answers `202` only
//!   after [`Log::append`] has returned, i.e. once every event is durable.
//! - Every error is an RFC 9457 problem document rendered by [`ApiError`], including unknown
//!   routes (404), wrong methods (405), oversized bodies (413) and extractor rejections.
//! - Each request is logged once, with its method, path, status and latency (and its error,
//!   if any), by the trace layer.
//! - [`routes()`] lists every route; `openapi.json` documents exactly those.
//!
//! The gateway only builds the router: binding a port, installing the Prometheus recorder
//! (and running its upkeep) and graceful shutdown are the binary's business.

mod auth;
mod error;
mod extract;
mod openapi;
mod routes;
mod trace;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Method, Uri};
use axum::routing::{MethodRouter, get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use tributary_core::StreamName;
use tributary_core::pipeline::PipelineSpec;
use tributary_core::ports::Ports;

pub use auth::ApiKeys;
pub use error::{ApiError, CheckOutcome, LoggedError, PROBLEM_JSON, PROBLEM_TYPE_PREFIX};
pub use openapi::openapi_json;

/// The default of [`AppState::max_body_bytes`]: 10 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

/// What the gateway knows of a configured stream.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StreamInfo {
    /// Its number of partitions in the log.
    pub partitions: u32,
    /// A description for people, from the config.
    pub description: Option<String>,
}

/// Everything the handlers share. Cheap to clone: every member is an `Arc` or a handle.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The adapters: ingested events are appended to the log; results are read from the
    /// analytics store, raw events from the document store, pipeline statuses (written by
    /// the engine) from the cache.
    pub ports: Ports,
    /// The configured streams; any other stream is answered 404.
    pub streams: Arc<BTreeMap<StreamName, StreamInfo>>,
    /// The configured pipelines; any other pipeline is answered 404.
    pub pipelines: Arc<Vec<PipelineSpec>>,
    /// The accepted admin API keys.
    pub auth: ApiKeys,
    /// The largest accepted request body, in bytes; larger ones are answered 413.
    pub max_body_bytes: usize,
    /// Renders `GET /metrics`.
    pub metrics: PrometheusHandle,
}

/// One route of the gateway: a method, a path template and its handler.
struct Endpoint {
    method: Method,
    path: &'static str,
    handler: MethodRouter<AppState>,
}

/// Whether requests to `path` need an API key.
fn requires_auth(path: &str) -> bool {
    path.starts_with("/v1/")
}

/// Every route of the gateway, in one table: [`router`] serves exactly these and
/// `openapi.json` documents exactly these.
fn endpoints() -> Vec<Endpoint> {
    use routes::{health, ingest, pipelines, streams};
    let endpoint = |method, path, handler| Endpoint {
        method,
        path,
        handler,
    };
    vec![
        endpoint(Method::GET, "/healthz", get(health::healthz)),
        endpoint(Method::GET, "/readyz", get(health::readyz)),
        endpoint(Method::GET, "/metrics", get(health::metrics)),
        endpoint(Method::GET, "/openapi.json", get(openapi::serve)),
        endpoint(Method::GET, "/v1/streams", get(streams::list)),
        endpoint(
            Method::POST,
            "/v1/streams/{stream}/events",
            post(ingest::ingest),
        ),
        endpoint(
            Method::GET,
            "/v1/streams/{stream}/events",
            get(streams::recent_events),
        ),
        endpoint(Method::GET, "/v1/pipelines", get(pipelines::list)),
        endpoint(
            Method::GET,
            "/v1/pipelines/{name}/results",
            get(pipelines::results),
        ),
    ]
}

/// Every route the gateway serves, as (method, path template), in axum's `{param}` syntax
/// (which is also OpenAPI's).
#[must_use]
pub fn routes() -> Vec<(Method, &'static str)> {
    endpoints()
        .into_iter()
        .map(|e| (e.method, e.path))
        .collect()
}

/// Builds the gateway's router over `state`.
pub fn router(state: AppState) -> Router {
    let (protected, open): (Vec<_>, Vec<_>) =
        endpoints().into_iter().partition(|e| requires_auth(e.path));
    let add = |router: Router<AppState>, endpoints: Vec<Endpoint>| {
        endpoints
            .into_iter()
            .fold(router, |r, e| r.route(e.path, e.handler))
    };
    let protected = add(Router::new(), protected).route_layer(
        axum::middleware::from_fn_with_state(state.auth.clone(), auth::require_api_key),
    );
    add(Router::new(), open)
        .merge(protected)
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.max_body_bytes))
        .layer(trace::layer())
        .with_state(state)
}

async fn route_not_found(uri: Uri) -> ApiError {
    ApiError::RouteNotFound {
        path: uri.path().to_owned(),
    }
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed {
        method,
        path: uri.path().to_owned(),
    }
}
