//! Outages of the services, and how a node lives through them, without touching the
//! services other tests share: the node reaches PostgreSQL, FerretDB and Redis through TCP
//! proxies the test cuts (the service looks stopped), hangs (it accepts and never answers)
//! and restores; its Kafka is a private broker (`scripts/services.sh kafka-instance`) the
//! test kills (SIGKILL) and restarts.
//!
//! - A query against a store that is down answers 503 (problem+json, `Retry-After`) within
//!   the store's query timeout, then at once while its circuit breaker is open, and
//!   answers 200 again by itself after the store is back.
//! - `/v1/pipelines` answers 200 with `"status": null` within the cache's command timeout
//!   while Redis is down (then at once), and shows the statuses again once it is back.
//! - During a steady HTTP ingest, with the broker killed, every request answers within
//!   `[log] append_timeout` (plus a margin), a 202 or a 503 with `Retry-After`; ingest
//!   resumes by itself once the broker is back; every event that got a 202 is in the topic
//!   exactly once.
//! - With that broker killed, the Kafka and MQTT sources (reading the shared Kafka and
//!   Mosquitto) pause: `/readyz` shows them `paused`, and they acknowledge nothing to their
//!   brokers; they resume by themselves once it is back, every message in the stream once.
//!
//! The measured times are printed (`cargo test -p tributary --test outages -- --nocapture`).

#![allow(clippy::unwrap_used)] // Test helpers outside #[test] functions unwrap too.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::distributed::{Distributed, distributed_config, ids_in_topic, service};
use common::proxy::Proxy;
use common::{COUNTS, KEY, Node, PARTITIONS, STREAM, free_port, workload};
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use serde_json::{Value, json};

/// The stores' query timeout and the cache's command timeout in these tests.
const QUERY_TIMEOUT: Duration = Duration::from_secs(1);
const COMMAND_TIMEOUT: Duration = Duration::from_millis(500);
/// The breakers' cool-down.
const COOL_DOWN: Duration = Duration::from_secs(2);
/// The log's append timeout.
const APPEND_TIMEOUT: Duration = Duration::from_secs(2);
/// What an answer may take beyond its bound: HTTP, and two cores shared with the
/// services and the other tests.
const MARGIN: Duration = Duration::from_millis(1500);
/// What a call failed at once by an open breaker may take.
const AT_ONCE: Duration = Duration::from_millis(250);
/// How many requests are sent while a breaker is open.
const FAST_REQUESTS: usize = 10;

/// How a service is taken away.
#[derive(Debug, Clone, Copy)]
enum Outage {
    /// Stopped: connections are refused.
    Down,
    /// Hung: connections are accepted and never answered.
    Hung,
}

