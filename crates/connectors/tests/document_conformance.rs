//! The conformance suite of the `DocumentStore` port: every scenario is written once,
//! against `&dyn DocumentStore`, and runs against the embedded SQLite store (`sqlite::*`)
//! and against MongoDB (`mongodb::*`; FerretDB in development and CI).
//!
//! The MongoDB tests need `TRIBUTARY_MONGODB_URL` (`eval "$(bash scripts/services.sh env)"`)
//! and fail when it is missing or unreachable. Each test works in a database of its own,
//! dropped after it; each SQLite test in a file of its own in a temporary directory.

#![allow(clippy::unwrap_used)] // Test helpers outside #[test] functions unwrap too.

mod common;

use serde_json::{Map, Value, json};
use tributary_core::dead_letter::{
    DeadLetter, DeadLetterCursor, DeadLetterPage, MAX_DEAD_LETTER_RAW, Origin, StreamSelection,
};
use tributary_core::ports::{DocumentStore, EventCursor, EventPage, PortError};
use tributary_core::{Event, EventId, StreamName, Timestamp};

/// 2023-11-14T22:13:20Z.
const T0: i64 = 1_700_000_000_000;

fn stream(name: &str) -> StreamName {
    StreamName::new(name).unwrap()
}

fn id(id: &str) -> EventId {
    EventId::new(id).unwrap()
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not a JSON object: {other}"),
    }
}

fn event(stream_name: &str, event_id: &str, ts: i64, key: Option<&str>, payload: Value) -> Event {
    Event {
        id: id(event_id),
        stream: stream(stream_name),
        ts: Timestamp::from_millis(ts),
        key: key.map(str::to_owned),
        payload: object(payload),
    }
}

/// Where an item stands in a newest-first listing: its time, then its id (bytewise).
type Position<'a> = (Timestamp, &'a str);

fn event_position(event: &Event) -> Position<'_> {
    (event.ts, event.id.as_str())
}

fn letter_position(letter: &DeadLetter) -> Position<'_> {
    (letter.at, letter.id.as_str())
}

/// `items` in the store's order: newest first, ties by id descending.
fn sorted_newest_first<T>(mut items: Vec<T>, position: fn(&T) -> Position<'_>) -> Vec<T> {
    items.sort_by(|a, b| position(b).cmp(&position(a)));
    items
}

/// `events` in the store's order.
fn newest_first(events: Vec<Event>) -> Vec<Event> {
    sorted_newest_first(events, event_position)
}

/// Of `sorted` (newest first), the first `limit` items strictly after `cursor`.
fn page_after<T: Clone>(
    sorted: &[T],
    position: fn(&T) -> Position<'_>,
    cursor: Position<'_>,
    limit: usize,
) -> Vec<T> {
    sorted
        .iter()
        .filter(|item| position(item) < cursor)
        .take(limit)
        .cloned()
        .collect()
}

/// Every item of a newest-first listing, read in pages of `limit` through `page`, which
/// gets the last item of the previous page (the cursor). Checks that every page but the
/// last is full.
async fn read_pages<T>(limit: usize, mut page: impl AsyncFnMut(Option<&T>) -> Vec<T>) -> Vec<T> {
    let mut all: Vec<T> = Vec::new();
    loop {
        let next = page(all.last()).await;
        assert!(
            next.len() <= limit,
            "a page of {} for a limit of {limit}",
            next.len()
        );
        let done = next.len() < limit || next.is_empty();
        all.extend(next);
        if done {
            return all;
        }
        assert!(all.len() <= 10_000, "pagination does not end");
    }
}

/// Every event of `stream`, newest first, reading pages of `limit` through the cursor.
async fn read_all(store: &dyn DocumentStore, stream_name: &str, limit: usize) -> Vec<Event> {
    read_pages(limit, async |last: Option<&Event>| {
        let after = last.map(|e| EventCursor {
            ts: e.ts,
            id: e.id.clone(),
        });
        store
            .recent_events(&stream(stream_name), &EventPage { limit, after })
            .await
            .unwrap()
    })
    .await
}

