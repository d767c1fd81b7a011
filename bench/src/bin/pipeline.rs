//! `pipeline`: how fast the engine drains a pre-filled log, and at what CPU cost.
//!
//! 1. Connects the adapters of `--mode` (`embedded`: redb + SQLite + memory cache in a
//!    temporary directory; `kafka`: Kafka + PostgreSQL + MongoDB + Redis from the
//!    `TRIBUTARY_*` environment variables, in a fresh topic, database and key prefix).
//! 2. Generates `--events` events of `--workload` and their ground truth (what every
//!    result row must hold), and appends them through the `Log` port, `--append-batch` per
//!    call (timed too: the log adapter's own append rate, without HTTP).
//! 3. Runs `tributary_engine::Engine` with the workload's pipeline and, unless
//!    `--no-archive`, the raw-event archive task — as `tributary run` does — and polls
//!    `AnalyticsStore::load_checkpoint` until the committed checkpoints of the pipeline's
//!    tasks (one shard per partition; for a pipeline keyed otherwise than the event key,
//!    first its repartition tasks, then the shards up to the end of its internal stream)
//!    and of the archive cover every offset.
//! 4. Checks every result row against the ground truth — same windows and keys, same
//!    counts (and sums) — and that the operator filtered out exactly the events the
//!    filter rejects and dropped none as late or duplicate; a mismatch fails the run. It
//!    then removes what it created and prints one JSON line: events/s for the append, the
//!    pipeline and the archive, each over its own wall-clock time, and this process's CPU
//!    time (user + system, from `/proc/self/stat`) over the pipeline's drain.
//!
//! Workloads (`--workload`):
//!
//! - `count`: click events, 200 pages; the number of events per page (the event key) in
//!   1-minute tumbling windows: `PipelineSpec::counting`, as every pipeline ran before
//!   expressions and aggregates.
//! - `aggregates`: the same events; `filter = "payload.country <> 'JP'"` (keeps 90%), key =
//!   the event key, 1-minute tumbling windows, `count(*)`, `sum`, `avg` and
//!   `quantile(…, 0.95)` of `payload.duration_ms`.
//! - `yahoo`: the Yahoo Streaming Benchmark's pipeline: YSB ad events (see
//!   `tributary_bench::ysb`), keep `event_type = 'view'`, look the ad up in an ad →
//!   campaign CSV table (a lookup), count per campaign in 10-second tumbling windows. With
//!   `--no-lookup`, the variant without the join: count per `payload.ad_id`.
//!
//! The drain time includes the engine's start (restore, opening the log reader, loading
//! lookup tables) and ends at the first checkpoint committed after the last record, so it
//! is rounded up by up to one `--checkpoint-interval-ms`. The drain starts right after the
//! progress line `…: draining` on stderr, which `benchctl watch-drain` uses to measure the
//! same drain from outside.
//!
//! Shared pre-fill (kafka mode, for the `peers` suite of `bench/run.sh`, where Flink and
//! Kafka Streams drain the same topic): `--prefill-only DIR` does steps 1 and 2 only, keeps
//! the topic, and writes to `DIR` what a drain of it needs: `prefill.json` (the topic, the
//! events per partition, the filtered count), `truth.tsv` (every result row of the ground
//! truth: `window start ms <TAB> key <TAB> count`, and `<TAB> sum` for `aggregates`) and,
//! for `yahoo`, `ads.csv`. `--from DIR` then drains that topic instead of filling one (steps
//! 3 and 4, against that ground truth). Without either, a run fills and drains its own topic.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::{Parser, ValueEnum};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tributary_bench::cleanup::{self, env};
use tributary_bench::cpu;
use tributary_bench::events::ClickGenerator;
use tributary_bench::stats::round;
use tributary_bench::ysb::AdGenerator;
use tributary_bench::{emit, progress};
use tributary_connectors::memory::MemoryCacheConfig;
use tributary_connectors::redb::RedbLogConfig;
use tributary_connectors::registry::{
    self, AnalyticsConfig, CacheConfig, DocumentsConfig, LogConfig,
};
use tributary_connectors::sqlite::SqliteConfig;
use tributary_core::partition::partition_for;
use tributary_core::pipeline::{PipelineSpec, WindowSpec};
use tributary_core::plan::{self, Definition, KeyDefinition, LookupDefinition};
use tributary_core::ports::{AnalyticsStore, PartitionOffset, RawBatch};
use tributary_core::record::decode_view;
use tributary_core::repartition;
use tributary_core::value::Value;
use tributary_core::{Event, StreamName, Timestamp};
use tributary_engine::archive::ARCHIVE_TASK;
use tributary_engine::{Engine, EngineConfig, Ports, References, shard_task};

/// The allocator the `tributary` binary runs with.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The events' event times span this long, ending now.
const SPAN_MS: i64 = 10 * 60_000;
/// Events are up to this much out of order.
const JITTER_MS: u64 = 5_000;

/// Which adapters to run over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// redb + SQLite + in-process cache.
    Embedded,
    /// Kafka + PostgreSQL + MongoDB + Redis.
    Kafka,
}

/// Which events and pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Workload {
    /// Clicks; count per page (the event key), 1-minute tumbling windows.
    Count,
    /// Clicks; a filter, key = the event key, 1-minute tumbling windows, count, sum, avg and
    /// a quantile.
    Aggregates,
    /// The Yahoo Streaming Benchmark: views per campaign (ad → campaign lookup), 10-second
    /// tumbling windows.
    Yahoo,
}

