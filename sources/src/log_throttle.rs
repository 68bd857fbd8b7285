//! Logging a condition that can repeat without bound (a flood of refused requests, a sink that
//! stays full) at most once per interval per key, counting the lines held back.
//!
//! The caller asks [`LogThrottle::allow`] before writing a line: the first occurrence of a key is
//! always written; later ones within `interval` of the last written line are counted and held
//! back, and the next line written reports how many were (`suppressed = N`). Counts held back
//! after the last written line are reported only if the condition comes back; metrics are the
//! place for exact totals.
//!
//! Keys should come from a small fixed set (a reason, a source's reason): one entry is kept per
//! key ever seen. Time is passed in, so tests run on tokio's paused clock.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// At most one log line per key per interval.
#[derive(Debug)]
pub struct LogThrottle<K> {
    interval: Duration,
    slots: Mutex<HashMap<K, Slot>>,
}

#[derive(Debug)]
struct Slot {
    /// When the last line for this key was written.
    written: Instant,
    /// Lines held back since then.
    suppressed: u64,
}

impl<K: Eq + Hash> LogThrottle<K> {
    /// A throttle writing at most one line per key per `interval`.
    pub fn new(interval: Duration) -> Self {
        LogThrottle {
            interval,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a line for `key` may be written at `now`: `Some(n)` when it may, `n` being the
    /// lines held back since the last one written; `None` when this one is held back too.
    pub fn allow(&self, key: K, now: Instant) -> Option<u64> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        match slots.get_mut(&key) {
            Some(slot) if now.saturating_duration_since(slot.written) < self.interval => {
                slot.suppressed += 1;
                None
            }
            Some(slot) => {
                slot.written = now;
                Some(std::mem::take(&mut slot.suppressed))
            }
            None => {
                slots.insert(
                    key,
                    Slot {
                        written: now,
                        suppressed: 0,
                    },
                );
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_key_per_interval_with_the_count_held_back() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let log = LogThrottle::new(Duration::from_secs(10));
        assert_eq!(log.allow("a", at(0)), Some(0));
        assert_eq!(log.allow("a", at(1)), None);
        assert_eq!(log.allow("a", at(9_999)), None);
        // Another key has its own budget.
        assert_eq!(log.allow("b", at(5_000)), Some(0));
        assert_eq!(log.allow("a", at(10_000)), Some(2));
        assert_eq!(log.allow("a", at(10_001)), None);
        assert_eq!(log.allow("a", at(30_000)), Some(1));
        assert_eq!(log.allow("b", at(30_000)), Some(0));
    }
}
