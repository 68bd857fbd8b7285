//! Rate-limited log lines: a cause that repeats (a subscriber failing every attempt, a disk that
//! stays full) is logged once per interval, with the number of occurrences left unlogged since.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The interval Ember uses for repeated warnings unless a caller needs another.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

/// Lets one log line through per interval and counts the rest.
#[derive(Debug)]
pub struct LogThrottle {
    interval: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    last: Option<Instant>,
    suppressed: u64,
}

impl Default for LogThrottle {
    fn default() -> Self {
        Self::new(DEFAULT_INTERVAL)
    }
}

impl LogThrottle {
    /// A throttle letting one line through per `interval`.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            state: Mutex::new(State::default()),
        }
    }

    /// `Some(n)` when a line may be logged now, `n` being how many were suppressed since the
    /// last one; `None` (and one more suppressed) otherwise.
    pub fn allow(&self) -> Option<u64> {
        self.allow_at(Instant::now())
    }

    fn allow_at(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match state.last {
            Some(last) if now.duration_since(last) < self.interval => {
                state.suppressed += 1;
                None
            }
            _ => {
                state.last = Some(now);
                Some(std::mem::take(&mut state.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_of_the_rest() {
        let t = LogThrottle::new(Duration::from_secs(10));
        let start = Instant::now();
        assert_eq!(t.allow_at(start), Some(0));
        assert_eq!(t.allow_at(start + Duration::from_secs(1)), None);
        assert_eq!(t.allow_at(start + Duration::from_secs(9)), None);
        assert_eq!(t.allow_at(start + Duration::from_secs(10)), Some(2));
        assert_eq!(t.allow_at(start + Duration::from_secs(11)), None);
        assert_eq!(t.allow_at(start + Duration::from_secs(30)), Some(1));
    }
}
