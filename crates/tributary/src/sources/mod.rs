//! The sources a node runs from its config (`[[sources]]`), besides HTTP ingestion: each
//! reads from a system of its own and hands what it reads to the
//! [`IngestService`](tributary_gateway::ingest::IngestService), registered by name in the
//! node's [`Sources`] (health in `/readyz`, metrics `tributary_source_*`).
//!
//! Contract:
//! - `kind = "kafka"`: [`kafka::KafkaSource`], topics written by other producers.
//! - `kind = "mqtt"`: [`mqtt::MqttSource`], topic filters of an MQTT broker (QoS 1).
//! - Every source names a stream declared in `[[streams]]`, and has a unique name;
//!   [`register`] refuses the config otherwise, before anything runs.
//! - Sources run on nodes with the ingest role.
//! - Each kind is behind the cargo feature of its name (`kafka`, `mqtt`; on by default): in
//!   a build without it, a config naming it fails to load, naming the feature
//!   ([`LeftOut`](tributary_connectors::registry::LeftOut)).

#[cfg(any(feature = "kafka", feature = "mqtt"))]
pub mod batch;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod mapping;
#[cfg(feature = "mqtt")]
pub mod mqtt;

use std::collections::BTreeSet;
use std::sync::Arc;

use anyhow::{Context, bail};
use serde::Deserialize;
use tributary_connectors::registry::LogConfig;
use tributary_core::StreamName;
use tributary_gateway::sources::{Source, Sources};

#[cfg(any(feature = "kafka", feature = "mqtt"))]
use crate::ingest::records::Fields;
use mapping::TsFormat;

/// One `[[sources]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SourceConfig {
    /// Topics of a Kafka cluster.
    #[cfg_attr(not(feature = "kafka"), serde(deserialize_with = "without_kafka"))]
    Kafka(KafkaSourceConfig),
    /// Topic filters of an MQTT broker.
    #[cfg_attr(not(feature = "mqtt"), serde(deserialize_with = "without_mqtt"))]
    Mqtt(MqttSourceConfig),
}

/// Fails to read a Kafka source, in a build without it.
#[cfg(not(feature = "kafka"))]
fn without_kafka<'de, D: serde::Deserializer<'de>, T>(_: D) -> Result<T, D::Error> {
    Err(tributary_connectors::registry::LeftOut::new("kafka").de_error())
}

/// Fails to read an MQTT source, in a build without it.
#[cfg(not(feature = "mqtt"))]
fn without_mqtt<'de, D: serde::Deserializer<'de>, T>(_: D) -> Result<T, D::Error> {
    Err(tributary_connectors::registry::LeftOut::new("mqtt").de_error())
}

/// An MQTT source: `kind = "mqtt"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSourceConfig {
    /// Its name: unique among the sources, a metric label.
    pub name: String,
    /// The broker: `mqtt://host[:port]` (plain TCP, port 1883 by default) or
    /// `mqtts://host[:port]` (TLS, port 8883 by default).
    pub url: String,
    /// The user name presented to the broker; none by default (anonymous).
    #[serde(default)]
    pub username: Option<String>,
    /// The environment variable holding the password of `username` (the password itself is
    /// never written in the config, nor logged).
    #[serde(default)]
    pub password_env: Option<String>,
    /// A file holding the password of `username` (its first line), instead of
    /// `password_env`.
    #[serde(default)]
    pub password_file: Option<std::path::PathBuf>,
    /// With `mqtts://`: a PEM file of the certificate authorities that sign the broker's
    /// certificate; by default the Mozilla roots (`webpki-roots`).
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// The topic filters subscribed to (`+` and `#` wildcards allowed), at QoS 1.
    pub topics: Vec<String>,
    /// The client id naming its persistent session at the broker; by default
    /// `tributary-{name}`. Two nodes must not share it.
    #[serde(default)]
    pub client_id: Option<String>,
    /// The stream the events go to (declared in `[[streams]]`).
    pub stream: String,
    /// The member holding the event's id.
    #[serde(default = "default_id_field")]
    pub id_field: String,
    /// The member holding the event time.
    #[serde(default = "default_ts_field")]
    pub ts_field: String,
    /// How the event time is written: `"rfc3339"` (the default), `"epoch_s"` or
    /// `"epoch_ms"`.
    #[serde(default)]
    pub ts_format: TsFormat,
    /// The member holding the event's key.
    #[serde(default = "default_key_field")]
    pub key_field: String,
    /// The most messages appended (and acknowledged) at once.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
}

