//! The rate limiter a gateway runs: [`FallbackRateLimiter`], Redis first and the in-process
//! limiter whenever Redis cannot answer, and [`build`], which picks the backend and how
//! gateways share their counts on Redis ([`SyncSettings`]).
//!
//! Contract of [`FallbackRateLimiter::check`]: it never fails. When the primary fails (Redis
//! unreachable, its breaker open, a timeout, or any other error), the same check is made
//! on the fallback, which holds its own counts: while Redis is down each gateway limits
//! alone (a client spreading requests over `n` gateways then gets up to `n` times its
//! quota), and once Redis answers again, the shared counts apply again. The counter
//! `tributary_rate_limit_fallback_total` counts the checks decided by the fallback; a
//! warning is logged when the fallback takes over (with the error), an info line when
//! Redis is back.
//!
//! With a sync interval, the primary is [`SyncedRateLimiter`] rather than
//! [`RedisRateLimiter`]: it decides in process on its view of the counts on Redis, within
//! a bound on what the gateways together admit past a quota (see its module's contract).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tributary_core::ports::{Decision, PortError, Quota, RateLimiter, check_one};

use crate::memory::MemoryRateLimiter;
use crate::redis::RedisConfig;
#[cfg(feature = "redis")]
use crate::redis::{RedisRateLimiter, SyncedRateLimiter};

/// A primary limiter with a fallback (see the module's contract).
#[derive(Debug)]
pub struct FallbackRateLimiter {
    primary: Arc<dyn RateLimiter>,
    fallback: Arc<dyn RateLimiter>,
    /// Whether the last check went to the fallback.
    falling_back: AtomicBool,
}

impl FallbackRateLimiter {
    /// Checks on `primary`, and on `fallback` when `primary` fails.
    #[must_use]
    pub fn new(primary: Arc<dyn RateLimiter>, fallback: Arc<dyn RateLimiter>) -> Self {
        Self {
            primary,
            fallback,
            falling_back: AtomicBool::new(false),
        }
    }
}

#[async_trait]
impl RateLimiter for FallbackRateLimiter {
    async fn check(&self, key: &str, quota: Quota) -> Result<Decision, PortError> {
        check_one(self, key, quota).await
    }

    async fn check_all(&self, checks: &[(&str, Quota)]) -> Result<Vec<Decision>, PortError> {
        match self.primary.check_all(checks).await {
            Ok(decision) => {
                if self.falling_back.swap(false, Ordering::Relaxed) {
                    tracing::info!("rate limits are shared again: the primary limiter answers");
                }
                Ok(decision)
            }
            Err(error) => {
                metrics::counter!("tributary_rate_limit_fallback_total").increment(1);
                if !self.falling_back.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        error = %tributary_core::dead_letter::error_chain(&error),
                        "the primary rate limiter failed: limiting in this process until it answers"
                    );
                }
                self.fallback.check_all(checks).await
            }
        }
    }
}

/// How a gateway shares its counts on Redis (`[rate_limit]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncSettings {
    /// How often the counts admitted in process are reported to Redis; zero: no process
    /// decides alone, every check is a round trip to Redis.
    pub interval: Duration,
    /// The percentage (1 to 100) of a quota's burst a process may admit on a key before
    /// Redis has counted it.
    pub local_share_percent: u32,
}

impl SyncSettings {
    /// Every check a round trip to Redis, exactly.
    pub const EXACT: Self = Self {
        interval: Duration::ZERO,
        local_share_percent: 1,
    };

    /// The requests of `quota` a process may admit uncounted: its share of the burst,
    /// rounded up, at least 1.
    #[must_use]
    pub fn local_share(self, quota: Quota) -> u32 {
        let share = u64::from(quota.burst()) * u64::from(self.local_share_percent.clamp(1, 100));
        u32::try_from(share.div_ceil(100)).unwrap_or(u32::MAX)
    }
}

/// The Redis server the counts of every gateway live on, and how they are shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedCounts<'a> {
    /// The server.
    pub redis: &'a RedisConfig,
    /// How a gateway reports to it.
    pub sync: SyncSettings,
}

/// The rate limiter of a gateway: on Redis (with the in-process fallback) when `shared` is
/// given, exact or [`SyncedRateLimiter`] as its `sync` says, else in process; keeping at
/// most `max_keys` keys in process.
///
/// # Errors
/// [`PortError::Refused`] for an invalid Redis URL or a zero command timeout.
///
/// # Panics
/// With a sync interval, outside a Tokio runtime (the reports run on a task of their own).
pub fn build(
    shared: Option<SharedCounts<'_>>,
    max_keys: u64,
) -> Result<Arc<dyn RateLimiter>, PortError> {
    let memory: Arc<dyn RateLimiter> = Arc::new(MemoryRateLimiter::new(max_keys));
    let Some(shared) = shared else {
        return Ok(memory);
    };
    Ok(Arc::new(FallbackRateLimiter::new(
        on_redis(shared, max_keys)?,
        memory,
    )))
}

/// The limiter on Redis that `shared` describes.
#[cfg(feature = "redis")]
fn on_redis(shared: SharedCounts<'_>, max_keys: u64) -> Result<Arc<dyn RateLimiter>, PortError> {
    let redis = RedisRateLimiter::new(shared.redis)?;
    Ok(if shared.sync.interval.is_zero() {
        Arc::new(redis)
    } else {
        Arc::new(SyncedRateLimiter::new(redis, shared.sync, max_keys))
    })
}

/// Redis is left out of this build (a config naming it does not load).
#[cfg(not(feature = "redis"))]
fn on_redis(_: SharedCounts<'_>, _: u64) -> Result<Arc<dyn RateLimiter>, PortError> {
    Err(crate::registry::LeftOut::new("redis").refused())
}
