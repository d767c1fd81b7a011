//! The schema's roots. Every resolver calls the function of the REST handler it mirrors
//! (same checks, same limits, same errors) and decodes its JSON into the types of
//! [`super::types`]; an error is the REST problem document, as the GraphQL error's
//! `extensions` (`type`, `title`, `status`, `detail` and the problem's other members).
//! Each passes the tenant of the request's [`Principal`] as the REST handler does, so a
//! field sees only what that tenant's REST calls see ([`crate::tenancy`]).

use std::sync::Arc;

use async_graphql::futures_util::Stream as FutureStream;
use async_graphql::futures_util::stream;
use async_graphql::{Context, Error, ErrorExtensions, Json, Object, Subscription};
use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::broadcast;
use tributary_core::ports::Scope;

use super::live::{Hub, ResultsUpdate};
use super::types::{Accepted, DeadLetterPage, EventPage, Pipeline, PipelineResults, Stream};
use crate::auth::Principal;
use crate::error::{ApiError, LoggedError};
use crate::extract::ApiPath;
use crate::routes::pipelines::{ResultsQuery, time_param};
use crate::routes::{PageQuery, dead_letters, ingest, pipelines, streams};
use crate::{AppState, Surfaces};

/// What the resolvers share: the gateway's state, the surfaces the node serves, and the
/// pollers of live results.
#[derive(Debug, Clone)]
pub(crate) struct Shared {
    pub state: AppState,
    pub surfaces: Surfaces,
    pub hub: Hub,
}

/// The default page size of `events` and `deadLetters` (as the REST API's), for the cost
/// of a query that does not give `limit`.
const DEFAULT_PAGE_LIMIT: usize = 100;
/// The default `limit` of `pipelineResults` (as the REST API's).
const DEFAULT_RESULTS_LIMIT: usize = 1000;

/// The queries.
#[derive(Debug, Default)]
pub(crate) struct QueryRoot;

#[Object]
impl QueryRoot {
    /// The streams, ordered by name (`GET /v1/streams`).
    async fn streams(&self, ctx: &Context<'_>) -> Result<Vec<Stream>, Error> {
        let (shared, principal) = allowed(ctx, Scope::Read).await?;
        let streams = streams::describe_all(&shared.state, &principal.tenant);
        decode(serde_json::to_value(streams).unwrap_or_default())
    }

    /// A page of a stream's stored events, newest first (`GET
    /// /v1/streams/{stream}/events`): at most `limit` (default 100, within 1..=1000) and
    /// `[http] max_page_bytes`, after `cursor` (the `next_cursor` of the previous page).
    /// With `since` (RFC 3339 or epoch milliseconds), only events at or after that time.
    /// Its cost is `limit` times that of the fields selected.
    #[graphql(complexity = "limit.unwrap_or(DEFAULT_PAGE_LIMIT).saturating_mul(child_complexity)")]
    async fn events(
        &self,
        ctx: &Context<'_>,
        stream: String,
        limit: Option<usize>,
        cursor: Option<String>,
        since: Option<String>,
    ) -> Result<EventPage, Error> {
        let (shared, principal) = allowed(ctx, Scope::Read).await?;
        let since = match since.as_deref().map(|t| time_param("since", t)) {
            Some(Err(error)) => return Err(graphql_error(error).await),
            Some(Ok(since)) => Some(since),
            None => None,
        };
        let query = PageQuery::new(limit, cursor);
        let page = streams::page(&shared.state, &principal.tenant, &stream, &query, since).await;
        decode(json_of(page).await?)
    }

    /// The configured pipelines with their cached status (`GET /v1/pipelines`).
    async fn pipelines(&self, ctx: &Context<'_>) -> Result<Vec<Pipeline>, Error> {
        let (shared, principal) = allowed(ctx, Scope::Read).await?;
        recode(&pipelines::describe_all(&shared.state, &principal.tenant).await)
    }

    /// A pipeline's results (`GET /v1/pipelines/{name}/results`): windows starting from
    /// `from` (inclusive) to `to` (exclusive), RFC 3339 or epoch milliseconds; of `key` when
    /// given; at most `limit` (default 1000, within 1..=10000) rows. Its cost is `limit`
    /// times that of the fields selected.
    #[graphql(
        complexity = "limit.unwrap_or(DEFAULT_RESULTS_LIMIT).saturating_mul(child_complexity)"
    )]
    async fn pipeline_results(
        &self,
        ctx: &Context<'_>,
        pipeline: String,
        from: Option<String>,
        to: Option<String>,
        key: Option<String>,
        limit: Option<usize>,
    ) -> Result<PipelineResults, Error> {
        let (shared, principal) = allowed(ctx, Scope::Read).await?;
        let query = ResultsQuery {
            from,
            to,
            key,
            limit,
        };
        match pipelines::query_results(&shared.state, &principal.tenant, &pipeline, query).await {
            Ok(results) => recode(&results),
            Err(error) => Err(graphql_error(error).await),
        }
    }

    /// A page of dead letters, newest first (`GET /v1/dead-letters`), with the `limit` and
    /// `cursor` of `events`. Its cost is `limit` times that of the fields selected.
    #[graphql(complexity = "limit.unwrap_or(DEFAULT_PAGE_LIMIT).saturating_mul(child_complexity)")]
    async fn dead_letters(
        &self,
        ctx: &Context<'_>,
        limit: Option<usize>,
        cursor: Option<String>,
    ) -> Result<DeadLetterPage, Error> {
        let (shared, principal) = allowed(ctx, Scope::Read).await?;
        let query = PageQuery::new(limit, cursor);
        let page = dead_letters::page(&shared.state, &principal.tenant, &query).await;
        decode(json_of(page).await?)
    }
}

