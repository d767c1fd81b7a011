//! `tributary`: one binary, every role.
//!
//! - `tributary demo`: the embedded mode with generators, in one process, no server needed.
//! - `tributary run --config FILE [--role ...]`: the distributed mode (or any mode a config
//!   file describes), running the chosen roles.
//! - `tributary ingest --config FILE --stream S FILE...`: streams NDJSON or CSV files into a
//!   stream (see `tributary::ingest`); exits 2 when some record was refused.
//! - `tributary keys --config FILE create --tenant T --scope admin`: issues (lists, revokes)
//!   API keys of any tenant in the key store (see `tributary::keys`).
//! - `tributary health [--url URL]`: exits 0 when a node's `/healthz` answers 200 (the
//!   container image's health check).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use tributary::app::Role;
use tributary::config::TracingConfig;
use tributary::logging::{self, LogFormat};

/// jemalloc: a quarter less CPU per event than the system allocator on the event path
/// (bench/RESULTS.md).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Tributary: real-time event processing and analytics.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Auto, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs everything embedded in one process, with generators playing three sources.
    Demo(tributary::demo::DemoArgs),
    /// Runs roles from a config file (see config/local.toml).
    Run {
        /// The config file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Roles to run in this process; repeat or separate with commas.
        #[arg(long, value_enum, value_delimiter = ',', default_value = "all")]
        role: Vec<Role>,
    },
    /// Streams NDJSON or CSV files (plain, .gz or .zst) into a stream; re-run after a crash,
    /// it resumes where it stopped. Exits 2 when some record was refused (kept as a dead
    /// letter).
    Ingest(tributary::ingest::IngestArgs),
    /// Issues, lists and revokes API keys of any tenant in the key store the config names
    /// (a new tenant's first key comes from here).
    Keys(tributary::keys::KeysArgs),
    /// Asks a running node's /healthz; exits 0 when it answers 200 (the container image's
    /// health check).
    Health(tributary::health::HealthArgs),
    /// Deletes a pipeline's checkpoint, state and results table, so that it starts over
    /// from the beginning of its streams: what to do after changing a pipeline's
    /// definition (or give it a new name instead).
    Reset {
        /// The config file (TOML) naming the analytics store.
        #[arg(long, short)]
        config: PathBuf,
        /// The pipeline to reset.
        #[arg(long)]
        pipeline: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = match cli.command {
        Command::Demo(_) => logging::DEMO_FILTER,
        // Its stdout is the key (or the listing): only warnings are logged.
        Command::Keys(_) => logging::QUIET_FILTER,
        Command::Run { .. } | Command::Reset { .. } | Command::Ingest(_) | Command::Health(_) => {
            logging::DEFAULT_FILTER
        }
    };
    // A config file's [tracing] section is read before the file is loaded and checked:
    // logging, which reports that, starts first.
    let tracing_config = match &cli.command {
        Command::Run { config, .. } | Command::Reset { config, .. } => {
            TracingConfig::of_file(config)
        }
        _ => TracingConfig::default(),
    };
    let spans = logging::init(cli.log_format, filter, &tracing_config)?;
    let result = match cli.command {
        Command::Demo(args) => tributary::demo::run(args).await,
        Command::Run { config, role } => {
            async {
                let config = load_config(&config)?;
                tributary::app::run(config, &role, tributary::app::shutdown_on_signal()).await
            }
            .await
        }
        Command::Ingest(args) => ingest(args).await,
        Command::Health(args) => tributary::health::run(args).await,
        Command::Keys(args) => tributary::keys::run(args).await,
        Command::Reset { config, pipeline } => {
            async {
                let config = load_config(&config)?;
                tributary::app::reset(&config, &pipeline).await
            }
            .await
        }
    };
    // One ECS error event (`error.message`, `error.type`) on stdout when logging JSON;
    // returning the error also prints it on stderr and exits 1.
    if let Err(err) = &result {
        tracing::error!(
            error = format!("{err:#}"),
            "error.type" = error_type(err),
            "tributary stopped on an error"
        );
    }
    spans.shutdown().await;
    result
}

/// The context of a config file that did not load (missing, unreadable, invalid).
#[derive(Debug)]
struct ConfigNotLoaded;

impl std::fmt::Display for ConfigNotLoaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the configuration did not load")
    }
}

fn load_config(path: &Path) -> anyhow::Result<tributary::config::Config> {
    tributary::config::Config::load(Some(path)).context(ConfigNotLoaded)
}

/// The `error.type` of the error the process stops on: `config` when the config file did
/// not load, `fatal` for anything else.
fn error_type(err: &anyhow::Error) -> &'static str {
    if err.downcast_ref::<ConfigNotLoaded>().is_some() {
        "config"
    } else {
        "fatal"
    }
}

/// `tributary ingest`: prints the summary, and exits 2 when some record was refused.
async fn ingest(args: tributary::ingest::IngestArgs) -> anyhow::Result<()> {
    use std::io::Write as _;
    let summary = tributary::ingest::run(args, tributary::app::shutdown_on_signal()).await?;
    let mut out = std::io::stdout().lock();
    summary.write(&mut out)?;
    out.flush()?;
    if summary.refused() > 0 {
        std::process::exit(2);
    }
    Ok(())
}
