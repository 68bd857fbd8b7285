//! The component contract every source kind follows, and what a running source is given.
//!
//! *Check, then run.* A [`SourceKind`] turns a resource of its kind into a [`Source`] with
//! [`SourceKind::build`]: every check that needs no sink and opens no state happens there
//! (secrets are read, schedules parsed), with errors that name the field; `ember validate` calls
//! the same function through [`SourceKind::check`], so validating and running cannot disagree.
//! Then [`Source::run`] is a plain `async fn` taking a [`SourceContext`]: its shutdown signal, the
//! [`EventSink`] its `sink` resolved to, Ember's data directory. A test calls it with a test sink.
//!
//! # What a running source promises
//! - It calls [`SourceContext::ready`] once its state is open and it is taking input (a webhook
//!   path served, a schedule armed); failing before that, it returns the error — the
//!   [`SourceManager`](crate::SourceManager) reports it to whoever started the source.
//! - It acknowledges upstream (a 2xx, a recorded tick, an AMQP ack, a Kafka commit) only for
//!   events its sink answered `Ok` for, and retries what the sink refused for later with the
//!   shared [`Backoff`](crate::Backoff), never sooner than the sink asked.
//! - When [`Shutdown`] fires it stops taking input and finishes what is under way, then
//!   returns. Asked to [`Stop::Remove`], it closes its state (journals flushed and closed)
//!   before returning. Asked to [`Stop::Replace`], it returns its state instead, as a
//!   [`Handover`] that the new instance of the same resource takes over with
//!   [`Source::take_over`] — one writer per journal, and nothing a user can see in between.
//! - Its counters stay readable through [`Source::metrics`] for as long as it runs.

use std::any::Any;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ember_api::{FieldError, Kind, Resource, ResourceId};
use ember_event::sink::EventSink;
use futures_util::future::BoxFuture;
use tokio::sync::{oneshot, watch};

use crate::metrics::SourceMetrics;

/// A kind of source (PingSource, WebhookSource, …): how its resources become running sources.
/// Registered once with the [`SourceKinds`](crate::SourceKinds) the binary builds; anything
/// its sources share (one scheduler for all PingSources, the listener's route table for
/// WebhookSources) lives here.
pub trait SourceKind: Send + Sync + 'static {
    /// The resource kind this builds.
    fn kind(&self) -> Kind;

    /// Turns a resource of this kind into a source, without I/O beyond reading what the
    /// resource points at (secrets) and without starting anything. Errors name the field, from
    /// the resource's root (`spec.schedule`, `spec.auth.github.secretFile`).
    fn build(&self, resource: &Resource) -> Result<Box<dyn Source>, FieldError>;

    /// What `ember validate` runs: [`build`](Self::build), with the source dropped.
    fn check(&self, resource: &Resource) -> Result<(), FieldError> {
        self.build(resource).map(drop)
    }

    /// Called once every source of this kind has stopped, at shutdown: ends whatever the kind
    /// shares (the PingSource scheduler).
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// One source, built from its resource and ready to run.
pub trait Source: Send + 'static {
    /// Its counters, for `/metrics`: the same handle for its whole life, carried over when it
    /// takes over from a previous instance.
    fn metrics(&self) -> Arc<dyn SourceMetrics>;

    /// Takes over what the previous instance of the same resource handed over when it was
    /// replaced (its open journal, its counters); called before [`run`](Self::run). The
    /// default ignores it.
    fn take_over(&mut self, previous: Handover) {
        let _ = previous;
    }

    /// Runs until `cx.shutdown` fires, following the contract in the module docs; returns what
    /// a successor takes over (nothing, when asked to [`Stop::Remove`]).
    fn run(self: Box<Self>, cx: SourceContext)
    -> BoxFuture<'static, Result<Handover, SourceError>>;
}

/// What a running source is given.
pub struct SourceContext {
    /// The resource it runs, for logs.
    pub id: ResourceId,
    /// Fires when the source is to stop, saying why.
    pub shutdown: Shutdown,
    /// Where its events go: the resource's `sink`, resolved by the binary.
    pub sink: Arc<dyn EventSink>,
    /// Ember's data directory; each kind keeps its state in a folder of its own below it
    /// (`ping/`, `webhooks/`).
    pub data_dir: PathBuf,
    ready: Option<oneshot::Sender<()>>,
    readied: Arc<AtomicBool>,
}

