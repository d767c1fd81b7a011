//! `GET /openapi.json`: the OpenAPI 3.1 document of every route, generated from the code
//! with `utoipa`: each handler carries its `#[utoipa::path]` (method, path, parameters,
//! body, answers), its request and response types derive `ToSchema`, and [`ApiDoc`] lists
//! them. At serve time the document is completed with one schema per configured pipeline of
//! the `default` tenant (`PipelineResult_<pipeline>`: its typed key and aggregate columns),
//! to which the results endpoint's rows refer.
//!
//! Contract:
//! - The error answers shared by several operations are defined once ([`SHARED`]) as
//!   `components/responses`, and listed per operation through the sets declared here
//!   ([`OpenErrors`], [`V1Errors`], ...): every operation answers 414 and 431 (the edge
//!   refuses large heads on any route), every `/v1` operation 401, 403 and 429, and
//!   each operation the others it can (400, 404, 408, 413, 415, 501, 503). 405 is a
//!   shared response only: it is never the answer to a documented operation.
//! - Operations outside `/v1` are open (`security: []`); `/v1` ones need an API key or a
//!   JWT, both sent as `Authorization: Bearer`.
//! - A test checks that the document describes exactly the routes of [`crate::routes()`].

use std::collections::BTreeMap;
use std::sync::LazyLock;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use tributary_core::pipeline::PipelineSpec;
use tributary_core::ports::DEFAULT_TENANT;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{AdditionalProperties, SchemaFormat};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, HeaderBuilder, Ref, RefOr, Schema};
use utoipa::{IntoResponses, Modify, OpenApi};

use crate::AppState;
use crate::error::PROBLEM_JSON;

/// The document, as generated from the code.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tributary gateway",
        description = "Event ingestion and queries of Tributary, a real-time event processing system. Every /v1 request requires a credential sent as `Authorization: Bearer <credential>`: an API key, or a JWT when `[auth.jwt]` is configured (an unknown /v1 path without one is a 401, not a 404). A node may serve only some of the /v1 routes (ingestion or queries); the others answer 404 there. Every error is an RFC 9457 problem document (`application/problem+json`). Every response carries `x-request-id` (the client's, when valid, or a new UUIDv7) and a W3C `traceparent` (the client's trace id, or a new one, with the gateway's span as parent). Request bodies may be sent with `Content-Encoding: gzip` or `zstd`. Requests with a target over 8 KiB are answered 414, header fields over 32 KiB 431 (problem documents); heads over 64 KiB or that do not parse are refused by the HTTP server itself, with an empty body, and the connection closed. A method a path does not serve is answered 405 (`MethodNotAllowed` in components/responses). Every /v1 operation is rate limited per credential and per client address (429, with `Retry-After` and the `RateLimit-Policy` and `RateLimit` fields of draft-ietf-httpapi-ratelimit-headers).",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    servers((url = "/")),
    paths(
        crate::routes::health::healthz,
        crate::routes::health::readyz,
        crate::routes::health::metrics,
        serve,
        crate::routes::streams::list,
        crate::routes::streams::create,
        crate::routes::streams::describe,
        crate::routes::streams::update,
        crate::routes::streams::delete,
        crate::routes::ingest::ingest,
        crate::routes::streams::recent_events,
        crate::routes::pipelines::list,
        crate::routes::pipelines::results,
        crate::routes::dead_letters::list,
        crate::routes::keys::create,
        crate::routes::keys::list,
        crate::routes::keys::revoke,
    ),
    components(schemas(
        crate::error::ProblemDetails,
        crate::error::MalformedProblem,
        crate::error::InvalidEventsProblem,
        crate::error::NotReadyProblem,
        crate::error::EventError,
        crate::error::Checks,
        crate::error::CheckOutcome,
        schemas::Timestamp,
        schemas::TimeParam,
        schemas::StreamName,
        schemas::Scope,
        schemas::EventInput,
        schemas::Event,
        schemas::WindowResult,
        schemas::PipelineStatus,
        schemas::DeadLetter,
        schemas::DeadLetterOrigin,
    )),
    modifiers(&Shared),
    security(("bearerAuth" = []), ("jwt" = [])),
    tags(
        (name = "ingest", description = "Sending events."),
        (name = "streams", description = "Streams and their stored events."),
        (name = "pipelines", description = "Pipelines and their window results."),
        (name = "dead-letters", description = "What Tributary refused, kept with the reason."),
        (name = "keys", description = "API keys: issue, list, revoke (admin scope)."),
        (name = "operations", description = "Health, readiness, metrics and this document."),
    ),
)]
pub(crate) struct ApiDoc;

