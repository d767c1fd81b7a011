//! Turns a request body into events: a JSON object, a JSON array of objects, or NDJSON.
//!
//! Parsing is all-or-nothing: either every event of the body is valid and the whole batch
//! is returned, or the caller gets what is wrong (the line and column of malformed JSON or
//! of a repeated key, or the index, field and reason of the first
//! [`Limits::max_reported_errors`] invalid fields, with the total count), so a client can
//! fix and resend the whole request. Nothing here writes anywhere.
//!
//! The body is read one event at a time (the items of an array are not collected first),
//! and what is kept is bounded whatever the body holds: at most [`Limits::max_events`]
//! events (one more is [`ParseError::TooManyEvents`]), none once one is invalid, and at
//! most [`Limits::max_reported_errors`] errors of at most [`MAX_REASON_BYTES`] each.
//!
//! An event is valid when its fields have the right types, its `id` and `key` pass
//! [`EventId::new`] and [`check_key`], its `ts` is within [`Timestamp::MIN_VALID`]`..=`
//! [`Timestamp::MAX_VALID`] and not later than [`Arrival::latest`], its payload passes
//! [`check_payload`], its `stream`, if present, names the stream ([`Target`]), and the whole
//! event takes at most [`MAX_EVENT_BYTES`] encoded as JSON.
//! Every store and both modes accept exactly such events. No object of the body, at any
//! depth, may hold a key twice ([`crate::json`]).

use std::fmt;
use std::time::Duration;

use serde::de::{self, DeserializeSeed, Deserializer as _, IgnoredAny, SeqAccess, Visitor};
use serde_json::Value;

use crate::event::{Event, EventId, MAX_EVENT_BYTES, StreamName, Timestamp, check_key};
use crate::json::{DuplicateKeys, StrictError, StrictValue, classify};
use crate::payload::{check_payload, check_text};

/// When a batch arrives, by the clock of the node that ingests it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    /// Ingestion time: the `ts` of events sent without one.
    pub now: Timestamp,
    /// The latest event time accepted. A `ts` further ahead comes from a wrong clock (or a
    /// wrong unit or time zone): one such event would move its partition's watermark past
    /// the windows of every event still to come, and make them all late.
    pub latest: Timestamp,
}

impl Arrival {
    /// Arriving at `now`, accepting event times at most `max_ahead` after it.
    #[must_use]
    pub fn new(now: Timestamp, max_ahead: Duration) -> Self {
        let ahead = i64::try_from(max_ahead.as_millis()).unwrap_or(i64::MAX);
        Self {
            now,
            latest: now.saturating_add(ahead),
        }
    }

    /// `ts`, if it is not later than [`Self::latest`].
    fn admit(self, ts: Timestamp) -> Result<Timestamp, String> {
        if ts <= self.latest {
            Ok(ts)
        } else {
            Err(format!(
                "{ts} is later than {}, the latest event time accepted now (the server's \
                 clock, {}, plus the clock skew it allows)",
                self.latest, self.now
            ))
        }
    }
}

/// The stream a body's events go to: as it is identified (the [`Event::stream`] of the
/// events returned, where they are stored) and as the client sending them knows it (what an
/// event may repeat in its `"stream"` member, and what error messages name). The two differ
/// only for a stream whose tenant has a namespace of its own (see `tributary_gateway::catalog`,
/// Names); every other stream is known by its identity ([`Target::from`] a [`StreamName`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    /// Its identity.
    pub id: &'a StreamName,
    /// The name the client knows it by.
    pub name: &'a StreamName,
}

impl<'a> From<&'a StreamName> for Target<'a> {
    /// The stream `id`, known by its identity.
    fn from(id: &'a StreamName) -> Self {
        Self { id, name: id }
    }
}

impl Target<'_> {
    /// Whether an event's `"stream"` member names this stream: its name, or its identity
    /// (what a client that once saw the identity may send).
    fn is_named(self, sent: &str) -> bool {
        sent == self.name.as_str() || sent == self.id.as_str()
    }
}

/// How a body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// One JSON object, or a JSON array of objects (`application/json`).
    Json,
    /// One JSON object per line (`application/x-ndjson`); blank lines are skipped.
    Ndjson,
}

/// What one parse may keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most events a body may hold; one more is [`ParseError::TooManyEvents`].
    pub max_events: usize,
    /// The most [`EventError`]s returned; the others are only counted.
    pub max_reported_errors: usize,
}

/// The default of [`Limits::max_events`].
pub const DEFAULT_MAX_EVENTS: usize = 10_000;

