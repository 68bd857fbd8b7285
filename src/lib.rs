//! The `ember` binary's library: the command line, loading configuration into running brokers,
//! and the HTTP server. `main.rs` only parses arguments and calls [`cli::main`].

pub mod allocator;
pub mod cli;
pub mod connection;
pub mod display;
pub mod logging;
pub mod metrics;
pub mod output;
pub mod reload;
pub mod run;
pub mod send;
pub mod server;
pub mod sources;
pub mod topology;
pub mod wiring;
