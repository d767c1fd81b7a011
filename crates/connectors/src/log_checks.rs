//! The checks both [`Log`](tributary_core::ports::Log) adapters, [`crate::kafka`] and
//! [`crate::redb`], make around their storage:
//! - before touching it, an appended batch must hold only events of the stream appended
//!   to, and a reader may only start at partitions the stream has; both are
//!   [`PortError::Refused`] under the adapter's system name;
//! - a record read back must hold an event *of the stream it was read from*
//!   ([`decode_record`]): the stream of a record is the one whose partition holds it, never
//!   what its bytes claim, since readers advance that stream's offsets past it. The event
//!   must also pass the checks ingestion makes ([`check_event`]), or a store would refuse
//!   it later and stall the pipeline behind it. A record that holds no such event (written
//!   by another producer) is skipped, counted
//!   in `tributary_log_undecodable_records_total`, logged, and kept as a
//!   [`DeadLetter::log_record`] until the reader hands it out through
//!   `LogReader::take_rejected`.

use std::error::Error;

use tributary_core::dead_letter::{DeadLetter, error_chain};
use tributary_core::event::{Event, StreamName};
use tributary_core::ports::{LogRecord, PartitionOffset, PortError, RawBatch};
use tributary_core::record::decode_event;

/// What a log refuses that is not an error of its storage.
#[derive(Debug, thiserror::Error)]
enum LogRefusal {
    /// An event of the request names another stream than the one appended to.
    #[error("event {id} belongs to stream {found}, not to {expected}")]
    StreamMismatch {
        /// The event.
        id: String,
        /// The stream appended to.
        expected: StreamName,
        /// The stream the event names.
        found: StreamName,
    },
    /// A reader was asked for a partition the stream does not have.
    #[error("stream {stream} has {partitions} partitions, no partition {partition}")]
    NoSuchPartition {
        /// The stream.
        stream: StreamName,
        /// The requested partition.
        partition: u32,
        /// The stream's partition count.
        partitions: u32,
    },
}

/// Refuses a batch appended to `stream` when one of its events names another stream.
pub(crate) fn check_batch_stream(
    system: &'static str,
    stream: &StreamName,
    events: &[Event],
) -> Result<(), PortError> {
    match events.iter().find(|e| &e.stream != stream) {
        None => Ok(()),
        Some(event) => Err(PortError::refused(
            system,
            LogRefusal::StreamMismatch {
                id: event.id.to_string(),
                expected: stream.clone(),
                found: event.stream.clone(),
            },
        )),
    }
}

/// Refuses a reader position beyond the `partitions` its stream has.
pub(crate) fn check_partition(
    system: &'static str,
    position: &PartitionOffset,
    partitions: u32,
) -> Result<(), PortError> {
    if position.partition < partitions {
        return Ok(());
    }
    Err(PortError::refused(
        system,
        LogRefusal::NoSuchPartition {
            stream: position.stream.clone(),
            partition: position.partition,
            partitions,
        },
    ))
}

/// The events of `batch`, each record decoded whole ([`decode_record`]).
pub(crate) fn decode_batch(batch: &RawBatch, rejected: &mut Vec<DeadLetter>) -> Vec<LogRecord> {
    batch
        .records()
        .iter()
        .filter_map(|r| {
            decode_record(
                batch.stream(r),
                r.partition,
                r.offset,
                batch.value(r),
                rejected,
            )
        })
        .collect()
}

