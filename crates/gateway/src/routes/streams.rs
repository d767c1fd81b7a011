//! `/v1/streams`: the streams (listed, created, described, changed, deleted) and their
//! stored events.
//!
//! Contract:
//! - Every route sees only the streams of the caller's tenant ([`crate::tenancy`]): another
//!   tenant's stream is a 404, as an unknown one. Names are the tenant's own: another
//!   tenant may have a stream of the same name, and every name shown (a stream's, an
//!   event's `stream`) is the caller's.
//! - `GET /v1/streams` lists the streams, ordered by name: `{"streams": [Stream...]}`, a
//!   [`StreamView`] each (`name`, `partitions`, `description`, and the stored definition:
//!   `replication_factor`, `retention_ms`, `schema`, `origin`, `created_at`,
//!   `updated_at`); `GET /v1/streams/{stream}` describes one.
//! - `POST /v1/streams` (admin scope) creates a stream of the caller's tenant, with its
//!   Kafka topic (partitions, replication factor, `retention.ms`) and an optional JSON
//!   Schema its events' payloads must match: 201 with the stream and a `Location`. Unknown
//!   members are refused (422), as is a key given twice (400); a name the caller's tenant
//!   has is a 409 (another tenant's names are not in the way); an invalid name (one ending
//!   with `__` and 12 hexadecimal digits is reserved; a tenant other than `default` has
//!   names of at most 50 characters, see [Names](crate::catalog#names)), schema, partition
//!   count or retention, or settings the log refuses (such as more replicas than brokers),
//!   a 422 with the reason.
//! - `PATCH /v1/streams/{stream}` (admin scope; JSON merge patch: a member absent is kept,
//!   `null` clears it) changes `partitions` (more only, and not of a stream a pipeline
//!   reads), `retention_ms`, `schema` and `description`: 200 with the stream. A stream of
//!   the config file keeps the config's partitions and description (409).
//! - `DELETE /v1/streams/{stream}` (admin scope) deletes a stream and its topic (204): not a
//!   stream of the config file, nor one a pipeline reads (409).
//! - Other nodes see a change within [`crate::catalog::REFRESH_INTERVAL`] (2 s). A node
//!   without a stream store answers the changes 501.
//! - `GET /v1/streams/{stream}/events?limit=&cursor=` pages through the stream's stored raw
//!   events, newest first (by event time, then id): `{"events": [Event...], "next_cursor"}`.
//!   `limit` defaults to 100 and must be within 1..=1000 (400 otherwise); a page also
//!   stops before its items take more than `[http] max_page_bytes` (it holds at least one).
//!   `next_cursor` is an opaque URL-safe string to pass back as `cursor` for the next page,
//!   or `null` when this page is the last one. A cursor the gateway did not issue is a 400;
//!   an unknown stream is a 404.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::{Extension, Json};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use tributary_core::ports::{EventCursor, EventPage, StreamOrigin};
use tributary_core::{Event, EventId, StreamName, Timestamp};
use utoipa::ToSchema;

use super::{Listing, PageQuery, invalid_cursor};
use crate::AppState;
use crate::auth::Principal;
use crate::catalog::{NewStream, StreamChange, StreamEntry};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::openapi::{
    BadRequest, BodyErrors, InvalidStream, NotFound, StreamChanges, Unavailable, V1Errors, schemas,
};

/// The partitions of a stream created without `partitions`, as in the config file.
const DEFAULT_PARTITIONS: u32 = 3;

/// A stream, as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Stream)]
pub(crate) struct StreamView {
    #[schema(value_type = schemas::StreamName)]
    name: StreamName,
    /// Its number of partitions in the log.
    #[schema(minimum = 1)]
    partitions: u32,
    /// For people.
    #[schema(required = true)]
    description: Option<String>,
    /// How many copies of each partition the log keeps (null on the embedded log).
    #[schema(required = true)]
    replication_factor: Option<i32>,
    /// How long the log keeps its records, in milliseconds (`-1`: forever; null: the log's
    /// default).
    #[schema(required = true)]
    retention_ms: Option<i64>,
    /// The JSON Schema its events' payloads must match (null: any object).
    #[schema(required = true, value_type = Option<Object>)]
    schema: Option<Value>,
    /// `config` (the config file's `[[streams]]`) or `api`.
    #[schema(value_type = String, example = "api")]
    origin: StreamOrigin,
    /// When it was created (null for a stream the node knows only from its config).
    #[schema(required = true, value_type = Option<schemas::Timestamp>)]
    created_at: Option<Timestamp>,
    /// When it was last changed.
    #[schema(required = true, value_type = Option<schemas::Timestamp>)]
    updated_at: Option<Timestamp>,
}

impl StreamView {
    fn of(entry: &StreamEntry) -> Self {
        let stored = entry.stored.as_ref();
        Self {
            name: entry.name.clone(),
            partitions: entry.info.partitions,
            description: entry.info.description.clone(),
            replication_factor: stored.and_then(|s| s.replication_factor),
            retention_ms: stored.and_then(|s| s.retention_ms),
            schema: stored.and_then(|s| s.schema.clone()),
            origin: stored.map_or(StreamOrigin::Config, |s| s.origin),
            created_at: stored.map(|s| s.created_at),
            updated_at: stored.map(|s| s.updated_at),
        }
    }
}

