//! The configuration file: what a user writes, checked into what the roles run.
//!
//! Sources, later ones winning: the built-in defaults (`config/defaults.toml`, compiled
//! in), the file given with `--config`, then environment variables
//! `TRIBUTARY__SECTION__KEY` (for example `TRIBUTARY__HTTP__LISTEN=0.0.0.0:9090`).
//! Unknown keys are errors, so a typo never goes unnoticed.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;
use tributary_connectors::registry::{AnalyticsConfig, CacheConfig, DocumentsConfig, LogConfig};
use tributary_core::StreamName;
use tributary_core::pipeline::{Aggregate, PipelineSpec, WindowSpec};

/// The built-in defaults.
const DEFAULTS: &str = include_str!("../../../config/defaults.toml");
/// The demo's configuration.
const DEMO: &str = include_str!("../../../config/demo.toml");

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The HTTP server (gateway and ingestion).
    pub http: HttpConfig,
    /// The engine that runs pipelines.
    pub engine: EngineSection,
    /// The event log: `type = "embedded"` or `type = "kafka"`.
    pub log: LogConfig,
    /// Window results and checkpoints: `type = "sqlite"` or `type = "postgres"`.
    pub analytics: AnalyticsConfig,
    /// Raw events as documents: `type = "sqlite"` or `type = "mongodb"`.
    pub documents: DocumentsConfig,
    /// Live results: `type = "memory"` or `type = "redis"`.
    pub cache: CacheConfig,
    /// The streams events can be sent to.
    #[serde(default)]
    pub streams: Vec<StreamConfig>,
    /// The pipelines to run.
    #[serde(default)]
    pub pipelines: Vec<PipelineConfig>,
}

/// The HTTP server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// How far ahead of this node's clock an event's `ts` may be (such as `"1h"`); an event
    /// further ahead is refused with a 422, before it could move a watermark.
    #[serde(with = "humantime_serde")]
    pub max_ts_ahead: Duration,
}

/// The engine.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineSection {
    /// Most records a task handles per poll of the log.
    pub batch_size: usize,
    /// How often the raw-event archive commits its offsets.
    #[serde(with = "humantime_serde")]
    pub archive_checkpoint_interval: Duration,
    /// Whether raw events of every stream are kept in the document store.
    pub archive_raw_events: bool,
    /// How long dead letters are kept (such as `"7d"`): the processor deletes older ones
    /// every 10 minutes. `"0s"` keeps them forever; otherwise at least one minute.
    #[serde(with = "humantime_serde")]
    pub dead_letter_retention: Duration,
}

/// One stream.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    /// Its name: `a-z`, `0-9`, `_`, `-`, at most 64 characters.
    pub name: String,
    /// Partitions of its log topic: the unit of parallelism.
    #[serde(default = "default_partitions")]
    pub partitions: u32,
    /// What it carries, for people.
    #[serde(default)]
    pub description: Option<String>,
}

fn default_partitions() -> u32 {
    3
}

/// One pipeline.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Its name (same rules as a stream's); also its consumer group.
    pub name: String,
    /// The streams it reads.
    pub sources: Vec<String>,
    /// Its windows.
    pub window: WindowConfig,
    /// What it computes per window and key: `"count"`.
    #[serde(default = "default_aggregate")]
    pub aggregate: String,
    /// How late an event may be, relative to the newest of its partition, and still count.
    #[serde(with = "humantime_serde", default = "default_out_of_orderness")]
    pub max_out_of_orderness: Duration,
    /// A partition silent for this long does not hold the watermark back.
    #[serde(with = "humantime_serde", default = "default_idle_timeout")]
    pub idle_timeout: Duration,
    /// How often results, state and offsets are committed together.
    #[serde(with = "humantime_serde", default = "default_checkpoint_interval")]
    pub checkpoint_interval: Duration,
}

/// The shortest `idle_timeout`. A partition counts as idle when it delivered nothing for
/// that long; the engine polls for up to 200 ms, so a shorter timeout would call a busy
/// partition idle between two polls and let the others' watermark make its events late
/// (and zero would call every partition idle, so that no window ever closes).
const MIN_IDLE_TIMEOUT: Duration = Duration::from_secs(1);

/// The shortest dead-letter retention but 0 (forever): one that deletes letters minutes
/// after they are kept is a mistake, not a retention.
const MIN_DEAD_LETTER_RETENTION: Duration = Duration::from_secs(60);

/// The longest window: 100 years of 365 days. Every window of an event in the accepted
/// years (0000 to 9999, `Timestamp::MIN_VALID..=MAX_VALID`) then starts and ends within
/// what every analytics store holds.
const MAX_WINDOW_MS: i64 = 100 * 365 * 24 * 3_600_000;

fn default_aggregate() -> String {
    "count".to_owned()
}
fn default_out_of_orderness() -> Duration {
    Duration::from_secs(5)
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_checkpoint_interval() -> Duration {
    Duration::from_secs(1)
}

/// A pipeline's windows.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum WindowConfig {
    /// Fixed, non-overlapping windows.
    Tumbling {
        /// Window length, such as `"1m"`.
        #[serde(with = "humantime_serde")]
        size: Duration,
    },
}

