//! How the MongoDB driver's errors map to [`PortError`].

use ::mongodb::error::{Error, ErrorKind, InsertManyError, RETRYABLE_WRITE_ERROR, WriteFailure};
use tributary_core::ports::PortError;

/// The system name carried by this adapter's errors.
pub(crate) const SYSTEM: &str = "mongodb";

/// MongoDB's duplicate key error code.
pub(crate) const DUPLICATE_KEY: i32 = 11000;

/// Server error codes worth retrying: unreachable or shutting-down hosts, elections,
/// time limits, socket errors.
const TRANSIENT_CODES: &[i32] = &[
    6,     // HostUnreachable
    7,     // HostNotFound
    50,    // MaxTimeMSExpired
    89,    // NetworkTimeout
    91,    // ShutdownInProgress
    189,   // PrimarySteppedDown
    262,   // ExceededTimeLimit
    9001,  // SocketException
    10107, // NotWritablePrimary
    11600, // InterruptedAtShutdown
    11602, // InterruptedDueToReplStateChange
    13435, // NotPrimaryNoSecondaryOk
    13436, // NotPrimaryOrSecondary
];

/// Classifies a driver error: network trouble, server selection timeouts and transient
/// server states are [`PortError::Unavailable`]; replies the driver cannot decode are
/// [`PortError::Corrupt`]; the rest (bad documents, authentication, unsupported commands)
/// is [`PortError::Refused`].
pub(crate) fn mongo_error(error: Error) -> PortError {
    if error.contains_label(RETRYABLE_WRITE_ERROR) {
        return PortError::unavailable(SYSTEM, error);
    }
    match &*error.kind {
        ErrorKind::Io(_)
        | ErrorKind::ServerSelection { .. }
        | ErrorKind::ConnectionPoolCleared { .. }
        | ErrorKind::DnsResolve { .. }
        | ErrorKind::Write(WriteFailure::WriteConcernError(_))
        | ErrorKind::InsertMany(InsertManyError {
            write_concern_error: Some(_),
            ..
        }) => PortError::unavailable(SYSTEM, error),
        ErrorKind::Command(command) if TRANSIENT_CODES.contains(&command.code) => {
            PortError::unavailable(SYSTEM, error)
        }
        ErrorKind::BsonDeserialization(_) | ErrorKind::InvalidResponse { .. } => {
            PortError::corrupt(SYSTEM, error)
        }
        _ => PortError::refused(SYSTEM, error),
    }
}

/// Whether an `insert_many` failed only because some documents were stored already.
pub(crate) fn only_duplicate_keys(error: &Error) -> Option<usize> {
    match &*error.kind {
        ErrorKind::InsertMany(InsertManyError {
            write_errors: Some(errors),
            write_concern_error: None,
            ..
        }) if errors.iter().all(|e| e.code == DUPLICATE_KEY) => Some(errors.len()),
        _ => None,
    }
}
