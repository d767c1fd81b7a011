//! Authentication and authorization of the `/v1` routes.
//!
//! Contract:
//! - A request to a `/v1` path (a route or not) passes only with `Authorization: Bearer
//!   <credential>`; otherwise it is answered 401 with `WWW-Authenticate: Bearer` and never
//!   reaches its handler. The credential is, tried in this order:
//!   1. a configured key (`TRIBUTARY_BOOTSTRAP_API_KEY`, or given to [`ApiKeys::new`]):
//!      admin scope, tenant [`DEFAULT_TENANT`]; compared in constant time (per key length)
//!      against every configured key;
//!   2. an issued key `trb_<id>_<secret>` ([`issued`]): looked up by id in the
//!      [`KeyStore`], its secret's SHA-256 compared in constant time with the stored hash;
//!      refused when revoked or expired;
//!   3. a JWT ([`jwt`]), when configured: signature checked against the JWKS with a pinned
//!      algorithm, `exp`, `nbf`, `iss` and `aud` checked.
//! - The accepted credential becomes a [`Principal`], put into the request's extensions
//!   (handlers, the GraphQL endpoint and the rate limiter read it there).
//! - Each route needs a [`Scope`] ([`required_scope`]): `/v1/keys` needs `admin`, other
//!   `GET`s `read`, other methods `ingest`; `admin` implies every scope. A valid credential
//!   lacking it is answered 403, before the handler runs. A path that is no route only
//!   needs a valid credential (then 404 or 405).
//! - Refusals are counted in `tributary_auth_refused_total{reason}` (`missing`, `invalid`,
//!   `forbidden`).

pub(crate) mod issued;
pub mod jwt;

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};
use tributary_core::ports::{DEFAULT_TENANT, KeyStore, Scope};

use crate::error::ApiError;
pub use issued::{IssuedKeys, NewKey};
pub use jwt::{JwksSource, JwtSettings, JwtVerifier};

/// How a [`Principal`] proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// A key of the configuration (or `TRIBUTARY_BOOTSTRAP_API_KEY`).
    ConfiguredKey,
    /// A key issued through `POST /v1/keys`.
    IssuedKey,
    /// A JWT bearer token.
    Jwt,
    /// No credential, on a node that lets anonymous requests through with some scopes
    /// ([`ApiKeys::with_anonymous`]).
    Anonymous,
}

/// Who made a request, and what it may do: put into the request's extensions by the
/// authentication middleware of every `/v1` route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The key's id (an issued key's public id; `cfg-` and 16 hex digits of the hash of a
    /// configured key), or the token's subject (`sub`).
    pub id: String,
    /// How it authenticated.
    pub credential: Credential,
    /// What it may do.
    pub scopes: BTreeSet<Scope>,
    /// The tenant it belongs to ([`DEFAULT_TENANT`] unless its key or token names one).
    pub tenant: String,
}

impl Principal {
    /// The id of its API key (configured or issued); `None` for a JWT.
    #[must_use]
    pub fn key_id(&self) -> Option<&str> {
        match self.credential {
            Credential::ConfiguredKey | Credential::IssuedKey => Some(&self.id),
            Credential::Jwt | Credential::Anonymous => None,
        }
    }

    /// Whether it may do what `scope` guards (it holds `scope`, or `admin`).
    #[must_use]
    pub fn allows(&self, scope: Scope) -> bool {
        scope.granted_by(&self.scopes)
    }

    /// Succeeds when it may do what `scope` guards.
    ///
    /// # Errors
    /// [`ApiError::Forbidden`] otherwise.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.allows(scope) {
            Ok(())
        } else {
            Err(ApiError::Forbidden { required: scope })
        }
    }
}

/// A configured key: its bytes and its public id.
struct ConfiguredKey {
    key: Box<[u8]>,
    id: String,
}

/// Every credential the gateway accepts: configured admin keys, issued keys (with a
/// [`KeyStore`]) and JWTs (with a [`JwtVerifier`]).
///
/// Cheap to clone. Its `Debug` output shows how many keys there are, never the keys.
#[derive(Clone, Default)]
pub struct ApiKeys {
    keys: Arc<[ConfiguredKey]>,
    issued: Option<IssuedKeys>,
    jwt: Option<Arc<JwtVerifier>>,
    /// The scopes of a request without a credential; empty: such requests are refused.
    anonymous: Arc<BTreeSet<Scope>>,
}

impl ApiKeys {
    /// The environment variable whose value, when set and not blank, is an accepted key.
    pub const BOOTSTRAP_ENV: &'static str = "TRIBUTARY_BOOTSTRAP_API_KEY";

