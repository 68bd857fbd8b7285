//! Ember's event sources: each turns something outside Ember into CloudEvents for a broker.
//!
//! Implemented so far: the scheduling core of the PingSource ([`ping`]): cron schedules in IANA
//! time zones, fired exactly once per tick across restarts, pure of HTTP — the binary converts
//! its configuration into a [`ping::PingConfig`] and hands the run loop a [`ping::PingSink`].
//! To come: the WebhookSource, the KafkaSource and the RabbitmqSource. Every source acknowledges
//! upstream (HTTP 2xx, AMQP ack, Kafka offset commit, a persisted tick) only after the broker
//! holds the event durably.
//!
//! This crate never depends on `ember-broker` or `ember-api`: sources produce plain structs and
//! hand them to a sink trait the binary implements.

pub mod ping;
