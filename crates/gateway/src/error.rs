//! The gateway's one error type, rendered as RFC 9457 problem details.
//!
//! Contract:
//! - Every error response of the gateway is `application/problem+json` with the members
//!   `type`, `title`, `status` and `detail` (plus `instance` where the gateway knows it and
//!   extension members such as `errors`, `line`, `column` or `checks`).
//! - Bad input is a 4xx, never a 500. A [`PortError`] is shown to the client only as a
//!   generic message (503 with `Retry-After` when retrying may help); its full source chain
//!   goes to the server log, never to the client.
//! - Errors are logged once: [`ApiError::into_response`] attaches a [`LoggedError`] to the
//!   response, and the request's trace line (see `crate::trace`) writes it.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use tributary_core::parse::{InvalidEvents, ParseError};
use tributary_core::ports::PortError;

use crate::catalog::CatalogError;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Prefix of every problem `type` URI; the suffix names the problem (`unknown-stream`, ...).
pub const PROBLEM_TYPE_PREFIX: &str = "urn:tributary:problem:";

/// Seconds a client is asked to wait before retrying after a 503.
const RETRY_AFTER_SECS: &str = "1";

/// The outcome of one dependency check of `/readyz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub enum CheckOutcome {
    /// The dependency answered.
    #[serde(rename = "ok")]
    Ok,
    /// The dependency answered with an error.
    #[serde(rename = "unavailable")]
    Failed,
    /// The dependency did not answer in time.
    #[serde(rename = "timeout")]
    TimedOut,
}

/// The outcome of each check of `/readyz`.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Checks {
    /// The log (Kafka, or the embedded log).
    pub(crate) log: CheckOutcome,
    /// The analytics store (PostgreSQL, or SQLite).
    pub(crate) analytics: CheckOutcome,
    /// The document store (MongoDB, or SQLite).
    pub(crate) documents: CheckOutcome,
    /// The cache (Redis, or in process).
    pub(crate) cache: CheckOutcome,
    /// The sources the node runs besides HTTP, as one check, failed when one has failed
    /// (absent without such sources).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) sources: Option<CheckOutcome>,
}

/// The shape of every error body: RFC 9457 problem details. Unknown routes are answered
/// 404 and unsupported methods 405 with this shape too. (The body is built by
/// `ApiError::into_response`; this type documents it.)
#[derive(utoipa::ToSchema)]
#[schema(as = Problem)]
#[allow(dead_code)]
pub(crate) struct ProblemDetails {
    /// `urn:tributary:problem:<slug>`, e.g. `urn:tributary:problem:unknown-stream`.
    #[serde(rename = "type")]
    kind: String,
    /// A short summary of the problem type.
    title: String,
    /// The HTTP status.
    status: u16,
    /// What went wrong, for a person to read.
    detail: String,
    /// The path the problem is about, when known.
    instance: Option<String>,
}

/// A 400 for a malformed body: a problem with the position of the fault.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct MalformedProblem {
    #[serde(flatten)]
    problem: ProblemDetails,
    /// 1-based line of the body.
    line: Option<u64>,
    /// 1-based column within the line.
    column: Option<u64>,
    /// The key an object holds twice (type `urn:tributary:problem:duplicate-key`).
    key: Option<String>,
}

/// One problem of one invalid event.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct EventError {
    /// Position of the event in the request, from 0.
    index: u64,
    /// The field at fault; empty for the event as a whole.
    field: String,
    /// Why.
    reason: String,
}

/// A 422 for invalid events.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct InvalidEventsProblem {
    #[serde(flatten)]
    problem: ProblemDetails,
    /// The first 100 errors, in the order of the body.
    errors: Vec<EventError>,
    /// How many errors were found in all.
    error_count: u64,
    /// How many events are invalid.
    invalid_events: u64,
}

