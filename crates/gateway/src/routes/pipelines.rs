//! `GET /v1/pipelines` and `GET /v1/pipelines/{name}/results`.
//!
//! Contract:
//! - Both see only the pipelines of the caller's tenant ([`crate::tenancy`]): another
//!   tenant's pipeline is a 404, as an unknown one.
//! - `GET /v1/pipelines` lists the configured pipelines:
//!   `{"pipelines": [{"name", "sources", "filter", "key", "window": {"type", "size_ms",
//!   "slide_ms" | "gap_ms"}, "aggregates": {name: call}, "lookups": [{"name", "on", "key"}],
//!   "allowed_lateness_ms", "columns",
//!   "status"}]}` (a pipeline counting events per key, as all did before aggregates could be
//!   declared, also shows `"aggregate": "count"`). `sources` are the streams' names in the
//!   caller's tenant. `columns` are the typed columns of its results. `status` is the [`PipelineStatus`] the engine last wrote to the cache (at
//!   each checkpoint and when the pipeline is restored), or `null` when there is none. The cache is derived data: when it
//!   fails or holds an undecodable value, `status` is `null` and a warning is logged, and the
//!   listing still answers 200 — quickly, also while Redis is down: its commands fail within
//!   `[cache] command_timeout`, and at once while its circuit breaker is open (logged at
//!   debug level then, not once per request).
//! - `GET /v1/pipelines/{name}/results?from=&to=&key=&limit=` answers
//!   `{"pipeline", "results": [row...]}` from the pipeline's results table, ordered by window
//!   start then key; each row holds `pipeline`, `window_start`, `window_end`, `key`, each
//!   key field and aggregate by name with its typed value (numbers as numbers, NULL as
//!   `null`), `revision`, `closed` and `updated_at` (see `ResultRow::to_json`). `from` (inclusive) and `to` (exclusive) bound the window start and are
//!   RFC 3339 date-times or epoch milliseconds; `limit` defaults to 1000 and must be within
//!   1..=10000; `key` is checked like an event's key (at most 256 bytes, no NUL), and
//!   `from` and `to` must be within the range of event times (years 0000 to 9999). Bad
//!   parameters are a 400 naming the parameter (also `from` after `to`); an unknown
//!   pipeline is a 404. While the analytics store is down the query is a 503 with
//!   `Retry-After`, within `[analytics] query_timeout` (at once while the store's circuit
//!   breaker is open).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tributary_core::event::check_key;
use tributary_core::expr::Expr;
use tributary_core::pipeline::{PipelineSpec, PipelineStatus, StatusError, WindowSpec, millis};
use tributary_core::ports::ResultQuery;
use tributary_core::{StreamName, Timestamp};

use super::limit_param;
use crate::AppState;
use crate::auth::Principal;
use crate::error::{ApiError, error_chain};
use crate::extract::{ApiPath, ApiQuery};
use crate::openapi::{BadRequest, NotFound, Unavailable, V1Errors, schemas};
use utoipa::ToSchema;

/// Default number of results.
const DEFAULT_LIMIT: usize = 1000;
/// Largest number of results.
const MAX_LIMIT: usize = 10_000;

/// The answer of `GET /v1/pipelines`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PipelineList {
    pipelines: Vec<PipelineView>,
}

