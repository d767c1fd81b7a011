//! `benchctl`: the small service chores of `bench/run.sh`.
//!
//! - `prefix`: prints a fresh run prefix (`bench_<12 hex>`).
//! - `free-port`: prints a TCP port of 127.0.0.1 that is free right now.
//! - `create-topic --name N --partitions P`: creates a Kafka topic (for the baseline).
//! - `create-db --name N`: creates a PostgreSQL database and prints its URL.
//! - `cleanup --prefix bench_...`: removes every Kafka topic, PostgreSQL and MongoDB
//!   database and Redis key whose name starts with the prefix; prints what it removed.
//! - `watch-drain [--watch NAME=PID]... [--watch-command NAME]... -- PROGRAM ARGS...`:
//!   runs a `pipeline` binary (this one's, or that of an older commit, unchanged) and
//!   measures its CPU time over the drain from outside: from the moment it prints its
//!   `…: draining` line on stderr to `pipeline_seconds` later (the drain time it reports),
//!   sampling `/proc/{pid}/stat` every 10 ms. Prints the program's JSON line with a
//!   `watched` object added: the program's CPU seconds over the drain and per million
//!   events, the cores the machine kept busy meanwhile, and the CPU seconds of each watched
//!   process (`--watch kafka=PID`) and command (`--watch-command postgres`: all its
//!   processes) over the same span; and the program's CPU seconds and wall-clock seconds
//!   over its whole life (`process_cpu_seconds`, `process_seconds`: start-up included, up
//!   to the last reading, at most 10 ms before it ended). Any program that prints the marker
//!   and a JSON line with `events` and `pipeline_seconds` will do (the `peers` suite runs
//!   Flink's and Kafka Streams' JVMs under it).
//!
//! Service addresses come from `TRIBUTARY_KAFKA_BROKERS`, `TRIBUTARY_POSTGRES_URL`,
//! `TRIBUTARY_MONGODB_URL` and `TRIBUTARY_REDIS_URL`.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command as Process, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::{Parser, Subcommand};
use tributary_bench::cleanup::{self, env};
use tributary_bench::stats::round;
use tributary_bench::{cpu, emit};

/// Service chores of the benchmark script.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Prints a fresh run prefix.
    Prefix,
    /// Prints a free TCP port of 127.0.0.1.
    FreePort,
    /// Creates a Kafka topic.
    CreateTopic {
        /// The topic.
        #[arg(long)]
        name: String,
        /// Its partitions.
        #[arg(long, default_value_t = 3)]
        partitions: i32,
    },
    /// Creates a PostgreSQL database (`[a-z0-9_]+`) and prints its URL.
    CreateDb {
        /// The database.
        #[arg(long)]
        name: String,
    },
    /// Removes everything named with the prefix.
    Cleanup {
        /// Must start with `bench_`.
        #[arg(long)]
        prefix: String,
    },
    /// Runs a `pipeline` binary and measures its CPU time over the drain.
    WatchDrain {
        /// The stderr line (a part of it) that marks the start of the drain.
        #[arg(long, default_value = ": draining")]
        marker: String,
        /// Another process whose CPU time over the drain to report, as NAME=PID.
        #[arg(long = "watch", value_parser = parse_watch)]
        watched: Vec<(String, u32)>,
        /// A command name (`/proc/{pid}/comm`) whose processes' CPU time over the drain
        /// to report, summed.
        #[arg(long = "watch-command")]
        commands: Vec<String>,
        /// The program and its arguments.
        #[arg(trailing_var_arg = true, required = true, allow_hyphen_values = true)]
        program: Vec<String>,
    },
}

fn parse_watch(text: &str) -> Result<(String, u32), String> {
    let (name, pid) = text.split_once('=').ok_or("expected NAME=PID")?;
    let pid = pid.parse().map_err(|e| format!("bad pid: {e}"))?;
    Ok((name.to_owned(), pid))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Command::Prefix => emit(&serde_json::Value::String(cleanup::run_prefix())),
        Command::FreePort => {
            let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
            emit(&serde_json::json!(listener.local_addr()?.port()))
        }
        Command::CreateTopic { name, partitions } => {
            cleanup::create_topic(&env("TRIBUTARY_KAFKA_BROKERS")?, &name, partitions).await
        }
        Command::CreateDb { name } => {
            let url =
                cleanup::create_postgres_database(&env("TRIBUTARY_POSTGRES_URL")?, &name).await?;
            emit(&serde_json::Value::String(url))
        }
        Command::Cleanup { prefix } => {
            let removed = cleanup::remove_all(&prefix).await?;
            emit(&serde_json::to_value(&removed)?)
        }
        Command::WatchDrain {
            marker,
            watched,
            commands,
            program,
        } => {
            let out = tokio::task::spawn_blocking(move || {
                watch_drain(&marker, &watched, &commands, &program)
            })
            .await??;
            emit(&out)
        }
    }
}

