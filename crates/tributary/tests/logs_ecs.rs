//! The log lines of a real `tributary` process, as a log shipper reads them: every line of
//! stdout is one ECS JSON object (and nothing else is on stdout, the demo's banner
//! included), with the ECS field names and JSON types: `@timestamp`, `log.level`,
//! `message`, `ecs.version`, `service.name`; the request log's `http.request.method`,
//! `url.path`, `http.response.status_code` (a number), `event.duration` (nanoseconds, a
//! number), `client.ip`, `http.request.id`, `trace.id`, `span.id`; and `error` as an
//! object (`error.message`, `error.type`), never a string: also for the error a process
//! stops on (`error.type` `config` when its config file does not load, `fatal` otherwise).

#![allow(clippy::unwrap_used)] // Test helpers outside #[test] functions unwrap too.

mod common;

use std::ffi::OsString;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::{KEY, eventually, free_port};
use serde_json::{Value, json};

/// The `ecs.version` the lines carry (as `tributary::logging::ECS_VERSION`).
const ECS_VERSION: &str = "8.11.0";

/// A `tributary` process with stdout and stderr in separate files, killed when dropped.
struct Spawned {
    child: Child,
    stdout: std::path::PathBuf,
    stderr: std::path::PathBuf,
}

impl Spawned {
    fn start(dir: &Path, args: &[OsString], port: u16) -> Self {
        let stdout = dir.join("stdout.log");
        let stderr = dir.join("stderr.log");
        let child = Command::new(env!("CARGO_BIN_EXE_tributary"))
            .args(args)
            .env("TRIBUTARY_BOOTSTRAP_API_KEY", KEY)
            .env("TRIBUTARY__HTTP__LISTEN", format!("127.0.0.1:{port}"))
            .env_remove("RUST_LOG")
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .stdin(Stdio::null())
            .spawn()
            .expect("the tributary binary starts");
        Self {
            child,
            stdout,
            stderr,
        }
    }

    /// Every line of stdout, each parsed as JSON (fails on a line that is not a JSON object).
    fn lines(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.stdout).unwrap();
        text.lines()
            .map(|line| {
                let value: Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line:?}"));
                assert!(value.is_object(), "not an object: {line}");
                value
            })
            .collect()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap()
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The fields every line has, with their types; and `error`, when present, is an object.
fn assert_ecs_base(line: &Value) {
    let timestamp = line["@timestamp"]
        .as_str()
        .unwrap_or_else(|| panic!("{line}"));
    assert!(
        chrono_like(timestamp),
        "@timestamp is not RFC 3339 UTC: {line}"
    );
    assert!(line["log"]["level"].is_string(), "{line}");
    assert!(line["message"].is_string(), "{line}");
    assert_eq!(line["ecs"]["version"], ECS_VERSION, "{line}");
    assert_eq!(line["service"]["name"], "tributary", "{line}");
    assert!(line["process"]["pid"].is_u64(), "{line}");
    if let Some(error) = line.get("error") {
        assert!(error.is_object(), "error must be an object: {line}");
        assert!(error["message"].is_string(), "{line}");
    }
    // No dotted keys left: a shipper indexes nested objects.
    assert_no_dotted_keys(line);
}

fn assert_no_dotted_keys(value: &Value) {
    if let Value::Object(map) = value {
        for (key, inner) in map {
            assert!(
                key == "@timestamp" || !key.contains('.'),
                "dotted key {key:?} in {value}"
            );
            assert_no_dotted_keys(inner);
        }
    }
}

/// `2026-11-30T19:40:24.123456789Z`.
fn chrono_like(timestamp: &str) -> bool {
    timestamp.len() >= 20
        && timestamp.ends_with('Z')
        && timestamp.as_bytes()[4] == b'-'
        && timestamp.as_bytes()[10] == b'T'
}

fn config(dir: &Path) -> std::path::PathBuf {
    common::embedded_config(dir, "\n[[streams]]\nname = \"events\"\npartitions = 1\n")
}

