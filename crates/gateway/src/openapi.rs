//! `GET /openapi.json`: the OpenAPI 3.1 document of every route, hand-written in
//! `crates/gateway/openapi.json` and embedded at build time. A test checks that it documents
//! exactly the routes of [`crate::routes()`].

use axum::http::header;
use axum::response::IntoResponse;

/// The OpenAPI document, as embedded.
const OPENAPI_JSON: &str = include_str!("../openapi.json");

/// The OpenAPI 3.1 document describing the gateway, as JSON text.
#[must_use]
pub fn openapi_json() -> &'static str {
    OPENAPI_JSON
}

/// `GET /openapi.json`.
pub(crate) async fn serve() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON)
}