/// A Kafka source: `kind = "kafka"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// Its name: unique among the sources, a metric label.
    pub name: String,
    /// Bootstrap brokers, comma-separated `host:port`; by default the log's (a Kafka log).
    #[serde(default)]
    pub brokers: Option<String>,
    /// The topics read, as named in Kafka.
    pub topics: Vec<String>,
    /// The consumer group holding its offsets; by default `tributary.source.{name}`.
    #[serde(default)]
    pub group_id: Option<String>,
    /// The stream the events go to (declared in `[[streams]]`).
    pub stream: String,
    /// The member holding the event's id.
    #[serde(default = "default_id_field")]
    pub id_field: String,
    /// The member holding the event time.
    #[serde(default = "default_ts_field")]
    pub ts_field: String,
    /// How the event time is written: `"rfc3339"` (the default), `"epoch_s"` or
    /// `"epoch_ms"`.
    #[serde(default)]
    pub ts_format: TsFormat,
    /// The member holding the event's key.
    #[serde(default = "default_key_field")]
    pub key_field: String,
    /// The most records appended (and committed) at once.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
}

fn default_id_field() -> String {
    "id".to_owned()
}

fn default_ts_field() -> String {
    "ts".to_owned()
}

fn default_key_field() -> String {
    "key".to_owned()
}

fn default_batch_size() -> usize {
    500
}

impl SourceConfig {
    fn name(&self) -> &str {
        match self {
            Self::Kafka(kafka) => &kafka.name,
            Self::Mqtt(mqtt) => &mqtt.name,
        }
    }

    fn stream(&self) -> &str {
        match self {
            Self::Kafka(kafka) => &kafka.stream,
            Self::Mqtt(mqtt) => &mqtt.stream,
        }
    }
}

/// Registers the configured `sources` in `registry`, each feeding one of `streams`.
///
/// # Errors
/// When two sources share a name, a source names a stream not in `streams`, a setting is
/// invalid (a Kafka source without brokers, topics or batch size), or a kind is left out
/// of this build.
pub fn register(
    registry: &Sources,
    sources: &[SourceConfig],
    streams: &[StreamName],
    log: &LogConfig,
) -> anyhow::Result<()> {
    let mut names = BTreeSet::new();
    for source in sources {
        let name = source.name();
        let context = || format!("[[sources]] {name:?}");
        if name.is_empty() || !names.insert(name.to_owned()) {
            bail!("[[sources]]: every source needs a name of its own ({name:?})");
        }
        let stream = stream_of(source.stream(), streams).with_context(context)?;
        let source = build(source, stream, log).with_context(context)?;
        registry.register(source).with_context(context)?;
    }
    Ok(())
}

/// `name`, when it is one of `streams`.
fn stream_of(name: &str, streams: &[StreamName]) -> anyhow::Result<StreamName> {
    let stream = StreamName::new(name.to_owned())?;
    if !streams.contains(&stream) {
        bail!("stream {stream:?} is not declared in [[streams]]");
    }
    Ok(stream)
}

/// The source `config` describes, feeding `stream`.
#[cfg_attr(
    not(any(feature = "kafka", feature = "mqtt")),
    expect(clippy::needless_pass_by_value)
)]
fn build(
    config: &SourceConfig,
    #[cfg_attr(
        not(any(feature = "kafka", feature = "mqtt")),
        expect(unused_variables)
    )]
    stream: StreamName,
    #[cfg_attr(not(feature = "kafka"), expect(unused_variables))] log: &LogConfig,
) -> anyhow::Result<Arc<dyn Source>> {
    Ok(match config {
        #[cfg(feature = "kafka")]
        SourceConfig::Kafka(config) => Arc::new(kafka_source(config, stream, log)?),
        #[cfg(feature = "mqtt")]
        SourceConfig::Mqtt(config) => Arc::new(mqtt_source(config, stream)?),
        #[cfg(not(feature = "kafka"))]
        SourceConfig::Kafka(_) => Err(tributary_connectors::registry::LeftOut::new("kafka"))?,
        #[cfg(not(feature = "mqtt"))]
        SourceConfig::Mqtt(_) => Err(tributary_connectors::registry::LeftOut::new("mqtt"))?,
    })
}

