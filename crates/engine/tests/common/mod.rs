//! Shared by the engine's integration tests: the embedded adapters over one directory.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tributary_connectors::memory::{MemoryCache, MemoryCacheConfig};
use tributary_connectors::redb::{RedbLog, RedbLogConfig};
use tributary_connectors::sqlite::{SqliteConfig, SqliteStore};
use tributary_engine::Ports;

/// A redb log and one SQLite store (analytics and documents) in `dir`, and a memory cache.
/// Opening waits up to 2 s for the log file: an aborted engine's blocking reads may hold it
/// for a moment longer.
pub async fn embedded_ports(dir: &Path) -> Ports {
    let config = RedbLogConfig {
        path: dir.join("log.redb"),
    };
    let mut attempts = 0;
    let log = loop {
        match RedbLog::open(&config) {
            Ok(log) => break log,
            Err(_) if attempts < 100 => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(err) => panic!("{err:?}"),
        }
    };
    let store = Arc::new(
        SqliteStore::connect(&SqliteConfig {
            path: dir.join("t.db"),
        })
        .await
        .expect("the SQLite store opens"),
    );
    Ports {
        log: Arc::new(log),
        analytics: store.clone(),
        documents: store,
        cache: Arc::new(MemoryCache::new(&MemoryCacheConfig::default())),
    }
}
