//! The stream catalog's ports: [`StreamStore`], where the streams' definitions are kept,
//! and [`StreamTopics`], what the log does for a stream's definition (its topic).
//!
//! Contract of [`StreamStore`]:
//! - A stream is stored by its identity, unique across tenants (an identity is a topic of
//!   the log; a tenant's name for it may differ, see `tributary_gateway::catalog`, Names),
//!   with its tenant, partitions, replication factor (`None` on a log without replicas),
//!   retention (`None`: the log's default), optional JSON Schema of its events' payloads,
//!   description, origin ([`StreamOrigin`]) and times.
//! - [`StreamStore::create`] refuses an identity already stored ([`PortError::Refused`]).
//! - [`StreamStore::upsert_config`] writes a stream of the config file: it inserts it, or
//!   overwrites what the config says (partitions, description, tenant, origin) and keeps
//!   what the API set (schema, retention, replication, creation time).
//! - [`StreamStore::update`] replaces a stored stream's definition and says whether it
//!   exists; [`StreamStore::delete`] removes it and says whether it existed.
//! - [`StreamStore::list`] returns every stream of every tenant, ordered by identity.
//!
//! Contract of [`StreamTopics`]: creating, altering and deleting the log's side of a
//! stream (a Kafka topic; a stream of the embedded log). What a log cannot do is said by
//! [`StreamTopics::capabilities`], so that the gateway refuses it before asking.
//!
//! The adapters (`tributary_connectors::streams`) keep streams in the analytics database:
//! PostgreSQL, or SQLite when embedded; one conformance suite runs against both.

use std::fmt;

use async_trait::async_trait;
use serde_json::Value;

use super::PortError;
use crate::{StreamName, Timestamp};

/// Where a stream's definition comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamOrigin {
    /// The config file's `[[streams]]`: written again at every start.
    Config,
    /// The admin API (`POST /v1/streams`).
    Api,
}

impl StreamOrigin {
    /// The origin's name, as stored and shown.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::Api => "api",
        }
    }
}

/// A stored origin that is neither `config` nor `api`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown stream origin {0:?}")]
pub struct UnknownOrigin(pub String);

impl std::str::FromStr for StreamOrigin {
    type Err = UnknownOrigin;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "config" => Ok(Self::Config),
            "api" => Ok(Self::Api),
            other => Err(UnknownOrigin(other.to_owned())),
        }
    }
}

/// A stream's definition, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredStream {
    /// Its identity, unique across tenants (see `tributary_gateway::catalog`, Names).
    pub name: StreamName,
    /// The tenant it belongs to.
    pub tenant: String,
    /// Its number of partitions in the log.
    pub partitions: u32,
    /// How many copies of each partition the log keeps; `None` on a log without replicas
    /// (the embedded one).
    pub replication_factor: Option<i32>,
    /// How long the log keeps its records, in milliseconds (Kafka's `retention.ms`;
    /// `-1` forever); `None` for the log's default.
    pub retention_ms: Option<i64>,
    /// The JSON Schema its events' payloads must match, if any.
    pub schema: Option<Value>,
    /// For people.
    pub description: Option<String>,
    /// Where it was defined.
    pub origin: StreamOrigin,
    /// When it was first stored.
    pub created_at: Timestamp,
    /// When it was last changed.
    pub updated_at: Timestamp,
}

/// Where the streams' definitions are kept.
#[async_trait]
pub trait StreamStore: Send + Sync + fmt::Debug {
    /// Stores a new stream.
    ///
    /// # Errors
    /// [`PortError::Refused`] when its name is stored already; others when the store fails.
    async fn create(&self, stream: &StoredStream) -> Result<(), PortError>;

    /// Stores a stream of the config file: inserted when new; else its partitions,
    /// description, tenant and origin are overwritten, the rest kept.
    async fn upsert_config(&self, stream: &StoredStream) -> Result<(), PortError>;

    /// The stream named `name`, if stored.
    async fn get(&self, name: &StreamName) -> Result<Option<StoredStream>, PortError>;

    /// Every stream, of every tenant, ordered by identity.
    async fn list(&self) -> Result<Vec<StoredStream>, PortError>;

    /// Replaces the definition of the stream named `stream.name` (its creation time is
    /// kept); whether it exists.
    async fn update(&self, stream: &StoredStream) -> Result<bool, PortError>;

    /// Removes the stream named `name`; whether it existed.
    async fn delete(&self, name: &StreamName) -> Result<bool, PortError>;
}

/// What a log can do to a stream after creating it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicCapabilities {
    /// Whether partitions can be added (Kafka: yes; the embedded log: no).
    pub add_partitions: bool,
    /// Whether the log enforces a retention (Kafka: yes; the embedded log keeps
    /// everything: a retention is stored, not applied).
    pub retention: bool,
    /// Whether streams have a replication factor (Kafka: yes).
    pub replication: bool,
    /// Whether deleting a stream deletes its records (Kafka: the topic is deleted; the
    /// embedded log keeps them, and a stream created again with the name finds them).
    pub delete_records: bool,
}

/// Why the log refused a stream's settings or failed.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    /// The settings cannot be applied (a replication factor above the brokers' count, a
    /// retention the log refuses, ...): the caller's fault, with the log's reason.
    #[error("{0}")]
    Invalid(String),
    /// The log failed.
    #[error(transparent)]
    Port(#[from] PortError),
}

/// A stream's settings, as the log applies them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// The stream.
    pub name: StreamName,
    /// Its partitions.
    pub partitions: u32,
    /// Its replication factor; `None` for the log's default.
    pub replication_factor: Option<i32>,
    /// Its retention in milliseconds; `None` for the log's default.
    pub retention_ms: Option<i64>,
}

/// The log's side of the stream catalog.
#[async_trait]
pub trait StreamTopics: Send + Sync + fmt::Debug {
    /// What this log can do.
    fn capabilities(&self) -> TopicCapabilities;

    /// The replication factor of streams created without one (`None` without replicas).
    fn default_replication_factor(&self) -> Option<i32>;

    /// Creates the stream's topic unless it exists; returns its actual partition count
    /// (that of the existing topic, when it existed).
    async fn create(&self, spec: &TopicSpec) -> Result<u32, TopicError>;

    /// Applies a changed retention and grows the partitions to `spec.partitions` (never
    /// fewer).
    async fn alter(&self, spec: &TopicSpec) -> Result<(), TopicError>;

    /// Deletes the stream's topic (a missing one is not an error).
    async fn delete(&self, name: &StreamName) -> Result<(), TopicError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_round_trip() {
        for origin in [StreamOrigin::Config, StreamOrigin::Api] {
            assert_eq!(origin.as_str().parse::<StreamOrigin>().unwrap(), origin);
        }
        assert!("file".parse::<StreamOrigin>().is_err());
    }
}