/// The document without the schemas of configured pipelines, as JSON text.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|_| "{}".to_owned())
});

/// The OpenAPI 3.1 document describing the gateway, as JSON text, without the schemas of
/// configured pipelines.
#[must_use]
pub fn openapi_json() -> &'static str {
    &DOCUMENT
}

/// The document with a result schema for each of `pipelines`.
#[must_use]
pub fn document(pipelines: &[PipelineSpec]) -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    let mut refs = Vec::new();
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        for spec in pipelines {
            let name = format!("PipelineResult_{}", spec.name);
            refs.push(json!({ "$ref": format!("#/components/schemas/{name}") }));
            schemas.insert(name, result_schema(spec));
        }
    }
    if !refs.is_empty()
        && let Some(items) = doc.pointer_mut("/components/schemas/Results/properties/results/items")
    {
        *items = json!({ "anyOf": refs });
    }
    doc
}

/// The JSON Schema of one pipeline's result rows.
fn result_schema(spec: &PipelineSpec) -> Value {
    let schema = spec.schema();
    let mut properties = serde_json::Map::new();
    let mut required = vec![
        "pipeline",
        "window_start",
        "window_end",
        "key",
        "revision",
        "closed",
    ]
    .into_iter()
    .map(|s| Value::String(s.to_owned()))
    .collect::<Vec<_>>();
    properties.insert("pipeline".into(), json!({ "const": spec.name }));
    for time in ["window_start", "window_end", "updated_at"] {
        properties.insert(
            time.into(),
            json!({ "$ref": "#/components/schemas/Timestamp" }),
        );
    }
    properties.insert("key".into(), json!({ "type": "string" }));
    properties.insert(
        "revision".into(),
        json!({ "type": "integer", "minimum": 1 }),
    );
    properties.insert("closed".into(), json!({ "type": "boolean" }));
    let columns = schema
        .key_columns()
        .map(|(_, c)| (c, "key field"))
        .chain(schema.aggregates.iter().map(|c| (c, "aggregate")));
    for (column, what) in columns {
        properties.insert(
            column.name.clone(),
            json!({
                "type": [column.ty.json_type(), "null"],
                "description": format!("The {what} `{}`.", column.name),
            }),
        );
        required.push(Value::String(column.name.clone()));
    }
    json!({
        "type": "object",
        "description": format!("A result row of pipeline {}.", spec.name),
        "required": required,
        "properties": properties,
    })
}

/// `GET /openapi.json`.
///
/// The document is open (no credential), so it holds the result schemas of the
/// [`DEFAULT_TENANT`]'s pipelines only: it must not tell anyone of other tenants' pipelines
/// (see [`crate::tenancy`]).
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    operation_id = "openapi",
    summary = "This OpenAPI document.",
    description = "Open (no credential): it holds the result schemas (`PipelineResult_<pipeline>`) of the `default` tenant's pipelines only.",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document.", body = Object),
        OpenErrors,
    ),
)]
pub(crate) async fn serve(State(state): State<AppState>) -> Json<Value> {
    let pipelines: Vec<PipelineSpec> = state.pipelines_of(DEFAULT_TENANT).cloned().collect();
    Json(document(&pipelines))
}

// ------------------------------------------------------------------ shared responses

/// One error response shared by several operations, in `components/responses`.
struct SharedResponse {
    /// Its name there.
    name: &'static str,
    /// The status it answers.
    status: u16,
    description: &'static str,
    /// Its header fields: name and description (`Retry-After` is an integer, the others
    /// strings).
    headers: &'static [(&'static str, &'static str)],
}

const RETRY_AFTER: (&str, &str) = ("Retry-After", "Seconds to wait before retrying.");