/// CPU counters at one instant: the program's, the machine's, each watched process's and
/// command's.
#[derive(Debug, Clone)]
struct Reading {
    at: Instant,
    program: u64,
    machine: Option<(u64, u64)>,
    others: Vec<Option<u64>>,
}

impl Reading {
    fn take(
        pid: u32,
        watched: &[(String, u32)],
        commands: &mut [cpu::CommandTicks],
    ) -> Option<Self> {
        Some(Self {
            program: cpu::process_ticks(pid)?,
            at: Instant::now(),
            machine: cpu::machine_ticks(),
            others: watched
                .iter()
                .map(|(_, pid)| cpu::process_ticks(*pid))
                .chain(commands.iter_mut().map(|c| Some(c.read())))
                .collect(),
        })
    }
}

/// See the module docs.
#[allow(clippy::cast_precision_loss)]
fn watch_drain(
    marker: &str,
    watched: &[(String, u32)],
    command_names: &[String],
    program: &[String],
) -> anyhow::Result<serde_json::Value> {
    let (name, arguments) = program.split_first().context("no program")?;
    let mut child = Process::new(name)
        .args(arguments)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {name}"))?;
    let pid = child.id();
    // When the program printed the marker.
    let marked: Arc<Mutex<Option<Instant>>> = Arc::default();
    let stderr = child.stderr.take().context("no stderr")?;
    let stderr = {
        let (marked, marker) = (Arc::clone(&marked), marker.to_owned());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains(&marker) {
                    marked
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .get_or_insert_with(Instant::now);
                }
                let _ = writeln!(std::io::stderr().lock(), "{line}");
            }
        })
    };
    let mut stdout = child.stdout.take().context("no stdout")?;
    let stdout = std::thread::spawn(move || {
        let mut text = String::new();
        stdout.read_to_string(&mut text).map(|_| text)
    });
    // Readings every 10 ms from the marker on, until the program ends.
    let mut commands: Vec<cpu::CommandTicks> = command_names
        .iter()
        .map(|c| cpu::CommandTicks::new(c))
        .collect();
    let mut readings: Vec<Reading> = Vec::new();
    // The program's CPU ticks and the time of the last reading before it ended: its whole
    // life's CPU time (start-up and shutdown included; it starts from 0).
    let spawned = Instant::now();
    let mut last: Option<(u64, Instant)> = None;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        let started = marked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some();
        if started {
            if let Some(reading) = Reading::take(pid, watched, &mut commands) {
                last = Some((reading.program, reading.at));
                readings.push(reading);
            }
        } else if let Some(ticks) = cpu::process_ticks(pid) {
            last = Some((ticks, Instant::now()));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = stderr.join();
    let text = stdout
        .join()
        .map_err(|_| anyhow::anyhow!("the stdout reader panicked"))??;
    ensure!(status.success(), "{name} failed ({status})");
    let line = text.lines().last().context("no output line")?;
    let mut out: serde_json::Value = serde_json::from_str(line).context("output not JSON")?;
    let Some(start) = readings.first() else {
        bail!("{name} never printed {marker:?}");
    };
    let drain = out["pipeline_seconds"]
        .as_f64()
        .context("no pipeline_seconds in the output")?;
    let events = out["events"].as_f64().context("no events in the output")?;
    // The first reading at or after the drain's end.
    let end_at = start.at + Duration::from_secs_f64(drain);
    let Some(end) = readings.iter().find(|r| r.at >= end_at) else {
        bail!("no reading after the drain's end");
    };
    let secs = |a: u64, b: u64| round(b.saturating_sub(a) as f64 / cpu::TICKS_PER_SEC, 2);
    let program_cpu = secs(start.program, end.program);
    let cores_busy = match (start.machine, end.machine) {
        (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => {
            let cpus = std::thread::available_parallelism().map_or(1, usize::from) as f64;
            Some(round((b1 - b0) as f64 / (t1 - t0) as f64 * cpus, 2))
        }
        _ => None,
    };
    let mut others = serde_json::Map::new();
    let names = watched
        .iter()
        .map(|(n, _)| n.as_str())
        .chain(command_names.iter().map(String::as_str));
    for (i, other) in names.enumerate() {
        let value = match (start.others[i], end.others[i]) {
            (Some(a), Some(b)) => Some(secs(a, b)),
            _ => None,
        };
        others.insert(format!("{other}_cpu_s"), serde_json::json!(value));
    }
    out["watched"] = serde_json::json!({
        "drain_cpu_seconds": program_cpu,
        "cpu_s_per_million_events": round(program_cpu / events * 1e6, 2),
        "seconds": round(end.at.duration_since(start.at).as_secs_f64(), 3),
        "cores_busy": cores_busy,
        "processes": others,
        "process_cpu_seconds": last.map(|(ticks, _)| secs(0, ticks)),
        "process_seconds": last.map(|(_, at)| round(at.duration_since(spawned).as_secs_f64(), 3)),
    });
    Ok(out)
}
