//! Turns a request body into events: a JSON object, a JSON array of objects, or NDJSON.
//!
//! Parsing is all-or-nothing: either every event of the body is valid and the whole batch
//! is returned, or the caller gets every problem at once (the line and column of malformed
//! JSON, or the index, field and reason of each invalid event), so a client can fix and
//! resend the whole request. Nothing here writes anywhere.
//!
//! An event is valid when its fields have the right types, its `id` and `key` pass
//! [`EventId::new`] and [`check_key`], its `ts` is within [`Timestamp::MIN_VALID`]`..=`
//! [`Timestamp::MAX_VALID`] and not later than [`Arrival::latest`], its payload passes
//! [`check_payload`], and the whole event takes at most [`MAX_EVENT_BYTES`] encoded as JSON.
//! Every store and both modes accept exactly such events.

use std::time::Duration;

use serde_json::Value;

use crate::event::{Event, EventId, MAX_EVENT_BYTES, StreamName, Timestamp, check_key};
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

/// How a body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// One JSON object, or a JSON array of objects (`application/json`).
    Json,
    /// One JSON object per line (`application/x-ndjson`); blank lines are skipped.
    Ndjson,
}

/// One reason one event of a batch is invalid.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EventError {
    /// Position of the event in the request, from 0.
    pub index: usize,
    /// The field at fault (`""` for the event as a whole).
    pub field: &'static str,
    /// What is wrong, for a person to read.
    pub reason: String,
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
    /// Well-formed JSON, but neither an object nor an array.
    #[error("the body must be a JSON object or an array of objects")]
    WrongShape,
    /// The body holds no event at all.
    #[error("the body holds no events")]
    Empty,
    /// Some events are invalid; none of the batch is accepted.
    #[error("{} invalid event field(s)", .0.len())]
    Invalid(Vec<EventError>),
}

/// Parses `body` into events of `stream`, arriving at `arrival`. Events without an `id` get
/// a UUIDv7; events without a `ts` get [`Arrival::now`] (ingestion time).
///
/// # Errors
/// See [`ParseError`]; on error nothing of the body is returned.
pub fn parse_events(
    body: &[u8],
    format: BodyFormat,
    stream: &StreamName,
    arrival: Arrival,
) -> Result<Vec<Event>, ParseError> {
    let objects = match format {
        BodyFormat::Json => split_json(body)?,
        BodyFormat::Ndjson => split_ndjson(body)?,
    };
    if objects.is_empty() {
        return Err(ParseError::Empty);
    }
    let mut events = Vec::with_capacity(objects.len());
    let mut errors = Vec::new();
    for (index, value) in objects.into_iter().enumerate() {
        match event_from_value(value, stream, arrival) {
            Ok(event) => events.push(event),
            Err(reasons) => errors.extend(reasons.into_iter().map(|(field, reason)| EventError {
                index,
                field,
                reason,
            })),
        }
    }
    if errors.is_empty() {
        Ok(events)
    } else {
        Err(ParseError::Invalid(errors))
    }
}

fn malformed(err: &serde_json::Error, line_offset: usize) -> ParseError {
    ParseError::Malformed {
        line: err.line() + line_offset,
        column: err.column(),
        message: strip_position(&err.to_string()),
    }
}

/// serde_json appends " at line L column C"; the position is reported in its own fields.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

fn split_json(body: &[u8]) -> Result<Vec<Value>, ParseError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        if e.is_eof() && body.iter().all(u8::is_ascii_whitespace) {
            ParseError::Empty
        } else {
            malformed(&e, 0)
        }
    })?;
    match value {
        Value::Array(items) => Ok(items),
        object @ Value::Object(_) => Ok(vec![object]),
        _ => Err(ParseError::WrongShape),
    }
}

fn split_ndjson(body: &[u8]) -> Result<Vec<Value>, ParseError> {
    let mut values = Vec::new();
    for (n, line) in body.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let value: Value = serde_json::from_slice(line).map_err(|e| malformed(&e, n))?;
        values.push(value);
    }
    Ok(values)
}

type FieldErrors = Vec<(&'static str, String)>;

fn event_from_value(
    value: Value,
    stream: &StreamName,
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
        Some(Value::String(s)) if s == stream.as_str() => {}
        Some(_) => errors.push(("stream", format!("must be absent or equal to {stream:?}"))),
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
        stream: stream.clone(),
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
        let ParseError::Invalid(errors) =
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
        let ParseError::Invalid(errors) =
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

        let ParseError::Invalid(errors) = parse(MAX_EVENT_BYTES - base + 1).unwrap_err() else {
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
            let Err(ParseError::Invalid(errors)) =
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
            let Err(ParseError::Invalid(errors)) =
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
    fn a_stream_field_must_match_the_path() {
        let ok = br#"{"stream":"clicks","payload":{}}"#;
        assert!(parse_events(ok, BodyFormat::Json, &stream(), NOW).is_ok());
        let bad = br#"{"stream":"orders","payload":{}}"#;
        assert!(parse_events(bad, BodyFormat::Json, &stream(), NOW).is_err());
    }
}
