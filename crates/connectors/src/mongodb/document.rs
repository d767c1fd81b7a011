//! [`MongoStore`]: the [`DocumentStore`] on MongoDB (or FerretDB).

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ::mongodb::bson::{Bson, DateTime, Document, doc};
use ::mongodb::options::{ClientOptions, IndexOptions};
use ::mongodb::{Client, Collection, Database, IndexModel};
use async_trait::async_trait;
use futures::TryStreamExt;
use tributary_core::event::{Event, EventId, StreamName, Timestamp};
use tributary_core::ports::{DocumentStore, EventPage, PortError};

use super::config::MongoConfig;
use super::convert::{
    Undecodable, Unstorable, check_string, document_to_object, object_to_document,
};
use super::error::{SYSTEM, mongo_error, only_duplicate_keys, refuses_index};

/// Default server selection and connect timeout.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The name of the newest-first index of every events collection.
const NEWEST_FIRST_INDEX: &str = "ts_-1__id_-1";

/// An event this store cannot hold.
#[derive(Debug, thiserror::Error)]
#[error("event {id} of stream {stream} cannot be stored in MongoDB: {cause}")]
pub(crate) struct UnstorableEvent {
    stream: StreamName,
    id: EventId,
    #[source]
    cause: Unstorable,
}

/// A stored document this store did not write.
#[derive(Debug, thiserror::Error)]
#[error("document {id:?} of collection {collection} is not an event")]
struct UndecodableEvent {
    collection: String,
    id: String,
    #[source]
    cause: NotAnEvent,
}

/// What is wrong with a stored document that is not an event.
#[derive(Debug, thiserror::Error)]
enum NotAnEvent {
    #[error("_id is not a string")]
    Id,
    #[error("_id is not an event id: it {0}")]
    InvalidId(&'static str),
    #[error("ts is not a date")]
    Ts,
    #[error("key is not a string")]
    Key,
    #[error("payload is not a document")]
    Payload,
    #[error("payload is not a JSON object")]
    PayloadValue(#[source] Undecodable),
}

/// Raw events in MongoDB, one collection per stream. Cheap to clone: clones share the
/// client.
#[derive(Debug, Clone)]
pub struct MongoStore {
    database: Database,
    /// Collections whose index this process has created (or given up on).
    indexed: Arc<Mutex<HashSet<String>>>,
}

impl MongoStore {
    /// Connects and pings the server, failing within about ten seconds (unless the URL sets
    /// other timeouts) when no server answers.
    ///
    /// # Errors
    /// [`PortError::Refused`] for a malformed URL, [`PortError::Unavailable`] when no server
    /// answers in time or authentication fails.
    pub async fn connect(config: &MongoConfig) -> Result<Self, PortError> {
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
        })
    }

    /// The database holding the events collections.
    #[must_use]
    pub fn database(&self) -> &Database {
        &self.database
    }

    /// The collection of `stream`'s events.
    fn collection(&self, stream: &StreamName) -> Collection<Document> {
        self.database.collection(&collection_name(stream))
    }

    /// Creates the newest-first index of `stream`'s collection, once per process. Never
    /// fails the write: a server that does not support the index (an old FerretDB) is logged
    /// and not asked again, and reads scan; any other failure is logged and the index is
    /// asked for again at the next write.
    async fn ensure_index(&self, stream: &StreamName) {
        let name = collection_name(stream);
        if self
            .indexed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&name)
        {
            return;
        }
        let index = IndexModel::builder()
            .keys(doc! { "ts": -1, "_id": -1 })
            .options(
                IndexOptions::builder()
                    .name(NEWEST_FIRST_INDEX.to_owned())
                    .build(),
            )
            .build();
        match self.collection(stream).create_index(index).await {
            Ok(_) => {}
            Err(error) if refuses_index(&error) => tracing::warn!(
                collection = %name,
                error = &error as &dyn std::error::Error,
                "the server refused the newest-first index; reads will scan the collection"
            ),
            Err(error) => {
                tracing::warn!(
                    collection = %name,
                    error = &error as &dyn std::error::Error,
                    "newest-first index not created; trying again at the next write"
                );
                return;
            }
        }
        self.indexed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name);
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

