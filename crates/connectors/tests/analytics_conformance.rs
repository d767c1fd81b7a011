//! The conformance suite of the `AnalyticsStore` port: every scenario is written once,
//! against `&dyn AnalyticsStore`, and runs against the embedded SQLite store (`sqlite::*`)
//! and against PostgreSQL (`postgres::*`).
//!
//! The PostgreSQL tests need `TRIBUTARY_POSTGRES_URL` (a role allowed to create databases;
//! `eval "$(bash scripts/services.sh env)"`) and fail when it is missing or unreachable.
//! Each test works in a database of its own, created for it and dropped after it; each
//! SQLite test in a file of its own in a temporary directory.

#![allow(clippy::unwrap_used)] // Test helpers outside #[test] functions unwrap too.

mod common;

use std::collections::BTreeMap;

use futures::future::join_all;
use serde_json::json;
use tributary_core::ports::{
    AnalyticsStore, Checkpoint, Fence, PartitionOffset, PortError, ResultQuery, StateChunk,
    StateDelta,
};
use tributary_core::window::WindowResult;
use tributary_core::{StreamName, Timestamp};

/// 2023-11-14T22:13:20Z, a minute boundary.
const T0: i64 = 1_700_000_000_000;
/// One minute, in milliseconds.
const MINUTE: i64 = 60_000;

/// A commit that changes no state chunk.
static NO_DELTA: StateDelta = StateDelta {
    append: Vec::new(),
    drop_groups: Vec::new(),
};

fn result(pipeline: &str, start: i64, key: &str, count: u64, closed: bool) -> WindowResult {
    WindowResult {
        pipeline: pipeline.to_owned(),
        window_start: Timestamp::from_millis(start),
        window_end: Timestamp::from_millis(start + MINUTE),
        key: key.to_owned(),
        count,
        closed,
    }
}

fn checkpoint(pipeline: &str, epoch: u64, state: serde_json::Value) -> Checkpoint {
    Checkpoint {
        pipeline: pipeline.to_owned(),
        epoch,
        offsets: vec![
            PartitionOffset {
                stream: StreamName::new("clicks").unwrap(),
                partition: 0,
                next_offset: 42 * epoch,
            },
            PartitionOffset {
                stream: StreamName::new("orders").unwrap(),
                partition: 3,
                next_offset: (1 << 40) + epoch,
            },
        ],
        state,
        watermark: Timestamp::from_millis(T0 + i64::try_from(epoch).unwrap() * MINUTE),
    }
}

fn query(pipeline: &str) -> ResultQuery {
    ResultQuery {
        pipeline: pipeline.to_owned(),
        from: None,
        to: None,
        key: None,
        limit: 10_000,
    }
}

async fn all_results(store: &dyn AnalyticsStore, pipeline: &str) -> Vec<WindowResult> {
    store.query_results(&query(pipeline)).await.unwrap()
}

/// `results` in the store's order: by window start, then key (bytewise).
fn sorted(mut results: Vec<WindowResult>) -> Vec<WindowResult> {
    results.sort_by(|a, b| (a.window_start, &a.key).cmp(&(b.window_start, &b.key)));
    results
}

/// Claims `pipeline` and returns the new owner's generation.
async fn claim(store: &dyn AnalyticsStore, pipeline: &str) -> u64 {
    store.claim(pipeline).await.unwrap().generation
}

#[track_caller]
fn assert_fenced(
    outcome: Result<(), PortError>,
    pipeline: &str,
    fence: Fence,
    expected: u64,
    found: u64,
) {
    match outcome {
        Err(PortError::Fenced {
            pipeline: p,
            fence: f,
            expected: e,
            found: n,
        }) => {
            assert_eq!(
                (p.as_str(), f, e, n),
                (pipeline, fence, expected, found),
                "wrong fence"
            );
        }
        other => {
            panic!(
                "expected Fenced {{ {fence}, expected: {expected}, found: {found} }}, got {other:?}"
            )
        }
    }
}

// ------------------------------------------------------------------------------- scenarios

