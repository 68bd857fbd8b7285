//! A running broker: its log, its triggers' cursors and dispatchers, and log retention.
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

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::cursor::CursorStore;
use crate::delivery::{BrokerDirectory, HttpClient};
use crate::dispatch::{DispatchStats, Dispatcher, LaneState, Stacks, TriggerConfig};
use crate::fanout::{Fanout, FanoutPosition, LaneSender};
use crate::index::Index;
use crate::log::{AppendError, Durability, EventLog, LogConfig, LogError};

/// How often sealed segments are considered for deletion.
const RETENTION_INTERVAL: Duration = Duration::from_secs(60);
/// How often the triggers' positions are computed (and, when they matter, written).
const POSITION_INTERVAL: Duration = Duration::from_millis(100);
/// A trigger that delivered nothing since its position was last written still gets it written
/// once it has moved this far (so a restart does not re-filter a long stretch of the log). All
/// positions that moved are written at shutdown.
const POSITION_LAG_WRITE: u64 = 1 << 16;
/// At start, the fan-out begins at the earliest trigger at most this far behind the end of the
/// log, and hands events to all of them: after a crash, triggers whose cursors were a little
/// behind share one reader instead of each reading the same stretch. A trigger further behind
/// reads the log on its own until it catches up, so it holds up no other. Above
/// [`POSITION_LAG_WRITE`], so that idle triggers are always within it.
const FANOUT_REWIND: u64 = 1 << 17;
/// Bounds of a lane's capacity (twice the trigger's in-flight limit, within these).
const LANE_MIN_CAPACITY: usize = 64;
const LANE_MAX_CAPACITY: usize = 4096;

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

/// Why a broker could not start.
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
}

struct TriggerState {
    /// Shared with the trigger's dispatcher and the position task.
    config: Arc<TriggerConfig>,
    /// Shared with the fan-out and the dispatcher.
    lane: Arc<LaneState>,
    /// The trigger's position as last computed (for retention).
    position: Arc<AtomicU64>,
    /// The position on disk.
    persisted: u64,
    stats: Arc<DispatchStats>,
}

/// One trigger's numbers, as `/metrics` reads them.
#[derive(Debug)]
pub struct TriggerMetrics<'a> {
    /// The trigger's name.
    pub name: &'a str,
    /// Its delivery counters.
    pub stats: &'a DispatchStats,
    /// The lowest offset it has not finished.
    pub position: u64,
    /// Events matched and not yet finished.
    pub pending: u64,
}

