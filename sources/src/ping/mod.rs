//! PingSource: fire a CloudEvent on a cron schedule, in a time zone, exactly once per tick.
//!
//! The flow is *check, then run*:
//! 1. [`PingConfig::validate`] (pure: no I/O, no async) turns the user's resource into a
//!    [`ValidPing`] or a [`PingError`] naming the field and why.
//! 2. [`run_many`] is a plain `async fn` that sleeps until the next tick of any source's
//!    [`Schedule`] (Knative's cron grammar, robfig/cron's, plus a seconds field), hands the [`PingEvent`]s due then to their [`PingBatchSink`] (one call per
//!    sink), retries a refused tick with backoff, and records the ticks in the [`TickStore`]
//!    before moving on. [`run`] is the same for one source and a [`PingSink`].
//!
//! Time is read through a [`Clock`], so tests drive the whole loop with tokio's paused clock.
//! Each source counts its ticks (fired, late, retried, skipped) in its [`PingMetrics`].
//!
//! # Guarantees
//! - Wake-ups come from the schedule (`sleep_until` the next tick), never from polling.
//! - A tick is never skipped because the sink was briefly unavailable, and never fired twice by
//!   a running loop; across restarts, a tick recorded in the store is never fired again. The one
//!   at-least-once edge — a crash after the sink accepted a tick but before the store write — is
//!   described on [`run`].
//! - Missed ticks while Ember was down follow [`MissedTicks`]: skipped (the default) or caught
//!   up within a bounded window.

mod clock;
mod config;
mod cron;
mod go_duration;
mod metrics;
mod schedule;
mod source;
mod store;

pub use clock::{AnchoredClock, Clock, SystemClock};
pub use config::{MissedTicks, PingConfig, PingError, ValidPing};
pub use cron::ScheduleError;
pub use metrics::{LATE_AFTER, PingMetrics};
pub use schedule::Schedule;
pub use source::{
    OneAtATime, PING_EVENT_TYPE, PingBatchSink, PingEvent, PingSink, SinkError, run, run_many,
};
pub use store::{StoreError, TickStore};
