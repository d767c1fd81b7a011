//! `scale`: how Tributary scales out over several `tributary run --role process` processes
//! sharing one pipeline's shards through its Kafka consumer group, and how fast it recovers
//! when one of them is killed. It runs the release `tributary` binary itself (`--tributary`),
//! as an operator would, against the real services (`TRIBUTARY_*` environment variables).
//!
//! The pipeline is the count workload of `pipeline` (count per page, the event key, in
//! 1-minute tumbling windows, 10 s out of orderness), declared in a config file, without the
//! raw-event archive (`[engine] archive_raw_events = false`): one group, one task per
//! partition.
//!
//! - `scale drain --from DIR --processes N`: the topic that `pipeline --prefill-only DIR`
//!   filled, drained by N processes started together, each with a fresh PostgreSQL
//!   database and pipeline name (so a fresh consumer group). Measures the time from their
//!   start until the committed checkpoints of every shard cover every offset (polled every
//!   20 ms; rounded up by up to one checkpoint interval), and the CPU time of all N
//!   processes over it, from `/proc` (their whole lives up to then: start-up, joining the
//!   group, the rebalances while the others join), and when every process ran its share
//!   of the P shards, ⌊P/N⌋ or ⌈P/N⌉ (*balanced after*; their `/metrics`,
//!   `tributary_task_owned`, read every 100 ms until a shard is done). Then checks every
//!   result row against the pre-fill's ground truth (`truth.tsv`) and fails on a
//!   difference.
//! - `scale steady --processes N --rate R`: a fresh topic of P partitions, events appended
//!   live (stamped with the current time) at R per second through the `Log` port, and N
//!   processes. Once they run their shares of the shards and every shard's lag (below) has
//!   stayed under one second plus a checkpoint interval for 5 s, measures the processes' CPU time over
//!   `--measure-secs` per million events appended meanwhile: the cost per event of N
//!   processes in a steady state, without the start-up of a drain. Then checks the results
//!   as `failover` does.
//! - `scale failover --processes 2 --rate R`: the same live setting; once the steady state
//!   has lasted `--steady-secs`, SIGKILLs the process owning the most shards (read from its
//!   `/metrics`, `tributary_task_owned`) and measures the time until the lag of each of its
//!   shards is back under one second. A shard's lag is the age of the oldest record its
//!   committed checkpoint has not covered: now minus the time its append returned (0 when
//!   covered). Then stops appending, waits for every shard to cover the end, and checks
//!   every result row against the events appended (exactly once across the kill).
//!
//! Each prints one JSON line on stdout; progress and the processes' log tails on failure
//! go to stderr. The processes' logs are in `--work` (`bench/run.sh` removes it). Everything
//! is named under `--prefix` (`bench_...`): `bench/run.sh` removes it all with `benchctl
//! cleanup`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::{Parser, Subcommand};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tributary_bench::cleanup;
use tributary_bench::events::ClickGenerator;
use tributary_bench::stats::round;
use tributary_bench::{cpu, emit, progress};
use tributary_connectors::registry;
use tributary_core::partition::partition_for;
use tributary_core::pipeline::{PipelineSpec, WindowSpec};
use tributary_core::plan::{self, Definition};
use tributary_core::ports::AnalyticsStore;
use tributary_core::value::Value;
use tributary_core::{StreamName, Timestamp};
use tributary_engine::{Ports, shard_task};

/// The stream of the count workload.
const STREAM: &str = "clicks";
/// Its windows.
const WINDOW_MS: i64 = 60_000;
/// A shard is caught up when its lag is under this.
const CAUGHT_UP: Duration = Duration::from_secs(1);
/// How often the checkpoints are read.
const POLL: Duration = Duration::from_millis(20);

