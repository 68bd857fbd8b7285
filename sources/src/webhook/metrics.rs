//! Per-source counters: what became of each request, and how many events were dropped as
//! redeliveries. Plain atomics, read at scrape time by the binary's `/metrics` through
//! [`SourceMetrics`].

use std::sync::atomic::{AtomicU64, Ordering};

use crate::metrics::{Counter, CounterFamily, SourceMetrics};

/// What became of one request to a WebhookSource. Each request has exactly one outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// 2xx: at least one event of the request is now held by the sink.
    Accepted,
    /// 2xx: every event of the request was a redelivery within `dedupWindow`, and dropped.
    Deduplicated,
    /// 401: bad or missing signature or credentials, or a stale timestamp.
    Unauthorized,
    /// 400: the request cannot become an event (a missing type or id, a body without its id,
    /// a malformed CloudEvent, an event the sink refuses as invalid).
    BadRequest,
    /// 413: the body is above the source's limit.
    TooLarge,
    /// 429: above the source's rate limit.
    RateLimited,
    /// 503: the sink could not take the event (full, out of disk budget, shutting down).
    Unavailable,
    /// 405: a method other than POST.
    MethodNotAllowed,
    /// 408: the body did not arrive within the listener's body read timeout.
    TimedOut,
}

impl Outcome {
    /// Every outcome, in the order metrics list them.
    pub const ALL: [Outcome; 9] = [
        Outcome::Accepted,
        Outcome::Deduplicated,
        Outcome::Unauthorized,
        Outcome::BadRequest,
        Outcome::TooLarge,
        Outcome::RateLimited,
        Outcome::Unavailable,
        Outcome::MethodNotAllowed,
        Outcome::TimedOut,
    ];

    /// The metric label value: `accepted`, `deduplicated`, `unauthorized`, `bad_request`,
    /// `too_large`, `rate_limited`, `unavailable`, `method_not_allowed`, `timed_out`.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Deduplicated => "deduplicated",
            Outcome::Unauthorized => "unauthorized",
            Outcome::BadRequest => "bad_request",
            Outcome::TooLarge => "too_large",
            Outcome::RateLimited => "rate_limited",
            Outcome::Unavailable => "unavailable",
            Outcome::MethodNotAllowed => "method_not_allowed",
            Outcome::TimedOut => "timed_out",
        }
    }

    /// Whether the request was refused (any outcome but accepted and deduplicated).
    pub fn is_refusal(self) -> bool {
        !matches!(self, Outcome::Accepted | Outcome::Deduplicated)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One WebhookSource's counters.
#[derive(Debug, Default)]
pub struct WebhookMetrics {
    requests: [AtomicU64; Outcome::ALL.len()],
    duplicate_events: AtomicU64,
}

impl WebhookMetrics {
    /// Counts one request with `outcome`.
    pub fn record(&self, outcome: Outcome) {
        self.requests[outcome.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one event dropped as a redelivery (a batch may drop some of its events and
    /// append the others).
    pub fn record_duplicate_event(&self) {
        self.duplicate_events.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests so far with `outcome`.
    pub fn requests(&self, outcome: Outcome) -> u64 {
        self.requests[outcome.index()].load(Ordering::Relaxed)
    }

    /// Events dropped as redeliveries so far.
    pub fn duplicate_events(&self) -> u64 {
        self.duplicate_events.load(Ordering::Relaxed)
    }
}

static REQUESTS: CounterFamily = CounterFamily {
    name: "ember_webhook_requests",
    help: "Requests to a WebhookSource by outcome: accepted, deduplicated (every event a redelivery), \
           or refused as unauthorized, bad_request, too_large, rate_limited, unavailable, method_not_allowed, timed_out.",
};
static DUPLICATE_EVENTS: CounterFamily = CounterFamily {
    name: "ember_webhook_duplicate_events",
    help: "Events a WebhookSource dropped because their id was seen within its dedupWindow.",
};

impl SourceMetrics for WebhookMetrics {
    fn counters(&self) -> Vec<Counter> {
        Outcome::ALL
            .into_iter()
            .map(|o| Counter {
                family: &REQUESTS,
                labels: vec![("outcome", o.label())],
                value: self.requests(o),
            })
            .chain(std::iter::once(Counter {
                family: &DUPLICATE_EVENTS,
                labels: Vec::new(),
                value: self.duplicate_events(),
            }))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_outcome_has_its_own_counter_and_label() {
        let m = WebhookMetrics::default();
        for (i, o) in Outcome::ALL.into_iter().enumerate() {
            assert_eq!(o.index(), i);
            for _ in 0..=i {
                m.record(o);
            }
        }
        for (i, o) in Outcome::ALL.into_iter().enumerate() {
            assert_eq!(m.requests(o), i as u64 + 1, "{}", o.label());
        }
        let labels: std::collections::BTreeSet<_> =
            Outcome::ALL.into_iter().map(Outcome::label).collect();
        assert_eq!(labels.len(), Outcome::ALL.len());
        m.record_duplicate_event();
        assert_eq!(m.duplicate_events(), 1);
    }
}
