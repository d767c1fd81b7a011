//! The rate limiter a gateway runs: [`FallbackRateLimiter`], Redis first and the in-process
//! limiter whenever Redis cannot answer, and [`build`], which picks the backend.
//!
//! Contract: [`FallbackRateLimiter::check`] never fails. When the primary fails (Redis
//! unreachable, its breaker open, a timeout, or any other error), the same check is made
//! on the fallback, which holds its own counts: while Redis is down each gateway limits
//! alone (a client spreading requests over `n` gateways then gets up to `n` times its
//! quota), and once Redis answers again, the shared counts apply again. The counter
//! `tributary_rate_limit_fallback_total` counts the checks decided by the fallback; a
//! warning is logged when the fallback takes over (with the error), an info line when
//! Redis is back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use tributary_core::ports::{Decision, PortError, Quota, RateLimiter};

use crate::memory::MemoryRateLimiter;
use crate::redis::{RedisConfig, RedisRateLimiter};

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
        let mut decisions = self.check_all(&[(key, quota)]).await?;
        Ok(decisions.pop().unwrap_or(Decision::from_backlog(
            quota,
            false,
            quota.span_micros(),
            quota.interval_micros(),
        )))
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

/// The rate limiter of a gateway: on Redis (with the in-process fallback) when `redis` is
/// given, else in process, keeping at most `max_keys` keys in process.
///
/// # Errors
/// [`PortError::Refused`] for an invalid Redis URL or a zero command timeout.
pub fn build(
    redis: Option<&RedisConfig>,
    max_keys: u64,
) -> Result<Arc<dyn RateLimiter>, PortError> {
    let memory: Arc<dyn RateLimiter> = Arc::new(MemoryRateLimiter::new(max_keys));
    Ok(match redis {
        Some(config) => Arc::new(FallbackRateLimiter::new(
            Arc::new(RedisRateLimiter::new(config)?),
            memory,
        )),
        None => memory,
    })
}
