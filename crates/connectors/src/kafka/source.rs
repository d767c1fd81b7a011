//! A consumer of topics written by other producers, for a Kafka source of events: the
//! Kafka side of `[[sources]] kind = "kafka"` (the mapping and the stream are the caller's).
//!
//! Contract:
//! - [`KafkaSourceConsumer::subscribe`] joins the consumer group `group_id` on `topics`
//!   (Kafka's group protocol shares their partitions among the group's members). A group
//!   without committed offsets starts at the topics' start (`auto.offset.reset=earliest`).
//! - Nothing is committed on its own (`enable.auto.commit=false`): the caller commits a
//!   batch with [`KafkaSourceConsumer::commit`] once it is durable elsewhere, so a crash
//!   before that reads the batch again (at least once; the caller's ids make a replay
//!   harmless).
//! - Its session times out after [`SESSION_TIMEOUT`]: a member that died (kill -9) keeps
//!   its partitions that long before the group gives them to the others (or to it,
//!   restarted).
//! - [`KafkaSourceConsumer::next_batch`] waits for a first record, then takes what else
//!   arrives within `linger`, up to `max` records, in each partition's order.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use rdkafka::Message;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tributary_core::ports::PortError;

use super::error::kafka_error;
use super::log::drop_off_runtime;

/// The consumer's `session.timeout.ms` (librdkafka's default is 45 s): as the processors'
/// groups' default, within the broker's `group.min.session.timeout.ms` (6 s).
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(10);

/// The system named in errors.
const SYSTEM: &str = "kafka source";

/// The error of a source whose consumer is gone (while it is dropped).
fn closed() -> PortError {
    PortError::unavailable(SYSTEM, "the consumer is closed")
}

/// Where and how a Kafka source reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSourceConfig {
    /// Bootstrap brokers, comma-separated `host:port`.
    pub brokers: String,
    /// The topics read, as named in Kafka (no prefix is added).
    pub topics: Vec<String>,
    /// The consumer group whose committed offsets say how far the source has read.
    pub group_id: String,
    /// Kafka `client.id`.
    pub client_id: String,
}

/// One record read: its position and its value (empty for a record without one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRecord {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset in that partition.
    pub offset: i64,
    /// The value's bytes.
    pub value: Vec<u8>,
}

/// A subscribed consumer committing only when told (see the module's documentation).
pub struct KafkaSourceConsumer {
    consumer: Option<Arc<StreamConsumer>>,
    group_id: String,
}

impl std::fmt::Debug for KafkaSourceConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSourceConsumer")
            .field("group_id", &self.group_id)
            .finish_non_exhaustive()
    }
}

impl KafkaSourceConsumer {
    /// Joins `config.group_id`, subscribed to `config.topics`.
    ///
    /// # Errors
    /// When the consumer cannot be created or subscribed (a bad setting).
    pub fn subscribe(config: &KafkaSourceConfig) -> Result<Self, PortError> {
        let consumer: StreamConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &config.brokers)
            .set("client.id", &config.client_id)
            .set("group.id", &config.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set(
                "session.timeout.ms",
                SESSION_TIMEOUT.as_millis().to_string(),
            )
            .set("reconnect.backoff.max.ms", "1000")
            .create()
            .map_err(kafka_error)?;
        let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics).map_err(kafka_error)?;
        Ok(Self {
            consumer: Some(Arc::new(consumer)),
            group_id: config.group_id.clone(),
        })
    }

    fn consumer(&self) -> Result<&Arc<StreamConsumer>, PortError> {
        self.consumer.as_ref().ok_or_else(closed)
    }

    /// Waits for a record, then takes what else arrives within `linger`, up to `max`.
    ///
    /// # Errors
    /// A consumer error met before the first record; one met after it ends the batch (and
    /// is met again by the next call when it persists).
    pub async fn next_batch(
        &self,
        max: usize,
        linger: Duration,
    ) -> Result<Vec<SourceRecord>, PortError> {
        let consumer = self.consumer()?;
        // One stream for the whole batch: each `recv` would register and unregister a
        // waker of its own (two locks per record).
        let mut messages = consumer.stream();
        let first = messages
            .next()
            .await
            .ok_or_else(closed)?
            .map_err(kafka_error)?;
        let mut batch = vec![record(&first)];
        drop(first);
        let until = tokio::time::Instant::now() + linger;
        while batch.len() < max {
            match tokio::time::timeout_at(until, messages.next()).await {
                Ok(Some(Ok(message))) => batch.push(record(&message)),
                Ok(Some(Err(error))) => {
                    tracing::warn!(group = self.group_id, %error, "kafka source: consumer error");
                    break;
                }
                Ok(None) | Err(_) => break,
            }
        }
        Ok(batch)
    }

    /// Commits, for each partition in `records`, the offset after its last record there,
    /// and returns once the group coordinator stored them.
    ///
    /// # Errors
    /// When the commit failed (no coordinator, the partitions were revoked): the records
    /// are read again by whoever owns their partitions next.
    pub async fn commit(&self, records: &[SourceRecord]) -> Result<(), PortError> {
        let mut next: BTreeMap<(&str, i32), i64> = BTreeMap::new();
        for r in records {
            let entry = next.entry((&r.topic, r.partition)).or_insert(0);
            *entry = (*entry).max(r.offset + 1);
        }
        if next.is_empty() {
            return Ok(());
        }
        let mut list = TopicPartitionList::with_capacity(next.len());
        for ((topic, partition), offset) in next {
            list.add_partition_offset(topic, partition, Offset::Offset(offset))
                .map_err(kafka_error)?;
        }
        let consumer = self.consumer()?.clone();
        tokio::task::spawn_blocking(move || consumer.commit(&list, CommitMode::Sync))
            .await
            .map_err(|e| PortError::unavailable(SYSTEM, e))?
            .map_err(kafka_error)
    }
}

impl Drop for KafkaSourceConsumer {
    fn drop(&mut self) {
        if let Some(consumer) = self.consumer.take() {
            drop_off_runtime(consumer);
        }
    }
}

/// The record `message` holds, copied out.
fn record(message: &impl Message) -> SourceRecord {
    SourceRecord {
        topic: message.topic().to_owned(),
        partition: message.partition(),
        offset: message.offset(),
        value: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
    }
}
