//! [`KafkaLog`]: the [`Log`] on Kafka, and its [`KafkaLogReader`].

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{Client, ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::time::Instant;
use tributary_core::dead_letter::DeadLetter;
use tributary_core::event::{Event, StreamName};
use tributary_core::partition::partition_for;
use tributary_core::ports::{Log, LogReader, LogRecord, PartitionOffset, PortError, RawBatch};

use crate::log_checks::{check_batch_stream, check_partition, decode_batch};

use super::config::KafkaConfig;

/// The system name carried by this adapter's errors.
const SYSTEM: &str = "kafka";

/// How long a metadata request may take before the cluster counts as unavailable.
const METADATA_TIMEOUT: Duration = Duration::from_secs(8);

/// How long [`Log::ping`] waits for the cluster: below the 2 s after which `/readyz` gives
/// up, so that a probe during an outage does not keep a blocking thread busy after it.
const PING_TIMEOUT: Duration = Duration::from_millis(1500);

/// The stream-less name of the topic [`Log::ping`] asks about, after the topic prefix.
/// Stream names start with a letter or digit, so no stream has this topic, and Tributary
/// never creates it (topics are not created by lookups): the broker answers with its list
/// of brokers and one "unknown topic", a few bytes, however many topics the cluster holds.
const PING_TOPIC: &str = "_ping";

/// The largest produce request, in bytes (`message.max.bytes`): room for one event of up
/// to 1 000 000 bytes of JSON (`tributary_core::event::MAX_EVENT_BYTES`, which ingestion
/// checks before writing, so the producer never meets a bigger one) plus its key (at most
/// 256 bytes), headers and batch overhead. librdkafka's default, 1 000 000, would refuse the
/// largest events. The brokers' default limit (1 048 588) accepts it.
const MAX_REQUEST_BYTES: &str = "1048576";

/// The largest record batch the topics Tributary creates accept (`max.message.bytes`):
/// Kafka's default, set explicitly so that a cluster with a smaller default still accepts
/// every batch the producer sends. Those are at most one event and its framing, or several
/// records within librdkafka's `batch.size` (1 000 000 bytes by default).
const TOPIC_MAX_MESSAGE_BYTES: &str = "1048588";

/// How long a newly created topic may take to get a leader for every partition.
const TOPIC_READY_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a produced record may wait for its acknowledgement before `append` fails
/// (`message.timeout.ms`); Kafka's default of five minutes is too long for an HTTP ingest.
const DELIVERY_TIMEOUT_MS: &str = "30000";

/// What the Kafka log refuses that is not a Kafka error.
#[derive(Debug, thiserror::Error)]
enum KafkaLogError {
    /// A created topic did not get a leader for every partition in time.
    #[error("topic {topic} has no leader for every partition after {waited:?}")]
    TopicNotReady {
        /// The topic.
        topic: String,
        /// How long we waited.
        waited: Duration,
    },
    /// The client is being dropped (only reachable from inside its destructor).
    #[error("the Kafka client is closed")]
    Closed,
    /// A partition or offset does not fit Kafka's signed integers.
    #[error("{what} {value} is out of Kafka's range")]
    OutOfRange {
        /// What was out of range.
        what: &'static str,
        /// The value.
        value: u64,
    },
    /// The next offset of an assigned partition left the log while a reader was reading it
    /// (`auto.offset.reset=error`): its records expired before the reader got to them, or
    /// the topic was recreated. librdkafka stops fetching that partition; reopening the
    /// reader from the last checkpoint reports the lost records and resumes.
    #[error(
        "a partition's next offset is no longer in the log (records expired or the topic \
         was recreated); reopen the reader to report what was lost and resume"
    )]
    OffsetLeftTheLog {
        /// The consumer's error (it does not say which partition).
        #[source]
        source: KafkaError,
    },
}

