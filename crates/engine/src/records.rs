//! Decoding what a task reads: the records of a [`RawBatch`], checked as
//! [`tributary_core::record`] says. A record that holds no event of its stream is not
//! handed on: it is counted in `tributary_log_undecodable_records_total`, logged, and
//! kept as a dead letter ([`DeadLetter::log_record`]) before any checkpoint covers it.

use std::error::Error;

use tributary_core::dead_letter::error_chain;
use tributary_core::expr::{EventRef, PayloadRef};
use tributary_core::ports::{LogRecord, RawBatch, RawRecord};
use tributary_core::record::{EventView, Projection, UndecodableRecord, decode_event, decode_view};
use tributary_core::value::Value;
use tributary_core::{DeadLetter, Event};

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
