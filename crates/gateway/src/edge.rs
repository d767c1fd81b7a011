//! The edge: what every request goes through before its handler, and the limits that keep
//! a node standing when clients misbehave.
//!
//! Contract:
//! - Every response carries `x-request-id` (the client's, when it sent a valid one: 1 to
//!   [`MAX_REQUEST_ID_BYTES`] visible ASCII characters; a new UUIDv7 otherwise) and a W3C
//!   `traceparent` whose trace id is the client's (from a valid `traceparent`; a new random
//!   one otherwise) and whose parent id is this request's span in the gateway. Both ids are
//!   fields of the request's log line ([`RequestContext`]).
//! - A request target longer than [`MAX_URI_BYTES`] is a 414, header fields larger than
//!   [`MAX_HEADER_BYTES`] are a 431: problem documents, logged like every response. Beyond
//!   [`SERVER_MAX_HEAD_BYTES`] (or 100 header fields, or a request line that does not parse)
//!   the HTTP server refuses the request itself, before any of this runs: see the binary's
//!   `server.rs`.
//! - A request body is read through `read_body`: its `Content-Encoding` must be `gzip`,
//!   `zstd` or `identity` (415 otherwise); at most [`crate::AppState::max_body_bytes`] are
//!   read, before and after decoding (413 beyond: a zip bomb is a 413); it must arrive
//!   within [`EdgeSettings::body_timeout`] (408, and the connection is closed); and it is
//!   only read once the node has room for it (below).
//! - The node's room: the request bodies it reads and parses and the pages of stored items
//!   it builds take at most [`EdgeSettings::max_bytes_in_flight`] at once: a body its
//!   `Content-Length` (`max_body_bytes` when it has none or is compressed) until its events
//!   are appended or its dead letter is stored, a page [`EdgeSettings::max_page_bytes`]
//!   until it is built (not while it is sent). A request finding no room waits
//!   up to `body_timeout` in line (first come, first served), then is answered 503 with
//!   `Retry-After`. This is what bounds the memory a burst of requests takes, whatever
//!   their number (see docs/ARCHITECTURE.md, "The edge").
//! - CORS is off unless [`EdgeSettings::cors_allowed_origins`] lists origins (or `*`).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::AppState;
use crate::error::ApiError;

/// The longest request target (path and query) the gateway reads: as nginx's default
/// `large_client_header_buffers`; longer is a 414.
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// The most bytes of header fields (each name, value and 4 bytes of separators) the gateway
/// reads; more is a 431.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// The largest request head (request line and header fields) the HTTP server reads; the
/// server answers a larger one with an empty 431 (or 414 for the target alone) and closes
/// the connection. Twice [`MAX_HEADER_BYTES`], so that the gateway answers the requests
/// it refuses for their size, with a problem document, as long as the server lets it.
pub const SERVER_MAX_HEAD_BYTES: usize = 2 * MAX_HEADER_BYTES;

/// The longest `x-request-id` taken from a client.
pub const MAX_REQUEST_ID_BYTES: usize = 128;

/// The default of [`EdgeSettings::body_timeout`].
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// The default of [`EdgeSettings::max_bytes_in_flight`]: 64 MiB.
pub const DEFAULT_MAX_BYTES_IN_FLIGHT: usize = 64 * 1024 * 1024;

/// The default of [`EdgeSettings::max_page_bytes`]: 4 MiB.
pub const DEFAULT_MAX_PAGE_BYTES: usize = 4 * 1024 * 1024;

/// The default of [`EdgeSettings::cors_max_age`]: one hour.
pub const DEFAULT_CORS_MAX_AGE: Duration = Duration::from_secs(3600);

