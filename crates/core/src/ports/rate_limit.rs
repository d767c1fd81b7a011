//! The rate-limit port: how many requests a client may make, decided by the Generic Cell
//! Rate Algorithm (GCRA, the leaky bucket as a meter), with its arithmetic in one place.
//!
//! Contract of a [`Quota`] of `rate` requests per `period` with a `burst`:
//! - the requests are spaced by the *emission interval* `T = period / rate`; a key keeps one
//!   number, its *theoretical arrival time* (TAT): when it would be back to a full burst;
//! - a request at `now` is allowed when `max(TAT, now) + T - now <= burst × T`, i.e. a key
//!   unused for long may make `burst` requests at once, then one every `T`; an allowed
//!   request moves the TAT to `max(TAT, now) + T`, a refused one leaves it as it was (a
//!   refused request costs nothing);
//! - a refused request learns when the next one would be allowed (`retry_after`), every
//!   decision how many requests are left in the burst now (`remaining`) and when the burst
//!   is full again (`reset`).
//!
//! [`gcra`] is the algorithm on plain microseconds, so that an adapter runs exactly it (the
//! in-process one) or mirrors it line by line (the Redis one, in a Lua script, on the
//! server's clock) and [`Decision::from_backlog`] turns what either stored into the same
//! [`Decision`]. The conformance suite (`tributary-connectors`' `rate_limit_conformance`)
//! checks that both adapters decide alike.

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;

use super::PortError;

/// A quota: `rate` requests per `period`, at most `burst` of them at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    rate: u32,
    period: Duration,
    burst: u32,
}

/// A quota that cannot be enforced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuotaError {
    /// A rate, period or burst of zero.
    #[error("a quota needs a rate, a period and a burst of at least 1")]
    Zero,
    /// The period divided by the rate is under a microsecond (the algorithm's resolution),
    /// or the burst's span (`burst × period / rate`) exceeds a year.
    #[error("a quota's interval between requests must be between 1µs and its burst within a year")]
    OutOfRange,
}

/// The longest span of a burst: a quota refilling more slowly is a configuration mistake.
const MAX_SPAN_MICROS: u64 = 365 * 24 * 3600 * 1_000_000;

impl Quota {
    /// `rate` requests per `period`, at most `burst` at once.
    ///
    /// # Errors
    /// [`QuotaError`] for a zero, or an interval under a microsecond, or a burst spanning
    /// more than a year.
    pub fn new(rate: u32, period: Duration, burst: u32) -> Result<Self, QuotaError> {
        if rate == 0 || burst == 0 || period.is_zero() {
            return Err(QuotaError::Zero);
        }
        let quota = Self {
            rate,
            period,
            burst,
        };
        let interval = quota.interval_micros();
        if interval == 0 || interval.saturating_mul(u64::from(burst)) > MAX_SPAN_MICROS {
            return Err(QuotaError::OutOfRange);
        }
        Ok(quota)
    }

    /// Requests per period.
    #[must_use]
    pub fn rate(self) -> u32 {
        self.rate
    }

    /// The period of the rate.
    #[must_use]
    pub fn period(self) -> Duration {
        self.period
    }

    /// How many requests a key unused for long may make at once.
    #[must_use]
    pub fn burst(self) -> u32 {
        self.burst
    }

    /// The emission interval `T = period / rate`, in whole microseconds.
    #[must_use]
    pub fn interval_micros(self) -> u64 {
        let period = u64::try_from(self.period.as_micros()).unwrap_or(u64::MAX);
        period / u64::from(self.rate)
    }

    /// `burst × T`, in microseconds: how far ahead of now a key's TAT may be.
    #[must_use]
    pub fn span_micros(self) -> u64 {
        self.interval_micros() * u64::from(self.burst)
    }
}

/// What a [`RateLimiter`] decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may go on.
    pub allowed: bool,
    /// The quota's burst: the most requests left at any time.
    pub limit: u32,
    /// How many more requests would be allowed right now.
    pub remaining: u32,
    /// How long until the key is back to a full burst.
    pub reset: Duration,
    /// For a refused request, how long until the next one would be allowed; zero when
    /// allowed.
    pub retry_after: Duration,
}

impl Decision {
    /// The decision from what an adapter's GCRA step found: whether it allowed the
    /// request, the key's *backlog* afterwards (its TAT minus now, in microseconds: zero
    /// for a full burst) and, when refused, the wait until a request would be allowed.
    #[must_use]
    pub fn from_backlog(
        quota: Quota,
        allowed: bool,
        backlog_micros: u64,
        retry_after_micros: u64,
    ) -> Self {
        let interval = quota.interval_micros();
        let free = quota.span_micros().saturating_sub(backlog_micros);
        let remaining = u32::try_from(free / interval)
            .unwrap_or(u32::MAX)
            .min(quota.burst);
        Self {
            allowed,
            limit: quota.burst,
            remaining,
            reset: Duration::from_micros(backlog_micros),
            retry_after: if allowed {
                Duration::ZERO
            } else {
                Duration::from_micros(retry_after_micros)
            },
        }
    }
}

impl Decision {
    /// A refusal as if the key's whole burst were taken: the safe answer where an adapter
    /// has none to give (a decision missing from its own answer).
    #[must_use]
    pub fn exhausted(quota: Quota) -> Self {
        Self::from_backlog(quota, false, quota.span_micros(), quota.interval_micros())
    }
}

