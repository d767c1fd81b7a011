//! The handlers, one file per resource: ingestion, streams, pipelines, and health (with
//! metrics). Helpers shared by several of them live here.

pub(crate) mod health;
pub(crate) mod ingest;
pub(crate) mod pipelines;
pub(crate) mod streams;

use tributary_core::StreamName;
use tributary_core::pipeline::PipelineSpec;

use crate::AppState;
use crate::error::ApiError;

/// The configured stream named `raw`; an invalid or unconfigured name is a 404.
pub(crate) fn known_stream(state: &AppState, raw: &str) -> Result<StreamName, ApiError> {
    StreamName::new(raw)
        .ok()
        .filter(|name| state.streams.contains_key(name))
        .ok_or_else(|| ApiError::UnknownStream {
            name: raw.to_owned(),
        })
}

/// The configured pipeline named `name`, or a 404.
pub(crate) fn known_pipeline<'a>(
    state: &'a AppState,
    name: &str,
) -> Result<&'a PipelineSpec, ApiError> {
    state
        .pipelines
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| ApiError::UnknownPipeline {
            name: name.to_owned(),
        })
}

/// Reads an optional count parameter: `default` when absent, 400 outside `1..=max`.
pub(crate) fn limit_param(
    value: Option<usize>,
    default: usize,
    max: usize,
) -> Result<usize, ApiError> {
    match value {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::InvalidParameter {
            name: "limit",
            reason: format!("must be between 1 and {max}, got {n}"),
        }),
    }
}
