//! Exponential backoff with full jitter: how long a source waits before trying again after a
//! refusal or a failed connection. One helper for every source — a PingSource's refused tick,
//! and the reconnects of the Kafka and RabbitMQ sources.
//!
//! The wait before retry `k` (k = 0, 1, 2, … since the last success) is drawn uniformly from
//! `[0, min(max, base × 2^k)]` — "full jitter" in the terms of AWS's *Exponential Backoff and
//! Jitter*. Spreading every wait over the whole interval keeps sources that failed together
//! (many PingSources on one broker, many consumers of one server) from retrying together, at
//! the price of a wait that may be short; the upper bound still doubles, so a destination that
//! stays down is tried less and less often, at least once every `max`.
//!
//! Waits are measured on tokio's clock ([`Backoff::wait`]), so tests pause and advance it.

use std::time::Duration;

/// Retry waits for one source (or one connection): doubling bounds, jittered, reset on success.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    /// Retries since the last success.
    retries: u32,
    rng: fastrand::Rng,
}

impl Backoff {
    /// Waits bounded by `base` for the first retry, doubling up to `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Self::seeded(base, max, fastrand::u64(..))
    }

    /// The same, with a reproducible sequence of waits.
    fn seeded(base: Duration, max: Duration, seed: u64) -> Self {
        Self {
            base,
            max: max.max(base),
            retries: 0,
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    /// The bound of the next wait: `min(max, base × 2^retries)`.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.retries).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// The wait before the next retry, uniform in `[0, ceiling]`; counts the retry.
    pub fn next_wait(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.retries = self.retries.saturating_add(1);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(self.rng.u64(..=nanos))
    }

    /// Sleeps [`next_wait`](Self::next_wait) on tokio's clock.
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next_wait()).await;
    }

    /// Retries since the last [`reset`](Self::reset).
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// After a success: the next failure waits at most `base` again.
    pub fn reset(&mut self) {
        self.retries = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(10);

    #[test]
    fn bounds_double_from_base_up_to_max_and_reset() {
        let mut b = Backoff::new(BASE, MAX);
        let ceilings: Vec<u64> = (0..10)
            .map(|_| {
                let c = b.ceiling();
                b.next_wait();
                c.as_millis() as u64
            })
            .collect();
        assert_eq!(
            ceilings,
            [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000]
        );
        assert_eq!(b.retries(), 10);
        for _ in 0..100 {
            b.next_wait(); // no overflow however long it fails
        }
        assert_eq!(b.ceiling(), MAX);
        b.reset();
        assert_eq!((b.retries(), b.ceiling()), (0, BASE));
    }

    #[test]
    fn each_wait_is_within_its_bound_and_waits_spread_over_it() {
        for seed in 0..64 {
            let mut b = Backoff::seeded(BASE, MAX, seed);
            for _ in 0..12 {
                let ceiling = b.ceiling();
                let wait = b.next_wait();
                assert!(wait <= ceiling, "seed {seed}: {wait:?} > {ceiling:?}");
            }
        }
        // Full jitter: the waits for the same retry are spread over [0, ceiling], not bunched.
        let firsts: Vec<Duration> = (0..1000)
            .map(|seed| Backoff::seeded(BASE, MAX, seed).next_wait())
            .collect();
        let low = firsts.iter().filter(|w| **w < BASE / 4).count();
        let high = firsts.iter().filter(|w| **w > BASE * 3 / 4).count();
        assert!(low > 150 && high > 150, "low {low}, high {high} of 1000");
    }

    #[test]
    fn a_max_below_base_is_raised_to_base() {
        let mut b = Backoff::new(Duration::from_secs(2), Duration::from_secs(1));
        assert_eq!(b.ceiling(), Duration::from_secs(2));
        b.next_wait();
        assert_eq!(b.ceiling(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn wait_sleeps_on_tokios_clock_within_the_bound() {
        let mut b = Backoff::seeded(BASE, MAX, 7);
        let mut expected = Backoff::seeded(BASE, MAX, 7);
        for _ in 0..8 {
            let ceiling = b.ceiling();
            let planned = expected.next_wait();
            let start = tokio::time::Instant::now();
            b.wait().await;
            let slept = start.elapsed();
            // tokio's timer counts in whole milliseconds.
            assert!(slept >= planned && slept <= planned + Duration::from_millis(1));
            assert!(planned <= ceiling);
        }
    }
}
