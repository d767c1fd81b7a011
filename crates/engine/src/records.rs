//! Decoding what a task reads: the records of a [`RawBatch`], checked as
//! [`tributary_core::record`] says. A record that holds no event of its stream is not
//! handed on: it is counted in `tributary_log_undecodable_records_total`, logged, and
//! kept as a dead letter ([`DeadLetter::log_record`]) before any checkpoint covers it.

use std::error::Error;

use tributary_core::dead_letter::error_chain;
use tributary_core::ports::{LogRecord, RawBatch, RawRecord};
use tributary_core::record::{UndecodableRecord, decode_event};
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
