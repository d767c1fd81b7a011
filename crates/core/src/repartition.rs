//! Repartitioning: how a pipeline whose key is not the events' key gets every event of one
//! key into one partition, through an internal stream of the log, as Kafka Streams does.
//!
//! A repartition task reads the pipeline's sources and appends each event, wrapped
//! ([`wrap`]), to the pipeline's internal stream ([`internal_stream`]) under the pipeline's
//! key text, so that the log partitions it by that key; the pipeline's shards read the
//! internal stream, one partition each, and unwrap each record ([`unwrap`]) into the event
//! and the source partition it came from. The operator keeps a watermark per *source*
//! partition, so the shards' watermarks follow the sources, however the internal stream
//! interleaves them.
//!
//! Watermarks cross the shuffle as Flink's do: after each batch, the repartition task
//! appends to **every** partition of the internal stream a progress record per source
//! partition that advanced ([`progress_records`]: the largest event time read from it), so
//! a shard learns how far every source partition has gone even when none of that
//! partition's events has its keys ([`progress_of`]).
//!
//! The internal stream is written at least once (a repartition task that crashes appends
//! again from its last checkpoint): the shards' de-duplication by (stream, id) counts each
//! event once. Its name holds the plan's fingerprint, so a changed definition starts a new
//! internal stream instead of reading records keyed the old way.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::event::{
    Event, EventId, InvalidStreamName, MAX_EVENT_BYTES, MAX_EVENT_ID_LEN, MAX_KEY_LEN, StreamName,
    Timestamp,
};
use crate::expr::{EventRef, PayloadRef};
use crate::partition::stable_hash64;
use crate::pipeline::PipelineSpec;
use crate::ports::EncodedBatch;
use crate::record::ProjectedPayload;

/// The internal stream of `spec`: `rp-` and 16 hex digits of its name and fingerprint.
///
/// # Errors
/// Never in practice: the name is always valid; the type says what `StreamName` checks.
pub fn internal_stream(spec: &PipelineSpec) -> Result<StreamName, InvalidStreamName> {
    let hash = stable_hash64(&[spec.name.as_bytes(), spec.fingerprint().as_bytes()]);
    StreamName::new(format!("rp-{hash:016x}"))
}

/// The partitioning key of an event whose key text is `key_text`: the text itself, or a
/// hash of it when it is longer than an event key may be.
#[must_use]
pub fn partition_key(key_text: &str) -> Cow<'_, str> {
    if key_text.len() <= MAX_KEY_LEN && !key_text.contains('\0') {
        Cow::Borrowed(key_text)
    } else {
        Cow::Owned(format!("#{:016x}", stable_hash64(&[key_text.as_bytes()])))
    }
}

/// The pipeline's key text of an event whose record of the internal stream has the key
/// `route` ([`partition_key`]'s): the route itself, unless it has the form of a hashed key
/// (`#` and 16 hexadecimal digits), when the key text must be computed again from the
/// event.
#[must_use]
pub fn routed_key_text(route: &str) -> Option<&str> {
    let hashed = route.len() == 17
        && route.starts_with('#')
        && route[1..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    (!hashed).then_some(route)
}

/// Why an event cannot be repartitioned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("wrapped for the internal stream, the event would take {0} bytes, more than the log holds")]
pub struct TooLarge(pub usize);

/// `event`, read from `partition` of its stream, as a record of the internal stream
/// `internal` with key `key` (from [`partition_key`]): the same id and time, the origin in
/// the payload. An event decoded on the fast path carries only its projected fields
/// ([`crate::expr::PayloadRef::to_json_map`]): all the shards read of it.
///
/// # Errors
/// [`TooLarge`] when the wrapped event would exceed [`MAX_EVENT_BYTES`].
pub fn wrap<'e>(
    event: impl Into<EventRef<'e>>,
    partition: u32,
    key: String,
    internal: &StreamName,
) -> Result<Event, TooLarge> {
    let event = event.into();
    let mut payload = Map::new();
    payload.insert("stream".to_owned(), Value::from(event.stream.as_str()));
    payload.insert("partition".to_owned(), Value::from(partition));
    if let Some(key) = event.key {
        payload.insert("key".to_owned(), Value::from(key));
    }
    payload.insert(
        "payload".to_owned(),
        Value::Object(event.payload.to_json_map()),
    );
    // The id was checked when the event was read.
    let id = EventId::new(event.id).map_err(|_| TooLarge(event.id.len()))?;
    let wrapped = Event {
        id,
        stream: internal.clone(),
        ts: event.ts,
        key: Some(key),
        payload,
    };
    let len = wrapped.encoded_len();
    if len > MAX_EVENT_BYTES {
        return Err(TooLarge(len));
    }
    Ok(wrapped)
}

