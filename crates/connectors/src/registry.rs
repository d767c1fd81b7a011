//! The one place where adapters are chosen: each port's config is an enum tagged by
//! `type`, and [`build`] connects the adapter each names. An unknown `type` is a config
//! error naming the accepted ones (serde reports it when the file is read).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tributary_core::ports::{
    AnalyticsStore, Cache, DocumentStore, KeyStore, Log, PortError, Ports, StreamStore,
};

use crate::kafka::{KafkaConfig, KafkaLog};
use crate::keys::SqlKeyStore;
use crate::memory::{MemoryCache, MemoryCacheConfig};
use crate::mongodb::{MongoConfig, MongoStore};
use crate::postgres::{PostgresConfig, PostgresStore};
use crate::redb::{RedbLog, RedbLogConfig};
use crate::redis::{RedisCache, RedisConfig};
use crate::sqlite::{SqliteConfig, SqliteStore};
use crate::streams::SqlStreamStore;

/// The event log.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum LogConfig {
    /// The embedded log, in one file.
    Embedded(RedbLogConfig),
    /// Apache Kafka.
    Kafka(KafkaConfig),
}

/// Window results and checkpoints.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum AnalyticsConfig {
    /// SQLite, embedded.
    Sqlite(SqliteConfig),
    /// PostgreSQL.
    Postgres(PostgresConfig),
}

/// Raw events as documents.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum DocumentsConfig {
    /// SQLite, embedded (may share the analytics file).
    Sqlite(SqliteConfig),
    /// MongoDB (or a server speaking its protocol).
    Mongodb(MongoConfig),
}

/// Derived, cached values.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum CacheConfig {
    /// In this process.
    Memory(MemoryCacheConfig),
    /// Redis.
    Redis(RedisConfig),
}

/// Connects the adapters the configs name. Analytics and documents on the same SQLite
/// file share one connection pool.
///
/// # Errors
/// The first adapter that cannot connect.
pub async fn build(
    log: &LogConfig,
    analytics: &AnalyticsConfig,
    documents: &DocumentsConfig,
    cache: &CacheConfig,
) -> Result<Ports, PortError> {
    Ok(build_with_stores(log, analytics, documents, cache).await?.0)
}

/// The stores a node keeps in its analytics database besides results and checkpoints.
#[derive(Debug, Clone)]
pub struct Catalogs {
    /// The issued API keys.
    pub keys: Arc<dyn KeyStore>,
    /// The streams' definitions.
    pub streams: Arc<dyn StreamStore>,
}

/// As [`build`], with the API key and stream stores, on the analytics store's connection
/// pool (they live in the analytics database): a node opens one pool to that database.
///
/// # Errors
/// The first adapter that cannot connect.
pub async fn build_with_stores(
    log: &LogConfig,
    analytics: &AnalyticsConfig,
    documents: &DocumentsConfig,
    cache: &CacheConfig,
) -> Result<(Ports, Catalogs), PortError> {
    let log: Arc<dyn Log> = match log {
        LogConfig::Embedded(config) => {
            let config = config.clone();
            let log = tokio::task::spawn_blocking(move || RedbLog::open(&config))
                .await
                .map_err(|e| PortError::unavailable("redb", e))??;
            Arc::new(log)
        }
        LogConfig::Kafka(config) => Arc::new(KafkaLog::connect(config).await?),
    };
    let mut sqlite: HashMap<PathBuf, Arc<SqliteStore>> = HashMap::new();
    let (analytics, catalogs): (Arc<dyn AnalyticsStore>, Catalogs) = match analytics {
        AnalyticsConfig::Sqlite(config) => {
            let store = open_sqlite(&mut sqlite, config).await?;
            let catalogs = Catalogs {
                keys: Arc::new(SqlKeyStore::new(&store)),
                streams: Arc::new(SqlStreamStore::new(&store)),
            };
            (store, catalogs)
        }
        AnalyticsConfig::Postgres(config) => {
            let store = Arc::new(PostgresStore::connect(config).await?);
            let catalogs = Catalogs {
                keys: Arc::new(SqlKeyStore::new(&store)),
                streams: Arc::new(SqlStreamStore::new(&store)),
            };
            (store, catalogs)
        }
    };
    let documents: Arc<dyn DocumentStore> = match documents {
        DocumentsConfig::Sqlite(config) => open_sqlite(&mut sqlite, config).await?,
        DocumentsConfig::Mongodb(config) => Arc::new(MongoStore::connect(config).await?),
    };
    let cache: Arc<dyn Cache> = match cache {
        CacheConfig::Memory(config) => Arc::new(MemoryCache::new(config)),
        CacheConfig::Redis(config) => Arc::new(RedisCache::connect(config).await?),
    };
    let ports = Ports {
        log,
        analytics,
        documents,
        cache,
    };
    Ok((ports, catalogs))
}

/// Connects the analytics store alone (for tools such as `tributary reset`).
///
/// # Errors
/// When it cannot connect.
pub async fn analytics(config: &AnalyticsConfig) -> Result<Arc<dyn AnalyticsStore>, PortError> {
    Ok(match config {
        AnalyticsConfig::Sqlite(config) => Arc::new(SqliteStore::connect(config).await?),
        AnalyticsConfig::Postgres(config) => Arc::new(PostgresStore::connect(config).await?),
    })
}

async fn open_sqlite(
    opened: &mut HashMap<PathBuf, Arc<SqliteStore>>,
    config: &SqliteConfig,
) -> Result<Arc<SqliteStore>, PortError> {
    if let Some(store) = opened.get(&config.path) {
        return Ok(Arc::clone(store));
    }
    let store = Arc::new(SqliteStore::connect(config).await?);
    opened.insert(config.path.clone(), Arc::clone(&store));
    Ok(store)
}

/// The source of a lookup's table: a [`FileReference`](crate::file::FileReference) or a
/// [`PostgresReference`](crate::postgres::PostgresReference) (whose pool connects at the
/// first load). Must be called within a Tokio runtime.
///
/// # Errors
/// [`PortError::Refused`] for a malformed PostgreSQL URL or table name.
pub fn reference(
    source: &tributary_core::lookup::LookupSource,
) -> Result<Arc<dyn tributary_core::ports::ReferenceSource>, PortError> {
    use tributary_core::lookup::LookupSource;
    Ok(match source {
        LookupSource::File { path, format } => {
            Arc::new(crate::file::FileReference::new(path.clone(), *format))
        }
        LookupSource::Postgres { url, table } => {
            Arc::new(crate::postgres::PostgresReference::new(url, table)?)
        }
    })
}
