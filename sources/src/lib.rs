//! Ember's event sources: each turns something outside Ember into CloudEvents for a broker.
//!
//! Implemented so far: the PingSource ([`ping`]: cron schedules in IANA time zones, fired exactly
//! once per tick across restarts) and the WebhookSource's request processing ([`webhook`]:
//! signature schemes, mapping a request to an event, dedup, rate limiting), both pure of the
//! HTTP server — the binary converts its configuration into these types, serves the requests and
//! implements the sinks. To come: the KafkaSource and the RabbitmqSource. Every source acknowledges
//! upstream (HTTP 2xx, AMQP ack, Kafka offset commit, a persisted tick) only after the broker
//! holds the event durably.
//!
//! This crate never depends on `ember-broker` or `ember-api`: sources produce plain structs and
//! hand them to a sink trait the binary implements.

mod log_throttle;
pub mod ping;
pub mod webhook;

pub use log_throttle::LogThrottle;
