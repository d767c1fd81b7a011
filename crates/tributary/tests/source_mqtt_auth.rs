//! The MQTT source against a broker that requires a user name and password, over plain TCP
//! and over TLS: the second Mosquitto of `scripts/services.sh` (`TRIBUTARY_MQTT_AUTH_URL`,
//! `TRIBUTARY_MQTT_TLS_URL` with the test CA `TRIBUTARY_MQTT_CA_FILE`, the user
//! `TRIBUTARY_MQTT_USERNAME` and its password `TRIBUTARY_MQTT_PASSWORD`).
//!
//! A source whose password is wrong, and one that does not trust the broker's certificate,
//! make the node not ready (`/readyz` 503, `checks.sources` unavailable) and log why, without the
//! password; with the right password over TLS, every message published is in the stream.

#![allow(clippy::unwrap_used)] // Test helpers outside #[test] functions unwrap too.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::distributed::service;
use common::{KEY, STREAM, T0, TOPOLOGY, embedded_config, eventually, free_port};
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use serde_json::{Value, json};

/// The messages published for the source that connects.
const MESSAGES: u32 = 300;

/// A `tributary run` of `config`, its output in `log`; killed when dropped.
struct Node {
    child: Child,
    base: String,
    client: reqwest::Client,
}

impl Node {
    fn start(config: &Path, log: &Path, env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_tributary"))
            .args([
                "run",
                "--config",
                config.to_str().unwrap(),
                "--log-format",
                "json",
            ])
            .env("TRIBUTARY_BOOTSTRAP_API_KEY", KEY)
            .env("TRIBUTARY__HTTP__LISTEN", format!("127.0.0.1:{port}"))
            .envs(env.iter().copied())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .expect("the tributary binary starts");
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
        }
    }

    /// `/readyz`: its status and body (none when the node does not answer yet).
    async fn readyz(&self) -> Option<(u16, Value)> {
        let response = self
            .client
            .get(format!("{}/readyz", self.base))
            .send()
            .await
            .ok()?;
        let status = response.status().as_u16();
        Some((status, response.json().await.unwrap_or(Value::Null)))
    }

    /// The ids of the stream's events, read back page by page.
    async fn ids(&self) -> Result<BTreeSet<String>, String> {
        let mut ids = BTreeSet::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut url = format!("{}/v1/streams/{STREAM}/events?limit=1000", self.base);
            if let Some(c) = &cursor {
                url.push_str(&format!("&cursor={c}"));
            }
            let response = self
                .client
                .get(url)
                .bearer_auth(KEY)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if response.status() != 200 {
                return Err(format!("GET events: {}", response.status()));
            }
            let page: Value = response.json().await.map_err(|e| e.to_string())?;
            for event in page["events"].as_array().unwrap() {
                ids.insert(event["id"].as_str().unwrap().to_owned());
            }
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return Ok(ids),
            }
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The host and port of an `mqtt://` or `mqtts://` url.
fn host_port(url: &str) -> (String, u16) {
    let rest = url.split_once("://").unwrap().1;
    let (host, port) = rest.rsplit_once(':').unwrap();
    (host.to_owned(), port.parse().unwrap())
}

/// A client of the broker's plain TCP listener with the right credentials.
fn connect(client_id: &str, clean_session: bool) -> (AsyncClient, rumqttc::EventLoop) {
    let (host, port) = host_port(&service("TRIBUTARY_MQTT_AUTH_URL"));
    let mut options = MqttOptions::new(client_id, host, port);
    options.set_clean_session(clean_session).set_credentials(
        service("TRIBUTARY_MQTT_USERNAME"),
        service("TRIBUTARY_MQTT_PASSWORD"),
    );
    AsyncClient::new(options, 1000)
}

/// Polls `events` until `done` says so; panics on a connection error or after 60 s.
async fn drive(events: &mut rumqttc::EventLoop, mut done: impl FnMut(&Event) -> bool) {
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let event = events.poll().await.unwrap();
            if done(&event) {
                return;
            }
        }
    })
    .await
    .expect("the MQTT broker answers within 60 s");
}

/// Disconnects cleanly.
async fn disconnect(client: &AsyncClient, events: &mut rumqttc::EventLoop) {
    client.disconnect().await.unwrap();
    drive(events, |e| {
        matches!(e, Event::Outgoing(Outgoing::Disconnect))
    })
    .await;
}

/// Creates the persistent session `client_id` subscribed to `filter` at QoS 1 (so the
/// broker keeps what is published before the source connects), or removes it (`remove`).
async fn session(client_id: &str, filter: &str, remove: bool) {
    let (client, mut events) = connect(client_id, remove);
    if remove {
        drive(&mut events, |e| {
            matches!(e, Event::Incoming(Packet::ConnAck(_)))
        })
        .await;
    } else {
        client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        drive(&mut events, |e| {
            matches!(e, Event::Incoming(Packet::SubAck(_)))
        })
        .await;
    }
    disconnect(&client, &mut events).await;
}

