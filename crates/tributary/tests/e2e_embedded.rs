//! End to end in the embedded mode: the real binary, the embedded log, SQLite and the
//! in-process cache, driven over HTTP.

#![allow(clippy::unwrap_used)] // Test helpers outside #[test] functions unwrap too.

mod common;

use std::path::{Path, PathBuf};

use common::scenarios;
use common::{LENIENT_PIPELINE, TOPOLOGY};

/// Writes a config for the embedded adapters in `dir`, with [`TOPOLOGY`] and the
/// pipelines `extra` declares.
fn embedded_config(dir: &Path, extra: &str) -> PathBuf {
    common::embedded_config(dir, &format!("{TOPOLOGY}{extra}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_counts_are_exact() {
    let dir = tempfile::tempdir().unwrap();
    scenarios::counts_are_exact(&embedded_config(dir.path(), ""), &[], dir.path()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_counts_survive_kill9() {
    let dir = tempfile::tempdir().unwrap();
    scenarios::counts_survive_kill9(&embedded_config(dir.path(), ""), &[], dir.path()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_late_events_update_closed_rows() {
    let dir = tempfile::tempdir().unwrap();
    let config = embedded_config(dir.path(), LENIENT_PIPELINE);
    scenarios::late_events_update_closed_rows(&config, &[], dir.path()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_changed_definition_needs_reset() {
    let dir = tempfile::tempdir().unwrap();
    let config = embedded_config(dir.path(), "");
    scenarios::changed_definition_needs_reset(&config, &[], dir.path()).await;
}
