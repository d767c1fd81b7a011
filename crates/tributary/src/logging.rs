//! Logs: ECS JSON (Elastic Common Schema 8.11, one object per line on stdout, ready for
//! Filebeat, Logstash, Elastic Agent or an OpenTelemetry Collector's file-log receiver) when
//! stdout is not a terminal or with `--log-format json`; readable text otherwise. The level
//! comes from `RUST_LOG` (default `info`). Human-facing text that is not a log event (the
//! demo's banner) goes to stderr, so stdout holds nothing but log lines.
//!
//! Each JSON line has `@timestamp` (RFC 3339, UTC, nanoseconds), `log.level`, `log.logger`
//! (the module), `message`, `ecs.version`, `service.name`, `service.version` and
//! `process.pid`, then the fields of the event and of the spans it is in, de-dotted into
//! nested objects (`http.request.method` → `{"http":{"request":{"method":…}}}`). Integers and
//! booleans stay JSON numbers and booleans; so log durations as integers (the request log's
//! `event.duration` is in nanoseconds, as ECS defines it), not as floats, which the ECS
//! layer writes as strings. Field names that would clash with an ECS object are moved out
//! of its way ([`ecs_field`]): an `error` field becomes `error.message`, and a plain name
//! that ECS reserves for an object (`group`, `url`, `source`...) goes under `tributary.`.
//! The fields the request log writes are listed in `tributary_gateway`'s `trace` module;
//! `deploy/opensearch/` holds an index template for all of them.
//!
//! Spans are also exported over OTLP when `[tracing]` or `OTEL_EXPORTER_OTLP_ENDPOINT` says
//! so (feature `otlp`, see `crate::otlp`); `RUST_LOG` filters the logs, not the export.

use std::borrow::Cow;
use std::io::IsTerminal;

use clap::ValueEnum;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::TracingConfig;

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

/// For commands whose stdout is their answer (`tributary keys`): warnings and errors only.
pub const QUIET_FILTER: &str = "warn";

/// The demo's: as [`DEFAULT_FILTER`], without one line per HTTP request from the generators.
pub const DEMO_FILTER: &str =
    "info,sqlx=warn,rdkafka=warn,mongodb=warn,tributary_gateway::trace=warn";

/// The version of the Elastic Common Schema the JSON lines follow (`ecs.version`).
pub const ECS_VERSION: &str = "8.11.0";

/// The top-level names ECS defines as objects (field sets), which a plain field of that
/// name would clash with in an index that maps ECS.
const ECS_OBJECTS: &[&str] = &[
    "agent",
    "client",
    "cloud",
    "container",
    "data_stream",
    "destination",
    "device",
    "dll",
    "dns",
    "ecs",
    "email",
    "event",
    "faas",
    "file",
    "group",
    "host",
    "http",
    "log",
    "network",
    "observer",
    "orchestrator",
    "organization",
    "package",
    "process",
    "registry",
    "related",
    "rule",
    "server",
    "service",
    "source",
    "span",
    "threat",
    "tls",
    "trace",
    "transaction",
    "url",
    "user",
    "user_agent",
    "vulnerability",
];

/// The ECS name of a field logged as `name`: `error` is ECS's `error.message` (ECS's
/// `error` is an object), a plain name ECS reserves for an object goes under `tributary.`,
/// every other name (dotted ECS names such as `http.request.id` included) stays.
pub fn ecs_field(name: Cow<'static, str>) -> Cow<'static, str> {
    if name == "error" {
        Cow::Borrowed("error.message")
    } else if ECS_OBJECTS.contains(&name.as_ref()) {
        Cow::Owned(format!("tributary.{name}"))
    } else {
        name
    }
}

/// What [`init`] started besides the logs: the span export, if any.
#[derive(Debug)]
pub struct Spans {
    #[cfg(feature = "otlp")]
    export: Option<crate::otlp::Export>,
}

impl Spans {
    /// Sends the spans not exported yet: when the process stops.
    pub async fn shutdown(self) {
        #[cfg(feature = "otlp")]
        if let Some(export) = self.export {
            export.shutdown().await;
        }
    }
}

/// Installs the global subscriber: the logs, filtered by `RUST_LOG` (`default_filter` when
/// it is not set), and the span export `tracing` asks for. Within a Tokio runtime (the
/// export sends its requests on it).
///
/// # Errors
/// When a subscriber is already installed, or the export cannot be set up.
pub fn init(
    format: LogFormat,
    default_filter: &str,
    tracing: &TracingConfig,
) -> anyhow::Result<Spans> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stdout().is_terminal(),
    };
    let logs = if json {
        tracing_ecs::ECSLayerBuilder::default()
            .with_extra_fields(serde_json::json!({
                "ecs": { "version": ECS_VERSION },
                "service": { "name": tracing.service_name, "version": env!("CARGO_PKG_VERSION") },
                "process": { "pid": std::process::id() },
            }))?
            .with_attribute_mapper(|_span: &str, name: Cow<'static, str>| ecs_field(name))
            .stdout()
            .boxed()
    } else {
        tracing_subscriber::fmt::layer().with_target(false).boxed()
    };
    // A filter per layer: the spans only the export wants (DEBUG) are not made for the logs.
    let registry = tracing_subscriber::registry().with(logs.with_filter(filter));
    #[cfg(feature = "otlp")]
    {
        let (spans, export) = crate::otlp::layer(tracing)?.unzip();
        registry.with(spans).try_init()?;
        Ok(Spans { export })
    }
    #[cfg(not(feature = "otlp"))]
    {
        registry.try_init()?;
        Ok(Spans {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_clash_with_ecs_objects_move() {
        assert_eq!(ecs_field("error".into()), "error.message");
        assert_eq!(ecs_field("group".into()), "tributary.group");
        assert_eq!(ecs_field("url".into()), "tributary.url");
        assert_eq!(ecs_field("http.request.id".into()), "http.request.id");
        assert_eq!(ecs_field("error.type".into()), "error.type");
        assert_eq!(ecs_field("pipeline".into()), "pipeline");
    }
}
