//! Credentials: issued API keys (scopes, expiry, revocation, the admin API) and JWTs
//! (JWKS from a file and from a URL, pinned algorithms, time, issuer and audience
//! checks), through the router over the real embedded adapters; the keys live in the
//! harness's SQLite store. The RSA keys are test-only fixtures (`tests/fixtures/`).

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tributary_connectors::keys::SqlKeyStore;
use tributary_core::ports::Scope;
use tributary_gateway::{
    ApiKeys, Credential, JwksSource, JwtError, JwtSettings, JwtVerifier, Principal,
};

use common::{Harness, KEY, body_json, harness, problem};

const ISSUER: &str = "https://issuer.test";
const AUDIENCE: &str = "tributary";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn settings(jwks: JwksSource) -> JwtSettings {
    JwtSettings {
        jwks,
        issuer: ISSUER.to_owned(),
        audience: AUDIENCE.to_owned(),
        algorithms: vec![Algorithm::RS256],
        leeway: Duration::from_secs(5),
        scopes_claim: "scope".to_owned(),
        tenant_claim: None,
        min_refresh_interval: Duration::from_millis(500),
    }
}

fn now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

/// Valid claims: `read ingest` scopes, for ten minutes.
fn claims() -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-1",
        "exp": now() + 600,
        "nbf": now() - 10,
        "iat": now(),
        "scope": "read ingest openid",
    })
}

/// `claims` signed RS256 with the fixture key `der`, under `kid`.
fn rs256(claims: &Value, der: &str, kid: Option<&str>) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = kid.map(str::to_owned);
    let key = EncodingKey::from_rsa_der(&std::fs::read(fixture(der)).unwrap());
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

/// `claims` signed with the test key the JWKS publishes.
fn token(claims: &Value) -> String {
    rs256(claims, "jwt_rsa.der", Some("test-key-1"))
}

/// The harness with issued keys (in its SQLite store, cached `ttl`) and JWTs (the JWKS
/// file) accepted besides the configured [`KEY`].
async fn harness_with_auth(ttl: Duration) -> Harness {
    let mut h = harness().await;
    let verifier = JwtVerifier::new(settings(JwksSource::File(fixture("jwks.json"))))
        .await
        .unwrap();
    h.state.auth = ApiKeys::new([KEY])
        .with_store(Arc::new(SqlKeyStore::new(&h.store)), ttl)
        .with_jwt(verifier);
    h.router = tributary_gateway::router(h.state.clone());
    h
}

async fn send(
    h: &Harness,
    method: Method,
    uri: &str,
    bearer: &str,
    body: Option<Value>,
) -> Response {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {bearer}"));
    let body = match body {
        Some(json) => {
            request = request.header(header::CONTENT_TYPE, "application/json");
            Body::from(json.to_string())
        }
        None => Body::empty(),
    };
    h.send(request.body(body).unwrap()).await
}

/// Issues a key with `body` as the configured admin key; returns the answer's body.
async fn issue(h: &Harness, body: Value) -> Value {
    let response = send(h, Method::POST, "/v1/keys", KEY, Some(body)).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
    let location = response.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    let body = body_json(response).await;
    assert_eq!(
        location,
        format!("/v1/keys/{}", body["id"].as_str().unwrap())
    );
    body
}

async fn status(h: &Harness, method: Method, uri: &str, bearer: &str) -> StatusCode {
    let body = (method == Method::POST).then(|| json!({"payload": {"n": 1}}));
    send(h, method, uri, bearer, body).await.status()
}

/// The secret of an issued key `trb_<id>_<secret>` (the secret may hold `_` too).
fn secret_of(key: &str) -> &str {
    let rest = key.strip_prefix("trb_").unwrap();
    rest.split_once('_').unwrap().1
}

