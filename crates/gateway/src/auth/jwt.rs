//! JWT bearer tokens, verified against a JWKS (a file or a URL).
//!
//! Contract:
//! - A token passes only when: its header's `alg` is one of the pinned
//!   [`JwtSettings::algorithms`] (so `none`, and HMAC tokens when only RSA is pinned, are
//!   refused before any key is looked at); its `kid` names a key of the JWKS (a JWKS of one
//!   key also serves tokens without `kid`) whose type fits `alg` (an RSA key never checks
//!   an HMAC signature) and whose own `alg`, when given, is the same; the signature
//!   verifies; `exp` is in the future and `nbf` (when present) in the past, both within
//!   [`JwtSettings::leeway`]; `iss` equals [`JwtSettings::issuer`]; `aud` (a string or a
//!   list) holds [`JwtSettings::audience`]; `sub` is present.
//! - The principal is `sub`, with the scopes of the [`JwtSettings::scopes_claim`] claim (a
//!   space-separated string, as OAuth's `scope`, or a list; names that are no Tributary
//!   scope are ignored) and the tenant of [`JwtSettings::tenant_claim`] (else `default`).
//! - The JWKS is read when the verifier is built (an unreadable file is an error; an
//!   unreachable URL is logged and read again at the first token) and kept. A token whose
//!   `kid` is unknown makes the verifier read it again, at most once per
//!   [`JwtSettings::min_refresh_interval`] (concurrent tokens share one read), so forged
//!   `kid`s cannot make it hammer the identity provider.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use tributary_core::ports::{DEFAULT_TENANT, Scope, parse_scopes};

use super::{Credential, Principal};

/// How long a JWKS URL may take to answer.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the JWKS comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// A JSON file.
    File(PathBuf),
    /// An `http(s)://` URL (an identity provider's `jwks_uri`).
    Url(String),
}

/// What a token must be to pass.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    /// The JWKS.
    pub jwks: JwksSource,
    /// The `iss` tokens must carry.
    pub issuer: String,
    /// The audience `aud` must hold.
    pub audience: String,
    /// The accepted signature algorithms (`RS256` by default); no other is.
    pub algorithms: Vec<Algorithm>,
    /// The clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// The claim holding the scopes (`scope`).
    pub scopes_claim: String,
    /// The claim holding the tenant, if any.
    pub tenant_claim: Option<String>,
    /// The least time between two reads of the JWKS caused by unknown `kid`s.
    pub min_refresh_interval: Duration,
}