#[cfg(feature = "kafka")]
fn kafka_source(
    config: &KafkaSourceConfig,
    stream: StreamName,
    log: &LogConfig,
) -> anyhow::Result<kafka::KafkaSource> {
    let brokers = match (&config.brokers, log) {
        (Some(brokers), _) => brokers.clone(),
        (None, LogConfig::Kafka(log)) => log.brokers.clone(),
        (None, LogConfig::Embedded(_)) => {
            bail!("brokers must be set (the log is not on Kafka)")
        }
    };
    if config.topics.is_empty() || config.topics.iter().any(String::is_empty) {
        bail!("topics must name at least one topic");
    }
    if config.batch_size == 0 {
        bail!("batch_size must be at least 1");
    }
    Ok(kafka::KafkaSource {
        name: config.name.clone(),
        stream,
        consumer: tributary_connectors::kafka::source::KafkaSourceConfig {
            brokers,
            topics: config.topics.clone(),
            group_id: config
                .group_id
                .clone()
                .unwrap_or_else(|| format!("tributary.source.{}", config.name)),
            client_id: format!("tributary.source.{}", config.name),
        },
        fields: Fields {
            id: config.id_field.clone(),
            ts: config.ts_field.clone(),
            key: config.key_field.clone(),
        },
        ts_format: config.ts_format,
        batch_size: config.batch_size,
    })
}

