//! The PingSource run loop: one task sleeps until the earliest tick of all sources, emits every
//! tick due then (batched per sink), records them, repeats.
//!
//! [`run_many`] serves any number of sources from one timer; [`run`] is the same loop for one
//! source. It never polls: the agenda holds each source's next tick and the loop sleeps until
//! the earliest with `tokio::time::sleep_until`. An emitted tick is retried with backoff
//! (100 ms doubling to 10 s) while the sink refuses it, and recorded in the [`TickStore`] only
//! once the sink has accepted it; a source never moves to its next tick before that record is
//! durable. The loop never touches HTTP: the binary's [`PingBatchSink`] turns [`PingEvent`]s
//! into CloudEvents and appends them to a broker.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use tokio::sync::watch;

use super::clock::{Clock, PRECISE_MARGIN};
use super::config::{MissedTicks, ValidPing};
use super::metrics::LATE_AFTER;
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

/// Where PingSources send their ticks a batch at a time: all the ticks of one instant that go
/// to the same destination arrive in one call, so a broker can take them with one append.
///
/// A tick is [prepared](Self::prepare) as soon as the previous one is recorded — well before
/// its instant — so that at the instant only what depends on the moment of sending is left
/// (for a broker: stamping the arrival time and appending).
pub trait PingBatchSink: Send + Sync {
    /// A tick made ready ahead of its instant.
    type Prepared: Send + Sync;

    /// Makes a tick ready to send (encoding, say); called ahead of the tick's instant.
    fn prepare(&self, event: PingEvent) -> Self::Prepared;

    /// Sends `batch` in order and answers one result per tick, in the same order. `Ok` means
    /// the destination holds that event durably; an error means "not delivered, retry later"
    /// (the same prepared tick, so the same id, is sent again).
    fn send_all(
        &self,
        batch: &[&Self::Prepared],
    ) -> impl Future<Output = Vec<Result<(), SinkError>>> + Send;
}

/// A [`PingSink`] used as a [`PingBatchSink`]: the events of a batch are sent one at a time.
#[derive(Debug, Clone)]
pub struct OneAtATime<S>(pub S);

impl<S: PingSink> PingBatchSink for OneAtATime<S> {
    type Prepared = PingEvent;

    fn prepare(&self, event: PingEvent) -> PingEvent {
        event
    }

    async fn send_all(&self, batch: &[&PingEvent]) -> Vec<Result<(), SinkError>> {
        let mut results = Vec::with_capacity(batch.len());
        for event in batch {
            results.push(self.0.send((*event).clone()).await);
        }
        results
    }
}

/// Runs one PingSource until `shutdown` turns `true` (or its sender is dropped): [`run_many`]
/// with a single source and sink.
pub async fn run(
    ping: ValidPing,
    sink: impl PingSink,
    store: TickStore,
    clock: impl Clock,
    shutdown: watch::Receiver<bool>,
) -> Result<(), StoreError> {
    run_many(vec![(ping, 0)], &[OneAtATime(sink)], store, clock, shutdown).await
}

/// Where one source stands.
struct Entry<P> {
    ping: ValidPing,
    /// Index into the sinks.
    sink: usize,
    /// The event `source`, computed once.
    source: String,
    /// The source's key in the tick store.
    key: Arc<str>,
    /// The last tick fired (or the instant ticks are counted from).
    cursor: DateTime<Utc>,
    /// What is due next.
    next: Next<P>,
    /// The wait before the next retry.
    backoff: Duration,
}

/// What a source does when its agenda time comes.
enum Next<P> {
    /// Send this prepared tick: the next one, or one the sink refused (same id).
    Send(DateTime<Utc>, P),
    /// Record this tick again: the sink took it but the store write failed.
    Record(DateTime<Utc>),
    /// Nothing: the schedule has no further ticks, or a batch is under way.
    Idle,
}

/// How one tick of a batch ended.
enum Outcome<P> {
    Recorded,
    SendFailed(P, String),
    RecordFailed(String),
}

/// A finished batch: each entry with its tick and outcome.
type Finished<P> = Vec<(usize, DateTime<Utc>, Outcome<P>)>;

/// The agenda: wall-clock instant → the entries due then (sources on the same schedule share a
/// key).
type Agenda = BTreeMap<DateTime<Utc>, Vec<usize>>;