impl Workload {
    fn stream(self) -> &'static str {
        match self {
            Self::Count | Self::Aggregates => "clicks",
            Self::Yahoo => "ad_events",
        }
    }

    fn pipeline(self) -> &'static str {
        match self {
            Self::Count => "clicks_per_page",
            Self::Aggregates => "click_stats_per_page",
            Self::Yahoo => "ysb_views_per_campaign",
        }
    }

    fn window_ms(self) -> i64 {
        match self {
            Self::Count | Self::Aggregates => 60_000,
            Self::Yahoo => 10_000,
        }
    }

    fn name(self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default()
    }
}

/// What `--read-only` does with each record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ReadOnly {
    /// Nothing: the log client's own cost.
    Raw,
    /// Decodes it as the pipeline's shards do.
    Decode,
}

/// Times the engine draining a pre-filled log.
#[derive(Debug, Parser)]
#[command(version, about)]
#[allow(clippy::struct_excessive_bools)]
struct Args {
    /// The adapters.
    #[arg(long, value_enum)]
    mode: Mode,
    /// The events and the pipeline.
    #[arg(long, value_enum, default_value_t = Workload::Count)]
    workload: Workload,
    /// `--workload yahoo` without the ad → campaign lookup: count per ad.
    #[arg(long)]
    no_lookup: bool,
    /// Events to append, then drain.
    #[arg(long, default_value_t = 200_000)]
    events: usize,
    /// Partitions of the stream.
    #[arg(long, default_value_t = 3)]
    partitions: u32,
    /// Events per `Log::append` call while filling the log.
    #[arg(long, default_value_t = 5_000)]
    append_batch: usize,
    /// The engine's `batch_size` (records per poll), as `[engine] batch_size`.
    #[arg(long, default_value_t = 1_000)]
    batch_size: usize,
    /// The pipeline's and the archive's checkpoint interval, in milliseconds.
    #[arg(long, default_value_t = 1_000)]
    checkpoint_interval_ms: u64,
    /// Do not run the raw-event archive task.
    #[arg(long)]
    no_archive: bool,
    /// Instead of running the pipeline, only read the filled topic through the log port as
    /// a pipeline's reader does (`raw`: the records' bytes, as the Kafka client hands them
    /// over), or also decode each record on the pipeline's fast path (`decode`: id, time,
    /// key and the fields the pipeline reads). The floor under a drain, measured the same
    /// way: what the log client costs per event, and what the decoding adds.
    #[arg(long, value_enum, conflicts_with_all = ["prefill_only", "live_secs"])]
    read_only: Option<ReadOnly>,
    /// Prefix of every name created (topic, databases, keys); must start with `bench_`.
    /// A fresh one when absent.
    #[arg(long)]
    prefix: Option<String>,
    /// Give up after this many seconds of draining.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
    /// Keep the created topic, databases and keys (kafka mode).
    #[arg(long)]
    keep: bool,
    /// A label copied into the output line.
    #[arg(long, default_value = "")]
    label: String,
    /// Only fill the topic (kept) and write its description and ground truth to this
    /// directory, for `--from` and other engines (kafka mode).
    #[arg(long, value_name = "DIR", conflicts_with = "from")]
    prefill_only: Option<PathBuf>,
    /// Drain the topic that `--prefill-only DIR` filled, instead of filling one (kafka
    /// mode; `--workload`, `--no-lookup` and `--events` must be the pre-fill's).
    #[arg(long, value_name = "DIR")]
    from: Option<PathBuf>,
    /// Instead of draining a backlog, run the count pipeline on live events (stamped with
    /// the current time, `--rate` per second) for this many seconds, and report the time
    /// from each window's end plus the watermark delay to its final result being visible
    /// (kafka mode, `--workload count`).
    #[arg(long, value_name = "SECONDS", conflicts_with_all = ["from", "prefill_only"])]
    live_secs: Option<u64>,
    /// Events per second appended in `--live-secs` mode.
    #[arg(long, default_value_t = 20_000)]
    rate: u64,
    /// The windows' size in milliseconds, instead of the workload's.
    #[arg(long)]
    window_ms: Option<i64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(
        args.events > 0 && args.append_batch > 0 && args.batch_size > 0,
        "counts must be > 0"
    );
    ensure!(
        !args.no_lookup || args.workload == Workload::Yahoo,
        "--no-lookup is for --workload yahoo"
    );
    let prefix = args.prefix.clone().unwrap_or_else(cleanup::run_prefix);
    ensure!(
        prefix.starts_with("bench_"),
        "--prefix must start with bench_"
    );
    ensure!(
        args.mode == Mode::Kafka || (args.prefill_only.is_none() && args.from.is_none()),
        "--prefill-only and --from are for --mode kafka"
    );
    let prefilled = args.from.as_deref().map(Prefill::read).transpose()?;
    if let Some(prefill) = &prefilled {
        prefill.check(&args)?;
    }
    let topic_prefix = prefilled
        .as_ref()
        .map_or_else(|| format!("{prefix}."), |p| p.topic_prefix.clone());
    let tempdir = tempfile::tempdir()?;
    let dir = args
        .prefill_only
        .as_deref()
        .or(args.from.as_deref())
        .unwrap_or(tempdir.path());
    std::fs::create_dir_all(dir)?;
    let adapters = connect(args.mode, &prefix, &topic_prefix, tempdir.path()).await?;
    let outcome = if args.prefill_only.is_some() {
        prefill(&args, &adapters, &topic_prefix, dir).await
    } else if let Some(seconds) = args.live_secs {
        live(&args, &adapters, &prefix, dir, seconds).await
    } else {
        measure(&args, &adapters, dir, prefilled).await
    };
    drop(adapters);
    // A pre-filled topic is kept for the drains; the script removes it with the run.
    if args.mode == Mode::Kafka && !args.keep && args.prefill_only.is_none() {
        let removed = cleanup::remove_all(&prefix).await;
        if let Err(err) = removed {
            progress(&format!("cleanup of {prefix} failed: {err:#}"));
        }
    }
    emit(&outcome?)
}