/// The answer of `GET /v1/streams`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StreamList {
    streams: Vec<StreamView>,
}

/// The body of `POST /v1/streams`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = StreamRequest)]
pub(crate) struct CreateStream {
    /// Its name: unique in the caller's tenant (other tenants may have streams of the same
    /// name).
    #[schema(value_type = schemas::StreamName)]
    name: String,
    /// Its partitions (default 3).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1024)]
    partitions: Option<u32>,
    /// Copies of each partition (Kafka; default `[log.kafka] replication_factor`).
    #[serde(default)]
    #[schema(minimum = 1)]
    replication_factor: Option<i32>,
    /// Kafka's `retention.ms` (`-1`: forever; default: the broker's).
    #[serde(default)]
    retention_ms: Option<i64>,
    /// A JSON Schema its events' payloads must match.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    schema: Option<Value>,
    /// For people (at most 1000 characters).
    #[serde(default)]
    description: Option<String>,
}

/// The body of `PATCH /v1/streams/{stream}`: a JSON merge patch of the stream.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = StreamPatch)]
pub(crate) struct PatchStream {
    /// More partitions (never fewer).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1024)]
    partitions: Option<u32>,
    /// Another retention; null for the broker's default.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>)]
    retention_ms: Option<Option<i64>>,
    /// Another schema; null for none.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Object>)]
    schema: Option<Option<Value>>,
    /// Another description; null for none.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    description: Option<Option<String>>,
}

/// A member that is present, `null` or not: absent members are `None` (through
/// `#[serde(default)]`).
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// `POST /v1/streams`.
#[utoipa::path(
    post,
    path = "/v1/streams",
    tag = "streams",
    operation_id = "createStream",
    summary = "Creates a stream of the caller's tenant, with its Kafka topic (admin scope).",
    description = "The name is unique in the caller's tenant: each tenant names its streams in a namespace of its own, and a 409 only ever concerns the caller's tenant's names. A name ending with `__` and 12 hexadecimal digits is reserved; a tenant other than `default` has names of at most 50 characters. Other nodes know the stream within 2 s. A `schema` (JSON Schema, any draft; no remote `$ref`) is applied to each event's `payload` at ingestion: an event that fails it is refused (422) with the JSON pointer and reason of each violation, and kept as a dead letter.",
    request_body = CreateStream,
    responses(
        (status = 201, description = "Created.", body = StreamView, headers(("Location" = String, description = "`/v1/streams/{name}`."))),
        V1Errors, BadRequest, BodyErrors, StreamChanges, InvalidStream, Unavailable,
    ),
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiJson(body): ApiJson<CreateStream>,
) -> Result<Response, ApiError> {
    let name = StreamName::new(body.name.clone()).map_err(|error| ApiError::InvalidStream {
        reason: format!("name: {error}"),
    })?;
    let new = NewStream {
        name: name.clone(),
        tenant: principal.tenant.clone(),
        partitions: body.partitions.unwrap_or(DEFAULT_PARTITIONS),
        replication_factor: body.replication_factor,
        retention_ms: body.retention_ms,
        schema: body.schema,
        description: body.description.filter(|d| !d.trim().is_empty()),
    };
    let entry = state.streams.create(new).await?;
    tracing::info!(stream = %name, by = %principal.id, "stream created through the API");
    Ok(super::created(
        &format!("/v1/streams/{name}"),
        StreamView::of(&entry),
    ))
}

/// `GET /v1/streams/{stream}`.
#[utoipa::path(
    get,
    path = "/v1/streams/{stream}",
    tag = "streams",
    operation_id = "getStream",
    summary = "One stream.",
    params(("stream" = schemas::StreamName, Path, description = "A stream.")),
    responses(
        (status = 200, description = "The stream.", body = StreamView),
        V1Errors, NotFound,
    ),
)]
pub(crate) async fn describe(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath(stream): ApiPath<String>,
) -> Result<Json<StreamView>, ApiError> {
    let (_, entry) = state.stream_entry_for(&principal.tenant, &stream)?;
    Ok(Json(StreamView::of(&entry)))
}

