//! Reading events back from the log.
//!
//! A record read from a stream's partition must hold an event *of that stream*, and one
//! that ingestion would have accepted: others may write a topic, and an event a store
//! refuses later would stall the pipeline behind it. Two decoders make that decision:
//!
//! - [`decode_event`] builds the whole [`Event`] and runs ingestion's checks on it
//!   ([`check_event`]). It is the reference: its verdict and its error message are the ones
//!   that count.
//! - [`decode_view`] is the pipelines' fast path. In one scan of the record's bytes it
//!   checks everything [`decode_event`] checks and keeps only what a pipeline reads: `id`,
//!   `ts`, `key` and the payload fields of its [`Projection`], borrowed from the bytes
//!   (strings are copied only when they hold escapes). It allocates nothing per event.
//!   Where it cannot decide cheaply (a large record, anything it would refuse) it answers
//!   `None`, and the caller asks [`decode_event`]: so both decoders always agree (a
//!   property test holds them to it). It reads a record first with a scan of its bytes
//!   (`scan`: strings without escapes, short integers, nothing it would refuse), and
//!   through serde_json only what the scan leaves undecided.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use crate::event::{Event, MAX_EVENT_BYTES, MAX_EVENT_ID_LEN, StreamName, Timestamp, check_key};
use crate::parse::check_event;
use crate::value::Value;

mod scan;

/// Why a record read from a stream's partition holds no event of that stream.
#[derive(Debug, thiserror::Error)]
pub enum UndecodableRecord {
    /// The record has no value (a Kafka tombstone).
    #[error("the record has no value")]
    NoValue,
    /// The value is not an encoded event.
    #[error("the record is not an event")]
    NotAnEvent(#[source] serde_json::Error),
    /// The value is an event that ingestion would have refused.
    #[error("the record is event {id}, which Tributary does not accept: {reasons}")]
    Invalid {
        /// The event.
        id: String,
        /// Each failing field and why, `; `-separated.
        reasons: String,
    },
    /// The value is an event of another stream.
    #[error("the record is event {id} of stream {found}, not of {expected}")]
    OtherStream {
        /// The event.
        id: String,
        /// The stream whose partition holds the record.
        expected: StreamName,
        /// The stream the event names.
        found: StreamName,
    },
}

/// The event a record of `stream` holds, decoded whole and checked as ingestion checks
/// events.
///
/// # Errors
/// When the record holds no event of `stream` that ingestion would accept.
pub fn decode_event(stream: &StreamName, value: Option<&[u8]>) -> Result<Event, UndecodableRecord> {
    let bytes = value.ok_or(UndecodableRecord::NoValue)?;
    let event = Event::from_json_bytes(bytes).map_err(UndecodableRecord::NotAnEvent)?;
    if &event.stream != stream {
        return Err(UndecodableRecord::OtherStream {
            id: event.id.to_string(),
            expected: stream.clone(),
            found: event.stream,
        });
    }
    check_event(&event).map_err(|errors| UndecodableRecord::Invalid {
        id: event.id.to_string(),
        reasons: errors
            .iter()
            .map(|(field, reason)| match *field {
                "" => reason.clone(),
                field => format!("{field} {reason}"),
            })
            .collect::<Vec<_>>()
            .join("; "),
    })?;
    Ok(event)
}

/// The payload fields a pipeline reads, each a path of field names (`payload.a.b` is
/// `["a", "b"]`), in the order of their slots.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Projection {
    paths: Vec<Box<[String]>>,
    root: Node,
}

/// One level of a projection: the slot of the path that ends here, and the paths that go
/// deeper.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Node {
    slot: Option<usize>,
    children: Vec<(Box<str>, Node)>,
}

impl Node {
    /// Sets the slots of the paths below this level to `NULL`.
    fn clear_below(&self, slots: &mut [Value<'_>]) {
        for (_, child) in &self.children {
            if let Some(slot) = child.slot {
                slots[slot] = Value::Null;
            }
            child.clear_below(slots);
        }
    }

    /// Orders the children of this level and every level below by name.
    fn sort(&mut self) {
        self.children.sort_by(|(a, _), (b, _)| a.cmp(b));
        for (_, child) in &mut self.children {
            child.sort();
        }
    }

    /// Whether a path that ends at or below this level has a value in `slots`.
    fn has_value(&self, slots: &[Value<'_>]) -> bool {
        self.slot.is_some_and(|slot| !slots[slot].is_null())
            || self
                .children
                .iter()
                .any(|(_, child)| child.has_value(slots))
    }

    fn child(&self, name: &str) -> Option<&Node> {
        self.children
            .iter()
            .find(|(n, _)| &**n == name)
            .map(|(_, node)| node)
    }
}

impl Projection {
    /// The projection of `paths`, each once (in the order first given).
    pub fn new<'p>(paths: impl IntoIterator<Item = &'p [String]>) -> Self {
        let mut projection = Self::default();
        for path in paths {
            if path.is_empty() || projection.slot_of(path).is_some() {
                continue;
            }
            let slot = projection.paths.len();
            projection.paths.push(path.into());
            let mut node = &mut projection.root;
            for name in path {
                let i = match node.children.iter().position(|(n, _)| **n == **name) {
                    Some(i) => i,
                    None => {
                        node.children.push((name.as_str().into(), Node::default()));
                        node.children.len() - 1
                    }
                };
                node = &mut node.children[i].1;
            }
            node.slot = Some(slot);
        }
        // In name order, as a JSON map holds them: the encoder of projected payloads
        // ([`ProjectedPayload`]) writes the fields in this order.
        projection.root.sort();
        projection
    }

    /// How many paths (slots) it has.
    #[must_use]
    pub fn len(&self) -> usize {
        self.paths.len()
    }

    /// Whether it reads no payload field.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// The paths, in the order of their slots.
    #[must_use]
    pub fn paths(&self) -> &[Box<[String]>] {
        &self.paths
    }

    /// The slot of `path`.
    #[must_use]
    pub fn slot_of<S: AsRef<str>>(&self, path: &[S]) -> Option<usize> {
        self.paths
            .iter()
            .position(|p| p.len() == path.len() && p.iter().zip(path).all(|(a, b)| a == b.as_ref()))
    }

    /// The values of the projected fields of `payload`, as the fast path reads them (for
    /// events decoded whole).
    pub fn extract<'a>(
        &self,
        payload: &'a serde_json::Map<String, serde_json::Value>,
        into: &mut Vec<Value<'a>>,
    ) {
        for path in &self.paths {
            into.push(crate::expr::descend(payload, path));
        }
    }
}

