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
//! - [`keep`] stores a dead letter for the ingestion handler and counts it in
//!   `tributary_dead_letters_total{origin}`; a failure to store it is logged at error level
//!   and does not change the answer to the refused request.

use axum::extract::State;
use axum::response::Response;
use tributary_core::DeadLetter;
use tributary_core::dead_letter::{DeadLetterCursor, DeadLetterPage};

use super::{Listing, PageQuery};
use crate::AppState;
use crate::error::{ApiError, error_chain};
use crate::extract::ApiQuery;

/// `GET /v1/dead-letters`.
pub(crate) async fn list(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<PageQuery>,
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
        |limit, after| async move {
            let page = DeadLetterPage {
                limit,
                after: after.map(|(at, id)| DeadLetterCursor { at, id }),
            };
            Ok(documents.recent_dead_letters(&page).await?)
        },
        |l: &DeadLetter| (l.at, l.id.as_str()),
    )
    .await
}

/// Stores `letter` and counts it. A failure is logged with the letter's id, stream, origin
/// and reason, not returned: the caller answers its request the same either way.
///
/// It waits at most [`KEEP_TIMEOUT`]: a document store that does not answer must not hold
/// the answer to a refused request (and the memory of its letter) for long.
pub(crate) async fn keep(state: &AppState, letter: DeadLetter) {
    let origin = letter.origin.kind();
    let put = state
        .ports
        .documents
        .put_dead_letters(std::slice::from_ref(&letter));
    let error = match tokio::time::timeout(KEEP_TIMEOUT, put).await {
        Ok(Ok(())) => {
            metrics::counter!("tributary_dead_letters_total", "origin" => origin).increment(1);
            return;
        }
        Ok(Err(error)) => error_chain(&error),
        Err(_) => format!("the document store did not answer within {KEEP_TIMEOUT:?}"),
    };
    metrics::counter!("tributary_dead_letters_refused_total", "origin" => origin).increment(1);
    tracing::error!(
        id = %letter.id,
        stream = %letter.stream,
        origin,
        reason = %letter.reason,
        error,
        "dead letter not stored"
    );
}

/// How long a request waits for its dead letter to be stored.
const KEEP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);
