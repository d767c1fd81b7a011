//! [`RedisCache`]: the [`Cache`] port on Redis.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Cmd, ErrorKind, FromRedisValue, RedisError, ServerErrorKind};
use async_trait::async_trait;
use tributary_core::ports::{Cache, PortError};

use super::config::RedisConfig;
use crate::breaker::{Breaker, TimedOut};

/// The system name carried by this adapter's errors.
const SYSTEM: &str = "redis";

/// How long connecting may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Classifies a Redis error: connection trouble and a busy server are transient, a value
/// of the wrong type is corrupt data, the rest is refused.
pub(super) fn redis_error(error: RedisError) -> PortError {
    if error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || matches!(
            error.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::ClusterDown
                    | ServerErrorKind::MasterDown
            )
        )
    {
        PortError::unavailable(SYSTEM, error)
    } else if matches!(
        error.kind(),
        ErrorKind::UnexpectedReturnType | ErrorKind::Parse
    ) {
        PortError::corrupt(SYSTEM, error)
    } else {
        PortError::refused(SYSTEM, error)
    }
}

/// The cache on Redis. Cheap to clone: clones share one multiplexed connection and one
/// circuit breaker.
#[derive(Clone)]
pub struct RedisCache {
    connection: ConnectionManager,
    key_prefix: String,
    url: String,
    /// Every command but `PING` goes through it.
    commands: Arc<Breaker>,
    command_timeout: Duration,
}

impl fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCache")
            .field("url", &self.url)
            .field("key_prefix", &self.key_prefix)
            .finish_non_exhaustive()
    }
}

impl RedisCache {
    /// Connects and checks that the server answers `PING`.
    ///
    /// # Errors
    /// [`PortError::Refused`] for an invalid URL, [`PortError::Unavailable`] when the server
    /// cannot be reached or does not answer within a few seconds.
    pub async fn connect(config: &RedisConfig) -> Result<Self, PortError> {
        let commands = Breaker::new(
            SYSTEM,
            "[cache] command_timeout",
            config.command_timeout,
            config.cool_down,
        )?;
        let client = ::redis::Client::open(config.url.as_str()).map_err(redis_error)?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(config.command_timeout))
            // Retry a failed (re)connection twice, quickly: callers retry `Unavailable`
            // themselves, and the crate's default backoff waits for seconds.
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(200));
        let connection = tokio::time::timeout(
            2 * TIMEOUT,
            ConnectionManager::new_with_config(client, manager_config),
        )
        .await
        .map_err(|elapsed| PortError::unavailable(SYSTEM, elapsed))?
        .map_err(redis_error)?;
        let cache = Self {
            connection,
            key_prefix: config.key_prefix.clone(),
            url: redacted(&config.url),
            commands: Arc::new(commands),
            command_timeout: config.command_timeout,
        };
        cache.ping().await?;
        tracing::info!(url = %cache.url, key_prefix = %cache.key_prefix, "connected to redis");
        Ok(cache)
    }

    /// The Redis key under which `key` is stored.
    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.key_prefix)
    }

    /// Runs one command on the shared connection, through the breaker.
    async fn run<T: FromRedisValue>(&self, command: &Cmd) -> Result<T, PortError> {
        self.commands.call(self.send(command)).await
    }

    /// Sends one command on the shared connection.
    async fn send<T: FromRedisValue>(&self, command: &Cmd) -> Result<T, PortError> {
        let mut connection = self.connection.clone();
        command
            .query_async(&mut connection)
            .await
            .map_err(redis_error)
    }
}

/// The URL without its password, for logs.
pub(super) fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://***{}", &url[..scheme_end], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[async_trait]
impl Cache for RedisCache {
    /// Within the command timeout, but not through the breaker: readiness reports what
    /// the server answers now.
    async fn ping(&self) -> Result<(), PortError> {
        let command = ::redis::cmd("PING");
        tokio::time::timeout(self.command_timeout, self.send::<String>(&command))
            .await
            .map_err(|_elapsed| {
                PortError::unavailable(
                    SYSTEM,
                    TimedOut {
                        after: self.command_timeout,
                    },
                )
            })??;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<String>, PortError> {
        self.run(::redis::cmd("GET").arg(self.key(key))).await
    }

    async fn set(&self, key: &str, value: &str, ttl: Option<Duration>) -> Result<(), PortError> {
        let key = self.key(key);
        match ttl {
            None => self.run(::redis::cmd("SET").arg(key).arg(value)).await,
            Some(ttl) if ttl.is_zero() => {
                let _removed: u64 = self.run(::redis::cmd("DEL").arg(key)).await?;
                Ok(())
            }
            Some(ttl) => {
                // Redis expires in whole milliseconds: round a sub-millisecond TTL up to one.
                let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
                self.run(
                    ::redis::cmd("SET")
                        .arg(key)
                        .arg(value)
                        .arg("PX")
                        .arg(millis),
                )
                .await
            }
        }
    }

    async fn delete(&self, key: &str) -> Result<(), PortError> {
        let _removed: u64 = self.run(::redis::cmd("DEL").arg(self.key(key))).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn urls_are_redacted_for_logs() {
        assert_eq!(
            redacted("redis://user:secret@host:6379/0"),
            "redis://***@host:6379/0"
        );
        assert_eq!(
            redacted("redis://127.0.0.1:6379/"),
            "redis://127.0.0.1:6379/"
        );
    }
}
