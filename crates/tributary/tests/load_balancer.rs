//! Stateless nodes behind a real load balancer: HAProxy (`deploy/haproxy/haproxy.cfg`,
//! started by `scripts/services.sh up`) in front of two `tributary run --role
//! ingest,gateway` processes on the real Kafka, PostgreSQL, FerretDB and Redis. Clients put
//! load through HAProxy — ingestion of events with explicit ids, retried with the same ids
//! until a 2xx, and idempotent reads — while one node is killed (SIGKILL) or stopped
//! (SIGTERM), and count what they see. The events in the stream's Kafka topic are then
//! compared with the events acknowledged.
//!
//! HAProxy's backend has fixed addresses (`TRIBUTARY_HAPROXY_NODES`), so the tests that
//! use it take turns.

#![allow(clippy::unwrap_used)] // Test helpers outside #[test] functions unwrap too.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::distributed::{distributed_config, ids_in_topic, service};
use common::{KEY, Node, PARTITIONS, STREAM};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, MutexGuard};
use tokio::task::JoinSet;

/// Held by each test that starts nodes on HAProxy's backend addresses.
static HAPROXY: Mutex<()> = Mutex::const_new(());

/// The roles of the nodes behind the load balancer.
const ROLES: &str = "ingest,gateway";
/// Concurrent clients.
const CLIENTS: usize = 8;
/// Events per ingestion request.
const BATCH: usize = 5;
/// What a client waits between two rounds (an ingestion and a read).
const PAUSE: Duration = Duration::from_millis(5);
/// The idempotent reads the clients make, in turn: the streams (no dependency), the
/// pipelines with their live status (Redis), and raw events (FerretDB).
const READS: [&str; 3] = [
    "/v1/streams",
    "/v1/pipelines",
    "/v1/streams/events/events?limit=5",
];