/// Whether a Kafka error code is transient: the broker is unreachable, busy or electing.
fn is_transient(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        C::BrokerTransportFailure
            | C::Resolve
            | C::MessageTimedOut
            | C::AllBrokersDown
            | C::OperationTimedOut
            | C::QueueFull
            | C::TimedOutQueue
            | C::Retry
            | C::LeaderNotAvailable
            | C::NotLeaderForPartition
            | C::RequestTimedOut
            | C::NetworkException
            | C::CoordinatorLoadInProgress
            | C::CoordinatorNotAvailable
            | C::NotCoordinator
            | C::NotEnoughReplicas
            | C::NotEnoughReplicasAfterAppend
            | C::RebalanceInProgress
            | C::NotController
            | C::KafkaStorageError
            | C::FencedLeaderEpoch
            | C::UnknownLeaderEpoch
            | C::OffsetNotAvailable
            | C::PreferredLeaderNotAvailable
            | C::ThrottlingQuotaExceeded
    )
}

/// Whether a Kafka error code says the topic or partition does not exist.
fn is_unknown_topic(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::UnknownTopicOrPartition
            | RDKafkaErrorCode::UnknownTopic
            | RDKafkaErrorCode::UnknownPartition
    )
}

/// Classifies a Kafka error: transport, timeouts and elections are `Unavailable`, bad
/// configuration and rejected requests are `Refused`.
fn kafka_error(error: KafkaError) -> PortError {
    match error.rdkafka_error_code() {
        Some(code) if is_transient(code) => PortError::unavailable(SYSTEM, error),
        Some(_) => PortError::refused(SYSTEM, error),
        None => match error {
            KafkaError::ClientConfig(..) | KafkaError::ClientCreation(_) | KafkaError::Nul(_) => {
                PortError::refused(SYSTEM, error)
            }
            _ => PortError::unavailable(SYSTEM, error),
        },
    }
}

/// Classifies a consumer error: librdkafka keeps retrying after any but a fatal one, so
/// those are transient. A partition whose next offset left the log is not retried by
/// librdkafka, but reopening the reader (what a restart from the checkpoint does) resumes
/// it, so it is transient too.
fn consume_error(error: KafkaError) -> PortError {
    match error {
        KafkaError::MessageConsumptionFatal(_) => PortError::refused(SYSTEM, error),
        KafkaError::MessageConsumption(RDKafkaErrorCode::AutoOffsetReset) => {
            PortError::unavailable(SYSTEM, KafkaLogError::OffsetLeftTheLog { source: error })
        }
        _ => PortError::unavailable(SYSTEM, error),
    }
}

/// A Kafka partition number from ours.
fn kafka_partition(partition: u32) -> Result<i32, PortError> {
    i32::try_from(partition).map_err(|_| {
        PortError::refused(
            SYSTEM,
            KafkaLogError::OutOfRange {
                what: "partition",
                value: u64::from(partition),
            },
        )
    })
}

/// A Kafka offset from ours.
fn kafka_offset(offset: u64) -> Result<i64, PortError> {
    i64::try_from(offset).map_err(|_| {
        PortError::refused(
            SYSTEM,
            KafkaLogError::OutOfRange {
                what: "offset",
                value: offset,
            },
        )
    })
}

/// The settings every client shares.
fn client_config(config: &KafkaConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.brokers)
        .set("client.id", &config.client_id)
        // Topics exist only through `ensure_stream`, never as a side effect of a lookup.
        .set("allow.auto.create.topics", "false");
    client
}

/// Drops `value` on Tokio's blocking pool when inside a runtime: librdkafka's destructors
/// block (about 100 ms) while their threads stop, which must not stall an async worker.
fn drop_off_runtime<T: Send + 'static>(value: T) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => drop(runtime.spawn_blocking(move || drop(value))),
        Err(_) => drop(value),
    }
}

