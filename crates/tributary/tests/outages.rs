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

use common::distributed::{distributed_config, ids_in_topic, service};
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
    let broker_dir = dir.path().join("broker");
    std::fs::create_dir(&broker_dir).unwrap();
    let mut broker = Broker::start(&broker_dir).await;
    let config = distributed_config(dir.path()).await;
    let shared = service("TRIBUTARY_KAFKA_BROKERS");
    let text = std::fs::read_to_string(&config.path).unwrap();
    assert!(text.contains(&shared));
    std::fs::write(&config.path, text.replace(&shared, &broker.address())).unwrap();
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
