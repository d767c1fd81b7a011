//! `GET /openapi.json`: the OpenAPI 3.1 document of every route, hand-written in
//! `crates/gateway/openapi.json` and embedded at build time, completed at serve time with
//! one schema per configured pipeline of the `default` tenant (`PipelineResult_<pipeline>`: its typed key and
//! aggregate columns), to which the results endpoint's rows refer. A test checks that it
//! documents exactly the routes of [`crate::routes()`].

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use tributary_core::pipeline::PipelineSpec;
use tributary_core::ports::DEFAULT_TENANT;

use crate::AppState;

/// The OpenAPI document, as embedded.
const OPENAPI_JSON: &str = include_str!("../openapi.json");

/// The OpenAPI 3.1 document describing the gateway, as JSON text, without the schemas of
/// configured pipelines.
#[must_use]
pub fn openapi_json() -> &'static str {
    OPENAPI_JSON
}

/// The document with a result schema for each of `pipelines`.
#[must_use]
pub fn document(pipelines: &[PipelineSpec]) -> Value {
    let mut doc: Value = serde_json::from_str(OPENAPI_JSON).unwrap_or_default();
    add_rate_limit_responses(&mut doc);
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
    if !refs.is_empty() {
        if let Some(items) = doc.pointer_mut("/components/schemas/Results/properties/results/items")
        {
            *items = json!({ "anyOf": refs });
        }
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
pub(crate) async fn serve(State(state): State<AppState>) -> Json<Value> {
    let pipelines: Vec<PipelineSpec> = state.pipelines_of(DEFAULT_TENANT).cloned().collect();
    Json(document(&pipelines))
}

/// Documents the rate limits (`crate::rate_limit`) on every `/v1` operation: the 429
/// response and the `RateLimit-Policy` and `RateLimit` fields of every response.
fn add_rate_limit_responses(doc: &mut Value) {
    let header =
        |description: &str| json!({ "description": description, "schema": { "type": "string" } });
    if let Some(headers) = doc
        .pointer_mut("/components/headers")
        .and_then(Value::as_object_mut)
    {
        headers.insert(
            "RateLimitPolicy".into(),
            header(
                "The quota policies of draft-ietf-httpapi-ratelimit-headers-10: per credential (named after the route's scope) and per client address, each with `q` (the burst) and `w` (the seconds it takes to refill), e.g. `\"read\";q=2000;w=2, \"address\";q=4000;w=2`.",
            ),
        );
        headers.insert(
            "RateLimit".into(),
            header(
                "The state of each policy of RateLimit-Policy: `r`, the requests left now, and `t`, the seconds until the burst is full again, e.g. `\"read\";r=1999;t=1, \"address\";r=3999;t=1`.",
            ),
        );
    }
    if let Some(responses) = doc
        .pointer_mut("/components/responses")
        .and_then(Value::as_object_mut)
    {
        responses.insert(
            "TooManyRequests".into(),
            json!({
                "description": "The credential or the client address exceeded its quota (type `urn:tributary:problem:rate-limited`, with `policy` and `retry_after_ms`); retry after Retry-After seconds.",
                "headers": {
                    "Retry-After": { "$ref": "#/components/headers/RetryAfter" },
                    "RateLimit-Policy": { "$ref": "#/components/headers/RateLimitPolicy" },
                    "RateLimit": { "$ref": "#/components/headers/RateLimit" }
                },
                "content": {
                    "application/problem+json": {
                        "schema": { "$ref": "#/components/schemas/Problem" }
                    }
                }
            }),
        );
    }
    let Some(paths) = doc.pointer_mut("/paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        if !(path == "/v1" || path.starts_with("/v1/")) {
            continue;
        }
        let Some(operations) = item.as_object_mut() else {
            continue;
        };
        for operation in operations.values_mut() {
            if let Some(responses) = operation
                .get_mut("responses")
                .and_then(Value::as_object_mut)
            {
                responses
                    .entry("429")
                    .or_insert_with(|| json!({ "$ref": "#/components/responses/TooManyRequests" }));
            }
        }
    }
}
