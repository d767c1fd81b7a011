//! The two end-to-end scenarios, written once and run per mode.

use std::path::Path;

use serde_json::Value;

use super::*;

/// Known events over HTTP (JSON and NDJSON, out of order, with duplicate ids) → exact
/// counts for every window and key, and every raw event readable back.
pub async fn counts_are_exact(config: &Path, env: &[(String, String)], dir: &Path) {
    let node = Node::start(config, env, &dir.join("node.log")).await;
    let events = workload(600);
    let mut sent: Vec<Value> = Vec::new();
    for (i, chunk) in events.chunks(50).enumerate() {
        if i % 2 == 0 {
            node.send(chunk).await;
        } else {
            node.send_ndjson(chunk).await;
        }
        sent.extend_from_slice(chunk);
        // A client retry: the previous chunk again, same ids.
        if i % 4 == 3 {
            node.send(chunk).await;
            sent.extend_from_slice(chunk);
        }
    }
    node.send(&flush_events()).await;
    node.wait_for_counts(&ground_truth(&sent)).await;
    let mut expected_ids = ids(&sent);
    expected_ids.extend(ids(&flush_events()));
    node.wait_for_raw(&expected_ids).await;

    // What is refused is kept with the reason: a request with an invalid event (422,
    // nothing written) and an event for a window that has closed (late, not counted).
    let invalid = node
        .post_status(&[json!({"id": "bad-ts", "ts": "yesterday", "payload": {}})])
        .await;
    assert_eq!(invalid, 422);
    let late = json!({"id": "late-1", "ts": T0 + 1_000, "key": "k0", "payload": {}});
    node.send(std::slice::from_ref(&late)).await;
    let letters = node.wait_for_dead_letters(2).await;
    let kinds: BTreeSet<(String, String)> = letters
        .iter()
        .map(|l| {
            (
                l["origin"]["kind"].as_str().unwrap().to_owned(),
                l["stream"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        BTreeSet::from([
            ("ingest".into(), STREAM.into()),
            ("late".into(), STREAM.into())
        ]),
        "{letters:?}"
    );
    let late_letter = letters
        .iter()
        .find(|l| l["origin"]["kind"] == "late")
        .unwrap();
    assert_eq!(
        late_letter["id"],
        json!(format!("late:{PIPELINE}:{STREAM}:late-1"))
    );
    assert_eq!(
        late_letter["origin"]["window_start"],
        json!("2026-01-01T00:00:00.000Z")
    );
    let rejected = letters
        .iter()
        .find(|l| l["origin"]["kind"] == "ingest")
        .unwrap();
    assert_eq!(rejected["origin"]["status"], json!(422));
    assert!(
        rejected["raw"].as_str().unwrap().contains("bad-ts"),
        "{rejected}"
    );
    // The late event changed no count.
    node.wait_for_counts(&ground_truth(&sent)).await;
}

/// The node is killed with SIGKILL twice mid-stream; after each restart the counts stay
/// exact: nothing counted twice, nothing lost.
pub async fn counts_survive_kill9(config: &Path, env: &[(String, String)], dir: &Path) {
    let log = dir.join("node.log");
    let events = workload(900);
    let mut sent: Vec<Value> = Vec::new();
    let thirds: Vec<&[Value]> = events.chunks(300).collect();

    for (round, third) in thirds.iter().enumerate() {
        let node = Node::start(config, env, &log).await;
        // After a restart, the client first retries the last request it is unsure of.
        if round > 0 {
            let retry = &thirds[round - 1][270..];
            node.send(retry).await;
            sent.extend_from_slice(retry);
        }
        for chunk in third.chunks(30) {
            node.send(chunk).await;
            sent.extend_from_slice(chunk);
        }
        if round + 1 < thirds.len() {
            // Kill it in the middle of processing: at once the first time; the second time
            // once this run has committed a checkpoint of its own, so that the last start
            // must resume from one (however slow the machine).
            if round > 0 {
                let restored = wait_for_starts(&log, round + 1).await[round];
                wait_for_epoch_after(&node, restored).await;
            }
            node.kill9();
        } else {
            node.send(&flush_events()).await;
            node.wait_for_counts(&ground_truth(&sent)).await;
            let mut expected_ids = ids(&sent);
            expected_ids.extend(ids(&flush_events()));
            node.wait_for_raw(&expected_ids).await;
        }
    }
    // The restarts really resumed from committed checkpoints (not from scratch).
    let restored_epochs = restored_epochs(&log);
    assert_eq!(
        restored_epochs.len(),
        3,
        "three starts: {restored_epochs:?}"
    );
    assert!(
        restored_epochs[2] > 0,
        "the last restart found no checkpoint: {restored_epochs:?}"
    );
}

/// The distributed deployment split by role: one ingest node, one query node, and a
/// processor that is killed with SIGKILL mid-stream and replaced. Each node serves only
/// its routes (and health everywhere); the counts read through the query node are exact.
pub async fn split_roles_survive_kill9(config: &Path, dir: &Path) {
    let ingest = Node::start_roles(config, "ingest", &[], &dir.join("ingest.log")).await;
    let query = Node::start_roles(config, "gateway", &[], &dir.join("gateway.log")).await;
    let process_log = dir.join("process.log");
    let processor = Node::start_roles(config, "process", &[], &process_log).await;

    let events_path = format!("/v1/streams/{STREAM}/events");
    let results_path = format!("/v1/pipelines/{PIPELINE}/results");
    for (node, method, path, status) in [
        (&ingest, reqwest::Method::GET, results_path.as_str(), 404),
        (&ingest, reqwest::Method::GET, "/v1/streams", 404),
        (&query, reqwest::Method::POST, events_path.as_str(), 404),
        (&query, reqwest::Method::GET, "/v1/streams", 200),
        (&processor, reqwest::Method::POST, events_path.as_str(), 404),
        (&processor, reqwest::Method::GET, "/v1/pipelines", 404),
        (&processor, reqwest::Method::GET, "/metrics", 200),
    ] {
        assert_eq!(
            node.status_of(method.clone(), path).await,
            status,
            "{method} {path} on {}",
            node.base
        );
    }

    let events = workload(600);
    let (first, second) = events.split_at(300);
    for chunk in first.chunks(30) {
        ingest.send(chunk).await;
    }
    // Killed once it has committed results (at least one checkpoint), mid-stream.
    query.wait_for_any_result().await;
    processor.kill9();
    // Ingestion goes on while no processor runs; the new one catches up from the
    // last checkpoint.
    for chunk in second.chunks(30) {
        ingest.send(chunk).await;
    }
    let _processor = Node::start_roles(config, "process", &[], &process_log).await;
    ingest.send(&flush_events()).await;
    query.wait_for_counts(&ground_truth(&events)).await;
    let mut expected_ids = ids(&events);
    expected_ids.extend(ids(&flush_events()));
    query.wait_for_raw(&expected_ids).await;
    let epochs = restored_epochs(&process_log);
    assert_eq!(epochs.len(), 2, "two processor starts: {epochs:?}");
    assert!(
        epochs[1] > 0,
        "the replacement found no checkpoint: {epochs:?}"
    );
}

/// The epochs the pipeline restored from at its first `starts` starts logged in `log`,
/// once that many are logged (fails after 60 s).
async fn wait_for_starts(log: &Path, starts: usize) -> Vec<u64> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let epochs = restored_epochs(log);
        if epochs.len() >= starts {
            return epochs;
        }
        assert!(
            Instant::now() < deadline,
            "{starts} starts not logged in 60 s: {epochs:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the pipeline's status shows a checkpoint committed after epoch `after`
/// (the status is published after each commit), or fails after 60 s.
async fn wait_for_epoch_after(node: &Node, after: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pipelines = node.get("/v1/pipelines").await;
        let epoch = pipelines["pipelines"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == PIPELINE)
            .and_then(|p| p["status"]["epoch"].as_u64());
        if epoch.is_some_and(|epoch| epoch > after) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint after epoch {after} in 60 s (status epoch {epoch:?}); log:\n{}",
            node.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The epochs the pipeline restored from, in the order of the starts logged in `log`.
fn restored_epochs(log: &Path) -> Vec<u64> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["message"] == "pipeline restored from its last checkpoint")
        .filter_map(|line| line["epoch"].as_u64())
        .collect()
}
