//! The [`AnalyticsStore`](tributary_core::ports::AnalyticsStore) port on PostgreSQL:
//! window results and pipeline checkpoints, committed together.
//!
//! Contract (checked by `tests/analytics_conformance.rs`, which runs the same scenarios
//! against [`SqliteStore`](crate::sqlite::SqliteStore)):
//! - [`PostgresStore::connect`] runs the embedded migrations (`migrations/postgres/`), and
//!   fails with `PortError::Unavailable` within about ten seconds when the server does not
//!   answer;
//! - schema: `window_results (pipeline, window_start timestamptz, window_end timestamptz,
//!   key text COLLATE "C", count bigint, closed bool, updated_at)`, primary key
//!   `(pipeline, window_start, key)`, plus an index on `(pipeline, key, window_start)`;
//!   `checkpoints (pipeline primary key, epoch bigint, offsets jsonb, state jsonb,
//!   watermark bigint epoch-ms, committed_at)`;
//! - `commit_checkpoint` is one transaction: it locks the pipeline's checkpoint row
//!   (`SELECT ... FOR UPDATE`; a missing row is first inserted with epoch 0 through
//!   `ON CONFLICT DO NOTHING`, so two first committers serialize on it too), fails with
//!   `PortError::Fenced` and writes nothing unless the stored epoch is `epoch - 1`, then
//!   upserts every result in one `INSERT ... SELECT FROM UNNEST(...) ON CONFLICT DO UPDATE`
//!   statement and updates the checkpoint row;
//! - each result is stored under its own `pipeline` field; the fence is the checkpoint's
//!   `pipeline` (the engine checkpoints per task, and its results name the pipeline);
//! - times are stored as `timestamptz` with exact millisecond precision (through chrono);
//!   a time outside chrono's range is refused;
//! - `query_results` filters `from <= window_start < to` and the key, ordered by
//!   `(window_start, key)` with keys compared bytewise.

mod analytics;
mod config;
mod error;

pub use analytics::PostgresStore;
pub use config::PostgresConfig;
