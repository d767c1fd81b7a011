//! `ingest`: an HTTP load generator against a running `tributary`.
//!
//! Posts `--events` realistic click events (about 200 bytes of payload each, see
//! `tributary_bench::events`) to `POST {url}/v1/streams/{stream}/events` as JSON arrays
//! of `--batch` events, from `--concurrency` connections at once, each sending its next
//! request as soon as the previous one is answered (a closed loop). Every request must be
//! answered `202` with `accepted` equal to its batch size, or the run fails.
//!
//! All request bodies are generated before the clock starts. One small warm-up request
//! per connection (not counted) opens the connections first.
//!
//! Prints one JSON line on stdout: events/s over the wall-clock time from the first
//! request to the last answer, the median, p99 and max request latency, and, over the
//! same time, how many cores the machine kept busy and the CPU seconds of this process
//! and of each `--watch NAME=PID` process (from `/proc`, Linux only).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use clap::Parser;
use serde_json::{Value, json};
use tributary_bench::cpu;
use tributary_bench::events::{ClickGenerator, payload_bytes};
use tributary_bench::stats::{Latencies, round};
use tributary_bench::{emit, progress};
use tributary_core::parse::{Arrival, BodyFormat, parse_events};
use tributary_core::{StreamName, Timestamp};

/// HTTP ingest load generator for Tributary.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Base URL of the Tributary HTTP server.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// API key (sent as `Authorization: Bearer`).
    #[arg(long, env = "TRIBUTARY_BOOTSTRAP_API_KEY", hide_env_values = true)]
    key: String,
    /// The stream to post to (must be declared in the server's config).
    #[arg(long, default_value = "clicks")]
    stream: String,
    /// Events to send in total.
    #[arg(long, default_value_t = 200_000)]
    events: usize,
    /// Events per request (one JSON array).
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Requests in flight at once (one connection each).
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Seed of the event generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// A label copied into the output line.
    #[arg(long, default_value = "")]
    label: String,
    /// A process whose CPU time to report for the timed phase, as `NAME=PID`
    /// (repeatable); this process is always reported as `client`.
    #[arg(long = "watch", value_parser = parse_watch)]
    watch: Vec<(String, u32)>,
    /// Only print the sizes of the generated events (payload, posted JSON, log record)
    /// and exit without sending anything.
    #[arg(long)]
    sizes_only: bool,
}

/// The part of a `202` answer checked here.
#[derive(Debug, serde::Deserialize)]
struct Accepted {
    accepted: usize,
}

