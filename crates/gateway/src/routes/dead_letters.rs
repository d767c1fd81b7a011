//! `GET /v1/dead-letters`, and keeping a refused ingestion request as a dead letter.
//!
//! Contract:
//! - `GET /v1/dead-letters?limit=&cursor=` pages through what Tributary refused (see
//!   [`tributary_core::dead_letter`]), newest first (by time of refusal, then id):
//!   `{"dead_letters": [{"id", "at", "stream", "origin", "reason", "raw", "truncated"}...],
//!   "next_cursor"}`, where `origin` is an object tagged by `kind` (`ingest`, `log`,
//!   `late`, `archive`). `limit` and `cursor` follow the rules of
//!   `GET /v1/streams/{stream}/events` (default 100, within 1..=1000; at most
//!   `[http] max_page_bytes` of letters, at least one; an opaque cursor; a 400 for either
//!   when invalid). A letter's `stream` is the stream's name in the caller's tenant.
//! - A caller sees only the dead letters of its tenant: those whose stream is one of its
//!   tenant's; those of a stream that is not configured are the `default` tenant's (see
//!   [`crate::tenancy`]). The store selects them ([`StreamSelection`]): it reads no other
//!   tenant's letters, and a page is full whenever the tenant has enough letters.
//! - [`keep`] stores a dead letter for the ingestion handler and counts it in
//!   `tributary_dead_letters_total{origin}`; a failure to store it is logged at error level
//!   and does not change the answer to the refused request.

use axum::Extension;
use axum::extract::State;
use axum::response::Response;
use tributary_core::DeadLetter;
use tributary_core::dead_letter::{DeadLetterCursor, DeadLetterPage, StreamSelection};
use tributary_core::ports::DEFAULT_TENANT;

use super::{Listing, PageQuery};
use crate::AppState;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::ingest::IngestService;
use crate::openapi::{BadRequest, Unavailable, V1Errors, schemas};

/// `GET /v1/dead-letters`.
#[utoipa::path(
    get,
    path = "/v1/dead-letters",
    tag = "dead-letters",
    operation_id = "listDeadLetters",
    summary = "What Tributary refused, newest first (by time of refusal, then id).",
    description = "Four places keep what they refuse, with the reason: ingestion, for a request it answered 400, 413, 415 or 422 (unauthenticated requests and requests for unknown streams are not kept); a log reader, for a record that holds no event of its stream; a pipeline, for an event whose window had closed (late); the archive, for a raw event the document store refused (and the sources: a file, Kafka or MQTT record that is not a valid event). A caller sees its tenant's dead letters only. A page holds at most `limit` dead letters, and stops before they take more than `[http] max_page_bytes` (4 MiB by default; a page holds at least one); `next_cursor` continues after its last item.",
    params(PageQuery),
    responses(
        (status = 200, description = "One page of dead letters.", body = schemas::DeadLetterPage),
        V1Errors, BadRequest, Unavailable,
    ),
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Response, ApiError> {
    page(&state, &principal.tenant, &query).await
}

/// A page of `tenant`'s dead letters as `GET /v1/dead-letters` answers it.
pub(crate) async fn page(
    state: &AppState,
    tenant: &str,
    query: &PageQuery,
) -> Result<Response, ApiError> {
    let (limit, after) = query.checked()?;
    let documents = &state.ports.documents;
    let streams = selection(state, tenant);
    Listing {
        member: "dead_letters",
        limit,
        after,
    }
    .read(
        &state.edge,
        |limit, after: Option<(_, String)>| {
            let streams = &streams;
            async move {
                let page = DeadLetterPage {
                    limit,
                    after: after.map(|(at, id)| DeadLetterCursor { at, id }),
                };
                let mut letters = documents.recent_dead_letters_of(&page, streams).await?;
                // The store selected them; this only keeps a store that did not from
                // showing another tenant's letters.
                letters.retain(|l| state.sees_dead_letter(tenant, l));
                for letter in &mut letters {
                    if let Some(shown) = state.shown_stream(&letter.stream) {
                        letter.stream = shown.to_string();
                    }
                }
                Ok(letters)
            }
        },
        |l: &DeadLetter| (l.at, l.id.as_str()),
    )
    .await
}

/// The dead letters `tenant` sees, as the store selects them: those of its streams; for
/// the `default` tenant, those of every stream but other tenants' (a letter may name a
/// stream that is not configured).
fn selection(state: &AppState, tenant: &str) -> StreamSelection {
    let of_tenant = |wanted: bool| {
        state
            .streams
            .snapshot()
            .iter()
            .filter(|(_, entry)| (entry.info.tenant == tenant) == wanted)
            .map(|(name, _)| name.as_str().to_owned())
            .collect()
    };
    if tenant == DEFAULT_TENANT {
        StreamSelection::Except(of_tenant(false))
    } else {
        StreamSelection::Only(of_tenant(true))
    }
}

/// Stores `letter` through the [`IngestService`] (which counts it, and waits at most
/// [`crate::ingest::KEEP_TIMEOUT`]: a document store that does not answer must not hold the
/// answer to a refused request, and the memory of its letter, for long). A failure is
/// logged with the letter's id, stream, origin and reason, not returned: the caller
/// answers its request the same either way.
pub(crate) async fn keep(state: &AppState, letter: DeadLetter) {
    let service = IngestService::new(state.ports.clone(), state.max_ts_ahead);
    if let Err(error) = service.keep("http", std::slice::from_ref(&letter)).await {
        tracing::error!(
            id = %letter.id,
            stream = %letter.stream,
            origin = letter.origin.kind(),
            reason = %letter.reason,
            error = %error.cause,
            "dead letter not stored"
        );
    }
}