/// A committed checkpoint loads back exactly, results included.
async fn checkpoint_round_trips(store: &dyn AnalyticsStore) {
    store.ping().await.unwrap();
    assert_eq!(store.load_checkpoint("p").await.unwrap(), None);
    let owner = claim(store, "p").await;

    let mut first = checkpoint(
        "p",
        1,
        json!({
            "windows": [{"start": T0, "counts": {"a": 3, "": 1}}],
            "watermarks": [T0, null],
            "text": "ünïcødé 😀 \"quoted\" \\ back",
            "nested": {"deeper": {"deepest": [null, true, 1.5, -7, u64::MAX]}},
        }),
    );
    first.watermark = Timestamp::MIN;
    let results = vec![
        result("p", T0, "a", 3, false),
        result("p", T0, "", 1, false),
    ];
    store
        .commit_checkpoint(owner, &first, &results, &NO_DELTA)
        .await
        .unwrap();
    assert_eq!(store.load_checkpoint("p").await.unwrap(), Some(first));
    assert_eq!(all_results(store, "p").await, sorted(results));

    let second = checkpoint("p", 2, json!(null));
    store
        .commit_checkpoint(owner, &second, &[], &NO_DELTA)
        .await
        .unwrap();
    assert_eq!(store.load_checkpoint("p").await.unwrap(), Some(second));
}

/// A result committed again (same pipeline, window start and key) replaces the stored one.
async fn results_are_upserted(store: &dyn AnalyticsStore) {
    let owner = claim(store, "p").await;
    let open = result("p", T0, "k", 3, false);
    let other = result("p", T0, "other", 9, false);
    store
        .commit_checkpoint(
            owner,
            &checkpoint("p", 1, json!({})),
            &[open.clone(), other.clone()],
            &NO_DELTA,
        )
        .await
        .unwrap();

    let mut closed = result("p", T0, "k", 5, true);
    closed.window_end = Timestamp::from_millis(T0 + 2 * MINUTE);
    store
        .commit_checkpoint(
            owner,
            &checkpoint("p", 2, json!({})),
            &[closed.clone()],
            &NO_DELTA,
        )
        .await
        .unwrap();
    assert_eq!(
        all_results(store, "p").await,
        vec![closed.clone(), other.clone()]
    );

    // Duplicates within one commit: the last one wins.
    let later = result("p", T0, "k", 6, true);
    let last = result("p", T0, "k", 7, true);
    store
        .commit_checkpoint(
            owner,
            &checkpoint("p", 3, json!({})),
            &[later, last.clone()],
            &NO_DELTA,
        )
        .await
        .unwrap();
    assert_eq!(all_results(store, "p").await, vec![last, other]);
}

/// A commit whose epoch is not the stored one + 1 fails Fenced and writes nothing, even by
/// the pipeline's owner.
async fn stale_epochs_are_fenced_and_write_nothing(store: &dyn AnalyticsStore) {
    let owner = claim(store, "p").await;
    let first = checkpoint("p", 1, json!({"version": 1}));
    let first_results = vec![result("p", T0, "a", 1, false)];
    store
        .commit_checkpoint(owner, &first, &first_results, &NO_DELTA)
        .await
        .unwrap();

    let ahead = checkpoint("p", 3, json!({"version": 3}));
    let ahead_results = vec![
        result("p", T0, "a", 100, true),
        result("p", T0 + MINUTE, "b", 1, false),
    ];
    assert_fenced(
        store
            .commit_checkpoint(owner, &ahead, &ahead_results, &NO_DELTA)
            .await,
        "p",
        Fence::Epoch,
        2,
        1,
    );

    let zombie = checkpoint("p", 1, json!({"version": "zombie"}));
    assert_fenced(
        store
            .commit_checkpoint(owner, &zombie, &ahead_results, &NO_DELTA)
            .await,
        "p",
        Fence::Epoch,
        0,
        1,
    );

    assert_eq!(store.load_checkpoint("p").await.unwrap(), Some(first));
    assert_eq!(all_results(store, "p").await, first_results);
}

/// The first commit of a pipeline must be epoch 1, by the owner of a claim; epoch 0 and
/// generation 0 (no claim's) are refused.
async fn first_commit_must_be_epoch_1(store: &dyn AnalyticsStore) {
    let results = vec![result("p", T0, "a", 1, false)];
    for (generation, epoch) in [(0, 1), (1, 0)] {
        match store
            .commit_checkpoint(
                generation,
                &checkpoint("p", epoch, json!({})),
                &results,
                &NO_DELTA,
            )
            .await
        {
            Err(PortError::Refused { .. }) => {}
            other => panic!("generation {generation}, epoch {epoch}: not refused: {other:?}"),
        }
    }
    // Unclaimed: no generation stored.
    assert_fenced(
        store
            .commit_checkpoint(1, &checkpoint("p", 1, json!({})), &results, &NO_DELTA)
            .await,
        "p",
        Fence::Generation,
        1,
        0,
    );
    let owner = claim(store, "p").await;
    assert_fenced(
        store
            .commit_checkpoint(owner, &checkpoint("p", 2, json!({})), &results, &NO_DELTA)
            .await,
        "p",
        Fence::Epoch,
        1,
        0,
    );
    assert_eq!(store.load_checkpoint("p").await.unwrap(), None);
    assert_eq!(all_results(store, "p").await, vec![]);

    let first = checkpoint("p", 1, json!({}));
    store
        .commit_checkpoint(owner, &first, &results, &NO_DELTA)
        .await
        .unwrap();
    assert_eq!(store.load_checkpoint("p").await.unwrap(), Some(first));
    assert_eq!(all_results(store, "p").await, results);
}

