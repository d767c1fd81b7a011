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

/// `events` in the store's order: newest first, ties by id descending (bytewise).
fn newest_first(mut events: Vec<Event>) -> Vec<Event> {
    events.sort_by(|a, b| (b.ts, &b.id).cmp(&(a.ts, &a.id)));
    events
}

/// Every event of `stream`, newest first, reading pages of `limit` through the cursor.
/// Checks that every page but the last is full.
async fn read_all(store: &dyn DocumentStore, stream_name: &str, limit: usize) -> Vec<Event> {
    let mut all: Vec<Event> = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .recent_events(&stream(stream_name), &EventPage { limit, after })
            .await
            .unwrap();
        assert!(
            page.len() <= limit,
            "a page of {} events for a limit of {limit}",
            page.len()
        );
        let done = page.len() < limit;
        after = page.last().map(|e| EventCursor {
            ts: e.ts,
            id: e.id.clone(),
        });
        all.extend(page);
        if done || after.is_none() {
            return all;
        }
        assert!(all.len() <= 10_000, "pagination does not end");
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
        let want: Vec<Event> = expected
            .iter()
            .filter(|e| (e.ts, &e.id) < (cursor.ts, &cursor.id))
            .take(5)
            .cloned()
            .collect();
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
            url,
            database: format!("t_{}", uuid::Uuid::now_v7().simple()),
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
    put_then_get,
    puts_are_idempotent_and_first_version_wins,
    pages_walk_every_event_once_newest_first,
    streams_are_isolated,
    unicode_and_nested_payloads_round_trip,
);