/// Connects the adapters of `mode`, with names under `prefix` (topics under
/// `topic_prefix`) or files under `dir`.
async fn connect(
    mode: Mode,
    prefix: &str,
    topic_prefix: &str,
    dir: &Path,
) -> anyhow::Result<Ports> {
    let (log, analytics, documents, cache) = match mode {
        Mode::Embedded => {
            let db = SqliteConfig {
                path: dir.join("tributary.db"),
            };
            (
                LogConfig::Embedded(RedbLogConfig {
                    path: dir.join("log.redb"),
                }),
                AnalyticsConfig::Sqlite(db.clone()),
                DocumentsConfig::Sqlite(db),
                CacheConfig::Memory(MemoryCacheConfig::default()),
            )
        }
        Mode::Kafka => cleanup::Services::create(prefix, topic_prefix)
            .await?
            .configs(),
    };
    registry::build(&log, &analytics, &documents, &cache)
        .await
        .context("cannot connect the adapters")
}

/// What one result row must hold: its count, and for `aggregates` the sum.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Truth {
    count: i64,
    sum: i64,
}

/// The generated events and what the pipeline must make of them.
#[derive(Debug, Default)]
struct Workset {
    events: Vec<Event>,
    /// Events per partition (= its end offset: the stream is fresh).
    expected: BTreeMap<u32, u64>,
    /// Every result row, by (window start, key text).
    truth: BTreeMap<(i64, String), Truth>,
    /// Events the filter rejects.
    filtered: u64,
}

impl Workset {
    fn push(&mut self, event: Event, partitions: u32) {
        *self
            .expected
            .entry(partition_for(event.partition_key(), partitions))
            .or_default() += 1;
        self.events.push(event);
    }
}

/// Runs the count pipeline for `seconds` on events appended as they happen, `--rate` per
/// second in 10-ms ticks, then reads the latency of each window the watermark closed
/// meanwhile from the results table: the last write of its closed rows (its whole result
/// visible, every shard's part) minus its end plus the watermark delay. The same as
/// `tributary_window_final_latency_seconds`, from outside the engine.
async fn live(
    args: &Args,
    adapters: &Ports,
    prefix: &str,
    dir: &Path,
    seconds: u64,
) -> anyhow::Result<serde_json::Value> {
    ensure!(
        args.mode == Mode::Kafka && args.workload == Workload::Count,
        "--live-secs is for --mode kafka --workload count"
    );
    let stream = StreamName::new(args.workload.stream())?;
    let partitions = adapters.log.ensure_stream(&stream, args.partitions).await?;
    let spec = pipeline_spec(args, &stream, dir)?;
    let delay_ms = i64::try_from(spec.max_out_of_orderness.as_millis())?;
    let interval = Duration::from_millis(args.checkpoint_interval_ms);
    let engine = Engine::new(
        adapters.clone(),
        EngineConfig {
            pipelines: vec![spec.clone()],
            archived_streams: Vec::new(),
            archive_checkpoint_interval: interval,
            batch_size: args.batch_size,
            dead_letter_retention: None,
        },
    );
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(engine.run(shutdown.clone()));
    progress(&format!(
        "live: {} events/s for {seconds} s into {partitions} partitions",
        args.rate
    ));
    let mut generator = ClickGenerator::new("live", 1);
    let tick = Duration::from_millis(10);
    let per_tick = usize::try_from(args.rate / 100)?.max(1);
    let started = tokio::time::Instant::now();
    let mut next = started;
    let mut sent = 0_u64;
    while started.elapsed() < Duration::from_secs(seconds) {
        let now = Timestamp::now().millis();
        let events = (0..per_tick)
            .map(|_| generator.click(now).to_event(&stream))
            .collect::<anyhow::Result<Vec<_>>>()?;
        adapters.log.append(&stream, &events).await?;
        sent += events.len() as u64;
        next += tick;
        tokio::time::sleep_until(next).await;
    }
    let stopped_at = Timestamp::now().millis();
    // Room for the last windows the watermark passed to be committed.
    tokio::time::sleep(interval * 2 + Duration::from_secs(1)).await;
    shutdown.cancel();
    running.await??;

    let url = cleanup::with_database(&env("TRIBUTARY_POSTGRES_URL")?, prefix)?;
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url).await?;
    let table = spec.schema().table();
    let windows: Vec<(i64, f64)> = sqlx::query_as(&format!(
        "SELECT (extract(epoch FROM window_end) * 1000)::bigint, \
                extract(epoch FROM max(updated_at) - window_end)::float8 \
         FROM \"{table}\" WHERE closed GROUP BY window_end ORDER BY window_end"
    ))
    .fetch_all(&mut conn)
    .await?;
    // Only the windows that could close while events flowed (the others wait for events
    // that never come), less the first (the engine was starting).
    let mut latencies: Vec<f64> = windows
        .iter()
        .filter(|(end, _)| end + delay_ms < stopped_at)
        .skip(1)
        .map(|(_, after_end)| after_end - delay_ms as f64 / 1000.0)
        .collect();
    ensure!(
        !latencies.is_empty(),
        "no window closed while events flowed"
    );
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let i = ((latencies.len() - 1) as f64 * q).round() as usize;
        round(latencies[i], 3)
    };
    Ok(json!({
        "bench": "latency",
        "label": args.label,
        "workload": args.workload.name(),
        "rate": args.rate,
        "events": sent,
        "seconds": seconds,
        "window_ms": args.window_ms.unwrap_or(args.workload.window_ms()),
        "checkpoint_interval_ms": args.checkpoint_interval_ms,
        "watermark_delay_ms": delay_ms,
        "windows": latencies.len(),
        "latency_p50_s": at(0.5),
        "latency_p99_s": at(0.99),
        "latency_max_s": at(1.0),
    }))
}

