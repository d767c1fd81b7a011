//! The `RateLimiter` port's conformance suite: every scenario is written once, against
//! `&dyn RateLimiter`, and runs against the in-process limiter (`memory::*`), against
//! Redis (`redis::*`, the server named by `TRIBUTARY_REDIS_URL`, with a unique key prefix
//! per test), and against one limiter deciding in process on its view of Redis
//! (`synced::*`: alone, it decides as Redis does). Then the checks only Redis has (two
//! limiters sharing counts, as two gateways do, exactly or within the synced limiter's
//! bound) and the fallback when Redis is unreachable.
//!
//! Run: `eval "$(scripts/services.sh env)"; cargo test -p tributary-connectors --test rate_limit_conformance`

// Scenario helpers are not `#[test]` functions, so clippy's allow-unwrap-in-tests misses them.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tributary_connectors::memory::MemoryRateLimiter;
use tributary_connectors::rate_limit::{FallbackRateLimiter, SyncSettings};
use tributary_connectors::redis::{RedisConfig, RedisRateLimiter, SyncedRateLimiter};
use tributary_core::ports::{PortError, Quota, RateLimiter};

/// How far a measured wait may be from the computed one: a check's round trip and the
/// scheduler's jitter on a busy machine.
const TOLERANCE: Duration = Duration::from_millis(60);

fn quota(rate: u32, period: Duration, burst: u32) -> Quota {
    Quota::new(rate, period, burst).unwrap()
}

fn memory() -> Arc<dyn RateLimiter> {
    Arc::new(MemoryRateLimiter::default())
}

fn redis_config() -> RedisConfig {
    let url = common::service_env("TRIBUTARY_REDIS_URL");
    RedisConfig {
        key_prefix: format!("tributary-test-{}:", uuid::Uuid::now_v7()),
        ..RedisConfig::new(url)
    }
}

fn redis() -> Arc<dyn RateLimiter> {
    Arc::new(RedisRateLimiter::new(&redis_config()).unwrap())
}

/// How the synced limiters of these tests report.
const SYNC: SyncSettings = SyncSettings {
    interval: Duration::from_millis(50),
    local_share_percent: 10,
};

fn synced_on(config: &RedisConfig) -> SyncedRateLimiter {
    SyncedRateLimiter::new(RedisRateLimiter::new(config).unwrap(), SYNC, 1000)
}

fn synced() -> Arc<dyn RateLimiter> {
    Arc::new(synced_on(&redis_config()))
}

/// Checks `key` `n` times and returns how many were allowed.
async fn allowed(limiter: &dyn RateLimiter, key: &str, quota: Quota, n: u32) -> u32 {
    let mut allowed = 0;
    for _ in 0..n {
        if limiter.check(key, quota).await.unwrap().allowed {
            allowed += 1;
        }
    }
    allowed
}

fn assert_near(measured: Duration, expected: Duration, what: &str) {
    let gap = measured.abs_diff(expected);
    assert!(
        gap <= TOLERANCE,
        "{what}: {measured:?}, expected {expected:?} ± {TOLERANCE:?}"
    );
}

// ------------------------------------------------------------------------------ scenarios

/// A fresh key gets its burst, counted down in `remaining`, then is refused.
async fn burst_allowed_then_refused(limiter: &dyn RateLimiter) {
    // One request per 10 s: nothing refills during the test.
    let q = quota(1, Duration::from_secs(10), 5);
    for remaining in (0..5).rev() {
        let decision = limiter.check("client", q).await.unwrap();
        assert!(decision.allowed, "within the burst");
        assert_eq!(decision.limit, 5);
        assert_eq!(decision.remaining, remaining);
        assert!(decision.retry_after.is_zero());
    }
    let refused = limiter.check("client", q).await.unwrap();
    assert!(!refused.allowed, "past the burst");
    assert_eq!(refused.remaining, 0);
    assert_near(refused.retry_after, Duration::from_secs(10), "retry_after");
    assert_near(refused.reset, Duration::from_secs(50), "reset");
    // A refused request costs nothing: the next one is refused with the same wait.
    let again = limiter.check("client", q).await.unwrap();
    assert!(!again.allowed);
    assert_near(again.retry_after, refused.retry_after, "retry_after again");
}

/// After one interval, one more request; after the whole burst's span, a full burst.
async fn refills_over_time(limiter: &dyn RateLimiter) {
    // Three at once, then one per 200 ms.
    let q = quota(5, Duration::from_secs(1), 3);
    assert_eq!(allowed(limiter, "k", q, 4).await, 3);
    tokio::time::sleep(Duration::from_millis(200) + TOLERANCE).await;
    assert_eq!(
        allowed(limiter, "k", q, 2).await,
        1,
        "one interval refills one"
    );
    tokio::time::sleep(Duration::from_millis(600) + TOLERANCE).await;
    let decision = limiter.check("k", q).await.unwrap();
    assert!(decision.allowed);
    assert_eq!(decision.remaining, 2, "a full burst again");
}