/// The low and high watermarks of a partition (a blocking lookup), retried on transient
/// errors until `deadline`: a topic just created may not have its leader in place yet.
fn watermarks<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    partition: i32,
    deadline: std::time::Instant,
) -> Result<(i64, i64), KafkaError> {
    const PAUSE: Duration = Duration::from_millis(100);
    let remaining = || deadline.saturating_duration_since(std::time::Instant::now());
    loop {
        match client.fetch_watermarks(topic, partition, remaining()) {
            Ok(marks) => return Ok(marks),
            Err(error)
                if error.rdkafka_error_code().is_some_and(is_transient) && remaining() > PAUSE =>
            {
                std::thread::sleep(PAUSE);
            }
            Err(error) => return Err(error),
        }
    }
}

/// The error of a client used while it is being dropped.
fn closed() -> PortError {
    PortError::refused(SYSTEM, KafkaLogError::Closed)
}

/// What a metadata lookup found about one topic.
enum TopicState {
    /// The topic exists with this many partitions, all with a leader when `ready`.
    Exists { partitions: u32, ready: bool },
    /// The topic does not exist.
    Missing,
}

/// The log on Kafka. Cheap to clone: clones share the producer and the admin client.
#[derive(Clone)]
pub struct KafkaLog {
    inner: Arc<Inner>,
}

struct Inner {
    config: KafkaConfig,
    /// `None` only while being dropped.
    clients: Option<Clients>,
    /// Partition counts of the streams seen so far.
    partitions: RwLock<HashMap<StreamName, u32>>,
    /// The last range of expired records counted as lost, per consumer group, topic and
    /// partition (see [`newly_lost`]).
    lost: Mutex<HashMap<LostKey, LostRange>>,
}

/// A partition read by a consumer group: group, topic, partition.
type LostKey = (String, String, i32);

/// Records `[from, to)` of a partition that expired before a reader got to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LostRange {
    from: i64,
    to: i64,
}

/// How many of the records `range` lost were not counted yet, given the range counted
/// when a reader of the same group and partition was last opened (`previous`). A task
/// that fails before checkpointing past a loss is reopened at the same offset, and finds
/// the same records missing (and maybe more, expired since): only the new ones count.
/// A reader opened at another offset started after the previous range (its checkpoint
/// moved on), and a log start below the previous one is another topic's (a log start
/// never moves back): all of such a range is new.
fn newly_lost(previous: Option<LostRange>, range: LostRange) -> u64 {
    let counted_to = match previous {
        Some(previous) if previous.from == range.from && previous.to <= range.to => previous.to,
        _ => range.from,
    };
    u64::try_from(range.to - counted_to).unwrap_or(0)
}

struct Clients {
    producer: FutureProducer,
    admin: AdminClient<DefaultClientContext>,
}