/// The mutations.
#[derive(Debug, Default)]
pub(crate) struct MutationRoot;

#[Object]
impl MutationRoot {
    /// Appends `events` (event objects, as the body of `POST /v1/streams/{stream}/events`
    /// holds them) to `stream`, all or nothing, answering once they are durable. It is that
    /// endpoint: the same checks, limits and errors (a refusal for what was sent is kept as
    /// a dead letter), with the events sent as a JSON array.
    async fn ingest(
        &self,
        ctx: &Context<'_>,
        stream: String,
        events: Vec<Json<Value>>,
    ) -> Result<Accepted, Error> {
        let (shared, principal) = allowed(ctx, Scope::Ingest).await?;
        if !shared.surfaces.ingest {
            return Err(graphql_error(ApiError::RouteNotFound {
                path: format!("/v1/streams/{stream}/events"),
            })
            .await);
        }
        let body = serde_json::to_vec(&events).map_err(|e| Error::new(e.to_string()))?;
        let request = Request::post(format!("/v1/streams/{stream}/events"))
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CONTENT_LENGTH, body.len())
            .body(Body::from(body))
            .map_err(|e| Error::new(e.to_string()))?;
        let response = ingest::ingest(
            State(shared.state.clone()),
            Extension(principal.clone()),
            ApiPath(stream),
            request,
        )
        .await;
        decode(json_of(Ok(response)).await?)
    }
}

/// The subscriptions.
#[derive(Debug, Default)]
pub(crate) struct SubscriptionRoot;

#[Subscription]
impl SubscriptionRoot {
    /// The results of `pipeline`'s checkpoints as they commit: one update per checkpoint
    /// observed (the node reads the pipeline's status every `[graphql] poll_interval`),
    /// holding the rows it wrote that the previous update did not.
    async fn pipeline_results(
        &self,
        ctx: &Context<'_>,
        pipeline: String,
    ) -> Result<impl FutureStream<Item = ResultsUpdate> + use<>, Error> {
        let (shared, principal) = allowed(ctx, Scope::Read).await?;
        if let Err(error) = shared.state.pipeline_for(&principal.tenant, &pipeline) {
            return Err(graphql_error(error).await);
        }
        let receiver = shared.hub.subscribe(&shared.state, &pipeline);
        Ok(stream::unfold(receiver, move |mut receiver| async move {
            loop {
                match receiver.recv().await {
                    Ok(update) => return Some((Arc::unwrap_or_clone(update), receiver)),
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::debug!(missed, "a slow subscriber missed result updates");
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        }))
    }
}

/// What the resolvers share, and the request's principal, when it holds `scope` (a 403
/// problem otherwise, as for a `/v1` route).
async fn allowed<'a>(
    ctx: &Context<'a>,
    scope: Scope,
) -> Result<(&'a Shared, &'a Principal), Error> {
    let principal = ctx.data::<Principal>()?;
    if let Err(forbidden) = principal.require(scope) {
        return Err(graphql_error(forbidden).await);
    }
    Ok((ctx.data::<Shared>()?, principal))
}

/// `value` as a `T`; a REST answer that does not decode is a bug, reported as such.
/// A REST answer as its GraphQL type (see [`decode`]).
fn recode<T: DeserializeOwned>(answer: &impl serde::Serialize) -> Result<T, Error> {
    let value = serde_json::to_value(answer).map_err(|error| {
        tracing::error!(%error, "a REST answer does not encode");
        Error::new("internal error: the answer could not be encoded; the incident was logged")
    })?;
    decode(value)
}

fn decode<T: DeserializeOwned>(value: Value) -> Result<T, Error> {
    serde_json::from_value(value).map_err(|error| {
        tracing::error!(%error, "a REST answer does not match its GraphQL type");
        Error::new("internal error: the answer could not be encoded; the incident was logged")
    })
}

/// The JSON body of a REST function's answer; an error status is the GraphQL error of its
/// problem document.
async fn json_of(answer: Result<Response, ApiError>) -> Result<Value, Error> {
    let response = answer.unwrap_or_else(IntoResponse::into_response);
    let status = response.status();
    if let Some(logged) = response.extensions().get::<LoggedError>()
        && logged.server_fault
    {
        tracing::error!(status = status.as_u16(), error = %logged.message, "GraphQL field failed");
    }
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .map_err(|e| Error::new(e.to_string()))?;
    let value: Value = serde_json::from_slice(&body).map_err(|e| Error::new(e.to_string()))?;
    if status.is_success() {
        Ok(value)
    } else {
        Err(problem_error(value))
    }
}

/// The GraphQL error of `error`: its problem document as extensions.
pub(crate) async fn graphql_error(error: ApiError) -> Error {
    match json_of(Err(error)).await {
        Err(error) => error,
        // An error is never answered with a success status.
        Ok(value) => problem_error(value),
    }
}

/// The GraphQL error of a problem document: its `detail` as message, its members as
/// extensions.
fn problem_error(problem: Value) -> Error {
    let detail = problem["detail"]
        .as_str()
        .map_or_else(|| problem.to_string(), str::to_owned);
    let Value::Object(members) = problem else {
        return Error::new(detail);
    };
    Error::new(detail).extend_with(|_, extensions| {
        for (name, value) in members {
            if let Ok(value) = async_graphql::Value::from_json(value) {
                extensions.set(name, value);
            }
        }
    })
}
