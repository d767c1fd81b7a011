//! Reading a drained pipeline's results back, to check them against a ground truth.

use tributary_core::pipeline::PipelineSpec;
use tributary_core::ports::{AnalyticsStore, ResultQuery};
use tributary_core::results::ResultRow;

/// Every result row of `spec`'s pipeline, open or closed, oldest window first.
///
/// # Errors
/// When the store fails.
pub async fn all_rows(
    analytics: &dyn AnalyticsStore,
    spec: &PipelineSpec,
) -> anyhow::Result<Vec<ResultRow>> {
    let query = ResultQuery {
        pipeline: spec.name.clone(),
        from: None,
        to: None,
        key: None,
        limit: 100_000_000,
    };
    Ok(analytics.query_results(&spec.schema(), &query).await?)
}
