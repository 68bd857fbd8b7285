//! The lane/catch-up protocol between a broker's fan-out and one trigger's dispatcher.
//!
//! A lane is a bounded channel from the fan-out to the dispatcher. The fan-out never waits for
//! a lane: when it is full (the subscriber is slow or down) the lane is *detached* and the
//! fan-out moves on. A detached dispatcher reads the log on its own ([`CatchUpReader`]) from the
//! first event it missed, filtering with its own compiled filter; when it has caught up it asks
//! to be attached again ([`AttachRequest`]), and the fan-out takes it back from a point both
//! agree on: the fan-out answers `max(from, fan-out position)`, and the dispatcher's own reading
//! stops exactly there. Every event therefore reaches the trigger exactly once per pass,
//! whichever way it travels.
//!
//! Positions ([`LaneState::position`]): a trigger that is attached, live and idle, with nothing
//! handed to it unfinished, is at the fan-out's position (the events in between did not match
//! it). Otherwise its position is what its dispatcher publishes: the lowest offset it has not
//! finished.
//!
//! Events waiting ([`LaneState::pending`]): matched and not yet finished, however they travel.
//! The fan-out counts every event it matches for the lane from where it started reading on
//! (attached or not); the events already in the log before that — a backlog found at start-up —
//! are counted once by the broker's backlog count ([`crate::broker`]), and the dispatcher
//! uncounts each event it finishes. Atomics only: the autoscaler and `/metrics` read it without
//! a lock.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::SeqCst};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::fanout::{READ_BATCH_BYTES, READ_BATCH_RECORDS};
use crate::log::{EventLog, LogReader};

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
    /// Matched events not yet finished (may dip below zero for a moment when the dispatcher
    /// finishes an event before the fan-out has counted it; read as zero then).
    pending: AtomicI64,
    /// The fan-out counts matches from this offset on; the backlog count those below.
    counted_from: AtomicU64,
    /// The trigger's position when it started: the backlog begins here.
    start: AtomicU64,
}

impl LaneState {
    /// A lane whose dispatcher starts catching up from `position`.
    pub fn new(position: u64) -> Self {
        let state = Self {
            start: AtomicU64::new(position),
            ..Self::default()
        };
        state.low_water.store(position, SeqCst);
        state.idle.store(true, SeqCst);
        state
    }

