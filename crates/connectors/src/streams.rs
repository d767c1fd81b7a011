//! The stream catalog's adapters: [`SqlStreamStore`], the [`StreamStore`] port on SQL
//! (written once for PostgreSQL and SQLite, in the `streams` table of the analytics
//! database: `migrations/postgres/0006_streams.sql`, `migrations/sqlite/0007_streams.sql`),
//! and the [`StreamTopics`] port on Kafka ([`KafkaTopics`]) and on the embedded log
//! ([`EmbeddedTopics`]).
//!
//! Contract (checked by `tests/streams_conformance.rs` against both databases, and by the
//! distributed end-to-end test against Kafka):
//! - a row's `name` is the stream's identity, unique across tenants, stored as given: a
//!   stream that a tenant other than `default` created through the API is identified by its
//!   name and its tenant's tag, which the gateway adds and removes (`tributary_gateway::
//!   catalog`, "Names"); the tenant's namespaces need no column of their own;
//! - `create` inserts with `ON CONFLICT (name) DO NOTHING ... RETURNING name`: a name
//!   already stored is [`PortError::Refused`] and changes nothing;
//! - `upsert_config` inserts, or updates only the config's fields (`ON CONFLICT DO UPDATE`);
//! - times are the analytics store's (`timestamptz` on PostgreSQL, epoch milliseconds on
//!   SQLite); the schema is stored as JSON text;
//! - [`KafkaTopics`] creates a topic with the stream's partitions, replication factor and
//!   `retention.ms` (and `max.message.bytes` as the log sets it), alters `retention.ms`
//!   (AlterConfigs, which sets the topic's whole config: both are sent every time), adds
//!   partitions (CreatePartitions) and deletes the topic; the log's cached partition count is
//!   refreshed after each change. A setting the brokers refuse (a replication factor above
//!   the number of brokers, a retention out of range) is a [`TopicError::Invalid`] with
//!   the broker's reason;
//! - [`EmbeddedTopics`]: partitions fixed at creation, retention stored but not applied (the
//!   embedded log keeps everything), and a deleted stream's records kept in the log file.

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::{ColumnIndex, Database, Decode, Encode, Pool, QueryBuilder, Row, Type};
use tributary_core::ports::{
    Log, PortError, StoredStream, StreamOrigin, StreamStore, StreamTopics, TopicCapabilities,
    TopicError, TopicSpec,
};
use tributary_core::{StreamName, Timestamp};

#[cfg(feature = "kafka")]
pub use crate::kafka::KafkaTopics;
use crate::registry::LogConfig;
use crate::sql::{Backend, SqlStore};

/// What the adapter finds wrong in a stored row or refuses to store.
#[derive(Debug, thiserror::Error)]
enum Invalid {
    /// A name already stored.
    #[error("a stream named {0:?} already exists")]
    DuplicateName(String),
    /// A stored name that is not a stream name.
    #[error("the stored stream name {0:?} is invalid")]
    Name(String),
    /// A stored number out of range.
    #[error("the stored {field} of stream {name:?} is out of range")]
    Number { name: String, field: &'static str },
    /// A stored schema that is not JSON.
    #[error("the stored schema of stream {0:?} is not JSON")]
    Schema(String),
    /// A time the database cannot hold.
    #[error("time {0} is outside the range the stream store holds")]
    TimeOutOfRange(Timestamp),
}

/// The columns of `streams`, in the order every read selects them.
const COLUMNS: &str = "name, tenant, partitions, replication_factor, retention_ms, schema, \
                       description, origin, created_at, updated_at";

/// Streams in a SQL database. Cheap to clone: clones share the pool.
#[derive(Debug)]
pub struct SqlStreamStore<DB: Database> {
    pool: Pool<DB>,
}

impl<DB: Database> Clone for SqlStreamStore<DB> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
        }
    }
}

impl<DB: Database> SqlStreamStore<DB> {
    /// The stream store on the database (and the pool) of `store`.
    #[must_use]
    pub fn new(store: &SqlStore<DB>) -> Self {
        Self {
            pool: store.pool().clone(),
        }
    }
}

fn sqlx_error<DB: Backend>(error: sqlx::Error) -> PortError {
    DB::DIALECT.sqlx_error(error)
}

fn refused<DB: Backend>(invalid: Invalid) -> PortError {
    PortError::refused(DB::DIALECT.system, invalid)
}

fn corrupt<DB: Backend>(invalid: Invalid) -> PortError {
    PortError::corrupt(DB::DIALECT.system, invalid)
}

fn time<DB: Backend>(ts: Timestamp) -> Result<DB::Time, PortError> {
    DB::time(ts).map_err(|_| refused::<DB>(Invalid::TimeOutOfRange(ts)))
}

