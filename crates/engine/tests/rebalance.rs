//! Tasks moved at random, in one process: the engine over the embedded adapters, with a
//! group whose member is given and taken its partitions at random moments (revoked
//! gracefully or lost), while events flow. The results of a pipeline keyed like the log and
//! of a repartitioned one equal the ground truth exactly, every late event is counted once,
//! and every raw event is archived once.

#![allow(clippy::unwrap_used)] // Test helpers outside #[test] functions unwrap too.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;
use tributary_core::pipeline::{PipelineSpec, PipelineStatus, WindowSpec};
use tributary_core::plan::{self, Definition, KeyDefinition};
use tributary_core::ports::{
    EncodedBatch, GroupChange, Log, LogReader, Membership, PartitionOffset, PortError, ResultQuery,
    StreamPartition,
};
use tributary_core::value::Value;
use tributary_core::{Event, EventId, StreamName, Timestamp};
use tributary_engine::{Engine, EngineConfig, Ports};

const MINUTE: i64 = 60_000;
const T0: i64 = 1_767_225_600_000;
const PARTITIONS: u32 = 4;

fn stream() -> StreamName {
    StreamName::new("s").unwrap()
}

/// `name` counting events per `key` in 1-minute windows.
fn spec(name: &str, key: &str) -> PipelineSpec {
    plan::plan(&Definition {
        name: name.to_owned(),
        sources: vec![stream().to_string()],
        lookups: vec![],
        filter: None,
        key: Some(vec![KeyDefinition::from(key)]),
        window: WindowSpec::Tumbling { size_ms: MINUTE },
        aggregates: None,
        allowed_lateness: Duration::ZERO,
        max_out_of_orderness: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(3600),
        finalize_idle_after: None,
        checkpoint_interval: Duration::from_millis(30),
    })
    .unwrap()
}

/// Keyed like the log: one shard per partition.
fn by_key() -> PipelineSpec {
    spec("by_key", "key")
}

/// Keyed by a payload field: repartitioned through an internal stream.
fn by_user() -> PipelineSpec {
    spec("by_user", "payload.user")
}

fn event(id: String, ts: i64, key: String, user: String) -> Event {
    let mut payload = serde_json::Map::new();
    payload.insert("user".to_owned(), user.into());
    Event {
        id: EventId::new(id).unwrap(),
        stream: stream(),
        ts: Timestamp::from_millis(ts),
        key: Some(key),
        payload,
    }
}

/// Events over about five minutes, out of order by up to 6 s.
fn events(n: usize) -> Vec<Event> {
    (0..n)
        .map(|i| {
            let t = i64::try_from(i).unwrap();
            event(
                format!("e{i}"),
                T0 + t * 50 - (t % 7) * 1_000,
                format!("k{}", i % 8),
                format!("u{}", i % 5),
            )
        })
        .collect()
}

/// Keys that reach every partition.
fn letters() -> impl Iterator<Item = String> {
    ('a'..='z').map(String::from)
}

/// One far-future event per letter, to close every window of the test.
fn flush() -> Vec<Event> {
    letters()
        .map(|k| event(format!("flush-{k}"), T0 + 30 * MINUTE, k.clone(), k))
        .collect()
}

/// Events of the first window, sent after the flush: late in both pipelines.
fn late() -> Vec<Event> {
    letters()
        .map(|k| event(format!("late-{k}"), T0, k, "u0".to_owned()))
        .collect()
}

/// The closed counts the pipeline must show, by (window start, key).
fn truth(events: &[Event], key: impl Fn(&Event) -> String) -> BTreeMap<(i64, String), i64> {
    let mut counts = BTreeMap::new();
    for e in events {
        let start = e.ts.millis().div_euclid(MINUTE) * MINUTE;
        *counts.entry((start, key(e))).or_insert(0) += 1;
    }
    counts
}

async fn closed_counts(ports: &Ports, spec: &PipelineSpec) -> BTreeMap<(i64, String), i64> {
    let rows = ports
        .analytics
        .query_results(
            &spec.schema(),
            &ResultQuery {
                pipeline: spec.name.clone(),
                from: Some(Timestamp::from_millis(T0 - 10 * MINUTE)),
                to: Some(Timestamp::from_millis(T0 + 10 * MINUTE)),
                key: None,
                limit: 10_000,
            },
        )
        .await
        .unwrap();
    rows.into_iter()
        .filter(|r| r.closed)
        .map(|r| {
            let Value::Int(n) = r.values[0] else {
                panic!("count is {:?}", r.values[0]);
            };
            ((r.window_start.millis(), r.key.clone()), n)
        })
        .collect()
}

