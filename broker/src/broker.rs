//! A running broker: its log, its triggers' cursors and dispatchers, and log retention.
//!
//! Layout under the data directory: `brokers/{namespace}/{name}/log/` holds the segments,
//! `brokers/{namespace}/{name}/cursors/` one file per trigger.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cursor::CursorStore;
use crate::dispatch::{DispatchStats, Dispatcher, HttpClient, TriggerConfig};
use crate::log::{AppendError, Durability, EventLog, LogConfig, LogError};

/// How often sealed segments are considered for deletion.
const RETENTION_INTERVAL: Duration = Duration::from_secs(60);

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
    /// A cursor could not be read or created.
    #[error("broker {broker}: trigger {trigger}: cursor: {source}")]
    Cursor {
        /// `namespace/name`.
        broker: String,
        /// The trigger.
        trigger: String,
        /// The cause.
        source: std::io::Error,
    },
}

struct TriggerState {
    config: TriggerConfig,
    position: Arc<AtomicU64>,
    stats: Arc<DispatchStats>,
}

/// A broker with its log open and its triggers' positions loaded.
pub struct Broker {
    config: BrokerConfig,
    id: String,
    log: EventLog,
    cursors: Arc<CursorStore>,
    triggers: Vec<TriggerState>,
}

impl Broker {
    /// Opens (recovering) the broker's log and loads each trigger's cursor. A trigger seen for
    /// the first time starts at the end of the log — it receives events accepted from now on —
    /// and its cursor is written at once, so a crash cannot move it later.
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
        let cursor_error = |trigger: &str, source| BrokerError::Cursor {
            broker: id.clone(),
            trigger: trigger.to_owned(),
            source,
        };
        let cursors =
            Arc::new(CursorStore::open(dir.join("cursors")).map_err(|e| cursor_error("*", e))?);
        let end = *log.committed().borrow();
        let mut states = Vec::with_capacity(triggers.len());
        for trigger in triggers {
            let position = match cursors
                .load(&trigger.name)
                .map_err(|e| cursor_error(&trigger.name, e))?
            {
                // A cursor past the end means the log's tail was cut off by recovery (a torn
                // write, or damage); resume at the new end so new events are not skipped.
                Some(p) if p > end => {
                    tracing::warn!(broker = %id, trigger = %trigger.name, cursor = p, end, "cursor beyond the end of the recovered log; resuming at the end");
                    end
                }
                Some(p) => p,
                None => {
                    cursors
                        .store(&trigger.name, end)
                        .map_err(|e| cursor_error(&trigger.name, e))?;
                    end
                }
            };
            states.push(TriggerState {
                config: trigger,
                position: Arc::new(AtomicU64::new(position)),
                stats: Arc::default(),
            });
        }
        Ok(Self {
            config,
            id,
            log,
            cursors,
            triggers: states,
        })
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

    /// The broker's log.
    pub fn log(&self) -> &EventLog {
        &self.log
    }

    /// Appends encoded events; resolves once they are durable.
    pub async fn append(&self, records: Vec<Bytes>) -> Result<u64, AppendError> {
        self.log.append(records).await
    }

    /// A trigger's delivery counters, by trigger name.
    pub fn stats(&self, trigger: &str) -> Option<Arc<DispatchStats>> {
        self.triggers
            .iter()
            .find(|t| t.config.name == trigger)
            .map(|t| t.stats.clone())
    }

    /// Starts one dispatcher per trigger and the retention task. Each stops when `shutdown`
    /// turns true, after letting in-flight deliveries finish within `grace`.
    pub fn start(
        &self,
        client: &HttpClient,
        shutdown: &watch::Receiver<bool>,
        grace: Duration,
    ) -> Vec<JoinHandle<()>> {
        let mut tasks = Vec::with_capacity(self.triggers.len() + 1);
        for t in &self.triggers {
            let dispatcher = Dispatcher {
                broker: self.id.clone(),
                trigger: t.config.clone(),
                log: self.log.clone(),
                cursors: self.cursors.clone(),
                client: client.clone(),
                position: t.position.clone(),
                stats: t.stats.clone(),
                grace,
            };
            tasks.push(tokio::spawn(dispatcher.run(shutdown.clone())));
        }
        tasks.push(tokio::spawn(self.retention().run(shutdown.clone())));
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
    /// than the retention age (the broker also does this every minute); returns how many.
    pub async fn enforce_retention(&self) -> Result<usize, LogError> {
        self.retention().enforce().await
    }

    /// Finishes queued appends, syncs and closes the log.
    pub async fn close(&self) -> Result<(), LogError> {
        self.log.close().await
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
