//! Shared by the end-to-end tests: start `tributary` as a real process (so it can be
//! killed with SIGKILL), talk to it over HTTP, and compute the ground truth.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::io::Write;
use std::net::TcpListener;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tributary_core::partition::partition_for;

pub const KEY: &str = "e2e-test-key";
pub const STREAM: &str = "events";
/// The pipeline counting events per event key and minute.
pub const COUNTS: &str = "counts";
/// The pipeline of sales per region over two-minute windows every minute.
pub const AMOUNTS: &str = "amounts";
/// The pipeline that takes events up to an hour after their window closed
/// ([`LENIENT_PIPELINE`]).
pub const LENIENT: &str = "lenient";
pub const PARTITIONS: u32 = 3;
/// 2026-01-01T00:00:00Z, minute-aligned.
pub const T0: i64 = 1_767_225_600_000;
pub const MINUTE: i64 = 60_000;
/// The window starts the tests compare results of: every window of the workload's events,
/// none of the flush events'.
const COMPARED: Range<i64> = T0 - 10 * MINUTE..T0 + 10 * MINUTE;

/// The streams and pipelines every e2e config declares.
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

[[pipelines]]
name = "amounts"
sources = ["events"]
filter = "payload.kind = 'sale' AND payload.amount > 0"
key = ["payload.region"]
window = { type = "hopping", size = "2m", slide = "1m" }
aggregates = { sales = "count(*)", total = "sum(payload.amount)", low = "min(payload.amount)", high = "max(payload.amount)", mean = "avg(payload.amount)" }
max_out_of_orderness = "10s"
idle_timeout = "1h"
checkpoint_interval = "200ms"
"#;

/// A pipeline counting events per event key and minute, declared in SQL (its watermark
/// 5 s behind, by default), that an event may still update up to an hour after its window
/// closed; appended to [`TOPOLOGY`] where a test needs it.
pub const LENIENT_PIPELINE: &str = r#"
[[pipelines]]
name = "lenient"
sql = "SELECT key, count(*) AS count FROM events GROUP BY key, tumble(ts, INTERVAL '1' MINUTE)"
allowed_lateness = "1h"
checkpoint_interval = "200ms"
"#;

/// The message of the line written to a process's log before it starts, so that the lines
/// of each start can be told apart.
pub const START_MARKER: &str = "e2e: tributary starts";

/// How long [`eventually`] waits.
pub const EVENTUALLY: Duration = Duration::from_secs(90);

/// Polls `probe` every 50 ms until it answers `Ok`, and returns that; after 90 s fails with
/// the last `Err` (what is still missing) and the tail of `log`. A probe panics itself on
/// what can only get worse.
pub async fn eventually<T>(log: &Path, probe: impl AsyncFnMut() -> Result<T, String>) -> T {
    eventually_within(log, EVENTUALLY, probe).await
}