/// Publishes [`MESSAGES`] events to `topic` at QoS 1; their ids.
async fn publish(topic: &str, run: &str) -> BTreeSet<String> {
    let (client, mut events) = connect(&format!("e2e-auth-publisher-{run}"), true);
    let ids: Vec<String> = (0..MESSAGES).map(|i| format!("tls-{run}-{i}")).collect();
    let sender = tokio::spawn({
        let (client, topic, ids) = (client.clone(), topic.to_owned(), ids.clone());
        async move {
            for (i, id) in ids.iter().enumerate() {
                let payload =
                    json!({"id": id, "ts": T0 + i as i64, "key": "k", "payload": {"n": i}});
                client
                    .publish(&topic, QoS::AtLeastOnce, false, payload.to_string())
                    .await
                    .unwrap();
            }
        }
    });
    let mut acked = 0;
    drive(&mut events, |e| {
        acked += u32::from(matches!(e, Event::Incoming(Packet::PubAck(_))));
        acked == MESSAGES
    })
    .await;
    sender.await.unwrap();
    disconnect(&client, &mut events).await;
    ids.into_iter().collect()
}

/// A `[[sources]]` entry of kind mqtt, with `extra` settings.
fn source(name: &str, url: &str, filter: &str, client_id: &str, extra: &str) -> String {
    format!(
        r#"
[[sources]]
kind = "mqtt"
name = "{name}"
url = "{url}"
topics = ["{filter}"]
client_id = "{client_id}"
stream = "{STREAM}"
ts_format = "epoch_ms"
{extra}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_reported_and_the_right_ones_ingest_over_tls() {
    let auth_url = service("TRIBUTARY_MQTT_AUTH_URL");
    let tls_url = service("TRIBUTARY_MQTT_TLS_URL");
    let ca_file = service("TRIBUTARY_MQTT_CA_FILE");
    let username = service("TRIBUTARY_MQTT_USERNAME");
    let password = service("TRIBUTARY_MQTT_PASSWORD");
    let run = uuid::Uuid::now_v7().simple().to_string();
    let filter = format!("e2e-auth/{run}/+");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("tributary.log");

    // A wrong password (from a file), and the right one over TLS without the test CA.
    let wrong_file = dir.path().join("wrong-password");
    std::fs::write(&wrong_file, "not-the-password\n").unwrap();
    let failing = format!(
        "{TOPOLOGY}{}{}",
        source(
            "wrong-password",
            &auth_url,
            &filter,
            &format!("e2e-auth-wrong-{run}"),
            &format!(
                "username = \"{username}\"\npassword_file = \"{}\"",
                wrong_file.display()
            ),
        ),
        source(
            "unknown-ca",
            &tls_url,
            &filter,
            &format!("e2e-auth-ca-{run}"),
            &format!("username = \"{username}\"\npassword_env = \"E2E_MQTT_PASSWORD\""),
        ),
    );
    let config = embedded_config(dir.path(), &failing);
    let node = Node::start(&config, &log, &[("E2E_MQTT_PASSWORD", &password)]);
    let body = eventually(&log, async || match node.readyz().await {
        Some((503, body)) if body["checks"]["sources"] == "unavailable" => Ok(body),
        other => Err(format!("/readyz: {other:?}")),
    })
    .await;
    assert_eq!(body["checks"]["log"], "ok", "{body}");
    // Both reasons are logged, each with its source; no password is.
    let reasons = eventually(&log, async || {
        let text = std::fs::read_to_string(&log).unwrap();
        let refusals: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|l| l["message"] == "mqtt source: the broker refused the connection")
            .collect();
        let sources: BTreeSet<&str> = refusals
            .iter()
            .map(|l| l["tributary"]["source"].as_str().unwrap_or_default())
            .collect();
        if sources.len() == 2 {
            Ok(refusals)
        } else {
            Err(format!("refusals logged: {refusals:?}"))
        }
    })
    .await;
    for line in &reasons {
        // ECS: `error` is `error.message`, `source` is `tributary.source`.
        let error = line["error"]["message"].as_str().unwrap();
        match line["tributary"]["source"].as_str().unwrap() {
            "wrong-password" => assert!(
                error.contains("refused the credentials") && error.contains("bad user name"),
                "{line}"
            ),
            "unknown-ca" => assert!(
                error.starts_with("TLS: ") && error.contains("UnknownIssuer"),
                "{line}"
            ),
            other => panic!("an unexpected source {other}: {line}"),
        }
    }
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("not ready: sources: "),
        "the readiness failure is logged"
    );
    assert!(!text.contains("not-the-password") && !text.contains(&password));
    drop(node);

    // The right password (from the environment) over TLS with the test CA.
    let client_id = format!("e2e-auth-tls-{run}");
    session(&client_id, &filter, false).await;
    let ids = publish(&format!("e2e-auth/{run}/sensor"), &run).await;
    let tls = format!(
        "{TOPOLOGY}{}",
        source(
            "tls",
            &tls_url,
            &filter,
            &client_id,
            &format!(
                "username = \"{username}\"\npassword_env = \"E2E_MQTT_PASSWORD\"\nca_file = \"{ca_file}\""
            ),
        )
    );
    let config = embedded_config(dir.path(), &tls);
    let node = Node::start(&config, &log, &[("E2E_MQTT_PASSWORD", &password)]);
    eventually(&log, async || {
        let stored = node.ids().await?;
        let foreign: Vec<&String> = stored.difference(&ids).collect();
        assert!(foreign.is_empty(), "ids never published: {foreign:?}");
        if stored == ids {
            Ok(())
        } else {
            Err(format!("{} of {} in the stream", stored.len(), ids.len()))
        }
    })
    .await;
    let (status, body) = node.readyz().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sources"]["tls"], "running", "{body}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains(&password), "the password is never logged");
    drop(node);
    session(&client_id, &filter, true).await;
}
