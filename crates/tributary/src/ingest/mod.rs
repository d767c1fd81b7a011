//! `tributary ingest --config FILE --stream S FILE...`: streams NDJSON or CSV files (plain,
//! gzip or zstd) into a stream, through the same [`IngestService`] as HTTP ingestion.
//!
//! Contract:
//! - Each file is read record by record ([`records`]); each record is validated as an event
//!   on its own. A valid event is appended to the configured log, in batches of
//!   `--batch-size`; an invalid record is kept as a dead letter with the reason and its
//!   position (`origin: {"kind": "file", "path", "line"}`), and the rest of the file goes on.
//! - An event without an id gets `{identity}:{line}` (see [`progress::identity`]), so that
//!   a re-run over the same file appends the same ids, which the stream's consumers
//!   de-duplicate.
//! - Up to [`APPENDS_IN_FLIGHT`] batches are appended at once. Progress is committed after
//!   each batch the log acknowledged, in the file's order (a batch's progress once every
//!   batch before it is in the log too; [`progress`]), in the file `--state` or, by
//!   default, `FILE.ingest-progress.json` next to each file: re-run after a crash, it
//!   resumes after the last committed line. At most the batches in flight at the crash are
//!   appended again (same ids). A file read to its end is not read again.
//! - The log is the configured one: Kafka in the distributed mode. In the embedded mode the
//!   redb log file can be open in one process only: with a `tributary run` holding it, the
//!   command stops with a message saying so (send the file over HTTP then, or stop the
//!   node); without one, it appends to the file directly and the node reads it when started.
//! - On a terminal, stderr shows a progress bar per file (bytes read of the file as stored,
//!   events/s, ETA). At the end, stdout gets one summary line per file and one for all:
//!   accepted, refused (each a dead letter). The command exits 0 when nothing was refused,
//!   2 when some record was, 1 on an error (nothing committed past what is durable).
//! - Ctrl-C (SIGINT/SIGTERM) stops after the batches in flight, with their progress
//!   committed.
//! - A batch the log refuses as unavailable is retried with backoff ([`APPEND_ATTEMPTS`]
//!   attempts); any other failure stops the command (exit 1), resumable.
//!
//! The reading runs on [`FileSource`], a [`Source`] like any other, registered and started
//! by name ([`Sources`]).

pub mod progress;
pub mod records;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;
use futures::StreamExt as _;
use futures::stream::FuturesOrdered;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tributary_connectors::registry::{self, LogConfig};
use tributary_core::{DeadLetter, Event, StreamName};
use tributary_gateway::ingest::IngestService;
use tributary_gateway::sources::{HealthReporter, Source, SourceError, Sources};

use crate::config::Config;
use progress::{FileProgress, Progress};
use records::{Counting, Fields, Format};

/// The arguments of `tributary ingest`.
#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// The config file (TOML) naming the log, the document store and the stream.
    #[arg(long, short)]
    pub config: PathBuf,
    /// What to read, and into which stream.
    #[command(flatten)]
    pub files: FileArgs,
}

/// The files to read and how, into which stream: `tributary ingest` without its config.
#[derive(Debug, Clone, clap::Args)]
pub struct FileArgs {
    /// The stream to ingest into (configured in `[[streams]]` or created through the API).
    #[arg(long)]
    pub stream: String,
    /// The files' format; by default CSV for names ending in `.csv` (before `.gz` or
    /// `.zst`), NDJSON otherwise.
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// The member (NDJSON) or column (CSV) holding the event's id.
    #[arg(long, default_value = "id")]
    pub id_field: String,
    /// The member or column holding the event time (RFC 3339 or epoch milliseconds).
    #[arg(long, default_value = "ts")]
    pub ts_field: String,
    /// The member or column holding the event's key.
    #[arg(long, default_value = "key")]
    pub key_field: String,
    /// The progress file; by default `FILE.ingest-progress.json` next to each file.
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Records per batch appended (and progress commit).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch_size: u32,
    /// The files (NDJSON or CSV; plain, `.gz` or `.zst`).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

impl FileArgs {
    /// NDJSON or CSV `files` into `stream`, with the defaults of `tributary ingest`.
    #[must_use]
    pub fn new(stream: &str, files: Vec<PathBuf>) -> Self {
        Self {
            stream: stream.to_owned(),
            format: None,
            id_field: "id".to_owned(),
            ts_field: "ts".to_owned(),
            key_field: "key".to_owned(),
            state: None,
            batch_size: 1000,
            files,
        }
    }
}

/// What happened to one file.
#[derive(Debug, Clone)]
pub struct FileSummary {
    /// The file.
    pub path: PathBuf,
    /// Its progress after this run (totals over every run).
    pub progress: FileProgress,
    /// The line this run resumed after (0: from the start).
    pub resumed_after: u64,
    /// Whether an earlier run had read it to its end (this one did not read it).
    pub already_done: bool,
}

/// What a run did, file by file.
#[derive(Debug, Default)]
pub struct Summary {
    /// Each file read, in order.
    pub files: Vec<FileSummary>,
}

impl Summary {
    /// Events appended from every file (totals over every run).
    #[must_use]
    pub fn accepted(&self) -> u64 {
        self.files.iter().map(|f| f.progress.accepted).sum()
    }