/// The `x-request-id` header.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The W3C `traceparent` header.
pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// The W3C `tracestate` header.
static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// The limits and options of the edge (`[http]` in the config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeSettings {
    /// The most events one ingestion request may hold; more is a 413.
    pub max_events_per_request: usize,
    /// How long a request body may take to arrive, in full, once the gateway reads it;
    /// longer is a 408.
    pub body_timeout: Duration,
    /// The room of the node: the most bytes of request bodies and pages held at once (a
    /// body counts its `Content-Length`, or `max_body_bytes` when it has none or is
    /// compressed; a page counts `max_page_bytes`).
    pub max_bytes_in_flight: usize,
    /// The most bytes of items in one page of `GET /v1/streams/{stream}/events` or
    /// `GET /v1/dead-letters` (a page holds at least one item); the page's `next_cursor`
    /// continues after its last item.
    pub max_page_bytes: usize,
    /// The origins a browser may call the API from (`https://app.example.com`), or `["*"]`
    /// for any; empty: no CORS headers, preflights are not answered.
    pub cors_allowed_origins: Vec<String>,
    /// How long a browser may cache a preflight's answer.
    pub cors_max_age: Duration,
    /// How long a pipeline's results, once read from the analytics store, answer the same
    /// query again from memory (`GET /v1/pipelines/{name}/results`): results may be this
    /// much older than the last checkpoint. Zero: every query reads the store.
    pub results_cache_ttl: Duration,
}

impl Default for EdgeSettings {
    fn default() -> Self {
        Self {
            max_events_per_request: tributary_core::parse::DEFAULT_MAX_EVENTS,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            max_bytes_in_flight: DEFAULT_MAX_BYTES_IN_FLIGHT,
            max_page_bytes: DEFAULT_MAX_PAGE_BYTES,
            cors_allowed_origins: Vec::new(),
            cors_max_age: DEFAULT_CORS_MAX_AGE,
            results_cache_ttl: DEFAULT_RESULTS_CACHE_TTL,
        }
    }
}

impl EdgeSettings {
    /// Checks the settings against each other and `max_body_bytes`.
    ///
    /// # Errors
    /// A message naming the setting: a zero limit or timeout, room in flight for less than
    /// one body of `max_body_bytes` or one page of `max_page_bytes`, or an origin that is
    /// neither `*` (alone) nor `scheme://host[:port]`.
    pub fn check(&self, max_body_bytes: usize) -> Result<(), String> {
        if self.max_events_per_request == 0 {
            return Err("max_events_per_request must be at least 1".into());
        }
        if self.body_timeout.is_zero() {
            return Err("body_timeout must be longer than 0s".into());
        }
        if self.max_page_bytes == 0 {
            return Err("max_page_bytes must be at least 1".into());
        }
        if self.max_bytes_in_flight < max_body_bytes.max(self.max_page_bytes) {
            return Err(format!(
                "max_bytes_in_flight ({}) must be at least max_body_bytes ({max_body_bytes}) \
                 and max_page_bytes ({})",
                self.max_bytes_in_flight, self.max_page_bytes
            ));
        }
        let any = self.cors_allowed_origins.iter().any(|o| o == "*");
        if any && self.cors_allowed_origins.len() > 1 {
            return Err("cors_allowed_origins: \"*\" must be the only origin".into());
        }
        for origin in self.cors_allowed_origins.iter().filter(|o| *o != "*") {
            check_origin(origin)
                .map_err(|reason| format!("cors_allowed_origins: {origin:?} {reason}"))?;
        }
        Ok(())
    }
}

/// Whether `origin` is a serialized origin: `scheme://host[:port]`, nothing after.
fn check_origin(origin: &str) -> Result<(), &'static str> {
    let (scheme, rest) = origin
        .split_once("://")
        .ok_or("is not scheme://host[:port]")?;
    let scheme_ok = scheme
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    let host_ok = !rest.is_empty()
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':' | '[' | ']'));
    if scheme_ok && host_ok {
        Ok(())
    } else {
        Err("is not scheme://host[:port] (no path, no trailing slash)")
    }
}

/// The default of [`EdgeSettings::results_cache_ttl`]: a fifth of a second, well below
/// the default checkpoint interval (1 s).
pub const DEFAULT_RESULTS_CACHE_TTL: Duration = Duration::from_millis(200);

