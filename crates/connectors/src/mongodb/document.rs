//! [`MongoStore`]: the [`DocumentStore`] on MongoDB (or FerretDB).

use std::collections::{BTreeMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ::mongodb::bson::{self, Bson, DateTime, Document, RawDocumentBuf, doc};
use ::mongodb::options::{ClientOptions, IndexOptions};
use ::mongodb::{Client, Collection, Database, IndexModel};
use async_trait::async_trait;
use futures::stream::FuturesUnordered;
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use tributary_core::dead_letter::{DeadLetter, DeadLetterPage, StreamSelection};
use tributary_core::event::{Event, EventId, StreamName, Timestamp};
use tributary_core::ports::{DocumentStore, EventPage, PortError};

use super::config::MongoConfig;
use super::convert::{Undecodable, Unstorable, check_string, document_to_object, object_to_raw};
use super::error::{SYSTEM, mongo_error, only_duplicate_keys, refuses_index};
use crate::breaker::Breaker;

/// Default server selection and connect timeout.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The collection of the dead letters.
const DEAD_LETTERS: &str = "dead_letters";

/// The time field of an events collection.
const EVENT_TIME: &str = "ts";

/// The time field of the dead letters collection.
const DEAD_LETTER_TIME: &str = "at";

/// Most events per `insert` command of `put_events`: a larger batch is split, so that the
/// server (FerretDB converts every document, then PostgreSQL inserts it) works on several
/// parts at once.
const EVENTS_PER_INSERT: usize = 250;

/// Most `insert` commands of one `put_events` call in flight at once.
const INSERTS_IN_FLIGHT: usize = 4;

/// An event this store cannot hold.
#[derive(Debug, thiserror::Error)]
#[error("event {id} of stream {stream} cannot be stored in MongoDB: {cause}")]
pub(crate) struct UnstorableEvent {
    stream: StreamName,
    id: EventId,
    #[source]
    cause: Unstorable,
}

/// A dead letter whose origin has no BSON form (a number beyond BSON's integers).
#[derive(Debug, thiserror::Error)]
#[error("dead letter {id} cannot be stored in MongoDB")]
struct UnstorableDeadLetter {
    id: String,
    #[source]
    cause: bson::ser::Error,
}

/// A stored document this store did not write.
#[derive(Debug, thiserror::Error)]
#[error("document {id:?} of collection {collection} is not {what}")]
struct UndecodableDocument {
    collection: String,
    id: String,
    /// What the collection holds: "an event", "a dead letter".
    what: &'static str,
    #[source]
    cause: Malformed,
}

/// What is wrong with a stored document that is not what its collection holds.
#[derive(Debug, thiserror::Error)]
enum Malformed {
    #[error("_id is not a string")]
    Id,
    #[error("_id is not an event id: it {0}")]
    InvalidId(&'static str),
    #[error("{field} is not {expected}")]
    Field {
        field: &'static str,
        expected: &'static str,
    },
    #[error("payload is not a JSON object")]
    PayloadValue(#[source] Undecodable),
    #[error("origin is not a dead letter origin")]
    Origin(#[source] bson::de::Error),
}

/// Raw events in MongoDB, one collection per stream, and the dead letters. Cheap to clone:
/// clones share the client.
#[derive(Debug, Clone)]
pub struct MongoStore {
    database: Database,
    /// Collections whose index this process has created (or given up on).
    indexed: Arc<Mutex<HashSet<String>>>,
    /// The breaker of the gateway's queries (pages of events and dead letters).
    queries: Arc<Breaker>,
}

impl MongoStore {
    /// Connects and pings the server, failing within about ten seconds (unless the URL sets
    /// other timeouts) when no server answers.
    ///
    /// # Errors
    /// [`PortError::Refused`] for a malformed URL, [`PortError::Unavailable`] when no server
    /// answers in time or authentication fails.
    pub async fn connect(config: &MongoConfig) -> Result<Self, PortError> {
        let queries = Breaker::new(
            SYSTEM,
            "[documents] query_timeout",
            config.query_timeout,
            config.cool_down,
        )?;
        let mut options = ClientOptions::parse(&config.url)
            .await
            .map_err(mongo_error)?;
        options.server_selection_timeout.get_or_insert(TIMEOUT);
        options.connect_timeout.get_or_insert(TIMEOUT);
        options
            .app_name
            .get_or_insert_with(|| "tributary".to_owned());
        let client = Client::with_options(options).map_err(mongo_error)?;
        let database = client.database(&config.database);
        database
            .run_command(doc! { "ping": 1 })
            .await
            .map_err(mongo_error)?;
        tracing::info!(database = %config.database, "mongodb document store ready");
        Ok(Self {
            database,
            indexed: Arc::default(),
            queries: Arc::new(queries),
        })
    }

    /// The database holding the collections.
    #[must_use]
    pub fn database(&self) -> &Database {
        &self.database
    }

    fn collection(&self, name: &str) -> Collection<Document> {
        self.database.collection(name)
    }

    /// Creates the newest-first index `{time: -1, _id: -1}` of `collection`, once per
    /// process. Never fails the write: a server that does not support the index (an old
    /// FerretDB) is logged and not asked again, and reads scan; any other failure is logged
    /// and the index is asked for again at the next write.
    async fn ensure_index(&self, collection: &str, time: &str) {
        if self
            .indexed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(collection)
        {
            return;
        }
        let index = IndexModel::builder()
            .keys(doc! { time: -1, "_id": -1 })
            .options(
                IndexOptions::builder()
                    .name(format!("{time}_-1__id_-1"))
                    .build(),
            )
            .build();
        match self.collection(collection).create_index(index).await {
            Ok(_) => {}
            Err(error) if refuses_index(&error) => tracing::warn!(
                collection,
                error = &error as &dyn std::error::Error,
                "the server refused the newest-first index; reads will scan the collection"
            ),
            Err(error) => {
                tracing::warn!(
                    collection,
                    error = &error as &dyn std::error::Error,
                    "newest-first index not created; trying again at the next write"
                );
                return;
            }
        }
        self.indexed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(collection.to_owned());
    }

    /// Inserts into `collection` the `documents` whose `_id` is not stored yet, and returns
    /// how many were. Unordered, so that every new document is inserted even when some are
    /// stored already; their duplicate key errors are the idempotence, not a failure.
    async fn insert_new<T>(&self, collection: &str, documents: Vec<T>) -> Result<usize, PortError>
    where
        T: Serialize + Send + Sync,
    {
        match self
            .database
            .collection::<T>(collection)
            .insert_many(documents)
            .ordered(false)
            .await
        {
            Ok(_) => Ok(0),
            Err(error) => only_duplicate_keys(&error).ok_or_else(|| mongo_error(error)),
        }
    }

    /// Inserts each part of `inserts` (a collection and its documents) with
    /// [`Self::insert_new`], [`INSERTS_IN_FLIGHT`] at once; fails with the first failure.
    async fn insert_events(
        &self,
        inserts: Vec<(String, Vec<RawDocumentBuf>)>,
    ) -> Result<(), PortError> {
        let mut waiting = inserts.into_iter();
        let mut running = FuturesUnordered::new();
        loop {
            while running.len() < INSERTS_IN_FLIGHT {
                let Some((collection, documents)) = waiting.next() else {
                    break;
                };
                running.push(self.insert_part(collection, documents));
            }
            match running.next().await {
                Some(inserted) => inserted?,
                None => return Ok(()),
            }
        }
    }

    /// One part of [`Self::insert_events`].
    async fn insert_part(
        &self,
        collection: String,
        documents: Vec<RawDocumentBuf>,
    ) -> Result<(), PortError> {
        let events = documents.len();
        let duplicates = self.insert_new(&collection, documents).await?;
        tracing::debug!(collection, events, duplicates, "events stored");
        Ok(())
    }

    /// One page of `collection`, newest first by (`time`, `_id`), sorted `{time: -1, _id:
    /// -1}`: at most `limit` documents, strictly after `after` in that order.
    async fn newest_first(
        &self,
        collection: &str,
        time: &str,
        after: Option<(Timestamp, &str)>,
        limit: usize,
    ) -> Result<Vec<Document>, PortError> {
        self.newest_first_where(collection, time, None, after, limit)
            .await
    }

    /// As [`Self::newest_first`], of the documents matching `selection` too.
    async fn newest_first_where(
        &self,
        collection: &str,
        time: &str,
        selection: Option<Document>,
        after: Option<(Timestamp, &str)>,
        limit: usize,
    ) -> Result<Vec<Document>, PortError> {
        // A limit of 0 means "no limit" to MongoDB.
        if limit == 0 {
            return Ok(Vec::new());
        }
        let position = after.map(|(at, id)| {
            let at = DateTime::from_millis(at.millis());
            doc! { "$or": [
                { time: { "$lt": at } },
                { time: at, "_id": { "$lt": id } },
            ] }
        });
        let filter = match (selection, position) {
            (None, None) => doc! {},
            (Some(one), None) | (None, Some(one)) => one,
            (Some(selection), Some(position)) => doc! { "$and": [selection, position] },
        };
        self.collection(collection)
            .find(filter)
            .sort(doc! { time: -1, "_id": -1 })
            .limit(i64::try_from(limit).unwrap_or(i64::MAX))
            .await
            .map_err(mongo_error)?
            .try_collect()
            .await
            .map_err(mongo_error)
    }

    /// Closes the client's connections.
    pub async fn close(&self) {
        self.database.client().clone().shutdown().await;
    }
}

/// The collection holding `stream`'s events.
fn collection_name(stream: &StreamName) -> String {
    format!("events_{stream}")
}

/// `event` as a document, already encoded, or why it cannot be one.
fn event_to_document(event: &Event) -> Result<RawDocumentBuf, PortError> {
    let unstorable = |cause: Unstorable| {
        PortError::refused(
            SYSTEM,
            UnstorableEvent {
                stream: event.stream.clone(),
                id: event.id.clone(),
                cause,
            },
        )
    };
    // Checked first: `append_ref` would panic on a NUL in a key, and these are values.
    check_string(event.id.as_str()).map_err(|e| unstorable(e.within("_id")))?;
    if let Some(key) = &event.key {
        check_string(key).map_err(|e| unstorable(e.within("key")))?;
    }
    let payload = object_to_raw(&event.payload).map_err(|e| unstorable(e.within("payload")))?;
    let mut document = RawDocumentBuf::new();
    document.append_ref("_id", event.id.as_str());
    document.append_ref(EVENT_TIME, DateTime::from_millis(event.ts.millis()));
    if let Some(key) = &event.key {
        document.append_ref("key", key.as_str());
    }
    document.append_ref("payload", &payload);
    Ok(document)
}

/// `events`, all of one stream, as the documents of [`EVENTS_PER_INSERT`]-sized parts (about):
/// split by a hash of the id, so that two events with the same id are in the same part, in
/// their order, and the first one wins as if the batch were inserted whole.
fn parts_of(
    events: &[&Event],
    hasher: &RandomState,
) -> Result<Vec<Vec<RawDocumentBuf>>, PortError> {
    let count = events.len().div_ceil(EVENTS_PER_INSERT).max(1);
    let mut parts: Vec<Vec<RawDocumentBuf>> = (0..count)
        .map(|_| Vec::with_capacity(events.len() / count + 1))
        .collect();
    for event in events {
        let part = if count == 1 {
            0
        } else {
            // The remainder is below `count`, a usize.
            usize::try_from(hasher.hash_one(event.id.as_str()) % count as u64).unwrap_or(0)
        };
        parts[part].push(event_to_document(event)?);
    }
    parts.retain(|part| !part.is_empty());
    Ok(parts)
}

/// Decodes a stored `document` of `collection`, which holds `what`, from its string `_id`
/// and its other fields (`fields`).
fn from_document<T>(
    collection: &str,
    what: &'static str,
    mut document: Document,
    fields: impl FnOnce(&str, Document) -> Result<T, Malformed>,
) -> Result<T, PortError> {
    let undecodable = |id: String, cause: Malformed| {
        PortError::corrupt(
            SYSTEM,
            UndecodableDocument {
                collection: collection.to_owned(),
                id,
                what,
                cause,
            },
        )
    };
    match document.remove("_id") {
        Some(Bson::String(id)) => fields(&id, document).map_err(|cause| undecodable(id, cause)),
        other => Err(undecodable(format!("{other:?}"), Malformed::Id)),
    }
}

/// Removes `field` from `document`: a BSON date, as a time.
fn take_time(document: &mut Document, field: &'static str) -> Result<Timestamp, Malformed> {
    match document.remove(field) {
        Some(Bson::DateTime(at)) => Ok(Timestamp::from_millis(at.timestamp_millis())),
        _ => Err(Malformed::Field {
            field,
            expected: "a date",
        }),
    }
}

/// Removes `field` from `document`: a string.
fn take_string(document: &mut Document, field: &'static str) -> Result<String, Malformed> {
    match document.remove(field) {
        Some(Bson::String(text)) => Ok(text),
        _ => Err(Malformed::Field {
            field,
            expected: "a string",
        }),
    }
}

/// A stored document of `stream` as an event.
fn event_from_document(stream: &StreamName, document: Document) -> Result<Event, PortError> {
    from_document(
        &collection_name(stream),
        "an event",
        document,
        |id, mut document| {
            let ts = take_time(&mut document, EVENT_TIME)?;
            let key = match document.remove("key") {
                None | Some(Bson::Null) => None,
                Some(Bson::String(key)) => Some(key),
                Some(_) => {
                    return Err(Malformed::Field {
                        field: "key",
                        expected: "a string",
                    });
                }
            };
            let payload = match document.remove("payload") {
                Some(Bson::Document(payload)) => {
                    document_to_object(payload).map_err(Malformed::PayloadValue)?
                }
                _ => {
                    return Err(Malformed::Field {
                        field: "payload",
                        expected: "a document",
                    });
                }
            };
            Ok(Event {
                id: EventId::new(id).map_err(Malformed::InvalidId)?,
                stream: stream.clone(),
                ts,
                key,
                payload,
            })
        },
    )
}

/// `letter` as a document (its text holds no NUL: `DeadLetter` replaces them).
fn dead_letter_to_document(letter: &DeadLetter) -> Result<Document, PortError> {
    let origin = bson::to_document(&letter.origin).map_err(|cause| {
        PortError::refused(
            SYSTEM,
            UnstorableDeadLetter {
                id: letter.id.clone(),
                cause,
            },
        )
    })?;
    Ok(doc! {
        "_id": letter.id.as_str(),
        DEAD_LETTER_TIME: DateTime::from_millis(letter.at.millis()),
        "stream": letter.stream.as_str(),
        "origin": origin,
        "reason": letter.reason.as_str(),
        "raw": letter.raw.as_str(),
        "truncated": letter.truncated,
    })
}

/// A stored document of the dead letters collection as a dead letter.
fn dead_letter_from_document(document: Document) -> Result<DeadLetter, PortError> {
    from_document(
        DEAD_LETTERS,
        "a dead letter",
        document,
        |id, mut document| {
            let origin = match document.remove("origin") {
                Some(Bson::Document(origin)) => {
                    bson::from_document(origin).map_err(Malformed::Origin)?
                }
                _ => {
                    return Err(Malformed::Field {
                        field: "origin",
                        expected: "a document",
                    });
                }
            };
            let Some(Bson::Boolean(truncated)) = document.remove("truncated") else {
                return Err(Malformed::Field {
                    field: "truncated",
                    expected: "a boolean",
                });
            };
            Ok(DeadLetter {
                id: id.to_owned(),
                at: take_time(&mut document, DEAD_LETTER_TIME)?,
                stream: take_string(&mut document, "stream")?,
                origin,
                reason: take_string(&mut document, "reason")?,
                raw: take_string(&mut document, "raw")?,
                truncated,
            })
        },
    )
}

#[async_trait]
impl DocumentStore for MongoStore {
    async fn ping(&self) -> Result<(), PortError> {
        self.database
            .run_command(doc! { "ping": 1 })
            .await
            .map_err(mongo_error)?;
        Ok(())
    }

    /// Converts the whole batch first, so that an unstorable event refuses it before any
    /// write; then inserts it in parts of about [`EVENTS_PER_INSERT`] events,
    /// [`INSERTS_IN_FLIGHT`] at once (see [`parts_of`]). A failed part fails the call, the
    /// others may be stored already: storing them again changes nothing.
    async fn put_events(&self, events: &[Event]) -> Result<(), PortError> {
        let mut by_stream: BTreeMap<&StreamName, Vec<&Event>> = BTreeMap::new();
        for event in events {
            by_stream.entry(&event.stream).or_default().push(event);
        }
        let hasher = RandomState::new();
        let mut inserts = Vec::new();
        for (stream, events) in by_stream {
            let collection = collection_name(stream);
            let parts = parts_of(&events, &hasher)?;
            self.ensure_index(&collection, EVENT_TIME).await;
            inserts.extend(parts.into_iter().map(|part| (collection.clone(), part)));
        }
        self.insert_events(inserts).await
    }

    async fn recent_events(
        &self,
        stream: &StreamName,
        page: &EventPage,
    ) -> Result<Vec<Event>, PortError> {
        let after = page.after.as_ref().map(|a| (a.ts, a.id.as_str()));
        let collection = collection_name(stream);
        let documents = self
            .queries
            .call(self.newest_first(&collection, EVENT_TIME, after, page.limit))
            .await?;
        documents
            .into_iter()
            .map(|d| event_from_document(stream, d))
            .collect()
    }

    async fn get_event(
        &self,
        stream: &StreamName,
        id: &EventId,
    ) -> Result<Option<Event>, PortError> {
        let collection = self.collection(&collection_name(stream));
        let document = self
            .queries
            .call(async {
                collection
                    .find_one(doc! { "_id": id.as_str() })
                    .await
                    .map_err(mongo_error)
            })
            .await?;
        document.map(|d| event_from_document(stream, d)).transpose()
    }

    async fn put_dead_letters(&self, letters: &[DeadLetter]) -> Result<(), PortError> {
        if letters.is_empty() {
            return Ok(());
        }
        let documents = letters
            .iter()
            .map(dead_letter_to_document)
            .collect::<Result<Vec<_>, _>>()?;
        self.ensure_index(DEAD_LETTERS, DEAD_LETTER_TIME).await;
        let duplicates = self.insert_new(DEAD_LETTERS, documents).await?;
        tracing::debug!(letters = letters.len(), duplicates, "dead letters stored");
        Ok(())
    }

    async fn recent_dead_letters_of(
        &self,
        page: &DeadLetterPage,
        streams: &StreamSelection,
    ) -> Result<Vec<DeadLetter>, PortError> {
        let after = page.after.as_ref().map(|a| (a.at, a.id.as_str()));
        let selection = match streams {
            StreamSelection::All => None,
            StreamSelection::Only(names) => Some(doc! { "stream": { "$in": names } }),
            StreamSelection::Except(names) => Some(doc! { "stream": { "$nin": names } }),
        };
        let documents = self
            .queries
            .call(self.newest_first_where(
                DEAD_LETTERS,
                DEAD_LETTER_TIME,
                selection,
                after,
                page.limit,
            ))
            .await?;
        documents
            .into_iter()
            .map(dead_letter_from_document)
            .collect()
    }

    /// One `delete_many` on `at`. A TTL index would expire letters on its own, but
    /// FerretDB's support for TTL indexes is uncertain, and the embedded store needs the
    /// same behaviour anyway: the engine prunes every store the same way.
    async fn prune_dead_letters(&self, before: Timestamp) -> Result<u64, PortError> {
        let deleted = self
            .collection(DEAD_LETTERS)
            .delete_many(
                doc! { DEAD_LETTER_TIME: { "$lt": DateTime::from_millis(before.millis()) } },
            )
            .await
            .map_err(mongo_error)?
            .deleted_count;
        tracing::debug!(pruned = deleted, before = %before, "dead letters pruned");
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use super::*;

    /// The errors of `error` and of its sources, as displayed.
    fn chain_of(error: &(dyn Error + 'static)) -> Vec<String> {
        std::iter::successors(Some(error), |e| (*e).source())
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn foreign_documents_are_corrupt_with_their_cause() {
        let stream = StreamName::new("clicks").unwrap();
        let document = doc! {
            "_id": "e1",
            "ts": DateTime::from_millis(0),
            "payload": { "when": DateTime::from_millis(0) },
        };
        let error = event_from_document(&stream, document).unwrap_err();
        assert!(matches!(error, PortError::Corrupt { .. }), "{error:?}");
        let chain = chain_of(&error);
        assert_eq!(chain.len(), 4, "{chain:?}");
        assert_eq!(
            chain[1],
            r#"document "e1" of collection events_clicks is not an event"#
        );
        assert_eq!(chain[2], "payload is not a JSON object");
        assert!(chain[3].contains("DateTime"), "{chain:?}");

        let error = event_from_document(&stream, doc! { "_id": "", "ts": 1 }).unwrap_err();
        assert_eq!(chain_of(&error)[2], "ts is not a date");
    }
}