/// One step of the GCRA (see the module's contract) at `now`, for a key whose stored TAT
/// is `tat` (`None` for a key never seen, or expired): the decision and, when allowed, the
/// TAT to store (it may be forgotten `new TAT - now` after `now`, when it no longer
/// matters). Times are microseconds on one clock.
#[must_use]
pub fn gcra(quota: Quota, now: u64, tat: Option<u64>) -> (Decision, Option<u64>) {
    let interval = quota.interval_micros();
    let tat = tat.unwrap_or(now).max(now);
    let new_tat = tat + interval;
    let allow_at = new_tat.saturating_sub(quota.span_micros());
    if now < allow_at {
        let decision = Decision::from_backlog(quota, false, tat - now, allow_at - now);
        (decision, None)
    } else {
        let decision = Decision::from_backlog(quota, true, new_tat - now, 0);
        (decision, Some(new_tat))
    }
}

/// A rate limiter: Redis (one TAT per key, shared by every gateway), or in-process when
/// embedded and while Redis is unreachable.
///
/// Contract: [`gcra`] per key, atomically (concurrent checks of one key never both take
/// its last request); keys are independent; a key's state may be forgotten once its TAT
/// has passed (it would decide the same without it). A limiter whose counts several
/// processes share may relax atomicity *between* processes to spare a round trip per
/// check, if it states a bound on what they admit together past the quota and counts that
/// excess against the key (`tributary-connectors`' synced Redis limiter).
#[async_trait]
pub trait RateLimiter: Send + Sync + Debug {
    /// Counts one request of `key` against `quota`, and decides.
    async fn check(&self, key: &str, quota: Quota) -> Result<Decision, PortError>;

    /// Counts one request against each `(key, quota)` of `checks` (each as [`Self::check`]
    /// would, each counted whatever the others decide) and returns the decisions in order.
    /// The default checks them one after the other; an adapter whose calls cost a round
    /// trip makes them in one.
    async fn check_all(&self, checks: &[(&str, Quota)]) -> Result<Vec<Decision>, PortError> {
        let mut decisions = Vec::with_capacity(checks.len());
        for &(key, quota) in checks {
            decisions.push(self.check(key, quota).await?);
        }
        Ok(decisions)
    }
}

/// [`RateLimiter::check`] for an adapter whose [`RateLimiter::check_all`] is the primitive:
/// one check through it.
///
/// # Errors
/// As the adapter's `check_all`.
pub async fn check_one<L: RateLimiter + ?Sized>(
    limiter: &L,
    key: &str,
    quota: Quota,
) -> Result<Decision, PortError> {
    let mut decisions = limiter.check_all(&[(key, quota)]).await?;
    Ok(decisions
        .pop()
        .unwrap_or_else(|| Decision::exhausted(quota)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(rate: u32, period_ms: u64, burst: u32) -> Quota {
        Quota::new(rate, Duration::from_millis(period_ms), burst).unwrap()
    }

    #[test]
    fn quotas_refuse_zeros_and_extremes() {
        assert_eq!(
            Quota::new(0, Duration::from_secs(1), 1),
            Err(QuotaError::Zero)
        );
        assert_eq!(Quota::new(1, Duration::ZERO, 1), Err(QuotaError::Zero));
        assert_eq!(
            Quota::new(1, Duration::from_secs(1), 0),
            Err(QuotaError::Zero)
        );
        assert_eq!(
            Quota::new(2_000_000, Duration::from_secs(1), 1),
            Err(QuotaError::OutOfRange)
        );
        assert_eq!(
            Quota::new(1, Duration::from_secs(365 * 24 * 3600), 2),
            Err(QuotaError::OutOfRange)
        );
        assert_eq!(quota(10, 1000, 5).interval_micros(), 100_000);
    }

    #[test]
    fn a_burst_then_one_per_interval() {
        let q = quota(10, 1000, 3);
        let mut tat = None;
        let now = 5_000_000;
        for remaining in [2, 1, 0] {
            let (decision, stored) = gcra(q, now, tat);
            assert!(decision.allowed);
            assert_eq!(decision.remaining, remaining);
            assert_eq!(decision.limit, 3);
            tat = stored;
        }
        let (refused, stored) = gcra(q, now, tat);
        assert!(!refused.allowed);
        assert_eq!(stored, None, "a refused request costs nothing");
        assert_eq!(refused.retry_after, Duration::from_millis(100));
        assert_eq!(refused.reset, Duration::from_millis(300));
        assert_eq!(refused.remaining, 0);
        // One interval later, one more request.
        let (later, _) = gcra(q, now + 100_000, tat);
        assert!(later.allowed);
        assert_eq!(later.remaining, 0);
    }

    #[test]
    fn an_idle_key_is_back_to_a_full_burst() {
        let q = quota(1, 1000, 2);
        let (_, tat) = gcra(q, 0, None);
        let (_, tat) = gcra(q, 0, tat);
        assert_eq!(tat, Some(2_000_000));
        let (decision, _) = gcra(q, 10_000_000, tat);
        assert!(decision.allowed);
        assert_eq!(decision.remaining, 1);
        assert_eq!(decision.reset, Duration::from_secs(1));
    }
}