/// Appends `event`, read from `partition` of its stream, to `batch` as a record of the
/// internal stream `internal` with the key [`partition_key`] gives `key_text`: the bytes
/// [`wrap`]'s event encodes to ([`Event::to_json_bytes`]), written straight from the
/// borrowed event, without building it. On error the batch is left as it was.
///
/// # Errors
/// [`TooLarge`] when the wrapped event would exceed [`MAX_EVENT_BYTES`].
pub fn wrap_into<'e>(
    batch: &mut EncodedBatch,
    event: impl Into<EventRef<'e>>,
    partition: u32,
    key_text: &str,
    internal: &StreamName,
) -> Result<(), TooLarge> {
    let event = event.into();
    // The id was checked when the event was read; [`wrap`] checks it again.
    if event.id.is_empty() || event.id.len() > MAX_EVENT_ID_LEN {
        return Err(TooLarge(event.id.len()));
    }
    let routed = partition_key(key_text);
    let key: &str = &routed;
    let record = WrappedRecord {
        id: event.id,
        stream: internal.as_str(),
        ts: event.ts,
        key,
        payload: Origin {
            key: event.key,
            partition,
            payload: match event.payload {
                PayloadRef::Json(map) => OriginPayload::Json(map),
                PayloadRef::Projected { projection, slots } => {
                    OriginPayload::Projected(ProjectedPayload { projection, slots })
                }
            },
            stream: event.stream.as_str(),
        },
    };
    batch
        .push_with(key, |bytes| {
            let start = bytes.len();
            // Serializing strings, integers and JSON values into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *bytes, &record);
            let len = bytes.len() - start;
            if len > MAX_EVENT_BYTES {
                return Err(TooLarge(len));
            }
            Ok(())
        })
        .map(|_| ())
}

/// A record of an internal stream as [`wrap`] builds it, borrowed: [`Event`]'s fields in
/// its order.
#[derive(Serialize)]
struct WrappedRecord<'a> {
    id: &'a str,
    stream: &'a str,
    ts: Timestamp,
    key: &'a str,
    payload: Origin<'a>,
}

/// The payload of a wrapped event, its fields in name order as a JSON map holds them.
#[derive(Serialize)]
struct Origin<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    partition: u32,
    payload: OriginPayload<'a>,
    stream: &'a str,
}

/// The wrapped event's own payload: whole, or its projected fields.
#[derive(Serialize)]
#[serde(untagged)]
enum OriginPayload<'a> {
    Json(&'a Map<String, Value>),
    Projected(ProjectedPayload<'a, 'a>),
}

