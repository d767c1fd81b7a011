//! The harness of the gateway's tests: the router over the real embedded adapters (redb
//! log, SQLite store, in-process cache) in a temporary directory, called directly with
//! `tower::ServiceExt::oneshot`, and helpers to read its answers.

// Each test crate uses some of these.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use axum::response::Response;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::{Value, json};
use tower::ServiceExt;
use tributary_connectors::memory::{MemoryCache, MemoryCacheConfig};
use tributary_connectors::redb::{RedbLog, RedbLogConfig};
use tributary_connectors::sqlite::{SqliteConfig, SqliteStore};
use tributary_connectors::streams::{EmbeddedTopics, SqlStreamStore};
use tributary_core::dead_letter::DeadLetter;
use tributary_core::pipeline::{PipelineSpec, WindowSpec};
use tributary_core::ports::{
    AnalyticsStore, Checkpoint, DEFAULT_TENANT, Log, PartitionOffset, Ports, StateDelta,
    StoredStream, StreamOrigin, StreamStore,
};
use tributary_core::results::{ResultChange, ResultRow, ResultWrite};
use tributary_core::value::Value as Scalar;
use tributary_core::{Event, EventId, StreamName, Timestamp};
use tributary_gateway::catalog::CatalogStore;
use tributary_gateway::{
    ApiKeys, AppState, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_TS_AHEAD, Drain, Edge, EdgeSettings,
    StreamCatalog, StreamInfo, Surfaces,
};

pub const KEY: &str = "test-admin-key";
pub const PARTITIONS: u32 = 3;

/// The process-wide Prometheus recorder (a recorder can be installed once per process).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .install_recorder()
                .expect("install recorder")
        })
        .clone()
}

pub struct Harness {
    _dir: tempfile::TempDir,
    pub state: AppState,
    pub log: Arc<RedbLog>,
    pub store: Arc<SqliteStore>,
    pub cache: Arc<MemoryCache>,
    pub router: Router,
}

pub fn stream(name: &str) -> StreamName {
    StreamName::new(name).unwrap()
}

pub fn pipeline(name: &str, source: &str) -> PipelineSpec {
    PipelineSpec::counting(
        name,
        vec![stream(source)],
        WindowSpec::Tumbling { size_ms: 60_000 },
    )
}

/// Streams `t` and `orders` (plus `extra`, when given), pipelines `clicks-per-minute` and
/// `orders-per-minute`.
pub async fn harness_with(max_body_bytes: usize, extra: Option<&str>) -> Harness {
    harness_of(max_body_bytes, extra, EdgeSettings::default()).await
}

/// As [`harness_with`], with the edge's `settings`.
pub async fn harness_of(
    max_body_bytes: usize,
    extra: Option<&str>,
    settings: EdgeSettings,
) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(
        RedbLog::open(&RedbLogConfig {
            path: dir.path().join("log.redb"),
        })
        .unwrap(),
    );
    let store = Arc::new(
        SqliteStore::connect(&SqliteConfig {
            path: dir.path().join("store.sqlite"),
        })
        .await
        .unwrap(),
    );
    let cache = Arc::new(MemoryCache::new(&MemoryCacheConfig::default()));
    let mut streams = BTreeMap::new();
    streams.insert(
        stream("t"),
        StreamInfo {
            partitions: PARTITIONS,
            description: Some("test".into()),
            tenant: DEFAULT_TENANT.into(),
        },
    );
    streams.insert(
        stream("orders"),
        StreamInfo {
            partitions: 1,
            description: None,
            tenant: DEFAULT_TENANT.into(),
        },
    );
    if let Some(extra) = extra {
        streams.insert(
            stream(extra),
            StreamInfo {
                partitions: 1,
                description: None,
                tenant: DEFAULT_TENANT.into(),
            },
        );
    }
    // The streams as a node keeps them: in the stream store, as the config file's.
    let stream_store = Arc::new(SqlStreamStore::new(&store));
    for (name, info) in &streams {
        log.ensure_stream(name, info.partitions).await.unwrap();
        stream_store
            .upsert_config(&config_stream(name, info))
            .await
            .unwrap();
    }
    let catalog = StreamCatalog::load(CatalogStore {
        store: stream_store,
        topics: Arc::new(EmbeddedTopics::new(log.clone())),
    })
    .await
    .unwrap();
    let state = AppState {
        ports: Ports {
            log: log.clone(),
            analytics: store.clone(),
            documents: store.clone(),
            cache: cache.clone(),
        },
        streams: catalog,
        pipelines: Arc::new(vec![
            pipeline("clicks-per-minute", "t"),
            pipeline("orders-per-minute", "orders"),
        ]),
        auth: ApiKeys::new([KEY]),
        max_body_bytes,
        max_ts_ahead: DEFAULT_MAX_TS_AHEAD,
        metrics: metrics_handle(),
        drain: Drain::default(),
        edge: Edge::new(settings),
        sources: tributary_gateway::sources::Sources::default(),
        rate_limit: tributary_gateway::RateLimit::off(),
    };
    Harness {
        _dir: dir,
        router: tributary_gateway::router(state.clone()),
        state,
        log,
        store,
        cache,
    }
}

/// The stored form of a stream of the config file.
pub fn config_stream(name: &StreamName, info: &StreamInfo) -> StoredStream {
    StoredStream {
        name: name.clone(),
        tenant: info.tenant.clone(),
        partitions: info.partitions,
        replication_factor: None,
        retention_ms: None,
        schema: None,
        description: info.description.clone(),
        origin: StreamOrigin::Config,
        created_at: Timestamp::from_millis(1_700_000_000_000),
        updated_at: Timestamp::from_millis(1_700_000_000_000),
    }
}