/// The most bytes of answers the results cache holds; the least used go first.
const RESULTS_CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// The edge's settings and its room for request bodies. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Edge {
    settings: Arc<EdgeSettings>,
    /// The room: permits of one KiB each, [`EdgeSettings::max_bytes_in_flight`] in all.
    room: Arc<Semaphore>,
    /// Answers of the results endpoint, by query, for [`EdgeSettings::results_cache_ttl`].
    results: Option<moka::future::Cache<String, Bytes>>,
}

impl Default for Edge {
    fn default() -> Self {
        Self::new(EdgeSettings::default())
    }
}

impl Edge {
    /// The edge of `settings` (see [`EdgeSettings::check`]).
    #[must_use]
    pub fn new(settings: EdgeSettings) -> Self {
        let permits = kib(settings.max_bytes_in_flight);
        let results = (!settings.results_cache_ttl.is_zero()).then(|| {
            moka::future::Cache::builder()
                .max_capacity(RESULTS_CACHE_BYTES)
                .weigher(|key: &String, answer: &Bytes| {
                    u32::try_from(key.len() + answer.len()).unwrap_or(u32::MAX)
                })
                .time_to_live(settings.results_cache_ttl)
                .build()
        });
        Self {
            settings: Arc::new(settings),
            room: Arc::new(Semaphore::new(permits)),
            results,
        }
    }

    /// The cache of the results endpoint's answers, unless switched off.
    pub(crate) fn results_cache(&self) -> Option<&moka::future::Cache<String, Bytes>> {
        self.results.as_ref()
    }

    /// Its settings.
    #[must_use]
    pub fn settings(&self) -> &EdgeSettings {
        &self.settings
    }

    /// Room for `bytes` (at most the whole room), held until the [`Room`] is dropped;
    /// waits in line at most `body_timeout`, then fails with [`ApiError::Overloaded`].
    pub(crate) async fn reserve(&self, bytes: usize) -> Result<Room, ApiError> {
        let whole = kib(self.settings.max_bytes_in_flight);
        let wanted = u32::try_from(kib(bytes).clamp(1, whole.max(1))).unwrap_or(u32::MAX);
        let reserve = Arc::clone(&self.room).acquire_many_owned(wanted);
        match tokio::time::timeout(self.settings.body_timeout, reserve).await {
            Ok(Ok(permit)) => Ok(Room { _permit: permit }),
            // The semaphore is never closed.
            Ok(Err(_)) | Err(_) => Err(ApiError::Overloaded),
        }
    }

    /// Room for a page of stored items: [`EdgeSettings::max_page_bytes`].
    pub(crate) async fn reserve_page(&self) -> Result<Room, ApiError> {
        self.reserve(self.settings.max_page_bytes).await
    }

    /// The CORS layer, when origins are configured.
    pub(crate) fn cors(&self) -> Option<CorsLayer> {
        let origins = &self.settings.cors_allowed_origins;
        if origins.is_empty() {
            return None;
        }
        let allow = if origins.iter().any(|o| o == "*") {
            AllowOrigin::any()
        } else {
            AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
        };
        Some(
            CorsLayer::new()
                .allow_origin(allow)
                .allow_methods([Method::GET, Method::POST])
                .allow_headers([
                    header::AUTHORIZATION,
                    header::CONTENT_TYPE,
                    header::CONTENT_ENCODING,
                    X_REQUEST_ID.clone(),
                    TRACEPARENT.clone(),
                    TRACESTATE.clone(),
                ])
                .expose_headers([
                    X_REQUEST_ID.clone(),
                    TRACEPARENT.clone(),
                    header::RETRY_AFTER,
                    header::WWW_AUTHENTICATE,
                ])
                .max_age(self.settings.cors_max_age),
        )
    }
}

/// Room taken in the node's [`EdgeSettings::max_bytes_in_flight`], given back when dropped.
#[derive(Debug)]
pub(crate) struct Room {
    _permit: OwnedSemaphorePermit,
}

/// `bytes` in KiB, rounded up.
fn kib(bytes: usize) -> usize {
    bytes.div_ceil(1024)
}

