//! GraphQL at `/graphql`: the same answers as the REST API, ingestion as a mutation, the
//! credential, the depth, cost and introspection limits, and live results over a real
//! WebSocket, against the embedded adapters of the gateway's test harness.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tower::ServiceExt as _;
use tributary_core::Timestamp;
use tributary_core::pipeline::PipelineStatus;
use tributary_core::ports::{AnalyticsStore, Cache, Checkpoint, DocumentStore, StateDelta};
use tributary_core::results::{ResultChange, ResultRow, ResultWrite};
use tributary_core::value::Value as Scalar;
use tributary_gateway::{GraphqlSettings, Surfaces};

use common::{Harness, KEY, authed, body_json, body_text, event, harness, pipeline, problem};

const PIPELINE: &str = "clicks-per-minute";
const MINUTE: i64 = 60_000;

/// Runs `query` with `variables` through `router` as the harness's admin key; the GraphQL
/// response.
async fn graphql(router: &Router, query: &str, variables: Value) -> Value {
    let body = json!({ "query": query, "variables": variables }).to_string();
    let request = authed(Method::POST, "/graphql")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    body_json(response).await
}

/// The data of a query that must succeed.
async fn data(router: &Router, query: &str, variables: Value) -> Value {
    let response = graphql(router, query, variables).await;
    assert!(response.get("errors").is_none(), "{response}");
    response["data"].clone()
}

/// The first error of a query that must fail.
async fn first_error(router: &Router, query: &str, variables: Value) -> Value {
    let response = graphql(router, query, variables).await;
    response["errors"][0].clone()
}

/// A result row of the pipeline: window `start`, key `key`, count `count`.
fn row(start: i64, key: &str, count: i64, revision: u64) -> ResultRow {
    ResultRow {
        pipeline: PIPELINE.into(),
        window_start: Timestamp::from_millis(start),
        window_end: Timestamp::from_millis(start + MINUTE),
        key: key.into(),
        keys: vec![Scalar::Str(key.to_owned().into())],
        values: vec![Scalar::Int(count)],
        partials: vec![Vec::new()],
        revision,
        closed: false,
        updated_at: None,
    }
}

/// Commits checkpoint `epoch` of the pipeline writing `rows`, then its status, as the
/// engine does: results in the analytics store, the status (with the rows as `latest`) in
/// the cache.
async fn commit(h: &Harness, generation: u64, epoch: u64, rows: &[ResultRow]) -> Vec<Value> {
    let schema = pipeline(PIPELINE, "t").schema();
    let checkpoint = Checkpoint {
        pipeline: PIPELINE.into(),
        epoch,
        offsets: vec![],
        state: json!({}),
        watermark: Timestamp::from_millis(1_700_000_000_000),
    };
    let changes: Vec<ResultChange> = rows.iter().cloned().map(ResultChange::Upsert).collect();
    let write = ResultWrite {
        schema: &schema,
        changes: &changes,
    };
    h.store
        .commit_checkpoint(generation, &checkpoint, Some(write), &StateDelta::default())
        .await
        .unwrap();
    let latest: Vec<Value> = rows.iter().map(|r| r.to_json(&schema)).collect();
    let status = PipelineStatus {
        pipeline: PIPELINE.into(),
        epoch,
        watermark: Some(checkpoint.watermark),
        committed_at: Timestamp::now(),
        late_events: 0,
        duplicates: 0,
        filtered: 0,
        latest: latest.clone(),
    };
    h.cache
        .set(
            &PipelineStatus::cache_key(PIPELINE),
            &serde_json::to_string(&status).unwrap(),
            None,
        )
        .await
        .unwrap();
    latest
}

/// Prepares the pipeline's results table and claims it; the owner's generation.
async fn claim(h: &Harness) -> u64 {
    let schema = pipeline(PIPELINE, "t").schema();
    h.store.prepare_results(&schema).await.unwrap();
    h.store.claim(PIPELINE).await.unwrap().generation
}

