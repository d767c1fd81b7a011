//! How the MongoDB driver's errors map to [`PortError`].
//!
//! [`PortError::Refused`] from `put_events` tells the archive that an event can never be
//! stored: it retries the batch event by event and skips the events still refused. So only
//! errors known to concern the content of a document are `Refused`; every other error,
//! including server codes not listed here, is [`PortError::Unavailable`], which restarts the
//! caller from its last checkpoint instead of losing events.

use ::mongodb::error::{Error, ErrorKind, InsertManyError, RETRYABLE_WRITE_ERROR, WriteFailure};
use tributary_core::ports::PortError;

/// The system name carried by this adapter's errors.
pub(crate) const SYSTEM: &str = "mongodb";

/// MongoDB's duplicate key error code.
pub(crate) const DUPLICATE_KEY: i32 = 11000;

/// BadValue: FerretDB's code for invalid keys and nested arrays, as a write error. As a
/// command's error it is generic (a bad option, say), so there it is not a document's fault.
const BAD_VALUE: i32 = 2;

/// Server error codes that name a fault in the content of one document: the same document
/// is refused again whatever the server's state. FerretDB answers a NUL character in a
/// string with `InternalError` (1), its code for any failure of its PostgreSQL backend, so
/// that one cannot be listed: the adapter refuses NULs before writing instead.
const DOCUMENT_CODES: &[i32] = &[
    BAD_VALUE,
    22,    // InvalidBSON
    52,    // DollarPrefixedFieldName
    53,    // InvalidIdField
    55,    // InvalidDBRef
    56,    // EmptyFieldName
    57,    // DottedFieldName
    10334, // BSONObjectTooLarge
    17280, // KeyTooLong: an index key over 1024 bytes (MongoDB before 4.2)
    DUPLICATE_KEY,
];

/// Server error codes by which a server refuses to create an index it does not support.
const INDEX_REFUSED_CODES: &[i32] = &[
    2,   // BadValue
    59,  // CommandNotFound
    67,  // CannotCreateIndex
    85,  // IndexOptionsConflict
    86,  // IndexKeySpecsConflict
    197, // InvalidIndexSpecificationOption
    238, // NotImplemented: FerretDB's code for what it does not support
];

/// Classifies a driver error:
/// - [`PortError::Unavailable`] for errors the driver labels retryable;
/// - [`PortError::Refused`] for server errors whose codes are all in [`DOCUMENT_CODES`], for
///   requests the driver refuses before sending them (an invalid URL or argument such as a
///   document over the server's size limit, a document it cannot encode) and for an invalid
///   TLS configuration;
/// - [`PortError::Corrupt`] for replies the driver cannot decode;
/// - [`PortError::Unavailable`] for everything else: network trouble, server selection
///   timeouts, write concern errors, failed authentication (credentials can be fixed while
///   Tributary runs) and any server code not listed, such as FerretDB's `InternalError`
///   for a failure of its PostgreSQL backend.
pub(crate) fn mongo_error(error: Error) -> PortError {
    if error.contains_label(RETRYABLE_WRITE_ERROR) {
        return PortError::unavailable(SYSTEM, error);
    }
    match &*error.kind {
        ErrorKind::InvalidArgument { .. }
        | ErrorKind::BsonSerialization(_)
        | ErrorKind::InvalidTlsConfig { .. } => PortError::refused(SYSTEM, error),
        ErrorKind::BsonDeserialization(_) | ErrorKind::InvalidResponse { .. } => {
            PortError::corrupt(SYSTEM, error)
        }
        _ if concerns_documents(&error) => PortError::refused(SYSTEM, error),
        _ => PortError::unavailable(SYSTEM, error),
    }
}

/// Whether the server refused the request only for the content of its documents.
fn concerns_documents(error: &Error) -> bool {
    let codes: Vec<i32> = match &*error.kind {
        ErrorKind::Command(command) if command.code == BAD_VALUE => return false,
        ErrorKind::Command(command) => vec![command.code],
        ErrorKind::Write(WriteFailure::WriteError(write)) => vec![write.code],
        ErrorKind::InsertMany(InsertManyError {
            write_errors: Some(errors),
            write_concern_error: None,
            ..
        }) => errors.iter().map(|e| e.code).collect(),
        _ => return false,
    };
    !codes.is_empty() && codes.iter().all(|code| DOCUMENT_CODES.contains(code))
}

