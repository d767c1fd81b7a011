//! How sqlx's PostgreSQL errors map to [`PortError`].

use tributary_core::ports::PortError;

/// The system name carried by this adapter's errors.
pub(crate) const SYSTEM: &str = "postgres";

/// Classifies a sqlx error: connection trouble and transient server states are
/// [`PortError::Unavailable`], undecodable rows are [`PortError::Corrupt`], the rest (bad
/// data, constraint violations, configuration) is [`PortError::Refused`].
pub(crate) fn sqlx_error(error: sqlx::Error) -> PortError {
    match &error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed => PortError::unavailable(SYSTEM, error),
        sqlx::Error::Database(db) if db.code().as_deref().is_some_and(is_transient_sqlstate) => {
            PortError::unavailable(SYSTEM, error)
        }
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
