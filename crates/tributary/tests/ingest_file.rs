//! `tributary ingest` (the file source) end to end: the real binary appending to the real
//! Kafka and keeping dead letters in the real document store (FerretDB), read back from the
//! topic and through `GET /v1/dead-letters`.
//!
//! The kill -9 test reads a file of `TRIBUTARY_INGEST_FILE_MB` megabytes (default 10, about
//! 40k events; CI runs the default, `TRIBUTARY_INGEST_FILE_MB=100` the issue's full size).

#![allow(clippy::unwrap_used)] // Test helpers outside #[test] functions unwrap too.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::distributed::{self, Distributed, distributed_config, service};
use common::{Node, PARTITIONS, STREAM};
use serde_json::{Value, json};

/// Runs `tributary ingest --config .. --stream events <rest>` to its end: its exit code and
/// stdout.
async fn ingest(config: &Path, rest: &[&OsString]) -> (i32, String) {
    ingest_into(STREAM, config, rest).await
}

/// Runs `tributary ingest --config .. --stream <stream> <rest>` to its end: its exit code
/// and stdout.
async fn ingest_into(stream: &str, config: &Path, rest: &[&OsString]) -> (i32, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tributary"));
    command
        .args([
            "ingest",
            "--log-format",
            "json",
            "--stream",
            stream,
            "--config",
        ])
        .arg(config)
        .args(rest)
        .stdin(Stdio::null());
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("tributary ingest: {:?}\n{stdout}\n{stderr}", output.status);
    (output.status.code().unwrap_or(-1), stdout)
}

/// Every event of the stream's topic, in partition order.
async fn events_in_topic(config: &Distributed) -> Vec<Value> {
    let topic = format!("{}{STREAM}", config.topic_prefix);
    distributed::events_in_topic(&service("TRIBUTARY_KAFKA_BROKERS"), &topic, PARTITIONS).await
}

fn by_id(events: &[Value]) -> BTreeMap<String, Value> {
    events
        .iter()
        .map(|e| (e["id"].as_str().unwrap().to_owned(), e.clone()))
        .collect()
}

