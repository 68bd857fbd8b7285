//! Ember's broker: CloudEvents ingress over HTTP, the durable per-broker event log, and the
//! per-trigger dispatchers that deliver matching events to subscribers.
//!
//! Data flows one way: [`ingress`] decodes and validates events (with `ember-event`) and
//! appends them to the broker's [`log`]; the broker's [`fanout`] reads the log once, asks the
//! trigger [`index`] which triggers want each event and hands it to their [`dispatch`] tasks,
//! which send it through their [`delivery`] stacks until the subscriber acknowledges; a trigger
//! that falls behind reads the log on its own until it catches up. [`broker`] ties these
//! together and keeps each trigger's durable [`cursor`]. Sources reach a broker — or any URL —
//! through the [`sink`]s the binary hands them, never through its types.
//!
//! Owns: brokers' logs, cursors, dispatch and delivery. Never does: parse configuration files
//! (the binary hands it resolved settings), or know about sources or serving beyond the
//! `EventSink` and `Destination` contracts.

pub mod broker;
pub mod cursor;
pub mod delivery;
pub mod dispatch;
pub mod fanout;
pub mod index;
pub mod ingress;
pub mod log;
pub mod sink;
pub mod throttle;
mod write_failures;
