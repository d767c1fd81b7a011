//! The cache port: derived values, never the source of truth.

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;

use super::PortError;

/// A key-value cache: Redis, or an in-process cache when embedded.
///
/// Contract: values are strings; a value set with a TTL is gone after it; writers
/// overwrite idempotently, so a lost or repeated write is harmless.
#[async_trait]
pub trait Cache: Send + Sync + Debug {
    /// Checks that the backing system answers; used by `/readyz`.
    async fn ping(&self) -> Result<(), PortError>;

    /// The value under `key`, if present and not expired.
    async fn get(&self, key: &str) -> Result<Option<String>, PortError>;

    /// Sets `key` to `value`, expiring after `ttl` when one is given.
    async fn set(&self, key: &str, value: &str, ttl: Option<Duration>) -> Result<(), PortError>;

    /// Removes `key`; removing a missing key is not an error.
    async fn delete(&self, key: &str) -> Result<(), PortError>;
}
