//! `/metrics` as Prometheus takes it: a real Prometheus (the Debian package's binary,
//! installed by scripts/services.sh) scrapes a running `tributary`, and its HTTP API
//! answers for a histogram's buckets, a counter registered at 0, a base-unit gauge and the
//! process metrics. The exposition itself has a `# HELP` for every metric, no summary, and
//! passes `promtool check metrics`; the rules in deploy/prometheus/ pass `promtool check
//! rules` and their unit tests (`promtool test rules`).

#![allow(clippy::unwrap_used)] // Test helpers outside #[test] functions unwrap too.

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Node, TOPOLOGY, eventually, free_port};
use serde_json::Value;

/// deploy/prometheus/ in the repository.
fn rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/prometheus")
}

/// Runs `promtool args...` and returns its output; fails the test when it fails.
fn promtool(args: &[&str], stdin: Option<&str>, dir: &Path) -> String {
    let mut child = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs (scripts/services.sh up installs it)");
    let mut input = child.stdin.take().unwrap();
    input
        .write_all(stdin.unwrap_or_default().as_bytes())
        .unwrap();
    drop(input);
    let output = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn the_rules_pass_promtool_and_their_unit_tests() {
    let dir = rules_dir();
    let checked = promtool(&["check", "rules", "tributary-rules.yml"], None, &dir);
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tested = promtool(&["test", "rules", "tributary-rules.test.yml"], None, &dir);
    assert!(tested.contains("SUCCESS"), "{tested}");
}

/// A Prometheus process, killed when dropped.
struct Prometheus {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Prometheus {
    /// Starts `prometheus` on a free loopback port, scraping `target` (host:port) every
    /// second.
    fn start(dir: &Path, target: &str) -> Self {
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: tributary\n    metrics_path: /metrics\n\
                 \x20   static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let log = dir.join("prometheus.log");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.join("prometheus.err")).unwrap())
            .stdin(Stdio::null())
            .spawn()
            .expect("prometheus runs (scripts/services.sh up installs it)");
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log: dir.join("prometheus.err"),
        }
    }

    /// The result vector of an instant query, once it is not empty.
    async fn query(&self, client: &reqwest::Client, query: &str) -> Vec<Value> {
        eventually(&self.log, async || {
            let response = client
                .get(format!("{}/api/v1/query", self.base))
                .query(&[("query", query)])
                .send()
                .await
                .map_err(|e| format!("prometheus not answering: {e}"))?;
            let body: Value = response.json().await.map_err(|e| e.to_string())?;
            assert_ne!(body["status"], "error", "{query}: {body}");
            let result = body["data"]["result"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if result.is_empty() {
                Err(format!("no series yet for {query}"))
            } else {
                Ok(result)
            }
        })
        .await
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The sample value of a vector element.
fn value(sample: &Value) -> f64 {
    sample["value"][1].as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn prometheus_scrapes_histograms_zero_counters_and_process_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::embedded_config(dir.path(), TOPOLOGY);
    let node = Node::start(&config, &[], &dir.path().join("tributary.log")).await;
    node.send(&common::workload(60)).await;

    // The exposition itself.
    let text = node.get_text("/metrics").await;
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let name = line.split_whitespace().nth(2).unwrap();
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "no # HELP for {name}"
        );
        assert!(!line.ends_with(" summary"), "a summary: {line}");
    }
    assert!(text.contains("# TYPE tributary_ingest_duration_seconds histogram"));
    assert!(text.contains("process_resident_memory_bytes"), "{text}");
    assert!(!text.contains("watermark_ms"), "{text}");
    promtool(&["check", "metrics"], Some(&text), dir.path());

    let target = node.base.trim_start_matches("http://").to_owned();
    let prometheus = Prometheus::start(dir.path(), &target);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();

    let up = prometheus.query(&client, r#"up{job="tributary"}"#).await;
    assert_eq!(value(&up[0]), 1.0, "{up:?}");

    // A histogram: its buckets, cumulative up to +Inf = the count of requests.
    let buckets = prometheus
        .query(
            &client,
            r#"tributary_ingest_duration_seconds_bucket{stream="events"}"#,
        )
        .await;
    let les: Vec<&str> = buckets
        .iter()
        .map(|b| b["metric"]["le"].as_str().unwrap())
        .collect();
    assert!(les.contains(&"0.05") && les.contains(&"+Inf"), "{les:?}");
    let inf = buckets
        .iter()
        .find(|b| b["metric"]["le"] == "+Inf")
        .unwrap();
    assert!(value(inf) >= 1.0, "{inf}");

    // Counters present at 0 before their first increment.
    let late = prometheus
        .query(&client, r#"tributary_dead_letters_total{origin="file"}"#)
        .await;
    assert_eq!(value(&late[0]), 0.0, "{late:?}");
    let duplicates = prometheus
        .query(
            &client,
            r#"tributary_pipeline_events_total{pipeline="counts",outcome="filtered"}"#,
        )
        .await;
    assert_eq!(value(&duplicates[0]), 0.0, "{duplicates:?}");

    // Process metrics, in bytes and seconds (`process_cpu_seconds_total` counts whole
    // seconds: metrics-process keeps it an integer counter).
    let memory = prometheus
        .query(&client, "process_resident_memory_bytes")
        .await;
    assert!(value(&memory[0]) > 1_000_000.0, "{memory:?}");
    let cpu = prometheus.query(&client, "process_cpu_seconds_total").await;
    assert!(value(&cpu[0]) >= 0.0, "{cpu:?}");
    let files = prometheus.query(&client, "process_open_fds").await;
    assert!(value(&files[0]) >= 3.0, "{files:?}");
    let started = prometheus
        .query(&client, "process_start_time_seconds")
        .await;
    assert!((1.7e9..2.0e9).contains(&value(&started[0])), "{started:?}");

    // Every query of the Grafana dashboard is valid PromQL, and the window latency panel
    // has data.
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(rules_dir().join("../grafana/tributary-dashboard.json")).unwrap(),
    )
    .unwrap();
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|panel| panel["targets"].as_array().cloned().unwrap_or_default())
        .map(|target| {
            target["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "1m")
                .replace("$job", ".*")
        })
        .collect();
    assert!(exprs.len() >= 15, "{exprs:?}");
    for expr in &exprs {
        let body: Value = client
            .get(format!("{}/api/v1/query", prometheus.base))
            .query(&[("query", expr.as_str())])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body["status"], "success", "{expr}: {body}");
    }

    // The watermark in seconds since the epoch (the workload's events are of 2026).
    let watermark = prometheus
        .query(
            &client,
            r#"tributary_pipeline_watermark_timestamp_seconds{pipeline="counts"}"#,
        )
        .await;
    let seconds = value(&watermark[0]);
    assert!(
        (1.7e9..2.0e9).contains(&seconds),
        "not seconds since the epoch: {seconds}"
    );
}