/// A broker with its log open and its triggers' positions loaded.
pub struct Broker {
    config: BrokerConfig,
    /// Bytes of log segments on disk, refreshed with the triggers' positions.
    disk_used: Arc<AtomicU64>,
    id: String,
    log: EventLog,
    cursors: Arc<CursorStore>,
    triggers: Vec<TriggerState>,
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
        for (trigger, position) in triggers.into_iter().zip(positions) {
            states.push(TriggerState {
                config: Arc::new(trigger),
                lane: Arc::new(LaneState::new(position)),
                position: Arc::new(AtomicU64::new(position)),
                persisted: position,
                stats: Arc::default(),
            });
        }
        let disk_used = Arc::new(AtomicU64::new(disk_usage(log.dir())));
        Ok(Self {
            config,
            disk_used,
            id,
            log,
            cursors,
            triggers: states,
        })
    }

    /// Whether appending `bytes` more would take the log past its disk budget (the log
    /// never deletes what a trigger has not finished, so the budget is enforced at ingress).
    pub fn over_disk_budget(&self, bytes: u64) -> bool {
        self.config
            .disk_budget
            .is_some_and(|budget| self.disk_used.load(Ordering::Relaxed) + bytes > budget)
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
        &self.config.namespace
    }

    /// The broker's name within its namespace.
    pub fn short_name(&self) -> &str {
        &self.config.name
    }

    /// The largest request body ingress accepts for this broker.
    pub fn max_event_bytes(&self) -> usize {
        self.config.max_event_bytes
    }

    /// The triggers' cursors: [`CursorStore::resume`] places a trigger added while the broker
    /// runs, [`CursorStore::remove`] forgets a deleted one.
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
    pub fn trigger_states(&self) -> Vec<TriggerMetrics<'_>> {
        self.triggers
            .iter()
            .map(|t| TriggerMetrics {
                name: t.config.name.as_str(),
                stats: &t.stats,
                position: t.position.load(Ordering::Acquire),
                pending: t.lane.pending(),
            })
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
        self.triggers
            .iter()
            .find(|t| t.config.name == trigger)
            .map(|t| t.lane.detachments())
    }

    /// Events a trigger has matched and not yet finished (delivered, dead-lettered or dropped),
    /// by trigger name: what waits for its subscriber. Read without locks.
    pub fn pending_events(&self, trigger: &str) -> Option<u64> {
        self.triggers
            .iter()
            .find(|t| t.config.name == trigger)
            .map(|t| t.lane.pending())
    }

    /// A trigger's delivery counters, by trigger name (for tests: feature `test-util`; `/metrics`
    /// reads them through [`Broker::trigger_states`]).
    #[cfg(any(test, feature = "test-util"))]
    pub fn stats(&self, trigger: &str) -> Option<Arc<DispatchStats>> {
        self.triggers
            .iter()
            .find(|t| t.config.name == trigger)
            .map(|t| t.stats.clone())
    }

    /// Starts the fan-out, one dispatcher per trigger, the task that keeps the triggers'
    /// positions (and writes them to disk), and the retention task. Each stops when `shutdown`
    /// turns true; dispatchers first let in-flight deliveries finish within `grace`, and the
    /// positions are written once they have.
    pub fn start(
        &self,
        client: &HttpClient,
        brokers: &BrokerDirectory,
        shutdown: &watch::Receiver<bool>,
        grace: Duration,
    ) -> Vec<JoinHandle<()>> {
        // The fan-out starts at the earliest trigger near the end of the log; every trigger from
        // there on is attached from the start. Any other's dispatcher catches up from its own
        // position and then asks to be attached.
        let end = *self.log.committed().borrow();
        let unread = AtomicU64::new(0);
        let start = self
            .triggers
            .iter()
            .map(|t| t.lane.position(&unread))
            .filter(|&p| end.saturating_sub(p) <= FANOUT_REWIND)
            .min()
            .unwrap_or(end);
        let fanout_start = start;
        let fanout_position: FanoutPosition = Arc::new(AtomicU64::new(start));
        let (attach_tx, attach_rx) = mpsc::channel(self.triggers.len().max(1));
        let broker: Arc<str> = Arc::from(self.id.as_str());
        let mut lanes = Vec::with_capacity(self.triggers.len());
        let mut dispatchers = Vec::with_capacity(self.triggers.len());
        for (lane_id, t) in self.triggers.iter().enumerate() {
            let position = t.lane.position(&unread);
            if position >= start {
                // The fan-out reads past its position: no reader of its own.
                t.lane.start_attached(position);
            }
            let capacity = (2 * t.config.max_in_flight).clamp(LANE_MIN_CAPACITY, LANE_MAX_CAPACITY);
            let (tx, rx) = mpsc::channel(capacity);
            lanes.push(LaneSender {
                tx,
                state: t.lane.clone(),
            });
            t.lane.count_from(fanout_start);
            let dispatcher = Dispatcher {
                broker: broker.clone(),
                trigger: t.config.clone(),
                stacks: Arc::new(Stacks::new(&t.config, client, brokers)),
                lane_id,
                lane: rx,
                state: t.lane.clone(),
                attach: attach_tx.clone(),
                log: self.log.clone(),
                stats: t.stats.clone(),
                grace,
            };
            dispatchers.push(tokio::spawn(dispatcher.run(shutdown.clone())));
        }
        drop(attach_tx);
        let fanout = Fanout {
            broker: self.id.clone(),
            log: self.log.clone(),
            index: Index::new(
                self.triggers
                    .iter()
                    .map(|t| t.config.filter.clone())
                    .collect(),
            ),
            lanes,
            position: fanout_position.clone(),
            attach: attach_rx,
        };
        let positions = Positions {
            log_dir: self.log.dir().to_owned(),
            disk_used: self.disk_used.clone(),
            broker: self.id.clone(),
            fanout: fanout_position,
            cursors: self.cursors.clone(),
            triggers: self
                .triggers
                .iter()
                .map(|t| PositionSlot {
                    trigger: t.config.clone(),
                    lane: t.lane.clone(),
                    position: t.position.clone(),
                    stats: t.stats.clone(),
                    persisted: t.persisted,
                    finished_at_persist: 0,
                })
                .collect(),
        };
        let mut tasks = Vec::with_capacity(4);
        let backlog_from = self
            .triggers
            .iter()
            .map(|t| t.lane.start())
            .min()
            .unwrap_or(fanout_start);
        if backlog_from < fanout_start {
            let backlog = BacklogCount {
                broker: self.id.clone(),
                log: self.log.clone(),
                index: Index::new(
                    self.triggers
                        .iter()
                        .map(|t| t.config.filter.clone())
                        .collect(),
                ),
                lanes: self.triggers.iter().map(|t| t.lane.clone()).collect(),
                from: backlog_from,
                to: fanout_start,
            };
            tasks.push(tokio::spawn(backlog.run(shutdown.clone())));
        }
        tasks.extend([
            tokio::spawn(fanout.run(shutdown.clone())),
            tokio::spawn(positions.run(shutdown.clone(), dispatchers)),
            tokio::spawn(self.retention().run(shutdown.clone())),
        ]);
        tasks
    }

    fn retention(&self) -> Retention {
        Retention {
            broker: self.id.clone(),
            log: self.log.clone(),
            positions: self.triggers.iter().map(|t| t.position.clone()).collect(),
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
        self.log.close().await
    }
}