/// A 503 of `/readyz`: a problem with the outcome of each check.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct NotReadyProblem {
    #[serde(flatten)]
    problem: ProblemDetails,
    /// The outcome of each check (absent when the node drains).
    checks: Option<Checks>,
    /// Each source's health, by name (absent without sources besides HTTP, and when the
    /// node drains).
    #[schema(value_type = Option<BTreeMap<String, crate::routes::health::SourceHealth>>)]
    sources: Option<BTreeMap<String, String>>,
}

impl CheckOutcome {
    /// The outcome as shown to clients.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Failed => "unavailable",
            Self::TimedOut => "timeout",
        }
    }
}

/// Everything a gateway handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No `Authorization: Bearer` header, or a key that is not accepted.
    #[error("a valid API key is required")]
    Unauthorized {
        /// Whether a bearer token was presented at all (it then was wrong).
        presented: bool,
    },
    /// A valid credential lacking the scope the route needs.
    #[error("this credential lacks the scope {required}")]
    Forbidden {
        /// The scope the route needs.
        required: tributary_core::ports::Scope,
    },
    /// No issued API key has this id (in the caller's tenant).
    #[error("no API key with id {id:?}")]
    UnknownKey {
        /// The id from the request.
        id: String,
    },
    /// API keys cannot be issued: this node has no key store.
    #[error("this node has no key store")]
    NoKeyStore,
    /// Streams cannot be created, changed or deleted: this node has no stream store.
    #[error("this node has no stream store")]
    NoStreamStore,
    /// The stream change contradicts the stream's state (its name exists, a pipeline reads
    /// it, the config file defines it, ...).
    #[error("{reason}")]
    StreamConflict {
        /// Why, for a person to read.
        reason: String,
    },
    /// The stream's definition is invalid (its schema, partitions, retention, or settings
    /// the log refused).
    #[error("invalid stream definition: {reason}")]
    InvalidStream {
        /// Why, for a person to read.
        reason: String,
    },
    /// A JSON request body that does not decode into what the endpoint reads (malformed,
    /// an unknown or missing field, a wrong type, no JSON content type).
    #[error("invalid JSON body")]
    Json(#[source] axum::extract::rejection::JsonRejection),
    /// No route has this path.
    #[error("no route for {path}")]
    RouteNotFound {
        /// The requested path.
        path: String,
    },
    /// The route exists but not for this method.
    #[error("method {method} is not allowed on {path}")]
    MethodNotAllowed {
        /// The requested method.
        method: Method,
        /// The requested path.
        path: String,
    },
    /// The stream is not configured (or its name is not a valid stream name).
    #[error("no stream named {name:?}")]
    UnknownStream {
        /// The name from the request.
        name: String,
    },
    /// The pipeline is not configured.
    #[error("no pipeline named {name:?}")]
    UnknownPipeline {
        /// The name from the request.
        name: String,
    },
    /// The body's content type is missing or not one the endpoint reads.
    #[error("unsupported content type {}", found.as_deref().unwrap_or("(none)"))]
    UnsupportedMediaType {
        /// The `Content-Type` the client sent, if any.
        found: Option<String>,
        /// The media types the endpoint accepts.
        accepted: &'static [&'static str],
    },
    /// The body is larger than the configured limit.
    #[error("the request body exceeds {limit} bytes")]
    PayloadTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The body could not be read (other than for its size or its time).
    #[error("the request body could not be read")]
    BodyUnreadable(#[source] axum::Error),
    /// The body did not arrive within the configured time.
    #[error("the request body did not arrive within {} ms", timeout.as_millis())]
    BodyTimeout {
        /// The time allowed.
        timeout: std::time::Duration,
    },
    /// The body's `Content-Encoding` is not one the gateway decodes.
    #[error("unsupported content encoding {found:?}")]
    UnsupportedEncoding {
        /// The `Content-Encoding` the client sent.
        found: String,
    },
    /// The body is not valid data of its `Content-Encoding`.
    #[error("the request body could not be decoded from its content encoding")]
    BodyUndecodable(#[source] axum::BoxError),
    /// The request target (path and query) is longer than the gateway reads.
    #[error("the request target exceeds {limit} bytes")]
    UriTooLong {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The request's header fields are larger than the gateway reads.
    #[error("the request header fields exceed {limit} bytes")]
    HeadersTooLarge {
        /// The limit of their size (names, values and separators), in bytes.
        limit: usize,
    },
    /// The node holds as many request bodies in memory as it may; retry later.
    #[error("the node is at its limit of request bodies in memory")]
    Overloaded,
    /// A response could not be encoded (a bug).
    #[error("a response could not be encoded")]
    Encode(#[source] serde_json::Error),
    /// A path parameter could not be decoded.
    #[error("invalid path parameter")]
    Path(#[source] PathRejection),
    /// The query string could not be decoded.
    #[error("invalid query string")]
    Query(#[source] QueryRejection),
    /// A query parameter decoded but is out of range or unparsable.
    #[error("invalid parameter {name}: {reason}")]
    InvalidParameter {
        /// The parameter.
        name: &'static str,
        /// What is wrong, for a person to read.
        reason: String,
    },
    /// The body held no valid batch of events.
    #[error(transparent)]
    Events(#[from] ParseError),
    /// A task the handler ran on the blocking pool panicked or was cancelled.
    #[error("a blocking task failed")]
    TaskFailed(#[source] tokio::task::JoinError),
    /// A port (log, stores, cache) failed.
    #[error(transparent)]
    Dependency(#[from] PortError),
    /// `/readyz`: at least one dependency is not ready.
    #[error("not ready")]
    NotReady {
        /// Each dependency's outcome, by name.
        checks: BTreeMap<&'static str, CheckOutcome>,
        /// Each source's health, by name, when there are sources.
        sources: Option<BTreeMap<String, &'static str>>,
        /// The failures, for the server log only.
        causes: Vec<String>,
    },
    /// `/readyz`: the node is shutting down (draining); a load balancer should send its
    /// requests to another one.
    #[error("shutting down")]
    ShuttingDown,
    /// The credential or the client address made more requests than its quota allows
    /// (see `crate::rate_limit`).
    #[error("rate limit {policy:?} exceeded")]
    RateLimited {
        /// The quota policy that refused: a scope, or `address`.
        policy: &'static str,
        /// When a request would be allowed again.
        retry_after: std::time::Duration,
    },
}

/// An error attached to a response so that the request's single log line can report it.
#[derive(Debug, Clone)]
pub struct LoggedError {
    /// The error with its whole source chain.
    pub message: String,
    /// Whether the fault is the server's or a dependency's (5xx) rather than the client's.
    pub server_fault: bool,
    /// The problem type's slug (`invalid-events`, `dependency-unavailable`...): the
    /// request log's `error.type`.
    pub kind: &'static str,
}

/// An RFC 9457 problem document.
struct Problem {
    status: StatusCode,
    slug: &'static str,
    title: &'static str,
    detail: String,
    instance: Option<String>,
    extensions: Map<String, Value>,
}

impl Problem {
    fn new(status: StatusCode, slug: &'static str, title: &'static str, detail: String) -> Self {
        Self {
            status,
            slug,
            title,
            detail,
            instance: None,
            extensions: Map::new(),
        }
    }

    /// A 500 that tells the client nothing of its cause.
    fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal Server Error",
            "the request could not be completed; the incident was logged".into(),
        )
    }

    fn with(mut self, member: &str, value: Value) -> Self {
        self.extensions.insert(member.to_owned(), value);
        self
    }

    fn body(self) -> Value {
        let mut body = Map::new();
        body.insert(
            "type".into(),
            json!(format!("{PROBLEM_TYPE_PREFIX}{}", self.slug)),
        );
        body.insert("title".into(), json!(self.title));
        body.insert("status".into(), json!(self.status.as_u16()));
        body.insert("detail".into(), json!(self.detail));
        if let Some(instance) = self.instance {
            body.insert("instance".into(), json!(instance));
        }
        for (member, value) in self.extensions {
            body.entry(member).or_insert(value);
        }
        Value::Object(body)
    }
}

pub(crate) use tributary_core::dead_letter::error_chain;

/// The `Content-Encoding`s of request bodies the gateway decodes.
pub(crate) const ACCEPTED_ENCODINGS: &[&str] = &["gzip", "zstd", "identity"];

/// The detail of a 422: how many errors, and which are listed.
fn invalid_detail(invalid: &InvalidEvents) -> String {
    let listed = if invalid.errors.len() < invalid.error_count {
        format!("; the first {} are listed", invalid.errors.len())
    } else {
        String::new()
    };
    format!("{invalid}{listed}; no event of the request was accepted")
}

impl From<CatalogError> for ApiError {
    fn from(error: CatalogError) -> Self {
        match error {
            CatalogError::NoStore => Self::NoStreamStore,
            CatalogError::Unknown(name) => Self::UnknownStream { name },
            CatalogError::Conflict(reason) => Self::StreamConflict { reason },
            CatalogError::Invalid(reason) => Self::InvalidStream { reason },
            CatalogError::Port(error) => Self::Dependency(error),
        }
    }
}

impl ApiError {
    /// The HTTP status this error is answered with.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        self.problem().status
    }

    fn problem(&self) -> Problem {
        use StatusCode as S;
        match self {
            Self::Unauthorized { .. } => Problem::new(
                S::UNAUTHORIZED,
                "unauthorized",
                "Unauthorized",
                "send a valid API key as 'Authorization: Bearer <key>'".into(),
            ),
            Self::Forbidden { required } => Problem::new(
                S::FORBIDDEN,
                "forbidden",
                "Forbidden",
                format!("{self}; use a credential with the scope {required} (or admin)"),
            )
            .with("required_scope", json!(required)),
            Self::UnknownKey { .. } => Problem::new(
                S::NOT_FOUND,
                "unknown-key",
                "Unknown API key",
                self.to_string(),
            ),
            Self::NoKeyStore => Problem::new(
                S::NOT_IMPLEMENTED,
                "no-key-store",
                "Not Implemented",
                "API keys cannot be issued on this node: it has no key store".into(),
            ),
            Self::NoStreamStore => Problem::new(
                S::NOT_IMPLEMENTED,
                "no-stream-store",
                "Not Implemented",
                "streams cannot be created, changed or deleted on this node: it has no stream \
                 store"
                    .into(),
            ),
            Self::StreamConflict { .. } => {
                Problem::new(S::CONFLICT, "stream-conflict", "Conflict", self.to_string())
            }
            Self::InvalidStream { .. } => Problem::new(
                S::UNPROCESSABLE_ENTITY,
                "invalid-stream",
                "Invalid stream definition",
                self.to_string(),
            ),
            Self::Json(rejection) => {
                let status = rejection.status();
                let title = status.canonical_reason().unwrap_or("Bad Request");
                Problem::new(status, "invalid-body", title, rejection.body_text())
            }
            Self::RouteNotFound { path } => {
                let mut p = Problem::new(
                    S::NOT_FOUND,
                    "route-not-found",
                    "Not Found",
                    self.to_string(),
                );
                p.instance = Some(path.clone());
                p
            }
            Self::MethodNotAllowed { path, .. } => {
                let mut p = Problem::new(
                    S::METHOD_NOT_ALLOWED,
                    "method-not-allowed",
                    "Method Not Allowed",
                    self.to_string(),
                );
                p.instance = Some(path.clone());
                p
            }
            Self::UnknownStream { .. } => Problem::new(
                S::NOT_FOUND,
                "unknown-stream",
                "Unknown stream",
                self.to_string(),
            ),
            Self::UnknownPipeline { .. } => Problem::new(
                S::NOT_FOUND,
                "unknown-pipeline",
                "Unknown pipeline",
                self.to_string(),
            ),
            Self::UnsupportedMediaType { accepted, .. } => Problem::new(
                S::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported Media Type",
                format!("{self}; send one of: {}", accepted.join(", ")),
            )
            .with("accepted", json!(accepted)),
            Self::PayloadTooLarge { limit } => Problem::new(
                S::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Payload Too Large",
                self.to_string(),
            )
            .with("limit_bytes", json!(limit)),
            Self::BodyUnreadable(_) => Problem::new(
                S::BAD_REQUEST,
                "unreadable-body",
                "Bad Request",
                self.to_string(),
            ),
            Self::BodyTimeout { timeout } => Problem::new(
                S::REQUEST_TIMEOUT,
                "body-timeout",
                "Request Timeout",
                format!("{self}; the connection is closed"),
            )
            .with(
                "timeout_ms",
                json!(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX)),
            ),
            Self::UnsupportedEncoding { .. } => Problem::new(
                S::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-content-encoding",
                "Unsupported Media Type",
                format!("{self}; send one of: {}", ACCEPTED_ENCODINGS.join(", ")),
            )
            .with("accepted_encodings", json!(ACCEPTED_ENCODINGS)),
            Self::BodyUndecodable(_) => Problem::new(
                S::BAD_REQUEST,
                "undecodable-body",
                "Bad Request",
                self.to_string(),
            ),
            Self::UriTooLong { limit } => Problem::new(
                S::URI_TOO_LONG,
                "uri-too-long",
                "URI Too Long",
                self.to_string(),
            )
            .with("limit_bytes", json!(limit)),
            Self::HeadersTooLarge { limit } => Problem::new(
                S::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "header-fields-too-large",
                "Request Header Fields Too Large",
                self.to_string(),
            )
            .with("limit_bytes", json!(limit)),
            Self::Overloaded => Problem::new(
                S::SERVICE_UNAVAILABLE,
                "overloaded",
                "Service Unavailable",
                "this node holds as many request bodies as it may; retry later".into(),
            ),
            Self::Encode(_) => Problem::internal(),
            Self::Path(rejection) => Problem::new(
                S::BAD_REQUEST,
                "invalid-path",
                "Bad Request",
                rejection.body_text(),
            ),
            Self::Query(rejection) => Problem::new(
                S::BAD_REQUEST,
                "invalid-query",
                "Bad Request",
                rejection.body_text(),
            ),
            Self::InvalidParameter { name, .. } => Problem::new(
                S::BAD_REQUEST,
                "invalid-parameter",
                "Bad Request",
                self.to_string(),
            )
            .with("parameter", json!(name)),
            Self::Events(parse) => match parse {
                ParseError::Malformed { line, column, .. } => Problem::new(
                    S::BAD_REQUEST,
                    "malformed-body",
                    "Malformed body",
                    parse.to_string(),
                )
                .with("line", json!(line))
                .with("column", json!(column)),
                ParseError::DuplicateKey {
                    key, line, column, ..
                } => Problem::new(
                    S::BAD_REQUEST,
                    "duplicate-key",
                    "Duplicate key",
                    format!("{parse}; a key may appear once per object"),
                )
                .with("key", json!(key))
                .with("line", json!(line))
                .with("column", json!(column)),
                ParseError::TooManyEvents { limit } => Problem::new(
                    S::PAYLOAD_TOO_LARGE,
                    "too-many-events",
                    "Payload Too Large",
                    format!("{parse}; send them in several requests"),
                )
                .with("limit_events", json!(limit)),
                ParseError::WrongShape => Problem::new(
                    S::BAD_REQUEST,
                    "wrong-body-shape",
                    "Wrong body shape",
                    parse.to_string(),
                ),
                ParseError::Empty => Problem::new(
                    S::BAD_REQUEST,
                    "empty-body",
                    "Empty body",
                    parse.to_string(),
                ),
                ParseError::Invalid(invalid) => Problem::new(
                    S::UNPROCESSABLE_ENTITY,
                    "invalid-events",
                    "Invalid events",
                    invalid_detail(invalid),
                )
                .with("errors", json!(invalid.errors))
                .with("error_count", json!(invalid.error_count))
                .with("invalid_events", json!(invalid.invalid_events)),
            },
            Self::Dependency(port) => match port {
                PortError::Unavailable { .. } => Problem::new(
                    S::SERVICE_UNAVAILABLE,
                    "dependency-unavailable",
                    "Service Unavailable",
                    "a backing service is temporarily unavailable; retry later".into(),
                ),
                PortError::UnknownStream(name) => Problem::new(
                    S::NOT_FOUND,
                    "unknown-stream",
                    "Unknown stream",
                    format!("no stream named {:?}", name.as_str()),
                ),
                PortError::Refused { .. }
                | PortError::Fenced { .. }
                | PortError::Corrupt { .. } => Problem::internal(),
            },
            Self::TaskFailed(_) => Problem::internal(),
            Self::NotReady {
                checks, sources, ..
            } => {
                let failed: Vec<&str> = checks
                    .iter()
                    .filter(|(_, outcome)| **outcome != CheckOutcome::Ok)
                    .map(|(name, _)| *name)
                    .collect();
                let shown: Map<String, Value> = checks
                    .iter()
                    .map(|(name, outcome)| ((*name).to_owned(), json!(outcome.as_str())))
                    .collect();
                let problem = Problem::new(
                    S::SERVICE_UNAVAILABLE,
                    "not-ready",
                    "Service Unavailable",
                    format!("not ready: {} did not answer", failed.join(", ")),
                )
                .with("checks", Value::Object(shown));
                match sources {
                    Some(sources) => problem.with("sources", json!(sources)),
                    None => problem,
                }
            }
            Self::ShuttingDown => Problem::new(
                S::SERVICE_UNAVAILABLE,
                "shutting-down",
                "Service Unavailable",
                "this node is shutting down; send requests to another node".into(),
            ),
            Self::RateLimited {
                policy,
                retry_after,
            } => Problem::new(
                S::TOO_MANY_REQUESTS,
                "rate-limited",
                "Too Many Requests",
                format!("{self}; retry after the time in Retry-After"),
            )
            .with("policy", json!(policy))
            .with(
                "retry_after_ms",
                json!(u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX)),
            ),
        }
    }

    /// The HTTP status and the reason of the dead letter that keeps a request refused for
    /// what it sent (400, 413, 415 or 422), or `None` for any other error. The reason is the
    /// problem's detail, followed by every invalid event of a 422.
    pub(crate) fn content_refusal(&self) -> Option<(StatusCode, String)> {
        match self {
            Self::UnsupportedMediaType { .. }
            | Self::UnsupportedEncoding { .. }
            | Self::PayloadTooLarge { .. }
            | Self::BodyUnreadable(_)
            | Self::BodyUndecodable(_)
            | Self::Events(_) => {}
            _ => return None,
        }
        let Problem {
            status, mut detail, ..
        } = self.problem();
        if let Self::Events(ParseError::Invalid(invalid)) = self {
            for error in &invalid.errors {
                let _ = match error.field {
                    "" => write!(detail, "; event {}: {}", error.index, error.reason),
                    field => write!(detail, "; event {} {field}: {}", error.index, error.reason),
                };
            }
        }
        Some((status, detail))
    }

    /// The `Retry-After` of a 503, in whole seconds: the rest of the port's circuit breaker
    /// cool-down when it failed the call at once (rounded up, at least 1), else
    /// [`RETRY_AFTER_SECS`].
    fn retry_after(&self) -> HeaderValue {
        let cool_down = match self {
            Self::Dependency(port) => port.retry_after(),
            _ => None,
        };
        match cool_down {
            Some(wait) => {
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                HeaderValue::from(secs.max(1))
            }
            None => HeaderValue::from_static(RETRY_AFTER_SECS),
        }
    }

    /// The message for the server log: the error and its whole source chain.
    fn log_message(&self) -> String {
        match self {
            Self::NotReady { causes, .. } => format!("not ready: {}", causes.join("; ")),
            other => error_chain(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = self.problem();
        let status = problem.status;
        let kind = problem.slug;
        let mut response = (status, axum::Json(problem.body())).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if status == StatusCode::UNAUTHORIZED {
            let challenge = match self {
                Self::Unauthorized { presented: true } => {
                    r#"Bearer realm="tributary", error="invalid_token""#
                }
                _ => r#"Bearer realm="tributary""#,
            };
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        if status == StatusCode::REQUEST_TIMEOUT {
            // The rest of the body may still be on its way: the connection cannot be reused.
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if let Self::RateLimited { retry_after, .. } = &self {
            let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, self.retry_after());
        }
        response.extensions_mut().insert(LoggedError {
            message: self.log_message(),
            // A draining node's 503 is what it is asked to answer, not a fault; nor is the
            // 503 of a port whose circuit breaker is open (it logged the outage once).
            server_fault: status.is_server_error()
                && !matches!(self, Self::ShuttingDown)
                && !matches!(self, Self::Dependency(port) if port.retry_after().is_some()),
            kind,
        });
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_errors_do_not_leak_their_source() {
        let err = ApiError::from(PortError::refused(
            "kafka",
            std::io::Error::other("secret broker detail"),
        ));
        let body = err.problem().body();
        assert_eq!(body["status"], 500);
        assert!(!body.to_string().contains("secret"), "{body}");
        assert!(err.log_message().contains("secret broker detail"));
    }

    #[tokio::test]
    async fn a_failed_task_is_a_500_that_hides_its_cause() {
        let join_error = tokio::task::spawn_blocking(|| std::panic::panic_any("secret panic"))
            .await
            .unwrap_err();
        let err = ApiError::TaskFailed(join_error);
        assert!(err.log_message().contains("panic"), "{}", err.log_message());
        let response = err.into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        let logged = response.extensions().get::<LoggedError>().unwrap();
        assert!(logged.server_fault);
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        assert!(!String::from_utf8_lossy(&body).contains("secret"));
    }

    #[test]
    fn only_refusals_of_what_was_sent_are_dead_letter_reasons() {
        let invalid = ApiError::Events(ParseError::Invalid(InvalidEvents {
            errors: vec![
                tributary_core::parse::EventError {
                    index: 1,
                    field: "ts",
                    reason: "must be a date".into(),
                },
                tributary_core::parse::EventError {
                    index: 3,
                    field: "",
                    reason: "unknown field colour".into(),
                },
            ],
            invalid_events: 2,
            error_count: 2,
        }));
        let (status, reason) = invalid.content_refusal().unwrap();
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(reason.starts_with("2 invalid event field(s)"), "{reason}");
        assert!(
            reason.ends_with("; event 1 ts: must be a date; event 3: unknown field colour"),
            "{reason}"
        );
        let (status, reason) = ApiError::PayloadTooLarge { limit: 128 }
            .content_refusal()
            .unwrap();
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(reason.contains("128 bytes"), "{reason}");
        for other in [
            ApiError::Unauthorized { presented: false },
            ApiError::UnknownStream { name: "x".into() },
            ApiError::from(PortError::unavailable(
                "kafka",
                std::io::Error::other("down"),
            )),
        ] {
            assert!(other.content_refusal().is_none(), "{other}");
        }
    }

    #[test]
    fn a_circuit_breakers_cool_down_is_the_retry_after() {
        for (wait, expected) in [(1_500, "2"), (200, "1"), (0, "1"), (3_000, "3")] {
            let err = ApiError::from(PortError::unavailable(
                "postgres",
                tributary_core::ports::CircuitOpen {
                    retry_after: std::time::Duration::from_millis(wait),
                },
            ));
            let response = err.into_response();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(
                response.headers()[header::RETRY_AFTER],
                expected,
                "{wait} ms"
            );
            assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
            let logged = response.extensions().get::<LoggedError>().unwrap();
            assert!(!logged.server_fault, "the breaker logged the outage once");
        }
    }

    #[test]
    fn unavailable_is_a_503_with_retry_after() {
        let err = ApiError::from(PortError::unavailable(
            "kafka",
            std::io::Error::other("down"),
        ));
        let response = err.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], RETRY_AFTER_SECS);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
    }
}
