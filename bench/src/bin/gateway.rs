//! `gateway`: an HTTP load generator for one `GET` endpoint of a running `tributary`
//! gateway, for the cost of authentication and rate limiting (bench/run.sh's gateway suite).
//!
//! Two phases against `--url` + `--path`, each request with `Authorization: Bearer --key`
//! (none when `--key` is empty: for a gateway letting anonymous requests through):
//! - **closed loop** (`--seconds`): `--concurrency` connections, each sending its next
//!   request as soon as the previous one is answered: the most requests per second the
//!   node serves;
//! - **open loop** (`--rate` requests/s for `--seconds`): requests are due at fixed times
//!   (`i / rate` after the start) whatever the answers, each on its own task over a shared
//!   connection pool of at most 256 connections; a request's latency runs from when it
//!   was *due*, so a stalled server cannot hide its queue (no coordinated omission).
//!
//! Answers other than `200` are counted by status (`errors`) and kept in the latencies; a
//! 429 fails the run (the quotas were meant to be far above the load). A short warm-up
//! (not counted) opens the connections first.
//!
//! Prints one JSON line on stdout: for each phase, requests/s, p50, p99 and max latency in
//! ms, and over the closed loop how many cores the machine kept busy and the CPU seconds
//! of this process and of each `--watch NAME=PID` process.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::Parser;
use serde_json::{Value, json};
use tributary_bench::cpu;
use tributary_bench::stats::{Latencies, round};
use tributary_bench::{emit, progress};

/// The most requests in flight in the open loop.
const MAX_IN_FLIGHT: usize = 256;

/// HTTP GET load generator for Tributary's gateway.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Base URL of the Tributary HTTP server.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The path (and query) to get.
    #[arg(long, default_value = "/v1/pipelines/clicks_per_page/results?limit=10")]
    path: String,
    /// API key (sent as `Authorization: Bearer`); empty: no `Authorization` (anonymous).
    #[arg(long, env = "TRIBUTARY_BOOTSTRAP_API_KEY", hide_env_values = true)]
    key: String,
    /// Connections of the closed loop.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Duration of each phase.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Requests per second of the open loop; 0 skips it.
    #[arg(long, default_value_t = 5000)]
    rate: u64,
    /// A label copied into the output line.
    #[arg(long, default_value = "")]
    label: String,
    /// A process whose CPU time to report for the closed loop, as `NAME=PID`.
    #[arg(long = "watch", value_parser = parse_watch)]
    watch: Vec<(String, u32)>,
}

/// One request: its status, 0 for no answer (any but 200 is counted as an error by the
/// caller; a 429 fails the run, since the quotas were meant to be far above the load).
async fn get(client: &reqwest::Client, url: &str, key: &str) -> anyhow::Result<u16> {
    let request = client.get(url);
    let request = if key.is_empty() {
        request
    } else {
        request.bearer_auth(key)
    };
    let Ok(response) = request.send().await else {
        // No answer (a refused or reset connection): counted as status 0.
        return Ok(0);
    };
    let status = response.status();
    if response.bytes().await.is_err() {
        return Ok(0);
    }
    ensure!(
        status != reqwest::StatusCode::TOO_MANY_REQUESTS,
        "answered 429: the quotas are too small for this load"
    );
    Ok(status.as_u16())
}

/// What one phase saw: answers per second, latencies, and the statuses other than 200.
type Phase = (f64, Vec<Duration>, BTreeMap<u16, usize>);

/// The closed loop: requests answered per second and their latencies.
async fn closed_loop(client: &reqwest::Client, url: &str, args: &Args) -> anyhow::Result<Phase> {
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency {
        let client = client.clone();
        let url = url.to_owned();
        let key = args.key.clone();
        workers.spawn(async move {
            let mut latencies = Vec::new();
            let mut statuses = Vec::new();
            while Instant::now() < deadline {
                let sent = Instant::now();
                statuses.push(get(&client, &url, &key).await?);
                latencies.push(sent.elapsed());
            }
            anyhow::Ok((latencies, statuses))
        });
    }
    let mut latencies = Vec::new();
    let mut errors = BTreeMap::new();
    while let Some(done) = workers.join_next().await {
        let (some, statuses) = done??;
        latencies.extend(some);
        count_errors(&mut errors, statuses);
    }
    let elapsed = started.elapsed().as_secs_f64();
    #[allow(clippy::cast_precision_loss)]
    let per_sec = latencies.len() as f64 / elapsed;
    Ok((per_sec, latencies, errors))
}