/// Counts, once at start-up, the events already in the log that each trigger matched and had
/// not finished: `[trigger's position, where the fan-out starts)`. The fan-out counts from
/// there on, so every waiting event is counted exactly once (see the lane module).
struct BacklogCount {
    broker: String,
    log: EventLog,
    index: Index,
    lanes: Vec<Arc<LaneState>>,
    from: u64,
    to: u64,
}

impl BacklogCount {
    async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut reader = self.log.reader(self.from);
        let mut matched = Vec::new();
        loop {
            if reader.position() >= self.to || *shutdown.borrow_and_update() {
                return;
            }
            let read = tokio::task::spawn_blocking(move || {
                let batch = reader.read_batch(
                    crate::fanout::READ_BATCH_RECORDS,
                    crate::fanout::READ_BATCH_BYTES,
                );
                (reader, batch)
            })
            .await;
            let Ok((r, Ok(batch))) = read else {
                tracing::debug!(broker = %self.broker, "backlog count stopped");
                return;
            };
            reader = r;
            if batch.is_empty() {
                return;
            }
            for (offset, record) in batch {
                if offset >= self.to {
                    return;
                }
                let Ok(event) = ember_event::decode(&record) else {
                    continue;
                };
                self.index.matching(&event, &mut matched);
                for &id in &matched {
                    if let Some(lane) = self.lanes.get(id) {
                        lane.matched_in_backlog(offset);
                    }
                }
            }
        }
    }
}

/// What the retention task needs: the log and every trigger's position.
#[derive(Clone)]
struct Retention {
    broker: String,
    log: EventLog,
    positions: Vec<Arc<AtomicU64>>,
}

impl Retention {
    /// Deletes the sealed segments every trigger has moved past and that are older than the
    /// retention age; returns how many.
    async fn enforce(&self) -> Result<usize, LogError> {
        let end = *self.log.committed().borrow();
        let floor = self
            .positions
            .iter()
            .map(|p| p.load(Ordering::Acquire))
            .min()
            .unwrap_or(end);
        let log = self.log.clone();
        let deleted = tokio::task::spawn_blocking(move || log.delete_before(floor))
            .await
            .map_err(|e| LogError::Io {
                context: "retention task".to_owned(),
                source: std::io::Error::other(e.to_string()),
            })??;
        if deleted > 0 {
            tracing::info!(broker = %self.broker, segments = deleted, below = floor, "deleted old segments");
        }
        Ok(deleted)
    }

