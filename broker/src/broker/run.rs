//! A broker at work: starting its fan-out, dispatchers, position task and retention, and
//! changing its triggers while they run (see the parent module for the guarantees).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::backlog::BacklogCount;
use super::positions::{Positions, PositionsCommand};
use super::{
    Broker, BrokerError, FANOUT_REWIND, LANE_MAX_CAPACITY, LANE_MIN_CAPACITY, Running,
    TriggerChanges, TriggerState,
};
use crate::delivery::{BrokerDirectory, HttpClient};
use crate::dispatch::{Dispatcher, Stacks, TriggerConfig};
use crate::fanout::{Fanout, FanoutCommand, FanoutPosition, LaneSender, NewLane};
use crate::index::Index;

impl Broker {
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
        let triggers: Vec<Arc<TriggerState>> = self.triggers.read().clone();
        // The fan-out starts at the earliest trigger near the end of the log; every trigger from
        // there on is attached from the start. Any other's dispatcher catches up from its own
        // position and then asks to be attached.
        let end = *self.log.committed().borrow();
        let unread = AtomicU64::new(0);
        let start = triggers
            .iter()
            .map(|t| t.lane.position(&unread))
            .filter(|&p| end.saturating_sub(p) <= FANOUT_REWIND)
            .min()
            .unwrap_or(end);
        let fanout_position: FanoutPosition = Arc::new(AtomicU64::new(start));
        let (attach_tx, attach_rx) = mpsc::channel(triggers.len().clamp(16, 1024));
        let (fanout_tx, fanout_rx) = mpsc::channel(8);
        let (positions_tx, positions_rx) = mpsc::channel(8);
        let running = Running {
            client: client.clone(),
            brokers: brokers.clone(),
            grace,
            fanout: fanout_tx,
            positions: positions_tx,
            attach: attach_tx,
            shutdown: shutdown.clone(),
        };
        let mut lanes = Vec::with_capacity(triggers.len());
        let mut filters = Vec::with_capacity(triggers.len());
        for t in &triggers {
            let position = t.lane.position(&unread);
            if position >= start {
                // The fan-out reads past its position: no reader of its own.
                t.lane.start_attached(position);
            }
            t.lane.count_from(start);
            let (tx, rx) = lane_channel(&t.config);
            lanes.push(Some(LaneSender {
                tx,
                state: t.lane.clone(),
            }));
            filters.push(Some(t.config.filter.clone()));
            self.spawn_dispatcher(&running, t, rx);
        }
        let fanout = Fanout {
            broker: self.id.to_string(),
            log: self.log.clone(),
            lanes,
            filters,
            position: fanout_position.clone(),
            attach: attach_rx,
            control: fanout_rx,
        };
        let persisted = triggers
            .iter()
            .map(|t| (t.clone(), t.position.load(Ordering::Relaxed)))
            .collect();
        let positions = Positions {
            log_dir: self.log.dir().to_owned(),
            disk_used: self.disk_used.clone(),
            broker: self.id.clone(),
            fanout: fanout_position,
            cursors: self.cursors.clone(),
            triggers: self.triggers.clone(),
            control: positions_rx,
            slots: Positions::slots(persisted),
        };
        let mut tasks = Vec::with_capacity(4);
        if let Some(backlog) = self.backlog(&triggers, start) {
            tasks.push(tokio::spawn(backlog.run(shutdown.clone())));
        }
        tasks.extend([
            tokio::spawn(fanout.run(shutdown.clone())),
            tokio::spawn(positions.run(shutdown.clone())),
            tokio::spawn(self.retention().run(shutdown.clone())),
        ]);
        *self.running.lock().unwrap_or_else(|e| e.into_inner()) = Some(running);
        tasks
    }

    /// Adds, replaces and removes triggers while the broker runs (see the module doc for the
    /// guarantees). Replaced and removed triggers stop first — their in-flight deliveries
    /// finish within the grace period — then the new ones start.
    pub async fn change_triggers(&self, changes: TriggerChanges) -> Result<(), BrokerError> {
        let _one_at_a_time = self.changing.lock().await;
        let (fanout, positions) = {
            let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
            let Some(running) = running.as_ref() else {
                return Err(BrokerError::NotRunning(self.id.to_string()));
            };
            (running.fanout.clone(), running.positions.clone())
        };
        let not_running = || BrokerError::NotRunning(self.id.to_string());

        // 1. Stop the triggers that go or change: no more events from the fan-out, then their
        //    dispatchers finish what is in flight.
        let leaving: Vec<Arc<TriggerState>> = changes
            .remove
            .iter()
            .map(String::as_str)
            .chain(changes.replace.iter().map(|t| t.name.as_str()))
            .filter_map(|name| self.triggers.find(name))
            .collect();
        if !leaving.is_empty() {
            let (done, answer) = oneshot::channel();
            let remove = leaving.iter().map(|t| t.lane_id).collect();
            fanout
                .send(FanoutCommand::Update {
                    add: Vec::new(),
                    remove,
                    done,
                })
                .await
                .map_err(|_| not_running())?;
            answer.await.map_err(|_| not_running())?;
            for t in &leaving {
                t.stop();
            }
            for t in &leaving {
                t.stopped().await;
            }
            let (done, answer) = oneshot::channel();
            positions
                .send(PositionsCommand::Remove(leaving.clone(), done))
                .await
                .map_err(|_| not_running())?;
            answer.await.map_err(|_| not_running())?;
        }
        // Where each changed trigger stopped: it resumes there. The lane is detached, so its
        // position is its own low-water mark.
        let unread = AtomicU64::new(0);
        let resume_at: Vec<(String, u64)> = leaving
            .iter()
            .filter(|t| changes.replace.iter().any(|r| r.name == t.config.name))
            .map(|t| (t.config.name.clone(), t.lane.position(&unread)))
            .collect();
        let cursors_error = |source| BrokerError::Cursors {
            broker: self.id.to_string(),
            source,
        };
        let removed: Vec<&str> = changes.remove.iter().map(String::as_str).collect();
        let stored: Vec<(&str, u64)> = resume_at.iter().map(|(n, p)| (n.as_str(), *p)).collect();
        let cursors = self.cursors.clone();
        let end = self.end_offset();
        let new_names: Vec<String> = changes.add.iter().map(|t| t.name.clone()).collect();
        // 2. Cursors: the removed ones deleted, the changed ones at their final positions, the
        //    new ones at the end of the log — before anything starts.
        let (new_positions, fresh) = {
            let removed: Vec<String> = removed.iter().map(|s| s.to_string()).collect();
            let stored: Vec<(String, u64)> =
                stored.iter().map(|(n, p)| (n.to_string(), *p)).collect();
            tokio::task::spawn_blocking(move || {
                let removed: Vec<&str> = removed.iter().map(String::as_str).collect();
                cursors.remove(&removed)?;
                let stored: Vec<(&str, u64)> =
                    stored.iter().map(|(n, p)| (n.as_str(), *p)).collect();
                cursors.store(&stored)?;
                let names: Vec<&str> = new_names.iter().map(String::as_str).collect();
                let fresh: Vec<bool> = names.iter().map(|n| cursors.load(n).is_none()).collect();
                Ok::<_, std::io::Error>((cursors.resume(&names, end)?, fresh))
            })
            .await
            .map_err(|e| cursors_error(std::io::Error::other(e.to_string())))?
            .map_err(cursors_error)?
        };
        {
            let mut table = self.triggers.write();
            table.retain(|t| !leaving.iter().any(|l| Arc::ptr_eq(l, t)));
        }

        // 3. Start the new and changed triggers.
        let mut starting = Vec::new();
        for ((config, position), fresh) in changes.add.into_iter().zip(new_positions).zip(fresh) {
            starting.push((config, position, fresh));
        }
        for config in changes.replace {
            let position = resume_at
                .iter()
                .find(|(n, _)| *n == config.name)
                .map_or(end, |(_, p)| *p);
            starting.push((config, position, false));
        }
        if starting.is_empty() {
            return Ok(());
        }
        let mut fresh = Vec::with_capacity(starting.len());
        let states: Vec<Arc<TriggerState>> = starting
            .into_iter()
            .map(|(config, position, is_fresh)| {
                fresh.push(is_fresh);
                let lane_id = self.next_lane.fetch_add(1, Ordering::Relaxed);
                Arc::new(TriggerState::new(Arc::new(config), position, lane_id))
            })
            .collect();
        let mut receivers = Vec::with_capacity(states.len());
        let mut add = Vec::with_capacity(states.len());
        for (t, fresh) in states.iter().zip(fresh) {
            let (tx, rx) = lane_channel(&t.config);
            receivers.push(rx);
            add.push(NewLane {
                id: t.lane_id,
                lane: LaneSender {
                    tx,
                    state: t.lane.clone(),
                },
                filter: t.config.filter.clone(),
                position: t.lane.start(),
                fresh,
            });
        }
        self.triggers.write().extend(states.iter().cloned());
        let positions_before: Vec<u64> = states.iter().map(|t| t.lane.start()).collect();
        let (done, answer) = oneshot::channel();
        fanout
            .send(FanoutCommand::Update {
                add,
                remove: Vec::new(),
                done,
            })
            .await
            .map_err(|_| not_running())?;
        let from = answer.await.map_err(|_| not_running())?;
        // New triggers the fan-out moved forward to where it reads: their cursors follow before
        // anything is delivered, so a restart resumes them there too.
        let moved: Vec<(String, u64)> = states
            .iter()
            .zip(&positions_before)
            .filter(|(t, before)| t.lane.start() != **before)
            .map(|(t, _)| (t.config.name.clone(), t.lane.start()))
            .collect();
        if !moved.is_empty() {
            let cursors = self.cursors.clone();
            tokio::task::spawn_blocking(move || {
                let moved: Vec<(&str, u64)> = moved.iter().map(|(n, p)| (n.as_str(), *p)).collect();
                cursors.store(&moved)
            })
            .await
            .map_err(|e| cursors_error(std::io::Error::other(e.to_string())))?
            .map_err(cursors_error)?;
        }
        let positions = {
            let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
            let Some(running) = running.as_ref() else {
                return Err(not_running());
            };
            for (t, rx) in states.iter().zip(receivers) {
                self.spawn_dispatcher(running, t, rx);
            }
            if let Some(backlog) = self.backlog(&states, from) {
                tokio::spawn(backlog.run(running.shutdown.clone()));
            }
            running.positions.clone()
        };
        let persisted = states.iter().map(|t| (t.clone(), t.lane.start())).collect();
        positions
            .send(PositionsCommand::Add(persisted))
            .await
            .map_err(|_| not_running())?;
        Ok(())
    }

    /// Starts `trigger`'s dispatcher on its lane.
    fn spawn_dispatcher(
        &self,
        running: &Running,
        trigger: &TriggerState,
        lane: mpsc::Receiver<crate::fanout::Handoff>,
    ) {
        let dispatcher = Dispatcher {
            broker: self.id.clone(),
            trigger: trigger.config.clone(),
            stacks: Arc::new(Stacks::new(
                &trigger.config,
                &running.client,
                &running.brokers,
            )),
            lane_id: trigger.lane_id,
            lane,
            state: trigger.lane.clone(),
            attach: running.attach.clone(),
            log: self.log.clone(),
            stats: trigger.stats.clone(),
            grace: running.grace,
        };
        let handle = tokio::spawn(dispatcher.run(trigger.stop.subscribe()));
        *trigger.dispatcher.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
    }

    /// The count of `triggers`' waiting events below `to`, where the fan-out took them over, if
    /// any of them starts before it.
    fn backlog(&self, triggers: &[Arc<TriggerState>], to: u64) -> Option<BacklogCount> {
        let from = triggers.iter().map(|t| t.lane.start()).min()?;
        if from >= to {
            return None;
        }
        let size = triggers.iter().map(|t| t.lane_id + 1).max().unwrap_or(0);
        let mut lanes = vec![None; size];
        let mut filters = Vec::with_capacity(triggers.len());
        for t in triggers {
            lanes[t.lane_id] = Some(t.lane.clone());
            filters.push((t.lane_id, t.config.filter.clone()));
        }
        Some(BacklogCount {
            broker: self.id.clone(),
            log: self.log.clone(),
            index: Index::from_pairs(filters),
            lanes,
            from,
            to,
        })
    }
}

/// A trigger's lane: twice its in-flight limit, within bounds (tokio allocates its slots 32
/// at a time, as events queue).
fn lane_channel(
    config: &TriggerConfig,
) -> (
    mpsc::Sender<crate::fanout::Handoff>,
    mpsc::Receiver<crate::fanout::Handoff>,
) {
    let capacity = (2 * config.max_in_flight).clamp(LANE_MIN_CAPACITY, LANE_MAX_CAPACITY);
    mpsc::channel(capacity)
}
