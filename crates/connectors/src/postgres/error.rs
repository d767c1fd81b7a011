//! PostgreSQL's [`Dialect`]: how its errors map to [`PortError`], its SQL fragments and
//! column types.

use sqlx::error::DatabaseError;
use tributary_core::ports::PortError;

use crate::sql::{Class, Dialect, SqlType};

/// The system name carried by this adapter's errors.
pub(crate) const SYSTEM: &str = "postgres";

/// The dialect: the shared SQL error mapping and checks, with PostgreSQL's names. Commits
/// lock the owner row (`FOR UPDATE`); result keys use the "C" collation, so that they order
/// bytewise as in SQLite and Rust, whatever the database's locale.
pub(crate) const DIALECT: Dialect = Dialect {
    system: SYSTEM,
    integer: "PostgreSQL bigint",
    classify: classify_database,
    tls_is_transient: true,
    begin: "BEGIN",
    lock_row: " FOR UPDATE",
    json: "jsonb",
    bytewise: " COLLATE \"C\"",
    index_names: false,
    types: column_type,
    columns: [
        "SELECT column_name::text, data_type::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = ",
        "",
    ],
    // Two processes preparing one table take turns, where `CREATE TABLE IF NOT EXISTS`
    // alone may fail in both.
    lock_table: Some(["SELECT pg_advisory_xact_lock(hashtext(", "))"]),
};

/// The type of a column of each kind, as `information_schema.columns.data_type` spells it.
fn column_type(ty: SqlType) -> &'static str {
    match ty {
        SqlType::Time => "timestamp with time zone",
        SqlType::Int => "bigint",
        SqlType::Float => "double precision",
        SqlType::Text => "text",
        SqlType::Bool => "boolean",
        SqlType::Bytes => "bytea",
    }
}

/// Classifies a sqlx error: connection trouble and transient server states are
/// [`PortError::Unavailable`], undecodable rows are [`PortError::Corrupt`], the rest (bad
/// data, constraint violations, configuration) is [`PortError::Refused`].
pub(crate) fn sqlx_error(error: sqlx::Error) -> PortError {
    DIALECT.sqlx_error(error)
}

/// Classifies a migration error: a failing statement is classified like any sqlx error; a
/// database whose applied migrations differ from ours is [`PortError::Corrupt`].
pub(crate) fn migrate_error(error: sqlx::migrate::MigrateError) -> PortError {
    DIALECT.migrate_error(error)
}

/// A transient SQLSTATE is worth retrying; any other error PostgreSQL reports is refused.
fn classify_database(error: &dyn DatabaseError) -> Class {
    if error.code().as_deref().is_some_and(is_transient_sqlstate) {
        Class::Unavailable
    } else {
        Class::Refused
    }
}

/// SQLSTATEs worth retrying: connection exceptions (08), serialization failures and
/// deadlocks (40), insufficient resources (53), operator intervention such as a shutdown
/// (57) and system errors (58).
fn is_transient_sqlstate(code: &str) -> bool {
    ["08", "40", "53", "57", "58"]
        .iter()
        .any(|class| code.starts_with(class))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstate_classes() {
        assert!(is_transient_sqlstate("40001"));
        assert!(is_transient_sqlstate("57P01"));
        assert!(is_transient_sqlstate("08006"));
        assert!(!is_transient_sqlstate("23505"));
        assert!(!is_transient_sqlstate("22021"));
    }

    #[test]
    fn pool_timeouts_are_retryable_and_decode_errors_corrupt() {
        assert!(sqlx_error(sqlx::Error::PoolTimedOut).is_retryable());
        assert!(matches!(
            sqlx_error(sqlx::Error::Decode("bad".into())),
            PortError::Corrupt { .. }
        ));
        assert!(matches!(
            sqlx_error(sqlx::Error::Configuration("bad url".into())),
            PortError::Refused { .. }
        ));
    }
}
