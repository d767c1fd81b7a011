//! The live page's routes (`/`, `/ui/app.js`, `/ui/app.css`): open, embedded, served with a
//! strict Content-Security-Policy, and not API routes (not in `routes()` nor in
//! `openapi.json`); `/v1` still needs a credential.

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::Value;

use common::{body_text, harness};

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

async fn get_open(h: &common::Harness, uri: &str) -> axum::response::Response {
    h.send(Request::get(uri).body(Body::empty()).unwrap()).await
}

#[tokio::test]
async fn the_page_and_its_assets_are_served_without_a_credential_with_a_strict_csp() {
    let h = harness().await;
    for (uri, content_type, marker) in [
        (
            "/",
            "text/html; charset=utf-8",
            r#"<script src="/ui/app.js" defer>"#,
        ),
        (
            "/ui/app.js",
            "text/javascript; charset=utf-8",
            "/v1/pipelines",
        ),
        ("/ui/app.css", "text/css; charset=utf-8", "svg.chart"),
    ] {
        let response = get_open(&h, uri).await;
        assert_eq!(response.status(), StatusCode::OK, "{uri}");
        let headers = response.headers().clone();
        assert_eq!(headers[header::CONTENT_TYPE], content_type, "{uri}");
        assert_eq!(headers[header::CONTENT_SECURITY_POLICY], CSP, "{uri}");
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{uri}");
        let body = body_text(response).await;
        assert!(body.contains(marker), "{uri} lacks {marker}");
    }
    // No inline script or style: the CSP would block them.
    let page = body_text(get_open(&h, "/").await).await;
    assert!(!page.contains("<script>") && !page.contains("<style") && !page.contains("style="));
}

#[tokio::test]
async fn v1_still_needs_a_credential() {
    let h = harness().await;
    let response = get_open(&h, "/v1/pipelines").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(h.get("/v1/pipelines").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_page_is_not_an_api_route() {
    let h = harness().await;
    assert!(
        tributary_gateway::routes()
            .iter()
            .all(|(_, path)| *path != "/" && !path.starts_with("/ui/"))
    );
    let document: Value = serde_json::from_str(tributary_gateway::openapi_json()).unwrap();
    let paths = document["paths"].as_object().unwrap();
    assert!(paths.keys().all(|p| p != "/" && !p.starts_with("/ui/")));
    // Other methods on the page, and unknown assets, are the usual problems.
    let response = h
        .send(Request::post("/").body(Body::empty()).unwrap())
        .await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    let response = get_open(&h, "/ui/nothing.js").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
}