/// Keys are independent, and so are quotas' keys.
async fn keys_are_independent(limiter: &dyn RateLimiter) {
    let q = quota(1, Duration::from_secs(10), 2);
    assert_eq!(allowed(limiter, "alice", q, 3).await, 2);
    assert_eq!(allowed(limiter, "bob", q, 3).await, 2);
    assert_eq!(allowed(limiter, "alice ", q, 1).await, 1, "keys are exact");
    assert!(!limiter.check("alice", q).await.unwrap().allowed);
}

/// A refused client that waits exactly `retry_after` is allowed, and not earlier.
async fn retry_after_is_accurate(limiter: &dyn RateLimiter) {
    let q = quota(2, Duration::from_secs(1), 1);
    assert!(limiter.check("r", q).await.unwrap().allowed);
    let refused = limiter.check("r", q).await.unwrap();
    assert!(!refused.allowed);
    assert_near(
        refused.retry_after,
        Duration::from_millis(500),
        "retry_after",
    );
    let started = Instant::now();
    tokio::time::sleep(refused.retry_after.saturating_sub(TOLERANCE * 2)).await;
    assert!(
        !limiter.check("r", q).await.unwrap().allowed,
        "refused before retry_after ({:?} waited)",
        started.elapsed()
    );
    tokio::time::sleep(refused.retry_after.saturating_sub(started.elapsed()) + TOLERANCE).await;
    assert!(
        limiter.check("r", q).await.unwrap().allowed,
        "allowed after retry_after"
    );
}

/// Concurrent checks of one key never hand out more than the burst.
async fn concurrent_checks_are_atomic(limiter: &dyn RateLimiter) {
    let q = quota(1, Duration::from_secs(60), 10);
    let checks = (0..50).map(|_| limiter.check("hot", q));
    let decisions = futures::future::join_all(checks).await;
    let allowed = decisions
        .into_iter()
        .filter(|d| d.as_ref().unwrap().allowed)
        .count();
    assert_eq!(allowed, 10);
}

/// `check_all` decides each key as `check` would, in order, counting each.
async fn check_all_decides_each_key(limiter: &dyn RateLimiter) {
    let one = quota(1, Duration::from_secs(10), 1);
    let three = quota(1, Duration::from_secs(10), 3);
    let first = limiter
        .check_all(&[("a", one), ("b", three)])
        .await
        .unwrap();
    assert_eq!(first.len(), 2);
    assert!(first[0].allowed && first[1].allowed);
    assert_eq!((first[0].remaining, first[1].remaining), (0, 2));
    let second = limiter
        .check_all(&[("a", one), ("b", three)])
        .await
        .unwrap();
    assert!(!second[0].allowed, "a's burst is spent");
    assert!(second[1].allowed, "b is counted although a refused");
    assert_eq!(second[1].remaining, 1);
    assert_eq!(limiter.check("b", three).await.unwrap().remaining, 0);
    assert!(limiter.check_all(&[]).await.unwrap().is_empty());
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        /// The scenarios against the in-process limiter.
        mod memory {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(&*super::memory()).await;
                }
            )*
        }

        /// The scenarios against Redis.
        mod redis {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(&*super::redis()).await;
                }
            )*
        }

        /// The scenarios against one limiter deciding on its view of Redis.
        mod synced {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(&*super::synced()).await;
                }
            )*
        }
    };
}

conformance!(
    burst_allowed_then_refused,
    refills_over_time,
    keys_are_independent,
    retry_after_is_accurate,
    concurrent_checks_are_atomic,
    check_all_decides_each_key,
);

// ---------------------------------------------------------------- adapter-specific checks

/// Two Redis limiters on one prefix (two gateways) share their counts: the burst is the
/// burst of both together.
#[tokio::test]
async fn redis_limiters_share_counts() {
    let config = redis_config();
    let one = RedisRateLimiter::new(&config).unwrap();
    let two = RedisRateLimiter::new(&config).unwrap();
    let q = quota(1, Duration::from_secs(10), 4);
    assert_eq!(allowed(&one, "shared", q, 2).await, 2);
    let decision = two.check("shared", q).await.unwrap();
    assert!(decision.allowed);
    assert_eq!(
        decision.remaining, 1,
        "the second gateway sees the first's requests"
    );
    assert_eq!(allowed(&one, "shared", q, 1).await, 1);
    assert!(!two.check("shared", q).await.unwrap().allowed);
    // Another prefix is another set of counts.
    let other = RedisRateLimiter::new(&redis_config()).unwrap();
    assert!(other.check("shared", q).await.unwrap().allowed);
}

