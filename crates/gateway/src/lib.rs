//! Tributary's HTTP gateway: event ingestion, queries over streams, pipelines and dead
//! letters, health, metrics and the OpenAPI document, as one [`axum::Router`] built by
//! [`router`] (or by [`router_for`], for a node serving only some [`Surfaces`]).
//!
//! Contract:
//! - Every `/v1` request requires `Authorization: Bearer <credential>` with a credential
//!   [`AppState::auth`] accepts (a configured or issued API key, or a JWT), also for a path
//!   or method that does not exist (401 before 404 or 405); `/healthz`, `/readyz`,
//!   `/metrics`, `/openapi.json` and the live page (`/`, `/ui/*`, see `ui`) are open.
//!   Each `/v1` route needs a scope ([`required_scope`]): a credential without it is
//!   answered 403. The request carries the credential's [`Principal`] in its extensions.
//! - A credential sees only its tenant's streams, pipelines, events, results, dead letters
//!   and keys, on every route and GraphQL field: another tenant's stream or pipeline is
//!   answered as an unknown one (404), never 403 (the `tenancy` module).
//! - A route of a surface the node does not serve answers 404, like an unknown route.
//! - Ingestion (`POST /v1/streams/{stream}/events`) is all-or-nothing and answers `202` only
//!   after [`Log::append`](tributary_core::ports::Log::append) has returned, i.e. once every
//!   event is durable. A request refused for what it sent (400, 413, 415, 422) is kept as a
//!   dead letter, readable through `GET /v1/dead-letters`.
//! - Every error is an RFC 9457 problem document rendered by [`ApiError`], including unknown
//!   routes (404), wrong methods (405), oversized bodies (413), slow bodies (408), heads too
//!   large (414, 431) and extractor rejections. The edge ([`edge`]) bounds what a request
//!   may make the node read, hold and write, and gives each request an id and a trace
//!   context.
//! - Each request is logged once, with its method, path, status, latency, request id and
//!   trace id (and its error, if any), by the trace layer.
//! - [`routes()`] lists every route; `openapi.json` documents exactly those.
//! - Once [`AppState::drain`] has started, `/readyz` answers 503 (see [`Drain`]).
//!
//! The gateway only builds the router: binding a port, installing the Prometheus recorder
//! (and running its upkeep) and graceful shutdown (when to start the drain, when to close
//! the listener) are the binary's business.

mod auth;
pub mod catalog;
mod drain;
pub mod edge;
mod error;
mod extract;
pub mod graphql;
pub mod ingest;
mod openapi;
pub mod rate_limit;
mod routes;
pub mod sources;
pub mod stream_schema;
mod tenancy;
mod trace;
mod ui;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::routing::{MethodFilter, MethodRouter, get, on, post};
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::decompression::RequestDecompressionLayer;
use tributary_core::pipeline::PipelineSpec;
use tributary_core::ports::Ports;

pub use auth::jwt::JwtError;
pub use auth::{
    ApiKeys, Credential, IssuedKeys, JwksSource, JwtSettings, JwtVerifier, NewKey, Principal,
    required_scope,
};
pub use catalog::StreamCatalog;
pub use drain::Drain;
pub use edge::{Edge, EdgeSettings, RequestContext};
pub use error::{ApiError, CheckOutcome, LoggedError, PROBLEM_JSON, PROBLEM_TYPE_PREFIX};
pub use graphql::GraphqlSettings;
pub use jsonwebtoken::Algorithm as JwtAlgorithm;
pub use openapi::openapi_json;
pub use rate_limit::{RateLimit, RateLimitSettings};
pub use trace::{RequestSpanHook, on_request_span};

/// The default of [`AppState::max_body_bytes`]: 10 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

/// The default of [`AppState::max_ts_ahead`]: one hour, as Kafka's
/// `log.message.timestamp.after.max.ms`.
pub const DEFAULT_MAX_TS_AHEAD: Duration = Duration::from_secs(3600);

/// What the gateway knows of a configured stream.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StreamInfo {
    /// Its number of partitions in the log.
    pub partitions: u32,
    /// A description for people, from the config.
    pub description: Option<String>,
    /// The tenant it belongs to (see docs/API.md, "Tenants"): only this tenant's credentials see it,
    /// its pipelines, events and dead letters.
    pub tenant: String,
}