/// Who a request is, for logs and for the client: its request id and its trace context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestContext {
    /// The request id: the client's `x-request-id` or a new UUIDv7.
    pub request_id: String,
    /// The W3C trace id (32 lowercase hex digits): the client's or a new one.
    pub trace_id: String,
    /// The id of this request's span in the gateway (16 lowercase hex digits).
    pub span_id: String,
    /// The client's span id, the parent of this request's span: from a valid `traceparent`.
    pub parent_id: Option<String>,
    /// The trace flags (2 hex digits): the client's, or `00` for a new trace.
    pub flags: String,
}

impl RequestContext {
    /// The context of a request with `headers`.
    #[must_use]
    pub fn of(headers: &HeaderMap) -> Self {
        let request_id = headers
            .get(&X_REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .filter(|id| valid_request_id(id))
            .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned);
        let parent = headers
            .get(&TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_traceparent);
        let (trace_id, parent_id, flags) = match parent {
            Some((trace, parent, flags)) => (trace, Some(parent), flags),
            None => {
                let id: u128 = rand::random::<u128>().max(1);
                (format!("{id:032x}"), None, "00".to_owned())
            }
        };
        let span: u64 = rand::random::<u64>().max(1);
        Self {
            request_id,
            trace_id,
            span_id: format!("{span:016x}"),
            parent_id,
            flags,
        }
    }

    /// The `traceparent` of this request's span, for the response.
    #[must_use]
    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-{}", self.trace_id, self.span_id, self.flags)
    }
}

/// Whether a client's request id is taken: 1 to [`MAX_REQUEST_ID_BYTES`] visible ASCII
/// characters (no space).
fn valid_request_id(id: &str) -> bool {
    (1..=MAX_REQUEST_ID_BYTES).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
}

/// The trace id, parent id and flags of a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2
/// hex>`; a later version may append `-...`), or `None` when it is not valid (the trace then
/// restarts, as the recommendation says).
fn parse_traceparent(text: &str) -> Option<(String, String, String)> {
    let text = text.trim();
    let bytes = text.as_bytes();
    if bytes.len() < 55 {
        return None;
    }
    let (head, rest) = text.split_at(55);
    let mut parts = head.split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let zero = |s: &str| s.bytes().all(|b| b == b'0');
    let valid = hex(version, 2)
        && version != "ff"
        && hex(trace, 32)
        && !zero(trace)
        && hex(parent, 16)
        && !zero(parent)
        && hex(flags, 2)
        && if version == "00" {
            rest.is_empty()
        } else {
            rest.is_empty() || rest.starts_with('-')
        };
    valid.then(|| (trace.to_owned(), parent.to_owned(), flags.to_owned()))
}

/// The outermost middleware: gives the request its [`RequestContext`] (an extension, read
/// by the log line) and the response its `x-request-id` and `traceparent`.
pub(crate) async fn context(mut request: Request, next: Next) -> Response {
    let context = RequestContext::of(request.headers());
    request.extensions_mut().insert(context.clone());
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if let Ok(id) = HeaderValue::from_str(&context.request_id) {
        headers.insert(X_REQUEST_ID.clone(), id);
    }
    if let Ok(parent) = HeaderValue::from_str(&context.traceparent()) {
        headers.insert(TRACEPARENT.clone(), parent);
    }
    response
}

/// The length of the request body as sent (before decoding), from `Content-Length`.
#[derive(Debug, Clone, Copy)]
struct SentLength(u64);

