//! Ember's serving: Knative Services whose revisions run as local processes, woken from zero
//! by the first request or event and reached at a stable address while revisions change.
//!
//! - [`revision`]: what a revision runs, from a Service's template;
//! - [`history`]: revisions numbered and kept in the data directory;
//! - [`process`]: the process runtime, under Knative's runtime contract;
//! - [`invoker`]: functions without an HTTP server (`command`, `stream`) behind an adapter;
//! - [`activator`]: per revision, the queue that holds requests while an instance starts, the
//!   per-instance concurrency limit, admission of deliveries, and the scaler;
//! - [`autoscaler`]: Knative's scaling decision (stable and panic windows, rate limits) and
//!   the bounds after it, fed with in-flight, waiting and queued work;
//! - [`route`]: traffic splits, tags and `Host` names;
//! - [`proxy`]: streaming a request to an instance and its response back;
//! - [`manager`]: [`Serving`], the Services that run and the way in to them.
//!
//! It never depends on the broker: the binary hands it requests from its listener and from
//! triggers whose subscriber is a Service.

pub mod activator;
pub mod autoscaler;
pub mod container;
pub mod history;
pub mod invoker;
pub mod manager;
pub mod process;
pub mod proxy;
pub mod revision;
pub mod route;

pub use manager::{
    Applied, Env, RequestError, RevisionRecord, ServiceStatus, Serving, TrafficStatus,
};
