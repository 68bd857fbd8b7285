//! The command line: `ember run`, `ember validate`, `ember send`, `ember display`, `ember get`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::display::DisplayArgs;
use crate::get::GetArgs;
use crate::logging::{self, LogFormat};
use crate::run::RunArgs;
use crate::send::SendArgs;

/// Ember: CloudEvents sources feed durable brokers; triggers filter events and deliver them to
/// subscribers — your functions among them, run from zero. Reads Knative-style YAML (Broker,
/// Trigger, Service, ...); runs with no Kafka and no Kubernetes.
#[derive(Debug, Parser)]
#[command(name = "ember", version, propagate_version = true)]
#[command(
    after_help = "Example:\n  ember run -f examples/quickstart/\n  ember send --to http://127.0.0.1:8080/default/default --type com.example.hello --source /me\n  ember get triggers"
)]
pub struct Cli {
    /// Log line format (the level comes from RUST_LOG, default `info`); for `ember display`,
    /// also how events are printed (`json`: one structured JSON event per line).
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the brokers, triggers, PingSources, WebhookSources and Knative Services (as local
    /// processes, woken from zero) described by the configuration.
    Run(RunArgs),
    /// Check the configuration without starting anything; prints every problem found.
    #[command(after_help = "Example:\n  ember validate -f examples/")]
    Validate(ConfigArgs),
    /// Send one CloudEvent (binary mode) and print the response status.
    Send(SendArgs),
    /// Listen for CloudEvents and print each one (a subscriber for trying triggers out).
    Display(DisplayArgs),
    /// Show the resources of a running Ember and their status (Ready, reasons), as kubectl get.
    Get(GetArgs),
}

/// Where the configuration is.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArgs {
    /// A YAML file or a folder of them (repeatable). Files may hold several documents.
    #[arg(short = 'f', long = "filename", value_name = "PATH", required = true)]
    pub files: Vec<PathBuf>,
}

/// Parses the command line and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            crate::output::error_line(format_args!("error: starting the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => crate::run::run(args).await,
            Command::Validate(args) => crate::run::validate(&args),
            Command::Send(args) => crate::send::run(args).await,
            Command::Display(args) => {
                let style = match cli.log_format {
                    LogFormat::Text => crate::display::Style::Block,
                    LogFormat::Json => crate::display::Style::JsonLines,
                };
                crate::display::run(args, style).await
            }
            Command::Get(args) => crate::get::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            crate::output::error_line(format_args!("error: {e:#}"));
            ExitCode::FAILURE
        }
    }
}