/// Every shared error response.
const SHARED: &[SharedResponse] = &[
    SharedResponse {
        name: "BadRequest",
        status: 400,
        description: "A path or query parameter is invalid (`parameter` names it when known).",
        headers: &[],
    },
    SharedResponse {
        name: "Unauthorized",
        status: 401,
        description: "No valid credential was sent.",
        headers: &[(
            "WWW-Authenticate",
            "`Bearer realm=\"tributary\"`, with `error=\"invalid_token\"` when a credential was sent but not accepted.",
        )],
    },
    SharedResponse {
        name: "Forbidden",
        status: 403,
        description: "The credential is valid but lacks the scope the route needs (`required_scope`): `ingest` to send events, `read` for the other `/v1` reads, `admin` for `/v1/keys` (admin implies every scope).",
        headers: &[],
    },
    SharedResponse {
        name: "NotFound",
        status: 404,
        description: "No such stream or pipeline (also another tenant's), or a route this node does not serve (see the API description).",
        headers: &[],
    },
    SharedResponse {
        name: "MethodNotAllowed",
        status: 405,
        description: "The path exists but is not served with this method (type `urn:tributary:problem:method-not-allowed`, `instance` the path). A /v1 path without a valid credential is a 401 first. Any documented path answers it for a method its path item does not list, so it is documented here once rather than on operations.",
        headers: &[],
    },
    SharedResponse {
        name: "RequestTimeout",
        status: 408,
        description: "The request body did not arrive in full within `[http] body_timeout` (`timeout_ms`); the connection is closed.",
        headers: &[("Connection", "`close`.")],
    },
    SharedResponse {
        name: "PayloadTooLarge",
        status: 413,
        description: "The body is larger than the configured limit, as sent or once decoded (`limit_bytes`), or holds more events than `[http] max_events_per_request` (`limit_events`, type `urn:tributary:problem:too-many-events`).",
        headers: &[],
    },
    SharedResponse {
        name: "UriTooLong",
        status: 414,
        description: "The request target (path and query) is longer than 8 KiB (`limit_bytes`).",
        headers: &[],
    },
    SharedResponse {
        name: "UnsupportedMediaType",
        status: 415,
        description: "The Content-Type is missing or not accepted (`accepted` lists the accepted ones), or the Content-Encoding is not `gzip`, `zstd` or `identity` (`accepted_encodings`).",
        headers: &[],
    },
    SharedResponse {
        name: "TooManyRequests",
        status: 429,
        description: "The credential or the client address exceeded its quota (type `urn:tributary:problem:rate-limited`, with `policy` and `retry_after_ms`); retry after Retry-After seconds.",
        headers: &[
            RETRY_AFTER,
            (
                "RateLimit-Policy",
                "The quota policies of draft-ietf-httpapi-ratelimit-headers-10: per credential (named after the route's scope) and per client address, each with `q` (the burst) and `w` (the seconds it takes to refill), e.g. `\"read\";q=2000;w=2, \"address\";q=4000;w=2`.",
            ),
            (
                "RateLimit",
                "The state of each policy of RateLimit-Policy: `r`, the requests left now, and `t`, the seconds until the burst is full again, e.g. `\"read\";r=1999;t=1, \"address\";r=3999;t=1`.",
            ),
        ],
    },
    SharedResponse {
        name: "HeaderFieldsTooLarge",
        status: 431,
        description: "The request's header fields take more than 32 KiB (`limit_bytes`).",
        headers: &[],
    },
    SharedResponse {
        name: "Conflict",
        status: 409,
        description: "The change contradicts the stream's state (type `urn:tributary:problem:stream-conflict`): the caller's tenant has a stream of its name (another tenant's names are never in the way), a pipeline reads it, or the config file defines what the change would alter.",
        headers: &[],
    },
    SharedResponse {
        name: "InvalidStream",
        status: 422,
        description: "The stream's definition is invalid (type `urn:tributary:problem:invalid-stream`): its name, schema, partitions or retention, or settings the log refused (such as more replicas than brokers), with the reason; or the body has an unknown member or a wrong type (`invalid-body`).",
        headers: &[],
    },
    SharedResponse {
        name: "NoStreamStore",
        status: 501,
        description: "This node has no stream store, so it cannot create, change or delete streams.",
        headers: &[],
    },
    SharedResponse {
        name: "NoKeyStore",
        status: 501,
        description: "This node has no key store, so it cannot issue, list or revoke keys.",
        headers: &[],
    },
    SharedResponse {
        name: "Unavailable",
        status: 503,
        description: "A backing service is temporarily unavailable, or the node has no room for the request's body or page right now (type `urn:tributary:problem:overloaded`); retry after Retry-After seconds.",
        headers: &[RETRY_AFTER],
    },
];

