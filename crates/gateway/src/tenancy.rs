//! Tenants: what of the configured streams, pipelines and stored dead letters a
//! [`Principal`](crate::Principal) may see. Every route and GraphQL field that names or
//! lists them goes through the functions here, and only here is `AppState::streams` or
//! `AppState::pipelines` filtered.
//!
//! Contract:
//! - A stream belongs to the tenant of its config ([`crate::StreamInfo::tenant`],
//!   [`DEFAULT_TENANT`] unless given), or to that of the credential that created it through
//!   `POST /v1/streams`. A pipeline belongs to the tenant of its sources (the
//!   config refuses a pipeline whose sources, or whose declared tenant, disagree). A dead
//!   letter belongs to the tenant of its stream; one whose stream is not known (any
//!   more) belongs to [`DEFAULT_TENANT`], the operator's tenant.
//! - A principal sees only its own tenant's: listings hold only those, and a stream or
//!   pipeline of another tenant is answered exactly as an unknown one (the same 404 problem,
//!   never a 403), so that a credential cannot learn whether another tenant's exists.
//! - Each tenant names its streams in a namespace of its own: `acme` and `globex` may both
//!   have a stream `clicks`, each its own topic, events, raw events, dead letters and
//!   pipeline results, and creating a stream answers 409 only for a name of the caller's
//!   tenant. Inside Tributary (the log, the stores, the engine) a stream is its identity
//!   (see [Names](crate::catalog#names)); at this edge every name coming in is resolved
//!   from (tenant, name) to that identity ([`AppState::stream_entry_for`]; an ingested
//!   event's `stream` is checked against the name, [`tributary_core::parse::Target`]), and
//!   every name going out (streams, events' `stream`, dead letters' `stream`, pipelines'
//!   `sources`) is shown as its tenant's name ([`AppState::shown_stream`]). Pipelines are
//!   the config file's: their names are the operator's one namespace (no tenant creates or
//!   names one).
//! - Tenants are fully separate: the configured (bootstrap) keys are admins of
//!   [`DEFAULT_TENANT`] only, and see no other tenant's data either.

use std::sync::Arc;

use tributary_core::pipeline::PipelineSpec;
use tributary_core::ports::DEFAULT_TENANT;
use tributary_core::{DeadLetter, StreamName};

use crate::AppState;
use crate::catalog::StreamEntry;
use crate::error::ApiError;

impl AppState {
    /// The streams of `tenant`, ordered by their name.
    pub(crate) fn streams_of(&self, tenant: &str) -> Vec<Arc<StreamEntry>> {
        let mut streams: Vec<_> = self
            .streams
            .snapshot()
            .values()
            .filter(|entry| entry.info.tenant == tenant)
            .cloned()
            .collect();
        streams.sort_by(|a, b| a.name.cmp(&b.name));
        streams
    }

    /// The identity of the stream that `tenant` names `raw`, with the stream's entry; an
    /// invalid name, an unknown stream and another tenant's are the same 404.
    ///
    /// # Errors
    /// [`ApiError::UnknownStream`].
    pub(crate) fn stream_entry_for(
        &self,
        tenant: &str,
        raw: &str,
    ) -> Result<(StreamName, Arc<StreamEntry>), ApiError> {
        self.streams
            .find(tenant, raw)
            .ok_or_else(|| ApiError::UnknownStream {
                name: raw.to_owned(),
            })
    }

    /// The name by which its tenant knows the stream whose identity is `stream`, when it
    /// is known.
    pub(crate) fn shown_stream(&self, stream: &str) -> Option<StreamName> {
        let id = StreamName::new(stream).ok()?;
        self.streams.get(&id).map(|entry| entry.name.clone())
    }

    /// The tenant of the stream whose identity is `stream` ([`DEFAULT_TENANT`] when it is
    /// not known).
    pub(crate) fn tenant_of_stream(&self, stream: &str) -> String {
        StreamName::new(stream)
            .ok()
            .and_then(|name| self.streams.get(&name))
            .map_or_else(
                || DEFAULT_TENANT.to_owned(),
                |entry| entry.info.tenant.clone(),
            )
    }

    /// The names of the pipelines reading `stream`.
    pub(crate) fn readers_of(&self, stream: &StreamName) -> Vec<String> {
        self.pipelines
            .iter()
            .filter(|spec| spec.sources.contains(stream))
            .map(|spec| spec.name.clone())
            .collect()
    }

    /// The tenant of `spec`: that of its first source (the config checks that all agree).
    pub(crate) fn tenant_of_pipeline(&self, spec: &PipelineSpec) -> String {
        spec.sources.first().map_or_else(
            || DEFAULT_TENANT.to_owned(),
            |source| self.tenant_of_stream(source.as_str()),
        )
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
