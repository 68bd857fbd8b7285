//! Running sources by resource id: add one, remove one, replace one with its changed resource,
//! while the others keep running.
//!
//! The binary registers the kinds it runs ([`SourceKinds`]), resolves each source's `sink` to an
//! [`EventSink`], and calls [`SourceManager::add`] per source; a configuration reload calls
//! [`add`](SourceManager::add), [`remove`](SourceManager::remove) and
//! [`replace`](SourceManager::replace) for what changed. Operations are applied one at a time.
//!
//! # Guarantees
//! - `add` and `replace` return once the new source is running (it called
//!   [`SourceContext::ready`]) or with the reason it could not start.
//! - `remove` returns once the source has stopped for good: its input closed, what was under way
//!   finished, its journals flushed and closed.
//! - `replace` builds the new source first: a resource that does not build leaves the old one
//!   running, untouched. Then the old one stops with [`Stop::Replace`] — fully, but handing
//!   over its state rather than closing it — and the new one takes that over and starts. Should
//!   the new one then fail to start, neither runs and the error says why; the id can be added
//!   again.
//! - A source's counters survive a replace, and leave `/metrics` when it is removed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

use ember_api::{FieldError, Kind, Resource, ResourceId};
use ember_event::sink::EventSink;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use crate::component::{
    Handover, Shutdown, Source, SourceContext, SourceError, SourceKind, Stop, StopSignal,
};
use crate::metrics::SourceMetrics;

/// The source kinds Ember runs, by resource kind.
#[derive(Clone, Default)]
pub struct SourceKinds(BTreeMap<Kind, Arc<dyn SourceKind>>);

impl SourceKinds {
    /// Registers a kind (replacing any earlier one for the same resource kind).
    pub fn register(&mut self, kind: impl SourceKind) -> &mut Self {
        self.0.insert(kind.kind(), Arc::new(kind));
        self
    }

    /// The resource kinds registered.
    pub fn kinds(&self) -> impl Iterator<Item = Kind> + '_ {
        self.0.keys().copied()
    }

    /// The kind that builds `kind`'s resources.
    pub fn get(&self, kind: Kind) -> Option<&Arc<dyn SourceKind>> {
        self.0.get(&kind)
    }

    /// Checks `resource` as running it would ([`SourceKind::check`]); `None` when its kind is
    /// not a registered source kind.
    pub fn check(&self, resource: &Resource) -> Option<Result<(), FieldError>> {
        self.get(resource.kind()).map(|k| k.check(resource))
    }
}

impl std::fmt::Debug for SourceKinds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

/// Why a manager operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    /// No kind is registered for the resource's kind.
    #[error("{0}: not a source kind Ember runs")]
    UnknownKind(ResourceId),
    /// `add` of a source that runs already.
    #[error("{0} is running already")]
    AlreadyRunning(ResourceId),
    /// `remove` or `replace` of a source that does not run.
    #[error("{0} is not running")]
    NotRunning(ResourceId),
    /// The resource does not build (see [`SourceKind::build`]).
    #[error("{id}: {error}")]
    Invalid {
        /// The source.
        id: ResourceId,
        /// The field and why.
        error: FieldError,
    },
    /// The source failed before it was running.
    #[error("{id}: {error}")]
    Start {
        /// The source.
        id: ResourceId,
        /// Why.
        error: SourceError,
    },
}

/// A source the manager runs.
struct Running {
    stop: StopSignal,
    task: JoinHandle<Result<Handover, SourceError>>,
}

impl Running {
    /// Asks the source to stop and waits until it has; what it handed over (nothing if it
    /// failed).
    async fn stop(self, id: &ResourceId, why: Stop) -> Handover {
        self.stop.stop(why);
        match self.task.await {
            Ok(Ok(handover)) => handover,
            // Logged by the task when it ended.
            Ok(Err(_)) => Handover::none(),
            Err(e) => {
                tracing::error!(source = %id, error = %e, "source task failed");
                Handover::none()
            }
        }
    }
}

/// Runs sources by resource id. Cheap to share (`Arc`); every method takes `&self`.
pub struct SourceManager {
    kinds: SourceKinds,
    data_dir: PathBuf,
    running: Mutex<BTreeMap<ResourceId, Running>>,
    metrics: RwLock<BTreeMap<ResourceId, Arc<dyn SourceMetrics>>>,
}

