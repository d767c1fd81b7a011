//! Issued API keys through the real binary in the embedded mode: a key issued with the
//! bootstrap admin key works with its scope only, survives a restart (it is stored in the
//! SQLite database, as a hash), and stops working once revoked.

#![allow(clippy::unwrap_used)] // Test helpers outside #[test] functions unwrap too.

mod common;

use reqwest::StatusCode;
use serde_json::{Value, json};

use common::{KEY, Node, TOPOLOGY};

async fn call(
    node: &Node,
    method: reqwest::Method,
    path: &str,
    bearer: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    node.call(method, path, bearer, body).await
}

#[tokio::test(flavor = "multi_thread")]
async fn issued_keys_survive_a_restart_and_stop_when_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::embedded_config(dir.path(), TOPOLOGY);
    let log = dir.path().join("node.log");
    let mut node = Node::start(&config, &[], &log).await;

    let (status, issued) = call(
        &node,
        reqwest::Method::POST,
        "/v1/keys",
        KEY,
        Some(json!({"scopes": ["read"], "description": "e2e"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{issued}");
    let key = issued["key"].as_str().unwrap().to_owned();
    let id = issued["id"].as_str().unwrap().to_owned();
    let (status, _) = call(&node, reqwest::Method::GET, "/v1/streams", &key, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, problem) = call(
        &node,
        reqwest::Method::POST,
        "/v1/streams/events/events",
        &key,
        Some(json!({"payload": {}})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");

    // Only the hash is on disk (the database and its write-ahead log).
    node.terminate();
    node.wait_for_exit().await;
    // `trb_<id>_<secret>`: the id holds no `_`, the secret may.
    let secret = key["trb_".len()..].split_once('_').unwrap().1.as_bytes();
    for file in ["tributary.db", "tributary.db-wal"] {
        let bytes = std::fs::read(dir.path().join(file)).unwrap_or_default();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret),
            "the secret is stored in {file}"
        );
    }

    let node = Node::start(&config, &[], &log).await;
    let (status, _) = call(&node, reqwest::Method::GET, "/v1/streams", &key, None).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the key did not survive the restart"
    );
    let (status, _) = call(
        &node,
        reqwest::Method::DELETE,
        &format!("/v1/keys/{id}"),
        KEY,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, problem) = call(&node, reqwest::Method::GET, "/v1/streams", &key, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{problem}");
}

/// The operator issues a new tenant's first key with `tributary keys create`: it sees its
/// tenant's stream and nothing of the default tenant's, the default tenant's admin cannot
/// list or revoke it, and `tributary keys revoke` stops it.
#[tokio::test(flavor = "multi_thread")]
async fn the_keys_command_issues_a_new_tenants_first_key() {
    let dir = tempfile::tempdir().unwrap();
    let topology = format!(
        "{TOPOLOGY}\n[[streams]]\nname = \"beta_events\"\npartitions = 1\ntenant = \"beta\"\n"
    );
    let config = common::embedded_config(dir.path(), &topology);
    let log = dir.path().join("node.log");
    let node = Node::start(&config, &[], &log).await;

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tributary"))
        .args(common::args(
            "keys",
            &config,
            &["create", "--tenant", "beta", "--scope", "read,ingest"],
        ))
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let key = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    assert!(key.starts_with("trb_"), "{key}");
    let id = key["trb_".len()..].split_once('_').unwrap().0.to_owned();

    let (status, streams) = call(&node, reqwest::Method::GET, "/v1/streams", &key, None).await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = streams["streams"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["beta_events"], "{streams}");
    let (status, _) = call(
        &node,
        reqwest::Method::GET,
        "/v1/streams/events/events",
        &key,
        None,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "another tenant's stream is hidden"
    );
    let (status, listed) = call(&node, reqwest::Method::GET, "/v1/keys", KEY, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!listed.to_string().contains(&id), "{listed}");
    let (status, _) = call(
        &node,
        reqwest::Method::DELETE,
        &format!("/v1/keys/{id}"),
        KEY,
        None,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "the default admin cannot revoke beta's key"
    );

    let listing = std::process::Command::new(env!("CARGO_BIN_EXE_tributary"))
        .args(common::args("keys", &config, &["list", "--tenant", "beta"]))
        .output()
        .unwrap();
    let listing = String::from_utf8(listing.stdout).unwrap();
    assert!(
        listing.starts_with(&format!("{id}\tactive\tingest read")),
        "{listing}"
    );

    let revoked = std::process::Command::new(env!("CARGO_BIN_EXE_tributary"))
        .args(common::args("keys", &config, &["revoke", &id]))
        .output()
        .unwrap();
    assert!(revoked.status.success(), "{revoked:?}");
    // Another process revoked it: this node may accept it for its key cache's lifetime.
    node.eventually(async || {
        match call(&node, reqwest::Method::GET, "/v1/streams", &key, None)
            .await
            .0
        {
            StatusCode::UNAUTHORIZED => Ok(()),
            other => Err(format!("still {other}")),
        }
    })
    .await;
}
