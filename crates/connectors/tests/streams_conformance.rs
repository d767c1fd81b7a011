//! The conformance suite of the `StreamStore` port: every scenario is written once, against
//! `&dyn StreamStore`, and runs against the embedded SQLite store (`sqlite::*`) and against
//! PostgreSQL (`postgres::*`).
//!
//! The PostgreSQL tests need `TRIBUTARY_POSTGRES_URL` (`eval "$(bash scripts/services.sh
//! env)"`) and fail when it is missing or unreachable. Each test works in a database of its
//! own, created for it and dropped after it; each SQLite test in a file of its own.

#![allow(clippy::unwrap_used)] // Test helpers outside #[test] functions unwrap too.

mod common;

use serde_json::json;
use tributary_core::ports::{StoredStream, StreamOrigin, StreamStore};
use tributary_core::{StreamName, Timestamp};

/// 2023-11-14T22:13:20Z.
const T0: i64 = 1_700_000_000_000;

fn name(text: &str) -> StreamName {
    StreamName::new(text).unwrap()
}

fn stream(text: &str, tenant: &str, origin: StreamOrigin) -> StoredStream {
    StoredStream {
        name: name(text),
        tenant: tenant.to_owned(),
        partitions: 3,
        replication_factor: Some(1),
        retention_ms: Some(86_400_000),
        schema: Some(json!({"type": "object", "properties": {"t": {"type": "number"}}})),
        description: Some(format!("stream {text}")),
        origin,
        created_at: Timestamp::from_millis(T0),
        updated_at: Timestamp::from_millis(T0),
    }
}

async fn streams_round_trip(store: &dyn StreamStore) {
    let full = stream("full", "default", StreamOrigin::Api);
    store.create(&full).await.unwrap();
    let mut bare = stream("bare", "beta", StreamOrigin::Config);
    bare.replication_factor = None;
    bare.retention_ms = None;
    bare.schema = None;
    bare.description = None;
    store.create(&bare).await.unwrap();
    assert_eq!(store.get(&name("full")).await.unwrap(), Some(full.clone()));
    assert_eq!(store.get(&name("bare")).await.unwrap(), Some(bare.clone()));
    assert_eq!(store.get(&name("none")).await.unwrap(), None);
    assert_eq!(store.list().await.unwrap(), [bare, full]);
}

async fn a_duplicate_name_is_refused_and_changes_nothing(store: &dyn StreamStore) {
    let first = stream("dup", "default", StreamOrigin::Api);
    store.create(&first).await.unwrap();
    let mut second = stream("dup", "other", StreamOrigin::Api);
    second.partitions = 9;
    common::assert_refused(store.create(&second).await);
    assert_eq!(store.get(&name("dup")).await.unwrap(), Some(first));
}

async fn updates_and_deletes_say_whether_the_stream_exists(store: &dyn StreamStore) {
    let mut s = stream("u", "default", StreamOrigin::Api);
    store.create(&s).await.unwrap();
    s.partitions = 6;
    s.retention_ms = Some(-1);
    s.schema = None;
    s.updated_at = Timestamp::from_millis(T0 + 5);
    assert!(store.update(&s).await.unwrap());
    assert_eq!(store.get(&name("u")).await.unwrap(), Some(s.clone()));
    assert!(
        !store
            .update(&stream("missing", "default", StreamOrigin::Api))
            .await
            .unwrap()
    );
    assert!(store.delete(&name("u")).await.unwrap());
    assert!(!store.delete(&name("u")).await.unwrap());
    assert_eq!(store.get(&name("u")).await.unwrap(), None);
}

