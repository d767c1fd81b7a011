//! The [`KeyStore`] port on SQL, written once for PostgreSQL and SQLite: [`SqlKeyStore`]
//! keeps issued API keys in the `api_keys` table of the analytics database, on the pool of
//! a [`SqlStore`] (whose `connect` opened the database and ran the migrations that create
//! the table: `migrations/postgres/0005_api_keys.sql`, `migrations/sqlite/0006_api_keys.sql`).
//!
//! Contract (checked by `tests/keys_conformance.rs` against both databases):
//! - `create` inserts with `ON CONFLICT (id) DO NOTHING ... RETURNING id`: an id already
//!   stored is [`PortError::Refused`] and changes nothing;
//! - `revoke` sets `revoked_at` only where it is unset (`COALESCE`), so the first
//!   revocation time stands, and says whether the id exists;
//! - `list` reads a tenant's keys ordered by `created_at DESC, id DESC`;
//! - times are the analytics store's ([`Backend::time`]): `timestamptz` on PostgreSQL,
//!   epoch milliseconds on SQLite; scopes are one space-separated string;
//! - errors are classified by the dialect, as the analytics store's are.

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::{ColumnIndex, Database, Decode, Encode, Pool, QueryBuilder, Row, Type};
use tributary_core::Timestamp;
use tributary_core::ports::{KeyStore, PortError, StoredKey, parse_scopes, scopes_to_string};

#[cfg(feature = "postgres")]
use crate::postgres::{PostgresConfig, PostgresStore};
use crate::registry::AnalyticsConfig;
use crate::sql::{Backend, SqlStore};
use crate::sqlite::SqliteStore;

/// What the adapter finds wrong in a stored row or refuses to store.
#[derive(Debug, thiserror::Error)]
enum Invalid {
    /// An id already stored.
    #[error("an API key with id {0:?} already exists")]
    DuplicateId(String),
    /// A hash that is not 32 bytes.
    #[error("the stored hash of API key {0:?} is not 32 bytes")]
    HashLength(String),
    /// A time the database cannot hold.
    #[error("time {0} is outside the range the key store holds")]
    TimeOutOfRange(Timestamp),
}

/// The columns of `api_keys`, in the order every read selects them.
const COLUMNS: &str =
    "id, secret_hash, scopes, tenant, description, created_at, expires_at, revoked_at";

/// API keys in a SQL database. Cheap to clone: clones share the pool.
#[derive(Debug)]
pub struct SqlKeyStore<DB: Database> {
    pool: Pool<DB>,
}

impl<DB: Database> Clone for SqlKeyStore<DB> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
        }
    }
}

impl<DB: Database> SqlKeyStore<DB> {
    /// The key store on the database (and the pool) of `store`.
    #[must_use]
    pub fn new(store: &SqlStore<DB>) -> Self {
        Self {
            pool: store.pool().clone(),
        }
    }
}

/// The key store of the analytics database `config` names, on a pool of its own (opened
/// as the analytics store opens it; at most two connections on PostgreSQL).
///
/// # Errors
/// As the analytics store's `connect`; refused for PostgreSQL in a build without it.
pub async fn connect(config: &AnalyticsConfig) -> Result<Arc<dyn KeyStore>, PortError> {
    Ok(match config {
        AnalyticsConfig::Sqlite(config) => {
            Arc::new(SqlKeyStore::new(&SqliteStore::connect(config).await?))
        }
        #[cfg(feature = "postgres")]
        AnalyticsConfig::Postgres(config) => {
            let config = PostgresConfig {
                max_connections: config.max_connections.min(2),
                ..config.clone()
            };
            Arc::new(SqlKeyStore::new(&PostgresStore::connect(&config).await?))
        }
        #[cfg(not(feature = "postgres"))]
        AnalyticsConfig::Postgres(_) => {
            return Err(crate::registry::LeftOut::new("postgres").refused());
        }
    })
}

/// A sqlx error of `DB` as a [`PortError`].
fn sqlx_error<DB: Backend>(error: sqlx::Error) -> PortError {
    DB::DIALECT.sqlx_error(error)
}

/// `invalid` as a [`PortError::Refused`] of `DB`.
fn refused<DB: Backend>(invalid: Invalid) -> PortError {
    PortError::refused(DB::DIALECT.system, invalid)
}

/// `ts` as `DB` stores it, or refused.
fn time<DB: Backend>(ts: Timestamp) -> Result<DB::Time, PortError> {
    DB::time(ts).map_err(|_| refused::<DB>(Invalid::TimeOutOfRange(ts)))
}

/// An optional time as `DB` stores it.
fn optional_time<DB: Backend>(ts: Option<Timestamp>) -> Result<Option<DB::Time>, PortError> {
    ts.map(time::<DB>).transpose()
}