/// [`eventually`], failing after `within` instead of 90 s (for a test whose size is set
/// from outside).
pub async fn eventually_within<T>(
    log: &Path,
    within: Duration,
    mut probe: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(missing) => assert!(
                Instant::now() < deadline,
                "not within {within:?}: {missing}\nlog:\n{}",
                log_tail(log)
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The last 40 lines of a process's log, without those of the requests it served (the
/// tests' polling would fill them).
pub fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text
        .lines()
        .filter(|line| !line.contains(r#""message":"request served""#))
        .collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// The arguments of `tributary <command> --config <config> <rest>`.
pub fn args(command: &str, config: &Path, rest: &[&str]) -> Vec<OsString> {
    [command, "--config"]
        .into_iter()
        .map(OsString::from)
        .chain([config.as_os_str().to_owned()])
        .chain(rest.iter().map(OsString::from))
        .collect()
}

/// The arguments of `tributary run --config <config> --role <roles>`, logging JSON lines.
pub fn run_args(config: &Path, roles: &str) -> Vec<OsString> {
    args("run", config, &["--role", roles, "--log-format", "json"])
}

/// Writes `tributary.toml` in `dir`, for the embedded adapters (a redb log, SQLite stores
/// and an in-process cache, all in `dir`), followed by `rest` (streams, pipelines, other
/// sections).
pub fn embedded_config(dir: &Path, rest: &str) -> PathBuf {
    let path = dir.join("tributary.toml");
    let config = format!(
        r#"
[log]
type = "embedded"
path = "{dir}/log.redb"

[analytics]
type = "sqlite"
path = "{dir}/tributary.db"

[documents]
type = "sqlite"
path = "{dir}/tributary.db"

[cache]
type = "memory"
{rest}"#,
        dir = dir.display()
    );
    std::fs::write(&path, config).unwrap();
    path
}

/// A `tributary` process, killed (SIGKILL) when dropped.
#[derive(Debug)]
struct Process(Child);

impl Process {
    /// Starts `tributary <args>` with the test's API key, listening on a free port
    /// (returned), `env` set, and its output appended to `log` after a line
    /// [`START_MARKER`].
    fn spawn(args: &[OsString], env: &[(String, String)], log: &Path) -> (Self, u16) {
        let port = free_port();
        (Self::spawn_on(args, port, env, log), port)
    }

    /// Like [`Process::spawn`], listening on 127.0.0.1:`port`.
    fn spawn_on(args: &[OsString], port: u16, env: &[(String, String)], log: &Path) -> Self {
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        writeln!(
            out,
            "{}",
            json!({ "message": START_MARKER, "args": format!("{args:?}") })
        )
        .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_tributary"))
            .args(args)
            .env("TRIBUTARY_BOOTSTRAP_API_KEY", KEY)
            .env("TRIBUTARY__HTTP__LISTEN", format!("127.0.0.1:{port}"))
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .expect("the tributary binary starts");
        Self(child)
    }
}

/// A port free on 127.0.0.1 (at the time of asking).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `tributary <args>` to its end and returns how it exited (fails after 90 s).
pub async fn run_to_exit(args: &[OsString], env: &[(String, String)], log: &Path) -> ExitStatus {
    let (mut process, _) = Process::spawn(args, env, log);
    eventually(log, async || {
        process
            .0
            .try_wait()
            .unwrap()
            .ok_or_else(|| format!("tributary {args:?} still runs"))
    })
    .await
}

/// A `tributary run` process.
#[derive(Debug)]
pub struct Node {
    process: Process,
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
        Self::start_roles_on(config, roles, free_port(), env, log).await
    }

    /// Like [`Node::start_roles`], listening on 127.0.0.1:`port`.
    pub async fn start_roles_on(
        config: &Path,
        roles: &str,
        port: u16,
        env: &[(String, String)],
        log: &Path,
    ) -> Self {
        let process = Process::spawn_on(&run_args(config, roles), port, env, log);
        let node = Self {
            process,
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
            log: log.to_owned(),
        };
        node.eventually(async || {
            match node
                .client
                .get(format!("{}/readyz", node.base))
                .send()
                .await
            {
                Ok(r) if r.status() == 200 => Ok(()),
                answer => Err(format!("node not ready: {answer:?}")),
            }
        })
        .await;
        node
    }

    /// [`eventually`], failing with the tail of this node's log.
    pub async fn eventually<T>(&self, probe: impl AsyncFnMut() -> Result<T, String>) -> T {
        eventually(&self.log, probe).await
    }

    /// [`eventually_within`], failing with the tail of this node's log.
    pub async fn eventually_within<T>(
        &self,
        within: Duration,
        probe: impl AsyncFnMut() -> Result<T, String>,
    ) -> T {
        eventually_within(&self.log, within, probe).await
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.process.0.id()
    }

    /// SIGKILL: no final checkpoint, no flush, nothing.
    pub fn kill9(self) {
        drop(self);
    }

    /// SIGTERM: the node drains and stops.
    pub fn terminate(&self) {
        let pid = rustix::process::Pid::from_child(&self.process.0);
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM is sent");
    }

    /// How the process exited, if it has.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.process.0.try_wait().unwrap()
    }

    /// Waits until the process exits (fails after 90 s) and returns how.
    pub async fn wait_for_exit(&mut self) -> ExitStatus {
        let log = self.log.clone();
        eventually(&log, async || {
            self.exited()
                .ok_or_else(|| "the node still runs".to_owned())
        })
        .await
    }

    /// Sends `method path` with `bearer` and `body` (as JSON); the status and the answer
    /// as JSON (`null` when empty or not JSON).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        bearer: &str,
        body: Option<Value>,
    ) -> (reqwest::StatusCode, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(bearer);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
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
        self.eventually(async || {
            let page = self.get("/v1/dead-letters?limit=100").await;
            let letters = page["dead_letters"].as_array().unwrap().clone();
            assert!(
                letters.len() <= n,
                "more dead letters than expected: {letters:?}"
            );
            if letters.len() == n {
                Ok(letters)
            } else {
                Err(format!(
                    "{} dead letters, {n} expected: {letters:?}",
                    letters.len()
                ))
            }
        })
        .await
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

    /// The text of an open endpoint (`/metrics`), asserting a 200.
    pub async fn get_text(&self, path: &str) -> String {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "GET {path}");
        response.text().await.unwrap()
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

    /// The pipeline as `/v1/pipelines` lists it.
    pub async fn pipeline(&self, name: &str) -> Value {
        let listed = self.get("/v1/pipelines").await;
        listed["pipelines"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{name} is not listed: {listed}"))
            .clone()
    }

    /// The pipeline's result rows (open and closed) of the windows starting in `starts`.
    pub async fn results(&self, pipeline: &str, starts: Range<i64>) -> Vec<Value> {
        let body = self
            .get(&format!(
                "/v1/pipelines/{pipeline}/results?from={}&to={}&limit=10000",
                starts.start, starts.end
            ))
            .await;
        body["results"].as_array().unwrap().clone()
    }

    /// The closed rows of `truth`'s pipeline, as (window start, key) → the compared
    /// columns, and the number of open rows. Every closed row must span the pipeline's
    /// window length and have a revision.
    pub async fn closed_results(&self, truth: &Truth) -> (BTreeMap<(i64, String), Value>, usize) {
        let mut closed = BTreeMap::new();
        let mut open = 0;
        for row in self.results(truth.pipeline, COMPARED).await {
            if row["closed"] != json!(true) {
                open += 1;
                continue;
            }
            let start = millis(&row["window_start"]);
            assert_eq!(millis(&row["window_end"]) - start, truth.window_ms, "{row}");
            assert!(
                row["revision"].as_u64().is_some_and(|r| r >= 1),
                "a closed row without a revision: {row}"
            );
            let columns = truth
                .columns
                .iter()
                .map(|&c| (c.to_owned(), row[c].clone()))
                .collect();
            closed.insert(
                (start, row["key"].as_str().unwrap().to_owned()),
                Value::Object(columns),
            );
        }
        (closed, open)
    }

    /// Waits until the pipeline's row of (window `start`, `key`) satisfies `accept`, and
    /// returns it.
    pub async fn wait_for_row(
        &self,
        pipeline: &str,
        start: i64,
        key: &str,
        accept: impl Fn(&Value) -> bool,
    ) -> Value {
        self.eventually(async || {
            let rows = self.results(pipeline, start..start + 1).await;
            let row = rows.iter().find(|r| r["key"] == key);
            match row {
                Some(row) if accept(row) => Ok(row.clone()),
                _ => Err(format!("{pipeline}: row ({start}, {key:?}) is {row:?}")),
            }
        })
        .await
    }

    /// Waits until the pipeline has committed some result (open or closed).
    pub async fn wait_for_any_result(&self, pipeline: &str) {
        self.eventually(async || {
            if self.results(pipeline, COMPARED).await.is_empty() {
                Err(format!("{pipeline}: no result committed"))
            } else {
                Ok(())
            }
        })
        .await;
    }

    /// Waits until the closed results of `truth`'s pipeline equal it (and no window of the
    /// test's range is open).
    pub async fn wait_for_results(&self, truth: &Truth) {
        self.wait_for_results_within(truth, EVENTUALLY).await;
    }

    /// [`Node::wait_for_results`], failing after `within`.
    pub async fn wait_for_results_within(&self, truth: &Truth, within: Duration) {
        self.eventually_within(within, async || {
            let (got, open) = self.closed_results(truth).await;
            if got == truth.rows && open == 0 {
                return Ok(());
            }
            let differ: Vec<_> = got
                .keys()
                .chain(truth.rows.keys())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .filter(|k| got.get(k) != truth.rows.get(k))
                .map(|k| (k, got.get(k), truth.rows.get(k)))
                .collect();
            Err(format!(
                "{} results differ, (window, key, got, want): {differ:?}; open rows: {open}",
                truth.pipeline
            ))
        })
        .await;
    }

    /// Waits until every pipeline of [`TOPOLOGY`] has the exact results of `events`.
    pub async fn wait_for_truth(&self, events: &[Value]) {
        self.wait_for_truth_within(events, EVENTUALLY).await;
    }

    /// [`Node::wait_for_truth`], each pipeline failing after `within`.
    pub async fn wait_for_truth_within(&self, events: &[Value], within: Duration) {
        for truth in truths(events) {
            self.wait_for_results_within(&truth, within).await;
        }
    }

    /// Every raw event of the stream, read back page by page through the API (37 to a
    /// page, so that the pages of a few hundred events end mid-way).
    pub async fn all_raw_ids(&self) -> BTreeSet<String> {
        const LIMIT: usize = 37;
        let mut ids = BTreeSet::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/v1/streams/{STREAM}/events?limit={LIMIT}&cursor={c}"),
                None => format!("/v1/streams/{STREAM}/events?limit={LIMIT}"),
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
        self.eventually(async || {
            let got = self.all_raw_ids().await;
            if &got == expected {
                Ok(())
            } else {
                Err(format!(
                    "raw events differ: {} stored, {} expected",
                    got.len(),
                    expected.len()
                ))
            }
        })
        .await;
    }
}

/// Epoch milliseconds of a row's RFC 3339 time.
fn millis(time: &Value) -> i64 {
    tributary_core::Timestamp::parse_rfc3339(time.as_str().unwrap())
        .unwrap()
        .millis()
}

/// What a pipeline's closed results must be.
#[derive(Debug)]
pub struct Truth {
    pub pipeline: &'static str,
    /// The length of its windows.
    pub window_ms: i64,
    /// The columns compared.
    pub columns: &'static [&'static str],
    /// Per (window start, key), the compared columns' values.
    pub rows: BTreeMap<(i64, String), Value>,
}

/// The results every pipeline of [`TOPOLOGY`] must have for `events`.
pub fn truths(events: &[Value]) -> [Truth; 2] {
    [counts_truth(events), amounts_truth(events, 0)]
}

/// The distinct events (by id) of `events`, in order.
fn distinct(events: &[Value]) -> impl Iterator<Item = &Value> {
    let mut seen = BTreeSet::new();
    events
        .iter()
        .filter(move |e| seen.insert(e["id"].as_str().unwrap().to_owned()))
}

/// [`COUNTS`]: distinct events per (minute, event key).
pub fn counts_truth(events: &[Value]) -> Truth {
    let mut counts: BTreeMap<(i64, String), u64> = BTreeMap::new();
    for e in distinct(events) {
        let ts = e["ts"].as_i64().unwrap();
        *counts
            .entry((
                ts.div_euclid(MINUTE) * MINUTE,
                e["key"].as_str().unwrap().to_owned(),
            ))
            .or_default() += 1;
    }
    Truth {
        pipeline: COUNTS,
        window_ms: MINUTE,
        columns: &["count"],
        rows: counts
            .into_iter()
            .map(|(window, n)| (window, json!({ "count": n })))
            .collect(),
    }
}

/// [`AMOUNTS`] with the filter `payload.kind = 'sale' AND payload.amount > {above}`: per
/// two-minute window starting every minute (an event is in the one starting at its minute
/// and in the one a minute earlier) and region (key text `""`, column `null`, when it has
/// none), the distinct events' count, sum, minimum, maximum and mean of `amount`.
pub fn amounts_truth(events: &[Value], above: i64) -> Truth {
    #[derive(Default)]
    struct Sales {
        region: Value,
        count: u64,
        total: i64,
        low: Option<i64>,
        high: Option<i64>,
    }
    let mut windows: BTreeMap<(i64, String), Sales> = BTreeMap::new();
    for e in distinct(events) {
        let payload = &e["payload"];
        let Some(amount) = payload["amount"].as_i64() else {
            continue;
        };
        if payload["kind"] != "sale" || amount <= above {
            continue;
        }
        let minute = e["ts"].as_i64().unwrap().div_euclid(MINUTE) * MINUTE;
        let region = payload["region"].as_str().unwrap_or_default();
        for start in [minute - MINUTE, minute] {
            let sales = windows.entry((start, region.to_owned())).or_default();
            sales.region = payload["region"].clone();
            sales.count += 1;
            sales.total += amount;
            sales.low = Some(sales.low.map_or(amount, |low| low.min(amount)));
            sales.high = Some(sales.high.map_or(amount, |high| high.max(amount)));
        }
    }
    // Sums, extremes and means are floats; the mean is the same division the engine does.
    #[allow(clippy::cast_precision_loss)]
    let rows = windows
        .into_iter()
        .map(|(window, s)| {
            let row = json!({
                "region": s.region,
                "sales": s.count,
                "total": as_read(s.total as f64),
                "low": as_read(s.low.unwrap() as f64),
                "high": as_read(s.high.unwrap() as f64),
                "mean": as_read(s.total as f64 / s.count as f64),
            });
            (window, row)
        })
        .collect();
    Truth {
        pipeline: AMOUNTS,
        window_ms: 2 * MINUTE,
        columns: &["region", "sales", "total", "low", "high", "mean"],
        rows,
    }
}

/// `x` as this client reads it from the server's JSON: serde_json writes the shortest text
/// that reads back exactly, but reads with best-effort precision (its `float_roundtrip`
/// feature is off), which may be one unit in the last place off. Putting the expected
/// value through the same text keeps the comparison exact.
fn as_read(x: f64) -> Value {
    serde_json::from_str(&serde_json::to_string(&x).unwrap()).unwrap()
}

/// A deterministic workload: `n` events over three minutes from `T0`, five keys,
/// timestamps jittered up to 8 s out of order (the pipelines allow 10 s). Payloads have a
/// `kind` (sale, refund, other), an integer `amount` (some not positive, some missing)
/// and a `region` (three, some missing).
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
            let mut payload = json!({"n": i, "note": "héllo"});
            payload["kind"] = json!(["sale", "sale", "refund", "other"][(next() % 4) as usize]);
            match next() % 8 {
                0 => {}
                1 => payload["amount"] = json!(0),
                2 => payload["amount"] = json!(-((next() % 100) as i64)),
                _ => payload["amount"] = json!(1 + (next() % 1_000) as i64),
            }
            if let Some(region) = ["north", "south", "west"].get((next() % 4) as usize) {
                payload["region"] = json!(region);
            }
            json!({
                "id": format!("ev-{i}"),
                "ts": ts,
                "key": format!("k{}", next() % 5),
                "payload": payload,
            })
        })
        .collect()
}

/// One far-future sale per partition, so that every partition's watermark passes the
/// test's windows and closes them in every pipeline, also through the filter of
/// [`AMOUNTS`].
pub fn flush_events() -> Vec<Value> {
    (0..PARTITIONS)
        .map(|p| {
            let key = (0..)
                .map(|i| format!("flush-{i}"))
                .find(|k| partition_for(k, PARTITIONS) == p)
                .unwrap();
            json!({
                "id": format!("flush-{p}"),
                "ts": T0 + 30 * MINUTE,
                "key": key,
                "payload": {"kind": "sale", "amount": 1, "region": "flush"},
            })
        })
        .collect()
}

pub fn ids(events: &[Value]) -> BTreeSet<String> {
    events
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}
pub mod distributed;
pub mod proxy;
pub mod scenarios;
