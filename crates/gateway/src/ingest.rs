//! The ingest service: what every source of events (the HTTP route, the file source of
//! `tributary ingest`, and brokers later) does with what it received, in one place.
//!
//! Contract:
//! - Validation: [`IngestService::parse_batch`] reads a whole body all-or-nothing (the HTTP
//!   contract, [`tributary_core::parse`]); an [`EventCheck`] ([`IngestService::checker`])
//!   checks one record on its own, for sources that refuse records one at a time. Both check an event's `ts`
//!   against [`IngestService::arrival`]: at most `max_ts_ahead` after this node's clock;
//!   and, when the service knows the streams ([`IngestService::with_streams`]) and the
//!   stream has a JSON Schema, its `payload` against the schema (each violation a reason
//!   of the `payload` field: `/payload/<pointer>: <reason>`).
//! - [`IngestService::append`] appends valid events to the log and returns once
//!   [`tributary_core::ports::Log::append`] returned: an event is accepted only once
//!   durable. It counts `tributary_source_events_total{source,stream,outcome="accepted"}`.
//! - [`IngestService::keep`] stores what was refused as dead letters (with the reason and
//!   the position in the source, see [`tributary_core::dead_letter`]) within
//!   [`KEEP_TIMEOUT`], and counts `tributary_dead_letters_total{origin}` (or
//!   `tributary_dead_letters_refused_total{origin}` when the store did not take them) and
//!   `tributary_source_events_total{source,stream,outcome="refused"}`.
//! - The service holds no state of its own: it is cheap to clone, and sources running
//!   concurrently share nothing but the ports.
//!
//! The source's name (`http`, `file`, ...) is a metric label: it names a configured
//! source, never something a client sent.

use std::time::Duration;

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;
use tributary_core::parse::{
    Arrival, BodyFormat, EventError, InvalidEvents, Limits, ParseError, Target, event_from_json,
    parse_events_within,
};
use tributary_core::ports::{PortError, Ports};
use tributary_core::{DeadLetter, Event, StreamName, Timestamp};

use crate::catalog::StreamCatalog;
use crate::stream_schema::StreamSchema;

/// The largest body parsed on the async runtime's worker thread; larger ones are parsed on
/// the blocking pool. Parsing and validating a body of typical events takes about 0.2 ms per
/// 16 KiB in a release build (1.1 ms per 64 KiB), so this keeps a worker's await points a
/// few hundred microseconds apart at most, while small requests skip the thread hand-off.
pub const INLINE_PARSE_MAX_BYTES: usize = 16 * 1024;

/// How long [`IngestService::keep`] waits for the document store: a store that does not
/// answer must not hold a source (or the answer to a refused request) for long.
pub const KEEP_TIMEOUT: Duration = Duration::from_secs(1);

/// Why a batch body was not parsed.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// The body is not a valid batch.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// The blocking task parsing it failed.
    #[error("the parsing task failed")]
    TaskFailed(#[from] tokio::task::JoinError),
}

/// Dead letters the document store did not take.
#[derive(Debug, thiserror::Error)]
#[error("{count} dead letter(s) not stored: {cause}")]
pub struct KeepError {
    /// How many.
    pub count: usize,
    /// Why, with its source chain.
    pub cause: String,
}

/// Validates, appends and keeps what is refused, for every source.
#[derive(Debug, Clone)]
pub struct IngestService {
    ports: Ports,
    max_ts_ahead: Duration,
    streams: Option<StreamCatalog>,
}

impl IngestService {
    /// Over `ports`, accepting event times at most `max_ts_ahead` after this node's clock.
    #[must_use]
    pub fn new(ports: Ports, max_ts_ahead: Duration) -> Self {
        Self {
            ports,
            max_ts_ahead,
            streams: None,
        }
    }

    /// Checking events against the schemas of `streams`' streams.
    #[must_use]
    pub fn with_streams(self, streams: StreamCatalog) -> Self {
        Self {
            streams: Some(streams),
            ..self
        }
    }

    /// The schema of `stream`, if the service knows it and it has one.
    fn schema_of(&self, stream: &StreamName) -> Option<Arc<StreamSchema>> {
        self.streams.as_ref()?.schema_of(stream)
    }

    /// Arriving now: the `ts` given to events without one, and the latest accepted.
    #[must_use]
    pub fn arrival(&self) -> Arrival {
        Arrival::new(Timestamp::now(), self.max_ts_ahead)
    }