/// Scale-out and failover of `tributary run --role process` processes.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    command: Command,
    /// The `tributary` binary.
    #[arg(long, global = true, default_value = "target/release/tributary")]
    tributary: PathBuf,
    /// The prefix of every name created (databases, topics, keys); must start with
    /// `bench_`.
    #[arg(long, global = true, default_value = "")]
    prefix: String,
    /// Where the config and the processes' logs go.
    #[arg(long, global = true)]
    work: Option<PathBuf>,
    /// The processes' group session timeout (`[log] group_session_timeout`).
    #[arg(long, global = true, default_value = "10s")]
    session_timeout: String,
    /// The pipeline's checkpoint interval, in milliseconds.
    #[arg(long, global = true)]
    checkpoint_interval_ms: Option<u64>,
    /// The Kafka broker's pid, whose CPU time to report.
    #[arg(long, global = true)]
    kafka_pid: Option<u32>,
    /// A label copied into the output line.
    #[arg(long, global = true, default_value = "")]
    label: String,
    /// Give up after this many seconds.
    #[arg(long, global = true, default_value_t = 600)]
    timeout_secs: u64,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Drains a pre-filled topic with N processes.
    Drain(Drain),
    /// N processes under a steady live load: their CPU time per event.
    Steady(Steady),
    /// Kills one of N processes under live load and times the recovery.
    Failover(Failover),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(
        args.prefix.starts_with("bench_"),
        "--prefix must start with bench_"
    );
    let tempdir = tempfile::tempdir()?;
    let work = args.work.clone().unwrap_or(tempdir.path().to_owned());
    std::fs::create_dir_all(&work)?;
    let out = match &args.command {
        Command::Drain(drain) => drain.run(&args, &work).await?,
        Command::Steady(steady) => steady.run(&args, &work).await?,
        Command::Failover(failover) => failover.run(&args, &work).await?,
    };
    emit(&out)
}

/// What `pipeline --prefill-only` wrote to `prefill.json` (the fields read here).
#[derive(Debug, serde::Deserialize)]
struct Prefill {
    workload: String,
    events: usize,
    partitions: u32,
    /// The Kafka adapter's topic prefix.
    topic_prefix: String,
    /// Events per partition (= its end offset).
    expected: BTreeMap<u32, u64>,
}

/// Per (window start, key), the count.
type Counts = BTreeMap<(i64, String), i64>;

/// `scale drain`: see the module docs.
#[derive(Debug, clap::Args)]
struct Drain {
    /// The directory `pipeline --prefill-only` wrote (`--workload count`).
    #[arg(long)]
    from: PathBuf,
    /// The processes.
    #[arg(long)]
    processes: usize,
}