#[tokio::test]
async fn queries_answer_what_the_rest_api_answers() {
    let h = harness().await;
    let events: Vec<_> = (0..3)
        .map(|i| event("t", &format!("e{i}"), 1_000 + i))
        .collect();
    h.store.put_events(&events).await.unwrap();
    // A refused request: a dead letter.
    let refused = h.post("/v1/streams/t/events", "text/plain", "x").await;
    assert_eq!(refused.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let generation = claim(&h).await;
    let base = 1_700_000_040_000 - 1_700_000_040_000 % MINUTE;
    commit(
        &h,
        generation,
        1,
        &[row(base, "a", 3, 1), row(base, "b", 1, 1)],
    )
    .await;

    let rest = |uri: &'static str| {
        let h = &h;
        async move { body_json(h.get(uri).await).await }
    };
    let got = data(
        &h.router,
        r#"{
            streams {
                name partitions description replication_factor retention_ms schema origin
                created_at updated_at
            }
            pipelines {
                name sources filter key window aggregates lookups allowed_lateness_ms columns
                aggregate status
            }
            events(stream: "t") { events { id stream ts key payload } next_cursor }
            deadLetters { dead_letters { id at stream origin reason raw truncated } next_cursor }
            pipelineResults(pipeline: "clicks-per-minute") { pipeline results }
        }"#,
        json!({}),
    )
    .await;
    assert_eq!(got["streams"], rest("/v1/streams").await["streams"]);
    let pipelines = rest("/v1/pipelines").await["pipelines"].clone();
    assert_eq!(got["pipelines"], pipelines);
    assert_eq!(got["pipelines"][0]["status"]["epoch"], 1);
    let page = rest("/v1/streams/t/events").await;
    assert_eq!(got["events"], page);
    assert_eq!(got["events"]["events"].as_array().unwrap().len(), 3);
    assert_eq!(got["deadLetters"], rest("/v1/dead-letters").await);
    assert_eq!(got["deadLetters"]["dead_letters"][0]["raw"], "x");
    let results = rest("/v1/pipelines/clicks-per-minute/results").await;
    assert_eq!(got["pipelineResults"], results);
    assert_eq!(got["pipelineResults"]["results"][0]["count"], 3);

    // Errors are the REST problems, as extensions.
    let error = first_error(
        &h.router,
        r#"{ events(stream: "nope") { next_cursor } }"#,
        json!({}),
    )
    .await;
    assert_eq!(error["extensions"]["status"], 404, "{error}");
    assert_eq!(
        error["extensions"]["type"],
        "urn:tributary:problem:unknown-stream"
    );
    let error = first_error(
        &h.router,
        r#"{ pipelineResults(pipeline: "clicks-per-minute", from: "yesterday") { pipeline } }"#,
        json!({}),
    )
    .await;
    assert_eq!(error["extensions"]["status"], 400, "{error}");
    assert_eq!(error["extensions"]["parameter"], "from");
}

#[tokio::test]
async fn events_are_filtered_and_paged_with_a_cursor() {
    let h = harness().await;
    let events: Vec<_> = (0..5)
        .map(|i| event("t", &format!("e{i}"), 1_000 + i))
        .collect();
    h.store.put_events(&events).await.unwrap();
    let query = "query($limit: Int, $cursor: String, $since: String) {
        events(stream: \"t\", limit: $limit, cursor: $cursor, since: $since) {
            events { id } next_cursor
        }
    }"
    .to_owned();
    let pages = |limit: u64, since: Option<&'static str>| {
        let h = &h;
        let query = query.clone();
        async move {
            let mut pages = Vec::new();
            let mut cursor = Value::Null;
            loop {
                let variables = json!({"limit": limit, "cursor": cursor, "since": since});
                let page = data(&h.router, &query, variables).await["events"].clone();
                let ids: Vec<String> = page["events"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["id"].as_str().unwrap().to_owned())
                    .collect();
                pages.push(ids);
                cursor = page["next_cursor"].clone();
                if cursor.is_null() {
                    return pages;
                }
                assert!(pages.len() < 10, "the cursor does not advance");
            }
        }
    };
    assert_eq!(
        pages(2, None).await,
        [vec!["e4", "e3"], vec!["e2", "e1"], vec!["e0"]]
    );
    // Since 1002 (epoch millis or RFC 3339): e4, e3, e2, and no cursor after e2.
    assert_eq!(pages(2, Some("1002")).await, [vec!["e4", "e3"], vec!["e2"]]);
    assert_eq!(
        pages(10, Some("1970-01-01T00:00:01.003Z")).await,
        [vec!["e4", "e3"]]
    );

    // The REST page limits.
    for (limit, cursor) in [(0, "null"), (1001, "null"), (2, "\"bm9wZQ\"")] {
        let variables =
            json!({"limit": limit, "cursor": serde_json::from_str::<Value>(cursor).unwrap()});
        let error = first_error(&h.router, &query, variables).await;
        assert_eq!(error["extensions"]["status"], 400, "{error}");
    }
    let error = first_error(&h.router, &query, json!({"since": "soon"})).await;
    assert_eq!(error["extensions"]["parameter"], "since", "{error}");
}