/// A log whose groups give and take partitions at random ([`ChaosMember`]).
#[derive(Debug)]
struct ChaosLog {
    inner: Arc<dyn Log>,
    seed: u64,
    /// How many changes each group makes before it settles with every partition owned.
    changes: usize,
}

#[async_trait]
impl Log for ChaosLog {
    async fn ping(&self) -> Result<(), PortError> {
        self.inner.ping().await
    }

    async fn ensure_stream(&self, stream: &StreamName, partitions: u32) -> Result<u32, PortError> {
        self.inner.ensure_stream(stream, partitions).await
    }

    async fn partitions(&self, stream: &StreamName) -> Result<u32, PortError> {
        self.inner.partitions(stream).await
    }

    async fn append(&self, stream: &StreamName, events: &[Event]) -> Result<(), PortError> {
        self.inner.append(stream, events).await
    }

    async fn append_encoded(
        &self,
        stream: &StreamName,
        batch: &EncodedBatch,
    ) -> Result<(), PortError> {
        self.inner.append_encoded(stream, batch).await
    }

    async fn end_offsets(&self, stream: &StreamName) -> Result<Vec<u64>, PortError> {
        self.inner.end_offsets(stream).await
    }

    async fn reader(
        &self,
        group: &str,
        start: &[PartitionOffset],
    ) -> Result<Box<dyn LogReader>, PortError> {
        self.inner.reader(group, start).await
    }

    async fn join(
        &self,
        group: &str,
        streams: &[StreamName],
    ) -> Result<Box<dyn Membership>, PortError> {
        let mut all = Vec::new();
        for stream in streams {
            let n = self.inner.partitions(stream).await?;
            all.extend((0..n).map(|p| (stream.clone(), p)));
        }
        let seed = self.seed ^ tributary_core::partition::stable_hash64(&[group.as_bytes()]);
        Ok(Box::new(ChaosMember {
            all,
            owned: BTreeSet::new(),
            rng: StdRng::seed_from_u64(seed),
            changes: self.changes,
        }))
    }
}

/// A member given and taken its partitions at random moments.
#[derive(Debug)]
struct ChaosMember {
    all: Vec<StreamPartition>,
    owned: BTreeSet<StreamPartition>,
    rng: StdRng,
    changes: usize,
}

#[async_trait]
impl Membership for ChaosMember {
    async fn next(&mut self) -> Result<GroupChange, PortError> {
        let missing: Vec<StreamPartition> = self
            .all
            .iter()
            .filter(|p| !self.owned.contains(*p))
            .cloned()
            .collect();
        if self.changes == 0 {
            if missing.is_empty() {
                return std::future::pending().await;
            }
            self.owned.extend(missing.iter().cloned());
            return Ok(GroupChange::Assigned(missing));
        }
        self.changes -= 1;
        tokio::time::sleep(Duration::from_millis(self.rng.gen_range(10..150))).await;
        if !missing.is_empty() && (self.owned.is_empty() || self.rng.gen_bool(0.5)) {
            let given: Vec<StreamPartition> = missing
                .into_iter()
                .filter(|_| self.rng.gen_bool(0.7))
                .collect();
            self.owned.extend(given.iter().cloned());
            return Ok(GroupChange::Assigned(given));
        }
        let taken: Vec<StreamPartition> = self
            .owned
            .iter()
            .filter(|_| self.rng.gen_bool(0.5))
            .cloned()
            .collect();
        for partition in &taken {
            self.owned.remove(partition);
        }
        Ok(GroupChange::Revoked {
            partitions: taken,
            lost: self.rng.gen_bool(0.3),
        })
    }

    async fn released(&mut self) -> Result<(), PortError> {
        Ok(())
    }
}

/// How many raw events the document store holds, and how many distinct ids.
async fn raw_events(ports: &Ports) -> (usize, usize) {
    let ids = common::raw_event_ids(ports, &stream()).await;
    let distinct = ids.iter().collect::<BTreeSet<_>>().len();
    (ids.len(), distinct)
}

