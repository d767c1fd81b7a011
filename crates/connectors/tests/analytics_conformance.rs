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
    AnalyticsStore, Checkpoint, Claim, Fence, KeyedState, PartitionOffset, PortError, ResultQuery,
    StateChunk, StateDelta,
};
use tributary_core::results::{Column, ResultChange, ResultRow, ResultSchema, ResultWrite};
use tributary_core::value::{ColumnType, Value};
use tributary_core::{StreamName, Timestamp};

/// 2023-11-14T22:13:20Z, a minute boundary.
const T0: i64 = 1_700_000_000_000;
/// One minute, in milliseconds.
const MINUTE: i64 = 60_000;

/// A commit that changes no state.
static NO_DELTA: StateDelta = StateDelta {
    append: Vec::new(),
    drop_groups: Vec::new(),
    put: Vec::new(),
    remove: Vec::new(),
};

fn columns(columns: &[(&str, ColumnType)]) -> Vec<Column> {
    columns
        .iter()
        .map(|&(name, ty)| Column {
            name: name.to_owned(),
            ty,
        })
        .collect()
}

/// The schema of `pipeline` keyed by the event's key, counting: every pipeline's before typed
/// results.
fn counting(pipeline: &str) -> ResultSchema {
    ResultSchema {
        pipeline: pipeline.to_owned(),
        keys: columns(&[("key", ColumnType::Text)]),
        aggregates: columns(&[("count", ColumnType::Int)]),
    }
}

/// A row of [`counting`]: `count` events of `key` in the minute from `start`.
fn result(pipeline: &str, start: i64, key: &str, count: u64, closed: bool) -> ResultRow {
    ResultRow {
        pipeline: pipeline.to_owned(),
        window_start: Timestamp::from_millis(start),
        window_end: Timestamp::from_millis(start + MINUTE),
        key: key.to_owned(),
        keys: vec![Value::Str(key.to_owned().into())],
        values: vec![Value::Int(i64::try_from(count).unwrap())],
        partials: vec![count.to_le_bytes().to_vec()],
        revision: 1,
        closed,
        updated_at: None,
    }
}

/// Commits `rows` (upserted into the table of `schema`) with `checkpoint` and `delta`.
async fn commit_rows(
    store: &dyn AnalyticsStore,
    generation: u64,
    checkpoint: &Checkpoint,
    schema: &ResultSchema,
    rows: &[ResultRow],
    delta: &StateDelta,
) -> Result<(), PortError> {
    let changes: Vec<ResultChange> = rows.iter().cloned().map(ResultChange::Upsert).collect();
    let write = ResultWrite {
        schema,
        changes: &changes,
    };
    store
        .commit_checkpoint(generation, checkpoint, Some(write), delta)
        .await
}

/// Commits `rows` of [`counting`] of the checkpoint's pipeline, and no state.
async fn commit(
    store: &dyn AnalyticsStore,
    generation: u64,
    checkpoint: &Checkpoint,
    rows: &[ResultRow],
) -> Result<(), PortError> {
    let schema = counting(&checkpoint.pipeline);
    commit_rows(store, generation, checkpoint, &schema, rows, &NO_DELTA).await
}

