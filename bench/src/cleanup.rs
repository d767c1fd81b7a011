//! The per-run resources of the real services. Every name a benchmark run creates starts
//! with one run prefix (`bench_<hex>`), so [`remove_all`] can find and remove all of them:
//! Kafka topics, PostgreSQL databases, MongoDB databases and Redis keys.
//!
//! Service addresses come from the same environment variables as the tests:
//! `TRIBUTARY_KAFKA_BROKERS`, `TRIBUTARY_POSTGRES_URL`, `TRIBUTARY_MONGODB_URL`,
//! `TRIBUTARY_REDIS_URL`.

use std::time::Duration;

use anyhow::{Context, bail};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use sqlx::Connection;
use tributary_connectors::kafka::KafkaConfig;
use tributary_connectors::mongodb::MongoConfig;
use tributary_connectors::postgres::PostgresConfig;
use tributary_connectors::redis::RedisConfig;
use tributary_connectors::registry::{AnalyticsConfig, CacheConfig, DocumentsConfig, LogConfig};

/// How long Kafka admin requests may take.
const KAFKA_TIMEOUT: Duration = Duration::from_secs(15);

/// The value of a required environment variable.
///
/// # Errors
/// When it is unset.
pub fn env(name: &str) -> anyhow::Result<String> {
    std::env::var(name).with_context(|| {
        format!("{name} is not set: run `eval \"$(scripts/services.sh env)\"` first")
    })
}

/// A fresh run prefix: `bench_` and 12 hex digits. Valid as a topic, database and key
/// prefix.
#[must_use]
pub fn run_prefix() -> String {
    let id = uuid::Uuid::now_v7().simple().to_string();
    // The last digits of a v7 UUID are random; its first ones are the clock.
    format!("bench_{}", &id[id.len() - 12..])
}

/// `url` with its database (the path) replaced by `database`.
///
/// # Errors
/// When `url` has no path.
pub fn with_database(url: &str, database: &str) -> anyhow::Result<String> {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let Some(authority_end) = base.find("://").map(|i| i + 3) else {
        bail!("not a URL: {url}");
    };
    let path_start = base[authority_end..]
        .find('/')
        .map_or(base.len(), |i| authority_end + i);
    let mut out = format!("{}/{database}", &base[..path_start]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    Ok(out)
}

fn valid_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        bail!("database name {name:?} must be [a-z0-9_]+");
    }
    Ok(())
}

/// Creates PostgreSQL database `name` (`[a-z0-9_]+`) on the server of `admin_url` and
/// returns its URL.
///
/// # Errors
/// When the server refuses.
pub async fn create_postgres_database(admin_url: &str, name: &str) -> anyhow::Result<String> {
    valid_name(name)?;
    let mut conn = sqlx::PgConnection::connect(admin_url)
        .await
        .context("cannot connect to PostgreSQL")?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .with_context(|| format!("cannot create database {name}"))?;
    conn.close().await?;
    with_database(admin_url, name)
}

/// The real services' configs for one run: Kafka topics under a topic prefix, a fresh
/// PostgreSQL database, a MongoDB database and Redis keys named after the run's prefix.
#[derive(Debug, Clone)]
pub struct Services {
    /// Kafka, with the run's topic prefix.
    pub kafka: KafkaConfig,
    /// The URL of the run's PostgreSQL database.
    pub postgres: String,
    /// MongoDB, with the run's database.
    pub mongo: MongoConfig,
    /// Redis, with the run's key prefix (`{prefix}:`).
    pub redis: RedisConfig,
}

