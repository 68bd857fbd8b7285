//! A running broker: its log, its triggers' cursors and dispatchers, and log retention — and
//! the changes a reload makes to it while it runs.
//!
//! Layout under the data directory: `brokers/{namespace}/{name}/log/` holds the segments,
//! `brokers/{namespace}/{name}/cursors.journal` every trigger's cursor (see [`crate::cursor`]).
//!
//! Start-up costs little per trigger: every cursor is read from one journal and the new
//! triggers' cursors are written with one `fdatasync` in all. The fan-out starts at the earliest
//! trigger near the end of the log (all of them after a clean shutdown, which writes every
//! position that moved; after a crash, those whose cursors lagged a little) and hands events to
//! all of those at once, so they need no reader of their own; only a trigger far behind reads
//! the log on its own until it catches up.
//!
//! While it runs ([`Broker::change_triggers`], [`Broker::update_settings`]):
//! - a new trigger starts at the end of the log (its cursor written before it starts);
//! - a changed trigger keeps its position: the fan-out stops handing it events, its dispatcher
//!   lets in-flight deliveries finish (within the grace period) and stops, and the new one
//!   starts exactly where that left off — nothing skipped, nothing delivered twice by the
//!   switch (only deliveries cut off by the grace period are repeated, as after a restart);
//! - a removed trigger stops the same way, then its cursor is deleted;
//! - settings (durability, segment size, retention, body limit, disk budget) change in place,
//!   without reopening the log.

mod backlog;
mod positions;
mod retention;
mod run;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::cursor::CursorStore;
use crate::delivery::{BrokerDirectory, Destination, HttpClient};
use crate::dispatch::{AttachRequest, DispatchStats, LaneState, TriggerConfig};
use crate::fanout::FanoutCommand;
use crate::log::{AppendError, Durability, EventLog, LogConfig, LogError, LogSettings};
use positions::PositionsCommand;
use retention::Retention;

/// At start, the fan-out begins at the earliest trigger at most this far behind the end of the
/// log, and hands events to all of them: after a crash, triggers whose cursors were a little
/// behind share one reader instead of each reading the same stretch. A trigger further behind
/// reads the log on its own until it catches up, so it holds up no other. Above
/// [`positions::POSITION_LAG_WRITE`], so that idle triggers are always within it.
const FANOUT_REWIND: u64 = 1 << 17;
/// Bounds of a lane's capacity (twice the trigger's in-flight limit, within these).
const LANE_MIN_CAPACITY: usize = 64;
const LANE_MAX_CAPACITY: usize = 4096;
/// Disk budget "none", as stored.
const NO_BUDGET: u64 = u64::MAX;

/// A broker's settings, resolved from its resource.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Kubernetes-style namespace.
    pub namespace: String,
    /// The broker's name.
    pub name: String,
    /// Ember's data directory (the broker keeps its files below it).
    pub data_dir: PathBuf,
    /// `fsync` (default) or `none`.
    pub durability: Durability,
    /// Size at which a segment is sealed and a new one started.
    pub segment_bytes: u64,
    /// How long a sealed segment is kept after every trigger has moved past it.
    pub retention: Duration,
    /// The largest request body ingress accepts.
    pub max_event_bytes: usize,
    /// Append batches that may wait for the writer before ingress answers 503.
    pub queue_capacity: usize,
    /// The most bytes the log may hold on disk; beyond it ingress answers 507.
    pub disk_budget: Option<u64>,
}

/// Why a broker could not start, or a change could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The log did not open (recovery failed).
    #[error("broker {broker}: log: {source}")]
    Log {
        /// `namespace/name`.
        broker: String,
        /// The cause.
        source: LogError,
    },
    /// The cursors could not be read, or the new triggers' cursors not written.
    #[error("broker {broker}: cursors: {source}")]
    Cursors {
        /// `namespace/name`.
        broker: String,
        /// The cause (naming the file).
        source: std::io::Error,
    },
    /// Triggers were changed before the broker started, or after it stopped.
    #[error("broker {0}: not running")]
    NotRunning(String),
}

/// One trigger of a broker, as the broker, its position task and `/metrics` share it.
pub(crate) struct TriggerState {
    /// Shared with the trigger's dispatcher.
    config: Arc<TriggerConfig>,
    /// Shared with the fan-out and the dispatcher.
    lane: Arc<LaneState>,
    /// The trigger's lane id in the fan-out.
    lane_id: usize,
    /// The trigger's position as last computed (for retention and metrics).
    position: Arc<AtomicU64>,
    stats: Arc<DispatchStats>,
    /// Tells the dispatcher to stop.
    stop: watch::Sender<bool>,
    /// The dispatcher, until it is stopped and waited for.
    dispatcher: Mutex<Option<JoinHandle<()>>>,
}

impl TriggerState {
    fn new(config: Arc<TriggerConfig>, position: u64, lane_id: usize) -> Self {
        Self {
            config,
            lane: Arc::new(LaneState::new(position)),
            lane_id,
            position: Arc::new(AtomicU64::new(position)),
            stats: Arc::default(),
            stop: watch::channel(false).0,
            dispatcher: Mutex::new(None),
        }
    }