/// Refuses heads larger than the gateway reads (414, 431), records the body's length as
/// sent, and bounds the body as sent to `max_body_bytes` (a compressed body is bounded
/// before and after decoding). Runs before the body is decoded.
pub(crate) async fn limits(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let target = request
        .uri()
        .path_and_query()
        .map_or(0, |p| p.as_str().len());
    if target > MAX_URI_BYTES {
        return ApiError::UriTooLong {
            limit: MAX_URI_BYTES,
        }
        .into_response();
    }
    let header_bytes: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        return ApiError::HeadersTooLarge {
            limit: MAX_HEADER_BYTES,
        }
        .into_response();
    }
    let (mut parts, body) = request.into_parts();
    if let Some(length) = content_length(&parts.headers) {
        parts.extensions.insert(SentLength(length));
    }
    let body = Body::new(Limited::new(body, state.max_body_bytes));
    next.run(Request::from_parts(parts, body)).await
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// A request body read in full, with the room it takes (held until dropped).
#[derive(Debug)]
pub(crate) struct ReadBody {
    pub bytes: Bytes,
    pub room: Room,
}

/// Reads `request`'s body as the module says: a content encoding the gateway decodes (415),
/// at most `max_body_bytes` as sent and decoded (413), room in flight (503), within
/// `body_timeout` (408); a body that does not decode is a 400.
///
/// An unsupported encoding is checked first but reported last: its body is still read (as
/// sent), so that the caller can keep it; the result is then `Err` with the body.
pub(crate) async fn read_body(
    state: &AppState,
    request: Request,
) -> Result<ReadBody, (ApiError, Option<ReadBody>)> {
    let limit = state.max_body_bytes;
    let sent = request.extensions().get::<SentLength>().map(|s| s.0);
    if sent.is_some_and(|n| n > limit as u64) {
        return Err((ApiError::PayloadTooLarge { limit }, None));
    }
    // The decompression layer removed the encodings it decodes (and the body's length, now
    // unknown); any other is still there.
    let unsupported = request
        .headers()
        .get(header::CONTENT_ENCODING)
        .filter(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    // What the body will take once read: its length when it is not decoded, else the most.
    let expected = content_length(request.headers())
        .and_then(|n| usize::try_from(n).ok())
        .filter(|n| *n <= limit);
    let room = state
        .edge
        .reserve(expected.unwrap_or(limit))
        .await
        .map_err(|e| (e, None))?;
    let timeout = state.edge.settings().body_timeout;
    // A body of unknown length may take the whole limit: it has the room for it, and
    // memory not written to is not resident.
    let capacity = expected.unwrap_or(limit);
    let read = tokio::time::timeout(timeout, collect(request.into_body(), limit, capacity)).await;
    let bytes = match read {
        Err(_) => return Err((ApiError::BodyTimeout { timeout }, None)),
        Ok(Err(error)) => return Err((error, None)),
        Ok(Ok(bytes)) => bytes,
    };
    let body = ReadBody { bytes, room };
    match unsupported {
        Some(found) => Err((ApiError::UnsupportedEncoding { found }, Some(body))),
        None => Ok(body),
    }
}

/// The body's bytes, at most `limit` of them (decoded).
async fn collect(mut body: Body, limit: usize, capacity: usize) -> Result<Bytes, ApiError> {
    let mut bytes = BytesMut::with_capacity(capacity);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(body_error(limit))?;
        if let Ok(data) = frame.into_data() {
            if bytes.len() + data.len() > limit {
                return Err(ApiError::PayloadTooLarge { limit });
            }
            bytes.extend_from_slice(&data);
        }
    }
    Ok(bytes.freeze())
}

