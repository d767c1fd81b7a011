//! Tenants: a credential of one tenant never reads, writes, lists or learns of another
//! tenant's streams, events, pipelines, results, dead letters or keys, through any `/v1`
//! route or GraphQL field. Two tests walk the whole surface (the routes of
//! [`tributary_gateway::routes`], the fields of the schema's introspection): a route or
//! field added later fails them until it is covered here. The others check that each
//! tenant names its streams in a namespace of its own ([`tributary_gateway::catalog`],
//! "Names").
//!
//! Two tenants over the harness's real embedded adapters: `default` (streams `t` and
//! `orders`, pipelines `clicks-per-minute` and `orders-per-minute`, the configured admin
//! key [`KEY`]) and `beta` (stream `b-events`, pipeline `b-per-minute`, an issued admin
//! key put into the SQLite key store).

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tributary_connectors::keys::SqlKeyStore;
use tributary_connectors::streams::SqlStreamStore;
use tributary_core::Timestamp;
use tributary_core::ports::{
    DocumentStore, KeyStore, Log, Scope, StoredKey, StoredStream, StreamOrigin, StreamStore,
};
use tributary_gateway::catalog::{MAX_TAGGED_NAME_LEN, stream_id};
use tributary_gateway::{ApiKeys, StreamInfo};

use common::{Harness, KEY, body_json, config_stream, harness, pipeline, stream};

/// The other tenant.
const BETA: &str = "beta";
/// Its stream and pipeline.
const B_STREAM: &str = "b-events";
const B_PIPELINE: &str = "b-per-minute";
/// A name no tenant has.
const NOBODY: &str = "zz-nobody";

/// An admin key of `beta`, as issued keys look (`trb_<24 hex>_<secret>`).
const B_ID: &str = "b0b0b0b0b0b0b0b0b0b0b0b0";
fn beta_key() -> String {
    format!("trb_{B_ID}_{}", URL_SAFE_NO_PAD.encode([7_u8; 32]))
}

/// The harness with the `beta` tenant added (its stream, its pipeline, its admin key) and
/// issued keys accepted.
async fn two_tenants() -> Harness {
    let mut h = harness().await;
    let info = StreamInfo {
        partitions: 1,
        description: Some("beta's secret stream".into()),
        tenant: BETA.into(),
    };
    h.log
        .ensure_stream(&stream(B_STREAM), info.partitions)
        .await
        .unwrap();
    SqlStreamStore::new(&h.store)
        .upsert_config(&config_stream(&stream(B_STREAM), &info))
        .await
        .unwrap();
    h.state.streams.refresh().await.unwrap();
    let mut pipelines = (*h.state.pipelines).clone();
    pipelines.push(pipeline(B_PIPELINE, B_STREAM));
    h.state.pipelines = Arc::new(pipelines);
    let store = Arc::new(SqlKeyStore::new(&h.store));
    store
        .create(&StoredKey {
            id: B_ID.into(),
            secret_hash: Sha256::digest([7_u8; 32]).into(),
            scopes: BTreeSet::from([Scope::Admin]),
            tenant: BETA.into(),
            description: Some("beta admin".into()),
            created_at: Timestamp::now(),
            expires_at: None,
            revoked_at: None,
        })
        .await
        .unwrap();
    h.state.auth = ApiKeys::new([KEY]).with_store(store, Duration::from_secs(5));
    h.router = tributary_gateway::router(h.state.clone());
    h
}

async fn send(
    h: &Harness,
    method: Method,
    uri: &str,
    bearer: &str,
    body: Option<&str>,
) -> Response {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {bearer}"))
        .header(header::CONTENT_TYPE, "application/json");
    let body = body.map_or_else(Body::empty, |b| Body::from(b.to_owned()));
    h.send(request.body(body).unwrap()).await
}

async fn json_of(
    h: &Harness,
    method: Method,
    uri: &str,
    bearer: &str,
    body: Option<&str>,
) -> (StatusCode, Value) {
    let response = send(h, method, uri, bearer, body).await;
    let status = response.status();
    (status, body_json(response).await)
}

/// `text` (JSON) with the quoted name `name` and the path segment `name` replaced by
/// `NAME`.
fn scrub(text: &str, name: &str) -> String {
    text.replace(&format!("\\\"{name}\\\""), "\\\"NAME\\\"")
        .replace(&format!("\"{name}\""), "\"NAME\"")
        .replace(&format!("/{name}/"), "/NAME/")
}

/// Asserts that `template` with `NAME` replaced by `foreign` (another tenant's name)
/// answers `bearer` exactly as it does with [`NOBODY`]: a 404, the same problem but for
/// the name.
async fn same_as_unknown(
    h: &Harness,
    method: Method,
    template: &str,
    foreign: &str,
    bearer: &str,
    body: Option<&str>,
) {
    let uri = template.replace("NAME", foreign);
    let (status, problem) = json_of(h, method.clone(), &uri, bearer, body).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{method} {uri}: {problem}");
    let unknown_uri = template.replace("NAME", NOBODY);
    let (unknown_status, unknown) = json_of(h, method.clone(), &unknown_uri, bearer, body).await;
    assert_eq!(unknown_status, StatusCode::NOT_FOUND);
    assert_eq!(
        scrub(&problem.to_string(), foreign),
        scrub(&unknown.to_string(), NOBODY),
        "{method} {uri} tells more than an unknown name"
    );
}

