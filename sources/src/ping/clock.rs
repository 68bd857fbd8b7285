//! Wall-clock time for the run loop, convertible to tokio's clock.
//!
//! Schedules are in wall-clock time (`DateTime<Utc>`), but sleeping uses tokio's monotonic
//! clock so that tests can pause and advance it. A [`Clock`] says what time it is; the loop turns
//! a scheduled instant into a tokio deadline with [`Clock::deadline`], recomputed for every tick,
//! so wall-clock adjustments (NTP) are picked up at the next sleep.

use chrono::{DateTime, Utc};
use tokio::time::Instant;

/// The source of "now" for the run loop.
pub trait Clock: Send + Sync {
    /// The current wall-clock time.
    fn now(&self) -> DateTime<Utc>;

    /// The tokio instant at which the wall clock will read `at` (now, if `at` is past).
    fn deadline(&self, at: DateTime<Utc>) -> Instant {
        let ahead = (at - self.now()).to_std().unwrap_or_default();
        Instant::now() + ahead
    }
}

/// The system's wall clock (`Utc::now()`): what the binary uses.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A wall clock that follows tokio's clock from a fixed anchor: `now = base + (tokio now −
/// base instant)`. Under `#[tokio::test(start_paused = true)]` it reads whatever instant the
/// test has advanced to, so a test can start "at" any date and let days pass in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct AnchoredClock {
    base: DateTime<Utc>,
    base_instant: Instant,
}

impl AnchoredClock {
    /// A clock that reads `base` now (at tokio's current instant) and advances with tokio.
    pub fn starting_at(base: DateTime<Utc>) -> Self {
        Self {
            base,
            base_instant: Instant::now(),
        }
    }
}

impl Clock for AnchoredClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = Instant::now() - self.base_instant;
        chrono::TimeDelta::from_std(elapsed)
            .ok()
            .and_then(|d| self.base.checked_add_signed(d))
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}
