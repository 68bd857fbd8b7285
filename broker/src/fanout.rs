//! Fan-out: one reader per broker decodes each event once, asks the trigger index which
//! triggers want it, and hands it to those triggers' lanes.
//!
//! A lane is a bounded channel from the fan-out to one trigger's dispatcher. The fan-out never
//! waits for a lane: when a lane is full (its subscriber is slow or down) the lane is
//! *detached* and the fan-out moves on, so one slow trigger holds up neither ingress nor any
//! other trigger. A detached dispatcher reads the log on its own from the first event it missed
//! (catch-up), filtering with its own compiled filter; when it has caught up it asks to be
//! attached again, and the fan-out takes it back from a point both agree on: the fan-out
//! answers with `max(from, fan-out position)`, and the dispatcher's own reading stops exactly
//! there. Every event therefore reaches every trigger that wants it exactly once per pass,
//! whichever way it travels.
//!
//! Positions: the fan-out publishes how far it has read ([`FanoutPosition`]). A trigger that is
//! attached, live and idle, with nothing handed to it unfinished, is at that position (the
//! events in between did not match it). Otherwise its position is what its dispatcher
//! publishes: the lowest offset it has not finished. See [`LaneState::position`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};

use crate::index::Index;
use crate::log::{EventLog, LogReader};
use ember_event::{self as event, CloudEvent};

/// An event handed to a trigger: its offset and the decoded event (shared by every trigger
/// that wants it).
pub type Handoff = (u64, Arc<CloudEvent>);

/// Records read from the log at once.
pub(crate) const READ_BATCH_RECORDS: usize = 256;
/// Bytes read from the log at once.
pub(crate) const READ_BATCH_BYTES: usize = 1 << 20;

/// How far the fan-out has read: every offset below it has been handed to the attached lanes
/// that want it.
pub type FanoutPosition = Arc<AtomicU64>;

/// What the fan-out and a dispatcher share about one lane.
#[derive(Debug, Default)]
pub struct LaneState {
    /// The fan-out hands events to this lane.
    attached: AtomicBool,
    /// The first offset the fan-out hands over after (re)attaching.
    resume_from: AtomicU64,
    /// The first offset the fan-out could not hand over when it detached the lane.
    detached_at: AtomicU64,
    /// Events handed over and not yet finished by the dispatcher.
    outstanding: AtomicU64,
    /// The dispatcher reads from its lane (not catching up on its own).
    live: AtomicBool,
    /// The dispatcher has nothing in flight.
    idle: AtomicBool,
    /// The dispatcher's lowest unfinished offset (or, when idle, the offset after everything it
    /// has seen).
    low_water: AtomicU64,
    /// How many times the fan-out detached the lane.
    detachments: AtomicU64,
}

impl LaneState {
    /// A lane whose dispatcher starts catching up from `position`.
    pub fn new(position: u64) -> Self {
        let state = Self::default();
        state.low_water.store(position, SeqCst);
        state.idle.store(true, SeqCst);
        state
    }

    /// Marks the lane of a trigger whose position `from` is at or after where the fan-out starts
    /// reading as attached and live: the fan-out hands it events from `from` on and its
    /// dispatcher reads the lane at once, with no reader of its own to catch up with. Call
    /// before the fan-out and the dispatcher run.
    pub fn start_attached(&self, from: u64) {
        self.resume_from.store(from, SeqCst);
        self.attached.store(true, SeqCst);
        self.live.store(true, SeqCst);
    }

    /// The trigger's position: the lowest offset it has not finished.
    pub fn position(&self, fanout: &AtomicU64) -> u64 {
        // Order matters: read the fan-out position first; `outstanding` is incremented before
        // an event is handed over and the position is published after, so if nothing is
        // outstanding now, everything below `fanout` that this lane wanted is finished.
        let f = fanout.load(SeqCst);
        let quiet = self.outstanding.load(SeqCst) == 0;
        let live = self.live.load(SeqCst);
        let idle = self.idle.load(SeqCst);
        let attached = self.attached.load(SeqCst);
        let low = self.low_water.load(SeqCst);
        if quiet && live && idle && attached {
            low.max(f)
        } else {
            low
        }
    }

    /// Called by the dispatcher when it starts or stops reading its lane.
    pub fn set_live(&self, live: bool) {
        self.live.store(live, SeqCst);
    }

    /// Called by the dispatcher: whether anything is in flight, and its low-water mark.
    pub fn publish(&self, idle: bool, low_water: u64) {
        if !idle {
            self.idle.store(false, SeqCst);
        }
        self.low_water.store(low_water, SeqCst);
        if idle {
            self.idle.store(true, SeqCst);
        }
    }

    /// Called by the dispatcher when an event handed over by the fan-out is finished.
    pub fn finished_handoff(&self) {
        self.outstanding.fetch_sub(1, SeqCst);
    }

    /// Whether the dispatcher reads its lane (rather than the log on its own).
    pub fn is_live(&self) -> bool {
        self.live.load(SeqCst)
    }

