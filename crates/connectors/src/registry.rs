//! The one place where adapters are chosen: each port's config is an enum tagged by
//! `type`, and [`build`] connects the adapter each names. An unknown `type` is a config
//! error naming the accepted ones (serde reports it when the file is read).
//!
//! Each real adapter is behind the cargo feature of its name (`kafka`, `postgres`,
//! `mongodb`, `redis`; all on by default). A build without one still knows its config, so
//! that a config naming it fails to load with [`LeftOut`], naming the feature, rather than
//! as an unknown `type`; building it (from a config made in code) fails the same way.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tributary_core::ports::{
    AnalyticsStore, Cache, DocumentStore, KeyStore, Log, PortError, Ports, StreamStore,
};

use crate::kafka::KafkaConfig;
#[cfg(feature = "kafka")]
use crate::kafka::KafkaLog;
use crate::keys::SqlKeyStore;
use crate::memory::{MemoryCache, MemoryCacheConfig};
use crate::mongodb::MongoConfig;
#[cfg(feature = "mongodb")]
use crate::mongodb::MongoStore;
use crate::postgres::PostgresConfig;
#[cfg(feature = "postgres")]
use crate::postgres::PostgresStore;
use crate::redb::{RedbLog, RedbLogConfig};
#[cfg(feature = "redis")]
use crate::redis::RedisCache;
use crate::redis::RedisConfig;
use crate::sqlite::{SqliteConfig, SqliteStore};
use crate::streams::SqlStreamStore;

/// The event log.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum LogConfig {
    /// The embedded log, in one file.
    Embedded(RedbLogConfig),
    /// Apache Kafka.
    #[cfg_attr(not(feature = "kafka"), serde(deserialize_with = "without_kafka"))]
    Kafka(KafkaConfig),
}

/// Window results and checkpoints.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum AnalyticsConfig {
    /// SQLite, embedded.
    Sqlite(SqliteConfig),
    /// PostgreSQL.
    #[cfg_attr(
        not(feature = "postgres"),
        serde(deserialize_with = "without_postgres")
    )]
    Postgres(PostgresConfig),
}

/// Raw events as documents.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum DocumentsConfig {
    /// SQLite, embedded (may share the analytics file).
    Sqlite(SqliteConfig),
    /// MongoDB (or a server speaking its protocol).
    #[cfg_attr(not(feature = "mongodb"), serde(deserialize_with = "without_mongodb"))]
    Mongodb(MongoConfig),
}

/// Derived, cached values.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum CacheConfig {
    /// In this process.
    Memory(MemoryCacheConfig),
    /// Redis.
    #[cfg_attr(not(feature = "redis"), serde(deserialize_with = "without_redis"))]
    Redis(RedisConfig),
}

/// A connector this build leaves out: its cargo feature was off when it was compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "this build of Tributary leaves out the {feature} connector: build it with the cargo \
     feature `{feature}` (on by default)"
)]
pub struct LeftOut {
    /// The cargo feature (of this crate and of the `tributary` binary): "kafka", ...
    pub feature: &'static str,
}

impl LeftOut {
    /// The connector behind `feature`.
    #[must_use]
    pub const fn new(feature: &'static str) -> Self {
        Self { feature }
    }

    /// As the [`PortError::Refused`] of a config naming it: a user's error, which no retry
    /// mends.
    #[must_use]
    pub fn refused(self) -> PortError {
        PortError::refused(self.feature, self)
    }

    /// As the error of a config file naming it: the file does not load.
    #[must_use]
    pub fn de_error<E: serde::de::Error>(self) -> E {
        E::custom(self)
    }
}

/// Fails to read a config naming the Kafka log, in a build without it.
#[cfg(not(feature = "kafka"))]
fn without_kafka<'de, D: serde::Deserializer<'de>, T>(_: D) -> Result<T, D::Error> {
    Err(LeftOut::new("kafka").de_error())
}

/// Fails to read a config naming PostgreSQL, in a build without it.
#[cfg(not(feature = "postgres"))]
fn without_postgres<'de, D: serde::Deserializer<'de>, T>(_: D) -> Result<T, D::Error> {
    Err(LeftOut::new("postgres").de_error())
}

/// Fails to read a config naming MongoDB, in a build without it.
#[cfg(not(feature = "mongodb"))]
fn without_mongodb<'de, D: serde::Deserializer<'de>, T>(_: D) -> Result<T, D::Error> {
    Err(LeftOut::new("mongodb").de_error())
}

/// Fails to read a config naming Redis, in a build without it.
#[cfg(not(feature = "redis"))]
fn without_redis<'de, D: serde::Deserializer<'de>, T>(_: D) -> Result<T, D::Error> {
    Err(LeftOut::new("redis").de_error())
}

