//! The ports: the narrow traits through which the engine and the gateway reach the outside.
//!
//! Each port has two adapters in `tributary-connectors`, the embedded one and the real one,
//! and one conformance suite that runs against both. Every method is idempotent or fenced,
//! so that a retry after a crash cannot count an event twice:
//! - [`Log`]: durable, partitioned, replayable (Kafka; an embedded store).
//! - [`AnalyticsStore`]: window results, checkpoints and state chunks, committed together
//!   (PostgreSQL; SQLite).
//! - [`DocumentStore`]: raw events as documents, upserted by id (MongoDB; SQLite).
//! - [`Cache`]: derived values, written after commits, never the source of truth (Redis; memory).
//! - [`ReferenceSource`]: the tables of a pipeline's lookups, read whole (a file; PostgreSQL).
//! - [`RateLimiter`]: requests per key, by the GCRA, shared by every gateway (Redis; memory).
//! - [`KeyStore`]: issued API keys, as hashes (PostgreSQL; SQLite).
//! - [`StreamStore`]: the streams' definitions (PostgreSQL; SQLite), and [`StreamTopics`],
//!   their side in the log (Kafka topics; the embedded log).
//!
//! [`Log::join`] also gives a [`Membership`] of a group of processes sharing partitions
//! (a Kafka consumer group; one process alone on the embedded log).

mod analytics;
mod cache;
mod document;
mod error;
mod group;
mod keys;
mod log;
mod rate_limit;
mod reference;
mod streams;

pub use analytics::{
    AnalyticsStore, Checkpoint, Claim, KeyedState, ResultQuery, StateChunk, StateDelta,
};
pub use cache::Cache;
pub use document::{DocumentStore, EventCursor, EventPage};
pub use error::{BoxError, CircuitOpen, ErrorDomain, Fence, PortError};
pub use group::{GroupChange, Membership, SoleMember, StreamPartition};
pub use keys::{
    DEFAULT_TENANT, KeyStore, Scope, StoredKey, UnknownScope, parse_scopes, scopes_to_string,
};
pub use log::{EncodedBatch, Log, LogReader, LogRecord, PartitionOffset, RawBatch, RawRecord};
pub use rate_limit::{Decision, Quota, QuotaError, RateLimiter, check_one, gcra};
pub use reference::ReferenceSource;
pub use streams::{
    StoredStream, StreamOrigin, StreamStore, StreamTopics, TopicCapabilities, TopicError,
    TopicSpec, UnknownOrigin,
};

use std::sync::Arc;

/// One adapter per port: what the engine and the gateway work through.
#[derive(Debug, Clone)]
pub struct Ports {
    /// The event log.
    pub log: Arc<dyn Log>,
    /// Window results and checkpoints.
    pub analytics: Arc<dyn AnalyticsStore>,
    /// Raw events as documents.
    pub documents: Arc<dyn DocumentStore>,
    /// Derived, cached values.
    pub cache: Arc<dyn Cache>,
}
