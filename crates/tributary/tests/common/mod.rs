//! Shared by the end-to-end tests: start `tributary` as a real process (so it can be
//! killed with SIGKILL), talk to it over HTTP, and compute the ground truth.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tributary_core::partition::partition_for;

pub const KEY: &str = "e2e-test-key";
pub const STREAM: &str = "events";
pub const PIPELINE: &str = "counts";
pub const PARTITIONS: u32 = 3;
/// 2026-01-01T00:00:00Z, minute-aligned.
pub const T0: i64 = 1_767_225_600_000;
pub const MINUTE: i64 = 60_000;

/// The streams and pipeline every e2e config declares.
pub const TOPOLOGY: &str = r#"
[engine]
batch_size = 50

[[streams]]
name = "events"
partitions = 3

[[pipelines]]
name = "counts"
sources = ["events"]
window = { type = "tumbling", size = "1m" }
max_out_of_orderness = "10s"
idle_timeout = "1h"
checkpoint_interval = "200ms"
"#;

/// A `tributary run` process.
pub struct Node {
    child: Child,
    pub base: String,
    pub client: reqwest::Client,
    log: PathBuf,
}

impl Node {
    /// Starts `tributary run --config <config>` and waits until `/readyz` answers 200.
    pub async fn start(config: &Path, env: &[(String, String)], log: &Path) -> Self {
        Self::start_roles(config, "all", env, log).await
    }

