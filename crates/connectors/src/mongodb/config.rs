//! Configuration of the MongoDB document store.

use serde::{Deserialize, Serialize};

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
}

impl MongoConfig {
    /// A config for `url` with the default database.
    #[must_use]
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            database: default_database(),
        }
    }
}

/// The default database name.
fn default_database() -> String {
    "tributary".to_owned()
}
