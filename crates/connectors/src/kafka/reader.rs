//! [`KafkaLogReader`]: a consumer manually assigned the requested partitions at their
//! checked start offsets (`Log::reader`), its `poll`/`poll_raw`, and the best-effort
//! commit of offsets to the consumer group for lag monitoring.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use futures::{FutureExt, StreamExt};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use tokio::time::Instant;
use tributary_core::dead_letter::DeadLetter;
use tributary_core::event::StreamName;
use tributary_core::ports::{LogReader, LogRecord, PartitionOffset, PortError, RawBatch};

use crate::log_checks::{check_partition, decode_batch};

use super::error::{SYSTEM, closed, consume_error, kafka_error, kafka_offset, kafka_partition};
use super::log::{KafkaLog, client_config, drop_off_runtime};

/// The most a fetch takes of one partition, in bytes.
const MAX_PARTITION_FETCH_BYTES: &str = "4194304";

/// A reader over manually assigned partitions of Kafka topics.
pub struct KafkaLogReader {
    /// `None` only while being dropped.
    consumer: Option<StreamConsumer>,
    group: String,
    topic_prefix: String,
    /// The stream of each assigned topic: the stream of every record read from it.
    streams: HashMap<String, StreamName>,
    /// The records skipped since the last `take_rejected`, as dead letters.
    rejected: Vec<DeadLetter>,
    /// An error the consumer returned after the first record of a poll: returned by the
    /// next poll, since librdkafka reports each error event once.
    pending_error: Option<KafkaError>,
}

impl KafkaLogReader {
    /// A reader of `group` over the partitions of `start`, each from its offset as
    /// [`KafkaLog::start_offset`] checks it.
    pub(super) async fn open(
        log: &KafkaLog,
        group: &str,
        start: &[PartitionOffset],
    ) -> Result<Self, PortError> {
        let mut wanted = Vec::with_capacity(start.len());
        let mut streams = HashMap::new();
        for position in start {
            let partitions = log.cached_partitions(&position.stream).await?;
            check_partition(SYSTEM, position, partitions)?;
            let topic = log.topic(&position.stream);
            streams.insert(topic.clone(), position.stream.clone());
            wanted.push((topic, position.clone()));
        }
        let consumer: StreamConsumer = client_config(&log.inner.config)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // Never move a partition elsewhere than where `start_offset` put it: an offset
            // that leaves the log while reading is an error of `poll`.
            .set("auto.offset.reset", "error")
            .set("isolation.level", "read_committed")
            // Fetch up to 4 MiB per partition at a time (librdkafka's default is 1 MiB): a
            // backlog is read in a quarter of the fetches. The broker's CPU over a drain
            // measured about a third lower; the reader's own was within the noise
            // (bench/RESULTS.md, "the log client's floor").
            .set("max.partition.fetch.bytes", MAX_PARTITION_FETCH_BYTES)
            .create()
            .map_err(kafka_error)?;
        // Watermark lookups block: once per partition when the reader opens, off the runtime.
        let checker = log.clone();
        let group_id = group.to_owned();
        let consumer = tokio::task::spawn_blocking(move || {
            let mut assignment = TopicPartitionList::with_capacity(wanted.len());
            for (topic, position) in &wanted {
                let partition = kafka_partition(position.partition)?;
                let offset = checker.start_offset(&consumer, &group_id, topic, position)?;
                assignment
                    .add_partition_offset(topic, partition, offset)
                    .map_err(kafka_error)?;
            }
            consumer.assign(&assignment).map_err(kafka_error)?;
            Ok::<_, PortError>(consumer)
        })
        .await
        .map_err(|e| PortError::unavailable(SYSTEM, e))??;
        tracing::debug!(group, partitions = start.len(), "kafka reader assigned");
        Ok(Self {
            consumer: Some(consumer),
            group: group.to_owned(),
            topic_prefix: log.inner.config.topic_prefix.clone(),
            streams,
            rejected: Vec::new(),
            pending_error: None,
        })
    }
}