/// `PATCH /v1/streams/{stream}`.
#[utoipa::path(
    patch,
    path = "/v1/streams/{stream}",
    tag = "streams",
    operation_id = "updateStream",
    summary = "Changes a stream (admin scope): a JSON merge patch.",
    description = "A member absent is kept; `null` clears it. Partitions can only grow, only on Kafka, and not for a stream a pipeline reads (its shards follow the partitions). A stream of the config file keeps the config's partitions and description. A new schema applies to events ingested from then on (on other nodes within 2 s).",
    params(("stream" = schemas::StreamName, Path, description = "A stream.")),
    request_body(content = PatchStream, content_type = "application/json"),
    responses(
        (status = 200, description = "The stream, changed.", body = StreamView),
        V1Errors, BadRequest, BodyErrors, NotFound, StreamChanges, InvalidStream, Unavailable,
    ),
)]
pub(crate) async fn update(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath(stream): ApiPath<String>,
    ApiJson(body): ApiJson<PatchStream>,
) -> Result<Json<StreamView>, ApiError> {
    let (name, _) = state.stream_entry_for(&principal.tenant, &stream)?;
    let change = StreamChange {
        partitions: body.partitions,
        retention_ms: body.retention_ms,
        schema: body.schema,
        description: body.description.map(|d| d.filter(|d| !d.trim().is_empty())),
    };
    let readers = state.readers_of(&name);
    let entry = state
        .streams
        .update(&name, &principal.tenant, change, &readers)
        .await?;
    tracing::info!(stream = %name, by = %principal.id, "stream changed through the API");
    Ok(Json(StreamView::of(&entry)))
}

/// `DELETE /v1/streams/{stream}`.
#[utoipa::path(
    delete,
    path = "/v1/streams/{stream}",
    tag = "streams",
    operation_id = "deleteStream",
    summary = "Deletes a stream and its Kafka topic (admin scope).",
    description = "Not a stream of the config file, nor one a pipeline reads (409). Its stored raw events and dead letters are kept. On the embedded log the records are kept, and a stream created again with the name finds them.",
    params(("stream" = schemas::StreamName, Path, description = "A stream.")),
    responses(
        (status = 204, description = "Deleted."),
        V1Errors, NotFound, StreamChanges, Unavailable,
    ),
)]
pub(crate) async fn delete(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath(stream): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let (name, _) = state.stream_entry_for(&principal.tenant, &stream)?;
    let readers = state.readers_of(&name);
    state
        .streams
        .delete(&name, &principal.tenant, &readers)
        .await?;
    tracing::info!(stream = %name, by = %principal.id, "stream deleted through the API");
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/streams`.
#[utoipa::path(
    get,
    path = "/v1/streams",
    tag = "streams",
    operation_id = "listStreams",
    summary = "The caller's tenant's streams, ordered by name.",
    responses((status = 200, description = "The streams.", body = StreamList), V1Errors),
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Json<StreamList> {
    Json(StreamList {
        streams: describe_all(&state, &principal.tenant),
    })
}

/// The streams of `tenant` as `GET /v1/streams` lists them.
pub(crate) fn describe_all(state: &AppState, tenant: &str) -> Vec<StreamView> {
    state
        .streams_of(tenant)
        .iter()
        .map(|entry| StreamView::of(entry))
        .collect()
}

/// `GET /v1/streams/{stream}/events`.
#[utoipa::path(
    get,
    path = "/v1/streams/{stream}/events",
    tag = "streams",
    operation_id = "listEvents",
    summary = "The stream's stored events, newest first (by event time, then id).",
    description = "A page holds at most `limit` events, and stops before they take more than `[http] max_page_bytes` (4 MiB by default; a page holds at least one); `next_cursor` continues after its last item.",
    params(("stream" = schemas::StreamName, Path, description = "A configured stream."), PageQuery),
    responses(
        (status = 200, description = "One page of events.", body = schemas::EventPage),
        V1Errors, BadRequest, NotFound, Unavailable,
    ),
)]
pub(crate) async fn recent_events(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath(stream): ApiPath<String>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Response, ApiError> {
    page(&state, &principal.tenant, &stream, &query, None).await
}

/// A page of `stream`'s stored events (a stream of `tenant`) as
/// `GET /v1/streams/{stream}/events` answers it,
/// holding only events at or after `since` when given (the page then ends, with a `null`
/// cursor, at the first older event).
pub(crate) async fn page(
    state: &AppState,
    tenant: &str,
    stream: &str,
    query: &PageQuery,
    since: Option<Timestamp>,
) -> Result<Response, ApiError> {
    let (stream, entry) = state.stream_entry_for(tenant, stream)?;
    let shown = (entry.name != stream).then(|| entry.name.clone());
    let (limit, after) = query.checked()?;
    if let Some((_, id)) = &after {
        EventId::new(id.clone()).map_err(|_| invalid_cursor())?;
    }
    let documents = &state.ports.documents;
    Listing {
        member: "events",
        limit,
        after,
    }
    .read(
        &state.edge,
        |limit, after| {
            let (stream, shown) = (&stream, &shown);
            async move {
                let after = after
                    .map(|(ts, id)| {
                        let id = EventId::new(id).map_err(|_| invalid_cursor())?;
                        Ok::<_, ApiError>(EventCursor { ts, id })
                    })
                    .transpose()?;
                let page = EventPage { limit, after };
                let mut events = documents.recent_events(stream, &page).await?;
                if let Some(since) = since {
                    // Newest first: the events from the first older one on are older too.
                    let kept = events.iter().take_while(|e| e.ts >= since).count();
                    events.truncate(kept);
                }
                if let Some(shown) = shown {
                    for event in &mut events {
                        event.stream = shown.clone();
                    }
                }
                Ok(events)
            }
        },
        |e: &Event| (e.ts, e.id.as_str()),
    )
    .await
}
