//! The `ember` binary's library: the command line, the HTTP listener and its routing table,
//! wiring the crates together for a configuration, and the live topology that moves a running
//! Ember from one configuration to the next ([`topology`], [`reload`]), with every resource's
//! status served read-only ([`status`]) and shown by `ember get` ([`get`]). `main.rs` only
//! parses arguments and calls [`cli::main`].
//!
//! Owns: wiring and the process (signals, listeners, reloads, `/metrics`). Never does: what a
//! crate owns — no event parsing, delivery, filtering or source logic lives here; adding a source
//! kind means registering it in [`sources`] and nothing more.

pub mod allocator;
pub mod cli;
pub mod connection;
pub mod display;
pub mod get;
pub mod logging;
pub mod metrics;
pub mod output;
pub mod reload;
pub mod run;
pub mod send;
pub mod server;
pub mod serving;
pub mod serving_status;
pub mod sinks;
pub mod sources;
pub mod status;
pub mod topology;
pub mod wiring;