/// What one outage of one store looked like from a client.
#[derive(Debug)]
struct Measured {
    /// From the outage to the first answer that showed it.
    first: Duration,
    /// The slowest of the answers that followed while the breaker was open.
    slowest_fast: Duration,
    /// From the service's return to the first answer that showed it.
    recovered: Duration,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_fail_fast_while_a_store_is_down_and_recover() {
    let dir = tempfile::tempdir().unwrap();
    let config = distributed_config(dir.path()).await;
    let postgres = Proxy::start(authority(&service("TRIBUTARY_POSTGRES_URL"))).await;
    let mongo = Proxy::start(authority(&service("TRIBUTARY_MONGODB_URL"))).await;
    let redis = Proxy::start(authority(&service("TRIBUTARY_REDIS_URL"))).await;
    let mut text = std::fs::read_to_string(&config.path).unwrap();
    for (var, proxy) in [
        ("TRIBUTARY_POSTGRES_URL", &postgres),
        ("TRIBUTARY_MONGODB_URL", &mongo),
        ("TRIBUTARY_REDIS_URL", &redis),
    ] {
        let real = authority(&service(var)).to_owned();
        assert!(text.contains(&real), "{var}: {real} is not in the config");
        text = text.replace(&real, &proxy.addr());
    }
    std::fs::write(&config.path, text).unwrap();
    let env = settings(&[
        ("ANALYTICS__QUERY_TIMEOUT", QUERY_TIMEOUT),
        ("ANALYTICS__COOL_DOWN", COOL_DOWN),
        ("DOCUMENTS__QUERY_TIMEOUT", QUERY_TIMEOUT),
        ("DOCUMENTS__COOL_DOWN", COOL_DOWN),
        ("CACHE__COMMAND_TIMEOUT", COMMAND_TIMEOUT),
        ("CACHE__COOL_DOWN", COOL_DOWN),
    ]);
    let log = dir.path().join("node.log");
    let node = Node::start(&config.path, &env, &log).await;
    node.send(&workload(60)).await;
    node.wait_for_any_result(COUNTS).await;
    node.eventually(async || {
        let events = node.get(&format!("/v1/streams/{STREAM}/events")).await;
        let statuses = pipeline_statuses(&node.get("/v1/pipelines").await);
        if events["events"].as_array().is_none_or(Vec::is_empty) {
            Err("no raw event archived yet".to_owned())
        } else if statuses.values().any(Value::is_null) {
            Err(format!("a pipeline has no status yet: {statuses:?}"))
        } else {
            Ok(())
        }
    })
    .await;

    let results = format!("/v1/pipelines/{COUNTS}/results");
    let events = format!("/v1/streams/{STREAM}/events");
    let mut report = Vec::new();
    for outage in [Outage::Down, Outage::Hung] {
        for (store, proxy, path, bound) in [
            ("postgres", &postgres, results.as_str(), QUERY_TIMEOUT),
            ("mongodb", &mongo, events.as_str(), QUERY_TIMEOUT),
        ] {
            let measured = store_outage(&node, proxy, outage, path, bound, &log).await;
            report.push((store, outage, measured));
        }
        let measured = cache_outage(&node, &redis, outage, &log).await;
        report.push(("redis", outage, measured));
    }
    for (store, outage, m) in &report {
        println!(
            "{store:8} {outage:?}: first answer after {:?}, then at most {:?} each; \
             recovered {:?} after the service was back",
            m.first, m.slowest_fast, m.recovered
        );
    }
}

/// Takes a store away with `proxy` and checks `path` through it: 503s within `bound`, then
/// at once, then a 200 once it is back.
async fn store_outage(
    node: &Node,
    proxy: &Proxy,
    outage: Outage,
    path: &str,
    bound: Duration,
    log: &Path,
) -> Measured {
    take_away(proxy, outage).await;
    let started = Instant::now();
    let first = get(node, path).await;
    let first_took = started.elapsed();
    first.assert_unavailable(path);
    assert!(
        first_took <= bound + MARGIN,
        "{outage:?}: GET {path} took {first_took:?}"
    );
    let mut slowest_fast = Duration::ZERO;
    for _ in 0..FAST_REQUESTS {
        let answer = get(node, path).await;
        answer.assert_unavailable(path);
        slowest_fast = slowest_fast.max(answer.took);
    }
    assert!(
        slowest_fast <= AT_ONCE,
        "{outage:?}: with the breaker open, GET {path} took up to {slowest_fast:?}"
    );
    proxy.restore().await;
    let back = Instant::now();
    common::eventually_within(log, COOL_DOWN + bound + MARGIN, async || {
        let answer = get(node, path).await;
        if answer.status == 200 {
            Ok(())
        } else {
            Err(format!("GET {path}: {}", answer.status))
        }
    })
    .await;
    Measured {
        first: first_took,
        slowest_fast,
        recovered: back.elapsed(),
    }
}

/// Takes Redis away with `proxy`: `/v1/pipelines` answers 200 without statuses within the
/// command timeout, then at once, and with them once Redis is back.
async fn cache_outage(node: &Node, proxy: &Proxy, outage: Outage, log: &Path) -> Measured {
    take_away(proxy, outage).await;
    let listing = async || {
        let answer = get(node, "/v1/pipelines").await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        let statuses = pipeline_statuses(&answer.body);
        (answer.took, statuses.values().all(Value::is_null))
    };
    let (first, null) = listing().await;
    assert!(null, "{outage:?}: a status while Redis is away");
    assert!(
        first <= COMMAND_TIMEOUT + MARGIN,
        "{outage:?}: GET /v1/pipelines took {first:?}"
    );
    let mut slowest_fast = Duration::ZERO;
    for _ in 0..FAST_REQUESTS {
        let (took, null) = listing().await;
        assert!(null, "{outage:?}: a status while Redis is away");
        slowest_fast = slowest_fast.max(took);
    }
    assert!(
        slowest_fast <= AT_ONCE,
        "{outage:?}: with the breaker open, GET /v1/pipelines took up to {slowest_fast:?}"
    );
    proxy.restore().await;
    let back = Instant::now();
    common::eventually_within(
        log,
        COOL_DOWN + COMMAND_TIMEOUT + MARGIN,
        async || match listing().await {
            (_, false) => Ok(()),
            (_, true) => Err("no status yet".to_owned()),
        },
    )
    .await;
    Measured {
        first,
        slowest_fast,
        recovered: back.elapsed(),
    }
}

async fn take_away(proxy: &Proxy, outage: Outage) {
    match outage {
        Outage::Down => proxy.cut().await,
        Outage::Hung => proxy.hang().await,
    }
}

/// Each pipeline's `status`, by name.
fn pipeline_statuses(listing: &Value) -> BTreeMap<String, Value> {
    listing["pipelines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap().to_owned(), p["status"].clone()))
        .collect()
}

/// An answer, and how long it took.
#[derive(Debug)]
struct Answer {
    status: u16,
    retry_after: Option<String>,
    content_type: Option<String>,
    body: Value,
    took: Duration,
}

impl Answer {
    /// A 503 problem with a `Retry-After` of at least one second.
    fn assert_unavailable(&self, what: &str) {
        assert_eq!(self.status, 503, "{what}: {}", self.body);
        assert_eq!(
            self.content_type.as_deref(),
            Some("application/problem+json"),
            "{what}"
        );
        let retry_after: u64 = self
            .retry_after
            .as_deref()
            .unwrap_or_else(|| panic!("{what}: a 503 without Retry-After"))
            .parse()
            .unwrap();
        assert!(retry_after >= 1, "{what}: Retry-After {retry_after}");
        assert_eq!(self.body["status"], 503, "{what}");
    }
}

async fn get(node: &Node, path: &str) -> Answer {
    let request = node
        .client
        .get(format!("{}{path}", node.base))
        .bearer_auth(KEY);
    answer(request).await
}

async fn answer(request: reqwest::RequestBuilder) -> Answer {
    let started = Instant::now();
    let response = request.send().await.unwrap();
    let header = |name| {
        response
            .headers()
            .get(name)
            .map(|v: &reqwest::header::HeaderValue| v.to_str().unwrap().to_owned())
    };
    let (status, retry_after, content_type) = (
        response.status().as_u16(),
        header(RETRY_AFTER),
        header(CONTENT_TYPE),
    );
    let body = response.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        retry_after,
        content_type,
        body,
        took: started.elapsed(),
    }
}

/// `TRIBUTARY__{key}` set to each duration, in the config's form (`"1500ms"`).
fn settings(values: &[(&str, Duration)]) -> Vec<(String, String)> {
    values
        .iter()
        .map(|(key, value)| {
            (
                format!("TRIBUTARY__{key}"),
                format!("{}ms", value.as_millis()),
            )
        })
        .collect()
}

/// The `host:port` of a service URL.
fn authority(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap();
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host)
}