/// Why a token was refused (for the server log; the client sees a 401).
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    /// The header does not decode, or names an algorithm this library does not know
    /// (`none` included).
    #[error("malformed token header")]
    Header(#[source] jsonwebtoken::errors::Error),
    /// `alg` is not pinned.
    #[error("algorithm {0:?} is not accepted")]
    Algorithm(Algorithm),
    /// No key of the JWKS has the token's `kid`.
    #[error("no key with kid {0:?}")]
    UnknownKey(Option<String>),
    /// The key's type or declared algorithm does not fit `alg`.
    #[error("key {kid:?} is not a key for {alg:?}")]
    KeyMismatch {
        /// The key's id.
        kid: Option<String>,
        /// The token's algorithm.
        alg: Algorithm,
    },
    /// The signature or a claim check failed.
    #[error("invalid token")]
    Invalid(#[source] jsonwebtoken::errors::Error),
    /// The JWKS could not be read.
    #[error("cannot read the JWKS from {source_name}")]
    Jwks {
        /// The file or URL.
        source_name: String,
        /// Why.
        #[source]
        cause: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The kinds of keys, each checking the signatures of some algorithms only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    /// A shared secret: HS256, HS384, HS512.
    Hmac,
    /// RSA: RS* and PS*.
    Rsa,
    /// Elliptic curves: ES256, ES384.
    Ec,
    /// Edwards curves: EdDSA.
    Ed,
}

impl Family {
    /// The kind of key that checks `alg`'s signatures.
    fn of(alg: Algorithm) -> Self {
        match alg {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => Self::Hmac,
            Algorithm::ES256 | Algorithm::ES384 => Self::Ec,
            Algorithm::EdDSA => Self::Ed,
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => Self::Rsa,
        }
    }
}

/// A key of the JWKS.
struct Key {
    decoding: DecodingKey,
    family: Family,
    /// The key's own `alg`, when the JWKS gives one.
    alg: Option<String>,
}

/// The keys of a JWKS by `kid` (keys without one under `None`).
type Keys = HashMap<Option<String>, Arc<Key>>;

/// Verifies JWTs against a JWKS it caches.
pub struct JwtVerifier {
    settings: JwtSettings,
    keys: RwLock<Arc<Keys>>,
    /// When the JWKS was last read (locked while a read is under way).
    last_read: tokio::sync::Mutex<Option<Instant>>,
    client: reqwest::Client,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    /// A verifier with `settings`, having read the JWKS once.
    ///
    /// # Errors
    /// When the JWKS is a file that cannot be read or parsed; an unreachable URL is only
    /// logged (it is read again at the first token).
    pub async fn new(settings: JwtSettings) -> Result<Self, JwtError> {
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|e| JwtError::Jwks {
                source_name: "the HTTP client".into(),
                cause: Box::new(e),
            })?;
        let verifier = Self {
            settings,
            keys: RwLock::new(Arc::default()),
            last_read: tokio::sync::Mutex::new(None),
            client,
        };
        match (verifier.read_jwks().await, &verifier.settings.jwks) {
            (Ok(keys), _) => {
                verifier.set_keys(keys);
                *verifier.last_read.lock().await = Some(Instant::now());
            }
            (Err(error), JwksSource::Url(url)) => {
                tracing::warn!(url = %url, error = %crate::error::error_chain(&error), "JWKS unreachable; read again at the first token");
            }
            (Err(error), JwksSource::File(_)) => return Err(error),
        }
        Ok(verifier)
    }

    /// The principal of `token`.
    ///
    /// # Errors
    /// Why the token is refused.
    pub async fn verify(&self, token: &str) -> Result<Principal, JwtError> {
        let header = jsonwebtoken::decode_header(token).map_err(JwtError::Header)?;
        if !self.settings.algorithms.contains(&header.alg) {
            return Err(JwtError::Algorithm(header.alg));
        }
        let key = self.key(header.kid.as_deref()).await?;
        let alg_name = format!("{:?}", header.alg);
        if key.family != Family::of(header.alg) || key.alg.as_ref().is_some_and(|a| *a != alg_name)
        {
            return Err(JwtError::KeyMismatch {
                kid: header.kid,
                alg: header.alg,
            });
        }
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.settings.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&[&self.settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding, &validation)
            .map_err(JwtError::Invalid)?
            .claims;
        Ok(self.principal(&claims))
    }

    /// The principal the verified `claims` describe.
    fn principal(&self, claims: &Map<String, Value>) -> Principal {
        let text = |claim: &str| claims.get(claim).and_then(Value::as_str);
        let scopes = match claims.get(&self.settings.scopes_claim) {
            Some(Value::String(text)) => parse_scopes(text, true).unwrap_or_default(),
            Some(Value::Array(names)) => names
                .iter()
                .filter_map(Value::as_str)
                .filter_map(|name| name.parse::<Scope>().ok())
                .collect(),
            _ => Default::default(),
        };
        Principal {
            id: text("sub").unwrap_or_default().to_owned(),
            credential: Credential::Jwt,
            scopes,
            tenant: self
                .settings
                .tenant_claim
                .as_deref()
                .and_then(text)
                .unwrap_or(DEFAULT_TENANT)
                .to_owned(),
        }
    }

    /// The key `kid` names, reading the JWKS again when it is unknown and the last read is
    /// older than the minimum interval.
    async fn key(&self, kid: Option<&str>) -> Result<Arc<Key>, JwtError> {
        if let Some(key) = self.known(kid) {
            return Ok(key);
        }
        let mut last_read = self.last_read.lock().await;
        // Another token may have refreshed the keys while this one waited.
        if let Some(key) = self.known(kid) {
            return Ok(key);
        }
        let due = last_read.is_none_or(|at| at.elapsed() >= self.settings.min_refresh_interval);
        if due {
            *last_read = Some(Instant::now());
            match self.read_jwks().await {
                Ok(keys) => self.set_keys(keys),
                Err(error) => {
                    tracing::warn!(error = %crate::error::error_chain(&error), "JWKS refresh failed");
                }
            }
        }
        drop(last_read);
        self.known(kid)
            .ok_or_else(|| JwtError::UnknownKey(kid.map(str::to_owned)))
    }

    /// The cached key `kid` names (the only key, for a token without `kid`).
    fn known(&self, kid: Option<&str>) -> Option<Arc<Key>> {
        let keys = self
            .keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        match kid {
            Some(kid) => keys.get(&Some(kid.to_owned())).cloned(),
            None if keys.len() == 1 => keys.values().next().cloned(),
            None => None,
        }
    }

    fn set_keys(&self, keys: Keys) {
        *self
            .keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(keys);
    }

    /// Reads and parses the JWKS.
    async fn read_jwks(&self) -> Result<Keys, JwtError> {
        let (name, text) = match &self.settings.jwks {
            JwksSource::File(path) => {
                let name = path.display().to_string();
                let text = tokio::fs::read(path).await.map_err(|e| JwtError::Jwks {
                    source_name: name.clone(),
                    cause: Box::new(e),
                })?;
                (name, text)
            }
            JwksSource::Url(url) => {
                let failed = |e: reqwest::Error| JwtError::Jwks {
                    source_name: url.clone(),
                    cause: Box::new(e),
                };
                let response = self
                    .client
                    .get(url)
                    .send()
                    .await
                    .and_then(reqwest::Response::error_for_status)
                    .map_err(failed)?;
                let body = response.bytes().await.map_err(failed)?;
                (url.clone(), body.to_vec())
            }
        };
        let set: JwkSet = serde_json::from_slice(&text).map_err(|e| JwtError::Jwks {
            source_name: name.clone(),
            cause: Box::new(e),
        })?;
        let mut keys = Keys::new();
        for jwk in &set.keys {
            match key_of(jwk) {
                Ok(key) => {
                    keys.insert(jwk.common.key_id.clone(), Arc::new(key));
                }
                Err(error) => {
                    tracing::warn!(jwks = %name, kid = ?jwk.common.key_id, error = %error, "JWKS key skipped");
                }
            }
        }
        tracing::info!(jwks = %name, keys = keys.len(), "JWKS read");
        Ok(keys)
    }
}

/// A JWK as a verification key.
fn key_of(jwk: &Jwk) -> Result<Key, jsonwebtoken::errors::Error> {
    let family = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Family::Rsa,
        AlgorithmParameters::EllipticCurve(_) => Family::Ec,
        AlgorithmParameters::OctetKeyPair(_) => Family::Ed,
        AlgorithmParameters::OctetKey(_) => Family::Hmac,
    };
    Ok(Key {
        decoding: DecodingKey::from_jwk(jwk)?,
        family,
        alg: jwk.common.key_algorithm.map(|a| format!("{a:?}")),
    })
}

/// Whether `token` has the shape of a JWS compact serialization (three dot-separated
/// parts), so that it is worth verifying as a JWT.
#[must_use]
pub fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3
}