async fn config_upserts_keep_what_the_api_set(store: &dyn StreamStore) {
    let api = stream("c", "default", StreamOrigin::Api);
    store.create(&api).await.unwrap();
    let mut config = stream("c", "acme", StreamOrigin::Config);
    config.partitions = 4;
    config.schema = None;
    config.retention_ms = None;
    config.replication_factor = None;
    config.description = Some("from the config".into());
    config.created_at = Timestamp::from_millis(T0 + 9);
    config.updated_at = Timestamp::from_millis(T0 + 9);
    store.upsert_config(&config).await.unwrap();
    let stored = store.get(&name("c")).await.unwrap().unwrap();
    assert_eq!(stored.partitions, 4);
    assert_eq!(stored.tenant, "acme");
    assert_eq!(stored.origin, StreamOrigin::Config);
    assert_eq!(stored.description.as_deref(), Some("from the config"));
    assert_eq!(stored.schema, api.schema);
    assert_eq!(stored.retention_ms, api.retention_ms);
    assert_eq!(stored.created_at, api.created_at);
    assert_eq!(stored.updated_at, Timestamp::from_millis(T0 + 9));
    // A new one is inserted whole.
    let fresh = stream("fresh", "default", StreamOrigin::Config);
    store.upsert_config(&fresh).await.unwrap();
    assert_eq!(store.get(&name("fresh")).await.unwrap(), Some(fresh));
}

// --------------------------------------------------------------------------------- harness

mod harness {
    use std::panic::AssertUnwindSafe;

    use futures::FutureExt;
    use sqlx::Connection;
    use sqlx::postgres::PgConnection;
    use tempfile::TempDir;
    use tributary_connectors::postgres::{PostgresConfig, PostgresStore};
    use tributary_connectors::sqlite::{SqliteConfig, SqliteStore};
    use tributary_connectors::streams::SqlStreamStore;
    use tributary_core::ports::StreamStore;

    /// Runs `case` against the stream store of a fresh SQLite file; then checks that the streams
    /// survive a reopen.
    pub async fn with_sqlite<F>(case: F)
    where
        F: AsyncFnOnce(&dyn StreamStore),
    {
        let dir = TempDir::new().unwrap();
        let config = SqliteConfig {
            path: dir.path().join("store.db"),
        };
        let store = SqliteStore::connect(&config).await.unwrap();
        let keys = SqlStreamStore::new(&store);
        case(&keys).await;
        let before = keys.list().await.unwrap();
        store.close().await;
        let reopened = SqliteStore::connect(&config).await.unwrap();
        let after = SqlStreamStore::new(&reopened).list().await.unwrap();
        assert_eq!(before, after, "the streams did not survive a reopen");
        reopened.close().await;
    }

    /// Runs `case` against the stream store of a fresh PostgreSQL database, dropped afterwards
    /// (even when the case panics).
    pub async fn with_postgres<F>(case: F)
    where
        F: AsyncFnOnce(&dyn StreamStore),
    {
        let url = super::common::service_env("TRIBUTARY_POSTGRES_URL");
        let database = format!("t_{}", uuid::Uuid::now_v7().simple());
        let mut admin = PgConnection::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at TRIBUTARY_POSTGRES_URL is unreachable: {e}"));
        sqlx::query(&format!("CREATE DATABASE {database}"))
            .execute(&mut admin)
            .await
            .unwrap();
        let store = PostgresStore::connect(&PostgresConfig::new(with_database(&url, &database)))
            .await
            .unwrap();
        let keys = SqlStreamStore::new(&store);
        let outcome = AssertUnwindSafe(case(&keys)).catch_unwind().await;
        store.close().await;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
            .execute(&mut admin)
            .await
            .unwrap();
        admin.close().await.unwrap();
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }

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
}

macro_rules! conformance {
    ($($case:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    super::harness::with_sqlite(async |store| super::$case(store).await).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $case() {
                    super::harness::with_postgres(async |store| super::$case(store).await).await;
                }
            )+
        }
    };
}

conformance!(
    streams_round_trip,
    a_duplicate_name_is_refused_and_changes_nothing,
    updates_and_deletes_say_whether_the_stream_exists,
    config_upserts_keep_what_the_api_set,
);