impl SourceManager {
    /// A manager for `kinds`, whose sources keep their state below `data_dir`.
    pub fn new(kinds: SourceKinds, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            kinds,
            data_dir: data_dir.into(),
            running: Mutex::default(),
            metrics: RwLock::default(),
        }
    }

    /// The registered kinds.
    pub fn kinds(&self) -> &SourceKinds {
        &self.kinds
    }

    fn kind(&self, id: &ResourceId) -> Result<&Arc<dyn SourceKind>, ManagerError> {
        self.kinds
            .get(id.kind)
            .ok_or_else(|| ManagerError::UnknownKind(id.clone()))
    }

    /// Builds `resource` and runs it into `sink`; returns once it is running.
    pub async fn add(
        &self,
        resource: &Resource,
        sink: Arc<dyn EventSink>,
    ) -> Result<(), ManagerError> {
        let id = resource.id();
        let kind = self.kind(&id)?;
        let mut running = self.running.lock().await;
        if running.contains_key(&id) {
            return Err(ManagerError::AlreadyRunning(id));
        }
        let source = kind
            .build(resource)
            .map_err(|error| ManagerError::Invalid {
                id: id.clone(),
                error,
            })?;
        let started = self.start(&id, source, sink).await?;
        running.insert(id, started);
        Ok(())
    }

    /// Builds and runs many sources at once (Ember starting): all are built first — a resource
    /// that does not build starts none — then started together. Returns once all are running;
    /// should some fail to start, the others run and the first error is returned.
    pub async fn add_all(
        &self,
        sources: Vec<(Resource, Arc<dyn EventSink>)>,
    ) -> Result<(), ManagerError> {
        let mut running = self.running.lock().await;
        let mut built = Vec::with_capacity(sources.len());
        let mut ids = std::collections::BTreeSet::new();
        for (resource, sink) in sources {
            let id = resource.id();
            let kind = self.kind(&id)?;
            if running.contains_key(&id) || !ids.insert(id.clone()) {
                return Err(ManagerError::AlreadyRunning(id));
            }
            let source = kind
                .build(&resource)
                .map_err(|error| ManagerError::Invalid {
                    id: id.clone(),
                    error,
                })?;
            built.push((id, source, sink));
        }
        let started = futures_util::future::join_all(built.into_iter().map(
            |(id, source, sink)| async move {
                let started = self.start(&id, source, sink).await;
                (id, started)
            },
        ))
        .await;
        let mut first_error = None;
        for (id, started) in started {
            match started {
                Ok(r) => {
                    running.insert(id, r);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Replaces the running source of `resource`'s id with `resource` (changed), running into
    /// `sink`: see the module docs for the order of events and what survives.
    pub async fn replace(
        &self,
        resource: &Resource,
        sink: Arc<dyn EventSink>,
    ) -> Result<(), ManagerError> {
        let id = resource.id();
        let kind = self.kind(&id)?;
        let mut running = self.running.lock().await;
        if !running.contains_key(&id) {
            return Err(ManagerError::NotRunning(id));
        }
        let mut source = kind
            .build(resource)
            .map_err(|error| ManagerError::Invalid {
                id: id.clone(),
                error,
            })?;
        if let Some(old) = running.remove(&id) {
            let handover = old.stop(&id, Stop::Replace).await;
            source.take_over(handover);
        }
        self.forget_metrics(&id);
        let started = self.start(&id, source, sink).await?;
        running.insert(id, started);
        Ok(())
    }

    /// Stops the source `id` for good; returns once it has.
    pub async fn remove(&self, id: &ResourceId) -> Result<(), ManagerError> {
        let mut running = self.running.lock().await;
        let old = running
            .remove(id)
            .ok_or_else(|| ManagerError::NotRunning(id.clone()))?;
        self.forget_metrics(id);
        old.stop(id, Stop::Remove).await;
        Ok(())
    }

    /// The ids of the sources running, in order.
    pub async fn running(&self) -> Vec<ResourceId> {
        self.running.lock().await.keys().cloned().collect()
    }

    /// Whether the source `id` runs: started and not ended. Never waits: while an operation
    /// holds the manager (a reload starting or stopping sources), it answers from the sources
    /// registered as started, which an operation updates as it goes.
    pub fn is_running(&self, id: &ResourceId) -> bool {
        match self.running.try_lock() {
            Ok(running) => running.get(id).is_some_and(|r| !r.task.is_finished()),
            Err(_) => self
                .metrics
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key(id),
        }
    }

    /// Every running source's counters, by id.
    pub fn metrics(&self) -> Vec<(ResourceId, Arc<dyn SourceMetrics>)> {
        self.metrics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(id, m)| (id.clone(), m.clone()))
            .collect()
    }

    /// Stops every source for good (all at once), then closes the kinds.
    pub async fn shutdown(&self) {
        let all = std::mem::take(&mut *self.running.lock().await);
        futures_util::future::join_all(all.into_iter().map(|(id, r)| async move {
            r.stop(&id, Stop::Remove).await;
        }))
        .await;
        for kind in self.kinds.0.values() {
            kind.close().await;
        }
    }

    fn forget_metrics(&self, id: &ResourceId) {
        self.metrics
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }

    /// Runs `source` on a task of its own and waits until it is ready, or has failed.
    async fn start(
        &self,
        id: &ResourceId,
        source: Box<dyn Source>,
        sink: Arc<dyn EventSink>,
    ) -> Result<Running, ManagerError> {
        let metrics = source.metrics();
        let (stop, shutdown) = Shutdown::new();
        let (cx, ready) = SourceContext::new(id.clone(), shutdown, sink, self.data_dir.clone());
        let readied = cx.readied();
        let name = id.clone();
        let mut task = tokio::spawn(async move {
            let ended = source.run(cx).await;
            // A failure before it was ready is the starter's to report.
            if let Err(e) = &ended
                && readied.load(Ordering::Acquire)
            {
                tracing::error!(source = %name, error = %e, "source stopped");
            }
            ended
        });
        if ready.await.is_err() {
            let error = match (&mut task).await {
                Ok(Err(e)) => e,
                Ok(Ok(_)) => SourceError::new("it stopped before it was running"),
                Err(e) => SourceError::new(format!("it failed: {e}")),
            };
            return Err(ManagerError::Start {
                id: id.clone(),
                error,
            });
        }
        self.metrics
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), metrics);
        Ok(Running { stop, task })
    }
}

impl std::fmt::Debug for SourceManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceManager")
            .field("kinds", &self.kinds)
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}
