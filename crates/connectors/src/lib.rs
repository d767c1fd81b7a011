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
//!
//! [`registry`] builds the adapter a config names. The real adapters guard the calls that
//! someone waits on with a circuit breaker (`breaker.rs`): while their system is down,
//! those calls fail within a timeout, most of them at once.

mod breaker;
pub mod file;
pub mod kafka;
mod log_checks;
pub mod memory;
pub mod mongodb;
pub mod postgres;
pub mod redb;
pub mod redis;
pub mod registry;
mod sql;
pub mod sqlite;
