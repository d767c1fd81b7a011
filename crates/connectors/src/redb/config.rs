//! Configuration of the embedded log.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Where the embedded log keeps its data.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RedbLogConfig {
    /// The database file; created, with its parent directories, when missing. Only one
    /// process may open it at a time.
    pub path: PathBuf,
}
