//! `GET /v1/streams` and `GET /v1/streams/{stream}/events`.
//!
//! Contract:
//! - `GET /v1/streams` lists the configured streams:
//!   `{"streams": [{"name", "partitions", "description"}]}`, ordered by name.
//! - `GET /v1/streams/{stream}/events?limit=&cursor=` pages through the stream's stored raw
//!   events, newest first (by event time, then id): `{"events": [Event...], "next_cursor"}`.
//!   `limit` defaults to 100 and must be within 1..=1000 (400 otherwise); a page also
//!   stops before its items take more than `[http] max_page_bytes` (it holds at least one).
//!   `next_cursor` is an opaque URL-safe string to pass back as `cursor` for the next page,
//!   or `null` when this page is the last one. A cursor the gateway did not issue is a 400;
//!   an unknown stream is a 404.

use axum::Json;
use axum::extract::State;
use axum::response::Response;
use serde_json::{Value, json};
use tributary_core::ports::{EventCursor, EventPage};
use tributary_core::{Event, EventId};

use super::{Listing, PageQuery, invalid_cursor, known_stream};
use crate::AppState;
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery};

/// `GET /v1/streams`.
pub(crate) async fn list(State(state): State<AppState>) -> Json<Value> {
    let streams: Vec<Value> = state
        .streams
        .iter()
        .map(|(name, info)| {
            json!({
                "name": name,
                "partitions": info.partitions,
                "description": info.description,
            })
        })
        .collect();
    Json(json!({ "streams": streams }))
}

/// `GET /v1/streams/{stream}/events`.
pub(crate) async fn recent_events(
    State(state): State<AppState>,
    ApiPath(stream): ApiPath<String>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Response, ApiError> {
    let stream = known_stream(&state, &stream)?;
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
                Ok(documents.recent_events(stream, &page).await?)
            }
        },
        |e: &Event| (e.ts, e.id.as_str()),
    )
    .await
}