#[tokio::test]
async fn the_ingest_mutation_appends_before_answering_and_keeps_refusals() {
    let h = harness().await;
    let mutation = "mutation($stream: String!, $events: [JSON!]!) {
        ingest(stream: $stream, events: $events) { accepted ids }
    }";
    let events = json!([
        {"id": "m1", "key": "a", "payload": {"n": 1}},
        {"id": "m2", "payload": {"n": 2}}
    ]);
    let got = data(
        &h.router,
        mutation,
        json!({"stream": "t", "events": events}),
    )
    .await;
    assert_eq!(got["ingest"], json!({"accepted": 2, "ids": ["m1", "m2"]}));
    let mut in_log = h.ids_in_log(2).await;
    in_log.sort();
    assert_eq!(in_log, ["m1", "m2"]);

    // Invalid events: the 422 of the REST API, nothing appended, a dead letter kept.
    let bad = json!([{"id": "m3", "ts": "not a time", "payload": {}}]);
    let error = first_error(&h.router, mutation, json!({"stream": "t", "events": bad})).await;
    assert_eq!(error["extensions"]["status"], 422, "{error}");
    assert_eq!(error["extensions"]["error_count"], 1, "{error}");
    assert_eq!(h.ids_in_log(2).await.len(), 2);
    let letters = data(
        &h.router,
        "{ deadLetters { dead_letters { stream origin raw } } }",
        json!({}),
    )
    .await;
    let letter = &letters["deadLetters"]["dead_letters"][0];
    assert_eq!(letter["stream"], "t");
    assert_eq!(letter["origin"], json!({"kind": "ingest", "status": 422}));
    assert!(letter["raw"].as_str().unwrap().contains("not a time"));

    let error = first_error(
        &h.router,
        mutation,
        json!({"stream": "nope", "events": [{}]}),
    )
    .await;
    assert_eq!(error["extensions"]["status"], 404, "{error}");

    // A node that does not serve ingestion refuses the mutation.
    let query_only = h.serving(Surfaces {
        ingest: false,
        query: true,
    });
    let events = json!([{"id": "m4", "payload": {}}]);
    let error = first_error(
        &query_only.router,
        mutation,
        json!({"stream": "t", "events": events}),
    )
    .await;
    assert_eq!(error["extensions"]["status"], 404, "{error}");
    assert_eq!(query_only.ids_in_log(2).await.len(), 2);
}

