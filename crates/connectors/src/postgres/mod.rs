//! The [`AnalyticsStore`](tributary_core::ports::AnalyticsStore) port on PostgreSQL:
//! window results, pipeline checkpoints and operator state, committed together.
//!
//! Contract (checked by `tests/analytics_conformance.rs`, which runs the same scenarios
//! against [`SqliteStore`](crate::sqlite::SqliteStore); the flows are `crate::sql`'s, shared
//! with SQLite):
//! - `PostgresStore::connect` runs the embedded migrations (`migrations/postgres/`), and
//!   fails with `PortError::Unavailable` within about ten seconds when the server does not
//!   answer;
//! - schema: `checkpoints (pipeline primary key, epoch bigint, offsets jsonb, state jsonb,
//!   watermark bigint epoch-ms, committed_at)`; `pipeline_owners (pipeline primary key,
//!   generation bigint, claimed_at)`; `checkpoint_chunks (pipeline, grp bigint, epoch
//!   bigint, seq bigint, bytes bytea)`, primary key `(pipeline, grp, epoch, seq)`;
//!   `checkpoint_state (pipeline, grp bigint, key bytea, bytes bytea, epoch bigint)`,
//!   primary key `(pipeline, grp, key)`;
//! - results: one table per pipeline, `results_{pipeline}` (`ResultSchema::table`),
//!   created or widened by `prepare_results` under a transaction-level advisory lock on
//!   `hashtext(table)`: `window_start timestamptz`, `window_end timestamptz`, `key text
//!   COLLATE "C"` (so keys order bytewise whatever the locale), one column per key field and
//!   per aggregate (`boolean`, `bigint`, `double precision` or `text`, nullable), a `bytea`
//!   `{aggregate}_partial` beside each aggregate, `revision bigint`, `closed boolean`,
//!   `updated_at timestamptz`; primary key `(window_start, key)`, plus an index on `(key,
//!   window_start)`. A stored column of another type is refused (`PortError::Refused`);
//!   the old `window_results` table is kept, only read when a legacy pipeline's table is
//!   created (its rows are copied in) and cleared by `reset`;
//! - `claim` is one transaction: it bumps the pipeline's generation with an upsert
//!   (`INSERT ... ON CONFLICT DO UPDATE ... RETURNING`, which keeps the owner row locked),
//!   then reads the checkpoint, the state chunks (ordered by `grp, epoch, seq`) and the
//!   keyed state (ordered by `grp, key`, bytewise);
//! - `commit_checkpoint` is one transaction: it locks the pipeline's owner row
//!   (`SELECT ... FOR UPDATE`), so claims and commits of a pipeline serialize on it, fails
//!   with `PortError::Fenced` and writes nothing unless the stored generation is the
//!   committer's and the stored epoch is `epoch - 1`, then writes the results (deletes,
//!   then one `INSERT ... SELECT * FROM UNNEST(...) ON CONFLICT DO UPDATE` of the last
//!   change of each row, however many), the checkpoint row, and the state delta (deletes of
//!   the dropped groups and removed entries, then the new chunks and entries, each one
//!   `UNNEST` insert);
//! - `reset` bumps the generation (fencing the owner), deletes the pipeline's checkpoint,
//!   chunks, keyed state and legacy results, and drops its results table, in one
//!   transaction;
//! - times are stored as `timestamptz` with exact millisecond precision (through chrono);
//!   a time outside chrono's range is refused;
//! - `query_results` filters `from <= window_start < to` and the key, ordered by
//!   `(window_start, key)` with keys compared bytewise; a table without a column of the
//!   schema reads `NULL` there, a pipeline without a table has no results. It is the
//!   gateway's query: it runs within `query_timeout` (connecting included) through the
//!   store's circuit breaker (`crate::breaker`), so it fails at once for `cool_down` after
//!   the server failed one; the engine's calls are not guarded.

#[cfg(feature = "postgres")]
mod analytics;
mod config;
#[cfg(feature = "postgres")]
mod error;
#[cfg(feature = "postgres")]
pub mod reference;

#[cfg(feature = "postgres")]
pub use analytics::PostgresStore;
pub use config::PostgresConfig;
#[cfg(feature = "postgres")]
pub use reference::PostgresReference;
