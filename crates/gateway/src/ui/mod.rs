//! The live page: `GET /` (an HTML page), `GET /ui/app.js` and `GET /ui/app.css`, embedded
//! in the binary (no build step, nothing fetched from elsewhere); and the API reference page:
//! `GET /docs`, `GET /ui/docs.js` and `GET /ui/docs.css`, the same way.
//!
//! Contract:
//! - The three routes are open, like `/healthz`: the page holds no data. Its script reads
//!   the REST API (`GET /v1/pipelines`, `GET /v1/pipelines/{name}/results`,
//!   `GET /v1/dead-letters`) with a bearer key the user pastes in (kept in the tab's
//!   `sessionStorage`; a `#key=...` fragment is taken too, then removed from the address
//!   bar), and the open `GET /metrics` for each pipeline's lag; it polls every second.
//! - `/docs` renders the open `GET /openapi.json` (operations by tag, parameters, bodies,
//!   responses, `$ref`s resolved) and sends an operation's request from its "Try it" form,
//!   with the same tab-kept key as a bearer credential on operations that need one.
//! - Every answer carries a strict `Content-Security-Policy`: scripts, styles and requests
//!   from this origin only, no inline script or style, no frames, no forms posted, no
//!   plugins; and `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer`,
//!   `Cache-Control: no-cache` (a new binary serves its new page).
//! - These routes are not API routes: they are not in [`crate::routes()`] nor in
//!   `openapi.json`.

use axum::Router;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderName};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::AppState;

/// The page's Content-Security-Policy.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

const INDEX_HTML: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");
const APP_CSS: &str = include_str!("app.css");
const DOCS_HTML: &str = include_str!("docs.html");
const DOCS_JS: &str = include_str!("docs.js");
const DOCS_CSS: &str = include_str!("docs.css");

/// The routes of the page, open (no credential).
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/ui/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/ui/app.css",
            get(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
        )
        .route(
            "/docs",
            get(|| async { asset("text/html; charset=utf-8", DOCS_HTML) }),
        )
        .route(
            "/ui/docs.js",
            get(|| async { asset("text/javascript; charset=utf-8", DOCS_JS) }),
        )
        .route(
            "/ui/docs.css",
            get(|| async { asset("text/css; charset=utf-8", DOCS_CSS) }),
        )
}

/// An embedded asset with the page's security headers.
fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, content_type),
            (
                HeaderName::from_static("content-security-policy"),
                CONTENT_SECURITY_POLICY,
            ),
            (HeaderName::from_static("x-content-type-options"), "nosniff"),
            (HeaderName::from_static("referrer-policy"), "no-referrer"),
            (CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}
