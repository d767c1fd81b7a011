//! What `/metrics` exposes, as Prometheus users expect it: every metric the workspace
//! emits described here once (`# HELP`, with its unit), in base units (seconds, bytes, Unix
//! timestamps in seconds); latencies as **histograms** (aggregatable across instances, no
//! quantile that reads 0 when idle), with buckets chosen from the latencies measured in
//! bench/RESULTS.md; counters present at 0 from the start for the label sets known then
//! (the streams, pipelines and dead-letter origins of the config), so `rate()` and
//! `increase()` see their first increment; and the `process_*` metrics (CPU seconds,
//! resident and virtual memory bytes, open file descriptors, start time, threads) of the
//! `metrics-process` crate, refreshed at each upkeep of the recorder (every 5 s).
//!
//! The metrics themselves are recorded where they happen (the engine, connectors,
//! gateway); a metric added there gets its description here (the `prometheus` test fails
//! on a `# TYPE` without `# HELP`). `docs/DEPLOY.md` lists them; `deploy/prometheus/` holds
//! recording and alerting rules on them, `deploy/grafana/` a dashboard.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use tributary_core::window::Outcome;

use crate::config::Config;

/// Buckets for HTTP ingest requests (seconds): a request of 500 events took 18–52 ms at
/// the median and 43–139 ms at p99 (bench/RESULTS.md), one event about a millisecond; the
/// append times out after 2 s by default.
const INGEST_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Buckets for checkpoints and rebalances (seconds): a checkpoint at a rebalance took 5–30
/// ms in the scale-out runs; a slow store takes seconds.
const CHECKPOINT_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Buckets for the window latency (seconds), around its goal of one second: p50 0.17–0.29
/// s, p99 0.27–0.54 s with checkpoints every 250 ms–1 s.
const WINDOW_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0,
];

/// Buckets for a task's time without an owner (seconds): about 3 s when a task moves at a
/// rebalance, 11 s when its owner died (a 10 s session timeout, then a round).
const UNOWNED_BUCKETS: &[f64] = &[
    0.1, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0,
];

/// A histogram's buckets by name; every other histogram gets [`INGEST_BUCKETS`], so none is
/// rendered as a summary.
const HISTOGRAM_BUCKETS: &[(&str, &[f64])] = &[
    ("tributary_ingest_duration_seconds", INGEST_BUCKETS),
    ("tributary_checkpoint_duration_seconds", CHECKPOINT_BUCKETS),
    ("tributary_rebalance_duration_seconds", CHECKPOINT_BUCKETS),
    ("tributary_window_final_latency_seconds", WINDOW_BUCKETS),
    ("tributary_task_unowned_seconds", UNOWNED_BUCKETS),
];

/// The origins of dead letters (`tributary_core::dead_letter::Origin::kind`).
const DEAD_LETTER_ORIGINS: &[&str] = &["ingest", "log", "late", "archive", "file", "kafka"];

/// The recorder's builder, with the buckets of every histogram.
///
/// # Errors
/// Never in practice: only when a bucket list is empty.
pub fn builder() -> Result<PrometheusBuilder, metrics_exporter_prometheus::BuildError> {
    let mut builder = PrometheusBuilder::new().set_buckets(INGEST_BUCKETS)?;
    for (name, buckets) in HISTOGRAM_BUCKETS {
        builder = builder.set_buckets_for_metric(Matcher::Full((*name).to_owned()), buckets)?;
    }
    Ok(builder)
}

/// Describes every metric (the `# HELP` lines) to the installed recorder, and the process
/// metrics; returns their collector, to call at each upkeep.
pub fn describe() -> metrics_process::Collector {
    describe_ingest();
    describe_engine();
    describe_groups();
    describe_adapters();
    let process = metrics_process::Collector::default();
    process.describe();
    process.collect();
    process
}

fn describe_ingest() {
    describe_counter!(
        "tributary_ingest_requests_total",
        Unit::Count,
        "HTTP ingest requests answered, by stream and HTTP status."
    );
    describe_counter!(
        "tributary_ingest_events_total",
        Unit::Count,
        "Events accepted (appended to the log) over HTTP, by stream."
    );
    describe_histogram!(
        "tributary_ingest_duration_seconds",
        Unit::Seconds,
        "Time from an HTTP ingest request's arrival to its answer, by stream."
    );
    describe_counter!(
        "tributary_source_events_total",
        Unit::Count,
        "Events read by a pull source, by source, stream and outcome (accepted or refused)."
    );
    describe_gauge!(
        "tributary_source_up",
        "1 while a pull source is running, 0 otherwise, by source."
    );
    describe_counter!(
        "tributary_rate_limit_fallback_total",
        Unit::Count,
        "Rate-limit checks decided by the in-process fallback because the shared store failed."
    );
    describe_counter!(
        "tributary_dead_letters_total",
        Unit::Count,
        "Dead letters stored, by origin (ingest, log, late, archive, file)."
    );
    describe_counter!(
        "tributary_dead_letters_refused_total",
        Unit::Count,
        "Dead letters the document store could not store (logged at error level), by origin."
    );
    describe_counter!(
        "tributary_dead_letters_pruned_total",
        Unit::Count,
        "Dead letters deleted by the retention."
    );
}