/// The start of the tumbling window of `size_ms` that `ts` falls in.
fn window_start(ts: i64, size_ms: i64) -> i64 {
    ts.div_euclid(size_ms) * size_ms
}

/// The events of `args.workload` and their ground truth; for `yahoo`, also writes the ad
/// → campaign table to `dir/ads.csv`.
fn generate(
    args: &Args,
    stream: &StreamName,
    partitions: u32,
    dir: &Path,
) -> anyhow::Result<Workset> {
    let end = Timestamp::now().millis();
    let n = i64::try_from(args.events)?;
    let size = args.workload.window_ms();
    let mut set = Workset {
        events: Vec::with_capacity(args.events),
        ..Workset::default()
    };
    match args.workload {
        Workload::Count | Workload::Aggregates => {
            let mut generator = ClickGenerator::new("p", 1);
            for i in 0..n {
                let ts = end - SPAN_MS + i * SPAN_MS / n - generator.jitter_ms(JITTER_MS);
                let click = generator.click(ts);
                let kept = args.workload == Workload::Count
                    || click.payload.get("country").and_then(|c| c.as_str()) != Some("JP");
                if kept {
                    let truth = set
                        .truth
                        .entry((window_start(ts, size), click.key.clone()))
                        .or_default();
                    truth.count += 1;
                    if args.workload == Workload::Aggregates {
                        truth.sum += click
                            .payload
                            .get("duration_ms")
                            .and_then(serde_json::Value::as_i64)
                            .context("a click without duration_ms")?;
                    }
                } else {
                    set.filtered += 1;
                }
                set.push(click.to_event(stream)?, partitions);
            }
        }
        Workload::Yahoo => {
            let mut generator = AdGenerator::new("y", 1);
            std::fs::write(dir.join("ads.csv"), generator.campaigns_csv())?;
            let jitter = usize::try_from(JITTER_MS)?;
            for i in 0..n {
                let ts = end - SPAN_MS + i * SPAN_MS / n - generator.jitter_ms(jitter);
                let ad = generator.event(ts);
                if ad.event_type == "view" {
                    let key = if args.no_lookup {
                        ad.payload
                            .get("ad_id")
                            .and_then(|a| a.as_str())
                            .unwrap_or_default()
                            .to_owned()
                    } else {
                        generator.campaign_id(ad.campaign).to_owned()
                    };
                    set.truth
                        .entry((window_start(ts, size), key))
                        .or_default()
                        .count += 1;
                } else {
                    set.filtered += 1;
                }
                set.push(ad.to_event(stream)?, partitions);
            }
        }
    }
    Ok(set)
}

/// The plan of `args.workload`'s pipeline; the lookup table of `yahoo` is `dir/ads.csv`.
fn pipeline_spec(args: &Args, stream: &StreamName, dir: &Path) -> anyhow::Result<PipelineSpec> {
    let interval = Duration::from_millis(args.checkpoint_interval_ms);
    let window = WindowSpec::Tumbling {
        size_ms: args.window_ms.unwrap_or(args.workload.window_ms()),
    };
    let name = if args.no_lookup {
        "ysb_views_per_ad"
    } else {
        args.workload.pipeline()
    };
    let definition = Definition {
        name: name.to_owned(),
        sources: vec![stream.as_str().to_owned()],
        lookups: Vec::new(),
        filter: None,
        key: None,
        window,
        aggregates: None,
        allowed_lateness: Duration::ZERO,
        max_out_of_orderness: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(30),
        finalize_idle_after: None,
        checkpoint_interval: interval,
    };
    let definition = match args.workload {
        // As the engine ran it before expressions and aggregates (and as the `count`
        // pipeline of the previous benchmark binary).
        Workload::Count => {
            return Ok(PipelineSpec {
                max_out_of_orderness: definition.max_out_of_orderness,
                idle_timeout: definition.idle_timeout,
                checkpoint_interval: interval,
                ..PipelineSpec::counting(name, vec![stream.clone()], window)
            });
        }
        Workload::Aggregates => Definition {
            filter: Some("payload.country <> 'JP'".to_owned()),
            aggregates: Some(
                [
                    ("events", "count(*)"),
                    ("total_ms", "sum(payload.duration_ms)"),
                    ("avg_ms", "avg(payload.duration_ms)"),
                    ("p95_ms", "quantile(payload.duration_ms, 0.95)"),
                ]
                .map(|(column, call)| (column.to_owned(), call.to_owned()))
                .to_vec(),
            ),
            ..definition
        },
        Workload::Yahoo if args.no_lookup => Definition {
            filter: Some("payload.event_type = 'view'".to_owned()),
            key: Some(vec![KeyDefinition::from("payload.ad_id")]),
            ..definition
        },
        Workload::Yahoo => Definition {
            lookups: vec![LookupDefinition {
                name: "ads".to_owned(),
                on: "payload.ad_id".to_owned(),
                key: "ad_id".to_owned(),
                file: Some(dir.join("ads.csv")),
                postgres: None,
                refresh: Duration::ZERO,
            }],
            filter: Some("payload.event_type = 'view'".to_owned()),
            key: Some(vec![KeyDefinition::from("ads.campaign_id")]),
            ..definition
        },
    };
    plan::plan(&definition).context("the workload's pipeline does not plan")
}

