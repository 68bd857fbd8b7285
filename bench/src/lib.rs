//! Tools for Ember's benchmarks (see BENCHMARKS.md): a load generator, a bare hyper server
//! baseline, and a raw fdatasync-rate probe. Not part of the `ember` binary.

use std::time::Duration;

/// Latency percentiles from a set of samples in microseconds.
pub fn percentile(sorted_us: &[u32], p: f64) -> Duration {
    if sorted_us.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted_us.len() - 1) as f64).round() as usize;
    Duration::from_micros(u64::from(sorted_us[rank.min(sorted_us.len() - 1)]))
}

/// Resident set size of a process in KiB, from /proc (Linux).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Formats a duration in milliseconds with three decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

/// Sorts `samples`, prints `name` with their count, min, p50, p90, p99 and max in
/// milliseconds, and returns them sorted (for [`quantile`]).
pub fn summary(name: &str, mut samples: Vec<Duration>) -> Vec<Duration> {
    samples.sort();
    println!(
        "{name:<22} n={} min {:.3} ms  p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
        samples.len(),
        samples[0].as_secs_f64() * 1e3,
        quantile(&samples, 0.5).as_secs_f64() * 1e3,
        quantile(&samples, 0.9).as_secs_f64() * 1e3,
        quantile(&samples, 0.99).as_secs_f64() * 1e3,
        samples[samples.len() - 1].as_secs_f64() * 1e3,
    );
    samples
}

/// The `q` quantile (0–1) of sorted samples.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}
