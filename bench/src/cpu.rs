//! CPU accounting from Linux's `/proc`: how busy the machine was, and how much CPU time
//! given processes used, between two samples. Elsewhere, or for a process that is gone,
//! the values are `None`.

use std::collections::BTreeMap;

/// `/proc` reports CPU time in clock ticks of `USER_HZ`, which is 100 on Linux.
pub const TICKS_PER_SEC: f64 = 100.0;

/// The CPU seconds between two readings of [`process_ticks`]; `None` when either is.
#[must_use]
pub fn seconds_between(before: Option<u64>, after: Option<u64>) -> Option<f64> {
    #[allow(clippy::cast_precision_loss)]
    before
        .zip(after)
        .map(|(a, b)| b.saturating_sub(a) as f64 / TICKS_PER_SEC)
}

/// One sample of the machine's and some processes' CPU counters.
#[derive(Debug, Clone)]
pub struct Sample {
    /// (busy, total) ticks of all CPUs, from the first line of `/proc/stat`.
    machine: Option<(u64, u64)>,
    /// User + system ticks per watched process.
    processes: BTreeMap<String, Option<u64>>,
}

/// Reads `/proc/stat` and `/proc/{pid}/stat` of each `(name, pid)`.
#[must_use]
pub fn sample(watched: &[(String, u32)]) -> Sample {
    Sample {
        machine: machine_ticks(),
        processes: watched
            .iter()
            .map(|(name, pid)| (name.clone(), process_ticks(*pid)))
            .collect(),
    }
}

/// What happened between `before` and `after`: the cores busy on average (0 to the CPU
/// count) and the CPU seconds of each watched process (`null` when unknown).
#[must_use]
pub fn between(before: &Sample, after: &Sample) -> serde_json::Value {
    #[allow(clippy::cast_precision_loss)]
    let cores_busy = match (before.machine, after.machine) {
        (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => {
            let cpus = std::thread::available_parallelism().map_or(1, usize::from) as f64;
            Some(crate::stats::round(
                (b1 - b0) as f64 / (t1 - t0) as f64 * cpus,
                2,
            ))
        }
        _ => None,
    };
    let mut processes = serde_json::Map::new();
    for (name, start) in &before.processes {
        let end = after.processes.get(name).copied().flatten();
        #[allow(clippy::cast_precision_loss)]
        let secs = match (start, end) {
            (Some(a), Some(b)) if b >= *a => {
                Some(crate::stats::round((b - a) as f64 / TICKS_PER_SEC, 2))
            }
            _ => None,
        };
        processes.insert(format!("{name}_cpu_s"), serde_json::json!(secs));
    }
    serde_json::json!({ "cores_busy": cores_busy, "processes": processes })
}

/// This process's pid.
#[must_use]
pub fn own_pid() -> u32 {
    std::process::id()
}

/// (busy, total) ticks of all CPUs since boot, from the first line of `/proc/stat`.
#[must_use]
pub fn machine_ticks() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().next()?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal guest guest_nice
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

/// User + system ticks of process `pid` so far (all its threads, also those that ended),
/// from `/proc/{pid}/stat`; `None` when it is gone or elsewhere than Linux.
#[must_use]
pub fn process_ticks(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: count fields after it.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ")": state is field 3 of the man page, so utime (14) and stime (15) are at 11, 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The CPU ticks of every process of one command name (`/proc/{pid}/comm`), such as the
/// backends of a PostgreSQL server (`postgres`). It looks for the processes at most once a
/// second and reads only theirs in between, so that reading it often stays cheap.
#[derive(Debug, Clone)]
pub struct CommandTicks {
    comm: String,
    pids: Vec<u32>,
    scanned: Option<std::time::Instant>,
}

impl CommandTicks {
    /// The processes named `comm`.
    #[must_use]
    pub fn new(comm: &str) -> Self {
        Self {
            comm: comm.to_owned(),
            pids: Vec::new(),
            scanned: None,
        }
    }

    /// User + system ticks so far, summed over the processes. A process started since the
    /// last reading counts with all its ticks; one that ended takes its ticks with it, so
    /// differences are lower bounds.
    pub fn read(&mut self) -> u64 {
        if self
            .scanned
            .is_none_or(|at| at.elapsed() >= std::time::Duration::from_secs(1))
        {
            self.scanned = Some(std::time::Instant::now());
            self.pids = std::fs::read_dir("/proc")
                .map(|entries| {
                    entries
                        .filter_map(Result::ok)
                        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
                        .filter(|pid| {
                            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                                .is_ok_and(|c| c.trim() == self.comm)
                        })
                        .collect()
                })
                .unwrap_or_default();
        }
        self.pids.iter().filter_map(|pid| process_ticks(*pid)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_own_cpu() {
        let me = vec![("me".to_owned(), own_pid())];
        let before = sample(&me);
        let mut x = 0u64;
        let started = std::time::Instant::now();
        while started.elapsed() < std::time::Duration::from_millis(300) {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        let after = sample(&me);
        let report = between(&before, &after);
        let secs = report["processes"]["me_cpu_s"].as_f64().unwrap();
        assert!(secs > 0.05, "{report}");
        assert!(report["cores_busy"].as_f64().unwrap() > 0.0, "{report}");
    }
}