/// The default of [`Limits::max_reported_errors`].
pub const DEFAULT_MAX_REPORTED_ERRORS: usize = 100;

/// The longest [`EventError::reason`], in bytes: a reason quoting what was sent (an unknown
/// field's name) is cut there, and ends with `…`.
pub const MAX_REASON_BYTES: usize = 256;

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_events: DEFAULT_MAX_EVENTS,
            max_reported_errors: DEFAULT_MAX_REPORTED_ERRORS,
        }
    }
}

/// One reason one event of a batch is invalid.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EventError {
    /// Position of the event in the request, from 0.
    pub index: usize,
    /// The field at fault (`""` for the event as a whole).
    pub field: &'static str,
    /// What is wrong, for a person to read (at most [`MAX_REASON_BYTES`]).
    pub reason: String,
}

/// The invalid events of a batch: the first errors, and how many there are in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidEvents {
    /// The first [`Limits::max_reported_errors`] errors, in the order of the body.
    pub errors: Vec<EventError>,
    /// How many events are invalid.
    pub invalid_events: usize,
    /// How many errors were found in all (at least `errors.len()`).
    pub error_count: usize,
}

impl fmt::Display for InvalidEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} invalid event field(s) in {} event(s)",
            self.error_count, self.invalid_events
        )
    }
}

/// Why a body yields no events.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The body is not well-formed JSON (or a line of NDJSON is not).
    #[error("malformed JSON at line {line}, column {column}: {message}")]
    Malformed {
        /// 1-based line of the body.
        line: usize,
        /// 1-based column within that line.
        column: usize,
        /// What the JSON parser expected.
        message: String,
    },
    /// An object of the body holds a key twice.
    #[error("duplicate key {key:?} at line {line}, column {column}")]
    DuplicateKey {
        /// The repeated key.
        key: String,
        /// 1-based line of the body, just after the second occurrence.
        line: usize,
        /// 1-based column within that line.
        column: usize,
    },
    /// Well-formed JSON, but neither an object nor an array.
    #[error("the body must be a JSON object or an array of objects")]
    WrongShape,
    /// The body holds no event at all.
    #[error("the body holds no events")]
    Empty,
    /// The body holds more events than [`Limits::max_events`]; it was not read further.
    #[error("the body holds more than {limit} events")]
    TooManyEvents {
        /// The limit.
        limit: usize,
    },
    /// Some events are invalid; none of the batch is accepted.
    #[error("{0}")]
    Invalid(InvalidEvents),
}

/// Parses `body` into events of `stream` (a [`Target`], or a [`StreamName`] known by its
/// identity), arriving at `arrival`, within the default [`Limits`]. Events without an `id`
/// get a UUIDv7; events without a `ts` get [`Arrival::now`] (ingestion time); an event's
/// `"stream"`, when present, must name the stream ([`Target`]).
///
/// # Errors
/// See [`ParseError`]; on error nothing of the body is returned.
pub fn parse_events<'a>(
    body: &[u8],
    format: BodyFormat,
    stream: impl Into<Target<'a>>,
    arrival: Arrival,
) -> Result<Vec<Event>, ParseError> {
    parse_events_within(body, format, stream, arrival, Limits::default())
}

/// [`parse_events`] within `limits`.
///
/// # Errors
/// See [`ParseError`]; on error nothing of the body is returned. Malformed JSON and a
/// repeated key win over invalid events (the body is read to its end to find them), too
/// many events over both (the body is not read further).
pub fn parse_events_within<'a>(
    body: &[u8],
    format: BodyFormat,
    stream: impl Into<Target<'a>>,
    arrival: Arrival,
    limits: Limits,
) -> Result<Vec<Event>, ParseError> {
    let mut batch = Batch {
        stream: stream.into(),
        arrival,
        limits,
        count: 0,
        events: Vec::new(),
        invalid: InvalidEvents {
            errors: Vec::new(),
            invalid_events: 0,
            error_count: 0,
        },
    };
    match format {
        BodyFormat::Json => read_json(body, &mut batch)?,
        BodyFormat::Ndjson => read_ndjson(body, &mut batch)?,
    }
    batch.finish()
}

/// The events read so far, or what is wrong with them.
struct Batch<'a> {
    stream: Target<'a>,
    arrival: Arrival,
    limits: Limits,
    /// Events read so far, valid or not.
    count: usize,
    /// The valid events, while no event is invalid.
    events: Vec<Event>,
    invalid: InvalidEvents,
}

/// The body holds more than [`Limits::max_events`] events.
struct TooMany;