/// Of several committers of the same epoch and generation, exactly one wins; the others are
/// fenced by it and none of their results is written. The first epoch (no row yet)
/// included.
async fn concurrent_committers_of_one_epoch_one_wins(store: &dyn AnalyticsStore) {
    const CONTENDERS: u64 = 5;
    let owner = claim(store, "p").await;
    let mut expected_results = Vec::new();
    for epoch in 1..=6u64 {
        let window = T0 + i64::try_from(epoch).unwrap() * MINUTE;
        let attempts: Vec<(Checkpoint, Vec<WindowResult>)> = (0..CONTENDERS)
            .map(|writer| {
                (
                    checkpoint("p", epoch, json!({"writer": writer})),
                    vec![result(
                        "p",
                        window,
                        &format!("writer-{writer}"),
                        writer,
                        false,
                    )],
                )
            })
            .collect();
        let outcomes = join_all(
            attempts
                .iter()
                .map(|(cp, rs)| store.commit_checkpoint(owner, cp, rs, &NO_DELTA)),
        )
        .await;
        let mut winners = Vec::new();
        for (writer, outcome) in outcomes.into_iter().enumerate() {
            match outcome {
                Ok(()) => winners.push(writer),
                Err(PortError::Fenced {
                    fence,
                    expected,
                    found,
                    ..
                }) => {
                    assert_eq!(
                        (fence, expected, found),
                        (Fence::Epoch, epoch - 1, epoch),
                        "loser {writer}"
                    );
                }
                Err(other) => panic!("writer {writer} failed with {other:?}, not Fenced"),
            }
        }
        assert_eq!(winners.len(), 1, "epoch {epoch}: winners {winners:?}");
        let (winning_checkpoint, winning_results) = &attempts[winners[0]];
        assert_eq!(
            store.load_checkpoint("p").await.unwrap().as_ref(),
            Some(winning_checkpoint)
        );
        expected_results.extend(winning_results.iter().cloned());
        assert_eq!(all_results(store, "p").await, expected_results);
    }
}

/// Queries filter on window start (`from` inclusive, `to` exclusive) and key, order by
/// window start then key (bytewise), and stop at the limit.
async fn queries_filter_order_and_limit(store: &dyn AnalyticsStore) {
    let keys = ["b", "a", "B", "é", "", "a b"];
    let mut results = Vec::new();
    let mut count = 0;
    for start in [T0 + 3 * MINUTE, T0, T0 + 2 * MINUTE, T0 + MINUTE] {
        for key in keys {
            count += 1;
            results.push(result("p", start, key, count, count % 2 == 0));
        }
    }
    results.push(result("other", T0, "a", 1000, true));
    let owner = claim(store, "p").await;
    store
        .commit_checkpoint(owner, &checkpoint("p", 1, json!({})), &results, &NO_DELTA)
        .await
        .unwrap();
    let all = sorted(results.into_iter().filter(|r| r.pipeline == "p").collect());

    let t = |minutes: i64| Some(Timestamp::from_millis(T0 + minutes * MINUTE));
    /// (from, to, key, limit)
    type Case<'a> = (Option<Timestamp>, Option<Timestamp>, Option<&'a str>, usize);
    let cases: Vec<Case<'_>> = vec![
        (None, None, None, 10_000),
        (t(1), None, None, 10_000),
        (None, t(2), None, 10_000),
        (t(1), t(3), None, 10_000),
        (t(2), t(2), None, 10_000),
        (
            Some(Timestamp::from_millis(T0 + 30_000)),
            None,
            None,
            10_000,
        ),
        (
            Some(Timestamp::MIN),
            Some(Timestamp::from_millis(i64::MAX)),
            None,
            10_000,
        ),
        (Some(Timestamp::from_millis(i64::MAX)), None, None, 10_000),
        (None, Some(Timestamp::MIN), None, 10_000),
        (None, None, Some("a"), 10_000),
        (t(1), None, Some("é"), 10_000),
        (None, None, Some(""), 10_000),
        (None, None, Some("missing"), 10_000),
        (None, None, None, 3),
        (t(1), None, Some("a"), 2),
        (None, None, None, 0),
    ];
    for (from, to, key, limit) in cases {
        let query = ResultQuery {
            pipeline: "p".into(),
            from,
            to,
            key: key.map(str::to_owned),
            limit,
        };
        let expected: Vec<WindowResult> = all
            .iter()
            .filter(|r| from.is_none_or(|from| r.window_start >= from))
            .filter(|r| to.is_none_or(|to| r.window_start < to))
            .filter(|r| key.is_none_or(|key| r.key == key))
            .take(limit)
            .cloned()
            .collect();
        assert_eq!(
            store.query_results(&query).await.unwrap(),
            expected,
            "{query:?}"
        );
    }
}

