//! Fan-out: one reader per broker decodes each event once, asks the trigger index which
//! triggers want it, and hands it to those triggers' lanes without ever waiting for one — so
//! one slow trigger holds up neither ingress nor any other trigger. A full lane is detached and
//! its dispatcher catches up on its own: the protocol is in [`crate::dispatch::LaneState`]'s
//! module. The fan-out publishes how far it has read ([`FanoutPosition`]), from which idle
//! triggers' positions follow.
//!
//! Lanes come and go while it runs ([`FanoutCommand`]): between two batches the fan-out adds
//! and removes lanes and rebuilds its trigger index, so a changed trigger set takes effect at
//! one offset for all of them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};

use crate::dispatch::{AttachRequest, LaneState};
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

/// The fan-out's side of a lane.
pub struct LaneSender {
    /// Events for the trigger.
    pub tx: mpsc::Sender<Handoff>,
    /// Shared state.
    pub state: Arc<LaneState>,
}

/// A lane to add: its id, its sender, its trigger's filter, and the trigger's position.
pub struct NewLane {
    /// The lane's id (the trigger's key in the index).
    pub id: usize,
    /// The fan-out's side of the lane.
    pub lane: LaneSender,
    /// Which events the trigger wants.
    pub filter: ember_triggers::TriggerFilter,
    /// The lowest offset the trigger has not finished.
    pub position: u64,
    /// A new trigger (no position of its own): it starts where the fan-out reads when the lane
    /// is added, if that is past `position`, rather than reading the stretch between on its
    /// own — a thousand triggers added at once would otherwise each read it.
    pub fresh: bool,
}

/// Changes to the fan-out's lanes, applied between two batches.
pub enum FanoutCommand {
    /// Adds and removes lanes; answers the offset from which the change holds (the fan-out's
    /// position when it applied it). An added lane whose trigger is at or past that offset is
    /// attached at once; any other catches up on its own first. A removed lane gets nothing
    /// more (events already in its channel stay there).
    Update {
        /// Lanes to add.
        add: Vec<NewLane>,
        /// Ids of lanes to remove.
        remove: Vec<usize>,
        /// The offset from which the change holds.
        done: oneshot::Sender<u64>,
    },
}

/// The broker's single tail reader.
pub struct Fanout {
    /// `namespace/name`, for logs.
    pub broker: String,
    /// The broker's log.
    pub log: EventLog,
    /// Lanes by id (a removed lane leaves a hole, filled by the next one added).
    pub lanes: Vec<Option<LaneSender>>,
    /// Each lane's filter, by id.
    pub filters: Vec<Option<ember_triggers::TriggerFilter>>,
    /// How far the fan-out has read.
    pub position: FanoutPosition,
    /// Attach requests from dispatchers that caught up.
    pub attach: mpsc::Receiver<AttachRequest>,
    /// Lanes added and removed while it runs.
    pub control: mpsc::Receiver<FanoutCommand>,
}

impl Fanout {
    /// Runs until shutdown or until the log closes.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut index = self.index();
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
                Some(command) = self.control.recv() => {
                    self.apply(command);
                    index = self.index();
                }
                Some(req) = self.attach.recv() => self.handle_attach(req),
                batch = batches.recv() => match batch {
                    Some(batch) => self.hand_out(&index, batch, &mut matched),
                    None => break,
                },
            }
        }
        read_task.abort();
    }

    /// The trigger index over the current lanes.
    fn index(&self) -> Index {
        Index::from_pairs(
            self.filters
                .iter()
                .enumerate()
                .filter_map(|(id, f)| f.clone().map(|f| (id, f))),
        )
    }

    fn apply(&mut self, command: FanoutCommand) {
        let FanoutCommand::Update { add, remove, done } = command;
        let at = self.position.load(SeqCst);
        for id in remove {
            if let Some(slot) = self.lanes.get_mut(id) {
                *slot = None;
                self.filters[id] = None;
            }
        }
        for new in add {
            let state = &new.lane.state;
            state.count_from(at);
            let mut position = new.position;
            if new.fresh && position < at {
                state.move_start(at);
                position = at;
            }
            if position >= at {
                // The fan-out reads past the trigger's position: no reader of its own.
                state.start_attached(position);
            }
            if self.lanes.len() <= new.id {
                self.lanes.resize_with(new.id + 1, || None);
                self.filters.resize_with(new.id + 1, || None);
            }
            self.lanes[new.id] = Some(new.lane);
            self.filters[new.id] = Some(new.filter);
        }
        let _ = done.send(at);
    }

    fn handle_attach(&mut self, req: AttachRequest) {
        // The lane may have been removed (and its id given to another) since the request left.
        let Some(Some(lane)) = self.lanes.get(req.lane) else {
            return;
        };
        if !Arc::ptr_eq(&lane.state, &req.state) {
            return;
        }
        let resume = req.from.max(self.position.load(SeqCst));
        lane.state.attach(resume);
        let _ = req.reply.send(resume);
    }

    fn hand_out(&mut self, index: &Index, batch: Vec<(u64, Bytes)>, matched: &mut Vec<usize>) {
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
            index.matching(&event, matched);
            if matched.is_empty() {
                continue;
            }
            let event = Arc::new(event);
            for &id in matched.iter() {
                let Some(Some(lane)) = self.lanes.get(id) else {
                    continue;
                };
                let state = &lane.state;
                state.matched_by_fanout(offset);
                if !state.takes(offset) {
                    continue;
                }
                state.handing_over();
                if lane.tx.try_send((offset, event.clone())).is_err() {
                    // Full (or the dispatcher is gone): detach; the dispatcher catches up on
                    // its own from this offset.
                    state.detach(offset);
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
