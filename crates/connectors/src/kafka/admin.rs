//! Cluster and topic metadata: whether the cluster answers (`ping`, `connect`), topic
//! creation with the admin client (`ensure_stream`), and each stream's partition count,
//! looked up in the metadata and cached.

use std::time::Duration;

use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::Producer;
use tokio::time::Instant;
use tributary_core::event::StreamName;
use tributary_core::ports::PortError;

use super::error::{KafkaLogError, SYSTEM, is_unknown_topic, kafka_error, kafka_partition};
use super::log::{KafkaLog, METADATA_TIMEOUT};

/// How long [`Log::ping`](tributary_core::ports::Log::ping) waits for the cluster: below
/// the 2 s after which `/readyz` gives up, so that a probe during an outage does not keep a
/// blocking thread busy after it.
pub(super) const PING_TIMEOUT: Duration = Duration::from_millis(1500);

/// The stream-less name of the topic `ping` asks about, after the topic prefix.
/// Stream names start with a letter or digit, so no stream has this topic, and Tributary
/// never creates it (topics are not created by lookups): the broker answers with its list
/// of brokers and one "unknown topic", a few bytes, however many topics the cluster holds.
const PING_TOPIC: &str = "_ping";

/// The largest record batch the topics Tributary creates accept (`max.message.bytes`):
/// Kafka's default, set explicitly so that a cluster with a smaller default still accepts
/// every batch the producer sends. Those are at most one event and its framing, or several
/// records within librdkafka's `batch.size` (1 000 000 bytes by default).
const TOPIC_MAX_MESSAGE_BYTES: &str = "1048588";

/// How long a newly created topic may take to get a leader for every partition.
const TOPIC_READY_TIMEOUT: Duration = Duration::from_secs(15);

/// What a metadata lookup found about one topic.
enum TopicState {
    /// The topic exists with this many partitions, all with a leader when `ready`.
    Exists { partitions: u32, ready: bool },
    /// The topic does not exist.
    Missing,
}

impl KafkaLog {
    /// Checks that a broker answers a metadata request within `timeout` (a blocking call,
    /// run off the runtime). The request names one topic that never exists ([`PING_TOPIC`]):
    /// without a topic, librdkafka would ask for the metadata of every topic of the cluster.
    pub(super) async fn cluster_answers(&self, timeout: Duration) -> Result<(), PortError> {
        let producer = self.inner.clients()?.producer.clone();
        let topic = format!("{}{PING_TOPIC}", self.inner.config.topic_prefix);
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(Some(&topic), timeout)
                .map(drop)
                .map_err(kafka_error)
        })
        .await
        .map_err(|e| PortError::unavailable(SYSTEM, e))?
    }

    /// Creates the topic of `stream` with `partitions` partitions (0 is taken as 1) unless
    /// it exists, waits until every partition has a leader, and returns its partition count.
    pub(super) async fn create_topic(
        &self,
        stream: &StreamName,
        partitions: u32,
    ) -> Result<u32, PortError> {
        let topic = self.topic(stream);
        if let TopicState::Exists {
            partitions: count,
            ready: true,
        } = self.topic_state(topic.clone()).await?
        {
            self.remember(stream, count);
            return Ok(count);
        }
        let requested = kafka_partition(partitions.max(1))?;
        let new_topic = NewTopic::new(
            &topic,
            requested,
            TopicReplication::Fixed(self.inner.config.replication_factor),
        )
        .set("max.message.bytes", TOPIC_MAX_MESSAGE_BYTES);
        let options = AdminOptions::new().operation_timeout(Some(METADATA_TIMEOUT));
        let results = self
            .inner
            .clients()?
            .admin
            .create_topics([&new_topic], &options)
            .await
            .map_err(kafka_error)?;
        for result in results {
            match result {
                Ok(_) => {
                    tracing::info!(topic = %topic, partitions = requested, "kafka topic created");
                }
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => return Err(kafka_error(KafkaError::AdminOp(code))),
            }
        }
        let count = self.wait_until_ready(&topic).await?;
        self.remember(stream, count);
        Ok(count)
    }

    /// Looks `topic` up in the cluster's metadata (a blocking call, run off the runtime).
    async fn topic_state(&self, topic: String) -> Result<TopicState, PortError> {
        let producer = self.inner.clients()?.producer.clone();
        tokio::task::spawn_blocking(move || {
            let metadata = producer
                .client()
                .fetch_metadata(Some(&topic), METADATA_TIMEOUT)
                .map_err(kafka_error)?;
            let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
                return Ok(TopicState::Missing);
            };
            if let Some(raw) = found.error() {
                let code = RDKafkaErrorCode::from(raw);
                return if is_unknown_topic(code) {
                    Ok(TopicState::Missing)
                } else if code == RDKafkaErrorCode::LeaderNotAvailable {
                    Ok(TopicState::Exists {
                        partitions: 0,
                        ready: false,
                    })
                } else {
                    Err(kafka_error(KafkaError::MetadataFetch(code)))
                };
            }
            let partitions = found.partitions();
            if partitions.is_empty() {
                return Ok(TopicState::Missing);
            }
            let ready = partitions
                .iter()
                .all(|p| p.error().is_none() && p.leader() >= 0);
            let count = u32::try_from(partitions.len()).unwrap_or(u32::MAX);
            Ok(TopicState::Exists {
                partitions: count,
                ready,
            })
        })
        .await
        .map_err(|e| PortError::unavailable(SYSTEM, e))?
    }

    /// The partition count of `stream` from the cluster, cached.
    pub(super) async fn fetch_partitions(&self, stream: &StreamName) -> Result<u32, PortError> {
        match self.topic_state(self.topic(stream)).await? {
            TopicState::Exists { partitions, .. } if partitions > 0 => {
                self.remember(stream, partitions);
                Ok(partitions)
            }
            _ => Err(PortError::UnknownStream(stream.clone())),
        }
    }

    /// The partition count of `stream`, from the cache when known.
    pub(super) async fn cached_partitions(&self, stream: &StreamName) -> Result<u32, PortError> {
        let cached = self
            .inner
            .partitions
            .read()
            .ok()
            .and_then(|map| map.get(stream).copied());
        match cached {
            Some(count) => Ok(count),
            None => self.fetch_partitions(stream).await,
        }
    }

    fn remember(&self, stream: &StreamName, partitions: u32) {
        if let Ok(mut map) = self.inner.partitions.write() {
            map.insert(stream.clone(), partitions);
        }
    }

    /// Drops the cached partition count of `stream`, whose topic was found missing.
    pub(super) fn forget(&self, stream: &StreamName) {
        if let Ok(mut map) = self.inner.partitions.write() {
            map.remove(stream);
        }
    }

    /// Waits until every partition of a freshly created topic has a leader.
    async fn wait_until_ready(&self, topic: &str) -> Result<u32, PortError> {
        let deadline = Instant::now() + TOPIC_READY_TIMEOUT;
        loop {
            if let TopicState::Exists {
                partitions,
                ready: true,
            } = self.topic_state(topic.to_owned()).await?
            {
                return Ok(partitions);
            }
            if Instant::now() >= deadline {
                return Err(PortError::unavailable(
                    SYSTEM,
                    KafkaLogError::TopicNotReady {
                        topic: topic.to_owned(),
                        waited: TOPIC_READY_TIMEOUT,
                    },
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