impl SharedResponse {
    /// The response object: a problem document, with its header fields.
    fn response(&self) -> Response {
        let problem = ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("Problem")))
            .build();
        self.headers
            .iter()
            .fold(
                ResponseBuilder::new()
                    .description(self.description)
                    .content(PROBLEM_JSON, problem),
                |response, (name, description)| {
                    let schema = if *name == "Retry-After" {
                        utoipa::openapi::Type::Integer
                    } else {
                        utoipa::openapi::Type::String
                    };
                    let header = HeaderBuilder::new()
                        .schema(utoipa::openapi::ObjectBuilder::new().schema_type(schema))
                        .description(Some(*description))
                        .build();
                    response.header(*name, header)
                },
            )
            .build()
    }
}

/// The answers, by status, that refer to the shared responses `names`.
fn shared_refs(names: &[&str]) -> BTreeMap<String, RefOr<Response>> {
    SHARED
        .iter()
        .filter(|r| names.contains(&r.name))
        .map(|r| {
            (
                r.status.to_string(),
                RefOr::Ref(Ref::from_response_name(r.name)),
            )
        })
        .collect()
}

/// Declares a set of shared error responses that an operation lists in its `responses(..)`.
macro_rules! error_set {
    ($($(#[$doc:meta])* $set:ident = [$($name:ident),+ $(,)?];)+) => {$(
        $(#[$doc])*
        pub(crate) struct $set;

        impl IntoResponses for $set {
            fn responses() -> BTreeMap<String, RefOr<Response>> {
                shared_refs(&[$(stringify!($name)),+])
            }
        }
    )+};
}

error_set! {
    /// What any operation may answer: a head too large (414, 431).
    OpenErrors = [UriTooLong, HeaderFieldsTooLarge];
    /// What any `/v1` operation may answer besides: no or a wrong credential (401), a
    /// missing scope (403), the rate limit (429).
    V1Errors = [Unauthorized, Forbidden, UriTooLong, TooManyRequests, HeaderFieldsTooLarge];
    /// An invalid path or query parameter (400).
    BadRequest = [BadRequest];
    /// An unknown (or another tenant's) stream or pipeline (404).
    NotFound = [NotFound];
    /// A body that is too large or of a type not read (413, 415).
    BodyErrors = [PayloadTooLarge, UnsupportedMediaType];
    /// A body that did not arrive in time (408).
    RequestTimeout = [RequestTimeout];
    /// A node without a key store (501).
    NoKeyStore = [NoKeyStore];
    /// A stream change that contradicts its state (409), on a node that has no stream
    /// store (501).
    StreamChanges = [Conflict, NoStreamStore];
    /// An invalid stream definition (422).
    InvalidStream = [InvalidStream];
    /// A backing service down, or no room (503).
    Unavailable = [Unavailable];
}

/// Adds what the derive does not: the shared responses, the security schemes, and open
/// operations outside `/v1`.
struct Shared;

impl Modify for Shared {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for shared in SHARED {
            components
                .responses
                .insert(shared.name.to_owned(), RefOr::T(shared.response()));
        }
        components.add_security_scheme(
            "bearerAuth",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("trb_<id>_<secret>")
                    .description(Some("An API key (`trb_<id>_<secret>`, issued by `POST /v1/keys`, or a configured admin key such as the value of TRIBUTARY_BOOTSTRAP_API_KEY). Each route needs a scope: `ingest`, `read` or `admin`."))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "jwt",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("A JWT when `[auth.jwt]` is configured: verified against its JWKS, with its pinned algorithm, `exp`, `nbf`, `iss` and `aud`; its scopes and tenant come from its claims."))
                    .build(),
            ),
        );
        // A problem's `type` is a URI, and it may have members besides; so may a result row.
        for (name, uri) in [("Problem", Some("type")), ("WindowResult", None)] {
            if let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(name) {
                object.additional_properties = Some(Box::new(AdditionalProperties::FreeForm(true)));
                if let Some(RefOr::T(Schema::Object(member))) =
                    uri.and_then(|m| object.properties.get_mut(m))
                {
                    member.format = Some(SchemaFormat::Custom("uri".to_owned()));
                }
            }
        }
        for (path, item) in &mut openapi.paths.paths {
            if crate::requires_auth(path) {
                continue;
            }
            for operation in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
                &mut item.head,
                &mut item.options,
            ]
            .into_iter()
            .flatten()
            {
                operation.security = Some(Vec::new());
            }
        }
    }
}