/// The record at `offset` of `stream`'s `partition`, whose value is `value`; `None`, after
/// counting and logging it and pushing its dead letter onto `rejected`, when the value is
/// not an event of `stream`.
pub(crate) fn decode_record(
    stream: &StreamName,
    partition: u32,
    offset: u64,
    value: Option<&[u8]>,
    rejected: &mut Vec<DeadLetter>,
) -> Option<LogRecord> {
    match decode_event(stream, value) {
        Ok(event) => Some(LogRecord {
            partition,
            offset,
            event,
        }),
        Err(error) => {
            metrics::counter!("tributary_log_undecodable_records_total").increment(1);
            tracing::warn!(
                stream = %stream,
                partition,
                offset,
                error = &error as &dyn Error,
                "skipping undecodable log record"
            );
            rejected.push(DeadLetter::log_record(
                stream,
                partition,
                offset,
                error_chain(&error),
                value.unwrap_or_default(),
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use tributary_core::event::{EventId, Timestamp};

    use tributary_core::record::UndecodableRecord;

    use super::*;

    fn stream(name: &str) -> StreamName {
        StreamName::new(name).unwrap()
    }

    fn encoded(stream: &StreamName) -> Vec<u8> {
        Event {
            id: EventId::new("e1").unwrap(),
            stream: stream.clone(),
            ts: Timestamp::from_millis(0),
            key: None,
            payload: serde_json::Map::new(),
        }
        .to_json_bytes()
    }

    #[test]
    fn records_hold_events_of_their_stream() {
        let clicks = stream("clicks");
        let mut rejected = Vec::new();
        let record = decode_record(&clicks, 2, 7, Some(&encoded(&clicks)), &mut rejected);
        let record = record.unwrap();
        assert_eq!((record.partition, record.offset), (2, 7));
        assert_eq!(record.event.stream, clicks);
        assert_eq!(rejected, vec![]);
    }

    #[test]
    fn records_without_an_event_of_their_stream_are_skipped() {
        let clicks = stream("clicks");
        let orders = encoded(&stream("orders"));
        assert!(matches!(
            decode_event(&clicks, Some(&orders)),
            Err(UndecodableRecord::OtherStream { found, .. }) if found.as_str() == "orders"
        ));
        assert!(matches!(
            decode_event(&clicks, Some(b"{}")),
            Err(UndecodableRecord::NotAnEvent(_))
        ));
        assert!(matches!(
            decode_event(&clicks, None),
            Err(UndecodableRecord::NoValue)
        ));
    }

    #[test]
    fn records_with_events_ingestion_refuses_are_skipped() {
        let clicks = stream("clicks");
        let invalid =
            br#"{"id":"e2","stream":"clicks","ts":9000000000000000,"key":"a\u0000b","payload":{}}"#;
        let Err(UndecodableRecord::Invalid { id, reasons }) = decode_event(&clicks, Some(invalid))
        else {
            panic!("an event with an invalid ts and key was read");
        };
        assert_eq!(id, "e2");
        assert!(
            reasons.starts_with("ts ") && reasons.contains("; key "),
            "{reasons}"
        );
        for refused in [
            br#"{"id":"","stream":"clicks","ts":0,"payload":{}}"#.as_slice(),
            br#"{"id":"e3","stream":"clicks","ts":0,"payload":{"s":"\u0000"}}"#,
        ] {
            assert!(
                decode_event(&clicks, Some(refused)).is_err(),
                "{}",
                String::from_utf8_lossy(refused)
            );
        }
    }

    #[test]
    fn skipped_records_become_dead_letters_with_the_whole_reason() {
        let clicks = stream("clicks");
        let mut rejected = Vec::new();
        let orders = encoded(&stream("orders"));
        assert_eq!(
            decode_record(&clicks, 1, 4, Some(&orders), &mut rejected),
            None
        );
        assert_eq!(
            decode_record(&clicks, 0, 9, Some(b"{"), &mut rejected),
            None
        );
        assert_eq!(decode_record(&clicks, 2, 0, None, &mut rejected), None);

        let [other, garbage, tombstone] = rejected.as_slice() else {
            panic!("{rejected:?}");
        };
        assert_eq!(
            other,
            &DeadLetter {
                at: other.at,
                ..DeadLetter::log_record(
                    &clicks,
                    1,
                    4,
                    "the record is event e1 of stream orders, not of clicks".into(),
                    &orders,
                )
            }
        );
        assert_eq!(garbage.id, "log:clicks:0:9");
        assert_eq!(garbage.raw, "{");
        // The reason goes down to serde_json's message.
        assert!(
            garbage
                .reason
                .starts_with("the record is not an event: EOF while parsing"),
            "{}",
            garbage.reason
        );
        assert_eq!(tombstone.id, "log:clicks:2:0");
        assert_eq!(tombstone.reason, "the record has no value");
        assert_eq!(tombstone.raw, "");
    }
}
