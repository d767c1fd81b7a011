//! [`MemoryRateLimiter`]: the [`RateLimiter`] port in this process, running
//! [`tributary_core::ports::gcra`] itself, one TAT per key in a bounded moka cache.
//!
//! Why not the `governor` crate: its keyed limiter fixes one quota per limiter, while the
//! port passes the quota with each call (per scope, per address), and it does not report
//! the remaining burst nor when it is full again, which the `RateLimit` headers need. The
//! GCRA is a few lines ([`gcra`], in the core): running the very same lines here and
//! mirroring them in Redis's Lua script keeps the two adapters deciding alike, which the
//! conformance suite checks.
//!
//! Each key's update runs under moka's per-key lock (`and_compute_with`), so concurrent
//! checks of one key are serialized; a key is forgotten once its TAT has passed (it would
//! decide the same without it), and at most `max_keys` keys are kept: past that, the
//! least used are evicted (a client whose key was evicted gets a full burst again, the
//! price of a bound on memory that a flood of client addresses cannot break).

use std::fmt;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use moka::Expiry;
use moka::future::Cache as Moka;
use moka::ops::compute::Op;
use tributary_core::ports::{Decision, PortError, Quota, RateLimiter, gcra};

/// The default bound on the keys kept.
pub const DEFAULT_MAX_KEYS: u64 = 100_000;

/// A key's state: its TAT, and how long after it was written it stops mattering.
#[derive(Debug, Clone, Copy)]
struct Tat {
    /// Microseconds since the limiter's origin.
    at: u64,
    /// `at` minus the time it was written.
    lifetime: Duration,
}

/// Forgets each key once its TAT has passed.
struct UntilTat;

impl Expiry<String, Tat> for UntilTat {
    fn expire_after_create(&self, _key: &String, tat: &Tat, _at: Instant) -> Option<Duration> {
        Some(tat.lifetime)
    }

    fn expire_after_update(
        &self,
        _key: &String,
        tat: &Tat,
        _at: Instant,
        _remaining: Option<Duration>,
    ) -> Option<Duration> {
        Some(tat.lifetime)
    }
}

/// The in-process rate limiter. Cheap to clone: clones share their keys.
#[derive(Clone)]
pub struct MemoryRateLimiter {
    tats: Moka<String, Tat>,
    /// The clock's zero.
    origin: Instant,
}

impl fmt::Debug for MemoryRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryRateLimiter")
            .field("keys", &self.tats.entry_count())
            .finish_non_exhaustive()
    }
}

impl Default for MemoryRateLimiter {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_KEYS)
    }
}

impl MemoryRateLimiter {
    /// A limiter keeping at most `max_keys` keys.
    #[must_use]
    pub fn new(max_keys: u64) -> Self {
        Self {
            tats: Moka::builder()
                .max_capacity(max_keys)
                .expire_after(UntilTat)
                .build(),
            origin: Instant::now(),
        }
    }

    /// Microseconds since the origin.
    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_micros()).unwrap_or(u64::MAX)
    }
}

#[async_trait]
impl RateLimiter for MemoryRateLimiter {
    async fn check(&self, key: &str, quota: Quota) -> Result<Decision, PortError> {
        let mut decided = None;
        let now = self.now();
        self.tats
            .entry_by_ref(key)
            .and_compute_with(|stored| {
                let (decision, new_tat) = gcra(quota, now, stored.map(|e| e.into_value().at));
                decided = Some(decision);
                std::future::ready(match new_tat {
                    Some(at) => Op::Put(Tat {
                        at,
                        lifetime: Duration::from_micros(at - now),
                    }),
                    None => Op::Nop,
                })
            })
            .await;
        // The closure always runs; were it not to, refusing would be the safe answer.
        Ok(decided.unwrap_or_else(|| Decision::exhausted(quota)))
    }
}
