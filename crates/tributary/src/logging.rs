//! Logs: ECS JSON (Elastic Common Schema, one object per line, ready for Filebeat or
//! Logstash) when stdout is not a terminal or with `--log-format json`; readable text
//! otherwise. The level comes from `RUST_LOG` (default `info`).

use std::io::IsTerminal;

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// JSON when stdout is not a terminal, text when it is.
    Auto,
    /// ECS JSON lines.
    Json,
    /// Human-readable text.
    Text,
}

/// The level filter when `RUST_LOG` is not set.
pub const DEFAULT_FILTER: &str = "info,sqlx=warn,rdkafka=warn,mongodb=warn";

/// The demo's: as [`DEFAULT_FILTER`], without one line per HTTP request from the generators.
pub const DEMO_FILTER: &str =
    "info,sqlx=warn,rdkafka=warn,mongodb=warn,tributary_gateway::trace=warn";

/// Installs the global subscriber; `default_filter` applies when `RUST_LOG` is not set.
///
/// # Errors
/// When a subscriber is already installed.
pub fn init(format: LogFormat, default_filter: &str) -> anyhow::Result<()> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stdout().is_terminal(),
    };
    let registry = tracing_subscriber::registry().with(filter);
    if json {
        let ecs = tracing_ecs::ECSLayerBuilder::default()
            .with_extra_fields(serde_json::json!({
                "service": { "name": "tributary", "version": env!("CARGO_PKG_VERSION") }
            }))?
            .stdout();
        registry.with(ecs).try_init()?;
    } else {
        registry
            .with(tracing_subscriber::fmt::layer().with_target(false))
            .try_init()?;
    }
    Ok(())
}
