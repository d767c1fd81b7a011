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
//!   when invalid).
//! - A caller sees only the dead letters of its tenant: those whose stream is one of its
//!   tenant's; those of a stream that is not configured are the `default` tenant's (see
//!   [`crate::tenancy`]). The store is read page by page and others' letters skipped, so a
//!   tenant with few letters among many of others' costs a longer read.
//! - [`keep`] stores a dead letter for the ingestion handler and counts it in
//!   `tributary_dead_letters_total{origin}`; a failure to store it is logged at error level
//!   and does not change the answer to the refused request.

use axum::Extension;
use axum::extract::State;
use axum::response::Response;
use tributary_core::DeadLetter;
use tributary_core::dead_letter::{DeadLetterCursor, DeadLetterPage};

use super::{Listing, PageQuery};
use crate::AppState;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::ingest::IngestService;

/// `GET /v1/dead-letters`.
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
    Listing {
        member: "dead_letters",
        limit,
        after,
    }
    .read(
        &state.edge,
        |limit, mut after: Option<(_, String)>| async move {
            // At most `limit` of the tenant's letters after `after`: reads of `limit` letters
            // until that many are kept or the store has no more.
            let mut kept = Vec::new();
            loop {
                let page = DeadLetterPage {
                    limit,
                    after: after.clone().map(|(at, id)| DeadLetterCursor { at, id }),
                };
                let letters = documents.recent_dead_letters(&page).await?;
                let last = letters.len() < limit;
                if let Some(letter) = letters.last() {
                    after = Some((letter.at, letter.id.clone()));
                }
                kept.extend(
                    letters
                        .into_iter()
                        .filter(|l| state.sees_dead_letter(tenant, l)),
                );
                if last || kept.len() >= limit {
                    kept.truncate(limit);
                    return Ok(kept);
                }
            }
        },
        |l: &DeadLetter| (l.at, l.id.as_str()),
    )
    .await
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
