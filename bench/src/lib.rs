//! Tributary's benchmarks: shared pieces of the binaries in `src/bin/`.
//!
//! - [`events`]: realistic, reproducible click events (about 200 bytes of payload each).
//! - [`stats`]: medians and percentiles.
//! - [`cpu`]: machine and per-process CPU time from `/proc`, to see what bounds a run.
//! - [`ysb`]: the ad events and ad → campaign table of the Yahoo Streaming Benchmark.
//! - [`cleanup`]: creating and removing the per-run resources of the real services (Kafka
//!   topics, PostgreSQL and MongoDB databases, Redis keys), all named with one run prefix.
//! - [`results`]: a drained pipeline's result rows, to check against a ground truth.
//!
//! Each binary writes its measurement as one JSON line on stdout (so `bench/run.sh` can
//! read it with `jq`) and its progress on stderr.

pub mod cleanup;
pub mod cpu;
pub mod events;
pub mod results;
pub mod stats;
pub mod ysb;

use std::io::Write;

/// Writes `value` as one JSON line on stdout.
///
/// # Errors
/// When stdout is closed.
pub fn emit(value: &serde_json::Value) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, value)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

/// A progress line on stderr.
pub fn progress(message: &str) {
    let mut err = std::io::stderr().lock();
    // Progress is informative only: a closed stderr must not stop a measurement.
    let _ = writeln!(err, "[bench] {message}");
}
