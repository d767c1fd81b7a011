//! `pipeline`: how fast the engine drains a pre-filled log.
//!
//! 1. Connects the adapters of `--mode` (`embedded`: redb + SQLite + memory cache in a
//!    temporary directory; `kafka`: Kafka + PostgreSQL + MongoDB + Redis from the
//!    `TRIBUTARY_*` environment variables, in a fresh topic, database and key prefix).
//! 2. Appends `--events` click events through the `Log` port, `--append-batch` per call
//!    (timed too: the log adapter's own append rate, without HTTP).
//! 3. Runs `tributary_engine::Engine` with one windowed pipeline (1-minute tumbling count
//!    per page) and, unless `--no-archive`, the raw-event archive task — as
//!    `tributary run` does — and polls `AnalyticsStore::load_checkpoint` until the
//!    committed checkpoint of the pipeline (and of the archive) covers every offset.
//! 4. Checks that the committed window counts plus the events the operator dropped as late
//!    or duplicate add up to `--events`, removes what it created, and prints one JSON line:
//!    events/s for the append, the pipeline and the archive, each over its own wall-clock
//!    time, and the late and duplicate counts.
//!
//! The drain time includes the engine's start (restore, opening the log reader) and ends
//! at the first checkpoint committed after the last record, so it is rounded up by up to
//! one `--checkpoint-interval-ms`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::{Parser, ValueEnum};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tributary_bench::cleanup::{self, env};
use tributary_bench::events::ClickGenerator;
use tributary_bench::stats::round;
use tributary_bench::{emit, progress};
use tributary_connectors::kafka::KafkaConfig;
use tributary_connectors::memory::MemoryCacheConfig;
use tributary_connectors::mongodb::MongoConfig;
use tributary_connectors::postgres::PostgresConfig;
use tributary_connectors::redb::RedbLogConfig;
use tributary_connectors::redis::RedisConfig;
use tributary_connectors::registry::{
    self, AnalyticsConfig, CacheConfig, DocumentsConfig, LogConfig,
};
use tributary_connectors::sqlite::SqliteConfig;
use tributary_core::partition::partition_for;
use tributary_core::pipeline::{PipelineSpec, WindowSpec};
use tributary_core::ports::{AnalyticsStore, ResultQuery};
use tributary_core::value::Value;
use tributary_core::{Event, StreamName, Timestamp};
use tributary_engine::archive::ARCHIVE_TASK;
use tributary_engine::{Engine, EngineConfig, Ports};

const PIPELINE: &str = "clicks_per_page";
const STREAM: &str = "clicks";
/// The events' event times span this long, ending now.
const SPAN_MS: i64 = 10 * 60_000;

/// Which adapters to run over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// redb + SQLite + in-process cache.
    Embedded,
    /// Kafka + PostgreSQL + MongoDB + Redis.
    Kafka,
}

/// Times the engine draining a pre-filled log.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The adapters.
    #[arg(long, value_enum)]
    mode: Mode,
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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(
        args.events > 0 && args.append_batch > 0 && args.batch_size > 0,
        "counts must be > 0"
    );
    let prefix = args.prefix.clone().unwrap_or_else(cleanup::run_prefix);
    ensure!(
        prefix.starts_with("bench_"),
        "--prefix must start with bench_"
    );
    let tempdir = tempfile::tempdir()?;
    let adapters = connect(args.mode, &prefix, tempdir.path()).await?;
    let outcome = measure(&args, &adapters).await;
    drop(adapters);
    if args.mode == Mode::Kafka && !args.keep {
        let removed = cleanup::remove_all(&prefix).await;
        if let Err(err) = removed {
            progress(&format!("cleanup of {prefix} failed: {err:#}"));
        }
    }
    emit(&outcome?)
}

/// Connects the adapters of `mode`, with names under `prefix` or files under `dir`.
async fn connect(mode: Mode, prefix: &str, dir: &std::path::Path) -> anyhow::Result<Ports> {
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
        Mode::Kafka => {
            let postgres =
                cleanup::create_postgres_database(&env("TRIBUTARY_POSTGRES_URL")?, prefix).await?;
            let kafka = KafkaConfig {
                topic_prefix: format!("{prefix}."),
                ..KafkaConfig::new(env("TRIBUTARY_KAFKA_BROKERS")?)
            };
            let mongo = MongoConfig {
                database: prefix.to_owned(),
                ..MongoConfig::new(env("TRIBUTARY_MONGODB_URL")?)
            };
            let redis = RedisConfig {
                key_prefix: format!("{prefix}:"),
                ..RedisConfig::new(env("TRIBUTARY_REDIS_URL")?)
            };
            (
                LogConfig::Kafka(kafka),
                AnalyticsConfig::Postgres(PostgresConfig::new(postgres)),
                DocumentsConfig::Mongodb(mongo),
                CacheConfig::Redis(redis),
            )
        }
    };
    registry::build(&log, &analytics, &documents, &cache)
        .await
        .context("cannot connect the adapters")
}

