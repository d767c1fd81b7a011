//! The log port: durable, partitioned, replayable streams of events.

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{Membership, PortError, SoleMember};
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

/// Records read from the log as they are stored, before any decoding: the read path of
/// the pipelines, which decode only what they need ([`crate::record`]).
///
/// One batch owns the bytes of all its records in one buffer, so a poll allocates nothing
/// per record, and a batch is reused from poll to poll ([`RawBatch::clear`]).
#[derive(Debug, Default)]
pub struct RawBatch {
    /// The streams the records were read from; [`RawRecord::stream`] indexes it.
    streams: Vec<StreamName>,
    /// The values of all records, one after the other.
    bytes: Vec<u8>,
    records: Vec<RawRecord>,
}

/// One record of a [`RawBatch`]: its position, and where its value is in the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawRecord {
    /// The stream, as an index into the batch's streams ([`RawBatch::stream`]).
    pub stream: u32,
    /// The partition it was read from.
    pub partition: u32,
    /// Its offset in that partition.
    pub offset: u64,
    /// Where its value lies in the batch's bytes; `None` for a record without a value.
    value: Option<(u32, u32)>,
}

impl RawBatch {
    /// Empties the batch, keeping its memory.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.records.clear();
    }

    /// The index of `stream` in the batch, added when new. A reader reads a handful of
    /// streams, so this is a short scan.
    pub fn stream_index(&mut self, stream: &StreamName) -> u32 {
        let index = match self.streams.iter().position(|s| s == stream) {
            Some(i) => i,
            None => {
                self.streams.push(stream.clone());
                self.streams.len() - 1
            }
        };
        // At most a few streams per reader: far below u32::MAX.
        u32::try_from(index).unwrap_or(u32::MAX)
    }

    /// Appends a record of the stream at `stream` (from [`RawBatch::stream_index`]).
    pub fn push(&mut self, stream: u32, partition: u32, offset: u64, value: Option<&[u8]>) {
        let value = value.map(|v| {
            let start = self.bytes.len();
            self.bytes.extend_from_slice(v);
            // A batch holds at most a few hundred MiB (records are at most ~1 MiB each).
            (
                u32::try_from(start).unwrap_or(u32::MAX),
                u32::try_from(v.len()).unwrap_or(u32::MAX),
            )
        });
        self.records.push(RawRecord {
            stream,
            partition,
            offset,
            value,
        });
    }

    /// The records, in the order read.
    #[must_use]
    pub fn records(&self) -> &[RawRecord] {
        &self.records
    }

    /// How many records the batch holds.
    #[must_use]
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the batch holds no record.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The stream `record` was read from.
    #[must_use]
    pub fn stream(&self, record: &RawRecord) -> &StreamName {
        self.stream_at(record.stream)
    }

    /// The stream at `index` ([`RawRecord::stream`]).
    #[must_use]
    pub fn stream_at(&self, index: u32) -> &StreamName {
        &self.streams[index as usize]
    }

    /// The value of `record`, if it has one.
    #[must_use]
    pub fn value(&self, record: &RawRecord) -> Option<&[u8]> {
        record
            .value
            .map(|(start, len)| &self.bytes[start as usize..(start + len) as usize])
    }
}

/// Events encoded for the log, ready to append ([`Log::append_encoded`]): each record's
/// partitioning key and its value, the bytes [`Event::to_json_bytes`] writes for an event
/// of one stream whose [`Event::partition_key`] is that key. All of them share one buffer,
/// so a batch allocates nothing per record and is reused from append to append
/// ([`EncodedBatch::clear`]).
///
/// Only this crate's encoders fill it ([`EncodedBatch::push_event`],
/// [`crate::repartition::wrap_into`]), so every record holds what its key says.
#[derive(Debug, Default)]
pub struct EncodedBatch {
    /// The keys and values of all records, one after the other.
    bytes: Vec<u8>,
    /// Where each record's key starts, where its key ends and its value starts, and where
    /// its value ends, in `bytes`.
    records: Vec<(usize, usize, usize)>,
}

