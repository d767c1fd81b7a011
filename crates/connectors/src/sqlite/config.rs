//! Configuration of the embedded SQLite store.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Where the embedded store keeps its data.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SqliteConfig {
    /// The database file; created, with its parent directories, when missing. SQLite adds
    /// `-wal` and `-shm` files beside it.
    pub path: PathBuf,
}