/// The projected fields of a payload as a JSON object, written straight to a serializer:
/// the fields that have a value, nested as in the event, each in name order — the bytes
/// [`crate::expr::PayloadRef::to_json_map`]'s object encodes to, without building it.
pub(crate) struct ProjectedPayload<'p, 'v> {
    /// The projection.
    pub(crate) projection: &'p Projection,
    /// Its values, one per path.
    pub(crate) slots: &'p [Value<'v>],
}

impl Serialize for ProjectedPayload<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        ProjectedLevel {
            node: &self.projection.root,
            slots: self.slots,
        }
        .serialize(serializer)
    }
}

/// One object level of a [`ProjectedPayload`].
struct ProjectedLevel<'p, 'v> {
    node: &'p Node,
    slots: &'p [Value<'v>],
}

impl Serialize for ProjectedLevel<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for (name, child) in &self.node.children {
            match child.slot.map(|slot| &self.slots[slot]) {
                // A field with a value has no projected field below it with one.
                Some(value) if !value.is_null() => {
                    map.serialize_entry(&**name, &ScalarValue(value))?;
                }
                _ if child.has_value(self.slots) => map.serialize_entry(
                    &**name,
                    &ProjectedLevel {
                        node: child,
                        slots: self.slots,
                    },
                )?,
                _ => {}
            }
        }
        map.end()
    }
}

/// A projected value as JSON, as `serde_json::Value` holds it (a float that is not finite
/// as `null`).
struct ScalarValue<'p, 'v>(&'p Value<'v>);

impl Serialize for ScalarValue<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Null => serializer.serialize_unit(),
            Value::Bool(b) => serializer.serialize_bool(*b),
            Value::Int(i) => serializer.serialize_i64(*i),
            Value::Float(f) if f.is_finite() => serializer.serialize_f64(*f),
            Value::Float(_) => serializer.serialize_unit(),
            Value::Str(s) => serializer.serialize_str(s),
        }
    }
}

/// An event decoded by [`decode_view`]: what a pipeline reads of it. Its projected payload
/// fields are in the slots the caller passed.
#[derive(Debug, Clone, PartialEq)]
pub struct EventView<'a> {
    /// The event's id.
    pub id: Cow<'a, str>,
    /// Its event time.
    pub ts: Timestamp,
    /// Its key.
    pub key: Option<Cow<'a, str>>,
}

/// Decodes and checks a record of `stream` on the fast path: the event's id, time and
/// key, with the values of `projection`'s fields appended to `slots` (one per path, `NULL`
/// where missing). `None` when the fast path does not decide (then `slots` is as it was):
/// ask [`decode_event`], which gives the verdict and the reason.
pub fn decode_view<'a>(
    stream: &StreamName,
    value: &'a [u8],
    projection: &Projection,
    slots: &mut Vec<Value<'a>>,
) -> Option<EventView<'a>> {
    decode(stream, value, projection, slots, false).map(|(view, _)| view)
}

/// A record of a pipeline's internal stream ([`crate::repartition`]) decoded on the fast
/// path.
#[derive(Debug, Clone, PartialEq)]
pub enum WrappedView<'a> {
    /// An event, read from `partition` of the source stream `stream`: its id and time, and
    /// its own key (not the pipeline's key the record is partitioned by).
    Event {
        /// The event.
        event: EventView<'a>,
        /// The source stream it was read from (a name the caller checks).
        stream: Cow<'a, str>,
        /// The partition of `stream` it was read from.
        partition: u32,
        /// The record's own key: what the repartition task routed the event by
        /// ([`crate::repartition::routed_key_text`] reads the pipeline's key text in it).
        route: Option<Cow<'a, str>>,
    },
    /// A progress record ([`crate::repartition::progress_records`]): `partition` of
    /// `stream` was read up to event time `ts`.
    Progress {
        /// The source stream (a name the caller checks).
        stream: Cow<'a, str>,
        /// The partition of `stream`.
        partition: u32,
        /// How far it was read.
        ts: Timestamp,
    },
}

/// Decodes and checks a record of the internal stream `internal` on the fast path, as
/// [`decode_view`] does a record of a source: what the record wraps, with the values of
/// `projection`'s fields (read in the wrapped event's payload) appended to `slots`. `None`
/// when the fast path does not decide (then `slots` is as it was): decode the record whole
/// ([`decode_event`]) and ask [`crate::repartition::progress_of`] and
/// [`crate::repartition::unwrap`].
pub fn decode_wrapped_view<'a>(
    internal: &StreamName,
    value: &'a [u8],
    projection: &Projection,
    slots: &mut Vec<Value<'a>>,
) -> Option<WrappedView<'a>> {
    let (view, wrapper) = decode(internal, value, projection, slots, true)?;
    match wrapper {
        Some(Wrapper::Event {
            stream,
            partition,
            key,
        }) => Some(WrappedView::Event {
            event: EventView {
                id: view.id,
                ts: view.ts,
                key,
            },
            stream,
            partition,
            route: view.key,
        }),
        Some(Wrapper::Progress { stream, partition }) => Some(WrappedView::Progress {
            stream,
            partition,
            ts: view.ts,
        }),
        None => None,
    }
}

