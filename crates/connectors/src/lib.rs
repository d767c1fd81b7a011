//! Tributary's adapters: one module per external system, each implementing ports of
//! `tributary-core`, each with the same shape (`config.rs` for its serde config, one file
//! per port it implements).
//!
//! | port | embedded adapter | real adapter |
//! |---|---|---|
//! | `Log` | [`redb`] (a durable embedded log) | [`kafka`] |
//! | `AnalyticsStore` | [`sqlite`] | [`postgres`] |
//! | `DocumentStore` | [`sqlite`] | [`mongodb`] |
//! | `Cache` | [`memory`] (moka) | [`redis`] |
//! | `ReferenceSource` | [`file`] (CSV, NDJSON) | [`postgres`] |
//! | `RateLimiter` | [`memory`] (the GCRA in process) | [`redis`] (one Lua script), with the in-process one as its fallback ([`rate_limit`]) |
//! | `KeyStore` | [`keys`] on [`sqlite`] | [`keys`] on [`postgres`] |
//!
//! [`registry`] builds the adapter a config names. Each real adapter (`kafka`, `postgres`,
//! `mongodb`, `redis`) is behind the cargo feature of its name, on by default; without it
//! only its `config.rs` is compiled, so that a config naming it is refused by name
//! ([`registry::LeftOut`]). The embedded adapters are always in.
//!
//! The real adapters guard the calls that someone waits on with a circuit breaker
//! (`breaker.rs`): while their system is down, those calls fail within a timeout, most of
//! them at once.

// Only the real adapters (and the tests) construct a breaker.
#[cfg_attr(
    not(any(
        test,
        feature = "kafka",
        feature = "postgres",
        feature = "mongodb",
        feature = "redis"
    )),
    expect(dead_code, reason = "a build without any real adapter")
)]
mod breaker;
pub mod file;
pub mod kafka;
pub mod keys;
mod log_checks;
pub mod memory;
mod migrations;
pub mod mongodb;
pub mod postgres;
pub mod rate_limit;
pub mod redb;
pub mod redis;
pub mod registry;
// Times out of the dialect's range are PostgreSQL's only (and the tests').
#[cfg_attr(
    not(any(test, feature = "postgres")),
    expect(dead_code, reason = "a build without PostgreSQL")
)]
mod sql;
pub mod sqlite;
pub mod streams;