/// SIGTERM with requests in flight: `/readyz` turns 503 at once while the node still
/// serves; after the drain delay the listener closes; a request in flight is still
/// answered, one that does not finish is cut off at the drain timeout; the process exits
/// with 0.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_the_requests_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let config = distributed_config(dir.path()).await;
    let log = dir.path().join("node.log");
    let (delay, timeout) = (Duration::from_secs(2), Duration::from_secs(2));
    let env = [
        ("TRIBUTARY__HTTP__DRAIN_DELAY".to_owned(), "2s".to_owned()),
        ("TRIBUTARY__HTTP__DRAIN_TIMEOUT".to_owned(), "2s".to_owned()),
    ];
    let mut node = Node::start_roles(&config.path, ROLES, &env, &log).await;
    let addr = node.base.trim_start_matches("http://").to_owned();

    // Two ingestion requests whose bodies are half sent: their handlers wait for the rest.
    let body = json!({"id": "slow-1", "payload": {}}).to_string();
    let (first_half, second_half) = body.split_at(body.len() / 2);
    let mut finishing = slow_request(&addr, &body, first_half).await;
    let _stuck = slow_request(&addr, &body, first_half).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    node.terminate();
    let terminated = Instant::now();
    let readyz = node
        .eventually(async || {
            let response = node
                .client
                .get(format!("{}/readyz", node.base))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if response.status() == 503 {
                Ok(response)
            } else {
                Err(format!("/readyz answers {}", response.status()))
            }
        })
        .await;
    assert_eq!(
        readyz.headers()["content-type"],
        "application/problem+json",
        "{readyz:?}"
    );
    let problem: Value = readyz.json().await.unwrap();
    assert_eq!(problem["type"], "urn:tributary:problem:shutting-down");
    // Still serving during the drain delay.
    let served = node.status_of(reqwest::Method::GET, "/v1/streams").await;
    assert_eq!(served, 200);
    assert!(
        terminated.elapsed() < delay,
        "the checks took longer than the drain delay"
    );

    // After the delay the listener is closed: new connections are refused.
    node.eventually(async || match TcpStream::connect(&addr).await {
        Err(_) => Ok(()),
        Ok(_) => Err("the listener still accepts connections".to_owned()),
    })
    .await;
    assert!(terminated.elapsed() >= delay, "the listener closed early");
    assert_eq!(
        node.exited(),
        None,
        "the node exited with requests in flight"
    );

    // The request in flight is answered.
    finishing.write_all(second_half.as_bytes()).await.unwrap();
    let mut answer = String::new();
    finishing.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");

    // The other one holds the node until the drain timeout, and is cut off.
    let exit = node.wait_for_exit().await;
    let stopped = terminated.elapsed();
    assert!(exit.success(), "{exit:?}");
    assert!(
        stopped >= delay + timeout && stopped < delay + timeout + Duration::from_secs(5),
        "stopped {stopped:?} after SIGTERM"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.lines()
            .any(|l| l.contains("drain timeout") && l.contains(r#""cut_off":1"#)),
        "no drain timeout logged:\n{}",
        common::log_tail(&log)
    );
}

/// Opens a connection to `addr` and sends the head of an ingestion request of `body`, and
/// `part` of it.
async fn slow_request(addr: &str, body: &str, part: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/streams/{STREAM}/events HTTP/1.1\r\nhost: {addr}\r\n\
         authorization: Bearer {KEY}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{part}",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

/// SIGKILL of one node under load, then its restart: no idempotent read fails (HAProxy
/// retries them on the other node), and the events in the log, counted once per id, are
/// exactly those acknowledged (clients retry the other ingestions with the same ids).
#[tokio::test(flavor = "multi_thread")]
async fn a_node_killed_under_load_loses_no_acknowledged_event() {
    let mut balanced = Balanced::start().await;
    let load = balanced.load(Duration::from_secs(12)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    balanced.nodes.remove(0).kill9();
    let killed = load.at();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let restarted = balanced.start_node(0).await;
    let back = wait_for_servers(&["UP", "UP"]).await;
    let back_at = load.at();
    let outcome = balanced.finish(load).await;

    let report = outcome.report();
    eprintln!("killed node1 at {killed:?}, back in HAProxy at {back_at:?}\n{report}");
    let view = &outcome.view;
    assert!(
        view.failed_reads.is_empty(),
        "failed reads: {:?}\n{report}",
        view.failed_reads
    );
    assert_eq!(distinct(&outcome.log), view.acknowledged(), "{report}");
    assert!(
        outcome.after["node1"].sessions > back["node1"].sessions,
        "the restarted node served nothing\n{report}"
    );
    drop(restarted);
}

/// SIGTERM of one node under load: HAProxy takes it out while it drains, and no request of
/// any kind fails; the node exits with 0.
#[tokio::test(flavor = "multi_thread")]
async fn a_node_stopped_under_load_fails_no_request() {
    let mut balanced = Balanced::start().await;
    let load = balanced.load(Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let node = &mut balanced.nodes[0];
    node.terminate();
    let terminated = load.at();
    wait_for_servers(&["DOWN", "UP"]).await;
    let out = load.at();
    assert_eq!(
        node.exited(),
        None,
        "the node exited before HAProxy took it out"
    );
    let exit = node.wait_for_exit().await;
    let exited = load.at();
    assert!(exit.success(), "{exit:?}");
    let outcome = balanced.finish(load).await;

    let report = outcome.report();
    eprintln!(
        "SIGTERM to node1 at {terminated:?}, out of HAProxy at {out:?}, exited at {exited:?}\n{report}"
    );
    let view = &outcome.view;
    assert!(
        view.failed_reads.is_empty() && view.failed_ingests.is_empty(),
        "failed: {:?} {:?}\n{report}",
        view.failed_reads,
        view.failed_ingests
    );
    assert_eq!(view.retried, 0, "{report}");
    assert_eq!(distinct(&outcome.log), view.acknowledged(), "{report}");
}

/// Two nodes on HAProxy's backend addresses, both in service, while the test holds its
/// turn.
struct Balanced {
    _turn: MutexGuard<'static, ()>,
    dir: tempfile::TempDir,
    config: common::distributed::Distributed,
    ports: Vec<u16>,
    /// HAProxy's address for clients.
    lb: String,
    nodes: Vec<Node>,
}

impl Balanced {
    async fn start() -> Self {
        let turn = HAPROXY.lock().await;
        let dir = tempfile::tempdir().unwrap();
        let config = distributed_config(dir.path()).await;
        let ports: Vec<u16> = service("TRIBUTARY_HAPROXY_NODES")
            .split(',')
            .map(|addr| addr.rsplit_once(':').unwrap().1.parse().unwrap())
            .collect();
        assert_eq!(ports.len(), 2, "TRIBUTARY_HAPROXY_NODES names two nodes");
        for port in &ports {
            if let Err(error) = std::net::TcpListener::bind(("127.0.0.1", *port)) {
                panic!(
                    "port {port} of HAProxy's backend is taken ({error}): a node left over by \
                     an interrupted run? (`ss -ltnp 'sport = :{port}'`)"
                );
            }
        }
        let mut balanced = Self {
            _turn: turn,
            dir,
            config,
            ports,
            lb: service("TRIBUTARY_HAPROXY_URL"),
            nodes: Vec::new(),
        };
        // One after the other: the first creates the stream's topic.
        for i in 0..balanced.ports.len() {
            let node = balanced.start_node(i).await;
            balanced.nodes.push(node);
        }
        wait_for_servers(&["UP", "UP"]).await;
        balanced
    }

    /// Starts the node of HAProxy's `i`th server (`node{i + 1}`).
    async fn start_node(&self, i: usize) -> Node {
        let log = self.dir.path().join(format!("node{}.log", i + 1));
        Node::start_roles_on(&self.config.path, ROLES, self.ports[i], &[], &log).await
    }

    /// Starts the clients, for `duration`.
    async fn load(&self, duration: Duration) -> Load {
        let before = servers().await;
        let started = Instant::now();
        let mut clients = JoinSet::new();
        for n in 0..CLIENTS {
            clients.spawn(client(n, self.lb.clone(), started + duration));
        }
        Load {
            clients,
            before,
            started,
        }
    }

    /// Waits for every client, then reads the log and HAProxy's stats.
    async fn finish(&self, load: Load) -> Outcome {
        let mut view = View::default();
        for client in load.clients.join_all().await {
            view.add(client);
        }
        Outcome {
            view,
            log: ids_in_log(&self.config.topic_prefix).await,
            before: load.before,
            after: servers().await,
        }
    }
}

/// The clients putting load through HAProxy.
struct Load {
    clients: JoinSet<View>,
    /// HAProxy's servers when the load started.
    before: BTreeMap<String, Server>,
    started: Instant,
}

impl Load {
    /// The time since the load started.
    fn at(&self) -> Duration {
        self.started.elapsed()
    }
}

/// What a load ended with.
struct Outcome {
    /// What the clients saw, added up.
    view: View,
    /// The id of every record of the stream's topic.
    log: Vec<String>,
    /// HAProxy's servers when the load started and when it ended.
    before: BTreeMap<String, Server>,
    after: BTreeMap<String, Server>,
}

/// A backend server as HAProxy's stats show it.
#[derive(Debug, Clone)]
struct Server {
    status: String,
    /// Requests it was sent (sessions), since HAProxy started.
    sessions: u64,
    /// Requests retried on it, and redispatched from it to another server, since HAProxy
    /// started.
    retries: u64,
    redispatches: u64,
}

/// The backend's servers by name (`node1`, `node2`), from HAProxy's stats in CSV.
async fn servers() -> BTreeMap<String, Server> {
    let csv = reqwest::get(format!("{};csv", service("TRIBUTARY_HAPROXY_STATS_URL")))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap()
        .trim_start_matches("# ")
        .split(',')
        .collect();
    let column = |name| header.iter().position(|h| *h == name).unwrap();
    let (px, sv, status, stot, wretr, wredis) = (
        column("pxname"),
        column("svname"),
        column("status"),
        column("stot"),
        column("wretr"),
        column("wredis"),
    );
    let number = |text: &str| text.parse().unwrap_or(0);
    lines
        .map(|line| line.split(',').collect::<Vec<_>>())
        .filter(|row| row[px] == "nodes" && row[sv].starts_with("node"))
        .map(|row| {
            let server = Server {
                status: row[status].to_owned(),
                sessions: number(row[stot]),
                retries: number(row[wretr]),
                redispatches: number(row[wredis]),
            };
            (row[sv].to_owned(), server)
        })
        .collect()
}

/// Waits until the statuses of `node1` and `node2` are `want` (HAProxy adds the progress
/// of a change, such as `UP 1/2` for a server going down, which does not count: it is
/// still up).
async fn wait_for_servers(want: &[&str; 2]) -> BTreeMap<String, Server> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let servers = servers().await;
        let statuses: Vec<&str> = servers
            .values()
            .map(|s| s.status.split_whitespace().next().unwrap_or_default())
            .collect();
        if statuses == want {
            return servers;
        }
        assert!(
            Instant::now() < deadline,
            "HAProxy's servers are {servers:?}, not {want:?} after 30 s (is HAProxy running? \
             `scripts/services.sh up`)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What clients saw.
#[derive(Debug, Default)]
struct View {
    /// Requests sent, retries included.
    requests: u64,
    /// Requests answered 2xx.
    ok: u64,
    /// Ingestion requests sent again (same ids) after a failure.
    retried: u64,
    /// Each failed read: its path and status or error.
    failed_reads: Vec<String>,
    /// Each failed ingestion attempt: its status or error.
    failed_ingests: Vec<String>,
    /// The ids of the events acknowledged, in order.
    acknowledged: Vec<String>,
}

impl View {
    fn add(&mut self, other: Self) {
        self.requests += other.requests;
        self.ok += other.ok;
        self.retried += other.retried;
        self.failed_reads.extend(other.failed_reads);
        self.failed_ingests.extend(other.failed_ingests);
        self.acknowledged.extend(other.acknowledged);
    }

    /// The ids acknowledged; each once (every id is sent in one batch only).
    fn acknowledged(&self) -> BTreeSet<String> {
        let ids: BTreeSet<String> = self.acknowledged.iter().cloned().collect();
        assert_eq!(
            ids.len(),
            self.acknowledged.len(),
            "an id acknowledged twice"
        );
        ids
    }
}

impl Outcome {
    /// The clients' counts, the log's, and HAProxy's (during the load).
    fn report(&self) -> String {
        let (view, log) = (&self.view, &self.log);
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for id in log {
            *counts.entry(id).or_default() += 1;
        }
        let twice = counts.values().filter(|&&n| n > 1).count();
        let mut failures: BTreeMap<&str, usize> = BTreeMap::new();
        for failure in view.failed_reads.iter().chain(&view.failed_ingests) {
            *failures.entry(failure).or_default() += 1;
        }
        let servers: Vec<String> = self
            .after
            .iter()
            .map(|(name, s)| {
                let b = &self.before[name];
                format!(
                    "{name} {}: {} requests, {} retries, {} redispatched",
                    s.status,
                    s.sessions - b.sessions,
                    s.retries - b.retries,
                    s.redispatches - b.redispatches
                )
            })
            .collect();
        format!(
            "clients: {} requests sent, {} 2xx, {} ingestions retried, {} failed (reads: {}, \
             ingestions: {}; {failures:?})\n\
             events: {} acknowledged; in the log {} records, {} distinct ids, {} ids more than \
             once (a retry after a lost answer; deduplicated downstream by id)\n\
             haproxy: {}",
            view.requests,
            view.ok,
            view.retried,
            view.failed_reads.len() + view.failed_ingests.len(),
            view.failed_reads.len(),
            view.failed_ingests.len(),
            view.acknowledged.len(),
            log.len(),
            counts.len(),
            twice,
            servers.join("; "),
        )
    }
}

/// One client: rounds of an ingestion of [`BATCH`] new events, sent again with the same ids
/// until it is answered 2xx, and an idempotent read, until `until`.
async fn client(n: usize, lb: String, until: Instant) -> View {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        // Below HAProxy's `timeout http-keep-alive`: the client never reuses a connection
        // HAProxy is closing.
        .pool_idle_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut view = View::default();
    let mut round = 0;
    while Instant::now() < until {
        let ts = i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis(),
        )
        .unwrap();
        let events: Vec<Value> = (0..BATCH)
            .map(|i| {
                json!({
                    "id": format!("c{n}-{round}-{i}"),
                    "ts": ts,
                    "key": format!("k{}", (round + i) % 7),
                    "payload": {"client": n, "round": round},
                })
            })
            .collect();
        let mut attempts = 0;
        loop {
            view.requests += 1;
            let answer = http
                .post(format!("{lb}/v1/streams/{STREAM}/events"))
                .bearer_auth(KEY)
                .json(&events)
                .send()
                .await;
            match answer {
                Ok(response) if response.status().is_success() => {
                    view.ok += 1;
                    break;
                }
                Ok(response) => view.failed_ingests.push(format!(
                    "{}: {}",
                    response.status(),
                    response.text().await.unwrap_or_default()
                )),
                Err(error) => view.failed_ingests.push(no_answer(&error)),
            }
            attempts += 1;
            assert!(
                attempts < 100,
                "client {n}: round {round} refused 100 times: {:?}",
                view.failed_ingests
            );
            view.retried += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        view.acknowledged
            .extend(events.iter().map(|e| e["id"].as_str().unwrap().to_owned()));

        let path = READS[round % READS.len()];
        view.requests += 1;
        match http
            .get(format!("{lb}{path}"))
            .bearer_auth(KEY)
            .send()
            .await
        {
            Ok(response) if response.status().is_success() => view.ok += 1,
            Ok(response) => view
                .failed_reads
                .push(format!("GET {path}: {}", response.status())),
            Err(error) => view
                .failed_reads
                .push(format!("GET {path}: {}", no_answer(&error))),
        }
        round += 1;
        tokio::time::sleep(PAUSE).await;
    }
    view
}

/// Why a request got no answer: the innermost cause of `error`.
fn no_answer(error: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    format!("no answer: {cause}")
}

/// Every id in the stream's topic, once per record, read from the beginning to the end.
async fn ids_in_log(topic_prefix: &str) -> Vec<String> {
    let brokers = service("TRIBUTARY_KAFKA_BROKERS");
    ids_in_topic(&brokers, &format!("{topic_prefix}{STREAM}"), PARTITIONS).await
}

fn distinct(ids: &[String]) -> BTreeSet<String> {
    ids.iter().cloned().collect()
}
