use std::time::Duration;

use crate::event::StreamName;

/// Any error, boxed, kept as the source of a [`PortError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Whose fault an error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorDomain {
    /// The caller's input was wrong; fix it and retry.
    User,
    /// An external system failed; retrying later may help.
    External,
    /// Tributary itself is wrong (a bug or corrupt data).
    Internal,
}

/// What went wrong in a port call. Adapters keep the underlying error as the source.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// The external system could not be reached, timed out, or failed transiently.
    #[error("{system} is unavailable")]
    Unavailable {
        /// The system: "kafka", "postgres", "sqlite", ...
        system: &'static str,
        /// The driver's error.
        #[source]
        source: BoxError,
    },
    /// The external system refused the operation; the same call will fail again.
    #[error("{system} refused the operation")]
    Refused {
        /// The system.
        system: &'static str,
        /// The driver's error.
        #[source]
        source: BoxError,
    },
    /// Another processor of the same pipeline claimed it since this one did, or a
    /// checkpoint this one did not expect is stored: this one is a zombie and must stop
    /// writing.
    #[error(
        "checkpoint of pipeline {pipeline} is fenced: expected {fence} {expected}, found {found}"
    )]
    Fenced {
        /// The pipeline.
        pipeline: String,
        /// What did not match: the owner's generation or the checkpoint's epoch.
        fence: Fence,
        /// The generation or epoch this writer expected to find stored.
        expected: u64,
        /// The one actually stored.
        found: u64,
    },
    /// Stored data could not be decoded.
    #[error("{system} holds data Tributary cannot decode")]
    Corrupt {
        /// The system.
        system: &'static str,
        /// The decoder's error.
        #[source]
        source: BoxError,
    },
    /// The stream does not exist in the log.
    #[error("unknown stream {0}")]
    UnknownStream(StreamName),
}

/// The source of a [`PortError::Unavailable`] given without calling the system: its
/// adapter's circuit breaker is open after a recent failure or timeout, and fails calls at
/// once until `retry_after` has passed (then one call probes the system again).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not called: it failed recently; calls fail at once for another {retry_after:?}")]
pub struct CircuitOpen {
    /// How long calls keep failing at once: when a retry may succeed.
    pub retry_after: Duration,
}

/// What fenced a checkpoint commit ([`PortError::Fenced`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fence {
    /// A newer claim took the pipeline over: the stored generation is not the writer's.
    Generation,
    /// The stored epoch is not the one the checkpoint follows.
    Epoch,
}

impl std::fmt::Display for Fence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Generation => "generation",
            Self::Epoch => "epoch",
        })
    }
}

impl PortError {
    /// Wraps a driver error as [`PortError::Unavailable`].
    pub fn unavailable(system: &'static str, source: impl Into<BoxError>) -> Self {
        Self::Unavailable {
            system,
            source: source.into(),
        }
    }

    /// Wraps a driver error as [`PortError::Refused`].
    pub fn refused(system: &'static str, source: impl Into<BoxError>) -> Self {
        Self::Refused {
            system,
            source: source.into(),
        }
    }

    /// Wraps a decoding error as [`PortError::Corrupt`].
    pub fn corrupt(system: &'static str, source: impl Into<BoxError>) -> Self {
        Self::Corrupt {
            system,
            source: source.into(),
        }
    }

    /// Whose fault the error is.
    #[must_use]
    pub fn domain(&self) -> ErrorDomain {
        match self {
            Self::Unavailable { .. } | Self::Refused { .. } | Self::Fenced { .. } => {
                ErrorDomain::External
            }
            Self::Corrupt { .. } => ErrorDomain::Internal,
            Self::UnknownStream(_) => ErrorDomain::User,
        }
    }

    /// Whether the same call may succeed if retried later.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }

    /// When a retry may succeed, if the adapter knows: the rest of its circuit breaker's
    /// cool-down when the call failed at once ([`CircuitOpen`]).
    #[must_use]
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Unavailable { source, .. } => source
                .downcast_ref::<CircuitOpen>()
                .map(|open| open.retry_after),
            _ => None,
        }
    }
}
