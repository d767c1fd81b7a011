//! The end-to-end scenarios, written once and run per mode.

use std::path::Path;

use serde_json::Value;

use super::*;

/// Known events over HTTP (JSON and NDJSON, out of order, with duplicate ids) → exact
/// results for every window and key of every pipeline, and every raw event readable back.
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
    node.wait_for_truth(&sent).await;
    let mut expected_ids = ids(&sent);
    expected_ids.extend(ids(&flush_events()));
    node.wait_for_raw(&expected_ids).await;

    // The pipelines are listed with their typed result columns.
    let amounts = node.pipeline(AMOUNTS).await;
    assert_eq!(
        amounts["columns"],
        json!({"region": "string", "sales": "integer", "total": "number", "low": "number",
               "high": "number", "mean": "number"}),
        "{amounts}"
    );

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
        json!(format!("late:{COUNTS}:{STREAM}:late-1"))
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
    // The late event changed no result.
    node.wait_for_truth(&sent).await;
}

/// The node is killed with SIGKILL twice mid-stream; after each restart the results stay
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
            // once each pipeline has committed a checkpoint of this run, so that the last
            // start must resume from one (however slow the machine).
            if round > 0 {
                for pipeline in [COUNTS, AMOUNTS] {
                    let restored = wait_for_restore(&log, round, pipeline).await;
                    wait_for_epoch_after(&node, pipeline, restored).await;
                }
            }
            node.kill9();
        } else {
            node.send(&flush_events()).await;
            node.wait_for_truth(&sent).await;
            let mut expected_ids = ids(&sent);
            expected_ids.extend(ids(&flush_events()));
            node.wait_for_raw(&expected_ids).await;
        }
    }
    // The restarts really resumed from committed checkpoints (not from scratch).
    for pipeline in [COUNTS, AMOUNTS] {
        let restored = restored_epochs(&log, pipeline);
        assert_eq!(
            restored.len(),
            3,
            "three starts of {pipeline}: {restored:?}"
        );
        assert!(
            restored[2].is_some_and(|epoch| epoch > 0),
            "the last restart of {pipeline} found no checkpoint: {restored:?}"
        );
    }
}

/// The distributed deployment split by role: one ingest node, one query node, and a
/// processor that is killed with SIGKILL mid-stream and replaced. Each node serves only
/// its routes (and health everywhere); the results read through the query node are exact.
pub async fn split_roles_survive_kill9(config: &Path, dir: &Path) {
    let ingest = Node::start_roles(config, "ingest", &[], &dir.join("ingest.log")).await;
    let query = Node::start_roles(config, "gateway", &[], &dir.join("gateway.log")).await;
    let process_log = dir.join("process.log");
    let processor = Node::start_roles(config, "process", &[], &process_log).await;

    let events_path = format!("/v1/streams/{STREAM}/events");
    let results_path = format!("/v1/pipelines/{COUNTS}/results");
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
    // Killed once every pipeline has committed results (at least one checkpoint),
    // mid-stream.
    for pipeline in [COUNTS, AMOUNTS] {
        query.wait_for_any_result(pipeline).await;
    }
    processor.kill9();
    // Ingestion goes on while no processor runs; the new one catches up from the
    // last checkpoint.
    for chunk in second.chunks(30) {
        ingest.send(chunk).await;
    }
    let _processor = Node::start_roles(config, "process", &[], &process_log).await;
    ingest.send(&flush_events()).await;
    query.wait_for_truth(&events).await;
    let mut expected_ids = ids(&events);
    expected_ids.extend(ids(&flush_events()));
    query.wait_for_raw(&expected_ids).await;
    for pipeline in [COUNTS, AMOUNTS] {
        let restored = restored_epochs(&process_log, pipeline);
        assert_eq!(restored.len(), 2, "two processor starts: {restored:?}");
        assert!(
            restored[1].is_some_and(|epoch| epoch > 0),
            "the replacement found no checkpoint of {pipeline}: {restored:?}"
        );
    }
}

/// With [`LENIENT_PIPELINE`] declared: an event within the allowed lateness updates its
/// closed row, written again with a higher revision; an event later than that is a dead
/// letter and changes nothing.
pub async fn late_events_update_closed_rows(config: &Path, env: &[(String, String)], dir: &Path) {
    let node = Node::start(config, env, &dir.join("node.log")).await;
    // One key: one partition, so one shard of each pipeline, reads them all, in order.
    let event =
        |id: &str, ts: i64| json!({"id": id, "ts": ts, "key": "late", "payload": {"n": id}});
    // The last one moves the watermark to T0 + 115 s: the first minute closes.
    node.send(&[
        event("on-time-1", T0 + 5_000),
        event("on-time-2", T0 + 50_000),
        event("closer", T0 + 2 * MINUTE),
    ])
    .await;
    let closed = |row: &Value| row["closed"] == json!(true);
    let first = node.wait_for_row(LENIENT, T0, "late", closed).await;
    assert_eq!(first["count"], json!(2), "{first}");
    // Closed in the counting pipeline too (no lateness): the next event is late there.
    node.wait_for_row(COUNTS, T0, "late", closed).await;

    node.send(&[event("within-lateness", T0 + 20_000)]).await;
    let updated = node
        .wait_for_row(LENIENT, T0, "late", |row| row["count"] != json!(2))
        .await;
    assert_eq!(updated["count"], json!(3), "{updated}");
    assert_eq!(updated["closed"], json!(true), "{updated}");
    assert!(
        updated["revision"].as_u64() > first["revision"].as_u64(),
        "the update kept its revision: {first} → {updated}"
    );

    // The watermark passes the first minute's end plus the hour of lateness (T0 + 61 m):
    // seen once the minute from T0 + 61 m has closed.
    node.send(&[
        event("marker", T0 + 61 * MINUTE + 1_000),
        event("past-lateness", T0 + 63 * MINUTE),
    ])
    .await;
    node.wait_for_row(LENIENT, T0 + 61 * MINUTE, "late", closed)
        .await;
    node.send(&[event("too-late", T0 + 30_000)]).await;
    let letters = node.wait_for_dead_letters(3).await;
    let ids: BTreeSet<&str> = letters.iter().map(|l| l["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        BTreeSet::from([
            "late:counts:events:within-lateness",
            "late:counts:events:too-late",
            "late:lenient:events:too-late",
        ]),
        "{letters:?}"
    );
    assert!(
        letters.iter().all(|l| l["origin"]["kind"] == "late"),
        "{letters:?}"
    );
    let last = node.wait_for_row(LENIENT, T0, "late", closed).await;
    assert_eq!(
        (&last["count"], &last["revision"]),
        (&updated["count"], &updated["revision"]),
        "a dead letter changed the row: {updated} → {last}"
    );
}

