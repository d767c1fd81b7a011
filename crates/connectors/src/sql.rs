//! The analytics store on SQL, written once for both SQL adapters, [`crate::postgres`] and
//! [`crate::sqlite`]: [`SqlStore`] implements [`AnalyticsStore`] over any [`Backend`].
//!
//! Contract: every flow of the port (claim, commit, prepare, reset, query) is here, with the
//! checks made before writing, the generation and epoch fences, the order of a commit's
//! statements, the shape of the results tables and how sqlx errors map to [`PortError`], so
//! both adapters refuse, fence, write and read in exactly the same way. What differs
//! between the two databases is data in their [`Dialect`] (names, error codes, SQL
//! fragments, column types, catalog and lock statements) and the few functions of their
//! [`Backend`]: how a time is stored, how a [`Batch`] of rows is inserted (PostgreSQL: one
//! `INSERT ... SELECT * FROM UNNEST(...)` of one array per column whatever the number of
//! rows; SQLite: multi-row `VALUES`, [`values_insert`]) and how a statement runs.
//!
//! A commit runs in one transaction begun with [`Dialect::begin`]: the owner row's read
//! (locked by [`Dialect::lock_row`]) and the stored epoch's, the fences, then the results
//! (the last change of each row: deletes, then upserts), the checkpoint row, and the state
//! delta: dropped groups (chunks and keyed entries), removed entries, appended chunks, put
//! entries (the last of each key). Everything that can be refused (epoch 0, numbers too
//! large, times out of range, rows that do not fit their schema) is refused before the
//! transaction begins.

use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use futures::future::BoxFuture;
use sqlx::error::DatabaseError;
use sqlx::migrate::MigrateError;
use sqlx::pool::PoolConnection;
use sqlx::query_builder::Separated;
use sqlx::{ColumnIndex, Database, Decode, Encode, Pool, QueryBuilder, Row, Transaction, Type};
use tributary_core::Timestamp;
use tributary_core::ports::{
    AnalyticsStore, Checkpoint, Claim, Fence, KeyedState, PartitionOffset, PortError, ResultQuery,
    StateChunk, StateDelta,
};
use tributary_core::results::{
    Column, ResultChange, ResultRow, ResultSchema, ResultWrite, results_table,
};
use tributary_core::value::{ColumnType, Value};

use crate::breaker::Breaker;

/// How a database error code classifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// Worth retrying: [`PortError::Unavailable`].
    Unavailable,
    /// Damaged data: [`PortError::Corrupt`].
    Corrupt,
    /// The request's fault: [`PortError::Refused`].
    Refused,
}

/// What the SQL adapters refuse before asking their database, or find wrong in its answer.
#[derive(Debug, thiserror::Error)]
enum Invalid {
    /// Epochs start at 1.
    #[error("checkpoint epochs start at 1; epoch 0 cannot be committed")]
    ZeroEpoch,
    /// Generations come from claims, which start at 1.
    #[error("generation 0 is no claim's; claim the pipeline before committing")]
    ZeroGeneration,
    /// A number above `i64::MAX`.
    #[error("{what} {value} does not fit a {integer}")]
    TooLarge {
        /// What the number is.
        what: &'static str,
        /// The number.
        value: u64,
        /// The dialect's integer type.
        integer: &'static str,
    },
    /// A time outside what the dialect holds.
    #[error("time {time} ({millis} ms) is outside the range {system} can store", millis = .time.millis())]
    TimeOutOfRange {
        /// The time.
        time: Timestamp,
        /// The dialect's system.
        system: &'static str,
    },
    /// A stored results column of another type than the schema's.
    #[error("results table {table}: column {column} is {stored}, but the pipeline needs {wanted}")]
    ColumnType {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// Its stored type.
        stored: String,
        /// The type the schema needs.
        wanted: &'static str,
    },
    /// A stored table lacking one of the columns every results table has.
    #[error("table {table} has no column {column}, which every results table has")]
    MissingColumn {
        /// The table.
        table: String,
        /// The column.
        column: String,
    },
    /// A schema naming two columns alike.
    #[error("results table {table} would have two columns named {column}")]
    DuplicateColumn {
        /// The table.
        table: String,
        /// The column.
        column: String,
    },
    /// A row whose values do not match its schema.
    #[error("a result row has {found} {what}, but its schema {expected}")]
    RowShape {
        /// Keys, values or partials.
        what: &'static str,
        /// How many the schema has.
        expected: usize,
        /// How many the row has.
        found: usize,
    },
    /// A query whose schema is another pipeline's.
    #[error("a query of pipeline {query} cannot read with the schema of pipeline {schema}")]
    OtherPipeline {
        /// The query's pipeline.
        query: String,
        /// The schema's pipeline.
        schema: String,
    },
}

/// A time outside what a dialect can store, and on which side of its range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OutOfRange {
    /// Before the earliest time the dialect holds.
    Before,
    /// After the latest time the dialect holds.
    After,
}

/// The kind of a stored column, named by [`Dialect::types`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SqlType {
    /// A time ([`Backend::Time`]).
    Time,
    /// A 64-bit integer.
    Int,
    /// A double.
    Float,
    /// Text.
    Text,
    /// A boolean.
    Bool,
    /// Bytes.
    Bytes,
}

impl From<ColumnType> for SqlType {
    fn from(ty: ColumnType) -> Self {
        match ty {
            ColumnType::Bool => Self::Bool,
            ColumnType::Int => Self::Int,
            ColumnType::Float => Self::Float,
            ColumnType::Text => Self::Text,
        }
    }
}