/// Every dead letter, newest first, reading pages of `limit` through the cursor.
async fn read_all_dead_letters(store: &dyn DocumentStore, limit: usize) -> Vec<DeadLetter> {
    read_pages(limit, async |last: Option<&DeadLetter>| {
        let after = last.map(|l| DeadLetterCursor {
            at: l.at,
            id: l.id.clone(),
        });
        store
            .recent_dead_letters(&DeadLetterPage { limit, after })
            .await
            .unwrap()
    })
    .await
}

/// `letter`, refused at `at` epoch milliseconds.
fn refused_at(at: i64, letter: DeadLetter) -> DeadLetter {
    DeadLetter {
        at: Timestamp::from_millis(at),
        ..letter
    }
}

// ------------------------------------------------------------------------------- scenarios

/// Stored events read back by id, with and without a key.
async fn put_then_get(store: &dyn DocumentStore) {
    store.ping().await.unwrap();
    let events = vec![
        event(
            "clicks",
            "e1",
            T0,
            Some("user-1"),
            json!({"page": "/home", "ms": 12}),
        ),
        event("clicks", "e2", T0 + 1, None, json!({})),
    ];
    store.put_events(&events).await.unwrap();
    for e in &events {
        assert_eq!(
            store.get_event(&e.stream, &e.id).await.unwrap().as_ref(),
            Some(e)
        );
    }
    assert_eq!(
        store
            .get_event(&stream("clicks"), &id("missing"))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .get_event(&stream("never-written"), &id("e1"))
            .await
            .unwrap(),
        None
    );
    store.put_events(&[]).await.unwrap();
    assert_eq!(read_all(store, "clicks", 10).await, newest_first(events));
}