    /// Asks the dispatcher to stop (it lets in-flight deliveries finish within the grace).
    fn stop(&self) {
        let _ = self.stop.send(true);
    }

    /// Waits for the dispatcher to have stopped.
    async fn stopped(&self) {
        let handle = self
            .dispatcher
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(handle) = handle {
            let _ = handle.await;
        }
    }
}

/// A broker's triggers, shared by the broker, its position task and retention.
#[derive(Clone, Default)]
pub(crate) struct Triggers(Arc<RwLock<Vec<Arc<TriggerState>>>>);

impl Triggers {
    fn read(&self) -> RwLockReadGuard<'_, Vec<Arc<TriggerState>>> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Vec<Arc<TriggerState>>> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }

    fn find(&self, name: &str) -> Option<Arc<TriggerState>> {
        self.read().iter().find(|t| t.config.name == name).cloned()
    }
}

/// One trigger's numbers, as `/metrics` reads them.
#[derive(Debug, Clone)]
pub struct TriggerMetrics {
    /// The trigger's name.
    pub name: String,
    /// Its delivery counters.
    pub stats: Arc<DispatchStats>,
    /// The lowest offset it has not finished.
    pub position: u64,
    /// Events matched and not yet finished.
    pub pending: u64,
}

/// What a running broker needs to start more dispatchers.
struct Running {
    client: HttpClient,
    brokers: BrokerDirectory,
    grace: Duration,
    fanout: mpsc::Sender<FanoutCommand>,
    positions: mpsc::Sender<PositionsCommand>,
    attach: mpsc::Sender<AttachRequest>,
    shutdown: watch::Receiver<bool>,
}

/// Triggers to add, replace and remove in one change.
#[derive(Debug, Default)]
pub struct TriggerChanges {
    /// New triggers: they start at the end of the log.
    pub add: Vec<TriggerConfig>,
    /// Changed triggers (by name): they keep their position.
    pub replace: Vec<TriggerConfig>,
    /// Removed triggers (by name): their cursors are deleted.
    pub remove: Vec<String>,
}

/// A broker with its log open and its triggers' positions loaded.
pub struct Broker {
    namespace: String,
    short_name: String,
    id: Arc<str>,
    /// The largest request body ingress accepts (changes while running).
    max_event_bytes: AtomicUsize,
    /// The disk budget, or [`NO_BUDGET`] (changes while running).
    disk_budget: AtomicU64,
    /// Bytes of log segments on disk, refreshed with the triggers' positions.
    disk_used: Arc<AtomicU64>,
    log: EventLog,
    cursors: Arc<CursorStore>,
    triggers: Triggers,
    next_lane: AtomicUsize,
    running: Mutex<Option<Running>>,
    /// One change of triggers at a time.
    changing: tokio::sync::Mutex<()>,
}

impl Broker {
    /// Opens (recovering) the broker's log and loads each trigger's cursor. A trigger seen for
    /// the first time starts at the end of the log — it receives events accepted from now on —
    /// and its cursor is written before this returns (one write for all such triggers), so a
    /// crash cannot move it later.
    pub fn open(config: BrokerConfig, triggers: Vec<TriggerConfig>) -> Result<Self, BrokerError> {
        let id = format!("{}/{}", config.namespace, config.name);
        let dir = config
            .data_dir
            .join("brokers")
            .join(&config.namespace)
            .join(&config.name);
        let log = EventLog::open(LogConfig {
            dir: dir.join("log"),
            segment_bytes: config.segment_bytes,
            retention: config.retention,
            durability: config.durability,
            queue_capacity: config.queue_capacity,
        })
        .map_err(|source| BrokerError::Log {
            broker: id.clone(),
            source,
        })?;
        let cursors_error = |source| BrokerError::Cursors {
            broker: id.clone(),
            source,
        };
        let cursors = Arc::new(CursorStore::open(&dir).map_err(cursors_error)?);
        let end = *log.committed().borrow();
        let names: Vec<&str> = triggers.iter().map(|t| t.name.as_str()).collect();
        let positions = cursors.resume(&names, end).map_err(cursors_error)?;
        // Built by pushing rather than collected from `triggers`: a collect would reuse the
        // allocation of the much larger `TriggerConfig`s and hold it for the broker's life.
        let mut states = Vec::with_capacity(triggers.len());
        for (lane_id, (trigger, position)) in triggers.into_iter().zip(positions).enumerate() {
            states.push(Arc::new(TriggerState::new(
                Arc::new(trigger),
                position,
                lane_id,
            )));
        }
        let disk_used = Arc::new(AtomicU64::new(disk_usage(log.dir())));
        Ok(Self {
            id: Arc::from(id.as_str()),
            namespace: config.namespace,
            short_name: config.name,
            max_event_bytes: AtomicUsize::new(config.max_event_bytes),
            disk_budget: AtomicU64::new(config.disk_budget.unwrap_or(NO_BUDGET)),
            disk_used,
            log,
            cursors,
            next_lane: AtomicUsize::new(states.len()),
            triggers: Triggers(Arc::new(RwLock::new(states))),
            running: Mutex::new(None),
            changing: tokio::sync::Mutex::new(()),
        })
    }