async fn measure(args: &Args, adapters: &Ports) -> anyhow::Result<serde_json::Value> {
    let stream = StreamName::new(STREAM)?;
    let partitions = adapters.log.ensure_stream(&stream, args.partitions).await?;

    // The events, and how many land in each partition (= its end offset: fresh stream).
    let mut generator = ClickGenerator::new("p", 1);
    let end = Timestamp::now().millis();
    let n = i64::try_from(args.events)?;
    let mut events: Vec<Event> = Vec::with_capacity(args.events);
    let mut expected: BTreeMap<u32, u64> = BTreeMap::new();
    for i in 0..n {
        let ts = end - SPAN_MS + i * SPAN_MS / n - generator.jitter_ms(5_000);
        let event = generator.click(ts).to_event(&stream)?;
        *expected
            .entry(partition_for(event.partition_key(), partitions))
            .or_default() += 1;
        events.push(event);
    }

    progress(&format!(
        "{:?}: appending {} events",
        args.mode, args.events
    ));
    let started = Instant::now();
    for chunk in events.chunks(args.append_batch) {
        adapters.log.append(&stream, chunk).await?;
    }
    let append_secs = started.elapsed().as_secs_f64();
    drop(events);

    let interval = Duration::from_millis(args.checkpoint_interval_ms);
    let spec = PipelineSpec {
        max_out_of_orderness: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(30),
        checkpoint_interval: interval,
        ..PipelineSpec::counting(
            PIPELINE,
            vec![stream.clone()],
            WindowSpec::Tumbling { size_ms: 60_000 },
        )
    };
    let ports = adapters.clone();
    let engine = Engine::new(
        ports,
        EngineConfig {
            pipelines: vec![spec],
            archived_streams: if args.no_archive {
                Vec::new()
            } else {
                vec![stream.clone()]
            },
            archive_checkpoint_interval: interval,
            batch_size: args.batch_size,
            dead_letter_retention: None,
        },
    );

    progress(&format!("{:?}: draining", args.mode));
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let mut running = tokio::spawn(engine.run(shutdown.clone()));
    let deadline = started + Duration::from_secs(args.timeout_secs);
    let analytics = adapters.analytics.as_ref();
    let mut pipeline_secs = None;
    let mut archive_secs = args.no_archive.then_some(0.0);
    while pipeline_secs.is_none() || archive_secs.is_none() {
        tokio::select! {
            finished = &mut running => bail!("the engine stopped early: {finished:?}"),
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
        if pipeline_secs.is_none() && covers(analytics, PIPELINE, &stream, &expected).await? {
            pipeline_secs = Some(started.elapsed().as_secs_f64());
        }
        if archive_secs.is_none() && covers(analytics, ARCHIVE_TASK, &stream, &expected).await? {
            archive_secs = Some(started.elapsed().as_secs_f64());
        }
        if Instant::now() > deadline {
            shutdown.cancel();
            bail!("not drained after {} s", args.timeout_secs);
        }
    }
    shutdown.cancel();
    running.await?.context("the engine failed")?;

    let counted = counted(analytics).await?;
    let (late, duplicates) = dropped(analytics).await?;
    ensure!(
        counted + late + duplicates == u64::try_from(args.events)?,
        "the pipeline counted {counted} events, dropped {late} as late and {duplicates} as \
         duplicates, but {} were appended",
        args.events
    );
    if late > 0 {
        progress(&format!(
            "{:?}: {late} of {} events were dropped as late",
            args.mode, args.events
        ));
    }
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
    Ok(json!({
        "bench": "pipeline",
        "label": args.label,
        "mode": args.mode.to_possible_value().map(|v| v.get_name().to_owned()),
        "events": args.events,
        "partitions": partitions,
        "batch_size": args.batch_size,
        "checkpoint_interval_ms": args.checkpoint_interval_ms,
        "append_batch": args.append_batch,
        "append_seconds": round(append_secs, 3),
        "append_events_per_sec": rate(append_secs),
        "pipeline_seconds": round(pipeline_secs, 3),
        "pipeline_events_per_sec": rate(pipeline_secs),
        "archive": !args.no_archive,
        "archive_seconds": round(archive_secs, 3),
        "archive_events_per_sec": rate(archive_secs),
        "counted": counted,
        "late_events": late,
        "duplicates": duplicates,
    }))
}

/// Whether `task`'s committed checkpoint covers every appended offset.
async fn covers(
    analytics: &dyn AnalyticsStore,
    task: &str,
    stream: &StreamName,
    expected: &BTreeMap<u32, u64>,
) -> anyhow::Result<bool> {
    let Some(checkpoint) = analytics.load_checkpoint(task).await? else {
        return Ok(false);
    };
    Ok(expected.iter().all(|(&partition, &end)| {
        checkpoint
            .offsets
            .iter()
            .any(|o| &o.stream == stream && o.partition == partition && o.next_offset >= end)
    }))
}

/// The late and duplicate events of the pipeline's last checkpoint.
async fn dropped(analytics: &dyn AnalyticsStore) -> anyhow::Result<(u64, u64)> {
    let state = analytics
        .load_checkpoint(PIPELINE)
        .await?
        .context("no checkpoint")?
        .state;
    let field = |name: &str| {
        state
            .get(name)
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0)
    };
    Ok((field("late_events"), field("duplicates")))
}

/// The sum of the pipeline's committed window counts.
async fn counted(analytics: &dyn AnalyticsStore) -> anyhow::Result<u64> {
    let schema = PipelineSpec::counting(
        PIPELINE,
        Vec::new(),
        WindowSpec::Tumbling { size_ms: 60_000 },
    )
    .schema();
    let rows = analytics
        .query_results(
            &schema,
            &ResultQuery {
                pipeline: PIPELINE.to_owned(),
                from: None,
                to: None,
                key: None,
                limit: 1_000_000,
            },
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| match r.values.first() {
            Some(Value::Int(n)) => u64::try_from(*n).unwrap_or(0),
            _ => 0,
        })
        .sum())
}
