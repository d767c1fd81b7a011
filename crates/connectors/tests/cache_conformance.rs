//! The `Cache` port's conformance suite: every scenario is written once, against
//! `&dyn Cache`, and runs against the in-process cache (`memory::*`) and against Redis
//! (`redis::*`, the server named by `TRIBUTARY_REDIS_URL`, with a unique key prefix per test).
//!
//! Run: `eval "$(scripts/services.sh env)"; cargo test -p tributary-connectors --test cache_conformance`

// Scenario helpers are not `#[test]` functions, so clippy's allow-unwrap-in-tests misses them.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tributary_connectors::memory::{MemoryCache, MemoryCacheConfig};
use tributary_connectors::redis::{RedisCache, RedisConfig};
use tributary_core::ports::Cache;

/// A TTL short enough for tests, long enough to read the value back before it expires.
const TTL: Duration = Duration::from_millis(400);

/// Comfortably past [`TTL`].
const PAST_TTL: Duration = Duration::from_millis(1_000);

fn memory() -> Arc<dyn Cache> {
    Arc::new(MemoryCache::new(&MemoryCacheConfig::default()))
}

fn redis_config() -> RedisConfig {
    let url = common::service_env("TRIBUTARY_REDIS_URL");
    RedisConfig {
        key_prefix: format!("tributary-test-{}:", uuid::Uuid::now_v7()),
        ..RedisConfig::new(url)
    }
}

async fn redis() -> Arc<dyn Cache> {
    let config = redis_config();
    match RedisCache::connect(&config).await {
        Ok(cache) => Arc::new(cache),
        Err(error) => panic!(
            "Redis at TRIBUTARY_REDIS_URL={} is unreachable: {error:?}",
            config.url
        ),
    }
}

// ------------------------------------------------------------------------------ scenarios

async fn ping_answers(cache: &dyn Cache) {
    cache.ping().await.unwrap();
}

async fn missing_key_is_none(cache: &dyn Cache) {
    assert_eq!(cache.get("never-set").await.unwrap(), None);
}

async fn set_then_get(cache: &dyn Cache) {
    cache.set("greeting", "hello", None).await.unwrap();
    assert_eq!(
        cache.get("greeting").await.unwrap().as_deref(),
        Some("hello")
    );
    assert_eq!(
        cache.get("greeting2").await.unwrap(),
        None,
        "keys are exact"
    );
}

async fn empty_and_unicode_values_round_trip(cache: &dyn Cache) {
    cache.set("empty", "", None).await.unwrap();
    assert_eq!(cache.get("empty").await.unwrap().as_deref(), Some(""));
    let text = "héllo ✓ {\"json\": [1, 2]}\nline two";
    cache
        .set("key with spaces/and:colons ✓", text, None)
        .await
        .unwrap();
    assert_eq!(
        cache
            .get("key with spaces/and:colons ✓")
            .await
            .unwrap()
            .as_deref(),
        Some(text)
    );
}

async fn overwrite_replaces_value(cache: &dyn Cache) {
    cache.set("window", "1", None).await.unwrap();
    cache.set("window", "2", None).await.unwrap();
    assert_eq!(cache.get("window").await.unwrap().as_deref(), Some("2"));
    // Writers overwrite idempotently: the same write twice is harmless.
    cache.set("window", "2", None).await.unwrap();
    assert_eq!(cache.get("window").await.unwrap().as_deref(), Some("2"));
}

async fn delete_removes_only_that_key(cache: &dyn Cache) {
    cache.set("a", "1", None).await.unwrap();
    cache.set("b", "2", None).await.unwrap();
    cache.delete("a").await.unwrap();
    assert_eq!(cache.get("a").await.unwrap(), None);
    assert_eq!(cache.get("b").await.unwrap().as_deref(), Some("2"));
    cache.delete("a").await.unwrap();
    cache.delete("never-set").await.unwrap();
}