#[cfg(feature = "mqtt")]
fn mqtt_source(config: &MqttSourceConfig, stream: StreamName) -> anyhow::Result<mqtt::MqttSource> {
    let broker = mqtt::broker_of(&config.url)?;
    let tls = match (broker.tls, &config.ca_file) {
        (true, ca_file) => Some(mqtt::tls_config(ca_file.as_deref())?),
        (false, Some(_)) => bail!("ca_file needs a TLS url (mqtts://host[:port])"),
        (false, None) => None,
    };
    let password = match (&config.password_env, &config.password_file) {
        (Some(_), Some(_)) => bail!("set password_env or password_file, not both"),
        (Some(name), None) => mqtt::PasswordFrom::Env(name),
        (None, Some(path)) => mqtt::PasswordFrom::File(path),
        (None, None) => mqtt::PasswordFrom::Nowhere,
    };
    let credentials = match (&config.username, password) {
        (Some(username), from) => Some(mqtt::Credentials::new(username, from)?),
        (None, mqtt::PasswordFrom::Nowhere) => None,
        (None, _) => bail!("a password needs a username"),
    };
    if config.topics.is_empty() || !config.topics.iter().all(|t| rumqttc::valid_filter(t)) {
        bail!("topics must name at least one valid topic filter");
    }
    if config.batch_size == 0 {
        bail!("batch_size must be at least 1");
    }
    let client_id = config
        .client_id
        .clone()
        .unwrap_or_else(|| format!("tributary-{}", config.name));
    if client_id.is_empty() || client_id.len() > 65535 {
        bail!("client_id must not be empty");
    }
    Ok(mqtt::MqttSource {
        name: config.name.clone(),
        stream,
        broker,
        tls,
        credentials,
        client_id,
        topics: config.topics.clone(),
        fields: Fields {
            id: config.id_field.clone(),
            ts: config.ts_field.clone(),
            key: config.key_field.clone(),
        },
        ts_format: config.ts_format,
        batch_size: config.batch_size,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[derive(Deserialize)]
    struct Doc {
        sources: Vec<SourceConfig>,
    }

    #[cfg(any(feature = "kafka", feature = "mqtt"))]
    fn sources(toml_text: &str) -> Vec<SourceConfig> {
        toml::from_str::<Doc>(toml_text).unwrap().sources
    }

    const ONE: &str = r#"
        [[sources]]
        kind = "kafka"
        name = "orders"
        topics = ["shop.orders"]
        stream = "clicks"
        ts_format = "epoch_s"
    "#;

    #[cfg(any(feature = "kafka", feature = "mqtt"))]
    fn kafka_log() -> LogConfig {
        LogConfig::Kafka(tributary_connectors::kafka::KafkaConfig::new(
            "127.0.0.1:9092",
        ))
    }

    #[test]
    fn a_kind_left_out_of_the_build_is_refused_naming_its_feature() {
        for (text, feature, compiled) in [
            (ONE, "kafka", cfg!(feature = "kafka")),
            (MQTT, "mqtt", cfg!(feature = "mqtt")),
        ] {
            let read = toml::from_str::<Doc>(text);
            if compiled {
                assert_eq!(read.unwrap().sources.len(), 1, "{feature}");
            } else {
                let error = read.err().unwrap().to_string();
                let expected = format!("build it with the cargo feature `{feature}`");
                assert!(error.contains(&expected), "{error}");
            }
        }
    }

    #[test]
    #[cfg(feature = "kafka")]
    fn a_kafka_source_is_registered_with_defaults() {
        let registry = Sources::default();
        let streams = [StreamName::new("clicks".to_owned()).unwrap()];
        register(&registry, &sources(ONE), &streams, &kafka_log()).unwrap();
        assert!(registry.health().contains_key("orders"));
        let SourceConfig::Kafka(config) = &sources(ONE)[0] else {
            panic!("a kafka source");
        };
        assert_eq!(config.ts_format, TsFormat::EpochS);
        assert_eq!((config.id_field.as_str(), config.batch_size), ("id", 500));
    }

    #[test]
    #[cfg(feature = "kafka")]
    fn invalid_sources_are_refused() {
        let streams = [StreamName::new("clicks".to_owned()).unwrap()];
        let other = [StreamName::new("views".to_owned()).unwrap()];
        let twice = format!("{ONE}{ONE}");
        let embedded: LogConfig = toml::from_str(
            r#"
            type = "embedded"
            path = "/tmp/x.redb"
            "#,
        )
        .unwrap();
        for (text, streams, log, expected) in [
            (ONE, &other[..], kafka_log(), "not declared"),
            (twice.as_str(), &streams[..], kafka_log(), "name of its own"),
            (ONE, &streams[..], embedded, "brokers must be set"),
        ] {
            let error = register(&Sources::default(), &sources(text), streams, &log).unwrap_err();
            assert!(format!("{error:#}").contains(expected), "{error:#}");
        }
        let unknown = "[[sources]]\nkind = \"kafka\"\nname = \"a\"\ntopics = [\"t\"]\nstream = \"clicks\"\ntopic = \"x\"";
        let error = toml::from_str::<Doc>(unknown).err().unwrap();
        assert!(error.to_string().contains("unknown field"), "{error}");
    }

    const MQTT: &str = r#"
        [[sources]]
        kind = "mqtt"
        name = "sensors"
        url = "mqtt://127.0.0.1:18830"
        topics = ["site/+/temperature"]
        stream = "clicks"
    "#;

    #[test]
    #[cfg(feature = "mqtt")]
    fn an_mqtt_source_is_registered_with_defaults() {
        let registry = Sources::default();
        let streams = [StreamName::new("clicks".to_owned()).unwrap()];
        register(&registry, &sources(MQTT), &streams, &kafka_log()).unwrap();
        assert!(registry.health().contains_key("sensors"));
        let SourceConfig::Mqtt(config) = &sources(MQTT)[0] else {
            panic!("an mqtt source");
        };
        let source = mqtt_source(config, streams[0].clone()).unwrap();
        assert_eq!(source.client_id, "tributary-sensors");
        assert_eq!(source.broker.host, "127.0.0.1");
        assert_eq!((source.broker.port, source.broker.tls), (18830, false));
        assert!(source.tls.is_none() && source.credentials.is_none());
        assert_eq!(source.batch_size, 500);
    }

    #[test]
    #[cfg(feature = "mqtt")]
    fn invalid_mqtt_sources_are_refused() {
        let streams = [StreamName::new("clicks".to_owned()).unwrap()];
        for (from, to, expected) in [
            ("mqtt://127.0.0.1:18830", "https://broker", "url must be"),
            ("site/+/temperature", "site/#/x", "topic filter"),
            ("stream = \"clicks\"", "stream = \"views\"", "not declared"),
            (
                "name = \"sensors\"",
                "name = \"sensors\"\nca_file = \"/ca.pem\"",
                "needs a TLS url",
            ),
            (
                "name = \"sensors\"",
                "name = \"sensors\"\npassword_env = \"PATH\"",
                "needs a username",
            ),
            (
                "name = \"sensors\"",
                "name = \"sensors\"\nusername = \"u\"\npassword_env = \"TRIBUTARY_TEST_UNSET_MQTT_PASSWORD\"",
                "TRIBUTARY_TEST_UNSET_MQTT_PASSWORD is not set",
            ),
            (
                "mqtt://127.0.0.1:18830",
                "mqtts://127.0.0.1:18831\"\nca_file = \"/nonexistent/ca.pem",
                "ca_file: cannot read",
            ),
        ] {
            let text = MQTT.replace(from, to);
            let error =
                register(&Sources::default(), &sources(&text), &streams, &kafka_log()).unwrap_err();
            assert!(format!("{error:#}").contains(expected), "{error:#}");
        }
    }
}
