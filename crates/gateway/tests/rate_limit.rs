//! Rate limits of the `/v1` routes, through the router: 429 with `Retry-After` and the
//! `RateLimit` fields past a burst, quotas per credential and scope apart from the quota
//! per client address, `X-Forwarded-For` from a trusted proxy, counts shared by two
//! gateways through Redis (`TRIBUTARY_REDIS_URL`), exactly or each deciding in process
//! within one local share, and the in-process fallback when Redis is unreachable.
//!
//! Run: `eval "$(scripts/services.sh env)"; cargo test -p tributary-gateway --test rate_limit`

// Helpers are not `#[test]` functions, so clippy's allow-unwrap-in-tests misses them.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode, header};
use axum::response::Response;
use common::{Harness, KEY, body_json, harness};
use tower::ServiceExt;
use tributary_connectors::memory::MemoryRateLimiter;
use tributary_connectors::rate_limit::{SharedCounts, SyncSettings, build};
use tributary_connectors::redis::RedisConfig;
use tributary_core::ports::{Quota, RateLimiter};
use tributary_gateway::{ApiKeys, PROBLEM_JSON, RateLimit, RateLimitSettings};

const OTHER_KEY: &str = "test-second-key";

/// `burst` requests, then one per 10 s: nothing refills during a test.
fn slow(burst: u32) -> Quota {
    Quota::new(1, Duration::from_secs(10), burst).unwrap()
}

fn settings(read: u32, address: u32) -> RateLimitSettings {
    RateLimitSettings {
        ingest: slow(read),
        read: slow(read),
        admin: slow(read),
        address: slow(address),
        trusted_proxies: Vec::new(),
    }
}

/// The harness's router limited by `limiter` with `settings`, accepting two keys.
async fn limited(limiter: Arc<dyn RateLimiter>, settings: RateLimitSettings) -> (Harness, Router) {
    let mut h = harness().await;
    h.state.auth = ApiKeys::new([KEY, OTHER_KEY]);
    h.state.rate_limit = RateLimit::new(limiter, settings);
    let router = tributary_gateway::router(h.state.clone());
    (h, router)
}

async fn get(router: &Router, key: &str, peer: &str, forwarded: Option<&str>) -> Response {
    let mut request = Request::builder()
        .method(Method::GET)
        .uri("/v1/streams")
        .header(header::AUTHORIZATION, format!("Bearer {key}"));
    if let Some(forwarded) = forwarded {
        request = request.header("x-forwarded-for", forwarded);
    }
    let mut request = request.body(Body::empty()).unwrap();
    request
        .extensions_mut()
        .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
    router.clone().oneshot(request).await.unwrap()
}

fn header_of<'a>(response: &'a Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

