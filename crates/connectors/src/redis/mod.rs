//! The [`Cache`](tributary_core::ports::Cache) port on Redis, through the `redis` crate's
//! auto-reconnecting `ConnectionManager`.
//!
//! Contract (the same as the in-process cache's, checked by `tests/cache_conformance.rs`):
//! every key is stored as `{key_prefix}{key}`; `set` is one `SET` (with `PX` when a TTL is
//! given, so setting a key without TTL makes it permanent again; a zero TTL deletes the
//! key, since the value would be expired at once); `delete` is `DEL`. Redis is derived
//! state: writers overwrite idempotently after their source of truth committed. Every
//! command runs within `command_timeout` through the cache's circuit breaker
//! (`crate::breaker`): after the server failed one, commands fail at once for `cool_down`;
//! `ping` has the timeout but not the breaker, so readiness reports what the server
//! answers now.
//! [`RedisCache::connect`] fails with `Unavailable` when the server does not answer `PING`.
//!
//! [`RedisRateLimiter`]: the [`RateLimiter`](tributary_core::ports::RateLimiter) port on
//! Redis, one atomic GCRA script per check, shared by every gateway (see its module).

#[cfg(feature = "redis")]
mod cache;
mod config;
#[cfg(feature = "redis")]
mod rate_limit;

#[cfg(feature = "redis")]
pub use cache::RedisCache;
pub use config::RedisConfig;
#[cfg(feature = "redis")]
pub use rate_limit::{GCRA_SCRIPT, KeyReport, RedisRateLimiter, SyncedRateLimiter};
