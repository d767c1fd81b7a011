//! Issued API keys: minted by `POST /v1/keys`, kept in a [`KeyStore`] as hashes.
//!
//! Contract:
//! - A key is `trb_<id>_<secret>`: `id` is 24 lowercase hex digits (12 random bytes), public
//!   and stored as is; `secret` is 32 random bytes from the OS, base64url without padding
//!   (43 characters). The key is shown once, when it is created; only the SHA-256 of the
//!   secret is stored. A plain SHA-256 is the norm for random secrets of 256 bits (GitHub's
//!   and Stripe's tokens, RFC 6749's advice): there is nothing to guess, so a slow hash
//!   (argon2, bcrypt) would only slow every request down.
//! - A presented key is looked up by its id and its secret's hash compared in constant time
//!   with the stored one; it passes when it is neither revoked nor expired (at the time of
//!   the request).
//! - A looked-up key (or its absence) is cached for the configured TTL (5 s by default), in
//!   a cache of at most [`CACHE_CAPACITY`] ids. A revocation through this node evicts it at
//!   once; a key revoked through another node still passes here until its entry expires,
//!   at most the TTL after the revocation.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tributary_core::Timestamp;
use tributary_core::ports::{KeyStore, PortError, StoredKey};

use super::{Credential, Principal};

/// The prefix of every issued key.
pub const PREFIX: &str = "trb_";

/// Random bytes of an id.
const ID_BYTES: usize = 12;
/// Random bytes of a secret.
const SECRET_BYTES: usize = 32;
/// The most ids the cache holds.
pub const CACHE_CAPACITY: u64 = 100_000;

/// A presented key, split into its parts.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Presented {
    id: String,
    secret: [u8; SECRET_BYTES],
}

/// The parts of `token` when it has the shape of an issued key.
pub(crate) fn parse(token: &str) -> Option<Presented> {
    let rest = token.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    if id.len() != ID_BYTES * 2 || !id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(secret).ok()?;
    Some(Presented {
        id: id.to_owned(),
        secret: bytes.try_into().ok()?,
    })
}

/// A newly minted key: the record to store and the key to show once.
#[derive(Debug)]
pub struct NewKey {
    /// The whole key, `trb_<id>_<secret>`.
    pub key: String,
    /// Its id.
    pub id: String,
    /// Its secret's hash.
    pub secret_hash: [u8; 32],
}

impl NewKey {
    /// Mints a key from the OS's random source.
    #[must_use]
    pub fn generate() -> Self {
        let mut rng = rand::rngs::OsRng;
        let mut id = [0_u8; ID_BYTES];
        rng.fill_bytes(&mut id);
        let mut secret = [0_u8; SECRET_BYTES];
        rng.fill_bytes(&mut secret);
        let id = hex::encode(id);
        Self {
            key: format!("{PREFIX}{id}_{}", URL_SAFE_NO_PAD.encode(secret)),
            id,
            secret_hash: Sha256::digest(secret).into(),
        }
    }
}

/// The issued keys of a [`KeyStore`], looked up through a short-lived cache.
#[derive(Clone)]
pub struct IssuedKeys {
    store: Arc<dyn KeyStore>,
    cache: moka::future::Cache<String, Option<Arc<StoredKey>>>,
}

impl std::fmt::Debug for IssuedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedKeys")
            .field("store", &self.store)
            .field("cached", &self.cache.entry_count())
            .finish()
    }
}

impl IssuedKeys {
    /// The keys of `store`, each cached for `ttl` once looked up.
    #[must_use]
    pub fn new(store: Arc<dyn KeyStore>, ttl: Duration) -> Self {
        Self {
            store,
            cache: moka::future::Cache::builder()
                .max_capacity(CACHE_CAPACITY)
                .time_to_live(ttl)
                .build(),
        }
    }

    /// The store.
    #[must_use]
    pub fn store(&self) -> &Arc<dyn KeyStore> {
        &self.store
    }

    /// The principal of `presented`, when it is an active key whose secret matches.
    pub(crate) async fn verify(
        &self,
        presented: &Presented,
    ) -> Result<Option<Principal>, PortError> {
        let stored = match self.cache.get(&presented.id).await {
            Some(cached) => cached,
            None => {
                let stored = self.store.get(&presented.id).await?.map(Arc::new);
                self.cache
                    .insert(presented.id.clone(), stored.clone())
                    .await;
                stored
            }
        };
        let Some(stored) = stored else {
            return Ok(None);
        };
        let hash: [u8; 32] = Sha256::digest(presented.secret).into();
        let matches = bool::from(hash.ct_eq(&stored.secret_hash));
        Ok(
            (matches && stored.is_active(Timestamp::now())).then(|| Principal {
                id: stored.id.clone(),
                credential: Credential::IssuedKey,
                scopes: stored.scopes.clone(),
                tenant: stored.tenant.clone(),
            }),
        )
    }

    /// Revokes the key `id` now, and forgets it in this node's cache at once. Returns
    /// whether it exists.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn revoke(&self, id: &str) -> Result<bool, PortError> {
        let found = self.store.revoke(id, Timestamp::now()).await?;
        self.cache.invalidate(id).await;
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_keys_parse_back_and_hash_their_secret() {
        let minted = NewKey::generate();
        assert!(minted.key.starts_with("trb_"));
        assert_eq!(minted.key.len(), 4 + 24 + 1 + 43);
        let presented = parse(&minted.key).unwrap();
        assert_eq!(presented.id, minted.id);
        assert_eq!(
            <[u8; 32]>::from(Sha256::digest(presented.secret)),
            minted.secret_hash
        );
        assert_ne!(NewKey::generate().key, minted.key);
    }

    #[test]
    fn other_shapes_are_not_issued_keys() {
        let minted = NewKey::generate();
        for bad in [
            "",
            "trb_",
            "trb_demo_0123456789abcdef0123456789abcdef",
            &minted.key[..minted.key.len() - 1],
            &minted.key.replace("trb_", "trx_"),
            &minted.key.to_uppercase(),
            &format!("{}A", minted.key),
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