/// One SQL adapter's names, error codes, SQL fragments and column types.
#[derive(Debug)]
pub(crate) struct Dialect {
    /// The system name carried by the adapter's errors.
    pub(crate) system: &'static str,
    /// The integer type named when a number is too large (e.g. "PostgreSQL bigint").
    pub(crate) integer: &'static str,
    /// Classifies an error the database itself reported.
    pub(crate) classify: fn(&dyn DatabaseError) -> Class,
    /// Whether a TLS error can only be the connection's trouble.
    pub(crate) tls_is_transient: bool,
    /// Begins a transaction that writes (claims, commits, schema changes).
    pub(crate) begin: &'static str,
    /// Ends the `SELECT` of a pipeline's owner row in a commit: locks the row until the
    /// transaction ends, so that claims and commits of the pipeline serialize on it.
    pub(crate) lock_row: &'static str,
    /// The type JSON is stored as: written cast to it, read back cast to text.
    pub(crate) json: &'static str,
    /// Follows the type of a results table's `key`: makes it compare bytewise.
    pub(crate) bytewise: &'static str,
    /// Whether `CREATE INDEX` names the index; otherwise the database names it (PostgreSQL's
    /// names are cut at 63 bytes, which a table's name and a suffix may exceed).
    pub(crate) index_names: bool,
    /// The type of a column of each kind, as the catalog spells it (compared ignoring case).
    pub(crate) types: fn(SqlType) -> &'static str,
    /// The statement reading the name and the type ([`Dialect::types`]) of each column of a
    /// table, before and after the table's name (bound): no row when there is no such table.
    pub(crate) columns: [&'static str; 2],
    /// The statement serializing, until the transaction ends, the changes of a table's
    /// schema, before and after the table's name (bound); none when [`Dialect::begin`]
    /// serializes them already.
    pub(crate) lock_table: Option<[&'static str; 2]>,
}

impl Dialect {
    /// Classifies a sqlx error: connection trouble and transient server states are
    /// [`PortError::Unavailable`], undecodable rows are [`PortError::Corrupt`], the
    /// database's own errors as [`Dialect::classify`] says, the rest (bad data,
    /// configuration) is [`PortError::Refused`].
    pub(crate) fn sqlx_error(&self, error: sqlx::Error) -> PortError {
        let class = match &error {
            sqlx::Error::Tls(_) if self.tls_is_transient => Class::Unavailable,
            sqlx::Error::Io(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::BeginFailed => Class::Unavailable,
            sqlx::Error::Database(db) => (self.classify)(db.as_ref()),
            sqlx::Error::RowNotFound
            | sqlx::Error::TypeNotFound { .. }
            | sqlx::Error::ColumnIndexOutOfBounds { .. }
            | sqlx::Error::ColumnNotFound(_)
            | sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::Decode(_) => Class::Corrupt,
            _ => Class::Refused,
        };
        self.error(class, error)
    }

    /// Classifies a migration error: a failing statement is classified like any sqlx
    /// error; a database whose applied migrations differ from ours is
    /// [`PortError::Corrupt`].
    pub(crate) fn migrate_error(&self, error: MigrateError) -> PortError {
        match error {
            MigrateError::Execute(inner) | MigrateError::ExecuteMigration(inner, _) => {
                self.sqlx_error(inner)
            }
            MigrateError::VersionMismatch(_)
            | MigrateError::VersionMissing(_)
            | MigrateError::Dirty(_) => PortError::corrupt(self.system, error),
            _ => PortError::refused(self.system, error),
        }
    }

    /// `error` as the [`PortError`] of `class`.
    fn error(
        &self,
        class: Class,
        error: impl std::error::Error + Send + Sync + 'static,
    ) -> PortError {
        match class {
            Class::Unavailable => PortError::unavailable(self.system, error),
            Class::Corrupt => PortError::corrupt(self.system, error),
            Class::Refused => PortError::refused(self.system, error),
        }
    }

    /// `invalid` refused.
    fn refuse(&self, invalid: Invalid) -> PortError {
        PortError::refused(self.system, invalid)
    }

    /// `value` as the dialect's integer, or refused.
    pub(crate) fn integer(&self, what: &'static str, value: u64) -> Result<i64, PortError> {
        i64::try_from(value).map_err(|_| {
            self.refuse(Invalid::TooLarge {
                what,
                value,
                integer: self.integer,
            })
        })
    }

    /// A stored integer that must not be negative, or corrupt.
    pub(crate) fn unsigned(&self, value: i64) -> Result<u64, PortError> {
        u64::try_from(value).map_err(|e| PortError::corrupt(self.system, e))
    }

    /// The claim of `pipeline` whose transaction bumped its generation to `generation`
    /// and read `checkpoint`, `chunks` and `keyed`, once committed.
    fn claimed(
        &self,
        pipeline: &str,
        generation: i64,
        (checkpoint, committed_at): (Option<Checkpoint>, Option<Timestamp>),
        chunks: Vec<StateChunk>,
        keyed: Vec<KeyedState>,
    ) -> Result<Claim, PortError> {
        let generation = self.unsigned(generation)?;
        tracing::debug!(
            system = self.system,
            pipeline,
            generation,
            chunks = chunks.len(),
            keyed = keyed.len(),
            "pipeline claimed"
        );
        Ok(Claim {
            generation,
            checkpoint,
            committed_at,
            chunks,
            keyed,
        })
    }

    /// `epoch` as the dialect's integer, for a commit by the owner of `generation`; epoch
    /// 0, epochs above `i64::MAX` and generation 0 are refused.
    pub(crate) fn commit_epoch(&self, generation: u64, epoch: u64) -> Result<i64, PortError> {
        if generation == 0 {
            return Err(self.refuse(Invalid::ZeroGeneration));
        }
        if epoch == 0 {
            return Err(self.refuse(Invalid::ZeroEpoch));
        }
        self.integer("epoch", epoch)
    }

    /// Checks a commit of `checkpoint` by the owner of `generation` against the stored
    /// generation and epoch (`None` where no row is stored): the generation must be the
    /// stored one, then the stored epoch `checkpoint.epoch - 1`. Otherwise
    /// [`PortError::Fenced`] (logged as a warning), or [`PortError::Corrupt`] for a
    /// negative stored number.
    pub(crate) fn check_fences(
        &self,
        generation: u64,
        checkpoint: &Checkpoint,
        stored_generation: Option<i64>,
        stored_epoch: Option<i64>,
    ) -> Result<(), PortError> {
        let fenced = |fence, expected, found| {
            let pipeline = checkpoint.pipeline.as_str();
            tracing::warn!(pipeline, %fence, expected, found, "checkpoint fenced");
            PortError::Fenced {
                pipeline: pipeline.to_owned(),
                fence,
                expected,
                found,
            }
        };
        let owner = self.unsigned(stored_generation.unwrap_or(0))?;
        if owner != generation {
            return Err(fenced(Fence::Generation, generation, owner));
        }
        let found = self.unsigned(stored_epoch.unwrap_or(0))?;
        let expected = checkpoint.epoch.saturating_sub(1);
        if found != expected {
            return Err(fenced(Fence::Epoch, expected, found));
        }
        Ok(())
    }
}

/// A database [`SqlStore`] runs on: what differs between PostgreSQL and SQLite beyond the
/// [`Dialect`]'s data.
pub(crate) trait Backend: Database {
    /// Names, error codes, SQL fragments and column types.
    const DIALECT: Dialect;

    /// How a time is stored ([`SqlType::Time`]).
    type Time: Clone
        + Send
        + Sync
        + 'static
        + for<'q> Encode<'q, Self>
        + for<'r> Decode<'r, Self>
        + Type<Self>;

    /// `ts` as a stored time, when the database can hold it.
    ///
    /// # Errors
    /// On which side of the range the database holds `ts` is.
    fn time(ts: Timestamp) -> Result<Self::Time, OutOfRange>;

    /// A stored time.
    fn timestamp(time: Self::Time) -> Timestamp;

    /// The statements inserting the rows of `batch` into `table` (SQL, quoted where needed),
    /// upserting them when the batch has a key ([`Batch::on_conflict`]), to run in order;
    /// none for an empty batch.
    fn insert<'b>(table: &str, batch: &'b Batch<'_, Self::Time>) -> Vec<QueryBuilder<'b, Self>>;

    /// Runs `sql` in `conn` and returns the rows it reads (none for most statements).
    ///
    /// Each backend runs its statements itself: sqlx runs a statement whose arguments live
    /// exactly as long as its text, which only concrete code can make them do.
    fn run<'c, 'q: 'c>(
        conn: &'c mut Self::Connection,
        sql: QueryBuilder<'q, Self>,
    ) -> BoxFuture<'c, Result<Vec<Self::Row>, sqlx::Error>>;
}

/// What the shared flows ask of sqlx beyond [`Backend::run`]: binding and decoding, for any
/// [`Backend`] sqlx can do them for. Implemented once for all of them, so that generic code needs
/// `DB: Sqlx` and not the list of sqlx bounds behind it.
pub(crate) trait Sqlx: Backend {
    /// Binds `value` into `sql`.
    fn bind_text<'a>(sql: &mut QueryBuilder<'a, Self>, value: &'a str);

    /// Binds `value` into `sql`.
    fn bind_int(sql: &mut QueryBuilder<'_, Self>, value: i64);

    /// Binds the value of `row` in `cells` into `tuple`.
    fn bind_cell<'b>(
        tuple: &mut Separated<'_, 'b, Self, &'static str>,
        cells: &'b Cells<'_, Self::Time>,
        row: usize,
    );

    /// Column `index` of `row`: an integer (`NULL` is corrupt).
    ///
    /// # Errors
    /// [`PortError::Corrupt`] when the column does not decode.
    fn int(row: &Self::Row, index: usize) -> Result<i64, PortError>;

    /// Column `index` of `row`: a boolean (`NULL` is corrupt).
    ///
    /// # Errors
    /// [`PortError::Corrupt`] when the column does not decode.
    fn flag(row: &Self::Row, index: usize) -> Result<bool, PortError>;

    /// Column `index` of `row`: text (`NULL` is corrupt).
    ///
    /// # Errors
    /// [`PortError::Corrupt`] when the column does not decode.
    fn text(row: &Self::Row, index: usize) -> Result<String, PortError>;

    /// Column `index` of `row`: bytes, `NULL` as none.
    ///
    /// # Errors
    /// [`PortError::Corrupt`] when the column does not decode.
    fn bytes(row: &Self::Row, index: usize) -> Result<Vec<u8>, PortError>;

    /// Column `index` of `row`: a time (`NULL` is corrupt).
    ///
    /// # Errors
    /// [`PortError::Corrupt`] when the column does not decode.
    fn time_at(row: &Self::Row, index: usize) -> Result<Timestamp, PortError>;

    /// Column `index` of `row`: a value of `ty`, `NULL` as [`Value::Null`].
    ///
    /// # Errors
    /// [`PortError::Corrupt`] when the column does not decode.
    fn value(row: &Self::Row, index: usize, ty: ColumnType) -> Result<Value<'static>, PortError>;
}

impl<DB> Sqlx for DB
where
    DB: Backend,
    usize: ColumnIndex<DB::Row>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> f64: Decode<'q, DB> + Type<DB>,
    for<'q> bool: Decode<'q, DB> + Type<DB>,
    for<'q> String: Decode<'q, DB> + Type<DB>,
    for<'q> Vec<u8>: Decode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> &'q [u8]: Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB>,
    for<'q> Option<f64>: Encode<'q, DB>,
    for<'q> Option<bool>: Encode<'q, DB>,
    for<'q> Option<&'q str>: Encode<'q, DB>,
    for<'q> Option<&'q [u8]>: Encode<'q, DB>,
{
    fn bind_text<'a>(sql: &mut QueryBuilder<'a, Self>, value: &'a str) {
        sql.push_bind(value);
    }

    fn bind_int(sql: &mut QueryBuilder<'_, Self>, value: i64) {
        sql.push_bind(value);
    }

    fn bind_cell<'b>(
        tuple: &mut Separated<'_, 'b, Self, &'static str>,
        cells: &'b Cells<'_, Self::Time>,
        row: usize,
    ) {
        match cells {
            Cells::Time(v) => tuple.push_bind(v[row].clone()),
            Cells::Int(v) => tuple.push_bind(v[row]),
            Cells::Float(v) => tuple.push_bind(v[row]),
            Cells::Bool(v) => tuple.push_bind(v[row]),
            Cells::Text(v) => tuple.push_bind(v[row].as_deref()),
            Cells::Bytes(v) => tuple.push_bind(v[row]),
        };
    }

    fn int(row: &Self::Row, index: usize) -> Result<i64, PortError> {
        row.try_get(index).map_err(sqlx_error::<DB>)
    }

    fn flag(row: &Self::Row, index: usize) -> Result<bool, PortError> {
        row.try_get(index).map_err(sqlx_error::<DB>)
    }

    fn text(row: &Self::Row, index: usize) -> Result<String, PortError> {
        row.try_get(index).map_err(sqlx_error::<DB>)
    }

    fn bytes(row: &Self::Row, index: usize) -> Result<Vec<u8>, PortError> {
        let bytes: Option<Vec<u8>> = row.try_get(index).map_err(sqlx_error::<DB>)?;
        Ok(bytes.unwrap_or_default())
    }

    fn time_at(row: &Self::Row, index: usize) -> Result<Timestamp, PortError> {
        let time: DB::Time = row.try_get(index).map_err(sqlx_error::<DB>)?;
        Ok(DB::timestamp(time))
    }

    fn value(row: &Self::Row, index: usize, ty: ColumnType) -> Result<Value<'static>, PortError> {
        let value = match ty {
            ColumnType::Bool => row
                .try_get::<Option<bool>, _>(index)
                .map(|v| v.map(Value::Bool)),
            ColumnType::Int => row
                .try_get::<Option<i64>, _>(index)
                .map(|v| v.map(Value::Int)),
            ColumnType::Float => row
                .try_get::<Option<f64>, _>(index)
                .map(|v| v.map(Value::Float)),
            ColumnType::Text => row
                .try_get::<Option<String>, _>(index)
                .map(|v| v.map(|s| Value::Str(Cow::Owned(s)))),
        };
        Ok(value.map_err(sqlx_error::<DB>)?.unwrap_or(Value::Null))
    }
}

