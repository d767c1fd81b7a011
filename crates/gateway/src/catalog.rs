//! The stream catalog: every stream a node knows (those of the config file and those
//! created through the admin API), each with its compiled JSON Schema.
//!
//! Contract:
//! - Reads never wait on a store: the catalog is a snapshot (a map behind an `Arc`),
//!   replaced whole by each change, so a request sees one consistent catalog; a
//!   [`StreamCatalog::subscribe`]r sees each new snapshot (a refresh that finds nothing new
//!   makes none).
//! - A catalog over a store ([`StreamCatalog::load`]) is read from the
//!   [`StreamStore`] at start, and again by [`StreamCatalog::refresh`]: every
//!   [`REFRESH_INTERVAL`] in the task of [`StreamCatalog::spawn_refresh`], which is how a
//!   node learns of streams created, changed or deleted on another one (within that
//!   interval). A schema is compiled once per document, not at each refresh.
//! - The admin operations ([`StreamCatalog::create`], [`StreamCatalog::update`],
//!   [`StreamCatalog::delete`]) write the store and the log's side (the Kafka topic,
//!   [`StreamTopics`]), then this node's snapshot at once. A stream is created in the
//!   store before its topic, and its record is removed again when the log refuses the
//!   topic, so the store arbitrates between nodes creating one name.
//! - Each tenant names its streams in a namespace of its own (see [Names](#names)): creating
//!   a name the tenant has is refused; another tenant's names are never in the way.
//! - A stream of the config file keeps the config's partitions and description (change
//!   them there) and cannot be deleted through the API (the next start would create it
//!   again); its schema and retention can be set through the API, and are kept across
//!   starts. A stream that a pipeline reads cannot be deleted, nor its partitions grown
//!   (the pipeline's shards follow its partitions).
//! - A catalog without a store (`From<BTreeMap<..>>`, for tests and tools) is fixed: the
//!   admin operations fail with [`CatalogError::NoStore`].
//!
//! # Names
//!
//! A stream has one identity inside Tributary: the [`StreamName`] of its topic in the log,
//! of its raw events and dead letters in the document store, of its checkpoints and of its
//! pipelines' sources. Its tenant knows it by its name ([`StreamEntry::name`]), which the
//! API takes and shows. Identity and name are the same but for a stream that a tenant
//! other than [`DEFAULT_TENANT`] created through the API: its identity is its name followed
//! by its tenant's tag, `__` and the first 12 hexadecimal digits of the SHA-256 of the
//! tenant ([`stream_id`]; `clicks` of tenant `acme` is `clicks__` and 12 hex digits). So:
//! - the default tenant's streams, and the config file's (of any tenant), are named as they
//!   are identified, as before tenants had namespaces: nothing stored moves;
//! - a name given to the API never takes another tenant's identity: a name that ends like
//!   a tag is refused to every tenant, and a tag is added only to its own tenant's names.
//!   What stays shared is the default tenant's namespace with the config file's streams
//!   of other tenants (both are the operator's), and, for two tenants whose tags agree (one
//!   chance in 2^48 for a pair), the identities of the names both create: the second
//!   creation is refused (409);
//! - a name of such a tenant is at most [`MAX_TAGGED_NAME_LEN`] characters (the tag takes
//!   the rest of a [`StreamName`]'s 64);
//! - the mapping is computed, not stored: the store keeps the identity and the tenant, and
//!   the name follows from both ([`shown_name`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest as _, Sha256};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tributary_core::event::MAX_STREAM_NAME_LEN;
use tributary_core::ports::{
    DEFAULT_TENANT, PortError, StoredStream, StreamOrigin, StreamStore, StreamTopics, TopicError,
    TopicSpec,
};
use tributary_core::{StreamName, Timestamp};

use crate::StreamInfo;
use crate::stream_schema::StreamSchema;

/// How often [`StreamCatalog::spawn_refresh`] reads the store again: the longest a node
/// takes to see a stream created, changed or deleted on another node.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(2);

/// The most partitions a stream may have.
pub const MAX_PARTITIONS: u32 = 1024;

/// The longest description, in characters.
pub const MAX_DESCRIPTION: usize = 1000;

