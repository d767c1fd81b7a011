//! Configuration of the Redis cache.

use serde::{Deserialize, Serialize};

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
}

impl RedisConfig {
    /// A config for `url` with the default key prefix.
    #[must_use]
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            key_prefix: default_key_prefix(),
        }
    }
}

fn default_key_prefix() -> String {
    "tributary:".to_owned()
}