async fn rows<DB: Backend>(
    pool: &Pool<DB>,
    sql: QueryBuilder<'_, DB>,
) -> Result<Vec<DB::Row>, PortError> {
    let mut conn = pool.acquire().await.map_err(sqlx_error::<DB>)?;
    DB::run(&mut conn, sql).await.map_err(sqlx_error::<DB>)
}

/// A row of [`COLUMNS`] as a stream.
fn decode<DB>(row: &DB::Row) -> Result<StoredStream, PortError>
where
    DB: Backend,
    usize: ColumnIndex<DB::Row>,
    for<'r> String: Decode<'r, DB> + Type<DB>,
    for<'r> Option<String>: Decode<'r, DB>,
    for<'r> i64: Decode<'r, DB> + Type<DB>,
    for<'r> Option<i64>: Decode<'r, DB>,
{
    let get_err = sqlx_error::<DB>;
    let raw: String = row.try_get(0).map_err(get_err)?;
    let name =
        StreamName::new(raw.clone()).map_err(|_| corrupt::<DB>(Invalid::Name(raw.clone())))?;
    let number = |field| {
        corrupt::<DB>(Invalid::Number {
            name: raw.clone(),
            field,
        })
    };
    let partitions: i64 = row.try_get(2).map_err(get_err)?;
    let partitions = u32::try_from(partitions).map_err(|_| number("partitions"))?;
    let replication: Option<i64> = row.try_get(3).map_err(get_err)?;
    let replication_factor = replication
        .map(i32::try_from)
        .transpose()
        .map_err(|_| number("replication_factor"))?;
    let schema: Option<String> = row.try_get(5).map_err(get_err)?;
    let schema = schema
        .map(|text| serde_json::from_str(&text))
        .transpose()
        .map_err(|_| corrupt::<DB>(Invalid::Schema(raw.clone())))?;
    let origin: String = row.try_get(7).map_err(get_err)?;
    let origin = origin
        .parse::<StreamOrigin>()
        .map_err(|e| PortError::corrupt(DB::DIALECT.system, e))?;
    let created_at: DB::Time = row.try_get(8).map_err(get_err)?;
    let updated_at: DB::Time = row.try_get(9).map_err(get_err)?;
    Ok(StoredStream {
        name,
        tenant: row.try_get(1).map_err(get_err)?,
        partitions,
        replication_factor,
        retention_ms: row.try_get(4).map_err(get_err)?,
        schema,
        description: row.try_get(6).map_err(get_err)?,
        origin,
        created_at: DB::timestamp(created_at),
        updated_at: DB::timestamp(updated_at),
    })
}

/// Binds the values of every column of `stream`, in [`COLUMNS`]' order.
fn bind_all<'a, DB>(sql: &mut QueryBuilder<'a, DB>, stream: &StoredStream) -> Result<(), PortError>
where
    DB: Backend,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> Option<String>: Encode<'q, DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB>,
{
    let mut values = sql.separated(", ");
    values.push_bind(stream.name.as_str().to_owned());
    values.push_bind(stream.tenant.clone());
    values.push_bind(i64::from(stream.partitions));
    values.push_bind(stream.replication_factor.map(i64::from));
    values.push_bind(stream.retention_ms);
    values.push_bind(stream.schema.as_ref().map(ToString::to_string));
    values.push_bind(stream.description.clone());
    values.push_bind(stream.origin.as_str().to_owned());
    values.push_bind(time::<DB>(stream.created_at)?);
    values.push_bind(time::<DB>(stream.updated_at)?);
    Ok(())
}

