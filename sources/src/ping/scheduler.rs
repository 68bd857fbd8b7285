//! The PingSource scheduler: one task sleeps until the earliest tick of all sources, sends every
//! tick due then (batched per destination), records them, repeats; sources are added, removed
//! and replaced through its control channel while it runs.
//!
//! It never polls: the agenda holds each source's next tick and the loop sleeps until the
//! earliest with `tokio::time::sleep_until`. A refused tick is sent again after a jittered
//! [`Backoff`] (bounds from 100 ms doubling to 10 s, never sooner than the sink asked), and
//! recorded in the [`TickStore`] only once the sink has accepted it; a source never moves to its
//! next tick before that record is durable.
//!
//! (One file on purpose: the agenda, the batching per destination and the control channel are
//! one state machine driven by one loop; split, its invariants would span files.)

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ember_event::sink::{EventSink, Prepared, Refused, Retry};
use futures_util::StreamExt as _;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use tokio::sync::{mpsc, oneshot};

use super::clock::{Clock, PRECISE_MARGIN};
use super::config::{MissedTicks, ValidPing};
use super::event::tick_event;
use super::metrics::LATE_AFTER;
use super::store::{StoreError, TickStore};
use crate::backoff::Backoff;

/// The CloudEvents `type` of every PingSource event.
pub const PING_EVENT_TYPE: &str = "dev.knative.sources.ping";

/// The bound of the first wait before a refused tick is sent again.
const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// The largest bound of a wait between two attempts at the same tick.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Control messages waiting for the scheduler.
const CONTROL_QUEUE: usize = 1024;

/// Where a source added to the scheduler counts its first tick from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Ember starting, or a source new to it: after its last recorded tick, by its
    /// [`MissedTicks`] policy (see [`PingScheduler`]).
    Restart,
    /// A changed source whose schedule did not change: from its last recorded tick, so a tick
    /// that came due during the change fires now and none fires twice.
    Continue,
    /// A changed source with a new schedule: from now — and never at or before its last
    /// recorded tick.
    FromNow,
}

/// Why the scheduler could not take a source.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// The tick store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A source of that namespace and name is scheduled already.
    #[error("PingSource {0} is scheduled already")]
    Duplicate(String),
    /// The scheduler has stopped.
    #[error("the PingSource scheduler has stopped")]
    Stopped,
}

enum Control {
    Add {
        ping: Box<ValidPing>,
        sink: Arc<dyn EventSink>,
        start: Start,
        done: oneshot::Sender<Result<(), SchedulerError>>,
    },
    Remove {
        namespace: String,
        name: String,
        done: oneshot::Sender<()>,
    },
    Stop {
        done: oneshot::Sender<()>,
    },
}