/// A time `DB` stores, or refused.
fn stored_time<DB: Backend>(ts: Timestamp) -> Result<DB::Time, PortError> {
    DB::time(ts).map_err(|_| {
        DB::DIALECT.refuse(Invalid::TimeOutOfRange {
            time: ts,
            system: DB::DIALECT.system,
        })
    })
}

/// Runs `sql` in `conn` ([`Backend::run`]) and returns the rows it reads.
async fn run<DB: Backend>(
    conn: &mut DB::Connection,
    sql: QueryBuilder<'_, DB>,
) -> Result<Vec<DB::Row>, PortError> {
    DB::run(conn, sql).await.map_err(sqlx_error::<DB>)
}

/// The rows `sql` reads in `conn`, each decoded by `decode`.
async fn fetch<DB: Backend, T>(
    conn: &mut DB::Connection,
    sql: QueryBuilder<'_, DB>,
    decode: impl Fn(&DB::Row) -> Result<T, PortError>,
) -> Result<Vec<T>, PortError> {
    run::<DB>(conn, sql).await?.iter().map(decode).collect()
}

/// A sqlx error of `DB` as a [`PortError`].
fn sqlx_error<DB: Backend>(error: sqlx::Error) -> PortError {
    DB::DIALECT.sqlx_error(error)
}

/// `"name"`: an identifier quoted for both dialects.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

// ----------------------------------------------------------------------------- the store

/// The analytics store on a SQL database: checkpoints, owners and operator state in shared
/// tables, each pipeline's results in a typed table of its own. Cheap to clone: clones share
/// the pool.
#[derive(Debug)]
pub struct SqlStore<DB: Database> {
    /// The connection pool.
    pub(crate) pool: Pool<DB>,
    /// The breaker of the gateway's queries (`query_results`), for a server that can be
    /// down (PostgreSQL); none for an embedded file.
    pub(crate) queries: Option<Arc<Breaker>>,
}

impl<DB: Database> Clone for SqlStore<DB> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            queries: self.queries.clone(),
        }
    }
}

impl<DB: Database> SqlStore<DB> {
    /// The connection pool, for stores that share the database.
    #[must_use]
    pub fn pool(&self) -> &Pool<DB> {
        &self.pool
    }

    /// Closes every connection; calls made afterwards fail with `Unavailable`.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Runs a query of the gateway through the store's breaker, when it has one.
    async fn guarded<T>(
        &self,
        query: impl Future<Output = Result<T, PortError>>,
    ) -> Result<T, PortError> {
        match &self.queries {
            Some(breaker) => breaker.call(query).await,
            None => query.await,
        }
    }
}

/// Begins a writing transaction ([`Dialect::begin`]).
async fn begin<DB: Backend>(pool: &Pool<DB>) -> Result<Transaction<'static, DB>, PortError> {
    pool.begin_with(DB::DIALECT.begin)
        .await
        .map_err(sqlx_error::<DB>)
}

/// A connection of `pool`.
async fn acquire<DB: Backend>(pool: &Pool<DB>) -> Result<PoolConnection<DB>, PortError> {
    pool.acquire().await.map_err(sqlx_error::<DB>)
}

#[async_trait]
impl<DB: Sqlx> AnalyticsStore for SqlStore<DB> {
    async fn ping(&self) -> Result<(), PortError> {
        run::<DB>(
            &mut *acquire(&self.pool).await?,
            QueryBuilder::new("SELECT 1"),
        )
        .await?;
        Ok(())
    }

    async fn claim(&self, pipeline: &str) -> Result<Claim, PortError> {
        let now = stored_time::<DB>(Timestamp::now())?;
        let mut tx = begin(&self.pool).await?;
        // The bump locks the owner row (PostgreSQL) or runs under the write lock (SQLite)
        // until the commit below: an older owner's commit either finished before it (and is
        // read next) or waits, then finds itself fenced.
        let generation = bump_owner::<DB>(&mut tx, pipeline, now).await?;
        let checkpoint = read_checkpoint::<DB>(&mut tx, pipeline).await?.unzip();
        let chunks = fetch::<DB, _>(&mut tx, chunks_query(pipeline), |row| {
            let (group, bytes) = (DB::int(row, 0)?, DB::bytes(row, 1)?);
            Ok(StateChunk { group, bytes })
        })
        .await?;
        let keyed = fetch::<DB, _>(&mut tx, keyed_query(pipeline), |row| {
            let (group, key, bytes) = (DB::int(row, 0)?, DB::bytes(row, 1)?, DB::bytes(row, 2)?);
            Ok(KeyedState { group, key, bytes })
        })
        .await?;
        tx.commit().await.map_err(sqlx_error::<DB>)?;
        DB::DIALECT.claimed(pipeline, generation, checkpoint, chunks, keyed)
    }

    async fn load_checkpoint(&self, pipeline: &str) -> Result<Option<Checkpoint>, PortError> {
        let checkpoint = read_checkpoint::<DB>(&mut *acquire(&self.pool).await?, pipeline).await?;
        Ok(checkpoint.map(|(checkpoint, _)| checkpoint))
    }

    async fn commit_checkpoint(
        &self,
        generation: u64,
        checkpoint: &Checkpoint,
        results: Option<ResultWrite<'_>>,
        delta: &StateDelta,
    ) -> Result<(), PortError> {
        let pipeline = checkpoint.pipeline.as_str();
        // Everything that can be refused is, before the transaction begins.
        let epoch = DB::DIALECT.commit_epoch(generation, checkpoint.epoch)?;
        let now = stored_time::<DB>(Timestamp::now())?;
        let refuse = |e| PortError::refused(DB::DIALECT.system, e);
        let offsets = serde_json::to_string(&checkpoint.offsets).map_err(refuse)?;
        let state = serde_json::to_string(&checkpoint.state).map_err(refuse)?;
        let results = results
            .map(|write| ResultBatches::<DB>::new(write, &now))
            .transpose()?;
        let delta_batches = DeltaBatches::<DB>::new(pipeline, epoch, delta);

        let mut tx = begin(&self.pool).await?;
        // Serializes with claims and the other commits of the pipeline: every writer of its
        // checkpoint row holds this lock, so the epoch read next cannot go stale.
        let owner = run::<DB>(&mut tx, owner_query(pipeline)).await?;
        let owner = owner.first().map(|row| DB::int(row, 0)).transpose()?;
        let stored_epoch = run::<DB>(&mut tx, epoch_query(pipeline)).await?;
        let stored_epoch = stored_epoch
            .first()
            .map(|row| DB::int(row, 0))
            .transpose()?;
        if let Err(fenced) = DB::DIALECT.check_fences(generation, checkpoint, owner, stored_epoch) {
            tx.rollback().await.map_err(sqlx_error::<DB>)?;
            return Err(fenced);
        }

        let mut statements = results
            .as_ref()
            .map(ResultBatches::statements)
            .unwrap_or_default();
        statements.push(upsert_checkpoint(
            pipeline,
            epoch,
            [&offsets, &state],
            checkpoint.watermark.millis(),
            now,
        ));
        statements.extend(delta_batches.statements());
        for statement in statements {
            run::<DB>(&mut tx, statement).await?;
        }
        tx.commit().await.map_err(sqlx_error::<DB>)?;
        tracing::debug!(
            system = DB::DIALECT.system,
            pipeline,
            generation,
            epoch = checkpoint.epoch,
            results = results.as_ref().map_or(0, ResultBatches::len),
            chunks = delta.append.len(),
            put = delta.put.len(),
            removed = delta.remove.len(),
            dropped_groups = delta.drop_groups.len(),
            "checkpoint committed"
        );
        Ok(())
    }

    async fn prepare_results(&self, schema: &ResultSchema) -> Result<(), PortError> {
        let table = schema.table();
        let wanted = wanted_columns::<DB>(schema)?;
        let mut tx = begin(&self.pool).await?;
        if let Some(lock) = DB::DIALECT.lock_table {
            run::<DB>(&mut tx, around(lock, &table)).await?;
        }
        let stored = stored_columns::<DB>(&mut tx, &table).await?;
        for statement in schema_changes::<DB>(&table, &wanted, &stored)? {
            run::<DB>(&mut tx, QueryBuilder::new(statement)).await?;
        }
        let legacy = stored.is_empty() && is_legacy(schema);
        if legacy {
            // A deployment upgraded from before typed results keeps them queryable: when the
            // table of a pipeline whose schema is the one every pipeline had then (keyed by
            // the event's key, counting) is created, the pipeline's rows of `window_results`
            // are copied into it, as revision 1 and without partial state (`count_partial`
            // NULL). They stay in `window_results` (until `reset`), which nothing writes now.
            run::<DB>(&mut tx, legacy_copy(&table, &schema.pipeline)).await?;
        }
        tx.commit().await.map_err(sqlx_error::<DB>)?;
        tracing::debug!(
            system = DB::DIALECT.system,
            pipeline = schema.pipeline,
            table,
            created = stored.is_empty(),
            legacy,
            "results table prepared"
        );
        Ok(())
    }

