//! Configuration of the PostgreSQL analytics store.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::breaker::default_cool_down;

/// How to reach PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// Connection URL, e.g. `postgres://user:password@host:5432/tributary`. The role needs
    /// the right to create tables in the database: migrations run at connect.
    pub url: String,
    /// Most connections the pool opens.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// How long a query of the gateway (a pipeline's results) may take, connecting
    /// included, before it fails (503); the store then counts as down for `cool_down`.
    #[serde(default = "default_query_timeout", with = "humantime_serde")]
    pub query_timeout: Duration,
    /// After a query failed for want of the server (or timed out), how long the gateway's
    /// queries fail at once (503 with `Retry-After`), before one query probes the server
    /// again: the store's circuit breaker.
    #[serde(default = "default_cool_down", with = "humantime_serde")]
    pub cool_down: Duration,
}

impl PostgresConfig {
    /// A config for `url` with the default pool size.
    #[must_use]
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: default_max_connections(),
            query_timeout: default_query_timeout(),
            cool_down: default_cool_down(),
        }
    }
}

/// The default pool size.
const fn default_max_connections() -> u32 {
    10
}

/// The default timeout of a query of the gateway.
const fn default_query_timeout() -> Duration {
    Duration::from_secs(3)
}
