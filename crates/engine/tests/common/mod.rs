//! Shared by the engine's integration tests: the embedded adapters over one directory.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tributary_connectors::memory::{MemoryCache, MemoryCacheConfig};
use tributary_connectors::redb::{RedbLog, RedbLogConfig};
use tributary_connectors::sqlite::{SqliteConfig, SqliteStore};
use tributary_core::ports::{EventCursor, EventPage, ResultQuery};
use tributary_core::results::{ResultRow, ResultSchema};
use tributary_core::{EventId, StreamName};
use tributary_engine::Ports;

/// A redb log and one SQLite store (analytics and documents) in `dir`, and a memory cache.
/// Opening waits up to 15 s for the log file, which an aborted engine's last handles hold
/// until they go: usually within 100 ms, but 5–10 s in about one test run in ten (10.03 s
/// at most in 300 opens, SQLite's busy timeout: an aborted statement waiting for a lock
/// that another one held). A process that is killed lets go at once.
pub async fn embedded_ports(dir: &Path) -> Ports {
    let config = RedbLogConfig {
        path: dir.join("log.redb"),
    };
    let mut attempts = 0;
    let log = loop {
        match RedbLog::open(&config) {
            Ok(log) => break log,
            Err(_) if attempts < 750 => {
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

/// Polls `probe` every 20 ms until it answers `Ok`, and returns that; fails with the last
/// `Err` (what was still missing) after 30 s. A probe panics itself on what can only get
/// worse (more than expected: a duplicate never goes away).
pub async fn eventually<T>(mut probe: impl AsyncFnMut() -> Result<T, String>) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(missing) => assert!(
                std::time::Instant::now() < deadline,
                "not within 30 s: {missing}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every result row of the pipeline of `schema` (up to 10,000).
#[allow(dead_code)] // Not every test binary reads results.
pub async fn results(ports: &Ports, schema: &ResultSchema) -> Vec<ResultRow> {
    ports
        .analytics
        .query_results(
            schema,
            &ResultQuery {
                pipeline: schema.pipeline.clone(),
                from: None,
                to: None,
                key: None,
                limit: 10_000,
            },
        )
        .await
        .expect("the results are read")
}

/// The ids of the raw events the document store holds for `stream`, read page by page
/// (a duplicate would show twice).
#[allow(dead_code)] // Not every test binary reads raw events.
pub async fn raw_event_ids(ports: &Ports, stream: &StreamName) -> Vec<EventId> {
    let mut ids = Vec::new();
    let mut page = EventPage {
        limit: 500,
        after: None,
    };
    loop {
        let batch = ports.documents.recent_events(stream, &page).await.unwrap();
        let Some(last) = batch.last() else {
            return ids;
        };
        page.after = Some(EventCursor {
            ts: last.ts,
            id: last.id.clone(),
        });
        ids.extend(batch.into_iter().map(|e| e.id));
    }
}
