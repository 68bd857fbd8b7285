//! Sending a batch to a sink until every event of it is settled — held by the sink, or refused
//! for good — waiting as the sink asks (and never less than the shared backoff) between tries.
//! What the RabbitmqSource and the KafkaSource do before they acknowledge or commit upstream.

use std::time::Duration;

use ember_event::sink::{EventSink, Prepared, Retry};

use crate::{Backoff, Shutdown};

/// The end of a batch.
pub(crate) struct Settled<T> {
    /// Items whose events the sink holds, in the batch's order.
    pub held: Vec<T>,
    /// Items whose events the sink refuses for good, with why.
    pub refused: Vec<(T, String)>,
    /// Whether it stopped early because `shutdown` fired: the items not in `held` or
    /// `refused` are unsettled (not to be acknowledged).
    pub stopped: bool,
}

/// Sends `pending` to `sink` until each is settled; calls `waiting(reason)` before each wait
/// (the first call is where a source pauses its input), and stops early when `shutdown` fires.
pub(crate) async fn until_settled<T>(
    sink: &dyn EventSink,
    mut pending: Vec<(T, Prepared)>,
    mut shutdown: Shutdown,
    mut waiting: impl FnMut(&str),
) -> Settled<T> {
    let mut out = Settled {
        held: Vec::with_capacity(pending.len()),
        refused: Vec::new(),
        stopped: false,
    };
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(10));
    while !pending.is_empty() {
        let refs: Vec<&Prepared> = pending.iter().map(|(_, p)| p).collect();
        let answers = sink.send(&refs).await;
        let mut again = Vec::new();
        let mut wait = Duration::ZERO;
        let mut reason = String::new();
        for ((item, p), answer) in pending.into_iter().zip(answers) {
            match answer {
                Ok(()) => out.held.push(item),
                Err(r) => match r.retry {
                    Retry::Never => out.refused.push((item, r.reason)),
                    Retry::After(w) => {
                        wait = wait.max(w);
                        reason = r.reason;
                        again.push((item, p));
                    }
                },
            }
        }
        pending = again;
        if !pending.is_empty() {
            waiting(&reason);
            tokio::select! {
                _ = tokio::time::sleep(wait.max(backoff.next_wait())) => {}
                _ = shutdown.requested() => {
                    out.stopped = true;
                    break;
                }
            }
        }
    }
    out
}