#[tokio::test]
async fn graphql_needs_the_v1_credential() {
    let h = harness().await;
    let body = json!({"query": "{ streams { name } }"}).to_string();
    let request = |auth: Option<&str>| {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri("/graphql")
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(auth) = auth {
            request = request.header(header::AUTHORIZATION, auth);
        }
        request.body(Body::from(body.clone())).unwrap()
    };
    problem(h.send(request(None)).await, StatusCode::UNAUTHORIZED).await;
    problem(
        h.send(request(Some("Bearer wrong-key"))).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    let ok = h.send(request(Some(&format!("Bearer {KEY}")))).await;
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(body_json(ok).await["data"]["streams"][0]["name"], "orders");

    // Bad requests are problems too.
    let response = h.post("/graphql", "text/plain", "{}").await;
    problem(response, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    let response = h.post("/graphql", "application/json", "[1, 2]").await;
    problem(response, StatusCode::BAD_REQUEST).await;

    // The page holds no data: it needs no credential.
    let page = h
        .send(Request::get("/graphql").body(Body::empty()).unwrap())
        .await;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(body_text(page).await.contains("graphiql"));
    let no_page = tributary_gateway::router_with(
        h.state.clone(),
        Surfaces::ALL,
        &GraphqlSettings {
            graphiql: false,
            ..GraphqlSettings::default()
        },
    );
    let response = no_page
        .oneshot(Request::get("/graphql").body(Body::empty()).unwrap())
        .await
        .unwrap();
    problem(response, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn a_key_repeated_in_a_graphql_body_is_a_400_naming_it_as_on_the_rest_edge() {
    let h = harness().await;
    // At the top level (two queries: which one would run?) and within `variables`.
    for (body, key) in [
        (
            r#"{"query": "{ streams { name } }", "query": "mutation { x }"}"#,
            "query",
        ),
        (
            r#"{"query": "query($s: String!) { events(stream: $s) { nextCursor } }",
                "variables": {"s": "orders", "s": "other"}}"#,
            "s",
        ),
    ] {
        let response = h.post("/graphql", "application/json", body).await;
        let problem = problem(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(problem["type"], "urn:tributary:problem:duplicate-key");
        assert_eq!(problem["key"], key, "{problem}");
        assert!(problem["line"].as_u64().unwrap() >= 1, "{problem}");
    }
    // The REST edge answers the same problem for the same fault.
    let response = h
        .post(
            "/v1/streams/orders/events",
            "application/json",
            r#"{"payload": {}, "payload": {}}"#,
        )
        .await;
    let rest = problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(rest["type"], "urn:tributary:problem:duplicate-key");
    assert_eq!(rest["key"], "payload");
    // Without a repeated key, the same request runs.
    let response = h
        .post(
            "/graphql",
            "application/json",
            r#"{"query": "{ streams { name } }"}"#,
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
}

/// An introspection query nesting `levels` of `ofType` under `__schema { types { fields {
/// type`: its depth is `levels` + 5.
fn nested_introspection(levels: usize) -> String {
    format!(
        "{{ __schema {{ types {{ fields {{ type {{ {} name {} }} }} }} }} }}",
        "ofType { ".repeat(levels),
        "} ".repeat(levels)
    )
}

#[tokio::test]
async fn deep_and_costly_queries_are_refused() {
    let h = harness().await;
    // The default depth (16) lets GraphiQL's introspection (13 levels) through.
    let ok = data(&h.router, &nested_introspection(11), json!({})).await;
    assert!(ok["__schema"]["types"].is_array());
    let response = graphql(&h.router, &nested_introspection(12), json!({})).await;
    assert!(response["data"].is_null(), "{response}");
    let message = response["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("nested too deep"), "{message}");

    // Cost: a list costs its page size times its selection.
    let aliases = |limit: u32| {
        let fields: String = (0..10)
            .map(|i| {
                format!(r#"a{i}: events(stream: "t", limit: {limit}) {{ events {{ id ts }} }} "#)
            })
            .collect();
        format!("{{ {fields} }}")
    };
    data(&h.router, &aliases(100), json!({})).await;
    let response = graphql(&h.router, &aliases(1000), json!({})).await;
    assert!(response["data"].is_null(), "{response}");
    let message = response["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("too complex"), "{message}");
}

#[tokio::test]
async fn introspection_can_be_turned_off() {
    let h = harness().await;
    let query = "{ __schema { queryType { name } } }";
    assert_eq!(
        data(&h.router, query, json!({})).await["__schema"]["queryType"]["name"],
        "QueryRoot"
    );
    let router = tributary_gateway::router_with(
        h.state.clone(),
        Surfaces::ALL,
        &GraphqlSettings {
            introspection: false,
            ..GraphqlSettings::default()
        },
    );
    for refused in [
        query,
        "{ __type(name: \"Stream\") { name } }",
        "{ streams { name } ...F } fragment F on QueryRoot { __schema { types { name } } }",
    ] {
        let response = graphql(&router, refused, json!({})).await;
        let message = response["errors"][0]["message"]
            .as_str()
            .unwrap_or_default();
        assert!(message.contains("introspection is disabled"), "{response}");
        assert!(response["data"].is_null(), "{response}");
    }
    // __typename is not introspection.
    let typename = data(&router, "{ __typename }", json!({})).await;
    assert_eq!(typename["__typename"], "QueryRoot");
    let streams = data(&router, "{ streams { name } }", json!({})).await;
    assert_eq!(streams["streams"].as_array().unwrap().len(), 2);
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Serves `router` on a loopback port; its address.
async fn serve(router: Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

/// A graphql-transport-ws connection to `addr`, with `header` as its `Authorization`.
async fn connect(addr: std::net::SocketAddr, header: Option<&str>) -> Socket {
    let mut request = format!("ws://{addr}/graphql")
        .into_client_request()
        .unwrap();
    let headers = request.headers_mut();
    headers.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static("graphql-transport-ws"),
    );
    if let Some(value) = header {
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
    }
    let (socket, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(
        response.headers()[header::SEC_WEBSOCKET_PROTOCOL],
        "graphql-transport-ws"
    );
    socket
}

async fn send(socket: &mut Socket, message: Value) {
    socket
        .send(Message::Text(message.to_string().into()))
        .await
        .unwrap();
}

/// The next text message within `within` (`None` when none came), or the close frame's
/// code and reason as `{"close": code, "reason": ...}`.
async fn receive(socket: &mut Socket, within: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let message = tokio::time::timeout_at(deadline, socket.next())
            .await
            .ok()??;
        match message.unwrap() {
            Message::Text(text) => return Some(serde_json::from_str(&text).unwrap()),
            Message::Close(frame) => {
                let (code, reason) = frame.map_or((0, String::new()), |f| {
                    (u16::from(f.code), f.reason.to_string())
                });
                return Some(json!({"close": code, "reason": reason}));
            }
            _ => {}
        }
    }
}

/// Subscribes to the pipeline's results over `socket` (initialized with `init`).
async fn subscribe(socket: &mut Socket, init: Value) {
    send(socket, json!({"type": "connection_init", "payload": init})).await;
    let ack = receive(socket, Duration::from_secs(5)).await.unwrap();
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    let query = "subscription { pipelineResults(pipeline: \"clicks-per-minute\") {
        pipeline epoch committed_at watermark skipped results } }";
    send(
        socket,
        json!({"id": "1", "type": "subscribe", "payload": {"query": query}}),
    )
    .await;
}

#[tokio::test]
async fn subscriptions_push_results_when_a_checkpoint_commits() {
    let h = harness().await;
    let settings = GraphqlSettings {
        poll_interval: Duration::from_millis(20),
        ..GraphqlSettings::default()
    };
    let addr = serve(tributary_gateway::router_with(
        h.state.clone(),
        Surfaces::ALL,
        &settings,
    ))
    .await;
    let generation = claim(&h).await;
    let base = 1_700_000_040_000 - 1_700_000_040_000 % MINUTE;
    commit(&h, generation, 1, &[row(base, "a", 1, 1)]).await;

    // One subscriber authenticates in connection_init, the other with the upgrade's header.
    let mut first = connect(addr, None).await;
    subscribe(
        &mut first,
        json!({"Authorization": format!("Bearer {KEY}")}),
    )
    .await;
    let mut second = connect(addr, Some(&format!("Bearer {KEY}"))).await;
    subscribe(&mut second, json!({})).await;

    // The subscriptions are served once the server has read their subscribe messages, and a
    // new poller's first status read is its baseline: commit (changing every row) until a
    // commit reaches both subscribers (the first normally does).
    let epoch_of = |update: &Option<Value>| {
        update
            .as_ref()
            .map(|u| u["payload"]["data"]["pipelineResults"]["epoch"].clone())
    };
    let mut epoch: i64 = 1;
    let (update, latest) = loop {
        epoch += 1;
        assert!(epoch < 10, "no commit reached both subscribers after 8");
        let revision = epoch.unsigned_abs();
        let rows = [
            row(base, "a", epoch, revision),
            row(base, "b", epoch, revision),
        ];
        let latest = commit(&h, generation, revision, &rows).await;
        let update = receive(&mut first, Duration::from_secs(1)).await;
        let other = receive(&mut second, Duration::from_secs(1)).await;
        if epoch_of(&update) == Some(json!(epoch)) && epoch_of(&other) == Some(json!(epoch)) {
            break (update.unwrap(), latest);
        }
    };
    assert_eq!(update["type"], "next", "{update}");
    assert_eq!(update["id"], "1");
    let pushed = &update["payload"]["data"]["pipelineResults"];
    assert_eq!(pushed["pipeline"], PIPELINE);
    assert_eq!(pushed["watermark"], "2023-11-14T22:13:20.000Z");
    // Both rows changed: both are pushed.
    assert_eq!(pushed["results"], json!(latest), "{pushed}");

    // The next commit changes one row: only it is pushed.
    let unchanged = row(base, "b", epoch, epoch.unsigned_abs());
    epoch += 1;
    let rows = [row(base, "a", epoch, epoch.unsigned_abs()), unchanged];
    let latest = commit(&h, generation, epoch.unsigned_abs(), &rows).await;
    let update = receive(&mut first, Duration::from_secs(5)).await.unwrap();
    let pushed = &update["payload"]["data"]["pipelineResults"];
    assert_eq!(pushed["epoch"], epoch, "{pushed}");
    assert_eq!(pushed["skipped"], 0);
    assert_eq!(pushed["results"], json!([latest[0]]), "{pushed}");
    // No commit, no message.
    assert!(
        receive(&mut first, Duration::from_millis(200))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn subscriptions_need_the_credential() {
    let h = harness().await;
    let addr = serve(h.router.clone()).await;
    // None in connection_init: the connection is closed with the reason.
    let mut socket = connect(addr, None).await;
    send(
        &mut socket,
        json!({"type": "connection_init", "payload": {}}),
    )
    .await;
    let answer = receive(&mut socket, Duration::from_secs(5)).await.unwrap();
    assert_eq!(answer["close"], 1002, "{answer}");
    assert!(
        answer["reason"].as_str().unwrap().contains("Authorization"),
        "{answer}"
    );
    // A wrong key in connection_init: the same.
    let mut socket = connect(addr, None).await;
    let init = json!({"type": "connection_init", "payload": {"Authorization": "Bearer nope"}});
    send(&mut socket, init).await;
    let answer = receive(&mut socket, Duration::from_secs(5)).await.unwrap();
    assert_eq!(answer["close"], 1002, "{answer}");
    // A wrong key in the upgrade's header: a 401 before any upgrade.
    let mut request = format!("ws://{addr}/graphql")
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static("graphql-transport-ws"),
    );
    request.headers_mut().insert(
        header::AUTHORIZATION,
        HeaderValue::from_static("Bearer nope"),
    );
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        }
        other => panic!("upgraded with a wrong key: {:?}", other.map(|(_, r)| r)),
    }
    // An unknown pipeline: an error for that subscription.
    let mut socket = connect(addr, Some(&format!("Bearer {KEY}"))).await;
    send(&mut socket, json!({"type": "connection_init"})).await;
    let ack = receive(&mut socket, Duration::from_secs(5)).await.unwrap();
    assert_eq!(ack["type"], "connection_ack");
    let query = "subscription { pipelineResults(pipeline: \"nope\") { epoch } }";
    send(
        &mut socket,
        json!({"id": "9", "type": "subscribe", "payload": {"query": query}}),
    )
    .await;
    let answer = receive(&mut socket, Duration::from_secs(5)).await.unwrap();
    let error = if answer["type"] == "error" {
        answer["payload"][0].clone()
    } else {
        answer["payload"]["errors"][0].clone()
    };
    assert_eq!(error["extensions"]["status"], 404, "{answer}");
}

#[tokio::test]
async fn a_draining_node_closes_its_subscriptions_with_going_away() {
    let h = harness().await;
    let addr = serve(h.router.clone()).await;
    let mut sockets = Vec::new();
    for _ in 0..2 {
        let mut socket = connect(addr, Some(&format!("Bearer {KEY}"))).await;
        subscribe(&mut socket, json!({})).await;
        sockets.push(socket);
    }
    // Subscribed, nothing committed: nothing comes.
    assert!(
        receive(&mut sockets[0], Duration::from_millis(300))
            .await
            .is_none()
    );
    let started = std::time::Instant::now();
    h.state.drain.start();
    for socket in &mut sockets {
        let answer = receive(socket, Duration::from_secs(5)).await.unwrap();
        assert_eq!(answer["close"], 1001, "{answer}");
        assert!(
            answer["reason"].as_str().unwrap().contains("reconnect"),
            "{answer}"
        );
        // Then the connection ends.
        let end = tokio::time::timeout(Duration::from_secs(5), socket.next()).await;
        assert!(
            matches!(end, Ok(None | Some(Err(_)))),
            "the socket stays open: {end:?}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // The upgrades are not requests in flight: nothing holds the drain.
    assert_eq!(h.state.drain.in_flight(), 0);
    // A connection opened during the drain is closed the same way at once.
    let mut late = connect(addr, Some(&format!("Bearer {KEY}"))).await;
    send(&mut late, json!({"type": "connection_init"})).await;
    let answer = receive(&mut late, Duration::from_secs(5)).await.unwrap();
    assert_eq!(answer["close"], 1001, "{answer}");
}
