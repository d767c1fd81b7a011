//! Configuration of the in-process cache.

use serde::{Deserialize, Serialize};

/// Bounds of the in-process cache.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryCacheConfig {
    /// At most this many entries; beyond it, the least useful ones are evicted.
    #[serde(default = "default_max_entries")]
    pub max_entries: u64,
}

impl Default for MemoryCacheConfig {
    fn default() -> Self {
        Self {
            max_entries: default_max_entries(),
        }
    }
}

fn default_max_entries() -> u64 {
    100_000
}