/// Times round-trip to the millisecond, before 1970 and far ahead included.
async fn timestamps_keep_millisecond_precision(store: &dyn AnalyticsStore) {
    let starts = [
        T0 + 1,
        T0 + 999,
        T0 + 1_001,
        0,
        -1,
        -86_400_001,
        253_402_300_799_998,
    ];
    let results: Vec<WindowResult> = starts
        .iter()
        .enumerate()
        .map(|(i, &start)| {
            let mut r = result("p", start, "k", u64::try_from(i).unwrap(), false);
            r.window_end = Timestamp::from_millis(start + 1);
            r
        })
        .collect();
    let mut cp = checkpoint("p", 1, json!({}));
    cp.watermark = Timestamp::from_millis(T0 + 999);
    let owner = claim(store, "p").await;
    store
        .commit_checkpoint(owner, &cp, &results, &NO_DELTA)
        .await
        .unwrap();
    assert_eq!(store.load_checkpoint("p").await.unwrap(), Some(cp));
    assert_eq!(all_results(store, "p").await, sorted(results.clone()));

    let between = |from: i64, to: i64| ResultQuery {
        from: Some(Timestamp::from_millis(from)),
        to: Some(Timestamp::from_millis(to)),
        ..query("p")
    };
    let starts_of = |rs: Vec<WindowResult>| {
        rs.iter()
            .map(|r| r.window_start.millis())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        starts_of(
            store
                .query_results(&between(T0 + 2, T0 + 999))
                .await
                .unwrap()
        ),
        Vec::<i64>::new()
    );
    assert_eq!(
        starts_of(
            store
                .query_results(&between(T0 + 999, T0 + 1_000))
                .await
                .unwrap()
        ),
        vec![T0 + 999]
    );
    assert_eq!(
        starts_of(store.query_results(&between(-1, 1)).await.unwrap()),
        vec![-1, 0]
    );
}

/// Pipelines have their own owners, epochs, checkpoints and results.
async fn pipelines_are_isolated(store: &dyn AnalyticsStore) {
    let alpha = vec![result("alpha", T0, "k", 1, false)];
    let beta = vec![result("beta", T0, "k", 2, true)];
    let alpha_owner = claim(store, "alpha").await;
    claim(store, "beta").await;
    let beta_owner = claim(store, "beta").await;
    assert_eq!((alpha_owner, beta_owner), (1, 2));
    store
        .commit_checkpoint(
            alpha_owner,
            &checkpoint("alpha", 1, json!("alpha")),
            &alpha,
            &NO_DELTA,
        )
        .await
        .unwrap();
    store
        .commit_checkpoint(
            beta_owner,
            &checkpoint("beta", 1, json!("beta")),
            &beta,
            &NO_DELTA,
        )
        .await
        .unwrap();
    let alpha2 = checkpoint("alpha", 2, json!("alpha 2"));
    store
        .commit_checkpoint(alpha_owner, &alpha2, &[], &NO_DELTA)
        .await
        .unwrap();
    assert_fenced(
        store
            .commit_checkpoint(
                beta_owner,
                &checkpoint("beta", 3, json!("beta 3")),
                &[],
                &NO_DELTA,
            )
            .await,
        "beta",
        Fence::Epoch,
        2,
        1,
    );
    // A claim of alpha fences no owner of beta.
    claim(store, "alpha").await;
    store
        .commit_checkpoint(
            beta_owner,
            &checkpoint("beta", 2, json!("beta 2")),
            &[],
            &NO_DELTA,
        )
        .await
        .unwrap();

    assert_eq!(store.load_checkpoint("alpha").await.unwrap(), Some(alpha2));
    assert_eq!(
        store.load_checkpoint("beta").await.unwrap(),
        Some(checkpoint("beta", 2, json!("beta 2")))
    );
    assert_eq!(store.load_checkpoint("gamma").await.unwrap(), None);
    assert_eq!(all_results(store, "alpha").await, alpha);
    assert_eq!(all_results(store, "beta").await, beta);
    assert_eq!(all_results(store, "gamma").await, vec![]);
}