/// A configured pipeline, as listed.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PipelineView {
    name: String,
    /// The streams it reads.
    #[schema(value_type = Vec<schemas::StreamName>)]
    sources: Vec<StreamName>,
    /// The filter expression, in canonical form.
    #[schema(required = true)]
    filter: Option<String>,
    /// The key expressions, in canonical form.
    key: Vec<String>,
    window: WindowView,
    /// Each aggregate's column name and its function and argument.
    aggregates: BTreeMap<String, String>,
    /// The reference tables the pipeline looks fields up in: each lookup's name, the
    /// expression it looks up by, and the table's key column.
    lookups: Vec<LookupView>,
    #[schema(minimum = 0)]
    allowed_lateness_ms: i64,
    /// The typed key and aggregate columns of the pipeline's results (values may also be
    /// null).
    #[schema(value_type = BTreeMap<String, ColumnType>)]
    columns: BTreeMap<String, &'static str>,
    /// The status the processor last published; null before its first checkpoint or when
    /// the cache cannot be read.
    #[schema(value_type = Option<schemas::PipelineStatus>, required = true)]
    status: Option<PipelineStatus>,
    /// Shown for pipelines that count events per event key, as every pipeline did before
    /// aggregates could be declared.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<LegacyAggregate>)]
    aggregate: Option<&'static str>,
}

/// A pipeline's window: tumbling (`size_ms`), hopping (`size_ms` and `slide_ms`) or session
/// (`gap_ms`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
enum WindowView {
    Tumbling {
        #[schema(minimum = 1)]
        size_ms: i64,
    },
    Hopping {
        #[schema(minimum = 1)]
        size_ms: i64,
        #[schema(minimum = 1)]
        slide_ms: i64,
    },
    Session {
        #[schema(minimum = 1)]
        gap_ms: i64,
    },
}

/// A lookup of a pipeline.
#[derive(Debug, Serialize, ToSchema)]
struct LookupView {
    name: String,
    on: String,
    key: String,
}

/// The JSON type of a result column.
#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
enum ColumnType {
    Boolean,
    Integer,
    Number,
    String,
}

/// `count`.
#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
enum LegacyAggregate {
    Count,
}

/// `GET /v1/pipelines`.
#[utoipa::path(
    get,
    path = "/v1/pipelines",
    tag = "pipelines",
    operation_id = "listPipelines",
    summary = "The configured pipelines with their live status.",
    responses((status = 200, description = "The pipelines.", body = PipelineList), V1Errors),
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Json<PipelineList> {
    Json(PipelineList {
        pipelines: describe_all(&state, &principal.tenant).await,
    })
}

/// The pipelines of `tenant`, with their cached status, as `GET /v1/pipelines` lists them.
pub(crate) async fn describe_all(state: &AppState, tenant: &str) -> Vec<PipelineView> {
    let mut pipelines = Vec::new();
    for spec in state.pipelines_of(tenant) {
        let status = cached_status(state, &spec.name).await;
        let sources = spec
            .sources
            .iter()
            .map(|id| {
                state
                    .shown_stream(id.as_str())
                    .unwrap_or_else(|| id.clone())
            })
            .collect();
        pipelines.push(describe(spec, sources, status));
    }
    pipelines
}

/// `spec` as listed, reading `sources` (its sources' names in its tenant's namespace).
fn describe(
    spec: &PipelineSpec,
    sources: Vec<StreamName>,
    status: Option<PipelineStatus>,
) -> PipelineView {
    let window = match spec.window {
        WindowSpec::Tumbling { size_ms } => WindowView::Tumbling { size_ms },
        WindowSpec::Hopping { size_ms, slide_ms } => WindowView::Hopping { size_ms, slide_ms },
        WindowSpec::Session { gap_ms } => WindowView::Session { gap_ms },
    };
    let aggregates = spec
        .aggregates
        .iter()
        .map(|a| {
            let argument = a.argument.as_ref().map_or("*", Expr::canonical);
            (
                a.name.clone(),
                format!("{}[{argument}]", a.function.signature()),
            )
        })
        .collect();
    let schema = spec.schema();
    let columns = schema
        .key_columns()
        .map(|(_, c)| c)
        .chain(&schema.aggregates)
        .map(|c| (c.name.clone(), c.ty.json_type()))
        .collect();
    PipelineView {
        name: spec.name.clone(),
        sources,
        filter: spec.filter.as_ref().map(|f| f.canonical().to_owned()),
        key: spec
            .keys
            .iter()
            .map(|k| k.expr.canonical().to_owned())
            .collect(),
        window,
        aggregates,
        lookups: spec
            .lookups
            .iter()
            .map(|l| LookupView {
                name: l.name.clone(),
                on: l.on.canonical().to_owned(),
                key: l.key_column.clone(),
            })
            .collect(),
        allowed_lateness_ms: millis(spec.allowed_lateness),
        columns,
        status,
        aggregate: spec.is_legacy_count().then_some("count"),
    }
}

