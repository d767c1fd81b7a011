//! [`KafkaLog`]: the [`Log`] on Kafka. This file holds its clients and wires the port's
//! methods to the files of each concern: `admin.rs` (cluster and topic metadata, topic
//! creation), `producer.rs` (append), `offsets.rs` (watermark look-ups), `reader.rs`
//! (the [`KafkaLogReader`]), `lost.rs` (lost-record accounting) and
//! `error.rs` (how failures become [`PortError`]s).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use tributary_core::event::{Event, StreamName};
use tributary_core::ports::{EncodedBatch, Log, LogReader, Membership, PartitionOffset, PortError};

use super::admin::PING_TIMEOUT;
use super::config::KafkaConfig;
use super::error::{SYSTEM, closed, kafka_error};
use super::lost::LostRecords;
use super::producer::{Producer, new_producer};
use super::reader::KafkaLogReader;
use crate::breaker::Breaker;

/// How long a metadata request may take before the cluster counts as unavailable.
pub(super) const METADATA_TIMEOUT: Duration = Duration::from_secs(8);

/// The longest wait between two connection attempts to a broker (`reconnect.backoff.max.ms`).
const RECONNECT_BACKOFF_MAX_MS: &str = "1000";

/// The settings every client shares.
pub(super) fn client_config(config: &KafkaConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.brokers)
        .set("client.id", &config.client_id)
        // Topics exist only through `ensure_stream`, never as a side effect of a lookup.
        .set("allow.auto.create.topics", "false")
        // After a broker went away, try it again at least every second (librdkafka's
        // default backs off to 10 s): clients find a broker that is back within a second.
        .set("reconnect.backoff.max.ms", RECONNECT_BACKOFF_MAX_MS);
    client
}

/// Drops `value` on Tokio's blocking pool when inside a runtime: librdkafka's destructors
/// block (about 100 ms) while their threads stop, which must not stall an async worker.
pub(super) fn drop_off_runtime<T: Send + 'static>(value: T) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => drop(runtime.spawn_blocking(move || drop(value))),
        Err(_) => drop(value),
    }
}

/// The log on Kafka. Cheap to clone: clones share the producer and the admin client.
#[derive(Clone)]
pub struct KafkaLog {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) config: KafkaConfig,
    /// `None` only while being dropped.
    clients: Option<Clients>,
    /// Partition counts of the streams seen so far.
    pub(super) partitions: RwLock<HashMap<StreamName, u32>>,
    /// The expired records counted so far, per consumer group and partition.
    pub(super) lost: LostRecords,
    /// The breaker of appends: within `[log] append_timeout`, at once while the cluster
    /// is known to be down.
    appends: Breaker,
}

pub(super) struct Clients {
    pub(super) producer: Producer,
    pub(super) admin: AdminClient<DefaultClientContext>,
}

impl Inner {
    pub(super) fn clients(&self) -> Result<&Clients, PortError> {
        self.clients.as_ref().ok_or_else(closed)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(clients) = self.clients.take() {
            drop_off_runtime(clients);
        }
    }
}

impl fmt::Debug for KafkaLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaLog")
            .field("brokers", &self.inner.config.brokers)
            .field("topic_prefix", &self.inner.config.topic_prefix)
            .finish_non_exhaustive()
    }
}

impl KafkaLog {
    /// Creates the clients and checks that the cluster answers a metadata request.
    ///
    /// # Errors
    /// [`PortError::Unavailable`] when no broker answers within a few seconds,
    /// [`PortError::Refused`] when the configuration is invalid.
    pub async fn connect(config: &KafkaConfig) -> Result<Self, PortError> {
        let log = Self::new(config)?;
        // Startup may wait longer for the first answer than a readiness probe.
        log.cluster_answers(METADATA_TIMEOUT).await?;
        tracing::info!(brokers = %config.brokers, topic_prefix = %config.topic_prefix, "connected to kafka");
        Ok(log)
    }

    /// Creates the clients, without waiting for the cluster.
    fn new(config: &KafkaConfig) -> Result<Self, PortError> {
        let appends = Breaker::new(
            SYSTEM,
            "[log] append_timeout",
            config.append_timeout,
            config.cool_down,
        )?;
        let producer = new_producer(config)?;
        let admin: AdminClient<DefaultClientContext> =
            client_config(config).create().map_err(kafka_error)?;
        Ok(Self {
            inner: Arc::new(Inner {
                config: config.clone(),
                clients: Some(Clients { producer, admin }),
                partitions: RwLock::new(HashMap::new()),
                lost: LostRecords::default(),
                appends,
            }),
        })
    }

    /// The topic holding `stream`.
    pub(super) fn topic(&self, stream: &StreamName) -> String {
        format!("{}{}", self.inner.config.topic_prefix, stream)
    }
}

#[async_trait]
impl Log for KafkaLog {
    async fn ping(&self) -> Result<(), PortError> {
        self.cluster_answers(PING_TIMEOUT).await
    }

    /// Creates the topic with `partitions` partitions (0 is taken as 1) unless it exists.
    async fn ensure_stream(&self, stream: &StreamName, partitions: u32) -> Result<u32, PortError> {
        self.create_topic(stream, partitions).await
    }

    async fn partitions(&self, stream: &StreamName) -> Result<u32, PortError> {
        self.fetch_partitions(stream).await
    }

    async fn append(&self, stream: &StreamName, events: &[Event]) -> Result<(), PortError> {
        self.inner.appends.call(self.produce(stream, events)).await
    }

    /// Sends the encoded records' bytes as they are (`producer.rs`).
    async fn append_encoded(
        &self,
        stream: &StreamName,
        batch: &EncodedBatch,
    ) -> Result<(), PortError> {
        self.inner
            .appends
            .call(self.produce_encoded(stream, batch))
            .await
    }

    /// Each partition's last stable offset, from its watermarks (`offsets.rs`).
    async fn end_offsets(&self, stream: &StreamName) -> Result<Vec<u64>, PortError> {
        self.partition_ends(stream).await
    }

    async fn reader(
        &self,
        group: &str,
        start: &[PartitionOffset],
    ) -> Result<Box<dyn LogReader>, PortError> {
        Ok(Box::new(KafkaLogReader::open(self, group, start).await?))
    }

    /// A member of the Kafka consumer group `{topic_prefix}shards.{group}` (`group.rs`).
    async fn join(
        &self,
        group: &str,
        streams: &[StreamName],
    ) -> Result<Box<dyn Membership>, PortError> {
        let topics = streams
            .iter()
            .map(|stream| (self.topic(stream), stream.clone()))
            .collect();
        Ok(Box::new(super::group::join(
            &self.inner.config,
            group,
            topics,
        )?))
    }
}

#[cfg(test)]
mod tests {
    use tokio::time::Instant;

    use super::*;

    /// Without a broker, `ping` gives up within the readiness probe's 2 s.
    #[tokio::test]
    async fn ping_gives_up_before_the_readiness_probe() {
        let log = KafkaLog::new(&KafkaConfig::new("127.0.0.1:1")).unwrap();
        let started = Instant::now();
        let outcome = log.ping().await;
        assert!(
            matches!(outcome, Err(PortError::Unavailable { .. })),
            "{outcome:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
}