#[tokio::test]
async fn request_logs_are_ecs_json_lines_with_typed_fields() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let args = common::run_args(&config(dir.path()), "all");
    let node = Spawned::start(dir.path(), &args, port);
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let log = node.stdout.clone();
    eventually(&log, async || {
        match client.get(format!("{base}/readyz")).send().await {
            Ok(r) if r.status() == 200 => Ok(()),
            other => Err(format!("not ready: {other:?}")),
        }
    })
    .await;

    // Served, with the client's request id and trace context.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let served = client
        .get(format!("{base}/v1/streams"))
        .bearer_auth(KEY)
        .header("x-request-id", "ecs-test-served")
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), 200);
    // Refused: an event without a payload.
    let refused = client
        .post(format!("{base}/v1/streams/events/events"))
        .bearer_auth(KEY)
        .header("x-request-id", "ecs-test-refused")
        .json(&json!([{"key": "k"}]))
        .send()
        .await
        .unwrap();
    let refused_status = refused.status().as_u16();
    assert!((400..500).contains(&refused_status), "{refused_status}");

    let request_line = |id: &'static str| {
        let node = &node;
        async move {
            eventually(&node.stdout, async || {
                node.lines()
                    .into_iter()
                    .find(|l| l["http"]["request"]["id"] == id)
                    .ok_or_else(|| format!("no log line of request {id}"))
            })
            .await
        }
    };
    let line = request_line("ecs-test-served").await;
    assert_ecs_base(&line);
    assert_eq!(line["message"], "request served", "{line}");
    assert_eq!(line["log"]["level"], "INFO", "{line}");
    assert_eq!(line["http"]["request"]["method"], "GET", "{line}");
    assert_eq!(line["url"]["path"], "/v1/streams", "{line}");
    assert_eq!(
        line["http"]["response"]["status_code"],
        json!(200),
        "{line}"
    );
    assert!(line["event"]["duration"].as_u64().unwrap() > 0, "{line}");
    assert_eq!(line["event"]["outcome"], "success", "{line}");
    assert_eq!(line["client"]["ip"], "127.0.0.1", "{line}");
    assert!(line["client"]["port"].is_u64(), "{line}");
    assert_eq!(line["trace"]["id"], trace_id, "{line}");
    let span_id = line["span"]["id"].as_str().unwrap();
    assert_eq!(span_id.len(), 16, "{line}");
    assert!(line.get("error").is_none(), "{line}");
    assert!(line.get("latency_ms").is_none() && line.get("status").is_none());

    let line = request_line("ecs-test-refused").await;
    assert_ecs_base(&line);
    assert_eq!(line["message"], "request refused", "{line}");
    assert_eq!(line["http"]["request"]["method"], "POST", "{line}");
    assert_eq!(line["url"]["path"], "/v1/streams/events/events", "{line}");
    assert_eq!(
        line["http"]["response"]["status_code"],
        json!(refused_status),
        "{line}"
    );
    assert_eq!(line["event"]["outcome"], "failure", "{line}");
    assert!(line["event"]["duration"].is_u64(), "{line}");
    assert!(
        !line["error"]["message"].as_str().unwrap().is_empty(),
        "{line}"
    );
    assert!(line["error"]["type"].is_string(), "{line}");
    // A trace id was made up for a request without one: 32 hex digits.
    let made_up = line["trace"]["id"].as_str().unwrap();
    assert!(
        made_up.len() == 32 && made_up.chars().all(|c| c.is_ascii_hexdigit()),
        "{line}"
    );

    // Every line so far, startup lines included, is ECS.
    let lines = node.lines();
    assert!(lines.len() >= 3, "{lines:?}");
    for line in &lines {
        assert_ecs_base(line);
    }
}

#[tokio::test]
async fn a_fatal_error_is_an_ecs_error_object_on_stdout() {
    let dir = tempfile::tempdir().unwrap();
    // A pipeline reading a stream that is not declared: the config loads, the start fails.
    let config = common::embedded_config(
        dir.path(),
        "\n[[pipelines]]\nname = \"orphan\"\nsources = [\"nowhere\"]\nwindow = { type = \"tumbling\", size = \"1m\" }\n",
    );
    let args = common::run_args(&config, "all");
    let mut node = Spawned::start(dir.path(), &args, free_port());
    let log = node.stdout.clone();
    let status = eventually(&log, async || {
        node.child
            .try_wait()
            .unwrap()
            .ok_or_else(|| "still running".to_owned())
    })
    .await;
    assert!(!status.success());
    let lines = node.lines();
    let line = lines
        .iter()
        .find(|l| l["log"]["level"] == "ERROR")
        .unwrap_or_else(|| panic!("no ERROR line in {lines:?}\nstderr: {}", node.stderr()));
    assert_ecs_base(line);
    assert_eq!(line["message"], "tributary stopped on an error", "{line}");
    assert_eq!(line["error"]["type"], "fatal", "{line}");
    assert!(
        line["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nowhere"),
        "{line}"
    );
}

#[tokio::test]
async fn the_demo_writes_its_banner_to_stderr_and_only_json_to_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let data = dir.path().join("demo");
    let args: Vec<OsString> = [
        "demo",
        "--data-dir",
        data.to_str().unwrap(),
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--seconds",
        "3",
        "--rate",
        "5",
    ]
    .into_iter()
    .map(OsString::from)
    .collect();
    let mut node = Spawned::start(dir.path(), &args, port);
    let log = node.stderr.clone();
    let status = eventually(&log, async || {
        node.child
            .try_wait()
            .unwrap()
            .ok_or_else(|| "the demo still runs".to_owned())
    })
    .await;
    assert!(status.success(), "stderr: {}", node.stderr());
    let stderr = node.stderr();
    assert!(stderr.contains("Tributary demo"), "{stderr}");
    let lines = node.lines();
    assert!(!lines.is_empty(), "the demo logged nothing on stdout");
    for line in &lines {
        assert_ecs_base(line);
    }
}

#[tokio::test]
async fn a_config_file_that_does_not_load_is_one_ecs_error_event() {
    let dir = tempfile::tempdir().unwrap();
    let invalid = dir.path().join("invalid.toml");
    std::fs::write(&invalid, "[http]\nlisten_adress = \"127.0.0.1:1\"\n").unwrap();
    let missing = dir.path().join("missing.toml");
    for (config, says) in [(&invalid, "listen_adress"), (&missing, "does not exist")] {
        let args = common::run_args(config, "all");
        let mut node = Spawned::start(dir.path(), &args, free_port());
        let log = node.stdout.clone();
        let status = eventually(&log, async || {
            node.child
                .try_wait()
                .unwrap()
                .ok_or_else(|| "still running".to_owned())
        })
        .await;
        assert_eq!(status.code(), Some(1), "stderr: {}", node.stderr());
        // Plain text on stderr, as before.
        let stderr = node.stderr();
        assert!(stderr.contains(says), "{stderr}");
        // One ECS error event on stdout, and nothing else.
        let lines = node.lines();
        assert_eq!(lines.len(), 1, "{lines:?}");
        let line = &lines[0];
        assert_ecs_base(line);
        assert_eq!(line["log"]["level"], "ERROR", "{line}");
        assert_eq!(line["message"], "tributary stopped on an error", "{line}");
        assert_eq!(line["error"]["type"], "config", "{line}");
        let message = line["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with("the configuration did not load: ") && message.contains(says),
            "{line}"
        );
    }
}
