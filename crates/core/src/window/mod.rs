//! Event-time windows: which windows an event belongs to ([`WindowAssigner`]), and the
//! operator that keeps one running result per window and key ([`WindowOperator`]).
//!
//! An assigner is Flink's `WindowAssigner`: given an event time it names the windows the
//! event belongs to; a merging assigner (sessions) gives each event a window of its own
//! that the operator merges with the overlapping windows of the same key. A new window type
//! is one new assigner; the operator is written once over all of them.

mod operator;
#[cfg(test)]
mod operator_tests;
mod state;

use std::fmt;

pub use operator::{Counters, HASHES_PER_CHUNK, Outcome, Snapshot, StateError, WindowOperator};
pub use state::OperatorState;

/// A window `[start, end)` in epoch milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Window {
    /// Start (inclusive).
    pub start: i64,
    /// End (exclusive).
    pub end: i64,
}

/// Names the windows an event time belongs to.
pub trait WindowAssigner {
    /// Appends the windows holding `ts` to `out`, in order of start.
    fn assign(&self, ts: i64, out: &mut Vec<Window>);

    /// Whether windows of one key that overlap are merged (sessions).
    fn merges(&self) -> bool {
        false
    }

    /// The width of the event-time buckets in which the operator keeps de-duplication
    /// hashes.
    fn bucket_ms(&self) -> i64;

    /// How far past the end of its bucket an event's last window may end: a bucket's
    /// hashes are needed until the watermark passes `bucket end + reach` (plus the allowed
    /// lateness). For merging windows this is a lower bound: sessions still open hold the
    /// buckets they cover.
    fn reach_ms(&self) -> i64;
}

/// Fixed-size, non-overlapping windows aligned on the epoch: `[k·size, (k+1)·size)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tumbling {
    /// Window length in milliseconds (> 0).
    pub size_ms: i64,
}

impl WindowAssigner for Tumbling {
    fn assign(&self, ts: i64, out: &mut Vec<Window>) {
        let start = ts.div_euclid(self.size_ms) * self.size_ms;
        out.push(Window {
            start,
            end: start.saturating_add(self.size_ms),
        });
    }

    fn bucket_ms(&self) -> i64 {
        self.size_ms
    }

    fn reach_ms(&self) -> i64 {
        0
    }
}

/// Overlapping windows of `size` starting every `slide`: `[k·slide, k·slide + size)`; an
/// event belongs to `size / slide` of them (rounded up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hopping {
    /// Window length in milliseconds (> 0).
    pub size_ms: i64,
    /// Distance between window starts in milliseconds (0 < slide <= size).
    pub slide_ms: i64,
}

impl WindowAssigner for Hopping {
    fn assign(&self, ts: i64, out: &mut Vec<Window>) {
        let last = ts.div_euclid(self.slide_ms) * self.slide_ms;
        // The first window holding ts starts after ts - size.
        let mut start = last - (self.size_ms - 1).div_euclid(self.slide_ms) * self.slide_ms;
        while start <= last {
            if ts < start.saturating_add(self.size_ms) {
                out.push(Window {
                    start,
                    end: start.saturating_add(self.size_ms),
                });
            }
            start += self.slide_ms;
        }
    }

    fn bucket_ms(&self) -> i64 {
        self.slide_ms
    }

    fn reach_ms(&self) -> i64 {
        self.size_ms - self.slide_ms
    }
}

/// Per-key activity sessions: an event opens `[ts, ts + gap)`, and sessions of one key that
/// overlap merge, so a session ends `gap` after its last event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    /// The inactivity gap in milliseconds (> 0).
    pub gap_ms: i64,
}

impl WindowAssigner for Session {
    fn assign(&self, ts: i64, out: &mut Vec<Window>) {
        out.push(Window {
            start: ts,
            end: ts.saturating_add(self.gap_ms),
        });
    }

    fn merges(&self) -> bool {
        true
    }

    fn bucket_ms(&self) -> i64 {
        self.gap_ms
    }

    fn reach_ms(&self) -> i64 {
        self.gap_ms
    }
}

/// How a pipeline groups events in time: one of the assigners, to which it delegates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowSpec {
    /// [`Tumbling`] windows.
    Tumbling {
        /// Window length, in milliseconds (> 0).
        size_ms: i64,
    },
    /// [`Hopping`] windows.
    Hopping {
        /// Window length, in milliseconds (> 0).
        size_ms: i64,
        /// Distance between starts, in milliseconds (0 < slide <= size).
        slide_ms: i64,
    },
    /// [`Session`] windows.
    Session {
        /// Inactivity gap, in milliseconds (> 0).
        gap_ms: i64,
    },
}