/// Storing an event again changes nothing: the first stored version wins, within a batch
/// too, and the new events of a batch holding duplicates are stored.
async fn puts_are_idempotent_and_first_version_wins(store: &dyn DocumentStore) {
    let first = event("clicks", "e1", T0, Some("a"), json!({"version": 1}));
    store
        .put_events(std::slice::from_ref(&first))
        .await
        .unwrap();
    store
        .put_events(std::slice::from_ref(&first))
        .await
        .unwrap();

    let changed = event("clicks", "e1", T0 + 5, Some("b"), json!({"version": 2}));
    let fresh = event("clicks", "e2", T0 + 1, None, json!({"version": 1}));
    store.put_events(&[changed, fresh.clone()]).await.unwrap();

    let twice_first = event("clicks", "e3", T0 + 2, None, json!({"copy": "first"}));
    let twice_second = event("clicks", "e3", T0 + 2, None, json!({"copy": "second"}));
    store
        .put_events(&[twice_first.clone(), twice_second])
        .await
        .unwrap();

    assert_eq!(
        store.get_event(&first.stream, &first.id).await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(
        store.get_event(&fresh.stream, &fresh.id).await.unwrap(),
        Some(fresh.clone())
    );
    assert_eq!(
        store
            .get_event(&twice_first.stream, &twice_first.id)
            .await
            .unwrap(),
        Some(twice_first.clone())
    );
    assert_eq!(
        read_all(store, "clicks", 100).await,
        newest_first(vec![first, fresh, twice_first])
    );
}

/// A large batch — larger than one insert command of the MongoDB adapter, which splits it —
/// of two streams interleaved, holding events stored already and ids repeated far apart
/// in the batch: every new event is stored once, and the first version of each wins.
async fn large_batches_keep_the_first_version_of_each_event(store: &dyn DocumentStore) {
    const EVENTS: i64 = 1_200;
    let version = |stream_name: &str, n: i64, version: i64| {
        event(
            stream_name,
            &format!("e{n}"),
            T0 + n,
            Some("k"),
            json!({"n": n, "version": version, "nested": {"list": [n, "x", {"y": null}]}}),
        )
    };
    let stored: Vec<Event> = (0..EVENTS)
        .step_by(10)
        .map(|n| version("clicks", n, 0))
        .collect();
    store.put_events(&stored).await.unwrap();

    let mut batch = Vec::new();
    for n in 0..EVENTS {
        batch.push(version("clicks", n, 1));
        batch.push(version("views", n, 1));
    }
    // Repeats of the first half, after all of it: never stored.
    for n in 0..EVENTS / 2 {
        batch.push(version("clicks", n, 2));
        batch.push(version("views", n, 2));
    }
    store.put_events(&batch).await.unwrap();
    store.put_events(&batch).await.unwrap();

    let expected = |stream_name: &str| {
        newest_first(
            (0..EVENTS)
                .map(|n| {
                    let first = if stream_name == "clicks" && n % 10 == 0 {
                        0
                    } else {
                        1
                    };
                    version(stream_name, n, first)
                })
                .collect(),
        )
    };
    for stream_name in ["clicks", "views"] {
        assert_eq!(
            read_all(store, stream_name, 500).await,
            expected(stream_name),
            "{stream_name}"
        );
    }
}

/// Paging newest first through the cursor returns every event exactly once, in order,
/// whatever the page size, with many events sharing a timestamp (so the id breaks ties).
async fn pages_walk_every_event_once_newest_first(store: &dyn DocumentStore) {
    let prefixes = ["x", "A", "m", "Z", "b", "é"];
    let mut events: Vec<Event> = (0..41i64)
        .map(|i| {
            let prefix = prefixes[usize::try_from(i).unwrap() % prefixes.len()];
            // Four events per timestamp, one before 1970.
            let ts = if i == 40 { -5 } else { T0 + (i / 4) * 1_000 };
            event(
                "clicks",
                &format!("{prefix}{:02}", (i * 7) % 41),
                ts,
                None,
                json!({"i": i}),
            )
        })
        .collect();
    events.reverse();
    for batch in events.chunks(15) {
        store.put_events(batch).await.unwrap();
    }
    let expected = newest_first(events);

    for limit in [1, 4, 7, 41, 100] {
        assert_eq!(
            read_all(store, "clicks", limit).await,
            expected,
            "pages of {limit}"
        );
    }
    assert_eq!(
        store
            .recent_events(
                &stream("clicks"),
                &EventPage {
                    limit: 0,
                    after: None
                }
            )
            .await
            .unwrap(),
        vec![]
    );

    // A cursor between stored events: strictly after it in newest-first order.
    for (ts, cursor_id) in [
        (T0 + 2_500, "zzz"),
        (T0 + 2_000, "m"),
        (T0 + 2_000, "!"),
        (-5, "a"),
    ] {
        let cursor = EventCursor {
            ts: Timestamp::from_millis(ts),
            id: id(cursor_id),
        };
        let want = page_after(&expected, event_position, (cursor.ts, cursor_id), 5);
        let page = EventPage {
            limit: 5,
            after: Some(cursor.clone()),
        };
        assert_eq!(
            store.recent_events(&stream("clicks"), &page).await.unwrap(),
            want,
            "after {cursor:?}"
        );
    }
}

/// Streams are separate: the same id in two streams is two events.
async fn streams_are_isolated(store: &dyn DocumentStore) {
    let clicks = event("clicks", "same-id", T0, None, json!({"stream": "clicks"}));
    let orders = event(
        "orders",
        "same-id",
        T0 + 1,
        Some("k"),
        json!({"stream": "orders"}),
    );
    let more_orders = event("orders", "other", T0 + 2, None, json!({}));
    store
        .put_events(&[clicks.clone(), orders.clone(), more_orders.clone()])
        .await
        .unwrap();
    assert_eq!(
        store
            .get_event(&stream("clicks"), &id("same-id"))
            .await
            .unwrap(),
        Some(clicks.clone())
    );
    assert_eq!(
        store
            .get_event(&stream("orders"), &id("same-id"))
            .await
            .unwrap(),
        Some(orders.clone())
    );
    assert_eq!(
        store
            .get_event(&stream("clicks"), &id("other"))
            .await
            .unwrap(),
        None
    );
    assert_eq!(read_all(store, "clicks", 10).await, vec![clicks]);
    assert_eq!(
        read_all(store, "orders", 10).await,
        vec![more_orders, orders]
    );
}

/// Unicode and deeply nested payloads come back exactly as stored.
async fn unicode_and_nested_payloads_round_trip(store: &dyn DocumentStore) {
    let payload = json!({
        "text": "日本語 ünïcødé 😀 \"quotes\" \\ \n\t",
        "ключ": "значение",
        "empty": "",
        "integers": [0, -1, 1, i64::MIN, i64::MAX, 4_294_967_296_i64],
        "floats": [0.1, -2.5, 1.0, 1e300, -1e-300, 123_456.789],
        "flags": [true, false, null],
        "nested": {"a": {"b": {"c": {"d": {"e": ["deep", {"f": [1, {"g": {}}]}]}}}}},
        "objects": [{"x": 1}, {"x": [2, 3]}, {}],
        "emptyArray": [],
        "emptyObject": {},
    });
    let events = vec![
        event("clicks", "événement-1", T0, Some("clé 🔑"), payload),
        event("clicks", "plain", T0 + 1, Some(""), json!({"only": "one"})),
    ];
    store.put_events(&events).await.unwrap();
    for e in &events {
        assert_eq!(
            store.get_event(&e.stream, &e.id).await.unwrap().as_ref(),
            Some(e)
        );
    }
    assert_eq!(read_all(store, "clicks", 1).await, newest_first(events));
}

/// Payloads MongoDB/FerretDB cannot store: each batch holding one is either stored whole
/// and read back exactly, or refused whole (`Refused`, nothing written) — never a panic or
/// another error. Returns how many batches were refused.
async fn unstorable_payloads_are_refused_or_kept(store: &dyn DocumentStore) -> usize {
    let payloads = [
        json!({"a.b": 1}),
        json!({"$set": 1}),
        json!({"outer": {"$inner": true}}),
        json!({"outer": [{"x.y": 1}]}),
        json!({"matrix": [[1, 2], [3, 4]]}),
        json!({"nul": "a\u{0}b"}),
        json!({"big": u64::MAX}),
    ];
    let mut refused = 0;
    for (i, payload) in payloads.into_iter().enumerate() {
        let good = event(
            "clicks",
            &format!("good-{i}"),
            T0,
            None,
            json!({"ok": true}),
        );
        let bad = event("clicks", &format!("bad-{i}"), T0, None, payload);
        match store.put_events(&[good.clone(), bad.clone()]).await {
            Ok(()) => {
                assert_eq!(
                    store.get_event(&good.stream, &good.id).await.unwrap(),
                    Some(good)
                );
                assert_eq!(
                    store.get_event(&bad.stream, &bad.id).await.unwrap(),
                    Some(bad)
                );
            }
            Err(PortError::Refused { source, .. }) => {
                refused += 1;
                assert!(!source.to_string().is_empty());
                assert_eq!(
                    store.get_event(&good.stream, &good.id).await.unwrap(),
                    None,
                    "{source}"
                );
                assert_eq!(
                    store.get_event(&bad.stream, &bad.id).await.unwrap(),
                    None,
                    "{source}"
                );
            }
            Err(other) => panic!("payload {i}: expected success or Refused, got {other:?}"),
        }
    }
    refused
}

/// The number of unstorable payloads [`unstorable_payloads_are_refused_or_kept`] tries.
const UNSTORABLE_PAYLOADS: usize = 7;

/// A store without dead letters has an empty page; a limit of 0 is an empty page too.
async fn no_dead_letters_is_an_empty_page(store: &dyn DocumentStore) {
    let first_page = DeadLetterPage {
        limit: 10,
        after: None,
    };
    assert_eq!(
        store.recent_dead_letters(&first_page).await.unwrap(),
        vec![]
    );
    store.put_dead_letters(&[]).await.unwrap();
    assert_eq!(
        store.recent_dead_letters(&first_page).await.unwrap(),
        vec![]
    );

    let clicks = stream("clicks");
    let letter = DeadLetter::log_record(&clicks, 0, 1, "not an event".into(), b"?");
    store
        .put_dead_letters(std::slice::from_ref(&letter))
        .await
        .unwrap();
    let none = DeadLetterPage {
        limit: 0,
        after: None,
    };
    assert_eq!(store.recent_dead_letters(&none).await.unwrap(), vec![]);
    let after_it = DeadLetterPage {
        limit: 10,
        after: Some(DeadLetterCursor {
            at: letter.at,
            id: letter.id.clone(),
        }),
    };
    assert_eq!(store.recent_dead_letters(&after_it).await.unwrap(), vec![]);
}

/// Every kind of dead letter comes back whole: each origin with its fields, the reason,
/// the raw text (Unicode, empty, and cut at the limit) and whether it was cut.
async fn dead_letters_round_trip_whole(store: &dyn DocumentStore) {
    let clicks = stream("clicks");
    let late_event = event("clicks", "e-1", T0 - 90_000, Some("k"), json!({"n": 1}));
    let oversized = "é".repeat(MAX_DEAD_LETTER_RAW);
    let letters = vec![
        refused_at(
            T0,
            DeadLetter::ingest(
                "no-such-stream",
                422,
                "invalid event: ts: must be a date ✗".into(),
                r#"{"id": "日本", "ts": "yesterday"}"#.as_bytes(),
            ),
        ),
        refused_at(
            T0 + 1,
            DeadLetter::ingest("clicks", 413, "too large".into(), oversized.as_bytes()),
        ),
        refused_at(
            T0 + 2,
            DeadLetter::log_record(&clicks, 3, 1 << 40, "the record has no value".into(), b""),
        ),
        refused_at(
            T0 + 3,
            DeadLetter::late(
                "per-minute",
                &late_event,
                Timestamp::from_millis(T0 - 120_000),
                Timestamp::from_millis(-1),
            ),
        ),
        refused_at(
            T0 - 5,
            DeadLetter::archive(&late_event, "refused: a key too long".into()),
        ),
    ];
    assert!(letters[1].truncated);
    store.put_dead_letters(&letters).await.unwrap();

    let read = read_all_dead_letters(store, 10).await;
    assert_eq!(read, sorted_newest_first(letters.clone(), letter_position));
    let origins: Vec<&Origin> = read.iter().map(|l| &l.origin).collect();
    assert_eq!(
        origins,
        [
            &Origin::Late {
                pipeline: "per-minute".into(),
                window_start: Timestamp::from_millis(T0 - 120_000),
                watermark: Timestamp::from_millis(-1),
            },
            &Origin::Log {
                partition: 3,
                offset: 1 << 40,
            },
            &Origin::Ingest { status: 413 },
            &Origin::Ingest { status: 422 },
            &Origin::Archive,
        ]
    );
}

/// Storing a dead letter again changes nothing: the first stored version of an id wins,
/// within a batch too, and the new letters of a batch holding stored ones are stored.
async fn dead_letters_are_stored_once_per_id(store: &dyn DocumentStore) {
    let clicks = stream("clicks");
    let first = refused_at(
        T0,
        DeadLetter::log_record(&clicks, 0, 7, "first reason".into(), b"first"),
    );
    store
        .put_dead_letters(std::slice::from_ref(&first))
        .await
        .unwrap();
    store
        .put_dead_letters(std::slice::from_ref(&first))
        .await
        .unwrap();

    // The same id, refused again later for another reason.
    let again = refused_at(
        T0 + 10,
        DeadLetter::log_record(&clicks, 0, 7, "second reason".into(), b"second"),
    );
    let fresh = refused_at(
        T0 + 1,
        DeadLetter::log_record(&clicks, 0, 8, "fresh".into(), b"fresh"),
    );
    store
        .put_dead_letters(&[again, fresh.clone()])
        .await
        .unwrap();

    let twice_first = refused_at(
        T0 + 2,
        DeadLetter::archive(&event("clicks", "e9", T0, None, json!({})), "kept".into()),
    );
    let twice_second = DeadLetter {
        reason: "dropped".into(),
        ..twice_first.clone()
    };
    store
        .put_dead_letters(&[twice_first.clone(), twice_second])
        .await
        .unwrap();

    assert_eq!(
        read_all_dead_letters(store, 100).await,
        vec![twice_first, fresh, first]
    );
}

/// Paging newest first through the cursor returns every dead letter exactly once, in
/// order, whatever the page size, with letters sharing a time (so the id breaks ties).
async fn dead_letter_pages_walk_every_letter_once(store: &dyn DocumentStore) {
    let clicks = stream("clicks");
    let ats = [T0, T0 + 5, T0, T0 + 5, T0 - 3, T0, T0 + 5];
    let letters: Vec<DeadLetter> = ats
        .iter()
        .zip([4_u64, 11, 2, 9, 30, 10, 1])
        .map(|(&at, offset)| {
            refused_at(
                at,
                DeadLetter::log_record(&clicks, 0, offset, format!("reason {offset}"), b"x"),
            )
        })
        .collect();
    store.put_dead_letters(&letters[..4]).await.unwrap();
    store.put_dead_letters(&letters[4..]).await.unwrap();
    let expected = sorted_newest_first(letters, letter_position);

    for limit in [1, 3, 6, 7, 8] {
        assert_eq!(
            read_all_dead_letters(store, limit).await,
            expected,
            "pages of {limit}"
        );
    }

    // A cursor between stored letters: strictly after it in newest-first order.
    for (at, id) in [
        (T0 + 5, "log:clicks:0:10"),
        (T0 + 1, "~"),
        (T0, "log:clicks:0:2"),
        (T0 - 3, "a"),
    ] {
        let cursor = DeadLetterCursor {
            at: Timestamp::from_millis(at),
            id: id.to_owned(),
        };
        let want = page_after(&expected, letter_position, (cursor.at, id), 3);
        let page = DeadLetterPage {
            limit: 3,
            after: Some(cursor.clone()),
        };
        assert_eq!(
            store.recent_dead_letters(&page).await.unwrap(),
            want,
            "after {cursor:?}"
        );
    }
}

/// A selection of streams is applied by the store: pages of the selected letters only,
/// full (a page of `limit` whenever that many are selected after the cursor, however many
/// others lie between them), walking every selected letter once.
async fn dead_letter_pages_select_streams(store: &dyn DocumentStore) {
    let (mine, theirs, other) = (stream("mine"), stream("theirs"), stream("other"));
    let mut letters = Vec::new();
    for offset in 0..40_u64 {
        // Newest first: 3 of `theirs`, 1 of `other`, then 1 of `mine`, and so on.
        let of = match offset % 5 {
            0 => &mine,
            1 => &other,
            _ => &theirs,
        };
        let at = T0 + i64::try_from(offset).unwrap();
        letters.push(refused_at(
            at,
            DeadLetter::log_record(of, 0, offset, "r".into(), b"x"),
        ));
    }
    store.put_dead_letters(&letters).await.unwrap();
    let of = |names: &[&str]| {
        let mut kept: Vec<DeadLetter> = letters
            .iter()
            .filter(|l| names.contains(&l.stream.as_str()))
            .cloned()
            .collect();
        kept = sorted_newest_first(kept, letter_position);
        kept
    };
    let read = async |selection: &StreamSelection, limit: usize| {
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = DeadLetterPage { limit, after };
            let letters = store
                .recent_dead_letters_of(&page, selection)
                .await
                .unwrap();
            let last = letters.len() < limit;
            after = letters.last().map(|l: &DeadLetter| DeadLetterCursor {
                at: l.at,
                id: l.id.clone(),
            });
            seen.extend(letters);
            if last {
                return seen;
            }
        }
    };
    let only_mine = StreamSelection::Only(vec!["mine".to_owned()]);
    let first = store
        .recent_dead_letters_of(
            &DeadLetterPage {
                limit: 5,
                after: None,
            },
            &only_mine,
        )
        .await
        .unwrap();
    assert_eq!(
        first,
        of(&["mine"])[..5],
        "a full page of the selected letters"
    );
    assert_eq!(read(&only_mine, 3).await, of(&["mine"]));
    let not_theirs = StreamSelection::Except(vec!["theirs".to_owned()]);
    assert_eq!(read(&not_theirs, 4).await, of(&["mine", "other"]));
    let both = StreamSelection::Only(vec!["mine".to_owned(), "other".to_owned()]);
    assert_eq!(read(&both, 7).await, of(&["mine", "other"]));
    assert_eq!(
        read(&StreamSelection::Except(Vec::new()), 16).await.len(),
        letters.len()
    );
    assert_eq!(read(&StreamSelection::Only(Vec::new()), 5).await, vec![]);
    assert_eq!(
        read(&StreamSelection::Only(vec!["nothing".to_owned()]), 5).await,
        vec![]
    );
}

