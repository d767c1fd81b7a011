//! GraphQL at `/graphql`: the REST API's queries, ingestion as a mutation, and live
//! pipeline results as a subscription over WebSocket.
//!
//! Contract:
//! - `POST /graphql` takes one GraphQL request as `application/json` (`{"query",
//!   "variables", "operationName"}`; a batch is refused) and answers `200` with the GraphQL
//!   response. It needs the same credential as `/v1` (the `/v1` middleware guards it: 401
//!   problem otherwise), and its body is read as an ingestion body is (size, time, room and
//!   `Content-Encoding`, see [`crate::edge`]). A body that is not a GraphQL request is a 400
//!   problem, another content type a 415.
//! - Every field calls the function of the REST endpoint it mirrors ([`schema`]): the same
//!   checks, page limits and errors, the same field names. A field's error carries the REST
//!   problem document as its `extensions`.
//! - A query deeper than [`GraphqlSettings::max_depth`] or costing more than
//!   [`GraphqlSettings::max_complexity`] (a list field costs its `limit`, or its default,
//!   times its selection) is refused whole, with a GraphQL error and no data. Introspection
//!   is refused when [`GraphqlSettings::introspection`] is off.
//! - `GET /graphql` with a WebSocket upgrade serves subscriptions (and queries) over the
//!   `graphql-transport-ws` protocol (and the older `graphql-ws`). The credential is the
//!   upgrade's `Authorization` header (a wrong one is a 401) or, without it, the
//!   `Authorization` member of the `connection_init` payload (`{"Authorization": "Bearer
//!   <key>"}`); a connection with neither is closed at `connection_init` (close code 1002,
//!   the reason naming what is missing). When the node drains ([`crate::Drain`]), every
//!   WebSocket is closed with code 1001 (going away) and its subscriptions end, so that
//!   clients reconnect to another node; the drain does not wait for them.
//! - `GET /graphql` without an upgrade is the GraphiQL page (when
//!   [`GraphqlSettings::graphiql`]; a 404 otherwise). The page holds no data and needs no
//!   credential; it loads GraphiQL from a CDN (unpkg.com), so it needs Internet access in
//!   the browser.
//! - `/graphql` is served by nodes serving queries ([`Surfaces::query`]); the `ingest`
//!   mutation answers as an unknown route where the node does not serve ingestion.

mod introspection;
mod live;
mod schema;
mod types;

use std::time::Duration;

use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql::{Data, Schema};
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Json, Router};
use futures::stream::SplitSink;
use futures::{SinkExt as _, StreamExt as _};

use tributary_core::json::{self, StrictError};
use tributary_core::parse::ParseError;

use self::live::Hub;
use self::schema::{MutationRoot, QueryRoot, Shared, SubscriptionRoot};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::{ApiKeys, AppState, Surfaces, auth, edge, rate_limit};

/// The default of [`GraphqlSettings::max_depth`]: deep enough for GraphiQL's introspection
/// query (13 levels), far from what a recursive abuse needs.
pub const DEFAULT_MAX_DEPTH: usize = 16;

/// The default of [`GraphqlSettings::max_complexity`]: a full page of events (1000) with a
/// dozen fields selected, or a few default pages side by side.
pub const DEFAULT_MAX_COMPLEXITY: usize = 20_000;

/// The default of [`GraphqlSettings::poll_interval`].
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(250);

/// The limits and options of `/graphql`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphqlSettings {
    /// The deepest selection a query may nest (fields within fields).
    pub max_depth: usize,
    /// The most a query may cost: each field costs 1, a list field its page size (`limit`,
    /// or its default) times its selection.
    pub max_complexity: usize,
    /// Whether the schema may be introspected (`__schema`, `__type`).
    pub introspection: bool,
    /// Whether `GET /graphql` serves the GraphiQL page.
    pub graphiql: bool,
    /// How often a pipeline with subscribers has its status read, to push the results of
    /// its new checkpoints.
    pub poll_interval: Duration,
}

impl GraphqlSettings {
    /// Checks that the settings can be used: limits of at least 1, a poll interval longer
    /// than zero.
    ///
    /// # Errors
    /// What is wrong, naming the setting.
    pub fn check(&self) -> Result<(), String> {
        if self.max_depth == 0 {
            return Err("max_depth must be at least 1".to_owned());
        }
        if self.max_complexity == 0 {
            return Err("max_complexity must be at least 1".to_owned());
        }
        if self.poll_interval.is_zero() {
            return Err("poll_interval must be longer than 0s".to_owned());
        }
        Ok(())
    }
}

