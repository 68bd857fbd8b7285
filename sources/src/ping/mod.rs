//! PingSource: fire a CloudEvent on a cron schedule, in a time zone, exactly once per tick.
//!
//! The flow is *check, then run*:
//! 1. [`PingConfig::validate`] (pure: no I/O, no async) turns the user's resource — read by
//!    [`config`] from the resource type — into a [`ValidPing`] or a [`PingError`] naming the
//!    field and why.
//! 2. The [`PingScheduler`] is one task for all PingSources: it sleeps until the next tick of
//!    any source's [`Schedule`] (Knative's cron grammar, robfig/cron's, plus a seconds field),
//!    hands the ticks due then to their [`EventSink`](ember_event::sink::EventSink)s — one batch
//!    per destination — retries a refused tick with backoff, and records the ticks in the
//!    [`TickStore`] before moving on. Sources are added and removed through its control channel
//!    while it runs.
//! 3. [`PingSourceKind`] makes each PingSource a component of the
//!    [`SourceManager`](crate::SourceManager): built from its resource, run on the scheduler,
//!    replaced with its tick record kept by name.
//!
//! Time is read through a [`Clock`], so tests drive the whole loop with tokio's paused clock.
//! Each source counts its ticks (fired, late, retried, skipped, dropped) in its
//! [`PingMetrics`].
//!
//! # Guarantees
//! - Wake-ups come from the schedule (`sleep_until` the next tick), never from polling.
//! - A tick is never skipped because the sink was briefly unavailable, and never fired twice by
//!   a running scheduler; across restarts and replacements, a tick recorded in the store is
//!   never fired again. The one at-least-once edge — a crash after the sink accepted a tick but
//!   before the store write — is described on [`PingScheduler`].
//! - Missed ticks while Ember was down follow [`MissedTicks`]: skipped (the default) or caught
//!   up within a bounded window.

mod clock;
mod config;
mod cron;
mod event;
mod go_duration;
mod kind;
mod metrics;
mod resource;
mod schedule;
mod scheduler;
mod store;

#[cfg(feature = "test-util")]
pub use clock::AnchoredClock;
pub use clock::{Clock, SystemClock};
pub use config::{MissedTicks, PingConfig, PingError, ValidPing};
pub use cron::ScheduleError;
pub use kind::{PingSourceKind, TICK_STORE_DIR};
pub use metrics::{LATE_AFTER, PingMetrics};
pub use resource::{CATCH_UP_WINDOW, DEFAULT_CATCH_UP_WINDOW, MISSED_TICKS, config, validate};
pub use schedule::Schedule;
#[cfg(feature = "test-util")]
pub use scheduler::run;
pub use scheduler::{PING_EVENT_TYPE, PingScheduler, SchedulerError, Start};
pub use store::{StoreError, TickStore};