    async fn reset(&self, pipeline: &str) -> Result<(), PortError> {
        let table = results_table(pipeline);
        let now = stored_time::<DB>(Timestamp::now())?;
        let mut tx = begin(&self.pool).await?;
        // The bump first: it serializes with the pipeline's claims and commits as a claim
        // does, and fences its owner, which writes nothing after this reset.
        bump_owner::<DB>(&mut tx, pipeline, now).await?;
        if let Some(lock) = DB::DIALECT.lock_table {
            run::<DB>(&mut tx, around(lock, &table)).await?;
        }
        // `window_results` too, or the next `prepare_results` would copy its rows back.
        for from in [
            "checkpoints",
            "checkpoint_chunks",
            "checkpoint_state",
            "window_results",
        ] {
            let delete = format!("DELETE FROM {from} WHERE pipeline = ");
            run::<DB>(&mut tx, around([&delete, ""], pipeline)).await?;
        }
        let drop = format!("DROP TABLE IF EXISTS {}", quote(&table));
        run::<DB>(&mut tx, QueryBuilder::new(drop)).await?;
        tx.commit().await.map_err(sqlx_error::<DB>)?;
        tracing::info!(
            system = DB::DIALECT.system,
            pipeline,
            table,
            "pipeline reset"
        );
        Ok(())
    }

    async fn query_results(
        &self,
        schema: &ResultSchema,
        query: &ResultQuery,
    ) -> Result<Vec<ResultRow>, PortError> {
        if query.pipeline != schema.pipeline {
            return Err(DB::DIALECT.refuse(Invalid::OtherPipeline {
                query: query.pipeline.clone(),
                schema: schema.pipeline.clone(),
            }));
        }
        self.guarded(async {
            let mut conn = acquire(&self.pool).await?;
            let stored = stored_columns::<DB>(&mut conn, &schema.table()).await?;
            let Some(sql) = results_query::<DB>(schema, &stored, query) else {
                return Ok(Vec::new());
            };
            fetch::<DB, _>(&mut conn, sql, |row| result_from_row::<DB>(schema, row)).await
        })
        .await
    }
}

// ----------------------------------------------------------- checkpoints, owners, state

/// The statement `before`, `name` (bound), `after`.
fn around<'a, DB: Sqlx>([before, after]: [&str; 2], name: &'a str) -> QueryBuilder<'a, DB> {
    let mut sql = QueryBuilder::new(before);
    DB::bind_text(&mut sql, name);
    sql.push(after);
    sql
}

/// Bumps the pipeline's generation in `conn` (1 at its first claim) and returns it.
async fn bump_owner<DB: Sqlx>(
    conn: &mut DB::Connection,
    pipeline: &str,
    now: DB::Time,
) -> Result<i64, PortError> {
    let mut sql = QueryBuilder::new(
        "INSERT INTO pipeline_owners (pipeline, generation, claimed_at) VALUES (",
    );
    DB::bind_text(&mut sql, pipeline);
    sql.push(", 1, ").push_bind(now).push(
        ") ON CONFLICT (pipeline) DO UPDATE \
         SET generation = pipeline_owners.generation + 1, claimed_at = excluded.claimed_at \
         RETURNING generation",
    );
    match run::<DB>(conn, sql).await?.first() {
        Some(row) => DB::int(row, 0),
        None => Err(sqlx_error::<DB>(sqlx::Error::RowNotFound)),
    }
}

/// A statement reading one row of a shared table by pipeline: `SELECT {select} FROM {from}
/// WHERE pipeline = ?{tail}`.
fn by_pipeline<'a, DB: Sqlx>(
    select: &str,
    from: &str,
    pipeline: &'a str,
    tail: &str,
) -> QueryBuilder<'a, DB> {
    let head = format!("SELECT {select} FROM {from} WHERE pipeline = ");
    around([&head, tail], pipeline)
}

/// Reads (and locks, [`Dialect::lock_row`]) the pipeline's stored generation.
fn owner_query<DB: Sqlx>(pipeline: &str) -> QueryBuilder<'_, DB> {
    by_pipeline(
        "generation",
        "pipeline_owners",
        pipeline,
        DB::DIALECT.lock_row,
    )
}

/// Reads the pipeline's stored epoch.
fn epoch_query<DB: Sqlx>(pipeline: &str) -> QueryBuilder<'_, DB> {
    by_pipeline("epoch", "checkpoints", pipeline, "")
}

/// Reads every state chunk of `pipeline` as (group, bytes): by group, then in commit order
/// (epoch, then position in its delta).
fn chunks_query<DB: Sqlx>(pipeline: &str) -> QueryBuilder<'_, DB> {
    by_pipeline(
        "grp, bytes",
        "checkpoint_chunks",
        pipeline,
        " ORDER BY grp, epoch, seq",
    )
}

/// Reads every keyed state entry of `pipeline` as (group, key, bytes), by group, then key.
fn keyed_query<DB: Sqlx>(pipeline: &str) -> QueryBuilder<'_, DB> {
    by_pipeline(
        "grp, key, bytes",
        "checkpoint_state",
        pipeline,
        " ORDER BY grp, key",
    )
}

/// Writes the checkpoint row (`json`: its offsets and state as JSON), under the lock of the
/// pipeline's owner row.
fn upsert_checkpoint<'a, DB: Sqlx>(
    pipeline: &'a str,
    epoch: i64,
    json: [&'a str; 2],
    watermark: i64,
    now: DB::Time,
) -> QueryBuilder<'a, DB> {
    let mut sql = QueryBuilder::new(
        "INSERT INTO checkpoints (pipeline, epoch, offsets, state, watermark, committed_at) \
         VALUES (",
    );
    DB::bind_text(&mut sql, pipeline);
    sql.push(", ");
    DB::bind_int(&mut sql, epoch);
    for value in json {
        sql.push(", CAST(");
        DB::bind_text(&mut sql, value);
        sql.push(format_args!(" AS {})", DB::DIALECT.json));
    }
    sql.push(", ");
    DB::bind_int(&mut sql, watermark);
    sql.push(", ").push_bind(now).push(
        ") ON CONFLICT (pipeline) DO UPDATE SET epoch = excluded.epoch, \
         offsets = excluded.offsets, state = excluded.state, watermark = excluded.watermark, \
         committed_at = excluded.committed_at",
    );
    sql
}

/// Reads the pipeline's checkpoint in `conn`.
async fn read_checkpoint<DB: Sqlx>(
    conn: &mut DB::Connection,
    pipeline: &str,
) -> Result<Option<(Checkpoint, Timestamp)>, PortError> {
    let sql = by_pipeline(
        "epoch, CAST(offsets AS TEXT), CAST(state AS TEXT), watermark, committed_at",
        "checkpoints",
        pipeline,
        " AND epoch > 0",
    );
    let rows = run::<DB>(conn, sql).await?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    let corrupt = |e| PortError::corrupt(DB::DIALECT.system, e);
    let checkpoint = Checkpoint {
        pipeline: pipeline.to_owned(),
        epoch: DB::DIALECT.unsigned(DB::int(row, 0)?)?,
        offsets: serde_json::from_str::<Vec<PartitionOffset>>(&DB::text(row, 1)?)
            .map_err(corrupt)?,
        state: serde_json::from_str(&DB::text(row, 2)?).map_err(corrupt)?,
        watermark: Timestamp::from_millis(DB::int(row, 3)?),
    };
    Ok(Some((checkpoint, DB::time_at(row, 4)?)))
}

/// A commit's [`StateDelta`] as batches of rows.
struct DeltaBatches<'a, DB: Backend> {
    /// (pipeline, grp) of the dropped groups.
    dropped: Batch<'a, DB::Time>,
    /// (pipeline, grp, key) of the removed entries.
    removed: Batch<'a, DB::Time>,
    /// The appended chunks, each under its position in the delta (`seq`).
    appended: Batch<'a, DB::Time>,
    /// The put entries, the last of each (group, key), keyed by (pipeline, grp, key).
    put: Batch<'a, DB::Time>,
}

impl<'a, DB: Sqlx> DeltaBatches<'a, DB> {
    /// The batches of `delta`, committed by the checkpoint of `epoch` of `pipeline`.
    fn new(pipeline: &'a str, epoch: i64, delta: &'a StateDelta) -> Self {
        let pipelines = |n| Cells::Text(vec![Some(Cow::Borrowed(pipeline)); n]);
        let ints = |v: Vec<i64>| Cells::Int(v.into_iter().map(Some).collect());
        let bytes = |v: Vec<&'a [u8]>| Cells::Bytes(v.into_iter().map(Some).collect());
        let (drop, remove, append) = (&delta.drop_groups, &delta.remove, &delta.append);
        // One statement cannot write a row twice: the last entry of each key wins.
        let put = last_of(&delta.put, |entry| (entry.group, entry.key.as_slice()));
        Self {
            dropped: Batch::new(0)
                .column("pipeline", pipelines(drop.len()))
                .column("grp", ints(drop.clone())),
            removed: Batch::new(0)
                .column("pipeline", pipelines(remove.len()))
                .column(
                    "grp",
                    ints(remove.iter().map(|(group, _)| *group).collect()),
                )
                .column(
                    "key",
                    bytes(remove.iter().map(|(_, key)| &key[..]).collect()),
                ),
            appended: Batch::new(0)
                .column("pipeline", pipelines(append.len()))
                .column("grp", ints(append.iter().map(|c| c.group).collect()))
                .column("epoch", ints(vec![epoch; append.len()]))
                .column("seq", ints((0..).take(append.len()).collect()))
                .column(
                    "bytes",
                    bytes(append.iter().map(|c| &c.bytes[..]).collect()),
                ),
            put: Batch::new(3)
                .column("pipeline", pipelines(put.len()))
                .column("grp", ints(put.iter().map(|e| e.group).collect()))
                .column("key", bytes(put.iter().map(|e| &e.key[..]).collect()))
                .column("bytes", bytes(put.iter().map(|e| &e.bytes[..]).collect()))
                .column("epoch", ints(vec![epoch; put.len()])),
        }
    }