/// Whether the server refused to create an index because it does not support it.
pub(crate) fn refuses_index(error: &Error) -> bool {
    matches!(&*error.kind, ErrorKind::Command(command) if INDEX_REFUSED_CODES.contains(&command.code))
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

#[cfg(test)]
mod tests {
    use ::mongodb::bson::{self, Document, doc};
    use ::mongodb::error::{CommandError, WriteError};

    use super::*;

    /// A top-level server error with `code`, as the driver decodes it from a reply.
    fn command(code: i32) -> Error {
        let reply = doc! { "code": code, "codeName": "Test", "errmsg": "test" };
        let command: CommandError = bson::from_document(reply).unwrap();
        Error::from(ErrorKind::Command(command))
    }

    /// An unordered `insert_many` whose documents failed with `codes`.
    fn insert_many(codes: &[i32], write_concern_failed: bool) -> Error {
        let errors: Vec<Document> = codes
            .iter()
            .zip(0_i32..)
            .map(|(&code, index)| doc! { "index": index, "code": code, "errmsg": "test" })
            .collect();
        let mut reply = doc! { "writeErrors": errors };
        if write_concern_failed {
            reply.insert("writeConcernError", doc! { "code": 64, "errmsg": "test" });
        }
        let failure: InsertManyError = bson::from_document(reply).unwrap();
        Error::from(ErrorKind::InsertMany(failure))
    }

    fn is_refused(error: Error) -> bool {
        matches!(mongo_error(error), PortError::Refused { .. })
    }

    fn is_unavailable(error: Error) -> bool {
        matches!(mongo_error(error), PortError::Unavailable { .. })
    }

    #[test]
    fn document_faults_are_refused() {
        // FerretDB's replies to a `$`-prefixed key, a nested array and an array `_id`.
        assert!(is_refused(insert_many(&[2], false)));
        assert!(is_refused(insert_many(&[53, 2], false)));
        // Duplicates mixed with a bad document: retried one by one, the duplicates pass.
        assert!(is_refused(insert_many(&[DUPLICATE_KEY, 10334], false)));
        assert!(is_refused(command(10334)));
        let write: WriteError = bson::from_document(doc! { "code": 57, "errmsg": "t" }).unwrap();
        assert!(is_refused(Error::from(ErrorKind::Write(
            WriteFailure::WriteError(write)
        ))));
    }

    #[test]
    fn unlisted_server_codes_are_unavailable() {
        // FerretDB's InternalError (a PostgreSQL failure), Unauthorized, CommandNotFound, and
        // codes this adapter has never heard of.
        for code in [1, 13, 59, 11602, 424_242] {
            assert!(is_unavailable(command(code)), "code {code}");
            assert!(is_unavailable(insert_many(&[code], false)), "code {code}");
        }
        // One document's fault does not make a transient failure of another one refusable.
        assert!(is_unavailable(insert_many(&[2, 1], false)));
        // BadValue refuses a document only as a write error; a command's is generic.
        assert!(is_unavailable(command(2)));
        // A write concern failure is the server's, whatever the write errors say.
        assert!(is_unavailable(insert_many(&[2], true)));
        assert!(is_unavailable(insert_many(&[], true)));
    }

    #[test]
    fn network_errors_are_unavailable() {
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(is_unavailable(Error::from(reset)));
    }

    #[tokio::test]
    async fn invalid_urls_are_refused() {
        let error = ::mongodb::options::ClientOptions::parse("mongodb://")
            .await
            .unwrap_err();
        assert!(is_refused(error));
    }

    #[test]
    fn unsupported_indexes_are_told_apart() {
        assert!(refuses_index(&command(238)));
        assert!(refuses_index(&command(67)));
        assert!(!refuses_index(&command(1)));
        assert!(!refuses_index(&Error::from(std::io::Error::from(
            std::io::ErrorKind::TimedOut
        ))));
    }

    #[test]
    fn only_duplicates_are_told_apart() {
        assert_eq!(
            only_duplicate_keys(&insert_many(&[DUPLICATE_KEY; 2], false)),
            Some(2)
        );
        assert_eq!(
            only_duplicate_keys(&insert_many(&[DUPLICATE_KEY, 2], false)),
            None
        );
    }
}
