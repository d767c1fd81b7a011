//! The refusals both [`Log`](tributary_core::ports::Log) adapters, [`crate::kafka`] and
//! [`crate::redb`], make before touching their storage: an appended batch must hold only
//! events of the stream appended to, and a reader may only start at partitions the stream
//! has. Both are [`PortError::Refused`] under the adapter's system name.

use tributary_core::event::{Event, StreamName};
use tributary_core::ports::{PartitionOffset, PortError};

/// What a log refuses that is not an error of its storage.
#[derive(Debug, thiserror::Error)]
enum LogRefusal {
    /// An event of the request names another stream than the one appended to.
    #[error("event {id} belongs to stream {found}, not to {expected}")]
    StreamMismatch {
        /// The event.
        id: String,
        /// The stream appended to.
        expected: StreamName,
        /// The stream the event names.
        found: StreamName,
    },
    /// A reader was asked for a partition the stream does not have.
    #[error("stream {stream} has {partitions} partitions, no partition {partition}")]
    NoSuchPartition {
        /// The stream.
        stream: StreamName,
        /// The requested partition.
        partition: u32,
        /// The stream's partition count.
        partitions: u32,
    },
}

/// Refuses a batch appended to `stream` when one of its events names another stream.
pub(crate) fn check_batch_stream(
    system: &'static str,
    stream: &StreamName,
    events: &[Event],
) -> Result<(), PortError> {
    match events.iter().find(|e| &e.stream != stream) {
        None => Ok(()),
        Some(event) => Err(PortError::refused(
            system,
            LogRefusal::StreamMismatch {
                id: event.id.to_string(),
                expected: stream.clone(),
                found: event.stream.clone(),
            },
        )),
    }
}

/// Refuses a reader position beyond the `partitions` its stream has.
pub(crate) fn check_partition(
    system: &'static str,
    position: &PartitionOffset,
    partitions: u32,
) -> Result<(), PortError> {
    if position.partition < partitions {
        return Ok(());
    }
    Err(PortError::refused(
        system,
        LogRefusal::NoSuchPartition {
            stream: position.stream.clone(),
            partition: position.partition,
            partitions,
        },
    ))
}
