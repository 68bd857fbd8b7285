//! A PingSource's counters: kept with relaxed atomics by the scheduler (no allocation, no lock
//! on the tick path) and read by whoever exports them — the binary's `/metrics`, through
//! [`SourceMetrics`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::metrics::{Counter, CounterFamily, SourceMetrics};

/// A tick whose sink accepted it more than this after its scheduled instant counts as late.
/// Well above the scheduler's own precision (milliseconds), so a late tick means a sink that
/// was slow or refused it for a while, a busy machine, or a missed tick caught up after
/// downtime.
pub const LATE_AFTER: Duration = Duration::from_secs(1);

/// The counters of one PingSource since Ember started. Every count only grows.
#[derive(Debug, Default)]
pub struct PingMetrics {
    fired: AtomicU64,
    late: AtomicU64,
    retried: AtomicU64,
    skipped: AtomicU64,
    dropped: AtomicU64,
}

impl PingMetrics {
    /// Ticks the sink accepted and the tick store recorded, once each.
    pub fn fired(&self) -> u64 {
        self.fired.load(Ordering::Relaxed)
    }

    /// Fired ticks recorded more than [`LATE_AFTER`] after their scheduled instant (the record
    /// follows the sink's acceptance within milliseconds); missed ticks caught up after
    /// downtime are among them.
    pub fn late(&self) -> u64 {
        self.late.load(Ordering::Relaxed)
    }

    /// Attempts the sink refused, each followed by a retry of the same tick.
    pub fn retried(&self) -> u64 {
        self.retried.load(Ordering::Relaxed)
    }

    /// Ticks that came due while Ember was down and were not fired (the missed-tick policy).
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }

    /// Ticks the sink refused for good (an invalid event, or a destination's answer that
    /// retrying cannot change): given up and recorded, never sent again.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub(crate) fn count_fired(&self, late: bool) {
        self.fired.fetch_add(1, Ordering::Relaxed);
        if late {
            self.late.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn count_retry(&self) {
        self.retried.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_skipped(&self, ticks: u64) {
        self.skipped.fetch_add(ticks, Ordering::Relaxed);
    }

    pub(crate) fn count_dropped(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

static FIRED: CounterFamily = CounterFamily {
    name: "ember_pingsource_ticks_fired",
    help: "Ticks the sink accepted and the tick store recorded.",
};
static LATE: CounterFamily = CounterFamily {
    name: "ember_pingsource_ticks_late",
    help: "Fired ticks the sink accepted more than 1 s after their scheduled instant \
           (missed ticks caught up after downtime among them).",
};
static RETRIED: CounterFamily = CounterFamily {
    name: "ember_pingsource_ticks_retried",
    help: "Sends of a tick the sink refused, each retried with backoff.",
};
static SKIPPED: CounterFamily = CounterFamily {
    name: "ember_pingsource_ticks_skipped",
    help: "Ticks that came due while Ember was not running and were not fired (the \
           missed-tick policy).",
};
static DROPPED: CounterFamily = CounterFamily {
    name: "ember_pingsource_ticks_dropped",
    help: "Ticks the sink refused for good (an invalid event, or an answer retrying cannot \
           change): given up, logged and recorded.",
};

impl SourceMetrics for PingMetrics {
    fn counters(&self) -> Vec<Counter> {
        [
            (&FIRED, self.fired()),
            (&LATE, self.late()),
            (&RETRIED, self.retried()),
            (&SKIPPED, self.skipped()),
            (&DROPPED, self.dropped()),
        ]
        .into_iter()
        .map(|(family, value)| Counter {
            family,
            labels: Vec::new(),
            value,
        })
        .collect()
    }
}