fn describe_engine() {
    describe_counter!(
        "tributary_pipeline_events_total",
        Unit::Count,
        "Events a pipeline read, by pipeline and outcome (counted, duplicate, late, filtered)."
    );
    describe_gauge!(
        "tributary_pipeline_watermark_timestamp_seconds",
        Unit::Seconds,
        "A pipeline's watermark (the lowest of its shards) as a Unix timestamp in seconds."
    );
    describe_histogram!(
        "tributary_window_final_latency_seconds",
        Unit::Seconds,
        "Per window made final: time from the earliest it could be final (its end plus the \
         watermark delay) to the commit that makes it visible, by pipeline."
    );
    describe_histogram!(
        "tributary_checkpoint_duration_seconds",
        Unit::Seconds,
        "Time to commit a task's checkpoint, by task."
    );
    describe_gauge!(
        "tributary_task_last_checkpoint_timestamp_seconds",
        Unit::Seconds,
        "Unix time of a task's last committed checkpoint, by task."
    );
    describe_gauge!(
        "tributary_task_watermark_delay_seconds",
        Unit::Seconds,
        "How far a task's watermark is behind the wall clock at its last checkpoint, by task."
    );
    describe_gauge!(
        "tributary_task_lag_records",
        Unit::Count,
        "Records of a task's source partitions it has not read yet, by task."
    );
    describe_counter!(
        "tributary_task_restarts_total",
        Unit::Count,
        "Restarts of a task after a failure, by task."
    );
    describe_counter!(
        "tributary_archived_events_total",
        Unit::Count,
        "Raw events stored in the document store by the archive."
    );
    describe_counter!(
        "tributary_archive_refused_events_total",
        Unit::Count,
        "Raw events the document store refused on their own (kept as dead letters)."
    );
    describe_counter!(
        "tributary_log_undecodable_records_total",
        Unit::Count,
        "Log records that are not Tributary events or claim another stream (kept as dead letters)."
    );
    describe_counter!(
        "tributary_log_records_lost_total",
        Unit::Count,
        "Records that expired from a Kafka topic before they were read, by stream."
    );
}

fn describe_groups() {
    describe_gauge!(
        "tributary_tasks_owned",
        Unit::Count,
        "Tasks this process runs, by group."
    );
    describe_gauge!(
        "tributary_task_owned",
        "1 where a task runs (this process), 0 once it left, by task."
    );
    describe_counter!(
        "tributary_rebalances_total",
        Unit::Count,
        "Group membership changes seen by this process, by group and change (assigned, revoked, lost)."
    );
    describe_histogram!(
        "tributary_rebalance_duration_seconds",
        Unit::Seconds,
        "Time to stop, checkpoint and release the tasks revoked by a rebalance, by group."
    );
    describe_histogram!(
        "tributary_task_unowned_seconds",
        Unit::Seconds,
        "At each restore, time since the task's last commit (its release or last checkpoint), by task."
    );
}

fn describe_adapters() {
    describe_gauge!(
        "tributary_circuit_open",
        "1 while an adapter's circuit breaker is open or half-open, by system."
    );
    describe_counter!(
        "tributary_circuit_rejected_total",
        Unit::Count,
        "Calls an open circuit breaker failed at once, by system."
    );
}

/// Registers at 0 the counters whose label sets the config knows, so they are scraped
/// before their first increment: per stream, per pipeline and outcome, per dead-letter
/// origin, and those without labels. (`increment(0)`: a counter already counting keeps
/// its value.)
pub fn register_counters(config: &Config) {
    for name in [
        "tributary_archived_events_total",
        "tributary_archive_refused_events_total",
        "tributary_dead_letters_pruned_total",
        "tributary_log_undecodable_records_total",
    ] {
        metrics::counter!(name).increment(0);
    }
    for origin in DEAD_LETTER_ORIGINS {
        metrics::counter!("tributary_dead_letters_total", "origin" => *origin).increment(0);
        metrics::counter!("tributary_dead_letters_refused_total", "origin" => *origin).increment(0);
    }
    for stream in &config.streams {
        let name = stream.name.clone();
        metrics::counter!("tributary_ingest_events_total", "stream" => name.clone()).increment(0);
        metrics::counter!("tributary_log_records_lost_total", "stream" => name).increment(0);
    }
    for pipeline in &config.pipelines {
        for outcome in Outcome::ALL {
            metrics::counter!(
                "tributary_pipeline_events_total",
                "pipeline" => pipeline.name.clone(),
                "outcome" => outcome.label()
            )
            .increment(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_increasing() {
        for (name, buckets) in HISTOGRAM_BUCKETS {
            assert!(
                buckets.windows(2).all(|pair| pair[0] < pair[1]),
                "{name}: {buckets:?}"
            );
        }
    }

    #[test]
    fn the_builder_takes_every_bucket_list() {
        assert!(builder().is_ok());
    }
}
