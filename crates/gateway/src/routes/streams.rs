//! `GET /v1/streams` and `GET /v1/streams/{stream}/events`.
//!
//! Contract:
//! - Both see only the streams of the caller's tenant ([`crate::tenancy`]): another
//!   tenant's stream is a 404, as an unknown one.
//! - `GET /v1/streams` lists the configured streams:
//!   `{"streams": [{"name", "partitions", "description"}]}`, ordered by name.
//! - `GET /v1/streams/{stream}/events?limit=&cursor=` pages through the stream's stored raw
//!   events, newest first (by event time, then id): `{"events": [Event...], "next_cursor"}`.
//!   `limit` defaults to 100 and must be within 1..=1000 (400 otherwise); a page also
//!   stops before its items take more than `[http] max_page_bytes` (it holds at least one).
//!   `next_cursor` is an opaque URL-safe string to pass back as `cursor` for the next page,
//!   or `null` when this page is the last one. A cursor the gateway did not issue is a 400;
//!   an unknown stream is a 404.

use axum::extract::State;
use axum::response::Response;
use axum::{Extension, Json};
use serde_json::{Value, json};
use tributary_core::ports::{EventCursor, EventPage};
use tributary_core::{Event, EventId, Timestamp};

use super::{Listing, PageQuery, invalid_cursor};
use crate::AppState;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery};
use crate::openapi::{BadRequest, NotFound, Unavailable, V1Errors, schemas};

/// `GET /v1/streams`.
#[utoipa::path(
    get,
    path = "/v1/streams",
    tag = "streams",
    operation_id = "listStreams",
    summary = "The configured streams, ordered by name.",
    responses((status = 200, description = "The streams.", body = schemas::StreamList), V1Errors),
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Json<Value> {
    Json(json!({ "streams": describe_all(&state, &principal.tenant) }))
}

/// The streams of `tenant` as `GET /v1/streams` lists them.
pub(crate) fn describe_all(state: &AppState, tenant: &str) -> Vec<Value> {
    state
        .streams_of(tenant)
        .map(|(name, info)| {
            json!({
                "name": name,
                "partitions": info.partitions,
                "description": info.description,
            })
        })
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
    let stream = state.stream_for(tenant, stream)?;
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
            let stream = &stream;
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
                Ok(events)
            }
        },
        |e: &Event| (e.ts, e.id.as_str()),
    )
    .await
}