/// Runs PingSources until `shutdown` turns `true` (or its sender is dropped). Each source is
/// `(ping, index into sinks)`.
///
/// One task and one timer serve every source: the agenda is ordered by wall-clock instant, the
/// loop sleeps until the earliest (wake-ups come from the schedules, never from polling), then
/// takes every source due by then and sends their ticks — prepared in advance — with one
/// [`PingBatchSink::send_all`] call per sink: ten thousand sources on the same per-second
/// schedule cost one batch per second, not ten thousand sends. Batches for different sinks run
/// concurrently, and a sink that is slow or refusing holds up only its own sources.
///
/// On start, the last fired tick is read from `store`; a source's first tick is:
/// - never one at or before the last fired tick (so no tick fires twice, even if the wall clock
///   went backwards);
/// - with [`MissedTicks::Skip`], the first tick after now;
/// - with [`MissedTicks::CatchUp`], the first tick after `max(last fired, now − window)`: missed
///   ticks inside the window fire immediately, in order, each with its scheduled `time`. A
///   source that never fired has nothing to catch up and starts after now.
///
/// Ticks passed over this way are counted in the source's [`PingMetrics`](super::PingMetrics)
/// as skipped, and logged in one line per source: how many, the first of them and the instant
/// through which they were skipped.
///
/// An `@every` schedule starts a new series of intervals at start-up under
/// [`MissedTicks::Skip`], as robfig/cron does: its first tick is one interval after start. Under
/// [`MissedTicks::CatchUp`] it continues the series of the last fired tick instead: that series'
/// missed ticks inside the window fire, and the interval keeps its phase.
///
/// While running, every tick fires, in order: a refused tick is sent again (same id) with
/// backoff from 100 ms doubling to 10 s, and ticks that came due meanwhile fire right after it
/// (the missed-tick policy is about downtime, not about a briefly unavailable broker). Fired,
/// late (accepted more than [`LATE_AFTER`](super::LATE_AFTER) after the tick's instant) and
/// retried ticks are counted too.
///
/// # Exactly once, and its edge
/// A tick is recorded only after the sink accepted it, with one group-committed store write per
/// batch, and a source's next tick is not considered before that record is durable. A crash
/// (not a shutdown: shutdown waits for batches under way) between the sink's acceptance and the
/// fsync of the record therefore repeats that one tick after restart, with the same `time` and
/// a new `id` — at-least-once for that window of a few milliseconds, exactly-once otherwise.
///
/// Shutdown during a sleep or between retries returns at once; a tick that was not accepted is
/// not recorded and is subject to the missed-tick policy at the next start. The sinks must
/// bound their own attempts with a timeout, or shutdown waits for them.
///
/// Errors: only reading the store at start (e.g. a corrupt tick file). Write failures are
/// retried with the same backoff, since moving on without a record would break exactly-once.
pub async fn run_many<S: PingBatchSink>(
    pings: Vec<(ValidPing, usize)>,
    sinks: &[S],
    store: TickStore,
    clock: impl Clock,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), StoreError> {
    let now = clock.now();
    let mut entries = Vec::with_capacity(pings.len());
    let mut agenda = Agenda::new();
    for (ping, sink) in pings {
        assert!(sink < sinks.len(), "PingSource sink index out of range");
        let last_fired = store.last_fired(&ping.namespace, &ping.name)?;
        let cursor = match (last_fired, ping.missed) {
            (None, _) => now,
            (Some(last), MissedTicks::Skip) => last.max(now),
            (Some(last), MissedTicks::CatchUp { window }) => {
                let window = chrono::TimeDelta::from_std(window).unwrap_or(chrono::TimeDelta::MAX);
                let oldest = now
                    .checked_sub_signed(window)
                    .unwrap_or(DateTime::<Utc>::MIN_UTC);
                ping.schedule.resume(last, oldest)
            }
        };
        if let Some(last) = last_fired {
            report_skipped(&ping, last, cursor);
        }
        let source = ping.source();
        let key = super::store::key(&ping.namespace, &ping.name);
        tracing::debug!(%source, schedule = ping.schedule.expression(), zone = %ping.schedule.zone(),
            ?last_fired, policy = ?ping.missed, "pingsource scheduled");
        let mut entry = Entry {
            ping,
            sink,
            source,
            key,
            cursor,
            next: Next::Idle,
            backoff: INITIAL_BACKOFF,
        };
        schedule_next(&mut entry, entries.len(), &sinks[sink], &mut agenda);
        entries.push(entry);
    }
    tracing::info!(sources = entries.len(), "pingsources started");

    let margin = chrono::TimeDelta::from_std(PRECISE_MARGIN).unwrap_or_default();
    let mut batches = FuturesUnordered::new();
    loop {
        let first = agenda.first_key_value().map(|(at, _)| *at);
        tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => break,
            Some(finished) = batches.next(), if !batches.is_empty() => {
                settle(finished, &mut entries, sinks, &mut agenda, &clock);
            }
            () = sleep_until(&clock, first.map(|at| at - margin)), if first.is_some() => {
                // Woken a little early: gather the work, then send at the instant itself.
                let at = first.unwrap_or_default().max(clock.now());
                let work = collect(take_due(&mut agenda, at), &mut entries);
                clock.wait_exactly(at).await;
                for (sink, work) in work {
                    batches.push(send_batch(&sinks[sink], &store, work));
                }
            }
        }
    }
    // Batches under way hold ticks a sink may already have accepted: let them be recorded.
    while batches.next().await.is_some() {}
    Ok(())
}

