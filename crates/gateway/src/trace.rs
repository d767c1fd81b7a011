//! One log line per request: the trace layer's span carries `method`, `path`, the request
//! id (`http.request.id`), the W3C trace and span ids (`trace.id`, `span.id`, the ECS
//! names, see [`crate::RequestContext`]) and, when the server gave it, the client's address
//! (`client.address`); the response event adds `status`, `latency_ms` and, when the handler failed, `error` (the
//! [`LoggedError`] that [`crate::ApiError`] attached, with its whole source chain). Server
//! faults (5xx) are logged at `ERROR`, everything else at `INFO`. Nothing else in the
//! gateway logs a failed request, so each error is logged exactly once.

use std::net::SocketAddr;
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

/// Opens the `http_request` span with the method and path.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestSpan;

impl<B> MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, request: &Request<B>) -> Span {
        let context = request.extensions().get::<RequestContext>();
        let client = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        tracing::info_span!(
            "http_request",
            method = %request.method(),
            path = %request.uri().path(),
            http.request.id = context.map(|c| c.request_id.as_str()),
            trace.id = context.map(|c| c.trace_id.as_str()),
            span.id = context.map(|c| c.span_id.as_str()),
            client.address = client.map(tracing::field::display),
        )
    }
}

/// Writes the request's one log line when its response is ready.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ResponseLog;

impl<B> OnResponse<B> for ResponseLog {
    // The trace future has already entered the request's span.
    fn on_response(self, response: &Response<B>, latency: Duration, _span: &Span) {
        let status = response.status().as_u16();
        // Milliseconds with microsecond precision.
        let latency_ms = (latency.as_secs_f64() * 1_000_000.0).round() / 1000.0;
        match response.extensions().get::<LoggedError>() {
            Some(error) if error.server_fault => {
                tracing::error!(status, latency_ms, error = %error.message, "request failed");
            }
            Some(error) => {
                tracing::info!(status, latency_ms, error = %error.message, "request refused");
            }
            None => tracing::info!(status, latency_ms, "request served"),
        }
    }
}
