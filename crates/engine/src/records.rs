//! Decoding what a task reads: the records of a [`RawBatch`], checked as
//! [`tributary_core::record`] says. A record that holds no event of its stream is not
//! handed on: it is counted in `tributary_log_undecodable_records_total`, logged, and
//! kept as a dead letter ([`DeadLetter::log_record`]) before any checkpoint covers it.

use std::borrow::Cow;
use std::error::Error;

use tributary_core::dead_letter::error_chain;
use tributary_core::expr::{EventRef, PayloadRef};
use tributary_core::ports::{LogRecord, RawBatch, RawRecord};
use tributary_core::record::{
    EventView, Projection, UndecodableRecord, WrappedView, decode_event, decode_view,
    decode_wrapped_view,
};
use tributary_core::repartition::{progress_of, routed_key_text, unwrap};
use tributary_core::value::Value;
use tributary_core::{DeadLetter, Event, StreamName};

/// The events of `batch`, decoded whole; a dead letter in `refused` for each record
/// holding none.
pub(crate) fn decode_all(batch: &RawBatch, refused: &mut Vec<DeadLetter>) -> Vec<LogRecord> {
    batch
        .records()
        .iter()
        .filter_map(|record| {
            decode_whole(batch, record, refused).map(|event| LogRecord {
                partition: record.partition,
                offset: record.offset,
                event,
            })
        })
        .collect()
}

/// The event `record` of `batch` holds, decoded whole; `None`, with its dead letter in
/// `refused`, when it holds none.
pub(crate) fn decode_whole(
    batch: &RawBatch,
    record: &RawRecord,
    refused: &mut Vec<DeadLetter>,
) -> Option<Event> {
    let value = batch.value(record);
    match decode_event(batch.stream(record), value) {
        Ok(event) => Some(event),
        Err(error) => {
            refused.push(undecodable(batch, record, &error));
            None
        }
    }
}

/// The dead letter of a record that holds no event, counted and logged.
fn undecodable(batch: &RawBatch, record: &RawRecord, error: &UndecodableRecord) -> DeadLetter {
    let stream = batch.stream(record);
    metrics::counter!("tributary_log_undecodable_records_total").increment(1);
    tracing::warn!(
        stream = %stream,
        partition = record.partition,
        offset = record.offset,
        error = error as &dyn Error,
        "skipping undecodable log record"
    );
    DeadLetter::log_record(
        stream,
        record.partition,
        record.offset,
        error_chain(error),
        batch.value(record).unwrap_or_default(),
    )
}

/// The records of a batch decoded for a pipeline: on the fast path ([`decode_view`]: only
/// the fields of `projection`, borrowed from the batch) where it decides, whole otherwise;
/// a record that holds no event is left out, its dead letter in `refused`.
pub(crate) struct Views<'b> {
    batch: &'b RawBatch,
    projection: &'b Projection,
    /// Each event's record and how it was decoded.
    decoded: Vec<(&'b RawRecord, Decoded<'b>)>,
    /// The projected values of the events decoded on the fast path, one run each.
    slots: Vec<Value<'b>>,
    /// The events decoded whole.
    whole: Vec<Event>,
}

/// How a record was decoded.
enum Decoded<'b> {
    /// On the fast path, its projected values in `slots` from this index.
    View(EventView<'b>, usize),
    /// Whole, at this index of `whole`.
    Whole(usize),
}

impl<'b> Views<'b> {
    pub(crate) fn decode(
        batch: &'b RawBatch,
        projection: &'b Projection,
        refused: &mut Vec<DeadLetter>,
    ) -> Self {
        let mut views = Self {
            batch,
            projection,
            decoded: Vec::with_capacity(batch.len()),
            slots: Vec::with_capacity(batch.len() * projection.len()),
            whole: Vec::new(),
        };
        for record in batch.records() {
            let fast = batch.value(record).and_then(|value| {
                decode_view(batch.stream(record), value, projection, &mut views.slots)
            });
            match fast {
                Some(view) => {
                    let start = views.slots.len() - projection.len();
                    views.decoded.push((record, Decoded::View(view, start)));
                }
                None => {
                    if let Some(event) = decode_whole(batch, record, refused) {
                        views.whole.push(event);
                        views
                            .decoded
                            .push((record, Decoded::Whole(views.whole.len() - 1)));
                    }
                }
            }
        }
        views
    }

    /// Each event with its record, in the batch's order.
    pub(crate) fn events(&self) -> impl Iterator<Item = (&'b RawRecord, EventRef<'_>)> {
        self.decoded.iter().map(|(record, decoded)| {
            let event = match decoded {
                Decoded::View(view, start) => EventRef {
                    id: &view.id,
                    stream: self.batch.stream(record),
                    ts: view.ts,
                    key: view.key.as_deref(),
                    payload: PayloadRef::Projected {
                        projection: self.projection,
                        slots: &self.slots[*start..*start + self.projection.len()],
                    },
                },
                Decoded::Whole(i) => (&self.whole[*i]).into(),
            };
            (*record, event)
        })
    }
}

