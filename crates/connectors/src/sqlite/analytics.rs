//! The [`AnalyticsStore`](tributary_core::ports::AnalyticsStore) half of
//! [`SqliteStore`](super::SqliteStore): the shared [`SqlStore`](crate::sql::SqlStore) with
//! SQLite's [`Backend`].

use futures::future::BoxFuture;
use sqlx::sqlite::{SqliteConnection, SqliteRow};
use sqlx::{QueryBuilder, Sqlite};
use tributary_core::Timestamp;

use super::error::DIALECT;
use crate::sql::{Backend, Batch, Dialect, OutOfRange, values_insert};

impl Backend for Sqlite {
    const DIALECT: Dialect = DIALECT;

    /// Epoch milliseconds: every time fits.
    type Time = i64;

    fn time(ts: Timestamp) -> Result<i64, OutOfRange> {
        Ok(ts.millis())
    }

    fn timestamp(time: i64) -> Timestamp {
        Timestamp::from_millis(time)
    }

    /// Multi-row `VALUES`, several statements for a large batch (SQLite binds each value).
    fn insert<'b>(table: &str, batch: &'b Batch<'_, i64>) -> Vec<QueryBuilder<'b, Sqlite>> {
        values_insert(table, batch)
    }

    fn run<'c, 'q: 'c>(
        conn: &'c mut SqliteConnection,
        mut sql: QueryBuilder<'q, Sqlite>,
    ) -> BoxFuture<'c, Result<Vec<SqliteRow>, sqlx::Error>> {
        Box::pin(async move { sql.build().fetch_all(conn).await })
    }
}
