//! The [`Log`](tributary_core::ports::Log) port on Apache Kafka, through `rdkafka`.
//!
//! Contract (the same as the embedded log's, checked by `tests/log_conformance.rs`; where
//! offsets are no longer in the log, by `tests/kafka_reader.rs`):
//! - a stream is the topic `{topic_prefix}{stream}`; [`KafkaLog::connect`] fails with
//!   `Unavailable` when no broker answers a metadata request within a few seconds; `ping`
//!   asks for the metadata of one (never existing) topic and gives up after 1.5 s, within
//!   the 2 s of a readiness probe;
//! - `ensure_stream` creates the topic with the admin client when missing (an existing
//!   topic counts as success), with `max.message.bytes` at Kafka's default (1 048 588), and
//!   reports its actual partition count from metadata;
//! - `append` uses an idempotent producer with `acks=all`, puts each event on the explicit
//!   partition `partition_for(event.partition_key(), partitions)` (Kafka's own murmur2
//!   partitioner, so Java producers and the embedded log place keys identically), with the
//!   partition key as the record key and `Event::to_json_bytes` as the value; it returns
//!   `Ok` only once **every** record is acknowledged by all in-sync replicas. This is the
//!   durability guarantee ingest answers on. Its `message.max.bytes` (1 MiB) holds the
//!   largest event ingestion accepts. An append fails after `append_timeout` (also the
//!   producer's `message.timeout.ms`), through the log's circuit breaker
//!   (`crate::breaker`): after one failed for want of a broker, appends fail at once for
//!   `cool_down`. Clients retry a broker that went away at least every second
//!   (`reconnect.backoff.max.ms`);
//! - readers use **manual assignment**: `assign()` of exactly the requested partitions at the
//!   requested offsets, never `subscribe()`, auto-commit off and offset store off. The
//!   pipeline owns its offsets (they live in its checkpoint); the consumer group exists only
//!   so that `commit` can publish offsets for lag monitoring (asynchronously, best effort).
//!   Readers read committed data only (`isolation.level=read_committed`). The stream of a
//!   record is its topic's: a record that is not an event of that stream (a tombstone,
//!   other bytes, an event naming another stream, all written by another producer) is
//!   skipped, counted in `tributary_log_undecodable_records_total`, logged, and handed out
//!   once by `take_rejected` as a dead letter (`crate::log_checks`);
//! - a reader's offset 0 means "from the log start". Any other offset is checked once, when
//!   the reader opens, against the partition's watermarks: below the log start (its records
//!   expired before the group read them), the reader logs an error, counts the missing
//!   records in `tributary_log_records_lost_total{stream}` (once per group, partition and
//!   range in a process, however often a restarting task reopens there) and starts at the log start;
//!   beyond the end (the topic was recreated), it logs an error and reads the partition from
//!   its start. Consumers run with `auto.offset.reset=error`: an offset that leaves the log
//!   while reading fails `poll` (retryably: reopening reports the loss), never a silent
//!   reset. A consumer error met after the first record of a poll ends the batch and fails
//!   the next poll.
//!
//! The partition count of a stream is cached after the first lookup: adding partitions to a
//! live topic would move keys anyway, which Tributary does not support.

#[cfg(feature = "kafka")]
mod admin;
mod config;
#[cfg(feature = "kafka")]
mod error;
#[cfg(feature = "kafka")]
mod group;
#[cfg(feature = "kafka")]
mod log;
#[cfg(feature = "kafka")]
mod lost;
#[cfg(feature = "kafka")]
mod offsets;
#[cfg(feature = "kafka")]
mod producer;
#[cfg(feature = "kafka")]
mod reader;
#[cfg(feature = "kafka")]
pub mod source;
#[cfg(feature = "kafka")]
mod topics;

pub use config::KafkaConfig;
#[cfg(feature = "kafka")]
pub use group::KafkaMembership;
#[cfg(feature = "kafka")]
pub use log::KafkaLog;
#[cfg(feature = "kafka")]
pub use reader::KafkaLogReader;
#[cfg(feature = "kafka")]
pub use topics::KafkaTopics;