/// The records of a batch of a pipeline's internal stream, decoded: on the fast path
/// ([`decode_wrapped_view`]) where it decides and names one of the pipeline's sources,
/// whole otherwise (then [`progress_of`] and [`unwrap`] say what the record is); a record
/// that is neither a wrapped event nor a progress record is left out, its dead letter in
/// `refused`.
pub(crate) struct Wrapped<'b> {
    batch: &'b RawBatch,
    projection: &'b Projection,
    decoded: Vec<(&'b RawRecord, Unwrapped<'b>)>,
    slots: Vec<Value<'b>>,
    whole: Vec<Event>,
}

/// What a record of an internal stream holds.
enum Unwrapped<'b> {
    /// An event decoded on the fast path, read from `partition` of `sources[source]`; its
    /// projected values in `slots` from `start`.
    View {
        view: EventView<'b>,
        start: usize,
        source: usize,
        partition: u32,
        route: Option<Cow<'b, str>>,
    },
    /// An event decoded whole, at this index of `whole`, read from `partition` of its
    /// stream.
    Whole(usize, u32),
    /// Partition `partition` of `sources[source]` was read up to `ts`.
    Progress {
        source: usize,
        partition: u32,
        ts: i64,
    },
    /// A progress record decoded whole.
    WholeProgress(StreamName, u32, i64),
}

/// An item of a batch of an internal stream, in the batch's order.
pub(crate) enum Item<'e> {
    /// A wrapped event, the source partition it was read from, and the pipeline's key text
    /// the repartition task routed it by, when the record holds it as it is
    /// ([`routed_key_text`]).
    Event(u32, EventRef<'e>, Option<&'e str>),
    /// Partition `.1` of stream `.0` was read up to event time `.2` (milliseconds).
    Progress(&'e StreamName, u32, i64),
}

impl<'b> Wrapped<'b> {
    pub(crate) fn decode(
        batch: &'b RawBatch,
        projection: &'b Projection,
        sources: &[StreamName],
        refused: &mut Vec<DeadLetter>,
    ) -> Self {
        let mut wrapped = Self {
            batch,
            projection,
            decoded: Vec::with_capacity(batch.len()),
            slots: Vec::with_capacity(batch.len() * projection.len()),
            whole: Vec::new(),
        };
        let source_of = |name: &str| sources.iter().position(|s| s.as_str() == name);
        for record in batch.records() {
            let before = wrapped.slots.len();
            let fast = batch.value(record).and_then(|value| {
                decode_wrapped_view(batch.stream(record), value, projection, &mut wrapped.slots)
            });
            let decoded = match fast {
                Some(WrappedView::Event {
                    event,
                    stream,
                    partition,
                    route,
                }) => source_of(&stream).map(|source| Unwrapped::View {
                    view: event,
                    start: before,
                    source,
                    partition,
                    route,
                }),
                Some(WrappedView::Progress {
                    stream,
                    partition,
                    ts,
                }) => source_of(&stream).map(|source| Unwrapped::Progress {
                    source,
                    partition,
                    ts: ts.millis(),
                }),
                None => None,
            };
            if let Some(decoded) = decoded {
                wrapped.decoded.push((record, decoded));
                continue;
            }
            // Not decided fast (or naming another stream): the whole decoder says.
            wrapped.slots.truncate(before);
            let Some(event) = decode_whole(batch, record, refused) else {
                continue;
            };
            if let Some((stream, partition, ts)) = progress_of(&event) {
                wrapped
                    .decoded
                    .push((record, Unwrapped::WholeProgress(stream, partition, ts)));
                continue;
            }
            match unwrap(event) {
                Ok((event, partition)) => {
                    wrapped.whole.push(event);
                    let i = wrapped.whole.len() - 1;
                    wrapped
                        .decoded
                        .push((record, Unwrapped::Whole(i, partition)));
                }
                Err(event) => refused.push(DeadLetter::log_record(
                    &event.stream,
                    record.partition,
                    record.offset,
                    "a record of an internal stream that wraps no event".to_owned(),
                    &event.to_json_bytes(),
                )),
            }
        }
        wrapped
    }

    /// Each item with its record, in the batch's order; `sources` as given to
    /// [`Wrapped::decode`].
    pub(crate) fn items<'s>(
        &'s self,
        sources: &'s [StreamName],
    ) -> impl Iterator<Item = (&'b RawRecord, Item<'s>)> {
        self.decoded.iter().map(move |(record, decoded)| {
            let item = match decoded {
                Unwrapped::View {
                    view,
                    start,
                    source,
                    partition,
                    route,
                } => Item::Event(
                    *partition,
                    EventRef {
                        id: &view.id,
                        stream: &sources[*source],
                        ts: view.ts,
                        key: view.key.as_deref(),
                        payload: PayloadRef::Projected {
                            projection: self.projection,
                            slots: &self.slots[*start..*start + self.projection.len()],
                        },
                    },
                    route.as_deref().and_then(routed_key_text),
                ),
                Unwrapped::Whole(i, partition) => {
                    Item::Event(*partition, (&self.whole[*i]).into(), None)
                }
                Unwrapped::Progress {
                    source,
                    partition,
                    ts,
                } => Item::Progress(&sources[*source], *partition, *ts),
                Unwrapped::WholeProgress(stream, partition, ts) => {
                    Item::Progress(stream, *partition, *ts)
                }
            };
            (*record, item)
        })
    }

    /// The batch these records are of.
    pub(crate) fn batch(&self) -> &'b RawBatch {
        self.batch
    }
}
