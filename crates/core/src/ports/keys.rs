//! The key store port: API keys issued through the admin API, kept only as hashes.
//!
//! Contract:
//! - A key is stored by its public `id`, with the SHA-256 hash of its secret (never the
//!   secret), its [`Scope`]s, its tenant, an optional description, when it was created, and
//!   optionally when it expires and when it was revoked. Checking a presented secret
//!   against the hash is the gateway's business; the store only keeps and returns records.
//! - [`KeyStore::create`] refuses an id already stored ([`PortError::Refused`]); ids are
//!   random, so this only guards against a bug.
//! - [`KeyStore::revoke`] marks a key revoked (the first revocation time is kept; revoking
//!   again changes nothing) and says whether the id exists; a revoked key stays listed.
//! - [`KeyStore::list`] returns a tenant's keys, newest first (by creation time, then id).
//!
//! The adapters (`tributary_connectors::keys`) keep keys in the analytics database:
//! PostgreSQL, or SQLite when embedded; one conformance suite runs against both.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::PortError;
use crate::Timestamp;

/// What a credential may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Send events: `POST /v1/streams/{stream}/events`.
    Ingest,
    /// Read streams, events, pipelines, results and dead letters (every `GET` of `/v1`).
    Read,
    /// Manage keys (`/v1/keys`); implies every other scope.
    Admin,
}

impl Scope {
    /// Every scope, in order.
    pub const ALL: [Self; 3] = [Self::Ingest, Self::Read, Self::Admin];

    /// The scope's name, as written in keys, tokens and the API.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ingest => "ingest",
            Self::Read => "read",
            Self::Admin => "admin",
        }
    }

    /// Whether a credential holding `scopes` may do what `self` guards: it holds `self`,
    /// or [`Scope::Admin`].
    #[must_use]
    pub fn granted_by(self, scopes: &BTreeSet<Scope>) -> bool {
        scopes.contains(&self) || scopes.contains(&Self::Admin)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A scope name that is none of [`Scope::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scope {0:?}: expected ingest, read or admin")]
pub struct UnknownScope(pub String);

impl FromStr for Scope {
    type Err = UnknownScope;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| UnknownScope(s.to_owned()))
    }
}

/// Scopes written as one space-separated string (as OAuth's `scope`), such as
/// `"ingest read"`.
#[must_use]
pub fn scopes_to_string(scopes: &BTreeSet<Scope>) -> String {
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The scopes of a space-separated string, ignoring names that are not scopes when
/// `lenient` (a token's claim may carry other applications' scopes), refusing them
/// otherwise.
///
/// # Errors
/// The first unknown name, when not `lenient`.
pub fn parse_scopes(text: &str, lenient: bool) -> Result<BTreeSet<Scope>, UnknownScope> {
    let mut scopes = BTreeSet::new();
    for name in text.split_ascii_whitespace() {
        match name.parse() {
            Ok(scope) => {
                scopes.insert(scope);
            }
            Err(unknown) if !lenient => return Err(unknown),
            Err(_) => {}
        }
    }
    Ok(scopes)
}

/// The tenant of keys and tokens that name none.
pub const DEFAULT_TENANT: &str = "default";

/// An API key as stored: everything but its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// The public id, the part of the key before its secret.
    pub id: String,
    /// SHA-256 of the secret.
    pub secret_hash: [u8; 32],
    /// What the key may do.
    pub scopes: BTreeSet<Scope>,
    /// The tenant the key belongs to ([`DEFAULT_TENANT`] unless given).
    pub tenant: String,
    /// A description for people.
    pub description: Option<String>,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it stops being accepted, if ever.
    pub expires_at: Option<Timestamp>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<Timestamp>,
}

impl StoredKey {
    /// Whether the key is accepted at `now`: not revoked and not expired (a key expires at
    /// its `expires_at`, inclusive).
    #[must_use]
    pub fn is_active(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|at| now < at)
    }
}

/// Where issued API keys are kept.
#[async_trait]
pub trait KeyStore: Send + Sync + fmt::Debug {
    /// Stores a new key.
    ///
    /// # Errors
    /// [`PortError::Refused`] when its id is already stored; others when the store fails.
    async fn create(&self, key: &StoredKey) -> Result<(), PortError>;

    /// The key with `id`, revoked or not, if there is one.
    async fn get(&self, id: &str) -> Result<Option<StoredKey>, PortError>;

    /// The keys of `tenant`, revoked ones included, newest first.
    async fn list(&self, tenant: &str) -> Result<Vec<StoredKey>, PortError>;

    /// Marks the key with `id` revoked at `at` (the first revocation time is kept).
    /// Returns whether the key exists.
    async fn revoke(&self, id: &str, at: Timestamp) -> Result<bool, PortError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_and_admin_implies_all() {
        let scopes = parse_scopes(" read  ingest read", false).unwrap();
        assert_eq!(scopes_to_string(&scopes), "ingest read");
        assert!(parse_scopes("read write", false).is_err());
        assert_eq!(
            parse_scopes("read openid", true).unwrap(),
            BTreeSet::from([Scope::Read])
        );
        let admin = BTreeSet::from([Scope::Admin]);
        assert!(Scope::ALL.iter().all(|s| s.granted_by(&admin)));
        let read = BTreeSet::from([Scope::Read]);
        assert!(Scope::Read.granted_by(&read));
        assert!(!Scope::Ingest.granted_by(&read));
        assert!(!Scope::Admin.granted_by(&read));
    }

    #[test]
    fn keys_expire_at_their_expiry_and_when_revoked() {
        let mut key = StoredKey {
            id: "k".into(),
            secret_hash: [0; 32],
            scopes: BTreeSet::from([Scope::Read]),
            tenant: DEFAULT_TENANT.into(),
            description: None,
            created_at: Timestamp::from_millis(0),
            expires_at: Some(Timestamp::from_millis(100)),
            revoked_at: None,
        };
        assert!(key.is_active(Timestamp::from_millis(99)));
        assert!(!key.is_active(Timestamp::from_millis(100)));
        key.expires_at = None;
        assert!(key.is_active(Timestamp::from_millis(i64::MAX)));
        key.revoked_at = Some(Timestamp::from_millis(5));
        assert!(!key.is_active(Timestamp::from_millis(0)));
    }
}
