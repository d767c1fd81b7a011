//! One log line per request, with the ECS field names (Elastic Common Schema 8.x), so a log
//! pipeline indexes it as it is: the trace layer's `http_request` span carries
//! `http.request.method`, `url.path`, the request id (`http.request.id`), the W3C trace and
//! span ids (`trace.id`, `span.id`, see [`crate::RequestContext`]) and, when the server gave
//! it, the client's address (`client.ip`, `client.port`); the response event adds
//! `http.response.status_code` (a number), `event.duration` (the latency in nanoseconds, a
//! number, as ECS defines it), `event.outcome` and, when the handler failed, `error.message`
//! (the [`LoggedError`] that [`crate::ApiError`] attached, with its whole source chain) and
//! `error.type` (the problem type's slug). Server faults (5xx) are logged at `ERROR`,
//! everything else at `INFO`. Nothing else in the gateway logs a failed request, so each
//! error is logged exactly once.
//!
//! The binary may also export the spans (OTLP): [`on_request_span`] lets it continue the
//! client's W3C trace in each request's span, with the ids the log line and the response's
//! `traceparent` name.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::{Request, Response};
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::trace::{MakeSpan, OnResponse, TraceLayer};
use tracing::Span;

use crate::RequestContext;
use crate::error::LoggedError;

/// The trace layer of the gateway's router.
pub(crate) type GatewayTraceLayer =
    TraceLayer<SharedClassifier<ServerErrorsAsFailures>, RequestSpan, (), ResponseLog, (), (), ()>;

/// Builds the layer.
pub(crate) fn layer() -> GatewayTraceLayer {
    TraceLayer::new_for_http()
        .make_span_with(RequestSpan)
        .on_request(())
        .on_response(ResponseLog)
        .on_body_chunk(())
        .on_eos(())
        .on_failure(())
}

/// What is done with each request's span and context as soon as the span is made,
/// before it is entered.
pub type RequestSpanHook = fn(&Span, &RequestContext);

/// The hook [`on_request_span`] set.
static REQUEST_SPAN_HOOK: OnceLock<RequestSpanHook> = OnceLock::new();

/// Calls `hook` with every request's `http_request` span and [`RequestContext`] from now
/// on: the binary's span export makes the span continue the client's trace. Process-wide,
/// like the subscriber the spans go to; only the first call counts.
pub fn on_request_span(hook: RequestSpanHook) {
    // A second exporter in one process is not a case to serve.
    let _ = REQUEST_SPAN_HOOK.set(hook);
}

/// Opens the `http_request` span with the method, path, ids and client address.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestSpan;

impl<B> MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, request: &Request<B>) -> Span {
        let context = request.extensions().get::<RequestContext>();
        let client = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| *addr);
        let span = tracing::info_span!(
            "http_request",
            http.request.method = %request.method(),
            url.path = %request.uri().path(),
            http.request.id = context.map(|c| c.request_id.as_str()),
            trace.id = context.map(|c| c.trace_id.as_str()),
            span.id = context.map(|c| c.span_id.as_str()),
            client.ip = client.map(|addr| tracing::field::display(addr.ip())),
            client.port = client.map(|addr| addr.port()),
        );
        if let (Some(hook), Some(context)) = (REQUEST_SPAN_HOOK.get(), context) {
            hook(&span, context);
        }
        span
    }
}

/// Writes the request's one log line when its response is ready.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ResponseLog;

impl<B> OnResponse<B> for ResponseLog {
    // The trace future has already entered the request's span.
    fn on_response(self, response: &Response<B>, latency: Duration, _span: &Span) {
        let status = response.status().as_u16();
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        match response.extensions().get::<LoggedError>() {
            Some(error) if error.server_fault => tracing::error!(
                http.response.status_code = status,
                event.duration = nanos,
                event.outcome = "failure",
                error.message = %error.message,
                "error.type" = error.kind,
                "request failed"
            ),
            Some(error) => tracing::info!(
                http.response.status_code = status,
                event.duration = nanos,
                event.outcome = "failure",
                error.message = %error.message,
                "error.type" = error.kind,
                "request refused"
            ),
            None => tracing::info!(
                http.response.status_code = status,
                event.duration = nanos,
                event.outcome = "success",
                "request served"
            ),
        }
    }
}
