//! The embedded store: the [`AnalyticsStore`](tributary_core::ports::AnalyticsStore) and
//! [`DocumentStore`](tributary_core::ports::DocumentStore) ports on one SQLite file, so
//! `tributary demo` needs neither PostgreSQL nor MongoDB.
//!
//! Contract (checked by `tests/analytics_conformance.rs` and `tests/document_conformance.rs`,
//! which run the same scenarios against PostgreSQL and MongoDB):
//! - `SqliteStore::connect` creates the file (and its directories) when missing and runs
//!   the embedded migrations (`migrations/sqlite/`); the database runs in WAL mode with
//!   `synchronous=FULL`, so a commit is durable when it returns, and waits up to ten seconds
//!   for a lock held by another connection or process (`busy_timeout`);
//! - analytics: the same schema and semantics as [`crate::postgres`] (the flows are
//!   `crate::sql`'s, shared with it), with times as INTEGER epoch milliseconds, booleans as
//!   INTEGER 0 or 1, doubles as REAL, JSON as TEXT and bytes as BLOB; `claim`,
//!   `commit_checkpoint`, `prepare_results` and `reset` run inside `BEGIN IMMEDIATE`, so they
//!   serialize on SQLite's write lock, and the generation and epoch fences are checked under
//!   it; batches are written as multi-row `VALUES` (at most 10,000 bound values a
//!   statement);
//! - documents: `events (stream, id, ts, key, payload)`, primary key `(stream, id)`, indexed
//!   on `(stream, ts DESC, id DESC)`; `put_events` inserts the whole batch in one
//!   transaction with `ON CONFLICT DO NOTHING`, so the first stored version of an event wins
//!   (within a batch too); any JSON payload is stored as is, with none of MongoDB's limits;
//! - dead letters: `dead_letters (id, at, stream, origin, reason, raw, truncated)`, primary
//!   key `id`, indexed on `(at DESC, id DESC)`, the origin as JSON text; `put_dead_letters`
//!   inserts in one transaction with `ON CONFLICT DO NOTHING` (first version wins) and
//!   `recent_dead_letters` pages like `recent_events`, by `(at, id)`;
//!   `prune_dead_letters` deletes by `at` in one statement (the index serves the range);
//! - ids and keys compare bytewise (SQLite's BINARY collation), as in Rust and PostgreSQL.

mod analytics;
mod config;
mod document;
mod error;

use std::time::Duration;

use sqlx::Sqlite;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use tributary_core::ports::PortError;

pub use config::SqliteConfig;

use crate::sql::SqlStore;
use error::{SYSTEM, migrate_error, sqlx_error};

/// How long a statement waits for another connection's lock before failing as busy.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections in the pool: readers run in parallel in WAL mode, writers take turns.
const MAX_CONNECTIONS: u32 = 4;

/// The embedded analytics and document store on one SQLite file. Cheap to clone: clones
/// share the pool.
pub type SqliteStore = SqlStore<Sqlite>;

impl SqlStore<Sqlite> {
    /// Opens (creating when missing) the database file and brings its schema up to date.
    ///
    /// # Errors
    /// [`PortError::Unavailable`] when the file cannot be created or opened,
    /// [`PortError::Corrupt`] when it is not a database of ours.
    pub async fn connect(config: &SqliteConfig) -> Result<Self, PortError> {
        if let Some(parent) = config.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| PortError::unavailable(SYSTEM, e))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(&config.path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(BUSY_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(sqlx_error)?;
        crate::migrations::SQLITE
            .run(&pool)
            .await
            .map_err(migrate_error)?;
        tracing::info!(path = %config.path.display(), "sqlite store ready");
        Ok(Self {
            pool,
            queries: None,
        })
    }
}
