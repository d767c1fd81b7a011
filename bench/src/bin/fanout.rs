//! `fanout`: GraphQL subscription fan-out of a running `tributary` gateway: `--subscribers`
//! WebSocket clients subscribe to one pipeline's live results (`pipelineResults`, over
//! graphql-transport-ws), and for each of `--updates` checkpoints the engine commits, the
//! time from the commit (the update's `committed_at`, written by the engine on this
//! machine's clock) to the last subscriber's message, and from the first subscriber's
//! message to the last (the fan-out itself, whatever the gateway's poll phase).
//!
//! Only checkpoints committed once every subscriber is subscribed count, and each must
//! reach every subscriber (a missing message fails the run). The node must run a pipeline
//! that commits (the demo does, every second).
//!
//! Prints one JSON line on stdout: the subscribers, the updates, and p50 and max of both
//! times in ms.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, ensure};
use clap::Parser;
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tributary_bench::stats::{Latencies, round};
use tributary_bench::{emit, progress};

/// GraphQL subscription fan-out of Tributary's gateway.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The gateway's GraphQL WebSocket URL.
    #[arg(long, default_value = "ws://127.0.0.1:8080/graphql")]
    url: String,
    /// API key (sent in `connection_init`).
    #[arg(long, env = "TRIBUTARY_BOOTSTRAP_API_KEY", hide_env_values = true)]
    key: String,
    /// The pipeline to subscribe to.
    #[arg(long, default_value = "clicks_per_page")]
    pipeline: String,
    /// How many subscribers.
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    /// How many checkpoints to time.
    #[arg(long, default_value_t = 10)]
    updates: usize,
    /// How many connections are opened at once.
    #[arg(long, default_value_t = 100)]
    connecting: usize,
}

/// One subscriber's message: the checkpoint's epoch and commit time, and when it came (ms
/// since the epoch).
#[derive(Debug)]
struct Received {
    epoch: u64,
    committed_ms: i64,
    at_ms: f64,
}

/// What the subscribers tell the timer.
#[derive(Debug)]
enum Report {
    Subscribed,
    Update(Received),
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

/// Opens one subscription and reports its messages until the connection ends.
async fn subscriber(
    args: Arc<Args>,
    gate: Arc<Semaphore>,
    reports: mpsc::UnboundedSender<Report>,
) -> anyhow::Result<()> {
    let permit = gate.acquire().await?;
    let mut request = args.url.as_str().into_client_request()?;
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .context("connecting")?;
    let init = json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {}", args.key)}});
    socket.send(Message::Text(init.to_string().into())).await?;
    let query = format!(
        "subscription {{ pipelineResults(pipeline: {}) {{ epoch committed_at }} }}",
        serde_json::to_string(&args.pipeline)?
    );
    // The first text message must be the acknowledgement.
    loop {
        let message = socket
            .next()
            .await
            .context("closed before connection_ack")??;
        let Message::Text(text) = message else {
            continue;
        };
        let message: Value = serde_json::from_str(&text)?;
        ensure!(
            message["type"] == "connection_ack",
            "unexpected message before connection_ack: {message}"
        );
        break;
    }
    let subscribe = json!({"id": "1", "type": "subscribe", "payload": {"query": query}});
    socket
        .send(Message::Text(subscribe.to_string().into()))
        .await?;
    drop(permit);
    let _ = reports.send(Report::Subscribed);
    while let Some(message) = socket.next().await {
        let Message::Text(text) = message? else {
            continue;
        };
        let at_ms = now_ms();
        let message: Value = serde_json::from_str(&text)?;
        ensure!(message["type"] == "next", "unexpected message: {message}");
        let update = &message["payload"]["data"]["pipelineResults"];
        let epoch = update["epoch"].as_u64().context("no epoch")?;
        let committed: &str = update["committed_at"].as_str().context("no committed_at")?;
        let committed_ms = chrono_millis(committed).context("committed_at")?;
        if reports
            .send(Report::Update(Received {
                epoch,
                committed_ms,
                at_ms,
            }))
            .is_err()
        {
            return Ok(());
        }
    }
    Ok(())
}

/// Milliseconds since the epoch of an RFC 3339 UTC time as Tributary writes them
/// (`2026-11-30T20:11:19.047Z`).
fn chrono_millis(text: &str) -> Option<i64> {
    let time = tributary_core::Timestamp::parse_rfc3339(text).ok()?;
    Some(time.millis())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Arc::new(Args::parse());
    ensure!(
        args.subscribers > 0 && args.updates > 0,
        "--subscribers and --updates must be at least 1"
    );
    let (sender, mut reports) = mpsc::unbounded_channel();
    let gate = Arc::new(Semaphore::new(args.connecting.max(1)));
    for _ in 0..args.subscribers {
        let (args, gate, sender) = (args.clone(), gate.clone(), sender.clone());
        tokio::spawn(async move {
            if let Err(error) = subscriber(args, gate, sender).await {
                progress(&format!("subscriber failed: {error:#}"));
            }
        });
    }
    drop(sender);

    let mut subscribed = 0;
    let mut all_subscribed_ms = f64::INFINITY;
    // Per epoch: commit time, and the arrival times.
    let mut epochs: BTreeMap<u64, (i64, Vec<f64>)> = BTreeMap::new();
    let mut complete = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while complete.len() < args.updates {
        let report = tokio::time::timeout_at(deadline, reports.recv())
            .await
            .context("timed out")?
            .context("every subscriber stopped")?;
        match report {
            Report::Subscribed => {
                subscribed += 1;
                if subscribed == args.subscribers {
                    all_subscribed_ms = now_ms();
                    progress(&format!("{subscribed} subscribers subscribed"));
                }
            }
            Report::Update(received) => {
                // Only checkpoints committed after every subscription started count (plus
                // a second: a subscription starts polling just after it is subscribed).
                #[allow(clippy::cast_precision_loss)]
                if (received.committed_ms as f64) < all_subscribed_ms + 1000.0 {
                    continue;
                }
                let entry = epochs
                    .entry(received.epoch)
                    .or_insert_with(|| (received.committed_ms, Vec::new()));
                entry.1.push(received.at_ms);
                if entry.1.len() == args.subscribers {
                    let (committed, arrivals) = epochs.remove(&received.epoch).unwrap_or_default();
                    complete.push((received.epoch, committed, arrivals));
                }
            }
        }
    }
    let mut to_last = Vec::new();
    let mut spread = Vec::new();
    for (_, committed, arrivals) in &complete {
        let first = arrivals.iter().copied().fold(f64::INFINITY, f64::min);
        let last = arrivals.iter().copied().fold(0.0, f64::max);
        #[allow(clippy::cast_precision_loss)]
        let from_commit = (last - *committed as f64).max(0.0);
        to_last.push(Duration::from_secs_f64(from_commit / 1e3));
        spread.push(Duration::from_secs_f64((last - first).max(0.0) / 1e3));
    }
    let to_last = Latencies::new(&to_last);
    let spread = Latencies::new(&spread);
    emit(&json!({
        "subscribers": args.subscribers,
        "updates": complete.len(),
        "commit_to_last_ms": {"p50": round(to_last.quantile(0.5), 1), "max": round(to_last.max(), 1)},
        "first_to_last_ms": {"p50": round(spread.quantile(0.5), 1), "max": round(spread.max(), 1)},
    }))
}