/// The fast path of [`decode_view`] and [`decode_wrapped_view`].
fn decode<'a>(
    stream: &StreamName,
    value: &'a [u8],
    projection: &Projection,
    slots: &mut Vec<Value<'a>>,
    wrapped: bool,
) -> Option<(EventView<'a>, Option<Wrapper<'a>>)> {
    // The whole event must fit in MAX_EVENT_BYTES *as Tributary encodes it*, which can be
    // up to ~5 times what other writers' JSON takes (a number such as `1e15` is written
    // out in full): under an eighth of the limit, no record can be refused for its size.
    if value.len() > MAX_EVENT_BYTES / 8 {
        return None;
    }
    // Checked once as a whole, so that the parser does not check each string again.
    let text = std::str::from_utf8(value).ok()?;
    let base = slots.len();
    slots.resize(base + projection.len(), Value::Null);
    if let Some(decoded) = scan::record(stream, text, projection, &mut slots[base..], wrapped) {
        return Some(decoded);
    }
    // Undecided: serde reads it again, from empty slots.
    slots[base..].fill(Value::Null);
    let decoded = decode_with_serde(stream, text, projection, &mut slots[base..], wrapped);
    if decoded.is_none() {
        slots.truncate(base);
    }
    decoded
}

/// The fast path through serde_json, which decides every record the scan leaves
/// undecided: `None` refuses it (then `slots` is in any state).
fn decode_with_serde<'a>(
    stream: &StreamName,
    text: &'a str,
    projection: &Projection,
    slots: &mut [Value<'a>],
    wrapped: bool,
) -> Option<(EventView<'a>, Option<Wrapper<'a>>)> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let decoded = RecordSeed {
        stream,
        projection,
        slots,
        wrapped,
    }
    .deserialize(&mut deserializer)
    .and_then(|view| deserializer.end().map(|()| view));
    match decoded {
        Ok((view, wrapper)) if wrapped == wrapper.is_some() => Some((view, wrapper)),
        _ => None,
    }
}

/// An error of the fast path; its text does not matter (the full decoder gives the reason).
fn refuse<E: de::Error>() -> E {
    E::custom("refused by the fast path")
}

/// A string borrowed from the input when it holds no escape, copied otherwise.
struct Str<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Str<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrVisitor;
        impl<'de> Visitor<'de> for StrVisitor {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(s.to_owned())))
            }
        }
        deserializer.deserialize_str(StrVisitor)
    }
}

/// A field name of a payload object, checked: only borrowed or inspected, never kept.
struct FieldName<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for FieldName<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let Str(name) = Str::deserialize(deserializer)?;
        if name.contains(['.', '\0']) || name.starts_with('$') {
            return Err(refuse());
        }
        Ok(FieldName(name))
    }
}

/// The whole record: a JSON object with exactly the fields of [`Event`].
struct RecordSeed<'p, 's, 'a> {
    stream: &'p StreamName,
    projection: &'p Projection,
    slots: &'s mut [Value<'a>],
    /// Whether the record is of an internal stream: its payload wraps an event
    /// ([`WrapperSeed`]).
    wrapped: bool,
}

impl<'a> DeserializeSeed<'a> for RecordSeed<'_, '_, 'a> {
    type Value = (EventView<'a>, Option<Wrapper<'a>>);

    fn deserialize<D: Deserializer<'a>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'a> Visitor<'a> for RecordSeed<'_, '_, 'a> {
    type Value = (EventView<'a>, Option<Wrapper<'a>>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an event")
    }

    fn visit_map<A: MapAccess<'a>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut id: Option<Cow<'a, str>> = None;
        let mut stream = false;
        let mut ts: Option<Timestamp> = None;
        let mut key: Option<Option<Cow<'a, str>>> = None;
        let mut payload = false;
        let mut wrapper = None;
        while let Some(Str(field)) = map.next_key::<Str<'a>>()? {
            match &*field {
                "id" if id.is_none() => {
                    let Str(value) = map.next_value()?;
                    if value.is_empty() || value.len() > MAX_EVENT_ID_LEN || value.contains('\0') {
                        return Err(refuse());
                    }
                    id = Some(value);
                }
                "stream" if !stream => {
                    let Str(value) = map.next_value()?;
                    if value != self.stream.as_str() {
                        return Err(refuse());
                    }
                    stream = true;
                }
                "ts" if ts.is_none() => {
                    let value: Timestamp = map.next_value()?;
                    ts = Some(value.validated().map_err(|_| refuse())?);
                }
                "key" if key.is_none() => {
                    let value = map.next_value::<Option<Str<'a>>>()?.map(|Str(k)| k);
                    if value.as_deref().is_some_and(|k| check_key(k).is_err()) {
                        return Err(refuse());
                    }
                    key = Some(value);
                }
                "payload" if !payload && self.wrapped => {
                    wrapper = Some(map.next_value_seed(WrapperSeed {
                        root: &self.projection.root,
                        slots: &mut *self.slots,
                    })?);
                    payload = true;
                }
                "payload" if !payload => {
                    map.next_value_seed(ObjectSeed {
                        node: Some(&self.projection.root),
                        slots: &mut *self.slots,
                    })?;
                    payload = true;
                }
                // An unknown or repeated field.
                _ => return Err(refuse()),
            }
        }
        match (id, stream, ts, payload) {
            (Some(id), true, Some(ts), true) => Ok((
                EventView {
                    id,
                    ts,
                    key: key.flatten(),
                },
                wrapper,
            )),
            _ => Err(refuse()),
        }
    }
}

/// What the payload of a record of an internal stream holds besides the wrapped event's
/// own payload.
#[derive(Debug, PartialEq)]
enum Wrapper<'a> {
    /// A wrapped event: its source partition and its own key.
    Event {
        stream: Cow<'a, str>,
        partition: u32,
        key: Option<Cow<'a, str>>,
    },
    /// A progress record's source partition.
    Progress {
        stream: Cow<'a, str>,
        partition: u32,
    },
}