    /// Whether appending `bytes` more would take the log past its disk budget (the log
    /// never deletes what a trigger has not finished, so the budget is enforced at ingress).
    pub fn over_disk_budget(&self, bytes: u64) -> bool {
        let budget = self.disk_budget.load(Ordering::Relaxed);
        budget != NO_BUDGET && self.disk_used.load(Ordering::Relaxed) + bytes > budget
    }

    /// Bytes of log segments on disk (as of the last refresh, at most 100 ms old).
    pub fn disk_used(&self) -> u64 {
        self.disk_used.load(Ordering::Relaxed)
    }

    /// `namespace/name`.
    pub fn name(&self) -> &str {
        &self.id
    }

    /// The broker's namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The broker's name within its namespace.
    pub fn short_name(&self) -> &str {
        &self.short_name
    }

    /// The largest request body ingress accepts for this broker.
    pub fn max_event_bytes(&self) -> usize {
        self.max_event_bytes.load(Ordering::Relaxed)
    }

    /// The triggers' cursors.
    pub fn cursors(&self) -> &CursorStore {
        &self.cursors
    }

    /// The broker's log.
    pub fn log(&self) -> &EventLog {
        &self.log
    }

    /// Appends encoded events; resolves once they are durable.
    pub async fn append(&self, records: Vec<Bytes>) -> Result<u64, AppendError> {
        self.log.append(records).await
    }

    /// Every trigger's state for metrics: name, counters, position (the lowest offset it has
    /// not finished; `end - position` is its backlog) and events pending.
    pub fn trigger_states(&self) -> Vec<TriggerMetrics> {
        self.triggers
            .read()
            .iter()
            .map(|t| TriggerMetrics {
                name: t.config.name.clone(),
                stats: t.stats.clone(),
                position: t.position.load(Ordering::Acquire),
                pending: t.lane.pending(),
            })
            .collect()
    }

    /// Each trigger's subscriber and waiting-event counter ([`LaneState::pending`]): what the
    /// autoscaler reads as the events waiting for a Service.
    pub fn subscriber_lanes(&self) -> Vec<(Destination, Arc<LaneState>)> {
        self.triggers
            .read()
            .iter()
            .map(|t| (t.config.subscriber.clone(), t.lane.clone()))
            .collect()
    }

    /// The offset one past the last durable event.
    pub fn end_offset(&self) -> u64 {
        *self.log.committed().borrow()
    }

    /// How many times a trigger fell behind and read the log on its own, by trigger name (for
    /// tests: feature `test-util`).
    #[cfg(any(test, feature = "test-util"))]
    pub fn detachments(&self, trigger: &str) -> Option<u64> {
        self.triggers.find(trigger).map(|t| t.lane.detachments())
    }

    /// Whether the broker runs a trigger of this name.
    pub fn has_trigger(&self, trigger: &str) -> bool {
        self.triggers.find(trigger).is_some()
    }

    /// Events a trigger has matched and not yet finished (delivered, dead-lettered or dropped),
    /// by trigger name: what waits for its subscriber. Read without locks on the event path.
    pub fn pending_events(&self, trigger: &str) -> Option<u64> {
        self.triggers.find(trigger).map(|t| t.lane.pending())
    }

    /// A trigger's delivery counters, by trigger name (for tests: feature `test-util`; `/metrics`
    /// reads them through [`Broker::trigger_states`]).
    #[cfg(any(test, feature = "test-util"))]
    pub fn stats(&self, trigger: &str) -> Option<Arc<DispatchStats>> {
        self.triggers.find(trigger).map(|t| t.stats.clone())
    }

    /// Changes the settings that take effect without reopening anything: durability (from the
    /// next group commit), segment size (from the next roll), retention, the body limit and the
    /// disk budget.
    pub fn update_settings(&self, config: &BrokerConfig) {
        self.log.update(LogSettings {
            durability: config.durability,
            segment_bytes: config.segment_bytes,
            retention: config.retention,
        });
        self.max_event_bytes
            .store(config.max_event_bytes, Ordering::Relaxed);
        self.disk_budget
            .store(config.disk_budget.unwrap_or(NO_BUDGET), Ordering::Relaxed);
    }

    fn retention(&self) -> Retention {
        Retention {
            broker: self.id.clone(),
            log: self.log.clone(),
            triggers: self.triggers.clone(),
        }
    }

    /// Deletes now the sealed segments that every trigger has moved past and that are older
    /// than the retention age (the broker does this every minute; this is for tests: feature
    /// `test-util`); returns how many.
    #[cfg(any(test, feature = "test-util"))]
    pub async fn enforce_retention(&self) -> Result<usize, LogError> {
        self.retention().enforce().await
    }

    /// Finishes queued appends, syncs and closes the log.
    pub async fn close(&self) -> Result<(), LogError> {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        self.log.close().await
    }
}

/// Bytes of segment files in a log directory.
fn disk_usage(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

#[cfg(test)]
mod tests;