/// The handle to a running scheduler: cheap to clone.
///
/// One task and one timer serve every source: the agenda is ordered by wall-clock instant, the
/// loop sleeps until the earliest (wake-ups come from the schedules, never from polling), then
/// takes every source due by then and sends their ticks — prepared in advance, see
/// [`EventSink::prepare`] — with one [`EventSink::send`] per destination: ten thousand sources
/// on the same per-second schedule into one broker cost one batch per second, not ten thousand
/// sends. Sources share a destination when their sinks are the same object (`Arc` identity).
/// Batches for different destinations run concurrently, and a destination that is slow or
/// refusing holds up only its own sources.
///
/// # Where a source starts
/// A source's first tick is never one at or before its last recorded tick (so no tick fires
/// twice, even if the wall clock went backwards). Beyond that, by its [`Start`]:
/// - [`Start::Restart`] with [`MissedTicks::Skip`]: the first tick after now;
/// - [`Start::Restart`] with [`MissedTicks::CatchUp`]: the first tick after
///   `max(last recorded, now − window)`: missed ticks inside the window fire immediately, in
///   order, each with its scheduled `time`. A source that never fired starts after now. Ticks
///   passed over are counted in its [`PingMetrics`](super::PingMetrics) as skipped and logged
///   in one line: how many, the first, and the instant through which they were skipped.
/// - [`Start::Continue`]: the first tick after the last recorded one;
/// - [`Start::FromNow`]: the first tick after now.
///
/// An `@every` schedule starts a new series at now, except that [`MissedTicks::CatchUp`] and
/// [`Start::Continue`] continue the series of the last recorded tick (the interval keeps its
/// phase).
///
/// # While running
/// Every tick fires, in order: a tick refused for later is sent again (same id) after a
/// jittered [`Backoff`], and ticks that came due meanwhile fire right after it (the missed-tick
/// policy is about downtime, not about a briefly unavailable broker). A tick refused for good
/// ([`Retry::Never`]: an invalid event, a destination's 4xx) is given up: logged, counted as
/// dropped and recorded, and the source moves on to its next tick. Fired, late (accepted more
/// than [`LATE_AFTER`](super::LATE_AFTER) after the instant), retried and dropped ticks are
/// counted.
///
/// # Exactly once, and its edge
/// A tick is recorded only after the sink accepted it, with one group-committed store write per
/// batch, and a source's next tick is not considered before that record is durable. A crash
/// (not a stop: removing a source waits for its batch under way) between the sink's acceptance
/// and the fsync of the record therefore repeats that one tick after restart, with the same
/// `time` and a new `id` — at-least-once for that window of a few milliseconds, exactly-once
/// otherwise.
///
/// Removing a source during a sleep or between retries takes effect at once; a tick that was
/// not accepted is not recorded and falls to the next start's policy. Sinks bound their own
/// attempts with a timeout, or removal waits for them. Store write failures are retried with
/// the backoff, since moving on without a record would break exactly-once.
#[derive(Debug, Clone)]
pub struct PingScheduler {
    control: mpsc::Sender<Control>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Control::Add { ping, .. } => write!(f, "Add({}/{})", ping.namespace, ping.name),
            Control::Remove {
                namespace, name, ..
            } => write!(f, "Remove({namespace}/{name})"),
            Control::Stop { .. } => f.write_str("Stop"),
        }
    }
}

impl PingScheduler {
    /// Starts the scheduler's task (call within a tokio runtime), with no sources yet.
    pub fn start(store: TickStore, clock: impl Clock + 'static) -> Self {
        let (control, rx) = mpsc::channel(CONTROL_QUEUE);
        tokio::spawn(Scheduler::new(store, clock).run(rx));
        Self { control }
    }

    /// Schedules `ping` into `sink`, its first tick counted by `start`; returns once its next
    /// tick is on the agenda.
    pub async fn add(
        &self,
        ping: ValidPing,
        sink: Arc<dyn EventSink>,
        start: Start,
    ) -> Result<(), SchedulerError> {
        let (done, answer) = oneshot::channel();
        self.control
            .send(Control::Add {
                ping: Box::new(ping),
                sink,
                start,
                done,
            })
            .await
            .map_err(|_| SchedulerError::Stopped)?;
        answer.await.map_err(|_| SchedulerError::Stopped)?
    }

    /// Takes the source `namespace/name` off the agenda; returns once no tick of it is under
    /// way (a tick its sink accepted is recorded by then). Its last recorded tick stays in the
    /// store, for a source of the same name added later.
    pub async fn remove(&self, namespace: &str, name: &str) {
        let (done, answer) = oneshot::channel();
        let remove = Control::Remove {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            done,
        };
        if self.control.send(remove).await.is_ok() {
            let _ = answer.await;
        }
    }

    /// Stops the scheduler once the batches under way are recorded; the sources still on it
    /// are dropped. Returns once it has stopped.
    pub async fn stop(&self) {
        let (done, answer) = oneshot::channel();
        if self.control.send(Control::Stop { done }).await.is_ok() {
            let _ = answer.await;
        }
    }
}

/// Where one source stands.
struct Entry {
    ping: ValidPing,
    /// Index into the sinks.
    sink: usize,
    /// The event `source`, computed once.
    source: String,
    /// The source's key in the tick store.
    key: Arc<str>,
    /// Tells this entry's agenda slots from those of an earlier entry in the same slot.
    generation: u64,
    /// The last tick fired (or the instant ticks are counted from).
    cursor: DateTime<Utc>,
    /// What is due next.
    next: Next,
    /// The waits between attempts at the same tick.
    backoff: Backoff,
    /// A batch under way holds this entry's tick.
    busy: bool,
    /// Removals waiting for that batch to finish.
    removing: Vec<oneshot::Sender<()>>,
}

