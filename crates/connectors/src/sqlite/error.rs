//! SQLite's [`Dialect`]: how its errors map to [`PortError`], its SQL fragments and column
//! types.

use sqlx::error::DatabaseError;
use tributary_core::ports::PortError;

use crate::sql::{Class, Dialect, SqlType};

/// The system name carried by this adapter's errors.
pub(crate) const SYSTEM: &str = "sqlite";

/// The dialect: the shared SQL error mapping and checks, with SQLite's names. Writers begin
/// `IMMEDIATE`, taking the database's write lock at once, so claims, commits and schema
/// changes serialize on it and need no row lock; keys compare bytewise (BINARY collation).
pub(crate) const DIALECT: Dialect = Dialect {
    system: SYSTEM,
    integer: "SQLite integer",
    classify: classify_database,
    tls_is_transient: false,
    begin: "BEGIN IMMEDIATE",
    lock_row: "",
    json: "TEXT",
    bytewise: "",
    index_names: true,
    types: column_type,
    columns: ["SELECT name, type FROM pragma_table_info(", ")"],
    lock_table: None,
};

/// The declared type of a column of each kind: times are epoch milliseconds, booleans 0 or
/// 1.
fn column_type(ty: SqlType) -> &'static str {
    match ty {
        SqlType::Time | SqlType::Int | SqlType::Bool => "INTEGER",
        SqlType::Float => "REAL",
        SqlType::Text => "TEXT",
        SqlType::Bytes => "BLOB",
    }
}

/// Classifies a sqlx error: a busy or locked database, I/O trouble and a full disk are
/// [`PortError::Unavailable`]; a corrupt file and undecodable rows are
/// [`PortError::Corrupt`]; the rest (constraints, bad SQL values) is [`PortError::Refused`].
pub(crate) fn sqlx_error(error: sqlx::Error) -> PortError {
    DIALECT.sqlx_error(error)
}

/// Classifies a migration error: a failing statement is classified like any sqlx error; a
/// database whose applied migrations differ from ours is [`PortError::Corrupt`].
pub(crate) fn migrate_error(error: sqlx::migrate::MigrateError) -> PortError {
    DIALECT.migrate_error(error)
}

/// Classifies an error SQLite reports by its (possibly extended) result code.
fn classify_database(error: &dyn DatabaseError) -> Class {
    match error.code().and_then(|c| c.parse::<i32>().ok()) {
        Some(code) if is_transient(code) => Class::Unavailable,
        Some(code) if is_corrupt(code) => Class::Corrupt,
        _ => Class::Refused,
    }
}

/// Primary result codes worth retrying: BUSY (5), LOCKED (6), NOMEM (7), IOERR (10),
/// FULL (13), CANTOPEN (14), PROTOCOL (15). `code` may be an extended code.
fn is_transient(code: i32) -> bool {
    matches!(code & 0xff, 5 | 6 | 7 | 10 | 13 | 14 | 15)
}

/// Primary result codes of a damaged file: CORRUPT (11), NOTADB (26).
fn is_corrupt(code: i32) -> bool {
    matches!(code & 0xff, 11 | 26)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_codes() {
        assert!(is_transient(5));
        assert!(is_transient(517)); // SQLITE_BUSY_SNAPSHOT
        assert!(is_transient(266)); // SQLITE_IOERR_READ
        assert!(!is_transient(1555)); // SQLITE_CONSTRAINT_PRIMARYKEY
        assert!(is_corrupt(11));
        assert!(!is_corrupt(19));
    }
}
