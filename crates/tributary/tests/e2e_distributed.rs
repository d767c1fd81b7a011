//! End to end in the distributed mode: the real binary against real Kafka, PostgreSQL,
//! FerretDB (MongoDB protocol) and Redis, whose addresses come from the environment
//! (`scripts/services.sh up` prints them). Each test gets its own topics, database and
//! key prefix.

#![allow(clippy::unwrap_used)] // Test helpers outside #[test] functions unwrap too.

mod common;

use std::path::{Path, PathBuf};

use common::TOPOLOGY;
use common::scenarios;
use sqlx::Connection;

fn service(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: start the services with `eval \"$(scripts/services.sh up)\"`")
    })
}

/// Writes a config for fresh, isolated resources on the real services.
async fn distributed_config(dir: &Path) -> PathBuf {
    let run = uuid::Uuid::now_v7().simple().to_string();
    let postgres = service("TRIBUTARY_POSTGRES_URL");
    let mut admin = sqlx::PgConnection::connect(&postgres)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {postgres} is unreachable: {e}"));
    let database = format!("e2e_{run}");
    sqlx::query(&format!("CREATE DATABASE {database}"))
        .execute(&mut admin)
        .await
        .unwrap();
    let base = postgres.rsplit_once('/').unwrap().0;
    let config = format!(
        r#"
[log]
type = "kafka"
brokers = "{brokers}"
topic_prefix = "e2e-{run}."

[analytics]
type = "postgres"
url = "{base}/{database}"

[documents]
type = "mongodb"
url = "{mongo}"
database = "e2e_{run}"

[cache]
type = "redis"
url = "{redis}"
key_prefix = "e2e-{run}:"
{TOPOLOGY}"#,
        brokers = service("TRIBUTARY_KAFKA_BROKERS"),
        mongo = service("TRIBUTARY_MONGODB_URL"),
        redis = service("TRIBUTARY_REDIS_URL"),
    );
    let path = dir.join("tributary.toml");
    std::fs::write(&path, config).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn distributed_counts_are_exact() {
    let dir = tempfile::tempdir().unwrap();
    let config = distributed_config(dir.path()).await;
    scenarios::counts_are_exact(&config, &[], dir.path()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn distributed_counts_survive_kill9() {
    let dir = tempfile::tempdir().unwrap();
    let config = distributed_config(dir.path()).await;
    scenarios::counts_survive_kill9(&config, &[], dir.path()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn distributed_split_roles_survive_kill9() {
    let dir = tempfile::tempdir().unwrap();
    let config = distributed_config(dir.path()).await;
    scenarios::split_roles_survive_kill9(&config, dir.path()).await;
}
