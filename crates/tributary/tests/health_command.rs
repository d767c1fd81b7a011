//! `tributary health`, the container image's health check: exits 0 when a running node's
//! `/healthz` answers 200, and fails when nothing answers.

#![allow(clippy::unwrap_used)] // Test helpers outside #[test] functions unwrap too.

mod common;

use std::ffi::OsString;

use common::{Node, free_port, run_to_exit};

fn health_args(url: &str) -> Vec<OsString> {
    ["health", "--url", url, "--timeout-secs", "2"]
        .into_iter()
        .map(OsString::from)
        .collect()
}

#[tokio::test]
async fn health_exits_0_on_a_live_node_and_fails_on_a_closed_port() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::embedded_config(
        dir.path(),
        "\n[[streams]]\nname = \"events\"\npartitions = 1\n",
    );
    let log = dir.path().join("tributary.log");
    let node = Node::start(&config, &[], &log).await;

    let live = format!("{}/healthz", node.base);
    let status = run_to_exit(&health_args(&live), &[], &log).await;
    assert!(status.success(), "{status:?}");

    let closed = format!("http://127.0.0.1:{}/healthz", free_port());
    let status = run_to_exit(&health_args(&closed), &[], &log).await;
    assert!(!status.success(), "{status:?}");

    let missing = format!("{}/no-such-page", node.base);
    let status = run_to_exit(&health_args(&missing), &[], &log).await;
    assert!(!status.success(), "a 404 is not healthy: {status:?}");
}