/// The hexadecimal digits of a tenant's tag.
const TAG_DIGITS: usize = 12;

/// The characters of a tenant's tag: `__` and [`TAG_DIGITS`] digits.
const TAG_LEN: usize = 2 + TAG_DIGITS;

/// The longest name of a stream that a tenant other than [`DEFAULT_TENANT`] creates
/// through the API: its identity adds the tenant's tag (see [Names](self#names)).
pub const MAX_TAGGED_NAME_LEN: usize = MAX_STREAM_NAME_LEN - TAG_LEN;

/// The tag of `tenant`: `__` and the first [`TAG_DIGITS`] hexadecimal digits of its
/// SHA-256.
fn tag(tenant: &str) -> String {
    let digest = hex::encode(Sha256::digest(tenant.as_bytes()));
    format!("__{}", &digest[..TAG_DIGITS])
}

/// `name` followed by the tag of `tenant`, when that is a stream name (not too long).
fn with_tag(tenant: &str, name: &StreamName) -> Option<StreamName> {
    StreamName::new(format!("{name}{}", tag(tenant))).ok()
}

/// Whether `name` ends like a tenant's tag, which no name given to the API may.
fn ends_like_a_tag(name: &str) -> bool {
    name.len() > TAG_LEN && {
        let (_, end) = name.split_at(name.len() - TAG_LEN);
        end.starts_with("__")
            && end[2..]
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }
}

/// The identity of the stream that `tenant` creates through the API as `name` (see
/// [Names](self#names)).
///
/// # Errors
/// [`CatalogError::Invalid`] for a name that ends like a tag, or one too long for its
/// tenant's tag.
pub fn stream_id(tenant: &str, name: &StreamName) -> Result<StreamName, CatalogError> {
    if ends_like_a_tag(name.as_str()) {
        return Err(CatalogError::Invalid(format!(
            "name: a name may not end with '__' and {TAG_DIGITS} hexadecimal digits \
             (reserved for the names of other tenants' streams)"
        )));
    }
    if tenant == DEFAULT_TENANT {
        return Ok(name.clone());
    }
    with_tag(tenant, name).ok_or_else(|| {
        CatalogError::Invalid(format!(
            "name: must be at most {MAX_TAGGED_NAME_LEN} characters"
        ))
    })
}

/// The name by which `tenant` knows its stream `id`: `id` without the tenant's tag.
#[must_use]
pub fn shown_name(tenant: &str, id: &StreamName) -> StreamName {
    if tenant == DEFAULT_TENANT {
        return id.clone();
    }
    id.as_str()
        .strip_suffix(tag(tenant).as_str())
        .and_then(|name| StreamName::new(name).ok())
        .unwrap_or_else(|| id.clone())
}

/// A stream as the catalog holds it (by its identity).
#[derive(Debug, Clone)]
pub struct StreamEntry {
    /// The name its tenant knows it by (see [Names](self#names)).
    pub name: StreamName,
    /// What the routes and tenancy read.
    pub info: StreamInfo,
    /// Its payloads' schema, compiled.
    pub schema: Option<Arc<StreamSchema>>,
    /// Its stored definition; `None` in a catalog without a store.
    pub stored: Option<StoredStream>,
}

impl StreamEntry {
    fn of(stored: StoredStream, schema: Option<Arc<StreamSchema>>) -> Self {
        Self {
            name: shown_name(&stored.tenant, &stored.name),
            info: StreamInfo {
                partitions: stored.partitions,
                description: stored.description.clone(),
                tenant: stored.tenant.clone(),
            },
            schema,
            stored: Some(stored),
        }
    }
}

/// The streams, by identity.
pub type Streams = Arc<BTreeMap<StreamName, Arc<StreamEntry>>>;

/// Where a catalog's streams are kept, and the log's side of them.
#[derive(Debug, Clone)]
pub struct CatalogStore {
    /// The definitions.
    pub store: Arc<dyn StreamStore>,
    /// The topics.
    pub topics: Arc<dyn StreamTopics>,
}

