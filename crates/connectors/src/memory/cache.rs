//! [`MemoryCache`]: the [`Cache`] port in this process.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use moka::Expiry;
use moka::future::Cache as Moka;
use tributary_core::ports::{Cache, PortError};

use super::config::MemoryCacheConfig;

/// A cached value with the TTL it was set with.
#[derive(Clone)]
struct Entry {
    value: Arc<str>,
    ttl: Option<Duration>,
}

/// Expires each entry after the TTL it was last set with.
struct PerEntryTtl;

impl Expiry<String, Entry> for PerEntryTtl {
    fn expire_after_create(&self, _key: &String, entry: &Entry, _at: Instant) -> Option<Duration> {
        entry.ttl
    }

    fn expire_after_update(
        &self,
        _key: &String,
        entry: &Entry,
        _at: Instant,
        _remaining: Option<Duration>,
    ) -> Option<Duration> {
        // A new value comes with its own TTL, or none: the old one no longer applies.
        entry.ttl
    }
}

/// The in-process cache. Cheap to clone: clones share the entries.
#[derive(Clone)]
pub struct MemoryCache {
    entries: Moka<String, Entry>,
}

impl fmt::Debug for MemoryCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryCache")
            .field("entries", &self.entries.entry_count())
            .finish_non_exhaustive()
    }
}

impl MemoryCache {
    /// An empty cache bounded as `config` says.
    #[must_use]
    pub fn new(config: &MemoryCacheConfig) -> Self {
        let entries = Moka::builder()
            .max_capacity(config.max_entries)
            .expire_after(PerEntryTtl)
            .build();
        Self { entries }
    }
}

#[async_trait]
impl Cache for MemoryCache {
    /// Always succeeds: the cache is in this process.
    async fn ping(&self) -> Result<(), PortError> {
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<String>, PortError> {
        Ok(self
            .entries
            .get(key)
            .await
            .map(|entry| entry.value.to_string()))
    }

    async fn set(&self, key: &str, value: &str, ttl: Option<Duration>) -> Result<(), PortError> {
        self.entries
            .insert(
                key.to_owned(),
                Entry {
                    value: Arc::from(value),
                    ttl,
                },
            )
            .await;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), PortError> {
        self.entries.invalidate(key).await;
        Ok(())
    }
}