/// Many results in one commit (several statements' worth for batched adapters) all land.
async fn large_commits_land_whole(store: &dyn AnalyticsStore) {
    let results: Vec<WindowResult> = (0..2_500u64)
        .map(|i| {
            result(
                "p",
                T0 + i64::try_from(i % 50).unwrap() * MINUTE,
                &format!("key-{i:05}"),
                i,
                false,
            )
        })
        .collect();
    let owner = claim(store, "p").await;
    store
        .commit_checkpoint(owner, &checkpoint("p", 1, json!({})), &results, &NO_DELTA)
        .await
        .unwrap();
    let stored = all_results(store, "p").await;
    assert_eq!(stored.len(), results.len());
    let by_key: BTreeMap<&str, u64> = stored.iter().map(|r| (r.key.as_str(), r.count)).collect();
    assert!(
        results
            .iter()
            .all(|r| by_key.get(r.key.as_str()) == Some(&r.count))
    );
}

/// Claims return the last checkpoint, and each bumps the pipeline's generation: 1 at the
/// first, then +1. Only commits change what a claim or a load returns.
async fn claims_bump_the_generation_and_return_the_last_checkpoint(store: &dyn AnalyticsStore) {
    let first = store.claim("p").await.unwrap();
    assert_eq!((first.generation, first.checkpoint), (1, None));
    let cp = checkpoint("p", 1, json!({"at": 1}));
    store
        .commit_checkpoint(1, &cp, &[], &NO_DELTA)
        .await
        .unwrap();
    let second = store.claim("p").await.unwrap();
    assert_eq!(second.generation, 2);
    assert_eq!(second.checkpoint.as_ref(), Some(&cp));
    let third = store.claim("p").await.unwrap();
    assert_eq!(third.generation, 3);
    assert_eq!(third.checkpoint.as_ref(), Some(&cp));
    assert_eq!(store.load_checkpoint("p").await.unwrap(), Some(cp));

    // Concurrent claims each get a generation of their own.
    let claims = join_all((0..5).map(|_| store.claim("p"))).await;
    let mut generations: Vec<u64> = claims.into_iter().map(|c| c.unwrap().generation).collect();
    generations.sort_unstable();
    assert_eq!(generations, vec![4, 5, 6, 7, 8]);
}

/// A claims, B claims: A's next commit is fenced by generation and writes nothing, whatever
/// its epoch, before and after A's own first commit; B resumes and commits.
async fn a_newer_claim_fences_the_older_owner(store: &dyn AnalyticsStore) {
    let a = claim(store, "p").await;
    let b = claim(store, "p").await;
    let a_results = vec![result("p", T0, "zombie", 1, false)];
    assert_fenced(
        store
            .commit_checkpoint(a, &checkpoint("p", 1, json!("a")), &a_results, &NO_DELTA)
            .await,
        "p",
        Fence::Generation,
        a,
        b,
    );
    assert_eq!(store.load_checkpoint("p").await.unwrap(), None);
    assert_eq!(all_results(store, "p").await, vec![]);

    let b_first = checkpoint("p", 1, json!("b"));
    let b_results = vec![result("p", T0, "k", 2, false)];
    store
        .commit_checkpoint(b, &b_first, &b_results, &NO_DELTA)
        .await
        .unwrap();

    // B is now the zombie: C takes over from B's checkpoint.
    let c = store.claim("p").await.unwrap();
    assert_eq!(c.checkpoint.as_ref(), Some(&b_first));
    for (owner, epoch) in [(b, 2), (a, 2), (a, 1)] {
        assert_fenced(
            store
                .commit_checkpoint(
                    owner,
                    &checkpoint("p", epoch, json!("old")),
                    &a_results,
                    &NO_DELTA,
                )
                .await,
            "p",
            Fence::Generation,
            owner,
            c.generation,
        );
    }
    assert_eq!(store.load_checkpoint("p").await.unwrap(), Some(b_first));
    assert_eq!(all_results(store, "p").await, b_results);

    let c_second = checkpoint("p", 2, json!("c"));
    let c_results = vec![result("p", T0, "k", 5, true)];
    store
        .commit_checkpoint(c.generation, &c_second, &c_results, &NO_DELTA)
        .await
        .unwrap();
    assert_eq!(store.load_checkpoint("p").await.unwrap(), Some(c_second));
    assert_eq!(all_results(store, "p").await, c_results);
}

