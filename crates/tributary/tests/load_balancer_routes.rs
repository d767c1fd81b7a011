//! What deploy/haproxy/haproxy.cfg routes to the nodes: the API, never `/metrics` (an
//! operator's surface, whose labels name every tenant's streams and pipelines; Prometheus
//! scrapes the nodes directly). An HAProxy of this test's own, with the project's config,
//! in front of a stand-in node that answers every path.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::Router;

/// A port free now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An HAProxy process, killed when dropped.
struct Haproxy(Child);

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_load_balancer_does_not_route_metrics() {
    // The stand-in node: 200 and its path for anything (also /readyz, HAProxy's check).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let node = listener.local_addr().unwrap();
    let app = Router::new().fallback(|uri: axum::http::Uri| async move { format!("node: {uri}") });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let (listen, stats) = (free_port(), free_port());
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/haproxy/haproxy.cfg");
    let _haproxy = Haproxy(
        Command::new("haproxy")
            .args(["-db", "-f"])
            .arg(&config)
            .env("TRIBUTARY_HAPROXY_LISTEN", format!("127.0.0.1:{listen}"))
            .env("TRIBUTARY_HAPROXY_NODE1", node.to_string())
            .env("TRIBUTARY_HAPROXY_NODE2", node.to_string())
            .env("TRIBUTARY_HAPROXY_STATS", format!("127.0.0.1:{stats}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy runs (scripts/services.sh up installs it)"),
    );
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{listen}");
    // Routed once a server passed its checks.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let response = client.get(format!("{base}/v1/streams")).send().await;
        if response.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "HAProxy routed nothing within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let routed = client
        .get(format!("{base}/v1/streams"))
        .send()
        .await
        .unwrap();
    assert_eq!(routed.text().await.unwrap(), "node: /v1/streams");

    for path in ["/metrics", "/metrics?name=x"] {
        let response = client.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{path}"
        );
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(
            body["type"], "urn:tributary:problem:route-not-found",
            "{path}"
        );
    }
}
