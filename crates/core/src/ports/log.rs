//! The log port: durable, partitioned, replayable streams of events.

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::PortError;
use crate::dead_letter::DeadLetter;
use crate::event::{Event, StreamName};

/// Where to read next in one partition of one stream.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PartitionOffset {
    /// The stream.
    pub stream: StreamName,
    /// The partition, from 0.
    pub partition: u32,
    /// The offset of the next record to read (last processed + 1); 0 is the beginning.
    pub next_offset: u64,
}

/// One event read back from the log, with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRecord {
    /// The partition it was read from.
    pub partition: u32,
    /// Its offset in that partition.
    pub offset: u64,
    /// The event (which names its stream).
    pub event: Event,
}

/// A durable, partitioned log of events: Kafka, or the embedded log.
///
/// Contract (checked by the conformance suite against every adapter):
/// - [`Log::append`] returns only once every event is durable; events of one partition are
///   read back in the order they were appended, with offsets 0, 1, 2, ...
/// - An event goes to `partition_for(event.partition_key(), partitions)`.
/// - Appending to a stream that [`Log::ensure_stream`] never created fails with
///   [`PortError::UnknownStream`].
/// - [`Log::end_offsets`] of a partition is the number of records appended to it: the
///   offset the next one will get.
#[async_trait]
pub trait Log: Send + Sync + Debug {
    /// Checks that the backing system answers; used by `/readyz`.
    async fn ping(&self) -> Result<(), PortError>;

    /// Creates the stream with `partitions` partitions if it does not exist; does nothing if
    /// it does. Returns the stream's actual partition count.
    async fn ensure_stream(&self, stream: &StreamName, partitions: u32) -> Result<u32, PortError>;

    /// The stream's partition count.
    async fn partitions(&self, stream: &StreamName) -> Result<u32, PortError>;

    /// Appends `events`, all of `stream`, and returns once all of them are durable.
    async fn append(&self, stream: &StreamName, events: &[Event]) -> Result<(), PortError>;

    /// The end of every partition of `stream`, indexed by partition: the offset the next
    /// appended record will get (Kafka's high watermark), so 0 for an empty partition. A
    /// reader whose next offset is a partition's end has read all of it; the difference is
    /// its lag. A snapshot: appends move the ends on at any time.
    /// [`PortError::UnknownStream`] when [`Log::ensure_stream`] never created `stream`.
    async fn end_offsets(&self, stream: &StreamName) -> Result<Vec<u64>, PortError>;

    /// Opens a reader for consumer group `group` over exactly the given partitions, each
    /// positioned at its `next_offset`. Offsets are the caller's: the reader never commits
    /// on its own.
    async fn reader(
        &self,
        group: &str,
        start: &[PartitionOffset],
    ) -> Result<Box<dyn LogReader>, PortError>;
}

/// A positioned reader over some partitions. A record that holds no event of its stream
/// (another producer wrote it) is not returned by [`LogReader::poll`]: it is counted in the
/// `tributary_log_undecodable_records_total` metric, logged, and handed out once by
/// [`LogReader::take_rejected`] as a dead letter, which the caller stores before it
/// checkpoints offsets past it.
#[async_trait]
pub trait LogReader: Send + Debug {
    /// Waits at most `timeout` for records and returns up to `max` of them, possibly none.
    async fn poll(&mut self, max: usize, timeout: Duration) -> Result<Vec<LogRecord>, PortError>;

    /// The records skipped as undecodable since the last call, as dead letters
    /// ([`DeadLetter::log_record`]: their id is their position).
    fn take_rejected(&mut self) -> Vec<DeadLetter>;

    /// Reports offsets the group has durably processed, for lag monitoring. The pipeline's
    /// checkpoint stays the source of truth; a failure here loses nothing.
    async fn commit(&mut self, offsets: &[PartitionOffset]) -> Result<(), PortError>;
}
