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
//! [`registry`] builds the adapter a config names. The real adapters guard the calls that
//! someone waits on with a circuit breaker (`breaker.rs`): while their system is down,
//! those calls fail within a timeout, most of them at once.

mod breaker;
pub mod file;
pub mod kafka;
pub mod keys;
mod log_checks;
pub mod memory;
pub mod mongodb;
pub mod postgres;
pub mod rate_limit;
pub mod redb;
pub mod redis;
pub mod registry;
mod sql;
pub mod sqlite;
pub mod streams;
