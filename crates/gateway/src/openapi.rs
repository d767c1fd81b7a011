//! `GET /openapi.json`: the OpenAPI 3.1 document of every route, hand-written in
//! `crates/gateway/openapi.json` and embedded at build time, completed at serve time with
//! one schema per configured pipeline (`PipelineResult_<pipeline>`: its typed key and
//! aggregate columns), to which the results endpoint's rows refer. A test checks that it
//! documents exactly the routes of [`crate::routes()`].

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use tributary_core::pipeline::PipelineSpec;

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
pub(crate) async fn serve(State(state): State<AppState>) -> Json<Value> {
    Json(document(&state.pipelines))
}