/// What a source does when its agenda time comes.
enum Next {
    /// Send this prepared tick — the next one, or one the sink refused for later (same id) —
    /// or give it up if it could not be prepared.
    Send(DateTime<Utc>, Result<Prepared, Refused>),
    /// Record this tick again: the store write failed. With the reason if it was given up.
    Record(DateTime<Utc>, Option<String>),
    /// Nothing: the schedule has no further ticks, or a batch is under way.
    Idle,
}

/// How one tick of a batch ended.
enum Outcome {
    /// Recorded: accepted, or given up (with the reason).
    Recorded(Option<String>),
    /// Refused for later: send the same prepared tick again, not before `wait`.
    SendFailed {
        prepared: Prepared,
        reason: String,
        wait: Duration,
    },
    /// The store write failed.
    RecordFailed {
        reason: String,
        given_up: Option<String>,
    },
}

/// How one tick of a finished batch ended, for the entry in `slot`.
struct Settled {
    slot: usize,
    tick: DateTime<Utc>,
    outcome: Outcome,
}

/// An entry on the agenda: its slot, and the generation of the entry it was put there for.
#[derive(Clone, Copy)]
struct Due {
    slot: usize,
    generation: u64,
}

/// The agenda: wall-clock instant → the entries due then. Sources on the same schedule share
/// a key.
type Agenda = BTreeMap<DateTime<Utc>, Vec<Due>>;

/// A destination and how many sources use it.
struct SinkSlot {
    sink: Arc<dyn EventSink>,
    users: usize,
}

/// One destination's share of a round: ticks to send, and ticks to record (accepted earlier
/// but whose record failed, or given up).
struct Work {
    send: Vec<(Tick, Prepared)>,
    record: Vec<(Tick, Option<String>)>,
}

/// A tick of the entry in `slot`, whose store key is `key`. Recorded with the reason it was
/// given up, if it was.
struct Tick {
    slot: usize,
    key: Arc<str>,
    at: DateTime<Utc>,
}

/// The scheduler's state, owned by its task.
struct Scheduler<C> {
    store: TickStore,
    clock: C,
    entries: Vec<Option<Entry>>,
    /// Free entry slots.
    free: Vec<usize>,
    /// Entry slots by store key.
    by_key: HashMap<Arc<str>, usize>,
    generation: u64,
    sinks: Vec<Option<SinkSlot>>,
    /// Free sink slots.
    free_sinks: Vec<usize>,
    /// Sink slots by the address of the sink object.
    sink_ids: HashMap<usize, usize>,
    agenda: Agenda,
}

/// A sink's identity: the address of the object (two `Arc`s to one broker are one sink).
fn sink_address(sink: &Arc<dyn EventSink>) -> usize {
    Arc::as_ptr(sink) as *const () as usize
}

impl<C: Clock> Scheduler<C> {
    fn new(store: TickStore, clock: C) -> Self {
        Self {
            store,
            clock,
            entries: Vec::new(),
            free: Vec::new(),
            by_key: HashMap::new(),
            generation: 0,
            sinks: Vec::new(),
            free_sinks: Vec::new(),
            sink_ids: HashMap::new(),
            agenda: Agenda::new(),
        }
    }

    async fn run(mut self, mut control: mpsc::Receiver<Control>) {
        let margin = chrono::TimeDelta::from_std(PRECISE_MARGIN).unwrap_or_default();
        let mut batches: FuturesUnordered<BoxFuture<'static, Vec<Settled>>> =
            FuturesUnordered::new();
        let stopped = loop {
            let first = self.agenda.first_key_value().map(|(at, _)| *at);
            tokio::select! {
                biased;
                Some(finished) = batches.next(), if !batches.is_empty() => {
                    self.settle(finished);
                }
                () = sleep_until(&self.clock, first.map(|at| at - margin)), if first.is_some() => {
                    // Woken a little early: gather the work, then send at the instant itself.
                    let at = first.unwrap_or_default().max(self.clock.now());
                    let work = self.collect(at);
                    self.clock.wait_exactly(at).await;
                    for (sink, work) in work {
                        if let Some(slot) = &self.sinks[sink] {
                            batches.push(Box::pin(send_batch(
                                slot.sink.clone(),
                                self.store.clone(),
                                work,
                            )));
                        }
                    }
                }
                // Last: a burst of changes (ten thousand sources added at start-up) never
                // holds up a tick that is due.
                message = control.recv() => match message {
                    Some(Control::Add { ping, sink, start, done }) => {
                        let _ = done.send(self.add(*ping, sink, start));
                    }
                    Some(Control::Remove { namespace, name, done }) => {
                        self.remove(&namespace, &name, done);
                    }
                    Some(Control::Stop { done }) => break Some(done),
                    None => break None,
                },
            }
        };
        // Batches under way hold ticks a sink may already have accepted: let them be recorded.
        while let Some(finished) = batches.next().await {
            self.settle(finished);
        }
        if let Some(done) = stopped {
            let _ = done.send(());
        }
    }