    /// The statements applying the delta, in order: dropped groups (chunks and entries),
    /// removed entries, appended chunks, put entries.
    fn statements(&self) -> Vec<QueryBuilder<'_, DB>> {
        let mut statements = delete_statements("checkpoint_chunks", &self.dropped);
        statements.extend(delete_statements("checkpoint_state", &self.dropped));
        statements.extend(delete_statements("checkpoint_state", &self.removed));
        statements.extend(DB::insert("checkpoint_chunks", &self.appended));
        statements.extend(DB::insert("checkpoint_state", &self.put));
        statements
    }
}

/// Of the elements of `items` with the same key, the last, in the order their keys first
/// appear.
fn last_of<'t, T, K: Eq + Hash>(items: &'t [T], key: impl Fn(&'t T) -> K) -> Vec<&'t T> {
    let mut index: HashMap<K, usize> = HashMap::with_capacity(items.len());
    let mut last: Vec<&T> = Vec::with_capacity(items.len());
    for item in items {
        match index.entry(key(item)) {
            Entry::Occupied(at) => last[*at.get()] = item,
            Entry::Vacant(at) => {
                at.insert(last.len());
                last.push(item);
            }
        }
    }
    last
}

// ---------------------------------------------------------------------------- batches

/// Bound values per statement of a batch written as `VALUES` tuples: below the limits of
/// both dialects (SQLite 32,766, PostgreSQL 65,535).
const BINDS_PER_STATEMENT: usize = 10_000;

/// One column of a [`Batch`]: its values, one per row, of one SQL type.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cells<'a, T> {
    /// Times, never `NULL`.
    Time(Vec<T>),
    /// Integers.
    Int(Vec<Option<i64>>),
    /// Doubles.
    Float(Vec<Option<f64>>),
    /// Booleans.
    Bool(Vec<Option<bool>>),
    /// Text.
    Text(Vec<Option<Cow<'a, str>>>),
    /// Bytes.
    Bytes(Vec<Option<&'a [u8]>>),
}

impl<T> Cells<'_, T> {
    /// How many rows.
    fn len(&self) -> usize {
        match self {
            Self::Time(v) => v.len(),
            Self::Int(v) => v.len(),
            Self::Float(v) => v.len(),
            Self::Bool(v) => v.len(),
            Self::Text(v) => v.len(),
            Self::Bytes(v) => v.len(),
        }
    }
}

/// Rows to write to (or delete from) a table, column by column: PostgreSQL binds each
/// column as an array, SQLite each value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Batch<'a, T> {
    /// The columns, quoted, with their cells; all have one length.
    columns: Vec<(String, Cells<'a, T>)>,
    /// How many leading columns identify a row, when an insert upserts (0: it does not).
    key: usize,
}

impl<'a, T> Batch<'a, T> {
    /// A batch with no column yet, upserting by its first `key` columns (0: inserting).
    fn new(key: usize) -> Self {
        Self {
            columns: Vec::new(),
            key,
        }
    }

    /// The batch with column `name` of `cells` added.
    fn column(mut self, name: &str, cells: Cells<'a, T>) -> Self {
        self.columns.push((quote(name), cells));
        self
    }

    /// How many rows.
    pub(crate) fn rows(&self) -> usize {
        self.columns.first().map_or(0, |(_, cells)| cells.len())
    }

    /// The columns' cells, in order.
    pub(crate) fn cells(&self) -> impl Iterator<Item = &Cells<'a, T>> {
        self.columns.iter().map(|(_, cells)| cells)
    }

    /// The columns' names, quoted, separated by commas.
    pub(crate) fn names(&self) -> String {
        let names: Vec<&str> = self.columns.iter().map(|(name, _)| name.as_str()).collect();
        names.join(", ")
    }

    /// The rows in ranges of at most [`BINDS_PER_STATEMENT`] values.
    fn ranges(&self) -> impl Iterator<Item = Range<usize>> + use<'_, 'a, T> {
        let rows = self.rows();
        let per = (BINDS_PER_STATEMENT / self.columns.len().max(1)).max(1);
        (0..rows)
            .step_by(per)
            .map(move |start| start..rows.min(start + per))
    }

    /// What ends an insert of the batch: when it has a key, ` ON CONFLICT (key) DO UPDATE
    /// SET` every other column to the inserted value; otherwise nothing.
    pub(crate) fn on_conflict(&self) -> String {
        if self.key == 0 {
            return String::new();
        }
        let (key, rest) = self.columns.split_at(self.key.min(self.columns.len()));
        let key: Vec<&str> = key.iter().map(|(name, _)| name.as_str()).collect();
        let set: Vec<String> = rest
            .iter()
            .map(|(name, _)| format!("{name} = excluded.{name}"))
            .collect();
        format!(
            " ON CONFLICT ({}) DO UPDATE SET {}",
            key.join(", "),
            set.join(", ")
        )
    }
}

/// One statement per range of rows of `batch` ([`BINDS_PER_STATEMENT`] values at most):
/// `head`, the rows as `VALUES (...), (...)`, then `tail`.
fn values_statements<'b, DB: Sqlx>(
    batch: &'b Batch<'_, DB::Time>,
    head: &str,
    tail: &str,
) -> Vec<QueryBuilder<'b, DB>> {
    let ranges = batch.ranges();
    let statements = ranges.map(|range| {
        let mut sql = QueryBuilder::new(head);
        sql.push_values(range, |mut tuple, row| {
            for cells in batch.cells() {
                DB::bind_cell(&mut tuple, cells, row);
            }
        });
        sql.push(tail);
        sql
    });
    statements.collect()
}

/// Inserts (or upserts, [`Batch::on_conflict`]) `batch` into `table` with multi-row
/// `VALUES`: [`Backend::insert`] for databases without arrays.
pub(crate) fn values_insert<'b, DB: Sqlx>(
    table: &str,
    batch: &'b Batch<'_, DB::Time>,
) -> Vec<QueryBuilder<'b, DB>> {
    let head = format!("INSERT INTO {table} ({}) ", batch.names());
    values_statements(batch, &head, &batch.on_conflict())
}

/// Deletes from `table` the rows whose columns equal a row of `batch` (all its columns).
fn delete_statements<'b, DB: Sqlx>(
    table: &str,
    batch: &'b Batch<'_, DB::Time>,
) -> Vec<QueryBuilder<'b, DB>> {
    let head = format!("DELETE FROM {table} WHERE ({}) IN (", batch.names());
    values_statements(batch, &head, ")")
}

// ---------------------------------------------------------------------------- results

/// A commit's [`ResultWrite`] as batches: of each row (window start, key), the last change.
struct ResultBatches<'a, DB: Backend> {
    /// The results table, quoted.
    table: String,
    /// (window_start, key) of the deleted rows.
    deletes: Batch<'a, DB::Time>,
    /// The upserted rows, by (window_start, key).
    upserts: Batch<'a, DB::Time>,
}

impl<'a, DB: Sqlx> ResultBatches<'a, DB> {
    /// The batches of `write`, stamped `now`; refused when a row does not fit its schema or
    /// the database.
    fn new(write: ResultWrite<'a>, now: &DB::Time) -> Result<Self, PortError> {
        let schema = write.schema;
        let last = last_of(write.changes, |change| match change {
            ResultChange::Upsert(row) => (row.window_start, row.key.as_str()),
            ResultChange::Delete { window_start, key } => (*window_start, key.as_str()),
        });
        let mut deleted = Vec::new();
        let mut rows = Vec::new();
        for change in last {
            match change {
                ResultChange::Upsert(row) => rows.push(check_shape::<DB>(schema, row)?),
                ResultChange::Delete { window_start, key } => deleted.push((*window_start, key)),
            }
        }
        let times = |times: Vec<Timestamp>| {
            times
                .into_iter()
                .map(stored_time::<DB>)
                .collect::<Result<Vec<_>, _>>()
                .map(Cells::Time)
        };
        let texts = |texts: Vec<&'a str>| {
            Cells::Text(texts.into_iter().map(|s| Some(Cow::Borrowed(s))).collect())
        };
        let deletes = Batch::new(0)
            .column(
                "window_start",
                times(deleted.iter().map(|d| d.0).collect())?,
            )
            .column("key", texts(deleted.iter().map(|d| d.1.as_str()).collect()));

        // Keyed by (window_start, key): those two first.
        let mut upserts = Batch::new(2)
            .column(
                "window_start",
                times(rows.iter().map(|r| r.window_start).collect())?,
            )
            .column("key", texts(rows.iter().map(|r| r.key.as_str()).collect()))
            .column(
                "window_end",
                times(rows.iter().map(|r| r.window_end).collect())?,
            );
        for (i, column) in schema.key_columns() {
            let values = rows.iter().map(|r| &r.keys[i]);
            upserts = upserts.column(&column.name, typed_cells(column.ty, values));
        }
        for (i, column) in schema.aggregates.iter().enumerate() {
            let values = rows.iter().map(|r| &r.values[i]);
            let partials = rows.iter().map(|r| Some(&r.partials[i][..])).collect();
            upserts = upserts
                .column(&column.name, typed_cells(column.ty, values))
                .column(
                    &ResultSchema::partial_column(column),
                    Cells::Bytes(partials),
                );
        }
        let revisions = rows
            .iter()
            .map(|r| DB::DIALECT.integer("revision", r.revision).map(Some))
            .collect::<Result<_, _>>()?;
        let upserts = upserts
            .column("revision", Cells::Int(revisions))
            .column(
                "closed",
                Cells::Bool(rows.iter().map(|r| Some(r.closed)).collect()),
            )
            .column("updated_at", Cells::Time(vec![now.clone(); rows.len()]));
        Ok(Self {
            table: quote(&schema.table()),
            deletes,
            upserts,
        })
    }

    /// How many rows the batches write.
    fn len(&self) -> usize {
        self.deletes.rows() + self.upserts.rows()
    }

    /// The statements writing the batches: deletes, then upserts (each row is in one).
    fn statements(&self) -> Vec<QueryBuilder<'_, DB>> {
        let mut statements = delete_statements(&self.table, &self.deletes);
        statements.extend(DB::insert(&self.table, &self.upserts));
        statements
    }
}

