//! The exactly-once test with several processors: the real binary against real Kafka,
//! PostgreSQL, FerretDB and Redis (addresses from the environment, as in
//! `e2e_distributed.rs`), one `--role ingest,gateway` node and three `--role process`
//! processes sharing every pipeline's shards through the pipeline's consumer group.
//!
//! While the known workload is sent (out of order, client retries re-sending requests with
//! the same ids, a few late events), random processors are killed with SIGKILL at random
//! moments and restarted after a random pause (at least [`KILLS`] times), a fourth
//! processor joins and one leaves gracefully (SIGTERM). At the end the closed results of
//! both pipelines equal the ground truth exactly, every late event is one dead letter and
//! counted in the status, every raw event is stored exactly once (read in passes over the
//! document store's collection), and every processor still running never stopped by
//! itself.
//!
//! Settings (environment): `TRIBUTARY_SCALE_EVENTS` (default [`DEFAULT_EVENTS`]; 1,000,000
//! for the full run, see README.md), `TRIBUTARY_SCALE_SEND_SECS` (how long the sending is
//! spread over, default [`DEFAULT_SEND_SECS`]; longer if the node cannot take them that
//! fast) and `TRIBUTARY_SCALE_SEED` (the random generator's seed; printed, a fresh one by
//! default). The test prints what it measured: the kills, and how long each moved or
//! orphaned task went without an owner (`unowned_ms` of the logs' "task restored from its
//! last checkpoint").