impl Services {
    /// Creates PostgreSQL database `prefix` and returns the configs of the services from
    /// the environment, with topics under `topic_prefix`.
    ///
    /// # Errors
    /// When a variable is unset or PostgreSQL refuses.
    pub async fn create(prefix: &str, topic_prefix: &str) -> anyhow::Result<Self> {
        let postgres = create_postgres_database(&env("TRIBUTARY_POSTGRES_URL")?, prefix).await?;
        Ok(Self {
            kafka: KafkaConfig {
                topic_prefix: topic_prefix.to_owned(),
                ..KafkaConfig::new(env("TRIBUTARY_KAFKA_BROKERS")?)
            },
            postgres,
            mongo: MongoConfig {
                database: prefix.to_owned(),
                ..MongoConfig::new(env("TRIBUTARY_MONGODB_URL")?)
            },
            redis: RedisConfig {
                key_prefix: format!("{prefix}:"),
                ..RedisConfig::new(env("TRIBUTARY_REDIS_URL")?)
            },
        })
    }

    /// The adapters' configs, for `registry::build`.
    #[must_use]
    pub fn configs(&self) -> (LogConfig, AnalyticsConfig, DocumentsConfig, CacheConfig) {
        (
            LogConfig::Kafka(self.kafka.clone()),
            AnalyticsConfig::Postgres(PostgresConfig::new(self.postgres.clone())),
            DocumentsConfig::Mongodb(self.mongo.clone()),
            CacheConfig::Redis(self.redis.clone()),
        )
    }
}

/// Creates Kafka topic `name` with `partitions` partitions (replication factor 1).
///
/// # Errors
/// When the broker refuses or does not answer.
pub async fn create_topic(brokers: &str, name: &str, partitions: i32) -> anyhow::Result<()> {
    let admin = admin_client(brokers)?;
    let options = AdminOptions::new().operation_timeout(Some(KAFKA_TIMEOUT));
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let results = admin.create_topics([&topic], &options).await;
    drop_blocking(admin).await;
    for result in results? {
        if let Err((topic, code)) = result {
            bail!("cannot create topic {topic}: {code}");
        }
    }
    Ok(())
}

fn admin_client(brokers: &str) -> anyhow::Result<AdminClient<DefaultClientContext>> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .context("cannot create a Kafka admin client")
}

/// librdkafka clients block while they shut down: drop them off the async workers.
async fn drop_blocking<T: Send + 'static>(value: T) {
    let _ = tokio::task::spawn_blocking(move || drop(value)).await;
}

/// What [`remove_all`] removed.
#[derive(Debug, serde::Serialize)]
pub struct Removed {
    /// Kafka topics.
    pub topics: Vec<String>,
    /// Kafka consumer groups (of the `peers` suite's Flink and Kafka Streams runs).
    pub consumer_groups: Vec<String>,
    /// PostgreSQL databases.
    pub postgres_databases: Vec<String>,
    /// MongoDB databases.
    pub mongodb_databases: Vec<String>,
    /// Redis keys (count).
    pub redis_keys: usize,
}

/// Removes every topic, database and key whose name starts with `prefix` (which must
/// start with `bench_`, so that nothing else can be hit) from the services named by the
/// environment.
///
/// # Errors
/// The first service that fails; what was removed before stays removed.
pub async fn remove_all(prefix: &str) -> anyhow::Result<Removed> {
    if !prefix.starts_with("bench_") || prefix.len() <= "bench_".len() {
        bail!("refusing to remove resources of prefix {prefix:?}: it must be bench_ and more");
    }
    Ok(Removed {
        topics: delete_topics(&env("TRIBUTARY_KAFKA_BROKERS")?, prefix).await?,
        consumer_groups: delete_groups(&env("TRIBUTARY_KAFKA_BROKERS")?, prefix).await?,
        postgres_databases: drop_postgres_databases(&env("TRIBUTARY_POSTGRES_URL")?, prefix)
            .await?,
        mongodb_databases: drop_mongodb_databases(&env("TRIBUTARY_MONGODB_URL")?, prefix).await?,
        redis_keys: delete_redis_keys(&env("TRIBUTARY_REDIS_URL")?, prefix).await?,
    })
}