    /// The fan-out starts reading at `offset`: it counts the lane's matches from there on, the
    /// backlog count those before. Set before either starts.
    pub fn count_from(&self, offset: u64) {
        self.counted_from.store(offset, SeqCst);
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

    /// Whether the dispatcher reads its lane (rather than the log on its own).
    pub fn is_live(&self) -> bool {
        self.live.load(SeqCst)
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

    /// The trigger's position when it started.
    pub fn start(&self) -> u64 {
        self.start.load(SeqCst)
    }

    /// Moves a new trigger's start forward to `offset`, where the fan-out reads, so that it
    /// needs no reader of its own to get there: a trigger added while the broker runs takes the
    /// events accepted from then on. Call before the fan-out and the dispatcher run.
    pub fn move_start(&self, offset: u64) {
        self.start.store(offset, SeqCst);
        self.low_water.store(offset, SeqCst);
    }

    /// Events matched and not yet finished (delivered, dead-lettered or dropped).
    pub fn pending(&self) -> u64 {
        self.pending.load(SeqCst).max(0) as u64
    }

    /// Called by the fan-out for each event it matches for this lane, handed over or not.
    pub(crate) fn matched_by_fanout(&self, offset: u64) {
        // The fan-out may start before a trigger's position (it starts at the earliest trigger
        // near the end of the log): what lies before the position is finished already.
        if offset >= self.start() && offset >= self.counted_from.load(SeqCst) {
            self.pending.fetch_add(1, SeqCst);
        }
    }

    /// Called by the broker's backlog count for each matching event at `offset`, below where
    /// the fan-out started, that the trigger had not finished at start-up.
    pub(crate) fn matched_in_backlog(&self, offset: u64) {
        if offset >= self.start() && offset < self.counted_from.load(SeqCst) {
            self.pending.fetch_add(1, SeqCst);
        }
    }

    /// Called by the dispatcher when it finishes an event.
    pub(crate) fn finished(&self) {
        self.pending.fetch_sub(1, SeqCst);
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

    /// The fan-out's side of attaching: hand events over from `resume` on.
    pub(crate) fn attach(&self, resume: u64) {
        self.resume_from.store(resume, SeqCst);
        self.attached.store(true, SeqCst);
    }

    /// The fan-out's side of handing `offset` over: whether the lane takes events now.
    pub(crate) fn takes(&self, offset: u64) -> bool {
        self.attached.load(SeqCst) && offset >= self.resume_from.load(SeqCst)
    }

    /// The fan-out is about to hand an event over.
    pub(crate) fn handing_over(&self) {
        self.outstanding.fetch_add(1, SeqCst);
    }

    /// The fan-out could not hand `offset` over (the lane is full): detach.
    pub(crate) fn detach(&self, offset: u64) {
        self.outstanding.fetch_sub(1, SeqCst);
        self.detached_at.store(offset, SeqCst);
        self.attached.store(false, SeqCst);
        self.detachments.fetch_add(1, SeqCst);
    }
}

/// A dispatcher's request to be handed events again from `from` on.
pub struct AttachRequest {
    /// The lane.
    pub lane: usize,
    /// Its state: the fan-out attaches only the lane this is (an id may have been reused).
    pub state: Arc<LaneState>,
    /// The offset up to which the dispatcher has read on its own.
    pub from: u64,
    /// The offset from which the fan-out hands events over (`max(from, fan-out position)`):
    /// the dispatcher reads on its own exactly up to it.
    pub reply: oneshot::Sender<u64>,
}

/// What the catch-up reader sends the dispatcher.
pub(crate) enum CatchUp {
    /// Records read from the log.
    Batch(Vec<(u64, Bytes)>),
    /// Everything below this offset has been sent; the fan-out hands over the rest.
    Attached(u64),
}

/// A dispatcher's own reader of the log, running while its lane is detached; it stops when
/// dropped.
pub(crate) struct CatchUpReader {
    rx: mpsc::Receiver<CatchUp>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CatchUpReader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl CatchUpReader {
    /// Starts reading `log` for `lane` from `from`.
    pub(crate) fn start(
        log: EventLog,
        lane: (usize, Arc<LaneState>),
        from: u64,
        attach: mpsc::Sender<AttachRequest>,
    ) -> Self {
        let (tx, rx) = mpsc::channel(2);
        let task = tokio::spawn(catch_up(log, lane, from, attach, tx));
        Self { rx, task }
    }

    /// The next message, or `None` when the log closed.
    pub(crate) async fn recv(&mut self) -> Option<CatchUp> {
        self.rx.recv().await
    }
}

/// Waits for the next catch-up message, or forever when the dispatcher reads its lane.
pub(crate) async fn recv(reader: &mut Option<CatchUpReader>) -> Option<CatchUp> {
    match reader {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

/// How many catch-up reads run at once, process-wide. Thousands of triggers may catch up
/// together (at start-up after a pause, or added in one reload); each read is a blocking-pool
/// thread decoding up to [`READ_BATCH_BYTES`], and unbounded they would crowd out ingress.
const CONCURRENT_CATCH_UP_READS: usize = 4;
static CATCH_UP_READS: tokio::sync::Semaphore =
    tokio::sync::Semaphore::const_new(CONCURRENT_CATCH_UP_READS);

/// Reads one batch of committed records now (empty when caught up), off the async runtime.
async fn read_now(mut reader: LogReader) -> Option<(LogReader, Vec<(u64, Bytes)>)> {
    let _turn = CATCH_UP_READS.acquire().await.ok()?;
    tokio::task::spawn_blocking(move || {
        let batch = reader.read_batch(READ_BATCH_RECORDS, READ_BATCH_BYTES);
        batch.ok().map(|b| (reader, b))
    })
    .await
    .ok()
    .flatten()
}

/// Sends what is committed from `from` on; once caught up, asks the fan-out to attach the lane
/// and sends exactly the records below the offset it answers.
async fn catch_up(
    log: EventLog,
    (lane, state): (usize, Arc<LaneState>),
    from: u64,
    attach: mpsc::Sender<AttachRequest>,
    out: mpsc::Sender<CatchUp>,
) {
    let mut reader = log.reader(from);
    let mut committed = log.committed();
    let mut resume: Option<u64> = None;
    loop {
        if let Some(resume) = resume
            && reader.position() >= resume
        {
            let _ = out.send(CatchUp::Attached(resume)).await;
            return;
        }
        let Some((r, mut batch)) = read_now(reader).await else {
            return;
        };
        reader = r;
        if let Some(resume) = resume {
            // The fan-out hands over everything from `resume` on.
            batch.retain(|(offset, _)| *offset < resume);
        }
        if !batch.is_empty() {
            if out.send(CatchUp::Batch(batch)).await.is_err() {
                return;
            }
            continue;
        }
        match resume {
            None => {
                let (reply, answer) = oneshot::channel();
                let request = AttachRequest {
                    lane,
                    state: state.clone(),
                    from: reader.position(),
                    reply,
                };
                if attach.send(request).await.is_err() {
                    return;
                }
                match answer.await {
                    Ok(at) => resume = Some(at),
                    Err(_) => return,
                }
            }
            // Not all of `..resume` is committed-and-read yet: wait for the log.
            Some(_) => {
                if committed.changed().await.is_err() {
                    return;
                }
            }
        }
    }
}
