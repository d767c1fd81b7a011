//! The handlers, one file per resource: ingestion, streams, pipelines, dead letters, and
//! health (with metrics). Helpers shared by several of them live here.

pub(crate) mod dead_letters;
pub(crate) mod health;
pub(crate) mod ingest;
pub(crate) mod pipelines;
pub(crate) mod streams;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use tributary_core::pipeline::PipelineSpec;
use tributary_core::{StreamName, Timestamp};

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

/// Default page size of the newest-first listings (events, dead letters).
const DEFAULT_PAGE_LIMIT: usize = 100;
/// Largest page size of the newest-first listings.
const MAX_PAGE_LIMIT: usize = 1000;

/// The query string of a newest-first listing: `limit` (default 100, within 1..=1000) and
/// `cursor`, the `next_cursor` of the previous page.
#[derive(Debug, Deserialize)]
pub(crate) struct PageQuery {
    limit: Option<usize>,
    cursor: Option<String>,
}

impl PageQuery {
    /// The page size and the position after which the page starts (time, id); a 400 for a
    /// limit out of range or a cursor the gateway did not issue.
    pub(crate) fn checked(&self) -> Result<(usize, Option<(Timestamp, String)>), ApiError> {
        let limit = limit_param(self.limit, DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT)?;
        let after = self.cursor.as_deref().map(decode_cursor).transpose()?;
        Ok((limit, after))
    }
}

/// Cuts `items`, fetched with a limit of `limit + 1`, to `limit`, and returns the cursor of
/// the next page: the position (time, id) of the last item kept, or `None` when no item
/// follows it.
pub(crate) fn next_page<T>(
    items: &mut Vec<T>,
    limit: usize,
    position: impl Fn(&T) -> (Timestamp, &str),
) -> Option<String> {
    if items.len() <= limit {
        return None;
    }
    items.truncate(limit);
    items.last().map(|item| {
        let (ts, id) = position(item);
        encode_cursor(ts, id)
    })
}

/// The opaque cursor of a position: `{epoch_millis}:{id}`, base64url without padding.
fn encode_cursor(ts: Timestamp, id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{id}", ts.millis()))
}

/// The position of a cursor made by [`encode_cursor`].
fn decode_cursor(text: &str) -> Result<(Timestamp, String), ApiError> {
    let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| invalid_cursor())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid_cursor())?;
    let (millis, id) = text.split_once(':').ok_or_else(invalid_cursor)?;
    let ts = millis
        .parse::<i64>()
        .map(Timestamp::from_millis)
        .map_err(|_| invalid_cursor())?;
    if id.is_empty() {
        return Err(invalid_cursor());
    }
    Ok((ts, id.to_owned()))
}

/// The 400 of a cursor the gateway did not issue.
pub(crate) fn invalid_cursor() -> ApiError {
    ApiError::InvalidParameter {
        name: "cursor",
        reason: "is not a cursor returned as next_cursor by this endpoint".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        let (ts, id) = (Timestamp::from_millis(-5), "a:b/c?d");
        let text = encode_cursor(ts, id);
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(decode_cursor(&text).unwrap(), (ts, id.to_owned()));
        for bad in [
            "",
            "!!",
            "MTIz",
            &URL_SAFE_NO_PAD.encode("x:id"),
            &URL_SAFE_NO_PAD.encode("5:"),
        ] {
            assert!(decode_cursor(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_page_has_a_next_cursor_only_when_more_follow() {
        fn position(n: &i64) -> (Timestamp, &str) {
            (Timestamp::from_millis(*n), "id")
        }
        let mut exact = vec![3, 2];
        assert_eq!(next_page(&mut exact, 2, position), None);
        assert_eq!(exact, [3, 2]);
        let mut more = vec![3, 2, 1];
        let cursor = next_page(&mut more, 2, position).unwrap();
        assert_eq!(more, [3, 2]);
        assert_eq!(
            decode_cursor(&cursor).unwrap(),
            (Timestamp::from_millis(2), "id".to_owned())
        );
    }
}