/// Everything the handlers share. Cheap to clone: every member is an `Arc` or a handle.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The adapters: ingested events are appended to the log; results are read from the
    /// analytics store, raw events from the document store, pipeline statuses (written by
    /// the engine) from the cache.
    pub ports: Ports,
    /// The streams (of the config file and created through the API, see [`catalog`]);
    /// any other stream is answered 404.
    pub streams: StreamCatalog,
    /// The configured pipelines; any other pipeline is answered 404.
    pub pipelines: Arc<Vec<PipelineSpec>>,
    /// The accepted credentials: configured admin keys, and issued keys and JWTs when
    /// configured.
    pub auth: ApiKeys,
    /// The largest accepted request body, in bytes; larger ones are answered 413.
    pub max_body_bytes: usize,
    /// How far ahead of this node's clock an event's `ts` may be; later ones are answered
    /// 422 (see [`tributary_core::parse::Arrival`]).
    pub max_ts_ahead: Duration,
    /// Renders `GET /metrics`.
    pub metrics: PrometheusHandle,
    /// Whether the node is draining (then `/readyz` answers 503), and its requests in
    /// flight.
    pub drain: Drain,
    /// The edge's limits and options (see [`edge`]).
    pub edge: Edge,
    /// The sources this node runs (besides HTTP), whose health `/readyz` shows.
    pub sources: sources::Sources,
    /// The rate limits of the `/v1` routes, per credential and client address (see
    /// [`rate_limit`]); [`RateLimit::off`] for none.
    pub rate_limit: RateLimit,
}

/// The parts of the API a node serves; health, readiness, metrics and the OpenAPI document
/// are always served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Surfaces {
    /// Ingestion: `POST /v1/streams/{stream}/events`.
    pub ingest: bool,
    /// Queries and administration: `/v1/streams` (but ingestion), `/v1/pipelines`,
    /// `/v1/dead-letters`, `/v1/keys` and `/graphql`.
    pub query: bool,
}

impl Surfaces {
    /// Every surface: what [`router`] serves.
    pub const ALL: Self = Self {
        ingest: true,
        query: true,
    };

    fn serves(self, surface: Surface) -> bool {
        match surface {
            Surface::Always => true,
            Surface::Ingest => self.ingest,
            Surface::Query => self.query,
        }
    }
}

/// The surface an endpoint belongs to.
#[derive(Debug, Clone, Copy)]
enum Surface {
    /// Served by every node.
    Always,
    /// See [`Surfaces::ingest`].
    Ingest,
    /// See [`Surfaces::query`].
    Query,
}

/// One route of the gateway: a method, a path template, its surface and its handler.
struct Endpoint {
    method: Method,
    path: &'static str,
    surface: Surface,
    handler: MethodRouter<AppState>,
}

/// Whether requests to `path` need an API key.
fn requires_auth(path: &str) -> bool {
    path == "/v1" || path.starts_with("/v1/")
}

