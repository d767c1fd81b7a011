//! Tenants: what of the configured streams, pipelines and stored dead letters a
//! [`Principal`](crate::Principal) may see. Every route and GraphQL field that names or
//! lists them goes through the functions here, and only here is `AppState::streams` or
//! `AppState::pipelines` filtered.
//!
//! Contract:
//! - A stream belongs to the tenant of its config ([`StreamInfo::tenant`],
//!   [`DEFAULT_TENANT`] unless given). A pipeline belongs to the tenant of its sources (the
//!   config refuses a pipeline whose sources, or whose declared tenant, disagree). A dead
//!   letter belongs to the tenant of its stream; one whose stream is not configured (any
//!   more) belongs to [`DEFAULT_TENANT`], the operator's tenant.
//! - A principal sees only its own tenant's: listings hold only those, and a stream or
//!   pipeline of another tenant is answered exactly as an unknown one (the same 404 problem,
//!   never a 403), so that a credential cannot learn whether another tenant's exists.
//! - Tenants are fully separate: the configured (bootstrap) keys are admins of
//!   [`DEFAULT_TENANT`] only, and see no other tenant's data either.

use tributary_core::pipeline::PipelineSpec;
use tributary_core::ports::DEFAULT_TENANT;
use tributary_core::{DeadLetter, StreamName};

use crate::error::ApiError;
use crate::{AppState, StreamInfo};

impl AppState {
    /// The streams of `tenant`, ordered by name.
    pub(crate) fn streams_of<'a>(
        &'a self,
        tenant: &'a str,
    ) -> impl Iterator<Item = (&'a StreamName, &'a StreamInfo)> + 'a {
        self.streams
            .iter()
            .filter(move |(_, info)| info.tenant == tenant)
    }

    /// The stream named `raw` of `tenant`; an invalid name, an unconfigured stream and
    /// another tenant's are the same 404.
    ///
    /// # Errors
    /// [`ApiError::UnknownStream`].
    pub(crate) fn stream_for(&self, tenant: &str, raw: &str) -> Result<StreamName, ApiError> {
        StreamName::new(raw)
            .ok()
            .filter(|name| {
                self.streams
                    .get(name)
                    .is_some_and(|info| info.tenant == tenant)
            })
            .ok_or_else(|| ApiError::UnknownStream {
                name: raw.to_owned(),
            })
    }

    /// The tenant of the stream named `stream` ([`DEFAULT_TENANT`] when it is not
    /// configured).
    pub(crate) fn tenant_of_stream(&self, stream: &str) -> &str {
        StreamName::new(stream)
            .ok()
            .and_then(|name| self.streams.get(&name))
            .map_or(DEFAULT_TENANT, |info| info.tenant.as_str())
    }

    /// The tenant of `spec`: that of its first source (the config checks that all agree).
    pub(crate) fn tenant_of_pipeline(&self, spec: &PipelineSpec) -> &str {
        spec.sources.first().map_or(DEFAULT_TENANT, |source| {
            self.tenant_of_stream(source.as_str())
        })
    }

    /// The pipelines of `tenant`, in configuration order.
    pub(crate) fn pipelines_of<'a>(
        &'a self,
        tenant: &'a str,
    ) -> impl Iterator<Item = &'a PipelineSpec> + 'a {
        self.pipelines
            .iter()
            .filter(move |spec| self.tenant_of_pipeline(spec) == tenant)
    }

    /// The pipeline named `name` of `tenant`; an unknown pipeline and another tenant's are
    /// the same 404.
    ///
    /// # Errors
    /// [`ApiError::UnknownPipeline`].
    pub(crate) fn pipeline_for(&self, tenant: &str, name: &str) -> Result<&PipelineSpec, ApiError> {
        self.pipelines
            .iter()
            .find(|p| p.name == name && self.tenant_of_pipeline(p) == tenant)
            .ok_or_else(|| ApiError::UnknownPipeline {
                name: name.to_owned(),
            })
    }

    /// Whether `tenant` may see `letter`.
    pub(crate) fn sees_dead_letter(&self, tenant: &str, letter: &DeadLetter) -> bool {
        self.tenant_of_stream(&letter.stream) == tenant
    }
}