/// The event a record of an internal stream wraps, and the partition of its stream it was
/// read from; the record as it is when it is no wrapped event (another producer wrote it).
///
/// # Errors
/// The record itself, unchanged, when it does not hold a wrapped event (rare: returned
/// whole so that it can be kept as a dead letter without copying every record).
#[allow(clippy::result_large_err)]
pub fn unwrap(mut record: Event) -> Result<(Event, u32), Event> {
    let origin = (|| {
        let stream = StreamName::new(record.payload.get("stream")?.as_str()?).ok()?;
        let partition = u32::try_from(record.payload.get("partition")?.as_u64()?).ok()?;
        let keyed = match record.payload.get("key") {
            None | Some(Value::String(_)) => true,
            Some(_) => false,
        };
        (keyed && record.payload.get("payload")?.is_object()).then_some((stream, partition))
    })();
    let Some((stream, partition)) = origin else {
        return Err(record);
    };
    let key = match record.payload.remove("key") {
        Some(Value::String(key)) => Some(key),
        _ => None,
    };
    let payload = match record.payload.remove("payload") {
        Some(Value::Object(payload)) => payload,
        _ => Map::new(),
    };
    Ok((
        Event {
            id: record.id,
            stream,
            ts: record.ts,
            key,
            payload,
        },
        partition,
    ))
}

/// The payload field that marks a progress record.
const PROGRESS: &str = "progress_of";

/// For each partition of an internal stream of `partitions`, a key the log routes there
/// (Kafka's partitioner, [`crate::partition::partition_for`]).
#[must_use]
pub fn route_keys(partitions: u32) -> Vec<String> {
    let mut keys: Vec<Option<String>> = vec![None; partitions as usize];
    let mut missing = keys.len();
    let mut i = 0_u64;
    while missing > 0 {
        let key = format!("~{i}");
        let slot = &mut keys[crate::partition::partition_for(&key, partitions) as usize];
        if slot.is_none() {
            *slot = Some(key);
            missing -= 1;
        }
        i += 1;
    }
    keys.into_iter().flatten().collect()
}

/// Progress records for `internal`: one per key of `routes` ([`route_keys`]), saying
/// that partition `partition` of `stream` was read up to event time `ts`.
#[must_use]
pub fn progress_records(
    internal: &StreamName,
    routes: &[String],
    stream: &StreamName,
    partition: u32,
    ts: Timestamp,
) -> Vec<Event> {
    let mut origin = Map::new();
    origin.insert("stream".to_owned(), Value::from(stream.as_str()));
    origin.insert("partition".to_owned(), Value::from(partition));
    let mut payload = Map::new();
    payload.insert(PROGRESS.to_owned(), Value::Object(origin));
    routes
        .iter()
        .filter_map(|route| {
            let id = EventId::new(format!(
                "~progress:{stream}:{partition}:{}:{route}",
                ts.millis()
            ))
            .ok()?;
            Some(Event {
                id,
                stream: internal.clone(),
                ts,
                key: Some(route.clone()),
                payload: payload.clone(),
            })
        })
        .collect()
}