/// Schemas of the core's types, as the gateway encodes them (the core knows nothing of
/// OpenAPI). Documentation only: nothing is encoded from these.
pub(crate) mod schemas {
    #![allow(dead_code)]

    use serde_json::{Map, Value};
    use utoipa::ToSchema;
    use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
    use utoipa::openapi::{RefOr, Schema};

    /// Implements `ToSchema` for a string type with `description`, and an optional format
    /// and pattern.
    macro_rules! string_schema {
        ($name:ident, $description:expr, $format:expr, $pattern:expr) => {
            impl utoipa::PartialSchema for $name {
                fn schema() -> RefOr<Schema> {
                    let format: Option<KnownFormat> = $format;
                    let pattern: Option<&str> = $pattern;
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .format(format.map(SchemaFormat::KnownFormat))
                        .pattern(pattern)
                        .description(Some($description))
                        .into()
                }
            }

            impl ToSchema for $name {}
        };
    }

    /// A time: RFC 3339, UTC, with milliseconds.
    pub(crate) struct Timestamp;
    string_schema!(
        Timestamp,
        "RFC 3339, UTC, with milliseconds.",
        Some(KnownFormat::DateTime),
        None
    );

    /// A time parameter.
    pub(crate) struct TimeParam;
    string_schema!(
        TimeParam,
        "An RFC 3339 date-time or integer epoch milliseconds, from 0000-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z.",
        None,
        None
    );

    /// A stream's name.
    pub(crate) struct StreamName;
    string_schema!(
        StreamName,
        "A stream's name: lowercase letters, digits, `_` and `-`, at most 64 characters.",
        None,
        Some("^[a-z0-9][a-z0-9_-]{0,63}$")
    );