impl fmt::Debug for KafkaLogReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaLogReader")
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl Drop for KafkaLogReader {
    fn drop(&mut self) {
        if let Some(consumer) = self.consumer.take() {
            drop_off_runtime(consumer);
        }
    }
}

/// Appends the record `message` holds to `batch`, undecoded.
fn push_message(
    streams: &HashMap<String, StreamName>,
    message: &BorrowedMessage<'_>,
    batch: &mut RawBatch,
) {
    // The consumer is assigned only these topics, and partitions and offsets of
    // delivered messages are never negative. A reader of one topic (a shard's, nearly
    // always) needs no lookup, nor the topic name's UTF-8 check that `topic()` makes.
    let stream = if streams.len() == 1 {
        streams.values().next()
    } else {
        streams.get(message.topic())
    };
    let (Some(stream), Ok(partition), Ok(offset)) = (
        stream,
        u32::try_from(message.partition()),
        u64::try_from(message.offset()),
    ) else {
        return;
    };
    let stream = batch.stream_index(stream);
    batch.push(stream, partition, offset, message.payload());
}

#[async_trait]
impl LogReader for KafkaLogReader {
    /// As [`KafkaLogReader::poll_raw`], each record decoded whole; one that holds no
    /// event of its stream is skipped, and its dead letter waits for `take_rejected`.
    async fn poll(&mut self, max: usize, timeout: Duration) -> Result<Vec<LogRecord>, PortError> {
        let mut batch = RawBatch::default();
        self.poll_raw(max, timeout, &mut batch).await?;
        Ok(decode_batch(&batch, &mut self.rejected))
    }

    /// Waits up to `timeout` for a first record, then takes what is already fetched, up to
    /// `max` records in all. A consumer error fails the poll; one that comes after the
    /// first record ends the batch and fails the next poll instead.
    async fn poll_raw(
        &mut self,
        max: usize,
        timeout: Duration,
        batch: &mut RawBatch,
    ) -> Result<(), PortError> {
        if let Some(error) = self.pending_error.take() {
            return Err(consume_error(error));
        }
        if max == 0 {
            return Ok(());
        }
        let consumer = self.consumer.as_ref().ok_or_else(closed)?;
        let deadline = Instant::now() + timeout;
        // One stream for the whole poll: each `recv` would register and unregister a
        // waker of its own (two locks per record).
        let mut messages = consumer.stream();
        let Ok(Some(first)) = tokio::time::timeout_at(deadline, messages.next()).await else {
            return Ok(());
        };
        let first = first.map_err(consume_error)?;
        push_message(&self.streams, &first, batch);
        for _ in 1..max {
            match messages.next().now_or_never().flatten() {
                None => break,
                Some(Ok(message)) => push_message(&self.streams, &message, batch),
                Some(Err(error)) => {
                    // Return what we have: the records before the error are good.
                    self.pending_error = Some(error);
                    break;
                }
            }
        }
        Ok(())
    }

    fn take_rejected(&mut self) -> Vec<DeadLetter> {
        std::mem::take(&mut self.rejected)
    }

    /// Commits the offsets to the consumer group asynchronously, for lag monitoring only.
    async fn commit(&mut self, offsets: &[PartitionOffset]) -> Result<(), PortError> {
        if offsets.is_empty() {
            return Ok(());
        }
        let mut list = TopicPartitionList::with_capacity(offsets.len());
        for offset in offsets {
            list.add_partition_offset(
                &format!("{}{}", self.topic_prefix, offset.stream),
                kafka_partition(offset.partition)?,
                Offset::Offset(kafka_offset(offset.next_offset)?),
            )
            .map_err(kafka_error)?;
        }
        let consumer = self.consumer.as_ref().ok_or_else(closed)?;
        consumer
            .commit(&list, CommitMode::Async)
            .map_err(kafka_error)
    }
}