/// One stage of a pipeline's drain: tasks reading `stream`, each with the partitions
/// whose offsets its checkpoint holds.
#[derive(Debug, Clone)]
struct Stage {
    stream: StreamName,
    tasks: Vec<(String, Vec<u32>)>,
}

/// The stages `spec` runs as on a fresh store, as the engine lays it out: one shard per
/// partition (`{pipeline}#{p}`) when it is keyed like the log; keyed otherwise, first the
/// repartition tasks (`{internal}#{p}` per source partition, the sources being one
/// stream) writing to the pipeline's internal stream, then one shard per partition of
/// that stream, which the engine creates with as many partitions as the source.
fn stages_of(
    spec: &PipelineSpec,
    stream: &StreamName,
    partitions: u32,
) -> anyhow::Result<Vec<Stage>> {
    let shards = |stream: &StreamName| Stage {
        stream: stream.clone(),
        tasks: (0..partitions)
            .map(|p| (shard_task(&spec.name, p), vec![p]))
            .collect(),
    };
    if spec.keyed_like_the_log() {
        return Ok(vec![shards(stream)]);
    }
    let internal = repartition::internal_stream(spec)?;
    Ok(vec![
        Stage {
            stream: stream.clone(),
            tasks: (0..partitions)
                .map(|p| (shard_task(internal.as_str(), p), vec![p]))
                .collect(),
        },
        shards(&internal),
    ])
}

