//! A per-source token bucket: `requests_per_second` sustained, `burst` at once.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// A token bucket, full when created.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// A rate that is not a positive finite number, or a zero burst.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("rate limit: requestsPerSecond must be a positive number and burst at least 1")]
pub struct InvalidRateLimit;

impl RateLimiter {
    /// `requests_per_second` sustained (may be fractional), up to `burst` at once; `burst`
    /// defaults to one second's worth (at least 1).
    pub fn new(
        requests_per_second: f64,
        burst: Option<u32>,
        now: Instant,
    ) -> Result<Self, InvalidRateLimit> {
        if !(requests_per_second.is_finite() && requests_per_second > 0.0) || burst == Some(0) {
            return Err(InvalidRateLimit);
        }
        let burst = burst.map_or(requests_per_second.ceil().max(1.0), f64::from);
        Ok(RateLimiter {
            rate: requests_per_second,
            burst,
            state: Mutex::new(Bucket {
                tokens: burst,
                last: now,
            }),
        })
    }

    /// Takes a token, or says how long until one is available (for `Retry-After`, rounded up
    /// to whole seconds by the caller).
    pub fn check(&self, now: Instant) -> Result<(), Duration> {
        let mut b = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate).min(self.burst);
        // `now` may lag `last` when callers read the clock before taking the lock.
        b.last = b.last.max(now);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / self.rate))
        }
    }
}
