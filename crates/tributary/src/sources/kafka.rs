//! The Kafka source: topics written by other producers (JSON values), read into a stream.
//!
//! Contract:
//! - It reads its topics in the consumer group `group_id`
//!   ([`KafkaSourceConsumer`]), in batches of up to `batch_size` records.
//! - Each record's value is mapped ([`mapping::to_event_shape`]: `id_field`, `ts_field` in
//!   `ts_format`, `key_field`) and validated as an event on its own. A record without an id
//!   gets `kafka:{topic}:{partition}:{offset}`, so a replay of the topic gives the same ids.
//! - A batch's refused records are kept as dead letters (`origin: {"kind": "kafka", "topic",
//!   "partition", "offset"}`), then its valid events are appended to the stream; only once
//!   both returned are the batch's offsets committed. A crash in between reads the batch
//!   again: at least once, and the stream's consumers de-duplicate by id.
//! - While the log (or the document store) is unavailable, the source holds its batch and
//!   retries it with backoff (0.5 s doubling to [`batch::MAX_BACKOFF`]): it reads nothing more and
//!   commits nothing, and goes on by itself once the batch is stored. A log that refuses
//!   the batch for good (not retryable) fails the source.
//! - Stopped (shutdown), it stops between batches or during a retry, with nothing of the
//!   batch in flight committed.

use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;
use tributary_connectors::kafka::source::{KafkaSourceConfig, KafkaSourceConsumer, SourceRecord};
use tributary_core::dead_letter::error_chain;
use tributary_core::{DeadLetter, StreamName};
use tributary_gateway::ingest::IngestService;
use tributary_gateway::sources::{HealthReporter, Source, SourceError};

use super::batch::{self, Checked, sleep_or_cancel};
use super::mapping::{self, TsFormat};
use crate::ingest::records::Fields;

/// How long a batch waits for more records after its first.
const LINGER: Duration = Duration::from_millis(100);

/// A Kafka source (see the module's documentation).
#[derive(Debug)]
pub struct KafkaSource {
    /// Its name.
    pub name: String,
    /// The stream it feeds.
    pub stream: StreamName,
    /// Where it reads.
    pub consumer: KafkaSourceConfig,
    /// The members holding id, ts and key.
    pub fields: Fields,
    /// How `ts` is written.
    pub ts_format: TsFormat,
    /// The most records per batch.
    pub batch_size: usize,
}

#[async_trait]
impl Source for KafkaSource {
    fn name(&self) -> &str {
        &self.name
    }

    async fn run(
        &self,
        ingest: IngestService,
        health: HealthReporter,
        cancel: CancellationToken,
    ) -> Result<(), SourceError> {
        let consumer = KafkaSourceConsumer::subscribe(&self.consumer)?;
        let sink = batch::Sink {
            ingest: &ingest,
            source: &self.name,
            stream: &self.stream,
            health: &health,
        };
        tracing::info!(
            source = self.name,
            topics = ?self.consumer.topics,
            group = self.consumer.group_id,
            stream = %self.stream,
            "kafka source subscribed"
        );
        loop {
            let batch = tokio::select! {
                () = cancel.cancelled() => return Ok(()),
                batch = consumer.next_batch(self.batch_size, LINGER) => batch,
            };
            let records = match batch {
                Ok(records) => records,
                Err(error) => {
                    tracing::warn!(
                        source = self.name,
                        error = error_chain(&error),
                        "kafka source: cannot read"
                    );
                    if sleep_or_cancel(Duration::from_secs(1), &cancel).await {
                        return Ok(());
                    }
                    continue;
                }
            };
            let checked = self.check(&records, &ingest);
            if !sink.store(&checked, &cancel).await? {
                return Ok(());
            }
            if let Err(error) = consumer.commit(&records).await {
                // Read again by the partitions' next owner: duplicates with the same ids.
                tracing::warn!(
                    source = self.name,
                    error = error_chain(&error),
                    "kafka source: cannot commit offsets; the batch will be read again"
                );
            }
        }
    }
}

impl KafkaSource {
    /// Maps and validates each record.
    fn check(&self, records: &[SourceRecord], ingest: &IngestService) -> Checked {
        let check = ingest.checker(&self.stream);
        let mut checked = Checked::default();
        for r in records {
            let derived = || format!("kafka:{}:{}:{}", r.topic, r.partition, r.offset);
            let event = mapping::to_event_shape(&r.value, &self.fields, self.ts_format, derived)
                .and_then(|value| check.check(value));
            match event {
                Ok(event) => checked.events.push(event),
                Err(reason) => checked.letters.push(DeadLetter::kafka(
                    &self.stream,
                    (&r.topic, r.partition, r.offset),
                    reason,
                    &r.value,
                )),
            }
        }
        checked
    }
}
