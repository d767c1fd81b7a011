//! The dead-letter retention over the embedded adapters: the engine deletes the dead
//! letters older than the retention, at start and then at every interval, keeps the newer
//! ones, and stops promptly.

#![allow(clippy::unwrap_used)] // Test helpers outside #[test] functions unwrap too.

mod common;

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tributary_core::dead_letter::{DeadLetter, DeadLetterPage};
use tributary_core::{StreamName, Timestamp};
use tributary_engine::{Engine, EngineConfig, Ports};

const HOUR: i64 = 3_600_000;

/// A dead letter refused `ago_ms` before now, with its own `offset` (and so its own id).
fn letter(offset: u64, ago_ms: i64) -> DeadLetter {
    let stream = StreamName::new("s").unwrap();
    DeadLetter {
        at: Timestamp::now().saturating_add(-ago_ms),
        ..DeadLetter::log_record(&stream, 0, offset, "not an event".into(), b"?")
    }
}

/// The ids of the stored dead letters, sorted.
async fn stored_ids(ports: &Ports) -> Vec<String> {
    let page = DeadLetterPage {
        limit: 100,
        after: None,
    };
    let mut ids: Vec<String> = ports
        .documents
        .recent_dead_letters(&page)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.id)
        .collect();
    ids.sort();
    ids
}

/// Waits until the stored dead letters are `expected` (sorted ids), or fails after 30 s.
async fn wait_for_ids(ports: &Ports, expected: &[&str]) {
    common::eventually(async || {
        let ids = stored_ids(ports).await;
        if ids == expected {
            return Ok(());
        }
        Err(format!(
            "stored dead letters {ids:?}, expected {expected:?}"
        ))
    })
    .await;
}

/// An engine with no pipeline and no archive: only the retention task, when `retention` is
/// set, pruning every 50 ms.
fn retention_only(ports: &Ports, retention: Option<Duration>) -> Engine {
    Engine::new(
        ports.clone(),
        EngineConfig {
            pipelines: Vec::new(),
            archived_streams: Vec::new(),
            archive_checkpoint_interval: Duration::from_secs(1),
            batch_size: 10,
            dead_letter_retention: retention,
        },
    )
    .with_prune_interval(Duration::from_millis(50))
}

#[tokio::test]
async fn dead_letters_older_than_the_retention_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let ports = common::embedded_ports(dir.path()).await;
    ports
        .documents
        .put_dead_letters(&[letter(1, 2 * HOUR), letter(2, 0), letter(3, 30 * HOUR)])
        .await
        .unwrap();

    let engine = retention_only(&ports, Some(Duration::from_secs(3600)));
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(engine.run(shutdown.clone()));

    // At start: the letters refused 2 h and 30 h ago go, the new one stays.
    wait_for_ids(&ports, &["log:s:0:2"]).await;

    // While running: a letter older than the retention goes at the next prune, newer ones
    // stay.
    ports
        .documents
        .put_dead_letters(&[letter(4, HOUR + 60_000), letter(5, HOUR - 60_000)])
        .await
        .unwrap();
    wait_for_ids(&ports, &["log:s:0:2", "log:s:0:5"]).await;

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("the engine stops promptly")
        .unwrap()
        .unwrap();
    assert_eq!(stored_ids(&ports).await, ["log:s:0:2", "log:s:0:5"]);
}

#[tokio::test]
async fn without_a_retention_dead_letters_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let ports = common::embedded_ports(dir.path()).await;
    ports
        .documents
        .put_dead_letters(&[letter(1, 1_000 * HOUR)])
        .await
        .unwrap();
    let engine = retention_only(&ports, None);
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(engine.run(shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    shutdown.cancel();
    running.await.unwrap().unwrap();
    assert_eq!(stored_ids(&ports).await, ["log:s:0:1"]);
}
