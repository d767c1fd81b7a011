//! The embedded [`Cache`](tributary_core::ports::Cache): an in-process cache on
//! [moka](https://docs.rs/moka), bounded in entries, with a TTL per entry.
//!
//! Contract (the same as Redis's, checked by `tests/cache_conformance.rs`): a value set with
//! a TTL is gone once the TTL has passed; setting a key again replaces its value and its TTL
//! (a set without TTL makes the key permanent again, as Redis `SET` does). When the cache is
//! full, the least useful entries are evicted: it is a cache, never the source of truth.
//! Its contents live and die with the process.
//!
//! [`MemoryRateLimiter`]: the [`RateLimiter`](tributary_core::ports::RateLimiter) port in this
//! process (the GCRA over a bounded map of keys), embedded and as the fallback of Redis's.

mod cache;
mod config;
mod rate_limit;

pub use cache::MemoryCache;
pub use config::MemoryCacheConfig;
pub use rate_limit::{DEFAULT_MAX_KEYS, MemoryRateLimiter};