/// A string of a payload: it may hold no NUL.
fn payload_str<'a, E: de::Error>(Str(s): Str<'a>) -> Result<Cow<'a, str>, E> {
    if s.contains('\0') {
        return Err(refuse());
    }
    Ok(s)
}

/// A partition number of a payload, as [`crate::repartition::unwrap`] reads it.
fn payload_partition<E: de::Error>(n: u64) -> Result<u32, E> {
    u32::try_from(n).map_err(|_| refuse())
}

/// The payload of a record of an internal stream, exactly as
/// [`crate::repartition::wrap`] or [`crate::repartition::progress_records`] write it: a
/// wrapped event's origin, own key and payload (its projected fields kept, all checked),
/// or a progress record's origin. Anything else (an unknown or repeated field) is left to
/// the whole decoder.
struct WrapperSeed<'p, 's, 'a> {
    root: &'p Node,
    slots: &'s mut [Value<'a>],
}

impl<'a> DeserializeSeed<'a> for WrapperSeed<'_, '_, 'a> {
    type Value = Wrapper<'a>;

    fn deserialize<D: Deserializer<'a>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'a> Visitor<'a> for WrapperSeed<'_, '_, 'a> {
    type Value = Wrapper<'a>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a wrapped event")
    }

    fn visit_map<A: MapAccess<'a>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut stream = None;
        let mut partition = None;
        let mut key = None;
        let mut payload = false;
        let mut progress = None;
        while let Some(Str(field)) = map.next_key::<Str<'a>>()? {
            match &*field {
                "stream" if stream.is_none() => stream = Some(payload_str(map.next_value()?)?),
                "partition" if partition.is_none() => {
                    partition = Some(payload_partition(map.next_value()?)?);
                }
                "key" if key.is_none() => key = Some(payload_str(map.next_value()?)?),
                "payload" if !payload => {
                    map.next_value_seed(ObjectSeed {
                        node: Some(self.root),
                        slots: &mut *self.slots,
                    })?;
                    payload = true;
                }
                "progress_of" if progress.is_none() => {
                    progress = Some(map.next_value::<Origin<'a>>()?);
                }
                _ => return Err(refuse()),
            }
        }
        match (stream, partition, payload, progress) {
            (Some(stream), Some(partition), true, None) => Ok(Wrapper::Event {
                stream,
                partition,
                key,
            }),
            (None, None, false, Some(Origin { stream, partition })) if key.is_none() => {
                Ok(Wrapper::Progress { stream, partition })
            }
            _ => Err(refuse()),
        }
    }
}

/// The origin a progress record names: `{"stream": ..., "partition": ...}`, nothing else.
struct Origin<'a> {
    stream: Cow<'a, str>,
    partition: u32,
}

impl<'de> Deserialize<'de> for Origin<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OriginVisitor;
        impl<'de> Visitor<'de> for OriginVisitor {
            type Value = Origin<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a source partition")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Origin<'de>, A::Error> {
                let mut stream = None;
                let mut partition = None;
                while let Some(Str(field)) = map.next_key::<Str<'de>>()? {
                    match &*field {
                        "stream" if stream.is_none() => {
                            stream = Some(payload_str(map.next_value()?)?);
                        }
                        "partition" if partition.is_none() => {
                            partition = Some(payload_partition(map.next_value()?)?);
                        }
                        _ => return Err(refuse()),
                    }
                }
                match (stream, partition) {
                    (Some(stream), Some(partition)) => Ok(Origin { stream, partition }),
                    _ => Err(refuse()),
                }
            }
        }
        deserializer.deserialize_map(OriginVisitor)
    }
}

/// A JSON object of a payload (the payload itself, or an object within it): field names
/// checked, projected fields kept.
struct ObjectSeed<'p, 's, 'a> {
    /// Where the object is in the projection; `None` when no projected path goes through it.
    node: Option<&'p Node>,
    slots: &'s mut [Value<'a>],
}

impl<'a> DeserializeSeed<'a> for ObjectSeed<'_, '_, 'a> {
    type Value = ();

    fn deserialize<D: Deserializer<'a>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'a> Visitor<'a> for ObjectSeed<'_, '_, 'a> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'a>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(FieldName(name)) = map.next_key()? {
            let node = self.node.and_then(|n| n.child(&name));
            map.next_value_seed(ValueSeed {
                node,
                slots: &mut *self.slots,
                in_array: false,
            })?;
        }
        Ok(())
    }
}

/// Any JSON value of a payload, checked against the payload rules
/// ([`crate::payload`]); kept in its slot when its path is projected.
struct ValueSeed<'p, 's, 'a> {
    node: Option<&'p Node>,
    slots: &'s mut [Value<'a>],
    /// Whether the value is an item of an array (which may not be an array).
    in_array: bool,
}

impl<'a> ValueSeed<'_, '_, 'a> {
    /// Keeps `value` when the path is projected (a repeated field keeps its last value, as
    /// the whole decoder does).
    fn keep(self, value: Value<'a>) {
        if let Some(slot) = self.node.and_then(|n| n.slot) {
            self.slots[slot] = value;
        }
    }
}

impl<'a> DeserializeSeed<'a> for ValueSeed<'_, '_, 'a> {
    type Value = ();

    fn deserialize<D: Deserializer<'a>>(self, deserializer: D) -> Result<(), D::Error> {
        // A field repeated in its object counts with its last value only: forget what an
        // earlier one put in the slots below.
        if let Some(node) = self.node {
            node.clear_below(self.slots);
        }
        deserializer.deserialize_any(self)
    }
}

