//! The append path: the idempotent `acks=all` producer, and `append`, which puts each event
//! on its key's partition and returns once every record is acknowledged.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, ProducerContext, ThreadedProducer};
use tokio::sync::Notify;
use tributary_core::event::{Event, StreamName};
use tributary_core::partition::partition_for;
use tributary_core::ports::{EncodedBatch, PortError};

use crate::log_checks::check_batch_stream;

use super::config::KafkaConfig;
use super::error::{SYSTEM, is_unknown_topic, kafka_error, kafka_partition};
use super::log::{KafkaLog, client_config};

/// The producer of the log's appends.
pub(super) type Producer = ThreadedProducer<Acks>;

/// The producer's context: each record's delivery report counts down the [`Pending`]
/// records of the append that sent it, so an append waits once for all of its records,
/// without a future (and its allocations) per record.
pub(super) struct Acks;

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = Arc<Pending>;

    fn delivery(&self, result: &DeliveryResult<'_>, pending: Arc<Pending>) {
        if let Err((error, _)) = result {
            pending
                .failed
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get_or_insert_with(|| error.clone());
        }
        pending.settle_one();
    }
}

/// The records of one append not yet reported by librdkafka (every record sent gets
/// exactly one report, acknowledged or failed, within `message.timeout.ms`), and the first
/// failure.
pub(super) struct Pending {
    /// Records sent and not reported, plus one while the append is still sending.
    left: AtomicUsize,
    failed: Mutex<Option<KafkaError>>,
    settled: Notify,
}

impl Pending {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            left: AtomicUsize::new(1),
            failed: Mutex::new(None),
            settled: Notify::new(),
        })
    }

    fn settle_one(&self) {
        if self.left.fetch_sub(1, Ordering::AcqRel) == 1 {
            // Stores a permit when the append is not waiting yet.
            self.settled.notify_one();
        }
    }

    /// Once every record sent is reported: the first failure, if any.
    async fn wait(&self) -> Option<KafkaError> {
        self.settle_one();
        while self.left.load(Ordering::Acquire) != 0 {
            self.settled.notified().await;
        }
        self.failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// The largest produce request, in bytes (`message.max.bytes`): room for one event of up
/// to 1 000 000 bytes of JSON (`tributary_core::event::MAX_EVENT_BYTES`, which ingestion
/// checks before writing, so the producer never meets a bigger one) plus its key (at most
/// 256 bytes), headers and batch overhead. librdkafka's default, 1 000 000, would refuse the
/// largest events. The brokers' default limit (1 048 588) accepts it.
const MAX_REQUEST_BYTES: &str = "1048576";

/// The producer every append goes through: idempotent, acknowledged by all in-sync
/// replicas, with room for the largest event. A record gives up after `[log]
/// append_timeout` (`message.timeout.ms`; Kafka's default of five minutes is far too long
/// for an HTTP ingest), so that one `append` refused for want of a broker does not deliver
/// its records long after its caller was told it failed.
pub(super) fn new_producer(config: &KafkaConfig) -> Result<Producer, PortError> {
    // librdkafka takes 1 ms to 2^31 - 1 ms.
    let delivery_timeout_ms = u64::try_from(config.append_timeout.as_millis())
        .unwrap_or(u64::MAX)
        .clamp(1, 2_147_483_647);
    client_config(config)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", delivery_timeout_ms.to_string())
        .set("message.max.bytes", MAX_REQUEST_BYTES)
        .create_with_context(Acks)
        .map_err(kafka_error)
}

impl KafkaLog {
    /// Sends each of `events` to partition `partition_for(key, partitions)` of its
    /// stream's topic, in order, and waits until every record is acknowledged.
    pub(super) async fn produce(
        &self,
        stream: &StreamName,
        events: &[Event],
    ) -> Result<(), PortError> {
        check_batch_stream(SYSTEM, stream, events)?;
        let records = events
            .iter()
            .map(|event| (event.partition_key(), event.to_json_bytes()));
        self.send_all(stream, records).await
    }

    /// As [`KafkaLog::produce`], the events already encoded: their bytes are sent as they
    /// are.
    pub(super) async fn produce_encoded(
        &self,
        stream: &StreamName,
        batch: &EncodedBatch,
    ) -> Result<(), PortError> {
        self.send_all(stream, batch.iter()).await
    }

    /// Sends each record (key, value) to partition `partition_for(key, partitions)` of
    /// `stream`'s topic, in order, and waits until every one is acknowledged.
    async fn send_all<'k, V: AsRef<[u8]>>(
        &self,
        stream: &StreamName,
        records: impl Iterator<Item = (&'k str, V)>,
    ) -> Result<(), PortError> {
        let partitions = self.cached_partitions(stream).await?;
        let topic = self.topic(stream);
        let producer = &self.inner.clients()?.producer;
        let pending = Pending::new();
        let mut count = 0_usize;
        for (key, payload) in records {
            let partition = kafka_partition(partition_for(key, partitions))?;
            let mut record = BaseRecord::with_opaque_to(&topic, Arc::clone(&pending))
                .partition(partition)
                .key(key)
                .payload(payload.as_ref());
            pending.left.fetch_add(1, Ordering::AcqRel);
            // Enqueue in order; when the local queue is full, wait for it to drain.
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((error, _)) => return Err(kafka_error(error)),
                }
            }
            count += 1;
        }
        let first_error = pending.wait().await;
        match first_error {
            None => {
                tracing::debug!(topic = %topic, events = count, "kafka append acknowledged");
                Ok(())
            }
            Some(error) => {
                tracing::warn!(topic = %topic, error = &error as &dyn std::error::Error, "kafka append failed");
                if error.rdkafka_error_code().is_some_and(is_unknown_topic) {
                    self.forget(stream);
                    return Err(PortError::UnknownStream(stream.clone()));
                }
                Err(kafka_error(error))
            }
        }
    }
}