/// The pipeline's status from the cache (merged from its parts, which may run in several
/// processes); `None` when absent, unreadable or undecodable.
pub(crate) async fn cached_status(state: &AppState, pipeline: &str) -> Option<PipelineStatus> {
    match PipelineStatus::load(state.ports.cache.as_ref(), pipeline).await {
        Ok(status) => status,
        Err(StatusError::Undecodable { key, source }) => {
            tracing::warn!(pipeline, key, error = %source, "undecodable pipeline status in the cache");
            None
        }
        Err(StatusError::Cache(error)) if error.retry_after().is_some() => {
            tracing::debug!(pipeline, error = %error_chain(&error), "pipeline status unreadable");
            None
        }
        Err(StatusError::Cache(error)) => {
            tracing::warn!(pipeline, error = %error_chain(&error), "pipeline status unreadable");
            None
        }
    }
}

/// The query string of the results endpoint.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ResultsQuery {
    /// Only windows starting at or after this time (RFC 3339 or epoch milliseconds).
    #[param(value_type = Option<schemas::TimeParam>)]
    pub(crate) from: Option<String>,
    /// Only windows starting before this time (RFC 3339 or epoch milliseconds).
    #[param(value_type = Option<schemas::TimeParam>)]
    pub(crate) to: Option<String>,
    /// Only this key (at most 256 bytes, without NUL characters).
    #[param(max_length = 256)]
    pub(crate) key: Option<String>,
    /// At most this many results.
    #[param(minimum = 1, maximum = 10000, default = 1000)]
    pub(crate) limit: Option<usize>,
}

/// The answer of `GET /v1/pipelines/{name}/results`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Results {
    pipeline: String,
    /// The rows (see `ResultRow::to_json`).
    #[schema(value_type = Vec<schemas::WindowResult>)]
    results: Vec<Value>,
}

/// `GET /v1/pipelines/{name}/results`.
#[utoipa::path(
    get,
    path = "/v1/pipelines/{name}/results",
    tag = "pipelines",
    operation_id = "pipelineResults",
    summary = "The pipeline's window results, ordered by window start, then key.",
    params(ResultsQuery, ("name" = String, Path, description = "The pipeline.")),
    responses(
        (status = 200, description = "The results.", body = Results),
        V1Errors, BadRequest, NotFound, Unavailable,
    ),
)]
pub(crate) async fn results(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(query): ApiQuery<ResultsQuery>,
) -> Result<Response, ApiError> {
    let (spec, query) = checked_query(&state, &principal.tenant, &name, query)?;
    let Some(cache) = state.edge.results_cache() else {
        return Ok(Json(read_results(&state, spec, &query).await?).into_response());
    };
    // A pipeline's name is unique (the config file's, across tenants), and the caller may
    // see it.
    let key = format!(
        "{}\0{:?}\0{:?}\0{:?}\0{}",
        query.pipeline,
        query.from.map(Timestamp::millis),
        query.to.map(Timestamp::millis),
        query.key,
        query.limit
    );
    let body = match cache.get(&key).await {
        Some(body) => body,
        None => {
            let results = read_results(&state, spec, &query).await?;
            let body = Bytes::from(serde_json::to_vec(&results).map_err(ApiError::Encode)?);
            cache.insert(key, body.clone()).await;
            body
        }
    };
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// The results of pipeline `name` (a pipeline of `tenant`) as
/// `GET /v1/pipelines/{name}/results` answers them, read from the analytics store.
pub(crate) async fn query_results(
    state: &AppState,
    tenant: &str,
    name: &str,
    query: ResultsQuery,
) -> Result<Results, ApiError> {
    let (spec, query) = checked_query(state, tenant, name, query)?;
    read_results(state, spec, &query).await
}

/// Pipeline `name` (of `tenant`) and the checked `query` of its results.
fn checked_query<'a>(
    state: &'a AppState,
    tenant: &str,
    name: &str,
    query: ResultsQuery,
) -> Result<(&'a PipelineSpec, ResultQuery), ApiError> {
    let spec = state.pipeline_for(tenant, name)?;
    let from = query
        .from
        .as_deref()
        .map(|t| time_param("from", t))
        .transpose()?;
    let to = query
        .to
        .as_deref()
        .map(|t| time_param("to", t))
        .transpose()?;
    if let (Some(from), Some(to)) = (from, to)
        && from > to
    {
        return Err(ApiError::InvalidParameter {
            name: "from",
            reason: format!("must not be after to ({from} > {to})"),
        });
    }
    if let Some(key) = &query.key {
        check_key(key).map_err(|reason| ApiError::InvalidParameter {
            name: "key",
            reason: reason.to_owned(),
        })?;
    }
    let query = ResultQuery {
        pipeline: spec.name.clone(),
        from,
        to,
        key: query.key,
        limit: limit_param(query.limit, DEFAULT_LIMIT, MAX_LIMIT)?,
    };
    Ok((spec, query))
}