pub async fn harness() -> Harness {
    harness_with(DEFAULT_MAX_BODY_BYTES, None).await
}

impl Harness {
    /// The same harness, serving only `surfaces`.
    pub fn serving(mut self, surfaces: Surfaces) -> Self {
        self.router = tributary_gateway::router_for(self.state.clone(), surfaces);
        self
    }

    pub async fn send(&self, request: Request<Body>) -> Response {
        self.router.clone().oneshot(request).await.unwrap()
    }

    pub async fn get(&self, uri: &str) -> Response {
        self.send(authed(Method::GET, uri).body(Body::empty()).unwrap())
            .await
    }

    pub async fn post(&self, uri: &str, content_type: &str, body: impl Into<Body>) -> Response {
        let request = authed(Method::POST, uri)
            .header(header::CONTENT_TYPE, content_type)
            .body(body.into())
            .unwrap();
        self.send(request).await
    }

    /// The ids of the events of stream `t` in the log, as [`Self::events_in_log`] reads them.
    pub async fn ids_in_log(&self, expected: usize) -> Vec<String> {
        self.events_in_log("t", PARTITIONS, expected)
            .await
            .iter()
            .map(|e| e.id.to_string())
            .collect()
    }

    /// Every event of stream `name` in the log, read from the beginning until `expected`
    /// are seen or, when fewer exist, until a short quiet period has passed.
    pub async fn events_in_log(&self, name: &str, partitions: u32, expected: usize) -> Vec<Event> {
        let start: Vec<PartitionOffset> = (0..partitions)
            .map(|partition| PartitionOffset {
                stream: stream(name),
                partition,
                next_offset: 0,
            })
            .collect();
        let mut reader = self.log.reader("gateway-test", &start).await.unwrap();
        let mut events = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while events.len() < expected && Instant::now() < deadline {
            let records = reader.poll(100, Duration::from_millis(200)).await.unwrap();
            events.extend(records.into_iter().map(|r| r.event));
        }
        // Anything more than expected would show up now.
        let records = reader.poll(100, Duration::from_millis(200)).await.unwrap();
        events.extend(records.into_iter().map(|r| r.event));
        events
    }
}

pub fn authed(method: Method, uri: &str) -> axum::http::request::Builder {
    Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {KEY}"))
}

pub async fn body_json(response: Response) -> Value {
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
}

pub async fn body_text(response: Response) -> String {
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// Asserts an RFC 9457 problem with `status` and returns its body.
pub async fn problem(response: Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
    let body = body_json(response).await;
    assert_eq!(body["status"], status.as_u16(), "{body}");
    assert!(
        body["type"]
            .as_str()
            .unwrap()
            .starts_with("urn:tributary:problem:"),
        "{body}"
    );
    assert!(
        body["title"].is_string() && body["detail"].is_string(),
        "{body}"
    );
    body
}

pub fn ids_of(body: &Value) -> Vec<String> {
    body["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

pub fn event(name: &str, id: &str, ts: i64) -> Event {
    Event {
        id: EventId::new(id).unwrap(),
        stream: stream(name),
        ts: Timestamp::from_millis(ts),
        key: Some("k".into()),
        payload: json!({"n": ts}).as_object().unwrap().clone(),
    }
}

/// A final result of the counting `pipeline` (see [`pipeline`]): `count` events of `key`
/// in the minute from `start` (epoch milliseconds).
pub fn count_row(pipeline: &str, start: i64, key: &str, count: i64) -> ResultRow {
    ResultRow {
        pipeline: pipeline.into(),
        window_start: Timestamp::from_millis(start),
        window_end: Timestamp::from_millis(start + 60_000),
        key: key.into(),
        keys: vec![Scalar::Str(key.to_owned().into())],
        values: vec![Scalar::Int(count)],
        partials: vec![Vec::new()],
        revision: 1,
        closed: true,
        updated_at: None,
    }
}

/// Commits `rows` as the first checkpoint of the counting `pipeline` over the stream
/// `source`, at `watermark`, as the engine does.
pub async fn commit_results(
    h: &Harness,
    pipeline: &str,
    source: &str,
    rows: &[ResultRow],
    watermark: Timestamp,
) {
    let checkpoint = Checkpoint {
        pipeline: pipeline.into(),
        epoch: 1,
        offsets: vec![],
        state: json!({}),
        watermark,
    };
    let schema = self::pipeline(pipeline, source).schema();
    let changes: Vec<ResultChange> = rows.iter().cloned().map(ResultChange::Upsert).collect();
    h.store.prepare_results(&schema).await.unwrap();
    let owner = h.store.claim(pipeline).await.unwrap();
    let write = ResultWrite {
        schema: &schema,
        changes: &changes,
    };
    h.store
        .commit_checkpoint(
            owner.generation,
            &checkpoint,
            Some(write),
            &StateDelta::default(),
        )
        .await
        .unwrap();
}

/// Every dead letter, read page by page.
pub async fn dead_letters(h: &Harness) -> Vec<DeadLetter> {
    let mut letters = Vec::new();
    let mut uri = "/v1/dead-letters?limit=2".to_owned();
    for _ in 0..100 {
        let response = h.get(&uri).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body = body_json(response).await;
        let page: Vec<DeadLetter> = serde_json::from_value(body["dead_letters"].clone()).unwrap();
        letters.extend(page);
        match body["next_cursor"].as_str() {
            Some(cursor) => uri = format!("/v1/dead-letters?limit=2&cursor={cursor}"),
            None => return letters,
        }
    }
    panic!("the cursor does not advance");
}