/// Every route of the gateway, in one table: [`router`] serves exactly these and
/// `openapi.json` documents exactly these.
fn endpoints() -> Vec<Endpoint> {
    use Surface::{Always, Ingest, Query};
    use routes::{dead_letters, health, ingest, keys, pipelines, streams};
    let endpoint = |method, path, surface, handler| Endpoint {
        method,
        path,
        surface,
        handler,
    };
    vec![
        endpoint(Method::GET, "/healthz", Always, get(health::healthz)),
        endpoint(Method::GET, "/readyz", Always, get(health::readyz)),
        endpoint(Method::GET, "/metrics", Always, get(health::metrics)),
        endpoint(Method::GET, "/openapi.json", Always, get(openapi::serve)),
        endpoint(Method::GET, "/v1/streams", Query, get(streams::list)),
        endpoint(Method::POST, "/v1/streams", Query, post(streams::create)),
        endpoint(
            Method::GET,
            "/v1/streams/{stream}",
            Query,
            get(streams::describe),
        ),
        endpoint(
            Method::PATCH,
            "/v1/streams/{stream}",
            Query,
            axum::routing::patch(streams::update),
        ),
        endpoint(
            Method::DELETE,
            "/v1/streams/{stream}",
            Query,
            axum::routing::delete(streams::delete),
        ),
        endpoint(
            Method::POST,
            "/v1/streams/{stream}/events",
            Ingest,
            post(ingest::ingest),
        ),
        endpoint(
            Method::GET,
            "/v1/streams/{stream}/events",
            Query,
            get(streams::recent_events),
        ),
        endpoint(Method::GET, "/v1/pipelines", Query, get(pipelines::list)),
        endpoint(
            Method::GET,
            "/v1/pipelines/{name}/results",
            Query,
            get(pipelines::results),
        ),
        endpoint(
            Method::GET,
            "/v1/dead-letters",
            Query,
            get(dead_letters::list),
        ),
        endpoint(Method::POST, "/v1/keys", Query, post(keys::create)),
        endpoint(Method::GET, "/v1/keys", Query, get(keys::list)),
        endpoint(
            Method::DELETE,
            "/v1/keys/{id}",
            Query,
            axum::routing::delete(keys::revoke),
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

/// Builds the gateway's router over `state`, serving every surface.
pub fn router(state: AppState) -> Router {
    router_for(state, Surfaces::ALL)
}

/// Builds a router over `state` that serves only `surfaces` (and the open endpoints). The
/// routes of other surfaces stay routed, behind the same authentication, but answer 404.
pub fn router_for(state: AppState, surfaces: Surfaces) -> Router {
    router_with(state, surfaces, &GraphqlSettings::default())
}

/// As [`router_for`], with `/graphql` (served with the query surface) limited by
/// `settings` (see [`graphql`]).
pub fn router_with(state: AppState, surfaces: Surfaces, settings: &GraphqlSettings) -> Router {
    let graphql = surfaces
        .query
        .then(|| graphql::Graphql::new(state.clone(), surfaces, settings));
    let (protected, open): (Vec<_>, Vec<_>) =
        endpoints().into_iter().partition(|e| requires_auth(e.path));
    let add = |router: Router<AppState>, endpoints: Vec<Endpoint>| {
        endpoints.into_iter().fold(router, |r, e| {
            let handler = if surfaces.serves(e.surface) {
                e.handler
            } else {
                not_served(&e.method)
            };
            r.route(e.path, handler)
        })
    };
    // The rate limit runs after authentication (the later `route_layer` is the outer one).
    let protected = add(Router::new(), protected)
        .route_layer(axum::middleware::from_fn_with_state(
            state.rate_limit.clone(),
            rate_limit::limit,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.auth.clone(),
            auth::require_api_key,
        ));
    let cors = state.edge.cors();
    // Layers run from the last added (outermost) to the first.
    add(Router::new(), open)
        .merge(ui::routes())
        .merge(
            graphql
                .as_ref()
                .map(graphql::Graphql::routes)
                .unwrap_or_default(),
        )
        .merge(protected)
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.max_body_bytes))
        // Bodies sent with `Content-Encoding: gzip` or `zstd` are decoded as they are read;
        // other encodings pass, for the handler to refuse (see `edge::read_body`).
        .layer(
            RequestDecompressionLayer::new()
                .gzip(true)
                .zstd(true)
                .pass_through_unaccepted(true),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            edge::limits,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.drain.clone(),
            drain::count_in_flight,
        ))
        .layer(tower::util::option_layer(cors))
        .layer(trace::layer())
        .layer(axum::middleware::from_fn(edge::context))
        .with_state(state)
}

/// The handler of a route this node does not serve: a 404, as for an unknown route.
fn not_served(method: &Method) -> MethodRouter<AppState> {
    match MethodFilter::try_from(method.clone()) {
        Ok(filter) => on(filter, route_not_found),
        // Every endpoint uses a standard method, so this is not reached; a router without
        // methods would answer 405.
        Err(_) => MethodRouter::new(),
    }
}

/// The credential check of `/v1` paths, for requests that no authenticated route handles.
async fn authorize_v1(state: &AppState, uri: &Uri, headers: &HeaderMap) -> Result<(), ApiError> {
    if requires_auth(uri.path()) {
        auth::authenticate_headers(&state.auth, headers).await?;
    }
    Ok(())
}

async fn route_not_found(State(state): State<AppState>, uri: Uri, headers: HeaderMap) -> ApiError {
    match authorize_v1(&state, &uri, &headers).await {
        Err(unauthorized) => unauthorized,
        Ok(()) => ApiError::RouteNotFound {
            path: uri.path().to_owned(),
        },
    }
}

async fn method_not_allowed(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> ApiError {
    match authorize_v1(&state, &uri, &headers).await {
        Err(unauthorized) => unauthorized,
        Ok(()) => ApiError::MethodNotAllowed {
            method,
            path: uri.path().to_owned(),
        },
    }
}