#[allow(clippy::too_many_lines)]
async fn measure(
    args: &Args,
    adapters: &Ports,
    dir: &Path,
    prefilled: Option<Prefill>,
) -> anyhow::Result<serde_json::Value> {
    let stream = StreamName::new(args.workload.stream())?;
    let partitions = adapters.log.ensure_stream(&stream, args.partitions).await?;
    let workload = args.workload.name();

    let (set, append_secs) = match prefilled {
        Some(prefill) => {
            ensure!(
                prefill.partitions == partitions,
                "the pre-filled topic has {} partitions, not {partitions}",
                prefill.partitions
            );
            (prefill.workset(dir, args.workload)?, 0.0)
        }
        None => fill(args, adapters, &stream, partitions, dir).await?,
    };

    let spec = pipeline_spec(args, &stream, dir)?;
    if let Some(level) = args.read_only {
        return read_only(args, adapters, &spec, &stream, &set, level).await;
    }
    let mut references = References::new();
    for lookup in &spec.lookups {
        references.insert(
            (spec.name.clone(), lookup.name.clone()),
            registry::reference(&lookup.source)?,
        );
    }
    let stages = stages_of(&spec, &stream, partitions)?;
    let interval = Duration::from_millis(args.checkpoint_interval_ms);
    let engine = Engine::new(
        adapters.clone(),
        EngineConfig {
            pipelines: vec![spec.clone()],
            archived_streams: if args.no_archive {
                Vec::new()
            } else {
                vec![stream.clone()]
            },
            archive_checkpoint_interval: interval,
            batch_size: args.batch_size,
            dead_letter_retention: None,
        },
    )
    .with_references(references);

    progress(&format!("{:?}: draining", args.mode));
    let me = cpu::own_pid();
    let cpu_before = cpu::process_ticks(me);
    let machine_before = cpu::machine_ticks();
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let mut running = tokio::spawn(engine.run(shutdown.clone()));
    let deadline = started + Duration::from_secs(args.timeout_secs);
    let analytics = adapters.analytics.as_ref();
    let mut pipeline_secs = None;
    let mut cpu_after = None;
    let mut machine_after = None;
    let mut archive_secs = args.no_archive.then_some(0.0);
    // The stages one after the other: the tasks of the current stage that have not covered
    // their partitions yet, one polled per round (as many store reads per round as for a
    // pipeline of one task), up to the ends of its stream: the appended events for the
    // source, the end offsets once the stage before is done for an internal stream (all
    // its events are in it by then; later records are progress records).
    let mut stage = 0;
    let mut ends = set.expected.clone();
    let mut pending: Vec<&(String, Vec<u32>)> = stages[0].tasks.iter().collect();
    let mut next = 0;
    while pipeline_secs.is_none() || archive_secs.is_none() {
        tokio::select! {
            finished = &mut running => bail!("the engine stopped early: {finished:?}"),
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
        if pipeline_secs.is_none() {
            next %= pending.len();
            let (task, own) = pending[next];
            if covers(analytics, task, &stages[stage].stream, own, &ends).await? {
                pending.remove(next);
            } else {
                next += 1;
            }
            if pending.is_empty() && stage + 1 < stages.len() {
                stage += 1;
                let internal = &stages[stage].stream;
                ends = (0..)
                    .zip(adapters.log.end_offsets(internal).await?)
                    .collect();
                pending = stages[stage].tasks.iter().collect();
            } else if pending.is_empty() {
                pipeline_secs = Some(started.elapsed().as_secs_f64());
                cpu_after = cpu::process_ticks(me);
                machine_after = cpu::machine_ticks();
            }
        }
        let all: Vec<u32> = set.expected.keys().copied().collect();
        if archive_secs.is_none()
            && covers(analytics, ARCHIVE_TASK, &stream, &all, &set.expected).await?
        {
            archive_secs = Some(started.elapsed().as_secs_f64());
        }
        if Instant::now() > deadline {
            shutdown.cancel();
            bail!("not drained after {} s", args.timeout_secs);
        }
    }
    shutdown.cancel();
    running.await?.context("the engine failed")?;

    // Every stage's tasks: a repartitioned pipeline filters in its repartition tasks
    // (which count the filtered events in their checkpoints), the shards count the rest.
    let tasks: Vec<(String, Vec<u32>)> = stages.iter().flat_map(|s| s.tasks.clone()).collect();
    let counters = counters(analytics, &tasks).await?;
    let counted = check_results(analytics, &spec, args.workload, &set, &counters).await?;
    let pipeline_secs = pipeline_secs.unwrap_or_default();
    let archive_secs = archive_secs.unwrap_or_default();
    #[allow(clippy::cast_precision_loss)]
    let total = args.events as f64;
    let rate = |secs: f64| {
        if secs > 0.0 {
            round(total / secs, 0)
        } else {
            0.0
        }
    };
    let drain_cpu = cpu::seconds_between(cpu_before, cpu_after);
    #[allow(clippy::cast_precision_loss)]
    let cores_busy = match (machine_before, machine_after) {
        (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => {
            let cpus = std::thread::available_parallelism().map_or(1, usize::from) as f64;
            Some(round((b1 - b0) as f64 / (t1 - t0) as f64 * cpus, 2))
        }
        _ => None,
    };
    Ok(json!({
        "bench": "pipeline",
        "label": args.label,
        "mode": args.mode.to_possible_value().map(|v| v.get_name().to_owned()),
        "workload": workload,
        "lookup": !spec.lookups.is_empty(),
        "pipeline": spec.name,
        "layout": if stages.len() > 1 { "repartitioned" } else { "shards" },
        "tasks": stages.iter().map(|s| s.tasks.len()).sum::<usize>(),
        "events": args.events,
        "prefilled": args.from.is_some(),
        "partitions": partitions,
        "batch_size": args.batch_size,
        "checkpoint_interval_ms": args.checkpoint_interval_ms,
        "append_batch": args.append_batch,
        "append_seconds": round(append_secs, 3),
        "append_events_per_sec": rate(append_secs),
        "pipeline_seconds": round(pipeline_secs, 3),
        "pipeline_events_per_sec": rate(pipeline_secs),
        "drain_cpu_seconds": drain_cpu.map(|s| round(s, 2)),
        "cpu_s_per_million_events": drain_cpu.map(|s| round(s / total * 1e6, 2)),
        "drain_cores_busy": cores_busy,
        "archive": !args.no_archive,
        "archive_seconds": round(archive_secs, 3),
        "archive_events_per_sec": rate(archive_secs),
        "counted": counted,
        "windows": set.truth.len(),
        "filtered": counters.filtered,
        "late_events": counters.late,
        "duplicates": counters.duplicates,
    }))
}

/// Reads `stream` from its beginning to the ends `set` expects, as one reader over every
/// partition, polling `--batch-size` records at a time, and doing `level`'s work on each.
async fn read_only(
    args: &Args,
    adapters: &Ports,
    spec: &PipelineSpec,
    stream: &StreamName,
    set: &Workset,
    level: ReadOnly,
) -> anyhow::Result<serde_json::Value> {
    let start: Vec<PartitionOffset> = set
        .expected
        .keys()
        .map(|&partition| PartitionOffset {
            stream: stream.clone(),
            partition,
            next_offset: 0,
        })
        .collect();
    let projection = spec.projection();
    progress(&format!("{:?}: draining (read only, {level:?})", args.mode));
    let me = cpu::own_pid();
    let cpu_before = cpu::process_ticks(me);
    let started = Instant::now();
    let mut reader = adapters
        .log
        .reader(&format!("{}-read-only", spec.name), &start)
        .await?;
    let mut batch = RawBatch::default();
    let (mut read, mut decoded, mut bytes) = (0_usize, 0_usize, 0_usize);
    let mut next: BTreeMap<u32, u64> = BTreeMap::new();
    let deadline = started + Duration::from_secs(args.timeout_secs);
    while set
        .expected
        .iter()
        .any(|(p, end)| next.get(p).copied().unwrap_or(0) < *end)
    {
        ensure!(
            Instant::now() < deadline,
            "not read after {} s",
            args.timeout_secs
        );
        batch.clear();
        reader
            .poll_raw(args.batch_size, Duration::from_secs(1), &mut batch)
            .await?;
        // As a shard: one vector of slots per batch, borrowing from it.
        let mut slots = Vec::new();
        for record in batch.records() {
            read += 1;
            next.insert(record.partition, record.offset + 1);
            let value = batch.value(record).unwrap_or_default();
            bytes += value.len();
            if level == ReadOnly::Decode {
                slots.clear();
                if decode_view(stream, value, &projection, &mut slots).is_some() {
                    decoded += 1;
                }
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu_after = cpu::process_ticks(me);
    drop(reader);
    ensure!(
        level == ReadOnly::Raw || decoded == read,
        "{} of {read} records not decoded on the fast path",
        read - decoded
    );
    let drain_cpu = cpu::seconds_between(cpu_before, cpu_after);
    #[allow(clippy::cast_precision_loss)]
    let total = args.events as f64;
    Ok(json!({
        "bench": "pipeline",
        "label": args.label,
        "read_only": level.to_possible_value().map(|v| v.get_name().to_owned()),
        "workload": args.workload.name(),
        "events": args.events,
        "records_read": read,
        "bytes_read": bytes,
        "prefilled": args.from.is_some(),
        "batch_size": args.batch_size,
        "pipeline_seconds": round(secs, 3),
        "pipeline_events_per_sec": round(total / secs, 0),
        "drain_cpu_seconds": drain_cpu.map(|s| round(s, 2)),
        "cpu_s_per_million_events": drain_cpu.map(|s| round(s / total * 1e6, 2)),
    }))
}

/// Generates the events of `args.workload` into `stream` (for `yahoo` also `dir/ads.csv`);
/// returns their ground truth and the seconds the appends took.
async fn fill(
    args: &Args,
    adapters: &Ports,
    stream: &StreamName,
    partitions: u32,
    dir: &Path,
) -> anyhow::Result<(Workset, f64)> {
    let mut set = generate(args, stream, partitions, dir)?;
    progress(&format!(
        "{:?}: appending {} events ({})",
        args.mode,
        args.events,
        args.workload.name()
    ));
    let started = Instant::now();
    for chunk in set.events.chunks(args.append_batch) {
        adapters.log.append(stream, chunk).await?;
    }
    let append_secs = started.elapsed().as_secs_f64();
    set.events = Vec::new();
    Ok((set, append_secs))
}

/// `--prefill-only DIR`: fills a topic and describes it in `DIR` (see the module docs).
async fn prefill(
    args: &Args,
    adapters: &Ports,
    topic_prefix: &str,
    dir: &Path,
) -> anyhow::Result<serde_json::Value> {
    let stream = StreamName::new(args.workload.stream())?;
    let partitions = adapters.log.ensure_stream(&stream, args.partitions).await?;
    let (set, append_secs) = fill(args, adapters, &stream, partitions, dir).await?;
    let prefill = Prefill {
        workload: args.workload.name(),
        no_lookup: args.no_lookup,
        events: args.events,
        partitions,
        topic_prefix: topic_prefix.to_owned(),
        topic: format!("{topic_prefix}{stream}"),
        expected: set.expected.clone(),
        filtered: set.filtered,
        windows: set.truth.len(),
        counted: set.truth.values().map(|t| t.count).sum(),
    };
    let mut truth = String::new();
    for ((start, key), t) in &set.truth {
        ensure!(
            !key.contains(['\t', '\n']),
            "a key with a tab or a newline: {key:?}"
        );
        if args.workload == Workload::Aggregates {
            truth.push_str(&format!("{start}\t{key}\t{}\t{}\n", t.count, t.sum));
        } else {
            truth.push_str(&format!("{start}\t{key}\t{}\n", t.count));
        }
    }
    std::fs::write(dir.join("truth.tsv"), truth)?;
    let mut out = serde_json::to_value(&prefill)?;
    std::fs::write(dir.join("prefill.json"), serde_json::to_vec(&out)?)?;
    out["bench"] = json!("prefill");
    out["label"] = json!(args.label);
    out["append_seconds"] = json!(round(append_secs, 3));
    #[allow(clippy::cast_precision_loss)]
    let rate = if append_secs > 0.0 {
        round(args.events as f64 / append_secs, 0)
    } else {
        0.0
    };
    out["append_events_per_sec"] = json!(rate);
    Ok(out)
}

/// A topic filled by `--prefill-only`, as `prefill.json` describes it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Prefill {
    workload: String,
    no_lookup: bool,
    events: usize,
    partitions: u32,
    /// The Kafka adapter's topic prefix (`{prefix}.`).
    topic_prefix: String,
    topic: String,
    /// Events per partition (= its end offset).
    expected: BTreeMap<u32, u64>,
    /// Events the filter rejects.
    filtered: u64,
    /// Result rows of the ground truth.
    windows: usize,
    /// Events counted in them.
    counted: i64,
}

impl Prefill {
    fn read(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join("prefill.json");
        let text =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_slice(&text).with_context(|| format!("bad {}", path.display()))
    }

    fn check(&self, args: &Args) -> anyhow::Result<()> {
        ensure!(
            self.workload == args.workload.name()
                && self.no_lookup == args.no_lookup
                && self.events == args.events,
            "--from: the topic was filled with {} events of --workload {} (no lookup: {}), \
             not {} of {} (no lookup: {})",
            self.events,
            self.workload,
            self.no_lookup,
            args.events,
            args.workload.name(),
            args.no_lookup
        );
        Ok(())
    }

    /// The ground truth of the pre-fill, from `dir/truth.tsv`.
    fn workset(self, dir: &Path, workload: Workload) -> anyhow::Result<Workset> {
        let text = std::fs::read_to_string(dir.join("truth.tsv"))?;
        let mut truth = BTreeMap::new();
        for line in text.lines() {
            let fields: Vec<&str> = line.split('\t').collect();
            let ([start, key, count] | [start, key, count, _]) = fields[..] else {
                bail!("bad truth.tsv line {line:?}");
            };
            let sum = match (workload, fields.get(3)) {
                (Workload::Aggregates, Some(sum)) => sum.parse()?,
                (Workload::Aggregates, None) => bail!("no sum in truth.tsv line {line:?}"),
                _ => 0,
            };
            truth.insert(
                (start.parse()?, key.to_owned()),
                Truth {
                    count: count.parse()?,
                    sum,
                },
            );
        }
        Ok(Workset {
            events: Vec::new(),
            expected: self.expected,
            truth,
            filtered: self.filtered,
        })
    }
}

/// Whether `task`'s committed checkpoint has read every appended record of `own`.
async fn covers(
    analytics: &dyn AnalyticsStore,
    task: &str,
    stream: &StreamName,
    own: &[u32],
    expected: &BTreeMap<u32, u64>,
) -> anyhow::Result<bool> {
    let Some(checkpoint) = analytics.load_checkpoint(task).await? else {
        return Ok(false);
    };
    Ok(own.iter().all(|partition| {
        let end = expected.get(partition).copied().unwrap_or(0);
        end == 0
            || checkpoint
                .offsets
                .iter()
                .any(|o| &o.stream == stream && o.partition == *partition && o.next_offset >= end)
    }))
}

/// The operator's counters, summed over the pipeline's tasks.
#[derive(Debug, Default)]
struct Counters {
    late: u64,
    duplicates: u64,
    filtered: u64,
}

/// The counters of the last checkpoints of `tasks`.
async fn counters(
    analytics: &dyn AnalyticsStore,
    tasks: &[(String, Vec<u32>)],
) -> anyhow::Result<Counters> {
    let mut sum = Counters::default();
    for (task, _) in tasks {
        let state = analytics
            .load_checkpoint(task)
            .await?
            .with_context(|| format!("no checkpoint of {task}"))?
            .state;
        let field = |name: &str| {
            state
                .get(name)
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0)
        };
        sum.late += field("late_events");
        sum.duplicates += field("duplicates");
        sum.filtered += field("filtered");
    }
    Ok(sum)
}

/// Checks every committed result row against the ground truth, and the counters; returns
/// the events counted.
async fn check_results(
    analytics: &dyn AnalyticsStore,
    spec: &PipelineSpec,
    workload: Workload,
    set: &Workset,
    counters: &Counters,
) -> anyhow::Result<u64> {
    let rows = tributary_bench::results::all_rows(analytics, spec).await?;
    // A sum over a payload field (of no static type) is a double: exact here, as every
    // sum stays far below 2^53.
    #[allow(clippy::cast_possible_truncation, clippy::float_cmp)]
    let int = |value: Option<&Value<'_>>| match value {
        Some(Value::Int(n)) => Some(*n),
        Some(Value::Float(x)) if x.fract() == 0.0 && x.abs() < 9.0e15 => Some(*x as i64),
        _ => None,
    };
    let mut got: BTreeMap<(i64, String), Truth> = BTreeMap::new();
    for row in &rows {
        let count = int(row.values.first()).with_context(|| format!("no count in {row:?}"))?;
        let sum = if workload == Workload::Aggregates {
            int(row.values.get(1)).with_context(|| format!("no sum in {row:?}"))?
        } else {
            0
        };
        let previous = got.insert(
            (row.window_start.millis(), row.key.clone()),
            Truth { count, sum },
        );
        ensure!(
            previous.is_none(),
            "two rows for one window and key: {row:?}"
        );
    }
    let counted: i64 = got.values().map(|t| t.count).sum();
    let counted = u64::try_from(counted)?;
    if got != set.truth {
        let mut differences = Vec::new();
        for (window, truth) in &set.truth {
            match got.get(window) {
                Some(row) if row == truth => {}
                row => differences.push(format!("{window:?}: {row:?}, expected {truth:?}")),
            }
        }
        for (window, row) in &got {
            if !set.truth.contains_key(window) {
                differences.push(format!("{window:?}: {row:?}, expected no row"));
            }
        }
        bail!(
            "{} of {} result rows differ from the ground truth (late {}, duplicates {}; \
             counted {counted} events). First ones: {}",
            differences.len(),
            set.truth.len(),
            counters.late,
            counters.duplicates,
            differences
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    ensure!(
        counters.late == 0 && counters.duplicates == 0 && counters.filtered == set.filtered,
        "the results match, but the operator counted {} late, {} duplicates and {} filtered \
         events, where 0, 0 and {} were expected",
        counters.late,
        counters.duplicates,
        counters.filtered,
        set.filtered
    );
    Ok(counted)
}