/// The source partition and event time a progress record reports, or `None` for any other
/// record.
#[must_use]
pub fn progress_of(record: &Event) -> Option<(StreamName, u32, i64)> {
    let origin = record.payload.get(PROGRESS)?.as_object()?;
    let stream = StreamName::new(origin.get("stream")?.as_str()?).ok()?;
    let partition = u32::try_from(origin.get("partition")?.as_u64()?).ok()?;
    Some((stream, partition, record.ts.millis()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventId, Timestamp};
    use crate::window::WindowSpec;

    #[test]
    fn the_routed_key_is_the_key_text_unless_hashed() {
        for text in ["campaign-7", "", "#0123", "#0123456789abcdeg", "7"] {
            assert_eq!(routed_key_text(&partition_key(text)), Some(text));
        }
        let long = "k".repeat(MAX_KEY_LEN + 1);
        for text in [long.as_str(), "a\0b"] {
            assert_eq!(routed_key_text(&partition_key(text)), None, "{text}");
        }
    }

    #[test]
    fn a_wrapped_event_unwraps_to_itself_and_its_partition() {
        let event = Event {
            id: EventId::new("e1").unwrap(),
            stream: StreamName::new("clicks").unwrap(),
            ts: Timestamp::from_millis(42),
            key: Some("/pricing".into()),
            payload: serde_json::json!({"user": "u7"})
                .as_object()
                .cloned()
                .unwrap(),
        };
        let internal = StreamName::new("rp-0").unwrap();
        let wrapped = wrap(&event, 2, partition_key("u7").into_owned(), &internal).unwrap();
        assert_eq!(wrapped.stream, internal);
        assert_eq!(wrapped.key.as_deref(), Some("u7"));
        assert_eq!(unwrap(wrapped), Ok((event.clone(), 2)));
        let mut keyless = event;
        keyless.key = None;
        let wrapped = wrap(&keyless, 0, partition_key("").into_owned(), &internal).unwrap();
        assert_eq!(unwrap(wrapped), Ok((keyless, 0)));
    }

    #[test]
    fn an_event_too_large_to_wrap_leaves_the_batch_as_it_was() {
        let internal = StreamName::new("rp-0").unwrap();
        let small = Event {
            id: EventId::new("e1").unwrap(),
            stream: StreamName::new("clicks").unwrap(),
            ts: Timestamp::from_millis(42),
            key: None,
            payload: Map::new(),
        };
        let mut large = small.clone();
        large.id = EventId::new("e2").unwrap();
        large
            .payload
            .insert("blob".to_owned(), Value::from("x".repeat(MAX_EVENT_BYTES)));
        let mut batch = EncodedBatch::default();
        wrap_into(&mut batch, &small, 1, "k", &internal).unwrap();
        let error = wrap_into(&mut batch, &large, 1, "k", &internal).unwrap_err();
        assert!(error.0 > MAX_EVENT_BYTES, "{error}");
        assert!(wrap(&large, 1, "k".to_owned(), &internal).is_err());
        let expected = wrap(&small, 1, "k".to_owned(), &internal).unwrap();
        assert_eq!(batch.len(), 1);
        assert_eq!(batch.to_events().unwrap(), vec![expected]);
        let progress = progress_records(&internal, &["~0".to_owned()], &small.stream, 1, small.ts);
        batch.push_event(&progress[0]);
        let keys: Vec<&str> = batch.iter().map(|(key, _)| key).collect();
        assert_eq!(keys, ["k", "~0"]);
        assert_eq!(batch.to_events().unwrap()[1], progress[0]);
    }

    #[test]
    fn long_keys_partition_by_their_hash_and_names_follow_the_definition() {
        let long = "k".repeat(MAX_KEY_LEN + 1);
        assert!(partition_key(&long).starts_with('#'));
        assert_eq!(partition_key(&long), partition_key(&long));
        let a = PipelineSpec::counting("p", vec![], WindowSpec::Tumbling { size_ms: 60_000 });
        let b = PipelineSpec::counting("p", vec![], WindowSpec::Tumbling { size_ms: 30_000 });
        assert_ne!(internal_stream(&a).unwrap(), internal_stream(&b).unwrap());
        assert!(internal_stream(&a).unwrap().as_str().starts_with("rp-"));
    }

    #[test]
    fn progress_reaches_every_partition() {
        for n in [1, 3, 7] {
            let routes = route_keys(n);
            let mut reached: Vec<u32> = routes
                .iter()
                .map(|k| crate::partition::partition_for(k, n))
                .collect();
            reached.sort_unstable();
            assert_eq!(reached, (0..n).collect::<Vec<_>>());
        }
        let internal = StreamName::new("rp-0").unwrap();
        let stream = StreamName::new("s").unwrap();
        let records = progress_records(
            &internal,
            &route_keys(3),
            &stream,
            2,
            Timestamp::from_millis(9),
        );
        assert_eq!(records.len(), 3);
        for record in &records {
            assert_eq!(progress_of(record), Some((stream.clone(), 2, 9)));
        }
    }

    #[test]
    fn records_that_are_not_wrapped_events_do_not_unwrap() {
        let record = Event {
            id: EventId::new("x").unwrap(),
            stream: StreamName::new("rp-0").unwrap(),
            ts: Timestamp::from_millis(0),
            key: None,
            payload: serde_json::json!({"stream": "s"})
                .as_object()
                .cloned()
                .unwrap(),
        };
        assert_eq!(unwrap(record.clone()), Err(record));
    }
}