/// `row`, when it has as many keys, values and partials as `schema` has keys and
/// aggregates; refused otherwise.
fn check_shape<'r, DB: Backend>(
    schema: &ResultSchema,
    row: &'r ResultRow,
) -> Result<&'r ResultRow, PortError> {
    let counts = [
        ("keys", schema.keys.len(), row.keys.len()),
        ("values", schema.aggregates.len(), row.values.len()),
        ("partials", schema.aggregates.len(), row.partials.len()),
    ];
    for (what, expected, found) in counts {
        if expected != found {
            return Err(DB::DIALECT.refuse(Invalid::RowShape {
                what,
                expected,
                found,
            }));
        }
    }
    Ok(row)
}

/// `values` as cells of a column of `ty`, each converted as [`ColumnType::coerce`] does.
fn typed_cells<'a, T>(
    ty: ColumnType,
    values: impl Iterator<Item = &'a Value<'static>>,
) -> Cells<'a, T> {
    match ty {
        ColumnType::Bool => Cells::Bool(
            values
                .map(|v| match v {
                    Value::Bool(b) => Some(*b),
                    _ => None,
                })
                .collect(),
        ),
        ColumnType::Int => Cells::Int(
            values
                .map(|v| match ty.coerce(v.clone()) {
                    Value::Int(i) => Some(i),
                    _ => None,
                })
                .collect(),
        ),
        ColumnType::Float => Cells::Float(values.map(Value::as_f64).collect()),
        ColumnType::Text => Cells::Text(
            values
                .map(|v| match v {
                    Value::Null => None,
                    Value::Str(s) => Some(Cow::Borrowed(s.as_ref())),
                    other => Some(Cow::Owned(other.to_string())),
                })
                .collect(),
        ),
    }
}

/// One column every results table of a schema has.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Wanted {
    /// Its name.
    name: String,
    /// Its type.
    ty: SqlType,
    /// Whether every results table has it, `NOT NULL`: it cannot be added to a stored one.
    fixed: bool,
}

/// The columns of `schema`'s table, in order; refused when two have one name.
fn wanted_columns<DB: Backend>(schema: &ResultSchema) -> Result<Vec<Wanted>, PortError> {
    let column = |name: &str, ty, fixed| Wanted {
        name: name.to_owned(),
        ty,
        fixed,
    };
    let mut wanted = vec![
        column("window_start", SqlType::Time, true),
        column("window_end", SqlType::Time, true),
        column("key", SqlType::Text, true),
    ];
    for (_, key) in schema.key_columns() {
        wanted.push(column(&key.name, key.ty.into(), false));
    }
    for aggregate in &schema.aggregates {
        wanted.push(column(&aggregate.name, aggregate.ty.into(), false));
        let partial = ResultSchema::partial_column(aggregate);
        wanted.push(column(&partial, SqlType::Bytes, false));
    }
    wanted.push(column("revision", SqlType::Int, true));
    wanted.push(column("closed", SqlType::Bool, true));
    wanted.push(column("updated_at", SqlType::Time, true));
    let mut names = HashSet::new();
    if let Some(twice) = wanted.iter().find(|c| !names.insert(c.name.as_str())) {
        return Err(DB::DIALECT.refuse(Invalid::DuplicateColumn {
            table: schema.table(),
            column: twice.name.clone(),
        }));
    }
    Ok(wanted)
}

/// The name and type of each column of `table`, read in `conn`: none when it does not
/// exist.
async fn stored_columns<DB: Sqlx>(
    conn: &mut DB::Connection,
    table: &str,
) -> Result<HashMap<String, String>, PortError> {
    let columns = around(DB::DIALECT.columns, table);
    let columns = fetch::<DB, _>(conn, columns, |row| {
        Ok((DB::text(row, 0)?, DB::text(row, 1)?))
    });
    Ok(columns.await?.into_iter().collect())
}

/// The DDL giving `table` the `wanted` columns, `stored` the columns it has: the table and
/// its index when it has none, else the columns it lacks. Refused when a stored column has
/// another type, or the table lacks a column only a new table can have.
fn schema_changes<DB: Backend>(
    table: &str,
    wanted: &[Wanted],
    stored: &HashMap<String, String>,
) -> Result<Vec<String>, PortError> {
    let dialect = &DB::DIALECT;
    let quoted = quote(table);
    if stored.is_empty() {
        let mut columns: Vec<String> = wanted
            .iter()
            .map(|column| {
                let ty = (dialect.types)(column.ty);
                match column.name.as_str() {
                    "key" => format!("\"key\" {ty}{} NOT NULL", dialect.bytewise),
                    name if column.fixed => format!("{} {ty} NOT NULL", quote(name)),
                    name => format!("{} {ty}", quote(name)),
                }
            })
            .collect();
        columns.push("PRIMARY KEY (\"window_start\", \"key\")".to_owned());
        let index = if dialect.index_names {
            quote(&format!("{table}_key_start"))
        } else {
            String::new()
        };
        return Ok(vec![
            format!(
                "CREATE TABLE IF NOT EXISTS {quoted} ({})",
                columns.join(", ")
            ),
            format!("CREATE INDEX {index} ON {quoted} (\"key\", \"window_start\")"),
        ]);
    }
    let mut changes = Vec::new();
    for column in wanted {
        let ty = (dialect.types)(column.ty);
        match stored.get(&column.name) {
            Some(stored) if stored.eq_ignore_ascii_case(ty) => {}
            Some(stored) => {
                return Err(dialect.refuse(Invalid::ColumnType {
                    table: table.to_owned(),
                    column: column.name.clone(),
                    stored: stored.clone(),
                    wanted: ty,
                }));
            }
            None if column.fixed => {
                return Err(dialect.refuse(Invalid::MissingColumn {
                    table: table.to_owned(),
                    column: column.name.clone(),
                }));
            }
            None => changes.push(format!(
                "ALTER TABLE {quoted} ADD COLUMN {} {ty}",
                quote(&column.name)
            )),
        }
    }
    Ok(changes)
}

/// Whether `schema` is the one every pipeline had before typed results: keyed by the event's
/// key, counting.
fn is_legacy(schema: &ResultSchema) -> bool {
    let one = |columns: &[Column], name: &str, ty| matches!(columns, [column] if column.name == name && column.ty == ty);
    one(&schema.keys, "key", ColumnType::Text) && one(&schema.aggregates, "count", ColumnType::Int)
}

/// Copies the rows of `pipeline` in `window_results` into `table`, a legacy schema's.
fn legacy_copy<'a, DB: Sqlx>(table: &str, pipeline: &'a str) -> QueryBuilder<'a, DB> {
    let mut sql = QueryBuilder::new(format!(
        "INSERT INTO {} \
         (\"window_start\", \"window_end\", \"key\", \"count\", \"revision\", \"closed\", \"updated_at\") \
         SELECT window_start, window_end, key, count, 1, closed, updated_at \
         FROM window_results WHERE pipeline = ",
        quote(table)
    ));
    DB::bind_text(&mut sql, pipeline);
    sql
}

/// The `query_results` statement over `schema`'s table, whose columns are `stored` (a
/// column it lacks reads as `NULL`): `from <= window_start < to` and the key, ordered by
/// `(window_start, key)`, limited ([`stored_bounds`]); no statement (`None`) when the answer
/// is empty.
fn results_query<'a, DB: Sqlx>(
    schema: &ResultSchema,
    stored: &HashMap<String, String>,
    query: &'a ResultQuery,
) -> Option<QueryBuilder<'a, DB>> {
    if query.limit == 0 || stored.is_empty() {
        return None;
    }
    let column = |name: &str| {
        if stored.contains_key(name) {
            quote(name)
        } else {
            "NULL".to_owned()
        }
    };
    let mut select = vec!["\"window_start\", \"window_end\", \"key\"".to_owned()];
    select.extend(schema.key_columns().map(|(_, key)| column(&key.name)));
    for aggregate in &schema.aggregates {
        select.push(column(&aggregate.name));
        select.push(column(&ResultSchema::partial_column(aggregate)));
    }
    select.push("\"revision\", \"closed\", \"updated_at\"".to_owned());
    let mut sql = QueryBuilder::new(format!(
        "SELECT {} FROM {} WHERE TRUE",
        select.join(", "),
        quote(&schema.table())
    ));
    let (from, to) = stored_bounds(DB::time, query.from, query.to)?;
    if let Some(from) = from {
        sql.push(" AND \"window_start\" >= ").push_bind(from);
    }
    if let Some(to) = to {
        sql.push(" AND \"window_start\" < ").push_bind(to);
    }
    if let Some(key) = &query.key {
        sql.push(" AND \"key\" = ");
        DB::bind_text(&mut sql, key);
    }
    sql.push(" ORDER BY \"window_start\", \"key\" LIMIT ");
    DB::bind_int(&mut sql, i64::try_from(query.limit).unwrap_or(i64::MAX));
    Some(sql)
}

/// The bounds of `from <= window_start < to` as stored times (`time` converts): a bound
/// beyond what the dialect holds either matches everything (no bound) or nothing (`None`:
/// the answer is empty).
fn stored_bounds<T>(
    time: impl Fn(Timestamp) -> Result<T, OutOfRange>,
    from: Option<Timestamp>,
    to: Option<Timestamp>,
) -> Option<(Option<T>, Option<T>)> {
    let from = match from.map(&time) {
        None | Some(Err(OutOfRange::Before)) => None,
        Some(Ok(from)) => Some(from),
        Some(Err(OutOfRange::After)) => return None,
    };
    let to = match to.map(&time) {
        None | Some(Err(OutOfRange::After)) => None,
        Some(Ok(to)) => Some(to),
        Some(Err(OutOfRange::Before)) => return None,
    };
    Some((from, to))
}