    /// Parses `body` into events of `stream`, all or nothing: inline when small, on the
    /// blocking pool when larger than [`INLINE_PARSE_MAX_BYTES`]. The events are of the
    /// stream's identity; their `"stream"` may also be the name the client knows it by
    /// (see [`Target`]), which is what errors name.
    ///
    /// # Errors
    /// See [`ParseError`]; or the parsing task failed.
    #[tracing::instrument(level = "debug", name = "ingest", skip_all, fields(stream = %stream.id, bytes = body.len()))]
    pub async fn parse_batch(
        &self,
        body: Bytes,
        format: BodyFormat,
        stream: Target<'_>,
        limits: Limits,
    ) -> Result<Vec<Event>, BatchError> {
        let arrival = self.arrival();
        let schema = self.schema_of(stream.id);
        let inline = body.len() <= INLINE_PARSE_MAX_BYTES;
        let parse = move |stream: Target<'_>| {
            let events = parse_events_within(&body, format, stream, arrival, limits)?;
            if let Some(schema) = schema {
                check_payloads(&events, &schema, limits)?;
            }
            Ok::<_, ParseError>(events)
        };
        if inline {
            return Ok(parse(stream)?);
        }
        let (id, name) = (stream.id.clone(), stream.name.clone());
        let parsed = tokio::task::spawn_blocking(move || {
            parse(Target {
                id: &id,
                name: &name,
            })
        })
        .await?;
        Ok(parsed?)
    }

    /// The check of records arriving now as events of `stream`, with its schema as the
    /// service knows it now: made once per batch of a source, so that a batch is checked
    /// against one arrival time and one schema.
    #[must_use]
    pub fn checker(&self, stream: &StreamName) -> EventCheck {
        EventCheck {
            stream: stream.clone(),
            arrival: self.arrival(),
            schema: self.schema_of(stream),
        }
    }

    /// Appends `events` (valid events of `stream`) to the log, counted for `source`;
    /// returns once the log acknowledged them.
    ///
    /// # Errors
    /// The log's; nothing is counted then, and the caller may retry the whole batch.
    #[tracing::instrument(level = "debug", name = "log.append", skip_all, fields(%stream, events = events.len()))]
    pub async fn append(
        &self,
        source: &str,
        stream: &StreamName,
        events: &[Event],
    ) -> Result<(), PortError> {
        if events.is_empty() {
            return Ok(());
        }
        self.ports.log.append(stream, events).await?;
        metrics::counter!(
            "tributary_source_events_total",
            "source" => source.to_owned(),
            "stream" => stream.to_string(),
            "outcome" => "accepted",
        )
        .increment(events.len() as u64);
        Ok(())
    }

    /// Stores `letters` (refused by `source`), within [`KEEP_TIMEOUT`].
    ///
    /// # Errors
    /// When the document store failed or did not answer in time; they are counted as
    /// refused letters then, and logged by the caller if it goes on.
    pub async fn keep(&self, source: &str, letters: &[DeadLetter]) -> Result<(), KeepError> {
        let Some(first) = letters.first() else {
            return Ok(());
        };
        let origin = first.origin.kind();
        let stream = first.stream.clone();
        metrics::counter!(
            "tributary_source_events_total",
            "source" => source.to_owned(),
            "stream" => stream,
            "outcome" => "refused",
        )
        .increment(letters.len() as u64);
        let put = self.ports.documents.put_dead_letters(letters);
        let cause = match tokio::time::timeout(KEEP_TIMEOUT, put).await {
            Ok(Ok(())) => {
                metrics::counter!("tributary_dead_letters_total", "origin" => origin)
                    .increment(letters.len() as u64);
                return Ok(());
            }
            Ok(Err(error)) => tributary_core::dead_letter::error_chain(&error),
            Err(_) => format!("the document store did not answer within {KEEP_TIMEOUT:?}"),
        };
        metrics::counter!("tributary_dead_letters_refused_total", "origin" => origin)
            .increment(letters.len() as u64);
        Err(KeepError {
            count: letters.len(),
            cause,
        })
    }
}

/// Checks records one at a time as events of one stream ([`IngestService::checker`]), for
/// sources that refuse records one at a time.
#[derive(Debug, Clone)]
pub struct EventCheck {
    stream: StreamName,
    arrival: Arrival,
    schema: Option<Arc<StreamSchema>>,
}

impl EventCheck {
    /// Checks one record, a JSON value in the event's shape: its fields, its `ts` against
    /// the arrival time, and its payload against the stream's schema.
    ///
    /// # Errors
    /// The reasons it is not a valid event, on one line (`field: reason; ...`).
    pub fn check(&self, value: Value) -> Result<Event, String> {
        let event = event_from_json(value, &self.stream, self.arrival).map_err(|errors| {
            errors
                .into_iter()
                .map(|(field, reason)| {
                    if field.is_empty() {
                        reason
                    } else {
                        format!("{field}: {reason}")
                    }
                })
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        let violations = self
            .schema
            .as_ref()
            .map(|schema| schema.check_payload(&event.payload))
            .unwrap_or_default();
        if violations.is_empty() {
            Ok(event)
        } else {
            Err(format!("payload: {}", violations.join("; ")))
        }
    }
}

/// Checks the payload of each of `events` (a parsed batch) against `schema`, all or
/// nothing: the violations as the `payload` errors of the events, at most
/// `limits.max_reported_errors` listed.
fn check_payloads(
    events: &[Event],
    schema: &StreamSchema,
    limits: Limits,
) -> Result<(), ParseError> {
    let mut invalid = InvalidEvents {
        errors: Vec::new(),
        invalid_events: 0,
        error_count: 0,
    };
    for (index, event) in events.iter().enumerate() {
        let violations = schema.check_payload(&event.payload);
        if violations.is_empty() {
            continue;
        }
        invalid.invalid_events += 1;
        invalid.error_count += violations.len();
        let room = limits
            .max_reported_errors
            .saturating_sub(invalid.errors.len());
        invalid
            .errors
            .extend(violations.into_iter().take(room).map(|reason| EventError {
                index,
                field: "payload",
                reason,
            }));
    }
    if invalid.invalid_events == 0 {
        Ok(())
    } else {
        Err(ParseError::Invalid(invalid))
    }
}