/// A dead letter of bytes holding NUL is stored (never refused) and read back whole: the
/// NUL is U+FFFD in every store.
async fn dead_letters_holding_nul_are_stored(store: &dyn DocumentStore) {
    let clicks = stream("clicks");
    let letter = DeadLetter::log_record(&clicks, 0, 0, "not an event".into(), b"a\0b\xff");
    assert_eq!(letter.raw, "a\u{fffd}b\u{fffd}");
    store
        .put_dead_letters(std::slice::from_ref(&letter))
        .await
        .unwrap();
    assert_eq!(read_all_dead_letters(store, 10).await, vec![letter]);
}

/// Pruning deletes exactly the dead letters refused before the cut (`at < before`, so one
/// refused at the cut stays), returns how many, and finds nothing more the second time; a
/// store without dead letters has nothing to prune.
async fn pruning_deletes_only_older_dead_letters(store: &dyn DocumentStore) {
    let clicks = stream("clicks");
    let cut = T0;
    // Nothing to prune, before any dead letter was stored.
    assert_eq!(
        store
            .prune_dead_letters(Timestamp::from_millis(cut))
            .await
            .unwrap(),
        0
    );
    let letters: Vec<DeadLetter> = [cut - 86_400_000, cut - 2, cut - 1, cut, cut + 1, -5]
        .into_iter()
        .zip(0_u64..)
        .map(|(at, offset)| {
            refused_at(
                at,
                DeadLetter::log_record(&clicks, 0, offset, "not an event".into(), b"?"),
            )
        })
        .collect();
    store.put_dead_letters(&letters).await.unwrap();

    assert_eq!(
        store
            .prune_dead_letters(Timestamp::from_millis(cut))
            .await
            .unwrap(),
        4
    );
    let kept: Vec<DeadLetter> = letters
        .into_iter()
        .filter(|l| l.at.millis() >= cut)
        .collect();
    assert_eq!(kept.len(), 2);
    assert_eq!(
        read_all_dead_letters(store, 10).await,
        sorted_newest_first(kept, letter_position)
    );
    assert_eq!(
        store
            .prune_dead_letters(Timestamp::from_millis(cut))
            .await
            .unwrap(),
        0
    );
    assert_eq!(read_all_dead_letters(store, 10).await.len(), 2);
}

