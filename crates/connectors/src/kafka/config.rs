//! Configuration of the Kafka log.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::breaker::default_cool_down;

/// How to reach Kafka and name the topics.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers, comma-separated `host:port` (Kafka's `bootstrap.servers`).
    pub brokers: String,
    /// Prefix of every topic: stream `clicks` lives in topic `{topic_prefix}clicks`.
    #[serde(default = "default_topic_prefix")]
    pub topic_prefix: String,
    /// Replication factor of the topics Tributary creates (3 in production clusters).
    #[serde(default = "default_replication_factor")]
    pub replication_factor: i32,
    /// Kafka `client.id` of Tributary's producers, consumers and admin client.
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// The session timeout of the processors' groups (`session.timeout.ms`): how long a
    /// processor that died keeps its tasks before the others take them over. At least the
    /// broker's `group.min.session.timeout.ms` (6 s by default).
    #[serde(default = "default_group_session_timeout", with = "humantime_serde")]
    pub group_session_timeout: Duration,
    /// How long an append (an ingest request's events) may wait for the brokers'
    /// acknowledgement before it fails (503; also the producer's `message.timeout.ms`); the
    /// log then counts as down for `cool_down`.
    #[serde(default = "default_append_timeout", with = "humantime_serde")]
    pub append_timeout: Duration,
    /// After an append failed for want of a broker (or timed out), how long appends fail at
    /// once (503 with `Retry-After`), before one append probes the cluster again: the log's
    /// circuit breaker.
    #[serde(default = "default_cool_down", with = "humantime_serde")]
    pub cool_down: Duration,
}

impl KafkaConfig {
    /// A config for `brokers` with every other field at its default.
    #[must_use]
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            topic_prefix: default_topic_prefix(),
            replication_factor: default_replication_factor(),
            client_id: default_client_id(),
            group_session_timeout: default_group_session_timeout(),
            append_timeout: default_append_timeout(),
            cool_down: default_cool_down(),
        }
    }
}

fn default_topic_prefix() -> String {
    "tributary.".to_owned()
}

fn default_replication_factor() -> i32 {
    1
}

fn default_group_session_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_append_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_client_id() -> String {
    "tributary".to_owned()
}