#[async_trait]
impl<DB> StreamStore for SqlStreamStore<DB>
where
    DB: Backend,
    usize: ColumnIndex<DB::Row>,
    for<'r> String: Decode<'r, DB> + Type<DB>,
    for<'r> Option<String>: Decode<'r, DB>,
    for<'r> i64: Decode<'r, DB> + Type<DB>,
    for<'r> Option<i64>: Decode<'r, DB>,
    for<'q> String: Encode<'q, DB>,
    for<'q> Option<String>: Encode<'q, DB>,
    for<'q> i64: Encode<'q, DB>,
    for<'q> Option<i64>: Encode<'q, DB>,
{
    async fn create(&self, stream: &StoredStream) -> Result<(), PortError> {
        let mut sql = QueryBuilder::new(format!("INSERT INTO streams ({COLUMNS}) VALUES ("));
        bind_all(&mut sql, stream)?;
        sql.push(") ON CONFLICT (name) DO NOTHING RETURNING name");
        if rows(&self.pool, sql).await?.is_empty() {
            return Err(refused::<DB>(Invalid::DuplicateName(
                stream.name.as_str().to_owned(),
            )));
        }
        Ok(())
    }

    async fn upsert_config(&self, stream: &StoredStream) -> Result<(), PortError> {
        let mut sql = QueryBuilder::new(format!("INSERT INTO streams ({COLUMNS}) VALUES ("));
        bind_all(&mut sql, stream)?;
        sql.push(
            ") ON CONFLICT (name) DO UPDATE SET partitions = excluded.partitions, \
             description = excluded.description, tenant = excluded.tenant, \
             origin = excluded.origin, updated_at = excluded.updated_at",
        );
        rows(&self.pool, sql).await.map(drop)
    }

    async fn get(&self, name: &StreamName) -> Result<Option<StoredStream>, PortError> {
        let mut sql = QueryBuilder::new(format!("SELECT {COLUMNS} FROM streams WHERE name = "));
        sql.push_bind(name.as_str().to_owned());
        rows(&self.pool, sql)
            .await?
            .first()
            .map(decode::<DB>)
            .transpose()
    }

    async fn list(&self) -> Result<Vec<StoredStream>, PortError> {
        let sql = QueryBuilder::new(format!("SELECT {COLUMNS} FROM streams ORDER BY name"));
        rows(&self.pool, sql)
            .await?
            .iter()
            .map(decode::<DB>)
            .collect()
    }

    async fn update(&self, stream: &StoredStream) -> Result<bool, PortError> {
        let mut sql = QueryBuilder::new("UPDATE streams SET tenant = ");
        sql.push_bind(stream.tenant.clone());
        sql.push(", partitions = ");
        sql.push_bind(i64::from(stream.partitions));
        sql.push(", replication_factor = ");
        sql.push_bind(stream.replication_factor.map(i64::from));
        sql.push(", retention_ms = ");
        sql.push_bind(stream.retention_ms);
        sql.push(", schema = ");
        sql.push_bind(stream.schema.as_ref().map(ToString::to_string));
        sql.push(", description = ");
        sql.push_bind(stream.description.clone());
        sql.push(", origin = ");
        sql.push_bind(stream.origin.as_str().to_owned());
        sql.push(", updated_at = ");
        sql.push_bind(time::<DB>(stream.updated_at)?);
        sql.push(" WHERE name = ");
        sql.push_bind(stream.name.as_str().to_owned());
        sql.push(" RETURNING name");
        Ok(!rows(&self.pool, sql).await?.is_empty())
    }

    async fn delete(&self, name: &StreamName) -> Result<bool, PortError> {
        let mut sql = QueryBuilder::new("DELETE FROM streams WHERE name = ");
        sql.push_bind(name.as_str().to_owned());
        sql.push(" RETURNING name");
        Ok(!rows(&self.pool, sql).await?.is_empty())
    }
}

/// The [`StreamTopics`] of the log `config` names, over `log` (the log built from it).
///
/// # Errors
/// When the Kafka admin client cannot be created, or Kafka is left out of this build.
pub fn topics(config: &LogConfig, log: Arc<dyn Log>) -> Result<Arc<dyn StreamTopics>, PortError> {
    Ok(match config {
        LogConfig::Embedded(_) => Arc::new(EmbeddedTopics { log }),
        #[cfg(feature = "kafka")]
        LogConfig::Kafka(kafka) => Arc::new(KafkaTopics::new(kafka, log)?),
        #[cfg(not(feature = "kafka"))]
        LogConfig::Kafka(_) => return Err(crate::registry::LeftOut::new("kafka").refused()),
    })
}

/// The embedded log's side of streams: streams are created with their partitions, which
/// are fixed; retention is not applied; deleting keeps the records.
#[derive(Debug, Clone)]
pub struct EmbeddedTopics {
    log: Arc<dyn Log>,
}

impl EmbeddedTopics {
    /// Over the embedded `log`.
    #[must_use]
    pub fn new(log: Arc<dyn Log>) -> Self {
        Self { log }
    }
}

#[async_trait]
impl StreamTopics for EmbeddedTopics {
    fn capabilities(&self) -> TopicCapabilities {
        TopicCapabilities {
            add_partitions: false,
            retention: false,
            replication: false,
            delete_records: false,
        }
    }

    fn default_replication_factor(&self) -> Option<i32> {
        None
    }

    async fn create(&self, spec: &TopicSpec) -> Result<u32, TopicError> {
        Ok(self.log.ensure_stream(&spec.name, spec.partitions).await?)
    }

    async fn alter(&self, _spec: &TopicSpec) -> Result<(), TopicError> {
        Ok(())
    }

    async fn delete(&self, _name: &StreamName) -> Result<(), TopicError> {
        Ok(())
    }
}