    /// Accepts exactly `keys`, as admin keys; blank keys (after trimming) are ignored.
    pub fn new<I, K>(keys: I) -> Self
    where
        I: IntoIterator<Item = K>,
        K: AsRef<str>,
    {
        let keys: Vec<ConfiguredKey> = keys
            .into_iter()
            .filter_map(|k| {
                let key = k.as_ref().trim();
                (!key.is_empty()).then(|| ConfiguredKey {
                    key: key.as_bytes().into(),
                    id: configured_id(key),
                })
            })
            .collect();
        Self {
            keys: keys.into(),
            issued: None,
            jwt: None,
            anonymous: Arc::default(),
        }
    }

    /// Accepts the value of [`Self::BOOTSTRAP_ENV`], or no key when it is unset.
    #[must_use]
    pub fn from_bootstrap_env() -> Self {
        Self::new(std::env::var(Self::BOOTSTRAP_ENV).ok())
    }

    /// Also accepts the keys issued into `store`, caching a looked-up key for `cache_ttl`
    /// (how long a key revoked on another node may still pass here).
    #[must_use]
    pub fn with_store(mut self, store: Arc<dyn KeyStore>, cache_ttl: Duration) -> Self {
        self.issued = Some(IssuedKeys::new(store, cache_ttl));
        self
    }

    /// Also accepts the JWTs `verifier` accepts.
    #[must_use]
    pub fn with_jwt(mut self, verifier: JwtVerifier) -> Self {
        self.jwt = Some(Arc::new(verifier));
        self
    }

    /// Lets requests without a credential through with `scopes` (never `admin`, which is
    /// dropped), as the principal `anonymous` of the [`DEFAULT_TENANT`]: for public
    /// dashboards, or to measure what authentication costs. A credential that is sent is
    /// still checked (a wrong one is a 401, not an anonymous request).
    #[must_use]
    pub fn with_anonymous(mut self, scopes: impl IntoIterator<Item = Scope>) -> Self {
        self.anonymous = Arc::new(scopes.into_iter().filter(|s| *s != Scope::Admin).collect());
        self
    }

    /// The scopes of requests without a credential (empty: refused).
    #[must_use]
    pub fn anonymous_scopes(&self) -> &BTreeSet<Scope> {
        &self.anonymous
    }

    /// The issued keys, when a key store is configured.
    #[must_use]
    pub fn issued(&self) -> Option<&IssuedKeys> {
        self.issued.as_ref()
    }

    /// Whether no key is configured (issued keys and JWTs may still be accepted).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// How many keys are configured.
    #[must_use]
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether nothing at all is accepted: no configured key, no key store, no JWT.
    #[must_use]
    pub fn accepts_nothing(&self) -> bool {
        self.keys.is_empty() && self.issued.is_none() && self.jwt.is_none()
    }

    /// Whether `candidate` is a configured key. Compares against every key, in constant
    /// time for keys of the candidate's length.
    #[must_use]
    pub fn verify(&self, candidate: &str) -> bool {
        self.configured(candidate).is_some()
    }

    /// The id of the configured key `candidate`, if it is one.
    fn configured(&self, candidate: &str) -> Option<&str> {
        let candidate = candidate.as_bytes();
        let mut found = None;
        let mut any = Choice::from(0);
        for key in self.keys.iter() {
            let equal = key.key.as_ref().ct_eq(candidate);
            if bool::from(equal) {
                found = Some(key.id.as_str());
            }
            any |= equal;
        }
        bool::from(any).then_some(found).flatten()
    }

    /// The principal `token` authenticates.
    ///
    /// # Errors
    /// [`ApiError::Unauthorized`] when no accepted credential matches;
    /// [`ApiError::Dependency`] when the key store cannot be read.
    pub async fn authenticate(&self, token: &str) -> Result<Principal, ApiError> {
        let refused = ApiError::Unauthorized { presented: true };
        if let Some(id) = self.configured(token) {
            return Ok(Principal {
                id: id.to_owned(),
                credential: Credential::ConfiguredKey,
                scopes: BTreeSet::from([Scope::Admin]),
                tenant: DEFAULT_TENANT.to_owned(),
            });
        }
        if let Some(presented) = issued::parse(token) {
            return match &self.issued {
                Some(issued) => issued.verify(&presented).await?.ok_or(refused),
                None => Err(refused),
            };
        }
        match &self.jwt {
            Some(jwt) if jwt::looks_like_jwt(token) => jwt.verify(token).await.map_err(|error| {
                tracing::debug!(error = %error, "JWT refused");
                refused
            }),
            _ => Err(refused),
        }
    }
}

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeys")
            .field("count", &self.keys.len())
            .field("issued", &self.issued.is_some())
            .field("jwt", &self.jwt.is_some())
            .finish_non_exhaustive()
    }
}

/// The public id of a configured key: `cfg-` and the first 16 hex digits of its SHA-256.
fn configured_id(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let hex = hex::encode(&digest[..8]);
    format!("cfg-{hex}")
}

