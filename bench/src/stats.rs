//! Percentiles and small summaries over samples in nanoseconds.

use std::time::Duration;

/// Sorted samples (nanoseconds) with percentile lookups.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    ns: Vec<u64>,
    sorted: bool,
}

impl Samples {
    /// No samples yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add one sample.
    pub fn push(&mut self, d: Duration) {
        self.ns.push(d.as_nanos().min(u64::MAX as u128) as u64);
        self.sorted = false;
    }

    /// Add every sample of `other`.
    pub fn extend(&mut self, other: &Samples) {
        self.ns.extend_from_slice(&other.ns);
        self.sorted = false;
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.ns.len()
    }

    /// True without samples.
    pub fn is_empty(&self) -> bool {
        self.ns.is_empty()
    }

    fn sort(&mut self) {
        if !self.sorted {
            self.ns.sort_unstable();
            self.sorted = true;
        }
    }

    /// The `q` quantile (0.0..=1.0, nearest rank); zero without samples.
    pub fn quantile(&mut self, q: f64) -> Duration {
        if self.ns.is_empty() {
            return Duration::ZERO;
        }
        self.sort();
        let rank = ((q * self.ns.len() as f64).ceil() as usize).clamp(1, self.ns.len());
        Duration::from_nanos(self.ns[rank - 1])
    }

    /// Median.
    pub fn p50(&mut self) -> Duration {
        self.quantile(0.5)
    }

    /// 99th percentile.
    pub fn p99(&mut self) -> Duration {
        self.quantile(0.99)
    }

    /// Sum of all samples.
    pub fn sum(&self) -> Duration {
        Duration::from_nanos(self.ns.iter().sum())
    }
}

/// The median of a few values (e.g. one per round).
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// `min–max` of a few values, formatted with `fmt`.
pub fn spread(values: &[f64], fmt: impl Fn(f64) -> String) -> String {
    if values.len() < 2 {
        return "-".to_owned();
    }
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{}–{}", fmt(min), fmt(max))
}

/// A duration for a table: `83.1µs`, `1.24ms`, `2.5s`.
pub fn fmt_dur(d: Duration) -> String {
    let ns = d.as_nanos() as f64;
    if ns < 1_000.0 {
        format!("{ns:.0}ns")
    } else if ns < 1_000_000.0 {
        format!("{:.1}µs", ns / 1e3)
    } else if ns < 1_000_000_000.0 {
        format!("{:.2}ms", ns / 1e6)
    } else {
        format!("{:.2}s", ns / 1e9)
    }
}

/// Microseconds as a table duration.
pub fn fmt_us(us: f64) -> String {
    fmt_dur(Duration::from_nanos((us * 1e3).max(0.0) as u64))
}

/// A rate for a table: `12.3k/s`.
pub fn fmt_rate(per_s: f64) -> String {
    if per_s >= 1e6 {
        format!("{:.2}M/s", per_s / 1e6)
    } else if per_s >= 1e3 {
        format!("{:.1}k/s", per_s / 1e3)
    } else {
        format!("{per_s:.0}/s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_nearest_rank() {
        let mut s = Samples::new();
        for i in 1..=100 {
            s.push(Duration::from_nanos(i));
        }
        assert_eq!(s.p50(), Duration::from_nanos(50));
        assert_eq!(s.p99(), Duration::from_nanos(99));
        assert_eq!(s.quantile(1.0), Duration::from_nanos(100));
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