/// The `member` arrays' `field` values of a JSON answer.
fn names(body: &Value, member: &str, field: &str) -> BTreeSet<String> {
    body[member]
        .as_array()
        .unwrap_or_else(|| panic!("no {member} in {body}"))
        .iter()
        .map(|item| item[field].as_str().unwrap().to_owned())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// What each tenant wrote: an event each, a refused request each (a dead letter), a key
/// each.
struct Written {
    /// The event id of `default`'s, in stream `t`.
    a_event: String,
    /// The event id of `beta`'s, in `b-events`.
    b_event: String,
    /// A `read` key issued by `default`'s admin, and its id.
    a_key: (String, String),
    /// A `read` key issued by `beta`'s admin, and its id.
    b_key: (String, String),
}

async fn ingest(h: &Harness, stream: &str, bearer: &str, body: &str) -> (StatusCode, Value) {
    json_of(
        h,
        Method::POST,
        &format!("/v1/streams/{stream}/events"),
        bearer,
        Some(body),
    )
    .await
}

async fn issue(h: &Harness, bearer: &str) -> (String, String) {
    let (status, body) = json_of(
        h,
        Method::POST,
        "/v1/keys",
        bearer,
        Some(r#"{"scopes": ["read", "ingest"]}"#),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    (
        body["key"].as_str().unwrap().to_owned(),
        body["id"].as_str().unwrap().to_owned(),
    )
}

async fn write_both(h: &Harness) -> Written {
    let b = beta_key();
    let (status, a) = ingest(
        h,
        "t",
        KEY,
        r#"{"key": "a", "payload": {"who": "default"}}"#,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{a}");
    let (status, bb) = ingest(
        h,
        B_STREAM,
        &b,
        r#"{"key": "b", "payload": {"who": "beta"}}"#,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{bb}");
    // Archived into the document store, as the engine does.
    let mut archived = h.events_in_log("t", common::PARTITIONS, 1).await;
    archived.extend(h.events_in_log(B_STREAM, 1, 1).await);
    assert_eq!(archived.len(), 2);
    h.store.put_events(&archived).await.unwrap();
    // Malformed bodies: one dead letter each.
    assert_eq!(
        ingest(h, "t", KEY, "{oops").await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        ingest(h, B_STREAM, &b, "{beta-oops").await.0,
        StatusCode::BAD_REQUEST
    );
    let a_key = issue(h, KEY).await;
    let b_key = issue(h, &b).await;
    Written {
        a_event: a["ids"][0].as_str().unwrap().to_owned(),
        b_event: bb["ids"][0].as_str().unwrap().to_owned(),
        a_key,
        b_key,
    }
}

/// The dead letters' streams and raw bodies as `bearer` lists them.
async fn dead_letters_seen(h: &Harness, bearer: &str) -> Vec<(String, String)> {
    let (status, body) = json_of(h, Method::GET, "/v1/dead-letters?limit=1", bearer, None).await;
    assert_eq!(status, StatusCode::OK);
    let mut seen: Vec<(String, String)> = body["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["stream"].as_str().unwrap().to_owned(),
                l["raw"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    // Pages of one: the cursor walks past the other tenant's letters.
    let mut cursor = body["next_cursor"].as_str().map(str::to_owned);
    while let Some(next) = cursor {
        let (_, body) = json_of(
            h,
            Method::GET,
            &format!("/v1/dead-letters?limit=1&cursor={next}"),
            bearer,
            None,
        )
        .await;
        for l in body["dead_letters"].as_array().unwrap() {
            seen.push((
                l["stream"].as_str().unwrap().to_owned(),
                l["raw"].as_str().unwrap().to_owned(),
            ));
        }
        cursor = body["next_cursor"].as_str().map(str::to_owned);
    }
    seen
}

#[tokio::test]
async fn every_rest_route_hides_the_other_tenants_data() {
    let h = two_tenants().await;
    let written = write_both(&h).await;
    let b = beta_key();
    // Each tenant's admin, and each tenant's issued read/ingest key.
    let a_creds = [KEY.to_owned(), written.a_key.0.clone()];
    let b_creds = [b.clone(), written.b_key.0.clone()];

    let mut covered = Vec::new();
    for (method, path) in tributary_gateway::routes() {
        match (method.as_str(), path) {
            ("GET", "/healthz" | "/readyz" | "/metrics") => {}
            ("GET", "/openapi.json") => {
                let text = common::body_text(
                    h.send(Request::get(path).body(Body::empty()).unwrap())
                        .await,
                )
                .await;
                assert!(text.contains("PipelineResult_clicks-per-minute"));
                assert!(
                    !text.contains(B_PIPELINE),
                    "the open document names beta's pipeline"
                );
            }
            ("GET", "/v1/streams") => {
                for a in &a_creds {
                    let (_, body) = json_of(&h, Method::GET, path, a, None).await;
                    assert_eq!(
                        names(&body, "streams", "name"),
                        set(&["orders", "t"]),
                        "{body}"
                    );
                }
                for bc in &b_creds {
                    let (_, body) = json_of(&h, Method::GET, path, bc, None).await;
                    assert_eq!(names(&body, "streams", "name"), set(&[B_STREAM]), "{body}");
                }
            }
            ("POST", "/v1/streams") => {
                // Beta's admin creates a stream of beta's: the other tenant does not see it.
                let created = r#"{"name": "b-created", "partitions": 1}"#;
                let (status, body) = json_of(&h, Method::POST, path, &b, Some(created)).await;
                assert_eq!(status, StatusCode::CREATED, "{body}");
                let (_, listed) = json_of(&h, Method::GET, "/v1/streams", &b, None).await;
                assert_eq!(
                    names(&listed, "streams", "name"),
                    set(&[B_STREAM, "b-created"])
                );
                same_as_unknown(&h, Method::GET, "/v1/streams/NAME", "b-created", KEY, None).await;
                // Each tenant names its streams: the name is still free for the other.
                let (status, body) = json_of(&h, Method::POST, path, KEY, Some(created)).await;
                assert_eq!(status, StatusCode::CREATED, "{body}");
                for bearer in [KEY, b.as_str()] {
                    let uri = "/v1/streams/b-created";
                    let response = send(&h, Method::DELETE, uri, bearer, None).await;
                    assert_eq!(response.status(), StatusCode::NO_CONTENT);
                }
            }
            ("GET", "/v1/streams/{stream}") => {
                let template = "/v1/streams/NAME";
                for a in &a_creds {
                    same_as_unknown(&h, Method::GET, template, B_STREAM, a, None).await;
                }
                for bc in &b_creds {
                    same_as_unknown(&h, Method::GET, template, "t", bc, None).await;
                    let uri = format!("/v1/streams/{B_STREAM}");
                    let (status, body) = json_of(&h, Method::GET, &uri, bc, None).await;
                    assert_eq!(status, StatusCode::OK);
                    assert_eq!(body["name"], B_STREAM);
                }
            }
            ("PATCH", "/v1/streams/{stream}") => {
                let template = "/v1/streams/NAME";
                let patch = Some(r#"{"schema": {"type": "object"}}"#);
                same_as_unknown(&h, Method::PATCH, template, B_STREAM, KEY, patch).await;
                same_as_unknown(&h, Method::PATCH, template, "t", &b, patch).await;
            }
            ("DELETE", "/v1/streams/{stream}") => {
                let template = "/v1/streams/NAME";
                same_as_unknown(&h, Method::DELETE, template, B_STREAM, KEY, None).await;
                same_as_unknown(&h, Method::DELETE, template, "t", &b, None).await;
            }
            ("POST", "/v1/streams/{stream}/events") => {
                let template = "/v1/streams/NAME/events";
                for a in &a_creds {
                    same_as_unknown(
                        &h,
                        Method::POST,
                        template,
                        B_STREAM,
                        a,
                        Some(r#"{"payload": {}}"#),
                    )
                    .await;
                    // A refused body is not kept as a letter of the foreign stream either.
                    same_as_unknown(&h, Method::POST, template, B_STREAM, a, Some("{junk")).await;
                }
                for bc in &b_creds {
                    same_as_unknown(
                        &h,
                        Method::POST,
                        template,
                        "t",
                        bc,
                        Some(r#"{"payload": {}}"#),
                    )
                    .await;
                }
                // Nothing but beta's own event reached its log.
                let events = h.events_in_log(B_STREAM, 1, 2).await;
                assert_eq!(events.len(), 1);
                assert_eq!(events[0].id.as_str(), written.b_event);
            }
            ("GET", "/v1/streams/{stream}/events") => {
                let template = "/v1/streams/NAME/events";
                for a in &a_creds {
                    same_as_unknown(&h, Method::GET, template, B_STREAM, a, None).await;
                }
                for bc in &b_creds {
                    same_as_unknown(&h, Method::GET, template, "t", bc, None).await;
                    let (status, body) = json_of(
                        &h,
                        Method::GET,
                        &format!("/v1/streams/{B_STREAM}/events"),
                        bc,
                        None,
                    )
                    .await;
                    assert_eq!(status, StatusCode::OK);
                    assert_eq!(names(&body, "events", "id"), set(&[&written.b_event]));
                }
                let (_, body) = json_of(&h, Method::GET, "/v1/streams/t/events", KEY, None).await;
                assert_eq!(names(&body, "events", "id"), set(&[&written.a_event]));
            }
            ("GET", "/v1/pipelines") => {
                for a in &a_creds {
                    let (_, body) = json_of(&h, Method::GET, path, a, None).await;
                    assert_eq!(
                        names(&body, "pipelines", "name"),
                        set(&["clicks-per-minute", "orders-per-minute"])
                    );
                }
                for bc in &b_creds {
                    let (_, body) = json_of(&h, Method::GET, path, bc, None).await;
                    assert_eq!(names(&body, "pipelines", "name"), set(&[B_PIPELINE]));
                }
            }
            ("GET", "/v1/pipelines/{name}/results") => {
                let template = "/v1/pipelines/NAME/results";
                for a in &a_creds {
                    same_as_unknown(&h, Method::GET, template, B_PIPELINE, a, None).await;
                    let (status, _) = json_of(
                        &h,
                        Method::GET,
                        "/v1/pipelines/clicks-per-minute/results",
                        a,
                        None,
                    )
                    .await;
                    assert_eq!(status, StatusCode::OK);
                }
                for bc in &b_creds {
                    same_as_unknown(&h, Method::GET, template, "clicks-per-minute", bc, None).await;
                    let (status, body) = json_of(
                        &h,
                        Method::GET,
                        &format!("/v1/pipelines/{B_PIPELINE}/results"),
                        bc,
                        None,
                    )
                    .await;
                    assert_eq!(status, StatusCode::OK, "{body}");
                }
            }
            ("GET", "/v1/dead-letters") => {
                for a in &a_creds {
                    assert_eq!(
                        dead_letters_seen(&h, a).await,
                        [("t".to_owned(), "{oops".to_owned())]
                    );
                }
                for bc in &b_creds {
                    assert_eq!(
                        dead_letters_seen(&h, bc).await,
                        [(B_STREAM.to_owned(), "{beta-oops".to_owned())]
                    );
                }
            }
            ("POST", "/v1/keys") => {
                // A key issued by beta's admin is beta's, and sees only beta's streams.
                let (status, body) =
                    json_of(&h, Method::POST, path, &b, Some(r#"{"scopes": ["read"]}"#)).await;
                assert_eq!(status, StatusCode::CREATED);
                assert_eq!(body["tenant"], BETA);
                let (_, streams) = json_of(
                    &h,
                    Method::GET,
                    "/v1/streams",
                    body["key"].as_str().unwrap(),
                    None,
                )
                .await;
                assert_eq!(names(&streams, "streams", "name"), set(&[B_STREAM]));
            }
            ("GET", "/v1/keys") => {
                let (_, body) = json_of(&h, Method::GET, path, KEY, None).await;
                let ids = names(&body, "keys", "id");
                assert!(ids.contains(&written.a_key.1), "{body}");
                assert!(
                    !ids.contains(&written.b_key.1) && !ids.contains(B_ID),
                    "{body}"
                );
                let (_, body) = json_of(&h, Method::GET, path, &b, None).await;
                assert!(
                    names(&body, "keys", "tenant").iter().all(|t| t == BETA),
                    "{body}"
                );
                assert!(names(&body, "keys", "id").contains(&written.b_key.1));
            }
            ("DELETE", "/v1/keys/{id}") => {
                // Another tenant's key: the 404 of an unknown id, and it still works.
                let uri = format!("/v1/keys/{}", written.b_key.1);
                let (status, problem) = json_of(&h, Method::DELETE, &uri, KEY, None).await;
                assert_eq!(status, StatusCode::NOT_FOUND);
                let (_, unknown) = json_of(
                    &h,
                    Method::DELETE,
                    "/v1/keys/0123456789abcdef01234567",
                    KEY,
                    None,
                )
                .await;
                assert_eq!(
                    problem
                        .to_string()
                        .replace(&written.b_key.1, "0123456789abcdef01234567"),
                    unknown.to_string()
                );
                let (status, _) =
                    json_of(&h, Method::GET, "/v1/streams", &written.b_key.0, None).await;
                assert_eq!(status, StatusCode::OK);
                let response = send(
                    &h,
                    Method::DELETE,
                    &format!("/v1/keys/{}", written.a_key.1),
                    &b,
                    None,
                )
                .await;
                assert_eq!(response.status(), StatusCode::NOT_FOUND);
                // Its own: revoked.
                let response = send(&h, Method::DELETE, &uri, &b, None).await;
                assert_eq!(response.status(), StatusCode::NO_CONTENT);
                let response = send(&h, Method::GET, "/v1/streams", &written.b_key.0, None).await;
                assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            }
            (method, path) => panic!("{method} {path} is not covered by the tenant isolation test"),
        }
        covered.push(format!("{method} {path}"));
    }
    assert!(covered.len() >= 17, "{covered:?}");
}

/// `default` and `beta` each create a stream `clicks` and a pipeline over it, ingest into
/// it, and see only their own: over REST and GraphQL, the stream, its events, its raw
/// events, its dead letters and its pipeline's results, always under the name `clicks`.
#[tokio::test]
async fn each_tenant_names_its_streams() {
    let mut h = two_tenants().await;
    let b = beta_key();
    let both = [(KEY.to_owned(), "default"), (b.clone(), BETA)];
    let clicks = r#"{"name": "clicks", "partitions": 1}"#;
    for (bearer, _) in &both {
        let response = send(&h, Method::POST, "/v1/streams", bearer, Some(clicks)).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        assert_eq!(response.headers()[header::LOCATION], "/v1/streams/clicks");
        assert_eq!(body_json(response).await["name"], "clicks");
    }
    // A 409 only ever concerns the caller's own names.
    for (bearer, _) in &both {
        let (status, body) = json_of(&h, Method::POST, "/v1/streams", bearer, Some(clicks)).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
    }
    // The default tenant's stream is identified by its name (its topic, its raw events and
    // dead letters are named as before tenants had namespaces); beta's by its name and
    // beta's tag.
    let store = SqlStreamStore::new(&h.store);
    let a_id = stream("clicks");
    let b_id = stream_id(BETA, &a_id).unwrap();
    assert_eq!(stream_id("default", &a_id).unwrap(), a_id);
    assert!(b_id.as_str().starts_with("clicks__"), "{b_id}");
    for (id, tenant) in [(&a_id, "default"), (&b_id, BETA)] {
        let stored = store.get(id).await.unwrap().unwrap();
        assert_eq!(stored.tenant, tenant);
    }

    // Each ingests its own event, and a body it refuses (a dead letter).
    let mut ids = Vec::new();
    for (bearer, tenant) in &both {
        let event = json!({"key": tenant, "payload": {"who": tenant}}).to_string();
        let (status, body) = ingest(&h, "clicks", bearer, &event).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        ids.push(body["ids"][0].as_str().unwrap().to_owned());
        let junk = format!("{{junk of {tenant}");
        assert_eq!(
            ingest(&h, "clicks", bearer, &junk).await.0,
            StatusCode::BAD_REQUEST
        );
    }
    // Into two topics, archived as the engine does.
    let mut archived = Vec::new();
    for (id, event_id) in [(&a_id, &ids[0]), (&b_id, &ids[1])] {
        let events = h.events_in_log(id.as_str(), 1, 1).await;
        assert_eq!(events.len(), 1, "{id}");
        assert_eq!(&events[0].id.as_str(), event_id);
        archived.extend(events);
    }
    h.store.put_events(&archived).await.unwrap();

    // Pipelines over each one's `clicks`, with a result each.
    let mut pipelines = (*h.state.pipelines).clone();
    pipelines.push(pipeline("a-clicks", a_id.as_str()));
    pipelines.push(pipeline("b-clicks", b_id.as_str()));
    h.state.pipelines = Arc::new(pipelines);
    h.router = tributary_gateway::router(h.state.clone());
    let start = Timestamp::parse_rfc3339("2026-12-01T00:00:00Z").unwrap();
    for (pipeline, id, key) in [("a-clicks", &a_id, "default"), ("b-clicks", &b_id, BETA)] {
        let row = common::count_row(pipeline, start.millis(), key, 1);
        let end = row.window_end;
        common::commit_results(&h, pipeline, id.as_str(), &[row], end).await;
    }

    for ((bearer, tenant), (own_id, pipeline)) in both
        .iter()
        .zip([(&ids[0], "a-clicks"), (&ids[1], "b-clicks")])
    {
        let (_, listed) = json_of(&h, Method::GET, "/v1/streams", bearer, None).await;
        assert!(
            names(&listed, "streams", "name").contains("clicks"),
            "{listed}"
        );
        let uri = "/v1/streams/clicks/events";
        let (status, page) = json_of(&h, Method::GET, uri, bearer, None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(names(&page, "events", "id"), set(&[own_id]));
        assert_eq!(names(&page, "events", "stream"), set(&["clicks"]));
        let letters = dead_letters_seen(&h, bearer).await;
        assert_eq!(
            letters,
            [("clicks".to_owned(), format!("{{junk of {tenant}"))]
        );
        let (_, listed) = json_of(&h, Method::GET, "/v1/pipelines", bearer, None).await;
        let own = listed["pipelines"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == pipeline)
            .unwrap_or_else(|| panic!("{tenant} does not see {pipeline}: {listed}"));
        assert_eq!(own["sources"], json!(["clicks"]));
        let uri = format!("/v1/pipelines/{pipeline}/results");
        let (status, results) = json_of(&h, Method::GET, &uri, bearer, None).await;
        assert_eq!(status, StatusCode::OK, "{results}");
        assert_eq!(names(&results, "results", "key"), set(&[tenant]));

        let query = format!(
            "{{ streams {{ name }} events(stream: \"clicks\") {{ events {{ id stream }} }} \
             deadLetters {{ dead_letters {{ stream raw }} }} pipelines {{ name sources }} \
             pipelineResults(pipeline: \"{pipeline}\") {{ results }} }}"
        );
        let data = &graphql(&h, bearer, &query).await["data"];
        assert!(names(data, "streams", "name").contains("clicks"), "{data}");
        assert_eq!(names(&data["events"], "events", "id"), set(&[own_id]));
        assert_eq!(names(&data["events"], "events", "stream"), set(&["clicks"]));
        assert_eq!(
            names(&data["deadLetters"], "dead_letters", "raw"),
            set(&[&format!("{{junk of {tenant}")])
        );
        assert!(
            data["pipelines"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == pipeline && p["sources"] == json!(["clicks"])),
            "{data}"
        );
        assert_eq!(
            data["pipelineResults"]["results"][0]["key"], *tenant,
            "{data}"
        );
    }
    // The other tenant's pipeline over its `clicks` is unknown.
    same_as_unknown(
        &h,
        Method::GET,
        "/v1/pipelines/NAME/results",
        "b-clicks",
        KEY,
        None,
    )
    .await;
    same_as_unknown(
        &h,
        Method::GET,
        "/v1/pipelines/NAME/results",
        "a-clicks",
        &b,
        None,
    )
    .await;

    // Beta's changes are to beta's `clicks` only; its identity is no name of its own.
    let patch = Some(r#"{"description": "beta's clicks"}"#);
    let (status, _) = json_of(&h, Method::PATCH, "/v1/streams/clicks", &b, patch).await;
    assert_eq!(status, StatusCode::OK);
    let (_, own) = json_of(&h, Method::GET, "/v1/streams/clicks", KEY, None).await;
    assert_eq!(own["description"], Value::Null);
    same_as_unknown(&h, Method::GET, "/v1/streams/NAME", b_id.as_str(), &b, None).await;
    same_as_unknown(
        &h,
        Method::GET,
        "/v1/streams/NAME",
        b_id.as_str(),
        KEY,
        None,
    )
    .await;
}

/// A stream that a tenant other than `default` created through the API before tenants had
/// namespaces is stored under its bare name: it loads as it was, under its name.
#[tokio::test]
async fn a_stream_stored_before_namespaces_keeps_its_name() {
    let h = two_tenants().await;
    let b = beta_key();
    let info = StreamInfo {
        partitions: 1,
        description: None,
        tenant: BETA.into(),
    };
    let legacy = StoredStream {
        origin: StreamOrigin::Api,
        ..config_stream(&stream("legacy"), &info)
    };
    h.log.ensure_stream(&legacy.name, 1).await.unwrap();
    SqlStreamStore::new(&h.store).create(&legacy).await.unwrap();
    h.state.streams.refresh().await.unwrap();

    let (status, shown) = json_of(&h, Method::GET, "/v1/streams/legacy", &b, None).await;
    assert_eq!((status, &shown["name"]), (StatusCode::OK, &json!("legacy")));
    let (status, body) = ingest(&h, "legacy", &b, r#"{"payload": {"old": true}}"#).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(h.events_in_log("legacy", 1, 1).await.len(), 1);
    // Still beta's name: taken for beta, unknown to the other tenant.
    let again = Some(r#"{"name": "legacy"}"#);
    let (status, _) = json_of(&h, Method::POST, "/v1/streams", &b, again).await;
    assert_eq!(status, StatusCode::CONFLICT);
    same_as_unknown(&h, Method::GET, "/v1/streams/NAME", "legacy", KEY, None).await;
}

/// A name that ends like a tenant's tag is refused to every tenant, so that none can take
/// another's identity; a tenant with a tag has names of at most [`MAX_TAGGED_NAME_LEN`]
/// characters.
#[tokio::test]
async fn names_cannot_take_another_tenants_identity() {
    let h = two_tenants().await;
    let b = beta_key();
    let beta_clicks = stream_id(BETA, &stream("clicks")).unwrap();
    for (bearer, name) in [
        (KEY.to_owned(), beta_clicks.to_string()),
        (b.clone(), beta_clicks.to_string()),
        (b.clone(), "x".repeat(MAX_TAGGED_NAME_LEN + 1)),
    ] {
        let body = json!({"name": name}).to_string();
        let (status, problem) =
            json_of(&h, Method::POST, "/v1/streams", &bearer, Some(&body)).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{name}: {problem}"
        );
    }
    for (bearer, name) in [
        (KEY.to_owned(), "x".repeat(MAX_TAGGED_NAME_LEN + 1)),
        (b.clone(), "x".repeat(MAX_TAGGED_NAME_LEN)),
        (KEY.to_owned(), "my__clicks".to_owned()),
    ] {
        let body = json!({"name": name, "partitions": 1}).to_string();
        let (status, created) =
            json_of(&h, Method::POST, "/v1/streams", &bearer, Some(&body)).await;
        assert_eq!(status, StatusCode::CREATED, "{name}: {created}");
        assert_eq!(created["name"], name.as_str());
    }
}

/// An event sent to a stream of a tenant with a tag may name the stream as the tenant knows
/// it, whatever the framing and over GraphQL, or by its identity; it is stored under the
/// identity and read back under the name, and the events read back can be sent again as
/// they are. Another stream's name is a 422 that names the stream as the tenant knows it,
/// never its identity, as does the dead letter kept.
#[tokio::test]
async fn events_may_name_their_stream_as_the_tenant_knows_it() {
    let h = two_tenants().await;
    let b = beta_key();
    let created = Some(r#"{"name": "clicks", "partitions": 1}"#);
    let (status, body) = json_of(&h, Method::POST, "/v1/streams", &b, created).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = stream_id(BETA, &stream("clicks")).unwrap();

    let single = r#"{"stream": "clicks", "key": "single", "payload": {"n": 1}}"#.to_owned();
    let array = json!([
        {"stream": "clicks", "key": "array", "payload": {"n": 2}},
        {"stream": id, "key": "identity", "payload": {"n": 3}},
    ])
    .to_string();
    let mut ids = Vec::new();
    for body in [&single, &array] {
        let (status, accepted) = ingest(&h, "clicks", &b, body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}: {accepted}");
        ids.extend(common::ids_of(&accepted));
    }
    let ndjson = "{\"stream\": \"clicks\", \"key\": \"ndjson\", \"payload\": {\"n\": 4}}\n";
    let request = Request::post("/v1/streams/clicks/events")
        .header(header::AUTHORIZATION, format!("Bearer {b}"))
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from(ndjson))
        .unwrap();
    let response = h.send(request).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    ids.extend(common::ids_of(&body_json(response).await));
    let mutation = "mutation { ingest(stream: \"clicks\", events: [{stream: \"clicks\", \
                    key: \"graphql\", payload: {n: 5}}]) { accepted ids } }";
    let data = graphql(&h, &b, mutation).await;
    assert_eq!(data["data"]["ingest"]["accepted"], 1, "{data}");
    ids.extend(common::ids_of(&data["data"]["ingest"]));

    // Stored under the identity; read back (archived as the engine does) under the name.
    let events = h.events_in_log(id.as_str(), 1, 5).await;
    assert_eq!(events.len(), 5, "{events:?}");
    assert!(events.iter().all(|e| e.stream == id), "{events:?}");
    h.store.put_events(&events).await.unwrap();
    let (status, page) = json_of(&h, Method::GET, "/v1/streams/clicks/events", &b, None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let id_strs: Vec<&str> = ids.iter().map(String::as_str).collect();
    assert_eq!(names(&page, "events", "id"), set(&id_strs));
    assert_eq!(names(&page, "events", "stream"), set(&["clicks"]));
    // The events read back, sent again as they are (ids, `stream` and all): accepted.
    let again = page["events"].to_string();
    let (status, accepted) = ingest(&h, "clicks", &b, &again).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    assert_eq!(common::ids_of(&accepted).len(), 5);

    // Another stream's name (one of beta's own, and a default tenant's): a 422 naming
    // `clicks`, kept as a dead letter of `clicks`, never showing the identity.
    for other in [B_STREAM, "t"] {
        let body = json!({"stream": other, "payload": {}}).to_string();
        let (status, problem) = ingest(&h, "clicks", &b, &body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
        let error = &problem["errors"][0];
        assert_eq!(error["field"], "stream", "{problem}");
        assert_eq!(error["reason"], r#"must be absent or equal to "clicks""#);
        assert!(!problem.to_string().contains(id.as_str()), "{problem}");
    }
    let (_, letters) = json_of(&h, Method::GET, "/v1/dead-letters", &b, None).await;
    let letters = letters["dead_letters"].as_array().unwrap();
    assert_eq!(letters.len(), 2, "{letters:?}");
    for letter in letters {
        assert_eq!(letter["stream"], "clicks", "{letter}");
        let reason = letter["reason"].as_str().unwrap();
        assert!(
            reason.ends_with(r#"event 0 stream: must be absent or equal to "clicks""#),
            "{reason}"
        );
        assert!(!letter.to_string().contains(id.as_str()), "{letter}");
    }
}

/// Runs `query` as `bearer`; the GraphQL response.
async fn graphql(h: &Harness, bearer: &str, query: &str) -> Value {
    let body = json!({ "query": query }).to_string();
    let (status, response) = json_of(h, Method::POST, "/graphql", bearer, Some(&body)).await;
    assert_eq!(status, StatusCode::OK, "{response}");
    response
}

/// Asserts that `template` with `NAME` replaced by `foreign` fails for `bearer` exactly as
/// it does with [`NOBODY`], with a 404 problem.
async fn graphql_same_as_unknown(h: &Harness, bearer: &str, template: &str, foreign: &str) {
    let query = template.replace("NAME", foreign);
    let response = graphql(h, bearer, &query).await;
    let error = &response["errors"][0];
    assert_eq!(error["extensions"]["status"], 404, "{response}");
    let unknown = graphql(h, bearer, &template.replace("NAME", NOBODY)).await;
    assert_eq!(
        scrub(&response.to_string(), foreign),
        scrub(&unknown.to_string(), NOBODY),
        "{query} tells more than an unknown name"
    );
}

/// The names of the root fields of `kind` (`queryType`, `mutationType`,
/// `subscriptionType`).
async fn root_fields(h: &Harness, kind: &str) -> Vec<String> {
    let response = graphql(
        h,
        KEY,
        &format!("{{ __schema {{ {kind} {{ fields {{ name }} }} }} }}"),
    )
    .await;
    response["data"]["__schema"][kind]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn every_graphql_field_hides_the_other_tenants_data() {
    let h = two_tenants().await;
    let written = write_both(&h).await;
    let b = beta_key();
    let mut covered = 0;
    for field in root_fields(&h, "queryType").await {
        match field.as_str() {
            "streams" => {
                let response = graphql(&h, KEY, "{ streams { name } }").await;
                assert_eq!(
                    names(&response["data"], "streams", "name"),
                    set(&["orders", "t"])
                );
                let response = graphql(&h, &b, "{ streams { name } }").await;
                assert_eq!(
                    names(&response["data"], "streams", "name"),
                    set(&[B_STREAM])
                );
            }
            "events" => {
                let template = "{ events(stream: \"NAME\") { events { id } } }";
                graphql_same_as_unknown(&h, KEY, template, B_STREAM).await;
                let response = graphql(&h, &b, &template.replace("NAME", B_STREAM)).await;
                assert_eq!(
                    names(&response["data"]["events"], "events", "id"),
                    set(&[&written.b_event])
                );
                graphql_same_as_unknown(&h, &b, template, "t").await;
            }
            "pipelines" => {
                let response = graphql(&h, KEY, "{ pipelines { name } }").await;
                assert_eq!(
                    names(&response["data"], "pipelines", "name"),
                    set(&["clicks-per-minute", "orders-per-minute"])
                );
                let response = graphql(&h, &b, "{ pipelines { name } }").await;
                assert_eq!(
                    names(&response["data"], "pipelines", "name"),
                    set(&[B_PIPELINE])
                );
            }
            "pipelineResults" => {
                let template = "{ pipelineResults(pipeline: \"NAME\") { pipeline } }";
                graphql_same_as_unknown(&h, KEY, template, B_PIPELINE).await;
                let response = graphql(&h, &b, &template.replace("NAME", B_PIPELINE)).await;
                assert_eq!(
                    response["data"]["pipelineResults"]["pipeline"], B_PIPELINE,
                    "{response}"
                );
                graphql_same_as_unknown(&h, &b, template, "clicks-per-minute").await;
            }
            "deadLetters" => {
                let query = "{ deadLetters { dead_letters { stream raw } } }";
                let response = graphql(&h, KEY, query).await;
                assert_eq!(
                    names(&response["data"]["deadLetters"], "dead_letters", "stream"),
                    set(&["t"]),
                    "{response}"
                );
                let response = graphql(&h, &b, query).await;
                assert_eq!(
                    names(&response["data"]["deadLetters"], "dead_letters", "stream"),
                    set(&[B_STREAM])
                );
            }
            other => panic!("query field {other} is not covered by the tenant isolation test"),
        }
        covered += 1;
    }
    for field in root_fields(&h, "mutationType").await {
        match field.as_str() {
            "ingest" => {
                let template =
                    "mutation { ingest(stream: \"NAME\", events: [{payload: {}}]) { accepted } }";
                graphql_same_as_unknown(&h, KEY, template, B_STREAM).await;
                graphql_same_as_unknown(&h, &b, template, "t").await;
                let response = graphql(&h, &b, &template.replace("NAME", B_STREAM)).await;
                assert_eq!(response["data"]["ingest"]["accepted"], 1, "{response}");
                assert_eq!(h.events_in_log(B_STREAM, 1, 2).await.len(), 2);
            }
            other => panic!("mutation {other} is not covered by the tenant isolation test"),
        }
        covered += 1;
    }
    for field in root_fields(&h, "subscriptionType").await {
        match field.as_str() {
            "pipelineResults" => {
                let addr = serve(h.router.clone()).await;
                assert_eq!(
                    scrub(&subscribe(addr, KEY, B_PIPELINE).await, B_PIPELINE),
                    scrub(&subscribe(addr, KEY, NOBODY).await, NOBODY)
                );
                assert!(subscribe(addr, KEY, NOBODY).await.contains("404"));
                // Its own tenant's subscribes (no error within a moment).
                assert_eq!(subscribe(addr, &b, B_PIPELINE).await, "");
            }
            other => panic!("subscription {other} is not covered by the tenant isolation test"),
        }
        covered += 1;
    }
    assert_eq!(covered, 7);
}

/// Serves `router` on a loopback port; its address.
async fn serve(router: axum::Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

/// Subscribes to `pipeline`'s results as `bearer` over graphql-transport-ws; the first
/// message after the acknowledgement within half a second, as text (empty when none).
async fn subscribe(addr: std::net::SocketAddr, bearer: &str, pipeline: &str) -> String {
    let mut request = format!("ws://{addr}/graphql")
        .into_client_request()
        .unwrap();
    let headers = request.headers_mut();
    headers.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static("graphql-transport-ws"),
    );
    headers.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {bearer}")).unwrap(),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let init = json!({"type": "connection_init"}).to_string();
    socket.send(Message::Text(init.into())).await.unwrap();
    assert!(next_text(&mut socket).await.contains("connection_ack"));
    let query = format!("subscription {{ pipelineResults(pipeline: \"{pipeline}\") {{ epoch }} }}");
    let subscribe =
        json!({"id": "1", "type": "subscribe", "payload": {"query": query}}).to_string();
    socket.send(Message::Text(subscribe.into())).await.unwrap();
    next_text(&mut socket).await
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next text message within half a second, or an empty string.
async fn next_text(socket: &mut Socket) -> String {
    loop {
        match tokio::time::timeout(Duration::from_millis(500), socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => return text.to_string(),
            Ok(Some(Ok(_))) => {}
            _ => return String::new(),
        }
    }
}