    fn add(
        &mut self,
        ping: ValidPing,
        sink: Arc<dyn EventSink>,
        start: Start,
    ) -> Result<(), SchedulerError> {
        let key = super::store::key(&ping.namespace, &ping.name);
        if self.by_key.contains_key(&key) {
            return Err(SchedulerError::Duplicate(format!(
                "{}/{}",
                ping.namespace, ping.name
            )));
        }
        let now = self.clock.now();
        let last_fired = self.store.last_fired(&ping.namespace, &ping.name)?;
        let cursor = match (last_fired, start, ping.missed) {
            (None, ..) => now,
            (Some(last), Start::Continue, _) => last,
            (Some(last), Start::FromNow | Start::Restart, MissedTicks::Skip) => last.max(now),
            (Some(last), Start::FromNow, MissedTicks::CatchUp { .. }) => last.max(now),
            (Some(last), Start::Restart, MissedTicks::CatchUp { window }) => {
                let window = chrono::TimeDelta::from_std(window).unwrap_or(chrono::TimeDelta::MAX);
                let oldest = now
                    .checked_sub_signed(window)
                    .unwrap_or(DateTime::<Utc>::MIN_UTC);
                ping.schedule.resume(last, oldest)
            }
        };
        if let (Some(last), Start::Restart) = (last_fired, start) {
            report_skipped(&ping, last, cursor);
        }
        let source = ping.source();
        tracing::debug!(%source, schedule = ping.schedule.expression(), zone = %ping.schedule.zone(),
            ?last_fired, policy = ?ping.missed, ?start, "pingsource scheduled");
        let sink = self.intern_sink(sink);
        self.generation += 1;
        let slot = self.free.pop().unwrap_or_else(|| {
            self.entries.push(None);
            self.entries.len() - 1
        });
        let mut entry = Entry {
            ping,
            sink,
            source,
            key: key.clone(),
            generation: self.generation,
            cursor,
            next: Next::Idle,
            backoff: Backoff::new(INITIAL_BACKOFF, MAX_BACKOFF),
            busy: false,
            removing: Vec::new(),
        };
        self.schedule_next(&mut entry, slot);
        self.entries[slot] = Some(entry);
        self.by_key.insert(key, slot);
        Ok(())
    }

    /// The slot of `sink`, shared with the sources already using the same object.
    fn intern_sink(&mut self, sink: Arc<dyn EventSink>) -> usize {
        let address = sink_address(&sink);
        if let Some(&id) = self.sink_ids.get(&address)
            && let Some(slot) = &mut self.sinks[id]
        {
            slot.users += 1;
            return id;
        }
        let id = self.free_sinks.pop().unwrap_or_else(|| {
            self.sinks.push(None);
            self.sinks.len() - 1
        });
        self.sinks[id] = Some(SinkSlot { sink, users: 1 });
        self.sink_ids.insert(address, id);
        id
    }

    fn remove(&mut self, namespace: &str, name: &str, done: oneshot::Sender<()>) {
        let key = super::store::key(namespace, name);
        let Some(&slot) = self.by_key.get(&key) else {
            let _ = done.send(());
            return;
        };
        match &mut self.entries[slot] {
            // Its batch settles it.
            Some(entry) if entry.busy => entry.removing.push(done),
            _ => {
                self.drop_entry(slot);
                let _ = done.send(());
            }
        }
    }