#[tokio::test]
async fn past_the_burst_a_429_with_retry_after_and_ratelimit_fields() {
    let (_h, router) = limited(Arc::new(MemoryRateLimiter::default()), settings(3, 100)).await;
    for remaining in [2, 1, 0] {
        let response = get(&router, KEY, "192.0.2.1:4000", None).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            header_of(&response, "ratelimit-policy"),
            r#""read";q=3;w=30, "address";q=100;w=1000"#
        );
        let state = header_of(&response, "ratelimit");
        assert!(
            state.starts_with(&format!(r#""read";r={remaining};t="#)),
            "{state}"
        );
    }
    let refused = get(&router, KEY, "192.0.2.1:4000", None).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header_of(&refused, "retry-after"), "10");
    assert_eq!(header_of(&refused, "content-type"), PROBLEM_JSON);
    assert!(header_of(&refused, "ratelimit").starts_with(r#""read";r=0;t=30, "address";r=96;"#));
    let problem = body_json(refused).await;
    assert_eq!(problem["type"], "urn:tributary:problem:rate-limited");
    assert_eq!(problem["status"], 429);
    assert_eq!(problem["policy"], "read");
    let waited = problem["retry_after_ms"].as_u64().unwrap();
    assert!((9_000..=10_000).contains(&waited), "{waited}");
}

#[tokio::test]
async fn quotas_per_credential_apart_from_the_quota_per_address() {
    let (_h, router) = limited(Arc::new(MemoryRateLimiter::default()), settings(2, 4)).await;
    let here = "192.0.2.1:4000";
    assert_eq!(get(&router, KEY, here, None).await.status(), StatusCode::OK);
    assert_eq!(get(&router, KEY, here, None).await.status(), StatusCode::OK);
    let by_key = get(&router, KEY, here, None).await;
    assert_eq!(by_key.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body_json(by_key).await["policy"], "read");
    // Another credential from the same address has its own quota, but shares the
    // address's: 3 of its 4 are taken (a request refused for its credential still counts
    // on its address).
    let other = get(&router, OTHER_KEY, here, None).await;
    assert_eq!(other.status(), StatusCode::OK, "{:?}", other.headers());
    let by_address = get(&router, OTHER_KEY, here, None).await;
    assert_eq!(by_address.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body_json(by_address).await["policy"], "address");
    // The refused request still counted on the credential (both are checked at once):
    // from another address, the second credential has no request left either.
    let elsewhere = get(&router, OTHER_KEY, "198.51.100.7:4000", None).await;
    assert_eq!(elsewhere.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body_json(elsewhere).await["policy"], "read");
    // Sending events is another scope, with its own quota.
    let ingest = Request::builder()
        .method(Method::POST)
        .uri("/v1/streams/t/events")
        .header(header::AUTHORIZATION, format!("Bearer {KEY}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"ts": 1700000000000, "payload": {}}"#))
        .unwrap();
    let mut ingest = ingest;
    ingest.extensions_mut().insert(ConnectInfo(
        "203.0.113.5:4000".parse::<SocketAddr>().unwrap(),
    ));
    let response = router.clone().oneshot(ingest).await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert!(header_of(&response, "ratelimit").starts_with(r#""ingest";r=1;"#));
}

#[tokio::test]
async fn forwarded_for_names_the_client_only_behind_a_trusted_proxy() {
    let mut settings = settings(100, 1);
    settings.trusted_proxies = vec!["10.0.0.2".parse().unwrap()];
    let (_h, router) = limited(Arc::new(MemoryRateLimiter::default()), settings).await;
    let proxy = "10.0.0.2:40000";
    // Two clients behind the proxy: one request each.
    for client in ["203.0.113.1", "203.0.113.2"] {
        let response = get(&router, KEY, proxy, Some(client)).await;
        assert_eq!(response.status(), StatusCode::OK, "{client}");
    }
    assert_eq!(
        get(&router, KEY, proxy, Some("203.0.113.1")).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // A client claiming another address in front of the proxy's own entry is not believed.
    assert_eq!(
        get(&router, KEY, proxy, Some("198.51.100.9, 203.0.113.2"))
            .await
            .status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // From an untrusted peer, the header is ignored: the peer is the client.
    let direct = "192.0.2.50:5000";
    assert_eq!(
        get(&router, KEY, direct, Some("203.0.113.3"))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        get(&router, KEY, direct, Some("203.0.113.4"))
            .await
            .status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

fn redis_config(prefix: &str) -> RedisConfig {
    let url = std::env::var("TRIBUTARY_REDIS_URL").expect(
        "TRIBUTARY_REDIS_URL is not set: eval \"$(bash scripts/services.sh env)\" after scripts/services.sh up",
    );
    RedisConfig {
        key_prefix: prefix.to_owned(),
        ..RedisConfig::new(url)
    }
}

/// A gateway's limiter on the Redis of `config`, sharing its counts as `sync` says.
fn on_redis(config: &RedisConfig, sync: SyncSettings) -> Arc<dyn RateLimiter> {
    build(
        Some(SharedCounts {
            redis: config,
            sync,
        }),
        1000,
    )
    .unwrap()
}

#[tokio::test]
async fn two_gateways_share_their_counts_through_redis() {
    let config = redis_config(&format!("tributary-test-{}:", uuid::Uuid::now_v7()));
    let one = on_redis(&config, SyncSettings::EXACT);
    let two = on_redis(&config, SyncSettings::EXACT);
    let (_h1, gateway_one) = limited(one, settings(3, 100)).await;
    let (_h2, gateway_two) = limited(two, settings(3, 100)).await;
    let peer = "192.0.2.1:4000";
    assert_eq!(
        get(&gateway_one, KEY, peer, None).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        get(&gateway_two, KEY, peer, None).await.status(),
        StatusCode::OK
    );
    let third = get(&gateway_one, KEY, peer, None).await;
    assert_eq!(third.status(), StatusCode::OK);
    assert!(header_of(&third, "ratelimit").starts_with(r#""read";r=0;"#));
    assert_eq!(
        get(&gateway_two, KEY, peer, None).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

/// Two gateways deciding in process (a report every 50 ms, a share of 10% of the burst:
/// 2 of 20) admit together at most the burst plus one share; once both have reported, each
/// refuses with the `Retry-After` of every request they admitted, the ones past the burst
/// included.
#[tokio::test]
async fn two_synced_gateways_admit_within_one_share_and_agree_on_retry_after() {
    let config = redis_config(&format!("tributary-test-{}:", uuid::Uuid::now_v7()));
    let sync = SyncSettings {
        interval: Duration::from_millis(50),
        local_share_percent: 10,
    };
    let (_h1, gateway_one) = limited(on_redis(&config, sync), settings(20, 1000)).await;
    let (_h2, gateway_two) = limited(on_redis(&config, sync), settings(20, 1000)).await;
    let peer = "192.0.2.1:4000";
    let mut admitted = 0_u64;
    for _ in 0..20 {
        for gateway in [&gateway_one, &gateway_two] {
            if get(gateway, KEY, peer, None).await.status() == StatusCode::OK {
                admitted += 1;
            }
        }
    }
    assert!(
        (20..=22).contains(&admitted),
        "admitted {admitted}: burst 20, one share 2"
    );
    // Both have reported: n admitted at one per 10 s, the next one in (n − 19) × 10 s.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let expected = ((admitted - 19) * 10).to_string();
    for gateway in [&gateway_one, &gateway_two] {
        let refused = get(gateway, KEY, peer, None).await;
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(header_of(&refused, "retry-after"), expected);
        assert!(header_of(&refused, "ratelimit").starts_with(r#""read";r=0;"#));
    }
}

#[tokio::test]
async fn with_redis_unreachable_requests_are_limited_in_process_never_failed() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = RedisConfig::new(format!("redis://127.0.0.1:{closed}/"));
    let limiter = on_redis(&config, SyncSettings::EXACT);
    let (_h, router) = limited(limiter, settings(3, 100)).await;
    let started = std::time::Instant::now();
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(get(&router, KEY, "192.0.2.1:4000", None).await.status());
    }
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the breaker answers at once: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn the_openapi_document_lists_429_on_every_v1_operation() {
    let h = harness().await;
    let response = h
        .send(
            Request::builder()
                .uri("/openapi.json")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    let doc = body_json(response).await;
    let paths = doc["paths"].as_object().unwrap();
    let mut checked = 0;
    for (path, item) in paths {
        if !path.starts_with("/v1/") {
            continue;
        }
        let methods = ["get", "put", "post", "delete", "patch", "head", "options"];
        for (method, operation) in item.as_object().unwrap() {
            if !methods.contains(&method.as_str()) {
                continue;
            }
            assert_eq!(
                operation["responses"]["429"]["$ref"], "#/components/responses/TooManyRequests",
                "{method} {path}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 5);
    assert!(
        doc["components"]["responses"]["TooManyRequests"]["headers"]["Retry-After"].is_object()
    );
}