impl Default for GraphqlSettings {
    fn default() -> Self {
        Self {
            max_depth: DEFAULT_MAX_DEPTH,
            max_complexity: DEFAULT_MAX_COMPLEXITY,
            introspection: true,
            graphiql: true,
            poll_interval: DEFAULT_POLL_INTERVAL,
        }
    }
}

/// The schema, and what its handlers need. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Graphql {
    schema: Schema<QueryRoot, MutationRoot, SubscriptionRoot>,
    state: AppState,
    graphiql: bool,
}

impl Graphql {
    /// The schema over `state`, for a node serving `surfaces`, limited by `settings`.
    pub(crate) fn new(state: AppState, surfaces: Surfaces, settings: &GraphqlSettings) -> Self {
        let shared = Shared {
            state: state.clone(),
            surfaces,
            hub: Hub::new(settings.poll_interval),
        };
        let mut builder = Schema::build(QueryRoot, MutationRoot, SubscriptionRoot)
            .data(shared)
            .limit_depth(settings.max_depth)
            .limit_complexity(settings.max_complexity);
        if !settings.introspection {
            builder = builder
                .disable_introspection()
                .extension(introspection::RefuseIntrospection);
        }
        Self {
            schema: builder.finish(),
            state,
            graphiql: settings.graphiql,
        }
    }

    /// `POST /graphql` (behind the credential check and the rate limit of `/v1`) and `GET
    /// /graphql` (subscriptions, which check the credential themselves, and the page).
    pub(crate) fn routes(&self) -> Router<AppState> {
        let execute = post(execute)
            .route_layer(axum::middleware::from_fn_with_state(
                self.state.rate_limit.clone(),
                rate_limit::limit,
            ))
            .route_layer(axum::middleware::from_fn_with_state(
                self.state.auth.clone(),
                authenticate,
            ));
        Router::new().route(
            "/graphql",
            execute
                .get(page_or_subscribe)
                .layer(Extension(self.clone())),
        )
    }
}

/// Middleware of `POST /graphql`: lets the request through only with a credential the
/// `/v1` routes accept, with its [`Principal`] in the extensions. Unlike a `/v1` route,
/// the request needs no scope as a whole: each field checks its own (`read` for queries
/// and subscriptions, `ingest` for the `ingest` mutation).
async fn authenticate(State(keys): State<ApiKeys>, mut request: Request, next: Next) -> Response {
    match auth::authenticate_headers(&keys, request.headers()).await {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(error) => error.into_response(),
    }
}

impl std::fmt::Debug for Graphql {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Graphql")
            .field("graphiql", &self.graphiql)
            .finish_non_exhaustive()
    }
}

/// The media type of a GraphQL request.
const ACCEPTED: &[&str] = &["application/json"];

/// `POST /graphql`.
async fn execute(Extension(graphql): Extension<Graphql>, request: Request) -> Response {
    if let Err(error) = check_json(request.headers()) {
        return error.into_response();
    }
    let Some(principal) = request.extensions().get::<Principal>().cloned() else {
        // `authenticate` runs first: not reached.
        return ApiError::Unauthorized { presented: false }.into_response();
    };
    let body = match edge::read_body(&graphql.state, request).await {
        Ok(body) => body,
        Err((error, _)) => return error.into_response(),
    };
    let parsed = graphql_request(&body.bytes);
    drop(body);
    match parsed {
        Ok(request) => Json(graphql.schema.execute(request.data(principal)).await).into_response(),
        Err(error) => error.into_response(),
    }
}

/// The GraphQL request of a body, read as the ingestion body is: an object holding a key
/// twice (at any depth, in `variables` too) is a 400 naming the key
/// ([`tributary_core::json`]); anything else that is not one GraphQL request, a 400.
fn graphql_request(body: &[u8]) -> Result<async_graphql::Request, ApiError> {
    let not_a_request = |error: &dyn std::fmt::Display| ApiError::InvalidParameter {
        name: "body",
        reason: format!(
            "is not one GraphQL request ({{\"query\", \"variables\", \"operationName\"}}): {error}"
        ),
    };
    let value = match json::from_slice(body) {
        Ok(value) => value,
        Err(StrictError::DuplicateKey { key, line, column }) => {
            return Err(ApiError::Events(ParseError::DuplicateKey {
                key,
                line,
                column,
            }));
        }
        Err(StrictError::Malformed(error)) => return Err(not_a_request(&error)),
    };
    serde_json::from_value(value).map_err(|error| not_a_request(&error))
}

