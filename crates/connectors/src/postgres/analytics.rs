//! [`PostgresStore`]: the [`AnalyticsStore`](tributary_core::ports::AnalyticsStore) on
//! PostgreSQL, the shared [`SqlStore`] with PostgreSQL's [`Backend`].

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use sqlx::Postgres;
use sqlx::QueryBuilder;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions, PgRow};
use sqlx::types::chrono::{DateTime, Utc};
use tributary_core::Timestamp;
use tributary_core::ports::PortError;

use super::config::PostgresConfig;
use super::error::{DIALECT, SYSTEM, migrate_error, sqlx_error};
use crate::breaker::Breaker;
use crate::sql::{Backend, Batch, Cells, Dialect, OutOfRange, SqlStore};

/// How long [`PostgresStore::connect`] waits for a first connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The earliest time a `timestamptz` holds (4714-11-24 BC, 00:00 UTC), in epoch millis.
/// The latest time chrono holds comes before PostgreSQL's latest, so chrono bounds that end.
const PG_MIN_MILLIS: i64 = -210_866_803_200_000;

/// Window results, checkpoints and operator state in PostgreSQL. Cheap to clone: clones
/// share the pool.
pub type PostgresStore = SqlStore<Postgres>;

impl SqlStore<Postgres> {
    /// Connects, waiting at most about ten seconds for a first connection, and brings the
    /// schema up to date.
    ///
    /// # Errors
    /// [`PortError::Refused`] for a malformed URL or failed authentication,
    /// [`PortError::Unavailable`] when the server does not answer in time,
    /// [`PortError::Corrupt`] when the database's applied migrations differ from ours.
    pub async fn connect(config: &PostgresConfig) -> Result<Self, PortError> {
        let queries = Breaker::new(
            SYSTEM,
            "[analytics] query_timeout",
            config.query_timeout,
            config.cool_down,
        )?;
        let options = PgConnectOptions::from_str(&config.url)
            .map_err(sqlx_error)?
            .application_name("tributary");
        let connecting = PgPoolOptions::new()
            .max_connections(config.max_connections.max(1))
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_with(options);
        let pool = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|elapsed| PortError::unavailable(SYSTEM, elapsed))?
            .map_err(sqlx_error)?;
        crate::migrations::POSTGRES
            .run(&pool)
            .await
            .map_err(migrate_error)?;
        tracing::info!(
            max_connections = config.max_connections,
            "postgres analytics store ready"
        );
        Ok(Self {
            pool,
            queries: Some(Arc::new(queries)),
        })
    }
}

impl Backend for Postgres {
    const DIALECT: Dialect = DIALECT;

    type Time = DateTime<Utc>;

    fn time(ts: Timestamp) -> Result<DateTime<Utc>, OutOfRange> {
        if ts.millis() < PG_MIN_MILLIS {
            Err(OutOfRange::Before)
        } else {
            ts.to_datetime().ok_or(OutOfRange::After)
        }
    }

    fn timestamp(time: DateTime<Utc>) -> Timestamp {
        Timestamp::from_millis(time.timestamp_millis())
    }

    /// One statement whatever the batch's size: `INSERT ... SELECT * FROM UNNEST(...)` of
    /// one array per column, so its text (and prepared statement) is the same for any
    /// number of rows.
    fn insert<'b>(
        table: &str,
        batch: &'b Batch<'_, DateTime<Utc>>,
    ) -> Vec<QueryBuilder<'b, Postgres>> {
        if batch.rows() == 0 {
            return Vec::new();
        }
        let mut sql = QueryBuilder::new(format!(
            "INSERT INTO {table} ({}) SELECT * FROM UNNEST(",
            batch.names()
        ));
        let mut arrays = sql.separated(", ");
        for cells in batch.cells() {
            match cells {
                Cells::Time(v) => arrays.push_bind(v),
                Cells::Int(v) => arrays.push_bind(v),
                Cells::Float(v) => arrays.push_bind(v),
                Cells::Bool(v) => arrays.push_bind(v),
                Cells::Text(v) => arrays.push_bind(v),
                Cells::Bytes(v) => arrays.push_bind(v),
            };
        }
        sql.push(")").push(batch.on_conflict());
        vec![sql]
    }

    fn run<'c, 'q: 'c>(
        conn: &'c mut PgConnection,
        mut sql: QueryBuilder<'q, Postgres>,
    ) -> BoxFuture<'c, Result<Vec<PgRow>, sqlx::Error>> {
        Box::pin(async move { sql.build().fetch_all(conn).await })
    }
}
