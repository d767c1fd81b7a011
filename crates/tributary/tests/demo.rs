//! `tributary demo` end to end: the real binary in a fresh data directory. Besides the HTTP
//! generators, the file source reads the demo's sample export into the `sensors` stream
//! before the node starts: its summary line says how many lines it accepted and refused,
//! the refused ones are the dead letters of origin `file` (with their lines), and every
//! accepted one can be read back from the stream.

#![allow(clippy::unwrap_used)] // Test helpers outside #[test] functions unwrap too.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};

use common::{KEY, eventually, free_port};
use serde_json::Value;

/// The sample's lines, and the invalid ones (see `tributary::demo`).
const SAMPLE_EVENTS: u64 = 3000;
const BAD_LINES: [u64; 3] = [500, 1500, 2500];

/// GET `path` with the demo's key; the JSON answer.
async fn get(client: &reqwest::Client, base: &str, path: &str) -> Result<Value, String> {
    let response = client
        .get(format!("{base}{path}"))
        .bearer_auth(KEY)
        .send()
        .await
        .map_err(|e| format!("GET {path}: {e}"))?;
    if response.status() != 200 {
        return Err(format!("GET {path}: {}", response.status()));
    }
    response.json().await.map_err(|e| e.to_string())
}

/// The ids of the `sensors` events that came from the sample (`payload.exported`).
async fn exported_ids(client: &reqwest::Client, base: &str) -> Result<BTreeSet<String>, String> {
    let mut ids = BTreeSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/streams/sensors/events?limit=1000&cursor={c}"),
            None => "/v1/streams/sensors/events?limit=1000".to_owned(),
        };
        let page = get(client, base, &path).await?;
        for event in page["events"].as_array().unwrap() {
            if event["payload"]["exported"] == true {
                ids.insert(event["id"].as_str().unwrap().to_owned());
            }
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return Ok(ids),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_reads_its_sample_file_through_the_file_source() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let port = free_port();
    let stderr = dir.path().join("stderr.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tributary"))
        .args(["demo", "--data-dir", data.to_str().unwrap(), "--rate", "4"])
        .args(["--listen", &format!("127.0.0.1:{port}"), "--seconds", "120"])
        .env("TRIBUTARY_BOOTSTRAP_API_KEY", KEY)
        .env_remove("RUST_LOG")
        .stdout(std::fs::File::create(dir.path().join("stdout.log")).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .stdin(Stdio::null())
        .spawn()
        .expect("the tributary binary starts");
    let sample = data.join("samples/sensors-export.ndjson");

    // The summary line, after the banner.
    let line = eventually(&stderr, async || {
        let text = std::fs::read_to_string(&stderr).unwrap();
        text.lines()
            .find(|l| l.starts_with("File source: "))
            .map(str::to_owned)
            .ok_or_else(|| "no file source line yet".to_owned())
    })
    .await;
    let accepted = SAMPLE_EVENTS - BAD_LINES.len() as u64;
    assert_eq!(
        line,
        format!(
            "File source: {} -> stream sensors: accepted {accepted}, refused 3 (dead letters 3, in /v1/dead-letters)",
            sample.display()
        )
    );
    let text = std::fs::read_to_string(&stderr).unwrap();
    assert!(text.contains("Kafka and MQTT"), "{text}");
    assert!(text.contains("docs/INGEST.md"), "{text}");
    let lines = std::fs::read_to_string(&sample).unwrap().lines().count();
    assert_eq!(lines as u64, SAMPLE_EVENTS);

    // The refused lines are dead letters of origin `file`, with their lines.
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let letters = eventually(&stderr, async || {
        let page = get(&client, &base, "/v1/dead-letters?limit=1000").await?;
        let file: Vec<Value> = page["dead_letters"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["origin"]["kind"] == "file")
            .cloned()
            .collect();
        if file.len() == BAD_LINES.len() {
            Ok(file)
        } else {
            Err(format!("{} file dead letters: {file:?}", file.len()))
        }
    })
    .await;
    let mut lines: Vec<u64> = letters
        .iter()
        .map(|l| {
            assert_eq!(l["stream"], "sensors", "{l}");
            assert_eq!(
                Path::new(l["origin"]["path"].as_str().unwrap()),
                sample,
                "{l}"
            );
            assert!(!l["reason"].as_str().unwrap().is_empty(), "{l}");
            l["origin"]["line"].as_u64().unwrap()
        })
        .collect();
    lines.sort_unstable();
    assert_eq!(lines, BAD_LINES);

    // Every accepted line is in the stream, once.
    let ids = eventually(&stderr, async || {
        let ids = exported_ids(&client, &base).await?;
        if ids.len() as u64 == accepted {
            Ok(ids)
        } else {
            Err(format!(
                "{} of {accepted} sample events read back",
                ids.len()
            ))
        }
    })
    .await;
    assert_eq!(ids.len() as u64, accepted);

    // Stopped with SIGTERM, it exits cleanly.
    let pid = rustix::process::Pid::from_child(&child);
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = eventually(&stderr, async || {
        child
            .try_wait()
            .unwrap()
            .ok_or_else(|| "the demo still runs".to_owned())
    })
    .await;
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&stderr).unwrap()
    );
}