// ---------------------------------------------------------------------------- Kafka

/// A private single-node Kafka broker (`scripts/services.sh kafka-instance`), killed
/// (SIGKILL) when dropped.
#[derive(Debug)]
struct Broker {
    dir: PathBuf,
    port: u16,
    controller_port: u16,
    process: Option<Child>,
}

impl Broker {
    /// Starts a broker with its data in `dir` and waits until it answers metadata requests.
    async fn start(dir: &Path) -> Self {
        let mut broker = Self {
            dir: dir.to_owned(),
            port: free_port(),
            controller_port: free_port(),
            process: None,
        };
        broker.restart().await;
        broker
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the broker's process again, on the same data and ports, and waits until it
    /// answers metadata requests.
    async fn restart(&mut self) {
        assert!(self.process.is_none(), "the broker runs");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/services.sh");
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("broker.out"))
            .unwrap();
        let child = Command::new("bash")
            .arg(script)
            .arg("kafka-instance")
            .arg(&self.dir)
            .arg(self.port.to_string())
            .arg(self.controller_port.to_string())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("scripts/services.sh starts");
        self.process = Some(child);
        let address = self.address();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let probe = address.clone();
            let answers = tokio::task::spawn_blocking(move || {
                use rdkafka::consumer::{BaseConsumer, Consumer};
                let consumer: BaseConsumer = rdkafka::ClientConfig::new()
                    .set("bootstrap.servers", &probe)
                    .create()
                    .unwrap();
                consumer
                    .fetch_metadata(None, Duration::from_secs(2))
                    .is_ok()
            })
            .await
            .unwrap();
            if answers {
                return;
            }
            let exited = self.process.as_mut().unwrap().try_wait().unwrap();
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "the private broker did not start ({exited:?}); see {}",
                self.dir.join("broker.out").display()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// SIGKILL.
    fn kill9(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A private broker with its data in `dir/broker`, and a config in `dir` whose log is that
/// broker (the stores shared).
async fn on_private_broker(dir: &Path) -> (Broker, Distributed) {
    let broker_dir = dir.join("broker");
    std::fs::create_dir(&broker_dir).unwrap();
    let broker = Broker::start(&broker_dir).await;
    let config = distributed_config(dir).await;
    let shared = service("TRIBUTARY_KAFKA_BROKERS");
    let text = std::fs::read_to_string(&config.path).unwrap();
    assert!(text.contains(&shared));
    std::fs::write(&config.path, text.replace(&shared, &broker.address())).unwrap();
    (broker, config)
}

/// One ingest request of the steady load: one event, its answer.
#[derive(Debug)]
struct Sent {
    id: String,
    at: Instant,
    answer: Answer,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_fails_fast_while_kafka_is_down_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let (mut broker, config) = on_private_broker(dir.path()).await;
    let env = settings(&[
        ("LOG__APPEND_TIMEOUT", APPEND_TIMEOUT),
        ("LOG__COOL_DOWN", Duration::from_secs(1)),
    ]);
    let log = dir.path().join("node.log");
    let node = Arc::new(Node::start_roles(&config.path, "ingest", &env, &log).await);

    // Steady ingest: clients sending one event per request, never retrying.
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = tokio::task::JoinSet::new();
    for client in 0..4 {
        let (node, stop) = (Arc::clone(&node), Arc::clone(&stop));
        clients.spawn(async move {
            let mut sent = Vec::new();
            for n in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let id = format!("c{client}-{n}");
                let event = json!({ "id": id, "key": format!("k{n}"), "payload": {"n": n} });
                let request = node
                    .client
                    .post(format!("{}/v1/streams/{STREAM}/events", node.base))
                    .bearer_auth(KEY)
                    .json(&event);
                let at = Instant::now();
                let answer = answer(request).await;
                sent.push(Sent { id, at, answer });
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            sent
        });
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    broker.kill9();
    let killed = Instant::now();
    tokio::time::sleep(Duration::from_secs(8)).await;
    let restarting = Instant::now();
    broker.restart().await;
    let back = Instant::now();
    // A probe of its own finds when ingest accepts again.
    let mut probes = 0;
    let first_accepted = node
        .eventually_within(Duration::from_secs(60), async || {
            probes += 1;
            let probe = json!({ "id": format!("probe-{probes}"), "payload": {} });
            let answer = answer(
                node.client
                    .post(format!("{}/v1/streams/{STREAM}/events", node.base))
                    .bearer_auth(KEY)
                    .json(&probe),
            )
            .await;
            match answer.status {
                202 => Ok(back.elapsed()),
                status => Err(format!("ingest still answers {status}")),
            }
        })
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let mut sent: Vec<Sent> = Vec::new();
    while let Some(client) = clients.join_next().await {
        sent.extend(client.unwrap());
    }

    // Every answer was a 202 or a 503 with Retry-After, within the append timeout.
    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    for s in &sent {
        match s.answer.status {
            202 => accepted.push(s.id.clone()),
            503 => {
                s.answer.assert_unavailable(&s.id);
                refused.push(s.id.clone());
            }
            other => panic!("{}: {other} {}", s.id, s.answer.body),
        }
        assert!(
            s.answer.took <= APPEND_TIMEOUT + MARGIN,
            "{} took {:?}",
            s.id,
            s.answer.took
        );
    }
    let first_refusal = sent
        .iter()
        .filter(|s| s.answer.status == 503)
        .map(|s| s.at + s.answer.took)
        .min()
        .expect("the outage was seen");
    let first_refusal = first_refusal.saturating_duration_since(killed);
    assert!(
        first_refusal <= APPEND_TIMEOUT + MARGIN,
        "first 503 {first_refusal:?} after the kill"
    );
    let during: Vec<&Sent> = sent
        .iter()
        .filter(|s| s.at >= killed + APPEND_TIMEOUT + MARGIN && s.at + s.answer.took < restarting)
        .collect();
    let slowest_during = during
        .iter()
        .map(|s| s.answer.took)
        .max()
        .unwrap_or_default();
    let first_client_accept = sent
        .iter()
        .filter(|s| s.answer.status == 202 && s.at >= back)
        .map(|s| (s.at + s.answer.took).saturating_duration_since(back))
        .min();
    assert!(
        first_accepted <= Duration::from_secs(10),
        "ingest resumed {first_accepted:?} after the broker was back"
    );

    // Every event acknowledged is in the topic, once; none is there twice.
    let in_topic = ids_in_topic(
        &broker.address(),
        &format!("{}{STREAM}", config.topic_prefix),
        PARTITIONS,
    )
    .await;
    let mut copies: BTreeMap<&str, usize> = BTreeMap::new();
    for id in &in_topic {
        *copies.entry(id.as_str()).or_default() += 1;
    }
    for id in &accepted {
        assert_eq!(copies.get(id.as_str()), Some(&1), "{id} was acknowledged");
    }
    let twice: Vec<_> = copies.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "in the topic more than once: {twice:?}");
    let refused_but_kept = refused
        .iter()
        .filter(|id| copies.contains_key(id.as_str()))
        .count();
    println!(
        "kafka: {} requests ({} accepted, {} refused, {refused_but_kept} of those in the log \
         anyway); first 503 {first_refusal:?} after the kill; while down, each answer within \
         {slowest_during:?} ({} requests); broker back {:?} after its restart began; ingest \
         accepted again {first_accepted:?} after that (the clients' first 202: {:?})",
        sent.len(),
        accepted.len(),
        refused.len(),
        during.len(),
        back - restarting,
        first_client_accept,
    );
}

// ---------------------------------------------------------------------------- Sources

/// The Kafka and MQTT sources' names in [`sources_pause_while_the_log_is_down_and_resume`].
const KAFKA_SOURCE: &str = "kafka-in";
const MQTT_SOURCE: &str = "mqtt-in";
/// Messages each source gets before the log goes down, and while it is down.
const BEFORE: u32 = 40;
const DURING: u32 = 30;

/// The Kafka and MQTT sources read from the shared broker and Mosquitto into a stream whose
/// log is the private broker. With the log killed they read a batch they cannot store:
/// `/readyz` shows them `paused`, `tributary_source_up` is 0, and neither acknowledges
/// anything to its broker (the Kafka source's group commits nothing more); once the log is
/// back they resume by themselves, and every message is in the stream exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_pause_while_the_log_is_down_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let (mut broker, config) = on_private_broker(dir.path()).await;
    let shared = service("TRIBUTARY_KAFKA_BROKERS");
    let mqtt = service("TRIBUTARY_MQTT_URL");
    let run = uuid::Uuid::now_v7().simple().to_string();
    let (input, group) = (format!("e2e-pause-{run}"), format!("e2e-pause-group-{run}"));
    let (filter, client_id) = (format!("e2e/pause/{run}/#"), format!("e2e-pause-{run}"));
    let text = std::fs::read_to_string(&config.path).unwrap()
        + &format!(
            r#"
[[sources]]
kind = "kafka"
name = "{KAFKA_SOURCE}"
brokers = "{shared}"
topics = ["{input}"]
group_id = "{group}"
stream = "{STREAM}"
ts_format = "epoch_ms"
batch_size = 10

[[sources]]
kind = "mqtt"
name = "{MQTT_SOURCE}"
url = "{mqtt}"
topics = ["{filter}"]
client_id = "{client_id}"
stream = "{STREAM}"
ts_format = "epoch_ms"
batch_size = 10
"#
        );
    std::fs::write(&config.path, text).unwrap();
    sources::create_topic(&shared, &input).await;
    sources::create_session(&mqtt, &client_id, &filter).await;
    let env = settings(&[
        ("LOG__APPEND_TIMEOUT", APPEND_TIMEOUT),
        ("LOG__COOL_DOWN", Duration::from_secs(1)),
    ]);
    let log = dir.path().join("node.log");
    let node = Node::start_roles(&config.path, "ingest", &env, &log).await;
    let stream_topic = format!("{}{STREAM}", config.topic_prefix);
    let mqtt_topic = format!("e2e/pause/{run}/sensor");

    let mut sent = sources::produce(&shared, &input, "k", 0..BEFORE).await;
    sent.extend(sources::publish(&mqtt, &mqtt_topic, "m", 0..BEFORE).await);
    let in_stream = async |broker: &Broker| {
        let ids = ids_in_topic(&broker.address(), &stream_topic, PARTITIONS).await;
        let mut copies: BTreeMap<String, usize> = BTreeMap::new();
        for id in ids {
            *copies.entry(id).or_default() += 1;
        }
        copies
    };
    node.eventually(async || {
        let copies = in_stream(&broker).await;
        let missing = sent.iter().filter(|id| !copies.contains_key(*id)).count();
        if missing == 0 {
            Ok(())
        } else {
            Err(format!("{missing} of {} not in the stream yet", sent.len()))
        }
    })
    .await;
    let committed_before = sources::committed(&shared, &group, &input).await;
    assert_eq!(committed_before, i64::from(BEFORE), "committed offsets");

    broker.kill9();
    let killed = Instant::now();
    sent.extend(sources::produce(&shared, &input, "k", BEFORE..BEFORE + DURING).await);
    sent.extend(sources::publish(&mqtt, &mqtt_topic, "m", BEFORE..BEFORE + DURING).await);
    let paused = node
        .eventually(async || {
            let answer = answer(node.client.get(format!("{}/readyz", node.base))).await;
            let shown = &answer.body["sources"];
            if answer.status == 503
                && shown[KAFKA_SOURCE] == "paused"
                && shown[MQTT_SOURCE] == "paused"
            {
                Ok(killed.elapsed())
            } else {
                Err(format!("/readyz: {} {}", answer.status, answer.body))
            }
        })
        .await;
    let metrics = node.get_text("/metrics").await;
    for source in [KAFKA_SOURCE, MQTT_SOURCE] {
        let up = format!("tributary_source_up{{source=\"{source}\"}} 0");
        assert!(metrics.contains(&up), "no `{up}` in /metrics:\n{metrics}");
    }
    // Held, not acknowledged: the group's offsets stay where the log had everything.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        sources::committed(&shared, &group, &input).await,
        committed_before,
        "the Kafka source committed offsets the log does not have"
    );

    broker.restart().await;
    let back = Instant::now();
    let resumed = node
        .eventually(async || {
            let copies = in_stream(&broker).await;
            let missing = sent.iter().filter(|id| !copies.contains_key(*id)).count();
            if missing == 0 {
                Ok(back.elapsed())
            } else {
                Err(format!("{missing} of {} not in the stream yet", sent.len()))
            }
        })
        .await;
    let copies = in_stream(&broker).await;
    let twice: Vec<_> = copies.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "in the stream more than once: {twice:?}");
    assert_eq!(copies.len(), sent.len(), "{copies:?}");
    node.eventually(async || {
        let ready = answer(node.client.get(format!("{}/readyz", node.base))).await;
        let shown = &ready.body["sources"];
        if ready.status == 200
            && shown[KAFKA_SOURCE] == "running"
            && shown[MQTT_SOURCE] == "running"
        {
            Ok(())
        } else {
            Err(format!("/readyz: {} {}", ready.status, ready.body))
        }
    })
    .await;
    node.eventually(async || {
        let committed = sources::committed(&shared, &group, &input).await;
        if committed == i64::from(BEFORE + DURING) {
            Ok(())
        } else {
            Err(format!("committed {committed} of {}", BEFORE + DURING))
        }
    })
    .await;
    println!(
        "sources: both paused {paused:?} after the log's broker was killed; every message in \
         the stream once {resumed:?} after it was back"
    );
}

