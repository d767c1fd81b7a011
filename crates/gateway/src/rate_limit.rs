//! Rate limits of the `/v1` routes, per credential and per client address, through the
//! [`RateLimiter`] port (counts on Redis shared by every gateway, or in process).
//!
//! Contract:
//! - Every request that passed authentication is checked twice, at once: its credential
//!   against the quota of the scope its route requires ([`required_scope`]: `admin` for
//!   `/v1/keys`, `read` for other `GET`s, `ingest` for the rest), under the key
//!   `key:{scope}:{tenant}:{id}`, and its client address against the address quota,
//!   under `addr:{ip}`. A request refused by either is answered 429 (problem+json, type
//!   `urn:tributary:problem:rate-limited`) with `Retry-After` (whole seconds, rounded up)
//!   and never reaches its handler. Both checks count the request, also when the other
//!   refuses it (they are one call, `RateLimiter::check_all`: at most one round trip to
//!   Redis, none while a gateway decides on its view of the counts, `[rate_limit]
//!   sync_interval`).
//! - The client address is the TCP peer's ([`ConnectInfo`]); only when the peer is one of
//!   the configured trusted proxies (HAProxy in front, `deploy/haproxy`, adds
//!   `X-Forwarded-For`) is it the right-most address of `X-Forwarded-For` that is not a
//!   trusted proxy itself. A request without a peer address (a router called directly) is
//!   limited per credential only.
//! - Every response of a limited route, 429 or not, carries the fields of
//!   draft-ietf-httpapi-ratelimit-headers-10: `RateLimit-Policy` (the two quota policies,
//!   named after the scope and `"address"`, each with `q` = the burst and `w` = the
//!   seconds that burst takes to refill) and `RateLimit` (per policy, `r` = the requests
//!   left now, `t` = the seconds until the burst is full again).
//! - The limiter never fails a request: the Redis limiter falls back to the in-process one
//!   (`tributary_connectors::rate_limit`); an error of the limiter itself lets the request
//!   through, logged.
//! - The counter `tributary_rate_limited_total{scope, reason}` counts refused requests
//!   (`reason`: `key` or `address`).
//!
//! The credential is the request's [`Principal`] (its tenant and key id, or JWT subject),
//! never the secret; a request without one (no route authenticated it) is limited per
//! address only.

use std::fmt::{self, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tributary_core::ports::{Decision, Quota, RateLimiter, Scope};

use crate::auth::{Principal, required_scope};
use crate::error::ApiError;

/// The `RateLimit-Policy` field.
pub const RATELIMIT_POLICY: &str = "ratelimit-policy";
/// The `RateLimit` field.
pub const RATELIMIT: &str = "ratelimit";

/// The quotas and the client-address rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitSettings {
    /// The quota of one credential sending events.
    pub ingest: Quota,
    /// The quota of one credential reading.
    pub read: Quota,
    /// The quota of one credential managing keys.
    pub admin: Quota,
    /// The quota of one client address, whatever its credentials.
    pub address: Quota,
    /// Peers whose `X-Forwarded-For` names the client (the load balancers in front).
    pub trusted_proxies: Vec<IpAddr>,
}

impl RateLimitSettings {
    fn quota(&self, scope: Scope) -> Quota {
        match scope {
            Scope::Ingest => self.ingest,
            Scope::Read => self.read,
            Scope::Admin => self.admin,
        }
    }
}

/// The gateway's rate limits: on (a limiter and its settings) or off. Cheap to clone.
#[derive(Clone, Default)]
pub struct RateLimit {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    limiter: Arc<dyn RateLimiter>,
    settings: RateLimitSettings,
}

impl fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            None => f.write_str("RateLimit(off)"),
            Some(inner) => f
                .debug_struct("RateLimit")
                .field("limiter", &inner.limiter)
                .field("settings", &inner.settings)
                .finish(),
        }
    }
}

impl RateLimit {
    /// No rate limit.
    #[must_use]
    pub fn off() -> Self {
        Self::default()
    }

    /// Limits through `limiter` with `settings`.
    #[must_use]
    pub fn new(limiter: Arc<dyn RateLimiter>, settings: RateLimitSettings) -> Self {
        Self {
            inner: Some(Arc::new(Inner { limiter, settings })),
        }
    }

    /// Whether requests are limited.
    #[must_use]
    pub fn is_on(&self) -> bool {
        self.inner.is_some()
    }
}

/// One policy's decision, for the headers.
struct Applied {
    name: &'static str,
    quota: Quota,
    decision: Decision,
}