/// One request's outcome: its latency and the events the server accepted.
type Sample = (Duration, usize);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(
        args.events > 0 && args.batch > 0 && args.concurrency > 0,
        "--events, --batch and --concurrency must be > 0"
    );
    let stream = StreamName::new(args.stream.clone())?;
    let endpoint = format!(
        "{}/v1/streams/{}/events",
        args.url.trim_end_matches('/'),
        stream
    );

    // Generate every body before the clock starts.
    let run = format!(
        "ld{}",
        &tributary_bench::cleanup::run_prefix()["bench_".len()..]
    );
    let mut generator = ClickGenerator::new(run.clone(), args.seed);
    let now = Timestamp::now().millis();
    let mut bodies = Vec::with_capacity(args.events.div_ceil(args.batch));
    let mut payload_total = 0usize;
    let mut body_total = 0usize;
    let mut remaining = args.events;
    while remaining > 0 {
        let n = remaining.min(args.batch);
        remaining -= n;
        let batch: Vec<Value> = (0..n)
            .map(|_| {
                // Arrival order with up to 3 s of event-time disorder, as from real clients.
                let ts = now - generator.jitter_ms(3_000);
                let click = generator.click(ts);
                payload_total += payload_bytes(&click);
                click.to_json()
            })
            .collect();
        let body = serde_json::to_vec(&batch)?;
        body_total += body.len();
        bodies.push(Bytes::from(body));
    }
    let record_bytes = log_record_bytes(&bodies[0], &stream)?;
    #[allow(clippy::cast_precision_loss)]
    let (events, bodies_bytes, payloads) =
        (args.events as f64, body_total as f64, payload_total as f64);
    let sizes = json!({
        "payload_bytes_mean": round(payloads / events, 0),
        "posted_event_bytes_mean": round(bodies_bytes / events, 0),
        "log_record_bytes_mean": record_bytes,
    });
    if args.sizes_only {
        return emit(&sizes);
    }
    let bodies = Arc::new(bodies);

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .timeout(Duration::from_secs(120))
        .build()?;

    // Warm-up: open every connection with a small request.
    let mut warmup = tokio::task::JoinSet::new();
    for c in 0..args.concurrency {
        let mut g = ClickGenerator::new(format!("{run}-warmup{c}"), args.seed + 1);
        let batch: Vec<Value> = (0..10).map(|_| g.click(now).to_json()).collect();
        let body = Bytes::from(serde_json::to_vec(&batch)?);
        let (client, endpoint, key) = (client.clone(), endpoint.clone(), args.key.clone());
        warmup.spawn(async move { post(&client, &endpoint, &key, body).await });
    }
    while let Some(done) = warmup.join_next().await {
        done??;
    }

    progress(&format!(
        "posting {} events in {} requests of {} from {} connections to {endpoint}",
        args.events,
        bodies.len(),
        args.batch,
        args.concurrency
    ));
    let mut watched = args.watch.clone();
    watched.push(("client".to_owned(), cpu::own_pid()));
    let cpu_before = cpu::sample(&watched);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency {
        let (client, endpoint, key) = (client.clone(), endpoint.clone(), args.key.clone());
        let (bodies, next) = (Arc::clone(&bodies), Arc::clone(&next));
        workers.spawn(async move {
            let mut samples: Vec<Sample> = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else { break };
                let sent = Instant::now();
                let accepted = post(&client, &endpoint, &key, body.clone()).await?;
                samples.push((sent.elapsed(), accepted));
            }
            anyhow::Ok(samples)
        });
    }
    let mut samples: Vec<Sample> = Vec::new();
    while let Some(done) = workers.join_next().await {
        samples.extend(done??);
    }
    let elapsed = started.elapsed();
    let cpu_used = cpu::between(&cpu_before, &cpu::sample(&watched));

    let accepted: usize = samples.iter().map(|s| s.1).sum();
    ensure!(
        accepted == args.events,
        "the server accepted {accepted} events, {} were sent",
        args.events
    );
    let latencies = Latencies::new(&samples.iter().map(|s| s.0).collect::<Vec<_>>());
    let secs = elapsed.as_secs_f64();
    #[allow(clippy::cast_precision_loss)]
    let requests = bodies.len() as f64;
    emit(&json!({
        "bench": "ingest",
        "label": args.label,
        "url": args.url,
        "stream": stream,
        "events": args.events,
        "batch": args.batch,
        "concurrency": args.concurrency,
        "requests": bodies.len(),
        "seconds": round(secs, 3),
        "events_per_sec": round(events / secs, 0),
        "requests_per_sec": round(requests / secs, 1),
        "body_mb_per_sec": round(bodies_bytes / secs / 1e6, 2),
        "latency_ms": {
            "p50": round(latencies.quantile(0.5), 2),
            "p99": round(latencies.quantile(0.99), 2),
            "max": round(latencies.max(), 2),
        },
        "sizes": sizes,
        "cpu": cpu_used,
    }))
}

/// Parses `NAME=PID`.
fn parse_watch(text: &str) -> Result<(String, u32), String> {
    let (name, pid) = text
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=PID, got {text:?}"))?;
    let pid = pid
        .parse()
        .map_err(|e| format!("bad pid in {text:?}: {e}"))?;
    Ok((name.to_owned(), pid))
}

/// Posts one body; returns the number of events the server accepted.
async fn post(
    client: &reqwest::Client,
    endpoint: &str,
    key: &str,
    body: Bytes,
) -> anyhow::Result<usize> {
    let response = client
        .post(endpoint)
        .bearer_auth(key)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .with_context(|| format!("POST {endpoint}"))?;
    let status = response.status();
    let text = response.bytes().await?;
    if status != reqwest::StatusCode::ACCEPTED {
        bail!(
            "POST {endpoint}: {status}: {}",
            String::from_utf8_lossy(&text)
        );
    }
    let answer: Accepted = serde_json::from_slice(&text).context("unexpected 202 body")?;
    Ok(answer.accepted)
}

/// The mean size of the log records the server writes for these events (the event as
/// `Event::to_json_bytes` encodes it: what lands in Kafka or redb).
fn log_record_bytes(body: &[u8], stream: &StreamName) -> anyhow::Result<usize> {
    let events = parse_events(
        body,
        BodyFormat::Json,
        stream,
        Arrival::new(Timestamp::now(), Duration::MAX),
    )
    .context("generated body does not parse")?;
    let total: usize = events.iter().map(|e| e.to_json_bytes().len()).sum();
    Ok(total / events.len().max(1))
}