impl Config {
    /// Loads the defaults, then `file` (TOML), then `TRIBUTARY__*` environment variables.
    ///
    /// # Errors
    /// When the file cannot be read, or a value is missing, mistyped or unknown.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        Self::from_figment(Figment::from(Toml::string(DEFAULTS)), file)
    }

    /// Like [`Config::load`], with `base` (TOML text) between the defaults and the file.
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn load_with_base(base: &str, file: Option<&Path>) -> anyhow::Result<Self> {
        Self::from_figment(
            Figment::from(Toml::string(DEFAULTS)).merge(Toml::string(base)),
            file,
        )
    }

    /// The demo's configuration: `config/demo.toml` (compiled in), with its data under
    /// `data_dir` and its HTTP server on `listen`.
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn demo(data_dir: &Path, listen: SocketAddr) -> anyhow::Result<Self> {
        let db = data_dir.join("tributary.db");
        let figment = Figment::from(Toml::string(DEFAULTS))
            .merge(Toml::string(DEMO))
            .merge(("http.listen", listen.to_string()))
            .merge(("log.path", data_dir.join("log.redb")))
            .merge(("analytics.path", &db))
            .merge(("documents.path", &db));
        Self::from_figment(figment, None)
    }

    fn from_figment(mut figment: Figment, file: Option<&Path>) -> anyhow::Result<Self> {
        if let Some(path) = file {
            if !path.is_file() {
                bail!("config file {} does not exist", path.display());
            }
            figment = figment.merge(Toml::file(path));
        }
        figment
            .merge(Env::prefixed("TRIBUTARY__").split("__"))
            .extract()
            .context("invalid configuration")
    }

    /// Checks names and references and builds the pipeline plans.
    ///
    /// # Errors
    /// On a bad or duplicate name, a pipeline reading an undeclared stream, an
    /// unsupported aggregate, a zero size or limit, an `idle_timeout` under a second, or a
    /// dead-letter retention under a minute (but 0).
    pub fn validate(&self) -> anyhow::Result<Checked> {
        if self.http.max_body_bytes == 0 {
            bail!("[http] max_body_bytes must be at least 1");
        }
        if self.engine.batch_size == 0 {
            bail!("[engine] batch_size must be at least 1");
        }
        let dead_letter_retention = match self.engine.dead_letter_retention {
            Duration::ZERO => None,
            short if short < MIN_DEAD_LETTER_RETENTION => bail!(
                "[engine] dead_letter_retention must be \"0s\" (keep forever) or at least 1m, not {short:?}"
            ),
            retention => Some(retention),
        };
        let mut streams = Vec::new();
        let mut names = BTreeSet::new();
        for stream in &self.streams {
            let name = StreamName::new(stream.name.clone()).context("in [[streams]]")?;
            if !names.insert(name.clone()) {
                bail!("stream {name} is declared twice");
            }
            if stream.partitions == 0 {
                bail!("stream {name} needs at least one partition");
            }
            streams.push(name);
        }
        let mut pipelines = Vec::new();
        let mut pipeline_names = BTreeSet::new();
        for p in &self.pipelines {
            StreamName::new(p.name.clone()).context("pipeline names follow stream-name rules")?;
            if !pipeline_names.insert(p.name.clone()) {
                bail!("pipeline {} is declared twice", p.name);
            }
            if p.sources.is_empty() {
                bail!("pipeline {} has no sources", p.name);
            }
            let mut sources = Vec::new();
            for source in &p.sources {
                let stream = StreamName::new(source.clone())?;
                if !names.contains(&stream) {
                    bail!(
                        "pipeline {} reads stream {stream}, which is not declared in [[streams]]",
                        p.name
                    );
                }
                sources.push(stream);
            }
            let aggregate = match p.aggregate.as_str() {
                "count" => Aggregate::Count,
                other => bail!(
                    "pipeline {}: unsupported aggregate {other:?} (supported: \"count\")",
                    p.name
                ),
            };
            let WindowConfig::Tumbling { size } = p.window;
            let size_ms = tributary_core::pipeline::millis(size);
            if !(1..=MAX_WINDOW_MS).contains(&size_ms) {
                bail!(
                    "pipeline {}: the window size must be between 1ms and 100 years",
                    p.name
                );
            }
            if p.idle_timeout < MIN_IDLE_TIMEOUT {
                bail!(
                    "pipeline {}: idle_timeout must be at least 1s, not {:?}",
                    p.name,
                    p.idle_timeout
                );
            }
            pipelines.push(PipelineSpec {
                name: p.name.clone(),
                sources,
                window: WindowSpec::Tumbling { size_ms },
                aggregate,
                max_out_of_orderness: p.max_out_of_orderness,
                idle_timeout: p.idle_timeout,
                checkpoint_interval: p.checkpoint_interval,
            });
        }
        Ok(Checked {
            streams,
            pipelines,
            dead_letter_retention,
        })
    }
}

