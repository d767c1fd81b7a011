//! The engine's lag gauge, `tributary_task_lag_records{task}`, over the embedded adapters:
//! a pipeline and the archive started behind a backlog report it whole, then 0 once they
//! have read it.

#![allow(clippy::unwrap_used)] // Test helpers outside #[test] functions unwrap too.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use metrics::{
    Counter, Gauge, GaugeFn, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use tokio_util::sync::CancellationToken;
use tributary_core::pipeline::{PipelineSpec, WindowSpec};
use tributary_core::{Event, EventId, StreamName, Timestamp};
use tributary_engine::archive::ARCHIVE_TASK;
use tributary_engine::{Engine, EngineConfig, Ports};

/// The gauge under test.
const LAG: &str = "tributary_task_lag_records";

/// The pipeline's name.
const PIPELINE: &str = "lagging";

/// Every value a gauge was set to, in order.
#[derive(Debug, Default)]
struct History(Mutex<Vec<f64>>);

impl GaugeFn for History {
    fn increment(&self, value: f64) {
        let mut values = self.0.lock().unwrap();
        let last = values.last().copied().unwrap_or(0.0);
        values.push(last + value);
    }

    fn decrement(&self, value: f64) {
        self.increment(-value);
    }

    fn set(&self, value: f64) {
        self.0.lock().unwrap().push(value);
    }
}

/// The histories of the gauges set in this test binary, by name and `task` label.
#[derive(Debug, Default)]
struct Gauges(Mutex<HashMap<(String, String), Arc<History>>>);

impl Gauges {
    /// The values gauge `name` of `task` was set to, in order.
    fn history(&self, name: &str, task: &str) -> Vec<f64> {
        let key = (name.to_owned(), task.to_owned());
        self.0
            .lock()
            .unwrap()
            .get(&key)
            .map(|h| h.0.lock().unwrap().clone())
            .unwrap_or_default()
    }
}

/// A recorder keeping every gauge's history in [`Gauges`] (counters and histograms are
/// ignored).
#[derive(Debug)]
struct GaugeRecorder(Arc<Gauges>);

impl Recorder for GaugeRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
        Counter::noop()
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        let task = key
            .labels()
            .find(|label| label.key() == "task")
            .map(|label| label.value().to_owned())
            .unwrap_or_default();
        let history = self
            .0
            .0
            .lock()
            .unwrap()
            .entry((key.name().to_owned(), task))
            .or_default()
            .clone();
        Gauge::from_arc(history)
    }

    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

/// The gauges of this process, recorded from the first call on.
fn gauges() -> &'static Gauges {
    static GAUGES: OnceLock<Arc<Gauges>> = OnceLock::new();
    GAUGES.get_or_init(|| {
        let gauges = Arc::new(Gauges::default());
        metrics::set_global_recorder(GaugeRecorder(gauges.clone())).unwrap();
        gauges
    })
}

fn stream() -> StreamName {
    StreamName::new("s").unwrap()
}

fn events(n: i64) -> Vec<Event> {
    (0..n)
        .map(|i| Event {
            id: EventId::new(format!("e{i}")).unwrap(),
            stream: stream(),
            ts: Timestamp::from_millis(1_767_225_600_000 + i * 100),
            key: Some(format!("k{}", i % 5)),
            payload: serde_json::Map::new(),
        })
        .collect()
}

fn engine(ports: &Ports) -> Engine {
    let spec = PipelineSpec {
        max_out_of_orderness: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(3600),
        checkpoint_interval: Duration::from_millis(20),
        ..PipelineSpec::counting(
            PIPELINE,
            vec![stream()],
            WindowSpec::Tumbling { size_ms: 60_000 },
        )
    };
    Engine::new(
        ports.clone(),
        EngineConfig {
            pipelines: vec![spec],
            archived_streams: vec![stream()],
            archive_checkpoint_interval: Duration::from_millis(20),
            batch_size: 50,
            dead_letter_retention: None,
        },
    )
}

/// Waits until the lag of `task` was last set to 0, or fails after 30 s (the engine
/// measures every 5 s).
async fn wait_for_no_lag(task: &str) -> Vec<f64> {
    common::eventually(async || {
        let history = gauges().history(LAG, task);
        if history.last() == Some(&0.0) {
            return Ok(history);
        }
        Err(format!("the lag of {task} never fell to 0: {history:?}"))
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn lag_is_the_backlog_then_falls_to_zero() {
    const BACKLOG: i64 = 300;
    let gauges = gauges();
    let dir = tempfile::tempdir().unwrap();
    let ports = common::embedded_ports(dir.path()).await;
    ports.log.ensure_stream(&stream(), 3).await.unwrap();
    for batch in events(BACKLOG).chunks(100) {
        ports.log.append(&stream(), batch).await.unwrap();
    }
    assert!(gauges.history(LAG, PIPELINE).is_empty());

    let shutdown = CancellationToken::new();
    let run = tokio::spawn(engine(&ports).run(shutdown.clone()));
    // The pipeline runs as one shard per partition, each measuring its own partition.
    let mut shard_backlogs = 0.0;
    for partition in 0..3 {
        let task = tributary_engine::shard_task(PIPELINE, partition);
        let history = wait_for_no_lag(&task).await;
        let first = history.first().copied().unwrap_or_default();
        assert!(first > 0.0, "{task}: {history:?}");
        assert!(
            history.windows(2).all(|w| w[1] <= w[0]),
            "{task}: the lag grew without appends: {history:?}"
        );
        shard_backlogs += first;
    }
    #[allow(clippy::cast_precision_loss)]
    let backlog = BACKLOG as f64;
    assert_eq!(
        shard_backlogs, backlog,
        "the shards' backlogs add up to the log's"
    );
    for task in [ARCHIVE_TASK] {
        let history = wait_for_no_lag(task).await;
        // Measured once before the first read, then only as the task reads on.
        assert_eq!(history.first(), Some(&backlog), "{task}: {history:?}");
        assert!(
            history.windows(2).all(|w| w[1] <= w[0]),
            "{task}: the lag grew without appends: {history:?}"
        );
    }
    shutdown.cancel();
    run.await.unwrap().unwrap();
}