/// The [`ApiError`] of a failed read of a body: its size as sent (413), its decoding (400),
/// or the connection (400).
fn body_error(limit: usize) -> impl Fn(axum::Error) -> ApiError {
    move |error| {
        // Each body wrapper on the way (the limit, the decoder, the router's) may have
        // boxed the error once more.
        let mut inner = error.into_inner();
        loop {
            match inner.downcast::<axum::Error>() {
                Ok(wrapped) => inner = wrapped.into_inner(),
                Err(other) => {
                    inner = other;
                    break;
                }
            }
        }
        if inner.is::<LengthLimitError>() {
            ApiError::PayloadTooLarge { limit }
        } else if inner.is::<std::io::Error>() {
            // The decoders report corrupt data as I/O errors; the connection's own errors
            // are hyper's.
            ApiError::BodyUndecodable(inner)
        } else {
            ApiError::BodyUnreadable(axum::Error::new(inner))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_are_read_as_the_recommendation_says() {
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        let ok = format!("00-{trace}-00f067aa0ba902b7-01");
        assert_eq!(
            parse_traceparent(&ok),
            Some((
                trace.to_owned(),
                "00f067aa0ba902b7".to_owned(),
                "01".to_owned()
            ))
        );
        // A later version may carry more, after a dash.
        assert!(parse_traceparent(&format!("cc-{trace}-00f067aa0ba902b7-09-what")).is_some());
        for bad in [
            String::new(),
            format!("00-{trace}-00f067aa0ba902b7-01-extra"),
            format!("ff-{trace}-00f067aa0ba902b7-01"),
            format!("00-{}-00f067aa0ba902b7-01", "0".repeat(32)),
            format!("00-{trace}-0000000000000000-01"),
            format!("00-{}-00f067aa0ba902b7-01", trace.to_uppercase()),
            format!("00-{trace}-00f067aa0ba902b7-1"),
            format!("00_{trace}-00f067aa0ba902b7-01"),
        ] {
            assert_eq!(parse_traceparent(&bad), None, "{bad}");
        }
    }

    #[test]
    fn a_context_keeps_valid_client_ids_and_makes_the_others() {
        let mut headers = HeaderMap::new();
        headers.insert(&X_REQUEST_ID, HeaderValue::from_static("req-42"));
        headers.insert(
            &TRACEPARENT,
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        let context = RequestContext::of(&headers);
        assert_eq!(context.request_id, "req-42");
        assert_eq!(context.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(context.span_id, "00f067aa0ba902b7");
        assert_eq!(context.parent_id.as_deref(), Some("00f067aa0ba902b7"));
        let echoed = context.traceparent();
        assert!(
            echoed.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && echoed.ends_with("-01"),
            "{echoed}"
        );
        assert_eq!(
            parse_traceparent(&echoed).map(|(t, _, _)| t),
            Some(context.trace_id)
        );

        headers.insert(&X_REQUEST_ID, HeaderValue::from_static("has space"));
        headers.insert(&TRACEPARENT, HeaderValue::from_static("garbage"));
        let fresh = RequestContext::of(&headers);
        assert!(uuid::Uuid::parse_str(&fresh.request_id).is_ok());
        assert_eq!(fresh.trace_id.len(), 32);
        assert_ne!(fresh.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(fresh.flags, "00");
        assert_eq!(fresh.parent_id, None);
        let long = "x".repeat(MAX_REQUEST_ID_BYTES + 1);
        assert!(!valid_request_id(&long));
        assert!(valid_request_id(&long[1..]));
    }

    #[test]
    fn settings_are_checked() {
        let ok = EdgeSettings {
            cors_allowed_origins: vec![
                "https://app.example.com".into(),
                "http://[::1]:3000".into(),
            ],
            ..EdgeSettings::default()
        };
        assert_eq!(ok.check(1024), Ok(()));
        for (bad, name) in [
            (
                EdgeSettings {
                    max_events_per_request: 0,
                    ..EdgeSettings::default()
                },
                "max_events_per_request",
            ),
            (
                EdgeSettings {
                    body_timeout: Duration::ZERO,
                    ..EdgeSettings::default()
                },
                "body_timeout",
            ),
            (
                EdgeSettings {
                    max_bytes_in_flight: 1023,
                    ..EdgeSettings::default()
                },
                "max_bytes_in_flight",
            ),
            (
                EdgeSettings {
                    cors_allowed_origins: vec!["*".into(), "https://a.example".into()],
                    ..EdgeSettings::default()
                },
                "\"*\"",
            ),
            (
                EdgeSettings {
                    cors_allowed_origins: vec!["https://a.example/".into()],
                    ..EdgeSettings::default()
                },
                "a.example/",
            ),
        ] {
            let err = bad.check(1024).unwrap_err();
            assert!(err.contains(name), "{err}");
        }
    }
}
