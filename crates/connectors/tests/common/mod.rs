//! Helpers every connector test shares: the address of a real service, a port where no
//! server listens, the checks of how a failed connect is classified, and reading a log.

// Each test binary compiles this module and uses part of it.
#![allow(dead_code)]

use std::fmt::Debug;
use std::time::{Duration, Instant};

use tributary_core::ports::{LogReader, LogRecord, PortError};

/// How long a reader may take to deliver the records a test waits for.
const READ_DEADLINE: Duration = Duration::from_secs(30);

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

/// Polls until `n` records arrived, then checks that no more come.
pub async fn read_exactly(reader: &mut dyn LogReader, n: usize) -> Vec<LogRecord> {
    let deadline = Instant::now() + READ_DEADLINE;
    let mut records = Vec::new();
    while records.len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} records arrived within {READ_DEADLINE:?}",
            records.len()
        );
        records.extend(
            reader
                .poll(n - records.len(), Duration::from_secs(1))
                .await
                .unwrap(),
        );
    }
    assert_eq!(records.len(), n, "poll returned more than `max` records");
    let extra = reader.poll(100, Duration::from_millis(300)).await.unwrap();
    assert!(extra.is_empty(), "unexpected extra records: {extra:?}");
    records
}
