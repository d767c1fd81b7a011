//! The append path: the idempotent `acks=all` producer, and `append`, which puts each event
//! on its key's partition and returns once every record is acknowledged.

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tributary_core::event::{Event, StreamName};
use tributary_core::partition::partition_for;
use tributary_core::ports::PortError;

use crate::log_checks::check_batch_stream;

use super::config::KafkaConfig;
use super::error::{SYSTEM, is_unknown_topic, kafka_error, kafka_partition};
use super::log::{KafkaLog, client_config};

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
pub(super) fn new_producer(config: &KafkaConfig) -> Result<FutureProducer, PortError> {
    // librdkafka takes 1 ms to 2^31 - 1 ms.
    let delivery_timeout_ms = u64::try_from(config.append_timeout.as_millis())
        .unwrap_or(u64::MAX)
        .clamp(1, 2_147_483_647);
    client_config(config)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", delivery_timeout_ms.to_string())
        .set("message.max.bytes", MAX_REQUEST_BYTES)
        .create()
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
        let partitions = self.cached_partitions(stream).await?;
        let topic = self.topic(stream);
        let producer = &self.inner.clients()?.producer;
        let mut deliveries = Vec::with_capacity(events.len());
        for event in events {
            let key = event.partition_key();
            let payload = event.to_json_bytes();
            let partition = kafka_partition(partition_for(key, partitions))?;
            let mut record = FutureRecord::to(&topic)
                .partition(partition)
                .key(key)
                .payload(&payload);
            // Enqueue in order; when the local queue is full, wait for it to drain.
            loop {
                match producer.send_result(record) {
                    Ok(delivery) => {
                        deliveries.push(delivery);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((error, _)) => return Err(kafka_error(error)),
                }
            }
        }
        let count = deliveries.len();
        let mut first_error = None;
        for outcome in futures::future::join_all(deliveries).await {
            let error = match outcome {
                Ok(Ok(_)) => continue,
                Ok(Err((error, _message))) => error,
                Err(_canceled) => KafkaError::Canceled,
            };
            if first_error.is_none() {
                first_error = Some(error);
            }
        }
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
