//! Ember's broker: CloudEvents ingress over HTTP, the durable per-broker event log, and the
//! per-trigger dispatchers that deliver matching events to subscribers.
//!
//! Data flows one way: [`ingress`] decodes and validates events ([`http_binding`],
//! [`json_format`], [`event`]) and appends them to the broker's [`log`]; each trigger's
//! [`dispatch`] task reads the log from its durable [`cursor`], filters with
//! `ember_triggers`, and delivers with [`retry`] until the subscriber acknowledges.

pub mod broker;
pub mod cursor;
pub mod dispatch;
pub mod event;
pub mod http_binding;
pub mod ingress;
pub mod json_format;
pub mod log;
pub mod retry;