#![allow(clippy::unwrap_used)] // Test helpers outside #[test] functions unwrap too.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::distributed::distributed_config;
use common::{
    AMOUNTS, COUNTS, Node, START_MARKER, STREAM, T0, flush_events, ids, log_tail, workload,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tributary_connectors::mongodb::{MongoConfig, MongoStore};

/// Events of the workload (before retries) by default: the test takes about two minutes
/// on two cores with a debug build.
const DEFAULT_EVENTS: usize = 20_000;
/// Seconds the sending is spread over by default.
const DEFAULT_SEND_SECS: f64 = 60.0;
/// Processors at the start (and at the end: one joins, one leaves).
const PROCESSORS: usize = 3;
/// SIGKILLs at least.
const KILLS: usize = 12;
/// Late events sent.
const LATE: usize = 6;
/// Of them, sent again (a client's retry, same ids): kept as one dead letter each, but
/// counted as late at each arrival in the status's `late_events` (a late event is not
/// remembered as seen, so its retry is late again, not a duplicate).
const LATE_RESENT: usize = 3;
/// The processors' group session timeout: how long a killed one keeps its tasks (the
/// broker's minimum).
const SESSION_TIMEOUT: &str = "6s";
/// The share of the workload sent before the fourth processor joins, one leaves, and the
/// late events are sent.
const JOIN_AT: f64 = 0.3;
const LEAVE_AT: f64 = 0.6;
const LATE_AT: f64 = 0.85;

#[tokio::test(flavor = "multi_thread")]
async fn processors_killed_added_and_removed_keep_results_exact() {
    let settings = Settings::from_env();
    eprintln!(
        "scale_out: {} events over {:.0} s, seed {} (rerun with TRIBUTARY_SCALE_SEED={})",
        settings.events, settings.send_secs, settings.seed, settings.seed
    );
    let began = Instant::now();
    let kept = KeptOnFailure(Some(tempfile::tempdir().unwrap()));
    let dir = kept.path();
    let config = distributed_config(dir).await;
    let ingest =
        Node::start_roles(&config.path, "ingest,gateway", &[], &dir.join("ingest.log")).await;
    let mut processors = Processors::new(&config.path, dir, settings.seed);
    for _ in 0..PROCESSORS {
        processors.add().await;
    }

    let events = workload(settings.events);
    let late = late_events();
    let progress = Progress::default();
    let mut sender = Sender {
        node: &ingest,
        rng: StdRng::seed_from_u64(settings.seed.wrapping_add(1)),
        progress: &progress,
    };
    let ((sent, retried), ()) = tokio::join!(
        sender.send(&events, &late, settings.send_secs),
        processors.chaos(&progress, settings.send_secs),
    );
    let sending = began.elapsed();
    ingest.send(&flush_events()).await;

    // Exact results, however the tasks moved: nothing lost, nothing counted twice.
    let within = settings.within();
    ingest.wait_for_truth_within(&sent, within).await;
    let caught_up = began.elapsed();
    // Every raw event once (the scan fails on an id stored twice), the late ones too.
    let mut expected_ids = ids(&sent);
    expected_ids.extend(ids(&flush_events()));
    expected_ids.extend(ids(&late));
    // Read in one pass over the collection, not listed through the API (tested elsewhere):
    // FerretDB scans and sorts the whole collection for each page of the newest-first
    // listing, which took two minutes for these 22,000 events in pages of 1000.
    wait_for_raw_scanned(&config.path, &expected_ids, within).await;
    let archived = began.elapsed();
    // Every late event is one dead letter (of `counts`: `amounts` filters them out) and
    // each arrival one count in the status, however the tasks moved (a task restored from
    // an earlier checkpoint reads some again); nothing else was refused. Every late event
    // precedes the flush events in its partition, so it was read once the results are
    // exact.
    let letters = ingest.wait_for_dead_letters(LATE).await;
    let got: BTreeSet<&str> = letters.iter().map(|l| l["id"].as_str().unwrap()).collect();
    let want: BTreeSet<String> = ids(&late)
        .iter()
        .map(|id| format!("late:{COUNTS}:{STREAM}:{id}"))
        .collect();
    assert_eq!(
        got,
        want.iter().map(String::as_str).collect(),
        "{letters:?}"
    );
    let late_counts = [(COUNTS, LATE + LATE_RESENT), (AMOUNTS, 0)];
    for (pipeline, late_events) in late_counts {
        ingest
            .eventually(async || {
                let status = &ingest.pipeline(pipeline).await["status"];
                if status["late_events"] == json!(late_events) {
                    Ok(())
                } else {
                    Err(format!(
                        "{pipeline}: late_events {} (want {late_events})",
                        status["late_events"]
                    ))
                }
            })
            .await;
    }
    processors.assert_running();
    // The results and counters stay exact after everything settled.
    ingest.wait_for_truth(&sent).await;
    for (pipeline, late_events) in late_counts {
        let status = &ingest.pipeline(pipeline).await["status"];
        assert_eq!(
            status["late_events"],
            json!(late_events),
            "{pipeline}: {status}"
        );
    }

    let report = processors.report();
    eprintln!(
        "scale_out: exact. {} events sent ({} with retries, {retried} requests retried), {LATE} \
         late ({LATE_RESENT} sent twice); {} SIGKILLs, {} restarts, 1 processor added, 1 removed (SIGTERM); sending done after \
         {:.1} s, results exact after {:.1} s, raw events archived after {:.1} s, all checked \
         after {:.1} s",
        settings.events,
        sent.len(),
        processors.kills,
        processors.restarts,
        sending.as_secs_f64(),
        caught_up.as_secs_f64(),
        archived.as_secs_f64(),
        began.elapsed().as_secs_f64(),
    );
    eprintln!("scale_out: {report}");
}

/// The test's directory (config, every process's log), kept when the test fails.
struct KeptOnFailure(Option<tempfile::TempDir>);

impl KeptOnFailure {
    fn path(&self) -> &Path {
        self.0.as_ref().unwrap().path()
    }
}

impl Drop for KeptOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(dir) = self.0.take()
        {
            eprintln!("scale_out: the logs are kept in {}", dir.keep().display());
        }
    }
}

/// The test's settings, from the environment.
#[derive(Debug)]
struct Settings {
    events: usize,
    send_secs: f64,
    seed: u64,
}

impl Settings {
    fn from_env() -> Self {
        let fresh = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        #[allow(clippy::cast_possible_truncation)] // Any 64 bits of the time will do.
        let fresh = fresh as u64;
        Self {
            events: env_or("TRIBUTARY_SCALE_EVENTS", DEFAULT_EVENTS),
            send_secs: env_or("TRIBUTARY_SCALE_SEND_SECS", DEFAULT_SEND_SECS),
            seed: env_or("TRIBUTARY_SCALE_SEED", fresh),
        }
    }

