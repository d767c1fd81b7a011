//! The `tributary` binary's library: configuration, logging, the wiring of roles, and the
//! demo. `main.rs` only parses the command line.

pub mod app;
pub mod catalog;
pub mod config;
pub mod demo;
pub mod health;
pub mod ingest;
pub mod keys;
pub mod logging;
#[cfg(feature = "otlp")]
pub mod otlp;
mod server;
pub mod sources;
pub mod telemetry;