// ------------------------------------------------------------------- adapter-specific tests

/// Connecting to a port where no server listens fails `Unavailable`, within the ~10 s bound.
#[tokio::test]
async fn mongodb_connect_fails_unavailable_when_the_server_is_down() {
    use tributary_connectors::mongodb::{MongoConfig, MongoStore};
    let port = common::closed_port();
    let config = MongoConfig::new(format!(
        "mongodb://127.0.0.1:{port}/?serverSelectionTimeoutMS=2000"
    ));
    common::assert_unavailable_within(
        MongoStore::connect(&config),
        std::time::Duration::from_secs(5),
    )
    .await;
}

/// A malformed URL is the user's mistake: `Refused`, at once.
#[tokio::test]
async fn mongodb_connect_refuses_a_malformed_url() {
    use tributary_connectors::mongodb::{MongoConfig, MongoStore};
    common::assert_refused(MongoStore::connect(&MongoConfig::new("http://not-mongo")).await);
}

// --------------------------------------------------------------------------------- harness

mod harness {
    use std::panic::AssertUnwindSafe;

    use futures::FutureExt;
    use tempfile::TempDir;
    use tributary_connectors::mongodb::{MongoConfig, MongoStore};
    use tributary_connectors::sqlite::{SqliteConfig, SqliteStore};
    use tributary_core::ports::DocumentStore;

