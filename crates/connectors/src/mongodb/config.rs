//! Configuration of the MongoDB document store.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::breaker::default_cool_down;

/// How to reach MongoDB (or FerretDB).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MongoConfig {
    /// Connection string, e.g. `mongodb://host:27017/`. Options in it (timeouts, TLS,
    /// credentials) are honoured; the server selection and connect timeouts default to ten
    /// seconds when it sets none.
    pub url: String,
    /// The database holding the `events_{stream}` and `dead_letters` collections.
    #[serde(default = "default_database")]
    pub database: String,
    /// How long a query of the gateway (a page of events or of dead letters) may take,
    /// server selection included, before it fails (503); the store then counts as down for
    /// `cool_down`.
    #[serde(default = "default_query_timeout", with = "humantime_serde")]
    pub query_timeout: Duration,
    /// After a query failed for want of the server (or timed out), how long the gateway's
    /// queries fail at once (503 with `Retry-After`), before one query probes the server
    /// again: the store's circuit breaker.
    #[serde(default = "default_cool_down", with = "humantime_serde")]
    pub cool_down: Duration,
}

impl MongoConfig {
    /// A config for `url` with the default database.
    #[must_use]
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            database: default_database(),
            query_timeout: default_query_timeout(),
            cool_down: default_cool_down(),
        }
    }
}

/// The default database name.
fn default_database() -> String {
    "tributary".to_owned()
}

/// The default timeout of a query of the gateway.
const fn default_query_timeout() -> Duration {
    Duration::from_secs(3)
}