/// Decodes one row of [`results_query`].
fn result_from_row<DB: Sqlx>(schema: &ResultSchema, row: &DB::Row) -> Result<ResultRow, PortError> {
    let key = DB::text(row, 2)?;
    let mut at = 3;
    let mut next = || {
        at += 1;
        at - 1
    };
    let keys = match schema.keys.as_slice() {
        [only] if schema.key_columns().next().is_none() => vec![implicit_key(only.ty, &key)],
        keys => keys
            .iter()
            .map(|column| DB::value(row, next(), column.ty))
            .collect::<Result<_, _>>()?,
    };
    let mut values = Vec::with_capacity(schema.aggregates.len());
    let mut partials = Vec::with_capacity(schema.aggregates.len());
    for aggregate in &schema.aggregates {
        values.push(DB::value(row, next(), aggregate.ty)?);
        partials.push(DB::bytes(row, next())?);
    }
    Ok(ResultRow {
        pipeline: schema.pipeline.clone(),
        window_start: DB::time_at(row, 0)?,
        window_end: DB::time_at(row, 1)?,
        key,
        keys,
        values,
        partials,
        revision: DB::DIALECT.unsigned(DB::int(row, next())?)?,
        closed: DB::flag(row, next())?,
        updated_at: Some(DB::time_at(row, next())?),
    })
}

