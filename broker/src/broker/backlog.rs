//! Counting the events that wait for a trigger in the log's backlog: once, when the trigger
//! starts (with the broker, or when a reload adds or changes it), for the stretch of the log
//! from the trigger's position to where the fan-out took it over. The fan-out counts from
//! there on, so every waiting event is counted exactly once (see the lane module).

use std::sync::Arc;

use tokio::sync::watch;

use crate::dispatch::LaneState;
use crate::index::Index;
use crate::log::EventLog;

/// One backlog count: the lanes it counts for, by lane id, as the index keys them.
pub(super) struct BacklogCount {
    pub broker: Arc<str>,
    pub log: EventLog,
    pub index: Index,
    pub lanes: Vec<Option<Arc<LaneState>>>,
    pub from: u64,
    pub to: u64,
}

impl BacklogCount {
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
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
                    if let Some(Some(lane)) = self.lanes.get(id) {
                        lane.matched_in_backlog(offset);
                    }
                }
            }
        }
    }
}
