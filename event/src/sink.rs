//! Where a source's events go: the one contract between every source and every destination.
//!
//! A destination is a broker of this Ember (appended in process, durable on `Ok`) or any
//! CloudEvents receiver (posted over HTTP, accepted on a 2xx). Sources never know which: they
//! hold an `Arc<dyn EventSink>` the binary resolved from the resource's `sink`, and acknowledge
//! upstream (an HTTP 2xx to a webhook caller, a recorded tick, an AMQP ack, a Kafka commit) only
//! for events the sink answered `Ok` for.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::{CloudEvent, Prestamped};

/// An event made ready ahead of its sending; see [`EventSink::prepare`].
#[derive(Debug, Clone)]
pub enum Prepared {
    /// For a broker: validated, TTL-stamped and encoded, all but its arrival time.
    Encoded(Prestamped),
    /// For a receiver that takes the event itself (posted in binary mode).
    Event(Box<CloudEvent>),
}

/// Whether and when a refused event may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// The destination is busy, full or unreachable: the same event may succeed later, not
    /// before this long.
    After(Duration),
    /// The event itself is refused (invalid, too large): sending it again cannot succeed.
    Never,
}

/// Why a sink did not take an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Refused {
    /// What went wrong, for logs and for the source's own answer upstream.
    pub reason: String,
    /// Whether and when to try again.
    pub retry: Retry,
}

impl Refused {
    /// A refusal worth retrying after `wait`.
    pub fn later(reason: impl Into<String>, wait: Duration) -> Self {
        Self {
            reason: reason.into(),
            retry: Retry::After(wait),
        }
    }

    /// A refusal that retrying cannot change.
    pub fn never(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            retry: Retry::Never,
        }
    }
}

/// The answers to a batch: one per event, in the batch's order.
pub type Answers<'a> = Pin<Box<dyn Future<Output = Vec<Result<(), Refused>>> + Send + 'a>>;

/// A destination for sources' events.
pub trait EventSink: Send + Sync {
    /// Makes an event ready to send, ahead of its sending where the source knows it early (a
    /// PingSource's next tick): for a broker, validated and encoded but for its arrival time.
    /// An invalid event is refused here, with [`Retry::Never`].
    fn prepare(&self, event: CloudEvent) -> Result<Prepared, Refused>;

    /// Sends a batch, in order: `Ok` for an event means the destination holds it (durably, for
    /// a broker). Events sent together share one append where the destination can (a broker
    /// stamps them with one arrival time, as its HTTP ingress does for a batch request).
    fn send<'a>(&'a self, batch: &'a [&'a Prepared]) -> Answers<'a>;

    /// Why the sink cannot take events now, if it knows (a KafkaSink whose topic does not
    /// exist): for its status. `None` by default.
    fn problem(&self) -> Option<String> {
        None
    }

    /// `namespace/name` of a broker, or the receiver's URL: for logs. (Sources that share a
    /// destination share its batches by the identity of the sink object, so whoever resolves
    /// sinks hands out one object per destination.)
    fn name(&self) -> &str;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_say_whether_to_retry() {
        let later = Refused::later("queue full", Duration::from_secs(1));
        assert_eq!(later.retry, Retry::After(Duration::from_secs(1)));
        assert_eq!(later.to_string(), "queue full");
        assert_eq!(Refused::never("invalid").retry, Retry::Never);
    }
}
