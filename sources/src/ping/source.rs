//! The PingSource run loop: sleep until the next tick, emit it, record it, repeat.
//!
//! [`run`] owns one source. It never polls: each iteration computes the next tick from the
//! schedule and sleeps until then with `tokio::time::sleep_until`. An emitted tick is retried
//! with backoff (100 ms doubling to 10 s) while the sink refuses it, and recorded in the
//! [`TickStore`] only once the sink has accepted it; the loop never moves to the next tick
//! before that record is durable. The loop never touches HTTP: the binary's [`PingSink`] turns
//! a [`PingEvent`] into a CloudEvent and appends it to a broker.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::clock::Clock;
use super::config::{MissedTicks, ValidPing};
use super::store::{StoreError, TickStore};

/// The CloudEvents `type` of every PingSource event.
pub const PING_EVENT_TYPE: &str = "dev.knative.sources.ping";

/// First delay before retrying a tick the sink refused.
const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// Longest delay between two attempts at the same tick.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// One tick, ready for the binary to turn into a CloudEvent (spec version 1.0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PingEvent {
    /// A fresh UUID v4 per tick; retries of the same tick keep it, so a broker can deduplicate.
    pub id: String,
    /// `/apis/v1/namespaces/{namespace}/pingsources/{name}`.
    pub source: String,
    /// Always [`PING_EVENT_TYPE`].
    pub r#type: String,
    /// The scheduled instant of the tick (not the instant it was sent).
    pub time: DateTime<Utc>,
    /// `datacontenttype`, as configured.
    pub content_type: Option<String>,
    /// The payload, already decoded from `data` or `dataBase64`.
    pub data: Option<Bytes>,
    /// Extension attributes from `ceOverrides.extensions`.
    pub extensions: Vec<(String, String)>,
}

/// A sink refused an event; the tick will be retried.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SinkError(Box<dyn std::error::Error + Send + Sync>);

impl SinkError {
    /// Wraps any error (or a message) as a sink failure.
    pub fn new(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self(error.into())
    }
}

/// Where a PingSource sends its events; the binary implements it over a broker.
pub trait PingSink: Send + Sync {
    /// Resolves `Ok` once the broker holds the event durably; an error means "not delivered,
    /// retry later".
    fn send(&self, event: PingEvent) -> impl Future<Output = Result<(), SinkError>> + Send;
}

impl<S: PingSink + ?Sized> PingSink for Arc<S> {
    fn send(&self, event: PingEvent) -> impl Future<Output = Result<(), SinkError>> + Send {
        (**self).send(event)
    }
}

impl<S: PingSink + ?Sized> PingSink for &S {
    fn send(&self, event: PingEvent) -> impl Future<Output = Result<(), SinkError>> + Send {
        (**self).send(event)
    }
}

/// Runs one PingSource until `shutdown` turns `true` (or its sender is dropped).
///
/// On start, the last fired tick is read from `store`; the first tick to fire is:
/// - never one at or before the last fired tick (so no tick fires twice, even if the wall clock
///   went backwards);
/// - with [`MissedTicks::Skip`], the first tick after now;
/// - with [`MissedTicks::CatchUp`], the first tick after `max(last fired, now − window)`: missed
///   ticks inside the window fire immediately, in order, each with its scheduled `time`. A
///   source that never fired has nothing to catch up and starts after now.
///
/// While running, every tick fires, in order: ticks that came due while the sink was refusing
/// an earlier one fire right after it (the missed-tick policy is about downtime, not about a
/// briefly unavailable broker).
///
/// # Exactly once, and its edge
/// A tick is recorded only after the sink accepted it, and the next tick is not considered
/// before the record is durable. A crash (not a shutdown: shutdown never interrupts a send that
/// was accepted) between the sink's acceptance and the fsync of the record therefore repeats
/// that one tick after restart, with the same `time` and a new `id` — at-least-once for that
/// window of a few milliseconds, exactly-once otherwise.
///
/// Shutdown during the sleep or during the retries of a tick returns at once; a tick that was
/// not accepted is not recorded and is subject to the missed-tick policy at the next start.
///
/// A send in flight is not cancelled by shutdown (so an accepted event is always recorded):
/// the sink must bound its own attempts with a timeout, or shutdown waits for it.
///
/// Errors: only reading the store at start (e.g. a corrupt tick file). Write failures are
/// retried with the same backoff, since moving on without a record would break exactly-once.
pub async fn run(
    ping: ValidPing,
    sink: impl PingSink,
    store: TickStore,
    clock: impl Clock,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), StoreError> {
    let source = ping.source();
    let last_fired = store.last_fired(&ping.namespace, &ping.name)?;
    let now = clock.now();
    let mut cursor = match (last_fired, ping.missed) {
        (None, _) => now,
        (Some(last), MissedTicks::Skip) => last.max(now),
        (Some(last), MissedTicks::CatchUp { window }) => {
            let window = chrono::TimeDelta::from_std(window).unwrap_or(chrono::TimeDelta::MAX);
            let oldest = now
                .checked_sub_signed(window)
                .unwrap_or(DateTime::<Utc>::MIN_UTC);
            last.max(oldest)
        }
    };
    tracing::info!(%source, schedule = ping.schedule.expression(), zone = %ping.schedule.zone(),
        ?last_fired, policy = ?ping.missed, "pingsource started");

    loop {
        let Some(tick) = ping.schedule.next_after(cursor) else {
            tracing::warn!(%source, "schedule has no further ticks; idle until shutdown");
            let _ = shutdown.wait_for(|stop| *stop).await;
            return Ok(());
        };

        // Sleep until the tick (no-op when catching up on a past tick).
        tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => return Ok(()),
            () = tokio::time::sleep_until(clock.deadline(tick)) => {}
        }

        let event = PingEvent {
            id: uuid::Uuid::new_v4().to_string(),
            source: source.clone(),
            r#type: PING_EVENT_TYPE.to_owned(),
            time: tick,
            content_type: ping.content_type.clone(),
            data: ping.data.clone(),
            extensions: ping.extensions.clone(),
        };
        // Emit: retry the same tick (same id) until accepted.
        let sent = retry(&mut shutdown, "send", &source, tick, || {
            let event = event.clone();
            let sink = &sink;
            async move { sink.send(event).await.map_err(|e| e.to_string()) }
        })
        .await;
        if !sent {
            return Ok(());
        }
        // Record before moving on.
        let recorded = retry(&mut shutdown, "record", &source, tick, || async {
            store
                .record(&ping.namespace, &ping.name, tick)
                .await
                .map_err(|e| e.to_string())
        })
        .await;
        if !recorded {
            return Ok(());
        }
        tracing::debug!(%source, %tick, id = %event.id, "tick fired");
        cursor = tick;
    }
}

/// Resolves when shutdown is requested or can no longer be (sender dropped).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Runs `attempt` until it succeeds (`true`) or shutdown is requested (`false`), backing off
/// from [`INITIAL_BACKOFF`] doubling to [`MAX_BACKOFF`] between failures.
async fn retry<F, Fut>(
    shutdown: &mut watch::Receiver<bool>,
    what: &str,
    source: &str,
    tick: DateTime<Utc>,
    mut attempt: F,
) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let mut backoff = INITIAL_BACKOFF;
    loop {
        if *shutdown.borrow() {
            return false;
        }
        match attempt().await {
            Ok(()) => return true,
            Err(error) => {
                tracing::warn!(%source, %tick, %error, retry_in = ?backoff, "pingsource {what} failed");
            }
        }
        tokio::select! {
            biased;
            _ = stopped(shutdown) => return false,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
