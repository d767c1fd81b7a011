//! How sqlx's SQLite errors map to [`PortError`].

use tributary_core::ports::PortError;

/// The system name carried by this adapter's errors.
pub(crate) const SYSTEM: &str = "sqlite";

/// Classifies a sqlx error: a busy or locked database, I/O trouble and a full disk are
/// [`PortError::Unavailable`]; a corrupt file and undecodable rows are
/// [`PortError::Corrupt`]; the rest (constraints, bad SQL values) is [`PortError::Refused`].
pub(crate) fn sqlx_error(error: sqlx::Error) -> PortError {
    match &error {
        sqlx::Error::Io(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed => PortError::unavailable(SYSTEM, error),
        sqlx::Error::Database(db) => match db.code().and_then(|c| c.parse::<i32>().ok()) {
            Some(code) if is_transient(code) => PortError::unavailable(SYSTEM, error),
            Some(code) if is_corrupt(code) => PortError::corrupt(SYSTEM, error),
            _ => PortError::refused(SYSTEM, error),
        },
        sqlx::Error::RowNotFound
        | sqlx::Error::TypeNotFound { .. }
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_) => PortError::corrupt(SYSTEM, error),
        _ => PortError::refused(SYSTEM, error),
    }
}

/// Classifies a migration error: a failing statement is classified like any sqlx error; a
/// database whose applied migrations differ from ours is [`PortError::Corrupt`].
pub(crate) fn migrate_error(error: sqlx::migrate::MigrateError) -> PortError {
    use sqlx::migrate::MigrateError;
    match error {
        MigrateError::Execute(inner) | MigrateError::ExecuteMigration(inner, _) => {
            sqlx_error(inner)
        }
        MigrateError::VersionMismatch(_)
        | MigrateError::VersionMissing(_)
        | MigrateError::Dirty(_) => PortError::corrupt(SYSTEM, error),
        _ => PortError::refused(SYSTEM, error),
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
