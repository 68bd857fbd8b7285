//! The triggers' positions: computed every 100 ms, kept for retention and `/metrics`, and
//! written to the cursor store when they matter — all in one write and one `fdatasync`.
//!
//! A position is written when it changed and the trigger finished a delivery since the last
//! write (so a restart never redelivers more than what finished since), or when it moved more
//! than [`POSITION_LAG_WRITE`] (an idle trigger, whose stale position costs only re-filtering),
//! and at shutdown whenever it changed. Triggers join and leave while the task runs
//! ([`PositionsCommand`]); a trigger leaves before its cursor is rewritten or removed, so the
//! task never writes it back.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use super::{TriggerState, Triggers, disk_usage};
use crate::cursor::CursorStore;
use crate::fanout::FanoutPosition;

/// How often the triggers' positions are computed (and, when they matter, written).
const POSITION_INTERVAL: Duration = Duration::from_millis(100);
/// A trigger that delivered nothing since its position was last written still gets it written
/// once it has moved this far (so a restart does not re-filter a long stretch of the log). All
/// positions that moved are written at shutdown.
pub(super) const POSITION_LAG_WRITE: u64 = 1 << 16;

/// Triggers joining or leaving the position task.
pub(super) enum PositionsCommand {
    /// Start keeping these triggers' positions (each with the position on disk).
    Add(Vec<(Arc<TriggerState>, u64)>),
    /// Stop keeping these triggers' positions; answered once they are out.
    Remove(Vec<Arc<TriggerState>>, oneshot::Sender<()>),
}

pub(super) struct Slot {
    trigger: Arc<TriggerState>,
    persisted: u64,
    finished_at_persist: u64,
}

/// A trigger's position being written, and its finished deliveries then.
struct CursorWrite {
    slot: usize,
    position: u64,
    finished: u64,
}

/// The position task.
pub(super) struct Positions {
    /// The log's directory and its size on disk, refreshed on every tick (for the budget).
    pub log_dir: PathBuf,
    pub disk_used: Arc<AtomicU64>,
    pub broker: Arc<str>,
    pub fanout: FanoutPosition,
    pub cursors: Arc<CursorStore>,
    /// Every trigger of the broker: stopped at shutdown before the last write.
    pub triggers: Triggers,
    pub control: mpsc::Receiver<PositionsCommand>,
    pub slots: Vec<Slot>,
}

impl Positions {
    /// The slots for triggers starting with the task, each with its position on disk.
    pub fn slots(initial: Vec<(Arc<TriggerState>, u64)>) -> Vec<Slot> {
        initial
            .into_iter()
            .map(|(trigger, persisted)| Slot {
                trigger,
                persisted,
                finished_at_persist: 0,
            })
            .collect()
    }

    fn add(&mut self, triggers: Vec<(Arc<TriggerState>, u64)>) {
        self.slots.extend(Self::slots(triggers));
    }

    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(POSITION_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                Some(command) = self.control.recv() => match command {
                    PositionsCommand::Add(triggers) => self.add(triggers),
                    PositionsCommand::Remove(gone, done) => {
                        self.slots.retain(|s| !gone.iter().any(|g| Arc::ptr_eq(g, &s.trigger)));
                        let _ = done.send(());
                    }
                },
                _ = tick.tick() => self.flush(false).await,
            }
        }
        // Dispatchers finish their in-flight deliveries first; then the final positions, all
        // that moved, so that a restart finds every trigger where it stopped.
        let triggers: Vec<Arc<TriggerState>> = self.triggers.read().clone();
        for t in &triggers {
            t.stop();
        }
        for t in triggers {
            t.stopped().await;
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
        for (i, s) in self.slots.iter().enumerate() {
            let t = &s.trigger;
            let position = t.lane.position(&self.fanout);
            t.position.store(position, Ordering::Release);
            let finished =
                t.stats.delivered.load(Ordering::Relaxed) + t.stats.dropped.load(Ordering::Relaxed);
            let moved = position != s.persisted;
            let worked = finished != s.finished_at_persist;
            if moved && (all || worked || position.abs_diff(s.persisted) >= POSITION_LAG_WRITE) {
                writes.push(CursorWrite {
                    slot: i,
                    position,
                    finished,
                });
                names.push(t.config.clone());
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
                    self.slots[w.slot].persisted = w.position;
                    self.slots[w.slot].finished_at_persist = w.finished;
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