/// A pipeline whose definition changed over its stored state is refused at start, saying
/// what to do; `tributary reset` deletes its state and results, and it recomputes them
/// under the new definition.
pub async fn changed_definition_needs_reset(config: &Path, env: &[(String, String)], dir: &Path) {
    let log = dir.join("node.log");
    let node = Node::start(config, env, &log).await;
    let events = workload(300);
    node.send(&events).await;
    node.send(&flush_events()).await;
    node.wait_for_truth(&events).await;
    node.kill9();

    let text = std::fs::read_to_string(config).unwrap();
    let changed = text.replace("payload.amount > 0", "payload.amount > 500");
    assert_ne!(text, changed);
    std::fs::write(config, changed).unwrap();
    let refused_log = dir.join("refused.log");
    let status = run_to_exit(&run_args(config, "all"), env, &refused_log).await;
    let said = std::fs::read_to_string(&refused_log).unwrap();
    assert!(
        !status.success(),
        "started over a changed definition:\n{said}"
    );
    assert!(
        said.contains("new name")
            && said.contains("tributary reset")
            && said.contains("--pipeline amounts"),
        "the refusal does not say what to do:\n{said}"
    );

    let reset = args("reset", config, &["--pipeline", AMOUNTS]);
    let status = run_to_exit(&reset, env, &log).await;
    assert!(
        status.success(),
        "reset failed: {status}\n{}",
        log_tail(&log)
    );

    let node = Node::start(config, env, &log).await;
    node.wait_for_results(&amounts_truth(&events, 500)).await;
    node.wait_for_results(&counts_truth(&events)).await;
}

/// The tasks that run `pipeline`: one shard per partition.
fn tasks(pipeline: &str) -> Vec<String> {
    // Both run as one shard per partition: `counts` is keyed like the log, `amounts`
    // repartitions through an internal stream with as many partitions as its source.
    (0..PARTITIONS)
        .map(|p| tributary_engine::shard_task(pipeline, p))
        .collect()
}

/// Per start logged in `log`, the sum of the epochs `pipeline`'s tasks restored from (as
/// its status sums its shards' epochs), or `None` while not all of them have.
fn restored_epochs(log: &Path, pipeline: &str) -> Vec<Option<u64>> {
    let tasks = tasks(pipeline);
    let mut starts: Vec<BTreeMap<String, u64>> = Vec::new();
    for line in std::fs::read_to_string(log).unwrap().lines() {
        let Ok(line) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if line["message"] == START_MARKER {
            starts.push(BTreeMap::new());
        } else if line["message"] == "task restored from its last checkpoint" {
            let (Some(task), Some(epoch), Some(start)) = (
                line["task"].as_str(),
                line["epoch"].as_u64(),
                starts.last_mut(),
            ) else {
                continue;
            };
            if tasks.iter().any(|t| t == task) {
                start.insert(task.to_owned(), epoch);
            }
        }
    }
    starts
        .iter()
        .map(|restored| (restored.len() == tasks.len()).then(|| restored.values().sum()))
        .collect()
}

/// Waits until every task of `pipeline` is restored at start `start` (from 0) logged in
/// `log`, and returns the sum of their epochs.
async fn wait_for_restore(log: &Path, start: usize, pipeline: &str) -> u64 {
    eventually(log, async || {
        let restored = restored_epochs(log, pipeline);
        restored
            .get(start)
            .copied()
            .flatten()
            .ok_or_else(|| format!("start {start} of {pipeline} not restored: {restored:?}"))
    })
    .await
}

/// Waits until the pipeline's status shows a checkpoint committed after epoch `after`
/// (the status is published after each commit).
async fn wait_for_epoch_after(node: &Node, pipeline: &str, after: u64) {
    node.eventually(async || {
        let epoch = node.pipeline(pipeline).await["status"]["epoch"].as_u64();
        if epoch.is_some_and(|epoch| epoch > after) {
            Ok(())
        } else {
            Err(format!(
                "{pipeline}: no checkpoint after epoch {after} (status epoch {epoch:?})"
            ))
        }
    })
    .await;
}