/// Two synced limiters on one prefix (two gateways deciding in process) admit together at
/// most the burst plus one local share (`(gateways − 1) × share`); what they admitted past
/// it is counted on Redis, so once both have reported, each refuses with the wait that
/// Redis itself gives, over-admission paid back.
#[tokio::test]
async fn synced_limiters_admit_within_one_share_of_the_burst() {
    let config = redis_config();
    let one = synced_on(&config);
    let two = synced_on(&config);
    // 100 at once, no refill during the test; a share of 10% is 10 requests.
    let q = quota(1, Duration::from_secs(100), 100);
    assert_eq!(SYNC.local_share(q), 10);
    let (first, second) = tokio::join!(
        allowed(&one, "shared", q, 100),
        allowed(&two, "shared", q, 100)
    );
    let admitted = first + second;
    assert!(
        (100..=110).contains(&admitted),
        "admitted {admitted} ({first} + {second}): burst 100, one share 10"
    );
    one.sync().await;
    two.sync().await;
    let exact = RedisRateLimiter::new(&config).unwrap();
    let by_redis = exact.check("shared", q).await.unwrap();
    assert!(!by_redis.allowed);
    // Admitted n of a burst of 100 at one interval each, from about when the test began:
    // the next one in n − 99 intervals, less the test's time so far.
    let expected = Duration::from_secs(100 * u64::from(admitted - 99));
    assert!(
        by_redis.retry_after <= expected
            && by_redis.retry_after >= expected - Duration::from_secs(2),
        "Redis's retry_after {:?}, {admitted} admitted",
        by_redis.retry_after
    );
    // A view read before the other limiter's report refuses with a Retry-After that is
    // short by what it has not seen yet (never longer than Redis's); once it has reported
    // again, its view is Redis's.
    for limiter in [&one, &two] {
        let refused = limiter.check("shared", q).await.unwrap();
        assert!(!refused.allowed);
        assert!(refused.retry_after <= by_redis.retry_after + TOLERANCE);
        limiter.sync().await;
        let refused = limiter.check("shared", q).await.unwrap();
        assert!(!refused.allowed);
        assert_near(refused.retry_after, by_redis.retry_after, "retry_after");
        assert_eq!(refused.remaining, 0);
    }
}

/// A synced limiter on a Redis that does not answer fails `Unavailable` once a report has
/// failed (so that the fallback limits in process), and the counts it admitted meanwhile
/// are kept for Redis.
#[tokio::test]
async fn synced_limiter_hands_over_to_the_fallback_when_reports_fail() {
    let config = RedisConfig::new(format!("redis://127.0.0.1:{}/", common::closed_port()));
    let synced = Arc::new(synced_on(&config));
    let q = quota(1, Duration::from_secs(10), 3);
    assert!(
        synced.check("k", q).await.unwrap().allowed,
        "decided in process"
    );
    synced.sync().await;
    match synced.check("k", q).await {
        Err(PortError::Unavailable { .. }) => {}
        other => panic!("expected Unavailable, got {other:?}"),
    }
    let limiter = FallbackRateLimiter::new(synced, memory());
    assert_eq!(allowed(&limiter, "k", q, 5).await, 3, "limited in process");
}

/// The script survives `SCRIPT FLUSH` (a restarted server): `NOSCRIPT` loads it again.
#[tokio::test]
async fn redis_reloads_a_flushed_script() {
    let config = redis_config();
    let limiter = RedisRateLimiter::new(&config).unwrap();
    let q = quota(1, Duration::from_secs(10), 3);
    assert!(limiter.check("k", q).await.unwrap().allowed);
    let client = ::redis::Client::open(config.url.as_str()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let () = ::redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut connection)
        .await
        .unwrap();
    let decision = limiter.check("k", q).await.unwrap();
    assert!(decision.allowed);
    assert_eq!(decision.remaining, 1, "the count survived the flush");
}

/// A key is stored only as long as it matters: it expires when its TAT has passed.
#[tokio::test]
async fn redis_keys_expire_with_their_tat() {
    let config = redis_config();
    let limiter = RedisRateLimiter::new(&config).unwrap();
    let q = quota(10, Duration::from_secs(1), 5);
    assert!(limiter.check("short", q).await.unwrap().allowed);
    let client = ::redis::Client::open(config.url.as_str()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let ttl: i64 = ::redis::cmd("PTTL")
        .arg(format!("{}rate:short", config.key_prefix))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!((1..=100).contains(&ttl), "expires with its TAT: PTTL {ttl}");
}

/// With no Redis listening, the Redis limiter fails `Unavailable`, quickly, and the
/// fallback limits in process instead.
#[tokio::test]
async fn fallback_limits_in_process_while_redis_is_unreachable() {
    let config = RedisConfig::new(format!("redis://127.0.0.1:{}/", common::closed_port()));
    let redis = Arc::new(RedisRateLimiter::new(&config).unwrap());
    let q = quota(1, Duration::from_secs(10), 3);
    let started = Instant::now();
    match redis.check("k", q).await {
        Err(PortError::Unavailable { .. }) => {}
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    let limiter = FallbackRateLimiter::new(redis, memory());
    let started = Instant::now();
    assert_eq!(allowed(&limiter, "k", q, 5).await, 3, "limited in process");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the breaker fails Redis calls at once: {:?}",
        started.elapsed()
    );
}

/// An invalid Redis URL is refused at construction.
#[tokio::test]
async fn redis_invalid_url_is_refused() {
    common::assert_refused(RedisRateLimiter::new(&RedisConfig::new("not a url")));
}