impl Drain {
    #[allow(clippy::cast_precision_loss, clippy::too_many_lines)]
    async fn run(&self, args: &Args, work: &Path) -> anyhow::Result<serde_json::Value> {
        let (from, processes) = (self.from.as_path(), self.processes);
        let prefill: Prefill = serde_json::from_slice(&std::fs::read(from.join("prefill.json"))?)
            .context("bad prefill.json")?;
        ensure!(
            prefill.workload == "count",
            "a count pre-fill is needed, not {}",
            prefill.workload
        );
        let truth = read_truth(&from.join("truth.tsv"))?;
        let interval = args.checkpoint_interval_ms.unwrap_or(1_000);
        let setup = Setup::new(args, work, &prefill.topic_prefix, interval).await?;
        let stream = StreamName::new(STREAM)?;

        progress(&format!(
            "drain: {} events, {processes} processes",
            prefill.events
        ));
        let watch = Watch::start(args.kafka_pid);
        let started = Instant::now();
        let mut cluster = Cluster::start(&setup, processes)?;
        cluster
            .wait_ready(started + Duration::from_secs(60))
            .await?;
        let deadline = started + Duration::from_secs(args.timeout_secs);
        let tasks: Vec<(String, u32)> = (0..prefill.partitions)
            .map(|p| (shard_task(&setup.pipeline, p), p))
            .collect();
        let mut pending = tasks.clone();
        let mut next = 0;
        // When every process ran its share of the shards, and the shares.
        let mut balanced: Option<(f64, Vec<usize>)> = None;
        let mut look = Instant::now();
        while !pending.is_empty() {
            cluster.check_alive()?;
            ensure!(
                Instant::now() < deadline,
                "not drained after {} s",
                args.timeout_secs
            );
            tokio::time::sleep(POLL).await;
            if balanced.is_none() && pending.len() == tasks.len() && Instant::now() >= look {
                look = Instant::now() + Duration::from_millis(100);
                let owned = cluster.owned_tasks().await;
                if is_balanced(&owned, prefill.partitions) {
                    let shares = owned.iter().map(Vec::len).collect();
                    balanced = Some((started.elapsed().as_secs_f64(), shares));
                }
            }
            next %= pending.len();
            let (task, partition) = &pending[next];
            let end = prefill.expected.get(partition).copied().unwrap_or(0);
            let offset =
                committed(setup.ports.analytics.as_ref(), task, &stream, *partition).await?;
            if offset >= end {
                pending.remove(next);
            } else {
                next += 1;
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        let cpu_s = cluster.cpu_seconds();
        let watched = watch.stop();
        let owned = cluster.owned_tasks().await;
        cluster.stop().await;
        let got = results(setup.ports.analytics.as_ref(), &setup.spec).await?;
        check(&got, &truth)?;
        let events = prefill.events as f64;
        Ok(json!({
            "bench": "scale-drain",
            "label": args.label,
            "processes": processes,
            "events": prefill.events,
            "partitions": prefill.partitions,
            "checkpoint_interval_ms": interval,
            "seconds": round(seconds, 3),
            "events_per_sec": round(events / seconds, 0),
            "cpu_seconds": round(cpu_s, 2),
            "cpu_s_per_million_events": round(cpu_s / events * 1e6, 2),
            "cores_busy": watched["cores_busy"],
            "kafka_cpu_s": watched["processes"]["kafka_cpu_s"],
            "postgres_cpu_s": watched["postgres_cpu_s"],
            "tasks_per_process": balanced.as_ref().map_or_else(
                || owned.iter().map(Vec::len).collect::<Vec<_>>(),
                |(_, shares)| shares.clone(),
            ),
            "balanced_after_s": balanced.as_ref().map(|(after, _)| round(*after, 3)),
            "windows": truth.len(),
            "windows_equal": true,
        }))
    }
}

/// Whether the processes run all `partitions` shards, each ⌊P/N⌋ or ⌈P/N⌉ of them.
fn is_balanced(owned: &[Vec<String>], partitions: u32) -> bool {
    let total: usize = owned.iter().map(Vec::len).sum();
    let n = owned.len().max(1);
    let p = partitions as usize;
    total == p
        && owned
            .iter()
            .all(|o| o.len() == p / n || o.len() == p.div_ceil(n))
}

/// `scale failover`: see the module docs.
#[derive(Debug, clap::Args)]
struct Failover {
    /// The processes.
    #[arg(long, default_value_t = 2)]
    processes: usize,
    /// Partitions of the fresh topic.
    #[arg(long, default_value_t = 6)]
    partitions: u32,
    /// Events appended per second.
    #[arg(long, default_value_t = 20_000)]
    rate: u64,
    /// How long every shard's lag must stay under one second before the kill.
    #[arg(long, default_value_t = 10)]
    steady_secs: u64,
}

/// The appender's record: when each append returned, with the end offsets then, and the
/// ground truth of everything appended.
#[derive(Debug, Default)]
struct Appended {
    /// (when the append returned, the end offset of each partition then); increasing.
    samples: Vec<(Instant, Vec<u64>)>,
    truth: Counts,
    events: u64,
}

impl Appended {
    /// The age of the oldest record of `partition` at or after `offset`: now minus when
    /// its append returned; zero when there is none.
    fn lag(&self, partition: usize, offset: u64, now: Instant) -> Duration {
        let first = self
            .samples
            .partition_point(|(_, ends)| ends[partition] <= offset);
        self.samples
            .get(first)
            .map_or(Duration::ZERO, |(at, _)| now.saturating_duration_since(*at))
    }
}

/// A live run: N processes on a fresh topic fed at a fixed rate.
struct Live {
    setup: Setup,
    stream: StreamName,
    partitions: u32,
    appended: Arc<Mutex<Appended>>,
    appender: tokio::task::JoinHandle<anyhow::Result<()>>,
    /// Stops the appender between two appends.
    stop_appending: CancellationToken,
    cluster: Cluster,
    started: Instant,
    deadline: Instant,
}

impl Live {
    /// Creates a topic of `partitions`, starts appending `rate` events per second to it
    /// and `processes` processes, and waits until they are ready.
    async fn start(
        args: &Args,
        work: &Path,
        processes: usize,
        partitions: u32,
        rate: u64,
    ) -> anyhow::Result<Self> {
        let interval = args.checkpoint_interval_ms.unwrap_or(200);
        let topic_prefix = format!("{}.", args.prefix);
        let setup = Setup::new(args, work, &topic_prefix, interval).await?;
        let stream = StreamName::new(STREAM)?;
        let partitions = setup.ports.log.ensure_stream(&stream, partitions).await?;
        let appended = Arc::new(Mutex::new(Appended::default()));
        let stop_appending = CancellationToken::new();
        let appender = tokio::spawn(append(
            setup.ports.clone(),
            stream.clone(),
            partitions,
            rate,
            Arc::clone(&appended),
            stop_appending.clone(),
        ));
        let mut cluster = Cluster::start(&setup, processes)?;
        let started = Instant::now();
        cluster
            .wait_ready(started + Duration::from_secs(60))
            .await?;
        Ok(Self {
            setup,
            stream,
            partitions,
            appended,
            appender,
            stop_appending,
            cluster,
            started,
            deadline: started + Duration::from_secs(args.timeout_secs),
        })
    }

    /// The largest lag of `shards` now.
    async fn lag(&self, shards: &[u32]) -> anyhow::Result<Duration> {
        let mut worst = Duration::ZERO;
        for &p in shards {
            let task = shard_task(&self.setup.pipeline, p);
            let offset =
                committed(self.setup.ports.analytics.as_ref(), &task, &self.stream, p).await?;
            let lag = lock(&self.appended).lag(p as usize, offset, Instant::now());
            worst = worst.max(lag);
        }
        Ok(worst)
    }

    fn all(&self) -> Vec<u32> {
        (0..self.partitions).collect()
    }

    /// Waits until the processes run their shares of the shards and every shard's lag has
    /// stayed under `caught_up` for `steady`.
    async fn wait_steady(&mut self, steady: Duration, caught_up: Duration) -> anyhow::Result<()> {
        let all = self.all();
        let mut since: Option<Instant> = None;
        while since.is_none_or(|since| since.elapsed() < steady) {
            self.cluster.check_alive()?;
            ensure!(Instant::now() < self.deadline, "no steady state");
            ensure!(!self.appender.is_finished(), "the appender stopped");
            tokio::time::sleep(POLL).await;
            if self.lag(&all).await? >= caught_up {
                since = None;
            } else if since.is_none()
                && is_balanced(&self.cluster.owned_tasks().await, self.partitions)
            {
                since = Some(Instant::now());
            }
        }
        Ok(())
    }

    /// The processes' CPU seconds and the events appended so far.
    fn sample(&self) -> (Instant, f64, u64) {
        let events = lock(&self.appended).events;
        (Instant::now(), self.cluster.cpu_seconds(), events)
    }

    /// Stops appending, waits until every shard has read everything, stops the processes
    /// and checks every result row against the events appended: exactly once. Returns the
    /// events and the result rows.
    async fn finish(self) -> anyhow::Result<(u64, usize)> {
        // Not aborted: an append cut short may still reach the log, unrecorded.
        self.stop_appending.cancel();
        self.appender.await??;
        let (ends, truth, events) = {
            let appended = lock(&self.appended);
            let ends = appended
                .samples
                .last()
                .map(|(_, ends)| ends.clone())
                .unwrap_or_default();
            (ends, appended.truth.clone(), appended.events)
        };
        let analytics = self.setup.ports.analytics.as_ref();
        for p in 0..self.partitions {
            let task = shard_task(&self.setup.pipeline, p);
            loop {
                ensure!(Instant::now() < self.deadline, "{task} does not catch up");
                let offset = committed(analytics, &task, &self.stream, p).await?;
                if offset >= ends[p as usize] {
                    break;
                }
                tokio::time::sleep(POLL).await;
            }
        }
        self.cluster.stop().await;
        let got = results(analytics, &self.setup.spec).await?;
        check(&got, &truth)?;
        Ok((events, truth.len()))
    }
}

impl Failover {
    async fn run(&self, args: &Args, work: &Path) -> anyhow::Result<serde_json::Value> {
        let mut live = Live::start(args, work, self.processes, self.partitions, self.rate).await?;
        progress(&format!(
            "failover: {} processes, {} events/s; waiting for a steady state",
            self.processes, self.rate
        ));
        live.wait_steady(Duration::from_secs(self.steady_secs), CAUGHT_UP)
            .await?;
        let steady_after = live.started.elapsed().as_secs_f64();
        let owned = live.cluster.owned_tasks().await;
        let (victim, tasks) = owned
            .iter()
            .enumerate()
            .max_by_key(|(_, tasks)| tasks.len())
            .context("no process")?;
        let shards: Vec<u32> = tasks
            .iter()
            .filter_map(|t| t.rsplit_once('#').and_then(|(_, p)| p.parse().ok()))
            .collect();
        ensure!(!shards.is_empty(), "no process owns a shard: {owned:?}");
        progress(&format!(
            "failover: SIGKILL process {victim}, owner of {tasks:?}"
        ));
        let killed_wall = Timestamp::now().millis();
        let killed = Instant::now();
        live.cluster.kill(victim)?;
        let mut peak = Duration::ZERO;
        let recovered = loop {
            live.cluster.check_alive()?;
            ensure!(Instant::now() < live.deadline, "not recovered");
            tokio::time::sleep(POLL).await;
            let lag = live.lag(&shards).await?;
            peak = peak.max(lag);
            if peak >= CAUGHT_UP && lag < CAUGHT_UP {
                break killed.elapsed();
            }
        };
        let restores = live.cluster.restores_after(killed_wall, tasks);
        let (partitions, interval) = (live.partitions, live.setup.spec.checkpoint_interval);
        // Exactly once across the kill: every event appended counted once.
        let (events, windows) = live.finish().await?;
        let session = humantime_secs(&args.session_timeout)?;
        Ok(json!({
            "bench": "scale-failover",
            "label": args.label,
            "processes": self.processes,
            "partitions": partitions,
            "rate": self.rate,
            "checkpoint_interval_ms": interval.as_millis(),
            "session_timeout_s": session,
            "steady_after_s": round(steady_after, 3),
            "victim_shards": shards,
            "recovered_s": round(recovered.as_secs_f64(), 3),
            "after_session_timeout_s": round(recovered.as_secs_f64() - session, 3),
            "peak_lag_s": round(peak.as_secs_f64(), 3),
            "restored_after_kill_s": restores.iter().map(|r| round(r.0, 3)).collect::<Vec<_>>(),
            "unowned_ms": restores.iter().map(|r| r.1).collect::<Vec<_>>(),
            "events": events,
            "windows": windows,
            "windows_equal": true,
        }))
    }
}

/// `scale steady`: see the module docs.
#[derive(Debug, clap::Args)]
struct Steady {
    /// The processes.
    #[arg(long)]
    processes: usize,
    /// Partitions of the fresh topic.
    #[arg(long, default_value_t = 6)]
    partitions: u32,
    /// Events appended per second.
    #[arg(long, default_value_t = 100_000)]
    rate: u64,
    /// How long the CPU time is measured.
    #[arg(long, default_value_t = 20)]
    measure_secs: u64,
}

impl Steady {
    #[allow(clippy::cast_precision_loss)]
    async fn run(&self, args: &Args, work: &Path) -> anyhow::Result<serde_json::Value> {
        let mut live = Live::start(args, work, self.processes, self.partitions, self.rate).await?;
        progress(&format!(
            "steady: {} processes, {} events/s; waiting for a steady state",
            self.processes, self.rate
        ));
        // A committed lag grows up to a checkpoint interval between commits.
        let caught_up = CAUGHT_UP + live.setup.spec.checkpoint_interval;
        live.wait_steady(Duration::from_secs(5), caught_up).await?;
        let steady_after = live.started.elapsed().as_secs_f64();
        let (from, cpu_from, events_from) = live.sample();
        let mut worst = Duration::ZERO;
        while from.elapsed() < Duration::from_secs(self.measure_secs) {
            live.cluster.check_alive()?;
            tokio::time::sleep(Duration::from_millis(100)).await;
            worst = worst.max(live.lag(&live.all()).await?);
        }
        let (to, cpu_to, events_to) = live.sample();
        let shares: Vec<usize> = live
            .cluster
            .owned_tasks()
            .await
            .iter()
            .map(Vec::len)
            .collect();
        let (partitions, interval) = (live.partitions, live.setup.spec.checkpoint_interval);
        let (_, windows) = live.finish().await?;
        let events = (events_to - events_from) as f64;
        let secs = to.duration_since(from).as_secs_f64();
        let cpu = cpu_to - cpu_from;
        Ok(json!({
            "bench": "scale-steady",
            "label": args.label,
            "processes": self.processes,
            "partitions": partitions,
            "rate": self.rate,
            "checkpoint_interval_ms": interval.as_millis(),
            "steady_after_s": round(steady_after, 3),
            "seconds": round(secs, 3),
            "events": events,
            "events_per_sec": round(events / secs, 0),
            "cpu_seconds": round(cpu, 2),
            "cpu_s_per_million_events": round(cpu / events * 1e6, 2),
            "cores": round(cpu / secs, 2),
            "max_lag_s": round(worst.as_secs_f64(), 3),
            "tasks_per_process": shares,
            "windows": windows,
            "windows_equal": true,
        }))
    }
}

/// Appends clicks stamped with the current time (up to 2 s out of order) at `rate` per
/// second, 20 batches a second, recording each append in `appended`, until `stop`.
async fn append(
    ports: Ports,
    stream: StreamName,
    partitions: u32,
    rate: u64,
    appended: Arc<Mutex<Appended>>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let mut generator = ClickGenerator::new("f", 1);
    let tick = Duration::from_millis(50);
    let per_tick = usize::try_from((rate / 20).max(1))?;
    let mut ends = vec![0_u64; partitions as usize];
    let mut clock = tokio::time::interval(tick);
    clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            _ = clock.tick() => {}
        }
        let now = Timestamp::now().millis();
        let mut events = Vec::with_capacity(per_tick);
        let mut truth = Counts::new();
        for _ in 0..per_tick {
            let ts = now - generator.jitter_ms(2_000);
            let click = generator.click(ts);
            *truth
                .entry((ts.div_euclid(WINDOW_MS) * WINDOW_MS, click.key.clone()))
                .or_default() += 1;
            ends[partition_for(&click.key, partitions) as usize] += 1;
            events.push(click.to_event(&stream)?);
        }
        ports.log.append(&stream, &events).await?;
        let at = Instant::now();
        let mut appended = lock(&appended);
        appended.samples.push((at, ends.clone()));
        appended.events += events.len() as u64;
        for (window, n) in truth {
            *appended.truth.entry(window).or_default() += n;
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Seconds of a humantime duration such as `"10s"` (whole seconds or milliseconds).
#[allow(clippy::cast_precision_loss)]
fn humantime_secs(text: &str) -> anyhow::Result<f64> {
    if let Some(ms) = text.strip_suffix("ms") {
        return Ok(ms.parse::<f64>()? / 1000.0);
    }
    let secs = text
        .strip_suffix('s')
        .with_context(|| format!("{text:?}: give the session timeout in s or ms"))?;
    Ok(secs.parse()?)
}

/// The resources of one measurement: a fresh database, key prefix and pipeline name (so a
/// fresh consumer group), the adapters to read them, and the config file of the processes.
struct Setup {
    ports: Ports,
    pipeline: String,
    spec: PipelineSpec,
    config: PathBuf,
    tributary: PathBuf,
    work: PathBuf,
}

impl Setup {
    async fn new(
        args: &Args,
        work: &Path,
        topic_prefix: &str,
        interval_ms: u64,
    ) -> anyhow::Result<Self> {
        let name = &args.prefix;
        let services = cleanup::Services::create(name, topic_prefix).await?;
        let (log, analytics, documents, cache) = services.configs();
        // Connecting creates the schema, before the processes race to.
        let ports = registry::build(&log, &analytics, &documents, &cache)
            .await
            .context("cannot connect the adapters")?;
        // The pipeline's name makes its group's: one of its own per measurement.
        let pipeline = format!("clicks_{}", name.trim_start_matches("bench_"));
        let interval = Duration::from_millis(interval_ms);
        let spec = plan::plan(&Definition {
            name: pipeline.clone(),
            sources: vec![STREAM.to_owned()],
            lookups: Vec::new(),
            filter: None,
            key: None,
            window: WindowSpec::Tumbling { size_ms: WINDOW_MS },
            aggregates: None,
            allowed_lateness: Duration::ZERO,
            max_out_of_orderness: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            finalize_idle_after: None,
            checkpoint_interval: interval,
        })
        .context("the pipeline does not plan")?;
        // The same pipeline for `tributary run`.
        let config = format!(
            r#"[log]
type = "kafka"
brokers = "{brokers}"
topic_prefix = "{topic_prefix}"
group_session_timeout = "{session}"

[analytics]
type = "postgres"
url = "{postgres}"

[documents]
type = "mongodb"
url = "{mongo}"
database = "{name}"

[cache]
type = "redis"
url = "{redis}"
key_prefix = "{name}:"

[engine]
archive_raw_events = false

[[streams]]
name = "{STREAM}"

[[pipelines]]
name = "{pipeline}"
sources = ["{STREAM}"]
window = {{ type = "tumbling", size = "1m" }}
max_out_of_orderness = "10s"
idle_timeout = "30s"
checkpoint_interval = "{interval_ms}ms"
"#,
            brokers = services.kafka.brokers,
            session = args.session_timeout,
            postgres = services.postgres,
            mongo = services.mongo.url,
            redis = services.redis.url,
        );
        let path = work.join(format!("{name}.toml"));
        std::fs::write(&path, config)?;
        Ok(Self {
            ports,
            pipeline,
            spec,
            config: path,
            tributary: args.tributary.clone(),
            work: work.to_owned(),
        })
    }
}

/// The `tributary run --role process` processes of one measurement.
struct Cluster {
    processes: Vec<Member>,
    client: reqwest::Client,
}

struct Member {
    child: Child,
    port: u16,
    log: PathBuf,
    /// Its CPU ticks when it was killed.
    killed_ticks: Option<u64>,
}

impl Cluster {
    /// Starts `n` processes of `setup`'s config.
    fn start(setup: &Setup, n: usize) -> anyhow::Result<Self> {
        let mut processes = Vec::with_capacity(n);
        for i in 0..n {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            let log = setup
                .work
                .join(format!("{}-{i}.log", setup.pipeline.replace('#', "-")));
            let out = std::fs::File::create(&log)?;
            let child = Process::new(&setup.tributary)
                .args([
                    "run",
                    "--role",
                    "process",
                    "--log-format",
                    "json",
                    "--config",
                ])
                .arg(&setup.config)
                .env("TRIBUTARY__HTTP__LISTEN", format!("127.0.0.1:{port}"))
                .env("TRIBUTARY_BOOTSTRAP_API_KEY", "bench-scale")
                .stdin(Stdio::null())
                .stdout(out.try_clone()?)
                .stderr(out)
                .spawn()
                .with_context(|| format!("cannot run {}", setup.tributary.display()))?;
            processes.push(Member {
                child,
                port,
                log,
                killed_ticks: None,
            });
        }
        Ok(Self {
            processes,
            client: reqwest::Client::new(),
        })
    }

    /// Waits until every process answers `/readyz` with 200.
    async fn wait_ready(&mut self, deadline: Instant) -> anyhow::Result<()> {
        for i in 0..self.processes.len() {
            loop {
                self.check_alive()?;
                let url = format!("http://127.0.0.1:{}/readyz", self.processes[i].port);
                if let Ok(r) = self.client.get(&url).send().await
                    && r.status() == 200
                {
                    break;
                }
                ensure!(Instant::now() < deadline, "process {i} not ready in time");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    /// Fails (with the log's tail) if a process not killed here has exited.
    fn check_alive(&mut self) -> anyhow::Result<()> {
        for (i, member) in self.processes.iter_mut().enumerate() {
            if member.killed_ticks.is_none()
                && let Some(status) = member.child.try_wait()?
            {
                let text = std::fs::read_to_string(&member.log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                bail!(
                    "process {i} exited ({status}); the end of its log:\n{}",
                    lines[lines.len().saturating_sub(30)..].join("\n")
                );
            }
        }
        Ok(())
    }

    /// The CPU seconds the processes used so far (the killed ones up to their kill).
    #[allow(clippy::cast_precision_loss)]
    fn cpu_seconds(&self) -> f64 {
        self.processes
            .iter()
            .map(|m| {
                m.killed_ticks
                    .or_else(|| cpu::process_ticks(m.child.id()))
                    .unwrap_or(0) as f64
                    / cpu::TICKS_PER_SEC
            })
            .sum()
    }

    /// The tasks each process runs, from its `/metrics` (`tributary_task_owned{task} 1`).
    async fn owned_tasks(&self) -> Vec<Vec<String>> {
        let mut owned = Vec::with_capacity(self.processes.len());
        for member in &self.processes {
            let url = format!("http://127.0.0.1:{}/metrics", member.port);
            let text = match self.client.get(&url).send().await {
                Ok(r) => r.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            owned.push(
                text.lines()
                    .filter_map(|line| {
                        let rest = line.strip_prefix("tributary_task_owned{task=\"")?;
                        let (task, value) = rest.split_once("\"} ")?;
                        (value.trim() == "1").then(|| task.to_owned())
                    })
                    .collect(),
            );
        }
        owned
    }

    /// SIGKILLs process `i`.
    fn kill(&mut self, i: usize) -> anyhow::Result<()> {
        let member = &mut self.processes[i];
        member.killed_ticks = Some(cpu::process_ticks(member.child.id()).unwrap_or(0));
        member.child.kill()?;
        member.child.wait()?;
        Ok(())
    }

    /// For each of `tasks` restored by a process since `since` (epoch ms): the seconds
    /// after `since` of its log line "task restored from its last checkpoint", and its
    /// `unowned_ms`.
    #[allow(clippy::cast_precision_loss)]
    fn restores_after(&self, since: i64, tasks: &[String]) -> Vec<(f64, i64)> {
        let mut restores = Vec::new();
        for member in &self.processes {
            let text = std::fs::read_to_string(&member.log).unwrap_or_default();
            for line in text.lines() {
                let Ok(line) = serde_json::from_str::<serde_json::Value>(line) else {
                    continue;
                };
                if line["message"] != "task restored from its last checkpoint"
                    || !tasks.iter().any(|t| line["task"] == t.as_str())
                {
                    continue;
                }
                let at = line["@timestamp"]
                    .as_str()
                    .and_then(|t| Timestamp::parse_rfc3339(t).ok())
                    .map_or(0, Timestamp::millis);
                if at >= since {
                    let unowned = line["unowned_ms"].as_i64().unwrap_or(-1);
                    restores.push(((at - since) as f64 / 1000.0, unowned));
                }
            }
        }
        restores
    }

    /// SIGTERMs the processes still running (each leaves the group after a last
    /// checkpoint) and waits for them, SIGKILLing any still running after 60 s.
    async fn stop(mut self) {
        for member in &self.processes {
            if member.killed_ticks.is_none() {
                let _ = Process::new("kill")
                    .args(["-TERM", &member.child.id().to_string()])
                    .status();
            }
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        for member in &mut self.processes {
            while matches!(member.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let _ = member.child.kill();
            let _ = member.child.wait();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for member in &mut self.processes {
            let _ = member.child.kill();
            let _ = member.child.wait();
        }
    }
}

/// CPU of the machine, the Kafka broker and PostgreSQL over a measurement.
struct Watch {
    before: cpu::Sample,
    watched: Vec<(String, u32)>,
    postgres: cpu::CommandTicks,
    postgres_before: u64,
}

impl Watch {
    fn start(kafka_pid: Option<u32>) -> Self {
        let watched: Vec<(String, u32)> = kafka_pid
            .map(|pid| ("kafka".to_owned(), pid))
            .into_iter()
            .collect();
        let mut postgres = cpu::CommandTicks::new("postgres");
        let postgres_before = postgres.read();
        Self {
            before: cpu::sample(&watched),
            watched,
            postgres,
            postgres_before,
        }
    }

    /// `cores_busy`, `processes.kafka_cpu_s` and `postgres_cpu_s` since the start.
    #[allow(clippy::cast_precision_loss)]
    fn stop(mut self) -> serde_json::Value {
        let mut out = cpu::between(&self.before, &cpu::sample(&self.watched));
        let postgres = self.postgres.read().saturating_sub(self.postgres_before);
        out["postgres_cpu_s"] = json!(round(postgres as f64 / cpu::TICKS_PER_SEC, 2));
        out
    }
}

/// The next offset to read of `stream`'s `partition` in `task`'s committed checkpoint (0
/// before its first).
async fn committed(
    analytics: &dyn AnalyticsStore,
    task: &str,
    stream: &StreamName,
    partition: u32,
) -> anyhow::Result<u64> {
    Ok(analytics
        .load_checkpoint(task)
        .await?
        .and_then(|checkpoint| {
            checkpoint
                .offsets
                .iter()
                .find(|o| &o.stream == stream && o.partition == partition)
                .map(|o| o.next_offset)
        })
        .unwrap_or(0))
}

/// Every result row of `spec`, open or closed, as counts.
async fn results(analytics: &dyn AnalyticsStore, spec: &PipelineSpec) -> anyhow::Result<Counts> {
    let rows = tributary_bench::results::all_rows(analytics, spec).await?;
    let mut counts = Counts::new();
    for row in rows {
        let Some(Value::Int(count)) = row.values.first() else {
            bail!("no count in {row:?}");
        };
        let previous = counts.insert((row.window_start.millis(), row.key.clone()), *count);
        ensure!(
            previous.is_none(),
            "two rows for one window and key: {row:?}"
        );
    }
    Ok(counts)
}

/// Fails unless `got` equals `truth`, naming the first differences.
fn check(got: &Counts, truth: &Counts) -> anyhow::Result<()> {
    if got == truth {
        return Ok(());
    }
    let differ: Vec<String> = truth
        .keys()
        .chain(got.keys())
        .filter(|k| got.get(*k) != truth.get(*k))
        .take(5)
        .map(|k| format!("{k:?}: {:?}, expected {:?}", got.get(k), truth.get(k)))
        .collect();
    bail!(
        "the results differ from the ground truth ({} rows, {} expected; counted {}, {} \
         expected). First ones: {}",
        got.len(),
        truth.len(),
        got.values().sum::<i64>(),
        truth.values().sum::<i64>(),
        differ.join("; ")
    )
}

/// The ground truth `pipeline --prefill-only` wrote: `window start <TAB> key <TAB> count`.
fn read_truth(path: &Path) -> anyhow::Result<Counts> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut truth = Counts::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        let [start, key, count] = fields[..] else {
            bail!("bad truth.tsv line {line:?}");
        };
        truth.insert((start.parse()?, key.to_owned()), count.parse()?);
    }
    Ok(truth)
}