    /// Enforces retention every [`RETENTION_INTERVAL`] until shutdown.
    async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(RETENTION_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.enforce().await {
                tracing::error!(broker = %self.broker, error = %e, "retention failed");
            }
        }
    }
}

struct PositionSlot {
    trigger: Arc<TriggerConfig>,
    lane: Arc<LaneState>,
    position: Arc<AtomicU64>,
    stats: Arc<DispatchStats>,
    persisted: u64,
    finished_at_persist: u64,
}

/// A trigger's position being written, and its finished deliveries then.
struct CursorWrite {
    slot: usize,
    position: u64,
    finished: u64,
}

/// Computes every trigger's position and writes those that matter to the cursor store, all in
/// one write.
///
/// A position is written when it changed and the trigger finished a delivery since the last
/// write (so a restart never redelivers more than what finished since), or when it moved more
/// than [`POSITION_LAG_WRITE`] (an idle trigger, whose stale position costs only re-filtering),
/// and at shutdown whenever it changed.
struct Positions {
    /// The log's directory and its size on disk, refreshed on every tick (for the budget).
    log_dir: PathBuf,
    disk_used: Arc<AtomicU64>,
    broker: String,
    fanout: FanoutPosition,
    cursors: Arc<CursorStore>,
    triggers: Vec<PositionSlot>,
}

impl Positions {
    async fn run(mut self, mut shutdown: watch::Receiver<bool>, dispatchers: Vec<JoinHandle<()>>) {
        let mut tick = tokio::time::interval(POSITION_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = tick.tick() => self.flush(false).await,
            }
        }
        // Dispatchers finish their in-flight deliveries first; then the final positions, all
        // that moved, so that a restart finds every trigger where it stopped.
        for d in dispatchers {
            let _ = d.await;
        }
        self.flush(true).await;
    }

    /// Computes the positions and writes those that matter (`all`: every one that moved).
    async fn flush(&mut self, all: bool) {
        let dir = self.log_dir.clone();
        if let Ok(used) = tokio::task::spawn_blocking(move || disk_usage(&dir)).await {
            self.disk_used.store(used, Ordering::Relaxed);
        }
        let mut writes = Vec::new();
        let mut names = Vec::new();
        for (i, t) in self.triggers.iter().enumerate() {
            let position = t.lane.position(&self.fanout);
            t.position.store(position, Ordering::Release);
            let finished =
                t.stats.delivered.load(Ordering::Relaxed) + t.stats.dropped.load(Ordering::Relaxed);
            let moved = position != t.persisted;
            let worked = finished != t.finished_at_persist;
            if moved && (all || worked || position.abs_diff(t.persisted) >= POSITION_LAG_WRITE) {
                writes.push(CursorWrite {
                    slot: i,
                    position,
                    finished,
                });
                names.push(t.trigger.clone());
            }
        }
        if writes.is_empty() {
            return;
        }
        // One write and one fdatasync for all of them.
        let cursors = self.cursors.clone();
        let positions: Vec<u64> = writes.iter().map(|w| w.position).collect();
        let stored = tokio::task::spawn_blocking(move || {
            let batch: Vec<(&str, u64)> = names
                .iter()
                .map(|t| t.name.as_str())
                .zip(positions)
                .collect();
            cursors.store(&batch)
        })
        .await;
        match stored {
            Ok(Ok(())) => {
                for w in writes {
                    self.triggers[w.slot].persisted = w.position;
                    self.triggers[w.slot].finished_at_persist = w.finished;
                }
            }
            // The cursor store reports failures (once per cause); the positions stay in memory
            // and are written again at a later tick.
            Ok(Err(e)) => {
                tracing::debug!(broker = %self.broker, error = %e, "writing cursors failed")
            }
            Err(e) => {
                tracing::error!(broker = %self.broker, error = %e, "cursor writer task failed")
            }
        }
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
