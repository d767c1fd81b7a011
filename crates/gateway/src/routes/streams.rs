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
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::{Value, json};
use tributary_core::ports::{EventCursor, EventPage};
use tributary_core::{EventId, Timestamp};

use super::{known_stream, limit_param};
use crate::AppState;
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery};

/// Default page size of the events endpoint.
const DEFAULT_LIMIT: usize = 100;
/// Largest page size of the events endpoint.
const MAX_LIMIT: usize = 1000;

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

/// The query string of the events endpoint.
#[derive(Debug, Deserialize)]
pub(crate) struct EventsQuery {
    limit: Option<usize>,
    cursor: Option<String>,
}

/// `GET /v1/streams/{stream}/events`.
pub(crate) async fn recent_events(
    State(state): State<AppState>,
    ApiPath(stream): ApiPath<String>,
    ApiQuery(query): ApiQuery<EventsQuery>,
) -> Result<Json<Value>, ApiError> {
    let stream = known_stream(&state, &stream)?;
    let limit = limit_param(query.limit, DEFAULT_LIMIT, MAX_LIMIT)?;
    let after = query.cursor.as_deref().map(decode_cursor).transpose()?;
    // One more than asked tells whether another page follows.
    let page = EventPage {
        limit: limit + 1,
        after,
    };
    let mut events = state.ports.documents.recent_events(&stream, &page).await?;
    let next_cursor = if events.len() > limit {
        events.truncate(limit);
        events.last().map(|e| {
            encode_cursor(&EventCursor {
                ts: e.ts,
                id: e.id.clone(),
            })
        })
    } else {
        None
    };
    Ok(Json(
        json!({ "events": events, "next_cursor": next_cursor }),
    ))
}

/// `{ts_millis}:{id}`, base64url without padding.
fn encode_cursor(cursor: &EventCursor) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{}", cursor.ts.millis(), cursor.id))
}

fn decode_cursor(text: &str) -> Result<EventCursor, ApiError> {
    let invalid = || ApiError::InvalidParameter {
        name: "cursor",
        reason: "is not a cursor returned as next_cursor by this endpoint".to_owned(),
    };
    let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let (millis, id) = text.split_once(':').ok_or_else(invalid)?;
    let ts = millis
        .parse::<i64>()
        .map(Timestamp::from_millis)
        .map_err(|_| invalid())?;
    let id = EventId::new(id).map_err(|_| invalid())?;
    Ok(EventCursor { ts, id })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        let cursor = EventCursor {
            ts: Timestamp::from_millis(-5),
            id: EventId::new("a:b/c?d").unwrap(),
        };
        let text = encode_cursor(&cursor);
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(decode_cursor(&text).unwrap(), cursor);
        for bad in ["", "!!", "MTIz", &URL_SAFE_NO_PAD.encode("x:id")] {
            assert!(decode_cursor(bad).is_err(), "{bad:?} accepted");
        }
    }
}
