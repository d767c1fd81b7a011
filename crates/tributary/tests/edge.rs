//! The HTTP edge of a real `tributary` process, over TCP: slow and malformed clients are
//! cut off and logged, and a burst of abusive requests leaves its memory bounded.

#![allow(clippy::unwrap_used)] // Test helpers outside #[test] functions unwrap too.

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{KEY, Node};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// An embedded config in `dir` with one stream, `events`, no pipeline, and `http` in its
/// `[http]` section.
fn config(dir: &Path, http: &str) -> PathBuf {
    let rest = format!("\n[http]\n{http}\n\n[[streams]]\nname = \"events\"\npartitions = 3\n");
    common::embedded_config(dir, &rest)
}

/// The `host:port` of a node.
fn address(node: &Node) -> String {
    node.base.trim_start_matches("http://").to_owned()
}

/// Sends `request` on a new connection and reads until the server closes it (at most 10 s):
/// what it answered (lossy text) and when it closed. A reset counts as a close.
async fn exchange(addr: &str, request: &[u8]) -> (String, Duration) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // The server may close before reading all of a large head.
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 8192];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server kept the connection open for 10 s");
    (
        String::from_utf8_lossy(&answer).into_owned(),
        started.elapsed(),
    )
}

/// Opens a connection that sends the start of a request head, one byte every 200 ms,
/// forever; returns when the server closed it.
async fn slow_head(addr: &str) -> Duration {
    let started = Instant::now();
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let writer = tokio::spawn(async move {
        let head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ";
        for byte in head.iter().chain(std::iter::repeat(&b'a')) {
            if writer.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    writer.abort();
    assert!(closed.is_ok(), "a slow head was served for 10 s");
    started.elapsed()
}

fn log_text(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_and_malformed_clients_are_cut_off_and_logged() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("node.log");
    let config = config(dir.path(), "header_timeout = \"1s\"\nbody_timeout = \"1s\"");
    let node = Node::start(&config, &[], &log).await;
    let addr = address(&node);

    // One header byte every 200 ms: closed after the header timeout, with no answer.
    let closed_slow = slow_head(&addr).await;
    assert!(
        (Duration::from_millis(900)..Duration::from_secs(3)).contains(&closed_slow),
        "a slow head was closed after {closed_slow:?}"
    );
    // A connection that sends nothing at all, too.
    let (answer, closed_silent) = exchange(&addr, b"").await;
    assert!(answer.is_empty(), "{answer}");
    assert!(closed_silent < Duration::from_secs(3), "{closed_silent:?}");

    // A body announced and never sent: 408, a problem document, and the connection closed.
    let announced = format!(
        "POST /v1/streams/events/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    );
    let (answer, closed) = exchange(&addr, announced.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert!(
        answer.contains("urn:tributary:problem:body-timeout"),
        "{answer}"
    );
    assert!(
        (Duration::from_millis(900)..Duration::from_secs(3)).contains(&closed),
        "{closed:?}"
    );

    println!(
        "edge timeouts: slow head closed after {closed_slow:?}, silent connection after {closed_silent:?}, announced body answered 408 and closed after {closed:?}"
    );

    // Below the server's limits, the gateway answers with problem documents...
    let long_target = format!(
        "GET /v1/streams?x={} HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(10_000)
    );
    let (answer, _) = exchange(&addr, long_target.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 414"), "{answer}");
    assert!(
        answer.contains("urn:tributary:problem:uri-too-long"),
        "{answer}"
    );
    let big_header = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "b".repeat(40_000)
    );
    let (answer, _) = exchange(&addr, big_header.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert!(
        answer.contains("urn:tributary:problem:header-fields-too-large"),
        "{answer}"
    );

    // ...beyond them, and for what does not parse, the server answers alone (empty bodies)
    // and logs it.
    let (answer, _) = exchange(&addr, b"GARBAGE\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("content-length: 0"), "{answer}");
    let huge_head = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Huge: {}\r\n\r\n",
        "h".repeat(70_000)
    );
    let (answer, _) = exchange(&addr, huge_head.as_bytes()).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer}"
    );

    // Every one of them is logged, with its request id and trace id when it has one.
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let response = node
        .client
        .get(format!("{}/healthz", node.base))
        .header("x-request-id", "edge-test-request")
        .header("traceparent", format!("00-{trace}-b7ad6b7169203331-01"))
        .send()
        .await
        .unwrap();
    let echoed = response.headers()["traceparent"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(echoed.starts_with(&format!("00-{trace}-")), "{echoed}");
    node.eventually(async || {
        let text = log_text(&log);
        let wanted = [
            "request refused by the HTTP server: the head does not parse",
            "request refused by the HTTP server: the head is too large",
            "connection closed: no complete request head within [http] header_timeout",
            "the request body did not arrive within 1000 ms",
            "the request target exceeds",
            "the request header fields exceed",
            "edge-test-request",
            trace,
        ];
        match wanted.iter().find(|w| !text.contains(*w)) {
            None => Ok(()),
            Some(missing) => Err(format!("no log line with {missing:?}")),
        }
    })
    .await;
}

/// A field of `/proc/<pid>/status`, in KiB (`VmRSS`: resident now, `VmHWM`: the peak).
fn memory_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The abusive bodies, each under the default `max_body_bytes` (10 MiB).
struct Bodies {
    /// 5,000,000 invalid items (the measured case of issue 9): a 413 after 10,000.
    invalid_items: bytes::Bytes,
    /// 10,000 events with an unknown field of 1,000 bytes each: a 422 listing 100.
    unknown_fields: bytes::Bytes,
    /// 9,000 valid events of 1 KB each: appended (before the burst, to be paged through).
    valid: bytes::Bytes,
    /// 5,000,000 nested arrays: a 400 (128 levels are read at most).
    deep: bytes::Bytes,
    /// 256 MiB of spaces and one event, gzipped to a few hundred KiB: a 413.
    bomb: bytes::Bytes,
}

impl Bodies {
    fn new() -> Self {
        let mut invalid_items = "1,".repeat(5_000_000);
        invalid_items.insert(0, '[');
        invalid_items.pop();
        invalid_items.push(']');
        let field = "f".repeat(1_000);
        let unknown_fields = format!(
            "[{}]",
            vec![format!(r#"{{"payload":{{}},"{field}":1}}"#); 10_000].join(",")
        );
        let text = "t".repeat(1_000);
        let valid = format!("{{\"payload\":{{\"text\":\"{text}\"}}}}\n").repeat(9_000);
        let deep = "[".repeat(5_000_000);
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let spaces = vec![b' '; 1024 * 1024];
        for _ in 0..256 {
            encoder.write_all(&spaces).unwrap();
        }
        encoder.write_all(br#"{"payload":{}}"#).unwrap();
        let bomb = encoder.finish().unwrap();
        Self {
            invalid_items: invalid_items.into(),
            unknown_fields: unknown_fields.into(),
            valid: valid.into(),
            deep: deep.into(),
            bomb: bomb.into(),
        }
    }
}

/// Posts `body` to the stream and returns the status.
async fn post(node: &Node, body: bytes::Bytes, content_type: &str, encoding: Option<&str>) -> u16 {
    let mut request = node
        .client
        .post(format!("{}/v1/streams/events/events", node.base))
        .bearer_auth(KEY)
        .header("content-type", content_type)
        .body(body);
    if let Some(encoding) = encoding {
        request = request.header("content-encoding", encoding);
    }
    request.send().await.map_or(0, |r| r.status().as_u16())
}

/// Gets a page and returns its status and size.
async fn page(node: &Node, path: &str) -> (u16, usize) {
    let response = node
        .client
        .get(format!("{}{path}", node.base))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.bytes().await.unwrap().len())
}

/// The room of the node with the default settings (`[http] max_bytes_in_flight`).
const ROOM_MIB: u64 = 64;

/// Slow clients holding a connection open during the burst.
const SLOW_CLIENTS: u64 = 200;

/// What a burst of abusive requests may add to the resident memory of the process, at its
/// peak: three times the room (a body or page held, its parse or its store reads, its
/// answer and dead letter), plus 64 KiB per open connection (the most of a request head
/// the server reads).
const PEAK_BOUND_MIB: u64 = 3 * ROOM_MIB + SLOW_CLIENTS * 64 / 1024;

/// What may stay resident 20 s after the burst: the allocator keeps some of what was freed.
const AFTER_BOUND_MIB: u64 = ROOM_MIB;

/// The status counted for a request the server refused before reading all its body
/// (a 413) when the client saw the connection close before the answer: the server
/// answers early and closes, and a client still sending may meet the close first.
const CLOSED_EARLY: u16 = 499;

/// `status`, or [`CLOSED_EARLY`] for a request that got no answer (0).
fn closed_early(status: u16) -> u16 {
    if status == 0 { CLOSED_EARLY } else { status }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_abusive_requests_keeps_memory_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("node.log");
    let node = Arc::new(Node::start(&config(dir.path(), ""), &[], &log).await);
    let pid = node.pid();
    let bodies = Arc::new(Bodies::new());

    // Stored events to page through (18,000 of 1 KB), a first answer of each kind, then
    // the resident memory at rest.
    for _ in 0..2 {
        assert_eq!(
            post(&node, bodies.valid.clone(), "application/x-ndjson", None).await,
            202
        );
    }
    node.eventually(
        async || match page(&node, "/v1/streams/events/events?limit=1000").await {
            (200, bytes) if bytes > 1024 * 1024 => Ok(()),
            other => Err(format!("the events are not archived yet: {other:?}")),
        },
    )
    .await;
    assert_eq!(page(&node, "/v1/dead-letters").await.0, 200);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let baseline = memory_kib(pid, "VmRSS");

    // The burst: 32 clients at once, each sending every abusive request twice and asking
    // for the largest pages (of events, and of the dead letters the refusals leave: up to
    // 1 MiB each), and slow clients holding connections open with half a request head.
    let started = Instant::now();
    let slow: Vec<_> = (0..SLOW_CLIENTS)
        .map(|_| {
            let addr = address(&node);
            tokio::spawn(async move {
                let mut stream = TcpStream::connect(&addr).await.unwrap();
                let head = b"POST /v1/streams/events/events HTTP/1.1\r\nX: ";
                let _ = stream.write_all(head).await;
                tokio::time::sleep(Duration::from_secs(5)).await;
            })
        })
        .collect();
    let clients: Vec<_> = (0..32)
        .map(|_| {
            let (node, bodies) = (Arc::clone(&node), Arc::clone(&bodies));
            tokio::spawn(async move {
                let json = "application/json";
                let mut statuses = Vec::new();
                for _ in 0..2 {
                    let refused = post(&node, bodies.invalid_items.clone(), json, None).await;
                    statuses.push(closed_early(refused));
                    statuses.push(post(&node, bodies.unknown_fields.clone(), json, None).await);
                    let refused = post(&node, bodies.bomb.clone(), json, Some("gzip")).await;
                    statuses.push(closed_early(refused));
                    statuses.push(post(&node, bodies.deep.clone(), json, None).await);
                    statuses.push(page(&node, "/v1/dead-letters?limit=1000").await.0);
                    statuses.push(page(&node, "/v1/streams/events/events?limit=1000").await.0);
                }
                statuses
            })
        })
        .collect();
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for client in clients {
        for status in client.await.unwrap() {
            *statuses.entry(status).or_default() += 1;
        }
    }
    for slow in slow {
        slow.await.unwrap();
    }
    let took = started.elapsed();
    let peak = memory_kib(pid, "VmHWM");
    let (dead_letter_page, page_bytes) = page(&node, "/v1/dead-letters?limit=1000").await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    let after = memory_kib(pid, "VmRSS");
    println!(
        "edge burst: {took:?}, answers {statuses:?}; resident memory at rest {} MiB, peak {} \
         MiB (bound {} MiB), 20 s after {} MiB; a page of dead letters: {page_bytes} bytes",
        baseline / 1024,
        peak / 1024,
        baseline / 1024 + PEAK_BOUND_MIB,
        after / 1024
    );

    // Every request was answered as the edge says (a 503 when it found no room in time).
    assert_eq!(dead_letter_page, 200);
    assert!(page_bytes <= 5 * 1024 * 1024 + 64 * 1024, "{page_bytes}");
    let expected: std::collections::BTreeSet<u16> = [200, 400, 413, 422, 503, CLOSED_EARLY].into();
    assert!(
        statuses.keys().all(|s| expected.contains(s)),
        "unexpected answers: {statuses:?}"
    );
    assert!(
        statuses.get(&413) >= Some(&64) && statuses.get(&422) >= Some(&1),
        "{statuses:?}"
    );
    assert!(
        peak.saturating_sub(baseline) <= PEAK_BOUND_MIB * 1024,
        "the burst raised the resident memory from {} MiB to {} MiB (bound: +{PEAK_BOUND_MIB} \
         MiB)",
        baseline / 1024,
        peak / 1024
    );
    assert!(
        after.saturating_sub(baseline) <= AFTER_BOUND_MIB * 1024,
        "{} MiB resident 20 s after the burst, {} MiB before (bound: +{AFTER_BOUND_MIB} MiB)",
        after / 1024,
        baseline / 1024
    );
}
