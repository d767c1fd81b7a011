//! `GET /v1/streams` and `GET /v1/streams/{stream}/events`.
//!
//! Contract:
//! - `GET /v1/streams` lists the configured streams:
//!   `{"streams": [{"name", "partitions", "description"}]}`, ordered by name.
//! - `GET /v1/streams/{stream}/events?limit=&cursor=` pages through the stream's stored raw
//!   events, newest first (by event time, then id): `{"events": [Event...], "next_cursor"}`.
//!   `limit` defaults to 100 and must be within 1..=1000 (400 otherwise). `next_cursor` is
//!   an opaque URL-safe string to pass back as `cursor` for the next page, or `null` when
//!   this page is the last one. A cursor the gateway did not issue is a 400; an unknown
//!   stream is a 404.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use tributary_core::EventId;
use tributary_core::ports::{EventCursor, EventPage};

use super::{PageQuery, invalid_cursor, known_stream, next_page};
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
) -> Result<Json<Value>, ApiError> {
    let stream = known_stream(&state, &stream)?;
    let (limit, after) = query.checked()?;
    let after = after
        .map(|(ts, id)| {
            let id = EventId::new(id).map_err(|_| invalid_cursor())?;
            Ok::<_, ApiError>(EventCursor { ts, id })
        })
        .transpose()?;
    // One more than asked tells whether another page follows.
    let page = EventPage {
        limit: limit + 1,
        after,
    };
    let mut events = state.ports.documents.recent_events(&stream, &page).await?;
    let next_cursor = next_page(&mut events, limit, |e| (e.ts, e.id.as_str()));
    Ok(Json(
        json!({ "events": events, "next_cursor": next_cursor }),
    ))
}
