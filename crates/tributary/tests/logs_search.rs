//! Tributary's logs in a real search cluster, as an operator ships them: a running
//! `tributary` writes its ECS JSON lines to a file, a real shipper (rsyslog with
//! omelasticsearch, `scripts/log-shipper.sh` with `deploy/opensearch/rsyslog-tributary.conf`)
//! tails it into the OpenSearch node of `scripts/services.sh` (`TRIBUTARY_OPENSEARCH_URL`),
//! where the index template of `deploy/opensearch/` maps the fields. The test makes
//! Tributary log a request served, a request refused (an event without a payload) and an
//! error (a second process stopped by a config file that does not load), then finds each
//! document in the cluster, checks the mapping's types (`@timestamp` a date,
//! `http.response.status_code` and `event.duration` longs, `client.ip` an ip...) and queries
//! that only those types answer (a numeric range, a CIDR term), runs the errors view's query
//! from the saved objects, and checks that every line was indexed, none refused.
//!
//! The saved objects for OpenSearch Dashboards and Kibana (`deploy/opensearch-dashboards/`,
//! `deploy/kibana/`) are checked here too, without a Dashboards or Kibana: well-formed
//! NDJSON, references that resolve, an index pattern that matches the template, and columns
//! and queries that name fields the template maps.

#![allow(clippy::unwrap_used)] // Test helpers outside #[test] functions unwrap too.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::distributed::service;
use common::{KEY, eventually, eventually_within, free_port};
use serde_json::{Value, json};