/// A 415 unless the body is `application/json` (in UTF-8).
fn check_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let found = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let json = found.as_deref().is_some_and(|text| {
        let mut parts = text.split(';');
        let essence = parts.next().unwrap_or_default().trim();
        essence.eq_ignore_ascii_case("application/json")
            && parts.all(|param| match param.split_once('=') {
                Some((name, value)) if name.trim().eq_ignore_ascii_case("charset") => {
                    let value = value.trim().trim_matches('"');
                    value.eq_ignore_ascii_case("utf-8") || value.eq_ignore_ascii_case("utf8")
                }
                _ => true,
            })
    });
    if json {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType {
            found,
            accepted: ACCEPTED,
        })
    }
}

/// `GET /graphql`: a WebSocket upgrade serves subscriptions, anything else the page.
async fn page_or_subscribe(Extension(graphql): Extension<Graphql>, request: Request) -> Response {
    let upgrade = request
        .headers()
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    if upgrade {
        subscribe(graphql, request).await
    } else if graphql.graphiql {
        Html(GRAPHIQL_PAGE).into_response()
    } else {
        ApiError::RouteNotFound {
            path: request.uri().path().to_owned(),
        }
        .into_response()
    }
}

/// The GraphiQL page.
const GRAPHIQL_PAGE: &str = include_str!("graphiql.html");

/// Upgrades `request` to a GraphQL WebSocket connection, checking its credential.
async fn subscribe(graphql: Graphql, request: Request) -> Response {
    let (mut parts, _body) = request.into_parts();
    // A credential in the upgrade's header is checked now; without one, at connection_init.
    let mut principal = None;
    if parts.headers.contains_key(header::AUTHORIZATION) {
        match auth::authenticate_headers(&graphql.state.auth, &parts.headers).await {
            Ok(accepted) => principal = Some(accepted),
            Err(error) => return error.into_response(),
        }
    }
    let Ok(protocol) = GraphQLProtocol::from_request_parts(&mut parts, &()).await else {
        return ApiError::InvalidParameter {
            name: "sec-websocket-protocol",
            reason: "must name graphql-transport-ws (or graphql-ws)".to_owned(),
        }
        .into_response();
    };
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            return ApiError::InvalidParameter {
                name: "upgrade",
                reason: rejection.body_text(),
            }
            .into_response();
        }
    };
    let keys = graphql.state.auth.clone();
    let schema = graphql.schema.clone();
    let drain = graphql.state.drain.clone();
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| async move {
            let (mut sink, stream) = socket.split();
            // The client's messages end when the node drains, which ends the connection's
            // subscriptions.
            let stream = stream.take_until(drain.started());
            GraphQLWebSocket::new_with_pair(&mut sink, stream, schema, protocol)
                .on_connection_init(move |payload| async move {
                    let principal = match principal {
                        Some(principal) => principal,
                        None => authorize_init(&keys, &payload).await?,
                    };
                    let mut data = Data::default();
                    data.insert(principal);
                    Ok(data)
                })
                .serve()
                .await;
            if drain.is_draining() {
                going_away(&mut sink).await;
            }
        })
}

/// How long a draining node waits for a client to take its WebSocket's close frame.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Closes a WebSocket as a draining node does: a close frame `1001` (going away), so that
/// the client reconnects elsewhere, sent within [`CLOSE_TIMEOUT`] (a client that reads
/// nothing does not hold the node).
async fn going_away(sink: &mut SplitSink<WebSocket, Message>) {
    let frame = CloseFrame {
        code: close_code::AWAY,
        reason: "the node is shutting down: reconnect".into(),
    };
    let close = async {
        sink.send(Message::Close(Some(frame))).await?;
        sink.close().await
    };
    match tokio::time::timeout(CLOSE_TIMEOUT, close).await {
        Ok(Ok(())) => tracing::debug!("WebSocket closed: the node drains"),
        Ok(Err(error)) => tracing::debug!(%error, "WebSocket close frame not sent"),
        Err(_) => tracing::debug!("WebSocket close frame not taken in time"),
    }
}

/// The principal of the `Authorization` member of a `connection_init` payload, checked as
/// the `/v1` middleware checks the header.
async fn authorize_init(
    keys: &ApiKeys,
    payload: &serde_json::Value,
) -> async_graphql::Result<Principal> {
    let value = payload
        .get("Authorization")
        .or_else(|| payload.get("authorization"))
        .and_then(serde_json::Value::as_str)
        .and_then(|text| HeaderValue::from_str(text).ok());
    let mut headers = HeaderMap::new();
    if let Some(value) = value {
        headers.insert(header::AUTHORIZATION, value);
    }
    auth::authenticate_headers(keys, &headers)
        .await
        .map_err(|error| {
            async_graphql::Error::new(format!(
                "{error}: connection_init needs {{\"Authorization\": \"Bearer <key>\"}}"
            ))
        })
}