impl EncodedBatch {
    /// Empties the batch, keeping its memory.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.records.clear();
    }

    /// How many records the batch holds.
    #[must_use]
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the batch holds no record.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Appends `event`, encoded as [`Event::to_json_bytes`] encodes it.
    pub fn push_event(&mut self, event: &Event) {
        // Serializing a struct of strings, integers and a JSON map into a Vec cannot fail.
        let _ = self.push_with(event.partition_key(), |bytes| {
            serde_json::to_writer(bytes, event).map_err(|_| ())
        });
    }

    /// Appends a record with key `key` whose value `write` appends to the buffer it is
    /// given; when `write` fails, the batch is left as it was. Returns the value's length.
    pub(crate) fn push_with<E>(
        &mut self,
        key: &str,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<usize, E> {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(key.as_bytes());
        let key_end = self.bytes.len();
        match write(&mut self.bytes) {
            Ok(()) => {
                self.records.push((start, key_end, self.bytes.len()));
                Ok(self.bytes.len() - key_end)
            }
            Err(error) => {
                self.bytes.truncate(start);
                Err(error)
            }
        }
    }

    /// Each record's key and value, in the order pushed.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &[u8])> {
        self.records.iter().map(|&(start, key_end, end)| {
            // Keys are pushed from `&str` only, so always whole UTF-8.
            let key = std::str::from_utf8(&self.bytes[start..key_end]).unwrap_or_default();
            (key, &self.bytes[key_end..end])
        })
    }

    /// The records decoded back into events.
    ///
    /// # Errors
    /// When a value is not an event, which the encoders never write.
    pub fn to_events(&self) -> Result<Vec<Event>, serde_json::Error> {
        self.iter()
            .map(|(_, value)| Event::from_json_bytes(value))
            .collect()
    }
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

    /// Appends the events `batch` holds already encoded, all of `stream`, as
    /// [`Log::append`] appends them decoded: each to `partition_for(key, partitions)`, in
    /// order, returning once all are durable. By default they are decoded and appended;
    /// an adapter that stores the encoded bytes (Kafka) sends them as they are.
    async fn append_encoded(
        &self,
        stream: &StreamName,
        batch: &EncodedBatch,
    ) -> Result<(), PortError> {
        let events = batch
            .to_events()
            .map_err(|source| PortError::refused("log", source))?;
        self.append(stream, &events).await
    }

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

    /// Joins `group`, whose members share the partitions of `streams`: each partition is
    /// owned by one member at a time ([`Membership`]). Group names are apart from the
    /// readers' groups. By default the process is the only member and owns every partition
    /// (a log only one process can open).
    async fn join(
        &self,
        group: &str,
        streams: &[StreamName],
    ) -> Result<Box<dyn Membership>, PortError> {
        let _ = group;
        let mut partitions = Vec::new();
        for stream in streams {
            let count = self.partitions(stream).await?;
            partitions.extend((0..count).map(|p| (stream.clone(), p)));
        }
        Ok(Box::new(SoleMember::new(partitions)))
    }
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

    /// As [`LogReader::poll`], but appends the records to `batch` as they are stored,
    /// undecoded and unchecked (see [`crate::record`]): what the engine's tasks read
    /// through, each decoding what it needs.
    async fn poll_raw(
        &mut self,
        max: usize,
        timeout: Duration,
        batch: &mut RawBatch,
    ) -> Result<(), PortError>;

    /// The records skipped as undecodable since the last call, as dead letters
    /// ([`DeadLetter::log_record`]: their id is their position).
    fn take_rejected(&mut self) -> Vec<DeadLetter>;

    /// Reports offsets the group has durably processed, for lag monitoring. The pipeline's
    /// checkpoint stays the source of truth; a failure here loses nothing.
    async fn commit(&mut self, offsets: &[PartitionOffset]) -> Result<(), PortError>;
}