/// The repository's root.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn template() -> Value {
    let path = repo().join("deploy/opensearch/tributary-logs-template.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Every field the template maps, by its dotted name, with its type (`object` for a field
/// with properties and no type).
fn template_fields() -> BTreeMap<String, String> {
    fn walk(prefix: &str, properties: &Value, out: &mut BTreeMap<String, String>) {
        for (name, field) in properties.as_object().unwrap() {
            let path = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}.{name}")
            };
            let kind = field["type"].as_str().unwrap_or("object");
            out.insert(path.clone(), kind.to_owned());
            if let Some(inner) = field.get("properties") {
                walk(&path, inner, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(
        "",
        &template()["template"]["mappings"]["properties"],
        &mut out,
    );
    out
}

/// The lines of a saved objects file, each parsed (fails on a line that is not JSON).
fn saved_objects(path: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(repo().join(path)).unwrap();
    text.lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {line}"))
        })
        .collect()
}

/// The query of the saved search `id` in a saved objects file (Lucene syntax).
fn saved_query(objects: &[Value], id: &str) -> String {
    let search = objects
        .iter()
        .find(|o| o["type"] == "search" && o["id"] == id)
        .unwrap_or_else(|| panic!("no saved search {id}"));
    let source: Value = serde_json::from_str(
        search["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(source["query"]["language"], "lucene", "{source}");
    source["query"]["query"].as_str().unwrap().to_owned()
}

#[test]
fn the_saved_objects_name_the_templates_index_and_fields() {
    let fields = template_fields();
    let patterns = template()["index_patterns"].clone();
    for file in [
        "deploy/opensearch-dashboards/tributary-logs.ndjson",
        "deploy/kibana/tributary-logs.ndjson",
    ] {
        let objects = saved_objects(file);
        let (summary, objects) = objects.split_last().unwrap();
        assert_eq!(summary["exportedCount"], json!(objects.len()), "{file}");
        assert_eq!(summary["missingRefCount"], 0, "{file}");
        let index_pattern = objects
            .iter()
            .find(|o| o["type"] == "index-pattern")
            .unwrap_or_else(|| panic!("{file}: no index pattern"));
        let attributes = &index_pattern["attributes"];
        assert_eq!(json!([attributes["title"]]), patterns, "{file}");
        assert_eq!(attributes["timeFieldName"], "@timestamp", "{file}");
        assert_eq!(fields["@timestamp"], "date");
        let formats: Value =
            serde_json::from_str(attributes["fieldFormatMap"].as_str().unwrap()).unwrap();
        for name in formats.as_object().unwrap().keys() {
            assert!(
                fields.contains_key(name),
                "{file}: format of unmapped {name}"
            );
        }
        let searches: Vec<&Value> = objects.iter().filter(|o| o["type"] == "search").collect();
        let titles: Vec<&str> = searches
            .iter()
            .map(|s| s["attributes"]["title"].as_str().unwrap())
            .collect();
        assert_eq!(titles, ["Tributary logs", "Tributary errors"], "{file}");
        for search in &searches {
            // Each reference resolves to an object of the file.
            for reference in search["references"].as_array().unwrap() {
                assert!(
                    objects
                        .iter()
                        .any(|o| o["id"] == reference["id"] && o["type"] == reference["type"]),
                    "{file}: dangling reference {reference}"
                );
            }
            let source: Value = serde_json::from_str(
                search["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"]
                    .as_str()
                    .unwrap(),
            )
            .unwrap();
            let index_ref = source["indexRefName"].as_str().unwrap();
            assert!(
                search["references"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|r| r["name"] == index_ref && r["id"] == index_pattern["id"]),
                "{file}: {search}"
            );
            for column in search["attributes"]["columns"].as_array().unwrap() {
                let column = column.as_str().unwrap();
                assert!(
                    fields.contains_key(column),
                    "{file}: unmapped column {column}"
                );
            }
            assert_eq!(
                search["attributes"]["sort"],
                json!([["@timestamp", "desc"]])
            );
        }
        // The errors view's query names mapped fields.
        let errors = saved_query(objects, "tributary-logs-errors");
        assert_eq!(errors, "log.level:ERROR OR _exists_:error.type", "{file}");
        assert_eq!(fields["log.level"], "keyword");
        assert_eq!(fields["error.type"], "keyword");
    }
    // Both files hold the same views.
    let dashboards = saved_objects("deploy/opensearch-dashboards/tributary-logs.ndjson");
    let kibana = saved_objects("deploy/kibana/tributary-logs.ndjson");
    for id in ["tributary-logs-all", "tributary-logs-errors"] {
        assert_eq!(
            saved_query(&dashboards, id),
            saved_query(&kibana, id),
            "{id}"
        );
    }
}

/// A child process killed when dropped, its output in a file.
struct Spawned {
    child: Child,
    stderr: PathBuf,
}

impl Spawned {
    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `tributary args...` with its stdout appended to `log` and stderr to
/// `stderr_name` in `dir`, listening on `port`.
fn tributary(dir: &Path, log: &Path, stderr_name: &str, args: &[&str], port: u16) -> Spawned {
    let stdout = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let stderr = dir.join(stderr_name);
    let child = Command::new(env!("CARGO_BIN_EXE_tributary"))
        .args(args)
        .env("TRIBUTARY_BOOTSTRAP_API_KEY", KEY)
        .env("TRIBUTARY__HTTP__LISTEN", format!("127.0.0.1:{port}"))
        .env_remove("RUST_LOG")
        .stdout(stdout)
        .stderr(std::fs::File::create(&stderr).unwrap())
        .stdin(Stdio::null())
        .spawn()
        .expect("the tributary binary starts");
    Spawned { child, stderr }
}

/// Starts the shipper (`scripts/log-shipper.sh`) on `log`, into indexes `{prefix}YYYY.MM.DD`.
fn shipper(dir: &Path, log: &Path, prefix: &str, url: &str) -> Spawned {
    let stderr = dir.join("shipper.err");
    let child = Command::new(repo().join("scripts/log-shipper.sh"))
        .arg(log)
        .arg(dir.join("shipper"))
        .arg(prefix)
        .env("TRIBUTARY_OPENSEARCH_URL", url)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .stdin(Stdio::null())
        .spawn()
        .expect("scripts/log-shipper.sh starts (scripts/services.sh up installs rsyslog)");
    Spawned { child, stderr }
}

/// The cluster's HTTP API.
struct Cluster {
    url: String,
    client: reqwest::Client,
}

impl Cluster {
    async fn request(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Value {
        let (status, answer) = self.try_request(method.clone(), path, body).await;
        assert!(status.is_success(), "{method} {path}: {status} {answer}");
        answer
    }

    /// `request`, its status and answer whatever the status.
    async fn try_request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (reqwest::StatusCode, Value) {
        let mut request = self
            .client
            .request(method.clone(), format!("{}/{path}", self.url));
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("OpenSearch at {} is unreachable: {e}", self.url));
        let status = response.status();
        (status, response.json().await.unwrap())
    }

    /// The hits of `query` over the test's indexes (refreshed first); none while an index
    /// the shipper has just created has no started shard yet (OpenSearch answers 503, "all
    /// shards failed", until its primary is allocated).
    async fn search(&self, index: &str, query: Value) -> Vec<Value> {
        let (status, answer) = self
            .try_request(reqwest::Method::POST, &format!("{index}/_refresh"), None)
            .await;
        if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
            return Vec::new();
        }
        assert!(status.is_success(), "refresh {index}: {status} {answer}");
        let (status, answer) = self
            .try_request(
                reqwest::Method::POST,
                &format!("{index}/_search"),
                Some(&json!({ "query": query, "size": 100 })),
            )
            .await;
        if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
            return Vec::new();
        }
        assert!(status.is_success(), "search {index}: {status} {answer}");
        answer["hits"]["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|hit| hit["_source"].clone())
            .collect()
    }
}

/// Deletes the test's indexes when dropped (passed or failed).
struct Indexes {
    url: String,
    pattern: String,
}

impl Drop for Indexes {
    fn drop(&mut self) {
        let target = format!("{}/{}", self.url, self.pattern);
        // Drop is not async: a thread of its own with a runtime of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async { reqwest::Client::new().delete(target).send().await })
        })
        .join();
    }
}

/// The type of the field at `path` (dotted) in a `_mapping` answer's `properties`.
fn mapped_type(properties: &Value, path: &str) -> String {
    let mut field = &json!({ "properties": properties });
    for part in path.split('.') {
        field = &field["properties"][part];
    }
    field["type"].as_str().unwrap_or("object").to_owned()
}

#[tokio::test]
async fn logs_reach_opensearch_through_a_real_shipper_with_their_ecs_types() {
    let url = service("TRIBUTARY_OPENSEARCH_URL");
    let cluster = Cluster {
        url: url.clone(),
        client: reqwest::Client::new(),
    };
    // The template, as an operator installs it.
    let installed = cluster
        .request(
            reqwest::Method::PUT,
            "_index_template/tributary-logs",
            Some(&template()),
        )
        .await;
    assert_eq!(installed["acknowledged"], true, "{installed}");

    let run = uuid::Uuid::now_v7().simple().to_string();
    let prefix = format!("tributary-logs-test-{run}-");
    let index = format!("{prefix}*");
    let _cleanup = Indexes {
        url: url.clone(),
        pattern: index.clone(),
    };
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("tributary.log");
    let shipper = shipper(dir.path(), &log, &prefix, &url);

    // A node in the embedded mode: a request served, a request refused.
    let config = common::embedded_config(
        dir.path(),
        "\n[[streams]]\nname = \"events\"\npartitions = 1\n",
    );
    let port = free_port();
    let config_arg = config.to_str().unwrap();
    let args = [
        "run",
        "--config",
        config_arg,
        "--role",
        "all",
        "--log-format",
        "json",
    ];
    let mut node = tributary(dir.path(), &log, "node.err", &args, port);
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    eventually(&log, async || {
        match client.get(format!("{base}/readyz")).send().await {
            Ok(r) if r.status() == 200 => Ok(()),
            other => Err(format!("not ready: {other:?}")),
        }
    })
    .await;
    let served_id = format!("served-{run}");
    let served = client
        .get(format!("{base}/v1/streams"))
        .bearer_auth(KEY)
        .header("x-request-id", &served_id)
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), 200);
    let refused_id = format!("refused-{run}");
    let refused = client
        .post(format!("{base}/v1/streams/events/events"))
        .bearer_auth(KEY)
        .header("x-request-id", &refused_id)
        .json(&json!([{ "key": "k" }]))
        .send()
        .await
        .unwrap();
    let refused_status = refused.status().as_u16();
    assert!((400..500).contains(&refused_status), "{refused_status}");
    let _ = node.child.kill();
    let _ = node.child.wait();

    // An error: a process whose config file does not load (an unknown key).
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[http]\nlisten_adress = \"127.0.0.1:1\"\n").unwrap();
    let bad_args = [
        "run",
        "--config",
        bad.to_str().unwrap(),
        "--log-format",
        "json",
    ];
    let mut failed = tributary(dir.path(), &log, "bad.err", &bad_args, free_port());
    let status = eventually(&log, async || {
        failed
            .child
            .try_wait()
            .unwrap()
            .ok_or_else(|| "the process with a bad config still runs".to_owned())
    })
    .await;
    assert!(!status.success(), "stderr: {}", failed.stderr());
    assert!(
        failed.stderr().contains("listen_adress"),
        "the error is on stderr too: {}",
        failed.stderr()
    );

    // Every line of the file ends up in the cluster, none refused by the mapping.
    let lines = std::fs::read_to_string(&log).unwrap().lines().count();
    assert!(lines >= 4, "{}", std::fs::read_to_string(&log).unwrap());
    let rejected = dir.path().join("shipper/rejected.json");
    let docs = eventually_within(&log, Duration::from_secs(120), async || {
        if let Ok(text) = std::fs::read_to_string(&rejected) {
            panic!("the cluster refused lines: {text}");
        }
        // (A pattern that matches no index yet finds nothing.)
        let hits = cluster.search(&index, json!({ "match_all": {} })).await;
        if hits.len() == lines {
            Ok(hits)
        } else {
            tokio::time::sleep(Duration::from_millis(250)).await;
            Err(format!(
                "{} of {lines} lines indexed; shipper stderr: {}",
                hits.len(),
                shipper.stderr()
            ))
        }
    })
    .await;
    assert!(docs.iter().all(|d| d["ecs"]["version"] == "8.11.0"));

    // The mapping has the template's types, not dynamic guesses.
    let mapping = cluster
        .request(reqwest::Method::GET, &format!("{index}/_mapping"), None)
        .await;
    let (name, mapping) = mapping.as_object().unwrap().iter().next().unwrap();
    assert!(name.starts_with(&prefix), "{name}");
    let properties = &mapping["mappings"]["properties"];
    for (field, kind) in [
        ("@timestamp", "date"),
        ("message", "text"),
        ("log.level", "keyword"),
        ("log.logger", "keyword"),
        ("ecs.version", "keyword"),
        ("service.name", "keyword"),
        ("process.pid", "long"),
        ("http.request.method", "keyword"),
        ("http.request.id", "keyword"),
        ("http.response.status_code", "long"),
        ("url.path", "keyword"),
        ("event.duration", "long"),
        ("event.outcome", "keyword"),
        ("client.ip", "ip"),
        ("client.port", "long"),
        ("trace.id", "keyword"),
        ("span.id", "keyword"),
        ("error", "object"),
        ("error.message", "text"),
        ("error.type", "keyword"),
    ] {
        assert_eq!(
            mapped_type(properties, field),
            kind,
            "{field}: {properties}"
        );
    }

    // The request served: found by its id, and by queries only the right types answer.
    let served = cluster
        .search(
            &index,
            json!({ "bool": { "filter": [
                { "term": { "http.request.id": served_id } },
                { "term": { "http.response.status_code": 200 } },
                { "range": { "event.duration": { "gt": 0 } } },
                { "term": { "client.ip": "127.0.0.0/8" } },
                { "range": { "@timestamp": { "gte": "now-10m", "lte": "now+1m" } } },
            ] } }),
        )
        .await;
    assert_eq!(served.len(), 1, "{served:?}");
    let line = &served[0];
    assert_eq!(line["message"], "request served", "{line}");
    assert_eq!(line["url"]["path"], "/v1/streams", "{line}");
    assert_eq!(line["event"]["outcome"], "success", "{line}");

    // The request refused: a 4xx with an error object.
    let refused = cluster
        .search(
            &index,
            json!({ "bool": { "filter": [
                { "term": { "http.request.id": refused_id } },
                { "range": { "http.response.status_code": { "gte": 400, "lt": 500 } } },
                { "exists": { "field": "error.type" } },
            ] } }),
        )
        .await;
    assert_eq!(refused.len(), 1, "{refused:?}");
    let line = &refused[0];
    assert_eq!(line["message"], "request refused", "{line}");
    assert_eq!(
        line["http"]["response"]["status_code"],
        json!(refused_status)
    );
    assert!(line["error"]["message"].is_string(), "{line}");

    // The error: the config that did not load, at ERROR, its message searchable as text.
    let errors = cluster
        .search(
            &index,
            json!({ "bool": { "filter": [
                { "term": { "error.type": "config" } },
                { "term": { "log.level": "ERROR" } },
                { "match": { "error.message": "listen_adress" } },
            ] } }),
        )
        .await;
    assert_eq!(errors.len(), 1, "{errors:?}");
    let line = &errors[0];
    assert_eq!(line["message"], "tributary stopped on an error", "{line}");

    // The errors view of the saved objects finds the refused request and the error, and
    // not the request served.
    let objects = saved_objects("deploy/opensearch-dashboards/tributary-logs.ndjson");
    let view = saved_query(&objects, "tributary-logs-errors");
    let in_view = cluster
        .search(&index, json!({ "query_string": { "query": view } }))
        .await;
    let has = |f: &dyn Fn(&Value) -> bool| in_view.iter().any(f);
    assert!(
        has(&|d| d["http"]["request"]["id"] == refused_id.as_str()),
        "{in_view:?}"
    );
    assert!(has(&|d| d["error"]["type"] == "config"), "{in_view:?}");
    assert!(
        !has(&|d| d["http"]["request"]["id"] == served_id.as_str()),
        "{in_view:?}"
    );
    assert!(
        in_view
            .iter()
            .all(|d| d["log"]["level"] == "ERROR" || d["error"]["type"].is_string()),
        "{in_view:?}"
    );
}
