//! A lookup table read from a PostgreSQL table or view.

use std::str::FromStr as _;
use std::time::Duration;

use async_trait::async_trait;
use futures::TryStreamExt as _;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tributary_core::lookup::{self, MAX_FILE_BYTES, MAX_ROWS, ReferenceRow, TableError};
use tributary_core::ports::{PortError, ReferenceSource};

use super::error::{SYSTEM, sqlx_error};

/// How long a load waits for a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The most connections a reference table's pool opens: loads are rare and sequential.
const MAX_CONNECTIONS: u32 = 2;

/// A PostgreSQL table (or view) holding a lookup table, read whole at each load with
/// `SELECT row_to_json(t)::text FROM "schema"."table" t`: each row as a JSON object of its
/// columns, with PostgreSQL's JSON types (numbers, text, booleans, `null`, and arrays,
/// objects and timestamps as `row_to_json` writes them).
///
/// It has a pool of its own, of at most two connections, opened lazily: a database that
/// does not answer fails a load ([`PortError::Unavailable`], within about ten seconds),
/// not the process's start.
#[derive(Debug, Clone)]
pub struct PostgresReference {
    pool: PgPool,
    query: String,
}

impl PostgresReference {
    /// The table `table` (`name` or `schema.name`, as
    /// [`lookup::is_table_name`] accepts; quoted, so its case matters) of the database at
    /// `url`. Connects at the first load. Must be called within a Tokio runtime.
    ///
    /// # Errors
    /// [`PortError::Refused`] for a malformed URL or table name.
    pub fn new(url: &str, table: &str) -> Result<Self, PortError> {
        if !lookup::is_table_name(table) {
            return Err(PortError::refused(
                SYSTEM,
                format!("`{table}` is not a table name: `name` or `schema.name`"),
            ));
        }
        let options = PgConnectOptions::from_str(url)
            .map_err(sqlx_error)?
            .application_name("tributary");
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_lazy_with(options);
        let quoted: Vec<String> = table.split('.').map(|part| format!("\"{part}\"")).collect();
        Ok(Self {
            pool,
            query: format!("SELECT row_to_json(t)::text FROM {} t", quoted.join(".")),
        })
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[async_trait]
impl ReferenceSource for PostgresReference {
    async fn load(&self) -> Result<Vec<ReferenceRow>, PortError> {
        let mut texts: Vec<String> = Vec::new();
        let mut bytes: u64 = 0;
        {
            let mut rows = sqlx::query_scalar::<_, String>(&self.query).fetch(&self.pool);
            while let Some(text) = rows.try_next().await.map_err(sqlx_error)? {
                if texts.len() == MAX_ROWS {
                    return Err(PortError::refused(
                        SYSTEM,
                        TableError::TooManyRows { max: MAX_ROWS },
                    ));
                }
                bytes += text.len() as u64;
                if bytes > MAX_FILE_BYTES {
                    return Err(PortError::refused(
                        SYSTEM,
                        TableError::TooLarge {
                            bytes,
                            max: MAX_FILE_BYTES,
                        },
                    ));
                }
                texts.push(text);
            }
        }
        // Parsed on a blocking thread: a large table takes longer than an await may.
        tokio::task::spawn_blocking(move || {
            texts
                .iter()
                .zip(1..)
                .map(|(text, row)| lookup::parse_json_row(row, text.as_bytes()))
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|e| PortError::unavailable(SYSTEM, e))?
        .map_err(|e| PortError::corrupt(SYSTEM, e))
    }
}