    /// Records refused in every file (totals over every run).
    #[must_use]
    pub fn refused(&self) -> u64 {
        self.files.iter().map(|f| f.progress.refused).sum()
    }

    /// Writes one line per file and one for all.
    ///
    /// # Errors
    /// When `out` fails.
    pub fn write(&self, out: &mut impl Write) -> std::io::Result<()> {
        let (mut accepted, mut refused) = (0, 0);
        for file in &self.files {
            let p = &file.progress;
            let resumed = if file.already_done {
                " (read to its end before)".to_owned()
            } else if file.resumed_after > 0 {
                format!(" (resumed after line {})", file.resumed_after)
            } else {
                String::new()
            };
            writeln!(
                out,
                "{}: accepted {}, refused {} (dead letters {}){resumed}{}",
                file.path.display(),
                p.accepted,
                p.refused,
                p.refused,
                if p.done { "" } else { ", not finished" },
            )?;
            accepted += p.accepted;
            refused += p.refused;
        }
        writeln!(
            out,
            "total: accepted {accepted}, refused {refused}, dead letters {refused}"
        )
    }
}

/// Runs `tributary ingest` until every file is read or `shutdown` is cancelled.
///
/// # Errors
/// When the config is invalid, the stream is not configured, the log or the document store
/// cannot be reached, a file cannot be read, or the log refuses a batch.
pub async fn run(args: IngestArgs, shutdown: CancellationToken) -> anyhow::Result<Summary> {
    let config = Config::load(Some(&args.config))?;
    let origin = args.config.display().to_string();
    run_with(&config, &origin, args.files, shutdown).await
}

/// As [`run`], with the config loaded already (`origin` names where it comes from, in
/// messages): how `tributary demo` reads its sample file. The log must not be open in this
/// process (an embedded log opens once).
///
/// # Errors
/// As [`run`].
pub async fn run_with(
    config: &Config,
    origin: &str,
    args: FileArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<Summary> {
    let checked = config.validate()?;
    let stream = StreamName::new(args.stream.clone())?;
    let (ports, catalogs) = registry::build_with_stores(
        &config.log,
        &config.analytics,
        &config.documents,
        &config.cache,
    )
    .await
    .with_context(|| match &config.log {
        LogConfig::Embedded(log) => format!(
            "cannot open the embedded log {}: if a `tributary run` node is using it (a redb \
             file opens in one process only), send the file to that node over HTTP \
             (POST /v1/streams/{stream}/events, Content-Type application/x-ndjson), or stop it \
             and run this again",
            log.path.display()
        ),
        LogConfig::Kafka(_) => "cannot connect the adapters".to_owned(),
    })?;
    // The streams with their schemas, as the nodes keep them; this command writes none.
    let streams = crate::catalog::load(config, &ports, catalogs.streams).await?;
    let configured = checked.streams.iter().position(|s| *s == stream);
    if let Some(position) = configured {
        // A stream of the config that no node has created yet.
        ports
            .log
            .ensure_stream(&stream, config.streams[position].partitions)
            .await
            .with_context(|| format!("cannot create stream {stream}"))?;
    } else if streams.get(&stream).is_none() {
        anyhow::bail!(
            "stream {stream} is neither configured in {origin} (see [[streams]]) nor created \
             through the API (POST /v1/streams)"
        );
    }
    let ingest = IngestService::new(ports, config.http.max_ts_ahead).with_streams(streams);

    let summary = Arc::new(Mutex::new(Summary::default()));
    let source = FileSource {
        stream,
        format: args.format,
        fields: Fields {
            id: args.id_field,
            ts: args.ts_field,
            key: args.key_field,
        },
        state: args.state,
        batch_size: args.batch_size as usize,
        files: args.files,
        summary: summary.clone(),
    };
    let sources = Sources::default();
    sources.register(Arc::new(source))?;
    let mut tasks = sources.start(&ingest, &shutdown);
    while let Some(joined) = tasks.join_next().await {
        let (name, outcome) = joined?;
        outcome.map_err(|e| anyhow::anyhow!(e).context(format!("source {name} failed")))?;
    }
    let summary = std::mem::take(&mut *summary.lock().unwrap_or_else(PoisonError::into_inner));
    Ok(summary)
}

/// Files read into a stream, one after the other.
#[derive(Debug)]
pub struct FileSource {
    stream: StreamName,
    format: Option<Format>,
    fields: Fields,
    state: Option<PathBuf>,
    batch_size: usize,
    files: Vec<PathBuf>,
    summary: Arc<Mutex<Summary>>,
}

/// Records read and checked, ready to be kept and appended.
#[derive(Debug, Default)]
struct Batch {
    events: Vec<Event>,
    letters: Vec<DeadLetter>,
    /// The line of the last record in it.
    last_line: u64,
}

/// The name of this source, in metrics and `/readyz`.
const FILE_SOURCE: &str = "file";

#[async_trait]
impl Source for FileSource {
    fn name(&self) -> &str {
        FILE_SOURCE
    }

    async fn run(
        &self,
        ingest: IngestService,
        _health: HealthReporter,
        cancel: CancellationToken,
    ) -> Result<(), SourceError> {
        for path in &self.files {
            if cancel.is_cancelled() {
                break;
            }
            let file = self
                .ingest_file(&ingest, path, &cancel)
                .await
                .map_err(|e| format!("{}: {e:#}", path.display()))?;
            self.summary
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .files
                .push(file);
        }
        Ok(())
    }
}

impl FileSource {
    /// Reads `path` from where its progress says, until its end or `cancel`.
    async fn ingest_file(
        &self,
        ingest: &IngestService,
        path: &Path,
        cancel: &CancellationToken,
    ) -> anyhow::Result<FileSummary> {
        let identity = progress::identity(path).context("cannot read the file")?;
        let size = std::fs::metadata(path)?.len();
        let state = self.state.clone().unwrap_or_else(|| {
            let mut name = path.as_os_str().to_owned();
            name.push(".ingest-progress.json");
            PathBuf::from(name)
        });
        let mut store = Progress::open(&state)?;
        let mut progress = store.get(self.stream.as_str(), &identity);
        let resumed_after = progress.line;
        let already_done = progress.done;
        progress.path = path.display().to_string();
        let summary = |progress: FileProgress| FileSummary {
            path: path.to_owned(),
            progress,
            resumed_after,
            already_done,
        };
        if progress.done {
            return Ok(summary(progress));
        }

        let read = Arc::new(AtomicU64::new(0));
        let bar = progress_bar(path, size);
        let (batches, mut received) = mpsc::channel(2);
        let reader = Reader {
            path: path.to_owned(),
            identity: identity.clone(),
            format: self
                .format
                .unwrap_or_else(|| Format::of_name(&path.to_string_lossy())),
            fields: self.fields.clone(),
            stream: self.stream.clone(),
            after: progress.line,
            batch_size: self.batch_size,
            read: read.clone(),
            ingest: ingest.clone(),
        };
        let reading = tokio::task::spawn_blocking(move || reader.run(&batches));

        let started = Instant::now();
        let mut this_run = 0_u64;
        // Batches being appended, in the file's order: a batch's progress is committed once
        // it and every batch before it are in the log.
        let mut in_flight = FuturesOrdered::new();
        let mut read_all = false;
        loop {
            if read_all && in_flight.is_empty() {
                // Read to its end (or on an error), and every batch appended.
                reading.await??;
                progress.done = true;
                store.commit(self.stream.as_str(), &identity, progress.clone())?;
                break;
            }
            if cancel.is_cancelled() && in_flight.is_empty() {
                break;
            }
            let room = !read_all && !cancel.is_cancelled() && in_flight.len() < APPENDS_IN_FLIGHT;
            tokio::select! {
                () = cancel.cancelled(), if in_flight.is_empty() => break,
                batch = received.recv(), if room => {
                    let Some(batch) = batch else {
                        read_all = true;
                        continue;
                    };
                    in_flight.push_back(async move {
                        ingest
                            .keep(FILE_SOURCE, &batch.letters)
                            .await
                            .context("cannot keep the refused records as dead letters")?;
                        append_retrying(ingest, &self.stream, &batch.events, cancel).await?;
                        Ok::<_, anyhow::Error>(batch)
                    });
                }
                Some(appended) = in_flight.next(), if !in_flight.is_empty() => {
                    let batch = appended?;
                    progress.line = batch.last_line;
                    progress.accepted += batch.events.len() as u64;
                    progress.refused += batch.letters.len() as u64;
                    store.commit(self.stream.as_str(), &identity, progress.clone())?;
                    this_run += batch.events.len() as u64;
                    let rate = this_run as f64 / started.elapsed().as_secs_f64().max(0.001);
                    bar.set_position(read.load(Ordering::Relaxed));
                    bar.set_message(format!(
                        "{} events ({rate:.0}/s), {} refused",
                        progress.accepted, progress.refused
                    ));
                }
            }
        }
        bar.finish_and_clear();
        Ok(summary(progress))
    }
}

/// The most batches being appended at once: the log's round trip (an acknowledgement of
/// every replica) and the progress file's sync overlap the next batches' sending.
const APPENDS_IN_FLIGHT: usize = 4;

/// The most attempts at appending one batch while the log is unavailable.
const APPEND_ATTEMPTS: u32 = 6;

/// Appends `events`, retrying with backoff (0.5 s, doubling) while the log is unavailable
/// (a broker restarting): the same batch appended twice holds the same ids.
async fn append_retrying(
    ingest: &IngestService,
    stream: &StreamName,
    events: &[Event],
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    let mut wait = Duration::from_millis(500);
    let mut attempt = 0;
    loop {
        attempt += 1;
        match ingest.append(FILE_SOURCE, stream, events).await {
            Ok(()) => return Ok(()),
            Err(error) if error.is_retryable() && attempt < APPEND_ATTEMPTS => {
                tracing::warn!(
                    error = tributary_core::dead_letter::error_chain(&error),
                    attempt,
                    "the log is unavailable; retrying the batch"
                );
                let wait_for = error.retry_after().unwrap_or(wait).max(wait);
                tokio::select! {
                    () = tokio::time::sleep(wait_for) => {}
                    () = cancel.cancelled() => anyhow::bail!("stopped while the log was unavailable"),
                }
                wait *= 2;
            }
            Err(error) => return Err(error).context("cannot append to the log"),
        }
    }
}

/// A progress bar over the file's bytes as stored, on stderr when it is a terminal.
fn progress_bar(path: &Path, size: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(size), ProgressDrawTarget::stderr());
    let style =
        ProgressStyle::with_template("{prefix} [{bar:30}] {bytes}/{total_bytes} {msg} ETA {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(path.display().to_string());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Reads one file into batches, on a blocking thread.
struct Reader {
    path: PathBuf,
    identity: String,
    format: Format,
    fields: Fields,
    stream: StreamName,
    /// Records starting on this line or before are skipped (committed already).
    after: u64,
    batch_size: usize,
    read: Arc<AtomicU64>,
    ingest: IngestService,
}

impl Reader {
    /// Sends each batch to `batches`; stops early when nobody receives any more.
    fn run(self, batches: &mpsc::Sender<Batch>) -> anyhow::Result<()> {
        let file = std::fs::File::open(&self.path)?;
        let input = records::decompressed(Counting::new(file, self.read.clone()))?;
        let identity = self.identity.clone();
        let records = records::records(input, self.format, self.fields.clone(), move |line| {
            format!("{identity}:{line}")
        });
        let path = self.path.display().to_string();
        let mut batch = Batch::default();
        let mut check = self.ingest.checker(&self.stream);
        for record in records {
            let record = record.with_context(|| format!("cannot read {path}"))?;
            if record.line <= self.after {
                continue;
            }
            let validated = record.value.and_then(|value| check.check(value));
            match validated {
                Ok(event) => batch.events.push(event),
                Err(reason) => batch.letters.push(DeadLetter::file(
                    &self.stream,
                    (&path, &self.identity, record.line),
                    reason,
                    &record.raw,
                )),
            }
            batch.last_line = record.line;
            if batch.events.len() + batch.letters.len() >= self.batch_size {
                if batches.blocking_send(std::mem::take(&mut batch)).is_err() {
                    return Ok(());
                }
                check = self.ingest.checker(&self.stream);
            }
        }
        if batch.last_line > 0 {
            // Nobody receiving is a stop asked for; nothing more to do either way.
            let _ = batches.blocking_send(batch);
        }
        Ok(())
    }
}
