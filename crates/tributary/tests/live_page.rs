//! The live page (`GET /`) in a real browser: a `tributary run` node in the embedded mode
//! is fed events and one refused request, then headless Chromium (installed by
//! `scripts/services.sh`; `TRIBUTARY_CHROMIUM` names another binary) loads the page with the
//! key in its `#key=` fragment. The test asserts on the DOM the page's script built (each
//! pipeline with its lag, watermark and last checkpoint, a bar per key of the latest window,
//! the dead letter) and saves a screenshot under `target/`, whose path it prints.

#![allow(clippy::unwrap_used)] // Test helpers outside #[test] functions unwrap too.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use tributary_core::partition::partition_for;

use common::{AMOUNTS, COUNTS, KEY, MINUTE, Node, PARTITIONS, STREAM, TOPOLOGY};

/// How long one Chromium run may take.
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread")]
async fn the_live_page_shows_pipelines_their_latest_results_and_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::embedded_config(dir.path(), TOPOLOGY);
    let log = dir.path().join("node.log");
    let node = Node::start(&config, &[], &log).await;

    // Three keys for `counts`, one per partition (so that every part has a watermark), and
    // two regions for `amounts`, all in the current minute's window.
    let now = i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    let minute = now - now.rem_euclid(MINUTE);
    let keys: Vec<String> = (0..PARTITIONS)
        .map(|p| {
            (0..)
                .map(|i| format!("page-{i}"))
                .find(|k| partition_for(k, PARTITIONS) == p)
                .unwrap()
        })
        .collect();
    let events: Vec<Value> = keys
        .iter()
        .zip([("eu", 10), ("us", 20), ("eu", 5)])
        .map(|(key, (region, amount))| {
            json!({ "key": key, "ts": minute,
                    "payload": { "kind": "sale", "region": region, "amount": amount } })
        })
        .collect();
    node.send(&events).await;
    let refused = node
        .client
        .post(format!("{}/v1/streams/{STREAM}/events", node.base))
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let letter = node.wait_for_dead_letters(1).await.remove(0);
    for (pipeline, keys) in [(COUNTS, 3), (AMOUNTS, 2)] {
        node.eventually(async || {
            let rows = node.results(pipeline, minute..minute + 1).await;
            let status = &node.pipeline(pipeline).await["status"];
            if rows.len() == keys && status["watermark"].is_string() {
                Ok(())
            } else {
                Err(format!("{pipeline}: {rows:?}, status {status}"))
            }
        })
        .await;
    }

    let url = format!("{}/#key={KEY}", node.base);
    let dom = chromium(dir.path(), &["--dump-dom", &url]);
    assert!(
        dom.contains(r#"data-ready="true""#),
        "the page never loaded:\n{dom}"
    );
    let form = between(&dom, r#"<form id="key-form""#, ">").unwrap();
    assert!(
        form.contains("hidden"),
        "a key was given, yet asked for:\n{dom}"
    );
    for (pipeline, keys) in [(COUNTS, 3), (AMOUNTS, 2)] {
        let status = node.pipeline(pipeline).await["status"].clone();
        let card = between(
            &dom,
            &format!(r#"data-pipeline="{pipeline}""#),
            "</article>",
        )
        .unwrap_or_else(|| panic!("{pipeline} is not shown:\n{dom}"));
        let lag = field(card, "lag");
        let records = lag.split(' ').next().unwrap();
        assert!(
            records.parse::<f64>().is_ok() && lag.ends_with(" not read yet"),
            "lag {lag}"
        );
        let watermark = field(card, "watermark");
        assert!(
            watermark.starts_with(status["watermark"].as_str().unwrap())
                && watermark.contains("behind now"),
            "{pipeline}: watermark {watermark}, status {status}"
        );
        let checkpoint = field(card, "checkpoint");
        assert!(
            checkpoint.contains(" ago, epoch "),
            "{pipeline}: checkpoint {checkpoint}"
        );
        assert!(
            card.contains(&format!(r#"data-keys="{keys}""#)),
            "{pipeline}:\n{card}"
        );
        assert_eq!(
            card.matches(r#"class="bar""#).count(),
            keys,
            "{pipeline}:\n{card}"
        );
    }
    let counts = between(&dom, r#"data-pipeline="counts""#, "</article>").unwrap();
    for key in &keys {
        assert!(counts.contains(&format!(r#"data-key="{key}""#)), "{counts}");
    }
    let id = letter["id"].as_str().unwrap();
    let row = between(&dom, &format!(r#"data-id="{id}""#), "</tr>")
        .unwrap_or_else(|| panic!("dead letter {id} is not shown:\n{dom}"));
    assert!(
        row.contains(&format!(r#"<td class="stream">{STREAM}</td>"#)),
        "{row}"
    );
    assert!(!row.contains(r#"<td class="reason"></td>"#), "{row}");

    // Without a key the page asks for one (and shows no data).
    let dom = chromium(dir.path(), &["--dump-dom", &format!("{}/", node.base)]);
    let form = between(&dom, r#"<form id="key-form""#, ">").unwrap();
    assert!(!form.contains("hidden"), "the key form is hidden:\n{dom}");
    assert!(!dom.contains("data-pipeline="), "{dom}");

    let shot = screenshot_path();
    chromium(
        dir.path(),
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,900",
            &url,
        ],
    );
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(
        size > 10_000,
        "screenshot {} is {size} bytes",
        shot.display()
    );
    println!("live page screenshot: {}", shot.display());
}

/// The API reference page (`GET /docs`) in a real browser: its script renders every
/// operation of the node's `/openapi.json`, each under its tag.
#[tokio::test(flavor = "multi_thread")]
async fn the_docs_page_lists_every_operation_of_the_document() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::embedded_config(dir.path(), TOPOLOGY);
    let node = Node::start(&config, &[], &dir.path().join("node.log")).await;
    let document: Value = node
        .client
        .get(format!("{}/openapi.json", node.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    let dom = chromium(dir.path(), &["--dump-dom", &format!("{}/docs", node.base)]);
    assert!(
        dom.contains(r#"data-ready="true""#),
        "the page never loaded:\n{dom}"
    );
    let mut operations = 0;
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let Some(tag) = operation["tags"][0].as_str() else {
                continue;
            };
            let method = method.to_uppercase();
            let section = between(
                &dom,
                &format!(r#"<section class="tag" id="tag-{tag}">"#),
                "</section>",
            )
            .unwrap_or_else(|| panic!("no section for tag {tag}:\n{dom}"));
            assert!(
                section.contains(&format!(r#"data-path="{path}" data-method="{method}""#)),
                "{method} {path} is not listed under {tag}:\n{dom}"
            );
            operations += 1;
        }
    }
    assert!(operations >= 10, "{operations} operations");
    assert_eq!(
        dom.matches(r#"<details class="operation""#).count(),
        operations
    );
}

/// Where the screenshot is kept: under the target directory, to look at after the run.
fn screenshot_path() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("live_page");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("live_page.png")
}

/// Runs headless Chromium with `args` (and a private profile in `dir`) and returns its
/// standard output; fails when it cannot start, fails, or takes longer than
/// [`CHROMIUM_TIMEOUT`].
fn chromium(dir: &Path, args: &[&str]) -> String {
    let binary = std::env::var("TRIBUTARY_CHROMIUM").unwrap_or_else(|_| "chromium".to_owned());
    let profile = tempfile::tempdir_in(dir).unwrap();
    let out = dir.join("chromium.out");
    let err = dir.join("chromium.err");
    let mut child = Command::new(&binary)
        .args([
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--no-first-run",
            "--disable-dev-shm-usage",
            "--virtual-time-budget=5000",
            &format!("--user-data-dir={}", profile.path().display()),
        ])
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("{binary} does not start ({e}): run scripts/services.sh up"));
    let deadline = Instant::now() + CHROMIUM_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{binary} {args:?} did not finish within {CHROMIUM_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::fs::read_to_string(&err).unwrap_or_default();
    assert!(status.success(), "{binary} {args:?}: {status}\n{stderr}");
    std::fs::read_to_string(&out).unwrap()
}

/// The text of `haystack` after the first `start` up to the next `end`.
fn between<'a>(haystack: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = haystack.find(start)? + start.len();
    let len = haystack[from..].find(end)?;
    Some(&haystack[from..from + len])
}

/// The text of a pipeline card's `<dd class="{class}">`.
fn field<'a>(card: &'a str, class: &str) -> &'a str {
    between(card, &format!(r#"<dd class="{class}">"#), "</dd>")
        .unwrap_or_else(|| panic!("no {class} in\n{card}"))
}
