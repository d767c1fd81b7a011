//! Files on the local file system: the [`ReferenceSource`](tributary_core::ports::ReferenceSource)
//! of a lookup whose table is a CSV or NDJSON file.
//!
//! Contract (checked by the tests in `reference.rs`):
//! - each load reads the whole file on a blocking thread and parses it with
//!   `tributary_core::lookup` (CSV: a header line, then cells as text, numbers or `NULL`;
//!   NDJSON: one JSON object per line), so a file replaced between two loads is read anew;
//! - a missing or unreadable file, a malformed line (named by its number) or a file over
//!   `tributary_core::lookup::MAX_FILE_BYTES` bytes or `MAX_ROWS` rows is
//!   `PortError::Refused`, with the path and the cause.

mod reference;

pub use reference::{FileError, FileReference};
