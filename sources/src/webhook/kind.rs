//! WebhookSources as components: [`WebhookSourceKind`] builds them from their resources; each
//! runs by putting its [`WebhookHandler`] in the listener's [`WebhookRoutes`] and waiting.
//!
//! Its dedup window's journal, `{data_dir}/webhooks/{namespace}/{name}.dedup`, has one writer at
//! a time, always: a replaced source hands its open window to the new one, which serves the
//! same ids with its new settings (a new `dedupWindow` length applies to them too) — the old
//! handler's requests still in flight share it — and a removed source closes the journal only
//! once every request on any of its handlers has been answered.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ember_api::{FieldError, FieldPath, Kind, Resource};
use futures_util::future::BoxFuture;
use tokio::sync::mpsc;

use super::dedup::{DEFAULT_DEDUP_CAPACITY, DedupWindow};
use super::handler::{LOG_INTERVAL, WebhookHandler};
use super::metrics::WebhookMetrics;
use super::resource::{PreparedWebhook, prepare};
use super::routes::WebhookRoutes;
use crate::LogThrottle;
use crate::component::{Handover, Source, SourceContext, SourceError, SourceKind, Stop};
use crate::metrics::SourceMetrics;

/// Where WebhookSources keep their dedup journals, below Ember's data directory.
pub const DEDUP_DIR: &str = "webhooks";

/// The WebhookSource kind, serving its sources on the listener that reads `routes`.
#[derive(Debug, Clone)]
pub struct WebhookSourceKind {
    routes: Arc<WebhookRoutes>,
}

impl WebhookSourceKind {
    /// Sources served through `routes` (the listener's table).
    pub fn new(routes: Arc<WebhookRoutes>) -> Self {
        Self { routes }
    }
}

impl SourceKind for WebhookSourceKind {
    fn kind(&self) -> Kind {
        Kind::WebhookSource
    }

    fn build(&self, resource: &Resource) -> Result<Box<dyn Source>, FieldError> {
        let Resource::WebhookSource(w) = resource else {
            return Err(FieldError::new(FieldPath::root(), "not a WebhookSource"));
        };
        Ok(Box::new(Webhook {
            prepared: prepare(w)?,
            routes: self.routes.clone(),
            metrics: Arc::default(),
            previous: None,
        }))
    }
}

/// One WebhookSource.
struct Webhook {
    prepared: PreparedWebhook,
    routes: Arc<WebhookRoutes>,
    metrics: Arc<WebhookMetrics>,
    previous: Option<WebhookHandover>,
}

/// What a replaced WebhookSource leaves to its successor.
struct WebhookHandover {
    /// The open window — kept even by a successor that has no `dedupWindow`, so that a later
    /// one that has gets the same window, never a second writer on the journal.
    dedup: Option<Arc<DedupWindow>>,
    metrics: Arc<WebhookMetrics>,
    line: Line,
}

/// Every handler the source's instances have made, alive while any of them is: each holds a
/// clone of `alive`, and `gone` resolves once all are dropped.
struct Line {
    alive: mpsc::Sender<()>,
    gone: mpsc::Receiver<()>,
}

impl Line {
    fn new() -> Self {
        let (alive, gone) = mpsc::channel(1);
        Self { alive, gone }
    }

    /// Waits until no handler of the line is left.
    async fn ended(self) {
        let Line { alive, mut gone } = self;
        drop(alive);
        // Nothing is ever sent: `recv` returns once every sender is gone.
        let _ = gone.recv().await;
    }
}

/// Opens the window's journal (blocking file I/O, off the runtime's threads).
async fn open_window(
    data_dir: &Path,
    namespace: &str,
    name: &str,
    window: Duration,
) -> Result<DedupWindow, SourceError> {
    let dir = data_dir.join(DEDUP_DIR).join(namespace);
    let journal = dir.join(format!("{name}.dedup"));
    let opened = tokio::task::spawn_blocking({
        let journal = journal.clone();
        move || {
            std::fs::create_dir_all(&dir)?;
            DedupWindow::open(journal, window, DEFAULT_DEDUP_CAPACITY)
        }
    })
    .await
    .map_err(SourceError::new)?;
    opened.map_err(|e| {
        SourceError::new(format!(
            "spec.dedupWindow: opening {}: {e}",
            journal.display()
        ))
    })
}

/// Stops serving the source `id`, waits until every request on any of its handlers has been
/// answered, then closes its window (writing what is queued and ending its writer thread).
async fn retire(routes: &WebhookRoutes, id: &str, line: Line, window: Option<Arc<DedupWindow>>) {
    routes.remove(id);
    line.ended().await;
    if let Some(window) = window {
        let _ = tokio::task::spawn_blocking(move || drop(window)).await;
    }
}

impl Source for Webhook {
    fn metrics(&self) -> Arc<dyn SourceMetrics> {
        self.metrics.clone()
    }

    fn take_over(&mut self, previous: Handover) {
        if let Some(previous) = previous.take::<WebhookHandover>() {
            self.metrics = previous.metrics.clone();
            self.previous = Some(previous);
        }
    }

    fn run(
        self: Box<Self>,
        mut cx: SourceContext,
    ) -> BoxFuture<'static, Result<Handover, SourceError>> {
        Box::pin(async move {
            let Webhook {
                prepared: p,
                routes,
                metrics,
                previous,
            } = *self;
            let id = format!("{}/{}", p.namespace, p.name);
            let (handed, line) = match previous {
                Some(h) => (h.dedup, h.line),
                None => (None, Line::new()),
            };
            let (dedup, dormant) = match (p.dedup_window, handed) {
                (Some(window), Some(open)) => {
                    open.set_window(window);
                    (Some(open), None)
                }
                (Some(window), None) => {
                    match open_window(&cx.data_dir, &p.namespace, &p.name, window).await {
                        Ok(open) => (Some(Arc::new(open)), None),
                        Err(e) => {
                            // What a predecessor served stops with it.
                            retire(&routes, &id, line, None).await;
                            return Err(e);
                        }
                    }
                }
                (None, kept) => (None, kept),
            };
            let handler = Arc::new(WebhookHandler {
                id: id.clone(),
                path: p.path.clone(),
                auth: p.auth,
                mapping: p.mapping,
                dedup: dedup.clone(),
                limiter: p.limiter,
                max_body: p.max_body,
                sink: cx.sink.clone(),
                metrics: metrics.clone(),
                log: LogThrottle::new(LOG_INTERVAL),
                _alive: line.alive.clone(),
            });
            let window = dedup.or(dormant);
            if let Err(e) = routes.install(handler) {
                retire(&routes, &id, line, window).await;
                return Err(SourceError::new(e));
            }
            tracing::info!(source = %id, path = %p.path, "webhook source ready");
            cx.ready();
            match cx.shutdown.requested().await {
                // The new instance's handler takes the path over; requests in flight here
                // finish on this one, sharing the window.
                Stop::Replace => Ok(Handover::new(WebhookHandover {
                    dedup: window,
                    metrics,
                    line,
                })),
                Stop::Remove => {
                    retire(&routes, &id, line, window).await;
                    Ok(Handover::none())
                }
            }
        })
    }
}