#[tokio::test(flavor = "multi_thread")]
async fn results_stay_exact_while_tasks_move_at_random() {
    let seed: u64 = std::env::var("TRIBUTARY_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().r#gen());
    eprintln!("chaos seed {seed} (TRIBUTARY_CHAOS_SEED={seed} repeats it)");
    let dir = tempfile::tempdir().unwrap();
    let embedded = common::embedded_ports(dir.path()).await;
    embedded
        .log
        .ensure_stream(&stream(), PARTITIONS)
        .await
        .unwrap();
    let ports = Ports {
        log: Arc::new(ChaosLog {
            inner: Arc::clone(&embedded.log),
            seed,
            changes: 40,
        }),
        ..embedded
    };
    let engine = Engine::new(
        ports.clone(),
        EngineConfig {
            pipelines: vec![by_key(), by_user()],
            archived_streams: vec![stream()],
            archive_checkpoint_interval: Duration::from_millis(30),
            batch_size: 50,
            dead_letter_retention: None,
        },
    );
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(engine.run(shutdown.clone()));

    let all = events(6_000);
    for chunk in all.chunks(100) {
        ports.log.append(&stream(), chunk).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Duplicates, as a client's retries would send them: their windows have closed by
    // then (every partition is minutes ahead), so they are late events too.
    let resent = &all[1_000..1_500];
    ports.log.append(&stream(), resent).await.unwrap();
    ports.log.append(&stream(), &flush()).await.unwrap();

    let key = |e: &Event| e.key.clone().unwrap();
    let user = |e: &Event| e.payload["user"].as_str().unwrap().to_owned();
    for (spec, expected) in [(by_key(), truth(&all, key)), (by_user(), truth(&all, user))] {
        common::eventually(async || {
            let got = closed_counts(&ports, &spec).await;
            if got == expected {
                return Ok(());
            }
            Err(format!(
                "{}: counts differ:\n got {got:?}\nwant {expected:?}",
                spec.name
            ))
        })
        .await;
    }

    // Every shard past the flush (a partition may hold letters only, which a shard
    // reading the flush and the late events in one batch would count on time).
    let flushed = Timestamp::from_millis(T0 + 30 * MINUTE - 10_000);
    for spec in [by_key(), by_user()] {
        common::eventually(async || {
            for p in 0..PARTITIONS {
                let key = PipelineStatus::part_key(&spec.name, &format!("shard-{p}"));
                let status: Option<PipelineStatus> = ports
                    .cache
                    .get(&key)
                    .await
                    .unwrap()
                    .map(|json| serde_json::from_str(&json).unwrap());
                let watermark = status.and_then(|s| s.watermark);
                if watermark != Some(flushed) {
                    return Err(format!("{key}: watermark {watermark:?}"));
                }
            }
            Ok(())
        })
        .await;
    }
    // Late once the flush has closed every window: each counted once, however the
    // tasks moved (a late event sent twice is late twice).
    ports.log.append(&stream(), &late()).await.unwrap();
    ports.log.append(&stream(), &late()[..5]).await.unwrap();
    let late_events = (resent.len() + late().len() + 5) as u64;
    for spec in [by_key(), by_user()] {
        common::eventually(async || {
            let status = PipelineStatus::load(ports.cache.as_ref(), &spec.name)
                .await
                .unwrap();
            let counted = status.map(|s| (s.late_events, s.duplicates));
            // A re-sent event whose window closed is a duplicate while the window's ids
            // are still kept, late after: counted once either way.
            if counted.is_some_and(|(late, duplicates)| late + duplicates == late_events) {
                return Ok(());
            }
            Err(format!("{}: (late, duplicates) {counted:?}", spec.name))
        })
        .await;
    }
    // Nothing late changed a closed result.
    for (spec, expected) in [(by_key(), truth(&all, key)), (by_user(), truth(&all, user))] {
        assert_eq!(
            closed_counts(&ports, &spec).await,
            expected,
            "{}",
            spec.name
        );
    }
    let archived = all.len() + flush().len() + late().len();
    common::eventually(async || {
        let (n, distinct) = raw_events(&ports).await;
        if n == archived && distinct == archived {
            return Ok(());
        }
        Err(format!(
            "{n} raw events, {distinct} distinct, want {archived}"
        ))
    })
    .await;
    shutdown.cancel();
    running.await.unwrap().unwrap();
}