/// `event` as a document, or why it cannot be one.
fn event_to_document(event: &Event) -> Result<Document, PortError> {
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
    check_string(event.id.as_str()).map_err(|e| unstorable(e.within("_id")))?;
    let mut document = doc! {
        "_id": event.id.as_str(),
        "ts": DateTime::from_millis(event.ts.millis()),
    };
    if let Some(key) = &event.key {
        check_string(key).map_err(|e| unstorable(e.within("key")))?;
        document.insert("key", key.as_str());
    }
    let payload =
        object_to_document(&event.payload).map_err(|e| unstorable(e.within("payload")))?;
    document.insert("payload", payload);
    Ok(document)
}

/// A stored document of `stream` as an event.
fn event_from_document(stream: &StreamName, mut document: Document) -> Result<Event, PortError> {
    let undecodable = |id: &str, cause: NotAnEvent| {
        PortError::corrupt(
            SYSTEM,
            UndecodableEvent {
                collection: collection_name(stream),
                id: id.to_owned(),
                cause,
            },
        )
    };
    let id = match document.remove("_id") {
        Some(Bson::String(id)) => id,
        other => return Err(undecodable(&format!("{other:?}"), NotAnEvent::Id)),
    };
    let ts = match document.get("ts") {
        Some(Bson::DateTime(ts)) => Timestamp::from_millis(ts.timestamp_millis()),
        _ => return Err(undecodable(&id, NotAnEvent::Ts)),
    };
    let key = match document.remove("key") {
        None | Some(Bson::Null) => None,
        Some(Bson::String(key)) => Some(key),
        Some(_) => return Err(undecodable(&id, NotAnEvent::Key)),
    };
    let payload = match document.remove("payload") {
        Some(Bson::Document(payload)) => document_to_object(payload)
            .map_err(|e| undecodable(&id, NotAnEvent::PayloadValue(e)))?,
        _ => return Err(undecodable(&id, NotAnEvent::Payload)),
    };
    Ok(Event {
        id: EventId::new(id.clone())
            .map_err(|reason| undecodable(&id, NotAnEvent::InvalidId(reason)))?,
        stream: stream.clone(),
        ts,
        key,
        payload,
    })
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

    async fn put_events(&self, events: &[Event]) -> Result<(), PortError> {
        // Convert the whole batch first: an unstorable event refuses it before any write.
        let mut by_stream: BTreeMap<&StreamName, Vec<Document>> = BTreeMap::new();
        for event in events {
            by_stream
                .entry(&event.stream)
                .or_default()
                .push(event_to_document(event)?);
        }
        for (stream, documents) in by_stream {
            self.ensure_index(stream).await;
            let count = documents.len();
            // Unordered, so that every new event is inserted even when some are stored
            // already; their duplicate key errors are the idempotence, not a failure.
            let duplicates = match self
                .collection(stream)
                .insert_many(documents)
                .ordered(false)
                .await
            {
                Ok(_) => 0,
                Err(error) => only_duplicate_keys(&error).ok_or_else(|| mongo_error(error))?,
            };
            tracing::debug!(stream = %stream, events = count, duplicates, "events stored");
        }
        Ok(())
    }

    async fn recent_events(
        &self,
        stream: &StreamName,
        page: &EventPage,
    ) -> Result<Vec<Event>, PortError> {
        // A limit of 0 means "no limit" to MongoDB.
        if page.limit == 0 {
            return Ok(Vec::new());
        }
        let filter = match &page.after {
            None => doc! {},
            Some(after) => {
                let ts = DateTime::from_millis(after.ts.millis());
                doc! { "$or": [
                    { "ts": { "$lt": ts } },
                    { "ts": ts, "_id": { "$lt": after.id.as_str() } },
                ] }
            }
        };
        let documents: Vec<Document> = self
            .collection(stream)
            .find(filter)
            .sort(doc! { "ts": -1, "_id": -1 })
            .limit(i64::try_from(page.limit).unwrap_or(i64::MAX))
            .await
            .map_err(mongo_error)?
            .try_collect()
            .await
            .map_err(mongo_error)?;
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
        let document = self
            .collection(stream)
            .find_one(doc! { "_id": id.as_str() })
            .await
            .map_err(mongo_error)?;
        document.map(|d| event_from_document(stream, d)).transpose()
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