impl Inner {
    fn clients(&self) -> Result<&Clients, PortError> {
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
        let producer: FutureProducer = client_config(config)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", DELIVERY_TIMEOUT_MS)
            .set("message.max.bytes", MAX_REQUEST_BYTES)
            .create()
            .map_err(kafka_error)?;
        let admin: AdminClient<DefaultClientContext> =
            client_config(config).create().map_err(kafka_error)?;
        Ok(Self {
            inner: Arc::new(Inner {
                config: config.clone(),
                clients: Some(Clients { producer, admin }),
                partitions: RwLock::new(HashMap::new()),
                lost: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The topic holding `stream`.
    fn topic(&self, stream: &StreamName) -> String {
        format!("{}{}", self.inner.config.topic_prefix, stream)
    }

    /// Checks that a broker answers a metadata request within `timeout` (a blocking call,
    /// run off the runtime). The request names one topic that never exists ([`PING_TOPIC`]):
    /// without a topic, librdkafka would ask for the metadata of every topic of the cluster.
    async fn cluster_answers(&self, timeout: Duration) -> Result<(), PortError> {
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
    async fn fetch_partitions(&self, stream: &StreamName) -> Result<u32, PortError> {
        match self.topic_state(self.topic(stream)).await? {
            TopicState::Exists { partitions, .. } if partitions > 0 => {
                self.remember(stream, partitions);
                Ok(partitions)
            }
            _ => Err(PortError::UnknownStream(stream.clone())),
        }
    }

    /// The partition count of `stream`, from the cache when known.
    async fn cached_partitions(&self, stream: &StreamName) -> Result<u32, PortError> {
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

    fn forget(&self, stream: &StreamName) {
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

    /// Where a reader of `group` starts reading `position` (of `topic`), checked against
    /// the partition's watermarks (a blocking lookup, through the reader's own consumer so
    /// that the end is the one it sees). Offset 0 means "from the beginning": a pipeline
    /// without a checkpoint, which reads whatever the log still holds, losing nothing.
    fn start_offset(
        &self,
        consumer: &StreamConsumer,
        group: &str,
        topic: &str,
        position: &PartitionOffset,
    ) -> Result<Offset, PortError> {
        let asked = kafka_offset(position.next_offset)?;
        if asked == 0 {
            return Ok(Offset::Beginning);
        }
        let partition = kafka_partition(position.partition)?;
        let deadline = std::time::Instant::now() + METADATA_TIMEOUT;
        let (low, high) =
            watermarks(consumer.client(), topic, partition, deadline).map_err(kafka_error)?;
        if asked < low {
            // The records from the checkpoint on expired (retention) before this group
            // read them: they are gone, so say so, count them, and go on from what is left.
            let range = LostRange {
                from: asked,
                to: low,
            };
            let counted = self.count_lost((group.to_owned(), topic.to_owned(), partition), range);
            tracing::error!(
                stream = %position.stream,
                partition = position.partition,
                group,
                from = asked,
                to = low,
                lost = low - asked,
                newly_counted = counted,
                "records expired before this reader read them; reading on from the log start"
            );
            let stream = position.stream.to_string();
            metrics::counter!("tributary_log_records_lost_total", "stream" => stream)
                .increment(counted);
            return Ok(Offset::Offset(low));
        }
        if asked > high {
            // The checkpoint is past the end: the topic was recreated (or truncated, which
            // needs unclean leader election, off by default, since readers only see records
            // on every in-sync replica). Its records were never read by this group, so read
            // them all, as a new pipeline would: starting at `high` would skip them without
            // a trace. What the old topic held past the checkpoint is gone with it and
            // cannot be counted; after a truncation, records may be read twice.
            tracing::error!(
                stream = %position.stream,
                partition = position.partition,
                group,
                asked,
                end = high,
                "checkpointed offset is beyond the end of the partition (topic recreated or \
                 truncated); reading the partition from its start"
            );
            return Ok(Offset::Beginning);
        }
        Ok(Offset::Offset(asked))
    }

    /// Remembers `range` as lost for `key` and returns how many of its records were not
    /// counted yet ([`newly_lost`]).
    fn count_lost(&self, key: LostKey, range: LostRange) -> u64 {
        let mut lost = self
            .inner
            .lost
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        newly_lost(lost.insert(key, range), range)
    }
}

#[async_trait]
impl Log for KafkaLog {
    async fn ping(&self) -> Result<(), PortError> {
        self.cluster_answers(PING_TIMEOUT).await
    }

    /// Creates the topic with `partitions` partitions (0 is taken as 1) unless it exists.
    async fn ensure_stream(&self, stream: &StreamName, partitions: u32) -> Result<u32, PortError> {
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

    async fn partitions(&self, stream: &StreamName) -> Result<u32, PortError> {
        self.fetch_partitions(stream).await
    }

    async fn append(&self, stream: &StreamName, events: &[Event]) -> Result<(), PortError> {
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

    /// Each partition's end from its watermarks, asked through the producer's client
    /// (blocking lookups, one per partition, off the runtime and within
    /// [`METADATA_TIMEOUT`] in all), after a metadata lookup for the partition count.
    ///
    /// librdkafka asks with the client's `isolation.level`, `read_committed` by default for
    /// every client, so this is the last stable offset, where the readers (also
    /// `read_committed`) stop. Tributary's producer is idempotent, not transactional: on its
    /// own records, the last stable offset is the high watermark. Behind another producer's
    /// open transaction it stays below, and the records past it, which no reader can read
    /// yet, are rightly not lag. (A transaction's commit marker takes an offset no reader
    /// returns: behind one, a reader that read everything lags by 1 until the next record.)
    async fn end_offsets(&self, stream: &StreamName) -> Result<Vec<u64>, PortError> {
        let partitions = self.fetch_partitions(stream).await?;
        let topic = self.topic(stream);
        let producer = self.inner.clients()?.producer.clone();
        let name = stream.clone();
        let ends = tokio::task::spawn_blocking(move || {
            let deadline = std::time::Instant::now() + METADATA_TIMEOUT;
            (0..partitions)
                .map(|partition| {
                    let partition = kafka_partition(partition)?;
                    let (_low, high) = watermarks(producer.client(), &topic, partition, deadline)
                        .map_err(|error| {
                        if error.rdkafka_error_code().is_some_and(is_unknown_topic) {
                            PortError::UnknownStream(name.clone())
                        } else {
                            kafka_error(error)
                        }
                    })?;
                    Ok(u64::try_from(high).unwrap_or(0))
                })
                .collect::<Result<Vec<u64>, PortError>>()
        })
        .await
        .map_err(|e| PortError::unavailable(SYSTEM, e))?;
        if let Err(PortError::UnknownStream(_)) = &ends {
            // Deleted since the metadata lookup.
            self.forget(stream);
        }
        ends
    }

    async fn reader(
        &self,
        group: &str,
        start: &[PartitionOffset],
    ) -> Result<Box<dyn LogReader>, PortError> {
        let mut wanted = Vec::with_capacity(start.len());
        let mut streams = HashMap::new();
        for position in start {
            let partitions = self.cached_partitions(&position.stream).await?;
            check_partition(SYSTEM, position, partitions)?;
            let topic = self.topic(&position.stream);
            streams.insert(topic.clone(), position.stream.clone());
            wanted.push((topic, position.clone()));
        }
        let consumer: StreamConsumer = client_config(&self.inner.config)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // Never move a partition elsewhere than where `start_offset` put it: an offset
            // that leaves the log while reading is an error of `poll`.
            .set("auto.offset.reset", "error")
            .set("isolation.level", "read_committed")
            .create()
            .map_err(kafka_error)?;
        // Watermark lookups block: once per partition when the reader opens, off the runtime.
        let log = self.clone();
        let group_id = group.to_owned();
        let consumer = tokio::task::spawn_blocking(move || {
            let mut assignment = TopicPartitionList::with_capacity(wanted.len());
            for (topic, position) in &wanted {
                let partition = kafka_partition(position.partition)?;
                let offset = log.start_offset(&consumer, &group_id, topic, position)?;
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
        Ok(Box::new(KafkaLogReader {
            consumer: Some(consumer),
            group: group.to_owned(),
            topic_prefix: self.inner.config.topic_prefix.clone(),
            streams,
            rejected: Vec::new(),
            pending_error: None,
        }))
    }
}

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
    // delivered messages are never negative.
    let (Some(stream), Ok(partition), Ok(offset)) = (
        streams.get(message.topic()),
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
        let Ok(first) = tokio::time::timeout_at(deadline, consumer.recv()).await else {
            return Ok(());
        };
        let first = first.map_err(consume_error)?;
        push_message(&self.streams, &first, batch);
        for _ in 1..max {
            match consumer.recv().now_or_never() {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn range(from: i64, to: i64) -> LostRange {
        LostRange { from, to }
    }

    /// A reader reopened at the same offset counts only what expired since; one opened
    /// elsewhere counts its whole range.
    #[test]
    fn lost_records_are_counted_once() {
        assert_eq!(newly_lost(None, range(2, 6)), 4);
        assert_eq!(newly_lost(Some(range(2, 6)), range(2, 6)), 0);
        assert_eq!(newly_lost(Some(range(2, 6)), range(2, 9)), 3);
        assert_eq!(newly_lost(Some(range(2, 6)), range(8, 10)), 2);
        // Another topic under the same name, whose log start is below the last one's.
        assert_eq!(newly_lost(Some(range(2, 600)), range(2, 5)), 3);
    }

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