/// A claim racing a commit of the older owner serializes with it: either the commit lands
/// first and the claim returns it, or the commit is fenced and the claim returns the
/// checkpoint before it. Never a claim that misses a commit that then lands.
async fn a_claim_racing_a_commit_returns_what_stands(store: &dyn AnalyticsStore) {
    let mut owner = claim(store, "p").await;
    let mut last = None;
    for round in 1..=50u64 {
        let next_epoch = last.as_ref().map_or(1, |cp: &Checkpoint| cp.epoch + 1);
        let attempt = checkpoint("p", next_epoch, json!({"round": round}));
        let (committed, claimed) = futures::join!(
            store.commit_checkpoint(owner, &attempt, &[], &NO_DELTA),
            store.claim("p"),
        );
        let claimed = claimed.unwrap();
        match committed {
            Ok(()) => {
                assert_eq!(claimed.checkpoint.as_ref(), Some(&attempt), "round {round}");
                last = Some(attempt);
            }
            Err(PortError::Fenced {
                fence: Fence::Generation,
                ..
            }) => assert_eq!(claimed.checkpoint, last, "round {round}"),
            Err(other) => panic!("round {round}: {other:?}"),
        }
        assert_eq!(store.load_checkpoint("p").await.unwrap(), last);
        owner = claimed.generation;
    }
}

fn chunk(group: i64, bytes: &[u8]) -> StateChunk {
    StateChunk {
        group,
        bytes: bytes.to_vec(),
    }
}

fn appending(chunks: Vec<StateChunk>) -> StateDelta {
    StateDelta {
        append: chunks,
        drop_groups: Vec::new(),
    }
}

/// The state chunks a claim of `pipeline` returns.
async fn claimed_chunks(store: &dyn AnalyticsStore, pipeline: &str) -> Vec<StateChunk> {
    store.claim(pipeline).await.unwrap().chunks
}

/// State chunks committed come back from claims by group, then in commit order (epoch,
/// then position in the delta), bytes exact; pipelines have their own. Loads leave them.
async fn state_chunks_come_back_from_claims_in_order(store: &dyn AnalyticsStore) {
    let owner = claim(store, "p").await;
    assert_eq!(claimed_chunks(store, "p").await, vec![]);
    let owner = owner + 1;
    let first = appending(vec![
        chunk(T0 + MINUTE, b"b1"),
        chunk(T0, b"a1"),
        chunk(-5, b""),
        chunk(T0, b"a2"),
        chunk(i64::MIN, b"min"),
    ]);
    store
        .commit_checkpoint(owner, &checkpoint("p", 1, json!({})), &[], &first)
        .await
        .unwrap();
    let second = appending(vec![
        chunk(T0, b"a3"),
        chunk(T0 + MINUTE, &[0, 255, 7, 0]),
        chunk(i64::MAX, b"max"),
    ]);
    let last = checkpoint("p", 2, json!({"chunks": 2}));
    store
        .commit_checkpoint(owner, &last, &[], &second)
        .await
        .unwrap();
    let other = claim(store, "other").await;
    store
        .commit_checkpoint(
            other,
            &checkpoint("other", 1, json!({})),
            &[],
            &appending(vec![chunk(T0, b"other")]),
        )
        .await
        .unwrap();

    let claimed = store.claim("p").await.unwrap();
    assert_eq!(claimed.checkpoint, Some(last.clone()));
    assert_eq!(
        claimed.chunks,
        vec![
            chunk(i64::MIN, b"min"),
            chunk(-5, b""),
            chunk(T0, b"a1"),
            chunk(T0, b"a2"),
            chunk(T0, b"a3"),
            chunk(T0 + MINUTE, b"b1"),
            chunk(T0 + MINUTE, &[0, 255, 7, 0]),
            chunk(i64::MAX, b"max"),
        ]
    );
    assert_eq!(store.load_checkpoint("p").await.unwrap(), Some(last));
    assert_eq!(
        claimed_chunks(store, "other").await,
        vec![chunk(T0, b"other")]
    );
}

