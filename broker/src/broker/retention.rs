//! Log retention: every minute, sealed segments that every trigger has moved past and that
//! are older than the retention age are deleted.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;

use super::Triggers;
use crate::log::{EventLog, LogError};

/// How often sealed segments are considered for deletion.
const RETENTION_INTERVAL: Duration = Duration::from_secs(60);

/// What the retention task needs: the log and the triggers (their positions).
#[derive(Clone)]
pub(super) struct Retention {
    pub broker: Arc<str>,
    pub log: EventLog,
    pub triggers: Triggers,
}

impl Retention {
    /// Deletes the sealed segments every trigger has moved past and that are older than the
    /// retention age; returns how many.
    pub async fn enforce(&self) -> Result<usize, LogError> {
        let end = *self.log.committed().borrow();
        let floor = self
            .triggers
            .read()
            .iter()
            .map(|t| t.position.load(Ordering::Acquire))
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
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
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
