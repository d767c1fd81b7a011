//! Configuration of the Redis cache.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::breaker::default_cool_down;

/// How to reach Redis and name the keys.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// The server's URL, e.g. `redis://127.0.0.1:6379/0` (`rediss://` for TLS is not
    /// compiled in).
    pub url: String,
    /// Prefix of every key Tributary writes, so that it can share a database.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    /// How long one command may take, reconnecting included, before it fails; Redis then
    /// counts as down for `cool_down`. The cache is derived data: while it is down,
    /// `/v1/pipelines` shows `"status": null` and the processors skip their status writes.
    #[serde(default = "default_command_timeout", with = "humantime_serde")]
    pub command_timeout: Duration,
    /// After a command failed for want of the server (or timed out), how long commands fail
    /// at once, before one command probes the server again: the cache's circuit breaker.
    #[serde(default = "default_cool_down", with = "humantime_serde")]
    pub cool_down: Duration,
}

impl RedisConfig {
    /// A config for `url` with the default key prefix.
    #[must_use]
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            key_prefix: default_key_prefix(),
            command_timeout: default_command_timeout(),
            cool_down: default_cool_down(),
        }
    }
}

fn default_key_prefix() -> String {
    "tributary:".to_owned()
}

/// The default timeout of one command.
const fn default_command_timeout() -> Duration {
    Duration::from_secs(1)
}
