//! The embedded durable log: the [`Log`](tributary_core::ports::Log) port on a single
//! [redb](https://docs.rs/redb) file, so `tributary demo` needs no Kafka.
//!
//! Contract (the same as Kafka's, checked by `tests/log_conformance.rs`):
//! - one redb table per stream partition, `log/{stream}/{partition}`, keyed by the record's
//!   offset (0, 1, 2, ...), holding [`Event::to_json_bytes`](tributary_core::Event::to_json_bytes);
//!   the table `meta/streams` maps a stream to its partition count;
//! - [`RedbLog::append`](tributary_core::ports::Log::append) writes the whole request in one
//!   write transaction with immediate durability, so it is all-or-nothing and durable when it
//!   returns; an event goes to `partition_for(event.partition_key(), partitions)`, as in Kafka;
//! - readers poll without busy-waiting: an append wakes every reader of the same log;
//! - a record that is not an event of its stream (written behind the adapter's back) is
//!   skipped, counted, logged and handed out once by `take_rejected` as a dead letter, as
//!   in Kafka (`crate::log_checks`);
//! - reader commits are stored (non-durably) in `meta/group_offsets` for lag monitoring only.
//!
//! One process owns the file at a time (redb locks it); clones of a [`RedbLog`] share it.
//!
//! A file written by an earlier Tributary (redb 2, file format v2) is migrated once, when
//! it is opened: see `migrate.rs`.

mod config;
mod log;
mod migrate;

pub use config::RedbLogConfig;
pub use log::{RedbLog, RedbLogReader};
