//! The adapters a node connects (`registry::build_with_stores`) open one connection pool to
//! the analytics database: the API key and stream stores share the analytics store's, against a real
//! PostgreSQL (`TRIBUTARY_POSTGRES_URL`; the test fails when it is missing or unreachable).

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;

use sqlx::{Connection as _, PgConnection};
use tributary_connectors::memory::MemoryCacheConfig;
use tributary_connectors::postgres::PostgresConfig;
use tributary_connectors::redb::RedbLogConfig;
use tributary_connectors::registry::{
    AnalyticsConfig, CacheConfig, DocumentsConfig, LogConfig, build_with_stores,
};
use tributary_connectors::sqlite::SqliteConfig;
use tributary_core::ports::{Scope, StoredKey, StoredStream, StreamOrigin};
use tributary_core::{StreamName, Timestamp};

/// `url` naming `database` instead of its own.
fn with_database(url: &str, database: &str) -> String {
    let (base, params) = match url.split_once('?') {
        Some((base, params)) => (base, Some(params)),
        None => (url, None),
    };
    let (scheme, rest) = base.split_once("://").expect("a postgres:// URL");
    let authority = rest
        .split_once('/')
        .map_or(rest, |(authority, _)| authority);
    match params {
        Some(params) => format!("{scheme}://{authority}/{database}?{params}"),
        None => format!("{scheme}://{authority}/{database}"),
    }
}

#[tokio::test]
async fn the_key_and_stream_stores_share_the_analytics_pool() {
    let url = common::service_env("TRIBUTARY_POSTGRES_URL");
    let database = format!("t_{}", uuid::Uuid::now_v7().simple());
    let mut admin = PgConnection::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at TRIBUTARY_POSTGRES_URL is unreachable: {e}"));
    sqlx::query(&format!("CREATE DATABASE {database}"))
        .execute(&mut admin)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // One connection at most: a key or stream store on a pool of its own would open a
    // second one.
    let analytics = PostgresConfig {
        max_connections: 1,
        ..PostgresConfig::new(with_database(&url, &database))
    };
    let (ports, catalogs) = build_with_stores(
        &LogConfig::Embedded(RedbLogConfig {
            path: dir.path().join("log.redb"),
        }),
        &AnalyticsConfig::Postgres(analytics),
        &DocumentsConfig::Sqlite(SqliteConfig {
            path: dir.path().join("documents.db"),
        }),
        &CacheConfig::Memory(MemoryCacheConfig::default()),
    )
    .await
    .unwrap();
    let key = StoredKey {
        id: "k1".to_owned(),
        secret_hash: [7; 32],
        scopes: BTreeSet::from([Scope::Read]),
        tenant: "default".to_owned(),
        description: None,
        created_at: Timestamp::from_millis(1_700_000_000_000),
        expires_at: None,
        revoked_at: None,
    };
    let keys = &catalogs.keys;
    keys.create(&key).await.unwrap();
    ports.analytics.ping().await.unwrap();
    assert_eq!(keys.get("k1").await.unwrap(), Some(key));
    let stream = StoredStream {
        name: StreamName::new("s1").unwrap(),
        tenant: "default".to_owned(),
        partitions: 2,
        replication_factor: None,
        retention_ms: None,
        schema: None,
        description: None,
        origin: StreamOrigin::Api,
        created_at: Timestamp::from_millis(1_700_000_000_000),
        updated_at: Timestamp::from_millis(1_700_000_000_000),
    };
    catalogs.streams.create(&stream).await.unwrap();
    assert_eq!(
        catalogs.streams.get(&stream.name).await.unwrap(),
        Some(stream)
    );
    ports.analytics.ping().await.unwrap();
    let connections: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = $1")
            .bind(&database)
            .fetch_one(&mut admin)
            .await
            .unwrap();
    drop((ports, catalogs));
    sqlx::query(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .unwrap();
    assert_eq!(connections, 1, "the node opened {connections} connections");
}
