//! Configuration of the PostgreSQL analytics store.

use serde::{Deserialize, Serialize};

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
}

impl PostgresConfig {
    /// A config for `url` with the default pool size.
    #[must_use]
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: default_max_connections(),
        }
    }
}

/// The default pool size.
const fn default_max_connections() -> u32 {
    10
}