    /// Runs `case` against a fresh SQLite store in a temporary directory.
    pub async fn with_sqlite<F, T>(case: F) -> T
    where
        F: AsyncFnOnce(&dyn DocumentStore) -> T,
    {
        let dir = TempDir::new().unwrap();
        let store = SqliteStore::connect(&SqliteConfig {
            path: dir.path().join("store.db"),
        })
        .await
        .unwrap();
        let outcome = case(&store).await;
        store.close().await;
        outcome
    }

    /// Runs `case` against a fresh MongoDB database, dropped afterwards (even when the
    /// case panics).
    pub async fn with_mongodb<F, T>(case: F) -> T
    where
        F: AsyncFnOnce(&dyn DocumentStore) -> T,
    {
        let url = super::common::service_env("TRIBUTARY_MONGODB_URL");
        let config = MongoConfig {
            database: format!("t_{}", uuid::Uuid::now_v7().simple()),
            ..MongoConfig::new(url)
        };
        let store = MongoStore::connect(&config)
            .await
            .unwrap_or_else(|e| panic!("MongoDB at TRIBUTARY_MONGODB_URL is unreachable: {e:?}"));
        let outcome = AssertUnwindSafe(case(&store)).catch_unwind().await;
        store.database().drop().await.unwrap();
        store.close().await;
        match outcome {
            Ok(outcome) => outcome,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

macro_rules! conformance {
    ($($case:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    super::harness::with_sqlite(async |store| super::$case(store).await).await;
                }
            )+

            /// SQLite stores any JSON object.
            #[tokio::test]
            async fn unstorable_payloads_are_refused_or_kept() {
                let refused = super::harness::with_sqlite(async |store| {
                    super::unstorable_payloads_are_refused_or_kept(store).await
                })
                .await;
                assert_eq!(refused, 0);
            }

        }
        mod mongodb {
            $(
                #[tokio::test]
                async fn $case() {
                    super::harness::with_mongodb(async |store| super::$case(store).await).await;
                }
            )+

            /// The MongoDB adapter refuses every payload FerretDB cannot store.
            #[tokio::test]
            async fn unstorable_payloads_are_refused_or_kept() {
                let refused = super::harness::with_mongodb(async |store| {
                    super::unstorable_payloads_are_refused_or_kept(store).await
                })
                .await;
                assert_eq!(refused, super::UNSTORABLE_PAYLOADS);
            }

        }
    };
}

conformance!(
    dead_letters_holding_nul_are_stored,
    put_then_get,
    puts_are_idempotent_and_first_version_wins,
    large_batches_keep_the_first_version_of_each_event,
    pages_walk_every_event_once_newest_first,
    streams_are_isolated,
    unicode_and_nested_payloads_round_trip,
    no_dead_letters_is_an_empty_page,
    dead_letters_round_trip_whole,
    dead_letters_are_stored_once_per_id,
    dead_letter_pages_walk_every_letter_once,
    dead_letter_pages_select_streams,
    pruning_deletes_only_older_dead_letters,
);
