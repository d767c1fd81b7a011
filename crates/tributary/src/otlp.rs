//! Span export over OTLP/HTTP with protobuf (feature `otlp`), when `[tracing]
//! otlp_endpoint` or `OTEL_EXPORTER_OTLP_ENDPOINT` names a collector.
//!
//! The spans exported: each HTTP request's (`http_request`, `tributary_gateway`'s `trace`
//! module) and, at `DEBUG` so that they cost nothing unless exported or logged, one per
//! batch of work: `ingest` (a batch parsed and validated), `log.append`, `pipeline.poll` (a
//! batch a task handled), `checkpoint` and `query` (a results query); never one per event.
//! Events at `INFO` and above inside them become their span events.
//!
//! A request's span continues its caller's W3C trace: its parent is the `traceparent`'s
//! span, and it has the trace and span ids the gateway gave the request, which its log line
//! (`trace.id`, `span.id`) and the response's `traceparent` carry; a request with no valid
//! `traceparent` starts a trace with the gateway's ids. New traces are sampled at
//! `sampling_ratio`; a continued trace follows its caller's sampled flag.
//!
//! Spans are batched (the SDK's batch processor, on its own thread, with its
//! `OTEL_BSP_*` settings) and sent with the reqwest client of the tree on the node's
//! runtime; [`Export::shutdown`] sends what is left when the process stops.

use std::time::Duration;

use anyhow::Context as _;
use opentelemetry::Context;
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, Sampler, SdkTracerProvider};
use tracing::Span;
use tracing::level_filters::LevelFilter;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::FilterFn;
use tracing_subscriber::registry::LookupSpan;
use tributary_gateway::RequestContext;

use crate::config::TracingConfig;

/// The variables with which the OTLP exporter finds a collector when the config names none.
const ENDPOINT_VARIABLES: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
];

/// Where OTLP/HTTP takes spans, under the collector's base URL.
const TRACES_PATH: &str = "/v1/traces";

/// How long one export may take, connecting included.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The running export.
#[derive(Debug)]
pub struct Export {
    provider: SdkTracerProvider,
}

impl Export {
    /// Sends the spans still batched (waiting at most 5 s for the collector) and stops.
    pub async fn shutdown(self) {
        // Blocks until the batch thread has exported, which it does on the runtime.
        let stopped = tokio::task::spawn_blocking(move || self.provider.shutdown()).await;
        if let Ok(Err(error)) = stopped {
            tracing::warn!(error = %error, "the last spans were not exported");
        }
    }
}

/// The layer exporting spans, and its [`Export`]; `None` when no collector is named.
///
/// # Errors
/// When the endpoint is not a URL, the HTTP client cannot be built, or this runs outside a
/// Tokio runtime (the exporter sends on it).
pub fn layer<S>(config: &TracingConfig) -> anyhow::Result<Option<(impl Layer<S>, Export)>>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span>,
{
    let from_env = ENDPOINT_VARIABLES
        .iter()
        .any(|name| std::env::var_os(name).is_some_and(|value| !value.is_empty()));
    if config.otlp_endpoint.is_none() && !from_env {
        return Ok(None);
    }
    let runtime = tokio::runtime::Handle::try_current()
        .context("the OTLP exporter needs a Tokio runtime to send on")?;
    let client = reqwest::Client::builder()
        .timeout(EXPORT_TIMEOUT)
        .build()
        .context("cannot build the OTLP exporter's HTTP client")?;
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(RuntimeClient { client, runtime })
        .with_timeout(EXPORT_TIMEOUT);
    if let Some(endpoint) = &config.otlp_endpoint {
        // As the SDK does with OTEL_EXPORTER_OTLP_ENDPOINT.
        exporter =
            exporter.with_endpoint(format!("{}{TRACES_PATH}", endpoint.trim_end_matches('/')));
    }
    let exporter = exporter.build().context("invalid OTLP exporter settings")?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            config.sampling_ratio,
        ))))
        .with_id_generator(RequestIds)
        .with_resource(
            Resource::builder()
                .with_service_name(config.service_name.clone())
                .build(),
        )
        .build();
    let tracer = provider.tracer("tributary");
    tributary_gateway::on_request_span(continue_trace);
    // The spans' own fields are their attributes; not the source location, thread, target.
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_filter(FilterFn::new(exported));
    Ok(Some((layer, Export { provider })))
}

/// What is exported: the spans of Tributary's crates down to `DEBUG` (those of its
/// dependencies are not), and their events from `INFO` up.
fn exported(metadata: &tracing::Metadata<'_>) -> bool {
    let floor = if metadata.is_span() {
        LevelFilter::DEBUG
    } else {
        LevelFilter::INFO
    };
    metadata.target().starts_with("tributary") && *metadata.level() <= floor
}

/// Makes a request's span continue its caller's trace, with the gateway's ids (see the
/// module's documentation): its parent is the `traceparent`'s span, and it is started here,
/// with the request's ids, which [`RequestIds`] finds in the context attached meanwhile.
fn continue_trace(span: &Span, request: &RequestContext) {
    let (Ok(trace_id), Ok(span_id)) = (
        TraceId::from_hex(&request.trace_id),
        SpanId::from_hex(&request.span_id),
    ) else {
        return;
    };
    let caller = request
        .parent_id
        .as_deref()
        .and_then(|id| SpanId::from_hex(id).ok())
        .map(|parent_id| {
            let flags = u8::from_str_radix(&request.flags, 16).unwrap_or_default();
            SpanContext::new(
                trace_id,
                parent_id,
                TraceFlags::new(flags),
                true,
                TraceState::NONE,
            )
        });
    let parent = caller.map_or_else(Context::new, |caller| {
        Context::new().with_remote_span_context(caller)
    });
    // These fail only when the layer is not installed or the span has started: neither
    // happens to a request's span made with the layer installed.
    let _ = span.set_parent(parent);
    let _ids = Context::current_with_value(Ids { trace_id, span_id }).attach();
    let _ = span.context();
}

/// The ids a request's span is started with ([`continue_trace`]).
#[derive(Debug, Clone, Copy)]
struct Ids {
    trace_id: TraceId,
    span_id: SpanId,
}

/// The SDK's ids: those of the current context's [`Ids`] (a request's span), random
/// otherwise.
#[derive(Debug)]
struct RequestIds;

impl IdGenerator for RequestIds {
    fn new_trace_id(&self) -> TraceId {
        Context::map_current(|cx| cx.get::<Ids>().map(|ids| ids.trace_id))
            .unwrap_or_else(|| RandomIdGenerator::default().new_trace_id())
    }

    fn new_span_id(&self) -> SpanId {
        Context::map_current(|cx| cx.get::<Ids>().map(|ids| ids.span_id))
            .unwrap_or_else(|| RandomIdGenerator::default().new_span_id())
    }
}

/// Sends the exporter's requests with the tree's reqwest client, on the node's runtime:
/// the SDK exports from a thread of its own, outside any runtime.
#[derive(Debug)]
struct RuntimeClient {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for RuntimeClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let request = reqwest::Request::try_from(request)?;
        let client = self.client.clone();
        let (status, headers, body) = self
            .runtime
            .spawn(async move {
                let response = client.execute(request).await?;
                let (status, headers) = (response.status(), response.headers().clone());
                Ok::<_, reqwest::Error>((status, headers, response.bytes().await?))
            })
            .await??;
        let mut response = Response::builder().status(status).body(body)?;
        *response.headers_mut() = headers;
        Ok(response)
    }
}