/// Middleware: checks the request's credential and address (see the module's contract).
pub(crate) async fn limit(
    State(limits): State<RateLimit>,
    request: Request,
    next: Next,
) -> Response {
    let Some(inner) = limits.inner.as_deref() else {
        return next.run(request).await;
    };
    let path = request.extensions().get::<MatchedPath>().map_or_else(
        || request.uri().path().to_owned(),
        |p| p.as_str().to_owned(),
    );
    let scope = required_scope(request.method(), &path);
    let quota = inner.settings.quota(scope);
    let credential = request
        .extensions()
        .get::<Principal>()
        .map(|p| format!("key:{}:{}:{}", scope.as_str(), p.tenant, p.id));
    let address =
        client_address(&request, &inner.settings.trusted_proxies).map(|ip| format!("addr:{ip}"));
    // The policies that apply, checked in one call (at most one round trip to Redis).
    let mut policies = Vec::with_capacity(2);
    let mut checks = Vec::with_capacity(2);
    if let Some(key) = &credential {
        policies.push((scope.as_str(), quota));
        checks.push((key.as_str(), quota));
    }
    if let Some(key) = &address {
        policies.push(("address", inner.settings.address));
        checks.push((key.as_str(), inner.settings.address));
    }
    let applied: Vec<Applied> = match inner.limiter.check_all(&checks).await {
        Ok(decisions) => policies
            .into_iter()
            .zip(decisions)
            .map(|((name, quota), decision)| Applied {
                name,
                quota,
                decision,
            })
            .collect(),
        Err(error) => {
            tracing::warn!(
                error = %crate::error::error_chain(&error),
                "rate limiter failed: request let through"
            );
            Vec::new()
        }
    };
    let refused = applied
        .iter()
        .filter(|a| !a.decision.allowed)
        .max_by_key(|a| a.decision.retry_after);
    let mut response = match refused {
        Some(refused) => {
            let reason = if refused.name == "address" {
                "address"
            } else {
                "key"
            };
            metrics::counter!("tributary_rate_limited_total", "scope" => scope.as_str(), "reason" => reason)
                .increment(1);
            ApiError::RateLimited {
                policy: refused.name,
                retry_after: refused.decision.retry_after,
            }
            .into_response()
        }
        None => next.run(request).await,
    };
    write_headers(response.headers_mut(), &applied);
    response
}

/// The `RateLimit-Policy` and `RateLimit` fields of `applied`.
fn write_headers(headers: &mut HeaderMap, applied: &[Applied]) {
    if applied.is_empty() {
        return;
    }
    let mut policy = String::new();
    let mut state = String::new();
    for (i, a) in applied.iter().enumerate() {
        let separator = if i == 0 { "" } else { ", " };
        let window = seconds_up(a.quota.span_micros()).max(1);
        let reset = seconds_up(u64::try_from(a.decision.reset.as_micros()).unwrap_or(u64::MAX));
        let _ = write!(
            policy,
            "{separator}\"{}\";q={};w={window}",
            a.name,
            a.quota.burst()
        );
        let _ = write!(
            state,
            "{separator}\"{}\";r={};t={reset}",
            a.name, a.decision.remaining
        );
    }
    for (name, value) in [(RATELIMIT_POLICY, policy), (RATELIMIT, state)] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
}

/// Microseconds as whole seconds, rounded up.
fn seconds_up(micros: u64) -> u64 {
    micros.div_ceil(1_000_000)
}

/// The client's address (see the module's contract).
fn client_address(request: &Request, trusted_proxies: &[IpAddr]) -> Option<IpAddr> {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())?;
    if !trusted_proxies.contains(&peer) {
        return Some(peer);
    }
    // The right-most address a trusted proxy did not add is the client's as that proxy saw it.
    let forwarded = request
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in forwarded.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) if trusted_proxies.contains(&ip) => {}
            Ok(ip) => return Some(ip),
            // Not an address: what is left of the header cannot be trusted.
            Err(_) => break,
        }
    }
    Some(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request_from(peer: &str, forwarded: &[&str]) -> Request {
        let mut builder = Request::builder().uri("/v1/streams");
        for value in forwarded {
            builder = builder.header("x-forwarded-for", *value);
        }
        let mut request = builder.body(axum::body::Body::empty()).unwrap();
        request
            .extensions_mut()
            .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        request
    }

    #[test]
    fn forwarded_for_is_honoured_only_from_trusted_proxies() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let trusted = [proxy];
        let direct = request_from("192.0.2.7:5000", &["203.0.113.9"]);
        assert_eq!(
            client_address(&direct, &trusted),
            Some("192.0.2.7".parse().unwrap())
        );
        let proxied = request_from("10.0.0.1:5000", &["198.51.100.1, 203.0.113.9"]);
        assert_eq!(
            client_address(&proxied, &trusted),
            Some("203.0.113.9".parse().unwrap()),
            "the right-most hop, not what the client wrote first"
        );
        let chained = request_from("10.0.0.1:5000", &["203.0.113.9", "10.0.0.1"]);
        assert_eq!(
            client_address(&chained, &trusted),
            Some("203.0.113.9".parse().unwrap())
        );
        let garbage = request_from("10.0.0.1:5000", &["not-an-ip"]);
        assert_eq!(client_address(&garbage, &trusted), Some(proxy));
        let none = request_from("10.0.0.1:5000", &[]);
        assert_eq!(client_address(&none, &trusted), Some(proxy));
    }
}
