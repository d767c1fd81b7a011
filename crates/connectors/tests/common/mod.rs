//! Helpers every conformance suite shares: the address of a real service, a port where no
//! server listens, and the checks of how a failed connect is classified.

// Each test binary compiles this module and uses part of it.
#![allow(dead_code)]

use std::fmt::Debug;
use std::time::{Duration, Instant};

use tributary_core::ports::PortError;

/// The value of `var`, the address of a service the tests need; panics with how to start
/// the services when it is not set.
pub fn service_env(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: start the services with `bash scripts/services.sh up` and \
             `eval \"$(bash scripts/services.sh env)\"`"
        )
    })
}

/// A loopback port where nothing listens (bound, then released).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Asserts that `connect` fails `Unavailable` (so retryable), in less than `within`.
pub async fn assert_unavailable_within<T: Debug>(
    connect: impl Future<Output = Result<T, PortError>>,
    within: Duration,
) {
    let started = Instant::now();
    match connect.await {
        Err(error @ PortError::Unavailable { .. }) => assert!(error.is_retryable()),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(started.elapsed() < within, "took {:?}", started.elapsed());
}

/// Asserts that `outcome` is `Refused`.
pub fn assert_refused<T: Debug>(outcome: Result<T, PortError>) {
    match outcome {
        Err(PortError::Refused { .. }) => {}
        other => panic!("expected Refused, got {other:?}"),
    }
}
