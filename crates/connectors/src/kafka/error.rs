//! How the Kafka adapter's failures become [`PortError`]s: what the adapter itself refuses
//! ([`KafkaLogError`]), which Kafka error codes are transient (`Unavailable`, a retry can
//! help) and which are not (`Refused`), and the checked conversions of partitions and
//! offsets to Kafka's signed integers.

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use tributary_core::ports::PortError;

/// The system name carried by this adapter's errors.
pub(super) const SYSTEM: &str = "kafka";

/// What the Kafka log refuses that is not a Kafka error.
#[derive(Debug, thiserror::Error)]
pub(super) enum KafkaLogError {
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
pub(super) fn is_transient(code: RDKafkaErrorCode) -> bool {
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
pub(super) fn is_unknown_topic(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::UnknownTopicOrPartition
            | RDKafkaErrorCode::UnknownTopic
            | RDKafkaErrorCode::UnknownPartition
    )
}

/// Classifies a Kafka error: transport, timeouts and elections are `Unavailable`, bad
/// configuration and rejected requests are `Refused`.
pub(super) fn kafka_error(error: KafkaError) -> PortError {
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
pub(super) fn consume_error(error: KafkaError) -> PortError {
    match error {
        KafkaError::MessageConsumptionFatal(_) => PortError::refused(SYSTEM, error),
        KafkaError::MessageConsumption(RDKafkaErrorCode::AutoOffsetReset) => {
            PortError::unavailable(SYSTEM, KafkaLogError::OffsetLeftTheLog { source: error })
        }
        _ => PortError::unavailable(SYSTEM, error),
    }
}

/// A Kafka partition number from ours.
pub(super) fn kafka_partition(partition: u32) -> Result<i32, PortError> {
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
pub(super) fn kafka_offset(offset: u64) -> Result<i64, PortError> {
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

/// The error of a client used while it is being dropped.
pub(super) fn closed() -> PortError {
    PortError::refused(SYSTEM, KafkaLogError::Closed)
}