impl WindowSpec {
    /// The start of the first window holding `ts` (for messages about late events).
    #[must_use]
    pub fn first_start(&self, ts: i64) -> i64 {
        let mut windows = Vec::with_capacity(1);
        self.assign(ts, &mut windows);
        windows.first().map_or(ts, |w| w.start)
    }
}

impl WindowAssigner for WindowSpec {
    fn assign(&self, ts: i64, out: &mut Vec<Window>) {
        match *self {
            Self::Tumbling { size_ms } => Tumbling { size_ms }.assign(ts, out),
            Self::Hopping { size_ms, slide_ms } => Hopping { size_ms, slide_ms }.assign(ts, out),
            Self::Session { gap_ms } => Session { gap_ms }.assign(ts, out),
        }
    }

    fn merges(&self) -> bool {
        matches!(self, Self::Session { .. })
    }

    fn bucket_ms(&self) -> i64 {
        match *self {
            Self::Tumbling { size_ms } => Tumbling { size_ms }.bucket_ms(),
            Self::Hopping { size_ms, slide_ms } => Hopping { size_ms, slide_ms }.bucket_ms(),
            Self::Session { gap_ms } => Session { gap_ms }.bucket_ms(),
        }
    }

    fn reach_ms(&self) -> i64 {
        match *self {
            Self::Tumbling { size_ms } => Tumbling { size_ms }.reach_ms(),
            Self::Hopping { size_ms, slide_ms } => Hopping { size_ms, slide_ms }.reach_ms(),
            Self::Session { gap_ms } => Session { gap_ms }.reach_ms(),
        }
    }
}

impl fmt::Display for WindowSpec {
    /// The canonical form, as in fingerprints: `tumbling(60000ms)`, `hopping(300000ms,
    /// 60000ms)`, `session(30000ms)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tumbling { size_ms } => write!(f, "tumbling({size_ms}ms)"),
            Self::Hopping { size_ms, slide_ms } => write!(f, "hopping({size_ms}ms,{slide_ms}ms)"),
            Self::Session { gap_ms } => write!(f, "session({gap_ms}ms)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows(spec: WindowSpec, ts: i64) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        spec.assign(ts, &mut out);
        out.into_iter().map(|w| (w.start, w.end)).collect()
    }

    #[test]
    fn tumbling_windows_hold_one_window_aligned_on_the_epoch() {
        let spec = WindowSpec::Tumbling { size_ms: 60 };
        assert_eq!(windows(spec, 59), vec![(0, 60)]);
        assert_eq!(windows(spec, 60), vec![(60, 120)]);
        assert_eq!(windows(spec, -1), vec![(-60, 0)]);
    }

    #[test]
    fn hopping_windows_hold_size_over_slide_windows() {
        let spec = WindowSpec::Hopping {
            size_ms: 300,
            slide_ms: 100,
        };
        assert_eq!(windows(spec, 250), vec![(0, 300), (100, 400), (200, 500)]);
        assert_eq!(windows(spec, 300), vec![(100, 400), (200, 500), (300, 600)]);
        assert_eq!(windows(spec, -1), vec![(-300, 0), (-200, 100), (-100, 200)]);
        // A size that is no multiple of the slide.
        let odd = WindowSpec::Hopping {
            size_ms: 250,
            slide_ms: 100,
        };
        assert_eq!(windows(odd, 260), vec![(100, 350), (200, 450)]);
        assert_eq!(windows(odd, 240), vec![(0, 250), (100, 350), (200, 450)]);
    }

    #[test]
    fn hopping_assignment_agrees_with_a_direct_scan() {
        for (size, slide) in [(300, 100), (250, 100), (100, 100), (7, 3)] {
            let spec = WindowSpec::Hopping {
                size_ms: size,
                slide_ms: slide,
            };
            for ts in -50..400 {
                let expected: Vec<(i64, i64)> = (-1000..1000)
                    .map(|k| k * slide)
                    .filter(|&start| start <= ts && ts < start + size)
                    .map(|start| (start, start + size))
                    .collect();
                assert_eq!(windows(spec, ts), expected, "{spec} at {ts}");
            }
        }
    }

    #[test]
    fn sessions_open_a_window_of_the_gap() {
        let spec = WindowSpec::Session { gap_ms: 30 };
        assert_eq!(windows(spec, 5), vec![(5, 35)]);
        assert!(spec.merges());
    }
}