/// The streams a node knows. Cheap to clone: clones share one catalog.
#[derive(Debug, Clone)]
pub struct StreamCatalog {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The snapshot, and whoever follows its changes ([`StreamCatalog::subscribe`]).
    streams: watch::Sender<Streams>,
    backing: Option<CatalogStore>,
    /// Held by each change and refresh, so that a refresh read before a change on this node
    /// cannot replace it.
    writes: tokio::sync::Mutex<()>,
}

/// Why an admin operation on a stream failed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// This node has no stream store.
    #[error("streams cannot be changed on this node: it has no stream store")]
    NoStore,
    /// No stream of the caller's tenant has this name.
    #[error("no stream named {0:?}")]
    Unknown(String),
    /// The operation contradicts the stream's state (it exists, a pipeline reads it, it is
    /// the config file's, ...).
    #[error("{0}")]
    Conflict(String),
    /// The definition is invalid (a schema, a partition count, a retention the log
    /// refuses), with the reason.
    #[error("{0}")]
    Invalid(String),
    /// The store or the log failed.
    #[error(transparent)]
    Port(#[from] PortError),
}

impl From<TopicError> for CatalogError {
    fn from(error: TopicError) -> Self {
        match error {
            TopicError::Invalid(reason) => Self::Invalid(reason),
            TopicError::Port(error) => Self::Port(error),
        }
    }
}

/// A stream to create.
#[derive(Debug, Clone)]
pub struct NewStream {
    /// Its name, in its tenant's namespace.
    pub name: StreamName,
    /// The tenant it belongs to.
    pub tenant: String,
    /// Its partitions.
    pub partitions: u32,
    /// Its replication factor; `None` for the log's default.
    pub replication_factor: Option<i32>,
    /// Its retention in milliseconds (`-1` forever); `None` for the log's default.
    pub retention_ms: Option<i64>,
    /// The JSON Schema of its payloads.
    pub schema: Option<Value>,
    /// For people.
    pub description: Option<String>,
}

/// A change to a stream: `None` keeps a member; `Some(None)` clears an optional one.
#[derive(Debug, Clone, Default)]
pub struct StreamChange {
    /// More partitions (never fewer).
    pub partitions: Option<u32>,
    /// Another retention, or the log's default.
    pub retention_ms: Option<Option<i64>>,
    /// Another schema, or none.
    pub schema: Option<Option<Value>>,
    /// Another description, or none.
    pub description: Option<Option<String>>,
}

impl From<BTreeMap<StreamName, StreamInfo>> for StreamCatalog {
    /// A fixed catalog of `streams`, without schemas or store.
    fn from(streams: BTreeMap<StreamName, StreamInfo>) -> Self {
        let streams = streams
            .into_iter()
            .map(|(name, info)| {
                let entry = StreamEntry {
                    name: shown_name(&info.tenant, &name),
                    info,
                    schema: None,
                    stored: None,
                };
                (name, Arc::new(entry))
            })
            .collect();
        Self::new(streams, None)
    }
}