impl<'a> Visitor<'a> for ValueSeed<'_, '_, 'a> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.keep(Value::Null);
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.keep(Value::Bool(v));
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.keep(Value::Int(v));
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        // Integers must fit in a signed 64-bit integer.
        let v = i64::try_from(v).map_err(|_| refuse())?;
        self.keep(Value::Int(v));
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.keep(Value::Float(v));
        Ok(())
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'a str) -> Result<(), E> {
        if v.contains('\0') {
            return Err(refuse());
        }
        self.keep(Value::Str(Cow::Borrowed(v)));
        Ok(())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        if v.contains('\0') {
            return Err(refuse());
        }
        if self.node.is_some_and(|n| n.slot.is_some()) {
            self.keep(Value::Str(Cow::Owned(v.to_owned())));
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'a>>(self, mut seq: A) -> Result<(), A::Error> {
        if self.in_array {
            return Err(refuse());
        }
        while seq
            .next_element_seed(ValueSeed {
                node: None,
                slots: &mut *self.slots,
                in_array: true,
            })?
            .is_some()
        {}
        // Arrays read as NULL.
        self.keep(Value::Null);
        Ok(())
    }

    fn visit_map<A: MapAccess<'a>>(self, map: A) -> Result<(), A::Error> {
        ObjectSeed {
            node: self.node,
            slots: &mut *self.slots,
        }
        .visit_map(map)?;
        // Objects read as NULL.
        self.keep(Value::Null);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::EventId;
    use crate::expr::descend;

    fn clicks() -> StreamName {
        StreamName::new("clicks").unwrap()
    }

    fn paths() -> Projection {
        let paths: Vec<Vec<String>> = [&["a"][..], &["a", "b"], &["b"], &["a", "a"], &["n"]]
            .iter()
            .map(|p| p.iter().map(|s| (*s).to_owned()).collect())
            .collect();
        Projection::new(paths.iter().map(Vec::as_slice))
    }

    /// Both decoders on `bytes`: the fast path never accepts what the whole decoder
    /// refuses, and reads what it reads.
    fn agree(bytes: &[u8]) -> Option<EventView<'_>> {
        let projection = paths();
        let mut slots = vec![Value::Str(Cow::Borrowed("before"))];
        let fast = decode_view(&clicks(), bytes, &projection, &mut slots);
        let whole = decode_event(&clicks(), Some(bytes));
        let Some(view) = fast else {
            assert_eq!(slots.len(), 1, "slots left as they were");
            return None;
        };
        let event = whole.unwrap_or_else(|e| {
            panic!(
                "fast path accepted what is refused ({e}): {}",
                String::from_utf8_lossy(bytes)
            )
        });
        assert_eq!(view.id, event.id.as_str());
        assert_eq!(view.ts, event.ts);
        assert_eq!(view.key.as_deref(), event.key.as_deref());
        for (i, path) in projection.paths().iter().enumerate() {
            assert_eq!(slots[1 + i], descend(&event.payload, path), "{path:?}");
        }
        Some(view)
    }

    #[test]
    fn events_written_by_tributary_take_the_fast_path() {
        let event = Event {
            id: EventId::new("e\"1").unwrap(),
            stream: clicks(),
            ts: Timestamp::from_millis(1_700_000_000_123),
            key: Some("k\\1".to_owned()),
            payload: json!({"a": {"b": "x\ty", "a": 2}, "b": [1, {"c": null}], "n": -1.5})
                .as_object()
                .unwrap()
                .clone(),
        };
        let bytes = event.to_json_bytes();
        let view = agree(&bytes).expect("decided on the fast path");
        assert_eq!(view.id, "e\"1");
    }

    #[test]
    fn strings_without_escapes_are_borrowed() {
        let bytes = br#"{"id":"e1","stream":"clicks","ts":1,"key":"k","payload":{"b":"plain"}}"#;
        let projection = paths();
        let mut slots = Vec::new();
        let view = decode_view(&clicks(), bytes, &projection, &mut slots).unwrap();
        assert!(matches!(view.id, Cow::Borrowed(_)));
        assert!(matches!(view.key, Some(Cow::Borrowed(_))));
        assert!(matches!(slots[2], Value::Str(Cow::Borrowed("plain"))));
    }

    #[test]
    fn what_ingestion_refuses_is_left_to_the_whole_decoder() {
        for bytes in [
            &br#"{"id":"e1","stream":"other","ts":1,"payload":{}}"#[..],
            br#"{"id":"","stream":"clicks","ts":1,"payload":{}}"#,
            br#"{"id":"e1","stream":"clicks","ts":1,"payload":{"a.b":1}}"#,
            br#"{"id":"e1","stream":"clicks","ts":1,"payload":{"$a":1}}"#,
            br#"{"id":"e1","stream":"clicks","ts":1,"payload":{"a":[[1]]}}"#,
            br#"{"id":"e1","stream":"clicks","ts":1,"payload":{"a":"\u0000"}}"#,
            br#"{"id":"e1","stream":"clicks","ts":1,"payload":{"a":9223372036854775808}}"#,
            br#"{"id":"e1","stream":"clicks","ts":"9999-12-31T23:59:60.000Z","payload":{}}"#,
            br#"{"id":"e1","stream":"clicks","ts":253402300800000,"payload":{}}"#,
            br#"{"id":"e1","stream":"clicks","ts":1,"payload":{},"extra":1}"#,
            br#"{"id":"e1","id":"e2","stream":"clicks","ts":1,"payload":{}}"#,
            br#"{"id":"e1","stream":"clicks","ts":1.5,"payload":{}}"#,
            br#"{"id":"e1","stream":"clicks","ts":1,"payload":[]}"#,
            br#"{"id":"e1","stream":"clicks","ts":1}"#,
            br#"["e1","clicks",1,null,{}]"#,
            br#"{"id":"e1","stream":"clicks","ts":1,"payload":{}} x"#,
        ] {
            let projection = paths();
            let mut slots = Vec::new();
            assert!(
                decode_view(&clicks(), bytes, &projection, &mut slots).is_none(),
                "{}",
                String::from_utf8_lossy(bytes)
            );
            assert!(slots.is_empty());
        }
    }

    #[test]
    fn a_repeated_payload_field_counts_with_its_last_value() {
        let bytes = br#"{"id":"e1","stream":"clicks","ts":1,"payload":{"a":{"b":1},"a":2}}"#;
        agree(bytes).expect("decided on the fast path");
    }

    /// One of `valid` most of the time, else one of `invalid`.
    fn mostly(valid: &[&'static str], invalid: &[&'static str]) -> BoxedStrategy<String> {
        prop_oneof![
            6 => prop::sample::select(valid.to_vec()),
            1 => prop::sample::select(invalid.to_vec()),
        ]
        .prop_map(str::to_owned)
        .boxed()
    }

    /// JSON text of a payload value, mostly valid.
    fn value(depth: u32) -> BoxedStrategy<String> {
        let leaf = prop_oneof![
            Just("null".to_owned()),
            Just("true".to_owned()),
            any::<i64>().prop_map(|i| i.to_string()),
            (-1e6_f64..1e6).prop_map(|f| format!("{f:?}")),
            mostly(
                &[
                    r#""x""#,
                    r#""é""#,
                    r#""q\"uote""#,
                    r#""t\tab""#,
                    r#""\u00e9""#,
                    "1e15"
                ],
                &[r#""a\u0000b""#, "9223372036854775808"],
            ),
        ];
        if depth == 0 {
            return leaf.boxed();
        }
        let key = mostly(
            &[r#""a""#, r#""b""#, r#""\u0061""#, r#""n""#],
            &[r#""c.d""#, r#""$e""#, r#""f\u0000""#],
        );
        prop_oneof![
            3 => leaf,
            1 => prop::collection::vec(value(depth - 1), 0..3)
                .prop_map(|items| format!("[{}]", items.join(","))),
            2 => prop::collection::vec((key, value(depth - 1)), 0..4).prop_map(|fields| {
                let fields: Vec<String> = fields.iter().map(|(k, v)| format!("{k}:{v}")).collect();
                format!("{{{}}}", fields.join(","))
            }),
        ]
        .boxed()
    }

    /// JSON text of a record, mostly an event of `clicks`.
    fn record() -> impl Strategy<Value = String> {
        let id = mostly(&[r#""e1""#, r#""\"q""#], &[r#""""#, r#""e\u0000""#, "1"]);
        let stream = mostly(&[r#""clicks""#], &[r#""views""#, r#""Bad!""#]);
        let ts = mostly(
            &[
                r#""2026-11-25T18:00:00.250Z""#,
                r#""2026-11-25T18:00:00Z""#,
                r#""2026-11-25T19:00:00.25+01:00""#,
                r#""2024-02-29T23:59:59.999Z""#,
                r#""0000-01-01T00:00:00.000Z""#,
                "1700000000000",
            ],
            &[
                r#""2026-02-30T00:00:00.000Z""#,
                "-62167219200001",
                "1.5",
                "null",
            ],
        );
        let key = mostly(&[r#""k""#, "null"], &[r#""k\u0000""#, "2"]);
        let payload = prop_oneof![
            9 => value(3).prop_map(|v| if v.starts_with('{') { v } else { format!(r#"{{"a":{v}}}"#) }),
            1 => value(3),
        ];
        let fields = (id, stream, ts, key, payload, any::<u8>());
        fields.prop_map(|(id, stream, ts, key, payload, shape)| {
            let mut parts = vec![
                format!(r#""id":{id}"#),
                format!(r#""stream":{stream}"#),
                format!(r#""ts":{ts}"#),
            ];
            if shape & 1 == 0 {
                parts.push(format!(r#""key":{key}"#));
            }
            if shape & 2 == 0 || shape & 32 == 0 {
                parts.push(format!(r#""payload":{payload}"#));
            }
            if shape & 4 != 0 {
                let by = usize::from(shape >> 4) % parts.len();
                parts.rotate_left(by);
            }
            if shape & 8 != 0 && shape & 64 != 0 && shape & 128 != 0 {
                parts.push(r#""extra":1"#.to_owned());
            }
            format!("{{{}}}", parts.join(","))
        })
    }

    /// The scan and serde on `text`, a record of `stream`: whatever the scan decides, serde
    /// decides the same; whether the scan decided.
    fn scan_agrees_on(stream: &StreamName, text: &str, wrapped: bool) -> bool {
        let projection = paths();
        let mut scanned = vec![Value::Null; projection.len()];
        let Some(decided) = scan::record(stream, text, &projection, &mut scanned, wrapped) else {
            return false;
        };
        let mut read = vec![Value::Null; projection.len()];
        let expected = decode_with_serde(stream, text, &projection, &mut read, wrapped)
            .unwrap_or_else(|| panic!("the scan accepted what serde refuses: {text}"));
        assert_eq!(decided, expected, "{text}");
        assert_eq!(scanned, read, "{text}");
        true
    }

    fn scan_agrees(text: &str) -> bool {
        scan_agrees_on(&clicks(), text, false)
    }

    #[test]
    fn events_as_tributary_writes_them_take_the_scan() {
        let text = r#"{"id":"r-1","stream":"clicks","ts":"2026-11-25T18:00:00.250Z","key":"/docs","payload":{"a":{"b":"x","a":-2,"c":[1,{"d":[]}]},"b":1.5,"n":null,"user_agent":"Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0"}}"#;
        assert!(scan_agrees(text));
        let spaced = " { \"id\" : \"r-1\" ,\n\"stream\":\"clicks\",\t\"ts\":1700000000000,\"key\":null,\"payload\":{ \"n\" : [ ] } } ";
        assert!(scan_agrees(spaced));
    }

    #[test]
    fn the_scan_leaves_what_it_does_not_take_to_serde() {
        let undecided = [
            // An escape, a long integer, -0 (a float to serde_json), a deep array.
            r#"{"id":"e\"1","stream":"clicks","ts":1,"payload":{}}"#,
            r#"{"id":"e1","stream":"clicks","ts":1,"payload":{"a":1234567890123456789}}"#,
            r#"{"id":"e1","stream":"clicks","ts":1,"payload":{"a":-0}}"#,
            r#"{"id":"e1","stream":"clicks","ts":1,"payload":{"a":[[1]]}}"#,
            // Refused: a leading zero, an overflowing float, a trailing comma.
            r#"{"id":"e1","stream":"clicks","ts":1,"payload":{"a":01}}"#,
            r#"{"id":"e1","stream":"clicks","ts":1,"payload":{"a":1e400}}"#,
            r#"{"id":"e1","stream":"clicks","ts":1,"payload":{"a":1,}}"#,
        ];
        for text in undecided {
            assert!(!scan_agrees(text), "{text}");
        }
    }

    fn internal() -> StreamName {
        StreamName::new("rp-0123456789abcdef").unwrap()
    }

    /// Both decoders on a record of an internal stream: the fast path never accepts what
    /// the whole decoder (with `progress_of` and `unwrap`) refuses, and reads what it
    /// reads. A source stream name it accepts but `unwrap` refuses is one the engine
    /// checks against the pipeline's sources (so it falls back to the whole decoder).
    fn agree_wrapped(bytes: &[u8]) -> Option<WrappedView<'_>> {
        use crate::repartition::{progress_of, unwrap};
        let projection = paths();
        let mut slots = vec![Value::Str(Cow::Borrowed("before"))];
        let fast = decode_wrapped_view(&internal(), bytes, &projection, &mut slots);
        let Some(view) = fast else {
            assert_eq!(slots.len(), 1, "slots left as they were");
            return None;
        };
        let text = String::from_utf8_lossy(bytes);
        let record = decode_event(&internal(), Some(bytes))
            .unwrap_or_else(|e| panic!("fast path accepted what is refused ({e}): {text}"));
        match &view {
            WrappedView::Progress {
                stream,
                partition,
                ts,
            } => match StreamName::new(stream.to_string()) {
                Ok(name) => assert_eq!(
                    progress_of(&record),
                    Some((name, *partition, ts.millis())),
                    "{text}"
                ),
                Err(_) => assert_eq!(progress_of(&record), None, "{text}"),
            },
            WrappedView::Event {
                event: fast,
                stream,
                partition,
                route,
            } => {
                assert_eq!(route.as_deref(), record.key.as_deref(), "{text}");
                assert_eq!(progress_of(&record), None, "{text}");
                let Ok((event, from)) = unwrap(record) else {
                    assert!(StreamName::new(stream.to_string()).is_err(), "{text}");
                    return Some(view);
                };
                assert_eq!(event.stream.as_str(), stream);
                assert_eq!(from, *partition);
                assert_eq!(fast.id, event.id.as_str());
                assert_eq!(fast.ts, event.ts);
                assert_eq!(fast.key.as_deref(), event.key.as_deref());
                for (i, path) in projection.paths().iter().enumerate() {
                    assert_eq!(slots[1 + i], descend(&event.payload, path), "{path:?}");
                }
            }
        }
        Some(view)
    }

    /// JSON text of a record of an internal stream, mostly a wrapped event or a progress
    /// record.
    fn wrapped_record() -> impl Strategy<Value = String> {
        let stream = mostly(
            &[r#""clicks""#, r#""views""#],
            &[r#""Bad!""#, "1", r#""a\u0000""#],
        );
        let partition = mostly(
            &["0", "2", "4294967295"],
            &["4294967296", "-1", "1.0", r#""1""#],
        );
        let key = mostly(&[r#""k""#, r#""ü""#], &["null", "2", r#""k\u0000""#]);
        let payload = prop_oneof![
            9 => value(3).prop_map(|v| if v.starts_with('{') { v } else { format!(r#"{{"a":{v}}}"#) }),
            1 => value(3),
        ];
        let fields = (stream, partition, key, payload, any::<u8>());
        fields.prop_map(|(stream, partition, key, payload, shape)| {
            let origin = format!(r#""stream":{stream},"partition":{partition}"#);
            let mut inner = if shape & 1 == 0 {
                vec![origin, format!(r#""payload":{payload}"#)]
            } else {
                vec![format!(r#""progress_of":{{{origin}}}"#)]
            };
            if shape & 2 == 0 {
                inner.push(format!(r#""key":{key}"#));
            }
            if shape & 4 != 0 {
                let by = usize::from(shape >> 4) % inner.len();
                inner.rotate_left(by);
            }
            if shape & 8 != 0 && shape & 64 != 0 {
                inner.push(r#""extra":1"#.to_owned());
            }
            format!(
                r#"{{"id":"e1","stream":"rp-0123456789abcdef","ts":"2026-11-25T18:00:00.250Z","key":"p","payload":{{{}}}}}"#,
                inner.join(",")
            )
        })
    }

    #[test]
    fn records_written_by_a_repartition_task_take_the_fast_path() {
        use crate::repartition::{progress_records, wrap};
        let event = Event {
            id: EventId::new("e\"1").unwrap(),
            stream: clicks(),
            ts: Timestamp::from_millis(1_700_000_000_123),
            key: Some("k\\1".to_owned()),
            payload: json!({"a": {"b": 1.5, "a": "x"}, "b": [1, "y"], "n": null})
                .as_object()
                .cloned()
                .unwrap(),
        };
        let wrapped = wrap(&event, 7, "campaign-1".to_owned(), &internal()).unwrap();
        let bytes = wrapped.to_json_bytes();
        let Some(WrappedView::Event {
            event: view,
            stream,
            partition,
            route,
        }) = agree_wrapped(&bytes)
        else {
            panic!("not decided fast: {}", String::from_utf8_lossy(&bytes));
        };
        assert_eq!((&*stream, partition), ("clicks", 7));
        assert_eq!(route.as_deref(), Some("campaign-1"));
        assert_eq!(view.key.as_deref(), Some("k\\1"));
        for record in progress_records(&internal(), &["~0".to_owned()], &clicks(), 3, event.ts) {
            let bytes = record.to_json_bytes();
            assert_eq!(
                agree_wrapped(&bytes),
                Some(WrappedView::Progress {
                    stream: Cow::Borrowed("clicks"),
                    partition: 3,
                    ts: event.ts,
                })
            );
        }
        // A record of a source is no record of an internal stream, nor the reverse.
        let source = event.to_json_bytes();
        assert!(agree_wrapped(&source).is_none());
        assert!(agree(&bytes).is_none());
        // Without escapes, the scan decides them.
        let plain = Event {
            id: EventId::new("e1").unwrap(),
            key: Some("k1".to_owned()),
            ..event
        };
        let wrapped = wrap(&plain, 7, "campaign-1".to_owned(), &internal()).unwrap();
        let text = String::from_utf8(wrapped.to_json_bytes()).unwrap();
        assert!(scan_agrees_on(&internal(), &text, true), "{text}");
        for record in progress_records(&internal(), &["~0".to_owned()], &clicks(), 3, plain.ts) {
            let text = String::from_utf8(record.to_json_bytes()).unwrap();
            assert!(scan_agrees_on(&internal(), &text, true), "{text}");
            let spaced = text.replace("\"partition\":", "\"partition\": ");
            assert!(scan_agrees_on(&internal(), &spaced, true), "{spaced}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn the_wrapped_fast_path_agrees_with_the_whole_decoder(text in wrapped_record()) {
            agree_wrapped(text.as_bytes());
        }

        #[test]
        fn the_scan_agrees_with_serde_on_wrapped_records(text in wrapped_record()) {
            scan_agrees_on(&internal(), &text, true);
        }

        #[test]
        fn wrapped_records_are_encoded_as_wrap_builds_them(
            text in record(),
            key in mostly(&["campaign-1", "q\"\\", ""], &["a\0b", "long"]),
            partition in any::<u32>(),
        ) {
            use crate::expr::{EventRef, PayloadRef};
            use crate::ports::EncodedBatch;
            use crate::repartition::{partition_key, wrap, wrap_into};
            let Ok(event) = decode_event(&clicks(), Some(text.as_bytes())) else {
                return Ok(());
            };
            let long = "k".repeat(crate::event::MAX_KEY_LEN + 1);
            let key = if key == "long" { long } else { key };
            let bytes = event.to_json_bytes();
            let projection = paths();
            let mut slots = Vec::new();
            let view = decode_view(&clicks(), &bytes, &projection, &mut slots);
            let view = view.expect("decided on the fast path");
            let projected = EventRef {
                id: &view.id,
                stream: &event.stream,
                ts: view.ts,
                key: view.key.as_deref(),
                payload: PayloadRef::Projected { projection: &projection, slots: &slots },
            };
            let mut batch = EncodedBatch::default();
            let mut expected = Vec::new();
            for event in [projected, EventRef::from(&event)] {
                let wrapped = wrap(event, partition, partition_key(&key).into_owned(), &internal()).unwrap();
                expected.push((wrapped.partition_key().to_owned(), wrapped.to_json_bytes()));
                wrap_into(&mut batch, event, partition, &key, &internal()).unwrap();
            }
            let written: Vec<(String, Vec<u8>)> = batch
                .iter()
                .map(|(key, value)| (key.to_owned(), value.to_vec()))
                .collect();
            // The same JSON: byte for byte when serde_json's maps are sorted, in another
            // member order when a crate of the build turns on its `preserve_order` (then
            // `wrap` keeps insertion order), which no reader depends on.
            let decoded = |pairs: Vec<(String, Vec<u8>)>| -> Vec<(String, serde_json::Value)> {
                pairs
                    .into_iter()
                    .map(|(key, value)| (key, serde_json::from_slice(&value).unwrap()))
                    .collect()
            };
            prop_assert_eq!(decoded(written), decoded(expected));
        }

        #[test]
        fn the_fast_path_agrees_with_the_whole_decoder(text in record()) {
            agree(text.as_bytes());
        }

        #[test]
        fn the_scan_agrees_with_serde(text in record()) {
            scan_agrees(&text);
        }

        #[test]
        fn the_scan_takes_no_broken_record(
            text in record(),
            at in any::<prop::sample::Index>(),
            byte in prop_oneof![
                prop::sample::select(b" ,:\"\\{}[]0-.eE+tn".to_vec()),
                any::<u8>(),
            ],
            edit in 0_u8..3,
        ) {
            let mut bytes = text.into_bytes();
            let i = at.index(bytes.len() + 1);
            match edit {
                0 => bytes.insert(i, byte),
                1 if i < bytes.len() => { bytes.remove(i); }
                _ if i < bytes.len() => bytes[i] = byte,
                _ => bytes.push(byte),
            }
            if let Ok(text) = String::from_utf8(bytes) {
                scan_agrees(&text);
                agree(text.as_bytes());
            }
        }

        #[test]
        fn valid_events_take_the_fast_path(text in record()) {
            let bytes = text.as_bytes();
            if let Ok(event) = decode_event(&clicks(), Some(bytes)) {
                // Re-encoded as Tributary writes it, every valid event is decided fast.
                let encoded = event.to_json_bytes();
                prop_assert!(agree(&encoded).is_some(), "{}", String::from_utf8_lossy(&encoded));
            }
        }

        #[test]
        fn utc_times_parse_as_chrono_parses_them(millis in Timestamp::MIN_VALID.millis()..=Timestamp::MAX_VALID.millis()) {
            let text = Timestamp::from_millis(millis).to_string();
            prop_assert_eq!(Timestamp::parse_rfc3339(&text), Ok(Timestamp::from_millis(millis)));
            let chrono = chrono::DateTime::parse_from_rfc3339(&text).map(|t| t.timestamp_millis());
            prop_assert_eq!(chrono, Ok(millis));
        }
    }
}