/// Runs `sql` on a connection of `pool` and returns its rows.
async fn rows<DB: Backend>(
    pool: &Pool<DB>,
    sql: QueryBuilder<'_, DB>,
) -> Result<Vec<DB::Row>, PortError> {
    let mut conn = pool.acquire().await.map_err(sqlx_error::<DB>)?;
    DB::run(&mut conn, sql).await.map_err(sqlx_error::<DB>)
}

/// A row of [`COLUMNS`] as a key.
fn decode<DB>(row: &DB::Row) -> Result<StoredKey, PortError>
where
    DB: Backend,
    usize: ColumnIndex<DB::Row>,
    for<'r> String: Decode<'r, DB> + Type<DB>,
    for<'r> Option<String>: Decode<'r, DB>,
    for<'r> Vec<u8>: Decode<'r, DB> + Type<DB>,
{
    let system = DB::DIALECT.system;
    let id: String = row.try_get(0).map_err(sqlx_error::<DB>)?;
    let hash: Vec<u8> = row.try_get(1).map_err(sqlx_error::<DB>)?;
    let secret_hash = <[u8; 32]>::try_from(hash.as_slice())
        .map_err(|_| PortError::corrupt(system, Invalid::HashLength(id.clone())))?;
    let scopes: String = row.try_get(2).map_err(sqlx_error::<DB>)?;
    let scopes = parse_scopes(&scopes, false).map_err(|e| PortError::corrupt(system, e))?;
    let time_at = |index: usize| -> Result<Option<Timestamp>, PortError> {
        let time: Option<DB::Time> = row.try_get(index).map_err(sqlx_error::<DB>)?;
        Ok(time.map(DB::timestamp))
    };
    let created_at: DB::Time = row.try_get(5).map_err(sqlx_error::<DB>)?;
    Ok(StoredKey {
        id,
        secret_hash,
        scopes,
        tenant: row.try_get(3).map_err(sqlx_error::<DB>)?,
        description: row.try_get(4).map_err(sqlx_error::<DB>)?,
        created_at: DB::timestamp(created_at),
        expires_at: time_at(6)?,
        revoked_at: time_at(7)?,
    })
}

#[async_trait]
impl<DB> KeyStore for SqlKeyStore<DB>
where
    DB: Backend,
    usize: ColumnIndex<DB::Row>,
    for<'r> String: Decode<'r, DB> + Type<DB>,
    for<'r> Option<String>: Decode<'r, DB>,
    for<'r> Vec<u8>: Decode<'r, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB>,
    for<'q> Option<String>: Encode<'q, DB>,
    for<'q> Vec<u8>: Encode<'q, DB>,
    for<'q> Option<DB::Time>: Encode<'q, DB>,
{
    async fn create(&self, key: &StoredKey) -> Result<(), PortError> {
        let mut sql = QueryBuilder::new(format!("INSERT INTO api_keys ({COLUMNS}) VALUES ("));
        let mut values = sql.separated(", ");
        values.push_bind(key.id.clone());
        values.push_bind(key.secret_hash.to_vec());
        values.push_bind(scopes_to_string(&key.scopes));
        values.push_bind(key.tenant.clone());
        values.push_bind(key.description.clone());
        values.push_bind(time::<DB>(key.created_at)?);
        values.push_bind(optional_time::<DB>(key.expires_at)?);
        values.push_bind(optional_time::<DB>(key.revoked_at)?);
        sql.push(") ON CONFLICT (id) DO NOTHING RETURNING id");
        if rows(&self.pool, sql).await?.is_empty() {
            return Err(refused::<DB>(Invalid::DuplicateId(key.id.clone())));
        }
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<StoredKey>, PortError> {
        let mut sql = QueryBuilder::new(format!("SELECT {COLUMNS} FROM api_keys WHERE id = "));
        sql.push_bind(id.to_owned());
        rows(&self.pool, sql)
            .await?
            .first()
            .map(decode::<DB>)
            .transpose()
    }

    async fn list(&self, tenant: &str) -> Result<Vec<StoredKey>, PortError> {
        let mut sql = QueryBuilder::new(format!("SELECT {COLUMNS} FROM api_keys WHERE tenant = "));
        sql.push_bind(tenant.to_owned());
        sql.push(" ORDER BY created_at DESC, id DESC");
        rows(&self.pool, sql)
            .await?
            .iter()
            .map(decode::<DB>)
            .collect()
    }

    async fn revoke(&self, id: &str, at: Timestamp) -> Result<bool, PortError> {
        let mut sql = QueryBuilder::new("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ");
        sql.push_bind(time::<DB>(at)?);
        sql.push(") WHERE id = ");
        sql.push_bind(id.to_owned());
        sql.push(" RETURNING id");
        Ok(!rows(&self.pool, sql).await?.is_empty())
    }
}