    /// `ingest`: send events; `read`: every other `GET` of `/v1`; `admin`: manage keys, and
    /// everything else.
    #[derive(ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub(crate) enum Scope {
        Ingest,
        Read,
        Admin,
    }

    /// An event's time as sent: RFC 3339 or epoch milliseconds.
    #[derive(ToSchema)]
    #[serde(untagged)]
    pub(crate) enum EventTime {
        #[schema(format = DateTime)]
        Text(String),
        Millis(i64),
    }

    /// An event to ingest. Encoded as compact JSON with its id, stream and ts, an event may
    /// take at most 1000000 bytes.
    #[derive(ToSchema)]
    #[serde(deny_unknown_fields)]
    pub(crate) struct EventInput {
        /// Unique within the stream; a UUIDv7 is generated when absent.
        #[schema(min_length = 1, max_length = 128)]
        id: Option<String>,
        /// Event time: RFC 3339 or epoch milliseconds, from 0000-01-01T00:00:00Z to
        /// 9999-12-31T23:59:59.999Z (-62167219200000 to 253402300799999 ms), and at most
        /// `[http] max_ts_ahead` (default one hour) ahead of the server's clock; the time of
        /// ingestion when absent.
        #[schema(inline)]
        ts: Option<EventTime>,
        /// The grouping key: at most 256 bytes, without NUL characters.
        #[schema(max_length = 256)]
        key: Option<String>,
        /// Optional; must equal the stream of the path.
        stream: Option<String>,
        /// The event's data.
        payload: Map<String, Value>,
    }

    /// A stored event.
    #[derive(ToSchema)]
    pub(crate) struct Event {
        /// Unique within its stream.
        id: String,
        stream: StreamName,
        /// Event time.
        ts: Timestamp,
        /// The grouping key, when the source gave one.
        key: Option<String>,
        /// The event's data.
        payload: Map<String, Value>,
    }

    /// One window's result for one key. Besides the fields listed, each key field and each
    /// aggregate of the pipeline is a property with its typed value (or null); the
    /// pipeline's own schema is `PipelineResult_<pipeline>`. A pipeline without declared
    /// aggregates has `count`.
    #[derive(ToSchema)]
    pub(crate) struct WindowResult {
        pipeline: String,
        window_start: Timestamp,
        window_end: Timestamp,
        /// The group key's text: the key field's text for one field (empty for NULL), a
        /// JSON array of the values for several.
        key: String,
        /// Events counted (pipelines without declared aggregates).
        #[schema(minimum = 0)]
        count: Option<u64>,
        /// Whether the watermark has passed the window's end: final, unless a late event
        /// within the allowed lateness updates it (a new revision).
        closed: bool,
        /// 1 when first written, +1 at each later write (a provisional update, the window
        /// closing, a late event within the allowed lateness).
        #[schema(minimum = 1)]
        revision: u64,
        updated_at: Option<Timestamp>,
    }

    /// A pipeline's live status, as the processor last published it.
    #[derive(ToSchema)]
    pub(crate) struct PipelineStatus {
        pipeline: String,
        /// Epoch of the last committed checkpoint.
        epoch: u64,
        /// The watermark at that checkpoint (null before any event).
        #[schema(required = true)]
        watermark: Option<Timestamp>,
        /// Wall-clock time of the commit.
        committed_at: Timestamp,
        /// Events dropped as late so far.
        late_events: u64,
        /// Duplicate events ignored so far.
        duplicates: u64,
        /// Events the pipeline's filter left out so far.
        filtered: Option<u64>,
        /// The rows written by that checkpoint (empty when the status was published at a
        /// restore).
        latest: Vec<WindowResult>,
    }

    /// Something refused, kept with the reason.
    #[derive(ToSchema)]
    pub(crate) struct DeadLetter {
        /// Unique; derived from what was refused where a replay could refuse it again, so
        /// each refusal is kept once.
        id: String,
        /// When it was refused.
        at: Timestamp,
        /// The stream it was sent to or read from, as given.
        stream: String,
        origin: DeadLetterOrigin,
        /// Why it was refused, for a person to read.
        reason: String,
        /// What was refused, as text (bytes that are not UTF-8 replaced by U+FFFD), at most
        /// 1 MiB; empty for a body too large to be read.
        raw: String,
        /// Whether `raw` was cut off.
        truncated: bool,
    }

    /// Where it was refused, tagged by `kind`.
    #[derive(ToSchema)]
    #[serde(tag = "kind", rename_all = "snake_case")]
    pub(crate) enum DeadLetterOrigin {
        /// An ingestion request refused as a whole.
        Ingest {
            /// The HTTP status the request was answered with.
            status: u16,
        },
        /// A log record that holds no event of its stream.
        Log { partition: u32, offset: u64 },
        /// An event a pipeline did not count because its window had already closed.
        Late {
            pipeline: String,
            window_start: Timestamp,
            /// The pipeline's watermark when the event arrived.
            watermark: Timestamp,
        },
        /// A raw event the document store refused.
        Archive,
        /// A record of a file read by `tributary ingest` that is not a valid event.
        File {
            /// The file, as named on the command line of `tributary ingest`.
            path: String,
            /// The line the record starts on (of the decompressed text).
            #[schema(minimum = 1)]
            line: u64,
        },
        /// A record of a Kafka topic that is not a valid event.
        Kafka {
            /// The topic a Kafka source read it from.
            topic: String,
            #[schema(minimum = 0)]
            partition: i32,
            #[schema(minimum = 0)]
            offset: i64,
        },
        /// A message of an MQTT topic that is not a valid event.
        Mqtt {
            /// The topic an MQTT source read it from (the message's topic, not the
            /// filter).
            topic: String,
        },
    }

    /// A page of stored events (as `crate::routes::Listing` writes it).
    #[derive(ToSchema)]
    pub(crate) struct EventPage {
        events: Vec<Event>,
        /// Pass as `cursor` for the next page; null on the last page.
        #[schema(required = true)]
        next_cursor: Option<String>,
    }

    /// A page of dead letters (as `crate::routes::Listing` writes it).
    #[derive(ToSchema)]
    pub(crate) struct DeadLetterPage {
        dead_letters: Vec<DeadLetter>,
        /// Pass as `cursor` for the next page; null on the last page.
        #[schema(required = true)]
        next_cursor: Option<String>,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The generated document keeps everything the hand-written one had: its schemas,
    /// each operation's parameters and the headers of its shared answers.
    #[test]
    fn the_document_holds_every_schema_parameter_and_header() {
        let doc: Value = serde_json::from_str(openapi_json()).unwrap_or_default();
        assert_eq!(doc["openapi"], "3.1.0");
        let schemas = &doc["components"]["schemas"];
        for name in [
            "Accepted",
            "ApiKey",
            "CheckOutcome",
            "Checks",
            "CreatedKey",
            "DeadLetter",
            "DeadLetterOrigin",
            "DeadLetterPage",
            "Event",
            "EventError",
            "EventInput",
            "EventPage",
            "Health",
            "InvalidEventsProblem",
            "KeyList",
            "KeyRequest",
            "MalformedProblem",
            "NotReadyProblem",
            "PipelineList",
            "PipelineStatus",
            "Problem",
            "Readiness",
            "Results",
            "Scope",
            "Stream",
            "StreamList",
            "StreamName",
            "StreamPatch",
            "StreamRequest",
            "TimeParam",
            "Timestamp",
            "WindowResult",
        ] {
            assert!(schemas[name].is_object(), "schema {name}");
        }
        assert_eq!(schemas["Problem"]["properties"]["type"]["format"], "uri");
        assert_eq!(schemas["Problem"]["additionalProperties"], true);
        assert_eq!(schemas["EventInput"]["additionalProperties"], false);
        assert_eq!(
            schemas["DeadLetterOrigin"]["oneOf"]
                .as_array()
                .map(Vec::len),
            Some(7)
        );
        let parameters = |path: &str, method: &str| -> Vec<String> {
            doc["paths"][path][method]["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    format!(
                        "{}:{}",
                        p["in"].as_str().unwrap_or(""),
                        p["name"].as_str().unwrap_or("")
                    )
                })
                .collect()
        };
        for (path, method, expected) in [
            ("/v1/streams/{stream}/events", "post", &["path:stream"][..]),
            (
                "/v1/streams/{stream}/events",
                "get",
                &["path:stream", "query:limit", "query:cursor"][..],
            ),
            (
                "/v1/pipelines/{name}/results",
                "get",
                &[
                    "query:from",
                    "query:to",
                    "query:key",
                    "query:limit",
                    "path:name",
                ][..],
            ),
            (
                "/v1/dead-letters",
                "get",
                &["query:limit", "query:cursor"][..],
            ),
            ("/v1/keys/{id}", "delete", &["path:id"][..]),
        ] {
            let mut found = parameters(path, method);
            let mut expected: Vec<String> = expected.iter().map(|s| (*s).to_owned()).collect();
            found.sort();
            expected.sort();
            assert_eq!(found, expected, "{method} {path}");
        }
        let limit = &doc["paths"]["/v1/pipelines/{name}/results"]["get"]["parameters"][3];
        assert_eq!(
            (
                &limit["schema"]["minimum"],
                &limit["schema"]["maximum"],
                &limit["schema"]["default"]
            ),
            (&json!(1), &json!(10000), &json!(1000))
        );
        let responses = &doc["components"]["responses"];
        assert!(responses["Unavailable"]["headers"]["Retry-After"].is_object());
        assert!(responses["Unauthorized"]["headers"]["WWW-Authenticate"].is_object());
        assert!(responses["TooManyRequests"]["headers"]["RateLimit-Policy"].is_object());
        let created = &doc["paths"]["/v1/keys"]["post"]["responses"]["201"];
        assert!(created["headers"]["Location"].is_object());
        let ingest = &doc["paths"]["/v1/streams/{stream}/events"]["post"]["requestBody"]["content"];
        for media in [
            "application/json",
            "application/x-ndjson",
            "application/ndjson",
            "application/jsonl",
        ] {
            assert!(ingest[media].is_object(), "{media}");
        }
        // Open operations need no credential; /v1 ones need a key or a JWT.
        assert_eq!(doc["paths"]["/healthz"]["get"]["security"], json!([]));
        assert_eq!(doc["security"], json!([{"bearerAuth": []}, {"jwt": []}]));
    }
}