    /// Starts `tributary run --config <config> --role <roles>` and waits until `/readyz`
    /// answers 200 (every role serves it).
    pub async fn start_roles(
        config: &Path,
        roles: &str,
        env: &[(String, String)],
        log: &Path,
    ) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_tributary"))
            .args(["run", "--config"])
            .arg(config)
            .args(["--role", roles, "--log-format", "json"])
            .env("TRIBUTARY_BOOTSTRAP_API_KEY", KEY)
            .env("TRIBUTARY__HTTP__LISTEN", format!("127.0.0.1:{port}"))
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .expect("the tributary binary starts");
        let node = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
            log: log.to_owned(),
        };
        node.wait_ready().await;
        node
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = self
                .client
                .get(format!("{}/readyz", self.base))
                .send()
                .await
            {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "node not ready in 60 s; log:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// SIGKILL: no final checkpoint, no flush, nothing.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Sends events as one JSON array and asserts they were accepted.
    pub async fn send(&self, events: &[Value]) {
        let response = self
            .client
            .post(format!("{}/v1/streams/{STREAM}/events", self.base))
            .bearer_auth(KEY)
            .json(&Value::Array(events.to_vec()))
            .send()
            .await
            .unwrap();
        let status = response.status();
        assert_eq!(
            status,
            202,
            "ingest refused: {}",
            response.text().await.unwrap_or_default()
        );
    }

    /// Sends events as one JSON array and returns the status, whatever it is.
    pub async fn post_status(&self, events: &[Value]) -> u16 {
        self.client
            .post(format!("{}/v1/streams/{STREAM}/events", self.base))
            .bearer_auth(KEY)
            .json(&Value::Array(events.to_vec()))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// Waits until exactly `n` dead letters are kept (fails at once on more), and returns
    /// them, newest first.
    pub async fn wait_for_dead_letters(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let page = self.get("/v1/dead-letters?limit=100").await;
            let letters = page["dead_letters"].as_array().unwrap().clone();
            assert!(
                letters.len() <= n,
                "more dead letters than expected: {letters:?}"
            );
            if letters.len() == n {
                return letters;
            }
            assert!(
                Instant::now() < deadline,
                "{} dead letters after 60 s, {n} expected: {letters:?}\nlog:\n{}",
                letters.len(),
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Sends events as NDJSON.
    pub async fn send_ndjson(&self, events: &[Value]) {
        let body: Vec<String> = events.iter().map(Value::to_string).collect();
        let response = self
            .client
            .post(format!("{}/v1/streams/{STREAM}/events", self.base))
            .bearer_auth(KEY)
            .header("content-type", "application/x-ndjson")
            .body(body.join("\n"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            202,
            "{}",
            response.text().await.unwrap_or_default()
        );
    }

    /// The status an authenticated request gets (a POST carries one valid event).
    pub async fn status_of(&self, method: reqwest::Method, path: &str) -> u16 {
        self.client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(KEY)
            .json(&json!({"payload": {}}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    pub async fn get(&self, path: &str) -> Value {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.unwrap()
    }

    /// The pipeline's closed results in the test's time range, as (window start, key) → count.
    pub async fn closed_counts(&self) -> (BTreeMap<(i64, String), u64>, usize) {
        let body = self
            .get(&format!(
                "/v1/pipelines/{PIPELINE}/results?from={T0}&to={}&limit=10000",
                T0 + 10 * MINUTE
            ))
            .await;
        let mut counts = BTreeMap::new();
        let mut open = 0;
        for row in body["results"].as_array().unwrap() {
            if row["closed"] != json!(true) {
                open += 1;
                continue;
            }
            let start =
                tributary_core::Timestamp::parse_rfc3339(row["window_start"].as_str().unwrap())
                    .unwrap();
            counts.insert(
                (start.millis(), row["key"].as_str().unwrap().to_owned()),
                row["count"].as_u64().unwrap(),
            );
        }
        (counts, open)
    }

    /// Waits until the pipeline has committed some result (open or closed), or fails
    /// after 60 s.
    pub async fn wait_for_any_result(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (closed, open) = self.closed_counts().await;
            if !closed.is_empty() || open > 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no result committed in 60 s; log:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the closed results equal `expected` (and no window of the range is
    /// open), or fails with the difference after 90 s.
    pub async fn wait_for_counts(&self, expected: &BTreeMap<(i64, String), u64>) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let (got, open) = self.closed_counts().await;
            if &got == expected && open == 0 {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "counts differ after 90 s\n got: {got:?}\nwant: {expected:?}\nopen rows: {open}\nlog:\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Every raw event of the stream, read back page by page through the API.
    pub async fn all_raw_ids(&self) -> BTreeSet<String> {
        let mut ids = BTreeSet::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/v1/streams/{STREAM}/events?limit=37&cursor={c}"),
                None => format!("/v1/streams/{STREAM}/events?limit=37"),
            };
            let page = self.get(&path).await;
            for event in page["events"].as_array().unwrap() {
                assert!(
                    ids.insert(event["id"].as_str().unwrap().to_owned()),
                    "an event appears twice"
                );
            }
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return ids,
            }
        }
    }

    /// Waits until every id of `expected` can be read back.
    pub async fn wait_for_raw(&self, expected: &BTreeSet<String>) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let got = self.all_raw_ids().await;
            if &got == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "raw events differ: {} stored, {} expected",
                got.len(),
                expected.len()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A deterministic workload: `n` events over three minutes from `T0`, five keys,
/// timestamps jittered up to 8 s out of order (the pipeline allows 10 s).
pub fn workload(n: usize) -> Vec<Value> {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..n)
        .map(|i| {
            let base = T0 + (i as i64) * 3 * MINUTE / n as i64;
            let jitter = (next() % 8_000) as i64;
            let ts = (base - jitter).max(T0);
            json!({
                "id": format!("ev-{i}"),
                "ts": ts,
                "key": format!("k{}", next() % 5),
                "payload": {"n": i, "note": "héllo"},
            })
        })
        .collect()
}

/// Distinct events per (window start, key): the ground truth.
pub fn ground_truth(events: &[Value]) -> BTreeMap<(i64, String), u64> {
    let mut seen = BTreeSet::new();
    let mut counts = BTreeMap::new();
    for e in events {
        if !seen.insert(e["id"].as_str().unwrap().to_owned()) {
            continue;
        }
        let ts = e["ts"].as_i64().unwrap();
        *counts
            .entry((
                ts.div_euclid(MINUTE) * MINUTE,
                e["key"].as_str().unwrap().to_owned(),
            ))
            .or_insert(0) += 1;
    }
    counts
}

/// One far-future event per partition, so that every partition's watermark passes the
/// test's windows and closes them.
pub fn flush_events() -> Vec<Value> {
    (0..PARTITIONS)
        .map(|p| {
            let key = (0..)
                .map(|i| format!("flush-{i}"))
                .find(|k| partition_for(k, PARTITIONS) == p)
                .unwrap();
            json!({"id": format!("flush-{p}"), "ts": T0 + 30 * MINUTE, "key": key, "payload": {}})
        })
        .collect()
}

pub fn ids(events: &[Value]) -> BTreeSet<String> {
    events
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}
pub mod scenarios;
