//! Ember's event sources: each turns something outside Ember into CloudEvents for a broker.
//!
//! This crate will own the WebhookSource (HTTP webhooks with signature checks), the PingSource
//! (cron schedules, in time zones, exactly once per tick across restarts), the KafkaSource and
//! the RabbitmqSource. Every source acknowledges upstream (HTTP 2xx, AMQP ack, Kafka offset
//! commit) only after the broker holds the event durably. Nothing is implemented yet: `ember run`
//! refuses these kinds with `not supported yet`.
