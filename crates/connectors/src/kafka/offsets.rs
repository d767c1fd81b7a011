//! Watermark look-ups: each partition's end for `end_offsets`, and where a reader starts,
//! its checkpointed offset checked against the partition's log start and end. These
//! lookups block, so they run off the runtime.

use std::time::{Duration, Instant};

use rdkafka::Offset;
use rdkafka::client::{Client, ClientContext};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::Producer;
use tributary_core::event::StreamName;
use tributary_core::ports::{PartitionOffset, PortError};

use super::error::{
    SYSTEM, is_transient, is_unknown_topic, kafka_error, kafka_offset, kafka_partition,
};
use super::log::{KafkaLog, METADATA_TIMEOUT};
use super::lost::LostRange;

/// The low and high watermarks of a partition (a blocking lookup), retried on transient
/// errors until `deadline`: a topic just created may not have its leader in place yet.
fn watermarks<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    partition: i32,
    deadline: Instant,
) -> Result<(i64, i64), KafkaError> {
    const PAUSE: Duration = Duration::from_millis(100);
    let remaining = || deadline.saturating_duration_since(Instant::now());
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

impl KafkaLog {
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
    pub(super) async fn partition_ends(&self, stream: &StreamName) -> Result<Vec<u64>, PortError> {
        let partitions = self.fetch_partitions(stream).await?;
        let topic = self.topic(stream);
        let producer = self.inner.clients()?.producer.clone();
        let name = stream.clone();
        let ends = tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + METADATA_TIMEOUT;
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

    /// Where a reader of `group` starts reading `position` (of `topic`), checked against
    /// the partition's watermarks (a blocking lookup, through the reader's own consumer so
    /// that the end is the one it sees). Offset 0 means "from the beginning": a pipeline
    /// without a checkpoint, which reads whatever the log still holds, losing nothing.
    pub(super) fn start_offset(
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
        let deadline = Instant::now() + METADATA_TIMEOUT;
        let (low, high) =
            watermarks(consumer.client(), topic, partition, deadline).map_err(kafka_error)?;
        if asked < low {
            // The records from the checkpoint on expired (retention) before this group
            // read them: they are gone, so say so, count them, and go on from what is left.
            let range = LostRange {
                from: asked,
                to: low,
            };
            let counted = self
                .inner
                .lost
                .count((group.to_owned(), topic.to_owned(), partition), range);
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
}
