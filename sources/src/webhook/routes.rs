//! The listener's table of WebhookSource paths: filled and emptied by the sources as they start
//! and stop, read by the listener on every request.
//!
//! A lookup takes a read lock for the time of one hash lookup and an `Arc` clone; the request
//! is then answered without the lock, by a handler that stays valid even if its source is
//! replaced or removed meanwhile. A replaced source's new handler takes the place of the old in
//! one write, so no request finds the path missing during a change.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::handler::WebhookHandler;

/// WebhookSource handlers by path.
#[derive(Debug, Default)]
pub struct WebhookRoutes {
    routes: RwLock<HashMap<String, Arc<WebhookHandler>>>,
}

/// A path served by another WebhookSource already.
#[derive(Debug, thiserror::Error)]
#[error("path {path} is served by WebhookSource {by} already")]
pub struct PathTaken {
    /// The path.
    pub path: String,
    /// `namespace/name` of the source serving it.
    pub by: String,
}

impl WebhookRoutes {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// The handler serving `path`, if any.
    pub fn get(&self, path: &str) -> Option<Arc<WebhookHandler>> {
        self.routes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(path)
            .cloned()
    }

    /// Every path served, sorted.
    pub fn paths(&self) -> Vec<String> {
        let mut paths: Vec<String> = self
            .routes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        paths.sort();
        paths
    }

    /// Serves `handler` at its path in place of whatever its source served (at that path or
    /// another), in one write; refuses a path another source serves.
    pub(crate) fn install(&self, handler: Arc<WebhookHandler>) -> Result<(), PathTaken> {
        let mut routes = self.routes.write().unwrap_or_else(|e| e.into_inner());
        if let Some(other) = routes.get(handler.path())
            && other.source() != handler.source()
        {
            return Err(PathTaken {
                path: handler.path().to_owned(),
                by: other.source().to_owned(),
            });
        }
        routes.retain(|_, h| h.source() != handler.source());
        routes.insert(handler.path().to_owned(), handler);
        Ok(())
    }

    /// Stops serving what the source `namespace/name` served.
    pub(crate) fn remove(&self, source: &str) {
        self.routes
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, h| h.source() != source);
    }
}