    /// Frees an entry's slot (its agenda slots go stale) and its share of its sink; answers
    /// the removals waiting for it.
    fn drop_entry(&mut self, slot: usize) {
        let Some(entry) = self.entries[slot].take() else {
            return;
        };
        self.by_key.remove(&entry.key);
        self.free.push(slot);
        if let Some(sink) = &mut self.sinks[entry.sink] {
            sink.users -= 1;
            if sink.users == 0 {
                self.sink_ids.remove(&sink_address(&sink.sink));
                self.sinks[entry.sink] = None;
                self.free_sinks.push(entry.sink);
            }
        }
        tracing::debug!(source = %entry.source, "pingsource removed");
        for done in entry.removing {
            let _ = done.send(());
        }
    }

    /// Prepares the entry's next tick and puts it on the agenda (or leaves the entry idle when
    /// the schedule has no further tick).
    fn schedule_next(&mut self, entry: &mut Entry, slot: usize) {
        entry.backoff.reset();
        match entry.ping.schedule.next_after(entry.cursor) {
            Some(tick) => {
                let event = tick_event(&entry.ping, &entry.source, tick);
                let prepared = match &self.sinks[entry.sink] {
                    Some(s) => s.sink.prepare(event),
                    None => Err(Refused::never("no destination")),
                };
                entry.next = Next::Send(tick, prepared);
                self.agenda.entry(tick).or_default().push(Due {
                    slot,
                    generation: entry.generation,
                });
            }
            None => {
                entry.next = Next::Idle;
                tracing::warn!(source = %entry.source, "schedule has no further ticks; idle until removed");
            }
        }
    }

    /// Takes every entry due at or before `now` off the agenda and turns it into work per
    /// destination (in destination order, so runs are reproducible).
    fn collect(&mut self, now: DateTime<Utc>) -> BTreeMap<usize, Work> {
        let mut work: BTreeMap<usize, Work> = BTreeMap::new();
        while let Some(due) = self.agenda.first_entry() {
            if *due.key() > now {
                break;
            }
            let due = due.remove();
            let n = due.len();
            for Due { slot, generation } in due {
                let Some(entry) = &mut self.entries[slot] else {
                    continue;
                };
                if entry.generation != generation {
                    continue;
                }
                if matches!(entry.next, Next::Idle) {
                    continue;
                }
                let w = work.entry(entry.sink).or_insert_with(|| Work {
                    send: Vec::with_capacity(n),
                    record: Vec::new(),
                });
                let tick = |at| Tick {
                    slot,
                    key: entry.key.clone(),
                    at,
                };
                match std::mem::replace(&mut entry.next, Next::Idle) {
                    Next::Send(at, Ok(prepared)) => w.send.push((tick(at), prepared)),
                    // Not even preparable (an invalid event): given up, as if refused for good.
                    Next::Send(at, Err(refused)) => w.record.push((tick(at), Some(refused.reason))),
                    Next::Record(at, given_up) => w.record.push((tick(at), given_up)),
                    Next::Idle => {}
                }
                entry.busy = true;
            }
        }
        work
    }

    /// Applies a finished batch: recorded sources move on to their next tick; the others try
    /// the same tick again after their backoff; removals waiting for the batch are answered.
    /// Failures are logged once per batch and reason.
    fn settle(&mut self, finished: Vec<Settled>) {
        let now = self.clock.now();
        // (what failed, why) → (sources, one of them, its tick)
        let mut failures: BTreeMap<(&str, String), (usize, String, DateTime<Utc>)> =
            BTreeMap::new();
        for Settled {
            slot,
            tick,
            outcome,
        } in finished
        {
            let Some(mut entry) = self.entries[slot].take() else {
                continue;
            };
            entry.busy = false;
            let (what, why, at_least) = match outcome {
                Outcome::Recorded(None) => {
                    tracing::debug!(source = %entry.source, %tick, "tick fired");
                    let late = (now - tick)
                        .to_std()
                        .is_ok_and(|behind| behind > LATE_AFTER);
                    entry.ping.metrics.count_fired(late);
                    entry.cursor = tick;
                    self.advance(entry, slot);
                    continue;
                }
                Outcome::Recorded(Some(reason)) => {
                    entry.ping.metrics.count_dropped();
                    failures
                        .entry(("tick refused for good; dropped", reason))
                        .or_insert_with(|| (0, entry.source.clone(), tick))
                        .0 += 1;
                    entry.cursor = tick;
                    self.advance(entry, slot);
                    continue;
                }
                Outcome::SendFailed {
                    prepared,
                    reason,
                    wait,
                } => {
                    entry.ping.metrics.count_retry();
                    entry.next = Next::Send(tick, Ok(prepared));
                    ("send failed; retrying with backoff", reason, wait)
                }
                Outcome::RecordFailed { reason, given_up } => {
                    entry.next = Next::Record(tick, given_up);
                    (
                        "record failed; retrying with backoff",
                        reason,
                        Duration::ZERO,
                    )
                }
            };
            failures
                .entry((what, why))
                .or_insert_with(|| (0, entry.source.clone(), tick))
                .0 += 1;
            if !entry.removing.is_empty() {
                self.entries[slot] = Some(entry);
                self.drop_entry(slot);
                continue;
            }
            // Not sooner than the sink asked.
            let wait = entry.backoff.next_wait().max(at_least);
            let at = now + chrono::TimeDelta::from_std(wait).unwrap_or(chrono::TimeDelta::MAX);
            self.agenda.entry(at).or_default().push(Due {
                slot,
                generation: entry.generation,
            });
            self.entries[slot] = Some(entry);
        }
        for ((what, why), (count, source, tick)) in failures {
            tracing::warn!(%source, %tick, error = %why, sources = count, "pingsource {what}");
        }
    }

