//! The conformance suite of the `KeyStore` port: every scenario is written once, against
//! `&dyn KeyStore`, and runs against the embedded SQLite store (`sqlite::*`) and against
//! PostgreSQL (`postgres::*`).
//!
//! The PostgreSQL tests need `TRIBUTARY_POSTGRES_URL` (a role allowed to create databases;
//! `eval "$(bash scripts/services.sh env)"`) and fail when it is missing or unreachable.
//! Each test works in a database of its own, created for it and dropped after it; each
//! SQLite test in a file of its own in a temporary directory.

#![allow(clippy::unwrap_used)] // Test helpers outside #[test] functions unwrap too.

mod common;

use std::collections::BTreeSet;

use futures::future::join_all;
use tributary_core::Timestamp;
use tributary_core::ports::{KeyStore, PortError, Scope, StoredKey};

/// 2023-11-14T22:13:20Z.
const T0: i64 = 1_700_000_000_000;

fn key(id: &str, tenant: &str, created: i64) -> StoredKey {
    StoredKey {
        id: id.to_owned(),
        secret_hash: [id.len() as u8; 32],
        scopes: BTreeSet::from([Scope::Ingest, Scope::Read]),
        tenant: tenant.to_owned(),
        description: Some(format!("key {id}")),
        created_at: Timestamp::from_millis(created),
        expires_at: None,
        revoked_at: None,
    }
}

async fn keys_round_trip(store: &dyn KeyStore) {
    let mut full = key("k1", "default", T0 + 1);
    full.secret_hash = std::array::from_fn(|i| i as u8);
    full.scopes = BTreeSet::from([Scope::Admin]);
    full.expires_at = Some(Timestamp::from_millis(T0 + 3_600_000));
    store.create(&full).await.unwrap();
    let mut bare = key("k2", "default", T0 + 2);
    bare.description = None;
    store.create(&bare).await.unwrap();
    assert_eq!(store.get("k1").await.unwrap(), Some(full));
    assert_eq!(store.get("k2").await.unwrap(), Some(bare));
    assert_eq!(store.get("k3").await.unwrap(), None);
    // A prefix or another case of an id is another id.
    assert_eq!(store.get("k").await.unwrap(), None);
    assert_eq!(store.get("K1").await.unwrap(), None);
}

async fn a_duplicate_id_is_refused_and_changes_nothing(store: &dyn KeyStore) {
    let first = key("dup", "default", T0);
    store.create(&first).await.unwrap();
    let mut second = key("dup", "other", T0 + 5);
    second.secret_hash = [9; 32];
    common::assert_refused(store.create(&second).await);
    assert_eq!(store.get("dup").await.unwrap(), Some(first));
}

async fn lists_hold_a_tenants_keys_newest_first(store: &dyn KeyStore) {
    for (id, tenant, created) in [
        ("a", "default", T0),
        ("c", "default", T0 + 10),
        ("b", "default", T0 + 10),
        ("x", "other", T0 + 20),
    ] {
        store.create(&key(id, tenant, created)).await.unwrap();
    }
    let ids = |keys: Vec<StoredKey>| keys.into_iter().map(|k| k.id).collect::<Vec<_>>();
    assert_eq!(ids(store.list("default").await.unwrap()), ["c", "b", "a"]);
    assert_eq!(ids(store.list("other").await.unwrap()), ["x"]);
    assert!(store.list("nobody").await.unwrap().is_empty());
}

async fn revocation_keeps_the_first_time_and_the_row(store: &dyn KeyStore) {
    store.create(&key("r", "default", T0)).await.unwrap();
    assert!(
        store
            .revoke("r", Timestamp::from_millis(T0 + 7))
            .await
            .unwrap()
    );
    assert!(
        store
            .revoke("r", Timestamp::from_millis(T0 + 99))
            .await
            .unwrap()
    );
    let stored = store.get("r").await.unwrap().unwrap();
    assert_eq!(stored.revoked_at, Some(Timestamp::from_millis(T0 + 7)));
    assert!(!stored.is_active(Timestamp::from_millis(T0)));
    assert_eq!(store.list("default").await.unwrap(), [stored]);
    assert!(
        !store
            .revoke("missing", Timestamp::from_millis(T0))
            .await
            .unwrap()
    );
}

async fn concurrent_creates_of_one_id_one_wins(store: &dyn KeyStore) {
    let attempts: Vec<StoredKey> = (0..8_u8)
        .map(|n| {
            let mut k = key("race", "default", T0 + i64::from(n));
            k.secret_hash = [n; 32];
            k
        })
        .collect();
    let outcomes = join_all(attempts.iter().map(|k| store.create(k))).await;
    let won: Vec<usize> = outcomes
        .iter()
        .enumerate()
        .filter(|(_, o)| o.is_ok())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(won.len(), 1, "{outcomes:?}");
    for outcome in outcomes.into_iter().filter(Result::is_err) {
        assert!(matches!(outcome, Err(PortError::Refused { .. })));
    }
    assert_eq!(
        store.get("race").await.unwrap().unwrap().secret_hash,
        attempts[won[0]].secret_hash
    );
}

// --------------------------------------------------------------------------------- harness

mod harness {
    use std::panic::AssertUnwindSafe;

    use futures::FutureExt;
    use sqlx::Connection;
    use sqlx::postgres::PgConnection;
    use tempfile::TempDir;
    use tributary_connectors::keys::SqlKeyStore;
    use tributary_connectors::postgres::{PostgresConfig, PostgresStore};
    use tributary_connectors::sqlite::{SqliteConfig, SqliteStore};
    use tributary_core::ports::KeyStore;

    /// Runs `case` against the key store of a fresh SQLite file; then checks that the keys
    /// survive a reopen.
    pub async fn with_sqlite<F>(case: F)
    where
        F: AsyncFnOnce(&dyn KeyStore),
    {
        let dir = TempDir::new().unwrap();
        let config = SqliteConfig {
            path: dir.path().join("store.db"),
        };
        let store = SqliteStore::connect(&config).await.unwrap();
        let keys = SqlKeyStore::new(&store);
        case(&keys).await;
        let before = keys.list("default").await.unwrap();
        store.close().await;
        let reopened = SqliteStore::connect(&config).await.unwrap();
        let after = SqlKeyStore::new(&reopened).list("default").await.unwrap();
        assert_eq!(before, after, "the keys did not survive a reopen");
        reopened.close().await;
    }

    /// Runs `case` against the key store of a fresh PostgreSQL database, dropped afterwards
    /// (even when the case panics).
    pub async fn with_postgres<F>(case: F)
    where
        F: AsyncFnOnce(&dyn KeyStore),
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
        let keys = SqlKeyStore::new(&store);
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
    keys_round_trip,
    a_duplicate_id_is_refused_and_changes_nothing,
    lists_hold_a_tenants_keys_newest_first,
    revocation_keeps_the_first_time_and_the_row,
    concurrent_creates_of_one_id_one_wins,
);