impl Batch<'_> {
    /// Validates the next event of the body.
    fn push(&mut self, value: Value) -> Result<(), TooMany> {
        if self.count == self.limits.max_events {
            return Err(TooMany);
        }
        let index = self.count;
        self.count += 1;
        match event_from_value(value, self.stream, self.arrival) {
            Ok(event) if self.invalid.invalid_events == 0 => self.events.push(event),
            Ok(_) => {}
            Err(reasons) => {
                // The batch will be refused: the valid events need not be kept.
                self.events = Vec::new();
                self.invalid.invalid_events += 1;
                self.invalid.error_count += reasons.len();
                let room = self
                    .limits
                    .max_reported_errors
                    .saturating_sub(self.invalid.errors.len());
                self.invalid
                    .errors
                    .extend(
                        reasons
                            .into_iter()
                            .take(room)
                            .map(|(field, reason)| EventError {
                                index,
                                field,
                                reason: cut_reason(reason),
                            }),
                    );
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<Vec<Event>, ParseError> {
        if self.count == 0 {
            Err(ParseError::Empty)
        } else if self.invalid.invalid_events > 0 {
            Err(ParseError::Invalid(self.invalid))
        } else {
            Ok(self.events)
        }
    }

    fn too_many(&self) -> ParseError {
        ParseError::TooManyEvents {
            limit: self.limits.max_events,
        }
    }
}

/// `reason`, cut to [`MAX_REASON_BYTES`] (at a character boundary, then `…`).
fn cut_reason(mut reason: String) -> String {
    const ELLIPSIS: &str = "…";
    if reason.len() > MAX_REASON_BYTES {
        let mut end = MAX_REASON_BYTES - ELLIPSIS.len();
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
        reason.push_str(ELLIPSIS);
    }
    reason
}

/// The [`ParseError`] of a failed parse of a JSON text starting at line `line_offset + 1`.
fn json_error(
    err: serde_json::Error,
    duplicates: &DuplicateKeys,
    line_offset: usize,
) -> ParseError {
    match classify(err, duplicates) {
        StrictError::DuplicateKey { key, line, column } => ParseError::DuplicateKey {
            key,
            line: line + line_offset,
            column,
        },
        StrictError::Malformed(err) => ParseError::Malformed {
            line: err.line() + line_offset,
            // serde_json says column 0 for an error just after a newline (the end of a
            // body ending `-\n`): the start of that line, 1-based as documented.
            column: err.column().max(1),
            message: strip_position(&err.to_string()),
        },
    }
}

/// serde_json appends " at line L column C"; the position is reported in its own fields.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

/// Reads a JSON object (one event) or array (of events) into `batch`, one event at a time.
fn read_json(body: &[u8], batch: &mut Batch<'_>) -> Result<(), ParseError> {
    let duplicates = DuplicateKeys::new();
    let seed = StrictValue {
        duplicates: &duplicates,
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    let mut too_many = false;
    let read = match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => return Err(ParseError::Empty),
        Some(b'[') => (&mut de).deserialize_seq(Events {
            seed,
            batch: &mut *batch,
            too_many: &mut too_many,
        }),
        Some(b'{') => seed.deserialize(&mut de).map(|object| {
            too_many = batch.push(object).is_err();
        }),
        // A scalar, or not JSON at all: which one decides between 400s.
        Some(_) => {
            return match serde_json::from_slice::<IgnoredAny>(body) {
                Ok(_) => Err(ParseError::WrongShape),
                Err(err) => Err(json_error(err, &duplicates, 0)),
            };
        }
    };
    if too_many {
        return Err(batch.too_many());
    }
    read.and_then(|()| de.end())
        .map_err(|err| json_error(err, &duplicates, 0))
}

/// The visitor of a top-level array: each item is an event, validated as it is read.
struct Events<'s, 'b, 'c> {
    seed: StrictValue<'s>,
    batch: &'b mut Batch<'c>,
    too_many: &'b mut bool,
}

impl<'de> Visitor<'de> for Events<'_, '_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of events")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(item) = seq.next_element_seed(self.seed)? {
            if self.batch.push(item).is_err() {
                *self.too_many = true;
                return Err(de::Error::custom("too many events"));
            }
        }
        Ok(())
    }
}

/// Reads one JSON object per line into `batch`; blank lines are skipped.
fn read_ndjson(body: &[u8], batch: &mut Batch<'_>) -> Result<(), ParseError> {
    let duplicates = DuplicateKeys::new();
    for (n, line) in body.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let mut de = serde_json::Deserializer::from_slice(line);
        let value = StrictValue {
            duplicates: &duplicates,
        }
        .deserialize(&mut de)
        .and_then(|value| de.end().map(|()| value))
        .map_err(|err| json_error(err, &duplicates, n))?;
        if batch.push(value).is_err() {
            return Err(batch.too_many());
        }
    }
    Ok(())
}

