//! `POST /v1/streams/{stream}/events`: validates a batch of events and appends it to the log.
//!
//! Contract:
//! - The stream must be configured, and be of the caller's tenant (404 otherwise, also for
//!   an invalid name or another tenant's stream, see [`crate::tenancy`]). The path names it
//!   in the caller's tenant; the events, their dead letters and the metrics carry its
//!   identity (see [Names](crate::catalog#names)). An event's `"stream"`, when present,
//!   must be that name (or the identity), and a 422 names the stream by that name: the
//!   client sees and may send back its events as `GET .../events` shows them.
//! - The body is `application/json` (an object or an array of objects) or NDJSON
//!   (`application/x-ndjson`, `application/ndjson` or `application/jsonl`); a `charset`
//!   parameter, if any, must be UTF-8. Anything else, or no content type, is a 415.
//! - The body is read by [`crate::edge::read_body`]: a `Content-Encoding` other than
//!   `gzip`, `zstd` or `identity` is a 415; a body over [`crate::AppState::max_body_bytes`]
//!   (as sent or decoded) is a 413, one that does not decode a 400, one that does not
//!   arrive within `[http] body_timeout` a 408, and one the node has no room for a 503. A
//!   body over [`INLINE_PARSE_MAX_BYTES`] is parsed on the blocking thread pool, not on the
//!   runtime.
//! - The batch is all-or-nothing: malformed JSON is a 400 naming the line and column, and so
//!   is a key repeated in an object (naming the key); a body that is not an object or an
//!   array of objects (`WrongShape`) or holds no event (`Empty`) is a 400 (the framing of
//!   the request is wrong, not an event); more than `[http] max_events_per_request` events
//!   is a 413 (the body is not read further); invalid events are a 422 listing the first 100
//!   `{index, field, reason}` with `error_count` and `invalid_events`, the totals (among
//!   them a `ts` more than [`crate::AppState::max_ts_ahead`] ahead of this node's clock). In
//!   all these cases nothing is appended.
//! - A request refused for what it sent (400, 413, 415, 422) is kept as a dead letter before
//!   it is answered: the stream of its path, the status, the problem's detail (with the
//!   listed invalid events of a 422) as reason, and the body (none for a 413). If it cannot be
//!   stored, that is logged and the answer is the same. Unauthenticated requests (401) and
//!   requests for unknown streams (404) are not kept.
//! - Otherwise the events are appended and the answer, `202 {"accepted": n, "ids": [...]}`,
//!   is sent only after [`tributary_core::ports::Log::append`] returned, so every accepted
//!   event is durable. A log that is unavailable is a 503 with `Retry-After`.
//! - Metrics: `tributary_ingest_requests_total{stream,status}`,
//!   `tributary_ingest_events_total{stream}`, `tributary_ingest_duration_seconds{stream}`
//!   and, for each refused request kept, `tributary_dead_letters_total{origin="ingest"}`;
//!   with every other source, `tributary_source_events_total{source="http",stream,outcome}`.
//!
//! Parsing, appending and keeping dead letters are the [`IngestService`]'s, shared with the
//! other sources; this handler adds what is HTTP's: the request's framing and limits, the
//! answer, and the request metrics.
//!   Requests for unknown streams are counted under `stream="_unknown"` (not a valid stream
//!   name), so that clients cannot create label values at will.

use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use serde::Serialize;
use tributary_core::DeadLetter;
use tributary_core::dead_letter::MAX_DEAD_LETTER_RAW;
use tributary_core::parse::{BodyFormat, DEFAULT_MAX_REPORTED_ERRORS, Limits, Target};
use utoipa::ToSchema;

use super::dead_letters;
use crate::AppState;
use crate::auth::Principal;
use crate::edge::{self, ReadBody, Room};
use crate::error::{ApiError, InvalidEventsProblem, MalformedProblem};
use crate::extract::ApiPath;
use crate::ingest::{BatchError, IngestService};
use crate::openapi::schemas::{EventInput, StreamName};
use crate::openapi::{BodyErrors, NotFound, RequestTimeout, Unavailable, V1Errors};

/// The media types this endpoint reads.
const ACCEPTED: &[&str] = &[
    "application/json",
    "application/x-ndjson",
    "application/ndjson",
    "application/jsonl",
];

/// The name of this source, in the metrics of the [`IngestService`].
const HTTP_SOURCE: &str = "http";

/// The `stream` label of requests for streams that are not configured.
const UNKNOWN_STREAM_LABEL: &str = "_unknown";

/// The answer to an accepted batch.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Accepted {
    /// How many events were appended.
    accepted: usize,
    /// Their ids, in request order.
    ids: Vec<String>,
}