/// The open loop at `rate`: requests answered per second and their latencies from when
/// each was due.
async fn open_loop(client: &reqwest::Client, url: &str, args: &Args) -> anyhow::Result<Phase> {
    let total = args.rate * args.seconds;
    let interval = Duration::from_nanos(1_000_000_000 / args.rate.max(1));
    let url: Arc<str> = url.into();
    let key: Arc<str> = args.key.as_str().into();
    // At most this many requests in flight (connections): past it, a due request waits for
    // one, and its wait counts in its latency.
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let started = tokio::time::Instant::now();
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..total {
        let due = started + interval * u32::try_from(i).context("too many requests")?;
        tokio::time::sleep_until(due).await;
        let (client, url, key) = (client.clone(), url.clone(), key.clone());
        let slots = slots.clone();
        requests.spawn(async move {
            let _slot = slots.acquire_owned().await?;
            let status = get(&client, &url, &key).await?;
            anyhow::Ok((due.elapsed(), status))
        });
    }
    let mut latencies = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    let mut errors = BTreeMap::new();
    while let Some(done) = requests.join_next().await {
        let (latency, status) = done??;
        latencies.push(latency);
        count_errors(&mut errors, [status]);
    }
    let elapsed = started.elapsed().as_secs_f64();
    #[allow(clippy::cast_precision_loss)]
    let per_sec = latencies.len() as f64 / elapsed;
    Ok((per_sec, latencies, errors))
}

/// Adds the statuses other than 200 to `errors`.
fn count_errors(errors: &mut BTreeMap<u16, usize>, statuses: impl IntoIterator<Item = u16>) {
    for status in statuses {
        if status != 200 {
            *errors.entry(status).or_default() += 1;
        }
    }
}

fn summary((per_sec, latencies, errors): &Phase) -> Value {
    let l = Latencies::new(latencies);
    let errors: serde_json::Map<String, Value> = errors
        .iter()
        .map(|(status, n)| (status.to_string(), json!(n)))
        .collect();
    json!({
        "requests_per_sec": round(*per_sec, 0),
        "requests": latencies.len(),
        "errors": errors,
        "latency_ms": {
            "p50": round(l.quantile(0.5), 3),
            "p99": round(l.quantile(0.99), 3),
            "max": round(l.max(), 3),
        },
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let url = format!("{}{}", args.url.trim_end_matches('/'), args.path);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency.max(MAX_IN_FLIGHT))
        .tcp_nodelay(true)
        .build()?;
    match get(&client, &url, &args.key).await {
        Ok(200) => {}
        Ok(status) => bail!("GET {url}: answered {status}"),
        Err(error) => bail!("GET {url}: {error:#}"),
    }
    progress(&format!("warming up {url}"));
    let warm_up = Args {
        seconds: 1,
        ..Args::parse()
    };
    closed_loop(&client, &url, &warm_up).await?;

    progress(&format!(
        "closed loop: {} connections, {} s",
        args.concurrency, args.seconds
    ));
    let mut watched = args.watch.clone();
    watched.push(("client".to_owned(), cpu::own_pid()));
    let before = cpu::sample(&watched);
    let closed = closed_loop(&client, &url, &args).await?;
    let usage = cpu::between(&before, &cpu::sample(&watched));
    let mut line = json!({
        "label": args.label,
        "path": args.path,
        "concurrency": args.concurrency,
        "closed": summary(&closed),
        "cpu": usage,
    });
    if args.rate > 0 {
        // A pause, so that the closed loop's backlog is gone.
        tokio::time::sleep(Duration::from_millis(500)).await;
        progress(&format!(
            "open loop: {} requests/s, {} s",
            args.rate, args.seconds
        ));
        let open = open_loop(&client, &url, &args).await?;
        line["open"] = summary(&open);
        line["open"]["target_per_sec"] = json!(args.rate);
    }
    emit(&line)
}

/// Parses `NAME=PID`.
fn parse_watch(text: &str) -> Result<(String, u32), String> {
    let (name, pid) = text
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=PID, got {text:?}"))?;
    let pid = pid
        .parse()
        .map_err(|_| format!("not a process id: {pid:?}"))?;
    Ok((name.to_owned(), pid))
}
