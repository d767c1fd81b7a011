//! The handlers, one file per resource: ingestion, streams, pipelines, dead letters, API
//! keys, and health (with metrics). Helpers shared by several of them live here. Every
//! handler naming or listing streams, pipelines or dead letters reads them for the
//! request's [`Principal`](crate::Principal)'s tenant ([`crate::tenancy`]).

pub(crate) mod dead_letters;
pub(crate) mod health;
pub(crate) mod ingest;
pub(crate) mod keys;
pub(crate) mod pipelines;
pub(crate) mod streams;

use std::future::Future;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use tributary_core::Timestamp;

use crate::Edge;
use crate::error::ApiError;

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

/// A `201 Created` answer: `body` as JSON, with a `Location` naming the new resource.
pub(crate) fn created(location: &str, body: impl Serialize) -> Response {
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    // Locations are made of validated names and ids: always a valid header value.
    if let Ok(location) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// Default page size of the newest-first listings (events, dead letters).
const DEFAULT_PAGE_LIMIT: usize = 100;
/// Largest page size of the newest-first listings.
const MAX_PAGE_LIMIT: usize = 1000;

/// The query string of a newest-first listing: `limit` (default 100, within 1..=1000) and
/// `cursor`, the `next_cursor` of the previous page.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageQuery {
    /// Page size.
    #[param(minimum = 1, maximum = 1000, default = 100)]
    limit: Option<usize>,
    /// The `next_cursor` of the previous page; opaque.
    cursor: Option<String>,
}

impl PageQuery {
    /// The query of a page of at most `limit` items after `cursor` (as the query string
    /// would give them), for callers other than the REST handlers (GraphQL).
    pub(crate) fn new(limit: Option<usize>, cursor: Option<String>) -> Self {
        Self { limit, cursor }
    }

    /// The page size and the position after which the page starts (time, id); a 400 for a
    /// limit out of range or a cursor the gateway did not issue.
    pub(crate) fn checked(&self) -> Result<(usize, Option<(Timestamp, String)>), ApiError> {
        let limit = limit_param(self.limit, DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT)?;
        let after = self.cursor.as_deref().map(decode_cursor).transpose()?;
        Ok((limit, after))
    }
}

/// The rows of the first read of a page from a store: few enough that a read of the largest
/// items (about 1 MB each) stays small.
const FIRST_READ: usize = 4;

/// How much larger a read may be than the one before: a page of typical items takes a few
/// reads, and a read never holds more than this many times the rows of the one before,
/// whatever their sizes.
const READ_GROWTH: usize = 4;

/// A newest-first listing, read and encoded within a byte budget
/// ([`EdgeSettings::max_page_bytes`](crate::EdgeSettings::max_page_bytes)).
pub(crate) struct Listing {
    /// The member of the response object that holds the items (`events`, ...).
    pub member: &'static str,
    /// The most items.
    pub limit: usize,
    /// The position after which the page starts.
    pub after: Option<(Timestamp, String)>,
}

impl Listing {
    /// Takes room for a page in `edge` (held until the page is built), then reads the page
    /// with `read(limit, after)` (at most `limit` items strictly after `after`, newest
    /// first), in reads sized by the budget and the largest item seen, and
    /// answers `{"<member>": [...], "next_cursor": ...}`. `next_cursor` is the position of
    /// the last item of the page when more follow (beyond the row limit or the byte
    /// budget), `null` otherwise.
    ///
    /// What is held at once is the page (at most `max_bytes`, plus one item) and one read:
    /// [`FIRST_READ`] items at first, then as many of the largest item seen as the rest of
    /// the budget holds, and at most [`READ_GROWTH`] times the rows of the read before.
    /// The store reads whole rows: a read of items much larger than those before it (a few
    /// small items newer than many of about 1 MB) holds more than the budget, up to the
    /// read's rows times the largest item.
    pub(crate) async fn read<T, F, Fut>(
        self,
        edge: &Edge,
        mut read: F,
        position: impl Fn(&T) -> (Timestamp, &str),
    ) -> Result<Response, ApiError>
    where
        T: Serialize,
        F: FnMut(usize, Option<(Timestamp, String)>) -> Fut,
        Fut: Future<Output = Result<Vec<T>, ApiError>>,
    {
        let _room = edge.reserve_page().await?;
        let max_bytes = edge.settings().max_page_bytes;
        let mut body = format!("{{\"{}\":[", self.member).into_bytes();
        let start = body.len();
        let mut count = 0;
        let mut largest = 0;
        let mut previous = 0;
        let mut after = self.after;
        let next_cursor = 'page: loop {
            let room = max_bytes.saturating_sub(body.len() - start);
            let wanted = read_size(self.limit - count, room, largest, previous);
            previous = wanted;
            // One more than wanted tells whether more follow.
            let items = read(wanted + 1, after.clone()).await?;
            let more = items.len() > wanted;
            for item in items.into_iter().take(wanted) {
                let encoded = serde_json::to_vec(&item).map_err(ApiError::Encode)?;
                let used = body.len() - start;
                if count > 0 && used + 1 + encoded.len() > max_bytes {
                    break 'page after.map(|(ts, id)| encode_cursor(ts, &id));
                }
                if count > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(&encoded);
                largest = largest.max(encoded.len());
                count += 1;
                let (ts, id) = position(&item);
                after = Some((ts, id.to_owned()));
            }
            if !more {
                break None;
            }
            if count == self.limit {
                break after.map(|(ts, id)| encode_cursor(ts, &id));
            }
        };
        body.extend_from_slice(b"],\"next_cursor\":");
        let cursor = serde_json::to_vec(&next_cursor).map_err(ApiError::Encode)?;
        body.extend_from_slice(&cursor);
        body.push(b'}');
        let mut response = body.into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        Ok(response)
    }
}