/// A batch of events as `application/json`: one event, or an array of them.
#[derive(ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum EventBatch {
    One(EventInput),
    Many(Vec<EventInput>),
}

/// The handler: runs [`accept`], keeps what it refused, and records the ingest metrics of
/// its outcome.
#[utoipa::path(
    post,
    path = "/v1/streams/{stream}/events",
    tag = "ingest",
    operation_id = "ingestEvents",
    summary = "Appends a batch of events to the stream, all or nothing.",
    description = "The body is one event object or an array of them (`application/json`), or one event object per line (`application/x-ndjson`, `application/ndjson` or `application/jsonl`; blank lines are skipped). A `charset` parameter, if any, must be UTF-8. Events without an `id` get a UUIDv7; events without a `ts` get the time of ingestion. The answer is sent only once every event is durable in the log. If any event is invalid, none is appended. A request answered 400, 413, 415 or 422 is kept as a dead letter (see `GET /v1/dead-letters`). The body may be sent with `Content-Encoding: gzip` or `zstd`; it may hold at most `[http] max_events_per_request` events (10,000 by default; more is a 413), and no object in it may hold a key twice (a 400 naming the key). It must arrive within `[http] body_timeout` (else 408).",
    params(("stream" = StreamName, Path, description = "A configured stream.")),
    request_body(
        description = "Optionally compressed: `Content-Encoding: gzip` or `zstd` (decoded, within the same size limit).",
        content(
            (EventBatch = "application/json"),
            (String = "application/x-ndjson"),
            (String = "application/ndjson"),
            (String = "application/jsonl"),
        ),
    ),
    responses(
        (status = 202, description = "Every event was durably appended.", body = Accepted),
        (
            status = 400,
            description = "Malformed JSON (`line` and `column` name the position), a key repeated in an object (`key`, with its `line` and `column`), a body that does not decode from its Content-Encoding, a body that is neither an object nor an array of objects, or a body without events.",
            body = MalformedProblem,
            content_type = "application/problem+json",
        ),
        (
            status = 422,
            description = "Some events are invalid; `errors` lists the first 100 problems, `error_count` and `invalid_events` count them all, and nothing was appended.",
            body = InvalidEventsProblem,
            content_type = "application/problem+json",
        ),
        V1Errors, NotFound, RequestTimeout, BodyErrors, Unavailable,
    ),
)]
pub(crate) async fn ingest(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath(stream): ApiPath<String>,
    request: Request,
) -> Response {
    let started = Instant::now();
    let stream = state.stream_entry_for(&principal.tenant, &stream);
    let label = stream.as_ref().map_or_else(
        |_| UNKNOWN_STREAM_LABEL.to_owned(),
        |(id, _)| id.to_string(),
    );
    let accepted = match stream {
        Ok((id, entry)) => {
            let target = Target {
                id: &id,
                name: &entry.name,
            };
            accept(&state, target, request).await
        }
        Err(error) => Err(error.into()),
    };
    let (response, accepted) = match accepted {
        Ok(ids) => {
            let accepted = ids.len();
            let body = Json(Accepted { accepted, ids });
            ((StatusCode::ACCEPTED, body).into_response(), accepted)
        }
        Err(refusal) => {
            // The room of the body is given back once its letter is stored.
            // Only a request for a known stream is kept: `label` is its identity.
            let (error, letter, _room) = refusal.into_dead_letter(&label);
            if let Some(letter) = letter {
                dead_letters::keep(&state, letter).await;
            }
            (error.into_response(), 0)
        }
    };
    let status = response.status().as_u16().to_string();
    metrics::counter!("tributary_ingest_requests_total", "stream" => label.clone(), "status" => status)
        .increment(1);
    if accepted > 0 {
        metrics::counter!("tributary_ingest_events_total", "stream" => label.clone())
            .increment(accepted as u64);
    }
    metrics::histogram!("tributary_ingest_duration_seconds", "stream" => label)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Why a request was refused, with its body and its room when it was read.
struct Refusal {
    error: ApiError,
    body: Option<ReadBody>,
}

impl From<ApiError> for Refusal {
    fn from(error: ApiError) -> Self {
        Self { error, body: None }
    }
}

/// Checks, parses and appends the request's events (to `stream`, which the client knows by
/// its name); returns their ids once durable.
async fn accept(
    state: &AppState,
    stream: Target<'_>,
    request: Request,
) -> Result<Vec<String>, Refusal> {
    let format = body_format(request.headers());
    // Its room is held until the events are appended (or the refusal is kept).
    let body = edge::read_body(state, request).await;
    let (format, body) = match (format, body) {
        (Ok(format), Ok(body)) => (format, body),
        // The body of a wrong content type (or encoding) is still read, to be kept; the
        // answer is the 415.
        (Err(error), Ok(body) | Err((_, Some(body)))) => {
            return Err(Refusal {
                error,
                body: Some(body),
            });
        }
        (_, Err((error, body))) => return Err(Refusal { error, body }),
    };
    let service = IngestService::new(state.ports.clone(), state.max_ts_ahead)
        .with_streams(state.streams.clone());
    let limits = Limits {
        max_events: state.edge.settings().max_events_per_request,
        max_reported_errors: DEFAULT_MAX_REPORTED_ERRORS,
    };
    let parsed = service
        .parse_batch(body.bytes.clone(), format, stream, limits)
        .await;
    let events = match parsed {
        Ok(events) => events,
        Err(error) => {
            let error = match error {
                BatchError::Parse(error) => ApiError::from(error),
                BatchError::TaskFailed(error) => ApiError::TaskFailed(error),
            };
            return Err(Refusal {
                error,
                body: Some(body),
            });
        }
    };
    service
        .append(HTTP_SOURCE, stream.id, &events)
        .await
        .map_err(ApiError::from)?;
    drop(body);
    Ok(events
        .into_iter()
        .map(|e| e.id.as_str().to_owned())
        .collect())
}

impl Refusal {
    /// The error, and the dead letter keeping the request when it was refused for what it
    /// sent (400, 413, 415, 422): of the stream of its path, with the answer's status and
    /// detail as reason. The body is dropped here, before the letter is stored: the letter
    /// holds at most [`MAX_DEAD_LETTER_RAW`] bytes of it.
    ///
    /// Other refusals are not kept: an unauthenticated request (401) never reaches this
    /// handler, and one for an unknown stream (404) is not kept either, so that no one can
    /// make Tributary write by sending junk it has not routed; a failure of a dependency
    /// (5xx) is not a refusal of the request, which the client retries.
    ///
    /// The body's room is returned, for the caller to hold until the letter is stored.
    fn into_dead_letter(self, stream: &str) -> (ApiError, Option<DeadLetter>, Option<Room>) {
        let (bytes, room) = match self.body {
            Some(ReadBody { bytes, room }) => (bytes, Some(room)),
            None => (Bytes::new(), None),
        };
        let letter = self.error.content_refusal().map(|(status, reason)| {
            // One byte more than a letter keeps tells it the body was cut, and the rest of
            // a large body need not be converted.
            let kept = &bytes[..bytes.len().min(MAX_DEAD_LETTER_RAW + 1)];
            DeadLetter::ingest(stream, status.as_u16(), reason, kept)
        });
        (self.error, letter, room)
    }
}

/// The body's framing, from its `Content-Type`.
fn body_format(headers: &HeaderMap) -> Result<BodyFormat, ApiError> {
    let unsupported = |found: Option<&str>| ApiError::UnsupportedMediaType {
        found: found.map(str::to_owned),
        accepted: ACCEPTED,
    };
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Err(unsupported(None));
    };
    let Ok(text) = value.to_str() else {
        return Err(unsupported(Some("(not visible ASCII)")));
    };
    let mut parts = text.split(';');
    let essence = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
    let utf8 = parts.all(|param| match param.split_once('=') {
        Some((name, value)) if name.trim().eq_ignore_ascii_case("charset") => {
            let value = value.trim().trim_matches('"');
            value.eq_ignore_ascii_case("utf-8") || value.eq_ignore_ascii_case("utf8")
        }
        _ => true,
    });
    match essence.as_str() {
        "application/json" if utf8 => Ok(BodyFormat::Json),
        "application/x-ndjson" | "application/ndjson" | "application/jsonl" if utf8 => {
            Ok(BodyFormat::Ndjson)
        }
        _ => Err(unsupported(Some(text))),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn format_of(content_type: &str) -> Result<BodyFormat, ApiError> {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_str(content_type).unwrap(),
        );
        body_format(&headers)
    }

    #[test]
    fn reads_json_and_ndjson_content_types() {
        assert_eq!(format_of("application/json").unwrap(), BodyFormat::Json);
        assert_eq!(
            format_of("Application/JSON; charset=UTF-8").unwrap(),
            BodyFormat::Json
        );
        assert_eq!(
            format_of("application/x-ndjson").unwrap(),
            BodyFormat::Ndjson
        );
        assert_eq!(
            format_of("application/jsonl;charset=\"utf-8\"").unwrap(),
            BodyFormat::Ndjson
        );
        for bad in [
            "text/plain",
            "application/json; charset=latin1",
            "application/jsonx",
            "",
        ] {
            assert!(format_of(bad).is_err(), "{bad:?} accepted");
        }
        assert!(body_format(&HeaderMap::new()).is_err());
    }
}