impl StreamCatalog {
    fn new(streams: BTreeMap<StreamName, Arc<StreamEntry>>, backing: Option<CatalogStore>) -> Self {
        Self {
            inner: Arc::new(Inner {
                streams: watch::Sender::new(Arc::new(streams)),
                backing,
                writes: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// The catalog of the streams in `backing`'s store.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn load(backing: CatalogStore) -> Result<Self, PortError> {
        let stored = backing.store.list().await?;
        Ok(Self::of_stored(backing, stored))
    }

    /// The catalog of `stored`, the streams just read from `backing`'s store (kept up to
    /// date from it by [`StreamCatalog::refresh`]).
    #[must_use]
    pub fn of_stored(backing: CatalogStore, stored: Vec<StoredStream>) -> Self {
        let catalog = Self::new(BTreeMap::new(), Some(backing));
        catalog.install(stored);
        catalog
    }

    /// Every stream, by name.
    #[must_use]
    pub fn snapshot(&self) -> Streams {
        Arc::clone(&self.inner.streams.borrow())
    }

    /// Follows the catalog: the receiver sees each snapshot that differs from the one
    /// before.
    #[must_use]
    pub fn subscribe(&self) -> watch::Receiver<Streams> {
        self.inner.streams.subscribe()
    }

    /// The stream whose identity is `id`.
    #[must_use]
    pub fn get(&self, id: &StreamName) -> Option<Arc<StreamEntry>> {
        self.snapshot().get(id).cloned()
    }

    /// The stream that `tenant` names `name`, with its identity: a stream named as it is
    /// identified (the default tenant's, the config file's), else one created through the
    /// API with the tenant's tag.
    #[must_use]
    pub fn find(&self, tenant: &str, name: &str) -> Option<(StreamName, Arc<StreamEntry>)> {
        let name = StreamName::new(name).ok()?;
        let streams = self.snapshot();
        let tagged = (tenant != DEFAULT_TENANT)
            .then(|| with_tag(tenant, &name))
            .flatten();
        [Some(name.clone()), tagged]
            .into_iter()
            .flatten()
            .find_map(|id| {
                let entry = streams.get(&id)?;
                (entry.info.tenant == tenant && entry.name == name).then(|| (id, Arc::clone(entry)))
            })
    }

    /// The schema of the stream named `name`, if it has one.
    #[must_use]
    pub fn schema_of(&self, name: &StreamName) -> Option<Arc<StreamSchema>> {
        self.get(name).and_then(|entry| entry.schema.clone())
    }

    /// Whether streams can be created, changed and deleted here.
    #[must_use]
    pub fn is_writable(&self) -> bool {
        self.inner.backing.is_some()
    }

    fn replace(&self, change: impl FnOnce(&mut BTreeMap<StreamName, Arc<StreamEntry>>)) {
        self.inner.streams.send_modify(|streams| {
            let mut next = (**streams).clone();
            change(&mut next);
            *streams = Arc::new(next);
        });
    }

    /// Reads the store again (nothing without one). A stored schema that no longer
    /// compiles (it was valid when stored) is logged, and the stream is kept without it.
    ///
    /// # Errors
    /// When the store fails; the catalog is then unchanged.
    pub async fn refresh(&self) -> Result<(), PortError> {
        let Some(backing) = &self.inner.backing else {
            return Ok(());
        };
        let _write = self.inner.writes.lock().await;
        let stored = backing.store.list().await?;
        self.install(stored);
        Ok(())
    }

    /// Makes `stored` the catalog, compiling only the schemas that changed; followers see
    /// it only when it differs from the one before.
    fn install(&self, stored: Vec<StoredStream>) {
        let known = self.snapshot();
        let streams: BTreeMap<_, _> = stored
            .into_iter()
            .map(|stream| {
                let unchanged = known.get(&stream.name).and_then(|entry| {
                    let same = entry.stored.as_ref()?.schema == stream.schema;
                    same.then(|| entry.schema.clone())
                });
                let schema = unchanged.unwrap_or_else(|| compile_stored(&stream));
                (
                    stream.name.clone(),
                    Arc::new(StreamEntry::of(stream, schema)),
                )
            })
            .collect();
        self.inner.streams.send_if_modified(|current| {
            let same = current.len() == streams.len()
                && current
                    .iter()
                    .zip(&streams)
                    .all(|((a, x), (b, y))| a == b && x.stored == y.stored && x.info == y.info);
            if !same {
                *current = Arc::new(streams);
            }
            !same
        });
    }

    /// Refreshes the catalog every [`REFRESH_INTERVAL`] until `shutdown`; a failed refresh
    /// is logged and the catalog kept.
    pub fn spawn_refresh(&self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let catalog = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(REFRESH_INTERVAL);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    _ = ticks.tick() => {}
                }
                if let Err(error) = catalog.refresh().await {
                    tracing::warn!(
                        error = &error as &dyn std::error::Error,
                        "cannot refresh the stream catalog; keeping the last one"
                    );
                }
            }
        })
    }

    fn backing(&self) -> Result<&CatalogStore, CatalogError> {
        self.inner.backing.as_ref().ok_or(CatalogError::NoStore)
    }

    /// Creates a stream of `new.tenant`: its record, then its topic, under its identity
    /// ([`stream_id`]).
    ///
    /// # Errors
    /// [`CatalogError::Conflict`] when the tenant has a stream of this name (or, see
    /// [Names](self#names), when its identity is taken);
    /// [`CatalogError::Invalid`] for a definition the catalog or the log refuses.
    pub async fn create(&self, new: NewStream) -> Result<Arc<StreamEntry>, CatalogError> {
        let backing = self.backing()?;
        let capabilities = backing.topics.capabilities();
        check_partitions(new.partitions)?;
        check_retention(new.retention_ms, capabilities.retention)?;
        check_description(new.description.as_deref())?;
        if new.replication_factor.is_some() && !capabilities.replication {
            return Err(CatalogError::Invalid(
                "replication_factor: this log keeps one copy of each partition".to_owned(),
            ));
        }
        if let Some(replicas) = new.replication_factor
            && replicas < 1
        {
            return Err(CatalogError::Invalid(
                "replication_factor: must be at least 1".to_owned(),
            ));
        }
        let id = stream_id(&new.tenant, &new.name)?;
        let schema = compile(new.schema.clone())?;
        let _write = self.inner.writes.lock().await;
        let exists = || CatalogError::Conflict(format!("a stream named {:?} exists", new.name));
        if self.get(&id).is_some() || self.find(&new.tenant, new.name.as_str()).is_some() {
            return Err(exists());
        }
        let now = Timestamp::now();
        let mut stored = StoredStream {
            name: id.clone(),
            tenant: new.tenant,
            partitions: new.partitions,
            replication_factor: new
                .replication_factor
                .or_else(|| backing.topics.default_replication_factor()),
            retention_ms: new.retention_ms,
            schema: new.schema,
            description: new.description,
            origin: StreamOrigin::Api,
            created_at: now,
            updated_at: now,
        };
        match backing.store.create(&stored).await {
            Err(PortError::Refused { .. }) => return Err(exists()),
            other => other?,
        }
        let spec = TopicSpec {
            name: stored.name.clone(),
            partitions: stored.partitions,
            replication_factor: stored.replication_factor,
            retention_ms: stored.retention_ms,
        };
        let partitions = match backing.topics.create(&spec).await {
            Ok(partitions) => partitions,
            Err(error) => {
                if let Err(undo) = backing.store.delete(&stored.name).await {
                    tracing::error!(
                        stream = %stored.name,
                        error = &undo as &dyn std::error::Error,
                        "the log refused a new stream, and its record could not be removed"
                    );
                }
                return Err(error.into());
            }
        };
        // A topic that existed already (or an embedded stream created before) keeps its
        // partitions: the record says what the log has.
        if partitions != stored.partitions {
            stored.partitions = partitions;
            backing.store.update(&stored).await?;
        }
        tracing::info!(stream = %stored.name, tenant = stored.tenant, partitions, "stream created");
        let entry = Arc::new(StreamEntry::of(stored, schema));
        self.replace(|streams| {
            streams.insert(id, Arc::clone(&entry));
        });
        Ok(entry)
    }

    /// The stream of `tenant` whose identity is `id`.
    fn owned(&self, id: &StreamName, tenant: &str) -> Result<Arc<StreamEntry>, CatalogError> {
        self.get(id)
            .filter(|entry| entry.info.tenant == tenant)
            .ok_or_else(|| CatalogError::Unknown(shown_name(tenant, id).to_string()))
    }

    /// Applies `change` to the stream of `tenant` whose identity is `name`, which the
    /// pipelines `readers` read.
    ///
    /// # Errors
    /// [`CatalogError::Unknown`] for another tenant's or no stream;
    /// [`CatalogError::Conflict`] for fewer partitions, more on a log that cannot add them
    /// or of a stream pipelines read, and a change of what the config file defines;
    /// [`CatalogError::Invalid`] for an invalid schema or retention.
    pub async fn update(
        &self,
        name: &StreamName,
        tenant: &str,
        change: StreamChange,
        readers: &[String],
    ) -> Result<Arc<StreamEntry>, CatalogError> {
        let backing = self.backing()?;
        let capabilities = backing.topics.capabilities();
        let _write = self.inner.writes.lock().await;
        let entry = self.owned(name, tenant)?;
        let Some(mut stored) = entry.stored.clone() else {
            return Err(CatalogError::NoStore);
        };
        let from_config = stored.origin == StreamOrigin::Config;
        let mut alter = false;
        if let Some(partitions) = change.partitions
            && partitions != stored.partitions
        {
            check_partitions(partitions)?;
            let refusal = if from_config {
                Some("it is defined in the config file: change its partitions there".to_owned())
            } else if partitions < stored.partitions {
                Some(format!(
                    "partitions can only grow (it has {})",
                    stored.partitions
                ))
            } else if !capabilities.add_partitions {
                Some("this log cannot add partitions to a stream".to_owned())
            } else if !readers.is_empty() {
                Some(format!(
                    "pipelines read it ({}): their shards follow its partitions",
                    readers.join(", ")
                ))
            } else {
                None
            };
            if let Some(reason) = refusal {
                return Err(CatalogError::Conflict(format!(
                    "the partitions of {:?} cannot change: {reason}",
                    entry.name
                )));
            }
            stored.partitions = partitions;
            alter = true;
        }
        if let Some(retention_ms) = change.retention_ms
            && retention_ms != stored.retention_ms
        {
            check_retention(retention_ms, capabilities.retention)?;
            stored.retention_ms = retention_ms;
            alter = true;
        }
        let mut schema = entry.schema.clone();
        if let Some(document) = change.schema {
            schema = compile(document.clone())?;
            stored.schema = document;
        }
        if let Some(description) = change.description
            && description != stored.description
        {
            if from_config {
                return Err(CatalogError::Conflict(format!(
                    "the description of {:?} cannot change: it is defined in the config \
                     file: change it there",
                    entry.name
                )));
            }
            check_description(description.as_deref())?;
            stored.description = description;
        }
        if alter {
            let spec = TopicSpec {
                name: name.clone(),
                partitions: stored.partitions,
                replication_factor: stored.replication_factor,
                retention_ms: stored.retention_ms,
            };
            backing.topics.alter(&spec).await?;
        }
        stored.updated_at = Timestamp::now();
        if !backing.store.update(&stored).await? {
            self.replace(|streams| {
                streams.remove(name);
            });
            return Err(CatalogError::Unknown(entry.name.to_string()));
        }
        let entry = Arc::new(StreamEntry::of(stored, schema));
        self.replace(|streams| {
            streams.insert(name.clone(), Arc::clone(&entry));
        });
        Ok(entry)
    }

    /// Deletes the stream of `tenant` whose identity is `name`: its topic, then its record.
    ///
    /// # Errors
    /// [`CatalogError::Unknown`] for another tenant's or no stream;
    /// [`CatalogError::Conflict`] for a stream of the config file or that the pipelines
    /// `readers` read.
    pub async fn delete(
        &self,
        name: &StreamName,
        tenant: &str,
        readers: &[String],
    ) -> Result<(), CatalogError> {
        let backing = self.backing()?;
        let _write = self.inner.writes.lock().await;
        let entry = self.owned(name, tenant)?;
        let refusal = match &entry.stored {
            None => return Err(CatalogError::NoStore),
            Some(stored) if stored.origin == StreamOrigin::Config => {
                Some("it is defined in the config file: remove it there".to_owned())
            }
            Some(_) if !readers.is_empty() => {
                Some(format!("pipelines read it ({})", readers.join(", ")))
            }
            Some(_) => None,
        };
        if let Some(reason) = refusal {
            return Err(CatalogError::Conflict(format!(
                "{:?} cannot be deleted: {reason}",
                entry.name
            )));
        }
        backing.topics.delete(name).await?;
        backing.store.delete(name).await?;
        tracing::info!(stream = %name, tenant, "stream deleted");
        self.replace(|streams| {
            streams.remove(name);
        });
        Ok(())
    }
}

