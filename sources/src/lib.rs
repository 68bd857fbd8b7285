//! Ember's event sources: each turns something outside Ember into CloudEvents for a destination.
//!
//! What this crate owns:
//! - the component contract ([`component`]): a [`SourceKind`] builds a [`Source`] from its
//!   resource (the checks `ember validate` runs too), and the source runs as
//!   `run(self, cx: SourceContext)` into the [`EventSink`](ember_event::sink::EventSink) its
//!   `sink` resolved to, stops on its [`Shutdown`] and, when replaced, hands its state
//!   ([`Handover`]) to the new instance;
//! - the [`SourceManager`], which runs sources by resource id and adds, removes and replaces
//!   one while the others run;
//! - the kinds: the PingSource ([`ping`]: cron schedules in IANA time zones, one scheduler for
//!   all, fired exactly once per tick across restarts) and the WebhookSource ([`webhook`]:
//!   signature schemes, mapping a request to an event, dedup, rate limiting, the request
//!   pipeline and its route table). To come: the KafkaSource and the RabbitmqSource;
//! - the one [`Backoff`] (exponential, full jitter) sources retry and reconnect with, and the
//!   counters they export ([`SourceMetrics`]).
//!
//! Every source acknowledges upstream (HTTP 2xx, AMQP ack, Kafka offset commit, a recorded
//! tick) only after its sink holds the event.
//!
//! What it must never do: depend on `ember-broker`. Sources read their resources from
//! `ember-api`, build CloudEvents with `ember-event`, and meet the broker only through the
//! `EventSink` trait the binary hands them — a broker of this Ember or a URL, they cannot tell.

mod backoff;
pub mod component;
pub mod kafka;
mod log_throttle;
mod manager;
mod metrics;
pub mod ping;
pub mod rabbitmq;
mod settle;
pub mod webhook;
mod write_failures;

pub use backoff::Backoff;
pub use component::{
    Handover, Shutdown, Source, SourceContext, SourceError, SourceKind, Stop, StopSignal,
};
pub use log_throttle::LogThrottle;
pub use manager::{ManagerError, SourceKinds, SourceManager};
pub use metrics::{Counter, CounterFamily, SourceMetrics};
