//! PingSources as components: [`PingSourceKind`] builds them from their resources and runs them
//! all on one [`PingScheduler`], started with the first and stopped with the kind.
//!
//! A PingSource's `run` adds it to the scheduler and waits; stopped, it takes itself off and
//! returns once its batch under way, if any, is recorded. Replaced, it hands its counters and its
//! schedule to the new instance, which continues from the last recorded tick when the schedule
//! is the same, and counts from now when it changed ([`Start`]); the tick record itself is kept
//! by namespace and name in the store, so it carries over by name.

use std::path::Path;
use std::sync::Arc;

use ember_api::{FieldError, FieldPath, Kind, Resource};
use futures_util::future::BoxFuture;

use super::clock::{Clock, SystemClock};
use super::config::ValidPing;
use super::metrics::PingMetrics;
use super::resource::validate;
use super::schedule::Schedule;
use super::scheduler::{PingScheduler, Start};
use super::store::TickStore;
use crate::component::{Handover, Source, SourceContext, SourceError, SourceKind, Stop};
use crate::metrics::SourceMetrics;

/// Where PingSources record their last ticks, below Ember's data directory.
pub const TICK_STORE_DIR: &str = "ping";

type StartScheduler = dyn Fn(TickStore) -> PingScheduler + Send + Sync;

/// The PingSource kind: one scheduler for all its sources.
#[derive(Clone)]
pub struct PingSourceKind {
    shared: Arc<Shared>,
}

struct Shared {
    scheduler: tokio::sync::Mutex<Option<PingScheduler>>,
    start: Box<StartScheduler>,
}

impl PingSourceKind {
    /// PingSources on the system's wall clock.
    pub fn new() -> Self {
        Self::on(SystemClock)
    }

    /// PingSources on `clock` (tests start the scheduler at any instant on a paused clock).
    #[cfg(feature = "test-util")]
    pub fn with_clock(clock: impl Clock + Clone + 'static) -> Self {
        Self::on(clock)
    }

    fn on(clock: impl Clock + Clone + 'static) -> Self {
        Self {
            shared: Arc::new(Shared {
                scheduler: tokio::sync::Mutex::default(),
                start: Box::new(move |store| PingScheduler::start(store, clock.clone())),
            }),
        }
    }
}

impl Default for PingSourceKind {
    fn default() -> Self {
        Self::new()
    }
}

impl Shared {
    /// The scheduler, started on the tick store in `data_dir` if it is not running yet.
    async fn scheduler(&self, data_dir: &Path) -> Result<PingScheduler, SourceError> {
        let mut scheduler = self.scheduler.lock().await;
        if let Some(s) = &*scheduler {
            return Ok(s.clone());
        }
        let store = TickStore::open(data_dir.join(TICK_STORE_DIR)).map_err(SourceError::new)?;
        let started = (self.start)(store);
        *scheduler = Some(started.clone());
        Ok(started)
    }
}

impl SourceKind for PingSourceKind {
    fn kind(&self) -> Kind {
        Kind::PingSource
    }

    fn build(&self, resource: &Resource) -> Result<Box<dyn Source>, FieldError> {
        let Resource::PingSource(p) = resource else {
            return Err(FieldError::new(FieldPath::root(), "not a PingSource"));
        };
        Ok(Box::new(Ping {
            ping: validate(p)?,
            start: Start::Restart,
            shared: self.shared.clone(),
        }))
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let scheduler = self.shared.scheduler.lock().await.take();
            if let Some(scheduler) = scheduler {
                scheduler.stop().await;
            }
        })
    }
}

/// One PingSource.
struct Ping {
    ping: ValidPing,
    start: Start,
    shared: Arc<Shared>,
}

/// What a replaced PingSource leaves to its successor.
struct PingHandover {
    metrics: Arc<PingMetrics>,
    schedule: Schedule,
}

impl Source for Ping {
    fn metrics(&self) -> Arc<dyn SourceMetrics> {
        self.ping.metrics.clone()
    }

    fn take_over(&mut self, previous: Handover) {
        let Some(previous) = previous.take::<PingHandover>() else {
            return;
        };
        self.ping.metrics = previous.metrics;
        let same = previous.schedule.expression() == self.ping.schedule.expression()
            && previous.schedule.zone() == self.ping.schedule.zone();
        self.start = if same {
            Start::Continue
        } else {
            Start::FromNow
        };
    }

    fn run(
        self: Box<Self>,
        mut cx: SourceContext,
    ) -> BoxFuture<'static, Result<Handover, SourceError>> {
        Box::pin(async move {
            let scheduler = self.shared.scheduler(&cx.data_dir).await?;
            let (namespace, name) = (self.ping.namespace.clone(), self.ping.name.clone());
            let handover = PingHandover {
                metrics: self.ping.metrics.clone(),
                schedule: self.ping.schedule.clone(),
            };
            scheduler
                .add(self.ping, cx.sink.clone(), self.start)
                .await
                .map_err(SourceError::new)?;
            cx.ready();
            let stop = cx.shutdown.requested().await;
            scheduler.remove(&namespace, &name).await;
            Ok(match stop {
                Stop::Replace => Handover::new(handover),
                Stop::Remove => Handover::none(),
            })
        })
    }
}