/// What [`Config::validate`] produces.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The declared streams, in order.
    pub streams: Vec<StreamName>,
    /// The pipeline plans.
    pub pipelines: Vec<PipelineSpec>,
    /// How long dead letters are kept; `None`: forever.
    pub dead_letter_retention: Option<Duration>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMBEDDED: &str = r#"
        [log]
        type = "embedded"
        path = "/tmp/x/log.redb"
        [analytics]
        type = "sqlite"
        path = "/tmp/x/tributary.db"
        [documents]
        type = "sqlite"
        path = "/tmp/x/tributary.db"
        [cache]
        type = "memory"
        [[streams]]
        name = "clicks"
        [[pipelines]]
        name = "clicks_per_page"
        sources = ["clicks"]
        window = { type = "tumbling", size = "1m" }
    "#;

    #[test]
    fn the_shipped_configs_are_valid() {
        for file in ["../../config/local.toml", "../../config/demo.toml"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
            let config = Config::load(Some(&path)).unwrap_or_else(|e| panic!("{file}: {e:#}"));
            config
                .validate()
                .unwrap_or_else(|e| panic!("{file}: {e:#}"));
        }
    }

    #[test]
    fn a_pipeline_is_planned() {
        let checked = Config::load_with_base(EMBEDDED, None)
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(
            checked.pipelines[0].window,
            WindowSpec::Tumbling { size_ms: 60_000 }
        );
        assert_eq!(
            checked.pipelines[0].max_out_of_orderness,
            Duration::from_secs(5)
        );
    }

    #[test]
    fn typos_and_bad_references_are_refused() {
        let typo = EMBEDDED.replace(
            "[cache]\n        type = \"memory\"",
            "[cache]\n        type = \"memory\"\n        max_entires = 3",
        );
        assert!(Config::load_with_base(&typo, None).is_err());
        let unknown_source = EMBEDDED.replace("sources = [\"clicks\"]", "sources = [\"views\"]");
        let err = Config::load_with_base(&unknown_source, None)
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("not declared"), "{err}");
    }

    #[test]
    fn window_sizes_are_bounded() {
        for size in ["0s", "101y"] {
            let config = EMBEDDED.replace("size = \"1m\"", &format!("size = \"{size}\""));
            let err = Config::load_with_base(&config, None)
                .unwrap()
                .validate()
                .unwrap_err();
            assert!(err.to_string().contains("window size"), "{size}: {err}");
        }
    }

    #[test]
    fn idle_timeouts_are_at_least_a_second() {
        let idle = |value: &str| {
            let config = EMBEDDED.replace(
                "size = \"1m\" }",
                &format!("size = \"1m\" }}\n        idle_timeout = \"{value}\""),
            );
            Config::load_with_base(&config, None).unwrap().validate()
        };
        assert_eq!(
            idle("1s").unwrap().pipelines[0].idle_timeout,
            Duration::from_secs(1)
        );
        for short in ["0s", "999ms"] {
            let err = idle(short).unwrap_err();
            assert!(err.to_string().contains("idle_timeout"), "{short}: {err}");
        }
    }

    #[test]
    fn dead_letter_retention_is_forever_or_at_least_a_minute() {
        let retention = |value: &str| {
            Config::load_with_base(
                &format!("{EMBEDDED}\n[engine]\ndead_letter_retention = \"{value}\"\n"),
                None,
            )
            .unwrap()
            .validate()
            .map(|checked| checked.dead_letter_retention)
        };
        let default = Config::load_with_base(EMBEDDED, None)
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(
            default.dead_letter_retention,
            Some(Duration::from_secs(7 * 24 * 3600))
        );
        assert_eq!(retention("0s").unwrap(), None);
        assert_eq!(retention("1m").unwrap(), Some(Duration::from_secs(60)));
        assert_eq!(
            retention("30days").unwrap(),
            Some(Duration::from_secs(30 * 24 * 3600))
        );
        for short in ["1ms", "59s"] {
            let err = retention(short).unwrap_err();
            assert!(
                err.to_string().contains("dead_letter_retention") && err.to_string().contains("1m"),
                "{short}: {err}"
            );
        }
    }

    #[test]
    fn event_times_may_be_an_hour_ahead_unless_configured() {
        let max_ts_ahead = |extra: &str| {
            Config::load_with_base(&format!("{EMBEDDED}\n{extra}"), None)
                .unwrap()
                .http
                .max_ts_ahead
        };
        assert_eq!(max_ts_ahead(""), Duration::from_secs(3600));
        assert_eq!(
            max_ts_ahead("[http]\nmax_ts_ahead = \"5m\"\n"),
            Duration::from_secs(300)
        );
    }

    #[test]
    fn zero_sizes_are_refused() {
        for (setting, name) in [
            ("[http]\nmax_body_bytes = 0\n", "max_body_bytes"),
            ("[engine]\nbatch_size = 0\n", "batch_size"),
        ] {
            let err = Config::load_with_base(&format!("{EMBEDDED}\n{setting}"), None)
                .unwrap()
                .validate()
                .unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
        }
    }
}