/// The rows of `query` (of pipeline `spec`) in the analytics store.
#[tracing::instrument(level = "debug", name = "query", skip_all, fields(pipeline = %spec.name, limit = query.limit))]
async fn read_results(
    state: &AppState,
    spec: &PipelineSpec,
    query: &ResultQuery,
) -> Result<Results, ApiError> {
    let schema = spec.schema();
    let rows = state.ports.analytics.query_results(&schema, query).await?;
    let results = rows.iter().map(|row| row.to_json(&schema)).collect();
    Ok(Results {
        pipeline: spec.name.clone(),
        results,
    })
}

/// An RFC 3339 date-time or integer epoch milliseconds, within the range of event times.
pub(crate) fn time_param(name: &'static str, text: &str) -> Result<Timestamp, ApiError> {
    let text = text.trim();
    let ts = match text.parse::<i64>() {
        Ok(millis) => Ok(Timestamp::from_millis(millis)),
        Err(_) => Timestamp::parse_rfc3339(text),
    };
    ts.and_then(Timestamp::validated)
        .map_err(|reason| ApiError::InvalidParameter {
            name,
            reason: reason.to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_params_accept_rfc3339_and_epoch_millis() {
        let a = time_param("from", "2026-11-25T18:00:00Z").unwrap();
        let b = time_param("from", &a.millis().to_string()).unwrap();
        assert_eq!(a, b);
        assert!(time_param("from", "yesterday").is_err());
        assert!(time_param("from", "9223372036854775807").is_err());
        let max = Timestamp::MAX_VALID.millis();
        assert_eq!(
            time_param("to", &max.to_string()).unwrap(),
            Timestamp::MAX_VALID
        );
        assert_eq!(
            time_param("from", "0000-01-01T00:00:00Z").unwrap(),
            Timestamp::MIN_VALID
        );
        for out_of_range in [
            (max + 1).to_string(),
            (Timestamp::MIN_VALID.millis() - 1).to_string(),
            "8210266876799000".to_owned(),
            "9999-12-31T23:59:59-01:00".to_owned(),
        ] {
            let Err(ApiError::InvalidParameter { name, reason }) = time_param("to", &out_of_range)
            else {
                panic!("{out_of_range} accepted")
            };
            assert_eq!(name, "to");
            assert!(reason.contains("9999-12-31T23:59:59.999Z"), "{reason}");
        }
    }
}