/// Connects the adapters the configs name. Analytics and documents on the same SQLite
/// file share one connection pool.
///
/// # Errors
/// The first adapter that cannot connect, or is left out of this build ([`LeftOut`]).
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
/// The first adapter that cannot connect, or is left out of this build ([`LeftOut`]).
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
        #[cfg(feature = "kafka")]
        LogConfig::Kafka(config) => Arc::new(KafkaLog::connect(config).await?),
        #[cfg(not(feature = "kafka"))]
        LogConfig::Kafka(_) => return Err(LeftOut::new("kafka").refused()),
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
        #[cfg(feature = "postgres")]
        AnalyticsConfig::Postgres(config) => {
            let store = Arc::new(PostgresStore::connect(config).await?);
            let catalogs = Catalogs {
                keys: Arc::new(SqlKeyStore::new(&store)),
                streams: Arc::new(SqlStreamStore::new(&store)),
            };
            (store, catalogs)
        }
        #[cfg(not(feature = "postgres"))]
        AnalyticsConfig::Postgres(_) => return Err(LeftOut::new("postgres").refused()),
    };
    let documents: Arc<dyn DocumentStore> = match documents {
        DocumentsConfig::Sqlite(config) => open_sqlite(&mut sqlite, config).await?,
        #[cfg(feature = "mongodb")]
        DocumentsConfig::Mongodb(config) => Arc::new(MongoStore::connect(config).await?),
        #[cfg(not(feature = "mongodb"))]
        DocumentsConfig::Mongodb(_) => return Err(LeftOut::new("mongodb").refused()),
    };
    let cache: Arc<dyn Cache> = match cache {
        CacheConfig::Memory(config) => Arc::new(MemoryCache::new(config)),
        #[cfg(feature = "redis")]
        CacheConfig::Redis(config) => Arc::new(RedisCache::connect(config).await?),
        #[cfg(not(feature = "redis"))]
        CacheConfig::Redis(_) => return Err(LeftOut::new("redis").refused()),
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
/// When it cannot connect, or is left out of this build ([`LeftOut`]).
pub async fn analytics(config: &AnalyticsConfig) -> Result<Arc<dyn AnalyticsStore>, PortError> {
    Ok(match config {
        AnalyticsConfig::Sqlite(config) => Arc::new(SqliteStore::connect(config).await?),
        #[cfg(feature = "postgres")]
        AnalyticsConfig::Postgres(config) => Arc::new(PostgresStore::connect(config).await?),
        #[cfg(not(feature = "postgres"))]
        AnalyticsConfig::Postgres(_) => return Err(LeftOut::new("postgres").refused()),
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
/// [`PortError::Refused`] for a malformed PostgreSQL URL or table name, or PostgreSQL in a
/// build without it.
pub fn reference(
    source: &tributary_core::lookup::LookupSource,
) -> Result<Arc<dyn tributary_core::ports::ReferenceSource>, PortError> {
    use tributary_core::lookup::LookupSource;
    Ok(match source {
        LookupSource::File { path, format } => {
            Arc::new(crate::file::FileReference::new(path.clone(), *format))
        }
        #[cfg(feature = "postgres")]
        LookupSource::Postgres { url, table } => {
            Arc::new(crate::postgres::PostgresReference::new(url, table)?)
        }
        #[cfg(not(feature = "postgres"))]
        LookupSource::Postgres { .. } => return Err(LeftOut::new("postgres").refused()),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::{Value, json};

    use super::*;

    /// Reads `config` as a `T`: it loads in a build with `feature` (`compiled`), and fails
    /// naming the feature in one without it.
    fn check_read<T: serde::de::DeserializeOwned>(config: Value, feature: &str, compiled: bool) {
        let read = serde_json::from_value::<T>(config);
        if compiled {
            assert!(read.is_ok(), "{feature}: {:?}", read.err());
        } else {
            let error = read.err().unwrap().to_string();
            let expected = format!("build it with the cargo feature `{feature}`");
            assert!(error.contains(&expected), "{error}");
        }
    }

    #[test]
    fn a_connector_left_out_of_the_build_is_refused_naming_its_feature() {
        check_read::<LogConfig>(
            json!({"type": "kafka", "brokers": "127.0.0.1:9092"}),
            "kafka",
            cfg!(feature = "kafka"),
        );
        check_read::<AnalyticsConfig>(
            json!({"type": "postgres", "url": "postgres://db/x"}),
            "postgres",
            cfg!(feature = "postgres"),
        );
        check_read::<DocumentsConfig>(
            json!({"type": "mongodb", "url": "mongodb://db"}),
            "mongodb",
            cfg!(feature = "mongodb"),
        );
        check_read::<CacheConfig>(
            json!({"type": "redis", "url": "redis://cache"}),
            "redis",
            cfg!(feature = "redis"),
        );
    }

    #[test]
    fn left_out_is_a_refusal_of_the_system_naming_the_feature() {
        let error = LeftOut::new("kafka").refused();
        assert!(matches!(
            error,
            PortError::Refused {
                system: "kafka",
                ..
            }
        ));
        let source = std::error::Error::source(&error).unwrap().to_string();
        assert_eq!(
            source,
            "this build of Tributary leaves out the kafka connector: build it with the cargo \
             feature `kafka` (on by default)"
        );
    }
}