/// The sources' brokers, as a foreign producer and the tests see them.
mod sources {
    use std::time::Duration;

    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    use serde_json::json;

    use super::common::T0;

    /// Partitions of the Kafka source's topic.
    const PARTITIONS: i32 = 2;

    pub async fn create_topic(brokers: &str, topic: &str) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .create()
            .unwrap();
        let new = NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1));
        for result in admin
            .create_topics([&new], &AdminOptions::new())
            .await
            .unwrap()
        {
            result.unwrap();
        }
    }

    /// The value of message `i`, with the id `{prefix}-{i}`.
    fn value(prefix: &str, i: u32) -> String {
        json!({"id": format!("{prefix}-{i}"), "ts": T0 + i64::from(i), "payload": {"n": i}})
            .to_string()
    }

    /// Produces messages `range` to `topic`; their ids.
    pub async fn produce(
        brokers: &str,
        topic: &str,
        prefix: &str,
        range: std::ops::Range<u32>,
    ) -> Vec<String> {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("acks", "all")
            .create()
            .unwrap();
        for i in range.clone() {
            let (key, value) = (format!("k{i}"), value(prefix, i));
            producer
                .send(
                    FutureRecord::to(topic).key(&key).payload(&value),
                    Duration::from_secs(10),
                )
                .await
                .unwrap_or_else(|(e, _)| panic!("cannot produce: {e}"));
        }
        range.map(|i| format!("{prefix}-{i}")).collect()
    }

    /// The sum of `group`'s committed offsets on `topic`'s partitions.
    pub async fn committed(brokers: &str, group: &str, topic: &str) -> i64 {
        let (brokers, group, topic) = (brokers.to_owned(), group.to_owned(), topic.to_owned());
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &brokers)
                .set("group.id", &group)
                .create()
                .unwrap();
            let mut partitions = TopicPartitionList::new();
            for p in 0..PARTITIONS {
                partitions.add_partition(&topic, p);
            }
            let committed = consumer
                .committed_offsets(partitions, Duration::from_secs(10))
                .unwrap();
            committed
                .elements()
                .iter()
                .map(|e| match e.offset() {
                    Offset::Offset(n) => n,
                    _ => 0,
                })
                .sum()
        })
        .await
        .unwrap()
    }

    /// A client of the MQTT broker at `url` (`mqtt://host:port`).
    fn connect(url: &str, client_id: &str, clean: bool) -> (AsyncClient, rumqttc::EventLoop) {
        let (host, port) = url
            .strip_prefix("mqtt://")
            .and_then(|rest| rest.rsplit_once(':'))
            .unwrap_or_else(|| panic!("not mqtt://host:port: {url}"));
        let mut options = MqttOptions::new(client_id, host, port.parse().unwrap());
        options.set_clean_session(clean);
        AsyncClient::new(options, 100)
    }

    /// Polls `events` until `done`; fails after 30 s.
    async fn drive(events: &mut rumqttc::EventLoop, mut done: impl FnMut(&Event) -> bool) {
        tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                if done(&events.poll().await.unwrap()) {
                    return;
                }
            }
        })
        .await
        .expect("the MQTT broker answers");
    }

    /// Creates the source's persistent session, subscribed at QoS 1, so that the broker
    /// keeps what is published before the node connects.
    pub async fn create_session(url: &str, client_id: &str, filter: &str) {
        let (client, mut events) = connect(url, client_id, false);
        client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        drive(&mut events, |e| {
            matches!(e, Event::Incoming(Packet::SubAck(_)))
        })
        .await;
        client.disconnect().await.unwrap();
    }

    /// Publishes messages `range` to `topic` at QoS 1, returning once the broker
    /// acknowledged each; their ids.
    pub async fn publish(
        url: &str,
        topic: &str,
        prefix: &str,
        range: std::ops::Range<u32>,
    ) -> Vec<String> {
        let run = uuid::Uuid::now_v7().simple().to_string();
        let (client, mut events) = connect(url, &format!("e2e-publisher-{run}"), true);
        for i in range.clone() {
            client
                .publish(topic, QoS::AtLeastOnce, false, value(prefix, i))
                .await
                .unwrap();
        }
        let (mut acked, n) = (0, range.len());
        drive(&mut events, |e| {
            acked += usize::from(matches!(e, Event::Incoming(Packet::PubAck(_))));
            acked == n
        })
        .await;
        client.disconnect().await.unwrap();
        range.map(|i| format!("{prefix}-{i}")).collect()
    }
}