/// The value of a schema's only key field when it is the `key` column itself, read back
/// from its text: text as it is (a `NULL` key, stored as `""`, reads as `""`), other types
/// parsed, `NULL` when the text does not parse.
fn implicit_key(ty: ColumnType, key: &str) -> Value<'static> {
    let parsed = match ty {
        ColumnType::Text => return Value::Str(Cow::Owned(key.to_owned())),
        ColumnType::Bool => key.parse().ok().map(Value::Bool),
        ColumnType::Int => key.parse().ok().map(Value::Int),
        ColumnType::Float => key.parse().ok().map(Value::Float),
    };
    parsed.unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use sqlx::Sqlite;
    use tributary_core::results::Column;

    use super::*;

    const TEST: Dialect = Dialect {
        system: "test",
        integer: "test integer",
        classify: |_| Class::Corrupt,
        tls_is_transient: false,
        begin: "BEGIN",
        lock_row: "",
        json: "TEXT",
        bytewise: "",
        index_names: true,
        types: |_| "ANY",
        columns: ["", ""],
        lock_table: None,
    };

    #[test]
    fn commit_epoch_refuses_zero_and_huge_epochs_and_generation_zero() {
        assert_eq!(TEST.commit_epoch(1, 1).unwrap(), 1);
        assert_eq!(TEST.commit_epoch(3, 8).unwrap(), 8);
        for (generation, epoch) in [(1, 0), (0, 1)] {
            assert!(matches!(
                TEST.commit_epoch(generation, epoch),
                Err(PortError::Refused { .. })
            ));
        }
        let huge = TEST.commit_epoch(1, u64::MAX).unwrap_err();
        assert!(matches!(huge, PortError::Refused { .. }));
        let source = std::error::Error::source(&huge).unwrap().to_string();
        assert_eq!(
            source,
            "epoch 18446744073709551615 does not fit a test integer"
        );
    }

    fn checkpoint(epoch: u64) -> Checkpoint {
        Checkpoint {
            pipeline: "p".to_owned(),
            epoch,
            offsets: Vec::new(),
            state: serde_json::Value::Null,
            watermark: Timestamp::MIN,
        }
    }

    #[track_caller]
    fn assert_fenced(outcome: Result<(), PortError>, fence: Fence, expected: u64, found: u64) {
        match outcome {
            Err(PortError::Fenced {
                pipeline,
                fence: f,
                expected: e,
                found: n,
            }) => assert_eq!((pipeline.as_str(), f, e, n), ("p", fence, expected, found)),
            other => panic!("expected Fenced, got {other:?}"),
        }
    }

    #[test]
    fn fences_check_the_generation_then_the_epoch() {
        TEST.check_fences(2, &checkpoint(5), Some(2), Some(4))
            .unwrap();
        TEST.check_fences(1, &checkpoint(1), Some(1), None).unwrap();
        // A newer claim fences whatever the epoch, a stale epoch the current owner too.
        assert_fenced(
            TEST.check_fences(2, &checkpoint(5), Some(3), Some(4)),
            Fence::Generation,
            2,
            3,
        );
        assert_fenced(
            TEST.check_fences(2, &checkpoint(1), None, None),
            Fence::Generation,
            2,
            0,
        );
        assert_fenced(
            TEST.check_fences(2, &checkpoint(5), Some(2), Some(5)),
            Fence::Epoch,
            4,
            5,
        );
        assert_fenced(
            TEST.check_fences(2, &checkpoint(2), Some(2), None),
            Fence::Epoch,
            1,
            0,
        );
        for (generation, epoch) in [(-1, 4), (2, -1)] {
            assert!(matches!(
                TEST.check_fences(2, &checkpoint(5), Some(generation), Some(epoch)),
                Err(PortError::Corrupt { .. })
            ));
        }
    }

    #[test]
    fn tls_errors_follow_the_dialect() {
        let tls = || sqlx::Error::Tls("handshake".into());
        assert!(matches!(TEST.sqlx_error(tls()), PortError::Refused { .. }));
        let network = Dialect {
            tls_is_transient: true,
            ..TEST
        };
        assert!(network.sqlx_error(tls()).is_retryable());
    }

    fn texts(statements: &[QueryBuilder<'_, Sqlite>]) -> Vec<String> {
        statements.iter().map(|q| q.sql().to_owned()).collect()
    }

    #[test]
    fn deltas_drop_remove_append_then_put_in_batches() {
        let chunk = |group| StateChunk {
            group,
            bytes: vec![1, 2],
        };
        let entry = |group, key: &[u8], bytes: &[u8]| KeyedState {
            group,
            key: key.to_vec(),
            bytes: bytes.to_vec(),
        };
        let delta = StateDelta {
            append: (0..4_500).map(chunk).collect(),
            drop_groups: vec![7, 9],
            put: vec![
                entry(1, b"a", b"1"),
                entry(1, b"b", b"2"),
                entry(1, b"a", b"3"),
            ],
            remove: vec![(2, b"x".to_vec())],
        };
        let batches = DeltaBatches::<Sqlite>::new("p", 3, &delta);
        let sql = texts(&batches.statements());
        assert_eq!(
            sql[..3],
            [
                "DELETE FROM checkpoint_chunks WHERE (\"pipeline\", \"grp\") IN (VALUES (?, ?), (?, ?))",
                "DELETE FROM checkpoint_state WHERE (\"pipeline\", \"grp\") IN (VALUES (?, ?), (?, ?))",
                "DELETE FROM checkpoint_state WHERE (\"pipeline\", \"grp\", \"key\") IN (VALUES (?, ?, ?))",
            ]
        );
        // 10,000 bound values a statement: 2,000 chunks of 5 columns.
        let rows = |s: &str| s.matches("(?, ?, ?, ?, ?)").count();
        assert_eq!(
            sql[3..6].iter().map(|s| rows(s)).collect::<Vec<_>>(),
            [2000, 2000, 500]
        );
        assert!(sql[3].starts_with(
            "INSERT INTO checkpoint_chunks (\"pipeline\", \"grp\", \"epoch\", \"seq\", \"bytes\") VALUES"
        ));
        // The last entry of each key, once.
        assert_eq!(rows(&sql[6]), 2);
        assert!(sql[6].ends_with(
            " ON CONFLICT (\"pipeline\", \"grp\", \"key\") DO UPDATE SET \
             \"bytes\" = excluded.\"bytes\", \"epoch\" = excluded.\"epoch\""
        ));
        assert_eq!(sql.len(), 7);
        let put: Vec<_> = batches.put.cells().cloned().collect();
        assert_eq!(put[3], Cells::Bytes(vec![Some(&b"3"[..]), Some(&b"2"[..])]));
        assert!(
            DeltaBatches::<Sqlite>::new("p", 3, &StateDelta::default())
                .statements()
                .is_empty()
        );
    }

    #[test]
    fn last_of_keeps_the_last_of_each_key_in_first_order() {
        let items = [("a", 1), ("b", 2), ("a", 3), ("c", 4), ("b", 5)];
        let last = last_of(&items, |item| item.0);
        assert_eq!(last, [&("a", 3), &("b", 5), &("c", 4)]);
    }

    fn column(name: &str, ty: ColumnType) -> Column {
        Column {
            name: name.to_owned(),
            ty,
        }
    }

    fn schema(keys: Vec<Column>, aggregates: Vec<Column>) -> ResultSchema {
        ResultSchema {
            pipeline: "page-views".to_owned(),
            keys,
            aggregates,
        }
    }

    fn typed() -> ResultSchema {
        schema(
            vec![
                column("country", ColumnType::Text),
                column("mobile", ColumnType::Bool),
            ],
            vec![
                column("n", ColumnType::Int),
                column("avg", ColumnType::Float),
            ],
        )
    }

    fn row(start: i64, key: &str, revision: u64) -> ResultRow {
        ResultRow {
            pipeline: "page-views".to_owned(),
            window_start: Timestamp::from_millis(start),
            window_end: Timestamp::from_millis(start + 10),
            key: key.to_owned(),
            keys: vec![Value::Str(key.to_owned().into()), Value::Bool(true)],
            values: vec![Value::Int(7), Value::Int(2)],
            partials: vec![vec![1], vec![]],
            revision,
            closed: false,
            updated_at: None,
        }
    }

    #[test]
    fn results_keep_the_last_change_of_each_row_typed() {
        let schema = typed();
        let changes = [
            ResultChange::Upsert(row(0, "a", 1)),
            ResultChange::Upsert(row(0, "b", 1)),
            ResultChange::Delete {
                window_start: Timestamp::from_millis(0),
                key: "a".to_owned(),
            },
            ResultChange::Upsert(row(0, "b", 2)),
            ResultChange::Delete {
                window_start: Timestamp::from_millis(5),
                key: "c".to_owned(),
            },
        ];
        let write = ResultWrite {
            schema: &schema,
            changes: &changes,
        };
        let batches = ResultBatches::<Sqlite>::new(write, &99).unwrap();
        assert_eq!(batches.len(), 3);
        assert_eq!(
            batches.deletes.cells().collect::<Vec<_>>(),
            [
                &Cells::Time(vec![0, 5]),
                &Cells::Text(vec![Some("a".into()), Some("c".into())])
            ]
        );
        assert_eq!(
            batches.upserts.names(),
            "\"window_start\", \"key\", \"window_end\", \"country\", \"mobile\", \"n\", \
             \"n_partial\", \"avg\", \"avg_partial\", \"revision\", \"closed\", \"updated_at\""
        );
        let cells: Vec<_> = batches.upserts.cells().collect();
        // The integer of a double column is converted; the revision is the last change's.
        assert_eq!(cells[7], &Cells::Float(vec![Some(2.0)]));
        assert_eq!(cells[9], &Cells::Int(vec![Some(2)]));
        assert_eq!(cells[11], &Cells::Time(vec![99]));
        let sql = texts(&batches.statements());
        assert_eq!(sql.len(), 2);
        assert!(sql[0].starts_with("DELETE FROM \"results_page_views\" WHERE"));
        assert!(
            sql[1].contains(
                " ON CONFLICT (\"window_start\", \"key\") DO UPDATE SET \"window_end\" = "
            )
        );

        let mut short = row(0, "a", 1);
        short.partials.pop();
        let changes = [ResultChange::Upsert(short)];
        let write = ResultWrite {
            schema: &schema,
            changes: &changes,
        };
        let refused = ResultBatches::<Sqlite>::new(write, &99).err().unwrap();
        assert_eq!(
            std::error::Error::source(&refused).unwrap().to_string(),
            "a result row has 1 partials, but its schema 2"
        );
    }

    fn stored(columns: &[(&str, &str)]) -> HashMap<String, String> {
        columns
            .iter()
            .map(|&(name, ty)| (name.to_owned(), ty.to_owned()))
            .collect()
    }

    #[test]
    fn schema_changes_create_add_or_refuse() {
        let schema = typed();
        let wanted = wanted_columns::<Sqlite>(&schema).unwrap();
        let create = schema_changes::<Sqlite>("results_p", &wanted, &HashMap::new()).unwrap();
        assert_eq!(
            create,
            [
                "CREATE TABLE IF NOT EXISTS \"results_p\" (\"window_start\" INTEGER NOT NULL, \
                 \"window_end\" INTEGER NOT NULL, \"key\" TEXT NOT NULL, \"country\" TEXT, \
                 \"mobile\" INTEGER, \"n\" INTEGER, \"n_partial\" BLOB, \"avg\" REAL, \
                 \"avg_partial\" BLOB, \"revision\" INTEGER NOT NULL, \
                 \"closed\" INTEGER NOT NULL, \"updated_at\" INTEGER NOT NULL, \
                 PRIMARY KEY (\"window_start\", \"key\"))",
                "CREATE INDEX \"results_p_key_start\" ON \"results_p\" (\"key\", \"window_start\")",
            ]
        );
        let mut have = stored(&[
            ("window_start", "INTEGER"),
            ("window_end", "integer"),
            ("key", "TEXT"),
            ("country", "TEXT"),
            ("mobile", "INTEGER"),
            ("n", "INTEGER"),
            ("n_partial", "BLOB"),
            ("revision", "INTEGER"),
            ("closed", "INTEGER"),
            ("updated_at", "INTEGER"),
            ("dropped_aggregate", "REAL"),
        ]);
        assert_eq!(
            schema_changes::<Sqlite>("results_p", &wanted, &have).unwrap(),
            [
                "ALTER TABLE \"results_p\" ADD COLUMN \"avg\" REAL",
                "ALTER TABLE \"results_p\" ADD COLUMN \"avg_partial\" BLOB",
            ]
        );
        have.insert("n".to_owned(), "TEXT".to_owned());
        let refused = schema_changes::<Sqlite>("results_p", &wanted, &have).unwrap_err();
        assert_eq!(
            std::error::Error::source(&refused).unwrap().to_string(),
            "results table results_p: column n is TEXT, but the pipeline needs INTEGER"
        );
        have.insert("n".to_owned(), "INTEGER".to_owned());
        have.remove("revision");
        assert!(matches!(
            schema_changes::<Sqlite>("results_p", &wanted, &have),
            Err(PortError::Refused { .. })
        ));
    }

    #[test]
    fn schemas_name_each_column_once_and_legacy_ones_are_known() {
        let twice = schema(
            vec![column("n", ColumnType::Int)],
            vec![column("n", ColumnType::Int)],
        );
        assert!(matches!(
            wanted_columns::<Sqlite>(&twice),
            Err(PortError::Refused { .. })
        ));
        let partial = schema(
            vec![column("n_partial", ColumnType::Int)],
            vec![column("n", ColumnType::Int)],
        );
        assert!(wanted_columns::<Sqlite>(&partial).is_err());
        let legacy = schema(
            vec![column("key", ColumnType::Text)],
            vec![column("count", ColumnType::Int)],
        );
        assert!(is_legacy(&legacy));
        let names: Vec<String> = wanted_columns::<Sqlite>(&legacy)
            .unwrap()
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(
            names,
            [
                "window_start",
                "window_end",
                "key",
                "count",
                "count_partial",
                "revision",
                "closed",
                "updated_at"
            ]
        );
        assert!(!is_legacy(&schema(
            vec![column("key", ColumnType::Text)],
            vec![column("count", ColumnType::Float)]
        )));
        assert!(!is_legacy(&typed()));
    }

    #[test]
    fn implicit_keys_read_back_by_type() {
        assert_eq!(implicit_key(ColumnType::Text, ""), Value::Str("".into()));
        assert_eq!(implicit_key(ColumnType::Int, "42"), Value::Int(42));
        assert_eq!(implicit_key(ColumnType::Int, ""), Value::Null);
        assert_eq!(implicit_key(ColumnType::Bool, "true"), Value::Bool(true));
        assert_eq!(implicit_key(ColumnType::Float, "2.5"), Value::Float(2.5));
    }

    fn query(from: Option<i64>, to: Option<i64>, key: Option<&str>) -> ResultQuery {
        ResultQuery {
            pipeline: "page-views".to_owned(),
            from: from.map(Timestamp::from_millis),
            to: to.map(Timestamp::from_millis),
            key: key.map(str::to_owned),
            limit: 10,
        }
    }

    /// The query's text on a table storing every column but `avg`'s partial.
    fn sql(query: &ResultQuery) -> Option<String> {
        let have = stored(&[("country", "TEXT"), ("mobile", "INTEGER"), ("n", "INTEGER")]);
        let have = have
            .into_iter()
            .chain(stored(&[("n_partial", "BLOB"), ("avg", "REAL")]));
        results_query::<Sqlite>(&typed(), &have.collect(), query).map(|q| q.sql().to_owned())
    }

    #[test]
    fn results_query_reads_what_is_stored_and_filters() {
        let base = "SELECT \"window_start\", \"window_end\", \"key\", \"country\", \"mobile\", \
                    \"n\", \"n_partial\", \"avg\", NULL, \"revision\", \"closed\", \"updated_at\" \
                    FROM \"results_page_views\" WHERE TRUE";
        let tail = " ORDER BY \"window_start\", \"key\" LIMIT ?";
        assert_eq!(
            sql(&query(None, None, None)).unwrap(),
            format!("{base}{tail}")
        );
        assert_eq!(
            sql(&query(Some(1), Some(2), Some("k"))).unwrap(),
            format!(
                "{base} AND \"window_start\" >= ? AND \"window_start\" < ? AND \"key\" = ?{tail}"
            )
        );
        let mut none = query(None, None, None);
        none.limit = 0;
        assert_eq!(sql(&none), None);
        assert!(
            results_query::<Sqlite>(&typed(), &HashMap::new(), &query(None, None, None)).is_none()
        );
    }

    #[test]
    fn bounds_beyond_the_dialect_match_all_or_nothing() {
        /// Holds times 0..=100 only.
        fn small(ts: Timestamp) -> Result<i64, OutOfRange> {
            match ts.millis() {
                ..0 => Err(OutOfRange::Before),
                101.. => Err(OutOfRange::After),
                millis => Ok(millis),
            }
        }
        let bounds = |from: Option<i64>, to: Option<i64>| {
            let ts = |t: Option<i64>| t.map(Timestamp::from_millis);
            stored_bounds(small, ts(from), ts(to))
        };
        assert_eq!(bounds(Some(1), Some(2)), Some((Some(1), Some(2))));
        assert_eq!(bounds(None, None), Some((None, None)));
        // Before the range: a lower bound matches everything, an upper one nothing.
        assert_eq!(bounds(Some(-5), Some(2)), Some((None, Some(2))));
        assert_eq!(bounds(None, Some(-5)), None);
        // After it: a lower bound matches nothing, an upper one everything.
        assert_eq!(bounds(Some(500), None), None);
        assert_eq!(bounds(Some(1), Some(500)), Some((Some(1), None)));
    }
}