/// A dropped group loses every chunk of every commit, before the same commit's appends;
/// dropping a group with no chunk is no error; other groups and pipelines keep theirs.
async fn dropped_groups_lose_every_chunk(store: &dyn AnalyticsStore) {
    let owner = claim(store, "p").await;
    let other = claim(store, "other").await;
    for epoch in 1..=2 {
        let delta = appending(vec![chunk(T0, &[epoch]), chunk(T0 + MINUTE, &[epoch])]);
        store
            .commit_checkpoint(
                owner,
                &checkpoint("p", epoch.into(), json!({})),
                &[],
                &delta,
            )
            .await
            .unwrap();
    }
    store
        .commit_checkpoint(
            other,
            &checkpoint("other", 1, json!({})),
            &[],
            &appending(vec![chunk(T0, b"kept")]),
        )
        .await
        .unwrap();

    let drop_first = StateDelta {
        append: vec![chunk(T0 + 2 * MINUTE, b"c")],
        drop_groups: vec![T0, T0 + 5 * MINUTE],
    };
    store
        .commit_checkpoint(owner, &checkpoint("p", 3, json!({})), &[], &drop_first)
        .await
        .unwrap();
    let owner = claim(store, "p").await;
    assert_eq!(
        store.claim("p").await.unwrap().chunks,
        vec![
            chunk(T0 + MINUTE, &[1]),
            chunk(T0 + MINUTE, &[2]),
            chunk(T0 + 2 * MINUTE, b"c"),
        ]
    );
    let owner = owner + 1;

    let reset = StateDelta {
        append: vec![chunk(T0 + MINUTE, b"fresh")],
        drop_groups: vec![T0 + MINUTE],
    };
    store
        .commit_checkpoint(owner, &checkpoint("p", 4, json!({})), &[], &reset)
        .await
        .unwrap();
    assert_eq!(
        claimed_chunks(store, "p").await,
        vec![chunk(T0 + MINUTE, b"fresh"), chunk(T0 + 2 * MINUTE, b"c")]
    );
    assert_eq!(
        claimed_chunks(store, "other").await,
        vec![chunk(T0, b"kept")]
    );
}

/// A fenced commit, by epoch or by generation, neither appends nor drops a chunk.
async fn fenced_commits_write_no_chunk(store: &dyn AnalyticsStore) {
    let a = claim(store, "p").await;
    store
        .commit_checkpoint(
            a,
            &checkpoint("p", 1, json!({})),
            &[],
            &appending(vec![chunk(T0, b"a1")]),
        )
        .await
        .unwrap();
    let zombie = StateDelta {
        append: vec![chunk(T0, b"zombie"), chunk(T0 + MINUTE, b"zombie")],
        drop_groups: vec![T0],
    };
    assert_fenced(
        store
            .commit_checkpoint(a, &checkpoint("p", 3, json!({})), &[], &zombie)
            .await,
        "p",
        Fence::Epoch,
        2,
        1,
    );
    let b = store.claim("p").await.unwrap();
    assert_eq!(b.chunks, vec![chunk(T0, b"a1")]);
    assert_fenced(
        store
            .commit_checkpoint(a, &checkpoint("p", 2, json!({})), &[], &zombie)
            .await,
        "p",
        Fence::Generation,
        a,
        b.generation,
    );
    assert_eq!(claimed_chunks(store, "p").await, vec![chunk(T0, b"a1")]);
}

/// Many chunks of one group in one commit (several statements' worth for batched
/// adapters), large ones included, all land, in order.
async fn many_chunks_land_whole_and_in_order(store: &dyn AnalyticsStore) {
    let mut chunks: Vec<StateChunk> = (0..2_500u32).map(|i| chunk(T0, &i.to_le_bytes())).collect();
    chunks.push(chunk(T0, &vec![0xab; 512 * 1024]));
    let owner = claim(store, "p").await;
    store
        .commit_checkpoint(
            owner,
            &checkpoint("p", 1, json!({})),
            &[],
            &appending(chunks.clone()),
        )
        .await
        .unwrap();
    assert_eq!(claimed_chunks(store, "p").await, chunks);
}

// ------------------------------------------------------------------- adapter-specific tests

/// Connecting to a port where no server listens fails `Unavailable`, within the ~10 s bound.
#[tokio::test]
async fn postgres_connect_fails_unavailable_when_the_server_is_down() {
    use tributary_connectors::postgres::{PostgresConfig, PostgresStore};
    let port = common::closed_port();
    let config = PostgresConfig::new(format!(
        "postgres://tributary:tributary@127.0.0.1:{port}/db"
    ));
    common::assert_unavailable_within(
        PostgresStore::connect(&config),
        std::time::Duration::from_secs(15),
    )
    .await;
}

/// A malformed URL is the user's mistake: `Refused`, at once.
#[tokio::test]
async fn postgres_connect_refuses_a_malformed_url() {
    use tributary_connectors::postgres::{PostgresConfig, PostgresStore};
    common::assert_refused(PostgresStore::connect(&PostgresConfig::new("not a url")).await);
}