/// The schema of a stored stream, compiled; `None` (logged) if it no longer compiles.
fn compile_stored(stream: &StoredStream) -> Option<Arc<StreamSchema>> {
    let document = stream.schema.clone()?;
    match StreamSchema::compile(document) {
        Ok(schema) => Some(Arc::new(schema)),
        Err(error) => {
            tracing::error!(
                stream = %stream.name,
                error = &error as &dyn std::error::Error,
                "the stored schema of a stream does not compile; its events are not checked"
            );
            None
        }
    }
}

fn compile(document: Option<Value>) -> Result<Option<Arc<StreamSchema>>, CatalogError> {
    document
        .map(|document| {
            StreamSchema::compile(document)
                .map(Arc::new)
                .map_err(|error| CatalogError::Invalid(format!("schema: {}", error.0)))
        })
        .transpose()
}

fn check_partitions(partitions: u32) -> Result<(), CatalogError> {
    if (1..=MAX_PARTITIONS).contains(&partitions) {
        Ok(())
    } else {
        Err(CatalogError::Invalid(format!(
            "partitions: must be between 1 and {MAX_PARTITIONS}, got {partitions}"
        )))
    }
}

fn check_retention(retention_ms: Option<i64>, applied: bool) -> Result<(), CatalogError> {
    match retention_ms {
        None => Ok(()),
        Some(_) if !applied => Err(CatalogError::Invalid(
            "retention_ms: this log keeps every record; it has no retention".to_owned(),
        )),
        Some(-1) => Ok(()),
        Some(ms) if ms >= 1 => Ok(()),
        Some(ms) => Err(CatalogError::Invalid(format!(
            "retention_ms: must be -1 (forever) or at least 1, got {ms}"
        ))),
    }
}

