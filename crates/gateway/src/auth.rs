//! API-key authentication of the `/v1` routes.
//!
//! Contract: a request to a `/v1` path (a route or not) passes only with `Authorization: Bearer <key>`
//! where `<key>` is one of the accepted keys; otherwise it is answered 401 with
//! `WWW-Authenticate: Bearer` and never reaches its handler. An empty key set accepts
//! nobody. Keys are compared in constant time (per key length), against every accepted key.

use std::fmt;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::{Choice, ConstantTimeEq};

use crate::error::ApiError;

/// The set of accepted admin API keys.
///
/// Cheap to clone. Its `Debug` output shows how many keys there are, never the keys.
#[derive(Clone, Default)]
pub struct ApiKeys {
    keys: Arc<[Box<[u8]>]>,
}

impl ApiKeys {
    /// The environment variable whose value, when set and not blank, is an accepted key.
    pub const BOOTSTRAP_ENV: &'static str = "TRIBUTARY_BOOTSTRAP_API_KEY";

    /// A key set accepting exactly `keys`; blank keys (after trimming) are ignored.
    pub fn new<I, K>(keys: I) -> Self
    where
        I: IntoIterator<Item = K>,
        K: AsRef<str>,
    {
        let keys: Vec<Box<[u8]>> = keys
            .into_iter()
            .filter_map(|k| {
                let key = k.as_ref().trim();
                (!key.is_empty()).then(|| key.as_bytes().into())
            })
            .collect();
        Self { keys: keys.into() }
    }

    /// The key set holding the value of [`Self::BOOTSTRAP_ENV`], or no key when it is unset.
    #[must_use]
    pub fn from_bootstrap_env() -> Self {
        Self::new(std::env::var(Self::BOOTSTRAP_ENV).ok())
    }

    /// Whether no key is accepted (every `/v1` request is then refused).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// How many keys are accepted.
    #[must_use]
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether `candidate` is an accepted key. Compares against every key, in constant time
    /// for keys of the candidate's length.
    #[must_use]
    pub fn verify(&self, candidate: &str) -> bool {
        let candidate = candidate.as_bytes();
        let mut found = Choice::from(0);
        for key in self.keys.iter() {
            found |= key.as_ref().ct_eq(candidate);
        }
        found.into()
    }
}

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeys")
            .field("count", &self.keys.len())
            .finish_non_exhaustive()
    }
}

/// The token of an `Authorization: Bearer <token>` header, if there is one.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Checks that `headers` carry an accepted bearer key.
///
/// # Errors
/// [`ApiError::Unauthorized`] otherwise.
pub(crate) fn authorize(keys: &ApiKeys, headers: &HeaderMap) -> Result<(), ApiError> {
    match bearer_token(headers) {
        Some(token) if keys.verify(token) => Ok(()),
        presented => Err(ApiError::Unauthorized {
            presented: presented.is_some(),
        }),
    }
}

/// Middleware: lets the request through only with an accepted bearer key.
pub(crate) async fn require_api_key(
    State(keys): State<ApiKeys>,
    request: Request,
    next: Next,
) -> Response {
    match authorize(&keys, request.headers()) {
        Ok(()) => next.run(request).await,
        Err(error) => error.into_response(),
    }
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
}
