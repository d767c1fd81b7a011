//! [`RedisRateLimiter`]: the [`RateLimiter`] port on Redis, shared by every gateway.
//!
//! Contract (the same as the in-process limiter's, checked by
//! `tests/rate_limit_conformance.rs`): each check (or `check_all`, in one round trip) is one
//! atomic Lua script ([`GCRA_SCRIPT`]) that runs [`tributary_core::ports::gcra`] line by
//! line on each key
//! `{key_prefix}rate:{key}`, which holds the key's TAT in microseconds of the **server's**
//! clock (`TIME` inside the script: the gateways' clocks do not matter) and expires
//! (`PX`) when the TAT has passed. The script is sent as `EVALSHA`, and loaded once more
//! when the server answers `NOSCRIPT` (after a restart or `SCRIPT FLUSH`): the `redis`
//! crate's `Script`.
//!
//! The connection is made at the first check, not at construction, so that a gateway
//! starts while Redis is down (its requests are then limited in process, see
//! `crate::rate_limit`). Every check, connecting included, runs within `command_timeout`
//! through this limiter's own circuit breaker (`crate::breaker`, system
//! `redis-rate-limit`): while Redis is down, checks fail at once with `Unavailable`.

use std::fmt;
use std::time::Duration;

use ::redis::Script;
use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use async_trait::async_trait;
use tokio::sync::OnceCell;
use tributary_core::ports::{Decision, PortError, Quota, RateLimiter};

use super::cache::{redacted, redis_error};
use super::config::RedisConfig;
use crate::breaker::Breaker;

/// The system name of this adapter's errors and circuit breaker (apart from the cache's,
/// so that one's state does not hide the other's).
const SYSTEM: &str = "redis-rate-limit";

/// One GCRA step per key, atomically, on the server's clock. `KEYS[i]`: a key;
/// `ARGV[2i - 1]`: its quota's emission interval, `ARGV[2i]`: `burst × interval`, both in
/// microseconds. Returns `{allowed (0|1), backlog, retry_after}` per key, flattened, in
/// microseconds, as [`tributary_core::ports::Decision::from_backlog`] reads them.
/// Microseconds since 1970 stay below 2^53, so Lua's doubles hold them exactly; `%d`
/// writes them without an exponent.
pub const GCRA_SCRIPT: &str = r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local result = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i - 1])
  local span = tonumber(ARGV[2 * i])
  local tat = now
  local stored = redis.call('GET', key)
  if stored then
    tat = math.max(tonumber(stored), now)
  end
  local new_tat = tat + interval
  local allow_at = new_tat - span
  if now < allow_at then
    result[#result + 1] = 0
    result[#result + 1] = tat - now
    result[#result + 1] = allow_at - now
  else
    redis.call('SET', key, string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
    result[#result + 1] = 1
    result[#result + 1] = new_tat - now
    result[#result + 1] = 0
  end
end
return result
";

/// The rate limiter on Redis. Cheap to clone: clones share one connection and one breaker.
#[derive(Clone)]
pub struct RedisRateLimiter {
    inner: std::sync::Arc<Inner>,
}

struct Inner {
    client: ::redis::Client,
    connection: OnceCell<ConnectionManager>,
    config: RedisConfig,
    script: Script,
    breaker: Breaker,
}

impl fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("url", &redacted(&self.inner.config.url))
            .field("key_prefix", &self.inner.config.key_prefix)
            .finish_non_exhaustive()
    }
}

impl RedisRateLimiter {
    /// A limiter on the server of `config`, connecting at its first check.
    ///
    /// # Errors
    /// [`PortError::Refused`] for an invalid URL or a zero `command_timeout`.
    pub fn new(config: &RedisConfig) -> Result<Self, PortError> {
        let breaker = Breaker::new(
            SYSTEM,
            "[cache] command_timeout",
            config.command_timeout,
            config.cool_down,
        )?;
        let client = ::redis::Client::open(config.url.as_str()).map_err(redis_error)?;
        Ok(Self {
            inner: std::sync::Arc::new(Inner {
                client,
                connection: OnceCell::new(),
                config: config.clone(),
                script: Script::new(GCRA_SCRIPT),
                breaker,
            }),
        })
    }

    /// The shared connection, made on first use (a failed attempt is retried by the next
    /// call the breaker lets through).
    async fn connection(&self) -> Result<ConnectionManager, PortError> {
        let inner = &self.inner;
        inner
            .connection
            .get_or_try_init(|| async {
                let manager_config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(inner.config.command_timeout))
                    .set_response_timeout(Some(inner.config.command_timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(100));
                let connection =
                    ConnectionManager::new_with_config(inner.client.clone(), manager_config)
                        .await
                        .map_err(redis_error)?;
                tracing::info!(url = %redacted(&inner.config.url), "rate limiter connected to redis");
                Ok(connection)
            })
            .await
            .cloned()
    }

    /// Runs the script for `checks`, in one round trip.
    async fn step(&self, checks: &[(&str, Quota)]) -> Result<Vec<Decision>, PortError> {
        let mut connection = self.connection().await?;
        let prefix = &self.inner.config.key_prefix;
        let mut invocation = self.inner.script.prepare_invoke();
        for &(key, quota) in checks {
            invocation
                .key(format!("{prefix}rate:{key}"))
                .arg(quota.interval_micros())
                .arg(quota.span_micros());
        }
        let answer: Vec<i64> = invocation
            .invoke_async(&mut connection)
            .await
            .map_err(redis_error)?;
        if answer.len() != 3 * checks.len() {
            return Err(PortError::corrupt(
                SYSTEM,
                UnexpectedAnswer {
                    values: answer.len(),
                    keys: checks.len(),
                },
            ));
        }
        let micros = |value: i64| u64::try_from(value).unwrap_or(0);
        Ok(checks
            .iter()
            .zip(answer.chunks_exact(3))
            .map(|(&(_, quota), step)| {
                Decision::from_backlog(quota, step[0] == 1, micros(step[1]), micros(step[2]))
            })
            .collect())
    }
}

/// The script answered with a number of values that does not match its keys (a script of
/// another version under the same hash cannot happen; this guards the decoding).
#[derive(Debug, thiserror::Error)]
#[error("the rate-limit script answered {values} values for {keys} keys")]
struct UnexpectedAnswer {
    values: usize,
    keys: usize,
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn check(&self, key: &str, quota: Quota) -> Result<Decision, PortError> {
        let mut decisions = self.check_all(&[(key, quota)]).await?;
        decisions
            .pop()
            .ok_or_else(|| PortError::corrupt(SYSTEM, UnexpectedAnswer { values: 0, keys: 1 }))
    }

    async fn check_all(&self, checks: &[(&str, Quota)]) -> Result<Vec<Decision>, PortError> {
        if checks.is_empty() {
            return Ok(Vec::new());
        }
        self.inner.breaker.call(self.step(checks)).await
    }
}
