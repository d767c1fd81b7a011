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
//!   watermark bigint epoch-ms, committed_at)`; `pipeline_owners (pipeline primary key,
//!   generation bigint, claimed_at)`; `checkpoint_chunks (pipeline, grp bigint, epoch
//!   bigint, seq bigint, bytes bytea)`, primary key `(pipeline, grp, epoch, seq)`;
//! - `claim` is one transaction: it bumps the pipeline's generation with an upsert
//!   (`INSERT ... ON CONFLICT DO UPDATE ... RETURNING`, which keeps the owner row locked),
//!   then reads the checkpoint and the state chunks (ordered by `grp, epoch, seq`);
//! - `commit_checkpoint` is one transaction: it locks the pipeline's owner row
//!   (`SELECT ... FOR UPDATE`), so claims and commits of a pipeline serialize on it, fails
//!   with `PortError::Fenced` and writes nothing unless the stored generation is the
//!   committer's and the stored epoch is `epoch - 1`, then upserts every result in one
//!   `INSERT ... SELECT FROM UNNEST(...) ON CONFLICT DO UPDATE` statement, the
//!   checkpoint row (written only under that lock), and the state delta: deletes of the
//!   dropped groups, then multi-row inserts of the new chunks (`crate::sql`, shared with
//!   SQLite);
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