/// The SQLite store survives a reopen: what was committed is still there.
#[tokio::test]
async fn sqlite_commits_survive_a_reopen() {
    use tributary_connectors::sqlite::{SqliteConfig, SqliteStore};
    let dir = tempfile::TempDir::new().unwrap();
    let config = SqliteConfig {
        path: dir.path().join("store.db"),
    };
    let first = checkpoint("p", 1, json!({"kept": true}));
    let results = vec![result("p", T0, "k", 1, true)];
    let store = SqliteStore::connect(&config).await.unwrap();
    let owner = claim(&store, "p").await;
    store
        .commit_checkpoint(owner, &first, &results, &NO_DELTA)
        .await
        .unwrap();
    store.close().await;
    let store = SqliteStore::connect(&config).await.unwrap();
    assert_eq!(store.load_checkpoint("p").await.unwrap(), Some(first));
    assert_eq!(all_results(&store, "p").await, results);
    assert_fenced(
        store
            .commit_checkpoint(owner, &checkpoint("p", 1, json!({})), &[], &NO_DELTA)
            .await,
        "p",
        Fence::Epoch,
        0,
        1,
    );
    // The generation survives the reopen too.
    assert_eq!(claim(&store, "p").await, owner + 1);
}

// --------------------------------------------------------------------------------- harness

mod harness {
    use std::panic::AssertUnwindSafe;

    use futures::FutureExt;
    use sqlx::Connection;
    use sqlx::postgres::PgConnection;
    use tempfile::TempDir;
    use tributary_connectors::postgres::{PostgresConfig, PostgresStore};
    use tributary_connectors::sqlite::{SqliteConfig, SqliteStore};
    use tributary_core::ports::AnalyticsStore;

    /// Runs `case` against a fresh SQLite store in a temporary directory.
    pub async fn with_sqlite<F>(case: F)
    where
        F: AsyncFnOnce(&dyn AnalyticsStore),
    {
        let dir = TempDir::new().unwrap();
        let config = SqliteConfig {
            path: dir.path().join("nested/dir/store.db"),
        };
        let store = SqliteStore::connect(&config).await.unwrap();
        case(&store).await;
        store.close().await;
    }

    /// Runs `case` against a fresh PostgreSQL database, dropped afterwards (even when the
    /// case panics).
    pub async fn with_postgres<F>(case: F)
    where
        F: AsyncFnOnce(&dyn AnalyticsStore),
    {
        let url = super::common::service_env("TRIBUTARY_POSTGRES_URL");
        let database = format!("t_{}", uuid::Uuid::now_v7().simple());
        let mut admin = PgConnection::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at TRIBUTARY_POSTGRES_URL is unreachable: {e}"));
        sqlx::query(&format!("CREATE DATABASE {database}"))
            .execute(&mut admin)
            .await
            .unwrap();

        let store = PostgresStore::connect(&PostgresConfig::new(with_database(&url, &database)))
            .await
            .unwrap();
        let outcome = AssertUnwindSafe(case(&store)).catch_unwind().await;
        store.close().await;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
            .execute(&mut admin)
            .await
            .unwrap();
        admin.close().await.unwrap();
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }

    /// `url` naming `database` instead of its own.
    fn with_database(url: &str, database: &str) -> String {
        let (base, params) = match url.split_once('?') {
            Some((base, params)) => (base, Some(params)),
            None => (url, None),
        };
        let (scheme, rest) = base.split_once("://").expect("a postgres:// URL");
        let authority = rest
            .split_once('/')
            .map_or(rest, |(authority, _)| authority);
        match params {
            Some(params) => format!("{scheme}://{authority}/{database}?{params}"),
            None => format!("{scheme}://{authority}/{database}"),
        }
    }

    #[test]
    fn urls_get_the_database() {
        assert_eq!(
            with_database("postgres://u:p@h:1/db", "t"),
            "postgres://u:p@h:1/t"
        );
        assert_eq!(with_database("postgres://h", "t"), "postgres://h/t");
        assert_eq!(
            with_database("postgres://h/db?sslmode=disable", "t"),
            "postgres://h/t?sslmode=disable"
        );
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
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $case() {
                    super::harness::with_postgres(async |store| super::$case(store).await).await;
                }
            )+
        }
    };
}

conformance!(
    checkpoint_round_trips,
    results_are_upserted,
    stale_epochs_are_fenced_and_write_nothing,
    first_commit_must_be_epoch_1,
    concurrent_committers_of_one_epoch_one_wins,
    queries_filter_order_and_limit,
    timestamps_keep_millisecond_precision,
    pipelines_are_isolated,
    large_commits_land_whole,
    claims_bump_the_generation_and_return_the_last_checkpoint,
    a_newer_claim_fences_the_older_owner,
    a_claim_racing_a_commit_returns_what_stands,
    state_chunks_come_back_from_claims_in_order,
    dropped_groups_lose_every_chunk,
    fenced_commits_write_no_chunk,
    many_chunks_land_whole_and_in_order,
);