    /// Whether the fan-out still hands events to this lane.
    pub fn is_attached(&self) -> bool {
        self.attached.load(SeqCst)
    }

    /// The first offset the fan-out did not hand over when it detached the lane.
    pub fn detached_at(&self) -> u64 {
        self.detached_at.load(SeqCst)
    }

    /// How many times the fan-out detached the lane (its trigger fell behind).
    pub fn detachments(&self) -> u64 {
        self.detachments.load(SeqCst)
    }
}

/// A dispatcher's request to be handed events again from `from` on.
pub struct AttachRequest {
    /// The lane.
    pub lane: usize,
    /// The offset up to which the dispatcher has read on its own.
    pub from: u64,
    /// The offset from which the fan-out hands events over (`max(from, fan-out position)`):
    /// the dispatcher reads on its own exactly up to it.
    pub reply: oneshot::Sender<u64>,
}

/// The fan-out's side of a lane.
pub struct LaneSender {
    /// Events for the trigger.
    pub tx: mpsc::Sender<Handoff>,
    /// Shared state.
    pub state: Arc<LaneState>,
}

/// The broker's single tail reader.
pub struct Fanout {
    /// `namespace/name`, for logs.
    pub broker: String,
    /// The broker's log.
    pub log: EventLog,
    /// Which triggers want which event.
    pub index: Index,
    /// One per trigger, indexed like the index's trigger ids.
    pub lanes: Vec<LaneSender>,
    /// How far the fan-out has read.
    pub position: FanoutPosition,
    /// Attach requests from dispatchers that caught up.
    pub attach: mpsc::Receiver<AttachRequest>,
}

impl Fanout {
    /// Runs until shutdown or until the log closes.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let start = self.position.load(SeqCst);
        let reader = self.log.reader(start);
        self.position.store(reader.position(), SeqCst);
        let (batches_tx, mut batches) = mpsc::channel(2);
        let read_task = tokio::spawn(read_ahead(self.log.clone(), reader, batches_tx));
        let mut matched = Vec::new();
        loop {
            tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                Some(req) = self.attach.recv() => self.handle_attach(req),
                batch = batches.recv() => match batch {
                    Some(batch) => self.hand_out(batch, &mut matched),
                    None => break,
                },
            }
        }
        read_task.abort();
    }

    fn handle_attach(&mut self, req: AttachRequest) {
        let Some(lane) = self.lanes.get(req.lane) else {
            return;
        };
        let resume = req.from.max(self.position.load(SeqCst));
        lane.state.resume_from.store(resume, SeqCst);
        lane.state.attached.store(true, SeqCst);
        let _ = req.reply.send(resume);
    }

    fn hand_out(&mut self, batch: Vec<(u64, Bytes)>, matched: &mut Vec<usize>) {
        let mut end = self.position.load(SeqCst);
        for (offset, record) in batch {
            end = offset + 1;
            let event = match event::decode(&record) {
                Ok(e) => e,
                Err(err) => {
                    tracing::error!(broker = %self.broker, offset, error = %err, "undecodable record skipped");
                    continue;
                }
            };
            matched.clear();
            self.index.matching(&event, matched);
            if matched.is_empty() {
                continue;
            }
            let event = Arc::new(event);
            for &id in matched.iter() {
                let Some(lane) = self.lanes.get(id) else {
                    continue;
                };
                let state = &lane.state;
                if !state.attached.load(SeqCst) || offset < state.resume_from.load(SeqCst) {
                    continue;
                }
                state.outstanding.fetch_add(1, SeqCst);
                if lane.tx.try_send((offset, event.clone())).is_err() {
                    // Full (or the dispatcher is gone): detach; the dispatcher catches up on
                    // its own from this offset.
                    state.outstanding.fetch_sub(1, SeqCst);
                    state.detached_at.store(offset, SeqCst);
                    state.attached.store(false, SeqCst);
                    state.detachments.fetch_add(1, SeqCst);
                    tracing::debug!(broker = %self.broker, lane = id, offset, "lane full: detached");
                }
            }
        }
        self.position.store(end, SeqCst);
    }
}

/// Reads batches ahead into a small channel, so a reader is never cancelled mid-read.
///
/// The tail the fan-out reads was written moments ago and is in the page cache, so a batch is
/// read inline on the async worker (a few microseconds of copying) rather than handed to the
/// blocking pool: at tens of thousands of events per second, a thread hand-off per batch cost
/// more than the read itself.
pub(crate) async fn read_ahead(
    log: EventLog,
    mut reader: LogReader,
    tx: mpsc::Sender<Vec<(u64, Bytes)>>,
) {
    let mut committed = log.committed();
    loop {
        match reader.read_batch(READ_BATCH_RECORDS, READ_BATCH_BYTES) {
            Ok(batch) if batch.is_empty() => {
                // Caught up: wait for the next durable append (or the log closing).
                if committed.changed().await.is_err() {
                    return;
                }
            }
            Ok(batch) => {
                if tx.send(batch).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "log reader stopped");
                return;
            }
        }
    }
}