type FieldErrors = Vec<(&'static str, String)>;

/// Validates one event given as a JSON value (`{"id"?, "ts"?, "key"?, "stream"?,
/// "payload"}`) of `stream` the way [`parse_events`] validates each event of a body: what a
/// source reading records one at a time (a file, a broker) uses, refusing each invalid
/// record on its own.
///
/// # Errors
/// Every failing field, with its reason (`""` for the event as a whole).
pub fn event_from_json<'a>(
    value: Value,
    stream: impl Into<Target<'a>>,
    arrival: Arrival,
) -> Result<Event, Vec<(&'static str, String)>> {
    event_from_value(value, stream.into(), arrival)
}

fn event_from_value(
    value: Value,
    stream: Target<'_>,
    arrival: Arrival,
) -> Result<Event, FieldErrors> {
    let Value::Object(mut object) = value else {
        return Err(vec![("", "each event must be a JSON object".to_owned())]);
    };
    let mut errors = FieldErrors::new();

    let id = match object.remove("id") {
        None | Some(Value::Null) => Some(EventId::generate()),
        Some(Value::String(s)) => EventId::new(s)
            .and_then(|id| check_text(id.as_str()).map(|()| id).map_err(|e| e.reason))
            .map_err(|reason| errors.push(("id", reason.to_owned())))
            .ok(),
        Some(_) => {
            errors.push(("id", "must be a string".to_owned()));
            None
        }
    };
    let ts = match object.remove("ts") {
        None | Some(Value::Null) => Some(arrival.now),
        Some(Value::String(s)) => Timestamp::parse_rfc3339(&s)
            .and_then(Timestamp::validated)
            .map_err(str::to_owned)
            .and_then(|ts| arrival.admit(ts))
            .map_err(|reason| errors.push(("ts", reason)))
            .ok(),
        Some(Value::Number(n)) => n
            .as_i64()
            .ok_or("epoch milliseconds must be an integer")
            .and_then(|millis| Timestamp::from_millis(millis).validated())
            .map_err(str::to_owned)
            .and_then(|ts| arrival.admit(ts))
            .map_err(|reason| errors.push(("ts", reason)))
            .ok(),
        Some(_) => {
            errors.push((
                "ts",
                "must be an RFC 3339 date-time string or epoch milliseconds".to_owned(),
            ));
            None
        }
    };
    let key = match object.remove("key") {
        None | Some(Value::Null) => Some(None),
        Some(Value::String(s)) => check_key(&s)
            .map(|()| Some(s))
            .map_err(|reason| errors.push(("key", reason.to_owned())))
            .ok(),
        Some(_) => {
            errors.push(("key", "must be a string".to_owned()));
            None
        }
    };
    let payload = match object.remove("payload") {
        Some(Value::Object(map)) => match check_payload(&map) {
            Ok(()) => Some(map),
            Err(err) => {
                errors.push(("payload", err.to_string()));
                None
            }
        },
        None => {
            errors.push(("payload", "is required".to_owned()));
            None
        }
        Some(_) => {
            errors.push(("payload", "must be a JSON object".to_owned()));
            None
        }
    };
    match object.remove("stream") {
        None => {}
        Some(Value::String(s)) if stream.is_named(&s) => {}
        Some(_) => errors.push((
            "stream",
            format!("must be absent or equal to {:?}", stream.name.as_str()),
        )),
    }
    for unknown in object.keys() {
        errors.push((
            "",
            format!("unknown field {unknown:?}; expected id, ts, key, payload"),
        ));
    }

    let (Some(id), Some(ts), Some(key), Some(payload)) = (id, ts, key, payload) else {
        return Err(errors);
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let event = Event {
        id,
        stream: stream.id.clone(),
        ts,
        key,
        payload,
    };
    check_size(&event).map_err(|reason| vec![("", reason)])?;
    Ok(event)
}

/// Checks an event built elsewhere than from a request (read back from a log another
/// producer writes to) the way [`parse_events`] checks every event it returns, but for
/// [`Arrival::latest`], which only holds at arrival: its `id`, `ts`, `key`, payload and
/// size. An event of the log that fails them would be refused later by a store.
///
/// # Errors
/// Every failing field, with its reason (`""` for the event as a whole).
pub fn check_event(event: &Event) -> Result<(), Vec<(&'static str, String)>> {
    let mut errors = FieldErrors::new();
    // An `EventId` is not empty nor too long: it is made only by `EventId::new`, also
    // when deserialized.
    if let Err(e) = check_text(event.id.as_str()) {
        errors.push(("id", e.reason.to_owned()));
    }
    if let Err(reason) = event.ts.validated() {
        errors.push(("ts", reason.to_owned()));
    }
    if let Some(Err(reason)) = event.key.as_deref().map(check_key) {
        errors.push(("key", reason.to_owned()));
    }
    if let Err(e) = check_payload(&event.payload) {
        errors.push(("payload", e.to_string()));
    }
    if errors.is_empty() {
        check_size(event)
            .map_err(|reason| errors.push(("", reason)))
            .ok();
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Refuses an event over [`MAX_EVENT_BYTES`] encoded as JSON.
fn check_size(event: &Event) -> Result<(), String> {
    let size = event.encoded_len();
    if size > MAX_EVENT_BYTES {
        return Err(format!(
            "the event takes {size} bytes encoded as JSON, more than the limit of \
             {MAX_EVENT_BYTES} bytes"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream() -> StreamName {
        StreamName::new("clicks").unwrap()
    }
    /// Arriving on 2023-11-14, accepting any valid event time (3 years ahead are tested).
    const NOW: Arrival = Arrival {
        now: Timestamp::from_millis(1_700_000_000_000),
        latest: Timestamp::MAX_VALID,
    };

    #[test]
    fn parses_object_array_and_ndjson() {
        let one = br#"{"id":"a","ts":"2026-11-25T18:00:00Z","key":"k","payload":{"x":1}}"#;
        let events = parse_events(one, BodyFormat::Json, &stream(), NOW).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].key.as_deref(), Some("k"));

        let many = br#"[{"id":"a","payload":{}},{"ts":1700000000123,"payload":{"y":2}}]"#;
        let events = parse_events(many, BodyFormat::Json, &stream(), NOW).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].ts, NOW.now);
        assert_eq!(events[1].ts.millis(), 1_700_000_000_123);
        assert_eq!(events[1].id.as_str().len(), 36, "a UUIDv7 is generated");

        let nd = b"{\"id\":\"a\",\"payload\":{}}\n\n{\"id\":\"b\",\"payload\":{}}\n";
        let events = parse_events(nd, BodyFormat::Ndjson, &stream(), NOW).unwrap();
        assert_eq!(events.len(), 2);
    }

    #[test]
    fn malformed_ndjson_names_the_line() {
        let nd = b"{\"payload\":{}}\n{\"payload\":{}}\n{\"payload\": nope}\n";
        let err = parse_events(nd, BodyFormat::Ndjson, &stream(), NOW).unwrap_err();
        let ParseError::Malformed { line, column, .. } = err else {
            panic!("{err:?}")
        };
        assert_eq!((line, column), (3, 14));
    }

    #[test]
    fn an_error_just_after_a_newline_is_at_column_one() {
        // serde_json says column 0 there (found by the parser's property tests).
        let err = parse_events(b"-\n", BodyFormat::Json, &stream(), NOW).unwrap_err();
        let ParseError::Malformed { line, column, .. } = err else {
            panic!("{err:?}")
        };
        assert_eq!((line, column), (2, 1));
    }

    #[test]
    fn malformed_json_names_the_position() {
        let err = parse_events(
            b"[{\"payload\":{}},\n {oops}]",
            BodyFormat::Json,
            &stream(),
            NOW,
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                ParseError::Malformed {
                    line: 2,
                    column: 3,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn every_invalid_event_is_listed() {
        let body = br#"[{"payload":{}},{"id":7,"ts":"yesterday","payload":[]},{"payload":{},"colour":1},"x"]"#;
        let ParseError::Invalid(InvalidEvents { errors, .. }) =
            parse_events(body, BodyFormat::Json, &stream(), NOW).unwrap_err()
        else {
            panic!()
        };
        let found: Vec<(usize, &str)> = errors.iter().map(|e| (e.index, e.field)).collect();
        assert_eq!(
            found,
            vec![(1, "id"), (1, "ts"), (1, "payload"), (2, ""), (3, "")]
        );
    }

    #[test]
    fn empty_and_wrong_shapes_are_refused() {
        assert_eq!(
            parse_events(b"  ", BodyFormat::Json, &stream(), NOW),
            Err(ParseError::Empty)
        );
        assert_eq!(
            parse_events(b"[]", BodyFormat::Json, &stream(), NOW),
            Err(ParseError::Empty)
        );
        assert_eq!(
            parse_events(b"\n\n", BodyFormat::Ndjson, &stream(), NOW),
            Err(ParseError::Empty)
        );
        assert_eq!(
            parse_events(b"42", BodyFormat::Json, &stream(), NOW),
            Err(ParseError::WrongShape)
        );
    }

    #[test]
    fn payloads_every_store_cannot_keep_are_refused() {
        let body =
            br#"[{"payload":{"a.b":1}},{"payload":{"x":[[1]]}},{"key":"k\u0000","payload":{}}]"#;
        let ParseError::Invalid(InvalidEvents { errors, .. }) =
            parse_events(body, BodyFormat::Json, &stream(), NOW).unwrap_err()
        else {
            panic!()
        };
        let found: Vec<(usize, &str)> = errors.iter().map(|e| (e.index, e.field)).collect();
        assert_eq!(found, vec![(0, "payload"), (1, "payload"), (2, "key")]);
        assert!(errors[0].reason.contains("a.b"), "{}", errors[0].reason);
    }

    #[test]
    fn events_over_the_size_limit_are_refused() {
        let body = |text_len: usize| {
            serde_json::json!([
                {"id": "small", "payload": {}},
                {"id": "big", "ts": 1, "key": "k\"", "payload": {"x": "a".repeat(text_len)}},
            ])
            .to_string()
        };
        let parse =
            |text_len| parse_events(body(text_len).as_bytes(), BodyFormat::Json, &stream(), NOW);
        let base = parse(0).unwrap()[1].to_json_bytes().len();

        let fits = parse(MAX_EVENT_BYTES - base).unwrap();
        assert_eq!(fits[1].to_json_bytes().len(), MAX_EVENT_BYTES);

        let ParseError::Invalid(InvalidEvents { errors, .. }) =
            parse(MAX_EVENT_BYTES - base + 1).unwrap_err()
        else {
            panic!()
        };
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!((errors[0].index, errors[0].field), (1, ""));
        let reason = &errors[0].reason;
        assert!(
            reason.contains(&(MAX_EVENT_BYTES + 1).to_string())
                && reason.contains(&MAX_EVENT_BYTES.to_string()),
            "{reason}"
        );
    }

    #[test]
    fn event_times_must_have_four_digit_years() {
        let min = Timestamp::MIN_VALID.millis();
        let max = Timestamp::MAX_VALID.millis();
        for ts in [
            serde_json::json!("0000-01-01T00:00:00Z"),
            serde_json::json!("9999-12-31T23:59:59.999Z"),
            serde_json::json!("9999-12-31T23:59:59.999999Z"),
            serde_json::json!(min),
            serde_json::json!(max),
        ] {
            let body = serde_json::json!({"ts": ts, "payload": {}}).to_string();
            let events = parse_events(body.as_bytes(), BodyFormat::Json, &stream(), NOW)
                .unwrap_or_else(|e| panic!("{ts} refused: {e:?}"));
            assert!(events[0].ts.is_valid());
        }
        for ts in [
            serde_json::json!("0000-01-01T00:00:00+00:01"),
            serde_json::json!("9999-12-31T23:59:59-01:00"),
            serde_json::json!(min - 1),
            serde_json::json!(max + 1),
            serde_json::json!(8_210_266_876_799_000_i64),
            serde_json::json!(i64::MIN),
        ] {
            let body = serde_json::json!({"ts": ts, "payload": {}}).to_string();
            let Err(ParseError::Invalid(InvalidEvents { errors, .. })) =
                parse_events(body.as_bytes(), BodyFormat::Json, &stream(), NOW)
            else {
                panic!("{ts} accepted")
            };
            assert_eq!(errors[0].field, "ts");
            assert!(
                errors[0].reason.contains("9999-12-31T23:59:59.999Z"),
                "{errors:?}"
            );
        }
    }

    #[test]
    fn event_times_too_far_ahead_of_the_clock_are_refused() {
        let now = Timestamp::from_millis(1_700_000_000_000);
        let arrival = Arrival::new(now, Duration::from_secs(3600));
        let hour = 3_600_000;
        let at = |ts: i64| serde_json::json!({"ts": ts, "payload": {}}).to_string();
        for ok in [
            now.millis() - 365 * 24 * hour,
            now.millis(),
            now.millis() + hour,
        ] {
            assert!(parse_events(at(ok).as_bytes(), BodyFormat::Json, &stream(), arrival).is_ok());
        }
        let late = Timestamp::from_millis(now.millis() + hour + 1).to_string();
        for ahead in [
            at(now.millis() + hour + 1),
            serde_json::json!({"ts": late, "payload": {}}).to_string(),
        ] {
            let Err(ParseError::Invalid(InvalidEvents { errors, .. })) =
                parse_events(ahead.as_bytes(), BodyFormat::Json, &stream(), arrival)
            else {
                panic!("{ahead} accepted")
            };
            assert_eq!(errors.len(), 1);
            assert_eq!(errors[0].field, "ts");
            assert!(errors[0].reason.contains(&late), "{errors:?}");
            assert!(errors[0].reason.contains(&now.to_string()), "{errors:?}");
        }
        // No bound overflows: a huge allowance accepts up to the last valid time.
        let any = Arrival::new(now, Duration::MAX);
        assert!(any.latest >= Timestamp::MAX_VALID);
        let max = at(Timestamp::MAX_VALID.millis());
        assert!(parse_events(max.as_bytes(), BodyFormat::Json, &stream(), any).is_ok());
    }

    #[test]
    fn events_read_elsewhere_are_checked_like_parsed_ones() {
        let body = br#"{"id":"a","ts":1700000000000,"key":"k","payload":{"x":[1,"y"]}}"#;
        let events = parse_events(body, BodyFormat::Json, &stream(), NOW).unwrap();
        assert_eq!(check_event(&events[0]), Ok(()));

        let decode = |json: &str| Event::from_json_bytes(json.as_bytes());
        let bad = decode(
            r#"{"id":"a\u0000","stream":"clicks","ts":-62167219200001,"key":"k\u0000","payload":{"s":"\u0000"}}"#,
        )
        .unwrap();
        let fields: Vec<&str> = check_event(&bad)
            .unwrap_err()
            .iter()
            .map(|(field, _)| *field)
            .collect();
        assert_eq!(fields, ["id", "ts", "key", "payload"]);
        let huge = format!(
            r#"{{"id":"a","stream":"clicks","ts":0,"payload":{{"s":"{}"}}}}"#,
            "x".repeat(MAX_EVENT_BYTES)
        );
        assert_eq!(check_event(&decode(&huge).unwrap()).unwrap_err()[0].0, "");
        // Ids are checked as they are decoded.
        let long_id = format!(
            r#"{{"id":"{}","stream":"clicks","ts":0,"payload":{{}}}}"#,
            "i".repeat(129)
        );
        for id in [
            r#"{"id":"","stream":"clicks","ts":0,"payload":{}}"#,
            &long_id,
        ] {
            assert!(decode(id).is_err(), "{id}");
        }
    }

    #[test]
    fn at_most_max_events_are_read() {
        let limits = Limits {
            max_events: 3,
            max_reported_errors: 10,
        };
        let parse = |body: &str, format| {
            parse_events_within(body.as_bytes(), format, &stream(), NOW, limits)
        };
        let three = r#"[{"payload":{}},{"payload":{}},{"payload":{}}]"#;
        assert_eq!(parse(three, BodyFormat::Json).unwrap().len(), 3);
        // The fourth is not read: neither its error nor the malformed text after it count.
        for (body, format) in [
            (
                r#"[{"payload":{}},{"payload":{}},{"payload":{}},{"payload":{}}]"#,
                BodyFormat::Json,
            ),
            (r#"[1,2,3,4, nope"#, BodyFormat::Json),
            ("{\"payload\":{}}\n\n{}\n{}\n{}\n{oops", BodyFormat::Ndjson),
        ] {
            assert_eq!(
                parse(body, format),
                Err(ParseError::TooManyEvents { limit: 3 }),
                "{body}"
            );
        }
    }

    #[test]
    fn invalid_events_are_counted_but_only_the_first_errors_listed() {
        let limits = Limits {
            max_events: 1_000_000,
            max_reported_errors: 5,
        };
        // 200,000 items, every one invalid, and one valid event among them.
        let mut body = String::from("[");
        for i in 0..200_000 {
            body.push_str(if i == 7 { r#"{"payload":{}},"# } else { "1," });
        }
        body.push_str(r#"{"id":7,"ts":"x","payload":[]}]"#);
        let Err(ParseError::Invalid(invalid)) =
            parse_events_within(body.as_bytes(), BodyFormat::Json, &stream(), NOW, limits)
        else {
            panic!("accepted")
        };
        assert_eq!(invalid.invalid_events, 200_000);
        assert_eq!(invalid.error_count, 199_999 + 3);
        let indexes: Vec<usize> = invalid.errors.iter().map(|e| e.index).collect();
        assert_eq!(indexes, [0, 1, 2, 3, 4]);
        assert_eq!(
            invalid.to_string(),
            "200002 invalid event field(s) in 200000 event(s)"
        );
        // A syntax error anywhere still wins.
        let bad = format!("{},]", &body[..body.len() - 1]);
        assert!(matches!(
            parse_events_within(bad.as_bytes(), BodyFormat::Json, &stream(), NOW, limits),
            Err(ParseError::Malformed { .. })
        ));
    }

    #[test]
    fn reasons_quoting_the_body_are_cut() {
        let name = "é".repeat(1000);
        let body = format!(r#"{{"payload":{{}},"{name}":1}}"#);
        let Err(ParseError::Invalid(InvalidEvents { errors, .. })) =
            parse_events(body.as_bytes(), BodyFormat::Json, &stream(), NOW)
        else {
            panic!()
        };
        assert!(
            errors[0].reason.len() <= MAX_REASON_BYTES,
            "{}",
            errors[0].reason.len()
        );
        assert!(errors[0].reason.starts_with("unknown field \"éé"));
        assert!(errors[0].reason.ends_with('…'));
    }

    #[test]
    fn duplicate_keys_are_refused_with_their_name_and_position() {
        for (body, format, key, line) in [
            (
                r#"{"payload":{},"payload":{"x":1}}"#,
                BodyFormat::Json,
                "payload",
                1,
            ),
            (
                "[{\"payload\":{}},\n{\"payload\":{\"amount\":1,\"amount\":-1}}]",
                BodyFormat::Json,
                "amount",
                2,
            ),
            (
                "{\"payload\":{}}\n\n{\"id\":\"a\",\"id\":\"b\",\"payload\":{}}",
                BodyFormat::Ndjson,
                "id",
                3,
            ),
        ] {
            match parse_events(body.as_bytes(), format, &stream(), NOW) {
                Err(ParseError::DuplicateKey {
                    key: found,
                    line: at,
                    ..
                }) => assert_eq!((found.as_str(), at), (key, line), "{body}"),
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn trailing_text_after_the_body_is_malformed() {
        for body in [r#"{"payload":{}} x"#, r#"[{"payload":{}}] ]"#] {
            assert!(
                matches!(
                    parse_events(body.as_bytes(), BodyFormat::Json, &stream(), NOW),
                    Err(ParseError::Malformed { line: 1, .. })
                ),
                "{body}"
            );
        }
        assert!(matches!(
            parse_events(b"{\"payload\":{}} {}", BodyFormat::Ndjson, &stream(), NOW),
            Err(ParseError::Malformed { line: 1, .. })
        ));
    }

    #[test]
    fn a_stream_field_must_match_the_path() {
        let ok = br#"{"stream":"clicks","payload":{}}"#;
        assert!(parse_events(ok, BodyFormat::Json, &stream(), NOW).is_ok());
        let bad = br#"{"stream":"orders","payload":{}}"#;
        assert!(parse_events(bad, BodyFormat::Json, &stream(), NOW).is_err());
    }

    /// A stream known by a name other than its identity: an event may name it either way,
    /// is stored under its identity, and an error names what the client knows.
    #[test]
    fn a_stream_field_may_be_the_name_the_client_knows() {
        let id = StreamName::new("clicks__0123456789ab").unwrap();
        let target = Target {
            id: &id,
            name: &stream(),
        };
        let single = r#"{"stream":"clicks","payload":{}}"#;
        let array =
            r#"[{"stream":"clicks","payload":{}},{"stream":"clicks__0123456789ab","payload":{}}]"#;
        let ndjson = "{\"stream\":\"clicks\",\"payload\":{}}\n{\"payload\":{}}\n";
        for (body, format, count) in [
            (single, BodyFormat::Json, 1),
            (array, BodyFormat::Json, 2),
            (ndjson, BodyFormat::Ndjson, 2),
        ] {
            let events = parse_events(body.as_bytes(), format, target, NOW)
                .unwrap_or_else(|e| panic!("{body}: {e:?}"));
            assert_eq!(events.len(), count, "{body}");
            assert!(events.iter().all(|e| e.stream == id), "{events:?}");
        }
        for other in ["orders", "clicks__ba9876543210", "Clicks"] {
            let body =
                serde_json::json!([{"payload": {}}, {"stream": other, "payload": {}}]).to_string();
            let Err(ParseError::Invalid(InvalidEvents { errors, .. })) =
                parse_events(body.as_bytes(), BodyFormat::Json, target, NOW)
            else {
                panic!("{other} accepted")
            };
            assert_eq!((errors[0].index, errors[0].field), (1, "stream"));
            assert_eq!(errors[0].reason, r#"must be absent or equal to "clicks""#);
        }
        let one = serde_json::json!({"stream": "clicks", "payload": {}});
        assert_eq!(event_from_json(one, target, NOW).unwrap().stream, id);
    }
}