fn os(path: &Path) -> OsString {
    path.as_os_str().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn ndjson_with_bad_lines_keeps_them_as_dead_letters_with_their_positions() {
    let dir = tempfile::tempdir().unwrap();
    let config = distributed_config(dir.path()).await;
    let file = dir.path().join("événements.ndjson");
    let lines = [
        r#"{"id":"a","ts":1767225600000,"key":"k1","payload":{"n":1}}"#,
        r#"{"ts":"2026-01-01T00:00:01Z","payload":{"n":2}}"#,
        r#"{"id":"c","payload":{"n": nope}}"#,
        r#"{"id":"d","payload":"not an object"}"#,
        "",
        r#"{"id":"ü-5","key":"clé 🔑","payload":{"ключ":"значение 🚀","日本":["語",{"ß":true}]}}"#,
    ];
    std::fs::write(&file, lines.join("\n")).unwrap();

    let (code, stdout) = ingest(&config.path, &[&os(&file)]).await;
    assert_eq!(code, 2, "a refused record makes the exit code 2");
    assert!(
        stdout.contains("total: accepted 3, refused 2, dead letters 2"),
        "{stdout}"
    );

    let events = by_id(&events_in_topic(&config).await);
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(events["a"]["key"], "k1");
    assert_eq!(events["a"]["payload"], json!({"n": 1}));
    // No id in the line: one derived from the file and the line, the same on every run.
    let derived: Vec<&String> = events.keys().filter(|id| id.ends_with(":2")).collect();
    assert_eq!(derived.len(), 1, "{events:?}");
    assert_eq!(events["ü-5"]["key"], "clé 🔑");
    assert_eq!(
        events["ü-5"]["payload"],
        json!({"ключ": "значение 🚀", "日本": ["語", {"ß": true}]})
    );

    // The refused lines, with their reasons, text and positions.
    let log = dir.path().join("node.log");
    let node = Node::start_roles(&config.path, "gateway", &[], &log).await;
    let letters = node.get("/v1/dead-letters").await["dead_letters"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(letters.len(), 2, "{letters:?}");
    let at_line = |line: u64| {
        letters
            .iter()
            .find(|l| l["origin"]["line"] == line)
            .unwrap_or_else(|| panic!("no dead letter for line {line}: {letters:?}"))
    };
    let malformed = at_line(3);
    assert_eq!(malformed["origin"]["kind"], "file");
    assert_eq!(malformed["origin"]["path"], file.display().to_string());
    assert_eq!(malformed["stream"], STREAM);
    assert_eq!(malformed["raw"], lines[2]);
    assert!(
        malformed["reason"]
            .as_str()
            .unwrap()
            .contains("malformed JSON"),
        "{malformed}"
    );
    let invalid = at_line(4);
    assert_eq!(invalid["raw"], lines[3]);
    assert!(
        invalid["reason"].as_str().unwrap().starts_with("payload:"),
        "{invalid}"
    );

    // Read to its end: a re-run appends nothing, and still reports what was refused.
    let (code, stdout) = ingest(&config.path, &[&os(&file)]).await;
    assert_eq!(code, 2);
    assert!(
        stdout.contains("accepted 3, refused 2 (dead letters 2) (read to its end before)"),
        "{stdout}"
    );
    assert_eq!(events_in_topic(&config).await.len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_created_through_the_api_takes_files_checked_against_its_schema() {
    let dir = tempfile::tempdir().unwrap();
    let config = distributed_config(dir.path()).await;
    let node = Node::start(&config.path, &[], &dir.path().join("node.log")).await;
    let schema = json!({
        "type": "object",
        "required": ["temperature"],
        "properties": {"temperature": {"type": "number"}}
    });
    let (status, body) = node
        .call(
            reqwest::Method::POST,
            "/v1/streams",
            common::KEY,
            Some(json!({"name": "readings", "partitions": 1, "schema": schema})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let file = dir.path().join("readings.ndjson");
    std::fs::write(
        &file,
        "{\"id\":\"r1\",\"payload\":{\"temperature\":21.5}}\n\
         {\"id\":\"r2\",\"payload\":{\"temperature\":\"warm\"}}\n",
    )
    .unwrap();
    let (code, stdout) = ingest_into("readings", &config.path, &[&os(&file)]).await;
    assert_eq!(code, 2, "{stdout}");
    assert!(
        stdout.contains("accepted 1, refused 1, dead letters 1"),
        "{stdout}"
    );
    let topic = format!("{}readings", config.topic_prefix);
    let events = distributed::events_in_topic(&service("TRIBUTARY_KAFKA_BROKERS"), &topic, 1).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["id"], "r1");
    let letters = node.wait_for_dead_letters(1).await;
    let reason = letters[0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("payload: /payload/temperature: "),
        "{reason}"
    );
    assert_eq!(letters[0]["origin"]["line"], 2);
    // A stream nobody declared or created is refused before anything is read.
    let (code, _) = ingest_into("nobody", &config.path, &[&os(&file)]).await;
    assert_ne!(code, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn gzip_and_zstd_csv_files_with_a_header_and_quoted_fields() {
    let dir = tempfile::tempdir().unwrap();
    let config = distributed_config(dir.path()).await;
    let csv = |prefix: &str| {
        format!(
            "id,ts,key,city,note\n\
             {prefix}1,1767225600000,k,\"Zürich, CH\",\"she said \"\"hi\"\"\"\n\
             {prefix}2,2026-01-01T00:00:02Z,,東京,\"two\nlines\"\n\
             ,,k,\"Paris\",plain\n"
        )
    };
    let gz = dir.path().join("in.csv.gz");
    let mut encoder = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::default(),
    );
    encoder.write_all(csv("g").as_bytes()).unwrap();
    encoder.finish().unwrap();
    let zst = dir.path().join("in.csv.zst");
    std::fs::write(&zst, zstd::encode_all(csv("z").as_bytes(), 3).unwrap()).unwrap();

    let (code, stdout) = ingest(&config.path, &[&os(&gz), &os(&zst)]).await;
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("total: accepted 6, refused 0"), "{stdout}");

    let events = by_id(&events_in_topic(&config).await);
    assert_eq!(events.len(), 6, "{events:?}");
    for prefix in ["g", "z"] {
        let first = &events[&format!("{prefix}1")];
        assert_eq!(first["ts"], "2026-01-01T00:00:00.000Z");
        assert_eq!(first["key"], "k");
        assert_eq!(
            first["payload"],
            json!({"city": "Zürich, CH", "note": "she said \"hi\""})
        );
        let second = &events[&format!("{prefix}2")];
        assert!(second.get("key").is_none(), "an empty key is none");
        assert_eq!(
            second["payload"],
            json!({"city": "東京", "note": "two\nlines"})
        );
    }
    // The rows without an id get ids derived from their files (which differ) and lines:
    // the third row starts on line 5, after the quoted newline.
    let derived: Vec<&Value> = events
        .iter()
        .filter(|(id, _)| id.ends_with(":5"))
        .map(|(_, e)| e)
        .collect();
    assert_eq!(derived.len(), 2, "{events:?}");
    assert!(derived.iter().all(|e| e["payload"]["city"] == "Paris"));
}

/// The size of the kill -9 test's file, in megabytes.
fn file_megabytes() -> usize {
    std::env::var("TRIBUTARY_INGEST_FILE_MB")
        .ok()
        .and_then(|mb| mb.parse().ok())
        .unwrap_or(10)
}

/// Writes an NDJSON file of about `megabytes` MB of events without ids; returns its events.
fn big_file(path: &Path, megabytes: usize) -> usize {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let (mut written, mut events) = (0, 0);
    let filler = "x".repeat(150);
    while written < megabytes * 1_000_000 {
        let line = format!(
            r#"{{"ts":{},"key":"user-{}","payload":{{"n":{events},"region":"eu-{}","note":"{filler}"}}}}"#,
            1_767_225_600_000_i64 + i64::try_from(events).unwrap(),
            events % 977,
            events % 7,
        );
        writeln!(out, "{line}").unwrap();
        written += line.len() + 1;
        events += 1;
    }
    out.flush().unwrap();
    events
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_killed_halfway_and_rerun_is_ingested_once() {
    const BATCH: usize = 1000;
    let dir = tempfile::tempdir().unwrap();
    let config = distributed_config(dir.path()).await;
    let file = dir.path().join("big.ndjson");
    let total = big_file(&file, file_megabytes());
    let state = dir.path().join("progress.json");
    let batch = BATCH.to_string();
    let args: Vec<OsString> = [
        "ingest",
        "--log-format",
        "json",
        "--stream",
        STREAM,
        "--batch-size",
        &batch,
        "--state",
    ]
    .iter()
    .map(OsString::from)
    .chain([os(&state), "--config".into(), os(&config.path), os(&file)])
    .collect();

    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tributary"))
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Killed once about half the file is committed.
    let committed = |state: &Path| -> u64 {
        std::fs::read(state)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
            .and_then(|v| {
                v["files"]
                    .as_object()
                    .and_then(|files| files.values().next().cloned())
            })
            .map_or(0, |progress| progress["line"].as_u64().unwrap())
    };
    let half = u64::try_from(total / 2).unwrap();
    loop {
        assert!(
            child.try_wait().unwrap().is_none(),
            "tributary ingest ended before it was killed"
        );
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "half the file not committed"
        );
        if committed(&state) >= half {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let at_kill = committed(&state);
    assert!(
        at_kill < u64::try_from(total).unwrap(),
        "killed before its end"
    );
    let first_run = started.elapsed();

    // The re-run resumes after the last committed line.
    let rerun = Instant::now();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_tributary"))
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains(&format!("(resumed after line {at_kill})")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("total: accepted {total}, refused 0")),
        "{stdout}"
    );
    let rerun = rerun.elapsed();

    // Every event, each once by id; at most the batches in flight at the kill (4) twice
    // (their ids are the same, consumers de-duplicate them).
    let ids: Vec<String> = events_in_topic(&config)
        .await
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    let distinct: std::collections::BTreeSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), total, "every event is in the topic");
    let replayed = ids.len() - distinct.len();
    assert!(replayed <= 4 * BATCH, "{replayed} events appended twice");
    let lines: std::collections::BTreeSet<u64> = distinct
        .iter()
        .map(|id| id.rsplit_once(':').unwrap().1.parse().unwrap())
        .collect();
    assert_eq!(lines, (1..=u64::try_from(total).unwrap()).collect());
    eprintln!(
        "{} MB, {total} events: killed at line {at_kill} after {first_run:?}, re-run in {rerun:?}, {replayed} replayed",
        file_megabytes()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_mode_appends_directly_and_refuses_while_a_node_holds_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::embedded_config(dir.path(), "[[streams]]\nname = \"events\"\n");
    let file = dir.path().join("a.ndjson");
    std::fs::write(
        &file,
        "{\"id\":\"e1\",\"payload\":{}}\n{\"id\":\"e2\",\"payload\":{}}\n",
    )
    .unwrap();

    // No node running: the file source appends to the redb log itself.
    let (code, stdout) = ingest(&config, &[&os(&file)]).await;
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("total: accepted 2, refused 0"), "{stdout}");

    // A node started afterwards reads them (and archives them as raw events).
    let log = dir.path().join("node.log");
    let node = Node::start(&config, &[], &log).await;
    let expected = ["e1".to_owned(), "e2".to_owned()].into_iter().collect();
    node.wait_for_raw(&expected).await;

    // While it runs, it holds the log: the command says so, and appends nothing.
    let other = dir.path().join("b.ndjson");
    std::fs::write(&other, "{\"id\":\"e3\",\"payload\":{}}\n").unwrap();
    let (code, stdout) = ingest(&config, &[&os(&other)]).await;
    assert_eq!(code, 1);
    assert!(stdout.contains("opens in one process only"), "{stdout}");
    assert!(!stdout.contains("total:"), "{stdout}");
    assert_eq!(node.all_raw_ids().await, expected);
}