    /// How long the processors may take to catch up after the sending, and the raw events
    /// to be read back: 90 s, plus a second per 1000 events.
    fn within(&self) -> Duration {
        common::EVENTUALLY + Duration::from_millis(self.events as u64)
    }
}

/// The value of `var`, or `default` when it is not set.
fn env_or<T: FromStr>(var: &str, default: T) -> T {
    match std::env::var(var) {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("{var}={text:?} is not a valid value")),
        Err(_) => default,
    }
}

/// Late events for the first minute, sent once the workload is well past it: every
/// partition's watermark (in [`COUNTS`], keyed like the log) has closed that minute, so
/// each is late there whichever processor reads it. Not sales: [`AMOUNTS`], whose
/// watermark follows the repartition tasks' progress, filters them out before windows.
fn late_events() -> Vec<Value> {
    (0..LATE)
        .map(|i| {
            json!({
                "id": format!("late-{i}"),
                "ts": T0 + 1_000 * (i as i64 + 1),
                "key": format!("k{}", i % 5),
                "payload": {"kind": "other", "late": true},
            })
        })
        .collect()
}

/// Waits until the raw events in the document store of `config` are `expected`, each
/// once, reading the whole collection in one pass (`events_{stream}`, as the MongoDB
/// adapter names it), failing after `within`.
async fn wait_for_raw_scanned(config: &Path, expected: &BTreeSet<String>, within: Duration) {
    let config: toml::Value = toml::from_str(&std::fs::read_to_string(config).unwrap()).unwrap();
    let documents = &config["documents"];
    let store = MongoStore::connect(&MongoConfig {
        database: documents["database"].as_str().unwrap().to_owned(),
        ..MongoConfig::new(documents["url"].as_str().unwrap())
    })
    .await
    .unwrap();
    let collection = store
        .database()
        .collection::<Value>(&format!("events_{STREAM}"));
    let deadline = Instant::now() + within;
    loop {
        let mut stored = BTreeSet::new();
        let mut cursor = collection.find(Default::default()).await.unwrap();
        while cursor.advance().await.unwrap() {
            let document: Value = cursor.deserialize_current().unwrap();
            let id = document["_id"].as_str().unwrap().to_owned();
            assert!(stored.insert(id), "a raw event is stored twice: {document}");
        }
        if &stored == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not within {within:?}: {} raw events stored, {} expected",
            stored.len(),
            expected.len()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// How far the sending is, shared with the chaos.
#[derive(Debug, Default)]
struct Progress {
    /// The workload's events sent.
    sent: AtomicUsize,
    total: AtomicUsize,
    done: AtomicBool,
}

impl Progress {
    #[allow(clippy::cast_precision_loss)]
    fn fraction(&self) -> f64 {
        if self.done.load(Ordering::Relaxed) {
            return 1.0;
        }
        let total = self.total.load(Ordering::Relaxed).max(1);
        self.sent.load(Ordering::Relaxed) as f64 / total as f64
    }

    fn done(&self) -> bool {
        self.done.load(Ordering::Relaxed)
    }
}

/// The client: sends the workload to the ingest node.
struct Sender<'a> {
    node: &'a Node,
    rng: StdRng,
    progress: &'a Progress,
}

impl Sender<'_> {
    /// Sends `events` in order, paced over `secs`, each request retried (sent again, same
    /// ids) one time in ten, and `late` (some twice) once [`LATE_AT`] of them are sent.
    /// Returns what was sent (without `late`) and the number of retried requests.
    ///
    /// A request holds at most 1/400th of the workload (2 s of its 3 minutes of event time
    /// per 4 requests): a retry right after its request is never late itself.
    async fn send(&mut self, events: &[Value], late: &[Value], secs: f64) -> (Vec<Value>, usize) {
        self.progress.total.store(events.len(), Ordering::Relaxed);
        let chunk = (events.len() / 400).clamp(10, 500);
        let started = Instant::now();
        let mut sent = Vec::with_capacity(events.len() * 11 / 10);
        let mut retried = 0;
        let mut late_sent = false;
        for (i, request) in events.chunks(chunk).enumerate() {
            #[allow(clippy::cast_precision_loss)]
            let due =
                started + Duration::from_secs_f64(secs * (i * chunk) as f64 / events.len() as f64);
            tokio::time::sleep_until(due.into()).await;
            self.node.send(request).await;
            sent.extend_from_slice(request);
            if self.rng.gen_bool(0.1) {
                self.node.send(request).await;
                sent.extend_from_slice(request);
                retried += 1;
            }
            let progress = self
                .progress
                .sent
                .fetch_add(request.len(), Ordering::Relaxed);
            #[allow(clippy::cast_precision_loss)]
            if !late_sent && (progress + request.len()) as f64 >= LATE_AT * events.len() as f64 {
                self.node.send(late).await;
                self.node.send(&late[..LATE_RESENT]).await;
                late_sent = true;
            }
        }
        assert!(late_sent);
        self.progress.done.store(true, Ordering::Relaxed);
        (sent, retried)
    }
}

