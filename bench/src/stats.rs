//! Order statistics of latency samples.

use std::time::Duration;

/// Sorted latency samples, in milliseconds.
#[derive(Debug, Clone)]
pub struct Latencies {
    sorted_ms: Vec<f64>,
}

impl Latencies {
    /// Sorts `samples`.
    #[must_use]
    pub fn new(samples: &[Duration]) -> Self {
        let mut sorted_ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        sorted_ms.sort_by(f64::total_cmp);
        Self { sorted_ms }
    }

    /// The `q` quantile (0.0..=1.0) by the nearest-rank method; 0 when there is no sample.
    #[must_use]
    pub fn quantile(&self, q: f64) -> f64 {
        if self.sorted_ms.is_empty() {
            return 0.0;
        }
        let n = self.sorted_ms.len();
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let rank = ((q.clamp(0.0, 1.0) * n as f64).ceil() as usize).clamp(1, n);
        self.sorted_ms[rank - 1]
    }

    /// The largest sample; 0 when there is none.
    #[must_use]
    pub fn max(&self) -> f64 {
        self.sorted_ms.last().copied().unwrap_or(0.0)
    }
}

/// Rounds to `digits` decimals, for readable JSON.
#[must_use]
pub fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let l = Latencies::new(&samples);
        assert!((l.quantile(0.5) - 50.0).abs() < 1e-9);
        assert!((l.quantile(0.99) - 99.0).abs() < 1e-9);
        assert!((l.max() - 100.0).abs() < 1e-9);
        assert!(Latencies::new(&[]).quantile(0.5).abs() < f64::EPSILON);
    }
}