/// The token of an `Authorization: Bearer <token>` header, if there is one.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The principal of the bearer credential of `headers`: any accepted credential
/// (configured key, issued key, JWT); without an `Authorization` field, the anonymous
/// principal when anonymous requests are let through.
///
/// # Errors
/// [`ApiError::Unauthorized`] without an accepted credential; [`ApiError::Dependency`]
/// when the key store cannot be read.
pub(crate) async fn authenticate_headers(
    keys: &ApiKeys,
    headers: &HeaderMap,
) -> Result<Principal, ApiError> {
    let outcome = match bearer_token(headers) {
        Some(token) => keys.authenticate(token).await,
        // Only without any `Authorization`: a credential that does not parse is refused.
        None if !keys.anonymous.is_empty() && !headers.contains_key(header::AUTHORIZATION) => {
            Ok(Principal {
                id: "anonymous".to_owned(),
                credential: Credential::Anonymous,
                scopes: (*keys.anonymous).clone(),
                tenant: DEFAULT_TENANT.to_owned(),
            })
        }
        None => Err(ApiError::Unauthorized { presented: false }),
    };
    if let Err(ApiError::Unauthorized { presented }) = &outcome {
        count_refusal(if *presented { "invalid" } else { "missing" });
    }
    outcome
}

/// Counts a refused request in `tributary_auth_refused_total{reason}`: `missing` (no
/// bearer credential), `invalid` (not accepted), `forbidden` (valid, without the scope).
fn count_refusal(reason: &'static str) {
    metrics::counter!("tributary_auth_refused_total", "reason" => reason).increment(1);
}

/// The scope a route needs: `admin` for `/v1/keys` and below and for creating, changing
/// and deleting streams (`/v1/streams` and `/v1/streams/{stream}`), `read` for other `GET`s (and
/// `HEAD`s) and for `/graphql` (whose fields check their own scopes; its requests count
/// against the `read` rate limit), `ingest` for the rest.
#[must_use]
pub fn required_scope(method: &Method, path: &str) -> Scope {
    let stream_admin = (path == "/v1/streams" || path == "/v1/streams/{stream}")
        && *method != Method::GET
        && *method != Method::HEAD;
    if path == "/v1/keys" || path.starts_with("/v1/keys/") || stream_admin {
        Scope::Admin
    } else if method == Method::GET || method == Method::HEAD || path == "/graphql" {
        Scope::Read
    } else {
        Scope::Ingest
    }
}

/// Middleware of the `/v1` routes: lets the request through only with an accepted bearer
/// credential holding the route's scope, with its [`Principal`] in the extensions.
pub(crate) async fn require_api_key(
    State(keys): State<ApiKeys>,
    mut request: Request,
    next: Next,
) -> Response {
    let principal = match authenticate_headers(&keys, request.headers()).await {
        Ok(principal) => principal,
        Err(error) => return error.into_response(),
    };
    let path = request.extensions().get::<MatchedPath>().map_or_else(
        || request.uri().path().to_owned(),
        |p| p.as_str().to_owned(),
    );
    if let Err(forbidden) = principal.require(required_scope(request.method(), &path)) {
        count_refusal("forbidden");
        return forbidden.into_response();
    }
    request.extensions_mut().insert(principal);
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_only_accepted_keys() {
        let keys = ApiKeys::new(["alpha-key", " ", "beta"]);
        assert_eq!(keys.len(), 2);
        assert!(keys.verify("alpha-key"));
        assert!(keys.verify("beta"));
        assert!(!keys.verify("alpha"));
        assert!(!keys.verify(""));
        assert!(!ApiKeys::default().verify(""));
        assert!(!format!("{keys:?}").contains("alpha"));
        assert_ne!(keys.configured("beta"), keys.configured("alpha-key"));
        assert!(keys.configured("beta").unwrap().starts_with("cfg-"));
    }

    #[test]
    fn parses_bearer_headers() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer_token(&headers), None);
        headers.insert(header::AUTHORIZATION, "bearer  k1 ".parse().unwrap());
        assert_eq!(bearer_token(&headers), Some("k1"));
        headers.insert(header::AUTHORIZATION, "Basic k1".parse().unwrap());
        assert_eq!(bearer_token(&headers), None);
    }

    #[test]
    fn routes_need_their_scope() {
        assert_eq!(required_scope(&Method::GET, "/v1/keys"), Scope::Admin);
        assert_eq!(
            required_scope(&Method::DELETE, "/v1/keys/{id}"),
            Scope::Admin
        );
        assert_eq!(required_scope(&Method::GET, "/v1/keysx"), Scope::Read);
        assert_eq!(required_scope(&Method::GET, "/v1/streams"), Scope::Read);
        assert_eq!(
            required_scope(&Method::POST, "/v1/streams/{stream}/events"),
            Scope::Ingest
        );
        assert_eq!(required_scope(&Method::POST, "/graphql"), Scope::Read);
    }
}