/// Commits `delta` with `checkpoint`, and no result.
async fn commit_delta(
    store: &dyn AnalyticsStore,
    generation: u64,
    checkpoint: &Checkpoint,
    delta: &StateDelta,
) -> Result<(), PortError> {
    store
        .commit_checkpoint(generation, checkpoint, None, delta)
        .await
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

/// The rows `query` of `schema` finds, each stamped by the store, the stamp then cleared so
/// that they compare with what was committed.
async fn rows_of(
    store: &dyn AnalyticsStore,
    schema: &ResultSchema,
    query: &ResultQuery,
) -> Vec<ResultRow> {
    let mut rows = store.query_results(schema, query).await.unwrap();
    for row in &mut rows {
        assert!(row.updated_at.take().is_some(), "no updated_at: {row:?}");
    }
    rows
}

/// Every row of `pipeline`'s [`counting`] table.
async fn all_results(store: &dyn AnalyticsStore, pipeline: &str) -> Vec<ResultRow> {
    rows_of(store, &counting(pipeline), &query(pipeline)).await
}

/// `results` in the store's order: by window start, then key (bytewise).
fn sorted(mut results: Vec<ResultRow>) -> Vec<ResultRow> {
    results.sort_by(|a, b| (a.window_start, &a.key).cmp(&(b.window_start, &b.key)));
    results
}

/// Prepares `pipeline`'s [`counting`] table, claims the pipeline (as a task starts) and
/// returns the new owner's generation.
async fn claim(store: &dyn AnalyticsStore, pipeline: &str) -> u64 {
    store.prepare_results(&counting(pipeline)).await.unwrap();
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
    commit(store, owner, &first, &results).await.unwrap();
    assert_eq!(store.load_checkpoint("p").await.unwrap(), Some(first));
    assert_eq!(all_results(store, "p").await, sorted(results));

    let second = checkpoint("p", 2, json!(null));
    commit(store, owner, &second, &[]).await.unwrap();
    assert_eq!(store.load_checkpoint("p").await.unwrap(), Some(second));
}

/// A result committed again (same pipeline, window start and key) replaces the stored one.
async fn results_are_upserted(store: &dyn AnalyticsStore) {
    let owner = claim(store, "p").await;
    let open = result("p", T0, "k", 3, false);
    let other = result("p", T0, "other", 9, false);
    commit(
        store,
        owner,
        &checkpoint("p", 1, json!({})),
        &[open.clone(), other.clone()],
    )
    .await
    .unwrap();

    let mut closed = result("p", T0, "k", 5, true);
    closed.window_end = Timestamp::from_millis(T0 + 2 * MINUTE);
    commit(
        store,
        owner,
        &checkpoint("p", 2, json!({})),
        &[closed.clone()],
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
    commit(
        store,
        owner,
        &checkpoint("p", 3, json!({})),
        &[later, last.clone()],
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
    commit(store, owner, &first, &first_results).await.unwrap();

    let ahead = checkpoint("p", 3, json!({"version": 3}));
    let ahead_results = vec![
        result("p", T0, "a", 100, true),
        result("p", T0 + MINUTE, "b", 1, false),
    ];
    assert_fenced(
        commit(store, owner, &ahead, &ahead_results).await,
        "p",
        Fence::Epoch,
        2,
        1,
    );

    let zombie = checkpoint("p", 1, json!({"version": "zombie"}));
    assert_fenced(
        commit(store, owner, &zombie, &ahead_results).await,
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
        match commit(
            store,
            generation,
            &checkpoint("p", epoch, json!({})),
            &results,
        )
        .await
        {
            Err(PortError::Refused { .. }) => {}
            other => panic!("generation {generation}, epoch {epoch}: not refused: {other:?}"),
        }
    }
    // Unclaimed: no generation stored.
    assert_fenced(
        commit(store, 1, &checkpoint("p", 1, json!({})), &results).await,
        "p",
        Fence::Generation,
        1,
        0,
    );
    let owner = claim(store, "p").await;
    assert_fenced(
        commit(store, owner, &checkpoint("p", 2, json!({})), &results).await,
        "p",
        Fence::Epoch,
        1,
        0,
    );
    assert_eq!(store.load_checkpoint("p").await.unwrap(), None);
    assert_eq!(all_results(store, "p").await, vec![]);

    let first = checkpoint("p", 1, json!({}));
    commit(store, owner, &first, &results).await.unwrap();
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
        let attempts: Vec<(Checkpoint, Vec<ResultRow>)> = (0..CONTENDERS)
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
        let outcomes = join_all(attempts.iter().map(|(cp, rs)| commit(store, owner, cp, rs))).await;
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
    let owner = claim(store, "p").await;
    commit(store, owner, &checkpoint("p", 1, json!({})), &results)
        .await
        .unwrap();
    let other = claim(store, "other").await;
    let others = [result("other", T0, "a", 1000, true)];
    commit(store, other, &checkpoint("other", 1, json!({})), &others)
        .await
        .unwrap();
    let all = sorted(results);

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
        let expected: Vec<ResultRow> = all
            .iter()
            .filter(|r| from.is_none_or(|from| r.window_start >= from))
            .filter(|r| to.is_none_or(|to| r.window_start < to))
            .filter(|r| key.is_none_or(|key| r.key == key))
            .take(limit)
            .cloned()
            .collect();
        assert_eq!(
            rows_of(store, &counting("p"), &query).await,
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
    let results: Vec<ResultRow> = starts
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
    commit(store, owner, &cp, &results).await.unwrap();
    assert_eq!(store.load_checkpoint("p").await.unwrap(), Some(cp));
    assert_eq!(all_results(store, "p").await, sorted(results.clone()));

    let between = |from: i64, to: i64| ResultQuery {
        from: Some(Timestamp::from_millis(from)),
        to: Some(Timestamp::from_millis(to)),
        ..query("p")
    };
    let starts_of = |rs: Vec<ResultRow>| {
        rs.iter()
            .map(|r| r.window_start.millis())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        starts_of(
            store
                .query_results(&counting("p"), &between(T0 + 2, T0 + 999))
                .await
                .unwrap()
        ),
        Vec::<i64>::new()
    );
    assert_eq!(
        starts_of(
            store
                .query_results(&counting("p"), &between(T0 + 999, T0 + 1_000))
                .await
                .unwrap()
        ),
        vec![T0 + 999]
    );
    assert_eq!(
        starts_of(
            store
                .query_results(&counting("p"), &between(-1, 1))
                .await
                .unwrap()
        ),
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
    let alpha1 = checkpoint("alpha", 1, json!("alpha"));
    commit(store, alpha_owner, &alpha1, &alpha).await.unwrap();
    let beta1 = checkpoint("beta", 1, json!("beta"));
    commit(store, beta_owner, &beta1, &beta).await.unwrap();
    let alpha2 = checkpoint("alpha", 2, json!("alpha 2"));
    commit(store, alpha_owner, &alpha2, &[]).await.unwrap();
    assert_fenced(
        commit(
            store,
            beta_owner,
            &checkpoint("beta", 3, json!("beta 3")),
            &[],
        )
        .await,
        "beta",
        Fence::Epoch,
        2,
        1,
    );
    // A claim of alpha fences no owner of beta.
    claim(store, "alpha").await;
    commit(
        store,
        beta_owner,
        &checkpoint("beta", 2, json!("beta 2")),
        &[],
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
    let results: Vec<ResultRow> = (0..2_500u64)
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
    commit(store, owner, &checkpoint("p", 1, json!({})), &results)
        .await
        .unwrap();
    let stored = all_results(store, "p").await;
    assert_eq!(stored.len(), results.len());
    let by_key: BTreeMap<&str, &Value> = stored
        .iter()
        .map(|r| (r.key.as_str(), &r.values[0]))
        .collect();
    assert!(
        results
            .iter()
            .all(|r| by_key.get(r.key.as_str()) == Some(&&r.values[0]))
    );
}

/// Claims return the last checkpoint, and each bumps the pipeline's generation: 1 at the
/// first, then +1. Only commits change what a claim or a load returns.
async fn claims_bump_the_generation_and_return_the_last_checkpoint(store: &dyn AnalyticsStore) {
    let first = store.claim("p").await.unwrap();
    assert_eq!((first.generation, first.checkpoint), (1, None));
    let cp = checkpoint("p", 1, json!({"at": 1}));
    commit(store, 1, &cp, &[]).await.unwrap();
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
        commit(store, a, &checkpoint("p", 1, json!("a")), &a_results).await,
        "p",
        Fence::Generation,
        a,
        b,
    );
    assert_eq!(store.load_checkpoint("p").await.unwrap(), None);
    assert_eq!(all_results(store, "p").await, vec![]);

    let b_first = checkpoint("p", 1, json!("b"));
    let b_results = vec![result("p", T0, "k", 2, false)];
    commit(store, b, &b_first, &b_results).await.unwrap();

    // B is now the zombie: C takes over from B's checkpoint.
    let c = store.claim("p").await.unwrap();
    assert_eq!(c.checkpoint.as_ref(), Some(&b_first));
    for (owner, epoch) in [(b, 2), (a, 2), (a, 1)] {
        assert_fenced(
            commit(
                store,
                owner,
                &checkpoint("p", epoch, json!("old")),
                &a_results,
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
    commit(store, c.generation, &c_second, &c_results)
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
        let (committed, claimed) =
            futures::join!(commit(store, owner, &attempt, &[]), store.claim("p"),);
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
        ..StateDelta::default()
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
    commit_delta(store, owner, &checkpoint("p", 1, json!({})), &first)
        .await
        .unwrap();
    let second = appending(vec![
        chunk(T0, b"a3"),
        chunk(T0 + MINUTE, &[0, 255, 7, 0]),
        chunk(i64::MAX, b"max"),
    ]);
    let last = checkpoint("p", 2, json!({"chunks": 2}));
    commit_delta(store, owner, &last, &second).await.unwrap();
    let other = claim(store, "other").await;
    commit_delta(
        store,
        other,
        &checkpoint("other", 1, json!({})),
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
        commit_delta(
            store,
            owner,
            &checkpoint("p", epoch.into(), json!({})),
            &delta,
        )
        .await
        .unwrap();
    }
    commit_delta(
        store,
        other,
        &checkpoint("other", 1, json!({})),
        &appending(vec![chunk(T0, b"kept")]),
    )
    .await
    .unwrap();

    let drop_first = StateDelta {
        append: vec![chunk(T0 + 2 * MINUTE, b"c")],
        drop_groups: vec![T0, T0 + 5 * MINUTE],
        ..StateDelta::default()
    };
    commit_delta(store, owner, &checkpoint("p", 3, json!({})), &drop_first)
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
        ..StateDelta::default()
    };
    commit_delta(store, owner, &checkpoint("p", 4, json!({})), &reset)
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
    commit_delta(
        store,
        a,
        &checkpoint("p", 1, json!({})),
        &appending(vec![chunk(T0, b"a1")]),
    )
    .await
    .unwrap();
    let zombie = StateDelta {
        append: vec![chunk(T0, b"zombie"), chunk(T0 + MINUTE, b"zombie")],
        drop_groups: vec![T0],
        ..StateDelta::default()
    };
    assert_fenced(
        commit_delta(store, a, &checkpoint("p", 3, json!({})), &zombie).await,
        "p",
        Fence::Epoch,
        2,
        1,
    );
    let b = store.claim("p").await.unwrap();
    assert_eq!(b.chunks, vec![chunk(T0, b"a1")]);
    assert_fenced(
        commit_delta(store, a, &checkpoint("p", 2, json!({})), &zombie).await,
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
    commit_delta(
        store,
        owner,
        &checkpoint("p", 1, json!({})),
        &appending(chunks.clone()),
    )
    .await
    .unwrap();
    assert_eq!(claimed_chunks(store, "p").await, chunks);
}

// --------------------------------------------------------------------------- typed results

/// A schema with a key field and an aggregate of every type.
fn typed(pipeline: &str) -> ResultSchema {
    use ColumnType::{Bool, Float, Int, Text};
    ResultSchema {
        pipeline: pipeline.to_owned(),
        keys: columns(&[
            ("country", Text),
            ("mobile", Bool),
            ("bucket", Int),
            ("ratio", Float),
        ]),
        aggregates: columns(&[("n", Int), ("avg", Float), ("last", Text), ("any", Bool)]),
    }
}

/// A row of `pipeline` in the minute from `start`.
fn row(
    pipeline: &str,
    start: i64,
    key: &str,
    keys: Vec<Value<'static>>,
    values: Vec<Value<'static>>,
    partials: Vec<Vec<u8>>,
) -> ResultRow {
    ResultRow {
        keys,
        values,
        partials,
        ..result(pipeline, start, key, 0, false)
    }
}

fn text(s: &str) -> Value<'static> {
    Value::Str(s.to_owned().into())
}

/// Typed keys, values and partial states come back as they were committed: every column
/// type, `NULL`s, extreme numbers, any text, any bytes; the store stamps `updated_at`.
async fn typed_values_round_trip(store: &dyn AnalyticsStore) {
    let schema = typed("p");
    store.prepare_results(&schema).await.unwrap();
    let owner = store.claim("p").await.unwrap().generation;
    let mut full = row(
        "p",
        T0,
        r#"["fr",true,3,0.5]"#,
        vec![
            text("fr"),
            Value::Bool(true),
            Value::Int(3),
            Value::Float(0.5),
        ],
        vec![
            Value::Int(i64::MAX),
            Value::Float(0.1),
            text("ünïcødé 😀 \"quoted\" \\ back"),
            Value::Bool(false),
        ],
        vec![
            vec![],
            vec![0, 255, 7, 0],
            b"x".to_vec(),
            vec![0xab; 70_000],
        ],
    );
    full.revision = 3;
    full.closed = true;
    let nulls = row(
        "p",
        T0,
        "[null,null,null,null]",
        vec![Value::Null; 4],
        vec![Value::Null; 4],
        vec![vec![1], vec![2], vec![3], vec![4]],
    );
    let extremes = row(
        "p",
        T0 + MINUTE,
        r#"["",false,-7,-1.5e300]"#,
        vec![
            text(""),
            Value::Bool(false),
            Value::Int(i64::MIN),
            Value::Float(-1.5e300),
        ],
        vec![
            Value::Int(-1),
            Value::Float(f64::MIN_POSITIVE),
            text(""),
            Value::Bool(true),
        ],
        vec![vec![0]; 4],
    );
    let rows = vec![full, nulls, extremes];
    let before = Timestamp::now().millis();
    commit_rows(
        store,
        owner,
        &checkpoint("p", 1, json!({})),
        &schema,
        &rows,
        &NO_DELTA,
    )
    .await
    .unwrap();
    let after = Timestamp::now().millis();

    let stored = store.query_results(&schema, &query("p")).await.unwrap();
    for row in &stored {
        let at = row.updated_at.unwrap().millis();
        assert!(
            before - 5_000 <= at && at <= after + 5_000,
            "updated_at {at}"
        );
    }
    assert_eq!(rows_of(store, &schema, &query("p")).await, sorted(rows));
}

/// A later revision of a row (same window start and key) replaces it whole, in its own
/// commit or later in the same one.
async fn a_later_revision_replaces_the_row(store: &dyn AnalyticsStore) {
    let schema = typed("p");
    store.prepare_results(&schema).await.unwrap();
    let owner = store.claim("p").await.unwrap().generation;
    let revision = |revision: u64, n: i64, closed: bool| {
        let mut row = row(
            "p",
            T0,
            "k",
            vec![text("k"), Value::Null, Value::Int(1), Value::Null],
            vec![Value::Int(n), Value::Float(1.5), text("first"), Value::Null],
            vec![n.to_le_bytes().to_vec(); 4],
        );
        row.revision = revision;
        row.closed = closed;
        row
    };
    let first = revision(1, 1, false);
    let commit = async |epoch, rows: &[ResultRow]| {
        let cp = checkpoint("p", epoch, json!({}));
        commit_rows(store, owner, &cp, &schema, rows, &NO_DELTA)
            .await
            .unwrap();
    };
    commit(1, &[first]).await;
    let mut second = revision(2, 5, true);
    second.window_end = Timestamp::from_millis(T0 + 2 * MINUTE);
    second.values[2] = Value::Null;
    commit(2, &[second.clone()]).await;
    assert_eq!(rows_of(store, &schema, &query("p")).await, vec![second]);
    let last = revision(4, 9, true);
    commit(3, &[revision(3, 7, false), last.clone()]).await;
    assert_eq!(rows_of(store, &schema, &query("p")).await, vec![last]);
}

/// A `Delete` removes its row in the commit that upserts the session replacing it; changes
/// apply in order, the last change of a row winning; deleting a missing row is no error;
/// a fenced commit deletes nothing.
async fn deletes_apply_in_the_commit_of_the_upserts(store: &dyn AnalyticsStore) {
    let schema = counting("p");
    let owner = claim(store, "p").await;
    let session = |start, key: &str, count, revision| ResultRow {
        revision,
        ..result("p", start, key, count, false)
    };
    let delete = |start, key: &str| ResultChange::Delete {
        window_start: Timestamp::from_millis(start),
        key: key.to_owned(),
    };
    let write = async |epoch, changes: Vec<ResultChange>| {
        let write = ResultWrite {
            schema: &schema,
            changes: &changes,
        };
        let cp = checkpoint("p", epoch, json!({}));
        store
            .commit_checkpoint(owner, &cp, Some(write), &NO_DELTA)
            .await
    };
    let (a, b, other) = (
        session(T0, "k", 1, 1),
        session(T0 + MINUTE, "k", 2, 1),
        session(T0, "j", 3, 1),
    );
    commit(
        store,
        owner,
        &checkpoint("p", 1, json!({})),
        &[a, b, other.clone()],
    )
    .await
    .unwrap();

    // The session of T0 + 1 min merges into the one of T0.
    let mut merged = session(T0, "k", 3, 2);
    merged.window_end = Timestamp::from_millis(T0 + 3 * MINUTE);
    let changes = vec![
        ResultChange::Upsert(merged.clone()),
        delete(T0 + MINUTE, "k"),
        delete(T0 + 5 * MINUTE, "never"),
    ];
    write(2, changes).await.unwrap();
    assert_eq!(
        all_results(store, "p").await,
        vec![other.clone(), merged.clone()]
    );

    // Deleted then upserted: there; upserted then deleted: gone.
    let again = session(T0, "j", 4, 2);
    let gone = session(T0 + 2 * MINUTE, "x", 1, 1);
    let changes = vec![
        delete(T0, "j"),
        ResultChange::Upsert(again.clone()),
        ResultChange::Upsert(gone),
        delete(T0 + 2 * MINUTE, "x"),
    ];
    write(3, changes).await.unwrap();
    assert_eq!(
        all_results(store, "p").await,
        vec![again.clone(), merged.clone()]
    );

    let zombie = write(3, vec![delete(T0, "k")]).await;
    assert_fenced(zombie, "p", Fence::Epoch, 2, 3);
    assert_eq!(all_results(store, "p").await, vec![again, merged]);
}

fn entry(group: i64, key: &[u8], bytes: &[u8]) -> KeyedState {
    KeyedState {
        group,
        key: key.to_vec(),
        bytes: bytes.to_vec(),
    }
}

/// The keyed state a claim of `pipeline` returns.
async fn claimed_entries(store: &dyn AnalyticsStore, pipeline: &str) -> Vec<KeyedState> {
    store.claim(pipeline).await.unwrap().keyed
}

/// Keyed state entries come back from claims by group, then key (bytewise): put inserts or
/// replaces (the last of duplicates winning), `remove` deletes before the same commit's
/// puts, a dropped group loses its entries and chunks before them; pipelines have their
/// own; a fenced commit changes none.
async fn keyed_state_is_put_replaced_removed_and_dropped(store: &dyn AnalyticsStore) {
    let owner = claim(store, "p").await;
    let other = claim(store, "other").await;
    assert_eq!(store.claim("p").await.unwrap().keyed, vec![]);
    let owner = owner + 1;
    let large = vec![0x5a; 200_000];
    let first = StateDelta {
        append: vec![chunk(T0, b"c1")],
        put: vec![
            entry(T0, b"b", b"1"),
            entry(T0, b"a", b"2"),
            entry(T0, b"\xff", b""),
            entry(T0, b"\x00", &large),
            entry(T0 + MINUTE, b"a", b"3"),
            entry(-5, b"", b"empty key"),
        ],
        ..StateDelta::default()
    };
    commit_delta(store, owner, &checkpoint("p", 1, json!({})), &first)
        .await
        .unwrap();
    // Commits `delta` as the owner of the last claim, then claims again.
    let step = async |claim: Claim, epoch, delta: &StateDelta| {
        let cp = checkpoint("p", epoch, json!({}));
        commit_delta(store, claim.generation, &cp, delta)
            .await
            .unwrap();
        store.claim("p").await.unwrap()
    };
    let others = StateDelta {
        put: vec![entry(T0, b"a", b"other")],
        ..StateDelta::default()
    };
    commit_delta(store, other, &checkpoint("other", 1, json!({})), &others)
        .await
        .unwrap();
    let claimed = store.claim("p").await.unwrap();
    assert_eq!(
        claimed.keyed,
        vec![
            entry(-5, b"", b"empty key"),
            entry(T0, b"\x00", &large),
            entry(T0, b"a", b"2"),
            entry(T0, b"b", b"1"),
            entry(T0, b"\xff", b""),
            entry(T0 + MINUTE, b"a", b"3"),
        ]
    );
    assert_eq!(claimed.chunks, vec![chunk(T0, b"c1")]);

    let second = StateDelta {
        put: vec![
            entry(T0, b"a", b"new"),
            entry(-5, b"", b"again"),
            entry(T0, b"a", b"newer"),
        ],
        remove: vec![
            (T0, b"b".to_vec()),
            (T0, b"\x00".to_vec()),
            (T0 + MINUTE, b"missing".to_vec()),
            (-5, Vec::new()),
        ],
        ..StateDelta::default()
    };
    let claimed = step(claimed, 2, &second).await;
    assert_eq!(
        claimed.keyed,
        vec![
            entry(-5, b"", b"again"),
            entry(T0, b"a", b"newer"),
            entry(T0, b"\xff", b""),
            entry(T0 + MINUTE, b"a", b"3"),
        ]
    );

    let third = StateDelta {
        drop_groups: vec![T0, T0 + 7 * MINUTE],
        put: vec![entry(T0, b"fresh", b"f")],
        append: vec![chunk(T0, b"c2")],
        ..StateDelta::default()
    };
    let third_owner = claimed.generation;
    let claimed = step(claimed, 3, &third).await;
    assert_eq!(
        claimed.keyed,
        vec![
            entry(-5, b"", b"again"),
            entry(T0, b"fresh", b"f"),
            entry(T0 + MINUTE, b"a", b"3"),
        ]
    );
    assert_eq!(claimed.chunks, vec![chunk(T0, b"c2")]);

    // The owner of the third commit is fenced now: its changes are not written.
    let zombie = StateDelta {
        drop_groups: vec![-5],
        put: vec![entry(T0, b"zombie", b"z")],
        remove: vec![(T0, b"fresh".to_vec())],
        ..StateDelta::default()
    };
    assert_fenced(
        commit_delta(store, third_owner, &checkpoint("p", 4, json!({})), &zombie).await,
        "p",
        Fence::Generation,
        third_owner,
        claimed.generation,
    );
    assert_eq!(claimed_entries(store, "p").await, claimed.keyed);
    assert_eq!(
        claimed_entries(store, "other").await,
        vec![entry(T0, b"a", b"other")]
    );
}

/// `prepare_results` is idempotent, also when processes race to create one table; a
/// stored table gets the columns a wider schema adds, its rows reading `NULL` there.
async fn prepare_results_is_idempotent_and_adds_columns(store: &dyn AnalyticsStore) {
    let narrow = ResultSchema {
        pipeline: "p".to_owned(),
        keys: columns(&[("region", ColumnType::Text)]),
        aggregates: columns(&[("n", ColumnType::Int)]),
    };
    let racing = join_all((0..4).map(|_| store.prepare_results(&narrow))).await;
    assert!(racing.iter().all(Result::is_ok), "{racing:?}");
    store.prepare_results(&narrow).await.unwrap();
    let owner = store.claim("p").await.unwrap().generation;
    let old = row(
        "p",
        T0,
        "eu",
        vec![text("eu")],
        vec![Value::Int(4)],
        vec![vec![4]],
    );
    let cp = checkpoint("p", 1, json!({}));
    commit_rows(
        store,
        owner,
        &cp,
        &narrow,
        std::slice::from_ref(&old),
        &NO_DELTA,
    )
    .await
    .unwrap();

    let mut wide = narrow.clone();
    wide.aggregates.push(Column {
        name: "total".to_owned(),
        ty: ColumnType::Float,
    });
    store.prepare_results(&wide).await.unwrap();
    store.prepare_results(&wide).await.unwrap();
    let mut widened = old.clone();
    widened.values.push(Value::Null);
    widened.partials.push(Vec::new());
    assert_eq!(
        rows_of(store, &wide, &query("p")).await,
        vec![widened.clone()]
    );

    let new = row(
        "p",
        T0 + MINUTE,
        "us",
        vec![text("us")],
        vec![Value::Int(2), Value::Float(2.5)],
        vec![vec![2], vec![25]],
    );
    let cp = checkpoint("p", 2, json!({}));
    commit_rows(
        store,
        owner,
        &cp,
        &wide,
        std::slice::from_ref(&new),
        &NO_DELTA,
    )
    .await
    .unwrap();
    assert_eq!(
        rows_of(store, &wide, &query("p")).await,
        vec![widened, new.clone()]
    );
    // The narrow schema still reads the table: the column it lacks is left out.
    let mut narrowed = new;
    narrowed.values.pop();
    narrowed.partials.pop();
    assert_eq!(
        rows_of(store, &narrow, &query("p")).await,
        vec![old, narrowed]
    );
}

/// A stored column whose type is not the schema's is refused, naming the table, the column
/// and both types; the table is left as it was.
async fn a_column_of_another_type_is_refused(store: &dyn AnalyticsStore) {
    let schema = typed("page-views");
    store.prepare_results(&schema).await.unwrap();
    let mut conflicting = schema.clone();
    conflicting.aggregates[0].ty = ColumnType::Text;
    conflicting.aggregates.push(Column {
        name: "added".to_owned(),
        ty: ColumnType::Int,
    });
    let error = store.prepare_results(&conflicting).await.unwrap_err();
    assert!(matches!(error, PortError::Refused { .. }), "{error:?}");
    let message = std::error::Error::source(&error).unwrap().to_string();
    let lower = message.to_lowercase();
    assert!(
        lower.contains("results_page_views")
            && lower.contains("column n ")
            && lower.contains("text")
            && (lower.contains("bigint") || lower.contains("integer")),
        "{message}"
    );
    store.prepare_results(&schema).await.unwrap();
    assert!(
        rows_of(store, &conflicting, &query("page-views"))
            .await
            .is_empty()
    );
    assert_eq!(
        store
            .prepare_results(&conflicting)
            .await
            .unwrap_err()
            .to_string(),
        error.to_string()
    );
}

/// `reset` deletes a pipeline's checkpoint, state chunks, keyed state and results table,
/// and fences its owner; the pipeline then starts over from epoch 1. Other pipelines keep
/// theirs; resetting an unknown pipeline is no error.
async fn reset_clears_everything_and_fences_the_owner(store: &dyn AnalyticsStore) {
    let delta = StateDelta {
        append: vec![chunk(T0, b"c")],
        put: vec![entry(T0, b"k", b"v")],
        ..StateDelta::default()
    };
    let rows = [result("p", T0, "k", 1, false)];
    let mut owners = Vec::new();
    for pipeline in ["p", "other"] {
        let owner = claim(store, pipeline).await;
        let cp = checkpoint(pipeline, 1, json!({}));
        let rows: Vec<ResultRow> = rows
            .iter()
            .map(|r| ResultRow {
                pipeline: pipeline.to_owned(),
                ..r.clone()
            })
            .collect();
        commit_rows(store, owner, &cp, &counting(pipeline), &rows, &delta)
            .await
            .unwrap();
        owners.push(owner);
    }

    store.reset("p").await.unwrap();
    assert_eq!(store.load_checkpoint("p").await.unwrap(), None);
    assert_eq!(all_results(store, "p").await, vec![]);
    assert_fenced(
        commit(store, owners[0], &checkpoint("p", 2, json!({})), &[]).await,
        "p",
        Fence::Generation,
        owners[0],
        owners[0] + 1,
    );
    let claimed = store.claim("p").await.unwrap();
    assert_eq!(claimed.generation, owners[0] + 2);
    assert_eq!(
        (claimed.checkpoint, claimed.chunks, claimed.keyed),
        (None, vec![], vec![])
    );

    store.prepare_results(&counting("p")).await.unwrap();
    assert_eq!(all_results(store, "p").await, vec![]);
    let fresh = [result("p", T0 + MINUTE, "new", 1, false)];
    commit(
        store,
        claimed.generation,
        &checkpoint("p", 1, json!({})),
        &fresh,
    )
    .await
    .unwrap();
    assert_eq!(all_results(store, "p").await, fresh);

    let other = store.claim("other").await.unwrap();
    assert_eq!(other.checkpoint, Some(checkpoint("other", 1, json!({}))));
    assert_eq!((other.chunks, other.keyed), (delta.append, delta.put));
    assert_eq!(all_results(store, "other").await.len(), 1);
    store.reset("never-seen").await.unwrap();
}

/// A pipeline whose results table does not exist has no results, whatever the query; a
/// query with another pipeline's schema is refused.
async fn queries_without_a_table_return_nothing(store: &dyn AnalyticsStore) {
    for schema in [counting("never"), typed("never")] {
        let rows = store.query_results(&schema, &query("never")).await.unwrap();
        assert_eq!(rows, vec![]);
    }
    let between = ResultQuery {
        from: Some(Timestamp::from_millis(T0)),
        to: Some(Timestamp::from_millis(T0 + MINUTE)),
        key: Some("k".to_owned()),
        ..query("never")
    };
    assert_eq!(
        store
            .query_results(&counting("never"), &between)
            .await
            .unwrap(),
        vec![]
    );
    common::assert_refused(store.query_results(&counting("p"), &query("never")).await);
}

/// Rows the tests put in `window_results` as written before typed results: (pipeline,
/// window start, key, count, closed).
const LEGACY_ROWS: [(&str, i64, &str, i64, bool); 5] = [
    ("p", T0, "a", 3, true),
    ("p", T0, "b", 1, false),
    ("p", T0 + MINUTE, "a", 2, false),
    ("other", T0, "a", 9, true),
    ("typed", T0, "a", 9, true),
];

/// With `window_results` holding [`LEGACY_ROWS`]: creating the table of a pipeline whose
/// schema is the legacy one (keyed by the event's key, counting) copies its rows, once, as
/// revision 1 without partial state; a pipeline of another schema gets none; a reset
/// deletes them.
async fn legacy_results_are_copied_into_a_new_table(store: &dyn AnalyticsStore) {
    let legacy = |pipeline: &str| -> Vec<ResultRow> {
        let rows = LEGACY_ROWS.iter().filter(|row| row.0 == pipeline);
        let rows = rows.map(|&(pipeline, start, key, count, closed)| ResultRow {
            partials: vec![Vec::new()],
            ..result(pipeline, start, key, count.try_into().unwrap(), closed)
        });
        sorted(rows.collect())
    };
    assert_eq!(all_results(store, "p").await, vec![]);
    store.prepare_results(&counting("p")).await.unwrap();
    assert_eq!(all_results(store, "p").await, legacy("p"));
    store.prepare_results(&counting("p")).await.unwrap();
    assert_eq!(all_results(store, "p").await, legacy("p"));

    store.prepare_results(&typed("typed")).await.unwrap();
    assert_eq!(
        rows_of(store, &typed("typed"), &query("typed")).await,
        vec![]
    );

    // Committed results replace the copied ones.
    let owner = store.claim("p").await.unwrap().generation;
    let newer = ResultRow {
        revision: 2,
        ..result("p", T0, "b", 5, true)
    };
    commit(
        store,
        owner,
        &checkpoint("p", 1, json!({})),
        std::slice::from_ref(&newer),
    )
    .await
    .unwrap();
    let mut expected = legacy("p");
    expected[1] = newer;
    assert_eq!(all_results(store, "p").await, expected);

    store.reset("p").await.unwrap();
    store.prepare_results(&counting("p")).await.unwrap();
    assert_eq!(all_results(store, "p").await, vec![]);
    store.prepare_results(&counting("other")).await.unwrap();
    assert_eq!(all_results(store, "other").await, legacy("other"));
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

/// The statement putting [`LEGACY_ROWS`] in `window_results`, with times, booleans and
/// `updated_at` as the dialect writes them.
fn legacy_insert(time: fn(i64) -> String, flag: fn(bool) -> &'static str, now: &str) -> String {
    let rows: Vec<String> = LEGACY_ROWS
        .iter()
        .map(|&(pipeline, start, key, count, closed)| {
            let (start, end) = (time(start), time(start + MINUTE));
            format!(
                "('{pipeline}', {start}, {end}, '{key}', {count}, {}, {now})",
                flag(closed)
            )
        })
        .collect();
    format!(
        "INSERT INTO window_results \
         (pipeline, window_start, window_end, key, count, closed, updated_at) VALUES {}",
        rows.join(", ")
    )
}

/// Old results in SQLite's `window_results` are copied into a new legacy-shaped table.
#[tokio::test]
async fn sqlite_legacy_results_are_copied_into_a_new_table() {
    harness::with_sqlite(async |store| {
        let seed = legacy_insert(|ms| ms.to_string(), |b| if b { "1" } else { "0" }, "0");
        sqlx::raw_sql(&seed).execute(store.pool()).await.unwrap();
        legacy_results_are_copied_into_a_new_table(store).await;
    })
    .await;
}

/// Old results in PostgreSQL's `window_results` are copied into a new legacy-shaped table.
#[tokio::test]
async fn postgres_legacy_results_are_copied_into_a_new_table() {
    harness::with_postgres(async |store| {
        let time = |ms| format!("to_timestamp({ms} / 1000.0)");
        let seed = legacy_insert(time, |b| if b { "true" } else { "false" }, "now()");
        sqlx::raw_sql(&seed).execute(store.pool()).await.unwrap();
        legacy_results_are_copied_into_a_new_table(store).await;
    })
    .await;
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
    commit(&store, owner, &first, &results).await.unwrap();
    store.close().await;
    let store = SqliteStore::connect(&config).await.unwrap();
    assert_eq!(store.load_checkpoint("p").await.unwrap(), Some(first));
    assert_eq!(all_results(&store, "p").await, results);
    assert_fenced(
        commit(&store, owner, &checkpoint("p", 1, json!({})), &[]).await,
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

    /// Runs `case` against a fresh SQLite store in a temporary directory.
    pub async fn with_sqlite<F>(case: F)
    where
        F: AsyncFnOnce(&SqliteStore),
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
        F: AsyncFnOnce(&PostgresStore),
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
    typed_values_round_trip,
    a_later_revision_replaces_the_row,
    deletes_apply_in_the_commit_of_the_upserts,
    keyed_state_is_put_replaced_removed_and_dropped,
    prepare_results_is_idempotent_and_adds_columns,
    a_column_of_another_type_is_refused,
    reset_clears_everything_and_fences_the_owner,
    queries_without_a_table_return_nothing,
);