    /// Moves a source whose tick is recorded on to its next tick — or lets it go, if it is
    /// being removed.
    fn advance(&mut self, mut entry: Entry, slot: usize) {
        if entry.removing.is_empty() {
            self.schedule_next(&mut entry, slot);
            self.entries[slot] = Some(entry);
        } else {
            self.entries[slot] = Some(entry);
            self.drop_entry(slot);
        }
    }
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

/// Sends one destination's ticks, then records every accepted or given-up tick (and those
/// whose record is being retried) with one store write.
async fn send_batch(sink: Arc<dyn EventSink>, store: TickStore, work: Work) -> Vec<Settled> {
    let Work { send, mut record } = work;
    let answers = if send.is_empty() {
        Vec::new()
    } else {
        let batch: Vec<&Prepared> = send.iter().map(|(_, p)| p).collect();
        sink.send(&batch).await
    };
    let mut answers = answers.into_iter();
    let mut finished = Vec::with_capacity(send.len() + record.len());
    for (tick, prepared) in send {
        let (reason, wait) = match answers.next() {
            Some(Ok(())) => {
                record.push((tick, None));
                continue;
            }
            Some(Err(Refused {
                reason,
                retry: Retry::Never,
            })) => {
                record.push((tick, Some(reason)));
                continue;
            }
            Some(Err(Refused {
                reason,
                retry: Retry::After(wait),
            })) => (reason, wait),
            None => (
                "the sink gave no answer for this tick".to_owned(),
                Duration::ZERO,
            ),
        };
        finished.push(Settled {
            slot: tick.slot,
            tick: tick.at,
            outcome: Outcome::SendFailed {
                prepared,
                reason,
                wait,
            },
        });
    }
    let keys = record
        .iter()
        .map(|(tick, _)| (tick.key.clone(), tick.at))
        .collect();
    let recorded = store.record_keyed(keys).await;
    for (tick, given_up) in record {
        let outcome = match &recorded {
            Ok(()) => Outcome::Recorded(given_up),
            Err(e) => Outcome::RecordFailed {
                reason: e.to_string(),
                given_up,
            },
        };
        finished.push(Settled {
            slot: tick.slot,
            tick: tick.at,
            outcome,
        });
    }
    finished
}

/// Runs one PingSource on a scheduler of its own, on `clock`, until `shutdown` turns `true`
/// (or its sender is dropped): what the scheduler does, for tests of one source.
#[cfg(feature = "test-util")]
pub async fn run(
    ping: ValidPing,
    sink: Arc<dyn EventSink>,
    store: TickStore,
    clock: impl Clock + 'static,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<(), SchedulerError> {
    let scheduler = PingScheduler::start(store, clock);
    let (namespace, name) = (ping.namespace.clone(), ping.name.clone());
    scheduler.add(ping, sink, Start::Restart).await?;
    let _ = shutdown.wait_for(|stop| *stop).await;
    scheduler.remove(&namespace, &name).await;
    scheduler.stop().await;
    Ok(())
}