impl SourceContext {
    /// A context for running a source by hand (tests, tools); the manager makes its own.
    /// `ready` resolves when the source calls [`ready`](Self::ready).
    pub fn new(
        id: ResourceId,
        shutdown: Shutdown,
        sink: Arc<dyn EventSink>,
        data_dir: PathBuf,
    ) -> (Self, oneshot::Receiver<()>) {
        let (ready, readied) = oneshot::channel();
        let cx = Self {
            id,
            shutdown,
            sink,
            data_dir,
            ready: Some(ready),
            readied: Arc::default(),
        };
        (cx, readied)
    }

    /// Says the source is running: its state is open and it takes input. Later calls do
    /// nothing.
    pub fn ready(&mut self) {
        if let Some(ready) = self.ready.take() {
            self.readied.store(true, Ordering::Release);
            let _ = ready.send(());
        }
    }

    /// Whether [`ready`](Self::ready) was called (shared by the manager's task wrapper).
    pub(crate) fn readied(&self) -> Arc<AtomicBool> {
        self.readied.clone()
    }
}

/// Why a source is asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// For good (removed from the configuration, or Ember shutting down): close everything.
    Remove,
    /// A changed resource: a new instance follows and takes over the [`Handover`].
    Replace,
}

/// A source's shutdown signal.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<Option<Stop>>);

/// The sending half of a [`Shutdown`].
#[derive(Debug)]
pub struct StopSignal(watch::Sender<Option<Stop>>);

impl Shutdown {
    /// A signal and its sender.
    pub fn new() -> (StopSignal, Shutdown) {
        let (tx, rx) = watch::channel(None);
        (StopSignal(tx), Shutdown(rx))
    }

    /// Resolves when the source is asked to stop, with why. A signal whose sender is gone
    /// means [`Stop::Remove`].
    pub async fn requested(&mut self) -> Stop {
        match self.0.wait_for(Option::is_some).await {
            Ok(stop) => (*stop).unwrap_or(Stop::Remove),
            Err(_) => Stop::Remove,
        }
    }

    /// Whether a stop was asked for (or can no longer be).
    pub fn is_requested(&self) -> bool {
        self.0.borrow().is_some() || self.0.has_changed().is_err()
    }
}

impl StopSignal {
    /// Asks the source to stop.
    pub fn stop(&self, why: Stop) {
        self.0.send_replace(Some(why));
    }
}

/// What a replaced source leaves to its successor: kind-specific state, opaque to everyone
/// but the kind. Empty when the source was removed, or failed.
#[derive(Default)]
pub struct Handover(Option<Box<dyn Any + Send>>);

impl Handover {
    /// Nothing to hand over.
    pub fn none() -> Self {
        Self(None)
    }

    /// Hands over `state`.
    pub fn new<T: Any + Send>(state: T) -> Self {
        Self(Some(Box::new(state)))
    }

    /// The state, if there is some of type `T`.
    pub fn take<T: Any>(self) -> Option<T> {
        self.0?.downcast::<T>().ok().map(|b| *b)
    }

    /// Whether there is nothing.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }
}

impl std::fmt::Debug for Handover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_empty() {
            "Handover(none)"
        } else {
            "Handover(..)"
        })
    }
}

/// Why a source could not start, or stopped on its own.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SourceError(Box<dyn std::error::Error + Send + Sync>);

impl SourceError {
    /// Wraps any error, or a message.
    pub fn new(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self(error.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stop_says_why_and_a_dropped_signal_means_remove() {
        let (signal, mut shutdown) = Shutdown::new();
        assert!(!shutdown.is_requested());
        signal.stop(Stop::Replace);
        assert!(shutdown.is_requested());
        assert_eq!(shutdown.requested().await, Stop::Replace);
        let (signal, mut shutdown) = Shutdown::new();
        drop(signal);
        assert!(shutdown.is_requested());
        assert_eq!(shutdown.requested().await, Stop::Remove);
    }

    #[test]
    fn a_handover_gives_its_state_to_the_same_kind_only() {
        assert_eq!(Handover::new(7u32).take::<u32>(), Some(7));
        assert_eq!(Handover::new(7u32).take::<String>(), None);
        assert!(Handover::none().is_empty());
        assert_eq!(Handover::none().take::<u32>(), None);
    }
}