/// How many items the next read of a page asks for: at most `remaining`; [`FIRST_READ`]
/// at first; then as many items of the `largest` seen as `room` (bytes left in the budget)
/// holds, at least one and at most [`READ_GROWTH`] times the `previous` read.
fn read_size(remaining: usize, room: usize, largest: usize, previous: usize) -> usize {
    let wanted = room
        .checked_div(largest)
        .map_or(FIRST_READ, |n| n.clamp(1, previous * READ_GROWTH));
    wanted.min(remaining).max(1)
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
    fn reads_are_sized_by_the_budget_and_the_largest_item() {
        assert_eq!(read_size(1000, 4096, 0, 0), FIRST_READ);
        assert_eq!(read_size(3, 4096, 0, 0), 3);
        assert_eq!(read_size(1000, 3000, 100, 1000), 30);
        assert_eq!(read_size(1000, 96, 1000, 8), 1);
        assert_eq!(read_size(1000, 1 << 30, 10, 8), 8 * READ_GROWTH);
        assert_eq!(
            read_size(1000, 1 << 30, 10, FIRST_READ),
            FIRST_READ * READ_GROWTH
        );
        assert_eq!(read_size(3, 1 << 30, 10, 8), 3);
    }

    /// Items `n..0` (newest first), item `i` holding `sizes(i)` bytes of text.
    async fn page_of(
        total: i64,
        size: impl Fn(i64) -> usize,
        limit: usize,
        max_bytes: usize,
        after: Option<(Timestamp, String)>,
    ) -> (Vec<i64>, Option<String>, usize) {
        let reads = std::cell::Cell::new(0);
        let edge = Edge::new(crate::EdgeSettings {
            max_page_bytes: max_bytes,
            max_bytes_in_flight: max_bytes,
            ..crate::EdgeSettings::default()
        });
        let listing = Listing {
            member: "items",
            limit,
            after,
        };
        let response = listing
            .read(
                &edge,
                |n, after: Option<(Timestamp, String)>| {
                    reads.set(reads.get() + 1);
                    let below = after.map_or(total, |(ts, _)| ts.millis());
                    let items: Vec<(i64, String)> = (0..below)
                        .rev()
                        .take(n)
                        .map(|i| (i, "x".repeat(size(i))))
                        .collect();
                    async move { Ok(items) }
                },
                |(i, _): &(i64, String)| (Timestamp::from_millis(*i), "id"),
            )
            .await
            .unwrap();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let items = value["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item[0].as_i64().unwrap())
            .collect();
        let cursor = value["next_cursor"].as_str().map(str::to_owned);
        (items, cursor, reads.get())
    }

    #[tokio::test]
    async fn a_page_stops_at_its_row_limit_or_its_byte_budget() {
        // Row limit first: the cursor is the last item's position.
        let (items, cursor, reads) = page_of(10, |_| 1, 3, 1 << 20, None).await;
        assert_eq!(items, [9, 8, 7]);
        assert_eq!(
            decode_cursor(&cursor.unwrap()).unwrap(),
            (Timestamp::from_millis(7), "id".to_owned())
        );
        assert_eq!(reads, 1);
        // Exactly the rest: no cursor.
        let (items, cursor, _) = page_of(3, |_| 1, 3, 1 << 20, None).await;
        assert_eq!((items, cursor), (vec![2, 1, 0], None));
        // Many small items: read in a few growing reads (4, 16, 64, the 16 left), all of
        // them.
        let (items, cursor, reads) = page_of(100, |_| 1, 1000, 1 << 20, None).await;
        assert_eq!((items.len(), cursor, reads), (100, None, 4));
        // Items of ~100 bytes in a budget of 1000: a few per page, and the pages chain.
        let mut after = None;
        let mut seen = Vec::new();
        loop {
            let (items, cursor, _) = page_of(20, |_| 100, 1000, 1000, after).await;
            assert!((1..=9).contains(&items.len()), "{items:?}");
            seen.extend(items);
            match cursor {
                Some(cursor) => after = Some(decode_cursor(&cursor).unwrap()),
                None => break,
            }
        }
        assert_eq!(seen, (0..20).rev().collect::<Vec<_>>());
        // One item larger than the budget still makes a page of one.
        let (items, cursor, _) =
            page_of(5, |i| if i == 4 { 5000 } else { 1 }, 10, 1000, None).await;
        assert_eq!(items, [4]);
        assert!(cursor.is_some());
    }
}