fn check_description(description: Option<&str>) -> Result<(), CatalogError> {
    match description {
        Some(text) if text.chars().count() > MAX_DESCRIPTION => Err(CatalogError::Invalid(
            format!("description: at most {MAX_DESCRIPTION} characters"),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> StreamName {
        StreamName::new(text).unwrap()
    }

    #[test]
    fn the_default_tenants_streams_are_identified_by_their_names() {
        let clicks = name("clicks");
        assert_eq!(stream_id(DEFAULT_TENANT, &clicks).unwrap(), clicks);
        assert_eq!(shown_name(DEFAULT_TENANT, &clicks), clicks);
        let longest = name(&"x".repeat(MAX_STREAM_NAME_LEN));
        assert_eq!(stream_id(DEFAULT_TENANT, &longest).unwrap(), longest);
    }

    #[test]
    fn another_tenants_identities_add_its_tag_and_drop_it_again() {
        let clicks = name("clicks");
        let acme = stream_id("acme", &clicks).unwrap();
        let globex = stream_id("globex", &clicks).unwrap();
        assert_ne!(acme, globex);
        assert_eq!(acme.as_str().len(), "clicks".len() + TAG_LEN);
        assert!(acme.as_str().starts_with("clicks__"), "{acme}");
        assert_eq!(shown_name("acme", &acme), clicks);
        // Not the tenant's tag: shown as it is.
        assert_eq!(shown_name("globex", &acme), acme);
        assert_eq!(shown_name("acme", &clicks), clicks);
        // Any tenant name, also one that is not a valid stream name.
        assert!(stream_id("Ünïcode tenant/1", &clicks).is_ok());
    }

    #[test]
    fn names_ending_like_a_tag_and_names_too_long_for_a_tag_are_refused() {
        let tagged = stream_id("acme", &name("clicks")).unwrap();
        for tenant in [DEFAULT_TENANT, "acme", "globex"] {
            assert!(
                matches!(stream_id(tenant, &tagged), Err(CatalogError::Invalid(_))),
                "{tenant}"
            );
        }
        for allowed in [
            "my__clicks",
            "a__0123456789a",
            "a__0123456789abc",
            "a-_0123456789ab",
        ] {
            assert!(stream_id("acme", &name(allowed)).is_ok(), "{allowed}");
        }
        assert!(stream_id("acme", &name("a__0123456789ab")).is_err());
        let longest = name(&"x".repeat(MAX_TAGGED_NAME_LEN));
        assert!(stream_id("acme", &longest).is_ok());
        let too_long = name(&"x".repeat(MAX_TAGGED_NAME_LEN + 1));
        assert!(matches!(
            stream_id("acme", &too_long),
            Err(CatalogError::Invalid(reason)) if reason.contains("50")
        ));
    }
}
