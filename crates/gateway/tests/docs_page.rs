//! The API reference page (`/docs`, `/ui/docs.js`, `/ui/docs.css`): open, embedded, served
//! with the live page's strict Content-Security-Policy, fetching nothing from elsewhere; and
//! the document it renders (`/openapi.json`) lists the error answers of every operation:
//! 414 and 431 everywhere (the edge refuses large heads on any route), 413 where a body is
//! read, 429 on `/v1` (the rate limit), 503 where the answer needs a backing service or room
//! for a body or a page, and 405 once, as a shared response (it is never the answer to a
//! documented operation, whose method is served by definition) that every path gives for
//! a method it does not serve.

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::Value;

use common::{authed, body_json, body_text, harness, problem};

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

async fn get_open(h: &common::Harness, uri: &str) -> axum::response::Response {
    h.send(Request::get(uri).body(Body::empty()).unwrap()).await
}

/// The served document (with the responses added at serve time).
async fn served_document(h: &common::Harness) -> Value {
    let response = get_open(h, "/openapi.json").await;
    assert_eq!(response.status(), StatusCode::OK);
    body_json(response).await
}

/// Every operation of `doc`: (method, path, operation).
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            if let Some(op) = item.get(method) {
                out.push((method.to_owned(), path.clone(), op.clone()));
            }
        }
    }
    assert!(out.len() >= 10, "{} operations", out.len());
    out
}

#[tokio::test]
async fn the_docs_page_and_its_assets_are_served_without_a_credential_with_a_strict_csp() {
    let h = harness().await;
    for (uri, content_type, marker) in [
        (
            "/docs",
            "text/html; charset=utf-8",
            r#"<script src="/ui/docs.js" defer>"#,
        ),
        (
            "/ui/docs.js",
            "text/javascript; charset=utf-8",
            "\"/openapi.json\"",
        ),
        (
            "/ui/docs.css",
            "text/css; charset=utf-8",
            "details.operation",
        ),
    ] {
        let response = get_open(&h, uri).await;
        assert_eq!(response.status(), StatusCode::OK, "{uri}");
        let headers = response.headers().clone();
        assert_eq!(headers[header::CONTENT_TYPE], content_type, "{uri}");
        assert_eq!(headers[header::CONTENT_SECURITY_POLICY], CSP, "{uri}");
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{uri}");
        assert_eq!(headers[header::REFERRER_POLICY], "no-referrer", "{uri}");
        let body = body_text(response).await;
        assert!(body.contains(marker), "{uri} lacks {marker}");
        // Users may be offline: nothing is fetched from another origin.
        assert!(
            !body.contains("http://") && !body.contains("https://") && !body.contains("//cdn"),
            "{uri} refers to another origin"
        );
    }
    // No inline script or style: the CSP would block them.
    let page = body_text(get_open(&h, "/docs").await).await;
    assert!(!page.contains("<script>") && !page.contains("<style") && !page.contains("style="));
    // The key is kept in the tab (sessionStorage), never in localStorage or a cookie.
    let script = body_text(get_open(&h, "/ui/docs.js").await).await;
    assert!(script.contains("sessionStorage") && script.contains("Bearer "));
    assert!(!script.contains("localStorage") && !script.contains("document.cookie"));
    assert!(
        !script.contains("innerHTML"),
        "the page builds nodes, not markup"
    );
    // Not an API route; other methods are the usual problem.
    assert!(
        tributary_gateway::routes()
            .iter()
            .all(|(_, path)| *path != "/docs")
    );
    let response = h
        .send(Request::post("/docs").body(Body::empty()).unwrap())
        .await;
    problem(response, StatusCode::METHOD_NOT_ALLOWED).await;
}

#[tokio::test]
async fn every_operation_lists_the_errors_it_can_answer() {
    let h = harness().await;
    let doc = served_document(&h).await;
    let shared = doc["components"]["responses"].as_object().unwrap();
    for name in [
        "MethodNotAllowed",
        "PayloadTooLarge",
        "UriTooLong",
        "TooManyRequests",
        "HeaderFieldsTooLarge",
        "Unavailable",
    ] {
        let schema = &shared[name]["content"]["application/problem+json"]["schema"]["$ref"];
        assert_eq!(schema, "#/components/schemas/Problem", "{name}");
    }
    let mut without_503 = Vec::new();
    for (method, path, op) in operations(&doc) {
        let responses = op["responses"].as_object().unwrap();
        let has = |code: &str| responses.contains_key(code);
        let at = format!("{method} {path}");
        assert!(has("414") && has("431"), "{at}: 414 and 431");
        assert_eq!(
            has("413"),
            op.get("requestBody").is_some(),
            "{at}: 413 exactly where a body is read"
        );
        assert_eq!(has("429"), path.starts_with("/v1/"), "{at}: 429 on /v1");
        assert!(
            !has("405"),
            "{at}: 405 is never the answer to a served method"
        );
        if !has("503") {
            without_503.push(at.clone());
        }
        // Every shared response it refers to exists.
        for response in responses.values() {
            if let Some(reference) = response["$ref"].as_str() {
                let name = reference.strip_prefix("#/components/responses/").unwrap();
                assert!(shared.contains_key(name), "{at}: {reference}");
            }
        }
    }
    // These need no backing service (or degrade without one), read no body and build no
    // page of stored items, so they never answer 503; every other operation may.
    without_503.sort();
    assert_eq!(
        without_503,
        [
            "get /healthz",
            "get /metrics",
            "get /openapi.json",
            "get /v1/pipelines",
            "get /v1/streams",
            "get /v1/streams/{stream}",
        ]
    );
}

#[tokio::test]
async fn a_method_a_documented_path_does_not_serve_is_a_405_problem() {
    let h = harness().await;
    let doc = served_document(&h).await;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let unserved = METHODS
            .iter()
            .find(|m| item.get(**m).is_none())
            .expect("a path serving every method");
        let uri = path
            .replace("{stream}", "t")
            .replace("{name}", "clicks-per-minute")
            .replace("{id}", "k1");
        let method = Method::from_bytes(unserved.to_uppercase().as_bytes()).unwrap();
        let response = h
            .send(authed(method, &uri).body(Body::empty()).unwrap())
            .await;
        let body = problem(response, StatusCode::METHOD_NOT_ALLOWED).await;
        assert_eq!(body["instance"], uri.as_str(), "{unserved} {path}");
    }
}
