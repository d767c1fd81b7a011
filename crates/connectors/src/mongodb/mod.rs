//! The [`DocumentStore`](tributary_core::ports::DocumentStore) port on MongoDB, through the
//! official driver; tested against FerretDB 1.24 (the MongoDB wire protocol on PostgreSQL).
//!
//! Contract (checked by `tests/document_conformance.rs`, which runs the same scenarios
//! against [`SqliteStore`](crate::sqlite::SqliteStore)):
//! - [`MongoStore::connect`] pings the server and fails with `PortError::Unavailable`
//!   within about ten seconds when none answers;
//! - one collection per stream, `events_{stream}`, holding
//!   `{ _id: event id, ts: BSON date (epoch ms), key: string (absent when none), payload:
//!   document }`, with an index on `{ts: -1, _id: -1}` created on the first write of each
//!   process (a server that does not support it is logged, and reads scan; any other
//!   failure to create it is logged and retried at the next write, never failing the write);
//! - `put_events` is idempotent and keeps the first stored version: unordered
//!   `insert_many`s whose duplicate key errors (code 11000, and only those) are ignored, so
//!   of two events with the same id in one batch the first wins, as in SQLite. A batch is
//!   encoded straight to BSON bytes, then inserted in parts of about 250 events, 4 at once
//!   (the server's per-document work then runs on several connections), split by a hash of
//!   the id so that events with the same id share a part, in their order;
//! - the gateway's queries (`recent_events`, `get_event`, `recent_dead_letters`) run within
//!   `query_timeout` (server selection included) through the store's circuit breaker
//!   (`crate::breaker`): after the server failed one, they fail at once for `cool_down`;
//!   the engine's calls are not guarded;
//! - `recent_events` pages newest first, sorted `{ts: -1, _id: -1}`, resuming after the
//!   cursor with `{$or: [{ts: {$lt: t}}, {ts: t, _id: {$lt: id}}]}`; ids compare as BSON
//!   strings (bytewise), as in SQLite and PostgreSQL;
//! - dead letters in the collection `dead_letters`: `{ _id: id, at: BSON date, stream,
//!   origin: document (the `Origin`'s serde form), reason, raw, truncated: bool }`, indexed,
//!   stored and paged as the events are, with `at` for `ts`. FerretDB cannot store NUL
//!   characters, so the adapter stores each NUL of a dead letter's id, stream, reason and
//!   raw text as U+FFFD, on MongoDB too: a dead letter is never refused for its content.
//!   `prune_dead_letters` is one `delete_many` with `{at: {$lt: date}}`, not a TTL index
//!   (FerretDB's support for one is uncertain, and SQLite needs the same prune anyway).
//!
//! Limits: the adapter refuses, with `PortError::Refused` naming the event and the path of
//! the value, and before writing anything of the batch, what MongoDB and FerretDB 1.x cannot
//! both store, so that behaviour does not depend on the server:
//! - field names containing `.` or starting with `$` (FerretDB refuses both; MongoDB 5+
//!   stores them but cannot query them);
//! - arrays directly inside arrays (FerretDB 1.x);
//! - NUL characters in strings, field names, ids and keys (FerretDB; BSON field names);
//! - integers above `i64::MAX` (BSON has no unsigned 64-bit integer).
//!
//! Of the server's errors, only those known to concern one document's content are
//! `PortError::Refused` (the codes are listed in `error.rs`); any other, known or not, is
//! `PortError::Unavailable`, so that a failure of the server cannot pass for a bad event.
//!
//! JSON numbers cannot be NaN or infinite, so FerretDB's refusal of those never applies.
//! Integers are stored as 64-bit integers and other numbers as doubles, so both read back
//! as they were written; FerretDB turns `-0.0` into `0.0`, which compares equal.

mod config;
#[cfg(feature = "mongodb")]
mod convert;
#[cfg(feature = "mongodb")]
mod document;
#[cfg(feature = "mongodb")]
mod error;

pub use config::MongoConfig;
#[cfg(feature = "mongodb")]
pub use document::MongoStore;
