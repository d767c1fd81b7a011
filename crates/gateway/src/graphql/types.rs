//! The GraphQL object types: each is the JSON object of the REST API, field for field and
//! under the same names, decoded from what the REST function answered (so a field the
//! REST API renames fails loudly here rather than drifting apart). Shapes that vary per
//! pipeline or per origin (windows, aggregates, result rows, statuses) are `JSON` scalars
//! holding exactly the REST value.

use async_graphql::{Json, SimpleObject};
use serde::Deserialize;
use serde_json::Value;

/// A stream (`GET /v1/streams`).
#[derive(Debug, Deserialize, SimpleObject)]
#[graphql(rename_fields = "snake_case")]
pub(crate) struct Stream {
    /// Its name, unique in the caller's tenant.
    pub name: String,
    /// Its number of partitions in the log.
    pub partitions: u32,
    /// A description for people.
    pub description: Option<String>,
    /// How many copies of each partition the log keeps (null on the embedded log).
    pub replication_factor: Option<i32>,
    /// How long the log keeps its records, in milliseconds (`-1`: forever; null: the
    /// log's default).
    pub retention_ms: Option<i64>,
    /// The JSON Schema its events' payloads must match.
    pub schema: Option<Json<Value>>,
    /// `config` or `api`.
    pub origin: String,
    /// When it was created (RFC 3339).
    pub created_at: Option<String>,
    /// When it was last changed (RFC 3339).
    pub updated_at: Option<String>,
}

/// A stored raw event (an item of `GET /v1/streams/{stream}/events`).
#[derive(Debug, Deserialize, SimpleObject)]
#[graphql(rename_fields = "snake_case")]
pub(crate) struct Event {
    /// Its id, unique in its stream.
    pub id: String,
    /// Its stream (its name in the caller's tenant).
    pub stream: String,
    /// Its event time, RFC 3339.
    pub ts: String,
    /// Its partitioning key, if any.
    #[serde(default)]
    pub key: Option<String>,
    /// Its payload, a JSON object.
    pub payload: Json<Value>,
}

/// A page of events, newest first.
#[derive(Debug, Deserialize, SimpleObject)]
#[graphql(rename_fields = "snake_case")]
pub(crate) struct EventPage {
    /// The events of the page.
    pub events: Vec<Event>,
    /// The `cursor` of the next page, `null` after the last one.
    pub next_cursor: Option<String>,
}

/// What Tributary refused and kept (an item of `GET /v1/dead-letters`).
#[derive(Debug, Deserialize, SimpleObject)]
#[graphql(rename_fields = "snake_case")]
pub(crate) struct DeadLetter {
    /// Its id.
    pub id: String,
    /// When it was refused, RFC 3339.
    pub at: String,
    /// The stream it was meant for (its name in the caller's tenant).
    pub stream: String,
    /// Where it was refused: an object tagged by `kind` (`ingest`, `log`, `late`,
    /// `archive`).
    pub origin: Json<Value>,
    /// Why it was refused.
    pub reason: String,
    /// What was refused, as text (at most the kept length).
    pub raw: String,
    /// Whether `raw` was cut.
    pub truncated: bool,
}

/// A page of dead letters, newest first.
#[derive(Debug, Deserialize, SimpleObject)]
#[graphql(rename_fields = "snake_case")]
pub(crate) struct DeadLetterPage {
    /// The letters of the page.
    pub dead_letters: Vec<DeadLetter>,
    /// The `cursor` of the next page, `null` after the last one.
    pub next_cursor: Option<String>,
}

/// A configured pipeline with its cached status (an item of `GET /v1/pipelines`).
#[derive(Debug, Deserialize, SimpleObject)]
#[graphql(rename_fields = "snake_case")]
pub(crate) struct Pipeline {
    /// Its name.
    pub name: String,
    /// The streams it reads.
    pub sources: Vec<String>,
    /// Its filter, canonical, if any.
    pub filter: Option<String>,
    /// Its key expressions, canonical.
    pub key: Vec<String>,
    /// Its window: `{"type", "size_ms", "slide_ms" | "gap_ms"}`.
    pub window: Json<Value>,
    /// Its aggregates, by name.
    pub aggregates: Json<Value>,
    /// Its lookups: `[{"name", "on", "key"}]`.
    pub lookups: Json<Value>,
    /// How late an event may be and still count, in milliseconds.
    pub allowed_lateness_ms: i64,
    /// The typed columns of its results, by name.
    pub columns: Json<Value>,
    /// `"count"` for a pipeline counting events per key declared without aggregates.
    #[serde(default)]
    pub aggregate: Option<String>,
    /// The status the engine last wrote to the cache, `null` when there is none.
    pub status: Option<Json<Value>>,
}

/// A pipeline's results (`GET /v1/pipelines/{name}/results`).
#[derive(Debug, Deserialize, SimpleObject)]
#[graphql(rename_fields = "snake_case")]
pub(crate) struct PipelineResults {
    /// The pipeline.
    pub pipeline: String,
    /// The result rows, ordered by window start then key, as the REST API gives them.
    pub results: Vec<Json<Value>>,
}

/// The answer to an ingestion (`202` of `POST /v1/streams/{stream}/events`).
#[derive(Debug, Deserialize, SimpleObject)]
#[graphql(rename_fields = "snake_case")]
pub(crate) struct Accepted {
    /// How many events were appended.
    pub accepted: u64,
    /// Their ids, in the order sent.
    pub ids: Vec<String>,
}