async fn ttl_expires(cache: &dyn Cache) {
    let set_at = Instant::now();
    cache.set("short", "lived", Some(TTL)).await.unwrap();
    cache
        .set("long", "lived", Some(Duration::from_secs(60)))
        .await
        .unwrap();
    let early = cache.get("short").await.unwrap();
    if set_at.elapsed() < TTL {
        assert_eq!(early.as_deref(), Some("lived"), "readable before its TTL");
    }
    tokio::time::sleep(PAST_TTL).await;
    assert_eq!(
        cache.get("short").await.unwrap(),
        None,
        "gone after its TTL"
    );
    assert_eq!(cache.get("long").await.unwrap().as_deref(), Some("lived"));
}

async fn set_without_ttl_makes_key_permanent(cache: &dyn Cache) {
    cache.set("k", "v1", Some(TTL)).await.unwrap();
    cache.set("k", "v2", None).await.unwrap();
    tokio::time::sleep(PAST_TTL).await;
    assert_eq!(
        cache.get("k").await.unwrap().as_deref(),
        Some("v2"),
        "the old TTL no longer applies"
    );
}

async fn set_with_ttl_replaces_permanent_key(cache: &dyn Cache) {
    cache.set("k", "v1", None).await.unwrap();
    cache.set("k", "v2", Some(TTL)).await.unwrap();
    tokio::time::sleep(PAST_TTL).await;
    assert_eq!(cache.get("k").await.unwrap(), None, "the new TTL applies");
}

async fn zero_ttl_is_expired_at_once(cache: &dyn Cache) {
    cache.set("k", "v1", None).await.unwrap();
    cache.set("k", "v2", Some(Duration::ZERO)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(cache.get("k").await.unwrap(), None);
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        /// The scenarios against the in-process cache.
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
                    super::$case(&*super::redis().await).await;
                }
            )*
        }
    };
}

conformance!(
    ping_answers,
    missing_key_is_none,
    set_then_get,
    empty_and_unicode_values_round_trip,
    overwrite_replaces_value,
    delete_removes_only_that_key,
    ttl_expires,
    set_without_ttl_makes_key_permanent,
    set_with_ttl_replaces_permanent_key,
    zero_ttl_is_expired_at_once,
);

// ---------------------------------------------------------------- adapter-specific checks

/// Two Redis caches with different prefixes do not see each other's keys.
#[tokio::test]
async fn redis_key_prefixes_isolate() {
    let one = RedisCache::connect(&redis_config()).await.unwrap();
    let two = RedisCache::connect(&redis_config()).await.unwrap();
    one.set("shared", "one", None).await.unwrap();
    assert_eq!(two.get("shared").await.unwrap(), None);
    two.set("shared", "two", None).await.unwrap();
    assert_eq!(one.get("shared").await.unwrap().as_deref(), Some("one"));
}

/// Connecting to a port where no Redis listens fails as `Unavailable`, quickly.
#[tokio::test]
async fn redis_connect_without_server_is_unavailable() {
    common::assert_unavailable_within(
        RedisCache::connect(&RedisConfig::new("redis://127.0.0.1:1/")),
        Duration::from_secs(12),
    )
    .await;
}

/// A URL that is not one is refused, not retried.
#[tokio::test]
async fn redis_invalid_url_is_refused() {
    common::assert_refused(RedisCache::connect(&RedisConfig::new("not a url")).await);
}

/// The in-process cache stays within its bound.
#[tokio::test]
async fn memory_cache_is_bounded() {
    let cache = MemoryCache::new(&MemoryCacheConfig { max_entries: 10 });
    for i in 0..200 {
        cache.set(&format!("k{i}"), "v", None).await.unwrap();
    }
    let mut present = 0;
    for i in 0..200 {
        if cache.get(&format!("k{i}")).await.unwrap().is_some() {
            present += 1;
        }
    }
    assert!(
        present <= 20,
        "{present} entries kept with max_entries = 10"
    );
}