/// Counts and logs the ticks after `last` up to `cursor`, which the source will not fire.
fn report_skipped(ping: &ValidPing, last: DateTime<Utc>, cursor: DateTime<Utc>) {
    let skipped = ping.schedule.count_between(last, cursor);
    if skipped == 0 {
        return;
    }
    ping.metrics.count_skipped(skipped);
    let first = ping.schedule.next_after(last).unwrap_or(cursor);
    let why = match ping.missed {
        MissedTicks::Skip => "came due while Ember was not running (missed-tick policy: skip)",
        MissedTicks::CatchUp { .. } => {
            "came due while Ember was not running, before the catch-up window"
        }
    };
    tracing::warn!(
        source = %format_args!("{}/{}", ping.namespace, ping.name),
        skipped,
        first = %first,
        through = %cursor,
        last_fired = %last,
        "pingsource skipped {skipped} ticks that {why}"
    );
}

/// Sleeps until the wall clock reads `at` (forever when there is no `at`).
async fn sleep_until(clock: &impl Clock, at: Option<DateTime<Utc>>) {
    match at {
        Some(at) => clock.sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Prepares the entry's next tick and puts it on the agenda (or leaves the entry idle when the
/// schedule has no further tick).
fn schedule_next<S: PingBatchSink>(
    entry: &mut Entry<S::Prepared>,
    id: usize,
    sink: &S,
    agenda: &mut Agenda,
) {
    entry.backoff = INITIAL_BACKOFF;
    match entry.ping.schedule.next_after(entry.cursor) {
        Some(tick) => {
            entry.next = Next::Send(tick, sink.prepare(new_event(entry, tick)));
            agenda.entry(tick).or_default().push(id);
        }
        None => {
            entry.next = Next::Idle;
            tracing::warn!(source = %entry.source, "schedule has no further ticks; idle until shutdown");
        }
    }
}

/// Removes and returns every entry due at or before `now`, earliest first.
fn take_due(agenda: &mut Agenda, now: DateTime<Utc>) -> Vec<usize> {
    let mut due = Vec::new();
    while let Some(entry) = agenda.first_entry() {
        if *entry.key() > now {
            break;
        }
        due.extend(entry.remove());
    }
    due
}

/// One sink's share of a round: ticks to send, and ticks sent whose record must be retried;
/// each with its entry and store key.
struct Work<P> {
    send: Vec<(usize, Arc<str>, DateTime<Utc>, P)>,
    record: Vec<(usize, Arc<str>, DateTime<Utc>)>,
}

/// Turns due entries into work per sink (in sink order, so runs are reproducible).
fn collect<P>(due: Vec<usize>, entries: &mut [Entry<P>]) -> BTreeMap<usize, Work<P>> {
    let mut work: BTreeMap<usize, Work<P>> = BTreeMap::new();
    let n = due.len();
    for id in due {
        let entry = &mut entries[id];
        let w = work.entry(entry.sink).or_insert_with(|| Work {
            send: Vec::with_capacity(n),
            record: Vec::new(),
        });
        let key = entry.key.clone();
        match std::mem::replace(&mut entry.next, Next::Idle) {
            Next::Send(tick, prepared) => w.send.push((id, key, tick, prepared)),
            Next::Record(tick) => w.record.push((id, key, tick)),
            Next::Idle => {}
        }
    }
    work
}

/// A fresh event for `tick` of `entry`.
fn new_event<P>(entry: &Entry<P>, tick: DateTime<Utc>) -> PingEvent {
    PingEvent {
        id: uuid::Uuid::new_v4().to_string(),
        source: entry.source.clone(),
        r#type: PING_EVENT_TYPE.to_owned(),
        time: tick,
        content_type: entry.ping.content_type.clone(),
        data: entry.ping.data.clone(),
        extensions: entry.ping.extensions.clone(),
    }
}

/// Sends one sink's ticks, then records every accepted tick (and those whose record is being
/// retried) with one store write.
async fn send_batch<S: PingBatchSink>(
    sink: &S,
    store: &TickStore,
    work: Work<S::Prepared>,
) -> Finished<S::Prepared> {
    let Work { send, mut record } = work;
    let results = if send.is_empty() {
        Vec::new()
    } else {
        let batch: Vec<&S::Prepared> = send.iter().map(|(.., p)| p).collect();
        sink.send_all(&batch).await
    };
    let mut results = results.into_iter();
    let mut finished = Vec::with_capacity(send.len() + record.len());
    for (id, key, tick, prepared) in send {
        match results.next() {
            Some(Ok(())) => record.push((id, key, tick)),
            Some(Err(e)) => finished.push((id, tick, Outcome::SendFailed(prepared, e.to_string()))),
            None => finished.push((
                id,
                tick,
                Outcome::SendFailed(prepared, "the sink gave no answer for this tick".into()),
            )),
        }
    }
    let ids: Vec<(usize, DateTime<Utc>)> =
        record.iter().map(|(id, _, tick)| (*id, *tick)).collect();
    let recorded = store
        .record_keyed(
            record
                .into_iter()
                .map(|(_, key, tick)| (key, tick))
                .collect(),
        )
        .await;
    for (id, tick) in ids {
        let outcome = match &recorded {
            Ok(()) => Outcome::Recorded,
            Err(e) => Outcome::RecordFailed(e.to_string()),
        };
        finished.push((id, tick, outcome));
    }
    finished
}

/// Applies a finished batch: recorded sources move on to their next tick; the others retry the
/// same tick after their backoff. Failures are logged once per batch and reason.
fn settle<S: PingBatchSink>(
    finished: Finished<S::Prepared>,
    entries: &mut [Entry<S::Prepared>],
    sinks: &[S],
    agenda: &mut Agenda,
    clock: &impl Clock,
) {
    let now = clock.now();
    // (stage, error) → (sources, one of them, its tick)
    let mut failures: BTreeMap<(&str, String), (usize, String, DateTime<Utc>)> = BTreeMap::new();
    for (id, tick, outcome) in finished {
        let entry = &mut entries[id];
        let (stage, error) = match outcome {
            Outcome::Recorded => {
                tracing::debug!(source = %entry.source, %tick, "tick fired");
                let late = (now - tick)
                    .to_std()
                    .is_ok_and(|behind| behind > LATE_AFTER);
                entry.ping.metrics.count_fired(late);
                entry.cursor = tick;
                schedule_next(entry, id, &sinks[entry.sink], agenda);
                continue;
            }
            Outcome::SendFailed(prepared, error) => {
                entry.ping.metrics.count_retry();
                entry.next = Next::Send(tick, prepared);
                ("send", error)
            }
            Outcome::RecordFailed(error) => {
                entry.next = Next::Record(tick);
                ("record", error)
            }
        };
        let backoff = entry.backoff;
        entry.backoff = (backoff * 2).min(MAX_BACKOFF);
        let at = now + chrono::TimeDelta::from_std(backoff).unwrap_or(chrono::TimeDelta::MAX);
        agenda.entry(at).or_default().push(id);
        failures
            .entry((stage, error))
            .or_insert_with(|| (0, entry.source.clone(), tick))
            .0 += 1;
    }
    for ((stage, error), (count, source, tick)) in failures {
        tracing::warn!(%source, %tick, %error, sources = count, "pingsource {stage} failed; retrying with backoff");
    }
}

/// Resolves when shutdown is requested or can no longer be (sender dropped).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