/// The processors: `--role process` nodes, each in a slot with its own log (a restart
/// appends to it).
struct Processors {
    config: PathBuf,
    dir: PathBuf,
    env: Vec<(String, String)>,
    slots: Vec<Slot>,
    rng: StdRng,
    kills: usize,
    restarts: usize,
}

struct Slot {
    log: PathBuf,
    node: Option<Node>,
    /// When a killed processor starts again.
    restart_at: Option<Instant>,
    /// Stopped for good (SIGTERM).
    removed: bool,
}

impl Processors {
    fn new(config: &Path, dir: &Path, seed: u64) -> Self {
        Self {
            config: config.to_owned(),
            dir: dir.to_owned(),
            env: vec![(
                "TRIBUTARY__LOG__GROUP_SESSION_TIMEOUT".to_owned(),
                SESSION_TIMEOUT.to_owned(),
            )],
            slots: Vec::new(),
            rng: StdRng::seed_from_u64(seed),
            kills: 0,
            restarts: 0,
        }
    }

    async fn start(&self, log: &Path) -> Node {
        Node::start_roles(&self.config, "process", &self.env, log).await
    }

    /// Starts one more processor.
    async fn add(&mut self) {
        let log = self.dir.join(format!("process-{}.log", self.slots.len()));
        let node = self.start(&log).await;
        self.slots.push(Slot {
            log,
            node: Some(node),
            restart_at: None,
            removed: false,
        });
    }

