//! End to end in the distributed mode: the real binary against real Kafka, PostgreSQL,
//! FerretDB (MongoDB protocol) and Redis, whose addresses come from the environment
//! (`scripts/services.sh up` prints them). Each test gets its own topics, database and
//! key prefix ([`distributed_config`]).

#![allow(clippy::unwrap_used)] // Test helpers outside #[test] functions unwrap too.

mod common;

use common::distributed::distributed_config;
use common::scenarios;

#[tokio::test(flavor = "multi_thread")]
async fn distributed_counts_are_exact() {
    let dir = tempfile::tempdir().unwrap();
    let config = distributed_config(dir.path()).await;
    scenarios::counts_are_exact(&config.path, &[], dir.path()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn distributed_counts_survive_kill9() {
    let dir = tempfile::tempdir().unwrap();
    let config = distributed_config(dir.path()).await;
    scenarios::counts_survive_kill9(&config.path, &[], dir.path()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn distributed_split_roles_survive_kill9() {
    let dir = tempfile::tempdir().unwrap();
    let config = distributed_config(dir.path()).await;
    scenarios::split_roles_survive_kill9(&config.path, dir.path()).await;
}