async fn delete_topics(brokers: &str, prefix: &str) -> anyhow::Result<Vec<String>> {
    let admin = admin_client(brokers)?;
    let (admin, metadata) = tokio::task::spawn_blocking(move || {
        let metadata = admin.inner().fetch_metadata(None, KAFKA_TIMEOUT);
        (admin, metadata)
    })
    .await?;
    let names: Vec<String> = metadata
        .context("cannot list Kafka topics")?
        .topics()
        .iter()
        .map(|t| t.name().to_owned())
        .filter(|n| n.starts_with(prefix))
        .collect();
    if !names.is_empty() {
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let options = AdminOptions::new().operation_timeout(Some(KAFKA_TIMEOUT));
        let results = admin.delete_topics(&refs, &options).await;
        for result in results.context("cannot delete Kafka topics")? {
            if let Err((topic, code)) = result {
                bail!("cannot delete topic {topic}: {code}");
            }
        }
    }
    drop_blocking(admin).await;
    Ok(names)
}

/// Deletes the consumer groups named with `prefix`; a group that cannot be deleted (still
/// active) is left, not an error.
async fn delete_groups(brokers: &str, prefix: &str) -> anyhow::Result<Vec<String>> {
    let admin = admin_client(brokers)?;
    let wanted = prefix.to_owned();
    let (admin, names) = tokio::task::spawn_blocking(move || {
        let names = admin
            .inner()
            .fetch_group_list(None, KAFKA_TIMEOUT)
            .map(|list| {
                list.groups()
                    .iter()
                    .map(|g| g.name().to_owned())
                    .filter(|n| n.starts_with(&wanted))
                    .collect::<Vec<String>>()
            });
        (admin, names)
    })
    .await?;
    let names = names.context("cannot list Kafka consumer groups")?;
    let mut deleted = Vec::new();
    if !names.is_empty() {
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let options = AdminOptions::new().operation_timeout(Some(KAFKA_TIMEOUT));
        let results = admin.delete_groups(&refs, &options).await;
        for group in results
            .context("cannot delete Kafka consumer groups")?
            .into_iter()
            .flatten()
        {
            deleted.push(group);
        }
    }
    drop_blocking(admin).await;
    Ok(deleted)
}

async fn drop_postgres_databases(admin_url: &str, prefix: &str) -> anyhow::Result<Vec<String>> {
    let mut conn = sqlx::PgConnection::connect(admin_url)
        .await
        .context("cannot connect to PostgreSQL")?;
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT datname FROM pg_database WHERE starts_with(datname, $1) ORDER BY datname",
    )
    .bind(prefix)
    .fetch_all(&mut conn)
    .await?;
    for name in &names {
        valid_name(name)?;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut conn)
            .await
            .with_context(|| format!("cannot drop database {name}"))?;
    }
    conn.close().await?;
    Ok(names)
}

async fn drop_mongodb_databases(url: &str, prefix: &str) -> anyhow::Result<Vec<String>> {
    let client = mongodb::Client::with_uri_str(url)
        .await
        .context("cannot connect to MongoDB")?;
    let names: Vec<String> = client
        .list_database_names()
        .await
        .context("cannot list MongoDB databases")?
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .collect();
    for name in &names {
        client
            .database(name)
            .drop()
            .await
            .with_context(|| format!("cannot drop MongoDB database {name}"))?;
    }
    client.shutdown().await;
    Ok(names)
}

async fn delete_redis_keys(url: &str, prefix: &str) -> anyhow::Result<usize> {
    let client = redis::Client::open(url).context("bad Redis URL")?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .context("cannot connect to Redis")?;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await?;
    if !keys.is_empty() {
        redis::cmd("DEL")
            .arg(&keys)
            .query_async::<()>(&mut conn)
            .await?;
    }
    Ok(keys.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_database_of_a_url() {
        assert_eq!(
            with_database("postgres://u:p@h:1/tributary", "bench_x").unwrap(),
            "postgres://u:p@h:1/bench_x"
        );
        assert_eq!(
            with_database("postgres://u:p@h:1?sslmode=disable", "b").unwrap(),
            "postgres://u:p@h:1/b?sslmode=disable"
        );
        assert!(run_prefix().starts_with("bench_"));
        assert!(valid_name("bench_1a").is_ok());
        assert!(valid_name("x; DROP").is_err());
    }
}