async fn assert_unauthorized(h: &Harness, bearer: &str) {
    let response = send(h, Method::GET, "/v1/streams", bearer, None).await;
    assert!(
        response.headers()[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .starts_with("Bearer"),
    );
    problem(response, StatusCode::UNAUTHORIZED).await;
}

// ------------------------------------------------------------------------------ issued keys

#[tokio::test]
async fn issued_keys_are_shown_once_stored_as_hashes_and_scoped() {
    let h = harness_with_auth(Duration::from_secs(5)).await;
    let reader = issue(&h, json!({"scopes": ["read"], "description": "dashboards"})).await;
    let key = reader["key"].as_str().unwrap();
    let id = reader["id"].as_str().unwrap();
    assert!(key.starts_with(&format!("trb_{id}_")), "{key}");
    assert_eq!(reader["scopes"], json!(["read"]));
    assert_eq!(reader["tenant"], "default");
    assert_eq!(reader["active"], true);

    assert_unauthorized(&h, &format!("{key}x")).await;
    // Read scope: reads pass, ingestion and key management are 403 naming the scope.
    assert_eq!(
        status(&h, Method::GET, "/v1/streams", key).await,
        StatusCode::OK
    );
    let response = send(
        &h,
        Method::POST,
        "/v1/streams/t/events",
        key,
        Some(json!({"payload": {}})),
    )
    .await;
    let body = problem(response, StatusCode::FORBIDDEN).await;
    assert_eq!(body["required_scope"], "ingest");
    let response = send(&h, Method::GET, "/v1/keys", key, None).await;
    let body = problem(response, StatusCode::FORBIDDEN).await;
    assert_eq!(body["required_scope"], "admin");
    // A 403 lets nothing through.
    assert!(h.events_in_log("t", common::PARTITIONS, 0).await.is_empty());
    // Refusals are counted by reason.
    let metrics = h.state.metrics.render();
    for reason in ["forbidden", "invalid"] {
        let line = format!("tributary_auth_refused_total{{reason=\"{reason}\"}}");
        assert!(metrics.contains(&line), "{line} missing from:\n{metrics}");
    }

    // Ingest scope: the other way round.
    let writer = issue(&h, json!({"scopes": ["ingest"]})).await;
    let writer_key = writer["key"].as_str().unwrap();
    assert_eq!(
        status(&h, Method::POST, "/v1/streams/t/events", writer_key).await,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        status(&h, Method::GET, "/v1/streams", writer_key).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(h.events_in_log("t", common::PARTITIONS, 1).await.len(), 1);

    // An issued admin key does everything.
    let admin = issue(&h, json!({"scopes": ["admin"]})).await;
    let admin_key = admin["key"].as_str().unwrap();
    assert_eq!(
        status(&h, Method::GET, "/v1/streams", admin_key).await,
        StatusCode::OK
    );
    assert_eq!(
        status(&h, Method::GET, "/v1/keys", admin_key).await,
        StatusCode::OK
    );

    // The listing shows no secret and no hash; the store holds the SHA-256 only.
    let response = send(&h, Method::GET, "/v1/keys", KEY, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let listing = body_json(response).await;
    let keys = listing["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 3);
    assert_eq!(keys[2]["id"], reader["id"], "newest first");
    assert_eq!(keys[2]["description"], "dashboards");
    let text = listing.to_string();
    for secret in [key, writer_key, admin_key] {
        let secret_part = secret_of(secret);
        assert!(!text.contains(secret_part), "a secret is listed: {text}");
    }
    for member in ["key", "secret_hash", "hash"] {
        assert!(
            keys.iter().all(|k| k.get(member).is_none()),
            "{member} listed"
        );
    }
    let stored: Vec<u8> = sqlx::query_scalar("SELECT secret_hash FROM api_keys WHERE id = ?")
        .bind(id)
        .fetch_one(h.store.pool())
        .await
        .unwrap();
    let secret = URL_SAFE_NO_PAD.decode(secret_of(key)).unwrap();
    use sha2::Digest as _;
    assert_eq!(stored, sha2::Sha256::digest(&secret).to_vec());
}

#[tokio::test]
async fn tampered_unknown_and_malformed_keys_are_401() {
    let h = harness_with_auth(Duration::from_secs(5)).await;
    let issued = issue(&h, json!({"scopes": ["admin"]})).await;
    let key = issued["key"].as_str().unwrap();
    assert_eq!(
        status(&h, Method::GET, "/v1/streams", key).await,
        StatusCode::OK
    );
    // One character in the middle of the secret changed: a well-formed key whose hash
    // does not match.
    let at = key.len() - 10;
    let changed = if &key[at..=at] == "A" { "B" } else { "A" };
    let tampered = format!("{}{changed}{}", &key[..at], &key[at + 1..]);
    let secret = secret_of(key);
    let prefix = &key[..key.len() - secret.len() - 1];
    let other_id = format!("trb_{}_{secret}", "0".repeat(24));
    for bad in [
        tampered.as_str(),
        other_id.as_str(),
        &format!("{prefix}_"),
        &key[..key.len() - 2],
        "trb_",
        "not-a-key",
    ] {
        assert_unauthorized(&h, bad).await;
    }
}

#[tokio::test]
async fn revoked_keys_fail_at_once_here_and_within_the_cache_ttl_elsewhere() {
    let ttl = Duration::from_millis(1500);
    let h = harness_with_auth(ttl).await;
    // Another node over the same store.
    let mut other = harness().await;
    other.state.auth = ApiKeys::new([KEY]).with_store(Arc::new(SqlKeyStore::new(&h.store)), ttl);
    other.router = tributary_gateway::router(other.state.clone());

    let issued = issue(&h, json!({"scopes": ["read"]})).await;
    let (id, key) = (
        issued["id"].as_str().unwrap(),
        issued["key"].as_str().unwrap(),
    );
    assert_eq!(
        status(&h, Method::GET, "/v1/streams", key).await,
        StatusCode::OK
    );
    assert_eq!(
        status(&other, Method::GET, "/v1/streams", key).await,
        StatusCode::OK
    );

    let response = send(&h, Method::DELETE, &format!("/v1/keys/{id}"), KEY, None).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    // At once on the node that revoked it.
    assert_unauthorized(&h, key).await;
    // The other node cached it: it may pass until the entry expires, never after.
    let revoked_at = std::time::Instant::now();
    let mut passed = 0;
    loop {
        let answer = status(&other, Method::GET, "/v1/streams", key).await;
        if answer == StatusCode::UNAUTHORIZED {
            break;
        }
        assert_eq!(answer, StatusCode::OK);
        passed += 1;
        assert!(
            revoked_at.elapsed() <= ttl + Duration::from_millis(200),
            "still passing after the TTL"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(passed > 0, "the other node did not cache the key");

    // Listed as revoked; revoking again is a no-op; an unknown id is 404.
    let listing = body_json(send(&h, Method::GET, "/v1/keys", KEY, None).await).await;
    assert_eq!(listing["keys"][0]["active"], false);
    assert!(listing["keys"][0]["revoked_at"].is_string());
    let again = send(&h, Method::DELETE, &format!("/v1/keys/{id}"), KEY, None).await;
    assert_eq!(again.status(), StatusCode::NO_CONTENT);
    let unknown = send(&h, Method::DELETE, "/v1/keys/nope", KEY, None).await;
    problem(unknown, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn keys_expire_at_their_expiry() {
    let h = harness_with_auth(Duration::from_secs(5)).await;
    let expires = epoch_millis_after(Duration::from_millis(1500));
    let issued = issue(&h, json!({"scopes": ["read"], "expires_at": expires})).await;
    let key = issued["key"].as_str().unwrap();
    assert_eq!(
        status(&h, Method::GET, "/v1/streams", key).await,
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_millis(1700)).await;
    // Still in the cache, but past its expiry.
    assert_unauthorized(&h, key).await;
    let listing = body_json(send(&h, Method::GET, "/v1/keys", KEY, None).await).await;
    assert_eq!(listing["keys"][0]["active"], false);
}

/// Epoch milliseconds `after` from now.
fn epoch_millis_after(after: Duration) -> i64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + after;
    i64::try_from(now.as_millis()).unwrap()
}

#[tokio::test]
async fn admin_payloads_are_checked_and_unknown_fields_refused() {
    let h = harness_with_auth(Duration::from_secs(5)).await;
    let cases = [
        (
            json!({"scopes": ["read"], "admin": true}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "admin",
        ),
        (
            json!({"scopes": ["write"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "write",
        ),
        (
            json!({"description": "x"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "scopes",
        ),
        (
            json!({"scopes": "read"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "scopes",
        ),
        (json!({"scopes": []}), StatusCode::BAD_REQUEST, "scopes"),
        (
            json!({"scopes": ["read"], "expires_at": 1000}),
            StatusCode::BAD_REQUEST,
            "expires_at",
        ),
        (
            json!({"scopes": ["read"], "description": "d".repeat(201)}),
            StatusCode::BAD_REQUEST,
            "description",
        ),
    ];
    for (body, expected, mentioned) in cases {
        let response = send(&h, Method::POST, "/v1/keys", KEY, Some(body.clone())).await;
        let problem = problem(response, expected).await;
        assert!(problem.to_string().contains(mentioned), "{body}: {problem}");
    }
    // Malformed JSON, and no JSON content type.
    let request = Request::post("/v1/keys")
        .header(header::AUTHORIZATION, format!("Bearer {KEY}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{\"scopes\": ["))
        .unwrap();
    problem(h.send(request).await, StatusCode::BAD_REQUEST).await;
    let request = Request::post("/v1/keys")
        .header(header::AUTHORIZATION, format!("Bearer {KEY}"))
        .body(Body::from(r#"{"scopes": ["read"]}"#))
        .unwrap();
    problem(h.send(request).await, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    // Nothing was issued.
    let listing = body_json(send(&h, Method::GET, "/v1/keys", KEY, None).await).await;
    assert_eq!(listing["keys"], json!([]));
}

#[tokio::test]
async fn without_a_key_store_keys_cannot_be_issued() {
    let h = harness().await;
    let response = send(
        &h,
        Method::POST,
        "/v1/keys",
        KEY,
        Some(json!({"scopes": ["read"]})),
    )
    .await;
    problem(response, StatusCode::NOT_IMPLEMENTED).await;
    // Unauthenticated: 401 first.
    let request = Request::get("/v1/keys").body(Body::empty()).unwrap();
    problem(h.send(request).await, StatusCode::UNAUTHORIZED).await;
}

// ------------------------------------------------------------------------------------ JWT

#[tokio::test]
async fn valid_jwts_pass_with_their_scopes() {
    let h = harness_with_auth(Duration::from_secs(5)).await;
    let jwt = token(&claims());
    assert_eq!(
        status(&h, Method::GET, "/v1/streams", &jwt).await,
        StatusCode::OK
    );
    assert_eq!(
        status(&h, Method::POST, "/v1/streams/t/events", &jwt).await,
        StatusCode::ACCEPTED
    );
    // No admin scope in the token.
    assert_eq!(
        status(&h, Method::GET, "/v1/keys", &jwt).await,
        StatusCode::FORBIDDEN
    );
    // Scopes as a list, and a JWKS of one key serves tokens without kid.
    let mut listed = claims();
    listed["scope"] = json!(["admin"]);
    let jwt = rs256(&listed, "jwt_rsa.der", None);
    assert_eq!(
        status(&h, Method::GET, "/v1/keys", &jwt).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_principal_is_the_subject_with_the_claimed_scopes_and_tenant() {
    let mut settings = settings(JwksSource::File(fixture("jwks.json")));
    settings.tenant_claim = Some("org".to_owned());
    let verifier = JwtVerifier::new(settings).await.unwrap();
    let mut claims = claims();
    claims["org"] = json!("acme");
    let principal: Principal = verifier.verify(&token(&claims)).await.unwrap();
    assert_eq!(principal.id, "user-1");
    assert_eq!(principal.credential, Credential::Jwt);
    assert_eq!(principal.tenant, "acme");
    assert_eq!(principal.key_id(), None);
    assert_eq!(
        principal
            .scopes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>(),
        ["ingest", "read"]
    );
}

#[tokio::test]
async fn forged_expired_early_and_misaddressed_jwts_are_401() {
    let h = harness_with_auth(Duration::from_secs(5)).await;
    let verifier = JwtVerifier::new(settings(JwksSource::File(fixture("jwks.json"))))
        .await
        .unwrap();
    let with = |member: &str, value: Value| {
        let mut c = claims();
        c[member] = value;
        c
    };
    let without = |member: &str| {
        let mut c = claims();
        c.as_object_mut().unwrap().remove(member);
        c
    };
    let cases: Vec<(&str, String)> = vec![
        // Signed by another key, claiming the published key's kid.
        (
            "forged",
            rs256(&claims(), "jwt_rsa_other.der", Some("test-key-1")),
        ),
        ("expired", token(&with("exp", json!(now() - 3600)))),
        (
            "expired beyond the leeway",
            token(&with("exp", json!(now() - 30))),
        ),
        ("not yet valid", token(&with("nbf", json!(now() + 3600)))),
        ("wrong audience", token(&with("aud", json!("someone-else")))),
        (
            "wrong issuer",
            token(&with("iss", json!("https://evil.test"))),
        ),
        ("no exp", token(&without("exp"))),
        ("no sub", token(&without("sub"))),
        ("unknown kid", rs256(&claims(), "jwt_rsa.der", Some("nope"))),
    ];
    for (what, jwt) in &cases {
        assert!(verifier.verify(jwt).await.is_err(), "{what} accepted");
        let response = send(&h, Method::GET, "/v1/streams", jwt, None).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{what}");
        problem(response, StatusCode::UNAUTHORIZED).await;
    }
    // An audience list holding ours passes; a tampered payload does not.
    let listed = token(&with("aud", json!(["other", AUDIENCE])));
    assert!(verifier.verify(&listed).await.is_ok());
    let good = token(&claims());
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    let mut payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
    payload["scope"] = json!("admin");
    parts[1] = URL_SAFE_NO_PAD.encode(payload.to_string());
    assert!(matches!(
        verifier.verify(&parts.join(".")).await,
        Err(JwtError::Invalid(_))
    ));
}

#[tokio::test]
async fn alg_none_and_hs_rs_key_confusion_are_refused() {
    let h = harness_with_auth(Duration::from_secs(5)).await;
    let verifier = JwtVerifier::new(settings(JwksSource::File(fixture("jwks.json"))))
        .await
        .unwrap();
    let encode = |value: &Value| URL_SAFE_NO_PAD.encode(value.to_string());
    let payload = encode(&claims());
    // `alg: none`, with and without a signature.
    for header in [
        json!({"alg": "none", "typ": "JWT", "kid": "test-key-1"}),
        json!({"alg": "None", "typ": "JWT"}),
    ] {
        for signature in ["", "c2ln"] {
            let jwt = format!("{}.{payload}.{signature}", encode(&header));
            assert!(matches!(
                verifier.verify(&jwt).await,
                Err(JwtError::Header(_))
            ));
            assert_unauthorized(&h, &jwt).await;
        }
    }
    // HS256 with the RSA public key as the HMAC secret: refused by the pinned algorithm.
    let public = std::fs::read(fixture("jwt_rsa_public.der")).unwrap();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("test-key-1".to_owned());
    let confused =
        jsonwebtoken::encode(&header, &claims(), &EncodingKey::from_secret(&public)).unwrap();
    assert!(matches!(
        verifier.verify(&confused).await,
        Err(JwtError::Algorithm(Algorithm::HS256))
    ));
    assert_unauthorized(&h, &confused).await;
    // Even with HS256 pinned too, an RSA key never checks an HMAC signature.
    let mut both = settings(JwksSource::File(fixture("jwks.json")));
    both.algorithms = vec![Algorithm::RS256, Algorithm::HS256];
    let lenient = JwtVerifier::new(both).await.unwrap();
    assert!(matches!(
        lenient.verify(&confused).await,
        Err(JwtError::KeyMismatch { .. })
    ));
    // RS512 is not pinned, even signed by the right key.
    let mut header = Header::new(Algorithm::RS512);
    header.kid = Some("test-key-1".to_owned());
    let key = EncodingKey::from_rsa_der(&std::fs::read(fixture("jwt_rsa.der")).unwrap());
    let rs512 = jsonwebtoken::encode(&header, &claims(), &key).unwrap();
    assert!(matches!(
        verifier.verify(&rs512).await,
        Err(JwtError::Algorithm(Algorithm::RS512))
    ));
}

/// A JWKS served on loopback: its document can be swapped, its reads are counted.
struct JwksServer {
    url: String,
    document: Arc<Mutex<String>>,
    reads: Arc<AtomicUsize>,
}

async fn jwks_server(file: &str) -> JwksServer {
    let document = Arc::new(Mutex::new(std::fs::read_to_string(fixture(file)).unwrap()));
    let reads = Arc::new(AtomicUsize::new(0));
    let (served, counted) = (document.clone(), reads.clone());
    let app = axum::Router::new().route(
        "/.well-known/jwks.json",
        axum::routing::get(move || {
            let (served, counted) = (served.clone(), counted.clone());
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                let text = served.lock().unwrap().clone();
                ([(header::CONTENT_TYPE, "application/json")], text)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/.well-known/jwks.json",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    JwksServer {
        url,
        document,
        reads,
    }
}

#[tokio::test]
async fn a_jwks_url_is_cached_and_refreshed_on_unknown_kids_at_a_bounded_rate() {
    let server = jwks_server("jwks.json").await;
    let mut url_settings = settings(JwksSource::Url(server.url.clone()));
    url_settings.min_refresh_interval = Duration::from_secs(1);
    let verifier = JwtVerifier::new(url_settings).await.unwrap();
    assert_eq!(server.reads.load(Ordering::SeqCst), 1);
    // Cached: many tokens, no more reads.
    for _ in 0..5 {
        verifier.verify(&token(&claims())).await.unwrap();
    }
    assert_eq!(server.reads.load(Ordering::SeqCst), 1);

    // The provider rotates to another key; a token of the new key makes one read.
    *server.document.lock().unwrap() = std::fs::read_to_string(fixture("jwks_other.json")).unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let rotated = rs256(&claims(), "jwt_rsa_other.der", Some("test-key-2"));
    let principal = verifier.verify(&rotated).await.unwrap();
    assert_eq!(principal.id, "user-1");
    assert_eq!(server.reads.load(Ordering::SeqCst), 2);

    // A burst of unknown kids (concurrent too) reads at most once per interval.
    let forged = rs256(&claims(), "jwt_rsa.der", Some("unknown-kid"));
    let burst = futures::future::join_all((0..20).map(|_| verifier.verify(&forged))).await;
    assert!(
        burst
            .iter()
            .all(|r| matches!(r, Err(JwtError::UnknownKey(_))))
    );
    assert_eq!(
        server.reads.load(Ordering::SeqCst),
        2,
        "read again within the interval"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let burst = futures::future::join_all((0..20).map(|_| verifier.verify(&forged))).await;
    assert!(burst.iter().all(Result::is_err));
    assert_eq!(
        server.reads.load(Ordering::SeqCst),
        3,
        "one read for the whole burst"
    );
    // The old key is gone from the cache.
    assert!(verifier.verify(&token(&claims())).await.is_err());
}

#[tokio::test]
async fn an_unreadable_jwks_file_is_an_error_and_an_unreachable_url_is_not() {
    let missing = JwtVerifier::new(settings(JwksSource::File(fixture("missing.json")))).await;
    assert!(matches!(missing, Err(JwtError::Jwks { .. })));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let verifier = JwtVerifier::new(settings(JwksSource::Url(format!(
        "http://127.0.0.1:{port}/jwks.json"
    ))))
    .await
    .unwrap();
    assert!(matches!(
        verifier.verify(&token(&claims())).await,
        Err(JwtError::UnknownKey(_))
    ));
}

#[tokio::test]
async fn anonymous_requests_pass_only_when_let_through_and_only_with_their_scopes() {
    let mut h = harness().await;
    let request = |method: Method, uri: &str, authorization: Option<&str>| {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(value) = authorization {
            request = request.header(header::AUTHORIZATION, value);
        }
        request
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(r#"{"payload": {}}"#))
            .unwrap()
    };
    // By default a request without a credential is a 401.
    let response = h.send(request(Method::GET, "/v1/streams", None)).await;
    problem(response, StatusCode::UNAUTHORIZED).await;

    h.state.auth = ApiKeys::new([KEY]).with_anonymous([Scope::Read, Scope::Admin]);
    assert_eq!(
        h.state
            .auth
            .anonymous_scopes()
            .iter()
            .copied()
            .collect::<Vec<_>>(),
        [Scope::Read],
        "admin is never anonymous"
    );
    h.router = tributary_gateway::router(h.state.clone());
    let response = h.send(request(Method::GET, "/v1/streams", None)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = h
        .send(request(
            Method::GET,
            "/v1/pipelines/clicks-per-minute/results",
            None,
        ))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    // Beyond its scopes: 403.
    let response = h
        .send(request(Method::POST, "/v1/streams/t/events", None))
        .await;
    let body = problem(response, StatusCode::FORBIDDEN).await;
    assert_eq!(body["required_scope"], "ingest");
    let response = h.send(request(Method::GET, "/v1/keys", None)).await;
    problem(response, StatusCode::FORBIDDEN).await;
    // A credential that is sent is checked: a wrong one, or one of another scheme, is a 401.
    for wrong in ["Bearer not-a-key", "Basic dXNlcjpwYXNz", "Bearer"] {
        let response = h
            .send(request(Method::GET, "/v1/streams", Some(wrong)))
            .await;
        problem(response, StatusCode::UNAUTHORIZED).await;
    }
    // A valid one keeps its own scopes.
    let response = h
        .send(request(
            Method::POST,
            "/v1/streams/t/events",
            Some(&format!("Bearer {KEY}")),
        ))
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
}