    /// The slots whose processor runs.
    fn running(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|&i| self.slots[i].node.is_some())
            .collect()
    }

    /// SIGKILLs a random running processor, to be restarted after a random pause (within
    /// the session timeout or after it).
    fn kill_one(&mut self) {
        let running = self.running();
        if running.is_empty() {
            return;
        }
        let slot = running[self.rng.gen_range(0..running.len())];
        let pause = Duration::from_millis(self.rng.gen_range(200..8_000));
        self.slots[slot].node.take().unwrap().kill9();
        self.slots[slot].restart_at = Some(Instant::now() + pause);
        self.kills += 1;
        eprintln!(
            "scale_out: SIGKILL processor {slot} (kill {}), restart in {:.1} s",
            self.kills,
            pause.as_secs_f64()
        );
    }

    /// SIGTERMs a random running processor and waits until it has stopped, cleanly.
    async fn remove_one(&mut self) {
        let running = self.running();
        let slot = running[self.rng.gen_range(0..running.len())];
        eprintln!("scale_out: SIGTERM processor {slot}");
        let mut node = self.slots[slot].node.take().unwrap();
        node.terminate();
        let status = node.wait_for_exit().await;
        assert!(
            status.success(),
            "processor {slot} stopped with {status} on SIGTERM:\n{}",
            log_tail(&self.slots[slot].log)
        );
        self.slots[slot].removed = true;
    }

    /// Restarts the killed processors whose pause is over (all of them with `all`).
    async fn restart_due(&mut self, all: bool) {
        for slot in 0..self.slots.len() {
            let due = self.slots[slot]
                .restart_at
                .is_some_and(|at| all || at <= Instant::now());
            if due {
                let node = self.start(&self.slots[slot].log).await;
                self.slots[slot].node = Some(node);
                self.slots[slot].restart_at = None;
                self.restarts += 1;
            }
        }
    }

    /// Fails if a processor stopped by itself.
    fn assert_running(&mut self) {
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if let Some(status) = slot.node.as_mut().and_then(Node::exited) {
                panic!(
                    "processor {i} exited by itself ({status}):\n{}",
                    log_tail(&slot.log)
                );
            }
        }
    }

    /// Until the sending is done and [`KILLS`] processors were killed: at random moments
    /// (about [`KILLS`] + 2 over `secs`), kills a random processor, adds the fourth at
    /// [`JOIN_AT`] of the workload and removes one at [`LEAVE_AT`]; restarts each killed
    /// one after its pause. Then restarts every one still down.
    async fn chaos(&mut self, progress: &Progress, secs: f64) {
        #[allow(clippy::cast_precision_loss)]
        let mean = secs / (KILLS + 2) as f64;
        let mut next =
            Instant::now() + Duration::from_secs_f64(mean * self.rng.gen_range(0.3..1.7));
        let (mut added, mut removed) = (false, false);
        loop {
            self.assert_running();
            self.restart_due(false).await;
            if Instant::now() >= next {
                if !added && progress.fraction() >= JOIN_AT {
                    eprintln!("scale_out: a processor joins");
                    self.add().await;
                    added = true;
                } else if !removed && progress.fraction() >= LEAVE_AT {
                    self.remove_one().await;
                    removed = true;
                } else {
                    self.kill_one();
                }
                next =
                    Instant::now() + Duration::from_secs_f64(mean * self.rng.gen_range(0.3..1.7));
            }
            if progress.done() && self.kills >= KILLS && added && removed {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.restart_due(true).await;
        assert_eq!(
            self.running().len(),
            PROCESSORS,
            "one processor joined, one left"
        );
    }

    /// What the processors' logs say about the tasks' moves.
    fn report(&self) -> String {
        let mut unowned: Vec<i64> = Vec::new();
        let mut restored_per_task: BTreeMap<String, usize> = BTreeMap::new();
        let mut messages: BTreeMap<&'static str, usize> = BTreeMap::new();
        let counted = [
            "task assigned to this process",
            "task revoked from this process; stopping it after a last checkpoint",
            "task taken over by another owner; it runs here again only if the group assigns it back",
            "task did not stop in time; aborted, its partition released anyway",
        ];
        let mut starts = 0;
        for slot in &self.slots {
            let text = std::fs::read_to_string(&slot.log).unwrap_or_default();
            for line in text.lines() {
                let Ok(line) = serde_json::from_str::<Value>(line) else {
                    continue;
                };
                let message = line["message"].as_str().unwrap_or_default();
                if message == START_MARKER {
                    starts += 1;
                } else if message == "task restored from its last checkpoint" {
                    *restored_per_task
                        .entry(line["task"].as_str().unwrap_or_default().to_owned())
                        .or_default() += 1;
                    if let Some(ms) = line["unowned_ms"].as_i64() {
                        unowned.push(ms);
                    }
                } else if let Some(m) = counted.iter().find(|m| **m == message) {
                    *messages.entry(m).or_default() += 1;
                }
            }
        }
        unowned.sort_unstable();
        let at = |q: f64| -> i64 {
            #[allow(
                clippy::cast_precision_loss,
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss
            )]
            let i = ((unowned.len() - 1) as f64 * q).round() as usize;
            unowned[i]
        };
        let spread = if unowned.is_empty() {
            "none".to_owned()
        } else {
            format!(
                "{} restores: min {} ms, median {} ms, p90 {} ms, max {} ms; over the session \
                 timeout ({SESSION_TIMEOUT}): {}",
                unowned.len(),
                unowned[0],
                at(0.5),
                at(0.9),
                unowned[unowned.len() - 1],
                unowned.iter().filter(|&&ms| ms >= 6_000).count()
            )
        };
        format!(
            "{starts} processor starts; time without an owner (unowned_ms) of the tasks \
             restored from a checkpoint: {spread}; all values (ms): {unowned:?}; restores per \
             task: {restored_per_task:?}; log lines: {messages:?}"
        )
    }
}
