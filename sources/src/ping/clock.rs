//! Wall-clock time for the run loop, convertible to tokio's clock.
//!
//! Schedules are in wall-clock time (`DateTime<Utc>`), but sleeping uses tokio's monotonic
//! clock so that tests can pause and advance it. A [`Clock`] says what time it is; the loop turns
//! a scheduled instant into a tokio deadline with [`Clock::deadline`], recomputed for every tick,
//! so wall-clock adjustments (NTP) are picked up at the next sleep.

use std::future::Future;
use std::time::Duration;

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

    /// Sleeps until about when the wall clock reads `at`: by default exactly, on tokio's
    /// timer, which tests can pause and advance.
    fn sleep_until(&self, at: DateTime<Utc>) -> impl Future<Output = ()> + Send {
        tokio::time::sleep_until(self.deadline(at))
    }

    /// Waits, within a short time before `at`, until the wall clock reads `at` exactly — as
    /// closely as the clock can. The default is [`sleep_until`](Self::sleep_until).
    fn wait_exactly(&self, at: DateTime<Utc>) -> impl Future<Output = ()> + Send {
        self.sleep_until(at)
    }
}

/// How long before a tick the run loop wakes on tokio's millisecond timer, to get the tick's
/// work ready and then [wait exactly](Clock::wait_exactly) for its instant.
pub const PRECISE_MARGIN: Duration = Duration::from_millis(5);

/// The system's wall clock (`Utc::now()`): what the binary uses.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    /// Tokio's timer: it rounds up to its millisecond wheel, so it wakes a millisecond or two
    /// late.
    async fn sleep_until(&self, at: DateTime<Utc>) {
        tokio::time::sleep_until(self.deadline(at)).await;
    }

    /// Sleeps the rest on a thread of the blocking pool (the OS's timer precision, tens of
    /// microseconds), for when `PRECISE_MARGIN` before `at` was reached on tokio's timer.
    async fn wait_exactly(&self, at: DateTime<Utc>) {
        if let Ok(rest) = (at - Utc::now()).to_std()
            && !rest.is_zero()
        {
            if rest > PRECISE_MARGIN * 2 {
                return self.sleep_until(at).await;
            }
            let _ = tokio::task::spawn_blocking(move || std::thread::sleep(rest)).await;
        }
    }
}

/// A wall clock that follows tokio's clock from a fixed anchor: `now = base + (tokio now −
/// base instant)`. Under `#[tokio::test(start_paused = true)]` it reads whatever instant the
/// test has advanced to, so a test can start "at" any date and let days pass in milliseconds.
#[cfg(feature = "test-util")]
#[derive(Debug, Clone, Copy)]
pub struct AnchoredClock {
    base: DateTime<Utc>,
    base_instant: Instant,
}

#[cfg(feature = "test-util")]
impl AnchoredClock {
    /// A clock that reads `base` now (at tokio's current instant) and advances with tokio.
    pub fn starting_at(base: DateTime<Utc>) -> Self {
        Self {
            base,
            base_instant: Instant::now(),
        }
    }
}

#[cfg(feature = "test-util")]
impl Clock for AnchoredClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = Instant::now() - self.base_instant;
        chrono::TimeDelta::from_std(elapsed)
            .ok()
            .and_then(|d| self.base.checked_add_signed(d))
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}
